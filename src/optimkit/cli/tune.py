"""`optimkit tune` and `optimkit compare`: Optuna studies and optimizer tournaments."""

from __future__ import annotations

import json as jsonlib
import os
import shutil
from pathlib import Path
from typing import Annotated, Any

import typer

from optimkit.cli.command import options_command
from optimkit.cli.options import (
    CompareOptions,
    SearchOptions,
    TuneOptions,
    as_usage_error,
    load_options,
)

Opt = typer.Option
Config = Annotated[Path | None, Opt("--config", "-c", help="YAML file; every flag is a key.")]
Json = Annotated[bool, Opt("--json", help="Print the results as JSON.")]
Text = Annotated[str | None, Opt()]


@options_command(TuneOptions)
def tune(
    config: Config = None,
    storage: Annotated[
        str | None, Opt(help="SQLAlchemy URL or journal file (default: OUT/study.journal).")
    ] = None,
    json: Json = False,
    workers: Annotated[
        int | None,
        Opt(
            "--workers",
            min=1,
            help=(
                "Worker processes on this machine (with --ray: Ray actors; default one per node), "
                "each a population tuner on its share of the CPU threads, all on one study."
            ),
        ),
    ] = None,
    ray: Annotated[
        bool,
        Opt(
            "--ray",
            help=(
                "Run the workers as Ray actors: on a local Ray instance, or on the cluster at "
                "ADDRESS ('auto' or HOST:PORT). Needs optimkit\\[ray]."
            ),
        ),
    ] = False,
    address: Annotated[
        str | None,
        typer.Argument(
            metavar="ADDRESS", help="Ray cluster address, with --ray.", show_default=False
        ),
    ] = None,
    grpc_proxy: Annotated[
        bool,
        Opt(
            "--grpc-proxy",
            help=(
                "Start Optuna's gRPC storage proxy in front of the --storage database "
                "(postgresql://...): the workers reach the study through it and hold no "
                "database connection. Needs optimkit\\[ray] (grpcio)."
            ),
        ),
    ] = False,
    **flags: Any,
) -> None:
    """Tune hyperparameters with Optuna; trials train as populations (continuous batching)."""
    flags["storage"] = storage
    scaled = _scaled(workers, ray, address, threads_given=flags.get("threads") is not None,
                     grpc_proxy=grpc_proxy)  # fmt: skip
    _run(lambda: load_options(config, flags, TuneOptions), scaled, json, _print_tune,
         "runs/tune")  # fmt: skip


@options_command(CompareOptions)
def compare(
    config: Config = None,
    storage: Text = None,
    json: Json = False,
    **flags: Any,
) -> None:
    """An optimizer tournament: same tuning budget each, best re-run with S seeds, a report."""
    flags["storage"] = storage
    _run(lambda: load_options(config, flags, CompareOptions), run_compare, json, _print_compare,
         "runs/compare")  # fmt: skip


def _run(load, run, as_json: bool, show, default_out: str) -> None:
    from optimkit.outputs import check_out, discard_on_error
    from optimkit.tune.storage import RunStopped

    try:
        options = load()
        out = check_out(options.out or Path(default_out))  # before any work
        # a run refused before it trained leaves no study file and no output folder
        stopped: Exception | None = None
        with discard_on_error(out, *_storage_files(options.storage)):
            try:
                result = run(options, show_progress=not as_json)
            except RunStopped as e:  # after it stored trials: what it wrote is kept
                stopped = e
        if stopped is not None:
            raise stopped
    except Exception as e:  # usage errors exit 2 without a traceback; others propagate
        err = as_usage_error(e)
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(jsonlib.dumps(result, indent=2, default=str))
    else:
        show(result)


def _storage_files(spec: str | None) -> tuple[Path, ...]:
    """The local file a --storage names (a journal or an SQLite file), if any."""
    if spec is None:
        return ()
    if spec.startswith("journal:") or spec.endswith((".log", ".journal")):
        return (Path(spec.removeprefix("journal:")),)
    if spec.startswith("sqlite:///") and spec[10:] and ":memory:" not in spec:
        return (Path(spec[10:].split("?")[0]),)
    return ()


