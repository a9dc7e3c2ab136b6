"""Cosine schedules: CosineAnnealingLR and CosineAnnealingWarmRestarts (SGDR).

Reference: I. Loshchilov, F. Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts",
ICLR 2017.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from optimkit.schedules import functional as F
from optimkit.schedules._base import LRScheduler


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing from the base lr to ``eta_min`` over ``T_max`` steps:

    .. math:: \eta_t = \eta_{min} + \tfrac12 (\eta_0 - \eta_{min})(1 + \cos(\pi t / T_{max}))

    This is the closed form; torch steps a recursive version of it whose float rounding
    drifts slightly from it (and which follows external changes to the lr). Past ``T_max`` the
    lr rises again (period :math:`2T_{max}`), as torch's does.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        T_max: int | float | Tensor,
        eta_min: float | Tensor = 0.0,
        last_epoch: int = -1,
    ) -> None:
        self.T_max = self._hp("T_max", T_max, gt=0)
        self.eta_min = self._hp("eta_min", eta_min, ge=0)
        super().__init__(optimizer, last_epoch)

    def _lr(self, step: Tensor, base_lr: Tensor, group: int) -> Tensor:
        return F.cosine_annealing_lr(step, base_lr, self.T_max, self.eta_min)


class CosineAnnealingWarmRestarts(LRScheduler):
    r"""SGDR: cosine annealing restarted every :math:`T_i` steps, :math:`T_0` first and then
    ``T_mult`` times longer after each restart:

    .. math:: \eta_t = \eta_{min} + \tfrac12 (\eta_0 - \eta_{min})(1 + \cos(\pi T_{cur}/T_i))

    ``T_0`` (integer >= 1), ``T_mult`` (integer >= 1) and ``eta_min`` may be [K] tensors.
    ``step(epoch)`` accepts fractional epochs (``epoch + i / iters``) as torch's does; the
    position is kept exactly, so a later ``step()`` continues from it. ``T_cur`` and ``T_i``
    are available as (tensor) properties.
    """

    _fractional_epochs = True

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        T_0: int | Tensor,
        T_mult: int | Tensor = 1,
        eta_min: float | Tensor = 0.0,
        last_epoch: int = -1,
    ) -> None:
        self.T_0 = self._hp("T_0", T_0, integer=True, gt=0)
        self.T_mult = self._hp("T_mult", T_mult, integer=True, ge=1)
        self.eta_min = self._hp("eta_min", eta_min, ge=0)
        self._epoch: float | int = last_epoch
        super().__init__(optimizer, last_epoch)

    @property
    def last_epoch(self) -> int:  # type: ignore[override]
        return math.floor(self._epoch)

    @last_epoch.setter
    def last_epoch(self, value: Any) -> None:
        self._epoch = value

    def _position(self) -> float | int:
        return self._epoch

    def _commit(self, position: float | int) -> None:
        self._epoch = position

    @property
    def T_cur(self) -> Tensor:
        return F.warm_restart_position(self._as_step(self._epoch), self.T_0, self.T_mult)[0]

    @property
    def T_i(self) -> Tensor:
        return F.warm_restart_position(self._as_step(self._epoch), self.T_0, self.T_mult)[1]

    def _lr(self, step: Tensor, base_lr: Tensor, group: int) -> Tensor:
        return F.cosine_annealing_warm_restarts_lr(
            step, base_lr, self.T_0, self.T_mult, self.eta_min
        )
