"""Optimizer updates: in-place loops over the flat parameter vector ``theta`` (one loop
for the whole net), with the update rules of :mod:`fastdnn.kernels.spec`.

``optimizer_step`` is inlined into the epoch loop (the dispatch is per step), but the two
update loops stay separate functions: inlined, their loop over the parameters ran
~40 ns per element inside the epoch loop (a 25M-parameter SGD step took 0.9 s instead
of 8 ms; measured on 1024-4096-4096-1024), where called they vectorise.
"""
from numba import types

from ... import config
from ..spec import (ADAM, BETA1, BETA2, CONSTANT, DECOUPLED, EPS, MOMENTUM, NESTEROV, SGD,
                    WEIGHT_DECAY)
from . import formulas as F
from .checks import max_abs, max_abs_host
from .separate import separate
from .pipeline import njit


@njit(cache=config.CACHE, inline="always")
def _tiny(theta):
    """The smallest normal number of ``theta``'s dtype (the state has the same): running
    averages below it are stored as 0 (see ``spec.flush``)."""
    return 1.1754943508222875e-38 if theta.itemsize == 4 else 2.2250738585072014e-308


@njit(cache=config.CACHE, inline="always")
def _sgd_scalars(theta, lr, momentum, weight_decay):
    """The scalars of ``spec.sgd_step`` in ``theta``'s dtype: a float32 net's update runs
    in float32, as PyTorch's and JAX's (in float64 it converted every element there and
    back, at half the vector width: 28% of a batch-1 step of a 64-128-128-10 net)."""
    c = theta.dtype.type
    return c(lr), c(momentum), c(weight_decay), c(_tiny(theta))


@njit(cache=config.CACHE)
def sgd_update(theta, grad, velocity, lr, momentum, nesterov, weight_decay, first):
    """``theta -= lr * d`` with ``d`` the (Nesterov-)momentum of ``grad + wd * theta``.

    ``velocity`` is empty for plain SGD (``momentum == 0``), which keeps none.  One loop
    for every case (see :func:`sgd_rows` for one per case): once per step of a batch,
    where its run-time tests cost little, and 0.56 s less of every kernel's cold compile.
    """
    lr_, mu, wd, tiny = _sgd_scalars(theta, lr, momentum, weight_decay)
    _sgd_loop(theta, grad, theta.dtype.type(1.0), velocity, lr_, mu, nesterov, wd, first, tiny,
              momentum != 0.0)


@njit(cache=config.CACHE, inline="always")
def sgd_rows(theta, grad, scale, velocity, lr, mu, momentum, nesterov, wd, first, tiny):
    """``spec.sgd_step`` of each ``theta[i]`` with gradient ``scale * grad[i]`` (``scale``
    1 for a plain gradient: ``1 * x`` is ``x``, signed zeros too); ``momentum``: whether
    ``velocity`` is kept.  Scalars in ``theta``'s dtype (:func:`_sgd_scalars`).

    One loop per case, each with the flags as constants so the formula's tests fold:
    with the flags as run-time values LLVM kept their tests inside the vectorised loop.
    Inlined into online SGD's fused update (``train._sgd_rank_one``), row by row: a
    64-128-128-10 momentum step 11.0 -> 9.3-9.7 us (Intel Xeon, float32 tanh, medians of
    4-5 alternating processes).
    """
    if not momentum:
        # v is 0 in the dtype (a float64 literal 0.0 would make the arithmetic float64).
        zero = theta.dtype.type(0.0)
        _sgd_loop(theta, grad, scale, velocity, lr, zero, False, wd, False, tiny, False)
    elif not first and mu != 0.0:  # the formula's own test, so LLVM folds it in the loop
        if nesterov:
            _sgd_loop(theta, grad, scale, velocity, lr, mu, True, wd, False, tiny, True)
        else:
            _sgd_loop(theta, grad, scale, velocity, lr, mu, False, wd, False, tiny, True)
    else:  # the step that starts the velocity (once a fit), or mu below the dtype's range
        _sgd_loop(theta, grad, scale, velocity, lr, mu, nesterov, wd, first, tiny, True)


