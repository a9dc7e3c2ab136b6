"""Population trainer vs the same configurations trained one after another (issue 3).

Run: ``.venv/bin/python -m benchmarks.bench_train [--repeats 3] [--quick] [--no-cnn]
[--no-scaling] [--threads 1 2] [--seq-configs N]``.

Headline: 64 configurations of an MLP 64-128-10 (ReLU) on digits (standardized, 1,257
training rows), 20 epochs, batch 64, Adam with 64 (lr, weight decay) pairs drawn log-uniform
from [1e-4, 1e-1] x [1e-6, 1e-2] (seed 0), member k initialized from seed k.

* sequential: plain torch, one configuration after another: ``nn.Sequential(Linear, ReLU,
  Linear)``, ``torch.optim.Adam(lr, weight_decay)``, ``F.cross_entropy``, the batches of
  ``optimkit.data.BatchSampler`` (the population's), validation loss and accuracy after every
  epoch. Timed as 1 process x 2 threads (on the first ``--seq-configs`` configurations, all
  by default), and as 2 processes x 1 thread (32 configurations each; the wall time of the
  pair, from a barrier both pass after their set-up); the faster is the baseline.
* population: ``PopulationTrainer`` with the 64 members (validation loss, accuracy, macro F1
  and log loss of every member after every epoch; the test set once at the end), timed from
  construction to the end of ``fit()``, with each thread count: the default configuration
  (float32, eager optimizer step), ``compile=True`` (the optimizer step through
  torch.compile, compiled before the timing), and ``compile=True, autocast=True`` (bfloat16
  matrix products: mixed precision, opt-in).

Each variant is run ``--repeats`` times in interleaved rounds (so that load from elsewhere
hits them alike) and the median wall time is reported as ms per trial-epoch (wall time /
(configurations x epochs)); the CPU column is the median CPU time of all threads and processes
(on a loaded machine a second thread mostly waits for a core, which wall time shows and CPU
time does not). Best val accuracy: the highest validation accuracy any configuration reached
after any epoch, by the same definition on both sides (member k starts from the weights of
sequential run k and sees the same batches, so in float32 they differ only by rounding).

Scaling: ms per trial-epoch of the population at K = 1 ... 256 for the MLP on digits (default
and compile=True), and for the default CNN (conv 16-32, 3x3, on 1x28x28) on a subset of
Fashion-MNIST (the first ``--cnn-train`` training and ``--cnn-val`` validation images); each
cell is the median wall time of the epochs after a first, untimed one.

Threads are pinned (``torch.set_num_threads`` and threadpoolctl for the BLAS/OpenMP pools).
Compare ratios within one run; absolute times depend on the machine and its load (the title
shows the load average before and after).
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import nn

from benchmarks import floor
from benchmarks.threads import pinned
from optimkit.data import BatchSampler, Dataset, load_dataset
from optimkit.models import build_model
from optimkit.train import PopulationTrainer, TrainConfig

HIDDEN = 128
BATCH = 64
SEED = 0
K_LIST = (1, 8, 32, 64, 128, 256)
#: batch size per model (MF: 256 ratings a step)
BATCH_OF = {"mf": 256}
#: model options of the benchmarked models
OPTIONS_OF: dict[str, dict[str, Any]] = {"mlp": {"hidden": (HIDDEN,)}, "mf": {"dim": 16}}


def configurations(k: int, seed: int = SEED) -> list[dict[str, float | int]]:
    """K (lr, weight_decay) pairs, log-uniform in [1e-4, 1e-1] x [1e-6, 1e-2]; member k's
    initialization seed is k."""
    rng = np.random.default_rng(seed)
    lrs = 10.0 ** rng.uniform(-4, -1, k)
    wds = 10.0 ** rng.uniform(-6, -2, k)
    return [
        {"lr": float(lr), "weight_decay": float(wd), "seed": i}
        for i, (lr, wd) in enumerate(zip(lrs, wds, strict=True))
    ]


# ------------------------------------------------------------------------------ sequential
def train_one(ds: Dataset, config: dict[str, Any], epochs: int) -> list[float]:
    """One configuration with plain torch; returns its val accuracy after each epoch."""
    torch.manual_seed(int(config["seed"]))
    model = nn.Sequential(
        nn.Linear(ds.n_features, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, ds.n_classes or 2)
    )
    opt = torch.optim.Adam(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    sampler = BatchSampler(ds.n_train, batch_size=BATCH, seed=SEED)
    accuracy = []
    for _ in range(epochs):
        model.train()
        for idx in sampler:
            opt.zero_grad()
            F.cross_entropy(model(ds.X_train[idx]), ds.y_train[idx]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            logits = model(ds.X_val)
            F.cross_entropy(logits, ds.y_val)  # the validation loss a user would log
            accuracy.append(float((logits.argmax(1) == ds.y_val).double().mean()))
    return accuracy


def train_sequential(ds: Dataset, configs: Sequence[dict[str, Any]], epochs: int) -> list[float]:
    """Each configuration's best val accuracy."""
    return [max(train_one(ds, c, epochs)) for c in configs]


