"""optimkit.metrics against scikit-learn, member by member."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import sklearn.metrics as skm
import torch

from optimkit.metrics import (
    METRICS,
    Metric,
    accuracy,
    available_metrics,
    f1_macro,
    get_metric,
    log_loss,
    mae,
    mse,
    predicted_labels,
    r2,
    rmse,
)

DT = torch.float64
TOL = 1e-10


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def agree(ours: torch.Tensor, ref: float) -> None:
    ours_f = float(ours)
    if math.isnan(ref):
        assert math.isnan(ours_f)
    else:
        assert ours_f == pytest.approx(ref, rel=TOL, abs=TOL)


def np_(x: torch.Tensor | None):
    return None if x is None else x.numpy()


def classification_case(seed: int, k: int = 4):
    """Logits [K, N, C] where member 1 never predicts class 0 and the target lacks class C-1."""
    g = gen(seed)
    n = int(torch.randint(12, 40, (1,), generator=g))
    c = int(torch.randint(3, 7, (1,), generator=g))
    logits = 2 * torch.randn(k, n, c, generator=g, dtype=DT)
    logits[1, :, 0] = -50.0
    target = torch.randint(0, c - 1, (n,), generator=g)
    return logits, target, c


def sample_weights(g: torch.Generator, *shape: int) -> torch.Tensor:
    w = torch.rand(*shape, generator=g, dtype=DT)
    w[..., 0] = 0.0  # a masked-out sample
    return w


SEEDS = [0, 1, 2]


# --------------------------------------------------------------------------------------------
# classification


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shared", [True, False])
def test_accuracy_f1_log_loss_match_sklearn(seed, weighted, shared):
    logits, target, c = classification_case(seed)
    k, n = logits.shape[:2]
    g = gen(100 + seed)
    if not shared:
        target = torch.randint(0, c, (k, n), generator=g)
    w = sample_weights(g, n) if weighted else None
    probs = torch.softmax(logits, -1)
    acc, f1 = accuracy(logits, target, w), f1_macro(logits, target, w)
    ll, ll_p = log_loss(logits, target, w), log_loss(probs, target, w, from_logits=False)
    for out in (acc, f1, ll, ll_p):
        assert out.shape == (k,) and out.dtype == DT
    for m in range(k):
        y = (target if shared else target[m]).numpy()
        yhat = logits[m].argmax(-1).numpy()
        if m == 1:
            assert 0 not in yhat  # class 0 absent from this member's predictions
        agree(acc[m], skm.accuracy_score(y, yhat, sample_weight=np_(w)))
        agree(f1[m], skm.f1_score(y, yhat, average="macro", sample_weight=np_(w)))
        ref_ll = skm.log_loss(y, probs[m].numpy(), sample_weight=np_(w), labels=list(range(c)))
        agree(ll[m], ref_ll)
        agree(ll_p[m], ref_ll)
    # plain (unstacked) input gives member 0's value as a scalar
    t0 = target if shared else target[0]
    assert accuracy(logits[0], t0, w).shape == ()
    agree(f1_macro(logits[0], t0, w), float(f1[0]))
    agree(log_loss(logits[0], t0, w), float(ll[0]))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("zero_division", [0.0, 1.0, float("nan")])
def test_f1_with_fixed_classes_and_zero_division(seed, zero_division):
    logits, target, c = classification_case(seed)
    c_all = c + 2  # two more classes that appear nowhere
    logits = torch.cat([logits, torch.full((*logits.shape[:2], 2), -60.0, dtype=DT)], -1)
    f1 = f1_macro(logits, target, num_classes=c_all, zero_division=zero_division)
    for m in range(logits.shape[0]):
        yhat = logits[m].argmax(-1).numpy()
        ref = skm.f1_score(
            target.numpy(),
            yhat,
            average="macro",
            labels=list(range(c_all)),
            zero_division=zero_division,
        )
        agree(f1[m], ref)


def test_f1_class_never_predicted_counts_as_zero_like_sklearn():
    target = torch.tensor([0, 0, 1, 1, 2, 2])
    pred = torch.tensor([[0, 0, 1, 1, 1, 1], [0, 1, 2, 2, 2, 2]])  # member 0 never predicts 2
    ours = f1_macro(pred, target)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sklearn computes these F1s without any 0/0
        refs = [skm.f1_score(target.numpy(), p.numpy(), average="macro") for p in pred]
    agree(ours[0], refs[0])
    agree(ours[1], refs[1])
    agree(ours[0], (1 + 2 / 3 + 0) / 3)  # by hand: F1 = 1, 2/3, 0


@pytest.mark.parametrize("seed", SEEDS)
def test_integer_label_predictions(seed):
    g = gen(seed)
    k, n, c = 3, 25, 5
    pred = torch.randint(0, c, (k, n), generator=g)
    target = torch.randint(0, c - 1, (n,), generator=g)
    w = sample_weights(g, k, n)
    acc, f1 = accuracy(pred, target, w), f1_macro(pred, target, w)
    f1_fixed = f1_macro(pred, target, num_classes=c + 1, zero_division=1.0)
    assert acc.dtype == DT
    for m in range(k):
        y, yh = target.numpy(), pred[m].numpy()
        agree(acc[m], skm.accuracy_score(y, yh, sample_weight=w[m].numpy()))
        agree(f1[m], skm.f1_score(y, yh, average="macro", sample_weight=w[m].numpy()))
        ref = skm.f1_score(y, yh, average="macro", labels=list(range(c + 1)), zero_division=1.0)
        agree(f1_fixed[m], ref)
    # float targets are rounded to labels
    agree(accuracy(pred, target.to(DT))[0], float(accuracy(pred, target)[0]))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("weighted", [False, True])
def test_binary_single_score(seed, weighted):
    g = gen(seed)
    k, n = 3, 30
    logits = 3 * torch.randn(k, n, 1, generator=g, dtype=DT)
    target = torch.randint(0, 2, (n,), generator=g)
    w = sample_weights(g, n) if weighted else None
    p = torch.sigmoid(logits)
    for m in range(k):
        y, yhat = target.numpy(), (logits[m, :, 0] > 0).long().numpy()
        sw = np_(w)
        agree(accuracy(logits, target, w)[m], skm.accuracy_score(y, yhat, sample_weight=sw))
        agree(
            accuracy(p, target, w, from_logits=False)[m],
            skm.accuracy_score(y, yhat, sample_weight=sw),
        )
        f1_ref = skm.f1_score(y, yhat, average="macro", sample_weight=sw)
        agree(f1_macro(logits, target, w)[m], f1_ref)
        ll_ref = skm.log_loss(y, p[m, :, 0].numpy(), sample_weight=sw, labels=[0, 1])
        agree(log_loss(logits, target, w)[m], ll_ref)
        agree(log_loss(p, target, w, from_logits=False)[m], ll_ref)
    # {-1, +1} targets mean the same as {0, 1}
    pm = 2 * target - 1
    torch.testing.assert_close(log_loss(logits, pm), log_loss(logits, target), rtol=0, atol=0)
    torch.testing.assert_close(accuracy(logits, pm), accuracy(logits, target), rtol=0, atol=0)


def test_log_loss_clips_like_sklearn():
    # confidently wrong and confidently right members
    logits = torch.tensor([[[60.0, -60.0], [0.0, 0.0]], [[-60.0, 60.0], [80.0, -80.0]]], dtype=DT)
    target = torch.tensor([1, 0])
    ours = log_loss(logits, target)
    probs = torch.softmax(logits, -1)
    for m in range(2):
        agree(ours[m], skm.log_loss(target.numpy(), probs[m].numpy(), labels=[0, 1]))
    agree(ours[0], (-math.log(np.finfo(np.float64).eps) + math.log(2)) / 2)
    b = torch.tensor([[[-900.0], [900.0]]], dtype=DT)
    agree(log_loss(b, torch.tensor([1, 1]))[0], -math.log(np.finfo(np.float64).eps) / 2)


# --------------------------------------------------------------------------------------------
# regression

REGRESSION = [
    (mse, skm.mean_squared_error),
    (rmse, skm.root_mean_squared_error),
    (mae, skm.mean_absolute_error),
    (r2, skm.r2_score),
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("ours", "ref"), REGRESSION, ids=lambda f: getattr(f, "__name__", ""))
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shared", [True, False])
def test_regression_match_sklearn(seed, ours, ref, weighted, shared):
    g = gen(seed)
    k = int(torch.randint(1, 6, (1,), generator=g))
    n = int(torch.randint(2, 40, (1,), generator=g))
    target = 3 * torch.randn(n if shared else (k, n), generator=g, dtype=DT) + 1
    pred = (
        target
        + torch.randn(k, n, generator=g, dtype=DT) * torch.linspace(0.1, 5, k).to(DT)[:, None]
    )
    w = sample_weights(g, *((n,) if seed % 2 else (k, n))) if weighted else None
    out = ours(pred, target, w)
    assert out.shape == (k,)
    for m in range(k):
        y = (target if shared else target[m]).numpy()
        sw = None if w is None else (w if w.dim() == 1 else w[m]).numpy()
        agree(out[m], ref(y, pred[m].numpy(), sample_weight=sw))
    t0 = target if shared else target[0]
    w0 = None if w is None else (w if w.dim() == 1 else w[0])
    agree(ours(pred[0], t0, w0), float(out[0]))


def test_r2_edge_cases_match_sklearn():
    const = torch.full((5,), 2.0, dtype=DT)
    pred = torch.stack([const, const + torch.tensor([0, 0, 0, 0, 1e-3], dtype=DT)])
    out = r2(pred, const)
    for m in range(2):
        agree(out[m], skm.r2_score(const.numpy(), pred[m].numpy()))  # 1.0, then 0.0
    assert out.tolist() == [1.0, 0.0]
    y = torch.tensor([1.0, 2.0, 4.0], dtype=DT)
    agree(r2(y[None], y)[0], 1.0)
    agree(r2(-y[None], y)[0], skm.r2_score(y.numpy(), (-y).numpy()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = skm.r2_score([1.0], [2.0])
    assert math.isnan(ref) and math.isnan(float(r2(torch.tensor([[2.0]], dtype=DT), y[:1])[0]))


# --------------------------------------------------------------------------------------------
# vmap, lookup, validation


def test_metrics_under_vmap_equal_stacked():
    logits, target, c = classification_case(3)
    vm = torch.func.vmap
    torch.testing.assert_close(
        vm(accuracy, in_dims=(0, None))(logits, target), accuracy(logits, target), rtol=0, atol=0
    )
    f1 = get_metric("f1", num_classes=c)
    torch.testing.assert_close(vm(f1, in_dims=(0, None))(logits, target), f1(logits, target))
    torch.testing.assert_close(
        vm(log_loss, in_dims=(0, None))(logits, target), log_loss(logits, target)
    )
    g = gen(4)
    pred, y = torch.randn(3, 9, generator=g, dtype=DT), torch.randn(9, generator=g, dtype=DT)
    for fn in (mse, rmse, mae, r2):
        torch.testing.assert_close(vm(fn, in_dims=(0, None))(pred, y), fn(pred, y))


def test_get_metric_registry():
    table = {n: (m.greater_is_better, m.task) for n, m in METRICS.items()}
    assert table == {
        "accuracy": (True, "classification"),
        "f1_macro": (True, "classification"),
        "log_loss": (False, "classification"),
        "mse": (False, "regression"),
        "rmse": (False, "regression"),
        "mae": (False, "regression"),
        "r2": (True, "regression"),
    }
    assert available_metrics("regression") == ["mae", "mse", "r2", "rmse"]
    assert available_metrics() == sorted(METRICS)
    assert get_metric("F1").name == "f1_macro" and get_metric("acc").name == "accuracy"
    m = get_metric("log_loss", from_logits=False)
    assert isinstance(m, Metric) and dict(m.options) == {"from_logits": False}
    p = torch.tensor([[[0.2, 0.8], [0.6, 0.4]]], dtype=DT)
    agree(m(p, torch.tensor([1, 1]))[0], skm.log_loss([1, 1], p[0].numpy(), labels=[0, 1]))
    assert get_metric(m) is m
    with pytest.raises(ValueError, match=r"unknown name 'accuracyy'.*accuracy, f1_macro"):
        get_metric("accuracyy")
    with pytest.raises(ValueError, match=r"'mse' does not take \['from_logits'\]"):
        get_metric("mse", from_logits=True)
    with pytest.raises(
        ValueError, match=r"'accuracy' does not take \['num_classes'\].*from_logits"
    ):
        get_metric("accuracy", num_classes=3)


def test_bad_inputs_raise():
    logits, target, _ = classification_case(0)
    with pytest.raises(ValueError, match=r"target: expected shape \[\d+\] .* or \[4, \d+\]"):
        accuracy(logits, target[:-1])
    with pytest.raises(ValueError, match="target: expected shape"):
        accuracy(logits, target[None].expand(2, -1))
    with pytest.raises(ValueError, match="pred: expected scores of shape"):
        accuracy(logits[0, :, 0], target)
    with pytest.raises(ValueError, match="sample_weight: expected shape"):
        accuracy(logits, target, torch.ones(3, dtype=DT))
    with pytest.raises(ValueError, match="log_loss needs scores"):
        log_loss(logits.argmax(-1), target)
    with pytest.raises(ValueError, match=r"zero_division: expected 0\.0, 1\.0 or nan"):
        f1_macro(logits, target, zero_division="warn")
    with pytest.raises(ValueError, match="num_classes: expected a positive integer"):
        f1_macro(logits, target, num_classes=0)
    with pytest.raises(ValueError, match="pred: expected a floating-point tensor"):
        mse(torch.arange(4), torch.zeros(4))
    with pytest.raises(ValueError, match=r"target: expected shape \[4\]"):
        r2(torch.zeros(2, 4, dtype=DT), torch.zeros(5, dtype=DT))
    with pytest.raises(ValueError, match=r"pred: expected a torch\.Tensor"):
        mae([1.0, 2.0], torch.zeros(2))


# --------------------------------------------------------------------------------------------
# labels computed once


@pytest.mark.parametrize("seed", SEEDS)
def test_predicted_labels_equal_argmax_on_the_population_layout(seed):
    """On the transposed view of a contiguous [K, C, N] (the population's output) the labels
    come from max(-2) of that tensor: the same as torch.argmax / numpy.argmax, ties to the
    lowest class, NaN counted as the maximum."""
    g = gen(seed)
    for dtype in (torch.float32, DT):
        base = torch.randint(0, 3, (4, 5, 31), generator=g).to(dtype)  # many ties
        base[torch.rand(base.shape, generator=g) < 0.05] = math.nan
        scores = base.mT  # [K, N, C], not contiguous
        assert not scores.is_contiguous()
        expected = np.argmax(scores.numpy(), -1)
        assert np.array_equal(predicted_labels(scores).numpy(), expected)
        assert torch.equal(predicted_labels(scores), scores.contiguous().argmax(-1))
        assert torch.equal(predicted_labels(scores.contiguous()), scores.contiguous().argmax(-1))
    one = torch.randn(3, 9, 1, generator=g, dtype=DT)
    assert torch.equal(predicted_labels(one), (one[..., 0] > 0).long())
    probs = torch.rand(3, 9, 1, generator=g, dtype=DT)
    assert torch.equal(predicted_labels(probs, from_logits=False), (probs[..., 0] > 0.5).long())


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("weighted", [False, True])
def test_label_metrics_with_precomputed_labels_equal_the_plain_call(seed, weighted):
    logits, target, _ = classification_case(seed)
    w = sample_weights(gen(seed + 5), logits.shape[1]) if weighted else None
    scores = logits.mT.contiguous().mT
    labels = predicted_labels(scores)
    for name in ("accuracy", "f1_macro"):
        metric = get_metric(name)
        assert metric.uses_labels
        plain = metric(scores, target, w)
        torch.testing.assert_close(metric(scores, target, w, labels=labels), plain, rtol=0, atol=0)
        for m in range(logits.shape[0]):
            yh = logits[m].argmax(-1).numpy()
            sw = np_(w)
            ref = (skm.accuracy_score(target, yh, sample_weight=sw) if name == "accuracy"
                   else skm.f1_score(target, yh, average="macro", sample_weight=sw))  # fmt: skip
            agree(plain[m], ref)
    assert not get_metric("log_loss").uses_labels
    assert get_metric("accuracy", from_logits=False).uses_labels
    with pytest.raises(ValueError, match=r"labels: expected the long tensor of shape \[4, \d+\]"):
        accuracy(scores, target, labels=labels[:, :-1])
    with pytest.raises(ValueError, match=r"'accuracy' does not take \['labels'\]"):
        get_metric("accuracy", labels=labels)
