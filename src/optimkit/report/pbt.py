"""The PBT view of an `optimkit pbt` run: PNG figures and a small self-contained HTML page.

* ``schedules.png``: each mutated hyperparameter over epochs, one step line per member (a
  member's value changes where it copied another member and explored);
* ``lineage.png``: the final best member's lineage: the members whose state it carries, one
  bar per segment on the epoch axis, an arrow at each copy;
* ``score.png``: every member's validation score after each epoch, the best lineage on top;
* ``pbt.html``: the three figures (embedded) and the lineage's hyperparameter schedule.

Reads the run folder's pbt.csv and results.json (`write_pbt_report(run_dir)`); matplotlib
`Figure` objects on Agg, no pyplot.
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

FIGURES = ("schedules.png", "lineage.png", "score.png")
_BOOK = {"start_epoch", "end_epoch", "member", "segment", "parent"}


def _names(frame: pd.DataFrame, metric: str) -> list[str]:
    return [c for c in frame.columns if c not in _BOOK and c != metric]


def schedules_figure(frame: pd.DataFrame, metric: str) -> Figure:
    names = _names(frame, metric)
    fig = Figure(figsize=(7, 2.2 * max(len(names), 1)), layout="constrained")
    axes = fig.subplots(max(len(names), 1), 1, sharex=True, squeeze=False)[:, 0]
    for ax, name in zip(axes, names, strict=False):
        for k, rows in frame.groupby("member"):
            rows = rows.sort_values("segment")
            xs, ys = [], []
            for r in rows.itertuples():
                xs += [r.start_epoch, r.end_epoch]
                ys += [getattr(r, name)] * 2
            ax.plot(xs, ys, lw=1.2, label=f"member {k}")
        ax.set_ylabel(name)
        if (frame[name] > 0).all() and frame[name].max() / frame[name].min() > 20:
            ax.set_yscale("log")
    axes[-1].set_xlabel("epoch")
    axes[0].set_title("hyperparameter schedules per member")
    if len(frame.member.unique()) <= 16:
        axes[0].legend(fontsize=7, ncol=4)
    return fig


def lineage_figure(replay: list[dict[str, Any]], frame: pd.DataFrame) -> Figure:
    members = sorted(frame.member.unique())
    fig = Figure(figsize=(7, 0.35 * len(members) + 1.2), layout="constrained")
    ax = fig.subplots()
    for r in frame.itertuples():
        ax.barh(r.member, r.end_epoch - r.start_epoch, left=r.start_epoch, color="0.88",
                edgecolor="white")  # fmt: skip
    previous = None
    for seg in replay:
        ax.barh(seg["member"], seg["end_epoch"] - seg["start_epoch"], left=seg["start_epoch"],
                color="C0", edgecolor="white")  # fmt: skip
        if previous is not None:
            ax.annotate("", xy=(seg["start_epoch"], seg["member"]),
                        xytext=(seg["start_epoch"], previous),
                        arrowprops={"arrowstyle": "->", "color": "C3"})  # fmt: skip
        previous = seg["member"]
    ax.set_yticks(members, [f"member {k}" for k in members])
    ax.invert_yaxis()
    ax.set_xlabel("epoch")
    ax.set_title("lineage of the final best member (blue; arrows: copies)")
    return fig


def score_figure(curves: list[list[float]], replay: list[dict[str, Any]], metric: str) -> Figure:
    fig = Figure(figsize=(7, 3.6), layout="constrained")
    ax = fig.subplots()
    for k, curve in enumerate(curves):
        ax.plot(range(1, len(curve) + 1), curve, lw=0.8, color="0.6",
                label="members" if k == 0 else None)  # fmt: skip
    xs, ys = [], []
    for seg in replay:
        curve = curves[seg["member"]]
        for e in range(seg["start_epoch"] + 1, seg["end_epoch"] + 1):
            if e <= len(curve):
                xs.append(e)
                ys.append(curve[e - 1])
    ax.plot(xs, ys, lw=2, color="C0", label="best lineage")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title("score over time")
    ax.legend(fontsize=8)
    return fig


def write_pbt_report(
    run_dir: str | os.PathLike[str], folder: str | os.PathLike[str] | None = None
) -> Path:
    """The PBT view of `run_dir` (an `optimkit pbt` output folder) into `folder` (default:
    RUN/report); returns the HTML page's path."""
    from optimkit.outputs import atomic_save, atomic_write

    run = Path(run_dir)
    for name in ("pbt.csv", "results.json"):
        if not (run / name).is_file():
            raise ValueError(f"report: no {str(run / name)!r}; expected an `optimkit pbt` run")
    frame = pd.read_csv(run / "pbt.csv")
    info = json.loads((run / "results.json").read_text())
    metric, replay = info["metric"], info["replay"]
    out = Path(folder) if folder is not None else run / "report"
    figures = {
        "schedules.png": schedules_figure(frame, metric),
        "lineage.png": lineage_figure(replay, frame),
        "score.png": score_figure(info.get("curves") or [], replay, metric),
    }
    images = {}
    for name, fig in figures.items():
        atomic_save(out / name, _saver(fig))
        images[name] = base64.b64encode((out / name).read_bytes()).decode()
    names = [c for c in replay[0] if c not in _BOOK]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["epochs", "member", *names])
    rows = "".join(
        "<tr>" + f"<td>{s['start_epoch']}–{s['end_epoch']}</td><td>{s['member']}</td>"
        + "".join(f"<td>{_fmt(s[n])}</td>" for n in names) + "</tr>"
        for s in replay
    )  # fmt: skip
    imgs = "".join(f'<h2>{n[:-4]}</h2><img alt="{n}" src="data:image/png;base64,{b}">'
                   for n, b in images.items())  # fmt: skip
    title = html.escape(f"PBT ({info.get('explore', 'random')}): {info.get('study', run.name)}")
    best = f"best member {info['best_member']}: {metric} {_fmt(info['best_value'])}"
    tests = ", ".join(f"test {html.escape(k)} {_fmt(v)}" for k, v in info.get("test", {}).items())
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:980px;margin:2em auto}}table{{border-collapse:
collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}img{{max-width:100%}}
</style></head><body><h1>{title}</h1><p>{html.escape(best)}; {tests};
{info.get("population")} members, {info.get("perturbations")} perturbations.</p>
<h2>Lineage of the best member: its hyperparameter schedule</h2>
<table><tr>{head}</tr>{rows}</table>
{imgs}
</body></html>
"""
    return atomic_write(out / "pbt.html", page)


def _saver(fig: Figure) -> Callable[[Path], None]:
    def save(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=110)

    return save


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))
