"""The pieces of a ``fit``: its checked plan, the run of one net's epochs (seed,
divergence recovery, history, validation, early stopping, progress), and the History.

:meth:`fastdnn.MLP.fit` drives one :class:`FitRun`; :func:`fastdnn.fit_many` drives
several, training their epochs together in one compiled call.
"""
import contextlib
import math
import os
import signal
import threading
import time
import zlib
from typing import NamedTuple

import numpy as np

from . import config
from .callbacks import ProgressBar, prints_to_stdout, says_stop
from .errors import TrainingDivergedError
from .kernels.cpu.separate import filled_from_kernels, listening, take_interrupt
from .kernels.spec import COSINE, LR, MIN_FACTOR, SCALE, TOTAL_STEPS, EpochResult
from .validation import is_integer


class History:
    """Per-epoch record of a ``fit``: ``loss``, ``val_loss``, ``val_metric``, ``lr``, ``seconds``.

    ``val_metric`` is accuracy for classification and R^2 for regression; the
    validation entries are ``nan`` when no validation data was given.
    """

    KEYS = ("loss", "val_loss", "val_metric", "lr", "seconds")

    def __init__(self):
        for key in self.KEYS:
            setattr(self, key, [])

    def append(self, **values):
        for key in self.KEYS:
            getattr(self, key).append(float(values[key]))

    @property
    def history(self):
        """The records as a dict of lists (Keras' ``History.history``);
        ``pandas.DataFrame(hist.history)`` gives one row per epoch."""
        return {key: list(getattr(self, key)) for key in self.KEYS}

    def __getitem__(self, key):
        """``hist["loss"]``: one of :attr:`KEYS`, as a list."""
        if key not in self.KEYS:
            raise KeyError(f"{key!r}; a History holds {', '.join(self.KEYS)}")
        return list(getattr(self, key))

    def __iter__(self):
        """One dict per epoch: ``{"loss": ..., "val_loss": ..., ...}``."""
        for values in zip(*(getattr(self, key) for key in self.KEYS)):
            yield dict(zip(self.KEYS, values))

    def __len__(self):
        return len(self.loss)

    def __repr__(self):
        last = f", last loss {self.loss[-1]:.4g}" if self.loss else ""
        return f"History({len(self)} epochs{last})"


class FitPlan(NamedTuple):
    """The checked arguments of one ``fit`` (see ``MLP._fit_plan``)."""

    X: object
    T: np.ndarray  # targets and sample weights, packed (spec.pack_targets)
    epochs: int
    batch_size: int  # capped at len(X)
    sampling: int  # spec.IN_ORDER, SHUFFLE or UNIFORM
    optimizer: object
    schedule: tuple  # (code, float64 params)
    validation: tuple  # (X_val, T_val) or None
    patience: int  # or None
    clip_norm: float = None
    restore_best: bool = False
    callbacks: tuple = ()
    plateau: object = None  # the ReduceLROnPlateau schedule, when it is the schedule
    schedule_args: str = None  # the schedule's repr: its constructor's arguments
    rng_start: dict = None  # the net's generator before the fit drew anything (its split)
    split: tuple = None  # validation_split's (kept, held-out) rows of the data given


class EarlyStop:
    """Counts epochs since the watched loss last improved; ``update`` says when to stop."""

    def __init__(self, patience):
        self.patience = patience
        self.best = math.inf
        self.since_best = 0

    def would_stop(self, watched):
        """Whether :meth:`update` with ``watched`` will say stop."""
        return (self.patience is not None and not watched < self.best
                and self.since_best + 1 >= self.patience)

    def update(self, watched):
        if watched < self.best:
            self.best, self.since_best = watched, 0
            return False
        self.since_best += 1
        return self.patience is not None and self.since_best >= self.patience


#: When Ctrl-C was pressed during a fit (``time.perf_counter()``), for the CLI: a second
#: press inside Numba's compile can surface later as another error (a ctypes callback
#: drops the KeyboardInterrupt and leaves the compile half done: "no compiled object
#: yet"), which the CLI then reports as the interrupt it was.
PRESSES = []


