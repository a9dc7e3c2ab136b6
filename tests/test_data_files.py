"""User CSV/Parquet files: one-hot round trips, imputation, task inference, and every bad file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from optimkit.data import DataError, load_dataset
from optimkit.data.tabular import infer_task

F64 = {"dtype": torch.float64}


def _frame(n=80, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "size": rng.normal(10, 3, n),
            "color": rng.choice(["red", "green", "blue"], n),
            "count": rng.integers(0, 9, n),
            "shape": rng.choice(["round", "square"], n),
            "flag": rng.random(n) < 0.3,
            "label": rng.choice(["cat", "dog", "eel"], n),
            "price": rng.normal(100, 20, n),
        }
    )


def _write(frame: pd.DataFrame, path) -> str:
    if str(path).endswith((".parquet", ".pq")):
        frame.to_parquet(path, index=False)
    elif str(path).endswith(".tsv"):
        frame.to_csv(path, index=False, sep="\t")
    else:
        frame.to_csv(path, index=False)
    return str(path)


def _oracle_features(frame: pd.DataFrame, train: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Standardize numeric columns with train stats; one-hot with pandas.get_dummies, with the
    categories seen in training."""
    numeric = ["size", "count", "flag"]
    tr = frame.iloc[train][numeric].astype(float)
    num = (frame.iloc[rows][numeric].astype(float) - tr.mean()) / tr.std(ddof=0)
    dummies = pd.get_dummies(frame[["color", "shape"]], prefix_sep="=").astype(float)
    seen = pd.get_dummies(frame.iloc[train][["color", "shape"]], prefix_sep="=").columns
    return np.hstack([num.to_numpy(), dummies.iloc[rows][list(seen)].to_numpy()])


@pytest.mark.parametrize("name", ["data.csv", "data.parquet", "data.tsv", "data.csv.gz"])
def test_round_trip_with_one_hot(tmp_path, name):
    frame = _frame().drop(columns="price")
    path = _write(frame, tmp_path / name)
    ds = load_dataset(path, target="label", seed=4, **F64)
    assert ds.task == "classification" and ds.split == "stratified"
    assert ds.classes == ["cat", "dog", "eel"]
    assert ds.feature_names == [
        "size", "count", "flag", "color=blue", "color=green", "color=red",
        "shape=round", "shape=square",
    ]  # fmt: skip
    for Xp, yp, rows in zip(
        (ds.X_train, ds.X_val, ds.X_test), (ds.y_train, ds.y_val, ds.y_test), ds.indices,
        strict=True,
    ):  # fmt: skip
        np.testing.assert_allclose(
            Xp.numpy(), _oracle_features(frame, ds.indices.train, rows), rtol=0, atol=1e-12
        )
        labels = np.array(ds.classes)[yp.numpy()]
        np.testing.assert_array_equal(labels, frame["label"].to_numpy()[rows])


def test_regression_task_inferred_and_predict_time_transform(tmp_path):
    frame = _frame()
    path = _write(frame.drop(columns="label"), tmp_path / "d.parquet")
    ds = load_dataset(path, target="price", **F64)
    assert ds.task == "regression" and ds.split == "random" and ds.n_classes is None
    np.testing.assert_allclose(ds.y_test.numpy(), frame["price"].to_numpy()[ds.indices.test])
    new_rows = frame.drop(columns=["label", "price"]).iloc[ds.indices.test]
    np.testing.assert_allclose(ds.transform(new_rows).numpy(), ds.X_test.numpy())
    # a category never seen in training encodes as all zeros
    unseen = new_rows.iloc[:1].assign(color="purple")
    out = ds.transform(unseen).numpy()[0]
    color_cols = [i for i, n in enumerate(ds.feature_names) if n.startswith("color=")]
    assert np.all(out[color_cols] == 0)


