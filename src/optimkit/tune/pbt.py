"""Population Based Training (Jaderberg et al. 2017) inside one vectorized population.

Ray Tune's `PopulationBasedTraining` with its names and defaults, run synchronously (Ray's
``synch=True``) on the members of one `PopulationTrainer`: every ``perturbation_interval``
epochs (after ``burn_in_period``) the running members are ranked by their last validation
score; each member of the bottom ``quantile_fraction`` copies a random member of the top one
(exploit: `PopulationTrainer.copy_member`, a tensor copy of weights, optimizer state,
schedule position and counters) and perturbs the copied hyperparameters (explore:
`PopulationTrainer.set_member`, a write into the [K] hyperparameter tensors; nothing is
rebuilt or recompiled). Explore follows Ray's ``_explore``: per mutated name, with
probability ``resample_probability`` (or when a choice is not in the list) a fresh draw,
otherwise a range's value times a random factor of ``perturbation_factors`` or a list's
neighbour; then ``custom_explore_fn(config)``. Unlike Ray, a perturbed value is clipped into
its range, so it stays a valid hyperparameter. All random decisions come from one
``random.Random(seed)``.

Only per-member values can be mutated (optimizer hyperparameters, l1, clip norms); names that
change shapes (architecture, batch size, optimizer, ...) are fixed for a PBT run.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import optuna
import pandas as pd

from optimkit.data import Dataset
from optimkit.train import PopulationTrainer, TrainConfig
from optimkit.train.trainer import OPTIMIZER_EXTRAS
from optimkit.tune.space import (
    OPTIMIZER_ALIASES,
    SHAPE_KEYS,
    Param,
    SearchSpace,
    member_of,
    parse_param,
)

Mutation = Param | list[Any] | tuple[Any, ...] | Callable[[], Any]


@dataclass
class PopulationBasedTraining:
    """PBT's settings, as Ray Tune names them (``perturbation_interval`` and
    ``burn_in_period`` in epochs). `metric` defaults to the trainer's monitored value,
    `mode` to that metric's direction."""

    perturbation_interval: int = 4
    burn_in_period: int = 0
    hyperparam_mutations: Mapping[str, Any] | None = None
    quantile_fraction: float = 0.25
    resample_probability: float = 0.25
    perturbation_factors: tuple[float, float] = (1.2, 0.8)
    custom_explore_fn: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    metric: str | None = None
    mode: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.quantile_fraction <= 0.5:
            raise ValueError(f"quantile_fraction: expected a value in [0, 0.5], got "
                             f"{self.quantile_fraction}")  # fmt: skip
        if not 0 <= self.resample_probability <= 1:
            raise ValueError(f"resample_probability: expected a value in [0, 1], got "
                             f"{self.resample_probability}")  # fmt: skip
        if self.perturbation_interval < 1:
            raise ValueError(f"perturbation_interval: expected an int >= 1 (epochs), got "
                             f"{self.perturbation_interval}")  # fmt: skip
        if self.mode not in (None, "min", "max"):
            raise ValueError(f"mode: expected 'min' or 'max', got {self.mode!r}")


@dataclass
class Perturbation:
    """One exploit/explore: at `epoch`, member `member` (score `score`) took the state of
    `source` (score `source_score`) and moved from `old` to `new` hyperparameters."""

    epoch: int
    member: int
    source: int
    score: float
    source_score: float
    old: dict[str, Any]
    new: dict[str, Any]


@dataclass
class PBTResult:
    """Lineage and scores of a PBT run: the perturbations in order, each member's
    hyperparameters per segment (`to_frame`), its final config and score."""

    metric: str
    mode: str
    configs: list[dict[str, Any]]
    scores: list[float]
    perturbations: list[Perturbation] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)
    trainer: PopulationTrainer | None = None

    @property
    def best_member(self) -> int:
        sign = 1.0 if self.mode == "max" else -1.0
        ranked = [(sign * s if math.isfinite(s) else -math.inf, -k)
                  for k, s in enumerate(self.scores)]  # fmt: skip
        return -max(ranked)[1]

    def to_frame(self) -> pd.DataFrame:
        """One row per (member, segment) like Ray's pbt logs: member, segment, start/end
        epoch, the member it copied at the segment's start (parent), its hyperparameters
        and its score at the segment's end."""
        return pd.DataFrame(self.segments)

    def to_csv(self, path: Any) -> None:
        self.to_frame().to_csv(path, index=False)


