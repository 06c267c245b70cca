"""Compiled scans over arrays (the CUDA twin: :mod:`fastdnn.kernels.cuda.checks`)."""
import math

import numpy as np
from numba import njit

from ... import config


@njit(cache=config.CACHE)
def all_finite(a):
    """True when no element of the C-contiguous array ``a`` is NaN or infinite.

    A compiled scan: NumPy's ``isfinite(a).all()`` allocates a mask, which is most of
    the time of a one-row ``predict``.
    """
    for v in a.reshape(a.size):
        if not np.isfinite(v):
            return False
    return True


@njit(cache=config.CACHE)
def max_abs(a):
    """An upper bound within a factor 2 of ``max |a|`` (a power of two, 0 for an all-zero
    ``a``), or ``inf`` when an element is NaN or infinite.

    An integer max over the bit patterns with the sign cleared (ordered as the absolute
    values, NaN and inf on top): it vectorises, where a float max with NaN checks does
    not, so the training step's scan of its gradient stays cheap.
    """
    flat = a.reshape(a.size)
    if a.itemsize == 4:
        top32 = np.uint32(0)
        for b in flat.view(np.uint32):
            top32 = max(top32, b & np.uint32(0x7FFFFFFF))
        if top32 >= np.uint32(0x7F800000):
            return np.inf
        exponent = np.int64(top32 >> np.uint32(23)) - 127
    else:
        top64 = np.uint64(0)
        for b in flat.view(np.uint64):
            top64 = max(top64, b & np.uint64(0x7FFFFFFFFFFFFFFF))
        if top64 >= np.uint64(0x7FF0000000000000):
            return np.inf
        exponent = np.int64(top64 >> np.uint64(52)) - 1023
    return math.ldexp(1.0, exponent + 1) if exponent > -1000 else 0.0
