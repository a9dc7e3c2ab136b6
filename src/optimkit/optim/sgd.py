"""SGD with momentum, dampening and Nesterov momentum (torch.optim.SGD's conventions)."""

from __future__ import annotations

import torch
from torch import Tensor

from optimkit.optim.base import PopulationOptimizer
from optimkit.optim.members import bc
from optimkit.optim.spec import Hyperparameter, OptimizerSpec, Variant, flag, lr, maximize
from optimkit.optim.spec import weight_decay as wd_spec
from optimkit.optim.transforms import HP, State, Transform, chain, head, weight_decay


def momentum_trace(nesterov: bool) -> Transform:
    r"""Heavy-ball momentum as in torch.optim.SGD (Sutskever et al., 2013).

    .. math::
        b_1 = g_1, \quad b_t = \mu b_{t-1} + (1 - \tau) g_t, \qquad
        d_t = g_t + \mu b_t \ (\text{Nesterov}) \ \text{or}\ b_t

    A member with :math:`\mu = 0` keeps :math:`d_t = g_t` (torch keeps no buffer then).
    """

    def init(p: Tensor, hp: HP) -> State:
        return {"momentum_buffer": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> Tensor:
        mu, damp = hp["momentum"], hp["dampening"]
        buf = state["momentum_buffer"]
        # b <- a * b + c * g with (a, c) = (0, 1) on a member's first step and for mu = 0
        # (so b = g there), else (mu, 1 - dampening).
        later = (state["step"] > 1).to(torch.float64) * (mu != 0).to(torch.float64)
        buf.mul_(bc(mu * later, p)).addcmul_(g, bc(1 - damp * later, p))
        return g.addcmul(buf, bc(mu, p)) if nesterov else buf

    return Transform(init, update)


class SGD(PopulationOptimizer):
    """Stochastic gradient descent: p <- p - lr * d with d from `momentum_trace`.

    Arguments and defaults are torch.optim.SGD's; each number may be a [K] tensor.
    """

    spec = OptimizerSpec(
        name="sgd",
        summary="stochastic gradient descent, with heavy-ball or Nesterov momentum",
        reference="torch.optim.SGD",
        hyperparameters=(
            lr(1e-3, tune=(1e-3, 1.0)),
            Hyperparameter("momentum", 0.0, "momentum factor", low=0.0, test=(0.0, 0.95)),
            Hyperparameter("dampening", 0.0, "dampening of the momentum", test=(0.0, 0.5)),
            wd_spec(),
            flag("nesterov", "Nesterov momentum: d = g + momentum * b"),
            maximize(),
        ),
        variants=(
            Variant(
                "momentum",
                "SGD with heavy-ball momentum",
                {"momentum": 0.9},
                {"lr": (1e-4, 1.0, True), "momentum": (0.5, 0.99, False)},
            ),
            Variant(
                "nesterov",
                "SGD with Nesterov momentum",
                {"momentum": 0.9, "nesterov": True},
                {"lr": (1e-4, 1.0, True), "momentum": (0.5, 0.99, False)},
            ),
        ),
        compare=("sgd", "momentum", "nesterov"),
        paper="Robbins & Monro (1951); Sutskever et al. (2013)",
    )

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
        **options,
    ) -> None:
        mu, damp = (torch.as_tensor(x, dtype=torch.float64) for x in (momentum, dampening))
        if nesterov and not (bool((mu > 0).all()) and bool((damp == 0).all())):
            raise ValueError("nesterov: requires momentum > 0 and dampening = 0")
        defaults = dict(
            lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
            nesterov=nesterov, maximize=maximize,
        )  # fmt: skip
        super().__init__(params, defaults, **options)

    def make_transform(self, group: dict) -> Transform:
        mu = group["momentum"]
        trace = (
            [] if not isinstance(mu, Tensor) and mu == 0 else [momentum_trace(group["nesterov"])]
        )
        return chain(*head(group), *weight_decay(group), *trace)
