"""Smoke test of the trainer benchmark (benchmarks/bench_train.py) and its floors
(benchmarks/floor.py): the quick run prints every table with its floor columns, and the
profile prints its split. No timing is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from benchmarks import floor

ROOT = Path(__file__).resolve().parents[1]


def _run(*options: str) -> str:
    cmd = [sys.executable, "-m", "benchmarks", "train", "--quick", "--repeats", "1",
           "--threads", "1", *options]  # fmt: skip
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_quick_run_prints_floors_next_to_every_figure():
    out = _run("--no-cnn")
    assert "measured floor rates: 1 thread: GEMM" in out
    assert "floor ms" in out and "x floor" in out
    assert "population scaling: MLP" in out
    assert "population vs sequential plain torch" in out or "MovieLens skipped" in out


def test_profile_prints_the_split():
    out = _run("--profile")
    for category in ("GEMM", "elementwise", "allocation", "Python/dispatch"):
        assert category in out
    assert "top operators by self CPU time" in out


def test_step_cost_counts_the_mlp_by_hand():
    prof = floor.builtin_profile("mlp", 64, 10, hidden=(128,))
    assert prof.params == 64 * 128 + 128 + 128 * 10 + 10
    assert prof.forward_flops == 2 * (64 * 128 + 128 * 10)
    cost = floor.step_cost(prof, k=8, batch=32)
    gemm = 8 * 32 * (3 * 2 * (64 * 128 + 128 * 10) - 2 * 64 * 128)
    assert cost.flops == gemm + 8 * prof.params * floor.OPTIMIZER_FLOPS["adam"]
    rates = floor.Rates({1: 1e11}, {1: 1e10})
    assert cost.seconds(rates, 1) == max(cost.flops / 1e11, cost.bytes / 1e10)


def test_conv_flops_and_rates_never_fall_with_threads():
    prof = floor.builtin_profile("cnn", 64, 10, channels=(4,))
    assert prof.first_flops == 2 * 4 * 8 * 8 * 9  # 1 -> 4 channels, 3x3, on 8x8
    rates = floor.measure((1, 2), n=128, repeats=1, mb=4)
    assert rates.gemm[2] >= rates.gemm[1] > 0 and rates.copy[2] >= rates.copy[1] > 0
    assert torch.get_num_threads() >= 1
