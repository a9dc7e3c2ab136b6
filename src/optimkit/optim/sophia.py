"""Sophia-H: clipped diagonal second-order steps with Hutchinson's Hessian estimate (Liu et
al., 2023, "Sophia: A Scalable Stochastic Second-order Optimizer for Language Model
Pre-training", arXiv:2305.14342), as pytorch_optimizer.SophiaH."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from optimkit.optim.base import PopulationOptimizer
from optimkit.optim.members import bc
from optimkit.optim.spec import (
    Hyperparameter,
    OptimizerSpec,
    betas,
    eps,
    flag,
    lr,
    maximize,
    weight_decay,
)
from optimkit.optim.transforms import HP, State, Transform, chain, head, lerp_, zeros

Generators = torch.Generator | Sequence[torch.Generator] | None


def hutchinson_noise(
    p: Tensor, distribution: str, generator: Generators, members: int | None
) -> Tensor:
    """One noise vector z like p: N(0, 1) or Rademacher +-1. ``generator`` None draws from
    torch's global RNG with ``randn_like``/``randint_like`` as the reference does; one
    generator draws the whole tensor from it; a sequence of K generators draws member m's
    slice from generator m (so member m sees what a reference run alone sees from a global RNG
    seeded like generator m)."""

    def draw(shape: Any, g: torch.Generator | None) -> Tensor:
        if distribution == "rademacher":
            if g is None:
                return torch.randint_like(p, 0, 2) * 2.0 - 1.0
            z = torch.randint(0, 2, shape, generator=g, dtype=p.dtype, device=p.device)
            return z * 2.0 - 1.0
        if g is None:
            return torch.randn_like(p)
        return torch.randn(shape, generator=g, dtype=p.dtype, device=p.device)

    if generator is None or isinstance(generator, torch.Generator):
        return draw(p.shape, generator)
    gens = list(generator)
    if members is None or len(gens) != members:
        raise ValueError(
            f"generator: expected one torch.Generator or {members} (one per member), "
            f"got {len(gens)}"
        )
    return torch.stack([draw(p.shape[1:], g) for g in gens])


def scale_by_sophia(update_hessian: bool) -> Transform:
    r"""Sophia's direction :math:`\mathrm{clip}(m / \max(h, \epsilon), \rho)` with
    :math:`m \leftarrow \beta_1 m + (1-\beta_1) g` and, on the steps with a new estimate
    :math:`\hat h`, :math:`h \leftarrow \beta_2 h + (1-\beta_2) \hat h`."""

    def update(g: Tensor, state: State, param: Tensor, hp: HP) -> Tensor:
        lerp_(state["momentum"], g, 1 - hp["beta1"])
        if update_hessian:
            lerp_(state["hessian_moment"], state["hessian"], 1 - hp["beta2"])
        d = state["hessian_moment"].clamp(min=bc(hp["eps"], param))
        d = torch.div(state["momentum"], d, out=d)
        rho = bc(hp["p"], param)
        return d.clamp_(-rho, rho)

    return Transform(zeros("momentum", "hessian_moment", "hessian"), update)


def sophia_weight_decay(group: dict) -> list[Transform]:
    """The reference's weight decay: decoupled p (1 - wd lr) (``fixed_decay``: p (1 - wd)), or
    coupled g + wd p; none when weight_decay is the number 0."""
    wd = group["weight_decay"]
    if not isinstance(wd, Tensor) and wd == 0:
        return []
    fixed, decoupled = group["fixed_decay"], group["weight_decouple"]

    def update(g: Tensor, state: State, p: Tensor, hp: HP) -> Tensor:
        if decoupled:
            rate = hp["weight_decay"] * (1.0 if fixed else hp["lr"])
            p.mul_(bc(1.0 - rate, p))
            return g
        return g.addcmul(p, bc(hp["weight_decay"], p))

    return [Transform(lambda p, hp: {}, update)]


class SophiaH(PopulationOptimizer):
    r"""Sophia-H (pytorch_optimizer.SophiaH's arguments and defaults); every number may be
    [K].

    .. math::
        m \leftarrow \beta_1 m + (1-\beta_1) g, \qquad
        h \leftarrow \beta_2 h + (1-\beta_2) \hat h \ \text{(every update\_period steps)},
        \qquad p \leftarrow p - lr\, \mathrm{clip}\big(m / \max(h, \epsilon), -\rho, \rho\big)

    with :math:`\rho` = ``p`` and :math:`\hat h` Hutchinson's estimate of the Hessian diagonal,
    :math:`\mathbb{E}[z \odot (H z)]` over ``num_samples`` draws of z (``gaussian`` or
    ``rademacher``). Defaults: lr=6e-2, betas=(0.96, 0.99), p=1e-2, update_period=10,
    eps=1e-12; decoupled weight decay.

    ``step(closure)`` needs gradients with their graph: the closure calls
    ``loss.backward(create_graph=True)`` (a population's loss is the sum of its members'
    losses, so H z is each member's own Hessian-vector product). Or pass the estimate
    yourself: ``step(hessian=[...])``, one tensor per parameter in param-group order (stored
    layout; [K, ...] for a population), as the reference. The noise comes from torch's global
    RNG like the reference's (a plain model draws exactly what the reference draws after the
    same ``torch.manual_seed``), or from ``generator``: one torch.Generator, or a list of K
    (member m then draws exactly what a reference run draws from a global RNG seeded as
    generator m). Generators are not part of the state_dict.

    As the reference: ``update_period``, ``num_samples`` and ``hessian_distribution`` are
    per optimizer; the group's int ``step`` schedules the estimates. Differences: ``maximize``
    and coupled weight decay do not modify ``p.grad`` in place.
    """

    spec = OptimizerSpec(
        name="sophiah",
        summary="clipped momentum over a Hutchinson Hessian-diagonal EMA (needs create_graph)",
        reference="pytorch_optimizer.SophiaH",
        package="pytorch-optimizer",
        family="second-order",
        closure=True,
        hyperparameters=(
            lr(6e-2, tune=(1e-4, 1e-1)),
            *betas(0.96, 0.99),
            weight_decay(
                0.0, "weight decay (decoupled: p (1 - lr wd) unless weight_decouple=False)"
            ),
            flag("weight_decouple", "decoupled weight decay", default=True),
            flag("fixed_decay", "decoupled decay not scaled by lr"),
            Hyperparameter(
                "p",
                1e-2,
                "clip of the preconditioned update",
                low=0.0,
                tune=(1e-3, 1e-1),
                log=True,
            ),
            Hyperparameter(
                "update_period", 10, "steps between Hessian estimates", kind="int", low=1
            ),
            Hyperparameter("num_samples", 1, "noise draws per Hessian estimate", kind="int", low=1),
            Hyperparameter(
                "hessian_distribution",
                "gaussian",
                "distribution of the Hutchinson noise",
                kind="choice",
                choices=("gaussian", "rademacher"),
            ),
            eps(1e-12),
            maximize(),
        ),
        paper="Liu et al. (2023), arXiv:2305.14342",
    )

    def __init__(
        self,
        params,
        lr=6e-2,
        betas=(0.96, 0.99),
        weight_decay=0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        p=1e-2,
        update_period: int = 10,
        num_samples: int = 1,
        hessian_distribution: str = "gaussian",
        eps=1e-12,
        maximize: bool = False,
        foreach: bool | None = None,
        *,
        generator: Generators = None,
        **options,
    ) -> None:
        for name, value in (
            ("update_period", update_period),
            ("num_samples", num_samples),
            ("hessian_distribution", hessian_distribution),
        ):
            self.spec.hyperparameter(name).check(value)
        self.update_period = update_period
        self.num_samples = num_samples
        self.distribution = hessian_distribution
        self.generator = generator
        self._update_hessian = False
        defaults = dict(
            lr=lr,
            betas=betas,
            weight_decay=weight_decay,
            weight_decouple=weight_decouple,
            fixed_decay=fixed_decay,
            p=p,
            eps=eps,
            maximize=maximize,
        )
        super().__init__(params, defaults, foreach=foreach, **options)

    def make_transform(self, group: dict) -> Transform:
        return chain(
            *head(group), *sophia_weight_decay(group), scale_by_sophia(self._update_hessian)
        )

    def step(  # type: ignore[override]
        self, closure: Callable[[], Any] | None = None, hessian: Sequence[Tensor] | None = None
    ) -> Any:
        """One update; every ``update_period`` steps (or when ``hessian`` is given) a new
        Hessian-diagonal estimate first. Returns closure() if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            live = []
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None and not self.state[p]:
                        self.state[p] = self.init_state(group, p)
                    if p.requires_grad and p.grad is not None and not p.grad.is_sparse:
                        live.append(p)
        step = int(self.param_groups[0].get("step", 0)) + 1
        self._update_hessian = hessian is not None or (step - 1) % self.update_period == 0
        if hessian is not None:
            self._set_hessian(hessian)
        elif self._update_hessian:
            self._hutchinson(live)
        for group in self.param_groups:
            group["step"] = int(group.get("step", 0)) + 1
        super().step()
        return loss

    @torch.no_grad()
    def _set_hessian(self, hessian: Sequence[Tensor]) -> None:
        params = [p for group in self.param_groups for p in group["params"]]
        if len(hessian) != len(params):
            raise ValueError(f"hessian: expected {len(params)} tensors, got {len(hessian)}")
        for p, h in zip(params, hessian, strict=True):
            if p.size() != h.size():
                raise ValueError(
                    f"the shape of parameter and hessian does not match. {p.size()} vs {h.size()}"
                )
            if self.state[p]:
                self.state[p]["hessian"].copy_(h)

    @torch.no_grad()
    def _hutchinson(self, params: list[Tensor]) -> None:
        """The reference's estimate: h = (1/n) sum_i z_i * (H z_i), H z by double backward."""
        if not params:
            return
        for p in params:
            self.state[p]["hessian"].zero_()
        grads = [p.grad for p in params if p.grad is not None]
        for i in range(self.num_samples):
            zs = [hutchinson_noise(p, self.distribution, self.generator, self.members)
                  for p in params]  # fmt: skip
            try:
                h_zs = torch.autograd.grad(
                    grads, params, grad_outputs=zs, retain_graph=i < self.num_samples - 1
                )
            except RuntimeError as err:
                raise RuntimeError(
                    "SophiaH estimates the Hessian from the gradients' graph: call "
                    "loss.backward(create_graph=True) (or pass step(hessian=...))"
                ) from err
            for h_z, z, p in zip(h_zs, zs, params, strict=True):
                self.state[p]["hessian"].addcmul_(h_z, z, value=1.0 / self.num_samples)
