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
mark another's live trial as failed. Per trial this costs one write: ~0.3 ms on a journal
file (`JournalFile`: one fsync per round, not per record), against ~0.4 ms for the bulk ORM
statements earlier versions wrote into Optuna's private tables, and ~13 ms for Optuna's
per-call API (~27 writes: one per epoch's value, per attribute, and the state, each with an
fsync). An RDB through RDBStorage as it is costs ~25 ms per trial on SQLite (SQLAlchemy's
ORM, one query per intermediate value): fine for trials of seconds, not for trials of
milliseconds (measured by ``python -m benchmarks.bench_tune``, parts table).
Before asking, the mirror brings the trials other processes wrote into the live study, so the
sampler and the pruner see them.

Workers and staleness. Each tuner registers in the study's system attributes
(``optimkit:worker:<id>``) with a heartbeat (every `heartbeat_interval` seconds, from a
background thread) and the parameters of the trials it is running. The budget (``--trials``,
the study's total) counts the study's finished trials plus every live worker's running ones,
so processes sharing a study stop together. A worker whose heartbeat is older than
`grace_period`, or that ran on this machine and whose process is gone, is stale: the next
worker to look asks its running trials again, with the same parameters (unless one of them was
written meanwhile). Staleness is decided by heartbeat, never by what is running at start.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

WORKER_PREFIX = "optimkit:worker:"
HEARTBEAT_INTERVAL = 30.0  # seconds between a worker's heartbeats
GRACE_PERIOD = 120.0  # a worker silent for this long is stale
DEFAULT_FILE = "study.journal"
LEGACY_FILE = "study.db"  # the default of earlier optimkit versions
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
_RETRIES = 8


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

    def acquire(self) -> bool:
        fd = os.open(self._path, os.O_RDONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        try:
            return super().acquire()
        except BaseException:
            self._unlock()
            raise

    def release(self) -> None:
        try:
            super().release()
        finally:
            self._unlock()

    def _unlock(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # drops the flock


class JournalFile(JournalFileBackend):
    """Optuna's journal file backend (same file, same records), appending without an fsync per
    record: a record reaches the operating system when it is written (a killed process loses
    nothing it wrote) and the disk at `sync`, which the tuner calls once a round; an OS crash
    or power cut may lose the last round's records, never corrupt the file (Optuna skips a
    torn last line). The fsync per record cost 0.3-8 ms, ten times the rest of a trial's
    write. The same trade as SQLite's synchronous=NORMAL in WAL mode."""

    def __init__(self, path: str) -> None:
        self._append_path = path
        self._append_lock = QueuedSymlinkLock(path)
        self._unsynced = False
        super().__init__(path, lock_obj=self._append_lock)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
        self._append_lock.acquire()
        try:
            with open(self._append_path, "ab") as f:
                f.write(text.encode("utf-8"))
            self._unsynced = True
        finally:
            self._append_lock.release()

    def sync(self) -> None:
        """Put what this process appended on the disk (fsync)."""
        if not self._unsynced:
            return
        self._unsynced = False
        fd = os.open(self._append_path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class LocalJournal(JournalStorage):
    """A `JournalStorage` on a `JournalFile`, with `sync`."""

    def __init__(self, path: str) -> None:
        self.file = JournalFile(path)
        super().__init__(self.file)

    def sync(self) -> None:
        self.file.sync()


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
    return {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}


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


class StudyMirror:
    """A live in-memory study (sampling, pruning) whose trials are written to a persistent
    storage as they end; see the module docstring."""

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
    ) -> None:
        self.storage = storage
        self.study_name = study_name
        self.directions = [StudyDirection[d.upper()] for d in directions]
        self.study_id = create_or_load(storage, study_name, self.directions)
        # reads go through a Study on the storage (Optuna caches finished trials of an RDB)
        self.stored = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler,
                                        pruner=pruner)  # fmt: skip
        self.study = optuna.create_study(
            storage=optuna.storages.InMemoryStorage(), sampler=sampler, pruner=pruner,
            directions=self.directions, study_name=study_name,
        )  # fmt: skip
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.worker = uuid.uuid4().hex[:12]
        self._key = WORKER_PREFIX + self.worker
        self._host = socket.gethostname()
        self._lock = threading.Lock()
        self._running: dict[int, dict[str, Any]] = {}  # live number -> params, not yet written
        self._ended: list[int] = []  # live numbers ended since the last flush
        self._seen: set[int] = set()  # stored numbers already in the live study
        self._finished_params: set[str] = set()  # of the stored finished trials (see _key)
        self.numbers: dict[int, int] = {}  # live number -> stored number
        self._counted = 0  # stored trials that count toward the budget
        self._others_running = 0
        self._claim_written = -math.inf
        self._claim_dirty = False  # running trials ended since the claim was written
        self._claim_grew = False  # trials started since the claim was written
        self._stop = threading.Event()
        self.store_seconds = 0.0  # time in storage writes and reads
        self._write_claim()
        claims = self._claims()
        self.alone = not any(self._live(c) for k, c in claims.items() if k != self._key)
        if not self.alone:  # another live worker: draw another random stream than its own
            self.study.sampler.reseed_rng()
        self.resumed = self._sync()
        self.reasked = self._reask(claims)
        self._beat = threading.Thread(target=self._beat_loop, name="optimkit-heartbeat",
                                      daemon=True)  # fmt: skip
        self._beat.start()

    # ------------------------------------------------------------------------------ workers
    def _claim(self, done: bool = False, beat: float | None = None) -> dict[str, Any]:
        running = [] if done else list(self._running.values())
        return {"beat": time.time() if beat is None else beat, "done": done, "host": self._host,
                "pid": os.getpid(), "running": running}  # fmt: skip

    def _write_claim(self, done: bool = False, beat: float | None = None) -> None:
        with self._lock:
            claim = self._claim(done, beat)
            self._claim_dirty = self._claim_grew = False
        self.storage.set_study_system_attr(self.study_id, self._key, claim)
        self._claim_written = time.perf_counter()

    def _claims(self) -> dict[str, dict[str, Any]]:
        attrs = self.storage.get_study_system_attrs(self.study_id)
        return {k: v for k, v in attrs.items() if k.startswith(WORKER_PREFIX)
                and isinstance(v, dict)}  # fmt: skip

    def _live(self, claim: dict[str, Any]) -> bool:
        if claim.get("done"):
            return False
        if time.time() - float(claim.get("beat", 0)) > self.grace_period:
            return False
        if claim.get("host") == self._host and isinstance(claim.get("pid"), int):
            try:
                os.kill(claim["pid"], 0)
            except ProcessLookupError:
                return False  # its process is gone
            except PermissionError:
                pass  # alive, another user's
        return True

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat_interval):
            try:
                self._write_claim()
            except Exception:  # a transient storage error: the next beat tries again
                continue

    def _reask(self, claims: dict[str, dict[str, Any]]) -> int:
        """Enqueue, in the live study, the running trials of stale workers that no stored
        trial has finished; mark those workers done."""
        stale = {k: c for k, c in claims.items() if k != self._key and not c.get("done")
                 and not self._live(c)}  # fmt: skip
        if not stale:
            return 0
        n = 0
        for key, claim in stale.items():
            self.storage.set_study_system_attr(self.study_id, key, {**claim, "running": [],
                                               "done": True, "taken_by": self.worker})  # fmt: skip
            for params in claim.get("running", []):
                if isinstance(params, dict) and _key(params) not in self._finished_params:
                    self.study.enqueue_trial(params, skip_if_exists=False)
                    n += 1
        return n

    # ------------------------------------------------------------------------------ syncing
    def _sync(self) -> int:
        """Add the finished trials stored by others (or earlier runs) to the live study;
        recount the budget. Returns how many were added."""
        tic = time.perf_counter()
        stored = self.stored.get_trials(deepcopy=False)
        new = [t for t in stored if t.number not in self._seen and t.state in _FINISHED]
        for t in new:
            self.study.add_trial(t)
            self._seen.add(t.number)
            self._finished_params.add(_key(t.params))
        self._counted = sum(1 for t in stored if counts_toward_budget(t))
        self.store_seconds += time.perf_counter() - tic
        return len(new)

    def budget_left(self, trials: int) -> int:
        """`trials` less the study's finished trials, other live workers' running ones and
        this worker's; stale workers' running trials are enqueued here to be asked again."""
        tic = time.perf_counter()
        claims = self._claims()  # before the trials: a trial stored meanwhile is found below
        self.store_seconds += time.perf_counter() - tic
        self._sync()
        self.reasked += self._reask(claims)
        # a claim can still name a trial its worker has just stored: counted once
        self._others_running = sum(
            sum(1 for p in c.get("running", []) if _key(p) not in self._finished_params)
            for k, c in claims.items() if k != self._key and self._live(c)
        )  # fmt: skip
        return trials - self._counted - self._others_running - len(self._running)

    # ------------------------------------------------------------------------------ events
    def started(self, trial: optuna.Trial) -> None:
        with self._lock:
            self._running[trial.number] = dict(trial.params)
            self._claim_grew = True

    def finished(self, number: int) -> None:
        self._ended.append(number)

    def flush(self) -> None:
        """Write every trial ended since the last flush (one write each), and the worker's
        claim when it started trials (or, at most once a second, when trials ended)."""
        tic = time.perf_counter()
        if self._ended:
            live = self.study.get_trials(deepcopy=False)  # indexed by number
            for number in self._ended:
                trial = live[number]
                assert trial.number == number
                trial_id = self.storage.create_new_trial(self.study_id, template_trial=trial)
                stored = self.storage.get_trial_number_from_id(trial_id)
                self.numbers[number] = stored
                self._seen.add(stored)
                self._finished_params.add(_key(trial.params))
                if counts_toward_budget(trial):
                    self._counted += 1
                with self._lock:
                    self._running.pop(number, None)
                    self._claim_dirty = True
            self._ended = []
            if isinstance(self.storage, LocalJournal):
                self.storage.sync()
        # started trials are claimed at once (a killed worker's are then asked again); ended
        # ones leave the claim within a second
        if self._claim_grew or (self._claim_dirty
                                and time.perf_counter() - self._claim_written >= 1.0):  # fmt: skip
            self._write_claim()
        self.store_seconds += time.perf_counter() - tic

    def close(self, completed: bool = True) -> None:
        """Stop the heartbeat; `completed`: this worker is done (nothing left running), else
        it stopped early (an error): its running trials are re-asked by the next worker."""
        self._stop.set()
        self._beat.join()
        self.flush()
        self._write_claim(done=completed and not self._running, beat=None if completed else 0.0)
        if isinstance(self.storage, LocalJournal):
            self.storage.sync()

    # ------------------------------------------------------------------------------ reading
    def best_trial(self) -> FrozenTrial | None:
        """The stored complete trial with the best first objective, over every run."""
        self._sync()
        complete = self.stored.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        complete = [t for t in complete if t.values and math.isfinite(t.values[0])]
        if not complete:
            return None
        sign = -1.0 if self.directions[0] == StudyDirection.MAXIMIZE else 1.0
        return min(complete, key=lambda t: (sign * t.values[0], t.number))

    def finished_count(self) -> int:
        """Stored trials that count toward the budget (see `counts_toward_budget`)."""
        return self._counted