def _worker(configs, epochs: int, barrier, results) -> None:  # pragma: no cover - subprocess
    with pinned(1):
        ds = load_dataset("digits", seed=SEED)
        train_one(ds, configs[0], 1)  # warm-up (lazy initialization of torch's kernels)
        barrier.wait()
        start, cpu = time.perf_counter(), time.process_time()
        best = train_sequential(ds, configs, epochs)
        results.put((start, time.perf_counter(), time.process_time() - cpu, best))


def run_two_processes(configs: Sequence[dict[str, Any]], epochs: int) -> Run:
    """2 processes x 1 thread, each training half of `configs` after a shared barrier: the
    wall time of the pair, their CPU time, and the configurations' best val accuracies."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(3), ctx.Queue()
    half = (len(configs) + 1) // 2
    procs = [
        ctx.Process(target=_worker, args=(part, epochs, barrier, results))
        for part in (configs[:half], configs[half:])
    ]
    for p in procs:
        p.start()
    barrier.wait(timeout=300)  # a worker that died breaks the barrier instead of hanging
    done = [results.get() for _ in procs]
    for p in procs:
        p.join()
    wall = max(d[1] for d in done) - min(d[0] for d in done)
    return Run(
        wall, sum(d[2] for d in done), max(a for d in done for a in d[3]), len(configs) * epochs
    )


# ------------------------------------------------------------------------------ population
def population_config(epochs: int, model: str = "mlp", **kw: Any) -> TrainConfig:
    options = dict(OPTIONS_OF.get(model, {}))
    return TrainConfig(
        model=model, model_options=options, optimizer="adam", epochs=epochs,
        batch_size=BATCH_OF.get(model, BATCH),
        seed=SEED, **{"retain_memory": True, **kw},  # as the CLI runs
    )  # fmt: skip


def train_population(
    ds: Dataset, configs: Sequence[dict[str, Any]], epochs: int, **kw: Any
) -> PopulationTrainer:
    trainer = PopulationTrainer(ds, population_config(epochs, **kw), configs)
    trainer.fit()
    return trainer


def best_val_accuracy(trainer: PopulationTrainer) -> float:
    return float(trainer.history.curve("val_accuracy").max())


# ------------------------------------------------------------------------------ timing
#: the population's variants: label -> TrainConfig options
POPULATION = {
    "population": {},
    "population, compile": {"compile": True},
    "population, compile + bf16 autocast": {"compile": True, "autocast": True},
}

_compiled_for: tuple[int, int] | None = None  # (threads, K) the compiled kernels were made for


def warm(ds: Dataset, k: int, threads: int, model: str = "mlp", **kw: Any) -> None:
    """Compile (when asked) before timing: inductor's CPU kernels are specialized on the
    thread count, so switching it resets dynamo and compiles again, outside the timing."""
    global _compiled_for
    if not kw.get("compile") or _compiled_for == (threads, k):
        return
    torch._dynamo.reset()
    with pinned(threads):
        PopulationTrainer(ds, population_config(1, model, **kw), configurations(k)).fit()
    _compiled_for = (threads, k)


@dataclasses.dataclass
class Run:
    wall: float  # seconds
    cpu: float  # CPU seconds of every thread and process involved
    best: float  # best val accuracy (any configuration, any epoch)
    trial_epochs: int

    @property
    def ms(self) -> float:
        """Wall milliseconds per trial-epoch."""
        return 1e3 * self.wall / self.trial_epochs


def timed(fn: Callable[[], float], trial_epochs: int) -> Callable[[], Run]:
    """A variant run in this process: wall and CPU time around `fn` (which returns the best
    val accuracy)."""

    def run() -> Run:
        wall, cpu = time.perf_counter(), time.process_time()
        best = fn()
        return Run(time.perf_counter() - wall, time.process_time() - cpu, best, trial_epochs)

    return run


Variant = tuple[Callable[[], None] | None, Callable[[], Run]]  # (untimed set-up, timed run)


def interleaved(variants: dict[str, Variant], repeats: int) -> dict[str, list[Run]]:
    """`repeats` runs of each variant in rounds, the order rotating each round."""
    runs: dict[str, list[Run]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            setup, run = variants[name]
            if setup is not None:
                setup()
            runs[name].append(run())
    return runs


def mlp_floor(ds: Dataset, k: int, rates: floor.Rates) -> floor.Floor:
    """The floor of one trial-epoch of the MLP on `ds` at population size `k`."""
    prof = floor.builtin_profile("mlp", ds.n_features, ds.n_classes or 2, hidden=(HIDDEN,))
    cost = floor.epoch_cost(prof, k, ds.n_train, BATCH, ds.n_val)
    return floor.Floor(cost * (1 / k), rates)


def headline(
    ds: Dataset,
    k: int,
    epochs: int,
    repeats: int,
    threads: Sequence[int],
    seq_configs: int,
    rates: floor.Rates,
) -> Table:
    configs = configurations(k)
    subset = configs[: min(seq_configs, k)]

    def sequential() -> float:
        with pinned(2):
            return max(train_sequential(ds, subset, epochs))

    def population(t: int, kw: dict[str, Any]) -> Variant:
        def run() -> float:
            with pinned(t):
                return best_val_accuracy(train_population(ds, configs, epochs, **kw))

        return (lambda: warm(ds, k, t, **kw)), timed(run, k * epochs)

    with pinned(1):  # warm-up: lazy initialization of torch's kernels
        train_population(ds, configs, 1)
        train_one(ds, configs[0], 1)
    load = os.getloadavg()[0]
    one = "sequential, 1 process x 2 threads"
    if len(subset) < k:
        one += f" (the first {len(subset)} configurations)"
    variants: dict[str, Variant] = {
        one: (None, timed(sequential, len(subset) * epochs)),
        "sequential, 2 processes x 1 thread": (None, lambda: run_two_processes(configs, epochs)),
    }
    n_threads = {one: 2, "sequential, 2 processes x 1 thread": 2}
    for label, kw in POPULATION.items():
        for t in threads:
            variants[f"{label}, {t} thread{'s' * (t > 1)}"] = population(t, kw)
            n_threads[f"{label}, {t} thread{'s' * (t > 1)}"] = t
    runs = interleaved(variants, repeats)
    bound = mlp_floor(ds, k, rates)
    ms = {name: statistics.median(r.ms for r in rs) for name, rs in runs.items()}
    seq_names = [n for n in runs if n.startswith("sequential")]
    baseline = min(seq_names, key=ms.__getitem__)
    seq_best = runs["sequential, 2 processes x 1 thread"][-1].best  # all k configurations
    table = Table(
        title=(
            f"{k} configurations of an MLP {ds.n_features}-{HIDDEN}-{ds.n_classes} on digits, "
            f"{epochs} epochs, batch {BATCH}, Adam (lr, weight decay); median of {repeats}; "
            f"baseline: the faster sequential ({baseline}); load average "
            f"{load:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
    )
    for col in ("variant", "wall s", "ms / trial-epoch", "speed-up vs baseline", "CPU s",
                "floor ms", "x floor", "best val accuracy", "vs sequential best"):  # fmt: skip
        table.add_column(col, justify="left" if col == "variant" else "right")
    for name, rs in runs.items():
        best = rs[-1].best
        table.add_row(
            name,
            f"{statistics.median(r.wall for r in rs):.2f}",
            f"{ms[name]:.2f}",
            f"{ms[baseline] / ms[name]:.1f}x",
            f"{statistics.median(r.cpu for r in rs):.2f}",
            f"{1e3 * bound.seconds(n_threads[name]):.3f}",
            f"{bound.ratio(ms[name] / 1e3, n_threads[name]):.1f}x",
            f"{100 * (best - seq_best):+.2f} pts",
        )
    return table


def clock(threads: int) -> Callable[[], float]:
    """This process's CPU time for one thread (the machine is shared: other processes' load
    does not count), wall time for more (their CPU time would count waiting for a core)."""
    return time.process_time if threads == 1 else time.perf_counter


def model_floor(
    ds: Dataset, model: str, options: dict[str, Any], k: int, rates: floor.Rates
) -> floor.Floor:
    """The floor of one trial-epoch of a built-in model on `ds` at population size `k`."""
    if model == "mf":
        options = {"n_users": ds.metadata["n_users"], "n_items": ds.metadata["n_items"],
                   **options}  # fmt: skip
    if model == "cnn" and "input_shape" in ds.metadata:
        options = {"image_shape": tuple(ds.metadata["input_shape"]), **options}
    n_out = (ds.n_classes or 2) if ds.task == "classification" else 1
    prof = floor.builtin_profile(model, ds.n_features, n_out, **options)
    batch = BATCH_OF.get(model, BATCH)
    cost = floor.epoch_cost(prof, k, ds.n_train, batch, ds.n_val)
    return floor.Floor(cost * (1 / k), rates)


def scaling(
    title: str,
    ds: Dataset,
    model: str,
    k_list: Sequence[int],
    threads: Sequence[int],
    epochs: int,
    variants: Sequence[str],
    rates: floor.Rates,
) -> Table:
    """ms per trial-epoch of the population at each K: median of the epochs after the first
    (which includes compilation, where asked), next to the floor and the ratio to it."""
    table = Table(title=title)
    table.add_column("K", justify="right")
    rows: dict[int, list[str]] = {k: [str(k)] for k in k_list}
    for label in variants:
        kw = POPULATION[label]
        for t in threads:
            name = f"{label.removeprefix('population').strip(', ') or 'default'}, {t}T"
            table.add_column(f"{name}: ms", justify="right")
            table.add_column(f"{name}: vs K=1", justify="right")
            table.add_column(f"{name}: floor ms", justify="right")
            table.add_column(f"{name}: x floor", justify="right")
            if kw.get("compile"):
                torch._dynamo.reset()  # compiled kernels are specialized on the thread count
            base = None
            with pinned(t):
                for k in k_list:
                    trainer = PopulationTrainer(
                        ds, population_config(epochs, model, **kw), configurations(k)
                    )
                    seconds = []
                    tick = clock(t)
                    for _ in range(epochs):
                        start = tick()
                        trainer.run_epoch()
                        seconds.append(tick() - start)
                    ms = 1e3 * statistics.median(seconds[1:]) / k
                    base = base or ms
                    bound = model_floor(ds, model, population_config(1, model).model_options,
                                        k, rates)  # fmt: skip
                    rows[k] += [f"{ms:.3f}", f"{base / ms:.1f}x",
                                f"{1e3 * bound.seconds(t):.3f}",
                                f"{bound.ratio(ms / 1e3, t):.1f}x"]  # fmt: skip
    for row in rows.values():
        table.add_row(*row)
    return table


def plain_options(ds: Dataset, model: str) -> dict[str, Any]:
    """The options the trainer gives `model` on `ds` (image shape, table sizes)."""
    options = dict(OPTIONS_OF.get(model, {}))
    if model == "cnn" and "input_shape" in ds.metadata:
        options.setdefault("image_shape", tuple(ds.metadata["input_shape"]))
    if model == "mf":
        options.setdefault("n_users", ds.metadata["n_users"])
        options.setdefault("n_items", ds.metadata["n_items"])
    return options


def train_plain(ds: Dataset, model: str, config: dict[str, Any], epochs: int) -> float:
    """One configuration of a built-in model with plain torch (the module `build_model`
    gives from the member's seed, torch.optim.Adam, the population's batches, validation after
    every epoch); returns the best val accuracy (classification) or -RMSE (ratings)."""
    n_out = (ds.n_classes or 2) if ds.task == "classification" else 1
    torch.manual_seed(int(config["seed"]))
    net = build_model(model, ds.n_features, n_out, **plain_options(ds, model))
    opt = torch.optim.Adam(net.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    sampler = BatchSampler(ds.n_train, batch_size=BATCH_OF.get(model, BATCH), seed=SEED)
    classify = ds.task == "classification"
    best = -float("inf")
    for _ in range(epochs):
        net.train()
        for idx in sampler:
            opt.zero_grad()
            out = net(ds.X_train[idx])
            y = ds.y_train[idx]
            loss = F.cross_entropy(out, y) if classify else F.mse_loss(out[:, 0], y)
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            out = net(ds.X_val)
            if classify:
                F.cross_entropy(out, ds.y_val)
                score = float((out.argmax(1) == ds.y_val).double().mean())
            else:
                score = -float(F.mse_loss(out[:, 0], ds.y_val).sqrt())
        best = max(best, score)
    return best


def vs_sequential(
    cases: Sequence[tuple[str, Dataset, str]], k: int, epochs: int, repeats: int,
    rates: floor.Rates,
) -> Table:  # fmt: skip
    """Population vs the same K configurations one after another with plain torch, both with
    1 thread and this process's CPU time, per trial-epoch, next to the floor."""
    table = Table(
        title=f"population vs sequential plain torch, K = {k}, {epochs} epochs, Adam (lr, weight "
        f"decay), 1 thread, CPU ms per trial-epoch, median of {repeats}"
    )
    for col in ("model", "sequential ms", "population ms", "speed-up", "floor ms",
                "sequential x floor", "population x floor", "best val: seq / pop"):  # fmt: skip
        table.add_column(col, justify="left" if col == "model" else "right")
    configs = configurations(k)
    for label, ds, model in cases:

        def seq(ds: Dataset = ds, model: str = model) -> float:
            return max(train_plain(ds, model, c, epochs) for c in configs)

        def pop(ds: Dataset = ds, model: str = model) -> float:
            trainer = train_population(ds, configs, epochs, model=model)
            name = "val_accuracy" if ds.task == "classification" else "val_rmse"
            curve = trainer.history.curve(name)
            return float(curve.max()) if ds.task == "classification" else -float(curve.min())

        with pinned(1):
            train_plain(ds, model, configs[0], 1)  # warm-up
            train_population(ds, configs[:2], 1, model=model)
            times: dict[str, list[float]] = {"seq": [], "pop": []}
            best: dict[str, float] = {}
            for r in range(repeats):
                for name, fn in ((("seq", seq), ("pop", pop)) if r % 2 == 0
                                 else (("pop", pop), ("seq", seq))):  # fmt: skip
                    start = time.process_time()
                    best[name] = fn()
                    times[name].append(time.process_time() - start)
        ms = {n: 1e3 * statistics.median(t) / (k * epochs) for n, t in times.items()}
        bound = model_floor(ds, model, OPTIONS_OF.get(model, {}), k, rates)
        fmt = "{:.2%}" if ds.task == "classification" else "RMSE {:.4f}"
        sign = 1 if ds.task == "classification" else -1
        table.add_row(
            label,
            f"{ms['seq']:.2f}",
            f"{ms['pop']:.2f}",
            f"{ms['seq'] / ms['pop']:.1f}x",
            f"{1e3 * bound.seconds(1):.3f}",
            f"{bound.ratio(ms['seq'] / 1e3, 1):.1f}x",
            f"{bound.ratio(ms['pop'] / 1e3, 1):.1f}x",
            f"{fmt.format(sign * best['seq'])} / {fmt.format(sign * best['pop'])}",
        )
    return table


