"""Lion, clipping, normalization, L1, non-finite members, state_dict, vmap, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import Lasso

import optimkit.optim as ok
from optimkit.optim import transforms
from optimkit.optim.adam import scale_by_adam

f64 = torch.float64


def _population(k=4, shape=(3, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(k, *shape, generator=g, dtype=f64).requires_grad_(), g


def test_lion_matches_the_papers_algorithm():
    """Oracle: Algorithm 2 of Chen et al. (2023), written out per member with Python floats."""
    k = 3
    p, rng = _population(k)
    lr = torch.tensor([1e-3, 3e-3, 1e-2], dtype=f64)
    b1, b2, wd = torch.tensor([0.9, 0.8, 0.95], dtype=f64), 0.99, torch.tensor([0.0, 0.1, 1.0])
    opt = ok.Lion([p], lr=lr, betas=(b1, b2), weight_decay=wd)
    theta = p.detach().clone().numpy()
    m = np.zeros_like(theta)
    for _ in range(50):
        grad = torch.randn(p.shape, generator=rng, dtype=f64)
        p.grad = grad.clone()
        opt.step()
        gn = grad.numpy()
        for j in range(k):
            c = float(b1[j]) * m[j] + (1 - float(b1[j])) * gn[j]
            theta[j] = theta[j] - float(lr[j]) * (np.sign(c) + float(wd[j]) * theta[j])
            m[j] = b2 * m[j] + (1 - b2) * gn[j]
    np.testing.assert_allclose(p.detach().numpy(), theta, rtol=0, atol=1e-12)


def test_global_norm_and_value_clipping_match_torch_nn_utils():
    k = 4
    a, rng = _population(k, (3, 5))
    b = torch.randn(k, 7, generator=rng, dtype=f64).requires_grad_()
    max_norm = torch.tensor([0.1, 1.0, 5.0, 100.0], dtype=f64)
    clip_value = torch.tensor([0.05, 0.5, 1.0, 10.0], dtype=f64)
    opt = ok.SGD([a, b], lr=0.1, momentum=0.9, clip_grad_norm=max_norm, clip_grad_value=clip_value)
    refs = []
    for m in range(k):
        qa, qb = a[m].detach().clone().requires_grad_(), b[m].detach().clone().requires_grad_()
        refs.append((qa, qb, torch.optim.SGD([qa, qb], lr=0.1, momentum=0.9)))
    for _ in range(20):
        ga, gb = 3 * torch.randn_like(a), 3 * torch.randn_like(b)
        a.grad, b.grad = ga.clone(), gb.clone()
        opt.step()
        for m, (qa, qb, ref) in enumerate(refs):
            qa.grad, qb.grad = ga[m].clone(), gb[m].clone()
            torch.nn.utils.clip_grad_norm_([qa, qb], float(max_norm[m]))
            torch.nn.utils.clip_grad_value_([qa, qb], float(clip_value[m]))
            ref.step()
    for m, (qa, qb, _) in enumerate(refs):
        assert (a[m] - qa).abs().max() <= 1e-12 and (b[m] - qb).abs().max() <= 1e-12


def test_normalized_gradient_has_unit_norm_per_member():
    k = 3
    p, rng = _population(k)
    before = p.detach().clone()
    scale = torch.tensor([1e-3, 1.0, 1e3], dtype=f64).view(k, 1, 1)
    grad = torch.randn(p.shape, generator=rng, dtype=f64) * scale
    p.grad = grad
    ok.SGD([p], lr=1.0, normalize_grad=True, members=k).step()
    step = before - p.detach()
    expected = grad / grad.flatten(1).norm(dim=1).view(k, 1, 1)
    # before - p loses the low bits of p (|p| ~ 1, |step| ~ 0.3): compare absolutely
    torch.testing.assert_close(step, expected, rtol=0, atol=1e-15)


def test_l1_proximal_sgd_reaches_the_lasso_optimum():
    """ISTA (SGD + L1 prox, full batch) converges to scikit-learn's Lasso solution."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((80, 6))
    y = x @ np.array([1.5, 0, 0, -2.0, 0, 0.3]) + 0.1 * rng.standard_normal(80)
    alphas = [0.01, 0.1, 0.5]
    xt, yt = torch.tensor(x), torch.tensor(y)
    w = torch.zeros(len(alphas), 6, dtype=f64, requires_grad=True)
    lipschitz = np.linalg.eigvalsh(x.T @ x / len(y)).max()
    opt = ok.SGD([w], lr=1 / lipschitz, l1=torch.tensor(alphas, dtype=f64))
    for _ in range(300):  # well conditioned: ISTA is at machine precision long before
        w.grad = ((w @ xt.T - yt) @ xt) / len(y)  # gradient of (1/2n)||Xw - y||^2
        opt.step()
    for j, alpha in enumerate(alphas):
        ref = Lasso(alpha=alpha, fit_intercept=False, tol=1e-14, max_iter=100_000).fit(x, y)
        np.testing.assert_allclose(w[j].detach().numpy(), ref.coef_, atol=1e-12)


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop", "NAdam"])
def test_nonfinite_member_is_skipped_and_others_are_bit_identical(name):
    k, bad = 4, 2
    p, rng = _population(k)
    q = p.detach().clone().requires_grad_()
    kwargs = {"lr": torch.tensor([0.01, 0.02, 0.03, 0.04], dtype=f64)}
    if name in ("SGD", "RMSprop"):
        kwargs["momentum"] = 0.9
    ours = getattr(ok, name)([p], skip_nonfinite=True, **kwargs)
    clean = getattr(ok, name)([q], **kwargs)
    frozen = None
    for step in range(10):
        grad = torch.randn(p.shape, generator=rng, dtype=f64)
        poisoned = grad.clone()
        if step in (3, 4, 7):
            poisoned[bad, 0, 1] = float("nan") if step != 4 else float("inf")
            frozen = p[bad].detach().clone(), {n: v[bad].clone() for n, v in ours.state[p].items()}
        p.grad, q.grad = poisoned, grad.clone()
        ours.step()
        clean.step()
        if step in (3, 4, 7):
            assert torch.equal(p[bad], frozen[0])  # parameters untouched
            for n, v in ours.state[p].items():
                assert torch.equal(v[bad], frozen[1][n]), n  # state untouched (step too)
            q.data[bad] = p.data[bad]  # the clean twin follows the skip for member `bad`
            for n, v in clean.state[q].items():
                v[bad] = ours.state[p][n][bad]
    others = [m for m in range(k) if m != bad]
    assert torch.equal(p[others], q[others])


