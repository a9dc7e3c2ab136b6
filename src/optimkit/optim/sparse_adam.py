"""SparseAdam: Adam's moments and step on the entries a sparse gradient holds, as
torch.optim.SparseAdam (masked Adam for e.g. ``nn.Embedding(sparse=True)``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from optimkit.optim import clipping
from optimkit.optim.base import PopulationOptimizer
from optimkit.optim.members import member_view
from optimkit.optim.spec import Hyperparameter, OptimizerSpec, betas, maximize
from optimkit.optim.transforms import HP, State, Transform, zeros

f64 = torch.float64


def _per_entry(x: Tensor, members: Tensor, values: Tensor) -> Tensor:
    """A [K] float64 coefficient gathered for each stored entry (``members``: [nnz] member
    ids) and viewed against ``values`` ([nnz, ...]) in torch's compute dtype for them."""
    dtype = torch.float32 if values.dtype in (torch.float16, torch.bfloat16) else values.dtype
    return x[members].to(dtype).reshape((-1,) + (1,) * (values.dim() - 1))


def sparse_adam_update_(
    p: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, step: Tensor, hp: HP,
    members: Callable[[Tensor], Tensor],
) -> None:  # fmt: skip
    r"""torch's sparse Adam step on one parameter, in place, for the entries ``grad`` (a
    coalesced sparse tensor, maximize already applied) holds:

    .. math::
        m \mathrel{+}= (1-\beta_1)(g - m), \quad v \mathrel{+}= (1-\beta_2)(g^2 - v), \quad
        p \mathrel{-}= lr \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\,\frac{m}{\sqrt v + \epsilon}

    on those entries only, op for op as ``torch.optim._functional.sparse_adam``; each entry
    takes the hyperparameters and step count ``t`` ([K] float64) of its member
    (``members(indices)``: [nnz] member ids).
    """
    indices, values = grad._indices(), grad._values()
    if values.numel() == 0:
        return
    m = members(indices)

    def make_sparse(v: Tensor) -> Tensor:
        return torch.sparse_coo_tensor(indices, v, grad.size(), check_invariants=False)

    beta1, beta2 = hp["beta1"], hp["beta2"]
    old_exp_avg = exp_avg.sparse_mask(grad)._values()
    exp_avg_update = values.sub(old_exp_avg).mul_(_per_entry(1 - beta1, m, values))
    exp_avg.add_(make_sparse(exp_avg_update))
    old_exp_avg_sq = exp_avg_sq.sparse_mask(grad)._values()
    exp_avg_sq_update = values.pow(2).sub_(old_exp_avg_sq).mul_(_per_entry(1 - beta2, m, values))
    exp_avg_sq.add_(make_sparse(exp_avg_sq_update))
    numer = exp_avg_update.add_(old_exp_avg)
    exp_avg_sq_update.add_(old_exp_avg_sq)
    denom = exp_avg_sq_update.sqrt_().add_(_per_entry(hp["eps"], m, values))
    t = step.to(f64).reshape(-1)
    bias1, bias2 = 1 - beta1**t, 1 - beta2**t
    step_size = hp["lr"] * bias2.sqrt() / bias1
    p.add_(make_sparse(numer.div_(denom).mul_(_per_entry(-step_size, m, values))))


