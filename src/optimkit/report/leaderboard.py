"""The leaderboard as a CSV file (written, like every output, with `optimkit.outputs`)."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np
import pandas as pd

from optimkit.outputs import atomic_write
from optimkit.report.data import LEADERBOARD_COLUMNS, TournamentResult

__all__ = ["atomic_write", "leaderboard_csv", "leaderboard_frame", "read_leaderboard"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"best_params: value {value!r} of type {type(value).__name__} is not JSON")


def _params_json(params: dict[str, Any]) -> str:
    clean = {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in params.items()
    }
    return json.dumps(clean, default=_jsonable)


def leaderboard_frame(result: TournamentResult) -> pd.DataFrame:
    """The leaderboard in rank order: contract columns first (``best_params`` as JSON), then any
    extra columns the caller added."""
    board = result.leaderboard
    extra = [c for c in board.columns if c not in LEADERBOARD_COLUMNS]
    out = board[[*LEADERBOARD_COLUMNS, *extra]].copy()
    out["best_params"] = [_params_json(p) for p in board["best_params"]]
    return out


def leaderboard_csv(result: TournamentResult) -> bytes:
    """CSV bytes of `leaderboard_frame` (full float precision, NaN as an empty field)."""
    return leaderboard_frame(result).to_csv(index=False, lineterminator="\n").encode()


def read_leaderboard(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a ``leaderboard.csv`` back, with ``best_params`` parsed to dicts."""
    df = pd.read_csv(path)
    if "best_params" in df.columns:
        df["best_params"] = [json.loads(p) if isinstance(p, str) else {} for p in df["best_params"]]
    return df
