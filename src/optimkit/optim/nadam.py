"""NAdam: Adam with Nesterov momentum (Dozat, 2016), as in torch.optim.NAdam."""

from __future__ import annotations

import torch
from torch import Tensor

from optimkit.optim.base import PopulationOptimizer
from optimkit.optim.members import bc
from optimkit.optim.spec import (
    Hyperparameter,
    OptimizerSpec,
    betas,
    eps,
    flag,
    lr,
    maximize,
    weight_decay,
)
from optimkit.optim.transforms import HP, State, Transform, chain, count, ema_, ema_sq_, head, zeros
from optimkit.optim.transforms import weight_decay as decay


def scale_by_nadam() -> Transform:
    r"""NAdam's step with torch's momentum schedule (``momentum_decay`` :math:`\psi`).

    .. math::
        \mu_t = \beta_1 (1 - \tfrac12 0.96^{t\psi}), \quad \Pi_t = \prod_{s\le t}\mu_s, \quad
        p \leftarrow p - lr \Big(\frac{1-\mu_t}{1-\Pi_t} g_t + \frac{\mu_{t+1}}{1-\Pi_t\mu_{t+1}}
        m_t\Big) \Big/ \Big(\sqrt{v_t / (1-\beta_2^t)} + \epsilon\Big)

    applied as torch does, in two steps (g's term, then m's). The running product
    :math:`\Pi_t` is kept in ``mu_product`` ([K] float64; 0-d for a plain model, as torch).
    """

    def init(p: Tensor, hp: HP) -> State:
        state = zeros("exp_avg", "exp_avg_sq")(p, hp)
        state["mu_product"] = torch.ones(p.shape[:1], dtype=torch.float64, device=p.device)
        return state

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> None:
        beta1, beta2, lr = hp["beta1"], hp["beta2"], hp["lr"]
        t, psi = count(state), hp["momentum_decay"]
        mu = beta1 * (1.0 - 0.5 * torch.pow(0.96, t * psi))
        mu_next = beta1 * (1.0 - 0.5 * torch.pow(0.96, (t + 1) * psi))
        prod = state["mu_product"].mul_(mu).to(torch.float64)
        ema_(state["exp_avg"], g, beta1)
        v = ema_sq_(state["exp_avg_sq"], g, beta2)
        denom = v.div(bc(1 - beta2**t, p)).sqrt_().add_(bc(hp["eps"], p))
        p.addcmul_(g.div(denom), bc(-lr * (1.0 - mu) / (1.0 - prod), p))
        p.addcmul_(state["exp_avg"].div(denom), bc(-lr * mu_next / (1.0 - prod * mu_next), p))

    return Transform(init, update)


class NAdam(PopulationOptimizer):
    """NAdam (torch.optim.NAdam's arguments and defaults); every number may be [K]."""

    spec = OptimizerSpec(
        name="nadam",
        summary="Adam with Nesterov momentum and a momentum warm-up schedule",
        reference="torch.optim.NAdam",
        hyperparameters=(
            lr(2e-3, tune=(1e-4, 1e-1)),
            *betas(),
            eps(),
            weight_decay(),
            Hyperparameter(
                "momentum_decay", 4e-3, "psi of the momentum schedule", low=0.0, test=(1e-3, 1e-2)
            ),
            flag("decoupled_weight_decay", "decay as AdamW does: p (1 - lr wd)"),
            maximize(),
        ),
        paper="Dozat (2016), Incorporating Nesterov momentum into Adam",
    )

    def __init__(
        self,
        params,
        lr=2e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        momentum_decay=4e-3,
        decoupled_weight_decay: bool = False,
        *,
        foreach=None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        **options,
    ) -> None:
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize,
            momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay,
        )  # fmt: skip
        super().__init__(params, defaults, foreach=foreach, capturable=capturable,
                         differentiable=differentiable, **options)  # fmt: skip

    def make_transform(self, group: dict) -> Transform:
        wd = decay(group, decoupled=group["decoupled_weight_decay"])
        return chain(*head(group), *wd, scale_by_nadam())
