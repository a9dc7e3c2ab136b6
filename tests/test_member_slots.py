"""The member-slot protocol: after copy_member(i, j), member j continues bit for bit as member
i does (float64, same inputs), component by component and for the whole trainer; after
reset_members, a member starts afresh."""

from __future__ import annotations

import pytest
import torch

from optimkit import schedules as S
from optimkit.data import BatchSampler, load_dataset
from optimkit.models import Population, build_model
from optimkit.optim import get_optimizer
from optimkit.train import EarlyStopping, History, PopulationTrainer, TrainConfig
from optimkit.train.slots import MemberSlots, member_mask

f64 = torch.float64
K = 3


def _same(a: torch.Tensor, i: int, j: int) -> bool:
    return torch.equal(a[i], a[j])


@pytest.fixture(scope="module")
def digits64():
    return load_dataset("digits", seed=0, dtype=f64)


def _population(**options):
    return Population("mlp", 8, 3, seeds=[1, 2, 3], dtype=f64,
                      options={"hidden": (6,), **options})  # fmt: skip


def test_population_copy_and_reset():
    pop = _population(batch_norm=True)
    x = torch.randn(5, 8, dtype=f64)
    pop.forward(x, train=True)  # running statistics differ per member
    pop.copy_member(0, 2)
    assert pop.seeds == [1, 2, 1]
    out = pop.forward(x, train=True)
    out.sum().backward()
    assert _same(out, 0, 2)
    for t in (*pop.params.values(), *pop.buffers.values()):
        assert _same(t, 0, 2)
    for p in pop.params.values():
        assert _same(p.grad, 0, 2)
    with torch.no_grad():
        for p in pop.params.values():
            p.add_(1.0)  # as if trained on
    pop.reset_members(member_mask(2, K))
    fresh = _population(batch_norm=True)
    for name, t in pop.params.items():
        assert torch.equal(t[2], fresh.params[name][0])  # seed 1, as built
        assert torch.equal(t[0], fresh.params[name][0] + 1.0)  # member 0 untouched
    assert isinstance(pop, MemberSlots)


def test_population_copy_takes_the_dropout_rate():
    pop = _population(dropout=[0.1, 0.2, 0.3])
    pop.copy_member(1, 0)
    assert pop.dropout is not None and pop.dropout.tolist() == [0.2, 0.2, 0.3]


def test_optimizer_copy_continues_bit_for_bit():
    params = [torch.randn(K, 4, 2, dtype=f64, requires_grad=True)]
    lr = torch.tensor([1e-2, 3e-2, 1e-1], dtype=f64)
    opt = get_optimizer("adam", params, members=K, lr=lr, weight_decay=1e-3)
    for _ in range(3):
        params[0].grad = torch.randn(K, 4, 2, dtype=f64)
        opt.step()
    with torch.no_grad():
        params[0][2] = params[0][0]
    opt.copy_member(0, 2)
    for _ in range(3):
        g = torch.randn(K, 4, 2, dtype=f64)
        g[2] = g[0]
        params[0].grad = g
        opt.step()
    assert _same(params[0], 0, 2)
    for v in opt.state[params[0]].values():
        assert _same(v, 0, 2)


def _closed_forms(opt):
    kv = torch.tensor([0.5, 0.9, 0.7], dtype=f64)
    return [
        S.StepLR(opt, step_size=torch.tensor([1.0, 2.0, 3.0]), gamma=kv),
        S.MultiStepLR(opt, milestones=torch.tensor([[1, 3], [2, 4], [3, 5]]), gamma=kv),
        S.CosineAnnealingLR(opt, T_max=5, eta_min=kv * 1e-3),
        S.CosineAnnealingWarmRestarts(opt, T_0=2, T_mult=torch.tensor([1.0, 2.0, 3.0])),
        S.SequentialLR(
            opt,
            [S.LinearLR(opt, start_factor=kv, total_iters=2), S.ExponentialLR(opt, gamma=kv)],
            milestones=[torch.tensor([1, 2, 3])],
        ),
        S.CyclicLR(opt, base_lr=kv * 1e-3, max_lr=kv * 1e-2, step_size_up=2),
        S.OneCycleLR(opt, max_lr=kv, total_steps=10, pct_start=kv / 2),
    ]


