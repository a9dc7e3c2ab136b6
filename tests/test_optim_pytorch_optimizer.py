"""The pytorch_optimizer ports (Lamb, LARS, AdaBelief, Adan, ADOPT, MADGRAD) beyond the crossed
matrix: options the matrix's one-flag-at-a-time crossing does not reach (flags whose default
is True, combinations, numbers that switch structure such as momentum = 0), ADOPT's
clip_lambda, the global gradient scale, and MADGRAD's optimizer-level counter k. Always
against the reference package, in float64, member by member."""

from __future__ import annotations

import copy

import optim_matrix as mx
import pytest
import torch

import optimkit.optim as oo

pytest.importorskip("pytorch_optimizer")
f64 = torch.float64
TOL = 1e-12


@pytest.fixture(autouse=True)
def _float64_default():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(f64)
    yield
    torch.set_default_dtype(previous)


def _run(name, fixed, k=3, seed=0, steps=25, shapes=None, per_member=0.7, **ours_only):
    """K members (random per-member hyperparameters from the database's test ranges, plus
    `fixed`) against K reference runs; returns the largest relative error and our optimizer."""
    shapes = shapes or [(k, 4, 3), (k, 3), (k,)]
    kwargs = mx.kwargs_for(name, mx.draw(name, k, seed, per_member=per_member), {})
    kwargs.update(fixed)
    rng = torch.Generator().manual_seed(seed + 100)
    params = [torch.randn(s, generator=rng).requires_grad_() for s in shapes]
    ours = mx.POPULATION[name](params, members=k, **kwargs, **ours_only)
    twins = [[p.detach()[m].clone().requires_grad_() for p in params] for m in range(k)]
    refs = [mx.reference(name, twins[m], mx.member(kwargs, m)) for m in range(k)]
    for grads in mx.random_grads(shapes, steps, seed + 1):
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        ours.step()
        for m in range(k):
            for q, g in zip(twins[m], grads, strict=True):
                q.grad = g[m].clone()
            refs[m].step()
    err = max(
        mx.relative_error(p[m], q) for m in range(k) for p, q in zip(params, twins[m], strict=True)
    )
    return err, ours


NO_SCALAR = [(3, 4, 3), (3, 3), (3, 1)]  # Adan's reference fails on 0-d tensors with clipping

CASES = {
    "lamb": [
        {"weight_decouple": False},
        {"grad_averaging": False},
        {"weight_decouple": True, "fixed_decay": True},
        {"rectify": True, "degenerated_to_sgd": True},
        {"rectify": True, "n_sma_threshold": 8},
        {"rectify": True, "adam": True},
        {"rectify": True, "adanorm": True, "maximize": True},
        {"rectify": True, "adam_debias": True, "weight_decouple": False},
        {"pre_norm": True, "max_grad_norm": torch.tensor([0.5, 0.0, 3.0])},
        {"pre_norm": True, "adanorm": True, "grad_averaging": False},
        {"foreach": False},
        {"foreach": False, "weight_decouple": False, "adam": True},
        {"weight_decay": 0.0},
    ],
    "adabelief": [
        {"weight_decouple": False},
        {"weight_decouple": False, "maximize": True, "adanorm": True},
        {"rectify": True, "degenerated_to_sgd": False},
        {"rectify": True, "ams_bound": True},
        {"rectify": True, "adam_debias": True, "n_sma_threshold": 6},
        {"ams_bound": True, "adam_debias": True, "fixed_decay": True},
        {"eps": torch.tensor([1e-16, 1e-8, 0.0])},
        {"weight_decay": 0.0},
    ],
    "adan": [
        {"max_grad_norm": 1.0},
        {"max_grad_norm": torch.tensor([0.5, 0.0, 2.0]), "maximize": True},
        {"max_grad_norm": 1.0, "use_gc": True, "adanorm": True, "weight_decouple": True},
        {"use_gc": True, "maximize": True},
        {"weight_decay": 0.0},
    ],
    "adopt": [
        {"clip_lambda": None},
        {"clip_lambda": lambda step: 0.5 + step**0.5},
        {"cautious": True, "stable_adamw": True},
        {"cautious": True, "weight_decouple": True, "fixed_decay": True},
        {"stable_adamw": True, "maximize": True},
        {"foreach": False},
    ],
    "madgrad": [
        {"momentum": 0.0},
        {"momentum": torch.tensor([0.0, 0.9, 0.5])},
        {"momentum": 0.0, "weight_decouple": True},
        {"eps": 0.0},
        {"eps": torch.tensor([0.0, 1e-6, 1e-3]), "maximize": True},
        {"lr": torch.tensor([0.0, 1e-2, 1e-3])},
        {"foreach": False},
    ],
    "lars": [
        {"momentum": 0.0},
        {"momentum": torch.tensor([0.0, 0.9, 0.5]), "nesterov": True},
        {"nesterov": True, "maximize": True, "dampening": 0.0},
        {"weight_decay": 0.0},
        {"trust_coefficient": 0.0},
    ],
}


