"""Resource allocation as a linear program, described in a small YAML file.

    maximize (or minimize)   sum_j value_j * x_j
    subject to               min_i <= sum_j use_ij * x_j <= max_i     for every resource i
                             min_j <= x_j <= max_j                     for every activity j
                             x_j integer where the activity says ``integer: true``

File format (every key is checked; unknown keys are errors)::

    name: Quarterly marketing budget          # optional
    sense: maximize                           # or minimize; default maximize
    activities:                               # the decision variables x_j
      search: {value: 52, min: 10, max: 120}  # value per unit; min default 0, max default inf
      tv: {value: 30, integer: true}
    resources:                                # the rows
      budget: {use: 1, max: 300}              # a number: every activity uses that much
      staff_hours: {use: {search: 2, tv: 0.5}, max: 500}
      brand: {use: {tv: 1}, min: 80}          # min and/or max

The shadow price of a resource (its row dual) is d objective / d limit: what one more unit of
that resource is worth at the optimum (Dantzig, "Linear Programming and Extensions", 1963).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, ValidationError, model_validator

from optimkit.solve.highs import solve_model
from optimkit.solve.model import Model
from optimkit.solve.result import SolveResult


class Activity(BaseModel):
    """One decision variable: how much of this activity to do."""

    model_config = ConfigDict(extra="forbid")
    value: FiniteFloat
    min: FiniteFloat = 0.0
    max: FiniteFloat | None = None
    integer: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Activity:
        if self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) > max ({self.max})")
        return self


class Resource(BaseModel):
    """One row: total use of a resource across activities, between ``min`` and ``max``."""

    model_config = ConfigDict(extra="forbid")
    use: FiniteFloat | dict[str, FiniteFloat]
    min: FiniteFloat | None = None
    max: FiniteFloat | None = None

    @model_validator(mode="after")
    def _limited(self) -> Resource:
        if self.min is None and self.max is None:
            raise ValueError("a resource needs 'max' (capacity) and/or 'min' (requirement)")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) > max ({self.max})")
        return self


class AllocationProblem(BaseModel):
    """A whole allocation file (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    name: str = "allocation"
    sense: Literal["maximize", "minimize"] = "maximize"
    activities: dict[str, Activity] = Field(min_length=1)
    resources: dict[str, Resource] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_activities(self) -> AllocationProblem:
        for rname, res in self.resources.items():
            if isinstance(res.use, dict):
                unknown = sorted(set(res.use) - set(self.activities))
                if unknown:
                    raise ValueError(
                        f"resource {rname!r} uses unknown activities {unknown}; "
                        f"activities are {sorted(self.activities)}"
                    )
        return self

    def to_model(self) -> Model:
        """The LP / MILP of this problem (columns: activities, rows: resources, file order)."""
        names = list(self.activities)
        col = {a: j for j, a in enumerate(names)}
        acts = list(self.activities.values())
        A = np.zeros((len(self.resources), len(names)))
        for i, res in enumerate(self.resources.values()):
            if isinstance(res.use, dict):
                for a, u in res.use.items():
                    A[i, col[a]] = u
            else:
                A[i, :] = res.use
        res_list = list(self.resources.values())
        return Model(
            c=np.array([a.value for a in acts]),
            A=A,
            row_lower=np.array([-np.inf if r.min is None else r.min for r in res_list]),
            row_upper=np.array([np.inf if r.max is None else r.max for r in res_list]),
            col_lower=np.array([a.min for a in acts]),
            col_upper=np.array([np.inf if a.max is None else a.max for a in acts]),
            integrality=np.array([int(a.integer) for a in acts]),
            sense=self.sense,
            col_names=names,
            row_names=list(self.resources),
            name=self.name,
        )


@dataclass
class Allocation:
    """Solved allocation: the LP result plus per-activity and per-resource tables."""

    problem: AllocationProblem
    result: SolveResult
    amounts: dict[str, float]
    usage: dict[str, float]
    shadow_prices: dict[str, float] | None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.problem.name, "sense": self.problem.sense}
        out.update(self.result.to_dict())
        out.update(amounts=self.amounts, usage=self.usage, shadow_prices=self.shadow_prices)
        return out


def solve_allocation(problem: AllocationProblem, *, time_limit: float | None = None) -> Allocation:
    """Solve an allocation problem with HiGHS (a MILP when some activity is integer)."""
    model = problem.to_model()
    result = solve_model(model, time_limit=time_limit)
    amounts, usage, prices = {}, {}, None
    if result.x is not None:
        amounts = dict(zip(model.col_names or [], map(float, result.x), strict=True))
        usage = dict(zip(model.row_names or [], map(float, model.A @ result.x), strict=True))
    if result.row_duals is not None:
        prices = dict(zip(model.row_names or [], map(float, result.row_duals), strict=True))
    return Allocation(problem, result, amounts, usage, prices)


def load_allocation(path: str | Path) -> AllocationProblem:
    """Read and validate an allocation YAML file.

    Errors are ValueErrors of the form ``file:line:column: where: what``.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    text = path.read_text()
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ValueError(f"{where}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with 'activities' and 'resources'")
    try:
        return AllocationProblem.model_validate(data)
    except ValidationError as exc:
        # An unknown key (a typo) explains the "field required" that comes with it: show it first.
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        err = errors[0]
        loc = tuple(p for p in err["loc"] if not str(p).startswith(("function-", "float")))
        line, col = _position(root, loc, at_key=err["type"] == "extra_forbidden")
        dotted = ".".join(map(str, loc)) or "file"
        msg = err["msg"].removeprefix("Value error, ")
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise ValueError(f"{path}:{line}:{col}: {dotted}: {msg}{more}") from None


def _position(node: Any, loc: tuple, at_key: bool = False) -> tuple[int, int]:
    """1-based line and column of the YAML node at ``loc`` (or of its deepest existing parent);
    of the key itself rather than its value when ``at_key``."""
    for depth, key in enumerate(loc):
        if not isinstance(node, yaml.MappingNode):
            break
        pair = next(((k, v) for k, v in node.value if k.value == str(key)), None)
        if pair is None:
            break
        node = pair[0] if at_key and depth == len(loc) - 1 else pair[1]
    mark = node.start_mark if node is not None else None
    return (mark.line + 1, mark.column + 1) if mark else (1, 1)