def test_state_dict_round_trip_continues_exactly():
    p, rng = _population(3)
    grads = [torch.randn(p.shape, generator=rng, dtype=f64) for _ in range(20)]
    lr = torch.tensor([1e-3, 1e-2, 1e-1], dtype=f64)

    def make(param):
        return ok.Adam([param], lr=lr, amsgrad=True, weight_decay=0.01)

    full_p = p.detach().clone().requires_grad_()
    full = make(full_p)
    for g in grads:
        full_p.grad = g.clone()
        full.step()

    half_p = p.detach().clone().requires_grad_()
    half = make(half_p)
    for g in grads[:10]:
        half_p.grad = g.clone()
        half.step()
    saved = half.state_dict()
    resumed_p = half_p.detach().clone().requires_grad_()
    resumed = make(resumed_p)
    resumed.load_state_dict(saved)
    for g in grads[10:]:
        resumed_p.grad = g.clone()
        resumed.step()
    assert torch.equal(resumed_p, full_p)


def test_functional_core_runs_under_vmap():
    """vmap over an outer axis of B independent populations equals a loop over them."""
    b, k = 3, 4
    tx = transforms.chain(transforms.add_decayed_weights(), scale_by_adam(amsgrad=True))
    lr = torch.tensor([1e-3, 1e-2, 3e-2, 1e-1], dtype=f64)
    full = lambda v: torch.full((k,), v, dtype=f64)  # noqa: E731
    hp = {"lr": lr, "beta1": full(0.9), "beta2": full(0.99), "eps": full(1e-8),
          "weight_decay": full(0.01)}  # fmt: skip
    params = torch.randn(b, k, 5, dtype=f64)
    grads = [torch.randn(b, k, 5, dtype=f64) for _ in range(5)]

    def step(p, g, state):
        p, state = p.clone(), {n: v.clone() for n, v in state.items()}
        transforms.apply_updates(tx, [p], [g], [state], hp)
        return p, state

    state = {"step": torch.zeros(k, dtype=f64), **tx.init(params[0], hp)}
    batched = {n: v.expand(b, *v.shape).clone() for n, v in state.items()}
    vp = params
    for g in grads:
        vp, batched = torch.func.vmap(step)(vp, g, batched)
    for i in range(b):
        p, s = params[i], {n: v.clone() for n, v in state.items()}
        for g in grads:
            p, s = step(p, g[i], s)
        torch.testing.assert_close(vp[i], p, rtol=0, atol=1e-15)


