"""The compiled training loop: sampling, batch gathering, forward, layerwise backprop,
loss and parameter updates for a whole epoch, with no allocation per batch.

Python calls :func:`train_epoch` once per epoch (for progress, validation, early stop);
everything inside an epoch runs here.  Buffers come in as namedtuples so the kernels
keep few arguments and one signature per dtype.
"""
from collections import namedtuple

import numpy as np
from numba import njit, prange

from ... import config
from ..spec import (A_OFF, ACT, B_OFF, FAN_IN, FAN_OUT, GEMM_MIN, IN_OFF, LR, SHUFFLE,
                    UNIFORM, W_OFF, Z_OFF)
from . import formulas as F
from .activations import activation_backward
from .checks import all_finite
from .dense import dense_backward, dense_forward
from .losses import loss_grad
from .updates import optimizer_step
from .views import view2d

#: Work buffers of one fit, one row per shard of a batch (see :func:`train_epoch`):
#: activations ``(S, work)``, the two ping-pong deltas ``(S, 2, delta)``, per-shard
#: gradients ``(S, n_params)`` and losses ``(S,)``; then the batch gradient, a batch of
#: inputs and of targets (flat), and the sample order.
Buffers = namedtuple("Buffers", "work deltas shard_grads shard_losses grad inputs targets order")
#: Integers of an epoch: loss code, batch size, sampling mode, optimizer steps taken
#: before the epoch, seed.
EpochPlan = namedtuple("EpochPlan", "loss batch_size sampling t0 seed")


_view = view2d  # rows m x n of a flat buffer from an offset: (buf, off, m, n)


@njit(cache=config.CACHE)
def forward_layers(X, theta, table, work):
    """``A_i = g_i(A_{i-1} W_i + b_i)`` for every layer; returns the logits (a view)."""
    m = X.shape[0]
    A_prev = X
    for i in range(table.shape[0]):
        k = table[i, FAN_IN]
        n = table[i, FAN_OUT]
        W = _view(theta, table[i, W_OFF], k, n)
        b = theta[table[i, B_OFF]:table[i, B_OFF] + n]
        Z = _view(work, table[i, Z_OFF], m, n)
        A = _view(work, table[i, A_OFF], m, n)
        dense_forward(A_prev, W, b, table[i, ACT], m * k * n >= table[i, GEMM_MIN], Z, A)
        A_prev = A
    return A_prev


@njit(cache=config.CACHE)
def backward_layers(X, theta, table, work, deltas, grad):
    """Layerwise backprop from dL/dZ of the top layer, held in ``deltas[0]``, into ``grad``."""
    m = X.shape[0]
    cur = 0
    for i in range(table.shape[0] - 1, -1, -1):
        k = table[i, FAN_IN]
        n = table[i, FAN_OUT]
        W = _view(theta, table[i, W_OFF], k, n)
        dW = _view(grad, table[i, W_OFF], k, n)
        db = grad[table[i, B_OFF]:table[i, B_OFF] + n]
        delta = _view(deltas[cur], 0, m, n)
        blas = m * k * n >= table[i, GEMM_MIN]
        if i == 0:
            dense_backward(delta, X, W, blas, dW, db, _view(deltas[1 - cur], 0, 0, k))
        else:
            A_prev = _view(work, table[i, IN_OFF], m, k)
            delta_prev = _view(deltas[1 - cur], 0, m, k)
            dense_backward(delta, A_prev, W, blas, dW, db, delta_prev)
            below = table[i - 1]
            activation_backward(deltas[1 - cur][:m * k], work[below[A_OFF]:below[A_OFF] + m * k],
                                work[below[Z_OFF]:below[Z_OFF] + m * k], below[ACT])
            cur = 1 - cur


@njit(cache=config.CACHE)
def loss_and_gradient(X, T, theta, table, work, deltas, grad, loss):
    """Mean loss of batch ``(X, T)``; its gradient w.r.t. ``theta`` goes into ``grad``."""
    m = X.shape[0]
    out = forward_layers(X, theta, table, work)
    G = _view(deltas[0], 0, m, out.shape[1])
    value = loss_grad(out, T, loss, G)
    backward_layers(X, theta, table, work, deltas, grad)
    return value


