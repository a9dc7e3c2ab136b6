"""Search spaces: a default per optimizer, or any space from a config file.

A space maps names to ranges ``{low, high, log}`` (floats), ``{low, high, int: true}`` or
choices ``{choices: [...]}``; a plain value fixes the name. Names are optimizer
hyperparameters (lr, weight_decay, momentum, dampening, beta1, beta2, eps, alpha, lr_decay,
clip_grad_norm, l1), structural choices (optimizer, batch_size, hidden as "128-64",
activation, dropout, batch_norm, residual, schedule) and seed. A trial's configuration splits
into its *shape* (what must be equal inside one population) and its per-member values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna

#: optimizer names of the tournament; momentum and nesterov are SGD with fixed flags
OPTIMIZER_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "momentum": ("sgd", {}),
    "nesterov": ("sgd", {"nesterov": True}),
}

#: per-member values (may differ inside one population)
MEMBER_KEYS = ("lr", "weight_decay", "momentum", "dampening", "beta1", "beta2", "eps", "alpha",
               "lr_decay", "clip_grad_norm", "l1", "seed")  # fmt: skip
#: structural values (equal inside one population)
SHAPE_KEYS = ("optimizer", "batch_size", "hidden", "activation", "dropout", "batch_norm",
              "residual", "schedule", "nesterov", "amsgrad", "centered")  # fmt: skip
KEYS = MEMBER_KEYS + SHAPE_KEYS

#: hyperparameters each optimizer takes (besides the shared extras clip_grad_norm and l1)
OPTIMIZER_KEYS: dict[str, tuple[str, ...]] = {
    "sgd": ("lr", "weight_decay", "momentum", "dampening", "nesterov"),
    "adagrad": ("lr", "weight_decay", "lr_decay", "eps"),
    "rmsprop": ("lr", "weight_decay", "momentum", "alpha", "eps", "centered"),
    "adam": ("lr", "weight_decay", "beta1", "beta2", "eps", "amsgrad"),
    "adamw": ("lr", "weight_decay", "beta1", "beta2", "eps", "amsgrad"),
    "adamax": ("lr", "weight_decay", "beta1", "beta2", "eps"),
    "nadam": ("lr", "weight_decay", "beta1", "beta2", "eps"),
    "lion": ("lr", "weight_decay", "beta1", "beta2"),
}
EXTRA_KEYS = ("clip_grad_norm", "l1", "seed")


def _lr(low: float, high: float) -> dict[str, Any]:
    return {"low": low, "high": high, "log": True}


WD = {"low": 1e-6, "high": 1e-2, "log": True}
#: the default space of each optimizer (DeepOBS-style: lr on a log scale, plus its usual knobs)
DEFAULT_SPACES: dict[str, dict[str, Any]] = {
    "sgd": {"lr": _lr(1e-3, 1.0), "weight_decay": WD},
    "momentum": {"lr": _lr(1e-4, 1.0), "momentum": {"low": 0.5, "high": 0.99}, "weight_decay": WD},
    "nesterov": {"lr": _lr(1e-4, 1.0), "momentum": {"low": 0.5, "high": 0.99}, "weight_decay": WD},
    "adagrad": {"lr": _lr(1e-3, 1.0), "weight_decay": WD},
    "rmsprop": {"lr": _lr(1e-5, 1e-1), "alpha": {"low": 0.9, "high": 0.999}, "weight_decay": WD},
    "adam": {"lr": _lr(1e-4, 1e-1), "beta1": {"low": 0.8, "high": 0.95}, "weight_decay": WD},
    "adamw": {"lr": _lr(1e-4, 1e-1), "beta1": {"low": 0.8, "high": 0.95},
              "weight_decay": {"low": 1e-5, "high": 1e-1, "log": True}},
    "adamax": {"lr": _lr(1e-4, 1e-1), "weight_decay": WD},
    "nadam": {"lr": _lr(1e-4, 1e-1), "weight_decay": WD},
    "lion": {"lr": _lr(1e-5, 1e-2), "weight_decay": {"low": 1e-4, "high": 1.0, "log": True}},
}  # fmt: skip
OPTIMIZER_NAMES = tuple(DEFAULT_SPACES)


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
        return out

    def suggest(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Define-by-run: the optimizer first, then only the names it takes."""
        config = dict(self.fixed)
        if "optimizer" in self.params:
            config["optimizer"] = self.params["optimizer"].suggest(trial)
        name = config["optimizer"]
        # a multi-optimizer space uses each optimizer's default range for unset names
        defaults = DEFAULT_SPACES[name] if "optimizer" in self.params else {}
        base, flags = OPTIMIZER_ALIASES.get(name, (name, {}))
        takes = set(OPTIMIZER_KEYS[base]) | set(EXTRA_KEYS) | set(SHAPE_KEYS)
        for key, p in self.params.items():
            if key != "optimizer" and key in takes:
                config[key] = p.suggest(trial)
        for key, spec in defaults.items():
            if key not in config and key in takes:
                config[key] = parse_param(key, spec).suggest(trial)  # type: ignore[union-attr]
        config = {k: v for k, v in config.items() if k in takes or k == "optimizer"}
        config.update(flags)
        if name == "momentum" or name == "nesterov":
            config.setdefault("momentum", 0.9)
        return config

    def grid(self, points: int) -> dict[str, list[Any]]:
        """The grid sampler's search space (every searched name)."""
        return {k: p.grid(points) for k, p in self.params.items()}


def split_config(config: Mapping[str, Any]) -> tuple[tuple[tuple[str, Any], ...], dict[str, Any]]:
    """(shape key, member values): trials with equal shapes share a population."""
    shape = tuple(sorted((k, v) for k, v in config.items() if k in SHAPE_KEYS))
    member = {k: v for k, v in config.items() if k in MEMBER_KEYS}
    return shape, member
