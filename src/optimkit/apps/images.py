"""images: Fashion-MNIST (60,000 train / 10,000 test) with the CNN, an optimizer tournament.

Every optimizer trains the same CNN (conv 16 -> conv 32 -> dense 64 -> 10, `SmallCNN`) for the
same budget: the same epochs over the same shuffled batches of the full 60,000 training
images, with the same cosine decay of its learning rate to 0 (schedule-free AdamW, whose point
is to need no schedule, keeps its constant lr and is evaluated at its averaged weights). Each
optimkit optimizer trains its seeds as one population (K stacked CNNs, [K] hyperparameters).
The baseline row is plain torch: one `nn.Module` and torch.optim.AdamW with AdamW's settings.
No data augmentation. Reported: test accuracy per optimizer over the seeds, the training time
until a member first reaches 90% test accuracy (test accuracy is measured a few times per
epoch, outside the timed training), and the confusion matrix of the best model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from optimkit.apps.base import App, AppOptions, AppResult

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]  # fmt: skip
CNN = {"image_shape": (1, 28, 28), "channels": (16, 32), "hidden": (64,)}


@dataclass(frozen=True)
class Sizes:
    train: int | None  # training images (None: all 60,000)
    test: int | None  # test images (None: all 10,000)
    epochs: int
    seeds: int
    batch_size: int
    evals_per_epoch: int


FULL = Sizes(train=None, test=None, epochs=1, seeds=2, batch_size=128, evals_per_epoch=4)
QUICK = Sizes(train=384, test=256, epochs=1, seeds=2, batch_size=128, evals_per_epoch=1)

#: the tournament: label -> (optimkit optimizer, its hyperparameters, cosine schedule?)
TOURNAMENT: dict[str, tuple[str, dict[str, float], bool]] = {
    "SGD + momentum 0.9": ("sgd", {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}, True),
    "AdamW": ("adamw", {"lr": 2e-3, "weight_decay": 1e-2}, True),
    "schedule-free AdamW": ("adamw_schedule_free", {"lr": 2.5e-3, "warmup_steps": 100}, False),
}
TARGET = 0.90


def _progress(enabled: bool, total: int, what: str) -> Any:
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(console=Console(stderr=True), disable=not enabled, transient=True)
    bar.start()
    return bar, bar.add_task(what, total=total)


def load_images(sizes: Sizes) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(X_train [n, 784], y_train, X_test, y_test): pixels / 255, standardized by the training
    images' mean and std (one number each); the official train/test split."""
    from optimkit.data import load_raw

    raw = load_raw("fashion-mnist")
    test_rows = np.asarray(raw.test_rows)
    train_mask = np.ones(len(raw.y), dtype=bool)
    train_mask[test_rows] = False
    X = torch.from_numpy(np.asarray(raw.X, dtype=np.float32) / 255.0)
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
    """The shuffled index batches of one epoch (the same for every optimizer)."""
    g = torch.Generator().manual_seed(seed * 1_000 + epoch)
    perm = torch.randperm(n, generator=g)
    return list(perm.split(batch_size))


def cosine(step: int, total: int) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * step / total))


@dataclass
class Run:
    """One optimizer's training: test accuracy per member at each evaluation, the training
    seconds at each evaluation, and the final predictions of each member."""

    accuracy: list[list[float]]  # [evaluations][K]
    seconds: list[float]
    predictions: Tensor  # [K, n_test]
    train_s: float


