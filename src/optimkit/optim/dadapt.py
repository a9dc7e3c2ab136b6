r"""D-Adaptation (Defazio & Mishchenko, 2023, "Learning-Rate-Free Learning by D-Adaptation",
ICML, arXiv:2301.07733): Adam and SGD whose step size d is estimated from the run itself, as in
the ``dadaptation`` package (``DAdaptAdam``, ``DAdaptSGD``, v3.2).

Per member. The reference keeps its estimates (``d``, ``numerator_weighted``, ``k``, ...) as
Python floats in its param groups, summed over every parameter of every group. Here they sit
in the same group keys as float64 [K] tensors (0-d for a plain model), and every sum is a
per-member sum (over every dim but the member dim, across all groups' tensors, in the
reference's order), so member k's d depends on its own slice only and equals the reference's
run alone with hyperparameters hp[k]. `GroupScalarsOptimizer` (also the base of Prodigy and
the schedule-free optimizers) keeps these group scalars right under ``skip_nonfinite`` (a
skipped member keeps them too), ``reset_members`` and ``copy_member``.

Differences from the reference, all outside its numbers: the gradient (``p.grad``) is not
modified in place (the reference adds weight decay into it); ``fsdp_in_use`` accepts only
False (no sharded reductions); the constructor prints nothing; the group also holds ``d0``
(the reference keeps it on the optimizer) so that it can be a [K] tensor and be validated;
a member whose reference run would raise (ZeroDivisionError on an all-zero first gradient in
DAdaptSGD) keeps its parameters instead. ``compile=True`` is accepted and runs eagerly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from optimkit.optim import clipping
from optimkit.optim.base import GroupStep, PopulationOptimizer, prox_l1_group_
from optimkit.optim.fastpath import Scratch, member_sq_norm
from optimkit.optim.fastpath import member_dot as fast_dot
from optimkit.optim.members import bc, member_view
from optimkit.optim.spec import Hyperparameter, OptimizerSpec, betas, flag, weight_decay
from optimkit.optim.transforms import HP, State, Transform, lerp_

f64 = torch.float64
log = logging.getLogger(__name__)


class GroupScalarsOptimizer(PopulationOptimizer):
    """Base for optimizers whose reference keeps per-step scalars in its param groups
    (``scalars``): here each is a float64 [K] tensor in its group (0-d for a plain model),
    restored with the member under ``skip_nonfinite`` and reset/copied with member slots.
    Subclasses set ``scalars`` and implement `fresh_scalar`; optimizer-wide updates (every
    group at once, as the learning-rate-free references) implement `update_all`."""

    scalars: ClassVar[tuple[str, ...]] = ()
    _pending: list[GroupStep]

    def fresh_scalar(self, group: dict[str, Any], name: str, hp: HP) -> Tensor:
        """Scalar `name`'s value ([K] float64) at the start of a run."""
        raise NotImplementedError

    # ------------------------------------------------------------------ reading and writing
    def scalar(self, group: dict[str, Any], name: str, default: float = 0.0) -> Tensor:
        """Scalar `name` of a group in member view: [K] float64 on the group's device."""
        assert self.axis is not None
        value = group.get(name, default)
        device = group["params"][0].device if group["params"] else None
        return self.axis.hyper(value, device)

    def set_scalar(self, group: dict[str, Any], name: str, value: Tensor) -> None:
        """Store a [K] scalar in a group (a new tensor each time: never written in place)."""
        assert self.axis is not None
        group[name] = self.axis.stored(value)

    def work_buffer(self, p: Tensor, slot: int = 0) -> Tensor:
        """A reusable work buffer shaped like p (`optimkit.optim.fastpath.Scratch`)."""
        scratch = self.__dict__.get("_scratch")
        if scratch is None:
            scratch = self.__dict__["_scratch"] = Scratch()
        return scratch.like(p, slot)

    # ------------------------------------------------------------------ the step
    def check_step(self) -> None:
        """Called before each step (schedule-free: refuses a step in eval mode)."""

    def after_step(self) -> None:
        """Called after each step's updates (schedule-free: groups without gradients)."""

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        self.check_step()
        self._pending = []
        before = None
        if self.skip_nonfinite:
            before = [{n: group.get(n) for n in self.scalars} for group in self.param_groups]
        loss = super().step(closure)
        self.after_step()
        if before is not None:
            self._keep_skipped(before)
        return loss

    def _keep_skipped(self, before: list[dict[str, Any]]) -> None:
        """skip_nonfinite: the members whose gradient was not finite keep their scalars."""
        assert self.axis is not None
        grads = [self.axis.view(p.grad) for group in self.param_groups
                 for p in group["params"] if p.grad is not None]  # fmt: skip
        if not grads:
            return
        ok = clipping.finite_members(grads)
        for group, old in zip(self.param_groups, before, strict=True):
            for name, value in old.items():
                if value is None or group.get(name) is value:
                    continue
                new, prev = self.scalar(group, name), self.axis.hyper(value, ok.device)
                self.set_scalar(group, name, torch.where(ok.to(new.device), new, prev.to(new)))

    def update_group(self, w: GroupStep) -> None:
        """Collects the groups of a step; the last group with gradients runs `update_all`
        over all of them (the references' estimates span every group)."""
        self._pending.append(w)
        active = [i for i, g in enumerate(self.param_groups)
                  if any(p.grad is not None for p in g["params"])]  # fmt: skip
        if w.index == active[-1]:
            work, self._pending = self._pending, []
            self.update_all(work)
            for v in work:
                prox_l1_group_(v)

    def update_all(self, work: list[GroupStep]) -> None:
        raise NotImplementedError

    def all_hyperparameters(self) -> list[HP]:
        """Every group's [K] hyperparameters (groups without gradients too)."""
        return [self.hyperparameters(g, i) for i, g in enumerate(self.param_groups)]

    # ------------------------------------------------------------------ member slots
    def reset_members(self, mask: Tensor) -> None:
        """Fresh state and group scalars for the masked members: each then runs as a
        reference constructed with its current hyperparameters (d starts at its group's
        ``d0``; at construction, as in the reference, a ``d0`` given in a param-group dict
        does not move the start of d, which is the constructor's d0)."""
        super().reset_members(mask)
        for group in self.param_groups:
            hp = self.hyperparameters(group)
            for name in self.scalars:
                if name in group:
                    cur = self.scalar(group, name)
                    fresh = self.fresh_scalar(group, name, hp).to(cur)
                    self.set_scalar(group, name, torch.where(mask.to(cur.device), fresh, cur))

    def copy_member(self, src: int, dst: int) -> None:
        super().copy_member(src, dst)
        for group in self.param_groups:
            for name in self.scalars:
                if name in group:
                    cur = self.scalar(group, name).clone()
                    cur[dst] = cur[src]
                    self.set_scalar(group, name, cur)


