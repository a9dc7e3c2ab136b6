"""Population trainer vs the same configurations trained one after another (issue 3).

Run: ``.venv/bin/python -m benchmarks.bench_train [--repeats 3] [--quick] [--no-cnn]``.

Headline: 64 configurations of an MLP 64-128-10 (ReLU) on digits (standardized, 1,257
training rows), 20 epochs, batch 64, Adam with 64 (lr, weight decay) pairs drawn log-uniform
from [1e-4, 1e-1] x [1e-6, 1e-2] (seed 0), member k initialized from seed k.

* sequential: plain torch, one configuration after another: ``nn.Sequential(Linear, ReLU,
  Linear)``, ``torch.optim.Adam(lr, weight_decay)``, ``F.cross_entropy``, the batches of
  ``optimkit.data.BatchSampler`` (the population's), validation loss and accuracy after every
  epoch. Timed as 1 process x 2 threads, and as 2 processes x 1 thread (32 configurations
  each; the wall time of the pair, from a barrier both pass after their set-up); the faster is
  the baseline.
* population: ``PopulationTrainer`` with the 64 members (validation loss, accuracy, macro F1
  and log loss of every member after every epoch; the test set once at the end), timed from
  construction to the end of ``fit()``, with 1 and with 2 threads.

Each variant is run ``--repeats`` times in interleaved rounds (so that load from elsewhere
hits them alike) and the median wall time is reported as ms per trial-epoch (wall time / (64
configurations x 20 epochs)). Best val accuracy: the highest validation accuracy any
configuration reached after any epoch, by the same definition on both sides (member k starts
from the weights of sequential run k and sees the same batches, so they differ only by
floating-point rounding).

Scaling: ms per trial-epoch of the population at K = 1 ... 256 for the MLP on digits, and for
the default CNN (conv 16-32, 3x3, on 1x28x28) on a subset of Fashion-MNIST (the first
``--cnn-train`` training and ``--cnn-val`` validation images); each cell is the median wall
time of the epochs after a first, untimed one.

Threads are pinned (``torch.set_num_threads`` and threadpoolctl for the BLAS/OpenMP pools).
Compare ratios within one run; absolute times depend on the machine and its load.
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
from threadpoolctl import threadpool_limits
from torch import nn

from optimkit.data import BatchSampler, Dataset, load_dataset
from optimkit.train import PopulationTrainer, TrainConfig

HIDDEN = 128
BATCH = 64
SEED = 0
K_LIST = (1, 8, 32, 64, 128, 256)


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


class pinned:
    """Pin torch's intra-op pool and the BLAS/OpenMP pools to `threads` inside the block."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def __enter__(self) -> None:
        self.previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        self.limits = threadpool_limits(limits=self.threads)
        self.limits.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.limits.__exit__(*exc)
        torch.set_num_threads(self.previous)


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
    barrier.wait()
    done = [results.get() for _ in procs]
    for p in procs:
        p.join()
    wall = max(d[1] for d in done) - min(d[0] for d in done)
    return Run(wall, sum(d[2] for d in done), max(a for d in done for a in d[3]))


