"""The tuner: spaces, samplers, storage round trips, continuous batching, pruning, resume."""

from __future__ import annotations

import json
import math
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
from optimkit.tune.storage import WORKER_PREFIX
from optimkit.tune.tuner import member_of

optuna.logging.set_verbosity(optuna.logging.WARNING)
runner = CliRunner()


@pytest.fixture(scope="module")
def iris():
    return load_dataset("iris", seed=0)


def _run(ds, out: Path, *, trials=6, population=3, epochs=3, sampler="random", pruner="none",
         storage=None, name="s", space=None, replace_defaults=False):  # fmt: skip
    sp = SearchSpace.from_config(space, "adam", replace_defaults=replace_defaults)
    mirror = StudyMirror(open_storage(storage, out), name, ["maximize"],
                         make_sampler(sampler, sp, 0), make_pruner(pruner, epochs))  # fmt: skip
    base = TrainConfig(model="mlp", model_options={"hidden": (8,)}, epochs=epochs, batch_size=16)
    return Tuner(ds, base, sp, mirror, trials=trials, population=population).run(), mirror


def _tune(ds, out: Path, **kwargs):
    return _run(ds, out, **kwargs)[0]


def _journal(path: Path) -> optuna.storages.JournalStorage:
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


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


@pytest.mark.parametrize("storage", [None, "log", "sqlite"])
def test_study_round_trips_through_optuna_load_study(iris, tmp_path, storage):
    """What the tuner held in memory is what optuna.load_study reads back, on the default
    journal file, a journal file given by name, and an SQLite URL."""
    spec = {None: None, "log": str(tmp_path / "study.log"),
            "sqlite": f"sqlite:///{tmp_path / 'x.db'}"}[storage]  # fmt: skip
    result, mirror = _run(iris, tmp_path, trials=7, population=3, storage=spec)
    if storage is None:
        assert (tmp_path / "study.journal").exists() and not (tmp_path / "study.db").exists()
        loaded_storage = _journal(tmp_path / "study.journal")
    elif storage == "log":
        loaded_storage = _journal(tmp_path / "study.log")
    else:
        loaded_storage = spec
    study = optuna.load_study(study_name="s", storage=loaded_storage)
    in_memory = mirror.study.get_trials(deepcopy=False)
    live = {mirror.numbers[t.number]: t for t in in_memory}
    assert len(study.trials) == 7 == len(live)
    assert sorted(t.number for t in study.trials) == list(range(7))
    for t in study.trials:
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert t.params == live[t.number].params
        assert t.datetime_start == live[t.number].datetime_start
        assert t.values == pytest.approx(live[t.number].values, abs=1e-12)
        # no pruner: the curve is stored with the trial, not reported to the live study (its
        # values are the trainer's: test_trial_values_equal_a_standalone_trainer)
        assert live[t.number].intermediate_values == {}
        assert sorted(t.intermediate_values) == [1, 2, 3]
        assert max(t.intermediate_values.values()) == t.value
        assert t.user_attrs["seed"] == result.finished_before + t.number  # base seed 0
        assert t.user_attrs["epochs"] == 3 and t.user_attrs["status"] == "finished"
        assert t.user_attrs["population"] <= 3
    assert study.best_value == pytest.approx(result.best_value)