# ---------------------------------------------------------------------- shared helpers
def nonzero(value: Any) -> bool:
    """A term the user did not switch off with the number 0 (a tensor is always on)."""
    return isinstance(value, Tensor) or value != 0


def lr_max(hps: Sequence[HP], groups: Sequence[dict[str, Any]]) -> Tensor:
    """The references' ``lr = max(group['lr'] for group in param_groups)``, per member, and
    their check that every group's lr is that maximum or 0 (RuntimeError)."""
    lrs = torch.stack([h["lr"] for h in hps])
    lr = lrs.amax(0)
    if len(hps) > 1 and bool(((lrs != lr) & (lrs != 0)).any()):
        raise RuntimeError(
            "Setting different lr values in different parameter groups is only supported "
            "for values of 0"
        )
    return lr


def positive_lr(group: dict[str, Any], hp: HP) -> Tensor | None:
    """[K] mask of the members whose lr in this group is > 0 (the references skip the
    estimate for the others); None when every member's is (the usual case)."""
    lr = group["lr"]
    if isinstance(lr, Tensor) or lr <= 0:
        return hp["lr"] > 0
    return None


def decay_add_(
    buf: Tensor, decay: Tensor | None, t1: Tensor, t2: Tensor, mask: Tensor | None
) -> Tensor:
    """buf <- decay * buf + t1 * t2 in place (the references' ``mul_(decay).add_(t1,
    alpha=c)`` / ``addcmul_``; no decay: buf + t1 t2), only for the members where mask is
    True (all if None)."""
    out = buf if mask is None else buf.clone()
    if decay is not None:
        out.mul_(decay)
    out.addcmul_(t1, t2)
    if mask is not None:
        buf.copy_(torch.where(member_view(mask.to(buf.device), buf), out, buf))
    return buf


