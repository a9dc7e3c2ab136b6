"""Population forward+backward: grouped path vs generic torch.func path (vs a loop of K plain
modules), for the MLP 64-128-10, the small CNN and matrix factorization.

Run: ``.venv/bin/python benchmarks/bench_models.py [--threads 1] [--repeats 7] [--quick]``.
One step = forward on a shared batch, per-member mean loss (cross-entropy on the
``[K, C, B]`` layout, MSE for mf), ``sum().backward()``. Times are medians of `repeats` runs,
each averaging enough steps to last ~0.1 s of CPU time of this thread (round-robin over
the variants); threads are pinned (torch + BLAS) so the ratios
within one run are what to compare.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from threadpoolctl import threadpool_limits

from optimkit.models import Population, build_model


def _median_seconds(
    steps: dict[str, Callable[[], None]], repeats: int, target: float = 0.1
) -> dict[str, float]:
    """Median CPU seconds of this thread per step, the variants timed round-robin so that load
    from other processes hits them alike."""
    inner = {}
    for name, step in steps.items():
        step()  # warm-up
        start = time.thread_time()
        step()
        inner[name] = max(1, int(target / max(time.thread_time() - start, 1e-6)))
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.thread_time()
            for _ in range(inner[name]):
                step()
            times[name].append((time.thread_time() - start) / inner[name])
    return {name: statistics.median(t) for name, t in times.items()}


def _case_steps(
    name: str, n_features: int, n_outputs: int, options: dict, k: int, batch: int, loop: bool
) -> dict[str, Callable[[], None]]:
    torch.manual_seed(0)
    if name == "mf":
        x = torch.stack(
            [
                torch.randint(0, options["n_users"], (batch,)),
                torch.randint(0, options["n_items"], (batch,)),
            ],
            dim=1,
        )
        y = torch.randn(batch)
    else:
        x = torch.randn(batch, n_features)
        y = torch.randint(0, n_outputs, (batch,))

    def member_loss(out: torch.Tensor) -> torch.Tensor:  # [K, B, out] -> [K]
        if name == "mf":
            return (out[..., 0] - y).square().mean(-1)
        logits = out.transpose(1, 2)  # contiguous [K, C, B] on the grouped path
        return F.cross_entropy(logits, y.expand(out.shape[0], -1), reduction="none").mean(-1)

    steps = {}
    expanded = x.expand(k, *x.shape)  # the same batch given per member: [K, B, ...]
    variants = (
        ("grouped", None, x),
        ("one call", k, x),
        ("expanded", None, expanded),
        ("generic", None, x),
    )
    for variant, chunk, xin in variants:
        pop = Population(
            name,
            n_features,
            n_outputs,
            list(range(k)),
            options=options,
            impl="generic" if variant == "generic" else "grouped",
            chunk=chunk,
        )

        def step(pop: Population = pop, xin: torch.Tensor = xin) -> None:
            for p in pop.params.values():
                p.grad = None
            member_loss(pop.forward(xin, train=True)).sum().backward()

        steps[variant] = step
    if loop:
        models = [build_model(name, n_features, n_outputs, **options) for _ in range(k)]

        def step_loop() -> None:
            for m in models:
                m.zero_grad(set_to_none=True)
            sum(member_loss(m(x).unsqueeze(0)).sum() for m in models).backward()  # type: ignore[union-attr]

        steps["loop"] = step_loop
    return steps


CASES = [
    # label, name, n_features, n_outputs, options, batch, Ks
    ("MLP 64-128-10", "mlp", 64, 10, {"hidden": (128,)}, 64, (1, 8, 64, 256)),
    (
        "MLP 64-128-10 bn+dropout",
        "mlp",
        64,
        10,
        {"hidden": (128,), "batch_norm": True, "dropout": 0.1},
        64,
        (1, 8, 64, 256),
    ),
    ("CNN digits 1x8x8 (16,32)", "cnn", 64, 10, {"channels": (16, 32)}, 64, (1, 8, 64, 256)),
    ("CNN fashion 1x28x28 (8,16)", "cnn", 784, 10, {"channels": (8, 16)}, 64, (1, 8, 64)),
    (
        "MF 671x9066 dim 16",
        "mf",
        2,
        1,
        {"n_users": 671, "n_items": 9066, "dim": 16},
        256,
        (1, 8, 64),
    ),
]


def main(threads: int = 1, repeats: int = 7, quick: bool = False) -> None:
    torch.set_num_threads(threads)
    console = Console(width=150)
    table = Table(
        title=f"Population forward+backward: CPU ms per step (thread time), float32, "
        f"{threads} thread(s), median of {repeats}"
    )
    for col in (
        "model",
        "batch",
        "K",
        "grouped ms",
        "grouped 1 call ms",
        "grouped x [K,B,..] ms",
        "generic ms",
        "loop ms",
        "generic/grouped",
        "default",
    ):
        table.add_column(col, justify="left" if col == "model" else "right")
    with threadpool_limits(limits=threads):
        for label, name, nf, no, options, batch, ks in CASES:
            for k in ks[:2] if quick else ks:
                steps = _case_steps(name, nf, no, options, k, batch, loop=k <= 64)
                ms = {impl: 1e3 * t for impl, t in _median_seconds(steps, repeats).items()}
                ratio = ms["generic"] / ms["grouped"]
                table.add_row(
                    label,
                    str(batch),
                    str(k),
                    f"{ms['grouped']:.3f}",
                    f"{ms['one call']:.3f}",
                    f"{ms['expanded']:.3f}",
                    f"{ms['generic']:.3f}",
                    f"{ms['loop']:.3f}" if "loop" in ms else "-",
                    f"{ratio:.2f}x",
                    "grouped" if ratio >= 1 else "generic",
                )
    console.print(table)
    console.print(
        "grouped: stacked weights through addmm/baddbmm (feature-major [K, F, B]), grouped "
        "conv2d, index_select, members in cache-sized chunks (Population's default); grouped "
        "1 call: all K members in one batched call (chunk=K); grouped x [K,B,..]: the batch "
        "passed per member, so the first layer is a baddbmm / groups=K conv instead of one "
        "shared matmul / conv; generic: torch.func "
        "stack_module_state + functional_call + vmap; loop: K plain nn.Modules one after "
        "another (K <= 64). Thread CPU time, not wall time, so other processes on the machine "
        "disturb the ratios less."
    )
    with threadpool_limits(limits=threads):
        console.print(_loss_layout_table(repeats))


def _loss_layout_table(repeats: int, k: int = 64, batch: int = 64, classes: int = 10) -> Table:
    """Cross-entropy forward+backward on the same logits in three layouts."""
    y = torch.randint(0, classes, (batch,))
    kcb = torch.randn(k, classes, batch, requires_grad=True)  # the grouped output's storage
    kbc = torch.randn(k, batch, classes, requires_grad=True)  # a contiguous [K, B, C] (generic)

    def class_dim_1() -> None:
        F.cross_entropy(kcb, y.expand(k, -1), reduction="none").mean(-1).sum().backward()

    def class_dim_1_strided() -> None:
        logits = kbc.transpose(1, 2)
        F.cross_entropy(logits, y.expand(k, -1), reduction="none").mean(-1).sum().backward()

    def rows() -> None:
        loss = F.cross_entropy(kbc.reshape(k * batch, classes), y.repeat(k), reduction="none")
        loss.view(k, batch).mean(-1).sum().backward()

    steps = {
        "[K, C, B] contiguous (grouped out.transpose(1, 2))": class_dim_1,
        "[K, C, B] strided view of a contiguous [K, B, C]": class_dim_1_strided,
        "[K*B, C] rows": rows,
    }
    ms = {n: 1e3 * t for n, t in _median_seconds(steps, repeats).items()}
    table = Table(title=f"cross-entropy forward+backward, K={k}, B={batch}, C={classes}")
    table.add_column("logits layout")
    table.add_column("ms", justify="right")
    table.add_column("vs [K*B, C]", justify="right")
    for name, value in ms.items():
        table.add_row(name, f"{value:.3f}", f"{ms['[K*B, C] rows'] / value:.1f}x faster")
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="only the two smallest K")
    args = parser.parse_args()
    main(args.threads, args.repeats, args.quick)
