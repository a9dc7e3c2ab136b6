"""Adafactor (Shazeer & Stern, 2018) with torch.optim.Adafactor's conventions."""

from __future__ import annotations

import torch
from torch import Tensor

from optimkit.optim.base import PopulationOptimizer
from optimkit.optim.members import bc
from optimkit.optim.spec import Hyperparameter, OptimizerSpec, lr, maximize, weight_decay
from optimkit.optim.transforms import HP, State, Transform, chain, count, head, lerp_

f64 = torch.float64


def _factored(p: Tensor) -> bool:
    """A member's own parameter (the view [K, ...] less dim 0) has more than one dim."""
    return p.dim() - 1 > 1


def _member_norm(t: Tensor) -> Tensor:
    """Each member's 2-norm over all its entries, as float64 [K]."""
    return torch.linalg.vector_norm(t.reshape(t.shape[0], -1), dim=1).to(f64)


def scale_by_adafactor(eps1_default: float, decay: bool) -> Transform:
    r"""Adafactor's step as torch.optim.Adafactor takes it (moves p itself).

    With :math:`\hat\beta_{2,t} = 1 - t^{\tau}` (``beta2_decay`` :math:`\tau \le 0`),
    :math:`\rho_t = \min(lr, 1/\sqrt t)` and
    :math:`\alpha_t = \max(\epsilon_2, \mathrm{RMS}(p_{t-1}))\,\rho_t`:

    .. math::
        p \leftarrow p (1 - lr\,\lambda), \quad
        R_t = \hat\beta_{2,t} R_{t-1} + (1-\hat\beta_{2,t})\,\mathrm{mean}_{-1}(G^2), \quad
        C_t = \hat\beta_{2,t} C_{t-1} + (1-\hat\beta_{2,t})\,\mathrm{mean}_{-2}(G^2),

    :math:`\hat V_t = R_t C_t / \max(\mathrm{mean}_{-2}(R_t), \epsilon_1)` for a parameter of
    two or more dims (factored over its own last two dims, never over the member axis),
    :math:`\hat V_t = \hat\beta_{2,t}\hat V_{t-1} + (1-\hat\beta_{2,t})G^2` otherwise; then
    :math:`U_t = G / \sqrt{\max(\hat V_t, \epsilon_1^2)}` and
    :math:`p \leftarrow p - \alpha_t\,U_t / \max(1, \mathrm{RMS}(U_t)/d)`.

    ``eps1`` missing (torch's None) is the machine epsilon of the group's first parameter
    with a gradient (`eps1_default`), as torch. State: ``row_var`` [.., m, 1] and ``col_var``
    [.., 1, n] (factored) or ``variance`` (torch's names and shapes).
    """

    def init(p: Tensor, hp: HP) -> State:
        if _factored(p):
            row, col = list(p.shape), list(p.shape)
            row[-1], col[-2] = 1, 1
            return {"row_var": p.new_zeros(row), "col_var": p.new_zeros(col)}
        return {"variance": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> None:
        t, lr_ = count(state), hp["lr"]
        one_minus_beta2 = torch.pow(t, hp["beta2_decay"])
        rho = torch.minimum(lr_, 1 / t**0.5)
        n = p[0].numel()
        alpha = torch.maximum(hp["eps2"], _member_norm(p) / n**0.5) * rho
        if decay:
            p.mul_(bc(1 - lr_ * hp["weight_decay"], p))
        eps1: Tensor | float = hp.get("eps1", eps1_default)
        if _factored(p):
            row_var, col_var = state["row_var"], state["col_var"]
            row_mean = torch.linalg.vector_norm(g, dim=-1, keepdim=True).square_().div_(g.size(-1))
            lerp_(row_var, row_mean, one_minus_beta2)
            col_mean = torch.linalg.vector_norm(g, dim=-2, keepdim=True).square_().div_(g.size(-2))
            lerp_(col_var, col_mean, one_minus_beta2)
            var_estimate = row_var @ col_var
            row_mean_var = row_var.mean(dim=-2, keepdim=True)
            if isinstance(eps1, Tensor):
                row_mean_var = torch.maximum(row_mean_var, bc(eps1, row_mean_var).to(p.dtype))
            else:
                row_mean_var = row_mean_var.clamp_(min=eps1)
            var_estimate.div_(row_mean_var)
        else:
            variance = lerp_(state["variance"], g * g, one_minus_beta2)
            var_estimate = variance.clone()
        if isinstance(eps1, Tensor):
            floor = bc(eps1 * eps1, var_estimate).to(p.dtype)
            var_estimate = torch.maximum(var_estimate, floor)
        else:
            var_estimate.clamp_(min=eps1 * eps1)
        u = var_estimate.rsqrt_().mul_(g)
        denom = torch.clamp(_member_norm(u) / (n**0.5 * hp["d"]), min=1.0)
        p.addcmul_(u, bc(-alpha / denom, p))

    return Transform(init, update)


class Adafactor(PopulationOptimizer):
    """Adafactor (torch.optim.Adafactor's arguments, defaults and state); every number may
    be a [K] tensor.

    Replicates torch's choices (its docstring's note): ``lr`` caps the relative step size
    :math:`\\rho_t` and scales the decoupled weight decay, ``eps = (eps1, eps2)`` with eps1
    applied to the variance estimate (None: the dtype's machine epsilon, taken from the
    group's first parameter with a gradient), and the row/column factors are means, not
    sums. See `scale_by_adafactor`. Reference: Shazeer & Stern (2018), Adafactor: Adaptive
    learning rates with sublinear memory cost.
    """

    spec = OptimizerSpec(
        name="adafactor",
        summary="factored second moments (row and column means) with relative step sizes",
        reference="torch.optim.Adafactor",
        hyperparameters=(
            lr(1e-2, tune=(1e-4, 1.0)),
            Hyperparameter(
                "beta2_decay", -0.8, "exponent of the second-moment decay 1 - t^tau",
                high=0.0, test=(-1.0, -0.5),
            ),
            Hyperparameter(
                "eps1", None, "floor of the variance estimate (None: machine epsilon)",
                key=("eps", 0), low=0.0, nullable=True, test=(1e-6, 0.5), log=True,
            ),
            Hyperparameter(
                "eps2", 1e-3, "floor of the parameter RMS in the step size",
                key=("eps", 1), low=0.0, test=(1e-3, 1.0), log=True,
            ),
            Hyperparameter("d", 1.0, "clipping threshold of the update RMS", low=1.0,
                           test=(1.0, 3.0)),
            weight_decay(0.0, "decoupled weight decay: p (1 - lr wd)"),
            maximize(),
        ),
        paper="Shazeer & Stern (2018), Adafactor: adaptive learning rates with sublinear "
        "memory cost",
    )  # fmt: skip

    def __init__(
        self,
        params,
        lr=1e-2,
        beta2_decay=-0.8,
        eps=(None, 1e-3),
        d=1.0,
        weight_decay=0.0,
        *,
        foreach=None,
        maximize: bool = False,
        **options,
    ) -> None:
        defaults = dict(
            lr=lr, beta2_decay=beta2_decay, eps=eps, d=d, weight_decay=weight_decay,
            maximize=maximize,
        )  # fmt: skip
        super().__init__(params, defaults, foreach=foreach, **options)

    def make_transform(self, group: dict) -> Transform:
        first = next((p for p in group["params"] if p.grad is not None), None)
        dtype = first.dtype if first is not None else torch.get_default_dtype()
        wd = group["weight_decay"]
        decay = isinstance(wd, Tensor) or wd != 0
        return chain(*head(group), scale_by_adafactor(torch.finfo(dtype).eps, decay))
