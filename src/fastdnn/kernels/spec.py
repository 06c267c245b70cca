"""The contract between the API and every kernel, CPU and CUDA alike.

Five things live here and nowhere else:

* **Code tables**: the integer codes of activations, losses, optimizers, schedules,
  sampling modes and prediction heads, with the name -> code maps the API reads.
  Adding an activation, a loss or an optimizer starts with one entry here.
* **Named slots** of the float64 vectors the kernels receive: the optimizer's
  hyper-parameters (:data:`LR`, :data:`MOMENTUM`, ...) and each schedule's parameters
  (:data:`DECAY`, :data:`STEP_SIZE`, ...), so no kernel reads ``params[0]`` by position.
* **The flat layout** (:class:`Layout`): where each layer's parameters and buffers live.
* **The backend protocol** (:class:`Backend`, :class:`Trainer`): what the model asks
  of a device.
* **The scalar formulas**, each written once as a plain Python function of scalars
  (an activation and its derivative, a loss term and its gradient, an update rule, a
  learning-rate factor).  The CPU tree compiles them with ``njit(inline="always")``
  and the CUDA tree with ``cuda.jit(device=True)``, both through :func:`compile_formulas`;
  host code may call them as they are.

This module imports NumPy only: importing it compiles nothing.
"""
import math
import types
from collections import namedtuple
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import NonFiniteOutputError

# ------------------------------------------------------------------ code tables
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

#: Activations whose derivative cannot be written in terms of their output ``A = g(Z)``,
#: so the forward pass keeps ``Z`` for them (every other derivative reads ``A``).
NEEDS_Z = frozenset({GELU, SILU})

#: Negative slope of leaky_relu (PyTorch's default; elu's alpha is 1).
LEAKY_SLOPE = 0.01

CROSS_ENTROPY, MSE, BINARY_CROSS_ENTROPY, POISSON = range(4)

LOSSES = {
    "cross_entropy": CROSS_ENTROPY,
    "mse": MSE,
    "binary_cross_entropy": BINARY_CROSS_ENTROPY,
    "poisson": POISSON,
}
LOSS_NAMES = {code: name for name, code in LOSSES.items()}
CLASSIFIERS = frozenset({CROSS_ENTROPY, BINARY_CROSS_ENTROPY})
#: Losses whose predictions are values, not labels: the logits themselves (mse) or the
#: mean ``exp(z)`` of a log link (poisson); see :func:`inverse_link`.
REGRESSORS = frozenset({MSE, POISSON})

SGD, ADAM = range(2)
OPTIMIZER_CODES = frozenset({SGD, ADAM})

CONSTANT, INVERSE_TIME, STEP, EXPONENTIAL, COSINE, PLATEAU = range(6)
SCHEDULE_CODES = frozenset({CONSTANT, INVERSE_TIME, STEP, EXPONENTIAL, COSINE, PLATEAU})

#: Sampling of an epoch: rows in order, a fresh permutation, or uniform draws with
#: replacement (the course's plain SGD).
IN_ORDER, SHUFFLE, UNIFORM = range(3)

#: What an inference pass returns: the logits, the predictions (class labels for the
#: classifiers, the values of :func:`inverse_link` for the regressors), or class
#: probabilities.
LOGITS, LABELS, PROBABILITIES = range(3)


def non_finite_outputs(Z):
    """The :class:`~fastdnn.errors.NonFiniteOutputError` (a ``ValueError``) for logits
    ``Z`` (NumPy, ``(n, k)``) some of which are not finite: predictions or probabilities
    made from them would be made up (an all-NaN row's label read 0)."""
    bad = np.flatnonzero(~np.isfinite(Z).all(axis=1))
    return NonFiniteOutputError(
        f"the net's outputs are not finite for {len(bad)} of {len(Z)} rows (row {bad[0]} "
        "first): the inputs are too large for its weights, or its weights overflow")


def _lookup(kind, table, name):
    if not isinstance(name, str):
        raise TypeError(f"{kind} must be a string name, got {type(name).__name__}")
    try:
        return table[name.lower()]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; choose one of {', '.join(table)}") from None


def activation_code(name):
    """The integer code of activation ``name``; ``ValueError`` if unknown."""
    return _lookup("activation", ACTIVATIONS, name)


def loss_code(name):
    """The integer code of loss ``name``; ``ValueError`` if unknown."""
    return _lookup("loss", LOSSES, name)


def check_code(kind, code, codes):
    """Return ``code`` if it is one of ``codes``; else a ``ValueError`` naming ``kind``.

    Kernels dispatch on codes and end in an error branch, never a fall-through; this is
    the host-side check that keeps a bad code from reaching a launch.
    """
    if code not in codes:
        raise ValueError(f"unknown {kind} code {code!r}")
    return code


