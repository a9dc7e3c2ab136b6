"""Constrained minimization of torch functions, with autograd derivatives.

``minimize(fun, x0, method=..., bounds=..., constraints=...)`` looks like
``scipy.optimize.minimize`` but ``fun`` and the constraint functions are written with torch:
gradients, constraint Jacobians and Hessian-vector products come from autograd (reverse mode;
H v = d(g'v)/dx by double backward, Pearlmutter 1994), so no finite differences and no
hand-written derivatives. Methods:

- scipy.optimize: "SLSQP" (bounds + equality/inequality constraints), "trust-constr" (bounds +
  constraints, exact Hessian-vector products of the Lagrangian), "L-BFGS-B" and "TNC"
  (bounds), "BFGS", "CG", "Newton-CG", "trust-ncg", "trust-krylov" (unconstrained);
- optimkit's "newton" (:class:`optimkit.optim.newton.Newton`: exact Hessian + Cholesky or
  Newton-CG, line search) and "lbfgs" (:class:`optimkit.optim.lbfgs.LBFGS`, strong Wolfe),
  unconstrained, run in torch.

The result is always a ``scipy.optimize.OptimizeResult``, with ``x`` (and ``jac``) in x0's
shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from scipy.optimize import (
    Bounds,
    LinearConstraint,
    NonlinearConstraint,
    OptimizeResult,
)
from scipy.optimize import minimize as scipy_minimize
from scipy.sparse.linalg import LinearOperator

from optimkit.solve._checks import as_bounds

CONSTRAINED = ("SLSQP", "trust-constr")
BOUNDED = ("L-BFGS-B", "TNC")
UNCONSTRAINED_SCIPY = ("BFGS", "CG", "Newton-CG", "trust-ncg", "trust-krylov")
TORCH_METHODS = ("newton", "lbfgs")
METHODS = CONSTRAINED + BOUNDED + UNCONSTRAINED_SCIPY + TORCH_METHODS
_HESSP = ("trust-constr", "Newton-CG", "trust-ncg", "trust-krylov")


class _TorchScalar:
    """f(x), grad f(x) and H(x) v of a torch function of a float64 vector (flat numpy in/out)."""

    def __init__(self, fun: Callable, shape: tuple[int, ...], args: tuple) -> None:
        self.fun, self.shape, self.args = fun, shape, args
        self._x: np.ndarray | None = None
        self._fg: tuple[float, np.ndarray] = (np.nan, np.empty(0))

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fun(x.reshape(self.shape), *self.args)
        if not isinstance(out, torch.Tensor) or out.numel() != 1:
            raise ValueError(
                "fun must return a scalar torch tensor computed from its argument, got "
                f"{type(out).__name__}{'' if not isinstance(out, torch.Tensor) else out.shape}"
            )
        return out.reshape(())

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        if self._x is None or not np.array_equal(x, self._x):
            xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
            f = self._call(xt)
            (g,) = torch.autograd.grad(f, xt, allow_unused=True)
            g = torch.zeros_like(xt) if g is None else g
            self._x = np.array(x, copy=True)
            self._fg = (float(f.detach()), g.detach().numpy().copy())
        return self._fg

    def hessp(self, x: np.ndarray, p: np.ndarray) -> np.ndarray:
        xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(self._call(xt), xt, create_graph=True)
        pt = torch.as_tensor(p, dtype=torch.float64)
        (hp,) = torch.autograd.grad(g @ pt, xt, allow_unused=True)
        return np.zeros_like(x) if hp is None else hp.detach().numpy().copy()


class _TorchVector:
    """c(x), its Jacobian and the Hessian of v'c(x) for a torch constraint function."""

    def __init__(self, fun: Callable, shape: tuple[int, ...], args: tuple, name: str) -> None:
        self.fun, self.shape, self.args, self.name = fun, shape, args, name

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fun(x.reshape(self.shape), *self.args)
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"{self.name}: the constraint function must return a torch tensor")
        return out.reshape(-1)

    def value(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self._call(torch.tensor(x, dtype=torch.float64)).numpy().copy()

    def jac(self, x: np.ndarray) -> np.ndarray:
        xt = torch.tensor(x, dtype=torch.float64)
        J = torch.autograd.functional.jacobian(self._call, xt)
        return J.reshape(-1, x.size).numpy().copy()

    def hess(self, x: np.ndarray, v: np.ndarray) -> LinearOperator:
        xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        vt = torch.as_tensor(v, dtype=torch.float64)
        grads = torch.autograd.grad(self._call(xt) @ vt, xt, create_graph=True, allow_unused=True)
        g = grads[0]

        def matvec(p: np.ndarray) -> np.ndarray:
            if g is None or not g.requires_grad:
                return np.zeros(x.size)
            pt = torch.as_tensor(np.ravel(p), dtype=torch.float64)
            (hp,) = torch.autograd.grad(g @ pt, xt, retain_graph=True, allow_unused=True)
            return np.zeros(x.size) if hp is None else hp.detach().numpy().copy()

        return LinearOperator((x.size, x.size), matvec=matvec, dtype=np.float64)


def _constraint_specs(constraints: Any, shape: tuple[int, ...], n: int) -> list:
    """Normalize constraints to [(_TorchVector, lb, ub)] and LinearConstraint objects."""
    if constraints is None:
        return []
    if isinstance(constraints, dict | NonlinearConstraint | LinearConstraint):
        constraints = [constraints]
    specs: list = []
    for i, con in enumerate(constraints):
        name = f"constraints[{i}]"
        if isinstance(con, LinearConstraint):
            if np.shape(con.A)[-1] != n:
                raise ValueError(f"{name}: LinearConstraint.A must have {n} columns")
            specs.append(con)
        elif isinstance(con, NonlinearConstraint):
            vec = _TorchVector(con.fun, shape, (), name)
            specs.append((vec, con.lb, con.ub))
        elif isinstance(con, dict):
            kind = con.get("type")
            if kind not in ("eq", "ineq") or not callable(con.get("fun")):
                raise ValueError(
                    f"{name}: expected {{'type': 'eq' or 'ineq', 'fun': callable}}, got {con!r}"
                )
            vec = _TorchVector(con["fun"], shape, tuple(con.get("args", ())), name)
            specs.append((vec, 0.0, 0.0 if kind == "eq" else np.inf))
        else:
            raise ValueError(
                f"{name}: expected a dict, NonlinearConstraint or LinearConstraint, "
                f"got {type(con).__name__}"
            )
    return specs


def _for_trust_constr(specs: list) -> list:
    out = []
    for s in specs:
        if isinstance(s, LinearConstraint):
            out.append(s)
        else:
            vec, lb, ub = s
            out.append(NonlinearConstraint(vec.value, lb, ub, jac=vec.jac, hess=vec.hess))
    return out


def _for_slsqp(specs: list, x0: np.ndarray) -> list:
    """Old-style dicts: c(x) - lb >= 0, ub - c(x) >= 0, c(x) - lb == 0 where lb == ub."""
    out: list = []
    for s in specs:
        if isinstance(s, LinearConstraint):
            out.append(s)
            continue
        vec, lb, ub = s
        m = vec.value(x0).size
        lb = np.broadcast_to(np.asarray(lb, dtype=np.float64), (m,))
        ub = np.broadcast_to(np.asarray(ub, dtype=np.float64), (m,))
        eq = lb == ub
        below = ~eq & np.isfinite(lb)
        above = ~eq & np.isfinite(ub)
        for mask, sign, ref, kind in (
            (eq, 1.0, lb, "eq"),
            (below, 1.0, lb, "ineq"),
            (above, -1.0, ub, "ineq"),
        ):
            if mask.any():
                out.append(
                    {
                        "type": kind,
                        "fun": lambda x, v=vec, k=mask, s=sign, r=ref: s * (v.value(x)[k] - r[k]),
                        "jac": lambda x, v=vec, k=mask, s=sign: s * v.jac(x)[k],
                    }
                )
    return out


def minimize(
    fun: Callable[..., torch.Tensor],
    x0: Any,
    *,
    method: str = "L-BFGS-B",
    args: tuple = (),
    bounds: Any = None,
    constraints: Any = None,
    tol: float | None = None,
    options: dict[str, Any] | None = None,
    callback: Callable | None = None,
) -> OptimizeResult:
    """Minimize ``fun(x, *args)`` (a torch scalar) over ``x`` of x0's shape, in float64.

    Args:
        fun: torch function of a float64 tensor shaped like ``x0``, returning a scalar tensor.
        x0: starting point (array-like or tensor, any shape).
        method: one of :data:`METHODS` (see the module docstring).
        bounds: per-element ``(low, high)`` pairs, one pair for all, an (n, 2) array or a
            ``scipy.optimize.Bounds`` (n = x0.size, flattened in C order); None = free.
        constraints: a dict ``{"type": "eq" | "ineq", "fun": torch_fn, "args": ()}``
            (scipy's convention: ineq means fun(x) >= 0), a ``NonlinearConstraint`` whose
            ``fun`` is a torch function (its jac/hess are ignored: autograd supplies them), a
            ``LinearConstraint``, or a list of these. SLSQP and trust-constr only.
        tol: tolerance, passed to scipy (for "newton" / "lbfgs": the gradient tolerance).
        options: method options (scipy's; for "newton" / "lbfgs" the optimizer's constructor
            arguments, with scipy's names ``maxiter`` and ``gtol`` also accepted).
        callback: passed to scipy (not supported by "newton" / "lbfgs").

    Returns:
        ``scipy.optimize.OptimizeResult`` (x, fun, jac, success, status, message, nit, nfev);
        ``x`` and the objective gradient (``jac``; ``grad`` for trust-constr) have x0's shape.
    """
    if not callable(fun):
        raise ValueError(f"fun must be callable, got {type(fun).__name__}")
    method = _method(method)
    x0t = torch.as_tensor(x0, dtype=torch.float64)
    if x0t.numel() == 0:
        raise ValueError("x0 must have at least one element")
    if not torch.isfinite(x0t).all():
        raise ValueError("x0 contains NaN or inf")
    shape, n = tuple(x0t.shape), x0t.numel()
    x0n = x0t.detach().reshape(-1).numpy().copy()
    specs = _constraint_specs(constraints, shape, n)
    if specs and method not in CONSTRAINED:
        raise ValueError(
            f"method {method!r} does not take constraints; use one of {', '.join(CONSTRAINED)}"
        )
    if bounds is not None and method not in CONSTRAINED + BOUNDED:
        raise ValueError(
            f"method {method!r} does not take bounds; use one of {', '.join(CONSTRAINED + BOUNDED)}"
        )
    options = dict(options or {})
    obj = _TorchScalar(fun, shape, tuple(args))
    if method in TORCH_METHODS:
        if callback is not None:
            raise ValueError(f"callback is not supported by method {method!r}")
        res = _torch_minimize(obj, x0t.reshape(-1).clone(), method, tol, options)
    else:
        kwargs: dict[str, Any] = {}
        if bounds is not None:
            low, high = as_bounds(bounds, n, (None, None))
            kwargs["bounds"] = Bounds(low, high)
        if specs:
            kwargs["constraints"] = (
                _for_trust_constr(specs) if method == "trust-constr" else _for_slsqp(specs, x0n)
            )
        if method in _HESSP:
            kwargs["hessp"] = obj.hessp
        res = scipy_minimize(
            obj.value_and_grad,
            x0n,
            method=method,
            jac=True,
            tol=tol,
            options=options,
            callback=callback,
            **kwargs,
        )
    res.x = np.asarray(res.x).reshape(shape)
    key = "grad" if method == "trust-constr" else "jac"  # trust-constr's jac: constraints'
    if isinstance(res.get(key), np.ndarray) and res[key].size == n:
        res[key] = res[key].reshape(shape)
    return res


def _method(method: str) -> str:
    for m in METHODS:
        if isinstance(method, str) and method.lower() == m.lower():
            return m
    raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")


def _torch_minimize(
    obj: _TorchScalar, x: torch.Tensor, method: str, tol: float | None, options: dict
) -> OptimizeResult:
    """Drive optimkit's Newton / LBFGS through their closure API (one ``step`` call)."""
    opts = dict(options)
    max_iter = int(opts.pop("maxiter", opts.pop("max_iter", 100 if method == "newton" else 1000)))
    gtol = opts.pop("gtol", opts.pop("tolerance_grad", tol if tol is not None else 1e-8))
    # Stop on the gradient, not on a small change in f (which L-BFGS sees long before f*).
    opts.setdefault("tolerance_change", 0.0 if method == "newton" else 1e-15)
    x.requires_grad_(True)
    opt: torch.optim.Optimizer
    try:
        if method == "newton":
            from optimkit.optim.newton import Newton

            opt = Newton([x], max_iter=max_iter, tolerance_grad=gtol, **opts)

            def closure() -> torch.Tensor:
                return obj._call(x)
        else:
            from optimkit.optim.lbfgs import LBFGS

            opts.setdefault("line_search_fn", "strong_wolfe")
            opts.setdefault("max_eval", max_iter * 5 // 4)
            opt = LBFGS([x], max_iter=max_iter, tolerance_grad=gtol, **opts)

            def closure() -> torch.Tensor:
                opt.zero_grad()
                f = obj._call(x)
                f.backward()
                return f
    except TypeError as exc:
        raise ValueError(f"options: {exc}") from None
    opt.step(closure)
    xf = x.detach().numpy().copy()
    f, g = obj.value_and_grad(xf)
    state = opt.state[x]
    nit = int(state.get("n_iter", 0))
    gnorm = float(np.max(np.abs(g))) if g.size else 0.0
    evals = int(state.get("func_evals", 0))
    max_eval = opt.param_groups[0].get("max_eval")
    if gnorm <= gtol:
        status, message = 0, f"max |gradient| {gnorm:.3g} <= gtol {gtol:g}"
    elif nit >= max_iter:
        status, message = 1, f"iteration limit {max_iter} reached (max |gradient| {gnorm:.3g})"
    elif max_eval is not None and evals >= max_eval:
        status, message = 1, f"evaluation limit {max_eval} reached (max |gradient| {gnorm:.3g})"
    else:
        status, message = 0, "stopped: change in x or f below tolerance_change"
    return OptimizeResult(
        x=xf,
        fun=f,
        jac=g,
        success=status == 0 and np.isfinite(f),
        status=status,
        message=message,
        nit=nit,
        nfev=evals,
    )
