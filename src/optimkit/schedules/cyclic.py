"""Cyclical schedules that also cycle momentum: CyclicLR and OneCycleLR.

References: L. N. Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017;
L. N. Smith, N. Topin, "Super-Convergence: Very Fast Training of Neural Networks Using Large
Learning Rates", 2019.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from optimkit.schedules import functional as F
from optimkit.schedules._base import (
    LRScheduler,
    check_choice,
    check_hparam,
    check_last_epoch,
    check_optimizer,
    momentum_key,
    with_member,
)


class _MomentumCycler(LRScheduler):
    """Shared set-up of ``cycle_momentum``: the optimizer needs ``momentum`` or ``betas``
    (beta1 is cycled then), and, on a fresh start, each group gets ``max_momentum`` /
    ``base_momentum`` entries as torch writes them."""

    def _setup_momentum(
        self, optimizer: Any, cycle_momentum: bool, base_momentum: Any, max_momentum: Any
    ) -> None:
        self.cycle_momentum = bool(cycle_momentum)
        if not self.cycle_momentum:
            return
        if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
            raise ValueError(
                "cycle_momentum: the optimizer has neither 'momentum' nor 'betas'; "
                "pass cycle_momentum=False"
            )
        self.use_beta1 = momentum_key(optimizer) == "betas"
        n = len(optimizer.param_groups)
        self.base_momentum = self._hp_groups("base_momentum", base_momentum, n, ge=0, le=1)
        self.max_momentum = self._hp_groups("max_momentum", max_momentum, n, ge=0, le=1)

    def _write_initial_groups(self, last_epoch: int, entries: dict[str, list[Tensor]]) -> None:
        """On a fresh start, store torch's bookkeeping entries in each param group."""
        if last_epoch != -1:
            return
        scalar = self._inputs_are_scalar(self.optimizer)
        if self.cycle_momentum:
            entries = {**entries, "max_momentum": self.max_momentum,
                       "base_momentum": self.base_momentum}  # fmt: skip
        for i, group in enumerate(self.optimizer.param_groups):
            for key, values in entries.items():
                group[key] = float(values[i]) if scalar else values[i].clone()


