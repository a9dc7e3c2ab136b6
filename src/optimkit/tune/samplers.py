"""Optuna samplers and pruners by name (Optuna owns search; optimkit only picks)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState
from scipy import special

from optimkit.tune.space import SearchSpace

SAMPLERS = ("tpe", "random", "grid", "qmc", "gp", "cmaes", "nsga2")
PRUNERS = ("none", "median", "asha", "hyperband")
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # what TPE fits on


def make_sampler(
    name: str, space: SearchSpace, seed: int | None, grid_points: int = 4, multi: bool = False
) -> optuna.samplers.BaseSampler:
    """tpe (Bayesian, default: `TPEBatchSampler`, Optuna's multivariate TPE fitted once per
    wave of asks; TPESampler with the constant liar for several objectives), random, grid
    (choices, or `grid_points` values per range), qmc (scrambled Sobol), gp (Gaussian
    process, Bayesian), cmaes, nsga2 (genetic algorithm; multi-objective too)."""
    if name not in SAMPLERS:
        raise ValueError(f"sampler: unknown name {name!r}; valid: {', '.join(SAMPLERS)}")
    if multi and name not in ("nsga2", "random", "tpe", "grid", "qmc", "gp"):
        raise ValueError(f"sampler: {name!r} is single-objective; use nsga2 for several objectives")
    if name == "tpe":
        return TPEBatchSampler(seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler(space.grid(grid_points), seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    return optuna.samplers.NSGAIISampler(seed=seed)


class TPEBatchSampler(optuna.samplers.BaseSampler):
    """Multivariate TPE whose Parzen estimators are fitted once per wave of asks.

    The estimators are Optuna's `TPESampler`'s (multivariate, constant liar): the n finished
    trials (complete ones ranked by value, then pruned ones by last step and value) split into
    the best gamma(n) = min(ceil(0.1 n), 25), fitting l(x), and the others with the running
    trials, fitting g(x). Each is a mixture of product kernels, one per trial (in trial order,
    weight 1, or a ramp from 1/m up to 1 for all but the 25 latest of m), plus a prior kernel
    of weight 1. On a range, a kernel is a normal truncated to [low, high] (on the log scale
    for a log range; an int has the mass of [x - 1/2, x + 1/2]) centred on the trial's value,
    its sigma the larger gap to its sorted neighbours (the ends of the range included),
    clipped to [(high - low) / min(100, m + 2), high - low]; the prior is N((low + high) / 2,
    high - low). On choices, a kernel puts 1 on the trial's choice and 1 / (m + 1) on each,
    normalized. A proposal is the best of `n_ei_candidates` candidates drawn from l by
    log l(x) - log g(x) (Bergstra et al., "Algorithms for Hyper-Parameter Optimization",
    NeurIPS 2011; Watanabe, arXiv:2304.11127).

    TPESampler fits both estimators at every ask, a pass over the study in Python (~7 ms per
    ask at 300 trials). Here a fit serves every ask until a trial finishes, which is once per
    wave of a population tuner, and the log densities of all the wave's candidates are one
    matrix product over the continuous dimensions. What differs from TPESampler: the trials
    asked since the fit are not in g yet (TPESampler's constant liar adds each one there; here
    the proposals of one wave are independent draws). Before `n_startup_trials` finished
    trials, for names outside the relative search space (define-by-run) and for several
    objectives, asks go to TPESampler itself.
    """

    def __init__(
        self, seed: int | None = None, *, n_startup_trials: int = 10, n_ei_candidates: int = 24,
        batch: int = 16,
    ) -> None:  # fmt: skip
        self.tpe = optuna.samplers.TPESampler(
            seed=seed, multivariate=True, constant_liar=True, n_startup_trials=n_startup_trials,
            n_ei_candidates=n_ei_candidates,
        )  # fmt: skip
        self._rng = np.random.default_rng(seed)
        self.n_startup_trials, self.n_ei_candidates, self.batch = (
            n_startup_trials, n_ei_candidates, batch,
        )  # fmt: skip
        self.fits = 0  # estimators fitted
        self._study: optuna.Study | None = None
        self._seen, self._finished = 0, 0  # see _count
        self._open: list[int] = []
        self._counted: tuple[int, int, int] = (-1, -1, 0)  # (trial, trials, finished) last
        self._space: tuple[Any, dict[str, BaseDistribution]] | None = None
        self._key: tuple[Any, ...] | None = None
        self._fitted: tuple[_Parzen, _Parzen] | None = None
        self._proposals: list[np.ndarray] = []

    def reseed_rng(self) -> None:
        self.tpe.reseed_rng()
        self._rng = np.random.default_rng()

    def _count(self, study: optuna.Study, trials: list[FrozenTrial]) -> int:
        """The study's finished (complete or pruned) trials, counted incrementally: only the
        trials new since the last call and those that had not ended then are looked at."""
        if study is not self._study:
            self._study, self._seen, self._open, self._finished = study, 0, [], 0
        self._open.extend(range(self._seen, len(trials)))
        self._seen = len(trials)
        self._finished += sum(1 for i in self._open if trials[i].state in _FINISHED)
        self._open = [i for i in self._open if not trials[i].state.is_finished()]
        return self._finished

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        """TPESampler's (the intersection of the finished trials' spaces), computed again only
        once a trial has finished."""
        trials = study.get_trials(deepcopy=False)
        key = (study, self._count(study, trials))
        self._counted = (trial.number, len(trials), key[1])  # sample_relative's, next
        if self._space is None or self._space[0] != key:
            self._space = key, self.tpe.infer_relative_search_space(study, trial)
        return dict(self._space[1])

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space or len(study.directions) > 1:
            return self.tpe.sample_relative(study, trial, search_space) if search_space else {}
        trials = study.get_trials(deepcopy=False)
        if self._counted[:2] == (trial.number, len(trials)) and study is self._study:
            n = self._counted[2]  # counted just now by infer_relative_search_space
        else:
            n = self._count(study, trials)
        if n < self.n_startup_trials:
            return {}
        key = (study, n, tuple(search_space.items()))
        if key != self._key:
            finished = [t for t in trials if t.state in _FINISHED]
            running = [trials[i] for i in self._open
                       if trials[i].state == TrialState.RUNNING and i != trial.number]  # fmt: skip
            self._fitted = _fit(study, finished, running, search_space)
            self._key, self._proposals = key, []
            self.fits += 1
        if not self._proposals:
            self._proposals = list(self._propose(self.batch))
        x = self._proposals.pop()
        return {n: d.to_external_repr(v) for (n, d), v in zip(search_space.items(), x, strict=True)}

    def _propose(self, n: int) -> np.ndarray:
        """`n` proposals: each the best of its `n_ei_candidates` draws from l by log l - log g."""
        assert self._fitted is not None
        below, above = self._fitted
        x = below.sample(self._rng, n * self.n_ei_candidates)
        score = (below.log_pdf(x) - above.log_pdf(x)).reshape(n, self.n_ei_candidates)
        return x.reshape(n, self.n_ei_candidates, -1)[np.arange(n), score.argmax(1)]

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:  # fmt: skip
        return self.tpe.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.tpe.before_trial(study, trial)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
        values: Sequence[float] | None,
    ) -> None:  # fmt: skip
        self.tpe.after_trial(study, trial, state, values)


def _fit(
    study: optuna.Study, finished: list[FrozenTrial], running: list[FrozenTrial],
    space: dict[str, BaseDistribution],
) -> tuple[_Parzen, _Parzen]:  # fmt: skip
    """l and g of `TPEBatchSampler`: TPESampler's split (single objective)."""
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    complete = sorted((t for t in finished if t.state == TrialState.COMPLETE),
                      key=lambda t: sign * float(t.values[0]))  # fmt: skip
    pruned = sorted((t for t in finished if t.state == TrialState.PRUNED),
                    key=lambda t: _pruned_rank(t, sign))  # fmt: skip
    ranked = complete + pruned
    n_below = min(math.ceil(0.1 * len(finished)), 25)

    def rows(trials: list[FrozenTrial]) -> np.ndarray:
        trials = sorted((t for t in trials if space.keys() <= t.params.keys()),
                        key=lambda t: t.number)  # fmt: skip
        x = [[d.to_internal_repr(t.params[n]) for n, d in space.items()] for t in trials]
        return np.array(x, dtype=float).reshape(len(trials), len(space))

    dists = list(space.values())
    return _Parzen(rows(ranked[:n_below]), dists), _Parzen(rows(ranked[n_below:] + running), dists)


