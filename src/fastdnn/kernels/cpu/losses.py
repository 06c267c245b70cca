"""Loss heads: each computes the mean loss and its gradient w.r.t. the logits in one pass;
and the prediction heads (labels, probabilities, regression values) of the logits.

Targets always arrive as a 2-D array ``T`` of the net's dtype, so every head has the
same signature and the training kernel compiles once per dtype: for cross-entropy
``T[:, 0]`` holds the integer class labels (exact in float32 up to 2**24 classes),
else ``T[:, :k]`` the targets; the last column holds each row's sample weight (1 when
none are given).  Every head is a weighted mean, ``sum(w l) / sum(w)``.
The per-element arithmetic is :mod:`fastdnn.kernels.spec`'s.

No ``fastmath`` here: the log-sum-exp must keep IEEE semantics to stay finite.
"""

import numba
import numpy as np
from numba import types

from ... import config
from ..spec import BINARY_CROSS_ENTROPY, CROSS_ENTROPY, MSE, POISSON
from . import formulas as F
from .scalars import max2
from .separate import separate
from .vexp import vexp
from .pipeline import njit


@njit(cache=config.CACHE, inline="always")
def weight_sum(T):
    """Sum of the sample weights, ``T``'s last column."""
    w = T.shape[1] - 1
    total = 0.0
    for i in range(T.shape[0]):
        total += T[i, w]
    return total


@njit(cache=config.CACHE, inline="always")
def _inverse(total):
    """``1 / total``, or 0 for a batch whose weights are all 0 (it then adds nothing)."""
    return 1.0 / total if total > 0 else 0.0


@njit(cache=config.CACHE, inline="always")
def softmax_row(z, e):
    """``spec.softmax_row`` with :func:`.vexp.vexp`: ``e = exp(z - max z)``, returns
    ``(max z, sum e)``.  The exponentials in a loop of their own, which vectorises (the
    running sum kept libm's ``exp`` one call at a time: 3-4 us of a 100-row digits shard)."""
    zmax = z[0]
    for j in range(1, z.shape[0]):
        zmax = max2(zmax, z[j])
    for j in range(z.shape[0]):
        e[j] = vexp(z[j] - zmax)
    total = 0.0
    for j in range(z.shape[0]):
        total += e[j]
    return zmax, total


@njit(cache=config.CACHE, inline="always")
def softmax_cross_entropy(Z, T, G):
    """Weighted mean of ``logsumexp(z) - z[y]``; ``G = w (softmax(Z) - onehot(y)) / sum(w)``.

    With unit weights ``w * inv`` is ``inv`` exactly: the unweighted mean, bit for bit.
    """
    n = Z.shape[0]
    inv = _inverse(weight_sum(T))
    total = 0.0
    for i in range(n):
        zmax, s = softmax_row(Z[i], G[i])
        y = np.int64(T[i, 0])
        w = T[i, 1]
        total += w * F.cross_entropy_term(zmax, s, Z[i, y])
        share = w * inv
        scale = share / s
        for j in range(Z.shape[1]):
            G[i, j] *= scale
        G[i, y] -= share
    return total * inv


@njit(cache=config.CACHE, inline="always")
def mean_squared_error(Z, T, G):
    """Weighted mean over samples (and plain over outputs) of ``(z - t)**2``;
    ``G = 2 w (Z - T) / (k sum(w))``."""
    n, k = Z.shape
    inv = _inverse(weight_sum(T) * k)
    total = 0.0
    for i in range(n):
        w = T[i, k]
        share = w * inv
        for j in range(k):
            term, G[i, j] = F.squared_error(Z[i, j], T[i, j], share)
            total += w * term
    return total * inv


@njit(cache=config.CACHE, inline="always")
def sigmoid_binary_cross_entropy(Z, T, G):
    """Weighted mean of ``max(z,0) - z t + log1p(exp(-|z|))``;
    ``G = w (sigmoid(Z) - T) / (k sum(w))``."""
    n, k = Z.shape
    inv = _inverse(weight_sum(T) * k)
    total = 0.0
    for i in range(n):
        w = T[i, k]
        share = w * inv
        for j in range(k):
            term, G[i, j] = F.sigmoid_cross_entropy(Z[i, j], T[i, j], share)
            total += w * term
    return total * inv


@njit(cache=config.CACHE, inline="always")
def poisson_log_likelihood(Z, T, G):
    """Weighted mean over samples (and plain over outputs) of ``exp(z) - t z``, the
    Poisson negative log-likelihood of counts ``T`` with log-means ``Z`` (less
    ``log(t!)``); ``G = w (exp(Z) - T) / (k sum(w))``; inf where ``exp`` overflows."""
    n, k = Z.shape
    inv = _inverse(weight_sum(T) * k)
    total = 0.0
    for i in range(n):
        w = T[i, k]
        share = w * inv
        for j in range(k):
            term, G[i, j] = F.poisson_nll(Z[i, j], T[i, j], share)
            total += w * term
    return total * inv