# ------------------------------------------------------------------------------ explore
def _mutation(key: str, spec: Any) -> Mutation:
    if key in SHAPE_KEYS:
        raise ValueError(f"hyperparam_mutations.{key}: changes the population's shapes; "
                         "fixed for a PBT run")  # fmt: skip
    if isinstance(spec, Param):
        return spec
    if isinstance(spec, Mapping):
        parsed = parse_param(key, spec)
        if isinstance(parsed, Param):
            return parsed
    if isinstance(spec, list | tuple) and spec:
        return spec
    if callable(spec):
        return spec  # type: ignore[no-any-return]
    raise ValueError(f"hyperparam_mutations.{key}: expected a range {{low, high[, log]}}, a "
                     f"list of choices or a function that draws a value, got {spec!r}")  # fmt: skip


def _resample(m: Mutation, rng: random.Random) -> Any:
    if isinstance(m, Param):
        if m.choices is not None:
            return rng.choice(m.choices)
        lo, hi = float(m.low), float(m.high)  # type: ignore[arg-type]
        v = math.exp(rng.uniform(math.log(lo), math.log(hi))) if m.log else rng.uniform(lo, hi)
        return round(v) if m.integer else v
    if isinstance(m, list | tuple):
        return rng.choice(m)
    return m()


def explore(
    config: Mapping[str, Any],
    mutations: Mapping[str, Mutation],
    rng: random.Random,
    resample_probability: float = 0.25,
    perturbation_factors: tuple[float, ...] = (1.2, 0.8),
    custom_explore_fn: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A perturbed copy of `config` (Ray Tune's ``_explore``; see the module docstring)."""
    new = dict(config)
    for key, m in mutations.items():
        choices = m.choices if isinstance(m, Param) else m if isinstance(m, list | tuple) else None
        if choices is not None:
            if rng.random() < resample_probability or config[key] not in choices:
                new[key] = rng.choice(choices)
            else:
                i = list(choices).index(config[key]) + rng.choice([-1, 1])
                new[key] = choices[min(max(i, 0), len(choices) - 1)]
        elif rng.random() < resample_probability:
            new[key] = _resample(m, rng)
        else:
            value = config[key] * rng.choice(perturbation_factors)
            if isinstance(m, Param):
                value = min(max(value, m.low), m.high)  # type: ignore[type-var]
            new[key] = int(value) if isinstance(config[key], int) else value
    return custom_explore_fn(new) if custom_explore_fn is not None else new


def quantiles(scores: Mapping[int, float], fraction: float) -> tuple[list[int], list[int]]:
    """(bottom, top) members by score, higher is better (Ray's ``_quantiles``: ceil of the
    fraction, at most half; ties in member order)."""
    ranked = sorted(scores, key=lambda k: scores[k])
    if len(ranked) <= 1:
        return [], []
    n = math.ceil(len(ranked) * fraction)
    if n > len(ranked) / 2:
        n = len(ranked) // 2
    return ranked[:n], ranked[len(ranked) - n :]


# ------------------------------------------------------------------------------ running
def _flat(trainer: PopulationTrainer, k: int) -> dict[str, Any]:
    """Member k's per-member values by flat name (lr, beta1, ..., l1, clip_grad_norm)."""
    member = trainer.members[k]
    extras = {n: v for n, v in member.items() if n in OPTIMIZER_EXTRAS}
    return {**trainer.optimizer.spec.from_kwargs(member), **extras}


def _write(trainer: PopulationTrainer, k: int, flat: Mapping[str, Any]) -> None:
    """Member k's new values (flat names) into the trainer, in its members' form."""
    spec = trainer.optimizer.spec
    names = {h.name for h in spec.hyperparameters}
    merged = {**spec.from_kwargs(trainer.members[k]),
              **{n: v for n, v in flat.items() if n in names}}  # fmt: skip
    values = {a: v for a, v in spec.to_kwargs(merged).items() if a in trainer.members[k]}
    values |= {n: v for n, v in flat.items() if n in OPTIMIZER_EXTRAS}
    trainer.set_member(k, values)


def run_pbt(trainer: PopulationTrainer, pbt: PopulationBasedTraining) -> PBTResult:
    """Train `trainer` to its end with PBT on its members (see the module docstring)."""
    metric = pbt.metric or trainer.config.monitor
    key = metric.removeprefix("val_")
    if key != "loss" and key not in trainer.metrics:
        raise ValueError(f"metric: unknown {metric!r}; valid: val_loss, "
                         f"{', '.join(f'val_{n}' for n in trainer.metrics)}")  # fmt: skip
    mode = pbt.mode or ("max" if key != "loss" and trainer.metrics[key].greater_is_better
                        else "min")  # fmt: skip
    spec = pbt.hyperparam_mutations
    if not spec:
        raise ValueError("hyperparam_mutations: expected at least one name to mutate")
    mutations = {k: _mutation(k, v) for k, v in spec.items()}
    configs = [_flat(trainer, k) for k in range(trainer.k)]
    for name in mutations:
        if name not in configs[0]:
            raise ValueError(f"hyperparam_mutations.{name}: not a per-member value of this run; "
                             f"valid: {', '.join(sorted(configs[0]))}")  # fmt: skip
    configs = [{n: c[n] for n in mutations} for c in configs]
    rng = random.Random(pbt.seed)
    result = PBTResult(metric, mode, configs, [math.nan] * trainer.k, trainer=trainer)
    starts: list[int] = [0] * trainer.k
    parents: list[int | None] = [None] * trainer.k
    segment = [0] * trainer.k
    last = 0

    def close(k: int, epoch: int, score: float) -> None:
        result.segments.append({"member": k, "segment": segment[k], "start_epoch": starts[k],
                                "end_epoch": epoch, "parent": parents[k], **configs[k],
                                metric: score})  # fmt: skip

    while bool(trainer.active.any()):
        running = trainer.active.clone()
        val = trainer.run_epoch()
        epoch = trainer.epoch
        raw = [float(v) for v in val[key].tolist()]
        for k in range(trainer.k):
            if bool(running[k]):
                result.scores[k] = raw[k]
        if epoch < pbt.burn_in_period or epoch - last < pbt.perturbation_interval:
            continue
        last = epoch
        sign = 1.0 if mode == "max" else -1.0
        live = {k: sign * raw[k] for k in range(trainer.k)
                if bool(trainer.active[k]) and math.isfinite(raw[k])}  # fmt: skip
        bottom, top = quantiles(live, pbt.quantile_fraction)
        for dst in bottom:
            src = rng.choice(top)
            new = explore(configs[src], mutations, rng, pbt.resample_probability,
                          pbt.perturbation_factors, pbt.custom_explore_fn)  # fmt: skip
            close(dst, epoch, raw[dst])
            result.perturbations.append(Perturbation(epoch, dst, src, raw[dst], raw[src],
                                                     dict(configs[dst]), dict(new)))  # fmt: skip
            trainer.copy_member(src, dst)
            _write(trainer, dst, new)
            configs[dst] = dict(new)
            starts[dst], parents[dst], segment[dst] = epoch, src, segment[dst] + 1
    trainer.fit()  # finalizes: kept weights in place, test metrics
    for k in range(trainer.k):
        close(k, int(trainer.member_epochs[k]), result.scores[k])
    result.segments.sort(key=lambda r: (r["member"], r["segment"]))
    return result


def pbt(
    dataset: Dataset,
    config: TrainConfig,
    space: SearchSpace,
    *,
    population: int = 8,
    scheduler: PopulationBasedTraining | None = None,
) -> PBTResult:
    """PBT of `population` members drawn from `space` (one optimizer; its searched
    per-member names are the default ``hyperparam_mutations``) on `dataset`."""
    scheduler = scheduler or PopulationBasedTraining()
    for name in space.params:
        if name in SHAPE_KEYS:
            raise ValueError(f"space.{name}: searched, but it changes the population's shapes; "
                             "fix it for a PBT run")  # fmt: skip
    mutable = {n: p for n, p in space.params.items() if n != "seed"}
    if scheduler.hyperparam_mutations is None:
        scheduler = replace(scheduler, hyperparam_mutations=mutable)
    rng = random.Random(scheduler.seed)
    members = []
    for k in range(population):
        draw = {n: _resample(p, rng) for n, p in space.params.items()}
        member = member_of(space.suggest(optuna.trial.FixedTrial(draw)))
        members.append({**member, "seed": int(member.get("seed", config.seed + k))})
    fixed = space.fixed
    options = dict(config.model_options)
    for name in ("activation", "dropout", "batch_norm", "residual"):
        if name in fixed:
            options[name] = fixed[name]
    if "hidden" in fixed:
        options["hidden"] = tuple(int(w) for w in str(fixed["hidden"]).split("-") if w)
    optimizer = OPTIMIZER_ALIASES.get(str(fixed["optimizer"]), (str(fixed["optimizer"]), {}))[0]
    config = replace(config, optimizer=optimizer, model_options=options,
                     batch_size=fixed.get("batch_size", config.batch_size),
                     schedule=fixed.get("schedule", config.schedule))  # fmt: skip
    return run_pbt(PopulationTrainer(dataset, config, members), scheduler)
