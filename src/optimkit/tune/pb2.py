"""PB2: Population Based Bandits (Parker-Holder et al. 2020), PBT's explore as a GP bandit.

Exploit is PBT's (the bottom ``quantile_fraction`` copy a random member of the top one); explore
does not perturb the copied hyperparameters at random but picks them where a Gaussian process
over (time, hyperparameters) -> score change predicts the largest upper confidence bound:

* data: at each perturbation, for every member scored at the previous one, the point
  (epoch, its hyperparameters during the interval, scaled into [0, 1] by their bounds) and the
  change of its score over the interval (signed so that larger is better); the most recent
  `window` points are kept;
* kernel (Ray Tune's ``TV_SquaredExp``, time-varying): ``k = s2 * exp(-|x - x'|^2 / l)
  * (1 - eps) ** (|t - t'| / 2)``, with s2, l, eps and the noise fitted by maximizing the
  marginal likelihood (scipy L-BFGS-B over log parameters), y standardized;
* acquisition: UCB ``mean + kappa * std`` at the next epoch, ``kappa = sqrt(0.2 + max(0,
  log(0.4 n)))`` for n points (Ray's constants), maximized over [0, 1]^d from random starts
  polished with L-BFGS-B; proposals inside one perturbation round see the earlier ones as
  pending points at their predicted mean (kriging believer), so they spread out.

Bounds follow Ray Tune's ``hyperparam_bounds``: ``{name: [low, high]}`` continuous ranges, a
value is chosen inside them (clipped, so a proposal never leaves them; an int range is rounded).
Like Ray, the scaling into [0, 1] is linear. Random starts come from the scheduler's
random.Random, so a run is reproducible from its seed and resumes exactly.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.optimize import minimize

from optimkit.tune.pbt import Mutation, PopulationBasedTraining
from optimkit.tune.space import Param


@dataclass
class PB2(PopulationBasedTraining):
    """PB2 with Ray Tune's names: `hyperparam_bounds` ``{name: [low, high]}`` (default: the
    ranges of the search space, or of `hyperparam_mutations`). `window`: the most recent data
    points the GP is fitted on."""

    hyperparam_bounds: Mapping[str, Sequence[float]] | None = None
    window: int = 256

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, b in (self.hyperparam_bounds or {}).items():
            ok = isinstance(b, Sequence) and len(b) == 2 and all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in b)  # fmt: skip
            if not ok or b[0] >= b[1]:
                raise ValueError(f"hyperparam_bounds.{name}: expected [low, high] with finite "
                                 f"low < high, got {b!r}")  # fmt: skip

    def mutation_spec(self) -> Mapping[str, Any] | None:
        if self.hyperparam_bounds is not None:
            return {n: {"low": float(b[0]), "high": float(b[1])}
                    for n, b in self.hyperparam_bounds.items()}  # fmt: skip
        return self.hyperparam_mutations

    def with_space(self, mutable: Mapping[str, Param]) -> PB2:
        if self.hyperparam_bounds is not None or self.hyperparam_mutations is not None:
            return self
        bounds = {}
        for name, p in mutable.items():
            if p.choices is not None:
                raise ValueError(f"space.{name}: PB2 explores continuous ranges "
                                 "(hyperparam_bounds); fix the choice or use --explore "
                                 "random")  # fmt: skip
            bounds[name] = (float(p.low), float(p.high))  # type: ignore[arg-type]
        return replace(self, hyperparam_bounds=bounds)

    def explorer(self, mutations: Mapping[str, Mutation]) -> GPBandit:
        bounds: dict[str, tuple[float, float, bool]] = {}
        for name, m in mutations.items():
            if not isinstance(m, Param) or m.choices is not None:
                raise ValueError(f"hyperparam_bounds.{name}: PB2 explores continuous ranges "
                                 "[low, high] only")  # fmt: skip
            bounds[name] = (float(m.low), float(m.high), m.integer)  # type: ignore[arg-type]
        return GPBandit(bounds, self.window)


# ------------------------------------------------------------------------------------- GP
def tv_kernel(a: np.ndarray, b: np.ndarray, s2: float, ell: float, eps: float) -> np.ndarray:
    """Ray Tune's time-varying squared exponential; column 0 is time, the rest the point."""
    dt = np.abs(a[:, :1] - b[:, :1].T)
    dx = ((a[:, None, 1:] - b[None, :, 1:]) ** 2).sum(-1)
    return s2 * np.exp(-dx / ell) * (1.0 - eps) ** (dt / 2.0)


