"""Deterministic, thread-count-independent GEMM on top of SciPy's BLAS.

Why not ``np.dot`` with a threaded BLAS: OpenBLAS splits a product differently with
1 and 2 threads, and the last bits of the result change with it (measured: 32 of 294
float32 and 46 of 294 float64 shapes in ``benchmarks``' grid differ).  fastdnn's
results must not depend on the thread count, so here the split is ours: the output's
columns are cut into fixed blocks of :data:`BLOCK` (a function of the shape only),
each block is one single-threaded BLAS call, and the blocks run in a ``prange`` when
the product is big enough to pay for threads.  Cutting columns (not rows) keeps each
call's packing of the shared operand small, as OpenBLAS' own threading does.

Every product is written for row-major C-contiguous operands:

* ``matmul``     ``C = X @ Y``       (forward: ``Z = A_prev @ W``)
* ``matmul_tn``  ``C = X.T @ Y``     (weight gradient: ``dW = A_prev.T @ delta``)
* ``matmul_nt``  ``C = X @ Y.T``     (backprop: ``delta_prev = delta @ W.T``)

BLAS is column-major, so a row-major ``C = op(X) op(Y)`` is issued as the
column-major ``C^T = op(Y)^T op(X)^T``; a block of C's columns is a block of rows of
``C^T``, reached by offsetting the pointers.  The call goes through Numba's own
``numba_xxgemm`` helper (the one behind ``np.dot``, which takes its sizes by value and
reaches SciPy's ``cython_blas``), declared as an external symbol so that the kernels
stay cacheable on disk.
"""
import ctypes

import llvmlite.binding as llvm
import numpy as np
from numba import cfunc, njit, prange, types

from ... import config
from .threads import blas_core, local_threads_setter

#: Narrowest column block when a product is split, and the most blocks: a product
#: with ``cols`` output columns is cut into ``min(ceil(cols / BLOCK), MAX_BLOCKS)``
#: equal blocks.  Each block re-packs (and re-reads from memory) the whole other
#: operand, so a few wide blocks beat many narrow ones on big layers.  With 8 at most,
#: 512x4096 @ 4096x4096 runs at 191 GFLOP/s on the 2-core dev machine (NumPy: 197).
BLOCK = 128
MAX_BLOCKS = 8
#: Multiply-adds from which the blocks run in parallel (below: one call, no threads).
PARALLEL_MACS = 1 << 21

# OpenBLAS' AVX-512 cores (SkylakeX, Cooperlake, Sapphire Rapids: its kernel choice on
# Intel AVX-512 parts and on Zen 4) have a small-matrix path without packing, which a
# product takes while M*N*K <= 100**3 and op(A) is not transposed
# (kernel/x86_64/?gemm_small_kernel_permit_skylakex.c).  Just above that size the packed
# path was slower than two calls on the small path, each on half the columns
# (200x64 @ 64x100 float64: 45 -> 33 us; 128x64 @ 64x128 float32: 16.9 -> 12.7 us;
# Intel Xeon, SkylakeX kernels).  So a product a few times that size runs as a few such
# calls, one after the other; elsewhere (other cores, other BLAS) nothing changes.
# The split follows from the shape and the BLAS core only, never from the thread count.
# It is fixed when this module is compiled: cached kernels keep it (a cache is per CPU,
# and OpenBLAS picks its core from the CPU unless OPENBLAS_CORETYPE says otherwise).
_SMALL_PATH_CORES = ("skylakex", "cooperlake", "sapphirerapids")
#: The small path's largest M*N*K per call (0: no small path, no split).
SMALL_PATH_MACS = 100**3 if blas_core() in _SMALL_PATH_CORES else 0
#: The most calls a product is cut into to reach the small path.
SMALL_PATH_SPLITS = 4

_gemm_c = types.ExternalFunction("numba_xxgemm", types.intc(
    types.char, types.char, types.char, types.intp, types.intp, types.intp, types.voidptr,
    types.voidptr, types.intp, types.voidptr, types.intp, types.voidptr, types.voidptr,
    types.intp))


@cfunc(types.intc(types.intc))
def _no_local_threads(n):  # pragma: no cover - stands in where OpenBLAS lacks the call
    return 1


