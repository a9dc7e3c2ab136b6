"""Adadelta, ASGD, Rprop and RAdam against torch.optim beyond the crossed matrix.

* PyTorch's own test configurations (``optim_inputs_func`` of
  torch.testing._internal.common_optimizers) give torch's parameters *and* torch's state
  (keys, shapes, dtypes, values: ASGD's eta/mu/ax, Rprop's prev/step_size) on a small
  nn.Module in float64; configurations with ``differentiable=True`` are skipped, because
  optimkit refuses it by design (steps run under torch.no_grad).
* PyTorch's error inputs (``optim_error_inputs_func``) raise the same exception type
  (UserWarning entries: the same warning, with pytest.warns).
* torch's positional argument order; the state layout under torch's float32 scalar dtype;
  population members' state (not only their parameters) equal to K torch runs.
"""

from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("expecttest")  # torch.testing._internal needs it
from torch.testing._internal.common_optimizers import OptimizerErrorEnum, optim_db

from optimkit.optim import ASGD, RAdam, Rprop
from optimkit.optim import Adadelta as OursAdadelta

f64 = torch.float64
OURS = {"Adadelta": OursAdadelta, "ASGD": ASGD, "Rprop": Rprop, "RAdam": RAdam}
INFOS = {i.optim_cls.__name__: i for i in optim_db if i.optim_cls.__name__ in OURS}
TOL = 1e-12


@pytest.fixture
def default_f64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(f64)
    yield
    torch.set_default_dtype(previous)


def _net(dtype=f64):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2)).to(
        dtype
    )


def _train(net, opt, steps=30, seed=1):
    g = torch.Generator().manual_seed(seed)
    dtype = next(net.parameters()).dtype
    for _ in range(steps):
        x = torch.randn(8, 4, generator=g, dtype=f64).to(dtype)
        y = torch.randn(8, 2, generator=g, dtype=f64).to(dtype)
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x), y).backward()
        opt.step()


def _rel(a, b):
    a, b = a.detach().to(f64), b.detach().to(f64)
    return float((a - b).abs().max() / b.abs().max().clamp(min=1.0))


def _assert_same_state(ours, ref, tol=TOL):
    """Same state keys per parameter, same shapes and dtypes (torch's layout), same values."""
    s_ours, s_ref = ours.state_dict()["state"], ref.state_dict()["state"]
    assert set(s_ours) == set(s_ref)
    for i, ref_state in s_ref.items():
        assert set(s_ours[i]) == set(ref_state), i
        for key, want in ref_state.items():
            got = s_ours[i][key]
            assert got.shape == want.shape, (i, key)
            assert got.dtype == want.dtype, (i, key)
            assert _rel(got, want) <= tol, (i, key)


def _configs():
    for name, info in INFOS.items():
        for i, inp in enumerate(info.optim_inputs_func(device="cpu")):
            yield pytest.param(name, inp, id=f"{name}-{i}-{inp.desc}")


def _errors():
    for name, info in INFOS.items():
        for i, err in enumerate(info.optim_error_inputs_func(device="cpu", dtype=torch.float32)):
            yield pytest.param(name, err, id=f"{name}-{i}-{err.optimizer_error_input.desc}")


def test_all_four_have_torch_inputs():
    assert set(INFOS) == set(OURS)


# ------------------------------------------------------------ torch's configurations
@pytest.mark.parametrize(("name", "inp"), list(_configs()))
def test_torch_configuration_gives_torch_parameters_and_state(name, inp, default_f64):
    kwargs = {k: v.to(f64) if isinstance(v, torch.Tensor) else v for k, v in inp.kwargs.items()}
    if kwargs.get("differentiable"):
        pytest.skip("differentiable=True is refused by design (steps run under torch.no_grad)")
    ours_net, ref_net = _net(), _net()
    ours = OURS[name](ours_net.parameters(), **kwargs)
    ref = INFOS[name].optim_cls(ref_net.parameters(), **kwargs)
    _train(ours_net, ours)
    _train(ref_net, ref)
    for a, b in zip(ours_net.parameters(), ref_net.parameters(), strict=True):
        assert _rel(a, b) <= TOL
    _assert_same_state(ours, ref)


# ------------------------------------------------------------ torch's error inputs
def _sample_params():
    return [torch.nn.Parameter(torch.randn(1, 1)), torch.nn.Parameter(torch.randn(1))]


