"""`optimkit pbt`: outputs (results.json, pbt.csv, model, the lineage as an Optuna study),
one-line usage errors, a real kill -9 and --resume ending as an uninterrupted run, and the
replay of a run's best member."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import optuna
import pandas as pd
import pytest
import torch
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from typer.testing import CliRunner

from optimkit.cli import app
from optimkit.train.export import load_model
from optimkit.tune.pbt import replay_run

runner = CliRunner()
BASE = ["pbt", "--data", "iris", "--model", "mlp", "--hidden", "4", "--epochs", "6",
        "--batch-size", "16", "--population", "4", "--perturbation-interval", "1",
        "--dtype", "float64"]  # fmt: skip


def journal(out) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(out / "study.journal")))


def one_line_error(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.mark.parametrize("explore", ["random", "pb2"])
def test_pbt_writes_results_csv_model_and_a_study(tmp_path, explore):
    out = tmp_path / "run"
    result = runner.invoke(app, [*BASE, "--explore", explore, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert json.loads((out / "results.json").read_text()) == summary
    frame = pd.read_csv(out / "pbt.csv")
    assert len(frame) == 4 + summary["perturbations"] and summary["perturbations"] == 5
    assert {"member", "segment", "start_epoch", "end_epoch", "parent", "lr",
            "val_accuracy"} <= set(frame.columns)  # fmt: skip
    model = load_model(out / "model")
    assert model.predict(torch.zeros(2, 4).numpy()).shape == (2,)
    study = optuna.load_study(study_name=summary["study"], storage=journal(out))
    assert len(study.trials) == 4
    for trial in study.trials:
        k = trial.user_attrs["member"]
        assert len(trial.user_attrs["segments"]) == int((frame.member == k).sum())
        assert trial.value == pytest.approx(summary["scores"][k])
        assert sorted(trial.intermediate_values) == list(range(1, 7))
    assert study.best_value == pytest.approx(summary["best_value"])
    page = (out / "report" / "pbt.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "Lineage of the best member" in page
    for name in ("schedules.png", "lineage.png", "score.png"):
        assert (out / "report" / name).read_bytes()[:4] == b"\x89PNG"
    assert len(summary["curves"]) == 4 and all(len(c) == 6 for c in summary["curves"])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--explore", "bayes"], "explore"),
        (["--perturbation-factors", "1.2,-1"], "perturbation_factors: expected positive"),
        (["--quantile-fraction", "0.7"], "quantile_fraction"),
        (["--population", "1"], "population"),
        (["--resume"], "resume: no checkpoint"),
        (["--optimizer", "nope"], "optimizer"),
    ],
)
def test_usage_errors_are_one_line(tmp_path, args, needle):
    line = one_line_error([*BASE, "--out", str(tmp_path / "run"), *args])
    assert needle in line
    assert not (tmp_path / "run" / "results.json").exists()


def test_an_existing_out_needs_overwrite(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert "--overwrite" in one_line_error([*BASE, "--out", str(out)])
    assert (out / "keep.txt").read_text() == "precious"


KILLED = ["pbt", "--data", "digits", "--model", "mlp", "--hidden", "16", "--epochs", "30",
          "--batch-size", "16", "--population", "4", "--perturbation-interval", "2",
          "--dtype", "float64", "--seed", "3"]  # fmt: skip


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """A real `optimkit pbt` process killed with SIGKILL after a checkpoint, at a moment that
    differs from run to run: its output folder."""
    out = tmp_path_factory.mktemp("killed") / "run"
    ckpt = out / "pbt.checkpoint.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "optimkit.cli", *KILLED, "--out", str(out),
           "--checkpoint-every", "1", "--json"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 180
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(0.2 * (os.getpid() % 5))  # a moment that differs from run to run
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not (out / "results.json").exists(), "killed too late"
    state = torch.load(ckpt, weights_only=False)
    assert 1 <= state["trainer"]["epoch"] < 30
    return out


def test_killed_pbt_resumes_and_ends_as_an_uninterrupted_run(killed, tmp_path):
    """--resume of the killed run (with harmless options that differ: threads, checkpoint
    interval) ends with the same lineage, scores and model as a run never killed."""
    out = tmp_path / "run"
    shutil.copytree(killed, out)
    ckpt = out / "pbt.checkpoint.pt"
    resumed = runner.invoke(app, [*KILLED, "--out", str(out), "--checkpoint-every", "3",
                                  "--threads", "1", "--resume", "--json"])  # fmt: skip
    assert resumed.exit_code == 0, resumed.output
    assert not ckpt.exists() and not (out / "pbt.options.json").exists()
    full_out = tmp_path / "full"
    full = runner.invoke(app, [*KILLED, "--out", str(full_out), "--json"])
    assert full.exit_code == 0, full.output
    a, b = json.loads(resumed.stdout), json.loads(full.stdout)
    for key in ("scores", "best_member", "best_value", "best_config", "test", "replay",
                "perturbations"):  # fmt: skip
        assert a[key] == b[key], key
    assert (out / "pbt.csv").read_text() == (full_out / "pbt.csv").read_text()
    wa = torch.load(out / "model" / "model.pt", weights_only=False)["state_dict"]
    wb = torch.load(full_out / "model" / "model.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(wa[n], wb[n]) for n in wb)
    study = optuna.load_study(study_name=a["study"], storage=journal(out))
    assert len(study.trials) == 4  # the resumed run replaced nothing twice


def _with(args: list[str], flag: str, value: str) -> list[str]:
    i = args.index(flag)
    return [*args[:i], flag, value, *args[i + 2 :]]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (("--population", "8"), "population: 4 in the checkpoint, 8 now"),
        (("--perturbation-interval", "3"), "perturbation_interval: 2 in the checkpoint, 3 now"),
        (("--epochs", "40"), "epochs: 30 in the checkpoint, 40 now"),
        (("--data", "wine"), "data: digits in the checkpoint, wine now"),
        (("--hidden", "8"), "hidden: 16 in the checkpoint, 8 now"),
        (("--seed", "4"), "seed: 3 in the checkpoint, 4 now"),
        (("--dtype", "float32"), "dtype: float64 in the checkpoint, float32 now"),
        (("--explore", "pb2"), "explore: random in the checkpoint, pb2 now"),
        (("--quantile-fraction", "0.5"), "quantile_fraction: 0.25 in the checkpoint, 0.5 now"),
        (("--optimizer", "sgd"), "optimizer: adam in the checkpoint, sgd now"),
        (("--compile", None), "compile: False in the checkpoint, True now"),
        (("space", {"lr": {"low": 1e-3, "high": 1e-2, "log": True}}),
         'space: unset in the checkpoint, {"lr": {"low": 0.001, "high": 0.01, "log": true}} now'),
    ],
)  # fmt: skip
def test_resume_with_other_options_is_refused_naming_both_values(killed, tmp_path, change,
                                                                needle):  # fmt: skip
    flag, value = change
    before = (killed / "pbt.checkpoint.pt").read_bytes()
    args = [*KILLED, "--out", str(killed), "--resume"]
    if flag == "space":  # a config-file key
        config = tmp_path / "space.yaml"
        config.write_text(json.dumps({"space": value}))
        args += ["-c", str(config)]
    elif value is None:
        args.append(flag)
    else:
        args = _with(args, flag, value) if flag in args else [*args, flag, value]
    line = one_line_error(args)
    assert line.startswith("error: resume: the options differ from the checkpoint's (")
    assert needle in line and line.endswith("start afresh with --overwrite"), line
    assert (killed / "pbt.checkpoint.pt").read_bytes() == before
    assert not (killed / "results.json").exists()


def test_resume_lists_every_difference_and_needs_the_record(killed, tmp_path):
    line = one_line_error([*_with(_with(KILLED, "--population", "5"), "--seed", "9"), "--out",
                           str(killed), "--resume"])  # fmt: skip
    assert "population: 4 in the checkpoint, 5 now; seed: 3 in the checkpoint, 9 now" in line
    out = tmp_path / "run"
    shutil.copytree(killed, out)
    (out / "pbt.options.json").unlink()
    line = one_line_error([*KILLED, "--out", str(out), "--resume"])
    assert "resume: no readable record" in line and "pbt.options.json" in line


def test_replay_of_a_run_follows_the_best_members_trajectory(tmp_path):
    out = tmp_path / "run"
    args = [*BASE, "--epochs", "8", "--population", "6", "--quantile-fraction", "0.5",
            "--out", str(out), "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert len(summary["replay"]) >= 2, "the best member's lineage has no perturbation"
    trainer = replay_run(out)
    val = trainer.evaluate(trainer.dataset.X_val, trainer.dataset.y_val)
    assert abs(float(val["accuracy"][0]) - summary["best_value"]) <= 1e-10
    best = torch.load(out / "model" / "model.pt", weights_only=False)["state_dict"]
    mine = trainer.member_module(0, best=False).state_dict()
    for name, w in best.items():
        assert (mine[name] - w).abs().max().item() <= 1e-10, name
