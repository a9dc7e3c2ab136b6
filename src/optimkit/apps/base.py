"""What every application is: a name, a baseline library, a run function, a report.

An application module in `optimkit.apps` declares ``APP = App(...)``; `optimkit.apps.APPS`
collects them (``optimkit app --list``). ``App.run(options)`` returns an `AppResult`: a table
with one row per method (optimkit's and the baselines', measured in the same run), figures and
plain-language notes; `write_app_report` writes it atomically (results.json, table.csv,
figures/*.png, report.html).
"""

from __future__ import annotations

import base64
import html
import importlib.util
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class AppOptions:
    """What every application takes: ``quick`` runs a small version (tests, smoke runs)."""

    out: Path
    quick: bool = False
    seed: int = 0
    progress: bool = True


@dataclass
class AppResult:
    """One run: ``table`` has a row per method with a ``method`` and a ``kind`` column
    ("optimkit" or "baseline") and one column per metric; ``better`` maps each metric to
    "lower" or "higher"; ``notes`` state the outcome honestly (which side won, targets)."""

    title: str
    table: pd.DataFrame
    better: Mapping[str, str]
    figures: dict[str, Any] = field(default_factory=dict)  # name -> matplotlib Figure
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # JSON-serializable extras


@dataclass(frozen=True)
class App:
    name: str
    summary: str
    baseline: str  # the library its users would otherwise pick
    run: Callable[[AppOptions], AppResult]
    requires: tuple[str, ...] = ()  # import names of the packages of the `apps` extra it needs

    def missing(self) -> list[str]:
        """The required packages that are not installed."""
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def check_installed(self) -> None:
        missing = self.missing()
        if missing:
            raise ValueError(
                f"app {self.name}: needs {', '.join(missing)}; "
                f"install them with `pip install 'optimkit[apps]'`"
            )


def progress_bar(options: AppOptions, total: int, label: str) -> tuple[Any, Any]:
    """A rich progress bar on stderr, ``label`` in bold, off when ``options.progress`` is
    False: (the Progress, to use as a context manager; its one task's id)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    progress = Progress(
        TextColumn(f"[bold]{label}[/bold] {{task.description}}"), BarColumn(),
        MofNCompleteColumn(), console=Console(stderr=True), disable=not options.progress,
    )  # fmt: skip
    return progress, progress.add_task("", total=total)


def write_app_report(result: AppResult, out: Path) -> dict[str, Path]:
    """Write results.json, table.csv, figures/<name>.png and report.html into `out`, all at
    once (`optimkit.outputs.atomic_folder`: a temporary folder renamed into place, nothing
    half-written is left)."""
    from optimkit.outputs import atomic_folder

    out = Path(out)
    with atomic_folder(out) as tmp:
        (tmp / "figures").mkdir()
        pngs: dict[str, bytes] = {}
        for name, fig in result.figures.items():
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
            pngs[name] = buf.getvalue()
            (tmp / "figures" / f"{name}.png").write_bytes(pngs[name])
        result.table.to_csv(tmp / "table.csv", index=False)
        payload = {
            "title": result.title,
            "table": json.loads(result.table.to_json(orient="records")),
            "better": dict(result.better),
            "notes": result.notes,
            "details": result.details,
        }
        (tmp / "results.json").write_text(json.dumps(payload, indent=2, default=str))
        (tmp / "report.html").write_text(_html(result, pngs))
    return {
        "dir": out,
        "html": out / "report.html",
        "json": out / "results.json",
        "table": out / "table.csv",
    }


def _html(result: AppResult, pngs: dict[str, bytes]) -> str:
    """A self-contained page: the side-by-side table (best value per metric in bold), the
    notes and the figures (inline PNGs; no network requests)."""
    table = result.table
    best: dict[str, Any] = {}
    for metric, direction in result.better.items():
        if metric in table:
            col = pd.to_numeric(table[metric], errors="coerce")
            best[metric] = col.min() if direction == "lower" else col.max()
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    rows = []
    for _, row in table.iterrows():
        cells = []
        for c in table.columns:
            v = row[c]
            text = f"{v:.4g}" if isinstance(v, float) else str(v)
            bold = c in best and isinstance(v, int | float) and v == best[c]
            cells.append(
                f"<td>{'<b>' if bold else ''}{html.escape(text)}{'</b>' if bold else ''}</td>"
            )
        cls = "optimkit" if row.get("kind") == "optimkit" else "baseline"
        rows.append(f'<tr class="{cls}">{"".join(cells)}</tr>')
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
    figs = "".join(
        f'<figure><img alt="{html.escape(n)}" src="data:image/png;base64,'
        f'{base64.b64encode(b).decode()}"><figcaption>{html.escape(n)}</figcaption></figure>'
        for n, b in pngs.items()
    )
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>{html.escape(result.title)}</title><style>
body{{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}}
table{{border-collapse:collapse}}
td,th{{padding:.3rem .7rem;border-bottom:1px solid #ddd;text-align:right}}
tr.optimkit{{background:#eef6ff}}img{{max-width:100%}}</style></head><body>
<h1>{html.escape(result.title)}</h1><table><thead><tr>{head}</tr></thead>
<tbody>{"".join(rows)}</tbody></table><ul>{notes}</ul>{figs}</body></html>"""
