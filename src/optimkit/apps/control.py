"""control: gymnasium's toy MDPs solved exactly, and CartPole by a population policy gradient.

1. FrozenLake-v1 (4x4, slippery) and Taxi (Taxi-v3's dynamics) built as finite MDPs from
   their transition tables (``env.unwrapped.P``; a transition that ends the episode goes to one
   absorbing state), solved by optimkit's value iteration, policy iteration and LP, which must
   agree; the optimal policy is then run in gymnasium for 1,000 episodes (success rate / mean
   return) next to its exact value within the environment's time limit and a random policy.
2. CartPole-v1 by REINFORCE with a baseline: K policies (different learning rates and entropy
   coefficients) as stacked parameters [K, ...], one population Adam with a [K] lr, over one
   gymnasium vector environment of K x E CartPoles; against K sequential runs of the same
   algorithm with a plain torch module and torch.optim.Adam. Reported: the wall-time ratio,
   episodes until the mean of the last 100 training returns reaches 475 (CartPole's solved
   threshold), and each member's greedy return over 100 episodes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from optimkit.apps.base import App, AppOptions, AppResult, progress_bar

GAMMA_MDP = 0.99  # discount of the exact solves (the policy is then run undiscounted)
GAMMA_PG = 0.99  # REINFORCE's discount of the return-to-go
SOLVED = 475.0  # CartPole-v1: mean return over 100 consecutive episodes
MAX_STEPS = 500  # CartPole-v1's time limit


@dataclass(frozen=True)
class Sizes:
    episodes: int  # Monte Carlo episodes per toy-text policy
    members: int  # K policies
    envs: int  # episodes per member per update
    updates: int  # policy-gradient updates (both sides)
    hidden: int
    eval_episodes: int  # greedy evaluation episodes per member


FULL = Sizes(episodes=1000, members=8, envs=8, updates=150, hidden=32, eval_episodes=100)
QUICK = Sizes(episodes=50, members=2, envs=2, updates=2, hidden=8, eval_episodes=2)


# ----------------------------------------------------------------------------- toy-text MDPs
def make_env(name: str, **kwargs: Any) -> Any:
    """gymnasium.make, with Taxi-v3 read as Taxi-v4 where gymnasium retired v3 (v4 changed
    only the non-default is_rainy / fickle_passenger options)."""
    import gymnasium as gym

    if name == "Taxi-v3" and name not in gym.envs.registry and "Taxi-v4" in gym.envs.registry:
        name = "Taxi-v4"
    return gym.make(name, **kwargs)


def mdp_from_env(env: Any) -> tuple[Tensor, Tensor, np.ndarray]:
    """(P [A, S+1, S+1], R [S+1, A], start distribution [S+1]) in float64 from a toy-text
    environment's table ``P[s][a] = [(prob, next, reward, terminated), ...]``; state S is
    absorbing with reward 0 and receives every transition that ends the episode."""
    table = env.unwrapped.P
    S = len(table)
    A = len(table[0])
    P = np.zeros((A, S + 1, S + 1))
    R = np.zeros((S + 1, A))
    for s in range(S):
        for a in range(A):
            for prob, nxt, reward, terminated in table[s][a]:
                P[a, s, S if terminated else nxt] += prob
                R[s, a] += prob * reward
    P[:, S, S] = 1.0
    start = np.zeros(S + 1)
    isd = getattr(env.unwrapped, "initial_state_distrib", None)
    if isd is None:
        start[0] = 1.0
    else:
        start[:S] = np.asarray(isd, dtype=np.float64)
    return torch.from_numpy(P), torch.from_numpy(R), start


def policy_value_within(P: Tensor, R: Tensor, policy: Tensor, horizon: int) -> Tensor:
    """Exact expected undiscounted return of a deterministic policy over ``horizon`` steps
    (the environment's time limit): V_{t+1} = R_pi + P_pi V_t from V_0 = 0."""
    S = R.shape[0]
    idx = torch.arange(S)
    P_pi = P[policy, idx, :]  # [S, S]
    R_pi = R[idx, policy]
    V = torch.zeros(S, dtype=R.dtype)
    for _ in range(horizon):
        V = R_pi + P_pi @ V
    return V


def run_policy(
    name: str, policy: Callable[[int, np.random.Generator], int], episodes: int, seed: int
) -> np.ndarray:
    """Undiscounted return of each of ``episodes`` gymnasium episodes (time limit included)."""
    env = make_env(name)
    rng = np.random.default_rng(seed)
    returns = np.zeros(episodes)
    for i in range(episodes):
        s, _ = env.reset(seed=seed * 1_000_003 + i)
        total, done = 0.0, False
        while not done:
            s, r, terminated, truncated, _ = env.step(policy(int(s), rng))
            total += float(r)
            done = terminated or truncated
        returns[i] = total
    env.close()
    return returns


def solve_toy(name: str, episodes: int, seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows for one toy-text environment and the agreement details."""
    from optimkit.solve import mdp_lp, policy_iteration, value_iteration

    env = make_env(name)
    P, R, start = mdp_from_env(env)
    horizon = int(env.spec.max_episode_steps)
    n_actions = R.shape[1]
    env.close()
    solvers = {
        "value iteration": lambda: value_iteration(P, R, GAMMA_MDP, tol=1e-10),
        "policy iteration": lambda: policy_iteration(P, R, GAMMA_MDP),
        "linear program (HiGHS)": lambda: mdp_lp(P, R, GAMMA_MDP),
    }
    sols, times = {}, {}
    for label, solve in solvers.items():
        t0 = time.perf_counter()
        sols[label] = solve()
        times[label] = time.perf_counter() - t0
    ref = sols["value iteration"]
    key = "frozenlake" if name.startswith("FrozenLake") else "taxi"
    metric = f"{key}_success" if key == "frozenlake" else f"{key}_return"
    details: dict[str, Any] = {"states": int(R.shape[0] - 1), "actions": int(n_actions),
                               "gamma": GAMMA_MDP, "time_limit": horizon}  # fmt: skip
    rows = []
    for i, (label, sol) in enumerate(sols.items()):
        exact = float(policy_value_within(P, R, sol.policy, horizon) @ torch.from_numpy(start))
        pol = sol.policy.numpy()

        def act(s: int, rng: np.random.Generator, pol: np.ndarray = pol) -> int:
            return int(pol[s])

        measured = run_policy(name, act, episodes, seed + i)
        details[label] = {
            "max_abs_value_diff_vs_value_iteration": float((sol.values - ref.values).abs().max()),
            "policy_actions_differing_from_value_iteration": int(
                (sol.policy != ref.policy)[:-1].sum()
            ),
            "exact_return_within_time_limit": exact,
            "solve_seconds": times[label],
        }
        rows.append({
            "env": name, "method": f"{name}: optimkit {label}", "kind": "optimkit",
            metric: float(measured.mean()), f"{key}_exact": exact,
            "v_start_discounted": float(sol.values.numpy() @ start),
            "solve_s": times[label], "episodes": episodes,
        })  # fmt: skip
    measured = run_policy(name, lambda s, rng: int(rng.integers(n_actions)), episodes, seed + 7)
    rows.append({"env": name, "method": f"{name}: uniform random policy", "kind": "baseline",
                 metric: float(measured.mean()), "episodes": episodes})  # fmt: skip
    values = torch.stack([s.values for s in sols.values()])
    details["max_abs_value_disagreement"] = float((values - values[0]).abs().max())
    return rows, details


# ------------------------------------------------------------------------------- CartPole
def member_settings(k: int) -> tuple[list[float], list[float]]:
    """K (learning rate, entropy coefficient) pairs: lr log-spaced in [3e-3, 3e-2], the
    entropy coefficient alternating 0 and 0.01."""
    lrs = np.geomspace(3e-3, 3e-2, k) if k > 1 else np.array([1e-2])
    ents = [0.0 if i % 2 == 0 else 0.01 for i in range(k)]
    return [float(x) for x in lrs], ents


def init_policy(seed: int, hidden: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, hidden), nn.Tanh(), nn.Linear(hidden, 2))


def stacked_policy(seeds: Sequence[int], hidden: int) -> list[Tensor]:
    """[W1 [K, 4, H], b1 [K, H], W2 [K, H, 2], b2 [K, 2]]: member k equals init_policy(seeds[k])."""
    layers = [(cast(nn.Linear, m[0]), cast(nn.Linear, m[2]))
              for m in (init_policy(s, hidden) for s in seeds)]  # fmt: skip
    parts = [
        torch.stack([a.weight.detach().T for a, _ in layers]),
        torch.stack([a.bias.detach() for a, _ in layers]),
        torch.stack([b.weight.detach().T for _, b in layers]),
        torch.stack([b.bias.detach() for _, b in layers]),
    ]
    return [p.clone().contiguous().requires_grad_(True) for p in parts]


def stacked_logits(params: Sequence[Tensor], obs: Tensor) -> Tensor:
    """obs [K, N, 4] -> logits [K, N, 2]."""
    W1, b1, W2, b2 = params
    h = torch.tanh(torch.baddbmm(b1.unsqueeze(1), obs, W1))
    return torch.baddbmm(b2.unsqueeze(1), h, W2)


def rollout(
    env: Any,
    k: int,
    e: int,
    logits_fn: Callable[[Tensor], Tensor],
    seed: int,
    greedy: bool,
    rng: np.random.Generator,
) -> tuple[Tensor, Tensor, Tensor, np.ndarray]:
    """One episode in each of the K*E environments (member-major), stepping until all have
    ended: (obs [T, K, E, 4], actions [T, K, E], alive mask [T, K, E], returns [K, E])."""
    obs_np, _ = env.reset(seed=seed)
    alive = np.ones(k * e, dtype=bool)
    returns = np.zeros(k * e)
    obs_t, act_t, alive_t = [], [], []
    for _ in range(MAX_STEPS):
        obs = torch.as_tensor(obs_np, dtype=torch.float32).reshape(k, e, 4)
        with torch.no_grad():
            p1 = torch.softmax(logits_fn(obs), -1)[..., 1].reshape(-1).numpy()
        act = (p1 > 0.5) if greedy else (rng.random(k * e) < p1)
        act = act.astype(np.int64)
        obs_t.append(obs)
        act_t.append(torch.from_numpy(act).reshape(k, e))
        alive_t.append(torch.from_numpy(alive.copy()).reshape(k, e))
        obs_np, _, terminated, truncated, _ = env.step(act)
        returns += alive
        alive &= ~(terminated | truncated)
        if not alive.any():
            break
    return torch.stack(obs_t), torch.stack(act_t), torch.stack(alive_t), returns.reshape(k, e)


def pg_loss(logits: Tensor, actions: Tensor, alive: Tensor, entropy_coef: Tensor) -> Tensor:
    """Per-member REINFORCE loss [K] with a baseline: the return-to-go G_t minus its mean over
    the member's E episodes still running at t, scaled by the member's advantage std;
    minus entropy_coef [K] times the mean policy entropy. logits [T, K, E, 2]."""
    mask = alive.to(logits.dtype)
    T = mask.shape[0]
    G = torch.zeros_like(mask)
    running = torch.zeros_like(mask[0])
    for t in reversed(range(T)):
        running = mask[t] + GAMMA_PG * running * mask[t]
        G[t] = running
    count_t = mask.sum(-1, keepdim=True).clamp_min(1)
    baseline = (G * mask).sum(-1, keepdim=True) / count_t
    adv = (G - baseline) * mask
    n = mask.sum((0, 2)).clamp_min(1)  # [K]
    std = ((adv**2).sum((0, 2)) / n).sqrt().clamp_min(1e-6)
    adv = adv / std[None, :, None]
    logp = torch.log_softmax(logits, -1)
    logp_a = logp.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    entropy = -(logp.exp() * logp).sum(-1)
    pg = -(logp_a * adv * mask).sum((0, 2)) / n
    ent = (entropy * mask).sum((0, 2)) / n
    return pg - entropy_coef * ent


class SolvedTracker:
    """Episodes each member needed until the mean of its last 100 training returns >= 475."""

    def __init__(self, k: int) -> None:
        self.returns: list[list[float]] = [[] for _ in range(k)]
        self.solved_at: list[int | None] = [None] * k

    def add(self, returns: np.ndarray) -> None:
        for i, r in enumerate(returns):
            self.returns[i].extend(float(x) for x in r)
            last = self.returns[i][-100:]
            if self.solved_at[i] is None and len(last) == 100 and np.mean(last) >= SOLVED:
                self.solved_at[i] = len(self.returns[i])


def vector_cartpole(n: int) -> Any:
    import gymnasium as gym

    return gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="vector_entry_point")


def train_population(
    sizes: Sizes, seeds: list[int], lrs: list[float], ents: list[float], seed: int, tick: Any
) -> dict[str, Any]:
    """All K members as one program: one vector env of K*E CartPoles, stacked parameters,
    one optimkit Adam with lr [K]."""
    from optimkit.optim import OPTIMIZERS

    k, e = len(seeds), sizes.envs
    params = stacked_policy(seeds, sizes.hidden)
    opt = OPTIMIZERS["adam"](params, lr=torch.tensor(lrs, dtype=torch.float64), members=k)
    ent = torch.tensor(ents)
    env = vector_cartpole(k * e)
    rng = np.random.default_rng(seed)
    tracker = SolvedTracker(k)

    def fn(o: Tensor) -> Tensor:
        return stacked_logits(params, o)

    t0 = time.perf_counter()
    for u in range(sizes.updates):
        obs, act, alive, rets = rollout(env, k, e, fn, seed * 100_003 + u, False, rng)
        T = obs.shape[0]
        logits = stacked_logits(params, obs.permute(1, 0, 2, 3).reshape(k, T * e, 4))
        logits = logits.reshape(k, T, e, 2).permute(1, 0, 2, 3)
        loss = pg_loss(logits, act, alive, ent)
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
        tracker.add(rets)
        tick()
    wall = time.perf_counter() - t0
    env.close()
    eval_env = vector_cartpole(k * sizes.eval_episodes)
    *_, greedy = rollout(eval_env, k, sizes.eval_episodes, fn, seed + 99, True, rng)
    eval_env.close()
    return {"wall_s": wall, "solved_at": tracker.solved_at, "greedy": greedy.mean(1).tolist(),
            "final100": [float(np.mean(r[-100:])) for r in tracker.returns]}  # fmt: skip


def train_sequential(
    sizes: Sizes, seeds: list[int], lrs: list[float], ents: list[float], seed: int, tick: Any
) -> dict[str, Any]:
    """The same algorithm, one member at a time: a plain torch module, torch.optim.Adam and a
    vector env of E CartPoles per run."""
    e = sizes.envs
    wall = 0.0
    solved_at: list[int | None] = []
    greedy, final100 = [], []
    for i, s in enumerate(seeds):
        policy = init_policy(s, sizes.hidden)
        opt = torch.optim.Adam(policy.parameters(), lr=lrs[i])
        ent = torch.tensor([ents[i]])
        env = vector_cartpole(e)
        rng = np.random.default_rng(seed + 1 + i)
        tracker = SolvedTracker(1)

        def fn(o: Tensor, policy: nn.Module = policy) -> Tensor:
            return policy(o)

        t0 = time.perf_counter()
        for u in range(sizes.updates):
            obs, act, alive, rets = rollout(env, 1, e, fn, (seed + 1 + i) * 100_003 + u, False,
                                            rng)  # fmt: skip
            loss = pg_loss(policy(obs), act, alive, ent)
            opt.zero_grad()
            loss.sum().backward()
            opt.step()
            tracker.add(rets)
            tick()
        wall += time.perf_counter() - t0
        env.close()
        eval_env = vector_cartpole(sizes.eval_episodes)
        *_, g = rollout(eval_env, 1, sizes.eval_episodes, fn, seed + 199 + i, True, rng)
        eval_env.close()
        solved_at.append(tracker.solved_at[0])
        greedy.append(float(g.mean()))
        final100.append(float(np.mean(tracker.returns[0][-100:])))
    return {"wall_s": wall, "solved_at": solved_at, "greedy": greedy, "final100": final100}


def cartpole_row(label: str, kind: str, res: dict[str, Any], sizes: Sizes) -> dict[str, Any]:
    solved = [s for s in res["solved_at"] if s is not None]
    return {
        "env": "CartPole-v1", "method": label, "kind": kind,
        "cartpole_members_solved": len(solved),
        "cartpole_episodes_to_475": float(min(solved)) if solved else math.nan,
        "cartpole_best_greedy_return": float(max(res["greedy"])),
        "cartpole_mean_last100": float(np.mean(res["final100"])),
        "train_s": res["wall_s"], "episodes": sizes.updates * sizes.envs,
    }  # fmt: skip


def run(options: AppOptions) -> AppResult:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = QUICK if options.quick else FULL
    torch.set_num_threads(1)  # tiny networks: threads cost more than they give
    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {"sizes": sizes.__dict__}
    bar, task = progress_bar(options, 2 + 2 * sizes.updates, "control")
    with bar:
        for name in ("FrozenLake-v1", "Taxi-v3"):
            r, d = solve_toy(name, sizes.episodes, options.seed)
            rows += r
            details[name] = d
            bar.advance(task)
        k = sizes.members
        seeds = [options.seed * 1000 + i for i in range(k)]
        lrs, ents = member_settings(k)
        details["cartpole_members"] = [
            {"seed": s, "lr": lr, "entropy_coef": c}
            for s, lr, c in zip(seeds, lrs, ents, strict=True)
        ]

        def tick() -> None:
            bar.advance(task)

        pop = train_population(sizes, seeds, lrs, ents, options.seed, tick)
        seq = train_sequential(sizes, seeds, lrs, ents, options.seed, tick)
    rows.append(cartpole_row(f"CartPole-v1: optimkit population REINFORCE (K={k}, one program)",
                             "optimkit", pop, sizes))  # fmt: skip
    rows.append(cartpole_row(f"CartPole-v1: {k} sequential torch.optim runs", "baseline", seq,
                             sizes))  # fmt: skip
    details["cartpole_population"] = pop
    details["cartpole_sequential"] = seq
    table = pd.DataFrame(rows)
    ratio = seq["wall_s"] / max(pop["wall_s"], 1e-9)
    details["cartpole_wall_time_ratio"] = ratio
    notes = []
    for name in ("FrozenLake-v1", "Taxi-v3"):
        d = details[name]
        exact = d["value iteration"]["exact_return_within_time_limit"]
        sub = table[(table.env == name) & (table.kind == "optimkit")]
        col = "frozenlake_success" if name.startswith("Frozen") else "taxi_return"
        rand = table[(table.env == name) & (table.kind == "baseline")][col].iloc[0]
        notes.append(
            f"{name}: value iteration, policy iteration and the LP agree (max |dV| = "
            f"{d['max_abs_value_disagreement']:.1e}); the optimal policy's exact "
            f"{'success probability' if col.endswith('success') else 'mean return'} within "
            f"the {d['time_limit']}-step limit is {exact:.3f}, measured "
            f"{sub[col].mean():.3f} over {sizes.episodes} episodes (random policy: {rand:.3f})"
        )
    solved_pop = sum(s is not None for s in pop["solved_at"])
    solved_seq = sum(s is not None for s in seq["solved_at"])
    notes.append(
        f"CartPole-v1: the K={k} population trained as one program took "
        f"{pop['wall_s']:.1f} s against {seq['wall_s']:.1f} s for {k} sequential torch runs "
        f"(x{ratio:.1f}) for the same {sizes.updates} updates of {sizes.envs} episodes each"
    )
    notes.append(
        f"CartPole-v1 solved (mean of the last 100 training returns >= 475) by {solved_pop}/{k} "
        f"population members and {solved_seq}/{k} sequential runs within "
        f"{sizes.updates * sizes.envs} episodes; best greedy return over "
        f"{sizes.eval_episodes} episodes: {max(pop['greedy']):.1f} (population), "
        f"{max(seq['greedy']):.1f} (sequential)"
    )
    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [f"lr={lr:.3g}, ent={c:g}" for lr, c in zip(lrs, ents, strict=True)]
    x = np.arange(k)
    ax.bar(x - 0.2, pop["greedy"], 0.4, label="population (optimkit)")
    ax.bar(x + 0.2, seq["greedy"], 0.4, label="sequential (torch.optim)")
    ax.axhline(SOLVED, color="k", lw=0.8, ls="--")
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel(f"greedy return ({sizes.eval_episodes} episodes)")
    ax.set_title("CartPole-v1 after training")
    ax.legend(fontsize=7)
    return AppResult(
        title="control: exact DP on FrozenLake / Taxi, population REINFORCE on CartPole",
        table=table,
        better={
            "frozenlake_success": "higher",
            "taxi_return": "higher",
            "cartpole_best_greedy_return": "higher",
            "cartpole_members_solved": "higher",
            "cartpole_episodes_to_475": "lower",
            "train_s": "lower",
        },
        figures={"cartpole_greedy_returns": fig},
        notes=notes,
        details=details,
    )


APP = App(
    name="control",
    summary="FrozenLake/Taxi solved exactly by DP and LP; CartPole by population REINFORCE",
    baseline="gymnasium rollouts; K sequential torch.optim runs",
    run=run,
    requires=("gymnasium",),
)
