"""Strict input: bad list items, out-of-range hyperparameters, duplicate YAML keys, bools for
numbers, bad optimizer lists and typed-option errors are one line `error: ...`, exit 2, before
any training (issue 11 item 4); train, tune and compare share one options model (item 6)."""

from __future__ import annotations

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from optimkit.cli import app
from optimkit.cli.options import (
    CompareOptions,
    SharedOptions,
    TrainOptions,
    TuneOptions,
    UsageError,
    load_options,
)
from optimkit.optim.database import OPTIMIZERS

runner = CliRunner()
COMMANDS = {"train": TrainOptions, "tune": TuneOptions, "compare": CompareOptions}


@pytest.fixture(autouse=True)
def _no_training(monkeypatch):
    """Every case here must be refused before data is loaded or anything is trained."""

    def trained(*args, **kwargs):
        raise AssertionError("reached training")

    monkeypatch.setattr("optimkit.cli.train.run_train", trained)
    monkeypatch.setattr("optimkit.cli.tune._prepare", trained)


def _one_line_error(args: list[str], *needles: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def _bounded() -> tuple[str, str, float]:
    """An optimizer and a per-member hyperparameter of it with an upper bound (database)."""
    for name, cls in OPTIMIZERS.items():
        for h in cls.spec.hyperparameters:
            if h.member and h.high is not None:
                return name, h.name, h.high
    raise AssertionError("no bounded hyperparameter in the database")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["train", "--lr", "1e-3,,"], ("lr: empty item in '1e-3,,'",)),
        (["train", "--lr", "1,,2"], ("lr: empty item in '1,,2'",)),
        (["train", "--lr", ","], ("lr: empty item",)),
        (["train", "--lr", "1e-3,fast"], ("lr: 'fast' is not a number",)),
        (["train", "--lr", "nan"], ("lr: expected a finite number",)),
        (["train", "--hidden", "1,,2"], ("hidden: empty item in '1,,2'",)),
        (["train", "--hidden", "8,x"], ("hidden: 'x' is not an integer",)),
        (["train", "--weight-decay", ""], ("weight_decay: expected one or more",)),
        (["train", "--clip-grad-norm", "0"], ("clip_grad_norm: expected 0 < clip_grad_norm",)),
        (["train", "--seed", "1e12"], ("seed: '1e12' is not an integer",)),
        (["train", "--seed", str(10**12)], ("seed: expected 0 <= seed <= 4294967295",)),
        (["tune", "--seed", str(10**12)], ("seed:",)),
        (["train", "--threads", "1e12"], ("--threads",)),
        (["train", "--threads", str(10**12)], ("threads:",)),
        (["train", "--epochs", "abc"], ("--epochs", "valid integer")),
        (["tune", "--trials", "many"], ("--trials",)),
        (["compare", "--population", "1.5"], ("--population",)),
        (["train", "--no-such-option"], ("No such option: --no-such-option",)),
        (["compare", "--optimizers", ""], ("optimizers: expected one or more",)),
        (["compare", "--optimizers", "sgd,,sgd"], ("optimizers: empty item",)),
        (["compare", "--optimizers", "sgd,sgd"], ("optimizers: 'sgd' is given twice",)),
        (["compare", "--optimizers", "sgd,SGD"], ("optimizers: 'sgd' is given twice",)),
        (["compare", "--optimizers", "sgd,sgdd"], ("optimizers: unknown name 'sgdd'; valid:",)),
        (["compare", "--target-value", "inf"], ("target_value: expected a finite number",)),
        (["compare", "--sampler", "bayes"], ("sampler: unknown name 'bayes'; valid: tpe",)),
        (["tune", "--metric", "accuracyy"], ("accuracyy",)),
        (["tune", "--optimizer", "nope"], ("optimizer: unknown name 'nope'",)),
    ],
)
def test_bad_flags_are_one_line_and_refused_before_training(args, needles):
    _one_line_error(args, *needles)


def test_out_of_range_hyperparameter_names_option_and_optimizer():
    optimizer, name, high = _bounded()
    flag = "--" + name.replace("_", "-")
    _one_line_error(["train", "--optimizer", optimizer, flag, f"0.5,{high + 1}"],
                    f"{name}: expected", f"(optimizer {optimizer})")  # fmt: skip


