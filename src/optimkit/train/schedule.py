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
