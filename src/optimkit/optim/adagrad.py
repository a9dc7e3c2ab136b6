"""Adagrad (Duchi et al., 2011) with torch.optim.Adagrad's conventions."""

from __future__ import annotations

import torch
from torch import Tensor

from optimkit.optim.base import GroupStep, PopulationOptimizer, prox_l1_group_
from optimkit.optim.fastpath import (
    FUSED_DTYPES,
    Scratch,
    per_tensor,
    stacked_steps,
    torch_fused_applies,
)
from optimkit.optim.members import bc
from optimkit.optim.spec import Hyperparameter, OptimizerSpec, eps, lr, maximize, weight_decay
from optimkit.optim.transforms import HP, State, Transform, chain, count, head
from optimkit.optim.transforms import weight_decay as decay


def scale_by_adagrad(initial: float | Tensor | None = None) -> Transform:
    r"""Adagrad's direction with torch's lr decay (the accumulator starts at its initial value).

    .. math::
        s_t = s_{t-1} + g_t^2, \qquad d_t = \frac{g_t}{(\sqrt{s_t} + \epsilon)(1 + (t-1)\eta)}

    where :math:`\eta` is ``lr_decay``, so that p <- p - lr * d is torch's step with clr.
    The accumulator starts at `initial` (default: the group's ``initial_accumulator_value``).
    """

    def init(p: Tensor, hp: HP) -> State:
        s = torch.zeros_like(p, memory_format=torch.preserve_format)
        start = hp["initial_accumulator_value"] if initial is None else initial
        if not isinstance(start, Tensor):
            return {"sum": s.add_(start)}
        return {"sum": s.add_(bc(start.to(s.device), p))}

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> Tensor:
        s = state["sum"].addcmul_(g, g)
        scale = 1 + (count(state) - 1) * hp["lr_decay"]
        std = s.sqrt().add_(bc(hp["eps"], p)).mul_(bc(scale, p))
        return std.reciprocal_().mul_(g)

    return Transform(init, update)


class Adagrad(PopulationOptimizer):
    """Adagrad (torch.optim.Adagrad's arguments and defaults); every number may be [K].

    As in torch, the accumulators start at the constructor's ``initial_accumulator_value``
    (a param group's own value is kept in the group but not used).

    Paths (torch's update up to rounding): one plain model with number hyperparameters,
    float32/64 contiguous tensors on CPU: torch's fused kernel (``torch._fused_adagrad_``, one
    pass); otherwise (float32/64) an in-place step with reused work buffers (5 passes); other
    dtypes and ``compile=True``: the transform chain `scale_by_adagrad`."""

    spec = OptimizerSpec(
        name="adagrad",
        summary="per-coordinate steps scaled by the root of the summed squared gradients",
        reference="torch.optim.Adagrad",
        hyperparameters=(
            lr(1e-2, tune=(1e-3, 1.0)),
            Hyperparameter(
                "lr_decay", 0.0, "lr / (1 + (t - 1) lr_decay)", low=0.0, test=(0.0, 0.1)
            ),
            weight_decay(),
            Hyperparameter(
                "initial_accumulator_value", 0.0, "initial sum of squares", low=0.0, test=(0.0, 0.5)
            ),
            eps(1e-10),
            maximize(),
        ),
        compare=("adagrad",),
        paper="Duchi, Hazan & Singer (2011)",
    )

    def __init__(
        self,
        params,
        lr=1e-2,
        lr_decay=0.0,
        weight_decay=0.0,
        initial_accumulator_value=0.0,
        eps=1e-10,
        foreach=None,
        *,
        maximize: bool = False,
        **options,
    ) -> None:
        defaults = dict(
            lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value, eps=eps, maximize=maximize,
        )  # fmt: skip
        self._initial = initial_accumulator_value
        super().__init__(params, defaults, foreach=foreach, **options)
        self._scratch = Scratch()

    def make_transform(self, group: dict) -> Transform:
        return chain(*head(group), *decay(group), scale_by_adagrad(self._initial))

    def update_group(self, w: GroupStep) -> None:
        group = w.group
        if self.compile or any(p.dtype not in FUSED_DTYPES for p in w.params):
            super().update_group(w)
            return
        wd, maximize = group["weight_decay"], bool(group["maximize"])
        decay_on = isinstance(wd, Tensor) or wd != 0
        numbers = (group["lr"], group["lr_decay"], wd, group["eps"])
        stored = [self.state[p] for p in w.stored]
        grads: list[Tensor] = [p.grad for p in w.stored]  # type: ignore[misc]
        sums = [s["sum"] for s in stored]
        if torch_fused_applies(self, numbers, [*w.stored, *grads, *sums]):
            steps = [s["step"] for s in stored]
            torch._foreach_add_(steps, 1.0)
            torch._fused_adagrad_(
                w.stored, grads, sums, steps, lr=group["lr"], lr_decay=group["lr_decay"],
                weight_decay=wd, eps=group["eps"], maximize=maximize,
            )  # fmt: skip
            prox_l1_group_(w)
            return
        steps = [s["step"] for s in w.states]
        torch._foreach_add_(steps, 1.0)
        hp = w.hp
        clr = -hp["lr"] / (1 + (stacked_steps(steps) - 1) * hp["lr_decay"])  # [P, K]
        neg_clr, eps_k = per_tensor(clr, w.params), per_tensor(hp["eps"], w.params)
        wd_k = per_tensor(hp["weight_decay"], w.params) if decay_on else None
        for i, (p, g, st) in enumerate(zip(w.params, w.grads, w.states, strict=True)):
            if maximize:
                g = torch.neg(g, out=self._scratch.like(p, 1))
            if wd_k is not None:
                g = torch.addcmul(g, p, wd_k[i], out=self._scratch.like(p, 1))
            s = st["sum"].addcmul_(g, g)
            std = torch.sqrt(s, out=self._scratch.like(p)).add_(eps_k[i])
            p.addcmul_(torch.div(g, std, out=std), neg_clr[i])
        prox_l1_group_(w)
