"""Exact optima of convex ML problems against scikit-learn on real (bundled) data sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris, load_wine
from sklearn.linear_model import (
    Lasso,
    LinearRegression,
    LogisticRegression,
    QuantileRegressor,
    Ridge,
)
from sklearn.metrics import hinge_loss, log_loss, mean_pinball_loss, mean_squared_error
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC
from threadpoolctl import threadpool_limits

from optimkit.solve import (
    PROBLEMS,
    exact_optimum,
    lad,
    lasso,
    least_squares,
    linear_svm,
    logistic_regression,
    objective,
    quantile_regression,
    ridge,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """2 cores shared with other tests: BLAS / OpenMP thread pools oversubscribe them."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(old)


def standardized(loader):
    X, y = loader(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="module")
def diabetes():
    X, y = load_diabetes(return_X_y=True)
    return X, y


@pytest.fixture(scope="module")
def cancer():
    return standardized(load_breast_cancer)


def test_least_squares_matches_linear_regression(diabetes):
    X, y = diabetes
    sol = least_squares(X, y)
    ref = LinearRegression().fit(X, y)
    np.testing.assert_allclose(sol.coef.numpy(), ref.coef_, rtol=1e-10)
    assert float(sol.intercept) == pytest.approx(ref.intercept_, rel=1e-12)
    mse = mean_squared_error(y, ref.predict(X))
    assert float(sol.objective) == pytest.approx(mse / 2, rel=1e-12)
    # Rank deficient (a duplicated column): the minimum-norm solution, as scikit-learn.
    Xd = np.c_[X, X[:, 0]]
    sol = least_squares(Xd, y)
    ref = LinearRegression().fit(Xd, y)
    assert "rank deficient" in sol.info["method"]
    np.testing.assert_allclose(sol.coef.numpy(), ref.coef_, rtol=1e-8, atol=1e-8)


