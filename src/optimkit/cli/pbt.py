"""`optimkit pbt`: Population Based Training (or PB2) of one population, with its lineage.

The data, model, training, output and speed options are `tune`'s (`SharedOptions`); PBT's own
use Ray Tune's names. Outputs in OUT: results.json, pbt.csv (one row per member segment),
the best member's exported model (OUT/model), the PBT view (OUT/report/pbt.html and its
PNG figures, `optimkit.report.pbt`) and the lineage as an Optuna study (one trial
per member, its segments and perturbations in user attributes, its scores as intermediate
values; default storage OUT/study.journal, so ``optuna.load_study`` shows it). With
``--checkpoint-every N`` the trainer and the PBT loop are checkpointed to
OUT/pbt.checkpoint.pt; ``--resume`` continues a killed run and ends as an uninterrupted one.
Resuming with options other than those the run started with (recorded in OUT/pbt.options.json)
is refused in one line naming each option and both values; only --out, --threads,
--checkpoint-every, --storage, --study-name (and --json) may differ.
"""

from __future__ import annotations

import contextlib
import json as jsonlib
import math
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from pydantic import field_validator

from optimkit.cli.command import options_command
from optimkit.cli.options import (
    DEFAULT_OPTIMIZER,
    MAX_SEED,
    OPTIMIZER,
    OUTPUT,
    SharedOptions,
    UsageError,
    _numbers,
    _opt,
    as_usage_error,
    load_options,
)

PBT_PANEL = "PBT"
CHECKPOINT = "pbt.checkpoint.pt"
#: the options a checkpointed run started with, for --resume's comparison
RECORD = "pbt.options.json"
#: options that may differ on --resume: where the run goes and how it is watched, not what
#: it computes (--compile is not among them: it changes the rounding)
RESUME_FREE = frozenset({"out", "resume", "overwrite", "checkpoint_every", "threads", "storage",
                         "study_name"})  # fmt: skip


class PBTOptions(SharedOptions):
    """Options of `optimkit pbt` (Ray Tune's PopulationBasedTraining / PB2 names)."""

    space: dict[str, Any] | None = _opt(
        None, "Search space (config file only).", PBT_PANEL
    )  # fmt: skip
    optimizer: str = _opt(DEFAULT_OPTIMIZER, "Optimizer whose default space is explored.",
                          OPTIMIZER)  # fmt: skip
    population: int = _opt(8, "Members of the population (default 8).", PBT_PANEL, ge=2)
    perturbation_interval: int = _opt(
        4, "Epochs between perturbations (default 4).", PBT_PANEL, ge=1
    )
    burn_in_period: int = _opt(0, "No perturbation before this epoch (default 0).", PBT_PANEL,
                               ge=0)  # fmt: skip
    quantile_fraction: float = _opt(
        0.25, "Bottom fraction that copies the top one (default 0.25).", PBT_PANEL, ge=0, le=0.5
    )
    resample_probability: float = _opt(
        0.25, "Chance of a fresh draw instead of a perturbation (default 0.25).", PBT_PANEL,
        ge=0, le=1,
    )  # fmt: skip
    perturbation_factors: list[float] = _opt(
        [1.2, 0.8], "Factors a value is multiplied by (default 1.2,0.8).", PBT_PANEL
    )
    explore: Literal["random", "pb2"] = _opt(
        "random", "random (PBT) | pb2 (GP-bandit explore, Parker-Holder et al. 2020).", PBT_PANEL
    )
    metric: str | None = _opt(None, "Validation metric ranked (default: by task).", PBT_PANEL)
    seed: int = _opt(0, "Seed of the data split, the members and PBT's draws.", PBT_PANEL,
                     ge=0, le=MAX_SEED)  # fmt: skip
    storage: str | None = _opt(None, "Optuna storage of the lineage (default: "
                               "OUT/study.journal).", OUTPUT)  # fmt: skip
    study_name: str | None = _opt(None, "Study name (default: from data, model, optimizer).",
                                  OUTPUT)  # fmt: skip
    checkpoint_every: int | None = _opt(
        None, f"Checkpoint every N epochs to OUT/{CHECKPOINT}.", OUTPUT, ge=1
    )
    resume: bool = _opt(False, f"Continue from OUT/{CHECKPOINT}.", OUTPUT)
    overwrite: bool = _opt(False, "Replace --out.", OUTPUT)

    @field_validator("perturbation_factors", mode="before")
    @classmethod
    def _factors(cls, value: Any) -> Any:
        values = _numbers("perturbation_factors", value)
        for v in values or ():
            if v <= 0:
                raise ValueError(f"perturbation_factors: expected positive factors, got {v}")
        return values

    @field_validator("optimizer")
    @classmethod
    def _optimizer(cls, value: str) -> str:
        from optimkit.optim.database import entry

        return entry(value).name

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str | None) -> str | None:
        if value is not None:
            from optimkit.metrics import get_metric

            get_metric(value.removeprefix("val_"))
        return value


