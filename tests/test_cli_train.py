"""`optimkit train` end to end: outputs, population product, config files, bad input, export."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from optimkit.cli import app
from optimkit.train.export import load_model

runner = CliRunner()


def test_train_writes_model_config_history_and_population(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", "digits", "--optimizer", "adamw",
                                 "--lr", "1e-3,1e-2", "--weight-decay", "0,1e-4", "--epochs", "3",
                                 "--batch-size", "64", "--schedule", "cosine", "--out", str(out),
                                 "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    members = payload["members"]
    assert [(m["lr"], m["weight_decay"]) for m in members] == [
        (1e-3, 0.0), (1e-3, 1e-4), (1e-2, 0.0), (1e-2, 1e-4)]  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "history.csv", "history.json", "model", "results.json"]  # fmt: skip
    history = pd.read_csv(out / "history.csv")
    assert sorted(history["member"].unique()) == [0, 1, 2, 3]
    assert history.groupby("member")["epoch"].max().tolist() == [3, 3, 3, 3]
    # the exported best member predicts like the trainer evaluated it on the test split
    exported = load_model(out / "model")
    best = payload["members"][payload["best_member"]]
    assert exported.info["hyperparameters"]["lr"] == best["lr"]
    x, y = load_digits(return_X_y=True)
    pred = exported.predict(x)
    assert pred.shape == (1797,) and (pred.astype(int) == y).mean() > 0.9  # labels "0".."9"
    proba = exported.predict_proba(x[:5])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)


def test_config_file_and_flags(tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("data: iris\nmodel: softmax\noptimizer: sgd\nlr: [0.1, 0.3]\nmomentum: 0.9\n"
                   "epochs: 2\nbatch-size: 16\n")  # fmt: skip
    result = runner.invoke(app, ["train", "-c", str(cfg), "--epochs", "1", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [m["lr"] for m in payload["members"]] == [0.1, 0.3]
    assert all(m["momentum"] == 0.9 and m["epochs"] == 1 for m in payload["members"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--optimizer", "adamm"], "optimizer: unknown name 'adamm'; valid: "),
        (["--lr", "-1"], "lr: expected 0 <= lr, got -1.0 (optimizer adam)"),
        (["--lr", "fast"], "lr: 'fast' is not a number"),
        (["--data", "nope"], "nope"),
        (["--model", "transformer"], "transformer"),
        (["--epochs", "0"], "epochs: Input should be greater than or equal to 1"),
    ],
)
def test_bad_flags_exit_2_with_a_message(args, message):
    result = runner.invoke(app, ["train", "--epochs", "1", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_bad_config_key_is_named(tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("epochs: 1\nlearning_rate: 0.1\n")
    result = runner.invoke(app, ["train", "-c", str(cfg)])
    assert result.exit_code == 2
    assert "learning_rate: Extra inputs are not permitted" in result.output


def test_existing_output_is_not_overwritten(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    result = runner.invoke(app, ["train", "--epochs", "1", "--out", str(out)])
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert (out / "keep.txt").read_text() == "precious"


def test_killed_training_resumes_from_its_checkpoint(tmp_path):
    """A real `optimkit train` process killed after its checkpoint; --resume finishes the run
    with the same result as an uninterrupted one."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = ["train", "--data", "iris", "--model", "mlp", "--hidden", "8", "--lr", "0.01,0.1",
            "--epochs", "30", "--batch-size", "8", "--dtype", "float64"]  # fmt: skip
    out = tmp_path / "run"
    ckpt = tmp_path / "run.checkpoint.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "optimkit.cli", *args, "--out", str(out),
           "--checkpoint-every", "1", "--json"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not out.exists()  # nothing half-written in the output folder
    resumed = runner.invoke(app, [*args, "--out", str(out), "--checkpoint-every", "1",
                                  "--resume", "--json"])  # fmt: skip
    assert resumed.exit_code == 0, resumed.output
    full = runner.invoke(app, [*args, "--json"])
    resumed_rows = json.loads(resumed.stdout)["members"]
    full_rows = json.loads(full.stdout)["members"]
    assert resumed_rows == full_rows
    assert not ckpt.exists()


def test_speed_flags_reach_the_trainer(tmp_path):
    """--autocast trains exactly as TrainConfig(autocast=True) does (bf16 products change the
    numbers, so a float32 run would differ); `compile: true` in a config file is read too."""
    from optimkit.cli.options import TrainOptions, load_options
    from optimkit.data import load_dataset
    from optimkit.train import PopulationTrainer, TrainConfig

    args = ["train", "--data", "iris", "--model", "softmax", "--lr", "0.05", "--epochs", "2",
            "--batch-size", "16", "--json"]  # fmt: skip
    fast = json.loads(runner.invoke(app, [*args, "--autocast"]).stdout)["members"][0]
    plain = json.loads(runner.invoke(app, args).stdout)["members"][0]
    ds = load_dataset("iris", seed=0)
    cfg = TrainConfig(model="softmax", epochs=2, batch_size=16, autocast=True)
    trainer = PopulationTrainer(ds, cfg, [{"lr": 0.05}])
    trainer.fit()
    expected = trainer.summary()[0]
    assert fast["test_loss"] == pytest.approx(expected["test_loss"], rel=1e-12)
    assert fast["test_loss"] != pytest.approx(plain["test_loss"], rel=1e-6)
    cfg_file = tmp_path / "exp.yaml"
    cfg_file.write_text("compile: true\n")
    options = load_options(cfg_file, {}, TrainOptions)
    assert options.compile and not options.autocast
