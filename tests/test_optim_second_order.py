"""SOAP, SophiaH (closure with create_graph) and the Lookahead wrapper against
pytorch_optimizer, float64: plain modules and K = 3 populations vs 3 reference runs."""

from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("pytorch_optimizer")
import pytorch_optimizer as po

from optimkit.optim import SGD, SOAP, Adam, Lookahead, SophiaH, get_optimizer

f64 = torch.float64
K = 3


@pytest.fixture(autouse=True)
def _float64_default():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(f64)
    yield
    torch.set_default_dtype(previous)


def _err(a, b):
    return max(
        float((x.detach() - y.detach()).abs().max() / y.detach().abs().max().clamp(min=1.0))
        for x, y in zip(a, b, strict=True)
    )


def _net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 1))


def _batches(n, seed=3):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 5, generator=g), torch.randn(16, 1, generator=g)) for _ in range(n)]


def _train(net, opt, batches, create_graph=False):
    for x, y in batches:

        def closure(x=x, y=y):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x), y)
            loss.backward(create_graph=create_graph)
            return loss

        opt.step(closure)


# ------------------------------------------------------------------------------- SOAP
SOAP_SHAPES = [(4, 3), (3,), (), (2, 3, 4), (3, 2, 2, 5), (12, 2)]
SOAP_SETTINGS = [
    {},
    {"precondition_1d": True, "precondition_frequency": 2},
    {"max_precondition_dim": 3, "precondition_frequency": 3},
    {"merge_dims": True, "max_precondition_dim": 5, "precondition_frequency": 2},
    {"merge_dims": True, "max_precondition_dim": 5, "data_format": "channels_last"},
    {"normalize_gradient": True, "maximize": True, "correct_bias": False},
]


def _soap_shapes(kw):
    # merge_dims: the reference reshapes only tensors that do not merge into one dimension
    return [(4, 3, 2), (3, 2, 2, 5), (7, 6)] if kw.get("merge_dims") else SOAP_SHAPES


@pytest.mark.parametrize("kw", SOAP_SETTINGS, ids=str)
def test_soap_population_matches_reference_on_nd_parameters(kw):
    shapes = _soap_shapes(kw)
    rng = torch.Generator().manual_seed(0)
    params = [torch.randn((K, *s), generator=rng).requires_grad_() for s in shapes]
    hp = {"lr": torch.tensor([3e-3, 1e-2, 3e-2]), "shampoo_beta": torch.tensor([0.9, 0.95, 0.8]),
          "weight_decay": torch.tensor([0.0, 1e-2, 0.1]), "eps": torch.tensor([1e-8, 1e-6, 1e-4]),
          "betas": (torch.tensor([0.9, 0.95, 0.8]), 0.95)}  # fmt: skip
    ours = SOAP(params, **hp, **kw)
    twins = [[p.detach()[m].clone().requires_grad_() for p in params] for m in range(K)]
    refs = []
    for m in range(K):
        member = {n: (tuple(float(x[m]) if torch.is_tensor(x) else x for x in v)
                      if isinstance(v, tuple) else float(v[m])) for n, v in hp.items()}  # fmt: skip
        refs.append(po.SOAP(twins[m], **member, **kw))
    g = torch.Generator().manual_seed(1)
    for _ in range(12):
        grads = [torch.randn(p.shape, generator=g) for p in params]
        for p, gr in zip(params, grads, strict=True):
            p.grad = gr
        ours.step()
        for m in range(K):
            for q, gr in zip(twins[m], grads, strict=True):
                q.grad = gr[m].clone()
            refs[m].step()
    for m in range(K):
        assert _err([p[m] for p in params], twins[m]) <= 1e-12


def test_soap_state_keys_follow_the_reference_lists():
    p = torch.randn(4, 3, requires_grad=True)
    opt = SOAP([p], precondition_1d=True)
    p.grad = torch.randn(4, 3)
    opt.step()
    assert set(opt.state[p]) == {"step", "exp_avg", "exp_avg_sq", "GG_0", "GG_1", "Q_0", "Q_1",
                                 "shampoo_beta"}  # fmt: skip
    assert opt.state[p]["Q_0"].shape == (4, 4) and opt.param_groups[0]["step"] == 1


def test_soap_state_dict_round_trip_mid_run():
    whole_net, net = _net(), _net()
    batches = _batches(14)
    _train(whole_net, SOAP(whole_net.parameters(), precondition_frequency=3), batches)
    first = SOAP(net.parameters(), precondition_frequency=3)
    _train(net, first, batches[:7])
    second = SOAP(net.parameters(), precondition_frequency=3)
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    _train(net, second, batches[7:])
    assert _err(net.parameters(), whole_net.parameters()) == 0.0


