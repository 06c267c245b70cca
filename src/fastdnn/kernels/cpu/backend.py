"""CPU backend: owns the parameter vector and the buffers, and calls the Numba kernels.

Implements :class:`fastdnn.kernels.spec.Backend`; its CUDA twin is
:mod:`fastdnn.kernels.cuda.backend`.
"""
import contextlib
import numbers
import threading
import weakref
from functools import partial

import numba
import numpy as np
from numba import typed

from ... import config
from ...optim import Optimizer, make_optimizer
from ...validation import X_rows, check_X, is_kernel_ready
from ..spec import (CLASSIFIERS, CLIP_NORM, CROSS_ENTROPY, L2, LABELS, LOGITS, MSE,
                    PROBABILITIES, EpochResult, Layout, OptimizerArgs, ScheduleArgs,
                    non_finite_outputs, pack_targets)
from . import blas, forks, mkl, pair, threads, warmup
from .checks import finite
from .pipeline import cache_may_fail
from .losses import compile_head, labels, predictions, probabilities
from .train import (NO_KEY, Buffers, EpochPlan, forward_chunks, l2_penalty, loss_and_gradient,
                    loss_of_logits, plain_sgd, stack_size, train_epoch_many, train_steps,
                    train_steps_online, train_steps_paired, train_steps_sharded,
                    train_steps_wide, train_steps_wide_sgd)
from .updates import GUARD_SLOTS, LIMIT, refresh_bounds_host


def one_row_gemm_macs():
    """The multiply-adds from which a one-row product goes to BLAS:
    ``config.ONE_ROW_GEMM_MACS``, or where that is ``None`` the value measured on this
    CPU's vendor (``config.ONE_ROW_GEMM_MACS_BY_VENDOR``), else Intel's 8192 (on a CPU
    not measured, the choice only changes the speed and the last bits, never the math).

    Raises
    ------
    ValueError
        If ``config.ONE_ROW_GEMM_MACS`` is not ``None`` or a non-negative integer.
    """
    value = config.ONE_ROW_GEMM_MACS
    if value is None:
        by_vendor = config.ONE_ROW_GEMM_MACS_BY_VENDOR
        return by_vendor.get(mkl.cpu_vendor(), by_vendor["GenuineIntel"])
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError("fastdnn.config.ONE_ROW_GEMM_MACS must be None or a non-negative "
                         f"integer, got {value!r}")
    return int(value)


def _layout(sizes, codes, cap, drops=None):
    """The layout of batches of up to ``cap`` rows; one-row batches (online SGD) keep
    more of their products in the loop kernels (:func:`one_row_gemm_macs`)."""
    gemm_min = one_row_gemm_macs() if cap == 1 else config.SMALL_GEMM_MACS
    return Layout.build(sizes, codes, cap, gemm_min, drops, input_slot=False)