@njit(cache=config.CACHE, inline="always")
def _copy_rows(src, dst, first_row):
    """``dst[first_row:first_row + len(src)] = src``, as a loop: slice assignment costs
    seconds of compile time."""
    for i in range(src.shape[0]):
        for j in range(src.shape[1]):
            dst[first_row + i, j] = src[i, j]


@njit(cache=config.CACHE)
def forward_chunks(X, theta, table, work, out, cap):
    """Logits of every row of ``X`` into ``out``, ``cap`` rows at a time."""
    n, d = X.shape
    flat = X.reshape(X.size)
    for start in range(0, n, cap):
        m = min(cap, n - start)
        logits = forward_layers(_view(flat, start * d, m, d), theta, table, work)
        _copy_rows(logits, out, start)


@njit(cache=config.CACHE)
def loss_of_logits(Z, T, loss, G, cap):
    """Mean loss of the logits ``Z`` against ``T``, ``cap`` rows at a time (weighted by
    chunk size), with ``G`` (at least ``cap * k`` long) as the gradient scratch.

    Evaluation is :func:`forward_chunks` then this: one forward pass gives the logits
    (for the metric) and the loss, and the two small kernels compile faster than one
    that does both (0.3 s less of a cold start).
    """
    n, k = Z.shape
    n_targets = T.shape[1]
    flat_z = Z.reshape(Z.size)
    flat_t = T.reshape(T.size)
    total = 0.0
    for start in range(0, n, cap):
        m = min(cap, n - start)
        total += m * loss_grad(_view(flat_z, start * k, m, k),
                               _view(flat_t, start * n_targets, m, n_targets), loss,
                               _view(G, 0, m, k))
    return total / n


@njit(cache=config.CACHE)
def _shuffle(order):
    """In-place Fisher-Yates permutation, drawn from Numba's seeded generator."""
    for i in range(order.shape[0]):
        order[i] = i
    for i in range(order.shape[0] - 1, 0, -1):
        j = np.random.randint(0, i + 1)
        order[i], order[j] = order[j], order[i]


