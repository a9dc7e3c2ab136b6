"""Model names, options and `build_model`: one plain nn.Module from a name and options.

Built-in names (options in parentheses, defaults in the classes' docstrings):

=============  ==============================================================================
``linear``     linear regression, ``[B, F] -> [B, n_outputs]`` (bias, init)
``logistic``   logistic regression: one logit per output, n_outputs = 1 for a binary target,
               > 1 for multi-label (bias, init)
``softmax``    softmax (multinomial) regression: n_outputs >= 2 class logits (bias, init)
``mlp``        :class:`~optimkit.models.mlp.MLP` (hidden, activation, init, batch_norm,
               dropout, residual, bias)
``cnn``        :class:`~optimkit.models.cnn.SmallCNN` (image_shape, channels, kernel_size,
               hidden, activation, init, batch_norm, dropout, bias)
``mf``         :class:`~optimkit.models.mf.MatrixFactorization` on integer (user, item) pairs
               ``[B, 2] -> [B, 1]`` (n_users, n_items, dim, init_std, global_bias)
=============  ==============================================================================

Any other name must be an import path ``"package.module:factory"`` (or pass the callable
itself); the factory is called as ``factory(n_features, n_outputs, **options)`` and must return
an ``nn.Module`` (see :mod:`optimkit.models.factory`). Models output raw scores (logits), never
probabilities: the losses apply the link.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from optimkit.models.checks import positive_int
from optimkit.models.cnn import SmallCNN
from optimkit.models.factory import Factory, call_factory, resolve_factory
from optimkit.models.mf import MatrixFactorization
from optimkit.models.mlp import MLP


def _linear(n_features: int, n_outputs: int, *, bias: bool = True, init: str = "torch") -> MLP:
    return MLP(n_features, n_outputs, hidden=(), bias=bias, init=init)


def _logistic(n_features: int, n_outputs: int, *, bias: bool = True, init: str = "torch") -> MLP:
    return MLP(n_features, n_outputs, hidden=(), bias=bias, init=init)


def _softmax(n_features: int, n_outputs: int, *, bias: bool = True, init: str = "torch") -> MLP:
    if n_outputs < 2:
        raise ValueError(
            f"n_outputs: 'softmax' needs >= 2 classes, got {n_outputs}; use 'logistic' for one "
            "binary logit"
        )
    return MLP(n_features, n_outputs, hidden=(), bias=bias, init=init)


#: built-in model name -> builder(n_features, n_outputs, **options)
MODELS: dict[str, Callable[..., nn.Module]] = {
    "linear": _linear,
    "logistic": _logistic,
    "softmax": _softmax,
    "mlp": MLP,
    "cnn": SmallCNN,
    "mf": MatrixFactorization,
}


def available_models() -> list[str]:
    return list(MODELS)


def model_options(name: str) -> list[str]:
    """The option names a built-in model accepts."""
    params = inspect.signature(MODELS[name]).parameters.values()
    return sorted(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


@dataclass(frozen=True)
class ModelSpec:
    """What to build: a model name (built-in or ``"package.module:factory"``) or a factory
    callable, the input and output sizes and the model's options. Validated on creation."""

    model: str | Factory
    n_features: int
    n_outputs: int
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        positive_int("n_features", self.n_features)
        positive_int("n_outputs", self.n_outputs)
        if not isinstance(self.options, Mapping):
            raise ValueError(f"options: expected a mapping, got {type(self.options).__name__}")
        object.__setattr__(self, "options", dict(self.options))
        if isinstance(self.model, str):
            if self.model in MODELS:
                valid = model_options(self.model)
                unknown = sorted(set(self.options) - set(valid))
                if unknown:
                    raise ValueError(
                        f"model {self.model!r}: unknown option(s) {', '.join(unknown)}; "
                        f"valid options: {', '.join(valid)}"
                    )
                if self.model == "mf":
                    missing = [k for k in ("n_users", "n_items") if k not in self.options]
                    if missing:
                        raise ValueError(f"model 'mf': missing option(s) {', '.join(missing)}")
            elif ":" not in self.model:
                raise ValueError(
                    f"model: unknown name {self.model!r}; valid names: "
                    f"{', '.join(MODELS)}, or an import path 'package.module:factory'"
                )
        elif not callable(self.model):
            raise ValueError(
                f"model: expected a name or a factory callable, got {type(self.model).__name__}"
            )

    @property
    def label(self) -> str:
        """The model's name, or the factory's qualified name."""
        if isinstance(self.model, str):
            return self.model
        return getattr(self.model, "__qualname__", type(self.model).__name__)

    @property
    def builtin(self) -> bool:
        return isinstance(self.model, str) and self.model in MODELS

    def factory(self) -> Factory:
        if isinstance(self.model, str):
            return MODELS[self.model] if self.builtin else resolve_factory(self.model)
        return self.model

    def with_options(self, **options: Any) -> ModelSpec:
        return ModelSpec(self.model, self.n_features, self.n_outputs, {**self.options, **options})

    def build(self, seed: int | None = None) -> nn.Module:
        """The plain module (on the CPU, torch's default dtype). With `seed` it is built under
        ``torch.manual_seed(seed)`` without disturbing the caller's global RNG, so it equals
        ``torch.manual_seed(seed); build_model(...)``."""
        factory = self.factory()
        if seed is None:
            return call_factory(factory, self.label, self.n_features, self.n_outputs, self.options)
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            return call_factory(factory, self.label, self.n_features, self.n_outputs, self.options)


def build_model(model: str | Factory, n_features: int, n_outputs: int, **options: Any) -> nn.Module:
    """One plain model: ``build_model("mlp", 64, 10, hidden=(128,), dropout=0.1)``.

    Weights are drawn from torch's global RNG (seed it with ``torch.manual_seed``). Unknown
    names or options raise ValueError listing the valid ones; see the module docstring.
    """
    return ModelSpec(model, n_features, n_outputs, options).build()
