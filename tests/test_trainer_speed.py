"""The trainer's fast paths against torch.optim, member by member, in float64: the
population Adam/AdamW step through torch's fused kernel per member (optimkit.optim.adam
`fused_members_`), with per-member hyperparameters, AMSGrad, maximize and weight decay."""

from __future__ import annotations

import copy

import pytest
import torch

from optimkit.optim import Adam, AdamW
from optimkit.optim.adam import _members_fused_apply

SHAPES = [(7, 5), (7,), (3, 7), (3,)]


@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("maximize", [False, True])
def test_population_adam_equals_torch_adam_per_member(decoupled, amsgrad, maximize):
    k = 4
    gen = torch.Generator().manual_seed(3)
    lr = torch.tensor([1e-3, 3e-2, 1e-1, 5e-4], dtype=torch.float64)
    wd = torch.tensor([0.0, 1e-2, 3e-1, 1e-4], dtype=torch.float64)
    beta1 = torch.tensor([0.9, 0.8, 0.95, 0.0], dtype=torch.float64)
    beta2 = torch.tensor([0.999, 0.99, 0.9, 0.5], dtype=torch.float64)
    eps = torch.tensor([1e-8, 1e-6, 1e-3, 1e-10], dtype=torch.float64)
    params = [torch.randn(k, *s, generator=gen, dtype=torch.float64).requires_grad_()
              for s in SHAPES]  # fmt: skip
    cls, ref_cls = (AdamW, torch.optim.AdamW) if decoupled else (Adam, torch.optim.Adam)
    ours = cls(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=wd, amsgrad=amsgrad,
               maximize=maximize, members=k)  # fmt: skip
    plain = [[p[m].detach().clone().requires_grad_() for p in params] for m in range(k)]
    refs = [ref_cls(plain[m], lr=float(lr[m]), betas=(float(beta1[m]), float(beta2[m])),
                    eps=float(eps[m]), weight_decay=float(wd[m]), amsgrad=amsgrad,
                    maximize=maximize, foreach=False) for m in range(k)]  # fmt: skip
    assert _members_fused_apply(params, [torch.zeros_like(p) for p in params], [])
    for _ in range(6):
        grads = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        ours.step()
        for m in range(k):
            for q, g in zip(plain[m], grads, strict=True):
                q.grad = g[m].clone()
            refs[m].step()
    for m in range(k):
        for p, q in zip(params, plain[m], strict=True):
            torch.testing.assert_close(p.detach()[m], q.detach(), rtol=1e-12, atol=1e-14)
            for name in ("exp_avg", "exp_avg_sq"):
                torch.testing.assert_close(ours.state[p][name][m], refs[m].state[q][name],
                                           rtol=1e-12, atol=1e-14)  # fmt: skip


def test_a_noncontiguous_population_takes_the_stacked_path():
    """Member slices of a non-contiguous stacked tensor are not what the fused kernel walks:
    the eager stacked step runs instead, with the same result."""
    p = torch.randn(5, 3, dtype=torch.float64).T.detach().requires_grad_()  # [K=3, 5], strided
    assert not p.is_contiguous()
    assert not _members_fused_apply([p], [torch.zeros_like(p)], [])
    q = p.detach().contiguous().requires_grad_()
    lr = torch.tensor([1e-2, 1e-1, 3e-1], dtype=torch.float64)
    a, b = Adam([p], lr=lr, members=3), Adam([q], lr=lr, members=3)
    for _ in range(3):
        g = torch.randn(3, 5, dtype=torch.float64)
        p.grad, q.grad = g.clone(), g.clone()
        a.step()
        b.step()
    torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-12, atol=1e-14)


