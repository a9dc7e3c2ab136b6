"""Hyperparameters that are either a Python float or a [K] tensor, one value per population member.

A [K] hyperparameter broadcasts along dim 0 of every parameter, whose leading dimension is then K.
Coefficients are computed on the [K] vectors in float64 (as torch.optim computes them in Python
doubles) and cast to the parameter's dtype only where they meet a parameter-shaped tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias, overload

import torch
from torch import Tensor

Hyper: TypeAlias = float | Tensor
"""A hyperparameter: a Python number shared by all members, or a [K] tensor (one per member)."""


@overload
def bc(x: Tensor, like: Tensor) -> Tensor: ...
@overload
def bc(x: float, like: Tensor) -> float: ...
@overload
def bc(x: Hyper, like: Tensor) -> Hyper: ...
def bc(x: Hyper, like: Tensor) -> Hyper:
    """Broadcast a hyperparameter against `like` ([K, ...]): a float stays a float, a [K] tensor
    becomes a [K, 1, ..., 1] view in `like`'s dtype and device."""
    if isinstance(x, Tensor):
        return x.to(like.dtype).reshape((-1,) + (1,) * (like.dim() - 1))
    return x


def member_view(x: Tensor, like: Tensor) -> Tensor:
    """A [K] tensor (e.g. a member mask) viewed as [K, 1, ..., 1] against `like`, dtype kept."""
    return x.reshape((-1,) + (1,) * (like.dim() - 1))


def as_hyper(
    name: str,
    value: object,
    check: Callable[[Tensor], Tensor] | None = None,
    expected: str = "",
    device: torch.device | None = None,
) -> Hyper:
    """Validate one hyperparameter and return it as a float or a float64 [K] tensor.

    `check` maps a float64 tensor of values to a boolean tensor (True = valid); `expected`
    says in words what valid means, for the error message.
    """
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected a number or a 1-D tensor of shape [K], got a bool")
    if isinstance(value, int | float):
        t = torch.tensor(float(value), dtype=torch.float64)
    elif isinstance(value, Tensor):
        if value.dim() == 0:
            t = value.detach().to(torch.float64)
            value = float(value)
        elif value.dim() == 1 and value.numel() > 0:
            if value.is_complex():
                raise ValueError(f"{name}: expected a real tensor, got {value.dtype}")
            t = value.detach().to(device=device, dtype=torch.float64)
            value = t
        else:
            raise ValueError(
                f"{name}: expected a number or a 1-D tensor of shape [K], "
                f"got a tensor of shape {list(value.shape)}"
            )
    else:
        raise ValueError(
            f"{name}: expected a number or a 1-D tensor of shape [K], got {type(value).__name__}"
        )
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: expected finite values, got {_show(t)}")
    if check is not None and not bool(check(t).all()):
        raise ValueError(f"{name}: expected {expected}, got {_show(t)}")
    return float(value) if not isinstance(value, Tensor) else value


def _show(t: Tensor) -> str:
    return repr(t.item()) if t.dim() == 0 else repr(t.tolist())


def members_of(value: Hyper) -> int | None:
    """K of a hyperparameter: its length when it is a [K] tensor, else None."""
    return value.shape[0] if isinstance(value, Tensor) else None


def is_zero(x: Hyper) -> bool:
    """True only for a Python 0 (a tensor is never statically zero: it may be scheduled)."""
    return not isinstance(x, Tensor) and x == 0


# Range checks shared by the optimizers (names as in torch.optim's messages).
def nonneg(t: Tensor) -> Tensor:
    return t >= 0


def positive(t: Tensor) -> Tensor:
    return t > 0


def unit_interval(t: Tensor) -> Tensor:
    """[0, 1)."""
    return (t >= 0) & (t < 1)


def closed_unit(t: Tensor) -> Tensor:
    """[0, 1]."""
    return (t >= 0) & (t <= 1)
