"""The tuner benchmark (benchmarks/bench_tune.py): the many-trial scenario end to end through
`python -m benchmarks tune`, and its bookkeeping split against the stats it reads. No timing
is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import bench_tune
from optimkit.data import load_dataset
from optimkit.tune.tuner import STAT_KINDS

ROOT = Path(__file__).resolve().parents[1]


def test_many_trials_scenario_prints_the_bookkeeping_split():
    cmd = [sys.executable, "-m", "benchmarks", "tune", "--quick", "--threads", "1",
           "--scenarios", "many", "--many-trials", "40", "--many-epochs", "1"]  # fmt: skip
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert "40 trials, logistic regression 64-10 on digits" in out
    assert "bookkeeping of the 40-trial optimkit rows" in out
    for column in ("ask + suggest", "storage", "report + prune", "tell + attrs", "ms / trial"):
        assert column in out
    assert out.count("40 complete") == 2  # plain Optuna and the Tuner ran the whole budget


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--many-trials", "0"], "--many-trials: expected an integer >= 1"),
        (["--populations", "64", "0"], "--populations: expected integers >= 1"),
    ],
)
def test_bad_options_exit_2(args, message):
    cmd = [sys.executable, "-m", "benchmarks", "tune", *args]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and message in run.stderr


def test_split_is_the_tuners_stats_and_lies_inside_its_overhead():
    """The Outcome's split is TuneResult.stats per kind (summed by the same calls), every kind
    is there, and the table's percentages are those sums over the wall time."""
    ds = load_dataset("digits", seed=0)
    o = bench_tune.optimkit_tune(ds, 6, 1, "none", 3, bench_tune.TINY)
    assert o.split is not None and set(o.split) == set(STAT_KINDS)
    assert sum(o.split.values()) <= o.overhead + 1e-9 and o.counts == {"complete": 6}
    cells = bench_tune.split_cells(o, 6)
    assert list(cells) == [*bench_tune.GROUPS, "other tuner", "bookkeeping", "ms / trial"]
    for name, kinds in bench_tune.GROUPS.items():
        assert cells[name] == f"{100 * sum(o.split[k] for k in kinds) / o.wall:.1f}%"
    assert cells["bookkeeping"] == f"{100 * o.overhead / o.wall:.1f}%"
    assert cells["ms / trial"] == f"{1e3 * o.overhead / 6:.2f}"


@pytest.mark.parametrize("hidden", [(), (8,)])
def test_plain_model_is_the_tuners_architecture(hidden):
    ds = load_dataset("digits", seed=0)
    model = bench_tune._model(ds, hidden)
    n = sum(p.numel() for p in model.parameters())
    if hidden:
        assert n == 64 * 8 + 8 + 8 * 10 + 10
    else:
        assert n == 64 * 10 + 10
