"""The optimizer tournament: equal budgets, the best trial re-run with S seeds, the leaderboard
statistics and ranking, and `optimkit compare` / `optimkit tune` end to end on a CSV file."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_iris
from typer.testing import CliRunner

from optimkit.cli import app
from optimkit.data import load_dataset
from optimkit.train import PopulationTrainer, TrainConfig
from optimkit.train.export import load_model
from optimkit.tune.compare import compare
from optimkit.tune.space import OPTIMIZER_ALIASES, SearchSpace
from optimkit.tune.tuner import full_config, member_of

optuna.logging.set_verbosity(optuna.logging.WARNING)
runner = CliRunner()


def test_tournament_protocol_matches_independent_reruns():
    """Every optimizer gets the same number of trials; its leaderboard row is its best trial
    (by Optuna's own best_trial) re-trained with seeds 1000.. : test mean/std and val mean equal
    those of the same configuration trained alone, seed by seed (float64)."""
    ds = load_dataset("iris", seed=0, dtype=torch.float64)
    base = TrainConfig(model="softmax", epochs=4, batch_size=16, seed=0)
    storage = optuna.storages.InMemoryStorage()
    trials, seeds = 4, 3
    t = compare(ds, base, ["sgd", "momentum", "adam"], storage, study_prefix="t", trials=trials,
                population=2, seeds=seeds, sampler="random", seed=0)  # fmt: skip
    board = t.leaderboard
    assert board["rank"].tolist() == [1, 2, 3]
    assert board["test_mean"].is_monotonic_decreasing
    for row in board.to_dict(orient="records"):
        name = row["optimizer"]
        study = optuna.load_study(study_name=f"t-{name}", storage=storage)
        assert [tr.state for tr in study.trials] == [optuna.trial.TrialState.COMPLETE] * trials
        config = full_config(SearchSpace.from_config(None, name), study.best_trial.params)
        expected_params = {k: v for k, v in config.items() if k not in ("seed", "optimizer")}
        assert row["best_params"] == expected_params
        test, val = [], []
        optimizer = OPTIMIZER_ALIASES.get(name, (name, {}))[0]
        cfg = TrainConfig(model="softmax", epochs=4, batch_size=16, seed=0, optimizer=optimizer,
                          monitor="val_accuracy")  # fmt: skip
        for s in range(seeds):
            alone = PopulationTrainer(ds, cfg, [member_of({**config, "seed": 1000 + s})])
            alone.fit()
            test.append(float(alone.test_results["accuracy"][0]))
            val.append(float(alone.early.best[0]))
        assert row["test_mean"] == pytest.approx(np.mean(test), abs=1e-12)
        assert row["test_std"] == pytest.approx(np.std(test, ddof=1), abs=1e-12)
        assert row["val_mean"] == pytest.approx(np.mean(val), abs=1e-12)
        assert row["n_trials"] == trials
        # no target given: the worst optimizer's mean best val accuracy, reached by seeds at
        # their first epoch at or above it
        curves = t.curves[t.curves["optimizer"] == name]
        assert curves["seed"].nunique() == seeds
        firsts = [c.loc[c["val_metric"] >= t.target].head(1) for _, c in curves.groupby("seed")]
        firsts = [f for f in firsts if len(f)]
        assert row["reached_target"] == len(firsts) / seeds
        if firsts:
            assert row["epochs_to_target_mean"] == np.mean([f["epoch"].item() for f in firsts])
            assert row["time_to_target_mean"] == np.mean([f["seconds"].item() for f in firsts])
    assert t.target == board["val_mean"].min()
    assert board.loc[board["val_mean"].idxmin(), "reached_target"] > 0


@pytest.fixture
def iris_csv(tmp_path):
    data = load_iris(as_frame=True)
    frame = data.frame.rename(columns={"target": "species"})
    frame["species"] = data.target_names[data.target]
    path = tmp_path / "iris.csv"
    frame.to_csv(path, index=False)
    return path, frame


def _journal(path):
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def test_compare_cli_on_a_csv_file(tmp_path, iris_csv):
    path, _ = iris_csv
    out = tmp_path / "cmp"
    result = runner.invoke(app, ["compare", "--data", str(path), "--target", "species",
                                 "--model", "softmax", "--optimizers", "sgd,adam", "--trials", "3",
                                 "--epochs", "2", "--seeds", "2", "--population", "3",
                                 "--out", str(out), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["metric"] == "accuracy"
    files = {p.name for p in out.iterdir()}
    assert {"leaderboard.csv", "curves.csv", "trials.csv", "report.html", "study.journal",
            "figures"} <= files  # fmt: skip
    assert {p.name for p in (out / "figures").iterdir()} >= {"leaderboard.png", "curves.png"}
    board = pd.read_csv(out / "leaderboard.csv")
    assert sorted(board["optimizer"]) == ["adam", "sgd"]
    assert board["rank"].tolist() == [1, 2]
    assert [r["optimizer"] for r in payload["leaderboard"]] == board["optimizer"].tolist()
    storage = _journal(out / "study.journal")
    names = optuna.get_all_study_names(storage)
    assert len(names) == 2
    for name in names:
        study = optuna.load_study(study_name=name, storage=storage)
        assert sum(tr.state == optuna.trial.TrialState.COMPLETE for tr in study.trials) == 3


def test_tune_cli_on_a_csv_file_exports_a_working_model(tmp_path, iris_csv):
    path, frame = iris_csv
    out = tmp_path / "tune"
    result = runner.invoke(app, ["tune", "--data", str(path), "--target", "species",
                                 "--model", "softmax", "--trials", "4", "--epochs", "3",
                                 "--population", "2", "--sampler", "random", "--out", str(out),
                                 "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    storage = _journal(out / "study.journal")
    study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
    assert sum(tr.state == optuna.trial.TrialState.COMPLETE for tr in study.trials) == 4
    model = load_model(out / "model")
    pred = model.predict(frame.drop(columns="species"))
    assert set(pred) <= {"setosa", "versicolor", "virginica"}
    assert (pred == frame["species"].to_numpy()).mean() > 0.5


def test_compare_cli_unknown_optimizer_lists_the_valid_ones(tmp_path):
    result = runner.invoke(app, ["compare", "--optimizers", "adam,adamm", "--out",
                                 str(tmp_path / "x")])  # fmt: skip
    assert result.exit_code == 2
    assert "optimizers: unknown name 'adamm'; valid: " in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_compare_cli_regression_ranks_by_r2(tmp_path):
    """On a regression task the default metric is R2 (greater is better), and the target for
    time-to-target is the level every optimizer reaches."""
    result = runner.invoke(app, ["compare", "--data", "diabetes", "--model", "linear",
                                 "--optimizers", "sgd,adam", "--trials", "2", "--epochs", "2",
                                 "--seeds", "2", "--population", "2", "--out",
                                 str(tmp_path / "r"), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    board = payload["leaderboard"]
    assert payload["metric"] == "r2"
    assert payload["target"] == min(r["val_mean"] for r in board)
    means = [r["test_mean"] for r in board]
    assert means == sorted(means, reverse=True)
    assert (tmp_path / "r" / "report.html").is_file()
