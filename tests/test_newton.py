"""optimkit.optim.Newton against closed forms, scikit-learn and scipy's Newton-CG."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
import scipy.optimize
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from optimkit.optim.newton import Newton, damped_cholesky, truncated_cg

F64 = torch.float64
C = 0.5  # inverse regularization strength of the logistic regressions


# --- problems ------------------------------------------------------------------------------------


def _spd(n, seed, dtype=F64):
    gen = torch.Generator().manual_seed(seed)
    M = torch.randn(n, n, generator=gen, dtype=F64)
    A = M @ M.T + 0.5 * torch.eye(n, dtype=F64)
    b = torch.randn(n, generator=gen, dtype=F64)
    return A.to(dtype), b.to(dtype)


def quadratic_closure(params, A, b):
    def closure():
        x = torch.cat([p.reshape(-1) for p in params])
        return 0.5 * x @ A @ x - b @ x

    return closure


def quadratic_params(dtype=F64):
    """x = (a [2, 3] matrix, a [4] vector, a scalar): 11 numbers in three tensors."""
    return [
        torch.ones(2, 3, dtype=dtype, requires_grad=True),
        torch.zeros(4, dtype=dtype, requires_grad=True),
        torch.tensor(-1.0, dtype=dtype, requires_grad=True),
    ]


def _breast_cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), y.astype(np.float64)


def logreg(**kwargs):
    """C * sum of log-losses + 0.5 ||w||^2 (scikit-learn's objective), w [30, 1], b scalar."""
    X, y = _breast_cancer()
    X, y = torch.tensor(X), torch.tensor(y)
    w = torch.zeros(30, 1, dtype=F64, requires_grad=True)
    b = torch.zeros((), dtype=F64, requires_grad=True)
    opt = Newton([w, b], **kwargs)

    def closure():
        z = X @ w.reshape(-1) + b
        nll = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="sum")
        return C * nll + 0.5 * (w * w).sum()

    def solution():
        return np.concatenate([w.detach().reshape(-1).numpy(), [b.item()]])

    return opt, closure, solution


def grad_norm(closure, params):
    with torch.enable_grad():
        grads = torch.autograd.grad(closure(), params)
    return torch.cat([g.reshape(-1) for g in grads]).norm().item()


@pytest.fixture(scope="module")
def sklearn_optimum():
    X, y = _breast_cancer()
    model = LogisticRegression(C=C, tol=1e-12, solver="newton-cholesky", max_iter=100).fit(X, y)
    return np.concatenate([model.coef_[0], model.intercept_])


# --- exact Newton ----------------------------------------------------------------------------


@pytest.mark.parametrize("line_search_fn", [None, "backtracking", "strong_wolfe"])
def test_one_exact_step_solves_a_quadratic(line_search_fn):
    A, b = _spd(11, seed=0)
    params = quadratic_params()
    opt = Newton(params, hessian="exact", max_iter=1, line_search_fn=line_search_fn)
    opt.step(quadratic_closure(params, A, b))
    x = torch.cat([p.detach().reshape(-1) for p in params])
    torch.testing.assert_close(x, torch.linalg.solve(A, b), rtol=1e-12, atol=1e-12)
    assert opt.state[params[0]]["n_iter"] == 1
    assert opt.state[params[0]]["damping"] == 0.0


@pytest.mark.parametrize("hessian", ["exact", "cg"])
def test_logreg_reaches_sklearn_optimum(hessian, sklearn_optimum):
    opt, closure, solution = logreg(
        hessian=hessian, max_iter=30, tolerance_grad=1e-10, tolerance_change=0.0
    )
    opt.step(closure)
    np.testing.assert_allclose(solution(), sklearn_optimum, rtol=0, atol=1e-8)
    # a handful of iterations from w = 0 (L-BFGS needs ~50 on this problem)
    n_iter = opt.state[opt.param_groups[0]["params"][0]]["n_iter"]
    assert n_iter <= (10 if hessian == "exact" else 16)


def test_newton_cg_reaches_scipy_newton_cg_optimum():
    X, y = _breast_cancer()
    Xb = np.hstack([X, np.ones((len(y), 1))])
    reg = np.r_[np.ones(30), 0.0]

    def fun(v):
        z = Xb @ v
        return C * np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * (reg * v) @ v

    def jac(v):
        return C * Xb.T @ (1.0 / (1.0 + np.exp(-Xb @ v)) - y) + reg * v

    def hessp(v, p):
        s = 1.0 / (1.0 + np.exp(-Xb @ v))
        return C * Xb.T @ (s * (1 - s) * (Xb @ p)) + reg * p

    res = scipy.optimize.minimize(
        fun, np.zeros(31), jac=jac, hessp=hessp, method="Newton-CG", options={"xtol": 1e-14}
    )
    # |x - x*| <= |grad| / lambda_min(H) and lambda_min(H) >= 1 (the ridge)
    assert np.abs(jac(res.x)).max() < 5e-9
    opt, closure, solution = logreg(
        hessian="cg", max_iter=30, tolerance_grad=1e-10, tolerance_change=0.0
    )
    opt.step(closure)
    np.testing.assert_allclose(solution(), res.x, rtol=0, atol=1e-8)


