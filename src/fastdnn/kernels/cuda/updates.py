"""CUDA twins of :mod:`fastdnn.kernels.cpu.updates`: in-place SGD (momentum, Nesterov,
weight decay) and Adam/AdamW over the flat parameter vector, one thread per parameter
(grid-stride), with the update rules of :mod:`fastdnn.kernels.spec`.

Each update first reads ``status[0]`` (see :mod:`.losses`): once a step's loss was not
finite, this and all later updates of the epoch leave the parameters and the optimizer
state alone, as the CPU loop does by stopping there.  The learning rate of the step
(base rate times the schedule's factor) comes from the host, which knows the step
count without reading anything back from the GPU.
"""
from numba import cuda

from ..spec import (ADAM, BETA1, BETA2, DECOUPLED, EPS, MOMENTUM, NESTEROV, SGD,
                    WEIGHT_DECAY, adam_scalars)
from . import formulas as F
from . import launch


@cuda.jit
def sgd_update(theta, grad, state, status, lr, momentum, nesterov, weight_decay, first):
    """``theta -= lr * d`` with ``d`` the (Nesterov-)momentum of ``grad + wd * theta``."""
    if status[0] >= 0:
        return
    for i in range(cuda.grid(1), theta.shape[0], cuda.gridsize(1)):
        v = state[0, i] if momentum != 0.0 else 0.0
        theta[i], v = F.sgd_step(theta[i], grad[i], v, lr, momentum, nesterov, weight_decay,
                                 first)
        if momentum != 0.0:
            state[0, i] = v


@cuda.jit
def adam_update(theta, grad, state, status, lr, step_size, sqrt_bias2, beta1, beta2, eps,
                weight_decay, decoupled):
    """One Adam step (AdamW when ``decoupled``); ``state`` rows: the averages of the
    gradient and of its square."""
    if status[0] >= 0:
        return
    for i in range(cuda.grid(1), theta.shape[0], cuda.gridsize(1)):
        if decoupled:
            theta[i] = F.decoupled_decay(theta[i], lr, weight_decay)
        theta[i], state[0, i], state[1, i] = F.adam_step(
            theta[i], grad[i], state[0, i], state[1, i], step_size, sqrt_bias2, beta1, beta2,
            eps, weight_decay, decoupled)


def optimizer_step(code, hyper, lr, theta, grad, state, status, t):
    """Apply optimizer ``code`` at learning rate ``lr``; ``t`` = steps taken before this one."""
    blocks, threads = launch.launch_config(theta.shape[0])
    if code == SGD:
        sgd_update[blocks, threads](theta, grad, state, status, lr, hyper[MOMENTUM],
                                    hyper[NESTEROV] != 0.0, hyper[WEIGHT_DECAY], t == 0)
    elif code == ADAM:
        step_size, sqrt_bias2 = adam_scalars(lr, hyper[BETA1], hyper[BETA2], t + 1)
        adam_update[blocks, threads](theta, grad, state, status, lr, step_size, sqrt_bias2,
                                     hyper[BETA1], hyper[BETA2], hyper[EPS],
                                     hyper[WEIGHT_DECAY], hyper[DECOUPLED] != 0.0)
    else:
        raise ValueError(f"unknown optimizer code {code!r}")
