"""Population vs the oracle: each member equals the plain nn.Module built alone with its seed
(forward in train and eval mode, batch-norm running statistics, gradients; float64, 1e-12), for
every built-in on the grouped and generic paths and for a user module on the generic path."""

from __future__ import annotations

import textwrap

import pytest
import torch
from torch import nn

from optimkit.models import Population, build_model, grouped

DT = torch.float64
TOL = {"rtol": 1e-12, "atol": 1e-12}
SEEDS = [11, 3, 7]


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, **TOL)


class UserNet(nn.Module):
    """A user's own module: batch norm (running stats per member) on the generic path."""

    def __init__(self, n_features: int, n_outputs: int, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(n_features, width)
        self.bn = nn.BatchNorm1d(width)
        self.out = nn.Linear(width, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.bn(self.fc(x))))


def user_factory(n_features: int, n_outputs: int, width: int = 5) -> nn.Module:
    return UserNet(n_features, n_outputs, width)


CASES = {
    "linear": ("linear", 5, 2, {}),
    "logistic": ("logistic", 5, 1, {"init": "xavier"}),
    "softmax": ("softmax", 5, 3, {}),
    "mlp": ("mlp", 5, 3, {"hidden": (6,), "activation": "tanh", "init": "xavier"}),
    "mlp_bn_residual": ("mlp", 5, 3, {"hidden": (6, 6, 4), "batch_norm": True, "residual": True,
                                      "activation": "leaky_relu", "init": "he"}),
    "cnn_bn": ("cnn", 64, 3, {"channels": (3, 4), "batch_norm": True, "hidden": (5,)}),
    "cnn_rgb": ("cnn", 48, 2, {"image_shape": (3, 4, 4), "channels": (2,), "init": "orthogonal"}),
    "mf": ("mf", 2, 1, {"n_users": 7, "n_items": 5, "dim": 3, "global_bias": 1.5}),
    "user": (user_factory, 5, 2, {"width": 4}),
}  # fmt: skip
BUILTINS = [c for c in CASES if c != "user"]
# (impl, chunk): chunk=1 runs the grouped path one member per call
VARIANTS = [("grouped", None), ("grouped", 1), ("generic", None)]


def make_x(case: str, n: int, gen: torch.Generator, k: int | None = None) -> torch.Tensor:
    model, n_features, _, opts = CASES[case]
    lead = (k, n) if k is not None else (n,)
    if model == "mf":
        users = torch.randint(0, opts["n_users"], lead, generator=gen)
        items = torch.randint(0, opts["n_items"], lead, generator=gen)
        return torch.stack([users, items], dim=-1)
    if case == "cnn_rgb":  # images [.., C, H, W]
        return torch.randn(*lead, 3, 4, 4, generator=gen, dtype=DT)
    return torch.randn(*lead, n_features, generator=gen, dtype=DT)


def plain(case: str, seed: int, **override) -> nn.Module:
    model, n_features, n_outputs, opts = CASES[case]
    torch.manual_seed(seed)
    return build_model(model, n_features, n_outputs, **{**opts, **override}).to(DT)


def population(case: str, impl: str = "auto", chunk: int | None = None, **kw) -> Population:
    model, n_features, n_outputs, opts = CASES[case]
    kw.setdefault("options", opts)
    kw.setdefault("dtype", DT)
    return Population(model, n_features, n_outputs, kw.pop("seeds", SEEDS), impl=impl,
                      chunk=chunk, **kw)  # fmt: skip


def grads_of(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad for n, p in module.named_parameters()}


CASE_VARIANTS = [(c, impl, chunk) for c in BUILTINS for impl, chunk in VARIANTS]
CASE_VARIANTS += [("user", "generic", None)]


