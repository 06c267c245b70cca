"""Compile a fit's forward and backward pass in a second process while this one compiles
the epoch kernel.

A first fit with an empty Numba cache compiles for seconds, one function after another on
one core: Numba holds the GIL and one compiler lock, so threads do not help.  The work
splits in two parts of about the same size.  This process compiles the epoch kernel
(``train_steps``: its typing, lowering and LLVM), the small kernels around it, the
shuffle and the loss head.  A helper process started by :func:`start` compiles, into
Numba's on-disk cache, the pass that the epoch kernel calls through a slot
(:func:`.train.loss_and_gradient`, declared with :mod:`.separate`, so the epoch kernel
compiles without it) with the forward pass and the BLAS wrappers, and the evaluation
kernels (:data:`HELPED`); for plain SGD on a big net, whose epoch kernel fuses the update
into the products, the pass without the weights' gradients instead
(:func:`.train.loss_and_deltas`, :data:`HELPED_STACKED`).  For online SGD, whose epoch
kernel inlines a pass of its own, the helper compiles the functions that kernel calls,
the update of wide layers, the shuffle, the evaluation and the loss head
(:data:`HELPED_ONLINE`).  Where the training steps' products are big enough to run in
parallel blocks, it also compiles those parallel regions (:data:`HELPED_PARALLEL`): a
cold first fit of 784-1024-1024-10 at batch 256 took 8.65 -> 8.04 s (medians of 6,
alternated); but not for plain SGD's fused kernel, which is quick to compile, so that
this process compiles them while the helper compiles the pass (:func:`_parallel_callees`).

This process waits for the helper only where it would otherwise compile what the helper
is compiling: the cache lookup of each helped function is wrapped so that, while the
helper runs and has not reported that function saved, the lookup waits, then loads what
the helper wrote.  Nothing depends on the helper succeeding: if it fails, is killed or
compiles for other types, the wait ends (at its exit, or after :data:`TIMEOUT` seconds)
and this process compiles as it would have without it.  The results are the same bits
either way: a cache entry is only used where Numba's own keys (source, Numba version,
CPU and its features, argument types) match.

On Linux the helper is this process forked (:func:`_fork`), which has the modules and
Numba's registries loaded already: a new interpreter spent 0.55 s on them before its first
compile.  It is a new interpreter (``python -m`` this module) elsewhere, where another
Python thread runs (a fork copies no thread, and a lock one of them held would stay held
in the child), where the helper runs parallel regions (the child has no thread pool), or
beside JAX (whose fork handler warns the user); and where a fork fails.

The helper runs in a session of its own, so that Ctrl-C in a terminal reaches this process
only.  This process neither waits for it at exit nor kills it: the helper finishes the
compile it is in (Numba writes each cache file whole, then renames it into place), and its
next report, to a pipe no one reads any more, ends it; a helper that hangs ends itself
after :data:`LIFETIME` seconds.  ``FASTDNN_WARMUP=0`` turns the helper off; it never
starts under MPI, on one core, or without a disk cache.

While a helper runs, this process also checks a fit's arguments with NumPy rather than
compile the scan for it first (:func:`.checks.finite`; the helper compiles the scan for
the next process), and the first time it would wait for the helper it compiles the loss
head instead (``meanwhile``).  The evaluation (:data:`SHARED`) goes to whichever
process comes to it first: after the head, this process claims and compiles it while the
helper is still at the pass, and the helper then leaves it out (a file created in a
folder of claims, once per function, says who has it: :func:`_claim`).

Measured on a 2-core Intel Xeon (AVX-512; docs/peers.md), empty cache, alternated:
`fastdnn train --quiet --no-save` 8.65 s without the helper, 4.82 s with it (medians of 3,
``benchmarks/ab_trees.py src src --start --rounds 3 --env-before FASTDNN_WARMUP=0``); the
first online fit (`--batch-size 1 --epochs 2`) 15.0 -> 12.9 s (medians of 3).
"""
import gc
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from functools import partial

