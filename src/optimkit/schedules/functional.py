r"""Pure, closed-form learning-rate schedules on tensors.

Every function here maps a step and hyperparameters to a float64 tensor and touches no state:

* ``step`` is an int, a float or a tensor of shape [] or [K] (one step count per member, so
  members that joined a population at different times each follow their own clock);
* every hyperparameter is a Python number or a tensor of shape [K];
* the result broadcasts all of them, e.g. ``step_lr(step, base_lr, step_size, gamma)`` with a
  [K] ``step`` and a [K] ``gamma`` is the [K] vector of member learning rates.

They use only tensor arithmetic and ``torch.where`` (no ``.item()``, no Python branch on a
tensor value), so they run on stacked tensors, on any device and under ``torch.func.vmap``.
Numeric arguments are not validated here (that would read tensor values); the scheduler
classes validate once at construction.

A trainer that keeps its state as tensors calls these directly (or a scheduler's ``lr_at``),
e.g. ``lr = cosine_annealing_lr(step, base_lr, T_max)`` with ``step`` a [K] counter; the
stateful ReduceLROnPlateau is split into `plateau_init` / `plateau_update` /
`plateau_reduce_lr` on a `PlateauState` of [K] tensors.

The formulas are torch.optim.lr_scheduler's closed forms (its ``_get_closed_form_lr`` or, for
the non-chainable schedules, its ``get_lr``), with the same operation order so that float64
results agree to a few ulps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

Number = int | float
TensorLike = Tensor | Number

F64 = torch.float64

CYCLIC_MODES = ("triangular", "triangular2", "exp_range")
SCALE_MODES = ("cycle", "iterations")
ANNEAL_STRATEGIES = ("cos", "linear")
PLATEAU_MODES = ("min", "max")
THRESHOLD_MODES = ("rel", "abs")


def f64(x: TensorLike) -> Tensor:
    """`x` as a float64 tensor (a tensor keeps its device; a number becomes a 0-d CPU tensor)."""
    if isinstance(x, Tensor):
        return x if x.dtype == F64 else x.to(F64)
    return torch.tensor(x, dtype=F64)


def _choice(name: str, value: str, valid: tuple[str, ...]) -> str:
    if value not in valid:
        raise ValueError(f"{name}: expected one of {list(valid)}, got {value!r}")
    return value


# ---------------------------------------------------------------------------------- decays
def step_lr(
    step: TensorLike, base_lr: TensorLike, step_size: TensorLike, gamma: TensorLike = 0.1
) -> Tensor:
    r"""StepLR: :math:`\eta_t = \eta_0 \gamma^{\lfloor t / s \rfloor}`."""
    n = torch.div(f64(step), f64(step_size), rounding_mode="floor")
    return f64(base_lr) * f64(gamma) ** n


def multistep_lr(
    step: TensorLike, base_lr: TensorLike, milestones: TensorLike, gamma: TensorLike = 0.1
) -> Tensor:
    r"""MultiStepLR: :math:`\eta_t = \eta_0 \gamma^{\#\{j : m_j \le t\}}`.

    ``milestones`` has shape [M] (shared) or [K, M] (per member); a milestone listed twice
    counts twice (torch's Counter semantics).
    """
    passed = f64(milestones) <= f64(step).unsqueeze(-1)
    return f64(base_lr) * f64(gamma) ** passed.sum(-1).to(F64)


def exponential_lr(step: TensorLike, base_lr: TensorLike, gamma: TensorLike) -> Tensor:
    r"""ExponentialLR: :math:`\eta_t = \eta_0 \gamma^t`."""
    return f64(base_lr) * f64(gamma) ** f64(step)


def constant_lr(
    step: TensorLike, base_lr: TensorLike, factor: TensorLike = 1.0 / 3, total_iters: TensorLike = 5
) -> Tensor:
    r"""ConstantLR: :math:`\eta_t = \eta_0 (f + [t \ge T](1 - f))`."""
    factor = f64(factor)
    done = (f64(step) >= f64(total_iters)).to(F64)
    return f64(base_lr) * (factor + done * (1 - factor))


def linear_lr(
    step: TensorLike,
    base_lr: TensorLike,
    start_factor: TensorLike = 1.0 / 3,
    end_factor: TensorLike = 1.0,
    total_iters: TensorLike = 5,
) -> Tensor:
    r"""LinearLR: :math:`\eta_t = \eta_0 (f_s + (f_e - f_s) \min(t, T) / T)`."""
    start, total = f64(start_factor), f64(total_iters)
    t = torch.minimum(f64(step), total)
    return f64(base_lr) * (start + (f64(end_factor) - start) * t / total)


def polynomial_lr(
    step: TensorLike, base_lr: TensorLike, total_iters: TensorLike = 5, power: TensorLike = 1.0
) -> Tensor:
    r"""PolynomialLR: :math:`\eta_t = \eta_0 (1 - \min(t, T) / T)^p`."""
    total = f64(total_iters)
    t = torch.minimum(f64(step), total)
    return f64(base_lr) * (1.0 - t / total) ** f64(power)


# ---------------------------------------------------------------------------------- cosine
def cosine_annealing_lr(
    step: TensorLike, base_lr: TensorLike, T_max: TensorLike, eta_min: TensorLike = 0.0
) -> Tensor:
    r"""CosineAnnealingLR (Loshchilov & Hutter, 2017, without restarts):

    .. math:: \eta_t = \eta_{min} + \tfrac12 (\eta_0 - \eta_{min})(1 + \cos(\pi t / T_{max}))

    Past :math:`T_{max}` it rises again with period :math:`2 T_{max}`, as torch's does.
    """
    eta_min = f64(eta_min)
    cos = torch.cos(math.pi * f64(step) / f64(T_max))
    return eta_min + (f64(base_lr) - eta_min) * (1 + cos) / 2


def warm_restart_position(
    step: TensorLike, T_0: TensorLike, T_mult: TensorLike = 1
) -> tuple[Tensor, Tensor]:
    r"""SGDR's position in its cycle: ``(T_cur, T_i)`` at ``step`` (may be fractional).

    Cycle :math:`n` starts at :math:`S_n = T_0 (m^n - 1)/(m - 1)` (:math:`n T_0` for
    :math:`m = 1`) and lasts :math:`T_i = T_0 m^n`. :math:`n` is estimated with a logarithm
    and then corrected with exact int64 arithmetic, so integer steps land on the same cycle
    as torch's step-by-step counting, also at the boundaries where ``log`` rounds down
    (torch's own ``step(epoch)`` path misplaces e.g. epoch 7 for ``T_0=1, T_mult=2``).
    """
    step, T_0, T_mult = f64(step), f64(T_0), f64(T_mult)
    s = step.clamp_min(0)
    geometric = T_mult > 1
    m = torch.where(geometric, T_mult, 2.0)
    n_geo = torch.floor(torch.log1p(s / T_0 * (m - 1)) / torch.log(m))
    n_lin = torch.floor(s / T_0)
    n = torch.where(geometric, n_geo, n_lin).to(torch.int64).clamp_min(0)
    t0, mi = T_0.to(torch.int64), m.to(torch.int64)

    def start(k: Tensor) -> Tensor:
        return torch.where(geometric, t0 * (mi**k - 1) // (mi - 1), t0 * k)

    n = (n - (start(n) > s).to(torch.int64)).clamp_min(0)
    n = n + (start(n + 1) <= s).to(torch.int64)
    T_i = torch.where(geometric, t0 * mi**n, t0).to(F64)
    return step - start(n).to(F64), T_i


def cosine_annealing_warm_restarts_lr(
    step: TensorLike,
    base_lr: TensorLike,
    T_0: TensorLike,
    T_mult: TensorLike = 1,
    eta_min: TensorLike = 0.0,
) -> Tensor:
    r"""CosineAnnealingWarmRestarts (SGDR, Loshchilov & Hutter, 2017):

    .. math:: \eta_t = \eta_{min} + \tfrac12 (\eta_0 - \eta_{min})(1 + \cos(\pi T_{cur} / T_i))

    with ``(T_cur, T_i)`` from `warm_restart_position`.
    """
    T_cur, T_i = warm_restart_position(step, T_0, T_mult)
    eta_min = f64(eta_min)
    return eta_min + (f64(base_lr) - eta_min) * (1 + torch.cos(math.pi * T_cur / T_i)) / 2


# ---------------------------------------------------------------------------------- cyclic
def cyclic_position(
    step: TensorLike,
    step_size_up: TensorLike = 2000,
    step_size_down: TensorLike | None = None,
    mode: str = "triangular",
    gamma: TensorLike = 1.0,
    scale_fn: Callable[[Tensor], Tensor] | None = None,
    scale_mode: str = "cycle",
) -> tuple[Tensor, Tensor]:
    r"""CLR's (Smith, 2017) triangle height and amplitude scale at ``step``.

    With :math:`c = \lfloor 1 + t / (u + d) \rfloor`, :math:`x = 1 + t/(u + d) - c` and
    :math:`r = u / (u + d)` the height is :math:`x / r` while :math:`x \le r`, else
    :math:`(x - 1)/(r - 1)`. The scale is 1 (triangular), :math:`2^{1-c}` (triangular2),
    :math:`\gamma^t` (exp_range) or ``scale_fn`` of :math:`c` or :math:`t` (``scale_mode``);
    a custom ``scale_fn`` receives a float64 tensor and must return one.
    """
    step = f64(step)
    up = f64(step_size_up)
    down = up if step_size_down is None else f64(step_size_down)
    total = up + down
    ratio = up / total
    cycle = torch.floor(1 + step / total)
    x = 1.0 + step / total - cycle
    height = torch.where(x <= ratio, x / ratio, (x - 1) / (ratio - 1))
    if scale_fn is not None:
        scale = f64(scale_fn(cycle if _choice("scale_mode", scale_mode, SCALE_MODES) == "cycle"
                             else step))  # fmt: skip
    elif _choice("mode", mode, CYCLIC_MODES) == "triangular":
        scale = torch.ones_like(cycle)
    elif mode == "triangular2":
        scale = 1 / (2.0 ** (cycle - 1))
    else:
        scale = f64(gamma) ** step
    return height, scale


def cyclic_lr(
    step: TensorLike,
    base_lr: TensorLike,
    max_lr: TensorLike,
    step_size_up: TensorLike = 2000,
    step_size_down: TensorLike | None = None,
    mode: str = "triangular",
    gamma: TensorLike = 1.0,
    scale_fn: Callable[[Tensor], Tensor] | None = None,
    scale_mode: str = "cycle",
) -> Tensor:
    r"""CyclicLR: :math:`\eta_t = \eta_{base} + (\eta_{max} - \eta_{base})\,h_t\,s_t` with the
    height :math:`h_t` and scale :math:`s_t` of `cyclic_position`."""
    height, scale = cyclic_position(
        step, step_size_up, step_size_down, mode, gamma, scale_fn, scale_mode
    )
    base_lr = f64(base_lr)
    return base_lr + (f64(max_lr) - base_lr) * height * scale


def cyclic_momentum(
    step: TensorLike,
    base_momentum: TensorLike = 0.8,
    max_momentum: TensorLike = 0.9,
    step_size_up: TensorLike = 2000,
    step_size_down: TensorLike | None = None,
    mode: str = "triangular",
    gamma: TensorLike = 1.0,
    scale_fn: Callable[[Tensor], Tensor] | None = None,
    scale_mode: str = "cycle",
) -> Tensor:
    r"""CyclicLR's momentum, cycled inversely to the lr:
    :math:`\mu_t = \mu_{max} - (\mu_{max} - \mu_{base})\,h_t\,s_t`."""
    height, scale = cyclic_position(
        step, step_size_up, step_size_down, mode, gamma, scale_fn, scale_mode
    )
    max_momentum = f64(max_momentum)
    return max_momentum - (max_momentum - f64(base_momentum)) * height * scale


# ------------------------------------------------------------------------------- one cycle
def _anneal(start: Tensor, end: Tensor, pct: Tensor, strategy: str) -> Tensor:
    if _choice("anneal_strategy", strategy, ANNEAL_STRATEGIES) == "cos":
        return end + (start - end) / 2.0 * (torch.cos(math.pi * pct) + 1)
    return (end - start) * pct + start


def one_cycle_interpolate(
    step: TensorLike,
    total_steps: TensorLike,
    start: TensorLike,
    peak: TensorLike,
    end: TensorLike,
    pct_start: TensorLike = 0.3,
    anneal_strategy: str = "cos",
    three_phase: bool = False,
) -> Tensor:
    r"""The 1cycle shape through ``start -> peak -> end`` (Smith & Topin, 2019).

    Two phases (fastai's default): ``start -> peak`` over steps :math:`[0, pT - 1]`, then
    ``peak -> end`` up to :math:`T - 1`. Three phases (the paper's): ``start -> peak``,
    ``peak -> start`` up to :math:`2pT - 2`, then ``start -> end``. Within a phase
    :math:`\mathrm{pct} = (t - a)/(b - a)` and the value is annealed with ``anneal_strategy``.
    A phase of zero length (where torch raises ZeroDivisionError) yields its start value.
    """
    step, total, pct_start = f64(step), f64(total_steps), f64(pct_start)
    start, peak, end = f64(start), f64(peak), f64(end)
    e1 = pct_start * total - 1
    last = total - 1
    zero_step = torch.zeros_like(e1)
    bounds: list[tuple[Tensor, Tensor, Tensor, Tensor]]
    if three_phase:
        e2 = 2 * pct_start * total - 2
        bounds = [(zero_step, e1, start, peak), (e1, e2, peak, start), (e2, last, start, end)]
        selectors = [step <= e1, step <= e2]
    else:
        bounds = [(zero_step, e1, start, peak), (e1, last, peak, end)]
        selectors = [step <= e1]
    out: Tensor | None = None
    for i in reversed(range(len(bounds))):
        a, b, v0, v1 = bounds[i]
        span = b - a
        zero = span == 0
        pct = torch.where(zero, 0.0, (step - a) / torch.where(zero, 1.0, span))
        value = _anneal(v0, v1, pct, anneal_strategy)
        out = value if out is None else torch.where(selectors[i], value, out)
    assert out is not None
    return out


def one_cycle_lr(
    step: TensorLike,
    max_lr: TensorLike,
    total_steps: TensorLike,
    pct_start: TensorLike = 0.3,
    anneal_strategy: str = "cos",
    div_factor: TensorLike = 25.0,
    final_div_factor: TensorLike = 1e4,
    three_phase: bool = False,
) -> Tensor:
    r"""OneCycleLR: `one_cycle_interpolate` through :math:`\eta_{max}/d \to \eta_{max} \to
    \eta_{max}/(d\,d_f)`. Steps past ``total_steps`` extrapolate the last phase (torch's
    scheduler raises there; the class does too)."""
    initial = f64(max_lr) / f64(div_factor)
    minimum = initial / f64(final_div_factor)
    return one_cycle_interpolate(
        step, total_steps, initial, max_lr, minimum, pct_start, anneal_strategy, three_phase
    )


def one_cycle_momentum(
    step: TensorLike,
    total_steps: TensorLike,
    base_momentum: TensorLike = 0.85,
    max_momentum: TensorLike = 0.95,
    pct_start: TensorLike = 0.3,
    anneal_strategy: str = "cos",
    three_phase: bool = False,
) -> Tensor:
    r"""OneCycleLR's momentum: :math:`\mu_{max} \to \mu_{base} \to \mu_{max}` (inverse to
    the lr; the third phase, if any, stays at :math:`\mu_{max}`)."""
    return one_cycle_interpolate(
        step, total_steps, max_momentum, base_momentum, max_momentum, pct_start,
        anneal_strategy, three_phase,
    )  # fmt: skip


# --------------------------------------------------------------------------------- plateau
class PlateauState(NamedTuple):
    """ReduceLROnPlateau's per-member state: all tensors of shape [] or [K]."""

    best: Tensor
    num_bad_epochs: Tensor
    cooldown_counter: Tensor


def plateau_init(mode: str = "min", shape: tuple[int, ...] = (), device=None) -> PlateauState:
    """Fresh state: best = +inf (min) or -inf (max), counters 0 (int64)."""
    worse = math.inf if _choice("mode", mode, PLATEAU_MODES) == "min" else -math.inf
    return PlateauState(
        torch.full(shape, worse, dtype=F64, device=device),
        torch.zeros(shape, dtype=torch.int64, device=device),
        torch.zeros(shape, dtype=torch.int64, device=device),
    )


def plateau_is_better(
    metrics: Tensor, best: Tensor, mode: str, threshold: TensorLike, threshold_mode: str
) -> Tensor:
    r"""Significant improvement: ``a < best (1 - thr)`` (min, rel), ``a < best - thr``
    (min, abs), ``a > best (1 + thr)`` (max, rel), ``a > best + thr`` (max, abs)."""
    threshold = f64(threshold)
    rel = _choice("threshold_mode", threshold_mode, THRESHOLD_MODES) == "rel"
    if _choice("mode", mode, PLATEAU_MODES) == "min":
        return metrics < (best * (1.0 - threshold) if rel else best - threshold)
    return metrics > (best * (threshold + 1.0) if rel else best + threshold)


def plateau_update(
    state: PlateauState,
    metrics: TensorLike,
    mode: str = "min",
    patience: TensorLike = 10,
    threshold: TensorLike = 1e-4,
    threshold_mode: str = "rel",
    cooldown: TensorLike = 0,
) -> tuple[PlateauState, Tensor]:
    """One ReduceLROnPlateau observation per member; returns the new state and the boolean
    mask of members whose lr is to be reduced now (torch's order: best / bad-epoch count,
    then the cooldown, then the patience test). A NaN metric counts as a bad epoch."""
    metrics = f64(metrics)
    best, bad, cool = state
    better = plateau_is_better(metrics, best, mode, threshold, threshold_mode)
    best = torch.where(better, metrics, best)
    bad = torch.where(better, 0, bad + 1)
    cooling = cool > 0
    cool = torch.where(cooling, cool - 1, cool)
    bad = torch.where(cooling, 0, bad)
    reduce = bad > f64(patience)
    cool = torch.where(reduce, f64(cooldown).to(torch.int64), cool)
    bad = torch.where(reduce, 0, bad)
    return PlateauState(best, bad, cool), reduce


def plateau_reduce_lr(
    lr: TensorLike, reduce: Tensor, factor: TensorLike = 0.1, min_lr: TensorLike = 0.0,
    eps: TensorLike = 1e-8,
) -> Tensor:  # fmt: skip
    r"""Where ``reduce``: :math:`\eta \leftarrow \max(f \eta, \eta_{min})`, unless that changes
    :math:`\eta` by no more than ``eps`` (torch's rule)."""
    lr = f64(lr)
    new = torch.maximum(lr * f64(factor), f64(min_lr))
    return torch.where(reduce & (lr - new > f64(eps)), new, lr)
