"""Multilayer perceptron; with no hidden layers it is a linear, logistic or softmax regression.

Layout (every hidden layer is a :class:`DenseBlock`)::

    h_0 = x
    h_l = dropout(act(bn(W_l h_{l-1} + b_l))) [+ skip_l(h_{l-1}) for l >= 2 with residual]
    out = W_head h_L + b_head              # logits / predictions, [B, n_outputs]

``skip_l`` is the identity when the widths of h_{l-1} and h_l agree, else a bias-free linear
projection (He et al., 2016, "Deep Residual Learning", arXiv:1512.03385). The first hidden
layer never has a skip (it changes the representation from features to hidden units).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from optimkit.models.activations import activation_module, check_activation
from optimkit.models.checks import boolean, int_tuple, positive_int, probability
from optimkit.models.init import check_init, init_layer


class DenseBlock(nn.Module):
    """Linear -> [BatchNorm1d] -> activation -> [Dropout], plus an optional residual skip."""

    def __init__(
        self,
        n_in: int,
        n_out: int,
        *,
        activation: str,
        init: str,
        batch_norm: bool,
        dropout: float,
        residual: bool,
        bias: bool,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.linear = nn.Linear(n_in, n_out, bias=bias)
        init_layer(self.linear, init, activation)
        self.norm = nn.BatchNorm1d(n_out) if batch_norm else None
        self.act = activation_module(activation)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        #: "identity", "projection" or None (no residual connection)
        self.skip_kind = None if not residual else "identity" if n_in == n_out else "projection"
        self.skip = nn.Linear(n_in, n_out, bias=False) if self.skip_kind == "projection" else None
        if self.skip is not None:
            init_layer(self.skip, init, "identity")

    def forward(self, x: Tensor) -> Tensor:
        h = self.linear(x)
        if self.norm is not None:
            h = self.norm(h)
        h = self.act(h)
        if self.dropout is not None:
            h = self.dropout(h)
        if self.skip_kind == "identity":
            h = h + x
        elif self.skip is not None:
            h = h + self.skip(x)
        return h


class MLP(nn.Module):
    """Fully connected network on features ``[B, n_features]`` -> ``[B, n_outputs]``.

    Options: ``hidden`` widths (``()`` gives a linear model), ``activation`` (see
    ``optimkit.models.activations``), ``init`` (see ``optimkit.models.init``; ``zeros`` only
    without hidden layers), ``batch_norm`` (BatchNorm1d before each activation, torch's
    momentum 0.1 and eps 1e-5), ``dropout`` (rate after each activation), ``residual`` (skip
    connections between hidden layers) and ``bias``.
    """

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        *,
        hidden: Sequence[int] = (128,),
        activation: str = "relu",
        init: str = "torch",
        batch_norm: bool = False,
        dropout: float = 0.0,
        residual: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.n_features = positive_int("n_features", n_features)
        self.n_outputs = positive_int("n_outputs", n_outputs)
        self.hidden = int_tuple("hidden", hidden)
        self.activation = check_activation(activation)
        self.init = check_init(init, allow_zeros=not self.hidden)
        batch_norm, residual = boolean("batch_norm", batch_norm), boolean("residual", residual)
        self.dropout_rate = probability("dropout", dropout)
        bias = boolean("bias", bias)
        widths = (self.n_features, *self.hidden)
        self.blocks = nn.ModuleList(
            DenseBlock(
                widths[i],
                widths[i + 1],
                activation=self.activation,
                init=self.init,
                batch_norm=batch_norm,
                dropout=self.dropout_rate,
                residual=residual and i > 0,
                bias=bias,
            )
            for i in range(len(self.hidden))
        )
        self.head = nn.Linear(widths[-1], self.n_outputs, bias=bias)
        init_layer(self.head, self.init, "identity")

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x)
