"""Logistic regression by maximizing the log-likelihood with SLSQP under bounds, done right.

    python examples/logistic_slsqp.py

A snippet that circulates for this builds an unfitted ``LogisticRegression``, sets
``model.coef_ = w`` inside the objective and then calls ``model.fit`` or ``model.score`` to get
a loss. That optimizes nothing: ``fit`` overwrites ``coef_`` (so the objective ignores ``w``)
and ``score`` is accuracy, a step function of ``w``. Either way the finite-difference gradient
SLSQP sees is zero, and it reports success at the starting point.

Done right, the objective is an explicit function of the weights: the mean negative
log-likelihood of the Bernoulli model p_i = sigmoid(x_i.w + b), plus scikit-learn's L2 penalty
||w||^2 / (2 C n) so the unbounded optimum is exactly ``LogisticRegression(C=C)``'s.
``optimkit.solve.minimize`` takes it written in torch and supplies the exact gradient by
autograd; the bounds box each weight (the intercept stays free).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import OptimizeResult
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from optimkit.solve import logistic_regression, minimize


def negative_log_likelihood(theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor, C: float):
    """Mean -log L(w, b) + ||w||^2 / (2 C n); theta = [w, b], y in {0, 1}."""
    w, b = theta[:-1], theta[-1]
    z = X @ w + b
    # -log p(y | x) = log(1 + e^z) - y z, computed stably by softplus.
    nll = (torch.nn.functional.softplus(z) - y * z).mean()
    return nll + (w @ w) / (2 * C * X.shape[0])


def fit_slsqp(X: np.ndarray, y: np.ndarray, C: float = 1.0, bound: float = 5.0) -> OptimizeResult:
    """Weights in [-bound, bound], intercept free; returns scipy's OptimizeResult."""
    Xt = torch.as_tensor(X, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.float64)
    d = X.shape[1]
    bounds = [(-bound, bound)] * d + [(None, None)]
    return minimize(
        negative_log_likelihood,
        np.zeros(d + 1),
        args=(Xt, yt, C),
        method="SLSQP",
        bounds=bounds,
        options={"ftol": 1e-14, "maxiter": 1000},
    )


def main() -> None:
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    C = 1.0

    res = fit_slsqp(X, y, C=C, bound=5.0)
    sk = LogisticRegression(C=C, tol=1e-12, max_iter=10_000).fit(X, y)
    exact = logistic_regression(X, y, C=C)
    print(f"SLSQP, |w_j| <= 5: {res.message} after {res.nit} iterations, f = {res.fun:.12f}")
    print(f"exact optimum (optimkit Newton):        f* = {float(exact.objective):.12f}")
    print(f"max |w_SLSQP - w_sklearn| = {np.abs(res.x[:-1] - sk.coef_[0]).max():.2e}")

    tight = fit_slsqp(X, y, C=C, bound=0.5)
    at_bound = int(np.sum(np.isclose(np.abs(tight.x[:-1]), 0.5)))
    print(f"SLSQP, |w_j| <= 0.5: f = {tight.fun:.12f}, {at_bound} of 30 weights at the bound")


if __name__ == "__main__":
    main()
