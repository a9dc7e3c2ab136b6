"""Exact optima of convex linear classifiers (objectives in :mod:`optimkit.solve.objectives`).

- linear SVM with hinge loss: the primal QP on HiGHS (Cortes & Vapnik, 1995), one-vs-rest for
  more than two classes, as LinearSVC;
- L2-regularized logistic regression: a batched damped Newton method with closed-form gradient
  and Hessian, Cholesky solves and a vectorized Armijo backtracking line search, run until
  max |gradient| <= 1e-10 (quadratic convergence: Boyd & Vandenberghe, "Convex
  Optimization", 9.5). Binary with one weight vector, multinomial (softmax) otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from optimkit.solve.objectives import ConvexSolution, logistic_objective, svm_objective
from optimkit.solve.regression import as_data, population


def encode_labels(y: Any) -> tuple[Tensor, np.ndarray]:
    """Class indices 0..k-1 (sorted labels, as scikit-learn) and the class labels."""
    y_np = np.asarray(y.detach().cpu() if isinstance(y, Tensor) else y)
    if y_np.ndim != 1:
        raise ValueError(f"y must be 1-D (one label per sample), got shape {y_np.shape}")
    if y_np.dtype.kind == "f" and not np.isfinite(y_np).all():
        raise ValueError("y contains NaN or inf")
    classes, idx = np.unique(y_np, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"y must hold at least 2 classes, got {len(classes)}")
    return torch.as_tensor(idx, dtype=torch.float64), classes


def linear_svm(
    X: Any,
    y: Any,
    *,
    C: Any = 1.0,
    fit_intercept: bool = True,
    intercept_scaling: float = 1.0,
    penalize_intercept: bool = True,
) -> ConvexSolution:
    """Linear SVM with hinge loss, LinearSVC(loss="hinge")'s problem, solved exactly as a QP.

    Per binary problem (labels y_i in {-1, +1}) the primal is
    minimize 0.5 (||w||^2 + [b / s]^2) + C sum_i max(0, 1 - y_i (w.x_i + b))
    (divided by C n in :func:`~optimkit.solve.objectives.svm_objective`). liblinear penalizes
    the intercept (s = ``intercept_scaling``); ``penalize_intercept=False`` gives the textbook
    SVM. HiGHS solves the dual (Cortes & Vapnik, 1995) with v = Z'a as extra free variables,
    z_i = y_i [x_i, s]:

        minimize 0.5 ||v||^2 - 1'a   s.t.  v = Z'a,  0 <= a <= C   (+ y'a = 0 if b is free)

    so that the Hessian is the identity on v; then [w, b / s] = v (b = -dual of y'a = 0 when
    unpenalized). (HiGHS's active-set method stalls on the primal, whose Hessian is zero on
    the n slacks.) More than two classes: one-vs-rest, as LinearSVC. ``coef`` [n_problems, d]
    (n_problems = 1 for two classes), ``intercept`` [n_problems]; a leading K axis when C is a
    tensor [K].
    """
    from optimkit.solve.qp import solve_qp

    idx, classes = encode_labels(y)
    X, idx = as_data(X, idx)
    Cs, batched = population("C", C)
    if not intercept_scaling > 0:
        raise ValueError(f"intercept_scaling must be positive, got {intercept_scaling}")
    n, d = X.shape
    Xn = X.numpy()
    problems = [1] if len(classes) == 2 else list(range(len(classes)))
    aug = fit_intercept and penalize_intercept  # intercept as an extra feature s
    free_b = fit_intercept and not penalize_intercept
    dv = d + int(aug)
    Q = sp.diags(np.concatenate([np.ones(dv), np.zeros(n)]))
    c = np.concatenate([np.zeros(dv), -np.ones(n)])
    coefs, intercepts, objs = [], [], []
    for Ck in Cs.tolist():
        row_w, row_b, row_f = [], [], []
        for k in problems:
            yk = np.where(idx.numpy() == k, 1.0, -1.0)
            Z = yk[:, None] * (np.c_[Xn, np.full(n, intercept_scaling)] if aug else Xn)
            rows = [sp.hstack([sp.eye(dv), sp.csr_matrix(-Z.T)])]
            if free_b:
                rows.append(sp.hstack([sp.csr_matrix((1, dv)), sp.csr_matrix(yk[None, :])]))
            A_eq = sp.vstack(rows, format="csr")
            bounds = [(None, None)] * dv + [(0.0, Ck)] * n
            res = solve_qp(Q, c, A_eq=A_eq, b_eq=np.zeros(A_eq.shape[0]), bounds=bounds)
            v = res.optimal_x("the SVM dual QP")[:dv]
            w = torch.as_tensor(v[:d].copy())
            if aug:
                b = v[d] * intercept_scaling
            elif free_b:
                assert res.eq_duals is not None  # an optimal QP has duals
                b = -res.eq_duals[-1]
            else:
                b = 0.0
            b = torch.tensor(b, dtype=torch.float64)
            row_w.append(w)
            row_b.append(b)
            row_f.append(
                svm_objective(
                    X,
                    torch.as_tensor(yk),
                    w,
                    b,
                    C=Ck,
                    intercept_scaling=intercept_scaling,
                    penalize_intercept=aug,
                )
            )
        coefs.append(torch.stack(row_w))
        intercepts.append(torch.stack(row_b))
        objs.append(torch.stack(row_f))
    coef, intercept, f = torch.stack(coefs), torch.stack(intercepts), torch.stack(objs)
    info = {"method": "dual qp (HiGHS)", "classes": classes, "one_vs_rest": len(problems) > 1}
    if not batched:
        coef, intercept, f = coef[0], intercept[0], f[0]
    if len(problems) == 1:
        f = f[..., 0]
    return ConvexSolution(coef, intercept, f, info)


def logistic_regression(
    X: Any,
    y: Any,
    *,
    C: Any = 1.0,
    fit_intercept: bool = True,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> ConvexSolution:
    """L2-regularized logistic regression (LogisticRegression(C)'s problem) by Newton's method.

    Objective: mean cross-entropy + ||W||^2 / (2 C n), intercepts unpenalized. The parameters
    theta = [W, b] ([k, d+1], k = 1 for two classes) of all K values of C are updated together:

        g = X~'(P - Y) / n + [W, 0] / (C n)
        H = sum_i (diag p_i - p_i p_i') (x) x~_i x~_i' / n + I_W / (C n)   (+ 11'/k on b)
        theta <- theta - t H^{-1} g,   t = max{2^-j : Armijo with c1 = 1e-4}

    (The softmax intercepts are only defined up to a common shift; the 11'/k term, orthogonal
    to every gradient, fixes them to sum to zero as scikit-learn's lbfgs does.) Stops when
    max |g| <= ``tol`` for every member. ``info``: iterations, grad_max, converged.
    """
    idx, classes = encode_labels(y)
    X, idx = as_data(X, idx)
    Cs, batched = population("C", C)
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    n, d = X.shape
    k = 1 if len(classes) == 2 else len(classes)
    Xt = torch.cat([X, torch.ones(n, 1, dtype=X.dtype)], 1) if fit_intercept else X
    p_dim = Xt.shape[1]
    K = len(Cs)
    Y = torch.nn.functional.one_hot(idx.long(), len(classes)).to(X.dtype)
    Y = Y[:, 1:] if k == 1 else Y  # binary: y = 1 for the second class
    pen = torch.ones(p_dim, dtype=X.dtype)
    if fit_intercept:
        pen[-1] = 0.0
    reg = (1.0 / (Cs * n))[:, None, None] * pen  # [K, 1, p]
    theta = torch.zeros(K, k, p_dim, dtype=X.dtype)
    fix = torch.zeros(k * p_dim, k * p_dim, dtype=X.dtype)
    if fit_intercept and k > 1:
        b_idx = torch.arange(k) * p_dim + p_dim - 1
        fix[b_idx[:, None], b_idx[None, :]] = 1.0 / k
    steps = 0.5 ** torch.arange(40, dtype=X.dtype)  # candidate step sizes

    def loss_of(Z: Tensor, th: Tensor) -> Tensor:  # Z [..., n, k], th [..., k, p]
        if k == 1:
            z = Z[..., 0]
            data = (torch.nn.functional.softplus(z) - Y[:, 0] * z).mean(-1)
        else:
            data = (torch.logsumexp(Z, -1) - (Z * Y).sum(-1)).mean(-1)
        r = reg.reshape(K, *([1] * (th.dim() - 3)), 1, p_dim)
        return data + 0.5 * (r * th * th).sum((-2, -1))

    iters = torch.zeros(K, dtype=torch.long)
    grad_max = torch.full((K,), torch.inf, dtype=X.dtype)
    for it in range(max_iter + 1):
        Z = torch.einsum("np,Kkp->Knk", Xt, theta)
        Pr = torch.sigmoid(Z) if k == 1 else torch.softmax(Z, -1)
        g = torch.einsum("Knk,np->Kkp", Pr - Y, Xt) / n + reg * theta  # [K, k, p]
        grad_max = g.abs().amax((-2, -1))
        active = grad_max > tol
        if it == max_iter or not bool(active.any()):
            break
        H = _hessian(Xt, Pr, k) + torch.diag_embed(reg.expand(K, k, p_dim).reshape(K, -1)) + fix
        L, info = torch.linalg.cholesky_ex(H)
        if bool((info != 0).any()):
            raise RuntimeError("logistic Hessian is not positive definite (degenerate data?)")
        delta = -torch.cholesky_solve(g.reshape(K, -1, 1), L).reshape(K, k, p_dim)
        delta = delta * active[:, None, None]
        # Vectorized Armijo backtracking: every candidate step at once.
        dZ = torch.einsum("np,Kkp->Knk", Xt, delta)
        f0 = loss_of(Z, theta)
        cand = loss_of(
            Z[:, None] + steps[None, :, None, None] * dZ[:, None],
            theta[:, None] + steps[None, :, None, None] * delta[:, None],
        )
        slope = (g * delta).sum((-2, -1))
        ok = cand <= f0[:, None] + 1e-4 * steps[None, :] * slope[:, None]
        first = torch.where(ok.any(1), ok.float().argmax(1), torch.full_like(iters, len(steps) - 1))
        t = steps[first]
        theta = theta + t[:, None, None] * delta
        iters = iters + active.long()
    W = theta[..., :d]
    b = theta[..., d] if fit_intercept else torch.zeros(K, k, dtype=X.dtype)
    f = logistic_objective(X, idx, W, b, C=Cs)
    info = {
        "method": "newton (cholesky)",
        "n_iter": iters if batched else iters[0],
        "grad_max": grad_max if batched else grad_max[0],
        "converged": (grad_max <= tol) if batched else bool(grad_max[0] <= tol),
        "classes": classes,
    }
    if not batched:
        W, b, f = W[0], b[0], f[0]
    return ConvexSolution(W, b, f, info)


def _hessian(Xt: Tensor, Pr: Tensor, k: int) -> Tensor:
    """Data Hessian [K, k p, k p] (row/col index = class * p + feature)."""
    n, p = Xt.shape
    K = Pr.shape[0]
    if k == 1:
        w = (Pr * (1 - Pr))[..., 0] / n  # [K, n]
        return torch.einsum("Kn,np,nq->Kpq", w, Xt, Xt)
    # sum_i diag(p_i) (x) x_i x_i'  -  (p_i (x) x_i)(p_i (x) x_i)'
    M = (Pr[..., None] * Xt[None, :, None, :]).reshape(K, n, k * p)  # [K, n, k p]
    diag_blocks = torch.einsum("Knkp,nq->Kkpq", M.reshape(K, n, k, p), Xt)  # [K, k, p, p]
    H = -(M.transpose(1, 2) @ M)
    H.view(K, k, p, k, p).diagonal(dim1=1, dim2=3).add_(diag_blocks.permute(0, 2, 3, 1))
    return H / n
