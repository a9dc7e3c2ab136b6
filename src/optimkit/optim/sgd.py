"""SGD with momentum, dampening and Nesterov momentum (torch.optim.SGD's conventions)."""

from __future__ import annotations

import torch
from torch import Tensor

from optimkit.optim.base import PopulationOptimizer
from optimkit.optim.hyper import bc, is_zero, nonneg
from optimkit.optim.transforms import HP, State, Transform, add_decayed_weights, chain, negate


def momentum_trace(nesterov: bool) -> Transform:
    r"""Heavy-ball momentum as in torch.optim.SGD (Sutskever et al., 2013).

    .. math::
        b_1 = g_1, \quad b_t = \mu b_{t-1} + (1 - \tau) g_t, \qquad
        d_t = g_t + \mu b_t \ (\text{Nesterov}) \ \text{or}\ b_t

    A member with :math:`\mu = 0` keeps :math:`d_t = g_t` (torch keeps no buffer then).
    """

    def init(p: Tensor, hp: HP) -> State:
        if is_zero(hp["momentum"]):
            return {}
        return {"momentum_buffer": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> Tensor:
        mu, damp = hp["momentum"], hp["dampening"]
        if is_zero(mu):
            return g
        buf = state["momentum_buffer"]
        # b <- a * b + c * g with (a, c) = (0, 1) on a member's first step and for mu = 0
        # (so b = g there), else (mu, 1 - dampening).
        later = (state["step"] > 1).to(torch.float64) * torch.as_tensor(mu != 0)
        buf.mul_(bc(mu * later, p)).addcmul_(g, bc(1 - damp * later, p))
        return g.addcmul(buf, bc(mu, p)) if nesterov else buf

    return Transform(init, update)


def _all(x: float | Tensor, pred) -> bool:
    return bool(pred(torch.as_tensor(x)).all())


class SGD(PopulationOptimizer):
    """Stochastic gradient descent: p <- p - lr * d with d from `momentum_trace`.

    Arguments and defaults are torch.optim.SGD's; each hyperparameter may be a [K] tensor.
    """

    hyper_checks = {
        "lr": (nonneg, "lr >= 0"),
        "momentum": (nonneg, "momentum >= 0"),
        "dampening": (None, ""),
        "weight_decay": (nonneg, "weight_decay >= 0"),
    }

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-3,
        momentum: float | Tensor = 0.0,
        dampening: float | Tensor = 0.0,
        weight_decay: float | Tensor = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        **extras,
    ) -> None:
        if nesterov and not (_all(momentum, lambda m: m > 0) and _all(dampening, lambda d: d == 0)):
            raise ValueError("nesterov: requires momentum > 0 and dampening = 0")
        defaults = dict(
            lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
            nesterov=nesterov, maximize=maximize,
        )  # fmt: skip
        super().__init__(params, defaults, **extras)

    def make_transform(self, group: dict) -> Transform:
        head = [negate()] if group["maximize"] else []
        return chain(*head, add_decayed_weights(), momentum_trace(group["nesterov"]))
