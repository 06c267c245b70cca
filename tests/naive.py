"""Plain-NumPy oracles for fastdnn.

Everything here is written for readability, not speed, and computes in
float64 unless given something else. The conventions are those of
docs/CONTRACT.md (which match PyTorch):

* layer i: ``A_i = g_i(A_{i-1} @ W_i + b_i)``; the output layer is linear;
* W has shape (fan_in, fan_out), b has shape (fan_out,);
* losses are means over samples (and over outputs for mse / bce / poisson);
* optimizers follow torch.optim (SGD with dampening 0, Adam, AdamW).
"""

import math

import numpy as np
from scipy.special import expit, logsumexp, ndtr

# The case table lives in cases.py; HEADS is re-exported for tests written as
# ``naive.HEADS`` (new code: ``from cases import HEADS, HEAD_IDS``).
from cases import HEAD_IDS, HEADS  # noqa: F401

LEAKY_SLOPE = 0.01
ELU_ALPHA = 1.0

# ---------------------------------------------------------------- activations


def identity(Z):
    return Z.copy()


def relu(Z):
    return np.maximum(Z, 0.0)


def leaky_relu(Z):
    return np.where(Z > 0, Z, LEAKY_SLOPE * Z)


def elu(Z):
    return np.where(Z > 0, Z, ELU_ALPHA * np.expm1(np.minimum(Z, 0.0)))


def tanh(Z):
    return np.tanh(Z)


def sigmoid(Z):
    return expit(Z)


def softplus(Z):
    # log(1 + exp(z)) written so that it neither overflows nor loses digits.
    return np.maximum(Z, 0.0) + np.log1p(np.exp(-np.abs(Z)))


def _std_normal_cdf(Z):
    return ndtr(Z)  # 0.5 * (1 + erf(z / sqrt 2)) lost the left tail (0 for Phi(-40))


def _std_normal_pdf(Z):
    return np.exp(-0.5 * Z * Z) / math.sqrt(2.0 * math.pi)


def gelu(Z):
    """Exact GELU: z * Phi(z)."""
    return Z * _std_normal_cdf(Z)


def silu(Z):
    return Z * expit(Z)


# Derivatives g'(z), taken with respect to the pre-activation Z. At the
# kinks (z == 0) they follow torch: relu'(0) = 0, leaky_relu'(0) = slope,
# elu'(0) = alpha * exp(0).


def d_identity(Z):
    return np.ones_like(Z)


def d_relu(Z):
    return (Z > 0).astype(Z.dtype)


def d_leaky_relu(Z):
    return np.where(Z > 0, 1.0, LEAKY_SLOPE).astype(Z.dtype)


def d_elu(Z):
    return np.where(Z > 0, 1.0, ELU_ALPHA * np.exp(np.minimum(Z, 0.0))).astype(Z.dtype)


def d_tanh(Z):
    return 1.0 - np.tanh(Z) ** 2


def d_sigmoid(Z):
    s = expit(Z)
    return s * (1.0 - s)


def d_softplus(Z):
    return expit(Z)


def d_gelu(Z):
    return _std_normal_cdf(Z) + Z * _std_normal_pdf(Z)


def d_silu(Z):
    s = expit(Z)
    return s * (1.0 + Z * (1.0 - s))


ACTIVATIONS = {
    "identity": identity,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "elu": elu,
    "tanh": tanh,
    "sigmoid": sigmoid,
    "softplus": softplus,
    "gelu": gelu,
    "silu": silu,
}

DERIVATIVES = {
    "identity": d_identity,
    "relu": d_relu,
    "leaky_relu": d_leaky_relu,
    "elu": d_elu,
    "tanh": d_tanh,
    "sigmoid": d_sigmoid,
    "softplus": d_softplus,
    "gelu": d_gelu,
    "silu": d_silu,
}

ACTIVATION_NAMES = tuple(ACTIVATIONS)

# ---------------------------------------------------------------- dense layer


def dense_forward(A_prev, W, b):
    """Z = A_prev @ W + b."""
    return A_prev @ W + b


