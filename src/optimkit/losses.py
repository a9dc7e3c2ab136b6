"""Per-sample losses for populations of models.

Shapes
------
A loss takes predictions ``pred`` of shape ``[*M, N, *E]`` and targets of shape ``[N, *E]``
(shared by all members) or ``[*M, N, *E]`` (one target per member). ``*M`` are member dims
(usually one, ``K``; none for a plain model), ``N`` is the sample dim and ``*E`` the event dims
of one sample (none by default; ``event_ndim=1`` for multi-output regression or multi-label
binary losses). Multiclass losses take logits ``[*M, N, C]`` and class indices ``[N]`` or
``[*M, N]``. A loss returns per-sample values of shape ``[*M, N]`` (mean over event dims);
``loss.mean`` reduces the sample dim and returns one value per member, ``[*M]`` (a scalar for a
plain model). Member k of a stacked call equals the plain call on ``pred[k]``: there is one code
path for K = 1 and K > 1, free of ``.item()`` and of branching on values, so it also runs under
``torch.func.vmap``.

Weights
-------
``class_weight`` (a ``[C]`` tensor; ``[2]`` for binary losses) multiplies sample i's loss by
``w[y_i]``, as torch's ``weight`` does with ``reduction="none"``. ``sample_weight`` (``[N]`` or
``[*M, N]``) multiplies it by ``s_i``. The mean is always the weighted mean

    mean = sum_i s_i w[y_i] l_i / sum_i s_i w[y_i],

which is torch's ``cross_entropy(weight=w, reduction="mean")``. torch's ``multi_margin_loss``
and ``binary_cross_entropy_with_logits(weight=...)`` divide by N instead; optimkit keeps one
convention for every loss, so the scale of the loss does not depend on the scale of the weights.

Hyperparameters
---------------
Scalar hyperparameters (``delta``, ``pos_weight``, ``label_smoothing``, ``margin``, binary
``alpha``, ``gamma``) are Python floats or ``[K]`` tensors, one value per member, broadcasting
along dim 0 of stacked predictions ``[K, N, ...]``. Per-class vectors (``class_weight``,
multiclass focal ``alpha``) have one entry per class. Values are validated once, when the loss
is built.

Any callable ``fn(pred, target) -> per-sample loss`` is a loss too: ``get_loss(fn)`` wraps it
so it gains ``mean`` and ``sample_weight``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import ClassVar, TypeAlias, cast

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "LOSSES",
    "BCEWithLogitsLoss",
    "BinaryFocalLoss",
    "CrossEntropyLoss",
    "CustomLoss",
    "FocalLoss",
    "HingeLoss",
    "HuberLoss",
    "Loss",
    "MAELoss",
    "MSELoss",
    "MultiHingeLoss",
    "available_losses",
    "get_loss",
    "weighted_mean",
]

Hyper: TypeAlias = float | Tensor
"""A scalar hyperparameter: a Python float shared by all members, or a [K] tensor."""

LossFn: TypeAlias = Callable[[Tensor, Tensor], Tensor]

# Below this many classes, log-softmax over the (short, contiguous) last dim is several times
# faster on CPU written as max-subtract + exp-sum-log than with torch's fused kernel, which only
# vectorizes well from 16 classes on (measured forward and backward on [K, N, C], float32).
_SMALL_C = 16


# --------------------------------------------------------------------------------------------
# validation helpers


def _hyper(name: str, value: object, ok: Callable[[Tensor], Tensor], expected: str) -> Hyper:
    """Validate a scalar hyperparameter; return a float or a float64 [K] tensor."""
    if isinstance(value, bool) or not isinstance(value, int | float | Tensor):
        raise ValueError(
            f"{name}: expected a number or a 1-D tensor of shape [K], got {type(value).__name__}"
        )
    if isinstance(value, Tensor):
        if value.dim() > 1 or value.numel() == 0 or value.is_complex():
            raise ValueError(
                f"{name}: expected a number or a non-empty real 1-D tensor of shape [K], "
                f"got a {value.dtype} tensor of shape {list(value.shape)}"
            )
        t = value.detach().to(torch.float64)
    else:
        t = torch.tensor(float(value), dtype=torch.float64)
    if not bool((torch.isfinite(t) & ok(t)).all()):
        raise ValueError(f"{name}: expected {expected}, got {t.tolist()}")
    return t if t.dim() == 1 else float(t)


def _per_class(
    name: str, value: object, length: int | None = None, at_most_one: bool = False
) -> Tensor | None:
    """Validate a per-class vector of finite numbers >= 0 (and <= 1 with `at_most_one`);
    return it as a float64 tensor, or None."""
    if value is None:
        return None
    try:
        t = torch.as_tensor(value).detach().to(torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(
            f"{name}: expected a 1-D sequence or tensor of per-class numbers, "
            f"got {type(value).__name__}"
        ) from None
    if t.dim() != 1 or t.numel() == 0:
        raise ValueError(
            f"{name}: expected a non-empty 1-D tensor with one entry per class, "
            f"got shape {list(t.shape)}"
        )
    if length is not None and t.numel() != length:
        raise ValueError(f"{name}: expected {length} entries (one per class), got {t.numel()}")
    ok = torch.isfinite(t) & (t >= 0) & ((t <= 1) if at_most_one else True)
    if not bool(ok.all()):
        expected = "numbers in [0, 1]" if at_most_one else "finite numbers >= 0"
        raise ValueError(f"{name}: expected {expected}, got {t.tolist()}")
    return t


def _bc(name: str, h: Hyper, pred: Tensor, ndim: int) -> Hyper:
    """A [K] hyperparameter as a [K, 1, ..., 1] tensor of `ndim` dims in pred's dtype/device."""
    if not isinstance(h, Tensor):
        return h
    if pred.dim() < 2 or pred.shape[0] != h.shape[0]:
        raise ValueError(
            f"{name}: a tensor of {h.shape[0]} values (one per member) needs stacked predictions "
            f"of shape [{h.shape[0]}, N, ...], got pred of shape {list(pred.shape)}"
        )
    return h.to(device=pred.device, dtype=pred.dtype).reshape((-1,) + (1,) * (ndim - 1))


