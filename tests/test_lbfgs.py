"""optimkit.optim.LBFGS against torch.optim.LBFGS (iterates), scipy L-BFGS-B and closed forms."""

from __future__ import annotations

import copy
import functools
import io
import math

import numpy as np
import pytest
import scipy.optimize
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import StandardScaler

from optimkit.optim.lbfgs import LBFGS, cubic_minimizer, two_loop

F64 = torch.float64


# --- problems: (loss of a list of parameter tensors, initial parameters) -----------------------


def _quadratic_data(dtype=F64):
    gen = torch.Generator().manual_seed(0)
    M = torch.randn(12, 12, generator=gen, dtype=F64)
    A = M @ M.T + 0.1 * torch.eye(12, dtype=F64)
    b = torch.randn(12, generator=gen, dtype=F64)
    return A.to(dtype), b.to(dtype)


def quadratic(dtype=F64):
    """0.5 x'Ax - b'x over x = (a [3, 2] matrix, a [6] vector), condition number ~ 1e3."""
    A, b = _quadratic_data(dtype)

    def loss(ps):
        x = torch.cat([p.reshape(-1) for p in ps])
        return 0.5 * x @ A @ x - b @ x

    return loss, [torch.zeros(3, 2, dtype=dtype), torch.ones(6, dtype=dtype)]


def rosenbrock(dtype=F64):
    def loss(ps):
        x = ps[0]
        return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()

    return loss, [torch.tensor([-1.2, 1.0, -1.2, 1.0, 0.5], dtype=dtype)]


def _breast_cancer(dtype=F64):
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    return torch.tensor(X, dtype=dtype), torch.tensor(y, dtype=dtype)


def logreg(dtype=F64):
    """L2-regularized logistic regression, C = 1: sum of log-losses + 0.5 ||w||^2."""
    X, y = _breast_cancer(dtype)

    def loss(ps):
        w, b = ps
        z = X @ w.reshape(-1) + b
        nll = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="sum")
        return nll + 0.5 * (w * w).sum()

    return loss, [torch.zeros(30, 1, dtype=dtype), torch.zeros((), dtype=dtype)]


PROBLEMS = {"quadratic": quadratic, "rosenbrock": rosenbrock, "logreg": logreg}


def make(opt_cls, problem, dtype=F64, **kwargs):
    loss_fn, init = PROBLEMS[problem](dtype)
    params = [p.clone().requires_grad_() for p in init]
    opt = opt_cls(params, **kwargs)

    def closure():
        opt.zero_grad()
        loss = loss_fn(params)
        loss.backward()
        return loss

    return params, opt, closure, loss_fn


# --- iterates equal torch.optim.LBFGS ------------------------------------------------------------


@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
@pytest.mark.parametrize("history_size", [1, 3, 10, 100])
def test_iterates_match_torch(problem, line_search_fn, history_size):
    # 4 step() calls x 5 iterations: the ring buffer wraps for history_size < 20. Longer runs
    # on Rosenbrock amplify rounding differences (torch against itself with a 1-ulp perturbed
    # start drifts as much), so the comparison stays in the well-conditioned range.
    kw = {"history_size": history_size, "line_search_fn": line_search_fn, "max_iter": 5}
    ours, opt, closure, _ = make(LBFGS, problem, **kw)
    ref, ref_opt, ref_closure, _ = make(torch.optim.LBFGS, problem, **kw)
    for _ in range(4):
        loss = opt.step(closure)
        ref_loss = ref_opt.step(ref_closure)
        torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12)
        for p, q in zip(ours, ref, strict=True):
            torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-10)
    st, ref_st = opt.state[ours[0]], ref_opt.state[ref[0]]
    assert (st["n_iter"], st["func_evals"]) == (ref_st["n_iter"], ref_st["func_evals"])
    assert st["t"] == pytest.approx(float(ref_st["t"]), rel=1e-9)


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_single_iteration_steps_match_torch(line_search_fn):
    # max_iter = 1 gives max_eval = 1: the line search gets no extra evaluation, the same
    # corner case as torch (keep the better of t = 0 and the first trial step).
    kw = {"line_search_fn": line_search_fn, "max_iter": 1, "history_size": 4}
    ours, opt, closure, _ = make(LBFGS, "rosenbrock", **kw)
    ref, ref_opt, ref_closure, _ = make(torch.optim.LBFGS, "rosenbrock", **kw)
    for _ in range(15):
        opt.step(closure)
        ref_opt.step(ref_closure)
        torch.testing.assert_close(ours[0], ref[0], rtol=1e-10, atol=1e-10)


