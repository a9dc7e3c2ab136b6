"""Adadelta (Zeiler, 2012) with torch.optim.Adadelta's conventions."""

from __future__ import annotations

from torch import Tensor

from optimkit.optim.base import PopulationOptimizer
from optimkit.optim.members import bc
from optimkit.optim.spec import Hyperparameter, OptimizerSpec, eps, lr, maximize, weight_decay
from optimkit.optim.transforms import HP, State, Transform, chain, ema_sq_, head, zeros
from optimkit.optim.transforms import weight_decay as decay


def scale_by_adadelta() -> Transform:
    r"""Adadelta's direction, eps inside both square roots as in torch.

    .. math::
        v_t = \rho v_{t-1} + (1-\rho) g_t^2, \quad
        \Delta_t = \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}}\, g_t, \quad
        u_t = \rho u_{t-1} + (1-\rho) \Delta_t^2

    (``square_avg`` v, ``acc_delta`` u), so that p <- p - lr * Delta_t is torch's step.
    """

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> Tensor:
        rho, e = hp["rho"], bc(hp["eps"], p)
        std = ema_sq_(state["square_avg"], g, rho).add(e).sqrt_()
        delta = state["acc_delta"].add(e).sqrt_().div_(std).mul_(g)
        ema_sq_(state["acc_delta"], delta, rho)
        return delta

    return Transform(zeros("square_avg", "acc_delta"), update)


class Adadelta(PopulationOptimizer):
    r"""Adadelta (torch.optim.Adadelta's arguments and defaults: lr=1.0, rho=0.9, eps=1e-6,
    weight_decay=0); every number may be a [K] tensor.

    .. math::
        g \leftarrow g + \lambda p, \quad p \leftarrow p - lr\, \Delta_t

    with :math:`\Delta_t` from `scale_by_adadelta`. State: ``square_avg``, ``acc_delta`` and
    ``step``, in torch's layout for a plain model.
    """

    spec = OptimizerSpec(
        name="adadelta",
        summary="steps scaled by running RMS of past updates over running RMS of gradients",
        reference="torch.optim.Adadelta",
        hyperparameters=(
            lr(1.0, tune=(1e-2, 10.0)),
            Hyperparameter(
                "rho",
                0.9,
                "decay of the running averages",
                low=0.0,
                high=1.0,
                tune=(0.8, 0.99),
            ),
            eps(1e-6),
            weight_decay(),
            maximize(),
        ),
        paper="Zeiler (2012), ADADELTA: an adaptive learning rate method, arXiv:1212.5701",
    )

    def __init__(
        self,
        params,
        lr=1.0,
        rho=0.9,
        eps=1e-6,
        weight_decay=0,
        foreach=None,
        *,
        capturable: bool = False,
        maximize: bool = False,
        differentiable: bool = False,
        **options,
    ) -> None:
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults, foreach=foreach, capturable=capturable,
                         differentiable=differentiable, **options)  # fmt: skip

    def make_transform(self, group: dict) -> Transform:
        return chain(*head(group), *decay(group), scale_by_adadelta())
