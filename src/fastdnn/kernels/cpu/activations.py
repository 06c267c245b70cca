"""Hidden-layer activations and their derivatives over rows, as Numba kernels.

The arithmetic is :mod:`fastdnn.kernels.spec`'s (one formula per activation); these
loops dispatch on the code once per layer (a whole batch's block), so each branch is a
plain loop LLVM vectorises.  Inlined once per pass: applied per row inside each of
the dense layer's two paths, the nine branches were compiled twice into the forward
pass (a cold `fastdnn train` spent 16 s of CPU compiling, now 11 s).  All as calls they
compile faster still, but their array arguments' reference counting cost a batch-1 step
on a 2-8-8-1 net 9%: the classic five stay inlined, the four smooth ones are a call.
Derivatives read the stored output ``A = g(Z)``; ``Z`` only for the activations in
``spec.NEEDS_Z``.

The piecewise derivatives (relu, leaky_relu, elu) touch ``delta`` only where they are not
1: a float64 derivative times a float32 ``delta`` on every element made relu's backward
3.5x slower (0.48 vs 0.13 ms per 1000 x 4096 elements), the conversions doubling the
work; gated, it is a masked multiply, as fast as the old ``if A <= 0: delta = 0``.
"""
import math

from numba import types

from ... import config
from ..spec import ELU, GELU, IDENTITY, LEAKY_RELU, RELU, SIGMOID, SILU, SOFTPLUS, TANH
from . import formulas as F
from .separate import separate
from .pipeline import njit


@njit(cache=config.CACHE, inline="always")
def activate(Z, code, A):
    """``A = g(Z)`` element-wise on 1-D views; ``A`` may be ``Z`` itself.

    The loops run in place on ``A`` (after a copy of ``Z`` where the two differ): with
    ``A`` and ``Z`` the same memory, as they are for every activation but gelu and silu,
    LLVM's run-time overlap check failed and the loops ran scalar (relu: ``vmaxsd`` one
    element at a time, Intel Xeon); over one array they vectorise.  The classic five
    are inlined; elu, softplus, gelu and silu are one call (:func:`_activate_smooth`).
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
    elif code == SIGMOID:
        for i in range(n):
            A[i] = F.sigmoid(A[i])
    else:
        _activate_smooth(A, code)


# The smooth activations of the last decade, each a call: their four loops inlined into
# every pass cost a cold `fastdnn train` about 1 s of compiling for nets that mostly use
# relu or tanh, and a call per layer and pass is ~10 ns.  error_model="numpy": a division
# under Python's checks its divisor and keeps the loop scalar (none divides by zero).
@separate(returns=types.none)
@njit(cache=config.CACHE, error_model="numpy")
def _activate_smooth(A, code):
    """``A = g(A)`` in place for elu, softplus, gelu, silu."""
    n = A.shape[0]
    if code == ELU:
        for i in range(n):
            A[i] = F.elu(A[i])
    elif code == SOFTPLUS:
        for i in range(n):
            A[i] = F.softplus(A[i])
    elif code == GELU:
        for i in range(n):
            A[i] = F.gelu(A[i])
    elif code == SILU:
        for i in range(n):
            A[i] = F.silu(A[i])
    else:
        raise ValueError("unknown activation code")


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


@separate(returns=types.none)
@njit(cache=config.CACHE, error_model="numpy")
def _activation_backward_smooth(delta, A, Z, code):
    """:func:`activation_backward` for elu, softplus, gelu, silu."""
    n = delta.shape[0]
    if code == ELU:
        for i in range(n):
            g = F.elu_grad(A[i])
            if g != 1.0:
                delta[i] *= g
    elif code == SOFTPLUS:
        for i in range(n):
            delta[i] *= F.softplus_grad(A[i])
    elif code == GELU:
        for i in range(n):
            delta[i] *= F.gelu_grad(Z[i])
    elif code == SILU:
        for i in range(n):
            delta[i] *= F.silu_grad(Z[i])
    else:
        raise ValueError("unknown activation code")