def test_parameter_without_gradient_matches_torch():
    def run(cls):
        w = torch.tensor([3.0, -2.0], dtype=F64, requires_grad=True)
        unused = torch.ones(2, 2, dtype=F64, requires_grad=True)
        opt = cls([unused, w], line_search_fn="strong_wolfe", max_iter=10)

        def closure():
            opt.zero_grad()
            loss = ((w - torch.tensor([1.0, 2.0], dtype=F64)) ** 4).sum() + (w**2).sum()
            loss.backward()
            return loss

        for _ in range(3):
            opt.step(closure)
        return w.detach(), unused.detach()

    (w, unused), (w_ref, unused_ref) = run(LBFGS), run(torch.optim.LBFGS)
    torch.testing.assert_close(w, w_ref, rtol=1e-10, atol=1e-12)
    assert torch.equal(unused, unused_ref)


def test_float32_matches_torch_closely():
    # torch does the float32 line-search arithmetic in float32, we do it in Python floats:
    # the same iterates up to float32 rounding.
    kw = {"line_search_fn": "strong_wolfe", "max_iter": 10, "history_size": 10}
    ours, opt, closure, _ = make(LBFGS, "logreg", dtype=torch.float32, **kw)
    ref, ref_opt, ref_closure, _ = make(torch.optim.LBFGS, "logreg", dtype=torch.float32, **kw)
    for _ in range(2):
        opt.step(closure)
        ref_opt.step(ref_closure)
    assert ours[0].dtype == torch.float32
    for p, q in zip(ours, ref, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-4)


# --- convergence to independent optima -----------------------------------------------------------


@functools.cache
def _scipy_logreg_optimum():
    X, y = (t.numpy() for t in _breast_cancer())
    Xb = np.hstack([X, np.ones((len(y), 1))])

    def fun(v):
        z = Xb @ v
        loss = np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * v[:-1] @ v[:-1]
        grad = Xb.T @ (1.0 / (1.0 + np.exp(-z)) - y)
        grad[:-1] += v[:-1]
        return loss, grad

    res = scipy.optimize.minimize(
        fun, np.zeros(31), jac=True, method="L-BFGS-B",
        options={"gtol": 1e-11, "ftol": 0.0, "maxiter": 10_000, "maxcor": 30},
    )  # fmt: skip
    # Line searches on f stall once the decrease g'H^{-1}g ~ |grad|^2 reaches f's rounding
    # (eps * 38 here): |grad| ~ 1e-7, so |x - x*| <= |grad| / lambda_min(H) ~ 1e-7 for
    # L-BFGS-B and for us alike (lambda_min >= 1 from the ridge).
    assert np.abs(res.jac).max() < 3e-7
    return res.x


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_logreg_converges_to_scipy_lbfgsb(line_search_fn):
    params, opt, closure, _ = make(
        LBFGS, "logreg", line_search_fn=line_search_fn, max_iter=150, history_size=10,
        tolerance_grad=1e-9, tolerance_change=0.0,
    )  # fmt: skip
    opt.step(closure)
    w, b = params
    ours = torch.cat([w.detach().reshape(-1), b.detach().reshape(1)]).numpy()
    np.testing.assert_allclose(ours, _scipy_logreg_optimum(), rtol=0, atol=1e-6)


def test_quadratic_converges_to_closed_form():
    A, b = _quadratic_data()
    params, opt, closure, _ = make(
        LBFGS, "quadratic", line_search_fn="strong_wolfe", max_iter=200,
        tolerance_grad=1e-12, tolerance_change=0.0,
    )  # fmt: skip
    opt.step(closure)
    x = torch.cat([p.detach().reshape(-1) for p in params])
    torch.testing.assert_close(x, torch.linalg.solve(A, b), rtol=0, atol=1e-10)


def test_rosenbrock_converges_to_ones():
    params, opt, closure, _ = make(
        LBFGS, "rosenbrock", line_search_fn="strong_wolfe", max_iter=200,
        tolerance_grad=1e-12, tolerance_change=0.0,
    )  # fmt: skip
    opt.step(closure)
    torch.testing.assert_close(params[0].detach(), torch.ones(5, dtype=F64), rtol=0, atol=1e-9)


# --- building blocks against their definitions ---------------------------------------------------


