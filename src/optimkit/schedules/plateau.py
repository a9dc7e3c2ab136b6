"""ReduceLROnPlateau, per population member."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.optim import lr_scheduler

from optimkit.schedules import functional as F
from optimkit.schedules._base import (
    as_lr_tensor,
    check_choice,
    check_group_hparam,
    check_hparam,
    check_optimizer,
    named_tensors,
    pick_device,
    population_size,
    snapshot,
    write_group_value,
)


class ReduceLROnPlateau(lr_scheduler.ReduceLROnPlateau):
    r"""Reduce the lr by ``factor`` when a metric has stopped improving for more than
    ``patience`` steps, then wait ``cooldown`` steps (torch.optim.lr_scheduler's rules).

    A step's metric improves on ``best`` when it beats ``best * (1 -/+ threshold)``
    (``threshold_mode='rel'``) or ``best -/+ threshold`` (``'abs'``) in ``mode`` min/max.
    On a reduction :math:`\eta \leftarrow \max(f\eta, \eta_{min})`, skipped when that changes
    :math:`\eta` by no more than ``eps``.

    Population: ``step(metrics)`` takes a [K] tensor (or a number) and acts per member:
    ``best``, ``num_bad_epochs`` and ``cooldown_counter`` are [K] tensors, and ``factor``,
    ``patience``, ``threshold``, ``cooldown``, ``min_lr`` (per group as a list, as in torch)
    and ``eps`` may be [K] tensors. The pure form is `functional.plateau_update` and
    `functional.plateau_reduce_lr`. A NaN metric counts as a bad epoch of that member only.

    It subclasses torch's ReduceLROnPlateau (for ``isinstance`` checks, e.g. Lightning's
    monitor handling) and replaces all of its behaviour.
    """

    # torch declares these as Python numbers; here they are tensors of shape [] or [K].
    best: Tensor  # type: ignore[assignment]
    num_bad_epochs: Tensor  # type: ignore[assignment]
    cooldown_counter: Tensor  # type: ignore[assignment]
    factor: Tensor  # type: ignore[assignment]
    patience: Tensor  # type: ignore[assignment]
    threshold: Tensor  # type: ignore[assignment]
    cooldown: Tensor  # type: ignore[assignment]
    eps: Tensor  # type: ignore[assignment]
    min_lrs: list[Tensor]  # type: ignore[assignment]

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        mode: str = "min",
        factor: float | Tensor = 0.1,
        patience: int | Tensor = 10,
        threshold: float | Tensor = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int | Tensor = 0,
        min_lr: float | Tensor | list[float | Tensor] = 0,
        eps: float | Tensor = 1e-8,
    ) -> None:
        self.optimizer = check_optimizer(optimizer)
        self.mode = check_choice("mode", mode, F.PLATEAU_MODES)
        self.threshold_mode = check_choice("threshold_mode", threshold_mode, F.THRESHOLD_MODES)
        self.mode_worse = float("inf") if self.mode == "min" else float("-inf")
        groups = optimizer.param_groups
        self.factor = check_hparam("factor", factor, ge=0, lt=1)
        self.patience = check_hparam("patience", patience, integer=True, ge=0)
        self.threshold = check_hparam("threshold", threshold, ge=0)
        self.cooldown = check_hparam("cooldown", cooldown, integer=True, ge=0)
        self.min_lrs = check_group_hparam("min_lr", min_lr, len(groups), ge=0)
        self.eps = check_hparam("eps", eps, ge=0)
        raw = [factor, patience, threshold, cooldown, eps,
               *(min_lr if isinstance(min_lr, list | tuple) else [min_lr]),
               *(g["lr"] for g in groups)]  # fmt: skip
        named = [
            *((f"param_groups[{i}]['lr']", as_lr_tensor(f"param_groups[{i}]['lr']", g["lr"]))
              for i, g in enumerate(groups)),
            *((n, getattr(self, n)) for n in self._hparam_names),
            *named_tensors("min_lr", self.min_lrs),
        ]  # fmt: skip
        self.members = population_size(named)
        self._scalar = not any(isinstance(v, Tensor) for v in raw)
        self._device = pick_device(raw)
        for n in self._hparam_names:
            setattr(self, n, getattr(self, n).to(self._device))
        self.min_lrs = [m.to(self._device) for m in self.min_lrs]
        shape = () if self.members is None else (self.members,)
        self.best, self.num_bad_epochs, self.cooldown_counter = F.plateau_init(
            self.mode, shape, self._device
        )
        self.last_epoch = 0
        self._last_lr = [snapshot(g["lr"]) for g in groups]

    _hparam_names = ("factor", "patience", "threshold", "cooldown", "eps")

    @property
    def in_cooldown(self) -> Tensor:  # type: ignore[override]
        """Per member: whether it is cooling down after a reduction."""
        return self.cooldown_counter > 0

    def _metrics(self, metrics: Any) -> Tensor:
        if isinstance(metrics, bool) or not isinstance(metrics, int | float | Tensor):
            raise ValueError(
                f"metrics: expected a number or a tensor of shape [K], got {type(metrics).__name__}"
            )
        t = metrics.detach() if isinstance(metrics, Tensor) else torch.tensor(float(metrics))
        t = t.to(device=self._device, dtype=torch.float64)
        if t.dim() > 1 or (t.dim() == 1 and self.members not in (None, t.shape[0])):
            k = "[]" if self.members is None else f"[{self.members}]"
            raise ValueError(
                f"metrics: expected a number or a tensor of shape {k} (one value per member), "
                f"got shape {list(t.shape)}"
            )
        if t.dim() == 1 and self.members is None:  # the population appears with the metrics
            self.members, self._scalar = t.shape[0], False
        return t

    def reset_members(self, members: Tensor) -> None:
        """Forget the plateau history of the members in the [K] bool mask (e.g. a population
        slot that starts a new configuration): best, bad-epoch and cooldown counters restart."""
        fresh = F.plateau_init(self.mode, self.best.shape, self._device)
        mask = members.to(self._device)
        old = (self.best, self.num_bad_epochs, self.cooldown_counter)
        self.best, self.num_bad_epochs, self.cooldown_counter = (
            torch.where(mask, a, b) for a, b in zip(fresh, old, strict=True)
        )

    def copy_member(self, src: int, dst: int) -> None:
        """Member dst takes member src's plateau state (best, bad epochs, cooldown) and its
        [K] hyperparameters; the lr itself is the optimizer's (its own copy_member)."""
        tensors = [self.best, self.num_bad_epochs, self.cooldown_counter, *self.min_lrs,
                   *(getattr(self, n) for n in self._hparam_names)]  # fmt: skip
        for t in tensors:
            if t.dim() > 0:
                t[dst] = t[src]

    def step(self, metrics: Any, epoch: int | None = None) -> None:  # type: ignore[override]
        """Observe one metric value per member and reduce the lr of those on a plateau."""
        current = self._metrics(metrics)
        self.last_epoch = self.last_epoch + 1 if epoch is None else int(epoch)
        state, reduce = F.plateau_update(
            F.PlateauState(self.best, self.num_bad_epochs, self.cooldown_counter),
            current, self.mode, self.patience, self.threshold, self.threshold_mode,
            self.cooldown,
        )  # fmt: skip
        self.best, self.num_bad_epochs, self.cooldown_counter = state
        groups = self.optimizer.param_groups
        for group, min_lr in zip(groups, self.min_lrs, strict=True):
            lr = torch.as_tensor(group["lr"], dtype=torch.float64, device=self._device)
            new = F.plateau_reduce_lr(lr, reduce, self.factor, min_lr, self.eps)
            if self.members is not None:
                new = new.expand(self.members)
            write_group_value(group, "lr", new, self._scalar)
        self._last_lr = [snapshot(g["lr"]) for g in groups]

    def get_last_lr(self) -> list[Any]:
        """The lrs after the last step, one per param group (floats or [K] tensor copies)."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """Counters, best values, current lrs and hyperparameters (tensors and plain values)."""
        return {
            "scheduler": "ReduceLROnPlateau",
            "mode": self.mode,
            "threshold_mode": self.threshold_mode,
            "last_epoch": self.last_epoch,
            "best": self.best.clone(),
            "num_bad_epochs": self.num_bad_epochs.clone(),
            "cooldown_counter": self.cooldown_counter.clone(),
            "hparams": {n: getattr(self, n).clone() for n in self._hparam_names},
            "min_lrs": [m.clone() for m in self.min_lrs],
            "members": self.members,
            "scalar": self._scalar,
            "_last_lr": [snapshot(v) for v in self._last_lr],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state and write the saved lrs back into the optimizer (the lr of a
        plateau schedule depends on its history, so it is part of the state)."""
        if state_dict.get("scheduler") != "ReduceLROnPlateau":
            raise ValueError(
                "state_dict: expected the state of a ReduceLROnPlateau, "
                f"got {state_dict.get('scheduler')!r}"
            )
        self.mode = state_dict["mode"]
        self.mode_worse = float("inf") if self.mode == "min" else float("-inf")
        self.threshold_mode = state_dict["threshold_mode"]
        self.last_epoch = state_dict["last_epoch"]
        d = self._device
        self.best = state_dict["best"].to(d)
        self.num_bad_epochs = state_dict["num_bad_epochs"].to(d)
        self.cooldown_counter = state_dict["cooldown_counter"].to(d)
        for n, v in state_dict["hparams"].items():
            setattr(self, n, v.to(d))
        self.min_lrs = [m.to(d) for m in state_dict["min_lrs"]]
        self.members = state_dict["members"]
        self._scalar = state_dict["scalar"]
        self._last_lr = [snapshot(v) for v in state_dict["_last_lr"]]
        for group, lr in zip(self.optimizer.param_groups, self._last_lr, strict=True):
            value = torch.as_tensor(lr, dtype=torch.float64, device=d)
            write_group_value(group, "lr", value, self._scalar)