def test_infer_task_rules():
    assert infer_task(pd.Series([0, 1, 2, 1])) == "classification"
    assert infer_task(pd.Series([0.0, 1.0, 1.0])) == "classification"
    assert infer_task(pd.Series([True, False])) == "classification"
    assert infer_task(pd.Series(["a", "b"])) == "classification"
    assert infer_task(pd.Series([0.5, 1.2, 3.0])) == "regression"
    assert infer_task(pd.Series(np.arange(100))) == "regression"  # > 20 distinct integers


def test_task_override(tmp_path):
    frame = pd.DataFrame({"x": np.arange(30.0), "y": np.arange(30) % 3})
    path = _write(frame, tmp_path / "t.csv")
    assert load_dataset(tmp_path / "t.csv", target="y").task == "classification"  # a Path
    ds = load_dataset(path, target="y", task="regression", **F64)
    assert ds.task == "regression" and ds.y_train.dtype == torch.float64
    with pytest.raises(DataError, match="task must be one of classification, regression for a"):
        load_dataset(path, target="y", task="ratings")


def test_drop_columns(tmp_path):
    path = _write(_frame(), tmp_path / "d.csv")
    ds = load_dataset(path, target="price", drop=["label", "color"])
    assert not any(n.startswith(("label", "color")) for n in ds.feature_names)
    with pytest.raises(DataError, match=r"drop names columns \['nope'\]"):
        load_dataset(path, target="price", drop=["nope"])


@pytest.mark.parametrize("strategy", ["mean", "median", "most_frequent"])
def test_imputation_uses_training_rows(tmp_path, strategy):
    frame = _frame(n=60).drop(columns=["label"])
    frame["count"] = frame["count"].astype(float)
    frame.loc[[2, 9, 31, 44, 50], "size"] = np.nan
    frame.loc[[5, 40], "color"] = None
    path = _write(frame, tmp_path / "m.csv")
    ds = load_dataset(path, target="price", impute=strategy, standardize=False, **F64)
    tr = ds.indices.train
    size = frame["size"].to_numpy()[tr]
    size = size[~np.isnan(size)]
    if strategy == "mean":
        fill = size.mean()
    elif strategy == "median":
        fill = np.median(size)
    else:
        values, counts = np.unique(size, return_counts=True)
        fill = values[np.argmax(counts)]
    color_mode = frame["color"].iloc[tr].value_counts().sort_index().idxmax()
    X = {"train": ds.X_train, "val": ds.X_val, "test": ds.X_test}
    for part, rows in zip(X, ds.indices, strict=True):
        for j, r in enumerate(rows):
            if r in (2, 9, 31, 44, 50):
                assert X[part][j, 0].item() == pytest.approx(fill, abs=1e-12)
            if r in (5, 40):
                assert X[part][j, ds.feature_names.index(f"color={color_mode}")].item() == 1.0


def test_missing_values_error_counts_per_column(tmp_path):
    frame = _frame(n=30)
    frame.loc[[3, 7], "size"] = np.nan
    frame.loc[[5], "color"] = None
    path = _write(frame, tmp_path / "m.csv")
    with pytest.raises(DataError) as err:
        load_dataset(path, target="label")
    msg = str(err.value)
    assert "m.csv' has missing values in 2 column(s)" in msg
    assert "size: 2 (first at line 5)" in msg and "color: 1 (first at line 7)" in msg
    assert "impute='mean' | 'median' | 'most_frequent'" in msg
    with pytest.raises(DataError, match="impute must be one of mean, median, most_frequent"):
        load_dataset(path, target="label", impute="zero")


def _bad(tmp_path, name, text, **kwargs):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(DataError) as err:
        load_dataset(str(path), **{"target": "y", **kwargs})
    assert name in str(err.value)
    return str(err.value)


