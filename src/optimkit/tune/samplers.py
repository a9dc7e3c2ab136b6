"""Optuna samplers and pruners by name (Optuna owns search; optimkit only picks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from optimkit.tune.space import SearchSpace

SAMPLERS = ("tpe", "random", "grid", "qmc", "gp", "cmaes", "nsga2")
PRUNERS = ("none", "median", "asha", "hyperband")
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # what TPE fits on
_ENDED = (*_FINISHED, TrialState.FAIL)
VIEW_NAME = "tpe-view"


def make_sampler(
    name: str, space: SearchSpace, seed: int | None, grid_points: int = 4, multi: bool = False
) -> optuna.samplers.BaseSampler:
    """tpe (Bayesian, default: `TPEWindowSampler`, multivariate with the constant liar;
    Optuna's TPESampler for several objectives), random, grid (choices, or `grid_points`
    values per range), qmc (scrambled Sobol), gp (Gaussian process, Bayesian), cmaes, nsga2
    (genetic algorithm; multi-objective too)."""
    if name not in SAMPLERS:
        raise ValueError(f"sampler: unknown name {name!r}; valid: {', '.join(SAMPLERS)}")
    if multi and name not in ("nsga2", "random", "tpe", "grid", "qmc", "gp"):
        raise ValueError(f"sampler: {name!r} is single-objective; use nsga2 for several objectives")
    if name == "tpe":
        if multi:
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
        return TPEWindowSampler(seed)
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


class TPEWindowSampler(optuna.samplers.BaseSampler):
    """Optuna's `TPESampler`, fitted on a bounded view of the study.

    TPE fits two Parzen estimators per ask, l(x) on the good trials (the best gamma(n) =
    min(ceil(0.1 n), 25) complete ones) and g(x) on the others, and proposes the candidate
    drawn from l that maximizes l(x)/g(x) (Bergstra et al., "Algorithms for Hyper-Parameter
    Optimization", NeurIPS 2011; Watanabe, arXiv:2304.11127). Its cost per ask grows with the
    study (here ~11 µs per trial: 12 ms per ask at 1,000 trials), so a long search of small
    models spends more time sampling than training. TPE here sees a view of the study, an
    in-memory study kept up to date through Optuna's public storage API (each trial written
    into it once when asked, and once when it ends): while the study holds at most `window`
    finished trials the view is the whole study, and the proposals are TPESampler's own for
    the same seed. Past that, the view is rebuilt once `window // 4` more have ended: the
    `keep_best` best complete trials (TPE's good group exactly, for keep_best >= 25 and
    window >= 250), the latest other finished trials up to `window`, and every running trial
    (the constant liar). So l(x) stays TPE's, g(x) is fitted on the latest trials, and an ask
    costs what it costs at ~1.25 `window` trials. Single-objective studies (several
    objectives: `TPESampler` as it is).
    """

    def __init__(
        self, seed: int | None = None, *, window: int = 256, keep_best: int = 25,
        multivariate: bool = True, constant_liar: bool = True,
    ) -> None:  # fmt: skip
        if not 1 <= keep_best <= window:
            raise ValueError(f"keep_best, window: expected 1 <= keep_best <= window, got "
                             f"{keep_best}, {window}")  # fmt: skip
        self.tpe = optuna.samplers.TPESampler(
            seed=seed, multivariate=multivariate, constant_liar=constant_liar
        )
        self.window, self.keep_best = window, keep_best
        self.rebuilds = 0  # views built from scratch
        self._owner: optuna.Study | None = None
        self._storage = optuna.storages.InMemoryStorage()
        self._view_id = -1
        self._entry: dict[int, int] = {}  # live number of a running trial -> its view trial id
        self._fresh: list[int] = []  # asked since the last call: their params not copied yet
        self._copied: set[int] = set()  # view trial ids holding their params
        self._ended = 0  # ended trials of the owner accounted for in the view
        self._in_view = 0  # finished trials in the view

    def reseed_rng(self) -> None:
        self.tpe.reseed_rng()

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self.tpe.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        trials = study.get_trials(deepcopy=False)
        self._update(study, trials, trial)
        # this trial joins the view as running: TPE's constant liar records its proposal there
        view_id = self._storage.create_new_trial(self._view_id)
        self._entry[trial.number] = view_id
        self._fresh.append(trial.number)
        # a Study object per ask: a Study caches its trials until its own next ask
        view = optuna.Study(study_name=VIEW_NAME, storage=self._storage)
        return self.tpe.sample_relative(view, self._storage.get_trial(view_id), search_space)

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

    def view(self) -> list[FrozenTrial]:
        """The trials of the view as TPE saw them at the last ask."""
        return [] if self._owner is None else self._storage.get_all_trials(self._view_id)

    # ------------------------------------------------------------------------------ the view
    def _update(self, study: optuna.Study, trials: list[FrozenTrial], trial: FrozenTrial) -> None:
        """Bring the view up to date: the params of the trials asked since the last call, the
        trials that ended since (in place), or a rebuild."""
        ended = sum(1 for t in trials if t.state in _ENDED)
        if study is not self._owner:
            return self._build(study, trials, trial, ended)
        for number in self._fresh:  # their params are known now (relative and independent)
            t = trials[number]
            if number in self._entry and t.state == TrialState.RUNNING:
                self._copy_params(self._entry[number], t)
        self._fresh = []
        if ended == self._ended:
            return None
        done = [n for n in self._entry if trials[n].state in _ENDED]
        finished = sum(1 for n in done if trials[n].state in _FINISHED)
        over = self._in_view + finished > self.window + max(self.window // 4, 1)
        if len(done) != ended - self._ended or (over and len(study.directions) == 1):
            return self._build(study, trials, trial, ended)  # a trial the view lacks, or full
        for number in done:
            t, view_id = trials[number], self._entry.pop(number)
            if t.state != TrialState.FAIL:
                self._copy_params(view_id, t)
                for step, value in t.intermediate_values.items():
                    self._storage.set_trial_intermediate_value(view_id, step, value)
            self._storage.set_trial_state_values(view_id, t.state, t.values)
        self._in_view += finished
        self._ended = ended
        return None

    def _copy_params(self, view_id: int, t: FrozenTrial) -> None:
        if view_id in self._copied:
            return
        for name, value in t.params.items():
            dist = t.distributions[name]
            self._storage.set_trial_param(view_id, name, dist.to_internal_repr(value), dist)
        self._copied.add(view_id)

    def _select(self, study: optuna.Study, finished: list[FrozenTrial]) -> list[FrozenTrial]:
        """The finished trials of the view: all of them up to `window`, else the best and the
        latest."""
        if len(finished) <= self.window or len(study.directions) > 1:
            return finished
        complete = [t for t in finished if t.state == TrialState.COMPLETE]
        sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
        best = sorted(complete, key=lambda t: (sign * float(t.values[0]), t.number))
        keep = {t.number for t in best[: self.keep_best]}
        for t in reversed(finished):
            if len(keep) >= self.window:
                break
            keep.add(t.number)
        return [t for t in finished if t.number in keep]

    def _build(
        self, study: optuna.Study, trials: list[FrozenTrial], trial: FrozenTrial, ended: int
    ) -> None:
        storage = optuna.storages.InMemoryStorage()
        view_id = storage.create_new_study(study.directions, VIEW_NAME)
        finished = self._select(study, [t for t in trials if t.state in _FINISHED])
        running = [t for t in trials if t.state == TrialState.RUNNING and t.number != trial.number]
        self._entry, self._copied = {}, set()
        for t in sorted(finished + running, key=lambda t: t.number):
            template = t
            if t.state == TrialState.RUNNING:  # its params only (no sampler's attributes)
                template = optuna.trial.create_trial(
                    state=TrialState.RUNNING, params=t.params, distributions=t.distributions
                )
            created = storage.create_new_trial(view_id, template_trial=template)
            self._copied.add(created)
            if t.state == TrialState.RUNNING:
                self._entry[t.number] = created
        self._owner, self._storage, self._view_id = study, storage, view_id
        self._fresh, self._ended, self._in_view = [], ended, len(finished)
        self.rebuilds += 1


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
