"""Validation helpers for model options: bad values raise ValueError naming the option."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch


def positive_int(name: str, value: Any) -> int:
    """An int >= 1 (bools are rejected)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    return int(value)


def int_tuple(name: str, value: Any, *, allow_empty: bool = True) -> tuple[int, ...]:
    """A sequence of ints >= 1 (a single int is a one-element tuple)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{name}: expected a sequence of integers >= 1, got {value!r}")
    out = tuple(positive_int(f"{name}[{i}]", v) for i, v in enumerate(value))
    if not out and not allow_empty:
        raise ValueError(f"{name}: expected at least one integer >= 1, got {value!r}")
    return out


def probability(name: str, value: Any) -> float:
    """A float p with 0 <= p < 1 (a dropout rate)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}: expected a number in [0, 1), got {value!r}")
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name}: expected a number in [0, 1), got {value!r}")
    return float(value)


def finite_float(name: str, value: Any, *, positive: bool = False) -> float:
    """A finite float (> 0 with `positive`)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or (positive and value <= 0):
        kind = "a finite number > 0" if positive else "a finite number"
        raise ValueError(f"{name}: expected {kind}, got {value!r}")
    return float(value)


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name}: expected True or False, got {value!r}")
    return value


def choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """One of `choices` (case-sensitive); the message lists the valid ones."""
    valid = list(choices)
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"{name}: unknown value {value!r}; valid values: {', '.join(valid)}")
    return value


def input_tensor(x: Any, *, ndims: Sequence[int], integer: bool, what: str) -> torch.Tensor:
    """Check a model input's type, rank and dtype kind (never its values)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x: expected a torch.Tensor {what}, got {type(x).__name__}")
    if x.dim() not in ndims:
        raise ValueError(f"x: expected {what}, got shape {list(x.shape)}")
    if integer and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        raise ValueError(f"x: expected integer indices {what}, got dtype {x.dtype}")
    if not integer and not x.is_floating_point():
        raise ValueError(f"x: expected floating-point features {what}, got dtype {x.dtype}")
    return x
