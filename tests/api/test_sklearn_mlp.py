"""fastdnn.sklearn's estimators: scikit-learn's semantics step for step, and what they
add (optimizer state across warm starts, any labels, fastdnn's own parameters).

The oracle is scikit-learn's own MLP: with the same ``random_state`` both draw the same
initial weights, so with ``shuffle=False`` plain or momentum SGD must follow the same
trajectory to rounding.  Tolerances: float64 nets; the two sum the same products in a
different order, ~1e-15 relative per step, grown to < 1e-10 over these short fits.
"""
import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

import sklearn.neural_network as sk  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from support import run_python  # noqa: E402

import fastdnn.sklearn as fds  # noqa: E402
from fastdnn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

quiet = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def problem(kind, n=60, n_features=5, seed=0):
    """``(X, y)``: binary, multiclass (3), multilabel (3 labels), regression, or
    regression with 2 outputs; counts for the Poisson loss (1 or 2 outputs)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    score = X @ rng.normal(size=(n_features, 3))
    y = {"binary": (score[:, 0] > 0).astype(int),
         "multiclass": score.argmax(axis=1),
         "multilabel": (score > 0).astype(int),
         "regression": score[:, 0],
         "regression2": score[:, :2],
         "poisson": rng.poisson(np.exp(score[:, 0] / 3)),
         "poisson2": rng.poisson(np.exp(score[:, :2] / 3))}[kind]
    return X, y


def fit_both(kind, **params):
    """The same parameters and data through fastdnn's estimator and sklearn's."""
    X, y = problem(kind)
    regression = kind.startswith(("regression", "poisson"))
    ours, theirs = ((MLPRegressor, sk.MLPRegressor) if regression
                    else (MLPClassifier, sk.MLPClassifier))
    settings = dict(hidden_layer_sizes=(7,), activation="tanh", solver="sgd",
                    learning_rate_init=0.05, batch_size=20, shuffle=False, max_iter=6,
                    n_iter_no_change=np.inf, random_state=0)
    if kind.startswith("poisson"):
        settings["loss"] = "poisson"
    settings.update(params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return ours(**settings).fit(X, y), theirs(**settings).fit(X, y)


KINDS = ["binary", "multiclass", "multilabel", "regression", "regression2", "poisson",
         "poisson2"]


def assert_same_fit(ours, theirs, rtol, loss=True):
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())
    if loss:  # the loss curve of the stochastic solvers
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=rtol)
    assert ours.out_activation_ == theirs.out_activation_
    assert ours.n_outputs_ == theirs.n_outputs_ and ours.n_layers_ == theirs.n_layers_
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_follows_sklearn_step_for_step(kind, momentum):
    # alpha=0 here; the L2 mapping is checked on its own below.
    ours, theirs = fit_both(kind, momentum=momentum, alpha=0.0)
    assert_same_fit(ours, theirs, rtol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_alpha_follows_sklearn(kind):
    ours, theirs = fit_both(kind, momentum=0.9, alpha=0.05)
    # With two outputs sklearn's loss_ holds the penalty undivided (docs/sklearn.md).
    assert_same_fit(ours, theirs, rtol=1e-10, loss=kind != "regression2")


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("weighted", [False, True])
def test_alpha_per_batch_weight_follows_sklearn(kind, solver, weighted):
    # sklearn divides each batch's penalty by that batch's weight: 60 rows in batches
    # of 16 end with one of 12, and with sample weights every batch weighs its own.
    # A penalty fixed per step was 9e-5 off after an epoch here.
    X, y = problem(kind)
    w = np.random.default_rng(1).uniform(0.2, 3.0, size=len(y)) if weighted else None
    regression = kind.startswith("regression")
    ours, theirs = ((MLPRegressor, sk.MLPRegressor) if regression
                    else (MLPClassifier, sk.MLPClassifier))
    settings = dict(hidden_layer_sizes=(7,), activation="tanh", solver=solver, alpha=0.5,
                    learning_rate_init=0.05, batch_size=16, shuffle=False, max_iter=4,
                    momentum=0.9, n_iter_no_change=np.inf, random_state=0,
                    epsilon=1e-14)  # where Adam adds it differs (docs/sklearn.md)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = ours(**settings).fit(X, y, sample_weight=w)
        theirs = theirs(**settings).fit(X, y, sample_weight=w)
    # With sample weights loss_ weighs the batches otherwise (docs/sklearn.md).
    assert_same_fit(ours, theirs, rtol=1e-10, loss=not weighted)


@pytest.mark.parametrize("kind", KINDS)
def test_lbfgs_follows_sklearn(kind):
    # Full-batch L-BFGS-B on the same objective from the same start: the same iterates.
    ours, theirs = fit_both(kind, solver="lbfgs", alpha=1e-2, max_iter=20)
    assert_same_fit(ours, theirs, rtol=1e-9, loss=False)
    if kind != "regression2":  # see docs/sklearn.md on the loss reported
        assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-9)


def test_invscaling_follows_sklearn():
    # Plain SGD: with momentum the two differ once the rate changes (PyTorch keeps the
    # velocity in gradient units, sklearn in step units).
    ours, theirs = fit_both("multiclass", momentum=0.0, alpha=0.0,
                            learning_rate="invscaling", power_t=0.3)
    assert_same_fit(ours, theirs, rtol=1e-10)
    assert ours.learning_rate_ == theirs._optimizer.learning_rate


def test_adam_follows_sklearn():
    # Adam's epsilon enters after the bias correction here (PyTorch) and before it in
    # sklearn, where it is eps / sqrt(1 - beta_2**t) after it: 3e-7 at the first step,
    # against sqrt(v_hat) ~ 1e-2 here, so steps differ by up to ~3e-5 relative.
    ours, theirs = fit_both("multiclass", solver="adam", learning_rate_init=0.01, alpha=0.0)
    assert_same_fit(ours, theirs, rtol=1e-4)


def test_adaptive_divides_the_rate_by_five():
    X, y = problem("binary")
    clf = MLPClassifier((7,), solver="sgd", learning_rate="adaptive", tol=10.0,
                        n_iter_no_change=2, max_iter=7, random_state=0)
    with pytest.warns(ConvergenceWarning):
        clf.fit(X, y)
    # Epochs 3 and 6 end 3 epochs without an improvement of 10: two divisions.
    assert clf.learning_rate_ == pytest.approx(0.001 / 25)


@quiet
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_warm_start_continues_the_optimizer(solver):
    X, y = problem("multiclass")
    params = dict(hidden_layer_sizes=(7,), solver=solver, n_iter_no_change=np.inf,
                  random_state=0)
    once = MLPClassifier(max_iter=6, **params).fit(X, y)
    twice = MLPClassifier(max_iter=3, warm_start=True, **params).fit(X, y).fit(X, y)
    for a, b in zip(once.coefs_ + once.intercepts_, twice.coefs_ + twice.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert twice.loss_curve_ == once.loss_curve_
    assert twice.t_ == once.t_ == 6 * len(X) and twice.n_iter_ == 3


def test_partial_fit_equals_fit_epochs():
    X, y = problem("regression")
    params = dict(hidden_layer_sizes=(7,), n_iter_no_change=np.inf, random_state=0)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(4\\)"):
        fitted = MLPRegressor(max_iter=4, **params).fit(X, y)
    stepped = MLPRegressor(**params)
    for _ in range(4):
        stepped.partial_fit(X, y)
    np.testing.assert_array_equal(fitted.predict(X), stepped.predict(X))
    assert stepped.n_iter_ == 1 and stepped.t_ == 4 * len(X)


@quiet
@pytest.mark.parametrize("labels", [np.array(["cat", "dog", "eel"]), np.array([1, 2, 3]),
                                    np.array([10, -1, 0])])
def test_any_labels(labels):
    X, y = problem("multiclass")
    clf = MLPClassifier((16,), max_iter=300, learning_rate_init=0.01, random_state=0)
    clf.fit(X, labels[y])
    np.testing.assert_array_equal(clf.classes_, np.sort(labels))
    pred = clf.predict(X)
    assert pred.dtype == labels.dtype and set(pred) <= set(labels)
    assert clf.score(X, labels[y]) > 0.9
    assert clf.out_activation_ == "softmax" and clf.n_outputs_ == 3
    np.testing.assert_allclose(clf.predict_proba(X).sum(axis=1), 1.0, rtol=1e-12)


@quiet
def test_binary_labels_use_one_logistic_output():
    X, y = problem("binary")
    clf = MLPClassifier((16,), max_iter=300, learning_rate_init=0.01, random_state=0)
    clf.fit(X, y.astype(bool))
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 1
    assert clf.net_.sizes[-1] == 1 and clf.net_.loss_name == "binary_cross_entropy"
    assert clf.predict(X).dtype == bool and clf.score(X, y.astype(bool)) > 0.9
    assert clf.predict_proba(X).shape == (len(X), 2)


@quiet
def test_multilabel():
    X, Y = problem("multilabel")
    clf = MLPClassifier((16,), max_iter=300, learning_rate_init=0.01, random_state=0).fit(X, Y)
    assert clf.predict(X).shape == Y.shape and clf.score(X, Y) > 0.8  # subset accuracy
    P = clf.predict_proba(X)
    assert P.shape == Y.shape and not np.allclose(P.sum(axis=1), 1.0)


@quiet
def test_multi_output_regression():
    X, Y = problem("regression2")
    reg = MLPRegressor(hidden_layer_sizes=(16,), max_iter=500, learning_rate_init=0.01,
                       random_state=0).fit(X, Y)
    assert reg.predict(X).shape == Y.shape and reg.score(X, Y) > 0.9


@quiet
def test_pandas_feature_names():
    pd = pytest.importorskip("pandas")
    X, y = problem("binary")
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    clf = MLPClassifier((4,), max_iter=5).fit(frame, y)
    np.testing.assert_array_equal(clf.feature_names_in_, frame.columns)
    with pytest.raises(ValueError, match="feature names"):
        clf.predict(frame.rename(columns={"f0": "other"}))


def test_convergence_warning_only_when_max_iter_is_hit():
    X, y = problem("binary")
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(3\\)"):
        MLPClassifier((4,), max_iter=3).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MLPClassifier((4,), max_iter=100, tol=1e3, n_iter_no_change=1).fit(X, y)
    # The first epoch improves on an infinite best loss, the next two do not improve by
    # tol: a count of 2 > n_iter_no_change stops the fit.
    assert clf.n_iter_ == 3


@quiet
def test_early_stopping_keeps_the_best_weights(monkeypatch):
    splits = []
    real_split = fds.train_test_split

    def recording_split(*arrays, **kwargs):
        splits.append(real_split(*arrays, **kwargs))
        return splits[-1]

    monkeypatch.setattr(fds, "train_test_split", recording_split)
    X, y = problem("multiclass", n=300)
    clf = MLPClassifier((16,), early_stopping=True, validation_fraction=0.2,
                        learning_rate_init=0.3, n_iter_no_change=5, random_state=0).fit(X, y)
    val = splits[-1][1]
    best = int(np.argmax(clf.validation_scores_))
    assert best < clf.n_iter_ - 1, "the best epoch should not be the last"
    assert clf.score(X[val], y[val]) == clf.best_validation_score_


def test_pipeline_search_and_cross_validation():
    # The starting point: fd.MLP in a Pipeline failed in predict and clone.
    X, y = problem("multiclass", n=120)
    pipe = make_pipeline(StandardScaler(), MLPClassifier((8,), learning_rate_init=0.01,
                                                         max_iter=100, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert cross_val_score(pipe, X, y, cv=3).mean() > 0.7
        search = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-2]}, cv=2).fit(X, y)
    assert search.best_estimator_.predict(X).shape == y.shape
    assert clone(pipe).get_params()["mlpclassifier__max_iter"] == 100


@quiet
def test_fastdnn_parameters_reach_the_net():
    X, y = problem("regression")
    reg = MLPRegressor(hidden_layer_sizes=(5, 4), activation=["gelu", "logistic"],
                       dtype="float32", n_threads=1, max_iter=2).fit(X, y)
    assert reg.net_.activations == ["gelu", "sigmoid"]
    assert reg.net_.dtype == np.float32 and reg.coefs_[0].dtype == np.float32
    assert reg.net_.n_threads == 1 and reg.net_.device == "cpu"
    assert reg.predict(X).dtype == np.float32


@quiet
def test_class_weight_multiplies_sample_weight():
    X, y = problem("multiclass")
    weights = {0: 3.0, 1: 0.5, 2: 1.0}
    params = dict(hidden_layer_sizes=(7,), max_iter=5, random_state=0)
    by_class = MLPClassifier(class_weight=weights, **params).fit(X, y)
    by_sample = MLPClassifier(**params).fit(X, y, sample_weight=np.vectorize(weights.get)(y))
    np.testing.assert_array_equal(by_class.coefs_[0], by_sample.coefs_[0])
    unweighted = MLPClassifier(**params).fit(X, y)
    assert not np.array_equal(by_class.coefs_[0], unweighted.coefs_[0])


@quiet
def test_dropout_trains_with_dropped_units():
    X, y = problem("binary")
    params = dict(hidden_layer_sizes=(16,), max_iter=3, random_state=0)
    dropped = MLPClassifier(dropout=0.5, **params).fit(X, y)
    assert dropped.net_.dropout == [0.5]
    assert not np.array_equal(dropped.coefs_[0], MLPClassifier(**params).fit(X, y).coefs_[0])
    # Predictions never drop: the same input, the same output.
    np.testing.assert_array_equal(dropped.predict_proba(X), dropped.predict_proba(X))


@pytest.mark.parametrize("params, message", [
    (dict(activation=["relu"]), "1 names for 2 hidden layers"),
    (dict(activation=["relu", "swish"]), "unknown activation"),
    (dict(activation="swish"), "'activation' parameter"),
    (dict(alpha=-1.0), "'alpha' parameter"),
    (dict(momentum=1.0), "'momentum' parameter"),
    (dict(dtype="float16"), "'dtype' parameter"),
])
def test_bad_parameters_are_named(params, message):
    X, y = problem("binary")
    with pytest.raises(ValueError, match=message):
        MLPClassifier((3, 3), **params).fit(X, y)


@quiet
def test_warm_start_refuses_a_new_architecture():
    X, y = problem("binary")
    clf = MLPClassifier((3,), warm_start=True, max_iter=2).fit(X, y)
    with pytest.raises(ValueError, match="warm_start=False"):
        clf.set_params(hidden_layer_sizes=(4,)).fit(X, y)


@quiet
@pytest.mark.parametrize("kind", ["poisson", "poisson2"])
def test_poisson_predicts_the_means_as_sklearn(kind):
    """scikit-learn's loss='poisson': output activation exp, the net's outputs are the
    log-means, predict and score (R^2) read the means, and loss_ is sklearn's half
    deviance with its constant: 300 Adam epochs end where sklearn's do (Adam's epsilon
    differs, see test_adam_follows_sklearn; measured: loss_ within 3e-5 relative, R^2
    within 1.2e-3, each mean within 5.3%).  Early stopping scores the means too."""
    X, y = problem(kind, n=200)
    params = dict(loss="poisson", hidden_layer_sizes=(16,), max_iter=300,
                  learning_rate_init=0.01, random_state=0)
    reg, theirs = MLPRegressor(**params).fit(X, y), sk.MLPRegressor(**params).fit(X, y)
    assert reg.out_activation_ == theirs.out_activation_ == "exp"
    assert reg.net_.loss_name == "poisson"
    pred = reg.predict(X)
    assert pred.shape == y.shape and (pred > 0).all()
    np.testing.assert_allclose(pred, np.exp(reg.net_.forward(X)).reshape(y.shape), rtol=1e-12)
    np.testing.assert_allclose(pred, theirs.predict(X), rtol=0.1)
    assert reg.loss_ == pytest.approx(theirs.loss_, rel=1e-3)
    assert reg.score(X, y) == pytest.approx(theirs.score(X, y), abs=0.01)
    stopped = MLPRegressor(**params, early_stopping=True).fit(X, y)
    assert stopped.n_iter_ < 300 and stopped.best_validation_score_ > 0
    assert stopped.best_validation_score_ == max(stopped.validation_scores_)


def test_poisson_refuses_negative_targets():
    X, y = problem("poisson")
    y[3] = -1
    with pytest.raises(ValueError, match="loss='poisson' needs targets >= 0"):
        MLPRegressor(loss="poisson").fit(X, y)


@quiet
def test_pickle_keeps_predictions_and_optimizer_state():
    X, y = problem("multiclass")
    clf = MLPClassifier((7,), max_iter=3, random_state=0).fit(X, y)
    copy = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(copy.predict_proba(X), clf.predict_proba(X))
    clf.partial_fit(X, y)
    copy.partial_fit(X, y)
    np.testing.assert_array_equal(copy.coefs_[0], clf.coefs_[0])


def test_verbose_prints_sklearn_lines(capsys):
    X, y = problem("binary")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPClassifier((3,), max_iter=2, verbose=True, early_stopping=True).fit(X, y)
    out = capsys.readouterr().out
    assert "Iteration 1, loss = " in out and "Validation score: " in out


def test_import_fastdnn_leaves_sklearn_alone():
    out = run_python("""
        import sys
        import fastdnn
        print("sklearn" in sys.modules)
    """)
    assert out.strip() == "False"


def test_missing_sklearn_is_a_clear_import_error():
    out = run_python("""
        import sys
        sys.modules["sklearn"] = None  # as if not installed
        try:
            import fastdnn.sklearn
        except ImportError as exc:
            print(exc)
    """)
    assert "needs scikit-learn >= 1.6" in out


@quiet
@pytest.mark.parametrize("activation", ["relu", "logistic"])
@pytest.mark.parametrize("kind", ["multiclass", "regression"])
def test_no_hidden_layer_follows_sklearn(kind, activation):
    """``hidden_layer_sizes=()``: one linear layer into the loss, its initial weights
    drawn with ``activation``'s factor, as scikit-learn's."""
    X, y = problem(kind)
    params = dict(hidden_layer_sizes=(), activation=activation, solver="sgd", max_iter=5,
                  shuffle=False, n_iter_no_change=np.inf, random_state=0)
    Est, Theirs = (MLPClassifier, sk.MLPClassifier) if kind == "multiclass" \
        else (MLPRegressor, sk.MLPRegressor)
    ours, theirs = Est(**params).fit(X, y), Theirs(**params).fit(X, y)
    assert ours.net_.sizes == [X.shape[1], ours.n_outputs_]
    np.testing.assert_allclose(ours.coefs_[0], theirs.coefs_[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)


def test_early_stopping_split_without_training_weight_is_named():
    X, y = problem("multiclass", n=120)
    weight = np.zeros(len(y))
    weight[-1] = 1.0  # all of it in the validation half
    clf = MLPClassifier((5,), early_stopping=True, validation_fraction=0.5, random_state=0)
    with pytest.raises(ValueError, match="training part of the early-stopping split"):
        clf.fit(X, y, sample_weight=weight)


@quiet
def test_warm_start_applies_a_new_activation_as_sklearn():
    """A warm fit after ``set_params(activation=...)`` trains the weights it has under
    the new activation, step for step as scikit-learn's does (without momentum, whose
    state only fastdnn keeps across warm fits)."""
    X, y = problem("multiclass")
    params = dict(hidden_layer_sizes=(7, 5), solver="sgd", momentum=0.0, max_iter=3,
                  shuffle=False,
                  n_iter_no_change=np.inf, random_state=0, warm_start=True)
    ours, theirs = MLPClassifier(**params).fit(X, y), sk.MLPClassifier(**params).fit(X, y)
    for est in (ours, theirs):
        est.set_params(activation="tanh").fit(X, y)
    assert ours.net_.activations == ["tanh", "tanh"]
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)


@quiet
def test_warm_start_applies_a_new_loss():
    """A regressor's warm fit after ``set_params(loss="poisson")`` trains the weights it
    has for the Poisson loss, and predicts the means ``exp`` of its outputs."""
    X, y = problem("poisson")
    reg = MLPRegressor(hidden_layer_sizes=(6,), max_iter=3, warm_start=True, random_state=0)
    reg.fit(X, y)
    reg.set_params(loss="poisson").fit(X, y)
    assert reg.out_activation_ == "exp" and reg.net_.loss_name == "poisson"
    hidden = np.maximum(X @ reg.coefs_[0] + reg.intercepts_[0], 0.0)
    means = np.exp(hidden @ reg.coefs_[1] + reg.intercepts_[1]).ravel()
    np.testing.assert_allclose(reg.predict(X), means, rtol=1e-12)


@quiet
@pytest.mark.parametrize("before, after", [
    (dict(solver="lbfgs"), dict(solver="adam")),
    (dict(early_stopping=False), dict(early_stopping=True)),
    (dict(early_stopping=True), dict(early_stopping=False)),
])
def test_warm_start_across_solvers_and_stopping_criteria(before, after):
    """A warm fit that switches from lbfgs to a stochastic solver, or turns early
    stopping on or off, begins the record of the criterion it now uses (scikit-learn's
    raised AttributeError or TypeError) and keeps the weights it had."""
    X, y = problem("multiclass", n=120)
    clf = MLPClassifier((5,), max_iter=4, warm_start=True, random_state=0, **before)
    clf.fit(X, y)
    curve = list(getattr(clf, "loss_curve_", None) or [])
    clf.set_params(**after, max_iter=3).fit(X, y)
    assert clf.n_iter_ == 3 and clf.loss_curve_[:len(curve)] == curve
    assert len(clf.loss_curve_) == len(curve) + 3
    if clf.early_stopping:
        assert len(clf.validation_scores_) == 3 and clf.best_loss_ is None
    else:
        assert clf.validation_scores_ is None and clf.best_loss_ == min(clf.loss_curve_[-3:])


@pytest.mark.parametrize("fit_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("data_dtype", [np.float32, np.float64])
def test_output_dtypes_follow_sklearn(fit_dtype, data_dtype):
    # A float32 fit gave float32 values for float64 data; scikit-learn's gives float64.
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    for ours, theirs, target, method in ((MLPClassifier, sk.MLPClassifier, y, "predict_proba"),
                                        (MLPRegressor, sk.MLPRegressor, X[:, 0], "predict")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = ours(max_iter=2, random_state=0).fit(X.astype(fit_dtype), target)
            b = theirs(max_iter=2, random_state=0).fit(X.astype(fit_dtype), target)
        assert (getattr(a, method)(X.astype(data_dtype)).dtype
                == getattr(b, method)(X.astype(data_dtype)).dtype)
        # A DataFrame has its columns' dtypes, no dtype: float32 frames gave float64.
        frame = pd.DataFrame(X.astype(data_dtype), columns=["a", "b", "c"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fitted without feature names
            assert getattr(a, method)(frame).dtype == getattr(b, method)(frame).dtype


def test_lbfgs_verbose_prints_no_lines_in_fastdnns_units(capsys):
    X = np.random.default_rng(0).normal(size=(30, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MLPRegressor(solver="lbfgs", max_iter=3, verbose=True).fit(X, X[:, 0])
    assert "epoch" not in capsys.readouterr().out


@pytest.mark.parametrize("warm", [False, True], ids=["fresh", "warm"])
def test_ctrl_c_in_lbfgs_leaves_the_attributes_of_the_net_predict_uses(monkeypatch, warm):
    """Ctrl-C in an lbfgs fit is raised on, as scikit-learn's is; the estimator had no
    ``coefs_`` (a fresh fit) or the old ones (a warm fit) while ``predict`` used the
    interrupted net."""
    from fastdnn.kernels.cpu.backend import CPUBackend

    X, y = problem("multiclass")
    clf = MLPClassifier(hidden_layer_sizes=(7,), solver="lbfgs", random_state=0,
                        max_iter=3 if warm else 50, warm_start=warm, tol=0)
    if warm:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X, y)
        clf.set_params(max_iter=50)
    calls, gradient = [0], CPUBackend.gradient

    def pressed(self, X, T, dropout_key=None):
        calls[0] += 1
        if calls[0] == 6:
            raise KeyboardInterrupt
        return gradient(self, X, T, dropout_key)

    monkeypatch.setattr(CPUBackend, "gradient", pressed)
    with pytest.raises(KeyboardInterrupt) as info:
        clf.fit(X, y)
    monkeypatch.setattr(CPUBackend, "gradient", gradient)
    for W, (W_net, _) in zip(clf.coefs_, clf.net_.get_weights()):
        assert np.array_equal(W, W_net)
    assert clf.n_iter_ == len(info.value.history) > 0
    assert clf.loss_ == pytest.approx(info.value.history.loss[-1], rel=1e-12)


# -- the sixth QA sweep: the estimators in scikit-learn's ecosystem --------------------
@quiet
@pytest.mark.parametrize("n, n_classes, single", [(100, 12, False), (60, 3, True)])
def test_early_stopping_trains_where_no_stratified_split_exists(n, n_classes, single):
    """train_test_split's stratified split raised ("test_size = 10 should be greater or
    equal to the number of classes = 12"; a class of one row) where scikit-learn's MLP,
    which stratifies binary problems only, trains: unstratified there now."""
    rng = np.random.RandomState(0)
    X = rng.randn(n, 4)
    y = np.arange(n) % n_classes
    if single:
        y[y == 2] = 1
        y[0] = 2  # a class of one row (of two classes, refused: scikit-learn's too)
    est = MLPClassifier((5,), early_stopping=True, max_iter=3, random_state=0).fit(X, y)
    assert len(est.validation_scores_) == 3
    sk.MLPClassifier((5,), early_stopping=True, max_iter=3, random_state=0).fit(X, y)


@pytest.mark.parametrize("class_weight, match", [
    ({0: 0, 1: 0, 2: 0}, "gives every row weight 0"),  # was ZeroDivisionError
    ({0: np.nan, 1: 1, 2: 1}, "class_weight must give finite weights >= 0"),  # blamed l2
    ({0: np.inf, 1: 1, 2: 1}, "class_weight must give finite"),  # blamed sample_weight
    ({0: -1.0, 1: 1, 2: 1}, "class_weight must give finite"),
    ({0: 10**400, 1: 1, 2: 1}, "class_weight must give finite"),  # scikit-learn's OverflowError
])
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_class_weight_values_are_checked(class_weight, match, solver):
    X, y = problem("multiclass")
    with pytest.raises(ValueError, match=match):
        MLPClassifier((3,), solver=solver, max_iter=2, class_weight=class_weight).fit(X, y)


def test_a_partial_fit_batch_of_weight_0_classes_is_refused():
    X, y = problem("multiclass")
    est = MLPClassifier((3,), class_weight={0: 0, 1: 1, 2: 1})
    with pytest.raises(ValueError, match=r"every row weight 0 \(the classes here: \[0\]\)"):
        est.partial_fit(X[y == 0], y[y == 0], classes=[0, 1, 2])


@quiet
@pytest.mark.parametrize("sizes", [[5.5], [2.9, 4], [True], [0.5], [4.0]])
def test_hidden_layer_sizes_must_be_whole_numbers(sizes):
    # int() made [2.9, 4] a 2-4 net silently; [0.5] failed as "layer widths >= 1".
    X, y = problem("multiclass")
    with pytest.raises(TypeError, match="hidden_layer_sizes must hold whole numbers"):
        MLPClassifier(sizes, max_iter=1).fit(X, y)
    assert MLPClassifier([np.int64(3)], max_iter=1).fit(X, y).net_.sizes[1] == 3


@quiet
def test_a_warm_fit_follows_n_threads_and_refuses_another_dtype():
    """A warm fit or partial_fit kept the first fit's n_threads and dtype while
    get_params reported the new ones."""
    X, y = problem("multiclass")
    est = MLPClassifier((4,), max_iter=2, n_threads=2, warm_start=True, random_state=0)
    est.fit(X, y)
    est.set_params(n_threads=1).fit(X, y)
    assert est.net_.n_threads == 1
    est.set_params(dtype="float32")
    with pytest.raises(ValueError, match="the fitted net's dtype is float64, not 'float32'"):
        est.fit(X, y)
    with pytest.raises(ValueError, match="dtype is float64"):
        est.partial_fit(X, y)
    est.set_params(warm_start=False).fit(X, y)  # a new net
    assert est.net_.dtype == np.float32


@quiet
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_a_warm_fit_after_a_new_activation_keeps_the_optimizer(solver):
    """The new net built for the new activation made the optimizer start over (Adam's
    step count 12 where one longer fit has 24): the docs promise warm fits keep it."""
    X, y = problem("multiclass", n=40)
    kw = dict(max_iter=3, warm_start=True, random_state=0, batch_size=10, solver=solver)
    est = MLPClassifier((4,), activation="relu", **kw).fit(X, y)
    state = est._optimizer.state.copy()
    est.set_params(activation="tanh").fit(X, y)
    assert est._optimizer.t == 24
    if solver == "sgd":  # momentum 0.9: the velocity went on (not from zero)
        assert np.abs(state).max() > 0


def test_the_poisson_regressor_is_tagged_positive_only():
    assert MLPRegressor(loss="poisson").__sklearn_tags__().target_tags.positive_only
    assert not MLPRegressor().__sklearn_tags__().target_tags.positive_only


@quiet
@pytest.mark.parametrize("dt", [np.float16, np.int8, np.uint8, np.int16, np.bool_, np.int64])
def test_output_dtype_of_other_data_types_is_scikit_learns(dt):
    """scikit-learn's dtype is result_type(X, weights): uint8 pixels to a float32 fit
    gave float64 here."""
    rng = np.random.RandomState(0)
    X = rng.randn(40, 2).astype(np.float32)
    y = X[:, 0] > 0
    Xd = (X * 10).astype(dt)
    for ours, theirs in [(MLPClassifier, sk.MLPClassifier), (MLPRegressor, sk.MLPRegressor)]:
        a = ours(hidden_layer_sizes=(3,), max_iter=2, random_state=0).fit(X, y)
        b = theirs(hidden_layer_sizes=(3,), max_iter=2, random_state=0).fit(X, y)
        assert a.predict(Xd).dtype == b.predict(Xd).dtype
        if hasattr(b, "predict_proba"):
            assert a.predict_proba(Xd).dtype == b.predict_proba(Xd).dtype


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_a_learning_rate_beyond_float32_names_learning_rate_init(solver):
    # "lr 1e+39 is beyond the range of the net's dtype float32": no parameter lr here.
    X, y = problem("multiclass")
    est = MLPClassifier((3,), solver=solver, learning_rate_init=1e39, dtype="float32",
                        max_iter=1)
    with pytest.raises(ValueError, match=r"learning_rate_init=1e\+39 is beyond the range of "
                                         r"the net's dtype float32"):
        est.fit(X, y)


@quiet
@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_integer_pixels_go_straight_to_the_nets_dtype(Estimator):
    """uint8 X went through float64 on its way to a float32 net (fit and predict: 3x
    the float32 bytes at the peak); predict now converts a chunk at a time."""
    import tracemalloc
    n, d = 30_000, 40
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (n, d), dtype=np.uint8)
    y = (X[:, 0] > 127).astype(np.int64)
    y = y if Estimator is MLPClassifier else y * 1.0
    est = Estimator(hidden_layer_sizes=(4,), max_iter=1, batch_size=256, random_state=0,
                    dtype="float32")
    est.fit(X[:500], y[:500])
    expected = est.predict(X.astype(np.float32))
    peaks = []
    for run in (lambda: est.fit(X, y), lambda: est.predict(X)):
        tracemalloc.start()
        try:
            out = run()
            peaks.append(tracemalloc.get_traced_memory()[1] / (n * d * 4))
        finally:
            tracemalloc.stop()
    assert peaks[0] < 1.6 and peaks[1] < 0.4, peaks  # 3.0 and 3.0 before
    est2 = Estimator(hidden_layer_sizes=(4,), max_iter=1, batch_size=256, random_state=0,
                     dtype="float32")
    est2.fit(X, y)
    np.testing.assert_array_equal(est2.predict(X), est2.predict(X.astype(np.float32)))
    assert out.shape == expected.shape


def test_partial_fit_refuses_balanced_class_weight():
    # Balanced over each call's rows alone, a stream of one-class calls trained as
    # without class weights (scikit-learn's partial_fit estimators refuse it too).
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 3)), np.r_[np.zeros(15, int), np.ones(5, int)]
    clf = MLPClassifier((4,), class_weight="balanced", random_state=0)
    with pytest.raises(ValueError, match="balanced.*partial_fit"):
        clf.partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="balanced.*partial_fit"):  # on every call
        clf.partial_fit(X[y == 1], y[y == 1])
    # a dict of the whole data's weights is taken, and fit keeps 'balanced'
    MLPClassifier((4,), class_weight={0: 0.67, 1: 2.0}, random_state=0).partial_fit(
        X, y, classes=[0, 1])
    MLPClassifier((4,), class_weight="balanced", max_iter=2, random_state=0).fit(X, y)