def test_soap_reset_member_restarts_like_a_fresh_reference():
    """After reset_members, member 1 runs like a new reference from its current weights (the
    reset after 3 steps with precondition_frequency=3 keeps the shared refresh schedule
    aligned with the fresh run's)."""
    rng = torch.Generator().manual_seed(5)
    w = torch.randn(K, 6, 4, generator=rng).requires_grad_()
    opt = SOAP([w], members=K, precondition_frequency=3)
    g = torch.Generator().manual_seed(6)
    grads = [torch.randn(K, 6, 4, generator=g) for _ in range(11)]
    for gr in grads[:3]:
        w.grad = gr.clone()
        opt.step()
    opt.reset_members(torch.tensor([False, True, False]))
    q = w.detach()[1].clone().requires_grad_()
    ref = po.SOAP([q], precondition_frequency=3)
    for gr in grads[3:]:
        w.grad = gr.clone()
        opt.step()
        q.grad = gr[1].clone()
        ref.step()
    assert _err([w[1]], [q]) <= 1e-12
    assert float(opt.state[w]["step"][1]) == 8 and float(opt.state[w]["step"][0]) == 11


def test_soap_merge_that_the_reference_cannot_reshape_says_so():
    p = torch.randn(7, 5, requires_grad=True)
    opt = SOAP([p], merge_dims=True)
    p.grad = torch.randn(7, 5)
    with pytest.raises(RuntimeError, match="merge_dims=True merges a parameter of shape"):
        opt.step()


# ---------------------------------------------------------------------------- SophiaH
SOPHIA_SETTINGS = [
    {},
    {"update_period": 3},
    {"update_period": 2, "num_samples": 3, "hessian_distribution": "rademacher"},
    {"weight_decay": 0.1, "update_period": 1, "p": 0.05},
    {"weight_decay": 0.1, "weight_decouple": False, "maximize": True, "update_period": 2},
    {"weight_decay": 0.1, "fixed_decay": True, "eps": 1e-3, "update_period": 4},
]


@pytest.mark.parametrize("kw", SOPHIA_SETTINGS, ids=str)
def test_sophia_plain_module_matches_reference_with_the_same_seed(kw):
    """The closure calls backward(create_graph=True); the Hutchinson noise comes from the
    global RNG in the reference's order, so the same seed gives the same estimates."""
    ours_net, ref_net = _net(), _net()
    batches = _batches(25)
    ours = SophiaH(ours_net.parameters(), **kw)
    ref = po.SophiaH(ref_net.parameters(), **kw)
    torch.manual_seed(11)
    _train(ours_net, ours, batches, create_graph=True)
    torch.manual_seed(11)
    _train(ref_net, ref, batches, create_graph=True)
    assert _err(ours_net.parameters(), ref_net.parameters()) <= 1e-12
    assert set(ours.state[next(ours_net.parameters())]) >= {"momentum", "hessian_moment", "hessian"}


def _population_loss(w, b, x, y):
    """K independent models tanh(x W_k + b_k) summed over members."""
    return (
        torch.nn.functional.mse_loss(
            torch.tanh(torch.einsum("ni,kio->kno", x, w) + b[:, None, :]),
            y.expand(w.shape[0], *y.shape),
            reduction="none",
        )
        .mean(dim=(1, 2))
        .sum()
    )


@pytest.mark.parametrize("distribution", ["gaussian", "rademacher"])
def test_sophia_population_matches_three_reference_runs(distribution):
    rng = torch.Generator().manual_seed(0)
    w = torch.randn(K, 5, 2, generator=rng).requires_grad_()
    b = torch.randn(K, 2, generator=rng).requires_grad_()
    hp = {"lr": torch.tensor([0.06, 0.02, 0.1]), "betas": (torch.tensor([0.96, 0.9, 0.8]), 0.99),
          "p": torch.tensor([0.01, 0.05, 0.1]), "weight_decay": torch.tensor([0.0, 0.01, 0.1]),
          "eps": torch.tensor([1e-12, 1e-6, 1e-3])}  # fmt: skip
    common = {"update_period": 2, "num_samples": 2, "hessian_distribution": distribution}
    seeds = [21, 22, 23]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    ours = SophiaH([w, b], **hp, **common, generator=gens)
    batches = [(x, y[:, :1].repeat(1, 2)) for x, y in _batches(15)]
    for x, y in batches:

        def closure(x=x, y=y):
            ours.zero_grad()
            loss = _population_loss(w, b, x, y)
            loss.backward(create_graph=True)
            return loss

        ours.step(closure)
    for m in range(K):
        wm = w.detach()[m].clone()
        rng = torch.Generator().manual_seed(0)
        qw = torch.randn(K, 5, 2, generator=rng)[m].clone().requires_grad_()
        qb = torch.randn(K, 2, generator=rng)[m].clone().requires_grad_()
        member = {"lr": float(hp["lr"][m]), "betas": (float(hp["betas"][0][m]), 0.99),
                  "p": float(hp["p"][m]), "weight_decay": float(hp["weight_decay"][m]),
                  "eps": float(hp["eps"][m])}  # fmt: skip
        ref = po.SophiaH([qw, qb], **member, **common)
        torch.manual_seed(seeds[m])
        for x, y in batches:

            def closure(x=x, y=y, ref=ref, qw=qw, qb=qb):
                ref.zero_grad()
                loss = _population_loss(qw[None], qb[None], x, y)
                loss.backward(create_graph=True)
                return loss

            ref.step(closure)
        assert _err([wm, b[m]], [qw, qb]) <= 1e-12


