"""`LBFGS`: limited-memory BFGS with torch.optim.LBFGS's closure API, defaults and iterates.

Iteration k (Nocedal & Wright, *Numerical Optimization*, 2nd ed., Alg. 7.5):

    d_k     = -H_k g_k                        (H_k from the last m pairs, two-loop recursion)
    x_{k+1} = x_k + t_k d_k                   (t_k = lr, or a strong-Wolfe line search)
    s_k = x_{k+1} - x_k,  y_k = g_{k+1} - g_k   (stored when y_k's_k > 1e-10)

H_k is the BFGS inverse-Hessian update applied m times to H0 = gamma I, gamma = s'y / y'y of
the newest pair. The two-loop recursion (N&W Alg. 7.4) is evaluated in matrix form: with the
pairs as rows of S, Y (oldest first) and R the upper triangle of S Y' (R_ij = s_i'y_j, i <= j),

    alpha = R^{-1} S v,   q = v - Y' alpha,   r = gamma q,
    c = R^{-T} (diag(R) alpha - Y r),   H v = r + S' c,

which is the same recursion (alpha_i and alpha_i - beta_i of Alg. 7.4 solve those triangular
systems by back/forward substitution) in a handful of matrix-vector products instead of 4m
vector operations. S and Y are ring buffers; R is kept up to date with one product per pair.

The first iteration's step is min(1, 1/|g|_1) * lr, the strong-Wolfe line search and all the
stopping rules follow torch.optim.LBFGS (itself a port of minFunc), so both produce the same
iterates up to rounding. Reference: D. C. Liu and J. Nocedal (1989), On the limited memory BFGS
method for large scale optimization, Math. Programming 45.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from optimkit.optim.spec import Hyperparameter, OptimizerSpec

LINE_SEARCH_FNS = (None, "strong_wolfe")
CURVATURE_EPS = 1e-10  # a pair is stored only when y's > CURVATURE_EPS (as torch)


# ---------------------------------------------------------------------------------------------
# strong-Wolfe line search (N&W Alg. 3.5 + 3.6, decisions as in minFunc / torch.optim.LBFGS)


def cubic_minimizer(
    t1: float, f1: float, g1: float, t2: float, f2: float, g2: float, lo: float, hi: float
) -> float:
    """Minimizer of the cubic matching f and f' at t1 and t2, clamped to [lo, hi].

    N&W eq. (3.59), anchored at the larger of the two points b (a the other one):
    d1 = g_a + g_b - 3 (f_a - f_b)/(a - b),  d2 = sqrt(d1^2 - g_a g_b),
    t = b - (b - a) (g_b + d2 - d1) / (g_b - g_a + 2 d2).
    Divisions follow IEEE rules (x/0 = +-inf), so a cubic degenerating to a line sends t to a
    bound. Without a real minimizer (d1^2 < g_a g_b, or NaN) the midpoint of [lo, hi] is returned.
    """
    d1 = g1 + g2 - 3 * _div(f1 - f2, t1 - t2)
    disc = d1 * d1 - g1 * g2
    if not disc >= 0:
        return (lo + hi) / 2.0
    d2 = math.sqrt(disc)
    if t1 <= t2:
        t = t2 - (t2 - t1) * _div(g2 + d2 - d1, g2 - g1 + 2 * d2)
    else:
        t = t1 - (t1 - t2) * _div(g1 + d2 - d1, g1 - g2 + 2 * d2)
    if math.isnan(t):
        return (lo + hi) / 2.0
    return min(max(t, lo), hi)


def _div(a: float, b: float) -> float:
    """a / b with IEEE semantics for b = 0 (+-inf, or NaN for 0/0) instead of an exception."""
    if b != 0:
        return a / b
    if a == 0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


@dataclass
class LinePoint:
    """A trial point of a line search: step t, loss f, flat gradient g and slope g'd."""

    t: float
    f: float
    g: Tensor
    gtd: float


