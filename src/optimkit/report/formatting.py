"""Shared look of the report: optimizer colors, number formats and the one-sentence verdict."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from optimkit.report.data import TournamentResult

# Tableau 10: distinct, print- and color-blind-friendlier than matplotlib's defaults.
PALETTE: tuple[str, ...] = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
# Hyperparameters get their own, quieter palette, so they are not mistaken for optimizers.
PARAM_PALETTE: tuple[str, ...] = (
    "#2f4b7c",
    "#7aa6c2",
    "#d4a373",
    "#8e7cc3",
    "#6a994e",
    "#c97b84",
    "#b8b8b8",
    "#3d9a9b",
)
NA = "—"


def colors(result: TournamentResult) -> dict[str, str]:
    """One color per optimizer, assigned in rank order (the winner gets the first)."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(result.optimizers)}


def param_colors(params: list[str]) -> dict[str, str]:
    """One color per hyperparameter, in the given order."""
    return {p: PARAM_PALETTE[i % len(PARAM_PALETTE)] for i, p in enumerate(params)}


def rgba(hex_color: str, alpha: float) -> str:
    """``#rrggbb`` -> ``rgba(r, g, b, alpha)`` for plotly fills."""
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


def metric_decimals(means: Any, stds: Any) -> int:
    """Decimals that show the median positive std to 1-2 significant digits.

    With no positive std (one seed), 3 significant digits of the largest |mean|.
    """
    s = np.asarray(stds, dtype=float)
    s = s[np.isfinite(s) & (s > 0)]
    if s.size:
        smallest = float(np.median(s))
        exponent = math.floor(math.log10(smallest))
        lead = smallest / 10.0**exponent
        d = -exponent + (1 if lead < 2.95 else 0)
    else:
        m = np.abs(np.asarray(means, dtype=float))
        m = m[np.isfinite(m) & (m > 0)]
        d = 3 - 1 - math.floor(math.log10(float(m.max()))) if m.size else 3
    return int(min(max(d, 0), 6))


def fmt_number(value: float, decimals: int) -> str:
    return NA if not math.isfinite(value) else f"{value:.{decimals}f}"


def fmt_mean_std(mean: float, std: float, decimals: int) -> str:
    """``0.981 ± 0.003``; the ± part is dropped when std is NaN."""
    if not math.isfinite(mean):
        return NA
    if not math.isfinite(std):
        return fmt_number(mean, decimals)
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def fmt_seconds(seconds: float) -> str:
    """Human wall time: ``0.42 s``, ``2.1 s``, ``85 s``, ``3.5 min``, ``1.2 h``."""
    if not math.isfinite(seconds):
        return NA
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def fmt_value(value: Any) -> str:
    """A hyperparameter value: ``3.2e-3``, ``0.9``, ``True``, ``'cosine'``."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        return str(value)
    v = float(value)
    if not math.isfinite(v):
        return str(v)
    if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e4):
        mantissa, exponent = f"{v:.1e}".split("e")
        return f"{mantissa.removesuffix('.0')}e{int(exponent)}"
    for digits in range(3, 7):  # 0.99941 -> 0.9994, not 1
        text = f"{v:.{digits}g}"
        if float(text) != round(v) or v == round(v):
            return text
    return text


def fmt_params(params: dict[str, Any], sep: str = ", ") -> str:
    return sep.join(f"{k}={fmt_value(v)}" for k, v in params.items()) or NA


def fmt_target(result: TournamentResult) -> str:
    return f"{result.meta['target']:g}"


def seeds_reached(result: TournamentResult, fraction: float) -> str:
    """``4/5`` seeds when the fraction is a whole number of seeds, else a percentage."""
    s = result.meta["seeds"]
    k = fraction * s
    return f"{round(k)}/{s}" if abs(k - round(k)) < 1e-6 else f"{100 * fraction:.0f}%"


def _reach_phrase(result: TournamentResult, row: Any) -> str:
    target, frac = fmt_target(result), float(row["reached_target"])
    time = float(row["time_to_target_mean"])
    if frac <= 0 or not math.isfinite(time):
        return f"never reaches {target} in {result.meta['epochs']} epochs"
    phrase = f"reaches {target} in {fmt_seconds(time)}"
    return phrase if frac >= 1 else f"{phrase} ({seeds_reached(result, frac)} seeds)"


def verdict(result: TournamentResult) -> str:
    """One sentence: who wins, its test metric, and how fast it reaches the target.

    e.g. ``adam wins: test accuracy 0.981 ± 0.003 (5 seeds), reaches 0.97 in 2.1 s``.
    """
    board = result.leaderboard
    top = board[board["rank"] == board["rank"].min()]
    row = top.iloc[0]
    d = metric_decimals(board["test_mean"], board["test_std"])
    s = result.meta["seeds"]
    std = float(row["test_std"]) if s > 1 else float("nan")
    who = f"{row['optimizer']} wins"
    if len(top) > 1:
        who = f"{' and '.join(top['optimizer'])} tie; {row['optimizer']}"
    seeds = f"{s} seed{'s' if s != 1 else ''}"
    score = fmt_mean_std(float(row["test_mean"]), std, d)
    return f"{who}: test {result.meta['metric']} {score} ({seeds}), {_reach_phrase(result, row)}"


def runner_up(result: TournamentResult) -> str:
    """A second sentence: the runner-up and the fastest optimizer to the target."""
    board = result.leaderboard
    d = metric_decimals(board["test_mean"], board["test_std"])
    std_ok = result.meta["seeds"] > 1
    parts = []
    if len(board) > 1:
        row = board.iloc[1]
        std = float(row["test_std"]) if std_ok else float("nan")
        parts.append(
            f"Runner-up {row['optimizer']}: {fmt_mean_std(float(row['test_mean']), std, d)}"
        )
    times = board["time_to_target_mean"].where(board["reached_target"] > 0)
    if times.notna().any():
        row = board.loc[times.idxmin()]
        parts.append(
            f"fastest to {fmt_target(result)}: {row['optimizer']} "
            f"({fmt_seconds(float(row['time_to_target_mean']))})"
        )
    else:
        parts.append(f"no optimizer reaches {fmt_target(result)}")
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."
