"""CUDA twins of :mod:`fastdnn.kernels.cpu.updates`: in-place SGD (momentum, Nesterov,
weight decay) and Adam/AdamW over the flat parameter vector, one thread per parameter
(grid-stride), with the update rules of :mod:`fastdnn.kernels.spec`, and the overflow
guard that runs before each of them.

``status[0]`` is -1 while the run is sound, else the first step that failed.  Before
every update, :func:`check_update` reads (and only reads) what the update would write:
a non-finite step loss (``acc[LAST]``, penalty included), or a new parameter or state
entry that would be NaN or beyond half the dtype's largest value, records the step in
``status``; a non-finite gradient fails there too, since it makes the update NaN or
infinite.  Each update kernel then reads ``status[0]``: once a step failed, it and
every later update of the epoch leave the parameters and the optimizer state alone,
as the CPU loop does by stopping there.  An update that runs also books its step's
loss and weight (:func:`.losses.book_step`), so the training sums hold exactly the
steps that updated, as on the CPU.

The guard is the CPU's rule (``cpu.updates.step_is_safe`` refuses exactly the updates
whose exact check fails) without its bounds: the CPU keeps cheap bounds and checks
exactly only near the limit, because a full pass per step cost 13% of a CPU step; on
the GPU the exact check is one more launch that reads ``theta``, ``grad`` and the state
(no writes), about as cheap as the bounds would be (they need a reduction over the
gradient, two launches), and it keeps the device free of per-step state.  Measured on
an H200 (``benchmarks/gpu_check.sh``, docs/gpu.md): nothing measurable on a
1024-4096-4096-1024 Adam epoch of 256-row steps (153 ms with it, 156 ms without); on a
launch-bound 32-64-64-10 net it is one launch in about 14, and one noisy sample gave
318 against 235 ms.

The learning rate of the step (base rate times the schedule's factor) comes from the
host, which knows the step count without reading anything back from the GPU.  The
guard's threads that fail all write the same value (the step), and a thread that
sees it early only stops early, so the race between them is benign: no atomics, the
same inputs give the same status.
"""
import math

import numpy as np
from numba import cuda

from ..spec import (ADAM, BETA1, BETA2, DECOUPLED, EPS, MOMENTUM, NESTEROV, SGD,
                    WEIGHT_DECAY, adam_scalars)
from . import formulas as F
from . import dispatch, launch
from .losses import LAST, book_step


#: The threshold of ``spec.flush`` here: none.  GPUs compute on subnormals at full speed, so
#: the CPU's reason to flush them does not apply (the two differ only below ``tiny``).
NO_FLUSH = 0.0


@cuda.jit
def sgd_check(theta, grad, state, status, acc, step, limit, lr, momentum, nesterov,
              weight_decay, first):
    """``status[0] = step`` if the step's loss is not finite or :func:`sgd_update` would
    write a value beyond ``limit`` (or NaN); reads only."""
    if status[0] >= 0:
        return
    start = cuda.grid(1)
    if start == 0 and not math.isfinite(acc[LAST]):
        status[0] = step
    for i in range(start, theta.shape[0], cuda.gridsize(1)):
        v = state[0, i] if momentum != 0.0 else momentum  # 0 in the dtype
        new, v = F.sgd_step(theta[i], grad[i], v, lr, momentum, nesterov, weight_decay, first,
                            NO_FLUSH)
        if not (abs(new) <= limit and abs(v) <= limit):
            status[0] = step
            return


@cuda.jit
def adam_check(theta, grad, state, status, acc, step, limit, lr, step_size, inv_sqrt_bias2,
               beta1, beta2, one_minus_beta1, one_minus_beta2, eps, weight_decay, decoupled):
    """``status[0] = step`` if the step's loss is not finite or :func:`adam_update` would
    write a value beyond ``limit`` (or NaN); reads only."""
    if status[0] >= 0:
        return
    start = cuda.grid(1)
    if start == 0 and not math.isfinite(acc[LAST]):
        status[0] = step
    for i in range(start, theta.shape[0], cuda.gridsize(1)):
        old = F.decoupled_decay(theta[i], lr, weight_decay) if decoupled else theta[i]
        new, m, v = F.adam_step(old, grad[i], state[0, i], state[1, i], step_size, inv_sqrt_bias2,
                                beta1, beta2, one_minus_beta1, one_minus_beta2, eps,
                                weight_decay, decoupled, NO_FLUSH)
        if not (abs(new) <= limit and abs(m) <= limit and abs(v) <= limit):
            status[0] = step
            return


