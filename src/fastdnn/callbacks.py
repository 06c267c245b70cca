"""Callbacks of ``fit``: objects called at the edges of a fit, of its epochs, and of the
runs of steps an epoch is trained in (Keras' protocol, trimmed).

A callback defines any of these methods (each optional):

* ``on_train_begin(logs)``: before the first epoch; ``logs["compiling"]`` says whether
  the training kernels still have to be compiled (or loaded from Numba's cache).
* ``on_progress(epoch, rows, total_rows, seconds)``: after each run of steps inside an
  epoch (runs last a fraction of a second; see ``config.SLICE_SECONDS``).
* ``on_epoch_end(epoch, logs)``: after each epoch (0-based), with the epoch's record
  (``loss``, ``val_loss``, ``val_metric``, ``lr``, ``seconds``) and ``rate`` (samples/s,
  ``None`` where the epoch's time is mostly the kernels' compile); return ``True`` to
  stop.
* ``on_train_end(logs)``: after the last epoch (not after an error or an interrupt).

And to reach the net: ``set_fit(net, history)``, called before ``on_train_begin`` with
the net being trained and the fit's :class:`~fastdnn.fitting.History` (a resumed fit's
holds the epochs done), and ``detach()``, called however the fit ends.

None of them runs per step: a callback costs nothing inside the compiled loop.
"""
import json
import math
import os
import sys

import numpy as np

from . import config, serialize
from .validation import as_real


class Callback:
    """Base class with every hook doing nothing (subclassing it is optional)."""

    def on_train_begin(self, logs):
        pass

    def on_progress(self, epoch, rows, total_rows, seconds):
        pass

    def on_epoch_end(self, epoch, logs):
        return False

    def on_train_end(self, logs):
        pass


def _file_path(owner, path, folder=True):
    """``path`` as a string, for the callback ``owner`` to write; a ``ValueError`` where
    its folder does not exist (unless not ``folder``: checked later)."""
    path = os.fspath(path)
    if not isinstance(path, str) or not path:
        raise TypeError(f"{owner} needs a file path")
    where = os.path.dirname(os.path.abspath(path))
    if folder and not os.path.isdir(where):
        raise ValueError(f"{owner}: folder {where} does not exist")
    return path


def says_stop(answer):
    """Whether a callback's ``on_epoch_end`` answer asks to stop: ``True`` or NumPy's
    ``True`` (what a comparison such as ``np.isfinite(loss)`` returns, which an ``is
    True`` test let pass); anything else trains on."""
    return answer is True or (isinstance(answer, np.bool_) and bool(answer))


def prints_to_stdout(callbacks):
    """Whether one of ``callbacks`` is a :class:`ProgressBar` on standard output, which
    ``verbose=True`` would add a second of (every line printed twice)."""
    return any(isinstance(cb, ProgressBar) and cb.stream in (None, sys.stdout)
               for cb in callbacks)


