"""Smoke test of the optimizer benchmark (benchmarks/bench_optim.py): the command runs on a
few optimizers of the database and prints its markdown table. No timing is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = (
    "optimizer",
    "reference",
    "K=1 optimkit ms",
    "K=1 fastest ref ms",
    "K=1 optimkit/ref (<=1.1x)",
    "tensors/step",
    "MB/step",
    "floor ms",
    "optimkit % of floor",
    "ref % of floor",
)


def _table(out: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in out.splitlines()
        if line.startswith("|") and not line.startswith("|---")
    ]


def test_quick_run_prints_a_row_per_optimizer_and_skips_closure_ones():
    cmd = [sys.executable, "-m", "benchmarks", "optim", "--quick", "--repeats", "1",
           "--only", "adam,sgd,lbfgs"]  # fmt: skip
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    header, *rows = _table(run.stdout)
    for column in COLUMNS:
        assert column in header, (column, header)
    assert any(c.endswith("speed-up (>=10x)") for c in header), header
    assert [r[0] for r in rows] == ["adam", "sgd"]
    for row in rows:
        assert len(row) == len(header)
        cells = dict(zip(header, row, strict=True))
        assert cells["reference"] == {"adam": "torch.optim.Adam", "sgd": "torch.optim.SGD"}[row[0]]
        assert "error" not in row, row
        assert cells["K=1 optimkit/ref (<=1.1x)"].endswith("x")
    adam = dict(zip(header, rows[0], strict=True))
    assert adam["tensors/step"] == "7.0"  # p read + written, g read, two moments read + written
    assert "skipped (step needs a closure): lbfgs" in run.stdout


def test_unknown_names_are_a_message(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import bench_optim

    with pytest.raises(SystemExit, match=r"unknown optimizer\(s\) nosuch; valid: .*adam"):
        bench_optim.cli(["--quick", "--only", "adam,nosuch"])
