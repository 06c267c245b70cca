"""Dense layer kernels: the forward affine map with fused bias + activation, and its
layerwise backward twin.  ``W`` has shape ``(fan_in, fan_out)``; rows are samples.

Two paths per product, chosen by the caller from the shapes (``blas`` flag, see
:mod:`fastdnn.kernels.spec`): hand-written loops for the tiniest products, where a BLAS call
costs more than its arithmetic, and :mod:`.blas` (SciPy's BLAS, split into
fixed column blocks run in parallel) for the rest.  The choice and the split depend on
shapes only, never on the thread count, so results do too.
"""
import numpy as np

from ... import config
from .activations import activate
from .blas import matmul_add, matmul_nt, matmul_tn
from .pipeline import njit

# Reassociation lets LLVM vectorise the dot-product reduction of ``delta @ W.T``; it
# changes rounding only (no NaN/inf assumptions), and this leaf holds no softmax/log.
# Inlined into the passes, a callee loses its fastmath flags, so _backprop_rows is a
# call: once the steps ran on borrowed arrays (no reference counting per call), the
# call with its reassoc won 10% on 2-8-8-1 online SGD (2.43 -> 2.67 M samples/s), 4-7%
# on the batch-32/64 nets (Intel Xeon); inlined, it had been 0.86x either way.
_REASSOC = {"reassoc"}


@njit(cache=config.CACHE, inline="always")
def _affine_rows(A_prev, W, b, Z):
    """``Z = A_prev @ W + b`` with row-broadcast bias (loop form, vectorised over fan_out)."""
    m, k = A_prev.shape
    n = W.shape[1]
    for i in range(m):
        for j in range(n):
            Z[i, j] = b[j]
        for p in range(k):
            a = A_prev[i, p]
            for j in range(n):
                Z[i, j] += a * W[p, j]


@njit(cache=config.CACHE, inline="always")
def dense_forward(A_prev, W, b, blas, Z):
    """``Z = A_prev @ W + b`` (the activation follows, on the layer's whole block: see
    ``train.forward_layers``).

    BLAS adds the product onto the bias rows (beta 1): with beta 0 it zeroed ``Z`` first,
    and the bias took another pass over it."""
    m = A_prev.shape[0]
    if blas:
        n = W.shape[1]
        for i in range(m):
            for j in range(n):
                Z[i, j] = b[j]
        matmul_add(A_prev, W, Z)
    else:
        _affine_rows(A_prev, W, b, Z)


@njit(cache=config.CACHE)
def dense_layer(A_prev, W, b, code, blas, Z, A):
    """``Z = A_prev @ W + b``, ``A = g(Z)`` on C-contiguous arrays: one layer as the
    forward pass computes it (for tests and benchmarks)."""
    dense_forward(A_prev, W, b, blas, Z)
    activate(Z.reshape(Z.size), code, A.reshape(A.size))


#: Above this many rows a bias gradient is summed in float64 (:func:`_column_sums`).
#: Below, a running sum in the dtype errs by at most ``m * eps`` of the terms, as the
#: weight gradient's own GEMM does over the same rows, and costs less: the float64 sum's
#: buffer and half-width vectors took 40-80 ns more a layer at 32-64 rows (a 1-16x4-1
#: net's step at batch 32: ~5%; AMD EPYC, Zen 4).
FLOAT64_SUM_ROWS = 256


@njit(cache=config.CACHE, inline="always")
def _column_sums(delta, db):
    """``db = delta.sum(0)``, each column summed over the rows in order (in float64 above
    :data:`FLOAT64_SUM_ROWS` rows).

    A running sum in float32 lost ``m * eps``: the bias gradient of a million equal rows
    came out 0.9% off, and one SGD step on a batch of 60,000 rows moved a bias 5,300 ulp
    from where float64 puts it (NumPy's and PyTorch's sums are pairwise).  In float64 the
    error, ``m * 2**-53`` of the terms' magnitudes, stays below float32's last rounding
    for any batch that fits in memory; a float64 net's bits are as they were (the same
    adds, in the same order)."""
    m, n = delta.shape
    if m <= FLOAT64_SUM_ROWS:
        db[:] = 0.0
        for i in range(m):
            for j in range(n):
                db[j] += delta[i, j]
        return
    acc = np.zeros(n, dtype=np.float64)
    for i in range(m):
        for j in range(n):
            acc[j] += delta[i, j]
    for j in range(n):
        db[j] = acc[j]


@njit(cache=config.CACHE, inline="always")
def _bias_grad_rows(delta, db, one_row=False):
    """``db = delta.sum(0)`` (:func:`_column_sums`; one row copied).

    ``one_row`` (a constant True where ``delta`` always has one row): Numba prunes the
    general loop before compiling it."""
    m, n = delta.shape
    if one_row or m == 1:
        for j in range(n):
            db[j] = delta[0, j]
        return
    _column_sums(delta, db)


@njit(cache=config.CACHE, inline="always")
def _weight_grad_rows(delta, A_prev, dW, db, one_row=False):
    """``dW = A_prev.T @ delta``, ``db = delta.sum(0)`` (loop form, serial over samples;
    ``one_row`` as in :func:`_bias_grad_rows`)."""
    m, k = A_prev.shape
    n = delta.shape[1]
    _bias_grad_rows(delta, db, one_row)
    # One row (online SGD): written, not zeroed and accumulated (two memset calls a layer).
    if one_row or m == 1:
        for p in range(k):
            a = A_prev[0, p]
            for j in range(n):
                dW[p, j] = a * delta[0, j]
        return
    dW[:] = 0.0
    for i in range(m):
        for p in range(k):
            a = A_prev[i, p]
            for j in range(n):
                dW[p, j] += a * delta[i, j]


@njit(cache=config.CACHE, fastmath=_REASSOC)
def _backprop_rows(delta, W, delta_prev):
    """``delta_prev = delta @ W.T`` (loop form: a dot product per element)."""
    m, n = delta.shape
    k = W.shape[0]
    for i in range(m):
        for p in range(k):
            s = 0.0
            for j in range(n):
                s += delta[i, j] * W[p, j]
            delta_prev[i, p] = s


@njit(cache=config.CACHE, inline="always")
def dense_backward(delta, A_prev, W, blas, dW, db, delta_prev, weights, one_row=False):
    """``dW = A_prev.T @ delta``, ``db = delta.sum(0)``, ``delta_prev = delta @ W.T``.

    ``delta`` is dL/dZ of this layer.  ``delta_prev`` is dL/dA of the layer below,
    before its activation derivative (see ``activation_backward``); pass an empty
    array for the first layer, which needs none.  ``weights`` False leaves ``dW``
    unwritten: online SGD forms ``A_prev.T @ delta`` of its one row inside the update
    (``train._fused_sgd_step``).  ``one_row``: a constant True where ``delta`` always
    has one row (online SGD's kernel), which then compiles only the loops' one-row case.
    """
    if blas:
        if weights:
            matmul_tn(A_prev, delta, dW)
        _column_sums(delta, db)
        if delta_prev.size > 0:
            matmul_nt(delta, W, delta_prev)
    else:
        if weights:
            _weight_grad_rows(delta, A_prev, dW, db, one_row)
        else:
            _bias_grad_rows(delta, db, one_row)
        if delta_prev.size > 0:
            _backprop_rows(delta, W, delta_prev)
