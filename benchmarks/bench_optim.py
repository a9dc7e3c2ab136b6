"""Optimizer step time for every optimizer in the database: optimkit vs the fastest reference.

Run: ``.venv/bin/python -m benchmarks optim [--only adam,sgd] [--repeats 7] [--quick]``
(or ``python -m benchmarks.bench_optim ...``); ``make bench`` runs it with its defaults.

Every optimizer of `optimkit.optim.OPTIMIZERS` gets one row (those whose spec says
``closure=True`` are skipped, and listed under the table), float32 on CPU, each side with the
spec's default hyperparameters (given explicitly to both, plus the spec's ``test_kwargs``):

(a) **K = 1**: one step of a 10.0M-parameter model, the 8 tensors of a 4-layer MLP (four
    1581 x 1581 weights and their biases), optimkit's drop-in (plain parameters, float
    hyperparameters, its default path) against the fastest implementation of the reference:
    for a ``torch.optim`` reference the faster of ``foreach=True`` and ``fused=True`` (where
    torch accepts fused for this optimizer on CPU, else foreach only); for a package
    reference the package's class (and its ``foreach=True`` where the class takes one).
    Target: optimkit / fastest <= 1.1x.
(b) **K = 64**: one optimkit population step over 64 members of a 64-128-10 MLP (9,610
    parameters each, stacked into 4 tensors [64, ...], ``members=64``, lr a [64] tensor
    spread over one decade around the default) against 64 separate reference steps, each over
    its member's own 4 tensors with its own lr, in the fastest reference variant (for-loop,
    foreach or fused). Target: speed-up >= 10x.
(c) **Bytes per step** at K = 1, against this machine's bandwidth measured at the start of
    the run and again at its end, the higher of the two (`benchmarks.bandwidth`, 256 MiB
    float32 tensors; the machine is shared): ``copy_`` (read + write
    counted) is printed, and the floor uses the in-place stream ``dst.add_(src)`` (2 reads +
    1 write), because an optimizer step writes only tensors it has just read, while
    ``copy_``'s destination lines are also read before being overwritten (write-allocate,
    uncounted), so copy_ understates the bandwidth a step can reach (on this machine by
    1.5-1.8x: a fused Adam step runs at well above the copy_ rate). Model: a
    step that streams over memory once reads and writes every parameter (2 P), reads every
    gradient (P) and reads and writes every state tensor once (2 S, S the bytes of all tensors
    in the optimizer's state after a step, the smaller of optimkit's and the reference's);
    "tensors/step" is (3 P + 2 S) / P, the number of parameter-sized tensors touched (Adam: 7).
    "% of floor" is (bytes / bandwidth) / measured step time: 100% runs at the bandwidth;
    an optimizer that needs several passes (or compute: matrix products, eigendecompositions)
    shows less. Small state (step counters, [K] hyperparameters) is counted but negligible.
    The floor is an estimate: figures a little above 100% come from the bandwidth of a
    shared machine varying between measurements (~10-20%), and state written less often
    than every step (Lookahead's slow weights, every k steps) is counted every step.

``--compile`` adds optimkit's ``compile=True`` at both sizes (two more columns: its ratio to
the same fastest reference; compiled in the warm-up, so ~20 s per optimizer and size on this
machine before any timing: opt-in, not part of ``make bench``).

An optimizer whose spec declares ``params="matrices"`` runs on the model's >= 2-D parameters
only (both sides), one with ``params="sparse"`` with sparse gradients holding 1% of each
parameter's rows (then no byte model); the notes under the table say so. Where a reference
rejects the declared layout the other layouts are tried in turn.

Method: both sides of a cell share the parameter and gradient tensors (each keeps its own
state), are timed in interleaved rounds (the order rotated each round) so that load from
elsewhere on the machine hits them alike, after a warm-up step; a sample is the mean of
enough consecutive steps to last ``--sample`` seconds; a cell is the median of ``--repeats``
samples (fewer when one optimizer's round would take more than 6 s, down to the one timed
warm-up step of each side for the second-order methods; the "n" column says how many).
Threads are pinned (``--threads``, default 1: torch's pool and the BLAS/OpenMP pools) and the
default clock is this process's CPU time (``--clock cpu``), which a busy shared machine
disturbs much less than wall time. Compare ratios within one run, not absolute times across
runs.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from benchmarks.bandwidth import describe, measure
from benchmarks.threads import pinned
from optimkit.optim import OPTIMIZERS
from optimkit.optim.base import OPTIONS

Step = Callable[[], object]
CLOCKS: dict[str, Callable[[], float]] = {"cpu": time.process_time, "wall": time.perf_counter}
MLP_SHAPES: tuple[tuple[int, ...], ...] = ((64, 128), (128,), (128, 10), (10,))  # 9,610
K1_TARGET = 1.1  # optimkit / fastest reference at K = 1, at most
K64_TARGET = 10.0  # 64 reference steps / one optimkit population step, at least

#: the table's columns, in order (the smoke test checks them)
COLUMNS = (
    "optimizer",
    "reference",
    "K=1 optimkit ms",
    "K=1 fastest ref ms",
    "K=1 optimkit/ref (<=1.1x)",
    "K=64 optimkit ms",
    "64 x ref ms",
    "K=64 speed-up (>=10x)",
    "tensors/step",
    "MB/step",
    "floor ms",
    "optimkit % of floor",
    "ref % of floor",
    "n",
)
#: with ``--compile``: optimkit's ``compile=True`` against the same fastest reference
COMPILED_COLUMNS = ("K=1 compile/ref", "K=64 compile speed-up")
COMPILED = "optimkit compile"


@dataclass(frozen=True)
class Sizes:
    """What one run builds: the K = 1 model (4 weights [h, h] and 4 biases [h]), the
    population (K members of `member` shapes), the copy buffer and the sample length."""

    hidden: int
    k: int
    member: tuple[tuple[int, ...], ...]
    copy_mb: int
    sample: float
    budget: float  # seconds of timing per cell before the repeats are cut

    @property
    def model(self) -> list[tuple[int, ...]]:
        return [(self.hidden, self.hidden), (self.hidden,)] * 4


FULL = Sizes(hidden=1581, k=64, member=MLP_SHAPES, copy_mb=256, sample=0.03, budget=6.0)
QUICK = Sizes(hidden=64, k=4, member=MLP_SHAPES, copy_mb=8, sample=0.002, budget=0.5)


# --------------------------------------------------------------------------------- timing
def time_interleaved(
    steps: dict[str, Step],
    repeats: int,
    sample: float,
    clock: Callable[[], float],
    budget: float = math.inf,
) -> tuple[dict[str, float], int]:
    """Median seconds per step of each variant (each has already taken its first step),
    sampled in interleaved rounds (the order rotated each round), and the number of rounds:
    `repeats`, or fewer where they would take more than `budget` seconds; where even one
    round would, each variant's timed warm-up step is its one sample (second-order methods
    on the 10M model: seconds per step)."""
    inner, once, round_cost = {}, {}, 0.0
    for name, step in steps.items():
        start = clock()
        step()  # a warm-up step that also says how many steps fill a sample
        once[name] = max(clock() - start, 1e-7)
        inner[name] = max(1, math.ceil(sample / once[name]))
        round_cost += inner[name] * once[name]
    rounds = min(repeats, int(budget // max(round_cost, 1e-9)))
    if rounds < 1:
        return once, 1
    samples: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            start = clock()
            for _ in range(inner[name]):
                steps[name]()
            samples[name].append((clock() - start) / inner[name])
    return {name: statistics.median(s) for name, s in samples.items()}, rounds


# ---------------------------------------------------------------------------- the database
def spec_of(name: str) -> Any:
    return OPTIMIZERS[name].spec  # type: ignore[attr-defined]


def base_kwargs(name: str) -> dict[str, Any]:
    """Constructor keywords for both sides: every numeric hyperparameter at its declared
    default (so both sides agree even where a package's defaults differ), plus the spec's
    ``test_kwargs``."""
    spec = spec_of(name)
    known = {h.name for h in spec.hyperparameters}
    flat = {h.name: h.default for h in spec.members if h.default is not None}
    extra = dict(spec.test_kwargs)
    flat.update({n: v for n, v in extra.items() if n in known})
    kwargs = spec.to_kwargs(flat)
    kwargs.update({n: v for n, v in extra.items() if n not in known})
    return kwargs


def reference_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keywords without optimkit's own options."""
    return {n: v for n, v in kwargs.items() if n not in OPTIONS}


def reference_variants(name: str, population: bool) -> dict[str, dict[str, Any]]:
    """The implementations of the reference to try (label -> extra keywords), from what its
    constructor takes: ``foreach=True`` and ``fused=True`` (torch.optim; a variant torch
    refuses for this optimizer on CPU is dropped when it is built), for many small models
    also torch's for-loop (``foreach=False``); a package's class also runs as it is."""
    try:
        takes = inspect.signature(spec_of(name).reference_class()).parameters
    except (TypeError, ValueError):
        takes = {}
    torch_optim = spec_of(name).reference.startswith("torch.optim.")
    variants: dict[str, dict[str, Any]] = {}
    if "foreach" in takes:
        if population and torch_optim:
            variants["for-loop"] = {"foreach": False}
        variants["foreach"] = {"foreach": True}
    if "fused" in takes:
        variants["fused"] = {"fused": True}
    if not variants or not torch_optim:  # a package's class as it is (its own default path)
        variants = {"class": {}, **variants}
    return variants


def build(make: Callable[[], Any]) -> Any:
    """An optimizer that has taken one step (so its state exists and it is known to run);
    switched to training mode where it has one (Schedule-Free)."""
    opt = make()
    train = getattr(opt, "train", None)
    if callable(train):
        train()
    opt.step()
    return opt


@dataclass
class Sides:
    """How to build both sides of a row from the database: optimkit's keywords, and the
    reference (label -> extra keywords of its implementations).

    A wrapper (``family="wrapper"``, e.g. Lookahead) is built on both sides around the inner
    optimizer its constructor defaults to (``inner=...``), at that optimizer's database
    defaults; the reference then wraps the inner optimizer's reference implementations."""

    name: str
    kwargs: dict[str, Any]  # optimkit's (the inner optimizer's too, for a wrapper)
    variants: dict[str, dict[str, Any]]
    inner: str | None = None

    @classmethod
    def of(cls, name: str, population: bool) -> Sides:
        spec = spec_of(name)
        if spec.family != "wrapper":
            return cls(name, base_kwargs(name), reference_variants(name, population))
        param = inspect.signature(OPTIMIZERS[name]).parameters.get("inner")
        inner = None if param is None else param.default
        if not isinstance(inner, str) or inner not in OPTIMIZERS:
            raise RuntimeError("a wrapper without a default inner optimizer of the database")
        kwargs = {**base_kwargs(inner), **base_kwargs(name)}
        return cls(name, kwargs, reference_variants(inner, population), inner)

    @property
    def label(self) -> str:
        ref = spec_of(self.name).reference
        return f"{ref}({spec_of(self.inner).reference})" if self.inner else ref

    def ours(self, params: Sequence[Tensor], **extra: Any) -> Any:
        return build(lambda: OPTIMIZERS[self.name](list(params), **{**self.kwargs, **extra}))

    def reference(self, params: Sequence[Tensor], variant: str, **extra: Any) -> Any:
        """The reference in one of its implementations, `extra` (lr) overriding."""
        kwargs = reference_kwargs({**self.kwargs, **extra})
        impl = self.variants[variant]
        ref_cls = spec_of(self.name).reference_class()
        if self.inner is None:
            return build(lambda: ref_cls(list(params), **kwargs, **impl))
        own = {h.arg for h in spec_of(self.name).hyperparameters}
        inner_cls = spec_of(self.inner).reference_class()
        inner_kw = {n: v for n, v in kwargs.items() if n not in own}
        return build(
            lambda: ref_cls(
                inner_cls(list(params), **inner_kw, **impl),
                **{n: v for n, v in kwargs.items() if n in own},
            )
        )


def leaves(shapes: Iterable[tuple[int, ...]], seed: int) -> list[Tensor]:
    """float32 parameters with random gradients."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in shapes:
        p = (0.1 * torch.randn(s, generator=g)).requires_grad_()
        p.grad = torch.randn(s, generator=g)
        out.append(p)
    return out


SPARSE_ROWS = 0.01  # the fraction of rows a sparse gradient holds (an embedding's batch)


def sparse_rows(dense: Tensor, seed: int) -> Tensor:
    """A sparse COO gradient holding `SPARSE_ROWS` of `dense`'s rows (at least one)."""
    g = torch.Generator().manual_seed(seed)
    n = max(1, round(SPARSE_ROWS * dense.shape[0]))
    idx = torch.randperm(dense.shape[0], generator=g)[:n].sort().values
    return torch.sparse_coo_tensor(
        idx[None], dense[idx], dense.shape, check_invariants=False
    ).coalesce()


def _short(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".splitlines()[0]
    return text if len(text) <= 160 else text[:157] + "..."


# ------------------------------------------------------------------------------- one row
@dataclass
class Row:
    name: str
    reference: str
    k1: dict[str, float] = field(default_factory=dict)
    k1_best: str = ""
    k64: dict[str, float] = field(default_factory=dict)
    k64_best: str = ""
    state_bytes: int | None = None
    param_bytes: int = 0
    rounds: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def ratio(self) -> float | None:
        if "optimkit" in self.k1 and self.k1_best:
            return self.k1["optimkit"] / self.k1[self.k1_best]
        return None

    def speedup(self) -> float | None:
        if "optimkit" in self.k64 and self.k64_best:
            return self.k64[self.k64_best] / self.k64["optimkit"]
        return None


def state_nbytes(opt: Any, params: Sequence[Tensor]) -> int:
    """Bytes of every tensor in the optimizer's state of `params` (nested containers too;
    a storage shared by two entries counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0

    def walk(v: Any) -> None:
        nonlocal total
        if isinstance(v, Tensor):
            key = (v.untyped_storage().data_ptr(), v.untyped_storage().nbytes())
            if key not in seen and not v.is_sparse:
                seen.add(key)
                total += v.numel() * v.element_size()
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list | tuple):
            for x in v:
                walk(x)

    inner = getattr(opt, "optimizer", None)  # a wrapper's inner optimizer keeps its own state
    for o in (opt, inner) if isinstance(inner, torch.optim.Optimizer) else (opt,):
        for p in params:
            walk(o.state.get(p, {}))
    return total


def _matrices(shapes: Sequence[tuple[int, ...]], stacked: bool) -> list[tuple[int, ...]]:
    return [s for s in shapes if len(s) >= (3 if stacked else 2)]


Layout = tuple[list[tuple[int, ...]], bool]  # parameter shapes, sparse gradients


def _layouts(name: str, shapes: list[tuple[int, ...]]) -> list[Layout]:
    """What to try, in order: the layout the database declares (``spec.params``: "matrices":
    the model's matrices only; "sparse": sparse gradients), then the others (the model with
    dense gradients, its matrices, sparse gradients) in case a reference rejects it."""
    layouts = {
        "any": (shapes, False),
        "matrices": (_matrices(shapes, False), False),
        "sparse": (shapes, True),
    }
    declared = getattr(spec_of(name), "params", "any")
    first = layouts.get(declared, layouts["any"])
    return [first, *(v for v in layouts.values() if v != first)]


def _references(
    sides: Sides, layouts: Sequence[Layout], make: Callable[..., Any]
) -> tuple[Layout, Any, dict[str, Any]]:
    """The first layout the reference accepts in at least one implementation: (layout,
    `make(layout)`'s parameters, label -> references)."""
    failed: dict[str, str] = {}
    for layout in layouts:
        built = make(*layout)
        refs: dict[str, Any] = {}
        for label in sides.variants:
            try:
                refs[label] = built[1](label)
            except Exception as err:  # a variant torch does not offer for this optimizer
                failed[label] = _short(err)
        if refs:
            return layout, built[0], refs
        gc.collect()
    raise RuntimeError("reference: " + "; ".join(f"{k}: {v}" for k, v in failed.items()))


def bench_one_model(
    name: str, row: Row, sizes: Sizes, repeats: int, clock: Callable[[], float], compile_: bool
) -> None:
    """(a) and (c): K = 1, optimkit's drop-in vs the reference's fastest implementation."""
    sides = Sides.of(name, population=False)
    row.reference = sides.label

    def make(
        shapes: list[tuple[int, ...]], sparse: bool
    ) -> tuple[list[Tensor], Callable[[str], Any]]:
        params = leaves(shapes, seed=0)
        if sparse:
            for i, p in enumerate(params):
                p.grad = sparse_rows(p.grad, seed=i)  # type: ignore[arg-type]
        return params, lambda label: sides.reference(params, label)

    (shapes, sparse), params, refs = _references(sides, _layouts(name, sizes.model), make)
    _note_layout(row, "K=1", shapes != sizes.model, sparse)
    ours = sides.ours(params)
    steps: dict[str, Step] = {"optimkit": ours.step}
    if compile_:
        steps[COMPILED] = sides.ours(params, compile=True).step
    steps.update({label: opt.step for label, opt in refs.items()})
    times, rounds = time_interleaved(steps, repeats, sizes.sample, clock, sizes.budget)
    row.k1 = times
    row.k1_best = min(refs, key=times.__getitem__)
    row.rounds.append(rounds)
    if not sparse:  # the byte model is for dense streams
        row.param_bytes = sum(p.numel() * p.element_size() for p in params)
        row.state_bytes = min(state_nbytes(o, params) for o in (ours, *refs.values()))


def _note_layout(row: Row, part: str, matrices: bool, sparse: bool) -> None:
    if matrices:
        row.notes.append(f"{part}: >= 2-D parameters only (the optimizer takes matrices only)")
    if sparse:
        row.notes.append(
            f"{part}: sparse gradients holding {SPARSE_ROWS:.0%} of each parameter's rows (the "
            "optimizer takes only those); no byte model"
        )


def bench_population(
    name: str, row: Row, sizes: Sizes, repeats: int, clock: Callable[[], float], compile_: bool
) -> None:
    """(b): one optimkit step over K stacked members vs K separate reference steps."""
    sides = Sides.of(name, population=True)
    k = sizes.k
    lr = sides.kwargs.get("lr")
    lrs = None
    if isinstance(lr, float) and lr > 0:  # one lr per member, over a decade around the default
        lrs = lr * torch.logspace(-0.5, 0.5, k, dtype=torch.float64)

    def own_lr(m: int) -> dict[str, float]:
        return {"lr": float(lrs[m])} if lrs is not None else {}

    def make(
        shapes: list[tuple[int, ...]], sparse: bool
    ) -> tuple[list[Tensor], Callable[[str], Any]]:
        stacked = leaves([(k, *s) for s in shapes], seed=1)
        grads = [[p.grad[m] for m in range(k)] for p in stacked]  # type: ignore[index]
        if sparse:  # each member's own sparse rows; the population's: their stack
            grads = [[sparse_rows(g, seed=i * k + m) for m, g in enumerate(gs)]
                     for i, gs in enumerate(grads)]  # fmt: skip
            for p, gs in zip(stacked, grads, strict=True):
                p.grad = torch.stack(gs).coalesce()
        own = []
        for m in range(k):
            mine = []
            for p, gs in zip(stacked, grads, strict=True):
                q = p[m].detach().clone().requires_grad_()
                q.grad = gs[m].clone()
                mine.append(q)
            own.append(mine)
        return stacked, lambda label: [
            sides.reference(own[m], label, **own_lr(m)) for m in range(k)
        ]

    (shapes, sparse), stacked, refs = _references(sides, _layouts(name, list(sizes.member)), make)
    _note_layout(row, f"K={k}", shapes != list(sizes.member), sparse)
    ours_kwargs: dict[str, Any] = {"members": k, **({"lr": lrs} if lrs is not None else {})}
    ours = sides.ours(stacked, **ours_kwargs)
    steps: dict[str, Step] = {"optimkit": ours.step}
    if compile_:
        steps[COMPILED] = sides.ours(stacked, **ours_kwargs, compile=True).step
    steps.update({label: _loop(opts) for label, opts in refs.items()})
    times, rounds = time_interleaved(steps, repeats, sizes.sample, clock, sizes.budget)
    row.k64 = times
    row.k64_best = min(refs, key=times.__getitem__)
    row.rounds.append(rounds)


def _loop(optimizers: list[Any]) -> Step:
    def step() -> None:
        for opt in optimizers:
            opt.step()

    return step


# ---------------------------------------------------------------------------------- table
def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = 1e3 * seconds
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


def _cells(row: Row, bandwidth: float, compiled: bool) -> list[str]:
    ratio, speedup = row.ratio(), row.speedup()
    cells = [row.name, row.reference]
    if row.k1:
        cells += [
            _ms(row.k1["optimkit"]),
            f"{_ms(row.k1[row.k1_best])} ({row.k1_best})",
            f"{ratio:.2f}x" if ratio is not None else "-",
        ]
    else:
        cells += ["error", "error", "-"]
    if row.k64:
        cells += [
            _ms(row.k64["optimkit"]),
            f"{_ms(row.k64[row.k64_best])} ({row.k64_best})",
            f"{speedup:.1f}x" if speedup is not None else "-",
        ]
    else:
        cells += ["error", "error", "-"]
    if row.state_bytes is not None and row.param_bytes:
        moved = 3 * row.param_bytes + 2 * row.state_bytes
        floor = moved / bandwidth
        cells += [
            f"{moved / row.param_bytes:.1f}",
            f"{moved / 1e6:.0f}" if moved >= 1e7 else f"{moved / 1e6:.2f}",
            _ms(floor),
            f"{100 * floor / row.k1['optimkit']:.0f}%",
            f"{100 * floor / row.k1[row.k1_best]:.0f}%",
        ]
    else:
        cells += ["-"] * 5
    cells.append("/".join(str(r) for r in row.rounds) or "-")
    if compiled:
        c1, c64 = row.k1.get(COMPILED), row.k64.get(COMPILED)
        cells.append(f"{c1 / row.k1[row.k1_best]:.2f}x" if c1 else "-")
        cells.append(f"{row.k64[row.k64_best] / c64:.1f}x" if c64 else "-")
    return cells


def markdown(rows: list[Row], bandwidth: float, k: int, compiled: bool = False) -> str:
    columns = COLUMNS + (COMPILED_COLUMNS if compiled else ())
    header = [c.replace("K=64", f"K={k}").replace("64 x", f"{k} x") for c in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        cells = [c.replace("|", "/") for c in _cells(row, bandwidth, compiled)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(rows: list[Row], k: int) -> list[str]:
    out = []
    ratios = {r.name: r.ratio() for r in rows if r.ratio() is not None}
    speedups = {r.name: r.speedup() for r in rows if r.speedup() is not None}
    met = [n for n, x in ratios.items() if x is not None and x <= K1_TARGET]
    missed = [f"{n} {x:.2f}x" for n, x in ratios.items() if x is not None and x > K1_TARGET]
    out.append(
        f"K=1 target (optimkit <= {K1_TARGET}x the fastest reference): met by {len(met)} of "
        f"{len(ratios)}" + (f"; not met: {', '.join(missed)}" if missed else "")
    )
    met = [n for n, x in speedups.items() if x is not None and x >= K64_TARGET]
    missed = [f"{n} {x:.1f}x" for n, x in speedups.items() if x is not None and x < K64_TARGET]
    out.append(
        f"K={k} target (>= {K64_TARGET:.0f}x faster than {k} reference steps): met by "
        f"{len(met)} of {len(speedups)}" + (f"; not met: {', '.join(missed)}" if missed else "")
    )
    return out


# ----------------------------------------------------------------------------------- main
def main(
    only: Sequence[str] | None = None,
    repeats: int = 5,
    quick: bool = False,
    threads: int = 1,
    clock: str = "cpu",
    sample: float | None = None,
    compile_: bool = False,
) -> str:
    """Run the benchmark, print the markdown table (and notes), and return the table."""
    sizes = QUICK if quick else FULL
    if sample is not None:
        sizes = Sizes(**{**sizes.__dict__, "sample": sample})
    names = list(OPTIMIZERS)
    if only:
        unknown = [n for n in only if n not in OPTIMIZERS]
        if unknown:
            raise SystemExit(
                f"bench_optim: unknown optimizer(s) {', '.join(unknown)}; valid: {', '.join(names)}"
            )
        names = [n for n in names if n in only]
    skipped = [n for n in names if spec_of(n).closure]
    names = [n for n in names if not spec_of(n).closure]
    timer = CLOCKS[clock]
    rows: list[Row] = []
    if compile_:  # each compile=True optimizer compiles its update for its own shapes
        limit = torch._dynamo.config.recompile_limit
        torch._dynamo.config.recompile_limit = max(limit, 256)
    started = time.perf_counter()
    with pinned(threads):
        bw = measure(sizes.copy_mb << 20, repeats=max(repeats, 9), clock=timer)
        bandwidth = bw["update"]
        print(f"bandwidth: {describe(bw)}, {sizes.copy_mb} MiB", flush=True)
        for name in names:
            row = Row(name, spec_of(name).reference)
            for part, fn in (("K=1", bench_one_model), (f"K={sizes.k}", bench_population)):
                t0 = time.perf_counter()
                try:
                    fn(name, row, sizes, repeats, timer, compile_)
                except Exception as err:  # one optimizer's failure must not end the run
                    row.errors[part] = _short(err)
                gc.collect()
                print(f"  {name} {part}: {time.perf_counter() - t0:.1f}s", file=sys.stderr,
                      flush=True)  # fmt: skip
            rows.append(row)
        # the floor is the best rate this machine showed: measured again after the rows (the
        # machine is shared, so one measurement can land in another job's memory traffic)
        again = measure(sizes.copy_mb << 20, repeats=max(repeats, 9), clock=timer)
        bw = {key: max(bw[key], again[key]) for key in bw}
        bandwidth = bw["update"]
    table = markdown(rows, bandwidth, sizes.k, compile_)
    n_model = sum(math.prod(s) for s in sizes.model)
    n_member = sum(math.prod(s) for s in sizes.member)
    print()
    print(
        f"Optimizer step, float32 CPU, {threads} thread(s), {clock} clock, median of up to "
        f"{repeats} (n per cell: K=1/K={sizes.k}); K=1: {n_model / 1e6:.2f}M parameters in 8 "
        f"tensors; K={sizes.k}: {n_member:,} parameters per member in 4 tensors; bandwidth: "
        f"{describe(bw)} (the floor uses the update rate)"
    )
    print()
    print(table)
    print()
    for line in summary(rows, sizes.k):
        print(f"- {line}")
    if skipped:
        print(f"- skipped (step needs a closure): {', '.join(skipped)}")
    for row in rows:
        for note in row.notes:
            print(f"- {row.name}: {note}")
        for part, err in row.errors.items():
            print(f"- {row.name} {part} failed: {err}")
    print(
        "- ref: the fastest reference implementation of the row (torch.optim: foreach or "
        "fused, plus the for-loop for the population; packages: their class). tensors/step: "
        "parameter-sized tensors read or written by one streaming pass (3 P + 2 S) / P; floor: "
        "those bytes at the update bandwidth; % of floor = floor / step time."
    )
    print(f"- total time {time.perf_counter() - started:.0f}s", flush=True)
    return table


def cli(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks optim", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--only", default="", help="comma-separated optimizer names")
    parser.add_argument("--repeats", type=int, default=5, help="samples per cell (median)")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sample", type=float, default=None, help="seconds per sample")
    parser.add_argument(
        "--compile", action="store_true",
        help="also time optimkit's compile=True (compiled during the warm-up; slow to start)",
    )  # fmt: skip
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="cpu",
        help="cpu (default: this process's CPU time, robust on a busy machine) or wall",
    )  # fmt: skip
    args = parser.parse_args(argv)
    only = [n.strip().lower() for n in args.only.split(",") if n.strip()]
    return main(
        only or None, args.repeats, args.quick, args.threads, args.clock, args.sample, args.compile
    )


if __name__ == "__main__":
    cli()
