"""convex: linear and logistic regression trained by every optimizer in the database, with the
suboptimality f(w_t) - f* against the exact optimum (`optimkit.solve.exact_optimum`).

Problems (features standardized over all rows; this is optimization, not generalization):

* least squares on diabetes (442 x 10, target standardized): f = ||y - Xw - b||^2 / (2n),
  scikit-learn's LinearRegression;
* L2 logistic regression on breast_cancer (569 x 30), C = 1: f = mean cross-entropy +
  ||w||^2 / (2Cn), scikit-learn's LogisticRegression(C=1).

Every optimizer of the database that takes dense gradients runs as one population of K
learning rates spread log-uniformly over its tuning range (full batch, float64), the weights
and the intercept as one [K, 1, d + 1] parameter (so Muon sees a matrix). L-BFGS and Newton,
one model per optimizer, run once at their default step with one iteration per step. Each
optimizer's row is its member that first reached 1e-6 suboptimality (or the lowest final gap);
its time to 1e-6 is re-measured with that learning rate alone (K = 1). SparseAdam takes only
sparse gradients and is left out (said in the notes).
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from optimkit.apps.base import App, AppOptions, AppResult, progress_bar

TARGET = 1e-6

#: the optimizers of the quick mode (tests): first-order, schedule-free, second-order
QUICK = ("sgd", "adam", "adamw_schedule_free", "lbfgs", "newton")

PROBLEMS = {
    "diabetes": ("least_squares", "linear regression (least squares)", {}),
    "breast_cancer": ("logistic", "logistic regression (C = 1)", {"C": 1.0}),
}


def problem_data(dataset: str) -> tuple[Tensor, Tensor, Any]:
    """(X standardized [n, d] float64, y as the problem takes it, raw labels/targets)."""
    from optimkit.data import load_raw

    raw = load_raw(dataset)
    X = np.asarray(raw.X, dtype=np.float64)
    X = (X - X.mean(0)) / X.std(0)
    if PROBLEMS[dataset][0] == "least_squares":
        y = np.asarray(raw.y, dtype=np.float64)
        y = (y - y.mean()) / y.std()
        return torch.tensor(X), torch.tensor(y), y
    labels = np.asarray(raw.y)
    classes = np.unique(labels)
    y01 = (labels == classes[1]).astype(np.float64)  # scikit-learn's positive class
    return torch.tensor(X), torch.tensor(y01), labels


def loss_fn(problem: str, X: Tensor, y: Tensor, theta: Tensor, C: float = 1.0) -> Tensor:
    """f per member for theta [K, 1, d + 1] (last column: the intercept) -> [K]."""
    w, b = theta[:, 0, :-1], theta[:, 0, -1]
    z = X @ w.T + b  # [n, K]
    if problem == "least_squares":
        return ((y[:, None] - z) ** 2).mean(0) / 2
    data = (torch.nn.functional.softplus(z) - y[:, None] * z).mean(0)
    return data + (w * w).sum(1) / (2 * C * X.shape[0])


def _lrs(name: str, k: int) -> list[float]:
    from optimkit.optim import OPTIMIZERS

    spec = OPTIMIZERS[name].spec
    h = spec.hyperparameter("lr")
    if not spec.population or h.tune is None:
        return [float(h.default)]
    lo, hi = h.tune
    return [float(v) for v in np.geomspace(lo, hi, k)]


def _build(name: str, theta: Tensor, lrs: list[float], max_iter: int = 1):
    from optimkit.optim import OPTIMIZERS, get_optimizer

    spec = OPTIMIZERS[name].spec
    if not spec.population:  # one model; `max_iter` iterations in one step()
        kwargs: dict[str, Any] = {"lr": lrs[0], "max_iter": max_iter}
        if name == "lbfgs":
            kwargs["line_search_fn"] = "strong_wolfe"
        return get_optimizer(name, [theta], **kwargs)
    lr = torch.tensor(lrs, dtype=torch.float64)
    return get_optimizer(name, [theta], members=len(lrs), lr=lr)


def _one_model_curve(
    name: str,
    problem: str,
    X: Tensor,
    y: Tensor,
    f_star: float,
    lr: float,
    steps: int,
    C: float,
) -> tuple[np.ndarray, float]:
    """L-BFGS / Newton: the gap after t iterations is that of a fresh run of step() with
    max_iter=t (torch's LBFGS keeps no progress across step() calls of max_iter=1, so one
    iteration per step() would stall); stops once the run no longer moves (then the curve
    stays flat). Seconds: the last run's."""
    gaps = np.full((1, steps + 1), np.inf)
    seconds = 0.0
    for t in range(steps + 1):
        theta = torch.zeros(1, 1, X.shape[1] + 1, dtype=torch.float64, requires_grad=True)
        if t:
            opt = _build(name, theta, [lr], max_iter=t)

            def closure(opt=opt, theta=theta) -> Tensor:
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(problem, X, y, theta, C).sum()
                if name != "newton":  # Newton differentiates the closure's loss itself
                    loss.backward()
                return loss

            start = time.perf_counter()
            opt.step(closure)
            seconds = time.perf_counter() - start
        with torch.no_grad():
            f = float(loss_fn(problem, X, y, theta, C)[0])
        gaps[0, t] = f - f_star if math.isfinite(f) else math.inf
        if t >= 3 and gaps[0, t] == gaps[0, t - 1] == gaps[0, t - 2]:
            gaps[0, t:] = gaps[0, t]
            break
    return gaps, seconds