def _register_local_threads():
    """Bind ``fastdnn_blas_local_threads`` to OpenBLAS' ``openblas_set_num_threads_local``
    (0.3.27+): a per-thread BLAS thread count, so each call here runs single-threaded
    without touching the process-wide setting.  Where it is missing a no-op is bound,
    and :func:`.threads.limit_threads` sets the process-wide count instead."""
    fn = local_threads_setter()
    addr = ctypes.cast(fn, ctypes.c_void_p).value if fn is not None else _no_local_threads.address
    llvm.add_symbol("fastdnn_blas_local_threads", addr)


def _resolve_gemm():
    """Make Numba's helper look up ``sgemm``/``dgemm`` now, from Python.

    The helper resolves them on first use under ``PyGILState_Ensure``; done first from
    a ``prange`` worker while the calling thread holds the GIL, that would deadlock.
    A 1 x 1 product of each kind, called through ctypes here, settles it.
    """
    from numba import _helperlib
    from numba.np.linalg import ensure_blas

    ensure_blas()
    c_ssize = ctypes.c_ssize_t
    fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char, ctypes.c_char, ctypes.c_char, c_ssize,
                          c_ssize, c_ssize, ctypes.c_void_p, ctypes.c_void_p, c_ssize,
                          ctypes.c_void_p, c_ssize, ctypes.c_void_p, ctypes.c_void_p,
                          c_ssize)(_helperlib.c_helpers["xxgemm"])
    for kind, dtype in ((b"s", np.float32), (b"d", np.float64)):
        a = np.ones(4, dtype=dtype)  # alpha, A, B, beta/C share one small buffer
        ptr = [a[i:].ctypes.data for i in range(4)]
        fn(kind, b"N", b"N", 1, 1, 1, ptr[0], ptr[1], 1, ptr[2], 1, ptr[3], ptr[3], 1)


_prepared = False


def prepare():
    """One-time set-up before the first CPU kernel runs (idempotent, ~50 ms).

    Resolves the BLAS symbols the kernels call, binds the per-thread BLAS setting, and
    starts Numba's thread pool: a cached kernel that reaches the ``prange`` below,
    loaded from disk into a process where the pool was never started, is one of the
    paths where Numba has been seen to crash.  Not done at import, so that importing
    fastdnn (or choosing ``device="cuda"``) starts no threads.
    """
    global _prepared
    if _prepared:
        return
    from numba.np.ufunc.parallel import _launch_threads

    _resolve_gemm()
    _launch_threads()
    _register_local_threads()
    _prepared = True


# Bound by _register_local_threads (in prepare) before any kernel using it compiles or loads.
_set_local_threads = types.ExternalFunction("fastdnn_blas_local_threads", types.intc(types.intc))

# The BLAS transpose flags, read from an array at run time, and the column step from
# the array: passed as constants, Numba typed them as literals and compiled _product
# and its parallel region once per distinct constant -- twice or three times, ~1 s
# each of a cold start.
_FLAGS = np.array([ord("N"), ord("T")], dtype=np.int64)


@njit(cache=config.CACHE, inline="always")
def _column_step(Y):
    """Elements between neighbouring columns of the C-ordered ``Y`` (1), as a run-time value."""
    return Y.strides[1] // Y.itemsize
_ONE_ZERO32 = np.array([1.0, 0.0], dtype=np.float32)
_ONE_ZERO64 = np.array([1.0, 0.0], dtype=np.float64)


@njit(cache=config.CACHE, inline="always")
def _gemm(flag_a, flag_b, M, N, K, A, lda, B, ldb, C, ldc):
    """Column-major ``C = op(A) op(B)``, M x N x K, as one single-threaded BLAS call."""
    prev = _set_local_threads(1)
    if C.itemsize == 4:
        _gemm_c(ord("s"), flag_a, flag_b, M, N, K, _ONE_ZERO32.ctypes, A.ctypes, lda, B.ctypes,
                ldb, _ONE_ZERO32[1:].ctypes, C.ctypes, ldc)
    else:
        _gemm_c(ord("d"), flag_a, flag_b, M, N, K, _ONE_ZERO64.ctypes, A.ctypes, lda, B.ctypes,
                ldb, _ONE_ZERO64[1:].ctypes, C.ctypes, ldc)
    _set_local_threads(prev)


