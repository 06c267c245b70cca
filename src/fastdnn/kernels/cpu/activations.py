"""Hidden-layer activations and their derivatives over rows, as Numba kernels.

The arithmetic is :mod:`fastdnn.kernels.spec`'s (one formula per activation); these
loops dispatch on the code once per layer (a whole batch's block), so each branch is a
plain loop LLVM vectorises.  Inlined once per pass: applied per row inside each of
the dense layer's two paths, the nine branches were compiled twice into the forward
pass (a cold `fastdnn train` spent 16 s of CPU compiling, now 11 s).  All as calls they
compile faster still, but their array arguments' reference counting cost a batch-1 step
on a 2-8-8-1 net 9%: identity, relu, leaky_relu and tanh stay inlined; the five smooth
ones (sigmoid among them since its exp is vexp's: a division in the inlined loop kept it
scalar under Python's error model) are calls.
Derivatives read the stored output ``A = g(Z)``; ``Z`` only for the activations in
``spec.NEEDS_Z``.

The piecewise derivatives (relu, leaky_relu, elu) touch ``delta`` only where they are not
1: a float64 derivative times a float32 ``delta`` on every element made relu's backward
3.5x slower (0.48 vs 0.13 ms per 1000 x 4096 elements), the conversions doubling the
work; gated, it is a masked multiply, as fast as the old ``if A <= 0: delta = 0``.
"""
import math

import numpy as np
from numba import types
from numba.extending import overload

from ... import config
from ..spec import ELU, GELU, IDENTITY, LEAKY_RELU, RELU, SIGMOID, SILU, SOFTPLUS, TANH
from . import formulas as F
from .separate import separate
from .pipeline import njit
from .vexp import vexp, vexpm1, vlog1p_unit


@njit(cache=config.CACHE, inline="always")
def activate(Z, code, A):
    """``A = g(Z)`` element-wise on 1-D views; ``A`` may be ``Z`` itself.

    The loops run in place on ``A`` (after a copy of ``Z`` where the two differ): with
    ``A`` and ``Z`` the same memory, as they are for every activation but gelu and silu,
    LLVM's run-time overlap check failed and the loops ran scalar (relu: ``vmaxsd`` one
    element at a time, Intel Xeon); over one array they vectorise.  identity, relu,
    leaky_relu and tanh are inlined; sigmoid, elu, softplus, gelu and silu are one call
    (:func:`_activate_smooth`).
    """
    n = Z.shape[0]
    if Z.ctypes.data != A.ctypes.data:
        for i in range(n):
            A[i] = Z[i]
    if code == IDENTITY:
        return
    elif code == RELU:
        for i in range(n):
            A[i] = F.relu(A[i])
    elif code == LEAKY_RELU:
        for i in range(n):
            A[i] = F.leaky_relu(A[i])
    elif code == TANH:
        if A.itemsize == 4:  # float32: the rational tanh (vectorises; float32 accuracy)
            for i in range(n):
                A[i] = F.tanh_rational(A[i])
        else:
            for i in range(n):
                A[i] = math.tanh(A[i])
    else:
        _activate_smooth(A, code)


