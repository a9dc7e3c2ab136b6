r"""Schedule-Free SGD and AdamW (Defazio et al., 2024, "The Road Less Scheduled", NeurIPS,
arXiv:2405.15682), as ``schedulefree.SGDScheduleFree`` / ``AdamWScheduleFree`` (v1.4.1).

The parameters hold y (train mode) or x (eval mode); state ``z`` holds the base sequence. With
:math:`c_{k+1} = w_k / \sum_{i\le k} w_i`, :math:`w_k = (k+1)^r\,\text{lr\_max}^{p}`
(``weight_lr_power`` p, lr_max the largest warmed-up lr so far), :math:`\beta` the momentum
(SGD) or beta1 (AdamW) and :math:`\hat g` the step direction (g + wd y for SGD; for AdamW
:math:`g / (\sqrt{v/(1-\beta_2^{k+1})} + \epsilon) + \text{wd}\,y` with
:math:`v \leftarrow \beta_2 v + (1-\beta_2) g^2`):

.. math::
    y \leftarrow (1 - c_{k+1})\,y + c_{k+1} z + lr\,(\beta(1-c_{k+1}) - 1)\,\hat g, \quad
    z \leftarrow z - lr\,\hat g

(y, z, x = (y - (1-\beta) z)/\beta`), lr warmed up linearly over ``warmup_steps``.
``eval()`` moves each member's parameters to x (``p.lerp_(z, 1 - 1/beta)``), ``train()``
back to y (``p.lerp_(z, 1 - beta)``), each with its own beta.

Per member: the reference's group scalars ``k``, ``weight_sum``, ``lr_max`` and
``scheduled_lr`` are float64 [K] tensors in the same group keys (0-d for a plain model),
advanced also for groups without gradients, as the reference does. Differences from the
reference: the optimizer starts in train mode (the reference starts in eval mode and raises
in step() until train() is called; at the start x = y = z, so train()/eval() calls change
nothing else); ``p.grad`` is not modified in place (the reference adds the weight decay into
it and, for AdamW, divides it by the denominator); ``compile=True`` runs eagerly. A step in
eval mode raises the reference's Exception.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from optimkit.optim.base import GroupStep, prox_l1_group_
from optimkit.optim.dadapt import GroupScalarsOptimizer, nonzero
from optimkit.optim.members import bc
from optimkit.optim.spec import Hyperparameter, OptimizerSpec, betas, eps, lr, weight_decay
from optimkit.optim.transforms import HP, State, Transform, lerp_

#: the references' default for ``foreach``
FOREACH = hasattr(torch, "_foreach_mul_")
_NOT_TRAIN = (
    "Optimizer was not in train mode when step is called. Please insert .train() and .eval() "
    "calls on the optimizer. See documentation for details."
)


def _warmup() -> Hyperparameter:
    return Hyperparameter(
        "warmup_steps", 0, "linear learning-rate warm-up steps", kind="int", low=0
    )


def _r() -> Hyperparameter:
    return Hyperparameter("r", 0.0, "polynomial weighting power of the average", test=(0.0, 1.0))


def _weight_lr_power() -> Hyperparameter:
    return Hyperparameter(
        "weight_lr_power", 2.0, "power of lr_max in the average's weights", test=(0.0, 3.0)
    )


class _ScheduleFree(GroupScalarsOptimizer):
    """The shared part: group scalars, the averaging weight, train()/eval()."""

    scalars = ("k", "weight_sum", "lr_max", "scheduled_lr")
    momentum_name = "momentum"

    def fresh_scalar(self, group: dict[str, Any], name: str, hp: HP) -> Tensor:
        value = -1.0 if name == "lr_max" else 0.0
        return torch.full_like(hp["lr"], value)

    def _beta(self, hp: HP) -> Tensor:
        return hp[self.momentum_name]

    # --------------------------------------------------------------------- modes
    @torch.no_grad()
    def eval(self) -> None:
        """Parameters to x (the averaged sequence), each member with its own beta."""
        for index, group in enumerate(self.param_groups):
            if group["train_mode"]:
                self._move(group, index, to_x=True)
                group["train_mode"] = False

    @torch.no_grad()
    def train(self) -> None:
        """Parameters back to y (where gradients are taken), each member with its own beta."""
        for index, group in enumerate(self.param_groups):
            if not group["train_mode"]:
                self._move(group, index, to_x=False)
                group["train_mode"] = True

    def _move(self, group: dict[str, Any], index: int, to_x: bool) -> None:
        assert self.axis is not None
        beta = self._beta(self.hyperparameters(group, index))
        weight = 1 - 1 / beta if to_x else 1 - beta
        for p in group["params"]:
            state = self.state[p]
            if "z" in state:
                lerp_(self.axis.view(p), self.axis.view(state["z"]).to(p.device), weight)

    def check_step(self) -> None:
        if not self.param_groups[0]["train_mode"]:
            raise Exception(_NOT_TRAIN)

    # --------------------------------------------------------------------- the average
    def advance(self, group: dict[str, Any], hp: HP) -> tuple[Tensor, Tensor]:
        """One step of the group's scalars: returns (ckp1, the warmed-up lr), both [K]."""
        k = self.scalar(group, "k")
        warmup = group["warmup_steps"]
        lr = hp["lr"]
        if warmup > 0:
            lr = lr * torch.where(k < warmup, (k + 1) / warmup, 1.0)
        self.set_scalar(group, "scheduled_lr", lr)
        lr_max = torch.maximum(lr, self.scalar(group, "lr_max", -1.0))
        self.set_scalar(group, "lr_max", lr_max)
        weight = (k + 1) ** hp["r"] * lr_max ** hp["weight_lr_power"]
        weight_sum = self.scalar(group, "weight_sum") + weight
        self.set_scalar(group, "weight_sum", weight_sum)
        ckp1 = torch.where(weight_sum == 0, 0.0, weight / weight_sum)
        self.set_scalar(group, "k", k + 1)
        return ckp1, lr

    def update_group(self, w: GroupStep) -> None:
        ckp1, lr = self.advance(w.group, w.hp)
        self.update_params(w, ckp1, lr)
        prox_l1_group_(w)

    def after_step(self) -> None:
        """The reference advances k, lr_max and weight_sum of groups without gradients too."""
        for index, group in enumerate(self.param_groups):
            if not any(p.grad is not None for p in group["params"]):
                self.advance(group, self.hyperparameters(group, index))

    def update_params(self, w: GroupStep, ckp1: Tensor, lr: Tensor) -> None:
        raise NotImplementedError

    @staticmethod
    def _y_z_step(y: Tensor, z: Tensor, g: Tensor, ckp1: Tensor, lr: Tensor, beta: Tensor) -> None:
        """y <- lerp(y, z, ckp1) + lr (beta (1 - ckp1) - 1) g; z <- z - lr g."""
        lerp_(y, z, ckp1)
        y.addcmul_(g, bc(lr * (beta * (1 - ckp1) - 1), y))
        z.addcmul_(g, bc(-lr, z))


