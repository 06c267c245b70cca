"""CUDA twins of :mod:`fastdnn.kernels.cpu.losses`: the loss heads (loss + gradient w.r.t.
the logits) and the prediction heads, with the formulas of :mod:`fastdnn.kernels.spec`.

One block per row (blocks stride over rows): its threads stride over the row's
columns, and block reductions in shared memory give the row's max and sum, so the
softmax is the stable ``exp(z - max)`` of the CPU head.  Each row's loss goes to
``row_loss``; :func:`loss_grad` then sums the rows in one block, in a fixed order (no
atomics: the same inputs give the same bits), and adds the batch mean to an
accumulator on the device, so the host reads the loss only at epoch ends.

The accumulator ``acc`` (float64) holds: ``[0]`` the sum of ``batch loss * rows`` over
the steps so far with a finite loss, ``[1]`` the last batch's mean loss, ``[2]`` the sum
of ``batch loss * rows`` whatever its value (for evaluation).  ``status[0]`` is -1, or
the first step whose loss was not finite (later updates are skipped, see
:mod:`.updates`).  No ``fastmath``: the log-sum-exp must keep IEEE semantics.
"""
import functools
import math

import numpy as np
from numba import cuda, float64

from ..spec import BINARY_CROSS_ENTROPY, CLASSIFIERS, CROSS_ENTROPY, LOSS_NAMES, MSE, check_code
from . import formulas as F
from . import launch

#: Slots of the float64 accumulator.
TRAIN_SUM, LAST, EVAL_SUM = range(3)


@cuda.jit(device=True)
def _block_reduce(sh, value, take_max):
    """Sum (or max) of ``value`` over the block's threads; every thread gets the result.

    ``blockDim.x`` must be a power of two (see :func:`.launch.row_config`).
    """
    t = cuda.threadIdx.x
    sh[t] = value
    cuda.syncthreads()
    half = cuda.blockDim.x // 2
    while half > 0:
        if t < half:
            if take_max:
                sh[t] = max(sh[t], sh[t + half])
            else:
                sh[t] += sh[t + half]
        cuda.syncthreads()
        half //= 2
    out = sh[0]
    cuda.syncthreads()  # sh is reused by the next reduction
    return out


@functools.lru_cache(maxsize=None)
def _kernels(tpb):
    """Row and batch kernels with ``tpb``-slot shared scratch (the block-size bound)."""

    @cuda.jit
    def loss_rows(code, work, z_off, targets, deltas, row_loss, m, k):
        """Per row: ``row_loss`` and ``G`` (dL/dZ of the batch mean) into ``deltas[:m*k]``."""
        sh = cuda.shared.array(tpb, dtype=float64)
        t = cuda.threadIdx.x
        nt = cuda.blockDim.x
        inv = 1.0 / m if code == CROSS_ENTROPY else 1.0 / (m * k)
        for i in range(cuda.blockIdx.x, m, cuda.gridDim.x):
            row = z_off + i * k
            g_row = i * k
            if code == CROSS_ENTROPY:
                zmax = -math.inf
                for j in range(t, k, nt):
                    zmax = max(zmax, work[row + j])
                zmax = _block_reduce(sh, zmax, True)
                s = 0.0
                for j in range(t, k, nt):
                    # exp of a non-positive number: never overflows, even for logits of 1e4.
                    e = math.exp(work[row + j] - zmax)
                    deltas[g_row + j] = e
                    s += e
                s = _block_reduce(sh, s, False)
                y = int(targets[i])
                scale = inv / s
                for j in range(t, k, nt):
                    g = deltas[g_row + j] * scale
                    if j == y:
                        g -= inv
                    deltas[g_row + j] = g
                if t == 0:
                    row_loss[i] = F.cross_entropy_term(zmax, s, work[row + y])
            else:
                total = 0.0
                for j in range(t, k, nt):
                    z = work[row + j]
                    y = targets[i * k + j]
                    if code == MSE:
                        term, g = F.squared_error(z, y, inv)
                    else:
                        term, g = F.sigmoid_cross_entropy(z, y, inv)
                    total += term
                    deltas[g_row + j] = g
                total = _block_reduce(sh, total, False)
                if t == 0:
                    row_loss[i] = total

    @cuda.jit
    def batch_loss(row_loss, m, scale, acc, status, step):
        """``value = scale * sum(row_loss[:m])`` in one block; accumulate it (see module doc)."""
        sh = cuda.shared.array(tpb, dtype=float64)
        t = cuda.threadIdx.x
        total = 0.0
        for i in range(t, m, cuda.blockDim.x):
            total += row_loss[i]
        total = _block_reduce(sh, total, False)
        if t == 0:
            value = total * scale
            acc[LAST] = value
            acc[EVAL_SUM] += value * m
            if status[0] < 0:
                if math.isfinite(value):
                    acc[TRAIN_SUM] += value * m
                else:
                    status[0] = step

    return loss_rows, batch_loss


def loss_grad(code, work, z_off, targets, deltas, row_loss, m, k, acc, status, step=0):
    """Loss head ``code`` on the ``m x k`` logits at ``work[z_off:]``: ``G`` into ``deltas``,
    the batch's mean loss into ``acc`` (see the module docstring); nothing returns to the host.
    """
    check_code("loss", code, LOSS_NAMES)
    tpb = launch.threads_per_block()
    loss_rows, batch_loss = _kernels(tpb)
    blocks, threads = launch.row_config(m, k)
    loss_rows[blocks, threads](code, work, z_off, targets, deltas, row_loss, m, k)
    scale = 1.0 / m if code == CROSS_ENTROPY else 1.0 / (m * k)
    batch_loss[1, tpb](row_loss, m, scale, acc, status, step)


# -- prediction heads on device arrays ------------------------------------------------
@cuda.jit
def _labels(code, Z, out):
    """Row argmax (cross-entropy; first maximum, as NumPy) or ``Z > 0`` (binary cross-entropy)."""
    n, k = Z.shape
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for i in range(start, n, stride):
        if code == CROSS_ENTROPY:
            out[i, 0] = F.first_argmax(Z[i])
        else:
            for j in range(k):
                out[i, j] = 1 if Z[i, j] > 0 else 0


@cuda.jit
def _probabilities(code, Z, P):
    """Softmax rows (cross-entropy) or sigmoids (binary; ``P = [1 - p, p]`` for one output)."""
    n, k = Z.shape
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for i in range(start, n, stride):
        if code == CROSS_ENTROPY:
            _, s = F.softmax_row(Z[i], P[i])
            for j in range(k):
                P[i, j] /= s
        else:
            for j in range(k):
                p = F.sigmoid(Z[i, j])
                if k == 1:
                    P[i, 0] = 1.0 - p
                    P[i, 1] = p
                else:
                    P[i, j] = p


def labels(code, Z):
    """Class labels of the logits ``Z`` (a device array) as a 2-D int64 device array."""
    check_code("classification loss", code, CLASSIFIERS)
    n, k = Z.shape
    out = cuda.device_array((n, 1 if code == CROSS_ENTROPY else k), dtype=np.int64)
    blocks, threads = launch.launch_config(n)
    _labels[blocks, threads](code, Z, out)
    return out


def probabilities(code, Z):
    """Probabilities of the logits ``Z`` (a device array) as a device array of its dtype."""
    check_code("classification loss", code, CLASSIFIERS)
    n, k = Z.shape
    P = cuda.device_array((n, 2 if (code == BINARY_CROSS_ENTROPY and k == 1) else k), dtype=Z.dtype)
    blocks, threads = launch.launch_config(n)
    _probabilities[blocks, threads](code, Z, P)
    return P
