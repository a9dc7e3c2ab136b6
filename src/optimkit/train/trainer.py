"""`PopulationTrainer`: K configurations of one model trained as one vectorized program.

Each step: a batch (shared, or one per member) -> ``Population.forward`` [K, B, out] ->
per-member mean loss [K] -> ``sum().backward()`` (members never mix, so member k receives
exactly its own gradient) -> one population optimizer step with [K] hyperparameters ->
per-step schedules. Each epoch: validation loss and metrics per member, divergence detection,
early stopping, ReduceLROnPlateau, history, and a checkpoint every N epochs.

A member that stops early or diverges keeps computing with the others (its result is frozen
at that point), so the other members' arithmetic stays bit-identical; the run ends when no
member is running.

Each per-member part (population, optimizer, schedule, early stopping, kept weights, history,
batch sampler, status record) implements the member-slot protocol
(`optimkit.train.slots`); `replace_member` (continuous batching) and `copy_member` (PBT's
exploit) go through `PopulationTrainer.slots` only.
"""

from __future__ import annotations

import ctypes
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from optimkit import losses as losses_mod
from optimkit import metrics as metrics_mod
from optimkit.data import BatchSampler, Dataset
from optimkit.models import Population
from optimkit.optim import get_optimizer
from optimkit.train.early_stopping import EarlyStopping
from optimkit.train.history import History
from optimkit.train.record import (
    FAILED,
    FINISHED,
    RUNNING,
    STATUS_NAMES,
    STOPPED,
    KeptWeights,
    MemberRecord,
)
from optimkit.train.schedule import MemberSchedule, build_schedule
from optimkit.train.slots import MemberSlots, member_mask

__all__ = ["FAILED", "FINISHED", "OPTIMIZER_EXTRAS", "RUNNING", "STATUS_NAMES", "STOPPED",
           "TASK_METRICS", "PopulationTrainer", "TrainConfig", "retain_freed_memory",
           "task_outputs"]  # fmt: skip

TASK_METRICS = {
    "classification": ("accuracy", "f1_macro", "log_loss"),
    "regression": ("mse", "mae", "r2"),
    "ratings": ("rmse", "mae"),
}

#: per-member options the optimizer takes besides its own hyperparameters
OPTIMIZER_EXTRAS = ("clip_grad_norm", "clip_grad_value", "l1")

#: the scale `PopulationTrainer._members_finite` multiplies parameters by before summing them
_FINITE_SCALE = {torch.float32: 2.0**-100, torch.float64: 2.0**-1000}

#: glibc malloc settings `retain_freed_memory` applies: blocks up to 32 MiB come from the heap
#: (glibc's own dynamic ceiling), and up to 256 MiB of free heap stay mapped
MMAP_THRESHOLD, TRIM_THRESHOLD = 32 << 20, 256 << 20
_retained = False


def retain_freed_memory() -> bool:
    """Let the process reuse the memory that tensors free, instead of mapping fresh pages.

    torch allocates CPU tensors with malloc; glibc serves blocks above a (dynamic) threshold
    with fresh mmap'd pages and returns heap memory to the system once more than a few MiB
    are free at its top. A population step frees and re-allocates MiB-sized activations and
    gradients every step, so every step page-faults them in again (zero-filled by the
    kernel): about 200-700 faults per step for the MLP 64-128-10 at K = 64, a third of a
    forward/backward measured on a VM. This sets M_MMAP_THRESHOLD and M_TRIM_THRESHOLD
    (`MMAP_THRESHOLD`, `TRIM_THRESHOLD`) once per process through ``mallopt(3)``; elsewhere
    than glibc it does nothing. Returns whether the settings are in place. The trainer calls
    it when training starts if ``TrainConfig.retain_memory`` is True (default False: a library
    leaves process-wide settings alone; the ``optimkit`` command line, which owns its
    process, calls it at start).
    """
    global _retained
    if not _retained and sys.platform == "linux" and platform.libc_ver()[0] == "glibc":
        try:
            libc = ctypes.CDLL(None)
            m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
            _retained = bool(libc.mallopt(m_mmap_threshold, MMAP_THRESHOLD)) and bool(
                libc.mallopt(m_trim_threshold, TRIM_THRESHOLD)
            )
        except (OSError, AttributeError):  # no mallopt in this process
            _retained = False
    return _retained


