"""Kernel launches that skip numba-cuda's per-launch argument handling once it is known.

A small net's CUDA step is a dozen or more launches of kernels that run for microseconds,
so the step costs what the host spends launching them.  numba-cuda's
``kernel[grid, block](*args)`` spends most of that on each call: it types every argument,
finds the compiled overload, and turns each device array into its nine kernel parameters.
Measured on an H200 machine (2026-11-28, ``benchmarks/gpu_launch.py``, one forward GEMM
launch of a 64-128-128-10 step, host time per launch): 41 us per bracket call, 50 us
through fastdnn's GEMM launcher; 7.8 us to hand parameters prepared once to ``cuda.core``'s
``launch``, which numba-cuda itself calls last.  With this module the GEMM launcher takes
14 us, and the net's epoch 27 ms instead of 92 (docs/gpu.md).

:func:`call` does what the bracket call does, remembering what does not change between
launches:

- each device array's kernel parameters and Numba type, by the array's identity, forgotten
  when the array is collected (so a new array at a reused address is never mistaken for
  an old one);
- per kernel and argument types: the compiled function to launch.

The parameters come from numba-cuda's own ``_prepare_args`` on the first launch, so their
layout is numba-cuda's.  Scalars are converted on every launch, as numba-cuda converts
them (Python ``int`` to int64, ``float`` to float64, NumPy scalars to their own type).
Anything else takes the bracket call every time: a host array (numba-cuda copies it),
an argument type not listed here, an int outside int64, a kernel compiled with options
that change its launch (debug, cooperative, extensions, launch-config sensitive), the
CUDA simulator, or a numba-cuda without these internals.  ``config.CUDA_PREPARED_LAUNCH =
False`` turns the shortcut off.

The same stream (the default one) and the same compiled code run either way, so results
are bit-identical with and without it (tested on a real GPU).  A prepared launch that
fails (a context closed or switched since, so the cached function is stale) empties the
caches and makes the bracket call instead.
"""
import ctypes
import weakref

import numpy as np

from ... import config

#: How each scalar type reaches the kernel: the ctypes value numba-cuda builds for it
#: (``None``: passed as is, as numba-cuda passes booleans).
_SCALARS = {
    int: ctypes.c_int64, float: ctypes.c_double, bool: None,
    np.int64: ctypes.c_int64, np.int32: ctypes.c_int32, np.uint64: ctypes.c_uint64,
    np.uint32: ctypes.c_uint32, np.float64: ctypes.c_double, np.float32: ctypes.c_float,
    np.bool_: None,
}
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_ARRAY = object()

#: What this numba-cuda offers, found on the first call: ``False`` (nothing: every call is
#: a bracket call) or ``(array type, cuda.core's launch, LaunchConfig, default stream)``.
_machinery = None
#: ``id(array) -> (token of its Numba type, its kernel parameters)``.
_arrays = {}
#: Numba array type -> small int, so that per-launch keys hash fast.
_tokens = {}
#: ``(kernel, argument key) -> compiled function`` (a key holds array tokens and scalar types).
_functions = {}
#: Kernels whose compiled code cannot take prepared launches (see :func:`_plain`).
_bracket_only = set()
#: ``(grid, block) -> LaunchConfig``.
_configs = {}
#: Launches that took the prepared path (tests read it).
prepared_launches = 0


def _find_machinery():
    """``False`` under the simulator or where numba-cuda's internals differ."""
    try:
        from numba import cuda
        if cuda.config.ENABLE_CUDASIM:
            return False
        from cuda.core import LaunchConfig, launch
        from numba.cuda.cudadrv import driver
        from numba.cuda.cudadrv.devicearray import DeviceNDArray
        return DeviceNDArray, launch, LaunchConfig, driver._to_core_stream(0)
    except Exception:  # an older or newer numba-cuda: the bracket call always works
        return False


def _key(args, arrays):
    """The argument key of a launch, or ``None`` when it must take the bracket call;
    ``arrays``: each array's cached entry or ``None`` (filled in place)."""
    key = []
    array_type = _machinery[0]
    for a in args:
        t = type(a)
        if t is array_type:
            entry = _arrays.get(id(a))
            arrays.append(entry)
            key.append(None if entry is None else entry[0])
        elif t in _SCALARS:
            if t is int and not _INT64_MIN <= a <= _INT64_MAX:
                return None
            key.append(t)
        else:
            return None
    return tuple(key)


def _plain(compiled):
    """Whether ``compiled`` launches as plain parameters on a stream (no debug buffer,
    cooperative launch, argument extensions or launch-config specialisation)."""
    return not (getattr(compiled, "debug", True) or getattr(compiled, "cooperative", True)
                or getattr(compiled, "extensions", True)
                or getattr(compiled, "launch_config_sensitive", True))


def _learn(kernel, args):
    """After a bracket call: cache the call's arrays and return its compiled function
    (``None`` where it cannot take prepared launches)."""
    try:
        sig = tuple(kernel.typeof_pyval(a) for a in args)
        compiled = kernel.overloads.get(sig)
        if compiled is None or tuple(compiled.argument_types) != sig or not _plain(compiled):
            return None
        stream = _machinery[3]
        array_type = _machinery[0]
        for a, ty in zip(args, sig):
            if type(a) is array_type and id(a) not in _arrays:
                params = []
                compiled._prepare_args(ty, a, stream, [], params)
                token = _tokens.setdefault(ty, len(_tokens))
                weakref.finalize(a, _arrays.pop, id(a), None)  # first: it may raise
                _arrays[id(a)] = (token, tuple(params))
        return compiled._codelibrary.get_cufunc().kernel
    except Exception:  # internals not as expected: this kernel keeps the bracket call
        return None


def call(kernel, grid, block, *args):
    """``kernel[grid, block](*args)`` on the default stream, with the argument handling
    numba-cuda repeats on every launch done once (see the module docstring)."""
    global _machinery, prepared_launches
    if _machinery is None:
        _machinery = _find_machinery()
    if not _machinery or not config.CUDA_PREPARED_LAUNCH or kernel in _bracket_only:
        kernel[grid, block](*args)
        return
    arrays = []
    key = _key(args, arrays)
    function = None if key is None else _functions.get((kernel, key))
    if function is None:
        kernel[grid, block](*args)  # compiles on the first launch; new arrays
        if key is not None:
            function = _learn(kernel, args)
            if function is None:
                _bracket_only.add(kernel)
            else:
                _functions[kernel, _key(args, [])] = function
        return
    params = []
    arrays = iter(arrays)
    for a in args:
        convert = _SCALARS.get(type(a), _ARRAY)
        if convert is _ARRAY:
            params.extend(next(arrays)[1])
        elif convert is None:
            params.append(a)
        else:
            params.append(convert(a))
    cfg = _configs.get((grid, block))
    if cfg is None:
        cfg = _configs[grid, block] = _machinery[2](grid=grid, block=block)
    try:
        _machinery[1](_machinery[3], cfg, function, *params)
    except Exception:
        # A compiled function belongs to the context it was loaded in: after
        # ``cuda.close()`` or a switch of device the cache is stale.  Forget it all; the
        # bracket call loads the code afresh, or raises numba-cuda's own error.
        forget()
        kernel[grid, block](*args)
        return
    prepared_launches += 1


def forget():
    """Drop every cached parameter and function (the next launches relearn them)."""
    _arrays.clear()
    _functions.clear()
    _configs.clear()
    _bracket_only.clear()
