"""Every convolution variant of the grouped CNN (`optimkit.models.grouped.conv_members`:
channels-last and NCHW grouped conv, im2col + GEMM / bmm, a loop of plain convs) against the
plain per-member ``F.conv2d`` in float64: outputs and gradients of weights, biases and inputs;
and the whole population CNN with each variant against its K plain member modules."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from optimkit.models import Population, build_model
from optimkit.models.grouped import CONV_VARIANTS, GroupedCNN, conv_members, pick_conv

VARIANTS = [v for v in CONV_VARIANTS if v != "auto"] + ["auto"]
TOL = {"rtol": 1e-12, "atol": 1e-12}


def _reference(z, weight, bias, padding, shared, relu):
    k, _, c_in = weight.shape[:3]
    n, _, h, w = z.shape
    parts = z.view(n, 1 if shared else k, c_in, h, w)
    outs = [F.conv2d(parts[:, 0 if shared else m], weight[m], bias[m], padding=padding)
            for m in range(k)]  # fmt: skip
    out = torch.cat(outs, 1)
    return torch.relu(out) if relu else out


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize(("c_in", "kernel"), [(1, 3), (3, 3), (2, 5)])
@pytest.mark.parametrize("relu", [False, True])
def test_variant_equals_per_member_conv(variant, shared, c_in, kernel, relu):
    torch.manual_seed(0)
    k, c_out, n, h, w = 3, 4, 5, 7, 6
    weight = torch.randn(k, c_out, c_in, kernel, kernel, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(k, c_out, dtype=torch.float64, requires_grad=True)
    z = torch.randn(n, c_in if shared else k * c_in, h, w, dtype=torch.float64,
                    requires_grad=True)  # fmt: skip
    g = torch.randn(n, k * c_out, h, w, dtype=torch.float64)
    out, applied = conv_members(z, weight, bias, kernel // 2, shared=shared, variant=variant,
                                relu=relu)  # fmt: skip
    if relu and not applied:
        out = torch.relu(out)
    ref = _reference(z, weight, bias, kernel // 2, shared, relu)
    torch.testing.assert_close(out, ref, **TOL)
    got = torch.autograd.grad((out * g).sum(), (weight, bias, z))
    want = torch.autograd.grad((ref * g).sum(), (weight, bias, z))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **TOL)


def test_float32_im2col_with_fused_relu_matches_conv():
    """The oneDNN path (float32, shared input, bias and ReLU fused) against plain convs."""
    torch.manual_seed(0)
    k, c_out, n = 4, 8, 6
    weight = torch.randn(k, c_out, 1, 3, 3, requires_grad=True)
    bias = torch.randn(k, c_out, requires_grad=True)
    z = torch.randn(n, 1, 10, 10)
    out, applied = conv_members(z, weight, bias, 1, shared=True, variant="im2col", relu=True)
    out = out if applied else torch.relu(out)
    ref = _reference(z, weight, bias, 1, True, True)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(ref)
    got = torch.autograd.grad((out * g).sum(), (weight, bias))
    want = torch.autograd.grad((ref * g).sum(), (weight, bias))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_auto_picks_im2col_for_a_shared_input_with_few_taps():
    assert pick_conv(True, 1, 3, torch.float32) == "im2col"
    assert pick_conv(False, 1, 3, torch.float32) == "grouped"
    assert pick_conv(True, 16, 3, torch.float32) == "grouped"


def test_unknown_variant_is_a_message():
    with pytest.raises(ValueError, match="conv_variant: expected one of"):
        GroupedCNN(build_model("cnn", 64, 10), conv_variant="fft")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("per_member", [False, True])
def test_population_cnn_with_each_variant_equals_its_members(
    monkeypatch, variant, batch_norm, per_member
):
    monkeypatch.setattr(GroupedCNN, "conv_variant", variant)
    k, n = 3, 5
    options = {"channels": (4, 6), "batch_norm": batch_norm}
    pop = Population("cnn", 64, 10, list(range(k)), options=options, impl="grouped",
                     dtype=torch.float64)  # fmt: skip
    members = [pop.member(m) for m in range(k)]
    torch.manual_seed(1)
    x = torch.randn(k, n, 64, dtype=torch.float64) if per_member else \
        torch.randn(n, 64, dtype=torch.float64)  # fmt: skip
    out = pop.forward(x, train=False)
    g = torch.randn_like(out)
    (out * g).sum().backward()
    for m, module in enumerate(members):
        xm = x[m] if per_member else x
        ref = module(xm)
        torch.testing.assert_close(out[m], ref, **TOL)
        (ref * g[m]).sum().backward()
        for name, p in module.named_parameters():
            torch.testing.assert_close(pop.params[name].grad[m], p.grad, **TOL)
