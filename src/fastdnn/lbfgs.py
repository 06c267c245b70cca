"""Full-batch L-BFGS: :class:`fastdnn.LBFGS` drives ``scipy.optimize.minimize`` with the
compiled loss and gradient of the whole data (weights and L2 penalty included)."""
import math
import time

import numpy as np

from .callbacks import says_stop
from .errors import TrainingDivergedError
from .fitting import History


def fit_lbfgs(net, plan, verbose=False, history=None, interrupted=lambda: False):
    """Minimise ``net``'s loss over ``plan``'s data; one record per iteration in
    ``history`` (a new :class:`History` by default), which it returns.

    The objective runs in float64 on SciPy's side; each evaluation copies the point
    into the net (its dtype) and calls the backend's compiled ``gradient``.

    A line search's trial point whose loss is not finite (a step so long that the
    logits overflow) is given SciPy as a loss well above the last iterate's, with a
    slope of 0, so that the search steps back: SciPy takes a non-finite value for
    convergence, and stopped after 2-4 iterations, reporting success, in 15 of 80 small
    Poisson fits.  A first loss that is not finite, or a fit that ends on one, raises
    :class:`TrainingDivergedError`, the net back at its best point so far.  Once
    ``interrupted()`` (Ctrl-C), the next iteration's end raises ``KeyboardInterrupt``,
    the net at that iterate; a second Ctrl-C, which comes out of SciPy at once, leaves
    the net at the last iterate too (not at a trial point).
    """
    backend = net._backend
    X, T = plan.X, plan.T
    opt = plan.optimizer
    history = History() if history is None else history
    callbacks = list(plan.callbacks)
    from .callbacks import ProgressBar, prints_to_stdout
    if verbose and not prints_to_stdout(callbacks):  # one bar on stdout, as fit's
        callbacks.append(ProgressBar())
    for cb in callbacks:
        if hasattr(cb, "attach"):
            raise ValueError(f"{type(cb).__name__} needs an epoch-based optimizer, not L-BFGS")
    best = {"loss": math.inf, "theta": backend.get_theta()}
    # The last iterate's weights and loss (the start's, at first).
    iterate = {"theta": best["theta"], "loss": None}

    def loss_and_gradient(theta):
        backend.set_theta(theta.astype(net.dtype))
        value, grad = backend.gradient(X, T)
        if not math.isfinite(value):
            at = iterate["loss"]
            if at is None:  # the start: nothing to step back to
                return value, grad.astype(np.float64)
            # 10x the iterate's scale above it: the search's next trial is a tenth or so
            # of the step (1e300 made SciPy's interpolation overflow, and stop).
            return at + 10.0 * max(1.0, abs(at)), np.zeros(theta.shape)
        if iterate["loss"] is None:
            iterate["loss"] = value
        if value < best["loss"]:
            best["loss"], best["theta"] = value, theta.astype(net.dtype)
        return value, grad.astype(np.float64)

    def call(hook, *args):
        return any([says_stop(getattr(cb, hook)(*args)) for cb in callbacks
                    if hasattr(cb, hook)])

    clock = [time.perf_counter()]
    stopped = []
    last_logs = []  # the last iteration's, for on_train_end (as an epoch's fit passes)

    def iteration(intermediate_result):
        value = float(intermediate_result.fun)
        if not math.isfinite(value):
            raise StopIteration
        record = dict(loss=value, lr=math.nan, seconds=time.perf_counter() - clock[0],
                      val_loss=math.nan, val_metric=math.nan)
        iterate["theta"], iterate["loss"] = intermediate_result.x.astype(net.dtype), value
        backend.set_theta(iterate["theta"])
        if plan.validation is not None:
            Xv, Tv = plan.validation
            record["val_loss"], Z = backend.evaluate(Xv, Tv, want_logits=True)
            record["val_metric"] = net._metric(Z, Tv)
        history.append(**record)
        # No rate for the first iteration: its evaluations compiled or loaded the kernel.
        rate = X.shape[0] / max(record["seconds"], 1e-12) if len(history) > 1 else None
        logs = dict(record, rate=rate)
        last_logs[:] = [logs]
        if call("on_epoch_end", len(history) - 1, logs):
            stopped.append(True)
            raise StopIteration
        if interrupted():  # the net holds this iterate (set above)
            raise KeyboardInterrupt
        clock[0] = time.perf_counter()

    from scipy.optimize import minimize  # here: importing it costs 0.4 s of every start

    ready = getattr(backend, "gradient_ready", None)
    theta0 = backend.get_theta().astype(np.float64)
    try:
        for cb in callbacks:
            if hasattr(cb, "set_fit"):
                cb.set_fit(net, history)
        call("on_train_begin", dict(epochs=plan.epochs, validation=plan.validation is not None,
                                    compiling=ready is not None and not ready(X, T)))
        result = minimize(loss_and_gradient, theta0, jac=True, method="L-BFGS-B",
                          callback=iteration,
                          options=dict(maxiter=plan.epochs, maxfun=opt.max_fun, gtol=opt.tol,
                                       # Pairs beyond the iterations are never filled (the
                                       # same steps), but SciPy allocates them: a history
                                       # of 2**62 was a MemoryError of exabytes.
                                       maxcor=min(opt.history, plan.epochs)))
    except KeyboardInterrupt:  # out of an evaluation, maybe a trial point's
        backend.set_theta(iterate["theta"])
        raise
    finally:
        for cb in callbacks:  # let go of the net (a ModelCheckpoint held it)
            if hasattr(cb, "detach"):
                cb.detach()
    if not math.isfinite(float(result.fun)) and not stopped:
        backend.set_theta(best["theta"])
        raise TrainingDivergedError("L-BFGS reached a point with a NaN/inf loss; the net "
                                    "keeps its best point so far", history)
    backend.set_theta(result.x.astype(net.dtype))
    opt.result = result
    # The last iteration's record (on_train_end read only "loss" here, and KeyError on
    # "val_loss", which an SGD fit's has); SciPy's last point is that iteration's.
    logs = last_logs[0] if last_logs else dict(loss=float(result.fun), lr=math.nan,
                                               seconds=math.nan, val_loss=math.nan,
                                               val_metric=math.nan, rate=None)
    call("on_train_end", logs)
    return history
