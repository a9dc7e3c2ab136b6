"""Objectives of the convex ML problems whose exact optima :mod:`optimkit.solve.convex` gives.

Every objective is scikit-learn's, rescaled so that the data term is a *mean* over samples (half
the mean squared error for squared losses), which is what a training loop computes; the
minimizer is the one scikit-learn computes with the same hyperparameter. With residuals
r = y - X w - b and n samples:

=================  ==================================================  ======================
problem            f(w, b)                                             scikit-learn
=================  ==================================================  ======================
least_squares      ||r||^2 / (2n)                                      LinearRegression
ridge              (||r||^2 + alpha ||w||^2) / (2n)                    Ridge(alpha) / (2n)
lasso              ||r||^2 / (2n) + alpha ||w||_1                      Lasso(alpha)
quantile           mean rho_q(r) + alpha ||w||_1,                      QuantileRegressor
                   rho_q(r) = max(q r, (q - 1) r)                      (quantile=0.5: LAD)
linear_svm         mean max(0, 1 - y_i (w.x_i + b))                    LinearSVC(C,
                   + (||w||^2 + (b / s)^2) / (2 C n)                   loss="hinge") / (C n)
logistic           mean cross-entropy + ||W||^2 / (2 C n)              LogisticRegression(C)
                                                                       / (C n)
=================  ==================================================  ======================

(s is LinearSVC's ``intercept_scaling``; liblinear penalizes the intercept, and the b term is
dropped with ``penalize_intercept=False``. Logistic regression is binary with one weight
vector, or multinomial (softmax) for more than two classes, as scikit-learn.)

The functions accept a population axis: ``coef`` [..., d] (or [..., k, d]) and ``intercept``
[...] (or [..., k]) give objectives of shape [...]; hyperparameters may be floats or tensors
broadcasting against [...].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass
class ConvexSolution:
    """An exact optimum: ``coef``, ``intercept``, the optimal value ``objective`` (f*), and
    ``info`` (solver details: iterations, final gradient norm, status...).

    With a hyperparameter given as a tensor of shape [K], every field has a leading K axis.
    """

    coef: Tensor
    intercept: Tensor
    objective: Tensor
    info: dict[str, Any] = field(default_factory=dict)


def _hp(value: Any, like: Tensor) -> Tensor:
    return torch.as_tensor(value, dtype=like.dtype)


def _linear(X: Tensor, coef: Tensor, intercept: Tensor | float) -> Tensor:
    """X w + b for coef [..., d] -> [..., n]."""
    return torch.einsum("nd,...d->...n", X, coef) + torch.as_tensor(intercept)[..., None]


def least_squares_objective(X: Tensor, y: Tensor, coef: Tensor, intercept: Any = 0.0) -> Tensor:
    r = y - _linear(X, coef, intercept)
    return (r * r).mean(-1) / 2


def ridge_objective(
    X: Tensor, y: Tensor, coef: Tensor, intercept: Any = 0.0, *, alpha: Any = 1.0
) -> Tensor:
    r = y - _linear(X, coef, intercept)
    n = X.shape[0]
    return ((r * r).sum(-1) + _hp(alpha, X) * (coef * coef).sum(-1)) / (2 * n)


def lasso_objective(
    X: Tensor, y: Tensor, coef: Tensor, intercept: Any = 0.0, *, alpha: Any = 1.0
) -> Tensor:
    r = y - _linear(X, coef, intercept)
    return (r * r).mean(-1) / 2 + _hp(alpha, X) * coef.abs().sum(-1)


def quantile_objective(
    X: Tensor,
    y: Tensor,
    coef: Tensor,
    intercept: Any = 0.0,
    *,
    quantile: Any = 0.5,
    alpha: Any = 0.0,
) -> Tensor:
    r = y - _linear(X, coef, intercept)
    q = _hp(quantile, X)[..., None]
    pinball = torch.maximum(q * r, (q - 1) * r)
    return pinball.mean(-1) + _hp(alpha, X) * coef.abs().sum(-1)


def svm_objective(
    X: Tensor,
    y: Tensor,
    coef: Tensor,
    intercept: Any = 0.0,
    *,
    C: Any = 1.0,
    intercept_scaling: float = 1.0,
    penalize_intercept: bool = True,
) -> Tensor:
    """Binary hinge objective; ``y`` in {-1, +1}."""
    margin = y * _linear(X, coef, intercept)
    hinge = torch.clamp(1 - margin, min=0).mean(-1)
    reg = (coef * coef).sum(-1)
    if penalize_intercept:
        reg = reg + (torch.as_tensor(intercept, dtype=X.dtype) / intercept_scaling) ** 2
    return hinge + reg / (2 * _hp(C, X) * X.shape[0])


def logistic_objective(
    X: Tensor, y: Tensor, coef: Tensor, intercept: Any = 0.0, *, C: Any = 1.0
) -> Tensor:
    """Binary (coef [..., 1, d] or [..., d], y in {0, 1}) or multinomial (coef [..., k, d],
    k > 1, y integer class indices 0..k-1) logistic objective."""
    n = X.shape[0]
    intercept = torch.as_tensor(intercept, dtype=X.dtype)
    if coef.dim() >= 2 and coef.shape[-2] > 1:  # multinomial
        intercept = intercept.expand(coef.shape[:-1])
        Z = torch.einsum("nd,...kd->...nk", X, coef) + intercept[..., None, :]
        picked = Z.gather(-1, y.long().expand(*Z.shape[:-2], n).unsqueeze(-1)).squeeze(-1)
        data = (torch.logsumexp(Z, -1) - picked).mean(-1)
    else:
        if coef.dim() >= 2:
            coef = coef[..., 0, :]
            intercept = intercept[..., 0] if intercept.dim() else intercept
        z = _linear(X, coef, intercept)
        data = (torch.nn.functional.softplus(z) - y * z).mean(-1)
    reg = (coef * coef).sum((-2, -1) if coef.dim() >= 2 and coef.shape[-2] > 1 else -1)
    return data + reg / (2 * _hp(C, X) * n)
