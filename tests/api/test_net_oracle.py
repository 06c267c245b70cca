"""net.forward, net.loss and net.gradients against the plain-NumPy oracle in naive.py.

The oracle runs in float64 on exactly the net's weights and inputs (float32 ones
widened without rounding), so any difference is rounding inside fastdnn.

Tolerances, relative to the largest entry of the array being compared (entry-wise
relative error is meaningless for entries that cancel to near zero):

* float64: 1e-12 (a few hundred ulps; the oracle sums in a different order);
* float32: 1e-5 (about 100 ulps: sums of up to 33 terms over up to 3 layers, and
  float32 transcendental functions).
"""

import numpy as np
import pytest

import naive
from support import assert_close, build

ACTIVATIONS = naive.ACTIVATION_NAMES
DTYPES = ("float32", "float64")
SIZES = (1, 7, 33)
RTOL = {"float32": 1e-5, "float64": 1e-12}
N_IN = 5

HEADS, HEAD_IDS = naive.HEADS, naive.HEAD_IDS


def sizes_for(depth, width, k):
    return [N_IN] + [width] * depth + [k]


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_forward(activation, dtype, size, depth, make_data):
    X, y = make_data("mse", size, N_IN, 2, dtype)
    net, params = build(sizes_for(depth, size, 2), activation, "mse", dtype)
    out = net.forward(X)
    assert out.shape == (size, 2)
    assert out.dtype == np.dtype(dtype)
    assert_close(out, naive.logits(params, activation, X), RTOL[dtype])


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_loss_and_gradients(activation, head, dtype, size, depth, make_data):
    loss, k = head
    X, y = make_data(loss, size, N_IN, k, dtype)
    net, params = build(sizes_for(depth, size, k), activation, loss, dtype)
    want_loss, want_grads = naive.gradients(params, activation, loss, X, y)

    got_loss = net.loss(X, y)
    assert isinstance(got_loss, float)
    assert got_loss == pytest.approx(want_loss, rel=RTOL[dtype], abs=1e-300)

    got_grads = net.gradients(X, y)
    assert len(got_grads) == len(params)
    for (dW, db), (W, b), (want_dW, want_db) in zip(got_grads, params, want_grads):
        assert dW.shape == W.shape and db.shape == b.shape
        assert dW.dtype == np.dtype(dtype) and db.dtype == np.dtype(dtype)
        assert_close(dW, want_dW, RTOL[dtype])
        assert_close(db, want_db, RTOL[dtype])


