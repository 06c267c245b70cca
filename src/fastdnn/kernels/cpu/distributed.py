"""Data-parallel training steps over MPI: every rank computes the gradient of its own
local batch, one ``MPI_Allreduce`` per step sums them into the global batch's, and
every rank applies the same update, all inside the compiled loop.

Step ``s`` of a rank reads rows ``[s*b, (s+1)*b)`` of its shard (in order, by its own
permutation, or drawn uniformly; ``b`` is the local batch size).  Its weighted mean
loss ``L_r`` and gradient ``g_r`` (weights ``W_r``, the sum of its rows' sample
weights) go into one vector ``[g_r W_r, L_r W_r, W_r, m_r]`` (``m_r`` its rows); the
allreduce sums it over the ranks, and ``sum(g_r W_r) / sum(W_r)`` is the gradient of
the union of the local batches, as one process computes it for that batch
(``sum(w l) / sum(w)``), up to rounding.  Then the L2 penalty, the finiteness check,
clipping, the overflow guard and the update run as in :mod:`.train`, on values every
rank holds bit for bit, so every rank takes the same decisions (a failing step fails
on all of them) without another message.  A rank whose shard has run out sends an
empty batch (``W_r = 0``).

The loop body is :func:`.train._steps`'s with the local gradient replaced by the
allreduce: the two stay side by side on purpose (the single-process loop carries no
branch or buffer for MPI, and its compiled code is unchanged).

MPI is called through ``MPI_Allreduce`` itself, bound from the library mpi4py loaded
(not numba-mpi's wrapper: that one is fixed to ``MPI_COMM_WORLD`` and embeds ctypes
pointers, with which Numba refuses to cache a kernel, so every process would compile
the loop again).  The communicator, datatype and operation handles are arguments, so
any communicator works and the kernel is cached like the others.  Importing this module
imports mpi4py (``pip install 'fastdnn[mpi]'``); nothing else in fastdnn does.
"""
import ctypes
from collections import namedtuple

import numpy as np
from llvmlite import binding as llvm
from mpi4py import MPI
from numba import types

from ... import config
from ..spec import CLIP_NORM, DROP, L2, L2_WEIGHT, LR, SHUFFLE
from . import formulas as F
from .backend import CPUTrainer
from .checks import max_abs
from .scalars import max2, min2
from .train import (NO_KEY, PAIRED, SHARDED, EpochPlan, _shuffle, clip_by_norm, epoch_sums,
                    l2_penalty, loss_and_gradient, run_result, step_gradient,
                    train_steps_sharded, train_steps_wide)
from .updates import (SAFE_REFRESH, UNSAFE, lr_factor, optimizer_step, refresh_bounds,
                      step_is_safe)
from .wide import max_abs_wide, optimizer_step_wide
from .pipeline import njit

#: The vector one step reduces: the gradient times the local weight sum, then these.
LOSS_SUM, WEIGHT_SUM, ROWS = range(3)
EXTRA = 3
#: The slots of ``Reduction.handles``: MPI's communicator, datatype and operation
#: handles, and its ``MPI_IN_PLACE`` address, as integers.
COMM, DATATYPE, OP, IN_PLACE = range(4)
#: The allreduce's ``buffer`` (``n_params + EXTRA`` values of the net's dtype, reduced in
#: place: the trainer's gradient is a view of its head, so no copy goes in or out) and
#: the ``handles``.
Reduction = namedtuple("Reduction", "buffer handles")


def _handle_type():
    """Numba's type of an MPI handle, and the NumPy dtype that carries it: ``int`` in
    MPICH's ABI, a pointer in Open MPI's.  The handle array's dtype is part of the
    kernel's signature, so a cache compiled for one ABI is never run with the other."""
    sizes = {MPI._sizeof(kind) for kind in (MPI.Comm, MPI.Datatype, MPI.Op)}
    if sizes == {ctypes.sizeof(ctypes.c_int)}:
        return types.int32, np.int32
    if sizes == {ctypes.sizeof(ctypes.c_void_p)}:
        return types.intp, np.intp
    raise ImportError(f"unsupported MPI ABI: handles of {sorted(sizes)} bytes")