PROFILE_GEMM = ("mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "_linear_pointwise",
                "convolution", "_convolution", "mkldnn_convolution", "conv2d",
                "_slow_conv2d_forward", "_slow_conv2d_backward", "convolution_backward",
                "mkldnn_linear", "_mkl_linear")  # fmt: skip
PROFILE_ALLOC = ("empty", "empty_strided", "empty_like", "zeros", "zeros_like", "resize_",
                 "new_empty", "new_zeros", "new_empty_strided", "ones", "full")  # fmt: skip
PROFILE_VIEWS = ("view", "reshape", "as_strided", "transpose", "t", "unsqueeze", "squeeze",
                 "expand", "permute", "select", "slice", "detach", "alias", "_unsafe_view",
                 "unbind", "split", "narrow", "flatten", "contiguous", "lift_fresh",
                 "result_type", "_has_compatible_shallow_copy_type", "item",
                 "_local_scalar_dense", "is_nonzero", "to", "_to_copy")  # fmt: skip


def profile_split(events: Any, total_us: float) -> dict[str, float]:
    """Self CPU microseconds per category of a torch.profiler `key_averages()` over a run of
    `total_us` CPU microseconds: GEMM, elementwise (every other aten computing op),
    allocation, Python/dispatch (views and metadata ops, autograd and Python function
    frames, and the time no operator accounts for)."""
    split = dict.fromkeys(("GEMM", "elementwise", "allocation", "Python/dispatch"), 0.0)
    for e in events:
        name = e.key
        op = name.split("::", 1)[1] if "::" in name else None
        us = float(e.self_cpu_time_total)
        if op is None:
            split["Python/dispatch"] += us  # autograd nodes, Optimizer.step frames, ...
        elif op in PROFILE_GEMM:
            split["GEMM"] += us
        elif op in PROFILE_ALLOC:
            split["allocation"] += us
        elif op in PROFILE_VIEWS:
            split["Python/dispatch"] += us
        else:
            split["elementwise"] += us
    split["Python/dispatch"] += max(0.0, total_us - sum(split.values()))
    return split


