"""End-to-end learning: the nets must actually learn the textbook problems.

Each problem is a function of the seed (which seeds the net's init and sampling, and
the digits split). The thresholds are not tuned to one lucky seed: with the recipes
below, seeds 0-5 all gave 100% on XOR (tanh and relu) and 8-bit parity, R^2 = 1.000
on the zig-zag, and 97.8-98.6% held-out accuracy on digits. SEED fixes the one the
suite runs.
"""

import numpy as np
import pytest

import fastdnn as fd
from fastdnn.datasets import make_parity, make_zigzag

SEED = 0


def xor_accuracy(activation, seed):
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    y = np.array([0, 1, 1, 0])
    net = fd.MLP([2, 8, 2], activation=activation, seed=seed)
    net.fit(X, y, epochs=300, batch_size=4, optimizer=fd.Adam(lr=0.05))
    return net.score(X, y)


def parity_accuracy(seed, n_bits=8):
    """Every n-bit vector (+-1 coded) and its parity, trained with cross-entropy."""
    X, y = make_parity(n_bits, signed=True, dtype=np.float64)
    net = fd.MLP([n_bits, 64, 64, 2], activation="relu", loss="cross_entropy", seed=seed)
    net.fit(X, y, epochs=300, batch_size=16, optimizer=fd.Adam(lr=3e-3))
    return net.score(X, y)


def zigzag_r2(seed):
    """The tent map composed 3 times (8 linear pieces) on 257 grid points of [0, 1]."""
    x, y = make_zigzag(257, depth=3, dtype=np.float64)
    # Inputs centred on [-1, 1]: with zero initial biases every first-layer kink
    # starts at input 0, which for raw [0, 1] inputs is the domain's edge (R^2 was
    # 0.44-1.0 over five seeds that way, with a wider net and more epochs).
    X = 2.0 * x - 1.0
    net = fd.MLP([1, 32, 32, 32, 32, 1], activation="relu", loss="mse", seed=seed)
    net.fit(X, y, epochs=1000, batch_size=16, optimizer=fd.Adam(lr=3e-3),
            schedule=fd.CosineDecay())
    return net.score(X, y)


def poisson_counts(seed, n=4000):
    """Counts drawn from a log-linear model, ``y ~ Poisson(exp(x . beta + 0.3))``, with
    the means ``mu`` that drew them (from 0.1 to ~17 over the inputs)."""
    rng = np.random.default_rng(1000 + seed)
    X = rng.uniform(-1.0, 1.0, size=(n, 3))
    mu = np.exp(X @ np.array([1.0, -0.7, 0.4]) + 0.3)
    return X, rng.poisson(mu), mu


def poisson_fit(seed):
    """A tanh net fitted with the Poisson loss on 3000 counts; returns the net and the
    other 1000 rows' inputs, counts and true means."""
    X, y, mu = poisson_counts(seed)
    net = fd.MLP([3, 16, 1], activation="tanh", loss="poisson", seed=seed)
    net.fit(X[:3000], y[:3000], epochs=100, batch_size=32, optimizer=fd.Adam(lr=0.01),
            schedule=fd.CosineDecay())
    return net, X[3000:], y[3000:], mu[3000:]


def digits_accuracy(seed):
    """sklearn's 8x8 digits, pixels / 16, a stratified 80/20 split; held-out accuracy."""
    datasets = pytest.importorskip("sklearn.datasets")
    model_selection = pytest.importorskip("sklearn.model_selection")
    X, y = datasets.load_digits(return_X_y=True)
    X = X / 16.0
    X_train, X_test, y_train, y_test = model_selection.train_test_split(
        X, y, test_size=0.2, random_state=seed, stratify=y
    )
    net = fd.MLP([64, 256, 10], activation="relu", loss="cross_entropy", seed=seed)
    net.fit(X_train, y_train, epochs=40, batch_size=32,
            optimizer=fd.AdamW(lr=2e-3, weight_decay=1e-2), schedule=fd.CosineDecay())
    return net.score(X_test, y_test)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_xor(activation):
    assert xor_accuracy(activation, SEED) == 1.0


@pytest.mark.slow
def test_parity_8_bits():
    assert parity_accuracy(SEED) == 1.0


@pytest.mark.slow
def test_zigzag_regression():
    assert zigzag_r2(SEED) > 0.95


def test_poisson_regression_learns_a_log_linear_model():
    """Held out, the predicted means track the true ones; the loss comes within 0.02 of
    the true means' (its floor; a constant mean is 0.31-0.45 above it), and R^2 against
    the counts within 0.03 of the true means' (the counts' noise is irreducible).  Seeds
    0-5: correlation of the log-means >= 0.994, median error 2.7-5.8%, loss <= 0.007
    and R^2 <= 0.012 short."""
    net, X, y, mu = poisson_fit(SEED)
    pred = net.predict(X)
    assert pred.shape == mu.shape and (pred > 0).all()
    np.testing.assert_allclose(pred, np.exp(net.forward(X)[:, 0]), rtol=1e-6)
    assert np.corrcoef(np.log(pred), np.log(mu))[0, 1] > 0.99
    assert np.median(np.abs(pred / mu - 1)) < 0.1
    assert net.loss(X, y) < np.mean(mu - y * np.log(mu)) + 0.02
    best_r2 = 1 - np.sum((y - mu) ** 2) / np.sum((y - y.mean()) ** 2)
    assert net.score(X, y) > best_r2 - 0.03


@pytest.mark.slow
def test_digits_held_out_accuracy():
    assert digits_accuracy(SEED) >= 0.97
