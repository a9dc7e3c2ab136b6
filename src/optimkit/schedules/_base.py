"""Shared machinery: hyperparameter validation, the population size K, writing into param groups,
and `LRScheduler`, the base of every closed-form schedule."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.optim import lr_scheduler

from optimkit.schedules.functional import F64, TensorLike

HParam = Tensor | list[Tensor]  # one tensor, or one per param group


# ----------------------------------------------------------------------------- validation
def _show(t: Tensor) -> str:
    return repr(t.tolist())


def check_hparam(
    name: str,
    value: Any,
    *,
    integer: bool = False,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Tensor:
    """Validate a number or [K] tensor and return it as a float64 tensor of shape [] or [K].

    Runs once, at construction (it reads the values): finiteness, integrality and bounds.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | Tensor):
        raise ValueError(
            f"{name}: expected a number or a 1-D tensor of shape [K], got {type(value).__name__}"
        )
    if isinstance(value, Tensor):
        if value.dim() > 1 or (value.dim() == 1 and value.numel() == 0):
            raise ValueError(
                f"{name}: expected a number or a 1-D tensor of shape [K], "
                f"got a tensor of shape {list(value.shape)}"
            )
        if value.dtype == torch.bool or value.is_complex():
            raise ValueError(f"{name}: expected a real tensor, got dtype {value.dtype}")
        t = value.detach().to(F64).clone()
    else:
        t = torch.tensor(float(value), dtype=F64)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: expected finite values, got {_show(t)}")
    if integer and not bool((t == t.floor()).all()):
        raise ValueError(f"{name}: expected an integer (or integer-valued tensor), got {_show(t)}")
    for bound, ok, word in (
        (ge, lambda b: t >= b, ">="), (gt, lambda b: t > b, ">"),
        (le, lambda b: t <= b, "<="), (lt, lambda b: t < b, "<"),
    ):  # fmt: skip
        if bound is not None and not bool(ok(bound).all()):
            raise ValueError(f"{name}: expected values {word} {bound}, got {_show(t)}")
    return t


def check_group_hparam(name: str, value: Any, n_groups: int, **bounds: Any) -> list[Tensor]:
    """A hyperparameter that torch allows per param group: a list/tuple with one entry per
    group, or a single value shared by all groups. Each entry is a number or a [K] tensor."""
    if isinstance(value, list | tuple):
        if len(value) != n_groups:
            raise ValueError(
                f"{name}: expected one value per param group ({n_groups}), got {len(value)}"
            )
        return [check_hparam(f"{name}[{i}]", v, **bounds) for i, v in enumerate(value)]
    return [check_hparam(name, value, **bounds)] * n_groups


def check_choice(name: str, value: Any, valid: Sequence[str]) -> str:
    if value not in valid:
        raise ValueError(f"{name}: expected one of {list(valid)}, got {value!r}")
    return value


def check_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer: expected a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    return optimizer


def check_last_epoch(last_epoch: Any) -> int:
    if isinstance(last_epoch, bool) or not isinstance(last_epoch, int) or last_epoch < -1:
        raise ValueError(f"last_epoch: expected an int >= -1, got {last_epoch!r}")
    return last_epoch


def population_size(named: Iterable[tuple[str, Tensor]]) -> int | None:
    """K shared by every [K] tensor (None when all are scalars); mismatches name both sides."""
    first: tuple[str, int] | None = None
    for name, t in named:
        if t.dim() != 1:
            continue
        if first is None:
            first = (name, t.shape[0])
        elif t.shape[0] != first[1]:
            raise ValueError(
                f"{name}: expected a tensor of shape [{first[1]}] (one value per member, as "
                f"{first[0]}), got shape [{t.shape[0]}]"
            )
    return None if first is None else first[1]


def pick_device(values: Iterable[Any]) -> torch.device:
    """The device of the first non-CPU tensor among `values`, else CPU."""
    for v in values:
        if isinstance(v, Tensor) and v.device.type != "cpu":
            return v.device
    return torch.device("cpu")


def as_lr_tensor(name: str, value: Any) -> Tensor:
    """A param group's lr (float, 0-d or [K] tensor) as float64, validated."""
    return check_hparam(name, value, ge=0)


def named_tensors(prefix: str, value: HParam) -> list[tuple[str, Tensor]]:
    if isinstance(value, list):
        return [(f"{prefix}[{i}]", v) for i, v in enumerate(value)]
    return [(prefix, value)]


def _to(value: HParam, device: torch.device) -> HParam:
    if isinstance(value, list):
        return [v.to(device) for v in value]
    return value.to(device)


