"""Optuna samplers and pruners by name (Optuna owns search; optimkit only picks)."""

from __future__ import annotations

from typing import Any

import optuna

from optimkit.tune.space import SearchSpace

SAMPLERS = ("tpe", "random", "grid", "qmc", "gp", "cmaes", "nsga2")
PRUNERS = ("none", "median", "asha", "hyperband")


def make_sampler(
    name: str, space: SearchSpace, seed: int | None, grid_points: int = 4, multi: bool = False
) -> optuna.samplers.BaseSampler:
    """tpe (Bayesian, default), random, grid (choices, or `grid_points` values per range),
    qmc (scrambled Sobol), gp (Gaussian process, Bayesian), cmaes, nsga2 (genetic algorithm;
    multi-objective too)."""
    if name not in SAMPLERS:
        raise ValueError(f"sampler: unknown name {name!r}; valid: {', '.join(SAMPLERS)}")
    if multi and name not in ("nsga2", "random", "tpe", "grid", "qmc", "gp"):
        raise ValueError(f"sampler: {name!r} is single-objective; use nsga2 for several objectives")
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler(space.grid(grid_points), seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    return optuna.samplers.NSGAIISampler(seed=seed)


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    """none, median (after 3 epochs of 5 trials), asha (successive halving) or hyperband,
    with resources counted in epochs."""
    if name not in PRUNERS:
        raise ValueError(f"pruner: unknown name {name!r}; valid: {', '.join(PRUNERS)}")
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3)
    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs,
                                          reduction_factor=3)  # fmt: skip


def describe(obj: Any) -> str:
    return type(obj).__name__