# ------------------------------------------------------------------------------ population
def population_config(epochs: int, model: str = "mlp", **kw: Any) -> TrainConfig:
    options = {"hidden": (HIDDEN,)} if model == "mlp" else {}
    return TrainConfig(
        model=model, model_options=options, optimizer="adam", epochs=epochs, batch_size=BATCH,
        seed=SEED, **kw,
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
@dataclasses.dataclass
class Run:
    wall: float  # seconds
    cpu: float  # CPU seconds of every thread and process involved
    best: float  # best val accuracy (any configuration, any epoch)


def timed(fn: Callable[[], float]) -> Callable[[], Run]:
    """A variant run in this process: wall and CPU time around `fn` (which returns the best
    val accuracy)."""

    def run() -> Run:
        wall, cpu = time.perf_counter(), time.process_time()
        best = fn()
        return Run(time.perf_counter() - wall, time.process_time() - cpu, best)

    return run


def interleaved(variants: dict[str, Callable[[], Run]], repeats: int) -> dict[str, list[Run]]:
    """`repeats` runs of each variant in rounds, the order rotating each round."""
    runs: dict[str, list[Run]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            runs[name].append(variants[name]())
    return runs


def headline(ds: Dataset, k: int, epochs: int, repeats: int, **kw: Any) -> Table:
    configs = configurations(k)
    trial_epochs = k * epochs

    def sequential() -> float:
        with pinned(2):
            return max(train_sequential(ds, configs, epochs))

    def population(threads: int) -> Callable[[], float]:
        def run() -> float:
            with pinned(threads):
                return best_val_accuracy(train_population(ds, configs, epochs, **kw))

        return run

    with pinned(1):  # warm-up: lazy initialization (and compilation, if asked for)
        train_population(ds, configs, 1, **kw)
        train_one(ds, configs[0], 1)
    load = os.getloadavg()[0]
    runs = interleaved(
        {
            "sequential, 1 process x 2 threads": timed(sequential),
            "sequential, 2 processes x 1 thread": lambda: run_two_processes(configs, epochs),
            "population, 1 thread": timed(population(1)),
            "population, 2 threads": timed(population(2)),
        },
        repeats,
    )
    wall = {name: statistics.median(r.wall for r in rs) for name, rs in runs.items()}
    seq_names = [n for n in runs if n.startswith("sequential")]
    baseline = min(seq_names, key=wall.__getitem__)
    seq_best = runs[seq_names[0]][-1].best
    table = Table(
        title=(
            f"{k} configurations of an MLP {ds.n_features}-{HIDDEN}-{ds.n_classes} on digits, "
            f"{epochs} epochs, batch {BATCH}, Adam (lr, weight decay); median of {repeats}; "
            f"baseline: the faster sequential ({baseline}); load average "
            f"{load:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
    )
    for col in ("variant", "wall s", "ms / trial-epoch", "speed-up vs baseline", "CPU s",
                "best val accuracy", "vs sequential best"):  # fmt: skip
        table.add_column(col, justify="left" if col == "variant" else "right")
    for name, rs in runs.items():
        best = rs[-1].best
        table.add_row(
            name,
            f"{wall[name]:.2f}",
            f"{1e3 * wall[name] / trial_epochs:.2f}",
            f"{wall[baseline] / wall[name]:.1f}x",
            f"{statistics.median(r.cpu for r in rs):.2f}",
            f"{100 * best:.2f}%",
            f"{100 * (best - seq_best):+.2f} pts",
        )
    return table


def scaling(
    name: str,
    ds: Dataset,
    model: str,
    k_list: Sequence[int],
    threads: Sequence[int],
    epochs: int,
    **kw: Any,
) -> Table:
    """ms per trial-epoch of the population at each K: median of the epochs after the first."""
    table = Table(title=name)
    table.add_column("K", justify="right")
    for t in threads:
        table.add_column(f"ms / trial-epoch, {t} thread{'s' * (t > 1)}", justify="right")
        table.add_column(f"vs K=1, {t} thread{'s' * (t > 1)}", justify="right")
    rows: dict[int, list[str]] = {k: [str(k)] for k in k_list}
    for t in threads:
        base = None
        with pinned(t):
            for k in k_list:
                trainer = PopulationTrainer(
                    ds, population_config(epochs, model, **kw), configurations(k)
                )
                seconds = []
                for _ in range(epochs):
                    start = time.perf_counter()
                    trainer.run_epoch()
                    seconds.append(time.perf_counter() - start)
                ms = 1e3 * statistics.median(seconds[1:]) / k
                base = base or ms
                rows[k] += [f"{ms:.3f}", f"{base / ms:.1f}x"]
    for row in rows.values():
        table.add_row(*row)
    return table


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
    cnn_train: int = 512,
    cnn_val: int = 512,
    threads: Sequence[int] = (1, 2),
) -> None:
    console = Console()
    if not console.is_terminal:  # a log or a pipe: wide enough for the tables
        console = Console(width=200)
    digits = load_dataset("digits", seed=SEED)
    k, epochs = (16, 5) if quick else (64, 20)
    console.print(headline(digits, k, epochs, repeats))
    k_list = K_LIST[:3] if quick else K_LIST
    title = (
        f"population scaling: MLP {digits.n_features}-{HIDDEN}-10 on digits "
        f"({digits.n_train} training rows, batch {BATCH}; epochs 2-4 timed)"
    )
    console.print(scaling(title, digits, "mlp", k_list, threads, 4))
    if cnn:
        images = fashion_subset(cnn_train // 4 if quick else cnn_train, cnn_val)
        title = (
            f"population scaling: CNN conv 16-32 on Fashion-MNIST, a subset of {images.n_train} "
            f"training / {images.n_val} validation images, batch {BATCH}; epoch 2 timed"
        )
        console.print(scaling(title, images, "cnn", k_list, threads[-1:], 2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="16 configurations, 5 epochs")
    parser.add_argument("--no-cnn", action="store_true", help="skip the Fashion-MNIST CNN")
    parser.add_argument("--cnn-train", type=int, default=512)
    parser.add_argument("--cnn-val", type=int, default=512)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    main(args.repeats, args.quick, not args.no_cnn, args.cnn_train, args.cnn_val, args.threads)
