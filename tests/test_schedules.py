"""optimkit.schedules against torch.optim.lr_scheduler.

The oracle: member k of a population schedule must give, at every step, the lr (and momentum /
beta1) that torch's scheduler gives when run alone with hyperparameters hp[k] and initial lr
lr[k], on a torch.optim.SGD (or Adam, for betas) of one dummy parameter.

Tolerance: rtol 1e-12 everywhere (float64). Our schedules are closed forms. Torch's
CyclicLR, OneCycleLR and CosineAnnealingWarmRestarts are closed forms too (we agree to the
last bit there); StepLR, MultiStepLR, ExponentialLR, LinearLR, ConstantLR, PolynomialLR and
CosineAnnealingLR are stepped recursively ("chainable") by torch, multiplying the previous lr
by a ratio each step, so their rounding error accumulates with the step count. The worst is
CosineAnnealingLR, whose ratio (1 + cos(pi t/T)) / (1 + cos(pi (t-1)/T)) is ill-conditioned
near t = T: over a grid of T_max in 1..333, eta_min in 0..0.05 and 300 steps its relative drift
from the closed form reached 3.4e-13 (1e-12 after 1000 steps), so 1e-12 holds over the 250
steps used here; the others drift by < 1e-14.
"""

from __future__ import annotations

import io
import math
import random

import pytest
import torch
import torch.optim.lr_scheduler as TL

import optimkit.schedules as S
from optimkit.schedules import functional as F

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # torch's step-order warnings

N = 250
RTOL = 1e-12
K = 4
LR = torch.tensor([0.1, 1.0, 0.05, 2.0], dtype=torch.float64)
INT_HPS = {
    "step_size",
    "T_0",
    "T_mult",
    "total_iters",
    "step_size_up",
    "step_size_down",
    "total_steps",
    "patience",
    "cooldown",
    "epochs",
    "steps_per_epoch",
}


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


class PopOpt(torch.optim.Optimizer):
    """A minimal optimizer holding population lrs ([K] tensors) in its groups."""

    def __init__(self, lrs, **defaults):
        groups = [{"params": [torch.zeros(1)], "lr": lr} for lr in lrs]
        super().__init__(groups, {"lr": lrs[0], **defaults})

    def step(self, closure=None):
        return None


def pop_opt(kind: str | None, lrs=None) -> PopOpt:
    lrs = [LR.clone()] if lrs is None else lrs
    extra = {"betas": (0.9, 0.999)} if kind == "betas" else {"momentum": 0.9}
    return PopOpt(lrs, **extra)


