"""LARS: layer-wise adaptive rate scaling (You et al., 2017), as in ``pytorch_optimizer.LARS``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from optimkit.optim.base import GroupStep, PopulationOptimizer, prox_l1_group_
from optimkit.optim.fastpath import FUSED_DTYPES, Scratch, per_tensor
from optimkit.optim.lamb import like, member_norm
from optimkit.optim.members import bc, member_view
from optimkit.optim.spec import Hyperparameter, OptimizerSpec, flag, lr, maximize
from optimkit.optim.spec import weight_decay as wd_spec
from optimkit.optim.transforms import HP, State, Transform, apply_updates, zeros

f64 = torch.float64


def scale_by_lars(group: dict[str, Any]) -> Transform:
    r"""LARS's direction (op order of ``pytorch_optimizer.LARS``); the base then moves
    p <- p - lr d.

    For a tensor with more than one dim (per member):

    .. math::
        r = \frac{\eta \|p\|}{\|g\| + wd \|p\|}\ (1 \text{ where } \|p\| = 0
            \text{ or the denominator is } 0),\quad g \leftarrow r (g + wd\, p)

    (vectors and scalars keep g: no weight decay, no scaling); then momentum
    :math:`b = \mu b + (1 - \tau) g` (b starts at 0), :math:`d = g + \mu b` (Nesterov) or b.
    A member with :math:`\mu = 0` keeps d = g (the reference keeps no buffer then).
    """
    mu = group["momentum"]
    momentum = isinstance(mu, Tensor) or mu > 0
    nesterov, maximize = group["nesterov"], group["maximize"]

    def init(p: Tensor, hp: HP) -> State:
        return zeros("momentum_buffer")(p, hp) if momentum else {}

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> Tensor:
        if maximize:
            g = -g
        if p.dim() > 2:
            pn, gn = member_norm(p), member_norm(g)
            wd = like(hp["weight_decay"], pn)
            denom = gn + wd * pn
            tc = like(hp["trust_coefficient"], pn)
            ratio = torch.where((pn > 0) & (denom > 0), tc * pn / denom, 1.0)
            g = g.addcmul(p, bc(hp["weight_decay"], p)) * bc(ratio, p)
        if not momentum:
            return g
        m = hp["momentum"]
        buf = state["momentum_buffer"].mul_(bc(m, p)).addcmul_(g, bc(1.0 - hp["dampening"], p))
        d = g.addcmul(buf, bc(m, p)) if nesterov else buf
        return torch.where(member_view(m > 0, p), d, g)

    return Transform(init, update)


class LARS(PopulationOptimizer):
    """LARS with ``pytorch_optimizer.LARS``'s arguments and defaults; every number may be
    [K] (trust ratios from each member's own norms).

    As the reference: tensors of one dim or none (biases, norms' scales) take plain SGD steps,
    without weight decay or scaling; the momentum buffer starts at 0 (torch.optim.SGD starts
    it at g).

    Reference: You, Gitman & Ginsburg (2017), Large Batch Training of Convolutional Networks
    (arXiv:1708.03888).
    """

    spec = OptimizerSpec(
        name="lars",
        summary="SGD with a per-tensor trust ratio eta ||p|| / ||g|| (large batches)",
        reference="pytorch_optimizer.LARS",
        package="pytorch-optimizer",
        hyperparameters=(
            lr(1e-3, tune=(1e-3, 10.0)),
            wd_spec(0.0, "weight decay: g + wd p, inside the trust ratio"),
            Hyperparameter(
                "momentum",
                0.9,
                "momentum factor",
                low=0.0,
                high=1.0,
                high_open=True,
                test=(0.5, 0.95),
            ),
            Hyperparameter(
                "dampening",
                0.0,
                "dampening of the momentum",
                low=0.0,
                high=1.0,
                high_open=True,
                test=(0.0, 0.5),
            ),
            Hyperparameter(
                "trust_coefficient",
                1e-3,
                "eta of the trust ratio",
                low=0.0,
                tune=(1e-4, 1e-1),
                log=True,
            ),
            flag("nesterov", "Nesterov momentum: d = g + momentum * b"),
            maximize(),
        ),
        paper="You, Gitman & Ginsburg (2017), arXiv:1708.03888",
    )

    def __init__(
        self,
        params,
        lr=1e-3,
        weight_decay=0.0,
        momentum=0.9,
        dampening=0.0,
        trust_coefficient=1e-3,
        nesterov: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        **options,
    ) -> None:
        defaults = dict(
            lr=lr, weight_decay=weight_decay, momentum=momentum, dampening=dampening,
            trust_coefficient=trust_coefficient, nesterov=nesterov, maximize=maximize,
        )  # fmt: skip
        super().__init__(params, defaults, foreach=foreach, **options)
        self._scratch = Scratch()

    def make_transform(self, group: dict) -> Transform:
        return scale_by_lars(group)

    def update_group(self, w: GroupStep) -> None:
        """Eager even with ``compile=True``: torch 2.13's inductor fails to generate the CPU
        kernel of the trust ratio followed by the momentum update (KeyError in its outer-loop
        fusion), so LARS does not compile.

        A number momentum (the usual case) with float32/64 parameters takes `_fast_update`,
        the same update in fewer passes over memory; a [K] momentum (members with momentum 0
        keep no buffer's direction) and other dtypes run the transform chain."""
        mu = w.group["momentum"]
        if not isinstance(mu, Tensor) and all(p.dtype in FUSED_DTYPES for p in w.params):
            self._fast_update(w, mu > 0)
        else:
            apply_updates(w.transform, w.params, w.grads, w.states, w.hp)
        prox_l1_group_(w)

    def _fast_update(self, w: GroupStep, momentum: bool) -> None:
        r"""`scale_by_lars` and p <- p - lr d, in place: with g' = s (g + wd p) (s = -1 under
        ``maximize``; weight decay on tensors of 2 dims or more only) and the trust ratio r (1
        for vectors), :math:`b \leftarrow \mu b + (1-\tau) r g'`, d = b, or
        :math:`\mu b + r g'` (Nesterov), or r g' without momentum. Weight decay and the sign
        go into a work buffer only where both apply; otherwise they are [K] coefficients."""
        hp, group = w.hp, w.group
        wd = group["weight_decay"]
        decay_on = isinstance(wd, Tensor) or wd != 0
        sign = -1.0 if group["maximize"] else 1.0
        nesterov = bool(group["nesterov"])
        torch._foreach_add_([st["step"] for st in w.states], 1.0)
        neg_lr = per_tensor(-hp["lr"], w.params)
        for i, (p, g, st) in enumerate(zip(w.params, w.grads, w.states, strict=True)):
            coef = torch.full_like(hp["lr"], sign)
            if p.dim() > 2:
                pn, gn = member_norm(p), member_norm(g)
                denom = gn + like(hp["weight_decay"], pn) * pn
                tc = like(hp["trust_coefficient"], pn)
                ratio = torch.where((pn > 0) & (denom > 0), tc * pn / denom, 1.0).to(f64)
                if decay_on:  # g' = s g + wd p into a work buffer
                    a = self._scratch.like(p)
                    g = torch.neg(g, out=a) if sign < 0 else g
                    g = torch.addcmul(g, p, bc(hp["weight_decay"], p), out=a)
                    coef = ratio
                else:
                    coef = coef * ratio
            if not momentum:
                p.addcmul_(g, bc(-hp["lr"] * coef, p))
                continue
            m = bc(hp["momentum"], p)
            buf = st["momentum_buffer"].mul_(m).addcmul_(g, bc(coef * (1 - hp["dampening"]), p))
            if nesterov:
                d = torch.mul(buf, m, out=self._scratch.like(p, 1)).addcmul_(g, bc(coef, p))
                p.addcmul_(d, neg_lr[i])
            else:
                p.addcmul_(buf, neg_lr[i])
