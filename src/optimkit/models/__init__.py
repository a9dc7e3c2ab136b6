"""Model builders and their population form.

>>> from optimkit.models import build_model, Population
>>> model = build_model("mlp", 64, 10, hidden=(128,), init="he", dropout=0.1)   # one nn.Module
>>> pop = Population("mlp", 64, 10, seeds=range(16), options={"hidden": (128,)})
>>> pop.forward(x, train=True).shape                                           # [16, B, 10]

Built-in models: linear, logistic, softmax, mlp, cnn, mf (see :mod:`optimkit.models.spec`);
any ``"package.module:factory"`` builds a user's own module (see
:mod:`optimkit.models.factory`). The population contract (stacked ``params``/``buffers``,
``forward(x, train) -> [K, B, out]``, ``member(k)``, ``reinit``, ``select``, ``state_dict``)
is documented in :mod:`optimkit.models.population`.
"""

from optimkit.models.activations import ACTIVATIONS
from optimkit.models.cnn import SmallCNN
from optimkit.models.factory import resolve_factory
from optimkit.models.init import INITS
from optimkit.models.mf import MatrixFactorization
from optimkit.models.mlp import MLP, DenseBlock
from optimkit.models.population import DEFAULT_IMPL, IMPLS, Population
from optimkit.models.spec import MODELS, ModelSpec, available_models, build_model, model_options

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_IMPL",
    "IMPLS",
    "INITS",
    "MLP",
    "MODELS",
    "DenseBlock",
    "MatrixFactorization",
    "ModelSpec",
    "Population",
    "SmallCNN",
    "available_models",
    "build_model",
    "model_options",
    "resolve_factory",
]