def strong_wolfe(
    evaluate: Callable[[float], tuple[float, Tensor]],
    d: Tensor,
    start: LinePoint,
    t: float,
    *,
    c1: float = 1e-4,
    c2: float = 0.9,
    tolerance_change: float = 1e-9,
    max_ls: int = 25,
    d_max: float | None = None,
) -> tuple[LinePoint, int]:
    """Find t with f(t) <= f(0) + c1 t f'(0) and |f'(t)| <= c2 |f'(0)| (strong Wolfe).

    ``evaluate(t)`` returns the loss and the flat gradient at x + t d; ``start`` is the point
    t = 0. Phase 1 (N&W Alg. 3.5) grows t by cubic extrapolation in [t + 0.01 (t - t_prev),
    10 t] until an interval containing a Wolfe point is bracketed; phase 2 (N&W Alg. 3.6, "zoom")
    shrinks it by safeguarded cubic interpolation. At most ``max_ls`` evaluations after the
    first; ``d_max`` = max_i |d_i| if already known. Returns the chosen point (the lowest one
    seen in the final bracket) and the number of evaluations.
    """
    if d_max is None:
        d_max = d.abs().max().item()
    f0, gtd0 = start.f, start.gtd

    def trial(step: float) -> LinePoint:
        f, g = evaluate(step)
        return LinePoint(step, f, g, g.dot(d).item())

    def armijo_fails(p: LinePoint) -> bool:
        return p.f > f0 + c1 * p.t * gtd0

    def curvature_holds(p: LinePoint) -> bool:
        return abs(p.gtd) <= -c2 * gtd0

    # Phase 1: bracketing.
    prev, new = start, trial(t)
    n_evals, ls_iter = 1, 0
    bracket: list[LinePoint] | None = None
    while ls_iter < max_ls:
        if armijo_fails(new) or (ls_iter > 1 and new.f >= prev.f):
            bracket = [prev, new]  # a Wolfe point lies between: loss went up
            break
        if curvature_holds(new):
            return new, n_evals
        if new.gtd >= 0:
            bracket = [prev, new]  # a Wolfe point lies between: slope changed sign
            break
        lo, hi = new.t + 0.01 * (new.t - prev.t), new.t * 10
        step = cubic_minimizer(prev.t, prev.f, prev.gtd, new.t, new.f, new.gtd, lo, hi)
        prev, new = new, trial(step)
        n_evals += 1
        ls_iter += 1
    if bracket is None:  # evaluation budget spent while extrapolating
        return (start if start.f <= new.f else new), n_evals

    # Phase 2: zoom. `low` indexes the bracket end with the lower loss.
    low = 0 if bracket[0].f <= bracket[1].f else 1
    insufficient_progress = False
    while ls_iter < max_ls:
        a, b = bracket
        if abs(b.t - a.t) * d_max < tolerance_change:
            break
        left, right = min(a.t, b.t), max(a.t, b.t)
        step = cubic_minimizer(a.t, a.f, a.gtd, b.t, b.f, b.gtd, left, right)
        # Safeguard: keep steps at least 10% of the interval away from its ends when the
        # interpolant sits on an end or hugged an end in the previous round too.
        margin = 0.1 * (right - left)
        if min(right - step, step - left) < margin:
            if insufficient_progress or step >= right or step <= left:
                step = right - margin if abs(step - right) < abs(step - left) else left + margin
                insufficient_progress = False
            else:
                insufficient_progress = True
        else:
            insufficient_progress = False

        new = trial(step)
        n_evals += 1
        ls_iter += 1
        lowest = bracket[low]
        if armijo_fails(new) or new.f >= lowest.f:
            bracket[1 - low] = new
            low = 0 if bracket[0].f <= bracket[1].f else 1
            continue
        if curvature_holds(new):
            bracket[low] = new
            break
        if new.gtd * (bracket[1 - low].t - lowest.t) >= 0:
            bracket[1 - low] = lowest
        bracket[low] = new
    return bracket[low], n_evals


# ---------------------------------------------------------------------------------------------
# helpers shared with Newton


