"""Muon and SparseAdam against torch.optim, on the models torch accepts for them.

The crossed matrix (tests/test_optim_matrix.py) drives nn.Sequential(Linear, Tanh, Linear) and
dense random gradients for [K, 4, 3], [K, 3] and [K] parameters: torch's Muon rejects the 1-D
and 0-D ones, torch's SparseAdam rejects dense gradients, and so do ours. The same axes
(plain module f64/f32, populations with [K] hyperparameters vs K torch runs, K = 1, param
groups, state_dict both ways, lr_scheduler, skip_nonfinite, grad=None, torch keywords,
member-axis validation, PyTorch's own optim_inputs / error inputs) are covered here on a
stack of 2-D weights (Muon) and on nn.Embedding(sparse=True) / sparse [K, ...] gradients
(SparseAdam). Float64, exact to 1e-12 unless stated.
"""

from __future__ import annotations

import copy

import pytest
import torch

from optimkit.optim import Adafactor, Muon, SparseAdam

f64 = torch.float64
TOL = 1e-12


@pytest.fixture(autouse=True)
def _float64_default():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(f64)
    yield
    torch.set_default_dtype(previous)


def _err(a, b) -> float:
    a, b = a.detach().to(f64), b.detach().to(f64)
    return float((a - b).abs().max() / b.abs().max().clamp(min=1.0))


def _max_err(xs, ys) -> float:
    return max(_err(a, b) for a, b in zip(xs, ys, strict=True))


