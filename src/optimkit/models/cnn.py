"""A small convolutional network for images (Fashion-MNIST 1x28x28, digits 1x8x8, ...).

Layout::

    x: [B, C, H, W], or flat [B, C*H*W] reshaped to image_shape (row-major, as the datasets
       store pixels)
    for each width c in channels:  conv kxk ("same" padding) -> [BatchNorm2d] -> act -> maxpool 2
    flatten -> [Dropout] -> DenseBlock per hidden width -> linear head   -> [B, n_outputs]

A LeNet-style stack (LeCun et al., 1998) kept small enough to train as a population on CPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from optimkit.models.activations import activation_module, check_activation
from optimkit.models.checks import boolean, int_tuple, positive_int, probability
from optimkit.models.init import check_init, init_layer
from optimkit.models.mlp import DenseBlock


def infer_image_shape(n_features: int, image_shape: Sequence[int] | None) -> tuple[int, int, int]:
    """(C, H, W): the given shape (checked against n_features) or, when None, a square one-channel
    image (784 -> 1x28x28, 64 -> 1x8x8)."""
    if image_shape is None:
        side = math.isqrt(n_features)
        if side * side != n_features:
            raise ValueError(
                f"image_shape: n_features={n_features} is not a square number of pixels; "
                "pass image_shape=(C, H, W)"
            )
        return (1, side, side)
    shape = int_tuple("image_shape", image_shape)
    if len(shape) != 3:
        raise ValueError(f"image_shape: expected (C, H, W), got {image_shape!r}")
    if math.prod(shape) != n_features:
        raise ValueError(
            f"image_shape: {shape} has {math.prod(shape)} values but n_features={n_features}"
        )
    return (shape[0], shape[1], shape[2])


class ConvBlock(nn.Module):
    """Conv2d (odd kernel, same padding) -> [BatchNorm2d] -> activation -> MaxPool2d(2)."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        *,
        kernel_size: int,
        activation: str,
        init: str,
        batch_norm: bool,
        bias: bool,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=bias)
        init_layer(self.conv, init, activation)
        self.norm = nn.BatchNorm2d(c_out) if batch_norm else None
        self.act = activation_module(activation)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x)
        if self.norm is not None:
            h = self.norm(h)
        return self.pool(self.act(h))


class SmallCNN(nn.Module):
    """Conv blocks, then dense blocks, then a linear head; see the module docstring.

    Options: ``image_shape`` (C, H, W) (default: a square one-channel image from n_features),
    ``channels`` per conv block (default (16, 32); each block halves H and W), ``kernel_size``
    (odd, default 3), ``hidden`` dense widths after flattening (default ()), ``activation``,
    ``init``, ``batch_norm``, ``dropout`` (on the flattened features and after each dense
    activation) and ``bias``.
    """

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        *,
        image_shape: Sequence[int] | None = None,
        channels: Sequence[int] = (16, 32),
        kernel_size: int = 3,
        hidden: Sequence[int] = (),
        activation: str = "relu",
        init: str = "torch",
        batch_norm: bool = False,
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.n_features = positive_int("n_features", n_features)
        self.n_outputs = positive_int("n_outputs", n_outputs)
        self.image_shape = infer_image_shape(self.n_features, image_shape)
        self.channels = int_tuple("channels", channels, allow_empty=False)
        self.kernel_size = positive_int("kernel_size", kernel_size)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size: expected an odd integer, got {kernel_size!r}")
        self.hidden = int_tuple("hidden", hidden)
        self.activation = check_activation(activation)
        self.init = check_init(init, allow_zeros=False)
        batch_norm, bias = boolean("batch_norm", batch_norm), boolean("bias", bias)
        self.dropout_rate = probability("dropout", dropout)
        c, h, w = self.image_shape
        h_out, w_out = h >> len(self.channels), w >> len(self.channels)
        if h_out < 1 or w_out < 1:
            raise ValueError(
                f"channels: {len(self.channels)} conv blocks halve a {h}x{w} image below 1x1; "
                f"use at most {int(math.log2(min(h, w)))}"
            )
        widths = (c, *self.channels)
        self.convs = nn.ModuleList(
            ConvBlock(
                widths[i],
                widths[i + 1],
                kernel_size=self.kernel_size,
                activation=self.activation,
                init=self.init,
                batch_norm=batch_norm,
                bias=bias,
            )
            for i in range(len(self.channels))
        )
        self.flat_features = self.channels[-1] * h_out * w_out
        self.dropout = nn.Dropout(self.dropout_rate) if self.dropout_rate > 0 else None
        dense = (self.flat_features, *self.hidden)
        self.blocks = nn.ModuleList(
            DenseBlock(
                dense[i],
                dense[i + 1],
                activation=self.activation,
                init=self.init,
                batch_norm=batch_norm,
                dropout=self.dropout_rate,
                residual=False,
                bias=bias,
            )
            for i in range(len(self.hidden))
        )
        self.head = nn.Linear(dense[-1], self.n_outputs, bias=bias)
        init_layer(self.head, self.init, "identity")

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            x = x.reshape(x.shape[0], *self.image_shape)
        for conv in self.convs:
            x = conv(x)
        x = x.flatten(1)
        if self.dropout is not None:
            x = self.dropout(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)
