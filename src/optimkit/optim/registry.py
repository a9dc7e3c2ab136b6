"""Optimizers by name, for configs and the CLI."""

from __future__ import annotations

from typing import Any

from optimkit.optim.adagrad import Adagrad
from optimkit.optim.adam import Adam, AdamW
from optimkit.optim.adamax import Adamax
from optimkit.optim.base import PopulationOptimizer
from optimkit.optim.lion import Lion
from optimkit.optim.nadam import NAdam
from optimkit.optim.rmsprop import RMSprop
from optimkit.optim.sgd import SGD

OPTIMIZERS: dict[str, type[PopulationOptimizer]] = {
    "sgd": SGD,
    "adagrad": Adagrad,
    "rmsprop": RMSprop,
    "adam": Adam,
    "adamw": AdamW,
    "adamax": Adamax,
    "nadam": NAdam,
    "lion": Lion,
}


def get_optimizer(name: str, params: Any, **hyperparameters: Any) -> PopulationOptimizer:
    """Build an optimizer by (case-insensitive) name; unknown names list the valid ones."""
    cls = OPTIMIZERS.get(name.lower())
    if cls is None:
        raise ValueError(f"optimizer: unknown name {name!r}; valid: {', '.join(OPTIMIZERS)}")
    return cls(params, **hyperparameters)
