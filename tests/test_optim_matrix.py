"""The crossed matrix: every population optimizer of the database against its reference.

Cases come from tests/optim_matrix.py (optimizer x option from the database); each test
below crosses them with one more axis (plain module, population, K = 1, dtype, param groups,
state_dict both ways, lr scheduler, compile, skip_nonfinite, grad=None). The oracle is the
reference implementation named in each optimizer's spec, at the spec's tolerance (float64).
"""

from __future__ import annotations

import copy

import optim_matrix as mx
import pytest
import torch

f64 = torch.float64
CASES = mx.cases()
STEPS = 25


@pytest.fixture(autouse=True)
def _float64_default():
    """Reference packages keep some scalar state (NAdam's mu_product, ...) in the default
    dtype: make it float64 so that the float64 comparisons measure the update rules."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(f64)
    yield
    torch.set_default_dtype(previous)


def _train(net, opt, steps, seed=3, scheduler=None):
    g = torch.Generator().manual_seed(seed)
    dtype = next(net.parameters()).dtype
    for _ in range(steps):
        x = torch.randn(16, 5, generator=g, dtype=f64).to(dtype)
        y = torch.randn(16, 1, generator=g, dtype=f64).to(dtype)

        def closure(x=x, y=y):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x), y)
            loss.backward()
            return loss

        opt.step(closure)
        if scheduler is not None:
            scheduler.step()


def _max_err(a_params, b_params):
    return max(mx.relative_error(a, b) for a, b in zip(a_params, b_params, strict=True))


def _tol(name, dtype=f64):
    return {f64: mx.spec_of(name).tolerance, torch.float32: 1e-5, torch.bfloat16: 5e-2}[dtype]


# -------------------------------------------------------------------- plain nn.Module
@pytest.mark.parametrize("case", CASES, ids=mx.case_id)
@pytest.mark.parametrize("dtype", [f64, torch.float32], ids=str)
def test_plain_module_matches_reference(case, dtype):
    """What users do first: an nn.Module's parameters, float hyperparameters, torch's kwargs."""
    name, flags = case
    kwargs = mx.kwargs_for(name, mx.draw(name, 1, seed=7, per_member=0.0), flags)
    ours_net, ref_net = mx.net(name, dtype), mx.net(name, dtype)
    ours = mx.POPULATION[name](ours_net.parameters(), **kwargs)
    ref = mx.reference(name, ref_net.parameters(), kwargs)
    _train(ours_net, ours, STEPS)
    _train(ref_net, ref, STEPS)
    assert _max_err(ours_net.parameters(), ref_net.parameters()) <= _tol(name, dtype)
    assert set(ours.state_dict()["state"]) == set(ref.state_dict()["state"])


@pytest.mark.parametrize("name", list(mx.POPULATION))
def test_bfloat16_parameters(name):
    """bfloat16 parameters: the same few steps as the reference, to bfloat16's precision."""
    ours_net, ref_net = mx.net(name, torch.bfloat16), mx.net(name, torch.bfloat16)
    kwargs = mx.kwargs_for(name, {}, {})
    ours = mx.POPULATION[name](ours_net.parameters(), **kwargs)
    ref = mx.reference(name, ref_net.parameters(), kwargs)
    _train(ours_net, ours, 5)
    _train(ref_net, ref, 5)
    assert _max_err(ours_net.parameters(), ref_net.parameters()) <= _tol(name, torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in ours_net.parameters())


@pytest.mark.parametrize("name", list(mx.POPULATION))
def test_torch_lr_scheduler_attached(name):
    ours_net, ref_net = mx.net(name), mx.net(name)
    kwargs = mx.kwargs_for(name, {}, {})
    ours = mx.POPULATION[name](ours_net.parameters(), **kwargs)
    ref = mx.reference(name, ref_net.parameters(), kwargs)
    sched = [torch.optim.lr_scheduler.StepLR(o, step_size=4, gamma=0.5) for o in (ours, ref)]
    _train(ours_net, ours, 12, scheduler=sched[0])
    _train(ref_net, ref, 12, scheduler=sched[1])
    assert _max_err(ours_net.parameters(), ref_net.parameters()) <= _tol(name)


TORCH_REFERENCED = [n for n in mx.POPULATION if mx.spec_of(n).reference.startswith("torch.")]