@njit(cache=config.CACHE, inline="always")
def _sgd_loop(theta, grad, scale, velocity, lr, mu, nesterov, wd, first, tiny, keep):
    for i in range(theta.shape[0]):
        v = velocity[i] if keep else mu
        theta[i], v = F.sgd_step(theta[i], scale * grad[i], v, lr, mu, nesterov, wd, first,
                                 tiny)
        if keep:
            velocity[i] = v


@njit(cache=config.CACHE, inline="always")
def _adam_scalars(theta, lr, beta1, beta2, eps, weight_decay, t):
    """The scalars of ``spec.adam_step`` for step ``t`` (from 1), in ``theta``'s dtype: a
    float32 net's update then runs in float32, as PyTorch's (3.3x faster than in float64:
    the square root and the division are its cost)."""
    step_size, inv_sqrt_bias2 = F.adam_scalars(lr, beta1, beta2, t)
    c = theta.dtype.type
    return (c(lr), c(step_size), c(inv_sqrt_bias2), c(beta1), c(beta2), c(1.0 - beta1),
            c(1.0 - beta2), c(eps), c(weight_decay), c(_tiny(theta)))


@separate(returns=types.none)
@njit(cache=config.CACHE, error_model="numpy")
def adam_update(theta, grad, avg_grad, avg_sq, t, lr, beta1, beta2, eps, weight_decay,
                decoupled):
    """One Adam step (``t`` counts from 1); AdamW when ``decoupled``."""
    lr_, step_size, inv_c2, b1, b2, c1, c2, eps_, wd, tiny = _adam_scalars(
        theta, lr, beta1, beta2, eps, weight_decay, t)
    for i in range(theta.shape[0]):
        if decoupled:
            theta[i] = F.decoupled_decay(theta[i], lr_, wd)
        theta[i], avg_grad[i], avg_sq[i] = F.adam_step(
            theta[i], grad[i], avg_grad[i], avg_sq[i], step_size, inv_c2, b1, b2, c1, c2, eps_,
            wd, decoupled, tiny)


@njit(cache=config.CACHE, error_model="numpy")
def adam_update_into(theta, grad, avg_grad, avg_sq, t, lr, beta1, beta2, eps, weight_decay,
                     decoupled, theta_out, avg_grad_out, avg_sq_out):
    """:func:`adam_update` out of place: the new values go to the ``_out`` arrays (none of
    them the input arrays), the inputs stay as they were; the same bits."""
    lr_, step_size, inv_c2, b1, b2, c1, c2, eps_, wd, tiny = _adam_scalars(
        theta, lr, beta1, beta2, eps, weight_decay, t)
    for i in range(theta.shape[0]):
        old = F.decoupled_decay(theta[i], lr_, wd) if decoupled else theta[i]
        theta_out[i], avg_grad_out[i], avg_sq_out[i] = F.adam_step(
            old, grad[i], avg_grad[i], avg_sq[i], step_size, inv_c2, b1, b2, c1, c2, eps_, wd,
            decoupled, tiny)


@njit(cache=config.CACHE, inline="always")
def optimizer_step(code, hyper, lr, theta, grad, state, t):
    """Apply optimizer ``code`` at learning rate ``lr``; ``t`` = steps taken before this one."""
    apply_optimizer(code, hyper, lr, theta, grad, state, t, sgd_update, adam_update)


@njit(cache=config.CACHE, inline="always")
def apply_optimizer(code, hyper, lr, theta, grad, state, t, sgd, adam):
    """:func:`optimizer_step` through the update functions ``sgd`` and ``adam``, which take
    :func:`sgd_update`'s and :func:`adam_update`'s arguments (the parallel ones of
    :mod:`.wide` too)."""
    if code == SGD:
        sgd(theta, grad, state[0], lr, hyper[MOMENTUM], hyper[NESTEROV] != 0.0,
            hyper[WEIGHT_DECAY], t == 0)
    elif code == ADAM:
        adam(theta, grad, state[0], state[1], t + 1, lr, hyper[BETA1], hyper[BETA2],
             hyper[EPS], hyper[WEIGHT_DECAY], hyper[DECOUPLED] != 0.0)
    else:
        raise ValueError("unknown optimizer code")