def torch_opt(kind: str | None, lrs: list[float]) -> torch.optim.Optimizer:
    groups = [{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in lrs]
    if kind == "betas":
        return torch.optim.Adam(groups, lr=lrs[0])
    return torch.optim.SGD(groups, lr=lrs[0], momentum=0.9)


def _momentum(group, kind):
    return group["betas"][0] if kind == "betas" else group["momentum"]


def trace(opt, sched, n: int, kind: str | None, metrics=None) -> tuple[torch.Tensor, torch.Tensor]:
    """lr and momentum of every group after construction and after each of n steps:
    tensors [n + 1, groups, K] (K = 1 for torch's scalars)."""
    lrs, moms = [], []

    def record():
        lr = [torch.as_tensor(g["lr"], dtype=torch.float64).clone() for g in opt.param_groups]
        lrs.append(lr)
        moms.append(
            [
                torch.as_tensor(_momentum(g, kind), dtype=torch.float64).expand_as(x).clone()
                for g, x in zip(opt.param_groups, lr, strict=True)
            ]
        )

    record()
    for i in range(n):
        opt.step()
        if metrics is None:
            sched.step()
        else:
            sched.step(metrics[i])
        record()
    stack = lambda rows: torch.stack([torch.stack([v.reshape(-1) for v in r]) for r in rows])  # noqa: E731
    return stack(lrs), stack(moms)


def member(hps: dict, k: int) -> dict:
    """Member k's hyperparameters as torch takes them (Python numbers, ints where torch
    insists, milestones rows as lists)."""
    out = {}
    for name, v in hps.items():
        if isinstance(v, torch.Tensor) and v.dim() == 2:
            out[name] = [int(x) for x in v[k]]
        elif isinstance(v, torch.Tensor):
            x = (v[k] if v.dim() == 1 else v).item()
            out[name] = int(x) if name in INT_HPS else x
        elif isinstance(v, list):
            out[name] = [member({name: e}, k)[name] for e in v]
        else:
            out[name] = v
    return out


def assert_matches_torch(our_cls, torch_cls, hps, kind=None, n=N, lrs=None, momentum=False):
    lrs = [LR.clone()] if lrs is None else lrs
    opt = pop_opt(kind, [x.clone() if isinstance(x, torch.Tensor) else x for x in lrs])
    ours_lr, ours_m = trace(opt, our_cls(opt, **hps), n, kind)
    for k in range(K):
        lr_k = [float(x[k]) if isinstance(x, torch.Tensor) else x for x in lrs]
        topt = torch_opt(kind, lr_k)
        ref_lr, ref_m = trace(topt, torch_cls(topt, **member(hps, k)), n, kind)
        torch.testing.assert_close(ours_lr[..., k], ref_lr[..., 0], rtol=RTOL, atol=0)
        if momentum:
            torch.testing.assert_close(ours_m[..., k], ref_m[..., 0], rtol=RTOL, atol=0)


# ------------------------------------------------------------------------- oracle cases
CASES = {
    "StepLR": (S.StepLR, TL.StepLR, dict(step_size=t(3, 5, 7, 1), gamma=t(0.1, 0.5, 0.9, 0.99))),
    "StepLR-shared-gamma": (S.StepLR, TL.StepLR, dict(step_size=t(3, 5, 7, 1), gamma=0.5)),
    "MultiStepLR-per-member": (
        S.MultiStepLR,
        TL.MultiStepLR,
        dict(
            milestones=torch.tensor([[10, 30, 31], [0, 50, 200], [5, 5, 100], [100, 150, 249]]),
            gamma=t(0.1, 0.5, 0.9, 0.3),
        ),
    ),
    "MultiStepLR-shared": (
        S.MultiStepLR,
        TL.MultiStepLR,
        dict(milestones=[10, 30, 30, 120], gamma=t(0.1, 0.5, 0.9, 0.3)),
    ),
    "ExponentialLR": (S.ExponentialLR, TL.ExponentialLR, dict(gamma=t(0.9, 0.95, 0.99, 1.01))),
    "ConstantLR": (
        S.ConstantLR,
        TL.ConstantLR,
        dict(factor=t(0.1, 0.5, 0.9, 1.0), total_iters=t(5, 50, 100, 1)),
    ),
    "LinearLR-warmup": (
        S.LinearLR,
        TL.LinearLR,
        dict(
            start_factor=t(0.1, 0.5, 0.9, 1.0),
            end_factor=t(1.0, 0.5, 0.2, 0.7),
            total_iters=t(5, 50, 100, 200),
        ),
    ),
    "PolynomialLR": (
        S.PolynomialLR,
        TL.PolynomialLR,
        dict(total_iters=t(5, 50, 100, 300), power=t(1, 2, 0.5, 3)),
    ),
    "CosineAnnealingLR": (
        S.CosineAnnealingLR,
        TL.CosineAnnealingLR,
        dict(T_max=t(10, 50, 100, 200), eta_min=t(0.0, 1e-3, 0.01, 0.1)),
    ),
    "CosineAnnealingWarmRestarts": (
        S.CosineAnnealingWarmRestarts,
        TL.CosineAnnealingWarmRestarts,
        dict(T_0=t(1, 5, 7, 3), T_mult=t(2, 1, 3, 2), eta_min=t(0.0, 1e-3, 0.01, 0.001)),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_members_follow_torch(case):
    ours, theirs, hps = CASES[case]
    assert_matches_torch(ours, theirs, hps)


@pytest.mark.parametrize("kind", ["momentum", "betas"])
@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
def test_cyclic_lr_and_momentum_follow_torch(mode, kind):
    hps = dict(
        base_lr=t(0.01, 0.1, 0.001, 0.5),
        max_lr=t(0.1, 1.0, 0.01, 2.0),
        step_size_up=t(10, 20, 7, 33),
        step_size_down=t(5, 20, 13, 1),
        mode=mode,
        gamma=t(0.99, 0.999, 0.9, 1.0),
        base_momentum=t(0.8, 0.85, 0.5, 0.9),
        max_momentum=t(0.9, 0.95, 0.99, 0.9),
    )
    assert_matches_torch(S.CyclicLR, TL.CyclicLR, hps, kind, momentum=True)


@pytest.mark.parametrize("scale_mode", ["cycle", "iterations"])
def test_cyclic_custom_scale_fn_follows_torch(scale_mode):
    hps = dict(
        base_lr=0.01,
        max_lr=t(0.1, 1.0, 0.02, 0.5),
        step_size_up=t(4, 9, 25, 2),
        scale_fn=lambda x: 0.5 ** (x / 7.0),
        scale_mode=scale_mode,
        cycle_momentum=False,
    )
    assert_matches_torch(S.CyclicLR, TL.CyclicLR, hps)


@pytest.mark.parametrize("kind", ["momentum", "betas"])
@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize("anneal_strategy", ["cos", "linear"])
def test_one_cycle_lr_and_momentum_follow_torch(anneal_strategy, three_phase, kind):
    hps = dict(
        max_lr=t(0.1, 1.0, 0.05, 2.0),
        total_steps=t(250, 260, 300, 400),
        pct_start=t(0.3, 0.25, 0.1, 0.45),
        anneal_strategy=anneal_strategy,
        three_phase=three_phase,
        div_factor=t(25, 10, 100, 5),
        final_div_factor=t(1e4, 1e3, 10, 100),
        base_momentum=t(0.8, 0.85, 0.5, 0.9),
        max_momentum=t(0.9, 0.95, 0.99, 0.9),
    )
    assert_matches_torch(S.OneCycleLR, TL.OneCycleLR, hps, kind, momentum=True)


def test_one_cycle_from_epochs_and_steps_per_epoch():
    hps = dict(
        max_lr=t(0.1, 1.0, 0.05, 2.0),
        epochs=t(5, 6, 7, 8),
        steps_per_epoch=50,
        pct_start=0.2,
        cycle_momentum=False,
    )
    assert_matches_torch(S.OneCycleLR, TL.OneCycleLR, hps)


def test_population_of_one_and_shared_scalars_with_tensor_lr():
    # K = 1 runs the same code path; a [K] group lr with all-scalar hyperparameters works too.
    lrs = [t(0.3)]
    opt = pop_opt(None, [lrs[0].clone()])
    ours, _ = trace(opt, S.CosineAnnealingLR(opt, T_max=t(40.0), eta_min=0.01), N, None)
    topt = torch_opt(None, [0.3])
    ref, _ = trace(topt, TL.CosineAnnealingLR(topt, T_max=40, eta_min=0.01), N, None)
    torch.testing.assert_close(ours[..., 0], ref[..., 0], rtol=RTOL, atol=0)
    assert ours.shape[-1] == 1
    assert_matches_torch(S.ExponentialLR, TL.ExponentialLR, dict(gamma=0.97))


def test_param_groups_with_per_group_values():
    # Group 0 has a [K] lr, group 1 a float lr; CyclicLR takes per-group lists (torch's form).
    lrs = [LR.clone(), 0.02]
    hps = dict(
        base_lr=[t(0.01, 0.02, 0.03, 0.04), 0.001],
        max_lr=[0.5, t(0.1, 0.2, 0.3, 0.4)],
        step_size_up=t(5, 6, 7, 8),
        base_momentum=[0.8, t(0.7, 0.75, 0.8, 0.85)],
    )
    assert_matches_torch(S.CyclicLR, TL.CyclicLR, hps, "momentum", lrs=lrs, momentum=True)
    assert_matches_torch(S.StepLR, TL.StepLR, dict(step_size=t(3, 5, 7, 1), gamma=0.5), lrs=lrs)


@pytest.mark.parametrize(
    "case", ["CosineAnnealingLR", "StepLR", "MultiStepLR-shared", "CosineAnnealingWarmRestarts"]
)
def test_python_numbers_give_torch_floats(case):
    # No tensor anywhere: floats are written, as torch does, on a real torch optimizer.
    ours_cls, torch_cls, hps = CASES[case]
    hps0 = member(hps, 0)
    a, b = torch_opt(None, [0.1]), torch_opt(None, [0.1])
    ours, theirs = ours_cls(a, **hps0), torch_cls(b, **hps0)
    for _ in range(N):
        a.step(), b.step(), ours.step(), theirs.step()
        assert type(a.param_groups[0]["lr"]) is float
        assert type(ours.get_last_lr()[0]) is float
        assert math.isclose(a.param_groups[0]["lr"], b.param_groups[0]["lr"], rel_tol=RTOL)


def test_group_lr_tensor_updated_in_place_as_float64():
    lr = LR.clone()
    opt = pop_opt(None, [lr])
    sched = S.ExponentialLR(opt, gamma=t(0.9, 0.8, 0.7, 0.6))
    sched.step()
    assert opt.param_groups[0]["lr"] is lr and lr.dtype == torch.float64
    torch.testing.assert_close(lr, LR * t(0.9, 0.8, 0.7, 0.6), rtol=RTOL, atol=0)
    last = sched.get_last_lr()[0]
    last.zero_()  # a copy: does not touch the optimizer
    assert bool((opt.param_groups[0]["lr"] > 0).all())
    # a float32 [K] lr becomes a float64 [K] tensor
    opt32 = pop_opt(None, [LR.float()])
    S.StepLR(opt32, step_size=2, gamma=t(0.5, 0.5, 0.5, 0.5))
    assert opt32.param_groups[0]["lr"].dtype == torch.float64


# ---------------------------------------------------------------------------- SequentialLR
def _warmup_cosine(lib, opt, hp):
    a = lib.LinearLR(opt, start_factor=hp["start_factor"], total_iters=hp["warm"])
    b = lib.CosineAnnealingLR(opt, T_max=hp["T_max"], eta_min=hp["eta_min"])
    return lib.SequentialLR(opt, [a, b], milestones=[hp["warm"]])


def _three_children(lib, opt, hp):
    a = lib.ExponentialLR(opt, gamma=hp["gamma"])
    b = lib.StepLR(opt, step_size=hp["step_size"], gamma=0.5)
    c = lib.MultiStepLR(opt, milestones=[30, 70], gamma=hp["gamma"])
    return lib.SequentialLR(opt, [a, b, c], milestones=[20, 60])


def _constant_restarts(lib, opt, hp):
    a = lib.ConstantLR(opt, factor=hp["start_factor"], total_iters=hp["warm"])
    b = lib.CosineAnnealingWarmRestarts(opt, T_0=hp["T_0"], T_mult=2)
    return lib.SequentialLR(opt, [a, b], milestones=[hp["warm"] + 3])


def _exp_then_cyclic(lib, opt, hp):
    a = lib.ExponentialLR(opt, gamma=hp["gamma"])
    b = lib.CyclicLR(
        opt,
        base_lr=0.01,
        max_lr=hp["max_lr"],
        step_size_up=hp["step_size"],
        base_momentum=0.8,
        max_momentum=hp["max_momentum"],
    )
    return lib.SequentialLR(opt, [a, b], milestones=[hp["warm"]])


SEQ_HP = dict(
    start_factor=t(0.1, 0.25, 0.5, 1.0),
    warm=t(5, 10, 1, 40),
    T_max=t(100, 50, 200, 20),
    eta_min=t(0.0, 0.001, 0.01, 0.0),
    gamma=t(0.99, 0.95, 0.9, 0.999),
    step_size=t(3, 10, 7, 1),
    T_0=t(2, 5, 7, 1),
    max_lr=t(0.5, 1.0, 0.2, 3.0),
    max_momentum=t(0.9, 0.95, 0.99, 0.85),
)
INT_HPS |= {"warm"}


@pytest.mark.parametrize(
    "build", [_warmup_cosine, _three_children, _constant_restarts, _exp_then_cyclic]
)
def test_sequential_follows_torch(build):
    # Per-member milestones (the warmup length) where the builder uses hp["warm"].
    opt = pop_opt("momentum", [LR.clone()])
    ours_lr, ours_m = trace(opt, build(S, opt, SEQ_HP), N, "momentum")
    for k in range(K):
        topt = torch_opt("momentum", [LR[k].item()])
        ref_lr, ref_m = trace(topt, build(TL, topt, member(SEQ_HP, k)), N, "momentum")
        torch.testing.assert_close(ours_lr[..., k], ref_lr[..., 0], rtol=RTOL, atol=0)
        torch.testing.assert_close(ours_m[..., k], ref_m[..., 0], rtol=RTOL, atol=0)


# ----------------------------------------------------------------------- ReduceLROnPlateau
def _metric_paths(n: int, k: int, seed: int) -> torch.Tensor:
    """Noisy decreasing curves rounded to 2 decimals (ties and plateaus happen), with NaNs."""
    g = torch.Generator().manual_seed(seed)
    steps = torch.arange(n, dtype=torch.float64)[:, None]
    scale = torch.tensor([5.0, 1.0, 20.0, 0.5, 3.0][:k], dtype=torch.float64)
    m = scale * torch.exp(-steps / 40) + 0.2 * scale * torch.rand(
        n, k, generator=g, dtype=torch.float64
    )
    m = torch.round(m * 100) / 100
    m[torch.rand(n, k, generator=g) < 0.02] = float("nan")
    return m


PLATEAU_HP = dict(
    factor=t(0.1, 0.5, 0.9, 0.3, 0.7),
    patience=t(0, 1, 3, 5, 2),
    threshold=t(1e-4, 0.01, 0.1, 0.0, 0.05),
    cooldown=t(0, 2, 0, 5, 1),
    min_lr=t(0.0, 1e-3, 0.05, 0.0, 0.01),
    eps=t(1e-8, 1e-8, 0.01, 0.05, 1e-8),
)


@pytest.mark.parametrize("threshold_mode", ["rel", "abs"])
@pytest.mark.parametrize("mode", ["min", "max"])
def test_plateau_members_follow_torch(mode, threshold_mode):
    k5, n = 5, 300
    metrics = _metric_paths(n, k5, seed=1 if mode == "min" else 2)
    if mode == "max":
        metrics = -metrics
    lr0 = t(0.1, 1.0, 0.05, 2.0, 0.3)
    opt = PopOpt([lr0.clone(), 0.2], momentum=0.0)
    min_lr = [PLATEAU_HP["min_lr"], 0.01]  # per group, as torch takes it
    hps = {**PLATEAU_HP, "min_lr": min_lr}
    sched = S.ReduceLROnPlateau(opt, mode=mode, threshold_mode=threshold_mode, **hps)
    ours, states = [], []
    for i in range(n):
        sched.step(metrics[i])
        ours.append(torch.stack([opt.param_groups[0]["lr"].clone(), opt.param_groups[1]["lr"]]))
        states.append(
            (sched.best.clone(), sched.num_bad_epochs.clone(), sched.cooldown_counter.clone())
        )
    reductions = 0
    for k in range(k5):
        hk = member(hps, k)
        topt = torch_opt(None, [lr0[k].item(), 0.2])
        ref = TL.ReduceLROnPlateau(topt, mode=mode, threshold_mode=threshold_mode, **hk)
        for i in range(n):
            ref.step(metrics[i, k].item())
            for gi in range(2):
                assert math.isclose(
                    ours[i][gi, k].item(), topt.param_groups[gi]["lr"], rel_tol=RTOL
                )
            best, bad, cool = (s[k].item() for s in states[i])
            assert best == ref.best and bad == ref.num_bad_epochs and cool == ref.cooldown_counter
        reductions += ref.optimizer.param_groups[0]["lr"] < lr0[k].item()
    assert reductions >= 4  # the paths do exercise reductions


def test_plateau_scalar_mode_matches_torch_and_writes_floats():
    metrics = _metric_paths(200, 1, seed=3)[:, 0].tolist()
    a, b = torch_opt(None, [0.5]), torch_opt(None, [0.5])
    ours = S.ReduceLROnPlateau(a, patience=2, cooldown=1, factor=0.5, min_lr=0.01)
    theirs = TL.ReduceLROnPlateau(b, patience=2, cooldown=1, factor=0.5, min_lr=0.01)
    for m in metrics:
        ours.step(m), theirs.step(m)
        assert type(a.param_groups[0]["lr"]) is float
        assert a.param_groups[0]["lr"] == b.param_groups[0]["lr"]
    assert a.param_groups[0]["lr"] < 0.5


def test_plateau_population_from_metrics_alone():
    # All hyperparameters scalar, lr a float: [K] metrics make the population.
    metrics = _metric_paths(100, 3, seed=4)
    opt = torch_opt(None, [0.5])
    sched = S.ReduceLROnPlateau(opt, patience=1, factor=0.5)
    for i in range(100):
        sched.step(metrics[i])
    assert opt.param_groups[0]["lr"].shape == (3,)
    for k in range(3):
        topt = torch_opt(None, [0.5])
        ref = TL.ReduceLROnPlateau(topt, patience=1, factor=0.5)
        for i in range(100):
            ref.step(metrics[i, k].item())
        assert opt.param_groups[0]["lr"][k].item() == topt.param_groups[0]["lr"]


# -------------------------------------------------------------------------- resume exactly
# Two torch resume bugs this design rules out (both still open upstream):
# * pytorch/pytorch#65342: a CosineAnnealingLR rebuilt with the default last_epoch=-1 resets
#   group['lr'] to the initial lr; load_state_dict then restores last_epoch but not the
#   optimizer's lr, and torch's recursive (chainable) formula keeps multiplying from the wrong
#   lr, so the resumed run silently diverges unless the optimizer's state is loaded too (and
#   after the scheduler is built).
# * pytorch/pytorch#29697: MultiStepLR after load_state_dict when the optimizer's state is not
#   restored (to keep checkpoints small): its chainable get_lr trusts the optimizer's current
#   lr between milestones, so the lr stays undecayed although last_epoch is far past them.
# Ours compute the lr from last_epoch in closed form and load_state_dict writes it into the
# optimizer, so a fresh optimizer (initial lr) + fresh scheduler + load_state_dict continues
# bit for bit. ReduceLROnPlateau's lr is history-dependent, so it is saved in its state.
RESUMABLE = {
    **{name: (cls, hps, None) for name, (cls, _, hps) in CASES.items()},
    "CyclicLR": (
        S.CyclicLR,
        dict(
            base_lr=t(0.01, 0.1, 0.001, 0.5),
            max_lr=1.0,
            step_size_up=t(10, 20, 7, 33),
            mode="exp_range",
            gamma=t(0.99, 0.999, 0.9, 1.0),
        ),
        "betas",
    ),
    "OneCycleLR": (
        S.OneCycleLR,
        dict(max_lr=t(0.1, 1.0, 0.05, 2.0), total_steps=t(250, 260, 300, 400), three_phase=True),
        "momentum",
    ),
}


def _checkpoint_roundtrip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("name", list(RESUMABLE))
def test_resume_from_state_dict_continues_exactly(name):
    cls, hps, kind = RESUMABLE[name]
    opt = pop_opt(kind)
    full_lr, full_m = trace(opt, cls(opt, **hps), N, kind)
    cut = random.Random(name).randrange(1, N)
    opt1 = pop_opt(kind)
    first = cls(opt1, **hps)
    trace(opt1, first, cut, kind)
    state = _checkpoint_roundtrip(first.state_dict())
    opt2 = pop_opt(kind)  # optimizer state NOT restored: its lr is the initial one
    resumed = cls(opt2, **hps)
    resumed.load_state_dict(state)
    assert resumed.last_epoch == cut
    rest_lr, rest_m = trace(opt2, resumed, N - cut, kind)
    assert torch.equal(rest_lr, full_lr[cut:])
    assert torch.equal(rest_m, full_m[cut:])


@pytest.mark.parametrize("name", ["CosineAnnealingLR", "StepLR", "CosineAnnealingWarmRestarts"])
def test_resume_with_last_epoch_argument(name):
    # torch's other resume path: a group that has 'initial_lr' and last_epoch=N continues at
    # step N + 1 (torch's own CosineAnnealingLR got this wrong before pytorch/pytorch#60339).
    cls, _, hps = CASES[name]
    opt = pop_opt(None)
    full, _ = trace(opt, cls(opt, **hps), 60, None)
    opt2 = pop_opt(None)
    opt2.param_groups[0]["initial_lr"] = LR.clone()
    opt2.param_groups[0]["lr"] = torch.full((K,), 123.0, dtype=torch.float64)  # stale
    resumed, _ = trace(opt2, cls(opt2, last_epoch=29, **hps), 30, None)
    assert torch.equal(resumed, full[30:])


def test_warm_restarts_exposes_t_cur_and_t_i():
    sched = S.CosineAnnealingWarmRestarts(_opt(), T_0=t(2, 3, 1, 5), T_mult=t(2, 1, 3, 1))
    for _ in range(7):
        sched.step()
    assert sched.T_cur.tolist() == [1.0, 1.0, 3.0, 2.0] and sched.T_i.tolist() == [8, 3, 9, 5]


def test_resume_restores_hyperparameters_of_the_saved_run():
    # Like torch, the saved hyperparameters win over the ones given to the new instance.
    opt = pop_opt(None)
    a = S.StepLR(opt, step_size=t(3, 5, 7, 1), gamma=0.5)
    for _ in range(17):
        a.step()
    b = S.StepLR(pop_opt(None), step_size=100, gamma=0.9)
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b.get_last_lr()[0], a.get_last_lr()[0], rtol=0, atol=0)
    a.step(), b.step()
    assert torch.equal(b.get_last_lr()[0], a.get_last_lr()[0])


def test_sequential_resume_continues_exactly():
    opt = pop_opt("momentum")
    full_lr, full_m = trace(opt, _exp_then_cyclic(S, opt, SEQ_HP), N, "momentum")
    for cut in (3, 37, 120):
        opt1 = pop_opt("momentum")
        s1 = _exp_then_cyclic(S, opt1, SEQ_HP)
        trace(opt1, s1, cut, "momentum")
        state = _checkpoint_roundtrip(s1.state_dict())
        opt2 = pop_opt("momentum")
        s2 = _exp_then_cyclic(S, opt2, SEQ_HP)
        s2.load_state_dict(state)
        lr, m = trace(opt2, s2, N - cut, "momentum")
        assert torch.equal(lr, full_lr[cut:]) and torch.equal(m[1:], full_m[cut + 1 :])


def test_plateau_resume_continues_exactly():
    metrics = _metric_paths(200, 5, seed=5)
    lr0 = t(0.1, 1.0, 0.05, 2.0, 0.3)

    def run(sched, opt, ms):
        out = []
        for m in ms:
            sched.step(m)
            out.append(opt.param_groups[0]["lr"].clone())
        return torch.stack(out)

    opt = PopOpt([lr0.clone()], momentum=0.0)
    full = run(S.ReduceLROnPlateau(opt, **PLATEAU_HP), opt, metrics)
    cut = 113
    opt1 = PopOpt([lr0.clone()], momentum=0.0)
    s1 = S.ReduceLROnPlateau(opt1, **PLATEAU_HP)
    run(s1, opt1, metrics[:cut])
    state = _checkpoint_roundtrip(s1.state_dict())
    opt2 = PopOpt([lr0.clone()], momentum=0.0)  # lr back at its initial value
    s2 = S.ReduceLROnPlateau(opt2, **PLATEAU_HP)
    s2.load_state_dict(state)
    assert torch.equal(opt2.param_groups[0]["lr"], full[cut - 1])
    assert torch.equal(run(s2, opt2, metrics[cut:]), full[cut:])


# ------------------------------------------------------------------------- functional form
def test_lr_at_per_member_steps_matches_the_stepped_schedule():
    # A trainer keeping a step counter per member (members that joined at different times).
    for name in ("CosineAnnealingWarmRestarts", "MultiStepLR-per-member", "LinearLR-warmup"):
        cls, _, hps = CASES[name]
        opt = pop_opt(None)
        sched = cls(opt, **hps)
        lrs, _ = trace(opt, sched, N, None)
        steps = torch.tensor([0, 17, 249, 100])
        got = sched.lr_at(steps)[0]
        torch.testing.assert_close(got, lrs[steps, 0, torch.arange(K)], rtol=0, atol=0)
    seq = _warmup_cosine(S, pop_opt(None), SEQ_HP)
    ref = [seq.lr_at(int(s))[0][k] for k, s in enumerate([3, 0, 250, 41])]
    assert torch.equal(seq.lr_at(torch.tensor([3, 0, 250, 41]))[0], torch.stack(ref))


VMAP_CASES = [
    (lambda s, h: F.step_lr(s, 0.1, h, 0.5), t(3, 5, 7, 1)),
    (lambda s, h: F.multistep_lr(s, 0.1, torch.stack([h, 2 * h], -1), 0.5), t(3, 5, 7, 1)),
    (lambda s, h: F.exponential_lr(s, 0.1, h), t(0.9, 0.95, 0.99, 1.0)),
    (lambda s, h: F.linear_lr(s, 0.1, h, 1.0, 20), t(0.1, 0.2, 0.5, 1.0)),
    (lambda s, h: F.cosine_annealing_lr(s, 0.1, h, 0.001), t(10, 50, 100, 7)),
    (lambda s, h: F.cosine_annealing_warm_restarts_lr(s, 0.1, 3, h), t(1, 2, 3, 4)),
    (lambda s, h: F.cyclic_lr(s, 0.01, 0.1, h, mode="triangular2"), t(3, 5, 7, 11)),
    (lambda s, h: F.cyclic_momentum(s, 0.8, 0.9, h, mode="exp_range", gamma=0.99), t(3, 5, 7, 1)),
    (lambda s, h: F.one_cycle_lr(s, 0.1, h, 0.3, "cos", three_phase=True), t(50, 60, 80, 70)),
    (lambda s, h: F.one_cycle_momentum(s, h, anneal_strategy="linear"), t(50, 60, 80, 70)),
]


@pytest.mark.parametrize("i", range(len(VMAP_CASES)))
def test_functional_forms_run_under_vmap(i):
    fn, hp = VMAP_CASES[i]
    steps = torch.tensor([0.0, 13.0, 49.0, 70.0], dtype=torch.float64)
    batched = fn(steps, hp)
    mapped = torch.func.vmap(fn)(steps, hp)
    one_by_one = torch.stack([fn(steps[k], hp[k]) for k in range(K)])
    assert torch.equal(mapped, batched) and torch.equal(one_by_one, batched)


def test_plateau_functional_under_vmap_matches_class():
    metrics = _metric_paths(60, 5, seed=6)
    hp = {n: PLATEAU_HP[n] for n in ("patience", "threshold", "cooldown")}

    def one(state, m, patience, threshold, cooldown, lr, factor, min_lr, eps):
        state, reduce = F.plateau_update(state, m, "min", patience, threshold, "rel", cooldown)
        return state, F.plateau_reduce_lr(lr, reduce, factor, min_lr, eps)

    lr0 = t(0.1, 1.0, 0.05, 2.0, 0.3)
    state, lr = F.plateau_init("min", (5,)), lr0.clone()
    opt = PopOpt([lr0.clone()], momentum=0.0)
    sched = S.ReduceLROnPlateau(opt, **PLATEAU_HP)
    for i in range(60):
        state, lr = torch.func.vmap(one)(
            state,
            metrics[i],
            *hp.values(),
            lr,
            PLATEAU_HP["factor"],
            PLATEAU_HP["min_lr"],
            PLATEAU_HP["eps"],
        )
        sched.step(metrics[i])
        assert torch.equal(lr, opt.param_groups[0]["lr"])
        assert torch.equal(state.num_bad_epochs, sched.num_bad_epochs)


def _brute_force_sgdr(n: int, T_0: int, T_mult: int) -> tuple[list[int], list[int]]:
    T_cur, T_i, curs, lens = 0, T_0, [], []
    for _ in range(n):
        curs.append(T_cur), lens.append(T_i)
        T_cur += 1
        if T_cur >= T_i:
            T_cur, T_i = T_cur - T_i, T_i * T_mult
    return curs, lens


def test_warm_restart_position_is_exact_at_every_boundary():
    # log-based cycle index, corrected in int64: exact where torch's own step(epoch) path is
    # not: int(math.log(243, 3)) == 4 puts epoch 121 of T_0=1, T_mult=3 (the first step of
    # cycle 5, which starts at (3**5 - 1) / 2 = 121) at the end of cycle 4.
    steps = torch.arange(3000, dtype=torch.float64)
    for T_0 in (1, 2, 3, 5):
        for T_mult in (1, 2, 3, 4):
            T_cur, T_i = F.warm_restart_position(steps, T_0, T_mult)
            curs, lens = _brute_force_sgdr(3000, T_0, T_mult)
            assert T_cur.tolist() == curs and T_i.tolist() == lens
    T_cur, T_i = F.warm_restart_position(121, 1, 3)
    assert (T_cur.item(), T_i.item()) == (0.0, 243.0)


def test_warm_restarts_fractional_epochs_follow_torch():
    # torch's documented use: step(epoch + i / iters). Epochs avoid exact cycle boundaries,
    # where torch's epoch path can be off by a cycle (see the test above).
    epochs = [e + i / 7 for e in range(12) for i in range(1, 7)]
    opt = pop_opt(None)
    ours = S.CosineAnnealingWarmRestarts(opt, T_0=t(1, 2, 3, 2), T_mult=t(2, 1, 2, 3))
    got = []
    for e in epochs:
        ours.step(e)
        got.append(opt.param_groups[0]["lr"].clone())
    ours.step()  # continues from the fractional position (T_cur + 1), as torch does
    got.append(opt.param_groups[0]["lr"].clone())
    assert ours.last_epoch == 12
    for k, (T_0, T_mult) in enumerate([(1, 2), (2, 1), (3, 2), (2, 3)]):
        topt = torch_opt(None, [LR[k].item()])
        ref = TL.CosineAnnealingWarmRestarts(topt, T_0=T_0, T_mult=T_mult)
        want = []
        for e in epochs:
            ref.step(e)
            want.append(topt.param_groups[0]["lr"])
        ref.step()
        want.append(topt.param_groups[0]["lr"])
        torch.testing.assert_close(torch.stack(got)[:, k], t(*want), rtol=RTOL, atol=0)


# ------------------------------------------------------------- optimkit's own optimizers
def test_drives_optimkit_sgd_like_torch():
    optim = pytest.importorskip("optimkit.optim")
    torch.manual_seed(0)
    target = torch.randn(K, 3, dtype=torch.float64)
    w = torch.zeros(K, 3, dtype=torch.float64, requires_grad=True)
    opt = optim.SGD([w], lr=LR.clone(), momentum=0.9)
    sched = S.CyclicLR(opt, base_lr=0.01, max_lr=t(0.1, 0.2, 0.05, 0.3), step_size_up=t(3, 4, 5, 6))
    for _ in range(30):
        opt.zero_grad()
        ((w - target) ** 2).sum().backward()
        opt.step()
        sched.step()
    for k in range(K):
        wk = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        topt = torch.optim.SGD([wk], lr=LR[k].item(), momentum=0.9)
        tsched = TL.CyclicLR(
            topt, base_lr=0.01, max_lr=[0.1, 0.2, 0.05, 0.3][k], step_size_up=[3, 4, 5, 6][k]
        )
        for _ in range(30):
            topt.zero_grad()
            ((wk - target[k]) ** 2).sum().backward()
            topt.step()
            tsched.step()
        torch.testing.assert_close(w[k].detach(), wk.detach(), rtol=RTOL, atol=1e-15)


def test_drives_optimkit_adam_betas_like_torch():
    optim = pytest.importorskip("optimkit.optim")
    torch.manual_seed(1)
    target = torch.randn(K, 3, dtype=torch.float64)
    w = torch.zeros(K, 3, dtype=torch.float64, requires_grad=True)
    opt = optim.Adam([w], lr=1e-3, members=K)  # K must be known to the optimizer
    sched = S.OneCycleLR(opt, max_lr=t(0.1, 0.2, 0.05, 0.3), total_steps=t(40, 50, 60, 45))
    for _ in range(40):
        opt.zero_grad()
        ((w - target) ** 2).sum().backward()
        opt.step()
        sched.step()
    for k in range(K):
        wk = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        topt = torch.optim.Adam([wk], lr=1e-3)
        tsched = TL.OneCycleLR(
            topt, max_lr=[0.1, 0.2, 0.05, 0.3][k], total_steps=[40, 50, 60, 45][k]
        )
        for _ in range(40):
            topt.zero_grad()
            ((wk - target[k]) ** 2).sum().backward()
            topt.step()
            tsched.step()
        torch.testing.assert_close(w[k].detach(), wk.detach(), rtol=RTOL, atol=1e-15)


# ------------------------------------------------------------------------------ validation
def _opt():
    return pop_opt(None)


BAD = [
    (lambda: S.StepLR(_opt(), step_size=3, gamma=-0.1), "gamma"),
    (lambda: S.StepLR(_opt(), step_size=0), "step_size"),
    (lambda: S.StepLR(_opt(), step_size=2.5), "step_size"),
    (lambda: S.StepLR(_opt(), step_size=3, gamma=t(0.1, 0.2, 0.3)), "gamma"),
    (lambda: S.StepLR(_opt(), step_size=3, gamma=torch.ones(2, 2)), "gamma"),
    (lambda: S.StepLR(_opt(), step_size=3, gamma=float("nan")), "gamma"),
    (lambda: S.ExponentialLR(_opt(), gamma=t(0.9, -0.9, 0.9, 0.9)), "gamma"),
    (lambda: S.MultiStepLR(_opt(), milestones=[30, 10]), "milestones"),
    (lambda: S.MultiStepLR(_opt(), milestones=torch.tensor([[1, 2], [3, 2]])), "milestones"),
    (lambda: S.MultiStepLR(_opt(), milestones=[t(1, 2), t(3, 4, 5)]), "milestones"),
    (lambda: S.CosineAnnealingLR(_opt(), T_max=0), "T_max"),
    (lambda: S.CosineAnnealingLR(_opt(), T_max=t(10, -1, 5, 5)), "T_max"),
    (lambda: S.CosineAnnealingLR(_opt(), T_max=t(10, 5, 5), eta_min=t(0.1, 0.2)), "T_max"),
    (lambda: S.CosineAnnealingLR(_opt(), T_max=10, eta_min=t(0.1, 0.2)), "eta_min"),
    (lambda: S.CosineAnnealingWarmRestarts(_opt(), T_0=1.5), "T_0"),
    (lambda: S.CosineAnnealingWarmRestarts(_opt(), T_0=3, T_mult=0), "T_mult"),
    (lambda: S.LinearLR(_opt(), start_factor=0.0), "start_factor"),
    (lambda: S.LinearLR(_opt(), end_factor=1.5), "end_factor"),
    (lambda: S.LinearLR(_opt(), total_iters=0), "total_iters"),
    (lambda: S.ConstantLR(_opt(), factor=1.5), "factor"),
    (lambda: S.CyclicLR(_opt(), 0.01, 0.1, mode="triangle"), "mode"),
    (lambda: S.CyclicLR(_opt(), 0.01, 0.1, scale_fn=lambda x: x, scale_mode="epoch"), "scale_mode"),
    (lambda: S.CyclicLR(_opt(), [0.01, 0.02], 0.1), "base_lr"),
    (lambda: S.CyclicLR(_opt(), 0.01, 0.1, step_size_up=0), "step_size_up"),
    (lambda: S.CyclicLR(PopOpt([0.1]), 0.01, 0.1), "cycle_momentum"),
    (lambda: S.OneCycleLR(_opt(), max_lr=0.1), "total_steps"),
    (lambda: S.OneCycleLR(_opt(), max_lr=0.1, epochs=3), "total_steps"),
    (
        lambda: S.OneCycleLR(_opt(), max_lr=0.1, total_steps=100, anneal_strategy="cosine"),
        "anneal_strategy",
    ),
    (lambda: S.OneCycleLR(_opt(), max_lr=0.1, total_steps=100, pct_start=1.5), "pct_start"),
    (lambda: S.OneCycleLR(_opt(), max_lr=0.1, total_steps=10, pct_start=0.1), "pct_start"),
    (lambda: S.OneCycleLR(_opt(), max_lr=0.1, total_steps=t(10, 20)), "total_steps"),
    (lambda: S.ReduceLROnPlateau(_opt(), mode="minimum"), "mode"),
    (lambda: S.ReduceLROnPlateau(_opt(), threshold_mode="relative"), "threshold_mode"),
    (lambda: S.ReduceLROnPlateau(_opt(), factor=1.0), "factor"),
    (lambda: S.ReduceLROnPlateau(_opt(), patience=-1), "patience"),
    (lambda: S.ReduceLROnPlateau(_opt(), min_lr=[0.0, 0.1]), "min_lr"),
    (lambda: S.ReduceLROnPlateau(_opt()).step(t(1.0, 2.0)), "metrics"),
    (lambda: S.StepLR(_opt(), step_size=3, last_epoch=5), "last_epoch"),
    (lambda: S.StepLR(_opt(), step_size=3).step(1.5), "epoch"),
    (
        lambda: S.StepLR(_opt(), step_size=3).load_state_dict(
            S.ExponentialLR(_opt(), gamma=0.9).state_dict()
        ),
        "state_dict",
    ),
]


@pytest.mark.parametrize("i", range(len(BAD)))
def test_bad_arguments_raise_value_error_naming_them(i):
    make, name = BAD[i]
    with pytest.raises(ValueError, match=name):
        make()


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"\['triangular', 'triangular2', 'exp_range'\]"):
        S.CyclicLR(_opt(), 0.01, 0.1, mode="tri")
    with pytest.raises(ValueError, match=r"\['cos', 'linear'\]"):
        S.OneCycleLR(_opt(), max_lr=0.1, total_steps=10, anneal_strategy="lin")


def test_sequential_validation():
    opt = _opt()
    a, b = S.ExponentialLR(opt, gamma=0.9), S.StepLR(opt, step_size=3)
    with pytest.raises(ValueError, match="milestones"):
        S.SequentialLR(opt, [a, b], milestones=[5, 10])
    with pytest.raises(ValueError, match="milestones"):
        S.SequentialLR(opt, [a, b, S.ExponentialLR(opt, gamma=0.5)], milestones=[10, 10])
    with pytest.raises(ValueError, match="schedulers"):
        S.SequentialLR(opt, [], milestones=[])
    with pytest.raises(ValueError, match=r"schedulers\[1\]"):
        S.SequentialLR(opt, [a, S.ReduceLROnPlateau(opt)], milestones=[5])
    with pytest.raises(ValueError, match=r"schedulers\[1\]"):
        S.SequentialLR(opt, [a, TL.StepLR(torch_opt(None, [0.1]), 3)], milestones=[5])
    with pytest.raises(ValueError, match=r"schedulers\[1\]"):
        S.SequentialLR(opt, [a, S.StepLR(_opt(), step_size=3)], milestones=[5])


def test_one_cycle_past_total_steps_raises_like_torch():
    opt, topt = _opt(), torch_opt(None, [0.1])
    ours = S.OneCycleLR(opt, max_lr=0.1, total_steps=10, cycle_momentum=False)
    theirs = TL.OneCycleLR(topt, max_lr=0.1, total_steps=10, cycle_momentum=False)
    for _ in range(10):  # step 10 == total_steps is still allowed, as in torch
        ours.step(), theirs.step()
    with pytest.raises(ValueError, match="Tried to step 11 times"):
        theirs.step()
    with pytest.raises(ValueError, match="Tried to step 11 times"):
        ours.step()
    assert ours.last_epoch == 10  # the failed step changed nothing
    # per-member total_steps: stepping past the smallest raises (member 0's torch would)
    pop = S.OneCycleLR(_opt(), max_lr=0.1, total_steps=t(5, 8, 9, 7))
    for _ in range(5):
        pop.step()
    with pytest.raises(ValueError, match="total steps is 5"):
        pop.step()


# ------------------------------------------------------------------- torch compatibility
def test_isinstance_of_torch_base_classes_and_usable_in_torch_sequential():
    opt = _opt()
    assert isinstance(S.StepLR(opt, step_size=3), TL.LRScheduler)
    assert isinstance(S.ReduceLROnPlateau(opt), TL.ReduceLROnPlateau)

    def run(lib):
        topt = torch_opt(None, [0.3])
        a = lib.LinearLR(topt, start_factor=0.1, total_iters=5)
        b = lib.CosineAnnealingLR(topt, T_max=30)
        lrs, _ = trace(topt, TL.SequentialLR(topt, [a, b], milestones=[5]), 60, None)
        return lrs

    # torch's SequentialLR drives ours through _initial_step / _update_lr (scalar mode)
    torch.testing.assert_close(run(S), run(TL), rtol=RTOL, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensors_stay_on_device_and_match_cpu():
    dev = torch.device("cuda")
    hps = dict(
        base_lr=t(0.01, 0.1, 0.001, 0.5),
        max_lr=t(0.1, 1.0, 0.01, 2.0),
        step_size_up=t(10, 20, 7, 33),
        mode="exp_range",
        gamma=t(0.99, 0.999, 0.9, 1.0),
    )
    cpu_opt = pop_opt("betas")
    cpu_lr, cpu_m = trace(cpu_opt, S.CyclicLR(cpu_opt, **hps), 60, "betas")
    gpu_opt = pop_opt("betas", [LR.to(dev)])
    gpu_hps = {k: v.to(dev) if isinstance(v, torch.Tensor) else v for k, v in hps.items()}
    sched = S.CyclicLR(gpu_opt, **gpu_hps)
    gpu_lr, gpu_m = trace(gpu_opt, sched, 60, "betas")
    assert gpu_opt.param_groups[0]["lr"].device.type == "cuda"
    assert gpu_opt.param_groups[0]["betas"][0].device.type == "cuda"
    torch.testing.assert_close(gpu_lr.cpu(), cpu_lr, rtol=RTOL, atol=0)
    torch.testing.assert_close(gpu_m.cpu(), cpu_m, rtol=RTOL, atol=0)
    assert sched.lr_at(torch.arange(4, device=dev))[0].device.type == "cuda"
    state = _checkpoint_roundtrip(sched.state_dict())
    again = S.CyclicLR(pop_opt("betas", [LR.to(dev)]), **gpu_hps)
    again.load_state_dict(state)
    assert torch.equal(again.get_last_lr()[0], sched.get_last_lr()[0])
    # plateau with metrics on the device
    popt = PopOpt([LR.to(dev)], momentum=0.0)
    plateau = S.ReduceLROnPlateau(popt, patience=t(0, 1, 2, 3).to(dev), factor=0.5)
    for _ in range(10):
        plateau.step(torch.full((K,), 1.0, device=dev))
    assert popt.param_groups[0]["lr"].device.type == "cuda"
    torch.testing.assert_close(
        popt.param_groups[0]["lr"].cpu(), LR * t(0.5**9, 0.5**4, 0.5**3, 0.5**2), rtol=RTOL, atol=0
    )
