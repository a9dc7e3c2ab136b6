"""Scale-out (issue 14): trials per second with 1 and 2 worker processes on one study, and what
one trial costs each storage (round trips, bytes, time).

Run: ``.venv/bin/python -m benchmarks scale [--quick] [--repeats 3]``.

Throughput. ``optimkit tune --workers N`` as a user runs it (`run_tune` with
``Scale(workers=N)``, the default journal file in a temporary folder): N ``optimkit worker``
processes, one CPU thread each (``--threads 1``, OMP/MKL 1, each pinned to its own core),
each a population tuner (population 8) on one study of many short trials: an MLP 64-32-10 on
scikit-learn's digits, Adam (lr, weight decay searched), 4 epochs, batch 64, random sampler,
no pruning; the same study size for N = 1 and 2, interleaved, ``--repeats`` rounds. trials/s
= finished trials over the study's span (first trial's start to last trial's end, from the
trials' stored times: the workers' start-up, ~seconds of importing torch, is left out and
shown apart, as the whole command's wall time). Trials per worker CPU-second (the workers'
CPU time in tuning, ``cpu_seconds`` of their lines) gives the speed-up projected for free
cores, which load from other processes does not change.

Storage cost. One population tuner in this process (`Tuner` + `StudyMirror`, as a worker runs
it: claims under the study's lock, one write per finished trial, syncs) runs T trials of a
tiny model (softmax regression on iris, 3 epochs, population 8) on each storage; its set-up
(the study created, the worker registered) is left out. Counted with public means only:

* SQLite and PostgreSQL: statements and transactions from SQLAlchemy's engine events
  (``before_cursor_execute``, ``commit``), and bytes of SQL text and parameters sent;
* PostgreSQL: also its wire (a byte-counting TCP relay between the client and the server:
  bytes both ways and request bursts, i.e. network round trips) and the server's CPU time
  (utime + stime of the postmaster, its reaped children and its live backends, from /proc);
* the gRPC proxy: `optuna.storages.run_grpc_proxy_server` in this process on a
  ``ThreadPoolExecutor`` that counts the calls it serves (gRPC submits one task per call),
  the client (`GrpcStorageProxy`) behind a relay (wire bytes), and the proxy's own
  PostgreSQL connection behind another relay and engine events (what the database sees);
* the journal file: records (lines) and bytes appended.

time/trial: a second pass of each without relays or listeners: the tuner's time in storage
calls (`StudyMirror.store_seconds`) per trial. Timings on a shared 2-core machine are noisy:
read the ratios within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import math
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from rich.console import Console
from rich.table import Table

from benchmarks.threads import pinned

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


# ------------------------------------------------------------------------------ throughput
def _throughput_options(trials: int, out: Path, name: str) -> Any:
    from optimkit.cli.options import TuneOptions, load_options

    flags = {"data": "digits", "model": "mlp", "hidden": "32", "batch_size": "64",
             "epochs": "4", "population": "8", "trials": str(trials), "sampler": "random",
             "pruner": "none", "threads": "1", "study_name": name, "out": str(out)}  # fmt: skip
    return load_options(None, flags, TuneOptions)


@dataclass
class Rate:
    workers: int
    trials_per_s: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    per_cpu_s: list[float] = field(default_factory=list)  # trials per worker CPU-second
    startup: list[float] = field(default_factory=list)  # launch to tuning, mean over workers
    skew: list[float] = field(default_factory=list)  # first to last worker's start of tuning
    tail: list[float] = field(default_factory=list)  # first to last worker's end of tuning
    driver_cpu: list[float] = field(default_factory=list)  # the driver's CPU while they ran
    storage: list[float] = field(default_factory=list)  # workers' storage s / their tuning s
    shares: list[str] = field(default_factory=list)  # trials asked by each worker

    def add(self, driven: Any, rate: float, wall: float) -> None:
        lines = driven.workers
        self.trials_per_s.append(rate)
        self.wall.append(wall)
        done = sum(driven.result.counts.values())
        self.per_cpu_s.append(done / sum(float(w["cpu_seconds"]) for w in lines))
        starts = [float(w["started_at"]) for w in lines]
        ends = [float(w["ended_at"]) for w in lines]
        launched = [float(w["launched_at"]) for w in lines]
        self.startup.append(statistics.mean(s - t for s, t in zip(starts, launched, strict=True)))
        self.skew.append(max(starts) - min(starts))
        self.tail.append(max(ends) - min(ends))
        self.driver_cpu.append(driven.driver_cpu_seconds)
        tuning = sum(e - s for s, e in zip(starts, ends, strict=True))
        self.storage.append(sum(float(w["storage_seconds"]) for w in lines) / tuning)
        self.shares.append("+".join(str(w["asked_trials"]) for w in lines))


def _span_rate(path: Path, name: str) -> tuple[int, float]:
    """(finished trials, their span in seconds) of the study in the journal `path`."""
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    trials = optuna.load_study(study_name=name, storage=storage).trials
    start = min(t.datetime_start for t in trials if t.datetime_start)
    end = max(t.datetime_complete for t in trials if t.datetime_complete)
    return len(trials), (end - start).total_seconds()


def throughput(trials: int, repeats: int, counts: tuple[int, ...] = (1, 2)) -> list[Rate]:
    """The driver of ``optimkit tune --workers N`` (`drive`, as `run_tune` calls it; the best
    trial's description and the results files, written after the workers end, left out)."""
    from optimkit.tune.workers import Scale, drive

    rates = {n: Rate(n) for n in counts}
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        for r in range(repeats):
            for n in counts:  # interleaved
                with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
                    out = Path(tmp) / "out"
                    name = f"scale-{n}-{r}"
                    tic = time.perf_counter()
                    driven = drive(_throughput_options(trials, out, name), Scale(workers=n),
                                   False, True)  # fmt: skip
                    wall = time.perf_counter() - tic
                    done, span = _span_rate(out / "study.journal", name)
                    assert done == trials == sum(driven.result.counts.values())
                    rates[n].add(driven, done / span, wall)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return list(rates.values())


# ------------------------------------------------------------------------------ the ceiling
#: the probes run 1 vs 2 at once as independent processes (`ceiling`)
PROBES = ("train", "matmul", "stream")


def _round_members(space: Any, rng: Any, first: int) -> list[dict[str, Any]]:
    """A population's worth of trial configurations as the random sampler draws them
    (uniform, or log-uniform where the range is log), seeds as the tuner gives them."""
    from optimkit.tune.tuner import full_config, member_of

    members = []
    for j in range(8):
        params = {}
        for key, p in space.params.items():
            lo, hi = float(p.low), float(p.high)
            params[key] = float(10 ** rng.uniform(math.log10(lo), math.log10(hi))) if p.log \
                else float(rng.uniform(lo, hi))  # fmt: skip
        config = full_config(space, params)
        config["seed"] = first + j
        members.append(member_of(config))
    return members


def _train_work(rounds: int) -> Any:
    """The workers' training with no study or storage: `rounds` populations of 8 trials of the
    throughput study, each trained to its end (4 epochs), slots refilled as the tuner does
    (`PopulationTrainer.replace_member`); returns the work to time."""
    import dataclasses

    import numpy as np

    from optimkit.cli.tune import _prepare
    from optimkit.train import PopulationTrainer
    from optimkit.tune import SearchSpace

    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        options = _throughput_options(8 * rounds, Path(tmp), "solo")
        _, dataset, base, _ = _prepare(options, tmp)
    space = SearchSpace.from_config(options.space, options.optimizer)
    rng = np.random.default_rng(0)
    config = dataclasses.replace(base, optimizer=options.optimizer,
                                 monitor="val_accuracy", checkpoint_every=None)  # fmt: skip
    trainer = PopulationTrainer(dataset, config, _round_members(space, rng, 0))

    def work() -> None:
        for r in range(rounds):
            if r:
                for k, member in enumerate(_round_members(space, rng, 8 * r)):
                    trainer.replace_member(k, member)
            while bool(trainer.active.any()):
                val = trainer.run_epoch()
                val["accuracy"].tolist(), trainer.status.tolist()  # what the tuner reads

    return work


def _matmul_work(units: int) -> Any:
    """In-cache compute: 128 x 128 float32 matmuls (3 x 64 KiB, in each core's L2)."""
    import torch

    a, b = torch.randn(128, 128), torch.randn(128, 128)
    out = torch.empty(128, 128)

    def work() -> None:
        for _ in range(4000 * units):
            torch.mm(a, b, out=out)

    return work


def _stream_work(units: int) -> Any:
    """Memory streaming: copies of a 128 MiB float32 tensor (4x the shared 32 MiB L3)."""
    import torch

    a, b = torch.ones(32 << 20), torch.empty(32 << 20)

    def work() -> None:
        for _ in range(10 * units):
            b.copy_(a)

    return work


def solo() -> None:
    """A probe process (`ceiling`): ``KIND UNITS`` on argv; builds its work, says ready, waits
    for a line on stdin, runs, and prints its start, end and CPU seconds as JSON."""
    import json
    import sys

    import torch

    kind, units = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    work = {"train": _train_work, "matmul": _matmul_work, "stream": _stream_work}[kind](units)
    print("ready", flush=True)
    sys.stdin.readline()
    cpu, start = time.process_time(), time.perf_counter()
    work()
    end = time.perf_counter()
    print(json.dumps({"start": start, "end": end, "cpu": time.process_time() - cpu}), flush=True)


def _solo_run(kind: str, units: list[int]) -> tuple[float, float]:
    """len(units) probe processes at once, process i pinned to core i (one thread each),
    started together once all are built: (their span, their CPU seconds)."""
    import json
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cores = sorted(os.sched_getaffinity(0))
    procs = []
    for i, n in enumerate(units):
        core = {cores[i % len(cores)]}
        procs.append(subprocess.Popen(
            [sys.executable, "-c", "from benchmarks.bench_scale import solo; solo()", kind,
             str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            cwd=Path(__file__).resolve().parents[1],
            preexec_fn=lambda c=core: os.sched_setaffinity(0, c),  # type: ignore[misc]
        ))  # fmt: skip
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready", kind
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    lines = [json.loads(p.communicate()[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs), kind
    span = max(x["end"] for x in lines) - min(x["start"] for x in lines)
    return span, sum(x["cpu"] for x in lines)


@dataclass
class Ceiling:
    kind: str
    one: list[float] = field(default_factory=list)  # seconds for the whole work, 1 process
    two: list[float] = field(default_factory=list)  # the same work split over 2 processes
    cpu_one: list[float] = field(default_factory=list)  # CPU seconds of the work, 1 process
    cpu_two: list[float] = field(default_factory=list)  # CPU seconds of the 2 processes

    @property
    def speedup(self) -> float:
        return statistics.median(self.one) / statistics.median(self.two)

    @property
    def projected(self) -> float:
        """2 x (work per CPU-second with 2 processes) / (the same with 1)."""
        return 2 * statistics.median(self.cpu_one) / statistics.median(self.cpu_two)


def ceiling(rounds: int, units: int, repeats: int) -> list[Ceiling]:
    """Each probe's whole work (`rounds` populations of training, `units` of the others; even)
    in 1 process, and split in halves over 2 at once (independent processes: no study, no
    storage, no driver), interleaved."""
    rows = {k: Ceiling(k) for k in PROBES}
    for _ in range(repeats):
        for kind in PROBES:
            units = rounds if kind == "train" else units
            row = rows[kind]
            for wall, cpu, split in ((row.one, row.cpu_one, [units]),
                                     (row.two, row.cpu_two, [units // 2] * 2)):  # fmt: skip
                seconds, cpu_seconds = _solo_run(kind, split)
                wall.append(seconds)
                cpu.append(cpu_seconds)
    return list(rows.values())


# ------------------------------------------------------------------------------ counting
class Relay:
    """A TCP relay on 127.0.0.1 to `port` that counts bytes each way and request bursts (a
    client send after a server reply starts a round trip)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.up = self.down = self.trips = 0
        self._count = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        with self._count:
            self.up = self.down = self.trips = 0

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:  # the server is not up (yet): this client is refused, not the next
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            turn = {"last": "down"}
            threading.Thread(target=self._pipe, args=(client, upstream, True, turn),
                             daemon=True).start()  # fmt: skip
            threading.Thread(target=self._pipe, args=(upstream, client, False, turn),
                             daemon=True).start()  # fmt: skip

    def _pipe(self, src: socket.socket, dst: socket.socket, up: bool, turn: dict) -> None:
        try:
            while data := src.recv(65536):
                with self._count:
                    if up:
                        self.up += len(data)
                        if turn["last"] == "down":
                            self.trips += 1
                        turn["last"] = "up"
                    else:
                        self.down += len(data)
                        turn["last"] = "down"
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()


class Statements:
    """SQLAlchemy engine events: statements, transactions, bytes of SQL and parameters."""

    def __init__(self, engine: sqlalchemy.engine.Engine) -> None:
        self.statements = self.commits = self.bytes = 0
        sqlalchemy.event.listen(engine, "before_cursor_execute", self._execute)
        sqlalchemy.event.listen(engine, "commit", self._commit)

    def _execute(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self.statements += 1
        self.bytes += len(statement.encode()) + len(repr(parameters).encode())

    def _commit(self, conn) -> None:
        self.commits += 1

    def reset(self) -> None:
        self.statements = self.commits = self.bytes = 0


class CountingPool(ThreadPoolExecutor):
    """The gRPC server's thread pool: one task per call served."""

    def __init__(self) -> None:
        super().__init__(max_workers=10)
        self.calls = 0

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        self.calls += 1
        return super().submit(fn, *args, **kwargs)


# ------------------------------------------------------------------------------ PostgreSQL
def _as_server_user(*cmd: str) -> None:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*prefix, *cmd], check=True, capture_output=True, timeout=120)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def postgres() -> Iterator[tuple[int, Path]]:
    """A throwaway PostgreSQL cluster (as the tests start one): (port, data folder)."""
    root = Path(tempfile.mkdtemp(prefix="scale-bench-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    port = _free_port()
    bin_dir = PG_BIN[-1]
    _as_server_user(f"{bin_dir}/initdb", "-D", str(data), "-A", "trust", "-U", "postgres")
    ctl = [f"{bin_dir}/pg_ctl", "-D", str(data), "-w", "-l", str(root / "log"), "-o",
           f"-p {port} -k {root} -h 127.0.0.1"]  # fmt: skip
    _as_server_user(*ctl, "start")
    try:
        yield port, data
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _as_server_user(*ctl, "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def server_cpu(data: Path) -> float:
    """CPU seconds of the cluster in `data`: its postmaster (with its reaped children) and
    its live backends."""
    tick = os.sysconf("SC_CLK_TCK")
    master = int((data / "postmaster.pid").read_text().split()[0])

    def stat(pid: int) -> list[str]:
        text = Path(f"/proc/{pid}/stat").read_text()
        return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on

    fields = stat(master)
    total = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                f = stat(int(entry))
                if int(f[1]) == master:  # ppid
                    total += int(f[11]) + int(f[12])
    return total / tick


# ------------------------------------------------------------------------------ storage cost
@dataclass
class Cost:
    storage: str
    trials: int
    round_trips: float | None = None  # per trial
    statements: float | None = None
    commits: float | None = None
    bytes_sent: float | None = None
    bytes_wire: float | None = None
    db_round_trips: float | None = None  # behind the proxy
    db_bytes_wire: float | None = None
    server_cpu_ms: float | None = None
    time_ms: list[float] = field(default_factory=list)
    note: str = ""


def _tune(storage: optuna.storages.BaseStorage, trials: int, name: str, reset: Any) -> float:
    """T trials of the tiny study with one tuner on `storage`, after `reset()` (called once
    the study and the worker are set up); returns the tuner's storage seconds."""
    from optimkit.data import load_dataset
    from optimkit.train import TrainConfig
    from optimkit.tune import SearchSpace, StudyMirror, Tuner, make_pruner, make_sampler

    ds = load_dataset("iris", seed=0)
    space = SearchSpace.from_config(None, "adam")
    mirror = StudyMirror(storage, name, ["maximize"], make_sampler("random", space, 0),
                         make_pruner("none", 3), label=name)  # fmt: skip
    base = TrainConfig(model="softmax", epochs=3, batch_size=32)
    tuner = Tuner(ds, base, space, mirror, trials=trials, population=8)
    tuner.describe_best = False
    reset()
    result = tuner.run()
    assert sum(result.counts.values()) == trials
    return mirror.store_seconds


def _timed(storage: optuna.storages.BaseStorage, trials: int, name: str) -> float:
    """Milliseconds per trial in the tuner's storage calls."""
    return 1e3 * _tune(storage, trials, name, lambda: None) / trials


def storage_costs(trials: int, repeats: int) -> tuple[list[Cost], str]:
    from optuna.storages import GrpcStorageProxy, get_storage, run_grpc_proxy_server

    from optimkit.tune import open_storage

    costs: list[Cost] = []
    note = ""
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        root = Path(tmp)
        # -- SQLite
        cost = Cost("SQLite (file, WAL)", trials)
        storage = open_storage(f"sqlite:///{root / 'count.db'}", None)
        sql = Statements(storage.engine)  # type: ignore[attr-defined]
        _tune(storage, trials, "count-sqlite", sql.reset)
        cost.statements, cost.commits = sql.statements / trials, sql.commits / trials
        cost.round_trips, cost.bytes_sent = cost.statements, sql.bytes / trials
        cost.note = "in-process library calls (no network)"
        for r in range(repeats):
            storage = open_storage(f"sqlite:///{root / f'time{r}.db'}", None)
            cost.time_ms.append(_timed(storage, trials, "t"))
        costs.append(cost)
        # -- journal
        cost = Cost("journal file", trials)
        path = root / "count.journal"
        storage = open_storage(f"journal:{path}", None)
        marks: dict[str, int] = {}

        def mark() -> None:
            marks["bytes"] = path.stat().st_size
            marks["lines"] = path.read_bytes().count(b"\n")

        _tune(storage, trials, "count-journal", mark)
        cost.round_trips = (path.read_bytes().count(b"\n") - marks["lines"]) / trials
        cost.bytes_sent = (path.stat().st_size - marks["bytes"]) / trials
        cost.note = "records appended (round trips = appends; reads replay the file)"
        for r in range(repeats):
            storage = open_storage(f"journal:{root / f'time{r}.journal'}", None)
            cost.time_ms.append(_timed(storage, trials, "t"))
        costs.append(cost)
        if not PG_BIN:
            return costs, "PostgreSQL not installed (make setup): its rows are skipped"
        with postgres() as (port, data):
            url = "postgresql://postgres@127.0.0.1:{}/postgres"
            # -- PostgreSQL, direct
            cost = Cost("PostgreSQL", trials)
            relay = Relay(port)
            storage = open_storage(url.format(relay.port), None)
            sql = Statements(storage.engine)  # type: ignore[attr-defined]
            cpu: dict[str, float] = {}

            def reset_pg() -> None:
                sql.reset()
                relay.reset()
                cpu["start"] = server_cpu(data)

            _tune(storage, trials, "count-pg", reset_pg)
            cost.server_cpu_ms = 1e3 * (server_cpu(data) - cpu["start"]) / trials
            cost.statements, cost.commits = sql.statements / trials, sql.commits / trials
            cost.bytes_sent = sql.bytes / trials
            cost.round_trips, cost.bytes_wire = (
                relay.trips / trials,
                (relay.up + relay.down) / trials,
            )
            cost.note = "round trips: request bursts on the wire"
            storage.engine.dispose()  # type: ignore[attr-defined]
            relay.close()
            for r in range(repeats):
                storage = open_storage(url.format(port), None)
                cost.time_ms.append(_timed(storage, trials, f"time-pg{r}"))
                storage.engine.dispose()  # type: ignore[attr-defined]
            costs.append(cost)
            # -- PostgreSQL behind the gRPC proxy (in this process, counting)
            cost = Cost("PostgreSQL via gRPC proxy", trials)
            db_relay = Relay(port)
            backend = open_storage(url.format(db_relay.port), None)
            sql = Statements(backend.engine)  # type: ignore[attr-defined]
            pool = CountingPool()
            proxy_port = _free_port()
            threading.Thread(target=run_grpc_proxy_server, args=(get_storage(backend),),
                             kwargs={"host": "127.0.0.1", "port": proxy_port,
                                     "thread_pool": pool}, daemon=True).start()  # fmt: skip
            GrpcStorageProxy(host="127.0.0.1", port=proxy_port).wait_server_ready(timeout=60)
            client_relay = Relay(proxy_port)
            client = GrpcStorageProxy(host="127.0.0.1", port=client_relay.port)
            client.wait_server_ready(timeout=60)
            calls: dict[str, int] = {}

            def reset_grpc() -> None:
                sql.reset()
                db_relay.reset()
                client_relay.reset()
                calls["start"] = pool.calls
                cpu["start"] = server_cpu(data)

            _tune(client, trials, "count-grpc", reset_grpc)
            cost.server_cpu_ms = 1e3 * (server_cpu(data) - cpu["start"]) / trials
            cost.round_trips = (pool.calls - calls["start"]) / trials
            cost.bytes_wire = (client_relay.up + client_relay.down) / trials
            cost.statements, cost.commits = sql.statements / trials, sql.commits / trials
            cost.bytes_sent = sql.bytes / trials
            cost.db_round_trips = db_relay.trips / trials
            cost.db_bytes_wire = (db_relay.up + db_relay.down) / trials
            cost.note = "round trips: gRPC calls served; statements: the proxy's"
            client.close()
            client_relay.close()
            for r in range(repeats):  # timing: a proxy on its own port, no relay
                timing = GrpcStorageProxy(host="127.0.0.1", port=proxy_port)
                cost.time_ms.append(_timed(timing, trials, f"time-grpc{r}"))
                timing.close()
            costs.append(cost)
            note = (
                "the gRPC rows' proxy runs in this process (counting): its time per trial "
                "shares one interpreter with the tuner"
            )
    return costs, note


# ------------------------------------------------------------------------------ tables
def _autogroup() -> str:
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip()
    except OSError:
        return "unknown"


def _cpu_times() -> list[int]:
    """/proc/stat's whole-machine CPU ticks: user nice system idle iowait irq softirq steal."""
    return [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]


def _f(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _m(values: list[float], digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f}"


def main(repeats: int = 3, quick: bool = False, storage: bool = True) -> None:
    console = Console(width=200)
    trials = 16 if quick else 128
    reps = 1 if quick else repeats
    load, ticks = os.getloadavg(), _cpu_times()
    with pinned(1):
        rates = throughput(trials, reps)
    ceil = ceiling(trials // 8, 4 if not quick else 1, reps)
    load_end = os.getloadavg()
    used = [b - a for a, b in zip(ticks, _cpu_times(), strict=True)]
    busy = 1 - (used[3] + used[4]) / sum(used)
    base = statistics.median(rates[0].trials_per_s)
    base_cpu = statistics.median(rates[0].per_cpu_s)
    table = Table(title=f"trials per second, {trials} trials (digits MLP 64-32-10, 4 epochs, "
                        f"population 8 per worker), 1 thread per worker, {reps} interleaved "
                        f"rounds; load average at start {load[0]:.2f} / {load[1]:.2f} (1 / 5 "
                        f"min), at end {load_end[0]:.2f}, {os.cpu_count()} cores")  # fmt: skip
    for col in ("workers", "trials/s (median)", "runs", "vs 1 worker", "driver wall s",
                "trials per worker CPU-s", "projected on free cores", "start-up s",
                "start skew s", "idle tail s", "driver CPU s", "storage share",
                "trials per worker"):  # fmt: skip
        table.add_column(col, justify="right")
    for rate in rates:
        median = statistics.median(rate.trials_per_s)
        per_cpu = statistics.median(rate.per_cpu_s)
        table.add_row(str(rate.workers), f"{median:.1f}",
                      ", ".join(f"{x:.1f}" for x in rate.trials_per_s), f"{median / base:.2f}x",
                      _m(rate.wall, 1), f"{per_cpu:.2f}",
                      f"{rate.workers * per_cpu / base_cpu:.2f}x", _m(rate.startup),
                      _m(rate.skew), _m(rate.tail), _m(rate.driver_cpu),
                      f"{100 * statistics.median(rate.storage):.1f}%",
                      ", ".join(rate.shares))  # fmt: skip
    console.print(table)
    console.print(
        "trials/s: finished trials over the study's span (first trial's start to last trial's "
        "end); start-up: a worker's launch to its tuning start (importing torch, the data, "
        "the barrier: outside the span); start skew / idle tail: the first to the last worker's "
        "start / end of tuning (inside the span: one worker tunes alone); driver CPU: the "
        "driver's CPU seconds while the workers ran (it shares their cores); storage share: "
        "the workers' seconds in storage calls (claims under the study's lock, reads, "
        "writes) over their tuning seconds. projected on free cores: N x (trials per worker "
        "CPU-second with N workers) / (the same with 1). Linux's autogroup scheduler "
        f"(sched_autogroup_enabled={_autogroup()}) gives this benchmark's session one share "
        "of the CPUs against other sessions however many processes it runs: read it with "
        "the load average."
    )
    two = statistics.median(rates[-1].trials_per_s) / base
    console.print(f"whole machine while the two tables ran (/proc/stat): {100 * busy:.0f}% "
                  f"busy, steal {100 * used[7] / sum(used):.1f}% (time the hypervisor ran "
                  "something else on these vCPUs)")  # fmt: skip
    table = Table(title="the ceiling: the same work as 1 process and split over 2 independent "
                        "processes at once (each pinned to its own core, one thread, no "
                        "study, no storage, no driver; timed after start-up, started "
                        "together)")  # fmt: skip
    for col in ("probe", "work", "1 process s (median)", "2 processes s (median)",
                "runs 1 / 2", "speed-up", "CPU s 1 / 2 (median)",
                "projected on free cores"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("probe", "work") else "right")
    what = {"train": f"the workers' training: {trials // 8} populations of 8 trials, slots "
                     "refilled (replace_member), 4 epochs each; 2 x half",
            "matmul": "in-cache compute: 128x128 float32 matmuls (in L2)",
            "stream": "memory streaming: 128 MiB float32 copies (4x the shared L3)"}  # fmt: skip
    for c in ceil:
        table.add_row(c.kind, what[c.kind], _m(c.one, 3), _m(c.two, 3),
                      " / ".join(", ".join(f"{x:.3f}" for x in v) for v in (c.one, c.two)),
                      f"{c.speedup:.2f}x", f"{_m(c.cpu_one, 3)} / {_m(c.cpu_two, 3)}",
                      f"{c.projected:.2f}x")  # fmt: skip
    console.print(table)
    train = ceil[0].speedup
    solo_rate = trials / statistics.median(ceil[0].one)
    console.print(
        f"2 workers on one study: {two:.2f}x = {100 * two / train:.0f}% of the ceiling "
        f"({train:.2f}x, the same training as independent processes). 1 worker: {base:.1f} "
        f"trials/s = {100 * base / solo_rate:.0f}% of the training alone in one process "
        f"({solo_rate:.1f} trials/s)."
    )
    if not storage:
        return
    cost_trials = 4 if quick else 48
    with pinned(1):
        costs, note = storage_costs(cost_trials, 1 if quick else repeats)
    table = Table(title=f"storage cost per trial: one tuner, {cost_trials} trials (iris "
                        "softmax, 3 epochs, population 8), set-up excluded")  # fmt: skip
    for col in ("storage", "round trips", "SQL statements", "commits", "bytes sent (SQL/records)",
                "wire bytes", "DB round trips behind proxy", "DB wire bytes behind proxy",
                "server CPU ms", "time ms (median)", "how counted"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("storage", "how counted") else "right")
    for c in costs:
        table.add_row(
            c.storage,
            _f(c.round_trips),
            _f(c.statements),
            _f(c.commits),
            _f(c.bytes_sent, 0),
            _f(c.bytes_wire, 0),
            _f(c.db_round_trips),
            _f(c.db_bytes_wire, 0),
            _f(c.server_cpu_ms, 2),
            _f(statistics.median(c.time_ms), 2) if c.time_ms else "—",
            c.note,
        )
    console.print(table)
    if note:
        console.print(note)


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--quick", action="store_true",
                        help="16 and 4 trials, one round (a smoke run)")  # fmt: skip
    parser.add_argument("--no-storage", action="store_true",
                        help="the throughput and ceiling tables only")  # fmt: skip
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats: expected an int >= 1, got {args.repeats}")
    main(args.repeats, args.quick, not args.no_storage)


if __name__ == "__main__":
    cli()
