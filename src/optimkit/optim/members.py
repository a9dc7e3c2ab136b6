"""The member axis: which dimension of a parameter indexes population members, and K.

Decided once, when an optimizer is built, and read from here by init, update, state,
hyperparameters and clipping:

* a **population** (``members=K`` given, or any hyperparameter a [K] tensor): every parameter
  has dim 0 of size K, its optimizer state too; step counters are [K] float64;
* a **plain model** (K = 1, nothing stacked): parameters and state keep torch.optim's exact
  layout (a 0-d ``step``), so state_dicts move between optimkit and torch.optim both ways.

Inside the core every tensor is seen in its *member view* [K, ...] (`MemberAxis.view`: a plain
model's tensors get a leading axis of size 1, a view sharing storage, so in-place updates land
in the stored tensors) and every numeric hyperparameter is a float64 [K] tensor on the
parameter's device (`MemberAxis.hyper`), whatever the user passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True)
class MemberAxis:
    """K members along dim 0 (``stacked``) or one plain model (K = 1, no member dim)."""

    k: int
    stacked: bool

    @staticmethod
    def decide(members: int | None, hyper_lengths: dict[str, int]) -> MemberAxis:
        """The axis from ``members=`` and the lengths of the [K] hyperparameters given (one
        ValueError naming the first hyperparameter whose length disagrees)."""
        if members is not None and (
            isinstance(members, bool) or not isinstance(members, int) or members < 1
        ):
            raise ValueError(f"members: expected a positive int, got {members!r}")
        k = members
        for name, n in hyper_lengths.items():
            if k is None:
                k = n
            elif n != k:
                raise ValueError(
                    f"{name}: expected a tensor of shape [{k}] (one value per member), "
                    f"got shape [{n}]"
                )
        return MemberAxis(1, False) if k is None else MemberAxis(k, True)

    def check_param(self, name: str, p: Tensor) -> None:
        """A population's parameters need dim 0 of size K."""
        if self.stacked and (p.dim() == 0 or p.shape[0] != self.k):
            raise ValueError(
                f"{name}: with K = {self.k} members every parameter needs dim 0 of size "
                f"{self.k}; it has shape {list(p.shape)}"
            )

    def view(self, t: Tensor) -> Tensor:
        """The member view [K, ...] of a stored tensor (a view: writes reach the storage)."""
        return t if self.stacked else t.unsqueeze(0)

    def stored(self, t: Tensor) -> Tensor:
        """The stored form of a member-view tensor (inverse of `view`)."""
        return t if self.stacked else t.squeeze(0)

    def hyper(self, value: Any, device: torch.device | None) -> Tensor:
        """A hyperparameter as the core sees it: a float64 [K] tensor on `device`."""
        if isinstance(value, Tensor):
            t = value.detach().to(device=device, dtype=torch.float64)
            return t.reshape(1).expand(self.k) if t.dim() == 0 else t
        return torch.full((self.k,), float(value), dtype=torch.float64, device=device)

    def step_counter(self, device: torch.device) -> Tensor:
        """A fresh step counter: [K] float64 for a population; torch's 0-d tensor in its
        scalar dtype (float32 unless the default dtype is float64) for a plain model."""
        if self.stacked:
            return torch.zeros(self.k, dtype=torch.float64, device=device)
        dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
        return torch.zeros((), dtype=dtype, device=device)


def bc(x: Tensor, like: Tensor) -> Tensor:
    """A [K] coefficient viewed as [K, 1, ..., 1] against `like` ([K, ...]), in the dtype
    torch.optim computes `like`'s update in: float32 for 16-bit floats (torch's "opmath"),
    else `like`'s own dtype."""
    dtype = torch.float32 if like.dtype in (torch.float16, torch.bfloat16) else like.dtype
    return x.to(dtype).reshape((-1,) + (1,) * (like.dim() - 1))


def member_view(x: Tensor, like: Tensor) -> Tensor:
    """A [K] tensor (e.g. a member mask) viewed as [K, 1, ..., 1] against `like`, dtype kept."""
    return x.reshape((-1,) + (1,) * (like.dim() - 1))
