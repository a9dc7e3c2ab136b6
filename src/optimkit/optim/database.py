"""The optimizer database: every optimizer class in `optimkit.optim` with its `OptimizerSpec`.

Built by importing each module of the package and collecting the classes that declare a
``spec``, so adding an optimizer is adding one module. Everything that needs to know the
optimizers (registry, CLI flags, search spaces, compare's defaults, report labels, README
table, crossed tests) reads `OPTIMIZERS` and `ENTRIES`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optimkit.optim as _package
from optimkit.optim.spec import OptimizerSpec

#: modules of the package that read the database (so they hold no optimizer)
READERS = ("database", "registry", "table")


def _discover() -> dict[str, type[Any]]:
    found: dict[str, type[Any]] = {}
    for info in sorted(pkgutil.iter_modules(_package.__path__), key=lambda i: i.name):
        if info.name in READERS:
            continue
        module = importlib.import_module(f"{_package.__name__}.{info.name}")
        for obj in vars(module).values():
            spec = getattr(obj, "spec", None)
            if (
                isinstance(obj, type)
                and obj.__module__ == module.__name__
                and isinstance(spec, OptimizerSpec)
            ):
                if spec.name in found:
                    raise RuntimeError(f"two optimizers named {spec.name!r}")
                found[spec.name] = obj
    return dict(sorted(found.items()))


#: registry name -> optimizer class (its ``spec`` says the rest)
OPTIMIZERS: dict[str, type[Any]] = _discover()


@dataclass(frozen=True)
class Entry:
    """A name a user can pick (``--optimizer``, compare's list): an optimizer, or one of its
    variants with fixed settings and its own default search ranges."""

    name: str
    optimizer: str
    summary: str
    fixed: Mapping[str, Any] = field(default_factory=dict)
    tune: Mapping[str, tuple[float, float, bool]] = field(default_factory=dict)

    @property
    def spec(self) -> OptimizerSpec:
        return OPTIMIZERS[self.optimizer].spec  # type: ignore[attr-defined]

    @property
    def cls(self) -> type[Any]:
        return OPTIMIZERS[self.optimizer]

    def tuning_space(self) -> dict[str, dict[str, Any]]:
        """The default search space: the spec's ranges, the variant's where it has its own
        (its fixed settings are not searched)."""
        space = {n: r for n, r in self.spec.tuning_space().items() if n not in self.fixed}
        space.update(
            {n: {"low": lo, "high": hi, "log": log} for n, (lo, hi, log) in self.tune.items()}
        )
        return space


def _entries() -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    for name, cls in OPTIMIZERS.items():
        spec: OptimizerSpec = cls.spec  # type: ignore[attr-defined]
        out[name] = Entry(name, name, spec.summary)
        for v in spec.variants:
            if v.name in OPTIMIZERS or v.name in out:
                raise RuntimeError(f"variant name {v.name!r} is taken")
            out[v.name] = Entry(v.name, name, v.summary, v.fixed, v.tune)
    return out


#: every name a user can pick: optimizers and their variants
ENTRIES: dict[str, Entry] = _entries()

#: the entries of ``optimkit compare``'s default tournament, in database order
COMPARE_DEFAULTS: tuple[str, ...] = tuple(
    e
    for cls in OPTIMIZERS.values()
    for e in cls.spec.compare  # type: ignore[attr-defined]
)


def entry(name: str) -> Entry:
    """The entry of a (case-insensitive) name; unknown names list the valid ones."""
    found = ENTRIES.get(name.lower())
    if found is None:
        raise ValueError(f"optimizer: unknown name {name!r}; valid: {', '.join(ENTRIES)}")
    return found
