"""Several population tuners on one study: worker processes on this machine, or Ray actors.

The driver (`optimkit tune --workers N`, `--ray`) opens the study, publishes its tune options
in the study's system attributes (``optimkit:options``), starts the workers and watches the
study (one progress bar: finished trials across all workers, best value). Each worker
(`run_worker`, also `optimkit worker --storage URL --study-name S` from any machine) reads the
options from the study, loads the data, and runs a `Tuner` on its own share of the CPU
threads (or its own GPU). The workers share the budget through their claims in the storage
(`StudyMirror.claim`, under the study's lock), so the study ends with exactly ``--trials``
finished trials; a worker that dies (kill -9, a killed Ray actor) leaves a claim whose slots
the others take over and run again. When they are done, the driver describes the study's
best trial once (trained again for its test metrics and the exported model) and writes the
results; the workers write nothing but trials.

Storage: several processes need one that Optuna supports for them: the journal file (the
default, one machine) or an RDB server (PostgreSQL); an SQLite URL is refused. Through Optuna's
gRPC storage proxy the workers hold no database connection: ``--storage grpc://HOST:PORT`` (a
proxy the user runs, `optuna.storages.run_grpc_proxy_server`), or ``--storage
postgresql://... --grpc-proxy``, where the driver starts one (`GrpcProxy`) for the run and
the driver itself keeps its own connection. The proxy has no lock: the claims are serialized
by a ticket lock of trials (`optimkit.tune.storage._TrialLock`), so the budget stays exact.

Devices: with a study on CUDA and several visible GPUs, worker process i gets GPU i mod G
(`gpu_assignment`, through CUDA_VISIBLE_DEVICES); Ray actors get ``num_gpus=1`` each, one
per GPU by default (`optimkit.tune.ray_workers.plan_actors`). On CPU nothing changes.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from optimkit.tune.storage import (
    OPTIONS_KEY,
    RunStopped,
    counts_toward_budget,
    create_or_load,
    is_sqlite,
    open_storage,
)

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass
class Scale:
    """How a tune run is spread: `workers` processes (None: one per Ray node, or per GPU), on
    Ray when `ray` (at `address`: None starts a local instance, "auto" or HOST:PORT joins a
    cluster); `grpc_proxy`: the driver starts Optuna's gRPC storage proxy in front of the RDB
    storage and the workers reach the study through it (`optimkit.tune.storage.GrpcProxy`)."""

    workers: int | None = None
    ray: bool = False
    address: str | None = None
    grpc_proxy: bool = False

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers: expected an int >= 1, got {self.workers}")
        if self.address is not None and not self.ray:
            raise ValueError(f"got an address ({self.address!r}) without --ray")

    @property
    def cluster(self) -> bool:
        """On a Ray cluster that may span machines (an address given)."""
        return self.ray and self.address not in (None, "", "local")

    @property
    def spread(self) -> bool:
        return self.ray or (self.workers or 1) > 1


@dataclass
class Study:
    """What the tuner of a study is built from (the same in the driver and every worker)."""

    name: str
    metric: str
    directions: list[str]
    space: Any
    sampler: optuna.samplers.BaseSampler
    pruner: optuna.pruners.BasePruner


def study_of(options: Any, dataset: Any, seed_offset: int = 0) -> Study:
    """The study's name, metric, directions, search space, sampler and pruner from the tune
    options; `seed_offset` gives each worker its own sampler stream."""
    from optimkit.metrics import get_metric
    from optimkit.tune import SearchSpace, make_pruner, make_sampler
    from optimkit.tune.tuner import DEFAULT_METRIC

    space = SearchSpace.from_config(options.space, options.optimizer)
    metric = options.metric or DEFAULT_METRIC[dataset.task]
    direction = "maximize" if get_metric(metric).greater_is_better else "minimize"
    multi = len(options.objectives) > 1
    directions = [direction] + ["minimize"] * (len(options.objectives) - 1)
    sampler = make_sampler(options.sampler, space, options.seed + seed_offset,
                           options.grid_points, multi)  # fmt: skip
    pruner = make_pruner(options.pruner if not multi else "none", options.epochs)
    name = options.study_name or f"{dataset.name}-{options.model}-{options.optimizer or 'mixed'}"
    return Study(name, metric, directions, space, sampler, pruner)


def tuner_of(options: Any, dataset: Any, base: Any, study: Study, mirror: Any) -> Any:
    from optimkit.tune import Tuner

    return Tuner(
        dataset, base, study.space, mirror, trials=options.trials, timeout=options.timeout,
        population=options.population, metric=study.metric,
        objectives=tuple(options.objectives), target=options.target_value,
    )  # fmt: skip


def check_storage(spec: str | None, scale: Scale) -> None:
    """Refuse storages that several workers cannot share: SQLite (Optuna's documentation: one
    process only), and a local file on a Ray cluster of several machines (checked there)."""
    if scale.spread and is_sqlite(spec):
        raise ValueError(
            f"storage: SQLite ({spec}) is for one process; with several workers use the "
            "journal file (the default, OUT/study.journal, or journal:PATH) or PostgreSQL "
            "(--storage postgresql://...)"
        )


def is_local_file(spec: str) -> bool:
    return spec.startswith("journal:") or spec.endswith((".log", ".journal"))


def check_proxy(spec: str | None) -> None:
    """--grpc-proxy needs an RDB URL to put the proxy in front of."""
    if spec is None or is_local_file(spec) or "://" not in spec or spec.startswith("grpc://"):
        raise ValueError(
            f"--grpc-proxy: expected --storage with a database URL "
            f"(postgresql://...) for the proxy to serve, got {spec or 'none'}"
            " (a journal file is served to one machine's workers as it is)"
        )


# ------------------------------------------------------------------------------ devices
def visible_gpus(env: dict[str, str], count: int) -> list[str]:
    """The GPUs this process sees, as CUDA_VISIBLE_DEVICES names them for a child: the
    entries of its own CUDA_VISIBLE_DEVICES (indices or UUIDs, as given) when set, else
    0 .. count-1 (`count`: torch.cuda.device_count())."""
    given = env.get("CUDA_VISIBLE_DEVICES")
    if given is None:
        return [str(i) for i in range(count)]
    names = [g.strip() for g in given.split(",") if g.strip()]
    return names[:count] if count else []


def gpu_assignment(gpus: list[str], workers: int) -> list[str | None]:
    """Each worker's CUDA_VISIBLE_DEVICES: with several GPUs, worker i gets GPU i mod G (one
    GPU each while workers <= G; beyond that they share round-robin); with one GPU or none,
    None: the worker inherits this process's view (CPU runs are unchanged)."""
    if workers < 1:
        raise ValueError(f"workers: expected an int >= 1, got {workers}")
    if len(gpus) < 2:
        return [None] * workers
    return [gpus[i % len(gpus)] for i in range(workers)]