def test_hyperparameter_the_optimizer_does_not_take():
    names = {n: {h.name for h in c.spec.hyperparameters} for n, c in OPTIMIZERS.items()}
    optimizer, other = next((o, h) for o, takes in names.items()
                            for n in names for h in names[n] if h not in takes)  # fmt: skip
    flag = "--" + other.replace("_", "-")
    kind = {h.name: h.kind for c in OPTIMIZERS.values() for h in c.spec.hyperparameters}[other]
    args = [flag] if kind == "bool" else [flag, "1"]
    _one_line_error(["train", "--optimizer", optimizer, *args],
                    f"{other}: optimizer {optimizer!r} does not take it")  # fmt: skip


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("epochs: 2\nlr: 0.1\nepochs: 3\n", ("line 3: duplicate key 'epochs' (first at line 1)",)),
        ("batch-size: 2\nbatch_size: 3\n", ("line 2: duplicate key 'batch_size'",)),
        ("epochs: true\n", ("epochs: expected an integer, got True",)),
        ("val_fraction: false\n", ("val_fraction: expected a number",)),
        ("lr: [0.1, null]\n", ("lr: item 2 is empty",)),
        ("lr: '1,,2'\n", ("lr: empty item in '1,,2'",)),
        ("hidden: [8, '']\n", ("hidden: item 2 is empty",)),
        ("lr: [0.1, true]\n", ("lr: expected a number, got True",)),
        ("seed: [1, 2.5]\n", ("seed: expected an integer",)),
    ],
)
def test_bad_train_configs_name_the_key_and_file(tmp_path, text, needles):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(text)
    line = _one_line_error(["train", "-c", str(cfg)], *needles)
    assert str(cfg) in line


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_refuses_duplicate_keys_and_bools(tmp_path, command):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("data: iris\nepochs: 2\ndata: wine\n")
    _one_line_error([command, "-c", str(cfg)], str(cfg), "line 3: duplicate key 'data'")
    cfg.write_text("epochs: true\n")
    _one_line_error([command, "-c", str(cfg)], "epochs: expected an integer")
    cfg.write_text("hidden: 8,,4\n")
    _one_line_error([command, "-c", str(cfg)], "hidden: empty item")


def test_binary_config_names_the_file(tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_bytes(b"\xff\xfe\x00epochs")
    _one_line_error(["train", "-c", str(cfg)], str(cfg), "not UTF-8")


# ------------------------------------------------------------------- one options model
SHARED = list(SharedOptions.model_fields)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_shared_options_are_flags_and_keys_of_every_command(command):
    params = {p.name for p in get_command(app).commands[command].params}  # type: ignore[attr-defined]
    assert set(SHARED) <= params
    assert set(SHARED) <= set(COMMANDS[command].model_fields)
    for flag in ("--impute", "--pca", "--select-k", "--task", "--val-fraction", "--dropout"):
        opts = [o for p in get_command(app).commands[command].params for o in p.opts]  # type: ignore[attr-defined]
        assert flag in opts


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_shared_config_loads_in_every_command(tmp_path, command):
    cfg = tmp_path / "shared.yaml"
    cfg.write_text("data: iris\ntask: classification\nimpute: median\npca: 3\nselect-k: 2\n"
                   "hidden: [8, 4]\nepochs: 3\nbatch-size: 16\nthreads: 1\ndtype: float64\n"
                   "compile: false\n")  # fmt: skip
    options = load_options(cfg, {}, COMMANDS[command])
    assert (options.impute, options.pca, options.select_k, options.task) == (
        "median", 3.0, 2, "classification")  # fmt: skip
    assert options.hidden == [8, 4] and options.epochs == 3


def test_flags_override_the_config(tmp_path):
    cfg = tmp_path / "shared.yaml"
    cfg.write_text("impute: median\n")
    assert load_options(cfg, {"impute": "mean"}, TuneOptions).impute == "mean"
    with pytest.raises(UsageError, match="impute: Input should be"):
        load_options(None, {"impute": "zero"}, CompareOptions)


def test_an_empty_study_name_is_refused(tmp_path):
    from typer.testing import CliRunner

    from optimkit.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["tune", "--data", "digits", "--trials", "1",
                                      "--study-name", "", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 2
    assert result.output.strip() == "error: study_name: expected a non-empty name (or leave it out)"
    assert not out.exists()
