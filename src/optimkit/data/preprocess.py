"""Feature preprocessing fitted on the training rows only, applied unchanged to any other rows.

Steps, each optional, all scikit-learn's (Pedregosa et al., JMLR 12, 2011):
1. input scale (1/255 for pixels); 2. imputation, `SimpleImputer(strategy=impute)` for numeric
columns and the most frequent value for categorical ones; 3. one-hot encoding of categorical
columns, `OneHotEncoder(handle_unknown="ignore")` (a category unseen in training encodes as all
zeros); 4. standardization of the numeric columns, `StandardScaler` (x - mean) / std with the
population std (one-hot columns stay 0/1); 5. univariate selection `SelectKBest(k)` with the
ANOVA F score (`f_classif`) for classification and `f_regression` otherwise; 6. `PCA` to an
integer number of components, or to the fewest components whose explained variance reaches a
fraction in (0, 1).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.feature_selection import SelectKBest, f_classif, f_regression
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from optimkit.data.errors import DataError


def one_hot_name(feature: str, category: Any) -> str:
    """Name of a one-hot column: 'color=red'."""
    return f"{feature}={category}"


def _check_pca(pca: int | float | None) -> None:
    if pca is None:
        return
    if isinstance(pca, bool) or not isinstance(pca, int | float):
        raise DataError(f"pca must be an int >= 1 or a variance fraction in (0, 1); got {pca!r}")
    if isinstance(pca, float) and not pca.is_integer() and not 0.0 < pca < 1.0:
        raise DataError(f"pca as a fraction of variance must be in (0, 1); got {pca!r}")
    if pca < 1 and not (isinstance(pca, float) and 0.0 < pca < 1.0):
        raise DataError(f"pca must be an int >= 1 or a variance fraction in (0, 1); got {pca!r}")


class Preprocessor:
    """Maps raw features (a DataFrame, or a numeric array) to model inputs; see the module doc.

    `fit(X, y)` on the training rows, then `transform(X)` on any rows. `pipeline` is the fitted
    scikit-learn Pipeline (without the input scale), `feature_names` the output column names.
    """

    def __init__(
        self,
        *,
        task: str,
        impute: str | None = None,
        standardize: bool = True,
        select_k: int | None = None,
        pca: int | float | None = None,
        input_scale: float | None = None,
        seed: int = 0,
        dtype: Any = np.float64,
    ) -> None:
        if select_k is not None and (isinstance(select_k, bool) or not isinstance(select_k, int)
                                     or select_k < 1):  # fmt: skip
            raise DataError(f"select_k must be an int >= 1; got {select_k!r}")
        _check_pca(pca)
        self.task = task
        self.impute = impute
        self.standardize = standardize
        self.select_k = select_k
        self.pca = int(pca) if isinstance(pca, float) and pca.is_integer() else pca
        self.input_scale = input_scale
        self.seed = seed
        self.dtype = np.dtype(dtype)
        self.columns: list[str] | None = None
        self.numeric: list[str] = []
        self.categorical: list[str] = []
        self.pipeline: Pipeline | None = None
        self.feature_names: list[str] = []

    # ------------------------------------------------------------------ building blocks
    def _numeric_steps(self, copy: bool) -> list[tuple[str, Any]]:
        steps: list[tuple[str, Any]] = []
        if self.impute is not None:
            steps.append(("impute", SimpleImputer(strategy=self.impute, copy=copy)))
        if self.standardize:
            steps.append(("scale", StandardScaler(copy=copy)))
        return steps

    def _encoder(self, numeric: list[str], categorical: list[str]) -> ColumnTransformer:
        num = self._numeric_steps(copy=True)
        cat: list[tuple[str, Any]] = []
        if self.impute is not None:
            cat.append(("impute", SimpleImputer(strategy="most_frequent")))
        cat.append(
            (
                "onehot",
                OneHotEncoder(
                    handle_unknown="ignore",
                    sparse_output=False,
                    dtype=np.float64,
                    feature_name_combiner=one_hot_name,
                ),
            )
        )
        return ColumnTransformer(
            [
                ("numeric", Pipeline(num) if num else "passthrough", numeric),
                ("categorical", Pipeline(cat), categorical),
            ],
            verbose_feature_names_out=False,
        )

    def _as_input(self, X: pd.DataFrame | np.ndarray) -> pd.DataFrame | np.ndarray:
        """Check the columns; return the frame (with categoricals) or a fresh float array."""
        assert self.columns is not None
        if isinstance(X, pd.DataFrame):
            X = X.set_axis([str(c) for c in X.columns], axis=1)
            missing = [c for c in self.columns if c not in X.columns]
            if missing:
                raise DataError(f"features are missing columns {missing}; expected {self.columns}")
            X = X[self.columns]
            if self.categorical:
                return X
            X = X.to_numpy()
        array = np.array(X, dtype=self.dtype, copy=True)
        if array.ndim != 2 or array.shape[1] != len(self.columns):
            raise DataError(
                f"features must be a 2-D table with {len(self.columns)} columns; "
                f"got shape {array.shape}"
            )
        if self.input_scale is not None:
            array *= self.input_scale
        return array

    # ------------------------------------------------------------------ fit / transform
    def fit(
        self,
        X: pd.DataFrame | np.ndarray,
        y: np.ndarray,
        feature_names: list[str] | None = None,
    ) -> Preprocessor:
        """Fit every step on these (training) rows; returns self. `feature_names` names the
        columns of an array X (default x0, x1, ...)."""
        if isinstance(X, pd.DataFrame):
            X = X.set_axis([str(c) for c in X.columns], axis=1)
            self.columns = list(X.columns)
            kinds = [
                pd.api.types.is_numeric_dtype(X[c]) and not pd.api.types.is_bool_dtype(X[c])
                for c in X.columns
            ]
            self.numeric = [c for c, k in zip(self.columns, kinds, strict=True) if k]
            self.categorical = [c for c, k in zip(self.columns, kinds, strict=True) if not k]
        else:
            width = np.shape(X)[1]
            self.columns = list(feature_names or [f"x{i}" for i in range(width)])
            if len(self.columns) != width:
                raise DataError(f"{len(self.columns)} feature names for {width} columns")
            self.numeric, self.categorical = list(self.columns), []
        steps: list[tuple[str, Any]] = []
        data = self._as_input(X)
        if self.categorical:
            encode = self._encoder(self.numeric, self.categorical)
            steps.append(("encode", encode))
            data = encode.fit_transform(data)
            names = [str(n) for n in encode.get_feature_names_out()]
        else:
            for name, step in self._numeric_steps(copy=False):
                steps.append((name, step))
                data = step.fit_transform(data)
            names = list(self.columns)
        n_features = data.shape[1]
        if self.select_k is not None:
            if self.select_k > n_features:
                raise DataError(
                    f"select_k={self.select_k} exceeds the {n_features} features after encoding"
                )
            score = f_classif if self.task == "classification" else f_regression
            select = SelectKBest(score, k=self.select_k)
            with warnings.catch_warnings():  # constant features score NaN and are never kept
                warnings.filterwarnings("ignore", message="Features .* are constant")
                warnings.filterwarnings("ignore", category=RuntimeWarning)
                data = select.fit_transform(data, y)
            steps.append(("select", select))
            names = [names[i] for i in select.get_support(indices=True)]
        if self.pca is not None:
            if isinstance(self.pca, int) and self.pca > min(data.shape):
                raise DataError(
                    f"pca={self.pca} exceeds min(training rows, features) = {min(data.shape)}"
                )
            pca = PCA(n_components=self.pca, svd_solver="full", random_state=self.seed)
            data = pca.fit_transform(data)
            steps.append(("pca", pca))
            names = [f"pc{i}" for i in range(pca.n_components_)]
        self.pipeline = Pipeline(steps) if steps else None
        self.feature_names = names
        self._fitted_output = data
        return self

    def fit_transform(
        self,
        X: pd.DataFrame | np.ndarray,
        y: np.ndarray,
        feature_names: list[str] | None = None,
    ) -> np.ndarray:
        self.fit(X, y, feature_names)
        out, self._fitted_output = self._fitted_output, None
        return np.asarray(out, dtype=self.dtype)

    def transform(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Apply the fitted steps to other rows (validation, test, new data at predict time)."""
        if self.columns is None:
            raise DataError("this Preprocessor is not fitted; call fit(X_train, y_train) first")
        data = self._as_input(X)
        if self.pipeline is not None:
            data = self.pipeline.transform(data)
        return np.asarray(data, dtype=self.dtype)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def __repr__(self) -> str:
        return (
            f"Preprocessor(task={self.task!r}, impute={self.impute!r}, "
            f"standardize={self.standardize}, select_k={self.select_k}, pca={self.pca}, "
            f"input_scale={self.input_scale}, features={self.n_features})"
        )
