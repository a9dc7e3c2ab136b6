"""Datasets for optimkit: built-in offline sets and user CSV/Parquet files -> split tensors.

>>> from optimkit.data import load_dataset, BatchSampler
>>> ds = load_dataset("digits", seed=0)            # 1797 x 64, stratified 70/15/15
>>> sampler = BatchSampler(ds.n_train, batch_size=32, seed=0)
>>> for idx in sampler:                            # one epoch of index batches
...     xb, yb = ds.X_train[idx], ds.y_train[idx]
"""

from optimkit.data.batches import BatchSampler, epoch_seed
from optimkit.data.dataset import Dataset
from optimkit.data.errors import DataError
from optimkit.data.load import check_device, load_dataset, resolve_raw
from optimkit.data.preprocess import Preprocessor
from optimkit.data.raw import RawData
from optimkit.data.registry import (
    REGISTRY,
    DatasetInfo,
    dataset_names,
    find_dataset,
    get_dataset_info,
    load_raw,
)
from optimkit.data.split import SplitIndices, split_rows
from optimkit.data.tabular import IMPUTE_STRATEGIES, read_table, table_to_raw

__all__ = [
    "IMPUTE_STRATEGIES",
    "REGISTRY",
    "BatchSampler",
    "DataError",
    "Dataset",
    "DatasetInfo",
    "Preprocessor",
    "RawData",
    "SplitIndices",
    "check_device",
    "dataset_names",
    "epoch_seed",
    "find_dataset",
    "get_dataset_info",
    "load_dataset",
    "load_raw",
    "read_table",
    "resolve_raw",
    "split_rows",
    "table_to_raw",
]