# The overflow guard.  An update must never write inf into the weights (a large net
# keeps no copy to restore), yet a full read-only pass per step to check it cost 13%
# of a 1024-4096-4096-1024 step.  Instead each step updates cheap upper bounds on
# |theta| and on the state from the gradient's bound (one vectorised scan, see
# checks.max_abs); only when a bound comes near the dtype's largest value does the step
# check its update exactly first.  Slots of the float64 ``guard``:
LIMIT, THETA_BOUND, STATE1_BOUND, STATE2_BOUND = range(4)
GUARD_SLOTS = 4
#: What :func:`step_is_safe` says.
UNSAFE, SAFE, SAFE_REFRESH = range(3)


@separate(returns=types.none)
@njit(cache=config.CACHE)
def refresh_bounds(theta, state, guard):
    """Fresh bounds (within a factor 2, :func:`.checks.max_abs`) of ``theta`` and of each
    state row."""
    guard[THETA_BOUND] = max_abs(theta)
    guard[STATE1_BOUND] = max_abs(state[0])
    guard[STATE2_BOUND] = max_abs(state[1]) if state.shape[0] > 1 else 0.0


def refresh_bounds_host(theta, state, guard):
    """:func:`refresh_bounds` by NumPy (:func:`.checks.max_abs_host`): the same values,
    for a fit's first bounds, without compiling it."""
    guard[THETA_BOUND] = max_abs_host(theta)
    guard[STATE1_BOUND] = max_abs_host(state[0])
    guard[STATE2_BOUND] = max_abs_host(state[1]) if state.shape[0] > 1 else 0.0


@separate(returns=types.boolean)
@njit(cache=config.CACHE, error_model="numpy")
def update_is_finite(code, hyper, lr, theta, grad, state, t, limit):
    """Whether the update would leave every parameter and state entry within ``limit``
    (reads only; the same formulas as the update)."""
    if code == SGD:
        momentum = hyper[MOMENTUM]
        lr_, mu, wd, tiny = _sgd_scalars(theta, lr, momentum, hyper[WEIGHT_DECAY])
        for i in range(theta.shape[0]):
            v = state[0][i] if momentum != 0.0 else mu
            new, v = F.sgd_step(theta[i], grad[i], v, lr_, mu, hyper[NESTEROV] != 0.0, wd, t == 0,
                                tiny)
            if not (abs(new) <= limit and abs(v) <= limit):
                return False
        return True
    decoupled = hyper[DECOUPLED] != 0.0
    lr_, step_size, inv_c2, b1, b2, c1, c2, eps_, wd, tiny = _adam_scalars(
        theta, lr, hyper[BETA1], hyper[BETA2], hyper[EPS], hyper[WEIGHT_DECAY], t + 1)
    for i in range(theta.shape[0]):
        old = F.decoupled_decay(theta[i], lr_, wd) if decoupled else theta[i]
        new, m, v = F.adam_step(old, grad[i], state[0][i], state[1][i], step_size, inv_c2, b1,
                                b2, c1, c2, eps_, wd, decoupled, tiny)
        if not (abs(new) <= limit and abs(m) <= limit and abs(v) <= limit):
            return False
    return True


@njit(cache=config.CACHE, inline="always")
def step_is_safe(code, hyper, lr, theta, grad, state, t, g_max, guard):
    """Whether the update of step ``t`` keeps the weights and state finite: ``SAFE``
    (the bounds in ``guard``, advanced with ``g_max`` >= |grad|, rule out an overflow),
    ``SAFE_REFRESH`` (checked exactly; call :func:`refresh_bounds` after the update) or
    ``UNSAFE`` (checked exactly: do not update)."""
    if bounds_are_safe(code, hyper, lr, t, g_max, guard):
        return SAFE
    return exact_safety(code, hyper, lr, theta, grad, state, t, guard)