@pytest.mark.parametrize("index", range(7))
def test_closed_form_schedule_copy_gives_the_same_curve(index):
    p = [torch.zeros(K, 2, dtype=f64, requires_grad=True)]
    opt = get_optimizer("sgd", p, members=K, lr=torch.tensor([0.1, 0.2, 0.3], dtype=f64),
                        momentum=0.9)  # fmt: skip
    schedule = _closed_forms(opt)[index]
    steps = torch.arange(8, dtype=f64)
    before = [schedule.lr_at(t)[0][1].item() for t in steps]
    schedule.copy_member(0, 2)
    for t in steps:
        assert _same(schedule.lr_at(t)[0], 0, 2)
        m = schedule.momentum_at(t)
        if m is not None:
            assert torch.equal(m[0][0], m[0][2]) or bool(torch.isnan(m[0][[0, 2]]).all())
    assert [schedule.lr_at(t)[0][1].item() for t in steps] == before  # member 1 untouched
    others = [schedule.lr_at(t)[0][[0, 2]] for t in steps]
    schedule.set_member_lr(1, 0.05)  # member 1's lr (the peak of the cyclical ones)
    assert [schedule.lr_at(t)[0][1].item() for t in steps] != before
    for t, o in zip(steps, others, strict=True):
        assert torch.equal(schedule.lr_at(t)[0][[0, 2]], o)
    if index in (0, 4):  # StepLR, LinearLR warmup: step 0 is the base lr (times the factor)
        factor = 1.0 if index == 0 else 0.9
        assert schedule.lr_at(0)[0][1].item() == pytest.approx(0.05 * factor, rel=1e-15)
    if index == 5:  # CyclicLR: the peak after step_size_up steps
        assert schedule.lr_at(2)[0][1].item() == pytest.approx(0.05, rel=1e-15)


def test_plateau_copy_continues_bit_for_bit():
    p = [torch.zeros(K, 2, dtype=f64, requires_grad=True)]
    opt = get_optimizer("sgd", p, members=K, lr=torch.tensor([0.1, 0.2, 0.3], dtype=f64))
    plateau = S.ReduceLROnPlateau(opt, patience=torch.tensor([1.0, 2.0, 1.0]),
                                  factor=torch.tensor([0.5, 0.1, 0.2]))  # fmt: skip
    for m in ([3.0, 2.0, 1.0], [3.0, 2.0, 0.5], [4.0, 3.0, 0.4]):
        plateau.step(torch.tensor(m, dtype=f64))
    opt.copy_member(0, 2)  # the lr is the optimizer's
    plateau.copy_member(0, 2)
    for m in ([5.0, 1.0, 5.0], [6.0, 1.0, 6.0], [7.0, 1.0, 7.0]):
        plateau.step(torch.tensor(m, dtype=f64))
        assert _same(opt.param_groups[0]["lr"], 0, 2)
    for t in (plateau.best, plateau.num_bad_epochs, plateau.cooldown_counter, plateau.factor):
        assert _same(t, 0, 2)


def test_early_stopping_copy_and_reset():
    early = EarlyStopping(K, patience=2)
    on = torch.ones(K, dtype=torch.bool)
    early.update(torch.tensor([1.0, 2.0, 3.0], dtype=f64), 0, on)
    early.update(torch.tensor([1.5, 1.0, 2.0], dtype=f64), 1, on)
    early.copy_member(0, 2)
    for e, v in enumerate(([2.0, 0.5, 2.0], [0.9, 0.4, 0.9], [1.0, 0.3, 1.0]), start=2):
        early.update(torch.tensor(v, dtype=f64), e, on)
        for t in (early.best, early.best_epoch, early.bad_epochs, early.stopped):
            assert _same(t, 0, 2)
    early.reset_members(member_mask(1, K))
    assert early.best[1] == torch.inf and early.best_epoch[1] == -1 and early.bad_epochs[1] == 0


def test_history_path_follows_copies():
    h = History(K)
    on = torch.ones(K, dtype=torch.bool)

    def epoch(e, v):
        h.append(epoch=torch.full((K,), e), trained=on, train_loss=torch.tensor(v),
                 val={"loss": torch.tensor(v)}, lr=torch.zeros(K), status=torch.zeros(K),
                 seconds=0.0)  # fmt: skip

    epoch(1, [1.0, 2.0, 3.0])
    h.copy_member(0, 2)
    epoch(2, [4.0, 5.0, 4.0])
    h.copy_member(1, 0)
    epoch(3, [6.0, 6.0, 7.0])
    assert h.path("val_loss", 2).tolist() == [1.0, 4.0, 7.0]
    assert h.path("val_loss", 0).tolist() == [2.0, 5.0, 6.0]
    assert h.path("val_loss", 1).tolist() == [2.0, 5.0, 6.0]
    assert h.curve("val_loss")[:, 2].tolist() == [3.0, 4.0, 7.0]  # the slot's log stays
    h.reset_members(member_mask(1, K))
    epoch(4, [8.0, 9.0, 8.0])
    assert h.path("val_loss", 1)[:3].isnan().all() and h.path("val_loss", 1)[3] == 9.0


def test_sampler_copy_gives_the_same_batches():
    s = BatchSampler(20, 4, seed=1, member_seeds=[5, 6, 7])
    list(s)
    s.copy_member(0, 2)
    for idx in s:
        assert _same(idx, 0, 2) and not _same(idx, 0, 1)


SCHEDULES = [("cosine", {}), ("plateau", {"patience": 1}), ("onecycle", {})]


