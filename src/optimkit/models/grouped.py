"""Grouped population path for the built-in models: K members as stacked weights and one set of
batched kernels (addmm/baddbmm, grouped conv2d, index_select), no torch.func.

Dense layers run *feature-major*: activations are ``[K, features, B]``, so layer l is one
``baddbmm(b[K, out, 1], W[K, out, in], h[K, in, B])`` on the stacked nn.Linear weights as they
are (no transposes), and a first layer on an input shared by all members is a single matmul
``W.view(K*out, in) @ x.T``. Batch norm on ``[K, F, B]`` is one ``F.batch_norm`` call on the
view ``[1, K*F, B]`` with the stacked running statistics viewed as ``[K*F]``: each (member,
feature) channel gets its own batch statistics and updates its own running stats in place,
exactly as BatchNorm1d does. Convolutions run as ``[B, K*C, H, W]`` with ``groups=K`` (the
first one, on a shared input, as one conv with K*C_out filters), in the channels-last memory
format (pooling over [B, K*C, H, W] is much faster there). Outputs come out as a
contiguous ``[K, out, B]``; the Population returns its ``[K, B, out]`` transposed view, so
``out.transpose(1, 2)`` is free and is the layout ``F.cross_entropy(logits, y[K, B])`` (class
dim 1) runs fastest on (about 7x faster than ``[K*B, C]`` rows on CPU for C = 10, see
benchmarks/bench_models.py).

Dropout is applied through per-site multipliers ``mask / keep`` of shape ``[K, width, B]``,
supplied by the caller (the Population draws them from its own generator).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from optimkit.models.activations import activation_function
from optimkit.models.cnn import SmallCNN
from optimkit.models.mf import MatrixFactorization
from optimkit.models.mlp import MLP, DenseBlock

Tensors = dict[str, Tensor]


#: oneDNN's float32 linear kernel (``a @ b.T``; the one inductor's CPU backend calls), when this
#: torch build has it. On the CPUs measured it ran the shared first layer's products about 2x
#: faster than torch.mm's BLAS call (AMD Zen 5: 200 vs 90 GFLOP/s), with the same values.
_ONEDNN_LINEAR = (
    getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if torch.backends.mkldnn.is_available()
    else None
)


def _matmul_nt(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b.T`` for 2-D float32 CPU tensors through oneDNN."""
    return _ONEDNN_LINEAR(a, b, None, "none", [], "")  # type: ignore[misc]


class _SharedDense(torch.autograd.Function):
    """``W x^T + b`` -> ``[K*out, B]`` for stacked weights ``W [K*out, in]`` and an input ``x
    [B, in]`` shared by all members, both products (forward, and the weight gradient
    ``grad @ x``) through oneDNN. With ``relu=True`` the ReLU runs in place on the product
    (no second ``[K*out, B]`` tensor, one pass fewer) and the backward masks the gradient by
    the output, as ``torch.relu``'s backward does: the same values bit for bit as
    ``relu(W x^T + b)`` computed in two steps. A double backward (``create_graph=True``)
    differentiates plain torch products instead."""

    @staticmethod
    def forward(ctx, weight: Tensor, bias: Tensor | None, x: Tensor, relu: bool = False) -> Tensor:  # type: ignore[override]
        z = _matmul_nt(weight, x)
        if bias is not None:
            z += bias.unsqueeze(1)
        if relu:
            z.clamp_min_(0)
            ctx.save_for_backward(weight, x, z)
        else:
            ctx.save_for_backward(weight, x)
        ctx.relu = relu
        return z

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        weight, x, *out = ctx.saved_tensors
        if ctx.relu:
            grad = torch.ops.aten.threshold_backward(grad, out[0], 0)
        need_w, need_b, need_x = ctx.needs_input_grad[:3]
        fast = not torch.is_grad_enabled() and _onednn_applies(grad, x)
        grad_w = grad_x = None
        if need_w:
            grad_w = _matmul_nt(grad.contiguous(), x.T) if fast else grad @ x
        if need_x:
            grad_x = grad.T @ weight
        return grad_w, grad.sum(1) if need_b else None, grad_x, None


