"""autoencoder: dimensionality reduction of digits and Fashion-MNIST by an MLP autoencoder,
an optimizer tournament, against scikit-learn's PCA at the same code size.

Pixels scaled to [0, 1]. The autoencoder is optimkit's MLP from the image to itself with hidden
widths (h, code, h) (GELU; the code is the middle layer's output) and a linear output, trained
on the mean squared reconstruction error. Each optimizer of the tournament trains one
population of K learning rates (center x 1/3, 1, 3) on the same batches; each member keeps the
weights of its best validation epoch, the best member per optimizer is scored on the test set.
PCA (scikit-learn, the same code size) is fit on the same training images. Metric: mean squared
error per pixel on the test images (PCA's reconstruction: inverse_transform(transform(x))).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from optimkit.apps.base import App, AppOptions, AppResult, progress_bar

#: tournament: optimizer entry -> center learning rate of its population
TOURNAMENT = {
    "momentum": 0.03,  # SGD, momentum 0.9
    "adam": 1e-3,
    "adamw": 1e-3,
    "rmsprop": 3e-4,
    "nadam": 1e-3,
    "lion": 1e-4,
    "adan": 3e-3,
}
QUICK_TOURNAMENT = ("momentum", "adam")
LR_FACTORS = (1 / 3, 1.0, 3.0)


@dataclass(frozen=True)
class Setup:
    dataset: str
    code: int
    hidden: int
    epochs: int
    batch_size: int
    n_train: int | None  # None: all training images
    n_test: int | None


FULL = (
    Setup("digits", code=8, hidden=64, epochs=100, batch_size=64, n_train=None, n_test=None),
    Setup("fashion-mnist", code=32, hidden=256, epochs=8, batch_size=128, n_train=20_000,
          n_test=None),
)  # fmt: skip
QUICK = (
    Setup("digits", code=8, hidden=32, epochs=3, batch_size=64, n_train=None, n_test=None),
    Setup("fashion-mnist", code=16, hidden=32, epochs=1, batch_size=128, n_train=1000,
          n_test=500),
)  # fmt: skip


def load_images(setup: Setup, seed: int = 0) -> tuple[Tensor, Tensor, Tensor, tuple[int, int]]:
    """(train, val, test) images in [0, 1] as [n, pixels] float32 and the image (h, w)."""
    from optimkit.data import load_dataset

    ds = load_dataset(setup.dataset, standardize=False, seed=seed)
    X_train, X_val, X_test = ds.X_train, ds.X_val, ds.X_test
    if setup.dataset == "digits":
        X_train, X_val, X_test = X_train / 16.0, X_val / 16.0, X_test / 16.0
    if setup.n_train is not None:
        g = torch.Generator().manual_seed(seed)
        X_train = X_train[torch.randperm(len(X_train), generator=g)[: setup.n_train]]
        X_val = X_val[torch.randperm(len(X_val), generator=g)[: max(setup.n_train // 4, 100)]]
    if setup.n_test is not None:
        X_test = X_test[: setup.n_test]
    side = math.isqrt(X_train.shape[1])
    return X_train.contiguous(), X_val.contiguous(), X_test.contiguous(), (side, side)


def pca_reconstruction(X_train: Tensor, X: Tensor, code: int, seed: int = 0) -> np.ndarray:
    from sklearn.decomposition import PCA

    pca = PCA(n_components=code, random_state=seed).fit(X_train.numpy())
    return pca.inverse_transform(pca.transform(X.numpy()))


def mse(a: Any, b: Any) -> float:
    return float(np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, np.float64)) ** 2))


def train_autoencoder(
    name: str,
    lrs: list[float],
    X_train: Tensor,
    X_val: Tensor,
    X_test: Tensor,
    setup: Setup,
    seed: int,
) -> dict[str, Any]:
    """One population of K = len(lrs) autoencoders trained with optimizer `name`; returns the
    per-member validation curves, each member's test MSE at its best validation epoch, the
    best member and its test reconstructions."""
    from optimkit.data import BatchSampler
    from optimkit.models import Population
    from optimkit.optim import get_optimizer

    k, d = len(lrs), X_train.shape[1]
    pop = Population("mlp", d, d, [seed + i for i in range(k)],
                     options={"hidden": (setup.hidden, setup.code, setup.hidden),
                              "activation": "gelu"})  # fmt: skip
    opt = get_optimizer(name, list(pop.params.values()), members=k,
                        lr=torch.tensor(lrs, dtype=torch.float64))  # fmt: skip
    sampler = BatchSampler(len(X_train), batch_size=setup.batch_size, seed=seed)

    def errors(X: Tensor) -> Tensor:  # [K] mean squared error per pixel
        with torch.no_grad():
            parts = [((pop.forward(X[i : i + 2048], train=False) - X[i : i + 2048]) ** 2)
                     .sum((1, 2)) for i in range(0, len(X), 2048)]  # fmt: skip
        return torch.stack(parts).sum(0).double() / X.numel()

    best_val = torch.full((k,), math.inf, dtype=torch.float64)
    best_test = torch.full((k,), math.inf, dtype=torch.float64)
    best_state = {n: p.detach().clone() for n, p in pop.params.items()}
    curves = []
    start = time.perf_counter()
    for _ in range(setup.epochs):
        for idx in sampler:
            xb = X_train[idx]
            loss = ((pop.forward(xb, train=True) - xb) ** 2).mean((1, 2))
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
        val = errors(X_val)
        val = torch.where(torch.isfinite(val), val, torch.full_like(val, math.inf))
        better = val < best_val
        if bool(better.any()):
            best_val = torch.where(better, val, best_val)
            best_test = torch.where(better, errors(X_test), best_test)
            for n, p in pop.params.items():
                mask = better.view(-1, *([1] * (p.dim() - 1)))
                best_state[n] = torch.where(mask, p.detach(), best_state[n])
        curves.append(val.tolist())
    seconds = time.perf_counter() - start
    m = int(best_val.argmin())
    with torch.no_grad():
        for n, p in pop.params.items():
            p.copy_(best_state[n])
        recon = pop.forward(X_test[:16], train=False)[m].numpy()
    return {
        "lrs": lrs,
        "val_curves": np.array(curves).T.tolist(),
        "best": m,
        "lr": lrs[m],
        "test_mse": float(best_test[m]),
        "val_mse": float(best_val[m]),
        "test_mse_members": best_test.tolist(),
        "seconds": seconds,
        "recon": recon,
    }


def run(options: AppOptions) -> AppResult:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from optimkit.data import get_dataset_info

    torch.manual_seed(options.seed)
    setups = QUICK if options.quick else FULL
    names = QUICK_TOURNAMENT if options.quick else tuple(TOURNAMENT)
    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    figures: dict[str, Any] = {}
    notes: list[str] = []
    for setup in setups:  # a missing dataset is a usage error: say what to install
        info = get_dataset_info(setup.dataset)
        if not info.is_available():
            raise ValueError(f"dataset {setup.dataset} is not installed: {info.install_hint}")
    curve_fig, curve_axes = plt.subplots(1, len(setups), figsize=(12, 4.5), squeeze=False)
    progress, bar = progress_bar(options, len(setups) * (len(names) + 1), "autoencoder")
    with progress:
        for ax, setup in zip(curve_axes[0], setups, strict=True):
            progress.update(bar, description=f"{setup.dataset}: PCA")
            X_train, X_val, X_test, shape = load_images(setup, options.seed)
            start = time.perf_counter()
            pca_test = pca_reconstruction(X_train, X_test, setup.code, options.seed)
            pca_seconds = time.perf_counter() - start
            pca_mse = mse(pca_test, X_test.numpy())
            progress.advance(bar)
            results = {}
            for name in names:
                progress.update(bar, description=f"{setup.dataset}: {name}")
                lrs = [TOURNAMENT[name] * f for f in LR_FACTORS]
                out = train_autoencoder(name, lrs, X_train, X_val, X_test, setup, options.seed)
                results[name] = out
                rows.append({"dataset": setup.dataset, "method": f"optimkit AE {name}",
                             "kind": "optimkit", "code": setup.code, "test_mse": out["test_mse"],
                             "lr": out["lr"], "seconds": out["seconds"]})  # fmt: skip
                ax.semilogy(np.arange(1, setup.epochs + 1), out["val_curves"][out["best"]],
                            label=f"{name} (lr={out['lr']:.2g})")  # fmt: skip
                progress.advance(bar)
            rows.append({"dataset": setup.dataset, "method": "scikit-learn PCA",
                         "kind": "baseline", "code": setup.code, "test_mse": pca_mse,
                         "lr": math.nan, "seconds": pca_seconds})  # fmt: skip
            ax.axhline(pca_mse, color="k", ls=":", label="PCA (test)")
            ax.set_title(f"{setup.dataset}: code {setup.code}")
            ax.set_xlabel("epoch")
            ax.set_ylabel("validation MSE per pixel")
            ax.legend(fontsize=7)
            winner = min(results, key=lambda n: results[n]["test_mse"])
            best = results[winner]
            figures[f"reconstructions_{setup.dataset}"] = _recon_figure(
                X_test[:8].numpy(), pca_test[:8], best["recon"][:8], shape,
                f"{setup.dataset}, code {setup.code}: original / PCA / AE ({winner})",
            )  # fmt: skip
            verdict = "below" if best["test_mse"] < pca_mse else "above"
            notes.append(
                f"{setup.dataset} (code {setup.code}): best autoencoder {winner} test MSE "
                f"{best['test_mse']:.5f} is {verdict} PCA's {pca_mse:.5f} "
                f"({best['test_mse'] / pca_mse:.2f}x); {len(names)} optimizers x "
                f"{len(LR_FACTORS)} lrs, {setup.epochs} epochs on {len(X_train)} images"
            )
            details[setup.dataset] = {
                "n_train": len(X_train), "n_val": len(X_val), "n_test": len(X_test),
                "code": setup.code, "hidden": setup.hidden, "epochs": setup.epochs,
                "pca_test_mse": pca_mse,
                "optimizers": {n: {k: v for k, v in r.items() if k != "recon"}
                               for n, r in results.items()},
            }  # fmt: skip
    curve_fig.tight_layout()
    figures = {"validation_curves": curve_fig, **figures}
    return AppResult(
        title="autoencoder: MLP autoencoder optimizer tournament vs PCA",
        table=pd.DataFrame(rows),
        better={"test_mse": "lower", "seconds": "lower"},
        figures=figures,
        notes=notes,
        details=details,
    )


def _recon_figure(orig, pca, ae, shape, title):
    import matplotlib.pyplot as plt

    n = len(orig)
    fig, axes = plt.subplots(3, n, figsize=(1.3 * n, 4.2), squeeze=False)
    for row, (label, images) in enumerate((("original", orig), ("PCA", pca), ("AE", ae))):
        for j in range(n):
            ax = axes[row][j]
            ax.imshow(np.clip(images[j], 0, 1).reshape(shape), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


APP = App(
    name="autoencoder",
    summary="digits / Fashion-MNIST autoencoder: an optimizer tournament vs PCA",
    baseline="scikit-learn PCA",
    run=run,
)