@pytest.mark.parametrize(("name", "err"), list(_errors()))
def test_torch_error_input_raises_the_same_type(name, err):
    """torch's error inputs with ``params=None`` fail on their hyperparameters before torch
    looks at params; optimkit validates params first (the member axis needs them), so those
    run on sample parameters here, and torch is checked to raise the same there too. The
    [2] lr of "Tensor lr must be 1-element" is a population's per-member lr for optimkit,
    which then raises ValueError because the parameters' dim 0 is not 2."""
    inp = err.optimizer_error_input
    params = _sample_params if inp.params is None else (lambda: inp.params)

    def run(cls):
        opt = cls(params(), **inp.kwargs)
        if err.error_on == OptimizerErrorEnum.STEP_ERROR:
            for group in opt.param_groups:
                for p in group["params"]:
                    p.grad = torch.rand_like(p)
            opt.step()

    for cls in (INFOS[name].optim_cls, OURS[name]):
        if issubclass(err.error_type, Warning):
            with pytest.warns(err.error_type):
                run(cls)
        else:
            with pytest.raises(err.error_type):
                run(cls)


# ------------------------------------------------------------ drop-in details
POSITIONAL = {
    "Adadelta": (0.5, 0.8, 1e-5, 0.01, None),
    "ASGD": (0.05, 1e-3, 0.6, 5.0, 0.01, None, True, False, False),
    "Rprop": (0.02, (0.4, 1.3), (1e-4, 0.5)),
    "RAdam": (2e-3, (0.8, 0.99), 1e-7, 0.01, True),
}


@pytest.mark.parametrize("name", list(OURS))
def test_positional_arguments_mean_what_they_mean_for_torch(name, default_f64):
    ours_net, ref_net = _net(), _net()
    ours = OURS[name](ours_net.parameters(), *POSITIONAL[name])
    ref = INFOS[name].optim_cls(ref_net.parameters(), *POSITIONAL[name])
    for key, value in ref.param_groups[0].items():
        if key != "params":
            assert ours.param_groups[0][key] == value, key
    _train(ours_net, ours)
    _train(ref_net, ref)
    for a, b in zip(ours_net.parameters(), ref_net.parameters(), strict=True):
        assert _rel(a, b) <= TOL
    _assert_same_state(ours, ref)


def _batches(n, dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 4, generator=g, dtype=f64).to(dtype),
             torch.randn(8, 2, generator=g, dtype=f64).to(dtype)) for _ in range(n)]  # fmt: skip


def _run(net, opt, batches):
    for x, y in batches:
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x), y).backward()
        opt.step()


@pytest.mark.parametrize("name", list(OURS))
@pytest.mark.parametrize("dtype", [torch.float32, f64], ids=str)
@pytest.mark.parametrize("direction", ["ours_to_torch", "torch_to_ours"])
def test_state_layout_and_state_dict_under_float32_scalars(name, dtype, direction):
    """Default dtype float32: torch keeps ``step`` (and ASGD's ``eta``, ``mu``) as 0-d
    float32 tensors; ours too, and the state_dicts move between the two mid-run. The oracle
    is torch loading its own state_dict: torch's load casts every state tensor but ``step``
    to the parameter's dtype (ASGD's eta and mu become float64 for float64 parameters), which
    changes ASGD's later steps by ~1e-9 against a run without the round trip."""
    assert torch.get_default_dtype() == torch.float32
    kwargs = {"ASGD": {"lr": 0.05, "t0": 3.0, "lambd": 0.05}}.get(name, {})
    tol = TOL if dtype == f64 else 1e-6
    ref_cls, ours_cls = INFOS[name].optim_cls, OURS[name]
    batches = _batches(20, dtype)
    whole_net = _net(dtype)
    whole = ref_cls(whole_net.parameters(), **kwargs)
    _run(whole_net, whole, batches[:10])
    reloaded = ref_cls(whole_net.parameters(), **kwargs)
    reloaded.load_state_dict(copy.deepcopy(whole.state_dict()))
    first_cls, second_cls = (
        (ours_cls, ref_cls) if direction == "ours_to_torch" else (ref_cls, ours_cls)
    )
    net = _net(dtype)
    first = first_cls(net.parameters(), **kwargs)
    _run(net, first, batches[:10])
    _assert_same_state(first, whole, tol)
    second = second_cls(net.parameters(), **kwargs)
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    _run(whole_net, reloaded, batches[10:])
    _run(net, second, batches[10:])
    for a, b in zip(net.parameters(), whole_net.parameters(), strict=True):
        assert _rel(a, b) <= tol
    _assert_same_state(second, reloaded, tol)


