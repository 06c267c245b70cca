"""The compiled training loop: sampling, batch gathering, forward (with dropout), layerwise
backprop, the loss, the L2 penalty, gradient clipping, the overflow guard and the
parameter updates of a run of steps, with no allocation per batch but two small ones: on
OpenBLAS' AVX-512 cores the backprop through a layer narrower than 32 copies its ``W.T``
(at most 32 rows; see :func:`.blas.matmul_nt`), which costs less than the product it
speeds up; and plain SGD's fused step on a big net (:func:`_batch_sgd_update`) makes
its two BLAS scalars.

Python calls :func:`train_steps` for a slice of an epoch's steps (a whole epoch, or as
many steps as run in a fraction of a second, so that Ctrl-C and progress reports
come between slices); everything inside a slice runs here.  Where an epoch is cut
changes nothing: the permutation is drawn when the epoch starts, and every other
random number (uniform draws, dropout masks) is a hash of the epoch seed and its
position (:func:`fastdnn.kernels.spec.mix64`).  Buffers come in as namedtuples so the
kernels keep few arguments and one signature per dtype.
"""
import math
from collections import namedtuple

import numpy as np
from numba import prange, types

from ... import config
from ..spec import (A_OFF, ACT, ADAM, B_OFF, CLIP_NORM, CLIP_TINY_SQUARES, DROP, FAN_IN,
                    FAN_OUT, GEMM_MIN, IN_OFF, L2, L2_WEIGHT, LR, MOMENTUM, NESTEROV, OUT_OFF,
                    SGD, SHUFFLE, UNIFORM, W_OFF, WEIGHT_DECAY, Z_OFF, OptimizerArgs,
                    ScheduleArgs)
from . import formulas as F
from . import pair  # an import cycle: pair's shards call loss_and_gradient (when compiled)
from .activations import activate, activation_backward
from .blas import matmul_tn, matmul_tn_add
from .checks import abs_bound, max_abs
from .dense import _weight_grad_rows, dense_backward, dense_forward
from .losses import loss_grad, loss_grad_inlined, weight_sum
from .scalars import max2, min2
from .separate import separate
from .updates import (LIMIT, SAFE, SAFE_REFRESH, UNSAFE, _sgd_scalars, bounds_are_safe,
                      exact_safety,
                      lr_factor, optimizer_step, refresh_bounds, sgd_rows, sgd_update)
from .views import borrow, view2d
from .views import flat as flat_view
from .wide import max_abs_wide, optimizer_step_wide
from .pipeline import njit

#: Work buffers of one fit, one row per shard slot of a batch (see :func:`train_steps`):
#: activations ``(S, work)``, the two ping-pong deltas ``(S, 2, delta)`` (for
#: :func:`train_steps_wide_sgd`, the first of them as long as a stack of every layer's:
#: :func:`stack_size`), per-shard
#: gradients ``(S, n_params)`` and losses ``(S,)``; then the batch gradient, a batch of
#: inputs and of targets (flat), the sample order, the overflow guard's float64 bounds
#: (:mod:`.updates`), the int64 control block of two-shard steps (:mod:`.pair`; its
#: ``N_SHARDS`` slot says whether a step is one pass or two shards), and the helper's
#: rows of a paired Adam update (:func:`.pair.paired_adam`; empty if none), and the
#: epoch's float64 loss and weight sums so far (:func:`epoch_sums`).
Buffers = namedtuple("Buffers",
                     "work deltas shard_grads shard_losses grad inputs targets order guard "
                     "control moved sums")
#: Integers of a run of steps: loss code, batch size, sampling mode, optimizer steps
#: taken before step ``first``, the epoch's seed, and the steps ``[first, end)`` of the
#: epoch to run.
EpochPlan = namedtuple("EpochPlan", "loss batch_size sampling t0 seed first end")
#: Random key of the forward passes that never drop (inference, evaluation).
NO_KEY = np.uint64(0)


_view = view2d  # rows m x n of a flat buffer from an offset: (buf, off, m, n)


# Calls, not inlined: a dropout fit pays one call per layer and pass, and the two loops
# are compiled once each instead of into each pass (a cold start 0.5 s).  Two functions,
# for the forward copy and the backward in place: one loop over the same memory as both
# its arrays fails LLVM's run-time overlap check and runs scalar.  error_model="numpy":
# see forward_layers.
@separate(returns=types.none)
@njit(cache=config.CACHE, error_model="numpy")
def _dropout(A, D, key, row0, layer, threshold):
    """``D = A * mask``: inverted dropout of hidden layer ``layer`` for batch rows from ``row0``."""
    for r in range(A.shape[0]):
        for j in range(A.shape[1]):
            D[r, j] = A[r, j] * F.dropout_scale(key, row0 + r, layer, j, threshold)


@separate(returns=types.none)
@njit(cache=config.CACHE, error_model="numpy")
def _dropout_in_place(D, key, row0, layer, threshold):
    """``D *= mask``, the mask of :func:`_dropout` (the backward pass through it)."""
    for r in range(D.shape[0]):
        for j in range(D.shape[1]):
            D[r, j] *= F.dropout_scale(key, row0 + r, layer, j, threshold)


# error_model="numpy": under Python's, a float division checks its divisor for zero, and
# that branch kept the float32 tanh's loop (p / q per element) scalar: 3.1 -> 0.7 ns an
# element (Intel Xeon).  Nothing here divides by zero on purpose.
@separate
@njit(cache=config.CACHE, error_model="numpy")
def forward_layers(X, theta, table, work, key, row0):
    """``A_i = g_i(A_{i-1} W_i + b_i)`` for every layer; returns the logits (a view).

    Layers with a dropout threshold (training layouts only) pass on ``A_i`` times a mask
    drawn from ``key`` for the batch rows numbered from ``row0``.
    """
    m = X.shape[0]
    A_prev = X
    for i in range(table.shape[0]):
        k = table[i, FAN_IN]
        n = table[i, FAN_OUT]
        W = _view(theta, table[i, W_OFF], k, n)
        b = theta[table[i, B_OFF]:table[i, B_OFF] + n]
        Z = _view(work, table[i, Z_OFF], m, n)
        A = _view(work, table[i, A_OFF], m, n)
        dense_forward(A_prev, W, b, m * k * n >= table[i, GEMM_MIN], Z)
        activate(work[table[i, Z_OFF]:table[i, Z_OFF] + m * n], table[i, ACT],
                 work[table[i, A_OFF]:table[i, A_OFF] + m * n])
        A_prev = A
        if table[i, DROP] > 0:
            A_prev = _view(work, table[i, OUT_OFF], m, n)
            _dropout(A, A_prev, key, row0, i, table[i, DROP])
    return A_prev


