"""write_report's files: leaderboard.csv round-trips the input, report.html is self-contained
and says what the input says, the PNGs are real images, and writes are atomic."""

from __future__ import annotations

import html
import io
import math
import re
import stat
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from plotly.offline import get_plotlyjs

from optimkit.report import TournamentResult, read_leaderboard, verdict, write_report
from optimkit.report.data import LEADERBOARD_COLUMNS
from optimkit.report.figures import render_pngs
from optimkit.report.html import render_html
from optimkit.report.leaderboard import atomic_write
from optimkit.report.synthetic import synthetic_result

FIGURES = ("leaderboard", "curves", "lr_sensitivity", "importance")


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[TournamentResult, Any]:
    result = synthetic_result(random_state=1)
    out = tmp_path_factory.mktemp("out")
    (out / "study.db").write_bytes(b"the study database, not ours")
    return result, write_report(result, out)


def test_leaderboard_csv_equals_the_input(written: tuple[TournamentResult, Any]):
    result, paths = written
    back = read_leaderboard(paths.leaderboard_csv)
    board = result.leaderboard
    assert back.columns.tolist() == list(LEADERBOARD_COLUMNS)  # contract order
    assert sorted(board.columns) == sorted(LEADERBOARD_COLUMNS)
    back = back[board.columns]
    assert back["optimizer"].tolist() == board["optimizer"].tolist()
    assert back["best_params"].tolist() == board["best_params"].tolist()
    numeric = [c for c in board.columns if c not in ("optimizer", "best_params")]
    pd.testing.assert_frame_equal(
        back[numeric], board[numeric], check_dtype=False, check_exact=False, rtol=1e-14
    )
    assert (
        back["time_to_target_mean"].isna().tolist() == board["time_to_target_mean"].isna().tolist()
    )


class _Table(HTMLParser):
    """Text of each cell of ``<table id="leaderboard">``'s body rows."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.inside = self.body = self.cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and ("id", "leaderboard") in attrs:
            self.inside = True
        elif self.inside and tag == "tbody":
            self.body = True
        elif self.body and tag == "tr":
            self.rows.append([])
        elif self.body and tag == "td":
            self.rows[-1].append("")
            self.cell = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.inside = self.body = False
        elif tag == "td":
            self.cell = False

    def handle_data(self, data: str) -> None:
        if self.cell:
            self.rows[-1][-1] += data


def _close(text: str, value: float) -> bool:
    """Does a rendered number (rounded to its printed decimals) match `value`?"""
    decimals = len(text.split(".")[1]) if "." in text else 0
    return abs(float(text) - value) <= 0.5 * 10.0**-decimals + 1e-12


def test_html_leaderboard_shows_the_input(written: tuple[TournamentResult, Any]):
    result, paths = written
    page = paths.html.read_text()
    parser = _Table()
    parser.feed(page)
    board = result.leaderboard
    assert len(parser.rows) == len(board)
    for cells, (_, row) in zip(parser.rows, board.iterrows(), strict=True):
        rank, name, test, _, val, time, epochs, reached, params = cells
        assert (int(rank), name) == (row["rank"], row["optimizer"])
        mean, std = test.split(" ± ")
        assert _close(mean, row["test_mean"]) and _close(std, row["test_std"])
        mean, std = val.split(" ± ")
        assert _close(mean, row["val_mean"]) and _close(std, row["val_std"])
        if math.isnan(row["time_to_target_mean"]):
            assert (time, epochs) == ("—", "—")
        else:
            assert time.endswith(" s") and _close(time[:-2], row["time_to_target_mean"])
            assert _close(epochs, row["epochs_to_target_mean"])
        k = round(row["reached_target"] * result.meta["seeds"])
        assert reached == f"{k}/{result.meta['seeds']}"
        assert params.split()[0] == "lr" and len(params.split()) == 2 * len(row["best_params"])


def test_html_is_self_contained_and_complete(written: tuple[TournamentResult, Any]):
    result, paths = written
    page = paths.html.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert html.escape(verdict(result)) in page
    for name in result.optimizers:
        assert f'data-optimizer="{html.escape(name)}"' in page
    for key in ("leaderboard", "curves", "lr-sensitivity", "importance", "verdict"):
        assert page.count(f'id="{key}"') == 1, key
    for value in (result.meta["sampler"], result.meta["pruner"], result.meta["model"]):
        assert html.escape(value) in page
    # plotly.js inline exactly once; nothing loaded from the network.
    assert page.count(get_plotlyjs()) == 1
    external = re.compile(
        r"""<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=\s*["']?\s*(https?:)?//"""
    )
    assert not external.search(page)
    assert not re.search(r"""@import|url\(\s*["']?\s*(https?:)?//""", page)


