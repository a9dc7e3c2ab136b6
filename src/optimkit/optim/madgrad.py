"""MADGRAD: momentumized, adaptive, dual averaged gradient (Defazio & Jelassi, 2022), as in
``pytorch_optimizer.MADGRAD``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from optimkit.optim import clipping
from optimkit.optim.base import GroupStep, PopulationOptimizer
from optimkit.optim.lamb import wd_active
from optimkit.optim.members import bc, member_view
from optimkit.optim.spec import Hyperparameter, OptimizerSpec, eps, flag, lr, maximize
from optimkit.optim.spec import weight_decay as wd_spec
from optimkit.optim.transforms import HP, State, Transform, lerp_


def scale_by_madgrad(group: dict[str, Any]) -> Transform:
    r"""MADGRAD's step, moving p itself (op order of ``pytorch_optimizer.MADGRAD``).

    With :math:`\lambda_k = (lr + \epsilon)\sqrt{k + 1}` (``hp["madgrad_lambda"]``, k the
    member's step count before this step):

    .. math::
        S_k = S_{k-1} + \lambda_k g_k^2,\quad s_k = s_{k-1} + \lambda_k g_k,\quad
        z = x_0 - \frac{s_k}{S_k^{1/3} + \epsilon},\quad
        p \leftarrow (1 - c)\, p + c\, z,\ c = 1 - \text{momentum}

    :math:`x_0` is the initial p (state ``x0``); with momentum 0, :math:`x_0 = p +
    s_{k-1}/(S_{k-1}^{1/3} + \epsilon)` and p <- z (the reference keeps no ``x0`` then).
    Weight decay: g + wd p, or p - (lr + eps) wd p_old after the step (``weight_decouple``).
    """
    mu, eps_ = group["momentum"], group["eps"]
    store_x0 = isinstance(mu, Tensor) or mu > 0
    no_x0 = isinstance(mu, Tensor) or mu == 0  # some member uses x0 = p + s / rms
    eps_zero = isinstance(eps_, Tensor) or eps_ == 0
    decouple, maximize, decay = group["weight_decouple"], group["maximize"], wd_active(group)

    def init(p: Tensor, hp: HP) -> State:
        state = {n: torch.zeros_like(p, memory_format=torch.preserve_format)
                 for n in ("grad_sum_sq", "s")}  # fmt: skip
        if store_x0:
            state["x0"] = p.clone(memory_format=torch.preserve_format)
        return state

    def rms(grad_sum_sq: Tensor, hp: HP) -> Tensor:
        r = grad_sum_sq.pow(1.0 / 3.0).add_(bc(hp["eps"], grad_sum_sq))
        if eps_zero:  # 0 / 0 coordinates stay inactive
            off = member_view(hp["eps"] == 0, r) & (r == 0)
            r.masked_fill_(off, float("inf"))
        return r

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> None:
        lam, m = hp["madgrad_lambda"], hp["momentum"]
        gss, s = state["grad_sum_sq"], state["s"]
        if maximize:
            g = -g
        if decay and not decouple:
            g = g.addcmul(p, bc(hp["weight_decay"], p))
        x0 = state["x0"] if store_x0 else None
        if no_x0:
            x0_now = p.addcdiv(s, rms(gss, hp))
            x0 = x0_now if x0 is None else torch.where(member_view(m == 0, p), x0_now, x0)
        assert x0 is not None
        gss.addcmul_(g, g * bc(lam, g))
        r = rms(gss, hp)
        s.addcmul_(g, bc(lam, g))
        old = p.clone() if decay and decouple else None
        z = x0.addcdiv(s, r, value=-1)
        if store_x0:
            moved = lerp_(p.clone(), z, 1.0 - m)
            z = torch.where(member_view(m == 0, p), z, moved) if no_x0 else moved
        p.copy_(z)
        if old is not None:
            p.addcmul_(old, bc(-hp["madgrad_lr"] * hp["weight_decay"], p))

    return Transform(init, update)


class MADGRAD(PopulationOptimizer):
    """MADGRAD with ``pytorch_optimizer.MADGRAD``'s arguments and defaults; every number may
    be [K].

    The step counter k is the optimizer's, as the reference's ``state["k"]`` (incremented by
    every ``step()``), one per member ([K] int64; a plain model: the reference's shape [1]);
    skipped members (``skip_nonfinite``) do not count the step, and `reset_members` /
    `copy_member` reset and copy it. As the reference, the step uses lr + eps (0 for lr = 0).

    Reference: Defazio & Jelassi (2022), Adaptivity without Compromise: A Momentumized,
    Adaptive, Dual Averaged Gradient Method for Stochastic Optimization, JMLR
    (arXiv:2101.11075).
    """

    spec = OptimizerSpec(
        name="madgrad",
        summary="dual averaging with a cube-root adaptive denominator and momentum",
        reference="pytorch_optimizer.MADGRAD",
        package="pytorch-optimizer",
        hyperparameters=(
            lr(1e-3, tune=(1e-4, 1e-1)),
            Hyperparameter(
                "momentum",
                0.9,
                "interpolation toward the dual-averaging point",
                low=0.0,
                high=1.0,
                high_open=True,
                test=(0.5, 0.95),
            ),
            wd_spec(0.0, "L2 penalty (coupled: g + wd p)"),
            flag("weight_decouple", "decoupled weight decay: p - lr wd p after the step"),
            eps(1e-6),
            maximize(),
        ),
        paper="Defazio & Jelassi (2022), arXiv:2101.11075",
    )

    def __init__(
        self,
        params,
        lr=1e-3,
        momentum=0.9,
        weight_decay=0.0,
        weight_decouple: bool = False,
        eps=1e-6,
        maximize: bool = False,
        foreach: bool | None = None,
        **options,
    ) -> None:
        defaults = dict(
            lr=lr, momentum=momentum, weight_decay=weight_decay,
            weight_decouple=weight_decouple, eps=eps, maximize=maximize,
        )  # fmt: skip
        super().__init__(params, defaults, foreach=foreach, **options)

    def make_transform(self, group: dict) -> Transform:
        return scale_by_madgrad(group)

    # ------------------------------------------------------------------ the counter k
    def _counter(self) -> Tensor:
        k = self.state.get("k")  # type: ignore[call-overload]
        if k is None:
            assert self.axis is not None
            device = next((p.device for g in self.param_groups for p in g["params"]), None)
            k = torch.zeros(self.axis.k, dtype=torch.long, device=device)
            self.state["k"] = k  # type: ignore[index]
        return k

    def update_group(self, w: GroupStep) -> None:
        hp = w.hp
        lr_ = torch.where(hp["lr"] != 0, hp["lr"] + hp["eps"], 0.0)
        k = self._counter().to(device=lr_.device, dtype=torch.float64)
        lam = lr_ * torch.pow(k + 1, 0.5)
        super().update_group(replace(w, hp={**hp, "madgrad_lr": lr_, "madgrad_lambda": lam}))

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        super().step()
        k = self._counter()
        if self.skip_nonfinite:
            assert self.axis is not None
            grads = [self.axis.view(p.grad) for g in self.param_groups for p in g["params"]
                     if p.grad is not None]  # fmt: skip
            if grads:
                k.add_(clipping.finite_members(grads).to(k))
                return loss
        k.add_(1)
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """The counter ``k`` is not a parameter's state: set aside while the base loads."""
        saved = dict(state_dict)
        state = dict(saved["state"])
        k = state.pop("k", None)
        saved["state"] = state
        super().load_state_dict(saved)
        if k is not None:
            self.state["k"] = torch.as_tensor(k).clone()  # type: ignore[index]

    def reset_members(self, mask: Tensor) -> None:
        super().reset_members(mask)
        k = self._counter()
        k.copy_(torch.where(mask.to(k.device), 0, k))

    def copy_member(self, src: int, dst: int) -> None:
        super().copy_member(src, dst)
        k = self._counter()
        k[dst] = k[src]
