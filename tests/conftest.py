"""Shared fixtures: a seeded generator and small random problems.

Kept generic on purpose: anything specific to one test file belongs in that file.
"""

import os
import sys

import numpy as np
import pytest

# naive.py and cases.py sit here; the tests live in subfolders (tests/api, tests/kernels/...).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def rng():
    """A fresh seeded generator per test, so no test depends on the order tests run in."""
    return np.random.default_rng(20240613)


def make_targets(loss, n, k, rng):
    """Random targets for ``loss`` with ``k`` outputs.

    cross_entropy: int64 labels in 0..k-1; mse: normal values; binary_cross_entropy:
    soft targets in [0, 1]. With ``k == 1`` the regression / binary targets are 1-D,
    shape (n,), as the contract allows.
    """
    if loss == "cross_entropy":
        return rng.integers(0, k, size=n).astype(np.int64)
    shape = (n,) if k == 1 else (n, k)
    if loss == "mse":
        return rng.normal(size=shape)
    if loss == "binary_cross_entropy":
        return rng.uniform(0.0, 1.0, size=shape)
    raise ValueError(f"unknown loss {loss!r}")


@pytest.fixture
def make_data(rng):
    """Factory: ``make_data(loss, n, n_in, k, dtype)`` -> (X, y), X standard normal."""

    def make(loss, n, n_in, k, dtype=np.float64):
        X = rng.normal(size=(n, n_in)).astype(dtype)
        return X, make_targets(loss, n, k, rng)

    return make