def _pruned_rank(t: FrozenTrial, sign: float) -> tuple[float, float]:
    """TPESampler's order of pruned trials: the latest step first, then by its value."""
    if not t.intermediate_values:
        return 1.0, 0.0
    step, value = max(t.intermediate_values.items())
    return -step, math.inf if math.isnan(value) else sign * value


_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _log_mass(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log(Phi(b) - Phi(a)) for a < b, elementwise, without cancellation in either tail."""
    flip = a > 0
    a, b = np.where(flip, -b, a), np.where(flip, -a, b)
    la, lb = special.log_ndtr(a), special.log_ndtr(b)
    return lb + np.log1p(-np.exp(la - lb))


def _truncated_normal(rng: np.random.Generator, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Standard normals truncated to [a, b] by inversion (in the lower tail, mirrored)."""
    flip = a > 0
    a, b = np.where(flip, -b, a), np.where(flip, -a, b)
    u = rng.random(a.shape)
    with np.errstate(divide="ignore"):
        log_p = np.logaddexp(special.log_ndtr(a) + np.log1p(-u), special.log_ndtr(b) + np.log(u))
    z = np.clip(special.ndtri_exp(log_p), a, b)
    return np.where(flip, -z, z)


def _weights(m: int) -> np.ndarray:
    """TPE's kernel weights of m trials in trial order: 1 for the 25 latest, a ramp before."""
    if m < 25:
        return np.ones(m)
    return np.concatenate([np.linspace(1.0 / m, 1.0, m - 25), np.ones(25)])


class _Parzen:
    """TPE's mixture of product kernels (see `TPEBatchSampler`) on the rows of `obs` (trials
    in trial order, Optuna's internal representation: values, or indices of choices). Ranges
    are mapped onto [0, 1] (after the log, the ends widened by half a step for a step)."""

    def __init__(self, obs: np.ndarray, space: list[BaseDistribution]) -> None:
        m = len(obs)
        w = np.append(_weights(m), 1.0)
        self.log_w, self.space = np.log(w / w.sum()), space
        self.mu: dict[int, np.ndarray] = {}
        self.sigma: dict[int, np.ndarray] = {}
        self.log_probs: dict[int, np.ndarray] = {}
        for j, d in enumerate(space):
            if isinstance(d, CategoricalDistribution):
                p = np.full((m + 1, len(d.choices)), 1.0 / (m + 1))
                p[np.arange(m), obs[:, j].astype(int)] += 1.0
                self.log_probs[j] = np.log(p / p.sum(1, keepdims=True))
                continue
            mu = self._unit(j, obs[:, j])
            order = np.argsort(mu)
            gaps = np.diff(np.concatenate([[0.0], mu[order], [1.0]]))
            s = np.maximum(gaps[:-1], gaps[1:])
            if m >= 2:  # the outermost trials: the gap to their inner neighbour
                s[0], s[-1] = gaps[1], gaps[-2]
            sigma = np.empty(m)
            sigma[order] = s
            self.mu[j] = np.append(mu, 0.5)
            self.sigma[j] = np.append(np.clip(sigma, 1.0 / min(100.0, m + 2.0), 1.0), 1.0)
        # log w_k + sum over the continuous j of log N_trunc(u_j; mu_kj, s_kj), as the
        # coefficients of (u_j^2, u_j, 1): one matrix product evaluates every kernel
        self.cont = [j for j in self.mu if space[j].step is None]  # type: ignore[attr-defined]
        mu = np.array([self.mu[j] for j in self.cont]).T.reshape(m + 1, len(self.cont))
        p = np.array([self.sigma[j] for j in self.cont]).T.reshape(m + 1, len(self.cont)) ** -2.0
        log_norm = 0.5 * np.log(p) - _LOG_SQRT_2PI - _log_mass(-mu * p**0.5, (1 - mu) * p**0.5)
        const = self.log_w + (log_norm - 0.5 * mu**2 * p).sum(1)
        self.quadratic = np.ascontiguousarray(
            np.concatenate([-0.5 * p, mu * p, const[:, None]], 1).T
        )

    def _unit(self, j: int, x: np.ndarray) -> np.ndarray:
        d = self.space[j]
        assert isinstance(d, (FloatDistribution, IntDistribution))
        half = 0.0 if d.step is None else d.step / 2
        f = np.log if d.log else np.asarray
        lo, hi = f(d.low - half), f(d.high + half)
        return (f(x) - lo) / (hi - lo)

    def _from_unit(self, j: int, u: np.ndarray) -> np.ndarray:
        d = self.space[j]
        assert isinstance(d, (FloatDistribution, IntDistribution))
        half = 0.0 if d.step is None else d.step / 2
        if d.log:
            lo, hi = math.log(d.low - half), math.log(d.high + half)
            x = np.exp(lo + u * (hi - lo))
        else:
            x = d.low - half + u * (d.high - d.low + 2 * half)
        if d.step is None:
            return np.clip(x, d.low, d.high)
        return np.clip(d.low + np.round((x - d.low) / d.step) * d.step, d.low, d.high)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        k = rng.choice(len(self.log_w), p=np.exp(self.log_w), size=n)
        out = np.empty((n, len(self.space)))
        for j in range(len(self.space)):
            if j in self.log_probs:
                cum = np.exp(self.log_probs[j][k]).cumsum(1)
                out[:, j] = np.minimum((cum < rng.random(n)[:, None] * cum[:, -1:]).sum(1),
                                       cum.shape[1] - 1)  # fmt: skip
            else:
                mu, s = self.mu[j][k], self.sigma[j][k]
                z = _truncated_normal(rng, -mu / s, (1 - mu) / s)
                out[:, j] = self._from_unit(j, mu + s * z)
        return out

    def log_pdf(self, x: np.ndarray) -> np.ndarray:
        """log density of each row of `x` (on the unit scale of each range; the same scale in
        l and g, so log l - log g is TPE's)."""
        cont = self.cont
        u = np.array([self._unit(j, x[:, j]) for j in cont]).T.reshape(len(x), len(cont))
        lp = np.concatenate([u**2, u, np.ones((len(x), 1))], 1) @ self.quadratic
        for j, mu in self.mu.items():
            if j in self.cont:
                continue
            d, s = self.space[j], self.sigma[j]
            values, inv = np.unique(x[:, j], return_inverse=True)
            left = self._unit(j, values - d.step / 2)[:, None]  # type: ignore[attr-defined]
            right = self._unit(j, values + d.step / 2)[:, None]  # type: ignore[attr-defined]
            mass = _log_mass((left - mu) / s, (right - mu) / s) - _log_mass(-mu / s, (1 - mu) / s)
            lp += mass[inv.ravel()]
        for j, log_p in self.log_probs.items():
            lp += log_p.T[x[:, j].astype(int)]
        top = lp.max(1, keepdims=True)  # in place (no large temporaries); kernels below
        lp -= top  # e^-60 of the top count as 0 (exp's slow path on underflow)
        np.exp(np.maximum(lp, -60.0, out=lp), out=lp)
        return np.log(lp.sum(1)) + top[:, 0]


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    """none, median (after 3 epochs of 5 trials), asha (successive halving) or hyperband,
    with resources counted in epochs."""
    if name not in PRUNERS:
        raise ValueError(f"pruner: unknown name {name!r}; valid: {', '.join(PRUNERS)}")
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3)
    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs,
                                          reduction_factor=3)  # fmt: skip


def describe(obj: Any) -> str:
    return type(obj).__name__