Config = Annotated[Path | None, typer.Option("--config", "-c", help="YAML file; every flag "
                                                                  "is a key.")]  # fmt: skip
Json = Annotated[bool, typer.Option("--json", help="Print the results as JSON.")]


@options_command(PBTOptions)
def pbt(config: Config = None, json: Json = False, **flags: Any) -> None:
    """Population Based Training (or PB2) of one population: exploit copies the best members'
    state inside the stacked tensors, explore writes new hyperparameters."""
    from optimkit.outputs import check_out

    try:
        options = load_options(config, flags, PBTOptions)
        check_out(options.out or Path("runs/pbt"))
        summary = run_pbt_command(options, show_progress=not json)
    except Exception as e:  # usage errors exit 2 without a traceback; others propagate
        typer.echo(f"error: {as_usage_error(e)}", err=True)
        raise typer.Exit(2) from None
    if json:
        typer.echo(jsonlib.dumps(summary, indent=2, default=str))
    else:
        _print(summary)


def _scheduler(options: PBTOptions) -> Any:
    from optimkit.tune.pb2 import PB2
    from optimkit.tune.pbt import PopulationBasedTraining

    cls = PB2 if options.explore == "pb2" else PopulationBasedTraining
    return cls(
        perturbation_interval=options.perturbation_interval,
        burn_in_period=options.burn_in_period, quantile_fraction=options.quantile_fraction,
        resample_probability=options.resample_probability,
        perturbation_factors=tuple(options.perturbation_factors),  # type: ignore[arg-type]
        seed=options.seed,
    )  # fmt: skip


