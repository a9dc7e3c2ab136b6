"""Splits (sizes, stratification, determinism) and preprocessing fitted on train only, against
scikit-learn's StandardScaler, PCA, SelectKBest and SimpleImputer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sklearn.datasets
import torch
from sklearn.decomposition import PCA
from sklearn.feature_selection import SelectKBest, f_classif, f_regression
from sklearn.preprocessing import StandardScaler

from optimkit.data import DataError, load_dataset, split_rows
from optimkit.data.split import split_sizes, stratified_split

F64 = {"dtype": torch.float64}


def _labels(seed=0):
    rng = np.random.default_rng(seed)
    return rng.choice(np.array(["a", "b", "c", "d"]), size=503, p=[0.55, 0.25, 0.15, 0.05])


@pytest.mark.parametrize("val_fraction,test_fraction", [(0.15, 0.15), (0.2, 0.1), (0.0, 0.3)])
def test_sizes_and_disjoint_cover(val_fraction, test_fraction):
    y = _labels()
    n = len(y)
    for kind in ("stratified", "random", "time"):
        parts = split_rows(y, kind, val_fraction, test_fraction, seed=1)
        assert len(parts.test) == math.ceil(test_fraction * n)
        assert len(parts.val) == math.ceil(val_fraction * n)
        allrows = np.concatenate(parts)
        assert np.array_equal(np.sort(allrows), np.arange(n))
        for p in parts:
            assert np.all(np.diff(p) > 0)  # sorted, no repeats


def test_split_sizes_rounding_is_exact_for_round_fractions():
    assert split_sizes(100, 0.15, 0.15) == (70, 15, 15)
    assert split_sizes(1797, 0.15, 0.15) == (1257, 270, 270)


def test_stratified_keeps_class_proportions():
    y = _labels()
    n = len(y)
    parts = split_rows(y, "stratified", 0.15, 0.15, seed=0)
    for c in np.unique(y):
        share = np.mean(y == c)
        assert abs(np.sum(y[parts.test] == c) - share * len(parts.test)) < 1
        assert abs(np.sum(y[parts.val] == c) - share * len(parts.val)) < 2
        assert abs(np.sum(y[parts.train] == c) - share * len(parts.train)) < 3
    assert sum(len(p) for p in parts) == n


def test_stratified_with_tiny_classes_never_overdraws():
    y = np.array([0] * 50 + [1] + [2] * 2)
    for seed in range(20):
        parts = stratified_split(y, 8, 8, seed)
        assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(len(y)))
        assert (len(parts.val), len(parts.test)) == (8, 8)


def test_splits_are_deterministic_and_seed_dependent():
    y = _labels()
    for kind in ("stratified", "random"):
        a, b = split_rows(y, kind, seed=3), split_rows(y, kind, seed=3)
        c = split_rows(y, kind, seed=4)
        assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
        assert not np.array_equal(a.test, c.test)


def test_time_split_keeps_order():
    parts = split_rows(np.zeros(100), "time", 0.1, 0.2)
    assert np.array_equal(parts.train, np.arange(70))
    assert np.array_equal(parts.val, np.arange(70, 80))
    assert np.array_equal(parts.test, np.arange(80, 100))


def test_bad_fractions():
    with pytest.raises(DataError, match=r"val_fraction must be a number in \[0, 1\)"):
        split_rows(np.zeros(10), "random", 1.2, 0.1)
    with pytest.raises(DataError, match="val_fraction \\+ test_fraction must be < 1"):
        split_rows(np.zeros(10), "random", 0.5, 0.5)
    with pytest.raises(DataError, match="need at least 100 rows"):
        split_sizes(2, 0.49, 0.5)
    with pytest.raises(DataError, match="split must be one of stratified, random, time"):
        split_rows(np.zeros(10), "kfold")


def test_digits_standardized_with_train_statistics_only():
    ds = load_dataset("digits", seed=2, **F64)
    X, y = sklearn.datasets.load_digits(return_X_y=True)
    assert (ds.n_train, ds.n_val, ds.n_test, ds.n_features) == (1257, 270, 270, 64)
    scaler = StandardScaler().fit(X[ds.indices.train])
    for part, rows in zip(("train", "val", "test"), ds.indices, strict=True):
        Xp, yp = ds.parts()[part]
        np.testing.assert_allclose(Xp.numpy(), scaler.transform(X[rows]), rtol=0, atol=1e-12)
        assert torch.equal(yp, torch.as_tensor(y[rows]))
    # train is exactly centred, the other parts are not (they were not used for the fit)
    assert ds.X_train.mean(0).abs().max() < 1e-12
    assert ds.X_test.mean(0).abs().max() > 1e-3
    assert ds.classes == [str(i) for i in range(10)]


def test_float32_default_and_no_standardization():
    ds = load_dataset("iris", standardize=False)
    X, _ = sklearn.datasets.load_iris(return_X_y=True)
    assert ds.X_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    np.testing.assert_array_equal(ds.X_test.numpy(), X[ds.indices.test].astype(np.float32))


@pytest.mark.parametrize("pca", [5, 0.9])
def test_pca_equals_sklearn_fitted_on_train(pca):
    ds = load_dataset("breast_cancer", pca=pca, seed=1, **F64)
    X, _ = sklearn.datasets.load_breast_cancer(return_X_y=True)
    scaler = StandardScaler().fit(X[ds.indices.train])
    ref = PCA(n_components=pca, svd_solver="full").fit(scaler.transform(X[ds.indices.train]))
    assert ds.n_features == ref.n_components_
    if isinstance(pca, float):
        assert ref.explained_variance_ratio_.sum() >= pca
        assert ref.explained_variance_ratio_[:-1].sum() < pca
    for Xp, rows in ((ds.X_train, ds.indices.train), (ds.X_test, ds.indices.test)):
        np.testing.assert_allclose(
            Xp.numpy(), ref.transform(scaler.transform(X[rows])), rtol=0, atol=1e-9
        )
    assert ds.feature_names == [f"pc{i}" for i in range(ref.n_components_)]


@pytest.mark.parametrize("name,score", [("wine", f_classif), ("diabetes", f_regression)])
def test_select_k_best_equals_sklearn_fitted_on_train(name, score):
    ds = load_dataset(name, select_k=4, seed=0, **F64)
    bunch = getattr(sklearn.datasets, f"load_{name}")()
    X, y = bunch.data, bunch.target
    tr = ds.indices.train
    scaler = StandardScaler().fit(X[tr])
    ref = SelectKBest(score, k=4).fit(scaler.transform(X[tr]), y[tr])
    np.testing.assert_allclose(
        ds.X_val.numpy(), ref.transform(scaler.transform(X[ds.indices.val])), rtol=0, atol=1e-12
    )
    assert ds.feature_names == [bunch.feature_names[i] for i in ref.get_support(indices=True)]


def test_select_then_pca_and_predict_time_transform():
    ds = load_dataset("wine", select_k=6, pca=3, **F64)
    X, _ = sklearn.datasets.load_wine(return_X_y=True)
    assert ds.n_features == 3
    np.testing.assert_allclose(ds.transform(X[ds.indices.test]).numpy(), ds.X_test.numpy())


def test_regression_target_standardization():
    ds = load_dataset("diabetes", standardize_target=True, **F64)
    _, y = sklearn.datasets.load_diabetes(return_X_y=True)
    tr = ds.indices.train
    assert ds.target_mean == pytest.approx(y[tr].mean(), abs=1e-12)
    assert ds.target_scale == pytest.approx(y[tr].std(), abs=1e-12)
    np.testing.assert_allclose(ds.decode_target(ds.y_test).numpy(), y[ds.indices.test], atol=1e-9)
    with pytest.raises(DataError, match="standardize_target applies to regression"):
        load_dataset("iris", standardize_target=True)


def test_bad_preprocessing_and_device_options():
    with pytest.raises(DataError, match="select_k=99 exceeds the 4 features"):
        load_dataset("iris", select_k=99)
    with pytest.raises(DataError, match="select_k must be an int >= 1"):
        load_dataset("iris", select_k=0)
    with pytest.raises(DataError, match=r"pca as a fraction of variance must be in \(0, 1\)"):
        load_dataset("iris", pca=1.5)
    with pytest.raises(DataError, match="pca=10 exceeds"):
        load_dataset("iris", pca=10)
    with pytest.raises(DataError, match="device must be 'cpu', 'cuda' or 'cuda:N'"):
        load_dataset("iris", device="gpu0")
    with pytest.raises(DataError, match="dtype must be a floating torch dtype"):
        load_dataset("iris", dtype=torch.int32)
    with pytest.raises(DataError, match="seed must be a non-negative int"):
        load_dataset("iris", seed=-1)
    with pytest.raises(DataError, match="split='stratified' needs a classification task"):
        load_dataset("diabetes", split="stratified")
    with pytest.raises(DataError, match="is a classification task; got task='regression'"):
        load_dataset("iris", task="regression")
    with pytest.raises(DataError, match="target and drop apply to data files"):
        load_dataset("iris", target="species")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when CUDA is absent")
def test_cuda_requested_without_cuda():
    with pytest.raises(DataError, match="CUDA is not available"):
        load_dataset("iris", device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tensors_on_cuda():
    ds = load_dataset("iris", device="cuda")
    assert all(t.is_cuda for pair in ds.parts().values() for t in pair)
    cpu = load_dataset("iris")
    assert torch.equal(ds.X_train.cpu(), cpu.X_train)
    assert ds.to("cpu").X_train.device.type == "cpu"
