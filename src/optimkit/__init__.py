"""optimkit: train, tune and compare optimizers on your own problem.

Every parameter tensor may carry a leading population axis K and every hyperparameter may be a
tensor of shape [K], so K models with K settings train as one vectorized program.
"""

__version__ = "0.1.0"
