"""Sizes checked before allocation: a population that would not fit is refused up front.

The estimate builds one member on PyTorch's ``meta`` device (shapes, no storage), counts its
parameters P and multiplies: K members x P numbers x (weights, gradients, the best and final
weights the trainer keeps, two optimizer moments) = 6 K P numbers of the population's dtype.
Activations depend on the batch and are not counted, so the estimate is a lower bound.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn

#: parameter-sized tensors per member: weights, gradients, best and final weights, 2 moments
COPIES = 6


def available_bytes(device: torch.device) -> int | None:
    """Free memory on `device` (CPU: the system's available RAM), or None if unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None


def check_fits(
    build: Callable[[], nn.Module], members: int, dtype: torch.dtype, device: torch.device
) -> int:
    """Raise a one-line ValueError when `members` copies of the model `build` makes would
    not fit in `device`'s free memory; returns the estimate in bytes."""
    try:
        with torch.device("meta"):
            probe = build()
    except Exception:  # a user factory that cannot run on the meta device: no estimate
        return 0
    n = sum(p.numel() for p in probe.parameters())
    need = COPIES * members * n * torch.finfo(dtype).bits // 8
    free = available_bytes(device)
    if free is not None and need > free:
        raise ValueError(
            f"model: {members} member(s) x {n:,} parameters need at least {_gib(need)} "
            f"(weights, gradients, kept copies and optimizer state), more than the "
            f"{_gib(free)} free on {device.type}; use a smaller model or population"
        )
    return need


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"
