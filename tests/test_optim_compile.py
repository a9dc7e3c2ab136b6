"""Adam's fast paths against torch.optim and against optimkit's reference transform chain.

Paths (see optimkit.optim.adam): torch's fused CPU kernel for one model with number
hyperparameters; `adam_update_` with precomputed coefficients for populations, eager or
``compile=True``; ``fused=False`` runs the reference transform chain `scale_by_adam`.
"""

from __future__ import annotations

import copy

import pytest
import torch

import optimkit.optim as ok

f64 = torch.float64
FLAGS = [
    {},
    {"amsgrad": True},
    {"maximize": True, "weight_decay": 0.05},
    {"decoupled_weight_decay": True, "weight_decay": 0.1, "amsgrad": True},
]


def _grads(shapes, steps, seed, dtype=f64):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=g, dtype=dtype) for s in shapes] for _ in range(steps)]


@pytest.mark.parametrize("flags", FLAGS, ids=str)
def test_one_model_matches_torch_default_and_fused(flags):
    """K = 1 with float hyperparameters (torch's fused kernel): float64 vs torch's per-tensor
    loop to 1e-12; float32 bit for bit vs torch.optim.Adam(fused=True)."""
    shapes = [(7, 5), (5,), (3, 2, 4)]
    for dtype, torch_kwargs, tol in ((f64, {}, 1e-12), (torch.float32, {"fused": True}, 0.0)):
        ours = [torch.randn(s, dtype=dtype, generator=torch.Generator().manual_seed(1))
                .requires_grad_() for s in shapes]  # fmt: skip
        theirs = [p.detach().clone().requires_grad_() for p in ours]
        opt = ok.Adam(ours, lr=0.01, **flags)
        ref = torch.optim.Adam(theirs, lr=0.01, **flags, **torch_kwargs)
        for grads in _grads(shapes, 30, seed=2, dtype=dtype):
            for p, q, g in zip(ours, theirs, grads, strict=True):
                p.grad, q.grad = g.clone(), g.clone()
            opt.step()
            ref.step()
        for p, q in zip(ours, theirs, strict=True):
            assert (p - q).abs().max().item() <= tol
            assert opt.state[p]["step"].shape == ref.state[q]["step"].shape == ()
            assert float(opt.state[p]["step"]) == 30.0


