r"""Prodigy (Mishchenko & Defazio, 2024, "Prodigy: An Expeditiously Adaptive Parameter-Free
Learner", ICML, arXiv:2306.06101): Adam with a D-Adapted step size, as ``prodigyopt.Prodigy``
(v1.1.2).

Per member. The reference keeps its estimates (``d``, ``d_max``, ``d_numerator``,
``d_denom``, ``d_hat``, ``k``) as Python floats in its param groups, summed over every
parameter of every group; here they sit in the same group keys as float64 [K] tensors (0-d for
a plain model), each sum a per-member sum over every dim but the member dim, across all
groups' tensors in the reference's order (see `optimkit.optim.dadapt`). Differences outside
the numbers: ``p.grad`` is not modified in place; ``p0`` is always the sliced copy (the
reference stores a 0-d zero for an all-zero parameter, same values); ``fsdp_in_use`` accepts
only False; the constructor prints nothing; ``compile=True`` runs eagerly.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from optimkit.optim.base import GroupStep
from optimkit.optim.dadapt import (
    GroupScalarsOptimizer,
    _d0,
    _eps_pos,
    _fsdp,
    _growth_rate,
    _lr_free,
    check_constructor_lr,
    decay_add_,
    f64,
    flat,
    lr_max,
    member_dot,
    nonzero,
    only,
    positive_lr,
)
from optimkit.optim.members import bc
from optimkit.optim.spec import Hyperparameter, OptimizerSpec, betas, flag, weight_decay
from optimkit.optim.transforms import HP, State, Transform


class Prodigy(GroupScalarsOptimizer):
    r"""Prodigy (``prodigyopt.Prodigy``'s arguments, defaults and update; every number may be
    [K]; the estimates are per member).

    With :math:`\gamma_k = d_k\,lr\,b_k` (:math:`b_k = \sqrt{1-\beta_2^{k+1}}/(1-\beta_1^{k+1})`
    under ``use_bias_correction``, else 1), :math:`\beta_3` (default :math:`\sqrt{\beta_2}`),
    and :math:`\hat g`, :math:`\hat p` every ``slice_p``-th entry:

    .. math::
        N_{k+1} = \beta_3 N_k + \textstyle\sum \tfrac{d_k}{d_0}\gamma_k
            \langle \hat g, \hat p_0 - \hat p\rangle, \quad
        m \leftarrow \beta_1 m + d_k(1-\beta_1) g, \quad
        v \leftarrow \beta_2 v + d_k^2(1-\beta_2) g^2, \\
        s \leftarrow \beta_3 s + \tfrac{d_k}{d_0}\gamma_k \hat g \;
            (\tfrac{d_k}{d_0} d_k \text{ with safeguard\_warmup}), \quad
        \hat d = d_\text{coef} N_{k+1} / \textstyle\sum\|s\|_1, \quad
        d_{k+1} = \min(d_\max, d_k\,\text{growth\_rate}), \\
        p \leftarrow p - \gamma_k m / (\sqrt v + d_{k+1}\epsilon)

    with :math:`d_\max \leftarrow \max(d_\max, \hat d)` and, while :math:`d_k = d_0`,
    :math:`d_k \leftarrow \max(d_k, \hat d)` first; weight decay coupled (g + wd p) or, by
    default, decoupled (p <- p - wd gamma_k p). As the reference: lr is the largest group's (the
    others must have it or 0), betas, beta3, d_coef, growth_rate, decouple,
    use_bias_correction and the estimates are group 0's (the d = d0 test the last group's d0),
    eps, weight_decay, d0, safeguard_warmup and slice_p each group's, and a step with
    :math:`\sum\|s\|_1 = 0` changes no parameter and no estimate (per member here).
    """

    scalars = ("d", "d_max", "d_numerator", "k", "d_denom", "d_hat")
    spec = OptimizerSpec(
        name="prodigy",
        summary="Adam with a parameter-free step size (D-Adaptation with Prodigy's estimate)",
        reference="prodigyopt.Prodigy",
        package="prodigyopt",
        family="learning-rate-free",
        hyperparameters=(
            _lr_free(),
            *betas(),
            Hyperparameter(
                "beta3",
                None,
                "decay of the estimate's sums (None: sqrt(beta2))",
                low=0.0,
                high=1.0,
                nullable=True,
                test=(0.9, 0.999),
            ),
            _eps_pos(1e-8, (1e-8, 1e-6)),
            weight_decay(0.0, "weight decay (decoupled p (1 - wd dlr) unless decouple=False)"),
            flag("decouple", "decoupled (AdamW-style) weight decay", default=True),
            flag("use_bias_correction", "Adam's bias correction in the step size"),
            flag("safeguard_warmup", "leave lr out of the estimate's denominator (warm-up)"),
            _d0(),
            Hyperparameter(
                "d_coef",
                1.0,
                "multiplier of the d estimate",
                low=0.0,
                low_open=True,
                tune=(0.1, 10.0),
                log=True,
                test=(0.5, 2.0),
            ),
            _growth_rate(),
            _fsdp(),
            Hyperparameter("slice_p", 1, "estimate on every p-th entry only", kind="int", low=1),
        ),
        paper="Mishchenko & Defazio (2024), ICML, arXiv:2306.06101",
    )

    def __init__(
        self,
        params,
        lr=1.0,
        betas=(0.9, 0.999),
        beta3=None,
        eps=1e-8,
        weight_decay=0,
        decouple=True,
        use_bias_correction=False,
        safeguard_warmup=False,
        d0=1e-6,
        d_coef=1.0,
        growth_rate=float("inf"),
        fsdp_in_use=False,
        slice_p=1,
        **options,
    ) -> None:
        defaults = dict(
            lr=lr, betas=betas, beta3=beta3, eps=eps, weight_decay=weight_decay, d=d0, d0=d0,
            d_max=d0, d_numerator=0.0, d_coef=d_coef, k=0, growth_rate=growth_rate,
            use_bias_correction=use_bias_correction, decouple=decouple,
            safeguard_warmup=safeguard_warmup, fsdp_in_use=fsdp_in_use, slice_p=slice_p,
        )  # fmt: skip
        check_constructor_lr(lr)
        super().__init__(params, defaults, **options)
        self.d0 = d0

    def fresh_scalar(self, group: dict[str, Any], name: str, hp: HP) -> Tensor:
        if name in ("d", "d_max", "d_hat"):
            return hp["d0"].clone()
        return torch.zeros_like(hp["lr"])

    def _momentum(self) -> bool:
        """The reference keeps ``exp_avg`` only when group 0's beta1 > 0."""
        beta1 = self.param_groups[0]["betas"][0]
        return isinstance(beta1, Tensor) or beta1 > 0

    def make_transform(self, group: dict[str, Any]) -> Transform:
        slice_p, momentum = group["slice_p"], self._momentum()

        def init(p: Tensor, hp: HP) -> State:
            sliced = flat(p)[:, ::slice_p]
            st = {"s": torch.zeros_like(sliced, memory_format=torch.contiguous_format),
                  "p0": sliced.clone(memory_format=torch.contiguous_format)}  # fmt: skip
            if momentum:
                st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            return st

        def update(g: Tensor, state: State, p: Tensor, hp: HP) -> None:
            raise AssertionError("updated by update_all")

        return Transform(init, update)

    def update_all(self, work: list[GroupStep]) -> None:
        groups, hps = self.param_groups, self.all_hyperparameters()
        g0, hp0 = groups[0], hps[0]
        beta1, beta2 = hp0["beta1"], hp0["beta2"]
        beta3 = hp0["beta3"] if "beta3" in hp0 else beta2.sqrt()
        k, d, d_max = self.scalar(g0, "k"), self.scalar(g0, "d"), self.scalar(g0, "d_max")
        lr = lr_max(hps, groups)
        if g0["use_bias_correction"]:
            bias = (1 - beta2 ** (k + 1)) ** 0.5 / (1 - beta1 ** (k + 1))
            dlr = d * lr * bias
        else:
            dlr = d * lr
        decouple, momentum = g0["decouple"], self._momentum()
        d_numerator = self.scalar(g0, "d_numerator") * beta3
        delta_numerator = torch.zeros_like(d)
        d_denom = torch.zeros_like(d)
        for w in work:
            hp, group = w.hp, w.group
            decay_on, d0, slice_p = nonzero(group["weight_decay"]), hp["d0"], group["slice_p"]
            pos = positive_lr(group, hp)
            scale = d / d0 * d if group["safeguard_warmup"] else d / d0 * dlr
            grads = []
            for p, g, st in zip(w.params, w.grads, w.states, strict=True):
                if decay_on and not decouple:
                    g = g.addcmul(p, bc(hp["weight_decay"], p))
                grads.append(g)
                sliced = flat(g)[:, ::slice_p]
                s = st["s"]
                dot = member_dot(sliced, st["p0"] - flat(p)[:, ::slice_p])
                delta_numerator = delta_numerator + only(pos, d / d0 * dlr * dot)
                if momentum:
                    decay_add_(st["exp_avg"], bc(beta1, g), g, bc(d * (1 - beta1), g), pos)
                v_add = g.mul(bc(d * d * (1 - beta2), g))
                decay_add_(st["exp_avg_sq"], bc(beta2, g), v_add, g, pos)
                decay_add_(s, bc(beta3, s), sliced, bc(scale, s), pos)
                d_denom = d_denom + only(pos, s.abs().sum(1).to(f64))
            w.grads = grads
        live = d_denom != 0  # the reference returns before any update when sum ||s||_1 = 0
        on = live.to(f64)
        d_numerator = d_numerator + delta_numerator
        d_hat = hp0["d_coef"] * d_numerator / d_denom
        d_new = torch.where(d == hps[-1]["d0"], torch.maximum(d, d_hat), d)
        d_max_new = torch.maximum(d_max, d_hat)
        d_new = torch.minimum(d_max_new, d_new * hp0["growth_rate"])
        positive = lr > 0
        d_new, d_max_new = torch.where(positive, d_new, d), torch.where(positive, d_max_new, d_max)
        d_hat = torch.where(positive, d_hat, d)
        for group in groups:
            for name, new in (("d_numerator", d_numerator), ("d_denom", d_denom), ("d", d_new),
                              ("d_max", d_max_new), ("d_hat", d_hat)):  # fmt: skip
                old = self.scalar(group, name) if name in group else new
                self.set_scalar(group, name, torch.where(live, new, old))
        for w in work:
            hp, group = w.hp, w.group
            decoupled_decay = nonzero(group["weight_decay"]) and decouple
            for p, g, st in zip(w.params, w.grads, w.states, strict=True):
                st["step"].add_(on.to(st["step"]))
                denom = st["exp_avg_sq"].sqrt().add_(bc(d_new * hp["eps"], p))
                if decoupled_decay:
                    p.addcmul_(p, bc(-hp["weight_decay"] * dlr * on, p))
                if momentum:
                    p.add_(st["exp_avg"].mul(bc(-dlr * on, p)).div_(denom))
                else:
                    p.add_(g.mul(bc(-dlr * d_new * on, p)).div_(denom))
        for group in groups:
            self.set_scalar(group, "k", self.scalar(group, "k") + on)
