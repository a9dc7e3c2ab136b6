"""User data: CSV and Parquet files read into a `RawData`, with checks that name file and line.

Features may be numeric (int, float, bool) or categorical (text, pandas category), which are
one-hot encoded later. The task is inferred from the target unless given: a non-numeric or
boolean target, or an integer-valued one with at most `MAX_INFERRED_CLASSES` distinct values,
means classification; any other numeric target means regression.

Line numbers in messages count the header as line 1 (data row i is line i + 2); for Parquet
files they are 1-based row numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from optimkit.data.errors import DataError
from optimkit.data.raw import RawData

IMPUTE_STRATEGIES = ("mean", "median", "most_frequent")
FILE_TASKS = ("classification", "regression")
MAX_INFERRED_CLASSES = 20
_COMPRESSED = (".gz", ".bz2", ".zip", ".xz", ".zst")
_FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}
_LABELS = {"csv": "CSV", "tsv": "TSV", "parquet": "Parquet"}


#: the largest target a float32 model can hold
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def table_format(path: str | Path) -> str | None:
    """'csv', 'tsv' or 'parquet' from the file name (CSV/TSV may be compressed), else None."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if len(suffixes) >= 2 and suffixes[-1] in _COMPRESSED and suffixes[-2] in (".csv", ".tsv"):
        return _FORMATS[suffixes[-2]]
    return _FORMATS.get(suffixes[-1]) if suffixes else None