# ------------------------------------------------------------------ named slots
#: Slots of the float64 step vector ``hyper`` (unused slots stay 0): the optimizer's
#: hyper-parameters, then what every step applies to the gradient before the update:
#: the net's L2 penalty ``L2 / 2 * sum(W**2)`` (weights only), the global
#: gradient-norm bound ``CLIP_NORM`` (0: none), and ``L2_WEIGHT``: 0 for a penalty the
#: same at every step, else the batch weight at which ``L2`` holds (:func:`step_l2`).
LR, MOMENTUM, NESTEROV, WEIGHT_DECAY, BETA1, BETA2, EPS, DECOUPLED, L2, CLIP_NORM, L2_WEIGHT = \
    range(11)
N_HYPER = 11

#: Slots of the float64 schedule vector, per schedule (see :func:`lr_factor`).
DECAY = 0                       # inverse_time: lr / (1 + decay t)
STEP_SIZE, GAMMA = 0, 1         # step: lr gamma^(t // step_size)
RATE, DECAY_STEPS = 0, 1        # exponential: lr rate^(t / decay_steps)
TOTAL_STEPS, MIN_FACTOR = 0, 1  # cosine annealing to min_factor over total_steps
SCALE = 0                       # plateau: lr scale, set by the host between epochs
N_SCHEDULE = 2

# ------------------------------------------------------------------ flat layout
# Columns of the layout table.
# GEMM_MIN: the multiply-add count (rows * fan_in * fan_out) from which the layer's
# products go to BLAS rather than the loop kernels (decided per batch, by shape only).
# DROP: the layer's dropout threshold, ``round(rate * 2**32)`` (0: no dropout; see
# :func:`dropout_scale`), and OUT_OFF the offset of the output the next layer reads:
# ``A`` itself, or the dropped-out copy of ``A`` where DROP > 0 (training layouts only).
FAN_IN, FAN_OUT, W_OFF, B_OFF, IN_OFF, Z_OFF, A_OFF, ACT, GEMM_MIN, DROP, OUT_OFF = range(11)
N_COLS = 11

#: Dropout thresholds are fractions of 2**32 (the top 32 bits of a 64-bit hash).
DROP_ONE = 1 << 32


def dropout_threshold(rate):
    """The DROP column of a layer with dropout ``rate`` in [0, 1)."""
    return int(round(rate * DROP_ONE))


def param_offsets(sizes):
    """Offsets of ``W_i`` and ``b_i`` in ``theta`` and the total parameter count."""
    w_off, b_off, off = [], [], 0
    for k, n in zip(sizes[:-1], sizes[1:]):
        w_off.append(off)
        off += k * n
        b_off.append(off)
        off += n
    return w_off, b_off, off


@dataclass(frozen=True)
class Layout:
    """Offsets for a net with layer ``sizes`` and hidden ``codes`` at batch capacity ``cap``.

    All parameters sit in one vector ``theta`` as ``[W_1, b_1, W_2, b_2, ...]`` (each
    ``W`` C-ordered ``(fan_in, fan_out)``), and all activations of a batch in one vector
    ``work``.  The kernels read offsets from the int64 ``table``, a row per layer, so
    nets of any depth and width, and any batch size, share one compiled signature per
    dtype: changing the architecture never recompiles.

    Attributes
    ----------
    table : ndarray of int64, shape (n_layers, N_COLS)
    n_params : int
        Length of ``theta``.
    work_size : int
        Length of the activation buffer (input slot, each layer's ``A``, and ``Z``
        where the activation's derivative needs it).
    delta_size : int
        Length of each of the two ping-pong ``delta`` buffers.
    cap : int
        Rows the buffers hold.
    """

    table: np.ndarray
    n_params: int
    work_size: int
    delta_size: int
    cap: int

    @classmethod
    def build(cls, sizes, codes, cap, small_gemm_macs=0, drops=None, input_slot=True):
        """Lay out a net; ``codes`` has one activation code per hidden layer.

        ``small_gemm_macs`` is the product size from which a layer uses BLAS (the CPU
        backend passes ``config.SMALL_GEMM_MACS``; the CUDA kernels ignore it).
        ``drops``: a dropout threshold per hidden layer (:func:`dropout_threshold`), for
        training layouts; each layer with one gets a slot for its dropped-out output.
        ``input_slot``: slot 0 of ``work`` holds a gathered input batch (the CUDA
        backend's); the CPU kernels read X (or their own gather buffer, shared by shards)
        directly, and never layer 0's ``IN_OFF``.  The deltas hold no dL/dX (no kernel
        computes it), so they are as wide as the widest layer output, not the input.
        """
        n_layers = len(sizes) - 1
        w_off, b_off, n_params = param_offsets(sizes)
        table = np.zeros((n_layers, N_COLS), dtype=np.int64)
        # A 20000-input net's predict kept 937 MB of buffers, 0.4 MB of them used.
        off = cap * sizes[0] if input_slot else 0
        prev_out = 0
        for i in range(n_layers):
            k, n = sizes[i], sizes[i + 1]
            code = IDENTITY
            if i < n_layers - 1:
                code = check_code("activation", codes[i], ACTIVATION_NAMES)
            drop = drops[i] if drops is not None and i < n_layers - 1 else 0
            z_off = off
            if code in NEEDS_Z:
                off += cap * n
            a_off = off
            off += cap * n
            out_off = a_off
            if drop > 0:
                out_off = off
                off += cap * n
            table[i] = (k, n, w_off[i], b_off[i], prev_out, z_off, a_off, code, small_gemm_macs,
                        drop, out_off)
            prev_out = out_off
        return cls(table, n_params, off, cap * max(sizes[1:]), cap)

    @property
    def out_offset(self):
        """Offset in ``work`` of the last layer's output (the logits)."""
        return int(self.table[-1, A_OFF])


