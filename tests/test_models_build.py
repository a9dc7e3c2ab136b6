"""optimkit.models builders: architectures against hand-written torch.nn.functional oracles,
init schemes against their closed-form distributions, option validation, user factories."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from optimkit.models import (
    INITS,
    MLP,
    MatrixFactorization,
    ModelSpec,
    SmallCNN,
    available_models,
    build_model,
    model_options,
)

DT = torch.float64
TOL = {"rtol": 1e-12, "atol": 1e-12}


def seeded(name: str, n_features: int, n_outputs: int, seed: int = 0, **options) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(name, n_features, n_outputs, **options).to(DT)


def manual_bn(z: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, dims) -> torch.Tensor:
    mean = z.mean(dim=dims, keepdim=True)
    var = (z - mean).square().mean(dim=dims, keepdim=True)  # biased, as batch norm normalizes
    shape = [1, -1] + [1] * (z.dim() - 2)
    return (z - mean) / torch.sqrt(var + 1e-5) * gamma.view(shape) + beta.view(shape)


# ---------------------------------------------------------------------------- architectures
@pytest.mark.parametrize("name,n_out", [("linear", 2), ("logistic", 1), ("softmax", 3)])
def test_linear_models_are_one_affine_map_with_torch_default_init(name, n_out):
    model = seeded(name, 5, n_out, seed=3)
    torch.manual_seed(3)
    oracle = nn.Linear(5, n_out).to(DT)  # torch's default init under the same seed
    assert torch.equal(model.head.weight, oracle.weight)
    assert torch.equal(model.head.bias, oracle.bias)
    x = torch.randn(7, 5, dtype=DT)
    torch.testing.assert_close(model(x), x @ oracle.weight.T + oracle.bias, **TOL)
    assert sum(p.numel() for p in model.parameters()) == 5 * n_out + n_out


def test_mlp_residual_batchnorm_matches_functional_oracle():
    model = seeded(
        "mlp",
        4,
        3,
        hidden=(6, 6, 5),
        activation="tanh",
        batch_norm=True,
        residual=True,
        init="xavier",
    )
    model.train()
    x = torch.randn(9, 4, dtype=DT)
    blocks = model.blocks
    # block 0: no skip; block 1: identity skip (6 -> 6); block 2: projection skip (6 -> 5)
    assert [b.skip_kind for b in blocks] == [None, "identity", "projection"]

    def layer(h, b):
        z = h @ b.linear.weight.T + b.linear.bias
        return torch.tanh(manual_bn(z, b.norm.weight, b.norm.bias, 0))

    h0 = layer(x, blocks[0])
    h1 = h0 + layer(h0, blocks[1])
    h2 = h1 @ blocks[2].skip.weight.T + layer(h1, blocks[2])
    expected = h2 @ model.head.weight.T + model.head.bias
    torch.testing.assert_close(model(x), expected, **TOL)


def test_cnn_matches_functional_oracle_and_flat_input_equals_image():
    model = seeded("cnn", 64, 4, channels=(3, 5), hidden=(6,), batch_norm=True, init="he")
    model.train()
    x = torch.randn(6, 1, 8, 8, dtype=DT)
    h = x
    for block in model.convs:
        z = F.conv2d(h, block.conv.weight, block.conv.bias, padding=1)
        z = manual_bn(z, block.norm.weight, block.norm.bias, (0, 2, 3))
        h = F.max_pool2d(torch.relu(z), 2)
    h = h.flatten(1)  # [6, 5 * 2 * 2]
    b = model.blocks[0]
    h = torch.relu(manual_bn(h @ b.linear.weight.T + b.linear.bias, b.norm.weight, b.norm.bias, 0))
    expected = h @ model.head.weight.T + model.head.bias
    torch.testing.assert_close(model(x), expected, **TOL)
    torch.testing.assert_close(model(x.flatten(1)), expected, **TOL)


def test_cnn_image_shape_inference_and_errors():
    assert SmallCNN(784, 10).image_shape == (1, 28, 28)  # Fashion-MNIST
    assert SmallCNN(64, 10).image_shape == (1, 8, 8)  # digits
    model = seeded("cnn", 48, 2, image_shape=(3, 4, 4), channels=(2,))
    x = torch.randn(5, 3, 4, 4, dtype=DT)
    torch.testing.assert_close(model(x), model(x.reshape(5, 48)), **TOL)
    with pytest.raises(ValueError, match="not a square number"):
        SmallCNN(50, 10)
    with pytest.raises(ValueError, match=r"image_shape.*48 values but n_features=50"):
        SmallCNN(50, 10, image_shape=(3, 4, 4))
    with pytest.raises(ValueError, match="channels: 4 conv blocks halve a 8x8 image"):
        SmallCNN(64, 10, channels=(2, 2, 2, 2))
    with pytest.raises(ValueError, match="kernel_size: expected an odd"):
        SmallCNN(64, 10, kernel_size=4)


def test_mf_prediction_is_dot_plus_biases():
    model = seeded("mf", 2, 1, n_users=6, n_items=4, dim=3, global_bias=3.5)
    with torch.no_grad():  # give the zero-initialized biases values to check
        model.user_bias.weight.normal_()
        model.item_bias.weight.normal_()
    x = torch.tensor([[0, 0], [5, 3], [2, 1], [2, 1], [4, 2]])
    p = model.user.weight.detach().numpy()
    q = model.item.weight.detach().numpy()
    bu = model.user_bias.weight.detach().numpy()[:, 0]
    bi = model.item_bias.weight.detach().numpy()[:, 0]
    expected = [p[u] @ q[i] + bu[u] + bi[i] + 3.5 for u, i in x.tolist()]
    out = model(x)
    assert out.shape == (5, 1)
    np.testing.assert_allclose(out[:, 0].detach().numpy(), expected, rtol=1e-12, atol=1e-12)
    fresh = seeded("mf", 2, 1, n_users=6, n_items=4, dim=3)
    assert torch.all(fresh.user_bias.weight == 0) and torch.all(fresh.item_bias.weight == 0)
    assert float(fresh.global_bias.detach()) == 0.0


# ----------------------------------------------------------------------------------- init
def test_init_xavier_uniform_bound_and_head_gain():
    model = seeded("mlp", 300, 200, hidden=(400,), init="xavier")
    w = model.blocks[0].linear.weight.detach()
    bound = math.sqrt(2.0) * math.sqrt(6.0 / (300 + 400))  # relu gain
    assert w.abs().max() <= bound and w.abs().max() > 0.999 * bound
    assert abs(w.var().item() / (bound**2 / 3) - 1) < 0.02
    head = model.head.weight.detach()
    head_bound = math.sqrt(6.0 / (400 + 200))  # gain 1 on the output layer
    assert head.abs().max() <= head_bound and head.abs().max() > 0.999 * head_bound
    assert torch.all(model.blocks[0].linear.bias == 0) and torch.all(model.head.bias == 0)


@pytest.mark.parametrize("activation,gain", [("relu", math.sqrt(2)), ("tanh", 5 / 3)])
def test_init_he_normal_std(activation, gain):
    model = seeded("mlp", 250, 3, hidden=(400,), init="he", activation=activation)
    w = model.blocks[0].linear.weight.detach()
    assert abs(w.mean().item()) < 0.01 * gain / math.sqrt(250)
    assert abs(w.std().item() / (gain / math.sqrt(250)) - 1) < 0.01
    assert w.abs().max() > 3 * gain / math.sqrt(250)  # normal, not uniform


def test_init_he_uniform_bound_and_conv_fan_in():
    model = seeded("cnn", 784, 10, channels=(32, 64), init="he_uniform")
    w = model.convs[1].conv.weight.detach()  # fan_in = 32 * 3 * 3
    bound = math.sqrt(2.0) * math.sqrt(3.0 / (32 * 9))
    assert w.abs().max() <= bound and w.abs().max() > 0.99 * bound


def test_init_orthogonal_rows():
    model = seeded("mlp", 60, 5, hidden=(40, 40), init="orthogonal", activation="tanh")
    for block in model.blocks:
        w = block.linear.weight.detach()
        torch.testing.assert_close(
            w @ w.T, (5 / 3) ** 2 * torch.eye(40, dtype=DT), atol=1e-5, rtol=0
        )
    w = model.head.weight.detach()  # gain 1
    torch.testing.assert_close(w @ w.T, torch.eye(5, dtype=DT), atol=1e-5, rtol=0)


def test_init_zeros_only_for_linear_models_and_seed_determinism():
    model = seeded("linear", 4, 2, init="zeros")
    assert all(torch.all(p == 0) for p in model.parameters())
    with pytest.raises(ValueError, match="init: unknown value 'zeros'; valid values: torch"):
        build_model("mlp", 4, 2, init="zeros")
    a, b, c = (seeded("mlp", 4, 2, seed=s, init="xavier_normal") for s in (1, 1, 2))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.head.weight, c.head.weight)
    assert set(INITS) == {
        "torch",
        "xavier",
        "xavier_normal",
        "he",
        "he_uniform",
        "orthogonal",
        "zeros",
    }


# ------------------------------------------------------------------------------ validation
def test_unknown_model_and_option_list_the_valid_ones():
    with pytest.raises(ValueError, match="unknown name 'resnet'; valid names: linear, logistic"):
        build_model("resnet", 4, 2)
    with pytest.raises(ValueError, match=r"unknown option.*hiden.*valid options: activation"):
        build_model("mlp", 4, 2, hiden=(3,))
    with pytest.raises(ValueError, match=r"'linear': unknown option.*dropout.*valid options: bias"):
        build_model("linear", 4, 2, dropout=0.1)
    with pytest.raises(ValueError, match=r"missing option.*n_items"):
        build_model("mf", 2, 1, n_users=3)
    assert available_models() == ["linear", "logistic", "softmax", "mlp", "cnn", "mf"]
    assert model_options("mf") == ["dim", "global_bias", "init_std", "n_items", "n_users"]


@pytest.mark.parametrize(
    "name,n_out,options,match",
    [
        ("mlp", 2, {"hidden": (4, 0)}, r"hidden\[1\]: expected an integer >= 1"),
        ("mlp", 2, {"hidden": "64"}, "hidden: expected a sequence"),
        (
            "mlp",
            2,
            {"activation": "swish"},
            "activation: unknown value 'swish'; valid values: relu",
        ),
        ("mlp", 2, {"dropout": 1.0}, r"dropout: expected a number in \[0, 1\)"),
        ("mlp", 2, {"batch_norm": 1}, "batch_norm: expected True or False"),
        ("softmax", 1, {}, "n_outputs: 'softmax' needs >= 2 classes"),
        ("mf", 1, {"n_users": 3, "n_items": 3, "dim": 0}, "dim: expected an integer >= 1"),
        ("mf", 1, {"n_users": 3, "n_items": 3, "init_std": -1.0}, "init_std: expected a finite"),
    ],
)
def test_bad_option_values(name, n_out, options, match):
    with pytest.raises(ValueError, match=match):
        build_model(name, 2 if name == "mf" else 4, n_out, **options)


def test_bad_sizes():
    with pytest.raises(ValueError, match="n_features: expected an integer >= 1"):
        build_model("mlp", 0, 2)
    with pytest.raises(ValueError, match="n_outputs: expected an integer >= 1"):
        ModelSpec("linear", 3, True)
    with pytest.raises(ValueError, match="n_features: 'mf' takes"):
        build_model("mf", 3, 1, n_users=2, n_items=2)


def test_spec_build_with_seed_leaves_global_rng_alone():
    spec = ModelSpec("mlp", 4, 2, {"hidden": (3,)})
    torch.manual_seed(123)
    before = torch.get_rng_state()
    model = spec.build(seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    oracle = seeded("mlp", 4, 2, seed=7, hidden=(3,))
    for (n, p), (m, q) in zip(model.named_parameters(), oracle.named_parameters(), strict=True):
        assert n == m and torch.equal(p.to(DT), q)
    assert isinstance(model, MLP)
    assert isinstance(spec.with_options(hidden=(5,)).build(), MLP)
    assert isinstance(build_model("mf", 2, 1, n_users=2, n_items=2), MatrixFactorization)


# -------------------------------------------------------------------------- user factories
USER_MODULE = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self, n_features, n_outputs, width):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_features, width), nn.Tanh())
        self.out = nn.Linear(width, n_outputs)

    def forward(self, x):
        return self.out(self.body(x))

def make(n_features, n_outputs, width=3):
    return Net(n_features, n_outputs, width)

class Factories:
    @staticmethod
    def wide(n_features, n_outputs):
        return Net(n_features, n_outputs, 9)

def not_a_module(n_features, n_outputs):
    return "oops"

NOT_CALLABLE = 3
"""


