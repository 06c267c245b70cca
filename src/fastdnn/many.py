"""``fit_many``: many small nets trained on the same data together.

A tiny net cannot use two cores (its products are too small to split), but a sweep over
architectures or seeds has many of them: :func:`fit_many` trains each epoch of every net
in one compiled call, parallel over the nets, and each net ends exactly where its own
``fit`` would have left it.
"""
import copy
import math
import sys
import time

from .errors import TrainingDivergedError
from .fitting import FitRun, deferred_interrupts, kernel_loaded
from .kernels.cpu.separate import filled_from_kernels, listening, take_interrupt
from .model import MLP, training_alone
from .optim import LBFGS, Optimizer
from .validation import check_n_threads, check_verbose


def _optimizers(optimizer, n):
    """One optimizer per net: a name (fresh defaults), an instance (a copy per net, as
    if each net's ``fit`` got its own), or a list of ``n`` (used as they are)."""
    if isinstance(optimizer, (list, tuple)):
        if len(optimizer) != n:
            raise ValueError(f"got {len(optimizer)} optimizers for {n} nets")
        for o in optimizer:
            _optimizers(o, 1)  # L-BFGS refused as above
        instances = [id(o) for o in optimizer if isinstance(o, Optimizer)]
        if len(set(instances)) != len(instances):  # names are fresh instances each
            raise ValueError("each net needs an optimizer of its own (one instance keeps one "
                             "net's state); the list repeats an instance")
        return list(optimizer)
    if isinstance(optimizer, Optimizer):
        return [_copy_claimed(optimizer) for _ in range(n)]
    if isinstance(optimizer, LBFGS) or (isinstance(optimizer, str)
                                        and optimizer.lower() == "lbfgs"):
        raise ValueError("fit_many trains by SGD, Adam or AdamW steps; L-BFGS takes whole-"
                         "batch steps of one net at a time: call each net's fit")
    return [optimizer] * n


def _copy_claimed(instance):
    """A copy of an optimizer or a ReduceLROnPlateau that still knows whose fit its state
    is of (:class:`fastdnn.optim.Claimed`: a copy of net A's starts over on net C, as
    C's own fit does)."""
    return copy.deepcopy(instance)


def _check_nets(nets):
    try:
        nets = list(nets)
    except TypeError:
        raise TypeError(f"nets must be a list of fd.MLP, got {type(nets).__name__}") from None
    if not nets:
        raise ValueError("nets is empty")
    for net in nets:
        if not isinstance(net, MLP):
            raise TypeError(f"nets must hold fd.MLP instances, got {type(net).__name__}")
    if len({id(net) for net in nets}) != len(nets):
        raise ValueError("nets lists the same net twice")
    first = nets[0]
    for i, net in enumerate(nets):
        same = (net.sizes[0], net.sizes[-1], net.loss_name, net.dtype, net.device)
        if same != (first.sizes[0], first.sizes[-1], first.loss_name, first.dtype, first.device):
            raise ValueError(
                f"net {i} differs from net 0 in its input or output width, loss, dtype or "
                f"device; fit_many trains nets that take the same X and y")
    return nets


