"""`optimkit train`: train one configuration, or the product of several as one population."""

from __future__ import annotations

import json as jsonlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from optimkit.cli.command import options_command
from optimkit.cli.options import (
    MODEL_KEYS,
    TrainOptions,
    UsageError,
    as_usage_error,
    load_options,
    read_config,
)

Opt = typer.Option


@options_command(TrainOptions)
def train(
    config: Annotated[
        Path | None, Opt("--config", "-c", help="YAML file; every flag is a key.")
    ] = None,
    json: Annotated[bool, Opt("--json", help="Print the results as JSON.")] = False,
    replay: Annotated[
        Path | None,
        Opt(
            "--replay",
            help="An `optimkit pbt` run folder: re-train one model along its best "
            "member's hyperparameter schedule (data, model, optimizer and training from the "
            "run; only --out, --overwrite and --threads apply).",
            rich_help_panel="PBT",
            show_default=False,
        ),
    ] = None,
    **flags: Any,
) -> None:
    """Train a model; several values of a hyperparameter train as one population (their product)."""
    try:
        if replay is not None:
            result = run_replay(replay, config, flags, show_progress=not json)
        else:
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


#: options that may differ on --resume: where the run goes and how fast, not what it computes
RESUME_FREE = frozenset(
    {"out", "overwrite", "resume", "resume_override", "checkpoint_every", "threads", "device",
     "compile"}
)  # fmt: skip
#: options --resume-override applies to a resumed run (besides per-member hyperparameters)
RESUME_OVERRIDABLE = frozenset({"epochs", "patience", "min_delta", "autocast"})


def checkpoint_paths(out: Path) -> tuple[Path, Path]:
    """OUT.checkpoint.pt (the trainer state) and OUT.checkpoint.json (the options it was
    started with, for --resume's comparison)."""
    return out.with_name(out.name + ".checkpoint.pt"), out.with_name(out.name + ".checkpoint.json")


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
    from optimkit.outputs import atomic_folder, atomic_write, check_out
    from optimkit.train import PopulationTrainer, TrainConfig
    from optimkit.train.export import export_member

    out = options.out
    if (options.checkpoint_every or options.resume) and out is None:
        raise UsageError("out: --checkpoint-every and --resume need an --out folder")
    if options.resume_override and not options.resume:
        raise UsageError("resume_override: only with --resume")
    checkpoint = settings = None
    if out is not None:
        out = check_out(out, replaces=True)
        checkpoint, settings = checkpoint_paths(out)
        if out.exists() and any(out.iterdir()) and not options.overwrite:
            raise UsageError(f"out: {str(out)!r} exists and is not empty; pass --overwrite")
        if options.resume and not checkpoint.is_file():
            raise UsageError(f"resume: no checkpoint {str(checkpoint)!r} to resume from")
        if not options.resume and checkpoint.exists() and not options.overwrite:
            raise UsageError(f"out: a checkpoint {str(checkpoint)!r} exists; pass --resume to "
                             "continue it or --overwrite to start afresh")  # fmt: skip
    dtype = getattr(torch, options.dtype)
    torch.set_num_threads(options.threads)
    if options.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("device: 'cuda' requested but no CUDA device is available")
    members = options.members()
    state = None
    if options.resume:
        state = _read_checkpoint(checkpoint)  # type: ignore[arg-type]
        overrides = resume_differences(options, _read_settings(settings), state["members"])
    seeds = options.seed
    dataset = load_dataset(
        options.data, target=options.target, task=options.task, impute=options.impute,
        val_fraction=options.val_fraction, test_fraction=options.test_fraction, seed=seeds[0],
        pca=options.pca, select_k=options.select_k, device=options.device, dtype=dtype,
    )  # fmt: skip
    config = TrainConfig(
        model=options.model, model_options=options.model_options(), optimizer=options.optimizer,
        loss=options.loss, epochs=options.epochs, batch_size=options.batch_size,
        shared_batches=not options.per_member_batches, schedule=options.schedule,
        patience=options.patience, min_delta=options.min_delta, monitor=options.monitor,
        checkpoint_every=options.checkpoint_every,
        checkpoint_path=str(checkpoint) if options.checkpoint_every else None, seed=seeds[0],
        compile=options.compile, autocast=options.autocast,
    )  # fmt: skip
    trainer = PopulationTrainer(dataset, config, members)
    resumed: dict[str, Any] | None = None
    if state is not None:
        start_epoch = int(state["epoch"])
        try:
            trainer.load_state_dict(state)
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            reason = " ".join(str(e).split())[:300]
            raise UsageError(f"resume: the checkpoint {str(checkpoint)!r} does not fit these "
                             f"options ({type(e).__name__}: {reason})") from None  # fmt: skip
        for k, m in enumerate(members):
            changed = {n: v for n, v in m.items() if n != "seed" and trainer.members[k].get(n) != v}
            if changed:
                trainer.set_member(k, changed)
        resumed = {"checkpoint": str(checkpoint), "epoch": start_epoch, "overrides": overrides}
    elif options.checkpoint_every and settings is not None and checkpoint is not None:
        checkpoint.unlink(missing_ok=True)  # --overwrite: start afresh
        atomic_write(settings, jsonlib.dumps(options.model_dump(mode="json"), indent=2))
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
    if resumed is not None:
        result["resumed"] = resumed
    if out is not None:
        with atomic_folder(out) as staging:
            export_member(trainer, best, staging / "model")
            trainer.history.to_csv(staging / "history.csv")
            trainer.history.to_json(staging / "history.json")
            written = options.model_dump(mode="json")
            if resumed is not None:
                written["resumed"] = resumed
            (staging / "config.json").write_text(jsonlib.dumps(written, indent=2, default=str))
            (staging / "results.json").write_text(jsonlib.dumps(result, indent=2, default=str))
        for path in (checkpoint, settings):  # the run is complete: its results replace them
            if path is not None:
                path.unlink(missing_ok=True)
    return result


