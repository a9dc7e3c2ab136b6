"""Optimizers by name, for configs and the CLI (from the optimizer database)."""

from __future__ import annotations

from typing import Any

from optimkit.optim.database import OPTIMIZERS, entry


def get_optimizer(name: str, params: Any, **hyperparameters: Any) -> Any:
    """Build an optimizer by (case-insensitive) name or variant name (``nesterov``: SGD with
    its fixed settings); unknown names list the valid ones."""
    e = entry(name)
    return e.cls(params, **{**e.fixed, **hyperparameters})


__all__ = ["OPTIMIZERS", "get_optimizer"]