import numba
from numba import typeof
import numpy as np

import fastdnn

from ... import config
from .separate import cached

#: Seconds to wait for the helper at one cache lookup before compiling here anyway.
TIMEOUT = 60.0
#: Seconds after which a helper ends itself, done or not (its work takes a few).
LIFETIME = 300.0

_TRAIN, _LOSSES, _BLAS = "fastdnn.kernels.cpu.train:", "fastdnn.kernels.cpu.losses:", \
    "fastdnn.kernels.cpu.blas:"
_DENSE, _UPDATES, _PAIR = "fastdnn.kernels.cpu.dense:", "fastdnn.kernels.cpu.updates:", \
    "fastdnn.kernels.cpu.pair:"
#: ``module:function`` of what the helper compiles for a batch fit: the pass (without the
#: loss head, which the pass calls through a slot: the fit compiles it meanwhile), then
#: the evaluation.  The first is the one whose cache entry says no helper is needed.
HELPED = (_TRAIN + "loss_and_gradient", _TRAIN + "forward_layers",
          _BLAS + "_product", _BLAS + "matmul_add", _BLAS + "matmul_nt", _BLAS + "matmul_tn",
          _LOSSES + "loss_grad", _TRAIN + "forward_chunks", _TRAIN + "loss_of_logits")
#: What it compiles for a fit of :func:`.train.train_steps_wide_sgd`: its pass first, and
#: its update (which the first step calls).
HELPED_STACKED = ((_TRAIN + "loss_and_deltas",) + HELPED[1:]
                  + (_TRAIN + "_batch_sgd_update", _BLAS + "matmul_tn_add"))
#: What it compiles for online SGD, whose epoch kernel has a pass of its own inlined: the
#: functions that kernel calls (:func:`_compile_online_callees`; the kernel's compile
#: waits for each at its lookup, or compiles it itself: :data:`SHARED_ONLINE`), the
#: shuffle and, for a net with a wide layer, its fused step and update, which the first
#: epoch calls; then the evaluation (the forward pass with it) and the loss head
#: (:func:`start` adds the fit's), which an online fit needs after its first epoch.
#: Without the first part, the helper was done at 3.0 s of a cold 10.0 s online ``fastdnn
#: train``, while this process compiled them, 3 s of it (AMD EPYC).  The first is the one
#: only online fits compile.
HELPED_ONLINE = (_LOSSES + "loss_grad_inlined", _BLAS + "_product", _BLAS + "matmul_add",
                 _BLAS + "matmul_tn", _BLAS + "matmul_nt", _DENSE + "_backprop_rows",
                 _PAIR + "settle", _UPDATES + "sgd_update", _TRAIN + "_shuffle",
                 _TRAIN + "_sgd_rank_one", _TRAIN + "_fused_wide_step", _TRAIN + "forward_layers",
                 _TRAIN + "forward_chunks", _TRAIN + "loss_of_logits")
#: The functions of :data:`HELPED_ONLINE` that either process compiles, whichever comes to
#: it first, as :data:`SHARED`: the kernel's compile, once it catches up with the helper,
#: compiles the next itself (it had waited 0.9 s for them, AMD EPYC).
SHARED_ONLINE = (_LOSSES + "loss_grad_inlined", _BLAS + "matmul_tn", _BLAS + "matmul_nt",
                 _DENSE + "_backprop_rows", _PAIR + "settle", _UPDATES + "sgd_update",
                 _TRAIN + "_shuffle", _TRAIN + "_sgd_rank_one", _TRAIN + "_fused_wide_step")
#: The functions of :data:`SHARED_ONLINE` that only a net with a wide layer calls (and
#: only at its first step: the kernel's compile does not reach them).
WIDE_ONLINE = (_TRAIN + "_sgd_rank_one", _TRAIN + "_fused_wide_step")
#: The loss heads, one of which the helper of an online fit compiles (:data:`HELPED_ONLINE`).
HEADS = tuple(_LOSSES + name for name in ("cross_entropy_head", "squared_error_head",
                                          "binary_cross_entropy_head", "poisson_head"))

