"""CUDA backend: the twin of :mod:`fastdnn.kernels.cpu.backend`; both implement
:class:`fastdnn.kernels.spec.Backend`, so :class:`fastdnn.MLP` drives either without
knowing which.

The parameters use the CPU's flat layout (:class:`fastdnn.kernels.spec.Layout`), so
weights, ``save`` and ``load`` are shared between devices.  During ``fit`` the parameters, the optimizer
state, the activation buffers and (when they fit, see ``config.CUDA_DATA_BYTES``) the
training data stay in GPU memory; the host uploads each epoch's sample order, launches
the steps, and synchronizes once per epoch to read the loss and copy the optimizer
state back into the optimizer object (so a later ``fit`` continues from it, on either
device).

Everything the CPU trainer does, with its semantics: sample and class weights (the
packed targets' last column, every mean weighted), the L2 penalty and gradient
clipping (slots ``L2`` and ``CLIP_NORM`` of the step vector), dropout with the CPU's
masks, and the overflow guard (:mod:`.updates`).

Sampling: the epoch's order is drawn on the host from the epoch's seed, as the CPU
draws it: the same permutation (the CPU kernel's ``train._shuffle``) or the same
uniform draws (``spec.random_index``, vectorised).  So with the same seed both backends
train on the same batches with the same dropout masks, and agree to rounding.
"""
import contextlib
import threading
import warnings

import numpy as np
from numba import cuda
from numba.core.errors import NumbaPerformanceWarning

from ... import config
from ...devices import require_cuda
from ...validation import check_X
from ..spec import (CLASSIFIERS, CLIP_NORM, CROSS_ENTROPY, L2, LABELS, LOGITS, LR,
                    PROBABILITIES, SHUFFLE, UNIFORM, EpochResult, Layout, OptimizerArgs,
                    ScheduleArgs, lr_factor, mix64, non_finite_outputs, pack_targets)
from . import losses, train
from .checks import all_finite
from .dense import NO_KEY

# Small nets launch small grids on purpose (latency, not occupancy, limits them); numba
# would warn at every such launch (its message starts with a terminal escape).
warnings.filterwarnings("ignore", r".*Grid size \d+ will likely result in GPU under-utilization",
                        NumbaPerformanceWarning)


def is_device_array(X):
    """True for a Numba device array or any object with ``__cuda_array_interface__``."""
    return cuda.devicearray.is_cuda_ndarray(X) or hasattr(X, "__cuda_array_interface__")


def _copy_rows(src, first_row, m, dst, dst_off=0):
    """Rows ``first_row:first_row+m`` of the 2-D device array ``src`` into flat
    ``dst[dst_off:]``."""
    d = src.shape[1]
    train.copy_flat(src.reshape(src.shape[0] * d), first_row * d, dst, dst_off, m * d)


#: Guards the hand-over of a backend's evaluation buffers (:meth:`CUDABackend._inference`).
_LENDING = threading.Lock()