def _hms(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


class ProgressBar(Callback):
    """Progress of a fit on a stream: a line per epoch, and inside long epochs the rows
    done, the rate and the time left.

    On a terminal the in-epoch line is redrawn in place (``\\r``); elsewhere (a log
    file, a pipe) a plain line is written at most every ``interval`` seconds, so logs
    stay readable.  ``fit(..., verbose=True)`` adds one.

    Parameters
    ----------
    stream : file, optional
        Where to write (default ``sys.stdout``, looked up at each write).
    interval : float, default 10
        Seconds between in-epoch lines when the stream is not a terminal (0.5 s on one).
    """

    def __init__(self, stream=None, interval=10.0):
        if stream is not None and not callable(getattr(stream, "write", None)):
            # A path was taken, and the fit died at its first line, an epoch in.
            raise TypeError(f"stream must be a file-like object with write(); got "
                            f"{type(stream).__name__} (open a path first)")
        self.stream = stream
        try:
            seconds = as_real("interval", interval)
        except TypeError:
            seconds = math.nan
        if not 0 <= seconds < math.inf:  # nan wrote no in-epoch line, silently
            raise ValueError(f"interval must be a finite number of seconds >= 0; got "
                             f"{interval!r}")
        self.interval = seconds
        self.epochs = None
        self._last = 0.0  # seconds into the epoch of the last in-epoch line
        self._first = None  # (rows, seconds) at the epoch's first report
        self._drawn = 0  # length of the line redrawn in place (0: none)

    def _out(self):
        return self.stream if self.stream is not None else sys.stdout

    def _tty(self):
        isatty = getattr(self._out(), "isatty", None)
        try:
            return bool(isatty and isatty())
        except (ValueError, OSError):  # a closed stream
            return False

    def _write(self, text, end="\n"):
        out = self._out()
        out.write(text + end)
        out.flush()

    def on_train_begin(self, logs):
        # A fit stopped mid-epoch (Ctrl-C, an error) left its epoch's state: the next
        # fit's first line waited for the old epoch's time, at a rate counted from it.
        if self._drawn:
            self._write("")
        self._last, self._first, self._drawn = 0.0, None, 0
        self.epochs = logs.get("epochs")
        self._said_compiling = False
        if logs.get("compiling"):
            self.on_compiling()

    def on_compiling(self):
        """Kernels compile now (at the fit's start, or a part it reached late): say so,
        once a fit."""
        if getattr(self, "_said_compiling", False):
            return
        self._said_compiling = True
        if self._drawn:  # on its own line, not over the one redrawn in place
            self._write("")
            self._drawn = 0
        self._write("compiling kernels (first run only; cached on disk afterwards) ..."
                    if config.CACHE else
                    "compiling kernels (no disk cache: every process compiles them) ...")

    def on_progress(self, epoch, rows, total_rows, seconds):
        if self._first is None:
            # The rate counts from here: the epoch's first run of steps may hold the
            # kernels' compile (seconds for a few rows).
            self._first = (rows, seconds)
            return
        tty = self._tty()
        if rows >= total_rows or seconds - self._last < (0.5 if tty else self.interval):
            return
        self._last = seconds
        rate = (rows - self._first[0]) / max(seconds - self._first[1], 1e-12)
        line = (f"epoch {epoch + 1}/{self.epochs}  {rows:,}/{total_rows:,} rows  "
                f"{rate:,.0f} samples/s  ETA {_hms((total_rows - rows) / max(rate, 1e-12))}")
        if tty:  # padded over the longer line it replaces (a shorter ETA left its tail)
            self._write("\r" + line.ljust(self._drawn), end="")
            self._drawn = len(line)
        else:
            self._write(line)

    def on_epoch_end(self, epoch, logs):
        line = f"epoch {epoch + 1}/{self.epochs}  loss {logs['loss']:.4f}"
        if not math.isnan(logs["val_loss"]):
            line += f"  val_loss {logs['val_loss']:.4f}  val_metric {logs['val_metric']:.4f}"
        if logs.get("rate") is not None:
            line += f"  {logs['rate']:,.0f} samples/s"
        if self._drawn:  # finish the line redrawn in place, over all of it
            line = "\r" + line.ljust(self._drawn)
            self._drawn = 0
        self._write(line)
        self._last, self._first = 0.0, None
        return False


class BackupAndRestore(Callback):
    """Resume a fit killed at any moment (Keras' ``BackupAndRestore``).

    At each epoch end, after every callback's ``on_epoch_end`` (so that it knows whether
    one stopped the fit), the whole state of the fit is written atomically to ``path``:
    the weights, the optimizer's state and step count, the schedule's state, the
    net's random generator, the early-stopping and best-weights state, and the
    history.  When ``fit`` starts and ``path`` exists, training resumes from it (the
    epochs done count toward ``epochs``); when ``fit`` completes, ``path`` is deleted.
    A fit killed (even with SIGKILL) and run again with the same arguments ends with
    weights bit-identical to a fit never interrupted, on a new net or on the same one
    (it draws the same ``validation_split``).  A backup made with other arguments (all
    but ``epochs``, which may grow: the schedule's parameters, the targets and their
    sample and class weights too) or another kind of net is refused (``ValueError``), and
    so is one of a fastdnn before 2026-11-29 (which did not record them all, and whose
    epochs drew other permutations: backup version 1).
    An ``optimizer.lr`` a callback set during the fit is backed up, and restored (so the
    rerun's own ``lr`` is not compared: the backup's goes on).  Ctrl-C during the last
    epoch's last run keeps the backup (of the ended fit: a rerun only ends it); a
    backup whose arrays or counts do not fit the fit is refused before anything of it
    is restored; one of more epochs than a rerun asks for ends that rerun at once.

    Parameters
    ----------
    path : str or os.PathLike
        The backup file (``.npz``); its folder must exist.
    """

    def __init__(self, path):
        self.path = _file_path("BackupAndRestore", path)
        self.run = None

    def start_state(self):
        """The net's generator state when the backed-up fit began (``None`` without a
        readable backup): ``fit`` starts from it again, so that it draws the same
        ``validation_split`` (drawn anew, the split put rows the net had trained on into
        the held-out part)."""
        return self._header().get("rng_start")

    def start_states(self):
        """Every rank's generator state when the backed-up fit began, for a fit over MPI
        (``None`` without a readable backup, or for one of one process)."""
        return self._header().get("rng_starts")

    def _header(self):
        """The backup's header, or an empty dict without a readable one."""
        try:
            with np.load(self.path, allow_pickle=False) as f:
                header = json.loads(str(f["header"]))
        except (OSError, KeyError, AttributeError, TypeError, *serialize.DAMAGE):
            return {}  # no backup; a damaged one is reported by attach
        return header if isinstance(header, dict) else {}

    def attach(self, run):
        """Called by ``fit`` before training: restore ``run`` from the backup if any."""
        serialize.check_writable(self.path)  # not at the first epoch's end, an epoch lost
        self.run = run
        if os.path.exists(self.path):
            try:
                data = np.load(self.path, allow_pickle=False)
                if not isinstance(data, np.lib.npyio.NpzFile):  # TypeError of the with
                    raise ValueError("it holds a single array (.npy), not a backup")
                with data:
                    state = {k: data[k] for k in data.files}
                if "header" not in state:  # said "'header'"
                    raise ValueError("it has no header: BackupAndRestore did not write it "
                                     "(a model file of MLP.save, or data?)")
                header = json.loads(str(state.pop("header")))
            except (KeyError, *serialize.DAMAGE) as exc:  # truncated, damaged, not a zip
                reason = exc
                if "allow_pickle" in str(exc):  # NumPy's advice to unpickle it
                    reason = "it is no .npz archive: a backup is a zip BackupAndRestore writes"
                raise ValueError(f"{self.path!r} is not a backup of this fit: {reason}") from None
            try:
                run.restore(header, state)
            except (OSError, ValueError, KeyError) as exc:
                self.run = None  # no fit to hold on to
                raise ValueError(f"{self.path!r} is not a backup of this fit: {exc}") from None

    def detach(self):
        """Called by ``fit`` as it ends: let go of the fit (its data, buffers and net)."""
        self.run = None

    def after_epoch_end(self, epoch):
        """Called by ``fit`` after every callback's ``on_epoch_end``: write the backup."""
        header, arrays = self.run.backup()
        arrays["header"] = np.array(json.dumps(header))
        serialize.write_atomic(self.path, lambda f: np.savez(f, **arrays))
        return False

    def on_train_end(self, logs):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


#: What each ``monitor`` of :class:`ModelCheckpoint` watches, and whether lower is better.
_MONITORS = {"loss": True, "val_loss": True, "val_metric": False}


class ModelCheckpoint(Callback):
    """Save the net at epoch ends, every epoch or the best so far (Keras'
    ``ModelCheckpoint``).

    Each save is :meth:`MLP.save <fastdnn.MLP.save>`'s: atomic, so a fit killed at any
    moment leaves the last complete file.  In a fit over MPI only rank 0 writes (every
    rank holds the same weights).  With :class:`BackupAndRestore`, a resumed fit's best
    so far counts from the backed-up epochs (a new instance would otherwise overwrite
    the best file with the first epoch after the restart).

    Parameters
    ----------
    path : str or os.PathLike
        The file (``.npz``).  It may name fields of the epoch's record, filled in at each
        save: ``{epoch}`` (1-based, as Keras), ``{loss}``, ``{val_loss}``,
        ``{val_metric}``, ``{lr}``, ``{seconds}``, with formats (``"net-{epoch:03d}.npz"``).
        Its folder must exist.
    monitor : {"auto", "loss", "val_loss", "val_metric"}, default "auto"
        What ``save_best_only`` compares: ``"auto"`` watches what early stopping does,
        ``val_loss`` when the fit has validation data, else ``loss``.  ``val_metric``
        (accuracy or R^2) is better higher, the losses lower.
    save_best_only : bool, default False
        Save only at an epoch whose monitored value is strictly better than every
        earlier epoch's of the fit (NaN never is); else at every epoch.

    Attributes
    ----------
    best : float
        The best monitored value of the fit so far (``inf``, or ``-inf`` for
        ``val_metric``, before any epoch).
    saved : list of str
        The paths written, in order.
    """

    def __init__(self, path, monitor="auto", save_best_only=False):
        path = _file_path("ModelCheckpoint", path, folder=False)
        try:
            example = path.format(epoch=1, rate=1.0, **{k: 0.5 for k in _LOG_KEYS})
        except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"ModelCheckpoint: path {path!r} names a field that is not "
                             f"'epoch' or one of {', '.join(_LOG_KEYS)} (or a bad format): "
                             f"{exc!r}") from None
        _file_path("ModelCheckpoint", example)  # its folder, as the fields fill it
        self._example = example
        if not isinstance(monitor, str) or (monitor != "auto" and monitor not in _MONITORS):
            raise ValueError(f"monitor must be 'auto' or one of {', '.join(_MONITORS)}; "
                             f"got {monitor!r}")
        if not isinstance(save_best_only, (bool, np.bool_)):
            raise TypeError(f"save_best_only must be True or False; got {save_best_only!r}")
        self.path = path
        self.monitor = monitor
        self.save_best_only = bool(save_best_only)
        self.saved = []
        self._net = None
        self._history = None
        self._watch = None
        self.best = math.inf

    def set_fit(self, net, history):
        """Called by ``fit`` before ``on_train_begin``: the net to save, the fit's history."""
        self._net, self._history = net, history

    def detach(self):
        """Called by ``fit`` as it ends: let go of the net."""
        self._net = self._history = None

    def on_train_begin(self, logs):
        serialize.check_writable(getattr(self, "_example", self.path))  # not at epoch 1's end
        watch = self.monitor
        if watch == "auto":
            watch = "val_loss" if logs.get("validation") else "loss"
        elif watch != "loss" and logs.get("validation") is False:
            raise ValueError(f"ModelCheckpoint(monitor={watch!r}) needs validation data "
                             "(validation_data or validation_split)")
        self._watch = watch
        lower = _MONITORS[watch]
        self.best = math.inf if lower else -math.inf
        # A resumed fit's epochs so far (BackupAndRestore): the best among them stands.
        for value in (getattr(self._history, watch, None) or []):
            if self._better(value):
                self.best = value

    def _better(self, value):
        if math.isnan(value):
            return False
        return value < self.best if _MONITORS[self._watch] else value > self.best

    def on_epoch_end(self, epoch, logs):
        value = logs[self._watch]
        if self.save_best_only:
            if not self._better(value):
                return False
            self.best = value
        elif self._better(value):
            self.best = value
        rate = logs.get("rate")  # None where the epoch compiled: nan for a "{rate:.0f}"
        path = self.path.format(**dict(logs, epoch=epoch + 1,
                                       rate=math.nan if rate is None else rate))
        self._net.save(path)
        self.saved.append(path)
        return False


