"""Loss heads: each computes the mean loss and its gradient w.r.t. the logits in one pass.

Targets always arrive as a 2-D array ``T`` of the net's dtype, so every head has the
same signature and the training kernel compiles once per dtype: for cross-entropy
``T[:, 0]`` holds the integer class labels (exact in float32 up to 2**24 classes).

No ``fastmath`` here: the log-sum-exp must keep IEEE semantics to stay finite.
"""
import math

from numba import njit

from . import config

CROSS_ENTROPY, MSE, BINARY_CROSS_ENTROPY = range(3)

LOSSES = {
    "cross_entropy": CROSS_ENTROPY,
    "mse": MSE,
    "binary_cross_entropy": BINARY_CROSS_ENTROPY,
}
LOSS_NAMES = {code: name for name, code in LOSSES.items()}
CLASSIFIERS = frozenset({CROSS_ENTROPY, BINARY_CROSS_ENTROPY})


@njit(cache=config.CACHE, inline="always")
def softmax_cross_entropy(Z, T, G):
    """Mean of ``logsumexp(z) - z[y]``; ``G = (softmax(Z) - onehot(y)) / n``."""
    n, k = Z.shape
    inv_n = 1.0 / n
    total = 0.0
    for i in range(n):
        zmax = Z[i, 0]
        for j in range(1, k):
            zmax = max(zmax, Z[i, j])
        s = 0.0
        for j in range(k):
            # exp of a non-positive number: never overflows, even for logits of 1e4.
            e = math.exp(Z[i, j] - zmax)
            G[i, j] = e
            s += e
        y = int(T[i, 0])
        total += zmax + math.log(s) - Z[i, y]
        scale = inv_n / s
        for j in range(k):
            G[i, j] *= scale
        G[i, y] -= inv_n
    return total * inv_n


@njit(cache=config.CACHE, inline="always")
def mean_squared_error(Z, T, G):
    """Mean over samples and outputs of ``(z - t)**2``; ``G = 2 (Z - T) / (n k)``."""
    n, k = Z.shape
    inv = 1.0 / (n * k)
    total = 0.0
    for i in range(n):
        for j in range(k):
            d = Z[i, j] - T[i, j]
            total += d * d
            G[i, j] = 2.0 * d * inv
    return total * inv


@njit(cache=config.CACHE, inline="always")
def sigmoid_binary_cross_entropy(Z, T, G):
    """Mean of ``max(z,0) - z t + log1p(exp(-|z|))``; ``G = (sigmoid(Z) - T) / (n k)``."""
    n, k = Z.shape
    inv = 1.0 / (n * k)
    total = 0.0
    for i in range(n):
        for j in range(k):
            z = Z[i, j]
            t = T[i, j]
            e = math.exp(-abs(z))
            total += max(z, 0.0) - z * t + math.log1p(e)
            p = 1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)
            G[i, j] = (p - t) * inv
    return total * inv


@njit(cache=config.CACHE, inline="always")
def loss_grad(Z, T, code, G):
    """Dispatch to the loss head ``code``: write dL/dZ into ``G``, return the mean loss."""
    if code == CROSS_ENTROPY:
        return softmax_cross_entropy(Z, T, G)
    elif code == MSE:
        return mean_squared_error(Z, T, G)
    return sigmoid_binary_cross_entropy(Z, T, G)


def loss_code(name):
    """Return the integer code of loss ``name``; raise ``ValueError`` if unknown."""
    if not isinstance(name, str):
        raise TypeError(f"loss must be a string name, got {type(name).__name__}")
    try:
        return LOSSES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}") from None
