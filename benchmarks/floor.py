"""The hardware floor of a training step: what this machine allows, measured at run time.

Run: ``.venv/bin/python -m benchmarks.floor [--threads 1 2]`` prints the measured rates and the
floors of the trainer benchmarks' models (MLP 64-128-10 on digits at K = 1, 8, 64, 256, the
CNN on Fashion-MNIST, matrix factorization on MovieLens).

Rates (`measure`): the GEMM rate is ``torch.mm`` of two float32 ``n x n`` matrices (n = 1024
by default), 2 n^3 FLOPs, median of the repeats; where this torch build has oneDNN's linear
kernel (the one the grouped MLP's first layer calls) its rate is measured too and the faster
of the two is the floor's rate. The copy bandwidth is `benchmarks.bandwidth`'s ``copy``
stream. One thread is timed with this process's CPU time (the machine is shared: another
process's load does not count against it); more threads with wall time (their CPU time would
also count the time a thread spends waiting for a core). T threads can always run as fewer, so
the rates of T threads are at least those of fewer (on a loaded machine the measured two-thread
rate can be lower than one thread's; the detail shows what was measured).

Costs (`step_cost`): FLOPs and bytes of one training step of K members of a built-in model on
a batch, counted from one member's layers (forward hooks on a one-sample forward):

* FLOPs: every nn.Linear and nn.Conv2d costs 2 x (output elements) x (inputs per output) per
  sample in the forward, the same again for the weight gradient, and once more for the input
  gradient except on the first layer (whose input, the data, needs none). The optimizer adds
  ``OPTIMIZER_FLOPS`` per parameter (Adam: ~13). Elementwise work (activations, pooling,
  losses) is counted in bytes, not FLOPs.
* bytes (float32): the optimizer's passes over the parameters (``OPTIMIZER_PASSES``; Adam: the
  backward writes the gradient, the step reads parameter, gradient and both moments and
  writes parameter and moments: 8 passes of 4 bytes per parameter), plus the activations:
  every layer's output written in the forward and read in the backward, its gradient written
  and read (4 passes), plus the batch read once.

The floor of a step is ``max(FLOPs / GEMM rate, bytes / copy bandwidth)`` with the rates of
the thread count it ran with: no implementation of the same arithmetic can be faster (caches
can beat the copy bandwidth on small working sets, so a ratio below 1 is possible there). An
epoch adds the validation forward (2 x FLOPs of the forward per validation row, activations
written and read once). `Floor.ratio` is the measured time over that floor: 1.0 is the
hardware, 10 means 90% of the time is not the arithmetic's.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from benchmarks import bandwidth
from benchmarks.threads import pinned

#: elementwise FLOPs per parameter of an optimizer step (for the FLOP count; they are bound by
#: the bytes, which `OPTIMIZER_PASSES` counts)
OPTIMIZER_FLOPS = {"adam": 13, "adamw": 14, "sgd": 4}
#: float32 passes over the parameters per step: the gradient's write in the backward, then the
#: optimizer's reads (parameter, gradient, state) and writes (parameter, state)
OPTIMIZER_PASSES = {"adam": 8, "adamw": 8, "sgd": 5}
BYTES = 4  # float32


# ------------------------------------------------------------------------------ rates
@dataclasses.dataclass(frozen=True)
class Rates:
    """Measured GEMM rate (FLOP/s) and copy bandwidth (B/s) per thread count."""

    gemm: Mapping[int, float]
    copy: Mapping[int, float]
    detail: Mapping[int, Mapping[str, float]] = dataclasses.field(default_factory=dict)

    def describe(self) -> str:
        parts = []
        for t in sorted(self.gemm):
            d = self.detail.get(t, {})
            extra = ""
            if d:
                extra = " (" + ", ".join(f"{k} {v / 1e9:.0f}" for k, v in d.items()) + ")"
            parts.append(
                f"{t} thread{'s' * (t > 1)}: GEMM {self.gemm[t] / 1e9:.0f} GFLOP/s{extra}, "
                f"copy {self.copy[t] / 1e9:.1f} GB/s"
            )
        return "; ".join(parts)


def _median(fn: Callable[[], object], repeats: int, clock: Callable[[], float]) -> float:
    fn()
    fn()
    times = []
    for _ in range(max(1, repeats)):
        start = clock()
        fn()
        times.append(clock() - start)
    return max(statistics.median(times), 1e-9)


def measure(
    threads: Sequence[int] = (1, 2), n: int = 1024, repeats: int = 7, mb: int = 64
) -> Rates:
    """GEMM rate and copy bandwidth with each thread count (see the module docstring)."""
    gemm: dict[int, float] = {}
    copy: dict[int, float] = {}
    detail: dict[int, dict[str, float]] = {}
    a, b = torch.randn(n, n), torch.randn(n, n)
    flops = 2.0 * n**3
    linear = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    for t in threads:
        clock = time.process_time if t == 1 else time.perf_counter
        with pinned(t):
            rates = {"mm": flops / _median(lambda: torch.mm(a, b), repeats, clock)}
            if linear is not None and torch.backends.mkldnn.is_available():
                rates["oneDNN"] = flops / _median(
                    lambda: linear(a, b, None, "none", [], ""), repeats, clock
                )
            copy[t] = bandwidth.measure(mb << 20, repeats, clock)["copy"]
        gemm[t] = max(rates.values())
        detail[t] = rates
    for t in sorted(gemm):  # t threads can always run as fewer: the floor never rises with t
        for u in (u for u in gemm if u < t):
            gemm[t], copy[t] = max(gemm[t], gemm[u]), max(copy[t], copy[u])
    return Rates(gemm, copy, detail)


# ------------------------------------------------------------------------------ costs
@dataclasses.dataclass(frozen=True)
class Cost:
    """FLOPs and bytes of some work."""

    flops: float = 0.0
    bytes: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.flops + other.flops, self.bytes + other.bytes)

    def __mul__(self, factor: float) -> Cost:
        return Cost(self.flops * factor, self.bytes * factor)

    __rmul__ = __mul__

    def seconds(self, rates: Rates, threads: int) -> float:
        """The floor: the larger of the compute and the memory time."""
        return max(self.flops / rates.gemm[threads], self.bytes / rates.copy[threads])

    def bound(self, rates: Rates, threads: int) -> str:
        compute = self.flops / rates.gemm[threads]
        return "GEMM" if compute >= self.bytes / rates.copy[threads] else "memory"


@dataclasses.dataclass(frozen=True)
class Profile:
    """Per-sample, per-member counts of one model, from `model_profile`."""

    forward_flops: float  # per sample
    first_flops: float  # of the first GEMM layer (no input gradient)
    activations: float  # elements of all leaf-module outputs, per sample
    inputs: float  # elements of one sample
    params: int  # per member


def model_profile(model: nn.Module, sample: torch.Tensor) -> Profile:
    """Count `model`'s GEMM FLOPs and activation elements on one sample (``sample`` with a
    batch dim of 1)."""
    flops: list[float] = []
    acts: list[float] = []

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        if not isinstance(output, torch.Tensor):
            return
        if isinstance(module, nn.Linear):
            flops.append(2.0 * output.numel() * module.in_features)
        elif isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            flops.append(2.0 * output.numel() * module.in_channels // module.groups * k)
        elif isinstance(module, nn.Embedding):
            flops.append(0.0)
        acts.append(float(output.numel()))

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            out = model(sample)
    finally:
        for h in handles:
            h.remove()
    if not acts:  # a module without children modules (e.g. all parameters, no layers)
        acts.append(float(out.numel()))
    params = sum(p.numel() for p in model.parameters())
    first = next((f for f in flops if f > 0), 0.0)
    return Profile(sum(flops), first, sum(acts), float(sample[0].numel()), params)


def step_cost(profile: Profile, k: int, batch: int, optimizer: str = "adam") -> Cost:
    """One training step of K members on a (shared) batch; see the module docstring."""
    gemm = profile.forward_flops * 3 - profile.first_flops  # forward, weight and input grads
    flops = k * batch * gemm + k * profile.params * OPTIMIZER_FLOPS.get(optimizer, 13)
    nbytes = BYTES * (
        k * profile.params * OPTIMIZER_PASSES.get(optimizer, 8)
        + k * batch * profile.activations * 4
        + batch * profile.inputs
    )
    return Cost(flops, nbytes)


def eval_cost(profile: Profile, k: int, rows: int) -> Cost:
    """The forward of K members on `rows` validation rows."""
    nbytes = BYTES * (k * rows * profile.activations * 2 + rows * profile.inputs)
    return Cost(k * rows * profile.forward_flops, nbytes)


def epoch_cost(
    profile: Profile,
    k: int,
    n_train: int,
    batch: int,
    n_val: int,
    optimizer: str = "adam",
) -> Cost:
    """One epoch of K members: ceil(n_train / batch) steps (the last one smaller) and the
    validation forward."""
    full, rest = divmod(n_train, batch)
    cost = step_cost(profile, k, batch, optimizer) * full
    if rest:
        cost = cost + step_cost(profile, k, rest, optimizer)
    return cost + eval_cost(profile, k, n_val)


@dataclasses.dataclass(frozen=True)
class Floor:
    """The floor of some work on `rates`, and the ratio of a measured time to it."""

    cost: Cost
    rates: Rates

    def seconds(self, threads: int) -> float:
        return self.cost.seconds(self.rates, threads)

    def ratio(self, measured: float, threads: int) -> float:
        return measured / self.seconds(threads)

    def describe(self, threads: int) -> str:
        return f"{1e3 * self.seconds(threads):.3f} ms ({self.cost.bound(self.rates, threads)})"


def builtin_profile(model: str, n_features: int, n_outputs: int, **options: Any) -> Profile:
    """`model_profile` of a built-in model (one member, seed 0)."""
    from optimkit.models import build_model

    module = build_model(model, n_features, n_outputs, **options)
    sample = torch.zeros(1, 2, dtype=torch.long) if model == "mf" else torch.zeros(1, n_features)
    return model_profile(module, sample)


def main(threads: Sequence[int] = (1, 2)) -> None:
    rates = measure(threads)
    print(rates.describe())
    cases = [
        ("MLP 64-128-10, digits", builtin_profile("mlp", 64, 10, hidden=(128,)), 1257, 64, 270),
        ("CNN conv 16-32, Fashion-MNIST", builtin_profile("cnn", 784, 10), 256, 64, 256),
        (
            "MF 671x9066 dim 16, MovieLens",
            builtin_profile("mf", 2, 1, n_users=671, n_items=9066),
            80003,
            256,
            10000,
        ),
    ]
    for label, prof, n_train, batch, n_val in cases:
        for k in (1, 8, 64, 256):
            cost = epoch_cost(prof, k, n_train, batch, n_val)
            floor = Floor(cost * (1 / k), rates)
            cells = ", ".join(f"{t}T {floor.describe(t)}" for t in threads)
            print(f"{label}, K={k}: floor per trial-epoch {cells}; "
                  f"{cost.flops / k / 1e6:.1f} MFLOP, {cost.bytes / k / 1e6:.1f} MB")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    main(parser.parse_args().threads)
