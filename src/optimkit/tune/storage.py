"""Where a study lives, and how the tuner writes it: Optuna's public storage API only.

Storages (`open_storage`):

* default: an Optuna journal file, ``OUT/study.journal`` (append-only, safe for several
  processes on one machine). A folder written by an earlier optimkit, whose study is
  ``OUT/study.db``, keeps its SQLite file.
* ``journal:PATH``, ``*.journal``, ``*.log``: a journal file (`optuna.storages.JournalStorage`
  on a `JournalFileBackend`).
* any SQLAlchemy URL (``sqlite:///study.db``, ``postgresql://...``): Optuna's `RDBStorage` as
  it is. Its schema is created (or checked) once per process, retried when several processes
  race to create it. In-memory SQLite (``sqlite://``) is refused: the study would vanish at exit.

Writing (`StudyMirror`). The tuner samples and prunes on a live in-memory study, and each
trial is written to the storage once, when it ends, as one complete trial: parameters, values,
learning curve (intermediate values), user and system attributes, start and end times, through
``BaseStorage.create_new_trial`` with the finished trial as its template (one journal record,
or one transaction). The storage numbers the trials as they are written, so any number of
processes on one study get unique, contiguous numbers, and every finished trial is visible to
`optuna.load_study` and optuna-dashboard; no trial is ever stored RUNNING, so no process can
mark another's live trial as failed. Per trial this costs one record: the ended trials of
a round are written under one lock and one open file, with one fsync in a background thread
(`JournalFile`), ~0.2 ms per trial of storage time at 1,000 trials, against ~0.4 ms for the
bulk ORM statements earlier versions wrote into Optuna's private tables, and ~13 ms for Optuna's
per-call API (~27 writes: one per epoch's value, per attribute, and the state, each with an
fsync). An RDB through RDBStorage as it is costs ~25 ms per trial on SQLite (SQLAlchemy's
ORM, one query per intermediate value): fine for trials of seconds, not for trials of
milliseconds (measured by ``python -m benchmarks.bench_tune``, parts table).
Before asking, the mirror brings the trials other processes wrote into the live study, so the
sampler and the pruner see them.

Workers and staleness. Each tuner registers in the study's system attributes
(``optimkit:worker:<id>``) with a heartbeat (every `heartbeat_interval` seconds, from a
background thread) and its slots: the trials it is running (their parameters) and those it has
reserved but not asked yet. The budget (``--trials``, the study's total) counts the study's
finished trials plus every live worker's slots; a worker reserves its slots (`claim`) under
the study's lock (`study_lock`: the journal's flock, a PostgreSQL advisory lock, an flock for
an SQLite file), so workers sharing a study ask exactly the budget in all. Each slot has an
id, stored with the trial it becomes (``optimkit:slot``), so a claim and its stored trial count
once, and a write whose connection broke after it reached the database is not written twice.
A worker whose heartbeat is older than `grace_period`, or that ran on this machine and whose
process is gone, is stale: the next worker to claim takes over its slots and asks its running
trials again, with the same parameters (unless one of them was stored meanwhile); a worker
whose pool is empty waits for the others while they hold the rest of the budget. Staleness is
decided by heartbeat, never by what is running at start. A storage that is unreachable (a
restarting database) is retried with backoff for `retry_seconds`, then the run stops with
`StorageUnavailable` (one line); what was stored stays stored.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

WORKER_PREFIX = "optimkit:worker:"
SLOT_KEY = "optimkit:slot"  # a stored trial's slot id (the claim it filled)
OPTIONS_KEY = "optimkit:options"  # the tune options of the study's driver (for workers)
LOCK_PREFIX = "optimkit:lock:"  # the companion study of a study's `_TrialLock`
HEARTBEAT_INTERVAL = 30.0  # seconds between a worker's heartbeats
GRACE_PERIOD = 120.0  # a worker silent for this long is stale
DEFAULT_FILE = "study.journal"
LEGACY_FILE = "study.db"  # the default of earlier optimkit versions
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
_RETRIES = 8
# how long an unreachable storage is retried before a run stops (OPTIMKIT_STORAGE_RETRY_SECONDS)
RETRY_SECONDS = float(os.environ.get("OPTIMKIT_STORAGE_RETRY_SECONDS", "60"))


def default_storage_path(out_dir: Path) -> Path:
    """OUT/study.journal, or OUT/study.db where an earlier optimkit left its study there."""
    legacy = out_dir / LEGACY_FILE
    journal = out_dir / DEFAULT_FILE
    return legacy if legacy.exists() and not journal.exists() else journal


def storage_label(spec: str | None, out_dir: Path) -> str:
    """What `open_storage(spec, out_dir)` opens, as a user would name it."""
    return spec if spec is not None else str(default_storage_path(out_dir))


def open_storage(spec: str | None, out_dir: Path | None) -> BaseStorage:
    """None -> the default file in out_dir (see `default_storage_path`); "journal:PATH",
    "*.log", "*.journal" -> an Optuna journal file; anything with "://" -> an SQLAlchemy URL
    (sqlite:///..., postgresql://...). Errors are one-line ValueErrors naming the storage."""
    if spec is None:
        if out_dir is None:
            raise ValueError("storage: no --storage given and no output folder for the default")
        out_dir.mkdir(parents=True, exist_ok=True)
        path = default_storage_path(out_dir)
        spec = f"sqlite:///{path.resolve()}" if path.name == LEGACY_FILE else f"journal:{path}"
    try:
        if spec.startswith("journal:") or spec.endswith((".log", ".journal")):
            return _journal(Path(spec.removeprefix("journal:")))
        if spec.startswith("grpc://"):
            return _grpc(spec)
        if "://" not in spec:
            raise ValueError("expected an SQLAlchemy URL (sqlite:///study.db, postgresql://...) "
                             "or a journal file (journal:PATH, or a name ending in .journal "
                             "or .log)")  # fmt: skip
        return _rdb(spec)
    except ValueError as e:
        raise ValueError(f"storage: cannot open {spec!r}: {e}") from None
    except Exception as e:  # SQLAlchemy and driver errors: say what and where
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"storage: cannot open {spec!r}: {reason}") from None