class CUDABackend:
    """Parameters and kernels of a net on a CUDA GPU.

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
    l2 : float
        The L2 penalty ``l2 / 2 * sum(W**2)`` of the loss (weights only).
    drops : list of int, optional
        Dropout threshold per hidden layer (``spec.dropout_threshold``), training only.

    Raises
    ------
    fastdnn.DeviceError
        When numba-cuda is missing or no GPU is usable.
    """

    device = "cuda"

    def __init__(self, sizes, codes, loss, dtype, l2=0.0, drops=None):
        require_cuda()
        self.sizes = list(sizes)
        self.codes = list(codes)
        self.loss = loss
        self.dtype = np.dtype(dtype)
        self.l2 = float(l2)
        self.drops = list(drops) if drops is not None and any(drops) else None
        self.n_params = Layout.build(self.sizes, self.codes, 1).n_params
        self.theta = cuda.to_device(np.zeros(self.n_params, dtype=self.dtype))
        self._infer = None  # (layout, buffers) reused across predict calls

    # -- parameters ------------------------------------------------------------------
    def get_theta(self, out=None):
        """A NumPy copy of the flat parameter vector (into ``out`` when given)."""
        return self.theta.copy_to_host(out) if out is not None else self.theta.copy_to_host()

    def theta_finite(self):
        """Whether every parameter is finite (checked on the device, one int read back)."""
        return all_finite(self.theta)

    def set_theta(self, theta):
        """Overwrite the parameters from a flat NumPy vector (same length)."""
        self.theta.copy_to_device(np.ascontiguousarray(theta, dtype=self.dtype))

    # -- buffers ---------------------------------------------------------------------
    @property
    def _target_cols(self):
        """Columns of the packed targets: the label or the ``k`` targets, then the weight."""
        return (1 if self.loss == CROSS_ENTROPY else self.sizes[-1]) + 1

    def _buffers(self, layout, grad=True):
        """Device buffers for ``layout`` (``grad=False``: inference, no gradient vector)."""
        dt = self.dtype
        return train.DeviceBuffers(
            theta=self.theta,
            grad=cuda.device_array(self.n_params if grad else 1, dtype=dt),
            work=cuda.to_device(np.zeros(layout.work_size, dtype=dt)),
            deltas=cuda.to_device(np.zeros(2 * layout.delta_size, dtype=dt)),
            table=cuda.to_device(layout.table),
            targets=cuda.to_device(np.zeros(layout.cap * self._target_cols, dtype=dt)),
            row_loss=cuda.device_array(layout.cap, dtype=np.float64),
            acc=cuda.to_device(np.zeros(losses.N_ACC)),
            status=cuda.to_device(np.full(1, -1, dtype=np.int64)),
            partials=cuda.device_array(train.partial_slots(self.n_params), dtype=np.float64),
        )

    @staticmethod
    def _reset(bufs):
        bufs.acc.copy_to_device(np.zeros(losses.N_ACC))
        bufs.status.copy_to_device(np.full(1, -1, dtype=np.int64))

    @contextlib.contextmanager
    def _inference(self, n):
        """``(layout, buffers)`` for evaluating ``n`` rows: grown on demand and kept, so
        repeated predict calls allocate only their output; lent to one call at a time,
        as the CPU's (:meth:`.cpu.backend.CPUBackend._inference`)."""
        cap = min(n, config.PREDICT_CHUNK)
        with _LENDING:
            infer, self._infer = self._infer, None
        if infer is None or infer[0].cap < cap:
            layout = Layout.build(self.sizes, self.codes, cap)
            infer = (layout, self._buffers(layout, grad=False))
        try:
            yield infer
        finally:
            self._infer = infer

    def _chunks(self, X, T, cap):
        """``(start, m, X_chunk, T_chunk)`` on the device, ``cap`` rows at a time."""
        device_X = is_device_array(X)
        for start in range(0, X.shape[0], cap):
            m = min(cap, X.shape[0] - start)
            if device_X:
                Xc, first = X, start
            else:
                Xc, first = cuda.to_device(X[start:start + m]), 0
            Tc = None if T is None else cuda.to_device(T[start:start + m])
            yield start, m, Xc, first, Tc

    # -- evaluation ------------------------------------------------------------------
    @staticmethod
    def limit_threads(n_threads):
        """The host does no parallel work for the GPU: nothing to limit."""
        return contextlib.nullcontext()

    def check_X(self, X, convert=True):
        """A device array is validated where it is (2-D, C-contiguous, the net's width and
        dtype, finite) and stays there; anything else goes through
        :func:`fastdnn.validation.check_X` (converted whole: it is uploaded whole)."""
        if not is_device_array(X):
            return check_X(X, self.sizes[0], self.dtype)
        if not cuda.devicearray.is_cuda_ndarray(X):
            X = cuda.as_cuda_array(X)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features); got shape {X.shape}")
        if X.shape[0] == 0:
            raise ValueError("X is empty: it has 0 samples")
        if X.shape[1] != self.sizes[0]:
            raise ValueError(f"X has {X.shape[1]} features but the net expects {self.sizes[0]}")
        if np.dtype(X.dtype) != self.dtype:
            raise TypeError(f"a device array X must have the net's dtype {self.dtype.name}; "
                            f"got {np.dtype(X.dtype).name} (convert it on the device first)")
        if not X.is_c_contiguous():
            raise ValueError("a device array X must be C-contiguous")
        # On the device, one int read back (a NaN blamed the rate or the weights, or came
        # back as NaN outputs).
        if not all_finite(X.reshape(X.size)):
            raise ValueError("X contains NaN or infinity")
        return X

    @staticmethod
    def to_numpy(a):
        """A device array copied to the host; NumPy arrays as they are."""
        return a.copy_to_host() if is_device_array(a) else a

    def _logits(self, X):
        """Logits of the rows of ``X`` as a device array."""
        n = X.shape[0]
        k = self.sizes[-1]
        out = cuda.device_array(n * k, dtype=self.dtype)
        with self._inference(n) as (layout, bufs):
            for start, m, Xc, first, _ in self._chunks(X, None, layout.cap):
                _copy_rows(Xc, first, m, bufs.work)
                train.forward_layers(bufs, layout.table, m)
                train.copy_flat(bufs.work, layout.out_offset, out, start * k, m * k)
        return out.reshape(n, k)

    def outputs(self, X, head):
        """Logits, predictions (2-D) or probabilities, computed on the GPU; returned on
        the device for device-array ``X``, else copied to the host."""
        Z = self._logits(X)
        # Labels would be made up; checked on the device (one int read back).
        if head != LOGITS and self.loss in CLASSIFIERS and not all_finite(Z.reshape(Z.size)):
            raise non_finite_outputs(Z.copy_to_host())
        if head == LOGITS:
            out = Z
        elif head == LABELS and self.loss not in CLASSIFIERS:
            out = losses.predictions(self.loss, Z)
        elif head == LABELS:
            out = losses.labels(self.loss, Z)
        elif head == PROBABILITIES:
            out = losses.probabilities(self.loss, Z)
        else:
            raise ValueError(f"unknown output head {head!r}")
        return out if is_device_array(X) else out.copy_to_host()

    def pack_targets(self, T, w=None):
        """Checked targets and sample weights as the kernels take them (``spec.pack_targets``)."""
        return pack_targets(T, w, self.dtype)

    def evaluate(self, X, T, want_logits=False):
        """``(weighted mean loss + L2 penalty, NumPy logits or None)`` over all rows, in
        one forward pass."""
        k = self.sizes[-1]
        Z = cuda.device_array(X.shape[0] * k if want_logits else 1, dtype=self.dtype)
        with self._inference(X.shape[0]) as (layout, bufs):
            self._reset(bufs)
            for start, m, Xc, first, Tc in self._chunks(X, T, layout.cap):
                _copy_rows(Xc, first, m, bufs.work)
                _copy_rows(Tc, 0, m, bufs.targets)
                train.forward_layers(bufs, layout.table, m)
                if want_logits:
                    train.copy_flat(bufs.work, layout.out_offset, Z, start * k, m * k)
                losses.loss_grad(self.loss, bufs.work, layout.out_offset, bufs.targets,
                                 bufs.deltas, bufs.row_loss, m, k, bufs.acc)
            if self.l2 != 0.0:
                train.l2_penalty(bufs, layout.table, self.l2, with_grad=False)
            acc = bufs.acc.copy_to_host()
        weights = acc[losses.EVAL_WEIGHT]
        value = float((acc[losses.EVAL_SUM] / weights if weights > 0 else 0.0)
                      + acc[losses.PENALTY])
        return value, (Z.copy_to_host().reshape(X.shape[0], k) if want_logits else None)

    def gradient(self, X, T, dropout_key=None):
        """``(weighted mean loss + L2 penalty, flat gradient)`` over all rows, in one batch.

        ``dropout_key``: train-time dropout with the masks of that key (as a training
        step with the key's seed and step draws them); ``None``: no dropout.
        """
        n = X.shape[0]
        drops = self.drops if dropout_key is not None else None
        layout = Layout.build(self.sizes, self.codes, n, 0, drops)
        bufs = self._buffers(layout)
        for _, m, Xc, first, Tc in self._chunks(X, T, n):
            _copy_rows(Xc, first, m, bufs.work)
            _copy_rows(Tc, 0, m, bufs.targets)
        key = NO_KEY if dropout_key is None else np.uint64(dropout_key)
        train.loss_and_gradient(bufs, layout.table, self.loss, n, key)
        if self.l2 != 0.0:
            train.l2_penalty(bufs, layout.table, self.l2)
        return float(bufs.acc.copy_to_host()[losses.LAST]), bufs.grad.copy_to_host()

    # -- training --------------------------------------------------------------------
    def compile_ahead(self, batch_size, optimizer=None, clip_norm=None):
        """Nothing: the CUDA kernels are compiled as they are first launched."""

    def trainer(self, X, T, batch_size, optimizer, schedule, clip_norm=None):
        """A :class:`CUDATrainer` with buffers (and, when it fits, the data) on the GPU."""
        return CUDATrainer(self, X, T, batch_size, optimizer, schedule, clip_norm)

    @staticmethod
    def trainer_group(trainers):
        """The trainers' epochs one after another: each already fills the GPU's queue."""
        return CUDATrainerGroup(trainers)


