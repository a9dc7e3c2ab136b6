"""The result of an LP / MILP / QP solve: the status is data, never an exception."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

STATUSES = (
    "optimal",
    "infeasible",
    "unbounded",
    "infeasible_or_unbounded",
    "time_limit",
    "iteration_limit",
    "solution_limit",
    "objective_bound",
    "objective_target",
    "interrupted",
    "memory_limit",
    "error",
    "unknown",
)


@dataclass
class SolveResult:
    """Outcome of :func:`solve_lp`, :func:`solve_qp` or :func:`solve_model`.

    Attributes:
        status: one of :data:`STATUSES`; ``"optimal"`` when an optimum was proven.
        objective: objective value at ``x`` (including the model's constant offset);
            ``-inf`` / ``+inf`` when the problem is unbounded (minimize / maximize), NaN when
            there is no solution.
        x: primal solution, or None when the solver has no feasible point (for a MILP stopped
            by a limit, the best feasible point found).
        row_duals: for LPs and QPs, the sensitivity d objective / d rhs of every row (HiGHS's row
            duals; same convention as ``scipy.optimize.linprog``'s ``marginals``); None for
            MILPs or when the solver gives no duals.
        reduced_costs: d objective / d bound of every variable (zero for a variable strictly
            between its bounds); None when not available.
        ineq_duals, eq_duals: ``row_duals`` split into the ``A_ub`` and ``A_eq`` rows when the
            problem came from :func:`solve_lp` / :func:`solve_qp`.
        mip_gap, dual_bound: relative gap and best bound of a MILP (NaN for an LP).
        message: a one-line human-readable summary (HiGHS's model status string).
        runtime: solver wall time in seconds.
        col_names: variable names when the model has them (read from a file).
    """

    status: str
    objective: float
    x: np.ndarray | None
    row_duals: np.ndarray | None = None
    reduced_costs: np.ndarray | None = None
    ineq_duals: np.ndarray | None = None
    eq_duals: np.ndarray | None = None
    mip_gap: float = float("nan")
    dual_bound: float = float("nan")
    message: str = ""
    runtime: float = 0.0
    col_names: list[str] | None = field(default=None, repr=False)

    def optimal_x(self, what: str = "the problem") -> np.ndarray:
        """``x`` when the status is optimal; RuntimeError naming ``what`` and the status else."""
        if self.status != "optimal" or self.x is None:
            raise RuntimeError(f"{what} did not solve to optimality: status {self.status!r}")
        return self.x

    @property
    def success(self) -> bool:
        """True when the solver proved optimality."""
        return self.status == "optimal"

    def to_dict(self) -> dict:
        """JSON-ready dict (NaN and inf become None and strings '-inf' / 'inf')."""

        def num(v: float) -> float | str | None:
            v = float(v)
            if np.isnan(v):
                return None
            if np.isinf(v):
                return "inf" if v > 0 else "-inf"
            return v

        def vec(a: np.ndarray | None) -> list | None:
            return None if a is None else [num(v) for v in a]

        return {
            "status": self.status,
            "objective": num(self.objective),
            "x": vec(self.x),
            "col_names": self.col_names,
            "row_duals": vec(self.row_duals),
            "reduced_costs": vec(self.reduced_costs),
            "mip_gap": num(self.mip_gap),
            "dual_bound": num(self.dual_bound),
            "message": self.message,
            "runtime": self.runtime,
        }
