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


def _span_rate(path: Path, name: str) -> tuple[int, float]:
    """(finished trials, their span in seconds) of the study in the journal `path`."""
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    trials = optuna.load_study(study_name=name, storage=storage).trials
    start = min(t.datetime_start for t in trials if t.datetime_start)
    end = max(t.datetime_complete for t in trials if t.datetime_complete)
    return len(trials), (end - start).total_seconds()


def throughput(trials: int, repeats: int, counts: tuple[int, ...] = (1, 2)) -> list[Rate]:
    from optimkit.cli.tune import run_tune
    from optimkit.tune.workers import Scale

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
                    summary = run_tune(_throughput_options(trials, out, name), False,
                                       scale=Scale(workers=n), threads_given=True)  # fmt: skip
                    wall = time.perf_counter() - tic
                    done, span = _span_rate(out / "study.journal", name)
                    assert done == trials == sum(summary["trials"].values())
                    rates[n].trials_per_s.append(done / span)
                    rates[n].wall.append(wall)
                    cpu = sum(float(w["cpu_seconds"]) for w in summary["workers"])
                    rates[n].per_cpu_s.append(done / cpu)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return list(rates.values())


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


def _f(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def main(repeats: int = 3, quick: bool = False) -> None:
    console = Console(width=160)
    trials = 8 if quick else 128
    load = os.getloadavg()[0]
    with pinned(1):
        rates = throughput(trials, 1 if quick else repeats)
    base = statistics.median(rates[0].trials_per_s)
    base_cpu = statistics.median(rates[0].per_cpu_s)
    table = Table(title=f"trials per second, {trials} trials (digits MLP 64-32-10, 4 epochs, "
                        f"population 8 per worker), 1 thread per worker; load at start "
                        f"{load:.2f} on {os.cpu_count()} cores")  # fmt: skip
    for col in ("workers", "trials/s (median)", "runs", "vs 1 worker", "command wall s",
                "trials per worker CPU-s", "projected on free cores"):  # fmt: skip
        table.add_column(col, justify="right")
    for rate in rates:
        median = statistics.median(rate.trials_per_s)
        per_cpu = statistics.median(rate.per_cpu_s)
        table.add_row(str(rate.workers), f"{median:.1f}",
                      ", ".join(f"{x:.1f}" for x in rate.trials_per_s), f"{median / base:.2f}x",
                      f"{statistics.median(rate.wall):.1f}", f"{per_cpu:.2f}",
                      f"{rate.workers * per_cpu / base_cpu:.2f}x")  # fmt: skip
    console.print(table)
    console.print(
        "projected on free cores: N x (trials per worker CPU-second with N workers) / (the "
        "same with 1), the speed-up when each worker has a core of its own (it leaves out "
        "time a worker waits without computing: locks, the last population's tail). Under "
        "load the measured trials/s ratio cannot show it: Linux's autogroup scheduler "
        f"(sched_autogroup_enabled={_autogroup()}) gives this benchmark's session one share "
        "of the CPUs however many worker processes it runs."
    )
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
                        help="8 and 4 trials, one round (a smoke run)")  # fmt: skip
    args = parser.parse_args(argv)
    main(args.repeats, args.quick)


if __name__ == "__main__":
    cli()
