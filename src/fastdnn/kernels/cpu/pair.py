"""A batch's gradient as two row shards, the second taken by a helper thread when it is
free, never waited for when it is not.

A training step of a small net is too short for a parallel region: Numba's pool (and
OpenMP's, and BLAS's) joins its threads at a barrier, and when another process holds a
core the barrier waits for the scheduler, a whole time slice per step (measured on the
2-core dev machine: 16-32-32-32-2 at batch 64 fell from 2.2 M to 5 k samples/s).  Here
the calling thread publishes each step as a job, computes the first shard, and then
claims the second itself unless the helper claimed it first (an atomic compare-and-swap
on the job's number).  It waits only for a second shard the helper has started, and
only for about as long as the first shard took; past that it computes the shard itself
into a slot of its own (the helper's late result is ignored).  A helper that never runs
costs a step nothing but the claim.

The shards are fixed by the batch's shape (rows ``[0, m//2)`` and ``[m//2, m)``) and
summed in order (:func:`_combine_pair`), so the result is the same whichever thread
computed the second shard, with or without a helper, for any thread count.  A job
describes its batch (where it starts in the epoch's sampling), and each thread gathers
its own shard's rows into buffer rows of its own.

An Adam step is split the same way (:func:`paired_adam`): the caller updates the first
half of the parameters in place while the helper, if it claims the job, writes the new
second half out of place, so that a helper that stalls there never holds the step
either (on digits, float64: the update 15 -> 11 us of a 95 us step, Intel Xeon).

Slots of the shard buffers (``Buffers.work`` ... ``shard_losses``): 0 the caller's
first shard, 1 the helper's second shard, 2 the caller's own second shard; the rows of
``Buffers.inputs`` and ``targets`` are split the same way (:func:`batch_rows`).  The helper
thread is one per process, parked between fits (its hand-over costs a GIL round trip,
which per run of steps made breast cancer's 2-step epochs slower); during a fit it
spins (``pause``), and sleeps 50 us at a time after 2 ms without a job.
"""
import ctypes
import os
import platform
import threading

import numpy as np
from llvmlite import ir
from numba import cfunc, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import make_array

from ... import config
from ..spec import ADAM, BETA1, BETA2, DECOUPLED, EPS, WEIGHT_DECAY
from . import train as _train  # an import cycle: train's steps call paired_gradient
from .losses import weight_sum
from .updates import adam_update, adam_update_into
from .views import borrow, flat, view2d
from .pipeline import njit

# Slots of the int64 ``control`` array (``Buffers.control``).  The ones that both
# threads write each have a cache line of their own.
JOB, CLAIM, DONE = 0, 8, 16     # the last job published, claimed (shard 2), done by the helper
STOP = 24                       # non-zero: the helper's loop returns
N_SHARDS, ROWS, LOSS, KEY, N_TARGETS = 32, 33, 34, 35, 36
START, SAMPLING, DRAW = 37, 38, 39  # the job's batch: its first position, how it is drawn
UJOB, UCLAIM, UDONE = 40, 48, 56  # the same for the update jobs (the second half of Adam)
HOME, U_LR, U_T = 64, 65, 66      # where that half's moments are; the job's lr and step
HELPER_ROWS, OWN_ROWS = 67, 68    # the buffers' rows of the second shard: helper's, caller's
CONTROL_SIZE = 72

#: Spins of the helper without a job before it sleeps between looks (2 ms at 2.5 GHz).
_IDLE_CYCLES = 5_000_000
#: Cycles the caller waits for a claimed shard beyond the time its own shard took; and a
#: bound on its spins there that holds without a cycle counter (about 0.1-1 s).
_SLACK_CYCLES = 20_000
_MAX_SPINS = 10_000_000

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


def _slot(context, builder, sig, args):
    ary = make_array(sig.args[0])(context, builder, args[0])
    return cgutils.get_item_pointer(context, builder, sig.args[0], ary, [args[1]])


@intrinsic
def load_acquire(typingctx, arr, i):
    """``arr[i]`` of an int64 array, read atomically with acquire ordering."""
    def codegen(context, builder, sig, args):
        return builder.load_atomic(_slot(context, builder, sig, args), "acquire", 8)
    return types.int64(arr, i), codegen


