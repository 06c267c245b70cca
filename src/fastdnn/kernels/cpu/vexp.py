"""``exp`` as arithmetic LLVM can vectorise: the softmax's exponentials, 8 or 16 a vector.

Numba calls libm's ``exp`` one element at a time (no vector math library without SVML),
about 20 cycles each: a 100-row, 10-class softmax spent 3-4 us of a 65 us digits shard
in it (Intel Xeon).  Here ``exp(x) = 2^k e^r``, with ``k = round(x / ln 2)`` (the
1.5 * 2^52 shifter: no float-to-int conversion of an out-of-range value), ``r = x - k ln
2`` in two parts (Cody and Waite: ``k * LN2_HI`` is exact), ``e^r`` by its Taylor
polynomial (degree 13 in float64, 7 in float32: truncation below 0.05 ulp on ``|r| <=
ln2 / 2``) and ``2^k`` from its bits, in two factors so that results down to the
subnormals and up to the overflow come out as IEEE's (0 and inf beyond).  Within 2 ulp
of the correctly rounded value (``tests/kernels/cpu/test_vexp.py`` measures it against
NumPy), NaN in, NaN out (through ``max``, ``min`` and the arithmetic); no ``fastmath``
(the softmax keeps IEEE semantics).
"""
import numpy as np
from llvmlite import ir
from numba import types
from numba.core.errors import TypingError
from numba.extending import intrinsic, overload

from ... import config
from .pipeline import njit
from .scalars import max2, min2

_LOG2E = 1.4426950408889634
# float64: fdlibm's split of ln 2 (the high part has 21 trailing zero bits).
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
# float32: 0x3f317200 (11 trailing zero bits) and the rest.
_LN2_HI32, _LN2_LO32 = 0.693145751953125, 1.428606765330187045e-06
_SHIFT64, _SHIFT32 = 6755399441055744.0, 12582912.0  # 1.5 * 2^52, 1.5 * 2^23


@intrinsic
def _from_bits(typingctx, bits):
    """The float with the IEEE bits ``bits`` (int64 -> float64, int32 -> float32)."""
    if bits == types.int64:
        sig, ll = types.float64(bits), ir.DoubleType()
    elif bits == types.int32:
        sig, ll = types.float32(bits), ir.FloatType()
    else:
        raise TypingError("_from_bits takes int64 or int32")

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ll)
    return sig, codegen


@njit(cache=config.CACHE, inline="always")
def _expm1_over_x64(r):
    """The Taylor polynomial of ``(e^r - 1) / r`` to degree 12 (``e^r``'s to 13, less its
    constant, over ``r``), in Horner's order: ``_exp64``'s ``e^r`` is ``1 + r`` times it,
    ``_expm1_64``'s ``e^r - 1`` near 0 is ``r`` times it."""
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    return p * r + 1.0


@njit(cache=config.CACHE, inline="always")
def _expm1_over_x32(r):
    """:func:`_expm1_over_x64` in float32, to degree 6 (``e^r``'s to 7)."""
    c = np.float32
    p = c(1.0 / 5040.0)
    p = p * r + c(1.0 / 720.0)
    p = p * r + c(1.0 / 120.0)
    p = p * r + c(1.0 / 24.0)
    p = p * r + c(1.0 / 6.0)
    p = p * r + c(0.5)
    return p * r + c(1.0)


@njit(cache=config.CACHE, inline="always")
def _exp64(x):
    xc = min2(max2(x, -746.0), 710.0)  # x first: a NaN x passes through (see test_edges)
    kf = (xc * _LOG2E + _SHIFT64) - _SHIFT64
    r = (xc - kf * _LN2_HI) - kf * _LN2_LO
    p = _expm1_over_x64(r) * r + 1.0
    k = np.int64(kf)
    half = k >> 1
    return p * _from_bits((half + 1023) << 52) * _from_bits((k - half + 1023) << 52)


@njit(cache=config.CACHE, inline="always")
def _exp32(x):
    c = np.float32
    xc = min2(max2(x, c(-105.0)), c(89.0))  # x first, as in _exp64
    kf = (xc * c(_LOG2E) + c(_SHIFT32)) - c(_SHIFT32)
    r = (xc - kf * c(_LN2_HI32)) - kf * c(_LN2_LO32)
    p = _expm1_over_x32(r) * r + c(1.0)
    k = np.int64(kf)
    half = k >> 1
    # int32 bits: Numba widens int32 arithmetic to int64.
    return (p * _from_bits(np.int32((half + 127) << 23))
            * _from_bits(np.int32((k - half + 127) << 23)))


