"""PBT inside one population against a plain reference PBT: K separate torch models,
torch.optim, deepcopy for exploit, the same batches and the same random draws."""

from __future__ import annotations

import copy
import math
import random

import pytest
import torch
import torch.nn.functional as F

from optimkit.data import BatchSampler, load_dataset
from optimkit.models import build_model
from optimkit.train import PopulationTrainer, TrainConfig
from optimkit.tune.pbt import PopulationBasedTraining, pbt, run_pbt
from optimkit.tune.space import SearchSpace

f64 = torch.float64
EPOCHS, INTERVAL, SEED = 6, 2, 7
LR, BETA1 = (1e-4, 0.1), (0.5, 0.99)


@pytest.fixture(scope="module")
def digits64():
    return load_dataset("digits", seed=0, dtype=f64)


def _members():
    lrs = [1e-3, 3e-3, 1e-2, 3e-2, 5e-4, 2e-2]
    return [{"lr": lr, "betas": (0.9, 0.999), "seed": 20 + k} for k, lr in enumerate(lrs)]


def reference_pbt(ds, members):
    """Ray Tune's synchronous PBT written out plainly, one torch model per member."""
    rng = random.Random(SEED)
    models, opts = [], []
    for m in members:
        torch.manual_seed(m["seed"])
        model = build_model("mlp", 64, 10, hidden=(16,)).to(f64)
        models.append(model)
        opts.append(torch.optim.Adam(model.parameters(), lr=m["lr"], betas=m["betas"]))
    configs = [{"lr": m["lr"], "beta1": m["betas"][0]} for m in members]
    sampler = BatchSampler(ds.n_train, batch_size=128, seed=0)
    decisions, scores = [], []
    for epoch in range(1, EPOCHS + 1):
        for model, opt in zip(models, opts, strict=True):
            model.train()
            for idx in sampler.batches(epoch - 1):
                opt.zero_grad()
                F.cross_entropy(model(ds.X_train[idx]), ds.y_train[idx]).backward()
                opt.step()
        with torch.no_grad():
            scores = [F.cross_entropy(m.eval()(ds.X_val), ds.y_val).item() for m in models]
        if epoch % INTERVAL or epoch == EPOCHS:
            continue
        ranked = sorted(range(len(models)), key=lambda k: -scores[k])  # worst first
        n = min(math.ceil(len(ranked) * 0.25), len(ranked) // 2)
        bottom, top = ranked[:n], ranked[-n:]
        for dst in bottom:
            src = rng.choice(top)
            new = {}
            for key, (lo, hi) in (("lr", LR), ("beta1", BETA1)):
                if rng.random() < 0.25:
                    new[key] = math.exp(rng.uniform(math.log(lo), math.log(hi))) \
                        if key == "lr" else rng.uniform(lo, hi)  # fmt: skip
                else:
                    new[key] = min(max(configs[src][key] * rng.choice((1.2, 0.8)), lo), hi)
            models[dst] = copy.deepcopy(models[src])
            opts[dst] = torch.optim.Adam(models[dst].parameters())
            opts[dst].load_state_dict(copy.deepcopy(opts[src].state_dict()))
            for group in opts[dst].param_groups:
                group["lr"], group["betas"] = new["lr"], (new["beta1"], group["betas"][1])
            configs[dst] = new
            decisions.append((epoch, dst, src, new["lr"], new["beta1"]))
    return decisions, scores, models


def test_pbt_equals_a_plain_reference_pbt(digits64):
    members = _members()
    cfg = TrainConfig(model="mlp", model_options={"hidden": (16,)}, optimizer="adam",
                      epochs=EPOCHS, batch_size=128, seed=0, restore_best=False)  # fmt: skip
    trainer = PopulationTrainer(digits64, cfg, members)
    scheduler = PopulationBasedTraining(
        perturbation_interval=INTERVAL, seed=SEED,
        hyperparam_mutations={"lr": {"low": LR[0], "high": LR[1], "log": True},
                              "beta1": {"low": BETA1[0], "high": BETA1[1]}},
    )  # fmt: skip
    result = run_pbt(trainer, scheduler)
    decisions, scores, models = reference_pbt(digits64, members)
    got = [(p.epoch, p.member, p.source, p.new["lr"], p.new["beta1"])
           for p in result.perturbations]  # fmt: skip
    assert len(decisions) == 4  # two perturbations of the bottom two of six
    assert [d[:3] for d in got] == [d[:3] for d in decisions]
    for (*_, lr, b1), (*_, lr_ref, b1_ref) in zip(got, decisions, strict=True):
        assert lr == pytest.approx(lr_ref, rel=1e-12) and b1 == pytest.approx(b1_ref, rel=1e-12)
    for k, model in enumerate(models):
        assert abs(result.scores[k] - scores[k]) <= 1e-10, (k, result.scores[k], scores[k])
        for name, p in model.named_parameters():
            err = (trainer.population.params[name][k] - p).abs().max().item()
            assert err <= 1e-10, (k, name, err)
    frame = result.to_frame()
    assert len(frame) == len(members) + len(decisions)
    assert {"member", "segment", "start_epoch", "end_epoch", "parent", "lr", "beta1",
            "val_loss"} <= set(frame.columns)  # fmt: skip
    last = frame[frame.end_epoch == EPOCHS].set_index("member")
    for k in range(len(members)):
        assert trainer.members[k]["lr"] == last.loc[k, "lr"]


def test_shape_choices_are_refused_in_one_line(digits64):
    cfg = TrainConfig(model="mlp", model_options={"hidden": (8,)}, epochs=2, batch_size=256)
    trainer = PopulationTrainer(digits64, cfg, _members()[:2])
    bad = PopulationBasedTraining(hyperparam_mutations={"batch_size": [32, 64]})
    with pytest.raises(ValueError, match=r"^hyperparam_mutations\.batch_size: changes the "
                       r"population's shapes; fixed for a PBT run$"):  # fmt: skip
        run_pbt(trainer, bad)
    space = SearchSpace.from_config({"batch_size": {"choices": [32, 64]}}, "adam")
    with pytest.raises(ValueError, match=r"^space\.batch_size: searched"):
        pbt(digits64, cfg, space, population=2)


def test_pbt_from_a_search_space_with_a_custom_explore(digits64):
    space = SearchSpace.from_config({"lr": {"low": 1e-3, "high": 1e-1, "log": True}}, "sgd",
                                    replace_defaults=True)  # fmt: skip
    cfg = TrainConfig(model="mlp", model_options={"hidden": (8,)}, epochs=3, batch_size=256,
                      schedule="cosine")  # fmt: skip
    seen = []

    def halve(config):
        seen.append(dict(config))
        return {**config, "lr": config["lr"] / 2}

    scheduler = PopulationBasedTraining(perturbation_interval=1, custom_explore_fn=halve)
    result = pbt(digits64, cfg, space, population=4, scheduler=scheduler)
    assert len(result.perturbations) == 2 and len(seen) == 2  # epochs 1 and 2, one each
    for p, before in zip(result.perturbations, seen, strict=True):
        assert p.new["lr"] == before["lr"] / 2
    assert result.trainer is not None and result.trainer.test_results is not None
    assert 0 <= result.best_member < 4