@intrinsic
def store_release(typingctx, arr, i, value):
    """``arr[i] = value`` on an int64 array, atomically with release ordering."""
    def codegen(context, builder, sig, args):
        value = context.cast(builder, args[2], sig.args[2], types.int64)
        builder.store_atomic(value, _slot(context, builder, sig, args), "release", 8)
        return context.get_dummy_value()
    return types.void(arr, i, value), codegen


@intrinsic
def compare_exchange(typingctx, arr, i, expected, new):
    """Atomically: if ``arr[i] == expected``, set it to ``new``; whether it did."""
    def codegen(context, builder, sig, args):
        cast = [context.cast(builder, a, t, types.int64) for a, t in zip(args[2:], sig.args[2:])]
        pair = builder.cmpxchg(_slot(context, builder, sig, args), cast[0], cast[1], "acq_rel",
                               "acquire")
        return builder.extract_value(pair, 1)
    return types.boolean(arr, i, expected, new), codegen


@intrinsic
def spin_pause(typingctx):
    """The CPU's spin-wait hint (x86 ``pause``): a spinning thread yields its core's
    resources to the other hyperthread and leaves the loop without a memory-order stall."""
    def codegen(context, builder, sig, args):
        if _X86:  # the intrinsic: Numba's LLVM has no inline-assembly parser
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def cycle_count(typingctx):
    """The time-stamp counter (x86 ``rdtsc``); 0 elsewhere, where no helper runs."""
    def codegen(context, builder, sig, args):
        if not _X86:
            return context.get_constant(types.int64, 0)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), []),
                                            "llvm.readcyclecounter")
        return builder.call(fn, [])
    return types.int64(), codegen


def _no_sleep():
    """A C function that does not sleep, for where libc has no ``usleep`` (compiled only
    there: a ``cfunc`` compiles when defined, in every process)."""
    @cfunc(types.intc(types.uintc))
    def no_sleep(us):  # pragma: no cover - stands in where libc has no usleep
        return 0
    return no_sleep


def _register_sleep():
    """Bind ``fastdnn_usleep`` to libc's ``usleep`` (a no-op where there is none), by
    symbol, so the helper's loop stays cacheable."""
    from llvmlite import binding as llvm

    addr = None
    if os.name == "posix":
        try:
            addr = ctypes.cast(ctypes.CDLL(None).usleep, ctypes.c_void_p).value
        except (AttributeError, OSError):
            addr = None
    llvm.add_symbol("fastdnn_usleep", addr or _no_sleep().address)


_register_sleep()
_usleep = types.ExternalFunction("fastdnn_usleep", types.intc(types.uintc))


@njit(cache=config.CACHE, inline="always")
def _shard(X, T, theta, table, bufs, slot, first, last, at):
    """Gather rows ``[first, last)`` of the job's batch (``control``'s description) into
    buffer rows from ``at``, and their loss and gradient into buffer ``slot``; returns
    the rows' targets."""
    control = bufs.control
    Xs, Ts = _train.gather_rows(X, T, bufs, control[SAMPLING], control[START], first, last,
                                control.view(np.uint64)[DRAW], at)
    bufs.shard_losses[slot] = _train.loss_and_gradient(
        Xs, Ts, theta, table, bufs.work[slot], bufs.deltas[slot], bufs.shard_grads[slot],
        control[LOSS], control.view(np.uint64)[KEY], np.int64(first))
    return Ts


