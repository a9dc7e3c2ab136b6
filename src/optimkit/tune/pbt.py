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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
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

    def mutation_spec(self) -> Mapping[str, Any] | None:
        """The names this scheduler mutates and their ranges or choices."""
        return self.hyperparam_mutations

    def explorer(self, mutations: Mapping[str, Mutation]) -> Any:
        """The explore step: random perturbation (PB2 overrides it with its GP bandit)."""
        return RandomExplore(self, mutations)

    def with_space(self, mutable: Mapping[str, Param]) -> PopulationBasedTraining:
        """This scheduler with a search space's ranges as its default mutations."""
        if self.hyperparam_mutations is None:
            return replace(self, hyperparam_mutations=dict(mutable))
        return self


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
    #: each member's configuration at the start (the trainer's member form, with its seed)
    initial: list[dict[str, Any]] = field(default_factory=list)
    #: each member's score after every epoch it ran (the score of the state it held)
    curves: list[list[float]] = field(default_factory=list)

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


class RandomExplore:
    """PBT's explore (Ray Tune's ``_explore``): perturb or resample each mutated name."""

    def __init__(self, scheduler: PopulationBasedTraining, mutations: Mapping[str, Mutation]):
        self.scheduler, self.mutations = scheduler, mutations

    def observe(self, epoch: int, configs: list[dict[str, Any]], changes: list[float]) -> None:
        """PB2's data; random explore learns nothing."""

    def __call__(self, epoch: int, config: Mapping[str, Any], rng: random.Random) -> dict[str, Any]:
        s = self.scheduler
        return explore(config, self.mutations, rng, s.resample_probability,
                       s.perturbation_factors, s.custom_explore_fn)  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


class _Loop:
    """The PBT loop's own state, beside the trainer's: random draws, the last perturbation
    epoch, each member's segment, parent and score at the last perturbation, the lineage and
    the score curves. `state_dict` is checkpointed with the trainer's, in one file."""

    def __init__(self, trainer: PopulationTrainer, pbt: PopulationBasedTraining,
                 result: PBTResult, explorer: Any) -> None:  # fmt: skip
        k = trainer.k
        self.rng = random.Random(pbt.seed)
        self.result, self.explorer = result, explorer
        self.starts: list[int] = [0] * k
        self.parents: list[int | None] = [None] * k
        self.segment = [0] * k
        self.last = 0
        self.previous: list[float] = [math.nan] * k  # score at the last perturbation

    def state_dict(self) -> dict[str, Any]:
        r = self.result
        return {
            "rng": self.rng.getstate(), "starts": list(self.starts),
            "parents": list(self.parents), "segment": list(self.segment), "last": self.last,
            "previous": list(self.previous), "configs": [dict(c) for c in r.configs],
            "scores": list(r.scores), "curves": [list(c) for c in r.curves],
            "segments": [dict(s) for s in r.segments],
            "perturbations": [vars(p).copy() for p in r.perturbations],
            "explorer": self.explorer.state_dict(),
        }  # fmt: skip

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        r = self.result
        self.rng.setstate(state["rng"])
        self.starts, self.parents = list(state["starts"]), list(state["parents"])
        self.segment, self.last = list(state["segment"]), int(state["last"])
        self.previous = list(state["previous"])
        r.configs = [dict(c) for c in state["configs"]]
        r.scores, r.curves = list(state["scores"]), [list(c) for c in state["curves"]]
        r.segments = [dict(s) for s in state["segments"]]
        r.perturbations = [Perturbation(**p) for p in state["perturbations"]]
        self.explorer.load_state_dict(state["explorer"])


def save_pbt_checkpoint(path: Any, trainer: PopulationTrainer, loop_state: dict[str, Any]) -> None:
    """The trainer's state and the PBT loop's, in one file written atomically."""
    import torch

    from optimkit.outputs import atomic_save

    state = {"trainer": trainer.state_dict(), "pbt": loop_state}
    atomic_save(path, lambda tmp: torch.save(state, tmp))


