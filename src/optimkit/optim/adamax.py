"""Adamax, Adam's infinity-norm variant (Kingma & Ba, 2015, sec. 7), as in torch.optim.Adamax."""

from __future__ import annotations

from torch import Tensor

from optimkit.optim.base import PopulationOptimizer
from optimkit.optim.members import bc
from optimkit.optim.spec import OptimizerSpec, betas, eps, lr, maximize, weight_decay
from optimkit.optim.transforms import HP, State, Transform, chain, count, ema_, head, zeros
from optimkit.optim.transforms import weight_decay as decay


def scale_by_adamax() -> Transform:
    r"""Adamax's direction: :math:`u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon)`,
    :math:`d_t = m_t / ((1-\beta_1^t) u_t)` with Adam's first moment m_t."""

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> Tensor:
        m = ema_(state["exp_avg"], g, hp["beta1"])
        u = state["exp_inf"].mul_(bc(hp["beta2"], p))
        u.clamp_min_(g.abs().add_(bc(hp["eps"], p)))
        denom = u.mul(bc(1 - hp["beta1"] ** count(state), p))
        return denom.reciprocal_().mul_(m)

    return Transform(zeros("exp_avg", "exp_inf"), update)


class Adamax(PopulationOptimizer):
    """Adamax (torch.optim.Adamax's arguments and defaults); every number may be [K]."""

    spec = OptimizerSpec(
        name="adamax",
        summary="Adam with an infinity-norm second moment",
        reference="torch.optim.Adamax",
        hyperparameters=(lr(2e-3, tune=(1e-4, 1e-1)), *betas(), eps(), weight_decay(), maximize()),
        paper="Kingma & Ba (2015), sec. 7",
    )

    def __init__(
        self,
        params,
        lr=2e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        foreach=None,
        *,
        maximize: bool = False,
        **options,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults, foreach=foreach, **options)

    def make_transform(self, group: dict) -> Transform:
        return chain(*head(group), *decay(group), scale_by_adamax())
