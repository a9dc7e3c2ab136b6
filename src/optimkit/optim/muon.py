"""Muon (Jordan et al., 2024): orthogonalized momentum for 2-D parameters, as torch.optim.Muon."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from optimkit.optim.base import GroupStep, PopulationOptimizer, prox_l1_group_
from optimkit.optim.members import bc
from optimkit.optim.spec import Hyperparameter, OptimizerSpec, flag, lr, weight_decay
from optimkit.optim.transforms import HP, State, Transform

DEFAULT_NS = (3.4445, -4.7750, 2.0315)
ADJUST_LR = (None, "original", "match_rms_adamw")


def orthogonalize(
    g: Tensor, coefficients: tuple[float, float, float], steps: int, eps: Tensor
) -> Tensor:
    r"""torch's quintic Newton-Schulz iteration on one matrix, op for op (bfloat16):

    .. math::
        X_0 = G / \max(\|G\|_F, \epsilon), \quad A = X X^\top, \quad
        X \leftarrow a X + (b A + c A^2) X

    (on the transpose of a tall matrix). As torch, a bfloat16 ``g`` is normalized in place.
    """
    a, b, c = coefficients
    x = g.bfloat16()
    tall = g.size(0) > g.size(1)
    if tall:
        x = x.T
    x.div_(x.norm().clamp(min=eps))
    for _ in range(steps):
        gram = x @ x.T
        update = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.addmm(x, update, x, beta=a)
    return x.T if tall else x


def newton_schulz(
    u: Tensor, coefficients: tuple[float, float, float] | None, hp: HP, steps: int
) -> Tensor:
    """`orthogonalize` for each member's matrix of ``u`` ([K, m, n]) -> [K, m, n] bfloat16.

    With shared coefficients (numbers), each member runs torch's own 2-D ops (bit for bit
    torch; batched bfloat16 matmuls round differently from torch's per-matrix ``addmm`` now
    and then, by one bfloat16 ulp). With per-member coefficients ([K] tensors in hp) the
    iteration runs batched, b A + c A^2 and a X + (.) X formed in float32 and rounded once:
    torch's update up to ``addmm``'s accumulation order in bfloat16.
    """
    eps = hp["eps"].to(torch.bfloat16)
    if coefficients is not None:
        return torch.stack(
            [orthogonalize(u[k], coefficients, steps, eps[k]) for k in range(u.shape[0])]
        )
    x = u.bfloat16()
    tall = u.size(-2) > u.size(-1)
    if tall:
        x = x.mT
    norm = torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True)
    x.div_(torch.clamp(norm, min=eps.reshape(-1, 1, 1)))
    coef = {n: hp[n].to(torch.float32).reshape(-1, 1, 1) for n in ("ns_a", "ns_b", "ns_c")}
    for _ in range(steps):
        g32, x32 = (x @ x.mT).float(), x.float()
        update = (g32 @ g32).mul_(coef["ns_c"]).add_(g32 * coef["ns_b"]).bfloat16()
        x = (update.float() @ x32).add_(x32 * coef["ns_a"]).bfloat16()
    return x.mT if tall else x


def _lerp_(buf: Tensor, end: Tensor, weight: Tensor) -> Tensor:
    """buf <- lerp(buf, end, weight) in place with a [K] weight; 16-bit tensors in float32
    and rounded once, as torch's lerp with a number weight."""
    w = bc(weight, buf)
    if w.dtype == buf.dtype:
        return buf.lerp_(end, w)
    return buf.copy_(buf.float().lerp_(end.float(), w))


def adjusted_ratio(fn: str | None, shape: torch.Size) -> float:
    """torch's learning-rate adjustment for an A x B matrix: sqrt(max(1, A/B)) ("original",
    None) or 0.2 sqrt(max(A, B)) ("match_rms_adamw")."""
    a, b = shape[0], shape[1]
    if fn is None or fn == "original":
        return math.sqrt(max(1, a / b))
    if fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(a, b))
    return 1.0


def muon_update_(
    params: list[Tensor],
    grads: list[Tensor],
    bufs: list[Tensor],
    hp: HP,
    *,
    nesterov: bool,
    coefficients: tuple[float, float, float] | None,
    ns_steps: int,
    adjust_lr_fn: str | None,
    decay: bool,
) -> None:
    r"""One Muon step in place on member views [K, m, n] (torch's ``_single_tensor_muon``):

    .. math::
        B_t = \mu B_{t-1} + (1-\mu) g_t, \quad
        \tilde B_t = g_t + \mu (B_t - g_t)\ (\text{nesterov})\ \text{or}\ B_t, \quad
        p \leftarrow p (1 - lr\,\lambda) - lr\,r\,\mathrm{NS}(\tilde B_t)

    with r from `adjusted_ratio`. (torch's docstring writes B_t = mu B + g; its code, which
    this follows, keeps the exponential average above.)
    """
    for p, g, buf in zip(params, grads, bufs, strict=True):
        mu = hp["momentum"]
        _lerp_(buf, g, 1 - mu)
        u = _lerp_(g.clone(), buf, mu) if nesterov else buf
        o = newton_schulz(u, coefficients, hp, ns_steps)
        ratio = adjusted_ratio(adjust_lr_fn, p.shape[1:3])
        if decay:
            p.mul_(bc(1 - hp["lr"] * hp["weight_decay"], p))
        p.addcmul_(o, bc(-(hp["lr"] * ratio), p))


