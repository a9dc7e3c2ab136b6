"""The tuner: Optuna trials trained as populations, with continuous batching.

Trials are asked in batches. Each trial's configuration splits into a shape (optimizer and its
flags, batch size, architecture, schedule) and per-member values (lr, weight decay, betas,
momentum, seed, ...); trials of one shape train together as one `PopulationTrainer`. Every
epoch each member reports its validation metric as an Optuna intermediate value and the pruner
decides per member. A member that finishes, is pruned, stops early or diverges frees its slot,
which is refilled at once with a new trial of the same shape (trials of a new shape start a
population of their own), so populations stay full until the budget (trials, timeout) is spent.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import optuna
import torch
from torch import nn

from optimkit.data import Dataset
from optimkit.train import PopulationTrainer, TrainConfig
from optimkit.train.trainer import FAILED, RUNNING, STATUS_NAMES, TASK_METRICS
from optimkit.tune.space import OPTIMIZER_ALIASES, SearchSpace, split_config
from optimkit.tune.storage import StudyMirror

OBJECTIVES = ("metric", "seconds", "params")
DEFAULT_METRIC = {"classification": "accuracy", "regression": "r2", "ratings": "rmse"}


@dataclass
class Pool:
    """One population: a trainer and the trial in each slot (None = free)."""

    shape: tuple[tuple[str, Any], ...]
    trainer: PopulationTrainer
    trials: list[optuna.Trial | None]
    seconds: list[float] = field(default_factory=list)
    curves: list[list[float]] = field(default_factory=list)

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
        # the budget counts trials that ran to an end; failed ones (e.g. interrupted) are not
        done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        self.asked = sum(1 for t in self.study.trials if t.state in done)
        self.incumbent: Incumbent | None = None
        self.overhead = 0.0
        self.start = 0.0
        self.first_target: float | None = None

    # ------------------------------------------------------------------------------ asking
    def _budget_left(self) -> int:
        if self.timeout is not None and time.perf_counter() - self.start >= self.timeout:
            return 0
        return self.trials - self.asked

    def _running(self) -> int:
        return sum(1 for p in self.pools for t in p.trials if t is not None)

    def _ask(self) -> None:
        """Ask as many trials as there are free slots, and place them."""
        n = min(self.population - self._running() - sum(map(len, self.pending.values())),
                self._budget_left())  # fmt: skip
        tic = time.perf_counter()
        for _ in range(max(n, 0)):
            trial = self.study.ask()
            config = self.space.suggest(trial)
            config.setdefault("seed", self.base.seed + trial.number)
            shape, _ = split_config(config)
            self.pending[shape].append((trial, config))
            self.mirror.started(trial)
            self.asked += 1
        self.overhead += time.perf_counter() - tic
        for shape in list(self.pending):
            queue = self.pending[shape]
            for pool in self.pools:
                if pool.shape != shape:
                    continue
                for k in pool.free_slots():
                    if not queue:
                        break
                    trial, config = queue.pop(0)
                    pool.trainer.replace_member(k, member_of(config))
                    pool.trials[k], pool.seconds[k], pool.curves[k] = trial, 0.0, []
            if queue:
                self.pools.append(self._new_pool(shape, queue))
            del self.pending[shape]

    def _new_pool(self, shape: tuple, queue: list[tuple[optuna.Trial, dict[str, Any]]]) -> Pool:
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
        for k, trial in enumerate(pool.trials):
            if trial is None or not bool(was_running[k]):
                continue
            pool.seconds[k] += share
            if status[k] != FAILED and math.isfinite(values[k]):
                if len(self.objectives) == 1:
                    trial.report(values[k], step=epochs[k])
                else:  # Optuna keeps no intermediate values for several objectives
                    pool.curves[k].append(values[k])
            if status[k] == RUNNING:
                if self.prunes and trial.should_prune():
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
        }  # fmt: skip
        if trainer.failure[k]:
            attrs["failure_reason"] = trainer.failure[k]
        if len(self.objectives) > 1:
            attrs["curve"] = pool.curves[k]
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        values: list[float] | None = None
        if state == optuna.trial.TrialState.COMPLETE:
            if not math.isfinite(best):
                state = optuna.trial.TrialState.FAIL
                trial.set_user_attr("failure_reason", "no finite validation score")
            else:
                values = [best]
                if "seconds" in self.objectives:
                    values.append(pool.seconds[k])
                if "params" in self.objectives:
                    values.append(float(sum(p[k].numel() for p in
                                            trainer.population.params.values())))  # fmt: skip
        self.study.tell(trial, values, state=state)
        self.mirror.finished(trial.number)
        if values is not None:
            self._consider(pool, k, trial.number, best)
        pool.trials[k] = None
        if self.on_trial is not None:
            self.on_trial(self.asked, self.trials)

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
        self._ask()
        while True:
            for pool in self.pools:
                if pool.active():
                    self._step(pool)
            self._ask()
            tic = time.perf_counter()
            self.mirror.flush()
            self.overhead += time.perf_counter() - tic
            self.pools = [p for p in self.pools if p.active()]
            if not self.pools:
                break
        seconds = time.perf_counter() - self.start
        counts: dict[str, int] = defaultdict(int)
        for t in self.study.trials:
            counts[t.state.name.lower()] += 1
        test: dict[str, float] = {}
        inc = self.incumbent
        if inc is not None:
            test = evaluate_module(inc.module, inc.trainer, self.dataset)
        return TuneResult(
            study=self.study, best_number=inc.number if inc else None,
            best_config=inc.config if inc else None, best_value=inc.value if inc else None,
            test=test, counts=dict(counts), seconds=seconds, overhead_seconds=self.overhead,
            best_module=inc.module if inc else None, best_trainer=inc.trainer if inc else None,
            best_slot=inc.slot if inc else None, metric=self.metric,
            time_to_target=self.first_target,
        )  # fmt: skip


def full_config(space: SearchSpace, params: dict[str, Any]) -> dict[str, Any]:
    """A trial's whole configuration (fixed values and optimizer flags too) from its params."""
    return space.suggest(optuna.trial.FixedTrial(params))


def member_of(config: dict[str, Any]) -> dict[str, Any]:
    """A trial's configuration as the trainer's member: per-member values plus the optimizer's
    flags, with beta1/beta2 as betas."""
    member = split_config(config)[1]
    for flag in ("nesterov", "amsgrad", "centered"):
        if flag in config:
            member[flag] = config[flag]
    if "beta1" in member or "beta2" in member:
        member["betas"] = (member.pop("beta1", 0.9), member.pop("beta2", 0.999))
    return member


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
