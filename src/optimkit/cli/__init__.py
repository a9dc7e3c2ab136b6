"""The `optimkit` command line (typer)."""

from __future__ import annotations

import typer

from optimkit.cli.command import OneLineErrors

app = typer.Typer(
    name="optimkit",
    cls=OneLineErrors,
    help="Train, tune and compare optimizers on your own problem.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Train, tune and compare optimizers on your own problem."""


@app.command()
def version() -> None:
    """Print optimkit's version."""
    from optimkit import __version__

    typer.echo(__version__)


def _register() -> None:
    from optimkit.cli.apps import app_command
    from optimkit.cli.datasets import datasets
    from optimkit.cli.optimizers import optimizers
    from optimkit.cli.pbt import pbt
    from optimkit.cli.solve import solve
    from optimkit.cli.train import train
    from optimkit.cli.tune import compare, tune, worker

    app.command("train")(train)
    app.command("tune")(tune)
    app.command("compare")(compare)
    app.command("worker")(worker)
    app.command("datasets")(datasets)
    app.command("optimizers")(optimizers)
    app.command("solve")(solve)
    app.command("app")(app_command)
    app.command("pbt")(pbt)


_register()


def main() -> None:
    # The CLI owns its process: keep freed tensor memory mapped (see retain_freed_memory).
    from optimkit.train.trainer import retain_freed_memory

    retain_freed_memory()
    app()
