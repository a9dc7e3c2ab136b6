"""The images application: a quick run end to end through the CLI, its saved numbers recomputed
independently (scikit-learn's accuracy and confusion matrix from the saved predictions and the
labels read straight from the idx file, time to 90% by brute force over the saved curves,
numpy's mean and std), optimkit's AdamW + OneCycleLR against torch's on the same seed, and the
batch-norm recalibration of schedule-free AdamW against batch statistics computed by hand."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from optimkit.cli import app

FOLDER = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(
    not (FOLDER / "t10k-labels-idx1-ubyte.gz").is_file(),
    reason="needs Debian's dataset-fashion-mnist",
)


def _test_labels() -> np.ndarray:
    """The official test labels, read from the idx file (8-byte header, then uint8 labels)."""
    raw = gzip.decompress((FOLDER / "t10k-labels-idx1-ubyte.gz").read_bytes())
    assert int.from_bytes(raw[:4], "big") == 2049 and int.from_bytes(raw[4:8], "big") == 10000
    return np.frombuffer(raw[8:], dtype=np.uint8).astype(np.int64)


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, dict[str, Any]]:
    out = tmp_path_factory.mktemp("images") / "run"
    result = CliRunner().invoke(app, ["app", "images", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for f in ("report.html", "table.csv", "results.json"):
        assert (out / f).is_file()
    assert {p.name for p in (out / "figures").glob("*.png")} == {
        "confusion_matrix.png",
        "test_accuracy.png",
    }
    payload = json.loads((out / "results.json").read_text())
    table = pd.read_csv(out / "table.csv")
    assert payload["notes"] and len(payload["table"]) == len(table)
    return table, payload


def test_quick_run_has_every_optimizer_and_the_torch_baseline(quick) -> None:
    from optimkit.apps.images import BASELINE, QUICK, TOURNAMENT

    table, payload = quick
    assert list(table["kind"]) == ["optimkit"] * len(TOURNAMENT) + ["baseline"]
    assert table.iloc[-1]["method"].startswith("torch.optim.AdamW")
    runs = payload["details"]["runs"]
    assert list(runs) == [*TOURNAMENT, BASELINE]
    for label in TOURNAMENT:  # equal budget: the same seeds, epochs and evaluation points
        assert [r["seed"] for r in runs[label]] == list(range(QUICK.seeds))
        assert [len(r["accuracy"]) for r in runs[label]] == [
            len(runs[BASELINE][0]["accuracy"])
        ] * QUICK.seeds
    assert [r["seed"] for r in runs[BASELINE]] == [0]
    assert (table["epochs"] == QUICK.epochs).all()
    for rs in runs.values():
        for r in rs:
            s = np.array(r["seconds"])
            assert (np.diff(s) > 0).all() and s[-1] == pytest.approx(r["train_s"])
            assert r["wall_s"] >= r["train_s"] > 0
    # better than chance (10%) after 8 steps on 256 images: every run really trained
    assert (table["test_acc_mean"] > 0.3).all()


def test_accuracy_and_confusion_matrix_recomputed_by_scikit_learn(quick) -> None:
    from sklearn.metrics import accuracy_score, confusion_matrix

    from optimkit.apps.images import QUICK

    table, payload = quick
    y = _test_labels()[: QUICK.test]
    runs = payload["details"]["runs"]
    finals: dict[tuple[str, int], float] = {}
    for (label, rs), (_, row) in zip(runs.items(), table.iterrows(), strict=True):
        acc = []
        for r in rs:
            pred = np.array(r["predictions"])
            assert pred.shape == y.shape
            acc.append(accuracy_score(y, pred))
            assert r["accuracy"][-1] == pytest.approx(acc[-1], abs=1e-12)
            finals[label, r["seed"]] = acc[-1]
        assert row["test_acc_mean"] == pytest.approx(np.mean(acc), abs=1e-12)
        assert row["test_acc_best"] == pytest.approx(np.max(acc), abs=1e-12)
        if len(acc) > 1:
            assert row["test_acc_std"] == pytest.approx(np.std(acc, ddof=1), abs=1e-12)
        else:
            assert math.isnan(row["test_acc_std"])
    best = payload["details"]["best"]
    assert finals[best["method"], best["seed"]] == max(finals.values())
    (run,) = [r for r in runs[best["method"]] if r["seed"] == best["seed"]]
    cm = confusion_matrix(y, np.array(run["predictions"]), labels=range(10))
    np.testing.assert_array_equal(np.array(payload["details"]["confusion_matrix"]), cm)


def _first_at_or_above(seconds: list[float], accuracy: list[float], target: float) -> float:
    for i in range(len(accuracy)):
        if accuracy[i] >= target:
            return seconds[i]
    return math.nan


def test_time_to_target_recomputed_by_brute_force(quick) -> None:
    from optimkit.apps.images import TARGET, time_to

    table, payload = quick
    for (_, rs), (_, row) in zip(payload["details"]["runs"].items(), table.iterrows(), strict=True):
        times = [_first_at_or_above(r["seconds"], r["accuracy"], TARGET) for r in rs]
        reached = [t for t in times if not math.isnan(t)]
        assert row["seeds_reaching_90"] == len(reached)
        if reached:
            assert row["time_to_90_s"] == pytest.approx(np.mean(reached))
        else:
            assert math.isnan(row["time_to_90_s"])
        for r in rs:  # at targets the quick curves do cross
            for target in [*sorted(set(r["accuracy"])), 1.01]:
                got = time_to(r["seconds"], r["accuracy"], target)
                want = _first_at_or_above(r["seconds"], r["accuracy"], target)
                assert got == want or (math.isnan(got) and math.isnan(want))


def test_optimkit_adamw_one_cycle_reproduces_torch_on_the_same_seed(quick) -> None:
    """optimkit's AdamW + OneCycleLR (seed 0) and torch.optim.AdamW + torch's OneCycleLR: the
    same initial weights, batches and dropout draws, so the same predictions up to float
    rounding."""
    from optimkit.apps.images import BASELINE

    _, payload = quick
    ok = payload["details"]["runs"]["AdamW"][0]
    tr = payload["details"]["runs"][BASELINE][0]
    assert ok["seed"] == tr["seed"] == 0
    agree = np.mean(np.array(ok["predictions"]) == np.array(tr["predictions"]))
    assert agree >= 0.98
    np.testing.assert_allclose(ok["accuracy"], tr["accuracy"], atol=3 / 256)


def test_batches_are_a_permutation_per_epoch_and_shared_by_seed() -> None:
    from optimkit.apps.images import batches

    b = batches(1000, 128, epoch=2, seed=5)
    assert [len(i) for i in b] == [128] * 7 + [104]
    np.testing.assert_array_equal(np.sort(torch.cat(b).numpy()), np.arange(1000))
    assert all(torch.equal(x, y) for x, y in zip(b, batches(1000, 128, 2, 5), strict=True))
    assert not torch.equal(b[0], batches(1000, 128, 2, 6)[0])
    assert not torch.equal(b[0], batches(1000, 128, 3, 5)[0])


def test_batch_norm_recalibration_equals_averaged_batch_statistics() -> None:
    """After recalibration, each BatchNorm's running mean / variance is the plain average over
    the batches of the per-batch mean / unbiased variance of its input (computed here by hand
    with F.conv2d and F.linear, float64, dropout off)."""
    from optimkit.apps.images import build_cnn, recalibrate_batch_norm

    torch.manual_seed(0)
    model: Any = build_cnn(3).double()
    X = torch.randn(96, 1, 28, 28, dtype=torch.float64)
    idx = list(torch.randperm(96).split(32))
    recalibrate_batch_norm(model, X, idx)
    assert not model.training
    conv1, conv2 = model.convs[0], model.convs[1]
    dense = model.blocks[0]
    stats: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {"c1": [], "c2": [], "d": []}
    with torch.no_grad():
        for i in idx:
            h1 = F.conv2d(X[i], conv1.conv.weight, conv1.conv.bias, padding=1)
            stats["c1"].append((h1.mean((0, 2, 3)), h1.transpose(0, 1).flatten(1).var(1)))
            bn1 = (h1 - h1.mean((0, 2, 3), keepdim=True)) / torch.sqrt(
                h1.var((0, 2, 3), unbiased=False, keepdim=True) + conv1.norm.eps
            )
            bn1 = bn1 * conv1.norm.weight.view(1, -1, 1, 1) + conv1.norm.bias.view(1, -1, 1, 1)
            a1 = F.max_pool2d(F.relu(bn1), 2)
            h2 = F.conv2d(a1, conv2.conv.weight, conv2.conv.bias, padding=1)
            stats["c2"].append((h2.mean((0, 2, 3)), h2.transpose(0, 1).flatten(1).var(1)))
            bn2 = (h2 - h2.mean((0, 2, 3), keepdim=True)) / torch.sqrt(
                h2.var((0, 2, 3), unbiased=False, keepdim=True) + conv2.norm.eps
            )
            bn2 = bn2 * conv2.norm.weight.view(1, -1, 1, 1) + conv2.norm.bias.view(1, -1, 1, 1)
            a2 = F.max_pool2d(F.relu(bn2), 2).flatten(1)
            h3 = F.linear(a2, dense.linear.weight, dense.linear.bias)
            stats["d"].append((h3.mean(0), h3.var(0)))
    for key, norm in (("c1", conv1.norm), ("c2", conv2.norm), ("d", dense.norm)):
        mean = torch.stack([m for m, _ in stats[key]]).mean(0)
        var = torch.stack([v for _, v in stats[key]]).mean(0)
        torch.testing.assert_close(norm.running_mean, mean, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(norm.running_var, var, rtol=1e-10, atol=1e-12)
        assert norm.momentum == 0.1  # restored


def test_build_cnn_is_the_seeded_plain_model() -> None:
    """build_cnn(seed) is torch.manual_seed(seed); build_model("cnn", ...) with the app's
    options, only laid out channels_last: the same outputs (float64)."""
    from optimkit.apps.images import CNN, build_cnn
    from optimkit.models import build_model

    torch.manual_seed(11)
    plain = build_model("cnn", 784, 10, **CNN).double().eval()
    model: Any = build_cnn(11).double().eval()
    assert model.convs[0].conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(8, 1, 28, 28, dtype=torch.float64)
    torch.testing.assert_close(model(x), plain(x.reshape(8, 784)), rtol=1e-12, atol=1e-12)
