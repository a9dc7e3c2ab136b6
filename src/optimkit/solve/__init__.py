"""optimkit.solve: classical optimization on well-kept solvers.

- LP / MILP / convex QP on HiGHS: :func:`solve_lp`, :func:`solve_qp`, MPS / LP files with
  :func:`read_model` and :func:`solve_model`.
- Resource allocation LPs from a YAML file: :func:`load_allocation`, :func:`solve_allocation`.
"""

from optimkit.solve.allocation import (
    Allocation,
    AllocationProblem,
    load_allocation,
    solve_allocation,
)
from optimkit.solve.highs import check_convex, solve_model
from optimkit.solve.lp import solve_lp
from optimkit.solve.model import Model, read_model, write_model
from optimkit.solve.qp import solve_qp
from optimkit.solve.result import STATUSES, SolveResult

__all__ = [
    "STATUSES",
    "Allocation",
    "AllocationProblem",
    "Model",
    "SolveResult",
    "check_convex",
    "load_allocation",
    "read_model",
    "solve_allocation",
    "solve_lp",
    "solve_model",
    "solve_qp",
    "write_model",
]
