"""RMSprop (Hinton, 2012; centered: Graves, 2013) with torch.optim.RMSprop's conventions."""

from __future__ import annotations

from torch import Tensor

from optimkit.optim.base import PopulationOptimizer
from optimkit.optim.hyper import bc, is_zero, nonneg
from optimkit.optim.transforms import (
    HP,
    State,
    Transform,
    add_decayed_weights,
    chain,
    ema_,
    ema_sq_,
    negate,
    zeros,
)


def scale_by_rms(centered: bool, momentum: bool) -> Transform:
    r"""RMSprop's direction, eps outside the square root as in torch.

    .. math::
        v_t = \alpha v_{t-1} + (1-\alpha) g_t^2, \quad
        \sigma_t = \sqrt{v_t - \bar g_t^2} + \epsilon \ (\text{centered, } \bar g_t =
        \alpha \bar g_{t-1} + (1-\alpha) g_t) \ \text{or}\ \sqrt{v_t} + \epsilon, \quad
        d_t = b_t = \mu b_{t-1} + g_t / \sigma_t \ (\text{momentum}) \ \text{or}\ g_t/\sigma_t
    """
    names = ["square_avg"] + ["grad_avg"] * centered + ["momentum_buffer"] * momentum

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> Tensor:
        alpha = hp["alpha"]
        v = ema_sq_(state["square_avg"], g, alpha)
        if centered:
            mean = ema_(state["grad_avg"], g, alpha)
            avg = v.addcmul(mean, mean, value=-1).sqrt_()
        else:
            avg = v.sqrt()
        avg.add_(bc(hp["eps"], p))
        if not momentum:
            return avg.reciprocal_().mul_(g)
        buf = state["momentum_buffer"].mul_(bc(hp["momentum"], p))
        return buf.addcdiv_(g, avg)

    return Transform(zeros(*names), update)


class RMSprop(PopulationOptimizer):
    """RMSprop (torch.optim.RMSprop's arguments and defaults); hyperparameters may be [K]."""

    hyper_checks = {
        "lr": (nonneg, "lr >= 0"),
        "alpha": (nonneg, "alpha >= 0"),
        "eps": (nonneg, "eps >= 0"),
        "weight_decay": (nonneg, "weight_decay >= 0"),
        "momentum": (nonneg, "momentum >= 0"),
    }

    def __init__(
        self,
        params,
        lr=1e-2,
        alpha=0.99,
        eps=1e-8,
        weight_decay=0.0,
        momentum=0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
        **extras,
    ) -> None:
        defaults = dict(
            lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
            centered=centered, maximize=maximize,
        )  # fmt: skip
        super().__init__(params, defaults, **extras)

    def make_transform(self, group: dict) -> Transform:
        head = [negate()] if group["maximize"] else []
        rms = scale_by_rms(group["centered"], not is_zero(group["momentum"]))
        return chain(*head, add_decayed_weights(), rms)