# ------------------------------------------------------------------ scalar formulas
# Plain functions of scalars, compiled per tree by compile_formulas.  The bodies are
# the whole arithmetic: the kernels around them only loop, reduce and store.  A call
# from one formula to another resolves to the compiled twin in each tree.
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def sigmoid(z):
    """``1 / (1 + exp(-z))``, two branches so ``exp`` never overflows: ``exp(-|z|) <= 1``."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def relu(z):
    return max(z, 0.0)


def leaky_relu(z):
    return z if z > 0 else LEAKY_SLOPE * z


def elu(z):
    return z if z > 0 else math.expm1(z)


def softplus(z):
    """``log(1 + exp(z))`` without overflow or lost digits."""
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


# Eigen's and XLA's float32 tanh: odd/even polynomials of degree 13/6 in the clamped
# input.  Within 2.4e-7 of tanh (3.5 float32 ulps; libm's tanhf: 6e-8) for all float32
# inputs, and it vectorises where a libm call per element does not: 16 tanhf calls were
# most of a batch-1 step of a 2-8-8-1 tanh net.
_TANH_CLAMP = 7.90531110763549805
_TANH_A1, _TANH_A3, _TANH_A5, _TANH_A7 = (4.89352455891786e-03, 6.37261928875436e-04,
                                          1.48572235717979e-05, 5.12229709037114e-08)
_TANH_A9, _TANH_A11, _TANH_A13 = -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16
_TANH_B0, _TANH_B2, _TANH_B4, _TANH_B6 = (4.89352518554385e-03, 2.26843463243900e-03,
                                          1.18534705686654e-04, 1.19825839466702e-06)


def tanh_rational(z):
    """``tanh(z)`` to float32 accuracy (see above); NaN stays NaN, +-inf give +-1."""
    x = _TANH_CLAMP if z > _TANH_CLAMP else (-_TANH_CLAMP if z < -_TANH_CLAMP else z)
    x2 = x * x
    p = ((((((_TANH_A13 * x2 + _TANH_A11) * x2 + _TANH_A9) * x2 + _TANH_A7) * x2 + _TANH_A5)
          * x2 + _TANH_A3) * x2 + _TANH_A1) * x
    q = ((_TANH_B6 * x2 + _TANH_B4) * x2 + _TANH_B2) * x2 + _TANH_B0
    return x if abs(x) < 0.0004 else p / q


def gelu(z):
    """``z Phi(z)``, the exact (erf) form; ``Phi(z) = erfc(-z / sqrt 2) / 2``, which keeps
    the left tail (``1 + erf`` is 0 below z = -3.9 in float32: gelu(-6.3) = -9.4e-10
    became -0)."""
    return 0.5 * z * math.erfc(-z * _INV_SQRT2)


def silu(z):
    return z * sigmoid(z)


# Derivatives: from the output a = g(z) wherever the activation allows (scikit-learn's
# trick: the forward pass then keeps no z), from z for gelu and silu (NEEDS_Z).
def relu_grad(a):
    return 0.0 if a <= 0 else 1.0


def leaky_relu_grad(a):
    return LEAKY_SLOPE if a <= 0 else 1.0


def elu_grad(a):
    """``g'(z) = exp(z) = a + 1`` for ``z <= 0``."""
    return a + 1.0 if a <= 0 else 1.0