def test_trial_values_equal_a_standalone_trainer(iris, tmp_path):
    """A trial of the first batch trains exactly like the same configuration alone."""
    result = _tune(iris, tmp_path, trials=4, population=4)
    trial = result.study.trials[0]
    config = {**trial.params, "seed": trial.user_attrs["seed"]}
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
        (["--storage", "sqlite://"], "in-memory SQLite database is discarded"),
        (["--storage", "sqlite:///:memory:"], "in-memory SQLite database is discarded"),
        (["--storage", "study.db"], "expected an SQLAlchemy URL"),
    ],
)
def test_tune_cli_bad_input_exits_2(args, message, tmp_path):
    result = runner.invoke(app, ["tune", "--trials", "1", "--epochs", "1", "--out",
                                 str(tmp_path), *args])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_kill_9_then_resume_loses_and_duplicates_nothing(tmp_path):
    """A real process killed with SIGKILL mid-run; the same command then finishes the study:
    the trials it had completed are kept as they were, the ones it was running are asked again
    with the same parameters (its heartbeat claim names them), the numbers stay contiguous."""
    cmd = [sys.executable, "-m", "optimkit.cli", "tune", "--data", "iris", "--model", "mlp",
           "--hidden", "8", "--trials", "40", "--population", "4", "--epochs", "10",
           "--batch-size", "16", "--sampler", "random", "--out", str(tmp_path),
           "--study-name", "k", "--json"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    path = tmp_path / "study.journal"
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.2)
        try:
            study = optuna.load_study(study_name="k", storage=_journal(path))
        except Exception:  # not created yet
            continue
        if sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) >= 8:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    study = optuna.load_study(study_name="k", storage=_journal(path))
    before = {t.number: t for t in study.trials}
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in before.values())
    assert 8 <= len(before) < 40
    storage = _journal(path)
    attrs = storage.get_study_system_attrs(storage.get_study_id_from_name("k"))
    (claim,) = [v for k, v in attrs.items() if k.startswith(WORKER_PREFIX)]
    running = [p for p in claim["running"] if p not in [t.params for t in before.values()]]
    assert running and not claim["done"], "the kill did not catch any running trial"

    done = subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=300)
    payload = json.loads(done.stdout)
    # re-asked: the running trials and the slots it had reserved but not yet asked
    assert payload["reasked_trials"] == len(running) + len(claim.get("reserved", []))
    after = optuna.load_study(study_name="k", storage=_journal(path)).trials
    assert [t.number for t in after] == list(range(len(after)))  # unique, contiguous
    for n, t in before.items():  # completed trials kept as they were
        assert after[n].state == optuna.trial.TrialState.COMPLETE
        assert after[n].values == t.values and after[n].params == t.params
    for params in running:  # the interrupted ones asked again, with the same parameters
        assert any(u.params == params for u in after if u.number >= len(before))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in after)
    assert len(after) == 40


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
    study = optuna.load_study(study_name="mo", storage=_journal(tmp_path / "study.journal"))
    assert len(study.directions) == 2 and len(study.trials) == 6
    widths = {"4": 4 * 4 + 4 + 4 * 3 + 3, "16": 16 * 4 + 16 + 16 * 3 + 3,
              "32-32": 32 * 4 + 32 + 32 * 32 + 32 + 32 * 3 + 3}  # fmt: skip
    for t in study.trials:
        assert t.values[1] == widths[t.params["hidden"]]  # exact parameter count per member
    assert study.best_trials  # a Pareto front
    assert result.counts == {"complete": 6}


# ---------------------------------------------------------------------------- storages
def test_journal_that_is_not_a_journal_is_one_line(tmp_path):
    bad = tmp_path / "notes.log"
    bad.write_text("these are my notes\nnot a journal\n")
    binary = tmp_path / "blob.journal"
    binary.write_bytes(bytes(range(256)))
    for spec in (f"journal:{bad}", str(binary), f"journal:{tmp_path}"):
        result = runner.invoke(app, ["tune", "--data", "iris", "--trials", "1", "--epochs", "1",
                                     "--out", str(tmp_path / "o"), "--storage", spec])  # fmt: skip
        assert result.exit_code == 2, result.output
        assert "storage: cannot open" in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
    assert bad.read_text() == "these are my notes\nnot a journal\n"  # left as it was