def fit_many(nets, X, y, epochs=10, batch_size=32, optimizer="adam", schedule=None,
             validation_data=None, shuffle=True, verbose=False, patience=None, n_threads=None):
    """Train several nets on the same data, their epochs together in one compiled call.

    Each net trains exactly as ``net.fit(X, y, ...)`` with the same arguments would train
    it (same seeds, same steps, bit-identical weights and losses); the nets may differ in
    everything but their input and output widths, loss, dtype and device.  On the CPU
    the nets of an epoch run in parallel, one net per thread at a time, so the thread
    count changes only the speed.  Nets that split their own products over threads
    (batches with ``rows * fan_in * fan_out`` of 2M and more) and CUDA nets train their
    epochs one after another instead.

    Parameters
    ----------
    nets : list of MLP
    X, y, epochs, batch_size, schedule, validation_data, shuffle, patience
        As for :meth:`MLP.fit`, the same for every net (a net stops early on its own);
        the schedule is copied for each net (a ``ReduceLROnPlateau`` follows each net's
        own loss, and the instance given is left as it was).
    optimizer : str, Optimizer or list of Optimizer, default "adam"
        A name (fresh defaults per net), an instance (copied for each net) or one
        instance per net (their state continues, as in ``fit``); SGD, Adam or AdamW,
        not L-BFGS.
    verbose : bool, default False
        Print one line per epoch (nets still training, their mean loss, samples/s).
    n_threads : int, optional
        Threads for the call (default: leave the process setting).

    Returns
    -------
    list of History
        One per net; ``seconds`` is the time of the whole group's epoch.

    Raises
    ------
    TrainingDivergedError
        After all other nets finished, if any net diverged: it goes back to usable
        weights as in ``fit`` (those of the epoch's start, for nets up to
        ``config.SNAPSHOT_BYTES``); ``history`` is the list of all histories,
        ``diverged`` the indices.
    """
    nets = _check_nets(nets)
    check_verbose(verbose)
    # No net, nor an instance of a list of optimizers, in two fits at once.
    with training_alone(nets, optimizer if isinstance(optimizer, (list, tuple)) else ()):
        n_threads = check_n_threads(n_threads)
        optimizers = _optimizers(optimizer, len(nets))
        # A copy of the schedule per net, as of an optimizer instance: a ReduceLROnPlateau
        # keeps one fit's state (shared, it cut every net's rate once per net an epoch).
        schedules = [_copy_claimed(schedule) for _ in nets]
        first = nets[0]._fit_plan(X, y, epochs, batch_size, optimizers[0], schedules[0],
                                  validation_data, shuffle, patience)
        # Checked once (the nets agree in everything the checks read); every net reads the
        # same arrays, with its own optimizer and schedule parameters.
        plans = [first] + [MLP._with_optimizer(first, opt, sched, net)
                           for opt, sched, net in zip(optimizers[1:], schedules[1:], nets[1:])]
        backend = nets[0]._backend
        errors = {}
        runs = []
        try:  # closed however the fit ends (a Ctrl-C left the helper thread polling)
            # Ctrl-C waits for the group's epoch to end, as fit's for its run of steps:
            # pressed while a callee compiled, it came out of the kernel as a
            # RuntimeError or a SystemError.
            with backend.limit_threads(n_threads), deferred_interrupts() as pressed:
                runs += [FitRun(net, plan) for net, plan in zip(nets, plans)]
                group = backend.trainer_group([run.trainer for run in runs])
                warm = kernel_loaded(group)
                epoch = 0
                while True:
                    active = [i for i, run in enumerate(runs) if not run.done]
                    if not active:
                        break
                    seeds = [runs[i].next_seed() for i in active]
                    filled = filled_from_kernels()
                    start = time.perf_counter()
                    try:
                        with listening():  # its fills are this thread's
                            results = group.run_epochs(active, first.sampling, seeds)
                    except (RuntimeError, SystemError) as exc:
                        if take_interrupt(exc):  # Ctrl-C while a callee compiled
                            raise KeyboardInterrupt from exc
                        raise
                    seconds = time.perf_counter() - start
                    # The first epoch compiles the kernel (or loads it); a later one may
                    # compile a callee reached late: their time is no rate.
                    compiled = not warm or filled_from_kernels() != filled
                    warm = True
                    for i, result in zip(active, results):
                        try:
                            runs[i].book(result, seconds)
                        except TrainingDivergedError as exc:
                            errors[i] = exc
                    epoch += 1
                    if pressed() and any(not run.done for run in runs):
                        raise KeyboardInterrupt
                    if verbose:
                        booked = [i for i in active if i not in errors]
                        _progress(epoch, first.epochs,
                                  [runs[i].history.loss[-1] for i in booked],
                                  sum(r.samples for r in results), seconds, compiled)
        except KeyboardInterrupt as exc:  # the completed epochs, as fit's
            exc.history = [run.history for run in runs]
            raise
        finally:
            for run in runs:
                run.close()
        histories = [run.history for run in runs]
        if errors:
            listed = ", ".join(f"net {i} ({exc})" for i, exc in sorted(errors.items()))
            exc = TrainingDivergedError(f"{len(errors)} of {len(nets)} nets diverged: {listed}",
                                        histories)
            exc.diverged = sorted(errors)
            raise exc
        return histories


def _progress(epoch, epochs, losses, samples, seconds, compiled):
    """One line of the nets' epoch; its samples/s unless it ``compiled`` kernels."""
    mean = sum(losses) / len(losses) if losses else math.nan
    rate = ("JIT compile, no rate" if compiled
            else f"{samples / max(seconds, 1e-12):,.0f} samples/s")
    print(f"epoch {epoch}/{epochs}  nets {len(losses)}  mean loss {mean:.4f}  {rate}",
          file=sys.stdout, flush=True)