@pytest.mark.parametrize("case,impl,chunk", CASE_VARIANTS)
def test_members_equal_plain_modules(case, impl, chunk):
    """Weights, train-mode outputs and gradients over three steps, running stats, eval mode."""
    pop = population(case, impl, chunk)
    assert pop.impl == impl and len(pop) == 3
    plains = [plain(case, s) for s in SEEDS]
    for name, stacked in pop.params.items():
        assert stacked.is_leaf and stacked.requires_grad and stacked.shape[0] == 3
        for k, m in enumerate(plains):
            assert torch.equal(stacked[k], m.get_parameter(name))
    gen = torch.Generator().manual_seed(0)
    n_out = CASES[case][2]
    for _ in range(3):
        x = make_x(case, 8, gen)
        y = torch.randn(8, n_out, generator=gen, dtype=DT)
        out = pop.forward(x, train=True)
        assert out.shape == (3, 8, n_out)
        for p in pop.parameters():
            p.grad = None
        (out - y).square().mean(dim=(1, 2)).sum().backward()  # sum of per-member mean losses
        for k, m in enumerate(plains):
            m.train()
            m.zero_grad()
            ref = m(x)
            close(out[k].detach(), ref.detach())
            (ref - y).square().mean().backward()
            for name, g in grads_of(m).items():
                close(pop.params[name].grad[k], g)
    for name, stacked in pop.buffers.items():
        for k, m in enumerate(plains):
            close(stacked[k], m.get_buffer(name))
    x = make_x(case, 5, gen)
    with torch.no_grad():
        out = pop.forward(x, train=False)
        for k, m in enumerate(plains):
            close(out[k], m.eval()(x))


@pytest.mark.parametrize("case,impl,chunk", CASE_VARIANTS)
def test_per_member_inputs(case, impl, chunk):
    pop = population(case, impl, chunk)
    plains = [plain(case, s).train() for s in SEEDS]
    gen = torch.Generator().manual_seed(1)
    x = make_x(case, 6, gen, k=3)
    per_member = True if case == "user" else None  # inferred from the rank for built-ins
    with torch.no_grad():
        out = pop.forward(x, train=True, per_member=per_member)
        for k, m in enumerate(plains):
            close(out[k], m(x[k]))
        for name, stacked in pop.buffers.items():
            for k, m in enumerate(plains):
                close(stacked[k], m.get_buffer(name))
        out = pop.forward(x, train=False, per_member=per_member)
        for k, m in enumerate(plains):
            close(out[k], m.eval()(x[k]))


@pytest.mark.parametrize("case", BUILTINS)
def test_grouped_equals_generic_on_the_same_weights(case):
    grouped, generic = population(case, "grouped"), population(case, "generic")
    with torch.no_grad():  # move the weights away from the init both paths share
        for name, p in grouped.params.items():
            p.add_(0.1 * torch.randn_like(p))
            generic.params[name].copy_(p)
    gen = torch.Generator().manual_seed(2)
    for _ in range(2):
        x = make_x(case, 7, gen)
        outs = []
        for pop in (grouped, generic):
            for p in pop.parameters():
                p.grad = None
            out = pop.forward(x, train=True)
            out.square().mean(dim=(1, 2)).sum().backward()
            outs.append(out.detach())
        close(outs[0], outs[1])
        for name in grouped.params:
            close(grouped.params[name].grad, generic.params[name].grad)
        for name in grouped.buffers:
            close(grouped.buffers[name], generic.buffers[name])
    x = make_x(case, 4, gen)
    close(grouped.forward(x, False).detach(), generic.forward(x, False).detach())


# ---------------------------------------------------------------------------------- dropout
class FixedMask(nn.Module):
    """The oracle's dropout: a given keep-mask, scaled by 1 / (1 - p) as nn.Dropout does."""

    def __init__(self, mask: torch.Tensor, p: float) -> None:
        super().__init__()
        self.mask, self.p = mask, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask.to(x.dtype) / (1.0 - self.p)


def with_masks(model: nn.Module, masks: list[torch.Tensor], p: float) -> nn.Module:
    """Replace model's nn.Dropout modules, in forward order, by FixedMask(masks[i], p)."""
    sites = [
        (parent, name)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, nn.Dropout)
    ]
    assert len(sites) == len(masks)
    for (parent, name), mask in zip(sites, masks, strict=True):
        setattr(parent, name, FixedMask(mask, p))
    return model


DROPOUT_CASES = {
    "mlp": ("mlp", 5, 3, {"hidden": (6, 4), "batch_norm": True, "residual": True}),
    "cnn": ("cnn", 64, 3, {"channels": (2,), "hidden": (5,)}),
}


