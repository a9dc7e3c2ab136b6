"""`Dataset`: the three parts of a dataset as tensors, with what produced them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from optimkit.data.errors import DataError
from optimkit.data.preprocess import Preprocessor
from optimkit.data.split import SplitIndices


@dataclass
class Dataset:
    """Train/validation/test tensors of one dataset, on one device.

    X_*: [n, n_features] floats (for task "ratings": int64 [n, 2] user and item indices).
    y_*: int64 class indices into `classes` (classification), else floats; regression targets
        are stored as (y - target_mean) / target_scale (0 and 1 unless standardize_target).
    preprocessor: the transform fitted on the training rows; `transform(X)` applies it to new
        rows at predict time. indices: the rows of the source table in each part.
    metadata: n_users/n_items (ratings), input_shape (images), window (time series), ...
    """

    name: str
    task: str
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    feature_names: list[str]
    classes: list[Any] | None
    preprocessor: Preprocessor | None
    source: str
    split: str
    seed: int
    indices: SplitIndices
    target_mean: float = 0.0
    target_scale: float = 1.0
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def n_classes(self) -> int | None:
        return len(self.classes) if self.classes is not None else None

    @property
    def n_train(self) -> int:
        return int(self.X_train.shape[0])

    @property
    def n_val(self) -> int:
        return int(self.X_val.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.X_test.shape[0])

    @property
    def device(self) -> torch.device:
        return self.X_train.device

    @property
    def dtype(self) -> torch.dtype:
        return self.X_train.dtype if self.X_train.is_floating_point() else self.y_train.dtype

    def parts(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{'train': (X, y), 'val': (X, y), 'test': (X, y)}."""
        return {
            "train": (self.X_train, self.y_train),
            "val": (self.X_val, self.y_val),
            "test": (self.X_test, self.y_test),
        }

    def to(self, device: str | torch.device) -> Dataset:
        """A copy with every tensor on `device`."""
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return dataclasses.replace(self, **moved)

    def transform(self, X: pd.DataFrame | np.ndarray) -> torch.Tensor:
        """Raw feature rows (the source's feature columns) -> model inputs on this device.

        For task "ratings", X holds original (user id, item id) pairs mapped to the indices.
        """
        if self.task == "ratings":
            return self._rating_indices(np.asarray(X))
        if self.preprocessor is None:
            raise DataError(f"dataset {self.name!r} has no fitted preprocessor")
        out = self.preprocessor.transform(X)
        return torch.as_tensor(out, dtype=self.X_train.dtype, device=self.device)

    def _rating_indices(self, X: np.ndarray) -> torch.Tensor:
        if X.ndim != 2 or X.shape[1] != 2:
            raise DataError(f"ratings features must be [n, 2] (user id, item id); got {X.shape}")
        out = []
        for col, key in ((0, "user_ids"), (1, "item_ids")):
            ids = np.asarray(self.metadata[key])
            pos = np.clip(np.searchsorted(ids, X[:, col]), 0, len(ids) - 1)
            unknown = X[:, col][ids[pos] != X[:, col]]
            if len(unknown):
                raise DataError(f"unknown {key[:-4]} id(s) {unknown[:5].tolist()}")
            out.append(pos)
        return torch.as_tensor(np.stack(out, axis=1), dtype=torch.int64, device=self.device)

    def decode_target(self, y: torch.Tensor) -> torch.Tensor:
        """Regression outputs back in the target's original units."""
        return y * self.target_scale + self.target_mean

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, task={self.task!r}, train/val/test="
            f"{self.n_train}/{self.n_val}/{self.n_test}, n_features={self.n_features}, "
            f"n_classes={self.n_classes}, split={self.split!r}, device={str(self.device)!r})"
        )

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly summary."""
        return {
            "name": self.name,
            "task": self.task,
            "source": self.source,
            "split": self.split,
            "seed": self.seed,
            "n_train": self.n_train,
            "n_val": self.n_val,
            "n_test": self.n_test,
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "classes": None if self.classes is None else [str(c) for c in self.classes],
            "preprocessor": repr(self.preprocessor),
            "device": str(self.device),
            **{k: v for k, v in self.metadata.items() if isinstance(v, int | float | str)},
        }