class CUDATrainerGroup:
    """Several CUDA trainers, run epoch by epoch in turn (the CPU's group runs them in
    one compiled call)."""

    def __init__(self, trainers):
        self.trainers = list(trainers)

    def run_epochs(self, nets, sampling, seeds):
        """One epoch of each trainer ``nets[r]`` with ``seeds[r]``: a list of ``EpochResult``."""
        return [self.trainers[i].run_epoch(sampling, seed) for i, seed in zip(nets, seeds)]


def _data_budget():
    """Bytes of training data that may stay on the GPU (see ``config.CUDA_DATA_BYTES``)."""
    if config.CUDA_DATA_BYTES is not None:
        return int(config.CUDA_DATA_BYTES)
    free, _ = cuda.current_context().get_memory_info()
    return int(min(free, 2**62)) // 2  # the simulator reports infinite memory


class CUDATrainer:
    """Device buffers and arguments of one ``fit``; :meth:`run_epoch` trains one epoch."""

    def __init__(self, backend, X, T, batch_size, optimizer, schedule, clip_norm=None):
        n = X.shape[0]
        self.backend = backend
        self.n = n
        self.batch_size = batch_size
        self.steps_per_epoch = -(-n // batch_size)
        layout = Layout.build(backend.sizes, backend.codes, self.batch_size, 0, backend.drops)
        self.table = layout.table
        self.bufs = backend._buffers(layout)
        self.optimizer = optimizer
        state = optimizer.bind(layout.n_params, backend.dtype)
        hyper = optimizer.hyper()
        hyper[L2] = backend.l2
        hyper[CLIP_NORM] = 0.0 if clip_norm is None else clip_norm
        self.opt = OptimizerArgs(optimizer.code, hyper, cuda.to_device(state))
        self.sched = ScheduleArgs(*schedule)
        row_bytes = (X.shape[1] + T.shape[1]) * backend.dtype.itemsize
        self.resident = is_device_array(X) or n * row_bytes <= _data_budget()
        if self.resident:
            self.X = X if is_device_array(X) else cuda.to_device(X)
            self.T = cuda.to_device(T)
        else:
            # Whole batches per chunk, so that chunks change nothing but the uploads.
            rows = max(1, _data_budget() // row_bytes) // self.batch_size * self.batch_size
            self.chunk_rows = max(self.batch_size, rows)
            self.X_host, self.T_host = X, T
            self.X = cuda.device_array((self.chunk_rows, X.shape[1]), dtype=backend.dtype)
            self.T = cuda.device_array((self.chunk_rows, T.shape[1]), dtype=backend.dtype)
        self.in_order = cuda.to_device(np.arange(n, dtype=np.int64))

    def _order(self, sampling, seed):
        """The epoch's rows: a permutation, the CPU's uniform draws, or ``None`` (in order)."""
        if sampling == SHUFFLE:  # the CPU's permutation (counter draws), drawn here
            from ..cpu.train import _shuffle
            order = np.empty(self.n, dtype=np.int64)
            _shuffle(order, seed)
            return order
        if sampling == UNIFORM:
            # spec.random_index(mix64(seed), i, n) for every i at once: uint64 arrays wrap
            # around 2**64 as the hash means them to.
            key = mix64(np.full(1, seed, dtype=np.uint64))
            draws = mix64(key + np.arange(self.n, dtype=np.uint64)) % np.uint64(self.n)
            return draws.astype(np.int64)
        return None

    #: The host loop of :mod:`.train` launches an epoch's steps without waiting; cutting
    #: it would mean reading the status back mid-epoch, so runs are whole epochs.
    whole_epochs = True

    def run_steps(self, sampling, seed, first, end):
        """A whole epoch (``first == 0``, ``end == steps_per_epoch``; see ``whole_epochs``)."""
        if (first, end) != (0, self.steps_per_epoch):
            raise ValueError("the CUDA trainer runs whole epochs only")
        return self.run_epoch(sampling, seed)

    def run_epoch(self, sampling, seed):
        """Train one epoch from the optimizer's step count; advance it (see ``spec.Trainer``)."""
        bufs = self.bufs
        t0 = self.optimizer.t
        CUDABackend._reset(bufs)
        order = self._order(sampling, seed)
        args = (bufs, self.table, self.opt, self.sched)

        def plan(steps):
            return train.EpochPlan(self.backend.loss, self.batch_size, t0 + steps, seed, steps)

        if self.resident:
            order_d = self.in_order if order is None else cuda.to_device(order)
            steps, lr = train.train_steps(self.X, self.T, order_d, self.n, *args, plan(0))
        else:
            steps = 0
            for c0 in range(0, self.n, self.chunk_rows):
                m = min(self.chunk_rows, self.n - c0)
                rows = slice(c0, c0 + m) if order is None else order[c0:c0 + m]
                # A plain (pageable) copy waits for the kernels still reading the buffer.
                self.X[:m].copy_to_device(np.ascontiguousarray(self.X_host[rows]))
                self.T[:m].copy_to_device(np.ascontiguousarray(self.T_host[rows]))
                chunk_steps, lr = train.train_steps(self.X, self.T, self.in_order, m, *args,
                                                    plan(steps))
                steps += chunk_steps
        acc = bufs.acc.copy_to_host()
        failed = int(bufs.status.copy_to_host()[0])
        self.opt.state.copy_to_host(self.optimizer.state)
        loss_sum, weights = float(acc[losses.TRAIN_SUM]), float(acc[losses.TRAIN_WEIGHT])
        if failed < 0:
            self.optimizer.t = t0 + steps
            return EpochResult(loss_sum, self.n, steps, -1, lr, weights)
        # The updates from the failed step on were skipped: report the epoch as the CPU
        # does, stopped before that step (lr: of the last update made, 0 if none).
        s = failed - t0
        self.optimizer.t = failed
        if s > 0:
            lr = self.opt.hyper[LR] * lr_factor(self.sched.code, self.sched.params, failed - 1)
        else:
            lr = 0.0
        return EpochResult(loss_sum, s * self.batch_size, s, s, lr, weights)
