"""ADOPT: Adam with the previous second moment and a clipped normalized gradient
(Taniguchi et al., 2024), as in ``pytorch_optimizer.ADOPT``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from optimkit.optim.base import GroupStep, PopulationOptimizer, prox_l1_group_
from optimkit.optim.fastpath import FUSED_DTYPES, Scratch
from optimkit.optim.lamb import decay_, wd_active
from optimkit.optim.members import bc, member_view
from optimkit.optim.spec import OptimizerSpec, betas, eps, flag, lr, maximize
from optimkit.optim.spec import weight_decay as wd_spec
from optimkit.optim.transforms import HP, State, Transform, count, lerp_, zeros


def default_clip_lambda(step: Any) -> Any:
    """The reference's default clip :math:`t^{1/4}` (works on numbers and on [K] tensors)."""
    return step**0.25


def scale_by_adopt(group: dict[str, Any], clip_lambda: Callable[[Any], Any] | None) -> Transform:
    r"""ADOPT's step, moving p itself (op order of ``pytorch_optimizer.ADOPT``).

    On a member's first step only :math:`v_1 = g_1^2`; then

    .. math::
        \hat g_t = \mathrm{clip}\Big(\frac{g_t}{\max(\sqrt{v_{t-1}}, \epsilon)},
            \pm c(t)\Big),\quad m_t = \beta_1 m_{t-1} + (1-\beta_1)\hat g_t,\quad
        p \leftarrow p - lr\, m_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2

    with :math:`c(t)` = ``clip_lambda(t)`` (none when it is None). Weight decay (coupled or
    decoupled) is applied on the first step too, as the reference. ``cautious``: the step
    keeps only the coordinates where m and :math:`\hat g` agree in sign, rescaled by
    n / (count + 1); ``stable_adamw``: the step divided by
    :math:`\max(1, \sqrt{\mathrm{mean}(g^2 / \max(v_{t-1}, 10^{-16}))})`.
    """
    decouple, fixed, maximize = group["weight_decouple"], group["fixed_decay"], group["maximize"]
    cautious, stable = group["cautious"], group["stable_adamw"]
    decay = wd_active(group)

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> None:
        t = count(state)
        beta1, beta2 = hp["beta1"], hp["beta2"]
        first = member_view(t == 1, p)
        if maximize:
            g = -g
        if decay and decouple:
            decay_(p, hp, fixed)
        elif decay:
            g = g.addcmul(p, bc(hp["weight_decay"], p))
        v, m = state["exp_avg_sq"], state["exp_avg"]
        normed = g.div(v.sqrt().clamp_(min=bc(hp["eps"], p)))
        if clip_lambda is not None:
            c = clip_lambda(t)
            c = bc(c if isinstance(c, Tensor) else torch.full_like(t, float(c)), p)
            normed = normed.clamp(-c, c)
        m.copy_(torch.where(first, m, lerp_(m.clone(), normed, 1.0 - beta1)))
        step = m
        if cautious:
            mask = (m * normed > 0).to(g.dtype)
            n = mask[0].numel()
            count_ = mask.reshape(mask.shape[0], -1).sum(dim=1)
            step = m * mask.mul_(bc((count_ + 1).reciprocal() * n, mask))
        if stable:
            half = g.dtype in (torch.float16, torch.bfloat16)
            g32, v32 = (g.float(), v.float()) if half else (g, v)
            ratio = g32.pow(2).div_(v32.clip(min=1e-16))
            rms = ratio.reshape(ratio.shape[0], -1).mean(dim=1).sqrt_().clip_(min=1.0)
            step = step / bc(rms.to(torch.float64), step)
        p.copy_(torch.where(first, p, p.addcmul(step, bc(-hp["lr"], p))))
        later = v.mul(bc(beta2, p)).addcmul_(g, g * bc(1.0 - beta2, p))
        v.copy_(torch.where(first, v.addcmul(g, g), later))

    return Transform(zeros("exp_avg", "exp_avg_sq"), update)


