"""Convex quadratic programs on HiGHS's active-set QP solver.

    minimize  0.5 x'Qx + c'x    subject to  A_ub x <= b_ub,  A_eq x == b_eq,  low <= x <= high

with Q symmetric positive semidefinite (checked: a non-convex Q is a ValueError).
"""

from __future__ import annotations

from typing import Any

from optimkit.solve._checks import as_matrix
from optimkit.solve.highs import solve_model
from optimkit.solve.lp import build_model, n_ineq, split_duals
from optimkit.solve.result import SolveResult


def solve_qp(
    Q: Any,
    c: Any,
    A_ub: Any = None,
    b_ub: Any = None,
    A_eq: Any = None,
    b_eq: Any = None,
    bounds: Any = None,
    *,
    time_limit: float | None = None,
    options: dict[str, Any] | None = None,
) -> SolveResult:
    """Solve the convex QP above with HiGHS.

    Args:
        Q: symmetric PSD matrix (n, n), dense or scipy.sparse.
        c: linear term (n,).
        A_ub, b_ub, A_eq, b_eq: linear rows as in :func:`~optimkit.solve.solve_lp`.
        bounds: as in :func:`~optimkit.solve.solve_lp`, but the default is free variables
            (-inf, inf), the textbook QP, not linprog's x >= 0.
        time_limit, options: as in :func:`~optimkit.solve.solve_lp`.

    Returns:
        :class:`SolveResult` with the row duals (KKT multipliers) of the linear rows.
    """
    c_len = len(c) if hasattr(c, "__len__") else None
    Q = as_matrix("Q", Q, n_cols=c_len, n_rows=c_len)
    model = build_model(
        c, A_ub, b_ub, A_eq, b_eq, bounds, Q=Q, sense="minimize", default_bounds=(None, None)
    )
    result = solve_model(model, time_limit=time_limit, options=options)
    return split_duals(result, n_ineq(model))
