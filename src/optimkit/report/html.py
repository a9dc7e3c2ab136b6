"""The tournament report as one self-contained, offline HTML page.

plotly.js is embedded once, inline, in ``<head>``; every figure is a ``div`` plus an inline
``Plotly.newPlot`` call, and the CSS is inline too, so the file has no network references and
opens from a laptop disk, an e-mail attachment or a CI artifact alike. Key elements carry ids:
``leaderboard`` (the table), ``curves``, ``lr-sensitivity`` and ``importance`` (the plots).
"""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np
import plotly.io as pio
from plotly.offline import get_plotlyjs

from optimkit.report.data import TRIAL_STATES, TournamentResult
from optimkit.report.formatting import (
    NA,
    colors,
    fmt_mean_std,
    fmt_number,
    fmt_seconds,
    fmt_target,
    fmt_value,
    metric_decimals,
    runner_up,
    seeds_reached,
    verdict,
)
from optimkit.report.plots import curves_plot, importance_plot, lr_plot
from optimkit.report.summary import lr_points

PLOTLY_CONFIG = {
    "displaylogo": False,
    "responsive": True,
    "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d"],
    "toImageButtonOptions": {"format": "png", "scale": 2},
}

CSS = """
:root {
  --ink: #1f2933; --muted: #6b7280; --line: #e5e7eb; --bg: #f4f6f9; --card: #ffffff;
  --accent: #4e79a7; --gold: #e9b949; --silver: #b8c0cc; --bronze: #d0916b;
  --font: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "Liberation Sans",
    Arial, sans-serif;
}
* { box-sizing: border-box; }
html { scroll-behavior: smooth; }
body { margin: 0; background: var(--bg); color: var(--ink); font: 15px/1.5 var(--font); }
.wrap { max-width: 1200px; margin: 0 auto; padding: 0 28px; }
header.hero {
  background: linear-gradient(135deg, #17233b 0%, #26406b 60%, #2f5287 100%);
  color: #f8fafc; padding: 34px 0 30px;
}
.eyebrow { text-transform: uppercase; letter-spacing: .12em; font-size: 12px; opacity: .75; }
h1#verdict { font-size: 28px; line-height: 1.25; margin: 8px 0 6px; font-weight: 700;
  text-wrap: pretty; }
.sub { margin: 0 0 18px; font-size: 16px; opacity: .85; }
.chips { display: flex; flex-wrap: wrap; gap: 8px; list-style: none; margin: 0; padding: 0; }
.chips li {
  background: rgba(255,255,255,.10); border: 1px solid rgba(255,255,255,.16);
  border-radius: 999px; padding: 3px 12px; font-size: 13px;
}
.chips li span { opacity: .65; margin-right: 6px; }
nav.toc {
  position: sticky; top: 0; z-index: 5; background: rgba(255,255,255,.94);
  backdrop-filter: blur(6px); border-bottom: 1px solid var(--line);
}
nav.toc .wrap { display: flex; gap: 22px; padding-top: 10px; padding-bottom: 10px; }
nav.toc a { color: var(--muted); text-decoration: none; font-size: 14px; font-weight: 600; }
nav.toc a:hover { color: var(--accent); }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 16px; margin: 24px 0; }
.kpi {
  background: var(--card); border-radius: 12px; padding: 16px 18px;
  box-shadow: 0 1px 2px rgba(16,24,40,.06), 0 1px 3px rgba(16,24,40,.08);
  border-top: 4px solid var(--accent);
}
.kpi .label { color: var(--muted); font-size: 12px; text-transform: uppercase;
  letter-spacing: .06em; }
.kpi .value { font-size: 24px; font-weight: 700; margin-top: 2px; }
.kpi .note { color: var(--muted); font-size: 13px; }
section.card {
  background: var(--card); border-radius: 12px; padding: 22px 24px; margin: 0 0 24px;
  box-shadow: 0 1px 2px rgba(16,24,40,.06), 0 1px 3px rgba(16,24,40,.08);
  scroll-margin-top: 56px;
}
section.card h2 { margin: 0 0 4px; font-size: 20px; }
.caption { color: var(--muted); margin: 0 0 14px; font-size: 14px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th { text-align: left; color: var(--muted); font-weight: 600; font-size: 11.5px;
  text-transform: uppercase; letter-spacing: .04em; border-bottom: 2px solid var(--line);
  padding: 8px 8px; vertical-align: bottom; }
td { padding: 9px 8px; border-bottom: 1px solid var(--line); vertical-align: middle; }
td.cfg { min-width: 230px; line-height: 1.9; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; text-align: right; }
th.num { text-align: right; white-space: nowrap; }
tr.winner td { background: #fbf7ea; }
tbody tr:hover td { background: #f6f8fb; }
.rank { display: inline-flex; width: 28px; height: 28px; border-radius: 50%;
  align-items: center; justify-content: center; font-weight: 700; font-size: 13px;
  background: #eef1f5; color: #4b5563; }
.rank.r1 { background: var(--gold); color: #3d2e00; }
.rank.r2 { background: var(--silver); color: #1f2933; }
.rank.r3 { background: var(--bronze); color: #3b1f0e; }
.opt { font-weight: 700; white-space: nowrap; }
.dot { display: inline-block; width: 10px; height: 10px; border-radius: 50%;
  margin-right: 8px; vertical-align: 0; }
.muted { color: var(--muted); }
.warn { color: #b45309; }
.param { display: inline-block; background: #f1f4f8; border-radius: 6px; padding: 1px 7px;
  margin: 2px 4px 2px 0; font: 12.5px/1.6 ui-monospace, "DejaVu Sans Mono", monospace;
  white-space: nowrap; }
.param b { color: var(--muted); font-weight: 600; }
.plot { width: 100%; }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 28px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 6px 18px; margin: 0; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; font-weight: 600; }
ol.steps { margin: 0; padding-left: 20px; }
ol.steps li { margin-bottom: 6px; }
table.small td, table.small th { padding: 6px 8px; }
footer { color: var(--muted); font-size: 13px; padding: 8px 0 40px; }
@media (max-width: 900px) { .cards, .grid2 { grid-template-columns: 1fr 1fr; } }
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _plot_div(fig: Any, div_id: str) -> str:
    return pio.to_html(
        fig,
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config=PLOTLY_CONFIG,
        default_width="100%",
        default_height=f"{fig.layout.height}px",
    )


def _bullet(mean: float, std: float, scale: tuple[float, float], color: str, target: float) -> str:
    """A tiny inline SVG: mean (dot) ± std (whisker) on a scale shared by all rows."""
    w, h, pad = 120, 22, 8
    lo, hi = scale
    if not math.isfinite(mean) or hi <= lo:
        return ""

    def x(v: float) -> float:
        return pad + (w - 2 * pad) * (min(max(v, lo), hi) - lo) / (hi - lo)

    s = std if math.isfinite(std) else 0.0
    parts = [
        f'<svg class="bullet" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">',
        f'<line x1="{pad}" x2="{w - pad}" y1="11" y2="11" stroke="#e5e7eb" stroke-width="6" '
        'stroke-linecap="round"/>',
    ]
    if lo <= target <= hi:
        parts.append(
            f'<line x1="{x(target):.1f}" x2="{x(target):.1f}" y1="3" y2="19" stroke="#6b7280" '
            'stroke-dasharray="2 2"/>'
        )
    parts += [
        f'<line x1="{x(mean - s):.1f}" x2="{x(mean + s):.1f}" y1="11" y2="11" stroke="{color}" '
        'stroke-width="3" stroke-linecap="round"/>',
        f'<circle cx="{x(mean):.1f}" cy="11" r="5" fill="{color}" stroke="white" '
        'stroke-width="1.5"/>',
        "</svg>",
    ]
    return "".join(parts)


def _bullet_scale(result: TournamentResult) -> tuple[float, float]:
    b = result.leaderboard
    m, s = b["test_mean"].to_numpy(), np.nan_to_num(b["test_std"].to_numpy())
    ok = np.isfinite(m)
    if not ok.any():
        return 0.0, 0.0
    lo, hi = float(np.min(m[ok] - s[ok])), float(np.max(m[ok] + s[ok]))
    span = hi - lo
    t = result.meta["target"]
    if span > 0 and lo - span <= t <= hi + span:
        lo, hi = min(lo, t), max(hi, t)
    pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi) * 0.01, 1e-6)
    return lo - pad, hi + pad


def _params_html(params: dict[str, Any]) -> str:
    if not params:
        return f'<span class="muted">{NA}</span>'
    return " ".join(
        f'<span class="param"><b>{_e(k)}</b> {_e(fmt_value(v))}</span>' for k, v in params.items()
    )


def leaderboard_table(result: TournamentResult) -> str:
    """The leaderboard as an HTML table (``id="leaderboard"``), rank 1 first."""
    board, col, meta = result.leaderboard, colors(result), result.meta
    d = metric_decimals(board["test_mean"], board["test_std"])
    dv = metric_decimals(board["val_mean"], board["val_std"])
    many = meta["seeds"] > 1
    scale = _bullet_scale(result)
    metric, target = _e(meta["metric"]), _e(fmt_target(result))
    arrow = "higher is better" if meta["greater_is_better"] else "lower is better"
    head = (
        "<th>Rank</th><th>Optimizer</th>"
        f'<th class="num">Test {metric}</th><th title="{arrow}; dashed: target">spread</th>'
        f'<th class="num">Val {metric}</th><th class="num">Time to {target}</th>'
        f'<th class="num">Epochs to {target}</th><th class="num">Reached</th>'
        "<th>Best configuration</th>"
    )
    rows = []
    best_rank = int(board["rank"].min())
    for _, r in board.iterrows():
        name, rank = str(r["optimizer"]), int(r["rank"])
        ts = float(r["test_std"]) if many else float("nan")
        vs = float(r["val_std"]) if many else float("nan")
        frac = float(r["reached_target"])
        reached_cls = "muted" if frac <= 0 else ("warn" if frac < 1 else "")
        epochs = float(r["epochs_to_target_mean"])
        rows.append(
            f'<tr class="{"winner" if rank == best_rank else ""}" data-optimizer="{_e(name)}">'
            f'<td><span class="rank r{rank}">{rank}</span></td>'
            f'<td class="opt"><span class="dot" style="background:{col[name]}"></span>'
            f"{_e(name)}</td>"
            f'<td class="num"><b>{fmt_mean_std(float(r["test_mean"]), ts, d)}</b></td>'
            f"<td>{_bullet(float(r['test_mean']), ts, scale, col[name], meta['target'])}</td>"
            f'<td class="num">{fmt_mean_std(float(r["val_mean"]), vs, dv)}</td>'
            f'<td class="num">{fmt_seconds(float(r["time_to_target_mean"]))}</td>'
            f'<td class="num">{fmt_number(epochs, 0 if float(epochs).is_integer() else 1)}</td>'
            f'<td class="num {reached_cls}">{seeds_reached(result, frac)}</td>'
            f'<td class="cfg">{_params_html(r["best_params"])}</td></tr>'
        )
    return (
        f'<div class="scroll"><table id="leaderboard"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _kpis(result: TournamentResult) -> str:
    board, col, meta = result.leaderboard, colors(result), result.meta
    win = board.iloc[0]
    d = metric_decimals(board["test_mean"], board["test_std"])
    std = float(win["test_std"]) if meta["seeds"] > 1 else float("nan")
    times = board["time_to_target_mean"].where(board["reached_target"] > 0)
    if times.notna().any():
        fast = board.loc[times.idxmin()]
        fast_name, fast_value = str(fast["optimizer"]), fmt_seconds(float(times.min()))
        fast_color = col[fast_name]
    else:
        fast_name, fast_value, fast_color = "nobody", NA, "#9ca3af"
    states = result.trials["state"].value_counts()
    wall = meta.get("wall_time")
    cards = [
        ("Winner", _e(win["optimizer"]), f"rank 1 of {len(board)}", col[str(win["optimizer"])]),
        (
            f"Test {_e(meta['metric'])}",
            fmt_mean_std(float(win["test_mean"]), std, d),
            f"mean ± std over {meta['seeds']} seeds",
            col[str(win["optimizer"])],
        ),
        (f"Fastest to {_e(fmt_target(result))}", fast_value, _e(fast_name), fast_color),
        (
            "Tuning trials",
            str(len(result.trials)),
            f"{states.get('complete', 0)} complete · {states.get('pruned', 0)} pruned · "
            f"{states.get('fail', 0)} failed"
            + (f" · {fmt_seconds(float(wall))} total" if wall is not None else ""),
            "#6b7280",
        ),
    ]
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="kpi" style="border-top-color:{c}"><div class="label">{label}</div>'
            f'<div class="value">{value}</div><div class="note">{note}</div></div>'
            for label, value, note, c in cards
        )
        + "</div>"
    )


def _chips(result: TournamentResult) -> str:
    meta = result.meta
    items = [
        ("dataset", meta["dataset"]),
        ("task", meta.get("task")),
        ("model", meta.get("model")),
        ("metric", f"{meta['metric']} ({'↑' if meta['greater_is_better'] else '↓'} better)"),
        ("target", fmt_target(result)),
        ("budget", f"{meta['trials']} trials × {meta['epochs']} epochs"),
        ("seeds", meta["seeds"]),
        ("date", meta.get("date")),
    ]
    return (
        '<ul class="chips">'
        + "".join(f"<li><span>{k}</span>{_e(v)}</li>" for k, v in items if v is not None)
        + "</ul>"
    )


def _protocol(result: TournamentResult) -> str:
    meta = result.meta
    better = "higher" if meta["greater_is_better"] else "lower"
    steps = [
        f"Every optimizer gets the same tuning budget: {meta['trials']} Optuna trials of up to "
        f"{meta['epochs']} epochs each, sampled by {_e(meta.get('sampler', 'the sampler'))} and "
        f"stopped early by {_e(meta.get('pruner', 'the pruner'))}.",
        f"The trial with the best validation {_e(meta['metric'])} ({better} is better) gives "
        "each optimizer's best configuration.",
        f"That configuration is re-run with {meta['seeds']} seeds; the leaderboard reports the "
        f"mean and std of the test {_e(meta['metric'])}, and the time and epochs until the "
        f"validation {_e(meta['metric'])} first reaches {_e(fmt_target(result))} (mean over "
        "the seeds that reach it).",
    ]
    labels = {
        "dataset": "Dataset",
        "task": "Task",
        "model": "Model",
        "metric": "Metric",
        "greater_is_better": "Direction",
        "target": "Target (val)",
        "trials": "Trials per optimizer",
        "epochs": "Max epochs per trial",
        "seeds": "Seeds per best config",
        "sampler": "Sampler",
        "pruner": "Pruner",
        "wall_time": "Total wall time",
        "version": "optimkit version",
        "date": "Date",
    }
    rows = []
    for key in labels:
        if key not in meta or meta[key] is None:
            continue
        value = meta[key]
        if key == "greater_is_better":
            value = f"{better} is better"
        elif key == "wall_time":
            value = fmt_seconds(float(value))
        rows.append(f"<dt>{labels[key]}</dt><dd>{_e(value)}</dd>")
    known = set(labels)
    rows += [
        f"<dt>{_e(k.replace('_', ' ').capitalize())}</dt><dd>{_e(v)}</dd>"
        for k, v in meta.items()
        if k not in known
    ]
    counts = result.trials.groupby(["optimizer", "state"]).size().unstack(fill_value=0)
    budget_rows = []
    for name in result.optimizers:
        c = counts.loc[name] if name in counts.index else {}
        budget_rows.append(
            f"<tr><td class='opt'>{_e(name)}</td>"
            + "".join(f"<td class='num'>{int(c.get(s, 0))}</td>" for s in TRIAL_STATES)
            + "</tr>"
        )
    budget = (
        "<table class='small'><thead><tr><th>Optimizer</th><th class='num'>complete</th>"
        "<th class='num'>pruned</th><th class='num'>failed</th></tr></thead>"
        f"<tbody>{''.join(budget_rows)}</tbody></table>"
    )
    return (
        '<div class="grid2"><div><ol class="steps">'
        + "".join(f"<li>{s}</li>" for s in steps)
        + f'</ol><h3>Tuning trials by state</h3>{budget}</div><dl class="meta">'
        + "".join(rows)
        + "</dl></div>"
    )


def _left_out_note(result: TournamentResult) -> str:
    _, left_out = lr_points(result)
    return f" {left_out} failed trial(s) or trials without lr are not shown." if left_out else ""


def render_html(result: TournamentResult) -> str:
    """The whole report page as a string (see the module docstring)."""
    meta = result.meta
    metric, target = _e(meta["metric"]), _e(fmt_target(result))
    s = meta["seeds"]
    sections = [
        (
            "s-leaderboard",
            "Leaderboard",
            f"Rank 1 is best. Test {metric}: mean ± std over {s} seeds of each optimizer's "
            f"tuned configuration; the spread bar shows it on a common scale (dashed: target "
            f"{target}). Time and epochs to reach val {metric} {target} are means over the "
            "seeds that reach it.",
            leaderboard_table(result),
        ),
        (
            "s-curves",
            "Learning curves",
            f"Validation {metric} of the {s} seed runs per optimizer: line = mean, band = "
            "min–max across seeds, by epoch (left) and by wall time (right). The buttons switch "
            "to validation or training loss; click a legend entry to hide an optimizer.",
            _plot_div(curves_plot(result), "curves"),
        ),
        (
            "s-lr-sensitivity",
            "Learning-rate sensitivity",
            f"Every tuning trial: its best validation {metric} against its learning rate. "
            "Filled dots are complete trials, faded open circles pruned ones, stars each "
            "optimizer's chosen configuration; gray dots are the other optimizers' trials. A wide "
            f"plateau means the optimizer is easy to tune.{_left_out_note(result)}",
            _plot_div(lr_plot(result), "lr-sensitivity"),
        ),
        (
            "s-importance",
            "Hyperparameter importance",
            "How much of the variation of the tuning objective each hyperparameter explains "
            "(Optuna's parameter importance, per optimizer).",
            _plot_div(importance_plot(result), "importance"),
        ),
        ("s-protocol", "Protocol", "How the tournament was run.", _protocol(result)),
    ]
    nav = "".join(f'<a href="#{sid}">{title}</a>' for sid, title, _, _ in sections)
    body = "".join(
        f'<section class="card" id="{sid}"><h2>{title}</h2><p class="caption">{caption}</p>'
        f"{content}</section>"
        for sid, title, caption, content in sections
    )
    title = f"Optimizer tournament · {meta['dataset']}"
    when = f" on {_e(meta['date'])}" if meta.get("date") else ""
    footer = (
        f"Generated by optimkit {_e(meta.get('version', ''))}{when}. "
        "Self-contained: plotly.js is embedded, the page works offline."
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{CSS}</style>
<script>window.PlotlyConfig = {{MathJaxConfig: 'local'}};</script>
<script>{get_plotlyjs()}</script>
</head>
<body>
<header class="hero"><div class="wrap">
<div class="eyebrow">optimkit · optimizer tournament · {_e(meta["dataset"])}</div>
<h1 id="verdict">{_e(verdict(result))}</h1>
<p class="sub">{_e(runner_up(result))}</p>
{_chips(result)}
</div></header>
<nav class="toc"><div class="wrap">{nav}</div></nav>
<main class="wrap">
{_kpis(result)}
{body}
</main>
<footer><div class="wrap">{footer}</div></footer>
</body>
</html>
"""