def _grpc(spec: str) -> BaseStorage:
    """grpc://HOST:PORT: Optuna's gRPC storage proxy (`run_grpc_proxy_server` in front of
    an RDB), so that many workers do not each hold database connections."""
    host, _, port = spec.removeprefix("grpc://").rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError("expected grpc://HOST:PORT")
    try:
        from optuna.storages import GrpcStorageProxy
    except ImportError:  # pragma: no cover - Optuna < 4.2
        raise ValueError("this Optuna has no gRPC storage proxy (Optuna >= 4.2)") from None
    try:
        import grpc  # noqa: F401
    except ImportError:
        raise ValueError("the gRPC storage proxy needs grpcio: pip install 'optimkit[ray]'"
                         ) from None  # fmt: skip
    import warnings

    with warnings.catch_warnings():  # "experimental": known, and pinned by the tests
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = GrpcStorageProxy(host=host, port=int(port))
    storage.wait_server_ready(timeout=30)
    return storage


class GrpcProxy:
    """Optuna's gRPC storage proxy (`optuna.storages.run_grpc_proxy_server`) in front of the
    RDB at `url`, run in a child process of this one (``optimkit tune --grpc-proxy``): workers
    reach the study at `spec` (``grpc://HOST:PORT``) and hold no database connection; only
    the proxy does. The proxy serves Optuna's cached RDB storage (``optuna.storages.get_storage``,
    as Optuna's documentation of the proxy advises) and exits when this process does. The URL
    goes to the child in its environment, not on its command line (a password stays out of
    ``ps``). `host`: the address to listen on (127.0.0.1: this machine only)."""

    def __init__(self, url: str, host: str = "127.0.0.1", port: int | None = None,
                 advertise: str | None = None, timeout: float = 60.0) -> None:  # fmt: skip
        import subprocess
        import sys
        import tempfile

        try:
            import grpc  # noqa: F401
        except ImportError:
            raise ValueError("--grpc-proxy needs grpcio: pip install 'optimkit[ray]'") from None
        if port is None:
            with socket.socket() as s:  # a free port
                s.bind((host, 0))
                port = int(s.getsockname()[1])
        self.host, self.port = host, port
        self.spec = f"grpc://{advertise or host}:{port}"
        self._log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed by close)
        env = {
            **os.environ,
            "OPTIMKIT_PROXY_STORAGE": url,
            "OPTIMKIT_PROXY_HOST": host,
            "OPTIMKIT_PROXY_PORT": str(port),
            "OPTIMKIT_PROXY_PARENT": str(os.getpid()),
        }
        self.process = subprocess.Popen([sys.executable, "-c", _PROXY_CHILD], env=env,
                                        stdout=subprocess.DEVNULL, stderr=self._log)  # fmt: skip
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.close()
            raise

    def _wait_ready(self, timeout: float) -> None:
        import grpc

        deadline = time.monotonic() + timeout
        target = f"{'127.0.0.1' if self.host in ('0.0.0.0', '') else self.host}:{self.port}"
        with grpc.insecure_channel(target) as channel:
            ready = grpc.channel_ready_future(channel)
            while True:
                if self.process.poll() is not None:
                    self._log.seek(0)
                    lines = [x for x in self._log.read().splitlines() if x.strip()]
                    raise ValueError("storage: the gRPC proxy stopped at start (" +
                                     (lines[-1] if lines else f"exit {self.process.returncode}")
                                     + ")")  # fmt: skip
                try:
                    ready.result(timeout=0.2)
                    return
                except grpc.FutureTimeoutError:
                    if time.monotonic() > deadline:
                        raise ValueError(f"storage: the gRPC proxy at {target} did not start "
                                         f"within {timeout:.0f} s") from None  # fmt: skip

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except Exception:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def __enter__(self) -> GrpcProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# The child of `GrpcProxy`: serves the RDB named in its environment until it is killed or its
# parent is gone. Optuna only (not optimkit, which would import torch: seconds at start).
_PROXY_CHILD = """
import os, sys, threading, time
import optuna
from optuna.storages import RDBStorage, get_storage, run_grpc_proxy_server

url, parent = os.environ["OPTIMKIT_PROXY_STORAGE"], int(os.environ["OPTIMKIT_PROXY_PARENT"])
optuna.logging.set_verbosity(optuna.logging.WARNING)
try:
    kwargs = {} if url.startswith("sqlite") else {"pool_pre_ping": True}
    storage = get_storage(RDBStorage(url, engine_kwargs=kwargs))
except Exception as e:
    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    print(f"cannot open {url.split('@')[-1]!r}: {reason}", file=sys.stderr)
    sys.exit(2)

def orphaned():  # the driver died (kill -9): stop serving
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)

threading.Thread(target=orphaned, daemon=True).start()
run_grpc_proxy_server(storage, host=os.environ["OPTIMKIT_PROXY_HOST"],
                      port=int(os.environ["OPTIMKIT_PROXY_PORT"]))
"""


def is_sqlite(spec: str | None) -> bool:
    """Whether a --storage value names an SQLite database (one process only)."""
    return spec is not None and spec.startswith("sqlite")


def _journal(path: Path) -> JournalStorage:
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a journal file")
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb") as f:
            first = f.readline()
        try:
            record = json.loads(first)
        except ValueError:
            record = None
        if not isinstance(record, dict) or "op_code" not in record:
            raise ValueError(f"{path} is not an Optuna journal file (its first line is not a "
                             "journal record)")  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return LocalJournal(str(path))
    except Exception as e:  # a damaged journal: Optuna's replay fails with assertions
        raise ValueError(f"{path} is not a readable Optuna journal file "
                         f"({type(e).__name__}: {e})") from None  # fmt: skip


