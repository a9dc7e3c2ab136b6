"""Validation at the boundary of optimkit.solve: clear ValueErrors that name the argument."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp


def as_vector(name: str, value: Any, size: int | None = None, *, allow_inf: bool = False):
    """Return ``value`` as a 1-D float64 array, checking its length and that it holds numbers."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a 1-D array of numbers ({exc})") from None
    if arr.ndim == 0 and size is not None:
        arr = np.full(size, float(arr))
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if size is not None and arr.shape[0] != size:
        raise ValueError(f"{name} must have length {size}, got {arr.shape[0]}")
    check_finite(name, arr, allow_inf=allow_inf)
    return arr


def as_matrix(name: str, value: Any, n_cols: int | None = None, n_rows: int | None = None):
    """Return ``value`` as a float64 CSR matrix with the expected shape and finite entries."""
    if sp.issparse(value):
        mat = sp.csr_matrix(value, dtype=np.float64)
    else:
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be a 2-D array of numbers ({exc})") from None
        if arr.ndim == 1 and n_cols is not None and arr.shape[0] == n_cols:
            arr = arr[None, :]
        if arr.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got shape {arr.shape}")
        mat = sp.csr_matrix(arr)
    if n_cols is not None and mat.shape[1] != n_cols:
        raise ValueError(f"{name} must have {n_cols} columns (one per variable), got {mat.shape}")
    if n_rows is not None and mat.shape[0] != n_rows:
        raise ValueError(f"{name} must have {n_rows} rows, got {mat.shape}")
    check_finite(name, mat.data)
    return mat


def check_finite(name: str, arr: np.ndarray, *, allow_inf: bool = False) -> None:
    """Raise if ``arr`` holds NaN (or inf unless ``allow_inf``)."""
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN")
    if not allow_inf and np.isinf(arr).any():
        raise ValueError(f"{name} contains inf; expected finite numbers")


def as_bounds(
    bounds: Any, n: int, default: tuple[float | None, float | None]
) -> tuple[np.ndarray, np.ndarray]:
    """Normalize ``bounds`` to arrays ``(low, high)`` of length ``n``.

    Accepts None (``default`` for every variable), one ``(low, high)`` pair for all variables, a
    sequence of ``n`` pairs, an ``(n, 2)`` array, or a ``scipy.optimize.Bounds``. ``None`` in a
    pair means unbounded on that side.
    """
    from scipy.optimize import Bounds

    if bounds is None:
        bounds = default
    if isinstance(bounds, Bounds):
        low = np.broadcast_to(np.asarray(bounds.lb, dtype=np.float64), (n,)).copy()
        high = np.broadcast_to(np.asarray(bounds.ub, dtype=np.float64), (n,)).copy()
    else:
        pairs = _pairs(bounds, n)
        low = np.array([-np.inf if lo is None else lo for lo, _ in pairs], dtype=np.float64)
        high = np.array([np.inf if hi is None else hi for _, hi in pairs], dtype=np.float64)
    check_finite("bounds", low, allow_inf=True)
    check_finite("bounds", high, allow_inf=True)
    bad = np.flatnonzero(low > high)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"bounds: low > high for variable {i} ({low[i]} > {high[i]}); "
            "expected low <= high for every variable"
        )
    if np.isposinf(low).any() or np.isneginf(high).any():
        raise ValueError("bounds: a lower bound of +inf or an upper bound of -inf is infeasible")
    return low, high


def _pairs(bounds: Any, n: int) -> Sequence[tuple[Any, Any]]:
    if isinstance(bounds, np.ndarray) and bounds.ndim == 2:
        if bounds.shape != (n, 2):
            raise ValueError(f"bounds must have shape ({n}, 2), got {bounds.shape}")
        return [tuple(row) for row in bounds]
    if not isinstance(bounds, Iterable):
        raise ValueError("bounds must be None, a (low, high) pair, or a sequence of pairs")
    items = list(bounds)
    if len(items) == 2 and all(x is None or np.isscalar(x) for x in items):
        return [(items[0], items[1])] * n
    if len(items) != n:
        raise ValueError(
            f"bounds must hold one (low, high) pair per variable ({n}), got {len(items)}"
        )
    out = []
    for i, pair in enumerate(items):
        try:
            lo, hi = pair
        except (TypeError, ValueError):
            raise ValueError(f"bounds[{i}] must be a (low, high) pair, got {pair!r}") from None
        out.append((lo, hi))
    return out


def one_of(name: str, value: Any, valid: Iterable[str]) -> str:
    """Check that ``value`` is one of ``valid`` (case-insensitive) and return its canonical form."""
    valid = list(valid)
    for v in valid:
        if isinstance(value, str) and value.lower() == v.lower():
            return v
    raise ValueError(f"{name} must be one of {', '.join(map(repr, valid))}; got {value!r}")


def positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """Check that ``value`` is a finite positive (or non-negative) number."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        expected = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a finite {expected} number, got {value!r}")
    return v