def run_pbt(
    trainer: PopulationTrainer,
    pbt: PopulationBasedTraining,
    *,
    checkpoint: Any = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    on_epoch: Callable[[int, int], None] | None = None,
) -> PBTResult:
    """Train `trainer` to its end with PBT on its members (see the module docstring).

    With `checkpoint` (a path) and `checkpoint_every` N, the trainer's and the loop's state
    (its random.Random state, last perturbation epoch, lineage) are written there atomically
    every N epochs, after that epoch's perturbations; `resume=True` continues from that file
    (when it exists), and the run ends exactly as an uninterrupted one with the same seed.
    `on_epoch(epoch, epochs)` is called after each epoch (a progress bar)."""
    if checkpoint_every is not None and (checkpoint is None or checkpoint_every < 1):
        raise ValueError("checkpoint_every: expected an int >= 1 and a checkpoint path")
    metric = pbt.metric or trainer.config.monitor
    key = metric.removeprefix("val_")
    if key != "loss" and key not in trainer.metrics:
        raise ValueError(f"metric: unknown {metric!r}; valid: val_loss, "
                         f"{', '.join(f'val_{n}' for n in trainer.metrics)}")  # fmt: skip
    mode = pbt.mode or ("max" if key != "loss" and trainer.metrics[key].greater_is_better
                        else "min")  # fmt: skip
    spec = pbt.mutation_spec()
    if not spec:
        raise ValueError("hyperparam_mutations: expected at least one name to mutate")
    mutations = {k: _mutation(k, v) for k, v in spec.items()}
    configs = [_flat(trainer, k) for k in range(trainer.k)]
    for name in mutations:
        if name not in configs[0]:
            raise ValueError(f"hyperparam_mutations.{name}: not a per-member value of this run; "
                             f"valid: {', '.join(sorted(configs[0]))}")  # fmt: skip
    configs = [{n: c[n] for n in mutations} for c in configs]
    result = PBTResult(metric, mode, configs, [math.nan] * trainer.k, trainer=trainer,
                       initial=[dict(m) for m in trainer.members],
                       curves=[[] for _ in range(trainer.k)])  # fmt: skip
    loop = _Loop(trainer, pbt, result, pbt.explorer(mutations))
    if resume and checkpoint is not None and Path(checkpoint).is_file():
        import torch

        state = torch.load(checkpoint, map_location=trainer.device, weights_only=False)
        if "pbt" not in state:
            raise ValueError(f"checkpoint: {str(checkpoint)!r} is not a PBT checkpoint")
        trainer.load_state_dict(state["trainer"])
        loop.load_state_dict(state["pbt"])
        result.initial = [dict(m) for m in state["pbt"].get("initial", result.initial)]
    sign = 1.0 if mode == "max" else -1.0

    def close(k: int, epoch: int, score: float) -> None:
        result.segments.append({"member": k, "segment": loop.segment[k],
                                "start_epoch": loop.starts[k], "end_epoch": epoch,
                                "parent": loop.parents[k], **result.configs[k],
                                metric: score})  # fmt: skip

    while bool(trainer.active.any()):
        running = trainer.active.clone()
        val = trainer.run_epoch()
        epoch = trainer.epoch
        raw = [float(v) for v in val[key].tolist()]
        for k in range(trainer.k):
            if bool(running[k]):
                result.scores[k] = raw[k]
                result.curves[k].append(raw[k])
        if not (epoch < pbt.burn_in_period or epoch - loop.last < pbt.perturbation_interval):
            _perturb(trainer, pbt, loop, epoch, raw, sign, close)
        if checkpoint_every and epoch % checkpoint_every == 0 and bool(trainer.active.any()):
            save_pbt_checkpoint(checkpoint, trainer, {**loop.state_dict(),
                                                      "initial": result.initial})  # fmt: skip
        if on_epoch is not None:
            on_epoch(epoch, trainer.config.epochs)
    trainer.fit()  # finalizes: kept weights in place, test metrics
    for k in range(trainer.k):
        close(k, int(trainer.member_epochs[k]), result.scores[k])
    result.segments.sort(key=lambda r: (r["member"], r["segment"]))
    return result


