"""Finite discounted MDPs: value iteration, policy iteration and the LP formulation.

Conventions (batched: any leading dims ``...`` index independent MDPs of the same size):

- ``P[..., a, s, t]`` = Pr(next state t | state s, action a); every row sums to 1.
- ``R[..., s, a]`` = expected immediate reward of action a in state s. A reward on transitions
  ``R3[..., a, s, t]`` becomes ``(P * R3).sum(-1).transpose(-1, -2)``.
- ``gamma`` in [0, 1): a float, or a tensor of shape [B] for a batch of B MDPs (one discount
  each, the population axis); with a [B] gamma, one MDP (no batch dims) is solved for each of
  the B discounts.

Bellman optimality: V*(s) = max_a R(s, a) + gamma * sum_t P(t | s, a) V*(t)
(Puterman, "Markov Decision Processes", 1994, ch. 6).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor


class MDPSolution(NamedTuple):
    """Values V [..., S], greedy policy [..., S] (action indices), Q [..., S, A], iterations
    per MDP [...] and whether each MDP met the tolerance [...]."""

    values: Tensor
    policy: Tensor
    q: Tensor
    iterations: Tensor
    converged: Tensor


def check_mdp(P: Tensor, R: Tensor, gamma: float | Tensor, *, discounted: bool = True):
    """Validate and convert ``P``, ``R``, ``gamma`` (float64 unless already floating)."""
    P = torch.as_tensor(P)
    R = torch.as_tensor(R)
    dtype = torch.promote_types(P.dtype, R.dtype)
    dtype = dtype if dtype.is_floating_point else torch.float64
    P, R = P.to(dtype), R.to(dtype)
    if P.dim() < 3 or P.shape[-1] != P.shape[-2]:
        raise ValueError(f"P must have shape [..., A, S, S], got {tuple(P.shape)}")
    A, S = P.shape[-3], P.shape[-1]
    if R.shape[-2:] != (S, A):
        raise ValueError(
            f"R must have shape [..., S, A] = [..., {S}, {A}] to match P, got {tuple(R.shape)}"
        )
    for name, t in (("P", P), ("R", R)):
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} contains NaN or inf")
    if (P < 0).any():
        raise ValueError("P must be non-negative (transition probabilities)")
    row_sums = P.sum(-1)
    if not torch.allclose(
        row_sums, torch.ones_like(row_sums), atol=1e-9 if dtype == torch.float64 else 1e-5
    ):
        raise ValueError("P's rows must sum to 1 (P[..., a, s, :] is a distribution)")
    g = torch.as_tensor(gamma, dtype=dtype)
    if g.dim() > 1 or not torch.isfinite(g).all():
        raise ValueError("gamma must be a float or a 1-D tensor [B] of finite numbers")
    upper_ok = (g < 1).all() if discounted else (g <= 1).all()
    if (g < 0).any() or not upper_ok:
        interval = "[0, 1)" if discounted else "[0, 1]"
        raise ValueError(f"gamma must lie in {interval}, got {gamma}")
    if g.dim() == 1:
        B = g.shape[0]
        if P.dim() == 3 and R.dim() == 2:  # one MDP, B discounts: the population axis
            P, R = P.expand(B, *P.shape), R.expand(B, *R.shape)
        batch = P.shape[:-3]
        if len(batch) == 0 or batch[0] != B or R.shape[0] != B:
            raise ValueError(
                f"gamma has shape {tuple(g.shape)}: a [B] gamma needs P and R with a leading "
                f"batch dim B (or none), got P {tuple(P.shape)} and R {tuple(R.shape)}"
            )
        g = g.reshape(g.shape + (1,) * (P.dim() - 4))
    return P, R, g


def bellman_q(P: Tensor, R: Tensor, gamma: Tensor, V: Tensor) -> Tensor:
    """Q[..., s, a] = R[..., s, a] + gamma * sum_t P[..., a, s, t] V[..., t]."""
    PV = (P @ V.unsqueeze(-1).unsqueeze(-3)).squeeze(-1)  # [..., A, S]
    return R + gamma[..., None, None] * PV.transpose(-1, -2)


def value_iteration(
    P: Tensor, R: Tensor, gamma: float | Tensor, *, tol: float = 1e-10, max_iter: int = 100_000
) -> MDPSolution:
    """Value iteration V <- max_a Q(V), batched over MDPs.

    Each MDP stops (its values are frozen) once ||V_{k+1} - V_k||_inf < tol (1 - gamma) / gamma,
    which guarantees ||V_{k+1} - V*||_inf < tol (Puterman, Thm 6.3.1); the others go on.
    """
    P, R, g = check_mdp(P, R, gamma)
    V = torch.zeros(R.shape[:-1], dtype=R.dtype)
    batch = R.shape[:-2]
    done = torch.zeros(batch, dtype=torch.bool)
    iters = torch.zeros(batch, dtype=torch.long)
    threshold = tol * (1 - g) / torch.clamp(g, min=1e-300)
    for _ in range(max_iter):
        V_new = bellman_q(P, R, g, V).amax(-1)
        delta = (V_new - V).abs().amax(-1)
        V = torch.where(done[..., None], V, V_new)
        iters = iters + (~done).long()
        done = done | (delta < threshold)
        if bool(done.all()):
            break
    Q = bellman_q(P, R, g, V)
    return MDPSolution(V, Q.argmax(-1), Q, iters, done)


def policy_iteration(
    P: Tensor, R: Tensor, gamma: float | Tensor, *, max_iter: int = 1_000
) -> MDPSolution:
    """Howard's policy iteration, batched: exact evaluation (I - gamma P_pi) V = R_pi by a
    batched linear solve, then greedy improvement; an action is only changed for a strictly
    better one (up to 1e-12 relative), so ties cannot cycle. Terminates in finitely many steps
    with the optimal values (Puterman, Thm 6.4.2)."""
    P, R, g = check_mdp(P, R, gamma)
    S = R.shape[-2]
    batch = R.shape[:-2]
    eye = torch.eye(S, dtype=R.dtype)
    policy = R.argmax(-1)
    iters = torch.zeros(batch, dtype=torch.long)
    stable = torch.zeros(batch, dtype=torch.bool)
    for _ in range(max_iter):
        V = evaluate_policy(P, R, g, policy, eye)
        Q = bellman_q(P, R, g, V)
        best = Q.amax(-1)
        current = Q.gather(-1, policy.unsqueeze(-1)).squeeze(-1)
        improve = current < best - 1e-12 * (1 + best.abs())
        new_policy = torch.where(improve, Q.argmax(-1), policy)
        iters = iters + (~stable).long()
        stable = ~improve.any(-1)
        policy = new_policy
        if bool(stable.all()):
            break
    V = evaluate_policy(P, R, g, policy, eye)
    Q = bellman_q(P, R, g, V)
    return MDPSolution(V, policy, Q, iters, stable)


def evaluate_policy(
    P: Tensor, R: Tensor, gamma: Tensor, policy: Tensor, eye: Tensor | None = None
) -> Tensor:
    """V_pi solving (I - gamma P_pi) V = R_pi for a deterministic policy [..., S]."""
    S = R.shape[-2]
    eye = torch.eye(S, dtype=R.dtype) if eye is None else eye
    idx = policy[..., None, :, None].expand(*policy.shape[:-1], 1, S, S)
    P_pi = P.gather(-3, idx).squeeze(-3)  # [..., S, S]
    R_pi = R.gather(-1, policy.unsqueeze(-1)).squeeze(-1)
    return torch.linalg.solve(eye - gamma[..., None, None] * P_pi, R_pi)


def mdp_lp(P: Tensor, R: Tensor, gamma: float, **lp_options) -> MDPSolution:
    """Solve one MDP (no batch dims) as the linear program (HiGHS through ``solve_lp``)

        minimize sum_s V(s)   s.t.   V(s) >= R(s, a) + gamma sum_t P(t | s, a) V(t)  for all s, a

    whose unique solution is V* (d'Epenoux, 1963; Puterman, section 6.9)."""
    from optimkit.solve.lp import solve_lp

    P, R, g = check_mdp(P, R, gamma)
    if P.dim() != 3 or g.dim() != 0:
        raise ValueError("mdp_lp solves one MDP: P must be [A, S, S] and gamma a float")
    A, S = P.shape[0], P.shape[1]
    Pn, Rn, gn = P.double().numpy(), R.double().numpy(), float(g)
    # Row (s, a): -(V(s) - gamma P[a, s] . V) <= -R(s, a).
    rows = np.concatenate([gn * Pn[a] - np.eye(S) for a in range(A)])  # order (a, s)
    rhs = -Rn.T.reshape(-1)
    res = solve_lp(np.ones(S), rows, rhs, bounds=(None, None), **lp_options)
    V = torch.as_tensor(res.optimal_x("the MDP's LP"), dtype=R.dtype)
    Q = bellman_q(P, R, g, V)
    return MDPSolution(V, Q.argmax(-1), Q, torch.tensor(0), torch.tensor(True))
