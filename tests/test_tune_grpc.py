"""Workers behind Optuna's gRPC storage proxy: a real proxy process
(`optuna.storages.run_grpc_proxy_server`, started by `GrpcProxy`) in front of a real database
(a throwaway PostgreSQL server, as in test_tune_workers; SQLite for the lock's own tests),
reached with `optuna.storages.GrpcStorageProxy`; no mocks.

The proxy has no lock of its own, so the workers' budget claims are serialized by
`_TrialLock` (a ticket lock of trials in a companion study). Its oracle is a read-modify-write
counter: every increment under the lock is kept (without it, the same increments are lost); a
holder killed with kill -9 does not block the others. End to end, 2 workers through the proxy
end with exactly N finished trials, none counted twice, also when one is killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState
from test_tune_workers import (
    ENV,
    NEEDS_PG,
    TRIALS,
    _check,
    _flags,
    _in_thread,
    _name,
    _options,
    _trials,
    _wait,
    pg,  # noqa: F401 (the fixture)
)

import optimkit.tune.storage
from optimkit.tune.storage import LOCK_PREFIX, GrpcProxy, _TrialLock, open_storage
from optimkit.tune.workers import Scale

STORAGE_PY = optimkit.tune.storage.__file__

pytest.importorskip("grpc", reason="grpcio not installed (pip install 'optimkit[ray]')")
optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    """A proxy in front of an SQLite file (one process on it: the proxy)."""
    db = tmp_path_factory.mktemp("grpc") / "lock.db"
    with GrpcProxy(f"sqlite:///{db}") as running:
        yield running


def _counter(spec: str, name: str) -> tuple[optuna.storages.BaseStorage, int]:
    storage = open_storage(spec, None)
    try:
        return storage, storage.get_study_id_from_name(name)
    except KeyError:
        study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], name)
        storage.set_study_system_attr(study_id, "n", 0)
        return storage, study_id


def _increment(spec: str, name: str, times: int, locked: bool) -> None:
    """Read the counter, wait a little, write it plus one: a lost update without a lock."""
    storage, study_id = _counter(spec, name)
    lock = _TrialLock(storage, name, grace_period=600)
    for _ in range(times):
        if locked:
            lock.__enter__()
        try:
            n = storage.get_study_system_attrs(study_id)["n"]
            time.sleep(0.002)
            storage.set_study_system_attr(study_id, "n", n + 1)
        finally:
            if locked:
                lock.__exit__(None, None, None)


@pytest.mark.parametrize("locked", [True, False])
def test_trial_lock_keeps_every_increment(proxy, locked):
    """3 clients x 12 read-modify-writes through the proxy: all 36 kept under the lock; the
    same without it loses some (the test can tell)."""
    name = f"counter-{locked}"
    _counter(proxy.spec, name)
    threads = [threading.Thread(target=_increment, args=(proxy.spec, name, 12, locked))
               for _ in range(3)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    storage, study_id = _counter(proxy.spec, name)
    n = storage.get_study_system_attrs(study_id)["n"]
    if locked:
        assert n == 36
        lock_trials = storage.get_all_trials(storage.get_study_id_from_name(LOCK_PREFIX + name))
        assert len(lock_trials) == 36 and all(t.state == TrialState.COMPLETE for t in lock_trials)
    else:
        assert n < 36


def _template(owner: str, host: str, pid: int) -> FrozenTrial:
    return FrozenTrial(number=0, state=TrialState.RUNNING, value=None, datetime_start=None,
                       datetime_complete=None, params={}, distributions={}, user_attrs={},
                       system_attrs={"owner": owner, "host": host, "pid": pid},
                       intermediate_values={}, trial_id=0)  # fmt: skip


def test_a_holder_killed_with_kill_9_is_broken(proxy):
    """A process takes the lock and is killed while it holds it: the next one gets the lock
    (its process is gone) well within the grace period, and the dead holder's trial is FAIL."""
    name = "killed-holder"
    # storage.py loaded as a file: without the optimkit package (whose import loads torch)
    code = ("import importlib.util as u, sys, time; "
            f"spec = u.spec_from_file_location('storage', {STORAGE_PY!r}); "
            "m = u.module_from_spec(spec); spec.loader.exec_module(m); "
            f"s = m.open_storage({proxy.spec!r}, None); l = m._TrialLock(s, {name!r}, 600); "
            "l.__enter__(); print('held', flush=True); time.sleep(600)")  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env=ENV)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
    storage = open_storage(proxy.spec, None)
    lock = _TrialLock(storage, name, grace_period=600)
    tic = time.monotonic()
    with lock:
        assert time.monotonic() - tic < 60
    trials = storage.get_all_trials(storage.get_study_id_from_name(LOCK_PREFIX + name))
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[0].system_attrs["pid"] == holder.pid


