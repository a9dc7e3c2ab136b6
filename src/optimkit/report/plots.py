"""The report's interactive figures (plotly): learning curves, lr sensitivity, importance."""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from optimkit.report.data import TournamentResult
from optimkit.report.figures import _segment_label
from optimkit.report.formatting import colors, fmt_params, fmt_target, param_colors, rgba
from optimkit.report.summary import (
    best_trials,
    curve_bands,
    curve_label,
    focus_range,
    importance_matrix,
    log_y,
    lr_points,
)

FONT = (
    'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "Liberation Sans", '
    "Arial, sans-serif"
)
INK, MUTED, GRID = "#1f2933", "#6b7280", "#eceff3"
CURVE_COLUMNS = ("val_metric", "val_loss", "train_loss")


def _layout(fig: go.Figure, height: int, **kwargs: Any) -> go.Figure:
    layout: dict[str, Any] = {
        "template": "plotly_white",
        "height": height,
        "font": {"family": FONT, "size": 13, "color": INK},
        "margin": {"l": 64, "r": 24, "t": 56, "b": 56},
        "hoverlabel": {"font": {"family": FONT, "size": 12}},
        "legend": {"orientation": "h", "x": 0, "y": -0.16, "yanchor": "top"},
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
    }
    fig.update_layout(**(layout | kwargs))
    fig.update_xaxes(gridcolor=GRID, zeroline=False, linecolor="#c9ced6", ticks="outside")
    fig.update_yaxes(gridcolor=GRID, zeroline=False, linecolor="#c9ced6", ticks="outside")
    return fig


def _target_shapes(result: TournamentResult, refs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """A dashed horizontal line at the target on each (x axis, y axis) pair; labeled once."""
    shapes = []
    for i, (xref, yref) in enumerate(refs):
        shape: dict[str, Any] = {
            "type": "line",
            "xref": f"{xref} domain",
            "yref": yref,
            "x0": 0,
            "x1": 1,
            "y0": result.meta["target"],
            "y1": result.meta["target"],
            "line": {"color": "#4b5563", "width": 1.2, "dash": "dash"},
            "layer": "below",
        }
        if i == 0:
            shape["label"] = {
                "text": f"target {fmt_target(result)}",
                "textposition": "start",
                "yanchor": "bottom",
                "font": {"size": 11, "color": MUTED},
            }
        shapes.append(shape)
    return shapes


def _positive(result: TournamentResult, column: str) -> bool:
    v = result.curves[column].to_numpy()
    v = v[np.isfinite(v)]
    return v.size > 0 and bool(v.min() > 0)


def curves_plot(result: TournamentResult) -> go.Figure:
    """Val metric vs epoch and vs wall time: mean line and min-max band over seeds per
    optimizer; buttons switch the y quantity to val loss or train loss (log scale)."""
    col = colors(result)
    bands = {c: curve_bands(result, c) for c in CURVE_COLUMNS}
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        horizontal_spacing=0.04,
        subplot_titles=("vs epoch", "vs wall time (mean over seeds)"),
    )
    ys: dict[str, list[Any]] = {c: [] for c in CURVE_COLUMNS}
    cds: dict[str, list[Any]] = {c: [] for c in CURVE_COLUMNS}
    for name, b in bands["val_metric"].items():
        for c_idx, (xcol, xlabel) in enumerate((("epoch", "epoch"), ("seconds", "s")), start=1):
            x = b[xcol].to_numpy()
            fig.add_trace(
                go.Scatter(
                    x=np.concatenate([x, x[::-1]]),
                    y=np.concatenate([b["hi"], b["lo"][::-1]]),
                    fill="toself",
                    fillcolor=rgba(col[name], 0.15),
                    line={"width": 0},
                    hoverinfo="skip",
                    legendgroup=name,
                    showlegend=False,
                    name=html.escape(f"{name} band"),
                ),
                row=1,
                col=c_idx,
            )
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=b["mean"],
                    mode="lines",
                    line={"color": col[name], "width": 2.4},
                    name=html.escape(name),
                    legendgroup=name,
                    showlegend=c_idx == 1,
                    customdata=np.stack([b["lo"], b["hi"], b["n"]], axis=1),
                    hovertemplate=f"{xlabel} %{{x:.4g}}: %{{y:.4g}} "
                    "(min–max %{customdata[0]:.4g}–%{customdata[1]:.4g}, "
                    "%{customdata[2]} seeds)",
                ),
                row=1,
                col=c_idx,
            )
            for c in CURVE_COLUMNS:
                bc = bands[c][name]
                ys[c] += [np.concatenate([bc["hi"], bc["lo"][::-1]]), bc["mean"]]
                cds[c] += [None, np.stack([bc["lo"], bc["hi"], bc["n"]], axis=1)]
    lo, hi = focus_range(result, bands["val_metric"])
    shapes = _target_shapes(result, [("x", "y"), ("x2", "y")])
    buttons = []
    for c in CURVE_COLUMNS:
        log = c != "val_metric" and _positive(result, c)
        relayout: dict[str, Any] = {
            "yaxis.title.text": curve_label(result, c),
            "yaxis.type": "log" if log else "linear",
            "yaxis2.type": "log" if log else "linear",
            "shapes": shapes if c == "val_metric" else [],
        }
        if c == "val_metric":
            relayout.update({"yaxis.range": [lo, hi], "yaxis.autorange": False})
        else:
            relayout["yaxis.autorange"] = True
        buttons.append(
            {
                "label": curve_label(result, c),
                "method": "update",
                "args": [{"y": ys[c], "customdata": cds[c]}, relayout],
            }
        )
    _layout(
        fig,
        470,
        shapes=shapes,
        hovermode="x unified",
        updatemenus=[
            {
                "type": "buttons",
                "direction": "right",
                "buttons": buttons,
                "x": 0,
                "xanchor": "left",
                "y": 1.13,
                "yanchor": "bottom",
                "showactive": True,
                "bgcolor": "#f3f4f6",
                "bordercolor": "#d1d5db",
                "font": {"size": 12},
                "pad": {"r": 0, "t": 0},
            }
        ],
        margin={"l": 64, "r": 24, "t": 84, "b": 56},
    )
    fig.update_yaxes(title_text=curve_label(result, "val_metric"), range=[lo, hi], row=1, col=1)
    fig.update_xaxes(title_text="epoch", row=1, col=1)
    fig.update_xaxes(title_text="wall time (s)", rangemode="tozero", row=1, col=2)
    fig.update_annotations(font={"size": 13, "color": MUTED}, xanchor="left", x=0)
    fig.layout.annotations[1].x = 0.52
    return fig