def dense_backward(A_prev, W, delta):
    """Gradients of a dense layer given delta = dLoss/dZ of this layer.

    Returns (dW, db, dA_prev) with dW = A_prev.T @ delta, db = delta.sum(0)
    and dA_prev = delta @ W.T (multiply by g'(Z_prev) to get the previous
    layer's delta).
    """
    dW = A_prev.T @ delta
    db = delta.sum(axis=0)
    dA_prev = delta @ W.T
    return dW, db, dA_prev


# ---------------------------------------------------------------- loss heads


def _as_2d_targets(y, Z):
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = y.reshape(-1, 1)
    assert y.shape == Z.shape, (y.shape, Z.shape)
    return y


def cross_entropy(Z, y):
    """Mean over samples of logsumexp(z) - z[y], and its gradient wrt Z."""
    Z = np.asarray(Z, dtype=np.float64)
    y = np.asarray(y).astype(np.int64)
    n = Z.shape[0]
    rows = np.arange(n)
    lse = logsumexp(Z, axis=1)
    loss = np.mean(lse - Z[rows, y])
    P = np.exp(Z - lse[:, None])  # softmax
    onehot = np.zeros_like(Z)
    onehot[rows, y] = 1.0
    return loss, (P - onehot) / n


def mse(Z, y):
    """Mean over samples and outputs of (z - y)^2, and its gradient wrt Z."""
    Z = np.asarray(Z, dtype=np.float64)
    Y = _as_2d_targets(y, Z)
    diff = Z - Y
    return np.mean(diff**2), 2.0 * diff / diff.size


def binary_cross_entropy(Z, y):
    """Mean of max(z,0) - z*y + log1p(exp(-|z|)) (BCE with logits), and gradient."""
    Z = np.asarray(Z, dtype=np.float64)
    Y = _as_2d_targets(y, Z)
    elementwise = np.maximum(Z, 0.0) - Z * Y + np.log1p(np.exp(-np.abs(Z)))
    return np.mean(elementwise), (expit(Z) - Y) / Z.size


def poisson(Z, y):
    """Mean of exp(z) - y*z (Poisson NLL of counts y with log-means Z, less log(y!)),
    and its gradient (exp(Z) - Y) / size."""
    Z = np.asarray(Z, dtype=np.float64)
    Y = _as_2d_targets(y, Z)
    with np.errstate(over="ignore"):
        # exp correctly rounded: NumPy 1.24's float64 exp (AVX-512) is 1 ulp off at
        # z = -0.001, which exp(z) - 1 magnifies a thousandfold.
        mu = np.exp(Z.astype(np.longdouble)).astype(np.float64)
    return np.mean(mu - Y * Z), (mu - Y) / Z.size


LOSSES = {
    "cross_entropy": cross_entropy,
    "mse": mse,
    "binary_cross_entropy": binary_cross_entropy,
    "poisson": poisson,
}

LOSS_NAMES = tuple(LOSSES)


# ---------------------------------------------------------------- whole net


def _hidden_activations(activations, n_layers):
    if isinstance(activations, str):
        return [activations] * (n_layers - 1)
    assert len(activations) == n_layers - 1
    return list(activations)


def forward(params, activations, X):
    """Forward pass. Returns (Zs, As): pre-activations per layer and the layer
    inputs, with As[0] = X and Zs[-1] the logits."""
    acts = _hidden_activations(activations, len(params))
    A = np.asarray(X, dtype=np.float64)
    As, Zs = [A], []
    for i, (W, b) in enumerate(params):
        Z = dense_forward(A, np.asarray(W, np.float64), np.asarray(b, np.float64))
        Zs.append(Z)
        if i < len(params) - 1:
            A = ACTIVATIONS[acts[i]](Z)
            As.append(A)
    return Zs, As


def logits(params, activations, X):
    return forward(params, activations, X)[0][-1]


def loss(params, activations, loss_name, X, y):
    return LOSSES[loss_name](logits(params, activations, X), y)[0]


def gradients(params, activations, loss_name, X, y):
    """Backprop. Returns (loss, [(dW, db), ...]) of the mean loss."""
    acts = _hidden_activations(activations, len(params))
    Zs, As = forward(params, activations, X)
    value, delta = LOSSES[loss_name](Zs[-1], y)
    grads = [None] * len(params)
    for i in range(len(params) - 1, -1, -1):
        W = np.asarray(params[i][0], dtype=np.float64)
        dW, db, dA_prev = dense_backward(As[i], W, delta)
        grads[i] = (dW, db)
        if i > 0:
            delta = dA_prev * DERIVATIVES[acts[i - 1]](Zs[i - 1])
    return value, grads