def flat(t: Tensor) -> Tensor:
    """[K, n]: a member-view tensor flattened per member."""
    return t.reshape(t.shape[0], -1)


def member_dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-member dot product ([K] float64) of two [K, ...] tensors (torch.dot per member)."""
    return flat(a).mul(flat(b)).sum(1).to(f64)


def only(mask: Tensor | None, x: Tensor) -> Tensor:
    return x if mask is None else torch.where(mask.to(x.device), x, 0.0)


def log_estimates(name: str, k: Tensor, every: int, **values: Tensor) -> None:
    """The references' ``log_every`` (logging.info every `every` steps; a host sync, only
    when asked for)."""
    if every > 0 and bool((torch.remainder(k, every) == 0).any()):
        log.info("%s: %s", name, ", ".join(f"{n}={v.tolist()}" for n, v in values.items()))


def _d0(doc: str = "initial D estimate") -> Hyperparameter:
    return Hyperparameter(
        "d0", 1e-6, doc, low=0.0, low_open=True, tune=(1e-8, 1e-4), log=True, test=(1e-7, 1e-5)
    )


def _lr_free(default: float = 1.0) -> Hyperparameter:
    # lr >= 0: a param group may have lr = 0 (the references' one exception to "all groups
    # share lr"); the constructor's own lr must be > 0 (`check_constructor_lr`).
    # test=(1, 1): the references raise when groups' lrs differ, and the crossed param-group
    # test draws each group's values separately; per-member lr is in test_optim_lr_free.py
    return Hyperparameter(
        "lr", default, "learning-rate multiplier of the adapted step size", low=0.0,
        tune=(0.1, 10.0), log=True, test=(1.0, 1.0),
    )  # fmt: skip


def check_constructor_lr(lr: Any) -> None:
    """The references' ``if not 0.0 < lr: raise ValueError`` (the constructor's lr only)."""
    if (
        isinstance(lr, bool)
        or not isinstance(lr, int | float | Tensor)
        or (isinstance(lr, Tensor) and not lr.is_floating_point())
    ):
        return  # the base's check says what is expected
    values = lr.detach().to(f64) if isinstance(lr, Tensor) else torch.tensor(float(lr))
    if not bool((values > 0).all()):
        shown = values.tolist()
        raise ValueError(f"lr: expected 0 < lr (a param group may have lr = 0), got {shown}")


def _growth_rate() -> Hyperparameter:
    return Hyperparameter(
        "growth_rate", float("inf"), "largest factor d may grow by per step",
        low=0.0, low_open=True, inf=True, test=(1.01, 2.0),
    )  # fmt: skip


def _fsdp() -> Hyperparameter:
    return Hyperparameter(
        "fsdp_in_use", False, "sharded (FSDP) parameters: not supported, must be False",
        kind="choice", choices=(False,),
    )  # fmt: skip


def _log_every() -> Hyperparameter:
    return Hyperparameter(
        "log_every", 0, "log the estimates every k steps (0: never)", kind="int", low=0
    )


def _eps_pos(default: float, test: tuple[float, float]) -> Hyperparameter:
    return Hyperparameter(
        "eps", default, "term added to the denominator", low=0.0, low_open=True, test=test
    )


def _state_init(names_like: Iterable[str], clones: Iterable[str] = ()) -> Transform:
    """A transform that only initializes state: zero buffers and clones of the parameter."""
    zeros, copies = tuple(names_like), tuple(clones)

    def init(p: Tensor, hp: HP) -> State:
        st = {n: torch.zeros_like(p, memory_format=torch.preserve_format) for n in zeros}
        st.update({n: p.clone(memory_format=torch.preserve_format) for n in copies})
        return st

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> None:
        raise AssertionError("updated by update_all")

    return Transform(init, update)


# ---------------------------------------------------------------------- DAdaptAdam
class DAdaptAdam(GroupScalarsOptimizer):
    r"""Adam with a D-Adapted step size (``dadaptation.DAdaptAdam``'s arguments, defaults and
    update; every number may be [K]).

    With :math:`\gamma_k = d_k\,lr\,b_k` (:math:`b_k = \sqrt{1-\beta_2^{k+1}}/(1-\beta_1^{k+1})`
    under ``use_bias_correction``, else 1) and layer scale r (group key ``layer_scale``):

    .. math::
        N_{k+1} = \sqrt{\beta_2} N_k + (1-\sqrt{\beta_2})\textstyle\sum r\gamma_k
            \langle g, s / (\sqrt{v_k}+\epsilon)\rangle, \quad
        m \leftarrow \beta_1 m + r\gamma_k(1-\beta_1) g, \quad
        v \leftarrow \beta_2 v + (1-\beta_2) g^2, \\
        s \leftarrow \sqrt{\beta_2} s + \gamma_k (1-\sqrt{\beta_2}) g, \quad
        d_{k+1} = \max\big(d_k, \min(\tfrac{N_{k+1}}{(1-\sqrt{\beta_2})\sum r\|s\|_1},
            d_k\,\text{growth\_rate})\big), \quad
        p \leftarrow p - m / (\sqrt{v}+\epsilon)

    (decoupled weight decay p <- p - wd gamma_k p first). As the reference: lr is the largest
    group's (the others must have it or 0), betas, ``decouple``, ``use_bias_correction``,
    ``growth_rate`` and the estimates are group 0's, and a step with
    :math:`\sum\|s\|_1 = 0` changes no parameter (per member here). Estimates: group keys
    ``d``, ``numerator_weighted``, ``k`` ([K]).
    """

    scalars = ("d", "k", "numerator_weighted")
    spec = OptimizerSpec(
        name="dadapt_adam",
        summary="Adam whose step size is estimated on the fly (D-Adaptation)",
        reference="dadaptation.DAdaptAdam",
        package="dadaptation",
        family="learning-rate-free",
        hyperparameters=(
            _lr_free(),
            *betas(),
            _eps_pos(1e-8, (1e-8, 1e-6)),
            weight_decay(0.0, "weight decay (coupled g + wd p, or decoupled)"),
            _log_every(),
            flag("decouple", "decoupled (AdamW-style) weight decay"),
            flag("use_bias_correction", "Adam's bias correction in the step size"),
            _d0(),
            _growth_rate(),
            _fsdp(),
        ),
        paper="Defazio & Mishchenko (2023), ICML, arXiv:2301.07733",
    )

    def __init__(
        self,
        params,
        lr=1.0,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0,
        log_every=0,
        decouple=False,
        use_bias_correction=False,
        d0=1e-6,
        growth_rate=float("inf"),
        fsdp_in_use=False,
        **options,
    ) -> None:
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, d=d0, d0=d0, k=0,
            layer_scale=1.0, numerator_weighted=0.0, log_every=log_every,
            growth_rate=growth_rate, use_bias_correction=use_bias_correction,
            decouple=decouple, fsdp_in_use=fsdp_in_use,
        )  # fmt: skip
        check_constructor_lr(lr)
        super().__init__(params, defaults, **options)

    def fresh_scalar(self, group: dict[str, Any], name: str, hp: HP) -> Tensor:
        return hp["d0"].clone() if name == "d" else torch.zeros_like(hp["lr"])

    def make_transform(self, group: dict[str, Any]) -> Transform:
        return _state_init(("s", "exp_avg", "exp_avg_sq"))

    def update_all(self, work: list[GroupStep]) -> None:
        groups, hps = self.param_groups, self.all_hyperparameters()
        g0, hp0 = groups[0], hps[0]
        beta1, beta2 = hp0["beta1"], hp0["beta2"]
        k, d = self.scalar(g0, "k"), self.scalar(g0, "d")
        lr = lr_max(hps, groups)
        if g0["use_bias_correction"]:
            bias = (1 - beta2 ** (k + 1)) ** 0.5 / (1 - beta1 ** (k + 1))
            dlr = d * lr * bias
        else:
            dlr = d * lr
        decouple = g0["decouple"]
        sqrt_beta2 = beta2**0.5
        numerator_acum = torch.zeros_like(d)
        sk_l1 = torch.zeros_like(d)
        for w in work:
            hp, group = w.hp, w.group
            decay_on, eps = nonzero(group["weight_decay"]), hp["eps"]
            r = self.scalar(group, "layer_scale", 1.0)
            pos = positive_lr(group, hp)
            grads = []
            for p, g, st in zip(w.params, w.grads, w.states, strict=True):
                if decay_on and not decouple:
                    g = g.addcmul(p, bc(hp["weight_decay"], p))
                grads.append(g)
                s, m, v = st["s"], st["exp_avg"], st["exp_avg_sq"]
                denom = v.sqrt().add_(bc(eps, p))
                numerator_acum = numerator_acum + only(pos, r * dlr * member_dot(g, s.div(denom)))
                decay_add_(m, bc(beta1, g), g, bc(r * dlr * (1 - beta1), g), pos)
                decay_add_(v, bc(beta2, g), g.mul(bc(1 - beta2, g)), g, pos)
                decay_add_(s, bc(sqrt_beta2, g), g, bc(dlr * (1 - sqrt_beta2), g), pos)
                sk_l1 = sk_l1 + only(pos, r * flat(s).abs().sum(1).to(f64))
            w.grads = grads
        numerator_weighted = (
            sqrt_beta2 * self.scalar(g0, "numerator_weighted") + (1 - sqrt_beta2) * numerator_acum
        )
        live = sk_l1 != 0  # the reference returns before any update when sum ||s||_1 = 0
        d_hat = numerator_weighted / ((1 - sqrt_beta2) * sk_l1)
        d_new = torch.maximum(d, torch.minimum(d_hat, d * hp0["growth_rate"]))
        d_new = torch.where(live & (lr > 0), d_new, d)
        log_estimates("DAdaptAdam", self.scalar(groups[-1], "k"), g0["log_every"],
                      lr=lr, dlr=dlr, d_hat=d_hat, d=d_new, sk_l1=sk_l1,
                      numerator_weighted=numerator_weighted)  # fmt: skip
        on = live.to(f64)
        for group in groups:
            self.set_scalar(group, "numerator_weighted",
                            torch.where(live, numerator_weighted,
                                        self.scalar(group, "numerator_weighted")))  # fmt: skip
            self.set_scalar(group, "d", torch.where(live, d_new, self.scalar(group, "d")))
        for w in work:
            hp, group = w.hp, w.group
            decoupled_decay = nonzero(group["weight_decay"]) and decouple
            for p, st in zip(w.params, w.states, strict=True):
                st["step"].add_(on.to(st["step"]))
                denom = st["exp_avg_sq"].sqrt().add_(bc(hp["eps"], p))
                if decoupled_decay:
                    p.addcmul_(p, bc(-hp["weight_decay"] * dlr * on, p))
                p.add_(st["exp_avg"].mul(bc(-on, p)).div_(denom))
        for group in groups:
            self.set_scalar(group, "k", self.scalar(group, "k") + on)


# ---------------------------------------------------------------------- DAdaptSGD
class DAdaptSGD(GroupScalarsOptimizer):
    r"""SGD with a D-Adapted step size, in dual-averaging form (``dadaptation.DAdaptSGD``'s
    arguments, defaults and update; every number may be [K]).

    With :math:`\gamma_k = d_k\,lr / \|g_0\|` (:math:`\|g_0\|` the first gradient's norm) and
    :math:`c = 1 - \text{momentum}`, for every parameter (gradient g + wd p):

    .. math::
        N_{k+1} = N_k + \gamma_k \textstyle\sum\langle g, s\rangle, \quad
        s \leftarrow s + \gamma_k g, \quad
        d_{k+1} = \max\big(d_k, \min(2 N_{k+1} / \sqrt{\textstyle\sum\|s\|^2},
            d_k\,\text{growth\_rate})\big), \\
        z = x_0 - s, \quad p \leftarrow (1 - c)\,p + c\,z

    As the reference: lr is the largest group's (the others must have it or 0), momentum,
    weight decay, ``growth_rate`` and the estimates are group 0's, and a step with
    :math:`\sum\|s\|^2 = 0` changes no parameter (per member here). Estimates: group keys
    ``d``, ``numerator_weighted``, ``g0_norm``, ``k`` ([K]). ``g0_norm`` is a reduction over
    the gradients at every step here (kept only where k = 0), not only at the first.
    """

    scalars = ("d", "k", "numerator_weighted", "g0_norm")
    spec = OptimizerSpec(
        name="dadapt_sgd",
        summary="SGD whose step size is estimated on the fly (D-Adaptation)",
        reference="dadaptation.DAdaptSGD",
        package="dadaptation",
        family="learning-rate-free",
        hyperparameters=(
            _lr_free(),
            Hyperparameter(
                "momentum",
                0.0,
                "momentum factor",
                low=0.0,
                high=1.0,
                high_open=True,
                tune=(0.0, 0.99),
                test=(0.0, 0.95),
            ),
            weight_decay(0.0, "L2 penalty (coupled: g + wd p)"),
            _log_every(),
            _d0(),
            _growth_rate(),
            _fsdp(),
        ),
        paper="Defazio & Mishchenko (2023), ICML, arXiv:2301.07733",
    )

    def __init__(
        self,
        params,
        lr=1.0,
        momentum=0.0,
        weight_decay=0,
        log_every=0,
        d0=1e-6,
        growth_rate=float("inf"),
        fsdp_in_use=False,
        **options,
    ) -> None:
        defaults = dict(
            lr=lr, momentum=momentum, weight_decay=weight_decay, k=0, log_every=log_every,
            numerator_weighted=0.0, d=d0, d0=d0, growth_rate=growth_rate,
            fsdp_in_use=fsdp_in_use,
        )  # fmt: skip
        check_constructor_lr(lr)
        super().__init__(params, defaults, **options)

    def fresh_scalar(self, group: dict[str, Any], name: str, hp: HP) -> Tensor:
        return hp["d0"].clone() if name == "d" else torch.zeros_like(hp["lr"])

    def make_transform(self, group: dict[str, Any]) -> Transform:
        return _state_init(("s",), clones=("z", "x0"))

    def update_all(self, work: list[GroupStep]) -> None:
        groups, hps = self.param_groups, self.all_hyperparameters()
        g0, hp0 = groups[0], hps[0]
        lr = lr_max(hps, groups)
        decay_on, decay = nonzero(g0["weight_decay"]), hp0["weight_decay"]
        ck = 1 - hp0["momentum"]
        k = self.scalar(g0, "k")
        d = self.scalar(g0, "d")
        # k = 0: ||g_0|| over the raw gradients (the reference's weight decay there is not
        # in place, so it has no effect), of the groups whose lr is > 0
        g_sq = torch.zeros_like(d)
        for w in work:
            pos = positive_lr(w.group, w.hp)
            for g in w.grads:
                g_sq = g_sq + only(pos, member_sq_norm(g).to(f64))
        g0_norm = torch.where(k == 0, g_sq.sqrt(), self.scalar(g0, "g0_norm"))
        dlr = d * lr / g0_norm
        numerator_weighted = self.scalar(g0, "numerator_weighted")
        sk_sq = torch.zeros_like(d)
        for w in work:
            pos = positive_lr(w.group, w.hp)
            for p, g, st in zip(w.params, w.grads, w.states, strict=True):
                if decay_on:
                    g = torch.addcmul(g, p, bc(decay, p), out=self.work_buffer(p))
                s = st["s"]
                numerator_weighted = numerator_weighted + only(pos, dlr * fast_dot(g, s).to(f64))
                decay_add_(s, None, g, bc(dlr, g), pos)
                sk_sq = sk_sq + only(pos, member_sq_norm(s).to(f64))
        d_hat = 2 * numerator_weighted / sk_sq.sqrt()
        d_new = torch.maximum(d, torch.minimum(d_hat, d * hp0["growth_rate"]))
        live = sk_sq != 0  # the reference returns before any update when sum ||s||^2 = 0
        d_new = torch.where(live & (lr > 0), d_new, d)
        log_estimates("DAdaptSGD", k, g0["log_every"], dlr=dlr, d_hat=d_hat, d=d_new,
                      sk_norm=sk_sq.sqrt(), numerator_weighted=numerator_weighted,
                      g0_norm=g0_norm)  # fmt: skip
        on = live.to(f64)
        for group in groups:
            for name, new in (("numerator_weighted", numerator_weighted), ("d", d_new),
                              ("g0_norm", g0_norm)):  # fmt: skip
                old = self.scalar(group, name) if name in group else new
                self.set_scalar(group, name, torch.where(live, new, old))
        for w in work:
            for p, st in zip(w.params, w.states, strict=True):
                st["step"].add_(on.to(st["step"]))
                z = st["z"]
                x0_s = torch.sub(st["x0"], st["s"], out=self.work_buffer(p))
                torch.where(member_view(live, z), x0_s, z, out=z)
                # p (1 - c) + c z as one lerp (weight 0 where the member is not live)
                lerp_(p, z, ck * on)
        for group in groups:
            self.set_scalar(group, "k", torch.where(live, k + 1, self.scalar(group, "k")))
