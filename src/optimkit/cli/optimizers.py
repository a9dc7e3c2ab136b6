"""`optimkit optimizers`: the optimizer database (rich table, JSON or the README's markdown)."""

from __future__ import annotations

import json as jsonlib
from typing import Annotated

import typer


def optimizers(
    json: Annotated[bool, typer.Option("--json", help="Print every declaration as JSON.")] = False,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the README's markdown table.")
    ] = False,
) -> None:
    """List the optimizers: class, summary, per-member hyperparameters with their defaults,
    the reference each is tested against (and its package), and the test tolerance."""
    from optimkit.optim import table

    if json and markdown:
        typer.echo("error: give one of --json and --markdown", err=True)
        raise typer.Exit(2)
    if json:
        typer.echo(jsonlib.dumps(table.records(), indent=2, default=str))
        return
    if markdown:
        typer.echo(table.markdown(), nl=False)
        return
    from rich.console import Console
    from rich.table import Table

    rows = table.rows()
    out = Table(title=f"{len(rows)} optimizers (`optimkit train --optimizer NAME`)")
    for column in table.COLUMNS:
        out.add_column(column, overflow="fold")
    for row in rows:
        out.add_row(*(row[c] for c in table.COLUMNS))
    Console(width=max(160, Console().width)).print(out)