class GP:
    """Exact GP regression with `tv_kernel`, hyperparameters fitted by marginal likelihood."""

    BOUNDS = ((-4.0, 2.5), (-3.0, 2.0), (-9.0, -0.7), (-9.0, 0.0))  # log s2, l, eps, noise

    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        self.X = X
        self.mu, self.sd = float(y.mean()), float(y.std()) or 1.0
        self.y = (y - self.mu) / self.sd
        best = None
        for start in ((0.0, 0.0, -3.0, -3.0), (0.0, -1.5, -5.0, -1.0)):
            r = minimize(self._nll, np.array(start), method="L-BFGS-B", bounds=self.BOUNDS)
            if best is None or r.fun < best.fun:
                best = r
        assert best is not None
        self.theta = np.exp(best.x)
        self._factor(self.theta)

    def _factor(self, theta: np.ndarray) -> float:
        s2, ell, eps, noise = theta
        K = tv_kernel(self.X, self.X, s2, ell, eps) + (noise + 1e-8) * np.eye(len(self.X))
        self.L = np.linalg.cholesky(K)
        self.alpha = np.linalg.solve(self.L.T, np.linalg.solve(self.L, self.y))
        return float(0.5 * self.y @ self.alpha + np.log(np.diag(self.L)).sum())

    def _nll(self, log_theta: np.ndarray) -> float:
        try:
            return self._factor(np.exp(log_theta))
        except np.linalg.LinAlgError:
            return 1e10

    def predict(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (in the data's units) at the rows of Z."""
        s2, ell, eps, _ = self.theta
        Ks = tv_kernel(Z, self.X, s2, ell, eps)
        mean = Ks @ self.alpha
        v = np.linalg.solve(self.L, Ks.T)
        var = np.maximum(s2 - (v * v).sum(0), 1e-12)
        return self.mu + self.sd * mean, self.sd * np.sqrt(var)


def ucb_kappa(n: int) -> float:
    """Ray Tune's PB2 exploration weight for n data points."""
    return math.sqrt(0.2 + max(0.0, math.log(0.4 * max(n, 1))))


class GPBandit:
    """PB2's explore step (see the module docstring); `observe` adds data, a call proposes."""

    def __init__(self, bounds: Mapping[str, tuple[float, float, bool]], window: int = 256):
        self.bounds = dict(bounds)
        self.names = list(bounds)
        self.window = window
        self.data: list[tuple[float, list[float], float]] = []  # (epoch, scaled x, change)
        self.pending: list[tuple[float, list[float]]] = []
        self._gp: GP | None = None

    def scale(self, config: Mapping[str, Any]) -> list[float]:
        out = []
        for n in self.names:
            lo, hi, _ = self.bounds[n]
            out.append(min(max((float(config[n]) - lo) / (hi - lo), 0.0), 1.0))
        return out

    def unscale(self, x: Sequence[float]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for n, v in zip(self.names, x, strict=True):
            lo, hi, integer = self.bounds[n]
            value = min(max(lo + float(v) * (hi - lo), lo), hi)
            out[n] = min(max(round(value), math.ceil(lo)), math.floor(hi)) if integer else value
        return out

    def observe(self, epoch: int, configs: list[dict[str, Any]], changes: list[float]) -> None:
        for config, change in zip(configs, changes, strict=True):
            if math.isfinite(change):
                self.data.append((float(epoch), self.scale(config), float(change)))
        self.data = self.data[-self.window :]
        self.pending, self._gp = [], None

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, float]:
        t_max = max(max(t for t, _, _ in self.data), 1.0)
        X = np.array([[t / t_max, *x] for t, x, _ in self.data], dtype=np.float64)
        y = np.array([c for _, _, c in self.data], dtype=np.float64)
        return X, y, t_max

    def __call__(self, epoch: int, config: Mapping[str, Any], rng: random.Random) -> dict[str, Any]:
        """New values for the mutated names of `config` (the member being copied)."""
        d = len(self.names)
        seed = rng.getrandbits(32)
        if len(self.data) < 2 or len({c for _, _, c in self.data}) < 2:
            gen = np.random.default_rng(seed)
            return {**config, **self.unscale(gen.uniform(size=d).tolist())}
        X, y, t_max = self._arrays()
        if self._gp is None:
            self._gp = GP(X, y)
        gp = self._gp
        t_next = float(epoch) / t_max
        if self.pending:  # kriging believer: earlier proposals of this round at their mean
            P = np.array([[t, *x] for t, x in self.pending])
            gp = GP.__new__(GP)
            gp.X, gp.mu, gp.sd, gp.theta = (np.vstack([X, P]), self._gp.mu, self._gp.sd,
                                            self._gp.theta)  # fmt: skip
            believed = (self._gp.predict(P)[0] - gp.mu) / gp.sd
            gp.y = np.concatenate([self._gp.y, believed])
            gp._factor(gp.theta)
        kappa = ucb_kappa(len(gp.X))

        def acq(x: np.ndarray) -> np.ndarray:
            Z = np.column_stack([np.full(len(x), t_next), x])
            mean, sd = gp.predict(Z)
            return mean + kappa * sd

        gen = np.random.default_rng(seed)
        starts = gen.uniform(size=(256, d))
        values = acq(starts)
        best = starts[int(np.argmax(values))]
        r = minimize(lambda x: -float(acq(x[None])[0]), best, method="L-BFGS-B",
                     bounds=[(0.0, 1.0)] * d)  # fmt: skip
        x = np.clip(r.x if -r.fun >= values.max() else best, 0.0, 1.0)
        self.pending.append((t_next, x.tolist()))
        return {**config, **self.unscale(x.tolist())}

    def state_dict(self) -> dict[str, Any]:
        return {"data": [(t, list(x), c) for t, x, c in self.data],
                "pending": [(t, list(x)) for t, x in self.pending]}  # fmt: skip

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.data = [(float(t), list(x), float(c)) for t, x, c in state["data"]]
        self.pending = [(float(t), list(x)) for t, x in state["pending"]]
        self._gp = None
