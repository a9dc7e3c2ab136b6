"""Adan: adaptive Nesterov momentum (Xie et al., 2024), as in ``pytorch_optimizer.Adan``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from optimkit.optim.base import GroupStep, PopulationOptimizer, prox_l1_group_
from optimkit.optim.fastpath import FUSED_DTYPES, Scratch
from optimkit.optim.lamb import (
    GlobalScaleMixin,
    adanorm_grad,
    adanorm_r,
    adanorm_state,
    wd_active,
)
from optimkit.optim.members import bc, member_view
from optimkit.optim.spec import Hyperparameter, OptimizerSpec, betas, eps, flag, lr, maximize
from optimkit.optim.spec import weight_decay as wd_spec
from optimkit.optim.transforms import HP, State, Transform, count, lerp_, zeros


def scale_by_adan(group: dict[str, Any], clip: bool) -> Transform:
    r"""Adan's step, moving p itself (op order of ``pytorch_optimizer.Adan``).

    With :math:`\Delta_t = g_t - g_{t-1}` (:math:`\Delta_1 = 0`):

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
        n_t = \beta_2 n_{t-1} + (1-\beta_2)\Delta_t,\quad
        v_t = \beta_3 v_{t-1} + (1-\beta_3)(g_t + \beta_2\Delta_t)^2,

    .. math::
        p \leftarrow p - \frac{lr}{1-\beta_1^t}\frac{m_t}{d_t}
            - \frac{lr\,\beta_2}{1-\beta_2^t}\frac{n_t}{d_t},\quad
        d_t = \sqrt{v_t}/\sqrt{1-\beta_3^t} + \epsilon

    then p / (1 + lr wd) (weight decay as a proximal step), or p (1 - lr wd) before the step
    (``weight_decouple``). ``previous_grad`` holds :math:`-g_{t-1}`; on a member's first step
    it is set to -g before maximize, as the reference does (so with ``maximize``
    :math:`\Delta_1 = -2 g_1`). ``use_gc``: gradients of tensors with more than one dim are
    centralized (their mean over every dim but the first subtracted).
    """
    decouple, gc, adanorm = group["weight_decouple"], group["use_gc"], group["adanorm"]
    maximize, decay = group["maximize"], wd_active(group)

    def init(p: Tensor, hp: HP) -> State:
        state = zeros("exp_avg", "exp_avg_sq", "exp_avg_diff", "previous_grad")(p, hp)
        if adanorm:
            state["exp_grad_adanorm"] = adanorm_state(p)
        return state

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> None:
        t = count(state)
        beta1, beta2, beta3, lr_ = hp["beta1"], hp["beta2"], hp["beta3"], hp["lr"]
        scale = hp["grad_scale"] if clip else None
        prev = state["previous_grad"]
        first = g if scale is None else g * bc(scale, g)
        prev.copy_(torch.where(member_view(t == 1, p), -first, prev))
        if maximize:
            g = -g
        if scale is not None:
            g = g * bc(scale, g)
        if gc and p.dim() > 2:
            g = g - g.mean(dim=tuple(range(2, p.dim())), keepdim=True)
        diff = prev.add_(g)
        s_grad = adanorm_grad(g, state["exp_grad_adanorm"], hp["adanorm_r"]) if adanorm else g
        m = lerp_(state["exp_avg"], s_grad, 1.0 - beta1)
        n = lerp_(state["exp_avg_diff"], diff, 1.0 - beta2)
        diff.mul_(bc(beta2, p)).add_(g)
        v = state["exp_avg_sq"].mul_(bc(beta3, p))
        v.addcmul_(diff, diff * bc(1.0 - beta3, p))
        denom = v.sqrt().div_(bc((1.0 - torch.pow(beta3, t)).sqrt(), p)).add_(bc(hp["eps"], p))
        if decay and decouple:
            p.mul_(bc(1.0 - lr_ * hp["weight_decay"], p))
        p.addcmul_(m.div(denom), bc(-(lr_ / (1.0 - torch.pow(beta1, t))), p))
        p.addcmul_(n.div(denom), bc(-(lr_ * beta2 / (1.0 - torch.pow(beta2, t))), p))
        if decay and not decouple:
            p.div_(bc(1.0 + lr_ * hp["weight_decay"], p))
        prev.copy_(g).neg_()

    return Transform(init, update)


class Adan(GlobalScaleMixin, PopulationOptimizer):
    """Adan with ``pytorch_optimizer.Adan``'s arguments and defaults; every number may be [K]
    (bias corrections from each member's own step count).

    ``max_grad_norm`` > 0 scales the gradients by ``min(1, max_grad_norm / (||g|| + eps))``
    over all groups, per member, with the constructor's ``max_grad_norm`` and ``eps`` (not
    the groups'), in float32, as the reference.

    Reference: Xie et al. (2024), Adan: Adaptive Nesterov Momentum Algorithm for Faster
    Optimizing Deep Models, IEEE TPAMI (arXiv:2208.06677).
    """

    spec = OptimizerSpec(
        name="adan",
        summary="adaptive Nesterov momentum: moments of g and of its differences",
        reference="pytorch_optimizer.Adan",
        package="pytorch-optimizer",
        hyperparameters=(
            lr(1e-3, tune=(1e-4, 1e-1)),
            *betas(0.98, 0.92),
            Hyperparameter(
                "beta3",
                0.99,
                "decay of the second moment of g + beta2 (g - g_prev)",
                key=("betas", 2),
                low=0.0,
                high=1.0,
                tune=(0.9, 0.999),
            ),
            wd_spec(0.0, "weight decay: p / (1 + lr wd) after the step (proximal)"),
            flag("weight_decouple", "decoupled weight decay: p (1 - lr wd) before the step"),
            Hyperparameter(
                "max_grad_norm",
                0.0,
                "global norm gradients are scaled to (0: off)",
                low=0.0,
            ),
            eps(1e-8),
            maximize(),
            flag("use_gc", "gradient centralization (tensors with more than one dim)"),
            flag("adanorm", "AdaNorm: rescale g by its running norm for the first moment"),
            adanorm_r(),
        ),
        paper="Xie et al. (2024), arXiv:2208.06677",
    )

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.98, 0.92, 0.99),
        weight_decay=0.0,
        weight_decouple: bool = False,
        max_grad_norm=0.0,
        foreach: bool | None = None,
        eps=1e-8,
        maximize: bool = False,
        *,
        use_gc: bool = False,
        adanorm: bool = False,
        adanorm_r=0.95,
        **options,
    ) -> None:
        defaults = dict(
            lr=lr, betas=betas, weight_decay=weight_decay, weight_decouple=weight_decouple,
            max_grad_norm=max_grad_norm, eps=eps, maximize=maximize, use_gc=use_gc,
            adanorm=adanorm, adanorm_r=adanorm_r,
        )  # fmt: skip
        super().__init__(params, defaults, foreach=foreach, **options)

    def _global_scale_on(self) -> bool:
        mgn = self.defaults["max_grad_norm"]
        return isinstance(mgn, Tensor) or mgn != 0

    def make_transform(self, group: dict) -> Transform:
        return scale_by_adan(group, clip=self._global_scale_on())

    def update_group(self, w: GroupStep) -> None:
        """Eager float32/64 without ``use_gc``/``adanorm``: `scale_by_adan`'s update in place
        with reused work buffers (the first step's previous gradient -g as a [K] coefficient:
        the buffer is 0 then); the rest: the transform chain."""
        group = w.group
        if (self.compile or group["use_gc"] or group["adanorm"]
                or any(p.dtype not in FUSED_DTYPES for p in w.params)):  # fmt: skip
            super().update_group(w)
            return
        scratch = self.__dict__.setdefault("_scratch", Scratch())
        decouple, maximize, decay = group["weight_decouple"], group["maximize"], wd_active(group)
        hp = w.hp
        scale = self._grad_scale if self._global_scale_on() else None
        beta1, beta2, beta3, lr_ = hp["beta1"], hp["beta2"], hp["beta3"], hp["lr"]
        torch._foreach_add_([st["step"] for st in w.states], 1.0)
        for p, g, st in zip(w.params, w.grads, w.states, strict=True):
            t = count(st)
            a, b, c = scratch.like(p), scratch.like(p, 1), scratch.like(p, 2)
            prev = st["previous_grad"]
            first = -(t == 1).to(torch.float64)  # prev is 0 on a member's first step
            prev.addcmul_(g, bc(first if scale is None else first * scale, g))
            if maximize:
                g = torch.neg(g, out=b)
            if scale is not None:
                g = torch.mul(g, bc(scale, g), out=b)
            diff = prev.add_(g)
            m = lerp_(st["exp_avg"], g, 1.0 - beta1)
            n = lerp_(st["exp_avg_diff"], diff, 1.0 - beta2)
            diff = torch.addcmul(g, diff, bc(beta2, p), out=diff)
            v = st["exp_avg_sq"].mul_(bc(beta3, p))
            v.addcmul_(diff, torch.mul(diff, bc(1.0 - beta3, p), out=a))
            denom = torch.sqrt(v, out=a).div_(bc((1.0 - torch.pow(beta3, t)).sqrt(), p))
            denom.add_(bc(hp["eps"], p))
            if decay and decouple:
                p.mul_(bc(1.0 - lr_ * hp["weight_decay"], p))
            p.addcmul_(torch.div(m, denom, out=c), bc(-(lr_ / (1.0 - torch.pow(beta1, t))), p))
            p.addcmul_(
                torch.div(n, denom, out=c), bc(-(lr_ * beta2 / (1.0 - torch.pow(beta2, t))), p)
            )
            if decay and not decouple:
                p.div_(bc(1.0 + lr_ * hp["weight_decay"], p))
            torch.neg(g, out=prev)
        prox_l1_group_(w)