KW = {
    "Adadelta": {"lr": torch.tensor([0.5, 1.0, 2.0]), "rho": torch.tensor([0.8, 0.9, 0.95]),
                 "weight_decay": 0.01},
    "ASGD": {"lr": torch.tensor([0.01, 0.05, 0.1]), "lambd": torch.tensor([0.0, 1e-3, 0.05]),
             "alpha": torch.tensor([0.5, 0.75, 1.0]), "t0": torch.tensor([2.0, 5.5, 100.0])},
    "Rprop": {"lr": torch.tensor([1e-3, 1e-2, 5e-2]),
              "etas": (torch.tensor([0.3, 0.5, 0.7]), torch.tensor([1.1, 1.2, 1.5])),
              "step_sizes": (torch.tensor([1e-4, 1e-3, 1e-6]), torch.tensor([0.02, 0.1, 50.0]))},
    "RAdam": {"lr": torch.tensor([1e-3, 1e-2, 1e-1]),
              "betas": (torch.tensor([0.5, 0.9, 0.95]), torch.tensor([0.9, 0.99, 0.999])),
              "weight_decay": torch.tensor([0.0, 0.01, 0.1]), "decoupled_weight_decay": True},
}  # fmt: skip


def _member(kwargs, m):
    def one(v):
        if isinstance(v, torch.Tensor):
            return float(v[m].to(f64))
        return tuple(one(x) for x in v) if isinstance(v, tuple) else v

    return {k: one(v) for k, v in kwargs.items()}


@pytest.mark.parametrize("name", list(OURS))
def test_population_state_equals_torch_state_per_member(name, default_f64):
    """K = 3 members with their own hyperparameters: each member's parameters and every
    state tensor (step, ASGD's eta/mu/ax, Rprop's prev/step_size, ...) equal torch's alone."""
    k = 3
    kwargs = {n: v.to(f64) if isinstance(v, torch.Tensor) else
              tuple(x.to(f64) for x in v) if isinstance(v, tuple) else v
              for n, v in KW[name].items()}  # fmt: skip
    rng = torch.Generator().manual_seed(0)
    params = [torch.randn(k, 4, 3, generator=rng).requires_grad_(),
              torch.randn(k, 2, generator=rng).requires_grad_()]  # fmt: skip
    ours = OURS[name](params, **kwargs)
    twins = [[p.detach()[m].clone().requires_grad_() for p in params] for m in range(k)]
    refs = [INFOS[name].optim_cls(twins[m], **_member(kwargs, m)) for m in range(k)]
    for _ in range(30):
        grads = [torch.randn(p.shape, generator=rng) for p in params]
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        ours.step()
        for m in range(k):
            for q, g in zip(twins[m], grads, strict=True):
                q.grad = g[m].clone()
            refs[m].step()
    for m in range(k):
        for p, q in zip(params, twins[m], strict=True):
            assert _rel(p[m], q) <= TOL
            ours_state, ref_state = ours.state[p], refs[m].state[q]
            assert set(ours_state) == set(ref_state)
            for key, want in ref_state.items():
                got = ours_state[key][m]
                assert got.shape == want.shape, key
                assert _rel(got, want) <= TOL, (m, key)


def test_asgd_averages_from_t0_as_torch(default_f64):
    """ASGD's average ``ax`` tracks p while mu = 1 and averages after t0, as torch's."""
    ours_net, ref_net = _net(), _net()
    ours = ASGD(ours_net.parameters(), lr=0.05, t0=4.0)
    ref = torch.optim.ASGD(ref_net.parameters(), lr=0.05, t0=4.0)
    for steps in (3, 10):
        _train(ours_net, ours, steps)
        _train(ref_net, ref, steps)
        _assert_same_state(ours, ref)
    p = next(ours_net.parameters())
    assert float(ours.state[p]["mu"]) < 1  # averaging has started
    assert not torch.equal(ours.state[p]["ax"], p.detach())


def test_rprop_lr_only_sets_the_initial_step_sizes(default_f64):
    """torch's Rprop reads lr only when it creates ``step_size``: changing it later (a
    schedule) changes nothing, in both."""
    ours_net, ref_net = _net(), _net()
    ours, ref = Rprop(ours_net.parameters()), torch.optim.Rprop(ref_net.parameters())
    _train(ours_net, ours, 3)
    _train(ref_net, ref, 3)
    for opt in (ours, ref):
        opt.param_groups[0]["lr"] = 1.0
    _train(ours_net, ours, 10)
    _train(ref_net, ref, 10)
    for a, b in zip(ours_net.parameters(), ref_net.parameters(), strict=True):
        assert _rel(a, b) <= TOL
    _assert_same_state(ours, ref)
