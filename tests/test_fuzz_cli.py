"""Fuzzing the command line (issue 11 item 8): hypothesis generates options, YAML config files,
CSV/Parquet inputs and `optimkit solve` model files (MPS, LP, allocation YAML), run in-process.

The property: an input exits 0 (and then wrote its complete results) or 2 with exactly one line
``error: ...`` and nothing left behind; never a traceback, never exit 1. Inputs built bad by
construction must exit 2; good ones must still run. Seeded and derandomized: the default run
generates over 500 cases in a few seconds (tiny data, one epoch, mostly refused before
training); ``OPTIMKIT_FUZZ_SLOW=1`` (or ``-m slow``) runs the slow test with ten times more.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from optimkit.cli import app

runner = CliRunner()
SLOW = 10


@pytest.fixture(autouse=True)
def _one_command(monkeypatch):
    """Build the click command once (typer rebuilds its hundreds of options per invoke)."""
    monkeypatch.setattr(typer.testing, "_get_command", _command)


@functools.cache
def _command(typer_app):
    from typer.main import get_command

    return get_command(typer_app)


def _settings(n: int):
    return settings(max_examples=n, derandomize=True, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))  # fmt: skip


def _slow_enabled(request) -> bool:
    return os.environ.get("OPTIMKIT_FUZZ_SLOW") == "1" or "slow" in (
        request.config.getoption("-m") or ""
    )


def check(args: list[str], folder: Path, bad: bool | None = None) -> int:
    """Run `args`; exit 0, or 2 with one `error:` line and `folder` left as it was."""
    before = sorted(os.listdir(folder))
    result = runner.invoke(app, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{args}: {type(result.exception).__name__}: {result.exception}")
    code = result.exit_code
    assert code in (0, 2), (args, code, result.output)
    if code == 2:
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.output)
        assert sorted(os.listdir(folder)) == before, (args, "left", os.listdir(folder))
    if bad is not None:
        assert (code == 2) == bad, (args, result.output)
    return code


@pytest.fixture
def scratch():
    folder = Path(tempfile.mkdtemp(prefix="fuzz-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _fresh(folder: Path) -> Path:
    """An empty sub-folder for one example (hypothesis reuses the fixture's folder)."""
    sub = Path(tempfile.mkdtemp(dir=folder))
    return sub


# ------------------------------------------------------------------------- CLI options
TRAIN = ["train", "--data", "iris", "--model", "mlp", "--hidden", "2", "--epochs", "1",
         "--batch-size", "0"]  # fmt: skip
GOOD = {
    "--lr": ["0.01", "1e-3,0.1", "0.5"],
    "--weight-decay": ["0", "1e-4"],
    "--hidden": ["2", "3,2"],
    "--activation": ["relu", "tanh"],
    "--dropout": ["0", "0.1"],
    "--seed": ["0", "1,2"],
    "--batch-size": ["0", "16"],
    "--val-fraction": ["0.2"],
    "--schedule": ["cosine"],
    "--patience": ["1"],
    "--clip-grad-norm": ["1.0"],
}
BAD = {
    "--lr": ["", ",", "1,,2", "abc", "nan", "inf", "-1", "1e999", "0x", "--", "1;2", "true"],
    "--weight-decay": ["", "-0.5", "x"],
    "--momentum": ["2", "-1", "x", "0.9"],  # adam does not take momentum at all
    "--hidden": ["", "0", "-2", "2,,2", "x", "1.5", "1e12", "100000000000000"],
    "--epochs": ["0", "-1", "x", "1.5", "", "1e12", str(2**70)],
    "--batch-size": ["-1", "x", ""],
    "--seed": ["-1", "1e12", "x", str(2**40), ""],
    "--val-fraction": ["0", "1", "2", "-0.1", "x", "nan"],
    "--test-fraction": ["0", "1.5", "x"],
    "--dropout": ["1", "-0.1", "x"],
    "--optimizer": ["", "adamm", "torch.optim.Adam", "ad am"],
    "--model": ["", "transformer", "no.such:thing", "os:system"],
    "--data": ["", "nope", "nope.csv", "/dev/null", "/", "digits,iris"],
    "--activation": ["nope", ""],
    "--schedule": ["nope", ""],
    "--threads": ["0", "x", "1e12", str(10**12)],
    "--dtype": ["float16", "x"],
    "--device": ["tpu", ""],
    "--task": ["clustering", ""],
    "--impute": ["zero"],
    "--pca": ["0", "-1", "x", "inf"],
    "--select-k": ["0", "x"],
    "--monitor": ["nope"],
    "--patience": ["0", "x"],
    "--min-delta": ["-1", "nan", "x"],
    "--clip-grad-norm": ["0", "-1", "x"],
    "--out": ["", "/", "/dev/null/x", "/proc/fuzz", "/proc/1/fuzz"],
    "--no-such-flag": ["1"],
    "--config": ["/nonexistent.yaml", "/dev/null/x.yaml", "/proc"],
}


@st.composite
def train_args(draw, bad: bool):
    args = list(TRAIN)
    for flag in draw(st.lists(st.sampled_from(sorted(GOOD)), max_size=3, unique=True)):
        args += [flag, draw(st.sampled_from(GOOD[flag]))]
    if bad:
        flag = draw(st.sampled_from(sorted(BAD)))
        value = draw(st.sampled_from(BAD[flag]))
        args += [flag] if flag == "--no-such-flag" else [flag, value]
    return args


def _bad_options(scratch: Path, n: int) -> None:
    @_settings(n)
    @given(args=train_args(bad=True))
    def run(args):
        check([*args, "--json"], scratch, bad=True)

    run()


def _good_options(scratch: Path, n: int) -> None:
    @_settings(n)
    @given(args=train_args(bad=False))
    def run(args):
        sub = _fresh(scratch)
        out = sub / "run"
        assert check([*args, "--out", str(out), "--json"], sub, bad=False) == 0
        assert sorted(os.listdir(out)) == [
            "config.json", "history.csv", "history.json", "model", "results.json"]  # fmt: skip
        assert os.listdir(sub) == ["run"]

    run()


def _any_text(scratch: Path, n: int) -> None:
    """Arbitrary text for any option of train, tune and compare: 0 or a one-line 2."""
    flags = sorted({*GOOD, *BAD} - {"--no-such-flag", "--config", "--threads"})
    text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)

    @_settings(n)
    @given(
        cmd=st.sampled_from(["train", "tune", "compare"]),
        flag=st.sampled_from(flags),
        value=text | st.sampled_from(["1", "0", "-0", "1e-3", "1,2", " 1", "1 ", "True"]),
    )
    def run(cmd, flag, value):  # fmt: skip
        sub = _fresh(scratch)
        if cmd == "train":
            args = list(TRAIN)
        else:  # refused before any trial: every value here is checked before training
            args = [cmd, "--data", "iris", "--hidden", "2", "--epochs", "1", "--trials", "0"]
        check([*args, flag, value, "--out", str(sub / "run"), "--json"], sub,
              bad=True if cmd != "train" else None)  # fmt: skip

    run()