def test_exact_newton_converges_quadratically():
    # ||g_{k+1}|| <= K ||g_k||^2 once close (N&W Thm. 3.5). A linearly convergent method with
    # rate r has ||g_{k+1}|| / ||g_k||^2 = r / ||g_k||, which grows without bound instead.
    opt, closure, _ = logreg(hessian="exact", max_iter=1, tolerance_grad=0, tolerance_change=0)
    params = opt.param_groups[0]["params"]
    norms = [grad_norm(closure, params)]
    for _ in range(10):
        opt.step(closure)
        norms.append(grad_norm(closure, params))
    close = [(g, g_next) for g, g_next in itertools.pairwise(norms) if 1e-9 < g < 1e-1]
    assert len(close) >= 2
    for g, g_next in close:
        assert g_next <= 0.5 * g**2
    assert norms[-1] < 1e-12


def test_rosenbrock_from_an_indefinite_start_converges_with_damping():
    # At (0, 1) the Hessian [[-398, 0], [0, 200]] is indefinite: the pure Newton step is not a
    # descent direction, so the Cholesky is damped (tau > 0) before Newton takes over.
    x = torch.tensor([0.0, 1.0], dtype=F64, requires_grad=True)
    opt = Newton([x], hessian="exact", max_iter=100, tolerance_grad=1e-12, tolerance_change=0.0)

    def closure():
        return 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2

    opt.step(closure)
    assert opt.state[x]["n_damped"] >= 1
    torch.testing.assert_close(x.detach(), torch.ones(2, dtype=F64), rtol=0, atol=1e-10)


@pytest.mark.parametrize("line_search_fn", ["backtracking", "strong_wolfe"])
def test_rosenbrock_newton_cg(line_search_fn):
    x = torch.tensor([-1.2, 1.0, -0.5, 0.8], dtype=F64, requires_grad=True)
    opt = Newton(
        [x], hessian="cg", max_iter=200, tolerance_grad=1e-10, tolerance_change=0.0,
        line_search_fn=line_search_fn,
    )  # fmt: skip

    def closure():
        return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()

    opt.step(closure)
    torch.testing.assert_close(x.detach(), torch.ones(4, dtype=F64), rtol=0, atol=1e-9)


def test_backtracking_accepts_a_decrease_below_rounding():
    # Near the optimum the decrease of a Newton step (here 5e-17) is below the loss's rounding
    # error; the loss at the exact minimizer is made 2 ulps *higher* (a value-only bump, as
    # rounding noise would). Armijo within 64 eps |f| still takes the full Newton step.
    x = torch.tensor([1.0 + 1e-8], dtype=F64, requires_grad=True)
    opt = Newton([x], hessian="exact", max_iter=1, tolerance_grad=0.0, tolerance_change=0.0)

    def closure():
        bump = 2.0**-51 * (x.detach() == 1.0).to(F64)
        return 1.0 + 0.5 * ((x - 1) ** 2).sum() + bump.sum()

    opt.step(closure)
    assert x.item() == 1.0


# --- building blocks -------------------------------------------------------------------------


def test_damped_cholesky():
    A, _ = _spd(6, seed=1)
    L, tau = damped_cholesky(A, 1e-3)
    assert tau == 0.0
    torch.testing.assert_close(L @ L.T, A, rtol=1e-12, atol=1e-12)

    H = A - 1.5 * torch.linalg.eigvalsh(A)[2] * torch.eye(6, dtype=F64)  # two negative eigs
    L, tau = damped_cholesky(H, 1e-3)
    eye = torch.eye(6, dtype=F64)
    torch.testing.assert_close(L @ L.T, H + tau * eye, rtol=1e-12, atol=1e-12)
    assert torch.linalg.eigvalsh(H + tau * eye)[0] > 0
    # tau is the first success of tau_0 = beta - min H_ii, then doubling (N&W Alg. 3.3)
    beta = 1e-3 * H.diagonal().abs().max().item()
    tau0 = max(beta - H.diagonal().min().item(), 0.0) if H.diagonal().min() <= 0 else 0.0
    tries = [tau0]
    while torch.linalg.eigvalsh(H + tries[-1] * eye)[0] <= 0:
        tries.append(max(2 * tries[-1], beta))
    assert tau == pytest.approx(tries[-1], rel=1e-15)

    L, _ = damped_cholesky(torch.full((3, 3), float("nan"), dtype=F64), 1e-3)
    assert L is None


