"""`PopulationOptimizer`: a torch.optim.Optimizer facade over the functional transforms.

Used like any torch optimizer. With plain parameters and float hyperparameters it is a drop-in
replacement for its torch.optim namesake (same arguments, defaults, state layout and
state_dict). Give any hyperparameter as a [K] tensor (or pass ``members=K``) and every
parameter's dim 0 becomes the member axis (`optimkit.optim.members.MemberAxis`): member k then
does exactly what the reference does with hyperparameters hp[k].

Each class declares itself once in its ``spec`` (`optimkit.optim.spec.OptimizerSpec`): the
constructor's values are validated against it, and the transforms see every numeric
hyperparameter as a float64 [K] tensor under its flat name (``lr``, ``beta1``, ...).

Options shared by every optimizer (each may be a float or a [K] tensor where it is a number):
``clip_grad_norm`` (per-member global norm), ``clip_grad_value``, ``normalize_grad``
(g / ||g||), ``l1`` (a proximal soft-threshold step lr * l1 after the update, per group),
``skip_nonfinite`` (members whose gradient holds NaN/inf keep their parameters and state,
bit for bit, while the others update as usual) and ``compile`` (run each group's update
through ``torch.compile``: one fused pass over memory; hyperparameters are tensors, so
schedules do not trigger recompilation). torch's ``foreach``, ``fused`` and ``capturable``
are accepted as implementation hints; ``differentiable=True`` is refused (steps run under
``torch.no_grad``).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from optimkit.optim import clipping
from optimkit.optim.members import MemberAxis, member_view
from optimkit.optim.spec import Hyperparameter, OptimizerSpec
from optimkit.optim.transforms import HP, State, Transform, apply_updates

#: the options every PopulationOptimizer takes besides its own hyperparameters
OPTIONS = ("members", "clip_grad_norm", "clip_grad_value", "normalize_grad", "l1",
           "skip_nonfinite", "compile")  # fmt: skip

#: torch.optim's implementation hints, accepted by every constructor
TORCH_HINTS = ("foreach", "fused", "capturable", "differentiable")

_L1 = Hyperparameter("l1", 0.0, "L1 strength (proximal step after the update)", low=0.0)
_CLIP_NORM = Hyperparameter("clip_grad_norm", None, "per-member gradient norm clip", low=0.0,
                            low_open=True, nullable=True)  # fmt: skip
_CLIP_VALUE = Hyperparameter("clip_grad_value", None, "per-member gradient value clip",
                             low=0.0, low_open=True, nullable=True)  # fmt: skip
#: the per-member options every population optimizer takes besides its own hyperparameters
SHARED_HYPERPARAMETERS = (_CLIP_NORM, _CLIP_VALUE, _L1)


def check_torch_hints(foreach: Any, fused: Any, capturable: Any, differentiable: Any) -> None:
    """torch.optim's implementation hints: accepted (optimkit picks its own kernels), except
    ``differentiable=True``."""
    for name, value in (("foreach", foreach), ("fused", fused)):
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"{name}: expected None, True or False, got {value!r}")
    if not isinstance(capturable, bool):
        raise ValueError(f"capturable: expected True or False, got {capturable!r}")
    if differentiable is not False:
        raise ValueError(
            "differentiable=True is not supported: optimkit steps run under torch.no_grad "
            "(use torch.optim for gradients through step())"
        )


@dataclass
class GroupStep:
    """One param group's work in a step: its parameters, gradients and states in member
    view [K, ...], its [K] hyperparameters and its transform chain."""

    index: int
    group: dict[str, Any]
    hp: HP
    transform: Transform
    params: list[Tensor]
    grads: list[Tensor]
    states: list[State]
    stored: list[Tensor]  # the parameters as stored (a plain model: torch's layout)


class PopulationOptimizer(torch.optim.Optimizer):
    """Base class: subclasses set ``spec`` and implement `make_transform` (or override
    `update_group` for updates that are not a per-tensor chain)."""

    spec: ClassVar[OptimizerSpec]

    def __init__(
        self,
        params: Iterable[Any],
        defaults: dict[str, Any],
        *,
        members: int | None = None,
        clip_grad_norm: float | Tensor | None = None,
        clip_grad_value: float | Tensor | None = None,
        normalize_grad: bool = False,
        l1: float | Tensor = 0.0,
        skip_nonfinite: bool = False,
        compile: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
    ) -> None:
        check_torch_hints(foreach, fused, capturable, differentiable)
        self.axis: MemberAxis | None = None
        self.clip_grad_norm = _CLIP_NORM.check(clip_grad_norm)
        self.clip_grad_value = _CLIP_VALUE.check(clip_grad_value)
        self.normalize_grad = bool(normalize_grad)
        self.skip_nonfinite = bool(skip_nonfinite)
        self.compile = bool(compile)
        self._compiled: dict[Any, Callable[..., Any]] = {}
        self._hp_cache: dict[tuple[int, str], tuple[float, Tensor]] = {}
        hints = dict(foreach=foreach, fused=fused, capturable=capturable,
                     differentiable=differentiable)  # fmt: skip
        super().__init__(params, {**defaults, **hints, "l1": l1})
        lengths = {}
        for name, value in (("clip_grad_norm", self.clip_grad_norm),
                            ("clip_grad_value", self.clip_grad_value)):  # fmt: skip
            if isinstance(value, Tensor):
                lengths[name] = value.shape[0]
        for group in self.param_groups:
            lengths.update(_member_lengths(group, self._declared()))
        self.axis = MemberAxis.decide(members, lengths)
        for group in self.param_groups:
            self._check_group_axis(group)

    # ----------------------------------------------------------------------------- validation
    @classmethod
    def _declared(cls) -> tuple[Hyperparameter, ...]:
        return (*cls.spec.hyperparameters, _L1)

    @property
    def members(self) -> int | None:
        """K for a population, None for a plain model."""
        return self.axis.k if self.axis is not None and self.axis.stacked else None

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        for i, p in enumerate(group["params"]):
            if p.is_complex():
                raise RuntimeError(
                    f"{type(self).__name__} does not support complex parameters (parameter {i})"
                )
            if not p.is_floating_point():
                raise ValueError(
                    f"params: expected real floating-point tensors, parameter {i} is {p.dtype}"
                )
        device = group["params"][0].device if group["params"] else None
        for h in self._declared():
            if h.arg not in group:
                continue
            if h.index is None:
                group[h.arg] = _on(h.check(group[h.arg]), device)
            else:
                value = group[h.arg]
                parts = [h2 for h2 in self._declared() if h2.arg == h.arg]
                if not isinstance(value, tuple | list) or len(value) != len(parts):
                    raise ValueError(
                        f"{h.arg}: expected a tuple of {len(parts)} values "
                        f"({', '.join(x.name for x in parts)}), got {value!r}"
                    )
                items = list(value)
                items[h.index] = _on(h.check(items[h.index]), device)
                group[h.arg] = tuple(items)
        if self.axis is not None:  # a group added after construction
            self._check_group_axis(group)

    def _check_group_axis(self, group: dict[str, Any]) -> None:
        assert self.axis is not None
        for name, n in _member_lengths(group, self._declared()).items():
            if not self.axis.stacked or n != self.axis.k:
                want = f"[{self.axis.k}]" if self.axis.stacked else "a number (a plain model)"
                raise ValueError(f"{name}: expected {want}, got a tensor of shape [{n}]")
        for i, p in enumerate(group["params"]):
            self.axis.check_param(f"params[{i}]", p)

    # ------------------------------------------------------------------ hyperparameters, state
    def hyperparameters(self, group: dict[str, Any], index: int = -1) -> HP:
        """The group's numeric hyperparameters as the core sees them: flat name -> float64 [K]
        tensor on the parameters' device (numbers cached per group and refilled when a
        schedule changes them; None-valued settings are left out)."""
        assert self.axis is not None
        device = group["params"][0].device if group["params"] else None
        hp: dict[str, Tensor] = {}
        for h in self._declared():
            if not h.member or h.arg not in group:
                continue
            value = group[h.arg] if h.index is None else group[h.arg][h.index]
            if value is None:
                continue
            if isinstance(value, Tensor):
                hp[h.name] = self.axis.hyper(value, device)
                continue
            key = (index, h.name)
            cached = self._hp_cache.get(key) if index >= 0 else None
            if cached is None or cached[1].device != device:
                cached = (value, self.axis.hyper(value, device))
                if index >= 0:
                    self._hp_cache[key] = cached
            elif cached[0] != value:
                cached[1].fill_(float(value))
                self._hp_cache[key] = (value, cached[1])
            hp[h.name] = cached[1]
        return hp

    def make_transform(self, group: dict[str, Any]) -> Transform:
        """The group's transform chain, built from its settings (terms a user switched off
        with the number 0 are left out, as torch.optim does)."""
        raise NotImplementedError

    def init_state(self, group: dict[str, Any], p: Tensor, hp: HP | None = None) -> State:
        """A fresh state for parameter p in its stored layout: ``step`` (0-d like torch for a
        plain model, [K] float64 for a population) plus the transform's buffers."""
        assert self.axis is not None
        hp = self.hyperparameters(group) if hp is None else hp
        state = {"step": self.axis.step_counter(p.device)}
        fresh = self.make_transform(group).init(self.axis.view(p), hp)
        state.update({n: self.axis.stored(v) for n, v in fresh.items()})
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Also loads torch.optim's state_dicts of the same optimizer (and theirs load ours):
        our own options take their defaults where the saved groups lack them, and a state
        saved without a step counter (torch.optim.SGD keeps none) has taken a step."""
        super().load_state_dict(state_dict)
        self._hp_cache.clear()
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, value)
            self._check_group_axis(group)
        assert self.axis is not None
        for p, state in self.state.items():
            if state and "step" not in state:
                state["step"] = self.axis.step_counter(p.device).add_(1)

    # --------------------------------------------------------------------------- member slots
    def reset_members(self, mask: Tensor) -> None:
        """Fresh optimizer state for the members where `mask` ([K] bool) is True; the other
        members' state is untouched."""
        assert self.axis is not None
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p)
                if not state:
                    continue
                fresh = self.init_state(group, p)
                for name, value in state.items():
                    v, f = self.axis.view(value), self.axis.view(fresh[name]).to(value)
                    v.copy_(torch.where(member_view(mask.to(v.device), v), f, v))

    def copy_member(self, src: int, dst: int) -> None:
        """Member `dst` takes member `src`'s optimizer state and hyperparameters."""
        assert self.axis is not None
        for group in self.param_groups:
            for p in group["params"]:
                for value in self.state.get(p, {}).values():
                    v = self.axis.view(value)
                    v[dst] = v[src]
            for h in self._declared():
                if h.member and h.arg in group:
                    value = group[h.arg] if h.index is None else group[h.arg][h.index]
                    if isinstance(value, Tensor):
                        value[dst] = value[src]
        for name in ("clip_grad_norm", "clip_grad_value"):
            value = getattr(self, name)
            if isinstance(value, Tensor):
                value[dst] = value[src]

    def set_member(self, k: int, values: Mapping[str, float]) -> None:
        """Member k's numeric hyperparameters (flat names, e.g. ``lr``, ``beta1``, and the
        clipping options); a value shared by all members becomes a [K] tensor."""
        assert self.axis is not None
        for name, v in values.items():
            if name in ("clip_grad_norm", "clip_grad_value"):
                current = getattr(self, name)
                if current is None:
                    raise ValueError(f"{name}: the optimizer was built without it")
                t = self.axis.hyper(current, None).clone()
                t[k] = float(v)
                setattr(self, name, t)
                continue
            h = next((x for x in self._declared() if x.name == name and x.member), None)
            if h is None:
                raise ValueError(f"{name}: not a per-member hyperparameter of {self.spec.name}")
            h.check(float(v))
            for group in self.param_groups:
                if h.arg not in group:
                    continue
                current = group[h.arg] if h.index is None else group[h.arg][h.index]
                t = self.axis.hyper(current, group["params"][0].device).clone()
                t[k] = float(v)
                if h.index is None:
                    group[h.arg] = t
                else:
                    items = list(group[h.arg])
                    items[h.index] = t
                    group[h.arg] = tuple(items)

    # ---------------------------------------------------------------------------- the step
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient; returns closure() if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        axis = self.axis
        assert axis is not None
        work: list[GroupStep] = []
        for index, group in enumerate(self.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if p.grad.is_sparse:
                    raise RuntimeError(
                        f"{type(self).__name__} does not support sparse gradients "
                        "(use optimkit.optim.SparseAdam)"
                    )
            hp = self.hyperparameters(group, index)
            transform = self.make_transform(group)
            states = []
            for p in params:
                if not self.state[p]:
                    self.state[p] = self.init_state(group, p, hp)
                states.append({n: axis.view(v) for n, v in self.state[p].items()})
            work.append(GroupStep(
                index, group, hp, transform, [axis.view(p) for p in params],
                [axis.view(p.grad) for p in params], states, params,
            ))  # fmt: skip
        if not work:
            return loss

        all_grads = [g for w in work for g in w.grads]
        ok = clipping.finite_members(all_grads) if self.skip_nonfinite else None
        if ok is not None:
            all_grads = [torch.where(member_view(ok, g), g, 0.0) for g in all_grads]
            saved = [t.clone() for t in _tensors(work)]
        if self.normalize_grad:
            all_grads = clipping.normalize(all_grads)
        if self.clip_grad_norm is not None:
            all_grads = clipping.clip_by_global_norm(all_grads, self._option(self.clip_grad_norm))
        if self.clip_grad_value is not None:
            all_grads = clipping.clip_by_value(all_grads, self._option(self.clip_grad_value))
        offset = 0
        for w in work:
            w.grads = all_grads[offset : offset + len(w.params)]
            offset += len(w.params)
            self.update_group(w)
        if ok is not None:
            for t, old in zip(_tensors(work), saved, strict=True):
                t.copy_(torch.where(member_view(ok, t), t, old))
        return loss

    def _option(self, value: float | Tensor) -> Tensor:
        assert self.axis is not None
        device = self.param_groups[0]["params"][0].device
        return self.axis.hyper(value, device)

    def update_group(self, w: GroupStep) -> None:
        """Update one group's parameters and states in place, through its transform chain
        (compiled when ``compile=True``), then the ``l1`` proximal step. A subclass may
        override this with a faster path that gives the same result."""
        if self.compile:
            update = self._compiled.get(w.index)
            if update is None:
                update = self._compiled[w.index] = compiled(apply_updates)
            update(w.transform, w.params, w.grads, w.states, w.hp)
        else:
            apply_updates(w.transform, w.params, w.grads, w.states, w.hp)
        prox_l1_group_(w)


def compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.compile(fn, fullgraph=True)`` on a private copy of `fn`'s code: dynamo caches
    compiled graphs per code object, with at most ``recompile_limit`` (8) variants, so every
    optimizer (and param group) compiles its own copy instead of piling its variant onto a
    shared one (a process building many optimizers, such as a tuner, would hit the limit)."""
    fresh = types.FunctionType(
        fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__
    )
    fresh.__kwdefaults__ = fn.__kwdefaults__
    return torch.compile(fresh, fullgraph=True, dynamic=False)


def prox_l1_group_(w: GroupStep) -> None:
    """The ``l1`` option: p <- prox of lr * l1 * ||p||_1 after the update (nothing when the
    user's l1 is the number 0)."""
    l1 = w.group.get("l1", 0.0)
    if isinstance(l1, Tensor) or l1 != 0:
        for p in w.params:
            clipping.prox_l1_(p, w.hp["lr"] * w.hp["l1"])


def _member_lengths(group: dict[str, Any], declared: Iterable[Hyperparameter]) -> dict[str, int]:
    """name -> K of each [K] hyperparameter in a group."""
    out = {}
    for h in declared:
        if h.member and h.arg in group:
            value = group[h.arg] if h.index is None else group[h.arg][h.index]
            if isinstance(value, Tensor):
                out[h.name] = value.shape[0]
    return out


def _on(value: Any, device: torch.device | None) -> Any:
    return value.to(device) if isinstance(value, Tensor) and device is not None else value


def _tensors(work: list[GroupStep]) -> list[Tensor]:
    return [t for w in work for t in (*w.params, *(v for s in w.states for v in s.values()))]
