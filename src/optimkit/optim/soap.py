"""SOAP: Adam in the eigenbasis of Shampoo's preconditioner (Vyas et al., 2024, "SOAP:
Improving and Stabilizing Shampoo using Adam", arXiv:2409.11321), as pytorch_optimizer.SOAP.

Every member keeps its own preconditioner statistics and eigenbases; the linear algebra (outer
products, ``eigh``, one power iteration with QR, projections) is batched over the member axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from optimkit.optim.base import GroupStep, PopulationOptimizer, prox_l1_group_
from optimkit.optim.members import bc, member_view
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
from optimkit.optim.transforms import HP, State, Transform, lerp_


def merge_small_dims(shape: Any, max_dim: int) -> list[int]:
    """pytorch_optimizer's merge of small dimensions (its quirks kept: a tensor that fits in
    one dimension merges to ``[1]``, and a first dimension above ``max_dim`` gets a leading 1)."""
    merged: list[int] = []
    product = 1
    for d in shape:
        product *= d
        if product > max_dim:
            merged.append(product // d)
            product = d
    merged.append(product)
    return merged if len(merged) > 1 else [1]


@dataclass(frozen=True)
class Layout:
    """How one parameter (per-member shape ``shape``) is preconditioned: the shape it is
    projected in (``work``; merged dimensions or its own), whether a channels-last 4-D tensor
    is permuted first, and one entry per factor of the reference's ``GG``/``Q`` lists (the
    factor's size, or None for an identity factor)."""

    shape: tuple[int, ...]
    work: tuple[int, ...] | None
    permute: bool
    entries: tuple[int | None, ...]

    def to_work(self, x: Tensor) -> Tensor:
        if self.work is None:
            return x
        if self.permute:
            x = x.permute(0, 1, 4, 2, 3)
        return x.reshape(x.shape[0], *self.work)

    def from_work(self, x: Tensor) -> Tensor:
        if self.work is None:
            return x
        k = x.shape[0]
        if self.permute:
            s = self.shape
            return x.reshape(k, s[0], s[3], s[1], s[2]).permute(0, 1, 3, 4, 2)
        return x.reshape(k, *self.shape)


def layout(group: dict[str, Any], shape: tuple[int, ...]) -> Layout:
    """The preconditioner layout of a parameter whose per-member shape is `shape`."""
    top, merge = group["max_precondition_dim"], group["merge_dims"]
    permute = merge and group["data_format"] == "channels_last" and len(shape) == 4
    work = None
    if merge:
        s = (shape[0], shape[3], shape[1], shape[2]) if permute else shape
        work = tuple(merge_small_dims(s, top))
        n = 1
        for d in shape:
            n *= d
        if work == (1,) and n > 1:
            raise RuntimeError(
                f"SOAP: merge_dims=True merges a parameter of shape {list(shape)} into one "
                f"dimension of size {n} <= max_precondition_dim={top}, which "
                "pytorch_optimizer.SOAP cannot reshape (it raises too); use merge_dims=False "
                "or a smaller max_precondition_dim"
            )
    if len(shape) == 1:
        entries: tuple[int | None, ...] = (
            (shape[0],) if group["precondition_1d"] and shape[0] <= top else (None,)
        )
    else:
        dims = work if work is not None else shape
        entries = tuple(d if d <= top else None for d in dims)
    return Layout(shape, work, permute, entries)


def project(x: Tensor, lay: Layout, qs: list[Tensor | None], back: bool = False) -> Tensor:
    """x [K, ...] into the eigenbases (``back``: out of them): each factor contracts the
    leading (per-member) dimension and moves the result to the end, as ``tensordot`` does."""
    y = lay.to_work(x)
    for q in qs:
        if q is None:
            y = y.movedim(1, -1)
            continue
        y = per_member(torch.tensordot, y, q, dims=[[0], [1 if back else 0]])
    return lay.from_work(y)


