"""Schedules by name for the trainer, with defaults derived from the run's length."""

from __future__ import annotations

from typing import Any

import torch

from optimkit import schedules as S

#: name -> (builder(optimizer, options, epochs, steps_per_epoch), steps per batch?)
SCHEDULES = ("constant", "step", "multistep", "exponential", "cosine", "cosine_restarts",
             "warmup_cosine", "cyclic", "onecycle", "linear", "plateau")  # fmt: skip


def build_schedule(
    name: str | None,
    optimizer: torch.optim.Optimizer,
    options: dict[str, Any],
    epochs: int,
    steps_per_epoch: int,
    members: int,
) -> tuple[Any, bool]:
    """(scheduler or None, whether it steps per batch). Options are the scheduler's own
    arguments (numbers or [K] lists); missing ones get defaults from `epochs`."""
    if name is None or name == "constant":
        if options:
            raise ValueError("schedule_options: the constant schedule takes no options")
        return None, False
    if name not in SCHEDULES:
        raise ValueError(f"schedule: unknown name {name!r}; valid: {', '.join(SCHEDULES)}")
    o: dict[str, Any] = {
        k: torch.tensor(v, dtype=torch.float64) if isinstance(v, list | tuple) else v
        for k, v in options.items()
    }
    total = epochs * steps_per_epoch
    try:
        if name == "step":
            return S.StepLR(
                optimizer, **{"step_size": max(epochs // 3, 1), "gamma": 0.1, **o}
            ), False
        if name == "multistep":
            o.setdefault("milestones", [epochs // 2, 3 * epochs // 4])
            return S.MultiStepLR(optimizer, **o), False
        if name == "exponential":
            return S.ExponentialLR(optimizer, **{"gamma": 0.9, **o}), False
        if name == "cosine":
            return S.CosineAnnealingLR(optimizer, **{"T_max": epochs, **o}), False
        if name == "cosine_restarts":
            return S.CosineAnnealingWarmRestarts(
                optimizer, **{"T_0": max(epochs // 4, 1), **o}
            ), False
        if name == "linear":
            return S.LinearLR(optimizer, **{"total_iters": epochs, **o}), False
        if name == "warmup_cosine":
            warmup = int(o.pop("warmup_epochs", max(epochs // 10, 1)))
            start_factor = o.pop("start_factor", 0.1)
            first = S.LinearLR(optimizer, start_factor=start_factor, total_iters=warmup)
            second = S.CosineAnnealingLR(optimizer, **{"T_max": max(epochs - warmup, 1), **o})
            return S.SequentialLR(optimizer, [first, second], milestones=[warmup]), False
        if name == "cyclic":
            lr = optimizer.param_groups[0]["lr"]
            o.setdefault("base_lr", torch.as_tensor(lr, dtype=torch.float64) / 10)
            o.setdefault("max_lr", lr)
            o.setdefault("step_size_up", max(steps_per_epoch * 2, 1))
            return S.CyclicLR(optimizer, **o), True
        if name == "onecycle":
            o.setdefault("max_lr", optimizer.param_groups[0]["lr"])
            return S.OneCycleLR(optimizer, total_steps=total, **o), True
        # plateau: per-member ReduceLROnPlateau on the validation loss
        return S.ReduceLROnPlateau(optimizer, **{"patience": 3, **o}), False
    except TypeError as e:
        raise ValueError(f"schedule_options: {e}") from None


class MemberSchedule:
    """The run's LR schedule with each member at its own position: optimizer steps (a
    per-step schedule) or epochs trained (per epoch), counted per member, so a refilled or
    copied slot follows its own curve. Closed forms write ``lr_at(position)`` (and cycled
    momentum / beta1) into the optimizer's groups; ReduceLROnPlateau steps on the val loss.
    Implements the member-slot protocol (`optimkit.train.slots`)."""

    def __init__(self, schedule: Any, per_step: bool, optimizer: Any, members: int,
                 device: torch.device) -> None:  # fmt: skip
        self.schedule, self.per_step, self.optimizer = schedule, per_step, optimizer
        self.plateau = isinstance(schedule, S.ReduceLROnPlateau)
        self.closed_form = schedule is not None and not self.plateau
        self.position = torch.zeros(members, dtype=torch.float64, device=device)

    def after_step(self) -> None:
        if self.per_step:
            self.position += 1
            self.apply()

    def after_epoch(self, trained: torch.Tensor, val_loss: torch.Tensor) -> None:
        """End of an epoch: `trained` [K] members advance one epoch (per-epoch schedules)."""
        if self.plateau:
            self.schedule.step(val_loss)
        elif self.closed_form and not self.per_step:
            self.position += trained.to(self.position)
            self.apply()

    def apply(self) -> None:
        """Write each group's lr (and cycled momentum / beta1) at the members' positions."""
        if not self.closed_form:
            return
        lrs = self.schedule.lr_at(self.position)
        momenta = self.schedule.momentum_at(self.position)
        for i, group in enumerate(self.optimizer.param_groups):
            group["lr"] = lrs[i]
            if momenta is not None:
                if "betas" in group:
                    group["betas"] = (momenta[i], group["betas"][1])
                else:
                    group["momentum"] = momenta[i]

    def set_member_lr(self, k: int, lr: float) -> None:
        """Member k's lr (closed forms: the lr they scale; the optimizer's lr otherwise,
        which the caller sets)."""
        if self.closed_form:
            self.schedule.set_member_lr(k, lr)
            self.apply()

    # ------------------------------------------------------------------ member slots
    def reset_members(self, mask: torch.Tensor) -> None:
        self.position = torch.where(mask.to(self.position.device), 0.0, self.position)
        if self.schedule is not None:
            self.schedule.reset_members(mask)
        self.apply()

    def copy_member(self, src: int, dst: int) -> None:
        self.position[dst] = self.position[src]
        if self.schedule is not None:
            self.schedule.copy_member(src, dst)
        self.apply()

    def state_dict(self) -> dict[str, Any]:
        return {"schedule": None if self.schedule is None else self.schedule.state_dict(),
                "position": self.position.clone()}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.schedule is not None:
            self.schedule.load_state_dict(state["schedule"])
        self.position = state["position"].clone().to(self.position.device)
        self.apply()  # closed forms follow the members' positions, not their own step count