@contextlib.contextmanager
def deferred_interrupts():
    """Ctrl-C (SIGINT) during the block sets a flag instead of raising at once.

    Yields a function that returns whether Ctrl-C was pressed; the fit checks it
    between runs of steps and raises ``KeyboardInterrupt`` there, where its state is
    consistent (weights, step count and history agree).  A second Ctrl-C raises as
    soon as Python runs again.  Outside the main thread (no signal handlers there), or
    where the program installed its own SIGINT handler, nothing changes.
    """
    pressed = []
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield lambda: False  # a thread, or a program with its own SIGINT handling
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        PRESSES.append(time.perf_counter())
        if pressed:
            signal.default_int_handler(signum, frame)
        pressed.append(time.perf_counter())

    signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(pressed)
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:  # pressed during the fit's last run of steps: it ended, now stop
        raise KeyboardInterrupt


#: Inputs beyond this in magnitude are named in a divergence's message: the README's
#: "columns in the thousands train poorly", and beyond 1e4 no lr may help.
_LARGE_INPUT = 1e4


def _largest_input(X):
    """``max |X|`` of a host ``X`` (0 for a CUDA device array: not copied for a message)."""
    if not isinstance(X, np.ndarray) or X.size == 0:
        return 0.0
    return float(np.abs(X).max())