def lr_plot(result: TournamentResult) -> go.Figure:
    """Every tuning trial's value vs its lr (log x): one panel and color per optimizer on
    shared axes, the other optimizers' trials in light gray behind; pruned trials are faded
    open circles and each optimizer's best trial is a star."""
    col, t = colors(result), result.trials
    hp = [c for c in result.hyperparameters if c != "lr"]
    points, _ = lr_points(result)
    names = [o for o in result.optimizers if o in points]
    if not names:
        return _message("no lr in the search space")
    ncols = min(len(names), 4)
    nrows = math.ceil(len(names) / ncols)
    fig = make_subplots(
        rows=nrows,
        cols=ncols,
        shared_xaxes="all",
        shared_yaxes="all",
        subplot_titles=[html.escape(n) for n in names],
        horizontal_spacing=0.025,
        vertical_spacing=0.16 / nrows,
    )
    shown = np.concatenate([np.concatenate([v["complete"], v["pruned"]]) for v in points.values()])
    best = set(best_trials(result))

    def details(rows: Any) -> np.ndarray:
        text = [
            fmt_params({k: r[k] for k in hp if _present(r[k])}, sep="<br>")
            for _, r in rows.iterrows()
        ]
        out = np.empty((len(rows), 4), dtype=object)
        for j, row in enumerate(
            zip(rows["trial"], rows["state"], rows["epochs"], text, strict=True)
        ):
            out[j] = row
        return out

    def template(name: str) -> str:
        return (
            f"<b>{html.escape(name)}</b> trial %{{customdata[0]}} (%{{customdata[1]}}, "
            "%{customdata[2]} epochs)<br>lr %{x:.3g} → %{y:.4g}<br>%{customdata[3]}"
            "<extra></extra>"
        )

    for k, name in enumerate(names):
        row, column, c, idx = k // ncols + 1, k % ncols + 1, col[name], points[name]
        own = np.concatenate([idx["complete"], idx["pruned"]])
        others = t.loc[np.setdiff1d(shown, own)]
        groups = [
            (others, "others", {"color": "#dde1e7", "size": 5}, 1.0),
            (
                t.loc[idx["pruned"]],
                "pruned",
                {"color": c, "size": 8, "symbol": "circle-open", "line": {"width": 1.4}},
                0.5,
            ),
            (
                t.loc[idx["complete"]],
                "complete",
                {"color": c, "size": 8, "line": {"color": "white", "width": 0.6}},
                0.95,
            ),
            (
                t.loc[sorted(best & set(idx["complete"]))],
                "best",
                {
                    "color": c,
                    "size": 17,
                    "symbol": "star",
                    "line": {"color": "#111827", "width": 1},
                },
                1.0,
            ),
        ]
        for rows, kind, marker, opacity in groups:
            mine = kind != "others"
            fig.add_trace(
                go.Scatter(
                    x=rows["lr"],
                    y=rows["value"],
                    mode="markers",
                    name=html.escape(f"{name} {kind}"),
                    showlegend=False,
                    opacity=opacity,
                    marker=marker,
                    customdata=details(rows) if mine else None,
                    hovertemplate=template(name) if mine else None,
                    hoverinfo=None if mine else "skip",
                ),
                row=row,
                col=column,
            )
        if k + ncols >= len(names):  # nothing below this panel: label its x axis
            fig.update_xaxes(showticklabels=True, title_text="learning rate", row=row, col=column)
    refs = [(f"x{k + 1 if k else ''}", f"y{k + 1 if k else ''}") for k in range(len(names))]
    _layout(
        fig,
        nrows * 260 + 110,
        shapes=_target_shapes(result, refs),
        hovermode="closest",
        margin={"l": 64, "r": 24, "t": 56, "b": 64},
    )
    fig.update_xaxes(type="log", dtick=1, exponentformat="power")
    fig.update_yaxes(type="log" if log_y(result, t["value"].to_numpy(dtype=float)) else "linear")
    fig.update_yaxes(title_text=f"best val {result.meta['metric']}", col=1)
    for k, name in enumerate(names):
        fig.layout.annotations[k].update(
            font={"color": col[name], "size": 14},
            xanchor="left",
            x=fig.layout.annotations[k].x - 0.5 / ncols + 0.01,
        )
    return fig


