"""CUDA twins of the update kernels of :mod:`fastdnn.optim`: in-place SGD (momentum,
Nesterov, weight decay) and Adam/AdamW over the flat parameter vector, one thread per
parameter (grid-stride), with the CPU kernels' arithmetic line for line.

Each update first reads ``status[0]`` (see :mod:`fastdnn.gpu_losses`): once a step's
loss was not finite, this and all later updates of the epoch leave the parameters and
the optimizer state alone, as the CPU loop does by stopping there.  The learning rate
of the step (base rate times the schedule's factor) comes from the host, which knows
the step count without reading anything back from the GPU.
"""
import math

from numba import cuda

from . import gpu_launch
from .optim import BETA1, BETA2, DECOUPLED, EPS, MOMENTUM, NESTEROV, SGD_CODE, WEIGHT_DECAY


@cuda.jit
def sgd_update(theta, grad, state, status, lr, momentum, nesterov, weight_decay, first):
    """``theta -= lr * d`` with ``d`` the (Nesterov-)momentum of ``grad + wd * theta``."""
    if status[0] >= 0:
        return
    for i in range(cuda.grid(1), theta.shape[0], cuda.gridsize(1)):
        g = grad[i] + weight_decay * theta[i]
        if momentum != 0.0:
            v = g if first else momentum * state[0, i] + g
            state[0, i] = v
            g = g + momentum * v if nesterov else v
        theta[i] -= lr * g


@cuda.jit
def adam_update(theta, grad, state, status, lr, step, sqrt_bias2, beta1, beta2, eps,
                weight_decay, decoupled):
    """One Adam step (AdamW when ``decoupled``); ``step = lr / (1 - beta1**t)``."""
    if status[0] >= 0:
        return
    for i in range(cuda.grid(1), theta.shape[0], cuda.gridsize(1)):
        g = grad[i]
        if decoupled:
            theta[i] *= 1.0 - lr * weight_decay
        else:
            g = g + weight_decay * theta[i]
        mi = beta1 * state[0, i] + (1.0 - beta1) * g
        vi = beta2 * state[1, i] + (1.0 - beta2) * g * g
        state[0, i] = mi
        state[1, i] = vi
        theta[i] -= step * mi / (math.sqrt(vi) / sqrt_bias2 + eps)


def optimizer_step(code, hyper, lr, theta, grad, state, status, t):
    """Apply optimizer ``code`` at learning rate ``lr``; ``t`` = steps taken before this one."""
    blocks, threads = gpu_launch.launch_config(theta.shape[0])
    if code == SGD_CODE:
        sgd_update[blocks, threads](theta, grad, state, status, lr, hyper[MOMENTUM],
                                    hyper[NESTEROV] != 0.0, hyper[WEIGHT_DECAY], t == 0)
    else:
        n = t + 1
        beta1, beta2 = hyper[BETA1], hyper[BETA2]
        adam_update[blocks, threads](theta, grad, state, status, lr, lr / (1.0 - beta1**n),
                                     math.sqrt(1.0 - beta2**n), beta1, beta2, hyper[EPS],
                                     hyper[WEIGHT_DECAY], hyper[DECOUPLED] != 0.0)