@pytest.mark.parametrize(
    ("name", "fixed"),
    [(n, f) for n, fs in CASES.items() for f in fs],
    ids=[f"{n}-{i}" for n, fs in CASES.items() for i in range(len(fs))],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_population_member_matches_reference(name, fixed, seed):
    shapes = NO_SCALAR if name == "adan" else None
    err, _ = _run(name, fixed, seed=seed, shapes=shapes)
    assert err <= TOL


def test_adopt_clip_lambda_on_floats_for_a_plain_model():
    """A clip_lambda written for Python floats (math.pow) works for one model."""
    import math

    def clip(step):
        return math.pow(step, 0.3)

    torch.manual_seed(0)
    a, b = torch.randn(4, 3).requires_grad_(), None
    b = a.detach().clone().requires_grad_()
    ours = oo.ADOPT([a], lr=1e-2, clip_lambda=clip)
    ref = mx.spec_of("adopt").reference_class()([b], lr=1e-2, clip_lambda=clip)
    for (g,) in mx.random_grads([a.shape], 10, 3):
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    assert mx.relative_error(a, b) <= TOL


def test_madgrad_counter_is_the_references_k():
    """The optimizer-level counter: in the state_dict as the reference's ``k`` (shape [1],
    int64, for a plain model), counted by every step() (a step without gradients too)."""
    net, ref_net = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    ref_net.load_state_dict(net.state_dict())
    ours = oo.MADGRAD(net.parameters(), lr=1e-2)
    ref = mx.spec_of("madgrad").reference_class()(ref_net.parameters(), lr=1e-2)
    x = torch.randn(5, 3)
    for i in range(6):
        for n, o in ((net, ours), (ref_net, ref)):
            o.zero_grad()
            if i != 2:  # step 2: no gradients, k still counts
                n(x).square().sum().backward()
            o.step()
    for p, q in zip(net.parameters(), ref_net.parameters(), strict=True):
        assert mx.relative_error(p, q) <= TOL
    k_ours, k_ref = ours.state_dict()["state"]["k"], ref.state_dict()["state"]["k"]
    assert torch.equal(k_ours, k_ref) and k_ours.dtype == k_ref.dtype


def test_madgrad_state_dict_round_trip_and_member_slots():
    k = 3
    kwargs = mx.kwargs_for("madgrad", mx.draw("madgrad", k, 5), {})
    p = torch.randn(k, 4).requires_grad_()
    q = p.detach().clone().requires_grad_()
    a = oo.MADGRAD([p], members=k, **kwargs)
    grads = mx.random_grads([p.shape], 10, 6)
    for (g,) in grads[:5]:
        p.grad = g.clone()
        a.step()
    q.data.copy_(p.detach())
    b = oo.MADGRAD([q], members=k, **kwargs)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    assert torch.equal(b.state["k"], a.state["k"])
    for (g,) in grads[5:]:
        p.grad, q.grad = g.clone(), g.clone()
        a.step()
        b.step()
    assert torch.equal(p, q)
    a.reset_members(torch.tensor([False, True, False]))
    assert a.state["k"].tolist() == [10, 0, 10]
    a.copy_member(1, 2)
    assert a.state["k"].tolist() == [10, 0, 0]


def test_madgrad_reset_member_equals_a_fresh_reference():
    """After reset_members, a member continues as a fresh reference run from its current p."""
    k = 2
    kwargs = {"lr": torch.tensor([1e-2, 3e-2]), "momentum": 0.9}
    p = torch.randn(k, 3).requires_grad_()
    opt = oo.MADGRAD([p], members=k, **kwargs)
    grads = mx.random_grads([p.shape], 8, 9)
    for (g,) in grads[:4]:
        p.grad = g.clone()
        opt.step()
    opt.reset_members(torch.tensor([False, True]))
    twin = p.detach()[1].clone().requires_grad_()
    ref = mx.spec_of("madgrad").reference_class()([twin], lr=3e-2, momentum=0.9)
    for (g,) in grads[4:]:
        p.grad, twin.grad = g.clone(), g[1].clone()
        opt.step()
        ref.step()
    assert mx.relative_error(p[1], twin) <= TOL


def test_madgrad_skip_nonfinite_does_not_count_the_skipped_members_step():
    p = torch.randn(3, 4).requires_grad_()
    opt = oo.MADGRAD([p], members=3, skip_nonfinite=True)
    p.grad = torch.randn(3, 4)
    p.grad[1, 0] = float("nan")
    opt.step()
    assert opt.state["k"].tolist() == [1, 0, 1]


@pytest.mark.parametrize("name", ["lamb", "adan"])
def test_global_scale_uses_every_group(name):
    """pre_norm / max_grad_norm: one scale over all groups per member, from the constructor's
    max_grad_norm and eps (as the reference)."""
    fixed = {"lamb": {"pre_norm": True}, "adan": {"max_grad_norm": 1.0}}[name]
    k = 3
    rng = torch.Generator().manual_seed(1)
    a = torch.randn(k, 4, generator=rng).requires_grad_()
    b = torch.randn(k, 2, 2, generator=rng).requires_grad_()
    kw = mx.kwargs_for(name, mx.draw(name, k, 2, per_member=1.0), {})
    kw.update(fixed)
    cls = mx.POPULATION[name]
    ours = cls([{"params": [a], "lr": 1e-2}, {"params": [b]}], members=k, **kw)
    refs = []
    for m in range(k):
        qa, qb = a.detach()[m].clone().requires_grad_(), b.detach()[m].clone().requires_grad_()
        groups = [{"params": [qa], "lr": 1e-2}, {"params": [qb]}]
        refs.append((qa, qb, mx.reference(name, groups, mx.member(kw, m))))
    for ga, gb in mx.random_grads([a.shape, b.shape], 12, 4):
        a.grad, b.grad = ga.clone(), gb.clone()
        ours.step()
        for m, (qa, qb, ref) in enumerate(refs):
            qa.grad, qb.grad = ga[m].clone(), gb[m].clone()
            ref.step()
    for m, (qa, qb, _) in enumerate(refs):
        assert mx.relative_error(a[m], qa) <= TOL
        assert mx.relative_error(b[m], qb) <= TOL


def test_lamb_keeps_the_references_trust_ratio_state():
    torch.manual_seed(0)
    net, ref_net = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    ref_net.load_state_dict(net.state_dict())
    ours = oo.Lamb(net.parameters(), lr=1e-2, weight_decay=1e-2)
    ref = mx.spec_of("lamb").reference_class()(ref_net.parameters(), lr=1e-2, weight_decay=1e-2)
    x = torch.randn(5, 3)
    for _ in range(3):
        for n, o in ((net, ours), (ref_net, ref)):
            o.zero_grad()
            n(x).square().sum().backward()
            o.step()
    for p, q in zip(net.parameters(), ref_net.parameters(), strict=True):
        for key in ("weight_norm", "adam_norm", "trust_ratio", "exp_avg", "exp_avg_sq"):
            mine, theirs = ours.state[p][key], torch.as_tensor(ref.state[q][key])
            assert mine.shape == theirs.shape, key
            assert mx.relative_error(mine, theirs) <= TOL, key


def test_adopt_population_clip_lambda_on_floats_says_what_to_do():
    import math

    p = torch.randn(3, 2).requires_grad_()
    opt = oo.ADOPT([p], members=3, clip_lambda=lambda step: math.pow(step, 0.25))
    for _ in range(2):
        p.grad = torch.randn(3, 2)
        with pytest.raises((TypeError, RuntimeError, ValueError)):
            opt.step()
            opt.step()