def tanh_grad(a):
    """``1 - a^2``.  Not ``(1 - a)(1 + a)``, which is exact near saturation in float32
    arithmetic: it cost a 64-128-128-10 tanh net 8% of its online SGD (best of 9
    alternated rounds, AMD EPYC), and gains nothing on the CPU (a float32 ``a`` squares
    exactly in float64); CUDA's float32 epilogue is off by up to 3e-8 (absolute) near
    saturation, a float32 rounding of the 1."""
    return 1.0 - a * a


def sigmoid_grad(a):
    return a * (1.0 - a)


def softplus_grad(a):
    """``g'(z) = sigmoid(z) = 1 - exp(-a)``; expm1 keeps it exact when ``a`` is tiny."""
    return -math.expm1(-a)


def gelu_grad(z):
    cdf = 0.5 * math.erfc(-z * _INV_SQRT2)  # as gelu's
    pdf = _INV_SQRT_2PI * math.exp(-0.5 * z * z)
    return cdf + z * pdf


def silu_grad(z):
    """``s (1 + z (1 - s))``, ``s = sigmoid(z)``, with ``1 - s`` taken as ``sigmoid(-z)``
    from the same ``exp(-|z|)``: ``1 - s`` cancelled for large z (1e-6 relative in
    float32 at z = 5)."""
    e = math.exp(-abs(z))
    high, low = 1.0 / (1.0 + e), e / (1.0 + e)  # sigmoid(|z|), sigmoid(-|z|)
    s, rest = (high, low) if z >= 0 else (low, high)
    return s * (1.0 + z * rest)


def activate(z, code):
    """``g(z)`` for activation ``code``; NaN for an unknown code (never a fall-through).

    For kernels that go element by element (CUDA epilogues); the CPU loops dispatch once
    per row instead (one branch per row, not per element).
    """
    if code == IDENTITY:
        return z
    elif code == RELU:
        return relu(z)
    elif code == LEAKY_RELU:
        return leaky_relu(z)
    elif code == ELU:
        return elu(z)
    elif code == TANH:
        return math.tanh(z)
    elif code == SIGMOID:
        return sigmoid(z)
    elif code == SOFTPLUS:
        return softplus(z)
    elif code == GELU:
        return gelu(z)
    elif code == SILU:
        return silu(z)
    return math.nan


def derivative(a, z, code):
    """``g'(z)`` for activation ``code`` from ``a = g(z)`` (and ``z`` where it must); NaN
    for an unknown code."""
    if code == IDENTITY:
        return 1.0
    elif code == RELU:
        return relu_grad(a)
    elif code == LEAKY_RELU:
        return leaky_relu_grad(a)
    elif code == ELU:
        return elu_grad(a)
    elif code == TANH:
        return tanh_grad(a)
    elif code == SIGMOID:
        return sigmoid_grad(a)
    elif code == SOFTPLUS:
        return softplus_grad(a)
    elif code == GELU:
        return gelu_grad(z)
    elif code == SILU:
        return silu_grad(z)
    return math.nan


# Loss terms.  Each head is a mean: the kernels pass ``inv`` = 1/n (cross-entropy) or
# 1/(n k) (mse, binary cross-entropy, poisson) and sum the terms.
def cross_entropy_term(zmax, sum_exp, z_label):
    """``logsumexp(z) - z[y]`` from the row max, ``sum(exp(z - zmax))`` and ``z[y]``.

    The two logits first (PyTorch's order): ``zmax + log(sum_exp)`` rounded the log away
    where the logits are large, so logits ``[M, M, -M]`` with label 0 lost log 2 (the
    loss read 0.0 at M = 1e16, 0.69314718246 at M = 1e8)."""
    return (zmax - z_label) + math.log(sum_exp)


def squared_error(z, t, inv):
    """``((z - t)^2, 2 (z - t) inv)``: the term and its share of dL/dz."""
    d = z - t
    return d * d, 2.0 * d * inv


def sigmoid_cross_entropy(z, t, inv):
    """``(max(z,0) - z t + log1p(exp(-|z|)), (sigmoid(z) - t) inv)``, stable for any z."""
    e = math.exp(-abs(z))
    p = 1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)
    return max(z, 0.0) - z * t + math.log1p(e), (p - t) * inv


#: From here on ``exp`` overflows float64; Python's ``math.exp`` raises there, so the
#: formulas that host code may call give inf without calling it (compiled code agrees).
_EXP_OVERFLOW = 710.0


