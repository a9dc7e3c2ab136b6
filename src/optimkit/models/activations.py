"""Activation functions by name: the nn.Module used by plain models and the matching function
used by the grouped population path (both compute the same ops, so results agree exactly)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from optimkit.models.checks import choice

#: name -> (module factory, function); torch defaults (leaky_relu slope 0.01, elu alpha 1,
#: exact erf gelu).
ACTIVATIONS: dict[str, tuple[Callable[[], nn.Module], Callable[[Tensor], Tensor]]] = {
    "relu": (nn.ReLU, F.relu),
    "leaky_relu": (nn.LeakyReLU, F.leaky_relu),
    "elu": (nn.ELU, F.elu),
    "gelu": (nn.GELU, F.gelu),
    "silu": (nn.SiLU, F.silu),
    "tanh": (nn.Tanh, F.tanh),
    "sigmoid": (nn.Sigmoid, F.sigmoid),
    "identity": (nn.Identity, lambda t: t),
}

#: the torch.nn.init.calculate_gain name used for each activation's init gain; gelu, silu and
#: elu have no closed-form gain in torch and use relu's (sqrt 2), a common approximation.
Nonlinearity = Literal["linear", "sigmoid", "tanh", "relu", "leaky_relu"]
GAIN_NAME: dict[str, Nonlinearity] = {
    "relu": "relu",
    "leaky_relu": "leaky_relu",
    "elu": "relu",
    "gelu": "relu",
    "silu": "relu",
    "tanh": "tanh",
    "sigmoid": "sigmoid",
    "identity": "linear",
}


def check_activation(value: object) -> str:
    return choice("activation", value, ACTIVATIONS)


def activation_module(name: str) -> nn.Module:
    return ACTIVATIONS[name][0]()


def activation_function(name: str) -> Callable[[Tensor], Tensor]:
    return ACTIVATIONS[name][1]