class SGDScheduleFree(_ScheduleFree):
    """Schedule-Free SGD (``schedulefree.SGDScheduleFree``'s arguments, defaults and update;
    every number may be [K]). Call ``train()`` before training steps and ``eval()`` before
    evaluating or saving, as with the reference."""

    spec = OptimizerSpec(
        name="sgd_schedule_free",
        summary="SGD without a schedule: interpolated averaging of the iterates",
        reference="schedulefree.SGDScheduleFree",
        package="schedulefree",
        family="schedule-free",
        hyperparameters=(
            lr(1.0, tune=(1e-3, 10.0)),
            Hyperparameter(
                "momentum",
                0.9,
                "interpolation (momentum) factor",
                low=0.0,
                high=1.0,
                low_open=True,
                high_open=True,
                tune=(0.5, 0.99),
            ),
            weight_decay(0.0, "L2 penalty at y (coupled: g + wd y)"),
            _warmup(),
            _r(),
            _weight_lr_power(),
        ),
        test_kwargs={"warmup_steps": 5},
        paper="Defazio et al. (2024), NeurIPS, arXiv:2405.15682",
    )

    def __init__(
        self,
        params,
        lr=1.0,
        momentum=0.9,
        weight_decay=0,
        warmup_steps=0,
        r=0.0,
        weight_lr_power=2,
        foreach=FOREACH,
        **options,
    ) -> None:
        defaults = dict(
            lr=lr, momentum=momentum, r=r, k=0, warmup_steps=warmup_steps, train_mode=True,
            weight_sum=0.0, lr_max=-1.0, scheduled_lr=0.0, weight_lr_power=weight_lr_power,
            weight_decay=weight_decay,
        )  # fmt: skip
        super().__init__(params, defaults, foreach=foreach, **options)

    def make_transform(self, group: dict[str, Any]) -> Transform:
        return Transform(_clone_z, _unused)

    def update_params(self, w: GroupStep, ckp1: Tensor, lr: Tensor) -> None:
        decay_on, beta = nonzero(w.group["weight_decay"]), w.hp["momentum"]
        for y, g, st in zip(w.params, w.grads, w.states, strict=True):
            st["step"].add_(1)
            if decay_on:
                g = g.addcmul(y, bc(w.hp["weight_decay"], y))
            self._y_z_step(y, st["z"], g, ckp1, lr, beta)


