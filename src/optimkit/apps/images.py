"""images: Fashion-MNIST (60,000 train / 10,000 test) with the CNN, an optimizer tournament.

The model is `SmallCNN` with batch norm: conv 32 -> conv 64 (3x3, BatchNorm, ReLU, max-pool 2)
-> dropout 0.2 -> dense 128 (BatchNorm, ReLU, dropout 0.2) -> 10, 422k parameters, run in
channels_last layout. Every optimizer trains it for the same budget: the same epochs over the
same shuffled batches of the full 60,000 training images, from the same initial weights and
dropout draws for seed i, each seed as one plain model (measured faster on this CPU than a
population of the seeds: a K=3 population's forward+backward took 1.3x three plain
channels_last models'). SGD + momentum and AdamW follow the 1cycle policy
(`optimkit.schedules.OneCycleLR`, cosine, 25% warm-up; Smith & Topin, 2019); schedule-free
AdamW (Defazio et al., 2024), whose point is to need no schedule, keeps a constant lr after a
linear warm-up and is evaluated at its averaged weights, with batch-norm statistics recomputed
there (as its authors prescribe). The baseline row is plain torch: torch.optim.AdamW with
torch.optim.lr_scheduler.OneCycleLR on seed 0. No data augmentation.

Protocol: a fixed budget, no choice made on the test set. Test accuracy is measured a few
times per epoch (outside the timed training) only to draw the curve and the time to 90%; the
reported accuracy is the one after the last step. Reported per optimizer over the seeds: test
accuracy mean, std and best, training seconds until a seed first measured >= 90%, training
and wall seconds per run; plus the confusion matrix of the best run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from optimkit.apps.base import App, AppOptions, AppResult, progress_bar

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]  # fmt: skip
CNN: dict[str, Any] = {"image_shape": (1, 28, 28), "channels": (32, 64), "hidden": (128,),
                       "batch_norm": True, "dropout": 0.2}  # fmt: skip


@dataclass(frozen=True)
class Sizes:
    train: int | None  # training images (None: all 60,000)
    test: int | None  # test images (None: all 10,000)
    epochs: int
    seeds: int
    batch_size: int
    evals_per_epoch: int


FULL = Sizes(train=None, test=None, epochs=4, seeds=3, batch_size=256, evals_per_epoch=2)
QUICK = Sizes(train=256, test=256, epochs=2, seeds=2, batch_size=64, evals_per_epoch=2)

#: the tournament: label -> (optimkit optimizer, its hyperparameters, 1cycle schedule?); with
#: the schedule "lr" is the peak lr (max_lr)
TOURNAMENT: dict[str, tuple[str, dict[str, Any], bool]] = {
    "SGD + Nesterov momentum 0.9": (
        "sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}, True),
    "AdamW": ("adamw", {"lr": 3e-3, "weight_decay": 0.05}, True),
    "schedule-free AdamW": ("adamw_schedule_free", {"lr": 3e-3, "weight_decay": 0.05}, False),
}  # fmt: skip
BASELINE = "torch.optim.AdamW"
PCT_START = 0.25  # the 1cycle warm-up fraction; schedule-free's warm-up is as long
TARGET = 0.90
RECALIBRATION_BATCHES = 20  # training batches that recompute batch-norm statistics


def load_images(sizes: Sizes) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(X_train [n, 1, 28, 28], y_train, X_test, y_test): pixels / 255, standardized by the
    training images' mean and std (one number each); the official train/test split."""
    from optimkit.data import load_raw

    raw = load_raw("fashion-mnist")
    test_rows = np.asarray(raw.test_rows)
    train_mask = np.ones(len(raw.y), dtype=bool)
    train_mask[test_rows] = False
    X = torch.from_numpy(np.asarray(raw.X, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(np.asarray(raw.y, dtype=np.int64))
    Xtr, ytr = X[torch.from_numpy(train_mask)], y[torch.from_numpy(train_mask)]
    Xte, yte = X[torch.from_numpy(test_rows)], y[torch.from_numpy(test_rows)]
    if sizes.train:
        Xtr, ytr = Xtr[: sizes.train], ytr[: sizes.train]
    if sizes.test:
        Xte, yte = Xte[: sizes.test], yte[: sizes.test]
    mean, std = Xtr.mean(), Xtr.std()
    return (Xtr - mean) / std, ytr, (Xte - mean) / std, yte


def batches(n: int, batch_size: int, epoch: int, seed: int) -> list[Tensor]:
    """The shuffled index batches of one epoch of seed `seed` (the same for every optimizer)."""
    g = torch.Generator().manual_seed(seed * 1_000 + epoch)
    return list(torch.randperm(n, generator=g).split(batch_size))


def evaluation_points(steps_per_epoch: int, sizes: Sizes) -> list[int]:
    """The steps after which the test accuracy is measured (always after the last one)."""
    total = steps_per_epoch * sizes.epochs
    per = max(1, steps_per_epoch // sizes.evals_per_epoch)
    return sorted(set(range(per, total + 1, per)) | {total})


def time_to(seconds: list[float], accuracy: list[float], target: float) -> float:
    """Training seconds at the first evaluation with accuracy >= target (NaN if none)."""
    return next((s for s, a in zip(seconds, accuracy, strict=True) if a >= target), math.nan)


@dataclass
class Run:
    """One training of one seed: the test accuracy at each evaluation and the training seconds
    before it (evaluations excluded), the final test predictions, the training seconds and the
    wall seconds of the whole run (model set-up and evaluations included)."""

    seed: int
    accuracy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    predictions: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    train_s: float = 0.0
    train_cpu_s: float = 0.0  # CPU seconds of the training steps, all threads
    wall_s: float = 0.0

    @property
    def final(self) -> float:
        return self.accuracy[-1]


def build_cnn(seed: int) -> nn.Module:
    """The tournament's CNN with seed `seed`'s weights (`torch.manual_seed(seed)` first, so
    dropout then draws from that seed too), in channels_last layout."""
    from optimkit.models import build_model

    torch.manual_seed(seed)
    model = build_model("cnn", 784, 10, **CNN)
    return model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, X: Tensor, idx: list[Tensor]) -> None:
    """Recompute every BatchNorm's running mean and variance as the plain average over the
    batches `idx` of X at the current weights (dropout off)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.eval()
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    for i in idx:
        model(X[i])
    for m, mom in zip(norms, saved, strict=True):
        m.momentum = mom
    model.eval()


def train_run(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    scheduler: Any,
    data: tuple[Tensor, Tensor, Tensor, Tensor],
    sizes: Sizes,
    seed: int,
    tick: Callable[[], None],
) -> Run:
    """Train `model` with `opt` (and `scheduler`, stepped after every step, or None) over the
    seed's batches; measure the test accuracy at the evaluation points. An optimizer with
    ``eval``/``train`` (schedule-free) is evaluated at its averaged weights, batch-norm
    statistics recomputed there."""
    t_wall = time.perf_counter()
    Xtr, ytr, Xte, yte = data
    steps = math.ceil(len(ytr) / sizes.batch_size)
    points = set(evaluation_points(steps, sizes))
    averaged = hasattr(opt, "eval") and hasattr(opt, "train")
    run, done = Run(seed), 0
    for epoch in range(sizes.epochs):
        epoch_batches = batches(len(ytr), sizes.batch_size, epoch, seed)
        for idx in epoch_batches:
            t0, c0 = time.perf_counter(), time.process_time()
            model.train()
            if averaged:
                opt.train()  # type: ignore[attr-defined]
            loss = F.cross_entropy(model(Xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if scheduler is not None:
                scheduler.step()
            run.train_s += time.perf_counter() - t0
            run.train_cpu_s += time.process_time() - c0
            done += 1
            if done in points:
                if averaged:
                    opt.eval()  # type: ignore[attr-defined]
                    recalibrate_batch_norm(model, Xtr, epoch_batches[:RECALIBRATION_BATCHES])
                model.eval()
                with torch.no_grad():
                    run.predictions = torch.cat(
                        [model(Xte[i : i + 2000]).argmax(1) for i in range(0, len(yte), 2000)]
                    )
                run.accuracy.append(float((run.predictions == yte).double().mean()))
                run.seconds.append(run.train_s)
                tick()
    run.wall_s = time.perf_counter() - t_wall
    return run


def one_cycle(opt: torch.optim.Optimizer, max_lr: float, total: int, *, torch_own: bool) -> Any:
    """The 1cycle schedule: optimkit's OneCycleLR, or torch's own for the baseline."""
    from optimkit.schedules import OneCycleLR

    cls = torch.optim.lr_scheduler.OneCycleLR if torch_own else OneCycleLR
    return cls(opt, max_lr=max_lr, total_steps=total, pct_start=PCT_START, cycle_momentum=False)


def train_optimkit(name: str, hp: dict[str, Any], schedule: bool, data: Any, sizes: Sizes,
                   seed: int, tick: Callable[[], None]) -> Run:  # fmt: skip
    """One seed of the CNN trained by optimkit optimizer `name`."""
    from optimkit.optim import OPTIMIZERS

    total = math.ceil(len(data[1]) / sizes.batch_size) * sizes.epochs
    model = build_cnn(seed)
    extra = {} if schedule else {"warmup_steps": max(1, int(PCT_START * total))}
    opt = OPTIMIZERS[name](model.parameters(), **hp, **extra)
    scheduler = one_cycle(opt, hp["lr"], total, torch_own=False) if schedule else None
    return train_run(model, opt, scheduler, data, sizes, seed, tick)


def train_torch(hp: dict[str, Any], data: Any, sizes: Sizes, seed: int,
                tick: Callable[[], None]) -> Run:  # fmt: skip
    """The baseline: the same CNN and seed with torch.optim.AdamW and torch's OneCycleLR."""
    total = math.ceil(len(data[1]) / sizes.batch_size) * sizes.epochs
    model = build_cnn(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
    return train_run(model, opt, one_cycle(opt, hp["lr"], total, torch_own=True), data, sizes,
                     seed, tick)  # fmt: skip


def confusion(y: Tensor, pred: Tensor) -> Tensor:
    """[true, predicted] counts."""
    cm = torch.zeros(10, 10, dtype=torch.long)
    cm.index_put_((y, pred), torch.ones_like(y), accumulate=True)
    return cm


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


def tournament(
    data: Any, sizes: Sizes, seed: int, tick: Callable[[], None]
) -> dict[str, list[Run]]:
    """Every optimizer of TOURNAMENT on seeds seed, ..., seed + sizes.seeds - 1, and the
    baseline on `seed`."""
    runs: dict[str, list[Run]] = {}
    for label, (name, hp, schedule) in TOURNAMENT.items():
        runs[label] = [train_optimkit(name, hp, schedule, data, sizes, seed + i, tick)
                       for i in range(sizes.seeds)]  # fmt: skip
    runs[BASELINE] = [train_torch(TOURNAMENT["AdamW"][1], data, sizes, seed, tick)]
    return runs


def summary_rows(runs: dict[str, list[Run]], sizes: Sizes) -> list[dict[str, Any]]:
    rows = []
    for label, rs in runs.items():
        final = np.array([r.final for r in rs])
        t90 = [time_to(r.seconds, r.accuracy, TARGET) for r in rs]
        reached = [t for t in t90 if not math.isnan(t)]
        optimkit = label in TOURNAMENT
        rows.append({
            "method": f"optimkit {label}" if optimkit else f"{label} (plain torch)",
            "kind": "optimkit" if optimkit else "baseline",
            "seeds": len(rs), "epochs": sizes.epochs,
            "test_acc_mean": float(final.mean()),
            "test_acc_std": float(final.std(ddof=1)) if len(rs) > 1 else math.nan,
            "test_acc_best": float(final.max()),
            "time_to_90_s": _nanmean(t90),  # mean over the seeds that reached it
            "seeds_reaching_90": len(reached),
            "train_s": float(np.mean([r.train_s for r in rs])),  # per run
            "train_cpu_s": float(np.mean([r.train_cpu_s for r in rs])),  # per run
            "wall_s": float(np.mean([r.wall_s for r in rs])),  # per run
        })  # fmt: skip
    return rows


def run(options: AppOptions) -> AppResult:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = QUICK if options.quick else FULL
    t_start = time.perf_counter()
    data = load_images(sizes)
    n_train, n_test = len(data[1]), len(data[3])
    n_evals = len(evaluation_points(math.ceil(n_train / sizes.batch_size), sizes))
    n_runs = len(TOURNAMENT) * sizes.seeds + 1
    bar, task = progress_bar(options, n_evals * n_runs, "images")
    with bar:
        runs = tournament(data, sizes, options.seed, lambda: bar.advance(task))
    total_s = time.perf_counter() - t_start
    rows = summary_rows(runs, sizes)
    table = pd.DataFrame(rows)
    best_label, best = max(((lab, r) for lab, rs in runs.items() for r in rs),
                           key=lambda pair: pair[1].final)  # fmt: skip
    yte = data[3]
    cm = confusion(yte, best.predictions)
    reached = best.final >= 0.91
    notes = [
        f"{n_train} training / {n_test} test images, {sizes.epochs} epoch(s) per run, batch "
        f"{sizes.batch_size}, no augmentation, {torch.get_num_threads()} torch thread(s); "
        f"{sizes.seeds} seeds per optimizer, 1 for the baseline; the whole app took "
        f"{total_s:.0f} s",
        f"best run: {best_label}, seed {best.seed}: {best.final:.2%} test accuracy after "
        f"{best.train_s:.0f} s of training ({best.train_cpu_s:.0f} CPU-s), {best.wall_s:.0f} s "
        "wall time (evaluations "
        "included) — target >= 91% in < 10 min "
        + ("met" if reached and best.wall_s < 600 else "NOT met"),
    ]
    for row in rows:
        t = row["time_to_90_s"]
        std = row["test_acc_std"]
        notes.append(
            f"{row['method']}: {row['test_acc_mean']:.2%}"
            + ("" if math.isnan(std) else f" ± {std:.2%}")
            + f" test accuracy over {row['seeds']} seed(s); 90% "
            + (
                f"first measured after {t:.0f} s of training ({row['seeds_reaching_90']} seed(s))"
                if not math.isnan(t)
                else "not reached"
            )
        )
    ok, tr = runs["AdamW"][0], runs[BASELINE][0]
    agree = float((ok.predictions == tr.predictions).double().mean())
    notes.append(
        f"optimkit AdamW + OneCycleLR vs torch.optim.AdamW + torch's OneCycleLR, seed "
        f"{ok.seed}, same batches: {ok.final:.2%} vs {tr.final:.2%} test accuracy, "
        f"{agree:.2%} of test predictions equal; training {ok.train_s:.0f} s vs {tr.train_s:.0f} s"
    )
    fig_cm, ax = plt.subplots(figsize=(6, 5))
    ax.imshow(cm.numpy(), cmap="Blues")
    for i in range(10):
        for j in range(10):
            v = int(cm[i, j])
            ax.text(j, i, str(v), ha="center", va="center", fontsize=6,
                    color="white" if v > cm.max() / 2 else "black")  # fmt: skip
    ax.set_xticks(range(10), CLASSES, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(10), CLASSES, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{best_label}, seed {best.seed}: {best.final:.2%}")
    fig_curve, ax2 = plt.subplots(figsize=(6, 3.5))
    for i, (label, rs) in enumerate(runs.items()):
        for j, r in enumerate(rs):
            ax2.plot(r.seconds, r.accuracy, marker="o", ms=2, lw=1, color=f"C{i}",
                     label=label if j == 0 else None)  # fmt: skip
    ax2.axhline(TARGET, color="k", lw=0.7, ls="--")
    ax2.set_xlabel("training seconds")
    ax2.set_ylabel("test accuracy")
    ax2.legend(fontsize=7)
    return AppResult(
        title="images: Fashion-MNIST CNN optimizer tournament",
        table=table,
        better={
            "test_acc_mean": "higher",
            "test_acc_best": "higher",
            "time_to_90_s": "lower",
            "train_s": "lower",
            "wall_s": "lower",
        },
        figures={"confusion_matrix": fig_cm, "test_accuracy": fig_curve},
        notes=notes,
        details={
            "sizes": sizes.__dict__,
            "cnn": {k: list(v) if isinstance(v, tuple) else v for k, v in CNN.items()},
            "tournament": {
                lab: {"optimizer": n, **hp, "one_cycle": s}
                for lab, (n, hp, s) in TOURNAMENT.items()
            },
            "target": TARGET,
            "threads": torch.get_num_threads(),
            "total_s": total_s,
            "runs": {
                lab: [
                    {
                        "seed": r.seed,
                        "seconds": r.seconds,
                        "accuracy": r.accuracy,
                        "train_s": r.train_s,
                        "train_cpu_s": r.train_cpu_s,
                        "wall_s": r.wall_s,
                        "predictions": r.predictions.tolist(),
                    }
                    for r in rs
                ]
                for lab, rs in runs.items()
            },
            "best": {"method": best_label, "seed": best.seed},
            "confusion_matrix": cm.tolist(),
            "classes": CLASSES,
        },
    )


APP = App(
    name="images",
    summary="Fashion-MNIST CNN: SGD+momentum vs AdamW vs schedule-free AdamW at equal budget",
    baseline="torch.optim.AdamW on the same CNN",
    run=run,
    requires=(),
)