def worker_env(env: dict[str, str], threads: int, gpu: str | None) -> dict[str, str]:
    """A worker process's environment: its CPU threads, and its GPU where it has one."""
    out = {**env, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if gpu is not None:
        out["CUDA_VISIBLE_DEVICES"] = gpu
    return out


# ------------------------------------------------------------------------------ the start
def warm_up() -> None:
    """Before tuning: construct a throwaway torch.optim optimizer, whose first construction
    imports torch's compiler stack (torch.optim's dynamo-disabled methods import it lazily:
    1-3 s). Otherwise the first trial's trainer pays it inside the tuning, while the budget
    is shared, and the other workers run ahead alone."""
    import torch

    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


#: a worker process's end of the driver's start barrier: "READY_FD,GO_FD" (`run_processes`)
START_ENV = "OPTIMKIT_START_FDS"
#: seconds the driver waits for the last worker to be ready once the first is
START_WAIT = 30.0


def await_start() -> None:
    """A worker started by `run_processes`: say it is ready (imports done, data loaded, the
    tuner built), then wait for the driver's go, so that its workers start tuning together
    and split the budget evenly (a worker that loads faster would otherwise run trials alone,
    and a short study could be over before the last one joins). The go is one byte, or the
    driver's end of the pipe closing (a driver that died: the worker tunes on its own)."""
    fds = os.environ.pop(START_ENV, None)
    if not fds:
        return
    ready, go = (int(fd) for fd in fds.split(","))
    with contextlib.suppress(OSError):
        os.write(ready, b"r")
        os.close(ready)
    with contextlib.suppress(OSError):
        os.read(go, 1)
        os.close(go)


class StartBarrier:
    """The driver's end: a ready pipe and a go pipe per worker (`await_start`). `release`
    sends the go once every worker is ready or gone (its ready pipe closed: it exited before
    tuning), or `START_WAIT` seconds after the first was ready, whichever comes first."""

    def __init__(self, workers: int) -> None:
        self.pipes = [(os.pipe(), os.pipe()) for _ in range(workers)]  # (ready r, w), (go r, w)
        self.waiting = {ready[0]: i for i, (ready, _) in enumerate(self.pipes)}
        self.first: float | None = None
        self.released = False

    def child(self, i: int) -> tuple[dict[str, str], tuple[int, int]]:
        """Worker i's environment entry and the descriptors it inherits."""
        (_, ready_w), (go_r, _) = self.pipes[i]
        return {START_ENV: f"{ready_w},{go_r}"}, (ready_w, go_r)

    def started(self) -> None:
        """The workers are started: close the driver's copies of their ends."""
        for (_, ready_w), (go_r, _) in self.pipes:
            os.close(ready_w)
            os.close(go_r)

    def wait(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for workers to say ready; release when it is time."""
        import select

        if self.released:
            time.sleep(timeout)
            return
        readable, _, _ = select.select(list(self.waiting), [], [], timeout)
        for fd in readable:
            got = os.read(fd, 1)
            if got and self.first is None:
                self.first = time.monotonic()
            os.close(fd)
            del self.waiting[fd]
        late = self.first is not None and time.monotonic() - self.first > START_WAIT
        if not self.waiting or late:
            self.release()

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        for fd in self.waiting:
            os.close(fd)
        self.waiting = {}
        for _, (_, go_w) in self.pipes:
            with contextlib.suppress(OSError):  # a worker that is gone
                os.write(go_w, b"g")
            os.close(go_w)


# ------------------------------------------------------------------------------ a worker
def run_worker(
    spec: str,
    study_name: str,
    *,
    threads: int | None = None,
    device: str | None = None,
    index: int | None = None,
    heartbeat_interval: float | None = None,
    grace_period: float | None = None,
    retry_seconds: float | None = None,
) -> dict[str, Any]:
    """Join the study `study_name` in the storage `spec` and tune until its budget is spent;
    its options come from the study (published by its driver). Returns this worker's line."""
    import torch

    from optimkit.cli.options import TuneOptions
    from optimkit.tune import StudyMirror
    from optimkit.tune.storage import storage_label

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with contextlib.suppress(RuntimeError):  # set already (a Ray actor's second study)
        torch.set_num_interop_threads(threads or 1)
    storage = open_storage(spec, None)
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        raise ValueError(f"study: no study {study_name!r} in {spec}") from None
    published = storage.get_study_system_attrs(study_id).get(OPTIONS_KEY)
    del storage  # the tuner's is opened with the data (below)
    if not isinstance(published, dict):
        raise ValueError(f"study: {study_name!r} in {spec} was not started by optimkit tune "
                         "--workers/--ray (it has no published options)")  # fmt: skip
    values = {**published, "storage": spec, "study_name": study_name}
    if threads is not None:
        values["threads"] = threads
    if device is not None:
        values["device"] = device
    options = TuneOptions(**values)
    from optimkit.cli.tune import _prepare

    tic = time.perf_counter()
    _, dataset, base, storage = _prepare(options, "runs/tune")
    storage_kw: dict[str, Any] = {"label": storage_label(spec, Path("."))}
    given = {"heartbeat_interval": heartbeat_interval, "grace_period": grace_period,
             "retry_seconds": retry_seconds}  # fmt: skip
    storage_kw.update({k: v for k, v in given.items() if v is not None})
    study = study_of(options, dataset, seed_offset=0 if index is None else 7919 * index)
    mirror = StudyMirror(storage, study.name, study.directions, study.sampler, study.pruner,
                         reseed=index is None, **storage_kw)  # fmt: skip
    tuner = tuner_of(options, dataset, base, study, mirror)
    tuner.describe_best = False
    warm_up()
    await_start()
    cpu = time.process_time()  # this process's CPU time in tuning (all its threads)
    started = time.time()
    result = tuner.run()
    ended = time.time()
    cpu = time.process_time() - cpu
    import socket

    return {
        "worker": mirror.worker, "index": index, "host": socket.gethostname(),
        "pid": os.getpid(), "threads": torch.get_num_threads(), "device": options.device,
        "asked_trials": result.asked, "reasked_trials": mirror.reasked,
        "seconds": time.perf_counter() - tic, "cpu_seconds": cpu,
        "tuner_overhead_seconds": result.overhead_seconds,
        "storage_seconds": mirror.store_seconds, "started_at": started, "ended_at": ended,
        "exit": 0,
    }  # fmt: skip


# ------------------------------------------------------------------------------ the driver
@dataclass
class Driven:
    """What the driver hands the results writer."""

    out: Path
    dataset: Any
    name: str
    metric: str
    result: Any  # TuneResult
    resumed: int
    reasked: int
    workers: list[dict[str, Any]] = field(default_factory=list)
    driver_cpu_seconds: float = 0.0  # the driver's CPU time while its workers ran


class Watch:
    """The driver's view of the study: finished trials (as the budget counts them) and the
    best value, read at most every `every` seconds; storage errors are skipped (a restarting
    database: the workers retry, the next look sees it)."""

    def __init__(self, spec: str, name: str, maximize: bool, every: float = 0.5) -> None:
        self.storage = open_storage(spec, None)
        self.study_id = self.storage.get_study_id_from_name(name)
        self.maximize, self.every = maximize, every
        self.finished, self.best = 0, None
        self._last = -float("inf")

    def look(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._last < self.every:
            return
        self._last = time.monotonic()
        try:
            trials = self.storage.get_all_trials(self.study_id, deepcopy=False, states=_FINISHED)
        except Exception:
            return
        self.finished = sum(1 for t in trials if counts_toward_budget(t))
        values = [t.values[0] for t in trials if t.state == TrialState.COMPLETE and t.values]
        if values:
            self.best = max(values) if self.maximize else min(values)


def worker_threads(options_threads: int | None, workers: int) -> int:
    """Each worker's CPU threads: as given (--threads, per worker), else an equal share of
    this machine's cores (at least one)."""
    if options_threads is not None:
        return options_threads
    return max(1, len(os.sched_getaffinity(0)) // workers)


def drive(
    options: Any,
    scale: Scale,
    show_progress: bool = True,
    threads_given: bool = False,
    on_start: Callable[[list[Any]], None] | None = None,
) -> Driven:
    """Run the study on `scale`'s workers; see the module docstring. `on_start` receives the
    workers (processes, or Ray actor handles) once they are started (tests kill one)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from optimkit.cli.tune import _prepare
    from optimkit.tune import StudyMirror

    check_storage(options.storage, scale)
    if scale.grpc_proxy:
        check_proxy(options.storage)
    out = Path(options.out or "runs/tune").resolve()
    spec = options.storage
    if spec is None:  # the default file, named absolutely for every worker
        from optimkit.tune.storage import default_storage_path

        out.mkdir(parents=True, exist_ok=True)
        path = default_storage_path(out)
        spec = f"sqlite:///{path}" if path.suffix == ".db" else f"journal:{path}"
        check_storage(spec, scale)
    elif is_local_file(spec):
        spec = f"journal:{Path(spec.removeprefix('journal:')).resolve()}"
    _, dataset, base, storage = _prepare(options.model_copy(update={"storage": spec}), str(out))
    # the driver only reads (its looks at a restarting database are skipped, not reported)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = study_of(options, dataset)
    study_id = create_or_load(storage, study.name, _directions(study.directions))
    published = options.model_dump(mode="json", exclude={"storage"})
    published["study_name"] = study.name
    if Path(str(options.data)).exists():  # a file: named absolutely for the workers
        published["data"] = str(Path(str(options.data)).resolve())
    storage.set_study_system_attr(study_id, OPTIONS_KEY, published)
    if hasattr(storage, "sync"):
        storage.sync()
    watch = Watch(spec, study.name, study.directions[0] == "maximize")
    watch.look(force=True)
    resumed = watch.finished
    threads = options.threads if threads_given else None
    progress = Progress(TextColumn("[bold]tuning[/bold]"), BarColumn(),
                        TextColumn("{task.completed}/{task.total} trials"),
                        TextColumn("{task.fields[best]}"), TimeElapsedColumn(),
                        console=Console(stderr=True), disable=not show_progress)  # fmt: skip
    with progress:
        bar = progress.add_task("trials", total=options.trials, completed=resumed, best="")

        def tick() -> None:
            watch.look()
            best = "" if watch.best is None else f"best {study.metric} {watch.best:.4f}"
            progress.update(bar, completed=min(watch.finished, options.trials), best=best)

        with contextlib.ExitStack() as stack:
            reach = spec  # the workers' storage: the proxy's address where there is one
            if scale.grpc_proxy:
                import socket

                from optimkit.tune.storage import GrpcProxy

                host, advertise = ("0.0.0.0", socket.gethostbyname(socket.gethostname())) \
                    if scale.cluster else ("127.0.0.1", None)  # fmt: skip
                reach = stack.enter_context(GrpcProxy(spec, host, advertise=advertise)).spec
            driver_cpu = time.process_time()
            if scale.ray:
                from optimkit.tune.ray_workers import run_ray

                lines = run_ray(reach, study.name, scale, threads, options, tick, on_start)
            else:
                lines = run_processes(reach, study.name, scale.workers or 1, threads, options,
                                      tick, on_start)  # fmt: skip
            driver_cpu = time.process_time() - driver_cpu
        watch.look(force=True)
        progress.update(bar, completed=min(watch.finished, options.trials))
    timed_out = options.timeout is not None
    if watch.finished < options.trials and not timed_out:
        failed: dict[str, list[str]] = {}
        for w in lines:
            if w.get("exit") != 0:
                failed.setdefault(str(w.get("error", f"exit {w.get('exit')}")), []).append(
                    str(w.get("index"))
                )
        why = "; ".join(f"worker{'s' * (len(ids) > 1)} {', '.join(ids)}: {error}"
                        for error, ids in failed.items()) or "the workers stopped"  # fmt: skip
        raise RunStopped(f"tune: the study holds {watch.finished} of {options.trials} finished "
                         f"trials after every worker ended ({why}); run the same command again "
                         "to continue it")  # fmt: skip
    mirror = StudyMirror(storage, study.name, study.directions, study.sampler, study.pruner,
                         register=False)  # fmt: skip
    tuner = tuner_of(options, dataset, base, study, mirror)
    result = tuner.describe()
    result.asked = sum(int(w.get("asked_trials", 0)) for w in lines)
    result.finished_before = resumed
    result.overhead_seconds = sum(float(w.get("tuner_overhead_seconds", 0)) for w in lines)
    reasked = sum(int(w.get("reasked_trials", 0)) for w in lines)
    return Driven(out, dataset, study.name, study.metric, result, resumed, reasked, lines,
                  driver_cpu)  # fmt: skip


def _directions(names: list[str]) -> list[Any]:
    from optuna.study import StudyDirection

    return [StudyDirection[d.upper()] for d in names]


# ------------------------------------------------------------------------------ processes
def run_processes(
    spec: str,
    name: str,
    workers: int,
    threads: int | None,
    options: Any,
    tick: Callable[[], None],
    on_start: Callable[[list[Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """`workers` processes of ``optimkit worker`` on this machine, each pinned to its own
    cores where there are enough, and given its own GPU where several are visible and the
    study trains on CUDA (`gpu_assignment`)."""
    per = worker_threads(threads, workers)
    cores = sorted(os.sched_getaffinity(0))
    gpus = gpu_assignment(visible_gpus(dict(os.environ), _gpus(options.device)), workers)
    procs, launched = [], []
    barrier = StartBarrier(workers)
    for i in range(workers):
        start_env, fds = barrier.child(i)
        env = {**worker_env(dict(os.environ), per, gpus[i]), **start_env}
        mine = cores[i * per : (i + 1) * per] if per * workers <= len(cores) else None
        cmd = [sys.executable, "-m", "optimkit.cli", "worker", "--storage", spec, "--study-name",
               name, "--threads", str(per), "--index", str(i), "--json"]  # fmt: skip
        launched.append(time.time())
        procs.append(subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True, pass_fds=fds,
            preexec_fn=(lambda c=mine: os.sched_setaffinity(0, c)) if mine else None,
        ))  # fmt: skip
    barrier.started()
    if on_start is not None:
        on_start(procs)
    outputs: dict[int, tuple[str, str]] = {}
    import threading

    def collect(i: int, p: subprocess.Popen) -> None:  # pipes drained as the workers run
        outputs[i] = p.communicate()

    readers = [threading.Thread(target=collect, args=(i, p), daemon=True)
               for i, p in enumerate(procs)]  # fmt: skip
    for r in readers:
        r.start()
    try:
        while any(p.poll() is None for p in procs):
            tick()
            barrier.wait(0.1)
    except BaseException:  # the driver interrupted: stop its workers
        for p in procs:
            if p.poll() is None:
                p.terminate()
        raise
    finally:
        barrier.release()
    for r in readers:
        r.join()
    lines = []
    for i, p in enumerate(procs):
        stdout, stderr = outputs.get(i, ("", ""))
        line: dict[str, Any] = {"index": i, "pid": p.pid, "launched_at": launched[i],
                                "exit": p.returncode}  # fmt: skip
        if p.returncode == 0:
            with contextlib.suppress(ValueError):
                line = {**json.loads(stdout), "launched_at": launched[i], "exit": 0}
        else:
            errors = [s for s in stderr.strip().splitlines() if s.strip()]
            code = p.returncode
            died = f"killed by signal {-code}" if code < 0 else f"exit {code}"
            line["error"] = errors[-1].removeprefix("error: ") if errors else died
        lines.append(line)
    return lines


def _gpus(device: str) -> int:
    if device != "cuda":
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
