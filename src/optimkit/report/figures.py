"""The report's four figures as matplotlib PNGs (no pyplot: plain `Figure` objects on Agg).

``leaderboard`` (test metric mean ± std and time to target per optimizer), ``curves`` (val
metric vs epoch and vs wall time with min-max seed bands, train loss), ``lr_sensitivity``
(every tuning trial's value vs lr) and ``importance`` (hyperparameter importances).
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator

from optimkit.report.data import TournamentResult
from optimkit.report.formatting import (
    colors,
    fmt_mean_std,
    fmt_seconds,
    fmt_target,
    metric_decimals,
    param_colors,
    seeds_reached,
    verdict,
)
from optimkit.report.summary import (
    best_trials,
    curve_bands,
    curve_label,
    focus_range,
    importance_matrix,
    log_y,
    lr_points,
)

STYLE: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.titlepad": 10,
    "axes.labelcolor": "#333333",
    "axes.edgecolor": "#999999",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#e8e8e8",
    "grid.linewidth": 0.8,
    "xtick.color": "#555555",
    "ytick.color": "#555555",
    "legend.frameon": False,
    "savefig.dpi": 150,
    "savefig.facecolor": "white",
    "figure.constrained_layout.w_pad": 0.08,
    "figure.constrained_layout.h_pad": 0.08,
}
TARGET_STYLE: dict[str, Any] = {
    "color": "#555555",
    "linestyle": (0, (4, 3)),
    "linewidth": 1.0,
    "zorder": 1,
}
MUTED = "#777777"


def _png(build: Callable[[TournamentResult], Figure], result: TournamentResult) -> bytes:
    with mpl.rc_context(STYLE):  # type: ignore[arg-type]
        fig = build(result)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    return buf.getvalue()


def leaderboard_figure(result: TournamentResult) -> Figure:
    """Test metric mean ± std (left) and mean time to target (right), rank 1 on top."""
    board, col = result.leaderboard, colors(result)
    n = len(board)
    fig = Figure(figsize=(11, 1.6 + 0.5 * n), layout="constrained")
    ax, ax_t = fig.subplots(1, 2, sharey=True, width_ratios=[3, 2])
    y = np.arange(n)[::-1]
    d = metric_decimals(board["test_mean"], board["test_std"])
    std = board["test_std"].to_numpy() if result.meta["seeds"] > 1 else np.full(n, np.nan)
    mean = board["test_mean"].to_numpy()
    lo, hi = np.nanmin(mean - np.nan_to_num(std)), np.nanmax(mean + np.nan_to_num(std))
    span = hi - lo if hi > lo else max(abs(hi), 1.0) * 0.01
    for yi, (_, row), s in zip(y, board.iterrows(), std, strict=True):
        c = col[row["optimizer"]]
        m = float(row["test_mean"])
        if math.isfinite(m):
            ax.errorbar(
                m,
                yi,
                xerr=None if np.isnan(s) else s,
                fmt="o",
                color=c,
                ms=8,
                elinewidth=2.5,
                capsize=4,
            )
            ax.annotate(
                fmt_mean_std(m, s, d),
                (m + np.nan_to_num(s), yi),
                xytext=(8, 0),
                textcoords="offset points",
                va="center",
                fontsize=9,
                color="#333333",
            )
        else:
            ax.annotate("no result", (lo, yi), va="center", fontsize=9, color=MUTED)
    ax.set_xlim(lo - 0.08 * span, hi + 0.45 * span)
    ax.set_yticks(y, [f"{r}. {o}" for r, o in zip(board["rank"], board["optimizer"], strict=True)])
    ax.tick_params(axis="y", length=0, labelsize=10.5)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_xlabel(f"test {result.meta['metric']} (mean ± std over {result.meta['seeds']} seeds)")
    ax.set_title(f"Test {result.meta['metric']}")
    ax.grid(axis="y", visible=False)

    times = board["time_to_target_mean"].where(board["reached_target"] > 0).to_numpy()
    tmax = np.nanmax(times) if np.isfinite(times).any() else 1.0
    for yi, (_, row), t in zip(y, board.iterrows(), times, strict=True):
        if np.isfinite(t):
            ax_t.barh(yi, t, height=0.55, color=col[row["optimizer"]], alpha=0.85)
            label = fmt_seconds(t)
            if row["reached_target"] < 1:
                label += f"  ({seeds_reached(result, float(row['reached_target']))} seeds)"
            ax_t.annotate(
                label,
                (t, yi),
                xytext=(5, 0),
                textcoords="offset points",
                va="center",
                fontsize=9,
                color="#333333",
            )
        else:
            ax_t.annotate(
                "not reached",
                (0, yi),
                xytext=(5, 0),
                textcoords="offset points",
                va="center",
                fontsize=9,
                color=MUTED,
                style="italic",
            )
    ax_t.set_xlim(0, tmax * 1.45)
    ax_t.set_xlabel("seconds (mean over seeds that reach it)")
    ax_t.set_title(f"Time to val {result.meta['metric']} {fmt_target(result)}")
    ax_t.tick_params(axis="y", length=0)
    ax_t.grid(axis="y", visible=False)
    fig.suptitle(
        "\n".join(textwrap.wrap(verdict(result), 110)),
        x=0.01,
        ha="left",
        fontsize=12.5,
        fontweight="bold",
    )
    return fig


def _legend(fig: Figure, result: TournamentResult, extra: list[Line2D] | None = None) -> None:
    col = colors(result)
    handles = [Line2D([], [], color=col[o], lw=2.5, label=o) for o in result.optimizers]
    handles += extra or []
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 10))


def curves_figure(result: TournamentResult) -> Figure:
    """Val metric vs epoch and vs wall time (mean, min-max band over seeds); train loss."""
    col = colors(result)
    bands = curve_bands(result, "val_metric")
    loss = curve_bands(result, "train_loss")
    fig = Figure(figsize=(15, 5.0), layout="constrained")
    ax_e, ax_s, ax_l = fig.subplots(1, 3, width_ratios=[1, 1, 0.8])
    ax_s.sharey(ax_e)
    for name, b in bands.items():
        for ax, x in ((ax_e, b["epoch"]), (ax_s, b["seconds"])):
            ax.fill_between(x, b["lo"], b["hi"], color=col[name], alpha=0.16, lw=0)
            ax.plot(x, b["mean"], color=col[name], lw=2)
    for name, b in loss.items():
        ax_l.fill_between(b["epoch"], b["lo"], b["hi"], color=col[name], alpha=0.16, lw=0)
        ax_l.plot(b["epoch"], b["mean"], color=col[name], lw=2)
    target = result.meta["target"]
    for ax in (ax_e, ax_s):
        ax.axhline(target, **TARGET_STYLE)
        ax.set_ylabel(curve_label(result, "val_metric"))
    ax_e.annotate(
        f"target {fmt_target(result)}",
        (0, target),
        xycoords=("axes fraction", "data"),
        xytext=(4, 4),
        textcoords="offset points",
        fontsize=8.5,
        color=MUTED,
    )
    ax_e.set_ylim(*focus_range(result, bands))
    ax_e.set_xlabel("epoch")
    ax_s.set_xlabel("wall time (s, mean over seeds)")
    ax_s.set_xlim(left=0)
    ax_e.set_title(f"Val {result.meta['metric']} vs epoch")
    ax_s.set_title(f"Val {result.meta['metric']} vs wall time")
    losses = result.curves["train_loss"].to_numpy()
    if np.isfinite(losses).any() and np.nanmin(losses) > 0:
        ax_l.set_yscale("log")
    ax_l.set_xlabel("epoch")
    ax_l.set_ylabel("train loss")
    ax_l.set_title("Train loss")
    s = result.meta["seeds"]
    band = Line2D([], [], color="#999999", lw=8, alpha=0.3, label=f"min–max over {s} seeds")
    _legend(fig, result, [band])
    return fig


def _segment_label(param: str, value: float) -> str:
    return f"{param} {value:.2f}" if value >= 0.16 else (f"{value:.2f}" if value >= 0.07 else "")


def lr_sensitivity_figure(result: TournamentResult) -> Figure:
    """Trial value vs lr (log x), one panel and color per optimizer on shared axes, all other
    optimizers' trials in light gray behind; pruned trials faded, the best one starred."""
    col, t = colors(result), result.trials
    points, left_out = lr_points(result)
    names = [o for o in result.optimizers if o in points]
    ncols = min(max(len(names), 1), 4)
    nrows = max(math.ceil(len(names) / ncols), 1)
    fig = Figure(figsize=(3.7 * ncols + 0.4, 3.0 * nrows + 1.2), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
    shown = np.concatenate(
        [v["complete"] for v in points.values()]
        + [v["pruned"] for v in points.values()]
        + [np.empty(0, int)]
    )
    best = set(best_trials(result))
    use_log = log_y(result, t["value"].to_numpy(dtype=float))
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    for ax, name in zip(axes, names, strict=False):
        c, idx = col[name], points[name]
        others = t.loc[np.setdiff1d(shown, np.concatenate([idx["complete"], idx["pruned"]]))]
        ax.scatter(others["lr"], others["value"], s=10, color="#d9dde3", lw=0)
        pruned, done = t.loc[idx["pruned"]], t.loc[idx["complete"]]
        ax.scatter(
            pruned["lr"],
            pruned["value"],
            s=24,
            facecolors="none",
            edgecolors=c,
            alpha=0.45,
            linewidths=1,
        )
        ax.scatter(done["lr"], done["value"], s=28, color=c, edgecolors="white", linewidths=0.5)
        for i in sorted(best & set(idx["complete"])):
            ax.scatter(
                t.at[i, "lr"],
                t.at[i, "value"],
                s=200,
                marker="*",
                color=c,
                edgecolors="#222222",
                linewidths=0.9,
                zorder=5,
            )
        ax.axhline(result.meta["target"], **TARGET_STYLE)
        ax.set_title(name, color=c)
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())  # minor log ticks: clutter, and slow
        if use_log:
            ax.set_yscale("log")
    for i, ax in enumerate(axes[: len(names)]):
        if i + ncols >= len(names):  # nothing below it: label its x axis
            ax.xaxis.set_tick_params(labelbottom=True)
            ax.set_xlabel("learning rate (log scale)")
    if not names:
        axes[0].set_visible(True)
        axes[0].axis("off")
        axes[0].text(0.5, 0.5, "no lr in the search space", ha="center", color=MUTED)
    fig.supylabel(f"best val {result.meta['metric']} of the trial", fontsize=10)
    title = f"Learning-rate sensitivity: {len(t) - left_out} tuning trials"
    if left_out:
        title += f" ({left_out} failed or without lr not shown)"
    fig.suptitle(title, x=0.01, ha="left", fontweight="bold")
    handles = [
        Line2D([], [], ls="", marker="o", color="#555555", label="complete trial"),
        Line2D([], [], ls="", marker="o", mfc="none", mec="#555555", alpha=0.5, label="pruned"),
        Line2D(
            [],
            [],
            ls="",
            marker="*",
            ms=13,
            color="#555555",
            mec="#222222",
            label="best (re-run with seeds)",
        ),
        Line2D([], [], ls="", marker="o", ms=5, color="#d9dde3", label="other optimizers"),
        Line2D([], [], **{**TARGET_STYLE, "zorder": None}, label=f"target {fmt_target(result)}"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles))
    return fig


