"""Dynamic programming against brute force and against the MDP's LP (HiGHS)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from optimkit.solve import (
    allocate_budget,
    finite_horizon,
    knapsack,
    mdp_lp,
    policy_iteration,
    solve_lp,
    value_iteration,
)


def random_mdp(seed: int, S: int = 4, A: int = 3, batch: tuple[int, ...] = ()):
    g = torch.Generator().manual_seed(seed)
    P = torch.rand(*batch, A, S, S, generator=g, dtype=torch.float64) ** 3
    P = P / P.sum(-1, keepdim=True)
    R = torch.randn(*batch, S, A, generator=g, dtype=torch.float64)
    return P, R


def brute_force_values(P, R, gamma):
    """Max over all A^S deterministic stationary policies of V_pi, state by state."""
    A, S = P.shape[0], P.shape[1]
    Pn, Rn = P.numpy(), R.numpy()
    best = np.full(S, -np.inf)
    for pol in itertools.product(range(A), repeat=S):
        P_pi = np.stack([Pn[pol[s], s] for s in range(S)])
        R_pi = np.array([Rn[s, pol[s]] for s in range(S)])
        V = np.linalg.solve(np.eye(S) - gamma * P_pi, R_pi)
        best = np.maximum(best, V)
    return best


@pytest.mark.parametrize("seed", range(4))
def test_value_and_policy_iteration_match_brute_force_and_lp(seed):
    P, R = random_mdp(seed)
    gamma = 0.9
    brute = brute_force_values(P, R, gamma)
    vi = value_iteration(P, R, gamma, tol=1e-11)
    pi = policy_iteration(P, R, gamma)
    lp = mdp_lp(P, R, gamma)
    assert bool(vi.converged) and bool(pi.converged)
    np.testing.assert_allclose(vi.values.numpy(), brute, atol=1e-10)
    np.testing.assert_allclose(pi.values.numpy(), brute, atol=1e-12)
    np.testing.assert_allclose(lp.values.numpy(), brute, atol=1e-8)
    # The greedy policies are optimal: evaluating them gives V*.
    for sol in (vi, pi, lp):
        np.testing.assert_allclose(sol.q.amax(-1).numpy(), brute, atol=1e-8)
        q_at_policy = sol.q.gather(-1, sol.policy[:, None]).squeeze(-1)
        np.testing.assert_allclose(q_at_policy.numpy(), brute, atol=1e-8)


def test_batched_mdps_with_population_gamma():
    """Several MDPs with different discounts in one call == one call per MDP."""
    P, R = random_mdp(10, S=5, A=2, batch=(3,))
    gamma = torch.tensor([0.5, 0.9, 0.99], dtype=torch.float64)
    vi = value_iteration(P, R, gamma, tol=1e-10)
    pi = policy_iteration(P, R, gamma)
    assert vi.values.shape == (3, 5) and vi.policy.shape == (3, 5) and vi.q.shape == (3, 5, 2)
    for k in range(3):
        g = float(gamma[k])
        single = value_iteration(P[k], R[k], g, tol=1e-10)
        assert torch.equal(vi.values[k], single.values)  # frozen members are untouched
        assert int(vi.iterations[k]) == int(single.iterations)
        lp = mdp_lp(P[k], R[k], g)
        scale = 1 / (1 - g)
        np.testing.assert_allclose(pi.values[k].numpy(), lp.values.numpy(), atol=1e-9 * scale)
        np.testing.assert_allclose(vi.values[k].numpy(), lp.values.numpy(), atol=1e-8 * scale)
    # A more far-sighted member needs more sweeps.
    assert vi.iterations[0] < vi.iterations[1] < vi.iterations[2]
    # One MDP, a population of discounts: broadcast along dim 0.
    shared = policy_iteration(P[0], R[0], gamma)
    assert shared.values.shape == (3, 5)
    for k in range(3):
        one = policy_iteration(P[0], R[0], float(gamma[k]))
        np.testing.assert_allclose(shared.values[k].numpy(), one.values.numpy(), rtol=1e-12)


def test_value_iteration_can_report_not_converged():
    P, R = random_mdp(1)
    sol = value_iteration(P, R, 0.99, tol=1e-12, max_iter=5)
    assert not bool(sol.converged) and int(sol.iterations) == 5


def expected_return(P, R, terminal, policy_table, start, gamma):
    """Exact expected return of a time-dependent deterministic policy from ``start``."""
    S = P.shape[1]
    dist = np.zeros(S)
    dist[start] = 1.0
    total = 0.0
    for t, pol in enumerate(policy_table):
        total += gamma**t * sum(dist[s] * R[s, pol[s]] for s in range(S))
        dist = sum(dist[s] * P[pol[s], s] for s in range(S))
    return total + gamma ** len(policy_table) * dist @ terminal


@pytest.mark.parametrize("gamma", [1.0, 0.8])
def test_finite_horizon_matches_brute_force(gamma):
    P, R = random_mdp(3, S=2, A=2)
    T = 3
    terminal = torch.tensor([1.0, -0.5], dtype=torch.float64)
    sol = finite_horizon(P, R, T, terminal=terminal, gamma=gamma)
    assert sol.values.shape == (T + 1, 2) and sol.policy.shape == (T, 2)
    Pn, Rn, tn = P.numpy(), R.numpy(), terminal.numpy()
    all_tables = list(itertools.product(itertools.product(range(2), repeat=2), repeat=T))
    for s in range(2):
        best = max(expected_return(Pn, Rn, tn, tab, s, gamma) for tab in all_tables)
        assert float(sol.values[0, s]) == pytest.approx(best, abs=1e-12)
        # The DP's own policy attains it.
        table = [tuple(sol.policy[t].tolist()) for t in range(T)]
        assert expected_return(Pn, Rn, tn, table, s, gamma) == pytest.approx(best, abs=1e-12)
    np.testing.assert_array_equal(sol.values[-1].numpy(), tn)


def test_finite_horizon_long_horizon_approaches_discounted_optimum():
    P, R = random_mdp(4)
    sol = finite_horizon(P, R, 400, gamma=0.9)
    ref = policy_iteration(P, R, 0.9)
    np.testing.assert_allclose(sol.values[0].numpy(), ref.values.numpy(), atol=1e-12)


def brute_allocation(r, budget):
    n, U = r.shape[0], r.shape[1] - 1
    best = -np.inf
    for units in itertools.product(range(U + 1), repeat=n):
        if sum(units) <= budget:
            best = max(best, sum(r[i, u] for i, u in enumerate(units)))
    return best


@pytest.mark.parametrize("seed", range(3))
def test_allocate_budget_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    r = np.c_[np.zeros(4), rng.normal(size=(4, 4)).cumsum(axis=1)]  # arbitrary, not concave
    r[1, 4] = -np.inf  # item 1 cannot take 4 units
    for budget in (0, 3, 7, 20):
        sol = allocate_budget(torch.tensor(r), budget)
        assert float(sol.value) == pytest.approx(brute_allocation(r, budget), abs=1e-12)
        units = sol.units.numpy()
        assert units.sum() <= budget
        assert float(sol.value) == pytest.approx(sum(r[i, u] for i, u in enumerate(units)))


def test_allocate_budget_concave_matches_greedy_and_batches():
    """Concave returns: the greedy marginal-gain allocation is optimal (Gross, 1956)."""
    weights = torch.tensor([[3.0, 1.0, 2.0, 0.5], [1.0, 1.0, 4.0, 2.0]], dtype=torch.float64)
    u = torch.arange(31, dtype=torch.float64)
    returns = weights[..., None] * torch.log1p(u)  # [2 instances, 4 items, 31 levels]
    budget = 25
    sol = allocate_budget(returns, budget)
    for k in range(2):
        units = [0] * 4
        for _ in range(budget):
            gains = [returns[k, i, units[i] + 1] - returns[k, i, units[i]] for i in range(4)]
            units[int(np.argmax(gains))] += 1
        greedy = sum(float(returns[k, i, units[i]]) for i in range(4))
        assert float(sol.value[k]) == pytest.approx(greedy, abs=1e-12)
        assert int(sol.units[k].sum()) == budget


@pytest.mark.parametrize("seed", range(3))
def test_knapsack_matches_brute_force_and_milp(seed):
    rng = np.random.default_rng(seed)
    n = 10
    values = rng.uniform(1, 20, size=(2, n))
    weights = rng.integers(1, 12, size=(2, n))
    cap = 30
    sol = knapsack(torch.tensor(values), torch.tensor(weights), cap)
    for k in range(2):
        best = max(
            values[k] @ np.array(s)
            for s in itertools.product((0, 1), repeat=n)
            if weights[k] @ np.array(s) <= cap
        )
        assert float(sol.value[k]) == pytest.approx(best, abs=1e-12)
        take = sol.take[k].numpy()
        assert weights[k] @ take <= cap
        assert values[k] @ take == pytest.approx(best, abs=1e-12)
        milp = solve_lp(
            values[k],
            [weights[k]],
            [cap],
            bounds=(0, 1),
            integrality=1,
            sense="maximize",
            mip_rel_gap=0.0,
        )
        assert milp.objective == pytest.approx(best, rel=1e-12)


def test_dp_bad_input():
    P, R = random_mdp(0)
    with pytest.raises(ValueError, match="P's rows must sum to 1"):
        value_iteration(P * 2, R, 0.9)
    with pytest.raises(ValueError, match="R must have shape"):
        value_iteration(P, R.T, 0.9)
    with pytest.raises(ValueError, match=r"gamma must lie in \[0, 1\)"):
        policy_iteration(P, R, 1.0)
    with pytest.raises(ValueError, match="R contains NaN"):
        value_iteration(P, R * float("nan"), 0.9)
    with pytest.raises(ValueError, match="a \\[B\\] gamma needs"):
        value_iteration(
            P[None].expand(3, -1, -1, -1), R[None].expand(3, -1, -1), torch.tensor([0.5, 0.9])
        )
    with pytest.raises(ValueError, match="horizon must be a positive int"):
        finite_horizon(P, R, 0)
    with pytest.raises(ValueError, match="budget must be a non-negative int"):
        allocate_budget(torch.zeros(2, 3), -1)
    with pytest.raises(ValueError, match="returns contains NaN"):
        allocate_budget(torch.full((2, 3), float("nan")), 2)
    with pytest.raises(ValueError, match="weights must be non-negative integers"):
        knapsack(torch.ones(3), torch.tensor([1.0, 1.5, 2.0]), 3)
    with pytest.raises(ValueError, match="values and weights must have the same shape"):
        knapsack(torch.ones(3), torch.ones(4, dtype=torch.long), 3)
