"""RMSprop (Hinton, 2012; centered: Graves, 2013) with torch.optim.RMSprop's conventions."""

from __future__ import annotations

from torch import Tensor

from optimkit.optim.base import PopulationOptimizer
from optimkit.optim.members import bc
from optimkit.optim.spec import Hyperparameter, OptimizerSpec, eps, flag, lr, maximize, weight_decay
from optimkit.optim.transforms import HP, State, Transform, chain, ema_, ema_sq_, head, zeros
from optimkit.optim.transforms import weight_decay as decay


def scale_by_rms(centered: bool, momentum: bool) -> Transform:
    r"""RMSprop's direction, eps outside the square root as in torch.

    .. math::
        v_t = \alpha v_{t-1} + (1-\alpha) g_t^2, \quad
        \sigma_t = \sqrt{v_t - \bar g_t^2} + \epsilon \ (\text{centered, } \bar g_t =
        \alpha \bar g_{t-1} + (1-\alpha) g_t) \ \text{or}\ \sqrt{v_t} + \epsilon, \quad
        d_t = b_t = \mu b_{t-1} + g_t / \sigma_t \ (\text{momentum}) \ \text{or}\ g_t/\sigma_t
    """
    names = ["square_avg"] + ["momentum_buffer"] * momentum + ["grad_avg"] * centered

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
    """RMSprop (torch.optim.RMSprop's arguments and defaults); every number may be [K]."""

    spec = OptimizerSpec(
        name="rmsprop",
        summary="steps scaled by a running root mean square of the gradients",
        reference="torch.optim.RMSprop",
        hyperparameters=(
            lr(1e-2, tune=(1e-5, 1e-1)),
            Hyperparameter(
                "alpha",
                0.99,
                "smoothing constant of the square average",
                low=0.0,
                tune=(0.9, 0.999),
            ),
            eps(),
            weight_decay(),
            Hyperparameter("momentum", 0.0, "momentum factor", low=0.0, test=(0.0, 0.9)),
            flag("centered", "normalize by the variance estimate instead of the second moment"),
            maximize(),
        ),
        compare=("rmsprop",),
        paper="Hinton (2012), Lecture 6e; Graves (2013)",
    )

    def __init__(
        self,
        params,
        lr=1e-2,
        alpha=0.99,
        eps=1e-8,
        weight_decay=0.0,
        momentum=0.0,
        centered: bool = False,
        capturable: bool = False,
        foreach=None,
        maximize: bool = False,
        differentiable: bool = False,
        **options,
    ) -> None:
        defaults = dict(
            lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
            centered=centered, maximize=maximize,
        )  # fmt: skip
        super().__init__(params, defaults, capturable=capturable, foreach=foreach,
                         differentiable=differentiable, **options)  # fmt: skip

    def make_transform(self, group: dict) -> Transform:
        mu = group["momentum"]
        momentum = isinstance(mu, Tensor) or mu != 0
        return chain(*head(group), *decay(group), scale_by_rms(group["centered"], momentum))
