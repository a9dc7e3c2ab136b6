"""`RawData`: a supervised table as a loader returns it, before splitting and preprocessing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

Task = Literal["classification", "regression", "ratings"]
TASKS: tuple[str, ...] = ("classification", "regression", "ratings")


@dataclass
class RawData:
    """Features and target of one dataset, unsplit and untransformed.

    X: a DataFrame (numeric and categorical columns) or a 2-D numeric array.
    y: the target, one entry per row: class labels (any type), real values, or ratings.
    task: "classification" | "regression" | "ratings".
    source: where the data came from, in words (package, file path).
    split: "auto" (stratified for classification, shuffled otherwise) or "time" (rows are in
        time order; the split keeps that order so that no future row leaks into training).
    test_rows: indices of a predefined test set (Fashion-MNIST's official 10,000), or None.
    input_scale: factor applied to X before any other preprocessing (1/255 for pixels).
    metadata: anything a model builder needs (input_shape, n_users, n_items, window, ...).
    """

    name: str
    X: pd.DataFrame | np.ndarray
    y: np.ndarray
    task: Task
    source: str
    split: Literal["auto", "time"] = "auto"
    test_rows: np.ndarray | None = None
    input_scale: float | None = None
    default_impute: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return len(self.y)
