"""RAdam: Adam with a rectified adaptive learning rate (Liu et al., 2020), as in
torch.optim.RAdam."""

from __future__ import annotations

import torch
from torch import Tensor

from optimkit.optim.base import PopulationOptimizer
from optimkit.optim.members import bc, member_view
from optimkit.optim.spec import OptimizerSpec, betas, eps, flag, lr, maximize, weight_decay
from optimkit.optim.transforms import HP, State, Transform, chain, count, ema_, ema_sq_, head, zeros
from optimkit.optim.transforms import weight_decay as decay


def scale_by_radam() -> Transform:
    r"""RAdam's step, which moves the parameter itself (torch's op order: lr multiplies the
    bias-corrected first moment before the adaptive term).

    .. math::
        \rho_\infty = \frac{2}{1-\beta_2} - 1, \quad
        \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1-\beta_2^t}, \quad
        \hat m_t = \frac{m_t}{1-\beta_1^t}, \\
        p \leftarrow p - lr\, \hat m_t \, \frac{\sqrt{1-\beta_2^t}}{\sqrt{v_t}+\epsilon}\, r_t
        \ \text{ if } \rho_t > 5, \text{ else }\ p - lr\, \hat m_t, \quad
        r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}

    with m, v Adam's moments (``exp_avg``, ``exp_avg_sq``). The test :math:`\rho_t > 5` is per
    member. As in torch, :math:`\sqrt{1-\beta_2^t} / (\sqrt{v_t}+\epsilon)` is computed as
    a reciprocal times the scalar (Python's ``scalar / tensor``).
    """

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> None:
        beta1, beta2, lr = hp["beta1"], hp["beta2"], hp["lr"]
        t = count(state)
        m = ema_(state["exp_avg"], g, beta1)
        v = ema_sq_(state["exp_avg_sq"], g, beta2)
        bias1, bias2 = 1 - beta1**t, 1 - beta2**t
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * t * (beta2**t) / bias2
        rect = (
            (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
        ) ** 0.5
        plain = m.div(bc(bias1, p)).mul_(bc(lr, p))
        adaptive = v.sqrt().add_(bc(hp["eps"], p)).reciprocal_().mul_(bc(bias2**0.5, p))
        rectified = plain.mul(adaptive).mul_(bc(rect, p))
        p.sub_(torch.where(member_view(rho_t > 5.0, p), rectified, plain))
        return None

    return Transform(zeros("exp_avg", "exp_avg_sq"), update)


class RAdam(PopulationOptimizer):
    r"""RAdam (torch.optim.RAdam's arguments and defaults: lr=1e-3, betas=(0.9, 0.999),
    eps=1e-8, weight_decay=0); every number may be a [K] tensor.

    ``decoupled_weight_decay=True`` decays as AdamW, p <- p (1 - lr wd), before the step;
    otherwise g <- g + wd p. While :math:`\rho_t \le 5` (the first steps) the update is SGD
    with momentum on the bias-corrected first moment (`scale_by_radam`).
    """

    spec = OptimizerSpec(
        name="radam",
        summary="Adam with the variance of its adaptive learning rate rectified",
        reference="torch.optim.RAdam",
        hyperparameters=(
            lr(1e-3, tune=(1e-4, 1e-1)),
            *betas(),
            eps(),
            weight_decay(),
            flag("decoupled_weight_decay", "decay as AdamW does: p (1 - lr wd)"),
            maximize(),
        ),
        paper="Liu et al. (2020), On the variance of the adaptive learning rate and beyond, ICLR",
    )

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0,
        decoupled_weight_decay: bool = False,
        *,
        foreach=None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        **options,
    ) -> None:
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize,
            decoupled_weight_decay=decoupled_weight_decay,
        )  # fmt: skip
        super().__init__(params, defaults, foreach=foreach, capturable=capturable,
                         differentiable=differentiable, **options)  # fmt: skip

    def make_transform(self, group: dict) -> Transform:
        wd = decay(group, decoupled=group["decoupled_weight_decay"])
        return chain(*head(group), *wd, scale_by_radam())