def test_bad_files(tmp_path):
    with pytest.raises(DataError, match=r"data file '.*absent\.csv' does not exist"):
        load_dataset(str(tmp_path / "absent.csv"), target="y")
    assert "is empty" in _bad(tmp_path, "empty.csv", "")
    assert "is empty (no header, no rows)" in _bad(tmp_path, "blank.csv", "\n\n")
    assert "has a header but no data rows" in _bad(tmp_path, "header.csv", "a,b,y\n")
    msg = _bad(tmp_path, "ragged.csv", "a,b,y\n1,2,3\n4,5,6,7\n")
    assert "could not parse" in msg and "line 3" in msg
    assert "as Parquet" in _bad(tmp_path, "junk.parquet", b"this is not parquet")
    assert "unknown extension" in _bad(tmp_path, "data.xlsx", "a,y\n1,2\n")
    msg = _bad(tmp_path, "notarget.csv", "a,b\n1,2\n3,4\n", target="y")
    assert "target column 'y' is not in" in msg and "columns are: a, b" in msg
    assert "needs target=COLUMN" in _bad(tmp_path, "notgiven.csv", "a,y\n1,2\n", target=None)
    msg = _bad(tmp_path, "text.csv", "a,y\n1,2.5\n2,high\n3,4\n", task="regression")
    assert "target column 'y'" in msg and "is not numeric (line 3 has 'high')" in msg
    msg = _bad(tmp_path, "single.csv", "a,y\n1,x\n2,x\n3,x\n")
    assert "has a single class ('x')" in msg
    msg = _bad(tmp_path, "tiny.csv", "a,y\n1,2.5\n2,3.5\n")
    assert "has 2 row(s), fewer than the split needs" in msg and "at least 3 rows" in msg
    assert "2 missing value(s) (first at line 3)" in _bad(
        tmp_path, "noy.csv", "a,y\n1,a\n2,\n3,b\n4,\n"
    )
    msg = _bad(tmp_path, "typo.csv", "a,y\n1,2.5\n2,3.5\nx,4\n4,5\n")
    assert "column 'a'" in msg and "line 4 has 'x'" in msg
    msg = _bad(tmp_path, "onlytarget.csv", "y\n1\n2\n")
    assert "has no feature columns" in msg


def test_fewer_rows_than_split_with_custom_fractions(tmp_path):
    path = _write(pd.DataFrame({"a": range(4), "y": [0.1, 0.2, 0.3, 0.4]}), tmp_path / "f.csv")
    assert load_dataset(path, target="y", val_fraction=0.25, test_fraction=0.25).n_train == 2
    with pytest.raises(DataError, match=r"f\.csv' has 4 row"):
        load_dataset(path, target="y", val_fraction=0.4, test_fraction=0.4)


def test_unsupported_column_type(tmp_path):
    frame = pd.DataFrame(
        {"when": pd.date_range("2020-01-01", periods=10), "a": range(10), "y": range(10)}
    )
    frame.to_parquet(tmp_path / "d.parquet")
    with pytest.raises(DataError, match=r"column 'when' .* has type datetime64"):
        load_dataset(str(tmp_path / "d.parquet"), target="y", task="regression")
    ds = load_dataset(str(tmp_path / "d.parquet"), target="y", task="regression", drop=["when"])
    assert ds.feature_names == ["a"]


def test_numbers_stored_as_text_are_numeric(tmp_path):
    frame = pd.DataFrame({"a": [str(v) for v in range(20)], "y": [0, 1] * 10})
    frame.to_parquet(tmp_path / "s.parquet")
    ds = load_dataset(str(tmp_path / "s.parquet"), target="y")
    assert ds.feature_names == ["a"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b,y\n1,2,3\n4,5,inf\n6,7,8\n", r"line 3: inf; \|y\| must be finite"),
        ("a,b,y\n1,2,3\n4,5,1e300\n6,7,8\n", r"line 3: 1e\+300; \|y\| must be finite"),
        ("a,a,y\n1,2,3\n4,5,6\n6,7,8\n", r"line 1: duplicate column name\(s\) \['a'\]"),
    ],
)
def test_non_finite_targets_and_duplicate_columns_are_data_errors(tmp_path, text, message):
    from optimkit.data import load_dataset
    from optimkit.data.errors import DataError

    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        load_dataset(str(path), target="y")
