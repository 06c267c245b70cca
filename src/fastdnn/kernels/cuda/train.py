"""CUDA twin of :mod:`fastdnn.kernels.cpu.train`: the per-step driver (gather, forward with
dropout, loss, layerwise backprop, L2 penalty, gradient clipping, overflow guard,
update) over device-resident buffers.

The CPU runs a run of steps inside one compiled function; here the host loop launches
the kernels of each step asynchronously on one stream and never waits for them: the
loss accumulates on the device (see :mod:`.losses`), and the host reads it once, at
the end of the epoch (:class:`.backend.CUDATrainer`).  Every random number is the
CPU's: the dropout masks are ``spec.dropout_scale`` of the step's ``spec.step_key``,
computed per element in the GEMM epilogues (:mod:`.dense`).

The penalty and the gradient norm are sums over the whole parameter vector: each block
sums its grid-stride share into ``bufs.partials``, then one block sums the partials in
a fixed order (no atomics: the same grid gives the same bits).  The squares are taken
in the dtype and summed in float64, as on the CPU; the sums start from ``float64(0)``,
not ``0.0``, because the simulator runs kernels on NumPy scalars, where (NumPy 2)
``0.0 + float32`` stays float32.
"""
import functools
import math
from collections import namedtuple

import numpy as np
from numba import cuda, float64

from ..spec import (A_OFF, CLIP_NORM, CLIP_TINY_SQUARES, DROP, FAN_IN, FAN_OUT, L2, L2_WEIGHT,
                    LR, W_OFF, lr_factor, step_key)
from . import dispatch, launch
from . import formulas as F
from .dense import NO_KEY, dense_backward, dense_forward
from .losses import BATCH_WEIGHT, CLIP_FACTOR, LAST, PENALTY, block_reduce, loss_grad
from .updates import check_update, optimizer_step

#: Device buffers of one layout: the parameters and their gradient, activations, the
#: two ping-pong deltas (one flat array, halves at 0 and ``deltas.size // 2``), the
#: layout table, a batch of packed targets (weights last), per-row losses, the float64
#: loss accumulator and the int64 status word (see :mod:`.losses`, :mod:`.updates`),
#: and the float64 per-block partial sums of the reductions over ``theta``.
DeviceBuffers = namedtuple("DeviceBuffers",
                           "theta grad work deltas table targets row_loss acc status partials")
#: Integers of a run of steps (the CPU's ``EpochPlan``): loss code, batch size, optimizer
#: steps taken before the run, the epoch's seed, and the epoch's index of the run's
#: first step (the dropout keys count from it).
EpochPlan = namedtuple("EpochPlan", "loss batch_size t0 seed first")


@cuda.jit
def gather_batch(X, T, order, start, m, work, targets):
    """Rows ``order[start:start+m]`` of ``X`` and ``T`` into the batch slots ``work[:m*d]``
    and ``targets``."""
    d = X.shape[1]
    t = T.shape[1]
    first = cuda.grid(1)
    stride = cuda.gridsize(1)
    for e in range(first, m * d, stride):
        r = e // d
        work[e] = X[order[start + r], e - r * d]
    for e in range(first, m * t, stride):
        r = e // t
        targets[e] = T[order[start + r], e - r * t]


@cuda.jit
def _copy_flat(src, src_off, dst, dst_off, count):
    """``dst[dst_off:dst_off+count] = src[src_off:src_off+count]`` (flat device arrays)."""
    for e in range(cuda.grid(1), count, cuda.gridsize(1)):
        dst[dst_off + e] = src[src_off + e]


def copy_flat(src, src_off, dst, dst_off, count):
    """``dst[dst_off:dst_off+count] = src[src_off:src_off+count]`` on the device."""
    blocks, threads = launch.launch_config(count)
    dispatch.call(_copy_flat, blocks, threads, src, src_off, dst, dst_off, count)


def forward_layers(bufs, table, m, key=NO_KEY):
    """``A_i = g_i(A_{i-1} W_i + b_i)`` for every layer on the ``m`` rows in ``work[:m*d]``
    (layers with a dropout threshold pass on ``A_i`` times the masks of ``key``)."""
    for i in range(table.shape[0]):
        dense_forward(bufs, table, i, m, key)


def backward_layers(bufs, table, m, key=NO_KEY):
    """Layerwise backprop from dL/dZ of the top layer, held in the first delta half, into
    ``grad`` (through the dropout masks of :func:`forward_layers` with the same ``key``)."""
    half = bufs.deltas.shape[0] // 2
    cur = 0
    for i in range(table.shape[0] - 1, -1, -1):
        dense_backward(bufs, table, i, m, cur * half, (1 - cur) * half, key)
        cur = 1 - cur


