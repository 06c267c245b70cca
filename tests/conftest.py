"""Shared fixtures: a seeded generator and small random problems.

Kept generic on purpose: anything specific to one test file belongs in that file.
"""

import os
import sys

import numpy as np
import pytest

# naive.py and cases.py sit here; the tests live in subfolders (tests/api, tests/kernels/...).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support import make_targets  # noqa: E402  (after the path it needs)


@pytest.fixture
def rng():
    """A fresh seeded generator per test, so no test depends on the order tests run in."""
    return np.random.default_rng(20240613)


@pytest.fixture
def make_data(rng):
    """Factory: ``make_data(loss, n, n_in, k, dtype)`` -> (X, y), X standard normal."""

    def make(loss, n, n_in, k, dtype=np.float64):
        X = rng.normal(size=(n, n_in)).astype(dtype)
        return X, make_targets(loss, n, k, rng)

    return make