@cuda.jit
def sgd_update(theta, grad, state, status, acc, lr, momentum, nesterov, weight_decay, first):
    """``theta -= lr * d`` with ``d`` the (Nesterov-)momentum of ``grad + wd * theta``."""
    if status[0] >= 0:
        return
    start = cuda.grid(1)
    if start == 0:
        book_step(acc)
    for i in range(start, theta.shape[0], cuda.gridsize(1)):
        v = state[0, i] if momentum != 0.0 else momentum  # 0 in the dtype
        theta[i], v = F.sgd_step(theta[i], grad[i], v, lr, momentum, nesterov, weight_decay,
                                 first, NO_FLUSH)
        if momentum != 0.0:
            state[0, i] = v


@cuda.jit
def adam_update(theta, grad, state, status, acc, lr, step_size, inv_sqrt_bias2, beta1, beta2,
                one_minus_beta1, one_minus_beta2, eps, weight_decay, decoupled):
    """One Adam step (AdamW when ``decoupled``); ``state`` rows: the averages of the
    gradient and of its square."""
    if status[0] >= 0:
        return
    start = cuda.grid(1)
    if start == 0:
        book_step(acc)
    for i in range(start, theta.shape[0], cuda.gridsize(1)):
        if decoupled:
            theta[i] = F.decoupled_decay(theta[i], lr, weight_decay)
        theta[i], state[0, i], state[1, i] = F.adam_step(
            theta[i], grad[i], state[0, i], state[1, i], step_size, inv_sqrt_bias2, beta1, beta2,
            one_minus_beta1, one_minus_beta2, eps, weight_decay, decoupled, NO_FLUSH)


def _kernels(code, hyper, lr, t, dtype):
    """``(check, update, scalars)``: the two kernels of optimizer ``code`` and the scalars
    both take after their arrays (in the parameters' ``dtype``, as on the CPU: a float32
    net's update runs in float32)."""
    c = np.dtype(dtype).type
    if code == SGD:
        return sgd_check, sgd_update, (c(lr), c(hyper[MOMENTUM]), hyper[NESTEROV] != 0.0,
                                       c(hyper[WEIGHT_DECAY]), t == 0)
    if code == ADAM:
        beta1, beta2 = hyper[BETA1], hyper[BETA2]
        step_size, inv_sqrt_bias2 = adam_scalars(lr, beta1, beta2, t + 1)
        return adam_check, adam_update, (
            c(lr), c(step_size), c(inv_sqrt_bias2), c(beta1), c(beta2), c(1.0 - beta1),
            c(1.0 - beta2), c(hyper[EPS]), c(hyper[WEIGHT_DECAY]), hyper[DECOUPLED] != 0.0)
    raise ValueError(f"unknown optimizer code {code!r}")


def check_update(code, hyper, lr, theta, grad, state, status, acc, t):
    """The overflow guard of step ``t`` (see the module docstring): ``status[0] = t`` if
    its loss is not finite or its update would not keep every value finite."""
    check, _, scalars = _kernels(code, hyper, lr, t, theta.dtype)
    # Half the largest finite value, as the CPU's guard: the margin costs nothing.
    limit = float(np.finfo(theta.dtype).max) / 2
    blocks, threads = launch.launch_config(theta.shape[0])
    dispatch.call(check, blocks, threads, theta, grad, state, status, acc, t, limit, *scalars)


def optimizer_step(code, hyper, lr, theta, grad, state, status, acc, t):
    """Apply optimizer ``code`` at learning rate ``lr`` and book the step into ``acc``,
    unless ``status`` says a step failed; ``t`` = steps taken before this one."""
    _, update, scalars = _kernels(code, hyper, lr, t, theta.dtype)
    blocks, threads = launch.launch_config(theta.shape[0])
    dispatch.call(update, blocks, threads, theta, grad, state, status, acc, *scalars)