@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_model_without_hidden_layers(head, dtype, make_data):
    loss, k = head
    X, y = make_data(loss, 7, N_IN, k, dtype)
    net, params = build([N_IN, k], "relu", loss, dtype)
    assert net.activations == []
    want_loss, want_grads = naive.gradients(params, [], loss, X, y)
    assert_close(net.forward(X), naive.logits(params, [], X), RTOL[dtype])
    assert net.loss(X, y) == pytest.approx(want_loss, rel=RTOL[dtype])
    for (dW, db), (want_dW, want_db) in zip(net.gradients(X, y), want_grads):
        assert_close(dW, want_dW, RTOL[dtype])
        assert_close(db, want_db, RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_activation_per_hidden_layer(dtype, make_data):
    acts = ["gelu", "relu", "sigmoid", "elu", "silu", "tanh", "softplus", "leaky_relu", "identity"]
    loss, k = "cross_entropy", 3
    X, y = make_data(loss, 7, N_IN, k, dtype)
    net, params = build([N_IN] + [7] * len(acts) + [k], acts, loss, dtype)
    assert net.activations == acts
    want_loss, want_grads = naive.gradients(params, acts, loss, X, y)
    assert_close(net.forward(X), naive.logits(params, acts, X), RTOL[dtype])
    assert net.loss(X, y) == pytest.approx(want_loss, rel=RTOL[dtype])
    for (dW, db), (want_dW, want_db) in zip(net.gradients(X, y), want_grads):
        assert_close(dW, want_dW, RTOL[dtype])
        assert_close(db, want_db, RTOL[dtype])


@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_predict_proba_predict_score(head, dtype, make_data):
    loss, k = head
    n = 33
    X, y = make_data(loss, n, N_IN, k, dtype)
    net, params = build([N_IN, 7, k], "tanh", loss, dtype)
    Z = naive.logits(params, "tanh", X)
    if loss in ("mse", "poisson"):
        want = Z if loss == "mse" else np.exp(Z)  # poisson predicts the means exp(z)
        pred = net.predict(X)
        # The contract leaves (n,) vs (n, 1) open for a single output.
        assert pred.shape == Z.shape or (k == 1 and pred.shape == (n,))
        assert pred.dtype == np.dtype(dtype)
        assert_close(pred.reshape(Z.shape), want, RTOL[dtype])
        if k == 1:  # R^2 = 1 - SS_res / SS_tot
            r2 = 1.0 - np.sum((y - want[:, 0]) ** 2) / np.sum((y - y.mean()) ** 2)
            assert net.score(X, y) == pytest.approx(r2, rel=1e-4 if dtype == "float32" else 1e-10)
        with pytest.raises(ValueError, match=f"this net uses '{loss}'"):
            net.predict_proba(X)
        return
    if loss == "cross_entropy":
        P = np.exp(Z - Z.max(axis=1, keepdims=True))
        P /= P.sum(axis=1, keepdims=True)
        labels = np.argmax(Z, axis=1)
    else:
        P = naive.sigmoid(Z)
        labels = (Z > 0).astype(np.int64)
        y = (y > 0.5).astype(np.int64)  # hard labels, so that accuracy is defined
    proba = net.predict_proba(X)
    if loss == "binary_cross_entropy" and k == 1:
        # One sigmoid output comes back as two columns, (1 - p, p), as in scikit-learn.
        P = np.hstack([1.0 - P, P])
    assert proba.shape == P.shape
    assert_close(proba, P, RTOL[dtype])
    # Logits within rounding of a tie / of 0 would make a label ambiguous; none occur
    # with this seed, and the comparison below would show them.
    pred = net.predict(X)
    assert pred.size == labels.size
    np.testing.assert_array_equal(pred.reshape(labels.shape), labels)
    if loss == "cross_entropy" or k == 1:  # multi-label accuracy is not defined by the contract
        assert net.score(X, y) == pytest.approx(np.mean(labels.ravel() == y))


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_streams_in_chunks(dtype, make_data, monkeypatch):
    """A chunk size that does not divide n makes forward/predict cross chunk edges."""
    from fastdnn import config

    monkeypatch.setattr(config, "PREDICT_CHUNK", 4)
    X, y = make_data("cross_entropy", 33, N_IN, 3, dtype)
    net, params = build([N_IN, 7, 3], "relu", "cross_entropy", dtype)
    Z = naive.logits(params, "relu", X)
    assert_close(net.forward(X), Z, RTOL[dtype])
    np.testing.assert_array_equal(net.predict(X), np.argmax(Z, axis=1))


@pytest.mark.parametrize("path", ["loops", "blas"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["relu", "gelu", "sigmoid"])
def test_both_dense_paths(activation, dtype, path, make_data, monkeypatch):
    """Force the hand-written loop kernels (threshold huge) or BLAS (threshold 0)."""
    from fastdnn import config

    monkeypatch.setattr(config, "SMALL_GEMM_MACS", 10**12 if path == "loops" else 0)
    X, y = make_data("cross_entropy", 33, N_IN, 3, dtype)
    net, params = build([N_IN, 33, 7, 3], activation, "cross_entropy", dtype)
    want_loss, want_grads = naive.gradients(params, activation, "cross_entropy", X, y)
    assert_close(net.forward(X), naive.logits(params, activation, X), RTOL[dtype])
    assert net.loss(X, y) == pytest.approx(want_loss, rel=RTOL[dtype])
    for (dW, db), (want_dW, want_db) in zip(net.gradients(X, y), want_grads):
        assert_close(dW, want_dW, RTOL[dtype])
        assert_close(db, want_db, RTOL[dtype])
