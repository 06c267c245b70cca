"""Hidden-layer activations and their derivatives, as Numba kernels.

Each activation has an integer code (the name -> code table :data:`ACTIVATIONS` is the
only place to add one).  Derivatives are taken from the stored output ``A = g(Z)``
wherever the activation allows it (scikit-learn's trick), so the forward pass keeps the
pre-activation ``Z`` only for the two that need it (gelu, silu): see :data:`NEEDS_Z`.
"""
import math

from numba import njit

from . import config

IDENTITY, RELU, LEAKY_RELU, ELU, TANH, SIGMOID, SOFTPLUS, GELU, SILU = range(9)

ACTIVATIONS = {
    "identity": IDENTITY,
    "relu": RELU,
    "leaky_relu": LEAKY_RELU,
    "elu": ELU,
    "tanh": TANH,
    "sigmoid": SIGMOID,
    "softplus": SOFTPLUS,
    "gelu": GELU,
    "silu": SILU,
}
ACTIVATION_NAMES = {code: name for name, code in ACTIVATIONS.items()}

#: Activations whose derivative cannot be written in terms of their output.
NEEDS_Z = frozenset({GELU, SILU})

#: Negative slope of leaky_relu and the alpha of elu (PyTorch's defaults).
LEAKY_SLOPE = 0.01

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@njit(cache=config.CACHE, inline="always")
def _sigmoid(z):
    # Two branches so exp never overflows: exp(-|z|) <= 1.
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@njit(cache=config.CACHE, inline="always")
def activate(Z, code, A):
    """``A = g(Z)`` element-wise on 1-D views; ``A`` may be ``Z`` itself."""
    n = Z.shape[0]
    if code == IDENTITY:
        for i in range(n):
            A[i] = Z[i]
    elif code == RELU:
        for i in range(n):
            A[i] = max(Z[i], 0.0)
    elif code == LEAKY_RELU:
        for i in range(n):
            z = Z[i]
            A[i] = z if z > 0 else LEAKY_SLOPE * z
    elif code == ELU:
        for i in range(n):
            z = Z[i]
            A[i] = z if z > 0 else math.expm1(z)
    elif code == TANH:
        for i in range(n):
            A[i] = math.tanh(Z[i])
    elif code == SIGMOID:
        for i in range(n):
            A[i] = _sigmoid(Z[i])
    elif code == SOFTPLUS:
        for i in range(n):
            z = Z[i]
            A[i] = max(z, 0.0) + math.log1p(math.exp(-abs(z)))
    elif code == GELU:
        for i in range(n):
            z = Z[i]
            A[i] = 0.5 * z * (1.0 + math.erf(z * _INV_SQRT2))
    elif code == SILU:
        for i in range(n):
            z = Z[i]
            A[i] = z * _sigmoid(z)


@njit(cache=config.CACHE, inline="always")
def activation_backward(delta, A, Z, code):
    """``delta *= g'(Z)`` in place, with ``g'`` read from ``A = g(Z)`` where possible."""
    n = delta.shape[0]
    if code == IDENTITY:
        return
    elif code == RELU:
        for i in range(n):
            if A[i] <= 0:
                delta[i] = 0.0
    elif code == LEAKY_RELU:
        for i in range(n):
            if A[i] <= 0:
                delta[i] *= LEAKY_SLOPE
    elif code == ELU:
        # g'(z) = exp(z) = A + 1 for z <= 0.
        for i in range(n):
            a = A[i]
            if a <= 0:
                delta[i] *= a + 1.0
    elif code == TANH:
        for i in range(n):
            a = A[i]
            delta[i] *= 1.0 - a * a
    elif code == SIGMOID:
        for i in range(n):
            a = A[i]
            delta[i] *= a * (1.0 - a)
    elif code == SOFTPLUS:
        # g'(z) = sigmoid(z) = 1 - exp(-A); expm1 keeps it exact when A is tiny.
        for i in range(n):
            delta[i] *= -math.expm1(-A[i])
    elif code == GELU:
        for i in range(n):
            z = Z[i]
            cdf = 0.5 * (1.0 + math.erf(z * _INV_SQRT2))
            pdf = _INV_SQRT_2PI * math.exp(-0.5 * z * z)
            delta[i] *= cdf + z * pdf
    elif code == SILU:
        for i in range(n):
            z = Z[i]
            s = _sigmoid(z)
            delta[i] *= s * (1.0 + z * (1.0 - s))


def activation_code(name):
    """Return the integer code of activation ``name``; raise ``ValueError`` if unknown."""
    if not isinstance(name, str):
        raise TypeError(f"activation must be a string name, got {type(name).__name__}")
    try:
        return ACTIVATIONS[name.lower()]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}"
        ) from None