def run_pbt_command(options: PBTOptions, show_progress: bool = True) -> dict[str, Any]:
    """Run `optimkit pbt` with parsed options; returns the summary written to results.json."""
    import optuna
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from optimkit.data import load_dataset
    from optimkit.outputs import atomic_write
    from optimkit.train import TrainConfig
    from optimkit.train.export import export_module
    from optimkit.tune.pbt import pbt as run
    from optimkit.tune.space import SearchSpace
    from optimkit.tune.tuner import DEFAULT_METRIC

    out = options.out or Path("runs/pbt")
    checkpoint, record = out / CHECKPOINT, out / RECORD
    if options.resume and not checkpoint.is_file():
        raise UsageError(f"resume: no checkpoint {str(checkpoint)!r}; run without --resume")
    if options.resume:
        check_resume(options, record)
    if not options.resume and out.is_dir() and any(out.iterdir()):
        if not options.overwrite:
            raise UsageError(f"out: {str(out)!r} exists and is not empty; pass --overwrite or "
                             "--resume")  # fmt: skip
        import shutil

        shutil.rmtree(out)
    space = SearchSpace.from_config(options.space, options.optimizer)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(options.threads)
    data_args = {
        "source": options.data, "target": options.target, "task": options.task,
        "impute": options.impute, "val_fraction": options.val_fraction,
        "test_fraction": options.test_fraction, "seed": options.seed, "pca": options.pca,
        "select_k": options.select_k, "device": options.device, "dtype": options.dtype,
    }  # fmt: skip
    dataset = load_dataset(**{**data_args, "dtype": getattr(torch, options.dtype)})
    metric = (options.metric or DEFAULT_METRIC[dataset.task]).removeprefix("val_")
    base = TrainConfig(
        model=options.model, model_options=options.model_options(), loss=options.loss,
        epochs=options.epochs, batch_size=options.batch_size, schedule=options.schedule,
        patience=options.patience, min_delta=options.min_delta, seed=options.seed,
        compile=options.compile, autocast=options.autocast, monitor=f"val_{metric}",
        restore_best=False,  # a PBT member's score is that of its last weights
    )  # fmt: skip
    scheduler = _scheduler(options)
    out.mkdir(parents=True, exist_ok=True)
    if options.checkpoint_every and not options.resume:
        atomic_write(record, jsonlib.dumps(options.model_dump(mode="json"), indent=2))
    progress = Progress(TextColumn(f"[bold]{options.explore if options.explore == 'pb2' else 'pbt'}"
                                   "[/bold]"), BarColumn(),
                        TextColumn("epoch {task.completed}/{task.total}"), TimeElapsedColumn(),
                        console=Console(stderr=True), disable=not show_progress)  # fmt: skip
    start = time.perf_counter()
    with progress:
        bar = progress.add_task("epochs", total=options.epochs)
        result = run(
            dataset, base, space, population=options.population, scheduler=scheduler,
            checkpoint=checkpoint if options.checkpoint_every or options.resume else None,
            checkpoint_every=options.checkpoint_every, resume=options.resume,
            on_epoch=lambda epoch, total: progress.update(bar, completed=epoch),
        )  # fmt: skip
    seconds = time.perf_counter() - start
    trainer = result.trainer
    assert trainer is not None
    best = result.best_member
    name = options.study_name or f"{dataset.name}-{options.model}-{options.optimizer}-pbt"
    storage_label = write_study(result, options.storage, out, name)
    result.to_csv(out / "pbt.csv")
    export_module(trainer.member_module(best, best=False), trainer.population.member_spec(best),
                  dataset, out / "model", hyperparameters=trainer.members[best],
                  optimizer=trainer.config.optimizer)  # fmt: skip
    test = {k: float(v[best]) for k, v in (trainer.test_results or {}).items()}
    summary: dict[str, Any] = {
        "study": name, "storage": storage_label, "explore": options.explore,
        "metric": result.metric, "mode": result.mode, "population": trainer.k,
        "epochs": options.epochs, "best_member": best, "best_value": result.scores[best],
        "best_config": result.configs[best], "test": test,
        "scores": result.scores, "curves": result.curves,
        "perturbations": len(result.perturbations),
        "initial": result.initial, "replay": replay_schedule(result),
        "dataset": data_args, "train_config": _config_dict(trainer.config),
        "options": options.model_dump(mode="json"),
        "scheduler": {
            "perturbation_interval": scheduler.perturbation_interval,
            "burn_in_period": scheduler.burn_in_period,
            "quantile_fraction": scheduler.quantile_fraction,
            "resample_probability": scheduler.resample_probability,
            "perturbation_factors": list(scheduler.perturbation_factors),
            "seed": scheduler.seed,
        },
        "seconds": seconds, "out": str(out),
    }  # fmt: skip
    atomic_write(out / "results.json", jsonlib.dumps(summary, indent=2, default=_jsonable))
    from optimkit.report.pbt import write_pbt_report

    write_pbt_report(out)  # OUT/report: schedules, lineage and score figures, pbt.html
    checkpoint.unlink(missing_ok=True)
    record.unlink(missing_ok=True)
    return summary