def loss_and_gradient(bufs, table, loss, m, key=NO_KEY):
    """Batch weighted mean loss into ``bufs.acc`` and its gradient into ``bufs.grad``
    (dropout masks from ``key``; no penalty)."""
    forward_layers(bufs, table, m, key)
    loss_grad(loss, bufs.work, int(table[-1, A_OFF]), bufs.targets, bufs.deltas, bufs.row_loss,
              m, int(table[-1, FAN_OUT]), bufs.acc)
    backward_layers(bufs, table, m, key)


@functools.lru_cache(maxsize=None)
def _reductions(tpb):
    """The reduction kernels over ``theta`` with ``tpb``-slot shared scratch."""

    @cuda.jit
    def penalty_partials(theta, grad, table, l2, l2_weight, acc, with_grad, partials):
        """``partials[block]``: the block's share of ``sum(W**2)`` over every layer's
        weights (not the biases); ``grad += c * W`` where ``with_grad``, ``c`` the step's
        coefficient ``spec.step_l2`` at the batch weight ``acc[BATCH_WEIGHT]``."""
        sh = cuda.shared.array(tpb, dtype=float64)
        start = cuda.grid(1)
        stride = cuda.gridsize(1)
        total = float64(0.0)
        l2 = F.step_l2(l2, l2_weight, acc[BATCH_WEIGHT])
        for i in range(table.shape[0]):
            first = table[i, W_OFF]
            for p in range(first + start, first + table[i, FAN_IN] * table[i, FAN_OUT], stride):
                v = float64(theta[p])  # squared in float64, as the CPU's _sum_of_squares
                total += v * v
                if with_grad:
                    grad[p] += l2 * theta[p]
        total = block_reduce(sh, total, False)
        if cuda.threadIdx.x == 0:
            partials[cuda.blockIdx.x] = total

    @cuda.jit
    def square_partials(grad, partials):
        """``partials[block]``: the block's share of ``sum(grad**2)``."""
        sh = cuda.shared.array(tpb, dtype=float64)
        total = float64(0.0)
        for p in range(cuda.grid(1), grad.shape[0], cuda.gridsize(1)):
            v = float64(grad[p])  # as the CPU's: a float32 square overflows from 1.8e19
            total += v * v
        total = block_reduce(sh, total, False)
        if cuda.threadIdx.x == 0:
            partials[cuda.blockIdx.x] = total

    @cuda.jit(device=True)
    def sum_partials(sh, partials, n_blocks):
        """``sum(partials[:n_blocks])`` in one block, in a fixed order; every thread gets it."""
        total = 0.0
        for b in range(cuda.threadIdx.x, n_blocks, cuda.blockDim.x):
            total += partials[b]
        return block_reduce(sh, total, False)

    @cuda.jit
    def finish_penalty(partials, n_blocks, l2, l2_weight, acc):
        """``acc[PENALTY] = c / 2 * sum(partials)`` (``c`` as in ``penalty_partials``),
        added to the step's loss ``acc[LAST]``."""
        sh = cuda.shared.array(tpb, dtype=float64)
        total = sum_partials(sh, partials, n_blocks)
        if cuda.threadIdx.x == 0:
            acc[PENALTY] = 0.5 * F.step_l2(l2, l2_weight, acc[BATCH_WEIGHT]) * total
            acc[LAST] += acc[PENALTY]

    @cuda.jit
    def finish_clip(partials, n_blocks, bound, acc, grad):
        """``acc[CLIP_FACTOR]``: 1 when ``sqrt(sum(partials)) <= bound``, else ``bound / norm``.

        Where the squares overflowed (a float64 gradient beyond ~1e154) or underflowed
        (below ~1e-145), the norm is taken again here, of ``grad / max|grad|``
        (``cpu.train.clip_by_norm``, spec's ``clip_factor``); the tests are the same in
        every thread, so every thread reaches the reductions' barriers."""
        sh = cuda.shared.array(tpb, dtype=float64)
        total = sum_partials(sh, partials, n_blocks)
        scale = float64(1.0)
        if not CLIP_TINY_SQUARES < total < math.inf:
            big = float64(0.0)
            for p in range(cuda.threadIdx.x, grad.shape[0], cuda.blockDim.x):
                big = max(big, abs(float64(grad[p])))
            big = block_reduce(sh, big, True)
            if big > 0.0:
                total = float64(0.0)
                for p in range(cuda.threadIdx.x, grad.shape[0], cuda.blockDim.x):
                    w = float64(grad[p]) / big
                    total += w * w
                total = block_reduce(sh, total, False)
                scale = big
        if cuda.threadIdx.x == 0:
            acc[CLIP_FACTOR] = F.clip_factor(math.sqrt(total), scale, bound)

    return penalty_partials, square_partials, finish_penalty, finish_clip