def test_two_loop_equals_dense_bfgs_recursion():
    # H_{k+1} = (I - rho s y') H_k (I - rho y s') + rho s s' from H_0 = gamma I over the last m
    # pairs (N&W eq. 7.19), with the ring buffer wrapped around (7 pairs stored, m = 4).
    n, m, pairs = 9, 4, 7
    gen = torch.Generator().manual_seed(3)
    M = torch.randn(n, n, generator=gen, dtype=F64)
    A = M @ M.T + torch.eye(n, dtype=F64)
    x = torch.zeros(1, dtype=F64, requires_grad=True)
    opt = LBFGS([x], history_size=m)
    state: dict = {}
    S, Y = [], []
    for _ in range(pairs):
        s = torch.randn(n, generator=gen, dtype=F64)
        y = A @ s
        opt._store_pair(state, s, y, y.dot(s).item(), m)
        S.append(s)
        Y.append(y)
    gamma = (S[-1] @ Y[-1] / (Y[-1] @ Y[-1])).item()
    H = gamma * torch.eye(n, dtype=F64)
    I = torch.eye(n, dtype=F64)
    for s, y in zip(S[-m:], Y[-m:], strict=True):
        rho = 1.0 / (y @ s)
        H = (I - rho * torch.outer(s, y)) @ H @ (I - rho * torch.outer(y, s)) + rho * torch.outer(
            s, s
        )
    v = torch.randn(n, generator=gen, dtype=F64)
    assert state["num"] == m and state["head"] == pairs % m
    got = two_loop(v, state["S"], state["Y"], state["R"], state["head"], state["num"], gamma)
    torch.testing.assert_close(got, H @ v, rtol=1e-12, atol=1e-12)


def test_cubic_minimizer_degenerate_cases_match_torch():
    from torch.optim.lbfgs import _cubic_interpolate

    # A line (f' = -3 at both ends): the quotient divides by zero, IEEE sends t to a bound.
    cases = [
        (0.0, 0.0, -3.0, 1.0, -3.0, -3.0, (1.01, 10.0)),
        (1.0, -3.0, -3.0, 0.0, 0.0, -3.0, None),
    ]
    for t1, f1, g1, t2, f2, g2, bounds in cases:
        lo, hi = bounds or (min(t1, t2), max(t1, t2))
        ref = _cubic_interpolate(t1, f1, torch.tensor(g1), t2, f2, torch.tensor(g2), bounds)
        assert cubic_minimizer(t1, f1, g1, t2, f2, g2, lo, hi) == float(ref)


def test_strong_wolfe_survives_overflow():
    # exp(100 x) - 3 x from x = -1: the first steps see a line (a cubic with a zero
    # denominator), then t = 5.5 gives f ~ 1e195 and the cubic overflows to NaN. torch's search
    # then evaluates and returns t = NaN; ours bisects and returns a strong-Wolfe step.
    from optimkit.optim.lbfgs import LinePoint, strong_wolfe

    def f_and_g(t):
        x = -1.0 + t
        return math.exp(100 * x) - 3 * x, torch.tensor([100 * math.exp(100 * x) - 3])

    d = torch.tensor([1.0])
    f0, g0 = f_and_g(0.0)
    point, _ = strong_wolfe(f_and_g, d, LinePoint(0.0, f0, g0, g0.item()), 1e-3)
    assert math.isfinite(point.t) and point.t > 0
    assert point.f <= f0 + 1e-4 * point.t * g0.item()
    assert abs(point.g.item()) <= 0.9 * abs(g0.item())


def test_cubic_minimizer_is_exact_on_cubics():
    # f(t) = (t - 0.7)^2 (t + 2): local minimizer t = 0.7; any two points determine the cubic.
    def f(t):
        return (t - 0.7) ** 2 * (t + 2)

    def df(t):
        return 2 * (t - 0.7) * (t + 2) + (t - 0.7) ** 2

    for a, b in [(0.0, 1.5), (1.5, 0.0), (0.3, 0.9), (-0.5, 3.0)]:
        t = cubic_minimizer(a, f(a), df(a), b, f(b), df(b), -10.0, 10.0)
        assert t == pytest.approx(0.7, abs=1e-12)
    # t^3 + t is monotone: no real minimizer, the midpoint of the bounds is returned
    assert cubic_minimizer(0.0, 0.0, 1.0, 1.0, 2.0, 4.0, 0.0, 1.0) == 0.5


# --- state_dict ----------------------------------------------------------------------------------


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_state_dict_round_trip_continues_exactly(line_search_fn):
    kw = {"line_search_fn": line_search_fn, "max_iter": 4, "history_size": 3}
    params, opt, closure, loss_fn = make(LBFGS, "logreg", **kw)
    for _ in range(2):
        opt.step(closure)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    saved_params = [p.detach().clone() for p in params]
    for _ in range(3):
        opt.step(closure)

    resumed = [p.clone().requires_grad_() for p in saved_params]
    opt2 = LBFGS(resumed, **kw)
    buffer.seek(0)
    opt2.load_state_dict(torch.load(buffer))

    def closure2():
        opt2.zero_grad()
        loss = loss_fn(resumed)
        loss.backward()
        return loss

    for _ in range(3):
        opt2.step(closure2)
    for p, q in zip(params, resumed, strict=True):
        assert torch.equal(p, q)