def _clone(value: HParam) -> HParam:
    if isinstance(value, list):
        return [v.clone() for v in value]
    return value.clone()


# --------------------------------------------------------------------------------- writing
def momentum_key(optimizer: torch.optim.Optimizer) -> str:
    """'betas' when the optimizer has betas (beta1 is cycled), else 'momentum'."""
    return "betas" if "betas" in optimizer.defaults else "momentum"


def read_group_value(group: dict[str, Any], key: str) -> Any:
    return group["betas"][0] if key == "betas" else group[key]


def write_group_value(group: dict[str, Any], key: str, value: Tensor, scalar: bool) -> None:
    """Store `value` as group[key] (or as beta1 when key == 'betas').

    In scalar mode (every input a Python number) a Python float is stored, as torch does.
    Otherwise a float64 tensor: copied in place into the existing one when it already is a
    float64 tensor of that shape (so references held elsewhere stay valid), else a new one.
    """
    new: Any
    if scalar:
        new = float(value)
    else:
        current = read_group_value(group, key) if key in group else None
        if (
            isinstance(current, Tensor)
            and current.shape == value.shape
            and current.dtype == value.dtype
            and current.device == value.device
        ):
            current.copy_(value)
            return
        new = value.clone(memory_format=torch.contiguous_format)
    if key == "betas":
        group["betas"] = (new, *group["betas"][1:])
    else:
        group[key] = new


def with_member(value: Tensor, k: int, new: Any, members: int | None) -> Tensor:
    """A [K] copy of `value` (a [] or [K] tensor) with entry k = new."""
    if members is None:
        raise ValueError("set_member_lr: this schedule has no members (every input a number)")
    out = value.expand(members).clone()
    out[k] = new
    return out


def snapshot(value: Any) -> Any:
    return value.clone() if isinstance(value, Tensor) else value