@dataclass
class TrainConfig:
    """What all members share. Per-member values (optimizer hyperparameters, seeds, clip
    norms, L1) come as the `members` list given to the trainer.

    ``compile=True`` runs the optimizer step through torch.compile (one fused loop over each
    parameter group; the first step pays the compilation, cached on disk afterwards); the
    result equals the eager step up to floating-point rounding. ``retain_memory=True`` lets
    the process keep and reuse memory that tensors free (see `retain_freed_memory`; a
    process-wide malloc setting, applied when training starts; off by default).
    ``autocast=True`` runs the model's matrix products and convolutions in bfloat16
    (``torch.autocast``: mixed precision, in training and in evaluation); weights,
    gradients, optimizer state and the loss stay in the population's dtype. It changes the
    arithmetic (bfloat16 keeps 8 significant bits), so members no longer match a plain
    float32 run step for step."""

    model: str | Callable[..., torch.nn.Module] = "mlp"
    model_options: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "adam"
    loss: str | None = None
    loss_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 20
    batch_size: int | None = 64
    shared_batches: bool = True
    schedule: str | None = None
    schedule_options: dict[str, Any] = field(default_factory=dict)
    patience: int | None = None
    min_delta: float = 0.0
    monitor: str = "val_loss"
    restore_best: bool = True
    checkpoint_every: int | None = None
    checkpoint_path: str | None = None
    seed: int = 0
    compile: bool = False
    retain_memory: bool = False
    autocast: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs: expected an int >= 1, got {self.epochs!r}")
        if self.batch_size is not None and (
            isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int)
            or self.batch_size < 0
        ):  # fmt: skip
            raise ValueError(f"batch_size: expected an int >= 0 (0 = full batch), got "
                             f"{self.batch_size!r}")  # fmt: skip
        for name in ("compile", "retain_memory", "autocast"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: expected True or False, got {getattr(self, name)!r}")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every: expected an int >= 1, got {self.checkpoint_every}")
        if self.checkpoint_every is not None and not self.checkpoint_path:
            raise ValueError("checkpoint_path: required when checkpoint_every is set")


def task_outputs(dataset: Dataset) -> tuple[int, str]:
    """(model outputs, default loss) for a dataset: binary classification uses one logit and
    BCE (the objective of logistic regression), multiclass C logits and cross-entropy,
    regression and ratings one output and MSE."""
    if dataset.task == "classification":
        c = dataset.n_classes or 2
        return (1, "bce") if c == 2 else (c, "cross_entropy")
    return 1, "mse"