class CyclicLR(_MomentumCycler):
    r"""Cyclical learning rate (CLR) between ``base_lr`` and ``max_lr``:

    .. math:: \eta_t = \eta_{base} + (\eta_{max} - \eta_{base})\, h_t\, s_t,
        \qquad \mu_t = \mu_{max} - (\mu_{max} - \mu_{base})\, h_t\, s_t

    with the triangle height :math:`h_t` (up over ``step_size_up`` steps, down over
    ``step_size_down``) and the amplitude scale :math:`s_t` of ``mode`` (triangular: 1,
    triangular2: halved every cycle, exp_range: :math:`\gamma^t`) or of a custom ``scale_fn``
    (which receives a float64 tensor of cycle numbers or iterations, per ``scale_mode``).
    With ``cycle_momentum`` (default, as in torch) momentum or beta1 is cycled inversely.
    ``base_lr``, ``max_lr`` and the momenta may be per-group lists; every number may be [K].
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        base_lr: float | Tensor | list[float | Tensor],
        max_lr: float | Tensor | list[float | Tensor],
        step_size_up: int | Tensor = 2000,
        step_size_down: int | Tensor | None = None,
        mode: str = "triangular",
        gamma: float | Tensor = 1.0,
        scale_fn: Callable[[Tensor], Tensor] | None = None,
        scale_mode: str = "cycle",
        cycle_momentum: bool = True,
        base_momentum: float | Tensor | list[float | Tensor] = 0.8,
        max_momentum: float | Tensor | list[float | Tensor] = 0.9,
        last_epoch: int = -1,
    ) -> None:
        optimizer = check_optimizer(optimizer)
        last_epoch = check_last_epoch(last_epoch)
        n = len(optimizer.param_groups)
        if scale_fn is None:
            self.mode = check_choice("mode", mode, F.CYCLIC_MODES)
            self.scale_mode = "iterations" if mode == "exp_range" else "cycle"
        elif not callable(scale_fn):
            raise ValueError(f"scale_fn: expected a callable, got {type(scale_fn).__name__}")
        else:
            self.mode = mode
            self.scale_mode = check_choice("scale_mode", scale_mode, F.SCALE_MODES)
        self._scale_fn = scale_fn
        base = self.base_lr = self._hp_groups("base_lr", base_lr, n, ge=0)
        self.max_lr = self._hp_groups("max_lr", max_lr, n, ge=0)
        self.step_size_up = self._hp("step_size_up", step_size_up, integer=True, gt=0)
        down = step_size_up if step_size_down is None else step_size_down
        self.step_size_down = self._hp("step_size_down", down, integer=True, ge=0)
        self.gamma = self._hp("gamma", gamma, ge=0)
        self._setup_momentum(optimizer, cycle_momentum, base_momentum, max_momentum)
        self.optimizer = optimizer
        if last_epoch == -1:
            scalar = self._inputs_are_scalar(optimizer)
            for b, group in zip(base, optimizer.param_groups, strict=True):
                group.setdefault("initial_lr", float(b) if scalar else b.clone())
        self._write_initial_groups(last_epoch, {})
        assert isinstance(base, list)
        super().__init__(optimizer, last_epoch, base_lrs=list(base))

    def _kwargs(self) -> dict[str, Any]:
        return dict(
            step_size_up=self.step_size_up, step_size_down=self.step_size_down, mode=self.mode,
            gamma=self.gamma, scale_fn=self._scale_fn, scale_mode=self.scale_mode,
        )  # fmt: skip

    def _lr(self, step: Tensor, base_lr: Tensor, group: int) -> Tensor:
        return F.cyclic_lr(step, self.base_lr[group], self.max_lr[group], **self._kwargs())

    def set_member_lr(self, k: int, lr: float) -> None:
        """Member k's lr is its peak: max_lr becomes lr and base_lr keeps its ratio to it."""
        ratio = [lr / float(m.expand(self.members or 1)[k]) for m in self.max_lr]
        self.base_lr = [with_member(b, k, float(b.expand(self.members or 1)[k]) * r,
                                     self.members)
                        for b, r in zip(self.base_lr, ratio, strict=True)]  # fmt: skip
        self.max_lr = [with_member(m, k, lr, self.members) for m in self.max_lr]
        self.base_lrs = list(self.base_lr)

    def _momentum(self, step: Tensor, group: int) -> Tensor | None:
        if not self.cycle_momentum:
            return None
        return F.cyclic_momentum(
            step, self.base_momentum[group], self.max_momentum[group], **self._kwargs()
        )

    def _extra_state(self) -> dict[str, Any]:
        # scale_fn is code, not state: it is not saved (pass it again when constructing).
        return {"mode": self.mode, "scale_mode": self.scale_mode,
                "cycle_momentum": self.cycle_momentum}  # fmt: skip

    def _load_extra(self, state_dict: dict[str, Any]) -> None:
        self.mode = state_dict["mode"]
        self.scale_mode = state_dict["scale_mode"]
        self.cycle_momentum = state_dict["cycle_momentum"]


