"""Deterministic train/validation/test splits: stratified, shuffled, or in time order.

Sizes: n_test = ceil(test_fraction * n), n_val = ceil(val_fraction * n), the rest trains (as
scikit-learn's train_test_split rounds the held-out part up). Randomness comes from
numpy.random.default_rng(seed) only, so a split is a pure function of (y, fractions, seed).
Stratification allocates each part's rows to the classes in proportion to the class sizes by
largest remainders (the rule of scikit-learn's StratifiedShuffleSplit, ties broken by the
seeded generator), first for the test part, then for the validation part from what is left:
a class's count in the test part is within one row of its proportional share, in the
validation part within two rows.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np

from optimkit.data.errors import DataError

SPLIT_KINDS = ("stratified", "random", "time")


class SplitIndices(NamedTuple):
    """Row indices of the three parts, each sorted ascending."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not (isinstance(value, int | float) and 0.0 <= value < 1.0):
            raise DataError(f"{name} must be a number in [0, 1); got {value!r}")
    if val_fraction + test_fraction >= 1.0:
        raise DataError(
            f"val_fraction + test_fraction must be < 1 so that rows are left to train; got "
            f"{val_fraction} + {test_fraction}"
        )


def _held_out(fraction: float, n: int) -> int:
    return math.ceil(fraction * n - 1e-9)


def split_sizes(n: int, val_fraction: float, test_fraction: float, where: str = "the data"):
    """(n_train, n_val, n_test); DataError when fewer than one training row would be left."""
    check_fractions(val_fraction, test_fraction)
    n_val, n_test = _held_out(val_fraction, n), _held_out(test_fraction, n)
    if n - n_val - n_test < 1:
        need = next(
            m for m in itertools.count(1)
            if m - _held_out(val_fraction, m) - _held_out(test_fraction, m) >= 1
            and m >= 1 + (val_fraction > 0) + (test_fraction > 0)
        )  # fmt: skip
        raise DataError(
            f"{where} has {n} row(s), fewer than the split needs: val_fraction={val_fraction} "
            f"and test_fraction={test_fraction} need at least {need} rows (1 to train, "
            f"{_held_out(val_fraction, need)} to validate, "
            f"{_held_out(test_fraction, need)} to test)"
        )
    return n - n_val - n_test, n_val, n_test


def _largest_remainder(counts: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Integer shares of `total` proportional to `counts` (exact integer arithmetic)."""
    n = int(counts.sum())
    if n == 0 or total == 0:
        return np.zeros_like(counts)
    share, remainder = np.divmod(counts * total, n)
    left = total - int(share.sum())
    order = np.lexsort((rng.random(len(counts)), -remainder))
    share[order[:left]] += 1
    return share


def stratified_split(y: np.ndarray, n_val: int, n_test: int, seed: int = 0) -> SplitIndices:
    """Split rows so that every part keeps the class proportions of `y` (see module doc)."""
    rng = np.random.default_rng(seed)
    _, codes = np.unique(y, return_inverse=True)
    counts = np.bincount(codes).astype(np.int64)
    test_k = _largest_remainder(counts, n_test, rng)
    val_k = _largest_remainder(counts - test_k, n_val, rng)
    parts: list[list[np.ndarray]] = [[], [], []]
    for c in range(len(counts)):
        rows = rng.permutation(np.flatnonzero(codes == c))
        t, v = test_k[c], val_k[c]
        parts[2].append(rows[:t])
        parts[1].append(rows[t : t + v])
        parts[0].append(rows[t + v :])
    return SplitIndices(*(np.sort(np.concatenate(p)).astype(np.int64) for p in parts))


def random_split(n: int, n_val: int, n_test: int, seed: int = 0) -> SplitIndices:
    """Shuffle the rows with the seed and cut the parts (test first, then validation)."""
    perm = np.random.default_rng(seed).permutation(n)
    test, val, train = perm[:n_test], perm[n_test : n_test + n_val], perm[n_test + n_val :]
    return SplitIndices(np.sort(train), np.sort(val), np.sort(test))


def time_split(n: int, n_val: int, n_test: int) -> SplitIndices:
    """Keep row order: the first rows train, the next validate, the last test."""
    n_train = n - n_val - n_test
    return SplitIndices(
        np.arange(n_train), np.arange(n_train, n_train + n_val), np.arange(n_train + n_val, n)
    )


def split_rows(
    y: np.ndarray,
    kind: str,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    where: str = "the data",
) -> SplitIndices:
    """Indices of a `kind` split ('stratified' | 'random' | 'time') of the rows of `y`."""
    if kind not in SPLIT_KINDS:
        raise DataError(f"split must be one of {', '.join(SPLIT_KINDS)}; got {kind!r}")
    n = len(y)
    _, n_val, n_test = split_sizes(n, val_fraction, test_fraction, where)
    if kind == "stratified":
        return stratified_split(y, n_val, n_test, seed)
    if kind == "random":
        return random_split(n, n_val, n_test, seed)
    return time_split(n, n_val, n_test)