# ---------------------------------------------------------------- optimizers
# Each optimizer works on a flat list of parameter arrays (W1, b1, W2, ...)
# and updates them in place, exactly like torch.optim with one param group.


class SGD:
    """torch.optim.SGD with dampening 0: weight decay is added to the gradient,
    the first momentum buffer is the gradient itself."""

    def __init__(self, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        self.lr, self.momentum = lr, momentum
        self.nesterov, self.weight_decay = nesterov, weight_decay
        self.buffers = None

    def step(self, params, grads, lr=None):
        lr = self.lr if lr is None else lr
        if self.buffers is None:
            self.buffers = [None] * len(params)
        for i, (p, g) in enumerate(zip(params, grads)):
            d_p = g + self.weight_decay * p
            if self.momentum != 0.0:
                if self.buffers[i] is None:
                    self.buffers[i] = d_p.copy()
                else:
                    self.buffers[i] = self.momentum * self.buffers[i] + d_p
                if self.nesterov:
                    d_p = d_p + self.momentum * self.buffers[i]
                else:
                    d_p = self.buffers[i]
            p -= lr * d_p


class Adam:
    """torch.optim.Adam (L2 weight decay added to the gradient); with
    decoupled=True it is torch.optim.AdamW: theta -= lr * wd * theta first."""

    def __init__(self, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
        self.lr, self.betas, self.eps = lr, betas, eps
        self.weight_decay, self.decoupled = weight_decay, decoupled
        self.t = 0
        self.m = self.v = None

    def step(self, params, grads, lr=None):
        lr = self.lr if lr is None else lr
        beta1, beta2 = self.betas
        if self.m is None:
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]
        self.t += 1
        bias1 = 1.0 - beta1**self.t
        bias2 = 1.0 - beta2**self.t
        for p, g, m, v in zip(params, grads, self.m, self.v):
            if self.decoupled:
                p *= 1.0 - lr * self.weight_decay
            else:
                g = g + self.weight_decay * p
            m *= beta1
            m += (1.0 - beta1) * g
            v *= beta2
            v += (1.0 - beta2) * g * g
            denom = np.sqrt(v) / math.sqrt(bias2) + self.eps
            p -= (lr / bias1) * m / denom


def AdamW(lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
    return Adam(lr, betas=betas, eps=eps, weight_decay=weight_decay, decoupled=True)


# ---------------------------------------------------------------- schedules
# Multiplicative factor on the base lr at iteration t (0-based count of
# optimizer steps taken so far): lr_t = lr * factor(t).


def constant_factor(t):
    return 1.0


def inverse_time_factor(t, decay):
    return 1.0 / (1.0 + decay * t)


def step_factor(t, step_size, gamma):
    return gamma ** (t // step_size)


def exponential_factor(t, rate, decay_steps):
    return rate ** (t / decay_steps)


def cosine_factor(t, total_steps, min_factor=0.0):
    progress = min(t, total_steps) / total_steps
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


# ---------------------------------------------------------------- training loop


def flatten(params):
    return [np.array(a, dtype=np.float64) for Wb in params for a in Wb]


def unflatten(flat):
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


def train(params, activations, loss_name, X, y, epochs, batch_size, optimizer, factor=constant_factor):
    """Mini-batch training in the given sample order (shuffle=False): batches
    X[0:bs], X[bs:2bs], ... each epoch. Returns the new [(W, b), ...]."""
    flat = flatten(params)
    n = X.shape[0]
    t = 0
    for _ in range(epochs):
        for start in range(0, n, batch_size):
            Xb, yb = X[start : start + batch_size], y[start : start + batch_size]
            _, grads = gradients(unflatten(flat), activations, loss_name, Xb, yb)
            optimizer.step(flat, [g for dWb in grads for g in dWb], lr=optimizer.lr * factor(t))
            t += 1
    return unflatten(flat)