@pytest.mark.parametrize("flags", FLAGS, ids=str)
def test_population_path_matches_reference_chain(flags):
    """Per-member hyperparameters (every coefficient a [K] tensor) and per-member step counts
    (member 1 starts later, as when a trainer refills a slot): fast path == fused=False."""
    shapes = [(3, 4, 2), (3, 5)]
    lr = torch.tensor([1e-3, 1e-2, 5e-2], dtype=f64)
    betas = (torch.tensor([0.0, 0.8, 0.9], dtype=f64), torch.tensor([0.9, 0.99, 0.999], dtype=f64))
    kwargs = {**flags, "lr": lr, "betas": betas, "eps": torch.tensor([1e-8, 1e-4, 1e-3])}
    if "weight_decay" in flags:
        kwargs["weight_decay"] = flags["weight_decay"] * torch.tensor([0.0, 1.0, 2.0])
    params = [torch.randn(s, dtype=f64).requires_grad_() for s in shapes]
    twins = [p.detach().clone().requires_grad_() for p in params]
    fast, ref = ok.Adam(params, l1=1e-3, **kwargs), ok.Adam(twins, l1=1e-3, fused=False, **kwargs)
    for i, grads in enumerate(_grads(shapes, 25, seed=3)):
        for p, q, g in zip(params, twins, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        fast.step()
        ref.step()
        if i == 4:  # restart member 1's state in both
            for opt in (fast, ref):
                for state in opt.state.values():
                    for v in state.values():
                        v[1] = 0
    for p, q in zip(params, twins, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-13)
        for name, v in fast.state[p].items():
            torch.testing.assert_close(v, ref.state[q][name], rtol=1e-13, atol=1e-15)
    assert fast.state[params[0]]["step"].tolist() == [25.0, 20.0, 25.0]


def test_layouts_torchs_kernel_cannot_take_fall_back_to_the_general_path():
    """A gradient whose strides differ from its parameter's (torch's fused kernel walks memory
    linearly and would mix elements up) and a transposed parameter: still torch's update."""
    p = torch.randn(6, 4, dtype=f64).requires_grad_()
    w = torch.randn(4, 6, dtype=f64).t().requires_grad_()  # a non-contiguous leaf
    twins = [t.detach().clone().requires_grad_() for t in (p, w)]
    opt, ref = ok.Adam([p, w], lr=0.1), torch.optim.Adam(twins, lr=0.1)
    for grads in _grads([(4, 6), (6, 4)], 10, seed=4):
        p.grad, w.grad = grads[0].t(), grads[1].t().contiguous().t()  # p.grad non-contiguous
        twins[0].grad, twins[1].grad = grads[0].t().clone(), grads[1].clone()
        opt.step()
        ref.step()
    for a, b in zip((p, w), twins, strict=True):
        assert (a - b).abs().max().item() <= 1e-12


@pytest.mark.parametrize("population_path", [False, True], ids=["torch kernel", "per-member"])
def test_resumes_from_a_torch_optim_state_dict(population_path):
    """torch's state (0-d float32 step, groups without optimkit's keys) loads and continues."""
    shapes = [(4, 3), (3,)]
    theirs = [torch.randn(s, dtype=f64).requires_grad_() for s in shapes]
    ref = torch.optim.Adam(theirs, lr=0.01, weight_decay=0.1)
    grads = _grads(shapes, 10, seed=6)
    for gs in grads[:5]:
        for q, g in zip(theirs, gs, strict=True):
            q.grad = g.clone()
        ref.step()
    ours = [q.detach().clone().requires_grad_() for q in theirs]
    opt = ok.Adam(ours, lr=0.01, weight_decay=0.1)
    opt.load_state_dict(copy.deepcopy(ref.state_dict()))
    if population_path:  # a tensor lr (as a schedule may write) takes the per-member path
        opt.param_groups[0]["lr"] = torch.tensor(0.01, dtype=f64)
    for gs in grads[5:]:
        for p, q, g in zip(ours, theirs, gs, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
    for p, q in zip(ours, theirs, strict=True):
        assert (p - q).abs().max().item() <= 1e-12


def test_fused_option_is_validated():
    with pytest.raises(ValueError, match="fused: expected None, True or False"):
        ok.Adam([torch.zeros(2, requires_grad=True)], fused="yes")


@pytest.mark.slow
def test_compiled_population_step_matches_eager_without_recompiling():
    """compile=True (one inductor loop per group) vs the eager path, then a new lr (as a
    schedule writes it) and new betas must reuse the compiled code."""
    shapes = [(4, 6, 3), (4, 3)]
    lr = torch.tensor([1e-3, 3e-3, 1e-2, 3e-2], dtype=f64)
    kwargs = {"lr": lr, "weight_decay": torch.tensor([0.0, 0.01, 0.1, 1.0]), "amsgrad": True}
    params = [torch.randn(s, dtype=f64).requires_grad_() for s in shapes]
    twins = [p.detach().clone().requires_grad_() for p in params]
    compiled, eager = ok.Adam(params, compile=True, **kwargs), ok.Adam(twins, **kwargs)
    for i, grads in enumerate(_grads(shapes, 12, seed=5)):
        if i == 6:
            for opt in (compiled, eager):
                opt.param_groups[0]["lr"] = lr * 0.5
                opt.param_groups[0]["betas"] = (0.8, 0.99)
        for p, q, g in zip(params, twins, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        with torch._dynamo.config.patch(error_on_recompile=i > 0):
            compiled.step()
        eager.step()
    for p, q in zip(params, twins, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-13)


def test_many_compiled_optimizers_in_one_process():
    """A tuner builds a new optimizer per wave: more than dynamo's recompile limit (8) of
    compile=True optimizers in one process each compile their own step, and each equals
    its eager twin."""
    for i in range(12):
        lr = torch.full((2,), 0.01 * (i + 1), dtype=f64)
        p, q = (torch.ones(2, 3, dtype=f64, requires_grad=True) for _ in range(2))
        fast = ok.SGD([p], lr=lr, momentum=0.5 + i / 100, compile=True)
        slow = ok.SGD([q], lr=lr, momentum=0.5 + i / 100)
        for _ in range(2):
            p.grad, q.grad = torch.full_like(p, 0.3), torch.full_like(q, 0.3)
            fast.step()
            slow.step()
        assert torch.allclose(p, q, rtol=0, atol=1e-15)