# Inlined into the one caller that runs per step: as a call its array arguments' reference
# counting and set-up cost 2-8-8-1 online SGD 9% (1.02x -> 1.11x of 6dc4e9d, best of 3,
# quiet Intel Xeon); cold compile unchanged (12.0 s).  Inlining the forward pass too
# gained nothing measurable and cost 1.4 s of compile (it also serves inference).
@njit(cache=config.CACHE, inline="always")
def backward_layers(X, theta, table, work, deltas, grad, key, row0, weights, one_row,
                    stacked=False):
    """Layerwise backprop from dL/dZ of the top layer, held in ``deltas[0]``, into ``grad``
    (through the dropout masks of :func:`forward_layers` with the same ``key``, ``row0``).

    ``weights`` False: only the biases' gradients, which are the layers' dL/dZ; the
    weights' are left to online SGD's update (:func:`_fused_sgd_step`) or to the batch
    SGD's (:func:`_fused_batch_sgd_step`).  A constant True in :func:`loss_and_gradient`,
    whose pruned branch is then never compiled.  ``one_row``: a constant, True for
    one-row batches (see :func:`.dense.dense_backward`).  ``stacked`` (a constant): every
    layer's dL/dZ is kept, in the flat ``deltas`` at :func:`stack_offset` (the top
    layer's there too); else the two rows of ``deltas`` take turns."""
    m = X.shape[0]
    flat = flat_view(deltas)
    turn = deltas.shape[1]  # a row of the ping-pong pair
    cur = 0
    off = stack_offset(table, table.shape[0] - 1, m) if stacked else 0
    for i in range(table.shape[0] - 1, -1, -1):
        k = table[i, FAN_IN]
        n = table[i, FAN_OUT]
        W = _view(theta, table[i, W_OFF], k, n)
        dW = _view(grad, table[i, W_OFF], k, n)
        db = grad[table[i, B_OFF]:table[i, B_OFF] + n]
        here = off if stacked else cur * turn
        below_off = (off - m * k if i > 0 else 0) if stacked else (1 - cur) * turn
        delta = _view(flat, here, m, n)
        blas = m * k * n >= table[i, GEMM_MIN]
        # One call site (the first layer passes X and an empty delta_prev): each inlined
        # copy of dense_backward is compiled anew.
        A_prev = X if i == 0 else _view(work, table[i, IN_OFF], m, k)
        delta_prev = _view(flat, below_off, 0 if i == 0 else m, k)
        dense_backward(delta, A_prev, W, blas, dW, db, delta_prev, weights, one_row)
        if i > 0:
            below = table[i - 1]
            if below[DROP] > 0:
                _dropout_in_place(delta_prev, key, row0, i - 1, below[DROP])
            activation_backward(flat[below_off:below_off + m * k],
                                work[below[A_OFF]:below[A_OFF] + m * k],
                                work[below[Z_OFF]:below[Z_OFF] + m * k], below[ACT])
            cur = 1 - cur
            off = below_off


@njit(cache=config.CACHE, inline="always")
def stack_offset(table, i, m):
    """Where layer ``i``'s dL/dZ (``m`` rows) starts in a stack of every layer's
    (:func:`loss_and_deltas`): after the rows of the layers below it."""
    off = 0
    for j in range(i):
        off += m * table[j, FAN_OUT]
    return off


def stack_size(sizes, rows):
    """Elements of a stack of every layer's dL/dZ for ``rows`` rows (:func:`stack_offset`)."""
    return rows * sum(sizes[1:])


# Declared, so that a kernel calling it compiles without it (and a second process can
# compile it meanwhile: .warmup).
@separate(returns=types.float64)
@njit(cache=config.CACHE)
def loss_and_gradient(X, T, theta, table, work, deltas, grad, loss, key, row0):
    """Weighted mean loss of batch ``(X, T)``; its gradient w.r.t. ``theta`` goes into
    ``grad`` (dropout masks from ``key`` for rows from ``row0``; no penalty)."""
    m = X.shape[0]
    out = forward_layers(X, theta, table, work, key, row0)
    G = _view(deltas[0], 0, m, out.shape[1])
    value = loss_grad(out, T, loss, G)
    backward_layers(X, theta, table, work, deltas, grad, key, row0, True, False)
    return value


@separate(returns=types.float64)
@njit(cache=config.CACHE)
def loss_and_deltas(X, T, theta, table, work, deltas, grad, loss, key, row0):
    """:func:`loss_and_gradient` but for the weights' gradients: the biases' go into
    ``grad``, and every layer's dL/dZ stays in ``deltas`` (flat, at :func:`stack_offset`),
    from which :func:`_fused_batch_sgd_step` forms the weights' update."""
    m = X.shape[0]
    top = stack_offset(table, table.shape[0] - 1, m)
    n_out = table[table.shape[0] - 1, FAN_OUT]
    if deltas.size < top + m * n_out:
        raise ValueError("the delta buffer is too small for every layer's dL/dZ")
    out = forward_layers(X, theta, table, work, key, row0)
    G = _view(deltas.reshape(deltas.size), top, m, n_out)
    value = loss_grad(out, T, loss, G)
    backward_layers(X, theta, table, work, deltas, grad, key, row0, False, False, True)
    return value


# The forward pass and loss_and_gradient inlined, for the one-row steps of online SGD
# (train_steps_online).  As calls, their two dozen array arguments (each passed as seven
# words, and counted in and out by NRT_incref/NRT_decref even when borrowed) were a third
# of a 2-8-8-1 step: inlined, 388 -> 251 ns a step (Intel Xeon), where batches of 32 rows
# or more gained nothing measurable.  A second dispatcher of the same function, never
# compiled on its own, so the forward pass of every other caller stays one call.
_forward_layers_inlined = njit(inline="always")(forward_layers.py_func)


@njit(cache=config.CACHE, inline="always")
def _online_loss_and_deltas(X, T, theta, table, work, deltas, grad, loss, key, row0):
    """:func:`loss_and_gradient` with the forward pass inlined, for one row; for a net
    with a wide layer, without the weights' gradients: only the biases' (the layers'
    dL/dZ), from which :func:`_fused_sgd_step` forms the rest."""
    out = _forward_layers_inlined(X, theta, table, work, key, row0)
    G = _view(deltas[0], 0, X.shape[0], out.shape[1])
    value = loss_grad_inlined(out, T, loss, G)
    backward_layers(X, theta, table, work, deltas, grad, key, row0, not _has_wide_layer(table),
                    True)
    return value


