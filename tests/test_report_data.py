"""TournamentResult validation, the report's number formats and verdict, and curve bands
(against hand-computed values and a brute-force loop over seeds)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from optimkit.report import TournamentResult
from optimkit.report.formatting import (
    fmt_mean_std,
    fmt_seconds,
    fmt_value,
    metric_decimals,
    runner_up,
    seeds_reached,
    verdict,
)
from optimkit.report.summary import curve_bands, focus_range, importance_matrix

NAN = float("nan")


def tiny_parts() -> dict[str, Any]:
    """Two optimizers, two seeds, three epochs; adam's seed 1 stops after epoch 2."""
    meta = {
        "dataset": "toy",
        "metric": "accuracy",
        "greater_is_better": True,
        "target": 0.9,
        "trials": 4,
        "epochs": 3,
        "seeds": 2,
    }
    leaderboard = pd.DataFrame(
        {
            "optimizer": ["sgd", "adam"],
            "rank": [2, 1],
            "test_mean": [0.85, 0.93],
            "test_std": [0.02, 0.01],
            "val_mean": [0.86, 0.94],
            "val_std": [0.015, 0.005],
            "time_to_target_mean": [NAN, 2.125],
            "epochs_to_target_mean": [NAN, 2.0],
            "reached_target": [0.0, 1.0],
            "best_params": [{"lr": 0.1}, {"lr": 1e-3, "beta1": 0.9}],
            "n_trials": [4, 4],
        }
    )
    rows = []
    for opt, base in (("sgd", 0.70), ("adam", 0.80)):
        for seed in (0, 1):
            for epoch in (1, 2, 3):
                if opt == "adam" and seed == 1 and epoch == 3:
                    continue
                v = base + 0.05 * epoch + 0.01 * seed
                rows.append((opt, seed, epoch, v, 1 - v, 0.9 - v / 2, 1.0 * epoch + 0.25 * seed))
    curves = pd.DataFrame(
        rows,
        columns=["optimizer", "seed", "epoch", "val_metric", "val_loss", "train_loss", "seconds"],
    )
    trials = pd.DataFrame(
        {
            "optimizer": ["sgd"] * 4 + ["adam"] * 4,
            "trial": [0, 1, 2, 3] * 2,
            "state": ["complete", "pruned", "fail", "complete"] * 2,
            "value": [0.8, 0.6, NAN, 0.86, 0.9, 0.7, NAN, 0.94],
            "epochs": [3, 1, 1, 3] * 2,
            "lr": [0.1, 1.0, 5.0, 0.05, 1e-3, 1e-2, 1.0, 2e-3],
            "beta1": [NAN] * 4 + [0.9, 0.8, 0.95, 0.9],
        }
    )
    importance = {"adam": {"lr": 0.8, "beta1": 0.2}, "sgd": {}}
    return {
        "meta": meta,
        "leaderboard": leaderboard,
        "curves": curves,
        "trials": trials,
        "importance": importance,
    }


def tiny(edit: Callable[[dict[str, Any]], None] | None = None) -> TournamentResult:
    parts = tiny_parts()
    if edit is not None:
        edit(parts)
    return TournamentResult(**parts)


def test_valid_input_is_normalized():
    r = tiny()
    assert r.optimizers == ["adam", "sgd"]  # sorted by rank
    assert r.leaderboard["rank"].tolist() == [1, 2]
    assert r.leaderboard["rank"].dtype == np.int64
    assert r.hyperparameters == ["lr", "beta1"]
    assert r.meta["target"] == 0.9 and isinstance(r.meta["target"], float)
    np.testing.assert_array_equal(r.reaches([0.89, 0.9, 0.95]), [False, True, True])


def test_inputs_are_copied():
    parts = tiny_parts()
    r = TournamentResult(**parts)
    parts["leaderboard"].loc[0, "test_mean"] = -1.0
    assert -1.0 not in r.leaderboard["test_mean"].tolist()


