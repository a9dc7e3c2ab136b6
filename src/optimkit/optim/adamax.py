"""Adamax, Adam's infinity-norm variant (Kingma & Ba, 2015, sec. 7), as in torch.optim.Adamax."""

from __future__ import annotations

from torch import Tensor

from optimkit.optim.adam import ADAM_CHECKS
from optimkit.optim.base import PopulationOptimizer
from optimkit.optim.hyper import bc
from optimkit.optim.transforms import (
    HP,
    State,
    Transform,
    add_decayed_weights,
    chain,
    ema_,
    negate,
    zeros,
)


def scale_by_adamax() -> Transform:
    r"""Adamax's direction: :math:`u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon)`,
    :math:`d_t = m_t / ((1-\beta_1^t) u_t)` with Adam's first moment m_t."""

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> Tensor:
        beta1, beta2 = hp["betas"]
        m = ema_(state["exp_avg"], g, beta1)
        u = state["exp_inf"].mul_(bc(beta2, p))
        u.clamp_min_(g.abs().add_(bc(hp["eps"], p)))
        denom = u.mul(bc(1 - beta1 ** state["step"], p))
        return denom.reciprocal_().mul_(m)

    return Transform(zeros("exp_avg", "exp_inf"), update)


class Adamax(PopulationOptimizer):
    """Adamax (torch.optim.Adamax's arguments and defaults); hyperparameters may be [K]."""

    hyper_checks = ADAM_CHECKS
    has_betas = True

    def __init__(
        self,
        params,
        lr=2e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        *,
        maximize: bool = False,
        **extras,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults, **extras)

    def make_transform(self, group: dict) -> Transform:
        head = [negate()] if group["maximize"] else []
        return chain(*head, add_decayed_weights(), scale_by_adamax())