@njit(cache=config.CACHE, inline="always")
def _has_wide_layer(table):
    """Whether a layer has ``FUSED_MIN_WIDTH`` outputs or more (see :func:`_sgd_rank_one`)."""
    for i in range(table.shape[0]):
        if table[i, FAN_OUT] >= FUSED_MIN_WIDTH:
            return True
    return False


@njit(cache=config.CACHE, inline="always")
def _layer_input(table, inputs, work, i):
    """The row layer ``i`` of a one-row step read: the gathered input (``inputs``), or
    the output (or dropped-out copy) of the layer below (in ``work``)."""
    k = table[i, FAN_IN]
    if i == 0:
        return inputs[:k]
    return work[table[i, IN_OFF]:table[i, IN_OFF] + k]


@njit(cache=config.CACHE, inline="always")
def _abs_max(x):
    """``max |x|`` (0 for an empty ``x``), or inf if an element is NaN."""
    top = 0.0
    for v in x:
        a = abs(v)
        if a > top:
            top = a
        elif a != a:
            return np.inf
    return top


# Online SGD, fused.  A one-row step's weight gradient is the outer product a db^T of the
# layer's input and its dL/dZ: formed inside the update, it is never written, and the
# guard's bound on |grad| (checks.max_abs) is max|a| max|db|, exactly, rounding being
# monotone.  The general sequence made three more passes over the parameters (write dW,
# scan it, read it back): on 64-128-128-10 (26 K parameters) a step took 10.3 us with
# them, 6.9 without (float32 tanh, Intel Xeon).
@njit(cache=config.CACHE, inline="always")
def _fused_sgd_step(theta, table, bufs, opt, sched, value, t, m):
    """Step ``t`` of online SGD from the one-row gradient :func:`_online_loss_and_deltas`
    left: ``(False, 0.0)`` for a net without a wide layer, whose gradient is complete,
    which leaves the step to the general sequence; else :func:`_fused_wide_step`.  ``m``:
    the batch's rows, 1."""
    if not _has_wide_layer(table):
        return False, 0.0
    return _fused_wide_step(theta, table, bufs.inputs, bufs.work[0], bufs.grad, bufs.guard,
                            opt.code, opt.hyper, opt.state[0], sched.code, sched.params,
                            value, t)


# A call, compiled on its own (.separate), not inlined into the online kernel: with it
# inlined, that kernel had 5,594 Numba IR statements, now 4,694, which every first online
# fit compiled, where only nets with a wide layer reach it (their steps take microseconds:
# a call is nothing there).  So a net without one never compiles it, and the compile
# helper compiles it for a net with one while this process compiles the kernel.  A cold
# first online `fastdnn train` took 8.04 -> 7.50 s (its 64-128-128-10 net), with parity's
# 8-128-128-2 8.28 -> 7.36 s, with 8-32-32-2 (no wide layer) 8.19 -> 6.86 s (medians of 5,
# 4 and 4, alternated); steps ran 1.04x as fast on 64-128-128-10, 0.96x on 16-32-32-2 (a
# change of the kernel's code, not of its work; views.flat then took it to 1.29x), 1.01x
# on 2-8-8-1 (AMD EPYC, benchmarks/ab_trees.py).
@separate(returns=types.Tuple((types.boolean, types.float64)))
@njit(cache=config.CACHE, error_model="numpy")
def _fused_wide_step(theta, table, inputs, work, grad, guard, code, hyper, velocity, schedule,
                     params, value, t):
    """Step ``t`` of online SGD for a net with a wide layer, whose one-row gradient left
    the biases' gradients only in ``grad``: with plain or momentum SGD (optimizer
    ``code``, ``hyper``), no L2 penalty, no clipping, a finite loss ``value`` and gradient,
    and the guard's bounds safe, the update with the weights' gradient formed on the fly
    (:func:`_sgd_rank_one`, onto ``theta`` and its ``velocity``); returns ``(True, lr)``.
    Otherwise the weights' gradient is written into ``grad`` and ``(False, 0.0)`` leaves
    the step to the general sequence (which then finds what stopped this one).
    ``schedule`` and ``params``: the learning rate's schedule.

    The same arithmetic as that sequence, element by element (``spec.sgd_step`` of the
    same gradient), so the same weights, but for the sign of a zero gradient where the
    general sequence formed ``dW`` in BLAS (one-row products from
    :func:`.backend.one_row_gemm_macs`), whose ``0 + a b`` turns -0 into +0.
    """
    c = theta.dtype.type
    if code == SGD and hyper[L2] == 0.0 and hyper[CLIP_NORM] == 0.0 and np.isfinite(value):
        top = 0.0
        for i in range(table.shape[0]):
            n = table[i, FAN_OUT]
            dmax = _abs_max(grad[table[i, B_OFF]:table[i, B_OFF] + n])
            amax = _abs_max(_layer_input(table, inputs, work, i))
            peak = c(amax) * c(dmax)  # NaN for inf * 0, as the element a_p db_j it bounds
            top = max2(max2(top, dmax), peak) if peak == peak else np.inf
        if np.isfinite(top):
            lr = hyper[LR] * lr_factor(schedule, params, t)
            if bounds_are_safe(code, hyper, lr, t, abs_bound(top, theta), guard):
                _sgd_rank_one(theta, table, inputs, work, grad, velocity, lr, hyper[MOMENTUM],
                              hyper[NESTEROV] != 0.0, hyper[WEIGHT_DECAY], t == 0)
                return True, lr
    for i in range(table.shape[0]):
        _write_weight_grad(table, inputs, work, grad, i)
    return False, 0.0


#: Layers at least this wide have their SGD update fused row by row (:func:`_sgd_rank_one`);
#: narrower ones write their weight gradient and update ``[W, b]`` as the general
#: sequence does, and a net with none takes the general sequence.  Fused rows of a few
#: elements ran at loop overhead: fused throughout, 2-8-8-1 took 362 against 266 ns a
#: step, 16-32-32-2 1162 against 925 ns, where 64-128-128-10 took 6.6 against 10.3 us
#: (Intel Xeon, float32 tanh).  The same width on an AMD EPYC (Zen 4): from 32, 16-32-32-2
#: took 1.42x and 64-128-128-10 1.09x the time; never fused, 64-128-128-10 1.28x (medians
#: of 5, each width its own source tree, interleaved).
FUSED_MIN_WIDTH = 64


