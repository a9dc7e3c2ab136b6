"""The tuner: spaces, samplers, storage round trips, continuous batching, pruning, resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from optimkit.cli import app
from optimkit.data import load_dataset
from optimkit.train import PopulationTrainer, TrainConfig
from optimkit.tune import SearchSpace, StudyMirror, Tuner, make_pruner, make_sampler, open_storage
from optimkit.tune.tuner import member_of

optuna.logging.set_verbosity(optuna.logging.WARNING)
runner = CliRunner()


@pytest.fixture(scope="module")
def iris():
    return load_dataset("iris", seed=0)


def _tune(ds, out: Path, *, trials=6, population=3, epochs=3, sampler="random", pruner="none",
          storage=None, name="s", space=None):  # fmt: skip
    sp = SearchSpace.from_config(space, "adam")
    mirror = StudyMirror(open_storage(storage, out), name, ["maximize"],
                         make_sampler(sampler, sp, 0), make_pruner(pruner, epochs))  # fmt: skip
    base = TrainConfig(model="mlp", model_options={"hidden": (8,)}, epochs=epochs, batch_size=16)
    return Tuner(ds, base, sp, mirror, trials=trials, population=population).run()


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"lr": {"low": 0.1, "high": 0.01}}, r"space.lr: low \(0.1\) > high \(0.01\)"),
        ({"lr": {"low": 0.0, "high": 0.1, "log": True}}, "space.lr: a log scale needs low > 0"),
        ({"batch_size": {"choices": []}}, "space.batch_size: choices must be a non-empty list"),
        ({"learning_rate": 0.1}, "space.learning_rate: unknown key; valid: lr, weight_decay"),
        ({"lr": {"low": 1e-3, "hi": 1}}, r"space.lr: unknown field\(s\) \['hi'\]"),
        ({"optimizer": {"choices": ["adam", "adamm"]}}, "space.optimizer: unknown name 'adamm'"),
    ],
)
def test_invalid_spaces_name_the_key(space, message):
    with pytest.raises(ValueError, match=message):
        SearchSpace.from_config(space, "adam")


def test_unknown_sampler_and_pruner_list_the_valid_ones():
    sp = SearchSpace.from_config(None, "adam")
    with pytest.raises(ValueError, match="valid: tpe, random, grid, qmc, gp, cmaes, nsga2"):
        make_sampler("bayes", sp, 0)
    with pytest.raises(ValueError, match="valid: none, median, asha, hyperband"):
        make_pruner("early", 10)


def test_define_by_run_space_with_optimizer_choice():
    sp = SearchSpace.from_config({"optimizer": {"choices": ["sgd", "adam", "nesterov"]},
                                  "batch_size": {"choices": [16, 32]}}, None)  # fmt: skip
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(0))
    for _ in range(20):
        config = sp.suggest(study.ask())
        assert config["batch_size"] in (16, 32)
        if config["optimizer"] == "adam":
            assert "beta1" in config and "momentum" not in config
        else:
            assert "beta1" not in config
            assert ("momentum" in config) == (config["optimizer"] == "nesterov")
            assert config.get("nesterov", False) == (config["optimizer"] == "nesterov")


@pytest.mark.parametrize("storage", [None, "journal"])
def test_study_round_trips_through_optuna_load_study(iris, tmp_path, storage):
    spec = None if storage is None else str(tmp_path / "study.log")
    result = _tune(iris, tmp_path, trials=7, population=3, storage=spec)
    if spec is None:
        loaded_storage = f"sqlite:///{tmp_path / 'study.db'}"
    else:
        backend = optuna.storages.journal.JournalFileBackend(spec)
        loaded_storage = optuna.storages.JournalStorage(backend)
    study = optuna.load_study(study_name="s", storage=loaded_storage)
    live = {t.number: t for t in result.study.trials}
    assert len(study.trials) == 7 == len(live)
    for t in study.trials:
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert t.params == live[t.number].params
        assert t.values == pytest.approx(live[t.number].values, abs=1e-12)
        assert t.intermediate_values == pytest.approx(live[t.number].intermediate_values)
        assert len(t.intermediate_values) == 3
        assert t.user_attrs["epochs"] == 3 and t.user_attrs["status"] == "finished"
        assert t.user_attrs["population"] <= 3
    assert study.best_value == pytest.approx(result.best_value)


def test_trial_values_equal_a_standalone_trainer(iris, tmp_path):
    """A trial of the first batch trains exactly like the same configuration alone."""
    result = _tune(iris, tmp_path, trials=4, population=4)
    trial = result.study.trials[0]
    config = {**trial.params, "seed": 0}  # the first trial's seed is base.seed + number
    base = TrainConfig(model="mlp", model_options={"hidden": (8,)}, epochs=3, batch_size=16,
                       monitor="val_accuracy")  # fmt: skip
    alone = PopulationTrainer(iris, base, [member_of({**config, "optimizer": "adam"})])
    alone.fit()
    curve = alone.history.curve("val_accuracy")[:, 0].tolist()
    assert [trial.intermediate_values[e + 1] for e in range(3)] == pytest.approx(curve, abs=1e-6)


def test_continuous_batching_keeps_populations_full(iris, tmp_path):
    result = _tune(iris, tmp_path, trials=11, population=4, epochs=2)
    assert result.counts == {"complete": 11}
    assert all(t.user_attrs["population"] <= 4 for t in result.study.trials)


def test_asha_prunes_members_individually(iris, tmp_path):
    space = {"lr": {"low": 1e-6, "high": 1.0, "log": True}}
    result = _tune(iris, tmp_path, trials=12, population=12, epochs=9, pruner="asha",
                   space=space)  # fmt: skip
    pruned = [t for t in result.study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, "ASHA pruned nothing"
    assert all(len(t.intermediate_values) < 9 for t in pruned)
    assert result.counts.get("pruned", 0) + result.counts.get("complete", 0) == 12


def test_existing_study_with_other_direction_is_explained(iris, tmp_path):
    _tune(iris, tmp_path, trials=2, population=2, epochs=1)
    sp = SearchSpace.from_config(None, "adam")
    with pytest.raises(ValueError, match="exists in this storage with direction"):
        StudyMirror(open_storage(None, tmp_path), "s", ["minimize"], make_sampler("tpe", sp, 0),
                    make_pruner("none", 1))  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sampler", "bayes"], "sampler: unknown name 'bayes'"),
        (["--pruner", "x"], "pruner: unknown name 'x'"),
        (["--optimizer", "adamm"], "optimizer: unknown name 'adamm'"),
        (["--data", "nope"], "nope"),
        (["--storage", "postgresql://nobody@127.0.0.1:1/none"], "storage: cannot open"),
    ],
)
def test_tune_cli_bad_input_exits_2(args, message, tmp_path):
    result = runner.invoke(app, ["tune", "--trials", "1", "--epochs", "1", "--out",
                                 str(tmp_path), *args])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_kill_9_then_resume_loses_and_duplicates_nothing(tmp_path):
    """A real process killed with SIGKILL mid-run; the same command then finishes the study."""
    cmd = [sys.executable, "-m", "optimkit.cli", "tune", "--data", "iris", "--model", "mlp",
           "--hidden", "8", "--trials", "40", "--population", "4", "--epochs", "10",
           "--batch-size", "16", "--sampler", "random", "--out", str(tmp_path),
           "--study-name", "k", "--json"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    deadline = time.time() + 120
    complete: list[optuna.trial.FrozenTrial] = []
    while time.time() < deadline:
        time.sleep(0.2)
        try:
            study = optuna.load_study(study_name="k", storage=url)
        except Exception:  # not created yet
            continue
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if len(complete) >= 8:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {t.number: t for t in optuna.load_study(study_name="k", storage=url).trials}
    done_before = {n: t for n, t in before.items() if t.state == optuna.trial.TrialState.COMPLETE}
    running = [t for t in before.values() if t.state == optuna.trial.TrialState.RUNNING]
    assert len(done_before) >= 8 and len(done_before) < 40
    assert running, "the kill did not catch any running trial"

    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env, timeout=300)
    after = optuna.load_study(study_name="k", storage=url).trials
    by_number = {t.number: t for t in after}
    assert len(by_number) == len(after)  # no duplicated numbers
    for n, t in done_before.items():  # completed trials kept as they were
        assert by_number[n].state == optuna.trial.TrialState.COMPLETE
        assert by_number[n].values == t.values and by_number[n].params == t.params
    for t in running:  # running ones failed, with a reason, and asked again
        failed = by_number[t.number]
        assert failed.state == optuna.trial.TrialState.FAIL
        assert "interrupted" in failed.system_attrs["fail_reason"]
        assert any(u.params == t.params and u.state == optuna.trial.TrialState.COMPLETE
                   for u in after if u.number > t.number)  # fmt: skip
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in after) == 40


@pytest.mark.parametrize("sampler", ["grid", "qmc", "gp", "cmaes", "tpe"])
def test_every_sampler_runs_a_study(iris, tmp_path, sampler):
    result = _tune(iris, tmp_path, trials=4, population=2, epochs=1, sampler=sampler)
    assert result.counts == {"complete": 4}
    assert (
        type(result.study.sampler)
        .__name__.lower()
        .startswith(
            {"grid": "grid", "qmc": "qmc", "gp": "gp", "cmaes": "cmaes", "tpe": "tpe"}[sampler]
        )
    )


def test_nsga2_trades_the_metric_against_parameter_count(iris, tmp_path):
    sp = SearchSpace.from_config({"hidden": {"choices": [[4], [16], [32, 32]]}}, "adam")
    sampler = make_sampler("nsga2", sp, 0, multi=True)
    mirror = StudyMirror(
        open_storage(None, tmp_path),
        "mo",
        ["maximize", "minimize"],
        sampler,
        make_pruner("none", 2),
    )
    base = TrainConfig(model="mlp", epochs=2, batch_size=16)
    result = Tuner(iris, base, sp, mirror, trials=6, population=6,
                   objectives=("metric", "params")).run()  # fmt: skip
    study = optuna.load_study(study_name="mo", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert len(study.directions) == 2 and len(study.trials) == 6
    widths = {"4": 4 * 4 + 4 + 4 * 3 + 3, "16": 16 * 4 + 16 + 16 * 3 + 3,
              "32-32": 32 * 4 + 32 + 32 * 32 + 32 + 32 * 3 + 3}  # fmt: skip
    for t in study.trials:
        assert t.values[1] == widths[t.params["hidden"]]  # exact parameter count per member
    assert study.best_trials  # a Pareto front
    assert result.counts == {"complete": 6}