@njit(cache=config.CACHE, inline="always")
def combine(Tb, bufs, n_shards, last_slot):
    """The batch's loss, and its gradient into ``bufs.grad``, from ``n_shards`` row shards:
    shard ``s`` in buffer slot ``s``, the last in ``last_slot``.  Each shard's mean counts
    by its share of the batch's weight; the gradient is summed in shard order, in its own
    dtype (in float64 the sum of a 3,700-parameter pair took 7,600 cycles)."""
    m, n_targets = Tb.shape
    flat_t = flat(Tb)
    total = weight_sum(Tb)
    c = bufs.grad.dtype.type
    grad = bufs.grad
    value = 0.0
    for s in range(n_shards):
        q0 = s * m // n_shards
        q1 = (s + 1) * m // n_shards
        share = weight_sum(view2d(flat_t, q0 * n_targets, q1 - q0, n_targets)) / total \
            if total > 0 else 0.0
        slot = last_slot if s == n_shards - 1 else s
        value += share * bufs.shard_losses[slot]
        g = bufs.shard_grads[slot]
        share_ = c(share)
        if s == 0:
            for i in range(grad.shape[0]):
                grad[i] = share_ * g[i]
        else:
            for i in range(grad.shape[0]):
                grad[i] += share_ * g[i]
    return value


@njit(cache=config.CACHE, inline="always")
def _claim_or_wait(control, claim, done, job, t0):
    """After the caller's own part of ``job`` (started at cycle ``t0``): whether the other
    part is the caller's to compute.  It is if the helper has not claimed it (the caller
    claims it now), or if the helper claimed it but has not marked it ``done`` within
    about the time the caller's part took: a helper descheduled mid-job is not waited
    for (its late result is ignored)."""
    t1 = cycle_count()
    mine = compare_exchange(control, claim, job - 1, job)
    spins = 0
    while not mine and load_acquire(control, done) != job:
        spins += 1
        mine = cycle_count() - t1 > t1 - t0 + _SLACK_CYCLES or spins > _MAX_SPINS
        spin_pause()
    return mine


@njit(cache=config.CACHE, inline="always")
def _combine_pair(T0, T1, bufs, slot1):
    """:func:`combine` of the two shards of a pair (targets ``T0``, ``T1``; the second in
    buffer ``slot1``), the gradient summed in one pass; returns ``(loss, weight)``."""
    w0, w1 = weight_sum(T0), weight_sum(T1)
    total = w0 + w1
    share0 = w0 / total if total > 0 else 0.0
    share1 = w1 / total if total > 0 else 0.0
    c = bufs.grad.dtype.type
    s0, s1 = c(share0), c(share1)
    grad, g0, g1 = bufs.grad, bufs.shard_grads[0], bufs.shard_grads[slot1]
    for i in range(grad.shape[0]):
        grad[i] = s0 * g0[i] + s1 * g1[i]
    return share0 * bufs.shard_losses[0] + share1 * bufs.shard_losses[slot1], total


@njit(cache=config.CACHE)
def paired_gradient(X, T, theta, table, bufs, loss, sampling, start, m, draw_key, key):
    """Weighted mean loss, and weight, of the batch of ``m`` rows drawn from position
    ``start`` of the epoch's sampling (:func:`.train.gather_rows`); its gradient into
    ``bufs.grad``.  Two row shards, the second from the helper if it claims it (see the
    module docstring); each thread gathers its own shard's rows, into rows of the buffers
    that only it writes and reads (written by the caller and read by the helper, the
    second half's rows made the caller's gather wait on the other core: 5.6 us of a
    digits step against 2.4 us for all the rows in one cache)."""
    control = bufs.control
    job = control[JOB] + 1
    control[ROWS] = m
    control[LOSS] = loss
    control[START] = start
    control[SAMPLING] = sampling
    control.view(np.uint64)[DRAW] = draw_key
    control.view(np.uint64)[KEY] = key
    store_release(control, JOB, job)
    half = m // 2
    n_targets = T.shape[1]
    # The second shard's targets where the helper gathers them; ours if we take it.
    T0 = T1 = view2d(bufs.targets, control[HELPER_ROWS] * n_targets, m - half, n_targets)
    slot, first, last, at = 0, 0, half, np.int64(0)
    mine = False
    t0 = cycle_count()
    while True:  # one _shard call site: each inlined copy cost a cold start 0.5 s
        rows = _shard(X, T, theta, table, bufs, slot, first, last, at)
        if slot == 2:
            T1 = rows
            break
        T0 = rows
        mine = _claim_or_wait(control, CLAIM, DONE, job, t0)
        if not mine:
            break
        slot, first, last, at = 2, half, m, control[OWN_ROWS]
    return _combine_pair(T0, T1, bufs, 2 if mine else 1)