#: Guards the hand-over of a backend's evaluation buffers (:meth:`CPUBackend._inference`);
#: held for two assignments, never while a kernel runs.
_LENDING = threading.Lock()


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
    l2 : float
        The L2 penalty ``l2 / 2 * sum(W**2)`` of the loss (weights only).
    drops : list of int, optional
        Dropout threshold per hidden layer (``spec.dropout_threshold``), training only.
    """

    device = "cpu"

    def __init__(self, sizes, codes, loss, dtype, l2=0.0, drops=None):
        blas.prepare(sizes, dtype)
        self.sizes = list(sizes)
        self.codes = list(codes)
        self.loss = loss
        self.dtype = dtype
        self.l2 = float(l2)
        self.drops = list(drops) if drops is not None and any(drops) else None
        self.n_params = _layout(self.sizes, self.codes, 1).n_params
        self.theta = np.zeros(self.n_params, dtype=dtype)
        # (layout, work, deltas) reused across predict calls: one for single rows, one
        # for more (their layouts differ, :func:`_layout`).
        self._infer = {}

    # -- parameters ------------------------------------------------------------------
    def get_theta(self, out=None):
        """A NumPy copy of the flat parameter vector (into ``out`` when given)."""
        if out is None:
            return self.theta.copy()
        np.copyto(out, self.theta)
        return out

    def theta_finite(self):
        """Whether every parameter is finite (checked in place, no copy)."""
        return finite(self.theta)

    def set_theta(self, theta):
        """Overwrite the parameters from a flat NumPy vector (same length and dtype)."""
        np.copyto(self.theta, theta)

    @staticmethod
    def limit_threads(n_threads):
        """Numba's pool at ``n_threads`` for the block (:func:`.threads.limit_threads`)."""
        return threads.limit_threads(n_threads)

    # -- evaluation ------------------------------------------------------------------
    def check_X(self, X, convert=True):
        """``X`` checked and converted (:func:`fastdnn.validation.check_X`; ``convert=False``:
        inference converts it a chunk at a time, see :meth:`_logits`)."""
        return check_X(X, self.sizes[0], self.dtype, convert)

    def pack_targets(self, T, w=None):
        """Checked targets and sample weights as the kernels take them (``spec.pack_targets``)."""
        return pack_targets(T, w, self.dtype)

    @staticmethod
    def to_numpy(a):
        """NumPy arrays are the CPU's own."""
        return a

    def _buffers(self, layout):
        work = np.zeros(layout.work_size, dtype=self.dtype)
        deltas = np.zeros((2, layout.delta_size), dtype=self.dtype)
        return work, deltas

    @contextlib.contextmanager
    def _inference(self, n):
        """``(layout, work, deltas)`` for evaluating ``n`` rows: grown on demand and kept,
        so repeated predict calls allocate nothing but the output; lent to one call at a
        time (a call that finds them lent makes its own).  Shared, three threads'
        predicts on one net read each other's rows: 118 of 120 results were wrong.

        A single row has buffers of its own: its layout keeps more products in the loop
        kernels.  In the buffers of an earlier call of 100 rows, one row's logits took
        the other layout and differed in their last bits from the same row's before."""
        cap = min(n, config.PREDICT_CHUNK)
        single = cap == 1
        with _LENDING:
            infer = self._infer.pop(single, None)
        if infer is None or infer[0].cap < cap:
            layout = _layout(self.sizes, self.codes, cap)
            # One delta block: the evaluation's loss takes deltas[0] as its scratch, the
            # second block of training's pair was never written.
            infer = (layout, np.zeros(layout.work_size, dtype=self.dtype),
                     np.zeros((1, layout.delta_size), dtype=self.dtype))
        try:
            yield infer
        finally:
            # Kept for the next call only up to config.KEEP_EVAL_BYTES: a 16-512-20000 net
            # (39 MB of weights) held 1 GB of them for good after one score of 4096 rows.
            if infer[1].nbytes + infer[2].nbytes <= config.KEEP_EVAL_BYTES:
                self._infer[single] = infer

    def _logits(self, X):
        n = X.shape[0]
        Z = np.empty((n, self.sizes[-1]), dtype=self.dtype)
        with self._inference(n) as (layout, work, _):
            # Returns nothing: boxing a returned array costs more than the whole kernel
            # for a single-row predict.
            if is_kernel_ready(X, self.dtype):
                forward_chunks(X, self.theta, layout.table, work, Z, layout.cap)
            else:  # converted a chunk at a time (check_X's convert=False)
                for start in range(0, n, layout.cap):
                    rows = slice(start, start + layout.cap)
                    forward_chunks(X_rows(X[rows], self.dtype), self.theta, layout.table,
                                   work, Z[rows], layout.cap)
        return Z

    def outputs(self, X, head):
        """Logits, predictions (2-D) or probabilities of the rows of ``X``."""
        Z = self._logits(X)
        n, k = Z.shape
        if head == LOGITS:
            return Z
        if self.loss in CLASSIFIERS and not finite(Z):  # labels would be made up
            raise non_finite_outputs(Z)
        if head == LABELS:
            if self.loss == MSE:
                return Z  # the predictions are the outputs
            if self.loss not in CLASSIFIERS:  # poisson: exp(Z), in place
                predictions(self.loss, Z, Z)
                return Z
            out = np.empty((n, 1 if self.loss == CROSS_ENTROPY else k), dtype=np.int64)
            labels(self.loss, Z, out)
            return out
        if head == PROBABILITIES:
            P = np.empty((n, 2 if k == 1 else k), dtype=self.dtype)
            probabilities(self.loss, Z, P)
            return P
        raise ValueError(f"unknown output head {head!r}")

    def _penalty(self, table, grad):
        if self.l2 == 0.0:
            return 0.0
        return float(l2_penalty(self.theta, table, self.l2, grad))

    def evaluate(self, X, T, want_logits=False):
        """``(weighted mean loss + L2 penalty, logits or None)`` over all rows, in one
        forward pass."""
        Z = self._logits(X)
        layout, value = self._loss_of_logits(Z, T)
        value += self._penalty(layout.table, np.empty(0, dtype=self.dtype))
        return float(value), (Z if want_logits else None)

    def _loss_of_logits(self, Z, T):
        """``(layout, weighted mean loss of the logits Z against T)``: the evaluation's
        second kernel (the first is :meth:`_logits`; :mod:`.warmup` compiles each)."""
        with self._inference(Z.shape[0]) as (layout, _, deltas):
            return layout, loss_of_logits(Z, T, self.loss, deltas[0], layout.cap)

    def gradient(self, X, T, dropout_key=None):
        """``(weighted mean loss + L2 penalty, flat gradient)`` over all rows, in one batch.

        ``dropout_key``: train-time dropout with the masks of that key (as a training
        step with the key's seed and step draws them); ``None``: no dropout.
        """
        drops = self.drops if dropout_key is not None else None
        layout = _layout(self.sizes, self.codes, X.shape[0], drops)
        work, deltas = self._buffers(layout)
        grad = np.zeros(self.n_params, dtype=self.dtype)
        key = NO_KEY if dropout_key is None else np.uint64(dropout_key)
        value = loss_and_gradient(X, T, self.theta, layout.table, work, deltas, grad, self.loss,
                                  key, 0)
        value += self._penalty(layout.table, grad)
        return float(value), grad

    def gradient_ready(self, X, T):
        """Whether :meth:`gradient`'s kernel is compiled, or cached, for these rows'
        types (:func:`.warmup.ready`; its arrays' types are the dtype's)."""
        dtype = self.dtype
        return warmup.ready(loss_and_gradient, (
            X, T, self.theta, np.zeros((0, 0), np.int64), np.zeros(0, dtype),
            np.zeros((2, 0), dtype), np.zeros(0, dtype), self.loss, NO_KEY, 0))

    # -- training --------------------------------------------------------------------
    def compile_ahead(self, batch_size, optimizer=None, clip_norm=None):
        """On an empty cache, compile the pass and the evaluation (online SGD, batches of
        one row: only the evaluation) in a helper process (:mod:`.warmup`), and the loss
        head here while this process would wait for the pass.  ``optimizer`` and
        ``clip_norm``, as ``fit`` takes them, tell which pass the epoch kernel calls."""
        if isinstance(batch_size, numbers.Integral) and batch_size >= 1:
            # A Python int: np.int64(2**62) rows overflowed the shard sizing's products
            # (RuntimeWarnings) before fit capped it at the data's rows.
            batch_size = int(batch_size)
            online = batch_size == 1  # the online kernel inlines its head
            try:
                optimizer = make_optimizer(optimizer)
                plain = isinstance(optimizer, Optimizer) and _plain_sgd(
                    optimizer.code, _hyper(optimizer, self.l2, clip_norm))
            except (TypeError, ValueError, OverflowError):  # the fit will say what is wrong
                plain = False
            kernel = epoch_kernel(self.sizes, batch_size, self.n_params, plain)
            warmup.start(self.sizes, self.codes, self.loss, self.dtype, online=online,
                         meanwhile=None if online else partial(compile_head, self.loss,
                                                               self.dtype),
                         batch_size=batch_size, stacked=kernel is train_steps_wide_sgd)

    def trainer(self, X, T, batch_size, optimizer, schedule, clip_norm=None):
        """A :class:`CPUTrainer` with buffers sized once for this fit."""
        return CPUTrainer(self, X, T, batch_size, optimizer, schedule, clip_norm)

    @staticmethod
    def trainer_group(trainers):
        """A :class:`CPUTrainerGroup`: the epochs of several fits in one compiled call."""
        return CPUTrainerGroup(trainers)


