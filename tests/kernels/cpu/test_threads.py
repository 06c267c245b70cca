"""The thread policy: BLAS is called single-threaded, big products are split into fixed
column blocks run by Numba's pool, and n_threads sets that pool for a call and restores
it -- so results never depend on the thread count."""
import os
import re
import subprocess
import sys
import threading

import numba
import numpy as np
import pytest

import fastdnn as fd
from fastdnn import config
from fastdnn.kernels.cpu import blas
from fastdnn.kernels.cpu.threads import SPIN_COUNT, limit_threads, scipy_blas
from fastdnn.validation import check_n_threads
from support import assert_same_weights, run_threaded


def test_limit_threads_sets_and_restores_numbas_pool():
    before = numba.get_num_threads()
    with limit_threads(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    with pytest.raises(RuntimeError):
        with limit_threads(1):
            raise RuntimeError("boom")
    assert numba.get_num_threads() == before


def test_process_wide_blas_setting_is_restored():
    """Inside fastdnn's calls SciPy's OpenBLAS runs single-threaded; afterwards its
    process-wide count is what it was, also when the calls overlap in several threads.

    The count is process-wide even through ``openblas_set_num_threads_local`` (pthreads
    builds): blocks that each saved and restored it left the process at 1."""
    lib = scipy_blas()
    if lib is None:
        pytest.skip("needs SciPy's OpenBLAS")
    get, set_ = lib
    old = get()
    set_(2)
    before = get()
    if before < 2:
        pytest.skip("this OpenBLAS runs one thread at most")
    try:
        rng = np.random.default_rng(0)
        X, y = rng.standard_normal((512, 300)), rng.integers(0, 3, 512)

        def fit(batch_size):
            net = fd.MLP([300, 300, 3], seed=0)  # 256 rows x 300 x 300: parallel blocks
            net.fit(X, y, epochs=2, batch_size=batch_size)
            return net.predict(X)

        seen = []
        with limit_threads(None):
            seen.append(get())  # single-threaded inside
        fit(256)
        assert get() == before
        workers = [threading.Thread(target=fit, args=(b,)) for b in (256, 128, 64, 256)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        fd.fit_many([fd.MLP([300, 40, 3], seed=s) for s in range(3)], X, y, epochs=1,
                    batch_size=64)
        assert get() == before
        assert seen == [1]
    finally:
        set_(old)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_bad_n_threads(bad):
    with pytest.raises(ValueError, match="n_threads"):
        check_n_threads(bad)


# Every "any thread count" test compares a run in this process at 1 thread with the same
# run in a child process whose pool has THREADS threads (see support.run_threaded): the
# child's pool is set at its start, so the comparison holds even where this process
# has a one-thread pool.
THREADS = 3

# Shapes where OpenBLAS' own threading changed the last bits between 1 and 2 threads;
# the last two are big enough (blas.PARALLEL_MACS) for fastdnn's parallel column blocks.
# Then two that OpenBLAS' AVX-512 cores run as 2 and 3 calls on their small-matrix path
# (blas.SMALL_PATH_MACS; elsewhere as one call), and a narrow one whose D @ Y.T they run
# through a copy of Y.T (blas.SMALL_PATH_MIN_K_TRANSPOSED).  Last, a classifier's output
# layer, whose X @ Y and X.T @ D are too narrow for column blocks and big enough for
# parallel row blocks (blas.splits_rows), 257 rows: blocks of unequal height.
PRODUCT_CASES = [(m, k, n, dtype) for dtype in ("float32", "float64")
                 for m, k, n in [(100, 129, 127), (64, 784, 300), (257, 300, 129),
                                 (200, 64, 100), (128, 128, 128), (200, 100, 10),
                                 (257, 1024, 10)]]
# gemm_min=0 sends every product through BLAS; 300 rows make the big ones parallel.
FIT_CASES = [(gemm_min, dtype, plain) for dtype in ("float32", "float64")
             for gemm_min in (0, config.SMALL_GEMM_MACS) for plain in (False, True)]
SHARD_CASES = [(2,), (3,)]


#: ``[alpha, beta]`` of the product added onto an array (:func:`blas.matmul_tn_add`).
ADD_SCALARS = (-0.375, 0.75)


def products(m, k, n, dtype, n_threads):
    """``X @ Y``, ``X.T @ D``, ``D @ Y.T``, ``alpha X.T @ D + beta E`` and ``D + X @ Y``
    with ``n_threads`` threads, and the operands."""
    blas.prepare()
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    D = rng.standard_normal((m, n)).astype(dtype)
    E = rng.standard_normal((k, n)).astype(dtype)
    C, G, P = np.empty((m, n), dtype), np.empty((k, n), dtype), np.empty((m, k), dtype)
    H, S = E.copy(), D.copy()
    with limit_threads(n_threads):
        assert numba.get_num_threads() == n_threads
        blas.matmul(X, Y, C)
        blas.matmul_tn(X, D, G)
        blas.matmul_nt(D, Y, P)
        blas.matmul_tn_add(X, D, H, np.array(ADD_SCALARS, dtype))
        blas.matmul_add(X, Y, S)
    return (C, G, P, H, S), (X, Y, D, E)


def fit_weights(gemm_min, dtype, plain, n_threads):
    """Weights after two epochs of momentum SGD on a net with 160- and 140-wide layers,
    or (``plain``) of plain SGD with the update added by the products
    (``train_steps_wide_sgd``, picked here for any size of net)."""
    old = config.SMALL_GEMM_MACS, config.WIDE_UPDATE_PARAMS
    config.SMALL_GEMM_MACS = gemm_min
    if plain:
        config.WIDE_UPDATE_PARAMS = 0
    try:
        rng = np.random.default_rng(0)
        X = rng.standard_normal((600, 40))
        y = rng.integers(0, 5, 600)
        net = fd.MLP([40, 160, 140, 5], seed=3, n_threads=n_threads, dtype=dtype)
        net.fit(X, y, epochs=2, batch_size=300,
                optimizer=fd.SGD(lr=0.05, momentum=0.0 if plain else 0.9))
        return net.get_weights()
    finally:
        config.SMALL_GEMM_MACS, config.WIDE_UPDATE_PARAMS = old


def sharded_weights(shards, n_threads):
    """Weights after one full-batch SGD step with the batch cut into ``shards`` row shards."""
    old = config.SHARDS, config.MIN_SHARD_ROWS, config.MIN_SHARD_MACS
    config.SHARDS, config.MIN_SHARD_ROWS, config.MIN_SHARD_MACS = shards, 1, 0
    try:
        X, y = shard_problem()
        net = fd.MLP([5, 9, 3], dtype="float64", seed=0, n_threads=n_threads)
        net.fit(X, y, epochs=1, batch_size=70, optimizer=fd.SGD(lr=0.1), shuffle=False)
        return net.get_weights()
    finally:
        config.SHARDS, config.MIN_SHARD_ROWS, config.MIN_SHARD_MACS = old


def shard_problem():
    rng = np.random.default_rng(1)
    return rng.standard_normal((70, 5)), rng.integers(0, 3, 70)


@pytest.fixture(scope="module")
def threaded():
    """Every case of this module run once, in one child process with THREADS threads."""
    calls = ([(products, case) for case in PRODUCT_CASES]
             + [(fit_weights, case) for case in FIT_CASES]
             + [(sharded_weights, case) for case in SHARD_CASES])
    results = run_threaded([(fn, args + (THREADS,)) for fn, args in calls], THREADS)
    return {(fn.__name__, args): out for (fn, args), out in zip(calls, results)}


@pytest.mark.parametrize("m,k,n,dtype", PRODUCT_CASES)
def test_products_identical_for_any_thread_count(threaded, m, k, n, dtype):
    (C, G, P, H, S), (X, Y, D, E) = products(m, k, n, dtype, 1)
    many, _ = threaded[("products", (m, k, n, dtype))]
    for name, one, other in zip("CGPHS", (C, G, P, H, S), many):
        np.testing.assert_array_equal(one, other, err_msg=f"{name}: 1 vs {THREADS} threads")
    tol = 1e-4 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(C, X.astype(np.float64) @ Y, rtol=tol, atol=tol * k)
    np.testing.assert_allclose(G, X.T.astype(np.float64) @ D, rtol=tol, atol=tol * m)
    np.testing.assert_allclose(P, D.astype(np.float64) @ Y.T, rtol=tol, atol=tol * n)
    alpha, beta = ADD_SCALARS
    np.testing.assert_allclose(H, alpha * (X.T.astype(np.float64) @ D) + beta * E, rtol=tol,
                               atol=tol * m)
    np.testing.assert_allclose(S, D + X.astype(np.float64) @ Y, rtol=tol, atol=tol * k)


@pytest.mark.parametrize("rows,cols,K,flag,calls", [
    (200, 100, 64, "N", 2),     # 1.28M multiply-adds: two blocks of 50 columns, 0.64M each
    (200, 100, 100, "N", 2),    # 2M: 50 columns are exactly 1M, the limit itself
    (128, 128, 128, "N", 3),    # 2.1M: 61 columns fit, so 3 blocks of 43
    (200, 100, 32, "N", 1),     # 0.64M: on the small path already
    (256, 1024, 784, "N", 1),   # 205M: it would take 206 calls (> 4), stays one call
    (2000, 3, 1000, "N", 1),    # 2M per column: no block of even one column fits
    (200, 100, 64, "T", 1),     # op(A) transposed: OpenBLAS refuses it the small path
])
def test_small_path_calls(rows, cols, K, flag, calls):
    got = blas.small_path_calls(ord(flag), rows, cols, K, 100**3, 4)
    assert got == calls
    width = -(-cols // got)
    if calls > 1:
        assert rows * width * K <= 100**3 < rows * -(-cols // (got - 1)) * K
    assert blas.small_path_calls(ord(flag), rows, cols, K, 0, 4) == 1  # no small path


def blocked(X, Y, nb):
    """``X @ Y`` cut into ``nb`` column blocks, whatever the configured count."""
    blas.prepare()
    m, k = X.shape
    n = Y.shape[1]
    C = np.empty((m, n), X.dtype)
    flag = blas._FLAGS[0]
    blas._blocks_parallel(flag, flag, m, n, k, Y.reshape(-1), 1, n, X.reshape(-1), k,
                          C.reshape(-1), n, nb, C.reshape(-1)[:0])
    return C


def test_n_blocks_one_per_cpu_no_narrower_than_a_block():
    assert blas.n_blocks(1024, 2) == 2
    assert blas.n_blocks(1024, 1) == 1
    assert blas.n_blocks(1024, 64) == 1024 // blas.BLOCK
    assert blas.n_blocks(blas.BLOCK + 1, 4) == 2
    assert blas.splits(256, 1024, 784) and not blas.splits(256, blas.BLOCK, 784)
    assert not blas.splits(10, 300, 10)  # 30 K multiply-adds: one call, no threads


@pytest.mark.parametrize("cols,nb", [(5, 4), (9, 4), (129, 3), (300, 7)])
def test_blocks_past_the_last_column_are_skipped(capfd, cols, nb):
    # ceil(5 / 4) = 2 columns a block: blocks at 0, 2, 4, and one at 6, past the end,
    # which BLAS would be asked for -1 columns (and print an illegal-value message).
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((5, 7)), rng.standard_normal((7, cols))
    np.testing.assert_allclose(blocked(X, Y, nb), X @ Y, rtol=1e-12, atol=1e-12)
    assert capfd.readouterr() == ("", "")


def test_block_count_setting(monkeypatch):
    monkeypatch.setattr(config, "BLAS_BLOCKS", None)
    monkeypatch.setenv("FASTDNN_BLAS_BLOCKS", "3")
    assert blas.blocks() == 3
    monkeypatch.delenv("FASTDNN_BLAS_BLOCKS")
    assert blas.blocks() == blas.cpu_count() >= 1
    monkeypatch.setattr(config, "BLAS_BLOCKS", 5)
    assert blas.blocks() == 5
    assert blas.blocks() == 5
    monkeypatch.setattr(config, "BLAS_BLOCKS", blas.MAX_BLOCKS)
    assert blas.blocks() == blas.MAX_BLOCKS
    # 2**63 and 2**64 wrapped in the kernels' int64 to one block, silently.
    for bad in (0, -2, "two", 2.5, True, blas.MAX_BLOCKS + 1, 2 ** 63, 2 ** 64):
        monkeypatch.setattr(config, "BLAS_BLOCKS", bad)
        with pytest.raises(ValueError, match="config.BLAS_BLOCKS must be an integer from 1"):
            blas.blocks()
    monkeypatch.setattr(config, "BLAS_BLOCKS", None)
    for bad in ("0", str(2 ** 63)):
        monkeypatch.setenv("FASTDNN_BLAS_BLOCKS", bad)
        with pytest.raises(ValueError, match="FASTDNN_BLAS_BLOCKS must be an integer from 1"):
            blas.blocks()


def test_block_count_is_read_at_run_time(monkeypatch):
    """The compiled products read ``config.BLAS_BLOCKS`` when they run (it is never
    frozen into a compiled or cached kernel): on a product whose last bits depend on
    the count, each setting gives that many blocks' bits."""
    rng = np.random.default_rng(0)
    for m, k, n in [(64, 784, 300), (20, 400, 300), (33, 1500, 700), (40, 200, 300)]:
        X, Y = rng.standard_normal((m, k)), rng.standard_normal((k, n))
        one, two = blocked(X, Y, 1), blocked(X, Y, 2)
        if not np.array_equal(one, two):
            break
    else:
        pytest.skip("this BLAS gives the same bits for 1 and 2 blocks on every shape tried")
    assert blas.splits(m, n, k)
    C = np.empty_like(one)
    try:
        for count, want in ((1, one), (2, two), (1, one)):
            monkeypatch.setattr(config, "BLAS_BLOCKS", count)
            blas.prepare()
            blas.matmul(X, Y, C)
            np.testing.assert_array_equal(C, want, err_msg=f"BLAS_BLOCKS={count}")
    finally:  # the process-wide count back to the default for the tests after this one
        monkeypatch.undo()
        blas.prepare()


@pytest.mark.parametrize("gemm_min,dtype,plain", FIT_CASES)
def test_fit_identical_with_one_or_several_threads(threaded, gemm_min, dtype, plain):
    many = threaded[("fit_weights", (gemm_min, dtype, plain))]
    assert_same_weights(fit_weights(gemm_min, dtype, plain, 1), many)


@pytest.mark.parametrize("shards", [case[0] for case in SHARD_CASES])
def test_sharded_batches_match_any_thread_count_and_the_oracle(threaded, shards):
    # Data-parallel shards (config.SHARDS) combine per-shard means weighted by rows:
    # the same mean-loss gradient as one pass, identical for 1 and several threads.
    one = sharded_weights(shards, 1)
    assert_same_weights(one, threaded[("sharded_weights", (shards,))])
    # One full-batch SGD step from the same start: theta - lr * gradient.
    X, y = shard_problem()
    ref = fd.MLP([5, 9, 3], dtype="float64", seed=0)
    want = [(W - 0.1 * dW, b - 0.1 * db)
            for (W, b), (dW, db) in zip(ref.get_weights(), ref.gradients(X, y))]
    for (W, b), (Wn, bn) in zip(one, want):
        np.testing.assert_allclose(W, Wn, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(b, bn, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("shards", [2, 3])
def test_a_one_row_batch_of_a_sharded_fit(monkeypatch, shards):
    """An epoch's last batch of one row is one shard: its gradient is that row's (the
    combine writes it; stale values from the step before would pass unnoticed in a
    comparison of shard counts alone)."""
    monkeypatch.setattr(config, "SHARDS", shards)
    monkeypatch.setattr(config, "MIN_SHARD_ROWS", 1)
    monkeypatch.setattr(config, "MIN_SHARD_MACS", 0)
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((71, 5)), rng.integers(0, 3, 71)
    net = fd.MLP([5, 9, 3], dtype="float64", seed=0)
    ref = fd.MLP([5, 9, 3], dtype="float64", seed=0)
    net.fit(X, y, epochs=1, batch_size=70, optimizer=fd.SGD(lr=0.1), shuffle=False)
    for rows in (slice(0, 70), slice(70, 71)):  # the oracle: two plain SGD steps
        ref.set_weights([(W - 0.1 * dW, b - 0.1 * db) for (W, b), (dW, db)
                         in zip(ref.get_weights(), ref.gradients(X[rows], y[rows]))])
    for (W, b), (Wr, br) in zip(net.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(W, Wr, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(b, br, rtol=1e-12, atol=1e-14)


def test_the_stand_ins_for_missing_c_functions_compile_when_asked():
    """Where OpenBLAS lacks ``openblas_set_num_threads_local`` or libc lacks ``usleep``,
    these C functions take their place; they compile only there (not at import)."""
    import ctypes

    from fastdnn.kernels.cpu import pair

    setter = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(blas._no_local_threads().address)
    sleep = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_uint)(pair._no_sleep().address)
    assert (setter(3), sleep(1000)) == (1, 0)


# A fresh interpreter: GNU OpenMP reads its settings once, when it loads.
_SPIN_CHILD = """
import ctypes, os, sys
import numba
if {load_first}:
    ctypes.CDLL("libgomp.so.1")
from fastdnn.kernels.cpu import blas
blas.prepare()
print(numba.threading_layer(), os.environ.get("GOMP_SPINCOUNT"))
sys.stdout.flush()
display = getattr(ctypes.CDLL("libgomp.so.1"), "omp_display_env", None)
if display is not None:
    display(1)  # the settings libgomp took, to stderr
"""


def _spin_count(load_first=False, **env):
    """``(GOMP_SPINCOUNT in os.environ after prepare, the spin count libgomp took)`` in a
    fresh interpreter with ``env`` for the wait variables (skipped where Numba's
    threading layer is not GNU OpenMP, or libgomp cannot say)."""
    environ = {k: v for k, v in os.environ.items()
               if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "NUMBA_ENABLE_CUDASIM")}
    environ.update(env)
    proc = subprocess.run([sys.executable, "-c", _SPIN_CHILD.format(load_first=load_first)],
                          env=environ, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    layer, left = proc.stdout.split()
    took = re.search(r"GOMP_SPINCOUNT = '(\d+)'", proc.stderr)
    if layer != "omp" or took is None:
        pytest.skip(f"Numba's threading layer is {layer!r}, or libgomp cannot display its "
                    "settings")
    return left, took.group(1)


def test_openmp_workers_spin_briefly_unless_the_user_chose():
    """The pool starts with SPIN_COUNT spins before a worker sleeps (libgomp's default is
    300,000), the variable gone from the environment afterwards; a wait policy the user
    set, or an OpenMP loaded before (which read its settings already), is left alone."""
    assert _spin_count() == ("None", str(SPIN_COUNT))
    assert _spin_count(GOMP_SPINCOUNT="77") == ("77", "77")
    assert _spin_count(OMP_WAIT_POLICY="active")[1] != str(SPIN_COUNT)
    assert _spin_count(load_first=True)[1] != str(SPIN_COUNT)


def test_the_pool_start_leaves_pytorchs_openmp_thread_count(tmp_path):
    """Numba's OpenMP pool sets libgomp's thread count as it starts; PyTorch shares that
    libgomp (libgomp.so.1), so ``torch.set_num_threads(1)`` read 2 after a first fit
    (one that compiles: an empty cache)."""
    pytest.importorskip("torch")
    from support import run_python

    out = run_python(NUMBA_CACHE_DIR=str(tmp_path), code="""
        import torch
        torch.set_num_threads(1)
        import numba, numpy as np
        import fastdnn as fd
        X = np.random.default_rng(0).standard_normal((256, 16)).astype(np.float32)
        before = torch.get_num_threads()  # PyTorch's pool started, as by any torch work
        fd.MLP([16, 32, 32, 2], seed=0).fit(X, (X[:, 0] > 0).astype(int), epochs=1,
                                            batch_size=32, optimizer="sgd")
        print(before, torch.get_num_threads(), numba.get_num_threads())
    """)
    assert out.split() == ["1", "1", str(numba.config.NUMBA_NUM_THREADS)]