def test_sophia_takes_the_hessian_estimate_from_the_caller():
    ours_net, ref_net = _net(), _net()
    ours = SophiaH(ours_net.parameters(), update_period=100)
    ref = po.SophiaH(ref_net.parameters(), update_period=100)
    g = torch.Generator().manual_seed(9)
    for i, (x, y) in enumerate(_batches(8)):
        hessian = [torch.rand(p.shape, generator=g) for p in ours_net.parameters()]
        for net, opt in ((ours_net, ours), (ref_net, ref)):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step(hessian=[h.clone() for h in hessian] if i % 2 == 0 else None)
    assert _err(ours_net.parameters(), ref_net.parameters()) <= 1e-12


def test_sophia_without_a_graph_says_what_to_do():
    net = _net()
    opt = SophiaH(net.parameters())
    x, y = _batches(1)[0]
    torch.nn.functional.mse_loss(net(x), y).backward()
    with pytest.raises(RuntimeError, match="create_graph=True"):
        opt.step()


def test_sophia_state_dict_round_trip_mid_run():
    whole_net, net = _net(), _net()
    batches = _batches(12)
    torch.manual_seed(4)
    _train(whole_net, SophiaH(whole_net.parameters(), update_period=3), batches, True)
    torch.manual_seed(4)
    first = SophiaH(net.parameters(), update_period=3)
    _train(net, first, batches[:5], True)
    second = SophiaH(net.parameters(), update_period=3)
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    _train(net, second, batches[5:], True)
    assert _err(net.parameters(), whole_net.parameters()) <= 1e-12


# -------------------------------------------------------------------------- Lookahead
LOOKAHEAD_CASES = [
    ({}, "adam", torch.optim.Adam, {"lr": 1e-2}),
    ({"k": 3, "alpha": 0.3, "pullback_momentum": "pullback"}, "sgd", torch.optim.SGD,
     {"lr": 0.05, "momentum": 0.9}),
    ({"k": 4, "pullback_momentum": "reset"}, "sgd", torch.optim.SGD,
     {"lr": 0.05, "momentum": 0.9}),
]  # fmt: skip


@pytest.mark.parametrize("case", LOOKAHEAD_CASES, ids=lambda c: f"{c[1]}-{c[0]}")
@pytest.mark.parametrize("form", ["params", "instance", "class"])
def test_lookahead_plain_module_matches_reference(case, form):
    kw, inner, torch_cls, inner_kw = case
    ours_net, ref_net = _net(), _net()
    ours_cls = {"adam": Adam, "sgd": SGD}[inner]
    if form == "params":
        ours = Lookahead(ours_net.parameters(), inner=inner, **kw, **inner_kw)
    elif form == "instance":
        ours = Lookahead(ours_cls(ours_net.parameters(), **inner_kw), **kw)
    else:
        ours = Lookahead(ours_cls, params=ours_net.parameters(), **kw, **inner_kw)
    ref = po.Lookahead(torch_cls(ref_net.parameters(), **inner_kw), **kw)
    batches = _batches(23)
    _train(ours_net, ours, batches)
    _train(ref_net, ref, batches)
    assert _err(ours_net.parameters(), ref_net.parameters()) <= 1e-12


def test_lookahead_population_with_per_member_alpha_matches_three_reference_runs():
    rng = torch.Generator().manual_seed(0)
    params = [torch.randn((K, *s), generator=rng).requires_grad_() for s in [(4, 3), (3,), ()]]
    alpha = torch.tensor([0.5, 0.2, 0.8])
    lrs = torch.tensor([1e-2, 3e-2, 1e-3])
    ours = Lookahead(params, k=3, alpha=alpha, lr=lrs, betas=(torch.tensor([0.9, 0.8, 0.95]), 0.99))
    assert ours.members == K
    twins = [[p.detach()[m].clone().requires_grad_() for p in params] for m in range(K)]
    refs = [po.Lookahead(torch.optim.Adam(twins[m], lr=float(lrs[m]),
                                          betas=(float([0.9, 0.8, 0.95][m]), 0.99)),
                         k=3, alpha=float(alpha[m])) for m in range(K)]  # fmt: skip
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        grads = [torch.randn(p.shape, generator=g) for p in params]
        for p, gr in zip(params, grads, strict=True):
            p.grad = gr
        ours.step()
        for m in range(K):
            for q, gr in zip(twins[m], grads, strict=True):
                q.grad = gr[m].clone()
            refs[m].step()
    for m in range(K):
        assert _err([p[m] for p in params], twins[m]) <= 1e-12