# A call, not inlined: inlined into the epoch loop, its loops over the parameters ran
# scalar (as the update loops of .updates do there).  Declared (.separate): a net
# without a wide layer never compiles it (1.2 s of a first online fit, Intel Xeon).
@separate(returns=types.none)
@njit(cache=config.CACHE, error_model="numpy")
def _sgd_rank_one(theta, table, inputs, work, grad, velocity, lr, momentum, nesterov,
                  weight_decay, first):
    """:func:`.updates.sgd_update` of a one-row step whose weight gradients ``a db^T``
    (``db`` in ``grad``) are formed per element in the update, for layers of
    ``FUSED_MIN_WIDTH`` outputs or more, or else written first."""
    lr_, mu, wd, tiny = _sgd_scalars(theta, lr, momentum, weight_decay)
    c = theta.dtype.type
    for i in range(table.shape[0]):
        n = table[i, FAN_OUT]
        w_off = table[i, W_OFF]
        b_off = table[i, B_OFF]  # = w_off + fan_in * n: [W, b] is one run of theta
        if n >= FUSED_MIN_WIDTH:
            a = _layer_input(table, inputs, work, i)
            db = grad[b_off:b_off + n]
            k = table[i, FAN_IN]
            for p in range(k + 1):  # the rows of W, then b (a row of a = 1)
                off = w_off + p * n  # b_off for p = k
                # Slices from 0: indexed from ``off``, whose sign Numba cannot know, every
                # access took the negative-index wraparound and the loop ran scalar.
                sgd_rows(theta[off:off + n], db, a[p] if p < k else c(1.0),
                         velocity[off:off + n], lr_, mu, momentum != 0.0, nesterov, wd, first,
                         tiny)
        else:
            _write_weight_grad(table, inputs, work, grad, i)
            end = b_off + n
            sgd_update(theta[w_off:end], grad[w_off:end],
                       velocity[w_off:end] if momentum != 0.0 else velocity, lr, momentum,
                       nesterov, weight_decay, first)


@njit(cache=config.CACHE, inline="always")
def _write_weight_grad(table, inputs, work, grad, i):
    """``dW = a db^T`` of layer ``i`` of a one-row step into ``grad``: the one-row
    product of :func:`.dense._weight_grad_rows` (whose ``db = delta`` rewrites ``db``
    with itself here)."""
    k = table[i, FAN_IN]
    n = table[i, FAN_OUT]
    a = _view(inputs, 0, 1, k) if i == 0 else _view(work, table[i, IN_OFF], 1, k)
    delta = _view(grad, table[i, B_OFF], 1, n)
    _weight_grad_rows(delta, a, _view(grad, table[i, W_OFF], k, n), delta[0], True)


# Batch SGD, fused.  Plain SGD's step on a big net wrote each weight gradient (BLAS
# zeroed it first), scanned it for the guard, and read it back with the weights to
# update them: three passes over the parameters besides the products.  Here the
# product adds ``-lr A_prev.T @ delta`` onto the weights themselves (BLAS with beta 1),
# and the guard's bound on |dW| comes from the operands: each element is a sum of m
# products, so |dW| <= m max|A_prev| max|delta| (twice that covers the sum's rounding).
# The weights take a rounding per BLAS K-panel of rows (~256; OpenBLAS adds each panel
# onto C), where the general sequence rounded the gradient, then the step: as accurate
# at batch 256, ~1 ulp of W more at 4,096 rows, ~3 at 65,536 (float32 against float64,
# 256-512-1); the last bits differ from it, never between thread counts.
@njit(cache=config.CACHE, inline="always")
def plain_sgd(code, hyper):
    """Whether the optimizer ``code`` with the float64 ``hyper`` (the penalty and the
    clipping bound in it) is SGD without momentum, weight decay, an L2 penalty or
    clipping: the update :func:`train_steps_wide_sgd` fuses into the products.  The
    backend picks that kernel by the same test (its ``py_func``)."""
    return (code == SGD and hyper[MOMENTUM] == 0.0 and hyper[WEIGHT_DECAY] == 0.0
            and hyper[L2] == 0.0 and hyper[CLIP_NORM] == 0.0)


@njit(cache=config.CACHE, inline="always")
def _fused_batch_sgd_step(theta, table, bufs, opt, sched, value, t, m):
    """Step ``t`` of plain SGD on a batch of ``m`` rows from what :func:`loss_and_deltas`
    left: the update of :func:`_batch_sgd_update`, returning ``(True, lr)``; or, where
    the optimizer is not plain SGD (momentum, weight decay, an L2 penalty or clipping),
    the loss is not finite or the guard's bounds are not safe, the weights' gradients
    written into ``bufs.grad`` and ``(False, 0.0)``: the general sequence takes the step
    (and finds what stopped this one)."""
    hyper = opt.hyper
    lr = hyper[LR] * lr_factor(sched.code, sched.params, t)
    if _batch_sgd_update(theta, table, bufs.inputs, bufs.work[0], bufs.deltas[0], bufs.grad,
                         opt.state[0], bufs.guard, hyper, lr, t, m,
                         plain_sgd(opt.code, hyper) and np.isfinite(value)):
        return True, lr
    return False, 0.0