@njit(cache=config.CACHE, inline="always")
def _adam_half(theta, grad, m, v, t, lr, hyper):
    """Adam step ``t + 1`` in place on one half of the parameters (see :func:`paired_adam`)."""
    adam_update(theta, grad, m, v, t + 1, lr, hyper[BETA1], hyper[BETA2], hyper[EPS],
                hyper[WEIGHT_DECAY], hyper[DECOUPLED] != 0.0)


@njit(cache=config.CACHE)
def paired_adam(theta, grad, state, hyper, lr, t, control, moved):
    """Adam step ``t + 1``: the first part of the parameters here, the rest (the last
    ``moved.shape[1]``) by the helper if it claims that job, never waited for.

    The helper writes out of place, into ``moved`` (``Buffers.moved``): the new weights of its part
    (row 0, copied here into ``theta`` once it is done) and the moments, into one of two
    pairs of rows (1-2 or 3-4, by the job's parity) that then hold them until
    :func:`settle` or a take-over moves them back into ``state``; ``control[HOME]`` says
    which pair holds them (-1: ``state``).  A helper that stalls mid-job so only ever
    writes rows nobody reads: the caller computes the part itself from where the
    moments are.  Elementwise, so the same bits whoever computes what.
    """
    h = theta.shape[0] - moved.shape[1]
    job = control[UJOB] + 1
    control.view(np.float64)[U_LR] = lr
    control[U_T] = t
    store_release(control, UJOB, job)
    t0 = cycle_count()
    _adam_half(theta[:h], grad[:h], state[0][:h], state[1][:h], t, lr, hyper)
    if _claim_or_wait(control, UCLAIM, UDONE, job, t0):
        settle(state, control, moved)
        _adam_half(theta[h:], grad[h:], state[0][h:], state[1][h:], t, lr, hyper)
    else:
        new = moved[0]
        for i in range(new.shape[0]):
            theta[h + i] = new[i]
        control[HOME] = job % 2


@njit(cache=config.CACHE)
def settle(state, control, moved):
    """Move the moments of the helper's part of :func:`paired_adam` back into ``state``
    (where the rest of the step and Python read them)."""
    home = control[HOME]
    if home >= 0:
        h = state.shape[1] - moved.shape[1]
        m, v = moved[1 + 2 * home], moved[2 + 2 * home]
        for i in range(m.shape[0]):
            state[0, h + i] = m[i]
            state[1, h + i] = v[i]
        control[HOME] = -1


@njit(cache=config.CACHE, inline="always")
def _helper_adam(theta, grad, state, hyper, control, moved, job):
    """The helper's part of update job ``job`` of :func:`paired_adam`."""
    h = theta.shape[0] - moved.shape[1]
    home = control[HOME]  # -1 or the last job's pair: never the pair written here
    out = job % 2
    m = state[0][h:] if home < 0 else moved[1 + 2 * home]
    v = state[1][h:] if home < 0 else moved[2 + 2 * home]
    adam_update_into(theta[h:], grad[h:], m, v, control[U_T] + 1, control.view(np.float64)[U_LR],
                     hyper[BETA1], hyper[BETA2], hyper[EPS], hyper[WEIGHT_DECAY],
                     hyper[DECOUPLED] != 0.0, moved[0], moved[1 + 2 * out], moved[2 + 2 * out])


