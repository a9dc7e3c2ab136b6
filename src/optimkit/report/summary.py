"""Aggregates the figures share: seed bands of learning curves and a focused y range."""

from __future__ import annotations

import numpy as np
import pandas as pd

from optimkit.report.data import TournamentResult

CURVE_LABELS = {"val_metric": "val {metric}", "val_loss": "val loss", "train_loss": "train loss"}


def curve_label(result: TournamentResult, column: str) -> str:
    return CURVE_LABELS[column].format(metric=result.meta["metric"])


def curve_bands(result: TournamentResult, column: str = "val_metric") -> dict[str, pd.DataFrame]:
    """Per optimizer (rank order) and epoch, across seeds: ``mean``, ``lo`` = min, ``hi`` = max
    of `column`, ``n`` seeds with a finite value, and ``seconds`` = mean cumulative wall time.

    Seeds that stopped early drop out of later epochs (``n`` says how many remain); epochs
    that fewer than half of the optimizer's seeds reached are left out, so the mean of the
    last one or two survivors does not pass for the optimizer's curve. NaN values (a diverged
    seed) are skipped.
    """
    out: dict[str, pd.DataFrame] = {}
    grouped = result.curves.groupby("optimizer", sort=False)
    for name in result.optimizers:
        if name not in grouped.groups:
            continue
        runs = grouped.get_group(name)
        keep = runs.groupby("epoch")["seed"].transform("size") * 2 >= runs["seed"].nunique()
        g = runs[keep].groupby("epoch")
        frame = pd.DataFrame(
            {
                "mean": g[column].mean(),
                "lo": g[column].min(),
                "hi": g[column].max(),
                "n": g[column].count(),
                "seconds": g["seconds"].mean(),
            }
        )
        out[name] = frame.reset_index()
    return out


def focus_range(result: TournamentResult, bands: dict[str, pd.DataFrame]) -> tuple[float, float]:
    """A y range for val-metric curves that shows where optimizers differ.

    Early epochs are far from the end values and would squash the interesting part: the range
    spans the 5th to 100th percentile of the mean-curve values (mirrored when lower is
    better), always includes the target, and is padded by 6%.
    """
    vals = np.concatenate([b["mean"].to_numpy() for b in bands.values()] or [np.empty(0)])
    vals = vals[np.isfinite(vals)]
    target = result.meta["target"]
    if vals.size == 0:
        return target - 1.0, target + 1.0
    if result.meta["greater_is_better"]:
        lo, hi = float(np.quantile(vals, 0.05)), float(vals.max())
    else:
        lo, hi = float(vals.min()), float(np.quantile(vals, 0.95))
    lo, hi = min(lo, target), max(hi, target)
    pad = 0.06 * (hi - lo) if hi > lo else max(abs(hi) * 0.05, 1e-3)
    return lo - pad, hi + pad


def best_trials(result: TournamentResult) -> list[int]:
    """Index of each optimizer's best complete trial (by value, respecting direction)."""
    done = result.trials[(result.trials["state"] == "complete") & result.trials["value"].notna()]
    if done.empty:
        return []
    pick = "idxmax" if result.meta["greater_is_better"] else "idxmin"
    return list(getattr(done.groupby("optimizer")["value"], pick)())


def lr_points(result: TournamentResult) -> tuple[dict[str, dict[str, np.ndarray]], int]:
    """Trials with a value and an lr: ``{optimizer: {state: row indices}}``, and the number of
    trials left out (failed, or without value or lr)."""
    t = result.trials
    if "lr" not in t.columns:
        return {}, len(t)
    ok = t["value"].notna() & t["lr"].notna() & (t["state"] != "fail")
    out: dict[str, dict[str, np.ndarray]] = {}
    for name in result.optimizers:
        sel = ok & (t["optimizer"] == name)
        out[name] = {
            state: np.flatnonzero(sel & (t["state"] == state)) for state in ("complete", "pruned")
        }
    return out, int((~ok).sum())


def log_y(result: TournamentResult, values: np.ndarray) -> bool:
    v = values[np.isfinite(values)]
    return (
        not result.meta["greater_is_better"]
        and v.size > 0
        and v.min() > 0
        and v.max() / v.min() > 100
    )


def importance_matrix(result: TournamentResult) -> tuple[pd.DataFrame, dict[str, str]]:
    """Importance per optimizer (rows, rank order) and hyperparameter (columns, most important
    overall first), 0 where an optimizer lacks the hyperparameter; and a note for each
    optimizer without importances (``"only lr tuned"`` or ``"no importances computed"``)."""
    totals: dict[str, float] = {}
    for imp in result.importance.values():
        for k, v in imp.items():
            totals[k] = totals.get(k, 0.0) + v
    params = sorted(totals, key=lambda k: -totals[k])
    frame = pd.DataFrame(0.0, index=result.optimizers, columns=params)
    notes: dict[str, str] = {}
    t = result.trials
    for name in result.optimizers:
        imp = result.importance.get(name, {})
        if imp:
            frame.loc[name, list(imp)] = list(imp.values())
            continue
        mine = t[t["optimizer"] == name]
        tuned = [c for c in result.hyperparameters if mine[c].notna().any()]
        notes[name] = f"only {tuned[0]} tuned" if len(tuned) == 1 else "no importances computed"
    return frame, notes
