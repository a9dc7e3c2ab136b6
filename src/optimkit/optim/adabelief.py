"""AdaBelief: Adam with the belief in the gradient (Zhuang et al., 2020), as in
``pytorch_optimizer.AdaBelief``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from optimkit.optim.base import PopulationOptimizer
from optimkit.optim.lamb import (
    adanorm_grad,
    adanorm_r,
    adanorm_state,
    decay_,
    rectify_step_size,
    threshold_spec,
    wd_active,
)
from optimkit.optim.members import bc, member_view
from optimkit.optim.spec import OptimizerSpec, betas, eps, flag, lr, maximize
from optimkit.optim.spec import weight_decay as wd_spec
from optimkit.optim.transforms import HP, State, Transform, count, lerp_, zeros


def scale_by_adabelief(group: dict[str, Any]) -> Transform:
    r"""AdaBelief's step, moving p itself (op order of ``pytorch_optimizer.AdaBelief``).

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
        s_t = \beta_2 s_{t-1} + (1-\beta_2)(g_t - m_t)^2 + \epsilon,\quad
        p \leftarrow p - \frac{lr}{1-\beta_1^t}\,
            \frac{m_t}{\sqrt{s_t}/\sqrt{1-\beta_2^t} + \epsilon}

    ``ams_bound``: :math:`\hat s_t = \max(\hat s_{t-1}, s_t)` in the denominator.
    ``rectify``: RAdam's step size, denominator :math:`\sqrt{\hat s_t} + \epsilon` (no bias
    correction), and below the SMA threshold an SGD step with m (``degenerated_to_sgd``) or
    none.
    """
    decouple, fixed, rectify = group["weight_decouple"], group["fixed_decay"], group["rectify"]
    ams, adanorm, maximize = group["ams_bound"], group["adanorm"], group["maximize"]
    debias, degenerated = group["adam_debias"], group["degenerated_to_sgd"]
    threshold = group["n_sma_threshold"]
    decay = wd_active(group)
    names = ("exp_avg", "exp_avg_var", *(("max_exp_avg_var",) if ams else ()))

    def init(p: Tensor, hp: HP) -> State:
        state = zeros(*names)(p, hp)
        if adanorm:
            state["exp_grad_adanorm"] = adanorm_state(p)
        return state

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> None:
        t = count(state)
        beta1, beta2, eps_ = hp["beta1"], hp["beta2"], hp["eps"]
        if maximize:
            g = -g
        if decay and decouple:
            decay_(p, hp, fixed)
        elif decay:
            g = g.addcmul(p, bc(hp["weight_decay"], p))
        s_grad = adanorm_grad(g, state["exp_grad_adanorm"], hp["adanorm_r"]) if adanorm else g
        m = lerp_(state["exp_avg"], s_grad, 1.0 - beta1)
        res = g - m
        var = state["exp_avg_var"].mul_(bc(beta2, p))
        var.addcmul_(res, res * bc(1.0 - beta2, p)).add_(bc(eps_, p))
        if ams:
            var = torch.maximum(state["max_exp_avg_var"], var, out=state["max_exp_avg_var"])
        denom = var.sqrt()
        if rectify:
            step_size, n_sma = rectify_step_size(hp["lr"], beta2, t, threshold, degenerated)
        else:
            step_size, n_sma = hp["lr"], t
        if not debias:
            step_size = step_size / (1.0 - torch.pow(beta1, t))
        if not rectify:
            denom.div_(bc((1.0 - torch.pow(beta2, t)).sqrt(), p)).add_(bc(eps_, p))
            p.addcmul_(m.div(denom), bc(-step_size, p))
            return
        denom.add_(bc(eps_, p))
        adaptive = p.addcmul(m.div(denom), bc(-step_size, p))
        sgd = torch.where(member_view(step_size > 0, p), p.addcmul(m, bc(-step_size, p)), p)
        p.copy_(torch.where(member_view(n_sma >= threshold, p), adaptive, sgd))

    return Transform(init, update)


class AdaBelief(PopulationOptimizer):
    """AdaBelief with ``pytorch_optimizer.AdaBelief``'s arguments and defaults; every number
    may be [K] (step sizes, rectification and bias corrections per member).

    As the reference: eps is added to the belief s every step and again to the denominator;
    the step size is divided by :math:`1-\\beta_1^t` unless ``adam_debias=True``;
    ``degenerated_to_sgd`` and ``n_sma_threshold`` are the constructor's for every group.

    Reference: Zhuang et al. (2020), AdaBelief Optimizer: Adapting Stepsizes by the Belief in
    Observed Gradients, NeurIPS (arXiv:2010.07468).
    """

    spec = OptimizerSpec(
        name="adabelief",
        summary="Adam whose second moment is the variance of g around its EMA (the belief)",
        reference="pytorch_optimizer.AdaBelief",
        package="pytorch-optimizer",
        hyperparameters=(
            lr(1e-3, tune=(1e-4, 1e-1)),
            *betas(0.9, 0.999),
            wd_spec(0.0, "weight decay (decoupled by default: p (1 - lr wd))"),
            flag("weight_decouple", "decoupled weight decay; False: g + wd p", default=True),
            flag("fixed_decay", "decoupled decay without the lr: p (1 - wd)"),
            flag("rectify", "RAdam's rectified step size"),
            threshold_spec(),
            flag(
                "degenerated_to_sgd", "rectify: an SGD step before the SMA threshold", default=True
            ),
            flag("ams_bound", "the running maximum of s in the denominator (AMSGrad)"),
            eps(1e-16, "added to the belief s and to the denominator"),
            maximize(),
            flag("adanorm", "AdaNorm: rescale g by its running norm for the first moment"),
            adanorm_r(),
            flag("adam_debias", "do not divide the step size by 1 - beta1^t"),
        ),
        paper="Zhuang et al. (2020), arXiv:2010.07468",
    )

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        weight_decay=0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        rectify: bool = False,
        n_sma_threshold: int = 5,
        degenerated_to_sgd: bool = True,
        ams_bound: bool = False,
        foreach: bool | None = None,
        eps=1e-16,
        maximize: bool = False,
        *,
        adanorm: bool = False,
        adanorm_r=0.95,
        adam_debias: bool = False,
        **options,
    ) -> None:
        defaults = dict(
            lr=lr, betas=betas, weight_decay=weight_decay, weight_decouple=weight_decouple,
            fixed_decay=fixed_decay, rectify=rectify, n_sma_threshold=n_sma_threshold,
            degenerated_to_sgd=degenerated_to_sgd, ams_bound=ams_bound, eps=eps,
            maximize=maximize, adanorm=adanorm, adanorm_r=adanorm_r, adam_debias=adam_debias,
        )  # fmt: skip
        super().__init__(params, defaults, foreach=foreach, **options)

    def make_transform(self, group: dict) -> Transform:
        return scale_by_adabelief(group)