@pytest.fixture
def user_package(tmp_path, monkeypatch):
    (tmp_path / "mymodels_pkg").mkdir()
    (tmp_path / "mymodels_pkg" / "__init__.py").write_text("")
    (tmp_path / "mymodels_pkg" / "nets.py").write_text(textwrap.dedent(USER_MODULE))
    (tmp_path / "mymodels_pkg" / "broken.py").write_text("import not_an_installed_dep_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "mymodels_pkg"


def test_user_factory_by_import_path(user_package):
    torch.manual_seed(4)
    model = build_model(f"{user_package}.nets:make", 5, 2, width=7)
    assert type(model).__name__ == "Net" and model.body[0].out_features == 7
    torch.manual_seed(4)
    oracle_w = nn.Linear(5, 7).weight  # the factory's first draw under the same seed
    assert torch.equal(model.body[0].weight, oracle_w)
    wide = build_model(f"{user_package}.nets:Factories.wide", 5, 2)
    assert wide.body[0].out_features == 9


@pytest.mark.parametrize(
    "path,match",
    [
        ("nopkg_zz_missing.nets:make", "module 'nopkg_zz_missing.nets' not found"),
        ("{pkg}.nope:make", r"module '{pkg}.nope' not found"),
        ("{pkg}.nets:missing", "module '{pkg}.nets' has no attribute 'missing'"),
        ("{pkg}.nets:NOT_CALLABLE", "'NOT_CALLABLE' is a int, not a callable factory"),
        ("{pkg}.nets:not_a_module", r"did not return an nn.Module \(got str\)"),
        ("{pkg}.broken:make", "importing module '{pkg}.broken' failed: No module named"),
        ("{pkg}.nets:make:x", "expected an import path 'package.module:factory'"),
        (":make", "expected an import path"),
    ],
)
def test_bad_import_paths(user_package, path, match):
    with pytest.raises(ValueError, match=match.format(pkg=user_package)):
        build_model(path.format(pkg=user_package), 5, 2)


def test_factory_signature_mismatch_is_a_value_error(user_package):
    with pytest.raises(
        ValueError, match=r"called as factory\(n_features, n_outputs, \*\*options\)"
    ):
        build_model(f"{user_package}.nets:make", 5, 2, depth=3)
    with pytest.raises(ValueError, match=r"did not return an nn.Module"):
        build_model(lambda n_features, n_outputs: None, 5, 2)