def _where(fmt: str, row: int) -> str:
    return f"row {row + 1}" if fmt == "parquet" else f"line {row + 2}"


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV/TSV/Parquet file; every failure is a DataError naming the file."""
    path = Path(path)
    fmt = table_format(path)
    if fmt is None:
        raise DataError(
            f"data file '{path}' has an unknown extension; expected .csv, .tsv (optionally "
            f"compressed: {', '.join(_COMPRESSED)}), .parquet or .pq"
        )
    if not path.exists():
        raise DataError(f"data file '{path}' does not exist")
    if not path.is_file():
        raise DataError(f"data file '{path}' is not a file")
    if path.stat().st_size == 0:
        raise DataError(f"data file '{path}' is empty")
    label = _LABELS[fmt]
    try:
        if fmt == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep="\t" if fmt == "tsv" else ",")
    except pd.errors.EmptyDataError as e:
        raise DataError(f"data file '{path}' is empty (no header, no rows)") from e
    except pd.errors.ParserError as e:
        raise DataError(f"could not parse '{path}' as {label}: {str(e).strip()}") from e
    except UnicodeDecodeError as e:
        raise DataError(f"could not parse '{path}' as {label}: not UTF-8 text ({e})") from e
    except Exception as e:  # pyarrow and the decompressors raise many types
        raise DataError(f"could not read '{path}' as {label}: {str(e).strip()}") from e
    if frame.shape[1] == 0:
        raise DataError(f"data file '{path}' has no columns")
    if fmt != "parquet":  # pandas renames a repeated header ("a", "a.1"): refuse it instead
        header = pd.read_csv(path, sep="\t" if fmt == "tsv" else ",", header=None, nrows=1)
        names = [str(v) for v in header.iloc[0].tolist()]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise DataError(
                f"data file '{path}', line 1: duplicate column name(s) {repeated}; "
                "give every column its own name"
            )
    if len(frame) == 0:
        raise DataError(f"data file '{path}' has a header but no data rows")
    frame.attrs["format"] = fmt
    return frame


def infer_task(y: pd.Series) -> str:
    """'classification' for a non-numeric, boolean, or few-valued integer target, else
    'regression' (see the module docstring)."""
    if pd.api.types.is_bool_dtype(y) or not pd.api.types.is_numeric_dtype(y):
        return "classification"
    values = y.dropna().to_numpy(dtype=np.float64)
    if np.all(values == np.round(values)) and len(np.unique(values)) <= MAX_INFERRED_CLASSES:
        return "classification"
    return "regression"


def _numeric_or_none(col: pd.Series) -> tuple[pd.Series, int | None]:
    """The column converted to numbers, and the position of the first non-number (or None)."""
    converted = pd.to_numeric(col, errors="coerce")
    bad = np.flatnonzero(converted.isna().to_numpy() & col.notna().to_numpy())
    return converted, (int(bad[0]) if len(bad) else None)


def _feature_kinds(X: pd.DataFrame, path: Path, fmt: str) -> tuple[list[str], list[str]]:
    """Split the columns into numeric and categorical, converting in place; reject the rest."""
    numeric, categorical = [], []
    for name in X.columns:
        col = X[name]
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            X[name] = col.astype(np.float64)
            numeric.append(name)
        elif (
            isinstance(col.dtype, pd.CategoricalDtype)
            or pd.api.types.is_object_dtype(col)
            or pd.api.types.is_string_dtype(col)
        ):
            converted, bad = _numeric_or_none(col)
            present = int(col.notna().sum())
            if bad is None and present > 0:  # numbers stored as text
                X[name] = converted.astype(np.float64)
                numeric.append(name)
                continue
            parsed = int(converted.notna().sum())
            if bad is not None and parsed > present / 2:
                raise DataError(
                    f"column {name!r} of '{path}' holds numbers but {_where(fmt, bad)} has "
                    f"{col.iloc[bad]!r}; fix the value or mark it missing"
                )
            X[name] = pd.Series(
                [np.nan if pd.isna(v) else str(v) for v in col], index=X.index, dtype=object
            )
            categorical.append(name)
        else:
            raise DataError(
                f"column {name!r} of '{path}' has type {col.dtype}, which is neither numeric nor "
                "categorical; convert it or leave it out with drop=[...]"
            )
    return numeric, categorical


def check_missing(X: pd.DataFrame | np.ndarray, impute: str | None, where: str, fmt: str) -> None:
    """Raise DataError listing the missing values per column unless `impute` is given."""
    if impute is not None:
        if impute not in IMPUTE_STRATEGIES:
            raise DataError(f"impute must be one of {', '.join(IMPUTE_STRATEGIES)}; got {impute!r}")
        return
    if isinstance(X, np.ndarray) and (X.dtype.kind not in "fc" or not np.isnan(X).any()):
        return  # the fast path for large numeric arrays (images)
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X)
    mask = frame.isna()
    counts = mask.sum()
    if not counts.any():
        return
    parts = []
    for name, count in counts[counts > 0].items():
        first = int(np.flatnonzero(mask[name].to_numpy())[0])
        parts.append(f"{name}: {int(count)} (first at {_where(fmt, first)})")
    raise DataError(
        f"{where} has missing values in {len(parts)} column(s): {'; '.join(parts)}; pass "
        f"impute='mean' | 'median' | 'most_frequent' (--impute) or remove those rows"
    )


def table_to_raw(
    frame: pd.DataFrame,
    path: str | Path,
    target: str | None,
    task: str | None = None,
    drop: Sequence[str] = (),
) -> RawData:
    """Target and features of a table read by `read_table`, checked for the given task."""
    path = Path(path)
    fmt = frame.attrs.get("format", table_format(path) or "csv")
    columns = ", ".join(map(str, frame.columns))
    if target is None:
        raise DataError(
            f"a data file needs target=COLUMN (--target); columns of '{path}': {columns}"
        )
    if target not in frame.columns:
        raise DataError(f"target column {target!r} is not in '{path}'; its columns are: {columns}")
    unknown = [c for c in drop if c not in frame.columns]
    if unknown:
        raise DataError(
            f"drop names columns {unknown} that are not in '{path}'; columns: {columns}"
        )
    if task is not None and task not in FILE_TASKS:
        raise DataError(
            f"task must be one of {', '.join(FILE_TASKS)} for a data file; got {task!r}"
        )
    y = frame[target]
    missing = np.flatnonzero(y.isna().to_numpy())
    if len(missing):
        raise DataError(
            f"target column {target!r} of '{path}' has {len(missing)} missing value(s) (first at "
            f"{_where(fmt, int(missing[0]))}); remove those rows"
        )
    if pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y):
        numbers = y.to_numpy(dtype=np.float64)
        bad_rows = np.flatnonzero(~np.isfinite(numbers) | (np.abs(numbers) > _FLOAT32_MAX))
        if len(bad_rows):
            first = int(bad_rows[0])
            raise DataError(
                f"target column {target!r} of '{path}' has {len(bad_rows)} non-finite or "
                f"overflowing value(s) (first at {_where(fmt, first)}: {float(numbers[first])!r}; "
                f"|y| must be finite and at most {_FLOAT32_MAX:.3g})"
            )
    task = task or infer_task(y)
    if task == "regression":
        if pd.api.types.is_bool_dtype(y):
            raise DataError(
                f"target column {target!r} of '{path}' is boolean; task='regression' "
                "needs numbers (use task='classification')"
            )
        values, bad = _numeric_or_none(y)
        if bad is not None:
            raise DataError(
                f"target column {target!r} of '{path}' is not numeric ({_where(fmt, bad)} has "
                f"{y.iloc[bad]!r}), but task='regression'; use task='classification' or fix it"
            )
        y_out = values.to_numpy(dtype=np.float64)
    else:
        y_out = y.to_numpy()
        classes = pd.unique(y)
        if len(classes) < 2:
            raise DataError(
                f"target column {target!r} of '{path}' has a single class ({classes[0]!r}); "
                "classification needs at least 2"
            )
        if not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
            y_out = np.array([str(v) for v in y_out], dtype=object)
    X = frame.drop(columns=[target, *drop]).copy()
    if X.shape[1] == 0:
        raise DataError(f"'{path}' has no feature columns besides the target {target!r}")
    X.columns = [str(c) for c in X.columns]
    numeric, categorical = _feature_kinds(X, path, fmt)
    return RawData(
        name=path.name,
        X=X,
        y=y_out,
        task=task,  # type: ignore[arg-type]
        source=f"file {path}",
        metadata={"path": str(path), "format": fmt, "target": target, "numeric": numeric,
                  "categorical": categorical},
    )  # fmt: skip