class AdamWScheduleFree(_ScheduleFree):
    """Schedule-Free AdamW (``schedulefree.AdamWScheduleFree``'s arguments, defaults and
    update; every number may be [K]). Call ``train()`` before training steps and ``eval()``
    before evaluating or saving, as with the reference."""

    momentum_name = "beta1"
    spec = OptimizerSpec(
        name="adamw_schedule_free",
        summary="AdamW without a schedule: interpolated averaging of the iterates",
        reference="schedulefree.AdamWScheduleFree",
        package="schedulefree",
        family="schedule-free",
        hyperparameters=(
            lr(0.0025, tune=(1e-4, 1e-1)),
            Hyperparameter(
                "beta1",
                0.9,
                "interpolation (momentum) factor",
                key=("betas", 0),
                low=0.0,
                high=1.0,
                low_open=True,
                high_open=True,
                tune=(0.5, 0.99),
            ),
            betas()[1],
            eps(1e-8),
            weight_decay(0.0, "weight decay at y, added to the normalized step"),
            _warmup(),
            _r(),
            _weight_lr_power(),
        ),
        test_kwargs={"warmup_steps": 5},
        paper="Defazio et al. (2024), NeurIPS, arXiv:2405.15682",
    )

    def __init__(
        self,
        params,
        lr=0.0025,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0,
        warmup_steps=0,
        r=0.0,
        weight_lr_power=2.0,
        foreach=FOREACH,
        **options,
    ) -> None:
        defaults = dict(
            lr=lr, betas=betas, eps=eps, r=r, k=0, warmup_steps=warmup_steps, train_mode=True,
            weight_sum=0.0, lr_max=-1.0, scheduled_lr=0.0, weight_lr_power=weight_lr_power,
            weight_decay=weight_decay,
        )  # fmt: skip
        super().__init__(params, defaults, foreach=foreach, **options)

    def make_transform(self, group: dict[str, Any]) -> Transform:
        def init(p: Tensor, hp: HP) -> State:
            st = _clone_z(p, hp)
            st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            return st

        return Transform(init, _unused)

    def update_params(self, w: GroupStep, ckp1: Tensor, lr: Tensor) -> None:
        hp = w.hp
        beta1, beta2 = hp["beta1"], hp["beta2"]
        k = self.scalar(w.group, "k") - 1  # advance() already counted this step
        bias_correction2 = 1 - beta2 ** (k + 1)
        decay_on = nonzero(w.group["weight_decay"])
        for y, g, st in zip(w.params, w.grads, w.states, strict=True):
            st["step"].add_(1)
            v = st["exp_avg_sq"]
            v.mul_(bc(beta2, v)).addcmul_(g.mul(bc(1 - beta2, g)), g)
            denom = v.div(bc(bias_correction2, v)).sqrt_().add_(bc(hp["eps"], v))
            g = g.div(denom)
            if decay_on:
                g = g.addcmul(y, bc(hp["weight_decay"], y))
            self._y_z_step(y, st["z"], g, ckp1, lr, beta1)


def _clone_z(p: Tensor, hp: HP) -> State:
    return {"z": p.clone(memory_format=torch.preserve_format)}


def _unused(g: Tensor, state: State, p: Tensor, hp: HP) -> None:
    raise AssertionError("schedule-free updates run in update_params")
