"""Weight initialization schemes, applied per layer as torch.nn.init does.

==============  =========================================================================
``torch``       torch's own default (nn.Linear / nn.Conv2d ``reset_parameters``: kaiming
                uniform with a = sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), same bound
                for the bias)
``xavier``      Glorot uniform: U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)); bias 0
``xavier_normal``  Glorot normal: N(0, gain^2 * 2 / (fan_in + fan_out)); bias 0
``he``          He / Kaiming *normal*, fan_in mode: N(0, gain^2 / fan_in); bias 0
``he_uniform``  He / Kaiming uniform, fan_in mode: U(-b, b), b = gain * sqrt(3 / fan_in); bias 0
``orthogonal``  (semi-)orthogonal weight (the kernel flattened to [out, in*k*k]) times gain;
                bias 0
``zeros``       all weights and biases 0 (linear models only: hidden units would stay equal)
==============  =========================================================================

``gain`` is ``torch.nn.init.calculate_gain`` of the activation that follows the layer (see
``optimkit.models.activations.GAIN_NAME``); output heads and residual projections use the
linear gain 1. References: Glorot & Bengio (2010); He et al. (2015), arXiv:1502.01852; Saxe
et al. (2014), arXiv:1312.6120.
"""

from __future__ import annotations

from torch import nn

from optimkit.models.activations import GAIN_NAME
from optimkit.models.checks import choice

INITS = ("torch", "xavier", "xavier_normal", "he", "he_uniform", "orthogonal", "zeros")


def check_init(value: object, *, allow_zeros: bool) -> str:
    valid = [name for name in INITS if allow_zeros or name != "zeros"]
    return choice("init", value, valid)


def init_layer(layer: nn.Linear | nn.Conv2d, scheme: str, activation: str = "identity") -> None:
    """Re-initialize `layer` in place with `scheme`, drawing from torch's global RNG.

    ``torch`` is a no-op: the layer's constructor drew it, so a model built under
    ``torch.manual_seed(s)`` has the weights plain nn layers would get under that seed.
    """
    if scheme == "torch":
        return  # the layer's constructor already drew torch's default init
    nonlinearity = GAIN_NAME[activation]
    slope = 0.01 if nonlinearity == "leaky_relu" else 0.0  # nn.LeakyReLU's default slope
    gain = nn.init.calculate_gain(nonlinearity, slope if slope else None)
    weight = layer.weight
    if scheme == "xavier":
        nn.init.xavier_uniform_(weight, gain=gain)
    elif scheme == "xavier_normal":
        nn.init.xavier_normal_(weight, gain=gain)
    elif scheme == "he":
        nn.init.kaiming_normal_(weight, a=slope, mode="fan_in", nonlinearity=nonlinearity)
    elif scheme == "he_uniform":
        nn.init.kaiming_uniform_(weight, a=slope, mode="fan_in", nonlinearity=nonlinearity)
    elif scheme == "orthogonal":
        nn.init.orthogonal_(weight, gain=gain)
    elif scheme == "zeros":
        nn.init.zeros_(weight)
    else:
        raise ValueError(f"init: unknown value {scheme!r}; valid values: {', '.join(INITS)}")
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
