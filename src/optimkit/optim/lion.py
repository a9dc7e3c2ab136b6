"""Lion: evolved sign momentum (Chen et al., 2023, "Symbolic Discovery of Optimization
Algorithms", arXiv:2302.06675, Algorithm 2). torch.optim has no Lion."""

from __future__ import annotations

from torch import Tensor

from optimkit.optim.base import PopulationOptimizer
from optimkit.optim.spec import OptimizerSpec, betas, lr, maximize, weight_decay
from optimkit.optim.transforms import HP, State, Transform, chain, ema_, head, lerp_, zeros
from optimkit.optim.transforms import weight_decay as decay


def scale_by_lion() -> Transform:
    r"""Lion's direction :math:`d_t = \mathrm{sign}(\beta_1 m_{t-1} + (1-\beta_1) g_t)`, then
    :math:`m_t = \beta_2 m_{t-1} + (1-\beta_2) g_t`."""

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> Tensor:
        m = state["exp_avg"]
        d = lerp_(m.clone(), g, 1 - hp["beta1"]).sign_()
        ema_(m, g, hp["beta2"])
        return d

    return Transform(zeros("exp_avg"), update)


class Lion(PopulationOptimizer):
    """Lion with decoupled weight decay p <- p (1 - lr wd) (the paper's defaults betas=(0.9,
    0.99); use a 3-10x smaller lr and a 3-10x larger weight decay than for AdamW)."""

    spec = OptimizerSpec(
        name="lion",
        summary="sign of an interpolated momentum, decoupled weight decay",
        reference="pytorch_optimizer.Lion",
        package="pytorch-optimizer",
        hyperparameters=(
            lr(1e-4, tune=(1e-5, 1e-2)),
            *betas(0.9, 0.99),
            weight_decay(0.0, "decoupled weight decay: p (1 - lr wd)"),
            maximize(),
        ),
        paper="Chen et al. (2023), arXiv:2302.06675",
    )

    def __init__(
        self,
        params,
        lr=1e-4,
        betas=(0.9, 0.99),
        weight_decay=0.0,
        *,
        maximize: bool = False,
        **options,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults, **options)

    def make_transform(self, group: dict) -> Transform:
        return chain(*head(group), *decay(group, decoupled=True), scale_by_lion())