def _drop(frame: str, column: str) -> Callable[[dict[str, Any]], None]:
    return lambda p: p.__setitem__(frame, p[frame].drop(columns=column))


def _set(frame: str, column: str, row: int, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(p: dict[str, Any]) -> None:
        df = p[frame].astype({column: object})
        df.at[row, column] = value
        p[frame] = df

    return edit


def _meta(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda p: p["meta"].__setitem__(key, value)


BAD_INPUTS = [
    (_drop("leaderboard", "test_std"), r"leaderboard: missing columns \['test_std'\]"),
    (_drop("curves", "seconds"), r"curves: missing columns \['seconds'\]"),
    (_drop("trials", "state"), r"trials: missing columns \['state'\]"),
    (
        lambda p: p.__setitem__("leaderboard", p["leaderboard"].iloc[:0]),
        r"leaderboard: expected one row per optimizer, got an empty frame",
    ),
    (
        lambda p: p.__setitem__("curves", p["curves"].iloc[:0]),
        r"curves: expected the seed runs' learning curves, got an empty frame",
    ),
    (
        _set("curves", "optimizer", 0, "lion"),
        r"curves.optimizer: \['lion'\] not in the leaderboard; valid: adam, sgd",
    ),
    (
        _set("trials", "optimizer", 0, "lion"),
        r"trials.optimizer: \['lion'\] not in the leaderboard",
    ),
    (
        lambda p: p["importance"].__setitem__("lion", {"lr": 1.0}),
        r"importance: optimizers \['lion'\] not in the leaderboard",
    ),
    (_set("leaderboard", "optimizer", 0, "adam"), r"leaderboard.optimizer: duplicate names"),
    (_set("leaderboard", "optimizer", 0, ""), r"leaderboard.optimizer: expected non-empty"),
    (_set("leaderboard", "rank", 0, 0), r"leaderboard.rank: expected integers >= 1"),
    (_set("leaderboard", "rank", 0, 1.5), r"leaderboard.rank: expected integers >= 1"),
    (_set("leaderboard", "test_mean", 0, "high"), r"leaderboard.test_mean: expected numbers"),
    (_set("leaderboard", "test_std", 0, -0.1), r"leaderboard.test_std: expected values >= 0"),
    (_set("leaderboard", "val_mean", 0, math.inf), r"leaderboard.val_mean: expected finite"),
    (_set("leaderboard", "reached_target", 0, 1.5), r"leaderboard.reached_target: .*\[0, 1\]"),
    (_set("leaderboard", "best_params", 0, "lr=0.1"), r"leaderboard.best_params: expected a dict"),
    (_set("leaderboard", "n_trials", 0, -1), r"leaderboard.n_trials: expected integers >= 0"),
    (_set("curves", "epoch", 0, -1), r"curves.epoch: expected integers >= 0"),
    (_set("curves", "seconds", 0, NAN), r"curves.seconds: expected numbers, found NaN"),
    (_set("curves", "seconds", 0, -1.0), r"curves.seconds: expected cumulative wall time >= 0"),
    (_set("curves", "epoch", 1, 1), r"curves: expected one row per \(optimizer, seed, epoch\)"),
    (
        _set("trials", "state", 0, "running"),
        r"trials.state: unknown \['running'\]; valid: complete, pruned, fail",
    ),
    (_set("trials", "trial", 1, 0), r"trials: expected one row per \(optimizer, trial\)"),
    (_set("trials", "lr", 0, 0.0), r"trials.lr: expected learning rates > 0"),
    (
        lambda p: p["importance"].__setitem__("adam", {"lr": 1.2}),
        r"importance\['adam'\]\['lr'\]: expected a number in \[0, 1\]",
    ),
    (
        lambda p: p.__setitem__("importance", ["lr"]),
        r"importance: expected a dict, got list",
    ),
    (
        lambda p: p.__setitem__("curves", p["curves"].to_dict()),
        r"curves: expected a pandas DataFrame, got dict",
    ),
    (lambda p: p.__setitem__("meta", None), r"meta: expected a dict, got NoneType"),
    (lambda p: p["meta"].pop("target"), r"meta: missing keys \['target'\]; required: dataset"),
    (_meta("greater_is_better", "yes"), r"meta.greater_is_better: expected True or False"),
    (_meta("target", "0.9"), r"meta.target: expected a number"),
    (_meta("target", math.nan), r"meta.target: expected a finite number"),
    (_meta("seeds", 0), r"meta.seeds: expected a positive integer"),
    (_meta("trials", 2.5), r"meta.trials: expected a positive integer"),
    (_meta("metric", ""), r"meta.metric: expected a non-empty string"),
    (_meta("wall_time", -3), r"meta.wall_time: expected seconds >= 0"),
]


@pytest.mark.parametrize(("edit", "message"), BAD_INPUTS)
def test_bad_input_names_the_field(edit: Callable[[dict[str, Any]], None], message: str):
    with pytest.raises(ValueError, match=message):
        tiny(edit)


def test_extra_columns_and_meta_keys_are_kept():
    def edit(p: dict[str, Any]) -> None:
        p["leaderboard"]["note"] = ["a", "b"]
        p["meta"]["device"] = "cpu"

    r = tiny(edit)
    assert r.leaderboard["note"].tolist() == ["b", "a"]
    assert r.meta["device"] == "cpu"


# --- formatting and verdict -------------------------------------------------------------


def test_verdict_and_runner_up():
    r = tiny()
    # median std 0.015 -> 3 decimals; 2.125 s -> "2.1 s".
    assert verdict(r) == "adam wins: test accuracy 0.930 ± 0.010 (2 seeds), reaches 0.9 in 2.1 s"
    assert runner_up(r) == "Runner-up sgd: 0.850 ± 0.020; fastest to 0.9: adam (2.1 s)."


def test_verdict_partial_never_tie_one_seed_and_lower_is_better():
    partial = tiny(_set("leaderboard", "reached_target", 1, 0.5))
    assert verdict(partial).endswith("reaches 0.9 in 2.1 s (1/2 seeds)")

    def never(p: dict[str, Any]) -> None:
        p["leaderboard"]["reached_target"] = [0.0, 0.0]
        p["leaderboard"]["time_to_target_mean"] = [NAN, NAN]

    r = tiny(never)
    assert verdict(r).endswith(", never reaches 0.9 in 3 epochs")
    assert runner_up(r) == "Runner-up sgd: 0.850 ± 0.020; no optimizer reaches 0.9."

    tie = tiny(_set("leaderboard", "rank", 0, 1))  # sgd ties adam; caller's order kept
    assert verdict(tie).startswith("sgd and adam tie; sgd: test accuracy 0.850 ± 0.020")

    one = tiny(_meta("seeds", 1))
    assert verdict(one) == "adam wins: test accuracy 0.930 (1 seed), reaches 0.9 in 2.1 s"

    def lower(p: dict[str, Any]) -> None:
        p["meta"].update(metric="rmse", greater_is_better=False, target=0.25)

    r = tiny(lower)
    assert verdict(r) == "adam wins: test rmse 0.930 ± 0.010 (2 seeds), reaches 0.25 in 2.1 s"
    np.testing.assert_array_equal(r.reaches([0.2, 0.25, 0.3]), [True, True, False])


@pytest.mark.parametrize(
    ("means", "stds", "decimals"),
    [
        ([0.98], [0.003], 3),
        ([0.98], [0.0012], 4),  # leading digit 1-2: keep two significant digits
        ([0.98, 0.97, 0.9], [0.004, 0.005, 0.0001, NAN], 3),  # the median std counts
        ([1234.5], [12.0], 0),
        ([0.98], [NAN], 3),  # no std: 3 significant digits of the mean
        ([0.98], [0.0], 3),
        ([1234.0], [NAN], 0),
        ([NAN], [NAN], 3),
    ],
)
def test_metric_decimals(means: list[float], stds: list[float], decimals: int):
    assert metric_decimals(means, stds) == decimals


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.4249, "0.42 s"),
        (2.125, "2.1 s"),
        (85.2, "85 s"),
        (210.0, "3.5 min"),
        (9000.0, "2.5 h"),
        (NAN, "—"),
    ],
)
def test_fmt_seconds(seconds: float, text: str):
    assert fmt_seconds(seconds) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.6e-3, "1.6e-3"),
        (2e-3, "2e-3"),
        (1.9e-6, "1.9e-6"),
        (0.862, "0.862"),
        (0.99941, "0.999"),
        (0.99996, "0.99996"),  # not rounded to "1"
        (1.0, "1"),
        (12345.0, "1.2e4"),
        (np.float32(0.5), "0.5"),
        (True, "True"),
        ("cosine", "cosine"),
    ],
)
def test_fmt_value(value: Any, text: str):
    assert fmt_value(value) == text


