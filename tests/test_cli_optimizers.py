"""`optimkit optimizers` and everything the CLI, the tuner and the report derive from the
optimizer database: flags, packing of tuple arguments, spaces, compare's defaults, the README
table (issue 10 item 2)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from optimkit.cli import app
from optimkit.cli.options import DEFAULT_OPTIMIZER, CompareOptions, TrainOptions, load_options
from optimkit.optim import table
from optimkit.optim.database import COMPARE_DEFAULTS, ENTRIES, OPTIMIZERS
from optimkit.tune import space

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- optimizers:start -->", "<!-- optimizers:end -->"


def _specs():
    return [cls.spec for cls in OPTIMIZERS.values()]


def test_readme_table_is_the_generated_one():
    text = (ROOT / "README.md").read_text()
    assert START in text and END in text
    readme = text.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"
    assert readme == table.markdown(), (
        "README's optimizer table is out of date: replace the lines between the optimizers "
        "markers with the output of `optimkit optimizers --markdown`"
    )
    result = runner.invoke(app, ["optimizers", "--markdown"])
    assert result.exit_code == 0 and result.stdout == table.markdown()


def test_optimizers_json_and_table_list_the_database():
    result = runner.invoke(app, ["optimizers", "--json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert [r["name"] for r in records] == list(OPTIMIZERS)
    for r, spec in zip(records, _specs(), strict=True):
        assert r["reference"] == spec.reference and r["tolerance"] == spec.tolerance
        assert [h["name"] for h in r["hyperparameters"]] == [h.name for h in spec.hyperparameters]
        assert {h["name"]: h["default"] for h in r["hyperparameters"]} == spec.defaults()
    shown = runner.invoke(app, ["optimizers"])
    assert shown.exit_code == 0
    for name in OPTIMIZERS:
        assert name in shown.stdout
    assert len(table.rows()) == len(OPTIMIZERS)


def test_every_hyperparameter_of_the_database_has_a_train_flag():
    opts = {o for p in get_command(app).commands["train"].params for o in p.opts}  # type: ignore[attr-defined]
    for spec in _specs():
        for h in spec.hyperparameters:
            assert h.flag in opts, (spec.name, h.name)


def test_tuple_arguments_take_the_optimizers_own_defaults():
    """`--beta1` alone packs into the tuple argument with that optimizer's other defaults (the
    bug: beta2 was 0.999 for every optimizer)."""
    checked = 0
    for name, cls in OPTIMIZERS.items():
        spec = cls.spec
        parts = [h for h in spec.hyperparameters if h.index is not None and h.member]
        if not parts or parts[0].high is None:
            continue
        first = parts[0]
        value = (first.default + (first.low or 0.0)) / 2 if first.default else 0.5
        options = load_options(None, {"optimizer": name, first.name: str(value)}, TrainOptions)
        (member,) = options.members()
        member.pop("seed")
        expected = tuple(value if h is first else h.default
                         for h in sorted((h for h in spec.hyperparameters if h.arg == first.arg),
                                         key=lambda h: h.index))  # fmt: skip
        assert member == {first.arg: expected}, name
        # the tuner packs the same way
        assert space.member_of({"optimizer": name, first.name: value}) == member
        checked += 1
    assert checked >= 2


def test_population_is_the_product_and_flags_are_shared():
    name = next(n for n, c in OPTIMIZERS.items()
                if {"lr", "weight_decay"} <= {h.name for h in c.spec.members})  # fmt: skip
    options = load_options(None, {"optimizer": name, "lr": "0.1,0.2", "weight_decay": "0,1e-4",
                                  "seed": "1,2"}, TrainOptions)  # fmt: skip
    members = options.members()
    assert len(members) == 8
    assert [(m["lr"], m["weight_decay"], m["seed"]) for m in members[:2]] == [
        (0.1, 0.0, 1), (0.1, 0.0, 2)]  # fmt: skip


def test_space_tables_come_from_the_database():
    assert tuple(ENTRIES) == space.OPTIMIZER_NAMES
    for name, e in ENTRIES.items():
        assert space.DEFAULT_SPACES[name] == e.tuning_space()
        assert space.OPTIMIZER_ALIASES[name] == (e.optimizer, dict(e.fixed))
        assert set(space.OPTIMIZER_KEYS[name]) == {h.name for h in e.spec.hyperparameters}
        for h in e.spec.hyperparameters:
            assert h.name in (space.MEMBER_KEYS if h.member else space.SHAPE_KEYS)
        sp = space.SearchSpace.from_config(None, name)  # every default space is valid
        assert set(sp.params) == set(e.tuning_space())


def test_space_values_are_checked_against_the_spec():
    name, h = next((n, h) for n, c in OPTIMIZERS.items() for h in c.spec.members
                   if h.high is not None and n in ENTRIES)  # fmt: skip
    with pytest.raises(ValueError, match=rf"space.{h.name} \({name}\): {h.name}: expected"):
        space.SearchSpace.from_config({h.name: {"low": h.high / 2, "high": h.high + 1}}, name)
    other = next(k for k in space.MEMBER_KEYS
                 if k not in space.OPTIMIZER_KEYS[name] and k not in space.EXTRA_KEYS)  # fmt: skip
    with pytest.raises(ValueError, match=rf"space.{other}: not a hyperparameter of {name}"):
        space.SearchSpace.from_config({other: 0.5}, name)


def test_compare_defaults_are_the_databases():
    assert load_options(None, {}, CompareOptions).optimizers == list(COMPARE_DEFAULTS)


def test_report_synthetic_uses_the_database():
    from optimkit.report.synthetic import DEFAULT_OPTIMIZERS, synthetic_result

    assert DEFAULT_OPTIMIZERS == COMPARE_DEFAULTS
    result = synthetic_result(optimizers=(*COMPARE_DEFAULTS[:2], "my own <b>"), trials=6,
                              epochs=4, seeds=2)  # fmt: skip
    for name in COMPARE_DEFAULTS[:2]:
        searched = set(ENTRIES[name].tuning_space())
        assert set(result.leaderboard.set_index("optimizer").loc[name, "best_params"]) == searched


def _literals(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    docs = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            docs.add(id(body[0].value))
    consts = [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and id(n) not in docs]
    return {n.value for n in consts if isinstance(n.value, str)}


def test_no_optimizer_or_hyperparameter_name_is_spelled_out():
    """cli/, tune/ and report/ name no optimizer and no optimizer-specific hyperparameter (the
    one exception: the default optimizer of train and tune)."""
    names = set(ENTRIES)
    generic = {"lr", "weight_decay", "maximize"}  # taken by (nearly) every optimizer
    # (names of one or two letters, such as "r", are words too)
    hyper = {h.name for s in _specs() for h in s.hyperparameters if len(h.name) > 2} - generic
    for folder in ("cli", "tune", "report"):
        for path in sorted((ROOT / "src" / "optimkit" / folder).glob("*.py")):
            found = _literals(path) & (names | hyper)
            if path.name == "options.py":
                found -= {DEFAULT_OPTIMIZER}
            assert not found, f"{path.relative_to(ROOT)} spells out {sorted(found)}"