def vexp(x):
    """``exp(x)`` for a float64 or float32 scalar, in its own precision (see the module)."""
    return np.exp(x)


@overload(vexp)
def _vexp(x):
    if x == types.float64:
        return lambda x: _exp64(x)
    if x == types.float32:
        return lambda x: _exp32(x)
    raise TypingError(f"vexp takes float64 or float32, not {x}")


# expm1 and log1p for the smooth activations (elu, softplus, sigmoid, silu), by the same
# means: libm's expm1, log1p and exp one element at a time made softplus 8x and gelu 7x
# a relu epoch of 16-32-32-2 at batch 32 (PyTorch: 1.04x and 1.46x; AMD EPYC).
_HALF_LN2 = 0.34657359027997264


@njit(cache=config.CACHE, inline="always")
def _expm1_64(x):
    # |x| <= ln2 / 2: x times the Taylor polynomial of (e^x - 1) / x, _exp64's less its
    # constant (no cancellation near 0); beyond, e^x - 1 loses nothing: |e^x - 1| > 0.29.
    near = _expm1_over_x64(x) * x
    far = _exp64(x) - 1.0
    return near if abs(x) <= _HALF_LN2 else far


@njit(cache=config.CACHE, inline="always")
def _expm1_32(x):
    c = np.float32
    near = _expm1_over_x32(x) * x
    far = _exp32(x) - c(1.0)
    return near if abs(x) <= c(_HALF_LN2) else far


# log1p(y) for y in [0, 1] (the exp(-|z|) of softplus): 2 atanh(s), s = y / (2 + y) in
# [0, 1/3], by its series s (2 + 2 s^2 / 3 + 2 s^4 / 5 + ...), whose terms shrink 9-fold:
# 17 of them below float64's half ulp, 8 below float32's.
_ATANH64 = tuple(2.0 / (2 * k + 1) for k in range(17))
_ATANH32 = tuple(2.0 / (2 * k + 1) for k in range(8))


@njit(cache=config.CACHE, inline="always")
def _log1p_unit_64(y):
    s = y / (2.0 + y)
    s2 = s * s
    p = _ATANH64[16]
    p = p * s2 + _ATANH64[15]
    p = p * s2 + _ATANH64[14]
    p = p * s2 + _ATANH64[13]
    p = p * s2 + _ATANH64[12]
    p = p * s2 + _ATANH64[11]
    p = p * s2 + _ATANH64[10]
    p = p * s2 + _ATANH64[9]
    p = p * s2 + _ATANH64[8]
    p = p * s2 + _ATANH64[7]
    p = p * s2 + _ATANH64[6]
    p = p * s2 + _ATANH64[5]
    p = p * s2 + _ATANH64[4]
    p = p * s2 + _ATANH64[3]
    p = p * s2 + _ATANH64[2]
    p = p * s2 + _ATANH64[1]
    p = p * s2 + _ATANH64[0]
    return s * p


@njit(cache=config.CACHE, inline="always")
def _log1p_unit_32(y):
    c = np.float32
    s = y / (c(2.0) + y)
    s2 = s * s
    p = c(_ATANH32[7])
    p = p * s2 + c(_ATANH32[6])
    p = p * s2 + c(_ATANH32[5])
    p = p * s2 + c(_ATANH32[4])
    p = p * s2 + c(_ATANH32[3])
    p = p * s2 + c(_ATANH32[2])
    p = p * s2 + c(_ATANH32[1])
    p = p * s2 + c(_ATANH32[0])
    return s * p


def vexpm1(x):
    """``expm1(x)`` for a float64 or float32 scalar, in its own precision."""
    return np.expm1(x)


def vlog1p_unit(y):
    """``log1p(y)`` for ``y`` in [0, 1], a float64 or float32 scalar, in its own precision."""
    return np.log1p(y)


@overload(vexpm1)
def _vexpm1(x):
    if x == types.float64:
        return lambda x: _expm1_64(x)
    if x == types.float32:
        return lambda x: _expm1_32(x)
    raise TypingError(f"vexpm1 takes float64 or float32, not {x}")


@overload(vlog1p_unit)
def _vlog1p_unit(y):
    if y == types.float64:
        return lambda y: _log1p_unit_64(y)
    if y == types.float32:
        return lambda y: _log1p_unit_32(y)
    raise TypingError(f"vlog1p_unit takes float64 or float32, not {y}")
