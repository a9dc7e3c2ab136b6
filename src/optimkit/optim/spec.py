"""Declarations of the optimizer database: one `OptimizerSpec` per optimizer class.

Each optimizer class states once, in its ``spec`` attribute, its registry name, every
hyperparameter (where it sits in the constructor, type, valid range, default, tuning range and
scale, CLI flag, one-line doc), the reference implementation it is tested against and the
tolerance of that test. The registry, the CLI flags, the tuner's search spaces, compare's
defaults, report labels, the README table and the crossed test matrix are derived from it
(`optimkit.optim.database`), the way ``optim_db`` drives torch's own optimizer tests.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

Kind = Literal["float", "int", "bool", "choice"]


@dataclass(frozen=True)
class Hyperparameter:
    """One constructor argument (or one element of a tuple argument such as ``betas``).

    ``key`` is where it sits in the constructor (``"lr"`` or ``("betas", 0)``); ``name`` is its
    flat name in configs, search spaces, reports and the CLI (``beta1``). Numbers (``float``)
    are per member: each may be a [K] tensor. ``low``/``high`` bound the valid values
    (``low_open``/``high_open`` exclude the bound); ``tune`` is the default search range
    (``log`` for a log-uniform scale); ``None`` as a default (``nullable``) means "off"/"auto";
    ``test`` is the range the crossed tests draw per-member values from (default: ``tune``).
    ``inf``: +inf is a valid value too (e.g. an unbounded growth rate, Prodigy's default).
    """

    name: str
    default: Any
    doc: str
    key: str | tuple[str, int] | None = None
    kind: Kind = "float"
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    tune: tuple[float, float] | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    nullable: bool = False
    test: tuple[float, float] | None = None
    inf: bool = False

    @property
    def arg(self) -> str:
        """The constructor argument it belongs to."""
        key = self.key if self.key is not None else self.name
        return key if isinstance(key, str) else key[0]

    @property
    def index(self) -> int | None:
        """Its position in a tuple argument (``betas``), or None."""
        return self.key[1] if isinstance(self.key, tuple) else None

    @property
    def member(self) -> bool:
        """True for numbers: one value per population member ([K] tensors allowed)."""
        return self.kind == "float"

    @property
    def test_range(self) -> tuple[float, float] | None:
        return self.test if self.test is not None else self.tune

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def valid_text(self) -> str:
        """The valid range in words, e.g. ``0 <= beta1 < 1``."""
        if self.kind == "bool":
            return "True or False"
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        lo = "" if self.low is None else f"{_num(self.low)} {'<' if self.low_open else '<='} "
        hi = "" if self.high is None else f" {'<' if self.high_open else '<='} {_num(self.high)}"
        text = f"{lo}{self.name}{hi}" if lo or hi else "any finite number"
        text = f"{text} or inf" if self.inf else text
        return f"an int, {text}" if self.kind == "int" else text

    def valid(self, values: Tensor) -> bool:
        """Whether every value (a float64 tensor) is finite (or +inf where ``inf``) and in
        range."""
        ok = torch.isfinite(values)
        if self.inf:
            ok |= values == float("inf")
        if self.low is not None:
            ok &= values > self.low if self.low_open else values >= self.low
        if self.high is not None:
            ok &= values < self.high if self.high_open else values <= self.high
        return bool(ok.all())

    def check(self, value: Any) -> Any:
        """Validate one value as given by a user: return it (a float, int, bool, choice or a
        float64 [K] tensor) or raise a one-line ValueError naming the hyperparameter."""
        if value is None and self.nullable:
            return None
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{self.name}: expected True or False, got {value!r}")
            return value
        if self.kind == "choice":
            if value not in self.choices:
                raise ValueError(f"{self.name}: expected {self.valid_text()}, got {value!r}")
            return value
        if isinstance(value, bool):
            raise ValueError(f"{self.name}: expected a number, got a bool")
        if self.kind == "int":
            if not isinstance(value, int) or not self.valid(torch.tensor(float(value))):
                raise ValueError(f"{self.name}: expected {self.valid_text()}, got {value!r}")
            return value
        out: float | Tensor
        if isinstance(value, int | float):
            values, out = torch.tensor(float(value), dtype=torch.float64), float(value)
        elif isinstance(value, Tensor) and value.dim() == 0 and not value.is_complex():
            values = value.detach().to(torch.float64)
            out = float(values)
        elif (
            isinstance(value, Tensor)
            and value.dim() == 1
            and value.numel() > 0
            and value.is_floating_point()
        ):
            values = out = value.detach().to(torch.float64)
        else:
            got = (
                f"a {value.dtype} tensor of shape {list(value.shape)}"
                if isinstance(value, Tensor)
                else type(value).__name__
            )
            raise ValueError(
                f"{self.name}: expected a number or a 1-D float tensor of shape [K], got {got}"
            )
        if not self.valid(values):
            raise ValueError(f"{self.name}: expected {self.valid_text()}, got {_show(values)}")
        return out


def _num(x: float) -> str:
    return repr(int(x)) if float(x).is_integer() else repr(x)


def _show(t: Tensor) -> str:
    return repr(t.item()) if t.dim() == 0 else repr(t.tolist())


@dataclass(frozen=True)
class Variant:
    """A tournament entry that is an optimizer with fixed settings (``nesterov``: SGD with
    ``nesterov=True``), with its own default search ranges where they differ."""

    name: str
    summary: str
    fixed: Mapping[str, Any] = field(default_factory=dict)
    tune: Mapping[str, tuple[float, float, bool]] = field(default_factory=dict)


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer in the database.

    ``reference`` is the import path of the implementation the crossed tests compare against
    (``"torch.optim.Adam"``, ``"pytorch_optimizer.LAMB"``), ``package`` the pip package that
    ships it (None for torch), ``tolerance`` the float64 relative tolerance of that comparison
    (1e-12 unless ``tolerance_reason`` says why not). ``variants`` are tournament entries with
    fixed settings (SGD's ``momentum`` and ``nesterov``); ``compare`` lists which of the
    optimizer's entries (its own name, its variants' names) are in ``optimkit compare``'s
    default tournament.
    ``test_kwargs`` are settings the tests add to every run (e.g. a shorter warm-up).
    ``closure``: step() needs a closure. ``population``: False for the optimizers whose
    numbers are per model, not per member (one optimizer per model: L-BFGS, Newton).
    ``params``: what it optimizes: any dense tensor, only matrices (Muon: 2-D weights, [K, m, n]
    in a population), or parameters with sparse gradients (SparseAdam).
    """

    name: str
    summary: str
    hyperparameters: tuple[Hyperparameter, ...]
    reference: str
    package: str | None = None
    tolerance: float = 1e-12
    tolerance_reason: str = ""
    family: str = "first-order"
    closure: bool = False
    population: bool = True
    params: Literal["any", "matrices", "sparse"] = "any"
    variants: tuple[Variant, ...] = ()
    compare: tuple[str, ...] = ()
    test_kwargs: Mapping[str, Any] = field(default_factory=dict)
    paper: str = ""

    def __post_init__(self) -> None:
        names = [h.name for h in self.hyperparameters]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: duplicate hyperparameter names in {names}")

    def hyperparameter(self, name: str) -> Hyperparameter:
        for h in self.hyperparameters:
            if h.name == name:
                return h
        valid = ", ".join(h.name for h in self.hyperparameters)
        raise ValueError(f"{self.name}: unknown hyperparameter {name!r}; valid: {valid}")

    @property
    def members(self) -> tuple[Hyperparameter, ...]:
        """The per-member (numeric) hyperparameters."""
        return tuple(h for h in self.hyperparameters if h.member)

    def defaults(self) -> dict[str, Any]:
        """Flat name -> default."""
        return {h.name: h.default for h in self.hyperparameters}

    def to_kwargs(self, flat: Mapping[str, Any]) -> dict[str, Any]:
        """Flat names (``beta1``) -> constructor keywords (``betas=(beta1, beta2)``); the
        missing elements of a tuple argument take their defaults, other missing names are
        left out (the constructor's default applies)."""
        out: dict[str, Any] = {}
        tuples: dict[str, dict[int, Any]] = {}
        for name, value in flat.items():
            h = self.hyperparameter(name)
            if h.index is None:
                out[h.arg] = value
            else:
                tuples.setdefault(h.arg, {})[h.index] = value
        for arg, given in tuples.items():
            parts = sorted((h for h in self.hyperparameters if h.arg == arg), key=_index)
            out[arg] = tuple(given.get(_index(h), h.default) for h in parts)
        return out

    def from_kwargs(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Constructor keywords (or a param group) -> flat names, for what the spec declares."""
        out: dict[str, Any] = {}
        for h in self.hyperparameters:
            if h.arg in kwargs:
                v = kwargs[h.arg]
                out[h.name] = v if h.index is None else v[h.index]
        return out

    def reference_class(self) -> Callable[..., Any]:
        """The reference implementation (imported on demand: reference packages are only in
        the ``dev`` extra)."""
        module, _, attr = self.reference.rpartition(".")
        try:
            return getattr(importlib.import_module(module), attr)
        except ImportError as err:
            raise ImportError(
                f"{self.name}: its reference {self.reference} needs `pip install "
                f"{self.package or module}`"
            ) from err

    def tuning_space(self) -> dict[str, dict[str, Any]]:
        """name -> {"low", "high", "log"} for the hyperparameters with a tuning range."""
        return {
            h.name: {"low": h.tune[0], "high": h.tune[1], "log": h.log}
            for h in self.hyperparameters
            if h.tune is not None
        }


def _index(h: Hyperparameter) -> int:
    return h.index if h.index is not None else 0


# ------------------------------------------------------------------ shared declarations
def lr(default: float, tune: tuple[float, float] = (1e-4, 1.0)) -> Hyperparameter:
    return Hyperparameter("lr", default, "learning rate", low=0.0, tune=tune, log=True)


def weight_decay(
    default: float = 0.0, doc: str = "L2 penalty (coupled: g + wd p)"
) -> Hyperparameter:
    return Hyperparameter("weight_decay", default, doc, low=0.0, tune=(1e-6, 1e-1), log=True)


def eps(default: float = 1e-8, doc: str = "term added to the denominator") -> Hyperparameter:
    return Hyperparameter(
        "eps", default, doc, low=0.0, test=(default, 1e-3) if default > 0 else None
    )


def betas(
    beta1: float = 0.9, beta2: float = 0.999, arg: str = "betas"
) -> tuple[Hyperparameter, ...]:
    return (
        Hyperparameter(
            "beta1",
            beta1,
            "decay of the first moment",
            key=(arg, 0),
            low=0.0,
            high=1.0,
            high_open=True,
            tune=(0.5, 0.99),
        ),
        Hyperparameter(
            "beta2",
            beta2,
            "decay of the second moment",
            key=(arg, 1),
            low=0.0,
            high=1.0,
            high_open=True,
            tune=(0.9, 0.9999),
        ),
    )


def flag(name: str, doc: str, default: bool = False) -> Hyperparameter:
    return Hyperparameter(name, default, doc, kind="bool")


def maximize() -> Hyperparameter:
    return flag("maximize", "maximize the objective instead of minimizing")