# ============================================================================ Muon
def _matrices(dtype=f64, seed=0):
    """A stack of bias-free linear layers: every parameter 2-D (wide, tall, square)."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(5, 7, bias=False), torch.nn.Tanh(), torch.nn.Linear(7, 7, bias=False),
        torch.nn.Tanh(), torch.nn.Linear(7, 2, bias=False),
    ).to(dtype)  # fmt: skip


def _train_net(net, opt, steps, seed=3, scheduler=None, d_in=5, d_out=2):
    g = torch.Generator().manual_seed(seed)
    dtype = next(net.parameters()).dtype
    for _ in range(steps):
        x = torch.randn(16, d_in, generator=g, dtype=f64).to(dtype)
        y = torch.randn(16, d_out, generator=g, dtype=f64).to(dtype)
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x), y).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()


MUON_CASES = [
    {},
    {"nesterov": False},
    {"adjust_lr_fn": "original"},
    {"adjust_lr_fn": "match_rms_adamw"},
    {"weight_decay": 0.0, "momentum": 0.8},
    {"ns_steps": 3, "ns_coefficients": (3.4, -4.7, 2.0), "eps": 1e-3},
    {"lr": 0.05, "weight_decay": 0.3, "nesterov": False, "adjust_lr_fn": "match_rms_adamw"},
]


@pytest.mark.parametrize("kwargs", MUON_CASES, ids=str)
@pytest.mark.parametrize("dtype", [f64, torch.float32], ids=str)
def test_muon_plain_module_matches_torch(kwargs, dtype):
    ours_net, ref_net = _matrices(dtype), _matrices(dtype)
    kwargs = {"lr": 0.02, **kwargs}
    ours = Muon(ours_net.parameters(), **kwargs)
    ref = torch.optim.Muon(ref_net.parameters(), **kwargs)
    _train_net(ours_net, ours, 25)
    _train_net(ref_net, ref, 25)
    assert _max_err(ours_net.parameters(), ref_net.parameters()) <= (TOL if dtype == f64 else 1e-5)
    ours_state, ref_state = ours.state_dict()["state"], ref.state_dict()["state"]
    assert {i: set(s) for i, s in ours_state.items()} == {i: set(s) for i, s in ref_state.items()}


def test_muon_bfloat16_parameters():
    ours_net, ref_net = _matrices(torch.bfloat16), _matrices(torch.bfloat16)
    ours = Muon(ours_net.parameters(), lr=0.02)
    ref = torch.optim.Muon(ref_net.parameters(), lr=0.02)
    _train_net(ours_net, ours, 5)
    _train_net(ref_net, ref, 5)
    assert _max_err(ours_net.parameters(), ref_net.parameters()) <= 5e-2
    assert all(p.dtype == torch.bfloat16 for p in ours_net.parameters())


def _muon_population(k, seed, shapes, steps=25, dtype=f64, per_member=True, compile=False,
                     **extra):  # fmt: skip
    rng = torch.Generator().manual_seed(seed)

    def draw(lo, hi):
        v = lo + torch.rand(k, generator=rng, dtype=f64) * (hi - lo)
        return v if per_member else float(v[0])

    kwargs = {"lr": draw(0.005, 0.05), "momentum": draw(0.0, 0.99),
              "weight_decay": draw(0.0, 0.3), "eps": draw(1e-7, 1e-3), **extra}  # fmt: skip
    params = [torch.randn((k, *s), generator=rng, dtype=f64).to(dtype).requires_grad_()
              for s in shapes]  # fmt: skip
    ours = Muon(params, members=k, compile=compile, **kwargs)
    twins = [[p.detach()[m].clone().requires_grad_() for p in params] for m in range(k)]

    def one(v, m):
        if isinstance(v, tuple):
            return tuple(one(x, m) for x in v)
        return float(v[m]) if isinstance(v, torch.Tensor) else v

    def member(m):
        return {n: one(v, m) for n, v in kwargs.items()}

    refs = [torch.optim.Muon(twins[m], **member(m)) for m in range(k)]
    g = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        grads = [torch.randn((k, *s), generator=g, dtype=f64).to(dtype) for s in shapes]
        for p, gr in zip(params, grads, strict=True):
            p.grad = gr.clone()
        ours.step()
        for m in range(k):
            for q, gr in zip(twins[m], grads, strict=True):
                q.grad = gr[m].clone()
            refs[m].step()
    return max(_max_err([p[m] for p in params], twins[m]) for m in range(k)), ours, params


SHAPES = [(4, 3), (3, 6), (5, 5)]


@pytest.mark.parametrize("extra", [{}, {"nesterov": False}, {"adjust_lr_fn": "match_rms_adamw"},
                                   {"ns_steps": 7}], ids=str)  # fmt: skip
@pytest.mark.parametrize("seed", [0, 1])
def test_muon_population_member_matches_torch(extra, seed):
    """[K, m, n] member views, Newton-Schulz per member: member k == torch with hp[k]."""
    err, ours, _ = _muon_population(3, seed, SHAPES, **extra)
    assert err <= TOL
    assert ours.members == 3


def test_muon_population_of_one_and_float32():
    err, ours, _ = _muon_population(1, 4, SHAPES)
    assert err <= TOL and ours.members == 1
    err, _, _ = _muon_population(3, 5, SHAPES, dtype=torch.float32)
    assert err <= 1e-5


def test_muon_per_member_newton_schulz_coefficients():
    """[K] ns_coefficients run batched in float32-then-bfloat16: torch up to addmm's own
    bfloat16 accumulation order (a rounding flip in bfloat16 moves p by ~lr 2^-8)."""
    k = 3
    a = torch.tensor([3.4445, 3.4, 3.0])
    b = torch.tensor([-4.7750, -4.7, -4.0])
    c = torch.tensor([2.0315, 2.0, 1.5])
    err, _, _ = _muon_population(k, 7, SHAPES, steps=10, ns_coefficients=(a, b, c))
    assert err <= 1e-3


def test_muon_compile_is_accepted_and_eager():
    *_, p1 = _muon_population(2, 6, SHAPES, steps=4)
    *_, p2 = _muon_population(2, 6, SHAPES, steps=4, compile=True)
    assert all(torch.equal(a, b) for a, b in zip(p1, p2, strict=True))


def test_muon_param_groups_with_their_own_hyperparameters():
    k = 3
    rng = torch.Generator().manual_seed(8)
    a = torch.randn(k, 4, 2, generator=rng).requires_grad_()
    b = torch.randn(k, 2, 5, generator=rng).requires_grad_()
    kw_a = {"lr": torch.tensor([0.01, 0.02, 0.03]), "momentum": torch.tensor([0.9, 0.5, 0.0])}
    kw_b = {"lr": torch.tensor([0.05, 0.04, 0.01]), "weight_decay": torch.tensor([0.0, 0.1, 0.2]),
            "nesterov": False}  # fmt: skip
    ours = Muon([{"params": [a], **kw_a}, {"params": [b], **kw_b}], members=k)

    def one(kw, m):
        return {n: float(v[m]) if isinstance(v, torch.Tensor) else v for n, v in kw.items()}

    refs = []
    for m in range(k):
        qa, qb = a.detach()[m].clone().requires_grad_(), b.detach()[m].clone().requires_grad_()
        groups = [{"params": [qa], **one(kw_a, m)}, {"params": [qb], **one(kw_b, m)}]
        refs.append((qa, qb, torch.optim.Muon(groups)))
    g = torch.Generator().manual_seed(12)
    for _ in range(15):
        ga, gb = torch.randn(a.shape, generator=g), torch.randn(b.shape, generator=g)
        a.grad, b.grad = ga.clone(), gb.clone()
        ours.step()
        for m, (qa, qb, ref) in enumerate(refs):
            qa.grad, qb.grad = ga[m].clone(), gb[m].clone()
            ref.step()
    for m, (qa, qb, _) in enumerate(refs):
        assert _max_err([a[m], b[m]], [qa, qb]) <= TOL


@pytest.mark.parametrize("direction", ["ours_to_torch", "torch_to_ours", "ours_to_ours"])
def test_muon_state_dict_moves_between_ours_and_torch(direction):
    first_net, whole_net = _matrices(), _matrices()
    whole = torch.optim.Muon(whole_net.parameters(), lr=0.02)
    _train_net(whole_net, whole, 16)
    first_ours, second_ours = {"ours_to_torch": (True, False), "torch_to_ours": (False, True),
                               "ours_to_ours": (True, True)}[direction]  # fmt: skip

    def build(ours):
        return (Muon if ours else torch.optim.Muon)(first_net.parameters(), lr=0.02)

    g = torch.Generator().manual_seed(3)
    batches = [(torch.randn(16, 5, generator=g), torch.randn(16, 2, generator=g))
               for _ in range(16)]  # fmt: skip

    def run(opt, part):
        for x, y in part:
            opt.zero_grad()
            torch.nn.functional.mse_loss(first_net(x), y).backward()
            opt.step()

    first = build(first_ours)
    run(first, batches[:8])
    second = build(second_ours)
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    run(second, batches[8:])
    assert _max_err(first_net.parameters(), whole_net.parameters()) <= TOL
    if second_ours:
        assert all(set(s) == {"momentum_buffer"} for s in second.state.values())


def test_muon_lr_scheduler_and_frozen_parameter():
    ours_net, ref_net = _matrices(), _matrices()
    for net in (ours_net, ref_net):
        net[2].weight.requires_grad_(False)
    frozen = ours_net[2].weight.detach().clone()
    ours = Muon(ours_net.parameters(), lr=0.02)
    ref = torch.optim.Muon(ref_net.parameters(), lr=0.02)
    sched = [torch.optim.lr_scheduler.StepLR(o, step_size=4, gamma=0.5) for o in (ours, ref)]
    _train_net(ours_net, ours, 12, scheduler=sched[0])
    _train_net(ref_net, ref, 12, scheduler=sched[1])
    assert _max_err(ours_net.parameters(), ref_net.parameters()) <= TOL
    assert torch.equal(ours_net[2].weight, frozen)
    assert not ours.state.get(ours_net[2].weight)


def test_muon_skip_nonfinite_keeps_the_member_and_not_the_others():
    k = 3
    rng = torch.Generator().manual_seed(9)
    p = torch.randn(k, 5, 4, generator=rng).requires_grad_()
    q = p.detach().clone().requires_grad_()
    lr = torch.tensor([0.01, 0.02, 0.03])
    ours = Muon([p], lr=lr, skip_nonfinite=True)
    plain = Muon([q], lr=lr)
    for i in range(6):
        g = torch.randn(p.shape, generator=rng)
        p.grad, q.grad = g.clone(), g.clone()
        if i == 4:
            p.grad[1, 2, 0] = float("nan")
            before = (p.detach()[1].clone(), ours.state[p]["momentum_buffer"][1].clone())
        ours.step()
        plain.step()
        if i == 4:
            assert torch.equal(p.detach()[1], before[0])
            assert torch.equal(ours.state[p]["momentum_buffer"][1], before[1])
            for m in (0, 2):
                assert torch.equal(p.detach()[m], q.detach()[m])


def test_muon_validation():
    w = torch.zeros(3, 4, 2, requires_grad=True)
    Muon([w], members=3, foreach=False, capturable=False, differentiable=False)
    Muon([torch.zeros(4, 2, requires_grad=True)], foreach=True, fused=None)
    with pytest.raises(ValueError, match="differentiable=True is not supported"):
        Muon([w], members=3, differentiable=True)
    with pytest.raises(ValueError, match="Muon only supports 2D parameters"):
        Muon([torch.zeros(4, requires_grad=True)])
    with pytest.raises(ValueError, match=r"Muon only supports 2D parameters \(with K = 3"):
        Muon([torch.zeros(3, 4, requires_grad=True)], members=3)
    with pytest.raises(ValueError, match=r"^params\[0\]: with K = 3 members"):
        Muon([torch.zeros(4, 2, 2, requires_grad=True)], lr=torch.full((3,), 1e-3))
    with pytest.raises(ValueError, match=r"^lr: expected a tensor of shape \[2\]"):
        Muon([torch.zeros(2, 2, 2, requires_grad=True)], members=2, lr=torch.full((3,), 1e-3))
    with pytest.raises(ValueError, match=r"^lr: expected"):
        Muon([w], lr=-torch.full((3,), 1e-3))
    opt = Muon([w], lr=torch.full((3,), 1e-3))
    with pytest.raises(ValueError, match=r"^params\[0\]: with K = 3 members"):
        opt.add_param_group({"params": [torch.zeros(5, 2, 2, requires_grad=True)]})
    with pytest.raises(ValueError, match="Muon only supports 2D parameters"):
        opt.add_param_group({"params": [torch.zeros(3, 2, requires_grad=True)]})
    with pytest.raises(ValueError, match="adjust_lr_fn"):
        Muon([torch.zeros(4, 2, requires_grad=True)], adjust_lr_fn="arbitrary")


# ====================================================================== SparseAdam
def _embedding(dtype=f64, seed=0, n=12, d=3):
    torch.manual_seed(seed)
    return torch.nn.Embedding(n, d, sparse=True).to(dtype)


def _train_embedding(emb, opt, steps, seed=3, scheduler=None):
    g = torch.Generator().manual_seed(seed)
    dtype = emb.weight.dtype
    for _ in range(steps):
        idx = torch.randint(0, emb.num_embeddings, (6,), generator=g)
        y = torch.randn(6, emb.embedding_dim, generator=g, dtype=f64).to(dtype)
        opt.zero_grad()
        torch.nn.functional.mse_loss(emb(idx), y).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()


SPARSE_CASES = [{}, {"maximize": True}, {"lr": 0.05, "betas": (0.5, 0.9), "eps": 1e-3}]


@pytest.mark.parametrize("kwargs", SPARSE_CASES, ids=str)
@pytest.mark.parametrize("dtype", [f64, torch.float32], ids=str)
def test_sparse_adam_embedding_matches_torch(kwargs, dtype):
    ours_emb, ref_emb = _embedding(dtype), _embedding(dtype)
    ours = SparseAdam(ours_emb.parameters(), **kwargs)
    ref = torch.optim.SparseAdam(ref_emb.parameters(), **kwargs)
    _train_embedding(ours_emb, ours, 25)
    _train_embedding(ref_emb, ref, 25)
    assert _err(ours_emb.weight, ref_emb.weight) <= (TOL if dtype == f64 else 1e-5)
    ours_sd, ref_sd = ours.state_dict()["state"][0], ref.state_dict()["state"][0]
    assert set(ours_sd) == set(ref_sd) and ours_sd["step"] == ref_sd["step"] == 25
    assert isinstance(ours_sd["step"], int)


def test_sparse_adam_bfloat16():
    ours_emb, ref_emb = _embedding(torch.bfloat16), _embedding(torch.bfloat16)
    ours = SparseAdam(ours_emb.parameters())
    ref = torch.optim.SparseAdam(ref_emb.parameters())
    _train_embedding(ours_emb, ours, 5)
    _train_embedding(ref_emb, ref, 5)
    assert _err(ours_emb.weight, ref_emb.weight) <= 5e-2


def test_sparse_adam_dense_gradient_raises_torch_error():
    p = torch.zeros(4, 2, requires_grad=True)
    for cls in (SparseAdam, torch.optim.SparseAdam):
        opt = cls([p])
        p.grad = torch.ones_like(p)
        with pytest.raises(RuntimeError, match="does not support dense gradients"):
            opt.step()


def _sparse_grad(k, shape, gen, empty_member=None):
    """A sparse [K, n, d] gradient with rows chosen per member (duplicates included)."""
    n, d = shape
    idx, vals = [], []
    for m in range(k):
        if m == empty_member:
            continue
        rows = torch.randint(0, n, (4,), generator=gen)
        idx.append(torch.stack([torch.full_like(rows, m), rows]))
        vals.append(torch.randn(4, d, generator=gen))
    return torch.sparse_coo_tensor(torch.cat(idx, 1), torch.cat(vals), (k, n, d))


def _sparse_population(k, seed, steps=25, per_member=True, **extra):
    rng = torch.Generator().manual_seed(seed)

    def draw(lo, hi, log=False):
        u = torch.rand(k, generator=rng, dtype=f64)
        v = torch.exp(torch.log(torch.tensor(lo)) + u * (torch.log(torch.tensor(hi / lo))))
        v = v if log else lo + u * (hi - lo)
        return v if per_member else float(v[0])

    kwargs = {"lr": draw(1e-3, 1e-1, True), "betas": (draw(0.5, 0.99), draw(0.9, 0.9999)),
              "eps": draw(1e-8, 1e-3, True), **extra}  # fmt: skip
    w = torch.randn(k, 10, 3, generator=rng).requires_grad_()
    ours = SparseAdam([w], members=k, **kwargs)
    twins = [w.detach()[m].clone().requires_grad_() for m in range(k)]

    def one(v, m):
        if isinstance(v, tuple):
            return tuple(one(x, m) for x in v)
        return float(v[m]) if isinstance(v, torch.Tensor) else v

    refs = [torch.optim.SparseAdam([twins[m]], **{n: one(v, m) for n, v in kwargs.items()})
            for m in range(k)]  # fmt: skip
    g = torch.Generator().manual_seed(seed + 1)
    for i in range(steps):
        grad = _sparse_grad(k, (10, 3), g, empty_member=1 if i % 5 == 2 else None)
        w.grad = grad.clone()
        ours.step()
        for m in range(k):
            twins[m].grad = grad[m]
            refs[m].step()
    return max(_err(w[m], twins[m]) for m in range(k)), ours, w, refs


@pytest.mark.parametrize("extra", [{}, {"maximize": True}], ids=str)
@pytest.mark.parametrize("seed", [0, 1])
def test_sparse_adam_population_member_matches_torch(extra, seed):
    """Sparse [K, n, d] gradients: member k == torch with hp[k] on its own slice (a member
    with an empty slice still counts the step, as torch)."""
    err, ours, w, refs = _sparse_population(3, seed, **extra)
    assert err <= TOL
    steps = ours.state[w]["step"]
    assert steps.shape == (3,) and all(float(s) == r.state[r.param_groups[0]["params"][0]]["step"]
                                       for s, r in zip(steps, refs, strict=True))  # fmt: skip


def test_sparse_adam_population_of_one():
    err, ours, _, _ = _sparse_population(1, 4)
    assert err <= TOL and ours.members == 1


def test_sparse_adam_param_groups_and_lr_scheduler():
    ours_a, ref_a = _embedding(seed=1), _embedding(seed=1)
    ours_b, ref_b = _embedding(seed=2), _embedding(seed=2)

    def build(cls, a, b):
        return cls([{"params": a.parameters(), "lr": 0.05},
                    {"params": b.parameters(), "betas": (0.8, 0.99)}])  # fmt: skip

    ours, ref = build(SparseAdam, ours_a, ours_b), build(torch.optim.SparseAdam, ref_a, ref_b)
    sched = [torch.optim.lr_scheduler.StepLR(o, step_size=4, gamma=0.5) for o in (ours, ref)]
    g = torch.Generator().manual_seed(5)
    for _ in range(12):
        idx = torch.randint(0, 12, (5,), generator=g)
        y = torch.randn(5, 3, generator=g)
        for (a, b), opt, s in (((ours_a, ours_b), ours, sched[0]), ((ref_a, ref_b), ref, sched[1])):
            opt.zero_grad()
            torch.nn.functional.mse_loss(a(idx) * b(idx.flip(0)), y).backward()
            opt.step()
            s.step()
    assert _max_err([ours_a.weight, ours_b.weight], [ref_a.weight, ref_b.weight]) <= TOL


@pytest.mark.parametrize("direction", ["ours_to_torch", "torch_to_ours", "ours_to_ours"])
def test_sparse_adam_state_dict_moves_between_ours_and_torch(direction):
    emb, whole_emb = _embedding(), _embedding()
    whole = torch.optim.SparseAdam(whole_emb.parameters(), lr=0.02)
    _train_embedding(whole_emb, whole, 16)
    first_ours, second_ours = {"ours_to_torch": (True, False), "torch_to_ours": (False, True),
                               "ours_to_ours": (True, True)}[direction]  # fmt: skip

    def build(ours):
        return (SparseAdam if ours else torch.optim.SparseAdam)(emb.parameters(), lr=0.02)

    g = torch.Generator().manual_seed(3)
    batches = [(torch.randint(0, 12, (6,), generator=g), torch.randn(6, 3, generator=g))
               for _ in range(16)]  # fmt: skip

    def run(opt, part):
        for idx, y in part:
            opt.zero_grad()
            torch.nn.functional.mse_loss(emb(idx), y).backward()
            opt.step()

    first = build(first_ours)
    run(first, batches[:8])
    second = build(second_ours)
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    run(second, batches[8:])
    assert _err(emb.weight, whole_emb.weight) <= TOL
    assert second.state_dict()["state"][0]["step"] == 16


def test_sparse_adam_skip_nonfinite_and_grad_none():
    k = 3
    rng = torch.Generator().manual_seed(9)
    w = torch.randn(k, 10, 3, generator=rng).requires_grad_()
    v = w.detach().clone().requires_grad_()
    frozen = torch.randn(k, 4, 3, generator=rng).requires_grad_()
    lr = torch.tensor([0.01, 0.02, 0.03])
    ours = SparseAdam([w, frozen], lr=lr, skip_nonfinite=True)
    plain = SparseAdam([v], lr=lr)
    before_frozen = frozen.detach().clone()
    for i in range(6):
        grad = _sparse_grad(k, (10, 3), rng).coalesce()
        if i == 4:
            vals = grad._values().clone()
            vals[grad._indices()[0] == 1] = float("nan")
            bad = torch.sparse_coo_tensor(grad._indices(), vals, grad.shape)
            w.grad, v.grad = bad, grad.clone()
            state = {n: t[1].clone() for n, t in ours.state[w].items()}
            before = w.detach()[1].clone()
        else:
            w.grad, v.grad = grad.clone(), grad.clone()
        ours.step()
        plain.step()
        if i == 4:
            assert torch.equal(w.detach()[1], before)
            for n, t in state.items():
                assert torch.equal(ours.state[w][n][1], t), n
            for m in (0, 2):
                assert torch.equal(w.detach()[m], v.detach()[m])
    assert torch.equal(frozen, before_frozen) and not ours.state.get(frozen)


def test_sparse_adam_clip_grad_value_as_clamped_torch():
    ours_emb, ref_emb = _embedding(), _embedding()
    ours = SparseAdam(ours_emb.parameters(), clip_grad_value=0.05)
    ref = torch.optim.SparseAdam(ref_emb.parameters())
    g = torch.Generator().manual_seed(4)
    for _ in range(10):
        idx = torch.randint(0, 12, (6,), generator=g)
        y = torch.randn(6, 3, generator=g)
        for emb, opt in ((ours_emb, ours), (ref_emb, ref)):
            opt.zero_grad()
            torch.nn.functional.mse_loss(emb(idx), y).backward()
            if opt is ref:
                c = emb.weight.grad.coalesce()
                emb.weight.grad = torch.sparse_coo_tensor(
                    c._indices(), c._values().clamp(-0.05, 0.05), c.shape
                )
            opt.step()
    assert _err(ours_emb.weight, ref_emb.weight) <= TOL


def test_sparse_adam_validation():
    w = torch.zeros(3, 4, requires_grad=True)
    SparseAdam([w], foreach=False, capturable=False, differentiable=False)
    with pytest.raises(ValueError, match="differentiable=True is not supported"):
        SparseAdam([w], differentiable=True)
    with pytest.raises(ValueError, match="SparseAdam requires dense parameter tensors"):
        SparseAdam([torch.zeros(3, 4).to_sparse().requires_grad_()])
    with pytest.raises(ValueError, match="SparseAdam does not support complex parameters"):
        SparseAdam([torch.zeros(3, 4, dtype=torch.complex128, requires_grad=True)])
    for bad in ({"lr": 0.0}, {"eps": 0.0}, {"betas": (1.0, 0.9)}):
        with pytest.raises(ValueError):
            SparseAdam([w], **bad)
        with pytest.raises(ValueError):
            torch.optim.SparseAdam([w], **bad)
    with pytest.raises(ValueError, match=r"^params\[0\]: with K = 2 members"):
        SparseAdam([w], lr=torch.tensor([1e-3, 1e-3]))


# ============================================================ torch's own test inputs
def _optim_info(name):
    pytest.importorskip("expecttest")
    from torch.testing._internal.common_optimizers import optim_db

    return next(i for i in optim_db if i.optim_cls.__name__ == name)


def _float64(kwargs):
    return {k: v.to(f64) if isinstance(v, torch.Tensor) and v.is_floating_point() else v
            for k, v in kwargs.items()}  # fmt: skip


def _configs(name):
    pytest.importorskip("expecttest")
    from torch.testing._internal.common_optimizers import optim_db

    info = next(i for i in optim_db if i.optim_cls.__name__ == name)
    return [pytest.param(inp, id=f"{i}-{inp.desc}")
            for i, inp in enumerate(info.optim_inputs_func(device="cpu"))]  # fmt: skip


OURS = {"Adafactor": Adafactor, "Muon": Muon, "SparseAdam": SparseAdam}


def _run_config(name, kwargs):
    if name == "Muon":
        nets = _matrices(), _matrices()
        opts = (
            Muon(nets[0].parameters(), **kwargs),
            torch.optim.Muon(nets[1].parameters(), **kwargs),
        )
        for net, opt in zip(nets, opts, strict=True):
            _train_net(net, opt, 10)
    elif name == "SparseAdam":
        nets = _embedding(), _embedding()
        opts = (SparseAdam(nets[0].parameters(), **kwargs),
                torch.optim.SparseAdam(nets[1].parameters(), **kwargs))  # fmt: skip
        for net, opt in zip(nets, opts, strict=True):
            _train_embedding(net, opt, 10)
    else:  # Adafactor: any model, incl. a 3-D (factored over its last two dims) parameter
        torch.manual_seed(0)
        p0 = torch.randn(2, 4, 3)
        nets = (
            torch.nn.ParameterList([torch.nn.Parameter(p0.clone()), _matrices()[0].weight]),
            torch.nn.ParameterList([torch.nn.Parameter(p0.clone()), _matrices()[0].weight]),
        )
        opts = Adafactor(nets[0].parameters(), **kwargs), torch.optim.Adafactor(
            nets[1].parameters(), **kwargs)  # fmt: skip
        g = torch.Generator().manual_seed(2)
        for _ in range(10):
            grads = [torch.randn(p.shape, generator=g) for p in nets[0]]
            for net, opt in zip(nets, opts, strict=True):
                for p, gr in zip(net, grads, strict=True):
                    p.grad = gr.clone()
                opt.step()
    return _max_err(list(nets[0].parameters()), list(nets[1].parameters()))


@pytest.mark.parametrize("name", list(OURS))
def test_torch_optim_inputs_give_torch_parameters(name):
    """Every configuration of PyTorch's optim_inputs_func, float64 (differentiable=True is
    refused by design: our steps run under no_grad)."""
    info = _optim_info(name)
    for inp in info.optim_inputs_func(device="cpu"):
        kwargs = _float64(inp.kwargs)
        if kwargs.get("differentiable"):
            with pytest.raises(ValueError, match="differentiable=True is not supported"):
                OURS[name]([torch.zeros(2, 2, requires_grad=True)], **kwargs)
            continue
        assert _run_config(name, kwargs) <= TOL, inp.desc


@pytest.mark.parametrize("name", list(OURS))
def test_torch_error_inputs_raise_the_same_type(name):
    from torch.testing._internal.common_optimizers import OptimizerErrorEnum

    info = _optim_info(name)
    for err in info.optim_error_inputs_func(device="cpu", dtype=torch.float32):
        inp = err.optimizer_error_input
        params = inp.params
        if params is None:
            params = [torch.nn.Parameter(torch.randn(10, 5)), torch.nn.Parameter(torch.randn(10))]

        def build_and_step(params=params, inp=inp, err=err):
            opt = OURS[name](params, **inp.kwargs)
            if err.error_on == OptimizerErrorEnum.STEP_ERROR:
                for group in opt.param_groups:
                    for p in group["params"]:
                        p.grad = torch.rand_like(p) if p.grad is None else p.grad
                opt.step()

        if issubclass(err.error_type, Warning):
            with pytest.warns(err.error_type):
                build_and_step()
        else:
            with pytest.raises(err.error_type):
                build_and_step()