@njit(cache=config.CACHE, inline="always")
def exact_safety(code, hyper, lr, theta, grad, state, t, guard):
    """``SAFE_REFRESH`` or ``UNSAFE``: the update of step ``t`` checked element by element
    (reads ``state``, which must be up to date)."""
    if not update_is_finite(code, hyper, lr, theta, grad, state, t, guard[LIMIT]):
        return UNSAFE
    return SAFE_REFRESH


@njit(cache=config.CACHE, inline="always")
def lr_factor(code, params, t):
    """``spec.lr_factor``: the constant schedule's 1 inline, the others a call
    (:func:`_scheduled_factor`).  Inlined into every epoch kernel, the five formulas were
    a tenth of their Numba IR (and so of their compile), where a call costs a few ns of a
    step, beside the ``pow`` or ``cos`` of most of them."""
    if code == CONSTANT:
        return 1.0
    return _scheduled_factor(code, params, t)


@separate(returns=types.float64)
@njit(cache=config.CACHE)
def _scheduled_factor(code, params, t):
    """``spec.lr_factor`` of a schedule other than the constant one."""
    return F.lr_factor(code, params, t)


@njit(cache=config.CACHE, inline="always")
def bounds_are_safe(code, hyper, lr, t, g_max, guard):
    """Whether the bounds of ``guard``, advanced by the update of step ``t`` with
    ``g_max`` >= |grad|, rule out an overflow; if so they are stored advanced."""
    if code != SGD:
        return _adam_bounds_are_safe(hyper, lr, t, g_max, guard)
    theta_b = guard[THETA_BOUND]
    momentum = hyper[MOMENTUM]
    d = g_max + hyper[WEIGHT_DECAY] * theta_b
    s1 = 0.0
    step = d
    if momentum != 0.0:
        s1 = d if t == 0 else momentum * guard[STATE1_BOUND] + d
        step = d + momentum * s1 if hyper[NESTEROV] != 0.0 else s1
    return _store_bounds(guard, theta_b + lr * step, s1, 0.0)


# Adam's half of bounds_are_safe, a call: inlined into every epoch kernel, it was a sixth
# of their Numba IR (and so of their compile), where a call costs a few ns of a step whose
# update is Adam's.
@separate(returns=types.boolean)
@njit(cache=config.CACHE, error_model="numpy")
def _adam_bounds_are_safe(hyper, lr, t, g_max, guard):
    """:func:`bounds_are_safe` for Adam."""
    theta_b = guard[THETA_BOUND]
    wd = hyper[WEIGHT_DECAY]
    decoupled = hyper[DECOUPLED] != 0.0
    g = g_max if decoupled else g_max + wd * theta_b
    s1 = hyper[BETA1] * guard[STATE1_BOUND] + (1.0 - hyper[BETA1]) * g
    s2 = hyper[BETA2] * guard[STATE2_BOUND] + (1.0 - hyper[BETA2]) * g * g
    step_size, _ = F.adam_scalars(lr, hyper[BETA1], hyper[BETA2], t + 1)
    if decoupled:
        theta_b *= abs(1.0 - lr * wd)
    # |m / (sqrt(v) / c + eps)| <= |m| / eps: loose, but it only has to stay finite.
    theta_b += step_size * s1 / hyper[EPS]
    return _store_bounds(guard, theta_b, s1, s2)


@njit(cache=config.CACHE, inline="always")
def _store_bounds(guard, theta_b, s1, s2):
    """Whether the advanced bounds are all within the guard's limit; if so they are
    stored."""
    limit = guard[LIMIT]
    if theta_b <= limit and s1 <= limit and s2 <= limit:
        guard[THETA_BOUND], guard[STATE1_BOUND], guard[STATE2_BOUND] = theta_b, s1, s2
        return True
    return False