@njit(cache=config.CACHE, parallel=True)
def _sharded_gradient(Xb, Tb, theta, table, bufs, loss, n_shards):
    """Mean loss and gradient of a batch cut into ``n_shards`` fixed row shards.

    The shards run in parallel, each into its own buffers, and are combined in shard
    order, so the result depends on the shard count (fixed by the shapes) but never on
    the thread count.  Each shard's mean is weighted by its share of the rows.
    """
    m, d = Xb.shape
    n_targets = Tb.shape[1]
    flat_x = Xb.reshape(m * d)
    flat_t = Tb.reshape(m * n_targets)
    for s in prange(n_shards):
        r0 = s * m // n_shards
        r1 = (s + 1) * m // n_shards
        bufs.shard_losses[s] = loss_and_gradient(
            _view(flat_x, r0 * d, r1 - r0, d), _view(flat_t, r0 * n_targets, r1 - r0, n_targets),
            theta, table, bufs.work[s], bufs.deltas[s], bufs.shard_grads[s], loss)
    value = 0.0
    bufs.grad[:] = 0.0
    for s in range(n_shards):
        share = ((s + 1) * m // n_shards - s * m // n_shards) / m
        value += share * bufs.shard_losses[s]
        for i in range(bufs.grad.shape[0]):
            bufs.grad[i] += share * bufs.shard_grads[s, i]
    return value


@njit(cache=config.CACHE, inline="always")
def _gather(X, T, bufs, sampling, start, m):
    """Copy batch rows (in order, by ``bufs.order``, or drawn uniformly) into the buffers."""
    n, d = X.shape
    n_targets = T.shape[1]
    Xb = _view(bufs.inputs, 0, m, d)
    Tb = _view(bufs.targets, 0, m, n_targets)
    for r in range(m):
        if sampling == UNIFORM:
            idx = np.random.randint(0, n)
        elif sampling == SHUFFLE:
            idx = bufs.order[start + r]
        else:
            idx = start + r
        for c in range(d):
            Xb[r, c] = X[idx, c]
        for c in range(n_targets):
            Tb[r, c] = T[idx, c]
    return Xb, Tb


@njit(cache=config.CACHE, inline="always")
def _epoch(X, T, theta, table, bufs, opt, sched, plan, sharded):
    n = X.shape[0]
    bs = plan.batch_size
    n_steps = (n + bs - 1) // bs
    np.random.seed(plan.seed)
    if plan.sampling == SHUFFLE:
        _shuffle(bufs.order)
    total = 0.0
    seen = 0
    lr = 0.0
    for s in range(n_steps):
        m = min(bs, n - s * bs)
        Xb, Tb = _gather(X, T, bufs, plan.sampling, s * bs, m)
        if sharded:
            value = _sharded_gradient(Xb, Tb, theta, table, bufs, plan.loss,
                                      min(bufs.work.shape[0], m))
        else:
            value = loss_and_gradient(Xb, Tb, theta, table, bufs.work[0], bufs.deltas[0],
                                      bufs.grad, plan.loss)
        # A non-finite loss or gradient stops the epoch before the update, so the
        # weights stay the last finite ones (fit needs no copy of them to restore).
        if not (np.isfinite(value) and all_finite(bufs.grad)):
            return total, seen, s, s, lr
        t = plan.t0 + s  # optimizer steps before this one
        lr = opt.hyper[LR] * F.lr_factor(sched.code, sched.params, t)
        optimizer_step(opt.code, opt.hyper, lr, theta, bufs.grad, opt.state, t)
        total += value * m
        seen += m
    return total, seen, n_steps, -1, lr


@njit(cache=config.CACHE)
def train_epoch(X, T, theta, table, bufs, opt, sched, plan):
    """One epoch of minibatch training; returns ``(loss_sum, samples, steps, failed_step, lr)``.

    ``loss_sum`` is the sum over batches of ``batch loss * batch rows`` (so divided by
    ``samples`` it is the epoch's mean training loss).  ``failed_step`` is -1, or the
    index of the step whose loss or gradient was not finite: the epoch stops there
    without updating.  ``lr`` is the learning rate of the last update (0 if none).
    """
    return _epoch(X, T, theta, table, bufs, opt, sched, plan, False)


@njit(cache=config.CACHE)
def train_epoch_sharded(X, T, theta, table, bufs, opt, sched, plan):
    """:func:`train_epoch` with each batch's gradient from :func:`_sharded_gradient`.

    A separate entry point so the parallel code is compiled only when shards are used.
    """
    return _epoch(X, T, theta, table, bufs, opt, sched, plan, True)


@njit(cache=config.CACHE, parallel=True)
def train_epoch_many(X, T, thetas, tables, bufs, opts, scheds, plans, results):
    """One epoch of each of several nets on the same data, the nets in parallel.

    Row ``r`` of the int64 ``plans`` is ``(net, loss, batch_size, sampling, t0, seed)``:
    net ``plans[r, 0]`` (an index into the typed lists ``thetas``, ``tables``, ``bufs``,
    ``opts``, ``scheds``) trains one epoch exactly as :func:`train_epoch` would, and
    ``results[r]`` gets its ``(loss_sum, samples, steps, failed_step, lr)``.  A net runs
    on one thread from start to end (Numba's generator is per thread, and its epoch
    seeds it), so the results are those of the nets' own epochs, whatever the thread
    count.  Callers keep every product below ``blas.PARALLEL_MACS`` (no nested
    parallel regions).
    """
    for r in prange(plans.shape[0]):
        i = plans[r, 0]
        plan = EpochPlan(plans[r, 1], plans[r, 2], plans[r, 3], plans[r, 4], plans[r, 5])
        # Called, not inlined: the epoch's early exits would keep the loop serial.
        total, seen, steps, failed, lr = train_epoch(X, T, thetas[i], tables[i], bufs[i], opts[i],
                                                     scheds[i], plan)
        results[r, 0] = total
        results[r, 1] = seen
        results[r, 2] = steps
        results[r, 3] = failed
        results[r, 4] = lr
