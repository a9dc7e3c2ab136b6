"""User models by import path: ``"package.module:factory"``.

The factory is called as ``factory(n_features, n_outputs, **options)`` and must return an
``nn.Module`` whose ``forward(x)`` maps one batch ``[B, ...]`` to ``[B, ...]`` outputs. To run as
a population (the generic torch.func path) the forward must be vmap-compatible: no ``.item()``,
no Python branching on tensor values, no in-place writes to inputs; BatchNorm with the default
``momentum`` works and keeps per-member running statistics.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from torch import nn

Factory = Callable[..., nn.Module]


def resolve_factory(path: str) -> Factory:
    """Import ``module:attribute`` (the attribute may be dotted: ``module:Class.create``)."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr or ":" in attr:
        raise ValueError(
            f"model {path!r}: expected an import path 'package.module:factory' (one colon)"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        missing = err.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise ValueError(f"model {path!r}: module {module_name!r} not found") from None
        raise ValueError(f"model {path!r}: importing module {module_name!r} failed: {err}") from err
    except Exception as err:
        raise ValueError(
            f"model {path!r}: importing module {module_name!r} failed: {type(err).__name__}: {err}"
        ) from err
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"model {path!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(
            f"model {path!r}: {attr!r} is a {type(obj).__name__}, not a callable factory"
        )
    return obj


def _signature(factory: Factory) -> inspect.Signature | None:
    """The factory's signature (None where it has none), read once per hashable factory: a
    population builds a fresh member from it for every trial."""
    if isinstance(factory, Hashable):
        return _cached_signature(factory)
    return _read_signature(factory)


def _read_signature(factory: Factory) -> inspect.Signature | None:
    try:
        return inspect.signature(factory)
    except (TypeError, ValueError):
        return None


_cached_signature = functools.lru_cache(maxsize=256)(_read_signature)


def call_factory(
    factory: Factory, label: str, n_features: int, n_outputs: int, options: Mapping[str, Any]
) -> nn.Module:
    """``factory(n_features, n_outputs, **options)``, checked to accept those arguments and to
    return an nn.Module."""
    signature = _signature(factory)
    if signature is not None:
        try:
            signature.bind(n_features, n_outputs, **options)
        except TypeError as err:
            raise ValueError(
                f"model {label!r}: the factory is called as factory(n_features, n_outputs, "
                f"**options) with options {sorted(options)}, but its signature is "
                f"{signature}: {err}"
            ) from None
    module = factory(n_features, n_outputs, **options)
    if not isinstance(module, nn.Module):
        raise ValueError(
            f"model {label!r}: the factory did not return an nn.Module "
            f"(got {type(module).__name__})"
        )
    return module