def _scaled(workers: int | None, ray: bool, address: str | None, threads_given: bool,
            grpc_proxy: bool = False):  # fmt: skip
    """run_tune, on several workers (--workers N > 1, --ray, --grpc-proxy) where asked."""
    if not ray and address is not None:
        return lambda *a, **k: _refuse(f"unexpected argument {address!r} (a Ray address "
                                       "follows --ray)")  # fmt: skip
    if not ray and (workers or 1) == 1 and not grpc_proxy:
        return run_tune

    def run(options: TuneOptions, show_progress: bool = True) -> dict[str, Any]:
        from optimkit.tune.workers import Scale

        scale = Scale(workers=workers, ray=ray, address=address, grpc_proxy=grpc_proxy)
        return run_tune(options, show_progress, scale=scale, threads_given=threads_given)

    return run


def _refuse(message: str):
    raise ValueError(message)


# ------------------------------------------------------------------------------------ set-up
def _prepare(options: SearchOptions, default_out: str):
    import optuna
    import torch

    from optimkit.data import load_dataset
    from optimkit.train import TrainConfig
    from optimkit.tune import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(options.threads)
    out = options.out or Path(default_out)
    dataset = load_dataset(
        options.data, target=options.target, task=options.task, impute=options.impute,
        val_fraction=options.val_fraction, test_fraction=options.test_fraction,
        seed=options.seed, pca=options.pca, select_k=options.select_k, device=options.device,
        dtype=getattr(torch, options.dtype),
    )  # fmt: skip
    base = TrainConfig(
        model=options.model, model_options=options.model_options(), loss=options.loss,
        epochs=options.epochs, batch_size=options.batch_size, schedule=options.schedule,
        patience=options.patience, min_delta=options.min_delta, seed=options.seed,
        compile=options.compile, autocast=options.autocast,
    )  # fmt: skip
    storage = open_storage(options.storage, out)
    return out, dataset, base, storage


