"""Sizes are checked before allocation (issue 11): the estimate counts the real parameters."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from optimkit.cli import app
from optimkit.models import Population
from optimkit.models.memory import COPIES, check_fits
from optimkit.models.spec import ModelSpec


@pytest.mark.parametrize(("model", "options"), [("mlp", {"hidden": (32, 16)}), ("linear", {})])
def test_estimate_counts_the_parameters_of_the_real_model(model, options):
    spec = ModelSpec(model, 20, 3, options)
    real = sum(p.numel() for p in spec.build(seed=0).parameters())
    need = check_fits(lambda: spec.build(seed=0), 7, torch.float32, torch.device("cpu"))
    assert need == COPIES * 7 * real * 4


def test_a_population_that_cannot_fit_is_refused_before_allocation():
    with pytest.raises(ValueError, match=r"^model: 3 member\(s\) x 75,000,000,000,010 parameters"):
        Population("mlp", 64, 10, [0, 1, 2], options={"hidden": (10**12,)})


def test_cli_refuses_it_with_exit_2_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["train", "--data", "digits", "--hidden", "1000000000000", "--out", str(out)]
    )
    assert result.exit_code == 2
    assert "parameters need at least" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()
