"""scikit-learn estimators on the population trainer: `OptimkitClassifier`, `OptimkitRegressor`.

>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.preprocessing import StandardScaler
>>> from optimkit.sklearn import OptimkitClassifier
>>> clf = make_pipeline(StandardScaler(), OptimkitClassifier(hidden=(64,), lr=1e-2, epochs=30))
>>> clf.fit(X_train, y_train).score(X_test, y_test)

`fit` turns the arrays into a :class:`~optimkit.data.Dataset` and trains one member (K = 1)
with :class:`~optimkit.train.PopulationTrainer`; the trained member is kept as a plain
``nn.Module`` (``module_``) that `predict`, `predict_proba` and `decision_function` run.

What the estimators do *not* do, the scikit-learn way: features are used as given (put a
``StandardScaler`` in a ``Pipeline``), and regression targets too (wrap the regressor in
``TransformedTargetRegressor`` to standardize them). Class labels are encoded with a
``LabelEncoder`` (``classes_``). ``sample_weight`` is not supported (the trainer's loss takes
no per-row weights).

The trainer needs three parts (train, val, test). With ``early_stopping=True`` a
``validation_fraction`` of the rows (stratified for classification) is held out as the val
part, the run stops after ``patience`` epochs without a val-loss improvement larger than
``min_delta``, and the weights of the best val epoch are kept. Otherwise the training rows are
also the val part (so the per-epoch ``val_*`` columns of ``history_`` are measured on the
training data), ``patience`` (if set) watches that training loss, and the last weights are
kept. The test part, which the trainer evaluates once at the end and which may not be empty,
is the val part again.

Both estimators pass scikit-learn's ``check_estimator`` (all checks, scikit-learn 1.9; see
tests/test_sklearn.py), work in Pipelines and GridSearchCV, and are deterministic for an int
``random_state``. Predictions are computed in float64 whatever ``dtype`` trained the model.

Objective: the trainer minimizes the mean loss over the rows (logistic/BCE for two classes
with one logit, cross-entropy for more, MSE by default for regression) plus, with
``weight_decay`` (torch.optim's coupled L2, applied to every parameter, biases included),
``weight_decay / 2 * ||theta||^2``. So ``LogisticRegression(C, fit_intercept=False)`` on n
rows is ``model="logistic", model_options={"bias": False}, weight_decay=1 / (C * n)``.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn
from torch.func import functional_call

from optimkit.data import Dataset, SplitIndices, check_device, split_rows
from optimkit.models import MODELS, model_options
from optimkit.optim import OPTIMIZERS
from optimkit.optim.base import OPTIONS, TORCH_HINTS
from optimkit.train import PopulationTrainer, TrainConfig

__all__ = ["OptimkitClassifier", "OptimkitRegressor"]

DTYPES = {"float32": (torch.float32, np.float32), "float64": (torch.float64, np.float64)}
REGRESSION_LOSSES = ("mse", "mae", "huber")
#: rows per forward call at predict time
PREDICT_CHUNK = 65536


def _optimizer_options(name: str) -> list[str]:
    """Options an optimizer takes besides lr and weight_decay (its own, from the optimizer
    database, and the shared ones)."""
    spec = OPTIMIZERS[name].spec  # type: ignore[attr-defined]
    names = {h.arg for h in spec.hyperparameters} | set(OPTIONS) | set(TORCH_HINTS)
    return sorted(names - {"members", "lr", "weight_decay"})


def _number(name: str, value: Any, *, positive: bool) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or (value <= 0 if positive else value < 0):
        raise ValueError(
            f"{name}: expected a finite number {'> 0' if positive else '>= 0'}, got {value!r}"
        )
    return float(value)


def _mapping(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{name}: expected None or a dict, got {type(value).__name__}")
    return dict(value)


class _OptimkitEstimator(BaseEstimator):
    """Shared parameters, validation, training and scoring of the two estimators.

    model: a built-in model name (linear, logistic, softmax, mlp, ...), an import path
        ``"package.module:factory"`` or a factory callable (see :mod:`optimkit.models.spec`).
    hidden: hidden layer sizes, for models that take a ``hidden`` option (mlp, cnn); ignored by
        the others. model_options: the model's other options (activation, dropout, bias, ...).
    optimizer: an optimizer name (sgd, adagrad, rmsprop, adam, adamw, adamax, nadam, lion);
        lr, weight_decay: its learning rate and weight decay (torch.optim conventions);
        optimizer_options: its other options (momentum, betas, clip_grad_norm, ...).
    epochs: the most epochs to train. batch_size: rows per step, 0 = full batch.
    schedule, schedule_options: a learning-rate schedule by name (see
        :mod:`optimkit.train.schedule`) and its options.
    early_stopping, validation_fraction, patience, min_delta: see the module docstring;
        patience=None with early_stopping=True means 10 epochs.
    random_state: None, an int (used as the trainer's seed: initialization, batch order,
        dropout, validation split) or a numpy RandomState (a seed is drawn from it).
    dtype: "float32" or "float64", the model's and the inputs' precision. device: "cpu",
        "cuda" or "cuda:N"; the fitted module stays there.
    """

    _task: str = "regression"

    def _validated(self) -> dict[str, Any]:
        """The parameters, checked, in the form the trainer takes."""
        model = self.model
        if isinstance(model, str) and model not in MODELS and ":" not in model:
            raise ValueError(
                f"model: unknown name {model!r}; valid names: {', '.join(MODELS)}, "
                "or an import path 'package.module:factory'"
            )
        if not isinstance(model, str) and not callable(model):
            raise ValueError(f"model: expected a name or a factory callable, got {model!r}")
        options = _mapping("model_options", self.model_options)
        if "hidden" in options:
            raise ValueError(
                "model_options: give the hidden layer sizes as the `hidden` "
                "parameter, not in model_options"
            )
        if isinstance(model, str) and model in MODELS and "hidden" in model_options(model):
            options["hidden"] = self.hidden
        if not isinstance(self.optimizer, str) or self.optimizer.lower() not in OPTIMIZERS:
            raise ValueError(
                f"optimizer: unknown name {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}"
            )
        optimizer = self.optimizer.lower()
        extra = _mapping("optimizer_options", self.optimizer_options)
        valid = _optimizer_options(optimizer)
        unknown = sorted(set(extra) - set(valid))
        if unknown:
            raise ValueError(
                f"optimizer_options: {optimizer!r} does not take "
                f"{', '.join(unknown)}; valid options: {', '.join(valid)}"
            )
        member = {
            "lr": _number("lr", self.lr, positive=True),
            "weight_decay": _number("weight_decay", self.weight_decay, positive=False),
            **extra,
        }
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            low = 1 if name == "epochs" else 0
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(
                    f"{name}: expected an int >= {low}"
                    f"{' (0 = full batch)' if low == 0 else ''}, got {value!r}"
                )
        if not isinstance(self.early_stopping, bool | np.bool_):
            raise ValueError(f"early_stopping: expected True or False, got {self.early_stopping!r}")
        vf = self.validation_fraction
        if isinstance(vf, bool) or not isinstance(vf, numbers.Real) or not 0 < float(vf) < 1:
            raise ValueError(f"validation_fraction: expected a number in (0, 1), got {vf!r}")
        patience = self.patience
        if patience is not None and (
            isinstance(patience, bool) or not isinstance(patience, numbers.Integral) or patience < 1
        ):
            raise ValueError(f"patience: expected None or an int >= 1, got {patience!r}")
        if self.early_stopping and patience is None:
            patience = 10
        min_delta = _number("min_delta", self.min_delta, positive=False)
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype: expected one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.schedule is not None and not isinstance(self.schedule, str):
            raise ValueError(f"schedule: expected None or a schedule name, got {self.schedule!r}")
        rng = check_random_state(self.random_state)
        if isinstance(self.random_state, numbers.Integral):
            seed = int(self.random_state)
        else:
            seed = int(rng.randint(np.iinfo(np.int32).max))
        config = TrainConfig(
            model=model,
            model_options=options,
            optimizer=optimizer,
            loss=self._loss_name(),
            epochs=int(self.epochs),
            batch_size=int(self.batch_size),
            schedule=self.schedule,
            schedule_options=_mapping("schedule_options", self.schedule_options),
            patience=None if patience is None else int(patience),
            min_delta=min_delta,
            restore_best=bool(self.early_stopping),
            seed=seed,
        )
        return {"config": config, "member": member, "device": check_device(self.device)}

    def _loss_name(self) -> str | None:
        return None

    def _fit(self, X: Any, y: np.ndarray, classes: list[Any] | None) -> None:
        """Train on features X (validated) and encoded targets y; set the fitted attributes."""
        params = self._validated()
        config: TrainConfig = params["config"]
        torch_dtype, np_dtype = DTYPES[self.dtype]
        n = X.shape[0]
        if self.early_stopping:
            if n < 2:
                raise ValueError(
                    "early_stopping: needs at least 2 rows (one to train, one to validate); got "
                    "1 sample"
                )
            kind = "stratified" if self._task == "classification" else "random"
            parts = split_rows(
                y,
                kind,
                float(self.validation_fraction),
                0.0,
                config.seed,
                where="the training data",
            )
            train, val = parts.train, parts.val
            split = f"{kind} validation ({self.validation_fraction})"
        else:
            train = val = np.arange(n)
            split = "none: the training rows are also the val part"
        device = params["device"]
        X_all = torch.from_numpy(np.array(X, dtype=np_dtype, order="C", copy=True)).to(device)
        y_dtype = np.int64 if self._task == "classification" else np_dtype
        y_all = torch.from_numpy(np.array(y, dtype=y_dtype, copy=True)).to(device)
        Xtr, ytr, Xva, yva = X_all[train], y_all[train], X_all[val], y_all[val]
        names = getattr(self, "feature_names_in_", None)
        dataset = Dataset(
            name="arrays",
            task=self._task,
            X_train=Xtr,
            y_train=ytr,
            X_val=Xva,
            y_val=yva,
            X_test=Xva,
            y_test=yva,
            feature_names=[str(c) for c in names]
            if names is not None
            else [f"x{i}" for i in range(X.shape[1])],
            classes=classes,
            preprocessor=None,
            source="arrays",
            split=split,
            seed=config.seed,
            indices=SplitIndices(train, val, val),
        )
        member = {**params["member"], "seed": config.seed}
        trainer = PopulationTrainer(dataset, config, [member], device=device, dtype=torch_dtype)
        trainer.fit()
        frame = trainer.history.to_frame()
        frame = frame[frame["member"] == 0].drop(columns="member").reset_index(drop=True)
        self.module_: nn.Module = trainer.population.member(0)
        self.history_: pd.DataFrame = frame
        self.loss_curve_: list[float] = [float(v) for v in frame["train_loss"]]
        self.n_iter_: int = len(frame)
        self.best_epoch_: int = int(trainer.early.best_epoch[0]) + 1
        self.status_: str = trainer.status_names()[0]
        if self.status_ == "failed":
            kept = "best validation epoch" if self.early_stopping else "last finite epoch"
            warnings.warn(
                f"{type(self).__name__}: training diverged ({trainer.failure[0]}); the weights "
                f"of the {kept} are kept. Try a smaller lr.",
                ConvergenceWarning,
                stacklevel=3,
            )

    def _scores(self, X: Any) -> torch.Tensor:
        """Model outputs [n, out] for new rows, computed in float64.

        The trained weights (float32 by default) are promoted to float64 for the forward pass,
        so a row's prediction does not depend on which other rows share its batch (float32
        BLAS kernels round differently for different batch sizes, by ~1e-7).
        """
        check_is_fitted(self, "module_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        state = {
            n: t.to(torch.float64) if t.is_floating_point() else t
            for n, t in self.module_.state_dict().items()
        }
        device = next(iter(state.values())).device if state else torch.device("cpu")
        x = torch.from_numpy(np.array(X, dtype=np.float64, order="C", copy=True))
        with torch.no_grad():
            parts = [
                functional_call(self.module_, state, (x[i : i + PREDICT_CHUNK].to(device),))
                for i in range(0, x.shape[0], PREDICT_CHUNK)
            ]
        return torch.cat(parts).to("cpu", torch.float64)


class OptimkitClassifier(ClassifierMixin, _OptimkitEstimator):
    """A classifier trained by optimkit's population trainer (one member).

    Two classes: one logit and the logistic loss (BCE); more: one logit per class and
    cross-entropy. `predict_proba` is the sigmoid / softmax of the logits, computed in
    float64; `decision_function` returns the logits ([n] for two classes, [n, C] for more).
    Parameters: see `_OptimkitEstimator` (the base class) and the module docstring.

    Fitted attributes: classes_, n_features_in_ (and feature_names_in_ for a DataFrame),
    module_ (the trained nn.Module, eval mode), n_iter_ (epochs trained), loss_curve_ (mean
    training loss per epoch), history_ (one DataFrame row per epoch), best_epoch_ (the
    epoch with the best monitored loss, 1-based; 0 if none was finite), status_ (finished,
    stopped or failed).
    """

    _task = "classification"

    def __init__(
        self,
        model: Any = "mlp",
        hidden: tuple[int, ...] = (128,),
        model_options: dict[str, Any] | None = None,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer_options: dict[str, Any] | None = None,
        epochs: int = 20,
        batch_size: int = 64,
        schedule: str | None = None,
        schedule_options: dict[str, Any] | None = None,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        patience: int | None = None,
        min_delta: float = 0.0,
        random_state: Any = None,
        dtype: str = "float32",
        device: str = "cpu",
    ) -> None:
        self.model = model
        self.hidden = hidden
        self.model_options = model_options
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer_options = optimizer_options
        self.epochs = epochs
        self.batch_size = batch_size
        self.schedule = schedule
        self.schedule_options = schedule_options
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.min_delta = min_delta
        self.random_state = random_state
        self.dtype = dtype
        self.device = device

    def fit(self, X: Any, y: Any) -> OptimkitClassifier:
        """Train on X [n, n_features] and class labels y [n] (any labels LabelEncoder takes)."""
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32))
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        if len(encoder.classes_) < 2:
            raise ValueError(
                f"y: expected at least 2 classes, got 1 class ({encoder.classes_[0]!r})"
            )
        self.classes_ = encoder.classes_
        self._fit(X, encoder.transform(y), list(self.classes_))
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """The logits: [n] for two classes (> 0 means classes_[1]), else [n, n_classes]."""
        out = self._scores(X)
        return (out[:, 0] if out.shape[1] == 1 else out).numpy()

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities [n, n_classes]: sigmoid (two classes) or softmax of the logits."""
        out = self._scores(X)
        if out.shape[1] == 1:
            z = out[:, 0]
            return torch.stack([torch.sigmoid(-z), torch.sigmoid(z)], dim=1).numpy()
        return torch.softmax(out, dim=1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """The class label with the largest score, from classes_."""
        out = self._scores(X)
        idx = (out[:, 0] > 0).long() if out.shape[1] == 1 else out.argmax(dim=1)
        return self.classes_[idx.numpy()]


class OptimkitRegressor(RegressorMixin, _OptimkitEstimator):
    """A regressor (one target) trained by optimkit's population trainer (one member).

    loss: "mse" (default), "mae" or "huber" (delta 1). Targets are fitted as given; wrap the
    estimator in ``TransformedTargetRegressor(transformer=StandardScaler())`` for targets far
    from unit scale. Other parameters: see `_OptimkitEstimator` and the module docstring.

    Fitted attributes: n_features_in_ (and feature_names_in_), module_, n_iter_, loss_curve_,
    history_, best_epoch_, status_ (as for `OptimkitClassifier`).
    """

    _task = "regression"

    def __init__(
        self,
        model: Any = "mlp",
        hidden: tuple[int, ...] = (128,),
        model_options: dict[str, Any] | None = None,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer_options: dict[str, Any] | None = None,
        loss: str = "mse",
        epochs: int = 20,
        batch_size: int = 64,
        schedule: str | None = None,
        schedule_options: dict[str, Any] | None = None,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        patience: int | None = None,
        min_delta: float = 0.0,
        random_state: Any = None,
        dtype: str = "float32",
        device: str = "cpu",
    ) -> None:
        self.model = model
        self.hidden = hidden
        self.model_options = model_options
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer_options = optimizer_options
        self.loss = loss
        self.epochs = epochs
        self.batch_size = batch_size
        self.schedule = schedule
        self.schedule_options = schedule_options
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.min_delta = min_delta
        self.random_state = random_state
        self.dtype = dtype
        self.device = device

    def _loss_name(self) -> str | None:
        if self.loss not in REGRESSION_LOSSES:
            raise ValueError(
                f"loss: expected one of {', '.join(REGRESSION_LOSSES)}, got {self.loss!r}"
            )
        return self.loss

    def fit(self, X: Any, y: Any) -> OptimkitRegressor:
        """Train on X [n, n_features] and real targets y [n] (one target only)."""
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), y_numeric=True)
        self._fit(X, y, None)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets [n] (float64)."""
        return self._scores(X)[:, 0].numpy()
