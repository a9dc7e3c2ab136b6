"""One way to write results (issue 11 item 2): `optimkit.outputs` (atomic files and folders,
stale temporaries of killed runs), and `--out` checked before any work in train, tune,
compare and app, with one line and exit 2; a refused run leaves nothing behind.

The tests run as root, for whom permission bits do not make a folder read-only: the
"read-only folder" cases use a folder made immutable with ``chattr +i`` (skipped where the
file system does not support it), a path under /proc/1 (nothing can be created there), and
for other users a ``chmod 0o555`` folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from optimkit.cli import app
from optimkit.outputs import (
    PREFIX,
    OutputError,
    atomic_folder,
    atomic_write,
    check_out,
    remove_stale,
    staging_folder,
)

runner = CliRunner()
TRAIN = ["train", "--data", "iris", "--hidden", "4", "--epochs", "1"]
TUNE = ["tune", "--data", "iris", "--hidden", "4", "--epochs", "1", "--trials", "2",
        "--population", "2"]  # fmt: skip
COMPARE = ["compare", "--data", "iris", "--hidden", "4", "--epochs", "1", "--trials", "1",
           "--population", "1", "--seeds", "1", "--optimizers", "sgd"]  # fmt: skip
COMMANDS = {"train": TRAIN, "tune": TUNE, "compare": COMPARE}


@pytest.fixture
def read_only(tmp_path):
    """A folder nothing can be created in, even by root."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if shutil.which("chattr") is None:
        pytest.skip("root and no chattr: no read-only folder to test with")
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i not supported here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def one_line(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def bad_outs(tmp_path: Path) -> dict[str, tuple[str, str]]:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    return {
        "file": (str(blocker), "is a file, not a folder"),
        "below-file": (str(blocker / "x"), "which is a file"),
        "dev-null": ("/dev/null/x", "is below '/dev/null', which is a file"),
        "proc": ("/proc/optimkit-x", "is not writable"),
        "proc-1": ("/proc/1/x", "is not writable"),
        "root": ("/", "is the root folder"),
        "empty": ("", "out: expected a folder, got ''"),
    }


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("case", ["file", "below-file", "dev-null", "proc", "proc-1", "root",
                                  "empty"])  # fmt: skip
def test_bad_out_is_refused_before_any_work(tmp_path, monkeypatch, command, case):
    def trained(*args, **kwargs):
        raise AssertionError("reached the data or training")

    monkeypatch.setattr("optimkit.data.load_dataset", trained)
    monkeypatch.chdir(tmp_path)
    out, message = bad_outs(tmp_path)[case]
    before = sorted(os.listdir(tmp_path))
    assert message in one_line([*COMMANDS[command], "--out", out])
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_read_only_out_is_refused(read_only, command):
    line = one_line([*COMMANDS[command], "--out", str(read_only / "run")])
    assert "is not writable" in line
    assert os.listdir(read_only) == []


def test_train_refuses_to_replace_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "holds the working folder" in one_line([*TRAIN, "--out", ".", "--overwrite"])
    assert "holds the working folder" in one_line([*TRAIN, "--out", "sub/..", "--overwrite"])


def test_app_checks_out_before_running(tmp_path, monkeypatch):
    import optimkit.apps as apps
    from optimkit.apps import App

    ran = []
    fake = App("fake", "a test app", "nothing", run=lambda options: ran.append(options))
    monkeypatch.setitem(apps.APPS, "fake", fake)
    for out, message in bad_outs(tmp_path).values():
        if out:  # `app --out ''` is the default folder
            assert message in one_line(["app", "fake", "--out", out])
    assert ran == []


@pytest.mark.parametrize("command", ["tune", "compare"])
def test_failed_search_leaves_no_study_file(tmp_path, monkeypatch, command):
    """A run that fails after the storage was opened but before anything trained leaves
    neither the study file nor the output folder (nor a --storage file it created)."""

    def fails(*args, **kwargs):
        raise ValueError("space: refused for the test")

    monkeypatch.setattr("optimkit.tune.Tuner", fails)
    monkeypatch.setattr("optimkit.tune.compare.compare", fails)
    out = tmp_path / "new" / "run"
    args = [*COMMANDS[command], "--json"]
    assert "refused for the test" in one_line([*args, "--out", str(out)])
    assert not (tmp_path / "new").exists()
    journal = tmp_path / "study.journal"
    one_line([*args, "--out", str(out), "--storage", f"journal:{journal}"])
    assert sorted(os.listdir(tmp_path)) == []
    # an existing folder keeps what it had, and only that
    out.mkdir(parents=True)
    (out / "keep.txt").write_text("mine")
    one_line([*args, "--out", str(out)])
    assert os.listdir(out) == ["keep.txt"]


def test_failed_train_leaves_nothing(tmp_path):
    out = tmp_path / "new" / "run"
    assert "nope" in one_line([*TRAIN, "--data", "nope.csv", "--out", str(out)])
    one_line([*TRAIN, "--model", "transformer", "--out", str(out), "--checkpoint-every", "1"])
    assert os.listdir(tmp_path) == []


def test_tune_out_root_refused_and_good_out_runs(tmp_path):
    assert "root folder" in one_line([*TUNE, "--out", "/"])
    result = runner.invoke(app, [*TUNE, "--out", str(tmp_path / "t"), "--json"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "t" / "results.json").is_file()
    assert [p for p in os.listdir(tmp_path / "t") if p.startswith(PREFIX)] == []


# ---------------------------------------------------------------------------- the helper
def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "a.json"
    atomic_write(target, "one")
    atomic_write(target, b"two")
    assert target.read_text() == "two" and os.listdir(target.parent) == ["a.json"]
    assert oct(target.stat().st_mode & 0o777) == "0o644"
    with pytest.raises(TypeError):
        atomic_write(target, 3)  # type: ignore[arg-type]
    assert target.read_text() == "two" and os.listdir(target.parent) == ["a.json"]


def test_atomic_folder_all_or_nothing(tmp_path):
    out = tmp_path / "out"
    with atomic_folder(out) as staging:
        (staging / "a").write_text("1")
        assert not out.exists()
    assert os.listdir(out) == ["a"]
    with pytest.raises(RuntimeError), atomic_folder(out) as staging:
        (staging / "b").write_text("2")
        raise RuntimeError("dies half-way")
    assert os.listdir(out) == ["a"] and sorted(os.listdir(tmp_path)) == ["out"]
    with atomic_folder(out) as staging:
        (staging / "c").write_text("3")
    assert os.listdir(out) == ["c"] and sorted(os.listdir(tmp_path)) == ["out"]


def _age(path: Path) -> None:
    old = time.time() - 60
    os.utime(path, (old, old))


def test_stale_temporaries_are_removed_live_ones_kept(tmp_path):
    with staging_folder(tmp_path, "live") as live:
        dead = tmp_path / f"{PREFIX}999999-0123abcd-run"
        dead.mkdir()
        (dead / "model.pt").write_text("half")
        legacy = tmp_path / f"{PREFIX}ab_c12xy"  # tempfile.mkdtemp of earlier versions
        legacy.mkdir()
        dead_file = tmp_path / f"{PREFIX}999999-0123abcd-results.json.tmp"
        dead_file.write_text("half")
        young = tmp_path / f"{PREFIX}999999-0123abcd-young"  # may be about to be locked
        young.mkdir()
        for p in (dead, legacy, dead_file, live):
            _age(p)
        removed = remove_stale(tmp_path)
        assert sorted(removed) == sorted([dead, legacy, dead_file])
        assert live.exists() and young.exists()  # held by this process; too young
    assert os.listdir(tmp_path) == [young.name]


def test_killed_train_leaves_nothing_a_later_run_trips_over(tmp_path):
    """kill -9 of a real `optimkit train` while it writes its staging folder: the next run
    removes the folder, finishes, and leaves only its results."""
    out = tmp_path / "run"
    code = (
        "import os, sys, time\n"
        "from optimkit.outputs import atomic_folder\n"
        f"with atomic_folder({str(out)!r}) as s:\n"
        "    (s / 'model').mkdir()\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    staged = [p for p in tmp_path.iterdir() if p.name.startswith(PREFIX)]
    assert len(staged) == 1
    assert remove_stale(tmp_path) == []  # alive: kept, however old
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _age(staged[0])
    result = runner.invoke(app, [*TRAIN, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_check_out_accepts_new_and_existing_folders(tmp_path):
    assert check_out(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # creates nothing
    assert check_out(tmp_path) == tmp_path
    with pytest.raises(OutputError, match="root folder"):
        check_out("/")


def test_report_and_app_writers_use_the_helper(tmp_path):
    """write_app_report replaces a folder whole and leaves no temporary."""
    from optimkit.apps import AppResult, write_app_report

    result = AppResult("t", pd.DataFrame({"method": ["a"], "kind": ["optimkit"], "x": [1.0]}),
                       {"x": "lower"})  # fmt: skip
    out = tmp_path / "app"
    out.mkdir()
    (out / "old.txt").write_text("old")
    write_app_report(result, out)
    assert sorted(os.listdir(out)) == ["figures", "report.html", "results.json", "table.csv"]
    assert os.listdir(tmp_path) == ["app"]
