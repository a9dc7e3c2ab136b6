"""Adagrad (Duchi et al., 2011) with torch.optim.Adagrad's conventions."""

from __future__ import annotations

import torch
from torch import Tensor

from optimkit.optim.base import PopulationOptimizer
from optimkit.optim.members import bc
from optimkit.optim.spec import Hyperparameter, OptimizerSpec, eps, lr, maximize, weight_decay
from optimkit.optim.transforms import HP, State, Transform, chain, count, head
from optimkit.optim.transforms import weight_decay as decay


def scale_by_adagrad(initial: float | Tensor | None = None) -> Transform:
    r"""Adagrad's direction with torch's lr decay (the accumulator starts at its initial value).

    .. math::
        s_t = s_{t-1} + g_t^2, \qquad d_t = \frac{g_t}{(\sqrt{s_t} + \epsilon)(1 + (t-1)\eta)}

    where :math:`\eta` is ``lr_decay``, so that p <- p - lr * d is torch's step with clr.
    The accumulator starts at `initial` (default: the group's ``initial_accumulator_value``).
    """

    def init(p: Tensor, hp: HP) -> State:
        s = torch.zeros_like(p, memory_format=torch.preserve_format)
        start = hp["initial_accumulator_value"] if initial is None else initial
        if not isinstance(start, Tensor):
            return {"sum": s.add_(start)}
        return {"sum": s.add_(bc(start.to(s.device), p))}

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> Tensor:
        s = state["sum"].addcmul_(g, g)
        scale = 1 + (count(state) - 1) * hp["lr_decay"]
        std = s.sqrt().add_(bc(hp["eps"], p)).mul_(bc(scale, p))
        return std.reciprocal_().mul_(g)

    return Transform(init, update)


class Adagrad(PopulationOptimizer):
    """Adagrad (torch.optim.Adagrad's arguments and defaults); every number may be [K].

    As in torch, the accumulators start at the constructor's ``initial_accumulator_value``
    (a param group's own value is kept in the group but not used)."""

    spec = OptimizerSpec(
        name="adagrad",
        summary="per-coordinate steps scaled by the root of the summed squared gradients",
        reference="torch.optim.Adagrad",
        hyperparameters=(
            lr(1e-2, tune=(1e-3, 1.0)),
            Hyperparameter(
                "lr_decay", 0.0, "lr / (1 + (t - 1) lr_decay)", low=0.0, test=(0.0, 0.1)
            ),
            weight_decay(),
            Hyperparameter(
                "initial_accumulator_value", 0.0, "initial sum of squares", low=0.0, test=(0.0, 0.5)
            ),
            eps(1e-10),
            maximize(),
        ),
        compare=("adagrad",),
        paper="Duchi, Hazan & Singer (2011)",
    )

    def __init__(
        self,
        params,
        lr=1e-2,
        lr_decay=0.0,
        weight_decay=0.0,
        initial_accumulator_value=0.0,
        eps=1e-10,
        foreach=None,
        *,
        maximize: bool = False,
        **options,
    ) -> None:
        defaults = dict(
            lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value, eps=eps, maximize=maximize,
        )  # fmt: skip
        self._initial = initial_accumulator_value
        super().__init__(params, defaults, foreach=foreach, **options)

    def make_transform(self, group: dict) -> Transform:
        return chain(*head(group), *decay(group), scale_by_adagrad(self._initial))