def check_single_group(optimizer: torch.optim.Optimizer, name: str) -> list[Tensor]:
    """The parameters of the only group; ValueError for several groups or non-real params."""
    if len(optimizer.param_groups) != 1:
        raise ValueError(
            f"params: {name} supports a single parameter group (no per-parameter options), "
            f"got {len(optimizer.param_groups)} groups"
        )
    params = optimizer.param_groups[0]["params"]
    for p in params:
        if not p.is_floating_point():
            raise ValueError(f"params: {name} expects real floating-point tensors, got {p.dtype}")
    return params


def check_positive(name: str, value: Any, kind: type = float) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
    if kind is int:
        ok = ok and isinstance(value, int)
    if not ok:
        expected = "a positive int" if kind is int else "a positive number"
        raise ValueError(f"{name}: expected {expected}, got {value!r}")


def check_nonneg(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{name}: expected a number >= 0, got {value!r}")


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name}: expected one of {valid}, got {value!r}")


def as_float_lr(lr: float | Tensor) -> float:
    if isinstance(lr, Tensor):
        if lr.numel() != 1:
            raise ValueError(f"lr: expected a number or a 1-element tensor, got shape {lr.shape}")
        lr = lr.item()
    check_positive("lr", lr)
    return float(lr)


def flat_grad(params: Sequence[Tensor]) -> Tensor:
    """The parameters' .grad concatenated into a new flat vector (missing grads are zeros)."""
    views = []
    for p in params:
        g = p.grad
        if g is None:
            views.append(torch.zeros(p.numel(), dtype=p.dtype, device=p.device))
        else:
            views.append((g.to_dense() if g.is_sparse else g).reshape(-1))
    return torch.cat(views)


def split_like(flat: Tensor, params: Sequence[Tensor]) -> list[Tensor]:
    """Views of a flat vector shaped like each parameter."""
    chunks = flat.split([p.numel() for p in params])
    return [c.view_as(p) for c, p in zip(chunks, params, strict=True)]


class _CopyingStateDict:
    """state_dict() and load_state_dict() that copy, so neither side aliases the other."""

    def state_dict(self) -> dict[str, Any]:
        return copy.deepcopy(super().state_dict())  # type: ignore[misc]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(copy.deepcopy(state_dict))  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# L-BFGS


def two_loop(
    v: Tensor, S: Tensor, Y: Tensor, R: Tensor, head: int, num: int, gamma: float
) -> Tensor:
    """H v for the L-BFGS inverse Hessian (N&W Alg. 7.4 in matrix form, see module docstring).

    S, Y: [m, n] ring buffers whose first ``num`` rows hold the pairs, the oldest in row
    ``head``; R: [m, m] upper triangle of S Y' in chronological order; gamma: H0 = gamma I.
    """
    if num == 0:
        return v * gamma
    if num < S.shape[0]:
        S, Y, R = S[:num], Y[:num], R[:num, :num]

    def chrono(x: Tensor) -> Tensor:  # storage order -> oldest first
        return torch.roll(x, -head) if head else x

    def storage(x: Tensor) -> Tensor:  # oldest first -> storage order
        return torch.roll(x, head) if head else x

    alpha = torch.linalg.solve_triangular(R, chrono(S @ v).unsqueeze(1), upper=True).squeeze(1)
    r = torch.addmv(v, Y.T, storage(alpha), alpha=-1).mul_(gamma)
    rhs = R.diagonal() * alpha - chrono(Y @ r)
    c = torch.linalg.solve_triangular(R.T, rhs.unsqueeze(1), upper=False).squeeze(1)
    return torch.addmv(r, S.T, storage(c))


