"""A mathematical program in row form, and reading / writing standard MPS and LP files.

    minimize (or maximize)   c'x + 0.5 x'Qx + offset
    subject to               row_lower <= A x <= row_upper
                             col_lower <=   x <= col_upper
                             x_j integer where integrality[j] == 1

This is HiGHS's own model form (Huangfu & Hall, 2018); ``read_model`` uses HiGHS's MPS / LP
readers (fixed or free MPS, CPLEX LP format, optionally gzipped).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from optimkit.solve._checks import as_matrix, as_vector

FILE_SUFFIXES = (".mps", ".lp", ".mps.gz", ".lp.gz")


@dataclass
class Model:
    """A linear, mixed-integer or convex quadratic program (see the module docstring).

    ``A`` is stored as CSR, ``Q`` (symmetric, full) as CSC or None; ``integrality`` holds
    scipy.optimize.milp's codes (0 continuous, 1 integer, 2 semi-continuous, 3 semi-integer) or
    is None for a continuous model.
    """

    c: np.ndarray
    A: sp.csr_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    integrality: np.ndarray | None = None
    Q: sp.csc_matrix | None = None
    sense: str = "minimize"
    offset: float = 0.0
    col_names: list[str] | None = None
    row_names: list[str] | None = None
    name: str = ""
    warnings: list[str] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.c = as_vector("c", self.c)
        n = self.c.shape[0]
        if n == 0:
            raise ValueError("c must have at least one entry (one per variable)")
        self.A = as_matrix("A", self.A, n_cols=n)
        m = self.A.shape[0]
        self.row_lower = as_vector("row_lower", self.row_lower, m, allow_inf=True)
        self.row_upper = as_vector("row_upper", self.row_upper, m, allow_inf=True)
        self.col_lower = as_vector("col_lower", self.col_lower, n, allow_inf=True)
        self.col_upper = as_vector("col_upper", self.col_upper, n, allow_inf=True)
        for side, lo, hi in (
            ("row", self.row_lower, self.row_upper),
            ("col", self.col_lower, self.col_upper),
        ):
            bad = np.flatnonzero(lo > hi)
            if bad.size:
                raise ValueError(
                    f"{side}_lower > {side}_upper at index {int(bad[0])}; expected low <= high"
                )
        if self.integrality is not None:
            self.integrality = np.asarray(self.integrality, dtype=np.int32)
            if self.integrality.shape != (n,) or not np.isin(self.integrality, (0, 1, 2, 3)).all():
                raise ValueError(
                    f"integrality must hold {n} codes in {{0, 1, 2, 3}} (continuous, integer, "
                    "semi-continuous, semi-integer)"
                )
            if not self.integrality.any():
                self.integrality = None
        if self.Q is not None:
            self.Q = sp.csc_matrix(as_matrix("Q", self.Q, n_cols=n, n_rows=n))
            if self.Q.nnz == 0:
                self.Q = None
        if self.sense not in ("minimize", "maximize"):
            raise ValueError(f"sense must be 'minimize' or 'maximize', got {self.sense!r}")

    @property
    def n_vars(self) -> int:
        return int(self.c.shape[0])

    @property
    def n_rows(self) -> int:
        return int(self.A.shape[0])

    @property
    def kind(self) -> str:
        """'LP', 'MILP', 'QP' or 'MIQP'."""
        base = "QP" if self.Q is not None else "LP"
        return ("MI" + base) if self.integrality is not None else base


def read_model(path: str | Path) -> Model:
    """Read an MPS or CPLEX-LP file with HiGHS's readers.

    Raises ValueError naming the file and HiGHS's message when the file is missing, has an
    unknown suffix or cannot be parsed. Problems HiGHS only warns about (e.g. a COLUMNS entry
    for an undefined row, which it ignores) are kept in ``model.warnings``.
    """
    import highspy

    path = Path(path)
    if not any(path.name.lower().endswith(s) for s in FILE_SUFFIXES):
        raise ValueError(
            f"{path}: unknown model file type; expected one of {', '.join(FILE_SUFFIXES)}"
        )
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    if ".mps" in path.name.lower():
        _check_mps_numbers(path)
    h = highspy.Highs()
    messages: list[str] = []
    h.setOptionValue("log_to_console", False)
    h.cbLogging.subscribe(lambda event: messages.append(event.message.strip()))
    status = h.readModel(str(path))
    problems = [m for m in messages if m.startswith(("ERROR", "WARNING"))]
    if status == highspy.HighsStatus.kError:
        detail = "; ".join(_one_line(p.removeprefix("ERROR:")) for p in problems if "ERROR" in p)
        raise ValueError(f"{path}: HiGHS could not read the model ({detail or 'parse error'})")
    lp = h.getLp()
    hess = h.getModel().hessian_
    model = _from_highs(lp, hess, name=lp.model_name_ or path.stem)
    model.warnings = [_one_line(p.removeprefix("WARNING:")) for p in problems if "WARNING" in p]
    return model


# MPS sections whose lines end in numbers: which fields are numbers, and whether they may be
# infinite. COLUMNS / RHS / RANGES lines are ``[name] key value [key value]``; quadratic
# sections ``col col value``; BOUNDS ``type [set] col value`` (FR, MI, PL, BV: no value).
_MPS_PAIRS = {"COLUMNS": False, "RHS": True, "RANGES": True}
_MPS_LAST = {"QUADOBJ": False, "QMATRIX": False, "QSECTION": False, "QCMATRIX": False}
_MPS_VALUELESS_BOUNDS = {"FR", "MI", "PL", "BV"}


def _check_mps_numbers(path: Path) -> None:
    """Refuse an MPS numeric field that is not a number (HiGHS's reader takes ``abc`` as 0).

    Raises ValueError naming ``file:line``, the section and the token.
    """
    import gzip

    raw = gzip.decompress(path.read_bytes()) if path.name.lower().endswith(".gz") else None
    text = (raw if raw is not None else path.read_bytes()).decode("utf-8", "replace")
    section = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("*"):
            continue
        tokens = line.split()
        if not line[0].isspace():
            section = tokens[0].upper()
            continue
        if section in _MPS_PAIRS:
            if section == "COLUMNS" and "'MARKER'" in (t.upper() for t in tokens):
                continue
            fields = tokens[2::2] if len(tokens) % 2 else tokens[1::2]
            infinite = _MPS_PAIRS[section]
        elif section in _MPS_LAST:
            fields, infinite = tokens[-1:], False
        elif section == "BOUNDS":
            valueless = tokens[0].upper() in _MPS_VALUELESS_BOUNDS
            fields, infinite = ([] if valueless else tokens[-1:]), True
        else:
            continue
        for token in fields:
            try:
                value = float(token)
            except ValueError:
                value = float("nan")
            if value != value or (not infinite and abs(value) == float("inf")):
                kind = "a number" if infinite else "a finite number"
                raise ValueError(f"{path}:{number}: {section}: expected {kind}, got {token!r}")


def _one_line(message: str) -> str:
    """HiGHS's multi-line diagnostics (a source excerpt with carets) as one line: the first
    line, where (``--> file:line:col``) and the hint (``= help: ...``)."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    keep = [lines[0]]
    keep += [f"at {line[3:].strip()}" for line in lines[1:] if line.startswith("-->")]
    keep += [line.lstrip("= ").strip() for line in lines[1:] if line.startswith("= ")]
    return " ".join(" ".join(keep).split())


def write_model(model: Model, path: str | Path) -> None:
    """Write ``model`` to an MPS or LP file (format from the suffix) with HiGHS's writers."""
    from optimkit.solve.highs import to_highs

    path = Path(path)
    if not any(path.name.lower().endswith(s) for s in (".mps", ".lp")):
        raise ValueError(f"path must end in .mps or .lp, got {path.name!r}")
    h = to_highs(model)
    import highspy

    if h.writeModel(str(path)) != highspy.HighsStatus.kOk:
        raise ValueError(f"{path}: HiGHS could not write the model")


def _from_highs(lp, hess, name: str) -> Model:
    import highspy

    n, m = int(lp.num_col_), int(lp.num_row_)
    a = lp.a_matrix_
    shape = (m, n)
    start, index, value = (np.asarray(a.start_), np.asarray(a.index_), np.asarray(a.value_))
    if a.format_ == highspy.MatrixFormat.kRowwise:
        A = sp.csr_matrix((value, index, start), shape=shape)
    else:
        A = sp.csc_matrix((value, index, start), shape=shape).tocsr()
    integrality = None
    if len(lp.integrality_):
        integrality = np.array([int(v) for v in lp.integrality_], dtype=np.int32)
        implicit = getattr(highspy.HighsVarType, "kImplicitInteger", None)
        if implicit is not None:  # HiGHS's presolve marking: an integer all the same
            integrality[integrality == int(implicit)] = 1
    Q = None
    if int(hess.dim_) > 0 and len(hess.value_):
        d = int(hess.dim_)
        H = sp.csc_matrix(
            (np.asarray(hess.value_), np.asarray(hess.index_), np.asarray(hess.start_)),
            shape=(d, d),
        )
        if hess.format_ == highspy.HessianFormat.kTriangular:
            H = H + sp.tril(H, k=-1).T
        Q = sp.csc_matrix(H)
    sense = "maximize" if lp.sense_ == highspy.ObjSense.kMaximize else "minimize"
    return Model(
        c=np.asarray(lp.col_cost_, dtype=np.float64),
        A=A,
        row_lower=np.asarray(lp.row_lower_, dtype=np.float64),
        row_upper=np.asarray(lp.row_upper_, dtype=np.float64),
        col_lower=np.asarray(lp.col_lower_, dtype=np.float64),
        col_upper=np.asarray(lp.col_upper_, dtype=np.float64),
        integrality=integrality,
        Q=Q,
        sense=sense,
        offset=float(lp.offset_),
        col_names=list(lp.col_names_) or None,
        row_names=list(lp.row_names_) or None,
        name=name,
    )
