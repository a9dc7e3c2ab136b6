"""NAdam: Adam with Nesterov momentum (Dozat, 2016), as in torch.optim.NAdam."""

from __future__ import annotations

import torch
from torch import Tensor

from optimkit.optim.adam import ADAM_CHECKS
from optimkit.optim.base import PopulationOptimizer
from optimkit.optim.hyper import bc, nonneg
from optimkit.optim.transforms import (
    HP,
    State,
    Transform,
    add_decayed_weights,
    chain,
    decay_weights,
    ema_,
    ema_sq_,
    negate,
    zeros,
)


def scale_by_nadam() -> Transform:
    r"""NAdam's direction with torch's momentum schedule (``momentum_decay`` :math:`\psi`).

    .. math::
        \mu_t = \beta_1 (1 - \tfrac12 0.96^{t\psi}), \quad \Pi_t = \prod_{s\le t}\mu_s, \quad
        d_t = \Big(\frac{1-\mu_t}{1-\Pi_t} g_t + \frac{\mu_{t+1}}{1-\Pi_t\mu_{t+1}} m_t\Big)
        \Big/ \Big(\sqrt{v_t / (1-\beta_2^t)} + \epsilon\Big)

    The running product :math:`\Pi_t` (``mu_product``) is a float64 [K] tensor.
    """

    def init(p: Tensor, hp: HP) -> State:
        state = zeros("exp_avg", "exp_avg_sq")(p, hp)
        state["mu_product"] = torch.ones(p.shape[:1], dtype=torch.float64, device=p.device)
        return state

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> Tensor:
        beta1, beta2 = hp["betas"]
        t, psi = state["step"], hp["momentum_decay"]
        mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * psi))
        mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * psi))
        prod = state["mu_product"].mul_(mu)
        m = ema_(state["exp_avg"], g, beta1)
        v = ema_sq_(state["exp_avg_sq"], g, beta2)
        denom = v.div(bc(1 - beta2**t, p)).sqrt_().add_(bc(hp["eps"], p))
        d = m.mul(bc(mu_next / (1 - prod * mu_next), p))
        d.addcmul_(g, bc((1 - mu) / (1 - prod), p))
        return d.div_(denom)

    return Transform(init, update)


class NAdam(PopulationOptimizer):
    """NAdam (torch.optim.NAdam's arguments and defaults); hyperparameters may be [K]."""

    hyper_checks = {**ADAM_CHECKS, "momentum_decay": (nonneg, "momentum_decay >= 0")}
    has_betas = True

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
        maximize: bool = False,
        **extras,
    ) -> None:
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize,
            momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay,
        )  # fmt: skip
        super().__init__(params, defaults, **extras)

    def make_transform(self, group: dict) -> Transform:
        head = [negate()] if group["maximize"] else []
        decay = decay_weights() if group["decoupled_weight_decay"] else add_decayed_weights()
        return chain(*head, decay, scale_by_nadam())
