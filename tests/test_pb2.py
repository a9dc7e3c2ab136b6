"""PB2's GP-bandit explore: proposals stay inside Ray Tune's hyperparam_bounds, prefer a known
best region of a toy problem over random, and a PB2 run trains, reproducibly from its seed."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from optimkit.data import load_dataset
from optimkit.train import TrainConfig
from optimkit.tune.pb2 import GP, PB2, GPBandit
from optimkit.tune.pbt import pbt
from optimkit.tune.space import SearchSpace


def toy_change(x: float, y: float) -> float:
    """Score change per interval on [0, 1]^2: best at (0.7, 0.3)."""
    return -((x - 0.7) ** 2) - (y - 0.3) ** 2


def test_proposals_stay_in_bounds_and_are_int_where_the_range_is():
    bandit = PB2(hyperparam_bounds={"lr": [1e-4, 1e-1], "width": [2, 9]}).explorer(
        {"lr": _param("lr", 1e-4, 1e-1), "width": _param("width", 2, 9, integer=True)}
    )
    rng = random.Random(0)
    for epoch in range(1, 6):
        configs = [{"lr": rng.uniform(-1, 1), "width": rng.randint(-5, 20)} for _ in range(8)]
        bandit.observe(epoch, configs, [rng.gauss(0, 1) for _ in configs])
        for _ in range(4):
            new = bandit(epoch, {"lr": 0.5, "width": 3, "other": "kept"}, rng)
            assert 1e-4 <= new["lr"] <= 1e-1 and isinstance(new["width"], int)
            assert 2 <= new["width"] <= 9 and new["other"] == "kept"


def test_proposals_find_a_known_best_region_more_often_than_random():
    hits, draws = 0, 0
    rng = random.Random(3)
    for _ in range(3):
        bandit = GPBandit({"x": (0.0, 1.0, False), "y": (0.0, 1.0, False)})
        configs = [{"x": rng.random(), "y": rng.random()} for _ in range(8)]
        for epoch in range(1, 7):
            changes = [toy_change(c["x"], c["y"]) + rng.gauss(0, 0.01) for c in configs]
            bandit.observe(epoch, configs, changes)
            ranked = sorted(range(8), key=lambda k: changes[k])
            for k in ranked[:2]:  # the bottom two explore
                configs[k] = bandit(epoch, configs[ranked[-1]], rng)
                hits += abs(configs[k]["x"] - 0.7) < 0.1 and abs(configs[k]["y"] - 0.3) < 0.1
                draws += 1
    # a uniform draw lands in that 0.2 x 0.2 box with probability 0.04
    assert hits / draws > 5 * 0.04, (hits, draws)


def test_gp_interpolates_its_data():
    X = np.array([[0.0, 0.1], [0.0, 0.5], [0.0, 0.9], [1.0, 0.5]])
    y = np.array([0.0, 1.0, 0.0, 1.0])
    gp = GP(X, y)
    mean, sd = gp.predict(X)
    assert np.allclose(mean, y, atol=0.2) and (sd >= 0).all()


def test_bad_bounds_are_one_line_errors():
    with pytest.raises(ValueError, match=r"^hyperparam_bounds\.lr: expected \[low, high\]"):
        PB2(hyperparam_bounds={"lr": [1.0, 0.1]})
    space = SearchSpace.from_config({"nesterov": {"choices": [True, False]}}, "sgd")
    with pytest.raises(ValueError, match=r"^space\.nesterov: PB2 explores continuous ranges"):
        PB2().with_space(space.params)  # type: ignore[arg-type]


def test_a_pb2_run_is_reproducible_from_its_seed():
    ds = load_dataset("iris", seed=0, dtype=torch.float64)
    space = SearchSpace.from_config({"lr": {"low": 1e-3, "high": 0.3, "log": True}}, "sgd",
                                    replace_defaults=True)  # fmt: skip
    cfg = TrainConfig(model="mlp", model_options={"hidden": (4,)}, epochs=6, batch_size=32)
    runs = [pbt(ds, cfg, space, population=4, scheduler=PB2(perturbation_interval=1, seed=5))
            for _ in range(2)]  # fmt: skip
    a, b = (r.to_frame() for r in runs)
    assert len(runs[0].perturbations) == 5 and a.equals(b)
    for p in runs[0].perturbations:
        assert 1e-3 <= p.new["lr"] <= 0.3


def _param(name, low, high, integer=False):
    from optimkit.tune.space import Param

    return Param(name, float(low), float(high), integer=integer)