def _bind_allreduce():
    """Register ``MPI_Allreduce`` of mpi4py's MPI library with Numba's linker."""
    # dlsym on the extension's handle searches its dependencies: the MPI it was built for.
    for lib in (ctypes.CDLL(MPI.__file__), ctypes.CDLL(None)):
        try:
            address = ctypes.cast(lib.MPI_Allreduce, ctypes.c_void_p).value
        except AttributeError:
            continue
        llvm.add_symbol("MPI_Allreduce", address)
        return
    raise ImportError(f"MPI_Allreduce not found in the MPI library of {MPI.__file__}")


_HANDLE, HANDLE_DTYPE = _handle_type()
_bind_allreduce()
#: ``int MPI_Allreduce(const void *send, void *recv, int count, MPI_Datatype, MPI_Op,
#: MPI_Comm)``; ``send`` as an integer, since it is the constant ``MPI_IN_PLACE`` here.
_allreduce = types.ExternalFunction("MPI_Allreduce", types.int32(
    types.intp, types.voidptr, types.int32, _HANDLE, _HANDLE, _HANDLE))


def reduction(comm, n_params, dtype):
    """The :data:`Reduction` of a fit of ``n_params`` parameters of ``dtype`` on ``comm``."""
    datatype = {np.dtype(np.float32): MPI.FLOAT, np.dtype(np.float64): MPI.DOUBLE}[np.dtype(dtype)]
    bits = 8 * np.dtype(HANDLE_DTYPE).itemsize
    # mpi4py gives handles as unsigned integers; the C call takes their bit pattern.
    handles = [(h.handle + (1 << (bits - 1))) % (1 << bits) - (1 << (bits - 1))
               for h in (comm, datatype, MPI.SUM)]
    return Reduction(np.zeros(n_params + EXTRA, dtype=dtype),
                     np.array(handles + [int(MPI.IN_PLACE)], dtype=HANDLE_DTYPE))


@njit(cache=config.CACHE, inline="always")
def allreduce_sum(red):
    """``red.buffer`` summed over the ranks, in place."""
    status = _allreduce(red.handles[IN_PLACE], red.buffer.ctypes.data, red.buffer.size,
                        red.handles[DATATYPE], red.handles[OP], red.handles[COMM])
    if status != 0:
        raise RuntimeError("MPI_Allreduce failed")


@njit(cache=config.CACHE, inline="always")
def _global_gradient(X, T, theta, table, bufs, plan, red, path, dropping, s):
    """Loss and gradient (into ``bufs.grad``) of step ``s``'s global batch; returns
    ``(loss, weight_sum, rows)`` of that batch."""
    n = X.shape[0]
    bs = plan.batch_size
    m = min2(bs, max2(n - s * bs, 0))  # 0 once this rank's shard is used up
    n_params = bufs.grad.shape[0]
    value = 0.0
    w = 0.0
    if m > 0:
        key = F.step_key(plan.seed, s) if dropping else NO_KEY
        value, w = step_gradient(X, T, theta, table, bufs, plan.loss, plan.sampling, s * bs, m,
                                 F.mix64(np.uint64(plan.seed)), key, path,
                                 loss_and_gradient)
    # bufs.grad is red.buffer[:n_params]
    for i in range(n_params):
        bufs.grad[i] = bufs.grad[i] * w if m > 0 else 0.0
    red.buffer[n_params + LOSS_SUM] = value * w
    red.buffer[n_params + WEIGHT_SUM] = w
    red.buffer[n_params + ROWS] = m
    allreduce_sum(red)
    total_w = float(red.buffer[n_params + WEIGHT_SUM])
    inv = 1.0 / total_w if total_w > 0 else 0.0  # all weights 0: adds nothing, as one process
    for i in range(n_params):
        bufs.grad[i] = bufs.grad[i] * inv
    return red.buffer[n_params + LOSS_SUM] * inv, total_w, int(red.buffer[n_params + ROWS])


