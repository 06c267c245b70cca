"""Optimizer updates: in-place loops over the flat parameter vector ``theta`` (one loop
for the whole net), with the update rules of :mod:`fastdnn.kernels.spec`.

``optimizer_step`` is inlined into the epoch loop (the dispatch is per step), but the two
update loops stay separate functions: inlined, their loop over the parameters ran
~40 ns per element inside the epoch loop (a 25M-parameter SGD step took 0.9 s instead
of 8 ms; measured on 1024-4096-4096-1024), where called they vectorise.
"""
from numba import njit

from ... import config
from ..spec import (ADAM, BETA1, BETA2, DECOUPLED, EPS, MOMENTUM, NESTEROV, SGD,
                    WEIGHT_DECAY)
from . import formulas as F


@njit(cache=config.CACHE)
def sgd_update(theta, grad, velocity, lr, momentum, nesterov, weight_decay, first):
    """``theta -= lr * d`` with ``d`` the (Nesterov-)momentum of ``grad + wd * theta``.

    ``velocity`` is empty for plain SGD (``momentum == 0``), which keeps none.
    """
    for i in range(theta.shape[0]):
        v = velocity[i] if momentum != 0.0 else 0.0
        theta[i], v = F.sgd_step(theta[i], grad[i], v, lr, momentum, nesterov, weight_decay,
                                 first)
        if momentum != 0.0:
            velocity[i] = v


@njit(cache=config.CACHE)
def adam_update(theta, grad, avg_grad, avg_sq, t, lr, beta1, beta2, eps, weight_decay,
                decoupled):
    """One Adam step (``t`` counts from 1); AdamW when ``decoupled``."""
    step_size, sqrt_bias2 = F.adam_scalars(lr, beta1, beta2, t)
    for i in range(theta.shape[0]):
        if decoupled:
            theta[i] = F.decoupled_decay(theta[i], lr, weight_decay)
        theta[i], avg_grad[i], avg_sq[i] = F.adam_step(
            theta[i], grad[i], avg_grad[i], avg_sq[i], step_size, sqrt_bias2, beta1, beta2,
            eps, weight_decay, decoupled)


@njit(cache=config.CACHE, inline="always")
def optimizer_step(code, hyper, lr, theta, grad, state, t):
    """Apply optimizer ``code`` at learning rate ``lr``; ``t`` = steps taken before this one."""
    if code == SGD:
        sgd_update(theta, grad, state[0], lr, hyper[MOMENTUM], hyper[NESTEROV] != 0.0,
                   hyper[WEIGHT_DECAY], t == 0)
    elif code == ADAM:
        adam_update(theta, grad, state[0], state[1], t + 1, lr, hyper[BETA1], hyper[BETA2],
                    hyper[EPS], hyper[WEIGHT_DECAY], hyper[DECOUPLED] != 0.0)
    else:
        raise ValueError("unknown optimizer code")
