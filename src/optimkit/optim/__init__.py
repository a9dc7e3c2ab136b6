"""Optimizers: population-aware torch.optim drop-ins over small functional transforms.

Every optimizer class is declared once, with its ``spec``, in a module of this package;
`optimkit.optim.database` collects them (``optimkit optimizers`` prints the table).
"""

from optimkit.optim.base import PopulationOptimizer
from optimkit.optim.database import ENTRIES, OPTIMIZERS, entry
from optimkit.optim.registry import get_optimizer

globals().update({cls.__name__: cls for cls in OPTIMIZERS.values()})

__all__ = [
    "ENTRIES",
    "OPTIMIZERS",
    "PopulationOptimizer",
    "entry",
    "get_optimizer",
    *sorted(cls.__name__ for cls in OPTIMIZERS.values()),
]