def _onednn_applies(*tensors: Tensor) -> bool:
    """Plain float32 CPU tensors outside autocast (which handles its own products)."""
    return (
        _ONEDNN_LINEAR is not None
        and not torch.is_autocast_enabled("cpu")
        and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
    )


def dense(
    h: Tensor, weight: Tensor, bias: Tensor | None, shared: bool, relu: bool = False
) -> Tensor:
    """Stacked linear layer: shared ``h [B, in]`` or feature-major ``h [K, in, B]`` ->
    ``[K, out, B]`` with ``weight [K, out, in]`` and ``bias [K, out]``. With ``relu=True`` the
    ReLU is applied in place on the shared oneDNN product (elsewhere as ``torch.relu``)."""
    k, n_out, n_in = weight.shape
    if shared:
        flat = weight.reshape(k * n_out, n_in)
        if _onednn_applies(flat, h) and (bias is None or bias.dtype == torch.float32):
            b = None if bias is None else bias.reshape(-1)
            z = _SharedDense.apply(flat, b, h, relu)
            return z.view(k, n_out, -1)
        else:
            z = flat @ h.T if bias is None else torch.addmm(bias.reshape(-1, 1), flat, h.T)
        return (torch.relu(z) if relu else z).view(k, n_out, -1)
    z = torch.bmm(weight, h) if bias is None else torch.baddbmm(bias.unsqueeze(-1), weight, h)
    return torch.relu(z) if relu else z


def batch_norm(
    z: Tensor, params: Tensors, buffers: Tensors, prefix: str, norm: _BatchNorm, train: bool
) -> Tensor:
    """Per-member batch norm of ``z`` whose dim 1 is ``K*C`` channels (``[1, K*C, B]`` or
    ``[B, K*C, H, W]``); the stacked running statistics are updated in place in train mode."""
    if train:
        buffers[prefix + "num_batches_tracked"].add_(1)
    return F.batch_norm(
        z,
        buffers[prefix + "running_mean"].view(-1),
        buffers[prefix + "running_var"].view(-1),
        params[prefix + "weight"].reshape(-1),
        params[prefix + "bias"].reshape(-1),
        training=train,
        momentum=cast(float, norm.momentum),  # built-ins keep torch's 0.1
        eps=norm.eps,
    )


def dense_block(
    h: Tensor,
    params: Tensors,
    buffers: Tensors,
    prefix: str,
    block: DenseBlock,
    *,
    shared: bool,
    train: bool,
    dropout: Tensor | None,
) -> Tensor:
    """One :class:`DenseBlock` on feature-major activations (see the module docstring)."""
    weight, bias = params[prefix + "linear.weight"], params.get(prefix + "linear.bias")
    fuse = (
        shared and block.norm is None and block.activation == "relu"
        and _onednn_applies(weight, h) and (bias is None or bias.dtype == torch.float32)
    )  # fmt: skip
    z = dense(h, weight, bias, shared, relu=fuse)
    if block.norm is not None:
        k, width, n = z.shape
        z = batch_norm(
            z.reshape(1, k * width, n), params, buffers, prefix + "norm.", block.norm, train
        ).view(k, width, n)
    if not fuse:
        z = activation_function(block.activation)(z)
    if dropout is not None:
        z = z * dropout
    if block.skip_kind == "identity":
        z = z + h
    elif block.skip_kind == "projection":
        z = z + dense(h, params[prefix + "skip.weight"], None, shared=False)
    return z


def head(h: Tensor, params: Tensors, *, shared: bool) -> Tensor:
    """Linear head -> ``[K, out, B]``."""
    return dense(h, params["head.weight"], params.get("head.bias"), shared)


