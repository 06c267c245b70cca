"""Kernel benchmarks: one dense layer forward and backward, and softmax-cross-entropy.

Each kernel is timed next to a NumPy implementation of the same formula (``impl``),
written with ``out=`` buffers as the kernel is, in one benchmark group per shape, so
``--benchmark-enable`` prints the two side by side. Each test then checks the result
against the float64 oracle in ``tests/naive.py``, so a benchmark never times a kernel
(or an opponent) that computes the wrong thing. ``test_dense_crossover`` (full only) times the
loop and BLAS paths over a sweep of product sizes, to re-tune
``fastdnn.config.SMALL_GEMM_MACS``.
"""
import numpy as np
import pytest

import naive
from bench_grid import (
    assert_close,
    batch_param,
    dtype_param,
    full,
    size_param,
    threads_param,
)
from cases import SIZES
from fastdnn import config
from fastdnn.kernels import spec
from fastdnn.kernels.cpu import blas, dense, losses

IMPLS = ("fastdnn", "numpy")
impl_param = pytest.mark.parametrize("impl", IMPLS)


@pytest.fixture(scope="session", autouse=True)
def blas_ready():
    """Resolve the BLAS symbols and start Numba's pool before any direct kernel call
    (the MLP backend does this itself; these benchmarks skip the backend), for layers
    as wide as the cases' (the Haswell instance, on Zen 4, loads for wide ones)."""
    blas.prepare([width for k_n in SIZES.values() for width in k_n])


def auto_blas(m, k, n):
    """The path the net's layout picks for an ``m x k @ k x n`` product."""
    return m * k * n >= config.SMALL_GEMM_MACS


def layer(size, batch, dtype, seed=0):
    rng = np.random.default_rng(seed)
    k, n = SIZES[size]
    A_prev = rng.standard_normal((batch, k)).astype(dtype)
    W = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    return A_prev, W, b


# ---- the NumPy opponents: same formula, same out= buffers as the kernels ----------
def np_dense_forward(A_prev, W, b, Z, A):
    """``Z = A_prev @ W + b``, ``A = relu(Z)``."""
    np.matmul(A_prev, W, out=Z)
    Z += b
    np.maximum(Z, 0, out=A)


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


def f64(*arrays):
    return [np.asarray(a, dtype=np.float64) for a in arrays]


@threads_param
@dtype_param
@batch_param
@size_param
@impl_param
def test_dense_forward(benchmark, impl, size, batch, dtype, threads):
    A_prev, W, b = layer(size, batch, dtype)
    Z = np.full((batch, W.shape[1]), np.nan, dtype)
    A = np.full_like(Z, np.nan)
    benchmark.group = f"dense_forward {size} batch={batch} {dtype} threads={threads}"
    if impl == "fastdnn":
        path = auto_blas(batch, *W.shape)
        dense.dense_layer(A_prev, W, b, spec.RELU, path, Z, A)  # compile / load untimed
        benchmark(dense.dense_layer, A_prev, W, b, spec.RELU, path, Z, A)
    else:
        benchmark(np_dense_forward, A_prev, W, b, Z, A)
    want_Z = naive.dense_forward(*f64(A_prev, W, b))
    assert_close(Z, want_Z, dtype)
    assert_close(A, naive.relu(want_Z), dtype)


@threads_param
@dtype_param
@batch_param
@size_param
@impl_param
def test_dense_backward(benchmark, impl, size, batch, dtype, threads):
    A_prev, W, _ = layer(size, batch, dtype)
    delta = np.random.default_rng(1).standard_normal((batch, W.shape[1])).astype(dtype)
    dW = np.full_like(W, np.nan)
    db = np.full(W.shape[1], np.nan, dtype)
    delta_prev = np.full_like(A_prev, np.nan)
    benchmark.group = f"dense_backward {size} batch={batch} {dtype} threads={threads}"
    if impl == "fastdnn":
        path = auto_blas(batch, *W.shape)
        dense.dense_backward(delta, A_prev, W, path, dW, db, delta_prev, True)
        benchmark(dense.dense_backward, delta, A_prev, W, path, dW, db, delta_prev, True)
    else:
        benchmark(np_dense_backward, delta, A_prev, W, dW, db, delta_prev)
    want = naive.dense_backward(*f64(A_prev, W, delta))
    for got, w in zip((dW, db, delta_prev), want):
        assert_close(got, w, dtype)


@dtype_param
@batch_param
@size_param
@impl_param
def test_softmax_cross_entropy(benchmark, impl, size, batch, dtype):
    """Fused loss + gradient over ``fan_out`` classes (single-threaded in both)."""
    rng = np.random.default_rng(2)
    k = SIZES[size][1]
    Z = (3 * rng.standard_normal((batch, k))).astype(dtype)
    y = rng.integers(0, k, batch)
    T = spec.pack_targets(y.reshape(-1, 1), None, dtype)  # labels, then unit sample weights
    G = np.full_like(Z, np.nan)
    benchmark.group = f"softmax_cross_entropy {size} batch={batch} {dtype}"
    if impl == "fastdnn":
        losses.softmax_cross_entropy(Z, T, G)
        loss = benchmark(losses.softmax_cross_entropy, Z, T, G)
    else:
        loss = benchmark(np_softmax_cross_entropy, Z, T, G)
    want_loss, want_G = naive.cross_entropy(Z, y)
    assert_close(loss, want_loss, dtype)
    assert_close(G, want_G, dtype)


# Layers for the loop/BLAS sweep: with batches 1-256, products of 512 to 16.8 M
# multiply-adds. config.SMALL_GEMM_MACS (set from whole epochs, see its comment) may sit
# below the smallest of them: add smaller shapes here to bracket it when re-tuning.
CROSSOVER = [(16, 32), (32, 64), (64, 64), (64, 128), (128, 128), (256, 256)]


@full
@threads_param
@pytest.mark.parametrize("path", ["loops", "blas"])
@pytest.mark.parametrize("batch", (1, 16, 64, 256), ids=lambda b: f"b{b}")
@pytest.mark.parametrize("shape", CROSSOVER, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("dtype", ("float32",))
def test_dense_crossover(benchmark, path, shape, batch, dtype, threads):
    """Forward + backward of one layer by each path, to place SMALL_GEMM_MACS."""
    rng = np.random.default_rng(3)
    k, n = shape
    A_prev = rng.standard_normal((batch, k)).astype(dtype)
    W = rng.standard_normal((k, n)).astype(dtype)
    b = np.zeros(n, dtype)
    Z, A = np.empty((batch, n), dtype), np.empty((batch, n), dtype)
    dW, db, dprev = np.empty_like(W), np.empty_like(b), np.empty_like(A_prev)
    use_blas = path == "blas"
    benchmark.group = f"crossover {k}x{n} batch={batch} macs={batch * k * n} t={threads}"
    benchmark.extra_info["macs"] = batch * k * n

    def fwd_bwd():
        dense.dense_layer(A_prev, W, b, spec.RELU, use_blas, Z, A)
        dense.dense_backward(A, A_prev, W, use_blas, dW, db, dprev, True)

    fwd_bwd()
    benchmark(fwd_bwd)
    # Both paths compute the same layer: the delta fed back is A itself.
    want_Z = naive.dense_forward(*f64(A_prev, W, b))
    assert_close(A, naive.relu(want_Z), dtype)
    assert_close(dW, naive.dense_backward(*f64(A_prev, W, A))[0], dtype)
