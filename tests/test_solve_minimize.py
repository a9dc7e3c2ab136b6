"""minimize() with autograd derivatives against scipy with analytic derivatives, KKT, HiGHS."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import LinearConstraint, NonlinearConstraint, rosen, rosen_der, rosen_hess_prod
from scipy.optimize import minimize as scipy_minimize
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from optimkit.solve import logistic_regression, minimize, solve_qp
from optimkit.solve.minimize import METHODS, _TorchScalar

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(old)


def rosen_torch(x):
    return (100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


def test_autograd_derivatives_match_analytic():
    obj = _TorchScalar(rosen_torch, (5,), ())
    rng = np.random.default_rng(0)
    for _ in range(3):
        x, p = rng.normal(size=5), rng.normal(size=5)
        f, g = obj.value_and_grad(x)
        assert f == pytest.approx(rosen(x), rel=1e-14)
        np.testing.assert_allclose(g, rosen_der(x), rtol=1e-13)
        np.testing.assert_allclose(obj.hessp(x, p), rosen_hess_prod(x, p), rtol=1e-12)


@pytest.mark.parametrize(
    "method",
    [
        "L-BFGS-B",
        "TNC",
        "BFGS",
        "CG",
        "Newton-CG",
        "trust-ncg",
        "trust-krylov",
        "trust-constr",
        "SLSQP",
        "newton",
        "lbfgs",
    ],
)
def test_unconstrained_rosenbrock(method):
    x0 = np.array([-1.2, 1.0])
    opts = {} if method == "TNC" else {"maxiter": 5000}
    res = minimize(rosen_torch, x0, method=method, options=opts)
    assert res.success, res.message
    assert res.fun == pytest.approx(rosen(res.x), rel=1e-12, abs=1e-20)
    if method in ("newton", "lbfgs"):  # run to max |gradient| <= 1e-8
        np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-7)
        return
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-3)  # scipy's default tolerances
    hessp = (
        rosen_hess_prod
        if method in ("Newton-CG", "trust-ncg", "trust-krylov", "trust-constr")
        else None
    )
    ref = scipy_minimize(rosen, x0, jac=rosen_der, hessp=hessp, method=method, options=opts)
    if method == "TNC":  # its path is sensitive to the last bits of the gradient
        assert res.fun == pytest.approx(ref.fun, abs=1e-6)
        return
    np.testing.assert_allclose(res.x, ref.x, atol=1e-9)  # same iterates as analytic
    assert res.nit == ref.nit


def hs071(x):
    return x[0] * x[3] * (x[0] + x[1] + x[2]) + x[2]


HS071_X = np.array([1.0, 4.74299964, 3.82114998, 1.37940829])  # Hock & Schittkowski (1981)


@pytest.mark.filterwarnings("ignore:delta_grad == 0.0")  # scipy's BFGS in the reference run
@pytest.mark.parametrize("style", ["dict", "nonlinear"])
@pytest.mark.parametrize("method", ["SLSQP", "trust-constr"])
def test_hs071_constrained(method, style):
    if style == "dict":
        cons = [
            {"type": "ineq", "fun": lambda x: x.prod() - 25},
            {"type": "eq", "fun": lambda x: (x * x).sum() - 40},
        ]
    else:
        cons = [
            NonlinearConstraint(lambda x: x.prod(), 25, np.inf),
            NonlinearConstraint(lambda x: (x * x).sum(), 40, 40),
        ]
    if method == "SLSQP":
        opts = {"maxiter": 1000, "ftol": 1e-10}
    else:
        opts = {"gtol": 1e-12, "xtol": 1e-16, "barrier_tol": 1e-14, "maxiter": 5000}
    res = minimize(
        hs071, [1, 5, 5, 1], method=method, bounds=(1, 5), constraints=cons, options=opts
    )
    assert res.success, res.message
    np.testing.assert_allclose(res.x, HS071_X, atol=1e-6)
    assert res.fun == pytest.approx(17.0140173, rel=1e-7)
    # The same run with hand-written numpy derivatives (scipy's dict constraints).
    ref_cons = [
        {
            "type": "ineq",
            "fun": lambda x: np.prod(x) - 25,
            "jac": lambda x: np.array([np.prod(np.delete(x, i)) for i in range(4)]),
        },
        {"type": "eq", "fun": lambda x: x @ x - 40, "jac": lambda x: 2 * x},
    ]

    def jac(x):
        return np.array(
            [
                x[3] * (2 * x[0] + x[1] + x[2]),
                x[0] * x[3],
                x[0] * x[3] + 1,
                x[0] * (x[0] + x[1] + x[2]),
            ]
        )

    ref = scipy_minimize(
        lambda x: float(hs071(x)),
        [1, 5, 5, 1],
        jac=jac,
        method=method,
        bounds=[(1, 5)] * 4,
        constraints=ref_cons,
        options=opts,
    )
    np.testing.assert_allclose(res.x, ref.x, atol=1e-7)


def test_slsqp_qp_matches_highs_kkt_solution():
    """A convex QP with linear constraints: SLSQP on the torch objective vs HiGHS."""
    rng = np.random.default_rng(1)
    n = 6
    M = rng.normal(size=(n, n))
    Q = M @ M.T + np.eye(n)
    c = rng.normal(size=n) * 3
    A = rng.normal(size=(4, n))
    b = rng.uniform(0.0, 1.0, size=4)
    A_eq = rng.normal(size=(1, n))
    b_eq = np.array([0.3])
    ref = solve_qp(Q, c, A, b, A_eq, b_eq, bounds=(-2, 2))
    Qt, ct, At, bt = (torch.as_tensor(v) for v in (Q, c, A, b))
    res = minimize(
        lambda x: 0.5 * x @ Qt @ x + ct @ x,
        np.zeros(n),
        method="SLSQP",
        bounds=(-2, 2),
        constraints=[
            {"type": "ineq", "fun": lambda x: bt - At @ x},
            LinearConstraint(A_eq, b_eq, b_eq),
        ],
        options={"ftol": 1e-14, "maxiter": 500},
    )
    assert res.success
    np.testing.assert_allclose(res.x, ref.x, atol=1e-7)
    assert res.fun == pytest.approx(ref.objective, rel=1e-10)


def test_bounds_and_matrix_shaped_x():
    target = torch.tensor([[3.0, -2.0], [0.5, 0.2]], dtype=torch.float64)
    res = minimize(
        lambda W: ((W - target) ** 2).sum(), np.zeros((2, 2)), method="L-BFGS-B", bounds=(-1, 1)
    )
    assert res.x.shape == (2, 2) and res.jac.shape == (2, 2)
    np.testing.assert_allclose(res.x, target.clamp(-1, 1).numpy(), atol=1e-8)


@pytest.mark.parametrize("method", ["newton", "lbfgs", "Newton-CG", "L-BFGS-B"])
def test_logistic_regression_reaches_exact_optimum(method):
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    exact = logistic_regression(X, y, C=1.0)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y, dtype=torch.float64)

    def f(theta):
        z = Xt @ theta[:-1] + theta[-1]
        w = theta[:-1]
        return (torch.nn.functional.softplus(z) - yt * z).mean() + w @ w / (2 * len(y))

    scipy_opts = {"ftol": 1e-15, "gtol": 1e-12} if method == "L-BFGS-B" else {"xtol": 1e-12}
    opts = {"maxiter": 10_000, **({} if method in ("newton", "lbfgs") else scipy_opts)}
    res = minimize(f, np.zeros(X.shape[1] + 1), method=method, tol=1e-10, options=opts)
    assert res.success
    ours = method in ("newton", "lbfgs")  # run to max |gradient| <= 1e-10
    gap_tol = 1e-12 if ours or method == "L-BFGS-B" else 1e-10
    assert -1e-15 < res.fun - float(exact.objective) < gap_tol
    # Ill-conditioned: a 1e-12 gap still leaves ~1e-5 in some weights.
    np.testing.assert_allclose(res.x[:-1], exact.coef[0].numpy(), atol=1e-6 if ours else 1e-4)


def load_example():
    spec = importlib.util.spec_from_file_location("logistic_slsqp", EXAMPLES / "logistic_slsqp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_logistic_slsqp_example_reaches_the_exact_optimum():
    example = load_example()
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    res = example.fit_slsqp(X, y, C=1.0, bound=5.0)
    exact = logistic_regression(X, y, C=1.0)
    sk = LogisticRegression(C=1.0, tol=1e-12, max_iter=10_000).fit(X, y)
    assert res.success
    assert np.abs(res.x[:-1]).max() < 5  # bounds inactive: the unconstrained optimum
    assert res.fun - float(exact.objective) < 1e-9
    assert res.fun >= float(exact.objective) - 1e-15
    np.testing.assert_allclose(res.x[:-1], sk.coef_[0], atol=1e-4)
    np.testing.assert_allclose(res.x[:-1], exact.coef[0].numpy(), atol=1e-4)


def test_logistic_slsqp_example_with_active_bounds_satisfies_kkt():
    example = load_example()
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    bound = 0.5
    res = example.fit_slsqp(X, y, C=1.0, bound=bound)
    theta = torch.tensor(res.x, requires_grad=True)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y, dtype=torch.float64)
    example.negative_log_likelihood(theta, Xt, yt, 1.0).backward()
    g = theta.grad.numpy()
    w = res.x[:-1]
    upper, lower = np.isclose(w, bound), np.isclose(w, -bound)
    free = ~(upper | lower)
    assert upper.any() or lower.any()  # the box is active
    # KKT for a box: zero gradient on free coordinates, pushing outward at active bounds.
    assert np.abs(g[:-1][free]).max() < 1e-6 and abs(g[-1]) < 1e-6
    assert np.all(g[:-1][upper] <= 1e-8) and np.all(g[:-1][lower] >= -1e-8)
    # Another algorithm on the same bounded problem agrees.
    other = minimize(
        example.negative_log_likelihood,
        np.zeros(X.shape[1] + 1),
        args=(Xt, yt, 1.0),
        method="L-BFGS-B",
        bounds=[(-bound, bound)] * X.shape[1] + [(None, None)],
        options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10_000},
    )
    assert res.fun == pytest.approx(other.fun, rel=1e-10)


def test_minimize_bad_input():
    f = rosen_torch
    with pytest.raises(ValueError, match="method must be one of SLSQP, trust-constr"):
        minimize(f, [0.0, 0.0], method="nelder")
    with pytest.raises(ValueError, match="method 'newton' does not take bounds"):
        minimize(f, [0.0, 0.0], method="newton", bounds=(0, 1))
    with pytest.raises(ValueError, match="method 'L-BFGS-B' does not take constraints"):
        minimize(f, [0.0, 0.0], constraints={"type": "eq", "fun": lambda x: x.sum()})
    with pytest.raises(ValueError, match="low > high for variable 1"):
        minimize(f, [0.0, 0.0], bounds=[(0, 1), (2, 1)])
    with pytest.raises(ValueError, match="bounds must hold one"):
        minimize(f, [0.0, 0.0], bounds=[(0, 1)] * 3)
    with pytest.raises(ValueError, match="x0 contains NaN"):
        minimize(f, [0.0, np.nan])
    with pytest.raises(ValueError, match="fun must return a scalar torch tensor"):
        minimize(lambda x: x * 2, [0.0, 1.0])
    with pytest.raises(ValueError, match=r"constraints\[0\]: expected \{'type'"):
        minimize(f, [0.0, 0.0], method="SLSQP", constraints=[{"type": "le", "fun": f}])
    with pytest.raises(ValueError, match="options: "):
        minimize(f, [0.0, 0.0], method="lbfgs", options={"no_such_option": 1})
    assert set(METHODS) >= {"SLSQP", "trust-constr", "L-BFGS-B", "newton", "lbfgs"}