def check_resume(options: PBTOptions, record: Path) -> None:
    """--resume with options that differ from those the checkpointed run started with
    (OUT/pbt.options.json; all but `RESUME_FREE`) is refused in one line naming each option
    and both values: the resumed run would no longer end as the uninterrupted one."""
    try:
        saved = jsonlib.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = None
    if not isinstance(saved, dict):
        raise UsageError(f"resume: no readable record {str(record)!r} of the options the "
                         "checkpoint was made with; start afresh with --overwrite")  # fmt: skip
    now = options.model_dump(mode="json")
    diffs = [f"{k}: {_shown(saved.get(k))} in the checkpoint, {_shown(now.get(k))} now"
             for k in [*now, *(k for k in saved if k not in now)]
             if k not in RESUME_FREE and saved.get(k) != now.get(k)]  # fmt: skip
    if diffs:
        raise UsageError(f"resume: the options differ from the checkpoint's ({'; '.join(diffs)}); "
                         "resume with the checkpoint's options or start afresh with "
                         "--overwrite")  # fmt: skip


def _shown(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, list):
        return ",".join(_shown(v) for v in value)
    return jsonlib.dumps(value) if isinstance(value, dict) else str(value)


def _config_dict(config: Any) -> dict[str, Any]:
    import dataclasses

    out = dataclasses.asdict(config)
    if not isinstance(out["model"], str):
        out["model"] = None  # a model given as a function cannot be replayed from the file
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def replay_schedule(result: Any) -> list[dict[str, Any]]:
    from optimkit.tune.pbt import replay_schedule as schedule

    return schedule(result)


def write_study(result: Any, spec: str | None, out: Path, name: str) -> str:
    """The lineage as an Optuna study (replacing an earlier one of that name, e.g. the
    partial study of a killed run): one trial per member."""
    import optuna

    from optimkit.tune import open_storage
    from optimkit.tune.storage import storage_label

    storage = open_storage(spec, out)
    direction: Literal["minimize", "maximize"] = "maximize" if result.mode == "max" else "minimize"
    with contextlib.suppress(KeyError):  # no earlier study of that name
        optuna.delete_study(study_name=name, storage=storage)
    study = optuna.create_study(study_name=name, storage=storage, direction=direction)
    study.set_user_attr("kind", "pbt")
    study.set_user_attr("metric", result.metric)
    frame = result.to_frame()
    for k, score in enumerate(result.scores):
        rows = frame[frame.member == k].to_dict(orient="records")
        segments = [{c: _plain(v) for c, v in r.items()} for r in rows]
        attrs = {
            "member": k, "segments": segments,
            "initial": {n: _plain(v) for n, v in result.initial[k].items()},
            "perturbations": [
                {"epoch": p.epoch, "source": p.source, "score": p.score,
                 "source_score": p.source_score, "old": p.old, "new": p.new}
                for p in result.perturbations if p.member == k
            ],
        }  # fmt: skip
        curve = {i + 1: v for i, v in enumerate(result.curves[k]) if math.isfinite(v)}
        finite = math.isfinite(score)
        trial = optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE if finite else optuna.trial.TrialState.FAIL,
            value=score if finite else None, intermediate_values=curve,
            user_attrs=jsonlib.loads(jsonlib.dumps(attrs, default=_jsonable)),
        )  # fmt: skip
        study.add_trial(trial)
    return storage_label(spec, out)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return value


def _print(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary['explore']} PBT of {summary['population']} members: best by "
                        f"{summary['metric']}")  # fmt: skip
    table.add_column("")
    table.add_column("", justify="right")
    table.add_row("best member", str(summary["best_member"]))
    table.add_row(summary["metric"], f"{summary['best_value']:.4f}")
    for k, v in summary["test"].items():
        table.add_row(f"test {k}", f"{v:.4f}")
    for k, v in summary["best_config"].items():
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    table.add_row("perturbations", str(summary["perturbations"]))
    table.add_row("wall time", f"{summary['seconds']:.1f} s")
    console = Console()
    console.print(table)
    console.print(f"lineage in {summary['storage']}; pbt.csv, results and model in "
                  f"{summary['out']}")  # fmt: skip