class FitRun:
    """One net's fit in progress: its trainer, the history so far, and when to stop.

    :meth:`train_epoch` trains an epoch in runs of steps of about
    ``config.SLICE_SECONDS`` each (between them: progress, and Ctrl-C), then books it.
    ``fit_many`` trains several nets' epochs together and calls :meth:`next_seed` and
    :meth:`book` itself.
    """

    def __init__(self, net, plan, verbose=False):
        self.net = net
        self.plan = plan
        self.history = History()
        self.stop = EarlyStop(plan.patience)
        self.best_theta = None
        self.epoch = 0
        self.stopping = False  # a callback asked the last epoch to be the last
        self.callbacks = list(plan.callbacks)
        if verbose and not prints_to_stdout(self.callbacks):  # one bar on stdout
            self.callbacks.append(ProgressBar())
        self._hooks = {}  # hook name -> the callbacks' bound methods (see _call)
        # The fit's arguments as given (a callback may set lr during the fit: a backup
        # made after it is still one of this fit).
        self.start_hyper = plan.optimizer.hyper().tolist()
        self._targets_crc = None
        # A backup restores the weights and the optimizer before the trainer binds them;
        # a fit refused after that (in on_train_begin) goes back to what it had.
        before = self._keep() if any(hasattr(cb, "attach") for cb in self.callbacks) else None
        try:
            self._begin()
        except BaseException:
            if before is not None:
                self._put_back(before)
            self.close()  # the callbacks let go of the fit
            raise

    def _keep(self):
        """What a backup's restore changes: the weights, the optimizer's and the plateau
        schedule's states."""
        opt, plateau = self.plan.optimizer, self.plan.plateau
        return (self.net._backend.get_theta(), None if opt.state is None else opt.state.copy(),
                opt.t, opt.lr, None if plateau is None else plateau.state())

    def _put_back(self, kept):
        """Undo a backup's restore (:meth:`_keep`'s)."""
        theta, state, t, lr, plateau = kept
        opt = self.plan.optimizer
        self.net._backend.set_theta(theta)
        opt.state, opt.t, opt.lr = state, t, lr
        if plateau is not None:
            self.plan.plateau.set_state(plateau)

    def _begin(self):
        """Restore from a backup, make the trainer, and call ``on_train_begin``."""
        net, plan = self.net, self.plan
        self._attach()
        self._check_schedule()
        self.trainer = self._make_trainer()
        # The weights at this epoch's start and the last one's (two buffers, swapped each
        # epoch): a first step can fail where the last epoch's last update left a loss
        # that overflows already, and the epoch before's start is then the one to keep.
        self.snapshots = None
        if net.n_params * net.dtype.itemsize <= config.SNAPSHOT_BYTES:
            self.snapshots = [np.empty(net.n_params, dtype=net.dtype) for _ in range(2)]
        self.kept = 0  # how many of the snapshots hold this fit's epoch starts
        self.step_seconds = None
        self._optimizer_set = plan.optimizer._params()  # what the trainer runs with
        # Whether the kernels are compiled (or loaded) in this process: until then a run
        # is taken to compile (a second fit's first epoch has a rate, as the first's second).
        self.warm = kernel_loaded(self.trainer)
        # Resumed from the backup of the last epoch, of one a callback stopped at, or of
        # the epoch whose patience ran out (it trained one epoch more): only the ending.
        self.done = self.epoch >= plan.epochs or self.stopping or (
            self.epoch > 0 and plan.patience is not None
            and self.stop.since_best >= plan.patience)
        self._call("set_fit", net, self.history)  # the net, the history as restored
        self._call("on_train_begin", dict(epochs=plan.epochs, compiling=_compiling(self.trainer),
                                          validation=plan.validation is not None))
        if self.done:
            self._finish(dict(list(self.history)[-1], rate=None) if len(self.history) else {})

    def _check_schedule(self):
        """Refuse a ``CosineDecay`` the optimizer has passed as the fit starts (a resumed
        one: as its backup restored it): its curve counts the optimizer's steps, which go
        on across fits, and the fit ran every step at lr 0, without a word."""
        code, params = self.plan.schedule
        t = self.plan.optimizer.t
        # Only as a fit begins: one resumed (epoch > 0) began before its curve's end and
        # holds lr 0 past it, as it would have run on (its rerun was refused).
        if (code == COSINE and params[MIN_FACTOR] == 0 and t >= params[TOTAL_STEPS]
                and self.epoch == 0 and not self.stopping):
            raise ValueError(f"{self.plan.schedule_args} ended before this fit: the optimizer "
                             f"has taken {t} steps (its count goes on across fits), so every "
                             f"step would have lr 0; anneal this fit anew from lr with a fresh "
                             f"optimizer or after optimizer.reset(), or give a total_steps "
                             f"past {t}")

    def _attach(self):
        """Let the callbacks with an ``attach`` method (a backup) restore the fit."""
        for callback in self.callbacks:
            if hasattr(callback, "attach"):
                callback.attach(self)

    def close(self):
        """Release what the trainer holds for the fit (the CPU's helper thread), and the
        callbacks' hold on the fit (``detach``: a kept BackupAndRestore held its data)."""
        close = getattr(getattr(self, "trainer", None), "close", None)
        if close is not None:
            close()
        for callback in self.callbacks:
            detach = getattr(callback, "detach", None)
            if detach is not None:
                detach()

    def _make_trainer(self):
        plan = self.plan
        return self.net._backend.trainer(plan.X, plan.T, plan.batch_size, plan.optimizer,
                                         plan.schedule, plan.clip_norm)

    #: The MPI ranks the fit runs on (:class:`fastdnn.distributed.DistributedFitRun`).
    n_ranks = 1

    @property
    def rows_per_epoch(self):
        """Rows an epoch trains on (every rank's, in a distributed fit)."""
        return self.plan.X.shape[0]

    @property
    def steps_per_epoch(self):
        """Optimizer steps an epoch takes (the global batches', in a distributed fit)."""
        return -(-self.plan.X.shape[0] // self.plan.batch_size)

    def _call(self, hook, *args):
        """Call ``hook`` on every callback that has it; whether any returned True."""
        methods = self._hooks.get(hook)
        if methods is None:  # looked up once per hook: twice an epoch, it cost 10 us
            methods = self._hooks[hook] = [getattr(cb, hook) for cb in self.callbacks
                                           if hasattr(cb, hook)]
        stop = False
        for method in methods:
            stop = says_stop(method(*args)) or stop
        return stop

    def _compiling_now(self):
        """A callee the run reached late compiles now (:mod:`.kernels.cpu.separate`): the
        callbacks that show progress say so (``on_compiling``; no collective, as it may
        happen on one MPI rank only)."""
        for callback in self.callbacks:
            hook = getattr(callback, "on_compiling", None)
            if hook is not None:
                hook()

    def next_seed(self):
        """Keep the epoch-start weights (small nets) and draw the epoch's sampling seed."""
        if self.snapshots is not None:
            self.snapshots.reverse()  # [this epoch's start, the last one's]
            self.net._backend.get_theta(self.snapshots[0])
            self.kept = min(self.kept + 1, 2)
        return int(self.net._rng.integers(0, 2**31 - 1))

    def _take_new_lr(self):
        """Run with ``optimizer.lr`` as set now: a callback may change it during the fit
        (Keras' ``LearningRateScheduler``; the fit trained on at the old rate, and its
        History disagreed with the optimizer).  The other hyper-parameters choose the
        kernel and the optimizer's state: refused until the fit ends."""
        optimizer = self.plan.optimizer
        now = optimizer._params()
        # A NumPy float32 equals the Python float it rounds from (NEP 50): compared as
        # a float, or the run kept the old rate.
        if now == self._optimizer_set and type(optimizer.lr) is float:
            return
        changed = [k for k in now if k != "lr" and now[k] != self._optimizer_set[k]]
        if changed:
            raise ValueError(f"{', '.join(changed)} cannot change during a fit (lr can); set "
                             f"{'it' if len(changed) == 1 else 'them'} between fits")
        type(optimizer)(**now)  # checked as the constructor checks it
        optimizer.lr = float(optimizer.lr)  # a NumPy float32 went into the backup's JSON
        optimizer._check_range(self.net.dtype)
        self.trainer.opt.hyper[LR] = optimizer.lr
        now = optimizer._params()
        self._optimizer_set = now

    def _slice(self, remaining):
        """Steps of the next run: about ``config.SLICE_SECONDS`` at the last run's pace."""
        if self.trainer.whole_epochs:
            return remaining
        if self.step_seconds is None:
            # Before any measurement: a guess at 1 GFLOP/s (low, so the first run is
            # short; it includes the compile or the cache load).
            sizes = self.net.sizes
            flops = 6 * self.plan.batch_size * sum(k * n for k, n in zip(sizes[:-1], sizes[1:]))
            step = 2e-6 + flops / 1e9
        else:
            step = max(self.step_seconds, 1e-9)
        return max(1, min(remaining, int(config.SLICE_SECONDS / step)))

    def train_epoch(self, interrupted=lambda: False):
        """Train and book one epoch; raise ``KeyboardInterrupt`` between runs of steps
        once ``interrupted()`` is true (the completed epochs stay in the history)."""
        seed = self.next_seed()
        total = self.trainer.steps_per_epoch
        n_rows = self.rows_per_epoch
        loss_sum = weights = lr = 0.0
        samples = steps = 0
        failed = -1
        start = time.perf_counter()
        cold = None  # (samples, seconds) of the runs that compiled kernels
        while steps < total:
            self._take_new_lr()
            filled = filled_from_kernels()
            run_start = time.perf_counter()
            try:
                with listening(self._compiling_now):
                    result = self.trainer.run_steps(self.plan.sampling, seed, steps,
                                                    steps + self._slice(total - steps))
            except (RuntimeError, SystemError) as exc:
                if take_interrupt(exc):  # Ctrl-C while a callee compiled
                    raise KeyboardInterrupt from exc
                raise
            seconds = time.perf_counter() - run_start
            # The first run compiles (or loads) the epoch kernel; a later one may compile
            # a callee the fit reaches late (the overflow guard's exact check).
            compiled = not self.warm or filled_from_kernels() != filled
            if compiled:
                self.warm = True
                cold_samples, cold_seconds = cold or (0, 0.0)
                cold = (cold_samples + result.samples, cold_seconds + seconds)
            loss_sum, weights = result.loss_sum, result.weight_sum  # the epoch's so far
            samples += result.samples
            if result.steps:
                # A run that compiled says nothing of the step time: cut by it, the next
                # runs would take a few steps each.
                if not compiled:
                    self.step_seconds = seconds / result.steps
                lr = result.lr
            steps += result.steps
            if result.failed_step >= 0:
                failed = result.failed_step
                break
            self._call("on_progress", self.epoch, samples, n_rows, time.perf_counter() - start)
            if interrupted() and steps < total:
                raise KeyboardInterrupt
        seconds = time.perf_counter() - start
        rate = None
        if cold is None:
            rate = samples / max(seconds, 1e-12)
        elif samples > cold[0]:  # the rate of the runs after the compile
            rate = (samples - cold[0]) / max(seconds - cold[1], 1e-12)
        self.book(EpochResult(loss_sum, samples, steps, failed, lr, weights), seconds, rate,
                  interrupted)
        if interrupted() and not self.done:  # pressed during the epoch's last run
            raise KeyboardInterrupt

    def book(self, result, seconds, rate=None, interrupted=lambda: False):
        """Record a trained epoch (an ``EpochResult``) that took ``seconds`` at ``rate``
        samples/s (``None``: unknown, the epoch compiled the kernels); raise if it diverged.
        ``interrupted``: whether Ctrl-C was pressed (asked at the fit's last epoch).

        Raises
        ------
        TrainingDivergedError
            After restoring usable weights (see :meth:`_recover`).
        KeyboardInterrupt
            Pressed during the fit's last run of steps: before its end (the backup kept).
        """
        backend = self.net._backend
        diverged = result.failed_step >= 0 or not backend.theta_finite()
        if not diverged:
            record = dict(loss=result.loss_sum / result.weight_sum if result.weight_sum else
                          math.nan, lr=result.lr, seconds=seconds, val_loss=math.nan,
                          val_metric=math.nan)
            if self.plan.validation is not None:
                record["val_loss"], record["val_metric"] = self.validate()
            watched = record["val_loss"] if self.plan.validation is not None else record["loss"]
            last = self.epoch + 1 >= self.plan.epochs or self.stop.would_stop(watched)
            diverged = last and not self._ends_finite(watched)
        if diverged:
            self._diverged(result.failed_step)
        self.history.append(**record)
        self.epoch += 1
        improved = watched < self.stop.best
        stop = self.stop.update(watched)
        if self.plan.plateau is not None:
            self.plan.schedule[1][SCALE] = self.plan.plateau.update(watched, self.plan.optimizer.lr)
        logs = dict(record, rate=rate)
        called = self._call("on_epoch_end", self.epoch - 1, logs)
        if (called and not stop and self.epoch < self.plan.epochs
                and not self._ends_finite(watched, improved)):
            # A callback's stop (the estimators' tol) ends the fit here: its last update
            # is checked after all; the epoch goes, as a diverged one (no backup holds it).
            for key in History.KEYS:
                getattr(self.history, key).pop()
            self.epoch -= 1
            self._diverged(-1)
        if self.plan.restore_best and improved:  # (after that check: not these weights)
            self.best_theta = backend.get_theta(self.best_theta)
        stop = called or stop
        self.stopping = stop
        # An lr a callback set is checked before a backup holds it (a bad one was backed
        # up, and a rerun trained with it unchecked).
        self._take_new_lr()
        # After every on_epoch_end: a backup knows whether a callback stopped the fit
        # (written before, a fit killed then resumed trained one epoch more).
        self._call("after_epoch_end", self.epoch - 1)
        self.done = stop or self.epoch >= self.plan.epochs
        if self.done and interrupted():  # pressed during the fit's last run of steps: it
            # stops before its end, the backup (of the ended fit) kept: on_train_end
            # removed it, and the rerun of a script trained the whole fit again
            raise KeyboardInterrupt
        if self.done:
            self._finish(logs)

    def _ends_finite(self, watched, improved=None):
        """Whether the loss at the weights the fit ends with, if it ends after this epoch,
        is finite on its first rows (:meth:`_end_check_rows`).

        Each step checks the loss before its update, so the fit's last update is checked
        here: a fit ended at finite weights whose loss overflowed (a 4-16-1 tanh net's mse
        went from 1.4e37 to inf), and returned as if it had trained.  A fit that goes back
        to its best weights ends at them: an earlier epoch's, whose next step's loss was
        finite (unless this epoch improved on them, ``improved``: ``None``, not booked
        yet)."""
        if improved is None:
            improved = watched < self.stop.best
        if self.plan.restore_best and not improved and self.best_theta is not None:
            return True
        return self._loss_is_finite(self._end_check_rows())

    def _diverged(self, failed_step):
        """Go back to usable weights and raise ``TrainingDivergedError`` for a failed step
        of this epoch (-1: its last update)."""
        kept = self._recover(first_step=failed_step == 0)
        where = f"step {failed_step + 1}" if failed_step >= 0 else "its last step"
        self.done = True
        hint = "lr too large?"
        if getattr(self.plan.optimizer, "eps", None) == 0:  # no lr helped, it said
            hint = ("Adam's eps=0 makes 0/0 of a gradient that is exactly 0, a dead unit's "
                    "or a column of zeros': use eps > 0; or lr too large?")
        big = _largest_input(self.plan.X)
        if big > _LARGE_INPUT:  # unscaled data: no lr helped either (1e20: not 1e-8)
            hint = (f"the inputs reach |x| = {big:.3g}: scale them first (fastdnn."
                    f"preprocess.Scaler, sklearn's StandardScaler); or {hint}")
        raise TrainingDivergedError(
            f"training diverged in epoch {self.epoch + 1} at {where}: the loss or the "
            f"weights would become NaN/inf ({hint}); the net keeps {kept}",
            self.history)

    def _finish(self, logs):
        """The end of a fit that ran its course: the best weights back, ``on_train_end``."""
        if self.best_theta is not None:
            self.net._backend.set_theta(self.best_theta)
        self._call("on_train_end", logs)

    def validate(self):
        """``(val_loss, val_metric)`` of the net on the validation data."""
        Xv, Tv = self.plan.validation
        val_loss, Z = self.net._backend.evaluate(Xv, Tv, want_logits=True)
        return val_loss, self.net._metric(Z, Tv)

    def _recover(self, first_step=False):
        """Make the net trainable again after a divergence (at the epoch's ``first_step``
        or later); returns what it keeps.

        The training loop stops before any update that is not finite, so the weights
        are finite, but the loss at them may not be: where there is one, the net goes
        back to its best weights (``restore_best``) or to those of the epoch's start
        (small nets, see ``config.SNAPSHOT_BYTES``).  Momentum and moments: reset.
        """
        self.plan.optimizer.reset()
        backend = self.net._backend
        if self.best_theta is not None:
            backend.set_theta(self.best_theta)
            return "its best weights so far and can be trained again"
        if self.snapshots is not None:
            epoch = self.epoch + 1
            backend.set_theta(self.snapshots[0])
            if not first_step:
                return f"the weights from the start of epoch {epoch} and can be trained again"
            # Back where it failed: an update that overflowed (a smaller lr trains on), or
            # a loss that overflowed already (the last epoch's last update left it so:
            # every later fit failed at its first step, whatever its lr).
            if self._loss_is_finite():
                return (f"the weights from the start of epoch {epoch}, where its first step "
                        f"failed (a smaller lr may train from them)")
            if self.kept == 2:
                backend.set_theta(self.snapshots[1])
                if self._loss_is_finite():
                    return (f"the weights from the start of epoch {epoch - 1} (at epoch "
                            f"{epoch}'s the loss was not finite already; a smaller lr may "
                            f"train from them)")
                backend.set_theta(self.snapshots[0])
            return (f"the weights from the start of epoch {epoch}, at which the loss is not "
                    f"finite already: no lr trains from them (fit with restore_best=True "
                    f"to keep the best weights, or build the net anew)")
        # A 72 MB net's loss was inf there, and so was every later fit's first step.
        return ("the last finite weights, at which the loss may not be finite (nets over "
                "fastdnn.config.SNAPSHOT_BYTES keep no copy of the epoch's start; fit with "
                "restore_best=True, or save the net, to have weights to go back to)")

    def _end_check_rows(self):
        """The rows the fit's last update is checked on (``config.END_CHECK_MACS``)."""
        sizes = self.net.sizes
        macs = sum(k * n for k, n in zip(sizes[:-1], sizes[1:]))
        return max(1, min(self.plan.batch_size, config.END_CHECK_MACS // max(macs, 1)))

    def _loss_is_finite(self, rows=None):
        """Whether the training loss at the net's weights is finite (on the first ``rows``
        rows; ``None``: all)."""
        X, T = self.plan.X[:rows], self.plan.T[:rows]
        if rows is not None and not (T[:, -1] > 0).all():  # the first rows that count
            first = np.flatnonzero(self.plan.T[:, -1] > 0)[:rows]
            X, T = self.plan.X[first], self.plan.T[first]
        if not (T[:, -1] > 0).any():  # no row of weight (an MPI rank's shard)
            return True
        return math.isfinite(self.net._backend.evaluate(X, T)[0])

    # -- backups (BackupAndRestore) ----------------------------------------------------
    #: The version of a backup's contents: 2 from 2026-11-29, whose epochs draw their
    #: permutations from counter draws (a backup of an earlier fastdnn, resumed here, went
    #: on with other permutations: a fit that matched neither version's uninterrupted one).
    BACKUP_VERSION = 2

    def backup(self):
        """``(header, arrays)``: everything needed to continue this fit bit for bit."""
        net, opt = self.net, self.plan.optimizer
        header = dict(format="fastdnn-backup", version=self.BACKUP_VERSION, sizes=net.sizes,
                      epoch=self.epoch, t=opt.t,
                      rng=net._rng.bit_generator.state, best=self.stop.best,
                      since_best=self.stop.since_best, rng_start=self.plan.rng_start,
                      fit=self.arguments(), stopping=bool(self.stopping), ranks=self.n_ranks,
                      epochs=self.plan.epochs, lr=float(opt.lr))
        arrays = dict(theta=net._backend.get_theta(), schedule=np.asarray(self.plan.schedule[1]))
        if opt.state is not None:
            arrays["opt_state"] = opt.state
        if self.best_theta is not None:
            arrays["best_theta"] = self.best_theta
        if self.plan.plateau is not None:
            arrays["plateau"] = self.plan.plateau.state()
        for key in History.KEYS:
            arrays["history_" + key] = np.array(getattr(self.history, key), dtype=np.float64)
        return header, arrays

    def arguments(self):
        """What a backup must have been made with to continue this fit: the net's
        kind, the data's rows and the fit's arguments (all but ``epochs``, which a
        resumed fit may extend), as JSON values."""
        net, plan = self.net, self.plan
        if self._targets_crc is None:  # the targets and their weights (sample, class)
            self._targets_crc = zlib.crc32(np.ascontiguousarray(plan.T))
        return dict(dtype=net.dtype.name, activations=net.activations, loss=net.loss_name,
                    l2=net.l2, dropout=list(net.dropout), rows=int(self.rows_per_epoch),
                    batch_size=plan.batch_size, sampling=plan.sampling,
                    optimizer=type(plan.optimizer).__name__, hyper=self.start_hyper,
                    schedule=int(plan.schedule[0]), schedule_args=plan.schedule_args,
                    clip_norm=plan.clip_norm, validation=plan.validation is not None,
                    patience=plan.patience, restore_best=plan.restore_best,
                    targets=self._targets_crc)

    def restore(self, header, arrays, check=True):
        """Continue from :meth:`backup`'s output (before the trainer is made); ``check``:
        that it is a backup of this fit (an MPI rank taking rank 0's state skips it:
        rank 0 checked, and the targets are each rank's own)."""
        net, opt = self.net, self.plan.optimizer
        if not isinstance(header, dict):  # a JSON list raised AttributeError
            raise ValueError("its header is no record of a fit")
        if header.get("format") != "fastdnn-backup":  # said "widths [3, 4, 2], this net
            # has [3, 4, 2]"
            raise ValueError(f"its format is {header.get('format')!r}, not 'fastdnn-backup' "
                             f"(a file of another program, or of a later fastdnn)")
        version = header.get("version", 1)
        if not is_integer(version) or version > self.BACKUP_VERSION:
            raise ValueError(f"it was written by a newer fastdnn (backup version {version!r})")
        if version < self.BACKUP_VERSION:
            raise ValueError("it was written by an earlier fastdnn, whose epochs draw other "
                             "permutations (and which may not have recorded the fit's data "
                             "and arguments), so this fit cannot go on from it; delete it to "
                             "start the fit over (or finish the fit with the fastdnn that "
                             "wrote it)")
        if header.get("sizes") != net.sizes:
            raise ValueError(f"it holds a fit of a net of widths {header.get('sizes')}, "
                             f"this net has {net.sizes}")
        ranks = header.get("ranks", 1)
        if ranks != self.n_ranks:  # another global batch, and other shards
            where = "one process" if self.n_ranks == 1 else f"{self.n_ranks} ranks"
            raise ValueError(f"it holds a fit on {ranks} rank{'s' * (ranks != 1)} (MPI); "
                             f"resume it on as many (this fit runs on {where})")
        made, now = header.get("fit"), self.arguments()
        if check and (not isinstance(made, dict) or "targets" not in made):
            # Backups before 2026-11-29 had no record of the fit, those of its morning none
            # of the targets: resumed unchecked, a stale one of another experiment (other
            # data, dtype, optimizer) took the fit over, and one of more epochs ended it at
            # once with the other net's weights.  (Refused as version 1 now: a header
            # written by hand.)
            raise ValueError("it holds no record of the fit's data and arguments, so it "
                             "cannot be checked against this fit; delete it to start the "
                             "fit over")
        differ = [k for k in now if check and made is not None and k in made
                  and made[k] != now[k]]
        if "hyper" in differ and "lr" in header and \
                made["hyper"][:LR] + made["hyper"][LR + 1:] == \
                now["hyper"][:LR] + now["hyper"][LR + 1:]:
            # The lr alone: rerun in the same process, the optimizer holds the lr a callback
            # set (after the backup, maybe); the backup's own is restored below.
            differ.remove("hyper")
        if differ:
            name = differ[0]
            if name == "targets":
                raise ValueError("it was made with other targets or weights (y, "
                                 "sample_weight or class_weight)")
            raise ValueError(f"it was made with {name}={made.get(name)!r}, this fit has "
                             f"{name}={now[name]!r}")
        _backup_checks(self, header, arrays)
        net._backend.set_theta(arrays["theta"].astype(net.dtype))
        schedule = np.array(arrays["schedule"], dtype=np.float64)
        code, params = self.plan.schedule
        epochs = header.get("epochs")  # backups before 2026-11-29 have none
        if (code == COSINE and epochs is not None and epochs != self.plan.epochs
                and schedule[TOTAL_STEPS] != params[TOTAL_STEPS]):
            # A default CosineDecay ends where the fit ends: resumed with more epochs,
            # the added ones ran at a rate of 0 (an explicit length is the same in both).
            schedule[TOTAL_STEPS] += (self.plan.epochs - epochs) * self.steps_per_epoch
        np.copyto(params, schedule)
        if "opt_state" in arrays:
            opt.state = arrays["opt_state"].astype(net.dtype)
        opt.t = int(header["t"])
        if "lr" in header:  # as a callback set it (the fit began at hyper's): checked
            opt.lr = float(header["lr"])
            type(opt)(**opt._params())
            opt._check_range(net.dtype)
        net._rng.bit_generator.state = header["rng"]
        self.stop.best, self.stop.since_best = float(header["best"]), int(header["since_best"])
        self.best_theta = arrays.get("best_theta")
        if self.plan.plateau is not None and "plateau" in arrays:
            self.plan.plateau.set_state(arrays["plateau"])
        for key in History.KEYS:
            getattr(self.history, key)[:] = arrays["history_" + key].tolist()
        self.epoch = int(header["epoch"])
        self.stopping = bool(header.get("stopping", False))


def _backup_checks(run, header, arrays):
    """Refuse a backup whose arrays or counts do not fit ``run``, before anything of it is
    restored: a theta of one value was broadcast to every weight, a best_theta too (the
    fit ended with all weights 3.0), an Adam state of another shape dropped for zeros,
    and a header's t of Infinity or a list raised OverflowError and TypeError."""
    n, opt, plan = run.net.n_params, run.plan.optimizer, run.plan

    def shaped(key, shape, required=True):
        a = arrays.get(key)
        if a is None:
            if required:
                raise ValueError(f"it has no {key}")
            return
        if a.shape != shape or a.dtype.kind not in "iuf":
            raise ValueError(f"its {key} is {a.shape} of {a.dtype}; this fit's is {shape}")
        if not np.isfinite(a).all() and key not in ("plateau", "schedule") \
                and not key.startswith("history_"):
            raise ValueError(f"its {key} is not finite")

    def whole(key, low, high):
        value = header.get(key)
        if not is_integer(value) or not low <= value <= high:
            raise ValueError(f"its {key} is {value!r}; this fit's is an integer in "
                             f"[{low}, {high}]")

    shaped("theta", (n,))
    shaped("best_theta", (n,), required=False)
    if "opt_state" in arrays and opt.state is not None:
        shaped("opt_state", opt.state.shape)
    shaped("schedule", plan.schedule[1].shape)
    if plan.plateau is not None:
        shaped("plateau", plan.plateau.state().shape, required=False)
    try:  # before anything is restored (TypeError out of NumPy, with theta set already)
        type(run.net._rng.bit_generator)().state = header.get("rng")
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"its rng is no state of the net's generator ({exc})") from None
    whole("t", 0, 2 ** 62 - 1)
    whole("epoch", 0, 2 ** 62 - 1)  # more than this fit's epochs: it ends at once
    whole("since_best", 0, 2 ** 62 - 1)
    for key in History.KEYS:
        shaped("history_" + key, (header["epoch"],))
    if not isinstance(header.get("best"), (int, float)) or isinstance(header["best"], bool):
        raise ValueError(f"its best is {header.get('best')!r}")


def kernel_loaded(trainer):
    """Whether the trainer's (or a group's) kernel is compiled, or loaded, in this process
    already (False when it cannot tell: its first run is then taken to compile)."""
    loaded = getattr(trainer, "kernel_loaded", None)
    return loaded is not None and loaded()


def _compiling(trainer):
    """Whether the trainer's kernel has yet to be compiled in this process and is not in
    Numba's on-disk cache (a guess: False when it cannot tell)."""
    ready = getattr(trainer, "kernel_ready", None)
    if ready is not None:
        return not ready()
    kernel = getattr(trainer, "epoch_kernel", None)
    if kernel is None or getattr(kernel, "signatures", None):
        return False
    try:  # Numba's cache index of the kernel, when caching is on
        return not os.path.exists(kernel._cache._cache_file._index_path)
    except AttributeError:
        return True