def evaluation_points(steps_per_epoch: int, sizes: Sizes) -> set[int]:
    total = steps_per_epoch * sizes.epochs
    per = max(1, steps_per_epoch // sizes.evals_per_epoch)
    return {s for s in range(per, total + 1, per)} | {total}


def train_loop(
    forward: Callable[[Tensor, bool], Tensor],
    step: Callable[[Tensor], None],
    set_factor: Callable[[float], None],
    eval_mode: Callable[[bool], None],
    data: tuple[Tensor, Tensor, Tensor, Tensor],
    sizes: Sizes,
    seed: int,
    tick: Callable[[], None],
) -> Run:
    """The shared loop: forward(x, train) -> logits [K, B, 10]; step(loss [K]) does backward
    and the optimizer step; set_factor(f) scales the lr by f (the cosine)."""
    Xtr, ytr, Xte, yte = data
    n = len(ytr)
    steps = math.ceil(n / sizes.batch_size)
    total = steps * sizes.epochs
    points = evaluation_points(steps, sizes)
    accuracy: list[list[float]] = []
    seconds: list[float] = []
    train_s, done = 0.0, 0
    preds = torch.empty(0)
    for epoch in range(sizes.epochs):
        for idx in batches(n, sizes.batch_size, epoch, seed):
            t0 = time.perf_counter()
            set_factor(cosine(done, total))
            out = forward(Xtr[idx], True)  # [K, B, 10]
            k = out.shape[0]
            loss = F.cross_entropy(out.transpose(1, 2), ytr[idx].expand(k, -1),
                                   reduction="none").mean(1)  # fmt: skip
            step(loss)
            train_s += time.perf_counter() - t0
            done += 1
            if done in points:
                eval_mode(True)
                with torch.no_grad():
                    logits = torch.cat([forward(Xte[i : i + 2000], False)
                                        for i in range(0, len(yte), 2000)], dim=1)  # fmt: skip
                eval_mode(False)
                preds = logits.argmax(-1)
                accuracy.append((preds == yte).double().mean(1).tolist())
                seconds.append(train_s)
                tick()
    return Run(accuracy, seconds, preds, train_s)


def train_optimkit(name: str, hp: dict[str, float], schedule: bool, data: Any, sizes: Sizes,
                   seed: int, tick: Callable[[], None]) -> Run:  # fmt: skip
    """K = sizes.seeds CNNs as one population, one optimkit optimizer with [K] settings."""
    from optimkit.models import Population
    from optimkit.optim import OPTIMIZERS

    k = sizes.seeds
    pop = Population("cnn", 784, 10, [seed + i for i in range(k)], options=CNN)
    params = list(pop.params.values())
    hyper = {key: torch.full((k,), float(v), dtype=torch.float64) if key != "warmup_steps"
             else int(v) for key, v in hp.items()}  # fmt: skip
    opt = OPTIMIZERS[name](params, members=k, **hyper)
    base = torch.as_tensor(hyper["lr"]).clone()
    switch = hasattr(opt, "eval") and hasattr(opt, "train")
    if switch:
        opt.train()

    def step(loss: Tensor) -> None:
        opt.zero_grad()
        loss.sum().backward()
        opt.step()

    def set_factor(f: float) -> None:
        if schedule:
            for group in opt.param_groups:
                group["lr"] = base * f

    def eval_mode(on: bool) -> None:
        if switch:
            opt.eval() if on else opt.train()

    return train_loop(lambda x, train: pop.forward(x, train=train), step, set_factor, eval_mode,
                      data, sizes, seed, tick)  # fmt: skip


def train_torch(hp: dict[str, float], data: Any, sizes: Sizes, seed: int,
                tick: Callable[[], None]) -> Run:  # fmt: skip
    """The baseline: one plain nn.Module (the same CNN, seed `seed`) and torch.optim.AdamW."""
    from optimkit.models import build_model

    torch.manual_seed(seed)
    model = build_model("cnn", 784, 10, **CNN)
    opt = torch.optim.AdamW(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])

    def forward(x: Tensor, train: bool) -> Tensor:
        model.train(train)
        return model(x).unsqueeze(0)

    def step(loss: Tensor) -> None:
        opt.zero_grad()
        loss.sum().backward()
        opt.step()

    def set_factor(f: float) -> None:
        for group in opt.param_groups:
            group["lr"] = hp["lr"] * f

    return train_loop(forward, step, set_factor, lambda on: None, data, sizes, seed, tick)


def time_to(run: Run, target: float) -> list[float]:
    """Per member: training seconds at the first evaluation with accuracy >= target (NaN if
    never)."""
    k = len(run.accuracy[0])
    out = []
    for m in range(k):
        hit = [s for s, acc in zip(run.seconds, run.accuracy, strict=True) if acc[m] >= target]
        out.append(hit[0] if hit else math.nan)
    return out