# The smooth activations, each a call: their loops inlined into every pass cost a cold
# `fastdnn train` about 1 s of compiling for nets that mostly use relu or tanh, and a
# call per layer and pass is ~10 ns.  spec's formulas with vexp's exp, expm1 and log1p in
# place of libm's, one element at a time (a call of ~20 cycles each: softplus cost 8x,
# silu 4x, elu 3.8x, sigmoid 2.7x a relu epoch of 16-32-32-2 at batch 32, AMD EPYC);
# within 4 ulp of them, in the array's own precision.  gelu's erfc: a float32 net's in
# float64 arithmetic by a Chebyshev fit (_erfc_nonneg); a float64 net's calls libm's.
# One loop per activation, each compiled when a fit first reaches it: the five long
# polynomial loops in one function compiled 0.4 s longer for every smooth net (a cold
# `fastdnn train --activation sigmoid` 3.5 -> 4.2 s).  error_model="numpy": a division
# under Python's checks its divisor and keeps the loop scalar (none divides by zero).
@separate(returns=types.none)
@njit(cache=config.CACHE)
def _activate_smooth(A, code):
    """``A = g(A)`` in place for sigmoid, elu, softplus, gelu, silu."""
    if code == SIGMOID:
        _sigmoid_rows(A)
    elif code == ELU:
        _elu_rows(A)
    elif code == SOFTPLUS:
        _softplus_rows(A)
    elif code == GELU:
        _gelu_rows(A)
    elif code == SILU:
        _silu_rows(A)
    else:
        raise ValueError("unknown activation code")


@separate(returns=types.none)
@njit(cache=config.CACHE, error_model="numpy")
def _sigmoid_rows(A):
    for i in range(A.shape[0]):
        A[i] = _sigmoid(A[i])


@separate(returns=types.none)
@njit(cache=config.CACHE, error_model="numpy")
def _elu_rows(A):
    for i in range(A.shape[0]):
        z = A[i]
        A[i] = z if z > 0 else vexpm1(z)


@separate(returns=types.none)
@njit(cache=config.CACHE, error_model="numpy")
def _softplus_rows(A):
    for i in range(A.shape[0]):
        A[i] = _softplus(A[i])


@separate(returns=types.none)
@njit(cache=config.CACHE, error_model="numpy")
def _gelu_rows(A):
    if A.itemsize == 4:
        for i in range(A.shape[0]):
            A[i] = _gelu32(A[i])
    else:
        for i in range(A.shape[0]):
            A[i] = F.gelu(A[i])


@separate(returns=types.none)
@njit(cache=config.CACHE, error_model="numpy")
def _silu_rows(A):
    for i in range(A.shape[0]):
        z = A[i]
        A[i] = z * _sigmoid(z)


def _one(x):
    """1 in the type of ``x`` (a float64 literal made float32 arithmetic float64)."""
    return 1.0


@overload(_one)
def _one_typed(x):
    if x == types.float32:
        return lambda x: np.float32(1.0)
    return lambda x: 1.0


@njit(cache=config.CACHE, inline="always")
def _sigmoid(z):
    """spec's ``sigmoid``: ``exp`` of ``-|z|`` only, which never overflows."""
    one = _one(z)
    e = vexp(-abs(z))
    return one / (one + e) if z >= 0 else e / (one + e)


@njit(cache=config.CACHE, inline="always")
def _softplus(z):
    """spec's ``softplus``: ``max(z, 0) + log1p(exp(-|z|))``."""
    zero = _one(z) - _one(z)
    return (z if z > zero else zero) + vlog1p_unit(vexp(-abs(z)))


@njit(cache=config.CACHE, inline="always")
def activation_backward(delta, A, Z, code):
    """``delta *= g'(Z)`` in place, with ``g'`` read from ``A = g(Z)`` where possible
    (elu, softplus, gelu and silu in :func:`_activation_backward_smooth`)."""
    n = delta.shape[0]
    if code == IDENTITY:
        return
    elif code == RELU:
        for i in range(n):
            g = F.relu_grad(A[i])
            if g != 1.0:
                delta[i] *= g
    elif code == LEAKY_RELU:
        for i in range(n):
            g = F.leaky_relu_grad(A[i])
            if g != 1.0:
                delta[i] *= g
    elif code == TANH:
        for i in range(n):
            delta[i] *= F.tanh_grad(A[i])
    elif code == SIGMOID:
        for i in range(n):
            delta[i] *= F.sigmoid_grad(A[i])
    else:
        _activation_backward_smooth(delta, A, Z, code)