class GroupedModel(ABC):
    """A built-in model run as K members at once; see the module docstring."""

    #: widths of the dropout sites in forward order (each takes a [K, width, B] multiplier)
    dropout_widths: tuple[int, ...] = ()

    @abstractmethod
    def member_numel(self, batch: int) -> int:
        """Elements of one member's largest activation on a batch (sizes member chunks)."""

    @abstractmethod
    def forward(
        self,
        params: Tensors,
        buffers: Tensors,
        x: Tensor,
        *,
        train: bool,
        per_member: bool,
        dropout: Sequence[Tensor] | None,
    ) -> Tensor:
        """Outputs in the feature-major layout ``[K, out, B]`` (the caller transposes them to
        ``[K, B, out]``); `x` is shared ``[B, ...]`` or `per_member` ``[K, B, ...]``."""


class GroupedMLP(GroupedModel):
    def __init__(self, model: MLP) -> None:
        self.blocks: list[DenseBlock] = list(model.blocks)  # type: ignore[arg-type]
        self.dropout_widths = tuple(
            b.linear.out_features for b in self.blocks if b.dropout is not None
        )
        self.widest = max([b.linear.out_features for b in self.blocks] + [model.n_outputs])

    def member_numel(self, batch: int) -> int:
        return batch * self.widest

    def forward(self, params, buffers, x, *, train, per_member, dropout):  # type: ignore[override]
        h, shared = (x.transpose(1, 2), False) if per_member else (x, True)
        masks = iter(dropout or ())
        for i, block in enumerate(self.blocks):
            mult = next(masks) if block.dropout is not None and dropout is not None else None
            h = dense_block(
                h, params, buffers, f"blocks.{i}.", block, shared=shared, train=train, dropout=mult
            )
            shared = False
        return head(h, params, shared=shared)


class _RowsLinear(torch.autograd.Function):
    """``x W^T + b`` (optionally ReLU'd in place) for rows ``x [N, in]`` that need no gradient
    (im2col columns of the data), through oneDNN with the bias and the ReLU fused; the weight
    gradient is one ``grad^T x`` product. A double backward differentiates plain products."""

    @staticmethod
    def forward(ctx, weight: Tensor, bias: Tensor | None, x: Tensor, relu: bool) -> Tensor:  # type: ignore[override]
        z = _ONEDNN_LINEAR(x, weight, bias, "relu" if relu else "none", [], "")  # type: ignore[misc]
        ctx.save_for_backward(z if relu else None, x)
        ctx.relu = relu
        return z

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        out, x = ctx.saved_tensors
        if ctx.relu:
            grad = torch.ops.aten.threshold_backward(grad, out, 0)
        need_w, need_b = ctx.needs_input_grad[:2]
        grad_w = grad.T @ x if need_w else None
        return grad_w, grad.sum(0) if need_b else None, None, None


#: how a convolution of K members runs (see `conv_members`); "auto" picks per shape
CONV_VARIANTS = ("auto", "grouped", "grouped_nchw", "im2col", "loop")


def pick_conv(shared: bool, c_in: int, kernel: int, dtype: torch.dtype) -> str:
    """The variant "auto" runs (measured in benchmarks/bench_models.py on CPU, float32, 1 and
    2 threads): a convolution of the shared input with few input taps (``c_in * k * k`` up to
    64, e.g. the first layer on 1x28x28 images) as one im2col GEMM with the K*C_out filters
    stacked (oneDNN's grouped/direct kernels ran it 10x below the GEMM rate and left an NCHW
    output to convert); every other one as one channels-last conv with ``groups=K``
    (the batched im2col + bmm variant materializes a 9x larger column tensor and measured
    4-6x slower; a loop of K convs measured 1.3-2x slower)."""
    if shared and c_in * kernel * kernel <= 64:
        return "im2col"
    return "grouped"


