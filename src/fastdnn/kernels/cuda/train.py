"""CUDA twin of :mod:`fastdnn.kernels.cpu.train`: the per-step driver (gather, forward, loss,
layerwise backprop, update) over device-resident buffers.

The CPU runs a whole epoch inside one compiled function; here the host loop launches
the kernels of each step asynchronously on one stream and never waits for them: the
loss accumulates on the device (see :mod:`.losses`), and the host reads it
once, at the end of the epoch (:class:`.backend.CUDATrainer`).
"""
from collections import namedtuple

from numba import cuda

from ..spec import A_OFF, FAN_OUT, LR, lr_factor
from . import launch
from .dense import dense_backward, dense_forward
from .losses import loss_grad
from .updates import optimizer_step

#: Device buffers of one layout: the parameters and their gradient, activations, the
#: two ping-pong deltas (one flat array, halves at 0 and ``deltas.size // 2``), the
#: layout table, a batch of targets, per-row losses, the float64 loss accumulator and
#: the int64 status word (see :mod:`.losses`).
DeviceBuffers = namedtuple("DeviceBuffers",
                           "theta grad work deltas table targets row_loss acc status")


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
    _copy_flat[blocks, threads](src, src_off, dst, dst_off, count)


def forward_layers(bufs, table, m):
    """``A_i = g_i(A_{i-1} W_i + b_i)`` for every layer on the ``m`` rows in ``work[:m*d]``."""
    for i in range(table.shape[0]):
        dense_forward(bufs, table, i, m)


def backward_layers(bufs, table, m):
    """Layerwise backprop from dL/dZ of the top layer, held in the first delta half, into ``grad``."""
    half = bufs.deltas.shape[0] // 2
    cur = 0
    for i in range(table.shape[0] - 1, -1, -1):
        dense_backward(bufs, table, i, m, cur * half, (1 - cur) * half)
        cur = 1 - cur


def loss_and_gradient(bufs, table, loss, m, step=0):
    """Batch mean loss into ``bufs.acc`` and its gradient into ``bufs.grad``."""
    forward_layers(bufs, table, m)
    loss_grad(loss, bufs.work, int(table[-1, A_OFF]), bufs.targets, bufs.deltas, bufs.row_loss,
              m, int(table[-1, FAN_OUT]), bufs.acc, bufs.status, step)
    backward_layers(bufs, table, m)


def train_steps(X, T, order, n_rows, bufs, table, opt, sched, loss, batch_size, t0):
    """Minibatch steps over rows ``order[:n_rows]`` of the device arrays ``X``, ``T``.

    The steps are numbered from ``t0`` (the optimizer's count): the schedule and the
    update read it, and a non-finite loss records it in ``bufs.status``.  Nothing is
    read back; returns the number of steps launched and the learning rate of the last.
    """
    blocks, threads = launch.launch_config(batch_size * max(X.shape[1], T.shape[1]))
    gather = gather_batch[blocks, threads]
    n_steps = -(-n_rows // batch_size)
    lr = 0.0
    for s in range(n_steps):
        start = s * batch_size
        m = min(batch_size, n_rows - start)
        t = t0 + s  # optimizer steps before this one
        gather(X, T, order, start, m, bufs.work, bufs.targets)
        loss_and_gradient(bufs, table, loss, m, t)
        lr = opt.hyper[LR] * lr_factor(sched.code, sched.params, t)
        optimizer_step(opt.code, opt.hyper, lr, bufs.theta, bufs.grad, opt.state, bufs.status, t)
    return n_steps, lr
