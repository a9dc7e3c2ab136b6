"""The same 64-trial search with optimkit's tuner and with plain Optuna + torch.optim (issue 4).

Run: ``.venv/bin/python -m benchmarks tune [--repeats 3] [--quick] [--threads 1 2]
[--scenarios parts search many] [--many-trials 1000] [--many-epochs 5]
[--populations 64 16]``.

The search: an MLP 64-128-10 (ReLU) on scikit-learn's digits (standardized, stratified
70/15/15 split, seed 0); Adam with lr in [1e-4, 1e-1] (log) and weight decay in [1e-6, 1e-2]
(log), nothing else searched; 20 epochs, batch 64, 64 trials, TPE with seed 0, no pruning; then
the same with Hyperband (resources in epochs: min 1, max 20, reduction factor 3). A trial's
value is its best validation accuracy over its epochs.

* plain: ``optuna.create_study(sampler=TPESampler(seed=0))`` in memory or on an SQLite file,
  and ``study.optimize`` running one trial at a time: ``nn.Sequential(Linear, ReLU, Linear)``
  initialized from seed = trial number, ``torch.optim.Adam(lr, weight_decay)``,
  ``F.cross_entropy``, batches of 64 from a per-epoch permutation, the validation accuracy
  after every epoch reported to the trial (and pruned when the pruner says so).
* optimkit: ``Tuner`` with a population of 64 on its default storage (an Optuna journal file,
  each trial written once, when it ends; see ``optimkit.tune.storage``) in a temporary folder, the
  same space (``SearchSpace.from_config(..., "adam", replace_defaults=True)``) and
  ``make_sampler("tpe", space, 0)`` (`TPEBatchSampler`: TPE, seed 0, multivariate, running
  trials in g, fitted once per wave). Also with a population of 16 (``--populations``: any
  list, the first also in the compile row): a population of 64 asks all 64 trials of an empty
  study at once, which TPE answers with its random start-up; 16 at a time (4 waves, each slot
  refilled as soon as its trial ends) lets TPE learn from the trials that ended, and under
  Hyperband a pruned member's slot takes a new trial at once instead of computing along
  unused. One more row
  runs the population of 64 with TrainConfig's opt-in ``compile=True, autocast=True`` (the
  optimizer step through torch.compile, bfloat16 matrix products), compiled before the timing.

Columns. wall: from opening the storage to the test accuracy of the best trial's best weights
(both sides), median of ``--repeats`` interleaved rounds. set-up: opening the storage and
creating the study (Optuna's RDBStorage creates the tables and stamps the schema version).
overhead: optimkit's ``TuneResult.overhead_seconds`` (asking, suggesting, reporting, pruning,
telling and the storage writes: everything in ``Tuner.run`` but training and testing); for
plain Optuna, the wall time minus the time in the training and test code, by the same
definition. to 0.97 (report): seconds from the start until a trial first reports a validation
accuracy >= 0.97; to 0.97 (trial): until the first trial *ends* with a value >= 0.97
(``TuneResult.time_to_target``). Best val / test: the best completed trial.

A second table times the parts of the tuner's overhead at this search's sizes: asking 64
trials, reporting and pruning 64 x 20 epochs, telling, and the storage writes of one round:
the worker's claim when 64 trials start, and the 64 ended trials (one complete trial each,
through Optuna's public ``create_new_trial``), on the journal file and on an SQLite URL
(Optuna's RDBStorage, for comparison).

Bookkeeping split (the optimkit rows of the no-pruning table, and of the many-trial table):
the tuner's timed calls (``TuneResult.stats``: time inside its calls into Optuna and into the
storage) as % of wall: ask + suggest (sampling: TPE fits its Parzen estimators when a trial's
first value is suggested), storage (`StudyMirror`: budget claims, reads of the stored trials,
one write per ended trial), report + should_prune, tell + trial attributes; "other tuner" is
the rest of ``overhead_seconds`` (the tuner's own Python between those calls).

The many-trial scenario (``--scenarios many``): 1,000 trials (``--quick``: 200 of 2 epochs)
of a tiny model, where Optuna's cost per trial shows: logistic regression 64-10 on digits
(``TrainConfig(model="mlp", hidden=())``), Adam over the same lr and weight decay ranges,
5 epochs, batch 64, the Tuner at its default population (64) on its journal file with the
default TPE (``TPEBatchSampler``: TPE's estimators fitted once per wave of asks), with Optuna's
TPESampler (the default before last: one fit per ask), and with the random sampler (what is left
without a model fit per ask); plain Optuna + torch (in memory, TPESampler, one trial at a
time) is the anchor. One thread (the smaller ``--threads``).

Threads are pinned (``torch.set_num_threads`` and threadpoolctl). Compare ratios within one
run; absolute times depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import nn

from benchmarks.threads import pinned
from optimkit.data import Dataset, load_dataset
from optimkit.train import TrainConfig
from optimkit.tune import SearchSpace, StudyMirror, Tuner, make_pruner, make_sampler, open_storage
from optimkit.tune.tuner import STAT_KINDS, Pool

SPACE = {
    "lr": {"low": 1e-4, "high": 1e-1, "log": True},
    "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True},
}
HIDDEN, BATCH, SEED, TARGET = 128, 64, 0, 0.97


@dataclass
class Outcome:
    """One run of a search."""

    wall: float
    setup: float
    overhead: float
    best_val: float
    test: float
    to_target_report: float | None
    to_target_trial: float | None
    counts: dict[str, int] = field(default_factory=dict)
    split: dict[str, float] | None = None  # optimkit: seconds per kind of call (TunerStats)
    trained: float = 0.0  # plain: seconds in training and validation code


def _count(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    return counts


# ------------------------------------------------------------------------------ plain Optuna
@dataclass
class _Progress:
    """What the plain objective notes across trials."""

    seconds: float = 0.0  # in training and validation code
    report: float | None = None  # first report >= TARGET
    trial: float | None = None  # first completed trial >= TARGET
    best: float = -math.inf
    weights: dict[str, torch.Tensor] | None = None


def _model(ds: Dataset, hidden: tuple[int, ...]) -> nn.Module:
    """nn.Sequential(Linear, ReLU, Linear) for one hidden layer, one Linear for none."""
    if not hidden:
        return nn.Linear(ds.n_features, ds.n_classes or 2)
    return nn.Sequential(
        nn.Linear(ds.n_features, hidden[0]), nn.ReLU(), nn.Linear(hidden[0], ds.n_classes or 2)
    )


def plain_optuna(
    ds: Dataset, trials: int, epochs: int, pruner: str, storage: str,
    hidden: tuple[int, ...] = (HIDDEN,),
) -> Outcome:  # fmt: skip
    """`trials` trials of plain torch, one at a time, under Optuna (storage "memory" or
    "sqlite"); see the module docstring."""
    folder = tempfile.mkdtemp(prefix="bench-tune-plain-")
    url = None if storage == "memory" else f"sqlite:///{folder}/study.db"
    start = time.perf_counter()
    study = optuna.create_study(
        storage=url, study_name="plain", direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=SEED), pruner=make_pruner(pruner, epochs),
    )  # fmt: skip
    setup = time.perf_counter() - start
    x, y, n = ds.X_train, ds.y_train, ds.n_train
    work = _Progress()

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        weight_decay = trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
        tic = time.perf_counter()
        torch.manual_seed(trial.number)
        model = _model(ds, hidden)
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        order = torch.Generator().manual_seed(trial.number)
        best, weights = -math.inf, None
        for epoch in range(epochs):
            model.train()
            for idx in torch.randperm(n, generator=order).split(BATCH):
                opt.zero_grad()
                F.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                accuracy = float((model(ds.X_val).argmax(1) == ds.y_val).double().mean())
            if accuracy > best:
                best, weights = accuracy, {k: v.clone() for k, v in model.state_dict().items()}
            if work.report is None and accuracy >= TARGET:
                work.report = time.perf_counter() - start
            work.seconds += time.perf_counter() - tic
            trial.report(accuracy, epoch + 1)
            if trial.should_prune():
                raise optuna.TrialPruned()
            tic = time.perf_counter()
        if work.trial is None and best >= TARGET:
            work.trial = time.perf_counter() - start
        if best > work.best:
            work.best, work.weights = best, weights
        work.seconds += time.perf_counter() - tic
        return best

    study.optimize(objective, n_trials=trials)
    tic = time.perf_counter()
    model = _model(ds, hidden)
    assert work.weights is not None
    model.load_state_dict(work.weights)
    with torch.no_grad():
        test = float((model.eval()(ds.X_test).argmax(1) == ds.y_test).double().mean())
    end = time.perf_counter()
    wall = end - start
    overhead = wall - setup - work.seconds - (end - tic)
    return Outcome(wall, setup, overhead, study.best_value, test, work.report, work.trial,
                   _count(study), trained=work.seconds)  # fmt: skip


# ------------------------------------------------------------------------------ optimkit
storage_ms: dict[int, list[float]] = {}  # per population: storage ms per trial, every run


class TimedTuner(Tuner):
    """The Tuner, also noting when any member first reports a val accuracy >= TARGET."""

    first_report: float | None = None

    def _step(self, pool: Pool) -> None:
        super()._step(pool)
        if self.first_report is None and bool((pool.trainer.early.best >= TARGET).any()):
            self.first_report = time.perf_counter() - self.start


def space() -> SearchSpace:
    return SearchSpace.from_config(SPACE, "adam", replace_defaults=True)


def _sampler(name: str, sp: SearchSpace) -> optuna.samplers.BaseSampler:
    """make_sampler's, or "tpe-plain": Optuna's TPESampler on the whole study, fitted at every
    ask (what optimkit's default TPE, `TPEBatchSampler`, fits once per wave)."""
    if name == "tpe-plain":
        return optuna.samplers.TPESampler(seed=SEED, multivariate=True, constant_liar=True)
    return make_sampler(name, sp, SEED)


def optimkit_tune(
    ds: Dataset, trials: int, epochs: int, pruner: str, population: int,
    hidden: tuple[int, ...] = (HIDDEN,), sampler: str = "tpe", *, compile: bool = False,
    autocast: bool = False,
) -> Outcome:  # fmt: skip
    """The same search with optimkit's Tuner on its default journal file; `speed`: TrainConfig's
    opt-in ``compile`` and ``autocast``."""
    storage_ms.setdefault(population, [])
    folder = Path(tempfile.mkdtemp(prefix="bench-tune-optimkit-"))
    sp = space()
    start = time.perf_counter()
    mirror = StudyMirror(open_storage(None, folder), "optimkit", ["maximize"],
                         _sampler(sampler, sp), make_pruner(pruner, epochs))  # fmt: skip
    setup = time.perf_counter() - start
    base = TrainConfig(model="mlp", model_options={"hidden": hidden}, optimizer="adam",
                       epochs=epochs, batch_size=BATCH, seed=SEED, compile=compile,
                       autocast=autocast)  # fmt: skip
    tuner = TimedTuner(ds, base, sp, mirror, trials=trials, population=population, target=TARGET)
    result = tuner.run()
    storage_ms[population].append(1e3 * mirror.store_seconds / max(result.asked, 1))
    wall = time.perf_counter() - start
    assert result.best_value is not None
    split = {kind: result.stats.total(kind) for kind in STAT_KINDS}
    return Outcome(wall, setup, result.overhead_seconds, result.best_value,
                   result.test["accuracy"], tuner.first_report, result.time_to_target,
                   dict(result.counts), split)  # fmt: skip


# ------------------------------------------------------------------------------ the table
def interleaved(variants: dict[str, Callable[[], Outcome]], repeats: int) -> dict[str, Outcome]:
    """Each variant `repeats` times, in rounds whose order rotates; per variant the median of
    every time and the last run's results."""
    runs: dict[str, list[Outcome]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            runs[name].append(variants[name]())

    def median(values: list[float | None]) -> float | None:
        return None if any(v is None for v in values) else statistics.median(values)  # type: ignore[type-var]

    out = {}
    for name, rs in runs.items():
        last = rs[-1]
        out[name] = Outcome(
            statistics.median(o.wall for o in rs), statistics.median(o.setup for o in rs),
            statistics.median(o.overhead for o in rs), last.best_val, last.test,
            median([o.to_target_report for o in rs]), median([o.to_target_trial for o in rs]),
            last.counts,
            None if last.split is None else {k: statistics.median(o.split[k] for o in rs)  # type: ignore[index]
                                             for k in last.split},
            statistics.median(o.trained for o in rs),
        )  # fmt: skip
    return out


def _s(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def table(title: str, outcomes: dict[str, Outcome], baseline: str, n_val: int) -> Table:
    t = Table(title=title)
    for col in ("variant", "wall s", "speed-up", "set-up s", "overhead s", "overhead %",
                "best val acc", "vs baseline (val examples)", "test acc", "to 0.97 (report) s",
                "to 0.97 (trial) s", "trials"):  # fmt: skip
        t.add_column(col, justify="left" if col in ("variant", "trials") else "right")
    base = outcomes[baseline]
    for name, o in outcomes.items():
        t.add_row(
            name + (" (baseline)" if name == baseline else ""),
            f"{o.wall:.2f}",
            f"{base.wall / o.wall:.1f}x",
            f"{o.setup:.2f}",
            f"{o.overhead:.2f}",
            f"{100 * o.overhead / o.wall:.1f}%",
            f"{o.best_val:.4f}",
            f"{100 * (o.best_val - base.best_val):+.2f} pts "
            f"({round(n_val * (o.best_val - base.best_val)):+d})",
            f"{o.test:.4f}",
            _s(o.to_target_report),
            _s(o.to_target_trial),
            ", ".join(f"{n} {s}" for s, n in sorted(o.counts.items())),
        )
    return t


def search(
    ds: Dataset,
    trials: int,
    epochs: int,
    populations: tuple[int, ...],
    repeats: int,
    threads: tuple[int, ...],
) -> tuple[Table, Table, Table]:
    """The no-pruning table (every variant at every thread count), the bookkeeping split of
    its optimkit rows, and the Hyperband table (each side at its faster thread count)."""

    def plain(storage: str, th: int, pruner: str) -> Callable[[], Outcome]:
        def run() -> Outcome:
            with pinned(th):
                return plain_optuna(ds, trials, epochs, pruner, storage)

        return run

    def ours(population: int, th: int, pruner: str, **speed: bool) -> Callable[[], Outcome]:
        def run() -> Outcome:
            with pinned(th):
                return optimkit_tune(ds, trials, epochs, pruner, population,
                                     compile=speed.get("compile", False),
                                     autocast=speed.get("autocast", False))  # fmt: skip

        return run

    def plain_name(storage: str, th: int) -> str:
        return f"plain Optuna, {storage}, {th} thr"

    def ours_name(population: int, th: int) -> str:
        return f"optimkit Tuner, journal, population {population}, {th} thr"

    with pinned(1):  # warm-up: lazy initialization of torch, Optuna, SQLAlchemy and alembic
        plain_optuna(ds, 2, 1, "none", "sqlite")
        optimkit_tune(ds, 2, 1, "none", 2)
    variants: dict[str, Callable[[], Outcome]] = {}
    for storage in ("memory", "sqlite"):
        for th in threads:
            variants[plain_name(storage, th)] = plain(storage, th, "none")
    for population in populations:
        for th in threads:
            variants[ours_name(population, th)] = ours(population, th, "none")
    # the opt-in paths at the largest population and thread count, compiled before the timing
    # (inductor's kernels are made once per process, thread count and shapes)
    fast = {"compile": True, "autocast": True}
    th = max(threads)
    with pinned(th):
        optimkit_tune(ds, populations[0], 1, "none", populations[0], compile=True, autocast=True)
    variants[ours_name(populations[0], th) + ", compile + bf16"] = ours(
        populations[0], th, "none", **fast
    )
    first = interleaved(variants, repeats)
    baseline = min((plain_name(s, th) for s in ("memory", "sqlite") for th in threads),
                   key=lambda n: first[n].wall)  # fmt: skip
    th_plain = min(threads, key=lambda th: min(first[plain_name(s, th)].wall
                                               for s in ("memory", "sqlite")))  # fmt: skip
    th_ours = min(threads, key=lambda th: first[ours_name(populations[0], th)].wall)
    pruned = {
        plain_name("memory", th_plain): plain("memory", th_plain, "hyperband"),
        plain_name("sqlite", th_plain): plain("sqlite", th_plain, "hyperband"),
    }
    for population in populations:
        pruned[ours_name(population, th_ours)] = ours(population, th_ours, "hyperband")
    second = interleaved(pruned, repeats)
    hb_baseline = min(list(pruned)[:2], key=lambda n: second[n].wall)
    what = (f"{trials} trials, MLP {ds.n_features}-{HIDDEN}-{ds.n_classes} on digits, Adam "
            f"(lr, weight decay), {epochs} epochs, batch {BATCH}, TPE seed {SEED}")  # fmt: skip
    ours_rows = {n: o for n, o in first.items() if o.split is not None}
    return (
        table(f"{what}, no pruning; median of {repeats}", first, baseline, ds.n_val),
        split_table(
            f"bookkeeping of the optimkit rows above (% of wall, median of {repeats})",
            ours_rows,
            trials,
        ),
        table(f"{what}, Hyperband; median of {repeats}", second, hb_baseline, ds.n_val),
    )


#: the bookkeeping columns: kinds of `TunerStats` calls summed per column
GROUPS = {
    "ask + suggest (sampling)": ("ask", "suggest"),
    "storage": ("storage",),
    "report + prune": ("report", "prune"),
    "tell + attrs": ("tell", "attrs"),
}


def split_cells(o: Outcome, trials: int) -> dict[str, str]:
    """A row of `split_table`: each group's timed calls, the rest of the tuner's overhead (its
    own Python between those calls) and the whole overhead, as % of the wall time; ms/trial."""
    assert o.split is not None
    cells = {name: f"{100 * sum(o.split[k] for k in kinds) / o.wall:.1f}%"
             for name, kinds in GROUPS.items()}  # fmt: skip
    cells["other tuner"] = f"{100 * (o.overhead - sum(o.split.values())) / o.wall:.1f}%"
    cells["bookkeeping"] = f"{100 * o.overhead / o.wall:.1f}%"
    cells["ms / trial"] = f"{1e3 * o.overhead / trials:.2f}"
    return cells


def split_table(title: str, outcomes: dict[str, Outcome], trials: int) -> Table:
    """Each optimkit row's bookkeeping (`split_cells`; the timed calls are `TuneResult.stats`)."""
    t = Table(title=title)
    for col in ("variant", "wall s", *GROUPS, "other tuner", "bookkeeping", "ms / trial"):
        t.add_column(col, justify="left" if col == "variant" else "right")
    for name, o in outcomes.items():
        t.add_row(name, f"{o.wall:.2f}", *split_cells(o, trials).values())
    return t


TINY: tuple[
    int, ...
] = ()  # the many-trial model: multinomial logistic regression (no hidden layer)


def many_trials(
    ds: Dataset, trials: int, epochs: int, repeats: int, th: int, samplers: tuple[str, ...],
    plain: bool = True,
) -> tuple[Table, Table]:  # fmt: skip
    """`trials` trials of a tiny model (logistic regression 64-10 on digits, Adam, lr and
    weight decay, `epochs` epochs, batch 64), the Tuner at its default population (64) with
    each of `samplers`, and plain Optuna + torch in memory: wall time, and the bookkeeping as
    a share of it, where Optuna's cost per trial shows."""
    population = 64
    variants: dict[str, Callable[[], Outcome]] = {}
    if plain:

        def run_plain() -> Outcome:
            with pinned(th):
                return plain_optuna(ds, trials, epochs, "none", "memory", TINY)

        variants[f"plain Optuna, memory, {th} thr"] = run_plain
    for sampler in samplers:

        def run(sampler: str = sampler) -> Outcome:
            with pinned(th):
                return optimkit_tune(ds, trials, epochs, "none", population, TINY, sampler)

        label = {"tpe": "TPE (default: TPEBatchSampler)",
                 "tpe-plain": "TPESampler on the whole study"}.get(sampler, sampler)  # fmt: skip
        variants[f"optimkit Tuner, journal, population {population}, {th} thr, {label}"] = run
    out = interleaved(variants, repeats)
    what = (f"{trials} trials, logistic regression {ds.n_features}-{ds.n_classes} on digits, "
            f"Adam (lr, weight decay), {epochs} epochs, batch {BATCH}, seed {SEED}")  # fmt: skip
    base = next(iter(out))
    main = Table(title=f"{what}, no pruning; median of {repeats}")
    for col in ("variant", "wall s", "speed-up", "trials / s", "training s", "bookkeeping s",
                "bookkeeping %", "best val acc", "test acc", "trials"):  # fmt: skip
        main.add_column(col, justify="left" if col in ("variant", "trials") else "right")
    for name, o in out.items():
        training = o.trained if o.split is None else o.wall - o.setup - o.overhead
        main.add_row(
            name, f"{o.wall:.2f}", f"{out[base].wall / o.wall:.1f}x", f"{trials / o.wall:.0f}",
            f"{training:.2f}", f"{o.overhead:.2f}", f"{100 * o.overhead / o.wall:.1f}%",
            f"{o.best_val:.4f}", f"{o.test:.4f}",
            ", ".join(f"{n} {s}" for s, n in sorted(o.counts.items())),
        )  # fmt: skip
    ours = {n: o for n, o in out.items() if o.split is not None}
    return main, split_table(f"bookkeeping of the {trials}-trial optimkit rows (% of wall, "
                             f"median of {repeats})", ours, trials)  # fmt: skip


# ------------------------------------------------------------------------------ overhead parts
def _mirror(storage: str | None, folder: Path, pruner: str, epochs: int) -> StudyMirror:
    sp = space()
    return StudyMirror(open_storage(storage, folder), "parts", ["maximize"],
                       make_sampler("tpe", sp, SEED), make_pruner(pruner, epochs))  # fmt: skip


def overhead_parts(trials: int, epochs: int, repeats: int) -> Table:
    """Milliseconds of each part of the tuner's bookkeeping for one round of `trials` trials
    (synthetic learning curves; no training)."""
    sp = space()
    parts: dict[str, list[float]] = {}

    def note(name: str, seconds: float) -> None:
        parts.setdefault(name, []).append(1e3 * seconds)

    for _ in range(repeats):
        for pruner, storage in (("none", "journal"), ("hyperband", "journal"), ("none", "sqlite")):
            folder = Path(tempfile.mkdtemp(prefix="bench-tune-parts-"))
            spec = None if storage == "journal" else f"sqlite:///{folder / 'study.db'}"
            mirror = _mirror(spec, folder, pruner, epochs)
            study = mirror.study
            main = pruner == "none" and storage == "journal"
            tic = time.perf_counter()
            live = [study.ask() for _ in range(trials)]
            for t in live:
                sp.suggest(t)
                mirror.started(t)
            if main:
                note(f"ask + suggest {trials} trials (TPE, empty study)", time.perf_counter() - tic)
            tic = time.perf_counter()
            mirror.flush()
            note(f"{storage} write: the claim of {trials} started trials",
                 time.perf_counter() - tic)  # fmt: skip
            tic = time.perf_counter()
            for epoch in range(1, epochs + 1):
                for i, t in enumerate(live):
                    t.report(0.5 + 0.4 * epoch / epochs + 0.001 * i, step=epoch)
                    t.should_prune()
            if storage == "journal":
                note(f"report + should_prune, {trials} x {epochs} ({pruner})",
                     time.perf_counter() - tic)  # fmt: skip
            if pruner != "none":
                mirror.close(completed=False)
                continue
            tic = time.perf_counter()
            for t in live:
                for key in ("status", "epochs", "best_epoch", "seconds", "population", "seed"):
                    t.set_user_attr(key, 1)
                study.tell(t, 0.9)
                mirror.finished(t.number)
            if main:
                note(f"user attrs + tell {trials} trials", time.perf_counter() - tic)
            tic = time.perf_counter()
            mirror.flush()
            note(f"{storage} write: {trials} trials ended ({epochs} values each)",
                 time.perf_counter() - tic)  # fmt: skip
            tic = time.perf_counter()
            mirror.budget_left(2 * trials)
            note(f"{storage} read: budget (claims, {trials} stored trials)",
                 time.perf_counter() - tic)  # fmt: skip
            mirror.close()
            if not main:
                continue
            tic = time.perf_counter()
            more = [study.ask() for _ in range(trials)]
            for t in more:
                sp.suggest(t)
            note(f"ask + suggest {trials} more (TPE on {trials} complete)",
                 time.perf_counter() - tic)  # fmt: skip
    out = Table(title=f"parts of the tuner's overhead, one round of {trials} trials (median of "
                      f"{repeats}, ms)")  # fmt: skip
    out.add_column("part")
    out.add_column("ms", justify="right")
    for name, ms in parts.items():
        out.add_row(name, f"{statistics.median(ms):.1f}")
    return out


SCENARIOS = ("parts", "search", "many")


def main(
    repeats: int = 3, quick: bool = False, threads: tuple[int, ...] = (1, 2),
    scenarios: tuple[str, ...] = SCENARIOS, many: int | None = None, many_epochs: int | None = None,
    pops: tuple[int, ...] = (),
) -> None:  # fmt: skip
    """The overhead parts, the 64-trial search (no pruning, then Hyperband) and the
    1,000-trial search of a tiny model; `quick`: 16 trials of 5 epochs, 200 tiny trials of
    2 epochs, one round."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    console = Console()
    if not console.is_terminal:  # a log or a pipe: wide enough for the tables
        console = Console(width=240)
    ds = load_dataset("digits", seed=SEED)
    trials, epochs = (16, 5) if quick else (64, 20)
    rounds = 1 if quick else repeats
    if "parts" in scenarios:
        with pinned(1):
            console.print(overhead_parts(trials, epochs, repeats))
    if "search" in scenarios:
        populations = pops or (trials, trials // 4)
        for t in search(ds, trials, epochs, populations, rounds, threads):
            console.print(t)
        for population, ms in storage_ms.items():
            median = statistics.median(ms)
            console.print(f"storage reads and writes of the Tuner, population {population}: "
                          f"median {median:.2f} ms per trial over {len(ms)} runs")  # fmt: skip
    if "many" in scenarios:
        n = many or (200 if quick else 1000)
        n_epochs = many_epochs or (2 if quick else 5)
        samplers = ("tpe",) if quick else ("tpe", "tpe-plain", "random")
        with pinned(1):  # warm-up
            optimkit_tune(ds, 2, 1, "none", 2, TINY)
        for t in many_trials(ds, n, n_epochs, rounds, min(threads), samplers):
            console.print(t)


def parser() -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(prog="python -m benchmarks tune",
                                  description=__doc__.splitlines()[0])  # fmt: skip
    out.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median)")
    out.add_argument("--quick", action="store_true",
                     help="16 trials x 5 epochs, 200 tiny ones x 2 epochs, one round")  # fmt: skip
    out.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    out.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS),
                     help="parts (the overhead's parts), search (64 trials), many (1,000 "
                          "trials of a tiny model)")  # fmt: skip
    out.add_argument("--many-trials", type=int, default=None, help="trials of the many scenario")
    out.add_argument("--many-epochs", type=int, default=None, help="epochs of the many scenario")
    out.add_argument("--populations", type=int, nargs="+", default=[],
                     help="the Tuner's populations in the 64-trial search (default: 64 16; "
                          "the first also runs compile + bf16)")  # fmt: skip
    return out


def cli(argv: Sequence[str]) -> None:
    args = parser().parse_args(list(argv))
    if args.repeats < 1 or min(args.threads) < 1:
        parser().error("--repeats and --threads: expected integers >= 1")
    for name in ("many_trials", "many_epochs"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser().error(f"--{name.replace('_', '-')}: expected an integer >= 1")
    if args.populations and min(args.populations) < 1:
        parser().error("--populations: expected integers >= 1")
    main(args.repeats, args.quick, tuple(args.threads), tuple(args.scenarios), args.many_trials,
         args.many_epochs, tuple(args.populations))  # fmt: skip


if __name__ == "__main__":
    import sys

    cli(sys.argv[1:])