@pytest.mark.parametrize("name", TORCH_REFERENCED)
@pytest.mark.parametrize("direction", ["ours_to_reference", "reference_to_ours", "ours_to_ours"])
def test_state_dict_moves_between_ours_and_reference(name, direction):
    """Half the run in one implementation, the state_dict loaded into the other (or a new
    instance of our own class), the rest there: equal to a run entirely in the reference."""
    kwargs = mx.kwargs_for(name, mx.draw(name, 1, seed=2, per_member=0.0), {})
    first_net, whole_net = mx.net(name), mx.net(name)
    whole = mx.reference(name, whole_net.parameters(), kwargs)
    _train(whole_net, whole, 2 * 8)

    def build(ours: bool):
        if ours:
            return mx.POPULATION[name](first_net.parameters(), **kwargs)
        return mx.reference(name, first_net.parameters(), kwargs)

    first_ours, second_ours = {"ours_to_reference": (True, False),
                               "reference_to_ours": (False, True),
                               "ours_to_ours": (True, True)}[direction]  # fmt: skip
    first = build(first_ours)
    g = torch.Generator().manual_seed(3)
    batches = [(torch.randn(16, 5, generator=g), torch.randn(16, 1, generator=g))
               for _ in range(16)]  # fmt: skip

    def run(net, opt, part):
        for x, y in part:
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step()

    run(first_net, first, batches[:8])
    saved = copy.deepcopy(first.state_dict())
    second = build(second_ours)
    second.load_state_dict(saved)
    run(first_net, second, batches[8:])
    assert _max_err(first_net.parameters(), whole_net.parameters()) <= _tol(name)


# -------------------------------------------------------------------- populations
def _population_run(name, flags, k, seed, dtype=f64, steps=STEPS, **extra):
    """K members with per-member hyperparameters vs K separate reference runs."""
    rng = torch.Generator().manual_seed(seed)
    shapes = mx.shapes(name, k, [(4, 3), (3,), ()])
    kwargs = mx.kwargs_for(name, mx.draw(name, k, seed), flags)
    params = [torch.randn(s, generator=rng, dtype=f64).to(dtype).requires_grad_()
              for s in shapes]  # fmt: skip
    ours = mx.POPULATION[name](params, members=k, **kwargs, **extra)
    twins = [[p.detach()[m].clone().requires_grad_() for p in params] for m in range(k)]
    refs = [mx.reference(name, twins[m], mx.member(kwargs, m)) for m in range(k)]
    for grads in mx.random_grads(shapes, steps, seed + 1, dtype):
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        ours.step()
        for m in range(k):
            for q, g in zip(twins[m], grads, strict=True):
                q.grad = g[m].clone()
            refs[m].step()
    return max(_max_err([p[m] for p in params], twins[m]) for m in range(k)), ours


@pytest.mark.parametrize("case", CASES, ids=mx.case_id)
@pytest.mark.parametrize("seed", [0, 1])
def test_population_member_matches_reference(case, seed):
    """Member k of a population == the reference run alone with hyperparameters hp[k]."""
    name, flags = case
    err, _ = _population_run(name, flags, k=3, seed=seed)
    assert err <= _tol(name)


@pytest.mark.parametrize("name", list(mx.POPULATION))
def test_population_of_one(name):
    err, ours = _population_run(name, {}, k=1, seed=4)
    assert err <= _tol(name)
    assert ours.members == 1


@pytest.mark.parametrize("name", list(mx.POPULATION))
def test_population_float32(name):
    err, _ = _population_run(name, {}, k=3, seed=5, dtype=torch.float32)
    assert err <= _tol(name, torch.float32)


@pytest.mark.parametrize("name", list(mx.POPULATION))
def test_compile_equals_eager(name):
    _, eager = _population_run(name, {}, k=2, seed=6, steps=4)
    _, compiled = _population_run(name, {}, k=2, seed=6, steps=4, compile=True)
    for a, b in zip(eager.param_groups[0]["params"], compiled.param_groups[0]["params"],
                    strict=True):  # fmt: skip
        assert mx.relative_error(a, b) <= 1e-12


@pytest.mark.parametrize("name", list(mx.POPULATION))
def test_param_groups_with_their_own_hyperparameters(name):
    """Two groups, each with its own per-member hyperparameters."""
    k = 3
    rng = torch.Generator().manual_seed(8)
    shape_a, shape_b = mx.shapes(name, k, [(4,), (2, 2)])
    a = torch.randn(shape_a, generator=rng).requires_grad_()
    b = torch.randn(shape_b, generator=rng).requires_grad_()
    kw_a = mx.kwargs_for(name, mx.draw(name, k, 10, per_member=1.0), {})
    kw_b = mx.kwargs_for(name, mx.draw(name, k, 11, per_member=1.0), {})
    ours = mx.POPULATION[name]([{"params": [a], **kw_a}, {"params": [b], **kw_b}], members=k)
    refs = []
    for m in range(k):
        qa, qb = a.detach()[m].clone().requires_grad_(), b.detach()[m].clone().requires_grad_()
        groups = [{"params": [qa], **mx.member(kw_a, m)}, {"params": [qb], **mx.member(kw_b, m)}]
        refs.append((qa, qb, mx.reference(name, groups, {})))
    for grads in mx.random_grads([a.shape, b.shape], 15, 12):
        a.grad, b.grad = grads[0].clone(), grads[1].clone()
        ours.step()
        for m, (qa, qb, ref) in enumerate(refs):
            qa.grad, qb.grad = grads[0][m].clone(), grads[1][m].clone()
            ref.step()
    for m, (qa, qb, _) in enumerate(refs):
        assert _max_err([a[m], b[m]], [qa, qb]) <= _tol(name)