def run_optimizer(
    name: str,
    problem: str,
    X: Tensor,
    y: Tensor,
    f_star: float,
    lrs: list[float],
    steps: int,
    hp: dict[str, Any],
    stop_at: float | None = None,
) -> tuple[np.ndarray, float]:
    """Train K = len(lrs) members from zero for `steps` steps; returns (gaps [K, steps + 1]:
    f(w_t) - f* after t steps, at the evaluation point of schedule-free methods; seconds).
    With `stop_at`, stops once every member's gap is at or below it (for L-BFGS and Newton,
    see `_one_model_curve`)."""
    from optimkit.optim import OPTIMIZERS

    spec = OPTIMIZERS[name].spec
    if not spec.population:
        return _one_model_curve(name, problem, X, y, f_star, lrs[0], steps, float(hp.get("C", 1.0)))
    k = len(lrs)
    theta = torch.zeros(k, 1, X.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    opt = _build(name, theta, lrs)
    C = float(hp.get("C", 1.0))
    create_graph = name == "sophiah"
    schedule_free = hasattr(opt, "eval") and hasattr(opt, "train") and "schedule_free" in name

    def closure() -> Tensor:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(problem, X, y, theta, C).sum()
        loss.backward(create_graph=create_graph)
        return loss

    def gap() -> np.ndarray:
        ctx = nullcontext()
        if schedule_free:
            opt.eval()
        with torch.no_grad(), ctx:
            f = loss_fn(problem, X, y, theta, C)
        if schedule_free:
            opt.train()
        out = (f - f_star).numpy().copy()
        out[~np.isfinite(out)] = np.inf
        return out

    gaps = np.full((k, steps + 1), np.inf)
    gaps[:, 0] = gap()
    if schedule_free:
        opt.train()
    start = time.perf_counter()
    for t in range(1, steps + 1):
        if spec.closure:
            opt.step(closure)
        else:
            closure()
            opt.step()
        gaps[:, t] = gap()
        if stop_at is not None and bool((gaps[:, t] <= stop_at).all()):
            gaps[:, t + 1 :] = gaps[:, t : t + 1]
            break
    seconds = time.perf_counter() - start
    if create_graph:
        theta.grad = None  # drop the graph held by the gradient
    return gaps, seconds


def first_hit(gaps: np.ndarray, target: float = TARGET) -> np.ndarray:
    """Per member the first step with gap <= target (-1 if never)."""
    hit = gaps <= target
    return np.where(hit.any(1), hit.argmax(1), -1)


def pick_member(gaps: np.ndarray, target: float = TARGET) -> int:
    """The member that reached `target` first; else the one with the lowest final gap."""
    hits = first_hit(gaps, target)
    if (hits >= 0).any():
        return int(np.where(hits >= 0, hits, np.iinfo(np.int64).max).argmin())
    final = np.where(np.isfinite(gaps[:, -1]), gaps[:, -1], np.inf)
    return int(final.argmin())


def _baselines(dataset: str, problem: str, X: Tensor, y_raw: Any, hp: dict[str, Any], f_star):
    from sklearn.linear_model import LinearRegression, LogisticRegression

    from optimkit.solve import objective

    Xn = X.numpy()
    rows = []
    if problem == "least_squares":
        est: Any = LinearRegression()
        name = "scikit-learn LinearRegression"
    else:
        est = LogisticRegression(C=hp["C"], max_iter=10_000)
        name = "scikit-learn LogisticRegression (lbfgs, tol=1e-4)"
    start = time.perf_counter()
    est.fit(Xn, y_raw)
    seconds = time.perf_counter() - start
    coef = np.asarray(est.coef_, dtype=np.float64).reshape(-1)
    intercept = float(np.asarray(est.intercept_).reshape(-1)[0])
    f = float(objective(problem, Xn, y_raw, coef, intercept, **hp))
    gap = max(f - f_star, 0.0)
    n_iter = getattr(est, "n_iter_", None)
    rows.append({
        "problem": dataset, "method": name, "kind": "baseline", "lr": math.nan,
        "final_gap": gap,
        "iters_to_1e-6": float(np.max(n_iter)) if n_iter is not None and gap <= TARGET
        else math.nan,
        "seconds_to_1e-6": seconds if gap <= TARGET else math.nan,
    })  # fmt: skip
    return rows


def run(options: AppOptions) -> AppResult:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from optimkit.optim import OPTIMIZERS
    from optimkit.solve import exact_optimum

    torch.manual_seed(options.seed)
    steps = 150 if options.quick else 500
    k = 3 if options.quick else 5
    skipped = {n: "takes only sparse gradients (a linear model's are dense)"
               for n, c in OPTIMIZERS.items() if c.spec.params == "sparse"}  # fmt: skip
    names = [n for n in OPTIMIZERS if n not in skipped and (not options.quick or n in QUICK)]
    rows: list[dict[str, Any]] = []
    curves: dict[str, dict[str, list[float]]] = {}
    f_stars: dict[str, float] = {}
    fig, axes = plt.subplots(1, len(PROBLEMS), figsize=(14, 5.5), squeeze=False)
    progress, bar = progress_bar(options, len(names) * len(PROBLEMS), "convex")
    with progress:
        for ax, (dataset, (problem, label, hp)) in zip(axes[0], PROBLEMS.items(), strict=True):
            X, y, y_raw = problem_data(dataset)
            sol = exact_optimum(problem, X, y_raw if problem == "logistic" else y, **hp)
            f_star = float(sol.objective)
            f_stars[dataset] = f_star
            curves[dataset] = {}
            Xa = X  # intercept handled by theta's last column
            for i, name in enumerate(names):
                progress.update(bar, description=f"{dataset}: {name}")
                lrs = _lrs(name, k)
                gaps, _ = run_optimizer(name, problem, Xa, y, f_star, lrs, steps, hp)
                m = pick_member(gaps)
                hit = int(first_hit(gaps)[m])
                seconds = math.nan
                if hit >= 0:  # time to 1e-6 with that learning rate alone
                    _, seconds = run_optimizer(
                        name, problem, Xa, y, f_star, [lrs[m]], hit, hp, stop_at=TARGET
                    )
                final = float(np.clip(gaps[m, -1], 0.0, None))
                rows.append({
                    "problem": dataset, "method": f"optimkit {name}", "kind": "optimkit",
                    "lr": lrs[m], "final_gap": final,
                    "iters_to_1e-6": float(hit) if hit >= 0 else math.nan,
                    "seconds_to_1e-6": seconds,
                })  # fmt: skip
                curve = np.clip(gaps[m], 1e-17, None)
                curves[dataset][name] = [float(v) for v in curve]
                style = ["-", "--", ":", "-."][i // 10 % 4]
                ax.semilogy(curve, style, lw=1.2, label=name, color=plt.cm.tab10(i % 10))
                progress.advance(bar)
            rows.extend(_baselines(dataset, problem, X, y_raw, hp, f_star))
            ax.axhline(TARGET, color="k", lw=0.8, ls=":")
            ax.set_title(f"{dataset}: {label}")
            ax.set_xlabel("iteration (full batch)")
            ax.set_ylabel("f(w_t) - f*")
            ax.set_ylim(1e-16, None)
        axes[0][-1].legend(fontsize=7, ncol=2, loc="upper right")
    fig.tight_layout()
    table = pd.DataFrame(rows)
    notes = []
    for dataset in PROBLEMS:
        part = table[(table.problem == dataset) & (table.kind == "optimkit")]
        reached = part.dropna(subset=["iters_to_1e-6"])
        fastest = reached.sort_values("seconds_to_1e-6").head(1)
        base = table[(table.problem == dataset) & (table.kind == "baseline")].iloc[0]
        line = (f"{dataset}: {len(reached)}/{len(part)} optimizers reached 1e-6 within {steps} "
                f"iterations")  # fmt: skip
        if len(fastest):
            r = fastest.iloc[0]
            line += (f"; fastest in wall time {r['method']} ({int(r['iters_to_1e-6'])} it, "
                     f"{r['seconds_to_1e-6']:.3g} s)")  # fmt: skip
        line += (f"; {base['method']} took {base['seconds_to_1e-6']:.3g} s to a gap of "
                 f"{base['final_gap']:.2g}")  # fmt: skip
        notes.append(line)
    for name, why in skipped.items():
        notes.append(f"{name} not run: {why}")
    notes.append("time to 1e-6: one run at the chosen lr alone (K = 1), on a shared CPU; "
                 "L-BFGS/Newton iterations include their line searches")  # fmt: skip
    return AppResult(
        title="convex: suboptimality of every optimizer on linear and logistic regression",
        table=table,
        better={"final_gap": "lower", "iters_to_1e-6": "lower", "seconds_to_1e-6": "lower"},
        figures={"suboptimality": fig},
        notes=notes,
        details={"f_star": f_stars, "steps": steps, "lrs_per_optimizer": k,
                 "curves": curves, "skipped": skipped},
    )  # fmt: skip


APP = App(
    name="convex",
    summary="linear/logistic regression by every optimizer: suboptimality vs the exact optimum",
    baseline="scikit-learn LinearRegression / LogisticRegression",
    run=run,
)
