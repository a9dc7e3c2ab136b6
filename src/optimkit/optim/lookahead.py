"""Lookahead: k fast steps of any optimizer, then a step of the slow weights toward them
(Zhang et al., 2019, "Lookahead Optimizer: k steps forward, 1 step back",
arXiv:1907.08610), as pytorch_optimizer.Lookahead."""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from optimkit.optim import clipping
from optimkit.optim.members import bc, member_view
from optimkit.optim.spec import Hyperparameter, OptimizerSpec, lr

_K = Hyperparameter("k", 5, "inner steps between slow-weight updates", kind="int", low=1)
_ALPHA = Hyperparameter(
    "alpha",
    0.5,
    "step of the slow weights toward the fast ones",
    low=0.0,
    high=1.0,
    high_open=True,
    tune=(0.3, 0.9),
)
_PULLBACK = Hyperparameter(
    "pullback_momentum",
    "none",
    "what the inner momentum_buffer does at a slow step",
    kind="choice",
    choices=("none", "reset", "pullback"),
)


class Lookahead(torch.optim.Optimizer):
    r"""Lookahead around an inner optimizer (pytorch_optimizer.Lookahead's arguments).

    Every ``k`` inner steps, per parameter (``alpha`` per member: a float or a [K] tensor):

    .. math::
        \phi \leftarrow \phi + \alpha (\theta - \phi), \qquad \theta \leftarrow \phi

    (the reference's ``lerp(theta, phi, 1 - alpha)``). ``pullback_momentum``: ``"reset"``
    zeroes the inner ``momentum_buffer``; ``"pullback"`` interpolates it with its own slow copy
    alike. Defaults: k=5, alpha=0.5.

    Built three ways: ``Lookahead(optimizer)`` wraps an existing optimizer (optimkit's or
    torch's, as the reference); ``Lookahead(OptimizerClass, params=..., **kw)`` builds it (the
    reference's other form); ``Lookahead(params, inner="adam", lr=..., members=K, ...)``
    builds the optimkit optimizer named ``inner`` (any name of the database, default
    ``"adam"``) with the remaining keywords, which is how the registry, the CLI and the
    tuner build it from its spec. ``param_groups`` are the inner optimizer's (so lr
    schedulers drive the inner lr), ``state_dict()`` is the reference's layout
    (``lookahead_state`` keyed by (group, index) with ``slow_params``, ``base_optimizer``)
    and loads the reference's. Member slots (reset_members, copy_member, set_member) act on
    the slow weights and pass on to the inner optimizer. With an inner ``skip_nonfinite``,
    a member whose gradient is not finite at a slow step skips that slow step too.
    As the reference, ``k``, ``alpha`` and ``pullback_momentum`` are per optimizer (a
    group's keys of those names are ignored) and parameters without a gradient are not
    moved. ``k`` is one int for all members.
    """

    spec = OptimizerSpec(
        name="lookahead",
        summary="k steps of an inner optimizer (Adam), then slow weights step toward them",
        reference="pytorch_optimizer.Lookahead",
        package="pytorch-optimizer",
        family="wrapper",
        hyperparameters=(
            lr(1e-3, tune=(1e-4, 1e-1)),
            _K,
            _ALPHA,
            _PULLBACK,
        ),
        paper="Zhang et al. (2019), arXiv:1907.08610",
    )

    def __init__(
        self,
        optimizer: Any,
        k: int = 5,
        alpha: float | Tensor = 0.5,
        pullback_momentum: str = "none",
        *,
        inner: str | type = "adam",
        **kwargs: Any,
    ) -> None:
        _K.check(k)
        alpha = _ALPHA.check(alpha)
        _PULLBACK.check(pullback_momentum)
        if isinstance(optimizer, torch.optim.Optimizer):
            if kwargs:
                raise ValueError(
                    f"{', '.join(kwargs)}: keywords for the inner optimizer need parameters, "
                    "not an optimizer that is already built"
                )
            base = optimizer
        elif isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
            if "params" not in kwargs:
                raise ValueError(
                    "need to pass `params` when you pass the `torch.optim.Optimizer` instance."
                )
            base = optimizer(kwargs.pop("params"), **kwargs)
        elif isinstance(inner, type):
            base = inner(optimizer, **kwargs)
        else:
            from optimkit.optim.registry import get_optimizer

            if isinstance(alpha, Tensor):  # a [K] alpha makes a population, as any [K] number
                kwargs.setdefault("members", alpha.shape[0])

            if inner.lower() == self.spec.name:
                raise ValueError("inner: Lookahead cannot wrap itself by name")
            base = get_optimizer(inner, optimizer, **kwargs)
        self.optimizer: torch.optim.Optimizer = base
        self._optimizer_step_pre_hooks: dict[int, Callable] = OrderedDict()
        self._optimizer_step_post_hooks: dict[int, Callable] = OrderedDict()
        self._patch_step_function()
        self.k = k
        self.pullback_momentum = pullback_momentum
        members = getattr(base, "members", None)
        if isinstance(alpha, Tensor) and alpha.shape[0] != members:
            want = f"[{members}]" if members else "a number (a plain model)"
            raise ValueError(f"alpha: expected {want}, got a tensor of shape [{alpha.shape[0]}]")
        self.alpha = alpha
        self.state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        for group in self.param_groups:
            self._init_group(group)
        self.defaults = {
            "lookahead_alpha": alpha,
            "lookahead_k": k,
            "lookahead_pullback_momentum": pullback_momentum,
            **self.optimizer.defaults,
        }

    # ------------------------------------------------------------------ the inner optimizer
    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self.optimizer.param_groups

    @property
    def members(self) -> int | None:
        """K for a population, None for a plain model (the inner optimizer's)."""
        return getattr(self.optimizer, "members", None)

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"Lookahead({self.optimizer!r}, k={self.k}, alpha={self.alpha})"

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def _init_group(self, group: dict[str, Any]) -> None:
        group.setdefault("counter", 0)
        for p in group.get("params", []):
            state = self.state[p]
            if "slow_params" not in state:
                state["slow_params"] = p.detach().clone()
                if self.pullback_momentum == "pullback":
                    state["slow_momentum"] = torch.zeros_like(p)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self.optimizer.add_param_group(param_group)
        self._init_group(self.param_groups[-1])

    # ---------------------------------------------------------------------------- the step
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One inner step; every k-th, the slow step. Returns the inner step's result."""
        loss = self.optimizer.step(closure)
        skip = getattr(self.optimizer, "skip_nonfinite", False)
        ok = self._finite_members() if skip else None  # the gradients the inner step saw
        for group in self.param_groups:
            group["counter"] += 1
            if group["counter"] >= self.k:
                group["counter"] = 0
                self._slow_step(group, ok)
        return loss

    def _finite_members(self) -> Tensor | None:
        grads = [
            self._view(p.grad) for g in self.param_groups for p in g["params"] if p.grad is not None
        ]
        return clipping.finite_members(grads) if grads else None

    def _view(self, t: Tensor) -> Tensor:
        return t if self.members is not None else t.unsqueeze(0)

    def _weight(self, like: Tensor) -> Any:
        """1 - alpha: a float for a plain model (the reference's scalar), else [K, 1, ...]."""
        if isinstance(self.alpha, Tensor):
            return bc(1.0 - self.alpha.to(like.device), like)
        return 1.0 - self.alpha

    @torch.no_grad()
    def _slow_step(self, group: dict[str, Any], ok: Tensor | None) -> None:
        inner = self.optimizer.state
        for p in group["params"]:
            if p.grad is None:
                continue
            slow = self.state[p]["slow_params"]
            pairs = [(p, slow)]
            if self.pullback_momentum == "pullback":
                if "momentum_buffer" not in inner[p]:
                    inner[p]["momentum_buffer"] = torch.zeros_like(p)
                pairs.append((inner[p]["momentum_buffer"], self.state[p]["slow_momentum"]))
            for fast, slow_t in pairs:
                v, s = self._view(fast), self._view(slow_t)
                if ok is None:
                    v.lerp_(s, self._weight(v))
                    s.copy_(v)
                else:
                    keep = member_view(ok.to(v.device), v)
                    v.copy_(torch.where(keep, v.lerp(s, self._weight(v)), v))
                    s.copy_(torch.where(keep, v, s))
            if self.pullback_momentum == "reset":
                buf = torch.zeros_like(p)
                if ok is not None and "momentum_buffer" in inner[p]:
                    old = self._view(inner[p]["momentum_buffer"])
                    buf = torch.where(member_view(ok.to(p.device), old), self._view(buf), old)
                    buf = buf if self.members is not None else buf.squeeze(0)
                inner[p]["momentum_buffer"] = buf

    # ----------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """The reference's layout: ``lookahead_state`` {(group, index): {slow_params, ...}}
        and ``base_optimizer`` (the inner optimizer's state_dict)."""
        lookahead_state = {
            (gi, pi): dict(self.state[p])
            for gi, group in enumerate(self.param_groups)
            for pi, p in enumerate(group["params"])
            if p in self.state
        }
        return {"lookahead_state": lookahead_state, "base_optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:  # type: ignore[override]
        """Loads our state_dicts and the reference's."""
        saved = state_dict["lookahead_state"]
        restored: dict[Tensor, dict[str, Any]] = {}
        for gi, group in enumerate(self.param_groups):
            for pi, p in enumerate(group["params"]):
                if (gi, pi) in saved:
                    restored[p] = dict(saved[(gi, pi)])
        count = sum(len(group["params"]) for group in self.param_groups)
        if len(restored) != len(saved) or len(restored) != count:
            raise ValueError("lookahead state does not match the current parameters")
        self.optimizer.load_state_dict(state_dict["base_optimizer"])
        for p, entry in restored.items():
            for key, value in entry.items():
                if isinstance(value, Tensor):
                    entry[key] = value.to(device=p.device, dtype=p.dtype).clone()
        self.state = defaultdict(dict, restored)

    # ------------------------------------------------------------------------ member slots
    def reset_members(self, mask: Tensor) -> None:
        """Members where `mask` is True start afresh: inner state reset, slow weights = the
        current weights."""
        self.optimizer.reset_members(mask)  # type: ignore[attr-defined]
        for group in self.param_groups:
            for p in group["params"]:
                for key, value in self.state[p].items():
                    v = self._view(value)
                    fresh = self._view(p.detach()) if key == "slow_params" else torch.zeros_like(v)
                    v.copy_(torch.where(member_view(mask.to(v.device), v), fresh, v))

    def copy_member(self, src: int, dst: int) -> None:
        """Member `dst` takes member `src`'s slow weights, alpha and inner state."""
        self.optimizer.copy_member(src, dst)  # type: ignore[attr-defined]
        for group in self.param_groups:
            for p in group["params"]:
                for value in self.state[p].values():
                    v = self._view(value)
                    v[dst] = v[src]
        if isinstance(self.alpha, Tensor):
            self.alpha[dst] = self.alpha[src]

    def set_member(self, k: int, values: Mapping[str, float]) -> None:
        """Member k's hyperparameters: ``alpha`` here, the others the inner optimizer's."""
        rest = {n: v for n, v in values.items() if n != "alpha"}
        if "alpha" in values:
            _ALPHA.check(float(values["alpha"]))
            if self.members is None:
                self.alpha = float(values["alpha"])
            else:
                alpha = self.alpha
                t = (
                    alpha.clone()
                    if isinstance(alpha, Tensor)
                    else torch.full((self.members,), float(alpha), dtype=torch.float64)
                )
                t[k] = float(values["alpha"])
                self.alpha = t
        if rest:
            self.optimizer.set_member(k, rest)  # type: ignore[attr-defined]