@pytest.mark.parametrize(("schedule", "options"), SCHEDULES)
def test_trainer_copy_member_continues_bit_for_bit(digits64, schedule, options):
    """Train K=3 two epochs, copy 0 -> 2, train on: member 2 is member 0, bit for bit."""
    cfg = TrainConfig(model="mlp", model_options={"hidden": (8,)}, optimizer="adam",
                      epochs=5, batch_size=256, seed=4, schedule=schedule,
                      schedule_options=options, patience=3,
                      shared_batches=schedule != "plateau")  # fmt: skip
    members = [{"lr": 1e-2, "weight_decay": 0.0, "clip_grad_norm": 1.0, "seed": 1},
               {"lr": 3e-3, "weight_decay": 1e-3, "clip_grad_norm": 2.0, "seed": 2},
               {"lr": 3e-2, "weight_decay": 1e-2, "clip_grad_norm": 5.0, "seed": 3}]  # fmt: skip
    trainer = PopulationTrainer(digits64, cfg, members)
    trainer.run_epoch()
    trainer.run_epoch()
    trainer.copy_member(0, 2)
    assert trainer.members[2] == members[0]
    trainer.fit()
    for t in (*trainer.population.params.values(), *trainer.kept.best_params.values(),
              *trainer.kept.final_params.values()):  # fmt: skip
        assert _same(t, 0, 2)
    for state in trainer.optimizer.state.values():
        for v in state.values():
            assert _same(v, 0, 2)
    assert _same(torch.as_tensor(trainer.optimizer.param_groups[0]["lr"]), 0, 2)
    for t in (trainer.early.best, trainer.early.best_epoch, trainer.early.bad_epochs,
              trainer.member_epochs, trainer.status, trainer.schedule.position):  # fmt: skip
        assert _same(t, 0, 2)
    assert torch.equal(trainer.history.path("val_loss", 2), trainer.history.path("val_loss", 0))
    assert trainer.test_results is not None and _same(trainer.test_results["loss"], 0, 2)
    assert not _same(trainer.test_results["loss"], 0, 1)


def test_trainer_replace_member_resets_every_slot(digits64):
    cfg = TrainConfig(model="mlp", model_options={"hidden": (8,)}, optimizer="sgd",
                      epochs=3, batch_size=256, schedule="step", patience=5)  # fmt: skip
    members = [{"lr": 0.1, "momentum": 0.9, "seed": 1}, {"lr": 0.2, "momentum": 0.5, "seed": 2}]
    trainer = PopulationTrainer(digits64, cfg, members)
    trainer.run_epoch()
    trainer.replace_member(1, {"lr": 0.05, "momentum": 0.0, "seed": 7})
    fresh = PopulationTrainer(digits64, cfg, [members[0], {"lr": 0.05, "momentum": 0.0,
                                                           "seed": 7}])  # fmt: skip
    for name, p in trainer.population.params.items():
        assert torch.equal(p[1], fresh.population.params[name][1])
    assert int(trainer.member_epochs[1]) == 0 and trainer.status_names()[1] == "running"
    assert int(trainer.early.best_epoch[1]) == -1 and float(trainer.schedule.position[1]) == 0
    assert float(trainer.optimizer.param_groups[0]["lr"][1]) == 0.05
    assert trainer.seeds == [1, 7] and trainer.members[1]["seed"] == 7


def test_trainer_replace_members_at_once_equals_one_by_one(digits64):
    cfg = TrainConfig(model="mlp", model_options={"hidden": (8,)}, optimizer="adam",
                      epochs=4, batch_size=256, schedule="cosine", patience=5)  # fmt: skip
    members = [{"lr": 1e-2 * (k + 1), "weight_decay": 1e-4, "seed": k} for k in range(4)]
    new = {0: {"lr": 3e-3, "weight_decay": 0.0, "seed": 11},
           2: {"lr": 5e-2, "weight_decay": 1e-3, "seed": 12}}  # fmt: skip
    batched, serial = (PopulationTrainer(digits64, cfg, members) for _ in range(2))
    for t in (batched, serial):
        t.run_epoch()
    batched.replace_members(new)
    for k, member in new.items():  # oracle: the plain model built from the slot's seed
        torch.manual_seed(member["seed"])
        plain = build_model("mlp", 64, 10, hidden=(8,)).state_dict()
        for name, p in batched.population.params.items():
            assert torch.equal(p[k].detach(), plain[name].to(p.dtype))
        serial.replace_member(k, member)
    for t in (batched, serial):
        t.run_epoch()
    assert batched.members == serial.members and batched.seeds == serial.seeds == [11, 1, 12, 3]
    for a, b in zip(batched.population.params.values(), serial.population.params.values(),
                    strict=True):  # fmt: skip
        assert torch.equal(a, b)
    for name, p in batched.population.params.items():
        sa, sb = batched.optimizer.state[p], serial.optimizer.state[serial.population.params[name]]
        assert sa.keys() == sb.keys() and all(torch.equal(sa[n], sb[n]) for n in sa)
    for a, b in ((batched.member_epochs, serial.member_epochs),
                 (batched.early.best, serial.early.best),
                 (batched.schedule.position, serial.schedule.position)):  # fmt: skip
        assert torch.equal(a, b)
    assert batched.member_epochs.tolist() == [1, 2, 1, 2]
    with pytest.raises(ValueError, match="member: expected the keys"):
        batched.replace_members({1: {"lr": 1e-3}})
    with pytest.raises(ValueError, match=r"slot: expected an int in \[0, 4\), got 4"):
        batched.replace_members({4: new[0]})
