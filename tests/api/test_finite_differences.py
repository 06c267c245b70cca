"""net.gradients against central finite differences of net.loss, in float64.

Independent of naive.py: only the net itself is used, through get_weights /
set_weights / loss. For every parameter theta_j,

    (L(theta + eps e_j) - L(theta - eps e_j)) / (2 eps)

with eps = 1e-6 has truncation error ~eps^2 * L''' (~1e-12) and rounding error
~1e-16 * |L| / eps (~1e-10 * |L|). We require

    |fd - grad| <= 1e-5 * |grad| + 1e-8 * max(1, |L|),

i.e. 1e-5 relative, with an absolute floor two orders above the rounding error for
components that are nearly zero.

relu and leaky_relu have a kink at 0; with random inputs and biases no
pre-activation lies within eps of it (probability ~1e-4 per net), so the check is
valid for them too.
"""

import numpy as np
import pytest

import fastdnn as fd
import naive

EPS = 1e-6
RTOL = 1e-5
ATOL = 1e-8

HEADS, HEAD_IDS = naive.HEADS, naive.HEAD_IDS


def finite_difference_gradients(net, X, y):
    params = [(W.copy(), b.copy()) for W, b in net.get_weights()]
    grads = []
    for i, (W, b) in enumerate(params):
        layer = []
        for arr in (W, b):
            g = np.empty_like(arr)
            for idx in np.ndindex(arr.shape):
                old = arr[idx]
                arr[idx] = old + EPS
                net.set_weights(params)
                up = net.loss(X, y)
                arr[idx] = old - EPS
                net.set_weights(params)
                down = net.loss(X, y)
                arr[idx] = old
                g[idx] = (up - down) / (2 * EPS)
            layer.append(g)
        grads.append(tuple(layer))
    net.set_weights(params)
    return grads


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
@pytest.mark.parametrize("activation", naive.ACTIVATION_NAMES)
def test_gradients_match_finite_differences(activation, head, depth, make_data):
    loss, k = head
    n, n_in, width = 5, 3, 4
    X, y = make_data(loss, n, n_in, k, np.float64)
    net = fd.MLP([n_in] + [width] * depth + [k], activation=activation, loss=loss,
                 dtype="float64", seed=3)
    # Random biases, so relu units are not dead or pinned at the kink by a zero bias.
    bias_rng = np.random.default_rng(11)
    net.set_weights([(W, bias_rng.normal(scale=0.5, size=b.shape)) for W, b in net.get_weights()])

    value = net.loss(X, y)
    atol = ATOL * max(1.0, abs(value))
    analytic = net.gradients(X, y)
    numeric = finite_difference_gradients(net, X, y)
    for layer, ((dW, db), (fdW, fdb)) in enumerate(zip(analytic, numeric)):
        np.testing.assert_allclose(dW, fdW, rtol=RTOL, atol=atol, err_msg=f"dW of layer {layer}")
        np.testing.assert_allclose(db, fdb, rtol=RTOL, atol=atol, err_msg=f"db of layer {layer}")
    # The gradient must not be trivially zero (that would make the check vacuous).
    assert max(np.abs(dW).max() for dW, _ in analytic) > 1e-4


@pytest.mark.parametrize("path", ["gradients", "fit"])
def test_a_large_batchs_float32_bias_gradient_is_summed_accurately(path):
    """The bias gradient was a float32 running sum over the rows: m * eps off (0.9% on
    a million rows, ~0.1% here); NumPy's and PyTorch's sums are pairwise.  Equal rows:
    the exact gradient of the output bias is -2, each row's term fl32(-2/m)."""
    m = 120_000
    X, y = np.zeros((m, 4), np.float32), np.ones(m, np.float32)
    net = fd.MLP([4, 8, 1], activation="tanh", loss="mse", dtype="float32", seed=0)
    zero = [(np.zeros((4, 8)), np.zeros(8)), (np.zeros((8, 1)), np.zeros(1))]
    net.set_weights(zero)
    if path == "gradients":
        db = net.gradients(X, y)[1][1][0]
    else:  # one step of the training kernels: b = 0 - lr * db
        net.fit(X, y, epochs=1, batch_size=m, optimizer=fd.SGD(lr=1.0), shuffle=False)
        db = -net.get_weights()[1][1][0]
    assert abs(float(db) / -2.0 - 1.0) < 4 * 2.0 ** -24