# ------------------------------------------------------------------------------- the base
class LRScheduler(lr_scheduler.LRScheduler):
    """Base class of the closed-form schedules (torch.optim.lr_scheduler's API).

    It subclasses torch's ``LRScheduler`` (so code that checks ``isinstance`` accepts it) but
    replaces all of its behaviour: ``__init__``, ``step``, ``get_lr``, ``get_last_lr``,
    ``state_dict``, ``load_state_dict`` and the hooks torch's SequentialLR calls
    (``_initial_step``, ``_update_lr``). Being closed forms, these schedules set the lr rather
    than multiply it, so torch's ChainedScheduler does not compose them.

    A subclass validates and records its hyperparameters with `_hp` / `_hp_groups` (assigning
    the results to attributes), calls ``super().__init__`` and implements `_lr` (and
    `_momentum` when it cycles momentum). The learning rate at step t is a pure function of t,
    the base lrs and the hyperparameters (`lr_at`), so `step()` never reads the optimizer's
    current lr and a restored scheduler sets the optimizer's lr itself (no drift, no
    dependence on whether the optimizer's state was restored too).

    Population: when any hyperparameter or any group's lr is a [K] tensor, every group's lr is
    written as a [K] float64 tensor; when all are Python numbers, Python floats are written
    (torch's behaviour, converted once at the write).
    """

    _fractional_epochs = False
    base_lrs: list[Tensor]  # type: ignore[assignment]

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        last_epoch: int = -1,
        base_lrs: list[Tensor] | None = None,
    ) -> None:
        self.optimizer = check_optimizer(optimizer)
        last_epoch = check_last_epoch(last_epoch)
        self._track_init()
        groups = optimizer.param_groups
        raw: list[Any] = [g["lr"] for g in groups]
        if base_lrs is None:
            for i, group in enumerate(groups):
                if last_epoch == -1:
                    group.setdefault("initial_lr", snapshot(group["lr"]))
                elif "initial_lr" not in group:
                    raise ValueError(
                        f"last_epoch: resuming at last_epoch={last_epoch} needs "
                        f"param_groups[{i}]['initial_lr'] (the lr the schedule started from); "
                        "construct with last_epoch=-1 and use load_state_dict to resume"
                    )
            raw += [g["initial_lr"] for g in groups]
            base_lrs = [
                as_lr_tensor(f"param_groups[{i}]['initial_lr']", g["initial_lr"])
                for i, g in enumerate(groups)
            ]
        hparams = {n: getattr(self, n) for n in self._hparam_names}
        named = [
            *(
                (f"param_groups[{i}]['lr']", as_lr_tensor(f"param_groups[{i}]['lr']", g["lr"]))
                for i, g in enumerate(groups)
            ),
            *((f"param_groups[{i}]['initial_lr']", b) for i, b in enumerate(base_lrs)),
            *(
                nt
                for n, v in hparams.items()
                if n not in self._shared_axis
                for nt in named_tensors(n, v)
            ),
            *self._extra_population(),
        ]
        self.members = population_size(named)
        self._scalar = self._inputs_are_scalar(optimizer) and not any(
            isinstance(v, Tensor) for v in raw
        )
        self._device = pick_device([*raw, *getattr(self, "_raw_tensors", [])])
        self.base_lrs = [b.to(self._device) for b in base_lrs]
        for n, v in hparams.items():
            setattr(self, n, _to(v, self._device))
        self.last_epoch = last_epoch
        self._last_lr: list[Any] = []
        self.step()

    # ------------------------------------------------------------------ subclass helpers
    _hparam_names: list[str]
    _shared_axis: set[str]
    _any_tensor: bool
    _raw_tensors: list[Tensor]

    def _track_init(self) -> None:
        if "_hparam_names" not in self.__dict__:
            self._hparam_names, self._shared_axis = [], set()
            self._any_tensor, self._raw_tensors = False, []

    def _track(self, name: str, raw: Any, population: bool) -> None:
        self._track_init()
        self._hparam_names.append(name)
        if not population:
            self._shared_axis.add(name)
        for r in raw if isinstance(raw, list | tuple) else [raw]:
            if isinstance(r, Tensor):
                self._any_tensor = True
                self._raw_tensors.append(r)

    def _hp(self, name: str, raw: Any, **bounds: Any) -> Tensor:
        """Validate (`check_hparam`) and record a hyperparameter; assign the result to
        ``self.<name>`` (it is saved in state_dict and moved to the schedule's device)."""
        value = check_hparam(name, raw, **bounds)
        self._track(name, raw, True)
        return value

    def _hp_groups(self, name: str, raw: Any, n_groups: int, **bounds: Any) -> list[Tensor]:
        """`_hp` for a per-param-group hyperparameter (`check_group_hparam`)."""
        value = check_group_hparam(name, raw, n_groups, **bounds)
        self._track(name, raw, True)
        return value

    def _register(self, name: str, raw: Any, value: Tensor, *, population: bool = True) -> Tensor:
        """Record an already validated hyperparameter. `population=False`: its dim 0 is not
        the member axis (milestones [M])."""
        self._track(name, raw, population)
        return value

    def _inputs_are_scalar(self, optimizer: torch.optim.Optimizer) -> bool:
        """True when every hyperparameter and every group's lr is a Python number."""
        return not getattr(self, "_any_tensor", False) and not any(
            isinstance(g["lr"], Tensor) for g in optimizer.param_groups
        )

    def _extra_population(self) -> list[tuple[str, Tensor]]:
        """More named tensors whose K must agree (SequentialLR's children)."""
        return []

    def _lr(self, step: Tensor, base_lr: Tensor, group: int) -> Tensor:
        raise NotImplementedError

    def _momentum(self, step: Tensor, group: int) -> Tensor | None:
        return None

    # ------------------------------------------------------------------------ pure API
    def _as_step(self, step: TensorLike) -> Tensor:
        if isinstance(step, Tensor):
            return step.to(device=self._device, dtype=F64)
        return torch.tensor(step, dtype=F64, device=self._device)

    def _broadcast(self, value: Tensor) -> Tensor:
        if self.members is None:
            return value
        return value.expand(torch.broadcast_shapes(value.shape, (self.members,)))

    def lr_at(self, step: TensorLike) -> list[Tensor]:
        """Learning rate of each param group at `step` (int, float or a [K] tensor of
        per-member steps), as float64 tensors. Pure: reads no state, writes nothing."""
        t = self._as_step(step)
        return [self._broadcast(self._lr(t, b, i)) for i, b in enumerate(self.base_lrs)]

    def momentum_at(self, step: TensorLike) -> list[Tensor] | None:
        """Momentum (or beta1) of each param group at `step` when this schedule cycles it,
        else None. Pure like `lr_at`."""
        t = self._as_step(step)
        out = [self._momentum(t, i) for i in range(len(self.base_lrs))]
        if any(m is None for m in out):
            return None
        return [self._broadcast(m) for m in out if m is not None]

    # ------------------------------------------------------------------- torch's API
    def _position(self) -> float | int:
        """Where the schedule is: `last_epoch` (CosineAnnealingWarmRestarts: a float epoch)."""
        return self.last_epoch

    def _commit(self, position: float | int) -> None:
        self.last_epoch = int(position)

    def _check_epoch(self, epoch: Any) -> float | int:
        ok = (int, float) if self._fractional_epochs else (int,)
        if isinstance(epoch, bool) or not isinstance(epoch, ok) or epoch < 0:
            kind = "a number" if self._fractional_epochs else "an int"
            raise ValueError(f"epoch: expected {kind} >= 0, got {epoch!r}")
        return epoch

    def _check_step(self, position: float | int) -> None:
        """Hook: raise (before any state changes) where the schedule is undefined."""

    def step(self, epoch: int | float | None = None) -> None:
        """Advance one step (or jump to `epoch`, torch's deprecated form) and write the new lr
        (and momentum) into the optimizer's param groups."""
        position = self._position() + 1 if epoch is None else self._check_epoch(epoch)
        self._check_step(position)
        self._commit(position)
        self._apply(position)

    def _initial_step(self) -> None:
        """torch's SequentialLR hook: take the first step."""
        self.step()

    def _update_lr(self, epoch: int | None = None) -> None:
        """torch's SequentialLR hook: step without the deprecated-epoch handling."""
        self.step(epoch)

    def _apply(self, position: float | int) -> None:
        groups = self.optimizer.param_groups
        for group, lr in zip(groups, self.lr_at(position), strict=True):
            write_group_value(group, "lr", lr, self._scalar)
        momenta = self.momentum_at(position)
        if momenta is not None:
            key = momentum_key(self.optimizer)
            for group, m in zip(groups, momenta, strict=True):
                nan = torch.isnan(m)  # NaN = "leave as is" (SequentialLR, inactive child)
                old = torch.as_tensor(read_group_value(group, key), dtype=F64, device=m.device)
                write_group_value(group, key, torch.where(nan, old, m), self._scalar)
        self._last_lr = [snapshot(g["lr"]) for g in groups]

    def get_last_lr(self) -> list[Any]:
        """The lrs last written, one per param group (floats, or [K] tensor copies)."""
        return list(self._last_lr)

    def get_lr(self) -> list[Any]:
        """The lrs at `last_epoch`, in the form `get_last_lr` uses."""
        return [float(v) if self._scalar else v for v in self.lr_at(self._position())]

    # ------------------------------------------------------------------ member slots
    def reset_members(self, mask: Tensor) -> None:
        """Nothing to reset: a closed form keeps no per-member state besides its constants,
        which are the members' configuration (`set_member_lr` changes one), and its position
        is the caller's per-member step counter (`lr_at`)."""

    def _member_tensors(self) -> list[Tensor]:
        """The [K] constants (base lrs, hyperparameters; per-member milestones [K, M])."""
        out = list(self.base_lrs)
        for n in self._hparam_names:
            v = getattr(self, n)
            for t in v if isinstance(v, list) else [v]:
                if isinstance(t, Tensor) and t.dim() >= (2 if n in self._shared_axis else 1):
                    out.append(t)
        return out

    def copy_member(self, src: int, dst: int) -> None:
        """Member dst takes member src's constants (so ``lr_at`` gives it src's values)."""
        for t in self._member_tensors():
            t[dst] = t[src]

    def set_member_lr(self, k: int, lr: float) -> None:
        """Member k's lr: the base lr of every group (the lr the schedule scales)."""
        self.base_lrs = [with_member(b, k, lr, self.members) for b in self.base_lrs]

    # ------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: the step, base lrs and hyperparameters
        (tensors, numbers and strings only, so ``torch.load(weights_only=True)`` reads it)."""
        return {
            "scheduler": type(self).__name__,
            "last_epoch": self.last_epoch,
            "position": self._position(),
            "base_lrs": [b.clone() for b in self.base_lrs],
            "hparams": {n: _clone(getattr(self, n)) for n in self._hparam_names},
            "members": self.members,
            "scalar": self._scalar,
            **self._extra_state(),
        }

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a `state_dict` and write the restored lr (and momentum) into the optimizer,
        so the next `step()` continues exactly as the saved run would have."""
        self._load(state_dict)
        self._apply(self._position())

    def _load(self, state_dict: dict[str, Any]) -> None:
        kind = state_dict.get("scheduler")
        if kind != type(self).__name__:
            raise ValueError(
                f"state_dict: expected the state of a {type(self).__name__}, got {kind!r}"
            )
        self.base_lrs = [b.to(self._device) for b in state_dict["base_lrs"]]
        for n, v in state_dict["hparams"].items():
            setattr(self, n, _to(v, self._device))
        self.members = state_dict["members"]
        self._scalar = state_dict["scalar"]
        self._load_extra(state_dict)
        self._commit(state_dict["position"])

    def _load_extra(self, state_dict: dict[str, Any]) -> None:
        pass