@pytest.mark.parametrize("case", ["mlp", "cnn"])
@pytest.mark.parametrize("rates", [0.3, [0.0, 0.3, 0.6]])
@pytest.mark.parametrize("chunk", [None, 2])
def test_dropout_member_equals_plain_with_the_same_masks(case, rates, chunk):
    model, n_features, n_outputs, opts = DROPOUT_CASES[case]
    pop = Population(model, n_features, n_outputs, SEEDS, options={**opts, "dropout": rates},
                     impl="grouped", dtype=DT, chunk=chunk)  # fmt: skip
    per_rate = rates if isinstance(rates, list) else [rates] * 3
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(9, n_features, generator=gen, dtype=DT)
    state = pop.generator.get_state()
    masks = pop.sample_dropout_masks(9)
    widths = [6, 4] if case == "mlp" else [2 * 4 * 4, 5]
    assert [tuple(m.shape) for m in masks] == [(3, 9, w) for w in widths]
    assert all(m.dtype == torch.bool for m in masks)
    out = pop.forward(x, train=True, dropout_masks=masks)
    out.square().mean(dim=(1, 2)).sum().backward()
    pop.generator.set_state(state)  # a forward without masks draws exactly these masks
    close(pop.forward(x, train=True).detach(), out.detach())
    for k, (seed, p) in enumerate(zip(SEEDS, per_rate, strict=True)):
        torch.manual_seed(seed)
        oracle = build_model(model, n_features, n_outputs, **{**opts, "dropout": p}).to(DT)
        if p == 0:
            assert all(m[k].all() for m in masks)
        else:
            with_masks(oracle, [m[k] for m in masks], p)
        ref = oracle.train()(x)
        close(out[k].detach(), ref.detach())
        ref.square().mean().backward()
        for name, g in grads_of(oracle).items():
            close(pop.params[name].grad[k], g)
        member = pop.member(k)
        drops = [m for m in member.modules() if isinstance(m, nn.Dropout)]
        assert drops and all(d.p == p for d in drops)


def test_dropout_masks_per_member_statistics_and_generator():
    rates = [0.1, 0.5, 0.5, 0.8]
    pop = Population("mlp", 3, 2, [0, 1, 2, 3], options={"hidden": (500,), "dropout": rates},
                     dropout_seed=5)  # fmt: skip
    (mask,) = pop.sample_dropout_masks(400)  # [4, 400, 500]
    kept = mask.double().mean(dim=(1, 2))
    # 200,000 Bernoulli draws per member: the std of the kept fraction is <= 0.0012
    torch.testing.assert_close(kept, 1 - torch.tensor(rates, dtype=DT), atol=0.01, rtol=0)
    disagree = (mask[1] != mask[2]).double().mean()  # independent masks at p = 0.5
    assert abs(disagree.item() - 0.5) < 0.01
    again = Population("mlp", 3, 2, [0, 1, 2, 3], options={"hidden": (500,), "dropout": rates},
                       dropout_seed=5)  # fmt: skip
    assert torch.equal(again.sample_dropout_masks(400)[0], mask)
    other = Population("mlp", 3, 2, [0, 1, 2, 3], options={"hidden": (500,), "dropout": rates},
                       dropout_seed=6)  # fmt: skip
    assert not torch.equal(other.sample_dropout_masks(400)[0], mask)


class LinearThenDropout(nn.Module):
    def __init__(self, n_features: int, n_outputs: int) -> None:
        super().__init__()
        self.fc = nn.Linear(n_features, n_outputs)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc(x))


def test_generic_dropout_masks_per_member_from_own_generator():
    pop = Population(LinearThenDropout, 4, 300, [0, 1, 2], dtype=DT, dropout_seed=9)
    assert pop.impl == "generic"
    x = torch.randn(200, 4, dtype=DT)
    torch.manual_seed(0)
    global_state = torch.get_rng_state()
    state = pop.generator.get_state()
    with torch.no_grad():
        out = pop.forward(x, train=True)
        pop.generator.set_state(state)
        torch.manual_seed(1234)  # the global RNG does not drive the population's dropout
        again = pop.forward(x, train=True)
    assert torch.equal(out, again)
    torch.manual_seed(0)
    assert torch.equal(torch.get_rng_state(), global_state)
    kept = out != 0
    for k in range(3):
        lin = x @ pop.params["fc.weight"][k].detach().T + pop.params["fc.bias"][k].detach()
        close(out[k][kept[k]], 2.0 * lin[kept[k]])  # survivors scaled by 1 / (1 - p)
        assert abs(kept[k].double().mean().item() - 0.5) < 0.01
    assert (kept[0] != kept[1]).double().mean() > 0.45
    with torch.no_grad():
        evaluated = pop.forward(x, train=False)
    for k in range(3):
        lin = x @ pop.params["fc.weight"][k].detach().T + pop.params["fc.bias"][k].detach()
        close(evaluated[k], lin)


