"""Hyperparameter tuning on Optuna with populations and continuous batching."""

from optimkit.tune.samplers import PRUNERS, SAMPLERS, make_pruner, make_sampler
from optimkit.tune.space import DEFAULT_SPACES, OPTIMIZER_NAMES, SearchSpace
from optimkit.tune.storage import StudyMirror, open_storage
from optimkit.tune.tuner import Tuner, TuneResult

__all__ = [
    "DEFAULT_SPACES",
    "OPTIMIZER_NAMES",
    "PRUNERS",
    "SAMPLERS",
    "SearchSpace",
    "StudyMirror",
    "TuneResult",
    "Tuner",
    "make_pruner",
    "make_sampler",
    "open_storage",
]
