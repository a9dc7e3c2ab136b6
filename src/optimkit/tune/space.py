"""Search spaces: a default per optimizer, or any space from a config file.

A space maps names to ranges ``{low, high, log}`` (floats), ``{low, high, int: true}`` or
choices ``{choices: [...]}``; a plain value fixes the name. Names are the optimizers'
hyperparameters (their flat names in the optimizer database, `optimkit optimizers`), the
trainer's per-member extras (clip_grad_norm, clip_grad_value, l1), structural choices
(optimizer, batch_size, hidden as "128-64", activation, dropout, batch_norm, residual,
schedule) and seed. A trial's configuration splits into its *shape* (what must be equal inside
one population) and its per-member values. Everything optimizer-specific is read from
`optimkit.optim.database`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna

from optimkit.optim.database import ENTRIES, OPTIMIZERS, entry
from optimkit.optim.spec import Hyperparameter, OptimizerSpec
from optimkit.train.trainer import OPTIMIZER_EXTRAS


def _specs() -> list[OptimizerSpec]:
    return [cls.spec for cls in OPTIMIZERS.values()]  # type: ignore[attr-defined]


def _by_use(member: bool) -> tuple[str, ...]:
    """Hyperparameter names across the database, the most widely taken first."""
    counts: Counter[str] = Counter()
    first: dict[str, int] = {}
    for spec in _specs():
        for h in spec.hyperparameters:
            if h.member == member:
                counts[h.name] += 1
                first.setdefault(h.name, len(first))
    return tuple(sorted(counts, key=lambda n: (-counts[n], first[n])))


#: every pickable name (optimizers and their variants) -> (optimizer, fixed settings)
OPTIMIZER_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    name: (e.optimizer, dict(e.fixed)) for name, e in ENTRIES.items()
}

#: per-member optimizer hyperparameters across the database (numbers: may differ inside one
#: population), then the trainer's per-member extras
HYPER_MEMBER_KEYS = _by_use(member=True)
EXTRA_KEYS = (*OPTIMIZER_EXTRAS, "seed")
#: per-member values (may differ inside one population)
MEMBER_KEYS = (*HYPER_MEMBER_KEYS, *(k for k in EXTRA_KEYS if k not in HYPER_MEMBER_KEYS))
#: optimizer settings that are not numbers (flags, choices, ints): equal inside one population
HYPER_SHAPE_KEYS = tuple(k for k in _by_use(member=False) if k not in MEMBER_KEYS)
#: structural values (equal inside one population)
STRUCTURE_KEYS = ("optimizer", "batch_size", "hidden", "activation", "dropout", "batch_norm",
                  "residual", "schedule")  # fmt: skip
SHAPE_KEYS = (*STRUCTURE_KEYS, *(k for k in HYPER_SHAPE_KEYS if k not in STRUCTURE_KEYS))
KEYS = MEMBER_KEYS + SHAPE_KEYS

#: the hyperparameters each entry takes (besides the extras clip_grad_norm, clip_grad_value,
#: l1 and seed)
OPTIMIZER_KEYS: dict[str, tuple[str, ...]] = {
    name: tuple(h.name for h in e.spec.hyperparameters) for name, e in ENTRIES.items()
}

#: the default space of each entry (the database's tuning ranges)
DEFAULT_SPACES: dict[str, dict[str, Any]] = {name: e.tuning_space() for name, e in ENTRIES.items()}
OPTIMIZER_NAMES = tuple(ENTRIES)


def hyperparameter(optimizer: str, name: str) -> Hyperparameter | None:
    """The declaration of `name` in the optimizer of entry `optimizer` (None if it has none)."""
    for h in entry(optimizer).spec.hyperparameters:
        if h.name == name:
            return h
    return None


def member_of(config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's configuration (flat names, with its ``optimizer``) as the trainer's member:
    per-member values and the optimizer's other settings as constructor keywords (the
    elements of a tuple argument packed, e.g. beta1/beta2 as betas, the missing ones at that
    optimizer's defaults), plus the extras (clip_grad_norm, l1, seed, ...)."""
    if "optimizer" not in config:
        raise ValueError("config: expected an 'optimizer' to pack its hyperparameters")
    spec = entry(str(config["optimizer"])).spec
    takes = {h.name for h in spec.hyperparameters}
    flat = {k: v for k, v in config.items() if k in takes}
    extras = {k: v for k, v in config.items() if k in EXTRA_KEYS and k not in takes}
    return {**spec.to_kwargs(flat), **extras}


