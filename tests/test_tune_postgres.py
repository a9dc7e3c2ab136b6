"""Studies on a real PostgreSQL server: a throwaway cluster (Debian's `postgresql`, installed by
set-up) started in a temporary folder, reached through an SQLAlchemy URL as a user would."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator

import optuna
import pytest
from typer.testing import CliRunner

from optimkit.cli import app
from optimkit.data import load_dataset
from optimkit.train import TrainConfig
from optimkit.tune import SearchSpace, StudyMirror, Tuner, make_pruner, make_sampler, open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)
BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
pytestmark = pytest.mark.skipif(not BIN, reason="PostgreSQL server not installed (make setup)")


def _run_as_server_user(*cmd: str) -> None:
    """PostgreSQL refuses to run as root: as root, run the server's tools as `postgres`."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*prefix, *cmd], check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    bin_dir = BIN[-1]
    root = tempfile.mkdtemp(prefix="optimkit-pg-")
    data = os.path.join(root, "data")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _run_as_server_user(f"{bin_dir}/initdb", "-D", data, "-A", "trust", "-U", "postgres")
    _run_as_server_user(f"{bin_dir}/pg_ctl", "-D", data, "-w", "-l", os.path.join(root, "log"),
                        "-o", f"-p {port} -k {root} -h 127.0.0.1", "start")  # fmt: skip
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        _run_as_server_user(f"{bin_dir}/pg_ctl", "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _tune(url: str, trials: int, out=None):
    ds = load_dataset("iris", seed=0)
    space = SearchSpace.from_config(None, "adam")
    mirror = StudyMirror(open_storage(url, out), "pg", ["maximize"],
                         make_sampler("random", space, 0), make_pruner("none", 3))  # fmt: skip
    base = TrainConfig(model="mlp", model_options={"hidden": (8,)}, epochs=3, batch_size=16)
    try:
        return Tuner(ds, base, space, mirror, trials=trials, population=3).run()
    finally:
        mirror.close()


def _record(t: optuna.trial.FrozenTrial) -> tuple:
    """What a trial stores, less its timings (wall-clock seconds and dates)."""
    attrs = {k: v for k, v in t.user_attrs.items() if k != "seconds"}
    return t.number, t.state, t.params, t.values, t.intermediate_values, attrs


def test_study_on_postgres_round_trips_and_resumes(postgres_url, tmp_path):
    first = _tune(postgres_url, trials=5)
    study = optuna.load_study(study_name="pg", storage=postgres_url)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 5 == len(study.trials)
    assert first.best_number == study.best_trial.number
    # the same seeded search on a journal file (Optuna's other storage) stores the same
    # records: params, values, the 3-epoch curve and every attribute
    journal = f"journal:{tmp_path / 'study.journal'}"
    _tune(journal, trials=5, out=tmp_path)
    oracle = optuna.load_study(study_name="pg", storage=open_storage(journal, tmp_path))
    records = [_record(t) for t in study.trials]
    assert records == [_record(t) for t in oracle.trials]
    for t in complete:
        assert sorted(t.intermediate_values) == [1, 2, 3]  # epochs
        assert max(t.intermediate_values.values()) == t.value
        assert t.user_attrs["status"] == "finished"
    # the same study again with a larger budget continues it: the first five are untouched
    _tune(postgres_url, trials=8)
    again = optuna.load_study(study_name="pg", storage=postgres_url)
    assert [t.number for t in again.trials] == list(range(8))
    assert [_record(t) for t in again.trials[:5]] == records
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in again.trials)


def test_tune_cli_on_postgres(postgres_url, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["tune", "--data", "iris", "--model", "softmax", "--trials", "3",
                                 "--epochs", "2", "--storage", postgres_url, "--study-name",
                                 "cli", "--out", str(tmp_path / "o"), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    study = optuna.load_study(study_name="cli", storage=postgres_url)
    assert len(study.trials) == 3
    assert study.best_trial.number == payload["best_trial"]
