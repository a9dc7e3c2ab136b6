"""Several real `optimkit tune` processes on one study: an SQLite file, a journal file and a real
PostgreSQL server (the throwaway cluster of test_tune_postgres), started together (the
schema- and study-creation races) and staggered (one joins a study another is filling), and a
kill -9 of one of them at a random point.

Each process asks for the same --trials N, the study's total: together they end with exactly N
trials (each claims its trials under the storage's lock before asking them), every trial each
process ran stored and visible to optuna.load_study, numbers unique and contiguous, and no
trial failed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend
from test_tune_postgres import BIN, postgres_url  # noqa: F401  (a fixture)

optuna.logging.set_verbosity(optuna.logging.WARNING)
OPTIMKIT = str(Path(sys.executable).parent / "optimkit")
TRIALS, POPULATION = 16, 4
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _spec(kind: str, tmp_path: Path, url: str | None = None) -> tuple[str, object]:
    """The --storage value and what optuna.load_study reads it with."""
    if kind == "sqlite":
        spec = f"sqlite:///{tmp_path / 'shared.db'}"
        return spec, spec
    if kind == "journal":
        path = tmp_path / "shared.journal"
        return f"journal:{path}", optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    assert url is not None
    return url, url


def _command(spec: str, name: str, out: Path, epochs: int = 3) -> list[str]:
    return [OPTIMKIT, "tune", "--data", "digits", "--model", "mlp", "--hidden", "32",
            "--trials", str(TRIALS), "--epochs", str(epochs), "--population", str(POPULATION),
            "--batch-size", "64", "--sampler", "random", "--threads", "1", "--storage", spec,
            "--study-name", name, "--out", str(out), "--json"]  # fmt: skip


def _start(spec: str, name: str, out: Path, epochs: int = 3) -> subprocess.Popen:
    return subprocess.Popen(_command(spec, name, out, epochs), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=ENV, text=True)  # fmt: skip


_opened: dict[str, optuna.storages.BaseStorage] = {}


def _trials(storage: object, name: str) -> list[optuna.trial.FrozenTrial]:
    if isinstance(storage, str):  # an RDB URL: one RDBStorage for all polls (cheap reads)
        if storage not in _opened:
            try:
                _opened[storage] = optuna.storages.RDBStorage(storage)
            except Exception:  # the processes are creating the schema just now
                return []
        storage = _opened[storage]
    try:
        return optuna.load_study(study_name=name, storage=storage).trials  # type: ignore[arg-type]
    except KeyError:  # not created yet
        return []


def _wait_for(storage: object, name: str, n: int, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + 120
    while len(_trials(storage, name)) < n:
        assert time.monotonic() < deadline, "the study did not fill"
        assert all(p.poll() is None for p in procs), "a process ended early"
        time.sleep(0.25)


def _finish(procs: list[subprocess.Popen]) -> list[dict]:
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr[-2000:]
        outs.append(json.loads(stdout))
    return outs


def _check(trials: list[optuna.trial.FrozenTrial], outs: list[dict]) -> None:
    assert [t.number for t in trials] == list(range(len(trials)))  # unique, contiguous
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)  # none failed
    # every trial each process ran is in the study, once
    assert sum(o["asked_trials"] for o in outs) == len(trials)
    assert len(trials) == TRIALS  # exactly the budget: no process overshoots it
    # each describes the study's best when it ended: the last to end, the final one
    by_number = {t.number: t for t in trials}
    assert all(by_number[o["best_trial"]].value == o["best_value"] for o in outs)
    assert max(o["best_value"] for o in outs) == max(float(t.value or 0) for t in trials)


def _share(kind: str, processes: int, start: str, tmp_path: Path, url: str | None) -> None:
    spec, storage = _spec(kind, tmp_path, url)
    name = f"{kind}-{processes}-{start}-{random.getrandbits(32):x}"
    procs: list[subprocess.Popen] = []
    for i in range(processes):
        if start == "staggered" and i:  # the next one joins once the study has trials
            _wait_for(storage, name, 2 * i, procs)
        procs.append(_start(spec, name, tmp_path / f"out{i}"))
    outs = _finish(procs)
    _check(_trials(storage, name), outs)


SLOW = pytest.mark.slow  # four processes of ~4 s of CPU each on two cores


@pytest.mark.parametrize(
    ("kind", "processes", "start"),
    [("journal", 4, "together"), ("journal", 2, "staggered"), ("sqlite", 2, "together"),
     pytest.param("sqlite", 4, "staggered", marks=SLOW)],
)  # fmt: skip
def test_processes_share_a_study(tmp_path, kind, processes, start):
    _share(kind, processes, start, tmp_path, None)


@pytest.mark.skipif(not BIN, reason="PostgreSQL server not installed (make setup)")
@pytest.mark.parametrize(("processes", "start"),
                         [(2, "together"), pytest.param(4, "together", marks=SLOW)])  # fmt: skip
def test_processes_share_a_study_on_postgres(tmp_path, postgres_url, processes, start):  # noqa: F811
    _share("postgres", processes, start, tmp_path, postgres_url)


def _kill_one(kind: str, tmp_path: Path, url: str | None) -> None:
    """Two processes; one is killed with SIGKILL at a random point of its run (after some
    trials are stored); the other finishes the study: every trial stored before the kill is
    there unchanged, and the killed one's running trials are asked again."""
    spec, storage = _spec(kind, tmp_path, url)
    name = f"kill-{kind}-{random.getrandbits(32):x}"
    procs = [_start(spec, name, tmp_path / f"out{i}", epochs=6) for i in range(2)]
    _wait_for(storage, name, 4, procs)
    time.sleep(random.uniform(0.0, 0.5))
    victim, survivor = random.sample(procs, 2)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    before = {t.number: t for t in _trials(storage, name)}
    (out,) = _finish([survivor])
    after = _trials(storage, name)
    assert [t.number for t in after] == list(range(len(after)))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in after)
    for n, t in before.items():  # nothing completed is lost or changed
        assert after[n].params == t.params and after[n].values == t.values
        assert after[n].intermediate_values == t.intermediate_values
    assert len(after) == TRIALS  # the survivor ran the killed one's share too, no more
    assert out["best_value"] == max(float(t.value or 0) for t in after)


def test_kill_9_of_one_process_loses_nothing(tmp_path):
    _kill_one("journal", tmp_path, None)


@pytest.mark.skipif(not BIN, reason="PostgreSQL server not installed (make setup)")
def test_kill_9_of_one_process_on_postgres_loses_nothing(tmp_path, postgres_url):  # noqa: F811
    _kill_one("postgres", tmp_path, postgres_url)
