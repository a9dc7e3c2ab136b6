"""The crossed optimizer test matrix, generated from the optimizer database.

For every optimizer with a population form: its cases (the declared boolean options one at a
time, plus its ``test_kwargs``), per-member hyperparameters drawn from the database's test
ranges, and the reference implementation named by its spec. The tests live in
tests/test_optim_matrix.py; this module only builds the cases and runs both sides.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch

from optimkit.optim import OPTIMIZERS, PopulationOptimizer
from optimkit.optim.spec import OptimizerSpec

f64 = torch.float64

#: closure=True optimizers (Hessian from create_graph, ...) and those of sparse gradients
#: (SparseAdam) are tested in their own files
POPULATION = {n: c for n, c in OPTIMIZERS.items()
              if issubclass(c, PopulationOptimizer) and not c.spec.closure
              and c.spec.params != "sparse"}  # fmt: skip


def matrices_only(name: str) -> bool:
    """Muon-like optimizers take only matrices (2-D per member)."""
    return spec_of(name).params == "matrices"


def net(name: str, dtype=f64, seed: int = 0) -> torch.nn.Module:
    """The plain module of the tests: Linear-Tanh-Linear (without biases for an optimizer
    of matrices)."""
    torch.manual_seed(seed)
    bias = not matrices_only(name)
    layers = [torch.nn.Linear(5, 7, bias=bias), torch.nn.Tanh(), torch.nn.Linear(7, 1, bias=bias)]
    return torch.nn.Sequential(*layers).to(dtype)


def shapes(name: str, k: int, plain: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """Population parameter shapes [K, ...]: `plain` per member, each given a trailing 2 when
    the optimizer takes only matrices and the member shape is not 2-D."""
    if not matrices_only(name):
        return [(k, *s) for s in plain]
    return [(k, *s) if len(s) == 2 else (k, *s[:1], 2) if s else (k, 2, 2) for s in plain]


def spec_of(name: str) -> OptimizerSpec:
    return OPTIMIZERS[name].spec  # type: ignore[attr-defined]


def options(name: str) -> Iterator[dict[str, Any]]:
    """The optimizer's boolean options: all off, then each on alone."""
    spec = spec_of(name)
    yield {}
    for h in spec.hyperparameters:
        if h.kind == "bool" and h.default is False:
            yield {h.name: True}


def cases() -> list[tuple[str, dict[str, Any]]]:
    return [(name, flags) for name in POPULATION for flags in options(name)]


def case_id(case: tuple[str, dict[str, Any]]) -> str:
    name, flags = case
    return name + "".join(f"-{k}" for k in flags)


def draw(name: str, k: int, seed: int, per_member: float = 0.7) -> dict[str, Any]:
    """Random flat hyperparameters: a [K] float64 tensor (with probability `per_member`) or
    a float, uniform (log-uniform for log-scaled ones) over each test range."""
    rng = torch.Generator().manual_seed(seed)
    out: dict[str, Any] = {}
    for h in spec_of(name).members:
        r = h.test_range
        if r is None:
            continue
        u = torch.rand(k, generator=rng, dtype=f64)
        lo, hi = r
        if h.log and lo > 0:
            values = torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
        else:
            values = lo + u * (hi - lo)
        out[h.name] = (
            values if bool(torch.rand(1, generator=rng) < per_member) else float(values[0])
        )
    return out


def kwargs_for(name: str, flat: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """Constructor keywords: flat hyperparameters and flags, plus the spec's test settings."""
    spec = spec_of(name)
    merged = {**spec.test_kwargs, **flat, **flags}
    known = {h.name for h in spec.hyperparameters}
    out = spec.to_kwargs({n: v for n, v in merged.items() if n in known})
    out.update({n: v for n, v in merged.items() if n not in known})
    fix = FIXUPS.get(name)
    return fix(out) if fix else out


def _sgd_fixup(kw: dict[str, Any]) -> dict[str, Any]:
    if kw.get("nesterov"):  # torch: Nesterov needs momentum > 0 and no dampening
        kw["dampening"] = 0.0
        mu = kw.get("momentum", 0.0)
        kw["momentum"] = mu.clamp(min=0.1) if isinstance(mu, torch.Tensor) else max(mu, 0.1)
    return kw


def _soap_fixup(kw: dict[str, Any]) -> dict[str, Any]:
    if kw.get("merge_dims"):  # the reference cannot reshape a tensor that merges to one dim
        kw["max_precondition_dim"] = 2
    return kw


#: constraints between hyperparameters the test ranges cannot express
FIXUPS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {"sgd": _sgd_fixup}
FIXUPS["soap"] = _soap_fixup


def member(kwargs: dict[str, Any], m: int) -> dict[str, Any]:
    """Member m's keywords as Python numbers, for the reference."""

    def one(v: Any) -> Any:
        if isinstance(v, torch.Tensor) and v.dim() == 1:
            return float(v[m])
        if isinstance(v, tuple):
            return tuple(one(x) for x in v)
        return v

    return {n: one(v) for n, v in kwargs.items()}


def reference(name: str, params: Any, kwargs: dict[str, Any]) -> torch.optim.Optimizer:
    """The spec's reference implementation, with optimkit-only options removed."""
    ours_only = {"members", "compile", "skip_nonfinite", "clip_grad_norm", "clip_grad_value",
                 "normalize_grad", "l1"}  # fmt: skip
    kw = {n: v for n, v in kwargs.items() if n not in ours_only}
    opt = spec_of(name).reference_class()(params, **kw)
    if callable(getattr(opt, "train", None)):  # schedule-free: references start in eval mode
        opt.train()
    return opt


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max(1, max |b|)."""
    a, b = a.detach().to(f64), b.detach().to(f64)
    return float((a - b).abs().max() / b.abs().max().clamp(min=1.0))


def random_grads(shapes, steps: int, seed: int, dtype=f64) -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        [torch.randn(s, generator=g, dtype=f64).to(dtype) for s in shapes] for _ in range(steps)
    ]