# -------------------------------------------------------------------- members, checkpoints
@pytest.mark.parametrize("case", ["mlp_bn_residual", "cnn_bn", "mf", "user"])
def test_member_round_trip(case):
    pop = population(case)
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for _ in range(2):
            pop.forward(make_x(case, 8, gen), train=True)
        x = make_x(case, 6, gen)
        out = pop.forward(x, train=False)
    for k in range(3):
        member = pop.member(k)
        assert not member.training
        fresh = plain(case, seed=999)
        fresh.load_state_dict(member.state_dict())
        with torch.no_grad():
            close(fresh.eval()(x), out[k])
            close(member(x), out[k])


def test_reinit_select_and_load_member_write_in_place():
    pop = population("mlp_bn_residual")
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        pop.forward(make_x("mlp_bn_residual", 8, gen), train=True)
        for p in pop.parameters():
            p.add_(1.0)
    leaves = {n: t for n, t in pop.params.items()}
    kept = {n: t[[0, 2]].detach().clone() for n, t in (pop.params | pop.buffers).items()}
    pop.reinit(1, 99)
    fresh = plain("mlp_bn_residual", 99)
    state = fresh.state_dict()
    for name, t in (pop.params | pop.buffers).items():
        assert torch.equal(t[1], state[name])
        assert torch.equal(t[[0, 2]], kept[name])
    assert all(pop.params[n] is leaves[n] for n in leaves) and pop.seeds == [11, 99, 7]

    sub = pop.select([2, 0, 2])
    assert sub.seeds == [7, 11, 7] and len(sub) == 3
    x = make_x("mlp_bn_residual", 5, gen)
    with torch.no_grad():
        close(sub.forward(x, False), pop.forward(x, False)[[2, 0, 2]])
        sub.params["head.bias"].add_(1.0)  # a copy: the original is untouched
        assert not torch.equal(sub.params["head.bias"][1], pop.params["head.bias"][0])
    assert all(t.is_leaf and t.requires_grad for t in sub.params.values())

    pop.load_member(0, fresh)
    for name, t in (pop.params | pop.buffers).items():
        assert torch.equal(t[0], state[name])
    with pytest.raises(ValueError, match="missing"):
        pop.load_member(0, {"head.weight": state["head.weight"]})
    bad = dict(state, **{"head.bias": torch.zeros(7, dtype=DT)})
    with pytest.raises(ValueError, match=r"head.bias has shape \[7\], expected \[3\]"):
        pop.load_member(0, bad)


def test_reinit_with_a_new_dropout_rate():
    pop = Population("mlp", 4, 2, SEEDS, options={"hidden": (5,), "dropout": [0.1, 0.2, 0.3]},
                     dtype=DT)  # fmt: skip
    pop.reinit(2, 42, dropout=0.0)
    assert pop.dropout.tolist() == [0.1, 0.2, 0.0] and pop.seeds[2] == 42
    assert pop.spec.options == {"hidden": (5,), "dropout": [0.1, 0.2, 0.0]}
    assert pop.member_spec(1).options == {"hidden": (5,), "dropout": 0.2}
    assert population("mlp").spec.options == CASES["mlp"][3]
    torch.manual_seed(42)
    oracle = build_model("mlp", 4, 2, hidden=(5,), dropout=0.0).to(DT)
    (mask,) = pop.sample_dropout_masks(6)
    assert mask[2].all()
    x = torch.randn(6, 4, dtype=DT)
    with torch.no_grad():
        close(pop.forward(x, True, dropout_masks=[mask])[2], oracle.train()(x))
    with pytest.raises(ValueError, match="no per-member dropout layers"):
        population("mlp").reinit(0, 1, dropout=0.5)