def _splits_products(sizes, rows):
    """Whether a batch of ``rows`` has a product that :mod:`.blas` splits over threads."""
    return rows * max(k * n for k, n in zip(sizes[:-1], sizes[1:])) >= blas.PARALLEL_MACS


def n_shards(sizes, rows):
    """Row shards of a training batch: ``config.SHARDS`` when the largest shard of a
    full batch (``ceil(rows / SHARDS)`` rows; the others may have one fewer, and a short
    last batch's fewer still) keeps at least ``config.MIN_SHARD_ROWS`` rows and
    ``config.MIN_SHARD_MACS`` multiply-adds, and
    every per-shard product stays below the size
    at which :mod:`.blas` splits it over threads itself (no nested parallelism)."""
    shards = config.SHARDS
    per_shard = -(-rows // max(shards, 1))
    macs = per_shard * sum(k * n for k, n in zip(sizes[:-1], sizes[1:]))
    if (shards < 2 or rows < shards or per_shard < config.MIN_SHARD_ROWS
            or macs < config.MIN_SHARD_MACS):
        return 1
    if _splits_products(sizes, per_shard):
        return 1
    return shards


def epoch_kernel(sizes, batch_size, n_params, plain):
    """The epoch kernel of a fit of a net of layer ``sizes`` and ``n_params`` parameters
    in batches of ``batch_size`` rows; ``plain``: by plain SGD (:func:`.train.plain_sgd`)."""
    shards = n_shards(sizes, batch_size)
    if batch_size == 1:
        return train_steps_online
    if shards == 2:  # a pair (.pair: three buffer slots, no parallel region)
        return train_steps_paired
    if shards > 2:  # Numba's pool
        return train_steps_sharded
    if n_params < config.WIDE_UPDATE_PARAMS:
        return train_steps
    return train_steps_wide_sgd if plain else train_steps_wide


def _hyper(optimizer, l2, clip_norm):
    """The float64 hyper-parameters the kernels read for ``optimizer``, with the net's
    ``l2`` penalty and the fit's ``clip_norm``."""
    hyper = optimizer.hyper()
    hyper[L2] = l2
    hyper[CLIP_NORM] = 0.0 if clip_norm is None else clip_norm
    return hyper


#: :func:`.train.plain_sgd` in Python: the kernel's own test of which fits it fuses.
_plain_sgd = plain_sgd.py_func


class CPUTrainer:
    """Buffers and arguments of one ``fit``; :meth:`run_steps` trains a run of an epoch's
    steps, :meth:`run_epoch` a whole epoch."""

    whole_epochs = False

    def __init__(self, backend, X, T, batch_size, optimizer, schedule, clip_norm=None):
        n = X.shape[0]
        dtype = backend.dtype
        self.backend = backend
        self.X, self.T = X, T
        self.batch_size = batch_size
        self.steps_per_epoch = -(-n // batch_size)
        self.optimizer = optimizer
        shards = n_shards(backend.sizes, batch_size)
        layout = _layout(backend.sizes, backend.codes, -(-batch_size // shards), backend.drops)
        self.table = layout.table
        self.paired = shards == 2
        self._release = None  # while a helper thread serves this fit: its release
        slots = 3 if self.paired else shards
        hyper = _hyper(optimizer, backend.l2, clip_norm)
        self.epoch_kernel = epoch_kernel(backend.sizes, batch_size, layout.n_params,
                                         _plain_sgd(optimizer.code, hyper))
        delta_size = layout.delta_size
        if self.epoch_kernel is train_steps_wide_sgd:  # every layer's dL/dZ, in deltas[0]
            delta_size = max(delta_size, -(-stack_size(backend.sizes, layout.cap) // 2))
        self.bufs = Buffers(
            work=np.zeros((slots, layout.work_size), dtype=dtype),
            deltas=np.zeros((slots, 2, delta_size), dtype=dtype),
            shard_grads=np.zeros((slots, layout.n_params) if shards > 1 else (1, 0), dtype=dtype),
            shard_losses=np.zeros(slots),
            grad=np.zeros(layout.n_params, dtype=dtype),
            inputs=np.zeros(pair.batch_rows(self.paired, batch_size) * X.shape[1], dtype=dtype),
            targets=np.zeros(pair.batch_rows(self.paired, batch_size) * T.shape[1], dtype=dtype),
            order=np.arange(n, dtype=np.int64),
            guard=np.zeros(GUARD_SLOTS),
            control=pair.new_control(2 if self.paired else 1, T.shape[1], batch_size),
            moved=pair.new_moved(self.paired, optimizer.code, layout.n_params, dtype),
            sums=np.zeros(2))
        state = optimizer.bind(layout.n_params, dtype)
        self.opt = OptimizerArgs(optimizer.code, hyper, state)
        self.sched = ScheduleArgs(*schedule)
        # Half the largest finite value: the guard's bounds are loose, the margin is cheap.
        self.bufs.guard[LIMIT] = float(np.finfo(dtype).max) / 2
        refresh_bounds_host(backend.theta, state, self.bufs.guard)

    def plan(self, sampling, seed, first, end):
        """The int64 row of a run of steps ``[first, end)`` (``EpochPlan``'s fields)."""
        return (self.backend.loss, self.batch_size, sampling, self.optimizer.t, seed, first, end)

    def run_steps(self, sampling, seed, first, end):
        """Steps ``[first, end)`` of the epoch drawn with ``seed``, from the optimizer's
        step count; advance it (see ``spec.Trainer``)."""
        if self.paired and self._release is None and pair.helps(numba.get_num_threads()):
            pair.start(self.X, self.T, self.backend.theta, self.table, self.bufs, self.opt)
            # The helper stays with this fit until close() (or until the trainer is freed).
            self._release = weakref.finalize(self, pair.stop, self.bufs.control)
        return self.finish(self.epoch_kernel(
            *self.kernel_args(EpochPlan(*self.plan(sampling, seed, first, end)))))

    def kernel_args(self, plan):
        """The epoch kernel's arguments for the run of steps ``plan``."""
        return (self.X, self.T, self.backend.theta, self.table, self.bufs, self.opt,
                self.sched, plan)

    def kernel_ready(self):
        """Whether the epoch kernel is compiled for this fit's argument types in this
        process or in Numba's disk cache (True when it cannot tell)."""
        return warmup.ready(self.epoch_kernel, self._probe_args())

    def kernel_loaded(self):
        """Whether the epoch kernel is compiled, or loaded, in this process for this fit's
        argument types: its first run then compiles nothing (a second fit's first epoch
        has a rate)."""
        return warmup.loaded(self.epoch_kernel, self._probe_args())

    def _probe_args(self):
        """The epoch kernel's arguments for an empty run: their types are any run's."""
        return self.kernel_args(EpochPlan(*self.plan(0, 0, 0, 0)))

    def close(self):
        """The fit is over: let the helper thread go (see :mod:`.pair`)."""
        if self._release is not None:
            self._release()
            self._release = None

    def run_epoch(self, sampling, seed):
        """Train one whole epoch (:meth:`run_steps` over all its steps)."""
        return self.run_steps(sampling, seed, 0, self.steps_per_epoch)

    def finish(self, raw):
        """Advance the step count by a run's ``(loss_sum, samples, steps, failed, lr, weights)``
        (``loss_sum`` and ``weights``: the epoch's so far)."""
        loss_sum, seen, steps, failed, lr, weights = raw
        self.optimizer.t += int(steps)
        return EpochResult(float(loss_sum), int(seen), int(steps), int(failed), float(lr),
                           float(weights))


@cache_may_fail  # a cache that cannot be written: warned, not raised
@numba.njit(cache=config.CACHE)
def _list_of(item):
    """A typed list holding ``item``; with :func:`_append`, what ``numba.typed.List(items)``
    does, but compiled once, into the disk cache: the constructor's own list code compiles
    in every process, 1-2.5 s per item type (7.6 s of a warm process's first
    ``fit_many``, AMD EPYC)."""
    items = typed.List()
    items.append(item)
    return items


@cache_may_fail  # a cache that cannot be written: warned, not raised
@numba.njit(cache=config.CACHE)
def _append(items, item):
    items.append(item)


def _typed_list(items):
    """``items`` (a non-empty sequence of one Numba type) as a typed list."""
    out = _list_of(items[0])
    for item in items[1:]:
        _append(out, item)
    return out


class CPUTrainerGroup:
    """Trainers of several nets on the same data, whose epochs run in one compiled call,
    parallel over the nets (:func:`.train.train_epoch_many`).

    Small nets leave the cores idle inside one fit (their products are too small to
    split); many of them fill the cores instead.  Where a trainer splits its own
    products or batches over threads, the group runs the epochs one after another
    (nested parallel regions would oversubscribe the pool).
    """

    def __init__(self, trainers):
        self.trainers = list(trainers)
        first = self.trainers[0]
        if any(t.X is not first.X or t.T is not first.T for t in self.trainers):
            raise ValueError("a trainer group trains its nets on the same X and T")
        self.together = all(t.epoch_kernel in (train_steps, train_steps_paired, train_steps_online)
                            and not _splits_products(t.backend.sizes, t.batch_size)
                            for t in self.trainers)
        # Typed lists, built once (the kernels update the arrays they hold in place), and
        # only when used.
        self.lists = None
        if self.together:
            self.lists = [_typed_list(items) for items in zip(*(
                (t.backend.theta, t.table, t.bufs, t.opt, t.sched) for t in self.trainers))]

    def kernel_loaded(self):
        """Whether the group's first epoch compiles nothing (see ``CPUTrainer.kernel_loaded``)."""
        if not self.together:
            return all(t.kernel_loaded() for t in self.trainers)
        first = self.trainers[0]
        return warmup.loaded(forks.runnable(train_epoch_many),
                             (first.X, first.T, *self.lists, np.zeros((1, 8), np.int64),
                              np.zeros((1, 6))))

    def run_epochs(self, nets, sampling, seeds):
        """One epoch of each trainer ``nets[r]`` with ``seeds[r]``: a list of ``EpochResult``."""
        if not self.together:
            return [self.trainers[i].run_epoch(sampling, seed) for i, seed in zip(nets, seeds)]
        plans = np.array([(i, *self.trainers[i].plan(sampling, seed, 0,
                                                      self.trainers[i].steps_per_epoch))
                          for i, seed in zip(nets, seeds)], dtype=np.int64).reshape(len(nets), 8)
        results = np.zeros((len(nets), 6))
        first = self.trainers[0]
        forks.runnable(train_epoch_many)(first.X, first.T, *self.lists, plans, results)
        return [self.trainers[i].finish(row) for i, row in zip(nets, results)]
