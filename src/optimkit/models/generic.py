"""Generic population path for any nn.Module: torch.func.stack_module_state + functional_call +
vmap.

``vmap(functional_call(module, (params_k, buffers_k), x), randomness="different")`` runs K
members on stacked parameters and buffers. In train mode BatchNorm's in-place running-stat
updates land in each member's own slice of the stacked buffers (vmap writes through to the
batched tensor), and every random op (dropout) draws independent values per member. Random
ops use torch's default generator; :func:`use_generator` swaps a private generator in for the
call so a population's dropout stream is its own and can be checkpointed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

Tensors = dict[str, Tensor]


@contextmanager
def use_generator(generator: torch.Generator) -> Iterator[None]:
    """Make `generator` torch's default generator on its device for the duration of the block,
    then store the advanced state back in it and restore the caller's default state."""
    device = generator.device
    if device.type == "cpu":
        default = torch.default_generator
    elif device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        default = torch.cuda.default_generators[index]
    else:  # pragma: no cover - other accelerators: fall back to their default generator
        default = torch.Generator(device=device)
    saved = default.get_state()
    default.set_state(generator.get_state())
    try:
        yield
    finally:
        generator.set_state(default.get_state())
        default.set_state(saved)


class GenericModel:
    """K copies of `module` (a template; its own tensors are not used, it may live on meta)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def forward(
        self,
        params: Tensors,
        buffers: Tensors,
        x: Tensor,
        *,
        train: bool,
        per_member: bool,
        generator: torch.Generator,
    ) -> Tensor:
        module = self.module
        module.train(train)

        def call(p: Tensors, b: Tensors, xb: Tensor) -> Tensor:
            return functional_call(module, (p, b), (xb,))

        batched = vmap(call, in_dims=(0, 0, 0 if per_member else None), randomness="different")
        with use_generator(generator):
            return batched(params, buffers, x)
