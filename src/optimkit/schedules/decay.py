"""Monotone decays and warmups: StepLR, MultiStepLR, ExponentialLR, ConstantLR, LinearLR,
PolynomialLR (torch.optim.lr_scheduler's arguments and defaults; any number may be a [K]
tensor)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from optimkit.schedules import functional as F
from optimkit.schedules._base import LRScheduler, check_hparam


class StepLR(LRScheduler):
    r"""Decay by ``gamma`` every ``step_size`` steps: :math:`\eta_t = \eta_0
    \gamma^{\lfloor t/s \rfloor}`. ``step_size`` (integer) and ``gamma`` (>= 0) may be [K]."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        step_size: int | Tensor,
        gamma: float | Tensor = 0.1,
        last_epoch: int = -1,
    ) -> None:
        self.step_size = self._hp("step_size", step_size, integer=True, gt=0)
        self.gamma = self._hp("gamma", gamma, ge=0)
        super().__init__(optimizer, last_epoch)

    def _lr(self, step: Tensor, base_lr: Tensor, group: int) -> Tensor:
        return F.step_lr(step, base_lr, self.step_size, self.gamma)


def check_milestones(name: str, milestones: Any, *, strict: bool) -> tuple[Tensor, bool]:
    """Milestones as a float64 tensor of shape [M] or [K, M], sorted per member.

    Accepts a sequence of ints and/or [K] tensors, or a tensor of shape [M] or [K, M].
    Returns the tensor and whether any input was a tensor.
    """
    if isinstance(milestones, Tensor):
        if milestones.dim() not in (1, 2):
            raise ValueError(
                f"{name}: expected a list, or a tensor of shape [M] or [K, M], "
                f"got a tensor of shape {list(milestones.shape)}"
            )
        is_tensor, t = True, check_hparam(name, milestones.reshape(-1), integer=True, ge=0)
        t = t.reshape(milestones.shape)
    elif isinstance(milestones, Sequence) and not isinstance(milestones, str):
        entries = [
            check_hparam(f"{name}[{i}]", m, integer=True, ge=0) for i, m in enumerate(milestones)
        ]
        is_tensor = any(isinstance(m, Tensor) for m in milestones)
        if not entries:
            t = torch.zeros(0, dtype=torch.float64)
        elif any(e.dim() == 1 for e in entries):
            sizes = {e.shape[0] for e in entries if e.dim() == 1}
            if len(sizes) > 1:
                raise ValueError(
                    f"{name}: every [K] tensor entry needs the same K, got sizes {sorted(sizes)}"
                )
            k = sizes.pop()
            t = torch.stack([e.expand(k) for e in entries], dim=1)
        else:
            t = torch.stack(entries)
    else:
        raise ValueError(
            f"{name}: expected a list of ints (or [K] tensors), got {type(milestones).__name__}"
        )
    if t.shape[-1] > 1:
        gaps = t[..., 1:] - t[..., :-1]
        ok = (gaps > 0) if strict else (gaps >= 0)
        if not bool(ok.all()):
            word = "strictly increasing" if strict else "increasing"
            raise ValueError(f"{name}: expected {word} values, got {t.tolist()}")
    return t, is_tensor


class MultiStepLR(LRScheduler):
    r"""Decay by ``gamma`` at each milestone: :math:`\eta_t = \eta_0 \gamma^{\#\{j: m_j \le
    t\}}`. ``milestones``: increasing ints (repeats count twice, as in torch); per-member
    milestones as a list of [K] tensors or a [K, M] tensor."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        milestones: Sequence[int | Tensor] | Tensor,
        gamma: float | Tensor = 0.1,
        last_epoch: int = -1,
    ) -> None:
        t, is_tensor = check_milestones("milestones", milestones, strict=False)
        self.milestones = self._register("milestones", t if is_tensor else [], t, population=False)
        self.gamma = self._hp("gamma", gamma, ge=0)
        super().__init__(optimizer, last_epoch)

    def _extra_population(self) -> list[tuple[str, Tensor]]:
        m = self.milestones
        return [("milestones", m[:, 0])] if isinstance(m, Tensor) and m.dim() == 2 else []

    def _lr(self, step: Tensor, base_lr: Tensor, group: int) -> Tensor:
        return F.multistep_lr(step, base_lr, self.milestones, self.gamma)


class ExponentialLR(LRScheduler):
    r"""Decay by ``gamma`` every step: :math:`\eta_t = \eta_0 \gamma^t`."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, gamma: float | Tensor, last_epoch: int = -1
    ) -> None:
        self.gamma = self._hp("gamma", gamma, ge=0)
        super().__init__(optimizer, last_epoch)

    def _lr(self, step: Tensor, base_lr: Tensor, group: int) -> Tensor:
        return F.exponential_lr(step, base_lr, self.gamma)


class ConstantLR(LRScheduler):
    r"""Scale by ``factor`` (in (0, 1]) until step ``total_iters`` (>= 1):
    :math:`\eta_t = \eta_0 (f + [t \ge T] (1 - f))`."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        factor: float | Tensor = 1.0 / 3,
        total_iters: int | Tensor = 5,
        last_epoch: int = -1,
    ) -> None:
        self.factor = self._hp("factor", factor, gt=0, le=1)
        self.total_iters = self._hp("total_iters", total_iters, integer=True, gt=0)
        super().__init__(optimizer, last_epoch)

    def _lr(self, step: Tensor, base_lr: Tensor, group: int) -> Tensor:
        return F.constant_lr(step, base_lr, self.factor, self.total_iters)


class LinearLR(LRScheduler):
    r"""Linear warmup (or decay) of the lr's factor from ``start_factor`` (in (0, 1]) to
    ``end_factor`` (in [0, 1]) over ``total_iters`` (>= 1) steps:
    :math:`\eta_t = \eta_0 (f_s + (f_e - f_s) \min(t, T)/T)`."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        start_factor: float | Tensor = 1.0 / 3,
        end_factor: float | Tensor = 1.0,
        total_iters: int | Tensor = 5,
        last_epoch: int = -1,
    ) -> None:
        self.start_factor = self._hp("start_factor", start_factor, gt=0, le=1)
        self.end_factor = self._hp("end_factor", end_factor, ge=0, le=1)
        self.total_iters = self._hp("total_iters", total_iters, integer=True, gt=0)
        super().__init__(optimizer, last_epoch)

    def _lr(self, step: Tensor, base_lr: Tensor, group: int) -> Tensor:
        return F.linear_lr(step, base_lr, self.start_factor, self.end_factor, self.total_iters)


class PolynomialLR(LRScheduler):
    r"""Polynomial decay to 0 over ``total_iters`` (>= 1) steps:
    :math:`\eta_t = \eta_0 (1 - \min(t, T)/T)^p`."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_iters: int | Tensor = 5,
        power: float | Tensor = 1.0,
        last_epoch: int = -1,
    ) -> None:
        self.total_iters = self._hp("total_iters", total_iters, integer=True, gt=0)
        self.power = self._hp("power", power, ge=0)
        super().__init__(optimizer, last_epoch)

    def _lr(self, step: Tensor, base_lr: Tensor, group: int) -> Tensor:
        return F.polynomial_lr(step, base_lr, self.total_iters, self.power)