def _perturb(
    trainer: PopulationTrainer,
    pbt: PopulationBasedTraining,
    loop: _Loop,
    epoch: int,
    raw: list[float],
    sign: float,
    close: Callable[..., None],
) -> None:
    """One synchronous perturbation: rank, tell the explorer, exploit and explore."""
    result = loop.result
    loop.last = epoch
    live = {k: sign * raw[k] for k in range(trainer.k)
            if bool(trainer.active[k]) and math.isfinite(raw[k])}  # fmt: skip
    seen = [k for k in live if math.isfinite(loop.previous[k])]
    changes = [sign * (raw[k] - loop.previous[k]) for k in seen]
    loop.explorer.observe(epoch, [dict(result.configs[k]) for k in seen], changes)
    bottom, top = quantiles(live, pbt.quantile_fraction)
    loop.previous = list(raw)
    for dst in bottom:
        src = loop.rng.choice(top)
        new = loop.explorer(epoch, result.configs[src], loop.rng)
        close(dst, epoch, raw[dst])
        result.perturbations.append(Perturbation(epoch, dst, src, raw[dst], raw[src],
                                                 dict(result.configs[dst]), dict(new)))  # fmt: skip
        trainer.copy_member(src, dst)
        _write(trainer, dst, new)
        result.configs[dst] = dict(new)
        loop.previous[dst] = raw[src]
        loop.starts[dst], loop.parents[dst] = epoch, src
        loop.segment[dst] += 1


def pbt(
    dataset: Dataset,
    config: TrainConfig,
    space: SearchSpace,
    *,
    population: int = 8,
    scheduler: PopulationBasedTraining | None = None,
    **run_options: Any,
) -> PBTResult:
    """PBT of `population` members drawn from `space` (one optimizer; its searched
    per-member names are the default ``hyperparam_mutations``) on `dataset`. `run_options`
    go to `run_pbt` (checkpoint, checkpoint_every, resume, on_epoch)."""
    scheduler = scheduler or PopulationBasedTraining()
    for name in space.params:
        if name in SHAPE_KEYS:
            raise ValueError(f"space.{name}: searched, but it changes the population's shapes; "
                             "fix it for a PBT run")  # fmt: skip
    mutable = {n: p for n, p in space.params.items() if n != "seed"}
    scheduler = scheduler.with_space(mutable)
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
    return run_pbt(PopulationTrainer(dataset, config, members), scheduler, **run_options)


# ------------------------------------------------------------------------------ replay
#: the bookkeeping columns of a lineage (pbt.csv); the others are hyperparameters and the score
LINEAGE_COLUMNS = ("member", "segment", "start_epoch", "end_epoch", "parent")


def lineage(
    segments: Sequence[Mapping[str, Any]], names: list[str], member: int
) -> list[dict[str, Any]]:
    """`member`'s hyperparameter schedule from the segments of a run (`PBTResult.segments`,
    the rows of pbt.csv): its lineage walked back through the members it copied, as segments
    in time order, each ``{start_epoch, end_epoch, member, <names>}``. Raises LookupError
    where no segment continues the lineage."""
    end = max((int(s["end_epoch"]) for s in segments if s["member"] == member), default=None)
    if end is None:
        raise LookupError(f"no segment of member {member}")
    path, k = [], member
    for _ in range(len(segments)):
        seg = next(
            (s for s in segments
             if s["member"] == k and (s["start_epoch"] < end <= s["end_epoch"]
                                      or s["start_epoch"] == end == 0)),
            None,
        )  # fmt: skip
        if seg is None:
            raise LookupError(f"no segment of member {k} runs up to epoch {end}")
        path.append({"start_epoch": int(seg["start_epoch"]), "end_epoch": end, "member": k,
                     **{n: seg[n] for n in names}})  # fmt: skip
        if seg["parent"] is None:
            return path[::-1]
        end, k = int(seg["start_epoch"]), int(seg["parent"])
    raise LookupError("the lineage loops")