def test_a_study_written_by_an_earlier_version_still_opens(iris, tmp_path):
    """An earlier optimkit wrote OUT/study.db (SQLite) and left a RUNNING trial when killed:
    the default storage of that folder is still that file, the trial is left alone (nobody
    can tell whether its process lives), and the study is continued to its budget."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    old = optuna.create_study(study_name="s", storage=url, direction="maximize")
    sp = SearchSpace.from_config(None, "adam")
    for value in (0.5, 0.6):
        trial = old.ask()
        sp.suggest(trial)
        trial.report(value, 1)
        trial.set_user_attr("status", "finished")
        old.tell(trial, value)
    sp.suggest(old.ask())  # left RUNNING by a killed run
    result = _tune(iris, tmp_path, trials=5, population=3, epochs=2)
    assert not (tmp_path / "study.journal").exists()
    study = optuna.load_study(study_name="s", storage=url)
    states = [t.state for t in study.trials]
    assert [t.number for t in study.trials] == list(range(6))
    assert states[2] == optuna.trial.TrialState.RUNNING  # not failed by "running at start"
    assert states.count(optuna.trial.TrialState.COMPLETE) == 5
    assert result.finished_before == 2 and result.asked == 3


def test_grid_sampler_stops_when_the_grid_is_covered(iris, tmp_path):
    """More trials than grid points: the study ends with the grid, no RUNNING trial left."""
    space = {"lr": {"choices": [0.01, 0.03, 0.1]}}
    result, mirror = _run(iris, tmp_path, trials=8, population=2, epochs=1, sampler="grid",
                          space=space, replace_defaults=True)  # fmt: skip
    study = optuna.load_study(study_name="s", storage=_journal(tmp_path / "study.journal"))
    assert sorted(t.params["lr"] for t in study.trials) == [0.01, 0.03, 0.1]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert all(t.state.is_finished() for t in mirror.study.trials)
    assert result.asked == 3 and result.best_number is not None


@pytest.mark.parametrize("command", ["tune", "compare"])
def test_grid_sampler_cli_with_trials_at_or_above_the_grid(tmp_path, command):
    """The issue's crash: tune --sampler grid --trials 64 (adam's default grid: 4 x 4 x 4) and
    compare --sampler grid at its default 16 trials (sgd's grid: 4 x 4)."""
    if command == "tune":
        args = ["tune", "--optimizer", "adam", "--trials", "64", "--population", "64"]
    else:
        args = ["compare", "--optimizers", "sgd", "--seeds", "1"]
    result = runner.invoke(app, [*args, "--data", "iris", "--model", "softmax", "--epochs",
                                 "1", "--sampler", "grid", "--out", str(tmp_path),
                                 "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    (name,) = optuna.get_all_study_names(_journal(tmp_path / "study.journal"))
    study = optuna.load_study(study_name=name, storage=_journal(tmp_path / "study.journal"))
    assert study.trials and all(t.state.is_finished() for t in study.trials)
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == len(study.trials)


def _cli_tune(tmp_path, out, trials, *extra):
    storage = f"journal:{tmp_path / 'shared.journal'}"
    return runner.invoke(app, ["tune", "--data", "iris", "--model", "softmax", "--trials",
                               str(trials), "--epochs", "2", "--population", "3", "--sampler",
                               "random", "--storage", storage, "--study-name", "r", "--out",
                               str(out), "--json", *extra])  # fmt: skip


def test_rerun_of_a_finished_study_into_a_new_out_folder(tmp_path):
    first = _cli_tune(tmp_path, tmp_path / "a", 3)
    assert first.exit_code == 0, first.output
    again = _cli_tune(tmp_path, tmp_path / "b" / "new", 3)
    assert again.exit_code == 0, again.output
    assert "study 'r' already has 3 finished trials" in again.stderr
    payload = json.loads(again.stdout)
    study = optuna.load_study(study_name="r", storage=_journal(tmp_path / "shared.journal"))
    assert len(study.trials) == 3 and payload["asked_trials"] == 0
    written = json.loads((tmp_path / "b" / "new" / "results.json").read_text())
    assert written["best_trial"] == study.best_trial.number is not None
    assert written["best_value"] == study.best_value
    assert written["best_retrained"] is True
    assert written["best_config"]["lr"] == study.best_trial.params["lr"]
    assert (tmp_path / "b" / "new" / "model").is_dir()


def test_resumed_tune_describes_the_study_best_over_all_runs(tmp_path):
    """A study's best trial from an earlier run (here one added by hand with a value no
    trial of the second run can reach): results.json and the exported model describe it."""
    first = _cli_tune(tmp_path, tmp_path / "a", 2)
    assert first.exit_code == 0, first.output
    storage = _journal(tmp_path / "shared.journal")
    study = optuna.load_study(study_name="r", storage=storage)
    template = study.trials[0]
    params = {**template.params, "lr": 0.0123}
    study.add_trial(optuna.trial.create_trial(
        params=params, distributions=template.distributions, value=1.5,
        user_attrs={"status": "finished", "seed": 7},
    ))  # fmt: skip
    second = _cli_tune(tmp_path, tmp_path / "b", 5)
    assert second.exit_code == 0, second.output
    study = optuna.load_study(study_name="r", storage=_journal(tmp_path / "shared.journal"))
    assert len(study.trials) == 5 and study.best_trial.number == 2
    written = json.loads((tmp_path / "b" / "results.json").read_text())
    assert written["best_trial"] == 2 and written["best_value"] == 1.5
    assert written["best_config"]["lr"] == 0.0123 and written["best_config"]["seed"] == 7
    assert written["test"]["accuracy"] > 0  # measured on the retrained configuration
    info = json.loads((tmp_path / "b" / "model" / "model.json").read_text())
    assert info["hyperparameters"]["lr"] == 0.0123 and info["hyperparameters"]["seed"] == 7


def test_workers_share_the_budget_and_reask_a_stale_workers_trials(tmp_path):
    """Two mirrors on one journal: the second counts the first's running trials (its claim),
    and asks them again, with the same parameters, once the first stops without finishing."""
    spec = str(tmp_path / "w.journal")
    sp = SearchSpace.from_config(None, "adam")

    def mirror():
        return StudyMirror(open_storage(spec, None), "w", ["maximize"],
                           make_sampler("random", sp, 0), make_pruner("none", 1))  # fmt: skip

    first = mirror()
    assert first.alone
    running = [first.study.ask() for _ in range(3)]
    for t in running:
        sp.suggest(t)
        first.started(t)
    first.flush()  # its claim names them
    second = mirror()
    assert not second.alone  # and so draws another random stream
    assert second.budget_left(10) == 7
    first.close(completed=False)  # stopped early: its running trials are stale at once
    assert second.budget_left(10) == 10 and second.reasked == 3
    again = [second.study.ask() for _ in range(3)]
    for t in again:
        sp.suggest(t)
    assert sorted(map(str, (t.params for t in again))) == sorted(
        map(str, (t.params for t in running))
    )
    second.close()


# ---------------------------------------------------------------------------- bookkeeping
def test_stats_count_every_call_and_sum_their_timings(iris, tmp_path):
    """The stats object's totals are the sums of its per-call timings, and its call counts are
    what the study read back with optuna.load_study holds: one ask, suggest and tell per
    trial, one report per intermediate value, one should_prune per report of a running
    member (ASHA)."""
    from optimkit.tune.tuner import STAT_KINDS

    result, mirror = _run(iris, tmp_path, trials=9, population=4, epochs=4, pruner="asha")
    stats = result.stats
    assert set(stats.calls) == set(STAT_KINDS)
    for kind in STAT_KINDS:
        assert stats.total(kind) == math.fsum(stats.calls[kind])
        assert all(s >= 0 for s in stats.calls[kind])
    assert stats.seconds == math.fsum(math.fsum(v) for v in stats.calls.values())
    study = optuna.load_study(study_name="s", storage=_journal(tmp_path / "study.journal"))
    trials = study.trials
    assert len(trials) == 9 == result.asked
    assert stats.count("ask") == stats.count("suggest") == stats.count("tell") == 9
    reports = sum(len(t.intermediate_values) for t in trials)
    assert stats.count("report") == reports
    # every report is followed by should_prune, except at a member's last epoch (it ends)
    complete = sum(1 for t in trials if t.state == optuna.trial.TrialState.COMPLETE)
    assert stats.count("prune") == reports - complete
    assert stats.count("attrs") == 9  # all of a trial's, handed to the storage when it ends
    live = {mirror.numbers[t.number]: t for t in mirror.study.get_trials(deepcopy=False)}
    for t in trials:
        assert t.intermediate_values == live[t.number].intermediate_values
        assert t.state == live[t.number].state and t.values == live[t.number].values
    # the timed calls lie inside the tuner's overhead (everything but training and testing)
    assert stats.seconds <= result.overhead_seconds + 1e-9


def _drive(sampler, n=90, pop=6):
    """Asks and tells with trials running side by side, ending in a scrambled order (some
    pruned after reporting, some failed); the params of every ask."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    running, asked = [], []
    while len(asked) < n or running:
        while len(running) < pop and len(asked) < n:
            t = study.ask()
            t.suggest_float("lr", 1e-4, 1e-1, log=True)
            t.suggest_float("wd", 1e-6, 1e-2, log=True)
            running.append(t)
            asked.append(dict(t.params))
        t = running.pop((7 * len(asked)) % len(running))
        value = -((math.log10(t.params["lr"]) + 2.5) ** 2) - (math.log10(t.params["wd"]) + 4) ** 2
        if t.number % 5 == 0:
            t.report(value - 1, 1)
            study.tell(t, state=optuna.trial.TrialState.PRUNED)
        elif t.number % 11 == 0:
            study.tell(t, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(t, value)
    return asked, study


def _fixed_study(sampler):
    """40 trials over a float (log), a float, an int and a choice: complete, pruned (with a
    learning curve) and two still running, asked from a random sampler, then copied into a
    study that asks with `sampler`."""
    src = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(1))
    for i in range(40):
        t = src.ask()
        v = (-((math.log10(t.suggest_float("lr", 1e-4, 1e-1, log=True)) + 2.5) ** 2)
             - (t.suggest_float("x", -1, 2) - 0.5) ** 2 - 0.1 * (t.suggest_int("k", 1, 8) - 3) ** 2
             + (t.suggest_categorical("c", ["a", "b", "c"]) == "b"))  # fmt: skip
        if i % 7 == 3:
            t.report(v - 1, 2)
            src.tell(t, state=optuna.trial.TrialState.PRUNED)
        elif i < 37:
            src.tell(t, v)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.add_trials(src.trials)
    return study


def _proposals(sampler, n=300):
    """`n` asks on `_fixed_study`, each failed at once (no sampler fits on a failed trial)."""
    study = _fixed_study(sampler)
    out = []
    for _ in range(n):
        t = study.ask()
        lr, x = t.suggest_float("lr", 1e-4, 1e-1, log=True), t.suggest_float("x", -1, 2)
        out.append((lr, x, t.suggest_int("k", 1, 8), t.suggest_categorical("c", ["a", "b", "c"])))
        study.tell(t, state=optuna.trial.TrialState.FAIL)
    return out


def test_tpe_batch_proposes_what_tpe_proposes():
    """Oracle: Optuna's TPESampler (multivariate, constant liar) on the same study of complete,
    pruned and running trials: the proposals have the same distribution (two-sample KS on the
    floats, chi-square on the int and the choice), from one fit; the same test tells TPE from
    random sampling."""
    from scipy import stats

    from optimkit.tune.samplers import TPEBatchSampler

    ours = TPEBatchSampler(0)
    a = _proposals(optuna.samplers.TPESampler(seed=0, multivariate=True, constant_liar=True))
    b = _proposals(ours)
    r = _proposals(optuna.samplers.RandomSampler(0))
    assert ours.fits == 1

    def p_values(p, q):
        out = [stats.ks_2samp([v[j] for v in p], [v[j] for v in q]).pvalue for j in (0, 1)]
        for j in (2, 3):
            levels = sorted({v[j] for v in p + q}, key=str)
            table = [[sum(v[j] == c for v in s) for c in levels] for s in (p, q)]
            table = [row for row in zip(*table, strict=True) if sum(row) >= 10]  # chi2's rule
            out.append(stats.chi2_contingency(table).pvalue if len(table) > 1 else 1.0)
        return out

    assert min(p_values(a, b)) > 1e-3
    assert max(p_values(a, r)) < 1e-4


def test_tpe_batch_fits_once_per_finished_trial_and_repeats_itself():
    """A fit per change in the number of finished trials (counted by brute force at each
    ask), none while trials only start or fail; the same seed, the same proposals."""
    from optimkit.tune.samplers import TPEBatchSampler

    ours = TPEBatchSampler(3)
    asked, study = _drive(ours)
    counts = []
    for t in study.trials:  # the finished trials when each trial was asked
        ended = [s for s in study.trials if s.datetime_complete is not None
                 and s.datetime_complete <= t.datetime_start
                 and s.state != optuna.trial.TrialState.FAIL]  # fmt: skip
        counts.append(len(ended))
    fitted = [c for c in counts if c >= 10]
    assert ours.fits == len(set(fitted)) < len(fitted)
    again, _ = _drive(TPEBatchSampler(3))
    assert again == asked


def test_tpe_batch_several_objectives_and_choices_only():
    """Several objectives: TPESampler's own proposals (same seed, identical). A relative space
    of a choice and a log int only (define-by-run floats aside): proposals on the int's grid,
    fitted once per finished trial."""
    from optimkit.tune.samplers import TPEBatchSampler

    def two(t):
        x, y = t.suggest_float("x", 0, 1), t.suggest_float("y", 1e-3, 1, log=True)
        return x + y, x * y

    def run(sampler, objective, directions, n):
        study = optuna.create_study(directions=directions, sampler=sampler)
        study.optimize(objective, n_trials=n)
        return [t.params for t in study.trials]

    tpe = optuna.samplers.TPESampler(seed=0, multivariate=True, constant_liar=True)
    assert run(TPEBatchSampler(0), two, ["maximize", "minimize"], 25) == run(
        tpe, two, ["maximize", "minimize"], 25
    )

    def cond(t):
        o = t.suggest_categorical("o", ["a", "b"])
        y = t.suggest_float(f"y{o}", 1e-3, 1, log=True)
        return (
            (math.log(y) + 3) ** 2
            + (o == "b")
            + abs(math.log(t.suggest_int("k", 1, 99, log=True)) - 2)
        )

    ours = TPEBatchSampler(0)
    params = run(ours, cond, ["minimize"], 40)
    assert ours.fits == 40 - 10
    assert all(isinstance(p["k"], int) and 1 <= p["k"] <= 99 for p in params)