@pytest.mark.parametrize(("part", "n"), [("bad", 150), ("good", 12), ("text", 120)])
def test_cli_options(scratch, part, n):
    {"bad": _bad_options, "good": _good_options, "text": _any_text}[part](scratch, n)


# ------------------------------------------------------------------------- config files
KEYS = ["data", "model", "hidden", "epochs", "lr", "optimizer", "patience", "seed", "momentum",
        "dropout", "no_such_key", "out", "weight_decay", "val_fraction"]  # fmt: skip
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0.5, 1e300, -1e-3, 2**64]),
    st.sampled_from(["iris", "mlp", "adam", "sgd", "", "x", "1,,2", "0.1,0.2", "nan", "inf"]),
    st.lists(st.sampled_from([0.1, 1, "a", None, True, ""]), max_size=3),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 2), max_size=2),
)  # fmt: skip


@st.composite
def config_text(draw) -> bytes:
    kind = draw(st.sampled_from(["mapping", "mapping", "mapping", "raw", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=40))
    if kind == "raw":
        return draw(st.sampled_from([
            "epochs: 1\nepochs: 2\n", "epochs: 1\nbatch_size: 1\nbatch-size: 2\n", "- 1\n- 2\n",
            "a: [1\n", "{", "key: value: x\n", "\t- x", "null\n", "", "epochs: !!python/none\n",
            "42\n", "hidden: [2, , 3]\n", "\xff\xfe", "lr: 1e-3,,\n", "epochs: true\n",
        ])).encode("utf-8", "surrogatepass")  # fmt: skip
    keys = draw(st.lists(st.sampled_from(KEYS), max_size=4, unique=True))
    lines = ["data: iris", "hidden: 2", "epochs: 1"]
    for key in keys:
        value = draw(VALUES)
        import yaml

        lines.append(yaml.safe_dump({key: value}, default_flow_style=True).strip()[1:-1])
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("n", [110])
def test_config_files(scratch, n):
    @_settings(n)
    @given(text=config_text(), cmd=st.sampled_from(["train", "train", "tune", "compare"]))
    def run(text, cmd):
        sub = _fresh(scratch)
        cfg = sub / "config.yaml"
        cfg.write_bytes(text)
        args = [cmd, "-c", str(cfg), "--out", str(sub / "run"), "--json"]
        if cmd != "train":
            args += ["--trials", "0"]  # validated, never trained
        check(args, sub, bad=True if cmd != "train" else None)

    run()


# ---------------------------------------------------------------------- CSV and Parquet
CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.integers(-5, 5), st.sampled_from(["a", "", "1e999", " ", "nan", "-inf", "1,5"]),
)  # fmt: skip


