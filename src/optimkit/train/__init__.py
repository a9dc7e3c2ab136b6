"""The population trainer: K configurations of one model trained as one vectorized run."""

from optimkit.train.early_stopping import EarlyStopping
from optimkit.train.history import History
from optimkit.train.trainer import STATUS_NAMES, PopulationTrainer, TrainConfig

__all__ = ["STATUS_NAMES", "EarlyStopping", "History", "PopulationTrainer", "TrainConfig"]
