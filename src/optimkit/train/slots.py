"""The member-slot protocol: how a population run resets or copies one member.

Every stateful part of a population run (parameters and buffers, optimizer, schedule,
early stopping, kept weights, history, batch streams, the trainer's own counters) owns its
per-member state and implements two operations on it:

* ``reset_members(mask)``: the members where the [K] bool `mask` is True start afresh (from
  their configuration as it is now); the others are untouched.
* ``copy_member(src, dst)``: member `dst` takes member `src`'s whole state, so that from then
  on it computes exactly what `src` computes, given the same inputs.

Continuous batching (a finished slot gets a new trial) and Population Based Training (the
worst members copy the best ones) use only these two operations (`PopulationTrainer.slots`);
nothing reaches into another part's fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class MemberSlots(Protocol):
    """A component with per-member state (see the module docstring)."""

    def reset_members(self, mask: Tensor) -> None: ...

    def copy_member(self, src: int, dst: int) -> None: ...


def member_mask(
    k: int | Sequence[int], members: int, device: torch.device | str | None = None
) -> Tensor:
    """The [K] bool mask of member k alone (or of the members in a list k)."""
    mask = torch.zeros(members, dtype=torch.bool, device=device)
    mask[k if isinstance(k, int) else list(k)] = True
    return mask


def where_members(mask: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """Rows of `new` where the [K] `mask` is True, of `old` elsewhere (any trailing shape)."""
    view = mask.to(old.device).view(-1, *([1] * (old.dim() - 1)))
    return torch.where(view, new.to(old), old)


def copy_row_(tensor: Tensor, src: int, dst: int) -> None:
    """tensor[dst] = tensor[src], in place (for a [K, ...] tensor; a 0-d one is shared)."""
    if tensor.dim() > 0:
        with torch.no_grad():
            tensor[dst] = tensor[src]
