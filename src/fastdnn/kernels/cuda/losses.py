"""CUDA twins of :mod:`fastdnn.kernels.cpu.losses`: the loss heads (loss + gradient w.r.t.
the logits) and the prediction heads, with the formulas of :mod:`fastdnn.kernels.spec`.

Targets come packed as on the CPU (``spec.pack_targets``): a row of ``targets`` holds
the class label (cross-entropy) or the ``k`` targets, then the row's sample weight
``w``; every head is the weighted mean ``sum(w l) / sum(w)`` (0, with a zero gradient,
for a batch whose weights sum to 0).

One block per row (blocks stride over rows): its threads stride over the row's
columns, and block reductions in shared memory give the row's max and sum, so the
softmax is the stable ``exp(z - max)`` of the CPU head.  :func:`loss_grad` first sums
the batch's weights in one block, then each row's weighted loss goes to ``row_loss``,
and one block sums the rows in a fixed order (no atomics: the same inputs give the
same bits) into an accumulator on the device, so the host reads the loss only at
epoch ends.

The float64 accumulator ``acc`` has the slots below: ``LAST`` the step's loss (the
batch's weighted mean, plus the L2 penalty once :func:`.train.l2_penalty` added it),
``BATCH_WEIGHT`` its weight sum; ``TRAIN_SUM`` and ``TRAIN_WEIGHT`` the sums of ``loss *
weight`` and of the weights over the steps that updated (:func:`book_step`, called by
the update kernels of :mod:`.updates`); ``EVAL_SUM`` and ``EVAL_WEIGHT`` the same over
every batch the head saw (evaluation); ``PENALTY`` the last L2 penalty and
``CLIP_FACTOR`` the last gradient-clipping factor.  No ``fastmath``: the log-sum-exp
must keep IEEE semantics.
"""
import functools
import math

import numpy as np
from numba import cuda, float64

from ..spec import (BINARY_CROSS_ENTROPY, CLASSIFIERS, CROSS_ENTROPY, LOSS_NAMES, MSE, POISSON,
                    REGRESSORS, check_code)
from . import formulas as F
from . import dispatch, launch

#: Slots of the float64 accumulator (see the module docstring).
(TRAIN_SUM, LAST, EVAL_SUM, BATCH_WEIGHT, TRAIN_WEIGHT, EVAL_WEIGHT, PENALTY,
 CLIP_FACTOR) = range(8)
N_ACC = 8


@cuda.jit(device=True)
def book_step(acc):
    """Count the step's loss and weight into the training sums (the step updated)."""
    acc[TRAIN_SUM] += acc[LAST] * acc[BATCH_WEIGHT]
    acc[TRAIN_WEIGHT] += acc[BATCH_WEIGHT]


@cuda.jit(device=True)
def _inverse(total):
    """``1 / total``, or 0 for a batch whose weights are all 0 (it then adds nothing)."""
    return 1.0 / total if total > 0 else 0.0


