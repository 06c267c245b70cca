"""fastdnn.preprocess: the CLI's choice of task and loss, and its feature scaling."""
import numpy as np
import pytest

from fastdnn.preprocess import Scaler, choose_task


@pytest.mark.parametrize("method", ["standard", "minmax"])
@pytest.mark.parametrize("n", [50, 40_001])  # one block of rows, and several
def test_scaling_matches_its_formula(method, n):
    X = np.random.default_rng(0).normal(3.0, 2.0, size=(n, 4))
    s = Scaler.fit(method, X)
    if method == "standard":
        offset, scale = X.mean(axis=0), X.std(axis=0)
    else:
        offset, scale = X.min(axis=0), X.max(axis=0) - X.min(axis=0)
    np.testing.assert_array_equal(s.transform(X, np.float64), (X - offset) / scale)
    np.testing.assert_array_equal(s.transform(X, np.float32),
                                  ((X - offset) / scale).astype(np.float32))
    y = X[:, 0]  # a 1-D column (the CLI's regression targets) keeps its shape
    t = Scaler.fit(method, y)
    np.testing.assert_array_equal(t.transform(y, np.float64), (y - t.offset) / t.scale)
    np.testing.assert_allclose(s.inverse(s.transform(X, np.float64)), X, rtol=1e-14, atol=1e-14)


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


@pytest.mark.parametrize("method", ["standard", "minmax"])
def test_a_column_constant_up_to_rounding_is_constant(method):
    # 0.3 and 0.1 + 0.2: a spread of 5.6e-17 was the scale, and a new 0.31 became 2.5e14.
    X = np.array([[0.3, 1.0], [0.1 + 0.2, 2.0], [0.3, 3.0]])
    scaler = Scaler.fit(method, X)
    assert scaler.scale[0] == 1.0
    assert abs(scaler.transform(np.array([[0.31, 2.0]]), np.float64)[0, 0]) < 0.1


@pytest.mark.parametrize("method", ["standard", "minmax"])
def test_huge_values_get_a_finite_scale(method):
    # A std of inf (the squares overflowed) scaled the column to zeros, and the model
    # file it was saved in was refused by predict.
    X = np.array([[1e160], [2e160], [3e160], [1.5e308]])
    scaler = Scaler.fit(method, X)
    assert np.isfinite(scaler.scale).all() and np.isfinite(scaler.offset).all()
    Z = scaler.transform(X, np.float64)
    want = Scaler.fit(method, X / 1e300).transform(X / 1e300, np.float64)
    np.testing.assert_allclose(Z, want, rtol=1e-12)


def test_a_spread_beyond_float64_is_refused():
    with pytest.raises(ValueError, match="beyond float64's range"):
        Scaler.fit("minmax", np.array([[-1.7e308], [1.7e308]]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("method", ["standard", "minmax"])
def test_a_non_finite_value_is_named(method, bad):
    # A NaN was "column 1's spread is beyond float64's range".
    X = np.array([[1.0, 2.0], [3.0, bad], [5.0, 6.0]])
    with pytest.raises(ValueError, match=rf"X\[1, 1\] is {bad}: the scaling needs finite"):
        Scaler.fit(method, X)


@pytest.mark.parametrize("magnitude", [1e-200, 1e-310])
@pytest.mark.parametrize("method", ["standard", "minmax"])
def test_a_column_of_tiny_values_is_scaled_not_left_as_it_is(method, magnitude):
    """The squares of 1e-200 underflow: std 0, so scale 1, and float32 inputs of 0 (the
    CLI trained on zeros: held-out accuracy 0.5). The overflow's remedy applies."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 2)) * magnitude
    scaler = Scaler.fit(method, X)
    Z = scaler.transform(X, np.float32)
    reference = Scaler.fit(method, X / magnitude).transform(X / magnitude, np.float64)
    np.testing.assert_allclose(Z, reference, rtol=1e-4 if magnitude > 1e-300 else 1e-2,
                               atol=1e-6)


def test_transform_of_no_rows_and_of_other_columns():
    # 0 rows raised "cannot reshape array of size 0"; other columns NumPy's broadcast error.
    scaler = Scaler.fit("standard", np.arange(12.0).reshape(4, 3))
    assert scaler.transform(np.zeros((0, 3)), np.float32).shape == (0, 3)
    assert scaler.inverse(np.zeros((0, 3))).shape == (0, 3)
    for shape in [(5, 4), (5, 1), (3,)]:
        with pytest.raises(ValueError, match="the scaling was fitted to 3"):
            scaler.transform(np.zeros(shape), np.float32)
    one = Scaler.fit("standard", np.arange(4.0))  # a 1-D target's scaler
    assert one.transform(np.arange(4.0), np.float64).shape == (4,)