class PopulationTrainer:
    """Train K members of `config.model` on `dataset`, member k with `members[k]`.

    `members[k]` maps optimizer hyperparameter names (lr, weight_decay, momentum, betas, ...)
    and the extras clip_grad_norm / clip_grad_value / l1 to numbers, plus an optional "seed"
    (initialization; default config.seed + k). Every member must give the same keys.
    """

    def __init__(
        self,
        dataset: Dataset,
        config: TrainConfig,
        members: Sequence[Mapping[str, Any]],
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        if not members:
            raise ValueError("members: expected at least one member configuration")
        keys = set(members[0])
        for k, m in enumerate(members):
            if set(m) != keys:
                raise ValueError(
                    f"members[{k}]: expected the keys {sorted(keys)} like members[0], "
                    f"got {sorted(m)}"
                )
        self.dataset, self.config = dataset, config
        self.members = [dict(m) for m in members]
        self.k = len(members)
        self.device = torch.device(device) if device is not None else dataset.X_train.device
        self.dtype = dtype or (dataset.X_train.dtype if dataset.X_train.is_floating_point()
                               else torch.get_default_dtype())  # fmt: skip
        self.progress = progress
        n_outputs, default_loss = task_outputs(dataset)
        self.n_outputs = n_outputs
        self.loss = losses_mod.get_loss(config.loss or default_loss, **config.loss_options)
        self.metric_names = TASK_METRICS[dataset.task]
        self.metrics = {n: metrics_mod.get_metric(n) for n in self.metric_names}
        seeds = [int(m.get("seed", config.seed + k)) for k, m in enumerate(self.members)]
        options = dict(config.model_options)
        if "input_shape" in dataset.metadata and config.model == "cnn":
            options.setdefault("image_shape", tuple(dataset.metadata["input_shape"]))
        if dataset.task == "ratings":
            options.setdefault("n_users", dataset.metadata["n_users"])
            options.setdefault("n_items", dataset.metadata["n_items"])
        self.population = Population(
            config.model, dataset.n_features, n_outputs, seeds, options=options,
            device=self.device, dtype=self.dtype, dropout_seed=config.seed,
        )  # fmt: skip
        self.optimizer = self._build_optimizer()
        self.sampler = BatchSampler(
            dataset.n_train,
            batch_size=config.batch_size or None,
            seed=config.seed,
            member_seeds=None if config.shared_batches else seeds,
            device=dataset.X_train.device,
        )
        steps_per_epoch = self.sampler.num_batches
        schedule, per_step = build_schedule(
            config.schedule, self.optimizer, config.schedule_options, config.epochs,
            steps_per_epoch, self.k,
        )  # fmt: skip
        self.schedule = MemberSchedule(schedule, per_step, self.optimizer, self.k, self.device)
        mode = "min"
        if config.monitor != "val_loss":
            name = config.monitor.removeprefix("val_")
            if name not in self.metrics:
                valid = ", ".join(["val_loss", *(f"val_{n}" for n in self.metrics)])
                raise ValueError(f"monitor: unknown {config.monitor!r}; valid: {valid}")
            mode = "max" if self.metrics[name].greater_is_better else "min"
        self.early = EarlyStopping(self.k, config.patience, config.min_delta, mode, self.device)
        self.kept = KeptWeights(self.population)
        self.history = History(self.k)
        self.record = MemberRecord(self.k, self.device)
        self.epoch = 0
        self.elapsed = 0.0
        self.test_results: dict[str, Tensor] | None = None
        self._finite_vectors: dict[tuple[int, torch.dtype, torch.device], Tensor] = {}

    # ------------------------------------------------------------------------------ set-up
    def _build_optimizer(self):
        hyper: dict[str, Any] = {}
        for key in self.members[0]:
            if key == "seed":
                continue
            values = [m[key] for m in self.members]
            if isinstance(values[0], tuple | list):  # betas, etas, ...: one [K] per element
                hyper[key] = tuple(
                    _stack_member_values(key, [v[i] for v in values]) for i in range(len(values[0]))
                )
            elif isinstance(values[0], bool | str) or values[0] is None:
                if any(v != values[0] for v in values):
                    raise ValueError(f"{key}: must be the same for all members of a population")
                hyper[key] = values[0]
            else:
                hyper[key] = torch.tensor([float(v) for v in values], dtype=torch.float64)
        params = list(self.population.params.values())
        if self.config.compile:
            hyper["compile"] = True
        return get_optimizer(self.config.optimizer, params, members=self.k, **hyper)

    # ------------------------------------------------------------------------------ helpers
    def _loss_input(self, out: Tensor) -> Tensor:
        """Model outputs [K, B, out] as the loss expects them ([K, B] for one output)."""
        return out.squeeze(-1) if self.n_outputs == 1 else out

    def _targets(self, y: Tensor) -> Tensor:
        if self.n_outputs == 1 and self.dataset.task == "classification":
            return y.to(self.dtype)
        return y

    def _autocast(self) -> AbstractContextManager[Any]:
        """bfloat16 autocast for the model's forward when ``config.autocast``."""
        if not self.config.autocast:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _forward_eval(self, x: Tensor, chunk: int = 4096) -> Tensor:
        with torch.no_grad(), self._autocast():
            parts = [self.population.forward(x[i : i + chunk], train=False)
                     for i in range(0, x.shape[0], chunk)]  # fmt: skip
        out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return out.to(self.dtype)

    def evaluate(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """Loss and task metrics of every member on (x, y): a dict of [K] tensors. The label
        metrics (accuracy, F1) share one argmax of the outputs."""
        out = self._forward_eval(x)
        result = {"loss": self.loss.mean(self._loss_input(out), self._targets(y)).detach()}
        pred = out if self.n_outputs > 1 or self.dataset.task == "classification" else out[..., 0]
        labels: dict[bool, Tensor] = {}
        for name, metric in self.metrics.items():
            given = None
            if metric.uses_labels and pred.dtype.is_floating_point and pred.dim() >= 2:
                from_logits = bool(metric.options.get("from_logits", True))
                if from_logits not in labels:
                    labels[from_logits] = metrics_mod.predicted_labels(pred, from_logits)
                given = labels[from_logits]
            result[name] = metric(pred, y, labels=given).to(torch.float64)
        return result

    @property
    def active(self) -> Tensor:
        return self.record.running

    @property
    def status(self) -> Tensor:
        """[K] int8 status codes (`STATUS_NAMES`)."""
        return self.record.status

    @property
    def failure(self) -> list[str]:
        return self.record.failure

    @property
    def member_epochs(self) -> Tensor:
        """[K] epochs each member has trained (a refilled slot starts at 0)."""
        return self.record.epochs

    @property
    def seeds(self) -> list[int]:
        """Each member's initialization seed."""
        return self.population.seeds

    # ------------------------------------------------------------------------------ training
    def _train_epoch(self) -> Tensor:
        if self.config.retain_memory:
            retain_freed_memory()
        x, y = self.dataset.X_train, self.dataset.y_train
        total = torch.zeros(self.k, dtype=torch.float64, device=self.device)
        count = 0
        for idx in self.sampler:
            xb, yb = (x, y) if self.sampler.full_batch else (x[idx], y[idx])
            with self._autocast():
                out = self.population.forward(xb, train=True)
            out = out.to(self.dtype)  # the loss in the population's dtype (autocast: bf16)
            batch_loss = self.loss.mean(self._loss_input(out), self._targets(yb))
            self.optimizer.zero_grad(set_to_none=True)
            batch_loss.sum().backward()
            self.optimizer.step()
            self.schedule.after_step()
            n = yb.shape[-1]
            total.add_(batch_loss.detach(), alpha=n)  # in float64
            count += n
        return total / max(count, 1)

    def _members_finite(self) -> Tensor:
        """[K] bool: every parameter of the member is finite. One reduction per parameter: a
        matrix-vector product of its [K, n] view with a vector of 2^-100 (float32; 2^-1000
        for float64), which scales every value far below the overflow threshold before the
        sum, so the result is finite iff every element is (inf and NaN stay inf and NaN);
        other dtypes are summed in float64, where their sums cannot overflow."""
        total = torch.zeros(self.k, dtype=torch.float64, device=self.device)
        for p in self.population.params.values():
            flat = p.detach().reshape(self.k, -1)
            scale = _FINITE_SCALE.get(flat.dtype)
            if scale is None:
                total += flat.sum(1, dtype=torch.float64)
                continue
            key = (flat.shape[1], flat.dtype, flat.device)
            vector = self._finite_vectors.get(key)
            if vector is None:
                vector = self._finite_vectors[key] = torch.full(
                    key[:1], scale, dtype=flat.dtype, device=flat.device
                )
            total += flat @ vector
        return torch.isfinite(total)

    def _end_epoch(self, train_loss: Tensor, val: dict[str, Tensor], seconds: float) -> None:
        epoch, record = self.epoch, self.record
        active = self.active
        finite = torch.isfinite(train_loss) & torch.isfinite(val["loss"]) & self._members_finite()
        diverged = active & ~finite
        for k in torch.nonzero(diverged).flatten().tolist():
            record.failure[k] = f"non-finite loss or parameters at epoch {epoch + 1}"
        record.set_status(diverged, FAILED)
        active = active & ~diverged
        monitored = val["loss"] if self.config.monitor == "val_loss" else \
            val[self.config.monitor.removeprefix("val_")]  # fmt: skip
        improved = self.early.update(monitored, epoch, active)
        self.kept.update(improved, active)
        record.set_status(active & self.early.stopped, STOPPED)
        record.epochs += active.long()
        record.set_status(self.active & (record.epochs >= self.config.epochs), FINISHED)
        self.schedule.after_epoch(active, val["loss"])
        self.epoch = epoch + 1
        self.history.append(
            epoch=self.member_epochs,
            trained=active | diverged,
            train_loss=train_loss,
            val=val,
            lr=self._current_lr(),
            status=self.status,
            seconds=seconds,
        )

    def _current_lr(self) -> Tensor:
        lr = self.optimizer.param_groups[0]["lr"]
        return torch.as_tensor(lr, dtype=torch.float64).expand(self.k).clone()

    def run_epoch(self) -> dict[str, Tensor]:
        """Train one epoch, validate, update every member's status; returns the val metrics.
        Members that are not running compute along but their results stay frozen."""
        cfg = self.config
        start = time.perf_counter()
        train_loss = self._train_epoch()
        with self._evaluation_weights():
            val = self.evaluate(self.dataset.X_val, self.dataset.y_val)
            seconds = time.perf_counter() - start
            self.elapsed += seconds
            self._end_epoch(train_loss, val, seconds)
        if self.progress is not None:
            self.progress(self.epoch, cfg.epochs)
        if cfg.checkpoint_every and self.epoch % cfg.checkpoint_every == 0:
            self.save_checkpoint(cfg.checkpoint_path)  # type: ignore[arg-type]
        return val

    @contextmanager
    def _evaluation_weights(self) -> Iterator[None]:
        """Optimizers with an eval()/train() switch (schedule-free) are validated, and their
        weights kept, at the point they are meant to be evaluated at (the averaged x); every
        other optimizer as it is."""
        switch = callable(getattr(self.optimizer, "eval", None)) and callable(
            getattr(self.optimizer, "train", None)
        )
        if switch:
            self.optimizer.eval()
        try:
            yield
        finally:
            if switch:
                self.optimizer.train()

    def fit(self) -> History:
        """Train until every member has finished, stopped or failed; then evaluate on test."""
        while bool(self.active.any()):
            self.run_epoch()
        self._finalize()
        return self.history

    def _finalize(self) -> None:
        """Put each member's kept weights (best on val, or its last) in place; test once."""
        if self.test_results is not None:
            return
        never = self.early.best_epoch < 0  # no finite val score: keep the last weights
        self.kept.restore(self.config.restore_best, never)
        self.test_results = self.evaluate(self.dataset.X_test, self.dataset.y_test)

    # ------------------------------------------------------------------------------ member slots
    @property
    def slots(self) -> list[MemberSlots]:
        """Every per-member part of the run, in the order a reset or copy goes through them
        (the population before the kept weights, which snapshot its fresh weights)."""
        return [self.population, self.optimizer, self.schedule, self.early, self.kept,
                self.history, self.sampler, self.record]  # fmt: skip

    def set_member(self, k: int, values: Mapping[str, Any]) -> None:
        """Change member k's hyperparameters in place (PBT's explore): any of the trainer's
        member keys but "seed", in the members' form (e.g. ``betas`` as a pair). Numbers are
        written into the [K] hyperparameter tensors (no rebuild, no recompilation); the
        member's state is untouched. Settings that are not numbers must stay as they are."""
        unknown = set(values) - set(self.members[0])
        if unknown:
            raise ValueError(f"{sorted(unknown)[0]}: not a member key of this run; valid: "
                             f"{', '.join(sorted(self.members[0]))}")  # fmt: skip
        if "seed" in values:
            raise ValueError("seed: set when a slot starts afresh (replace_member)")
        numbers = {}
        for key, value in values.items():
            if isinstance(value, bool | str) or value is None:
                if value != self.members[k][key]:
                    raise ValueError(f"{key}: must be the same for all members of a population")
            else:
                numbers[key] = value
        extras = {key: v for key, v in numbers.items() if key in OPTIMIZER_EXTRAS}
        self.optimizer.set_member(k, self.optimizer.spec.from_kwargs(numbers) | extras)
        if "lr" in numbers:
            self.schedule.set_member_lr(k, float(numbers["lr"]))
        self.members[k] = {**self.members[k], **values}

    def replace_member(self, k: int, member: Mapping[str, Any]) -> None:
        """Give slot k a new configuration (a new tuning trial): fresh weights from its seed,
        fresh optimizer state, its hyperparameters, and a clean record. The other members
        are untouched. `member` has the same keys as the trainer's members."""
        self.replace_members({k: member})

    def replace_members(self, members: Mapping[int, Mapping[str, Any]]) -> None:
        """`replace_member` for several slots at once ({slot: member}): each slot's state is
        reset in one pass over the population's tensors for all of them, not one per slot."""
        expected = set(self.members[0])
        for k, member in members.items():
            if isinstance(k, bool) or not isinstance(k, Integral) or not 0 <= k < self.k:
                raise ValueError(f"slot: expected an int in [0, {self.k}), got {k!r}")
            if set(member) != expected:
                raise ValueError(
                    f"member: expected the keys {sorted(expected)}, got {sorted(member)}"
                )
        if not members:
            return
        slots = [int(k) for k in members]
        for k, member in zip(slots, members.values(), strict=True):
            member = dict(member)
            seed = int(member.pop("seed", self.config.seed + k))
            self.set_member(k, member)
            self.population.seeds[k] = seed
            self.sampler.set_member_seed(k, seed)
            if "seed" in self.members[0]:
                self.members[k]["seed"] = seed
        mask = member_mask(slots, self.k, self.device)
        for slot in self.slots:
            slot.reset_members(mask)

    def copy_member(self, src: int, dst: int) -> None:
        """Member dst takes member src's whole state (PBT's exploit): weights and buffers,
        optimizer state and hyperparameters, schedule position and constants, early-stopping
        counters, kept weights, batch stream and status. From then on it computes exactly
        what src computes, given the same batches (dropout masks are drawn per member)."""
        if src == dst:
            return
        for slot in self.slots:
            slot.copy_member(src, dst)
        self.members[dst] = dict(self.members[src])

    def stop_member(self, k: int) -> None:
        """Stop member k now (e.g. pruned by the tuner): its kept weights stay as they are."""
        if int(self.status[k]) == RUNNING:
            self.status[k] = STOPPED

    def member_module(self, k: int, best: bool = True) -> torch.nn.Module:
        """Member k as a plain module with its best-on-val weights (or its last ones)."""
        module = self.population.member(k)
        use_best = best and int(self.early.best_epoch[k]) >= 0
        module.load_state_dict(self.kept.member_state(k, use_best))
        return module.eval()

    # ------------------------------------------------------------------------------ results
    def status_names(self) -> list[str]:
        return [STATUS_NAMES[int(s)] for s in self.status.tolist()]

    def best_member(self) -> int:
        """The member with the best monitored validation value (failed members last)."""
        best = self.early.best.clone()
        worst = math.inf if self.early.mode == "min" else -math.inf
        best = torch.where(torch.isfinite(best), best, torch.full_like(best, worst))
        return int(best.argmin() if self.early.mode == "min" else best.argmax())

    def summary(self) -> list[dict[str, Any]]:
        """One row per member: its configuration, status, best epoch and val/test metrics."""
        rows = []
        names = self.status_names()
        for k in range(self.k):
            row: dict[str, Any] = {"member": k, **self.members[k], "status": names[k]}
            if self.failure[k]:
                row["failure"] = self.failure[k]
            row["best_epoch"] = int(self.early.best_epoch[k]) + 1
            row["epochs"] = int(self.member_epochs[k])
            for key, value in (self.test_results or {}).items():
                row[f"test_{key}"] = float(value[k])
            rows.append(row)
        return rows

    # ------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "population": self.population.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "sampler": self.sampler.state_dict(),
            "early": self.early.state_dict(),
            **self.record.state_dict(),
            **self.kept.state_dict(),
            "history": self.history.state_dict(),
            "members": [dict(m) for m in self.members],
            "epoch": self.epoch,
            "elapsed": self.elapsed,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.population.load_state_dict(state["population"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        self.early.load_state_dict(state["early"])
        self.record.load_state_dict(state)
        self.kept.load_state_dict(state)
        self.history.load_state_dict(state["history"])
        self.members = [dict(m) for m in state["members"]]
        self.epoch, self.elapsed = int(state["epoch"]), float(state["elapsed"])
        self.schedule.load_state_dict(state["schedule"])  # last: it writes the lrs

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Write the whole trainer state atomically (a temporary file renamed into place)."""
        from optimkit.outputs import atomic_save

        state = self.state_dict()
        atomic_save(path, lambda tmp: torch.save(state, tmp))

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"checkpoint: no file {str(path)!r}")
        self.load_state_dict(torch.load(path, map_location=self.device, weights_only=False))


def _stack_member_values(key: str, values: list[Any]) -> Any:
    """One element of a tuple argument (betas, etas, ...) across members: a [K] float64
    tensor of numbers, or the shared value of a non-number (None, a string), which must agree."""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return torch.tensor([float(v) for v in values], dtype=torch.float64)
    if any(v != values[0] for v in values):
        raise ValueError(f"{key}: must be the same for all members of a population")
    return values[0]
