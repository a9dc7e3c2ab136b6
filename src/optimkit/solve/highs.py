"""Solve a :class:`~optimkit.solve.model.Model` with HiGHS (``highspy``).

HiGHS: dual revised simplex and interior point for LPs, branch-and-cut for MILPs, an active-set
method for convex QPs (Huangfu & Hall, "Parallelizing the dual revised simplex method", 2018).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from optimkit.solve.model import Model
from optimkit.solve.result import SolveResult

_STATUS = {
    "kOptimal": "optimal",
    "kModelEmpty": "optimal",
    "kInfeasible": "infeasible",
    "kUnbounded": "unbounded",
    "kUnboundedOrInfeasible": "infeasible_or_unbounded",
    "kTimeLimit": "time_limit",
    "kIterationLimit": "iteration_limit",
    "kSolutionLimit": "solution_limit",
    "kObjectiveBound": "objective_bound",
    "kObjectiveTarget": "objective_target",
    "kInterrupt": "interrupted",
    "kHighsInterrupt": "interrupted",
    "kMemoryLimit": "memory_limit",
    "kLoadError": "error",
    "kModelError": "error",
    "kPresolveError": "error",
    "kSolveError": "error",
    "kPostsolveError": "error",
    "kNotset": "unknown",
    "kUnknown": "unknown",
}


QP_REGULARIZATION = 1e-12


def check_convex(Q: sp.spmatrix, sense: str = "minimize", name: str = "Q") -> None:
    """Raise ValueError unless ``Q`` is symmetric and PSD (NSD for ``sense='maximize'``).

    The diagonal of a diagonal Q, dense eigenvalues for n <= 2000, else the extreme eigenvalue
    by Lanczos (ARPACK). The
    tolerance is relative: min eigenvalue >= -1e-9 * max(1, ||Q||_max).
    """
    Q = sp.csc_matrix(Q)
    scale = max(1.0, float(abs(Q).max()) if Q.nnz else 0.0)
    asym = abs(Q - Q.T)
    if asym.nnz and float(asym.max()) > 1e-10 * scale:
        raise ValueError(f"{name} must be symmetric (max |{name} - {name}^T| = {asym.max():.3g})")
    sign = -1.0 if sense == "maximize" else 1.0
    n = Q.shape[0]
    off_diag = Q - sp.diags(Q.diagonal())
    if off_diag.count_nonzero() == 0:
        lam = float((sign * Q.diagonal()).min())
    elif n <= 2000:
        lam = float(np.linalg.eigvalsh(sign * Q.toarray())[0])
    else:
        from scipy.sparse.linalg import eigsh

        lam = float(eigsh(sign * Q, k=1, which="SA", return_eigenvectors=False)[0])
    if lam < -1e-9 * scale:
        kind = "negative semidefinite (concave objective)" if sign < 0 else "positive semidefinite"
        raise ValueError(
            f"{name} is not {kind}: its extreme eigenvalue is {sign * lam:.3g}; "
            "HiGHS solves convex QPs only"
        )


def to_highs(model: Model, options: dict[str, Any] | None = None):
    """Build a silent ``highspy.Highs`` instance holding ``model``."""
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    for key, value in (options or {}).items():
        if h.setOptionValue(key, value) != highspy.HighsStatus.kOk:
            raise ValueError(f"options: HiGHS rejected option {key!r} = {value!r}")
    A = sp.csc_matrix(model.A)
    lp = highspy.HighsLp()
    lp.num_col_ = model.n_vars
    lp.num_row_ = model.n_rows
    lp.col_cost_ = model.c
    lp.col_lower_ = model.col_lower
    lp.col_upper_ = model.col_upper
    lp.row_lower_ = model.row_lower
    lp.row_upper_ = model.row_upper
    lp.offset_ = model.offset
    maximize = model.sense == "maximize"
    lp.sense_ = highspy.ObjSense.kMaximize if maximize else highspy.ObjSense.kMinimize
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = A.indptr.astype(np.int32)
    lp.a_matrix_.index_ = A.indices.astype(np.int32)
    lp.a_matrix_.value_ = A.data
    if model.integrality is not None:
        lp.integrality_ = [highspy.HighsVarType(int(v)) for v in model.integrality]
    if model.col_names is not None:
        lp.col_names_ = list(model.col_names)
    if model.row_names is not None:
        lp.row_names_ = list(model.row_names)
    if model.name:
        lp.model_name_ = model.name
    if h.passModel(lp) == highspy.HighsStatus.kError:
        raise ValueError("HiGHS rejected the model (inconsistent dimensions or bounds)")
    if model.Q is not None:
        L = sp.csc_matrix(sp.tril(model.Q))
        L.sort_indices()
        status = h.passHessian(
            model.n_vars,
            int(L.nnz),
            int(highspy.HessianFormat.kTriangular),
            L.indptr.astype(np.int32),
            L.indices.astype(np.int32),
            L.data,
        )
        if status == highspy.HighsStatus.kError:
            raise ValueError("HiGHS rejected the Hessian Q")
    return h


def solve_model(
    model: Model,
    *,
    time_limit: float | None = None,
    mip_rel_gap: float | None = None,
    options: dict[str, Any] | None = None,
) -> SolveResult:
    """Solve ``model`` with HiGHS; the status (optimal, infeasible, unbounded, time limit...) is
    returned in the result, never raised.

    ``options`` are HiGHS options by name (e.g. ``{"solver": "ipm", "presolve": "off"}``).
    A QP must be convex (checked first: ValueError otherwise); a MIQP is rejected.
    """
    if model.Q is not None:
        if model.integrality is not None:
            raise ValueError("integrality: HiGHS cannot solve mixed-integer QPs (MIQP)")
        check_convex(model.Q, model.sense)
    opts = dict(options or {})
    if time_limit is not None:
        if not time_limit > 0:
            raise ValueError(f"time_limit must be a positive number of seconds, got {time_limit}")
        opts["time_limit"] = float(time_limit)
    if mip_rel_gap is not None:
        if not 0 <= mip_rel_gap < 1:
            raise ValueError(f"mip_rel_gap must be in [0, 1), got {mip_rel_gap}")
        opts["mip_rel_gap"] = float(mip_rel_gap)
    qp_retry = model.Q is not None and "qp_regularization_value" not in opts
    if qp_retry:
        # HiGHS's active-set QP adds 1e-7 * I to Q by default, which moves the optimum by ~1e-7;
        # 1e-12 keeps it exact to ~1e-12. Should that fail on a singular Q, fall back to 1e-7.
        opts["qp_regularization_value"] = QP_REGULARIZATION
    h = to_highs(model, opts)
    h.run()
    status = _STATUS.get(h.getModelStatus().name, "unknown")
    if qp_retry and status in ("unknown", "error"):
        h.setOptionValue("qp_regularization_value", 1e-7)
        h.clearSolver()
        h.run()
        status = _STATUS.get(h.getModelStatus().name, "unknown")
    if status == "infeasible_or_unbounded" and opts.get("presolve") != "off":
        # Presolve may stop at "infeasible or unbounded"; without it the simplex tells which.
        h.setOptionValue("presolve", "off")
        h.clearSolver()
        h.run()
        status = _STATUS.get(h.getModelStatus().name, "unknown")
    return _result(h, model, status)


def _result(h, model: Model, status: str) -> SolveResult:
    import highspy

    info = h.getInfo()
    sol = h.getSolution()
    is_mip = model.integrality is not None
    feasible = info.primal_solution_status == int(highspy.SolutionStatus.kSolutionStatusFeasible)
    have_x = sol.value_valid and (status == "optimal" or (feasible and status != "unbounded"))
    x = np.asarray(sol.col_value, dtype=np.float64) if have_x else None
    if status == "unbounded":
        objective = np.inf if model.sense == "maximize" else -np.inf
    elif x is not None:
        objective = float(info.objective_function_value)
    else:
        objective = np.nan
    have_duals = status == "optimal" and not is_mip and sol.dual_valid
    row_duals = np.asarray(sol.row_dual, dtype=np.float64) if have_duals else None
    reduced = np.asarray(sol.col_dual, dtype=np.float64) if have_duals else None
    return SolveResult(
        status=status,
        objective=objective,
        x=x,
        row_duals=row_duals,
        reduced_costs=reduced,
        mip_gap=float(info.mip_gap) if is_mip and x is not None else np.nan,
        dual_bound=float(info.mip_dual_bound) if is_mip and x is not None else np.nan,
        message=h.modelStatusToString(h.getModelStatus()),
        runtime=float(h.getRunTime()),
        col_names=model.col_names,
    )
