"""optuna-dashboard (a real server process) reads a study written by `optimkit tune` as it is:
the study, its trials, learning curves and attributes, through the dashboard's own JSON API."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from optimkit.cli import app

DASHBOARD = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
pytestmark = pytest.mark.skipif(DASHBOARD is None, reason="optuna-dashboard not installed")


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_optuna_dashboard_serves_our_study(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["tune", "--data", "iris", "--model", "softmax", "--trials",
                                      "4", "--epochs", "3", "--population", "2", "--study-name",
                                      "dash", "--out", str(out), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    url = str(out / "study.journal")
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(url))
    expected = optuna.load_study(study_name="dash", storage=journal).trials
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([DASHBOARD, url, "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                studies = _get(f"{base}/api/studies")["study_summaries"]
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, "optuna-dashboard exited"
                assert time.monotonic() < deadline, "optuna-dashboard did not start"
                time.sleep(0.2)
        (study,) = [s for s in studies if s["study_name"] == "dash"]
        detail = _get(f"{base}/api/studies/{study['study_id']}")
        trials = sorted(detail["trials"], key=lambda t: t["number"])
        assert [t["number"] for t in trials] == [t.number for t in expected] == [0, 1, 2, 3]
        for served, mine in zip(trials, expected, strict=True):
            assert served["state"] == "Complete"
            assert served["values"] == mine.values
            curve = {v["step"]: v["value"] for v in served["intermediate_values"]}
            assert curve == mine.intermediate_values and sorted(curve) == [1, 2, 3]
            attrs = {a["key"]: a["value"] for a in served["user_attrs"]}
            assert {"status", "epochs"} <= set(attrs)
            assert {p["name"] for p in served["params"]} == set(mine.params)
        assert detail["best_trials"][0]["number"] == max(expected, key=lambda t: t.values[0]).number
    finally:
        server.terminate()
        server.wait(timeout=10)