def test_ridge_matches_sklearn_batched_and_wide(diabetes):
    X, y = diabetes
    alphas = torch.tensor([0.01, 1.0, 100.0], dtype=torch.float64)
    sol = ridge(X, y, alpha=alphas)
    assert sol.coef.shape == (3, X.shape[1]) and sol.objective.shape == (3,)
    for k, a in enumerate(alphas.tolist()):
        ref = Ridge(alpha=a, solver="cholesky").fit(X, y)
        np.testing.assert_allclose(sol.coef[k].numpy(), ref.coef_, rtol=1e-9)
        assert float(sol.intercept[k]) == pytest.approx(ref.intercept_, rel=1e-10)
        single = ridge(X, y, alpha=a)
        np.testing.assert_allclose(single.coef.numpy(), sol.coef[k].numpy(), rtol=1e-12)
        r = y - ref.predict(X)
        f_ref = (r @ r + a * ref.coef_ @ ref.coef_) / (2 * len(y))
        assert float(sol.objective[k]) == pytest.approx(f_ref, rel=1e-10)
    # More features than samples: the n x n (dual) system.
    Xw, yw = X[:8], y[:8]
    wide = ridge(Xw, yw, alpha=0.5)
    ref = Ridge(alpha=0.5, solver="svd").fit(Xw, yw)
    np.testing.assert_allclose(wide.coef.numpy(), ref.coef_, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("alpha", [0.05, 0.5, 5.0])
def test_lasso_matches_sklearn(diabetes, alpha):
    X, y = diabetes
    sol = lasso(X, y, alpha=alpha)
    ref = Lasso(alpha=alpha, tol=1e-14, max_iter=1_000_000).fit(X, y)
    assert sol.info["polished"]
    np.testing.assert_allclose(sol.coef.numpy(), ref.coef_, atol=1e-8 * np.abs(ref.coef_).max())
    assert float(sol.intercept) == pytest.approx(ref.intercept_, rel=1e-9)
    r = y - ref.predict(X)
    f_ref = r @ r / (2 * len(y)) + alpha * np.abs(ref.coef_).sum()
    assert float(sol.objective) <= f_ref * (1 + 1e-12)
    assert float(sol.objective) == pytest.approx(f_ref, rel=1e-11)
    # Zeros are exact zeros where sklearn has them.
    np.testing.assert_array_equal(sol.coef.numpy() == 0, ref.coef_ == 0)


@pytest.mark.parametrize(("quantile", "alpha"), [(0.5, 0.0), (0.5, 0.1), (0.8, 0.01)])
def test_quantile_regression_matches_sklearn(diabetes, quantile, alpha):
    X, y = diabetes
    sol = quantile_regression(X, y, quantile=quantile, alpha=alpha)
    ref = QuantileRegressor(quantile=quantile, alpha=alpha, solver="highs").fit(X, y)
    f_ref = mean_pinball_loss(y, ref.predict(X), alpha=quantile) + alpha * np.abs(ref.coef_).sum()
    assert float(sol.objective) == pytest.approx(f_ref, rel=1e-9)
    np.testing.assert_allclose(sol.coef.numpy(), ref.coef_, rtol=1e-6, atol=1e-6)
    if quantile == 0.5:
        np.testing.assert_allclose(lad(X, y, alpha=alpha).coef.numpy(), sol.coef.numpy())


def test_linear_svm_matches_linear_svc(cancer):
    X, y = cancer
    for C in (0.1, 1.0):
        sol = linear_svm(X, y, C=C)
        ref = LinearSVC(loss="hinge", C=C, tol=1e-10, max_iter=1_000_000).fit(X, y)
        f_ref = objective("linear_svm", X, y, ref.coef_, ref.intercept_, C=C)
        assert float(sol.objective) <= float(f_ref) * (1 + 1e-10)
        assert float(sol.objective) == pytest.approx(float(f_ref), rel=1e-9)
        np.testing.assert_allclose(sol.coef.numpy(), ref.coef_, atol=1e-7)
        np.testing.assert_allclose(sol.intercept.numpy(), ref.intercept_, atol=1e-7)


def test_linear_svm_unpenalized_intercept_matches_svc(cancer):
    """The textbook SVM (free b) is libsvm's SVC(kernel="linear")."""
    X, y = cancer
    sol = linear_svm(X, y, C=0.5, penalize_intercept=False)
    ref = SVC(kernel="linear", C=0.5, tol=1e-10).fit(X, y)
    np.testing.assert_allclose(sol.coef.numpy(), ref.coef_, atol=1e-6)
    np.testing.assert_allclose(sol.intercept.numpy(), ref.intercept_, atol=1e-6)
    obj = objective("linear_svm", X, y, sol.coef, sol.intercept, C=0.5, penalize_intercept=False)
    ref_obj = objective(
        "linear_svm", X, y, ref.coef_, ref.intercept_, C=0.5, penalize_intercept=False
    )
    assert float(obj) <= float(ref_obj) * (1 + 1e-10)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_linear_svm_one_vs_rest_matches_linear_svc():
    X, y = standardized(load_iris)
    sol = linear_svm(X, y, C=1.0)
    ref = LinearSVC(loss="hinge", C=1.0, tol=1e-10, max_iter=200_000).fit(X, y)
    assert sol.coef.shape == ref.coef_.shape == (3, 4)
    for k in range(3):
        yk = np.where(y == k, 1, -1)
        f_ref = objective("linear_svm", X, yk, ref.coef_[k], ref.intercept_[k], C=1.0)
        assert float(sol.objective[k]) <= float(f_ref) * (1 + 1e-10)
        assert float(sol.objective[k]) == pytest.approx(float(f_ref), rel=1e-6)


def sklearn_logistic(X, y, C):
    return LogisticRegression(C=C, tol=1e-13, max_iter=100_000).fit(X, y)


@pytest.mark.parametrize("loader", [load_breast_cancer, load_wine])
def test_logistic_matches_sklearn(loader):
    X, y = standardized(loader)
    C = 0.5
    sol = logistic_regression(X, y, C=C)
    ref = sklearn_logistic(X, y, C)
    assert sol.info["converged"] and float(sol.info["grad_max"]) <= 1e-10
    assert sol.coef.shape == ref.coef_.shape and sol.intercept.shape == ref.intercept_.shape
    f_ref = float(objective("logistic", X, y, ref.coef_, ref.intercept_, C=C))
    f_star = float(sol.objective)
    assert f_star <= f_ref + 1e-15  # nothing beats the exact optimum...
    assert f_ref - f_star < 1e-10  # ...and sklearn's lbfgs, run to tol 1e-13, gets close to it
    np.testing.assert_allclose(sol.coef.numpy(), ref.coef_, atol=2e-5)
    # f* is log_loss + penalty, computed independently by scikit-learn's metric.
    proba = ref.predict_proba(X)
    W = sol.coef.numpy()
    Z = X @ W.T + sol.intercept.numpy()
    if W.shape[0] == 1:
        proba = np.c_[1 / (1 + np.exp(Z)), 1 / (1 + np.exp(-Z))]
    else:
        proba = np.exp(Z - Z.max(1, keepdims=True))
        proba /= proba.sum(1, keepdims=True)
    f_metric = log_loss(y, proba) + (W * W).sum() / (2 * C * len(y))
    assert f_star == pytest.approx(f_metric, rel=1e-12)


def test_logistic_gradient_is_zero_by_autograd_and_batched_C():
    """Independent optimality check: autograd of the objective vanishes at the solution."""
    X, y = standardized(load_iris)
    Cs = torch.tensor([0.1, 1.0, 10.0], dtype=torch.float64)
    sol = logistic_regression(X, y, C=Cs)
    assert sol.coef.shape == (3, 3, 4) and sol.objective.shape == (3,)
    W = sol.coef.clone().requires_grad_(True)
    b = sol.intercept.clone().requires_grad_(True)
    objective("logistic", X, y, W, b, C=Cs).sum().backward()
    assert float(W.grad.abs().max()) < 1e-10 and float(b.grad.abs().max()) < 1e-10
    # Softmax intercepts are fixed to sum to zero (as sklearn's lbfgs from zero).
    np.testing.assert_allclose(sol.intercept.sum(-1).numpy(), 0.0, atol=1e-12)
    for k, C in enumerate(Cs.tolist()):
        single = logistic_regression(X, y, C=C)
        np.testing.assert_allclose(single.coef.numpy(), sol.coef[k].numpy(), atol=1e-12)


def test_logistic_digits_multinomial():
    """The benchmark's problem: 10 classes, 64 features, C = 1, standardized."""
    X, y = standardized(load_digits)
    sol = logistic_regression(X, y, C=1.0)
    assert sol.info["converged"] and int(sol.info["n_iter"]) < 30
    ref = sklearn_logistic(X, y, 1.0)
    f_ref = float(objective("logistic", X, y, ref.coef_, ref.intercept_, C=1.0))
    assert -1e-15 <= f_ref - float(sol.objective) < 1e-9


def test_objectives_against_sklearn_metrics(diabetes, cancer):
    X, y = diabetes
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=X.shape[1]) * 100, 150.0
    pred = X @ w + b
    mse = mean_squared_error(y, pred)
    assert float(objective("least_squares", X, y, w, b)) == pytest.approx(mse / 2, rel=1e-12)
    assert float(objective("lasso", X, y, w, b, alpha=0.3)) == pytest.approx(
        mse / 2 + 0.3 * np.abs(w).sum(), rel=1e-12
    )
    assert float(objective("quantile", X, y, w, b, quantile=0.3)) == pytest.approx(
        mean_pinball_loss(y, pred, alpha=0.3), rel=1e-12
    )
    Xc, yc = cancer
    wc = rng.normal(size=Xc.shape[1])
    hinge = hinge_loss(np.where(yc == 1, 1, -1), Xc @ wc + 0.2)
    assert float(objective("linear_svm", Xc, yc, wc, 0.2, C=2.0)) == pytest.approx(
        hinge + (wc @ wc + 0.04) / (2 * 2.0 * len(yc)), rel=1e-12
    )
    # A population of iterates: a leading K axis.
    W = torch.as_tensor(rng.normal(size=(4, X.shape[1])))
    f = objective("ridge", X, y, W, torch.zeros(4), alpha=torch.tensor([1.0, 2, 3, 4]))
    assert f.shape == (4,)
    assert float(f[2]) == pytest.approx(float(objective("ridge", X, y, W[2], 0.0, alpha=3.0)))


