"""The functional core: small transforms on stacked tensors, chained in the style of optax.

Every tensor carries the member axis first: a parameter, its gradient and its state are
[K, ...]; the step counter is [K] float64. Hyperparameters come in a mapping `hp` of floats or
[K] tensors (see `optimkit.optim.hyper`), read at every step so that schedules can change them.

A transform maps a gradient to a *direction* d; `apply_updates` then moves p <- p - lr * d
in place. A transform never modifies a tensor it was given (the gradient may be the user's
``p.grad``), only its own state and tensors it created. Nothing branches on tensor values, so
the same code runs on one model (K = 1), on a population, under ``torch.func.vmap`` and under
``torch.compile``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from optimkit.optim.hyper import Hyper, bc, is_zero

State = dict[str, Tensor]
HP = Mapping[str, Any]  # floats or [K] tensors, and pairs of them (betas)


class Transform(NamedTuple):
    """init(param, hp) -> the parameter's state; update(grad, state, param, hp) -> direction."""

    init: Callable[[Tensor, HP], State]
    update: Callable[[Tensor, State, Tensor, HP], Tensor]


def _no_state(param: Tensor, hp: HP) -> State:
    return {}


def chain(*transforms: Transform) -> Transform:
    """Compose transforms left to right; their state keys must be distinct."""

    def init(param: Tensor, hp: HP) -> State:
        state: State = {}
        for t in transforms:
            state.update(t.init(param, hp))
        return state

    def update(grad: Tensor, state: State, param: Tensor, hp: HP) -> Tensor:
        for t in transforms:
            grad = t.update(grad, state, param, hp)
        return grad

    return Transform(init, update)


def negate() -> Transform:
    """maximize=True: d = -g (torch.optim's ``maximize``)."""
    return Transform(_no_state, lambda g, s, p, hp: -g)


def add_decayed_weights() -> Transform:
    """Coupled L2 (torch's ``weight_decay``): g <- g + wd * p."""

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> Tensor:
        wd = hp["weight_decay"]
        if is_zero(wd):
            return g
        return g.add(p, alpha=wd) if not isinstance(wd, Tensor) else g.addcmul(p, bc(wd, p))

    return Transform(_no_state, update)


def decay_weights() -> Transform:
    """Decoupled weight decay (Loshchilov & Hutter, 2019): p <- p * (1 - lr * wd), in place."""

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> Tensor:
        wd = hp["weight_decay"]
        if not is_zero(wd):
            p.mul_(bc(1 - hp["lr"] * wd, p))
        return g

    return Transform(_no_state, update)


def zeros(*names: str) -> Callable[[Tensor, HP], State]:
    """An init that gives the parameter one zero buffer per name."""
    return lambda p, hp: {
        n: torch.zeros_like(p, memory_format=torch.preserve_format) for n in names
    }


def ema_(buf: Tensor, x: Tensor, decay: Hyper) -> Tensor:
    """buf <- decay * buf + (1 - decay) * x, in place (torch's ``lerp_(x, 1 - decay)``)."""
    return buf.lerp_(x, bc(1 - decay, buf))


def ema_sq_(buf: Tensor, x: Tensor, decay: Hyper) -> Tensor:
    """buf <- decay * buf + (1 - decay) * x * x, in place."""
    buf.mul_(bc(decay, buf))
    if isinstance(decay, Tensor):
        return buf.addcmul_(x, x * bc(1 - decay, buf))
    return buf.addcmul_(x, x, value=1 - decay)


def apply_updates(
    transform: Transform,
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    states: Sequence[State],
    hp: HP,
) -> None:
    """One step for one group: count, transform each gradient, and move p <- p - lr * d.

    Parameters are updated in place; each state holds its transform's buffers plus ``step``
    ([K] float64, incremented first so transforms see t = 1 on the first step).
    """
    for p, g, state in zip(params, grads, states, strict=True):
        state["step"].add_(1)
        d = transform.update(g, state, p, hp)
        lr = hp["lr"]
        if isinstance(lr, Tensor):
            p.addcmul_(d, bc(-lr, p))
        else:
            p.add_(d, alpha=-lr)


def init_state(transform: Transform, param: Tensor, hp: HP, members: int) -> State:
    """A parameter's state: the step counter plus its transform's buffers."""
    state = {"step": torch.zeros(members, dtype=torch.float64, device=param.device)}
    state.update(transform.init(param, hp))
    return state
