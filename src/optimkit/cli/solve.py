"""`optimkit solve FILE`: solve an MPS / LP model or a resource-allocation YAML file.

Register with ``app.command("solve")(solve)``. Prints status, objective and solution as rich
tables, or everything as JSON with ``--json``. A completed solve exits 0 whatever its status
(optimal, infeasible, unbounded, time_limit: the status is printed); a missing or malformed
file, or a bad option, exits 2 with a one-line message naming the file and the problem.
"""

from __future__ import annotations

import json as jsonlib
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

ALLOCATION_SUFFIXES = (".yaml", ".yml")


def solve(
    path: Annotated[
        Path,
        typer.Argument(
            help="Model file: .mps / .lp (optionally .gz) for HiGHS, or .yaml / .yml for a "
            "resource-allocation problem (see examples/budget_allocation.yaml)."
        ),
    ],
    json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    time_limit: Annotated[
        float | None, typer.Option("--time-limit", help="Stop after this many seconds.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", help="Show at most this many variables in the table.")
    ] = 50,
) -> None:
    """Solve an LP / MILP / QP model file or a resource-allocation file with HiGHS."""
    try:
        if time_limit is not None and not time_limit > 0:
            raise ValueError(f"--time-limit must be a positive number of seconds, got {time_limit}")
        if limit < 0:
            raise ValueError(f"--limit must be >= 0, got {limit}")
        if path.name.lower().endswith(ALLOCATION_SUFFIXES):
            out = _solve_allocation(path, json, time_limit)
        else:
            out = _solve_model_file(path, json, time_limit, limit)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    if json:
        typer.echo(jsonlib.dumps(out, indent=2))


def _solve_model_file(path: Path, as_json: bool, time_limit: float | None, limit: int) -> dict:
    from optimkit.solve import read_model, solve_model

    model = read_model(path)
    result = solve_model(model, time_limit=time_limit)
    names = model.col_names or [f"x{j}" for j in range(model.n_vars)]
    rows = model.row_names or [f"r{i}" for i in range(model.n_rows)]
    out: dict[str, Any] = {
        "file": str(path),
        "name": model.name,
        "kind": model.kind,
        "sense": model.sense,
        "n_vars": model.n_vars,
        "n_rows": model.n_rows,
        "status": result.status,
        "objective": _num(result.objective),
        "solution": _named(names, result.x),
        "reduced_costs": _named(names, result.reduced_costs),
        "row_duals": _named(rows, result.row_duals),
        "mip_gap": _num(result.mip_gap),
        "runtime": result.runtime,
        "warnings": model.warnings,
    }
    if not as_json:
        _print_model(out, limit)
    return out


def _solve_allocation(path: Path, as_json: bool, time_limit: float | None) -> dict:
    from optimkit.solve.allocation import load_allocation, solve_allocation

    alloc = solve_allocation(load_allocation(path), time_limit=time_limit)
    out = {"file": str(path), **alloc.to_dict()}
    out["reduced_costs"] = _named(list(alloc.problem.activities), alloc.result.reduced_costs)
    out.pop("x", None)
    out.pop("col_names", None)
    out.pop("row_duals", None)
    for key in ("amounts", "usage", "shadow_prices"):
        out[key] = None if out[key] is None else {k: _num(v) for k, v in out[key].items()}
    if not as_json:
        _print_allocation(alloc)
    return out


def _num(v: float | None) -> float | str | None:
    if v is None or np.isnan(v):
        return None
    if np.isinf(v):
        return "inf" if v > 0 else "-inf"
    return float(v) + 0.0  # no "-0"


def _named(names: list[str], values: np.ndarray | None) -> dict[str, Any] | None:
    if values is None:
        return None
    return {n: _num(v) for n, v in zip(names, values, strict=True)}


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return f"{v + 0.0:.10g}"


def _status_line(console, title: str, status: str, objective: Any, extra: str = "") -> None:
    color = "green" if status == "optimal" else "yellow"
    console.print(f"[bold]{title}[/bold]{extra}")
    console.print(f"status:    [{color}]{status}[/{color}]")
    console.print(f"objective: {_fmt(objective)}")


def _print_model(out: dict, limit: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for w in out["warnings"]:
        Console(stderr=True).print(f"[yellow]warning[/yellow] ({out['file']}): {w}")
    extra = f"  ({out['kind']}, {out['sense']}, {out['n_vars']} variables, {out['n_rows']} rows)"
    _status_line(console, out["file"], out["status"], out["objective"], extra)
    if out["kind"].startswith("MI") and out["mip_gap"] is not None:
        console.print(f"mip gap:   {_fmt(out['mip_gap'])}")
    sol = out["solution"]
    if sol is None:
        return
    table = Table("variable", "value", "reduced cost")
    rc = out["reduced_costs"] or {}
    for i, (name, value) in enumerate(sol.items()):
        if i == limit:
            table.add_row(f"... {len(sol) - limit} more (--json shows all)", "", "")
            break
        table.add_row(name, _fmt(value), _fmt(rc.get(name)))
    console.print(table)


def _print_allocation(alloc) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    res = alloc.result
    _status_line(console, alloc.problem.name, res.status, _num(res.objective))
    if not alloc.amounts:
        return
    acts = Table("activity", "amount", "value / unit", "contribution", "reduced cost")
    rc = res.reduced_costs
    for j, (name, act) in enumerate(alloc.problem.activities.items()):
        amount = alloc.amounts[name]
        acts.add_row(
            name,
            _fmt(amount),
            _fmt(act.value),
            _fmt(act.value * amount),
            _fmt(None if rc is None else float(rc[j])),
        )
    console.print(acts)
    if not alloc.problem.resources:
        return
    rows = Table("resource", "used", "min", "max", "slack", "shadow price")
    for name, r in alloc.problem.resources.items():
        used = alloc.usage[name]
        slacks = [
            r.max - used if r.max is not None else None,
            used - r.min if r.min is not None else None,
        ]
        slack = min(s for s in slacks if s is not None)
        price = None if alloc.shadow_prices is None else alloc.shadow_prices[name]
        rows.add_row(name, _fmt(used), _fmt(r.min), _fmt(r.max), _fmt(slack), _fmt(price))
    console.print(rows)
