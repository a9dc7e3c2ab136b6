"""Exact optima of convex regression problems (objectives in :mod:`optimkit.solve.objectives`).

- least squares: QR of the centered design (Golub & Van Loan, "Matrix Computations", 5.3);
  the minimum-norm solution (SVD) when it is rank deficient, as scikit-learn;
- ridge: Cholesky of X'X + alpha I (or of XX' + alpha I when d > n), batched over alphas;
- lasso: a convex QP on HiGHS (w = w+ - w-), then polished on its support by solving the KKT
  equations exactly (Tibshirani, "The lasso problem and uniqueness", 2013);
- quantile / LAD regression: the LP of Koenker & Bassett (1978) on HiGHS.

Intercepts are never penalized and are eliminated by centering where the loss is squared.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from optimkit.solve.objectives import (
    ConvexSolution,
    lasso_objective,
    least_squares_objective,
    quantile_objective,
    ridge_objective,
)


def as_data(X: Any, y: Any, *, y_name: str = "y") -> tuple[Tensor, Tensor]:
    """X [n, d] and y [n] as float64 tensors, finite, with matching lengths."""
    X = torch.as_tensor(np.asarray(X) if not isinstance(X, Tensor) else X).to(torch.float64)
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, Tensor) else y).to(torch.float64)
    if X.dim() != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(
            f"X must be a non-empty 2-D array [n_samples, n_features], got {tuple(X.shape)}"
        )
    if y.dim() != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(
            f"{y_name} must be 1-D with one entry per row of X ({X.shape[0]}), got {tuple(y.shape)}"
        )
    if not torch.isfinite(X).all():
        raise ValueError("X contains NaN or inf")
    if not torch.isfinite(y).all():
        raise ValueError(f"{y_name} contains NaN or inf")
    return X, y


def population(name: str, value: Any, *, allow_zero: bool = False) -> tuple[Tensor, bool]:
    """A hyperparameter as a float64 [K] tensor, and whether it was given as a [K] tensor."""
    t = torch.as_tensor(value, dtype=torch.float64)
    batched = t.dim() == 1
    if t.dim() > 1 or (batched and t.numel() == 0):
        raise ValueError(f"{name} must be a float or a 1-D tensor [K], got shape {tuple(t.shape)}")
    t = t.reshape(-1)
    bad = (
        ~torch.isfinite(t)
        | (t < 0)
        | ((t == 0) if not allow_zero else torch.zeros_like(t, dtype=torch.bool))
    )
    if bad.any():
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be finite and {kind}, got {value}")
    return t, batched


def _center(X: Tensor, y: Tensor, fit_intercept: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    if fit_intercept:
        x_mean, y_mean = X.mean(0), y.mean()
        return X - x_mean, y - y_mean, x_mean, y_mean
    return X, y, torch.zeros(X.shape[1], dtype=X.dtype), torch.zeros((), dtype=X.dtype)


def least_squares(X: Any, y: Any, *, fit_intercept: bool = True) -> ConvexSolution:
    """argmin ||y - X w - b||^2 / (2n) by QR (min-norm by SVD if X is rank deficient)."""
    X, y = as_data(X, y)
    Xc, yc, x_mean, y_mean = _center(X, y, fit_intercept)
    n, d = Xc.shape
    Q, R = torch.linalg.qr(Xc)
    diag = R.diagonal().abs()
    rank_ok = d <= n and bool(diag.min() > diag.max() * max(n, d) * torch.finfo(X.dtype).eps)
    if rank_ok:
        w = torch.linalg.solve_triangular(R, (Q.T @ yc)[:, None], upper=True)[:, 0]
        method = "qr"
    else:
        w = torch.linalg.lstsq(Xc, yc[:, None], driver="gelsd").solution[:, 0]
        method = "svd (rank deficient: minimum-norm solution)"
    b = y_mean - x_mean @ w
    return ConvexSolution(w, b, least_squares_objective(X, y, w, b), {"method": method})


def ridge(X: Any, y: Any, *, alpha: Any = 1.0, fit_intercept: bool = True) -> ConvexSolution:
    """argmin (||y - X w - b||^2 + alpha ||w||^2) / (2n) (scikit-learn's Ridge), by Cholesky.

    ``alpha``: a positive float, or a tensor [K] of them (all K solved in one batched
    factorization; results then have a leading K axis).
    """
    X, y = as_data(X, y)
    a, batched = population("alpha", alpha)
    Xc, yc, x_mean, y_mean = _center(X, y, fit_intercept)
    n, d = Xc.shape
    if d <= n:
        G = Xc.T @ Xc + a[:, None, None] * torch.eye(d, dtype=X.dtype)  # [K, d, d]
        L = torch.linalg.cholesky(G)
        w = torch.cholesky_solve((Xc.T @ yc).expand(len(a), d)[..., None], L)[..., 0]
    else:  # w = X'(XX' + alpha I)^{-1} y: an n x n system
        G = Xc @ Xc.T + a[:, None, None] * torch.eye(n, dtype=X.dtype)
        L = torch.linalg.cholesky(G)
        w = torch.cholesky_solve(yc.expand(len(a), n)[..., None], L)[..., 0] @ Xc
    b = y_mean - w @ x_mean
    f = ridge_objective(X, y, w, b, alpha=a)
    if not batched:
        w, b, f = w[0], b[0], f[0]
    return ConvexSolution(w, b, f, {"method": "cholesky"})


def lasso(
    X: Any, y: Any, *, alpha: Any = 1.0, fit_intercept: bool = True, polish: bool = True
) -> ConvexSolution:
    """argmin ||y - X w - b||^2 / (2n) + alpha ||w||_1 (scikit-learn's Lasso) as a QP.

    With w = u - v, u, v >= 0 on centered data and G = X'X / n, c = X'y / n:
    minimize 0.5 [u; v]' [[G, -G], [-G, G]] [u; v] + [alpha - c; alpha + c]' [u; v].
    ``polish`` re-solves G_SS w_S = c_S - alpha sign(w_S) on the support S and keeps it when
    the KKT conditions (|c - G w|_j <= alpha off S, = alpha sign(w_j) on S) hold.
    """
    from optimkit.solve.qp import solve_qp

    X, y = as_data(X, y)
    a, batched = population("alpha", alpha, allow_zero=True)
    Xc, yc, x_mean, y_mean = _center(X, y, fit_intercept)
    n, d = Xc.shape
    G = (Xc.T @ Xc / n).numpy()
    c = (Xc.T @ yc / n).numpy()
    H = sp.csc_matrix(np.block([[G, -G], [-G, G]]))
    ws, infos = [], []
    for alpha_k in a.tolist():
        res = solve_qp(H, np.concatenate([alpha_k - c, alpha_k + c]), bounds=(0, None))
        z = res.optimal_x("the lasso QP")
        w = z[:d] - z[d:]
        info = {"method": "qp (HiGHS)", "polished": False}
        if polish:
            w, info["polished"], info["kkt_residual"] = _polish_lasso(G, c, alpha_k, w)
        ws.append(w)
        infos.append(info)
    w = torch.as_tensor(np.stack(ws))
    b = y_mean - w @ x_mean
    f = lasso_objective(X, y, w, b, alpha=a)
    if not batched:
        return ConvexSolution(w[0], b[0], f[0], infos[0])
    return ConvexSolution(w, b, f, {"per_alpha": infos})


def _polish_lasso(G: np.ndarray, c: np.ndarray, alpha: float, w: np.ndarray):
    scale = max(1.0, float(np.abs(c).max()))

    def kkt(v: np.ndarray) -> float:
        grad = c - G @ v  # must be alpha sign(v) on the support, within [-alpha, alpha] off it
        on = v != 0
        res_on = np.abs(grad[on] - alpha * np.sign(v[on])).max(initial=0.0)
        res_off = np.maximum(np.abs(grad[~on]) - alpha, 0).max(initial=0.0)
        return float(max(res_on, res_off))

    support = np.abs(w) > 1e-9 * max(1.0, float(np.abs(w).max(initial=0.0)))
    base = np.where(support, w, 0.0)
    best, best_res = base, kkt(base)
    if support.any():
        S = np.flatnonzero(support)
        s = np.sign(w[S])
        try:
            wS = np.linalg.solve(G[np.ix_(S, S)], c[S] - alpha * s)
        except np.linalg.LinAlgError:
            wS = None
        if wS is not None and np.all(np.sign(wS) == s):
            cand = np.zeros_like(w)
            cand[S] = wS
            r = kkt(cand)
            if r < best_res:
                best, best_res = cand, r
    polished = best_res <= 1e-9 * scale
    return (best if polished else w), polished, best_res


def quantile_regression(
    X: Any,
    y: Any,
    *,
    quantile: float = 0.5,
    alpha: Any = 0.0,
    fit_intercept: bool = True,
) -> ConvexSolution:
    """argmin mean rho_q(y - X w - b) + alpha ||w||_1 (scikit-learn's QuantileRegressor) as an LP.

    Variables w+, w- >= 0, b free, u, v >= 0 (the positive and negative residuals):
    minimize (q 1'u + (1 - q) 1'v) / n + alpha 1'(w+ + w-)  s.t.  X(w+ - w-) + b + u - v = y.
    ``quantile=0.5`` is least absolute deviations (LAD / L1 regression).
    """
    from optimkit.solve.lp import solve_lp

    X, y = as_data(X, y)
    q = float(quantile)
    if not 0 < q < 1:
        raise ValueError(f"quantile must lie in (0, 1), got {quantile}")
    a, batched = population("alpha", alpha, allow_zero=True)
    n, d = X.shape
    Xn, yn = X.numpy(), y.numpy()
    nb = int(fit_intercept)
    A_eq = sp.hstack(
        [
            sp.csr_matrix(Xn),
            sp.csr_matrix(-Xn),
            sp.csr_matrix(np.ones((n, nb))),
            sp.eye(n),
            -sp.eye(n),
        ],
        format="csr",
    )
    bounds = [(0, None)] * (2 * d) + [(None, None)] * nb + [(0, None)] * (2 * n)
    ws, bs, infos = [], [], []
    for alpha_k in a.tolist():
        cost = np.concatenate(
            [np.full(2 * d, alpha_k), np.zeros(nb), np.full(n, q / n), np.full(n, (1 - q) / n)]
        )
        res = solve_lp(cost, A_eq=A_eq, b_eq=yn, bounds=bounds)
        z = res.optimal_x("the quantile regression LP")
        ws.append(z[:d] - z[d : 2 * d])
        bs.append(z[2 * d] if fit_intercept else 0.0)
        infos.append({"method": "lp (HiGHS)", "lp_objective": res.objective})
    w = torch.as_tensor(np.stack(ws))
    b = torch.as_tensor(np.array(bs))
    f = quantile_objective(X, y, w, b, quantile=q, alpha=a)
    if not batched:
        return ConvexSolution(w[0], b[0], f[0], infos[0])
    return ConvexSolution(w, b, f, {"per_alpha": infos})


def lad(X: Any, y: Any, *, alpha: Any = 0.0, fit_intercept: bool = True) -> ConvexSolution:
    """Least absolute deviations: :func:`quantile_regression` with quantile 0.5 (objective
    mean |r| / 2 + alpha ||w||_1, as QuantileRegressor's pinball loss)."""
    return quantile_regression(X, y, quantile=0.5, alpha=alpha, fit_intercept=fit_intercept)