def test_state_dict_is_a_copy():
    _, opt, closure, _ = make(LBFGS, "quadratic", max_iter=3, history_size=2)
    opt.step(closure)
    sd = opt.state_dict()
    before = copy.deepcopy(sd)
    opt.step(closure)  # mutates the ring buffers in place
    for key in ("S", "Y", "R", "d", "prev_flat_grad"):
        assert torch.equal(sd["state"][0][key], before["state"][0][key])


# --- validation ----------------------------------------------------------------------------------


def _param():
    return [torch.zeros(2, requires_grad=True)]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"lr": 0.0}, "lr"),
        ({"lr": -1.0}, "lr"),
        ({"history_size": 0}, "history_size"),
        ({"history_size": 2.5}, "history_size"),
        ({"max_iter": 0}, "max_iter"),
        ({"max_eval": 0}, "max_eval"),
        ({"tolerance_grad": -1.0}, "tolerance_grad"),
        ({"tolerance_change": -1.0}, "tolerance_change"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}: expected"):
        LBFGS(_param(), **kwargs)


def test_unknown_line_search_lists_valid_values():
    with pytest.raises(ValueError, match="line_search_fn: expected one of None, 'strong_wolfe'"):
        LBFGS(_param(), line_search_fn="wolfe")


def test_several_param_groups_rejected():
    groups = [{"params": _param()}, {"params": _param()}]
    with pytest.raises(ValueError, match="params: LBFGS supports a single parameter group"):
        LBFGS(groups)


def test_integer_params_rejected():
    with pytest.raises(ValueError, match="params: LBFGS expects real floating-point"):
        LBFGS([torch.zeros(2, dtype=torch.int64)])


def _line_functions():
    # 1-D slices f(x0 + t d) of smooth functions, several with many local minima along the
    # line, chosen so that extrapolation, zoom, its boundary safeguard, the "loss rose after
    # an extrapolation" rule and the small-bracket exit all run.
    def sin(w):
        return lambda x: torch.sin(w * x).sum() + 0.05 * (x**2).sum()

    def exp(w):
        return lambda x: torch.exp(w * x).sum() - 3 * x.sum()

    yield lambda x: (x**4).sum() - 3 * (x**2).sum() + x.sum(), [2.0, -0.1]
    yield lambda x: (x**4).sum() - 0.5 * (x**2).sum() + x.sum(), [0.3]
    yield lambda x: torch.log1p(torch.exp(-x)).sum() + 1e-3 * (x**2).sum(), [0.0]
    yield lambda x: (x.abs() ** 1.5).sum(), [1.0, 0.5]
    yield lambda x: torch.sqrt(1 + (7 * x) ** 2).sum() - 0.5 * x.sum(), [-1.0]
    for x0 in ([0.3], [2.0], [-1.0]):
        yield sin(7), x0
    yield sin(30), [0.3]
    yield exp(2), [2.0]
    yield exp(100), [0.3]


@pytest.mark.parametrize("tolerance_change", [1e-9, 1e-2])
@pytest.mark.parametrize("c2", [0.9, 0.1])
@pytest.mark.parametrize("max_ls", [0, 2, 25])
def test_strong_wolfe_matches_torch_line_search(tolerance_change, c2, max_ls):
    from torch.optim.lbfgs import _strong_wolfe

    from optimkit.optim.lbfgs import LinePoint, strong_wolfe

    kw = {"c2": c2, "max_ls": max_ls, "tolerance_change": tolerance_change}
    for fn, x0 in _line_functions():
        x0 = torch.tensor(x0, dtype=F64)

        def f_and_g(x, fn=fn):
            x = x.detach().requires_grad_()
            with torch.enable_grad():
                loss = fn(x)
            return loss.item(), torch.autograd.grad(loss, x)[0]

        f0, g0 = f_and_g(x0)
        d = -3 * g0 / g0.norm()  # not unit: the bracket test scales with max |d_i|
        for t0 in (1e-3, 0.3, 1.0, 5.0, 100.0):
            point, n = strong_wolfe(
                lambda t, x0=x0, d=d: f_and_g(x0 + t * d),
                d, LinePoint(0.0, f0, g0, g0.dot(d).item()), t0, **kw,
            )  # fmt: skip
            f_ref, g_ref, t_ref, n_ref = _strong_wolfe(
                lambda x, t, d: f_and_g(x + t * d), x0, t0, d, f0, g0, g0.dot(d), **kw
            )
            assert n == n_ref
            # Same decisions and evaluations. torch does the cubic on 0-dim tensors (float /
            # tensor rounds through a reciprocal), so t differs in the last bits, which the
            # cubic's cancellation can amplify to ~1e-13 when the bracket is narrow.
            assert point.t == pytest.approx(float(t_ref), rel=1e-10, abs=1e-14)
            assert point.f == pytest.approx(f_ref, rel=1e-10, abs=1e-10)
            torch.testing.assert_close(point.g, g_ref, rtol=1e-8, atol=1e-10)