@njit(cache=config.CACHE, inline="always")
def _erfc_nonneg(x):
    """``erfc(x)`` for float64 ``x >= 0``, within 1.2e-7 relative everywhere (enough for
    float32; Press et al., Numerical Recipes, 2nd ed., 6.2: ``erfcc``, a Chebyshev fit of
    ``erfc(x) exp(x^2)`` in ``t = 1 / (1 + x/2)``), with vexp's ``exp``."""
    t = 1.0 / (1.0 + 0.5 * x)
    q = 0.17087277
    q = q * t - 0.82215223
    q = q * t + 1.48851587
    q = q * t - 1.13520398
    q = q * t + 0.27886807
    q = q * t - 0.18628806
    q = q * t + 0.09678418
    q = q * t + 0.37409196
    q = q * t + 1.00002368
    return t * vexp(-x * x - 1.26551223 + t * q)


@njit(cache=config.CACHE, inline="always")
def _gelu_cdf(z):
    """``Phi(z) = erfc(-z / sqrt 2) / 2`` of a float64 ``z`` (float32 accuracy): from
    ``erfc(|x|)`` for both signs, so the left tail keeps its relative accuracy."""
    x = z * 0.7071067811865476
    c = _erfc_nonneg(abs(x))
    return 0.5 * (c if x <= 0 else 2.0 - c)


@njit(cache=config.CACHE, inline="always")
def _gelu32(z):
    """spec's ``gelu`` of a float32, in float64 arithmetic."""
    w = np.float64(z)
    return w * _gelu_cdf(w)


@njit(cache=config.CACHE, inline="always")
def _gelu_grad32(z):
    """spec's ``gelu_grad`` of a float32, in float64 arithmetic."""
    w = np.float64(z)
    return _gelu_cdf(w) + w * (0.3989422804014327 * vexp(-0.5 * w * w))


@njit(cache=config.CACHE, inline="always")
def _silu_grad(z):
    """spec's ``silu_grad``: ``s (1 + z (1 - s))``, ``1 - s`` as ``sigmoid(-z)``."""
    one = _one(z)
    e = vexp(-abs(z))
    high, low = one / (one + e), e / (one + e)  # sigmoid(|z|), sigmoid(-|z|)
    s, rest = (high, low) if z >= 0 else (low, high)
    return s * (one + z * rest)


@separate(returns=types.none)
@njit(cache=config.CACHE)
def _activation_backward_smooth(delta, A, Z, code):
    """:func:`activation_backward` for elu, softplus, gelu, silu (one loop each, as the
    forward's)."""
    if code == ELU:
        _elu_backward(delta, A)
    elif code == SOFTPLUS:
        _softplus_backward(delta, A)
    elif code == GELU:
        _gelu_backward(delta, Z)
    elif code == SILU:
        _silu_backward(delta, Z)
    else:
        raise ValueError("unknown activation code")


@separate(returns=types.none)
@njit(cache=config.CACHE, error_model="numpy")
def _elu_backward(delta, A):
    for i in range(delta.shape[0]):
        g = F.elu_grad(A[i])
        if g != 1.0:
            delta[i] *= g


@separate(returns=types.none)
@njit(cache=config.CACHE, error_model="numpy")
def _softplus_backward(delta, A):
    for i in range(delta.shape[0]):
        delta[i] *= -vexpm1(-A[i])  # spec's softplus_grad


@separate(returns=types.none)
@njit(cache=config.CACHE, error_model="numpy")
def _gelu_backward(delta, Z):
    if Z.itemsize == 4:
        for i in range(delta.shape[0]):
            delta[i] *= _gelu_grad32(Z[i])
    else:
        for i in range(delta.shape[0]):
            delta[i] *= F.gelu_grad(Z[i])


@separate(returns=types.none)
@njit(cache=config.CACHE, error_model="numpy")
def _silu_backward(delta, Z):
    for i in range(delta.shape[0]):
        delta[i] *= _silu_grad(np.float64(Z[i]))  # float32: 94 ulp near its root
