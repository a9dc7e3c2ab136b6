"""optimkit.solve: classical optimization on well-kept solvers.

- LP / MILP / convex QP on HiGHS: :func:`solve_lp`, :func:`solve_qp`, MPS / LP files with
  :func:`read_model` and :func:`solve_model`.
- Dynamic programming (torch, batched): :func:`value_iteration`, :func:`policy_iteration`,
  :func:`mdp_lp`, :func:`finite_horizon`, :func:`allocate_budget`, :func:`knapsack`.
- Resource allocation LPs from a YAML file: :func:`load_allocation`, :func:`solve_allocation`.
"""

from optimkit.solve.allocation import (
    Allocation,
    AllocationProblem,
    load_allocation,
    solve_allocation,
)
from optimkit.solve.dp import allocate_budget, finite_horizon, knapsack
from optimkit.solve.highs import check_convex, solve_model
from optimkit.solve.lp import solve_lp
from optimkit.solve.mdp import MDPSolution, mdp_lp, policy_iteration, value_iteration
from optimkit.solve.model import Model, read_model, write_model
from optimkit.solve.qp import solve_qp
from optimkit.solve.result import STATUSES, SolveResult

__all__ = [
    "STATUSES",
    "Allocation",
    "AllocationProblem",
    "MDPSolution",
    "Model",
    "SolveResult",
    "allocate_budget",
    "check_convex",
    "finite_horizon",
    "knapsack",
    "load_allocation",
    "mdp_lp",
    "policy_iteration",
    "read_model",
    "solve_allocation",
    "solve_lp",
    "solve_model",
    "solve_qp",
    "value_iteration",
    "write_model",
]