def conv_members(
    z: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    padding: int,
    *,
    shared: bool,
    variant: str = "auto",
    relu: bool = False,
) -> tuple[Tensor, bool]:
    """K members' stride-1 convolutions with "same" padding: ``z`` is the shared input ``[B,
    C, H, W]`` (`shared`) or the members' inputs ``[B, K*C, H, W]`` (member k's channels in
    block k), ``weight [K, C_out, C, kh, kw]``, ``bias [K, C_out]``; returns ``([B, K*C_out, H,
    W], relu_applied)``. Variants (all the same convolution; they differ in rounding only):

    * ``grouped``: one ``F.conv2d`` (``groups=K``, or K*C_out filters on a shared input) on
      channels-last tensors; ``grouped_nchw``: the same in the default memory format;
    * ``im2col``: ``F.unfold`` then one GEMM ``[B*H*W, C*kh*kw] x [C*kh*kw, K*C_out]`` (shared
      input) or a ``bmm`` over members (per-member inputs); on a shared float32 CPU input the
      product goes through oneDNN with the bias (and a following ReLU, when `relu`) fused, and
      its ``[B*H*W, K*C_out]`` result is the channels-last layout as it is;
    * ``loop``: one plain ``F.conv2d`` per member (what K separate models compute).
    """
    k, c_out, c_in, kh, kw = weight.shape
    n, _, height, width = z.shape
    if variant == "auto":
        variant = pick_conv(shared, c_in, kh, z.dtype)
    if variant == "im2col":
        cols = F.unfold(z, (kh, kw), padding=padding)  # [B, C*kh*kw (or K*C*kh*kw), H*W]
        if shared:
            rows = cols.transpose(1, 2).reshape(n * height * width, c_in * kh * kw)
            flat = weight.reshape(k * c_out, c_in * kh * kw)
            b = None if bias is None else bias.reshape(-1)
            fast = _onednn_applies(rows, flat) and (b is None or b.dtype == torch.float32)
            if fast:
                out = _RowsLinear.apply(flat, b, rows, relu)
                applied = relu
            else:
                out = rows @ flat.T if b is None else torch.addmm(b, rows, flat.T)
                applied = False
            return out.view(n, height, width, k * c_out).permute(0, 3, 1, 2), applied
        taps = c_in * kh * kw  # [B, K, taps, HW] -> [K, taps, B*HW]
        cols = cols.view(n, k, taps, height * width).permute(1, 2, 0, 3).reshape(k, taps, -1)
        flat = weight.reshape(k, c_out, taps)
        out = (
            torch.bmm(flat, cols) if bias is None else torch.baddbmm(bias.unsqueeze(-1), flat, cols)
        )
        out = out.view(k, c_out, n, height, width).permute(2, 0, 1, 3, 4)
        return out.reshape(n, k * c_out, height, width), False
    if variant == "loop":
        parts = z.view(n, 1 if shared else k, c_in, height, width)
        outs = [
            F.conv2d(parts[:, 0 if shared else m], weight[m],
                     None if bias is None else bias[m], padding=padding)
            for m in range(k)
        ]  # fmt: skip
        return torch.cat(outs, 1), False
    if variant not in ("grouped", "grouped_nchw"):
        raise ValueError(f"variant: expected one of {', '.join(CONV_VARIANTS)}, got {variant!r}")
    fmt = torch.channels_last if variant == "grouped" else torch.contiguous_format
    out = F.conv2d(
        z.contiguous(memory_format=fmt),
        weight.reshape(-1, c_in, kh, kw),
        None if bias is None else bias.reshape(-1),
        padding=padding,
        groups=1 if shared else k,
    )
    return out.contiguous(memory_format=fmt), False  # a copy only after C_in = 1


