"""Data-parallel ``fit`` over MPI: ``net.fit(X_shard, y_shard, ..., comm=comm)`` on every
rank of an mpi4py communicator trains one net on the union of the shards.

Each step sums the ranks' local gradients with one allreduce inside the compiled loop
(:mod:`fastdnn.kernels.cpu.distributed`); everything here runs between runs of steps,
at the points where a single-process fit runs Python anyway.  The rules:

* Rank 0's state is the fit's: its weights, generator, optimizer and schedule state
  (and its backup, when resuming) are sent to every rank before the first step.
* Every decision that ends a fit is taken on values every rank holds bit for bit (the
  global loss, validation and weights), or agreed by a collective: an error on any
  rank (bad input, a callback that raised), a callback asking to stop, Ctrl-C.  Every
  rank then raises the same error, or stops after the same step.
* What ``fit`` reports is global: the loss of the global batches, the validation loss
  and metric over every rank's validation shard, the rows of every rank.
* Output and files on rank 0 only: ``verbose``, :class:`~fastdnn.ProgressBar` and
  :class:`~fastdnn.BackupAndRestore` callbacks are dropped on the other ranks.

``docs/distributed.md`` has the semantics in full, cluster usage and the cost model.
"""
import builtins
import contextlib
import importlib
import math
import zlib

import numpy as np

from .callbacks import BackupAndRestore, CSVLogger, ModelCheckpoint, ProgressBar
from .fitting import FitRun, History, deferred_interrupts
from .kernels import spec
from .model import _kept_for_refusal, _predictions, _r2, training_alone
from .optim import LBFGS
from .schedules import make_schedule
from .validation import _as_numeric, check_positive_int, check_targets, check_verbose

#: Callbacks that write (to a terminal or a file): kept on rank 0 only.
ROOT_ONLY = (ProgressBar, BackupAndRestore, ModelCheckpoint, CSVLogger)


def n_ranks(comm):
    """The size of ``comm``, checked to be an mpi4py intracommunicator."""
    try:
        from mpi4py import MPI
    except ImportError:
        raise TypeError("comm must be an mpi4py communicator (pip install 'fastdnn[mpi]'); "
                        f"got {type(comm).__name__}") from None
    if not isinstance(comm, MPI.Intracomm) or comm == MPI.COMM_NULL:
        raise TypeError(f"comm must be an mpi4py intracommunicator such as MPI.COMM_WORLD; "
                        f"got {comm!r}")
    return comm.Get_size()


def _rebuild(record, rank):
    """The exception described by ``record`` (see :func:`agree`), raised as rank ``rank``'s."""
    module, name, message = record
    cls = None
    if module == "builtins":
        cls = getattr(builtins, name, None)
    elif module.split(".")[0] == "fastdnn":  # fastdnn's own (the CLI's UsageError, ...)
        cls = getattr(importlib.import_module(module), name, None)
    text = f"rank {rank}: {message}"
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(text)
        except TypeError:  # an exception type with another constructor
            pass
    return RuntimeError(f"rank {rank}: {name}: {message}")


def agree(comm, work, share=False):
    """Run ``work()`` on every rank of ``comm``; if it raised on any, raise the error of
    the lowest such rank on every rank (one allgather, so no rank waits for a rank
    that already left).

    Builtin and fastdnn exception types keep their type (a ``ValueError`` on rank 2 is
    a ``ValueError`` everywhere, its message prefixed with ``rank 2:``); others become
    a ``RuntimeError`` naming them.  Returns the local result, or with ``share`` the list
    of every rank's (which must then pickle).
    """
    record = error = result = None
    try:
        result = work()
    except Exception as exc:
        error = exc
        record = (type(exc).__module__, type(exc).__qualname__, str(exc))
    gathered = comm.allgather((record, result if share else None))
    for rank, (failed, _) in enumerate(gathered):
        if failed is not None:
            agreed = _rebuild(failed, rank)
            agreed.agreed = True  # every rank raises it: the CLI prints it on rank 0 only
            raise agreed from error
    return [r for _, r in gathered] if share else result