@cuda.jit
def _scale(grad, acc):
    """``grad *= acc[CLIP_FACTOR]`` unless it is 1."""
    factor = acc[CLIP_FACTOR]
    if factor == 1.0:
        return
    for p in range(cuda.grid(1), grad.shape[0], cuda.gridsize(1)):
        grad[p] *= factor


def _reduction_grid(bufs):
    """``(blocks, threads)`` of a reduction over ``theta``: at most one block per partial."""
    blocks, threads = launch.launch_config(bufs.theta.shape[0])
    return min(blocks, bufs.partials.shape[0]), threads


def partial_slots(n_params):
    """The length of ``DeviceBuffers.partials`` for ``n_params`` parameters."""
    return launch.launch_config(n_params)[0]


def l2_penalty(bufs, table, l2, with_grad=True, l2_weight=0.0):
    """``c / 2 * sum(W**2)`` over every layer's weights into ``acc[PENALTY]``, added to
    ``acc[LAST]``; its gradient ``c * W`` added into ``bufs.grad`` where ``with_grad``
    (``cpu.train.l2_penalty``).  ``c`` is ``l2``, or where ``l2_weight`` > 0 its share
    for the batch weight in ``acc`` (``spec.step_l2``)."""
    blocks, threads = _reduction_grid(bufs)
    penalty_partials, _, finish_penalty, _ = _reductions(threads)
    dispatch.call(penalty_partials, blocks, threads, bufs.theta, bufs.grad, bufs.table, l2,
                  l2_weight, bufs.acc, with_grad, bufs.partials)
    dispatch.call(finish_penalty, 1, threads, bufs.partials, blocks, l2, l2_weight, bufs.acc)


def clip_by_norm(bufs, bound):
    """Scale ``bufs.grad`` to Euclidean norm ``bound`` when it is longer (the factor goes
    to ``acc[CLIP_FACTOR]``; ``cpu.train.clip_by_norm``)."""
    blocks, threads = _reduction_grid(bufs)
    _, square_partials, _, finish_clip = _reductions(threads)
    dispatch.call(square_partials, blocks, threads, bufs.grad, bufs.partials)
    dispatch.call(finish_clip, 1, threads, bufs.partials, blocks, bound, bufs.acc, bufs.grad)
    blocks, threads = launch.launch_config(bufs.grad.shape[0])
    dispatch.call(_scale, blocks, threads, bufs.grad, bufs.acc)


def train_steps(X, T, order, n_rows, bufs, table, opt, sched, plan):
    """Minibatch steps over rows ``order[:n_rows]`` of the device arrays ``X``, ``T``
    (packed targets), as the epoch's steps ``plan.first, plan.first + 1, ...``.

    The optimizer steps are numbered from ``plan.t0``: the schedule and the update read
    it, and a failed step (see :mod:`.updates`) records it in ``bufs.status``.  Each step
    adds ``opt.hyper[L2]``'s penalty, clips to ``opt.hyper[CLIP_NORM]`` (0: no clipping)
    and draws its dropout masks from ``spec.step_key(plan.seed, step)``.  Nothing is
    read back; returns the number of steps launched and the learning rate of the last.
    """
    blocks, threads = launch.launch_config(plan.batch_size * max(X.shape[1], T.shape[1]))
    n_steps = -(-n_rows // plan.batch_size)
    l2 = opt.hyper[L2]
    l2_weight = opt.hyper[L2_WEIGHT]
    clip = opt.hyper[CLIP_NORM]
    keys = None
    if table[:, DROP].any():
        # One vectorised call per run (uint64 arrays wrap around 2**64 silently).
        keys = step_key(np.full(n_steps, plan.seed), np.arange(plan.first, plan.first + n_steps))
    lr = 0.0
    for s in range(n_steps):
        start = s * plan.batch_size
        m = min(plan.batch_size, n_rows - start)
        t = plan.t0 + s  # optimizer steps before this one
        dispatch.call(gather_batch, blocks, threads, X, T, order, start, m, bufs.work,
                      bufs.targets)
        loss_and_gradient(bufs, table, plan.loss, m, NO_KEY if keys is None else keys[s])
        if l2 != 0.0:
            l2_penalty(bufs, table, l2, l2_weight=l2_weight)
        if clip != 0.0:
            clip_by_norm(bufs, clip)
        lr = opt.hyper[LR] * lr_factor(sched.code, sched.params, t)
        check_update(opt.code, opt.hyper, lr, bufs.theta, bufs.grad, opt.state, bufs.status,
                     bufs.acc, t)
        optimizer_step(opt.code, opt.hyper, lr, bufs.theta, bufs.grad, opt.state, bufs.status,
                       bufs.acc, t)
    return n_steps, lr
