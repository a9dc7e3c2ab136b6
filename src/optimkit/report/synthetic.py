"""A realistic synthetic `TournamentResult`, for demos, docs and tests of the report.

The numbers imitate a tournament of compare's default optimizers on scikit-learn's digits with
a small MLP: power-law learning curves ``a - (a - a0) (1 + e / tau)^(-3/2)`` per seed (noisy,
with patience-based early stopping), an lr-sensitivity valley around each optimizer's best lr
(divergence beyond it; the best lr is the middle of the optimizer's lr search range in the
optimizer database, the other searched hyperparameters cost a little away from the middle of
theirs), median-style pruning and Dirichlet parameter importances. Nothing here
is a measurement; `optimkit compare` produces the real thing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from optimkit.optim.database import COMPARE_DEFAULTS, entry
from optimkit.report.data import TournamentResult

#: learning-curve shapes, dealt to the optimizers in order (no optimizer is named here):
#: (final accuracy, tau in epochs, seconds per epoch)
_SHAPES: tuple[tuple[float, float, float], ...] = (
    (0.962, 2.4, 0.16),
    (0.972, 0.9, 0.17),
    (0.974, 0.8, 0.17),
    (0.967, 1.1, 0.17),
    (0.975, 0.6, 0.19),
    (0.980, 0.5, 0.2),
    (0.979, 0.5, 0.21),
)
#: compare's default tournament (from the optimizer database)
DEFAULT_OPTIMIZERS: tuple[str, ...] = COMPARE_DEFAULTS


def _space(name: str) -> dict[str, dict[str, Any]]:
    """The optimizer's default search space from the database; names it does not know (any
    label works in a report) search lr alone."""
    try:
        space = entry(name).tuning_space()
    except ValueError:
        space = {}
    space.setdefault("lr", {"low": 1e-4, "high": 1.0, "log": True})
    return space


def _profile(name: str, i: int) -> tuple[Any, ...]:
    """(final accuracy, tau, seconds per epoch, best lr, {name: range} of the others)."""
    space = _space(name)
    lr = space.pop("lr")
    best_lr = math.sqrt(lr["low"] * lr["high"]) if lr["low"] > 0 else lr["high"] / 10
    return (*_SHAPES[i % len(_SHAPES)], best_lr, space)


def _sample_param(rng: np.random.Generator, spec: dict[str, Any]) -> tuple[float, float]:
    """A value drawn from a range ``{low, high, log}`` and its place in it (-1 .. 1)."""
    lo, hi = float(spec["low"]), float(spec["high"])
    if spec.get("log") and lo > 0:
        u = rng.uniform(math.log(lo), math.log(hi))
        mid, half = (math.log(lo) + math.log(hi)) / 2, (math.log(hi) - math.log(lo)) / 2
        return float(math.exp(u)), (u - mid) / half if half else 0.0
    x = rng.uniform(lo, hi)
    half = (hi - lo) / 2
    return float(x), (x - (lo + hi) / 2) / half if half else 0.0


def _seed_run(
    rng: np.random.Generator, profile: tuple[Any, ...], epochs: int, patience: int
) -> pd.DataFrame:
    a, tau, sec = (
        profile[0] + rng.normal(0, 0.0025),
        profile[1] * rng.uniform(0.85, 1.15),
        profile[2],
    )
    e = np.arange(1, epochs + 1, dtype=float)
    gap = (a - 0.1) * (1 + e / tau) ** -1.5
    val = np.clip(a - gap + rng.normal(0, 0.0028, epochs), 0, 1)
    overfit = 0.004 * np.maximum(0, e - 12)
    val_loss = 0.07 + 2.6 * gap + overfit + rng.normal(0, 0.004, epochs)
    train_loss = 0.008 + 2.2 * (1 + e / (0.8 * tau)) ** -1.6 * rng.uniform(0.95, 1.05)
    seconds = 0.4 + np.cumsum(sec * rng.lognormal(0, 0.08, epochs))
    best, since, stop = -1.0, 0, epochs
    for i, v in enumerate(val):
        best, since = (v, 0) if v > best else (best, since + 1)
        if since >= patience:
            stop = i + 1
            break
    return pd.DataFrame(
        {
            "epoch": e[:stop].astype(int),
            "val_metric": val[:stop],
            "val_loss": val_loss[:stop],
            "train_loss": train_loss[:stop],
            "seconds": seconds[:stop],
        }
    )


def _trials(
    rng: np.random.Generator, name: str, profile: tuple[Any, ...], n: int, epochs: int
) -> pd.DataFrame:
    a, _, _, lr_best, extra = profile
    rows: list[dict[str, Any]] = []
    best_lr, best_value = lr_best, -np.inf
    for t in range(n):
        # Random start, then TPE-like: sample near the best lr found so far.
        if t < 10 or rng.random() < 0.25:
            lr = float(10 ** rng.uniform(-5, 0))
        else:
            lr = float(np.clip(best_lr * 10 ** rng.normal(0, 0.45), 1e-5, 1.0))
        row: dict[str, Any] = {"optimizer": name, "trial": t, "lr": lr}
        d = math.log10(lr / lr_best)
        penalty = 0.045 * d**2 + (0.25 * d**2 if d > 0.7 else 0.0)
        for p, spec in extra.items():
            row[p], z = _sample_param(rng, spec)
            penalty += 0.01 * z**2
        value = a - penalty + rng.normal(0, 0.003)
        state, n_epochs = "complete", int(rng.integers(epochs // 2, epochs + 1))
        if lr > 40 * lr_best:  # diverged: chance level, or a NaN loss that fails the trial
            value, n_epochs = 0.1 + rng.uniform(0, 0.03), int(rng.integers(1, min(4, epochs) + 1))
            state = "fail" if rng.random() < 0.5 else "pruned"
        elif t >= 5 and value < a - 0.06 and rng.random() < 0.8:
            state, n_epochs = "pruned", int(rng.integers(1, max(2, epochs // 2)))
            value -= rng.uniform(0, 0.02)
        if state == "complete" and value > best_value:
            best_lr, best_value = lr, value
        row.update(
            state=state,
            value=float("nan") if state == "fail" else float(np.clip(value, 0.05, 1)),
            epochs=n_epochs,
        )
        rows.append(row)
    return pd.DataFrame(rows)


def synthetic_result(
    *,
    optimizers: tuple[str, ...] = DEFAULT_OPTIMIZERS,
    seeds: int = 5,
    trials: int = 40,
    epochs: int = 30,
    greater_is_better: bool = True,
    random_state: int = 0,
) -> TournamentResult:
    """A synthetic, internally consistent tournament on digits (see the module docstring).

    Optimizer i gets curve shape i (cyclically) and its database search space (names the
    database does not know search lr alone). With
    ``greater_is_better=False`` the metric is the error rate ``1 - accuracy`` (target 0.03).
    """
    rng = np.random.default_rng(random_state)
    target = 0.97
    curves, trial_frames, rows, importance = [], [], [], {}
    for i, name in enumerate(optimizers):
        profile = _profile(name, i)
        tf = _trials(rng, name, profile, trials, epochs)
        trial_frames.append(tf)
        done = tf[tf["state"] == "complete"]
        if done.empty:  # a tiny budget may prune everything: take the best finished trial
            done = tf[tf["value"].notna()]
        best = done.loc[done["value"].idxmax()]
        best_params = {k: float(best[k]) for k in ("lr", *profile[4])}
        tests, vals, times, eps = [], [], [], []
        for s in range(seeds):
            run = _seed_run(rng, profile, epochs, patience=8)
            run.insert(0, "seed", s)
            run.insert(0, "optimizer", name)
            curves.append(run)
            k = int(run["val_metric"].to_numpy().argmax())
            vals.append(run["val_metric"].iloc[k])
            tests.append(vals[-1] - 0.002 + rng.normal(0, 0.003))
            hit = np.flatnonzero(run["val_metric"].to_numpy() >= target)
            times.append(run["seconds"].iloc[hit[0]] if hit.size else np.nan)
            eps.append(run["epoch"].iloc[hit[0]] if hit.size else np.nan)
        times_a, eps_a = np.array(times, float), np.array(eps, float)
        reached = np.isfinite(times_a)
        rows.append(
            {
                "optimizer": name,
                "test_mean": float(np.mean(tests)),
                "test_std": float(np.std(tests, ddof=1)) if seeds > 1 else 0.0,
                "val_mean": float(np.mean(vals)),
                "val_std": float(np.std(vals, ddof=1)) if seeds > 1 else 0.0,
                "time_to_target_mean": float(times_a[reached].mean()) if reached.any() else np.nan,
                "epochs_to_target_mean": float(eps_a[reached].mean()) if reached.any() else np.nan,
                "reached_target": float(reached.mean()),
                "best_params": best_params,
                "n_trials": trials,
            }
        )
        params = ("lr", *profile[4])
        if len(params) > 1:
            w = rng.dirichlet([6.0] + [1.5] * (len(params) - 1))
            importance[name] = {p: float(v) for p, v in zip(params, w, strict=True)}
        else:
            importance[name] = {}
    board = pd.DataFrame(rows)
    board["rank"] = board["test_mean"].rank(ascending=False, method="min").astype(int)
    curves_df = pd.concat(curves, ignore_index=True)
    trials_df = pd.concat(trial_frames, ignore_index=True)
    metric = "accuracy"
    if not greater_is_better:
        metric, target = "error", 1 - target
        for col in ("test_mean", "val_mean"):
            board[col] = 1 - board[col]
        curves_df["val_metric"] = 1 - curves_df["val_metric"]
        trials_df["value"] = 1 - trials_df["value"]
    wall = float(curves_df.groupby(["optimizer", "seed"])["seconds"].max().sum())
    wall += float((trials_df["epochs"] * 0.18).sum())
    meta = {
        "dataset": "digits",
        "task": "classification (10 classes)",
        "model": "mlp 64-128-10, relu",
        "metric": metric,
        "greater_is_better": greater_is_better,
        "target": round(target, 6),
        "trials": trials,
        "epochs": epochs,
        "seeds": seeds,
        "sampler": "TPESampler(seed=0)",
        "pruner": "MedianPruner(n_startup_trials=5, n_warmup_steps=3)",
        "wall_time": wall,
        "version": "0.1.0",
        "date": "2025-01-01 12:00",
        "data": "synthetic (optimkit.report.synthetic)",
    }
    return TournamentResult(meta, board, curves_df, trials_df, importance)
