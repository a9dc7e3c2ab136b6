"""The control and prices applications (images: tests/test_apps_images.py): quick runs end to
end through the CLI, and their parts against independent oracles (numpy linear solves and brute
force for the MDPs, statsmodels' own AR forecasts, numpy's RMSE, per-member plain modules for the
population)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from optimkit.cli import app

gym = pytest.importorskip("gymnasium")
pytest.importorskip("statsmodels")


def _run_app(name: str, out: Path) -> pd.DataFrame:
    result = CliRunner().invoke(app, ["app", name, "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for f in ("report.html", "table.csv", "results.json"):
        assert (out / f).is_file()
    assert list((out / "figures").glob("*.png"))
    table = pd.read_csv(out / "table.csv")
    assert set(table["kind"]) == {"optimkit", "baseline"}
    payload = json.loads((out / "results.json").read_text())
    assert payload["notes"] and len(payload["table"]) == len(table)
    return table


# ------------------------------------------------------------------------------- control
def test_control_quick_end_to_end(tmp_path: Path) -> None:
    table = _run_app("control", tmp_path / "control")
    assert len(table) == 10
    assert set(table["env"]) == {"FrozenLake-v1", "Taxi-v3", "CartPole-v1"}
    fl = table[(table.env == "FrozenLake-v1") & (table.kind == "optimkit")]
    assert len(fl) == 3
    # the exact success probability of the optimal policy within 100 steps (~0.74)
    np.testing.assert_allclose(fl["frozenlake_exact"], fl["frozenlake_exact"].iloc[0])
    assert 0.7 < fl["frozenlake_exact"].iloc[0] < 0.8
    taxi = table[(table.env == "Taxi-v3") & (table.kind == "optimkit")]
    assert (taxi["taxi_return"] > 0).all()
    rand = table[(table.env == "Taxi-v3") & (table.kind == "baseline")]["taxi_return"]
    assert float(rand.iloc[0]) < 0
    cp = table[table.env == "CartPole-v1"]
    assert list(cp["kind"]) == ["optimkit", "baseline"]
    assert (cp["train_s"] > 0).all()


def _frozenlake(desc: list[str] | None = None):
    from optimkit.apps.control import mdp_from_env

    env = gym.make("FrozenLake-v1", desc=desc) if desc else gym.make("FrozenLake-v1")
    return mdp_from_env(env)


def _numpy_policy_values(P: np.ndarray, R: np.ndarray, policy: np.ndarray, gamma: float):
    S = R.shape[0]
    idx = np.arange(S)
    return np.linalg.solve(np.eye(S) - gamma * P[policy, idx], R[idx, policy])


def test_frozenlake_solvers_agree_with_numpy_policy_evaluation() -> None:
    from optimkit.solve import mdp_lp, policy_iteration, value_iteration

    P, R, start = _frozenlake()
    assert start[0] == 1.0
    np.testing.assert_allclose(P.sum(-1), 1.0)
    g = 0.99
    sols = [value_iteration(P, R, g, tol=1e-12), policy_iteration(P, R, g), mdp_lp(P, R, g)]
    Pn, Rn = P.numpy(), R.numpy()
    for sol in sols:
        np.testing.assert_allclose(sol.values, sols[1].values, atol=1e-8)
        # each solver's greedy policy, evaluated exactly by numpy, has the optimal values
        v = _numpy_policy_values(Pn, Rn, sol.policy.numpy(), g)
        np.testing.assert_allclose(v, sols[1].values, atol=1e-8)
        # and satisfies Bellman optimality: no action improves on it
        q = Rn + g * np.einsum("ast,t->sa", Pn, v)
        np.testing.assert_allclose(q.max(1), v, atol=1e-8)


def test_small_frozenlake_optimum_equals_brute_force_over_all_policies() -> None:
    from optimkit.solve import mdp_lp, policy_iteration, value_iteration

    desc = ["SFF", "FHF", "FFG"]
    P, R, _ = _frozenlake(desc)
    g = 0.95
    Pn, Rn = P.numpy(), R.numpy()
    S, A = Rn.shape
    flat = "".join(desc)
    free = [s for s in range(9) if flat[s] in "SF"]  # elsewhere every action is the same
    best = np.full(S, -np.inf)
    for choice in itertools.product(range(A), repeat=len(free)):
        policy = np.zeros(S, dtype=np.int64)
        policy[free] = choice
        best = np.maximum(best, _numpy_policy_values(Pn, Rn, policy, g))
    for sol in (value_iteration(P, R, g, tol=1e-12), policy_iteration(P, R, g), mdp_lp(P, R, g)):
        np.testing.assert_allclose(sol.values, best, atol=1e-8)


def test_policy_value_within_horizon_equals_iterated_distribution() -> None:
    from optimkit.apps.control import policy_value_within
    from optimkit.solve import policy_iteration

    P, R, start = _frozenlake()
    pol = policy_iteration(P, R, 0.99).policy
    v = float(policy_value_within(P, R, pol, 100) @ torch.from_numpy(start))
    # the same number by pushing the state distribution forward 100 steps
    Pn, Rn = P.numpy(), R.numpy()
    idx = np.arange(len(start))
    P_pi, R_pi = Pn[pol.numpy(), idx], Rn[idx, pol.numpy()]
    d, total = start.copy(), 0.0
    for _ in range(100):
        total += d @ R_pi
        d = d @ P_pi
    assert v == pytest.approx(total, abs=1e-12)


def test_taxi_table_has_terminal_transitions_absorbed() -> None:
    from optimkit.apps.control import make_env, mdp_from_env

    P, R, start = mdp_from_env(make_env("Taxi-v3"))
    assert P.shape == (6, 501, 501) and R.shape == (501, 6)
    assert start.sum() == pytest.approx(1.0)
    assert float(R.max()) == 20.0 and float(R.min()) == -10.0
    assert (P[:, 500, 500] == 1).all()


def test_population_policy_loss_and_gradients_equal_per_member_modules() -> None:
    from optimkit.apps.control import init_policy, pg_loss, stacked_logits, stacked_policy

    torch.manual_seed(0)
    k, T, E, H = 3, 7, 4, 8
    seeds = [5, 6, 7]
    params = stacked_policy(seeds, H)
    obs = torch.randn(T, k, E, 4)
    actions = torch.randint(0, 2, (T, k, E))
    alive = torch.rand(T, k, E).sort(0, descending=True).values > 0.3
    alive[0] = True
    ent = torch.tensor([0.0, 0.01, 0.1])
    logits = stacked_logits(params, obs.permute(1, 0, 2, 3).reshape(k, T * E, 4))
    logits = logits.reshape(k, T, E, 2).permute(1, 0, 2, 3)
    loss = pg_loss(logits, actions, alive, ent)
    loss.sum().backward()
    for i, s in enumerate(seeds):
        module = init_policy(s, H)
        li = pg_loss(module(obs[:, i : i + 1]), actions[:, i : i + 1], alive[:, i : i + 1],
                     ent[i : i + 1])  # fmt: skip
        li.sum().backward()
        torch.testing.assert_close(loss[i], li[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(params[0].grad[i], module[0].weight.grad.T)
        torch.testing.assert_close(params[3].grad[i], module[2].bias.grad)


# -------------------------------------------------------------------------------- prices
def test_prices_quick_end_to_end(tmp_path: Path) -> None:
    from optimkit.apps.prices import QUICK, load_returns, walk_forward_blocks

    table = _run_app("prices", tmp_path / "prices")
    assert len(table) == 7
    assert {"zero return", "last return", "statsmodels AR(p), p by AIC"} <= set(table["method"])
    assert (table["kind"] == "optimkit").sum() == 3
    # the zero forecast's RMSE is numpy's root mean square of the test returns
    r, _ = load_returns()
    r = r[-QUICK.history :]
    days = np.concatenate([np.arange(s, e) for s, e in walk_forward_blocks(len(r), QUICK)])
    zero = table[table.method == "zero return"].iloc[0]
    assert zero["rmse"] == pytest.approx(np.sqrt(np.mean(r[days] ** 2)), rel=1e-12)
    assert zero["rmse_vs_zero"] == pytest.approx(1.0)
    last = table[table.method == "last return"].iloc[0]
    assert last["rmse"] == pytest.approx(np.sqrt(np.mean((r[days] - r[days - 1]) ** 2)))


def test_ar_baseline_equals_statsmodels_forecasts() -> None:
    from statsmodels.tsa.ar_model import AutoReg, ar_select_order

    from optimkit.apps.prices import ar_forecast, ar_order, load_returns

    r, _ = load_returns()
    r = r[:3000]
    s, e = 2500, 2600
    p = ar_order(r[:s])
    assert p == max(ar_select_order(r[:s], maxlag=10, ic="aic", trend="c").ar_lags)
    pred, params = ar_forecast(r, s, e, p)
    res = AutoReg(r[:s], lags=p, trend="c").fit()
    np.testing.assert_allclose(params, res.params)
    assert pred[0] == pytest.approx(float(res.forecast(1)[0]), rel=1e-12)
    # one-step predictions of every day of the block from the actual past, by statsmodels
    full = AutoReg(r[:e], lags=p, trend="c").predict(params=res.params, start=s, end=e - 1)
    np.testing.assert_allclose(pred, full, rtol=1e-12, atol=1e-12)


def test_price_metrics_against_numpy() -> None:
    from optimkit.apps.prices import directional_accuracy, lag_matrix, rmse, strategy_log_return

    rng = np.random.default_rng(0)
    y, pred = rng.normal(size=50), rng.normal(size=50)
    assert rmse(np.zeros(50), y) == pytest.approx(np.sqrt(np.mean(y**2)))
    assert directional_accuracy(pred, y) == pytest.approx(np.mean((pred > 0) == (y > 0)))
    assert np.isnan(directional_accuracy(np.zeros(50), y))
    assert strategy_log_return(np.ones(50), y)[-1] == pytest.approx(y.sum() / 100)
    X = lag_matrix(np.arange(10.0), 3)
    np.testing.assert_array_equal(X[0], [0, 1, 2])  # row 0 predicts day 3
    assert X.shape == (7, 3)