@dataclass(frozen=True)
class Param:
    """One searched name: a float/int range or a list of choices."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] | None = None

    def suggest(self, trial: optuna.trial.BaseTrial) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)  # type: ignore[arg-type]
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)  # type: ignore[arg-type]

    def grid(self, points: int) -> list[Any]:
        """Values for the grid sampler: the choices, or `points` values spread over the range
        (geometrically when log)."""
        if self.choices is not None:
            return list(self.choices)
        lo, hi = float(self.low), float(self.high)  # type: ignore[arg-type]
        if points == 1 or lo == hi:
            return [lo]
        if self.log:
            values = [math.exp(math.log(lo) + i * (math.log(hi) - math.log(lo)) / (points - 1))
                      for i in range(points)]  # fmt: skip
        else:
            values = [lo + i * (hi - lo) / (points - 1) for i in range(points)]
        values = [min(max(v, lo), hi) for v in values]  # no rounding past the ends
        values[0], values[-1] = lo, hi
        return sorted({round(v) for v in values}) if self.integer else values


def parse_param(key: str, spec: Any) -> Param | Any:
    """A Param from a config value; a plain value is returned as is (a fixed setting)."""
    where = f"space.{key}"
    if not isinstance(spec, Mapping):
        return spec
    unknown = set(spec) - {"low", "high", "log", "int", "choices"}
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; valid: low, high, log, "
                         "int, choices")  # fmt: skip
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list | tuple) or not choices:
            raise ValueError(f"{where}: choices must be a non-empty list")
        return Param(key, choices=tuple(_choice(c) for c in choices))
    if "low" not in spec or "high" not in spec:
        raise ValueError(f"{where}: expected low and high (or choices)")
    low, high = spec["low"], spec["high"]
    for name, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"{where}.{name}: expected a finite number, got {v!r}")
    if low > high:
        raise ValueError(f"{where}: low ({low}) > high ({high})")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise ValueError(f"{where}: a log scale needs low > 0, got low = {low}")
    return Param(key, float(low), float(high), log=log, integer=bool(spec.get("int", False)))


def _choice(c: Any) -> Any:
    """Optuna choices are None/bool/int/float/str: widths lists become "128-64"."""
    if isinstance(c, list | tuple):
        return "-".join(str(int(x)) for x in c)
    return c


@dataclass
class SearchSpace:
    """Searched Params plus fixed values; `suggest(trial)` returns a trial's configuration."""

    params: dict[str, Param] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(
        cls,
        space: Mapping[str, Any] | None,
        optimizer: str | None,
        *,
        replace_defaults: bool = False,
    ) -> SearchSpace:
        """The optimizer's default space updated with a config's space, or with
        `replace_defaults=True` the config's space alone (only the names it gives are
        searched; the others keep the optimizer's defaults)."""
        if optimizer is not None and optimizer not in OPTIMIZER_NAMES:
            raise ValueError(f"optimizer: unknown name {optimizer!r}; valid: "
                             f"{', '.join(OPTIMIZER_NAMES)}")  # fmt: skip
        merged: dict[str, Any] = {}
        if optimizer is not None:
            if not replace_defaults:
                merged.update(DEFAULT_SPACES[optimizer])
            merged["optimizer"] = optimizer
        for key, spec in (space or {}).items():
            key = str(key).replace("-", "_")
            if key not in KEYS:
                raise ValueError(f"space.{key}: unknown key; valid: {', '.join(KEYS)}")
            merged[key] = spec
        if "optimizer" not in merged:
            raise ValueError("space.optimizer: give --optimizer or an optimizer in the space")
        out = cls()
        for key, spec in merged.items():
            p = parse_param(key, spec)
            if isinstance(p, Param):
                out.params[key] = p
            else:
                out.fixed[key] = _choice(p) if key == "hidden" else p
        names = (
            out.params["optimizer"].choices
            if "optimizer" in out.params
            else (out.fixed["optimizer"],)
        )
        for name in names or ():
            if name not in OPTIMIZER_NAMES:
                raise ValueError(f"space.optimizer: unknown name {name!r}; valid: "
                                 f"{', '.join(OPTIMIZER_NAMES)}")  # fmt: skip
        out._check(tuple(names or ()))
        return out

    def _check(self, names: tuple[Any, ...]) -> None:
        """Every optimizer hyperparameter is taken by one of the space's optimizers, and its
        range or fixed value lies in the valid range of each optimizer that takes it."""
        for key in (*self.params, *self.fixed):
            if key in EXTRA_KEYS or key in STRUCTURE_KEYS:
                continue
            decls = [(n, h) for n in names if (h := hyperparameter(str(n), key)) is not None]
            if not decls:
                raise ValueError(f"space.{key}: not a hyperparameter of "
                                 f"{', '.join(map(str, names))}")  # fmt: skip
            p = self.params.get(key)
            for n, h in decls:
                values: tuple[Any, ...]
                if p is None:
                    values = (self.fixed[key],)
                elif p.choices is not None:
                    values = p.choices
                else:
                    values = (p.low, p.high)
                for v in values:
                    try:
                        h.check(int(v) if h.kind == "int" and isinstance(v, float)
                                and v.is_integer() else v)  # fmt: skip
                    except ValueError as err:
                        raise ValueError(f"space.{key} ({n}): {err}") from None

    def suggest(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Define-by-run: the optimizer first, then only the names it takes."""
        config = dict(self.fixed)
        if "optimizer" in self.params:
            config["optimizer"] = self.params["optimizer"].suggest(trial)
        name = config["optimizer"]
        # a multi-optimizer space uses each optimizer's default range for unset names
        defaults = DEFAULT_SPACES[name] if "optimizer" in self.params else {}
        takes = set(OPTIMIZER_KEYS[name]) | set(EXTRA_KEYS) | set(STRUCTURE_KEYS)
        for key, p in self.params.items():
            if key != "optimizer" and key in takes:
                config[key] = p.suggest(trial)
        for key, spec in defaults.items():
            if key not in config and key in takes:
                config[key] = parse_param(key, spec).suggest(trial)  # type: ignore[union-attr]
        config = {k: v for k, v in config.items() if k in takes or k == "optimizer"}
        for key, value in OPTIMIZER_ALIASES[name][1].items():  # a variant's fixed settings
            config.setdefault(key, value)
        return config

    def grid(self, points: int) -> dict[str, list[Any]]:
        """The grid sampler's search space (every searched name)."""
        return {k: p.grid(points) for k, p in self.params.items()}


def split_config(config: Mapping[str, Any]) -> tuple[tuple[tuple[str, Any], ...], dict[str, Any]]:
    """(shape key, member values): trials with equal shapes share a population."""
    shape = tuple(sorted((k, v) for k, v in config.items() if k in SHAPE_KEYS))
    member = {k: v for k, v in config.items() if k in MEMBER_KEYS}
    return shape, member