@cuda.jit(device=True)
def block_reduce(sh, value, take_max):
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
    def batch_weight(targets, m, cols, acc):
        """``acc[BATCH_WEIGHT]``: the sum of the weights, column ``cols - 1`` of the
        ``m x cols`` targets, in one block."""
        sh = cuda.shared.array(tpb, dtype=float64)
        t = cuda.threadIdx.x
        total = float64(0.0)  # float64 in the simulator too (see .train)
        for i in range(t, m, cuda.blockDim.x):
            total += targets[i * cols + cols - 1]
        total = block_reduce(sh, total, False)
        if t == 0:
            acc[BATCH_WEIGHT] = total

    @cuda.jit
    def loss_rows(code, work, z_off, targets, deltas, row_loss, m, k, acc):
        """Per row: ``row_loss = w l`` and ``G`` (dL/dZ of the weighted batch mean) into
        ``deltas[:m*k]``."""
        sh = cuda.shared.array(tpb, dtype=float64)
        t = cuda.threadIdx.x
        nt = cuda.blockDim.x
        if code == CROSS_ENTROPY:
            cols = 2
            inv = _inverse(acc[BATCH_WEIGHT])
        else:
            cols = k + 1
            inv = _inverse(acc[BATCH_WEIGHT] * k)
        for i in range(cuda.blockIdx.x, m, cuda.gridDim.x):
            row = z_off + i * k
            g_row = i * k
            w = targets[i * cols + cols - 1]
            share = w * inv
            if code == CROSS_ENTROPY:
                zmax = -math.inf
                for j in range(t, k, nt):
                    zmax = max(zmax, work[row + j])
                zmax = block_reduce(sh, zmax, True)
                s = 0.0
                for j in range(t, k, nt):
                    # exp of a non-positive number: never overflows, even for logits of 1e4.
                    e = math.exp(work[row + j] - zmax)
                    deltas[g_row + j] = e
                    s += e
                s = block_reduce(sh, s, False)
                y = int(targets[i * cols])
                scale = share / s
                for j in range(t, k, nt):
                    g = deltas[g_row + j] * scale
                    if j == y:
                        g -= share
                    deltas[g_row + j] = g
                if t == 0:
                    row_loss[i] = w * F.cross_entropy_term(zmax, s, work[row + y])
            else:
                total = float64(0.0)
                for j in range(t, k, nt):
                    z = work[row + j]
                    y = targets[i * cols + j]
                    if code == MSE:
                        term, g = F.squared_error(z, y, share)
                    elif code == BINARY_CROSS_ENTROPY:
                        term, g = F.sigmoid_cross_entropy(z, y, share)
                    elif code == POISSON:
                        term, g = F.poisson_nll(z, y, share)
                    else:  # never reached: loss_grad checked the code
                        term, g = math.nan, math.nan
                    total += w * term
                    deltas[g_row + j] = g
                total = block_reduce(sh, total, False)
                if t == 0:
                    row_loss[i] = total

    @cuda.jit
    def batch_loss(code, row_loss, m, k, acc):
        """``acc[LAST] = sum(row_loss[:m]) / sum(w)`` (over ``k`` too for the elementwise
        heads) in one block; counted into the evaluation sums."""
        sh = cuda.shared.array(tpb, dtype=float64)
        t = cuda.threadIdx.x
        total = 0.0
        for i in range(t, m, cuda.blockDim.x):
            total += row_loss[i]
        total = block_reduce(sh, total, False)
        if t == 0:
            weight = acc[BATCH_WEIGHT]
            value = total * _inverse(weight if code == CROSS_ENTROPY else weight * k)
            acc[LAST] = value
            acc[EVAL_SUM] += value * weight
            acc[EVAL_WEIGHT] += weight

    return batch_weight, loss_rows, batch_loss


def loss_grad(code, work, z_off, targets, deltas, row_loss, m, k, acc):
    """Loss head ``code`` on the ``m x k`` logits at ``work[z_off:]`` against the packed
    ``targets``: ``G`` into ``deltas``, the batch's weighted mean loss and its weight sum
    into ``acc`` (see the module docstring); nothing returns to the host.
    """
    check_code("loss", code, LOSS_NAMES)
    tpb = launch.threads_per_block()
    batch_weight, loss_rows, batch_loss = _kernels(tpb)
    cols = 2 if code == CROSS_ENTROPY else k + 1
    dispatch.call(batch_weight, 1, tpb, targets, m, cols, acc)
    blocks, threads = launch.row_config(m, k)
    dispatch.call(loss_rows, blocks, threads, code, work, z_off, targets, deltas, row_loss, m,
                  k, acc)
    dispatch.call(batch_loss, 1, tpb, code, row_loss, m, k, acc)


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
    """Softmax rows (cross-entropy) or sigmoids (binary; ``[sigmoid(-z), sigmoid(z)]`` for
    one output)."""
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
                if k == 1:  # sigmoid(-z), not 1 - p: 3.4e-8 off (relative) at z = 20
                    P[i, 0] = F.sigmoid(-Z[i, 0])
                    P[i, 1] = F.sigmoid(Z[i, 0])
                else:
                    P[i, j] = F.sigmoid(Z[i, j])


@cuda.jit
def _predictions(code, Z, out):
    """``spec.inverse_link`` of each logit: ``exp(Z)`` for poisson (in place allowed)."""
    n, k = Z.shape
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for i in range(start, n, stride):
        for j in range(k):
            out[i, j] = F.inverse_link(Z[i, j], code)


def predictions(code, Z):
    """Values of a regression loss ``code`` from the logits ``Z`` (a device array, which
    they overwrite): ``Z`` itself for mse, ``exp(Z)`` for poisson."""
    check_code("regression loss", code, REGRESSORS)
    if code != MSE:
        blocks, threads = launch.launch_config(Z.shape[0])
        _predictions[blocks, threads](code, Z, Z)
    return Z


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