@njit(cache=config.CACHE, nogil=True)
def helper_loop(X, T, theta, table, bufs, opt):
    """The helper's side: claim and compute the second shard of each job published from
    now on, and the second part of each update job, until ``control[STOP]``."""
    X, T, theta, table = borrow(X), borrow(T), borrow(theta), borrow(table)
    bufs = _train.borrowed_buffers(bufs)
    hyper, state = borrow(opt.hyper), borrow(opt.state)
    control = bufs.control
    seen = load_acquire(control, JOB)
    updates_seen = load_acquire(control, UJOB)
    idle_since = cycle_count()
    while load_acquire(control, STOP) == 0:
        update = load_acquire(control, UJOB)
        if update != updates_seen:
            updates_seen = update
            if compare_exchange(control, UCLAIM, update - 1, update):
                _helper_adam(theta, bufs.grad, state, hyper, control, bufs.moved, update)
                store_release(control, UDONE, update)
            idle_since = cycle_count()
            continue
        job = load_acquire(control, JOB)
        if job == seen:
            spin_pause()
            if cycle_count() - idle_since > _IDLE_CYCLES:
                _usleep(50)
            continue
        seen = job
        if compare_exchange(control, CLAIM, job - 1, job):
            m = control[ROWS]
            _shard(X, T, theta, table, bufs, 1, m // 2, m, control[HELPER_ROWS])
            store_release(control, DONE, job)
        idle_since = cycle_count()


def new_control(n_shards, n_targets, batch_size):
    """A fresh ``control`` array for a trainer with ``n_shards`` shards of batches of
    ``batch_size`` rows (see :func:`batch_rows`)."""
    control = np.zeros(CONTROL_SIZE, dtype=np.int64)
    control[N_SHARDS] = n_shards
    control[N_TARGETS] = n_targets
    control[HOME] = -1
    control[HELPER_ROWS] = batch_size
    control[OWN_ROWS] = batch_size + (batch_size - batch_size // 2)
    return control


def batch_rows(paired, batch_size):
    """Rows of ``Buffers.inputs`` and ``targets``: a batch, and for a pair two more
    second shards (the helper's rows, and the caller's when it takes the shard over)."""
    return batch_size + 2 * (batch_size - batch_size // 2) if paired else batch_size


def new_moved(paired, optimizer_code, n_params, dtype):
    """``Buffers.moved`` of a trainer: the helper's rows of :func:`paired_adam` (the last
    half of the parameters) for a paired Adam fit, else an empty array."""
    if not paired or optimizer_code != ADAM:
        return np.zeros((5, 0), dtype=dtype)
    return np.zeros((5, n_params - n_params // 2), dtype=dtype)


class _Helper:
    """The process's helper thread: parked until :meth:`offer` gives it a fit's buffers,
    then in :func:`helper_loop` (without the GIL) until that fit sets ``control[STOP]``
    or another fit is offered."""

    def __init__(self):
        self._cond = threading.Condition()
        self._task = None
        self._serving = None  # the control array of the fit being served
        self.error = None  # what ended the helper's last loop, if it raised
        self._thread = threading.Thread(target=self._serve, name="fastdnn-helper", daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            with self._cond:
                while self._task is None:
                    self._cond.wait()
                task, self._task = self._task, None
                self._serving = task[4].control
            try:
                helper_loop(*task)
            except BaseException as exc:  # noqa: BLE001 - kept for debugging: the fit
                self.error = exc            # never waits on a helper that is gone
            # Parked, it held the last fit's data, buffers and weights until the next fit.
            task = None
            with self._cond:
                self._serving = None

    def offer(self, task):
        with self._cond:
            if self._serving is not None:
                store_stop(self._serving)  # the newest fit gets the helper
            self._task = task
            self._cond.notify()


_helper = None
_helper_lock = threading.Lock()


def _forget_helper():
    """In a forked child: the parent's helper thread is not there (and its lock may be
    held forever), so the child starts its own when it first needs one."""
    global _helper, _helper_lock
    _helper = None
    _helper_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helper)


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def helps(n_threads):
    """Whether a fit with ``n_threads`` Numba threads gets a helper: on x86 POSIX
    machines with two or more cores, unless one thread was asked for."""
    return _X86 and os.name == "posix" and _cores() > 1 and n_threads > 1


def start(X, T, theta, table, bufs, opt):
    """Let the helper take second shards (and halves of Adam's updates) of this fit's
    steps on ``X``, ``T`` until :func:`stop`."""
    global _helper
    bufs.control[STOP] = 0
    with _helper_lock:
        if _helper is None:
            _helper = _Helper()
    _helper.offer((X, T, theta, table, bufs, opt))


def stop(control):
    """End the helper's part in the fit of ``control`` (it returns within a spin or a
    50 us sleep)."""
    store_stop(control)


@njit(cache=config.CACHE)
def store_stop(control):
    store_release(control, STOP, 1)
