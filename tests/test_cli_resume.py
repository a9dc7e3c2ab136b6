"""`optimkit train --resume` is honest (issue 11 item 5): options that differ from the
checkpoint's are refused with one line listing them, or, with --resume-override, applied and
recorded as applied; real checkpoints, written by an interrupted `optimkit train`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from optimkit.cli import app
from optimkit.train import PopulationTrainer

runner = CliRunner()
BASE = ["train", "--data", "iris", "--model", "mlp", "--hidden", "4", "--batch-size", "16",
        "--dtype", "float64", "--epochs", "4"]  # fmt: skip
FIRST = ["--optimizer", "sgd", "--lr", "0.01,0.1", "--momentum", "0.9"]


class Interrupted(RuntimeError):
    """Stands for a kill after the first checkpoint."""


def interrupted_run(tmp_path: Path, monkeypatch, *args: str) -> Path:
    """Run `optimkit train` until its first checkpoint is written, then stop it dead."""
    out = tmp_path / "run"
    save = PopulationTrainer.save_checkpoint

    def save_then_die(self, path):
        save(self, path)
        raise Interrupted

    with monkeypatch.context() as m:
        m.setattr(PopulationTrainer, "save_checkpoint", save_then_die)
        result = runner.invoke(app, [*BASE, *args, "--out", str(out), "--checkpoint-every", "1"])
    assert isinstance(result.exception, Interrupted), result.output
    assert (tmp_path / "run.checkpoint.pt").is_file() and not out.exists()
    return out


def one_line_error(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.mark.parametrize(
    ("changed", "needles"),
    [
        (["--optimizer", "sgd", "--lr", "0.5,0.5", "--momentum", "0.9"],
         ["lr: 0.01,0.1 in the checkpoint, 0.5,0.5 now"]),
        (["--optimizer", "sgd", "--lr", "0.5,0.5,0.5", "--momentum", "0.9"], ["lr: "]),
        (["--optimizer", "adam", "--lr", "0.01,0.1"],
         ["optimizer: sgd in the checkpoint, adam now", "momentum: 0.9 in the checkpoint"]),
        ([*FIRST, "--hidden", "8"], ["hidden: 4 in the checkpoint, 8 now"]),
        ([*FIRST, "--epochs", "6"], ["epochs: 4 in the checkpoint, 6 now"]),
        ([*FIRST, "--seed", "3"], ["seed: 0 in the checkpoint, 3 now"]),
    ],
)  # fmt: skip
def test_resume_with_other_options_is_refused_listing_them(tmp_path, monkeypatch, changed,
                                                            needles):  # fmt: skip
    out = interrupted_run(tmp_path, monkeypatch, *FIRST)
    before = (tmp_path / "run.checkpoint.pt").read_bytes()
    line = one_line_error([*BASE, *changed, "--out", str(out), "--checkpoint-every", "1",
                           "--resume"])  # fmt: skip
    assert "resume: the options differ from the checkpoint's" in line
    for needle in needles:
        assert needle in line, line
    assert not out.exists()
    assert (tmp_path / "run.checkpoint.pt").read_bytes() == before  # kept for a proper resume


def test_resume_with_the_same_options_continues(tmp_path, monkeypatch):
    out = interrupted_run(tmp_path, monkeypatch, *FIRST)
    result = runner.invoke(app, [*BASE, *FIRST, "--out", str(out), "--checkpoint-every", "1",
                                 "--resume", "--threads", "1", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["resumed"]["epoch"] == 1 and payload["resumed"]["overrides"] == {}
    assert [m["lr"] for m in payload["members"]] == [0.01, 0.1]
    assert not (tmp_path / "run.checkpoint.pt").exists()
    assert not (tmp_path / "run.checkpoint.json").exists()
    full = json.loads(runner.invoke(app, [*BASE, *FIRST, "--json"]).stdout)
    assert payload["members"] == full["members"]  # bit for bit as an uninterrupted run


def test_resume_override_applies_and_records(tmp_path, monkeypatch):
    out = interrupted_run(tmp_path, monkeypatch, *FIRST)
    args = [*BASE[:-1], "6", "--optimizer", "sgd", "--lr", "0.5,0.05", "--momentum", "0.9"]
    result = runner.invoke(app, [*args, "--out", str(out), "--checkpoint-every", "1", "--resume",
                                 "--resume-override", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    overrides = payload["resumed"]["overrides"]
    assert overrides["lr"] == {"checkpoint": [0.01, 0.1], "applied": [0.5, 0.05]}
    assert overrides["epochs"] == {"checkpoint": 4, "applied": 6}
    assert [m["lr"] for m in payload["members"]] == [0.5, 0.05]
    assert [m["epochs"] for m in payload["members"]] == [6, 6]
    config = json.loads((out / "config.json").read_text())
    assert config["lr"] == [0.5, 0.05] and config["resumed"]["overrides"] == overrides
    results = json.loads((out / "results.json").read_text())
    assert results["resumed"] == payload["resumed"]
    history = json.loads((out / "history.json").read_text())
    assert history  # the resumed run trained on and wrote its history


def test_override_cannot_change_what_a_checkpoint_is(tmp_path, monkeypatch):
    out = interrupted_run(tmp_path, monkeypatch, *FIRST)
    line = one_line_error([*BASE, "--optimizer", "adam", "--lr", "0.01,0.1", "--out", str(out),
                           "--checkpoint-every", "1", "--resume", "--resume-override"])  # fmt: skip
    assert "--resume-override cannot apply optimizer" in line
    line = one_line_error([*BASE, "--optimizer", "sgd", "--lr", "0.1,0.1,0.2", "--momentum",
                           "0.9", "--out", str(out), "--resume", "--resume-override"])  # fmt: skip
    assert "cannot apply the population's members" in line


def test_checkpoint_of_an_earlier_version_compares_its_members(tmp_path, monkeypatch):
    """Without OUT.checkpoint.json (written by earlier versions: no record of the options)
    the members stored in the checkpoint are compared; another optimizer no longer ends in
    KeyError: 'nesterov'."""
    out = interrupted_run(tmp_path, monkeypatch, *FIRST)
    (tmp_path / "run.checkpoint.json").unlink()
    line = one_line_error([*BASE, "--optimizer", "adam", "--lr", "0.01,0.1", "--out", str(out),
                           "--resume"])  # fmt: skip
    assert "momentum: 0.9,0.9 in the checkpoint, unset,unset now" in line
    line = one_line_error([*BASE, "--optimizer", "sgd", "--lr", "0.5,0.5", "--momentum", "0.9",
                           "--out", str(out), "--resume"])  # fmt: skip
    assert "lr: 0.01,0.1 in the checkpoint, 0.5,0.5 now" in line
    line = one_line_error([*BASE, *FIRST, "--hidden", "9", "--out", str(out), "--resume"])
    assert "does not fit these options" in line


def test_a_fresh_run_does_not_silently_replace_a_checkpoint(tmp_path, monkeypatch):
    out = interrupted_run(tmp_path, monkeypatch, *FIRST)
    line = one_line_error([*BASE, *FIRST, "--out", str(out), "--checkpoint-every", "1"])
    assert "pass --resume to continue it or --overwrite" in line
    result = runner.invoke(app, [*BASE, "--out", str(out), "--overwrite", "--json"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "run.checkpoint.pt").exists()


def test_a_damaged_checkpoint_is_one_line(tmp_path):
    (tmp_path / "run.checkpoint.pt").write_bytes(b"not a checkpoint")
    line = one_line_error([*BASE, "--out", str(tmp_path / "run"), "--resume"])
    assert "is not a readable checkpoint" in line
    torch.save({"something": 1}, tmp_path / "run.checkpoint.pt")
    line = one_line_error([*BASE, "--out", str(tmp_path / "run"), "--resume"])
    assert "is not an optimkit train checkpoint" in line
