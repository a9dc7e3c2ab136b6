"""The benchmark's closures compute the objective f* is measured on (benchmarks/bench_solve.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from optimkit.optim.lbfgs import LBFGS
from optimkit.solve import logistic_regression, objective

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_solve.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_solve", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data(bench):
    return bench.load_problem()


def test_closures_agree_with_autograd_and_the_objective(bench, data):
    X, y = data
    g = torch.Generator().manual_seed(0)
    theta = (
        0.1 * torch.randn(10, X.shape[1] + 1, generator=g, dtype=torch.float64)
    ).requires_grad_()
    opt = torch.optim.SGD([theta], lr=0.0)
    closures = bench.make_closures(X, y, theta, opt)
    f_ce = closures["cross_entropy"]()
    g_ce = theta.grad.clone()
    f_closed = closures["closed form"]()
    np.testing.assert_allclose(theta.grad.numpy(), g_ce.numpy(), rtol=1e-12, atol=1e-15)
    f_lse = closures["logsumexp"]()
    np.testing.assert_allclose(theta.grad.numpy(), g_ce.numpy(), rtol=1e-12, atol=1e-15)
    f_ref = objective("logistic", X, y, theta[:, :-1].detach(), theta[:, -1].detach(), C=bench.C)
    for f in (
        f_ce,
        f_closed,
        f_lse,
        closures["newton logsumexp"](),
        closures["newton cross_entropy"](),
    ):
        assert float(f.detach()) == pytest.approx(float(f_ref), rel=1e-13)


def test_calibrated_lbfgs_reaches_the_gap(bench, data):
    X, y = data
    with threadpool_limits(1):
        f_star = float(logistic_regression(X, y, C=bench.C).objective)

        def gap_of(W, b):
            return float(objective("logistic", X, y, W, b, C=bench.C)) - f_star

        solve = bench.torch_solver(
            X,
            y,
            lambda p, tol: LBFGS(
                p,
                max_iter=10_000,
                tolerance_grad=tol,
                tolerance_change=0.0,
                history_size=100,
                line_search_fn="strong_wolfe",
            ),
            "closed form",
        )
        tol, gap, evals = bench.calibrate(solve, gap_of)
    assert 0 <= gap <= bench.GAP
    assert tol in bench.LADDER and evals > 10
