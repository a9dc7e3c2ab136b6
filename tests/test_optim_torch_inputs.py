"""PyTorch's own optimizer test inputs, run against optimkit's drop-ins.

For every optimizer of the database whose reference is a torch.optim class, the
configurations PyTorch tests it with (``optim_inputs_func`` of
torch.testing._internal.common_optimizers) must give torch's parameters, and its error
inputs (``optim_error_inputs_func``) must raise the same exception type. Error inputs that
test a torch limitation optimkit lifts on purpose (tensor hyperparameters under foreach)
are listed in LIFTED, and configurations with ``differentiable=True`` (refused by design:
steps run under no_grad) are checked to raise instead.
"""

from __future__ import annotations

import re

import pytest
import torch

pytest.importorskip("expecttest")  # torch.testing._internal needs it
from torch.testing._internal.common_optimizers import OptimizerErrorEnum, optim_db

from optimkit.optim import OPTIMIZERS

f64 = torch.float64

#: regexes of torch error inputs about limitations optimkit does not have
LIFTED = (r"as a Tensor is not supported", r"both floats or both Tensors")

OURS = {cls.spec.reference: cls for cls in OPTIMIZERS.values()}
INFOS = [i for i in optim_db if f"torch.optim.{i.optim_cls.__name__}" in OURS]


@pytest.fixture(autouse=True)
def _float64_default():
    """torch keeps some scalar state (NAdam's mu_product) in the default dtype."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(f64)
    yield
    torch.set_default_dtype(previous)


def _ours(info):
    return OURS[f"torch.optim.{info.optim_cls.__name__}"]


def _configs():
    for info in INFOS:
        for i, inp in enumerate(info.optim_inputs_func(device="cpu")):
            yield pytest.param(info, inp, id=f"{info.optim_cls.__name__}-{i}-{inp.desc}")


def _errors():
    for info in INFOS:
        for i, err in enumerate(info.optim_error_inputs_func(device="cpu", dtype=torch.float32)):
            yield pytest.param(info, err, id=f"{info.optim_cls.__name__}-{i}")


def _net(info):
    """A small float64 module; without biases for an optimizer of matrices (Muon)."""
    torch.manual_seed(0)
    bias = _ours(info).spec.params != "matrices"
    layers = [torch.nn.Linear(4, 6, bias=bias), torch.nn.Tanh(), torch.nn.Linear(6, 2, bias=bias)]
    return torch.nn.Sequential(*layers).to(f64)


def _train(net, opt, steps=8):
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(8, 4, generator=g, dtype=f64), torch.randn(8, 2, generator=g, dtype=f64)

        def closure(x=x, y=y):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x), y)
            loss.backward()
            return loss

        opt.step(closure)


def _float64(kwargs):
    return {k: v.to(f64) if isinstance(v, torch.Tensor) and v.is_floating_point() else v
            for k, v in kwargs.items()}  # fmt: skip


#: sparse-gradient optimizers run torch's configurations on sparse embeddings in their own
#: test file (tests/test_optim_torch_sparse_muon.py)
SPARSE = {i.optim_cls.__name__ for i in INFOS if _ours(i).spec.params == "sparse"}
DENSE_CONFIGS = [c for c in _configs() if c.values[0].optim_cls.__name__ not in SPARSE]


@pytest.mark.parametrize(("info", "inp"), DENSE_CONFIGS)
def test_torch_configuration_gives_torch_parameters(info, inp):
    kwargs = _float64(inp.kwargs)
    ours_net, ref_net = _net(info), _net(info)
    if kwargs.get("differentiable"):
        with pytest.raises(ValueError, match="differentiable=True is not supported"):
            _ours(info)(ours_net.parameters(), **kwargs)
        return
    ours = _ours(info)(ours_net.parameters(), **kwargs)
    ref = info.optim_cls(ref_net.parameters(), **kwargs)
    # closure-based methods run max_iter iterations per step: 2 steps is 40 iterations
    steps = 2 if _ours(info).spec.closure else 8
    _train(ours_net, ours, steps)
    _train(ref_net, ref, steps)
    tol = _ours(info).spec.tolerance
    for a, b in zip(ours_net.parameters(), ref_net.parameters(), strict=True):
        assert float((a - b).abs().max() / b.abs().max().clamp(min=1.0)) <= tol


@pytest.mark.parametrize(("info", "err"), list(_errors()))
def test_torch_error_input_raises_the_same_type(info, err):
    inp = err.optimizer_error_input
    if any(re.search(pattern, err.error_regex) for pattern in LIFTED):
        pytest.skip("a torch limitation optimkit lifts (tensor hyperparameters)")
    params = inp.params
    if params is None:
        params = [torch.nn.Parameter(torch.randn(10, 5)), torch.nn.Parameter(torch.randn(10))]
    cls = _ours(info)

    def build_and_step():
        opt = cls(params, **inp.kwargs)
        if err.error_on == OptimizerErrorEnum.STEP_ERROR:
            for group in opt.param_groups:
                for p in group["params"]:
                    p.grad = torch.rand_like(p) if p.grad is None else p.grad
            opt.step((lambda: torch.tensor(0.0)) if cls.spec.closure else None)

    if issubclass(err.error_type, Warning):
        with pytest.warns(err.error_type):
            build_and_step()
    else:
        with pytest.raises(err.error_type):
            build_and_step()