class GroupedCNN(GroupedModel):
    #: the convolution variant of every layer (see `conv_members`); "auto" picks per shape
    conv_variant = "auto"

    def __init__(self, model: SmallCNN, conv_variant: str | None = None) -> None:
        if conv_variant is not None:
            if conv_variant not in CONV_VARIANTS:
                raise ValueError(
                    f"conv_variant: expected one of {', '.join(CONV_VARIANTS)}, got "
                    f"{conv_variant!r}"
                )
            self.conv_variant = conv_variant
        self.model = model
        self.convs = list(model.convs)
        self.blocks: list[DenseBlock] = list(model.blocks)  # type: ignore[arg-type]
        widths = [model.flat_features] if model.dropout is not None else []
        widths += [b.linear.out_features for b in self.blocks if b.dropout is not None]
        self.dropout_widths = tuple(widths)
        _, height, width = model.image_shape
        self.widest = max(c * (height >> i) * (width >> i) for i, c in enumerate(model.channels))

    def member_numel(self, batch: int) -> int:
        return batch * self.widest

    def forward(self, params, buffers, x, *, train, per_member, dropout):  # type: ignore[override]
        c, height, width = self.model.image_shape
        n = x.shape[1] if per_member else x.shape[0]
        k = params["head.weight"].shape[0]
        if per_member:  # [K, B, ...] -> [B, K*C, H, W], member k's channels in block k
            z = x.reshape(k, n, c, height, width).transpose(0, 1).reshape(n, k * c, height, width)
        else:
            z = x.reshape(n, c, height, width)
        # channels-last (NHWC): max pooling vectorizes over the K*C channels (forward on
        # [64, 80, 28, 28] in float32, one thread: 2.4 ms vs 21 ms on NCHW)
        shared = not per_member
        for i, block in enumerate(self.convs):
            prefix = f"convs.{i}."
            relu = block.norm is None and block.activation == "relu"
            z, applied = conv_members(
                z,
                params[prefix + "conv.weight"],
                params.get(prefix + "conv.bias"),
                cast(int, block.conv.padding[0]),  # type: ignore[index]
                shared=shared,
                variant=self.conv_variant,
                relu=relu,
            )
            if block.norm is not None:
                z = batch_norm(z, params, buffers, prefix + "norm.", block.norm, train)
            if not applied:
                z = activation_function(block.activation)(z)
            z = F.max_pool2d(z, 2)
            shared = False
        h = z.reshape(n, k, -1).permute(1, 2, 0)  # [K, features, B]
        masks = iter(dropout or ())
        if self.model.dropout is not None and dropout is not None:
            h = h * next(masks)
        for i, block in enumerate(self.blocks):
            mult = next(masks) if block.dropout is not None and dropout is not None else None
            h = dense_block(
                h, params, buffers, f"blocks.{i}.", block, shared=False, train=train, dropout=mult
            )
        return head(h, params, shared=False)


class GroupedMF(GroupedModel):
    def __init__(self, model: MatrixFactorization) -> None:
        self.dim = model.dim

    def member_numel(self, batch: int) -> int:
        return batch * self.dim

    def forward(self, params, buffers, x, *, train, per_member, dropout):  # type: ignore[override]
        k = params["global_bias"].shape[0]

        def lookup(table: Tensor, index: Tensor) -> Tensor:  # [K, rows, d] -> [K, B, d]
            if not per_member:
                return table.index_select(1, index)
            rows = table.shape[1]
            offsets = torch.arange(k, device=index.device).unsqueeze(1) * rows
            flat = (index + offsets).reshape(-1)
            return table.reshape(k * rows, -1).index_select(0, flat).view(k, index.shape[1], -1)

        users, items = x[..., 0], x[..., 1]
        dot = (lookup(params["user.weight"], users) * lookup(params["item.weight"], items)).sum(
            -1, keepdim=True
        )
        biases = lookup(params["user_bias.weight"], users) + lookup(
            params["item_bias.weight"], items
        )
        return (dot + biases + params["global_bias"].view(k, 1, 1)).transpose(1, 2)


def grouped_model(module: nn.Module) -> GroupedModel | None:
    """The grouped implementation of a built-in model, or None for any other module."""
    if type(module) is MLP:
        return GroupedMLP(module)
    if type(module) is SmallCNN:
        return GroupedCNN(module)
    if type(module) is MatrixFactorization:
        return GroupedMF(module)
    return None
