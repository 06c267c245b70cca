"""fastdnn.preprocess: the CLI's choice of task and loss, and its feature scaling."""
import numpy as np
import pytest

from fastdnn.preprocess import Scaler, choose_task


@pytest.mark.parametrize("method", ["standard", "minmax"])
def test_scaling_matches_its_formula(method):
    X = np.random.default_rng(0).normal(3.0, 2.0, size=(50, 4))
    s = Scaler.fit(method, X)
    if method == "standard":
        offset, scale = X.mean(axis=0), X.std(axis=0)
    else:
        offset, scale = X.min(axis=0), X.max(axis=0) - X.min(axis=0)
    np.testing.assert_array_equal(s.transform(X, np.float64), (X - offset) / scale)
    np.testing.assert_allclose(s.inverse(s.transform(X, np.float64)), X, rtol=1e-14)


@pytest.mark.parametrize("method", ["standard", "minmax"])
@pytest.mark.parametrize("value", [0.1, 1e10 + 0.1, -7.0])
def test_a_constant_column_becomes_zero(method, value):
    """Ten 0.1s have a standard deviation of 1.4e-17, not 0: used as the scale, it
    mapped the column to 1 and a new 0.2 to 7.2e15."""
    X = np.column_stack([np.full(10, value), np.arange(10.0)])
    s = Scaler.fit(method, X)
    assert s.scale[0] == 1.0
    np.testing.assert_array_equal(s.transform(X, np.float64)[:, 0], 0.0)
    assert s.transform(np.array([[value + 0.1, 0.0]]), np.float64)[0, 0] == \
        pytest.approx(0.1, rel=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(task="clasification"), "task must be one of"),
    (dict(loss="hinge"), "loss must be one of"),
])
def test_choose_task_refuses_unknown_names(kwargs, match):
    with pytest.raises(ValueError, match=match):
        choose_task(np.array([0, 1, 1]), **kwargs)


def test_choose_task_follows_the_loss_asked_for():
    assert choose_task(np.array([0, 1, 1]), loss="mse").name == "regression"
    assert choose_task(np.array([0.5, 1.5]), loss="poisson").loss == "poisson"
    assert choose_task(np.array(["a", "b"])).loss == "cross_entropy"
    assert choose_task(np.array([0, 1, 1]), task="regression", loss="mse").name == "regression"


@pytest.mark.parametrize("task, loss", [("classification", "mse"),
                                        ("regression", "cross_entropy"),
                                        ("classification", "poisson")])
def test_choose_task_refuses_a_loss_of_another_task(task, loss):
    # It returned the loss's task, ignoring the one asked for (the CLI refused it).
    with pytest.raises(ValueError, match=f"not a {task} loss"):
        choose_task(np.array([1, 2, 3, 1]), task=task, loss=loss)
