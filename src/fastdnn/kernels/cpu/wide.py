"""The per-step passes over all parameters of a big net, in parallel chunks.

A training step reads the whole gradient twice outside the products: the overflow
guard's scan (:func:`.checks.max_abs`) and the optimizer's update.  Serial, they were
8-9% of a step's wall time on 784-1024-1024-10 (batch 256) and 1024-4096-4096-1024
(batch 512) while the second core waited (``perf``, Intel Xeon, 2 cores).  Here each
runs over fixed chunks of :data:`CHUNK` parameters in a ``prange``: the update is
element-wise and the scan's bound is a maximum (exact in any order), so the results
are the serial functions' bits for any thread count.

Only the wide epoch kernels call these (:func:`.train.train_steps_wide`, and
:func:`.distributed.distributed_steps_wide` over MPI), for nets of at least
``config.WIDE_UPDATE_PARAMS`` parameters: a parallel region costs about 1 s of a cold
compile, which the small nets' kernels are spared.  They call them through slots
(:mod:`.separate`), so that a forked child can run their serial twins (:mod:`.forks`).
"""
from numba import prange, types

from ... import config
from .checks import max_abs
from .scalars import min2
from .separate import separate
from .updates import adam_update, apply_optimizer, sgd_update
from .pipeline import njit

#: Parameters per chunk (256 KiB of float32): wide enough that a chunk's loop dwarfs
#: handing it to a thread, narrow enough for 2-8 threads to share a 1-2M-parameter net.
CHUNK = 1 << 16


@njit(cache=config.CACHE, inline="always")
def _chunk(n, c):
    """Bounds ``[lo, hi)`` of chunk ``c`` of ``n`` parameters."""
    lo = c * CHUNK
    return lo, min2(n, lo + CHUNK)


@separate(returns=types.float64)
@njit(cache=config.CACHE, parallel=True)
def max_abs_wide(a):
    """:func:`.checks.max_abs` of the 1-D ``a``, chunk by chunk in parallel: the same
    value (the bound of the largest chunk bound is the bound of the largest element)."""
    n = a.shape[0]
    top = 0.0
    # A max reduction: exact in any order, so the same bound for any thread count.
    for c in prange((n + CHUNK - 1) // CHUNK):
        lo, hi = _chunk(n, c)
        top = max(top, max_abs(a[lo:hi]))  # builtin: the parfor reduction it recognises
    return top


@separate(returns=types.none)
@njit(cache=config.CACHE, parallel=True)
def _sgd_update_wide(theta, grad, velocity, lr, momentum, nesterov, weight_decay, first):
    n = theta.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        lo, hi = _chunk(n, c)
        # velocity is empty without momentum; its (empty) slice is never read.
        sgd_update(theta[lo:hi], grad[lo:hi], velocity[lo:hi], lr, momentum, nesterov,
                   weight_decay, first)


@separate(returns=types.none)
@njit(cache=config.CACHE, parallel=True)
def _adam_update_wide(theta, grad, avg_grad, avg_sq, t, lr, beta1, beta2, eps, weight_decay,
                      decoupled):
    n = theta.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        lo, hi = _chunk(n, c)
        adam_update(theta[lo:hi], grad[lo:hi], avg_grad[lo:hi], avg_sq[lo:hi], t, lr, beta1,
                    beta2, eps, weight_decay, decoupled)


@njit(cache=config.CACHE, inline="always")
def optimizer_step_wide(code, hyper, lr, theta, grad, state, t):
    """:func:`.updates.optimizer_step` in parallel chunks: the same bits."""
    apply_optimizer(code, hyper, lr, theta, grad, state, t, _sgd_update_wide, _adam_update_wide)