class Muon(PopulationOptimizer):
    """Muon (torch.optim.Muon's arguments, defaults and state: ``momentum_buffer`` only); every
    number may be a [K] tensor.

    Like torch it takes 2-D parameters only; a population takes [K, m, n] stacks (each member
    a matrix) and runs Newton-Schulz for all members as batched bfloat16 matmuls
    (`newton_schulz`). Decoupled weight decay p (1 - lr wd) as torch (default 0.1).
    ``compile=True`` is accepted, but the step runs eagerly: inductor changes the bfloat16
    rounding of the iteration, which torch runs eagerly. Reference: Jordan et al. (2024),
    Muon: an optimizer for hidden layers in neural networks; Liu et al. (2025), Muon is
    scalable for LLM training (``adjust_lr_fn="match_rms_adamw"``).
    """

    spec = OptimizerSpec(
        name="muon",
        params="matrices",
        summary="momentum orthogonalized by Newton-Schulz iterations, for 2-D weights",
        reference="torch.optim.Muon",
        hyperparameters=(
            lr(1e-3, tune=(1e-4, 1e-1)),
            weight_decay(0.1, "decoupled weight decay: p (1 - lr wd)"),
            Hyperparameter("momentum", 0.95, "momentum factor (an exponential average)",
                           low=0.0, tune=(0.8, 0.99), test=(0.0, 0.99)),
            flag("nesterov", "Nesterov momentum: orthogonalize g + mu (b - g)", default=True),
            *(Hyperparameter(f"ns_{n}", v, f"Newton-Schulz coefficient {n}",
                             key=("ns_coefficients", i))
              for i, (n, v) in enumerate(zip("abc", DEFAULT_NS, strict=True))),
            Hyperparameter("eps", 1e-7, "floor of the Frobenius norm in Newton-Schulz",
                           test=(1e-7, 1e-3), log=True),
            Hyperparameter("ns_steps", 5, "Newton-Schulz iterations", kind="int", high=99),
            Hyperparameter("adjust_lr_fn", None, "learning-rate adjustment to the matrix shape",
                           kind="choice", choices=ADJUST_LR, nullable=True),
        ),
        paper="Jordan et al. (2024), Muon: an optimizer for hidden layers in neural networks",
    )  # fmt: skip

    def __init__(
        self,
        params,
        lr=1e-3,
        weight_decay=0.1,
        momentum=0.95,
        nesterov: bool = True,
        ns_coefficients=DEFAULT_NS,
        eps=1e-7,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = None,
        **options,
    ) -> None:
        defaults = dict(
            lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
            ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps,
            adjust_lr_fn=adjust_lr_fn,
        )  # fmt: skip
        super().__init__(params, defaults, **options)
        for group in self.param_groups:
            self._check_matrices(group)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        if self.axis is not None:  # a group added after construction
            self._check_matrices(self.param_groups[-1])

    def _check_matrices(self, group: dict[str, Any]) -> None:
        assert self.axis is not None
        for p in group["params"]:
            if self.axis.view(p).dim() != 3:
                where = f" (with K = {self.axis.k} members: [K, m, n])" if self.axis.stacked else ""
                raise ValueError(
                    f"Muon only supports 2D parameters{where} whereas we found a parameter "
                    f"with size: {p.size()}"
                )

    def init_state(self, group: dict[str, Any], p: Tensor, hp: HP | None = None) -> State:
        """torch's state: ``momentum_buffer`` only (no step counter)."""
        state = super().init_state(group, p, hp)
        del state["step"]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for state in self.state.values():
            state.pop("step", None)  # the base adds one to states saved without it

    def make_transform(self, group: dict[str, Any]) -> Transform:
        """The per-tensor form of the step (moves p itself; `update_group` runs it without
        a step counter, which torch's Muon does not keep)."""
        coefficients = tuple(group["ns_coefficients"])
        numbers = not any(isinstance(c, Tensor) for c in coefficients)
        wd = group["weight_decay"]
        flags = dict(
            nesterov=bool(group["nesterov"]),
            coefficients=tuple(float(c) for c in coefficients) if numbers else None,
            ns_steps=int(group["ns_steps"]), adjust_lr_fn=group["adjust_lr_fn"],
            decay=isinstance(wd, Tensor) or wd != 0,
        )  # fmt: skip

        def init(p: Tensor, hp: HP) -> State:
            return {"momentum_buffer": torch.zeros_like(p, memory_format=torch.preserve_format)}

        def update(g: Tensor, state: State, p: Tensor, hp: HP) -> None:
            muon_update_([p], [g], [state["momentum_buffer"]], hp, **flags)  # type: ignore[arg-type]

        return Transform(init, update)

    def update_group(self, w: GroupStep) -> None:
        for p, g, state in zip(w.params, w.grads, w.states, strict=True):
            w.transform.update(g, state, p, w.hp)
        prox_l1_group_(w)
