"""The tuner's per-trial bookkeeping on the default journal file (issue 12 item 4): a round of
ended trials is written under one lock with its fsync in a background thread, the stored trials
are exactly what plain Optuna writes and reads, nothing a round wrote is lost to a kill -9 of
the process, the background fsync is joined at close, and the incremental reads of the journal
see what other writers add."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import threading
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from optimkit.data import load_dataset
from optimkit.train import TrainConfig
from optimkit.tune import SearchSpace, StudyMirror, Tuner, make_pruner, make_sampler, open_storage
from optimkit.tune.storage import SLOT_KEY, LocalJournal, counts_toward_budget

optuna.logging.set_verbosity(optuna.logging.WARNING)
FSYNC_THREAD = "optimkit-journal-fsync"


def _plain(path: Path) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(path)))


def _round(mirror: StudyMirror, n: int, offset: int = 0) -> list[dict]:
    """Ask, suggest, tell and hand over `n` trials of the live study (attributes and a curve
    kept outside it, as the tuner does without a pruner); one flush. Their expected records."""
    study, expected = mirror.study, []
    trials = [study.ask() for _ in range(n)]
    for t in trials:
        t.suggest_float("lr", 1e-4, 1e-1, log=True)
        t.suggest_categorical("act", ["relu", "tanh"])
        mirror.started(t)
    for i, t in enumerate(trials):
        curve = {e: 0.1 * e + 0.01 * (i + offset) for e in (1, 2, 3)}
        attrs = {"status": "finished", "epochs": 3, "seed": i + offset, "curve": [1.5, 2]}
        state = optuna.trial.TrialState.PRUNED if i % 3 == 2 else None
        if state is None:
            study.tell(t, max(curve.values()))
        else:
            study.tell(t, state=state)
        mirror.finished(t.number, attrs, curve)
        expected.append({"params": dict(t.params), "attrs": attrs, "curve": curve,
                         "value": None if state else max(curve.values())})  # fmt: skip
    mirror.flush()
    return expected


def _mirror(path: Path) -> StudyMirror:
    sampler, pruner = optuna.samplers.RandomSampler(seed=0), optuna.pruners.NopPruner()
    return StudyMirror(open_storage(f"journal:{path}", None), "s", ["maximize"], sampler, pruner)


def test_a_round_reads_back_as_plain_optuna_writes_it(tmp_path):
    """The trials of two rounds, read by plain Optuna, equal the same finished trials written
    through plain Optuna's own JournalStorage (the oracle): params, distributions, values,
    state, intermediate values, user attributes, start and end times."""
    mirror = _mirror(tmp_path / "study.journal")
    expected = _round(mirror, 7) + _round(mirror, 5, offset=7)
    mirror.close()
    ours = optuna.load_study(study_name="s", storage=_plain(tmp_path / "study.journal")).trials
    oracle = _plain(tmp_path / "oracle.journal")
    oracle_id = oracle.create_new_study([optuna.study.StudyDirection.MAXIMIZE], "s")
    live = mirror.study.get_trials(deepcopy=False)
    for t in live:  # the live trial as the tuner stores it: its attributes and curve added
        template = optuna.trial.create_trial(
            state=t.state, values=t.values, params=t.params, distributions=t.distributions,
            user_attrs=expected[t.number]["attrs"],
            intermediate_values=expected[t.number]["curve"],
        )  # fmt: skip
        tid = oracle.create_new_trial(oracle_id, template_trial=template)
        assert t.datetime_start is not None and t.datetime_complete is not None
    theirs = optuna.load_study(study_name="s", storage=_plain(tmp_path / "oracle.journal")).trials
    assert len(ours) == len(theirs) == 12 and tid >= 0
    for a, b, t, e in zip(ours, theirs, live, expected, strict=True):
        assert a.number == b.number == mirror.numbers[t.number]
        assert (a.state, a.values, a.params) == (b.state, b.values, b.params)
        assert a.distributions == b.distributions and a.params == e["params"]
        assert a.intermediate_values == b.intermediate_values == e["curve"]
        assert a.user_attrs == b.user_attrs == e["attrs"]
        assert a.value == e["value"]
        assert (a.datetime_start, a.datetime_complete) == (t.datetime_start, t.datetime_complete)
        assert isinstance(a.system_attrs[SLOT_KEY], str)


_KILLED = """
import json, os, signal, sys
sys.path.insert(0, {tests!r})
import optuna
from test_tune_bookkeeping import _mirror, _round
from pathlib import Path
mirror = _mirror(Path({path!r}))
expected = _round(mirror, 6)
print(json.dumps(expected), flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # right after the round's flush: no close, no fsync wait
"""


def test_a_kill_9_right_after_a_round_keeps_its_trials(tmp_path):
    path = tmp_path / "study.journal"
    code = _KILLED.format(tests=str(Path(__file__).parent), path=str(path))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    expected = json.loads(proc.stdout)
    trials = optuna.load_study(study_name="s", storage=_plain(path)).trials
    assert len(trials) == 6
    for t, e in zip(trials, expected, strict=True):
        assert t.params == e["params"] and t.user_attrs == e["attrs"]
        assert t.intermediate_values == {int(k): v for k, v in e["curve"].items()}
        assert t.value == e["value"]


def test_the_background_fsync_is_joined_at_close(tmp_path):
    mirror = _mirror(tmp_path / "study.journal")
    journal = mirror.storage
    assert isinstance(journal, LocalJournal)
    _round(mirror, 4)  # its fsync asked of the background thread
    assert any(t.name == FSYNC_THREAD for t in threading.enumerate())
    mirror.close()
    assert not any(t.name == FSYNC_THREAD for t in threading.enumerate())
    assert journal.file.unsynced == 0  # every append of this process was fsynced
    # after close the file is still usable: a later sync starts the thread again
    journal.set_study_user_attr(mirror.study_id, "k", 1)
    assert journal.file.unsynced == 1
    journal.sync(wait=False)
    journal.close()
    assert journal.file.unsynced == 0
    assert not any(t.name == FSYNC_THREAD for t in threading.enumerate())


def test_reads_see_what_another_writer_adds(tmp_path):
    """The journal's reads skip an unchanged file; a plain Optuna writer's trials (one RUNNING,
    finished later) are seen, and the budget counts as a recount from scratch does."""
    path = tmp_path / "study.journal"
    mirror = _mirror(path)
    _round(mirror, 3)
    other = optuna.load_study(study_name="s", storage=_plain(path))
    running = other.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)})
    other.add_trial(optuna.trial.create_trial(params={"lr": 0.01}, value=0.5, distributions={
        "lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}))  # fmt: skip
    assert mirror.budget_left(10) == 10 - 4
    assert mirror.complete(4) and not mirror.complete(5)
    other.tell(running, 0.7)
    assert mirror.complete(5)
    stored = optuna.load_study(study_name="s", storage=_plain(path)).trials
    assert mirror.finished_count() == sum(counts_toward_budget(t) for t in stored) == 5
    live = mirror.study.get_trials(deepcopy=False)
    assert sorted(t.value for t in live if t.value is not None and t.value >= 0.5) == [0.5, 0.7]
    mirror.close()


def test_tuner_without_a_pruner_stores_its_curves_and_repeats_itself(tmp_path):
    """No pruner: the curve is kept by the tuner and stored once per trial; the stored study
    equals, trial for trial, a run with a pruner that never prunes (median after 99 epochs,
    whose reports go to the live study every epoch), and the same seed repeats it."""
    ds = load_dataset("iris", seed=0)
    sp = SearchSpace.from_config(None, "adam")

    def run(out: Path, pruner: optuna.pruners.BasePruner) -> list[optuna.trial.FrozenTrial]:
        mirror = StudyMirror(open_storage(None, out), "s", ["maximize"],
                             make_sampler("tpe", sp, 0), pruner)  # fmt: skip
        base = TrainConfig(model="mlp", model_options={"hidden": (8,)}, epochs=3, batch_size=16)
        Tuner(ds, base, sp, mirror, trials=14, population=4).run()
        return optuna.load_study(study_name="s", storage=_plain(out / "study.journal")).trials

    a = run(tmp_path / "a", make_pruner("none", 3))
    b = run(tmp_path / "b", make_pruner("none", 3))
    c = run(tmp_path / "c", optuna.pruners.MedianPruner(n_warmup_steps=99))
    assert len(a) == len(b) == len(c) == 14
    for x, y, z in zip(a, b, c, strict=True):
        assert x.params == y.params == z.params and x.values == y.values == z.values
        assert x.intermediate_values == y.intermediate_values == z.intermediate_values
        assert len(x.intermediate_values) == 3
        assert max(x.intermediate_values.values()) == x.value
        drop = ("seconds",)  # wall-clock
        assert {k: v for k, v in x.user_attrs.items() if k not in drop} == \
            {k: v for k, v in z.user_attrs.items() if k not in drop}  # fmt: skip
        assert math.isfinite(x.user_attrs["seconds"])
