"""The input contract of a tournament report: `TournamentResult`, validated at the boundary.

`optimkit compare` tunes every optimizer with the same budget (Optuna on the population
trainer), re-runs each optimizer's best configuration with S seeds and hands the outcome to
`optimkit.report.write_report` as one `TournamentResult`. Every field is checked here, so the
renderers can trust column names, dtypes and cross-references; a bad input raises a
`ValueError` that names the field and says what was expected.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: Keys every `meta` dict must hold (see `TournamentResult` for their meaning).
META_REQUIRED: tuple[str, ...] = (
    "dataset",
    "metric",
    "greater_is_better",
    "target",
    "trials",
    "epochs",
    "seeds",
)
#: Keys `meta` may hold; shown in the report's protocol section when present.
META_OPTIONAL: tuple[str, ...] = (
    "task",
    "model",
    "sampler",
    "pruner",
    "wall_time",
    "version",
    "date",
)

LEADERBOARD_COLUMNS: tuple[str, ...] = (
    "optimizer",
    "rank",
    "test_mean",
    "test_std",
    "val_mean",
    "val_std",
    "time_to_target_mean",
    "epochs_to_target_mean",
    "reached_target",
    "best_params",
    "n_trials",
)
CURVE_COLUMNS: tuple[str, ...] = (
    "optimizer",
    "seed",
    "epoch",
    "val_metric",
    "val_loss",
    "train_loss",
    "seconds",
)
TRIAL_COLUMNS: tuple[str, ...] = ("optimizer", "trial", "state", "value", "epochs")
TRIAL_STATES: tuple[str, ...] = ("complete", "pruned", "fail")


@dataclass
class TournamentResult:
    """Everything a tournament report shows.

    Attributes:
        meta: the set-up. Required keys: ``dataset`` (name), ``metric`` (name of the val/test
            metric, e.g. ``"accuracy"``), ``greater_is_better`` (bool), ``target`` (the val
            metric value for "time to target"), ``trials`` and ``epochs`` (tuning budget per
            optimizer: trials, and epochs per trial), ``seeds`` (S, re-runs of each best
            configuration). Optional: ``task``, ``model``, ``sampler``, ``pruner``,
            ``wall_time`` (seconds for the whole tournament), ``version`` (optimkit's),
            ``date``. Other keys are kept and listed in the protocol section.
        leaderboard: one row per optimizer with the columns of `LEADERBOARD_COLUMNS`: rank
            (1 = best, ties allowed), test/val mean and std over the S seeds,
            ``time_to_target_mean`` (seconds) and ``epochs_to_target_mean`` (NaN if never
            reached), ``reached_target`` (fraction of seeds in [0, 1]), ``best_params``
            (dict of tuned hyperparameters) and ``n_trials``. Extra columns are kept.
        curves: long frame of the S seed runs of each best configuration, one row per
            (optimizer, seed, epoch), with the columns of `CURVE_COLUMNS`; ``seconds`` is the
            cumulative wall time at the end of that epoch. Metric and loss values may be NaN
            (a diverged run).
        trials: long frame of every tuning trial with the columns of `TRIAL_COLUMNS` plus one
            column per hyperparameter (``lr``, ``weight_decay``, ``momentum``, ``beta1``, ...;
            NaN where an optimizer lacks it). ``state`` is one of `TRIAL_STATES`; ``value`` is
            the trial's best val metric (NaN for failed trials).
        importance: optimizer -> {hyperparameter -> importance in [0, 1]}, as from
            ``optuna.importance.get_param_importances``; may be empty or miss optimizers.

    The constructor validates and normalizes (copies, sorts the leaderboard by rank, coerces
    numeric dtypes); a bad field raises `ValueError` naming it.
    """

    meta: dict[str, Any]
    leaderboard: pd.DataFrame
    curves: pd.DataFrame
    trials: pd.DataFrame
    importance: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.meta = _check_meta(self.meta)
        self.leaderboard = _check_leaderboard(self.leaderboard)
        names = list(self.leaderboard["optimizer"])
        self.curves = _check_curves(self.curves, names)
        self.trials = _check_trials(self.trials, names)
        self.importance = _check_importance(self.importance, names)

    @property
    def optimizers(self) -> list[str]:
        """Optimizer names, best rank first."""
        return list(self.leaderboard["optimizer"])

    @property
    def hyperparameters(self) -> list[str]:
        """The hyperparameter columns of `trials`, in their order there."""
        return [c for c in self.trials.columns if c not in TRIAL_COLUMNS]

    def reaches(self, values: Any) -> Any:
        """Elementwise: does a val-metric value reach the target (>= or <= by direction)?"""
        values = np.asarray(values, dtype=float)
        target = self.meta["target"]
        return values >= target if self.meta["greater_is_better"] else values <= target


def _frame(value: Any, name: str, columns: tuple[str, ...]) -> pd.DataFrame:
    if not isinstance(value, pd.DataFrame):
        raise ValueError(f"{name}: expected a pandas DataFrame, got {type(value).__name__}")
    missing = [c for c in columns if c not in value.columns]
    if missing:
        raise ValueError(
            f"{name}: missing columns {missing}; expected at least {', '.join(columns)}"
        )
    if value.columns.duplicated().any():
        dup = sorted(set(value.columns[value.columns.duplicated()]))
        raise ValueError(f"{name}: duplicate columns {dup}")
    return value.reset_index(drop=True).copy()


def _numeric(df: pd.DataFrame, name: str, cols: tuple[str, ...], *, allow_nan: bool) -> None:
    for c in cols:
        try:
            df[c] = pd.to_numeric(df[c], errors="raise").astype(float)
        except (ValueError, TypeError):
            raise ValueError(f"{name}.{c}: expected numbers") from None
        vals = df[c].to_numpy()
        if np.isinf(vals).any():
            raise ValueError(f"{name}.{c}: expected finite numbers, found inf")
        if not allow_nan and np.isnan(vals).any():
            raise ValueError(f"{name}.{c}: expected numbers, found NaN/missing values")


def _integers(df: pd.DataFrame, name: str, cols: tuple[str, ...], *, low: int) -> None:
    for c in cols:
        _numeric(df, name, (c,), allow_nan=False)
        vals = df[c].to_numpy()
        if (vals != np.round(vals)).any() or (vals < low).any():
            raise ValueError(f"{name}.{c}: expected integers >= {low}")
        df[c] = df[c].astype(np.int64)


def _names(df: pd.DataFrame, name: str, valid: list[str] | None) -> None:
    col = df["optimizer"]
    if not all(isinstance(v, str) and v.strip() for v in col):
        raise ValueError(f"{name}.optimizer: expected non-empty strings")
    if valid is not None:
        unknown = sorted(set(col) - set(valid))
        if unknown:
            raise ValueError(
                f"{name}.optimizer: {unknown} not in the leaderboard; valid: {', '.join(valid)}"
            )


def _check_meta(meta: Any) -> dict[str, Any]:
    if not isinstance(meta, Mapping):
        raise ValueError(f"meta: expected a dict, got {type(meta).__name__}")
    meta = dict(meta)
    missing = [k for k in META_REQUIRED if k not in meta]
    if missing:
        raise ValueError(f"meta: missing keys {missing}; required: {', '.join(META_REQUIRED)}")
    for key in ("dataset", "metric"):
        if not isinstance(meta[key], str) or not meta[key].strip():
            raise ValueError(f"meta.{key}: expected a non-empty string, got {meta[key]!r}")
    if not isinstance(meta["greater_is_better"], bool | np.bool_):
        raise ValueError(
            f"meta.greater_is_better: expected True or False, got {meta['greater_is_better']!r}"
        )
    meta["greater_is_better"] = bool(meta["greater_is_better"])
    target = meta["target"]
    if isinstance(target, bool) or not isinstance(target, int | float | np.number):
        raise ValueError(f"meta.target: expected a number, got {target!r}")
    if not math.isfinite(float(target)):
        raise ValueError(f"meta.target: expected a finite number, got {target!r}")
    meta["target"] = float(target)
    for key in ("trials", "epochs", "seeds"):
        v = meta[key]
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"meta.{key}: expected a positive integer, got {v!r}")
        meta[key] = int(v)
    wall = meta.get("wall_time")
    if wall is not None:
        if isinstance(wall, bool) or not isinstance(wall, int | float | np.number) or wall < 0:
            raise ValueError(f"meta.wall_time: expected seconds >= 0, got {wall!r}")
        meta["wall_time"] = float(wall)
    return meta


def _check_leaderboard(value: Any) -> pd.DataFrame:
    df = _frame(value, "leaderboard", LEADERBOARD_COLUMNS)
    if df.empty:
        raise ValueError("leaderboard: expected one row per optimizer, got an empty frame")
    _names(df, "leaderboard", None)
    dup = sorted(set(df["optimizer"][df["optimizer"].duplicated()]))
    if dup:
        raise ValueError(f"leaderboard.optimizer: duplicate names {dup}; expected one row each")
    _integers(df, "leaderboard", ("rank",), low=1)
    _integers(df, "leaderboard", ("n_trials",), low=0)
    _numeric(
        df,
        "leaderboard",
        ("test_mean", "test_std", "val_mean", "val_std"),
        allow_nan=True,
    )
    _numeric(
        df,
        "leaderboard",
        ("time_to_target_mean", "epochs_to_target_mean", "reached_target"),
        allow_nan=True,
    )
    for c in ("test_std", "val_std", "time_to_target_mean", "epochs_to_target_mean"):
        if (df[c] < 0).any():
            raise ValueError(f"leaderboard.{c}: expected values >= 0 (or NaN)")
    frac = df["reached_target"].fillna(0.0)
    if ((frac < 0) | (frac > 1)).any():
        raise ValueError("leaderboard.reached_target: expected a fraction of seeds in [0, 1]")
    df["reached_target"] = frac
    if not all(isinstance(p, Mapping) for p in df["best_params"]):
        raise ValueError("leaderboard.best_params: expected a dict of hyperparameters per row")
    df["best_params"] = [dict(p) for p in df["best_params"]]
    # Stable: optimizers that tie keep the caller's order.
    return df.sort_values("rank", kind="stable").reset_index(drop=True)


def _check_curves(value: Any, names: list[str]) -> pd.DataFrame:
    df = _frame(value, "curves", CURVE_COLUMNS)
    if df.empty:
        raise ValueError("curves: expected the seed runs' learning curves, got an empty frame")
    _names(df, "curves", names)
    _integers(df, "curves", ("seed",), low=0)
    _integers(df, "curves", ("epoch",), low=0)
    _numeric(df, "curves", ("val_metric", "val_loss", "train_loss"), allow_nan=True)
    _numeric(df, "curves", ("seconds",), allow_nan=False)
    if (df["seconds"] < 0).any():
        raise ValueError("curves.seconds: expected cumulative wall time >= 0")
    key = ["optimizer", "seed", "epoch"]
    if df.duplicated(key).any():
        first = df[df.duplicated(key)].iloc[0]
        raise ValueError(
            "curves: expected one row per (optimizer, seed, epoch); duplicate "
            f"({first['optimizer']!r}, {first['seed']}, {first['epoch']})"
        )
    return df.sort_values(key, kind="stable").reset_index(drop=True)


def _check_trials(value: Any, names: list[str]) -> pd.DataFrame:
    df = _frame(value, "trials", TRIAL_COLUMNS)
    _names(df, "trials", names)
    _integers(df, "trials", ("trial",), low=0)
    _integers(df, "trials", ("epochs",), low=0)
    _numeric(df, "trials", ("value",), allow_nan=True)
    states = df["state"].astype(str).str.lower()
    bad = sorted(set(states) - set(TRIAL_STATES))
    if bad:
        raise ValueError(f"trials.state: unknown {bad}; valid: {', '.join(TRIAL_STATES)}")
    df["state"] = states
    if df.duplicated(["optimizer", "trial"]).any():
        raise ValueError("trials: expected one row per (optimizer, trial); found duplicates")
    if "lr" in df.columns:
        _numeric(df, "trials", ("lr",), allow_nan=True)
        if (df["lr"] <= 0).any():
            raise ValueError("trials.lr: expected learning rates > 0 (or NaN)")
    return df


def _check_importance(value: Any, names: list[str]) -> dict[str, dict[str, float]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"importance: expected a dict, got {type(value).__name__}")
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise ValueError(
            f"importance: optimizers {unknown} not in the leaderboard; valid: {', '.join(names)}"
        )
    out: dict[str, dict[str, float]] = {}
    for opt, imp in value.items():
        if not isinstance(imp, Mapping):
            raise ValueError(f"importance[{opt!r}]: expected a dict param -> importance")
        clean: dict[str, float] = {}
        for param, v in imp.items():
            ok = not isinstance(v, bool) and isinstance(v, int | float | np.number)
            if not ok or not 0.0 <= float(v) <= 1.0:
                raise ValueError(
                    f"importance[{opt!r}][{param!r}]: expected a number in [0, 1], got {v!r}"
                )
            clean[str(param)] = float(v)
        out[opt] = clean
    return out
