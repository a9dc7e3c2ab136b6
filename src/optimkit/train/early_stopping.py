"""Per-member early stopping with all state in tensors (so it checkpoints and vmaps).

Member k improves at an epoch when its monitored value beats its best by more than
``min_delta`` (``value < best - min_delta`` in mode "min", ``value > best + min_delta`` in
mode "max"; as Keras' EarlyStopping). After ``patience`` epochs without improvement the
member stops. A non-finite value never counts as an improvement.
"""

from __future__ import annotations

import torch
from torch import Tensor

MODES = ("min", "max")


class EarlyStopping:
    """State: best [K], best_epoch [K] (int64, -1 before any improvement), bad_epochs [K],
    stopped [K] (bool). `patience=None` disables stopping but still tracks the best epoch."""

    def __init__(
        self,
        members: int,
        patience: int | None = 10,
        min_delta: float = 0.0,
        mode: str = "min",
        device: torch.device | str = "cpu",
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
        if patience is not None and (isinstance(patience, bool) or patience < 1):
            raise ValueError(f"patience: expected an int >= 1 or None, got {patience!r}")
        if min_delta < 0:
            raise ValueError(f"min_delta: expected min_delta >= 0, got {min_delta!r}")
        self.patience, self.min_delta, self.mode = patience, float(min_delta), mode
        worst = torch.inf if mode == "min" else -torch.inf
        self.best = torch.full((members,), worst, dtype=torch.float64, device=device)
        self.best_epoch = torch.full((members,), -1, dtype=torch.int64, device=device)
        self.bad_epochs = torch.zeros(members, dtype=torch.int64, device=device)
        self.stopped = torch.zeros(members, dtype=torch.bool, device=device)

    def update(self, value: Tensor, epoch: int, active: Tensor) -> Tensor:
        """Record one epoch's [K] values for the active members; returns the [K] mask of
        members that improved (their weights are the new best)."""
        value = value.to(self.best)
        if self.mode == "min":
            better = value < self.best - self.min_delta
        else:
            better = value > self.best + self.min_delta
        improved = better & torch.isfinite(value) & active
        self.best = torch.where(improved, value, self.best)
        self.best_epoch = torch.where(improved, epoch, self.best_epoch)
        counted = active & ~improved
        self.bad_epochs = torch.where(improved, 0, self.bad_epochs + counted.long())
        if self.patience is not None:
            self.stopped |= active & (self.bad_epochs >= self.patience)
        return improved

    # ----------------------------------------------------------------- member slots
    def reset_members(self, mask: Tensor) -> None:
        """Forget the history of the members in the [K] bool mask (a slot got a new trial)."""
        worst = torch.inf if self.mode == "min" else -torch.inf
        self.best = torch.where(mask, worst, self.best)
        self.best_epoch = torch.where(mask, -1, self.best_epoch)
        self.bad_epochs = torch.where(mask, 0, self.bad_epochs)
        self.stopped &= ~mask

    def copy_member(self, src: int, dst: int) -> None:
        """Member dst takes member src's best value, best epoch, bad epochs and stop flag."""
        for name in ("best", "best_epoch", "bad_epochs", "stopped"):
            getattr(self, name)[dst] = getattr(self, name)[src]

    def state_dict(self) -> dict[str, Tensor]:
        return {
            n: getattr(self, n).clone() for n in ("best", "best_epoch", "bad_epochs", "stopped")
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        for name, value in state.items():
            setattr(self, name, value.clone().to(getattr(self, name).device))
