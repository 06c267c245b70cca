"""The pytest-benchmark grid, built from the case table in ``tests/cases.py``.

Sizes, batches, dtypes, threads and the benchmark nets and data all come from that
table (``conftest.py`` puts ``tests/`` on ``sys.path``); this module only turns them
into ``pytest.mark.parametrize`` marks. What the table does not list as a smoke case
(``SMOKE_SIZES``, ``SMOKE_DTYPES``) is marked ``bench_full`` and deselected unless
``FASTDNN_BENCH_FULL=1`` or ``pytest --bench-full`` (see conftest.py): the normal test
run must stay a few seconds.
"""
import os
from contextlib import contextmanager

import numpy as np
import pytest

import naive
from cases import BATCHES, DTYPES, SIZES, SMOKE_DTYPES, SMOKE_SIZES, THREADS

FULL_ENV = "FASTDNN_BENCH_FULL"

full = pytest.mark.bench_full


def _params(values, smoke):
    return [v if v in smoke else pytest.param(v, marks=full) for v in values]


size_param = pytest.mark.parametrize("size", _params(SIZES, SMOKE_SIZES))
batch_param = pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"b{b}")
dtype_param = pytest.mark.parametrize("dtype", _params(DTYPES, SMOKE_DTYPES))
threads_param = pytest.mark.parametrize(
    "threads", THREADS, indirect=True, ids=lambda t: f"t{t}"
)


def full_enabled():
    """True when the full grid was asked for (env var or ``--bench-full``)."""
    return os.environ.get(FULL_ENV, "") not in ("", "0")


@contextmanager
def limit_threads(n):
    """Run with ``n`` threads in Numba's pool and in every BLAS pool (threadpoolctl).

    Not :func:`fastdnn.kernels.cpu.threads.limit_threads`: that one keeps BLAS at one
    thread, while here NumPy's BLAS (the ``numpy`` column) gets the same ``n``.
    """
    import numba

    old = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # measure anyway, with the BLAS default
            yield
        else:
            with threadpool_limits(limits=n):
                yield
    finally:
        numba.set_num_threads(old)


def rtol(dtype):
    """Tolerance of a result in ``dtype`` against the float64 oracle (tests/naive.py).

    float32: sums of up to 4096 products (the "large" layer) round to a few 1e-6
    relative; 2e-4 leaves room and still fails on any wrong formula.
    """
    return 2e-4 if np.dtype(dtype) == np.float32 else 1e-10


def assert_close(got, want, dtype, atol=0.0):
    """``got`` (in ``dtype``) equals the oracle ``want`` within :func:`rtol`, with an
    absolute floor of ``rtol`` times ``want``'s largest entry (entries near 0 keep
    fewer digits) plus ``atol``."""
    want = np.asarray(want, dtype=np.float64)
    scale = float(np.abs(want).max(initial=0.0))
    np.testing.assert_allclose(got, want, rtol=rtol(dtype), atol=rtol(dtype) * scale + atol)


def kink_free_rows(weights, activation, X, rtol=1e-5):
    """The rows of ``X`` whose hidden pre-activations all lie clear of a kink of
    ``activation`` (ReLU's at 0): ``|Z| > rtol * max |Z|`` per layer, in float64.

    A float32 pre-activation within rounding of 0 takes the other side of the float64
    oracle's mask: at medium, batch 256, one of 2048 units (Z = -3.6e-7) put a column of
    dW1 1.9e-2 off, on correct code.  The checks compare these rows only; the timed
    calls take them all.
    """
    if activation not in ("relu", "leaky_relu"):
        return np.ones(len(X), dtype=bool)
    Zs, _ = naive.forward(weights, activation, X)
    keep = np.ones(len(X), dtype=bool)
    for Z in Zs[:-1]:
        keep &= (np.abs(Z) > rtol * np.abs(Z).max()).all(axis=1)
    return keep
