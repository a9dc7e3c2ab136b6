"""LAMB: layer-wise adaptive moments (You et al., 2020), as in ``pytorch_optimizer.Lamb``.

Also home of the pieces the pytorch_optimizer ports share (AdaBelief, Adan): per-member
tensor norms, the global gradient scale (``pre_norm`` / ``max_grad_norm``), RAdam's
rectification, AdaNorm and pytorch_optimizer's weight-decay convention.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from optimkit.optim.base import GroupStep, PopulationOptimizer
from optimkit.optim.members import bc, member_view
from optimkit.optim.spec import Hyperparameter, OptimizerSpec, betas, eps, flag, lr, maximize
from optimkit.optim.spec import weight_decay as wd_spec
from optimkit.optim.transforms import HP, State, Transform, count, zeros

_HALF = (torch.float16, torch.bfloat16)


# ------------------------------------------------------------------ shared pieces
def member_norm(t: Tensor) -> Tensor:
    """The 2-norm of each member's tensor ([K], t's dtype): every dim but 0 reduced."""
    return torch.linalg.vector_norm(t.reshape(t.shape[0], -1), 2, dim=1)


def like(x: Tensor, t: Tensor) -> Tensor:
    """A [K] float64 coefficient in the dtype t's [K] reductions are computed in."""
    return x.to(torch.float32 if t.dtype in _HALF else t.dtype)


def wd_active(group: dict[str, Any]) -> bool:
    """Weight decay is left out when the user's value is the number 0 (as the reference)."""
    wd = group["weight_decay"]
    return isinstance(wd, Tensor) or wd != 0


def decay_(p: Tensor, hp: HP, fixed: bool) -> None:
    """pytorch_optimizer's decoupled decay: p <- p (1 - wd lr), or p (1 - wd) if ``fixed``."""
    wd = hp["weight_decay"]
    p.mul_(bc(1.0 - (wd if fixed else wd * hp["lr"]), p))


def global_grad_scale(grads: list[Tensor], max_grad_norm: Tensor, eps: Tensor) -> Tensor:
    r"""pytorch_optimizer's global gradient scale per member ([K] float64):
    :math:`\min(1, c / (\|g\| + \epsilon))`, 1 where c = 0, with the reference's precision:
    each tensor's norm is rounded to float32, squared and summed in float32."""
    norms = [member_norm(g.float() if g.dtype in _HALF else g) for g in grads]
    total = torch.stack(norms, dim=1).float().square_().sum(dim=1)  # [K, P] rows, as [P]
    denom = total.sqrt_().add_(eps.to(total))
    scale = denom.reciprocal().mul_(max_grad_norm.to(total)).clamp_(max=1.0)  # c / x as torch
    return torch.where(max_grad_norm == 0, 1.0, scale.to(torch.float64))


def rectify_step_size(
    lr: Tensor, beta2: Tensor, t: Tensor, threshold: int, degenerated_to_sgd: bool
) -> tuple[Tensor, Tensor]:
    r"""RAdam's rectified step size and :math:`\rho_t` per member (Liu et al., 2020):
    :math:`lr\, r_t` where :math:`\rho_t \ge` threshold, else lr (``degenerated_to_sgd``)
    or -lr (no step), as ``BaseOptimizer.get_rectify_step_size``."""
    n_sma_max = 2.0 / (1.0 - beta2) - 1.0
    beta2_t = torch.pow(beta2, t)
    n_sma = n_sma_max - 2 * t * beta2_t / (1.0 - beta2_t)
    rt = torch.sqrt(
        (1.0 - beta2_t) * (n_sma - 4) / (n_sma_max - 4) * (n_sma - 2) / n_sma * n_sma_max
        / (n_sma_max - 2)
    )  # fmt: skip
    rt = torch.where(n_sma >= threshold, rt, 1.0 if degenerated_to_sgd else -1.0)
    return lr * rt, n_sma


def adanorm_grad(g: Tensor, exp_grad_norm: Tensor, r: Tensor) -> Tensor:
    r"""AdaNorm (Dubey et al., 2023): the running norm :math:`e \leftarrow r e + (1-r)\|g\|`
    ([K, 1] buffer, in place); returns :math:`g\, e / \|g\|` for the members where
    :math:`\|g\| > 0` and :math:`e > \|g\|`, else g."""
    gn = member_norm(g)
    exp_grad_norm.mul_(bc(r, exp_grad_norm)).add_(gn.unsqueeze(1) * bc(1.0 - r, exp_grad_norm))
    e = exp_grad_norm.reshape(-1)
    scaled = g.mul(bc(e, g)).div_(bc(gn, g))
    return torch.where(member_view((gn > 0) & (e > gn), g), scaled, g)


def adanorm_state(p: Tensor) -> Tensor:
    """AdaNorm's buffer: one running norm per member ([K, 1]; torch layout: shape (1,))."""
    return torch.zeros(p.shape[0], 1, dtype=p.dtype, device=p.device)