def _sum(comm, values):
    """The sum over the ranks of float64 ``values``, added in rank order (the same bits on
    every rank, whatever the MPI)."""
    return np.sum(np.array(comm.allgather(np.asarray(values, dtype=np.float64))), axis=0)


def _bcast_state(comm, state):
    """Rank 0's ``(header, arrays)`` (:meth:`FitRun.backup`) on every rank; the arrays
    go as buffers, not pickles (the weights of a large net)."""
    header, arrays = state if comm.Get_rank() == 0 else (None, None)
    header, shapes = comm.bcast((header, None if arrays is None else
                                 {k: (a.shape, a.dtype.str) for k, a in arrays.items()}))
    if arrays is None:
        arrays = {k: np.empty(shape, dtype=dtype) for k, (shape, dtype) in shapes.items()}
    for key in sorted(arrays):
        arrays[key] = np.ascontiguousarray(arrays[key])
        comm.Bcast(arrays[key], root=0)
    return header, arrays


def _balanced_class_weight(net, comm, args):
    """``class_weight="balanced"`` over the union of the shards, as a ``{label: weight}``
    dict (scikit-learn's ``n / (k * count)`` with every rank's training rows counted: a
    ``validation_split``'s held-out rows not, as in one process)."""
    X, y = args["X"], args["y"]

    def local_counts():
        if getattr(X, "ndim", None) == 2 and X.shape[0] == 0:  # an empty shard (_stand_in)
            return np.zeros(max(net.sizes[-1], 2), dtype=np.int64)
        X_checked = net._backend.check_X(X)
        T = check_targets(y, net._loss, net.sizes[-1], X_checked.shape[0], net.dtype)
        net._class_weights(T, "balanced")  # for its checks: a classifier, one label per row
        T = T[net._training_rows(T, args["validation_split"], args["callbacks"])]
        labels = T[:, 0] > 0.5 if net._loss == spec.BINARY_CROSS_ENTROPY else T[:, 0]
        return np.bincount(labels.astype(np.int64), minlength=max(net.sizes[-1], 2))

    counts = np.sum(agree(comm, local_counts, share=True), axis=0).astype(np.float64)
    present = counts > 0
    table = np.ones(counts.size)
    table[present] = counts.sum() / (present.sum() * counts[present])
    return {label: float(table[label]) for label in np.flatnonzero(present)}


def _weight_scale(net, X, y, sample_weight, class_weight=None):
    """``(scale, rows)``: ``fit``'s checks divide a call's weights by their mean (see
    ``validation.normalize_weights``), which is this ``scale`` for these rows (1 without
    weights).  A rank's mean is not the union's, so :func:`plan_fit` puts that factor
    back and divides by the union's mean.  Called after the checks passed."""
    rows = len(X)
    if sample_weight is None and class_weight is None:
        return 1.0, rows
    w = np.ones(rows)
    if sample_weight is not None:
        w = np.broadcast_to(_as_numeric(sample_weight, "sample_weight").astype(np.float64),
                            (rows,))
    if class_weight is not None:
        T = check_targets(y, net._loss, net.sizes[-1], rows, net.dtype)
        w = w * net._class_weights(T, class_weight, allow_zero=True)
    top = w.max()  # as normalize_weights: no overflow for any finite weights
    return (float(top * np.mean(w / top)) if top > 0 else 0.0), rows