@njit(cache=config.CACHE)
def n_blocks(cols, macs):
    """How many column blocks a product with ``cols`` output columns is cut into."""
    if macs < PARALLEL_MACS:
        return 1
    return min((cols + BLOCK - 1) // BLOCK, MAX_BLOCKS)


@njit(cache=config.CACHE, parallel=True)
def _blocks_parallel(flag_a, flag_b, rows, cols, K, Yf, ystride, lda, Xf, ldb, Cf, ldc):
    # Each block writes its own columns of C: no shared output, no race.
    nb = n_blocks(cols, rows * cols * K)
    width = (cols + nb - 1) // nb
    for blk in prange(nb):
        j0 = blk * width
        _gemm(flag_a, flag_b, min(width, cols - j0), rows, K, Yf[j0 * ystride:], lda, Xf, ldb,
              Cf[j0:], ldc)


@njit(cache=config.CACHE, inline="always")
def small_path_calls(flag_a, rows, cols, K, limit, most):
    """Calls (equal column blocks) that bring a product to at most ``limit`` multiply-adds
    each (:data:`SMALL_PATH_MACS`), or 1 where that needs more than ``most`` calls, where
    ``op(A)`` is transposed, or where ``limit`` is 0."""
    if limit == 0 or flag_a == _FLAGS[1] or rows * cols * K <= limit:
        return 1
    width = limit // (rows * K)  # the widest block on the small path
    if width == 0:
        return 1
    calls = (cols + width - 1) // width
    # Equal blocks of ceil(cols / calls) columns are no wider than ``width``.
    return calls if calls <= most else 1


@njit(cache=config.CACHE)
def _product(flag_a, flag_b, rows, cols, K, Yf, ystride, lda, Xf, ldb, Cf, ldc):
    """Row-major ``C (rows x cols) = op(X) op(Y)`` over flat operands, split by columns."""
    if n_blocks(cols, rows * cols * K) == 1:
        calls = small_path_calls(flag_a, rows, cols, K, SMALL_PATH_MACS, SMALL_PATH_SPLITS)
        width = (cols + calls - 1) // calls
        for blk in range(calls):
            j0 = blk * width
            _gemm(flag_a, flag_b, min(width, cols - j0), rows, K, Yf[j0 * ystride:], lda, Xf,
                  ldb, Cf[j0:], ldc)
    else:
        _blocks_parallel(flag_a, flag_b, rows, cols, K, Yf, ystride, lda, Xf, ldb, Cf, ldc)


@njit(cache=config.CACHE)
def matmul(X, Y, C):
    """``C = X @ Y`` (X: m x k, Y: k x n)."""
    m, k = X.shape
    n = Y.shape[1]
    _product(_FLAGS[0], _FLAGS[0], m, n, k, Y.reshape(Y.size), _column_step(Y), n,
             X.reshape(X.size), k, C.reshape(C.size), n)


@njit(cache=config.CACHE)
def matmul_tn(X, Y, C):
    """``C = X.T @ Y`` (X: m x k, Y: m x n, C: k x n)."""
    m, k = X.shape
    n = Y.shape[1]
    _product(_FLAGS[0], _FLAGS[1], k, n, m, Y.reshape(Y.size), _column_step(Y), n,
             X.reshape(X.size), k, C.reshape(C.size), n)


#: Below this inner dimension OpenBLAS refuses a transposed ``op(A)`` its small-matrix
#: path (the permit rule quoted at :data:`SMALL_PATH_MACS`).
SMALL_PATH_MIN_K_TRANSPOSED = 32


@njit(cache=config.CACHE)
def matmul_nt(X, Y, C):
    """``C = X @ Y.T`` (X: m x n, Y: k x n, C: m x k).

    Where the BLAS has the small-matrix path but refuses it this product (``n`` below
    :data:`SMALL_PATH_MIN_K_TRANSPOSED`: the backprop through a narrow layer, such as
    the output layer), ``Y.T`` is copied (``k * n`` elements) and the product runs as
    :func:`matmul`: 200x10 @ 10x100 float64 12.3 -> 7.6 us, 128x10 @ 10x128 9.3 -> 5.5 us
    (Intel Xeon, SkylakeX kernels).
    """
    m, n = X.shape
    k = Y.shape[0]
    if SMALL_PATH_MACS > 0 and n < SMALL_PATH_MIN_K_TRANSPOSED:
        matmul(X, Y.T.copy(), C)
        return
    _product(_FLAGS[1], _FLAGS[0], m, k, n, Y.reshape(Y.size), n, n, X.reshape(X.size), n,
             C.reshape(C.size), k)