_LOG_KEYS = ("loss", "val_loss", "val_metric", "lr", "seconds")


class CSVLogger(Callback):
    """Write each epoch's record to a CSV file as the fit goes (Keras' ``CSVLogger``).

    One line per epoch: ``epoch`` (0-based, as Keras), ``loss``, ``val_loss``,
    ``val_metric``, ``lr``, ``seconds`` and ``rate`` (samples/s, empty where the epoch
    compiled the kernels), each number exact (``repr``).  Each line is one ``write`` to
    a file opened for appending, so a fit killed at any moment leaves whole lines.  In a
    fit over MPI only rank 0 writes.

    Parameters
    ----------
    path : str or os.PathLike
        The file; its folder must exist.
    separator : str, default ","
        One character between fields.
    append : bool, default False
        Add to an existing file (no second header) instead of starting it afresh; a
        resumed fit (:class:`BackupAndRestore`) wants ``True``: its file then keeps the
        lines of the epochs backed up, and loses those of an epoch trained again (a fit
        killed after an epoch's line, before its backup, logged that epoch twice).  Not
        the first epoch's: killed before any backup, a rerun is a new fit, and appends.
    """

    COLUMNS = ("epoch",) + _LOG_KEYS + ("rate",)

    def __init__(self, path, separator=",", append=False):
        path = _file_path("CSVLogger", path)
        if (not isinstance(separator, str) or len(separator) != 1 or separator.isalnum()
                or separator in '.-+"' or len(f"a{separator}b".splitlines()) > 1):
            # A line break of any kind (\x1e, \u2028 ...) split the log's lines apart.
            raise ValueError(f"separator must be one character that no number holds; got "
                             f"{separator!r}")
        if not isinstance(append, (bool, np.bool_)):
            raise TypeError(f"append must be True or False; got {append!r}")
        self.path, self.separator, self.append = path, separator, bool(append)
        self._done = 0  # epochs the fit has done as it begins (a resumed fit's)

    def set_fit(self, net, history):
        """Called by ``fit`` before ``on_train_begin``: a resumed fit's epochs so far."""
        self._done = len(history)

    def _drop_epochs_from(self, first):
        """Remove the last lines of epochs ``first`` and on (atomically)."""
        try:
            with open(self.path, "rb") as f:
                lines = f.read().decode().split("\n")
            lines = [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
        except FileNotFoundError:
            return
        end = len(lines)
        while end > 0:
            field = lines[end - 1].split(self.separator, 1)[0]
            if not field.strip().isdigit() or int(field) < first:
                break
            end -= 1
        if end < len(lines):
            kept = "".join(lines[:end]).encode()
            serialize.write_atomic(self.path, lambda f: f.write(kept))

    def _write(self, line, mode):
        in_place = serialize.open_in_place(self.path)  # /dev/stdout: its descriptor
        if in_place is not None:
            with in_place as f:
                f.write(line.encode())
            return
        fd = os.open(self.path, mode | os.O_WRONLY | os.O_CREAT, 0o666)
        try:
            _write_whole(fd, line.encode(), self.path)
        finally:
            os.close(fd)

    def on_train_begin(self, logs):
        header = self.separator.join(self.COLUMNS) + "\n"
        if not self.append:
            # Atomically: a kill leaves the old log or the new header, no empty file.
            serialize.write_atomic(self.path, lambda f: f.write(header.encode()))
        elif not os.path.exists(self.path) or os.path.getsize(self.path) == 0:
            self._write(header, os.O_APPEND)
        elif self._done and not serialize.written_in_place(self.path):  # resumed: the
            # lines of the epochs trained again go (a stream, /dev/stdout, keeps them: it
            # cannot be rewritten, and the kept lines were appended to it again)
            self._drop_epochs_from(self._done)

    def on_epoch_end(self, epoch, logs):
        values = [str(epoch)] + [repr(float(logs[k])) for k in _LOG_KEYS]
        values.append("" if logs.get("rate") is None else repr(float(logs["rate"])))
        self._write(self.separator.join(values) + "\n", os.O_APPEND)
        return False


def _write_whole(fd, data, path):
    """Append ``data`` to the file open at ``fd`` (``O_APPEND``) whole, or not at all.

    ``os.write`` may write part of it and return the count: a disk that filled up (or
    a file size limit) took the first bytes of a line and none of the rest, so the log
    ended in half a line whose cut number still parsed, and the next append (a resumed
    fit's) was glued onto it.  A part written is taken back before the error is raised.
    """
    start = os.fstat(fd).st_size
    done = 0
    try:
        while done < len(data):
            done += os.write(fd, data[done:])
    except OSError as exc:
        if done:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass
        raise type(exc)(exc.errno, f"cannot write {path!r} ({exc.strerror or exc})") from None


class LambdaCallback(Callback):
    """A callback of plain functions (Keras' ``LambdaCallback``): each given hook is
    called as the method of that name would be; ``on_epoch_end`` may return ``True``
    to stop.

    Parameters
    ----------
    on_train_begin, on_progress, on_epoch_end, on_train_end : callable, optional
    """

    def __init__(self, on_train_begin=None, on_progress=None, on_epoch_end=None,
                 on_train_end=None):
        given = dict(on_train_begin=on_train_begin, on_progress=on_progress,
                     on_epoch_end=on_epoch_end, on_train_end=on_train_end)
        for name, hook in given.items():
            if hook is not None and not callable(hook):
                raise TypeError(f"{name} must be callable; got {type(hook).__name__}")
            if hook is not None:
                setattr(self, name, hook)