def profile_table(ds: Dataset, k: int = 64, epochs: int = 2, rows: int = 15) -> list[Table]:
    """torch.profiler over one epoch of the MLP at population size `k` (1 thread, after an
    untimed first epoch): the split by category and the top operators by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    with pinned(1):
        trainer = PopulationTrainer(ds, population_config(epochs + 1), configurations(k))
        trainer.run_epoch()
        start = time.process_time()
        trainer.run_epoch()
        plain = time.process_time() - start
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()  # the profiler's times are wall times
            trainer.run_epoch()
            total = time.perf_counter() - start
    events = prof.key_averages()
    split = profile_split(events, 1e6 * total)
    steps = trainer.sampler.num_batches
    opt = sum(float(e.cpu_time_total) for e in events if e.key.startswith("Optimizer.step"))
    first = Table(
        title=f"profile of one epoch of the MLP {ds.n_features}-{HIDDEN}-10 at K = {k} "
        f"({steps} steps + validation), 1 thread: {1e3 * plain:.1f} CPU ms unprofiled, "
        f"{1e3 * total:.1f} wall ms under the profiler; optimizer steps (their kernels included) "
        f"{opt / 1e3:.1f} ms = {100 * opt / 1e6 / total:.0f}%"
    )
    first.add_column("category")
    first.add_column("ms", justify="right")
    first.add_column("share", justify="right")
    for name, us in split.items():
        first.add_row(name, f"{us / 1e3:.1f}", f"{100 * us / (1e6 * total):.0f}%")
    top = Table(title="top operators by self CPU time")
    for col in ("operator", "calls", "self ms", "share"):
        top.add_column(col, justify="left" if col == "operator" else "right")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:rows]:
        top.add_row(e.key, str(e.count), f"{e.self_cpu_time_total / 1e3:.2f}",
                    f"{100 * e.self_cpu_time_total / (1e6 * total):.1f}%")  # fmt: skip
    return [first, top]


def fashion_subset(n_train: int, n_val: int) -> Dataset:
    ds = load_dataset("fashion-mnist", seed=SEED)
    return dataclasses.replace(
        ds,
        X_train=ds.X_train[:n_train],
        y_train=ds.y_train[:n_train],
        X_val=ds.X_val[:n_val],
        y_val=ds.y_val[:n_val],
        X_test=ds.X_test[:n_val],
        y_test=ds.y_test[:n_val],
    )


def main(
    repeats: int = 3,
    quick: bool = False,
    cnn: bool = True,
    cnn_train: int = 256,
    cnn_val: int = 256,
    threads: Sequence[int] = (1, 2),
    seq_configs: int = 64,
    scaling_tables: bool = True,
    profile: bool = False,
    sequential: bool = True,
) -> None:
    # compile=True compiles the optimizer step once per shape set (K) and thread count
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    console = Console()
    if not console.is_terminal:  # a log or a pipe: wide enough for the tables
        console = Console(width=240)
    rates = floor.measure(sorted(set(threads) | {1, 2}), repeats=3 if quick else 7)
    console.print(f"measured floor rates: {rates.describe()}")
    digits = load_dataset("digits", seed=SEED)
    if profile:
        for table in profile_table(digits, k=16 if quick else 64):
            console.print(table)
        return
    k, epochs = (16, 5) if quick else (64, 20)
    console.print(headline(digits, k, epochs, repeats, threads, seq_configs, rates))
    if sequential:
        cases: list[tuple[str, Dataset, str]] = []
        if cnn:
            images = fashion_subset(cnn_train // 4 if quick else cnn_train, cnn_val)
            cases.append((f"CNN conv 16-32, Fashion-MNIST {images.n_train} images", images, "cnn"))
        ratings = movielens_subset(5000 if quick else None)
        if ratings is not None:
            cases.append((f"MF dim 16, MovieLens {ratings.n_train} ratings", ratings, "mf"))
        if cases:
            console.print(vs_sequential(cases, 4 if quick else 16, 1 if quick else 3,
                                        1 if quick else repeats, rates))  # fmt: skip
    if not scaling_tables:
        return
    k_list = K_LIST[:3] if quick else K_LIST
    title = (
        f"population scaling: MLP {digits.n_features}-{HIDDEN}-10 on digits "
        f"({digits.n_train} training rows, batch {BATCH}); ms per trial-epoch, median of "
        "epochs 2-4 (T = threads; 1T: CPU time, 2T: wall time), floor and measured / floor"
    )
    variants = ["population", "population, compile"]
    console.print(scaling(title, digits, "mlp", k_list, threads, 2 if quick else 4, variants,
                          rates))  # fmt: skip
    if cnn:
        images = fashion_subset(cnn_train // 4 if quick else cnn_train, cnn_val)
        title = (
            f"population scaling: CNN conv 16-32 on Fashion-MNIST, a subset of {images.n_train} "
            f"training / {images.n_val} validation images, batch {BATCH}; ms per trial-epoch "
            "of epoch 2 (T = threads), floor and measured / floor"
        )
        console.print(scaling(title, images, "cnn", k_list, threads, 2, ["population"], rates))


def movielens_subset(n_train: int | None) -> Dataset | None:
    """MovieLens ratings (the first `n_train` training ratings, all when None), or None
    when the dataset is not installed."""
    try:
        ds = load_dataset("movielens", seed=SEED)
    except Exception as error:
        print(f"bench_train: MovieLens skipped ({error})")
        return None
    if n_train is None:
        return ds
    return dataclasses.replace(ds, X_train=ds.X_train[:n_train], y_train=ds.y_train[:n_train],
                               X_val=ds.X_val[:n_train], y_val=ds.y_val[:n_train])  # fmt: skip


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks train",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="16 configurations, 5 epochs")
    parser.add_argument("--no-cnn", action="store_true", help="skip the Fashion-MNIST CNN")
    parser.add_argument("--cnn-train", type=int, default=256, help="Fashion-MNIST images")
    parser.add_argument("--cnn-val", type=int, default=256)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--seq-configs", type=int, default=64,
        help="time the 1-process sequential run on the first N configurations only",
    )  # fmt: skip
    parser.add_argument("--no-scaling", action="store_true", help="only the headline table")
    parser.add_argument("--no-sequential", action="store_true",
                        help="skip the CNN / MF rows against sequential torch")  # fmt: skip
    parser.add_argument("--profile", action="store_true",
                        help="only the torch.profiler split of an MLP epoch at K = 64")  # fmt: skip
    return parser


def cli(argv: Sequence[str]) -> None:
    args = parser().parse_args(list(argv))
    main(
        args.repeats, args.quick, not args.no_cnn, args.cnn_train, args.cnn_val, args.threads,
        args.seq_configs, not args.no_scaling, args.profile, not args.no_sequential,
    )  # fmt: skip


if __name__ == "__main__":
    import sys

    cli(sys.argv[1:])
