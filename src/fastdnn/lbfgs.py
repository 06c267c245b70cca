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
    into the net (its dtype) and calls the backend's compiled ``gradient``.  A
    non-finite loss ends the fit with :class:`TrainingDivergedError`, the net back at
    its best point so far.  Once ``interrupted()`` (Ctrl-C), the next iteration's end
    raises ``KeyboardInterrupt``, the net at that iterate.
    """
    backend = net._backend
    X, T = plan.X, plan.T
    opt = plan.optimizer
    history = History() if history is None else history
    callbacks = list(plan.callbacks)
    if verbose:
        from .callbacks import ProgressBar
        callbacks.append(ProgressBar())
    for cb in callbacks:
        if hasattr(cb, "attach"):
            raise ValueError(f"{type(cb).__name__} needs an epoch-based optimizer, not L-BFGS")
    best = {"loss": math.inf, "theta": backend.get_theta()}

    def loss_and_gradient(theta):
        backend.set_theta(theta.astype(net.dtype))
        value, grad = backend.gradient(X, T)
        if math.isfinite(value) and value < best["loss"]:
            best["loss"], best["theta"] = value, theta.astype(net.dtype)
        return value, grad.astype(np.float64)

    def call(hook, *args):
        return any([says_stop(getattr(cb, hook)(*args)) for cb in callbacks
                    if hasattr(cb, hook)])

    clock = [time.perf_counter()]
    stopped = []

    def iteration(intermediate_result):
        value = float(intermediate_result.fun)
        if not math.isfinite(value):
            raise StopIteration
        record = dict(loss=value, lr=math.nan, seconds=time.perf_counter() - clock[0],
                      val_loss=math.nan, val_metric=math.nan)
        backend.set_theta(intermediate_result.x.astype(net.dtype))
        if plan.validation is not None:
            Xv, Tv = plan.validation
            record["val_loss"], Z = backend.evaluate(Xv, Tv, want_logits=True)
            record["val_metric"] = net._metric(Z, Tv)
        history.append(**record)
        # No rate for the first iteration: its evaluations compiled or loaded the kernel.
        rate = X.shape[0] / max(record["seconds"], 1e-12) if len(history) > 1 else None
        logs = dict(record, rate=rate)
        if call("on_epoch_end", len(history) - 1, logs):
            stopped.append(True)
            raise StopIteration
        if interrupted():  # the net holds this iterate (set above)
            raise KeyboardInterrupt
        clock[0] = time.perf_counter()

    from scipy.optimize import minimize  # here: importing it costs 0.4 s of every start

    ready = getattr(backend, "gradient_ready", None)
    call("on_train_begin", dict(epochs=plan.epochs,
                                compiling=ready is not None and not ready(X, T)))
    theta0 = backend.get_theta().astype(np.float64)
    result = minimize(loss_and_gradient, theta0, jac=True, method="L-BFGS-B",
                      callback=iteration,
                      options=dict(maxiter=plan.epochs, maxfun=opt.max_fun, gtol=opt.tol,
                                   maxcor=opt.history))
    if not math.isfinite(float(result.fun)) and not stopped:
        backend.set_theta(best["theta"])
        raise TrainingDivergedError("L-BFGS reached a point with a NaN/inf loss; the net "
                                    "keeps its best point so far", history)
    backend.set_theta(result.x.astype(net.dtype))
    opt.result = result
    call("on_train_end", {"loss": float(result.fun)})
    return history
