"""Parallel regions in a forked child: their serial twins.

GNU OpenMP is not fork-safe.  A child forked from a process whose OpenMP pool has
started inherits the pool's state but none of its threads, and Numba's OpenMP layer
kills such a child (``SIGTERM``, "fork() called from a process already using GNU
OpenMP") at its first parallel region.  ``multiprocessing``'s start method on Linux is
``fork`` before Python 3.14: a ``Pool`` forked after one fit of 784-1024-1024-10 lost
its worker at the first product of the next, and then waited for it forever.

So in such a child (and its children) every parallel region runs as its serial twin:
the same Python function compiled without ``parallel=True``, its ``prange`` a
``range`` over the same blocks.  The blocks are fixed by the shapes, never by the
thread count, so the twin gives the region's bits on one thread.  PyTorch does the
same: its intra-op pool runs single-threaded in a child forked after it started.

The regions are called through :mod:`.separate`'s slots (which a child empties, to be
filled with the twins) or from Python (:func:`runnable`).  Only a child forked after
this module was imported knows it is one.
"""
import os
import threading
import types

import numba

_serial = False
_twins = {}
_twins_lock = threading.Lock()
_on_serial = []


def _pool_started_unforkable():
    """Whether this process's Numba pool has started, on GNU OpenMP (Numba's OpenMP
    layer built with GCC: the one that kills forked children)."""
    from numba.np.ufunc import parallel
    if not getattr(parallel, "_is_initialized", False):
        return False
    try:
        layer = numba.threading_layer()
    except ValueError:  # no layer loaded
        return False
    if layer != "omp":
        return False  # TBB and the workqueue start again in a forked child
    from numba.np.ufunc import omppool
    return getattr(omppool, "openmp_vendor", "GNU") == "GNU"


def _after_fork_in_child():
    global _serial, _twins_lock
    _twins_lock = threading.Lock()  # another thread may have held it at the fork
    if _serial or _pool_started_unforkable():
        _serial = True
        for hook in _on_serial:
            hook()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def serial():
    """Whether parallel regions run as their serial twins in this process: a child
    forked from a process whose GNU OpenMP pool had started."""
    return _serial


def on_serial(hook):
    """Call ``hook()`` in each child that :func:`serial` becomes true in, as it forks."""
    _on_serial.append(hook)


def is_parallel(dispatcher):
    """Whether ``dispatcher`` (a Numba dispatcher) compiles with ``parallel=True``."""
    options = getattr(dispatcher, "targetoptions", None) or {}
    return bool(options.get("parallel"))


def twin(dispatcher):
    """The serial twin of the parallel ``dispatcher``: its Python function, renamed
    ``<name>_serial`` (so that Numba's disk cache keeps its code apart), compiled with
    the same options but ``parallel``."""
    with _twins_lock:
        found = _twins.get(dispatcher)
        if found is None:
            found = _twins[dispatcher] = _compile_serial(dispatcher)
        return found


def _compile_serial(dispatcher):
    fn = dispatcher.py_func
    name = fn.__name__ + "_serial"
    twin_fn = types.FunctionType(fn.__code__.replace(co_name=name), fn.__globals__, name,
                                 fn.__defaults__, fn.__closure__)
    twin_fn.__qualname__ = fn.__qualname__ + "_serial"
    twin_fn.__module__ = fn.__module__
    twin_fn.__doc__ = fn.__doc__
    options = {k: v for k, v in dispatcher.targetoptions.items() if k != "parallel"}
    options["pipeline_class"] = dispatcher._compiler.pipeline_class
    # Cached where the region is (a FunctionCache), not where it is not (NullCache).
    cache = type(dispatcher._cache).__name__ != "NullCache"
    from .pipeline import cache_may_fail
    return cache_may_fail(numba.jit(cache=cache, **options)(twin_fn))


def runnable(dispatcher):
    """``dispatcher``, or its serial twin where :func:`serial` and it is parallel: for
    the parallel kernels that Python calls."""
    if _serial and is_parallel(dispatcher):
        return twin(dispatcher)
    return dispatcher
