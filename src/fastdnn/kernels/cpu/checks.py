"""Compiled scans over arrays (the CUDA twin: :mod:`fastdnn.kernels.cuda.checks`)."""
import math

import numpy as np
from numba import types
from numba.core.errors import TypingError
from numba.extending import overload

from ... import config
from . import warmup
from .scalars import max2, min2
from .separate import separate
from .pipeline import njit
from .views import bits as as_bits, flat, float64_from_bits


@separate
@njit(cache=config.CACHE)
def all_finite(a):
    """True when no element of the C-contiguous float array ``a`` is NaN or infinite
    (callers pass ``X.reshape(-1)``: one compiled signature per dtype).

    The integer scan of :func:`max_abs` (:func:`_top_exponent`): an element is NaN or
    infinite exactly when its exponent bits are all ones.  It vectorises, where a loop
    that stops at the first non-finite element ran scalar: 1536 x 1024 (the check of a
    fit's X) float32 0.86 -> 0.22 ms, float64 0.68 -> 0.46 ms (Intel Xeon).  NumPy's
    ``isfinite(a).all()`` allocates a mask, which is most of the time of a one-row
    ``predict``.
    """
    return _top_exponent(flat(a))[0]


def finite(a):
    """:func:`all_finite` of the C-contiguous float array ``a`` (any shape), or NumPy's
    check while a compile helper runs and the scan is not compiled here yet.

    Compiling the scan (0.55 s on an empty cache) was the first thing a fit waited for,
    its argument checks, before its epoch kernel could start compiling.  The helper
    (:mod:`.warmup`) compiles it into the cache meanwhile; without a helper it compiles
    here, as the one-row ``predict`` wants it (NumPy's mask is most of that call's time).
    """
    if not all_finite.signatures and warmup.helping():
        return bool(np.isfinite(a).all())
    return bool(all_finite(a.reshape(-1)))


@njit(cache=config.CACHE)
def max_abs(a):
    """An upper bound within a factor 2 of ``max |a|`` (a power of two, 0 for an all-zero
    ``a``), or ``inf`` when an element is NaN or infinite.

    An integer max over the bit patterns with the sign cleared (ordered as the absolute
    values, NaN and inf on top): it vectorises, where a float max with NaN checks does
    not, so the training step's scan of its gradient stays cheap: 21,000 float32 values
    2.6 -> 0.68 us; 1,666 float64 values 498 -> 147 ns (Intel Xeon).
    """
    finite, exponent = _top_exponent(flat(a))
    if not finite:
        return np.inf
    return _power_bound(exponent)


#: Per item size: the unsigned type of a float's bits, its mantissa's width and its
#: exponent's bias.
_FIELDS = {4: (np.uint32, 23, 127), 8: (np.uint64, 52, 1023)}


def max_abs_host(a):
    """:func:`max_abs` of the C-contiguous float32 or float64 array ``a``, by NumPy: the
    same value, and no compile.

    For the guard's first bounds of a fit (:func:`.updates.refresh_bounds`' values), which
    a cold start compiled first of all (0.4 s with the scan, AMD EPYC) before its epoch
    kernel, whose own compile takes the scan with it.  From the largest and the smallest
    element, which hold the largest ``|element|``, and no temporary array: 25M float32
    in 6 ms (the scan 3 ms; masking the bits, a 100 MB temporary, 19 ms)."""
    uint, shift, bias = _FIELDS[a.itemsize]
    top = 0  # the bits of the largest |element|, as the scan finds them
    if a.size:
        hi, lo = a.max(), a.min()
        if not (np.isfinite(hi) and np.isfinite(lo)):
            return math.inf
        top = int(max(abs(hi), abs(lo)).view(uint))
    exponent = (top >> shift) - bias
    if exponent <= -1000:  # as _power_bound: 2**(exponent + 1) or 0, inf past float64's
        return 0.0
    return math.ldexp(1.0, exponent + 1) if exponent < 1023 else math.inf


def _top_exponent(flat):
    """``(finite, exponent)`` of the largest ``|element|`` of the 1-D float array
    ``flat``: whether every element is finite, and the unbiased exponent field of the
    largest (``-bias`` for zero and subnormals)."""
    raise NotImplementedError("compiled only")


# An overload, so that each dtype compiles only its own scan (both, typed from one
# function, cost a cold start about 0.1 s per caller).  Indexed loops: iterating over the
# ``view`` (``for b in bits``) stepped by the array's run-time stride and stayed scalar.
# The float32 loop casts back to uint32 at each step: Numba's typing widens
# ``uint32 & uint32`` to 64 bits, which halved the lanes.
@overload(_top_exponent, inline="always")
def _ol_top_exponent(flat):
    if flat.dtype == types.float32:
        def scan32(flat):
            bits = as_bits(flat)
            mask = np.uint32(0x7FFFFFFF)
            top = np.uint32(0)
            for i in range(bits.shape[0]):
                top = np.uint32(max2(top, np.uint32(bits[i] & mask)))
            return top < np.uint32(0x7F800000), np.int64(top >> np.uint32(23)) - 127
        return scan32
    if flat.dtype == types.float64:
        def scan64(flat):
            bits = as_bits(flat)
            top = np.uint64(0)
            for i in range(bits.shape[0]):
                top = max2(top, bits[i] & np.uint64(0x7FFFFFFFFFFFFFFF))
            return (top < np.uint64(0x7FF0000000000000),
                    np.int64(top >> np.uint64(52)) - 1023)
        return scan64
    raise TypingError(f"the scans take float32 or float64 arrays, not {flat}")


@njit(cache=config.CACHE, inline="always")
def _power_bound(exponent):
    """``2**(exponent + 1)``, or 0 for exponents below -1000 (float64 zero or tiny); inf
    for 1023, as ``math.ldexp``.  Built from its bits (exponent field ``exponent + 1024``):
    ``ldexp`` was a libm call each step, 1% of a 2-8-8-1 online SGD step (AMD EPYC)."""
    if exponent <= -1000:
        return 0.0
    return float64_from_bits(np.int64(min2(exponent + 1024, 2047)) << np.int64(52))


@njit(cache=config.CACHE, inline="always")
def abs_bound(x, like):
    """:func:`max_abs` of an array of ``like``'s dtype whose largest ``|element|`` is
    ``x`` (finite, >= 0): the same bound, zero and subnormals included."""
    single = like.itemsize == 4
    smallest_normal = 1.1754943508222875e-38 if single else 2.2250738585072014e-308
    if x < smallest_normal:  # the exponent field is 0
        exponent = -127 if single else -1023
    else:
        exponent = math.frexp(x)[1] - 1
    return _power_bound(exponent)
