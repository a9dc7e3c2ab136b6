"""MPS / LP files, the resource-allocation YAML format, and `optimkit solve` on both."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import typer
from scipy.optimize import linprog
from typer.testing import CliRunner

from optimkit.cli.solve import solve
from optimkit.solve import read_model, solve_lp, solve_model, solve_qp, write_model
from optimkit.solve.allocation import load_allocation, solve_allocation

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "budget_allocation.yaml"

MPS = """\
NAME          TESTLP
ROWS
 N  COST
 L  LIM1
 G  LIM2
 E  MYEQN
COLUMNS
    X1        COST         1.0   LIM1         1.0
    X1        LIM2         1.0
    X2        COST         2.0   LIM1         1.0
    X2        MYEQN       -1.0
    X3        COST        -1.0   MYEQN        1.0
RHS
    RHS       COST        -2.5
    RHS       LIM1         4.0   LIM2         1.0
    RHS       MYEQN        7.0
BOUNDS
 UP BND       X1           4.0
 LO BND       X2          -1.0
 UP BND       X2           1.0
ENDATA
"""

MILP_LP = """\
Maximize
 obj: 5 a + 4 b + 3 c
Subject To
 r1: 2 a + 3 b + c <= 5
 r2: 4 a + b + 2 c <= 11
 r3: 3 a + 4 b + 2 c <= 8
Bounds
 0 <= a <= 10
General
 a b c
End
"""

QP_LP = """\
Minimize
 obj: x + y + [ 2 x^2 + 2 x * y + 2 y^2 ] / 2
Subject To
 c1: x + y <= -3
Bounds
 x free
 y free