class QueuedSymlinkLock(JournalFileSymlinkLock):
    """Optuna's symlink lock of a journal file, taken after an flock of the file itself.

    Optuna's lock polls with a backoff of up to a second, which several busy writers turn into
    seconds of waiting; here the processes of one machine queue in the kernel first (no
    polling; released when a process dies) and so almost always find the symlink lock free,
    while writers that use Optuna's own lock still meet this one at the symlink.
    """

    def __init__(self, filepath: str) -> None:
        super().__init__(filepath)
        self._path = filepath
        self._fd: int | None = None
        self._depth = 0  # holds and acquires by the thread holding self._thread
        self._thread = threading.RLock()

    def _enter(self) -> None:
        self._thread.acquire()
        if self._depth == 0:
            try:
                fd = os.open(self._path, os.O_RDONLY | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
            except BaseException:
                self._thread.release()
                raise
            self._fd = fd
        self._depth += 1

    def _exit(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # drops the flock
        self._thread.release()

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Keep the flock across several appends of this thread (a budget claim: read, then
        write); other processes' appends wait."""
        self._enter()
        try:
            yield
        finally:
            self._exit()

    def acquire(self) -> bool:
        self._enter()
        try:
            return super().acquire()
        except BaseException:
            self._exit()
            raise

    def release(self) -> None:
        try:
            super().release()
        finally:
            self._exit()


class JournalFile(JournalFileBackend):
    """Optuna's journal file backend (same file, same records), appending without an fsync per
    record.

    Durability: a record is written to the file (``write``) before `append_logs` returns, so it
    is in the operating system's page cache and survives a kill -9 of this process; it reaches
    the disk at an fsync. `sync` fsyncs now; ``sync(wait=False)`` asks a background thread to
    (the tuner's call after each round of writes, so the training thread never waits for the
    disk); `close` joins that thread and fsyncs what is left. An OS crash or power cut may lose
    the records of the last round or two (those whose fsync had not finished), never corrupt
    the file: Optuna skips a torn last line. The same trade as SQLite's synchronous=NORMAL in
    WAL mode. The fsync per record of Optuna's backend cost 0.3-8 ms.

    `batch`: the appends of a block under one acquisition of the lock and one open file (a
    round's trials: one lock, not one per record)."""

    def __init__(self, path: str) -> None:
        self._append_path = path
        self._append_lock = QueuedSymlinkLock(path)
        self._open: Any = None  # the file of the current batch (unbuffered)
        self._batch_thread: int | None = None
        self._cond = threading.Condition()
        self._appended = 0  # appends by this process
        self._synced = 0  # appends on the disk (fsynced)
        self._syncer: threading.Thread | None = None
        self._stopping = False
        self._error: OSError | None = None  # of a background fsync, raised by the next sync
        self._read: tuple[int, int] | None = None  # (file size, next log number) when read
        super().__init__(path, lock_obj=self._append_lock)

    def read_logs(self, log_number_from: int) -> Generator[dict[str, Any], None, None]:
        """Optuna's read, skipped when the file has not changed since the last read that
        ended at `log_number_from` (every storage call reads: this keeps one stat of it)."""
        size = os.stat(self._append_path).st_size
        if self._read == (size, log_number_from):
            return
        n = log_number_from
        for log in super().read_logs(log_number_from):
            yield log
            n += 1
        self._read = (size, n)  # size was taken first: a line appended meanwhile reads again

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode()
        if self._open is not None and self._batch_thread == threading.get_ident():
            self._open.write(data)  # the lock is held for the whole batch
        else:
            self._append_lock.acquire()
            try:
                with open(self._append_path, "ab") as f:
                    f.write(data)
            finally:
                self._append_lock.release()
        with self._cond:
            self._appended += 1

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Appends of this thread inside the block: each still written at once (readers and a
        kill -9 see what `append_logs` returned from), under the lock taken once."""
        if self._open is not None and self._batch_thread == threading.get_ident():
            yield  # nested
            return
        self._append_lock.acquire()
        try:
            with open(self._append_path, "ab", buffering=0) as f:
                self._open, self._batch_thread = f, threading.get_ident()
                try:
                    yield
                finally:
                    self._open, self._batch_thread = None, None
        finally:
            self._append_lock.release()

    @property
    def unsynced(self) -> int:
        """Appends of this process not yet on the disk."""
        with self._cond:
            return self._appended - self._synced

    def _fsync(self) -> None:
        fd = os.open(self._append_path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def sync(self, wait: bool = True) -> None:
        """Put what this process appended on the disk: an fsync now, or (``wait=False``) by
        the background thread, started on first use. Raises a background fsync's error."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        with self._cond:
            target = self._appended
            if self._synced >= target:
                return
            if not wait:
                if self._syncer is None or not self._syncer.is_alive():
                    self._syncer = threading.Thread(target=self._sync_loop, daemon=True,
                                                    name="optimkit-journal-fsync")  # fmt: skip
                    self._syncer.start()
                self._cond.notify_all()
                return
        self._fsync()
        with self._cond:
            self._synced = max(self._synced, target)
            self._cond.notify_all()

    def _sync_loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and self._synced >= self._appended:
                    self._cond.wait()
                if self._stopping:
                    return
                target = self._appended
            try:
                self._fsync()
            except OSError as e:  # raised by the next sync (the tuner's close)
                self._error = e
                return
            with self._cond:
                self._synced = max(self._synced, target)
                self._cond.notify_all()

    def close(self) -> None:
        """Join the background fsync thread, then fsync what is left (the end of a run)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        syncer, self._syncer = self._syncer, None
        if syncer is not None:
            syncer.join()
        with self._cond:
            self._stopping = False
        self.sync()


class LocalJournal(JournalStorage):
    """A `JournalStorage` on a `JournalFile`, with `batch`, `sync` and `close`."""

    def __init__(self, path: str) -> None:
        self.file = JournalFile(path)
        super().__init__(self.file)

    def batch(self) -> Any:
        return self.file.batch()

    def sync(self, wait: bool = True) -> None:
        self.file.sync(wait)

    def close(self) -> None:
        self.file.close()


def _rdb(url: str) -> RDBStorage:
    parsed = sqlalchemy.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ValueError("an in-memory SQLite database is discarded when the process exits; "
                         "give a file (sqlite:///study.db) or a journal file")  # fmt: skip
    db_file = _sqlite_file(parsed)
    fresh = db_file is not None and not db_file.exists()
    if db_file is not None and fresh:
        db_file.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(db_file, timeout=30)) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
    for attempt in range(_RETRIES):
        try:
            storage = RDBStorage(url, engine_kwargs=_engine_kwargs(url))
            break
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError,
                sqlalchemy.exc.OperationalError) as e:  # fmt: skip
            # several processes creating the schema at once: one wins, the others retry
            # (UniqueViolation on PostgreSQL's catalog, "table already exists", a lock)
            if attempt == _RETRIES - 1 or not _is_race(e):
                raise
            time.sleep(0.05 * 2**attempt)
    if db_file is not None:
        sqlalchemy.event.listen(storage.engine, "connect", _sqlite_pragmas)
        storage.engine.dispose()  # the connections opened so far lack the pragmas
    return storage


def _is_race(e: Exception) -> bool:
    text = str(e).lower()
    return any(word in text for word in ("already exists", "unique", "duplicate", "locked",
                                         "deadlock"))  # fmt: skip


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30}}
    # a connection broken by a server restart is replaced before use, not handed out
    return {"pool_pre_ping": True}


def _sqlite_file(parsed: sqlalchemy.engine.URL) -> Path | None:
    """The database file of an SQLite URL (None for other databases)."""
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:") or parsed.query.get("uri"):
        return None  # URI file names: left as they are
    return Path(database)


def _sqlite_pragmas(connection: sqlite3.Connection, _record: Any) -> None:
    """synchronous=NORMAL on a WAL database: a commit costs microseconds instead of two
    fsyncs; a killed process loses nothing it committed (https://www.sqlite.org/wal.html)."""
    cursor = connection.cursor()
    try:
        (mode,) = cursor.execute("PRAGMA journal_mode").fetchone()
        if str(mode).lower() == "wal":
            cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _key(params: Any) -> str:
    """A trial's parameters as a hashable key (JSON, as claims store them)."""
    return json.dumps(params, sort_keys=True, default=str)


def counts_toward_budget(trial: FrozenTrial) -> bool:
    """Finished trials that ran: complete, pruned, or failed while training (diverged). A
    trial failed for another reason (an earlier optimkit marked interrupted ones FAIL) is not."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and "status" in trial.user_attrs


def create_or_load(
    storage: BaseStorage, study_name: str, directions: Sequence[StudyDirection]
) -> int:
    """The id of `study_name`, created if missing (several processes may race to create it:
    the losers load it); its directions must be `directions`."""
    if not study_name:
        raise ValueError("study: the study name must not be empty")
    for attempt in range(_RETRIES):
        try:
            try:
                study_id = storage.get_study_id_from_name(study_name)
            except KeyError:
                study_id = storage.create_new_study(list(directions), study_name)
            break
        except optuna.exceptions.DuplicatedStudyError:
            continue  # created by another process just now: load it
        except sqlalchemy.exc.OperationalError as e:  # a busy database
            if attempt == _RETRIES - 1 or not _is_race(e):
                raise
            time.sleep(0.05 * 2**attempt)
    else:
        study_id = storage.get_study_id_from_name(study_name)
    found = list(storage.get_study_directions(study_id))
    if found != list(directions):
        have = ", ".join(d.name.lower() for d in found)
        want = ", ".join(d.name.lower() for d in directions)
        raise ValueError(
            f"study: {study_name!r} exists in this storage with direction(s) {have}, not {want}; "
            "use another --study-name or --storage"
        )
    return study_id


# ------------------------------------------------------------------------------ study locks
class StudyLock:
    """What serializes the budget claims of the workers on one study (see `study_lock`): a
    context manager. `beat`, when set, is called about every `heartbeat_interval` seconds
    while the lock is waited for (a worker keeps its heartbeat while it waits)."""

    beat: Callable[[], None] | None = None
    heartbeat_interval = HEARTBEAT_INTERVAL

    def __enter__(self) -> StudyLock:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class _FileLock(StudyLock):
    """An flock of a path: the processes of one machine queue in the kernel; released when a
    process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> StudyLock:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


class _JournalLock(StudyLock):
    """The journal's own queue (`QueuedSymlinkLock.hold`): appends by this thread go through,
    other processes' wait."""

    def __init__(self, lock: QueuedSymlinkLock) -> None:
        self.lock = lock
        self._held: Any = None

    def __enter__(self) -> StudyLock:
        self._held = self.lock.hold()
        self._held.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.__exit__(None, None, None)


class _PostgresLock(StudyLock):
    """A transaction-level advisory lock (``pg_advisory_xact_lock``) on a connection of its
    own: released at the end of the transaction, or by the server when the connection dies
    (a killed worker). Not a table of Optuna's: nothing is written."""

    def __init__(self, engine: sqlalchemy.engine.Engine, name: str) -> None:
        self.engine = engine
        digest = hashlib.sha256(f"optimkit:{name}".encode()).digest()
        self.key = int.from_bytes(digest[:8], "big", signed=True)
        self._connection: sqlalchemy.engine.Connection | None = None

    def __enter__(self) -> StudyLock:
        connection = self.engine.connect()
        try:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:k)"), {"k": self.key})
        except BaseException:
            connection.invalidate()
            connection.close()
            raise
        self._connection = connection
        return self

    def __exit__(self, *exc: object) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            connection.rollback()  # ends the transaction: releases the lock
        except Exception:  # the server went away: the lock went with it
            connection.invalidate()
        finally:
            connection.close()


class _TrialLock(StudyLock):
    """A queue lock made of trials, for a storage without a lock of its own (Optuna's gRPC
    storage proxy, ``grpc://HOST:PORT``): public storage calls only, each one serialized by the
    database behind the proxy.

    The lock of study S is a companion study, ``optimkit:lock:S``. To acquire, a worker creates
    a RUNNING trial there (number n) and waits until n is the lowest-numbered unfinished trial;
    to release, it finishes its trial (COMPLETE). Optuna numbers a study's trials one at a time
    (the RDB creates them under a row lock on the study), so no trial created later gets a
    smaller number, and a finished trial never runs again, nor is any deleted: two holders at
    once would need the first one's trial finished while it holds, which only happens to a
    holder judged dead: its process gone (same host), or the same trial seen holding for longer
    than `grace_period` (a live holder holds for milliseconds). A dead holder's trial is marked
    FAIL (``set_trial_state_values``; Optuna refuses to finish a trial twice, so one breaker
    wins). This is Lamport's ticket ("bakery") lock with the storage's trial numbers as tickets
    (L. Lamport, "A new solution of Dijkstra's concurrent programming problem", CACM 1974).
    Uncontended it costs three calls: create, read the unfinished trials, finish."""

    def __init__(self, storage: BaseStorage, study_name: str, grace_period: float) -> None:
        self.storage = storage
        self.name = LOCK_PREFIX + study_name
        self.grace_period = grace_period
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._study_id: int | None = None
        self._trial_id: int | None = None
        self._unreleased: list[int] = []  # own trials whose release failed: finished next time

    def _finish(self, trial_id: int, state: TrialState) -> None:
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            self.storage.set_trial_state_values(trial_id, state)

    def __enter__(self) -> StudyLock:
        if self._study_id is None:
            self._study_id = create_or_load(self.storage, self.name, [StudyDirection.MINIMIZE])
        for trial_id in list(self._unreleased):
            self._finish(trial_id, TrialState.COMPLETE)
            self._unreleased.remove(trial_id)
        host, pid = socket.gethostname(), os.getpid()
        template = FrozenTrial(
            number=0, state=TrialState.RUNNING, value=None, datetime_start=None,
            datetime_complete=None, params={}, distributions={}, user_attrs={},
            system_attrs={"owner": self.owner, "host": host, "pid": pid}, intermediate_values={},
            trial_id=0,
        )  # fmt: skip
        mine = self.storage.create_new_trial(self._study_id, template_trial=template)
        self._trial_id = mine
        try:
            self._wait(mine)
        except BaseException:
            self._trial_id = None
            with contextlib.suppress(Exception):
                self._finish(mine, TrialState.COMPLETE)
            raise
        return self

    def _wait(self, mine: int) -> None:
        assert self._study_id is not None
        seen: tuple[int, float] | None = None  # (holder's trial id, when first seen holding)
        delay, beaten = 0.002, time.monotonic()
        while True:
            if self.beat is not None and time.monotonic() - beaten > self.heartbeat_interval:
                self.beat()
                beaten = time.monotonic()
            running = self.storage.get_all_trials(self._study_id, deepcopy=False,
                                                  states=(TrialState.RUNNING,))  # fmt: skip
            holder = min(running, key=lambda t: t.number)  # mine is among them
            if holder._trial_id == mine:
                return
            attrs = holder.system_attrs
            if attrs.get("owner") == self.owner:  # an earlier try of this lock (a lost reply)
                self._finish(holder._trial_id, TrialState.COMPLETE)
                continue
            if seen is None or seen[0] != holder._trial_id:
                seen = (holder._trial_id, time.monotonic())
            gone = attrs.get("host") == socket.gethostname() and not _alive(attrs.get("pid"))
            if gone or time.monotonic() - seen[1] > self.grace_period:
                self._finish(holder._trial_id, TrialState.FAIL)  # a dead holder's
                continue
            time.sleep(delay)
            delay = min(2 * delay, 0.05)

    def __exit__(self, *exc: object) -> None:
        mine, self._trial_id = self._trial_id, None
        if mine is None:
            return
        try:
            self._finish(mine, TrialState.COMPLETE)
        except Exception:  # unreachable: finished on the next acquire (or broken when stale)
            self._unreleased.append(mine)


def _alive(pid: Any) -> bool:
    """Whether the process `pid` of this machine runs (not an int: assumed alive)."""
    if not isinstance(pid, int):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's
    return True


def study_lock(
    storage: BaseStorage, study_name: str, grace_period: float = GRACE_PERIOD
) -> StudyLock:
    """The lock the workers of one study take around a budget claim: the journal's file lock,
    an flock of an SQLite file's folder (an flock of the file itself would drop SQLite's own
    POSIX locks when closed), a PostgreSQL advisory lock; for any other storage (the gRPC
    proxy) a lock of trials in a companion study (`_TrialLock`)."""
    if isinstance(storage, LocalJournal):
        return _JournalLock(storage.file._append_lock)
    if isinstance(storage, RDBStorage):
        url = storage.engine.url
        backend = url.get_backend_name()
        db_file = _sqlite_file(url) if backend == "sqlite" else None
        if db_file is not None:
            return _FileLock(db_file.resolve().parent)
        if backend == "postgresql":
            return _PostgresLock(storage.engine, study_name)
    return _TrialLock(storage, study_name, grace_period)


# ------------------------------------------------------------------------------ retrying
class RunStopped(ValueError):
    """A run that stopped after it may have stored trials (a one-line message): the CLI keeps
    what it wrote (its study file and output folder), unlike a run refused before it began."""


class StorageUnavailable(RunStopped):
    """The storage stayed unreachable longer than the retry window (a one-line message)."""


def _transient(e: BaseException) -> bool:
    """A lost connection or a database that is restarting (retried), not a bad request."""
    seen: BaseException | None = e
    for _ in range(4):
        if seen is None:
            return False
        if isinstance(seen, sqlalchemy.exc.DBAPIError) and seen.connection_invalidated:
            return True
        if isinstance(seen, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
            return True  # a lost or refused connection, a busy (locked) database
        if "grpc" in type(seen).__module__:  # the proxy down, or its database (an error
            text = str(seen)  # the proxy's storage raised: status UNKNOWN, the error named)
            return any(w in text for w in ("UNAVAILABLE", "DEADLINE", "OperationalError",
                                           "StorageInternalError", "InterfaceError"))  # fmt: skip
        if isinstance(seen, ConnectionError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _reason(e: BaseException) -> str:
    while e.__cause__ is not None and not str(e).strip():
        e = e.__cause__
    root = e.__cause__ if isinstance(e, optuna.exceptions.StorageInternalError) else e
    text = str(root or e).strip().splitlines()
    return text[0] if text else type(e).__name__


# ------------------------------------------------------------------------------ the mirror
class StudyMirror:
    """A live in-memory study (sampling, pruning) whose trials are written to a persistent
    storage as they end; see the module docstring.

    `register=False`: a reader (the driver of several workers): no claim, no heartbeat, no
    re-asking. `reseed=False`: keep the sampler's seed when other workers are live (workers
    started together are given distinct seeds). `retry_seconds`: how long an unreachable
    storage is retried, with backoff, before the run stops with `StorageUnavailable`."""

    def __init__(
        self,
        storage: BaseStorage,
        study_name: str,
        directions: Sequence[str],
        sampler: optuna.samplers.BaseSampler,
        pruner: optuna.pruners.BasePruner,
        *,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        grace_period: float = GRACE_PERIOD,
        retry_seconds: float = RETRY_SECONDS,
        register: bool = True,
        reseed: bool = True,
        label: str | None = None,
    ) -> None:
        self.storage = storage
        self.study_name = study_name
        self.label = label or study_name
        self.retry_seconds = retry_seconds
        self._gave_up = False
        self.directions = [StudyDirection[d.upper()] for d in directions]
        self._io = threading.RLock()  # one storage call at a time: this thread or the heartbeat
        self.study_id = self._call(create_or_load, storage, study_name, self.directions)
        # reads go through a Study on the storage (Optuna caches finished trials of an RDB)
        self.stored = self._call(optuna.load_study, study_name=study_name, storage=storage,
                                 sampler=sampler, pruner=pruner)  # fmt: skip
        self.study = optuna.create_study(
            storage=optuna.storages.InMemoryStorage(), sampler=sampler, pruner=pruner,
            directions=self.directions, study_name=study_name,
        )  # fmt: skip
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.lock = study_lock(storage, study_name, grace_period)
        self.lock.heartbeat_interval = heartbeat_interval
        self.worker = uuid.uuid4().hex[:12]
        self._key = WORKER_PREFIX + self.worker
        self._host = socket.gethostname()
        self._lock = threading.Lock()  # this worker's own bookkeeping
        # slots: the trials this worker holds a claim to. Each has an id, stored with the trial
        # (system attribute optimkit:slot), so a claim and the trial it became count once.
        self._slots: dict[str, dict[str, Any] | None] = {}  # id -> params (None: not asked)
        self._fixed: list[str] = []  # claimed, enqueued with their params (a stale one's)
        self._fresh: list[str] = []  # claimed, to be asked
        self._running: dict[int, str] = {}  # live number -> slot id, not yet written
        # live numbers ended since the last flush, with the attributes and curve to add
        self._ended: list[tuple[int, dict[str, Any], dict[int, float]]] = []
        self._seen: set[int] = set()  # stored numbers already in the live study
        self._finished_params: set[str] = set()  # of the stored finished trials (see _key)
        self._finished_slots: dict[str, int] = {}  # slot id -> stored number
        self.numbers: dict[int, int] = {}  # live number -> stored number
        self._counted = 0  # stored trials that count toward the budget
        self._scanned = 0  # the stored trials before this number are finished, and seen
        self._counted_before = 0  # of them, those that count toward the budget
        self._others_running = 0
        self._claim_written = -math.inf
        self._claim_dirty = False  # running trials ended since the claim was written
        self._claim_grew = False  # trials started since the claim was written
        self._stop = threading.Event()
        self.store_seconds = 0.0  # time in storage writes and reads
        self.registered = register
        self.reasked = 0
        if not register:
            self.alone = True
            self.resumed = self._sync()
            return
        with self._locked():
            self._write_claim()
            claims = self._claims()
            self.alone = not any(self._live(c) for k, c in claims.items() if k != self._key)
            self.resumed = self._sync()
            self.reasked = self._reask(claims)
        if not self.alone and reseed:  # another live worker: draw another random stream
            self.study.sampler.reseed_rng()
        self.lock.beat = self._beat_once  # a worker waiting for a trial lock keeps beating
        self._beat = threading.Thread(target=self._beat_loop, name="optimkit-heartbeat",
                                      daemon=True)  # fmt: skip
        self._beat.start()

    # ------------------------------------------------------------------------------ storage
    def _call(self, fn: Any, *args: Any, found: Any = None, **kwargs: Any) -> Any:
        """fn(*args, **kwargs), retried with backoff (0.05 s doubling to 2 s) while the storage
        is unreachable, for up to `retry_seconds`; `found()`, called before each retry, returns
        the result of a write that reached the storage before its connection broke (or None)."""
        deadline, delay = None, 0.05
        while True:
            try:
                with self._io:
                    return fn(*args, **kwargs)
            except Exception as e:
                if not _transient(e):
                    raise
                if self._gave_up:  # stopping after StorageUnavailable: no second wait
                    raise StorageUnavailable(f"storage: {self.label} unreachable "
                                             f"({_reason(e)})") from None  # fmt: skip
                now = time.monotonic()
                deadline = now + self.retry_seconds if deadline is None else deadline
                if now >= deadline:
                    self._gave_up = True
                    raise StorageUnavailable(
                        f"storage: {self.label} unreachable for {self.retry_seconds:.0f} s "
                        f"({_reason(e)}); every trial stored before is kept: run the same "
                        "command again to continue the study"
                    ) from None
                time.sleep(delay)
                delay = min(2 * delay, 2.0)
                if found is not None:
                    try:
                        with self._io:
                            result = found()
                    except Exception as again:
                        if not _transient(again):
                            raise
                        continue
                    if result is not None:
                        return result

    def _locked(self) -> Any:
        """The study's lock (see `study_lock`), taken with retries, holding this worker's
        storage calls (the heartbeat waits)."""
        mirror = self

        class _Held:
            def __enter__(self) -> None:
                mirror._io.acquire()
                try:
                    mirror._call(mirror.lock.__enter__)
                except BaseException:
                    mirror._io.release()
                    raise

            def __exit__(self, *exc: object) -> None:
                try:
                    mirror.lock.__exit__(*exc)
                finally:
                    mirror._io.release()

        return _Held()

    # ------------------------------------------------------------------------------ workers
    def _claim(self, done: bool = False, beat: float | None = None) -> dict[str, Any]:
        asked = [] if done else list(self._running.values())
        reserved = [] if done else [s for s in self._fixed + self._fresh]
        params = [self._slots[s] for s in asked]
        return {"beat": time.time() if beat is None else beat, "done": done, "host": self._host,
                "pid": os.getpid(), "running": params, "slots": asked, "reserved": [
                    {"slot": s, "params": self._slots.get(s)} for s in reserved]}  # fmt: skip

    def _write_claim(self, done: bool = False, beat: float | None = None) -> None:
        with self._lock:
            claim = self._claim(done, beat)
            self._claim_dirty = self._claim_grew = False
        self._call(self.storage.set_study_system_attr, self.study_id, self._key, claim)
        self._claim_written = time.perf_counter()

    def _claims(self) -> dict[str, dict[str, Any]]:
        attrs = self._call(self.storage.get_study_system_attrs, self.study_id)
        return {k: v for k, v in attrs.items() if k.startswith(WORKER_PREFIX)
                and isinstance(v, dict)}  # fmt: skip

    @staticmethod
    def _entries(claim: dict[str, Any]) -> list[tuple[str | None, dict[str, Any] | None]]:
        """(slot id, params) of what a claim holds: its running trials (an earlier optimkit's
        claims name their params only) and the slots it reserved but has not asked yet."""
        running = [p for p in claim.get("running", []) if isinstance(p, dict)]
        slots = claim.get("slots")
        if not isinstance(slots, list) or len(slots) != len(running):
            slots = [None] * len(running)
        out: list[tuple[str | None, dict[str, Any] | None]] = list(zip(slots, running, strict=True))
        for r in claim.get("reserved", []):
            if isinstance(r, dict) and isinstance(r.get("slot"), str):
                params = r.get("params")
                out.append((r["slot"], params if isinstance(params, dict) else None))
        return out

    def _is_stored(self, slot: str | None, params: dict[str, Any] | None) -> bool:
        if slot is not None:
            return slot in self._finished_slots
        return params is not None and _key(params) in self._finished_params

    def _live(self, claim: dict[str, Any]) -> bool:
        if claim.get("done"):
            return False
        if time.time() - float(claim.get("beat", 0)) > self.grace_period:
            return False
        return claim.get("host") != self._host or _alive(claim.get("pid"))  # process gone?

    def _beat_once(self) -> None:
        with self._io:
            with self._lock:
                claim = self._claim()
            self.storage.set_study_system_attr(self.study_id, self._key, claim)

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat_interval):
            try:
                self._beat_once()
            except Exception:  # a transient storage error: the next beat tries again
                continue

    def _reask(self, claims: dict[str, dict[str, Any]]) -> int:
        """Take over the slots of stale workers that no stored trial has filled (under the
        study's lock): the asked ones are enqueued in the live study with their parameters,
        the reserved ones are asked afresh; mark those workers done. Their claim is closed
        before this worker's names the slots (a kill in between frees them, never doubles)."""
        stale = {k: c for k, c in claims.items() if k != self._key and not c.get("done")
                 and not self._live(c)}  # fmt: skip
        if not stale:
            return 0
        n = 0
        for key, claim in stale.items():
            entries = [e for e in self._entries(claim) if not self._is_stored(*e)]
            self._call(self.storage.set_study_system_attr, self.study_id, key,
                       {**claim, "running": [], "slots": [], "reserved": [], "done": True,
                        "taken_by": self.worker})  # fmt: skip
            for _, params in entries:
                slot = uuid.uuid4().hex
                with self._lock:
                    self._slots[slot] = params
                    if params is not None:
                        self.study.enqueue_trial(params, skip_if_exists=False)
                        self._fixed.append(slot)
                    else:
                        self._fresh.append(slot)
                n += 1
        if n:
            self._write_claim()
        return n

    # ------------------------------------------------------------------------------ syncing
    def _sync(self) -> int:
        """Add the finished trials stored by others (or earlier runs) to the live study;
        recount the budget. Returns how many were added. Incremental: a finished trial stays
        finished, so the stored trials before the first unfinished one (all finished, counted
        once) are not looked at again."""
        tic = time.perf_counter()
        stored = self._call(self.stored.get_trials, deepcopy=False)  # indexed by number
        added, start = 0, self._scanned
        counted = self._counted_before
        for i in range(start, len(stored)):
            t = stored[i]
            if t.state in _FINISHED and t.number not in self._seen:
                self.study.add_trial(t)
                self._seen.add(t.number)
                self._finished_params.add(_key(t.params))
                slot = t.system_attrs.get(SLOT_KEY)
                if isinstance(slot, str):
                    self._finished_slots[slot] = t.number
                added += 1
            counted += counts_toward_budget(t)
            if i == self._scanned and t.state.is_finished():
                self._scanned, self._counted_before = i + 1, counted
        self._counted = counted
        self.store_seconds += time.perf_counter() - tic
        return added

    def _refresh(self) -> int:
        """Under the lock: the stored trials and claims, stale workers' slots taken over;
        returns what may still be asked: `trials` less the finished trials, the other live
        workers' slots and this worker's asked ones (its reserved slots are part of it)."""
        claims = self._claims()  # before the trials: a trial stored meanwhile is found below
        self._sync()
        self.reasked += self._reask(claims)
        self._others_running = sum(
            sum(1 for e in self._entries(c) if not self._is_stored(*e))
            for k, c in claims.items() if k != self._key and self._live(c)
        )  # fmt: skip
        return -self._counted - self._others_running - len(self._running)

    def budget_left(self, trials: int) -> int:
        """`trials` less the study's finished trials, other live workers' slots and this
        worker's running trials; stale workers' running trials are enqueued here to be asked
        again (they are part of what is left)."""
        tic = time.perf_counter()
        with self._locked():
            left = trials + self._refresh()
        self.store_seconds += time.perf_counter() - tic
        return left

    def claim(self, wanted: int, trials: int) -> int:
        """Reserve, under the study's lock, up to `wanted` trials of the budget `trials` for
        this worker (the slots it took over from stale workers first) and write its claim, so
        that workers sharing a study never ask more than `trials` in all (exact where the
        storage has a lock, see `study_lock`). Returns how many trials to ask now; each is
        then given to `started`."""
        tic = time.perf_counter()
        with self._locked():
            left = trials + self._refresh()
            n = max(0, min(wanted, left))
            held = len(self._fixed) + len(self._fresh)
            fresh = max(0, n - held)
            if fresh:
                with self._lock:
                    for _ in range(fresh):
                        slot = uuid.uuid4().hex
                        self._slots[slot] = None
                        self._fresh.append(slot)
                self._write_claim()
        self.store_seconds += time.perf_counter() - tic
        return min(n, len(self._fixed) + len(self._fresh))

    def release_unasked(self) -> None:
        """Give back the reserved slots that were not asked (a grid that ran out)."""
        with self._lock:
            if not self._fresh:
                return
            for slot in self._fresh:
                self._slots.pop(slot, None)
            self._fresh = []
        self._write_claim()

    def complete(self, trials: int) -> bool:
        """Whether the study holds `trials` finished trials (counted as the budget counts)."""
        with self._io:
            self._sync()
        return self._counted >= trials

    # ------------------------------------------------------------------------------ events
    def started(self, trial: optuna.Trial) -> None:
        """`trial` (asked from the live study) fills the next claimed slot: an enqueued one
        first, as the study asks enqueued trials first; one without a claim gets a slot now."""
        with self._lock:
            if self._fixed:
                slot = self._fixed.pop(0)
            elif self._fresh:
                slot = self._fresh.pop(0)
            else:
                slot = uuid.uuid4().hex
            self._slots[slot] = dict(trial.params)
            self._running[trial.number] = slot
            self._claim_grew = True

    def finished(
        self, number: int, user_attrs: dict[str, Any] | None = None,
        intermediate_values: dict[int, float] | None = None,
    ) -> None:  # fmt: skip
        """Live trial `number` ended (told): written at the next `flush`, with `user_attrs` and
        `intermediate_values` added to the live trial's own (what the tuner kept outside the
        live study: its attributes, and its curve when no pruner reads it)."""
        self._ended.append((number, user_attrs or {}, intermediate_values or {}))

    def _template(
        self, trial: FrozenTrial, slot: str | None, user_attrs: dict[str, Any],
        intermediate_values: dict[int, float],
    ) -> FrozenTrial:  # fmt: skip
        """The finished live trial as it is stored: its attributes and curve with the tuner's
        added, and its slot id."""
        system = {**trial.system_attrs, SLOT_KEY: slot} if slot is not None else trial.system_attrs
        return FrozenTrial(
            number=trial.number, state=trial.state, value=None, values=trial.values,
            datetime_start=trial.datetime_start, datetime_complete=trial.datetime_complete,
            params=trial.params, distributions=trial.distributions,
            user_attrs={**trial.user_attrs, **user_attrs}, system_attrs=system,
            intermediate_values={**trial.intermediate_values, **intermediate_values},
            trial_id=0,  # the storage gives the id
        )  # fmt: skip

    def _write_trial(self, template: FrozenTrial, slot: str | None) -> int:
        """Write one finished trial; returns its stored number. A write whose connection broke
        after it reached the storage is found by its slot id, not written twice."""

        def found() -> int | None:
            if slot is None:
                return None
            self._sync()
            return self._finished_slots.get(slot)

        def write() -> int:
            trial_id = self.storage.create_new_trial(self.study_id, template_trial=template)
            return self.storage.get_trial_number_from_id(trial_id)

        return int(self._call(write, found=found))

    def flush(self) -> None:
        """Write every trial ended since the last flush (one write each; on a journal file all
        of them under one lock, then an fsync in the background), and the worker's claim when
        it started trials (or, at most once a second, when trials ended)."""
        tic = time.perf_counter()
        if self._ended:
            live = self.study.get_trials(deepcopy=False)  # indexed by number
            journal = self.storage if isinstance(self.storage, LocalJournal) else None
            with self._io, journal.batch() if journal is not None else contextlib.nullcontext():
                while self._ended:
                    number, user_attrs, values = self._ended[0]
                    trial = live[number]
                    assert trial.number == number
                    slot = self._running.get(number)
                    template = self._template(trial, slot, user_attrs, values)
                    stored = self._write_trial(template, slot)
                    self.numbers[number] = stored
                    self._seen.add(stored)
                    self._finished_params.add(_key(trial.params))
                    if slot is not None:
                        self._finished_slots[slot] = stored
                    if counts_toward_budget(template):
                        self._counted += 1
                    with self._lock:
                        self._running.pop(number, None)
                        if slot is not None:
                            self._slots.pop(slot, None)
                        self._claim_dirty = True
                    self._ended.pop(0)
            if journal is not None:
                journal.sync(wait=False)
        # started trials are claimed at once (a killed worker's are then asked again); ended
        # ones leave the claim within a second
        due = self._claim_dirty and time.perf_counter() - self._claim_written >= 1.0
        if self.registered and (self._claim_grew or due):
            self._write_claim()
        self.store_seconds += time.perf_counter() - tic

    def close(self, completed: bool = True) -> None:
        """Stop the heartbeat; `completed`: this worker is done (nothing left running), else
        it stopped early (an error): its running trials are re-asked by the next worker."""
        if not self.registered:
            return
        self._stop.set()
        self._beat.join()
        try:
            self.flush()
        finally:
            if completed:
                with self._lock:  # reserved slots never asked (a timeout) are given back
                    for slot in self._fixed + self._fresh:
                        self._slots.pop(slot, None)
                    self._fixed, self._fresh = [], []
            self._write_claim(done=completed and not self._running,
                              beat=None if completed else 0.0)  # fmt: skip
            if isinstance(self.storage, LocalJournal):
                self.storage.close()  # the background fsync joined, the rest on the disk

    # ------------------------------------------------------------------------------ reading
    def best_trial(self) -> FrozenTrial | None:
        """The stored complete trial with the best first objective, over every run."""
        self._sync()
        complete = self._call(self.stored.get_trials, deepcopy=False,
                              states=(TrialState.COMPLETE,))  # fmt: skip
        complete = [t for t in complete if t.values and math.isfinite(t.values[0])]
        if not complete:
            return None
        sign = -1.0 if self.directions[0] == StudyDirection.MAXIMIZE else 1.0
        return min(complete, key=lambda t: (sign * t.values[0], t.number))

    def finished_count(self) -> int:
        """Stored trials that count toward the budget (see `counts_toward_budget`)."""
        return self._counted
