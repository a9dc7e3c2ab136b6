"""Time to an objective gap <= 1e-9: multinomial logistic regression on digits (issue 5).

Run: ``.venv/bin/python -m benchmarks.bench_solve [--threads 1 2] [--repeats 7] [--clock cpu]``.

Problem: scikit-learn's digits (1797 x 64, 10 classes), standardized, C = 1, objective
f = mean cross-entropy + ||W||^2 / (2 C n) (LogisticRegression's, divided by C n); 650
parameters in float64. f* comes from :func:`optimkit.solve.logistic_regression` (Newton with
Cholesky, run to max |gradient| <= 1e-10).

Contenders, all from zero:

- scikit-learn ``LogisticRegression(solver="lbfgs")`` (scipy's L-BFGS-B, m = 10, Cython loss);
- ``torch.optim.LBFGS(history_size=100, line_search_fn="strong_wolfe")``;
- ``optimkit.optim.LBFGS`` with the same arguments;
- ``optimkit.optim.Newton(hessian="cg")`` (Newton-CG, autograd Hessian-vector products);
- the exact solver itself (Newton + Cholesky on the closed-form Hessian), for reference.

The torch optimizers run with the same closures: "cross_entropy" (autograd through
``F.cross_entropy(X~ @ theta.T, y)`` + penalty, ``backward()``), what a user writes first;
"logsumexp (k x n)" (autograd through ``logsumexp(theta @ X~.T, dim=0)``: the logits laid out
[k, n] so that the softmax reduces across rows, which torch does about twice as fast on this
shape); and "closed form" (loss and gradient (softmax(Z) - Y) X~ / n + penalty computed
directly in that layout, no autograd, stored in ``.grad``). Newton differentiates the returned
loss twice itself, so it gets the two autograd losses.

Method: every method stops on its own gradient tolerance (tolerance_change = 0 for the torch
optimizers, so that they do not stop on a small change in f). For each method the loosest
tolerance of a geometric ladder (1e-4 ... 1e-11, 4 steps per decade) whose solution has
f - f* <= 1e-9 is found first; then all methods are timed at their tolerance in interleaved
rounds (a sample: consecutive solves lasting about ``--sample`` seconds), median of
``--repeats`` samples, threads pinned (torch and BLAS / OpenMP pools). Compare ratios within
one table, not absolute times across runs.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

# Imported here, before threadpool_limits is entered: it only limits the thread pools (OpenMP,
# OpenBLAS) of libraries already loaded, and scikit-learn ships its own libgomp.
from optimkit.optim.lbfgs import LBFGS
from optimkit.optim.newton import Newton
from optimkit.solve import logistic_regression, objective

GAP = 1e-9
C = 1.0
LADDER = [10.0 ** (-4 - j / 4) for j in range(29)]  # 1e-4 ... 1e-11
Solve = Callable[[float], tuple[np.ndarray, np.ndarray, int]]  # tol -> W, b, evaluations


def load_problem():
    X, y = load_digits(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def sklearn_solver(X: np.ndarray, y: np.ndarray) -> Solve:
    def solve(tol: float):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            m = LogisticRegression(C=C, tol=tol, max_iter=100_000).fit(X, y)
        return m.coef_, m.intercept_, int(m.n_iter_[0])

    return solve


def make_closures(X: np.ndarray, y: np.ndarray, theta: torch.Tensor, opt) -> dict:
    """The closures over theta = [W, b] ([k, d + 1]) that the torch optimizers get.

    "cross_entropy": autograd through ``F.cross_entropy`` (calls ``backward()``);
    "logsumexp": autograd through a logsumexp over dim 0 of the logits laid out [k, n];
    "closed form": loss and gradient (softmax(Z) - Y) X~ / n + penalty computed directly
    (no autograd), logits laid out [k, n]; "newton cross_entropy" / "newton logsumexp": the
    loss alone for Newton, which differentiates it twice itself (logsumexp over dim 0 of the
    [k, n] logits).
    """
    n, d = X.shape
    k = theta.shape[0]
    Xa = torch.cat([torch.as_tensor(X), torch.ones(n, 1, dtype=torch.float64)], 1)
    XaT = Xa.T.contiguous()  # [d + 1, n]: logits as [k, n], classes along dim 0
    yt = torch.as_tensor(y)
    YT = F.one_hot(yt, k).to(torch.float64).T.contiguous()  # [k, n]
    pen = torch.full((k, d + 1), 1.0 / (C * n), dtype=torch.float64)
    pen[:, -1] = 0.0  # the intercept is not penalized

    def loss_cross_entropy() -> torch.Tensor:
        return F.cross_entropy(Xa @ theta.T, yt) + 0.5 * (pen * theta * theta).sum()

    def loss_logsumexp() -> torch.Tensor:
        Zt = theta @ XaT
        data = (torch.logsumexp(Zt, 0).sum() - (Zt * YT).sum()) / n
        return data + 0.5 * (pen * theta * theta).sum()

    def closure_cross_entropy() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_cross_entropy()
        loss.backward()
        return loss

    def closure_logsumexp() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_logsumexp()
        loss.backward()
        return loss

    @torch.no_grad()
    def closure_closed() -> torch.Tensor:
        # f = mean(logsumexp(z_i) - z_iy) + penalty, grad = (softmax(Z) - Y) X~ / n + ...
        Zt = theta @ XaT
        m = Zt.amax(0)
        E = torch.exp(Zt - m)
        s = E.sum(0)
        loss = (m.sum() + torch.log(s).sum() - (Zt * YT).sum()) / n
        loss = loss + 0.5 * (pen * theta * theta).sum()
        theta.grad = torch.addmm(pen * theta, E.div_(s).sub_(YT), Xa, alpha=1.0 / n)
        return loss

    return {
        "cross_entropy": closure_cross_entropy,
        "logsumexp": closure_logsumexp,
        "closed form": closure_closed,
        "newton cross_entropy": loss_cross_entropy,
        "newton logsumexp": loss_logsumexp,
    }


def torch_solver(X: np.ndarray, y: np.ndarray, make_opt: Callable, closure_kind: str) -> Solve:
    """A torch closure-API optimizer from theta = 0 with one of :func:`make_closures`'s
    closures, in one ``step`` call."""
    k = int(y.max()) + 1

    def solve(tol: float):
        theta = torch.zeros(k, X.shape[1] + 1, dtype=torch.float64, requires_grad=True)
        opt = make_opt([theta], tol)
        opt.step(make_closures(X, y, theta, opt)[closure_kind])
        W, b = theta.detach()[:, :-1].numpy(), theta.detach()[:, -1].numpy()
        return W, b, int(opt.state[theta]["func_evals"])

    return solve


def exact_solver(X: np.ndarray, y: np.ndarray) -> Solve:
    def solve(tol: float):
        sol = logistic_regression(X, y, C=C, tol=tol)
        return sol.coef.numpy(), sol.intercept.numpy(), int(sol.info["n_iter"])

    return solve


def contenders(X: np.ndarray, y: np.ndarray) -> dict[str, Solve]:
    def lbfgs(cls):
        return lambda params, tol: cls(
            params,
            lr=1,
            max_iter=100_000,
            max_eval=200_000,
            tolerance_grad=tol,
            tolerance_change=0.0,
            history_size=100,
            line_search_fn="strong_wolfe",
        )

    def newton(params, tol):
        return Newton(params, max_iter=200, tolerance_grad=tol, tolerance_change=0.0, hessian="cg")

    return {
        "scikit-learn lbfgs": sklearn_solver(X, y),
        "torch.optim.LBFGS, cross_entropy": torch_solver(
            X, y, lbfgs(torch.optim.LBFGS), "cross_entropy"
        ),
        "torch.optim.LBFGS, logsumexp (k x n)": torch_solver(
            X, y, lbfgs(torch.optim.LBFGS), "logsumexp"
        ),
        "torch.optim.LBFGS, closed form": torch_solver(
            X, y, lbfgs(torch.optim.LBFGS), "closed form"
        ),
        "optimkit LBFGS, cross_entropy": torch_solver(X, y, lbfgs(LBFGS), "cross_entropy"),
        "optimkit LBFGS, logsumexp (k x n)": torch_solver(X, y, lbfgs(LBFGS), "logsumexp"),
        "optimkit LBFGS, closed form": torch_solver(X, y, lbfgs(LBFGS), "closed form"),
        "optimkit Newton-CG, cross_entropy": torch_solver(X, y, newton, "newton cross_entropy"),
        "optimkit Newton-CG, logsumexp (k x n)": torch_solver(X, y, newton, "newton logsumexp"),
        "optimkit.solve exact Newton": exact_solver(X, y),
    }


def calibrate(solve: Solve, gap_of: Callable) -> tuple[float, float, int]:
    """The loosest ladder tolerance reaching f - f* <= GAP: (tol, gap, evaluations)."""
    for tol in LADDER:
        W, b, evals = solve(tol)
        gap = gap_of(W, b)
        if gap <= GAP:
            return tol, gap, evals
    return math.nan, gap, evals


def time_interleaved(
    runs: dict[str, Callable[[], object]], repeats: int, sample: float, clock: Callable
) -> dict[str, float]:
    """Median seconds per run, sampling the methods in rotating interleaved rounds."""
    inner = {}
    for name, run in runs.items():
        run()  # warm-up
        start = clock()
        run()
        inner[name] = max(1, math.ceil(sample / max(clock() - start, 1e-6)))
    samples: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = clock()
            for _ in range(inner[name]):
                runs[name]()
            samples[name].append((clock() - start) / inner[name])
    return {name: statistics.median(s) for name, s in samples.items()}


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def run_table(n_threads: int, repeats: int, sample: float, clock: str) -> Table:
    X, y = load_problem()
    f_star = float(logistic_regression(X, y, C=C, tol=1e-10).objective)

    def gap_of(W, b) -> float:
        return float(objective("logistic", X, y, W, b, C=C)) - f_star

    methods = contenders(X, y)
    settings = {name: calibrate(solve, gap_of) for name, solve in methods.items()}
    runs = {name: (lambda s=methods[name], t=settings[name][0]: s(t)) for name in methods}
    times = time_interleaved(runs, repeats, sample, CLOCKS[clock])
    sk = times["scikit-learn lbfgs"]
    th = times["torch.optim.LBFGS, cross_entropy"]
    table = Table(
        title=f"Multinomial logistic regression on digits (C = 1, standardized, float64): time "
        f"to f - f* <= {GAP:g}; {n_threads} thread(s), {clock} clock, median of {repeats}",
    )
    for col in (
        "method",
        "tolerance",
        "evals / iters",
        "f - f*",
        "time (ms)",
        "sklearn / this",
        "torch LBFGS / this",
    ):
        table.add_column(col, justify="left" if col == "method" else "right")
    for name in methods:
        tol, gap, evals = settings[name]
        t = times[name]
        table.add_row(
            name,
            f"{tol:.2g}",
            str(evals),
            f"{gap:.1e}",
            f"{t * 1e3:.1f}",
            f"{sk / t:.2f}x",
            f"{th / t:.2f}x",
        )
    return table


def main(
    threads: tuple[int, ...] = (1,), repeats: int = 7, sample: float = 0.3, clock: str = "wall"
) -> None:
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    previous = torch.get_num_threads()
    try:
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            with threadpool_limits(limits=n_threads):
                console.print(run_table(n_threads, repeats, sample, clock))
    finally:
        torch.set_num_threads(previous)
    console.print(
        "evals / iters: closure evaluations (torch optimizers; Newton-CG also makes about 15 "
        "Hessian-vector products per iteration), L-BFGS-B iterations (scikit-learn), Newton "
        "iterations (exact). tolerance: each method's own gradient tolerance, the loosest of "
        "the ladder reaching the gap. Ratios > 1x: this method is faster.",
        markup=False,
    )


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sample", type=float, default=0.3)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    args = parser.parse_args()
    main(tuple(args.threads), args.repeats, args.sample, args.clock)


if __name__ == "__main__":
    _cli()