def test_fmt_mean_std_and_seeds_reached():
    assert fmt_mean_std(0.9812, 0.0031, 3) == "0.981 ± 0.003"
    assert fmt_mean_std(0.9812, NAN, 2) == "0.98"
    assert fmt_mean_std(NAN, 0.1, 2) == "—"
    r = tiny()
    assert seeds_reached(r, 0.5) == "1/2"
    assert seeds_reached(r, 1 / 3) == "33%"


# --- aggregates -----------------------------------------------------------------------


def test_curve_bands_match_a_loop_over_seeds():
    r = tiny()
    c = r.curves
    for column in ("val_metric", "train_loss"):
        bands = curve_bands(r, column)
        assert list(bands) == ["adam", "sgd"]
        for name, band in bands.items():
            mine = c[c["optimizer"] == name]
            n_seeds = mine["seed"].nunique()
            expected = []
            for epoch in sorted(set(mine["epoch"])):
                rows = mine[mine["epoch"] == epoch]
                if 2 * len(rows) < n_seeds:
                    continue
                vals = list(rows[column])
                expected.append(
                    (epoch, sum(vals) / len(vals), min(vals), max(vals), len(vals),
                     sum(rows["seconds"]) / len(rows))
                )  # fmt: skip
            got = band[["epoch", "mean", "lo", "hi", "n", "seconds"]].to_numpy()
            np.testing.assert_allclose(got, np.array(expected, dtype=float), rtol=0, atol=1e-12)