def test_state_dict_round_trip_continues_bit_for_bit():
    opts = {"hidden": (6,), "batch_norm": True, "dropout": [0.2, 0.4, 0.5]}
    pop = Population("mlp", 5, 3, SEEDS, options=opts, dtype=DT)
    gen = torch.Generator().manual_seed(6)
    xs = [torch.randn(8, 5, generator=gen, dtype=DT) for _ in range(3)]
    with torch.no_grad():
        pop.forward(xs[0], True)
        saved = pop.state_dict()
        first = [pop.forward(x, True) for x in xs[1:]]
        after = {n: t.clone() for n, t in pop.buffers.items()}
        restored = Population("mlp", 5, 3, [0, 1, 2], options=opts, dtype=DT)
        restored.load_state_dict(saved)
        second = [restored.forward(x, True) for x in xs[1:]]
    assert restored.seeds == SEEDS
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)
    for name, t in restored.buffers.items():
        assert torch.equal(t, after[name])
    assert set(saved) >= {"seeds", "generator", "dropout", "params.head.weight",
                          "buffers.blocks.0.norm.running_mean"}  # fmt: skip
    with pytest.raises(ValueError, match="missing"):
        restored.load_state_dict({"seeds": saved["seeds"]})


# ---------------------------------------------------------------------- contract and errors
def test_layout_rng_and_single_member():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    pop = Population("softmax", 5, 4, [8], dtype=DT)
    assert torch.equal(torch.get_rng_state(), before)  # construction leaves the global RNG
    out = pop.forward(torch.randn(6, 5, dtype=DT), train=True)
    assert out.shape == (1, 6, 4) and out.transpose(1, 2).is_contiguous()
    chunked = Population("mlp", 5, 4, [1, 2, 3], options={"hidden": (3,)}, chunk=2)
    assert chunked.forward(torch.randn(6, 5), train=True).transpose(1, 2).is_contiguous()
    assert "K=1" in repr(pop) and pop.impl == "grouped"


def test_user_module_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "popnets_mod.py").write_text(textwrap.dedent("""
        from torch import nn

        def make(n_features, n_outputs, width=4):
            return nn.Sequential(nn.Linear(n_features, width), nn.BatchNorm1d(width),
                                 nn.ReLU(), nn.Linear(width, n_outputs))
    """))  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    pop = Population("popnets_mod:make", 3, 2, SEEDS, options={"width": 5}, dtype=DT)
    assert pop.impl == "generic"
    x = torch.randn(7, 3, dtype=DT)
    with torch.no_grad():
        out = pop.forward(x, train=True)
        for k, seed in enumerate(SEEDS):
            torch.manual_seed(seed)
            m = build_model("popnets_mod:make", 3, 2, width=5).to(DT)
            close(out[k], m(x))
            close(pop.buffers["1.running_var"][k], m[1].running_var)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"seeds": []}, "seeds: expected a non-empty list"),
        ({"seeds": [1, -2]}, r"seeds\[1\]: expected an integer >= 0"),
        ({"impl": "fast"}, "impl: unknown value 'fast'; valid values: auto, grouped, generic"),
        ({"options": {"hidden": (6,), "dropout": [0.1, 0.2]}}, "a list of 3 rates"),
        ({"options": {"hidden": (6,), "dropout": [0.1, 0.2, 0.3]}, "impl": "generic"},
         "per-member rates need impl='grouped'"),
        ({"chunk": 0}, "chunk: expected an integer >= 1"),
        ({"dtype": torch.int64}, "dtype: expected a floating-point dtype"),
    ],
)  # fmt: skip
def test_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        population("mlp", **kwargs)


def test_grouped_only_for_builtins():
    with pytest.raises(ValueError, match="'grouped' exists only for the built-in models"):
        population("user", impl="grouped")
    with pytest.raises(ValueError, match=r"'linear': unknown option.*dropout"):
        population("linear", options={"dropout": [0.1, 0.1, 0.1]})


