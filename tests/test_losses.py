"""optimkit.losses against torch.nn.functional and published formulas, member by member."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from optimkit.losses import (
    LOSSES,
    CrossEntropyLoss,
    CustomLoss,
    Loss,
    available_losses,
    get_loss,
    weighted_mean,
)

DT = torch.float64
TOL = {"rtol": 1e-12, "atol": 1e-12}


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, **TOL)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def shapes(seed: int) -> tuple[int, int, int]:
    """Random (K, N, C) for a seed."""
    g = gen(1000 + seed)
    k, n, c = (
        int(torch.randint(lo, hi, (1,), generator=g)) for lo, hi in [(1, 5), (3, 17), (2, 9)]
    )
    return k, n, c


def randn(*shape: int, g: torch.Generator, scale: float = 2.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=g, dtype=DT)


def per_member(loss: Loss, oracle, pred, target, shared: bool) -> None:
    """Stacked call == oracle on each member; plain call == oracle on member 0."""
    out = loss(pred, target)
    assert out.shape == pred.shape[: out.dim()]
    for k in range(pred.shape[0]):
        close(out[k], oracle(pred[k], target if shared else target[k]))
    close(
        loss(pred[0], target if shared else target[0]),
        oracle(pred[0], target if shared else target[0]),
    )


SEEDS = [0, 1, 2]

# --------------------------------------------------------------------------------------------
# regression


REGRESSION = [
    ("mse", {}, lambda p, t: F.mse_loss(p, t, reduction="none")),
    ("mae", {}, lambda p, t: F.l1_loss(p, t, reduction="none")),
    ("huber", {}, lambda p, t: F.huber_loss(p, t, reduction="none")),
    ("huber", {"delta": 0.3}, lambda p, t: F.huber_loss(p, t, delta=0.3, reduction="none")),
    ("huber", {"delta": 4.0}, lambda p, t: F.huber_loss(p, t, delta=4.0, reduction="none")),
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("name", "opts", "oracle"), REGRESSION)
@pytest.mark.parametrize("shared", [True, False])
def test_regression_matches_torch(seed, name, opts, oracle, shared):
    k, n, _ = shapes(seed)
    g = gen(seed)
    pred = randn(k, n, g=g)
    target = randn(n, g=g) if shared else randn(k, n, g=g)
    loss = get_loss(name, **opts)
    per_member(loss, oracle, pred, target, shared)
    means = loss.mean(pred, target)
    assert means.shape == (k,)
    for m in range(k):
        close(means[m], oracle(pred[m], target if shared else target[m]).mean())
    close(loss.mean(pred[0], target if shared else target[0]), means[0])


@pytest.mark.parametrize(("name", "fn"), [("mse", F.mse_loss), ("mae", F.l1_loss)])
def test_regression_event_dims_average_like_torch_mean(name, fn):
    g = gen(7)
    pred, target = randn(3, 6, 4, g=g), randn(6, 4, g=g)
    loss = get_loss(name, event_ndim=1)
    out = loss(pred, target)
    assert out.shape == (3, 6)
    for k in range(3):
        close(out[k], fn(pred[k], target, reduction="none").mean(-1))
        close(loss.mean(pred, target)[k], fn(pred[k], target))


def test_huber_large_and_tiny_residuals():
    pred = torch.tensor([[0.0, 1e-8, -1e-8, 0.5, -0.5, 1e3, -1e3, 2.0]], dtype=DT)
    target = torch.zeros(8, dtype=DT)
    for delta in (1e-6, 0.5, 1.0, 2.0, 10.0):
        close(
            get_loss("huber", delta=delta)(pred, target)[0],
            F.huber_loss(pred[0], target, delta=delta, reduction="none"),
        )


# --------------------------------------------------------------------------------------------
# binary


def _binary_targets(g, *shape, soft=False):
    if soft:
        return torch.rand(*shape, generator=g, dtype=DT)
    return torch.randint(0, 2, shape, generator=g).to(DT)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("soft", [False, True])
def test_bce_matches_torch(seed, soft):
    k, n, _ = shapes(seed)
    g = gen(seed)
    pred = randn(k, n, g=g, scale=4.0)
    target = _binary_targets(g, n, soft=soft)
    per_member(
        get_loss("bce"),
        lambda p, t: F.binary_cross_entropy_with_logits(p, t, reduction="none"),
        pred,
        target,
        shared=True,
    )
    pw = 2.5
    per_member(
        get_loss("bce", pos_weight=pw),
        lambda p, t: F.binary_cross_entropy_with_logits(
            p, t, pos_weight=torch.tensor(pw, dtype=DT), reduction="none"
        ),
        pred,
        target,
        shared=True,
    )
    close(
        get_loss("bce").mean(pred, target),
        torch.stack([F.binary_cross_entropy_with_logits(p, target) for p in pred]),
    )


def test_bce_class_weight_and_pos_weight_like_torch_weight():
    g = gen(11)
    pred, target = randn(3, 10, g=g), _binary_targets(g, 3, 10)
    cw = torch.tensor([0.3, 1.7], dtype=DT)
    loss = get_loss("bce", class_weight=cw, pos_weight=0.5)
    w = cw[target.long()]

    def oracle(p, t, w):
        return F.binary_cross_entropy_with_logits(
            p, t, weight=w, pos_weight=torch.tensor(0.5, dtype=DT), reduction="none"
        )

    out, mean = loss(pred, target), loss.mean(pred, target)
    for k in range(3):
        close(out[k], oracle(pred[k], target[k], w[k]))
        close(mean[k], oracle(pred[k], target[k], w[k]).sum() / w[k].sum())


def test_bce_label_smoothing_is_bce_on_smoothed_targets():
    g = gen(12)
    pred, target = randn(2, 9, g=g), _binary_targets(g, 9)
    for eps in (0.0, 0.1, 1.0):
        per_member(
            get_loss("bce", label_smoothing=eps),
            lambda p, t, eps=eps: F.binary_cross_entropy_with_logits(
                p, t * (1 - eps) + eps / 2, reduction="none"
            ),
            pred,
            target,
            shared=True,
        )


def test_bce_extreme_logits_are_finite_and_exact():
    pred = torch.tensor([[-800.0, -40.0, 0.0, 40.0, 800.0]], dtype=DT)
    target = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0], dtype=DT)
    out = get_loss("bce")(pred, target)
    close(out[0], F.binary_cross_entropy_with_logits(pred[0], target, reduction="none"))


def test_bce_multilabel_event_dim():
    g = gen(13)
    pred, target = randn(2, 7, 3, g=g), _binary_targets(g, 7, 3)
    loss = get_loss("bce", event_ndim=1)
    for k in range(2):
        close(
            loss(pred, target)[k],
            F.binary_cross_entropy_with_logits(pred[k], target, reduction="none").mean(-1),
        )
        close(loss.mean(pred, target)[k], F.binary_cross_entropy_with_logits(pred[k], target))


@pytest.mark.parametrize("seed", SEEDS)
def test_binary_hinge_closed_form_and_label_conventions(seed):
    k, n, _ = shapes(seed)
    g = gen(seed)
    pred = randn(k, n, g=g)
    y01 = _binary_targets(g, n)
    ypm = 2 * y01 - 1
    loss = get_loss("hinge")
    expected = torch.clamp(1 - ypm * pred, min=0)  # max(0, 1 - y f), y in {-1, +1}
    close(loss(pred, ypm), expected)
    close(loss(pred, y01), expected)
    close(loss(pred, y01.long()), expected)
    close(loss.mean(pred, y01), expected.mean(-1))
    close(get_loss("hinge", margin=0.5)(pred, ypm), torch.clamp(0.5 - ypm * pred, min=0))
    # exactly on the margin the loss is 0; inside it grows linearly
    close(
        loss(torch.tensor([1.0, 0.25], dtype=DT), torch.tensor([1.0, -1.0], dtype=DT)),
        torch.tensor([0.0, 1.25], dtype=DT),
    )


def _sigmoid_focal_formula(x, y, alpha, gamma):
    """Lin et al. 2017 / torchvision.ops.sigmoid_focal_loss, written out independently."""
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return loss


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("alpha", "gamma"), [(0.25, 2.0), (None, 2.0), (0.6, 0.0), (1.0, 0.5)])
def test_binary_focal_matches_published_formula(seed, alpha, gamma):
    k, n, _ = shapes(seed)
    g = gen(seed)
    pred = randn(k, n, g=g)
    target = _binary_targets(g, k, n)
    loss = get_loss("binary_focal", alpha=alpha, gamma=gamma)
    per_member(
        loss,
        lambda p, t: _sigmoid_focal_formula(p, t, alpha, gamma),
        pred,
        target,
        shared=False,
    )
    close(loss.mean(pred, target), _sigmoid_focal_formula(pred, target, alpha, gamma).mean(-1))


def test_binary_focal_default_is_torchvision_default():
    loss = get_loss("binary_focal")
    assert (loss.alpha, loss.gamma) == (0.25, 2.0)


# --------------------------------------------------------------------------------------------
# multiclass


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("c", [3, 10, 20])  # 10: max-subtract path; 20: torch's log_softmax
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
def test_cross_entropy_matches_torch(seed, c, weighted, eps):
    k, n, _ = shapes(seed)
    g = gen(seed)
    pred = randn(k, n, c, g=g, scale=3.0)
    target = torch.randint(0, c, (k, n), generator=g)
    w = torch.rand(c, generator=g, dtype=DT) + 0.1 if weighted else None
    loss = get_loss("cross_entropy", class_weight=w, label_smoothing=eps)
    out, mean = loss(pred, target), loss.mean(pred, target)
    assert out.shape == (k, n) and mean.shape == (k,)
    for m in range(k):
        kw = {"weight": w, "label_smoothing": eps}
        close(out[m], F.cross_entropy(pred[m], target[m], reduction="none", **kw))
        close(mean[m], F.cross_entropy(pred[m], target[m], reduction="mean", **kw))
    close(loss(pred[0], target[0]), out[0])
    close(loss.mean(pred[0], target[0]), mean[0])
    # shared target [N], int32 indices
    shared = target[0].to(torch.int32)
    out = loss(pred, shared)
    for m in range(k):
        close(
            out[m],
            F.cross_entropy(
                pred[m], shared.long(), reduction="none", weight=w, label_smoothing=eps
            ),
        )


@pytest.mark.parametrize("c", [4, 10, 24])
def test_cross_entropy_gradient_matches_torch(c):
    g = gen(21)
    pred = randn(3, 8, c, g=g).requires_grad_()
    target = torch.randint(0, c, (8,), generator=g)
    w = torch.rand(c, generator=g, dtype=DT) + 0.1
    get_loss("cross_entropy", class_weight=w, label_smoothing=0.2).mean(
        pred, target
    ).sum().backward()
    ref = pred.detach().clone().requires_grad_()
    sum(F.cross_entropy(ref[k], target, weight=w, label_smoothing=0.2) for k in range(3)).backward()
    close(pred.grad, ref.grad)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("shared", [False, True])
def test_cross_entropy_classes_first_layout_matches_torch(weighted, eps, shared):
    """Logits [K, N, C] viewed from a contiguous [K, C, N] (the grouped models' layout) take
    torch's class-dim-1 kernel: values and gradients equal F.cross_entropy per member."""
    g = gen(31)
    k, n, c = 3, 9, 10
    base = randn(k, c, n, g=g, scale=3.0).requires_grad_()
    pred = base.transpose(1, 2)
    target = torch.randint(0, c, (n,) if shared else (k, n), generator=g)
    w = torch.rand(c, generator=g, dtype=DT) + 0.1 if weighted else None
    loss = get_loss("cross_entropy", class_weight=w, label_smoothing=eps)
    out, mean = loss(pred, target), loss.mean(pred, target)
    mean.sum().backward()
    ref = pred.detach().contiguous().requires_grad_()
    per_member = target.expand(k, n)
    kw = {"weight": w, "label_smoothing": eps}
    for m in range(k):
        close(out[m], F.cross_entropy(ref[m], per_member[m], reduction="none", **kw))
        close(mean[m], F.cross_entropy(ref[m], per_member[m], reduction="mean", **kw))
    sum(F.cross_entropy(ref[m], per_member[m], **kw) for m in range(k)).backward()
    close(base.grad.transpose(1, 2), ref.grad)
    # two member dims [2, K, N, C] from a contiguous [2, K, C, N]
    stacked = randn(2, k, c, n, g=g).transpose(-1, -2)
    close(loss(stacked, target), loss(stacked.contiguous(), target))


def test_cross_entropy_extreme_logits():
    pred = torch.tensor([[[1000.0, -1000.0, 0.0], [-700.0, 700.0, 699.0]]], dtype=DT)
    target = torch.tensor([1, 2])
    close(get_loss("ce")(pred, target)[0], F.cross_entropy(pred[0], target, reduction="none"))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("margin", [1.0, 0.4])
@pytest.mark.parametrize("weighted", [False, True])
def test_multi_hinge_matches_multi_margin_loss(seed, p, margin, weighted):
    k, n, c = shapes(seed)
    g = gen(seed)
    pred = randn(k, n, c, g=g, scale=0.7)
    target = torch.randint(0, c, (n,), generator=g)
    w = torch.rand(c, generator=g, dtype=DT) + 0.1 if weighted else None
    loss = get_loss("multi_hinge", p=p, margin=margin, class_weight=w)
    out, mean = loss(pred, target), loss.mean(pred, target)
    for m in range(k):
        ref = F.multi_margin_loss(pred[m], target, p=p, margin=margin, weight=w, reduction="none")
        close(out[m], ref)
        # optimkit's mean divides by sum w[y] (torch's "mean" here divides by N)
        close(mean[m], ref.sum() / (w[target].sum() if weighted else n))
        if not weighted:
            close(mean[m], F.multi_margin_loss(pred[m], target, p=p, margin=margin))


def _softmax_focal_formula(x, y, alpha, gamma):
    """-alpha_y (1 - p_y)^gamma log p_y, p = softmax(x)."""
    p_y = torch.softmax(x, -1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
    a = 1.0 if alpha is None else (alpha[y] if isinstance(alpha, torch.Tensor) else alpha)
    return -a * (1 - p_y) ** gamma * torch.log(p_y)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("c", [5, 17])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("alpha_kind", ["none", "float", "per_class"])
def test_multiclass_focal_matches_formula(seed, c, gamma, alpha_kind):
    k, n, _ = shapes(seed)
    g = gen(seed)
    pred = randn(k, n, c, g=g)
    target = torch.randint(0, c, (n,), generator=g)
    alpha = {"none": None, "float": 0.3, "per_class": torch.rand(c, generator=g, dtype=DT)}[
        alpha_kind
    ]
    loss = get_loss("focal", alpha=alpha, gamma=gamma)
    per_member(loss, lambda p, t: _softmax_focal_formula(p, t, alpha, gamma), pred, target, True)
    means = loss.mean(pred, target)
    for m in range(k):
        close(means[m], _softmax_focal_formula(pred[m], target, alpha, gamma).mean())


def test_multiclass_focal_gamma0_is_cross_entropy():
    g = gen(5)
    pred, target = randn(2, 9, 4, g=g), torch.randint(0, 4, (9,), generator=g)
    w = torch.tensor([0.5, 1.0, 2.0, 0.1], dtype=DT)
    close(
        get_loss("focal", gamma=0.0, class_weight=w).mean(pred, target),
        get_loss("cross_entropy", class_weight=w).mean(pred, target),
    )


# --------------------------------------------------------------------------------------------
# weights and population hyperparameters


def test_sample_weight_mean_is_weighted_mean():
    g = gen(31)
    pred, target = randn(3, 12, 5, g=g), torch.randint(0, 5, (12,), generator=g)
    cw = torch.rand(5, generator=g, dtype=DT) + 0.1
    s = torch.rand(12, generator=g, dtype=DT)
    s_km = torch.rand(3, 12, generator=g, dtype=DT)
    loss = get_loss("cross_entropy", class_weight=cw)
    for sw in (s, s_km):
        out, mean = loss(pred, target, sample_weight=sw), loss.mean(pred, target, sample_weight=sw)
        for k in range(3):
            swk = sw if sw.dim() == 1 else sw[k]
            ref = F.cross_entropy(pred[k], target, weight=cw, reduction="none")  # = w_y * l
            close(out[k], swk * ref)
            close(mean[k], (swk * ref).sum() / (swk * cw[target]).sum())
    # regression: sum(w l) / sum(w); integer weights equal repeating samples
    pr, tr = randn(2, 6, g=g), randn(6, g=g)
    reps = torch.tensor([1, 0, 3, 2, 1, 1])
    mse = get_loss("mse")
    close(
        mse.mean(pr, tr, sample_weight=reps.to(DT)),
        mse.mean(pr.repeat_interleave(reps, dim=1), tr.repeat_interleave(reps)),
    )
    close(weighted_mean(mse(pr, tr), reps.to(DT)), mse.mean(pr, tr, sample_weight=reps))
    # weights per member [K, N] on values shared by the members [N]
    s2 = torch.rand(2, 6, generator=g, dtype=DT)
    close(weighted_mean(tr, s2), (s2 * tr).sum(-1) / s2.sum(-1))


@pytest.mark.parametrize(
    ("name", "opt", "values", "make"),
    [
        ("huber", "delta", [0.2, 1.0, 3.0], lambda g: (randn(3, 8, g=g), randn(8, g=g))),
        ("bce", "pos_weight", [0.0, 1.0, 3.0], lambda g: (randn(3, 8, g=g), _binary_targets(g, 8))),
        (
            "bce",
            "label_smoothing",
            [0.0, 0.2, 1.0],
            lambda g: (randn(3, 8, g=g), _binary_targets(g, 8)),
        ),
        ("hinge", "margin", [0.5, 1.0, 2.0], lambda g: (randn(3, 8, g=g), _binary_targets(g, 8))),
        (
            "binary_focal",
            "gamma",
            [0.0, 1.0, 2.5],
            lambda g: (randn(3, 8, g=g), _binary_targets(g, 8)),
        ),
        (
            "binary_focal",
            "alpha",
            [0.0, 0.25, 1.0],
            lambda g: (randn(3, 8, g=g), _binary_targets(g, 8)),
        ),
        (
            "cross_entropy",
            "label_smoothing",
            [0.0, 0.1, 0.9],
            lambda g: (randn(3, 8, 6, g=g), torch.randint(0, 6, (8,), generator=g)),
        ),
        (
            "multi_hinge",
            "margin",
            [0.1, 1.0, 2.0],
            lambda g: (randn(3, 8, 6, g=g), torch.randint(0, 6, (8,), generator=g)),
        ),
        (
            "focal",
            "gamma",
            [0.0, 1.0, 3.0],
            lambda g: (randn(3, 8, 6, g=g), torch.randint(0, 6, (8,), generator=g)),
        ),
    ],
)
def test_population_hyperparameter_member_equals_scalar(name, opt, values, make):
    pred, target = make(gen(41))
    stacked = get_loss(name, **{opt: torch.tensor(values, dtype=DT)})
    out, mean = stacked(pred, target), stacked.mean(pred, target)
    for k, v in enumerate(values):
        single = get_loss(name, **{opt: v})
        close(out[k], single(pred[k], target))
        close(mean[k], single.mean(pred[k], target))


@pytest.mark.parametrize(
    ("name", "opts", "c"),
    [
        ("cross_entropy", {"label_smoothing": 0.1, "class_weight": [1.0, 2.0, 0.5, 1.0]}, 4),
        ("cross_entropy", {}, 20),
        ("focal", {"alpha": [0.1, 0.2, 0.3, 0.4]}, 4),
        ("multi_hinge", {"p": 2, "class_weight": [1.0, 2.0, 0.5, 1.0]}, 4),
        ("bce", {"pos_weight": 2.0}, 0),
        ("huber", {"delta": 0.5}, 0),
    ],
)
def test_vmap_matches_stacked_call_values_and_grads(name, opts, c):
    g = gen(51)
    if c:
        pred, target = randn(4, 10, c, g=g), torch.randint(0, c, (10,), generator=g)
    else:
        pred, target = randn(4, 10, g=g), _binary_targets(g, 10)
    loss = get_loss(name, **opts)
    close(torch.func.vmap(loss.mean, in_dims=(0, None))(pred, target), loss.mean(pred, target))
    grads = torch.func.vmap(torch.func.grad(loss.mean), in_dims=(0, None))(pred, target)
    p = pred.clone().requires_grad_()
    loss.mean(p, target).sum().backward()
    close(grads, p.grad)


# --------------------------------------------------------------------------------------------
# custom losses and lookup


def test_custom_callable_loss():
    def logcosh(pred, target):
        return torch.log(torch.cosh(pred - target))

    g = gen(61)
    pred, target, s = randn(3, 7, g=g), randn(7, g=g), torch.rand(7, generator=g, dtype=DT)
    loss = get_loss(logcosh)
    assert isinstance(loss, CustomLoss) and loss.name == "logcosh"
    close(loss(pred, target), logcosh(pred, target))
    close(loss.mean(pred, target, sample_weight=s), (s * logcosh(pred, target)).sum(-1) / s.sum())
    assert get_loss(logcosh, name="lc").name == "lc"
    with pytest.raises(ValueError, match="per-sample"):
        get_loss(lambda p, t: (p - t).sum()).mean(pred, target)


def test_get_loss_names_aliases_and_errors():
    assert available_losses() == sorted(LOSSES)
    assert set(LOSSES) == {
        "mse",
        "mae",
        "huber",
        "bce",
        "hinge",
        "binary_focal",
        "cross_entropy",
        "multi_hinge",
        "focal",
    }
    assert isinstance(get_loss("CE"), CrossEntropyLoss)
    assert get_loss("l1").name == "mae" and get_loss("multi-margin").name == "multi_hinge"
    inst = get_loss("huber", delta=2.0)
    assert get_loss(inst) is inst
    with pytest.raises(ValueError, match=r"unknown name 'msee'.*cross_entropy.*mse"):
        get_loss("msee")
    with pytest.raises(ValueError, match=r"'mse' does not take \['delta'\].*event_ndim"):
        get_loss("mse", delta=1.0)
    with pytest.raises(ValueError, match="loss: expected a name"):
        get_loss(3)
    tasks = {n: cls.task for n, cls in LOSSES.items()}
    assert tasks["mse"] == "regression" and tasks["bce"] == "binary"
    assert tasks["focal"] == "multiclass"


# --------------------------------------------------------------------------------------------
# validation


@pytest.mark.parametrize(
    ("name", "opts", "match"),
    [
        ("huber", {"delta": -1.0}, "delta: expected a positive number"),
        ("huber", {"delta": 0.0}, "delta: expected a positive number"),
        ("huber", {"delta": torch.tensor([1.0, -0.5])}, "delta: expected a positive number"),
        ("huber", {"delta": torch.ones(2, 2)}, r"delta: expected .*shape \[K\]"),
        ("huber", {"delta": float("nan")}, "delta: expected a positive number"),
        ("binary_focal", {"gamma": -0.5}, "gamma: expected a number >= 0"),
        ("focal", {"gamma": -1.0}, "gamma: expected a number >= 0"),
        ("binary_focal", {"alpha": 1.5}, r"alpha: expected a number in \[0, 1\]"),
        ("binary_focal", {"alpha": -0.1}, r"alpha: expected a number in \[0, 1\]"),
        ("focal", {"alpha": 2.0}, r"alpha: expected a number in \[0, 1\]"),
        ("focal", {"alpha": [0.5, 1.2]}, r"alpha: expected numbers in \[0, 1\]"),
        (
            "cross_entropy",
            {"label_smoothing": 1.1},
            r"label_smoothing: expected a number in \[0, 1\]",
        ),
        (
            "cross_entropy",
            {"label_smoothing": -0.1},
            r"label_smoothing: expected a number in \[0, 1\]",
        ),
        ("bce", {"label_smoothing": 2.0}, r"label_smoothing: expected a number in \[0, 1\]"),
        ("bce", {"class_weight": [1.0, 2.0, 3.0]}, "class_weight: expected 2 entries"),
        (
            "cross_entropy",
            {"class_weight": [1.0, -2.0]},
            "class_weight: expected finite numbers >= 0",
        ),
        ("cross_entropy", {"class_weight": [[1.0]]}, "class_weight: expected a non-empty 1-D"),
        ("bce", {"pos_weight": -1.0}, "pos_weight: expected a number >= 0"),
        ("multi_hinge", {"p": 3}, "p: expected 1 or 2"),
        ("hinge", {"margin": 0.0}, "margin: expected a positive number"),
        ("mse", {"event_ndim": -1}, "event_ndim: expected an integer >= 0"),
        ("huber", {"delta": True}, "delta: expected a number"),
    ],
)
def test_bad_options_raise(name, opts, match):
    with pytest.raises(ValueError, match=match):
        get_loss(name, **opts)


def test_bad_inputs_raise():
    g = gen(71)
    pred, target = randn(3, 5, 4, g=g), torch.randint(0, 4, (5,), generator=g)
    ce = get_loss("cross_entropy", class_weight=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"class_weight: expected 4 entries.*got 3"):
        ce(pred, target)
    ce = get_loss("cross_entropy")
    with pytest.raises(ValueError, match="pred: expected a floating-point tensor"):
        ce(pred.long(), target)
    with pytest.raises(ValueError, match="target: expected integer class indices"):
        ce(pred, target.to(DT))
    with pytest.raises(ValueError, match=r"target: expected shape \[5\].*or \[3, 5\]"):
        ce(pred, torch.randint(0, 4, (6,), generator=g))
    with pytest.raises(ValueError, match=r"target: expected shape"):
        ce(pred, torch.randint(0, 4, (2, 5), generator=g))
    mse = get_loss("mse")
    with pytest.raises(ValueError, match=r"target: expected shape \[1\].*squeeze it"):
        mse(randn(5, 1, g=g), randn(5, g=g))  # the classic [N, 1] vs [N] mistake
    with pytest.raises(ValueError, match="pred: expected a floating-point tensor"):
        mse(torch.arange(5), randn(5, g=g))
    with pytest.raises(ValueError, match="pred: expected shape"):
        mse(torch.tensor(1.0, dtype=DT), torch.tensor(1.0, dtype=DT))
    with pytest.raises(ValueError, match="target: expected event shape"):
        get_loss("mse", event_ndim=1)(randn(3, 5, 2, g=g), randn(5, 3, g=g))
    with pytest.raises(ValueError, match=r"sample_weight: expected a real tensor of shape \[5\]"):
        mse.mean(randn(3, 5, g=g), randn(5, g=g), sample_weight=torch.ones(4))
    with pytest.raises(ValueError, match=r"delta: a tensor of 2 values.*\[2, N, \.\.\.\]"):
        get_loss("huber", delta=torch.tensor([1.0, 2.0]))(randn(5, g=g), randn(5, g=g))
    with pytest.raises(ValueError, match=r"delta: a tensor of 2 values"):
        get_loss("huber", delta=torch.tensor([1.0, 2.0]))(randn(3, 5, g=g), randn(5, g=g))
