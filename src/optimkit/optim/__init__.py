"""Optimizers: population-aware torch.optim drop-ins over small functional transforms."""

from optimkit.optim.adagrad import Adagrad
from optimkit.optim.adam import Adam, AdamW
from optimkit.optim.adamax import Adamax
from optimkit.optim.base import PopulationOptimizer
from optimkit.optim.lbfgs import LBFGS
from optimkit.optim.lion import Lion
from optimkit.optim.nadam import NAdam
from optimkit.optim.newton import Newton
from optimkit.optim.registry import OPTIMIZERS, get_optimizer
from optimkit.optim.rmsprop import RMSprop
from optimkit.optim.sgd import SGD

__all__ = [
    "LBFGS",
    "OPTIMIZERS",
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Lion",
    "NAdam",
    "Newton",
    "PopulationOptimizer",
    "RMSprop",
    "get_optimizer",
]