class ADOPT(PopulationOptimizer):
    """ADOPT with ``pytorch_optimizer.ADOPT``'s arguments and defaults; every number may be
    [K] (first steps and clip values from each member's own step count).

    ``clip_lambda`` is called with the step count as a [K] float64 tensor (a plain model:
    shape [1]); the default :math:`t^{1/4}` and any callable written with tensor operations
    work for populations, a callable on Python floats (``math.pow``) for a plain model only.
    Being a function, it is the optimizer's, not a per-group setting (as the reference).

    Reference: Taniguchi et al. (2024), ADOPT: Modified Adam Can Converge with Any beta2
    with the Optimal Rate, NeurIPS (arXiv:2411.02853).
    """

    spec = OptimizerSpec(
        name="adopt",
        summary="Adam normalized by the previous second moment, clipped (any beta2 converges)",
        reference="pytorch_optimizer.ADOPT",
        package="pytorch-optimizer",
        hyperparameters=(
            lr(1e-3, tune=(1e-4, 1e-1)),
            *betas(0.9, 0.9999),
            wd_spec(0.0, "L2 penalty (coupled: g + wd p)"),
            flag("weight_decouple", "decoupled weight decay: p (1 - lr wd)"),
            flag("fixed_decay", "decoupled decay without the lr: p (1 - wd)"),
            eps(1e-6, "floor of the denominator sqrt(v)"),
            maximize(),
            flag("cautious", "cautious step: only where m and the normed g agree in sign"),
            flag("stable_adamw", "divide the step by StableAdamW's RMS of g / sqrt(v)"),
        ),
        paper="Taniguchi et al. (2024), arXiv:2411.02853",
    )

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.9999),
        clip_lambda: Callable[[Any], Any] | None = default_clip_lambda,
        weight_decay=0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        foreach: bool | None = None,
        eps=1e-6,
        maximize: bool = False,
        *,
        cautious: bool = False,
        stable_adamw: bool = False,
        **options,
    ) -> None:
        if clip_lambda is not None and not callable(clip_lambda):
            raise ValueError(f"clip_lambda: expected a function of the step or None, got "
                             f"{clip_lambda!r}")  # fmt: skip
        self.clip_lambda = clip_lambda
        defaults = dict(
            lr=lr, betas=betas, weight_decay=weight_decay, weight_decouple=weight_decouple,
            fixed_decay=fixed_decay, eps=eps, maximize=maximize, cautious=cautious,
            stable_adamw=stable_adamw,
        )  # fmt: skip
        super().__init__(params, defaults, foreach=foreach, **options)

    def make_transform(self, group: dict) -> Transform:
        return scale_by_adopt(group, self.clip_lambda)

    def update_group(self, w: GroupStep) -> None:
        """Eager float32/64 without ``cautious``/``stable_adamw``: `scale_by_adopt`'s update
        in place with reused work buffers, the first step's "v only" as [K] coefficients
        (weight 0 for m and p, 1 for v's decay and increment) instead of masked copies; the
        rest: the transform chain."""
        group = w.group
        if (self.compile or group["cautious"] or group["stable_adamw"]
                or any(p.dtype not in FUSED_DTYPES for p in w.params)):  # fmt: skip
            super().update_group(w)
            return
        scratch = self.__dict__.setdefault("_scratch", Scratch())
        decouple, fixed = group["weight_decouple"], group["fixed_decay"]
        maximize, decay = group["maximize"], wd_active(group)
        hp, clip = w.hp, self.clip_lambda
        beta1, beta2 = hp["beta1"], hp["beta2"]
        torch._foreach_add_([st["step"] for st in w.states], 1.0)
        for p, g, st in zip(w.params, w.grads, w.states, strict=True):
            t = count(st)
            first = t == 1
            later = (~first).to(torch.float64)
            if maximize:
                g = torch.neg(g, out=scratch.like(p, 1))
            if decay and decouple:
                decay_(p, hp, fixed)
            elif decay:
                g = torch.addcmul(g, p, bc(hp["weight_decay"], p), out=scratch.like(p, 1))
            v, m = st["exp_avg_sq"], st["exp_avg"]
            normed = torch.sqrt(v, out=scratch.like(p)).clamp_(min=bc(hp["eps"], p))
            normed = torch.div(g, normed, out=normed)
            if clip is not None:
                c = clip(t)
                c = bc(c if isinstance(c, Tensor) else torch.full_like(t, float(c)), p)
                normed.clamp_(-c, c)
            lerp_(m, normed, (1.0 - beta1) * later)
            p.addcmul_(m, bc(-hp["lr"] * later, p))
            v.mul_(bc(torch.where(first, 1.0, beta2), p))
            v.addcmul_(g, torch.mul(g, bc(torch.where(first, 1.0, 1.0 - beta2), p), out=normed))
        prox_l1_group_(w)
