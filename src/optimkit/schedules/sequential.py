"""SequentialLR: run schedules one after another, switching at milestones."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from optimkit.schedules._base import LRScheduler, check_last_epoch, check_optimizer
from optimkit.schedules.decay import check_milestones


class SequentialLR(LRScheduler):
    r"""Schedule ``schedulers[j]`` from milestone :math:`m_{j-1}` on, restarted there:

    .. math:: \eta_t = \mathrm{lr}_j(t - m_{j-1}) \quad \text{for } m_{j-1} \le t < m_j
        \ (m_{-1} = 0)

    as torch's SequentialLR does (each child starts again from its step 0 at its milestone).
    The children must be this module's closed-form schedules built on the same optimizer
    (not ReduceLROnPlateau). ``milestones`` are strictly increasing ints, or [K] tensors for
    per-member milestones (e.g. a warmup length per member). When a child cycles momentum,
    momentum is written while that child is active and left as it is otherwise (torch's
    behaviour); `momentum_at` reports NaN for "left as it is".
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        schedulers: Sequence[LRScheduler],
        milestones: Sequence[int | Tensor] | Tensor,
        last_epoch: int = -1,
    ) -> None:
        optimizer = check_optimizer(optimizer)
        last_epoch = check_last_epoch(last_epoch)
        if isinstance(schedulers, LRScheduler) or not isinstance(schedulers, Sequence):
            raise ValueError("schedulers: expected a list of schedulers")
        if len(schedulers) < 1:
            raise ValueError("schedulers: expected at least one scheduler, got none")
        for i, s in enumerate(schedulers):
            if not isinstance(s, LRScheduler) or isinstance(s, SequentialLR):
                raise ValueError(
                    f"schedulers[{i}]: expected an optimkit.schedules closed-form schedule "
                    f"(not ReduceLROnPlateau, torch's schedulers or a SequentialLR), "
                    f"got {type(s).__module__}.{type(s).__name__}"
                )
            if s.optimizer is not optimizer:
                raise ValueError(
                    f"schedulers[{i}]: expected a scheduler of the same optimizer as SequentialLR"
                )
        t, is_tensor = check_milestones("milestones", milestones, strict=True)
        if t.shape[-1] != len(schedulers) - 1:
            raise ValueError(
                f"milestones: expected {len(schedulers) - 1} milestones (one fewer than the "
                f"{len(schedulers)} schedulers), got {t.shape[-1]}"
            )
        self._schedulers = list(schedulers)
        self.milestones = self._register("milestones", t if is_tensor else [], t, population=False)
        self._any_tensor = self._any_tensor or any(not s._scalar for s in self._schedulers)
        for g in optimizer.param_groups:  # the children set initial_lr (torch does the same)
            g.setdefault("initial_lr", g["lr"])
        super().__init__(optimizer, last_epoch)

    def _extra_population(self) -> list[tuple[str, Tensor]]:
        out = [
            (f"schedulers[{i}] (K={s.members})", torch.zeros(s.members))
            for i, s in enumerate(self._schedulers)
            if s.members is not None
        ]
        m = self.milestones
        if isinstance(m, Tensor) and m.dim() == 2:
            out.append(("milestones", m[:, 0]))
        return out

    def _active(self, step: Tensor) -> list[Tensor]:
        """Boolean masks: which child is active at `step` (per member)."""
        m = self.milestones.to(step.device)
        n = len(self._schedulers)
        always = torch.ones_like(step, dtype=torch.bool)
        masks = []
        for j in range(n):
            lo = always if j == 0 else step >= m[..., j - 1]
            hi = step < m[..., j] if j + 1 < n else always
            masks.append(lo & hi)
        return masks

    def _local(self, step: Tensor, j: int) -> Tensor:
        return step if j == 0 else step - self.milestones.to(step.device)[..., j - 1]

    def lr_at(self, step: Any) -> list[Tensor]:
        t = self._as_step(step)
        masks = self._active(t)
        out: list[Tensor] | None = None
        for j, child in enumerate(self._schedulers):
            lrs = child.lr_at(self._local(t, j))
            out = (
                lrs
                if out is None
                else [torch.where(masks[j], b, a) for a, b in zip(out, lrs, strict=True)]
            )
        assert out is not None
        return [self._broadcast(v) for v in out]

    def momentum_at(self, step: Any) -> list[Tensor] | None:
        t = self._as_step(step)
        masks = self._active(t)
        out: list[Tensor] | None = None
        for j, child in enumerate(self._schedulers):
            ms = child.momentum_at(self._local(t, j))
            if ms is None:
                continue
            if out is None:
                out = [torch.full_like(m, float("nan")) for m in ms]
            out = [torch.where(masks[j], b, a) for a, b in zip(out, ms, strict=True)]
        return None if out is None else [self._broadcast(v) for v in out]

    def copy_member(self, src: int, dst: int) -> None:
        super().copy_member(src, dst)
        for s in self._schedulers:
            s.copy_member(src, dst)

    def set_member_lr(self, k: int, lr: float) -> None:
        """Member k's lr, in every child (each child scales it)."""
        super().set_member_lr(k, lr)
        for s in self._schedulers:
            s.set_member_lr(k, lr)

    def _extra_state(self) -> dict[str, Any]:
        return {"schedulers": [s.state_dict() for s in self._schedulers]}

    def _load_extra(self, state_dict: dict[str, Any]) -> None:
        children = state_dict["schedulers"]
        if len(children) != len(self._schedulers):
            raise ValueError(
                f"state_dict: expected the states of {len(self._schedulers)} schedulers, "
                f"got {len(children)}"
            )
        for s, sd in zip(self._schedulers, children, strict=True):
            s._load(sd)
