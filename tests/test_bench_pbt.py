"""The PBT benchmark (benchmarks/bench_pbt.py): its Ray Tune side trains exactly what optimkit's
population trains (same model, seed, batches and updates: float64, against a K = 1 trainer and,
through a real local Ray, against a K = 2 population), and a quick run prints both tables. No
timing is asserted."""

from __future__ import annotations

import pytest
import torch

from benchmarks import bench_pbt as bench
from optimkit.data import load_dataset
from optimkit.models import build_model
from optimkit.train import PopulationTrainer

f64 = torch.float64
MEMBERS = [{"lr": 3e-3, "weight_decay": 1e-4, "seed": 5},
           {"lr": 2e-2, "weight_decay": 1e-6, "seed": 6}]  # fmt: skip


@pytest.fixture(scope="module")
def digits64():
    return load_dataset("digits", seed=1, dtype=f64)


def _optimkit(ds, members, epochs):
    trainer = PopulationTrainer(ds, bench.mlp_config(1, epochs), [dict(m) for m in members])
    curves = []
    while bool(trainer.active.any()):
        val = trainer.run_epoch()
        curves.append([float(v) for v in val["accuracy"]])
    trainer.fit()
    return trainer, curves


def test_the_ray_trainables_loop_is_an_optimkit_member(digits64):
    trainer, curves = _optimkit(digits64, MEMBERS[:1], 3)
    torch.manual_seed(MEMBERS[0]["seed"])
    model = build_model("mlp", 64, 10, hidden=(bench.HIDDEN,)).to(f64)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    seen = []
    bench.train_member(model, opt, bench.ray_data(digits64, 1, 3, 2), 0,
                       lambda epoch, val, test: seen.append((epoch, val, test)))  # fmt: skip
    assert [e for e, _, _ in seen] == [1, 2, 3]
    assert [v for _, v, _ in seen] == [c[0] for c in curves]
    assert seen[-1][2] == float(trainer.test_results["accuracy"][0])
    for name, p in model.state_dict().items():
        err = (trainer.population.params[name][0] - p).abs().max().item()
        assert err <= 1e-10, (name, err)


def test_quick_run_prints_both_tables():
    sizes = bench.Sizes(4, 4, 2, 2, 2, (128, 64, 64))
    out = bench.run(seeds=1, sizes=sizes, with_ray=False)
    ray, tpe = out["tables"]["ray"], out["tables"]["tpe"]
    assert ray.splitlines()[0] == "| seed | optimkit s | optimkit test acc | optimkit val acc |"
    assert ray.endswith("Ray Tune skipped (--no-ray)")
    assert len(tpe.splitlines()) == 2 + 4  # two tasks, PBT and TPE each
    for methods in out["results"].values():
        assert set(methods) == {"PBT", "TPE"}
        for runs in methods.values():
            assert all(0 <= o.val <= 1 and 0 <= o.test <= 1 for o in runs)
    (pbt_digits,) = next(iter(out["results"].values()))["PBT"]
    assert pbt_digits.extra["perturbations"] == 1  # epoch 2: the worst member of 4


@pytest.mark.slow
def test_ray_tune_side_equals_optimkits_population_without_perturbations(digits64):
    """A real local Ray: two trials of the trainable under Ray's PBT (interval beyond the
    budget: no perturbation) end with the accuracies of optimkit's K = 2 population."""
    import ray

    trainer, curves = _optimkit(digits64, MEMBERS, 2)
    bench.start_ray()
    try:
        outcome = bench.ray_pbt(digits64, 1, MEMBERS, epochs=2, interval=3, cpus=1)
    finally:
        ray.shutdown()
    assert outcome.extra["errors"] == 0
    best = max(range(2), key=lambda k: (curves[-1][k], -k))
    assert outcome.val == curves[-1][best]
    assert outcome.test == float(trainer.test_results["accuracy"][best])
