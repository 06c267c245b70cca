"""One table of sizes and implementations for the pytest-benchmark suite.

The same table feeds every ``test_bench_*.py`` file: kernels are benchmarked next to a
plain-NumPy implementation of the same formula, and each smoke run (benchmarks disabled,
the normal ``pytest``) checks the fast path against it, so a benchmark never times a
kernel that computes the wrong thing.

Large sizes, float64 and the compile benchmarks are marked ``bench_full`` and are
deselected unless ``FASTDNN_BENCH_FULL=1`` or ``pytest --bench-full`` (see conftest.py):
the normal test run must stay a few seconds.
"""
import os
from contextlib import contextmanager

import numpy as np
import pytest

FULL_ENV = "FASTDNN_BENCH_FULL"

#: One dense layer (fan_in, fan_out) per size name; nets use [fan_in, fan_out, fan_out, 10].
SIZES = {
    "tiny": (16, 32),
    "small": (64, 128),
    "medium": (784, 1024),
    "large": (4096, 4096),
}
FULL_ONLY_SIZES = {"medium", "large"}
BATCHES = (1, 64, 256)
DTYPES = ("float32", "float64")
FULL_ONLY_DTYPES = {"float64"}
THREADS = (1, 2)

full = pytest.mark.bench_full


def _p(values, full_only=()):
    return [pytest.param(v, marks=full) if v in full_only else v for v in values]


size_param = pytest.mark.parametrize("size", _p(SIZES, FULL_ONLY_SIZES))
batch_param = pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"b{b}")
dtype_param = pytest.mark.parametrize("dtype", _p(DTYPES, FULL_ONLY_DTYPES))
threads_param = pytest.mark.parametrize(
    "threads", THREADS, indirect=True, ids=lambda t: f"t{t}"
)


def full_enabled():
    """True when the full grid was asked for (env var or ``--bench-full``)."""
    return os.environ.get(FULL_ENV, "") not in ("", "0")


@contextmanager
def limit_threads(n):
    """Run with ``n`` threads in Numba's pool and in every BLAS pool (threadpoolctl)."""
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


def net_sizes(size, k=10):
    """Layer sizes of the benchmark net for ``size``: two hidden layers of fan_out."""
    fan_in, fan_out = SIZES[size]
    return [fan_in, fan_out, fan_out, k]


def epoch_samples(size, batch):
    """Samples per benchmark epoch: ~2048, capped at 64 steps for the wide nets."""
    base = {"tiny": 2048, "small": 2048, "medium": 2048, "large": 512}[size]
    if size in FULL_ONLY_SIZES:
        base = min(base, 64 * batch)
    return max(base, batch)


def data(n, d, k, dtype, rng=None):
    """X ~ N(0, 1) (n, d) in ``dtype`` and int64 labels in 0..k-1."""
    rng = rng or np.random.default_rng(0)
    X = rng.standard_normal((n, d)).astype(dtype)
    y = rng.integers(0, k, n).astype(np.int64)
    return X, y


# ---- plain-NumPy twins of the kernels (the oracle column of the table) ----------
def np_dense_forward(A_prev, W, b, relu, Z, A):
    """``Z = A_prev @ W + b``, ``A = relu(Z)``."""
    np.matmul(A_prev, W, out=Z)
    Z += b
    np.maximum(Z, 0, out=A) if relu else A.__setitem__(Ellipsis, Z)


def np_dense_backward(delta, A_prev, W, dW, db, delta_prev):
    """``dW = A_prev.T @ delta``, ``db = delta.sum(0)``, ``delta_prev = delta @ W.T``."""
    np.matmul(A_prev.T, delta, out=dW)
    np.sum(delta, axis=0, out=db)
    np.matmul(delta, W.T, out=delta_prev)


def np_softmax_cross_entropy(Z, T, G):
    """Mean of ``logsumexp(z) - z[y]``; ``G = (softmax(Z) - onehot(y)) / n``."""
    n = Z.shape[0]
    y = T[:, 0].astype(np.int64)
    zmax = Z.max(axis=1, keepdims=True)
    np.exp(Z - zmax, out=G)
    s = G.sum(axis=1, keepdims=True)
    loss = float(np.mean(zmax[:, 0] + np.log(s[:, 0]) - Z[np.arange(n), y]))
    G /= s * n
    G[np.arange(n), y] -= 1.0 / n
    return loss


def rtol(dtype):
    """Comparison tolerance against the NumPy twin."""
    return 2e-4 if np.dtype(dtype) == np.float32 else 1e-10
