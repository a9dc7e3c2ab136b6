"""The trainer's fast paths against torch.optim, member by member, in float64: the
population Adam/AdamW step through torch's fused kernel per member (optimkit.optim.adam
`fused_members_`), with per-member hyperparameters, AMSGrad, maximize and weight decay."""

from __future__ import annotations

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