def importance_figure(result: TournamentResult) -> Figure:
    """One stacked horizontal bar per optimizer (rank order): its hyperparameters' importances,
    one color per hyperparameter."""
    frame, notes = importance_matrix(result)
    pcol = param_colors(list(frame.columns))
    n = len(frame)
    fig = Figure(figsize=(11, 1.5 + 0.48 * n), layout="constrained")
    ax = fig.subplots()
    y = np.arange(n)[::-1]
    left = np.zeros(n)
    for param in frame.columns:
        vals = frame[param].to_numpy()
        ax.barh(
            y,
            vals,
            left=left,
            height=0.62,
            color=pcol[param],
            label=param,
            edgecolor="white",
            linewidth=1,
        )
        for yi, v, lft in zip(y, vals, left, strict=True):
            label = _segment_label(param, v)
            if label:
                ax.text(
                    lft + v / 2,
                    yi,
                    label,
                    ha="center",
                    va="center",
                    fontsize=8.5,
                    color="white",
                    fontweight="bold",
                )
        left = left + vals
    for yi, name in zip(y, frame.index, strict=True):
        if name in notes:
            ax.text(0.01, yi, notes[name], va="center", fontsize=9, color=MUTED, style="italic")
    board = result.leaderboard
    ax.set_yticks(y, [f"{r}. {o}" for r, o in zip(board["rank"], board["optimizer"], strict=True)])
    ax.tick_params(axis="y", length=0, labelsize=10.5)
    ax.set_xlim(0, max(1.0, float(left.max())))
    ax.set_ylim(-0.6, n - 0.4)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("Optuna parameter importance (share of the tuning objective's variation)")
    ax.set_title("Hyperparameter importance per optimizer")
    if len(frame.columns):
        fig.legend(loc="outside lower center", ncol=min(len(frame.columns), 8))
    return fig


FIGURES: dict[str, Callable[[TournamentResult], Figure]] = {
    "leaderboard": leaderboard_figure,
    "curves": curves_figure,
    "lr_sensitivity": lr_sensitivity_figure,
    "importance": importance_figure,
}


def render_pngs(result: TournamentResult) -> dict[str, bytes]:
    """PNG bytes of the four figures, by name (see `FIGURES`)."""
    return {name: _png(build, result) for name, build in FIGURES.items()}


def figure_paths(out_dir: Path) -> dict[str, Path]:
    return {name: out_dir / "figures" / f"{name}.png" for name in FIGURES}
