"""The thread policy: BLAS is called single-threaded, big products are split into fixed
column blocks run by Numba's pool, and n_threads sets that pool for a call and restores
it -- so results never depend on the thread count."""
import numba
import numpy as np
import pytest

import fastdnn as fd
from fastdnn import config
from fastdnn.kernels.cpu import blas
from fastdnn.kernels.cpu.threads import limit_threads, local_threads_setter, scipy_blas
from fastdnn.validation import check_n_threads


def test_limit_threads_sets_and_restores_numbas_pool():
    before = numba.get_num_threads()
    with limit_threads(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    with pytest.raises(RuntimeError):
        with limit_threads(1):
            raise RuntimeError("boom")
    assert numba.get_num_threads() == before


def test_process_wide_blas_setting_is_left_alone():
    lib = scipy_blas()
    if lib is None or local_threads_setter() is None:
        pytest.skip("needs SciPy's OpenBLAS with openblas_set_num_threads_local")
    get, _ = lib
    before = get()
    X = np.ones((300, 300), dtype=np.float32)
    C = np.empty_like(X)
    blas.matmul(X, X, C)  # big enough for the parallel blocks
    assert get() == before


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_bad_n_threads(bad):
    with pytest.raises((ValueError, TypeError), match="n_threads"):
        check_n_threads(bad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", [(100, 129, 127), (64, 784, 300), (257, 300, 129)])
def test_products_identical_for_any_thread_count(m, k, n, dtype):
    # Shapes where OpenBLAS' own threading changed the last bits between 1 and 2 threads.
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    D = rng.standard_normal((m, n)).astype(dtype)
    outs = []
    for t in (1, 2):
        with limit_threads(t):
            C, G, P = np.empty((m, n), dtype), np.empty((k, n), dtype), np.empty((m, k), dtype)
            blas.matmul(X, Y, C)
            blas.matmul_tn(X, D, G)
            blas.matmul_nt(D, Y, P)
        outs.append((C, G, P))
    for a, b in zip(*outs):
        assert np.array_equal(a, b)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(outs[0][0], X.astype(np.float64) @ Y, rtol=tol, atol=tol * k)
    np.testing.assert_allclose(outs[0][1], X.T.astype(np.float64) @ D, rtol=tol, atol=tol * m)
    np.testing.assert_allclose(outs[0][2], D.astype(np.float64) @ Y.T, rtol=tol, atol=tol * n)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("gemm_min", [0, config.SMALL_GEMM_MACS])
def test_fit_identical_with_one_or_two_threads(monkeypatch, gemm_min, dtype):
    # gemm_min=0 sends every product through BLAS; 300 rows make the big ones parallel.
    monkeypatch.setattr(config, "SMALL_GEMM_MACS", gemm_min)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((600, 40))
    y = rng.integers(0, 5, 600)
    weights = []
    for n_threads in (1, 2):
        net = fd.MLP([40, 160, 140, 5], seed=3, n_threads=n_threads, dtype=dtype)
        net.fit(X, y, epochs=2, batch_size=300, optimizer=fd.SGD(lr=0.05, momentum=0.9))
        weights.append(net.get_weights())
    for (W1, b1), (W2, b2) in zip(*weights):
        assert np.array_equal(W1, W2) and np.array_equal(b1, b2)


@pytest.mark.parametrize("shards", [2, 3])
def test_sharded_batches_match_any_thread_count_and_the_oracle(monkeypatch, shards):
    # Data-parallel shards (config.SHARDS) combine per-shard means weighted by rows:
    # the same mean-loss gradient as one pass, identical for 1 and 2 threads.
    monkeypatch.setattr(config, "SHARDS", shards)
    monkeypatch.setattr(config, "MIN_SHARD_ROWS", 1)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((70, 5))
    y = rng.integers(0, 3, 70)
    runs = []
    for n_threads in (1, 2):
        net = fd.MLP([5, 9, 3], dtype="float64", seed=0, n_threads=n_threads)
        net.fit(X, y, epochs=1, batch_size=70, optimizer=fd.SGD(lr=0.1), shuffle=False)
        runs.append(net.get_weights())
    for (W1, b1), (W2, b2) in zip(*runs):
        assert np.array_equal(W1, W2) and np.array_equal(b1, b2)
    # One full-batch SGD step from the same start: theta - lr * gradient.
    ref = fd.MLP([5, 9, 3], dtype="float64", seed=0)
    want = [(W - 0.1 * dW, b - 0.1 * db)
            for (W, b), (dW, db) in zip(ref.get_weights(), ref.gradients(X, y))]
    for (W, b), (Wn, bn) in zip(runs[0], want):
        np.testing.assert_allclose(W, Wn, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(b, bn, rtol=1e-12, atol=1e-14)