def poisson_nll(z, t, inv):
    """``(exp(z) - t z, (exp(z) - t) inv)``: the negative log-likelihood of a count ``t``
    whose Poisson mean is ``exp(z)``, less its constant ``log(t!)`` (PyTorch's
    ``poisson_nll_loss(log_input=True, full=False)``), and its share of dL/dz.

    Where ``exp(z)`` overflows (float64 from z = 709.8, float32 from 88.7) both are inf,
    a divergence, and never the NaN of ``inf - t z`` where ``t z`` overflows too:
    ``exp(z)`` outgrows ``t z`` for any ``t`` the dtype holds, so inf is the right side.
    """
    mu = math.exp(z) if z < _EXP_OVERFLOW else math.inf
    if mu == math.inf:
        return math.inf, math.inf
    return mu - t * z, (mu - t) * inv


def inverse_link(z, code):
    """The prediction of regression loss ``code`` from the output ``z``: ``z`` (mse) or
    the Poisson mean ``exp(z)`` (poisson; inf where it overflows); NaN for another code."""
    if code == MSE:
        return z
    elif code == POISSON:
        return math.exp(z) if z < _EXP_OVERFLOW else math.inf
    return math.nan


# Rows of logits (prediction heads, the CPU loss head).
def softmax_row(z, e):
    """``e = exp(z - max z)`` (never overflows, even for logits of 1e4); returns
    ``(max z, sum e)``, so ``softmax(z) = e / sum e`` and ``logsumexp(z) = max z + log(sum e)``."""
    zmax = z[0]
    for j in range(1, z.shape[0]):
        zmax = max(zmax, z[j])
    total = 0.0
    for j in range(z.shape[0]):
        v = math.exp(z[j] - zmax)
        e[j] = v
        total += v
    return zmax, total


def first_argmax(z):
    """Index of the first largest entry of the row ``z`` (as NumPy's ``argmax``)."""
    best = 0
    for j in range(1, z.shape[0]):
        if z[j] > z[best]:
            best = j
    return best


# Counter-based random bits: a value is a pure function of its key and position, so
# dropout masks and uniform draws do not depend on threads, shards or on where a fit
# was cut into slices.  splitmix64's finaliser (Steele et al., 2014), on uint64.
def mix64(x):
    """A 64-bit hash of the uint64 ``x`` (splitmix64)."""
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def step_key(seed, step):
    """The random key of optimizer step ``step`` of an epoch drawn with ``seed``."""
    return mix64(mix64(np.uint64(seed)) + np.uint64(step))


def random_index(key, i, n):
    """The ``i``-th of the uniform draws in ``[0, n)`` under ``key``."""
    return np.int64(mix64(key + np.uint64(i)) % np.uint64(n))


def shuffle_key(seed):
    """The key of the permutation of an epoch drawn with ``seed``: apart from its step
    keys (``mix64(mix64(seed) + step)``), so that the row a permutation puts in place
    ``i`` does not go with step ``i``'s dropout masks."""
    return mix64(mix64(np.uint64(seed)) ^ np.uint64(0x5348554646_4C4544))


def dropout_scale(key, row, layer, unit, threshold):
    """Inverted dropout's multiplier of unit ``unit`` of hidden layer ``layer`` for row
    ``row`` of a batch: 0 (dropped, with probability ``threshold / 2**32``) or
    ``1 / (1 - rate)``."""
    bits = mix64(mix64(key + np.uint64(row)) + (np.uint64(layer) << np.uint64(32))
                 + np.uint64(unit))
    if (bits >> np.uint64(32)) < np.uint64(threshold):
        return 0.0
    return DROP_ONE / (DROP_ONE - threshold)


# Updates (torch.optim semantics), one parameter at a time.
#
# A running average of a gradient that has become exactly 0 (a dead relu unit's weights)
# decays geometrically into the subnormal numbers and stays there: ``0.9 * x`` rounds back
# to ``x`` for the smallest subnormals, a fixed point.  Arithmetic on subnormals is
# microcoded on x86 (~100 cycles): 99 of them among 3,302 Adam moments made the update
# 2.5x slower for good, from about step 7,000 (Intel Xeon).  So the updates take ``tiny``,
# the smallest normal number of the state's dtype, and store an average below it as 0
# (its share of any update is below ``lr * tiny / eps``); 0 flushes nothing (the CUDA
# kernels pass it: GPUs handle subnormals at full speed).
def flush(x, tiny):
    """``x``, or 0 where ``|x| < tiny`` (a subnormal of the state's dtype); ``x - x`` is
    that 0 in ``x``'s own type (a float64 literal would make float32 arithmetic float64)."""
    return x - x if abs(x) < tiny else x