def test_exact_optimum_registry(diabetes):
    X, y = diabetes
    assert set(PROBLEMS) >= {"least_squares", "ridge", "lasso", "lad", "linear_svm", "logistic"}
    sol = exact_optimum("ridge", X, y, alpha=2.0)
    assert float(sol.objective) == pytest.approx(
        float(objective("ridge", X, y, sol.coef, sol.intercept, alpha=2.0)), rel=1e-14
    )
    with pytest.raises(ValueError, match="problem must be one of least_squares, ridge"):
        exact_optimum("svm", X, y)


def test_convex_bad_input(diabetes):
    X, y = diabetes
    with pytest.raises(ValueError, match="y must be 1-D with one entry per row of X"):
        ridge(X, y[:-1])
    Xn = X.copy()
    Xn[3, 2] = np.nan
    with pytest.raises(ValueError, match="X contains NaN or inf"):
        least_squares(Xn, y)
    with pytest.raises(ValueError, match="alpha must be finite and positive"):
        ridge(X, y, alpha=0.0)
    with pytest.raises(ValueError, match="alpha must be finite and non-negative"):
        lasso(X, y, alpha=-1.0)
    with pytest.raises(ValueError, match="C must be finite and positive"):
        logistic_regression(X, y > 150, C=torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="quantile must lie in"):
        quantile_regression(X, y, quantile=1.5)
    with pytest.raises(ValueError, match="y must hold at least 2 classes"):
        linear_svm(X, np.ones(len(y)))
    with pytest.raises(ValueError, match="X must be a non-empty 2-D array"):
        least_squares(X[:, 0], y)
    with pytest.raises(ValueError, match="coef must have 10 features"):
        objective("ridge", X, y, np.zeros(3), alpha=1.0)