@separate(returns=types.boolean)
@njit(cache=config.CACHE, error_model="numpy")
def _batch_sgd_update(theta, table, inputs, work, deltas, grad, velocity, guard, hyper, lr, t,
                      m, fuse):
    """Plain SGD's step from every layer's dL/dZ (``deltas``, stacked as
    :func:`loss_and_deltas` left them) and the biases' gradients (in ``grad``), when
    ``fuse`` and the guard's bounds (advanced here) rule out an overflow: each weight
    gradient's product added onto the weights (:func:`.blas.matmul_tn_add`), the biases
    and the loop layers' weights updated as :func:`.updates.sgd_update` does (``velocity``:
    plain SGD's, empty); returns True.  Otherwise writes the weights' gradients into
    ``grad`` (as :func:`loss_and_gradient` does) and returns False.

    The calls of :func:`.checks.max_abs` and :func:`.updates.sgd_update` pass the types
    the general sequence passes them (flat arrays, no literal flags): others compiled
    them a second time, 1 s of the first fit.
    """
    flat = deltas.reshape(deltas.size)
    top = 0.0
    off = 0
    for i in range(table.shape[0]):
        k = table[i, FAN_IN]
        n = table[i, FAN_OUT]
        A_prev = _view(inputs, 0, m, k) if i == 0 else _view(work, table[i, IN_OFF], m, k)
        delta = _view(flat, off, m, n)
        db = grad[table[i, B_OFF]:table[i, B_OFF] + n]
        if m * k * n < table[i, GEMM_MIN]:  # the loop layers' gradients: cheap, written
            dW = _view(grad, table[i, W_OFF], k, n)
            _weight_grad_rows(delta, A_prev, dW, db)
            top = max2(top, max_abs(grad[table[i, W_OFF]:table[i, B_OFF]]))
        elif fuse:
            a_off = 0 if i == 0 else table[i, IN_OFF]
            a_max = max_abs((inputs if i == 0 else work)[a_off:a_off + m * k])
            peak = 2.0 * m * a_max * max_abs(flat[off:off + m * n])  # NaN for inf * 0
            top = max2(top, peak) if peak == peak else np.inf
        top = max2(top, max_abs(db))
        off += m * n
    # BLAS forms each product A_prev.T delta in the net's dtype before scaling it by -lr:
    # its bound must fit there too (2^66 x 2^66 overflowed float32 into the weights).
    fuse = (fuse and np.isfinite(top) and top <= guard[LIMIT]
            and bounds_are_safe(SGD, hyper, lr, t, top, guard))
    scalars = theta[:0]
    if fuse:
        scalars = np.empty(2, theta.dtype)
        scalars[0] = -lr
        scalars[1] = 1.0
    off = 0
    for i in range(table.shape[0]):
        k = table[i, FAN_IN]
        n = table[i, FAN_OUT]
        w_off = table[i, W_OFF]
        b_off = table[i, B_OFF]
        A_prev = _view(inputs, 0, m, k) if i == 0 else _view(work, table[i, IN_OFF], m, k)
        delta = _view(flat, off, m, n)
        off += m * n
        blas = m * k * n >= table[i, GEMM_MIN]
        if blas and fuse:
            matmul_tn_add(A_prev, delta, _view(theta, w_off, k, n), scalars)
        elif blas:
            matmul_tn(A_prev, delta, _view(grad, w_off, k, n))
        if fuse:  # [W, b] is one run of theta; a BLAS layer's W is updated already
            first = b_off if blas else w_off
            sgd_update(theta[first:b_off + n], grad[first:b_off + n], velocity, lr,
                       hyper[MOMENTUM], hyper[NESTEROV] != 0.0, hyper[WEIGHT_DECAY], t == 0)
    return fuse


@njit(cache=config.CACHE, fastmath={"reassoc"})
def _sum_of_squares(x):
    """``sum(x ** 2)``, accumulated in float64.

    Reassociated so that it vectorises: one running sum is a chain of dependent adds
    (4 cycles each), which made the penalty of a 7,510-parameter net 10 us of a 190 us
    step; fixed-order partial sums stayed scalar (1 element per cycle, 5% of a float32
    digits fit).  The order then follows the vector width LLVM picks for the CPU, so the
    last bits of the *reported* penalty may differ between CPU models (never between
    thread counts); the gradient ``l2 * W`` does not use it.  A call, not inlined: an
    inlined callee loses its fastmath flags.
    """
    total = 0.0
    for p in range(x.shape[0]):
        v = np.float64(x[p])
        total += v * v
    return total


@separate(returns=types.float64)
@njit(cache=config.CACHE)
def l2_penalty(theta, table, l2, grad):
    """``l2 / 2 * sum(W**2)`` over every layer's weights (not the biases); adds its
    gradient ``l2 * W`` into ``grad`` unless ``grad`` is empty.

    The loops run over slices, indexed from 0: indexed from the layout's offsets, whose
    sign Numba cannot know, every access took the negative-index wraparound and neither
    loop vectorised (8 us of a 165 us digits step, perf).
    """
    total = 0.0
    for i in range(table.shape[0]):
        first = table[i, W_OFF]
        last = first + table[i, FAN_IN] * table[i, FAN_OUT]
        W = theta[first:last]
        total += _sum_of_squares(W)
        if grad.size > 0:
            dW = grad[first:last]
            for p in range(W.shape[0]):
                dW[p] += l2 * W[p]
    return 0.5 * l2 * total