def test_float32_population_matches_torch():
    k = 5
    p = torch.randn(k, 100, requires_grad=True)
    lr = torch.logspace(-4, -1, k, dtype=f64)
    ours = ok.Adam([p], lr=lr)
    refs = []
    for m in range(k):
        q = p[m].detach().clone().requires_grad_()
        refs.append((q, torch.optim.Adam([q], lr=float(lr[m]))))
    for _ in range(50):
        g = torch.randn(k, 100)
        p.grad = g.clone()
        ours.step()
        for m, (q, ref) in enumerate(refs):
            q.grad = g[m].clone()
            ref.step()
    for m, (q, _) in enumerate(refs):
        assert (p[m] - q).abs().max() <= 1e-6


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": -0.1}, "lr: expected 0 <= lr, got -0.1"),
        ({"betas": (1.0, 0.999)}, r"beta1: expected 0 <= beta1 < 1"),
        ({"betas": (0.9, -0.1)}, r"beta2: expected 0 <= beta2 < 1"),
        ({"betas": 0.9}, r"betas: expected a tuple of 2 values \(beta1, beta2\)"),
        ({"eps": -1.0}, "eps: expected 0 <= eps"),
        ({"lr": torch.tensor([0.1, 0.2])}, r"params\[0\]: with K = 2 members"),
        ({"lr": torch.ones(3), "eps": torch.ones(2)}, r"eps: expected a tensor of shape \[3\]"),
        ({"lr": torch.ones(2, 2)}, "lr: expected a number or a 1-D float tensor"),
        ({"lr": float("nan")}, "lr: expected 0 <= lr, got nan"),
        ({"lr": "fast"}, "lr: expected a number"),
        ({"clip_grad_norm": 0.0}, "clip_grad_norm: expected 0 < clip_grad_norm"),
        ({"members": 0}, "members: expected a positive int"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    p = torch.zeros(3, 4, requires_grad=True)
    with pytest.raises(ValueError, match=message):
        ok.Adam([p], **kwargs)


def test_integer_parameters_and_bad_names_are_rejected():
    with pytest.raises(ValueError, match="params: expected real floating-point"):
        ok.SGD([torch.zeros(3, dtype=torch.long)], lr=0.1)
    with pytest.raises(ValueError, match=r"valid: .*adagrad, adam, .*sgd"):
        ok.get_optimizer("adamm", [torch.zeros(2, requires_grad=True)])
    with pytest.raises(ValueError, match="nesterov: requires momentum > 0"):
        ok.SGD([torch.zeros(2, requires_grad=True)], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="nesterov: requires momentum > 0"):
        ok.SGD([torch.zeros(2, 1)], momentum=torch.tensor([0.0, 0.9]), nesterov=True)
