"""Rprop (Riedmiller & Braun, 1993) with torch.optim.Rprop's conventions."""

from __future__ import annotations

import torch
from torch import Tensor

from optimkit.optim.base import PopulationOptimizer
from optimkit.optim.members import member_view
from optimkit.optim.spec import Hyperparameter, OptimizerSpec, lr, maximize
from optimkit.optim.transforms import HP, State, Transform, chain, head


def _own(x: Tensor, like: Tensor) -> Tensor:
    """A [K] coefficient as [K, 1, ..., 1] in `like`'s own dtype (torch writes the etas into
    the sign tensor, and clamps, in the gradient's dtype)."""
    return member_view(x.to(like.dtype), like)


def resilient_step() -> Transform:
    r"""Rprop's step (the variant without weight backtracking, as torch), which moves the
    parameter itself: per element, with :math:`s = \mathrm{sign}(g_t\, g_{t-1})`,

    .. math::
        \Delta_t = \mathrm{clamp}\big(\Delta_{t-1} \cdot \{\eta_+ \text{ if } s > 0,\
        \eta_- \text{ if } s < 0,\ 1 \text{ if } s = 0\},\ \Delta_{\min}, \Delta_{\max}\big), \\
        g_t \leftarrow 0 \text{ where } s < 0, \quad
        p \leftarrow p - \mathrm{sign}(g_t)\, \Delta_t, \quad g_{t-1} \leftarrow g_t

    with :math:`\Delta_0 = lr` (``step_size``, per element) and ``prev`` :math:`g_{t-1}`,
    starting at 0. As in torch, the etas are written into the sign tensor in the gradient's
    dtype, one after the other (so an eta that rounds to 0 or 1 there acts as torch's does),
    and lr only sets the initial step sizes (a schedule changing it later has no effect).
    """

    def init(p: Tensor, hp: HP) -> State:
        step_size = torch.empty_like(p, memory_format=torch.preserve_format)
        step_size.copy_(member_view(hp["lr"], p).expand_as(p))
        return {"prev": torch.zeros_like(p, memory_format=torch.preserve_format),
                "step_size": step_size}  # fmt: skip

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> None:
        prev, step_size = state["prev"], state["step_size"]
        etaminus, etaplus = _own(hp["etaminus"], g), _own(hp["etaplus"], g)
        sign = g.mul(prev).sign_()
        sign = torch.where(sign > 0, etaplus, sign)
        sign = torch.where(sign < 0, etaminus, sign)
        sign = torch.where(sign == 0, 1.0, sign)
        step_size.mul_(sign).clamp_(
            _own(hp["step_size_min"], step_size), _own(hp["step_size_max"], step_size)
        )
        g = torch.where(sign == etaminus, 0.0, g)
        p.addcmul_(g.sign(), step_size, value=-1)
        prev.copy_(g)
        return None

    return Transform(init, update)


class Rprop(PopulationOptimizer):
    r"""Resilient backpropagation (torch.optim.Rprop's arguments and defaults: lr=1e-2,
    etas=(0.5, 1.2), step_sizes=(1e-6, 50)); every number may be a [K] tensor.

    Flat names: ``etaminus``, ``etaplus`` (``etas``), ``step_size_min``, ``step_size_max``
    (``step_sizes``). State: ``prev``, ``step_size`` (per element) and ``step``, in torch's
    layout for a plain model. Meant for full-batch gradients.
    """

    spec = OptimizerSpec(
        name="rprop",
        summary="per-element step sizes adapted by the sign agreement of successive gradients",
        reference="torch.optim.Rprop",
        hyperparameters=(
            lr(1e-2, tune=(1e-4, 1e-1)),
            Hyperparameter(
                "etaminus",
                0.5,
                "step size factor after a sign change",
                key=("etas", 0),
                low=0.0,
                high=1.0,
                low_open=True,
                high_open=True,
                test=(0.3, 0.7),
            ),
            Hyperparameter(
                "etaplus",
                1.2,
                "step size factor while the sign holds",
                key=("etas", 1),
                low=1.0,
                low_open=True,
                test=(1.05, 1.5),
            ),
            Hyperparameter(
                "step_size_min",
                1e-6,
                "smallest step size",
                key=("step_sizes", 0),
                test=(1e-5, 1e-3),
                log=True,
            ),
            Hyperparameter(
                "step_size_max",
                50,
                "largest step size",
                key=("step_sizes", 1),
                test=(2e-2, 1.0),
                log=True,
            ),
            maximize(),
        ),
        paper="Riedmiller & Braun (1993), A direct adaptive method for faster backpropagation "
        "learning: the RPROP algorithm",
    )

    def __init__(
        self,
        params,
        lr=1e-2,
        etas=(0.5, 1.2),
        step_sizes=(1e-6, 50),
        *,
        capturable: bool = False,
        foreach=None,
        maximize: bool = False,
        differentiable: bool = False,
        **options,
    ) -> None:
        defaults = dict(lr=lr, etas=etas, step_sizes=step_sizes, maximize=maximize)
        super().__init__(params, defaults, capturable=capturable, foreach=foreach,
                         differentiable=differentiable, **options)  # fmt: skip

    def make_transform(self, group: dict) -> Transform:
        return chain(*head(group), resilient_step())
