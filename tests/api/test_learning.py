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


@pytest.mark.slow
def test_digits_held_out_accuracy():
    assert digits_accuracy(SEED) >= 0.97