def sgd_step(theta, g, velocity, lr, momentum, nesterov, weight_decay, first, tiny):
    """``(theta - lr d, velocity')``: ``d`` the (Nesterov-)momentum of ``g + wd theta``.

    ``first``: the step that starts the velocity (``v = d``, dampening 0 as PyTorch).
    ``tiny``: velocities below it are stored as 0 (see :func:`flush`).
    """
    g = g + weight_decay * theta
    if momentum != 0.0:
        velocity = flush(g if first else momentum * velocity + g, tiny)
        g = g + momentum * velocity if nesterov else velocity
    return theta - lr * g, velocity


def adam_scalars(lr, beta1, beta2, t):
    """``(lr / (1 - beta1^t), 1 / sqrt(1 - beta2^t))``: the bias corrections of step
    ``t >= 1`` (the second as a factor, so that the step divides once per parameter)."""
    return lr / (1.0 - beta1**t), 1.0 / math.sqrt(1.0 - beta2**t)


def decoupled_decay(theta, lr, weight_decay):
    """AdamW's ``theta (1 - lr wd)``, applied (and stored) before the Adam step; written
    ``theta - theta (lr wd)`` so that no float64 literal widens float32 arguments."""
    return theta - theta * (lr * weight_decay)


def adam_step(theta, g, avg_grad, avg_sq, step_size, inv_sqrt_bias2, beta1, beta2,
              one_minus_beta1, one_minus_beta2, eps, weight_decay, decoupled, tiny):
    """``(theta', avg_grad', avg_sq')`` of one Adam step; L2 decay in the gradient unless
    ``decoupled`` (then :func:`decoupled_decay` was applied to ``theta`` already).
    ``tiny``: averages below it are stored as 0 (see :func:`flush`).

    No literal constants (``1 - beta`` comes in as an argument): the arithmetic runs in
    the type of the arguments, float32 for a float32 net as in PyTorch (its square root
    and division are the update's cost: 3.3x faster than in float64, Intel Xeon).

    PyTorch's formula, ``theta - step_size m / (sqrt(v) / sqrt(1 - beta2^t) + eps)``, with
    the bias correction as a product: one division and one square root per parameter
    (the CPU update is bound by them: two divisions made it 1.3x slower).
    """
    if not decoupled:
        g = g + weight_decay * theta
    avg_grad = flush(beta1 * avg_grad + one_minus_beta1 * g, tiny)
    avg_sq = flush(beta2 * avg_sq + one_minus_beta2 * g * g, tiny)
    denom = math.sqrt(avg_sq) * inv_sqrt_bias2 + eps
    return theta - step_size * avg_grad / denom, avg_grad, avg_sq


#: Below this a sum of float64 squares may have lost digits to subnormals (or all of
#: them: 3e-170 squared is 0), and :func:`clip_factor`'s norm is taken again rescaled.
CLIP_TINY_SQUARES = 1e-290


def clip_factor(root, scale, bound):
    """The factor that clips a gradient of norm ``scale * root`` to ``bound``: 1 within
    it, else ``bound / (scale * root)``, without forming the norm (``scale`` is 1, or
    ``max|g|`` where the squares of ``g`` overflowed or underflowed and ``root`` is the
    norm of ``g / max|g|``: a norm past 1.8e308 was inf, and the factor 0, no step)."""
    limit = bound / scale
    return 1.0 if root <= limit else limit / root


def step_l2(l2, l2_weight, batch_weight):
    """The L2 coefficient of a step whose batch weighs ``batch_weight`` (its rows, or
    the sum of their sample weights): ``l2``, or where ``l2_weight`` > 0
    ``l2 * l2_weight / batch_weight``, a penalty added to the batch's summed loss before
    the mean (scikit-learn's ``alpha``), so that a short last batch, or a batch of little
    sample weight, carries more of it.  A batch of no weight takes ``l2``.
    """
    if l2_weight == 0.0 or batch_weight == l2_weight or not batch_weight > 0.0:
        return l2
    return l2 * (l2_weight / batch_weight)


def lr_factor(code, params, t):
    """Multiplier of the base learning rate at iteration ``t`` (0-based) of schedule
    ``code`` with parameter vector ``params`` (slots above); NaN for an unknown code."""
    if code == CONSTANT:
        return 1.0
    elif code == INVERSE_TIME:
        return 1.0 / (1.0 + params[DECAY] * t)
    elif code == STEP:
        return params[GAMMA] ** (t // int(params[STEP_SIZE]))
    elif code == EXPONENTIAL:
        return params[RATE] ** (t / params[DECAY_STEPS])
    elif code == COSINE:
        total = params[TOTAL_STEPS]
        floor = params[MIN_FACTOR]
        frac = min(t, total) / total
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * frac))
    elif code == PLATEAU:
        return params[SCALE]
    return math.nan


