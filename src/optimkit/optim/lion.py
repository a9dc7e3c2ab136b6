"""Lion: evolved sign momentum (Chen et al., 2023, "Symbolic Discovery of Optimization
Algorithms", arXiv:2302.06675, Algorithm 2). torch.optim has no Lion."""

from __future__ import annotations

from torch import Tensor

from optimkit.optim.adam import ADAM_CHECKS
from optimkit.optim.base import PopulationOptimizer
from optimkit.optim.hyper import bc
from optimkit.optim.transforms import (
    HP,
    State,
    Transform,
    chain,
    decay_weights,
    ema_,
    negate,
    zeros,
)


def scale_by_lion() -> Transform:
    r"""Lion's direction :math:`d_t = \mathrm{sign}(\beta_1 m_{t-1} + (1-\beta_1) g_t)`, then
    :math:`m_t = \beta_2 m_{t-1} + (1-\beta_2) g_t`."""

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> Tensor:
        beta1, beta2 = hp["betas"]
        m = state["exp_avg"]
        d = m.lerp(g, bc(1 - beta1, p)).sign_()
        ema_(m, g, beta2)
        return d

    return Transform(zeros("exp_avg"), update)


class Lion(PopulationOptimizer):
    """Lion with decoupled weight decay p <- p (1 - lr wd) (the paper's defaults betas=(0.9,
    0.99); use a 3-10x smaller lr and a 3-10x larger weight decay than for AdamW)."""

    hyper_checks = {k: v for k, v in ADAM_CHECKS.items() if k != "eps"}
    has_betas = True

    def __init__(
        self,
        params,
        lr=1e-4,
        betas=(0.9, 0.99),
        weight_decay=0.0,
        *,
        maximize: bool = False,
        **extras,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults, **extras)

    def make_transform(self, group: dict) -> Transform:
        head = [negate()] if group["maximize"] else []
        return chain(*head, decay_weights(), scale_by_lion())