def _population_and_refs(decoupled, amsgrad, maximize, k=4, seed=5):
    gen = torch.Generator().manual_seed(seed)
    lr = torch.tensor([1e-3, 3e-2, 1e-1, 5e-4], dtype=torch.float64)
    wd = torch.tensor([0.0, 1e-2, 3e-1, 1e-4], dtype=torch.float64)
    params = [torch.randn(k, *s, generator=gen, dtype=torch.float64).requires_grad_()
              for s in SHAPES]  # fmt: skip
    cls, ref_cls = (AdamW, torch.optim.AdamW) if decoupled else (Adam, torch.optim.Adam)
    ours = cls(params, lr=lr, weight_decay=wd, amsgrad=amsgrad, maximize=maximize, members=k)
    plain = [[p[m].detach().clone().requires_grad_() for p in params] for m in range(k)]
    refs = [ref_cls(plain[m], lr=float(lr[m]), weight_decay=float(wd[m]), amsgrad=amsgrad,
                    maximize=maximize, foreach=False) for m in range(k)]  # fmt: skip
    return gen, params, ours, plain, refs


def _assert_members_equal(params, ours, plain, refs, names):
    for m in range(len(refs)):
        for p, q in zip(params, plain[m], strict=True):
            torch.testing.assert_close(p.detach()[m], q.detach(), rtol=1e-12, atol=1e-14)
            for name in names:
                torch.testing.assert_close(ours.state[p][name][m], refs[m].state[q][name],
                                           rtol=1e-12, atol=1e-14)  # fmt: skip


@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("maximize", [False, True])
def test_kept_gradients_reset_copy_and_state_dict_equal_torch_per_member(
    decoupled, amsgrad, maximize
):
    """Gradients kept between steps (written in place, so the per-member slices are cached),
    a gradient tensor replaced midway, then member slots (reset member 2, copy member 0 into
    member 3) and a state_dict round trip into a new optimizer: every member still equals
    torch.optim on its own, in float64."""
    gen, params, ours, plain, refs = _population_and_refs(decoupled, amsgrad, maximize)
    names = ("exp_avg", "exp_avg_sq", *(("max_exp_avg_sq",) if amsgrad else ()))
    for p in params:
        p.grad = torch.zeros_like(p)

    def step(opt, plain, refs):
        grads = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
        for p, g in zip(params, grads, strict=True):
            p.grad.copy_(g)
        opt.step()
        for m in range(len(refs)):
            for q, g in zip(plain[m], grads, strict=True):
                q.grad = g[m].clone()
            refs[m].step()

    for i in range(6):
        if i == 3:
            params[1].grad = torch.zeros_like(params[1])  # a new gradient tensor
        step(ours, plain, refs)
    assert "grad_members" in ours._member_views[0]  # the kept gradients' slices were reused
    _assert_members_equal(params, ours, plain, refs, names)

    # member slots: reset member 2 (fresh torch optimizer), copy member 0 into member 3
    ours.reset_members(torch.tensor([False, False, True, False]))
    refs[2] = type(refs[2])(plain[2], foreach=False, **{
        k: refs[2].defaults[k] for k in ("lr", "weight_decay", "amsgrad", "maximize")})  # fmt: skip
    ours.copy_member(0, 3)
    with torch.no_grad():
        for p, q3, q0 in zip(params, plain[3], plain[0], strict=True):
            p[3] = p[0]
            q3.copy_(q0)
    # torch.optim's load_state_dict keeps tensors that need no cast: copy them first
    refs[3].load_state_dict(copy.deepcopy(refs[0].state_dict()))  # lr, weight decay too
    for _ in range(3):
        step(ours, plain, refs)
    _assert_members_equal(params, ours, plain, refs, names)

    # a state_dict round trip: a new optimizer continues exactly
    cls = AdamW if decoupled else Adam
    again = cls(params, lr=torch.zeros(4, dtype=torch.float64), amsgrad=amsgrad,
                maximize=maximize, members=4)  # fmt: skip
    again.load_state_dict(ours.state_dict())
    for _ in range(3):
        step(again, plain, refs)
    _assert_members_equal(params, again, plain, refs, names)