def replay_schedule(result: PBTResult, member: int | None = None) -> list[dict[str, Any]]:
    """The hyperparameter schedule that produced `member`'s final state (default: the best):
    `lineage` of its segments; the first segment's member is the root, whose initial weights
    and seed the lineage started from (Ray Tune's PopulationBasedTrainingReplay reads the
    same from its policy log)."""
    k = result.best_member if member is None else member
    return lineage(result.segments, list(result.configs[0]), k)


def replay(
    dataset: Dataset,
    config: TrainConfig,
    initial: Mapping[str, Any],
    schedule: list[dict[str, Any]],
    progress: Callable[[int, int], None] | None = None,
) -> PopulationTrainer:
    """Re-train one model (K = 1) from `initial` (the root member's configuration with its
    seed) along `schedule` (`replay_schedule`): at each segment's start its hyperparameters
    are written, as PBT's explore wrote them; the weights are never copied. With shared
    batches (the default) and the same config, the model follows the PBT member's
    trajectory exactly. `progress(epoch, epochs)` is called after each epoch."""
    trainer = PopulationTrainer(dataset, config, [dict(initial)], progress=progress)
    names = [n for n in schedule[0] if n not in ("start_epoch", "end_epoch", "member")]
    changes = {int(s["start_epoch"]): {n: s[n] for n in names} for s in schedule[1:]}
    while bool(trainer.active.any()):
        trainer.run_epoch()
        if trainer.epoch in changes:
            _write(trainer, 0, changes[trainer.epoch])
    trainer.fit()
    return trainer


@dataclass
class PBTRun:
    """An `optimkit pbt` run folder, read and checked for a replay: `info` (results.json:
    the data, the training config, each member's initial configuration), `frame` (pbt.csv,
    the lineage) and `schedule`, the best member's, read from pbt.csv (Ray's policy log) and
    checked against the one results.json recorded."""

    folder: Path
    info: dict[str, Any]
    frame: pd.DataFrame
    schedule: list[dict[str, Any]]

    def dataset(self) -> Dataset:
        import torch

        from optimkit.data import load_dataset

        data = dict(self.info["dataset"])
        return load_dataset(**{**data, "dtype": getattr(torch, data["dtype"])})

    def config(self) -> TrainConfig:
        raw = dict(self.info["train_config"])
        options = dict(raw["model_options"])
        if "hidden" in options:
            options["hidden"] = tuple(options["hidden"])
        return TrainConfig(**{**raw, "model_options": options, "checkpoint_every": None,
                              "checkpoint_path": None})  # fmt: skip

    def initial(self) -> dict[str, Any]:
        """The lineage's root member at its start (its hyperparameters and seed)."""
        root = self.info["initial"][self.schedule[0]["member"]]
        return {k: tuple(v) if isinstance(v, list) else v for k, v in root.items()}