class LBFGS(_CopyingStateDict, torch.optim.Optimizer):
    """L-BFGS, a drop-in for torch.optim.LBFGS (same arguments, defaults and iterates).

    One model per optimizer (no member axis: the line search and the two-loop recursion
    couple every coordinate); a population is K optimizers.

    ``step(closure)`` runs up to ``max_iter`` iterations; ``closure`` must zero the gradients,
    recompute the loss, call ``backward()`` and return the loss (it is called with grad enabled).

    Args:
        params: the tensors to optimize (any number and shapes, float32/float64, one group).
        lr: step length (the initial trial step of the line search). Default 1.
        max_iter: iterations per ``step``. Default 20.
        max_eval: closure evaluations per ``step``. Default ``max_iter * 5 // 4``.
        tolerance_grad: stop when max_i |g_i| <= tolerance_grad. Default 1e-7.
        tolerance_change: stop when max_i |t d_i| or |f_{k+1} - f_k| falls below it.
            Default 1e-9.
        history_size: number m of stored (s, y) pairs. Default 100. Memory: 2 m n numbers.
        line_search_fn: None (fixed step lr) or "strong_wolfe" (c1 = 1e-4, c2 = 0.9, bracket
            tolerance 1e-9, as torch).

    State (a state_dict round trip resumes exactly): ``n_iter``, ``func_evals``, the last
    direction ``d`` and step ``t``, ``prev_flat_grad``, ``prev_loss``, the ring buffers ``S``,
    ``Y``, ``R`` with ``head``/``num``, and ``H_diag`` (gamma).
    """

    spec = OptimizerSpec(
        name="lbfgs",
        summary="limited-memory BFGS with an optional strong-Wolfe line search",
        reference="torch.optim.LBFGS",
        family="second-order",
        closure=True,
        population=False,
        tolerance=1e-10,
        tolerance_reason="the two-loop recursion runs in matrix form (measured 6e-12 after 40 "
        "iterations of a tanh network)",
        hyperparameters=(
            Hyperparameter("lr", 1.0, "step length (initial trial step)", low=0.0, low_open=True),
            Hyperparameter("max_iter", 20, "iterations per step()", kind="int", low=1),
            Hyperparameter(
                "max_eval", None, "closure evaluations per step()", kind="int", low=1, nullable=True
            ),
            Hyperparameter("tolerance_grad", 1e-7, "stop when max |g| <= it", low=0.0),
            Hyperparameter("tolerance_change", 1e-9, "stop on smaller steps or changes", low=0.0),
            Hyperparameter("history_size", 100, "stored (s, y) pairs", kind="int", low=1),
            Hyperparameter(
                "line_search_fn",
                None,
                "None or 'strong_wolfe'",
                kind="choice",
                choices=LINE_SEARCH_FNS,
                nullable=True,
            ),
        ),
        paper="Liu & Nocedal (1989)",
    )

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = None,
    ) -> None:
        lr = as_float_lr(lr)
        check_positive("max_iter", max_iter, int)
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        check_positive("max_eval", max_eval, int)
        check_nonneg("tolerance_grad", tolerance_grad)
        check_nonneg("tolerance_change", tolerance_change)
        check_positive("history_size", history_size, int)
        check_choice("line_search_fn", line_search_fn, LINE_SEARCH_FNS)
        defaults = {
            "lr": lr,
            "max_iter": max_iter,
            "max_eval": max_eval,
            "tolerance_grad": tolerance_grad,
            "tolerance_change": tolerance_change,
            "history_size": history_size,
            "line_search_fn": line_search_fn,
        }
        super().__init__(params, defaults)
        self._params = check_single_group(self, "LBFGS")

    def _add_step(self, t: float, d: Tensor) -> None:
        for p, dp in zip(self._params, split_like(d, self._params), strict=True):
            p.add_(dp, alpha=t)

    def _store_pair(self, state: dict[str, Any], s: Tensor, y: Tensor, ys: float, m: int) -> None:
        """Append (s, y) to the ring buffers, dropping the oldest pair when m are stored."""
        if state.get("S") is None:
            n = s.numel()
            state["S"] = s.new_zeros(m, n)
            state["Y"] = s.new_zeros(m, n)
            state["R"] = s.new_zeros(m, m)
            state["head"], state["num"] = 0, 0
        S, Y, R = state["S"], state["Y"], state["R"]
        m, num, head = S.shape[0], state["num"], state["head"]
        if num < m:
            slot, num = num, num + 1
        else:  # full: overwrite the oldest slot, shift R up-left by one
            slot, head = head, (head + 1) % m
            R[:-1, :-1] = R[1:, 1:].clone()
        S[slot] = s
        Y[slot] = y
        col = (S if num == m else S[:num]) @ y  # s_i'y_new in storage order
        R[:num, num - 1] = torch.roll(col, -head) if head else col
        R[num - 1, num - 1] = ys
        state["head"], state["num"] = head, num

    @torch.no_grad()
    def step(self, closure: Callable[[], Any]) -> Any:  # type: ignore[override]
        """Run up to ``max_iter`` L-BFGS iterations; returns the closure's first loss."""
        group = self.param_groups[0]
        lr, max_iter, max_eval = group["lr"], group["max_iter"], group["max_eval"]
        tol_grad, tol_change = group["tolerance_grad"], group["tolerance_change"]
        line_search_fn, m = group["line_search_fn"], group["history_size"]
        params = self._params

        def evaluate() -> tuple[Any, Tensor]:
            with torch.enable_grad():
                loss = closure()
            return loss, flat_grad(params)

        state = self.state[params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss, g = evaluate()
        loss = float(orig_loss)
        evals = 1
        state["func_evals"] += 1
        if g.abs().max().item() <= tol_grad:
            return orig_loss

        d, t = state.get("d"), state.get("t")
        prev_g, prev_loss = state.get("prev_flat_grad"), state.get("prev_loss")
        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            first = state["n_iter"] == 1

            # Direction d = -H g.
            if first:
                d = g.neg()
                state["S"] = state["Y"] = state["R"] = None
                state["H_diag"] = 1.0
            else:
                y = g.sub(prev_g)
                s = d.mul(t)
                ys = y.dot(s).item()
                if ys > CURVATURE_EPS:
                    self._store_pair(state, s, y, ys, m)
                    state["H_diag"] = ys / y.dot(y).item()
                if state["S"] is None:
                    d = g.neg().mul_(state["H_diag"])
                else:
                    d = two_loop(
                        g.neg(), state["S"], state["Y"], state["R"], state["head"],
                        state["num"], state["H_diag"],
                    )  # fmt: skip
            if prev_g is None:
                prev_g = g.clone()
            else:
                prev_g.copy_(g)
            prev_loss = loss

            # Step length.
            t = min(1.0, 1.0 / g.abs().sum().item()) * lr if first else lr
            gtd = g.dot(d).item()
            if gtd > -tol_change:
                break

            if line_search_fn == "strong_wolfe":
                x0 = [p.clone() for p in params]
                d_parts = split_like(d, params)

                last_step = [math.nan]

                def at(
                    step: float, x0: list[Tensor] = x0, d_parts: list[Tensor] = d_parts,
                    last_step: list[float] = last_step,
                ) -> tuple[float, Tensor]:  # fmt: skip
                    for p, xp, dp in zip(params, x0, d_parts, strict=True):
                        torch.add(xp, dp, alpha=step, out=p)
                    last_step[0] = step
                    loss_t, g_t = evaluate()
                    return float(loss_t), g_t

                d_max = d.abs().max().item()
                point, ls_evals = strong_wolfe(
                    at, d, LinePoint(0.0, loss, g, gtd), t, max_ls=max_eval - evals, d_max=d_max
                )
                loss, g, t = point.f, point.g, point.t
                if t != last_step[0]:  # else the parameters already are x0 + t d
                    for p, xp, dp in zip(params, x0, d_parts, strict=True):
                        torch.add(xp, dp, alpha=t, out=p)
                opt_cond = g.abs().max().item() <= tol_grad
            else:
                self._add_step(t, d)
                d_max = None
                ls_evals = 0
                opt_cond = False
                if n_iter != max_iter:
                    loss_t, g = evaluate()
                    loss = float(loss_t)
                    opt_cond = g.abs().max().item() <= tol_grad
                    ls_evals = 1
            evals += ls_evals
            state["func_evals"] += ls_evals

            # Stopping rules.
            if n_iter == max_iter or evals >= max_eval or opt_cond:
                break
            if d_max is None:
                d_max = d.abs().max().item()
            if abs(t) * d_max <= tol_change:
                break
            if abs(loss - prev_loss) < tol_change:
                break

        state["d"], state["t"] = d, t
        state["prev_flat_grad"], state["prev_loss"] = prev_g, prev_loss
        return orig_loss