def test_curve_bands_drop_epochs_most_seeds_did_not_reach():
    def three_seeds(p: dict[str, Any]) -> None:
        c = p["curves"]
        extra = c[(c["optimizer"] == "adam") & (c["seed"] == 1) & (c["epoch"] == 1)].copy()
        extra["seed"] = 2
        p["curves"] = pd.concat([c, extra], ignore_index=True)

    # adam: seeds 0, 1, 2 run 3, 2 and 1 epochs; epoch 3 has 1 of 3 seeds -> dropped.
    band = curve_bands(tiny(three_seeds), "val_metric")["adam"]
    assert band["epoch"].tolist() == [1, 2]
    assert band["n"].tolist() == [3, 2]


def test_focus_range_contains_target_and_the_late_curve():
    r = tiny()
    bands = curve_bands(r)
    lo, hi = focus_range(r, bands)
    means = np.concatenate([b["mean"].to_numpy() for b in bands.values()])
    assert lo < r.meta["target"] < hi
    assert hi > means.max() and lo <= np.quantile(means, 0.05)


def test_importance_matrix():
    frame, notes = importance_matrix(tiny())
    assert frame.index.tolist() == ["adam", "sgd"]
    assert frame.columns.tolist() == ["lr", "beta1"]
    np.testing.assert_array_equal(frame.to_numpy(), [[0.8, 0.2], [0.0, 0.0]])
    assert notes == {"sgd": "only lr tuned"}