@pytest.mark.parametrize("name", list(mx.POPULATION))
def test_skip_nonfinite_keeps_the_member_and_not_the_others(name):
    """A member whose gradient is NaN keeps its parameters and state bit for bit; the others
    update exactly as without the option."""
    k = 3
    rng = torch.Generator().manual_seed(9)
    kwargs = mx.kwargs_for(name, mx.draw(name, k, 13), {})
    p = torch.randn(mx.shapes(name, k, [(5,)])[0], generator=rng).requires_grad_()
    q = p.detach().clone().requires_grad_()
    ours = mx.POPULATION[name]([p], members=k, skip_nonfinite=True, **kwargs)
    plain = mx.POPULATION[name]([q], members=k, **kwargs)
    grads = mx.random_grads([p.shape], 6, 14)
    for i, (g,) in enumerate(grads):
        p.grad, q.grad = g.clone(), g.clone()
        if i == 4:
            p.grad[1, 2] = float("nan")
            state = {n: v[1].clone() for n, v in ours.state[p].items() if v.dim() > 0}
            before = (p.detach()[1].clone(), state)
        ours.step()
        plain.step()
        if i == 4:
            assert torch.equal(p.detach()[1], before[0])
            for n, v in before[1].items():
                assert torch.equal(ours.state[p][n][1], v), n
            for m in (0, 2):
                assert torch.equal(p.detach()[m], q.detach()[m])


@pytest.mark.parametrize("name", list(mx.POPULATION))
def test_parameter_without_gradient_is_left_alone(name):
    net_a, net_b = mx.net(name), mx.net(name)
    frozen = net_a[2].weight
    before = frozen.detach().clone()
    frozen.requires_grad_(False)
    net_b[2].weight.requires_grad_(False)
    kwargs = mx.kwargs_for(name, {}, {})
    ours = mx.POPULATION[name](net_a.parameters(), **kwargs)
    ref = mx.reference(name, net_b.parameters(), kwargs)
    _train(net_a, ours, 5)
    _train(net_b, ref, 5)
    assert torch.equal(frozen, before)
    assert frozen not in ours.state or not ours.state[frozen]
    assert _max_err(net_a.parameters(), net_b.parameters()) <= _tol(name)


# -------------------------------------------------------------------- validation
@pytest.mark.parametrize("name", list(mx.POPULATION))
def test_torch_keywords_are_accepted(name):
    net = mx.net(name)
    cls = mx.POPULATION[name]
    cls(net.parameters(), foreach=False, capturable=False, differentiable=False)
    cls(net.parameters(), foreach=True, fused=None)
    with pytest.raises(ValueError, match="differentiable=True is not supported"):
        cls(net.parameters(), differentiable=True)


@pytest.mark.parametrize("name", list(mx.POPULATION))
def test_member_axis_is_validated(name):
    spec = mx.spec_of(name)
    h = spec.hyperparameter("lr")
    k3 = torch.full((3,), float(h.default) or 1e-3, dtype=f64)
    cls = mx.POPULATION[name]
    with pytest.raises(ValueError, match=r"^params\[0\]: with K = 3 members"):
        cls([torch.zeros(4, 2, 2, requires_grad=True)], lr=k3)
    with pytest.raises(ValueError, match=r"^lr: expected a tensor of shape \[2\]"):
        cls([torch.zeros(2, 2, 2, requires_grad=True)], members=2, lr=k3)
    with pytest.raises(ValueError, match=r"^lr: expected"):
        cls([torch.zeros(3, 2, 2, requires_grad=True)], lr=-k3)
    opt = cls([torch.zeros(3, 2, 2, requires_grad=True)], lr=k3)
    with pytest.raises(ValueError, match=r"^params\[0\]: with K = 3 members"):
        opt.add_param_group({"params": [torch.zeros(5, requires_grad=True)]})
