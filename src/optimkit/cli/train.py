"""`optimkit train`: train one configuration, or the product of several as one population."""

from __future__ import annotations

import json as jsonlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from optimkit.cli.command import options_command
from optimkit.cli.options import TrainOptions, UsageError, as_usage_error, load_options

Opt = typer.Option


@options_command(TrainOptions)
def train(
    config: Annotated[
        Path | None, Opt("--config", "-c", help="YAML file; every flag is a key.")
    ] = None,
    json: Annotated[bool, Opt("--json", help="Print the results as JSON.")] = False,
    **flags: Any,
) -> None:
    """Train a model; several values of a hyperparameter train as one population (their product)."""
    try:
        options = load_options(config, flags, TrainOptions)
        result = run_train(options, show_progress=not json)
    except Exception as e:  # usage errors exit 2 without a traceback; others propagate
        err = as_usage_error(e)
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    if json:
        typer.echo(jsonlib.dumps(result, indent=2, default=str))
    else:
        print_summary(result)


def run_train(options: TrainOptions, show_progress: bool = True) -> dict[str, Any]:
    import torch
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from optimkit.data import load_dataset
    from optimkit.train import PopulationTrainer, TrainConfig
    from optimkit.train.export import export_member

    out = options.out
    if out is not None and out.exists() and any(out.iterdir()) and not options.overwrite:
        raise UsageError(f"out: {str(out)!r} exists and is not empty; pass --overwrite")
    dtype = getattr(torch, options.dtype)
    torch.set_num_threads(options.threads)
    if options.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("device: 'cuda' requested but no CUDA device is available")
    seeds = options.seed
    dataset = load_dataset(
        options.data, target=options.target, task=options.task, impute=options.impute,
        val_fraction=options.val_fraction, test_fraction=options.test_fraction, seed=seeds[0],
        pca=options.pca, select_k=options.select_k, device=options.device, dtype=dtype,
    )  # fmt: skip
    members = options.members()
    if (options.checkpoint_every or options.resume) and out is None:
        raise UsageError("out: --checkpoint-every and --resume need an --out folder")
    checkpoint = out.with_name(out.name + ".checkpoint.pt") if out is not None else None
    if options.resume and not (checkpoint and checkpoint.is_file()):
        raise UsageError(f"resume: no checkpoint {str(checkpoint)!r} to resume from")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".optimkit-", dir=out.parent)) if out else None
    config = TrainConfig(
        model=options.model, model_options=options.model_options(), optimizer=options.optimizer,
        loss=options.loss, epochs=options.epochs, batch_size=options.batch_size,
        shared_batches=not options.per_member_batches, schedule=options.schedule,
        patience=options.patience, min_delta=options.min_delta, monitor=options.monitor,
        checkpoint_every=options.checkpoint_every,
        checkpoint_path=str(checkpoint) if options.checkpoint_every else None, seed=seeds[0],
        compile=options.compile, autocast=options.autocast,
    )  # fmt: skip
    try:
        trainer = PopulationTrainer(dataset, config, members)
        if options.resume:
            trainer.load_checkpoint(checkpoint)  # type: ignore[arg-type]
        progress = Progress(
            TextColumn("[bold]training[/bold] {task.description}"), BarColumn(),
            TextColumn("epoch {task.completed}/{task.total}"), TimeElapsedColumn(),
            TimeRemainingColumn(), console=Console(stderr=True), disable=not show_progress,
        )  # fmt: skip
        with progress:
            bar = progress.add_task(f"{len(members)} member(s)", total=options.epochs,
                                    completed=trainer.epoch)  # fmt: skip
            trainer.progress = lambda done, total: progress.update(bar, completed=done)
            trainer.fit()
        best = trainer.best_member()
        result = {
            "data": dataset.describe(),
            "model": options.model,
            "optimizer": options.optimizer,
            "members": trainer.summary(),
            "best_member": best,
            "monitor": options.monitor,
            "seconds": trainer.elapsed,
            "out": str(out) if out else None,
        }
        if staging is not None and out is not None:
            export_member(trainer, best, staging / "model")
            trainer.history.to_csv(staging / "history.csv")
            trainer.history.to_json(staging / "history.json")
            (staging / "config.json").write_text(
                jsonlib.dumps(options.model_dump(mode="json"), indent=2)
            )
            (staging / "results.json").write_text(jsonlib.dumps(result, indent=2, default=str))
            if out.exists():
                shutil.rmtree(out)
            os.replace(staging, out)
            staging = None
            if checkpoint is not None and checkpoint.exists():
                checkpoint.unlink()  # the run is complete: its results replace the checkpoint
        return result
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging)


def print_summary(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    rows = result["members"]
    metric_cols = [c for c in rows[0] if c.startswith("test_")]
    hp_cols = [c for c in rows[0] if c not in metric_cols and c not in
               ("member", "status", "failure", "best_epoch", "epochs")]  # fmt: skip
    table = Table(title=f"{result['model']} on {result['data']['name']} with {result['optimizer']}"
                        f" — test metrics at each member's best validation epoch")  # fmt: skip
    for col in ("member", *hp_cols, "status", "best_epoch", *metric_cols):
        table.add_column(col.removeprefix("test_"), justify="right")
    for row in rows:
        style = "bold green" if row["member"] == result["best_member"] else None
        cells = [_fmt(row.get(c)) for c in ("member", *hp_cols, "status", "best_epoch",
                                            *metric_cols)]  # fmt: skip
        table.add_row(*cells, style=style)
    console = Console(width=max(100, Console().width))
    console.print(table)
    line = f"{len(rows)} member(s) trained in {result['seconds']:.1f} s"
    if result["out"]:
        line += f"; model, config and history written to {result['out']}"
    console.print(line)
    if any(r.get("failure") for r in rows):
        for r in rows:
            if r.get("failure"):
                console.print(f"member {r['member']} failed: {r['failure']}", style="red")
    sys.stdout.flush()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, tuple | list):
        return ",".join(_fmt(v) for v in value)
    return str(value)
