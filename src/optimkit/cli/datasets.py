"""`optimkit datasets`: the built-in datasets, their size and task, and whether installed."""

from __future__ import annotations

import json as jsonlib
from typing import Annotated

import typer


def datasets(
    json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list instead of a table.")
    ] = False,
) -> None:
    """List the built-in datasets: rows, features, task, source, and whether it is installed."""
    from rich.console import Console
    from rich.table import Table

    from optimkit.data.registry import REGISTRY

    rows = [info.as_dict() for info in REGISTRY.values()]
    if json:
        typer.echo(jsonlib.dumps(rows, indent=2))
        return
    table = Table(title="Built-in datasets")
    for column in ("name", "task", "rows", "features", "classes", "source", "installed"):
        table.add_column(column, justify="right" if column in ("rows", "features") else "left")
    for row in rows:
        table.add_row(
            row["name"],
            row["task"],
            f"{row['rows']:,}",
            str(row["features"]),
            "" if row["n_classes"] is None else str(row["n_classes"]),
            row["source"],
            "yes" if row["installed"] else "[red]no[/red]",
        )
    Console(width=max(120, Console().width)).print(table)
    for row in rows:
        if not row["installed"]:
            typer.echo(f"{row['name']}: not installed; install with: {row['install']}")
