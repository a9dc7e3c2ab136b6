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
    ``grad @ x``) through oneDNN. A double backward (``create_graph=True``) differentiates
    plain torch products instead."""

    @staticmethod
    def forward(ctx, weight: Tensor, bias: Tensor | None, x: Tensor) -> Tensor:  # type: ignore[override]
        z = _matmul_nt(weight, x)
        if bias is not None:
            z += bias.unsqueeze(1)
        ctx.save_for_backward(weight, x)
        return z

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        weight, x = ctx.saved_tensors
        need_w, need_b, need_x = ctx.needs_input_grad
        fast = not torch.is_grad_enabled() and _onednn_applies(grad, x)
        grad_w = grad_x = None
        if need_w:
            grad_w = _matmul_nt(grad.contiguous(), x.T) if fast else grad @ x
        if need_x:
            grad_x = grad.T @ weight
        return grad_w, grad.sum(1) if need_b else None, grad_x


def _onednn_applies(*tensors: Tensor) -> bool:
    """Plain float32 CPU tensors outside autocast (which handles its own products)."""
    return (
        _ONEDNN_LINEAR is not None
        and not torch.is_autocast_enabled("cpu")
        and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
    )


def dense(h: Tensor, weight: Tensor, bias: Tensor | None, shared: bool) -> Tensor:
    """Stacked linear layer: shared ``h [B, in]`` or feature-major ``h [K, in, B]`` ->
    ``[K, out, B]`` with ``weight [K, out, in]`` and ``bias [K, out]``."""
    k, n_out, n_in = weight.shape
    if shared:
        flat = weight.reshape(k * n_out, n_in)
        if _onednn_applies(flat, h) and (bias is None or bias.dtype == torch.float32):
            z = _SharedDense.apply(flat, None if bias is None else bias.reshape(-1), h)
        else:
            z = flat @ h.T if bias is None else torch.addmm(bias.reshape(-1, 1), flat, h.T)
        return z.view(k, n_out, -1)
    if bias is None:
        return torch.bmm(weight, h)
    return torch.baddbmm(bias.unsqueeze(-1), weight, h)


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
    z = dense(h, params[prefix + "linear.weight"], params.get(prefix + "linear.bias"), shared)
    if block.norm is not None:
        k, width, n = z.shape
        z = batch_norm(
            z.reshape(1, k * width, n), params, buffers, prefix + "norm.", block.norm, train
        ).view(k, width, n)
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


class GroupedCNN(GroupedModel):
    def __init__(self, model: SmallCNN) -> None:
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
            groups = k
        else:
            z, groups = x.reshape(n, c, height, width), 1
        # channels-last (NHWC): max pooling vectorizes over the K*C channels (forward on
        # [64, 80, 28, 28] in float32, one thread: 2.4 ms vs 21 ms on NCHW); a conv on a
        # channels-last input gives a channels-last output, except from one input channel
        z = z.contiguous(memory_format=torch.channels_last)
        for i, block in enumerate(self.convs):
            prefix = f"convs.{i}."
            w = params[prefix + "conv.weight"]
            bias = params.get(prefix + "conv.bias")
            z = F.conv2d(
                z,
                w.reshape(-1, *w.shape[2:]),
                None if bias is None else bias.reshape(-1),
                padding=block.conv.padding,
                groups=groups,
            ).contiguous(memory_format=torch.channels_last)  # a copy only after C_in = 1
            if block.norm is not None:
                z = batch_norm(z, params, buffers, prefix + "norm.", block.norm, train)
            z = F.max_pool2d(activation_function(block.activation)(z), 2)
            groups = k
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
