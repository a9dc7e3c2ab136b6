"""The population trainer against torch.optim alone, scikit-learn's optimum, and itself."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from optimkit.data import BatchSampler, load_dataset
from optimkit.models import build_model
from optimkit.train import PopulationTrainer, TrainConfig

f64 = torch.float64


@pytest.fixture(scope="module")
def digits64():
    return load_dataset("digits", seed=0, dtype=f64)


def test_member_equals_torch_optim_alone(digits64):
    """Member k ends with the parameters of the same model trained alone with torch.optim."""
    cfg = TrainConfig(model="mlp", model_options={"hidden": (16,)}, optimizer="adam",
                      epochs=2, batch_size=64, seed=3, schedule="cosine",
                      schedule_options={"T_max": 3})  # fmt: skip
    members = [{"lr": 1e-3, "weight_decay": 0.0, "seed": 11},
               {"lr": 1e-2, "weight_decay": 1e-3, "seed": 12},
               {"lr": 3e-2, "weight_decay": 1e-2, "seed": 13}]  # fmt: skip
    trainer = PopulationTrainer(digits64, cfg, members)
    trainer.config.restore_best = False
    trainer.fit()
    sampler = BatchSampler(digits64.n_train, batch_size=64, seed=3)
    for k, m in enumerate(members):
        torch.manual_seed(m["seed"])
        model = build_model("mlp", 64, 10, hidden=(16,)).to(f64)
        opt = torch.optim.Adam(model.parameters(), lr=m["lr"], weight_decay=m["weight_decay"])
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=3)
        sampler.load_state_dict(BatchSampler(digits64.n_train, 64, seed=3).state_dict())
        for _ in range(2):
            for idx in sampler:
                opt.zero_grad()
                out = model(digits64.X_train[idx])
                torch.nn.functional.cross_entropy(out, digits64.y_train[idx]).backward()
                opt.step()
            schedule.step()
        for name, p in model.named_parameters():
            err = (trainer.population.params[name][k] - p).abs().max().item()
            assert err <= 1e-10, (k, name, err)


def test_diverging_member_changes_no_other_member(digits64):
    cfg = TrainConfig(model="mlp", model_options={"hidden": (16,)}, optimizer="sgd", epochs=3,
                      batch_size=128)  # fmt: skip
    good = [{"lr": 1e-2, "seed": 1}, {"lr": 1e-1, "seed": 2}]
    bad = {"lr": 1e30, "seed": 3}  # overflows to inf/NaN within the first epoch
    alone = PopulationTrainer(digits64, cfg, good)
    alone.fit()
    mixed = PopulationTrainer(digits64, cfg, [good[0], bad, good[1]])
    mixed.fit()
    assert mixed.status_names()[1] == "failed"
    assert "non-finite" in mixed.failure[1]
    for name, p in alone.population.params.items():
        assert torch.equal(p[0], mixed.population.params[name][0])
        assert torch.equal(p[1], mixed.population.params[name][2])


def test_checkpoint_resume_equals_uninterrupted(digits64, tmp_path):
    def config(**kw):
        return TrainConfig(model="mlp", model_options={"hidden": (16,), "dropout": 0.2},
                           optimizer="sgd", batch_size=100, schedule="cosine",
                           schedule_options={"T_max": 4}, patience=10, **kw)  # fmt: skip

    members = [{"lr": 1e-3, "momentum": 0.9}, {"lr": 1e-2, "momentum": 0.5}]
    path = tmp_path / "ckpt.pt"
    # the first run stops (as if killed) right after its checkpoint at epoch 2
    first = PopulationTrainer(
        digits64, config(epochs=4, checkpoint_every=2, checkpoint_path=str(path)), members
    )
    first.run_epoch()
    first.run_epoch()
    resumed = PopulationTrainer(digits64, config(epochs=4), members)
    resumed.load_checkpoint(path)
    resumed.fit()
    full = PopulationTrainer(digits64, config(epochs=4), members)
    full.fit()
    for name, p in full.population.params.items():
        assert torch.equal(p, resumed.population.params[name]), name
    assert torch.equal(full.history.curve("val_loss"), resumed.history.curve("val_loss"))


@pytest.mark.slow
def test_logistic_regression_reaches_sklearn_optimum():
    """Full-batch training of L2 logistic regression (no intercept) lands on sklearn's w*."""
    ds = load_dataset("breast_cancer", seed=0, dtype=f64)
    n = ds.n_train
    c = 1.0
    # sklearn: C * sum(loss) + ||w||^2 / 2  <=>  mean(loss) + wd/2 ||w||^2 with wd = 1/(C n)
    cfg = TrainConfig(model="logistic", model_options={"bias": False}, optimizer="adam",
                      epochs=400, batch_size=0)  # fmt: skip
    trainer = PopulationTrainer(ds, cfg, [{"lr": 0.2, "weight_decay": 1 / (c * n)}])
    trainer.config.restore_best = False
    trainer.fit()
    x, y = ds.X_train.numpy(), ds.y_train.numpy()
    ref = LogisticRegression(C=c, fit_intercept=False, tol=1e-12, max_iter=10_000).fit(x, y)
    w = next(iter(trainer.population.params.values()))[0].detach().numpy().ravel()
    np.testing.assert_allclose(w, ref.coef_.ravel(), atol=1e-5)


