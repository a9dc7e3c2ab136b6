"""Averaged SGD (Polyak & Juditsky, 1992) with torch.optim.ASGD's conventions."""

from __future__ import annotations

import torch
from torch import Tensor

from optimkit.optim.base import PopulationOptimizer
from optimkit.optim.members import bc, member_view
from optimkit.optim.spec import Hyperparameter, OptimizerSpec, lr, maximize, weight_decay
from optimkit.optim.transforms import HP, State, Transform, chain, count, head
from optimkit.optim.transforms import weight_decay as decay


def averaged_sgd(stacked: bool) -> Transform:
    r"""ASGD's step, which moves the parameter itself (the step size is eta, not lr).

    .. math::
        p \leftarrow p (1 - \lambda \eta_{t-1}) - \eta_{t-1} g_t, \quad
        \bar p_t = \bar p_{t-1} + \mu_{t-1} (p - \bar p_{t-1})
        \ (\bar p_t = p \text{ while } \mu_{t-1} = 1), \\
        \eta_t = \frac{lr}{(1 + \lambda\, lr\, t)^{\alpha}}, \quad
        \mu_t = \frac{1}{\max(1, t - t_0)}

    with :math:`\eta_0 = lr` and :math:`\mu_0 = 1`. State as torch: ``eta`` and ``mu``
    per member (0-d in torch's scalar dtype for a plain model, [K] float64 for a population),
    ``ax`` (the average :math:`\bar p`) like the parameter, and ``step``. As in torch,
    ``eta`` is recomputed from the group's current lr after each step, and used at the next,
    and the new eta and mu pass through the default dtype (torch's ``torch.as_tensor`` of a
    Python float) before they are stored, whatever the dtype of the stored tensors.
    """

    def init(p: Tensor, hp: HP) -> State:
        dtype = torch.float64
        if not stacked and torch.get_default_dtype() != torch.float64:
            dtype = torch.float32  # torch's _get_scalar_dtype()
        return {
            "eta": hp["lr"].to(dtype=dtype, device=p.device, copy=True),
            "mu": torch.ones(p.shape[:1], dtype=dtype, device=p.device),
            "ax": torch.zeros_like(p, memory_format=torch.preserve_format),
        }

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> None:
        lr, lambd, alpha, t0 = hp["lr"], hp["lambd"], hp["alpha"], hp["t0"]
        eta, mu, ax = state["eta"], state["mu"], state["ax"]
        eta64 = eta.to(torch.float64)
        p.mul_(bc(1 - lambd * eta64, p))
        p.addcmul_(g, bc(-eta64, p))
        averaged = ax.add(p.sub(ax).mul_(bc(mu.to(torch.float64), p)))
        ax.copy_(torch.where(member_view(mu == 1, p), p, averaged))
        t, default = count(state), torch.get_default_dtype()
        eta.copy_((lr / ((1 + lambd * lr * t) ** alpha)).to(default))
        mu.copy_((1 / torch.clamp_min(t - t0, 1.0)).to(default))
        return None

    return Transform(init, update)


class ASGD(PopulationOptimizer):
    r"""Averaged SGD (torch.optim.ASGD's arguments, positional order and defaults: lr=1e-2,
    lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0); every number may be a [K] tensor.

    The parameters follow SGD with a decaying step size eta (`averaged_sgd`); the running
    average of the iterates is kept in ``state[p]["ax"]`` (the iterate to evaluate), as in
    torch, which does not swap it in either. Coupled weight decay g + wd p comes first.
    """

    spec = OptimizerSpec(
        name="asgd",
        summary="SGD with a decaying step size and a running average of the iterates",
        reference="torch.optim.ASGD",
        hyperparameters=(
            lr(1e-2, tune=(1e-3, 1.0)),
            Hyperparameter("lambd", 1e-4, "decay term of eta and of p", test=(0.0, 0.1)),
            Hyperparameter("alpha", 0.75, "power of eta's decay", test=(0.5, 1.0)),
            Hyperparameter("t0", 1e6, "step at which averaging starts", test=(1.0, 20.0)),
            weight_decay(),
            maximize(),
        ),
        paper="Polyak & Juditsky (1992), Acceleration of stochastic approximation by averaging",
    )

    def __init__(
        self,
        params,
        lr=1e-2,
        lambd=1e-4,
        alpha=0.75,
        t0=1e6,
        weight_decay=0,
        foreach=None,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
        **options,
    ) -> None:
        defaults = dict(
            lr=lr, lambd=lambd, alpha=alpha, t0=t0, weight_decay=weight_decay, maximize=maximize
        )
        super().__init__(params, defaults, foreach=foreach, capturable=capturable,
                         differentiable=differentiable, **options)  # fmt: skip

    def make_transform(self, group: dict) -> Transform:
        assert self.axis is not None
        return chain(*head(group), *decay(group), averaged_sgd(self.axis.stacked))