class OneCycleLR(_MomentumCycler):
    r"""The 1cycle policy: the lr rises from ``max_lr / div_factor`` to ``max_lr`` over the
    first ``pct_start`` of ``total_steps`` and then anneals to
    ``max_lr / (div_factor * final_div_factor)`` (``three_phase``: back to the initial lr
    first, then down to the minimum), by cosine or linear annealing; momentum (or beta1)
    moves inversely between ``max_momentum`` and ``base_momentum``.

    ``total_steps`` (or ``epochs * steps_per_epoch``), ``pct_start``, ``div_factor``,
    ``final_div_factor``, ``max_lr`` and the momenta may be [K] tensors. Stepping past a
    member's ``total_steps`` raises ValueError, as torch's does.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        max_lr: float | Tensor | list[float | Tensor],
        total_steps: int | Tensor | None = None,
        epochs: int | Tensor | None = None,
        steps_per_epoch: int | Tensor | None = None,
        pct_start: float | Tensor = 0.3,
        anneal_strategy: str = "cos",
        cycle_momentum: bool = True,
        base_momentum: float | Tensor | list[float | Tensor] = 0.85,
        max_momentum: float | Tensor | list[float | Tensor] = 0.95,
        div_factor: float | Tensor = 25.0,
        final_div_factor: float | Tensor = 1e4,
        three_phase: bool = False,
        last_epoch: int = -1,
    ) -> None:
        optimizer = check_optimizer(optimizer)
        last_epoch = check_last_epoch(last_epoch)
        n = len(optimizer.param_groups)
        if total_steps is not None:
            total = check_hparam("total_steps", total_steps, integer=True, gt=0)
            raw_total: Any = total_steps
        elif epochs is not None and steps_per_epoch is not None:
            e = check_hparam("epochs", epochs, integer=True, gt=0)
            s = check_hparam("steps_per_epoch", steps_per_epoch, integer=True, gt=0)
            total, raw_total = e * s, [epochs, steps_per_epoch]
        else:
            raise ValueError(
                "total_steps: expected total_steps, or both epochs and steps_per_epoch "
                f"(got total_steps=None, epochs={epochs!r}, steps_per_epoch={steps_per_epoch!r})"
            )
        self.total_steps = self._register("total_steps", raw_total, total)
        pct = self.pct_start = self._hp("pct_start", pct_start, ge=0, le=1)
        self.anneal_strategy = check_choice("anneal_strategy", anneal_strategy, F.ANNEAL_STRATEGIES)
        self.three_phase = bool(three_phase)
        # A first phase of zero length divides 0 by 0 at step 0 (torch: ZeroDivisionError).
        if bool((pct * total - 1 == 0).any()):
            raise ValueError(
                f"pct_start: pct_start={pct.tolist()} with total_steps={total.tolist()} gives "
                "a phase of zero length"
            )
        self._max_steps = int(total.min())  # validation bound, read once here
        self.max_lr = self._hp_groups("max_lr", max_lr, n, ge=0)
        self.div_factor = self._hp("div_factor", div_factor, gt=0)
        self.final_div_factor = self._hp("final_div_factor", final_div_factor, gt=0)
        self._setup_momentum(optimizer, cycle_momentum, base_momentum, max_momentum)
        self.optimizer = optimizer
        initial = [m / self.div_factor for m in self.max_lr]
        self._write_initial_groups(
            last_epoch,
            {"initial_lr": initial, "max_lr": self.max_lr,
             "min_lr": [i / self.final_div_factor for i in initial]},
        )  # fmt: skip
        super().__init__(optimizer, last_epoch, base_lrs=initial)

    def _check_step(self, position: float | int) -> None:
        if position > self._max_steps:
            raise ValueError(
                f"Tried to step {position} times. The specified number of total steps is "
                f"{self._max_steps}" + (" (the smallest member's)" if self.members else "")
            )

    def _lr(self, step: Tensor, base_lr: Tensor, group: int) -> Tensor:
        return F.one_cycle_lr(
            step, self.max_lr[group], self.total_steps, self.pct_start, self.anneal_strategy,
            self.div_factor, self.final_div_factor, self.three_phase,
        )  # fmt: skip

    def set_member_lr(self, k: int, lr: float) -> None:
        """Member k's lr is its peak, max_lr (the initial lr is max_lr / div_factor)."""
        self.max_lr = [with_member(m, k, lr, self.members) for m in self.max_lr]
        div = self.div_factor.expand(self.members or 1)[k]
        self.base_lrs = [with_member(b, k, lr / float(div), self.members)
                         for b in self.base_lrs]  # fmt: skip

    def _momentum(self, step: Tensor, group: int) -> Tensor | None:
        if not self.cycle_momentum:
            return None
        return F.one_cycle_momentum(
            step, self.total_steps, self.base_momentum[group], self.max_momentum[group],
            self.pct_start, self.anneal_strategy, self.three_phase,
        )  # fmt: skip

    def _extra_state(self) -> dict[str, Any]:
        return {"anneal_strategy": self.anneal_strategy, "three_phase": self.three_phase,
                "cycle_momentum": self.cycle_momentum, "max_steps": self._max_steps}  # fmt: skip

    def _load_extra(self, state_dict: dict[str, Any]) -> None:
        self.anneal_strategy = state_dict["anneal_strategy"]
        self.three_phase = state_dict["three_phase"]
        self.cycle_momentum = state_dict["cycle_momentum"]
        self._max_steps = state_dict["max_steps"]
