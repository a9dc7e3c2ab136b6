"""Finite-horizon dynamic programming and resource-allocation DPs, vectorized in torch.

- :func:`finite_horizon`: backward induction V_t = max_a R + gamma P V_{t+1} (Bellman, 1957).
- :func:`allocate_budget`: split an integer budget over items with (e.g. concave) returns,
  F_i(b) = max_{u <= b} r_i(u) + F_{i-1}(b - u).
- :func:`knapsack`: 0/1 knapsack with integer weights,
  F_i(c) = max(F_{i-1}(c), v_i + F_{i-1}(c - w_i)).

All take leading batch dims ``...`` (independent instances of the same size) and return the
optimal value and an optimal decision for each instance.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from optimkit.solve.mdp import bellman_q, check_mdp


class FiniteHorizonSolution(NamedTuple):
    """values [..., T+1, S] (V_0..V_T), policy [..., T, S], q [..., T, S, A]."""

    values: Tensor
    policy: Tensor
    q: Tensor


def finite_horizon(
    P: Tensor,
    R: Tensor,
    horizon: int,
    *,
    terminal: Tensor | None = None,
    gamma: float | Tensor = 1.0,
) -> FiniteHorizonSolution:
    """Backward induction for a stationary MDP over ``horizon`` decision steps.

    ``P`` [..., A, S, S] and ``R`` [..., S, A] as in :mod:`optimkit.solve.mdp`; ``terminal``
    [..., S] is the reward V_T at the end (default 0); ``gamma`` in [0, 1] (float or [B]).
    The policy is Markov and time-dependent: ``policy[..., t, s]`` is the action at step t.
    """
    P, R, g = check_mdp(P, R, gamma, discounted=False)
    if not isinstance(horizon, int) or isinstance(horizon, bool) or horizon < 1:
        raise ValueError(f"horizon must be a positive int, got {horizon!r}")
    V = torch.zeros(R.shape[:-1], dtype=R.dtype)
    if terminal is not None:
        terminal = torch.as_tensor(terminal, dtype=R.dtype)
        if terminal.shape[-1] != R.shape[-2] or not torch.isfinite(terminal).all():
            raise ValueError(f"terminal must be finite with shape [..., {R.shape[-2]}]")
        V = V + terminal
    values, policies, qs = [V], [], []
    for _ in range(horizon):
        Q = bellman_q(P, R, g, V)
        V = Q.amax(-1)
        values.append(V)
        policies.append(Q.argmax(-1))
        qs.append(Q)
    return FiniteHorizonSolution(
        torch.stack(values[::-1], dim=-2),
        torch.stack(policies[::-1], dim=-2),
        torch.stack(qs[::-1], dim=-3),
    )


class AllocationDP(NamedTuple):
    """value [...] (best total return) and units [..., n_items] (an optimal allocation)."""

    value: Tensor
    units: Tensor


def allocate_budget(returns: Tensor, budget: int) -> AllocationDP:
    """Give ``u_i`` integer units to item i, sum_i u_i <= budget, maximizing sum_i r_i(u_i).

    ``returns[..., i, u]`` = r_i(u) for u = 0..U (U = returns.shape[-1] - 1 is the most one item
    can take; use -inf for levels an item cannot take). Any returns work; with concave ones
    (diminishing returns) this is the classic budget-allocation problem. O(n * budget * U).
    """
    r = torch.as_tensor(returns)
    r = r.to(r.dtype if r.dtype.is_floating_point else torch.float64)
    if r.dim() < 2 or r.shape[-1] < 1:
        raise ValueError(f"returns must have shape [..., n_items, U + 1], got {tuple(r.shape)}")
    if torch.isnan(r).any() or torch.isposinf(r).any():
        raise ValueError("returns contains NaN or +inf (-inf marks a level an item cannot take)")
    if not torch.isfinite(r[..., 0]).all():
        raise ValueError("returns[..., i, 0] (giving an item nothing) must be finite")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 0:
        raise ValueError(f"budget must be a non-negative int, got {budget!r}")
    n, U = r.shape[-2], r.shape[-1] - 1
    b = torch.arange(budget + 1)
    u = torch.arange(U + 1)
    prev_idx = b[:, None] - u[None, :]  # [B+1, U+1]: remaining budget b - u
    valid = prev_idx >= 0
    prev_idx = prev_idx.clamp(min=0)
    neg_inf = torch.tensor(-torch.inf, dtype=r.dtype)
    F = torch.zeros((*r.shape[:-2], budget + 1), dtype=r.dtype)  # F_0(b) = 0: unspent is fine
    choices = []
    for i in range(n):
        cand = F[..., prev_idx] + r[..., i, None, :]  # [..., B+1, U+1]
        cand = torch.where(valid, cand, neg_inf)
        F, best_u = cand.max(-1)
        choices.append(best_u)
    units = torch.empty((*r.shape[:-2], n), dtype=torch.long)
    left = torch.full(r.shape[:-2], budget, dtype=torch.long)
    for i in reversed(range(n)):
        ui = choices[i].gather(-1, left.unsqueeze(-1)).squeeze(-1)
        units[..., i] = ui
        left = left - ui
    return AllocationDP(F[..., budget], units)


class KnapsackSolution(NamedTuple):
    """value [...] and take [..., n] (bool: item in the knapsack)."""

    value: Tensor
    take: Tensor


def knapsack(values: Tensor, weights: Tensor, capacity: int) -> KnapsackSolution:
    """0/1 knapsack: maximize sum v_i x_i s.t. sum w_i x_i <= capacity, x_i in {0, 1}.

    ``values`` [..., n] (finite), ``weights`` [..., n] non-negative integers. O(n * capacity).
    """
    v = torch.as_tensor(values)
    v = v.to(v.dtype if v.dtype.is_floating_point else torch.float64)
    w = torch.as_tensor(weights)
    if v.dim() < 1 or w.shape != v.shape:
        raise ValueError(
            f"values and weights must have the same shape [..., n], got {tuple(v.shape)} and "
            f"{tuple(w.shape)}"
        )
    if not torch.isfinite(v).all():
        raise ValueError("values contains NaN or inf")
    if w.dtype.is_floating_point:
        if not torch.isfinite(w).all() or (w != w.round()).any():
            raise ValueError("weights must be non-negative integers")
        w = w.long()
    if (w < 0).any():
        raise ValueError("weights must be non-negative integers")
    if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 0:
        raise ValueError(f"capacity must be a non-negative int, got {capacity!r}")
    n = v.shape[-1]
    c = torch.arange(capacity + 1)
    F = torch.zeros((*v.shape[:-1], capacity + 1), dtype=v.dtype)
    takes = []
    for i in range(n):
        wi = w[..., i, None]
        rest = c - wi  # [..., C+1]
        fits = rest >= 0
        with_i = F.gather(-1, rest.clamp(min=0)) + v[..., i, None]
        take = fits & (with_i > F)
        F = torch.where(take, with_i, F)
        takes.append(take)
    chosen = torch.zeros(v.shape, dtype=torch.bool)
    left = torch.full(v.shape[:-1], capacity, dtype=torch.long)
    for i in reversed(range(n)):
        t = takes[i].gather(-1, left.unsqueeze(-1)).squeeze(-1)
        chosen[..., i] = t
        left = left - torch.where(t, w[..., i], 0)
    return KnapsackSolution(F[..., capacity], chosen)
