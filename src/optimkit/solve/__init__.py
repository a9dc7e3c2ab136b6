"""optimkit.solve: classical optimization on well-kept solvers.

- LP / MILP / convex QP on HiGHS: :func:`solve_lp`, :func:`solve_qp`, MPS / LP files with
  :func:`read_model` and :func:`solve_model`.
- Dynamic programming (torch, batched): :func:`value_iteration`, :func:`policy_iteration`,
  :func:`mdp_lp`, :func:`finite_horizon`, :func:`allocate_budget`, :func:`knapsack`.
- Constrained minimization of torch functions with autograd derivatives: :func:`minimize`.
- Exact optima of convex ML problems (ground truth f*): :func:`exact_optimum`, :func:`objective`
  and the solvers behind them (least squares, ridge, lasso, quantile / LAD, linear SVM,
  logistic regression).
- Resource allocation LPs from a YAML file: :func:`load_allocation`, :func:`solve_allocation`.
"""

from optimkit.solve.allocation import (
    Allocation,
    AllocationProblem,
    load_allocation,
    solve_allocation,
)
from optimkit.solve.classification import linear_svm, logistic_regression
from optimkit.solve.convex import PROBLEMS, exact_optimum, objective
from optimkit.solve.dp import allocate_budget, finite_horizon, knapsack
from optimkit.solve.highs import check_convex, solve_model
from optimkit.solve.lp import solve_lp
from optimkit.solve.mdp import MDPSolution, mdp_lp, policy_iteration, value_iteration
from optimkit.solve.minimize import minimize
from optimkit.solve.model import Model, read_model, write_model
from optimkit.solve.objectives import ConvexSolution
from optimkit.solve.qp import solve_qp
from optimkit.solve.regression import lad, lasso, least_squares, quantile_regression, ridge
from optimkit.solve.result import STATUSES, SolveResult

__all__ = [
    "PROBLEMS",
    "STATUSES",
    "Allocation",
    "AllocationProblem",
    "ConvexSolution",
    "MDPSolution",
    "Model",
    "SolveResult",
    "allocate_budget",
    "check_convex",
    "exact_optimum",
    "finite_horizon",
    "knapsack",
    "lad",
    "lasso",
    "least_squares",
    "linear_svm",
    "load_allocation",
    "logistic_regression",
    "mdp_lp",
    "minimize",
    "objective",
    "policy_iteration",
    "quantile_regression",
    "read_model",
    "ridge",
    "solve_allocation",
    "solve_lp",
    "solve_model",
    "solve_qp",
    "value_iteration",
    "write_model",
]