def _check_pred(pred: object) -> Tensor:
    if not isinstance(pred, Tensor):
        raise ValueError(f"pred: expected a torch.Tensor, got {type(pred).__name__}")
    if not pred.dtype.is_floating_point:
        raise ValueError(f"pred: expected a floating-point tensor, got {pred.dtype}")
    return pred


def _check_target(target: object, integer: bool) -> Tensor:
    if not isinstance(target, Tensor):
        raise ValueError(f"target: expected a torch.Tensor, got {type(target).__name__}")
    if target.is_complex():
        raise ValueError(f"target: expected a real tensor, got {target.dtype}")
    if integer and (target.dtype.is_floating_point or target.dtype == torch.bool):
        raise ValueError(f"target: expected integer class indices, got {target.dtype}")
    return target


def _batch_shape(pred: Tensor, target: Tensor, event_ndim: int, classes: bool) -> torch.Size:
    """Check shapes and return pred's batch shape [*M, N].

    `classes`: pred carries a trailing class dim that target lacks (multiclass losses).
    Otherwise pred and target share `event_ndim` trailing event dims.
    """
    pe = event_ndim + int(classes)
    pbatch, tbatch = pred.shape[: pred.dim() - pe], target.shape[: target.dim() - event_ndim]
    layout = "[*M, N, C] logits" if classes else "[*M, N" + ", *E" * (event_ndim > 0) + "]"
    if len(pbatch) == 0:
        raise ValueError(
            f"pred: expected shape {layout} with a sample dim N, got {list(pred.shape)}"
        )
    if pred.shape[pred.dim() - pe :][:event_ndim] != target.shape[target.dim() - event_ndim :]:
        raise ValueError(
            f"target: expected event shape {list(pred.shape[len(pbatch) :][:event_ndim])} "
            f"like pred, got target of shape {list(target.shape)} for pred of shape "
            f"{list(pred.shape)}"
        )
    if not 1 <= len(tbatch) <= len(pbatch) or pbatch[len(pbatch) - len(tbatch) :] != tbatch:
        want = list(pbatch[-1:]) + list(pred.shape[len(pbatch) :][:event_ndim])
        hint = ""
        if pbatch[-1] == 1 and target.dim() > 0 and target.shape[-1] != 1:
            hint = " (pred ends in a dim of size 1 that is read as N: squeeze it)"
        raise ValueError(
            f"target: expected shape {want} (shared by all members) or "
            f"{list(pbatch) + want[1:]} (one per member) for pred {layout} of shape "
            f"{list(pred.shape)}, got {list(target.shape)}{hint}"
        )
    return pbatch