def _message(text: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(
        text=text,
        x=0.5,
        y=0.5,
        xref="paper",
        yref="paper",
        showarrow=False,
        font={"color": MUTED, "size": 14},
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, 160)


def _present(value: Any) -> bool:
    if value is None:
        return False
    return not (isinstance(value, float | np.floating) and math.isnan(value))


def importance_plot(result: TournamentResult) -> go.Figure:
    """One stacked horizontal bar per optimizer (rank order): its hyperparameters'
    importances, one color per hyperparameter; notes where there is nothing to rank."""
    frame, notes = importance_matrix(result)
    pcol = param_colors(list(frame.columns))
    labels = [
        f"{r}. {html.escape(o)}"
        for r, o in zip(result.leaderboard["rank"], frame.index, strict=True)
    ]
    fig = go.Figure()
    for param in frame.columns:
        vals = frame[param].to_numpy()
        fig.add_trace(
            go.Bar(
                x=[v if v > 0 else None for v in vals],  # no zero-width bars for absent params
                y=labels,
                orientation="h",
                name=html.escape(param),
                marker={"color": pcol[param], "line": {"color": "white", "width": 1}},
                text=[_segment_label(param, v) for v in vals],
                textposition="inside",
                insidetextanchor="middle",
                textfont={"color": "white", "size": 12},
                hovertemplate=f"%{{y}}: {html.escape(param)} %{{x:.3f}}<extra></extra>",
            )
        )
    for name, label in zip(frame.index, labels, strict=True):
        if name in notes:
            fig.add_annotation(
                text=f"<i>{html.escape(notes[name])}</i>",
                x=0.005,
                y=label,
                xanchor="left",
                showarrow=False,
                font={"color": MUTED, "size": 12},
            )
    _layout(
        fig,
        110 + 44 * len(frame),
        barmode="stack",
        bargap=0.3,
        legend={
            "orientation": "h",
            "x": 0,
            "y": 1.02,
            "yanchor": "bottom",
            "title": "",
            "traceorder": "normal",
        },
        margin={"l": 110, "r": 24, "t": 48, "b": 56},
    )
    total = float(frame.sum(axis=1).max()) if len(frame.columns) else 1.0
    fig.update_xaxes(range=[0, max(1.0, total)], title_text="Optuna parameter importance")
    fig.update_yaxes(autorange="reversed", showgrid=False, ticks="")
    return fig
