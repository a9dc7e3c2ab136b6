"""Tournament reports: ``leaderboard.csv``, a self-contained ``report.html`` and PNG figures.

`optimkit compare` builds a `TournamentResult` (the validated input contract, see
`optimkit.report.data`) and calls `write_report`::

    from optimkit.report import TournamentResult, write_report
    paths = write_report(TournamentResult(meta, leaderboard, curves, trials, importance), "out")

`optimkit.report.synthetic.synthetic_result()` builds a realistic example input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from optimkit.outputs import atomic_write
from optimkit.report.data import TournamentResult
from optimkit.report.figures import figure_paths, render_pngs
from optimkit.report.formatting import verdict
from optimkit.report.html import render_html
from optimkit.report.leaderboard import leaderboard_csv, read_leaderboard

__all__ = [
    "ReportPaths",
    "TournamentResult",
    "read_leaderboard",
    "render_html",
    "verdict",
    "write_report",
]


@dataclass(frozen=True)
class ReportPaths:
    """Where `write_report` put things."""

    leaderboard_csv: Path
    html: Path
    figures: dict[str, Path]


def write_report(
    result: TournamentResult, out_dir: str | os.PathLike[str], *, figures: bool = True
) -> ReportPaths:
    """Write ``leaderboard.csv``, ``report.html`` and ``figures/{leaderboard,curves,
    lr_sensitivity,importance}.png`` under `out_dir` (created if missing).

    Everything is rendered in memory first and each file is written to a temporary file and
    moved into place with `os.replace`, ``report.html`` last: a failure never leaves a
    half-written file, and an existing report is only replaced by a complete new one. Other
    files in `out_dir` (the study database) are left alone. ``figures=False`` skips the PNGs.
    """
    if not isinstance(result, TournamentResult):
        raise ValueError(f"result: expected a TournamentResult, got {type(result).__name__}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir: {out} exists and is not a directory")
    page = render_html(result).encode()
    csv = leaderboard_csv(result)
    pngs = render_pngs(result) if figures else {}
    paths = figure_paths(out)
    for name, data in pngs.items():
        atomic_write(paths[name], data)
    atomic_write(out / "leaderboard.csv", csv)
    atomic_write(out / "report.html", page)
    return ReportPaths(
        leaderboard_csv=out / "leaderboard.csv",
        html=out / "report.html",
        figures={k: v for k, v in paths.items() if k in pngs},
    )