def _no_weight(net, X, y, sample_weight, class_weight=None):
    """Whether ``sample_weight`` (times ``class_weight``'s weights of the labels ``y``)
    is valid for the rows ``X`` and every weight is 0: a shard that counts for nothing,
    which only the union's weights may be (the rank's ``fit`` checks then take it
    unweighted, and :func:`plan_fit` scales it by 0).  Only the row count of ``X`` is
    read: ``fit``'s checks convert ``X`` once, after this."""
    if sample_weight is None and class_weight is None:
        return False
    try:
        rows = len(X)
        w = np.ones(rows)
        if sample_weight is not None:
            given = _as_numeric(sample_weight, "sample_weight").astype(np.float64)
            if given.shape not in ((), (rows,)):
                return False
            w = w * given
        if class_weight is not None and not bool(np.all(w == 0)):
            T = check_targets(y, net._loss, net.sizes[-1], rows, net.dtype)
            w = w * net._class_weights(T, class_weight, allow_zero=True)
    except (TypeError, ValueError):
        return False  # fit's own checks say what is wrong
    return rows > 0 and bool(np.all(w == 0))


def _stand_in(X, y, sample_weight=None):
    """``(X, y, sample_weight, rows)`` for a rank's shard: an empty one (``X`` of shape
    ``(0, d)``) as one row of zeros of weight 0, which counts for nothing (as a rank
    whose rows all weigh 0) where ``fit``'s checks refuse no rows; ``rows``: the real
    ones."""
    if (getattr(X, "ndim", None) != 2 or X.shape[0] != 0 or getattr(y, "ndim", 0) < 1
            or y.shape[0] != 0):
        return X, y, sample_weight, len(X)
    kind = y.dtype if y.dtype.kind in "biuf" else np.float64
    return np.zeros((1, X.shape[1])), np.zeros((1,) + y.shape[1:], dtype=kind), np.zeros(1), 0


def _common_scale(scales):
    """The mean weight of the union of the ranks' rows, from each rank's ``(scale, rows)``."""
    top = max(scale for scale, _ in scales)
    rows = sum(r for _, r in scales)
    return top * sum(scale / top * r for scale, r in scales) / rows if rows else 1.0


def _resumed_starts(net, comm, args):
    """``args`` for this rank's checks, a resumed fit's generators set where the backed-up
    fit's began, so each rank draws its ``validation_split`` again as it did: rank 0's
    from its :class:`~fastdnn.BackupAndRestore` (as in one process), the other ranks'
    from the list in rank 0's backup (ranks may seed their nets differently; each took
    rank 0's start, and held out rows it had trained on).  The writers (``ROOT_ONLY``)
    leave the other ranks' callbacks here."""
    rank = comm.Get_rank()
    callbacks = args["callbacks"]
    starts = None
    if rank == 0 and isinstance(callbacks, (list, tuple)):
        for callback in callbacks:
            if isinstance(callback, BackupAndRestore):
                starts = callback.start_states() or starts
    starts = comm.bcast(starts)
    if rank == 0:
        return args
    if starts is not None and len(starts) == comm.Get_size():
        net._rng.bit_generator.state = starts[rank]
    if isinstance(callbacks, (list, tuple)):
        args = dict(args, callbacks=[cb for cb in callbacks if not isinstance(cb, ROOT_ONLY)])
    return args


def _fingerprint(net, plan, batch_size, schedule, class_weight):
    """What every rank must share: the net and ``fit``'s arguments (not the data)."""
    return dict(sizes=net.sizes, activations=net.activations, loss=net.loss_name,
                dtype=net.dtype.name, l2=net.l2, dropout=net.dropout, epochs=plan.epochs,
                batch_size=batch_size, shuffle=plan.sampling, patience=plan.patience,
                clip_norm=plan.clip_norm, restore_best=plan.restore_best,
                validation=plan.validation is not None, optimizer=repr(plan.optimizer),
                schedule=repr(make_schedule(schedule)),
                class_weight=None if class_weight is None else
                sorted((float(k), float(v)) for k, v in class_weight.items()))


