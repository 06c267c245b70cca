"""CUDA twins of :mod:`fastdnn.activations`: scalar device functions, same codes.

The CPU kernels loop over a row; on the GPU each thread owns one element, so these
take and return one value and are called from the epilogues of the GEMM kernels in
:mod:`fastdnn.gpu_dense` (forward: ``g(z)``; backward: ``g'(z)``, read from ``a = g(z)``
wherever the activation allows, as on the CPU).
"""
import math

from numba import cuda

from .activations import ELU, GELU, LEAKY_RELU, LEAKY_SLOPE, RELU, SIGMOID, SILU, SOFTPLUS, TANH

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@cuda.jit(device=True)
def _sigmoid(z):
    # Two branches so exp never overflows: exp(-|z|) <= 1.
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@cuda.jit(device=True)
def activate(z, code):
    """``g(z)`` for activation ``code``."""
    if code == RELU:
        return max(z, 0.0)
    elif code == LEAKY_RELU:
        return z if z > 0 else LEAKY_SLOPE * z
    elif code == ELU:
        return z if z > 0 else math.expm1(z)
    elif code == TANH:
        return math.tanh(z)
    elif code == SIGMOID:
        return _sigmoid(z)
    elif code == SOFTPLUS:
        return max(z, 0.0) + math.log1p(math.exp(-abs(z)))
    elif code == GELU:
        return 0.5 * z * (1.0 + math.erf(z * _INV_SQRT2))
    elif code == SILU:
        return z * _sigmoid(z)
    return z  # IDENTITY


@cuda.jit(device=True)
def derivative(a, z, code):
    """``g'(z)``, from ``a = g(z)`` except for gelu and silu (which read ``z``)."""
    if code == RELU:
        return 0.0 if a <= 0 else 1.0
    elif code == LEAKY_RELU:
        return LEAKY_SLOPE if a <= 0 else 1.0
    elif code == ELU:
        # g'(z) = exp(z) = a + 1 for z <= 0.
        return a + 1.0 if a <= 0 else 1.0
    elif code == TANH:
        return 1.0 - a * a
    elif code == SIGMOID:
        return a * (1.0 - a)
    elif code == SOFTPLUS:
        # g'(z) = sigmoid(z) = 1 - exp(-a); expm1 keeps it exact when a is tiny.
        return -math.expm1(-a)
    elif code == GELU:
        cdf = 0.5 * (1.0 + math.erf(z * _INV_SQRT2))
        pdf = _INV_SQRT_2PI * math.exp(-0.5 * z * z)
        return cdf + z * pdf
    elif code == SILU:
        s = _sigmoid(z)
        return s * (1.0 + z * (1.0 - s))
    return 1.0  # IDENTITY