@njit(cache=config.CACHE, inline="always")
def _steps(X, T, theta, table, bufs, opt, sched, plan, red, path, wide):
    # train._steps, with the batch's loss and gradient those of the global batch; ``wide``
    # (a constant): the guard's scan and the update in parallel chunks (.wide).
    if plan.first == 0 and plan.sampling == SHUFFLE:
        _shuffle(bufs.order, plan.seed)
    dropping = False
    for i in range(table.shape[0]):
        dropping = dropping or table[i, DROP] > 0
    l2 = opt.hyper[L2]
    l2_weight = opt.hyper[L2_WEIGHT]
    clip = opt.hyper[CLIP_NORM]
    total, weights = epoch_sums(bufs, plan)
    seen = 0
    lr = 0.0
    for s in range(plan.first, plan.end):
        value, w, m = _global_gradient(X, T, theta, table, bufs, plan, red, path, dropping, s)
        if l2 != 0.0:  # the global batch's weight w
            value += l2_penalty(theta, table, F.step_l2(l2, l2_weight, w), bufs.grad)
        g_max = max_abs_wide(bufs.grad) if wide else max_abs(bufs.grad)
        t = plan.t0 + s - plan.first
        if not (np.isfinite(value) and np.isfinite(g_max)):
            return run_result(bufs, total, seen, s - plan.first, s, lr, weights)
        if clip != 0.0:
            g_max *= clip_by_norm(bufs.grad, clip)
        lr = opt.hyper[LR] * lr_factor(sched.code, sched.params, t)
        safe = step_is_safe(opt.code, opt.hyper, lr, theta, bufs.grad, opt.state, t, g_max,
                            bufs.guard)
        if safe == UNSAFE:
            return run_result(bufs, total, seen, s - plan.first, s, lr, weights)
        if wide:
            optimizer_step_wide(opt.code, opt.hyper, lr, theta, bufs.grad, opt.state, t)
        else:
            optimizer_step(opt.code, opt.hyper, lr, theta, bufs.grad, opt.state, t)
        if safe == SAFE_REFRESH:
            refresh_bounds(theta, opt.state, bufs.guard)
        total += value * w
        weights += w
        seen += m
    return run_result(bufs, total, seen, plan.end - plan.first, -1, lr, weights)


@njit(cache=config.CACHE, nogil=True)
def distributed_steps(X, T, theta, table, bufs, opt, sched, plan, red):
    """Steps ``[plan.first, plan.end)`` of a data-parallel epoch, one allreduce each;
    returns :func:`.train.train_steps`' tuple for the global batches (every rank the
    same).  Every rank of the communicator must call it with the same steps."""
    return _steps(X, T, theta, table, bufs, opt, sched, plan, red, PAIRED, False)


@njit(cache=config.CACHE, nogil=True)
def distributed_steps_wide(X, T, theta, table, bufs, opt, sched, plan, red):
    """:func:`distributed_steps` for big nets (:func:`.train.train_steps_wide`): the
    guard's scan and the update in parallel chunks; the same bits."""
    return _steps(X, T, theta, table, bufs, opt, sched, plan, red, PAIRED, True)


@njit(cache=config.CACHE, nogil=True)
def distributed_steps_sharded(X, T, theta, table, bufs, opt, sched, plan, red):
    """:func:`distributed_steps` with each local gradient from row shards in parallel."""
    return _steps(X, T, theta, table, bufs, opt, sched, plan, red, SHARDED, False)


def rank_seed(seed, rank):
    """The sampling and dropout seed of ``rank`` in the epoch drawn with ``seed``."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint32)[0] >> 1)


class DistributedTrainer(CPUTrainer):
    """A :class:`~.backend.CPUTrainer` whose steps are those of the global batch on
    ``comm``: ``batch_size`` is the local batch, ``steps_per_epoch`` the agreed count
    (the most any rank's shard needs)."""

    def __init__(self, backend, X, T, batch_size, optimizer, schedule, clip_norm, comm,
                 steps_per_epoch):
        super().__init__(backend, X, T, batch_size, optimizer, schedule, clip_norm)
        self.steps_per_epoch = steps_per_epoch
        self.rank = comm.Get_rank()
        self.epoch_kernel = (distributed_steps_sharded if self.epoch_kernel is train_steps_sharded
                             else distributed_steps_wide if self.epoch_kernel is train_steps_wide
                             else distributed_steps)
        self.reduction = reduction(comm, backend.n_params, backend.dtype)
        self.bufs = self.bufs._replace(grad=self.reduction.buffer[:backend.n_params])

    def run_steps(self, sampling, seed, first, end):
        """Steps ``[first, end)`` of the epoch drawn with ``seed`` (every rank at once)."""
        plan = EpochPlan(*self.plan(sampling, rank_seed(seed, self.rank), first, end))
        return self.finish(self.epoch_kernel(*self.kernel_args(plan)))

    def kernel_args(self, plan):
        """The epoch kernel's arguments for ``plan``: the local kernel's and the
        reduction."""
        return super().kernel_args(plan) + (self.reduction,)
