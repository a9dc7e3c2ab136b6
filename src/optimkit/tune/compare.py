"""An optimizer tournament with a fair protocol (in the spirit of DeepOBS and AlgoPerf).

Each optimizer gets the same tuning budget (trials x epochs, same sampler and pruner) on the
same data and model; its best configuration is then re-trained with S seeds (one population
of S members that differ only in their initialization seed), and evaluated once on the test
split at each seed's best validation epoch. The leaderboard ranks optimizers by mean test
metric, and reports its spread, and the wall time and epochs each needed to reach a target
validation metric: the one given, or else the level every optimizer reaches on average (the
worst optimizer's mean best validation metric).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any

import optuna
import pandas as pd

from optimkit.data import Dataset
from optimkit.train import PopulationTrainer, TrainConfig
from optimkit.tune.samplers import make_pruner, make_sampler
from optimkit.tune.space import OPTIMIZER_ALIASES, SearchSpace
from optimkit.tune.storage import StudyMirror
from optimkit.tune.tuner import Tuner, TuneResult, member_of


@dataclass
class Tournament:
    leaderboard: pd.DataFrame
    curves: pd.DataFrame
    trials: pd.DataFrame
    importance: dict[str, dict[str, float]]
    results: dict[str, TuneResult]
    seconds: float
    target: float | None  # the val metric the time-to-target columns refer to


def compare(
    dataset: Dataset,
    base: TrainConfig,
    optimizers: list[str],
    storage: optuna.storages.BaseStorage,
    *,
    study_prefix: str,
    trials: int,
    population: int,
    seeds: int,
    sampler: str = "tpe",
    pruner: str = "none",
    metric: str | None = None,
    target: float | None = None,
    seed: int = 0,
    space: dict[str, Any] | None = None,
    on_stage: Any = None,
) -> Tournament:
    """Tune each optimizer with the same budget, then re-run its best with `seeds` seeds."""
    start = time.perf_counter()
    results: dict[str, TuneResult] = {}
    rows, curves, trial_rows, importance = [], [], [], {}
    for name in optimizers:
        if on_stage is not None:
            on_stage(f"tuning {name}")
        sp = SearchSpace.from_config(space, name)
        direction = _direction(dataset, metric)
        mirror = StudyMirror(
            storage, f"{study_prefix}-{name}", [direction], make_sampler(sampler, sp, seed),
            make_pruner(pruner, base.epochs),
        )  # fmt: skip
        tuner = Tuner(dataset, base, sp, mirror, trials=trials, population=population,
                      metric=metric, target=target)  # fmt: skip
        result = tuner.run()
        results[name] = result
        trial_rows += _trial_rows(name, result.study)
        importance[name] = _importance(result.study)
        if result.best_config is None:  # no complete trial in the study
            continue
        if on_stage is not None:
            on_stage(f"{seeds} seeds of the best {name}")
        row, seed_curves = _seeds(dataset, base, name, result, seeds, tuner.metric)
        rows.append(row)
        curves += seed_curves
    greater = _direction(dataset, metric) == "maximize"
    reached = [row["val_mean"] for row in rows if math.isfinite(row["val_mean"])]
    if target is None and reached:  # the level every optimizer reaches on average
        target = float((min if greater else max)(reached))
    frame = pd.DataFrame(curves)
    for row in rows:
        row.update(_reach(frame[frame["optimizer"] == row["optimizer"]], target, greater, seeds))
    leaderboard = pd.DataFrame(rows)
    if not leaderboard.empty:
        leaderboard = leaderboard.sort_values("test_mean", ascending=not greater)
        leaderboard.insert(1, "rank", range(1, len(leaderboard) + 1))
        leaderboard = leaderboard.reset_index(drop=True)
    return Tournament(leaderboard, frame, pd.DataFrame(trial_rows), importance, results,
                      time.perf_counter() - start, target)  # fmt: skip


def _direction(dataset: Dataset, metric: str | None) -> str:
    from optimkit.metrics import get_metric
    from optimkit.tune.tuner import DEFAULT_METRIC

    name = metric or DEFAULT_METRIC[dataset.task]
    return "maximize" if get_metric(name).greater_is_better else "minimize"


def _seeds(
    dataset: Dataset, base: TrainConfig, name: str, result: TuneResult, seeds: int, metric: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Re-train the best configuration with `seeds` seeds as one population."""
    config = dict(result.best_config or {})
    optimizer = OPTIMIZER_ALIASES.get(name, (name, {}))[0]
    members = []
    for s in range(seeds):
        member = member_of({**config, "seed": 1000 + s})
        members.append(member)
    trainer = PopulationTrainer(
        dataset, replace(base, optimizer=optimizer, monitor=f"val_{metric}"), members
    )
    trainer.fit()
    val = trainer.history.curve(f"val_{metric}")  # [epochs, S]
    seconds = pd.Series([r["seconds"] for r in trainer.history.records]).cumsum() / seeds
    curves = []
    for s in range(seeds):
        for e in range(val.shape[0]):
            v = float(val[e, s])
            if math.isnan(v):
                continue
            curves.append({
                "optimizer": name, "seed": s, "epoch": e + 1, "val_metric": v,
                "val_loss": float(trainer.history.records[e]["val_loss"][s]),
                "train_loss": float(trainer.history.records[e]["train_loss"][s]),
                "seconds": float(seconds.iloc[e]),
            })  # fmt: skip
    test = trainer.test_results or {}
    best_val = trainer.early.best
    params = {k: v for k, v in config.items() if k not in ("seed", "optimizer")}
    row = {
        "optimizer": name,
        "test_mean": float(test[metric].mean()),
        "test_std": float(test[metric].std()) if seeds > 1 else 0.0,
        "val_mean": float(best_val.mean()),
        "val_std": float(best_val.std()) if seeds > 1 else 0.0,
        "best_params": params,
        "n_trials": len(result.study.trials),
    }
    return row, curves


def _reach(curves: pd.DataFrame, target: float | None, greater: bool, seeds: int) -> dict:
    """Mean seconds and epochs to the first epoch whose val metric reaches `target` (over the
    seeds that reach it; NaN if none does), and the fraction of seeds that do."""
    firsts = []
    if target is not None:
        for _, seed in curves.groupby("seed"):
            hit = seed["val_metric"] >= target if greater else seed["val_metric"] <= target
            if hit.any():
                firsts.append(seed[hit].iloc[0])
    return {
        "time_to_target_mean": _mean([float(f["seconds"]) for f in firsts]),
        "epochs_to_target_mean": _mean([float(f["epoch"]) for f in firsts]),
        "reached_target": len(firsts) / seeds,
    }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _trial_rows(name: str, study: optuna.Study) -> list[dict[str, Any]]:
    rows = []
    for t in study.trials:
        row = {"optimizer": name, "trial": t.number, "state": t.state.name.lower(),
               "value": t.values[0] if t.values else max(t.intermediate_values.values(),
                                                          default=math.nan),
               "epochs": t.user_attrs.get("epochs", len(t.intermediate_values))}  # fmt: skip
        row.update(t.params)
        rows.append(row)
    return rows


def _importance(study: optuna.Study) -> dict[str, float]:
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 2 or len(complete[0].params) < 2:
        return {}
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        found = optuna.importance.get_param_importances(study, evaluator=evaluator)
        return {k: float(v) for k, v in found.items()}
    except (RuntimeError, ValueError):
        return {}