def test_replaced_member_trains_like_a_fresh_model_and_others_are_untouched(digits64):
    cfg = TrainConfig(model="mlp", model_options={"hidden": (16,)}, optimizer="adam", epochs=4,
                      batch_size=128, seed=5, restore_best=False)  # fmt: skip
    members = [{"lr": 1e-3, "weight_decay": 0.0, "seed": 1},
               {"lr": 1e-2, "weight_decay": 0.0, "seed": 2}]  # fmt: skip
    plain = PopulationTrainer(digits64, cfg, members)
    swapped = PopulationTrainer(digits64, cfg, members)
    for t in (plain, swapped):
        t.run_epoch()
        t.run_epoch()
    new = {"lr": 3e-3, "weight_decay": 1e-3, "seed": 9}
    swapped.replace_member(1, new)
    for t in (plain, swapped):
        t.run_epoch()
        t.run_epoch()
    for name, p in plain.population.params.items():
        assert torch.equal(p[0], swapped.population.params[name][0])
    assert int(swapped.member_epochs[1]) == 2 and swapped.status_names()[1] == "running"
    # oracle: the new configuration alone with torch.optim on the batches of epochs 2 and 3
    torch.manual_seed(9)
    model = build_model("mlp", 64, 10, hidden=(16,)).to(f64)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-3)
    sampler = BatchSampler(digits64.n_train, batch_size=128, seed=5)
    for epoch in (2, 3):
        for idx in sampler.batches(epoch):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(digits64.X_train[idx]),
                                                     digits64.y_train[idx])  # fmt: skip
            loss.backward()
            opt.step()
    for name, p in model.named_parameters():
        assert (swapped.population.params[name][1] - p).abs().max().item() <= 1e-10, name


@pytest.mark.slow
def test_compile_equals_eager(digits64):
    """TrainConfig(compile=True): the compiled optimizer step gives the eager run's weights."""
    members = [{"lr": 1e-3, "weight_decay": 0.0}, {"lr": 3e-2, "weight_decay": 1e-2}]
    runs = []
    for compile_ in (False, True):
        cfg = TrainConfig(model="mlp", model_options={"hidden": (8,)}, epochs=1, batch_size=128,
                          restore_best=False, compile=compile_)  # fmt: skip
        trainer = PopulationTrainer(digits64, cfg, members)
        trainer.fit()
        runs.append(trainer)
    assert runs[1].optimizer.compile
    for name, p in runs[0].population.params.items():
        assert (runs[1].population.params[name] - p).abs().max().item() <= 1e-12, name


