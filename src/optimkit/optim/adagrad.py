"""Adagrad (Duchi et al., 2011) with torch.optim.Adagrad's conventions."""

from __future__ import annotations

import torch
from torch import Tensor

from optimkit.optim.base import PopulationOptimizer
from optimkit.optim.hyper import bc, nonneg
from optimkit.optim.transforms import HP, State, Transform, add_decayed_weights, chain, negate


def scale_by_adagrad() -> Transform:
    r"""Adagrad's direction with torch's lr decay (the accumulator starts at its initial value).

    .. math::
        s_t = s_{t-1} + g_t^2, \qquad d_t = \frac{g_t}{(\sqrt{s_t} + \epsilon)(1 + (t-1)\eta)}

    where :math:`\eta` is ``lr_decay``, so that p <- p - lr * d is torch's step with clr.
    """

    def init(p: Tensor, hp: HP) -> State:
        s = torch.zeros_like(p, memory_format=torch.preserve_format)
        return {"sum": s.add_(bc(hp["initial_accumulator_value"], p))}

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> Tensor:
        s = state["sum"].addcmul_(g, g)
        decay = 1 + (state["step"] - 1) * hp["lr_decay"]
        std = s.sqrt().add_(bc(hp["eps"], p)).mul_(bc(decay, p))
        return std.reciprocal_().mul_(g)

    return Transform(init, update)


class Adagrad(PopulationOptimizer):
    """Adagrad (torch.optim.Adagrad's arguments and defaults); hyperparameters may be [K]."""

    hyper_checks = {
        "lr": (nonneg, "lr >= 0"),
        "lr_decay": (nonneg, "lr_decay >= 0"),
        "weight_decay": (nonneg, "weight_decay >= 0"),
        "initial_accumulator_value": (nonneg, "initial_accumulator_value >= 0"),
        "eps": (nonneg, "eps >= 0"),
    }

    def __init__(
        self,
        params,
        lr=1e-2,
        lr_decay=0.0,
        weight_decay=0.0,
        initial_accumulator_value=0.0,
        eps=1e-10,
        *,
        maximize: bool = False,
        **extras,
    ) -> None:
        defaults = dict(
            lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value, eps=eps, maximize=maximize,
        )  # fmt: skip
        super().__init__(params, defaults, **extras)

    def make_transform(self, group: dict) -> Transform:
        head = [negate()] if group["maximize"] else []
        return chain(*head, add_decayed_weights(), scale_by_adagrad())
