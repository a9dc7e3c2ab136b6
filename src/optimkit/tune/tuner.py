"""The tuner: Optuna trials trained as populations, with continuous batching.

Trials are asked in batches. Each trial's configuration splits into a shape (optimizer and its
flags, batch size, architecture, schedule) and per-member values (lr, weight decay, betas,
momentum, seed, ...); trials of one shape train together as one `PopulationTrainer`. Every
epoch each member's validation metric is an Optuna intermediate value: reported to the live
study where a pruner decides per member on it, otherwise kept by the tuner and stored with the
trial when it ends, as its attributes are (one write per trial, see `optimkit.tune.storage`).
A member that finishes, is pruned, stops early or diverges frees its slot, which is refilled
at once with a new trial of the same shape (trials of a new shape start a population of their
own), so populations stay full until the budget (trials, timeout) is spent.

The budget (`trials`) is the study's: finished trials of earlier runs and of other processes
on the same study count, as do trials other live processes are running (see
`optimkit.tune.storage`). A grid sampler's study ends when the grid is covered. The result
describes the study's best trial over every run; when that trial ran in an earlier run (or
in another process), its configuration is trained again, once, for the test metrics and the
exported model.

Bookkeeping is measured, not guessed: `TuneResult.stats` (`TunerStats`) holds the seconds of
every call the tuner makes into Optuna (ask, suggest, report, should_prune, tell, trial
attributes) and into its storage, and `overhead_seconds` everything in the run but training
and testing.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import optuna
import torch
from torch import nn

from optimkit.data import Dataset
from optimkit.train import PopulationTrainer, TrainConfig
from optimkit.train.trainer import FAILED, RUNNING, STATUS_NAMES, TASK_METRICS
from optimkit.tune.space import OPTIMIZER_ALIASES, SearchSpace, split_config
from optimkit.tune.space import member_of as space_member_of
from optimkit.tune.storage import StudyMirror

OBJECTIVES = ("metric", "seconds", "params")
DEFAULT_METRIC = {"classification": "accuracy", "regression": "r2", "ratings": "rmse"}


#: what `TunerStats` times: the tuner's calls into Optuna (ask; suggest, where a relative
#: sampler such as TPE samples; report; should_prune; tell; the trial attributes) and into
#: its storage (`StudyMirror`: budget claims, reads of others' trials, the one write per trial)
STAT_KINDS = ("ask", "suggest", "report", "prune", "tell", "attrs", "storage")


@dataclass
class TunerStats:
    """Seconds of every timed call of one run, by kind (see `STAT_KINDS`): `calls[kind]` lists
    each call's seconds, `total(kind)` and `count(kind)` sum them, `seconds` is every kind's."""

    calls: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in STAT_KINDS})

    @contextmanager
    def timed(self, kind: str) -> Iterator[None]:
        tic = time.perf_counter()
        try:
            yield
        finally:
            self.calls[kind].append(time.perf_counter() - tic)

    def total(self, kind: str) -> float:
        return math.fsum(self.calls[kind])

    def count(self, kind: str) -> int:
        return len(self.calls[kind])

    @property
    def seconds(self) -> float:
        return math.fsum(self.total(k) for k in self.calls)


@dataclass
class Pool:
    """One population: a trainer and the trial in each slot (None = free)."""

    shape: tuple[tuple[str, Any], ...]
    trainer: PopulationTrainer
    trials: list[optuna.Trial | None]
    seconds: list[float] = field(default_factory=list)
    curves: list[list[tuple[int, float]]] = field(default_factory=list)  # (epoch, value)

    def free_slots(self) -> list[int]:
        return [k for k, t in enumerate(self.trials) if t is None]

    def active(self) -> bool:
        return any(t is not None for t in self.trials)


@dataclass
class Incumbent:
    number: int
    value: float
    config: dict[str, Any]
    module: nn.Module
    trainer: PopulationTrainer
    slot: int


@dataclass
class TuneResult:
    study: optuna.Study
    best_number: int | None
    best_config: dict[str, Any] | None
    best_value: float | None
    test: dict[str, float]
    counts: dict[str, int]
    seconds: float
    overhead_seconds: float
    best_module: nn.Module | None = None
    best_trainer: PopulationTrainer | None = None
    best_slot: int | None = None
    metric: str = ""
    time_to_target: float | None = None
    asked: int = 0  # trials asked in this run
    finished_before: int = 0  # trials of the study that counted toward the budget at start
    best_retrained: bool = False  # the best trial ran earlier: its configuration trained again
    stats: TunerStats = field(default_factory=TunerStats)  # the run's timed calls, by kind


class Tuner:
    """Run a study over `space` with the population trainer; see the module docstring."""

    def __init__(
        self,
        dataset: Dataset,
        base: TrainConfig,
        space: SearchSpace,
        mirror: StudyMirror,
        *,
        trials: int,
        timeout: float | None = None,
        population: int = 64,
        metric: str | None = None,
        objectives: tuple[str, ...] = ("metric",),
        target: float | None = None,
        on_trial: Callable[[int, int], None] | None = None,
    ) -> None:
        if trials < 1:
            raise ValueError(f"trials: expected an int >= 1, got {trials}")
        if population < 1:
            raise ValueError(f"population: expected an int >= 1, got {population}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout: expected seconds > 0, got {timeout}")
        unknown = [o for o in objectives if o not in OBJECTIVES]
        if unknown or not objectives or objectives[0] != "metric":
            raise ValueError(f"objectives: expected 'metric' first, then any of seconds, params; "
                             f"got {', '.join(objectives)}")  # fmt: skip
        self.dataset, self.base, self.space, self.mirror = dataset, base, space, mirror
        self.study = mirror.study
        self.trials, self.timeout, self.population = trials, timeout, population
        self.metric = metric or DEFAULT_METRIC[dataset.task]
        if self.metric not in TASK_METRICS[dataset.task]:
            raise ValueError(f"metric: {self.metric!r} is not a {dataset.task} metric; valid: "
                             f"{', '.join(TASK_METRICS[dataset.task])}")  # fmt: skip
        self.objectives = objectives
        # Optuna prunes single-objective studies only; NopPruner never prunes (skip the call)
        self.prunes = len(objectives) == 1 and not isinstance(
            self.study.pruner, optuna.pruners.NopPruner
        )
        self.target = target
        self.on_trial = on_trial
        self.pools: list[Pool] = []
        self.pending: dict[tuple, list[tuple[optuna.Trial, dict[str, Any]]]] = defaultdict(list)
        self.asked = 0
        self.finished_before = mirror.finished_count()
        sampler = self.study.sampler
        self.grid = sampler if isinstance(sampler, optuna.samplers.GridSampler) else None
        self.incumbent: Incumbent | None = None
        self.overhead = 0.0
        self.stats = TunerStats()
        self.start = 0.0
        self.first_target: float | None = None
        self.poll = 0.2  # seconds between looks at the study while others finish it
        self.describe_best = True  # False: a worker of several (its driver describes the best)

    # ------------------------------------------------------------------------------ asking
    def _running(self) -> int:
        return sum(1 for p in self.pools for t in p.trials if t is not None)

    def _ask(self) -> None:
        """Claim as many trials as there are free slots (see `StudyMirror.claim`: workers on
        one study never ask more than the budget in all), ask them, and place them."""
        tic = time.perf_counter()
        free = self.population - self._running() - sum(map(len, self.pending.values()))
        timed_out = self.timeout is not None and time.perf_counter() - self.start >= self.timeout
        timed = self.stats.timed
        n = 0
        if free > 0 and not timed_out:
            with timed("storage"):
                n = self.mirror.claim(free, self.trials)
        for _ in range(n):
            if self.grid is not None and self._grid_left() <= 0:
                with timed("storage"):
                    self.mirror.release_unasked()
                break  # every grid point is finished or running
            with timed("ask"):
                trial = self.study.ask()
            with timed("suggest"):
                config = self.space.suggest(trial)
            config.setdefault("seed", self.base.seed + trial.number)
            shape, _ = split_config(config)
            self.pending[shape].append((trial, config))
            with timed("storage"):
                self.mirror.started(trial)
            self.asked += 1
        self.overhead += time.perf_counter() - tic
        for shape in list(self.pending):
            queue = self.pending[shape]
            for pool in self.pools:
                if pool.shape != shape:
                    continue
                placed = {}
                for k in pool.free_slots():
                    if not queue:
                        break
                    trial, config = queue.pop(0)
                    placed[k] = member_of(config)
                    pool.trials[k], pool.seconds[k], pool.curves[k] = trial, 0.0, []
                pool.trainer.replace_members(placed)  # the slots reset together
            if queue:
                self.pools.append(self._new_pool(shape, queue))
            del self.pending[shape]

    def _grid_left(self) -> float:
        """Grid points neither finished nor running (GridSampler would ask a covered one
        again), read from the trials' own record of the grid (system attributes)."""
        space, covered = None, set()
        for t in reversed(self.study.get_trials(deepcopy=False)):
            attrs = t.system_attrs
            if "grid_id" not in attrs or t.state == optuna.trial.TrialState.WAITING:
                continue
            if space is None:  # the grid of the latest trial
                space = attrs.get("search_space")
            if attrs.get("search_space") == space:
                covered.add(attrs["grid_id"])
        if not isinstance(space, dict):
            return math.inf
        return math.prod(len(v) for v in space.values()) - len(covered)

    def _new_pool(
        self, shape: tuple, queue: Sequence[tuple[optuna.Trial | None, dict[str, Any]]]
    ) -> Pool:
        fixed = dict(shape)
        name = fixed["optimizer"]
        optimizer = OPTIMIZER_ALIASES.get(name, (name, {}))[0]
        model_options = dict(self.base.model_options)
        for key in ("activation", "dropout", "batch_norm", "residual"):
            if key in fixed:
                model_options[key] = fixed[key]
        if "hidden" in fixed:
            text = str(fixed["hidden"])
            model_options["hidden"] = tuple(int(w) for w in text.split("-")) if text else ()
        members = [member_of(config) for _, config in queue]
        config = replace(
            self.base, optimizer=optimizer, model_options=model_options,
            batch_size=fixed.get("batch_size", self.base.batch_size),
            schedule=fixed.get("schedule", self.base.schedule),
            monitor=f"val_{self.metric}", checkpoint_every=None,
        )  # fmt: skip
        trainer = PopulationTrainer(self.dataset, config, members)
        n = len(queue)
        return Pool(shape, trainer, [t for t, _ in queue], [0.0] * n, [[] for _ in range(n)])

    # ------------------------------------------------------------------------------ stepping
    def _step(self, pool: Pool) -> None:
        trainer = pool.trainer
        was_running = trainer.active.clone()
        tic = time.perf_counter()
        val = trainer.run_epoch()
        seconds = time.perf_counter() - tic
        share = seconds / max(int(was_running.sum()), 1)
        values = val[self.metric].tolist()
        epochs = trainer.member_epochs.tolist()
        status = trainer.status.tolist()
        tic = time.perf_counter()
        timed = self.stats.timed
        running = was_running.tolist()
        for k, trial in enumerate(pool.trials):
            if trial is None or not running[k]:
                continue
            pool.seconds[k] += share
            if status[k] != FAILED and math.isfinite(values[k]):
                if self.prunes:
                    with timed("report"):
                        trial.report(values[k], step=epochs[k])
                else:  # kept here: stored with the trial when it ends (see _finish)
                    pool.curves[k].append((epochs[k], values[k]))
            if status[k] == RUNNING:
                if self.prunes:
                    with timed("prune"):
                        prune = trial.should_prune()
                    if prune:
                        trainer.stop_member(k)
                        self._finish(pool, k, optuna.trial.TrialState.PRUNED)
                continue
            state = optuna.trial.TrialState.FAIL if status[k] == FAILED else \
                optuna.trial.TrialState.COMPLETE  # fmt: skip
            self._finish(pool, k, state)
        self.overhead += time.perf_counter() - tic

    def _finish(self, pool: Pool, k: int, state: optuna.trial.TrialState) -> None:
        trainer, trial = pool.trainer, pool.trials[k]
        assert trial is not None
        best = float(trainer.early.best[k])
        attrs = {
            "status": "pruned" if state == optuna.trial.TrialState.PRUNED
            else STATUS_NAMES[int(trainer.status[k])],
            "epochs": int(trainer.member_epochs[k]),
            "best_epoch": int(trainer.early.best_epoch[k]) + 1,
            "seconds": pool.seconds[k],
            "population": len(pool.trials),
            "seed": trainer.members[k]["seed"],
        }  # fmt: skip
        if trainer.failure[k]:
            attrs["failure_reason"] = trainer.failure[k]
        curve: dict[int, float] = {}
        if len(self.objectives) > 1:  # Optuna keeps no intermediate values for several
            attrs["curve"] = [v for _, v in pool.curves[k]]
        else:
            curve = dict(pool.curves[k])
        if state == optuna.trial.TrialState.COMPLETE and not math.isfinite(best):
            state = optuna.trial.TrialState.FAIL
            attrs["failure_reason"] = "no finite validation score"
        values: list[float] | None = None
        if state == optuna.trial.TrialState.COMPLETE:
            values = [best]
            if "seconds" in self.objectives:
                values.append(pool.seconds[k])
            if "params" in self.objectives:
                values.append(float(sum(p[k].numel() for p in
                                        trainer.population.params.values())))  # fmt: skip
        with self.stats.timed("tell"):
            self._tell(trial, values, state)
        with self.stats.timed("attrs"):  # written with the trial (the live study's samplers
            self.mirror.finished(trial.number, attrs, curve)  # and pruners read neither)
        if values is not None:
            self._consider(pool, k, trial.number, best)
        pool.trials[k] = None
        if self.on_trial is not None:
            self.on_trial(self.asked, self.trials)

    def _tell(
        self, trial: optuna.Trial, values: list[float] | None, state: optuna.trial.TrialState
    ) -> None:
        try:
            self.study.tell(trial, values, state=state)
        except RuntimeError:
            # GridSampler.after_trial calls study.stop() once every grid point is finished or
            # running, which raises outside study.optimize; tell has stored the trial by then
            # (its finally clause). The tuner stops asking on its own (grid.is_exhausted).
            if self.grid is None:
                raise
            if not self.study.get_trials(deepcopy=False)[trial.number].state.is_finished():
                raise

    def _better(self, a: float, b: float) -> bool:
        return a > b if self.study.directions[0].name == "MAXIMIZE" else a < b

    def _consider(self, pool: Pool, k: int, number: int, value: float) -> None:
        if self.target is not None and self.first_target is None and (
            value >= self.target if self.study.directions[0].name == "MAXIMIZE"
            else value <= self.target
        ):  # fmt: skip
            self.first_target = time.perf_counter() - self.start
        if self.incumbent is None or self._better(value, self.incumbent.value):
            trial = pool.trials[k]  # its params, without copying every trial of the study
            assert trial is not None and trial.number == number
            config = full_config(self.space, trial.params)
            config["seed"] = pool.trainer.members[k]["seed"]
            self.incumbent = Incumbent(number, value, config, pool.trainer.member_module(k),
                                       pool.trainer, k)  # fmt: skip

    # ------------------------------------------------------------------------------ the run
    def run(self) -> TuneResult:
        self.start = time.perf_counter()
        completed = False
        try:
            self._ask()
            tic = time.perf_counter()
            with self.stats.timed("storage"):  # the claim names the first trials before training
                self.mirror.flush()
            self.overhead += time.perf_counter() - tic
            while True:
                for pool in self.pools:
                    if pool.active():
                        self._step(pool)
                self._ask()
                tic = time.perf_counter()
                with self.stats.timed("storage"):
                    self.mirror.flush()
                self.overhead += time.perf_counter() - tic
                self.pools = [p for p in self.pools if p.active()]
                if not self.pools:
                    tic = time.perf_counter()
                    with self.stats.timed("storage"):
                        done = self._done()
                    self.overhead += time.perf_counter() - tic
                    if done:
                        break
                if not self.pools:  # other workers hold the rest of the budget: wait for
                    time.sleep(self.poll)  # them to finish it, or to take over a dead one's
                    self._ask()
            completed = True
        finally:
            tic = time.perf_counter()
            with self.stats.timed("storage"):
                self.mirror.close(completed)
            self.overhead += time.perf_counter() - tic
        seconds = time.perf_counter() - self.start
        counts: dict[str, int] = defaultdict(int)
        for t in self.mirror.stored.get_trials(deepcopy=False):
            counts[t.state.name.lower()] += 1
        result = TuneResult(
            study=self.mirror.stored, best_number=None, best_config=None, best_value=None,
            test={}, counts=dict(counts), seconds=seconds, overhead_seconds=self.overhead,
            metric=self.metric, time_to_target=self.first_target, asked=self.asked,
            finished_before=self.finished_before, stats=self.stats,
        )  # fmt: skip
        if self.describe_best:
            self._describe_best(result)
        return result

    def _done(self) -> bool:
        """Nothing left to ask: the study holds its budget of finished trials (other workers'
        running ones finished, or taken over and re-run here), the timeout passed, or the grid
        is covered."""
        if self.timeout is not None and time.perf_counter() - self.start >= self.timeout:
            return True
        if self.grid is not None and self._grid_left() <= 0:
            return True
        return self.mirror.complete(self.trials)

    def describe(self) -> TuneResult:
        """The study as stored, and its best trial (trained again for its module and test
        metrics), without asking any trial: the driver of several workers, at the end."""
        self.start = time.perf_counter()
        self.mirror._sync()
        counts: dict[str, int] = defaultdict(int)
        for t in self.mirror.stored.get_trials(deepcopy=False):
            counts[t.state.name.lower()] += 1
        result = TuneResult(
            study=self.mirror.stored, best_number=None, best_config=None, best_value=None,
            test={}, counts=dict(counts), seconds=0.0, overhead_seconds=0.0,
            metric=self.metric, finished_before=self.finished_before,
        )  # fmt: skip
        self._describe_best(result)
        result.seconds = time.perf_counter() - self.start
        return result

    def _describe_best(self, result: TuneResult) -> None:
        """The study's best trial over every run: this run's incumbent, or else one stored
        earlier, whose configuration is trained again (once) for its module and test metrics."""
        best = self.mirror.best_trial()
        if best is None:
            return
        inc = self.incumbent
        mine = None if inc is None else self.mirror.numbers.get(inc.number)
        if inc is not None and mine is not None and inc.value == best.values[0]:
            best = self.mirror.stored.get_trials(deepcopy=False)[mine]  # this run's, on a tie
        result.best_number, result.best_value = best.number, float(best.values[0])
        if inc is not None and mine == best.number:
            result.best_config = inc.config
            module, trainer, slot = inc.module, inc.trainer, inc.slot
        else:
            try:
                config = full_config(self.space, best.params)
            except ValueError:  # stored by a run with another search space: not trained
                result.best_config = dict(best.params)
                return
            config["seed"] = int(best.user_attrs.get("seed", self.base.seed + best.number))
            result.best_config = config
            trainer = self._new_pool(split_config(config)[0], [(None, config)]).trainer
            slot = 0
            while bool(trainer.active.any()):
                trainer.run_epoch()
            module = trainer.member_module(0)
            result.best_retrained = True
        result.best_module, result.best_trainer, result.best_slot = module, trainer, slot
        result.test = evaluate_module(module, trainer, self.dataset)


def full_config(space: SearchSpace, params: dict[str, Any]) -> dict[str, Any]:
    """A trial's whole configuration (fixed values and optimizer flags too) from its params."""
    return space.suggest(optuna.trial.FixedTrial(params))


def member_of(config: dict[str, Any]) -> dict[str, Any]:
    """A trial's configuration as the trainer's member (`optimkit.tune.space.member_of`: the
    optimizer's spec packs its hyperparameters into constructor keywords)."""
    return space_member_of(config)


def evaluate_module(
    module: nn.Module, trainer: PopulationTrainer, dataset: Dataset
) -> dict[str, float]:
    """Loss and metrics of one plain module on the test split, once."""
    with torch.no_grad():
        out = module.eval()(dataset.X_test)[None]
    loss = trainer.loss.mean(trainer._loss_input(out), trainer._targets(dataset.y_test))
    result = {"loss": float(loss[0])}
    pred = out if trainer.n_outputs > 1 or dataset.task == "classification" else out[..., 0]
    for name, metric in trainer.metrics.items():
        result[name] = float(metric(pred, dataset.y_test)[0])
    return result