@njit(cache=config.CACHE, inline="always")
def _by_code(Z, T, code, G, cross_entropy, squared_error, binary_cross_entropy, poisson):
    """The loss head ``code`` of the four given (:func:`loss_grad`)."""
    if code == CROSS_ENTROPY:
        return cross_entropy(Z, T, G)
    elif code == MSE:
        return squared_error(Z, T, G)
    elif code == BINARY_CROSS_ENTROPY:
        return binary_cross_entropy(Z, T, G)
    elif code == POISSON:
        return poisson(Z, T, G)
    raise ValueError("unknown loss code")


# Each head a kernel of its own, compiled when a fit first calls it (.separate): a fit
# compiles one head, not four (0.7 s of a cold start, Intel Xeon).
@separate(returns=types.float64)
@njit(cache=config.CACHE)
def cross_entropy_head(Z, T, G):
    """:func:`softmax_cross_entropy`, compiled on its own."""
    return softmax_cross_entropy(Z, T, G)


@separate(returns=types.float64)
@njit(cache=config.CACHE)
def squared_error_head(Z, T, G):
    """:func:`mean_squared_error`, compiled on its own."""
    return mean_squared_error(Z, T, G)


@separate(returns=types.float64)
@njit(cache=config.CACHE)
def binary_cross_entropy_head(Z, T, G):
    """:func:`sigmoid_binary_cross_entropy`, compiled on its own."""
    return sigmoid_binary_cross_entropy(Z, T, G)


@separate(returns=types.float64)
@njit(cache=config.CACHE)
def poisson_head(Z, T, G):
    """:func:`poisson_log_likelihood`, compiled on its own."""
    return poisson_log_likelihood(Z, T, G)


def head(code):
    """The dispatcher of the loss head ``code`` (the one :func:`loss_grad` calls)."""
    return {CROSS_ENTROPY: cross_entropy_head, MSE: squared_error_head,
            BINARY_CROSS_ENTROPY: binary_cross_entropy_head, POISSON: poisson_head}[code]


def compile_head(code, dtype):
    """Compile (or load) the loss head ``code`` for the ``dtype`` C-contiguous 2-D arrays
    that :func:`loss_grad` passes it, ahead of its first call (:mod:`.warmup`)."""
    rows = types.Array(numba.from_dtype(np.dtype(dtype)), 2, "C")
    head(code).compile((rows, rows, rows))


@separate
@njit(cache=config.CACHE)
def loss_grad(Z, T, code, G):
    """Dispatch to the loss head ``code``: write dL/dZ into ``G``, return the weighted mean loss.

    Called, not inlined: the training step and the evaluation both call it, and inlined
    its heads were compiled into each (1-2 s of a cold start, with three heads).
    """
    return _by_code(Z, T, code, G, cross_entropy_head, squared_error_head,
                    binary_cross_entropy_head, poisson_head)


@njit(cache=config.CACHE)
def loss_grad_inlined(Z, T, code, G):
    """:func:`loss_grad` with the heads inlined, for online SGD's kernel, where LLVM
    inlines it: called through slots, a 2-8-8-1 step took 256 against 243 ns (Intel
    Xeon).  Compiled only by online fits."""
    return _by_code(Z, T, code, G, softmax_cross_entropy, mean_squared_error,
                    sigmoid_binary_cross_entropy, poisson_log_likelihood)


@njit(cache=config.CACHE)
def labels(code, Z, out):
    """Predictions of the logits ``Z`` into ``out``: the row argmax (cross-entropy; the
    first maximum, as NumPy) into ``out[:, 0]``, ``Z > 0`` (binary cross-entropy)."""
    n, k = Z.shape
    for i in range(n):
        if code == CROSS_ENTROPY:
            out[i, 0] = F.first_argmax(Z[i])
        elif code == BINARY_CROSS_ENTROPY:
            for j in range(k):
                out[i, j] = 1 if Z[i, j] > 0 else 0
        else:
            raise ValueError("labels need a classification loss code")


@njit(cache=config.CACHE)
def probabilities(code, Z, P):
    """Softmax rows (cross-entropy) or sigmoids (binary; ``P = [sigmoid(-z), sigmoid(z)]``
    for one output) of the logits ``Z``, computed in float64."""
    n, k = Z.shape
    e = np.empty(k)  # float64 whatever the logits' dtype
    for i in range(n):
        if code == CROSS_ENTROPY:
            _, s = softmax_row(Z[i], e)
            for j in range(k):
                P[i, j] = e[j] / s
        elif code == BINARY_CROSS_ENTROPY:
            for j in range(k):
                z = float(Z[i, j])
                if k == 1:  # sigmoid(-z), not 1 - p: 3.4e-8 off (relative) at z = 20
                    P[i, 0] = F.sigmoid(-z)
                    P[i, 1] = F.sigmoid(z)
                else:
                    P[i, j] = F.sigmoid(z)
        else:
            raise ValueError("probabilities need a classification loss code")


@njit(cache=config.CACHE)
def predictions(code, Z, out):
    """Values of a regression loss ``code`` from the logits ``Z`` into ``out``:
    ``spec.inverse_link`` per element (``exp(Z)``, the Poisson means, for poisson)."""
    if code != MSE and code != POISSON:
        raise ValueError("predictions need a regression loss code")
    n, k = Z.shape
    for i in range(n):
        for j in range(k):
            out[i, j] = F.inverse_link(Z[i, j], code)