def per_member(op: Any, a: Tensor, b: Tensor, **kwargs: Any) -> Tensor:
    """``op`` on each member's slices, stacked: the very matrix products the reference
    computes. Batched products (bmm) round differently, and a statistic of deficient rank
    (any factor larger than the gradients seen so far) turns the last bit of GG into a
    different eigenbasis of its null space, so these products must be the reference's."""
    return torch.stack([op(a[m], b[m], **kwargs) for m in range(a.shape[0])])


def eigenbasis(gg: Tensor) -> Tensor:
    """The eigenvectors of each member's statistic, largest eigenvalue first (the reference's
    ``eigh`` of GG + 1e-30 I, in float64 for dtypes eigh lacks)."""
    eye = torch.eye(gg.shape[-1], device=gg.device, dtype=gg.dtype)
    if gg.dtype in (torch.float32, torch.float64):
        q = torch.linalg.eigh(gg + 1e-30 * eye)[1]
    else:
        wide = torch.eye(gg.shape[-1], device=gg.device, dtype=torch.float64)
        q = torch.linalg.eigh(gg.to(torch.float64) + 1e-30 * wide)[1].to(gg.dtype)
    return torch.flip(q, dims=[-1])


class SOAP(PopulationOptimizer):
    r"""SOAP (pytorch_optimizer.SOAP's arguments and defaults); every number may be [K].

    Per parameter G (per member) and each factor i (a dimension of at most
    ``max_precondition_dim``), with :math:`\beta_s` = ``shampoo_beta`` (None: :math:`\beta_2`):

    .. math::
        L_i \leftarrow \beta_s L_i + (1-\beta_s)\, G_{(i)} G_{(i)}^\top, \qquad
        \tilde G = G \times_i Q_i, \qquad m \leftarrow \beta_1 m + (1-\beta_1) G, \qquad
        v \leftarrow \beta_2 v + (1-\beta_2) \tilde G^2,

    .. math::
        p \leftarrow p - lr \frac{\sqrt{1-\beta_2^{t-1}}}{1-\beta_1^{t-1}}
        \Big(\frac{m \times_i Q_i}{\sqrt v + \epsilon}\Big) \times_i Q_i^\top, \qquad
        p \leftarrow p (1 - lr\, wd).

    The first step only accumulates :math:`L_i` and takes :math:`Q_i` = ``eigh`` (largest
    eigenvalue first); every ``precondition_frequency`` steps :math:`Q_i` is refreshed by one
    power iteration :math:`L_i Q_i`, its columns sorted by the estimated eigenvalues
    :math:`\mathrm{diag}(Q_i^\top L_i Q_i)` (``v`` permuted alike) and a QR decomposition in
    float32, as the reference does. Defaults: lr=3e-3, betas=(0.95, 0.95), weight_decay=1e-2,
    precondition_frequency=10, eps=1e-8.

    State per parameter, as the reference's with its lists flattened: ``exp_avg``,
    ``exp_avg_sq``, ``GG_i`` and ``Q_i`` (factor i of the reference's ``GG``/``Q`` lists;
    none for identity factors), ``shampoo_beta`` (fixed when the state is made, as the
    reference) and ``step``; the group keeps the reference's int ``step``, which schedules the
    QR refreshes of all members together. Differences from the reference: the bias
    correction and the first-step rule follow each parameter's own ``step`` (a parameter whose
    first gradient comes after the group's first step starts afresh; the reference updates it
    at once, adding its first gradient to GG twice), ``precondition_frequency`` is read from
    the group, ``maximize`` does not negate ``p.grad`` in place, and ``merge_dims=True`` on a
    parameter the reference cannot reshape raises a RuntimeError that says so (the reference
    raises one too). ``compile=True`` is accepted; SOAP runs eager.
    """

    spec = OptimizerSpec(
        name="soap",
        summary="Adam in the eigenbasis of Shampoo's preconditioner",
        reference="pytorch_optimizer.SOAP",
        package="pytorch-optimizer",
        family="second-order",
        hyperparameters=(
            lr(3e-3, tune=(1e-4, 1e-1)),
            *betas(0.95, 0.95),
            Hyperparameter(
                "shampoo_beta",
                None,
                "decay of the preconditioner statistics (None: beta2)",
                low=0.0,
                nullable=True,
                test=(0.8, 0.99),
            ),
            weight_decay(1e-2, "decoupled weight decay: p (1 - lr wd)"),
            Hyperparameter(
                "precondition_frequency",
                10,
                "steps between eigenbasis refreshes",
                kind="int",
                low=1,
            ),
            Hyperparameter(
                "max_precondition_dim",
                10000,
                "largest dimension preconditioned (larger ones: identity)",
                kind="int",
                low=1,
            ),
            flag("merge_dims", "merge small dimensions before preconditioning"),
            flag("precondition_1d", "precondition 1-D parameters too"),
            flag("correct_bias", "Adam's bias correction", default=True),
            flag("normalize_gradient", "divide the update by its RMS"),
            Hyperparameter(
                "data_format",
                "channels_first",
                "layout of 4-D tensors for merge_dims",
                kind="choice",
                choices=("channels_first", "channels_last"),
            ),
            eps(1e-8),
            maximize(),
        ),
        test_kwargs={"precondition_frequency": 3},
        paper="Vyas et al. (2024), arXiv:2409.11321",
    )

    def __init__(
        self,
        params,
        lr=3e-3,
        betas=(0.95, 0.95),
        shampoo_beta=None,
        weight_decay=1e-2,
        precondition_frequency: int = 10,
        max_precondition_dim: int = 10000,
        merge_dims: bool = False,
        precondition_1d: bool = False,
        correct_bias: bool = True,
        normalize_gradient: bool = False,
        data_format: str = "channels_first",
        eps=1e-8,
        maximize: bool = False,
        **options,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            shampoo_beta=shampoo_beta,
            weight_decay=weight_decay,
            precondition_frequency=precondition_frequency,
            max_precondition_dim=max_precondition_dim,
            merge_dims=merge_dims,
            precondition_1d=precondition_1d,
            correct_bias=correct_bias,
            normalize_gradient=normalize_gradient,
            data_format=data_format,
            eps=eps,
            maximize=maximize,
        )
        # parameters whose state was just made (or reset): their new members take Q = eigh
        self._needs_basis: dict[Tensor, bool] = {}
        super().__init__(params, defaults, **options)

    def make_transform(self, group: dict) -> Transform:
        """Only the state's init: SOAP's step is `update_group`."""

        def init(p: Tensor, hp: HP) -> State:
            k = p.shape[0]
            state: State = {
                "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
            }
            for i, d in enumerate(layout(group, tuple(p.shape[1:])).entries):
                if d is not None:
                    state[f"GG_{i}"] = p.new_zeros(k, d, d)
                    # column-major, as eigh and qr return the reference's Q (the layout
                    # decides how its products round)
                    eye = torch.eye(d, dtype=p.dtype, device=p.device)
                    state[f"Q_{i}"] = eye.repeat(k, 1, 1).transpose(1, 2)
            sb = hp["shampoo_beta"] if "shampoo_beta" in hp else hp["beta2"]
            state["shampoo_beta"] = sb.clone()
            return state

        def update(g: Tensor, state: State, p: Tensor, hp: HP) -> Tensor | None:
            raise NotImplementedError("SOAP steps through update_group")

        return Transform(init, update)

    def init_state(self, group: dict[str, Any], p: Tensor, hp: HP | None = None) -> State:
        state = super().init_state(group, p, hp)
        self._needs_basis[p] = True
        return state

    def update_group(self, w: GroupStep) -> None:
        group, hp = w.group, w.hp
        gs = int(group.get("step", 0)) + 1
        group["step"] = gs
        refresh = gs - 1 > 0 and (gs - 1) % group["precondition_frequency"] == 0
        beta1, beta2 = hp["beta1"], hp["beta2"]
        decay = not (not isinstance(group["weight_decay"], Tensor) and group["weight_decay"] == 0)
        for p, g, state, stored in zip(w.params, w.grads, w.states, w.stored, strict=True):
            lay = layout(group, tuple(p.shape[1:]))
            fresh = state["step"] == 0
            state["step"].add_(1)
            pending = self._needs_basis.pop(stored, False)
            if group["maximize"]:
                g = -g
            qs = [state[f"Q_{i}"] if d is not None else None for i, d in enumerate(lay.entries)]
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]

            # the update (members on their first step keep p, exp_avg and exp_avg_sq)
            t = (state["step"].to(torch.float64) - 1).clamp(min=1)
            step_size = hp["lr"]
            if group["correct_bias"]:
                bc1, bc2 = 1.0 - torch.pow(beta1, t), torch.sqrt(1.0 - torch.pow(beta2, t))
                step_size = step_size * (bc2 / bc1)
            g_proj = project(g, lay, qs)
            m = lerp_(exp_avg.clone(), g, 1 - beta1)
            v = lerp_(exp_avg_sq.clone(), g_proj.square(), 1 - beta2)
            denom = v.sqrt().add_(bc(hp["eps"], v))
            d = project(project(m, lay, qs) / denom, lay, qs, back=True)
            if group["normalize_gradient"]:
                rms = d.square().reshape(d.shape[0], -1).mean(dim=1).sqrt_()
                d = d.div_(member_view(rms.add_(bc(hp["eps"], rms)), d))
            new_p = p.addcmul(d, bc(-step_size, p))
            if decay:
                new_p.mul_(bc(1.0 - hp["weight_decay"] * hp["lr"], p))
            keep = member_view(fresh, p)
            p.copy_(torch.where(keep, p, new_p))
            exp_avg.copy_(torch.where(keep, exp_avg, m))
            exp_avg_sq.copy_(torch.where(keep, exp_avg_sq, v))

            # the preconditioner statistics, then the eigenbases
            self._accumulate(g, lay, state)
            if refresh:
                self._refresh(lay, state, fresh)
            if pending:
                for i, dim in enumerate(lay.entries):
                    if dim is not None:
                        q = state[f"Q_{i}"]
                        q.copy_(torch.where(member_view(fresh, q), eigenbasis(state[f"GG_{i}"]), q))
        prox_l1_group_(w)

    @staticmethod
    def _accumulate(g: Tensor, lay: Layout, state: State) -> None:
        weight = 1.0 - state["shampoo_beta"].to(torch.float64)
        if len(lay.shape) == 1:
            if lay.entries[0] is not None:
                lerp_(state["GG_0"], g.unsqueeze(2) @ g.unsqueeze(1), weight)  # no sums: exact
            return
        gw = lay.to_work(g)
        for i, d in enumerate(lay.entries):
            if d is None:
                continue
            dims = [[j for j in range(len(lay.entries)) if j != i]] * 2
            lerp_(state[f"GG_{i}"], per_member(torch.tensordot, gw, gw, dims=dims), weight)

    @staticmethod
    def _refresh(lay: Layout, state: State, fresh: Tensor) -> None:
        """One power iteration and QR per factor; exp_avg_sq's axes sorted alike."""
        exp_avg_sq = state["exp_avg_sq"]
        v = exp_avg_sq if len(lay.shape) == 1 else lay.to_work(exp_avg_sq)
        new_q = {}
        for i, d in enumerate(lay.entries):
            if d is None:
                continue
            gg, q = state[f"GG_{i}"], state[f"Q_{i}"]
            product = per_member(torch.mm, gg, q)
            estimate = (q * product).sum(dim=1)
            order = torch.argsort(estimate, dim=-1, descending=True)
            shape = [1] * v.dim()
            shape[0], shape[i + 1] = v.shape[0], d
            v = v.gather(i + 1, order.reshape(shape).expand_as(v))
            power = product.gather(2, order.unsqueeze(1).expand_as(product))
            new_q[i] = torch.linalg.qr(power.to(torch.float32))[0].to(power.dtype)
        if len(lay.shape) != 1:
            v = lay.from_work(v)
        exp_avg_sq.copy_(torch.where(member_view(fresh, exp_avg_sq), exp_avg_sq, v))
        for i, q_new in new_q.items():
            q = state[f"Q_{i}"]
            q.copy_(torch.where(member_view(fresh, q), q, q_new))