def test_truncated_cg_solves_spd_systems_and_stops_on_negative_curvature():
    A, g0 = _spd(20, seed=2)
    inv_norm = 1.0 / torch.linalg.eigvalsh(A)[0].item()
    for scale, cg_tol in [(1.0, 0.5), (1e-4, 0.5), (1e-10, 1e-3)]:
        g = g0 * scale
        d, iters = truncated_cg(lambda v: A @ v, g, cg_tol=cg_tol, max_iter=200)
        # stopping rule: ||A d + g|| <= min(cg_tol, sqrt(||g||)) ||g||, hence the error bound
        bound = min(cg_tol, g.norm().sqrt().item()) * g.norm().item()
        assert (A @ d + g).norm().item() <= bound
        assert (d + torch.linalg.solve(A, g)).norm().item() <= inv_norm * bound
        assert iters <= 20 + 5  # CG needs at most n products in exact arithmetic

    H = torch.diag(torch.tensor([-1.0, 2.0], dtype=F64))
    g = torch.tensor([1.0, 0.0], dtype=F64)
    d, iters = truncated_cg(lambda v: H @ v, g, 0.5, 10)  # first direction has p'Hp < 0
    assert iters == 1 and torch.equal(d, -g)
    g = torch.tensor([0.1, 1.0], dtype=F64)  # positive curvature first, then negative
    d, iters = truncated_cg(lambda v: H @ v, g, 1e-3, 10)
    z1 = -(g @ g) / (g @ H @ g) * g
    assert iters == 2
    torch.testing.assert_close(d, z1, rtol=1e-14, atol=0)


def test_auto_mode_picks_exact_or_cg_by_size():
    A, b = _spd(11, seed=3)
    for max_exact_size, expect_cg in [(11, False), (10, True)]:
        params = quadratic_params()
        opt = Newton(params, max_iter=1, max_exact_size=max_exact_size)
        opt.step(quadratic_closure(params, A, b))
        assert (opt.state[params[0]]["cg_iters"] > 0) == expect_cg


def test_float32():
    A, b = _spd(11, seed=4, dtype=torch.float32)
    params = quadratic_params(torch.float32)
    opt = Newton(params, hessian="exact", max_iter=2)
    opt.step(quadratic_closure(params, A, b))
    x = torch.cat([p.detach().reshape(-1) for p in params])
    assert x.dtype == torch.float32
    expected = torch.linalg.solve(A.double(), b.double()).float()
    torch.testing.assert_close(x, expected, rtol=1e-4, atol=1e-4)


def test_unused_parameter_is_left_alone():
    A, b = _spd(3, seed=5)
    x = torch.zeros(3, dtype=F64, requires_grad=True)
    unused = torch.ones(2, dtype=F64, requires_grad=True)
    opt = Newton([x, unused], hessian="cg", max_iter=10, tolerance_grad=1e-12)
    opt.step(lambda: 0.5 * x @ A @ x - b @ x)
    torch.testing.assert_close(x.detach(), torch.linalg.solve(A, b), rtol=1e-10, atol=1e-12)
    assert torch.equal(unused.detach(), torch.ones(2, dtype=F64))


def test_state_dict_round_trip_continues_exactly():
    opt, closure, solution = logreg(hessian="exact", max_iter=2)
    opt.step(closure)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    saved = [p.detach().clone() for p in opt.param_groups[0]["params"]]
    opt.step(closure)

    opt2, closure2, solution2 = logreg(hessian="exact", max_iter=2)
    with torch.no_grad():
        for p, s in zip(opt2.param_groups[0]["params"], saved, strict=True):
            p.copy_(s)
    buffer.seek(0)
    opt2.load_state_dict(torch.load(buffer))
    assert opt2.state[opt2.param_groups[0]["params"][0]]["n_iter"] == 2
    opt2.step(closure2)
    assert np.array_equal(solution(), solution2())


# --- validation ------------------------------------------------------------------------------


def _param():
    return [torch.zeros(2, requires_grad=True)]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"lr": 0.0}, "lr"),
        ({"lr": -0.5}, "lr"),
        ({"max_iter": 0}, "max_iter"),
        ({"tolerance_grad": -1.0}, "tolerance_grad"),
        ({"tolerance_change": -1.0}, "tolerance_change"),
        ({"cg_tol": 0.0}, "cg_tol"),
        ({"cg_tol": 1.0}, "cg_tol"),
        ({"cg_max_iter": 0}, "cg_max_iter"),
        ({"max_exact_size": -1}, "max_exact_size"),
        ({"damping": 0.0}, "damping"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}: expected"):
        Newton(_param(), **kwargs)


def test_unknown_modes_list_valid_values():
    with pytest.raises(ValueError, match="hessian: expected one of 'auto', 'exact', 'cg'"):
        Newton(_param(), hessian="bfgs")
    match = "line_search_fn: expected one of None, 'backtracking', 'strong_wolfe'"
    with pytest.raises(ValueError, match=match):
        Newton(_param(), line_search_fn="armijo")


def test_several_param_groups_rejected():
    with pytest.raises(ValueError, match="params: Newton supports a single parameter group"):
        Newton([{"params": _param()}, {"params": _param()}])


def test_closure_that_calls_backward_is_explained():
    x = torch.ones(2, dtype=F64, requires_grad=True)
    opt = Newton([x])

    def closure():
        loss = (x**4).sum()
        loss.backward()
        return loss

    with pytest.raises(ValueError, match="without calling backward"):
        opt.step(closure)
    with pytest.raises(ValueError, match="closure: expected it to return the scalar loss"):
        opt.step(lambda: 1.0)
