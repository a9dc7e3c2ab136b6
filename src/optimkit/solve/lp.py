"""Linear and mixed-integer linear programs on HiGHS, in scipy.optimize.linprog's form.

minimize (or maximize)  c'x
subject to              A_ub x <= b_ub,   A_eq x == b_eq,   low <= x <= high,
                        x_j integer where integrality[j] == 1
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from optimkit.solve._checks import as_bounds, as_matrix, as_vector, one_of
from optimkit.solve.highs import solve_model
from optimkit.solve.model import Model
from optimkit.solve.result import SolveResult


def build_model(
    c: Any,
    A_ub: Any = None,
    b_ub: Any = None,
    A_eq: Any = None,
    b_eq: Any = None,
    bounds: Any = None,
    *,
    integrality: Any = None,
    Q: Any = None,
    sense: str = "minimize",
    default_bounds: tuple[float | None, float | None] = (0.0, None),
) -> Model:
    """Validate linprog-style arrays and assemble a :class:`Model` (rows: A_ub, then A_eq)."""
    c = as_vector("c", c)
    n = c.shape[0]
    if n == 0:
        raise ValueError("c must have at least one entry (one per variable)")
    sense = one_of("sense", sense, ("minimize", "maximize"))
    blocks, lower, upper = [], [], []
    for a_name, b_name, A, b, eq in (
        ("A_ub", "b_ub", A_ub, b_ub, False),
        ("A_eq", "b_eq", A_eq, b_eq, True),
    ):
        if (A is None) != (b is None):
            raise ValueError(f"{a_name} and {b_name} must be given together")
        if A is None:
            continue
        A = as_matrix(a_name, A, n_cols=n)
        b = as_vector(b_name, b, A.shape[0])
        if b.shape[0] != A.shape[0]:
            raise ValueError(f"{b_name} must have one entry per row of {a_name} ({A.shape[0]})")
        blocks.append(A)
        lower.append(b if eq else np.full(b.shape, -np.inf))
        upper.append(b)
    A = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, n))
    low, high = as_bounds(bounds, n, default_bounds)
    if integrality is not None:
        integrality = (
            np.broadcast_to(np.asarray(integrality), (n,))
            if np.ndim(integrality) == 0
            else np.asarray(integrality)
        )
        if integrality.shape != (n,):
            raise ValueError(f"integrality must have length {n}, got shape {integrality.shape}")
    return Model(
        c=c,
        A=A,
        row_lower=np.concatenate(lower) if lower else np.zeros(0),
        row_upper=np.concatenate(upper) if upper else np.zeros(0),
        col_lower=low,
        col_upper=high,
        integrality=integrality,
        Q=Q,
        sense=sense,
    )


def solve_lp(
    c: Any,
    A_ub: Any = None,
    b_ub: Any = None,
    A_eq: Any = None,
    b_eq: Any = None,
    bounds: Any = None,
    *,
    integrality: Any = None,
    sense: str = "minimize",
    time_limit: float | None = None,
    mip_rel_gap: float | None = None,
    options: dict[str, Any] | None = None,
) -> SolveResult:
    """Solve an LP, or a MILP when ``integrality`` marks integer variables, with HiGHS.

    Args:
        c: objective coefficients, shape (n,).
        A_ub, b_ub: inequality rows ``A_ub x <= b_ub``; dense (m, n) array or scipy.sparse.
        A_eq, b_eq: equality rows ``A_eq x == b_eq``.
        bounds: as in ``scipy.optimize.linprog``: None (x >= 0, linprog's default), one
            ``(low, high)`` pair for all variables, one pair per variable, an (n, 2) array or a
            ``scipy.optimize.Bounds``; ``None`` inside a pair means unbounded.
        integrality: per variable 0 (continuous), 1 (integer), 2 (semi-continuous) or
            3 (semi-integer), as in ``scipy.optimize.milp``; a scalar applies to all.
        sense: "minimize" or "maximize".
        time_limit: seconds; the result then has status "time_limit" (with the best feasible
            point of a MILP, if any).
        mip_rel_gap: relative MIP gap at which branch-and-cut stops (HiGHS default 1e-4).
        options: extra HiGHS options by name.

    Returns:
        :class:`SolveResult`; ``ineq_duals`` / ``eq_duals`` are d objective / d b_ub and
        d objective / d b_eq (linprog's ``ineqlin.marginals`` / ``eqlin.marginals``).
    """
    model = build_model(c, A_ub, b_ub, A_eq, b_eq, bounds, integrality=integrality, sense=sense)
    result = solve_model(model, time_limit=time_limit, mip_rel_gap=mip_rel_gap, options=options)
    return split_duals(result, n_ineq(model))


def n_ineq(model: Model) -> int:
    """Number of ``A_ub`` rows of a model built by :func:`build_model` (they come first)."""
    return int(np.isneginf(model.row_lower).sum())


def split_duals(result: SolveResult, n_ineq: int) -> SolveResult:
    """Fill ``ineq_duals`` / ``eq_duals`` from ``row_duals`` (rows: A_ub first, then A_eq)."""
    if result.row_duals is not None:
        result.ineq_duals = result.row_duals[:n_ineq]
        result.eq_duals = result.row_duals[n_ineq:]
    return result
