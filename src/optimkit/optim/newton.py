"""`Newton`: full-batch Newton's method, exact (Cholesky) or Newton-CG, with a line search.

Iteration k (Nocedal & Wright, *Numerical Optimization*, 2nd ed., ch. 3.4, 6 and 7.1):

    solve  (H_k + tau_k I) d_k = -g_k        (exact: Cholesky, N&W Alg. 3.3)
       or  H_k d_k ~= -g_k                    (Newton-CG: truncated CG, N&W Alg. 7.1)
    x_{k+1} = x_k + t_k d_k                   (t_k from backtracking Armijo or strong Wolfe)

Exact mode forms the Hessian of the flattened parameters, H = d(grad f)/dx, row block by row
block as vector-Jacobian products of the gradient (computed with create_graph=True). Cholesky
with added multiple of the identity (N&W Alg. 3.3): tau = 0 when H is positive definite, else
tau starts at beta - min_i H_ii (beta = damping * max_i |H_ii|) and doubles until H + tau I
factors, a Levenberg-style step between Newton (tau -> 0) and gradient descent (tau -> inf).
Near a minimizer with positive definite Hessian tau = 0 and t = 1 are accepted, so
convergence is quadratic (N&W Thm. 3.5).

Newton-CG never forms H: CG on H d = -g uses Hessian-vector products H v = d(g'v)/dx, stops
when ||H d + g|| <= eta_k ||g|| with the forcing term eta_k = min(cg_tol, sqrt(||g||))
(superlinear convergence, N&W Thm. 7.2), and on a direction of non-positive curvature returns
the current iterate (or -g on the first CG step), which is always a descent direction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from optimkit.optim.lbfgs import (
    LinePoint,
    _CopyingStateDict,
    as_float_lr,
    check_choice,
    check_nonneg,
    check_positive,
    check_single_group,
    split_like,
    strong_wolfe,
)
from optimkit.optim.spec import Hyperparameter, OptimizerSpec

HESSIAN_MODES = ("auto", "exact", "cg")
LINE_SEARCH_FNS = (None, "backtracking", "strong_wolfe")
ARMIJO_C1 = 1e-4  # sufficient-decrease constant of both line searches
BACKTRACK_FACTOR = 0.5
MAX_BACKTRACKS = 50
# Armijo is tested up to ROUNDING_SLACK * eps * |f|: near the optimum the decrease of a Newton
# step falls below the loss's rounding error, and refusing those steps would stall Newton.
ROUNDING_SLACK = 64
MAX_DAMPING_TRIES = 100
HESSIAN_CHUNK = 64  # rows of the exact Hessian per batched vector-Jacobian product (measured)


def _flatten(parts: Sequence[Tensor | None], params: Sequence[Tensor], lead: int = 0) -> Tensor:
    """Concatenate per-parameter tensors (None = zeros) along the last, flattened dim."""
    shape = (lead,) if lead else ()
    views = [
        torch.zeros(*shape, p.numel(), dtype=p.dtype, device=p.device)
        if x is None
        else x.reshape(*shape, -1)
        for x, p in zip(parts, params, strict=True)
    ]
    return torch.cat(views, dim=-1)


def damped_cholesky(H: Tensor, damping: float) -> tuple[Tensor | None, float]:
    """Cholesky factor of H + tau I with the smallest tried tau >= 0 (N&W Alg. 3.3).

    Returns (L, tau), or (None, tau) when no tau up to the try limit works (non-finite H).
    """
    diag = H.diagonal()
    scale = diag.abs().max().item()
    beta = damping * scale if scale > 0 else damping
    min_diag = diag.min().item()
    tau = 0.0 if min_diag > 0 else beta - min_diag
    eye = torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
    for _ in range(MAX_DAMPING_TRIES):
        L, info = torch.linalg.cholesky_ex(H + tau * eye if tau else H)
        if info.item() == 0:
            return L, tau
        tau = max(2.0 * tau, beta)
    return None, tau


def truncated_cg(
    hvp: Callable[[Tensor], Tensor], g: Tensor, cg_tol: float, max_iter: int
) -> tuple[Tensor, int]:
    """Approximate solution d of H d = -g by CG (N&W Alg. 7.1, inner loop).

    Stops when ||H d + g|| <= min(cg_tol, sqrt(||g||)) ||g||, after ``max_iter`` products, or on
    non-positive curvature p'Hp <= 0 (then returns the current d, or -g on the first step).
    Returns d and the number of Hessian-vector products.
    """
    g_norm = g.norm().item()
    tol = min(cg_tol, math.sqrt(g_norm)) * g_norm
    z = torch.zeros_like(g)
    r = g.clone()
    p = g.neg()
    rr = r.dot(r)
    for j in range(max_iter):
        Hp = hvp(p)
        curvature = p.dot(Hp)
        if not curvature.item() > 0:
            return (g.neg() if j == 0 else z), j + 1
        alpha = rr / curvature
        z.add_(alpha * p)
        r.add_(alpha * Hp)
        rr_new = r.dot(r)
        if rr_new.sqrt().item() <= tol:
            return z, j + 1
        p.mul_(rr_new / rr).sub_(r)  # p <- -r + beta p
        rr = rr_new
    return z, max_iter


class Newton(_CopyingStateDict, torch.optim.Optimizer):
    """Newton's method (exact Hessian + Cholesky, or Newton-CG) with a line search.

    ``step(closure)`` runs up to ``max_iter`` Newton iterations. The closure must recompute
    the loss from the current parameter values with autograd enabled and **return it without
    calling backward()**: Newton differentiates the returned loss itself, twice (gradient with
    ``create_graph=True``, then Hessian rows or Hessian-vector products). It is called with
    grad enabled; zeroing ``.grad`` is unnecessary (``.grad`` is neither read nor written).
    Example: ``opt.step(lambda: loss_fn(model(X), y))``.

    Args:
        params: the tensors to optimize (any number and shapes, float32/float64, one group).
        lr: initial trial step of the line search (the step itself with ``line_search_fn=None``).
            Default 1 (the Newton step).
        max_iter: Newton iterations per ``step``. Default 20.
        tolerance_grad: stop when max_i |g_i| <= tolerance_grad. Default 1e-7.
        tolerance_change: stop when max_i |t d_i| or |f_{k+1} - f_k| falls below it, or the
            slope g'd > -tolerance_change. Default 1e-9.
        hessian: "exact" (form H, Cholesky with damping), "cg" (Newton-CG with Hessian-vector
            products) or "auto" (exact when there are at most ``max_exact_size`` parameters).
        max_exact_size: size threshold of ``hessian="auto"``. Default 256: the exact Hessian
            costs n Hessian-vector products (batched) per iteration, CG usually far fewer.
        cg_tol: cap of the CG forcing term eta_k = min(cg_tol, sqrt(||g||)). Default 0.5.
        cg_max_iter: Hessian-vector products per CG solve. Default: the number of parameters.
        damping: beta of N&W Alg. 3.3 relative to max_i |H_ii| (the first tau tried when H is
            not positive definite). Default 1e-3.
        line_search_fn: "backtracking" (Armijo, c1 = 1e-4, halving, N&W Alg. 3.1; a decrease
            within 64 eps |f| of rounding counts as sufficient), "strong_wolfe"
            (c1 = 1e-4, c2 = 0.9, as LBFGS) or None (fixed step lr). Default "backtracking".

    State: ``n_iter``, ``func_evals``, ``damping`` (tau of the last exact step), ``n_damped``
    (exact steps that needed tau > 0), ``cg_iters`` (products in the last CG solve).
    """

    spec = OptimizerSpec(
        name="newton",
        summary="Newton's method: exact Hessian (Cholesky) or Newton-CG, with a line search",
        reference="scipy.optimize.minimize",
        package="scipy",
        family="second-order",
        closure=True,
        population=False,
        tolerance=1e-8,
        tolerance_reason="compared at the optimum with scipy's Newton-CG and closed forms",
        hyperparameters=(
            Hyperparameter(
                "lr", 1.0, "initial trial step of the line search", low=0.0, low_open=True
            ),
            Hyperparameter("max_iter", 20, "Newton iterations per step()", kind="int", low=1),
            Hyperparameter("tolerance_grad", 1e-7, "stop when max |g| <= it", low=0.0),
            Hyperparameter("tolerance_change", 1e-9, "stop on smaller steps or changes", low=0.0),
            Hyperparameter(
                "hessian", "auto", "exact, cg or auto", kind="choice", choices=HESSIAN_MODES
            ),
            Hyperparameter(
                "max_exact_size", 256, "size limit of hessian='auto'", kind="int", low=0
            ),
            Hyperparameter(
                "cg_tol",
                0.5,
                "cap of the CG forcing term",
                low=0.0,
                high=1.0,
                low_open=True,
                high_open=True,
            ),
            Hyperparameter(
                "cg_max_iter",
                None,
                "Hessian-vector products per CG solve",
                kind="int",
                low=1,
                nullable=True,
            ),
            Hyperparameter(
                "damping", 1e-3, "initial damping relative to max |H_ii|", low=0.0, low_open=True
            ),
            Hyperparameter(
                "line_search_fn",
                "backtracking",
                "backtracking, strong_wolfe or None",
                kind="choice",
                choices=LINE_SEARCH_FNS,
                nullable=True,
            ),
        ),
        paper="Nocedal & Wright, Numerical Optimization (2006), ch. 3 and 7",
    )

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1,
        max_iter: int = 20,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        hessian: str = "auto",
        max_exact_size: int = 256,
        cg_tol: float = 0.5,
        cg_max_iter: int | None = None,
        damping: float = 1e-3,
        line_search_fn: str | None = "backtracking",
    ) -> None:
        lr = as_float_lr(lr)
        check_positive("max_iter", max_iter, int)
        check_nonneg("tolerance_grad", tolerance_grad)
        check_nonneg("tolerance_change", tolerance_change)
        check_choice("hessian", hessian, HESSIAN_MODES)
        if isinstance(max_exact_size, bool) or not isinstance(max_exact_size, int):
            raise ValueError(f"max_exact_size: expected an int >= 0, got {max_exact_size!r}")
        check_nonneg("max_exact_size", max_exact_size)
        if isinstance(cg_tol, bool) or not isinstance(cg_tol, int | float) or not 0 < cg_tol < 1:
            raise ValueError(f"cg_tol: expected a number in (0, 1), got {cg_tol!r}")
        if cg_max_iter is not None:
            check_positive("cg_max_iter", cg_max_iter, int)
        check_positive("damping", damping)
        check_choice("line_search_fn", line_search_fn, LINE_SEARCH_FNS)
        defaults = {
            "lr": lr,
            "max_iter": max_iter,
            "tolerance_grad": tolerance_grad,
            "tolerance_change": tolerance_change,
            "hessian": hessian,
            "max_exact_size": max_exact_size,
            "cg_tol": cg_tol,
            "cg_max_iter": cg_max_iter,
            "damping": damping,
            "line_search_fn": line_search_fn,
        }
        super().__init__(params, defaults)
        self._params = check_single_group(self, "Newton")

    # -- autograd helpers (all called with grad enabled) ----------------------------------------

    def _evaluate(self, closure: Callable[[], Any]) -> Tensor:
        with torch.enable_grad():
            loss = closure()
        if not isinstance(loss, Tensor) or loss.numel() != 1 or not loss.requires_grad:
            raise ValueError(
                "closure: expected it to return the scalar loss as a tensor computed from the "
                f"parameters with autograd enabled, got {type(loss).__name__}"
            )
        state = self.state[self._params[0]]
        state["func_evals"] += 1
        return loss

    def _grad(self, loss: Tensor, create_graph: bool) -> Tensor:
        try:
            with torch.enable_grad():
                grads = torch.autograd.grad(
                    loss, self._params, create_graph=create_graph, allow_unused=True
                )
                return _flatten(grads, self._params)  # inside enable_grad: keeps the graph
        except RuntimeError as err:
            if "second time" in str(err):
                raise ValueError(
                    "closure: Newton differentiates the returned loss itself; the closure must "
                    "return the loss without calling backward()"
                ) from err
            raise

    def _vjp(self, g: Tensor, v: Tensor, batched: bool) -> Tensor:
        """v' dg/dx for v of shape [n] (or [b, n] with batched=True); zeros if g is constant."""
        lead = v.shape[0] if batched else 0
        if not g.requires_grad:
            return torch.zeros_like(v)
        with torch.enable_grad():
            parts = torch.autograd.grad(
                g, self._params, v, retain_graph=True, allow_unused=True, is_grads_batched=batched
            )
        return _flatten(parts, self._params, lead)

    def _hessian(self, g: Tensor) -> Tensor:
        n = g.numel()
        eye = torch.eye(n, dtype=g.dtype, device=g.device)
        rows = []
        for block in eye.split(HESSIAN_CHUNK):
            try:
                rows.append(self._vjp(g, block, batched=True))
            except RuntimeError:  # an op without a vmap rule: one product per row
                rows.append(torch.stack([self._vjp(g, e, batched=False) for e in block]))
        H = torch.cat(rows)
        return 0.5 * (H + H.T)

    # -- direction ------------------------------------------------------------------------------

    def _direction(self, g: Tensor, group: dict[str, Any], state: dict[str, Any]) -> Tensor:
        gd = g.detach()
        n = gd.numel()
        mode = group["hessian"]
        if mode == "auto":
            mode = "exact" if n <= group["max_exact_size"] else "cg"
        if mode == "exact":
            L, tau = damped_cholesky(self._hessian(g), group["damping"])
            state["damping"] = tau
            state["n_damped"] += int(tau > 0)
            if L is None:
                return gd.neg()
            return torch.cholesky_solve(gd.neg().unsqueeze(1), L).squeeze(1)
        max_iter = group["cg_max_iter"] or n
        d, iters = truncated_cg(
            lambda v: self._vjp(g, v, batched=False), gd, group["cg_tol"], max_iter
        )
        state["cg_iters"] = iters
        return d

    # -- step -----------------------------------------------------------------------------------

    def _set(self, x0: Sequence[Tensor], d_parts: Sequence[Tensor], t: float) -> None:
        for p, xp, dp in zip(self._params, x0, d_parts, strict=True):
            torch.add(xp, dp, alpha=t, out=p)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any]) -> Tensor:  # type: ignore[override]
        """Run up to ``max_iter`` Newton iterations; returns the first loss (detached)."""
        group = self.param_groups[0]
        lr, max_iter = group["lr"], group["max_iter"]
        tol_grad, tol_change = group["tolerance_grad"], group["tolerance_change"]
        line_search_fn = group["line_search_fn"]
        params = self._params
        state = self.state[params[0]]
        for key in ("n_iter", "func_evals", "n_damped", "cg_iters"):
            state.setdefault(key, 0)
        state.setdefault("damping", 0.0)

        first = self._evaluate(closure)
        orig_loss = first.detach()
        loss_t: Tensor | None = first
        loss = float(orig_loss)
        n_iter = 0
        while n_iter < max_iter:
            if loss_t is None:
                loss_t = self._evaluate(closure)
                loss = float(loss_t)
            g = self._grad(loss_t, create_graph=True)
            gd = g.detach()
            if gd.abs().max().item() <= tol_grad:
                break
            n_iter += 1
            state["n_iter"] += 1

            d = self._direction(g, group, state)
            del g, loss_t  # free the double-backward graph before the line search
            loss_t = None
            gtd = gd.dot(d).item()
            if not gtd < -tol_change:
                break
            prev_loss = loss
            x0 = [p.clone() for p in params]
            d_parts = split_like(d, params)

            if line_search_fn == "backtracking":
                t = lr
                slack = ROUNDING_SLACK * torch.finfo(gd.dtype).eps * abs(prev_loss)
                for _ in range(MAX_BACKTRACKS):
                    self._set(x0, d_parts, t)
                    loss_t = self._evaluate(closure)
                    loss = float(loss_t)
                    if loss <= prev_loss + ARMIJO_C1 * t * gtd + slack:
                        break
                    t *= BACKTRACK_FACTOR
                else:  # no sufficient decrease found: stay at x_k
                    for p, xp in zip(params, x0, strict=True):
                        p.copy_(xp)
                    loss_t = None
                    break
            elif line_search_fn == "strong_wolfe":

                def at(step: float, x0: list[Tensor] = x0, d_parts: list[Tensor] = d_parts):
                    self._set(x0, d_parts, step)
                    loss_s = self._evaluate(closure)
                    return float(loss_s), self._grad(loss_s, create_graph=False)

                point, _ = strong_wolfe(at, d, LinePoint(0.0, prev_loss, gd, gtd), lr)
                t, loss = point.t, point.f
                self._set(x0, d_parts, t)
                if point.g.abs().max().item() <= tol_grad:
                    break
            else:
                t = lr
                self._set(x0, d_parts, t)
                if n_iter == max_iter:
                    break
                loss_t = self._evaluate(closure)
                loss = float(loss_t)

            if abs(t) * d.abs().max().item() <= tol_change or abs(loss - prev_loss) < tol_change:
                break
        return orig_loss