#: The evaluation, which either process compiles, whichever comes to it first (a claim:
#: :func:`_claim`): the helper after the pass, or this process while it would otherwise wait
#: for the pass, once its loss head is compiled (:meth:`Helper.wait_for`).  A cold
#: ``fastdnn train`` had waited 0.3-0.4 s for the helper to compile these two after the
#: pass, and as long before the pass with nothing to do (AMD EPYC).
SHARED = (_TRAIN + "forward_chunks", _TRAIN + "loss_of_logits")

#: The products' parallel regions, which the helper compiles where the net's products
#: reach them (:func:`.blas.parallel_callees`): each about 1 s of a first fit's compile.
HELPED_PARALLEL = (_BLAS + "_blocks_parallel", _BLAS + "_row_blocks_parallel")
#: The helper's last line: it has written all it will write.
DONE = "done"

_helper = None  # this process's Helper, once started
_starting = threading.Lock()


def _dispatcher(name):
    module, function = name.split(":")
    return getattr(importlib.import_module(module), function)


class Helper:
    """A helper process compiling for a net (:func:`start`'s arguments as a dict), and
    what it reported saved; ``meanwhile``: the tasks this process may run while it would
    wait for the helper, and then the ``evaluation`` (an :class:`_Evaluation`)."""

    def __init__(self, net, meanwhile=(), evaluation=None):
        forked = None
        if _forkable(net):
            try:
                forked = _fork(net)
            except OSError:  # no memory to copy this process's map (strict overcommit)
                pass
        if forked is not None:
            self.process, self.reports = forked
        else:
            self.process = _spawn(net)
            self.reports = self.process.stdout
        self.saved = set()
        self.finished = False
        self.parent = os.getpid()  # a forked child has no reader thread: it never waits
        self.claims = net.get("claims")
        self.mine = set()  # the functions of SHARED (SHARED_ONLINE) this process claimed
        self.shared = set(SHARED + (SHARED_ONLINE if net.get("online") else ()))
        self.meanwhile = list(meanwhile)
        if evaluation is not None:  # then the evaluation's kernels, one task each
            self.meanwhile += [partial(self._take, evaluation, name) for name in SHARED]
        self._tasking = False  # a task runs: its own waits run no other task
        self.changed = threading.Condition()
        threading.Thread(target=self._read, name="fastdnn-warmup", daemon=True).start()

    def _read(self):
        for line in self.reports:
            with self.changed:
                self.saved.add(line.strip())
                self.finished = DONE in self.saved
                self.changed.notify_all()
        self.process.wait()
        _remove(self.claims)
        with self.changed:
            self.finished = True
            self.changed.notify_all()

    def wait_for(self, name):
        """Until the helper has saved ``name`` or ended (at most :data:`TIMEOUT` s).

        A function of :data:`SHARED` (and of :data:`SHARED_ONLINE`, for an online fit)
        that the helper has not begun is claimed instead, and this process compiles it (no
        wait).  A wait that would block first runs the tasks left of ``meanwhile``, one by
        one, while ``name`` is not saved."""
        if os.getpid() != self.parent:
            return
        while True:
            with self.changed:
                if name in self.saved or self.finished:
                    return
                if name in self.shared and self.claim(name):
                    return
                if not self.meanwhile or self._tasking:
                    break
                task = self.meanwhile.pop(0)
                self._tasking = True
            try:
                task()
            except Exception:  # only a head start: the real call compiles it, or raises
                pass
            finally:
                self._tasking = False
        with self.changed:
            self.changed.wait_for(lambda: name in self.saved or self.finished, TIMEOUT)

    def claim(self, name):
        """Whether this process compiles ``name``, a function of :data:`SHARED` or
        :data:`SHARED_ONLINE`: it has claimed it now or before (:func:`_claim`)."""
        if name not in self.mine and _claim(self.claims, name, default=False):
            self.mine.add(name)
        return name in self.mine

    def _take(self, evaluation, name):
        """A task of ``meanwhile``: compile ``name`` here (``evaluation(name)``), unless
        the helper has begun it."""
        if self.claim(name):
            evaluation(name)

    def close(self):
        """Wait for the helper to finish writing (at most :data:`TIMEOUT` s, then end it);
        its exit code (``None`` in a forked child, whose helper it is not)."""
        if os.getpid() != self.parent:
            return None
        with self.changed:
            self.changed.wait_for(lambda: self.finished, TIMEOUT)
        try:
            return self.process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
        finally:  # here too: the reader thread, a daemon, may never run again
            _remove(self.claims)