def adanorm_r() -> Hyperparameter:
    return Hyperparameter(
        "adanorm_r", 0.95, "AdaNorm: decay of the running gradient norm", low=0.0, high=1.0,
        test=(0.8, 0.99),
    )  # fmt: skip


def threshold_spec() -> Hyperparameter:
    return Hyperparameter(
        "n_sma_threshold", 5, "rectify: least length of the SMA for an adaptive step", kind="int"
    )


class GlobalScaleMixin:
    """For references that scale every gradient by `global_grad_scale` computed over all
    groups from ``self.defaults`` (``max_grad_norm``, ``eps``) before the step: the scale is
    computed from the gradients as given (before optimkit's own clipping options) and handed
    to the transforms as ``hp["grad_scale"]``."""

    _grad_scale: Tensor | None = None

    def _global_scale_on(self) -> bool:
        raise NotImplementedError

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._grad_scale = self._scale() if self._global_scale_on() else None
        super().step()  # type: ignore[misc]
        return loss

    @torch.no_grad()
    def _scale(self) -> Tensor | None:
        opt: Any = self
        grads = [opt.axis.view(p.grad) for group in opt.param_groups
                 for p in group["params"] if p.grad is not None]  # fmt: skip
        if not grads:
            return None
        device = grads[0].device
        return global_grad_scale(
            grads,
            opt.axis.hyper(opt.defaults["max_grad_norm"], device),
            opt.axis.hyper(opt.defaults["eps"], device),
        )

    def update_group(self, w: GroupStep) -> None:
        if self._grad_scale is not None:
            w = replace(w, hp={**w.hp, "grad_scale": self._grad_scale})
        super().update_group(w)  # type: ignore[misc]


# ------------------------------------------------------------------ LAMB
def scale_by_lamb(group: dict[str, Any], pre_norm: bool) -> Transform:
    r"""LAMB's step, moving p itself (op order of ``pytorch_optimizer.Lamb``).

    .. math::
        m_t = \beta_1 m_{t-1} + \beta_3 g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,
        \quad u_t = \frac{m_t}{\sqrt{v_t} + \epsilon} \,(+\, wd\, p),\quad
        r_t = \frac{\min(\|p\|, 10)}{\|u_t\| + \epsilon},\quad
        p \leftarrow p - \frac{lr}{1 - \beta_1^t} r_t u_t

    with :math:`\beta_3 = 1 - \beta_1` (``grad_averaging``) or 1, :math:`r_t = 1` where a norm
    is 0 or with ``adam``; norms per member. ``rectify``: RAdam's step size, and the reference's
    quirk that :math:`u_t` then includes p (:math:`u_t = p - s\,m_t/(\sqrt{v_t}+\epsilon)`).
    Keeps ``weight_norm``, ``adam_norm`` and ``trust_ratio`` ([K]) as the reference does.
    """
    decouple, fixed, rectify = group["weight_decouple"], group["fixed_decay"], group["rectify"]
    adanorm, adam, maximize = group["adanorm"], group["adam"], group["maximize"]
    averaging, debias = group["grad_averaging"], group["adam_debias"]
    degenerated, threshold = group["degenerated_to_sgd"], group["n_sma_threshold"]
    decay = wd_active(group)
    # the reference's foreach path (used unless foreach=False, adanorm or rectify) divides as
    # m * (1 / d) and applies the trust ratio to u before the step size
    per_param = group["foreach"] is False or adanorm or rectify

    def init(p: Tensor, hp: HP) -> State:
        state = zeros("exp_avg", "exp_avg_sq")(p, hp)
        if adanorm:
            state["exp_grad_adanorm"] = adanorm_state(p)
        for name in ("weight_norm", "adam_norm", "trust_ratio"):
            state[name] = torch.zeros(p.shape[0], dtype=p.dtype, device=p.device)
        return state

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> None:
        t = count(state)
        beta1, beta2, eps_ = hp["beta1"], hp["beta2"], hp["eps"]
        if pre_norm:
            g = g * bc(hp["grad_scale"], g)
        if maximize:
            g = -g
        s_grad = adanorm_grad(g, state["exp_grad_adanorm"], hp["adanorm_r"]) if adanorm else g
        beta3 = 1.0 - beta1 if averaging else torch.ones_like(beta1)
        m = state["exp_avg"].mul_(bc(beta1, p)).addcmul_(s_grad, bc(beta3, p))
        v = state["exp_avg_sq"].mul_(bc(beta2, p))
        v.addcmul_(g, g * bc(1.0 - beta2, p))
        if decouple and decay:
            decay_(p, hp, fixed)
        if rectify:
            step_size, n_sma = rectify_step_size(hp["lr"], beta2, t, threshold, degenerated)
        else:
            step_size, n_sma = hp["lr"], t
        if not debias:
            step_size = step_size / (1.0 - torch.pow(beta1, t))
        denom = v.sqrt().add_(bc(eps_, p))
        if rectify:
            sma = member_view(n_sma >= threshold, p)
            ratio = m.div(denom)
            u = torch.where(sma, p.addcmul(ratio, bc(-step_size, p)),
                            p.addcmul(m, bc(-step_size, p)))  # fmt: skip
        elif per_param:
            u = m.div(denom)
        else:
            u = denom.reciprocal_().mul_(m)
        if not rectify and not decouple and decay:
            u.addcmul_(p, bc(hp["weight_decay"], p))
        wn = member_norm(p).clamp_(min=0, max=10.0)
        un = member_norm(u)
        trust = torch.where((wn != 0) & (un != 0), wn / (un + like(eps_, wn)), 1.0)
        state["weight_norm"].copy_(wn)
        state["adam_norm"].copy_(un)
        state["trust_ratio"].copy_(trust)
        r = torch.ones_like(trust) if adam else trust
        if rectify:
            alpha = bc(-step_size * r, p)
            new = torch.where(sma, p.addcmul(ratio, alpha), p.addcmul(m, alpha))
            p.copy_(torch.where(member_view(step_size > 0, p), new, p))
        elif per_param:
            p.addcmul_(u, bc(-step_size * r, p))
        else:
            if not adam:
                u.mul_(bc(r, u))
            p.addcmul_(u, bc(-step_size, p))

    return Transform(init, update)