def test_bad_forward_inputs():
    mlp, mf, cnn = population("mlp"), population("mf"), population("cnn_bn")
    x = torch.randn(4, 5, dtype=DT)
    with pytest.raises(ValueError, match=r"x: expected features \[B, 5\] or \[K, B, 5\]"):
        mlp.forward(torch.randn(4, 6, dtype=DT), True)
    with pytest.raises(ValueError, match=r"expected dtype torch.float64"):
        mlp.forward(x.float(), True)
    with pytest.raises(ValueError, match="leading dim K=3"):
        mlp.forward(torch.randn(4, 2, 5, dtype=DT), True)
    with pytest.raises(ValueError, match="per_member: True contradicts"):
        mlp.forward(x, True, per_member=True)
    with pytest.raises(ValueError, match=r"expected a torch.Tensor"):
        mlp.forward([[1.0] * 5], True)
    with pytest.raises(ValueError, match="expected integer indices"):
        mf.forward(torch.zeros(4, 2, dtype=DT), True)
    with pytest.raises(ValueError, match=r"images \[B, 1, 8, 8\]"):
        cnn.forward(torch.randn(4, 1, 7, 7, dtype=DT), True)
    with pytest.raises(ValueError, match="dropout is off in eval mode"):
        mlp.forward(x, False, dropout_masks=[])
    with pytest.raises(ValueError, match="only the grouped implementation"):
        population("user").forward(x, True, dropout_masks=[])
    drop = population("mlp", options={"hidden": (6,), "dropout": 0.5})
    with pytest.raises(ValueError, match=r"dropout_masks\[0\]: expected shape \[3, 4, 6\]"):
        drop.forward(x, True, dropout_masks=[torch.ones(3, 4, 5, dtype=torch.bool)])
    with pytest.raises(ValueError, match="expected 1 masks, got 0"):
        drop.forward(x, True, dropout_masks=[])
    with pytest.raises(ValueError, match=r"k: expected a member index in \[0, 3\)"):
        mlp.member(3)


def _graph_names(out: torch.Tensor) -> set[str]:
    names, stack, seen = set(), [out.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(n for n, _ in node.next_functions)
    return names


@pytest.mark.parametrize(
    "model,n_features,n_outputs,opts",
    [
        ("mlp", 5, 3, {"hidden": (6,)}),  # torch's init: non-zero biases
        ("mlp", 5, 3, {"hidden": (6, 4), "batch_norm": True, "residual": True}),
        ("logistic", 5, 1, {}),
    ],
)
def test_float32_shared_first_layer_matches_plain_modules(model, n_features, n_outputs, opts):
    """float32 on CPU: the first layer on a shared input takes oneDNN (forward and weight
    gradient) where torch has it; members equal the plain float32 modules, and a double
    backward (Hessian-vector product) equals the plain modules' too."""
    f32 = torch.float32
    pop = Population(model, n_features, n_outputs, SEEDS, options=opts, dtype=f32)
    plains = []
    for s in SEEDS:
        torch.manual_seed(s)
        plains.append(build_model(model, n_features, n_outputs, **opts))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, n_features, generator=gen)
    y = torch.randn(8, n_outputs, generator=gen)
    out = pop.forward(x, train=True)
    fast = grouped._ONEDNN_LINEAR is not None
    assert ("_SharedDenseBackward" in _graph_names(out)) == fast
    (out - y).square().mean(dim=(1, 2)).sum().backward()
    tol = {"rtol": 1e-5, "atol": 1e-6}
    for k, m in enumerate(plains):
        ref = m(x)
        torch.testing.assert_close(out[k].detach(), ref.detach(), **tol)
        (ref - y).square().mean().backward()
        for name, p in m.named_parameters():
            torch.testing.assert_close(pop.params[name].grad[k], p.grad, **tol)
    with torch.no_grad():
        evaluated = pop.forward(x, train=False)
    for k, m in enumerate(plains):
        torch.testing.assert_close(evaluated[k], m.eval()(x), **tol)
    # Hessian-vector product through the first layer (create_graph=True)
    first = next(iter(pop.params))
    w = pop.params[first]
    (g,) = torch.autograd.grad(pop.forward(x, train=True).square().sum(), w, create_graph=True)
    v = torch.randn(w.shape, generator=gen)
    (hv,) = torch.autograd.grad((g * v).sum(), w)
    for k, m in enumerate(plains):
        p = m.get_parameter(first)
        (gk,) = torch.autograd.grad(m.train()(x).square().sum(), p, create_graph=True)
        (hk,) = torch.autograd.grad((gk * v[k]).sum(), p)
        torch.testing.assert_close(hv[k], hk, rtol=1e-4, atol=1e-4)