def _claim(claims, name, default):
    """Whether this process takes ``name`` (of :data:`SHARED` or :data:`SHARED_ONLINE`) to
    compile: the first of the two processes to create its file in the folder ``claims``
    does.  ``default`` where the folder is gone or unusable: the helper then compiles it
    (for the cache), this process waits for the helper as it would without claims."""
    if not claims:
        return default
    try:
        os.close(os.open(os.path.join(claims, name.replace(":", ".")),
                         os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False
    except OSError:
        return default


def _remove(claims):
    """Remove the folder of claims (either process may, at the helper's end)."""
    if claims:
        shutil.rmtree(claims, ignore_errors=True)


def _wait_at_lookup(name):
    """Make the cache lookup of ``name`` wait for the helper first."""
    cache = getattr(_dispatcher(name), "_cache", None)
    load = getattr(cache, "load_overload", None)
    if load is None or getattr(load, "waits_for_helper", False):
        return

    def load_overload(sig, target_context):
        if _helper is not None:
            _helper.wait_for(name)
        return load(sig, target_context)

    load_overload.waits_for_helper = True
    cache.load_overload = load_overload


def _cached(name):
    """Whether Numba's on-disk cache has ``name`` for some types (True when unknown)."""
    try:
        return os.path.exists(_dispatcher(name)._cache._cache_file._index_path)
    except AttributeError:
        return True


def ready(dispatcher, args):
    """Whether ``dispatcher`` is compiled in this process, or Numba's on-disk cache has
    it, for the types of the arrays among ``args`` (True when it cannot tell).

    Not the index file alone: it exists once any types are cached (a float64 fit's
    kernel), and a float32 fit then compiled saying nothing.  The arrays' types only:
    the other arguments' (named tuples of arrays of the same dtype) follow from them,
    and typing them cost 190 us, half of a 100-row fit (AMD EPYC).  Once ready, always:
    remembered by the arrays' dtypes and layouts."""
    arrays = [(i, a) for i, a in enumerate(args) if isinstance(a, np.ndarray)]
    memo = (dispatcher, len(args),
            tuple((i, a.dtype, a.ndim, a.flags.c_contiguous, a.flags.f_contiguous,
                   a.flags.writeable) for i, a in arrays))
    if memo in _ready:
        return True
    fits = _types_of(args)
    if fits is None:  # Numba's internals moved: say nothing
        return True
    found = cached(dispatcher, fits)  # False without a disk cache (FASTDNN_CACHE=0)
    if found:
        _ready.add(memo)
    return found


_ready = set()


def loaded(dispatcher, args):
    """Whether ``dispatcher`` is compiled (or loaded from the cache) in this process for
    the types of the arrays among ``args``: a call then compiles nothing (False when it
    cannot tell)."""
    fits = _types_of(args)
    try:
        return fits is not None and any(fits(types) for types in dispatcher.overloads)
    except Exception:  # noqa: BLE001 - Numba's internals moved
        return False


def _types_of(args):
    """A predicate on a tuple of Numba argument types: whether the arrays among ``args``
    have them (``None`` where Numba cannot type them)."""
    try:
        wanted = [(i, typeof(a)) for i, a in enumerate(args) if isinstance(a, np.ndarray)]
    except Exception:  # noqa: BLE001 - Numba's internals moved
        return None
    return lambda types: len(types) == len(args) and all(types[i] == t for i, t in wanted)


def enabled():
    """Whether :func:`start` may launch a helper: ``FASTDNN_WARMUP`` is not ``0``, Numba
    caches to disk, this process may run on a second core, there is a Python to run, and
    this is no MPI rank (whose launcher may not like children, and whose ranks would each
    start one)."""
    from . import blas  # here: `import fastdnn` imports this module (.checks), not blas

    return (config.switch("FASTDNN_WARMUP") and bool(config.CACHE)
            and blas.cpu_count() > 1 and bool(sys.executable)
            and not getattr(sys, "frozen", False) and "mpi4py.MPI" not in sys.modules)


def start(sizes, codes, loss, dtype, online=False, meanwhile=None, batch_size=1,
          stacked=False):
    """Launch a helper compiling for a fit of a net of ``sizes`` (widths), activation
    ``codes``, ``loss`` code and ``dtype`` (see the module docstring; ``online``: batches
    of one row; ``stacked``: a fit of :func:`.train.train_steps_wide_sgd`), in batches of
    ``batch_size`` rows, when the cache has none of it yet and :func:`enabled`;
    ``meanwhile``, a function, is what this process compiles instead of waiting, the
    first time it would wait for the helper; for a batch fit the evaluation
    (:data:`SHARED`, unless the helper has begun it) comes next.  Once per process;
    returns the :class:`Helper`, or ``None`` where none started."""
    global _helper

    helped = HELPED_ONLINE if online else HELPED_STACKED if stacked else HELPED
    # The rows of a training step (not the evaluation's: its chunks follow the data, and
    # a parallel region compiled for nothing would take a core from the fit).
    rows = [1 if online else int(batch_size)]
    net = dict(sizes=[int(n) for n in sizes], codes=[int(c) for c in codes], loss=int(loss),
               dtype=np.dtype(dtype).name, online=bool(online), rows=rows,
               stacked=bool(stacked) and not online)
    helped += tuple(_BLAS + name for name in _parallel_callees(net))
    if online:
        from .losses import head

        helped += (_LOSSES + head(int(loss)).py_func.__name__,)
    with _starting:  # fits in threads: one helper
        if _helper is not None or not enabled() or _cached(helped[0]):
            return None
        try:
            net["claims"] = tempfile.mkdtemp(prefix="fastdnn-warmup-")
        except OSError:  # no claims: the helper compiles the evaluation, as before
            pass
        try:
            _helper = Helper(net, [] if meanwhile is None else [meanwhile],
                             None if online else _Evaluation(net))
        except OSError:  # no process to be had: compile here, as without a helper
            _remove(net.get("claims"))
            return None
    for name in helped:
        _wait_at_lookup(name)
    return _helper


def helping():
    """Whether a helper of this process is still at work."""
    return _helper is not None and not _helper.finished and os.getpid() == _helper.parent


def _report_saves():
    """Print each helped function's name once its compile is saved to the cache."""
    for name in set(HELPED + HELPED_STACKED + HELPED_ONLINE + HELPED_PARALLEL + HEADS):
        cache = getattr(_dispatcher(name), "_cache", None)
        save = getattr(cache, "save_overload", None)
        if save is None:
            continue

        def save_overload(sig, data, save=save, name=name):
            save(sig, data)
            print(name, flush=True)

        cache.save_overload = save_overload


def _compile_only(dispatcher):
    """A stand-in for ``dispatcher`` that compiles it for its arguments' types, and does
    not run it (a run would compile the loss head it calls: the fit compiles that one
    itself, meanwhile)."""
    def compile_for(*args):
        dispatcher.compile(tuple(numba.typeof(a) for a in args))
        return 0.0
    return compile_for


def compile_pass(net):
    """The helper's work: compile the helped functions, for the types a fit of the ``net``
    (:func:`start`'s arguments) passes them, into the cache: the backend's gradient and
    evaluation on two rows of zeros, their last kernels compiled, not run."""
    from . import backend as module
    from . import blas
    from .checks import all_finite
    from .losses import compile_head
    from .train import _batch_sgd_update, loss_and_deltas

    _report_saves()
    dtype = np.dtype(net["dtype"])
    backend, X, T = _zeros(net)
    # The pass compiled for the types the backend's gradient passes, which are the
    # epoch kernel's.
    module.loss_and_gradient = _compile_only(
        loss_and_deltas if net.get("stacked") else module.loss_and_gradient)
    module.loss_of_logits = _compile_only(module.loss_of_logits)
    if net["online"]:
        _compile_online_callees(dtype, net.get("claims"), _has_wide_layer(net["sizes"]))
    else:
        backend.gradient(X, T)
    if net.get("stacked"):  # for the types train_steps_wide_sgd passes
        flat, rows = np.zeros(1, dtype=dtype), np.zeros((1, 1), dtype=dtype)
        floats = np.zeros(1)
        _compile_only(_batch_sgd_update)(flat, np.zeros((1, 1), dtype=np.int64), flat, flat, rows,
                                         flat, flat, floats, floats, 0.0, 0, 0, False)
        _compile_only(blas.matmul_tn_add)(rows, rows, rows, flat)
    evaluation = _Evaluation(net, (backend, X, T))  # the pass's net and rows, not new ones
    for name in SHARED:  # claimed one by one: the fit may take the next meanwhile
        if _claim(net.get("claims"), name, default=True):
            evaluation(name)
    if net["online"]:
        compile_head(net["loss"], dtype)
    # The parallel regions the fit's products reach, for the types the products pass
    # (flat operands, int64 sizes), run on a 1 x 1 x 1 product.
    flat, flag = np.zeros(1, dtype=dtype), int(blas._FLAGS[0])
    for name in _parallel_callees(net):
        getattr(blas, name)(flag, flag, 1, 1, 1, flat, 1, 1, flat, 1, flat.copy(), 1, 1,
                            flat[:0])
    all_finite(X.reshape(-1))  # for the next process's checks (checks.finite)


def _has_wide_layer(sizes):
    """Whether a net of layer widths ``sizes`` has a layer that online SGD's fused update
    takes (:func:`.train._has_wide_layer`)."""
    from .train import FUSED_MIN_WIDTH
    return max(sizes[1:]) >= FUSED_MIN_WIDTH


def _compile_online_callees(dtype, claims, wide):
    """Compile the functions the online epoch kernel calls (the first part of
    :data:`HELPED_ONLINE`), those of :data:`SHARED_ONLINE` from the last, each only where
    this helper claims it first (``claims``: :func:`_claim`'s folder), and those of
    :data:`WIDE_ONLINE` only for a net with a ``wide`` layer, for the types the kernel
    passes them: C-contiguous arrays of ``dtype`` (the table and the counts int64, the
    hyperparameters, the schedule's parameters and the guard float64), float64 and int64
    scalars, flags."""
    from . import blas, dense, pair
    from .losses import loss_grad_inlined
    from .train import _fused_wide_step, _sgd_rank_one, _shuffle
    from .updates import sgd_update

    flat, rows = np.zeros(1, dtype=dtype), np.zeros((1, 1), dtype=dtype)
    floats, counts = np.zeros(1), np.zeros(1, dtype=np.int64)
    table = np.zeros((1, 1), dtype=np.int64)
    compiles = {
        _LOSSES + "loss_grad_inlined":
            lambda: _compile_only(loss_grad_inlined)(rows, rows, 0, rows),
        _BLAS + "matmul_tn": lambda: _compile_only(blas.matmul_tn)(rows, rows, rows),
        _BLAS + "matmul_nt": lambda: _compile_only(blas.matmul_nt)(rows, rows, rows),
        _DENSE + "_backprop_rows": lambda: _compile_only(dense._backprop_rows)(rows, rows, rows),
        _PAIR + "settle": lambda: _compile_only(pair.settle)(rows, counts, rows),
        _UPDATES + "sgd_update":
            lambda: _compile_only(sgd_update)(flat, flat, flat, 0.0, 0.0, False, 0.0, False),
        _TRAIN + "_shuffle": lambda: _shuffle(np.arange(2, dtype=np.int64), 0),
        _TRAIN + "_sgd_rank_one":
            lambda: _compile_only(_sgd_rank_one)(flat, table, flat, flat, flat, flat, 0.0, 0.0,
                                                 False, 0.0, False),
        _TRAIN + "_fused_wide_step":
            lambda: _compile_only(_fused_wide_step)(flat, table, flat, flat, flat, floats, 0,
                                                    floats, flat, 0, floats, 0.0, 0)}
    # Not shared: the product it compiles with it is the kernel's first lookup.
    _compile_only(blas.matmul_add)(rows, rows, rows)
    # From the last: the kernel's compile takes them from the first, each the moment it
    # reaches it, so the two meet without waiting for each other (in the kernel's order,
    # the helper was one function ahead, which the kernel then waited for).
    for name in reversed(SHARED_ONLINE):
        if (wide or name not in WIDE_ONLINE) and _claim(claims, name, default=True):
            compiles[name]()


def _zeros(net):
    """``(backend, X, T)``: a net of zeros of ``net``'s shape and loss, and two rows of
    zeros with their targets, as a fit passes them to the kernels."""
    from ..spec import CROSS_ENTROPY, pack_targets
    from . import backend as module

    dtype = np.dtype(net["dtype"])
    sizes = net["sizes"]
    X = np.zeros((2, sizes[0]), dtype=dtype)
    T = pack_targets(np.zeros((2, 1 if net["loss"] == CROSS_ENTROPY else sizes[-1])), None,
                     dtype)
    return module.CPUBackend(sizes, net["codes"], net["loss"], dtype), X, T


class _Evaluation:
    """Compiles the evaluation's kernels (:data:`SHARED`) for a fit of ``net`` one by one,
    by calling each on a net of zeros and two rows of zeros (``zeros``, :func:`_zeros`'s
    triple, or made at the first call): ``forward_chunks`` through
    ``CPUBackend._logits``, ``loss_of_logits`` through ``CPUBackend._loss_of_logits`` (in
    the helper, compiled, not run: :func:`compile_pass`)."""

    def __init__(self, net, zeros=None):
        self.net = net
        self.zeros = zeros

    def __call__(self, name):
        if self.zeros is None:
            self.zeros = _zeros(self.net)
        backend, X, T = self.zeros
        if name == SHARED[0]:
            backend._logits(X)
        else:
            backend._loss_of_logits(np.zeros((2, self.net["sizes"][-1]), dtype=X.dtype), T)


def _serve(net):
    """The helper's life: compile for ``net``, report each save and then :data:`DONE` on
    stdout, and end, within :data:`LIFETIME` seconds."""
    # Nothing here lives past the compiles, and os._exit frees all: the collector's passes
    # over the compiles' objects took the helper 5.7 -> 5.2 s (medians of 6, alternated,
    # AMD EPYC), with a heap 35 MB bigger.
    gc.disable()
    limit = threading.Timer(LIFETIME, _end, (net.get("claims"),))
    limit.daemon = True
    limit.start()
    try:
        compile_pass(net)
    finally:  # also when the parent went first (its pipe closed: BrokenPipeError), which
        _remove(net.get("claims"))  # left a fastdnn-warmup-* folder in /tmp for good
    # Every cache file is written and closed: skip the interpreter's teardown (0.3-0.6 s
    # of freeing compiled code), which would take a core from the fit for nothing.
    print(DONE, flush=True)
    os._exit(0)


def _end(claims):
    """The end of a helper past :data:`LIFETIME`: its claims go too (whose parent was gone
    left the folder in /tmp)."""
    _remove(claims)
    os._exit(3)


def _spawn(net):
    """A new interpreter compiling for ``net`` (this module run with ``-m``), in a session
    of its own, its stdout a pipe."""
    env = dict(os.environ, FASTDNN_WARMUP="0")  # a helper starts no helper
    # The same cache, and this fastdnn, however this process found them.
    if numba.config.CACHE_DIR:
        env["NUMBA_CACHE_DIR"] = numba.config.CACHE_DIR
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastdnn.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-m", __name__, json.dumps(net)], stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
        start_new_session=True)


def _forkable(net):
    """Whether the helper for ``net`` may be this process forked, rather than a new
    interpreter: on Linux, with no other Python thread (it could hold a lock that the
    child needs), and where the child runs no parallel region (it has none of Numba's
    pool threads, and GNU OpenMP does not work after a fork).  Not beside JAX either,
    whose fork handler warns of its threads to the user."""
    return (sys.platform.startswith("linux") and hasattr(os, "fork")
            and threading.active_count() == 1 and "jax" not in sys.modules
            and not _parallel_callees(net))


def _parallel_callees(net):
    """The products' parallel regions the helper compiles for ``net``
    (:data:`HELPED_PARALLEL`, where its products reach them).  None for a fit of
    :func:`.train.train_steps_wide_sgd`: its epoch kernel has no parallel region of its
    own, so this process is done with it while the helper compiles the pass, and then
    compiles them itself (a cold first fit of 784-1024-1024-10 at batch 256 waited 4 s
    for the helper otherwise)."""
    from . import blas

    if net.get("stacked"):
        return []
    return blas.parallel_callees(net["sizes"], net.get("rows", []))


def _prepare_compiler():
    """Load Numba's typing and target registries, which its first compile in a process
    does (0.25 s): before a fork, so that the child starts with them."""
    try:
        from numba.core.registry import cpu_target
        cpu_target.typing_context.refresh()
        cpu_target.target_context.refresh()
    except (ImportError, AttributeError):  # another Numba: each process loads its own
        pass


def _fork(net):
    """This process forked into a helper for ``net`` (:func:`_serve`), in a session of its
    own: ``(the child, its reports as a text stream)``.

    The child has this process's modules and Numba's registries already loaded, which a
    new interpreter spends 0.55 s on before it compiles (the imports 0.3 s,
    :func:`_prepare_compiler` 0.25 s; AMD EPYC), and that is the helper's critical path.
    """
    global _starting
    _prepare_compiler()
    read, write = os.pipe()
    try:
        with warnings.catch_warnings():
            # Python 3.12+ warns of any other thread in the process: OpenBLAS' pool, which
            # its fork handler stops and the child never uses.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except OSError:
        os.close(read)
        os.close(write)
        raise
    if pid == 0:  # the child: never back into the caller's code, whatever happens
        try:
            _starting = threading.Lock()  # the parent's is held (start() forks inside it)
            os.setsid()
            null = os.open(os.devnull, os.O_RDWR)
            for fd, to in ((0, null), (1, write), (2, null)):
                os.dup2(to, fd)
            # New streams: the parent's may hold unwritten output, which is the parent's.
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            os.environ["FASTDNN_WARMUP"] = "0"
            _serve(net)
        finally:
            os._exit(1)
    os.close(write)
    return _Child(pid), open(read, "r")


class _Child:
    """A forked child, as much of ``subprocess.Popen`` as :class:`Helper` uses."""

    def __init__(self, pid):
        self.pid = pid
        self.returncode = None
        self._lock = threading.Lock()

    def wait(self, timeout=None):
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                if self.returncode is None:
                    try:
                        pid, status = os.waitpid(self.pid, os.WNOHANG)
                    except ChildProcessError:  # reaped by someone else's handler
                        pid, status = self.pid, 0
                    if pid:
                        self.returncode = os.waitstatus_to_exitcode(status)
                if self.returncode is not None:
                    return self.returncode
            if end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired("fastdnn compile helper", timeout)
            time.sleep(0.005)

    def kill(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:  # already gone
            pass


if __name__ == "__main__":
    _serve(json.loads(sys.argv[1]))