def read_run(run_dir: Any) -> PBTRun:
    """`PBTRun` of `run_dir`; a folder that is missing, not an `optimkit pbt` run, or whose
    pbt.csv is damaged raises ValueError with one line naming the file and the problem."""
    import json

    folder = Path(run_dir)
    if not folder.is_dir():
        raise ValueError(
            f"replay: no folder {str(folder)!r}; expected an `optimkit pbt` run folder"
        )
    path, csv = folder / "results.json", folder / "pbt.csv"
    for p in (path, csv):
        if not p.is_file():
            raise ValueError(f"replay: no {str(p)!r}; expected an `optimkit pbt` run folder")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        where = (
            f" (line {e.lineno}, column {e.colno})" if isinstance(e, json.JSONDecodeError) else ""
        )
        raise ValueError(f"replay: {str(path)!r} is not valid JSON{where}") from None
    keys = ("dataset", "train_config", "initial", "replay", "metric", "best_member")
    if not isinstance(info, dict) or any(k not in info for k in keys):
        raise ValueError(f"replay: {str(path)!r} is not the results of an `optimkit pbt` run")
    if info["train_config"].get("model") is None:
        raise ValueError("replay: the run's model was given as a function; call "
                         "optimkit.tune.pbt.replay() with it")  # fmt: skip
    recorded = info["replay"]
    names = [n for n in recorded[0] if n not in ("start_epoch", "end_epoch", "member")]
    frame = _read_lineage(csv, [*LINEAGE_COLUMNS, *names, info["metric"]])
    rows = [{**r, "parent": None if pd.isna(r["parent"]) else int(r["parent"])}
            for r in frame.to_dict(orient="records")]  # fmt: skip
    try:
        schedule = lineage(rows, names, int(info["best_member"]))
    except LookupError as e:
        raise ValueError(f"replay: {str(csv)!r} is not a complete lineage ({e})") from None
    if schedule != recorded:
        diff = next(i for i, (a, b) in enumerate(zip(schedule, recorded, strict=False))
                    if a != b) if len(schedule) == len(recorded) else None  # fmt: skip
        why = (f"{len(schedule)} segments against {len(recorded)}" if diff is None
               else f"segment {diff + 1}: {schedule[diff]} against {recorded[diff]}")  # fmt: skip
        raise ValueError(f"replay: {str(csv)!r} and results.json disagree on the best member's "
                         f"schedule ({why})")  # fmt: skip
    return PBTRun(folder, info, frame, schedule)


def _read_lineage(csv: Path, columns: list[str]) -> pd.DataFrame:
    """pbt.csv (pandas reads its floats back exactly), with its columns, types and each
    member's segments (numbered from 0, each starting where the last ended) checked."""
    try:
        frame = pd.read_csv(csv)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        why = " ".join(str(e).split())[:200] or type(e).__name__
        raise ValueError(f"replay: {str(csv)!r} is not a readable CSV ({why})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"replay: {str(csv)!r} lacks the column(s) {', '.join(missing)}; "
                         "expected the lineage an `optimkit pbt` run writes")  # fmt: skip
    for c in columns:
        kind = frame[c].dtype
        if c in ("member", "segment", "start_epoch", "end_epoch") and kind.kind not in "iu":
            raise ValueError(f"replay: {str(csv)!r}, column {c}: expected integers")
        if c == "parent" and (kind.kind not in "iuf" or not _whole(frame[c])):
            raise ValueError(f"replay: {str(csv)!r}, column parent: expected member numbers")
        if c not in LINEAGE_COLUMNS and c != columns[-1] and frame[c].isna().any():
            raise ValueError(f"replay: {str(csv)!r}, column {c}: missing values")
    for k, rows in frame.sort_values(["member", "segment"]).groupby("member"):
        ends = [0, *rows.end_epoch.tolist()[:-1]]
        for i, (seg, start, end) in enumerate(zip(rows.segment, rows.start_epoch, ends,
                                                  strict=True)):  # fmt: skip
            if seg != i or start != end:
                raise ValueError(f"replay: {str(csv)!r} is not a complete lineage (member {k}: "
                                 f"segment {seg} starts at epoch {start}, expected segment {i} "
                                 f"from epoch {end})")  # fmt: skip
    return frame


def _whole(column: pd.Series) -> bool:
    values = column.dropna()
    return bool(((values == values.round()) & (values >= 0)).all())


def replay_run(
    run_dir: Any, progress: Callable[[int, int], None] | None = None
) -> PopulationTrainer:
    """`replay` of the best member of an `optimkit pbt` run folder (`read_run`: the dataset,
    training config and root member from results.json, the schedule from pbt.csv)."""
    run = read_run(run_dir)
    return replay(run.dataset(), run.config(), run.initial(), run.schedule, progress=progress)
