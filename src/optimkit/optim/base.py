"""`PopulationOptimizer`: a torch.optim.Optimizer facade over the functional transforms.

Used like any torch optimizer. With plain parameters and float hyperparameters it is a drop-in
replacement for its torch.optim namesake. Give any hyperparameter as a [K] tensor (or pass
``members=K``) and every parameter's dim 0 becomes the member axis: member k then does exactly
what torch.optim does with hyperparameters hp[k]. A plain model is the K = 1 case: its
parameters are viewed as [1, ...] so the same code path runs.

Options shared by every optimizer (each may be a float or a [K] tensor where it is a number):
``clip_grad_norm`` (per-member global norm), ``clip_grad_value``, ``normalize_grad``
(g / ||g||), ``l1`` (a proximal soft-threshold step lr * l1 after the update, per group) and
``skip_nonfinite`` (members whose gradient holds NaN/inf keep their parameters and state,
bit for bit, while the others update as usual), and ``compile`` (run each group's update
through ``torch.compile``, which fuses the whole step into one pass over memory;
hyperparameters are passed as tensors so schedules do not trigger recompilation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from optimkit.optim import clipping
from optimkit.optim.hyper import (
    Hyper,
    as_hyper,
    is_zero,
    member_view,
    members_of,
    nonneg,
    unit_interval,
)
from optimkit.optim.transforms import Transform, apply_updates, init_state

Check = tuple[Callable[[Tensor], Tensor] | None, str]


class PopulationOptimizer(torch.optim.Optimizer):
    """Base class: subclasses set `hyper_checks` and implement `make_transform(group)`."""

    hyper_checks: ClassVar[Mapping[str, Check]] = {}
    has_betas: ClassVar[bool] = False

    def __init__(
        self,
        params: Iterable[Any],
        defaults: dict[str, Any],
        *,
        members: int | None = None,
        clip_grad_norm: Hyper | None = None,
        clip_grad_value: Hyper | None = None,
        normalize_grad: bool = False,
        l1: Hyper = 0.0,
        skip_nonfinite: bool = False,
        compile: bool = False,
    ) -> None:
        if members is not None and (isinstance(members, bool) or not isinstance(members, int)
                                    or members < 1):  # fmt: skip
            raise ValueError(f"members: expected a positive int, got {members!r}")
        self.members = members
        self.clip_grad_norm = (
            None
            if clip_grad_norm is None
            else self._option(
                "clip_grad_norm", clip_grad_norm, lambda t: t > 0, "clip_grad_norm > 0"
            )
        )
        self.clip_grad_value = None if clip_grad_value is None else self._option(
            "clip_grad_value", clip_grad_value, lambda t: t > 0, "clip_grad_value > 0")  # fmt: skip
        self.normalize_grad = bool(normalize_grad)
        self.skip_nonfinite = bool(skip_nonfinite)
        self.compile = bool(compile)
        self._compiled: dict[Any, Callable[..., Any]] = {}
        self._hp_cache: dict[tuple, tuple[Any, Tensor]] = {}
        super().__init__(params, {**defaults, "l1": l1})
        self._check_members()

    # ----------------------------------------------------------------------------- validation
    def _option(self, name: str, value: Any, check, expected: str) -> Hyper:
        v = as_hyper(name, value, check, expected)
        self._note_members(name, v)
        return v

    def _note_members(self, name: str, value: Hyper) -> None:
        k = members_of(value)
        if k is None:
            return
        if self.members is not None and k != self.members:
            raise ValueError(
                f"{name}: expected a tensor of shape [{self.members}] (one value per member), "
                f"got shape [{k}]"
            )
        self.members = k

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        for i, p in enumerate(group["params"]):
            if not (p.is_floating_point() or p.is_complex()) or p.is_complex():
                raise ValueError(
                    f"params: expected real floating-point tensors, parameter {i} is {p.dtype}"
                )
        device = group["params"][0].device if group["params"] else None
        checks = {**self.hyper_checks, "l1": (nonneg, "l1 >= 0")}
        for name, (check, expected) in checks.items():
            group[name] = as_hyper(name, group[name], check, expected, device)
            self._note_members(name, group[name])
        if self.has_betas:
            betas = group["betas"]
            if not isinstance(betas, tuple | list) or len(betas) != 2:
                raise ValueError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
            group["betas"] = tuple(
                as_hyper(f"betas[{i}]", b, unit_interval, "a value in [0, 1)", device)
                for i, b in enumerate(betas)
            )
            for i, b in enumerate(group["betas"]):
                self._note_members(f"betas[{i}]", b)
        if hasattr(self, "_initialized"):
            self._check_members()

    def _check_members(self) -> None:
        self._initialized = True
        if self.members is None:
            return
        for group in self.param_groups:
            for i, p in enumerate(group["params"]):
                if p.dim() == 0 or p.shape[0] != self.members:
                    raise ValueError(
                        f"params: with K = {self.members} members every parameter needs dim 0 "
                        f"of size {self.members}; parameter {i} has shape {list(p.shape)}"
                    )

    # ---------------------------------------------------------------------------- the step
    def make_transform(self, group: dict[str, Any]) -> Transform:
        raise NotImplementedError  # each optimizer defines its chain

    def hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        """The hp mapping the transforms read for one group."""
        return {k: group[k] for k in (*self.hyper_checks, "betas", "l1") if k in group}

    def lift(self, params: list[Tensor], grads: list[Tensor], states: list[dict[str, Tensor]]):
        """The member view [K, ...] of a group's tensors: a plain model's (``members`` unset)
        get a leading axis of size 1; the step counter is [K] already."""
        if self.members is not None:
            return params, grads, states
        return (
            [p.unsqueeze(0) for p in params],
            [g.unsqueeze(0) for g in grads],
            [{n: v if n == "step" else v.unsqueeze(0) for n, v in s.items()} for s in states],
        )

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient; returns closure() if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        k = self.members or 1
        work = []  # (group, hp, transform, params, grads, states), as stored
        for group in self.param_groups:
            hp = self.hyperparameters(group)
            transform = self.make_transform(group)
            params, grads, states = [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise ValueError("params: sparse gradients are not supported")
                if not self.state[p]:
                    self.state[p] = init_state(transform, p, hp, k)
                params.append(p)
                grads.append(p.grad)
                states.append(self.state[p])
            if params:
                work.append((group, hp, transform, params, grads, states))
        if not work:
            return loss
        # Lifting a plain model's tensors to [1, ...] costs a few us per tensor: done here only
        # when an option reduces per member, else by the update path that needs it.
        lifted = self.members is not None
        if not lifted and (self.skip_nonfinite or self.normalize_grad
                           or self.clip_grad_norm is not None
                           or self.clip_grad_value is not None):  # fmt: skip
            work = [(g, hp, t, *self.lift(*w)) for g, hp, t, *w in work]
            lifted = True

        all_grads = [g for w in work for g in w[4]]
        ok = clipping.finite_members(all_grads) if self.skip_nonfinite else None
        if ok is not None:
            all_grads = [torch.where(member_view(ok, g), g, 0.0) for g in all_grads]
            saved = [
                t.clone() for w in work for t in (*w[3], *(v for s in w[5] for v in s.values()))
            ]
        if self.normalize_grad:
            all_grads = clipping.normalize(all_grads)
        if self.clip_grad_norm is not None:
            all_grads = clipping.clip_by_global_norm(all_grads, self.clip_grad_norm)
        if self.clip_grad_value is not None:
            all_grads = clipping.clip_by_value(all_grads, self.clip_grad_value)

        offset = 0
        for index, (group, hp, transform, params, _, states) in enumerate(work):
            grads = all_grads[offset : offset + len(params)]
            offset += len(params)
            self.update_group(index, group, hp, transform, params, grads, states, lifted)

        if ok is not None:
            live = [t for w in work for t in (*w[3], *(v for s in w[5] for v in s.values()))]
            for t, old in zip(live, saved, strict=True):
                t.copy_(torch.where(member_view(ok, t), t, old))
        return loss

    def hp_tensors(self, index: int, hp: dict[str, Any], device: torch.device) -> dict[str, Any]:
        """`hp` for compiled code: non-zero floats (and pairs of them) as float64 0-d tensors,
        so that compiled code is not specialized on their values (a zero stays a float: it
        removes a term from the graph). One tensor per group and name, refilled in place when
        the value changes."""
        out: dict[str, Any] = {}
        for name, value in hp.items():
            if isinstance(value, tuple):
                out[name] = tuple(
                    self._hp_tensor((index, name, i), v, device) for i, v in enumerate(value)
                )
            else:
                out[name] = self._hp_tensor((index, name), value, device)
        return out

    def _hp_tensor(self, key: tuple, value: Any, device: torch.device) -> Any:
        if isinstance(value, Tensor) or is_zero(value):
            return value
        cached = self._hp_cache.get(key)
        if cached is None or cached[1].device != device:
            cached = (value, torch.tensor(float(value), dtype=torch.float64, device=device))
            self._hp_cache[key] = cached
        elif cached[0] != value:
            cached[1].fill_(float(value))
            self._hp_cache[key] = (value, cached[1])
        return cached[1]

    def update_group(
        self,
        index: int,
        group: dict[str, Any],
        hp: dict[str, Any],
        transform: Transform,
        params: list[Tensor],
        grads: list[Tensor],
        states: list[dict[str, Tensor]],
        lifted: bool,
    ) -> None:
        """Update one group's parameters and states in place, through the transform chain
        (compiled when ``compile=True``); `lifted` says whether the tensors are in their member
        view yet (see `lift`). A subclass may override this with a faster path that gives the
        same result, falling back to ``super().update_group``."""
        if not lifted:
            params, grads, states = self.lift(params, grads, states)
        if self.compile:
            update = self._compiled.get(index)
            if update is None:
                update = self._compiled[index] = torch.compile(
                    _update_group, fullgraph=True, dynamic=False
                )
            update(transform, params, grads, states, self.hp_tensors(index, hp, params[0].device))
        else:
            _update_group(transform, params, grads, states, hp)


def _update_group(transform: Transform, params, grads, states, hp) -> None:
    apply_updates(transform, params, grads, states, hp)
    prox_l1_group_(params, hp)


def prox_l1_group_(params: list[Tensor], hp: dict[str, Any]) -> None:
    """The ``l1`` option: p <- prox of lr * l1 * ||p||_1 after the update (nothing when 0)."""
    l1 = hp.get("l1", 0.0)  # absent from a group loaded from torch.optim's state_dict
    if not is_zero(l1):
        for p in params:
            clipping.prox_l1_(p, hp["lr"] * l1)