class Lamb(GlobalScaleMixin, PopulationOptimizer):
    """LAMB with ``pytorch_optimizer.Lamb``'s arguments and defaults; every number may be [K].

    Per member: moments, trust ratio (norms over the member's tensor), rectification and
    step size. Replicates the reference's quirks: the step size is divided by
    :math:`1 - \\beta_1^t` unless ``adam_debias=True``; ``pre_norm`` scales the gradients by
    ``min(1, max_grad_norm / (||g|| + eps))`` over all groups with the constructor's
    ``max_grad_norm`` and ``eps`` (not the groups'), in float32; coupled weight decay
    (``weight_decouple=False``) is added to the update, not the gradient; ``pre_norm`` and
    ``degenerated_to_sgd``/``n_sma_threshold`` are the constructor's for every group.

    Reference: You et al. (2020), Large Batch Optimization for Deep Learning: Training BERT
    in 76 minutes, ICLR (arXiv:1904.00962).
    """

    spec = OptimizerSpec(
        name="lamb",
        summary="Adam with a per-tensor trust ratio ||p|| / ||update|| (large batches)",
        reference="pytorch_optimizer.Lamb",
        package="pytorch-optimizer",
        hyperparameters=(
            lr(1e-3, tune=(1e-4, 1e-1)),
            *betas(0.9, 0.999),
            wd_spec(0.0, "weight decay (decoupled by default: p (1 - lr wd))"),
            flag(
                "weight_decouple",
                "decoupled weight decay; False: wd p added to the update",
                default=True,
            ),
            flag("fixed_decay", "decoupled decay without the lr: p (1 - wd)"),
            flag("rectify", "RAdam's rectified step size"),
            flag("degenerated_to_sgd", "rectify: an SGD step before the SMA threshold"),
            threshold_spec(),
            flag("grad_averaging", "m takes (1 - beta1) g; False: g", default=True),
            Hyperparameter(
                "max_grad_norm",
                1.0,
                "pre_norm: the global norm gradients are scaled to (0: off)",
                low=0.0,
                test=(0.5, 5.0),
            ),
            flag("adam", "trust ratio 1 (plain Adam-style step)"),
            flag("pre_norm", "scale gradients by min(1, max_grad_norm / ||g||) (global)"),
            eps(1e-6),
            maximize(),
            flag("adanorm", "AdaNorm: rescale g by its running norm for the first moment"),
            adanorm_r(),
            flag("adam_debias", "do not divide the step size by 1 - beta1^t"),
        ),
        paper="You et al. (2020), arXiv:1904.00962",
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
        degenerated_to_sgd: bool = False,
        n_sma_threshold: int = 5,
        grad_averaging: bool = True,
        max_grad_norm=1.0,
        adam: bool = False,
        pre_norm: bool = False,
        eps=1e-6,
        foreach: bool | None = None,
        maximize: bool = False,
        *,
        adanorm: bool = False,
        adanorm_r=0.95,
        adam_debias: bool = False,
        **options,
    ) -> None:
        defaults = dict(
            lr=lr, betas=betas, weight_decay=weight_decay, weight_decouple=weight_decouple,
            fixed_decay=fixed_decay, rectify=rectify, degenerated_to_sgd=degenerated_to_sgd,
            n_sma_threshold=n_sma_threshold, grad_averaging=grad_averaging,
            max_grad_norm=max_grad_norm, adam=adam, pre_norm=pre_norm, eps=eps,
            maximize=maximize, adanorm=adanorm, adanorm_r=adanorm_r, adam_debias=adam_debias,
        )  # fmt: skip
        super().__init__(params, defaults, foreach=foreach, **options)

    def _global_scale_on(self) -> bool:
        return bool(self.defaults["pre_norm"])

    def make_transform(self, group: dict) -> Transform:
        return scale_by_lamb(group, pre_norm=self._global_scale_on())
