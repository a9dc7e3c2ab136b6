"""An optimizer tournament with a fair protocol (in the spirit of DeepOBS and AlgoPerf).

Each optimizer gets the same tuning budget (trials x epochs, same sampler and pruner) on the
same data and model; its best configuration is then re-trained with S seeds (one population
of S members that differ only in their initialization seed), and evaluated once on the test
split at each seed's best validation epoch. The leaderboard ranks optimizers by mean test
metric, and reports its spread, and the wall time and epochs each needed to reach a target
validation metric.
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
from optimkit.tune.tuner import Tuner, TuneResult, full_config, member_of


@dataclass
class Tournament:
    leaderboard: pd.DataFrame
    curves: pd.DataFrame
    trials: pd.DataFrame
    importance: dict[str, dict[str, float]]
    results: dict[str, TuneResult]
    seconds: float


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
        if result.best_config is None:  # a finished study resumed: its best trial's parameters
            complete = [t for t in result.study.trials
                        if t.state == optuna.trial.TrialState.COMPLETE]  # fmt: skip
            if not complete:
                continue
            best = result.study.best_trial
            result.best_config = {**full_config(sp, best.params), "seed": base.seed + best.number}
        if on_stage is not None:
            on_stage(f"{seeds} seeds of the best {name}")
        row, seed_curves = _seeds(dataset, base, name, result, seeds, tuner.metric, target)
        rows.append(row)
        curves += seed_curves
    leaderboard = pd.DataFrame(rows)
    if not leaderboard.empty:
        ascending = _direction(dataset, metric) == "minimize"
        leaderboard = leaderboard.sort_values("test_mean", ascending=ascending)
        leaderboard.insert(1, "rank", range(1, len(leaderboard) + 1))
        leaderboard = leaderboard.reset_index(drop=True)
    return Tournament(leaderboard, pd.DataFrame(curves), pd.DataFrame(trial_rows), importance,
                      results, time.perf_counter() - start)  # fmt: skip


def _direction(dataset: Dataset, metric: str | None) -> str:
    from optimkit.metrics import get_metric
    from optimkit.tune.tuner import DEFAULT_METRIC

    name = metric or DEFAULT_METRIC[dataset.task]
    return "maximize" if get_metric(name).greater_is_better else "minimize"


def _seeds(
    dataset: Dataset, base: TrainConfig, name: str, result: TuneResult, seeds: int, metric: str,
    target: float | None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:  # fmt: skip
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
    greater = trainer.metrics[metric].greater_is_better
    val = trainer.history.curve(f"val_{metric}")  # [epochs, S]
    seconds = pd.Series([r["seconds"] for r in trainer.history.records]).cumsum() / seeds
    curves, reach_epochs, reach_seconds = [], [], []
    for s in range(seeds):
        reached = None
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
            if reached is None and target is not None and (v >= target if greater else v <= target):
                reached = e
        reach_epochs.append(math.nan if reached is None else reached + 1)
        reach_seconds.append(math.nan if reached is None else float(seconds.iloc[reached]))
    test = trainer.test_results or {}
    best_val = trainer.early.best
    params = {k: v for k, v in config.items() if k not in ("seed", "optimizer")}
    row = {
        "optimizer": name,
        "test_mean": float(test[metric].mean()),
        "test_std": float(test[metric].std()) if seeds > 1 else 0.0,
        "val_mean": float(best_val.mean()),
        "val_std": float(best_val.std()) if seeds > 1 else 0.0,
        "time_to_target_mean": _nanmean(reach_seconds),
        "epochs_to_target_mean": _nanmean(reach_epochs),
        "reached_target": sum(not math.isnan(e) for e in reach_epochs) / seeds,
        "best_params": params,
        "n_trials": len(result.study.trials),
    }
    return row, curves


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


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
