"""The functional core: small transforms on stacked tensors, chained in the style of optax.

Every tensor is in its member view (`optimkit.optim.members`): a parameter, its gradient and
its state are [K, ...], the step counter is [K]. Hyperparameters come in a mapping `hp` from
flat names (``lr``, ``beta1``, ...) to float64 [K] tensors, read at every step so that
schedules can change them; `bc` views one against a parameter.

A transform maps a gradient to a *direction* d; `apply_updates` then moves p <- p - lr * d
in place. A transform that moves the parameter itself (Rprop, schedule-free, ...) returns
None instead. A transform never modifies a tensor it was given (the gradient may be the
user's ``p.grad``), only its own state (in place: state tensors are views of the stored ones)
and the parameter. Nothing branches on tensor values, so the same code runs on one model
(K = 1), on a population, under ``torch.func.vmap`` and under ``torch.compile``. Terms a user
switched off with the number 0 are left out when the chain is built, as torch.optim does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from optimkit.optim.members import bc

State = dict[str, Tensor]
HP = Mapping[str, Tensor]  # flat name -> float64 [K] tensor


class Transform(NamedTuple):
    """init(param, hp) -> the parameter's buffers; update(grad, state, param, hp) -> direction
    (or None when it moved the parameter itself)."""

    init: Callable[[Tensor, HP], State]
    update: Callable[[Tensor, State, Tensor, HP], Tensor | None]


def no_state(param: Tensor, hp: HP) -> State:
    return {}


def chain(*transforms: Transform) -> Transform:
    """Compose transforms left to right; their state keys must be distinct."""

    def init(param: Tensor, hp: HP) -> State:
        state: State = {}
        for t in transforms:
            state.update(t.init(param, hp))
        return state

    def update(grad: Tensor, state: State, param: Tensor, hp: HP) -> Tensor | None:
        d: Tensor | None = grad
        for t in transforms:
            assert d is not None, "only the last transform of a chain may move the parameter"
            d = t.update(d, state, param, hp)
        return d

    return Transform(init, update)


def negate() -> Transform:
    """maximize=True: d = -g (torch.optim's ``maximize``)."""
    return Transform(no_state, lambda g, s, p, hp: -g)


def add_decayed_weights(name: str = "weight_decay") -> Transform:
    """Coupled L2 (torch's ``weight_decay``): g <- g + wd * p."""
    return Transform(no_state, lambda g, s, p, hp: g.addcmul(p, bc(hp[name], p)))


def decay_weights(name: str = "weight_decay") -> Transform:
    """Decoupled weight decay (Loshchilov & Hutter, 2019): p <- p * (1 - lr * wd), in place."""

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> Tensor:
        p.mul_(bc(1 - hp["lr"] * hp[name], p))
        return g

    return Transform(no_state, update)


def weight_decay(
    group: Mapping, decoupled: bool = False, name: str = "weight_decay"
) -> list[Transform]:
    """The weight-decay transform a group asks for: none when its value is the number 0."""
    value = group[name]
    if not isinstance(value, Tensor) and value == 0:
        return []
    return [decay_weights(name) if decoupled else add_decayed_weights(name)]


def head(group: Mapping) -> list[Transform]:
    """``maximize`` as the first transform of a chain."""
    return [negate()] if group.get("maximize", False) else []


def zeros(*names: str) -> Callable[[Tensor, HP], State]:
    """An init that gives the parameter one zero buffer per name."""
    return lambda p, hp: {
        n: torch.zeros_like(p, memory_format=torch.preserve_format) for n in names
    }


def count(state: State) -> Tensor:
    """The step counter t ([K], float64; already incremented for this step)."""
    return state["step"].to(torch.float64)


def lerp_(buf: Tensor, x: Tensor, weight: Tensor) -> Tensor:
    """buf <- buf + weight * (x - buf), in place, with a [K] weight (16-bit buffers: the
    weight in float32, as torch's scalar weight)."""
    w = bc(weight, buf)
    if w.dtype == buf.dtype:
        return buf.lerp_(x, w)
    return buf.add_(x.sub(buf).mul_(w))


def ema_(buf: Tensor, x: Tensor, decay: Tensor) -> Tensor:
    """buf <- decay * buf + (1 - decay) * x, in place (torch's ``lerp_(x, 1 - decay)``)."""
    return lerp_(buf, x, 1 - decay)


def ema_sq_(buf: Tensor, x: Tensor, decay: Tensor) -> Tensor:
    """buf <- decay * buf + (1 - decay) * x * x, in place, as buf.lerp_(x * x, 1 - decay):
    two passes over memory, as torch's ``mul_(decay).addcmul_(x, x, value=1 - decay)``."""
    return lerp_(buf, x * x, 1 - decay)


def apply_updates(
    transform: Transform,
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    states: Sequence[State],
    hp: HP,
) -> None:
    """One step for one group: count, transform each gradient, and move p <- p - lr * d.

    Parameters are updated in place; each state holds its transform's buffers plus ``step``,
    incremented first so transforms see t = 1 on the first step.
    """
    for p, g, state in zip(params, grads, states, strict=True):
        state["step"].add_(1)
        d = transform.update(g, state, p, hp)
        if d is not None:
            p.addcmul_(d, bc(-hp["lr"], p))