def _check_sample_weight(sample_weight: object, batch: torch.Size, pred: Tensor) -> Tensor:
    if not isinstance(sample_weight, Tensor):
        raise ValueError(
            f"sample_weight: expected a torch.Tensor, got {type(sample_weight).__name__}"
        )
    n = sample_weight.dim()
    if (
        sample_weight.is_complex()
        or not 1 <= n <= len(batch)
        or batch[len(batch) - n :] != (sample_weight.shape)
    ):
        raise ValueError(
            f"sample_weight: expected a real tensor of shape {list(batch[-1:])} or "
            f"{list(batch)}, got {sample_weight.dtype} of shape {list(sample_weight.shape)}"
        )
    return sample_weight.to(pred.dtype)


def weighted_mean(values: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean over the last (sample) dim: ``sum(w * v) / sum(w)``, or ``v.mean(-1)`` unweighted.

    ``weight`` broadcasts against ``values`` (e.g. ``[N]`` against ``[K, N]``); the result has
    the member shape ``values.shape[:-1]``.
    """
    if weight is None:
        return values.mean(-1)
    shape = torch.broadcast_shapes(values.shape, weight.shape)
    return (values * weight).sum(-1) / torch.broadcast_to(weight, shape).sum(-1)


# --------------------------------------------------------------------------------------------
# base classes


class Loss:
    """A per-sample loss. Subclasses implement ``_terms``.

    ``loss(pred, target, sample_weight=None)`` returns per-sample losses ``[*M, N]``, already
    multiplied by class and sample weights; ``loss.mean(...)`` returns their weighted mean per
    member ``[*M]`` (see the module docstring).
    """

    name: ClassVar[str] = "loss"
    task: ClassVar[str] = "any"  # "regression" | "binary" | "multiclass" | "any"

    def _terms(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        """(per-sample loss l_i including class weights, normalizer w[y_i] or None for 1)."""
        raise NotImplementedError

    def _weighted(
        self, pred: Tensor, target: Tensor, sample_weight: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        loss, norm = self._terms(_check_pred(pred), target)
        if sample_weight is not None:
            s = _check_sample_weight(sample_weight, loss.shape, pred)
            loss = loss * s
            norm = s if norm is None else norm * s
        return loss, norm

    def __call__(self, pred: Tensor, target: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        return self._weighted(pred, target, sample_weight)[0]

    def mean(self, pred: Tensor, target: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        """Weighted mean over samples, one value per member: [*M] (a scalar for plain input)."""
        loss, norm = self._weighted(pred, target, sample_weight)
        if norm is None:
            return loss.mean(-1)
        return loss.sum(-1) / torch.broadcast_to(norm, loss.shape).sum(-1)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({opts})"


class CustomLoss(Loss):
    """Wrap any ``fn(pred, target) -> per-sample loss [*M, N]`` as a :class:`Loss`."""

    def __init__(self, fn: LossFn, name: str | None = None) -> None:
        if not callable(fn):
            raise ValueError(f"fn: expected a callable (pred, target) -> loss, got {fn!r}")
        self.fn = fn
        self.name = str(name or getattr(fn, "__name__", "custom"))  # type: ignore[misc]

    def _terms(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        out = self.fn(pred, target)
        if not isinstance(out, Tensor) or out.dim() == 0:
            got = list(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"loss {self.name!r}: expected per-sample losses of shape [*M, N] from the "
                f"custom loss function, got {got}"
            )
        return out, None


class _Elementwise(Loss):
    """A loss on each element; per-sample = mean over the ``event_ndim`` trailing event dims."""

    def __init__(self, event_ndim: int = 0) -> None:
        if isinstance(event_ndim, bool) or not isinstance(event_ndim, int) or event_ndim < 0:
            raise ValueError(f"event_ndim: expected an integer >= 0, got {event_ndim!r}")
        self.event_ndim = event_ndim

    def _elementwise(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def _terms(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        _batch_shape(pred, _check_target(target, integer=False), self.event_ndim, classes=False)
        loss, norm = self._elementwise(pred, target.to(pred.dtype))
        if self.event_ndim:
            dims = tuple(range(-self.event_ndim, 0))
            loss = loss.mean(dims)
            norm = None if norm is None else norm.mean(dims)
        return loss, norm


# --------------------------------------------------------------------------------------------
# regression


class MSELoss(_Elementwise):
    r"""Squared error :math:`(\hat y - y)^2`; equals ``F.mse_loss``."""

    name = "mse"
    task = "regression"

    def _elementwise(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        return (pred - target).square(), None


class MAELoss(_Elementwise):
    r"""Absolute error :math:`|\hat y - y|`; equals ``F.l1_loss``."""

    name = "mae"
    task = "regression"

    def _elementwise(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        return (pred - target).abs(), None


class HuberLoss(_Elementwise):
    r"""Huber loss (Huber 1964); equals ``F.huber_loss(delta=delta)``.

    .. math:: l = \tfrac12 d^2 \text{ if } |d| < \delta \text{ else } \delta(|d| - \tfrac12\delta)
       = a(|d| - \tfrac12 a),\quad a = \min(|d|, \delta),\ d = \hat y - y.

    ``delta`` > 0: a float or a [K] tensor.
    """

    name = "huber"
    task = "regression"

    def __init__(self, delta: Hyper = 1.0, event_ndim: int = 0) -> None:
        super().__init__(event_ndim)
        self.delta = _hyper("delta", delta, lambda t: t > 0, "a positive number")

    def _elementwise(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        d = (pred - target).abs()
        delta = _bc("delta", self.delta, pred, d.dim())
        a = torch.minimum(d, delta) if isinstance(delta, Tensor) else d.clamp(max=delta)
        return a * (d - 0.5 * a), None


# --------------------------------------------------------------------------------------------
# binary classification (logits [*M, N, *E], targets in [0, 1] or {-1, +1})


def _binary_class_weight(cw: Tensor | None, y: Tensor, pred: Tensor) -> Tensor | None:
    """w[y] for y in [0, 1] (linear in y, so soft labels interpolate w[0] and w[1])."""
    if cw is None:
        return None
    w = cw.to(device=pred.device, dtype=pred.dtype)
    return w[0] + (w[1] - w[0]) * y


class BCEWithLogitsLoss(_Elementwise):
    r"""Binary cross-entropy on logits; equals ``F.binary_cross_entropy_with_logits``.

    .. math:: l = -[p\,y \log\sigma(x) + (1 - y)\log(1 - \sigma(x))]
       = (1 - y)x + (1 + (p - 1)y)\,\mathrm{softplus}(-x)

    with ``p = pos_weight`` (float or [K] tensor, >= 0). Targets lie in [0, 1] (soft labels
    allowed). ``label_smoothing`` ε in [0, 1] uses ``y(1 - ε) + ε/2`` as the target.
    ``class_weight`` ``[w0, w1]`` weights sample i by ``w0(1 - y_i) + w1 y_i`` (``w[y_i]`` for
    hard labels; the un-smoothed label is used).
    """

    name = "bce"
    task = "binary"

    def __init__(
        self,
        pos_weight: Hyper = 1.0,
        class_weight: Sequence[float] | Tensor | None = None,
        label_smoothing: Hyper = 0.0,
        event_ndim: int = 0,
    ) -> None:
        super().__init__(event_ndim)
        self.pos_weight = _hyper("pos_weight", pos_weight, lambda t: t >= 0, "a number >= 0")
        self.class_weight = _per_class("class_weight", class_weight, 2)
        self.label_smoothing = _hyper(
            "label_smoothing", label_smoothing, lambda t: (t >= 0) & (t <= 1), "a number in [0, 1]"
        )

    def _elementwise(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        w = _binary_class_weight(self.class_weight, target, pred)
        eps = _bc("label_smoothing", self.label_smoothing, pred, pred.dim())
        y = target if isinstance(eps, float) and eps == 0.0 else target * (1 - eps) + 0.5 * eps
        pw = _bc("pos_weight", self.pos_weight, pred, pred.dim())
        softplus_neg = -F.logsigmoid(pred)  # -log σ(x) = softplus(-x), stable
        if not (isinstance(pw, float) and pw == 1.0):
            softplus_neg = (1 + (pw - 1) * y) * softplus_neg
        loss = (1 - y) * pred + softplus_neg
        return (loss, None) if w is None else (loss * w, w)


class HingeLoss(_Elementwise):
    r"""Binary hinge loss :math:`l = \max(0, m - y f)` with labels :math:`y \in \{-1, +1\}`.

    Targets are mapped with ``y = +1 if target > 0 else -1``, so both {-1, +1} and {0, 1}
    labels work. ``margin`` m (default 1, > 0): a float or a [K] tensor. ``class_weight``
    ``[w_neg, w_pos]`` weights samples by their class.
    """

    name = "hinge"
    task = "binary"

    def __init__(
        self,
        margin: Hyper = 1.0,
        class_weight: Sequence[float] | Tensor | None = None,
        event_ndim: int = 0,
    ) -> None:
        super().__init__(event_ndim)
        self.margin = _hyper("margin", margin, lambda t: t > 0, "a positive number")
        self.class_weight = _per_class("class_weight", class_weight, 2)

    def _elementwise(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        positive = (target > 0).to(pred.dtype)
        margin = _bc("margin", self.margin, pred, pred.dim())
        loss = (margin - (2 * positive - 1) * pred).clamp(min=0)
        w = _binary_class_weight(self.class_weight, positive, pred)
        return (loss, None) if w is None else (loss * w, w)


class BinaryFocalLoss(_Elementwise):
    r"""Sigmoid focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection"), as in
    ``torchvision.ops.sigmoid_focal_loss``:

    .. math:: l = \alpha_t (1 - p_t)^\gamma \,\mathrm{BCE}(x, y),\quad
       p_t = p y + (1 - p)(1 - y),\ \alpha_t = \alpha y + (1 - \alpha)(1 - y),\ p = \sigma(x).

    ``alpha`` in [0, 1] (default 0.25) or None for no alpha weighting (torchvision's
    ``alpha < 0``); ``gamma`` >= 0 (default 2). Both: a float or a [K] tensor. ``1 - p_t`` is
    computed as ``y σ(-x) + (1 - y) σ(x)``, which is exact for saturated logits.
    """

    name = "binary_focal"
    task = "binary"

    def __init__(
        self,
        alpha: Hyper | None = 0.25,
        gamma: Hyper = 2.0,
        class_weight: Sequence[float] | Tensor | None = None,
        event_ndim: int = 0,
    ) -> None:
        super().__init__(event_ndim)
        self.alpha = (
            None
            if alpha is None
            else _hyper("alpha", alpha, lambda t: (t >= 0) & (t <= 1), "a number in [0, 1]")
        )
        self.gamma = _hyper("gamma", gamma, lambda t: t >= 0, "a number >= 0")
        self.class_weight = _per_class("class_weight", class_weight, 2)

    def _elementwise(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        y = target
        ce = (1 - y) * pred - F.logsigmoid(pred)
        one_minus_pt = y * torch.sigmoid(-pred) + (1 - y) * torch.sigmoid(pred)
        gamma = _bc("gamma", self.gamma, pred, pred.dim())
        loss = ce * one_minus_pt.pow(gamma)
        if self.alpha is not None:
            alpha = _bc("alpha", self.alpha, pred, pred.dim())
            loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
        w = _binary_class_weight(self.class_weight, y, pred)
        return (loss, None) if w is None else (loss * w, w)


# --------------------------------------------------------------------------------------------
# multiclass classification (logits [*M, N, C], class indices [N] or [*M, N])


def _log_softmax(logits: Tensor) -> tuple[Tensor, Tensor]:
    """(z, lse) with log softmax(logits) = z - lse[..., None], along the last (class) dim."""
    if logits.shape[-1] < _SMALL_C and logits.device.type == "cpu":
        z = logits - logits.detach().amax(-1, keepdim=True)
        return z, z.exp().sum(-1).log()
    return F.log_softmax(logits, -1), logits.new_zeros(())


def _classes_first(logits: Tensor) -> bool:
    """Whether stacked logits ``[*M, N, C]`` are a view of a contiguous ``[*M, C, N]`` tensor,
    the layout the grouped population models produce (outside vmap)."""
    try:
        return (
            logits.dim() >= 3
            and logits.stride(-2) == 1
            and logits.transpose(-1, -2).is_contiguous()
        )
    except RuntimeError:  # a functorch-batched tensor exposes no strides
        return False


class _Multiclass(Loss):
    """Shared checks: logits [*M, N, C], integer targets, per-class weights of length C."""

    task = "multiclass"
    class_weight: Tensor | None

    def _setup(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """(index [*M, N, 1] for gather, target as long, class weights w[y] or None)."""
        batch = _batch_shape(pred, _check_target(target, integer=True), 0, classes=True)
        y = target.long()
        w = _class_lookup("class_weight", self.class_weight, pred, y)
        return y.expand(batch).unsqueeze(-1), y, w


def _class_lookup(name: str, table: Tensor | None, pred: Tensor, y: Tensor) -> Tensor | None:
    if table is None:
        return None
    if table.numel() != pred.shape[-1]:
        raise ValueError(
            f"{name}: expected {pred.shape[-1]} entries (one per class, pred.shape[-1]), "
            f"got {table.numel()}"
        )
    return table.to(device=pred.device, dtype=pred.dtype)[y]


class CrossEntropyLoss(_Multiclass):
    r"""Softmax cross-entropy on logits; equals ``F.cross_entropy(weight, label_smoothing)``.

    .. math:: l = (1 - ε) w_y (-\log p_y) + \frac{ε}{C}\sum_c w_c (-\log p_c),
       \quad p = \mathrm{softmax}(x)

    normalized in ``mean`` by :math:`\sum_i w_{y_i}` like torch. ``label_smoothing`` ε in
    [0, 1]: a float or a [K] tensor. ``class_weight``: [C] non-negative.
    Targets are class indices (probability targets are not supported).
    """

    name = "cross_entropy"

    def __init__(
        self,
        class_weight: Sequence[float] | Tensor | None = None,
        label_smoothing: Hyper = 0.0,
    ) -> None:
        self.class_weight = _per_class("class_weight", class_weight)
        self.label_smoothing = _hyper(
            "label_smoothing", label_smoothing, lambda t: (t >= 0) & (t <= 1), "a number in [0, 1]"
        )

    def _terms(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        index, _, w = self._setup(pred, target)
        if isinstance(self.label_smoothing, float) and _classes_first(pred):
            # torch's kernel on the class dim 1 of the contiguous [*M, C, N] tensor: several
            # times faster on CPU than any pass over a strided last dim (same values)
            c, n = pred.shape[-1], pred.shape[-2]
            cw = self.class_weight
            loss = F.cross_entropy(
                pred.transpose(-1, -2).reshape(-1, c, n),
                index.squeeze(-1).reshape(-1, n),
                weight=None if cw is None else cw.to(device=pred.device, dtype=pred.dtype),
                reduction="none",
                label_smoothing=self.label_smoothing,
            )
            return loss.view(pred.shape[:-1]), w
        z, lse = _log_softmax(pred)
        nll = lse - z.gather(-1, index).squeeze(-1)
        if w is not None:
            nll = nll * w
        eps = _bc("label_smoothing", self.label_smoothing, pred, nll.dim())
        if isinstance(eps, float) and eps == 0.0:
            return nll, w
        c = pred.shape[-1]
        if self.class_weight is None:
            smooth = c * lse - z.sum(-1)
        else:
            cw = self.class_weight.to(device=pred.device, dtype=pred.dtype)
            smooth = cw.sum() * lse - (z * cw).sum(-1)
        return (1 - eps) * nll + (eps / c) * smooth, w


class MultiHingeLoss(_Multiclass):
    r"""Multiclass hinge (Crammer-Singer style, as ``F.multi_margin_loss(p, margin, weight)``):

    .. math:: l = \frac{w_y}{C} \sum_{c \ne y} \max(0, m - x_y + x_c)^p

    ``p`` in {1, 2}; ``margin`` m > 0: a float or a [K] tensor; ``class_weight``: [C].
    """

    name = "multi_hinge"

    def __init__(
        self,
        margin: Hyper = 1.0,
        p: int = 1,
        class_weight: Sequence[float] | Tensor | None = None,
    ) -> None:
        if p not in (1, 2) or isinstance(p, bool):
            raise ValueError(f"p: expected 1 or 2, got {p!r}")
        self.margin = _hyper("margin", margin, lambda t: t > 0, "a positive number")
        self.p = p
        self.class_weight = _per_class("class_weight", class_weight)

    def _terms(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        index, y, w = self._setup(pred, target)
        margin = _bc("margin", self.margin, pred, pred.dim())
        h = (margin - pred.gather(-1, index) + pred).clamp(min=0)
        if self.p == 2:
            h = h.square()
        c = pred.shape[-1]
        other = torch.arange(c, device=pred.device) != y.unsqueeze(-1)
        loss = (h * other).sum(-1) / c
        return (loss, None) if w is None else (loss * w, w)


class FocalLoss(_Multiclass):
    r"""Softmax focal loss (Lin et al. 2017) for C classes:

    .. math:: l = -\alpha_y (1 - p_y)^\gamma \log p_y,\quad p = \mathrm{softmax}(x).

    ``alpha``: None (all 1), a float in [0, 1], or a per-class [C] tensor with entries in
    [0, 1]; it is part of the loss (not normalized in ``mean``). ``gamma`` >= 0: a float or a
    [K] tensor. ``class_weight`` [C] is the normalized weighting shared by all losses. With
    gamma = 0 and no alpha this is cross-entropy.
    """

    name = "focal"

    def __init__(
        self,
        alpha: float | Sequence[float] | Tensor | None = None,
        gamma: Hyper = 2.0,
        class_weight: Sequence[float] | Tensor | None = None,
    ) -> None:
        if (
            alpha is None
            or (isinstance(alpha, Tensor) and alpha.dim() > 0)
            or isinstance(alpha, Sequence)
        ):
            self.alpha: Hyper | None = _per_class("alpha", alpha, at_most_one=True)
        else:
            alpha = _hyper("alpha", alpha, lambda t: (t >= 0) & (t <= 1), "a number in [0, 1]")
            self.alpha = float(alpha)  # a scalar scales every class alike
        self.gamma = _hyper("gamma", gamma, lambda t: t >= 0, "a number >= 0")
        self.class_weight = _per_class("class_weight", class_weight)

    def _terms(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        index, y, w = self._setup(pred, target)
        z, lse = _log_softmax(pred)
        logp = z.gather(-1, index).squeeze(-1) - lse
        gamma = _bc("gamma", self.gamma, pred, logp.dim())
        loss = -(-torch.expm1(logp)).pow(gamma) * logp
        if isinstance(self.alpha, Tensor):
            loss = loss * cast(Tensor, _class_lookup("alpha", self.alpha, pred, y))
        elif self.alpha is not None:
            loss = loss * self.alpha
        return (loss, None) if w is None else (loss * w, w)


# --------------------------------------------------------------------------------------------
# lookup

LOSSES: dict[str, type[Loss]] = {
    cls.name: cls
    for cls in (
        MSELoss,
        MAELoss,
        HuberLoss,
        BCEWithLogitsLoss,
        HingeLoss,
        BinaryFocalLoss,
        CrossEntropyLoss,
        MultiHingeLoss,
        FocalLoss,
    )
}
"""Built-in losses by canonical name."""

_ALIASES = {
    "l2": "mse",
    "l1": "mae",
    "binary_cross_entropy": "bce",
    "ce": "cross_entropy",
    "binary_hinge": "hinge",
    "multi_margin": "multi_hinge",
    "sigmoid_focal": "binary_focal",
    "softmax_focal": "focal",
}


def available_losses() -> list[str]:
    """Canonical names of the built-in losses."""
    return sorted(LOSSES)


def get_loss(loss: str | Loss | LossFn, **options: object) -> Loss:
    """Build a loss by name (``get_loss("huber", delta=0.5)``), or wrap a callable.

    Names: mse (l2), mae (l1), huber, bce (binary_cross_entropy), hinge (binary_hinge),
    binary_focal (sigmoid_focal), cross_entropy (ce), multi_hinge (multi_margin),
    focal (softmax_focal). A :class:`Loss` is returned as is; any other callable
    ``fn(pred, target) -> per-sample loss`` is wrapped in :class:`CustomLoss`.
    """
    if isinstance(loss, Loss):
        if options:
            raise ValueError(f"options: a Loss instance takes no options, got {sorted(options)}")
        return loss
    if isinstance(loss, str):
        key = loss.strip().lower().replace("-", "_")
        cls = LOSSES.get(_ALIASES.get(key, key))
        if cls is None:
            valid = ", ".join(available_losses())
            aliases = ", ".join(f"{a} -> {n}" for a, n in sorted(_ALIASES.items()))
            raise ValueError(f"loss: unknown name {loss!r}; valid: {valid} (aliases: {aliases})")
        allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ValueError(
                f"options: {cls.name!r} does not take {unknown}; valid options: {allowed}"
            )
        return cls(**options)  # type: ignore[arg-type]
    if callable(loss):
        name = options.pop("name", None)
        if options:
            raise ValueError(f"options: a custom loss takes only 'name', got {sorted(options)}")
        return CustomLoss(loss, name=name)  # type: ignore[arg-type]
    raise ValueError(
        f"loss: expected a name, a Loss or a callable (pred, target) -> loss, "
        f"got {type(loss).__name__}"
    )
