"""The pieces of a ``fit``: its checked plan, the run of one net's epochs (seed,
divergence recovery, history, validation, early stopping, progress), and the History.

:meth:`fastdnn.MLP.fit` drives one :class:`FitRun`; :func:`fastdnn.fit_many` drives
several, training their epochs together in one compiled call.
"""
import math
import sys
from typing import NamedTuple

import numpy as np

from . import config
from .errors import TrainingDivergedError


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
    T: np.ndarray
    epochs: int
    batch_size: int  # capped at len(X)
    sampling: int  # spec.IN_ORDER, SHUFFLE or UNIFORM
    optimizer: object
    schedule: tuple  # (code, float64 params)
    validation: tuple  # (X_val, T_val) or None
    patience: int  # or None


class EarlyStop:
    """Counts epochs since the watched loss last improved; ``update`` says when to stop."""

    def __init__(self, patience):
        self.patience = patience
        self.best = math.inf
        self.since_best = 0

    def update(self, watched):
        if watched < self.best:
            self.best, self.since_best = watched, 0
            return False
        self.since_best += 1
        return self.patience is not None and self.since_best >= self.patience


class FitRun:
    """One net's fit in progress: its trainer, the history so far, and when to stop.

    Per epoch the driver calls :meth:`next_seed`, trains the epoch with the seed (the
    trainer's ``run_epoch``, or several nets' epochs in one call), then :meth:`book`.
    """

    def __init__(self, net, plan, verbose=False):
        self.net = net
        self.plan = plan
        self.verbose = verbose
        backend = net._backend
        self.trainer = backend.trainer(plan.X, plan.T, plan.batch_size, plan.optimizer,
                                       plan.schedule)
        self.snapshot = None
        if net.n_params * net.dtype.itemsize <= config.SNAPSHOT_BYTES:
            self.snapshot = np.empty(net.n_params, dtype=net.dtype)  # one buffer, every epoch
        self.history = History()
        self.stop = EarlyStop(plan.patience)
        self.epoch = 0
        self.done = False

    def next_seed(self):
        """Keep the epoch-start weights (small nets) and draw the epoch's sampling seed."""
        if self.snapshot is not None:
            self.net._backend.get_theta(self.snapshot)
        return int(self.net._rng.integers(0, 2**31 - 1))

    def book(self, result, seconds):
        """Record a trained epoch (an ``EpochResult``); raise if it diverged.

        Raises
        ------
        TrainingDivergedError
            After restoring the last finite weights.
        """
        backend = self.net._backend
        if result.failed_step >= 0 or not backend.theta_finite():
            self._recover()
            where = f"step {result.failed_step + 1}" if result.failed_step >= 0 else "its last step"
            self.done = True
            raise TrainingDivergedError(
                f"training diverged in epoch {self.epoch + 1} at {where}: the loss or the "
                f"weights became NaN/inf (lr too large?); the net keeps its last "
                f"finite weights", self.history)
        record = dict(loss=result.loss_sum / result.samples, lr=result.lr, seconds=seconds,
                      val_loss=math.nan, val_metric=math.nan)
        if self.plan.validation is not None:
            Xv, Tv = self.plan.validation
            record["val_loss"], Z = backend.evaluate(Xv, Tv, want_logits=True)
            record["val_metric"] = self.net._metric(Z, Tv)
        self.history.append(**record)
        if self.verbose:
            self._progress(record, result.samples / max(seconds, 1e-12))
        self.epoch += 1
        watched = record["val_loss"] if self.plan.validation is not None else record["loss"]
        self.done = self.stop.update(watched) or self.epoch >= self.plan.epochs

    def _recover(self):
        # The training loop stops before an update with a non-finite loss or gradient,
        # so the weights are normally the last finite ones already.  Only an update
        # that overflowed them needs the copy from the start of the epoch.
        # Momentum/moments may hold inf: reset.
        self.plan.optimizer.reset()
        backend = self.net._backend
        if backend.theta_finite():
            return
        if self.snapshot is None:
            raise TrainingDivergedError(
                "training diverged: an update overflowed the weights to inf and this net is "
                "too large to keep a copy (config.SNAPSHOT_BYTES); re-initialise it and "
                "lower the learning rate", self.history)
        backend.set_theta(self.snapshot)

    def _progress(self, record, rate):
        line = f"epoch {self.epoch + 1}/{self.plan.epochs}  loss {record['loss']:.4f}"
        if not math.isnan(record["val_loss"]):
            line += f"  val_loss {record['val_loss']:.4f}  val_metric {record['val_metric']:.4f}"
        line += f"  {rate:,.0f} samples/s"
        print(line, file=sys.stdout, flush=True)