def test_a_silent_holder_elsewhere_is_broken_after_the_grace_period(proxy):
    """A holder on another machine (its process cannot be checked) that holds longer than the
    grace period is taken for dead; a lost reply of this lock's own earlier try (a RUNNING
    trial with its owner) is finished, not waited for."""
    name = "silent-holder"
    storage = open_storage(proxy.spec, None)
    lock = _TrialLock(storage, name, grace_period=0.5)
    lock_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], LOCK_PREFIX + name)
    elsewhere = storage.create_new_trial(lock_id, _template("x:1:y", "elsewhere", 1))
    orphan = storage.create_new_trial(lock_id, _template(lock.owner, "h", os.getpid()))
    tic = time.monotonic()
    with lock:
        waited = time.monotonic() - tic
    assert 0.5 <= waited < 30
    states = {t._trial_id: t.state for t in storage.get_all_trials(lock_id)}
    assert states[elsewhere] == TrialState.FAIL and states[orphan] == TrialState.COMPLETE
    assert all(s.is_finished() for s in states.values())


def test_proxy_that_cannot_open_its_database_is_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"gRPC proxy stopped at start \(cannot open"):
        GrpcProxy("postgresql://nobody@127.0.0.1:1/none", timeout=60)


@pytest.mark.parametrize("storage", [None, "journal:{tmp}/s.journal", "grpc://127.0.0.1:1"])
def test_grpc_proxy_needs_a_database_url(tmp_path, storage):
    from typer.testing import CliRunner

    from optimkit.cli import app

    spec = None if storage is None else storage.format(tmp=tmp_path)
    done = CliRunner().invoke(app, ["tune", "--workers", "2", "--grpc-proxy", "--json",
                                    *_flags(spec, "x", tmp_path / "o")])  # fmt: skip
    assert done.exit_code == 2
    (line,) = done.stderr.strip().splitlines()
    assert "--grpc-proxy" in line and "postgresql://" in line
    assert not (tmp_path / "o").exists() and not (tmp_path / "s.journal").exists()


# ------------------------------------------------------------------------------------ workers
def _lock_trials(url: str, name: str) -> list[FrozenTrial]:
    storage = optuna.storages.RDBStorage(url)
    return storage.get_all_trials(storage.get_study_id_from_name(LOCK_PREFIX + name))


@NEEDS_PG
def test_two_workers_through_the_proxy(tmp_path, pg):  # noqa: F811
    """optimkit tune --workers 2 --storage postgresql://... --grpc-proxy: exactly TRIALS, and
    the workers' claims went through the trial lock (so through the proxy: on PostgreSQL
    directly they would use an advisory lock)."""
    name = _name("grpc")
    cmd = [str(Path(sys.executable).parent / "optimkit"), "tune", *_flags(pg.url, name,
           tmp_path / "out"), "--workers", "2", "--grpc-proxy", "--json"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    _check(pg.url, name, summary)
    assert [w["exit"] for w in summary["workers"]] == [0, 0]
    locks = _lock_trials(pg.url, name)
    assert locks and all(t.state == TrialState.COMPLETE for t in locks)
    assert len({t.system_attrs["pid"] for t in locks}) == 2  # both workers claimed


@NEEDS_PG
@pytest.mark.slow
def test_worker_killed_behind_the_proxy(tmp_path, pg):  # noqa: F811
    """kill -9 of one of two workers midway: the other takes over; exactly TRIALS."""
    name = _name("grpckill")
    procs: list[subprocess.Popen] = []
    thread, box, done = _in_thread(_options(pg.url, name, tmp_path / "out", long=True),
                                   Scale(workers=2, grpc_proxy=True),
                                   on_start=procs.extend)  # fmt: skip
    _wait(pg.url, name, 4, done)
    before = {t.number: t for t in _trials(pg.url, name)}
    os.kill(procs[0].pid, signal.SIGKILL)
    thread.join(timeout=600)
    assert "error" not in box, box.get("error")
    after = _check(pg.url, name, box["summary"])
    for n, t in before.items():
        assert after[n].params == t.params and after[n].values == t.values
    lines = box["summary"]["workers"]
    assert lines[0]["exit"] == -signal.SIGKILL and lines[1]["exit"] == 0
    assert len(after) == TRIALS


def test_grpc_proxy_without_grpcio_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "grpc", None)  # grpcio hidden from the import system
    with pytest.raises(ValueError, match=r"pip install 'optimkit\[ray\]'"):
        GrpcProxy("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(ValueError, match=r"pip install 'optimkit\[ray\]'"):
        open_storage("grpc://127.0.0.1:1", None)