#: the options `train --replay` takes; the run fixes the others (see `run_replay`)
REPLAY_FREE = frozenset({"out", "overwrite", "threads"})
#: options that have no meaning for a replay
REPLAY_UNUSED = frozenset({"checkpoint_every", "resume", "resume_override"})


def run_replay(
    run_dir: Path, config: Path | None, flags: dict[str, Any], show_progress: bool = True
) -> dict[str, Any]:
    """`optimkit train --replay RUN`: one model re-trained along the best member's
    hyperparameter schedule of the `optimkit pbt` run in RUN (Ray Tune's
    PopulationBasedTrainingReplay: the hyperparameters change at the recorded perturbation
    epochs, the weights are never copied; `optimkit.tune.pbt.replay_run`). Data, split,
    model, optimizer, training settings and seed are the run's: an option that is given
    with another value than the run's, a per-member hyperparameter (the schedule sets
    them) and --checkpoint-every/--resume are refused in one line; --out, --overwrite and
    --threads apply. Writes OUT like `train` (model, history, config.json, results.json
    with the schedule)."""
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from optimkit.outputs import atomic_folder, check_out
    from optimkit.train.export import export_member
    from optimkit.tune.pbt import read_run, replay

    values = read_config(config) if config is not None else {}
    values.update({k: v for k, v in flags.items() if v is not None})
    run = read_run(run_dir)
    base = _replay_options(run.info)
    given = {k: v for k, v in values.items() if k not in REPLAY_FREE}
    merged = load_options(None, {**base, **values}, TrainOptions)
    reference = TrainOptions(**base).model_dump(mode="json")
    now = merged.model_dump(mode="json")
    per_member = set(TrainOptions.hyperparameter_fields) | {"clip_grad_norm", "clip_grad_value",
                                                            "l1"}  # fmt: skip
    problems = []
    for key in given:
        flag = "--" + key.replace("_", "-")
        if key in per_member:
            problems.append(f"{flag}: set by the replayed schedule")
        elif key in REPLAY_UNUSED:
            problems.append(f"{flag}: not with --replay")
        elif _plain(now.get(key)) != _plain(reference.get(key)):
            problems.append(f"{flag} {_show(now.get(key))} given, "
                            f"{_show(reference.get(key))} in the run")  # fmt: skip
    if problems:
        raise UsageError(f"replay: {'; '.join(problems)} ({str(run.folder)!r}); leave them out: "
                         "--replay takes the data, model, optimizer, training and "
                         "hyperparameters from the run (only --out, --overwrite and --threads "
                         "apply)")  # fmt: skip
    out = merged.out
    if out is not None:
        out = check_out(out, replaces=True)
        if out.resolve() == run.folder.resolve():
            raise UsageError(f"out: {str(out)!r} is the replayed run's folder; give another one")
        if out.exists() and any(out.iterdir()) and not merged.overwrite:
            raise UsageError(f"out: {str(out)!r} exists and is not empty; pass --overwrite")
    torch.set_num_threads(merged.threads)
    dataset, train_config = run.dataset(), run.config()
    progress = Progress(
        TextColumn("[bold]replay[/bold]"), BarColumn(), TextColumn("epoch {task.completed}/"
        "{task.total}"), TimeElapsedColumn(), console=Console(stderr=True),
        disable=not show_progress,
    )  # fmt: skip
    with progress:
        bar = progress.add_task("epochs", total=train_config.epochs)
        trainer = replay(
            dataset, train_config, run.initial(), run.schedule,
            progress=lambda done, total: progress.update(bar, completed=done),
        )  # fmt: skip
    result = {
        "data": dataset.describe(), "model": train_config.model,
        "optimizer": base["optimizer"], "members": trainer.summary(), "best_member": 0,
        "monitor": train_config.monitor, "seconds": trainer.elapsed,
        "out": str(out) if out else None,
        "replay": {"run": str(run.folder), "member": int(run.info["best_member"]),
                   "root": run.schedule[0]["member"], "schedule": run.schedule},
    }  # fmt: skip
    if out is not None:
        with atomic_folder(out) as staging:
            export_member(trainer, 0, staging / "model")
            trainer.history.to_csv(staging / "history.csv")
            trainer.history.to_json(staging / "history.json")
            written = {**merged.model_dump(mode="json"), "replay": str(run.folder)}
            (staging / "config.json").write_text(jsonlib.dumps(written, indent=2, default=str))
            (staging / "results.json").write_text(jsonlib.dumps(result, indent=2, default=str))
    return result


