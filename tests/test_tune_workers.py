"""`optimkit tune --workers N` and `--ray`: several population tuners on one study, with real
processes, a real PostgreSQL server (a throwaway cluster, as in test_tune_postgres) and a real
local Ray instance (ray.init(num_cpus=2)); no mocks.

Every run asks for --trials N, the study's total: the study ends with exactly N finished trials
(unique contiguous numbers, each slot filled once), however the workers share it and whichever
of them is killed (kill -9 of a worker process, ray.kill of an actor) or however the database
comes and goes (PostgreSQL restarted mid-run); a database that stays away stops the run with
one line and keeps every trial stored before."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend
from test_tune_postgres import BIN

from optimkit.cli.options import TuneOptions, load_options
from optimkit.cli.tune import run_tune
from optimkit.tune.storage import SLOT_KEY, WORKER_PREFIX
from optimkit.tune.workers import Scale

optuna.logging.set_verbosity(optuna.logging.WARNING)
TRIALS, POPULATION = 16, 4
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
NEEDS_PG = pytest.mark.skipif(not BIN, reason="PostgreSQL server not installed (make setup)")
SLOW = pytest.mark.slow


def _flags(spec: str | None, name: str, out: Path, long: bool = False) -> list[str]:
    """A study of TRIALS small trials; `long`: trials of about a second (digits, two at a
    time), so that a kill or a restart lands while both workers are training."""
    data = ["--data", "digits", "--hidden", "32", "--batch-size", "64", "--epochs", "10",
            "--population", "2"] if long else [
            "--data", "iris", "--hidden", "8", "--batch-size", "16", "--epochs", "3",
            "--population", str(POPULATION)]  # fmt: skip
    flags = [*data, "--model", "mlp", "--trials", str(TRIALS), "--sampler", "random",
             "--threads", "1", "--study-name", name, "--out", str(out)]  # fmt: skip
    return flags + (["--storage", spec] if spec else [])


def _options(spec: str | None, name: str, out: Path, long: bool = False) -> TuneOptions:
    args = _flags(spec, name, out, long)
    flags = {a[2:].replace("-", "_"): v for a, v in zip(args[::2], args[1::2], strict=True)}
    return load_options(None, flags, TuneOptions)


def _storage(spec: str) -> optuna.storages.BaseStorage:
    if spec.startswith("journal:"):
        return optuna.storages.JournalStorage(JournalFileBackend(spec.removeprefix("journal:")))
    return optuna.storages.RDBStorage(spec)


def _trials(spec: str, name: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=name, storage=_storage(spec)).trials
    except Exception:  # not created yet, or the server is restarting
        return []


def _check(spec: str, name: str, summary: dict | None = None) -> list[optuna.trial.FrozenTrial]:
    """Exactly TRIALS finished trials, unique contiguous numbers, each slot filled once, none
    failed; the driver's results describe the study's best trial."""
    trials = _trials(spec, name)
    assert [t.number for t in trials] == list(range(len(trials)))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len(trials) == TRIALS
    slots = [t.system_attrs.get(SLOT_KEY) for t in trials]
    assert None not in slots and len(set(slots)) == TRIALS  # none counted twice
    if summary is not None:
        best = max(float(t.value or 0) for t in trials)
        assert summary["best_value"] == best
        assert summary["trials"] == {"complete": TRIALS}
    return trials


def _wait(spec: str, name: str, n: int, done: threading.Event | None = None) -> None:
    deadline = time.monotonic() + 240
    while len(_trials(spec, name)) < n:
        assert time.monotonic() < deadline, "the study did not fill"
        assert done is None or not done.is_set(), "the run ended early"
        time.sleep(0.1)


def _in_thread(options: TuneOptions, scale: Scale, on_start=None):
    """run_tune in a thread (the driver); the test thread acts meanwhile."""
    box: dict = {}
    done = threading.Event()

    def go() -> None:
        try:
            box["summary"] = run_tune(options, show_progress=False, scale=scale,
                                      threads_given=True, on_start=on_start)  # fmt: skip
        except BaseException as e:
            box["error"] = e
        finally:
            done.set()

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread, box, done


# ------------------------------------------------------------------------------------ servers
def _as_server_user(*cmd: str) -> None:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*prefix, *cmd], check=True, capture_output=True, timeout=120)


class Postgres:
    """A throwaway PostgreSQL cluster that tests can restart, stop and start."""

    def __init__(self) -> None:
        self.bin = BIN[-1]
        self.root = tempfile.mkdtemp(prefix="optimkit-pgw-")
        self.data = os.path.join(self.root, "data")
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        _as_server_user(f"{self.bin}/initdb", "-D", self.data, "-A", "trust", "-U", "postgres")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def ctl(self, *args: str) -> None:
        _as_server_user(f"{self.bin}/pg_ctl", "-D", self.data, "-w", "-l",
                        os.path.join(self.root, "log"), "-o",
                        f"-p {self.port} -k {self.root} -h 127.0.0.1", *args)  # fmt: skip


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    if not BIN:
        pytest.skip("PostgreSQL server not installed (make setup)")
    server = Postgres()
    server.ctl("start")
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.ctl("-m", "immediate", "stop")
        shutil.rmtree(server.root, ignore_errors=True)


def _name(tag: str) -> str:
    return f"{tag}-{random.getrandbits(32):x}"


# ------------------------------------------------------------------------------------ workers
def _cli(spec: str | None, name: str, out: Path, workers: int, *extra: str):
    cmd = [str(Path(sys.executable).parent / "optimkit"), "tune", *_flags(spec, name, out),
           "--workers", str(workers), "--json", *extra]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)


@pytest.mark.parametrize("workers", [2, pytest.param(4, marks=SLOW)])
def test_workers_share_a_journal_study(tmp_path, workers):
    """The default storage (OUT/study.journal): N `optimkit worker` processes, one study."""
    name = _name("journal")
    done = _cli(None, name, tmp_path / "out", workers)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    spec = f"journal:{tmp_path / 'out' / 'study.journal'}"
    _check(spec, name, summary)
    lines = summary["workers"]
    assert [w["index"] for w in lines] == list(range(workers))
    assert all(w["exit"] == 0 and w["threads"] == 1 and w["cpu_seconds"] > 0 for w in lines)
    assert len({w["pid"] for w in lines}) == workers  # separate processes
    assert sum(w["asked_trials"] for w in lines) == TRIALS == summary["asked_trials"]
    # the driver wrote the results and the best model, once; workers wrote no results
    assert json.loads((tmp_path / "out" / "results.json").read_text())["study"] == name
    assert (tmp_path / "out" / "model").is_dir()
    # every worker closed its claim
    storage = _storage(spec)
    attrs = storage.get_study_system_attrs(storage.get_study_id_from_name(name))
    claims = [v for k, v in attrs.items() if k.startswith(WORKER_PREFIX)]
    assert len(claims) == workers and all(c["done"] for c in claims)


@NEEDS_PG
@pytest.mark.parametrize("workers", [2, pytest.param(4, marks=SLOW)])
def test_workers_share_a_postgres_study(tmp_path, pg, workers):
    name = _name("pg")
    done = _cli(pg.url, name, tmp_path / "out", workers)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    _check(pg.url, name, summary)
    assert len(summary["workers"]) == workers
    assert "database is locked" not in done.stderr


def test_sqlite_with_several_workers_is_refused(tmp_path):
    db = tmp_path / "s.db"
    done = _cli(f"sqlite:///{db}", _name("sqlite"), tmp_path / "out", 2)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "SQLite" in line and "journal" in line and "PostgreSQL" in line
    assert not db.exists()


def test_worker_command_needs_a_study_started_by_a_driver(tmp_path):
    spec = f"journal:{tmp_path / 'j.journal'}"
    optuna.create_study(study_name="plain", storage=_storage(spec))
    cmd = [str(Path(sys.executable).parent / "optimkit"), "worker", "--storage", spec,
           "--study-name", "plain"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "no published options" in line


# ------------------------------------------------------------------------------------ faults
@pytest.mark.parametrize("moment", [pytest.param("start", marks=SLOW), "middle",
                                    pytest.param("end", marks=SLOW)])  # fmt: skip
def test_kill_9_of_a_worker(tmp_path, moment):
    """kill -9 of one of two worker processes (before any trial is stored, midway, near the
    end): the other re-runs its trials; exactly TRIALS, nothing lost or counted twice."""
    name = _name(f"kill-{moment}")
    spec = f"journal:{tmp_path / 'study.journal'}"
    procs: list[subprocess.Popen] = []
    thread, box, done = _in_thread(_options(spec, name, tmp_path / "out", long=True),
                                   Scale(workers=2), on_start=procs.extend)  # fmt: skip
    _wait_claims(spec, name, 2, done)
    if moment != "start":
        _wait(spec, name, {"middle": 4, "end": TRIALS - 3}[moment], done)
    victim = random.choice(procs)
    before = {t.number: t for t in _trials(spec, name)}
    os.kill(victim.pid, signal.SIGKILL)
    thread.join(timeout=600)
    assert "error" not in box, box.get("error")
    summary = box["summary"]
    after = _check(spec, name, summary)
    for n, t in before.items():  # nothing completed is lost or changed
        assert after[n].params == t.params and after[n].values == t.values
    killed = [w for w in summary["workers"] if w["exit"] != 0]
    assert len(killed) == 1 and killed[0]["exit"] == -signal.SIGKILL


def _wait_claims(spec: str, name: str, n: int, done: threading.Event) -> None:
    """Until `n` workers have claimed trials."""
    deadline = time.monotonic() + 240
    while True:
        assert time.monotonic() < deadline and not done.is_set(), "the run ended early"
        try:
            storage = _storage(spec)
            attrs = storage.get_study_system_attrs(storage.get_study_id_from_name(name))
        except Exception:
            attrs = {}
        claims = [v for k, v in attrs.items() if k.startswith(WORKER_PREFIX)]
        if sum(1 for c in claims if c.get("running")) >= n:
            return
        time.sleep(0.05)


@NEEDS_PG
def test_postgres_restarted_mid_run(tmp_path, pg):
    """The server restarts (pg_ctl restart) while two workers write: they retry with backoff
    and the run completes with exactly TRIALS."""
    name = _name("restart")
    thread, box, done = _in_thread(_options(pg.url, name, tmp_path / "out", long=True),
                                   Scale(workers=2))  # fmt: skip
    _wait(pg.url, name, 3, done)
    pg.ctl("-m", "fast", "restart")
    thread.join(timeout=600)
    assert "error" not in box, box.get("error")
    _check(pg.url, name, box["summary"])
    assert all(w["exit"] == 0 for w in box["summary"]["workers"])


@NEEDS_PG
def test_postgres_that_stays_down_stops_the_run(tmp_path, pg, monkeypatch):
    """The server stops for good: the workers give up after their retry window with one line,
    the driver too; every trial stored before is kept."""
    monkeypatch.setenv("OPTIMKIT_STORAGE_RETRY_SECONDS", "3")
    name = _name("down")
    cmd = [str(Path(sys.executable).parent / "optimkit"), "tune", "--workers", "2", "--json",
           *_flags(pg.url, name, tmp_path / "out", long=True)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**ENV, "OPTIMKIT_STORAGE_RETRY_SECONDS": "3"})  # fmt: skip
    try:
        _wait(pg.url, name, 3, None)
        before = _trials(pg.url, name)
        pg.ctl("-m", "fast", "stop")
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        pg.ctl("start")
    assert proc.returncode == 2, stderr[-3000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr[-3000:]
    (line,) = lines
    assert line.startswith("error: ") and "unreachable" in line
    after = {t.number: t for t in _trials(pg.url, name)}
    for t in before:
        assert after[t.number].params == t.params and after[t.number].values == t.values
    assert len(after) < TRIALS


# ------------------------------------------------------------------------------------ Ray
@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="Ray not installed (pip install 'optimkit[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             namespace="optimkit")  # fmt: skip
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_actors_share_a_study(tmp_path, local_ray):
    name = _name("ray")
    spec = f"journal:{tmp_path / 'study.journal'}"
    thread, box, _ = _in_thread(_options(spec, name, tmp_path / "out"),
                                Scale(workers=2, ray=True))  # fmt: skip
    thread.join(timeout=600)
    assert "error" not in box, box.get("error")
    summary = box["summary"]
    _check(spec, name, summary)
    lines = summary["workers"]
    assert len(lines) == 2 and all(w["exit"] == 0 for w in lines)
    assert len({w["pid"] for w in lines}) == 2 and os.getpid() not in {w["pid"] for w in lines}


@SLOW
def test_ray_actor_killed_mid_run(tmp_path, local_ray):
    """ray.kill of one of two actors: the other takes over its trials."""
    name = _name("raykill")
    spec = f"journal:{tmp_path / 'study.journal'}"
    actors: list = []
    thread, box, done = _in_thread(_options(spec, name, tmp_path / "out", long=True),
                                   Scale(workers=2, ray=True), on_start=actors.extend)  # fmt: skip
    _wait(spec, name, 4, done)
    before = {t.number: t for t in _trials(spec, name)}
    local_ray.kill(actors[0], no_restart=True)
    thread.join(timeout=600)
    assert "error" not in box, box.get("error")
    after = _check(spec, name, box["summary"])
    for n, t in before.items():
        assert after[n].params == t.params and after[n].values == t.values
    lines = box["summary"]["workers"]
    assert lines[0]["exit"] == "killed" and lines[1]["exit"] == 0


def test_ray_missing_is_one_line(monkeypatch):
    """Without Ray, --ray says what to install (Ray hidden from the import system)."""
    from optimkit.tune.ray_workers import _ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ValueError, match=r"pip install 'optimkit\[ray\]'"):
        _ray()


def test_every_worker_killed_keeps_the_stored_trials(tmp_path):
    """Both workers of the default journal study killed: the driver stops with one line and
    the journal (created by this run) keeps every trial stored; the same command continues."""
    name = _name("allkilled")
    out = tmp_path / "out"
    flags = _flags(None, name, out, long=True)
    # trials four times longer than the other long studies: on a loaded machine the second
    # worker (importing torch) must start before the first has finished the study alone
    flags[flags.index("--epochs") + 1] = "40"
    cmd = [str(Path(sys.executable).parent / "optimkit"), "tune", "--workers", "2", "--json",
           *flags]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV)  # fmt: skip
    spec = f"journal:{out / 'study.journal'}"
    try:
        _wait(spec, name, 3, None)
        _wait_claims(spec, name, 2, threading.Event())
        storage = _storage(spec)
        attrs = storage.get_study_system_attrs(storage.get_study_id_from_name(name))
        pids = [v["pid"] for k, v in attrs.items() if k.startswith(WORKER_PREFIX)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        before = _trials(spec, name)
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, stderr[-3000:]
    (line,) = stderr.strip().splitlines()
    assert f"of {TRIALS} finished trials" in line and "killed by signal 9" in line
    after = {t.number: t for t in _trials(spec, name)}
    assert len(after) >= len(before) >= 3
    for t in before:
        assert after[t.number].params == t.params and after[t.number].values == t.values


# ------------------------------------------------------------------------------------ devices
def test_gpu_assignment_one_gpu_per_worker():
    from optimkit.tune.workers import gpu_assignment

    assert gpu_assignment(["0", "1", "2", "3"], 4) == ["0", "1", "2", "3"]
    assert gpu_assignment(["0", "1", "2", "3"], 2) == ["0", "1"]
    assert gpu_assignment(["0", "1"], 5) == ["0", "1", "0", "1", "0"]  # shared round-robin
    # the GPUs this process was given (a parent's CUDA_VISIBLE_DEVICES), not 0..G-1
    assert gpu_assignment(["5", "GPU-ab12"], 2) == ["5", "GPU-ab12"]
    # one GPU or none: the workers inherit this process's view (CPU runs unchanged)
    assert gpu_assignment(["0"], 3) == [None, None, None]
    assert gpu_assignment([], 2) == [None, None]
    with pytest.raises(ValueError, match="workers"):
        gpu_assignment(["0", "1"], 0)


def test_visible_gpus_and_worker_env():
    from optimkit.tune.workers import visible_gpus, worker_env

    assert visible_gpus({}, 3) == ["0", "1", "2"]
    assert visible_gpus({}, 0) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2, 5"}, 2) == ["2", "5"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, 0) == []
    env = worker_env({"A": "1", "CUDA_VISIBLE_DEVICES": "2,5"}, 3, "5")
    assert env == {"A": "1", "CUDA_VISIBLE_DEVICES": "5", "OMP_NUM_THREADS": "3",
                   "MKL_NUM_THREADS": "3"}  # fmt: skip
    cpu = worker_env({"A": "1"}, 1, None)
    assert cpu == {"A": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _node(node_id: str, cpus: float, gpus: float = 0) -> dict:
    resources = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
    return {"NodeID": node_id, "Alive": True, "Resources": resources}


def test_ray_plan_one_actor_per_gpu_or_node():
    from optimkit.tune.ray_workers import plan_actors

    gpu_nodes = [_node("a", 8, 2), _node("b", 8, 2)]
    plan = plan_actors(gpu_nodes, 16, None, "cuda", None)  # one per GPU, one GPU each
    assert (plan.count, plan.nodes, plan.num_gpus, plan.threads, plan.num_cpus) == \
        (4, None, 1, 4, 4.0)  # fmt: skip
    plan = plan_actors(gpu_nodes, 16, 2, "cuda", 1)  # --workers 2: still a GPU each
    assert (plan.count, plan.num_gpus, plan.threads) == (2, 1, 1)
    plan = plan_actors(gpu_nodes, 16, None, "cpu", None)  # a CPU study: one per node
    assert (plan.count, plan.nodes, plan.num_gpus, plan.threads) == (2, ["a", "b"], 0, 8)
    cpu_nodes = [_node("a", 2)]  # this machine, no GPU: as before
    plan = plan_actors(cpu_nodes, 2, None, "cuda", None)
    assert (plan.count, plan.nodes, plan.num_gpus, plan.threads) == (1, ["a"], 0, 2)
    plan = plan_actors(cpu_nodes, 2, 2, "cpu", 1)
    assert (plan.count, plan.nodes, plan.num_gpus, plan.threads, plan.num_cpus) == \
        (2, None, 0, 1, 1.0)  # fmt: skip