@pytest.mark.parametrize("direction", ["ours_to_reference", "reference_to_ours", "ours_to_ours"])
def test_lookahead_state_dict_moves_between_ours_and_reference(direction):
    whole_net, net = _net(), _net()
    batches = _batches(16)
    _train(whole_net, po.Lookahead(torch.optim.Adam(whole_net.parameters(), lr=1e-2), k=3), batches)

    def build(ours):
        if ours:
            return Lookahead(net.parameters(), k=3, lr=1e-2)
        return po.Lookahead(torch.optim.Adam(net.parameters(), lr=1e-2), k=3)

    first_ours, second_ours = {"ours_to_reference": (True, False),
                               "reference_to_ours": (False, True),
                               "ours_to_ours": (True, True)}[direction]  # fmt: skip
    first = build(first_ours)
    _train(net, first, batches[:7])  # mid-cycle: counter 1 of 3
    second = build(second_ours)
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    _train(net, second, batches[7:])
    assert _err(net.parameters(), whole_net.parameters()) <= 1e-12


def test_lookahead_with_a_torch_lr_scheduler_and_the_registry():
    ours_net, ref_net = _net(), _net()
    ours = get_optimizer("lookahead", ours_net.parameters(), lr=1e-2)
    ref = po.Lookahead(torch.optim.Adam(ref_net.parameters(), lr=1e-2))
    scheds = [torch.optim.lr_scheduler.StepLR(o, step_size=4, gamma=0.5) for o in (ours, ref)]
    for x, y in _batches(12):
        for net, opt, s in ((ours_net, ours, scheds[0]), (ref_net, ref, scheds[1])):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step()
            s.step()
    assert _err(ours_net.parameters(), ref_net.parameters()) <= 1e-12
    assert ours.param_groups[0]["lr"] == ref.param_groups[0]["lr"]


def test_lookahead_skip_nonfinite_member_keeps_its_weights_at_a_slow_step():
    rng = torch.Generator().manual_seed(0)
    p = torch.randn(K, 5, generator=rng).requires_grad_()
    q = p.detach().clone().requires_grad_()
    ours = Lookahead([p], k=2, members=K, lr=0.1, skip_nonfinite=True)
    plain = Lookahead([q], k=2, members=K, lr=0.1)
    g = torch.Generator().manual_seed(1)
    for i in range(4):
        gr = torch.randn(K, 5, generator=g)
        p.grad, q.grad = gr.clone(), gr.clone()
        if i == 3:  # a slow step
            p.grad[1, 0] = float("nan")
            before = (p.detach()[1].clone(), ours.state[p]["slow_params"][1].clone())
        ours.step()
        plain.step()
    assert torch.equal(p.detach()[1], before[0])
    assert torch.equal(ours.state[p]["slow_params"][1], before[1])
    for m in (0, 2):
        assert torch.equal(p.detach()[m], q.detach()[m])


def test_lookahead_member_slots():
    p = torch.randn(K, 4, requires_grad=True)
    opt = Lookahead([p], k=2, alpha=torch.tensor([0.5, 0.3, 0.7]), lr=0.1)
    for _ in range(3):
        p.grad = torch.randn(K, 4)
        opt.step()
    opt.copy_member(0, 2)
    assert float(opt.alpha[2]) == 0.5
    assert torch.equal(opt.state[p]["slow_params"][2], opt.state[p]["slow_params"][0])
    opt.set_member(1, {"alpha": 0.9, "lr": 0.2})
    assert float(opt.alpha[1]) == 0.9 and float(opt.param_groups[0]["lr"][1]) == 0.2
    opt.reset_members(torch.tensor([True, False, False]))
    assert torch.equal(opt.state[p]["slow_params"][0], p.detach()[0])


def test_lookahead_validates_its_arguments():
    net = _net()
    with pytest.raises(ValueError, match="alpha"):
        Lookahead(net.parameters(), alpha=1.0)
    with pytest.raises(ValueError, match="k"):
        Lookahead(net.parameters(), k=0)
    with pytest.raises(ValueError, match="pullback_momentum"):
        Lookahead(net.parameters(), pullback_momentum="nope")
    with pytest.raises(ValueError, match=r"alpha: expected a number"):
        Lookahead(Adam(net.parameters()), alpha=torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match=r"with K = 2 members"):  # a [K] alpha: a population
        Lookahead(net.parameters(), alpha=torch.tensor([0.5, 0.5]))