#: Every formula, in the order compile_formulas compiles them.
FORMULAS = (
    "tanh_rational", "sigmoid", "relu", "leaky_relu", "elu", "softplus", "gelu", "silu",
    "relu_grad", "leaky_relu_grad", "elu_grad", "tanh_grad", "sigmoid_grad", "softplus_grad",
    "gelu_grad", "silu_grad", "activate", "derivative",
    "cross_entropy_term", "squared_error", "sigmoid_cross_entropy", "poisson_nll", "inverse_link",
    "softmax_row", "first_argmax",
    "mix64", "step_key", "random_index", "shuffle_key", "dropout_scale",
    "flush", "sgd_step", "adam_scalars", "decoupled_decay", "adam_step", "step_l2", "lr_factor",
    "clip_factor",
)


#: The formulas of ``g(z)`` and ``g'(z)`` (what :func:`activate` and :func:`derivative`
#: call), which a tree may also compile in one float type (:func:`compile_formulas`).
ACTIVATION_FORMULAS = FORMULAS[:FORMULAS.index("derivative") + 1]


def compile_formulas(jit, names=FORMULAS, floats=None):
    """The formulas ``names`` compiled by the decorator ``jit``: a dict name -> compiled
    function.

    Each function is rebuilt over a copy of this module's globals in which the names
    of the formulas are the compiled twins, so ``silu``'s call to ``sigmoid`` becomes a
    call between compiled functions of the same tree.  ``jit`` is applied once per
    formula, at import of the tree (compilation itself stays lazy).

    ``floats`` (a Numba type such as ``numba.float32``): every float literal and float
    constant of the formulas is cast to it, so that arguments of that type are computed
    in it.  A float64 literal makes float32 arithmetic float64: a float32 net's CUDA
    epilogues ran 3 (relu) to 75 (gelu's derivative) float64 instructions an element,
    1/64 of the float32 rate on most GPUs (ptxas, sm_86).
    """
    scope = dict(globals())
    if floats is not None:
        scope["_FLOAT"] = floats
    for name in names:
        f = globals()[name]
        if floats is None:
            twin = types.FunctionType(f.__code__, scope, f.__name__, f.__defaults__,
                                      f.__closure__)
        else:
            twin = _with_typed_floats(f, scope)
        twin.__qualname__, twin.__doc__, twin.__module__ = f.__qualname__, f.__doc__, f.__module__
        scope[name] = jit(twin)
    return {name: scope[name] for name in names}


def _with_typed_floats(f, scope):
    """``f`` rebuilt from its source over ``scope`` with each float literal, float global
    and ``math.nan``/``math.inf``/``math.pi`` wrapped in a call of ``scope["_FLOAT"]``."""
    import ast
    import inspect
    import textwrap

    class Typed(ast.NodeTransformer):
        def _cast(self, node):
            return ast.copy_location(ast.Call(ast.Name("_FLOAT", ast.Load()), [node], []), node)

        def visit_Constant(self, node):
            return self._cast(node) if type(node.value) is float else node

        def visit_Name(self, node):
            value = scope.get(node.id)
            typed = isinstance(node.ctx, ast.Load) and type(value) is float
            return self._cast(node) if typed else node

        def visit_Attribute(self, node):
            if isinstance(node.value, ast.Name) and node.value.id == "math" \
                    and node.attr in ("nan", "inf", "pi"):
                return self._cast(node)
            return self.generic_visit(node)

    tree = ast.fix_missing_locations(Typed().visit(ast.parse(
        textwrap.dedent(inspect.getsource(f)))))
    namespace = {}
    exec(compile(tree, inspect.getsourcefile(f), "exec"), scope, namespace)
    return types.FunctionType(namespace[f.__name__].__code__, scope, f.__name__)


# ------------------------------------------------------------------ backends
#: Optimizer code, float64 hyper-parameters (slots ``LR``, ...), state rows (velocity, or
#: Adam's averages of the gradient and of its square).
OptimizerArgs = namedtuple("OptimizerArgs", "code hyper state")
#: Schedule code and its float64 parameters (slots ``DECAY``, ...).
ScheduleArgs = namedtuple("ScheduleArgs", "code params")
#: What a run of training steps reports: the sum of ``batch loss * batch weight``, the
#: samples and optimizer steps done, the index of the step whose loss or gradient was
#: not finite or whose update would overflow the weights (-1: none; the run stopped
#: there without updating), the learning rate the last update used, and the sum of the
#: batches' sample weights (the samples, unweighted).
EpochResult = namedtuple("EpochResult", "loss_sum samples steps failed_step lr weight_sum")


