"""CPU backend: owns the parameter vector and the buffers, and calls the Numba kernels.

The GPU twin is :mod:`fastdnn.gpu_backend`; both expose the same methods, so
:class:`fastdnn.MLP` does not know which one it drives.
"""
import numpy as np

from . import config
from .blas import PARALLEL_MACS
from .layout import Layout
from .validation import all_finite
from .train import (Buffers, EpochPlan, OptimizerArgs, ScheduleArgs, forward_chunks,
                    loss_and_gradient, loss_chunks, train_epoch, train_epoch_sharded)


class CPUBackend:
    """Parameters and kernels of a net on the CPU.

    Parameters
    ----------
    sizes : list of int
        Layer widths, input first.
    codes : list of int
        Activation code per hidden layer.
    loss : int
        Loss code.
    dtype : numpy.dtype
        float32 or float64.
    """

    device = "cpu"

    def __init__(self, sizes, codes, loss, dtype):
        self.sizes = list(sizes)
        self.codes = list(codes)
        self.loss = loss
        self.dtype = dtype
        self.n_params = Layout.build(self.sizes, self.codes, 1).n_params
        self.theta = np.zeros(self.n_params, dtype=dtype)
        self._infer = None  # (layout, work, deltas) reused across predict calls

    def get_theta(self, out=None):
        """A NumPy copy of the flat parameter vector (into ``out`` when given)."""
        if out is None:
            return self.theta.copy()
        np.copyto(out, self.theta)
        return out

    def theta_finite(self):
        """Whether every parameter is finite (checked in place, no copy)."""
        return bool(all_finite(self.theta))

    def set_theta(self, theta):
        """Overwrite the parameters from a flat NumPy vector (same length and dtype)."""
        np.copyto(self.theta, theta)

    def _buffers(self, layout):
        work = np.zeros(layout.work_size, dtype=self.dtype)
        deltas = np.zeros((2, layout.delta_size), dtype=self.dtype)
        return work, deltas

    def _inference(self, n):
        # Grown on demand and kept: repeated predict calls allocate nothing but the output.
        cap = min(n, config.PREDICT_CHUNK)
        if self._infer is None or self._infer[0].cap < cap:
            layout = Layout.build(self.sizes, self.codes, cap)
            self._infer = (layout, *self._buffers(layout))
        return self._infer

    def forward(self, X):
        """Logits for the rows of ``X`` (checked, C-contiguous, net dtype)."""
        layout, work, _ = self._inference(X.shape[0])
        out = np.empty((X.shape[0], self.sizes[-1]), dtype=self.dtype)
        # Returns nothing: boxing a returned array costs more than the whole kernel
        # for a single-row predict.
        forward_chunks(X, self.theta, layout.table, work, out, layout.cap)
        return out

    def loss_value(self, X, T):
        """Mean loss over all rows."""
        layout, work, deltas = self._inference(X.shape[0])
        return float(loss_chunks(X, T, self.theta, layout.table, work, deltas, self.loss, layout.cap))

    def gradient(self, X, T):
        """``(mean loss, flat gradient)`` over all rows, in one batch."""
        layout = Layout.build(self.sizes, self.codes, X.shape[0])
        work, deltas = self._buffers(layout)
        grad = np.zeros(self.n_params, dtype=self.dtype)
        value = loss_and_gradient(X, T, self.theta, layout.table, work, deltas, grad, self.loss)
        return float(value), grad

    def trainer(self, X, T, batch_size, optimizer, schedule_params):
        """A :class:`CPUTrainer` with buffers sized once for this fit."""
        return CPUTrainer(self, X, T, batch_size, optimizer, schedule_params)


def n_shards(sizes, rows):
    """Row shards of a training batch: ``config.SHARDS`` when each shard keeps at least
    ``config.MIN_SHARD_ROWS`` rows and every per-shard product stays below the size
    at which :mod:`fastdnn.blas` splits it over threads itself (no nested parallelism)."""
    shards = config.SHARDS
    widest = max(k * n for k, n in zip(sizes[:-1], sizes[1:]))
    if shards < 2 or rows < shards * config.MIN_SHARD_ROWS:
        return 1
    if -(-rows // shards) * widest >= PARALLEL_MACS:
        return 1
    return shards


class CPUTrainer:
    """Buffers and arguments of one ``fit``; :meth:`run_epoch` trains one epoch."""

    def __init__(self, backend, X, T, batch_size, optimizer, schedule_params):
        n = X.shape[0]
        dtype = backend.dtype
        self.backend = backend
        self.X, self.T = X, T
        self.batch_size = min(batch_size, n)
        shards = n_shards(backend.sizes, self.batch_size)
        layout = Layout.build(backend.sizes, backend.codes, -(-self.batch_size // shards))
        self.table = layout.table
        self.epoch_kernel = train_epoch_sharded if shards > 1 else train_epoch
        self.bufs = Buffers(
            work=np.zeros((shards, layout.work_size), dtype=dtype),
            deltas=np.zeros((shards, 2, layout.delta_size), dtype=dtype),
            grads=np.zeros((shards, layout.n_params) if shards > 1 else (1, 0), dtype=dtype),
            losses=np.zeros(shards),
            grad=np.zeros(layout.n_params, dtype=dtype),
            inputs=np.zeros(self.batch_size * X.shape[1], dtype=dtype),
            targets=np.zeros(self.batch_size * T.shape[1], dtype=dtype),
            order=np.arange(n, dtype=np.int64))
        state = optimizer.bind(layout.n_params, dtype)
        self.opt = OptimizerArgs(optimizer.code, optimizer.hyper(), state)
        self.sched = ScheduleArgs(schedule_params[0], schedule_params[1])

    def run_epoch(self, sampling, step0, seed):
        """Train one epoch; returns ``(loss_sum, samples, steps, failed_step)``."""
        plan = EpochPlan(self.backend.loss, self.batch_size, sampling, step0, seed)
        loss_sum, seen, steps, failed = self.epoch_kernel(
            self.X, self.T, self.backend.theta, self.table, self.bufs, self.opt, self.sched, plan)
        return float(loss_sum), int(seen), int(steps), int(failed)
