"""Learning-rate schedules, torch.optim.lr_scheduler-compatible and population-aware.

Each scheduler is built on any ``torch.optim.Optimizer`` (torch's or optimkit's) with
torch's argument names and defaults, and has ``step()``, ``get_last_lr()``, ``last_epoch``,
``state_dict()`` and ``load_state_dict()``. It writes ``group['lr']`` (CyclicLR and OneCycleLR
also ``group['momentum']`` or beta1 of ``group['betas']``).

Population: any numeric argument may be a [K] tensor, one value per member, and a group's lr
may already be a [K] tensor. Member k then follows exactly the schedule torch would give it
with hyperparameters hp[k]; the group's lr becomes a [K] float64 tensor. With Python numbers
only, Python floats are written, as torch does.

Closed forms: every schedule except ReduceLROnPlateau is a pure function of the step
(``sched.lr_at(step)``, ``sched.momentum_at(step)``, where ``step`` may be a [K] tensor of
per-member steps, and the functions of `optimkit.schedules.functional`). So ``step()`` never
reads the optimizer's current lr, restoring a ``state_dict`` sets the optimizer's lr itself,
and a trainer that keeps its step counters as tensors can call the functional form directly
(also under ``torch.func.vmap``). ReduceLROnPlateau's per-member state is a
`functional.PlateauState` of tensors, updated by `functional.plateau_update`.
"""

from optimkit.schedules import functional
from optimkit.schedules._base import LRScheduler
from optimkit.schedules.cosine import CosineAnnealingLR, CosineAnnealingWarmRestarts
from optimkit.schedules.cyclic import CyclicLR, OneCycleLR
from optimkit.schedules.decay import (
    ConstantLR,
    ExponentialLR,
    LinearLR,
    MultiStepLR,
    PolynomialLR,
    StepLR,
)
from optimkit.schedules.plateau import ReduceLROnPlateau
from optimkit.schedules.sequential import SequentialLR

__all__ = [
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "CyclicLR",
    "ExponentialLR",
    "LRScheduler",
    "LinearLR",
    "MultiStepLR",
    "OneCycleLR",
    "PolynomialLR",
    "ReduceLROnPlateau",
    "SequentialLR",
    "StepLR",
    "functional",
]