def test_pngs_are_real_images(written: tuple[TournamentResult, Any]):
    _, paths = written
    assert sorted(paths.figures) == sorted(FIGURES)
    for name, path in paths.figures.items():
        assert path == paths.html.parent / "figures" / f"{name}.png"
        with Image.open(path) as im:
            assert im.format == "PNG"
            width, height = im.size
            assert 1000 <= width <= 3000 and 400 <= height <= 2500, (name, im.size)
            pixels = np.asarray(im.convert("RGB")).reshape(-1, 3)
        colors = np.unique(pixels[:: max(1, len(pixels) // 50_000)], axis=0)
        assert len(colors) > 50, f"{name} looks blank"


def test_write_is_atomic_and_leaves_other_files(written: tuple[TournamentResult, Any]):
    _, paths = written
    out = paths.html.parent
    assert (out / "study.db").read_bytes() == b"the study database, not ours"
    leftovers = [p.name for p in out.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == []
    for path in (paths.html, paths.leaderboard_csv, *paths.figures.values()):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_atomic_write_failure_keeps_the_old_file(tmp_path: Path):
    target = tmp_path / "report.html"
    target.write_text("old report")
    with pytest.raises(TypeError):
        atomic_write(target, 12345)  # type: ignore[arg-type]
    assert target.read_text() == "old report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_bad_arguments(tmp_path: Path):
    result = synthetic_result(optimizers=("adam", "sgd"), trials=6, epochs=5, seeds=2)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match=r"out_dir: .* is not a directory"):
        write_report(result, blocker)
    with pytest.raises(ValueError, match="result: expected a TournamentResult, got dict"):
        write_report({"meta": {}}, tmp_path / "out")  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_figures_false_writes_no_pngs(tmp_path: Path):
    result = synthetic_result(optimizers=("adam", "sgd"), trials=6, epochs=5, seeds=2)
    paths = write_report(result, tmp_path / "new" / "out", figures=False)
    assert paths.figures == {}
    assert paths.html.exists() and paths.leaderboard_csv.exists()
    assert not (tmp_path / "new" / "out" / "figures").exists()


def test_lower_is_better_and_sparse_inputs_render():
    """Error-rate metric; an optimizer without curves; no lr column; no importances."""
    base = synthetic_result(
        optimizers=("adam", "rmsprop", "sgd"), trials=8, epochs=6, seeds=3,
        greater_is_better=False, random_state=2,
    )  # fmt: skip
    assert verdict(base).startswith(f"{base.optimizers[0]} wins: test error ")
    curves = base.curves[base.curves["optimizer"] != base.optimizers[-1]]
    sparse = TournamentResult(
        base.meta, base.leaderboard, curves, base.trials.drop(columns="lr"), importance={}
    )
    for r in (base, sparse):
        page = render_html(r)
        for name in r.optimizers:
            assert f'data-optimizer="{name}"' in page
        for name, png in render_pngs(r).items():
            with Image.open(io.BytesIO(png)) as im:
                assert im.format == "PNG" and min(im.size) > 300, name
    assert "failed trial(s) or trials without lr are not shown" in render_html(sparse)
