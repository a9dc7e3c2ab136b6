"""`optimkit app NAME`: run an end-to-end application and write its report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def app_command(
    name: Annotated[str | None, typer.Argument(help="The application (see --list).")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the applications.")] = False,
    out: Annotated[str | None, typer.Option("--out", help="Output folder.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A small, fast version.")] = False,
    seed: Annotated[int, typer.Option("--seed", min=0, max=2**32 - 1)] = 0,
) -> None:
    """Run an application (recommendation, images, prices, control, ...) against the library
    its users would otherwise pick, in the same run; writes report.html, table.csv,
    results.json and figures/ into --out."""
    from optimkit.apps import APPS, AppOptions, get_app, write_app_report

    if list_ or name is None:
        for app in APPS.values():
            missing = app.missing()
            note = f"  (needs: {', '.join(missing)})" if missing else ""
            typer.echo(f"{app.name:12s} {app.summary} — vs {app.baseline}{note}")
        return
    try:
        app = get_app(name)
        app.check_installed()
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    from optimkit.outputs import OutputError, check_out

    target = out if out is not None else Path("runs") / f"app-{name}"
    try:
        target = check_out(target, replaces=True)
    except OutputError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    try:  # a missing dataset or bad data is a message, not a traceback
        result = app.run(AppOptions(out=target, quick=quick, seed=seed))
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    paths = write_app_report(result, target)
    typer.echo(result.table.to_string(index=False))
    for note in result.notes:
        typer.echo(f"- {note}")
    typer.echo(f"report written to {paths['html']}")
