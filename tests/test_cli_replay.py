"""`optimkit train --replay RUN`: one model re-trained along the best member's schedule of an
`optimkit pbt` run (Ray Tune's PopulationBasedTrainingReplay). The CLI equals the Python API
(`replay_run`) exactly and an independent plain-torch loop that applies the same schedule
(float64); bad run folders and options that conflict with the run are one-line errors."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from optimkit.cli import app
from optimkit.data import BatchSampler, load_dataset
from optimkit.models import build_model
from optimkit.tune.pbt import replay_run

runner = CliRunner()
f64 = torch.float64
PBT = ["pbt", "--data", "iris", "--model", "mlp", "--hidden", "4", "--epochs", "8",
       "--batch-size", "16", "--population", "6", "--perturbation-interval", "1",
       "--quantile-fraction", "0.5", "--dtype", "float64", "--seed", "0"]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real PBT run folder whose best member's lineage changes hyperparameters."""
    out = tmp_path_factory.mktemp("pbt") / "run"
    result = runner.invoke(app, [*PBT, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert len(summary["replay"]) >= 3, "the best member's lineage has too few perturbations"
    return out, summary


def one_line_error(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(("error: replay: ", "error: out: ")), result.output
    return lines[0]


def plain_torch_replay(ds, root, schedule, epochs=8, batch_size=16, seed=0):
    """The schedule applied by hand: one torch model from the root's seed, torch.optim.Adam,
    the shared batches; at each segment's start epoch its lr, betas and weight decay are
    written into the param group (the weights are never copied)."""
    torch.manual_seed(root["seed"])
    model = build_model("mlp", 4, 3, hidden=(4,)).to(f64)
    first = schedule[0]
    opt = torch.optim.Adam(model.parameters(), lr=first["lr"], betas=(first["beta1"],
                           first["beta2"]), weight_decay=first["weight_decay"])  # fmt: skip
    changes = {s["start_epoch"]: s for s in schedule[1:]}
    sampler = BatchSampler(ds.n_train, batch_size=batch_size, seed=seed)
    for epoch in range(1, epochs + 1):
        model.train()
        for idx in sampler.batches(epoch - 1):
            opt.zero_grad()
            F.cross_entropy(model(ds.X_train[idx]), ds.y_train[idx]).backward()
            opt.step()
        if epoch in changes:
            s = changes[epoch]
            for group in opt.param_groups:
                group.update(lr=s["lr"], betas=(s["beta1"], s["beta2"]),
                             weight_decay=s["weight_decay"])  # fmt: skip
    return model.eval()


def test_cli_replay_equals_the_python_api_and_a_plain_torch_loop(run, tmp_path):
    folder, summary = run
    out = tmp_path / "replay"
    # options equal to the run's are accepted; --threads and --out apply
    result = runner.invoke(app, ["train", "--replay", str(folder), "--out", str(out), "--epochs",
                                 "8", "--dtype", "float64", "--model", "mlp", "--threads", "1",
                                 "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    cli = json.loads(result.stdout)
    assert json.loads((out / "results.json").read_text()) == cli
    schedule = cli["replay"]["schedule"]
    assert schedule == summary["replay"] and cli["replay"]["member"] == summary["best_member"]

    api = replay_run(folder)
    weights = torch.load(out / "model" / "model.pt", weights_only=False)["state_dict"]
    mine = api.member_module(0, best=False).state_dict()
    assert weights.keys() == mine.keys()
    assert all(torch.equal(weights[n], mine[n]) for n in mine)
    assert api.test_results is not None
    for name, value in api.test_results.items():
        assert cli["members"][0][f"test_{name}"] == float(value[0]), name

    ds = load_dataset("iris", seed=0, dtype=f64)
    root = summary["initial"][schedule[0]["member"]]
    model = plain_torch_replay(ds, root, schedule)
    for name, p in model.state_dict().items():
        assert (mine[name] - p).abs().max().item() <= 1e-10, name
    with torch.no_grad():
        val = (model(ds.X_val).argmax(1) == ds.y_val).double().mean().item()
        test = (model(ds.X_test).argmax(1) == ds.y_test).double().mean().item()
    assert val == pytest.approx(summary["best_value"], abs=1e-12)  # the best member's score
    assert test == pytest.approx(cli["members"][0]["test_accuracy"], abs=1e-12)


def _break(folder, how):
    if how == "missing":
        shutil.rmtree(folder)
    elif how == "not a PBT run":  # a `train` output folder
        shutil.rmtree(folder)
        done = runner.invoke(app, ["train", "--data", "iris", "--epochs", "1", "--out",
                                   str(folder)])  # fmt: skip
        assert done.exit_code == 0, done.output
        shutil.copy(folder / "history.csv", folder / "pbt.csv")
    elif how == "results.json not JSON":
        (folder / "results.json").write_text('{"metric": "val_accuracy",\n  oops')
    elif how == "pbt.csv binary":
        (folder / "pbt.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    elif how == "pbt.csv empty":
        (folder / "pbt.csv").write_text("")
    else:
        frame = pd.read_csv(folder / "pbt.csv")
        if how == "pbt.csv lacks a column":
            frame = frame.drop(columns=["beta1"])
        elif how == "pbt.csv lacks a segment":
            seg = json.loads((folder / "results.json").read_text())["replay"][1]
            frame = frame[
                ~((frame.member == seg["member"]) & (frame.start_epoch == seg["start_epoch"]))
            ]  # a segment of the best lineage
        elif how == "pbt.csv gap":
            frame.loc[frame.index[frame.segment == 1][0], "start_epoch"] += 1
        elif how == "pbt.csv text epochs":
            frame["start_epoch"] = frame["start_epoch"].astype(str) + "e"
        elif how == "pbt.csv edited value":
            frame["lr"] = frame["lr"] * 1.5
        frame.to_csv(folder / "pbt.csv", index=False)


@pytest.mark.parametrize(
    ("how", "needle"),
    [
        ("missing", "replay: no folder"),
        ("not a PBT run", "is not the results of an `optimkit pbt` run"),
        ("results.json not JSON", "results.json' is not valid JSON (line 2, column 3)"),
        ("pbt.csv binary", "pbt.csv' is not a readable CSV"),
        ("pbt.csv empty", "pbt.csv' is not a readable CSV"),
        ("pbt.csv lacks a column", "pbt.csv' lacks the column(s) beta1"),
        ("pbt.csv lacks a segment", "pbt.csv' is not a complete lineage ("),
        ("pbt.csv gap", "not a complete lineage (member 0: segment 1 starts at epoch"),
        ("pbt.csv text epochs", "column start_epoch: expected integers"),
        ("pbt.csv edited value", "pbt.csv' and results.json disagree on the best member's"),
    ],
)
def test_a_bad_run_folder_is_one_line(run, tmp_path, how, needle):
    folder = tmp_path / "run"
    shutil.copytree(run[0], folder)
    _break(folder, how)
    line = one_line_error(["train", "--replay", str(folder), "--out", str(tmp_path / "o")])
    assert needle in line, line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--optimizer", "sgd"], "--optimizer sgd given, adam in the run"),
        (["--model", "softmax"], "--model softmax given, mlp in the run"),
        (["--hidden", "8"], "--hidden 8 given, 4 in the run"),
        (["--data", "wine"], "--data wine given, iris in the run"),
        (["--seed", "3"], "--seed 3 given, 0 in the run"),
        (["--epochs", "3", "--batch-size", "8"], "--epochs 3 given, 8 in the run; --batch-size 8"),
        (["--dtype", "float32"], "--dtype float32 given, float64 in the run"),
        (["--lr", "0.1"], "--lr: set by the replayed schedule"),
        (["--checkpoint-every", "2"], "--checkpoint-every: not with --replay"),
    ],
)
def test_options_that_conflict_with_the_run_are_refused(run, tmp_path, args, needle):
    line = one_line_error(["train", "--replay", str(run[0]), *args, "--out", str(tmp_path / "o")])
    assert needle in line and "leave them out" in line, line
    assert not (tmp_path / "o").exists()


def test_the_run_folder_itself_is_not_an_out(run):
    line = one_line_error(["train", "--replay", str(run[0]), "--out", str(run[0])])
    assert "is the replayed run's folder" in line
    assert (run[0] / "pbt.csv").is_file()
