"""Per-member gradient clipping, normalization, non-finite masks and the L1 proximal step.

All functions take lists of stacked tensors [K, ...] and reduce over every dimension but the
first, so member k is treated exactly as torch.nn.utils would treat its own gradients.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from optimkit.optim.members import bc


def member_norms(tensors: Sequence[Tensor]) -> Tensor:
    """Global 2-norm of each member over all tensors: [K] (as torch.nn.utils.clip_grad_norm_)."""
    per_tensor = [torch.linalg.vector_norm(t.flatten(1), 2, dim=1) for t in tensors]
    return torch.linalg.vector_norm(torch.stack(per_tensor, dim=1), 2, dim=1)


def clip_by_global_norm(grads: Sequence[Tensor], max_norm: Tensor) -> list[Tensor]:
    r"""g_k <- g_k \cdot \min(1, c_k / (\|g_k\| + 10^{-6})), torch.nn.utils.clip_grad_norm_."""
    norms = member_norms(grads)
    coef = (max_norm.to(norms) / (norms + 1e-6)).clamp(max=1.0)
    return [g * bc(coef, g) for g in grads]


def clip_by_value(grads: Sequence[Tensor], clip_value: Tensor) -> list[Tensor]:
    """g <- clamp(g, -c_k, c_k), torch.nn.utils.clip_grad_value_ per member."""
    return [g.clamp(-bc(clip_value, g), bc(clip_value, g)) for g in grads]


def normalize(grads: Sequence[Tensor], eps: float = 1e-12) -> list[Tensor]:
    r"""Normalized gradient: g_k <- g_k / \max(\|g_k\|, \epsilon) (Hazan et al., 2015)."""
    norms = member_norms(grads).clamp(min=eps)
    return [g / bc(norms, g) for g in grads]


def finite_members(tensors: Sequence[Tensor]) -> Tensor:
    """[K] bool: True where every entry of member k is finite."""
    return torch.stack([torch.isfinite(t).flatten(1).all(dim=1) for t in tensors]).all(dim=0)


def prox_l1_(param: Tensor, threshold: Tensor) -> Tensor:
    r"""Proximal step of t\|p\|_1 in place: p <- sign(p) \max(|p| - t, 0) (soft thresholding)."""
    shrunk = (param.abs() - bc(threshold, param)).clamp_(min=0)
    return param.copy_(shrunk.mul_(param.sign()))