def _replay_options(info: dict[str, Any]) -> dict[str, Any]:
    """The `train` options equivalent to a PBT run's data, model and training settings (from
    its results.json: the options it ran with, else its dataset and train_config)."""
    data, tc = info["dataset"], info["train_config"]
    ran = info.get("options") or {}
    out = {"data": data["source"], "seed": [data["seed"]],
           "per_member_batches": not tc.get("shared_batches", True),
           "optimizer": ran.get("optimizer", tc["optimizer"])}  # fmt: skip
    for key in ("target", "task", "impute", "val_fraction", "test_fraction", "pca",
                "select_k", "device", "dtype"):  # fmt: skip
        out[key] = data.get(key)
    for key in ("model", "loss", "epochs", "batch_size", "schedule", "patience", "min_delta",
                "compile", "autocast", "monitor"):  # fmt: skip
        out[key] = tc.get(key)
    out.update({k: v for k, v in tc.get("model_options", {}).items() if k in MODEL_KEYS})
    return {k: v for k, v in out.items() if v is not None}


def _read_checkpoint(path: Path) -> dict[str, Any]:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise UsageError(f"resume: {str(path)!r} is not a readable checkpoint "
                         f"({type(e).__name__})") from None  # fmt: skip
    if not isinstance(state, dict) or not isinstance(state.get("members"), list):
        raise UsageError(f"resume: {str(path)!r} is not an optimkit train checkpoint")
    return state


def _read_settings(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None  # a checkpoint of an earlier version: its members are compared
    try:
        saved = jsonlib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) else None


def _plain(value: Any) -> Any:
    """JSON's view of a value (tuples as lists), for comparisons."""
    return jsonlib.loads(jsonlib.dumps(value, default=str))


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(_show(v) for v in value)
    return "unset" if value is None else str(value)


def resume_differences(
    options: TrainOptions, saved: dict[str, Any] | None, saved_members: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The settings of `options` that differ from the checkpoint's: refused (UsageError, one
    line listing them) unless --resume-override is given and each can be applied; then
    returned as {name: {"checkpoint": old, "applied": new}}."""
    diffs: dict[str, tuple[Any, Any]] = {}
    if saved is not None:
        now = options.model_dump(mode="json")
        for key in [*now, *(k for k in saved if k not in now)]:
            if key not in RESUME_FREE and _plain(now.get(key)) != _plain(saved.get(key)):
                diffs[key] = (saved.get(key), now.get(key))
    members = _plain(options.members())
    old = _plain(saved_members)
    if members != old and not diffs:  # an earlier version's checkpoint (or a stale record)
        keys = [*old[0], *(k for k in members[0] if k not in old[0])] if old and members else []
        for key in keys or ["members"]:
            a, b = [m.get(key) for m in old], [m.get(key) for m in members]
            if a != b:
                diffs[key] = (a, b)
        if len(members) != len(old):
            diffs["members"] = (len(old), len(members))
    if not diffs:
        return {}
    per_member = set(options.hyperparameter_fields) | {"clip_grad_norm", "clip_grad_value", "l1"}
    same_shape = (
        len(members) == len(old)
        and all(set(a) == set(b) for a, b in zip(members, old, strict=True))
        and [m.get("seed") for m in members] == [m.get("seed") for m in old]
    )
    fixed = [k for k in diffs if k not in RESUME_OVERRIDABLE and not (k in per_member or (
        saved is None and k != "seed"))]  # fmt: skip
    listed = "; ".join(f"{k}: {_show(a)} in the checkpoint, {_show(b)} now"
                       for k, (a, b) in diffs.items())  # fmt: skip
    if not options.resume_override:
        raise UsageError(f"resume: the options differ from the checkpoint's ({listed}); resume "
                         "with the checkpoint's options, or pass --resume-override to apply "
                         "hyperparameters, epochs, patience, min-delta or autocast")  # fmt: skip
    if fixed or not same_shape:
        why = ", ".join(fixed) if fixed else "the population's members (their number or seeds)"
        raise UsageError(f"resume: --resume-override cannot apply {why} to a checkpoint "
                         f"({listed}); start afresh with --overwrite")  # fmt: skip
    return {k: {"checkpoint": a, "applied": b} for k, (a, b) in diffs.items()}


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
