"""Exact optima f* of convex ML problems: ground truth for suboptimality curves f(x_t) - f*.

``exact_optimum(problem, X, y, **hyperparameters)`` returns a
:class:`~optimkit.solve.objectives.ConvexSolution` (coef, intercept, objective = f*), and
``objective(problem, X, y, coef, intercept, **hyperparameters)`` evaluates f at any iterate (a
population of iterates with a leading K axis too), with the same scaling, so that

    gap_t = objective("logistic", X, y, W_t, b_t, C=1.0) - exact_optimum("logistic", X, y).objective

is the suboptimality an optimizer comparison plots on a log scale. The problems, their
objectives and the scikit-learn estimator each one agrees with are listed in
:mod:`optimkit.solve.objectives`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from optimkit.solve.classification import encode_labels, linear_svm, logistic_regression
from optimkit.solve.objectives import (
    ConvexSolution,
    lasso_objective,
    least_squares_objective,
    logistic_objective,
    quantile_objective,
    ridge_objective,
    svm_objective,
)
from optimkit.solve.regression import as_data, lad, lasso, least_squares, quantile_regression, ridge

SOLVERS: dict[str, Callable[..., ConvexSolution]] = {
    "least_squares": least_squares,
    "ridge": ridge,
    "lasso": lasso,
    "quantile": quantile_regression,
    "lad": lad,
    "linear_svm": linear_svm,
    "logistic": logistic_regression,
}

_OBJECTIVES: dict[str, Callable[..., Tensor]] = {
    "least_squares": least_squares_objective,
    "ridge": ridge_objective,
    "lasso": lasso_objective,
    "quantile": quantile_objective,
    "lad": lambda X, y, coef, intercept=0.0, *, alpha=0.0: quantile_objective(
        X, y, coef, intercept, quantile=0.5, alpha=alpha
    ),
    "linear_svm": svm_objective,
    "logistic": logistic_objective,
}

PROBLEMS = tuple(SOLVERS)


def _float64(value: Any) -> Tensor:
    if isinstance(value, Tensor):
        return value.to(torch.float64)  # keeps autograd
    return torch.tensor(np.asarray(value, dtype=np.float64))


def _problem(name: str) -> str:
    if name not in SOLVERS:
        raise ValueError(f"problem must be one of {', '.join(PROBLEMS)}; got {name!r}")
    return name


def exact_optimum(problem: str, X: Any, y: Any, **hyperparameters: Any) -> ConvexSolution:
    """The exact minimizer and f* of ``problem`` (one of :data:`PROBLEMS`) on (X, y).

    ``hyperparameters`` are those of the solver (alpha, C, quantile, fit_intercept...); a
    hyperparameter given as a tensor [K] solves K problems (leading K axis in the result).
    """
    return SOLVERS[_problem(problem)](X, y, **hyperparameters)


def objective(
    problem: str, X: Any, y: Any, coef: Any, intercept: Any = 0.0, **hyperparameters: Any
) -> Tensor:
    """f(coef, intercept) of ``problem`` with :func:`exact_optimum`'s scaling (float64).

    For "linear_svm" and "logistic" ``y`` holds the raw labels (encoded as scikit-learn does:
    sorted classes; binary problems use the second class as positive). The SVM objective is
    binary (coef [..., d] or [..., 1, d]); for one-vs-rest sum the per-class objectives.
    ``fit_intercept`` is accepted and ignored (pass ``intercept=0`` for a model without one).
    """
    name = _problem(problem)
    hyperparameters.pop("fit_intercept", None)
    if name in ("linear_svm", "logistic"):
        idx, classes = encode_labels(y)
        X, idx = as_data(X, idx)
        y_t = idx if name == "logistic" else 2.0 * idx - 1.0
        if name == "linear_svm" and len(classes) != 2:
            raise ValueError("objective('linear_svm', ...) is binary; y has more than 2 classes")
    else:
        X, y_t = as_data(X, y)
    coef = _float64(coef)
    intercept = _float64(intercept)
    if name == "linear_svm" and coef.dim() >= 2 and coef.shape[-2] == 1:
        coef = coef[..., 0, :]
        intercept = intercept[..., 0] if intercept.dim() else intercept
    if coef.shape[-1] != X.shape[1]:
        raise ValueError(
            f"coef must have {X.shape[1]} features in its last dim, got {tuple(coef.shape)}"
        )
    return _OBJECTIVES[name](X, y_t, coef, intercept, **hyperparameters)
