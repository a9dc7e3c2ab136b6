"""optimkit.sklearn estimators: scikit-learn's estimator checks, plain torch.optim training as
the oracle for what fit computes, LogisticRegression's optimum, Pipelines and GridSearchCV."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import expit, softmax
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from optimkit.data import BatchSampler, split_rows
from optimkit.models import build_model
from optimkit.sklearn import OptimkitClassifier, OptimkitRegressor

f64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread (two threads beside other work oversubscribe)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _standardized(loader, n=None):
    X, y = loader(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    return (X[:n], y[:n]) if n else (X, y)


# ------------------------------------------------------------------------------ sklearn checks
# Every check of sklearn.utils.estimator_checks passes (scikit-learn 1.9), so no check is listed
# in expected_failed_checks. check_array_api_input skips itself unless SCIPY_ARRAY_API is set
# (these estimators take numpy input only, converted to torch tensors).
FAST = {"hidden": (16,), "lr": 0.03, "epochs": 10, "batch_size": 32, "random_state": 0}


@parametrize_with_checks(
    [
        OptimkitClassifier(**FAST),
        OptimkitRegressor(**FAST),
        OptimkitClassifier(
            model="logistic",
            dtype="float64",
            batch_size=0,
            epochs=30,
            lr=0.05,
            early_stopping=True,
            patience=3,
            random_state=0,
        ),
        OptimkitRegressor(
            model="linear",
            loss="huber",
            dtype="float64",
            lr=0.05,
            early_stopping=True,
            patience=2,
            random_state=0,
        ),
    ],
    expected_failed_checks=lambda est: {},
)
def test_sklearn_checks(estimator, check):
    check(estimator)


@pytest.mark.slow
@parametrize_with_checks([OptimkitClassifier(), OptimkitRegressor()])
def test_sklearn_checks_default_parameters(estimator, check):
    check(estimator)


# ------------------------------------------------------------------------------ oracle: torch
def _torch_fit(X, y, n_out, loss_fn, *, seed, lr, epochs, hidden, batch_size=0):
    """The same model trained alone with torch.optim.Adam on the same batches."""
    torch.manual_seed(seed)
    model = build_model("mlp", X.shape[1], n_out, hidden=hidden).to(f64)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, t = torch.as_tensor(X, dtype=f64), torch.as_tensor(y)
    sampler = BatchSampler(len(x), batch_size=batch_size or None, seed=seed)
    for _ in range(epochs):
        for idx in sampler:
            opt.zero_grad()
            loss_fn(model(x[idx]), t[idx]).backward()
            opt.step()
    return model


def _assert_same_weights(est, model, tol=1e-10):
    mine = est.module_.state_dict()
    for name, p in model.state_dict().items():
        np.testing.assert_allclose(mine[name].numpy(), p.numpy(), rtol=0, atol=tol, err_msg=name)


def test_binary_classifier_equals_torch_optim_with_string_labels():
    X, y = _standardized(load_breast_cancer, 300)
    labels = np.where(y == 1, "benign", "malignant")
    est = OptimkitClassifier(
        hidden=(8,), lr=0.01, epochs=6, batch_size=0, dtype="float64", random_state=7
    ).fit(X, labels)
    assert list(est.classes_) == ["benign", "malignant"]
    target = torch.as_tensor(labels == "malignant", dtype=f64)
    model = _torch_fit(
        X,
        target,
        1,
        lambda out, t: F.binary_cross_entropy_with_logits(out[:, 0], t),
        seed=7,
        lr=0.01,
        epochs=6,
        hidden=(8,),
    )
    _assert_same_weights(est, model)
    z = model(torch.as_tensor(X)).detach().numpy()[:, 0]
    np.testing.assert_allclose(est.decision_function(X), z, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        est.predict_proba(X), np.stack([expit(-z), expit(z)], 1), rtol=1e-12, atol=1e-15
    )
    np.testing.assert_array_equal(est.predict(X), np.where(z > 0, "malignant", "benign"))
    assert est.n_iter_ == 6 and len(est.loss_curve_) == 6 and est.status_ == "finished"
    assert list(est.history_["epoch"]) == list(range(1, 7))


def test_multiclass_minibatch_classifier_equals_torch_optim():
    X, y = _standardized(load_wine)
    est = OptimkitClassifier(
        hidden=(8,), lr=0.01, epochs=3, batch_size=32, dtype="float64", random_state=5
    ).fit(X, y + 10)
    np.testing.assert_array_equal(est.classes_, [10, 11, 12])
    model = _torch_fit(
        X,
        torch.as_tensor(y),
        3,
        F.cross_entropy,
        seed=5,
        lr=0.01,
        epochs=3,
        hidden=(8,),
        batch_size=32,
    )
    _assert_same_weights(est, model)
    logits = model(torch.as_tensor(X)).detach().numpy()
    np.testing.assert_allclose(est.decision_function(X), logits, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(est.predict_proba(X), softmax(logits, axis=1), atol=1e-14)
    np.testing.assert_array_equal(est.predict(X), logits.argmax(1) + 10)
    # score is the accuracy of predict (ClassifierMixin)
    assert est.score(X, y + 10) == pytest.approx(np.mean(logits.argmax(1) == y))


@pytest.mark.parametrize(
    ("loss", "loss_fn"),
    [
        ("mse", F.mse_loss),
        ("mae", F.l1_loss),
        ("huber", lambda out, t: F.huber_loss(out, t, delta=1.0)),
    ],
)
def test_regressor_equals_torch_optim(loss, loss_fn):
    X, y = _standardized(load_diabetes)
    y = (y - y.mean()) / y.std()
    est = OptimkitRegressor(
        hidden=(8,), lr=0.01, epochs=4, batch_size=64, loss=loss, dtype="float64", random_state=3
    ).fit(X, y)
    model = _torch_fit(
        X,
        torch.as_tensor(y),
        1,
        lambda out, t: loss_fn(out[:, 0], t),
        seed=3,
        lr=0.01,
        epochs=4,
        hidden=(8,),
        batch_size=64,
    )
    _assert_same_weights(est, model)
    pred = model(torch.as_tensor(X)).detach().numpy()[:, 0]
    np.testing.assert_allclose(est.predict(X), pred, rtol=1e-12, atol=1e-12)
    r2 = 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
    assert est.score(X, y) == pytest.approx(r2, rel=1e-10)


def test_float32_predictions_equal_the_plain_module():
    """predict runs the fitted module's weights in float64: it matches the plain float32 module
    (rebuilt from the state_dict, as an export would) to float32 rounding, row by row."""
    X, y = _standardized(load_digits)
    est = OptimkitClassifier(hidden=(32,), lr=0.01, epochs=2, random_state=0).fit(X, y)
    assert next(est.module_.parameters()).dtype == torch.float32
    plain = build_model("mlp", 64, 10, hidden=(32,))
    plain.load_state_dict(est.module_.state_dict())
    with torch.no_grad():
        logits = plain.eval()(torch.as_tensor(X, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(est.decision_function(X), logits, rtol=1e-5, atol=1e-5)
    margin = np.sort(logits, axis=1)[:, -1] - np.sort(logits, axis=1)[:, -2]
    clear = margin > 1e-4
    np.testing.assert_array_equal(est.predict(X)[clear], logits.argmax(1)[clear])
    # one row at a time gives the whole batch's values to float64 rounding (float32 kernels
    # differ by ~1e-7 between batch sizes, which sklearn's subset-invariance check rejects)
    one = np.concatenate([est.decision_function(X[i : i + 1]) for i in range(20)])
    np.testing.assert_allclose(one, est.decision_function(X[:20]), rtol=1e-12, atol=1e-12)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict_proba(X), est.predict_proba(X))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fit_matches_cpu_fit():
    X, y = _standardized(load_wine)
    params = {
        "hidden": (8,),
        "lr": 0.01,
        "epochs": 5,
        "batch_size": 0,
        "dtype": "float64",
        "random_state": 2,
    }
    cpu = OptimkitClassifier(**params).fit(X, y)
    gpu = OptimkitClassifier(device="cuda", **params).fit(X, y)
    assert next(gpu.module_.parameters()).device.type == "cuda"
    np.testing.assert_allclose(
        gpu.decision_function(X), cpu.decision_function(X), rtol=1e-9, atol=1e-9
    )
    again = pickle.loads(pickle.dumps(gpu))
    np.testing.assert_array_equal(again.predict_proba(X), gpu.predict_proba(X))


# ------------------------------------------------------------------------------ oracle: sklearn
def test_logistic_regression_reaches_sklearn_optimum():
    """Full-batch L2 logistic regression without intercept lands on LogisticRegression's w*.

    sklearn minimizes C sum(loss) + ||w||^2 / 2, i.e. n C times mean(loss) + ||w||^2 / (2 C n),
    our objective with weight_decay = 1 / (C n). That objective f is mu-strongly convex with
    mu = 1 / (C n), so ||w - w_opt|| <= ||grad f(w)|| / mu for any w: the tolerance below is
    that bound for our w plus the same bound for sklearn's w*, both computed here in numpy.
    """
    X, y = _standardized(load_breast_cancer)
    n, c = len(y), 0.1
    est = OptimkitClassifier(
        model="logistic",
        model_options={"bias": False},
        lr=0.2,
        weight_decay=1 / (c * n),
        batch_size=0,
        epochs=400,
        dtype="float64",
        random_state=0,
    ).fit(X, y)
    ref = LogisticRegression(C=c, fit_intercept=False, tol=1e-12, max_iter=10_000).fit(X, y)
    w, w_ref = est.module_.state_dict()["head.weight"].numpy().ravel(), ref.coef_.ravel()

    def grad(v):
        return X.T @ (expit(X @ v) - y) / n + v / (c * n)

    mu = 1 / (c * n)
    bound = (np.linalg.norm(grad(w)) + np.linalg.norm(grad(w_ref))) / mu
    assert bound < 1e-5 * np.linalg.norm(w_ref)  # the run did converge
    assert np.linalg.norm(w - w_ref) <= bound
    np.testing.assert_allclose(est.predict_proba(X), ref.predict_proba(X), atol=1e-6)


def test_pipeline_grid_search_over_lr_on_digits():
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    pipe = Pipeline(
        [
            ("scale", StandardScaler()),
            ("clf", OptimkitClassifier(hidden=(32,), epochs=4, random_state=0)),
        ]
    )
    search = GridSearchCV(pipe, {"clf__lr": [1e-5, 1e-2]}, cv=3).fit(X_tr, y_tr)
    scores = dict(
        zip(search.cv_results_["param_clf__lr"], search.cv_results_["mean_test_score"], strict=True)
    )
    # lr = 1e-5 barely moves the weights in 4 epochs; 1e-2 trains
    assert search.best_params_ == {"clf__lr": 1e-2}
    assert scores[1e-2] > 0.9 and scores[1e-5] < scores[1e-2] - 0.2
    assert search.score(X_te, y_te) > 0.9
    # the refit best pipeline equals a fresh fit with the same parameters (random_state)
    fresh = clone(pipe).set_params(clf__lr=1e-2).fit(X_tr, y_tr)
    np.testing.assert_array_equal(fresh.predict_proba(X_te), search.predict_proba(X_te))


# ------------------------------------------------------------------------------ early stopping
def test_early_stopping_restores_the_best_validation_epoch():
    X, y = _standardized(load_digits)
    est = OptimkitClassifier(
        hidden=(64,),
        lr=0.03,
        epochs=200,
        batch_size=64,
        dtype="float64",
        early_stopping=True,
        validation_fraction=0.2,
        patience=3,
        random_state=1,
    ).fit(X, y)
    curve = est.history_["val_loss"].to_numpy()
    best = int(np.argmin(curve)) + 1
    assert est.status_ == "stopped" and est.best_epoch_ == best
    assert est.n_iter_ == best + 3 < 200
    # the held-out rows: the stratified split with the estimator's seed; the kept model's
    # log loss on them (sklearn's) is the best val loss of the history
    val = split_rows(y, "stratified", 0.2, 0.0, seed=1).val
    assert len(val) == int(np.ceil(0.2 * len(y)))
    assert log_loss(y[val], est.predict_proba(X[val]), labels=est.classes_) == pytest.approx(
        curve[best - 1], rel=1e-10
    )


def test_without_early_stopping_patience_watches_the_training_loss():
    X, y = _standardized(load_breast_cancer)
    est = OptimkitClassifier(
        hidden=(8,),
        lr=0.5,
        epochs=300,
        batch_size=0,
        dtype="float64",
        patience=2,
        min_delta=1e-3,
        random_state=0,
    ).fit(X, y)
    # all rows are the "val" part: its loss is the training objective in eval mode, and the
    # last weights are kept (no restore): their log loss is the last recorded val loss
    assert est.status_ == "stopped" and est.n_iter_ < 300
    assert log_loss(y, est.predict_proba(X)) == pytest.approx(
        est.history_["val_loss"].iloc[-1], rel=1e-10
    )


def test_divergence_warns_and_keeps_the_last_finite_weights():
    X, y = _standardized(load_breast_cancer, 200)
    est = OptimkitClassifier(
        hidden=(8,),
        optimizer="sgd",
        lr=1e300,
        epochs=3,
        batch_size=0,
        dtype="float64",
        random_state=4,
    )
    with pytest.warns(ConvergenceWarning, match="diverged"):
        est.fit(X, y)
    assert est.status_ == "failed" and est.n_iter_ == 1
    torch.manual_seed(4)
    init = build_model("mlp", X.shape[1], 1, hidden=(8,)).to(f64)
    z = init(torch.as_tensor(X)).detach().numpy()[:, 0]
    np.testing.assert_allclose(est.decision_function(X), z, rtol=1e-12)


# ------------------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"lr": 0.0}, r"lr: expected a finite number > 0"),
        ({"weight_decay": -1.0}, r"weight_decay: expected a finite number >= 0"),
        ({"epochs": 0}, r"epochs: expected an int >= 1"),
        ({"batch_size": 1.5}, r"batch_size: expected an int >= 0"),
        ({"validation_fraction": 1.0}, r"validation_fraction: expected a number in \(0, 1\)"),
        ({"patience": 0}, r"patience: expected None or an int >= 1"),
        ({"dtype": "float16"}, r"dtype: expected one of float32, float64"),
        ({"optimizer": "adamm"}, r"optimizer: unknown name 'adamm'; valid: .*adagrad, adam, .*sgd"),
        (
            {"optimizer": "sgd", "optimizer_options": {"momentun": 0.9}},
            r"optimizer_options: 'sgd' does not take momentun; valid options: .*momentum",
        ),
        ({"model": "mlpp"}, r"model: unknown name 'mlpp'; valid names: linear"),
        ({"model_options": {"hidden": (4,)}}, r"model_options: give the hidden layer sizes"),
        ({"early_stopping": "yes"}, r"early_stopping: expected True or False"),
        ({"random_state": "x"}, r"cannot be used to seed"),
    ],
)
def test_bad_parameters_are_value_errors_at_fit(params, match):
    X, y = _standardized(load_breast_cancer, 50)
    est = OptimkitClassifier(**{"epochs": 1, **params})  # the constructor only stores
    with pytest.raises(ValueError, match=match):
        est.fit(X, y)


def test_input_errors():
    X, y = _standardized(load_breast_cancer, 50)
    with pytest.raises(NotFittedError):
        OptimkitClassifier().predict(X)
    with pytest.raises(ValueError, match="at least 2 classes, got 1 class"):
        OptimkitClassifier(epochs=1).fit(X, np.zeros(50))
    with pytest.raises(ValueError, match="y should be a 1d array"):
        OptimkitRegressor(epochs=1).fit(X, np.stack([y, y], axis=1))
    with pytest.raises(ValueError, match="loss: expected one of mse, mae, huber"):
        OptimkitRegressor(epochs=1, loss="bce").fit(X, y)
    with pytest.raises(ValueError, match="Unknown label type"):
        OptimkitClassifier(epochs=1).fit(X, X[:, 0])
    est = OptimkitClassifier(epochs=1, hidden=(4,)).fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but OptimkitClassifier is expecting"):
        est.predict(X[:, :3])