def pack_targets(T, w, dtype):
    """``T`` with the sample weights ``w`` (ones for ``None``) as one more column: the
    targets as every backend takes them (the CPU loss heads read the weight there)."""
    packed = np.empty((T.shape[0], T.shape[1] + 1), dtype=dtype)
    packed[:, :-1] = T
    packed[:, -1] = 1.0 if w is None else w
    return packed


class Trainer(Protocol):
    """Buffers and arguments of one ``fit``, sized once (``Backend.trainer`` makes it).

    ``steps_per_epoch`` is the number of optimizer steps of an epoch; ``whole_epochs``
    is true where :meth:`run_steps` takes whole epochs only.
    """

    steps_per_epoch: int
    whole_epochs: bool

    def run_steps(self, sampling, seed, first, end):
        """Steps ``[first, end)`` of the epoch drawn with ``seed``, as :meth:`run_epoch`
        runs them: an epoch cut into runs gives the same bits as one run.

        The result's ``samples`` and ``steps`` are the run's; its ``loss_sum`` and
        ``weight_sum`` are the epoch's through this run (steps ``[0, end)``), summed in
        step order, so that they too do not depend on the cuts."""

    def run_epoch(self, sampling, seed):
        """Train one epoch with ``sampling`` (``IN_ORDER``...) drawn from ``seed``.

        The trainer owns the step count: it starts from the optimizer's ``t``, advances
        it by the steps taken, and leaves the optimizer's state where the kernels left
        it.  Returns an :data:`EpochResult`.
        """


class Backend(Protocol):
    """What :class:`fastdnn.MLP` asks of a device; the CPU and CUDA backends implement
    all of it, so the model never asks which one it drives.

    Arrays come in checked: C-contiguous, the net's dtype, finite.  "X's home" is
    NumPy for NumPy input, the device for device arrays (CUDA only).
    """

    device: str
    n_params: int

    def limit_threads(self, n_threads):
        """A context manager: run the block with ``n_threads`` host threads (``None``: as
        set); the thread policy is the backend's own."""

    def check_X(self, X, convert=True):
        """``X`` as this backend takes it: device arrays validated in place (CUDA), anything
        else through :func:`fastdnn.validation.check_X` (``convert=False``: left for
        inference to convert a chunk of rows at a time, where the backend can)."""

    def pack_targets(self, T, w=None):
        """Checked targets ``T`` and sample weights ``w`` (``None``: all 1) as every other
        method takes them (:func:`pack_targets`)."""

    def get_theta(self, out=None):
        """A NumPy copy of the flat parameter vector (into ``out`` when given)."""

    def set_theta(self, theta):
        """Overwrite the parameters from a flat NumPy vector."""

    def theta_finite(self):
        """Whether every parameter is finite."""

    def outputs(self, X, head):
        """``LOGITS``, ``LABELS`` (2-D) or ``PROBABILITIES`` of the rows of ``X``, in X's home."""

    def to_numpy(self, a):
        """``a`` (an array of this backend's) as a NumPy array."""

    def evaluate(self, X, T, want_logits=False):
        """``(weighted mean loss + L2 penalty, logits or None)`` of all rows in one forward
        pass; NumPy logits."""

    def gradient(self, X, T, dropout_key=None):
        """``(weighted mean loss + L2 penalty, flat NumPy gradient)`` over all rows, in one
        batch; with the dropout masks of ``dropout_key`` (``None``: no dropout)."""

    def compile_ahead(self, batch_size, optimizer=None, clip_norm=None):
        """Start compiling, in the background, what a fit with batches of ``batch_size``
        rows, ``optimizer`` and ``clip_norm`` (as ``fit`` takes them) will run (a hint,
        before the fit's arguments are checked; may do nothing)."""

    def trainer(self, X, T, batch_size, optimizer, schedule, clip_norm=None):
        """A :class:`Trainer` for batches of ``batch_size`` rows (at most ``len(X)``),
        an :class:`fastdnn.Optimizer`, ``schedule = (code, params)`` (``params`` read at
        every step, so the host may change them between runs) and a gradient-norm bound."""

    def trainer_group(self, trainers):
        """An object whose ``run_epochs(nets, sampling, seeds)`` trains one epoch of each
        trainer ``trainers[nets[r]]`` with ``seeds[r]`` (together where the device can)
        and returns their :data:`EpochResult` s, each as that trainer's ``run_epoch``."""
