"""`load_dataset`: a built-in name or a CSV/Parquet path -> a split, preprocessed `Dataset`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from optimkit.data.dataset import Dataset
from optimkit.data.errors import DataError
from optimkit.data.preprocess import Preprocessor
from optimkit.data.raw import TASKS, RawData
from optimkit.data.registry import find_dataset, get_dataset_info, load_raw
from optimkit.data.split import (
    SPLIT_KINDS,
    SplitIndices,
    split_rows,
    split_sizes,
    stratified_split,
)
from optimkit.data.tabular import check_missing, read_table, table_format, table_to_raw


def check_device(device: str | torch.device) -> torch.device:
    """torch.device(device), with a DataError for a bad name or an absent CUDA."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise DataError(f"device must be 'cpu', 'cuda' or 'cuda:N'; got {device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DataError(f"device={str(device)!r} but CUDA is not available here; use device='cpu'")
    return dev


def _is_file_like(text: str) -> bool:
    return table_format(text) is not None or Path(text).exists()


def resolve_raw(
    source: str | Path,
    target: str | None = None,
    task: str | None = None,
    drop: Sequence[str] = (),
) -> RawData:
    """The unsplit RawData of a built-in dataset name or of a CSV/Parquet file path."""
    text = str(source)
    info = None if isinstance(source, Path) else find_dataset(text)
    if info is not None and not Path(text).is_file():
        if target is not None or drop:
            raise DataError(
                f"target and drop apply to data files; the built-in dataset {info.name!r} has a "
                "fixed target and features"
            )
        if task is not None and task != info.task:
            raise DataError(f"dataset {info.name!r} is a {info.task} task; got task={task!r}")
        return load_raw(info.name)
    if isinstance(source, Path) or _is_file_like(text):
        return table_to_raw(read_table(text), text, target, task, drop)
    get_dataset_info(text)  # raises the "unknown dataset, valid names: ..." error
    raise AssertionError("unreachable")


def _split(
    raw: RawData, kind: str | None, val_fraction: float, test_fraction: float, seed: int, where: str
) -> tuple[SplitIndices, str]:
    """Row indices of the parts and the name of the split used."""
    if kind is None:
        if raw.split == "time":
            kind = "time"
        else:
            kind = "stratified" if raw.task == "classification" else "random"
    if kind not in SPLIT_KINDS:
        raise DataError(f"split must be one of {', '.join(SPLIT_KINDS)}; got {kind!r}")
    if kind == "stratified" and raw.task != "classification":
        raise DataError(f"split='stratified' needs a classification task; this is {raw.task}")
    if raw.test_rows is None:
        return split_rows(raw.y, kind, val_fraction, test_fraction, seed, where), kind
    # predefined test rows (Fashion-MNIST): keep them, split the rest into train/validation
    rest = np.setdiff1d(np.arange(raw.n_rows), raw.test_rows)
    _, n_val, _ = split_sizes(len(rest), val_fraction, 0.0, where)
    if kind == "stratified":
        part = stratified_split(raw.y[rest], n_val, 0, seed)
    else:
        part = split_rows(raw.y[rest], kind, val_fraction, 0.0, seed, where)
    indices = SplitIndices(rest[part.train], rest[part.val], np.sort(raw.test_rows))
    return indices, f"predefined test, {kind} validation"


def _rows(X: pd.DataFrame | np.ndarray, idx: np.ndarray) -> pd.DataFrame | np.ndarray:
    return X.iloc[idx] if isinstance(X, pd.DataFrame) else X[idx]


def load_dataset(
    source: str | Path,
    *,
    target: str | None = None,
    task: str | None = None,
    impute: str | None = None,
    drop: Sequence[str] = (),
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    split: str | None = None,
    standardize: bool = True,
    standardize_target: bool = False,
    pca: int | float | None = None,
    select_k: int | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Dataset:
    """Load, split and preprocess a dataset into tensors on `device`.

    source: a built-in name (see `optimkit datasets`) or a .csv/.tsv/.parquet path; a file needs
        `target` (its column to predict); `drop` leaves out other columns; `task` overrides the
        inferred 'classification' | 'regression'.
    impute: None (missing features are an error listing the count per column), 'mean',
        'median' or 'most_frequent' (categorical columns always use the most frequent value).
    val_fraction, test_fraction, seed, split: the split (see optimkit.data.split); split=None
        means stratified for classification, shuffled for regression and ratings, in time
        order for time series. Fashion-MNIST keeps its official test set (test_fraction is
        not used) and takes the validation part from its 60,000 training images.
    standardize, pca, select_k: preprocessing fitted on the training part only (see
        optimkit.data.preprocess); standardize_target standardizes a regression target with
        the training mean and std (Dataset.decode_target inverts it).
    device, dtype: where the tensors live and the float dtype of X (and of y for regression).
    """
    dev = check_device(device)
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise DataError(
            f"dtype must be a floating torch dtype such as torch.float32; got {dtype!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise DataError(f"seed must be a non-negative int; got {seed!r}")
    if task is not None and task not in TASKS:
        raise DataError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    raw = resolve_raw(source, target, task, drop)
    if raw.task == "ratings" and (pca is not None or select_k is not None):
        raise DataError("pca and select_k do not apply to the ratings task (ids, not features)")
    if standardize_target and raw.task != "regression":
        raise DataError(f"standardize_target applies to regression; this is {raw.task}")
    impute = impute if impute is not None else raw.default_impute
    where = f"'{raw.metadata['path']}'" if "path" in raw.metadata else f"dataset {raw.name!r}"
    check_missing(raw.X, impute, where, raw.metadata.get("format", "parquet"))
    indices, split_name = _split(raw, split, val_fraction, test_fraction, int(seed), where)

    classes = None
    y_all = raw.y
    if raw.task == "classification":
        labels, y_all = np.unique(raw.y, return_inverse=True)
        classes = list(raw.metadata.get("class_names", labels.tolist()))
        if len(classes) != len(labels):
            classes = labels.tolist()
    y_dtype = torch.int64 if raw.task == "classification" else dtype
    target_mean, target_scale = 0.0, 1.0
    if standardize_target:
        train_y = y_all[indices.train].astype(np.float64)
        target_mean = float(train_y.mean())
        target_scale = float(train_y.std()) or 1.0
        y_all = (y_all - target_mean) / target_scale

    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    preprocessor = None
    if raw.task == "ratings":
        feature_names = list(raw.metadata.get("feature_names", ["user", "item"]))

        def features(idx: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.asarray(_rows(raw.X, idx)), dtype=torch.int64)

        X_parts = [features(idx) for idx in indices]
    else:
        preprocessor = Preprocessor(
            task=raw.task,
            impute=impute,
            standardize=standardize,
            select_k=select_k,
            pca=pca,
            input_scale=raw.input_scale,
            seed=int(seed),
            dtype=np_dtype,
        )
        X_train = preprocessor.fit_transform(
            _rows(raw.X, indices.train), y_all[indices.train], raw.metadata.get("feature_names")
        )
        feature_names = list(preprocessor.feature_names)

        def transform(idx: np.ndarray) -> np.ndarray:
            if len(idx) == 0:
                return np.empty((0, preprocessor.n_features), dtype=np_dtype)
            return preprocessor.transform(_rows(raw.X, idx))

        X_parts = [torch.from_numpy(a) for a in (X_train, transform(indices.val),
                                                   transform(indices.test))]  # fmt: skip
    X_parts = [x.to(device=dev, dtype=dtype if x.is_floating_point() else None) for x in X_parts]
    y_parts = [torch.as_tensor(y_all[idx]).to(device=dev, dtype=y_dtype) for idx in indices]
    metadata = {k: v for k, v in raw.metadata.items() if k not in ("feature_names",)}
    return Dataset(
        name=raw.name,
        task=raw.task,
        X_train=X_parts[0],
        y_train=y_parts[0],
        X_val=X_parts[1],
        y_val=y_parts[1],
        X_test=X_parts[2],
        y_test=y_parts[2],
        feature_names=feature_names,
        classes=classes,
        preprocessor=preprocessor,
        source=raw.source,
        split=split_name,
        seed=int(seed),
        indices=indices,
        target_mean=target_mean,
        target_scale=target_scale,
        metadata=metadata,
    )
