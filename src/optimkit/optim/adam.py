"""Adam, AdamW (Kingma & Ba, 2015; Loshchilov & Hutter, 2019), with torch.optim's conventions.

`scale_by_adam` is the reference transform. The optimizer classes run a faster path that
computes the same update up to rounding (see `Adam`): torch's fused single-pass kernel for one
model with number hyperparameters on CPU, else `adam_step_`, a direct Adam step on the stacked
tensors whose per-step coefficients are computed once per group on [P, K] vectors
(`adam_coefficients`), run eagerly or, with ``compile=True``, as one loop through torch.compile;
a population on CPU runs torch's fused kernel once per member (`fused_members_`).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from optimkit.optim.base import GroupStep, PopulationOptimizer, compiled, prox_l1_group_
from optimkit.optim.fastpath import clean_grads
from optimkit.optim.members import bc
from optimkit.optim.spec import OptimizerSpec, betas, eps, flag, lr, maximize, weight_decay
from optimkit.optim.transforms import HP, State, Transform, chain, count, ema_, ema_sq_, head, zeros
from optimkit.optim.transforms import weight_decay as decay


def scale_by_adam(amsgrad: bool) -> Transform:
    r"""Adam's direction, eps outside the square root as in torch.optim.Adam.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,
        \quad d_t = \frac{m_t / (1-\beta_1^t)}{\sqrt{\hat v_t} / \sqrt{1-\beta_2^t} + \epsilon}

    with :math:`\hat v_t = \max_{s \le t} v_s` under AMSGrad (Reddi et al., 2018), else v_t.
    """
    names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if amsgrad else ("exp_avg", "exp_avg_sq")

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> Tensor:
        beta1, beta2 = hp["beta1"], hp["beta2"]
        t = count(state)
        m = ema_(state["exp_avg"], g, beta1)
        v = ema_sq_(state["exp_avg_sq"], g, beta2)
        if amsgrad:
            v = state["max_exp_avg_sq"].clamp_min_(v)
        bias1, bias2_sqrt = 1 - beta1**t, (1 - beta2**t).sqrt()
        denom = v.sqrt().div_(bc(bias2_sqrt, p)).add_(bc(hp["eps"], p)).mul_(bc(bias1, p))
        return denom.reciprocal_().mul_(m)

    return Transform(zeros(*names), update)


def adam_coefficients(steps: Tensor, hp: HP, decoupled: bool) -> dict[str, Tensor]:
    r"""Adam's per-step scalars in float64 for step counts ``steps`` ([P, K], one row per
    parameter, already incremented):

    .. math::
        w_1 = 1-\beta_1,\quad \beta_2,\quad w_2 = 1-\beta_2,\quad
        \hat\epsilon = \epsilon\sqrt{1-\beta_2^t},\quad
        \alpha_t = lr\,\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t},

    and wd (coupled) or 1 - lr wd (decoupled), each a float64 tensor broadcasting against
    [P, K]. With them Adam's update
    :math:`lr\,\hat m / (\sqrt{\hat v} + \epsilon)` reads
    :math:`\alpha_t\, m / (\sqrt{v} + \hat\epsilon)` (Kingma & Ba, 2015, end of Sec. 2):
    two passes over memory fewer than bias-correcting m and v themselves."""
    beta1, beta2 = hp["beta1"], hp["beta2"]
    lr, wd = hp["lr"], hp["weight_decay"]
    bias2_sqrt = torch.rsub(torch.pow(beta2, steps), 1).sqrt_()
    return {
        "w1": 1 - beta1,
        "beta2": beta2,
        "w2": 1 - beta2,
        "eps_hat": hp["eps"] * bias2_sqrt,
        "neg_alpha": bias2_sqrt.mul(-lr).div_(torch.rsub(torch.pow(beta1, steps), 1)),
        "weight_decay": wd,
        "decay": 1 - lr * wd,
    }


def per_parameter(coef: dict[str, Tensor], params: Sequence[Tensor]) -> dict[str, list[Tensor]]:
    """Each coefficient broadcast against each parameter: cast to the parameter's dtype
    (once per dtype) and viewed [K, 1, ..., 1], row i of a [P, K] one."""
    out: dict[str, list[Tensor]] = {}
    for name, c in coef.items():
        cast: dict[torch.dtype, Any] = {}
        views = []
        for i, p in enumerate(params):
            if p.dtype not in cast:
                x = c.to(p.dtype)
                cast[p.dtype] = x.unbind(0) if x.dim() == 2 else x
            x = cast[p.dtype]
            views.append(
                (x[i] if isinstance(x, tuple) else x).reshape((-1,) + (1,) * (p.dim() - 1))
            )
        out[name] = views
    return out


def adam_update_(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    exp_avgs: Sequence[Tensor],
    exp_avg_sqs: Sequence[Tensor],
    max_exp_avg_sqs: Sequence[Tensor],
    coef: dict[str, Any],
    *,
    amsgrad: bool,
    maximize: bool,
    decoupled: bool,
    decay: bool,
    scratch: Sequence[Tensor] | None = None,
) -> None:
    """One Adam step in place on stacked tensors with precomputed `adam_coefficients`
    (torch.optim.Adam's update up to rounding); ``decay=False`` leaves weight decay out (the
    user's number 0). Step counts are not touched. ``scratch``
    (eager) holds a work buffer per parameter for the denominator; under torch.compile leave
    it None, and the whole step becomes one loop over memory."""
    c = per_parameter(coef, params)
    for i, (p, g, m, v) in enumerate(zip(params, grads, exp_avgs, exp_avg_sqs, strict=True)):
        if maximize:
            g = -g
        if decay and decoupled:
            p.mul_(c["decay"][i])
        elif decay:
            g = g.addcmul(p, c["weight_decay"][i])
        m.lerp_(g, c["w1"][i])
        v.mul_(c["beta2"][i])
        v.addcmul_(g, g * c["w2"][i])
        if amsgrad:
            v = torch.maximum(max_exp_avg_sqs[i], v, out=max_exp_avg_sqs[i])
        denom = v.sqrt() if scratch is None else torch.sqrt(v, out=scratch[i])
        denom.add_(c["eps_hat"][i])
        p.addcmul_(torch.div(m, denom, out=denom), c["neg_alpha"][i])


def adam_step_(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    exp_avgs: Sequence[Tensor],
    exp_avg_sqs: Sequence[Tensor],
    max_exp_avg_sqs: Sequence[Tensor],
    steps: Sequence[Tensor],
    hp: HP,
    *,
    amsgrad: bool,
    maximize: bool,
    decoupled: bool,
    decay: bool,
    scratch: Sequence[Tensor] | None = None,
) -> dict[str, Tensor]:
    """A group's whole Adam step: count, `adam_coefficients`, `adam_update_`.

    Returns the coefficients: under torch.compile, outputs are materialized, so the [P, K]
    coefficients are computed once per step in a small loop rather than again for every
    vector of the parameters' loop."""
    torch._foreach_add_(list(steps), 1.0)
    # [P, K] float64 (a step loaded from torch.optim's state_dict is a 0-d float32)
    t = torch.stack(list(steps)).to(torch.float64).reshape(len(steps), -1)
    coef = adam_coefficients(t, hp, decoupled)
    adam_update_(
        params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, coef, amsgrad=amsgrad,
        maximize=maximize, decoupled=decoupled, decay=decay, scratch=scratch,
    )  # fmt: skip
    return coef


_FUSED_DTYPES = (torch.float32, torch.float64)


def _members_fused_apply(params: Sequence[Tensor], grads: Sequence[Tensor],
                         buffers: Sequence[Tensor]) -> bool:  # fmt: skip
    """Member slices can go through torch's fused CPU kernel: float32/64 CPU tensors whose
    member slices are contiguous (a contiguous stacked tensor's are)."""
    return all(p.device.type == "cpu" and p.dtype in _FUSED_DTYPES for p in params) and all(
        t.is_contiguous() for t in (*params, *grads, *buffers)
    )


def fused_members_(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    exp_avgs: Sequence[Tensor],
    exp_avg_sqs: Sequence[Tensor],
    max_exp_avg_sqs: Sequence[Tensor],
    steps: Sequence[Tensor],
    hp: HP,
    *,
    amsgrad: bool,
    maximize: bool,
    decoupled: bool,
    decay: bool,
    views: dict[str, Any] | None = None,
) -> None:
    """A population's Adam step as K calls of torch's fused single-pass CPU kernel (what
    ``torch.optim.Adam(fused=True)`` runs), call k on member k's slices of all the group's
    tensors with member k's hyperparameters as numbers: one pass over memory instead of the
    seven of the eager stacked step, and the same arithmetic as torch.optim.Adam on member
    k alone (bit for bit in the cases tested). CPU only (the [K] hyperparameters are read as
    numbers, which on an accelerator would synchronize). `views` (a dict the caller keeps
    between steps) caches the member slices of the persistent tensors (parameters, moments,
    step counts), rebuilt when any of them is a different tensor object than last time, and
    those of the gradients once the same gradient tensors come back (``zero_grad(set_to_none=
    False)``)."""
    torch._foreach_add_(list(steps), 1.0)
    k = params[0].shape[0]
    lr, eps, wd = hp["lr"].tolist(), hp["eps"].tolist(), hp["weight_decay"].tolist()
    beta1, beta2 = hp["beta1"].tolist(), hp["beta2"].tolist()
    if not decay:
        wd = [0.0] * k
    views = {} if views is None else views
    persistent = [*params, *exp_avgs, *exp_avg_sqs, *steps, *max_exp_avg_sqs]
    if not _same_tensors(views.get("tensors"), persistent):
        views["tensors"] = persistent
        split = [[t.unbind(0) for t in ts] for ts in (params, exp_avgs, exp_avg_sqs, steps,
                                                      max_exp_avg_sqs)]  # fmt: skip
        views["members"] = [[[t[i] for t in ts] for ts in split] for i in range(k)]
    # the gradients' slices are kept only once the same gradients come back (weak references
    # until then: fresh gradients every step, set_to_none=True, are not held alive)
    refs = views.get("grad_refs")
    same = (
        refs is not None
        and len(refs) == len(grads)
        and all(r() is g for r, g in zip(refs, grads, strict=True))
    )
    grad_members = views.get("grad_members") if same else None
    if grad_members is None:
        grad_members = [list(g) for g in zip(*(g.unbind(0) for g in grads), strict=True)]
        if same:
            views["grad_members"] = grad_members
        else:
            views["grad_refs"] = [weakref.ref(g) for g in grads]
            views.pop("grad_members", None)
    fused_step = torch._fused_adamw_ if decoupled else torch._fused_adam_
    for i, ((p, m, v, s, vmax), g) in enumerate(zip(views["members"], grad_members, strict=True)):
        fused_step(
            p, g, m, v, vmax, s, lr=lr[i], beta1=beta1[i], beta2=beta2[i],
            weight_decay=wd[i], eps=eps[i], amsgrad=amsgrad, maximize=maximize,
        )  # fmt: skip


def _same_tensors(held: Sequence[Tensor] | None, tensors: Sequence[Tensor]) -> bool:
    """The same tensor objects, in order (identity, not values)."""
    return (
        held is not None
        and len(held) == len(tensors)
        and all(a is b for a, b in zip(held, tensors, strict=True))
    )


def adam_spec(name: str, weight_decay_default: float, decoupled: bool) -> OptimizerSpec:
    doc = "decoupled weight decay: p (1 - lr wd)" if decoupled else "L2 penalty (coupled: g + wd p)"
    return OptimizerSpec(
        name=name,
        summary=("Adam with decoupled weight decay" if decoupled
                 else "adaptive moments: bias-corrected first and second moment estimates"),
        reference=f"torch.optim.{'AdamW' if decoupled else 'Adam'}",
        hyperparameters=(
            lr(1e-3, tune=(1e-4, 1e-1)),
            *betas(),
            eps(),
            weight_decay(weight_decay_default, doc),
            flag("amsgrad", "AMSGrad: the running maximum of the second moment"),
            maximize(),
            *(() if decoupled else (flag("decoupled_weight_decay", "decay as AdamW"),)),
        ),
        compare=(name,),
        paper=("Loshchilov & Hutter (2019)" if decoupled else "Kingma & Ba (2015)"),
    )  # fmt: skip


class Adam(PopulationOptimizer):
    """Adam (torch.optim.Adam's arguments and defaults); any hyperparameter may be a [K] tensor.

    ``decoupled_weight_decay=True`` makes it AdamW, as in torch.

    How a group is updated (all give torch's update up to rounding):

    * one model (K = 1) with number hyperparameters, on CPU, float32/float64, contiguous
      tensors: torch's fused single-pass kernel (what ``torch.optim.Adam(fused=True)`` runs);
    * a population (or [K] hyperparameters) on CPU, float32/float64, contiguous tensors,
      without ``compile``: the same fused kernel once per member on its slices, with its
      numbers (`fused_members_`; one pass over memory, torch.optim.Adam's arithmetic);
    * otherwise (other devices and layouts, ``compile=True``): `adam_update_`
      on the stacked tensors, with the per-step coefficients computed once per group on
      [P, K] vectors. Eagerly that is 7 passes over memory, with a reused work buffer; with
      ``compile=True`` it is one loop (inductor), at the speed of the fused kernel, after a
      one-time compilation (seconds) per group and shapes; hyperparameters are passed as
      tensors, so schedules changing them do not recompile;
    * ``fused=False``: the reference transform chain (`scale_by_adam`), for checking.

    ``fused=None`` (default) or ``True`` choose the first two automatically.
    """

    spec = adam_spec("adam", 0.0, decoupled=False)

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
        **options,
    ) -> None:
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
            maximize=maximize, decoupled_weight_decay=decoupled_weight_decay,
        )  # fmt: skip
        super().__init__(params, defaults, **options)
        self._scratch: dict[tuple[torch.dtype, torch.device], Tensor] = {}
        self._scratch_views: dict[tuple[torch.Size, torch.dtype, torch.device], Tensor] = {}
        self._member_views: dict[int, dict[str, Any]] = {}

    def make_transform(self, group: dict) -> Transform:
        wd = decay(group, decoupled=group["decoupled_weight_decay"])
        return chain(*head(group), *wd, scale_by_adam(group["amsgrad"]))

    def update_group(self, w: GroupStep) -> None:
        """The fast paths (``fused`` not False): see the class docstring."""
        group = w.group
        if group.get("fused", None) is False:
            super().update_group(w)
            return
        amsgrad, decoupled = bool(group["amsgrad"]), bool(group["decoupled_weight_decay"])
        wd = group["weight_decay"]
        flags = {"amsgrad": amsgrad, "maximize": bool(group["maximize"]), "decoupled": decoupled,
                 "decay": isinstance(wd, Tensor) or wd != 0}  # fmt: skip
        names = ("exp_avg", "exp_avg_sq", *(("max_exp_avg_sq",) if amsgrad else ()))
        if self.members is None:
            stored = [self.state[p] for p in w.stored]
            m, v, *vmax = [[s[n] for s in stored] for n in names]
            grads: list[Tensor] = [p.grad for p in w.stored]  # type: ignore[misc]
            if clean_grads(self) and self._torch_fused_applies(
                group, w.stored, grads, [*m, *v, *(vmax[0] if vmax else [])]
            ):
                steps = [s["step"] for s in stored]
                torch._foreach_add_(steps, 1.0)
                fused_step = torch._fused_adamw_ if decoupled else torch._fused_adam_
                beta1, beta2 = group["betas"]
                fused_step(
                    w.stored, grads, m, v, vmax[0] if vmax else [], steps, lr=group["lr"],
                    beta1=beta1, beta2=beta2, weight_decay=wd, eps=group["eps"],
                    amsgrad=amsgrad, maximize=flags["maximize"],
                )  # fmt: skip
                prox_l1_group_(w)
                return
        m, v, *vmax = [[s[n] for s in w.states] for n in names]
        steps = [s["step"] for s in w.states]
        if not self.compile and _members_fused_apply(
            w.params, w.grads, [*m, *v, *(vmax[0] if vmax else [])]
        ):
            fused_members_(w.params, w.grads, m, v, vmax[0] if vmax else [], steps, w.hp,
                           **flags, views=self._member_views.setdefault(w.index, {}))  # fmt: skip
            prox_l1_group_(w)
            return
        step: Any = adam_step_
        scratch: list[Tensor] | None = None
        if self.compile:
            key = ("adam", w.index)
            if key not in self._compiled:
                self._compiled[key] = compiled(adam_step_)
            step = self._compiled[key]
        else:
            scratch = [self._scratch_like(p) for p in w.params]
        step(w.params, w.grads, m, v, vmax[0] if vmax else [], steps, w.hp, **flags,
             scratch=scratch)  # fmt: skip
        prox_l1_group_(w)

    def _torch_fused_applies(self, group, params, grads, buffers) -> bool:
        """torch's fused CPU kernel takes number hyperparameters and one step count per
        tensor, and walks memory linearly: one plain model, numbers, float32/64, contiguous."""
        numbers = (group["lr"], group["eps"], group["weight_decay"], *group["betas"])
        if self.members is not None or any(isinstance(v, Tensor) for v in numbers):
            return False
        # A gradient has its parameter's dtype and device (autograd checks), and loaded state
        # is cast to them (torch.optim.Optimizer.load_state_dict).
        return all(p.device.type == "cpu" and p.dtype in _FUSED_DTYPES for p in params) and all(
            t.is_contiguous() for t in (*params, *grads, *buffers)
        )

    def _scratch_like(self, p: Tensor) -> Tensor:
        """A reusable work buffer shaped like p (one per dtype and device, grown as needed):
        large fresh temporaries would be mapped and page-faulted anew at every step."""
        key = (p.shape, p.dtype, p.device)
        view = self._scratch_views.get(key)
        if view is None:
            buf = self._scratch.get(key[1:])
            if buf is None or buf.numel() < p.numel():
                buf = self._scratch[key[1:]] = torch.empty(
                    p.numel(), dtype=p.dtype, device=p.device
                )
                self._scratch_views.clear()
            view = self._scratch_views[key] = buf[: p.numel()].view(p.shape)
        return view


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay p <- p (1 - lr wd); torch.optim.AdamW's defaults."""

    spec = adam_spec("adamw", 1e-2, decoupled=True)

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        **options,
    ) -> None:
        super().__init__(
            params, lr, betas, eps, weight_decay, amsgrad,
            maximize=maximize, decoupled_weight_decay=True, **options,
        )  # fmt: skip