# ------------------------------------------------------------------------------------ tune
def run_tune(
    options: TuneOptions,
    show_progress: bool = True,
    scale: Any = None,
    threads_given: bool = False,
    on_start: Any = None,
) -> dict[str, Any]:
    """One tuner in this process, or (`scale`: an `optimkit.tune.workers.Scale`) a driver of
    several workers on one study; the results are written here, once, at the end."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from optimkit.tune import SearchSpace, StudyMirror, Tuner, make_pruner, make_sampler
    from optimkit.tune.tuner import DEFAULT_METRIC

    space = SearchSpace.from_config(options.space, options.optimizer)
    if scale is not None:
        return _write_tune(options, _drive(options, scale, show_progress, threads_given,
                                           on_start))  # fmt: skip
    out, dataset, base, storage = _prepare(options, "runs/tune")
    metric = options.metric or DEFAULT_METRIC[dataset.task]
    from optimkit.metrics import get_metric

    direction = "maximize" if get_metric(metric).greater_is_better else "minimize"
    multi = len(options.objectives) > 1
    directions = [direction] + ["minimize"] * (len(options.objectives) - 1)
    sampler = make_sampler(options.sampler, space, options.seed, options.grid_points, multi)
    pruner = make_pruner(options.pruner if not multi else "none", options.epochs)
    name = options.study_name or f"{dataset.name}-{options.model}-{options.optimizer or 'mixed'}"
    mirror = StudyMirror(storage, name, directions, sampler, pruner)
    progress = Progress(TextColumn("[bold]tuning[/bold]"), BarColumn(),
                        TextColumn("{task.completed}/{task.total} trials"), TimeElapsedColumn(),
                        console=Console(stderr=True), disable=not show_progress)  # fmt: skip
    with progress:
        bar = progress.add_task("trials", total=options.trials, completed=mirror.resumed)
        tuner = Tuner(
            dataset, base, space, mirror, trials=options.trials, timeout=options.timeout,
            population=options.population, metric=metric, objectives=tuple(options.objectives),
            target=options.target_value,
            on_trial=lambda done, total: progress.update(  # stored so far (every process's)
                bar, completed=mirror.finished_count()),
        )  # fmt: skip
        result = tuner.run()
        progress.update(bar, completed=mirror.finished_count())
    from optimkit.tune.workers import Driven

    return _write_tune(options, Driven(out, dataset, name, metric, result, mirror.resumed,
                                       mirror.reasked))  # fmt: skip


def _drive(options: TuneOptions, scale: Any, show_progress: bool, threads_given: bool,
           on_start: Any) -> Any:  # fmt: skip
    from optimkit.tune.workers import drive

    return drive(options, scale, show_progress, threads_given, on_start)


def _write_tune(options: TuneOptions, run: Any) -> dict[str, Any]:
    """results.json and the best model, from a finished run (`optimkit.tune.workers.Driven`)."""
    from optimkit.outputs import atomic_write
    from optimkit.train.export import export_module
    from optimkit.tune.storage import storage_label

    out, dataset, name, metric, result = run.out, run.dataset, run.name, run.metric, run.result
    if result.asked == 0 and result.finished_before >= options.trials:
        typer.echo(f"study {name!r} already has {result.finished_before} finished trials "
                   f"(--trials {options.trials}): nothing to run; the results describe its best "
                   "trial", err=True)  # fmt: skip
    summary: dict[str, Any] = {
        "study": name, "storage": storage_label(options.storage, out),
        "trials": result.counts, "resumed_trials": run.resumed,
        "reasked_trials": run.reasked, "asked_trials": result.asked, "metric": metric,
        "best_trial": result.best_number, "best_value": result.best_value,
        "best_retrained": result.best_retrained,
        "best_config": result.best_config, "test": result.test,
        "seconds": result.seconds, "tuner_overhead_seconds": result.overhead_seconds,
        "out": str(out),
    }  # fmt: skip
    if run.workers:
        summary["workers"] = run.workers
    out.mkdir(parents=True, exist_ok=True)
    if result.best_module is not None and result.best_trainer is not None:
        trainer, k = result.best_trainer, int(result.best_slot or 0)
        export_module(result.best_module, trainer.population.member_spec(k), dataset,
                      out / "model", hyperparameters=result.best_config or {},
                      optimizer=trainer.config.optimizer)  # fmt: skip
    atomic_write(out / "results.json", jsonlib.dumps(summary, indent=2, default=str))
    return summary


def _print_tune(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"study {summary['study']}: best trial by validation {summary['metric']}")
    table.add_column("")
    table.add_column("", justify="right")
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary["trials"].items()))
    table.add_row("trials", counts)
    if summary["best_trial"] is None:
        table.add_row("best trial", "none complete in this study")
    else:
        table.add_row("best trial", str(summary["best_trial"]))
        table.add_row(f"val {summary['metric']}", f"{summary['best_value']:.4f}")
        for k, v in summary["test"].items():
            table.add_row(f"test {k}", f"{v:.4f}")
        for k, v in (summary["best_config"] or {}).items():
            table.add_row(k, _fmt(v))
    overhead = summary["tuner_overhead_seconds"]
    table.add_row("wall time", f"{summary['seconds']:.1f} s (tuner overhead {overhead:.2f} s)")
    console.print(table)
    console.print(f"study in {summary['storage']}; results and best model in {summary['out']}")


# ------------------------------------------------------------------------------------ compare
def run_compare(options: CompareOptions, show_progress: bool = True) -> dict[str, Any]:
    from rich.console import Console

    from optimkit.tune.compare import compare as run

    out, dataset, base, storage = _prepare(options, "runs/compare")
    target = options.target_value
    if target is None and dataset.task == "classification":
        target = 0.97
    console = Console(stderr=True, quiet=not show_progress)
    with console.status("starting") as status:
        tournament = run(
            dataset, base, options.optimizers, storage,
            study_prefix=options.study_name or f"{dataset.name}-{options.model}",
            trials=options.trials, population=options.population, seeds=options.seeds,
            sampler=options.sampler, pruner=options.pruner, metric=options.metric,
            target=target, seed=options.seed, space=options.space,
            on_stage=lambda text: status.update(text),
        )  # fmt: skip
    target = tournament.target
    from optimkit.outputs import staging_folder

    with staging_folder(out, "report") as staging:
        tournament.curves.to_csv(staging / "curves.csv", index=False)
        tournament.trials.to_csv(staging / "trials.csv", index=False)
        _report(tournament, dataset, options, target, staging)
        for item in staging.iterdir():
            dest = out / item.name
            if dest.is_dir():
                shutil.rmtree(dest)
            os.replace(item, dest)
    board = tournament.leaderboard
    from optimkit.tune.tuner import DEFAULT_METRIC

    metric = options.metric or DEFAULT_METRIC[dataset.task]
    return {
        "data": dataset.name, "model": options.model, "metric": metric,
        "target": target, "seconds": tournament.seconds, "out": str(out),
        "leaderboard": board.to_dict(orient="records"),
    }  # fmt: skip


def _report(tournament, dataset, options: CompareOptions, target, folder: Path) -> None:
    """leaderboard.csv, report.html and the PNG figures (optimkit.report)."""
    import datetime

    from optimkit import __version__
    from optimkit.report import TournamentResult, write_report
    from optimkit.tune.tuner import DEFAULT_METRIC

    metric = options.metric or DEFAULT_METRIC[dataset.task]
    from optimkit.metrics import get_metric

    meta = {
        "dataset": dataset.name, "task": dataset.task, "model": options.model,
        "metric": metric, "greater_is_better": get_metric(metric).greater_is_better,
        "target": target, "trials": options.trials, "epochs": options.epochs,
        "seeds": options.seeds, "sampler": options.sampler, "pruner": options.pruner,
        "wall_time": tournament.seconds, "version": __version__,
        "date": datetime.date.today().isoformat(),
    }  # fmt: skip
    result = TournamentResult(meta, tournament.leaderboard, tournament.curves, tournament.trials,
                              tournament.importance)  # fmt: skip
    write_report(result, folder)


def _print_compare(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"optimizer tournament on {summary['data']} ({summary['model']}): "
                        f"test {summary['metric']} over seeds")  # fmt: skip
    for col in ("rank", "optimizer", "test mean", "± std", "val mean", "to target (s)",
                "epochs to target", "best params"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("optimizer", "best params") else "right")
    for row in summary["leaderboard"]:
        table.add_row(
            str(row["rank"]), row["optimizer"], f"{row['test_mean']:.4f}",
            f"{row['test_std']:.4f}", f"{row['val_mean']:.4f}",
            _fmt(row["time_to_target_mean"]), _fmt(row["epochs_to_target_mean"]),
            ", ".join(f"{k}={_fmt(v)}" for k, v in row["best_params"].items()),
        )  # fmt: skip
    console = Console(width=max(120, Console().width))
    console.print(table)
    console.print(f"{summary['seconds']:.0f} s; leaderboard, report and study in {summary['out']}")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "—" if v != v else f"{v:.3g}"
    if isinstance(v, tuple | list):
        return ",".join(_fmt(x) for x in v)
    return str(v)


# ------------------------------------------------------------------------------------ worker
def worker(
    storage: Annotated[
        str,
        Opt(
            "--storage",
            help="The study's storage (an RDB URL, grpc://HOST:PORT or a journal file).",
        ),
    ],
    study_name: Annotated[str, Opt("--study-name", help="The study to join.")],
    threads: Annotated[
        int | None, Opt("--threads", min=1, max=4096, help="CPU threads (default: the driver's).")
    ] = None,
    device: Annotated[
        str | None, Opt("--device", help="cpu | cuda (default: the driver's).")
    ] = None,
    index: Annotated[int | None, Opt("--index", min=0, hidden=True)] = None,
    json: Json = False,
) -> None:
    """Join a running study (started by `optimkit tune --workers/--ray`) from any machine: a
    population tuner on it until its budget is spent; writes trials only."""
    from optimkit.tune.workers import run_worker

    if device is not None and device not in ("cpu", "cuda"):
        typer.echo(f"error: device: expected cpu or cuda, got {device!r}", err=True)
        raise typer.Exit(2)
    try:
        line = run_worker(storage, study_name, threads=threads, device=device, index=index)
    except Exception as e:
        err = as_usage_error(e)
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    if json:
        typer.echo(jsonlib.dumps(line, default=str))
    else:
        typer.echo(f"worker {line['worker']}: {line['asked_trials']} trials in "
                   f"{line['seconds']:.1f} s ({line['reasked_trials']} re-asked)")  # fmt: skip
