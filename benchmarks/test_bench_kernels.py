"""Kernel benchmarks: one dense layer forward and backward, and softmax-cross-entropy.

Each kernel is timed next to its plain-NumPy twin (``impl``), in one benchmark group
per shape, so ``--benchmark-enable`` prints the two side by side. The smoke run checks
the kernel against the twin. ``test_dense_crossover`` (full only) times the loop and
BLAS paths on both sides of ``fastdnn.config.SMALL_GEMM_MACS``, to re-tune it.
"""
import numpy as np
import pytest

from bench_cases import (
    SIZES,
    batch_param,
    dtype_param,
    full,
    np_dense_backward,
    np_dense_forward,
    np_softmax_cross_entropy,
    rtol,
    size_param,
    threads_param,
)

dense = pytest.importorskip("fastdnn.dense")
losses = pytest.importorskip("fastdnn.losses")
activations = pytest.importorskip("fastdnn.activations")
config = pytest.importorskip("fastdnn.config")

IMPLS = ("fastdnn", "numpy")
impl_param = pytest.mark.parametrize("impl", IMPLS)
RELU = activations.ACTIVATIONS["relu"]


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


def _check(got, want, dtype):
    scale = max(float(np.abs(want).max()), 1.0)
    np.testing.assert_allclose(got, want, rtol=rtol(dtype), atol=rtol(dtype) * scale)


@threads_param
@dtype_param
@batch_param
@size_param
@impl_param
def test_dense_forward(benchmark, impl, size, batch, dtype, threads):
    A_prev, W, b = layer(size, batch, dtype)
    Z = np.empty((batch, W.shape[1]), dtype)
    A = np.empty_like(Z)
    benchmark.group = f"dense_forward {size} batch={batch} {dtype} threads={threads}"
    if impl == "fastdnn":
        blas = auto_blas(batch, *W.shape)
        dense.dense_forward(A_prev, W, b, RELU, blas, Z, A)  # compile / load outside timing
        benchmark(dense.dense_forward, A_prev, W, b, RELU, blas, Z, A)
    else:
        benchmark(np_dense_forward, A_prev, W, b, True, Z, A)
    Z2, A2 = np.empty_like(Z), np.empty_like(A)
    np_dense_forward(A_prev, W, b, True, Z2, A2)
    _check(A, A2, dtype)


@threads_param
@dtype_param
@batch_param
@size_param
@impl_param
def test_dense_backward(benchmark, impl, size, batch, dtype, threads):
    A_prev, W, _ = layer(size, batch, dtype)
    delta = np.random.default_rng(1).standard_normal((batch, W.shape[1])).astype(dtype)
    dW, db = np.empty_like(W), np.empty(W.shape[1], dtype)
    delta_prev = np.empty_like(A_prev)
    benchmark.group = f"dense_backward {size} batch={batch} {dtype} threads={threads}"
    if impl == "fastdnn":
        blas = auto_blas(batch, *W.shape)
        dense.dense_backward(delta, A_prev, W, blas, dW, db, delta_prev)
        benchmark(dense.dense_backward, delta, A_prev, W, blas, dW, db, delta_prev)
    else:
        benchmark(np_dense_backward, delta, A_prev, W, dW, db, delta_prev)
    want = [np.empty_like(dW), np.empty_like(db), np.empty_like(delta_prev)]
    np_dense_backward(delta, A_prev, W, *want)
    for got, w in zip((dW, db, delta_prev), want):
        _check(got, w, dtype)


@dtype_param
@batch_param
@size_param
@impl_param
def test_softmax_cross_entropy(benchmark, impl, size, batch, dtype):
    """Fused loss + gradient over ``fan_out`` classes (single-threaded in both)."""
    rng = np.random.default_rng(2)
    k = SIZES[size][1]
    Z = (3 * rng.standard_normal((batch, k))).astype(dtype)
    T = rng.integers(0, k, (batch, 1)).astype(dtype)
    G = np.empty_like(Z)
    benchmark.group = f"softmax_cross_entropy {size} batch={batch} {dtype}"
    if impl == "fastdnn":
        losses.loss_grad(Z, T, losses.LOSSES["cross_entropy"], G)
        loss = benchmark(losses.loss_grad, Z, T, losses.LOSSES["cross_entropy"], G)
    else:
        loss = benchmark(np_softmax_cross_entropy, Z, T, G)
    G2 = np.empty_like(G)
    want = np_softmax_cross_entropy(Z, T, G2)
    assert abs(loss - want) <= rtol(dtype) * max(1.0, abs(want))
    _check(G, G2, dtype)


# Shapes around the loop/BLAS crossover (m * k * n near SMALL_GEMM_MACS = 262144).
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
    blas = path == "blas"
    benchmark.group = f"crossover {k}x{n} batch={batch} macs={batch * k * n} t={threads}"
    benchmark.extra_info["macs"] = batch * k * n

    def fwd_bwd():
        dense.dense_forward(A_prev, W, b, RELU, blas, Z, A)
        dense.dense_backward(A, A_prev, W, blas, dW, db, dprev)

    fwd_bwd()
    benchmark(fwd_bwd)
