"""Adam, AdamW (Kingma & Ba, 2015; Loshchilov & Hutter, 2019), with torch.optim's conventions."""

from __future__ import annotations

import torch
from torch import Tensor

from optimkit.optim.base import PopulationOptimizer
from optimkit.optim.hyper import bc, nonneg
from optimkit.optim.transforms import (
    HP,
    State,
    Transform,
    add_decayed_weights,
    chain,
    decay_weights,
    ema_,
    ema_sq_,
    negate,
    zeros,
)


def scale_by_adam(amsgrad: bool) -> Transform:
    r"""Adam's direction, eps outside the square root as in torch.optim.Adam.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,
        \quad d_t = \frac{m_t / (1-\beta_1^t)}{\sqrt{\hat v_t} / \sqrt{1-\beta_2^t} + \epsilon}

    with :math:`\hat v_t = \max_{s \le t} v_s` under AMSGrad (Reddi et al., 2018), else v_t.
    """
    names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if amsgrad else ("exp_avg", "exp_avg_sq")

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> Tensor:
        beta1, beta2 = hp["betas"]
        t = state["step"]
        m = ema_(state["exp_avg"], g, beta1)
        v = ema_sq_(state["exp_avg_sq"], g, beta2)
        if amsgrad:
            v = state["max_exp_avg_sq"].clamp_min_(v)
        bias1, bias2_sqrt = 1 - beta1**t, (1 - beta2**t).sqrt()
        denom = v.sqrt().div_(bc(bias2_sqrt, p)).add_(bc(hp["eps"], p)).mul_(bc(bias1, p))
        return denom.reciprocal_().mul_(m)

    return Transform(zeros(*names), update)


ADAM_CHECKS = {
    "lr": (nonneg, "lr >= 0"),
    "eps": (nonneg, "eps >= 0"),
    "weight_decay": (nonneg, "weight_decay >= 0"),
}


class Adam(PopulationOptimizer):
    """Adam (torch.optim.Adam's arguments and defaults); any hyperparameter may be a [K] tensor.

    ``decoupled_weight_decay=True`` makes it AdamW, as in torch.
    """

    hyper_checks = ADAM_CHECKS
    has_betas = True

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
        **extras,
    ) -> None:
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
            maximize=maximize, decoupled_weight_decay=decoupled_weight_decay,
        )  # fmt: skip
        super().__init__(params, defaults, **extras)

    def make_transform(self, group: dict) -> Transform:
        head = [negate()] if group["maximize"] else []
        decay = decay_weights() if group["decoupled_weight_decay"] else add_decayed_weights()
        return chain(*head, decay, scale_by_adam(group["amsgrad"]))


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay p <- p (1 - lr wd); torch.optim.AdamW's defaults."""

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        **extras,
    ) -> None:
        super().__init__(
            params, lr, betas, eps, weight_decay, amsgrad,
            maximize=maximize, decoupled_weight_decay=True, **extras,
        )  # fmt: skip