def plan_fit(net, comm, args):
    """The checked plan of a distributed fit (``args``: ``fit``'s arguments by name) and
    its ``(steps_per_epoch, rows)``, agreed by every rank.

    The local batch is ``batch_size`` capped at the largest shard; an epoch has as many
    steps as the largest shard needs; the schedule's step count is the global one.
    """
    balanced = comm.allgather(isinstance(args["class_weight"], str)
                              and args["class_weight"] == "balanced")
    if any(balanced):  # a collective: on every rank or on none (one rank waited forever)
        if not all(balanced):
            raise ValueError(f"the ranks disagree on class_weight: 'balanced' on rank "
                             f"{balanced.index(True)}, not on rank {balanced.index(False)}; "
                             f"every rank must call fit with the same arguments")
    args = _resumed_starts(net, comm, args)  # before the counts: the held-out rows
    if any(balanced):
        args = dict(args, class_weight=_balanced_class_weight(net, comm, args))

    def local_plan():
        if net.device != "cpu":
            raise ValueError("a distributed fit runs on the CPU; this net is on "
                             f"{net.device!r}")
        opt = args["optimizer"]
        if isinstance(opt, LBFGS) or (isinstance(opt, str) and opt.lower() == "lbfgs"):
            raise ValueError("L-BFGS is not distributed (it is for data one process "
                             "holds); use SGD, Adam or AdamW with comm")
        batch_size = check_positive_int("batch_size", args["batch_size"])
        class_weight = args["class_weight"]
        X, y, weight, rows = args["X"], args["y"], args["sample_weight"], None
        if args["validation_split"] is None:  # a split needs rows to hold out
            X, y, weight, rows = _stand_in(X, y, weight)
        dead = _no_weight(net, X, y, weight, class_weight)
        val = args["validation_data"]
        if isinstance(val, (tuple, list)) and len(val) in (2, 3):
            val = _stand_in(*val)[:3]
            if len(args["validation_data"]) == 2 and val[2] is None:
                val = val[:2]
        val_dead = (isinstance(val, (tuple, list)) and len(val) == 3
                    and _no_weight(net, val[0], val[1], val[2]))
        plan = net._fit_plan(X, y, args["epochs"], batch_size, opt,
                             args["schedule"], tuple(val[:2]) if val_dead else val,
                             args["shuffle"], args["patience"],
                             sample_weight=None if dead else weight,
                             class_weight=None if dead else class_weight,
                             **{k: args[k] for k in ("clip_norm", "restore_best",
                                                     "validation_split", "callbacks")})
        if plan.split is None:
            scales = (_weight_scale(net, X, y, weight, class_weight),
                      _weight_scale(net, val[0], val[1], val[2] if len(val) == 3 else None)
                      if val is not None else (1.0, 0))
        else:  # each part's weights were scaled among its rows: the held-out ones by
            # their sample weights alone (fit's _fit_plan)
            keep, held = plan.split
            y_rows = np.asarray(y)
            w_rows = None if weight is None else np.broadcast_to(
                np.asarray(weight, dtype=np.float64), (len(y_rows),))
            scales = tuple(_weight_scale(net, part, y_rows[part],
                                         None if w_rows is None else w_rows[part], cw)
                           for part, cw in ((keep, class_weight), (held, None)))
        rows = plan.X.shape[0] if rows is None else rows
        return (plan, _fingerprint(net, plan, batch_size, args["schedule"], class_weight),
                scales, rows)

    plan, fingerprint, scales, rows = agree(comm, local_plan)
    shared = comm.allgather((fingerprint, plan.X.shape[0], plan.optimizer.t, scales, rows))
    for rank, (other, *_) in enumerate(shared):
        for key in fingerprint:
            if other[key] != shared[0][0][key]:
                raise ValueError(
                    f"the ranks disagree on {key}: {shared[0][0][key]!r} on rank 0, "
                    f"{other[key]!r} on rank {rank}; every rank must build the same net and "
                    f"call fit with the same arguments (only the data differ)")
    if all(other[3][0][0] == 0 for other in shared):
        raise ValueError("sample_weight gives every row of every rank weight 0: no sample "
                         "would count")
    if args["validation_data"] is not None and all(other[3][1][0] == 0 for other in shared):
        raise ValueError("validation_data's sample weights give every row of every rank "
                         "weight 0: no validation sample would count")
    # fit's checks scaled each rank's weights to mean 1: rescale them to the union's (a
    # rank whose weights are all 0 by 0).
    train, val = (scales[i][0] / _common_scale([other[3][i] for other in shared])
                  for i in range(2))
    if train != 1.0:
        plan.T[:, -1] *= train
    if plan.validation is not None and val != 1.0:
        plan.validation[1][:, -1] *= val
    shard_rows = [shard for _, shard, _, _, _ in shared]
    batch_size = min(fingerprint["batch_size"], max(shard_rows))
    steps = max(-(-shard // batch_size) for shard in shard_rows)
    sched = make_schedule(args["schedule"])
    t0 = shared[0][2]  # rank 0's optimizer state is the fit's
    plan = plan._replace(batch_size=batch_size,
                         schedule=(sched.code, sched.params(t0 + plan.epochs * steps)))
    return plan, steps, sum(real for *_, real in shared)


def fit(net, comm, args):
    """``net.fit(**args, comm=comm)`` on a communicator of several ranks (see
    :meth:`fastdnn.MLP.fit`); returns the global History on every rank."""
    from mpi4py import MPI
    with contextlib.ExitStack() as alone:
        # Agreed: a bad verbose, or this net in a fit in another thread, on one rank
        # raised there alone, and the other ranks waited for it in the next collective.
        agree(comm, lambda: (check_verbose(args["verbose"]),
                             alone.enter_context(training_alone([net],
                                                                [args["optimizer"]]))))
        # A refused fit leaves the net as it was, as in one process: the checks drew the
        # validation_split from its generator, and a backup rewound it.
        put_back = _kept_for_refusal(net, args["optimizer"], args["schedule"])
        try:
            plan, steps, rows = plan_fit(net, comm, args)
        except BaseException:
            put_back()
            raise
        run = None
        try:
            with net._backend.limit_threads(net.n_threads), deferred_interrupts() as pressed:
                try:
                    run = DistributedFitRun(net, plan, args["verbose"], comm, steps, rows)
                except BaseException:  # refused (a backup of another fit): as it was
                    put_back()
                    raise
                while not run.done:
                    run.train_epoch(lambda: comm.allreduce(int(pressed()), op=MPI.MAX) > 0)
                # Ctrl-C in the last run of steps: every rank stops, not only the one
                # pressed (deferred_interrupts raises there as the block ends).
                if comm.allreduce(int(pressed()), op=MPI.MAX) > 0:
                    raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            exc.history = run.history if run is not None else History()
            raise
        finally:
            if run is not None:
                run.close()
        return run.history


class DistributedFitRun(FitRun):
    """A :class:`~fastdnn.fitting.FitRun` whose steps are global and whose decisions are
    agreed: each override below is a collective, reached by every rank in the same
    order because every rank runs the same epochs and runs of steps."""

    def __init__(self, net, plan, verbose, comm, steps_per_epoch, rows):
        self.comm = comm
        self.rank = comm.Get_rank()
        self._global_steps = steps_per_epoch
        self.rows = rows
        self._val_mean = None  # the global weighted mean of the validation targets (mse)
        # Every rank's generator as the fit began: a resumed fit draws each rank's
        # validation_split from its own again (rank 0's is the backup's rng_start).
        self.rng_starts = comm.allgather(plan.rng_start)
        if self.rank != 0:
            plan = plan._replace(callbacks=tuple(cb for cb in plan.callbacks
                                                 if not isinstance(cb, ROOT_ONLY)))
            verbose = False
        super().__init__(net, plan, verbose)

    @property
    def rows_per_epoch(self):
        return self.rows

    @property
    def steps_per_epoch(self):
        return self._global_steps

    def _attach(self):
        # Rank 0 resumes from its backup if it has one; then every rank takes its state.
        agree(self.comm, super()._attach if self.rank == 0 else lambda: None)
        header, arrays = _bcast_state(self.comm, self.backup() if self.rank == 0 else None)
        if self.rank != 0:
            if "opt_state" not in arrays:
                self.plan.optimizer.state = None
            self.restore(header, arrays, check=False)

    def _make_trainer(self):
        from .kernels.cpu.distributed import DistributedTrainer
        plan = self.plan
        return DistributedTrainer(self.net._backend, plan.X, plan.T, plan.batch_size,
                                  plan.optimizer, plan.schedule, plan.clip_norm, self.comm,
                                  self.steps_per_epoch)

    def _call(self, hook, *args):
        return any(agree(self.comm, lambda: FitRun._call(self, hook, *args), share=True))

    def _take_new_lr(self):
        # Agreed: refused on one rank, the others waited in the next allreduce; and the
        # lr must be every rank's (set on one, the weights' checksum blamed MPI).
        agree(self.comm, super()._take_new_lr)
        rates = self.comm.allgather(self.plan.optimizer.lr)
        if len(set(rates)) > 1:
            raise ValueError(f"the ranks' callbacks set different lr: {rates}; set the same "
                             f"on every rank")

    def _slice(self, remaining):
        from mpi4py import MPI
        return self.comm.allreduce(super()._slice(remaining), op=MPI.MIN)

    def validate(self):
        """Validation loss and metric over every rank's validation shard, weighted."""
        Xv, Tv = self.plan.validation
        value, Z = self.net._backend.evaluate(Xv, Tv, want_logits=True)
        w = Tv[:, -1].astype(np.float64)
        weight = w.sum()  # 0 on a rank whose validation rows count for nothing
        loss_sum = value * weight if weight > 0 else 0.0
        if self.net._loss in spec.CLASSIFIERS:  # accuracy: a weighted mean, as the loss
            right = self.net._metric(Z, Tv) * weight if weight > 0 else 0.0
            sums = _sum(self.comm, [loss_sum, weight, right])
            return _ratio(sums[0], sums[1]), _ratio(sums[2], sums[1])
        T = Tv[:, :-1].astype(np.float64)
        Z = _predictions(self.net._loss, Z)  # poisson: R^2 of the means exp(z)
        if self._val_mean is None:  # R^2 needs the global mean of the targets (once)
            sums = _sum(self.comm, np.concatenate([[w.sum()], w @ T]))
            self._val_mean = sums[1:] / sums[0]
        k = T.shape[1]
        sums = _sum(self.comm, np.concatenate([[loss_sum, weight], w @ (T - Z) ** 2,
                                               w @ (T - self._val_mean) ** 2]))
        return _ratio(sums[0], sums[1]), _r2(sums[2:2 + k], sums[2 + k:])

    def book(self, result, seconds, rate=None, interrupted=lambda: False):
        # The allreduce gives every rank the same sums, so the weights stay the same; a
        # checksum per epoch turns an MPI that broke that into an error, not a drift.
        # The epoch's time and rate are rank 0's, so the History is the same everywhere.
        shared = self.comm.allgather((zlib.crc32(self.net._backend.theta), seconds, rate))
        if len({crc for crc, _, _ in shared}) > 1:
            raise RuntimeError(f"the ranks' weights differ after epoch {self.epoch + 1}: this "
                               "MPI's allreduce did not give every rank the same sum")
        super().book(result, *shared[0][1:], interrupted)

    @property
    def n_ranks(self):
        return self.comm.Get_size()

    def _loss_is_finite(self, rows=None):
        # Every rank's shard: the ranks keep the same weights.
        return all(self.comm.allgather(super()._loss_is_finite(rows)))

    def backup(self):
        header, arrays = super().backup()
        header["rng_starts"] = self.rng_starts  # each rank's, for its validation_split
        return header, arrays


def _ratio(num, den):
    return float(num / den) if den > 0 else math.nan