class SparseAdam(PopulationOptimizer):
    """SparseAdam (torch.optim.SparseAdam's arguments, defaults, errors and state); every
    number may be a [K] tensor.

    Gradients must be sparse (``torch.sparse_coo``), dense ones raise torch's RuntimeError.
    A population's gradients are sparse [K, ...] tensors whose first sparse dimension is the
    member axis (e.g. ``torch.stack`` of the members' sparse gradients, or any COO tensor
    with indices over [K, ...]): each stored entry is updated with its member's
    hyperparameters and step. As torch, the step counts every step() the parameter had a
    gradient (also when a member's part of it is empty), moments and parameters change only
    where the gradient has entries, and a plain model's ``step`` is a Python int in
    ``state_dict()`` (kept as a 0-d tensor inside). Options: ``skip_nonfinite`` per member,
    ``clip_grad_norm`` / ``clip_grad_value`` / ``normalize_grad`` on the stored entries
    (duplicates summed first), ``l1`` over the whole parameter after the step;
    ``compile=True`` is accepted and runs eagerly (sparse tensors do not compile).
    Reference: Kingma & Ba (2015); torch.optim.SparseAdam.
    """

    spec = OptimizerSpec(
        name="sparse_adam",
        params="sparse",
        summary="Adam on the entries of sparse gradients (embeddings with sparse=True)",
        reference="torch.optim.SparseAdam",
        hyperparameters=(
            Hyperparameter("lr", 1e-3, "learning rate", low=0.0, low_open=True,
                           tune=(1e-4, 1e-1), log=True),
            *betas(),
            Hyperparameter("eps", 1e-8, "term added to the denominator", low=0.0,
                           low_open=True, test=(1e-8, 1e-3), log=True),
            maximize(),
        ),
        paper="Kingma & Ba (2015), Adam: a method for stochastic optimization",
    )  # fmt: skip

    def __init__(
        self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, maximize: bool = False, **options
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, maximize=maximize)
        super().__init__(params, defaults, **options)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's checks first: sparse or complex parameters are a ValueError."""
        params = param_group["params"]
        if not isinstance(params, set):  # torch's own TypeError follows in the base
            items = [params] if isinstance(params, Tensor) else list(params)
            param_group = {**param_group, "params": items}
            tensors = [x[1] if isinstance(x, tuple) and len(x) == 2 else x for x in items]
            index = len(self.param_groups)
            for kind, bad in (
                ("Sparse", "SparseAdam requires dense parameter tensors"),
                ("Complex", "SparseAdam does not support complex parameters"),
            ):
                found = [[index, i] for i, t in enumerate(tensors) if isinstance(t, Tensor)
                         and (t.is_sparse if kind == "Sparse" else t.is_complex())]  # fmt: skip
                if found:
                    raise ValueError(f"{kind} params at indices {found}: {bad}")
        super().add_param_group(param_group)

    def make_transform(self, group: dict[str, Any]) -> Transform:
        """The state (``exp_avg``, ``exp_avg_sq``); the update is `sparse_adam_update_`."""

        def dense(g: Tensor, state: State, p: Tensor, hp: HP) -> None:
            raise RuntimeError(
                "SparseAdam does not support dense gradients, please consider Adam instead"
            )

        return Transform(zeros("exp_avg", "exp_avg_sq"), dense)

    # ------------------------------------------------------------------------ state_dict
    def state_dict(self) -> dict[str, Any]:
        """torch's layout: a plain model's ``step`` as a Python int."""
        out = super().state_dict()
        if self.members is None:
            out["state"] = {
                k: {**v, "step": int(v["step"])} if isinstance(v.get("step"), Tensor) else v
                for k, v in out["state"].items()
            }
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Also torch's state_dicts (an int ``step``)."""
        super().load_state_dict(state_dict)
        assert self.axis is not None
        for p, state in self.state.items():
            if state and not isinstance(state["step"], Tensor):
                state["step"] = self.axis.step_counter(p.device).add_(int(state["step"]))

    # ------------------------------------------------------------------------------ step
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One sparse Adam step of every parameter with a gradient; returns closure()."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        axis = self.axis
        assert axis is not None
        work = []
        for index, group in enumerate(self.param_groups):
            hp = self.hyperparameters(group, index)
            for p in group["params"]:
                if p.grad is None:
                    continue
                if not p.grad.is_sparse:
                    raise RuntimeError(
                        "SparseAdam does not support dense gradients, please consider Adam instead"
                    )
                if axis.stacked and p.grad.sparse_dim() == 0:
                    raise ValueError(
                        "SparseAdam: a population's sparse gradient needs the member axis "
                        "(dim 0) among its sparse dimensions"
                    )
                if not self.state[p]:
                    self.state[p] = self.init_state(group, p, hp)
                grad = -p.grad if group["maximize"] else p.grad
                work.append((group, hp, p, grad.coalesce()))
        if not work:
            return loss
        k = axis.k

        def members(indices: Tensor) -> Tensor:
            return indices[0] if axis.stacked else indices.new_zeros(indices.shape[1])

        grads = self._prepare([w[3] for w in work], members, k)
        ok = None
        if self.skip_nonfinite:
            ok = _all_finite(grads, members, k)
            tensors = [t for (_, _, p, _) in work for t in (p, *self.state[p].values())]
            saved = [axis.view(t).clone() for t in tensors]
        for (group, hp, p, _), grad in zip(work, grads, strict=True):
            state = self.state[p]
            state["step"].add_(1)
            sparse_adam_update_(
                p, grad, state["exp_avg"], state["exp_avg_sq"], axis.view(state["step"]), hp,
                members,
            )  # fmt: skip
            l1 = group.get("l1", 0.0)
            if isinstance(l1, Tensor) or l1 != 0:
                clipping.prox_l1_(axis.view(p), hp["lr"] * hp["l1"])
        if ok is not None:
            for t, old in zip(tensors, saved, strict=True):
                v = axis.view(t)
                v.copy_(torch.where(member_view(ok, v), v, old))
        return loss

    def _prepare(
        self, grads: list[Tensor], members: Callable[[Tensor], Tensor], k: int
    ) -> list[Tensor]:
        """normalize_grad, clip_grad_norm, clip_grad_value on the stored (coalesced) entries,
        per member, as the base does for dense gradients."""
        if not (self.normalize_grad or self.clip_grad_norm is not None
                or self.clip_grad_value is not None):  # fmt: skip
            return grads

        def scaled(g: Tensor, coef: Tensor) -> Tensor:
            v = g._values()
            c = coef[members(g._indices())].to(v.dtype).reshape((-1,) + (1,) * (v.dim() - 1))
            return _like(g, v * c)

        def norms() -> Tensor:
            sq = torch.zeros(k, dtype=f64, device=grads[0].device)
            for g in grads:
                v = g._values().to(f64).reshape(g._nnz(), -1)
                sq = sq.index_add(0, members(g._indices()), v.square().sum(dim=1))
            return sq.sqrt()

        if self.normalize_grad:
            grads = [scaled(g, 1 / norms().clamp(min=1e-12)) for g in grads]
        if self.clip_grad_norm is not None:
            max_norm = self._option(self.clip_grad_norm)
            coef = (max_norm / (norms() + 1e-6)).clamp(max=1.0)
            grads = [scaled(g, coef) for g in grads]
        if self.clip_grad_value is not None:
            c = self._option(self.clip_grad_value)
            out = []
            for g in grads:
                v = g._values()
                cv = c[members(g._indices())].to(v.dtype).reshape((-1,) + (1,) * (v.dim() - 1))
                out.append(_like(g, v.clamp(-cv, cv)))
            grads = out
        return grads


def _like(g: Tensor, values: Tensor) -> Tensor:
    """A coalesced sparse tensor with g's indices and new values."""
    return torch.sparse_coo_tensor(
        g._indices(), values, g.size(), check_invariants=False, is_coalesced=True
    )


def _all_finite(grads: list[Tensor], members: Callable[[Tensor], Tensor], k: int) -> Tensor:
    """[K] bool: True where every stored entry of member k is finite."""
    bad = torch.zeros(k, dtype=f64, device=grads[0].device)
    for g in grads:
        finite = torch.isfinite(g._values()).reshape(g._nnz(), -1).all(dim=1)
        bad = bad.index_add(0, members(g._indices()), (~finite).to(f64))
    return bad == 0