def run(options: AppOptions) -> AppResult:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = QUICK if options.quick else FULL
    data = load_images(sizes)
    n_train, n_test = len(data[1]), len(data[3])
    steps = math.ceil(n_train / sizes.batch_size)
    n_evals = len(evaluation_points(steps, sizes))
    bar, task = _progress(options.progress, n_evals * (len(TOURNAMENT) + 1), "images")
    runs: dict[str, Run] = {}
    try:
        for label, (name, hp, schedule) in TOURNAMENT.items():
            runs[label] = train_optimkit(name, hp, schedule, data, sizes, options.seed,
                                         lambda: bar.advance(task))  # fmt: skip
        adamw = TOURNAMENT["AdamW"][1]
        runs["torch.optim.AdamW"] = train_torch(adamw, data, sizes, options.seed,
                                                lambda: bar.advance(task))  # fmt: skip
    finally:
        bar.stop()
    rows: list[dict[str, Any]] = []
    for label, r in runs.items():
        final = np.array(r.accuracy[-1])
        t90 = time_to(r, TARGET)
        reached = [t for t in t90 if not math.isnan(t)]
        k = len(final)
        rows.append({
            "method": (f"optimkit {label} (K={k} seeds, one program)"
                       if label in TOURNAMENT else f"{label} (1 seed, plain torch)"),
            "kind": "optimkit" if label in TOURNAMENT else "baseline",
            "test_acc_mean": float(final.mean()),
            "test_acc_std": float(final.std(ddof=1)) if k > 1 else math.nan,
            "test_acc_best": float(final.max()),
            "seeds": k, "epochs": sizes.epochs,
            "time_to_90_s": float(min(reached)) if reached else math.nan,
            "members_reaching_90": len(reached),
            "train_s": r.train_s,
            "s_per_model_epoch": r.train_s / (k * sizes.epochs),
        })  # fmt: skip
    table = pd.DataFrame(rows)
    best_label = max(runs, key=lambda lab: max(runs[lab].accuracy[-1]))
    best_run = runs[best_label]
    member = int(np.argmax(best_run.accuracy[-1]))
    yte = data[3]
    cm = torch.zeros(10, 10, dtype=torch.long)
    cm.index_put_((yte, best_run.predictions[member]), torch.ones_like(yte), accumulate=True)
    best_acc = float(max(best_run.accuracy[-1]))
    total_s = sum(r.train_s for r in runs.values())
    notes = [
        f"{n_train} training / {n_test} test images, {sizes.epochs} epoch(s) per optimizer, "
        f"batch {sizes.batch_size}, no augmentation; total training time {total_s:.0f} s",
        f"best: {best_label} at {best_acc:.2%} test accuracy "
        + (
            "(target 91% reached)"
            if best_acc >= 0.91
            else f"(target 91% not reached within this budget of {sizes.epochs} epoch(s))"
        ),
    ]
    for row in rows:
        t = row["time_to_90_s"]
        notes.append(
            f"{row['method']}: {row['test_acc_mean']:.2%} mean test accuracy; 90% "
            + (f"first reached after {t:.0f} s of training" if not math.isnan(t) else "not reached")
        )
    ok, tr = table.iloc[1], table.iloc[-1]
    notes.append(
        f"optimkit AdamW (seed {options.seed}, member 0) vs torch.optim.AdamW on the same "
        f"seed and batches: {runs['AdamW'].accuracy[-1][0]:.2%} vs {tr['test_acc_mean']:.2%}; "
        f"time per model-epoch {ok['s_per_model_epoch']:.0f} s vs {tr['s_per_model_epoch']:.0f} s"
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
    ax.set_title(f"{best_label}, seed {options.seed + member}: {best_acc:.2%}")
    fig_curve, ax2 = plt.subplots(figsize=(6, 3.5))
    for label, r in runs.items():
        acc = np.array(r.accuracy)
        ax2.plot(r.seconds, acc.mean(1), marker="o", ms=3, label=label)
    ax2.axhline(TARGET, color="k", lw=0.7, ls="--")
    ax2.set_xlabel("training seconds")
    ax2.set_ylabel("test accuracy (mean over seeds)")
    ax2.legend(fontsize=7)
    return AppResult(
        title="images: Fashion-MNIST CNN optimizer tournament",
        table=table,
        better={
            "test_acc_mean": "higher",
            "test_acc_best": "higher",
            "time_to_90_s": "lower",
            "s_per_model_epoch": "lower",
        },
        figures={"confusion_matrix": fig_cm, "test_accuracy": fig_curve},
        notes=notes,
        details={
            "sizes": sizes.__dict__,
            "cnn": {k: list(v) for k, v in CNN.items()},
            "tournament": {
                lab: {"optimizer": n, **hp, "cosine": s} for lab, (n, hp, s) in TOURNAMENT.items()
            },
            "curves": {
                lab: {"seconds": r.seconds, "accuracy": r.accuracy} for lab, r in runs.items()
            },
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
