"""Helpers for the optimizers' eager fast paths (no optimizer here).

An eager step costs one pass over memory per elementwise op on a parameter-sized tensor, and
a fresh parameter-sized temporary costs page faults on top: the fast paths update in place,
write intermediate results into reusable work buffers (`Scratch`), compute their [K]
coefficients once per group (`stacked_steps`, `per_tensor`), and for one plain model with
number hyperparameters hand the whole group to torch's own fused kernel where torch has one
for exactly that optimizer and those options (`torch_fused_applies`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

#: dtypes torch's fused CPU optimizer kernels are used for here
FUSED_DTYPES = (torch.float32, torch.float64)


class Scratch:
    """Reusable work buffers shaped like a parameter: ``like(p, slot)`` is a view of one
    flat buffer per (slot, dtype, device), grown as needed, so that an eager step does not map
    and page-fault fresh parameter-sized temporaries at every step. A slot's buffer is shared
    by every tensor of that dtype: use a view only until the next tensor's ``like`` call."""

    def __init__(self) -> None:
        self._flat: dict[tuple[int, torch.dtype, torch.device], Tensor] = {}
        self._views: dict[tuple[int, torch.Size, torch.dtype, torch.device], Tensor] = {}

    def like(self, p: Tensor, slot: int = 0) -> Tensor:
        key = (slot, p.shape, p.dtype, p.device)
        view = self._views.get(key)
        if view is None:
            fkey = (slot, p.dtype, p.device)
            buf = self._flat.get(fkey)
            if buf is None or buf.numel() < p.numel():
                buf = self._flat[fkey] = torch.empty(p.numel(), dtype=p.dtype, device=p.device)
                self._views = {k: v for k, v in self._views.items() if k[0] != slot}
            view = self._views[key] = buf[: p.numel()].view(p.shape)
        return view

    def __deepcopy__(self, memo: dict[int, Any]) -> Scratch:
        return Scratch()


def clean_grads(opt: Any) -> bool:
    """No gradient option (skip_nonfinite, normalize, clipping) changed the gradients, so
    ``p.grad`` is what the step sees."""
    return not (
        opt.skip_nonfinite
        or opt.normalize_grad
        or opt.clip_grad_norm is not None
        or opt.clip_grad_value is not None
    )


def torch_fused_applies(opt: Any, numbers: Iterable[Any], tensors: Iterable[Tensor]) -> bool:
    """torch's fused CPU kernels take number hyperparameters and walk memory linearly: one
    plain model, number hyperparameters, float32/64 on CPU, contiguous tensors, gradients
    untouched by optimkit's options, not ``fused=False``."""
    if opt.members is not None or not clean_grads(opt):
        return False
    if any(isinstance(v, Tensor) for v in numbers):
        return False
    return all(
        t.device.type == "cpu" and t.dtype in FUSED_DTYPES and t.is_contiguous() for t in tensors
    )


def stacked_steps(steps: Sequence[Tensor]) -> Tensor:
    """The step counts of a group's tensors as one float64 [P, K] tensor (a step loaded from
    torch.optim's state_dict is a 0-d float32)."""
    return torch.stack([s.reshape(-1) for s in steps]).to(torch.float64)


def per_tensor(c: Tensor, params: Sequence[Tensor]) -> list[Tensor]:
    """A [K] or [P, K] float64 coefficient viewed [K, 1, ..., 1] against each parameter,
    cast to its compute dtype once per dtype (float32 for 16-bit floats, as `bc`)."""
    cast: dict[torch.dtype, Any] = {}
    out = []
    for i, p in enumerate(params):
        dtype = torch.float32 if p.dtype in (torch.float16, torch.bfloat16) else p.dtype
        x = cast.get(dtype)
        if x is None:
            y = c.to(dtype)
            x = cast[dtype] = y.unbind(0) if y.dim() == 2 else y
        row = x[i] if isinstance(x, tuple) else x
        out.append(row.reshape((-1,) + (1,) * (p.dim() - 1)))
    return out


#: per-member elements from which `member_dot` calls BLAS (bmm) instead of mul + sum:
#: large tensors stream once without a temporary; small ones are faster through mul + sum
_DOT_BLAS = 1 << 18


def member_dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-member dot product ([K], a's dtype) of two [K, ...] tensors: BLAS for large
    members (one read of each, no temporary; torch.dot's kernel), mul + sum for small ones."""
    k = a.shape[0]
    if a.numel() >= _DOT_BLAS * k:
        return torch.bmm(a.reshape(k, 1, -1), b.reshape(k, -1, 1)).reshape(k)
    return a.reshape(k, -1).mul(b.reshape(k, -1)).sum(1)


def member_sq_norm(t: Tensor) -> Tensor:
    """Per-member squared 2-norm ([K], t's dtype): one read, no temporary."""
    return torch.linalg.vector_norm(t.reshape(t.shape[0], -1), 2, dim=1).square()
