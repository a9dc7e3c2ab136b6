"""Where a study lives: an SQLite file by default, any SQLAlchemy URL, or an Optuna journal file.

The tuner samples and prunes on a fast in-memory copy of the study and mirrors it to the
persistent storage in batches: a trial is written when it starts (RUNNING, with its
parameters) and when it ends (state, value, learning curve, attributes), every write of one
tuner round in one transaction. Optuna's own per-operation writes cost tens of milliseconds
each on SQLite (a commit per call), which would dominate fast trials.

For SQLAlchemy storages the batch goes straight into Optuna's tables through its ORM models
(``optuna.storages._rdb.models``) as a few multi-row statements (one INSERT per table, one
UPDATE of the ended trials), so `optuna.load_study` and optuna-dashboard read the study
unchanged; a journal file is written through Optuna's public storage API.

SQLite: a database file the tuner creates is put in write-ahead-log mode (``PRAGMA
journal_mode=WAL``, kept by the file) and every connection to a WAL file uses ``PRAGMA
synchronous=NORMAL``: a commit then costs microseconds instead of two fsyncs (~15 ms), readers
such as optuna.load_study never block the writer, and a killed process loses nothing it
committed (an OS crash or power cut may lose the last commits, never corrupt the file). An
existing file keeps its journal mode. WAL needs a local file system (not NFS). See
https://www.sqlite.org/wal.html.

Resuming: the persisted trials are copied into the in-memory study; trials left RUNNING by a
killed run are marked FAIL in the storage (system attribute ``fail_reason``) and their
parameters are enqueued, so they are asked again.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.distributions import distribution_to_json
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

FAIL_REASON = "fail_reason"


def open_storage(spec: str | None, out_dir: Path) -> BaseStorage:
    """None -> SQLite file out_dir/study.db; "*.log" / "*.journal" / "journal:PATH" -> an Optuna
    journal file; anything with "://" -> an SQLAlchemy URL (sqlite:///..., postgresql://...)."""
    if spec is None:
        out_dir.mkdir(parents=True, exist_ok=True)
        spec = f"sqlite:///{(out_dir / 'study.db').resolve()}"
    try:
        if spec.startswith("journal:") or spec.endswith((".log", ".journal")):
            path = Path(spec.removeprefix("journal:"))
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        if "://" not in spec:
            raise ValueError("expected an SQLAlchemy URL (sqlite:///study.db, postgresql://...) "
                             "or a journal file ending in .log or .journal")  # fmt: skip
        db_file = _sqlite_file(spec)
        fresh = db_file is not None and not db_file.exists()
        if db_file is not None and fresh:
            with closing(sqlite3.connect(db_file, timeout=30)) as connection:
                connection.execute("PRAGMA journal_mode=WAL")
        # a file created just now gets the current schema: Optuna's check would only re-read
        # its alembic scripts (~0.2 s)
        storage = RDBStorage(spec, engine_kwargs=_engine_kwargs(spec),
                             skip_compatibility_check=fresh)  # fmt: skip
        if db_file is not None:
            sqlalchemy.event.listen(storage.engine, "connect", _sqlite_pragmas)
            storage.engine.dispose()  # the connections opened so far lack the pragmas
    except ValueError as e:
        raise ValueError(f"storage: cannot open {spec!r}: {e}") from None
    except Exception as e:  # SQLAlchemy and driver errors: say what and where
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"storage: cannot open {spec!r}: {reason}") from None
    return storage


def _engine_kwargs(url: str) -> dict[str, Any]:
    return {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}


def _sqlite_file(url: str) -> Path | None:
    """The database file of an SQLite URL (None for other databases and in-memory SQLite)."""
    parsed = sqlalchemy.engine.make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:") or parsed.query.get("uri"):
        return None  # URI file names: left as they are
    return Path(database)


def _sqlite_pragmas(connection: sqlite3.Connection, _record: Any) -> None:
    """synchronous=NORMAL on a WAL database (safe there; see the module docstring)."""
    cursor = connection.cursor()
    try:
        (mode,) = cursor.execute("PRAGMA journal_mode").fetchone()
        if str(mode).lower() == "wal":
            cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """A naive local datetime as the naive UTC datetime Optuna's RDB tables store."""
    return None if value is None else value.astimezone(dt.UTC).replace(tzinfo=None)