@njit(cache=config.CACHE, inline="always")
def _squares_in_order(x):
    """``sum(x ** 2)`` in float64, in eight running sums of every eighth element added
    up in a fixed order: the same bits on every CPU (the step depends on them, unlike
    :func:`_sum_of_squares`' reported penalty), and eight chains of dependent adds
    instead of one (4 cycles an element): the norm of a 26,506-parameter gradient took
    22 us of a 1-row step of 64-128-128-10, AMD EPYC."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    n = x.shape[0]
    whole = n - n % 8
    for i in range(0, whole, 8):
        v0 = np.float64(x[i])
        v1 = np.float64(x[i + 1])
        v2 = np.float64(x[i + 2])
        v3 = np.float64(x[i + 3])
        v4 = np.float64(x[i + 4])
        v5 = np.float64(x[i + 5])
        v6 = np.float64(x[i + 6])
        v7 = np.float64(x[i + 7])
        s0 += v0 * v0
        s1 += v1 * v1
        s2 += v2 * v2
        s3 += v3 * v3
        s4 += v4 * v4
        s5 += v5 * v5
        s6 += v6 * v6
        s7 += v7 * v7
    for i in range(whole, n):
        v = np.float64(x[i])
        s0 += v * v
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@separate(returns=types.float64)
@njit(cache=config.CACHE)
def clip_by_norm(grad, bound):
    """Scale ``grad`` to Euclidean norm ``bound`` when it is longer; returns the factor.

    Each square in float64: a float32 square overflowed from |g| ~ 1.8e19, the norm read
    inf, and the step was 0.  A float64 gradient beyond ~1e154 overflows so too, and one
    below ~1e-145 underflows: then the squares are taken again, of ``g / max|g|`` (a
    second pass in those cases only; spec's ``clip_factor``)."""
    total = _squares_in_order(grad)
    scale = 1.0
    if not CLIP_TINY_SQUARES < total < math.inf:  # the gradient is finite (checked before)
        big = 0.0
        for v in grad:
            big = max(big, abs(np.float64(v)))
        if big == 0.0:
            return 1.0
        total = 0.0
        for v in grad:
            w = np.float64(v) / big
            total += w * w
        scale = big
    factor = F.clip_factor(math.sqrt(total), scale, bound)
    if factor == 1.0:
        return 1.0
    for i in range(grad.shape[0]):
        grad[i] *= factor
    return factor


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
        m = min2(cap, n - start)
        # np.int64(0): a literal 0 compiled forward_layers again (1.3 s of a cold start).
        logits = forward_layers(_view(flat, start * d, m, d), theta, table, work, NO_KEY,
                                np.int64(0))
        _copy_rows(logits, out, start)


@njit(cache=config.CACHE)
def loss_of_logits(Z, T, loss, G, cap):
    """Weighted mean loss of the logits ``Z`` against ``T``, ``cap`` rows at a time (each
    chunk weighted by its sample weights), with ``G`` (at least ``cap * k`` long) as
    the gradient scratch.

    Evaluation is :func:`forward_chunks` then this: one forward pass gives the logits
    (for the metric) and the loss, and the two small kernels compile faster than one
    that does both (0.3 s less of a cold start).
    """
    n, k = Z.shape
    n_targets = T.shape[1]
    flat_z = Z.reshape(Z.size)
    flat_t = T.reshape(T.size)
    total = 0.0
    weights = 0.0
    for start in range(0, n, cap):
        m = min2(cap, n - start)
        T_chunk = _view(flat_t, start * n_targets, m, n_targets)
        w = weight_sum(T_chunk)
        total += w * loss_grad(_view(flat_z, start * k, m, k), T_chunk, loss, _view(G, 0, m, k))
        weights += w
    return total / weights if weights > 0 else 0.0


@separate(returns=types.none)
@njit(cache=config.CACHE)
def _shuffle(order, seed):
    """``order`` in place: the permutation of an epoch drawn with ``seed``, Fisher-Yates
    whose swap of place ``i`` draws ``spec.random_index(shuffle_key(seed), i, i + 1)``.
    Counter draws, no generator: the CUDA backend draws the same permutation, and Numba's
    thread-local ``np.random`` (the one a user's own ``@njit`` code draws from) is left
    alone -- seeded here before, a fit replaced the user's seeded stream."""
    key = F.shuffle_key(seed)
    for i in range(order.shape[0]):
        order[i] = i
    for i in range(order.shape[0] - 1, 0, -1):
        j = F.random_index(key, i, i + 1)
        order[i], order[j] = order[j], order[i]


# Called through a slot, so that a forked child can run its serial twin (.forks).
@separate(returns=types.float64)
@njit(cache=config.CACHE, parallel=True)
def _sharded_gradient(Xb, Tb, theta, table, bufs, loss, n_shards, key):
    """Weighted mean loss and gradient of a batch cut into ``n_shards`` fixed row shards.

    The shards run in parallel, each into its own buffers, and are combined in shard
    order, so the result depends on the shard count (fixed by the shapes) but never on
    the thread count.  Each shard's mean counts by its share of the batch's weight.
    """
    m, d = Xb.shape
    n_targets = Tb.shape[1]
    flat_x = Xb.reshape(m * d)
    flat_t = Tb.reshape(m * n_targets)
    # Bound outside the loop: assigned through ``bufs.shard_losses[s]`` inside the prange,
    # the losses were lost (Numba's parfor lowering) and every sharded fit reported a
    # loss of 0 -- its gradients, passed as arguments, were right.
    shard_losses = bufs.shard_losses
    for s in prange(n_shards):
        r0 = s * m // n_shards
        r1 = (s + 1) * m // n_shards
        shard_losses[s] = loss_and_gradient(
            _view(flat_x, r0 * d, r1 - r0, d), _view(flat_t, r0 * n_targets, r1 - r0, n_targets),
            theta, table, bufs.work[s], bufs.deltas[s], bufs.shard_grads[s], loss, key, r0)
    return pair.combine(Tb, bufs, n_shards, n_shards - 1)


#: How an epoch kernel computes a step's gradient (:func:`step_gradient`): the argument
#: ``path`` of the inlined step, a constant of each kernel.  Numba prunes the branches on
#: a constant before typing, so each kernel compiles only its own path: a fit that never
#: pairs its batches does not compile the pair's code (2.2 s of a cold ``fastdnn train``).
ONE_PASS, PAIRED, SHARDED = range(3)


@njit(cache=config.CACHE, inline="always")
def step_gradient(X, T, theta, table, bufs, loss, sampling, start, m, draw_key, key, path,
                  one_pass):
    """Weighted mean loss and weight of the batch of ``m`` rows from position ``start``
    of the epoch's sampling; its gradient into ``bufs.grad``, by ``path``:

    - ``ONE_PASS``: in one pass, by ``one_pass`` (:func:`loss_and_gradient`, or its
      inlined twin ``_online_loss_and_deltas`` in :func:`train_steps_online`);
    - ``PAIRED``: as two row shards (:func:`.pair.paired_gradient`) when ``bufs.control``
      says so and the batch has two rows or more, else in one pass;
    - ``SHARDED``: as row shards in Numba's pool.

    ``one_pass`` is a function argument, not a third path: the branches of a path are
    inlined before Numba prunes them, and the inlined passes of the online step, expanded
    into every kernel and pruned only then, made each cold compile of the others 8 s
    longer.  A function passed in is inlined only where it is given.
    """
    if path == PAIRED:
        if bufs.control[pair.N_SHARDS] == 2 and m >= 2:
            return pair.paired_gradient(X, T, theta, table, bufs, loss, sampling, start, m,
                                        draw_key, key)
    Xb, Tb = gather_rows(X, T, bufs, sampling, start, 0, m, draw_key, 0)
    if path == SHARDED:
        value = _sharded_gradient(Xb, Tb, theta, table, bufs, loss,
                                  min2(bufs.work.shape[0], m), key)
    else:
        # np.int64(0), not 0: a literal row offset typed as Literal[int](0) compiled
        # loss_and_gradient a second time (4.6 s of a cold start) beside the shards' int64.
        value = one_pass(Xb, Tb, theta, table, bufs.work[0], bufs.deltas[0], bufs.grad, loss,
                         key, np.int64(0))
    return value, weight_sum(Tb)


@njit(cache=config.CACHE, inline="always")
def gather_rows(X, T, bufs, sampling, start, first, last, key, at):
    """Copy the rows at positions ``[start + first, start + last)`` of the epoch's
    sampling (in order, by ``bufs.order``, or drawn uniformly under ``key``) into the
    buffers' rows from ``at``; returns those ``(inputs, targets)``."""
    n, d = X.shape
    n_targets = T.shape[1]
    m = last - first
    Xb = _view(bufs.inputs, at * d, m, d)
    Tb = _view(bufs.targets, at * n_targets, m, n_targets)
    for r in range(m):
        position = start + first + r
        if sampling == UNIFORM:
            idx = F.random_index(key, position, n)
        elif sampling == SHUFFLE:
            idx = bufs.order[position]
        else:
            idx = position
        for c in range(d):
            Xb[r, c] = X[idx, c]
        for c in range(n_targets):
            Tb[r, c] = T[idx, c]
    return Xb, Tb


@njit(cache=config.CACHE, inline="always")
def epoch_sums(bufs, plan):
    """The epoch's loss and weight sums before step ``plan.first``: zero at the epoch's
    start, else where the last run left them in ``bufs.sums``.

    Each run continues the one sum in step order, so the epoch's loss has the same bits
    however the epoch is cut into runs (the cuts follow the measured step time).  Runs
    that each summed from zero, added up in Python, gave other last bits.
    """
    if plan.first == 0:
        return 0.0, 0.0
    return bufs.sums[0], bufs.sums[1]


@njit(cache=config.CACHE, inline="always")
def run_result(bufs, total, seen, steps, failed, lr, weights):
    """A run's result tuple, its epoch sums ``total`` and ``weights`` kept in ``bufs.sums``
    for the next run (:func:`epoch_sums`)."""
    bufs.sums[0] = total
    bufs.sums[1] = weights
    return total, seen, steps, failed, lr, weights


@njit(cache=config.CACHE, inline="always")
def borrowed_buffers(bufs):
    """``bufs`` with every array borrowed (:func:`.views.borrow`)."""
    return Buffers(borrow(bufs.work), borrow(bufs.deltas), borrow(bufs.shard_grads),
                   borrow(bufs.shard_losses), borrow(bufs.grad), borrow(bufs.inputs),
                   borrow(bufs.targets), borrow(bufs.order), borrow(bufs.guard),
                   borrow(bufs.control), borrow(bufs.moved), borrow(bufs.sums))


@njit(cache=config.CACHE, inline="always")
def _borrowed(X, T, theta, table, bufs, opt, sched):
    """The arguments of a run of steps as borrowed arrays (:func:`.views.borrow`): a
    batch-1 step on a 2-8-8-1 net took 1.3 us, 71% of it counting references."""
    return (borrow(X), borrow(T), borrow(theta), borrow(table), borrowed_buffers(bufs),
            OptimizerArgs(opt.code, borrow(opt.hyper), borrow(opt.state)),
            ScheduleArgs(sched.code, borrow(sched.params)))


@njit(cache=config.CACHE, inline="always")
def _steps(X, T, theta, table, bufs, opt, sched, plan, path, one_pass, fused, wide):
    """The body of the epoch kernels: their steps, each gradient by ``path`` and
    ``one_pass`` (:func:`step_gradient`); ``fused``: None, or a fused update (online
    SGD's :func:`_fused_sgd_step`, batch SGD's :func:`_fused_batch_sgd_step`), tried
    before the general sequence; ``wide`` (a constant):
    the guard's scan and the update in parallel chunks (:mod:`.wide`)."""
    X, T, theta, table, bufs, opt, sched = _borrowed(X, T, theta, table, bufs, opt, sched)
    n = X.shape[0]
    bs = plan.batch_size
    if plan.first == 0 and plan.sampling == SHUFFLE:
        _shuffle(bufs.order, plan.seed)
    draw_key = F.mix64(np.uint64(plan.seed))
    dropping = False
    for i in range(table.shape[0]):
        dropping = dropping or table[i, DROP] > 0
    key = NO_KEY
    l2 = opt.hyper[L2]
    l2_weight = opt.hyper[L2_WEIGHT]
    clip = opt.hyper[CLIP_NORM]
    total, weights = epoch_sums(bufs, plan)
    seen = 0
    lr = 0.0
    for s in range(plan.first, plan.end):
        m = min2(bs, n - s * bs)
        if dropping:  # ~5% of a batch-1 step on a 2-8-8-1 net when computed always
            key = F.step_key(plan.seed, s)
        value, w = step_gradient(X, T, theta, table, bufs, plan.loss, plan.sampling, s * bs, m,
                                 draw_key, key, path, one_pass)
        t = plan.t0 + s - plan.first  # optimizer steps before this one
        if fused is not None:  # None (a constant) but in the online and fused-SGD kernels
            done, fused_lr = fused(theta, table, bufs, opt, sched, value, t, m)
            if done:
                lr = fused_lr
                total += value * w
                weights += w
                seen += m
                continue
        if l2 != 0.0:  # the fused steps above take no penalty (they test L2 == 0)
            value += l2_penalty(theta, table, F.step_l2(l2, l2_weight, w), bufs.grad)
        g_max = max_abs_wide(bufs.grad) if wide else max_abs(bufs.grad)
        # A non-finite loss or gradient, or an update that could overflow the weights
        # (the guard of .updates), stops the run before the update: the weights stay
        # the last finite ones, for any size of net, without a copy.
        if not (np.isfinite(value) and np.isfinite(g_max)):
            pair.settle(opt.state, bufs.control, bufs.moved)
            return run_result(bufs, total, seen, s - plan.first, s, lr, weights)
        if clip != 0.0:
            g_max *= clip_by_norm(bufs.grad, clip)
        lr = opt.hyper[LR] * lr_factor(sched.code, sched.params, t)
        safe = SAFE
        if not bounds_are_safe(opt.code, opt.hyper, lr, t, g_max, bufs.guard):
            # The exact check reads every moment.
            pair.settle(opt.state, bufs.control, bufs.moved)
            safe = exact_safety(opt.code, opt.hyper, lr, theta, bufs.grad, opt.state, t,
                                bufs.guard)
        if safe == UNSAFE:
            return run_result(bufs, total, seen, s - plan.first, s, lr, weights)
        if path == PAIRED and bufs.moved.shape[1] > 0 and opt.code == ADAM:  # paired Adam
            pair.paired_adam(theta, bufs.grad, opt.state, opt.hyper, lr, t, bufs.control,
                             bufs.moved)
        elif wide:
            optimizer_step_wide(opt.code, opt.hyper, lr, theta, bufs.grad, opt.state, t)
        else:
            optimizer_step(opt.code, opt.hyper, lr, theta, bufs.grad, opt.state, t)
        if safe == SAFE_REFRESH:
            pair.settle(opt.state, bufs.control, bufs.moved)
            refresh_bounds(theta, opt.state, bufs.guard)
        total += value * w
        weights += w
        seen += m
    # Python, and the next run, read the moments in state.
    pair.settle(opt.state, bufs.control, bufs.moved)
    return run_result(bufs, total, seen, plan.end - plan.first, -1, lr, weights)


@njit(cache=config.CACHE, nogil=True)
def train_steps(X, T, theta, table, bufs, opt, sched, plan):
    """Steps ``[plan.first, plan.end)`` of an epoch; returns ``(loss_sum, samples, steps,
    failed_step, lr, weight_sum)``.

    ``loss_sum`` is the sum over the epoch's batches so far (steps ``[0, end)``, or up to
    the failed one) of ``batch loss * batch weight``, so divided by ``weight_sum`` it is
    the epoch's mean training loss so far (see :func:`epoch_sums`); ``samples`` and
    ``steps`` count this run's.  ``failed_step`` is
    -1, or the epoch's index of the step whose loss or gradient was not finite, or
    whose update would overflow: the run stops there without updating.  ``lr`` is the
    learning rate of the last update (0 if none).
    """
    return _steps(X, T, theta, table, bufs, opt, sched, plan, ONE_PASS, loss_and_gradient,
                  None, False)


@njit(cache=config.CACHE, nogil=True)
def train_steps_paired(X, T, theta, table, bufs, opt, sched, plan):
    """:func:`train_steps` for a fit whose batches run as two shards, the second on a
    helper thread (:mod:`.pair`; one-row batches in one pass)."""
    return _steps(X, T, theta, table, bufs, opt, sched, plan, PAIRED, loss_and_gradient,
                  None, False)


@njit(cache=config.CACHE, nogil=True)
def train_steps_sharded(X, T, theta, table, bufs, opt, sched, plan):
    """:func:`train_steps` with each batch's gradient from :func:`_sharded_gradient`.

    A separate entry point so the parallel code is compiled only when shards are used.
    """
    return _steps(X, T, theta, table, bufs, opt, sched, plan, SHARDED, loss_and_gradient,
                  None, False)


# error_model="numpy", as forward_layers: the float32 tanh inlined here must vectorise.
@njit(cache=config.CACHE, nogil=True, error_model="numpy")
def train_steps_online(X, T, theta, table, bufs, opt, sched, plan):
    """:func:`train_steps` for batches of one row (online SGD), with the forward and
    backward passes inlined into the step (see ``_forward_layers_inlined``) and SGD's
    update fused with the weights' gradient (:func:`_fused_sgd_step`): the same
    arithmetic, so the same weights, in two thirds of the time on the smallest nets.
    Its own entry point, compiled only by fits that use it.
    """
    return _steps(X, T, theta, table, bufs, opt, sched, plan, ONE_PASS, _online_loss_and_deltas,
                  _fused_sgd_step, False)


@njit(cache=config.CACHE, nogil=True)
def train_steps_wide(X, T, theta, table, bufs, opt, sched, plan):
    """:func:`train_steps` for big nets (``config.WIDE_UPDATE_PARAMS``): the guard's scan
    of the gradient and the update run in parallel chunks (:mod:`.wide`); the same bits.
    Its own entry point, so that only big nets compile the parallel regions."""
    return _steps(X, T, theta, table, bufs, opt, sched, plan, ONE_PASS, loss_and_gradient,
                  None, True)


@njit(cache=config.CACHE, nogil=True)
def train_steps_wide_sgd(X, T, theta, table, bufs, opt, sched, plan):
    """:func:`train_steps_wide` for plain SGD: each step's weight gradients added onto
    the weights by their products (:func:`_fused_batch_sgd_step`), never written; the
    steps it cannot fuse take the general sequence.  ``bufs.deltas[0]`` must hold every
    layer's dL/dZ (:func:`stack_size`).

    The general sequence's scan and update run serially here: only the steps near an
    overflow take them, and their parallel regions were 2 s of a first fit's compile.
    """
    return _steps(X, T, theta, table, bufs, opt, sched, plan, ONE_PASS, loss_and_deltas,
                  _fused_batch_sgd_step, False)


@njit(cache=config.CACHE, parallel=True)
def train_epoch_many(X, T, thetas, tables, bufs, opts, scheds, plans, results):
    """One epoch of each of several nets on the same data, the nets in parallel.

    Row ``r`` of the int64 ``plans`` is ``(net, loss, batch_size, sampling, t0, seed,
    first, end)``: net ``plans[r, 0]`` (an index into the typed lists ``thetas``,
    ``tables``, ``bufs``, ``opts``, ``scheds``) runs steps ``[first, end)`` exactly as
    its own fit's kernel would (:func:`train_steps`, or the paired or online one), and
    ``results[r]`` gets its ``(loss_sum, samples, steps, failed_step, lr, weight_sum)``.
    A net runs on one thread from start to end (Numba's generator is per thread, and its
    epoch seeds it), so the results are those of the nets' own epochs, whatever the
    thread count.  Callers keep every product below
    ``blas.PARALLEL_MACS`` (no nested parallel regions).
    """
    for r in prange(plans.shape[0]):
        i = plans[r, 0]
        plan = EpochPlan(plans[r, 1], plans[r, 2], plans[r, 3], plans[r, 4], plans[r, 5],
                         plans[r, 6], plans[r, 7])
        # Called, not inlined: the epoch's early exits would keep the loop serial.
        if plan.batch_size == 1:
            result = train_steps_online(X, T, thetas[i], tables[i], bufs[i], opts[i], scheds[i],
                                        plan)
        elif bufs[i].control[pair.N_SHARDS] == 2:
            result = train_steps_paired(X, T, thetas[i], tables[i], bufs[i], opts[i], scheds[i],
                                        plan)
        else:
            result = train_steps(X, T, thetas[i], tables[i], bufs[i], opts[i], scheds[i], plan)
        total, seen, steps, failed, lr, weights = result
        results[r, 0] = total
        results[r, 1] = seen
        results[r, 2] = steps
        results[r, 3] = failed
        results[r, 4] = lr
        results[r, 5] = weights