@st.composite
def table(draw):
    n_cols = draw(st.integers(1, 4))
    n_rows = draw(st.integers(0, 12))
    names = draw(st.lists(st.sampled_from(["x", "y", "z", "", "x.1", " y"]), min_size=n_cols,
                          max_size=n_cols))  # fmt: skip
    clean = draw(st.booleans())
    rows = []
    for i in range(n_rows):
        if clean:
            rows.append([float(i % 3 + j) + 0.1 * i for j in range(n_cols)])
        else:
            rows.append([draw(CELLS) for _ in range(n_cols)])
    return names, rows, draw(st.sampled_from(["csv", "csv", "parquet", "garbage"]))


@pytest.mark.parametrize("n", [70])
def test_data_files(scratch, n):
    @_settings(n)
    @given(spec=table(), target=st.sampled_from(["y", "nope", ""]))
    def run(spec, target):
        names, rows, fmt = spec
        sub = _fresh(scratch)
        data = sub / f"data.{'parquet' if fmt == 'parquet' else 'csv'}"
        if fmt == "garbage":
            data.write_bytes(b"\x00\xff\xfe binary \x80\x81\n1,2\n")
        else:
            frame = pd.DataFrame(rows, columns=pd.Index(names), dtype=object)
            if fmt == "csv":
                frame.to_csv(data, index=False)
            else:
                try:
                    frame.astype(str).to_parquet(data)
                except Exception:  # pyarrow refuses the frame itself (duplicate names)
                    return
        args = ["train", "--data", str(data), "--target", target, "--hidden", "2", "--epochs",
                "1", "--out", str(sub / "run"), "--json"]  # fmt: skip
        before = {data.name}
        check(args, sub)
        assert before <= set(os.listdir(sub))

    run()


def test_a_clean_csv_still_trains(scratch):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    frame = pd.DataFrame(x, columns=["a", "b", "c"]).assign(y=(x[:, 0] > 0).astype(int))
    for suffix in ("csv", "parquet"):
        path = scratch / f"d.{suffix}"
        frame.to_csv(path, index=False) if suffix == "csv" else frame.to_parquet(path)
        args = ["train", "--data", str(path), "--target", "y", "--hidden", "2", "--epochs", "1",
                "--out", str(scratch / f"run-{suffix}"), "--json"]  # fmt: skip
        assert check(args, scratch, bad=False) == 0


# ------------------------------------------------------------------------- solve files
MPS = """NAME          T
ROWS
 N  COST
 L  LIM1
COLUMNS
    X1        COST         1.0   LIM1         1.0
    X2        COST         2.0   LIM1         1.0
RHS
    RHS       LIM1         4.0
BOUNDS
 UP BND       X1           4.0
ENDATA
"""
LP = """Maximize
 obj: 5 a + 4 b
Subject To
 r1: 2 a + 3 b <= 5
Bounds
 0 <= a <= 10
End
"""
ALLOCATION = """name: t
sense: maximize
activities:
  a: {value: 2, max: 10}
  b: {value: 3, max: 5}
resources:
  budget: {use: 1, max: 8}
"""
TOKENS = ["abc", "1e999", "nan", "-inf", "", "0", "X9", "\t", "{", "]", ":", "-", "1,5", "é"]


@st.composite
def model_file(draw):
    suffix, text = draw(st.sampled_from([(".mps", MPS), (".lp", LP), (".yaml", ALLOCATION)]))
    words = text.split(" ")
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(words) - 1))
        words[i] = draw(st.sampled_from(TOKENS))
    lines = " ".join(words).split("\n")
    if draw(st.booleans()) and len(lines) > 2:
        del lines[draw(st.integers(0, len(lines) - 1))]
    raw = "\n".join(lines).encode()
    if draw(st.integers(0, 9)) == 0:
        raw = draw(st.binary(max_size=30))
    return suffix, raw


@pytest.mark.parametrize("n", [120])
def test_solve_files(scratch, n):
    @_settings(n)
    @given(
        spec=model_file(),
        extra=st.sampled_from(
            [[], ["--json"], ["--time-limit", "0"], ["--limit", "-1"], ["--time-limit", "x"]]
        ),
    )
    def run(spec, extra):  # fmt: skip
        suffix, raw = spec
        sub = _fresh(scratch)
        path = sub / f"model{suffix}"
        path.write_bytes(raw)
        check(["solve", str(path), *extra], sub)

    run()


def test_solve_good_files_still_solve(scratch):
    for suffix, text in ((".mps", MPS), (".lp", LP), (".yaml", ALLOCATION)):
        path = scratch / f"m{suffix}"
        path.write_text(text)
        assert check(["solve", str(path), "--json"], scratch, bad=False) == 0


# ------------------------------------------------------------------------------ slow
@pytest.mark.slow
def test_fuzz_more(scratch, request):
    """Ten times the cases of the default run (opt-in: OPTIMKIT_FUZZ_SLOW=1 or -m slow)."""
    if not _slow_enabled(request):
        pytest.skip("opt-in: OPTIMKIT_FUZZ_SLOW=1 or -m slow")
    _bad_options(scratch, 150 * SLOW)
    _any_text(scratch, 120 * SLOW)
    _good_options(scratch, 12 * SLOW)