class StudyMirror:
    """A live in-memory study mirrored, in batches, to a persistent storage."""

    def __init__(
        self,
        storage: BaseStorage,
        study_name: str,
        directions: Sequence[str],
        sampler: optuna.samplers.BaseSampler,
        pruner: optuna.pruners.BasePruner,
    ) -> None:
        self.storage = storage
        self.directions = [StudyDirection[d.upper()] for d in directions]
        existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
        if study_name in existing:
            found = self._directions_of(storage, study_name)
            if found != self.directions:
                have = ", ".join(d.name.lower() for d in found)
                want = ", ".join(d.name.lower() for d in self.directions)
                raise ValueError(
                    f"study: {study_name!r} exists in this storage with direction(s) {have}, "
                    f"not {want}; use another --study-name or --storage"
                )
            self.study_id = storage.get_study_id_from_name(study_name)
        else:
            self.study_id = storage.create_new_study(self.directions, study_name)
        self.study = optuna.create_study(
            storage=optuna.storages.InMemoryStorage(), sampler=sampler, pruner=pruner,
            directions=self.directions, study_name=study_name,
        )  # fmt: skip
        self._ids: dict[int, int] = {}  # live trial number -> persistent trial id
        self._started: list[FrozenTrial] = []
        self._finished: list[FrozenTrial] = []
        self.resumed, self.failed_on_resume = self._resume()

    @staticmethod
    def _directions_of(storage: BaseStorage, name: str) -> list[StudyDirection]:
        return list(storage.get_study_directions(storage.get_study_id_from_name(name)))

    # ---------------------------------------------------------------------------- resume
    def _resume(self) -> tuple[int, int]:
        trials = self.storage.get_all_trials(self.study_id, deepcopy=False)
        stale = [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        for t in stale:
            self.storage.set_trial_system_attr(
                t._trial_id, FAIL_REASON, "the run was interrupted while this trial was running"
            )
            self.storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        if stale:
            trials = self.storage.get_all_trials(self.study_id, deepcopy=False)
        self.study.add_trials(trials)
        for t in trials:
            self._ids[t.number] = t._trial_id
        for t in stale:  # asked again, with the same parameters
            self.study.enqueue_trial(t.params, skip_if_exists=False)
        return len(trials) - len(stale), len(stale)

    # ---------------------------------------------------------------------------- events
    def started(self, trial: optuna.Trial) -> None:
        self._started.append(self.study._storage.get_trial(trial._trial_id))

    def finished(self, number: int) -> None:
        live = self.study._storage
        self._finished.append(live.get_trial(live.get_trial_id_from_study_id_trial_number(
            self.study._study_id, number)))  # fmt: skip

    def flush(self) -> None:
        """Write every start and end since the last flush, in one transaction for SQL."""
        if not self._started and not self._finished:
            return
        if isinstance(self.storage, RDBStorage):
            self._flush_sql()
        else:
            self._flush_api()
        self._started, self._finished = [], []

    def _flush_api(self) -> None:
        s = self.storage
        for t in self._started:
            running = FrozenTrial(
                number=t.number, state=TrialState.RUNNING, value=None,
                datetime_start=t.datetime_start, datetime_complete=None, params=t.params,
                distributions=t.distributions, user_attrs={}, system_attrs={},
                intermediate_values={}, trial_id=0,
            )  # fmt: skip
            self._ids[t.number] = s.create_new_trial(self.study_id, template_trial=running)
        for t in self._finished:
            tid = self._ids[t.number]
            for step, v in t.intermediate_values.items():
                s.set_trial_intermediate_value(tid, step, v)
            for key, v in t.user_attrs.items():
                s.set_trial_user_attr(tid, key, v)
            for key, v in t.system_attrs.items():
                s.set_trial_system_attr(tid, key, v)
            s.set_trial_state_values(tid, t.state, t.values)

    def _flush_sql(self) -> None:
        from optuna.storages._rdb import models as m

        assert isinstance(self.storage, RDBStorage)
        session = self.storage.scoped_session()
        try:
            if self._started:
                self._insert_started(session, m)
            if self._finished:
                self._write_finished(session, m)
            session.commit()
        except Exception:
            session.rollback()
            raise
        finally:
            session.close()

    def _insert_started(self, session: Any, m: Any) -> None:
        """The new trials (RUNNING, with their parameters): one INSERT into trials, one SELECT
        of their ids, one INSERT into trial_params."""
        started = self._started
        session.execute(sqlalchemy.insert(m.TrialModel), [
            {"number": t.number, "study_id": self.study_id, "state": TrialState.RUNNING,
             "_datetime_start_utc": _utc(t.datetime_start)}
            for t in started
        ])  # fmt: skip
        # numbers only grow, and this mirror is the study's only writer: every trial of this
        # study numbered from the smallest new one on is new
        first = min(t.number for t in started)
        rows = session.execute(
            sqlalchemy.select(m.TrialModel.number, m.TrialModel.trial_id).where(
                m.TrialModel.study_id == self.study_id, m.TrialModel.number >= first
            )
        )
        self._ids.update({number: trial_id for number, trial_id in rows})
        params = [
            {"trial_id": self._ids[t.number], "param_name": name,
             "distribution_json": distribution_to_json(d),
             "param_value": d.to_internal_repr(t.params[name])}
            for t in started for name, d in t.distributions.items()
        ]  # fmt: skip
        if params:
            session.execute(sqlalchemy.insert(m.TrialParamModel), params)

    def _write_finished(self, session: Any, m: Any) -> None:
        """The ended trials: one UPDATE of their state and end time, and one INSERT per table
        of values, intermediate values, user and system attributes."""
        now = dt.datetime.now()
        ended, values, curves, user, system = [], [], [], [], []
        for t in self._finished:
            tid = self._ids[t.number]
            ended.append({"trial_id": tid, "state": t.state,
                          "_datetime_complete_utc": _utc(t.datetime_complete or now)})  # fmt: skip
            for objective, v in enumerate(t.values or []):
                value, kind = m.TrialValueModel.value_to_stored_repr(v)
                values.append({"trial_id": tid, "objective": objective, "value": value,
                               "value_type": kind})  # fmt: skip
            for step, v in t.intermediate_values.items():
                value, kind = m.TrialIntermediateValueModel.intermediate_value_to_stored_repr(v)
                curves.append({"trial_id": tid, "step": step, "intermediate_value": value,
                               "intermediate_value_type": kind})  # fmt: skip
            user += [{"trial_id": tid, "key": key, "value_json": json.dumps(v)}
                     for key, v in t.user_attrs.items()]  # fmt: skip
            system += [{"trial_id": tid, "key": key, "value_json": json.dumps(v)}
                       for key, v in t.system_attrs.items()]  # fmt: skip
        session.execute(sqlalchemy.update(m.TrialModel), ended)
        for model, rows in ((m.TrialValueModel, values), (m.TrialIntermediateValueModel, curves),
                            (m.TrialUserAttributeModel, user),
                            (m.TrialSystemAttributeModel, system)):  # fmt: skip
            if rows:
                session.execute(sqlalchemy.insert(model), rows)