def test_autocast_member_equals_torch_autocast_alone():
    """TrainConfig(autocast=True): member k equals the model trained alone under
    torch.autocast(bfloat16) with torch.optim, and differs from a float32 run."""
    ds = load_dataset("digits", seed=0)
    cfg = TrainConfig(model="mlp", model_options={"hidden": (32,)}, epochs=1, batch_size=64,
                      seed=3, restore_best=False, autocast=True)  # fmt: skip
    members = [{"lr": 1e-3, "weight_decay": 0.0, "seed": 11},
               {"lr": 1e-2, "weight_decay": 1e-3, "seed": 12}]  # fmt: skip
    trainer = PopulationTrainer(ds, cfg, members)
    trainer.fit()
    for k, m in enumerate(members):
        errors = {}
        for bf16 in (True, False):
            torch.manual_seed(m["seed"])
            model = build_model("mlp", 64, 10, hidden=(32,))
            opt = torch.optim.Adam(model.parameters(), lr=m["lr"], weight_decay=m["weight_decay"])
            for idx in BatchSampler(ds.n_train, batch_size=64, seed=3):
                opt.zero_grad()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    out = model(ds.X_train[idx])
                torch.nn.functional.cross_entropy(out.float(), ds.y_train[idx]).backward()
                opt.step()
            errors[bf16] = max((trainer.population.params[n][k] - p).abs().max().item()
                               for n, p in model.named_parameters())  # fmt: skip
        assert errors[True] <= 1e-5 < 1e-3 <= errors[False], (k, errors)


@pytest.mark.parametrize("dtype", [torch.float32, f64])
def test_members_finite_flags_exactly_the_members_with_nan_or_inf(dtype):
    """The one-reduction check: a member is flagged iff one of its parameters holds NaN or
    +-inf, whatever the size of its finite values (the largest finite ones included)."""
    ds = load_dataset("digits", seed=0, dtype=dtype)
    cfg = TrainConfig(model="mlp", model_options={"hidden": (8,)}, epochs=1)
    trainer = PopulationTrainer(ds, cfg, [{"lr": 1e-3}] * 6)
    big = torch.finfo(dtype).max
    with torch.no_grad():
        params = list(trainer.population.params.values())
        params[0][1, 3, 2] = math.nan
        params[1][2, 0] = math.inf
        params[2][3].fill_(big)  # finite, though any plain sum of it overflows
        params[3][4, 0] = -math.inf
        params[0][5].fill_(-big)
    assert trainer._members_finite().tolist() == [True, False, False, True, False, True]


def test_evaluate_equals_the_metrics_of_the_forward(digits64):
    """evaluate() (one argmax shared by accuracy and F1, no concatenation of one chunk) gives
    the loss and metrics of the population's forward, and the same when split in chunks."""
    from optimkit import metrics

    cfg = TrainConfig(model="mlp", model_options={"hidden": (16,)}, epochs=1)
    trainer = PopulationTrainer(digits64, cfg, [{"lr": 1e-2, "seed": s} for s in range(3)])
    trainer.fit()
    x, y = digits64.X_val, digits64.y_val
    result = trainer.evaluate(x, y)
    with torch.no_grad():
        out = trainer.population.forward(x, train=False)
    expected = {"loss": torch.nn.functional.cross_entropy(
        out.transpose(1, 2), y.expand(3, -1), reduction="none").mean(1)}  # fmt: skip
    for name in ("accuracy", "f1_macro", "log_loss"):
        expected[name] = metrics.get_metric(name)(out.contiguous(), y)
    assert set(result) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(result[name], value.to(f64), rtol=1e-12, atol=1e-14)
    chunked = trainer._forward_eval(x, chunk=100)
    torch.testing.assert_close(chunked, out, rtol=1e-12, atol=1e-14)