End
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def mps_as_arrays():
    """The MPS model above, written out by hand (objective constant = -RHS of COST = 2.5)."""
    c = np.array([1.0, 2.0, -1.0])
    A_ub = np.array([[1.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # LIM1 <= 4, LIM2 >= 1 as -x1 <= -1
    b_ub = np.array([4.0, -1.0])
    A_eq = np.array([[0.0, -1.0, 1.0]])
    b_eq = np.array([7.0])
    bounds = [(0, 4), (-1, 1), (0, None)]
    return c, A_ub, b_ub, A_eq, b_eq, bounds, 2.5


def test_read_mps(tmp_path):
    model = read_model(write(tmp_path, "m.mps", MPS))
    c, A_ub, b_ub, A_eq, b_eq, bounds, offset = mps_as_arrays()
    assert model.kind == "LP" and model.sense == "minimize"
    assert model.col_names == ["X1", "X2", "X3"]
    assert model.row_names == ["LIM1", "LIM2", "MYEQN"]
    np.testing.assert_array_equal(model.c, c)
    np.testing.assert_array_equal(model.A.toarray(), [[1, 1, 0], [1, 0, 0], [0, -1, 1]])
    np.testing.assert_array_equal(model.row_lower, [-np.inf, 1, 7])
    np.testing.assert_array_equal(model.row_upper, [4, np.inf, 7])
    np.testing.assert_array_equal(model.col_lower, [0, -1, 0])
    np.testing.assert_array_equal(model.col_upper, [4, 1, np.inf])
    assert model.offset == offset
    result = solve_model(model)
    ref = linprog(c, A_ub, b_ub, A_eq, b_eq, bounds, method="highs")
    assert result.status == "optimal"
    assert result.objective == pytest.approx(ref.fun + offset, rel=1e-12)
    np.testing.assert_allclose(result.x, ref.x, atol=1e-12)
    # The same file gzipped.
    gz = tmp_path / "m.mps.gz"
    gz.write_bytes(gzip.compress(MPS.encode()))
    assert solve_model(read_model(gz)).objective == pytest.approx(result.objective, rel=1e-15)


def test_read_lp_milp_and_qp(tmp_path):
    milp_model = read_model(write(tmp_path, "mi.lp", MILP_LP))
    assert milp_model.kind == "MILP" and milp_model.sense == "maximize"
    np.testing.assert_array_equal(milp_model.integrality, [1, 1, 1])
    direct = solve_lp(
        [5, 4, 3],
        [[2, 3, 1], [4, 1, 2], [3, 4, 2]],
        [5, 11, 8],
        bounds=[(0, 10), (0, None), (0, None)],
        integrality=1,
        sense="maximize",
    )
    from_file = solve_model(milp_model)
    assert from_file.objective == pytest.approx(direct.objective, rel=1e-12)
    # Brute force over the integer box: the optimum is 13 (a=2, b=0, c=1).
    best = max(
        5 * a + 4 * b + 3 * c
        for a in range(6)
        for b in range(6)
        for c in range(6)
        if 2 * a + 3 * b + c <= 5 and 4 * a + b + 2 * c <= 11 and 3 * a + 4 * b + 2 * c <= 8
    )
    assert from_file.objective == best

    qp_model = read_model(write(tmp_path, "q.lp", QP_LP))
    assert qp_model.kind == "QP"
    np.testing.assert_array_equal(qp_model.Q.toarray(), [[2, 1], [1, 2]])
    r = solve_model(qp_model)
    ref = solve_qp([[2, 1], [1, 2]], [1, 1], [[1, 1]], [-3])
    np.testing.assert_allclose(r.x, ref.x, atol=1e-10)
    # By symmetry x = y = -1.5: objective -3 + (4.5 + 4.5 + 4.5) / 2 = 3.75.
    assert r.objective == pytest.approx(3.75, rel=1e-10)


@pytest.mark.parametrize("suffix", [".mps", ".lp"])
def test_write_read_round_trip(tmp_path, suffix):
    model = read_model(write(tmp_path, "q.lp", QP_LP))
    out = tmp_path / f"copy{suffix}"
    write_model(model, out)
    again = read_model(out)
    np.testing.assert_array_equal(again.Q.toarray(), model.Q.toarray())
    assert solve_model(again).objective == pytest.approx(solve_model(model).objective, rel=1e-12)


def test_read_model_errors(tmp_path):
    with pytest.raises(ValueError, match=r"missing\.mps: file not found"):
        read_model(tmp_path / "missing.mps")
    with pytest.raises(ValueError, match=r"m\.txt: unknown model file type; expected one of"):
        read_model(write(tmp_path, "m.txt", MPS))
    bad = write(tmp_path, "bad.lp", "Maximize\n obj: 3 x + 2 y +\nSubject To\n c1: x <= 4 5\nEnd\n")
    with pytest.raises(ValueError, match=r"bad\.lp: HiGHS could not read the model"):
        read_model(bad)
    # HiGHS ignores (with a warning) a COLUMNS entry for an undefined row: kept as a warning.
    text = MPS.replace("X3        COST        -1.0", "X3        NOSUCH      -1.0")
    model = read_model(write(tmp_path, "warn.mps", text))
    assert any("NOSUCH" in w for w in model.warnings)


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        ("COST         1.0   LIM1         1.0", "COST         1.0   LIM1         abc",
         r"bad\.mps:8: COLUMNS: expected a finite number, got 'abc'"),
        ("X2        MYEQN       -1.0", "X2        MYEQN       inf",
         r"bad\.mps:11: COLUMNS: expected a finite number, got 'inf'"),
        ("RHS       COST        -2.5", "RHS       COST        1,5",
         r"bad\.mps:14: RHS: expected a number, got '1,5'"),
        ("LO BND       X2          -1.0", "LO BND       X2          nan",
         r"bad\.mps:19: BOUNDS: expected a number, got 'nan'"),
    ],
)  # fmt: skip
def test_mps_numbers_are_checked(tmp_path, old, new, match):
    """HiGHS's MPS reader takes a non-numeric field as 0; optimkit names the file and line."""
    assert old in MPS
    with pytest.raises(ValueError, match=match):
        read_model(write(tmp_path, "bad.mps", MPS.replace(old, new)))
    gz = tmp_path / "bad.mps.gz"
    gz.write_bytes(gzip.compress(MPS.replace(old, new).encode()))
    with pytest.raises(ValueError, match=match.replace("mps:", "mps\\.gz:")):
        read_model(gz)
    # Infinite bounds and a marker line stay valid.
    fine = MPS.replace("UP BND       X2           1.0", "UP BND       X2           inf")
    assert read_model(write(tmp_path, "fine.mps", fine)).col_upper[1] == np.inf


def test_nonconvex_qp_file_is_rejected(tmp_path):
    text = QP_LP.replace("2 x^2 + 2 x * y + 2 y^2", "2 x^2 + 6 x * y + 2 y^2")
    with pytest.raises(ValueError, match="not positive semidefinite"):
        solve_model(read_model(write(tmp_path, "nc.lp", text)))


# ---------------------------------------------------------------- resource allocation


def test_example_allocation_matches_linprog():
    problem = load_allocation(EXAMPLE)
    alloc = solve_allocation(problem)
    names = ["search", "social", "email", "display", "tv"]
    assert list(alloc.amounts) == names
    # The same LP written by hand from the file, solved by scipy (as a minimization).
    value = np.array([52, 38, 64, 21, 30.0])
    staff = np.array([2.0, 3.5, 4.0, 1.0, 0.5])
    brand = np.array([0, 0, 0, 1, 1.0])
    A_ub = np.vstack([np.ones(5), staff, -brand])
    b_ub = np.array([300, 600, -110.0])
    bounds = [(0, 120), (0, 90), (0, 40), (0, 100), (30, None)]
    ref = linprog(-value, A_ub, b_ub, bounds=bounds, method="highs")
    assert alloc.result.status == "optimal"
    assert alloc.result.objective == pytest.approx(-ref.fun, rel=1e-12)
    np.testing.assert_allclose(list(alloc.amounts.values()), ref.x, atol=1e-9)
    # Shadow prices: d(max value)/d(limit) = -d(min -value)/d(b); the >= row flips sign again.
    expected = -ref.ineqlin.marginals * np.array([1, 1, -1])
    np.testing.assert_allclose(list(alloc.shadow_prices.values()), expected, atol=1e-9)
    np.testing.assert_allclose(
        list(alloc.usage.values()), [ref.x.sum(), staff @ ref.x, brand @ ref.x], atol=1e-9
    )


def test_integer_allocation(tmp_path):
    text = """\
activities:
  a: {value: 3, integer: true}
  b: {value: 2, integer: true}
resources:
  cap: {use: {a: 2, b: 1.5}, max: 7.4}
"""
    alloc = solve_allocation(load_allocation(write(tmp_path, "i.yaml", text)))
    best = max(3 * a + 2 * b for a in range(5) for b in range(6) if 2 * a + 1.5 * b <= 7.4)
    assert alloc.result.objective == best
    assert alloc.shadow_prices is None  # a MILP has no duals


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "activities:\n  a: {valu: 3}\n",
            r"bad\.yaml:2:7: activities\.a\.valu: Extra inputs.*\(and 1 more problems\)",
        ),
        ("activities:\n  a: {value: x}\n", r"bad\.yaml:2:14: activities\.a\.value: "),
        ("activities:\n  a: {value: .nan}\n", r"bad\.yaml:2:14: activities\.a\.value: "),
        ("activities:\n  a: {value: 1, min: 3, max: 2}\n", r":2:6: activities\.a: min \(3\.0\)"),
        (
            "activities:\n  a: {value: 1}\nresources:\n  r: {use: {b: 1}, max: 1}\n",
            r"resource 'r' uses unknown activities \['b'\]; activities are \['a'\]",
        ),
        ("activities:\n  a: {value: 1}\nresources:\n  r: {use: 1}\n", r":4:6: resources\.r: a res"),
        ("activities:\n  a: {value: 1\n", r"bad\.yaml:3:1: invalid YAML"),
        ("- 1\n- 2\n", r"bad\.yaml: expected a mapping"),
        ("sense: up\nactivities:\n  a: {value: 1}\n", r"bad\.yaml:1:8: sense: Input should be"),
    ],
)
def test_allocation_file_errors(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        load_allocation(write(tmp_path, "bad.yaml", text))


# ---------------------------------------------------------------- CLI


@pytest.fixture
def cli():
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Group mode, as in `optimkit solve ...`."""

    app.command("solve")(solve)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["solve", *map(str, args)])


def test_cli_mps_table_and_json(cli, tmp_path):
    path = write(tmp_path, "m.mps", MPS)
    res = cli(path)
    assert res.exit_code == 0, res.output
    assert "optimal" in res.output and "-4.5" in res.output and "X3" in res.output
    res = cli(path, "--json")
    assert res.exit_code == 0
    out = json.loads(res.output)
    c, A_ub, b_ub, A_eq, b_eq, bounds, offset = mps_as_arrays()
    ref = linprog(c, A_ub, b_ub, A_eq, b_eq, bounds, method="highs")
    assert out["status"] == "optimal" and out["kind"] == "LP"
    assert out["objective"] == pytest.approx(ref.fun + offset, rel=1e-12)
    np.testing.assert_allclose(list(out["solution"].values()), ref.x, atol=1e-12)
    assert set(out["row_duals"]) == {"LIM1", "LIM2", "MYEQN"}


def test_cli_statuses_are_results_not_errors(cli, tmp_path):
    infeasible = "Minimize\n obj: x\nSubject To\n c: x <= -1\nEnd\n"
    res = cli(write(tmp_path, "inf.lp", infeasible), "--json")
    assert res.exit_code == 0
    assert json.loads(res.output)["status"] == "infeasible"
    unbounded = "Minimize\n obj: - x\nSubject To\n c: x - y <= 1\nEnd\n"
    out = json.loads(cli(write(tmp_path, "unb.lp", unbounded), "--json").output)
    assert out["status"] == "unbounded" and out["objective"] == "-inf"
    assert out["solution"] is None


def test_cli_allocation_example(cli):
    res = cli(EXAMPLE)
    assert res.exit_code == 0, res.output
    assert "Quarterly marketing budget" in res.output and "shadow price" in res.output
    out = json.loads(cli(EXAMPLE, "--json").output)
    alloc = solve_allocation(load_allocation(EXAMPLE))
    assert out["objective"] == pytest.approx(alloc.result.objective, rel=1e-12)
    assert out["amounts"] == pytest.approx(alloc.amounts)
    assert out["shadow_prices"]["budget"] == pytest.approx(alloc.shadow_prices["budget"])


@pytest.mark.parametrize(
    ("name", "text", "args", "match"),
    [
        ("missing.mps", None, [], "missing.mps: file not found"),
        ("bad.lp", "Maximize\n obj: 3 x +\nSubject To\n c: x <= 4 5\nEnd\n", [], "bad.lp: HiGHS"),
        ("m.csv", "a,b\n", [], "m.csv: unknown model file type"),
        ("bad.yaml", "activities:\n  a: {value: 1, typo: 2}\n", [], "bad.yaml:2:17: activities"),
        ("ok.lp", "Minimize\n obj: x\nEnd\n", ["--time-limit", "-1"], "--time-limit must be"),
    ],
)
def test_cli_bad_input_exits_2(cli, tmp_path, name, text, args, match):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    res = cli(path, *args)
    assert res.exit_code == 2
    assert match in res.output
    assert "Traceback" not in res.output
