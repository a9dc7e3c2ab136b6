"""LP / MILP / QP on HiGHS against scipy.optimize (linprog, milp), finite differences and KKT."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, linprog, milp, minimize

from optimkit.solve import solve_lp, solve_qp


def random_lp(seed: int, m: int = 12, n: int = 8):
    """A feasible, bounded LP: x_feas satisfies every row with slack, and the box is finite."""
    rng = np.random.default_rng(seed)
    A_ub = rng.normal(size=(m, n))
    x_feas = rng.uniform(0.0, 2.0, size=n)
    b_ub = A_ub @ x_feas + rng.uniform(0.1, 1.0, size=m)
    A_eq = rng.normal(size=(2, n))
    b_eq = A_eq @ x_feas
    c = rng.normal(size=n)
    bounds = [(0.0, 5.0)] * n
    return c, A_ub, b_ub, A_eq, b_eq, bounds


@pytest.mark.parametrize("seed", range(6))
def test_random_lp_matches_linprog(seed):
    c, A_ub, b_ub, A_eq, b_eq, bounds = random_lp(seed)
    ours = solve_lp(c, A_ub, b_ub, A_eq, b_eq, bounds)
    ref = linprog(c, A_ub, b_ub, A_eq, b_eq, bounds, method="highs")
    assert ours.status == "optimal" and ours.success
    assert ref.status == 0
    assert ours.objective == pytest.approx(ref.fun, rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(ours.x, ref.x, atol=1e-8)
    np.testing.assert_allclose(ours.ineq_duals, ref.ineqlin.marginals, atol=1e-8)
    np.testing.assert_allclose(ours.eq_duals, ref.eqlin.marginals, atol=1e-8)


def test_sparse_input_and_maximize():
    c, A_ub, b_ub, A_eq, b_eq, bounds = random_lp(11)
    dense = solve_lp(c, A_ub, b_ub, A_eq, b_eq, bounds)
    sparse = solve_lp(c, sp.csr_matrix(A_ub), b_ub, sp.coo_matrix(A_eq), b_eq, Bounds(0, 5))
    assert sparse.objective == pytest.approx(dense.objective, rel=1e-12)
    maxed = solve_lp(-c, A_ub, b_ub, A_eq, b_eq, bounds, sense="maximize")
    assert maxed.objective == pytest.approx(-dense.objective, rel=1e-12)
    np.testing.assert_allclose(maxed.x, dense.x, atol=1e-9)


@pytest.mark.parametrize("sense", ["minimize", "maximize"])
def test_duals_are_objective_sensitivities(sense):
    """d objective / d b by central finite differences (LP value is piecewise linear in b)."""
    c, A_ub, b_ub, A_eq, b_eq, bounds = random_lp(3)
    c = c if sense == "minimize" else -c
    base = solve_lp(c, A_ub, b_ub, A_eq, b_eq, bounds, sense=sense)
    h = 1e-6
    for i in range(len(b_ub)):
        db = np.zeros_like(b_ub)
        db[i] = h
        up = solve_lp(c, A_ub, b_ub + db, A_eq, b_eq, bounds, sense=sense).objective
        down = solve_lp(c, A_ub, b_ub - db, A_eq, b_eq, bounds, sense=sense).objective
        assert (up - down) / (2 * h) == pytest.approx(base.ineq_duals[i], abs=1e-6)
    for i in range(len(b_eq)):
        db = np.zeros_like(b_eq)
        db[i] = h
        up = solve_lp(c, A_ub, b_ub, A_eq, b_eq + db, bounds, sense=sense).objective
        down = solve_lp(c, A_ub, b_ub, A_eq, b_eq - db, bounds, sense=sense).objective
        assert (up - down) / (2 * h) == pytest.approx(base.eq_duals[i], abs=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_random_milp_matches_scipy_milp(seed):
    rng = np.random.default_rng(100 + seed)
    m, n = 6, 10
    A = rng.integers(1, 10, size=(m, n)).astype(float)
    b = A.sum(axis=1) * rng.uniform(0.3, 0.6, size=m)
    c = -rng.integers(1, 20, size=n).astype(float)
    integrality = np.array([1] * 7 + [0] * 3)
    ours = solve_lp(c, A, b, bounds=(0, 3), integrality=integrality, mip_rel_gap=0.0)
    ref = milp(
        c,
        constraints=LinearConstraint(A, -np.inf, b),
        integrality=integrality,
        bounds=Bounds(0, 3),
        options={"mip_rel_gap": 0.0},
    )
    assert ours.status == "optimal" and ref.status == 0
    assert ours.objective == pytest.approx(ref.fun, rel=1e-9)
    x = ours.x
    assert np.all(A @ x <= b + 1e-9)
    np.testing.assert_allclose(x[:7], np.round(x[:7]), atol=1e-9)
    assert ours.row_duals is None  # a MILP has no duals
    assert ours.mip_gap == pytest.approx(0.0, abs=1e-9)


def test_milp_knapsack_by_brute_force():
    rng = np.random.default_rng(7)
    values = rng.integers(1, 30, size=10).astype(float)
    weights = rng.integers(1, 15, size=10).astype(float)
    cap = 40.0
    ours = solve_lp(values, [weights], [cap], bounds=(0, 1), integrality=1, sense="maximize")
    best = max(
        values @ np.array(s)
        for s in itertools.product((0, 1), repeat=10)
        if weights @ np.array(s) <= cap
    )
    assert ours.objective == pytest.approx(best, rel=1e-12)


def test_infeasible_and_unbounded_are_statuses():
    # x1 + x2 <= -1 with x >= 0: infeasible.
    r = solve_lp([1, 1], [[1, 1]], [-1])
    assert r.status == "infeasible" and not r.success
    assert r.x is None and np.isnan(r.objective)
    # minimize -x1 - x2 with x1 - x2 <= 1: unbounded.
    r = solve_lp([-1, -1], [[1, -1]], [1])
    assert r.status == "unbounded"
    assert r.objective == -np.inf
    r = solve_lp([1, 1], [[1, -1]], [1], sense="maximize")
    assert r.status == "unbounded" and r.objective == np.inf
    # Same for integer programs.
    r = solve_lp([1, 1], A_eq=[[2, 2]], b_eq=[3], integrality=1, bounds=(0, 10))
    assert r.status == "infeasible"
    r = solve_lp([-1, 0], A_eq=[[1, -1]], b_eq=[0], integrality=1, bounds=(None, None))
    assert r.status == "unbounded"


def test_infeasible_or_unbounded_is_resolved():
    # Infeasible (x1 >= 1 and x1 <= 0) and with an unbounded ray (x2 free, cost -1): presolve
    # may only say "infeasible or unbounded"; the result must say which.
    r = solve_lp([0, -1], [[-1, 0], [1, 0]], [-1, 0], bounds=(None, None))
    assert r.status == "infeasible"


def test_time_limit_is_a_status():
    """A market-split instance (Cornuejols & Dawande, 1999): hard for branch-and-cut."""
    rng = np.random.default_rng(0)
    m, n = 5, 40
    A = rng.integers(0, 100, size=(m, n)).astype(float)
    b = np.floor(A.sum(axis=1) / 2)
    r = solve_lp(np.zeros(n), A_eq=A, b_eq=b, bounds=(0, 1), integrality=1, time_limit=0.05)
    assert r.status == "time_limit"
    assert not r.success


def kkt_by_active_sets(Q, c, A, b):
    """Brute force: the KKT point of min 0.5x'Qx + c'x s.t. Ax <= b over all active sets."""
    n, m = len(c), len(b)
    for k in range(m + 1):
        for act in itertools.combinations(range(m), k):
            Aa = A[list(act)]
            K = np.block([[Q, Aa.T], [Aa, np.zeros((k, k))]])
            sol = np.linalg.solve(K, np.concatenate([-c, b[list(act)]]))
            x, lam = sol[:n], sol[n:]
            if np.all(A @ x <= b + 1e-10) and np.all(lam >= -1e-12):
                return x, lam, act
    raise AssertionError("no KKT point")


@pytest.mark.parametrize("seed", range(4))
def test_convex_qp_matches_kkt_solution(seed):
    rng = np.random.default_rng(seed)
    n, m = 5, 6
    M = rng.normal(size=(n, n))
    Q = M @ M.T + 0.5 * np.eye(n)
    c = rng.normal(size=n) * 3
    A = rng.normal(size=(m, n))
    b = rng.uniform(0.0, 1.0, size=m)
    x_star, lam, act = kkt_by_active_sets(Q, c, A, b)
    r = solve_qp(Q, c, A, b)
    assert r.status == "optimal"
    np.testing.assert_allclose(r.x, x_star, atol=1e-9)
    assert r.objective == pytest.approx(0.5 * x_star @ Q @ x_star + c @ x_star, rel=1e-10)
    # KKT multipliers: lambda = -d f / d b for the active rows, zero for the others.
    full = np.zeros(m)
    full[list(act)] = lam
    np.testing.assert_allclose(-r.ineq_duals, full, atol=1e-8)


def test_qp_with_equalities_and_bounds_matches_kkt():
    rng = np.random.default_rng(5)
    n = 6
    M = rng.normal(size=(n, n))
    Q = M @ M.T + np.eye(n)
    c = rng.normal(size=n)
    A_eq = rng.normal(size=(2, n))
    b_eq = rng.normal(size=2)
    K = np.block([[Q, A_eq.T], [A_eq, np.zeros((2, 2))]])
    x_star = np.linalg.solve(K, np.concatenate([-c, b_eq]))[:n]
    r = solve_qp(Q, c, A_eq=A_eq, b_eq=b_eq)
    np.testing.assert_allclose(r.x, x_star, atol=1e-9)
    # A box that cuts the unconstrained optimum: compare with the LP-free KKT of the QP with
    # the bound written as rows.
    hi = x_star.max() - 0.1
    r_box = solve_qp(Q, c, bounds=(None, hi))
    x_rows, _, _ = kkt_by_active_sets(Q, c, np.eye(n), np.full(n, hi))
    np.testing.assert_allclose(r_box.x, x_rows, atol=1e-9)


def test_psd_singular_qp_solves():
    """A linear SVM in primal form: Q is singular (zero on the slacks)."""
    rng = np.random.default_rng(0)
    n, d = 60, 3
    X = rng.normal(size=(n, d))
    y = np.sign(X @ np.array([1.0, -2.0, 0.5]) + 0.3 * rng.normal(size=n))
    N = d + n
    Q = sp.block_diag([sp.eye(d), sp.csr_matrix((n, n))])
    c = np.r_[np.zeros(d), np.ones(n)]
    A = -sp.hstack([sp.csr_matrix(y[:, None] * X), sp.eye(n)])
    r = solve_qp(Q, c, A, -np.ones(n), bounds=[(None, None)] * d + [(0, None)] * n)
    assert r.status == "optimal"
    assert len(r.x) == N
    w = r.x[:d]
    hinge = np.maximum(0, 1 - y * (X @ w)).sum()
    assert r.objective == pytest.approx(0.5 * w @ w + hinge, rel=1e-9)
    # Strong duality: the SVM dual max 1'a - 0.5 a'Ka, 0 <= a <= 1, solved by L-BFGS-B.
    Z = y[:, None] * X
    K = Z @ Z.T

    def neg_dual(a):
        return 0.5 * a @ K @ a - a.sum(), K @ a - 1.0

    dual = minimize(
        neg_dual,
        np.zeros(n),
        jac=True,
        method="L-BFGS-B",
        bounds=[(0, 1)] * n,
        options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10000},
    )
    assert r.objective == pytest.approx(-dual.fun, rel=1e-8)
    np.testing.assert_allclose(w, Z.T @ dual.x, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"c": [1, 2], "A_ub": [[1, 2, 3]], "b_ub": [1]}, "A_ub must have 2 columns"),
        ({"c": [1, 2], "A_ub": [[1, 2]], "b_ub": [1, 2]}, "b_ub must have length 1"),
        ({"c": [1, np.nan]}, "c contains NaN"),
        ({"c": [1, 2], "A_ub": [[1, np.inf]], "b_ub": [1]}, "A_ub contains inf"),
        ({"c": [1, 2], "A_eq": [[1, 1]], "b_eq": [np.nan]}, "b_eq contains NaN"),
        ({"c": [1, 2], "bounds": [(0, 1), (3, 2)]}, "low > high for variable 1"),
        ({"c": [1, 2], "bounds": [(0, 1)] * 3}, "one \\(low, high\\) pair per variable"),
        ({"c": [1, 2], "A_ub": [[1, 1]]}, "A_ub and b_ub must be given together"),
        ({"c": [1, 2], "integrality": [1, 5]}, "integrality must hold 2 codes"),
        ({"c": [1, 2], "sense": "up"}, "sense must be one of 'minimize', 'maximize'"),
        ({"c": [1, 2], "options": {"no_such_option": 1}}, "options: HiGHS rejected"),
        ({"c": [1, 2], "time_limit": -1}, "time_limit must be a positive"),
        ({"c": []}, "c must have at least one entry"),
    ],
)
def test_lp_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        solve_lp(**kwargs)


def test_qp_bad_input():
    with pytest.raises(ValueError, match="Q is not positive semidefinite"):
        solve_qp(np.diag([1.0, -1.0]), [0, 0])
    with pytest.raises(ValueError, match="Q must be symmetric"):
        solve_qp(np.array([[1.0, 1.0], [0.0, 1.0]]), [0, 0])
    with pytest.raises(ValueError, match="Q must have 2 columns"):
        solve_qp(np.eye(3), [0, 0])
    with pytest.raises(ValueError, match="Q contains NaN"):
        solve_qp(np.array([[1.0, np.nan], [np.nan, 1.0]]), [0, 0])
