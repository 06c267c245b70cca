"""pandas input (issue 9's list): nullable columns (``Float64``, ``Int64``, ``boolean``)
are numbers, with or without ``pd.NA``, and a missing value is named as one.  Before,
``np.asarray`` turned them into object arrays, refused as "dtype object"."""
import numpy as np
import pytest

import fastdnn as fd

pd = pytest.importorskip("pandas")

X = np.array([[0.5, 1.0, 3.0], [1.5, -2.0, 1.0], [2.5, 0.0, -1.0], [3.5, 4.0, 2.0]])
LABELS = np.array([0, 1, 1, 0])


def frame(**dtypes):
    """``X`` as a DataFrame whose columns a, b, c have the given dtypes."""
    return pd.DataFrame({name: pd.array(X[:, j], dtype=dtypes.get(name, "float64"))
                         for j, name in enumerate("abc")})


def fitted(X_in, y_in, loss="cross_entropy"):
    net = fd.MLP([3, 4, 2 if loss == "cross_entropy" else 1], loss=loss, dtype="float64",
                 seed=0)
    net.fit(X_in, y_in, epochs=3, batch_size=2, shuffle=False)
    return net


@pytest.mark.parametrize("dtypes", [dict(a="Float64"), dict(a="Float64", b="Int64"),
                                    dict(a="Float64", b="Float64", c="Float64")])
def test_nullable_feature_columns_train_like_their_numpy_values(dtypes):
    expected = fitted(X, LABELS).get_weights()
    got = fitted(frame(**dtypes), pd.Series(LABELS, dtype="Int64")).get_weights()
    for (W1, b1), (W2, b2) in zip(got, expected):
        np.testing.assert_array_equal(W1, W2)
        np.testing.assert_array_equal(b1, b2)


def test_nullable_targets_and_a_boolean_column():
    flags = pd.Series([True, False, True, True], dtype="boolean")
    net = fitted(X, flags.astype("Int64"))
    assert net.score(X, pd.Series(LABELS, dtype="Int64")) == net.score(X, LABELS)
    regressor = fitted(X, pd.Series(X[:, 0], dtype="Float64"), loss="mse")
    assert regressor.loss(X, pd.array(X[:, 0], dtype="Float64")) == regressor.loss(X, X[:, 0])
    X_flags = frame().assign(c=flags)
    # (np.asarray of a boolean Series is an object array under pandas 1.5: its bools here)
    np.testing.assert_array_equal(net.predict(X_flags),
                                  net.predict(np.c_[X[:, :2], flags.to_numpy(dtype=bool)]))


@pytest.mark.parametrize("where", ["X", "y"])
def test_pd_NA_is_a_missing_value_error_not_object(where):
    X_in, y_in = frame(b="Int64"), pd.Series(LABELS, dtype="Int64")
    if where == "X":
        X_in.loc[2, "b"] = pd.NA
    else:
        y_in[1] = pd.NA
    net = fd.MLP([3, 4, 2], seed=0)
    for call in (lambda: net.fit(X_in, y_in, epochs=1), lambda: net.loss(X_in, y_in)):
        with pytest.raises(ValueError, match=f"^{where} has missing values "):
            call()


def test_text_columns_are_still_refused_as_not_numbers():
    with pytest.raises(TypeError, match="real numbers"):
        fd.MLP([3, 2]).predict(frame().assign(c=["x", "y", "z", "w"]))
