"""The ready-made callbacks of Keras' kind: ModelCheckpoint, CSVLogger, LambdaCallback.

Each file a callback writes is checked against the fit itself: the weights the net had
at the epochs saved, the History's records.
"""
import csv
import json
import math
import re

import numpy as np
import pytest

import fastdnn as fd
from support import assert_same_weights


def data(n=160, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    return X, (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)


class Weights:
    """The net's weights at every epoch end (before the callbacks after it)."""

    def __init__(self):
        self.net, self.at = None, []

    def set_fit(self, net, history):
        self.net = net

    def on_epoch_end(self, epoch, logs):
        self.at.append(self.net.get_weights())


def fit(callbacks, epochs=6, lr=0.5, **kw):
    X, y = data()
    net = fd.MLP([4, 8, 2], seed=0)
    weights = Weights()
    hist = net.fit(X, y, epochs=epochs, batch_size=16, optimizer=fd.SGD(lr),
                   callbacks=[weights] + callbacks, **kw)
    return net, hist, weights.at


@pytest.mark.parametrize("monitor, lower", [("auto", True), ("val_loss", True),
                                            ("val_metric", False), ("loss", True)])
def test_save_best_only_keeps_the_best_epochs_weights(tmp_path, monitor, lower):
    path = tmp_path / "best.npz"
    ck = fd.ModelCheckpoint(path, monitor=monitor, save_best_only=True)
    # lr 4: a loss that goes up and down, so that some epochs are no improvement.
    net, hist, at = fit([ck], epochs=8, lr=4.0, validation_split=0.25)
    watched = getattr(hist, "val_loss" if monitor == "auto" else monitor)
    best, improved = (math.inf if lower else -math.inf), []
    for epoch, value in enumerate(watched):
        if (value < best) if lower else (value > best):
            best = value
            improved.append(epoch)
    assert 1 <= len(improved) < len(watched) and len(ck.saved) == len(improved)
    assert ck.best == best
    assert_same_weights(fd.MLP.load(path).get_weights(), at[improved[-1]])
    assert ck._net is None  # let go of the net as the fit ended


def test_every_epoch_with_the_records_fields_in_the_name(tmp_path):
    ck = fd.ModelCheckpoint(tmp_path / "net-{epoch:02d}-{loss:.4f}-{rate:.0f}.npz")
    net, hist, at = fit([ck], epochs=3)
    assert [p.rsplit("/", 1)[1][:11] for p in ck.saved] == [
        f"net-{e:02d}-{loss:.4f}"[:11] for e, loss in zip((1, 2, 3), hist.loss)]
    assert all(f"-{loss:.4f}-" in p for p, loss in zip(ck.saved, hist.loss))
    for path, weights in zip(ck.saved, at):
        assert_same_weights(fd.MLP.load(path).get_weights(), weights)


def test_with_lbfgs_each_iterate_is_an_epoch(tmp_path):
    ck = fd.ModelCheckpoint(tmp_path / "lbfgs.npz", save_best_only=True)
    X, y = data()
    net = fd.MLP([4, 8, 2], seed=0)
    weights = Weights()
    hist = net.fit(X, y, epochs=5, optimizer="lbfgs", callbacks=[weights, ck])
    assert ck.best == min(hist.loss)
    assert_same_weights(fd.MLP.load(ck.path).get_weights(),
                        weights.at[int(np.argmin(hist.loss))])
    assert ck._net is None


def test_a_resumed_fit_keeps_the_best_of_the_epochs_before(tmp_path):
    class Crash:
        def on_epoch_end(self, epoch, logs):
            if epoch == 3:
                raise RuntimeError("killed")

    backup = tmp_path / "fit.backup.npz"
    path = tmp_path / "best.npz"
    kw = dict(epochs=6, lr=0.5, validation_split=0.25)
    with pytest.raises(RuntimeError):
        fit([fd.BackupAndRestore(backup), fd.ModelCheckpoint(path, save_best_only=True),
             Crash()], **kw)
    before = fd.MLP.load(path).get_weights()
    ck = fd.ModelCheckpoint(path, save_best_only=True)  # a new process's instance
    seen = []
    begin = fd.LambdaCallback(on_train_begin=lambda logs: seen.append(ck.best))
    net, hist, at = fit([fd.BackupAndRestore(backup), ck, begin], **kw)
    # The best of the 3 backed-up epochs (the 4th crashed before its backup) stands.
    assert seen == [min(hist.val_loss[:3])]
    if min(hist.val_loss[3:]) >= min(hist.val_loss[:3]):
        assert ck.saved == [] and fd.MLP.load(path).get_weights() == before
    else:
        assert ck.best == min(hist.val_loss)


@pytest.mark.parametrize("args, error, match", [
    (dict(path="x-{foo}.npz"), ValueError, "names a field"),
    (dict(path="x-{epoch:q}.npz"), ValueError, "bad format"),
    (dict(path="/no/such/folder/x.npz"), ValueError, "does not exist"),
    (dict(path="x.npz", monitor="accuracy"), ValueError, "monitor must be"),
    (dict(path="x.npz", save_best_only="yes"), TypeError, "save_best_only"),
    (dict(path=""), TypeError, "file path"),
])
def test_model_checkpoint_bad_arguments(tmp_path, monkeypatch, args, error, match):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=match):
        fd.ModelCheckpoint(**args)


@pytest.mark.parametrize("monitor", ["val_loss", "val_metric"])
def test_monitoring_validation_without_validation_data_is_refused(tmp_path, monitor):
    with pytest.raises(ValueError, match="needs validation data"):
        fit([fd.ModelCheckpoint(tmp_path / "x.npz", monitor=monitor)], epochs=1)
    assert not (tmp_path / "x.npz").exists()


def read_log(path, separator=","):
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=separator))


def test_csv_logger_writes_the_history_exactly(tmp_path):
    path = tmp_path / "log.csv"
    net, hist, _ = fit([fd.CSVLogger(path)], epochs=4, validation_split=0.25)
    rows = read_log(path)
    assert rows[0] == list(fd.CSVLogger.COLUMNS) and len(rows) == 5
    for epoch, row in enumerate(rows[1:]):
        assert int(row[0]) == epoch
        for key, text in zip(fd.History.KEYS, row[1:6]):
            assert float(text) == getattr(hist, key)[epoch]  # repr: exact
        assert row[6] == "" or float(row[6]) > 0


def test_csv_logger_starts_afresh_or_appends(tmp_path):
    path = tmp_path / "log.tsv"
    fit([fd.CSVLogger(path, separator="\t")], epochs=2)
    fit([fd.CSVLogger(path, separator="\t")], epochs=3)
    assert len(read_log(path, "\t")) == 4  # a new header, 3 epochs
    fit([fd.CSVLogger(path, separator="\t", append=True)], epochs=2)
    rows = read_log(path, "\t")
    assert len(rows) == 6 and rows[0][0] == "epoch" and rows[4][0] == "0"


@pytest.mark.parametrize("args, error", [
    (dict(separator="1"), ValueError), (dict(separator=",,"), ValueError),
    (dict(separator="e"), ValueError), (dict(append="no"), TypeError),
])
def test_csv_logger_bad_arguments(tmp_path, args, error):
    with pytest.raises(error):
        fd.CSVLogger(tmp_path / "log.csv", **args)


def test_lambda_callback_calls_its_functions_and_may_stop():
    calls = []
    cb = fd.LambdaCallback(on_train_begin=lambda logs: calls.append("begin"),
                           on_epoch_end=lambda epoch, logs: calls.append(epoch) or epoch == 1,
                           on_train_end=lambda logs: calls.append("end"))
    net, hist, _ = fit([cb], epochs=5)
    assert calls == ["begin", 0, 1, "end"] and len(hist.loss) == 2
    with pytest.raises(TypeError, match="on_epoch_end must be callable"):
        fd.LambdaCallback(on_epoch_end=3)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_on_train_end_gets_the_last_epochs_record(optimizer):
    # L-BFGS passed {"loss"} alone: a callback reading logs["val_loss"] raised KeyError.
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 3)), rng.integers(0, 2, 64)
    ends, epochs = [], []
    cb = fd.LambdaCallback(on_epoch_end=lambda epoch, logs: epochs.append(dict(logs)),
                           on_train_end=ends.append)
    hist = fd.MLP([3, 8, 2], seed=0).fit(X, y, epochs=3, optimizer=optimizer,
                                         validation_split=0.2, callbacks=[cb])
    assert len(ends) == 1 and ends[0] == epochs[-1]
    assert set(ends[0]) == set(fd.History.KEYS) | {"rate"}
    assert ends[0]["loss"] == hist.loss[-1] and ends[0]["val_loss"] == hist.val_loss[-1]


def test_only_a_strictly_better_value_is_saved(tmp_path):
    class Net:
        def save(self, path):
            saved.append(path)

    saved = []
    ck = fd.ModelCheckpoint(tmp_path / "{epoch}.npz", monitor="val_metric", save_best_only=True)
    ck.set_fit(Net(), fd.History())
    ck.on_train_begin(dict(epochs=5, validation=True))
    for epoch, metric in enumerate([0.5, 0.5, math.nan, 0.75, 0.75]):
        ck.on_epoch_end(epoch, dict(loss=1.0, val_loss=1.0, val_metric=metric, lr=0.1,
                                    seconds=1.0, rate=None))
    assert [p.rsplit("/", 1)[1] for p in saved] == ["1.npz", "4.npz"] and ck.best == 0.75


# -- with BackupAndRestore ---------------------------------------------------------------
class CrashAt:
    """Raise after the ``epoch``-th epoch's other callbacks, before its backup."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs):
        if epoch == self.epoch:
            raise RuntimeError("killed")


def halving(opt):
    def on_epoch_end(epoch, logs):
        opt.lr = opt.lr / 2
    return fd.LambdaCallback(on_epoch_end=on_epoch_end)


def test_a_fit_whose_lr_a_callback_sets_resumes_bit_for_bit(tmp_path):
    """The backup held the changed lr among the fit's arguments: the rerun was refused
    ("it was made with hyper=[0.025, ...]"), and it would have run at the first rate."""
    X, y = data()
    backup = tmp_path / "fit.backup.npz"

    def fit(callbacks):
        opt = fd.SGD(0.1, momentum=0.9)
        net = fd.MLP([4, 8, 2], seed=0)
        hist = net.fit(X, y, epochs=5, batch_size=16, optimizer=opt,
                       callbacks=[halving(opt)] + callbacks)
        return net, hist

    whole, whole_hist = fit([])
    with pytest.raises(RuntimeError):
        fit([fd.BackupAndRestore(backup), CrashAt(2)])
    resumed, hist = fit([fd.BackupAndRestore(backup)])
    assert hist.lr == whole_hist.lr == [0.1, 0.05, 0.025, 0.0125, 0.00625]
    assert_same_weights(resumed.get_weights(), whole.get_weights())


@pytest.mark.parametrize("then, now", [
    (dict(schedule=fd.StepDecay(4, 0.5)), dict(schedule=fd.StepDecay(4, 0.01))),
    (dict(schedule=fd.InverseTimeDecay(0.0)), dict(schedule=fd.InverseTimeDecay(1.0))),
    (dict(class_weight={0: 1.0, 1: 2.0}), dict(class_weight={0: 1.0, 1: 5.0})),
    (dict(), dict(sample_weight=np.linspace(0.5, 1.5, 160))),
])
def test_a_backup_of_other_arguments_is_refused(tmp_path, then, now):
    """A backup with another schedule's parameters went on with the backup's, silently;
    other class or sample weights went on with the new ones from the backup's state."""
    X, y = data()
    backup = tmp_path / "fit.backup.npz"
    kw = dict(epochs=4, batch_size=16, optimizer=fd.SGD(0.1))
    with pytest.raises(RuntimeError):
        fd.MLP([4, 8, 2], seed=0).fit(X, y, callbacks=[fd.BackupAndRestore(backup),
                                                        CrashAt(1)], **kw, **then)
    with pytest.raises(ValueError, match="not a backup of this fit"):
        fd.MLP([4, 8, 2], seed=0).fit(X, y, callbacks=[fd.BackupAndRestore(backup)],
                                      **kw, **now)


def test_csv_logger_of_a_resumed_fit_logs_each_epoch_once(tmp_path):
    """Killed after an epoch's line and before its backup, the epoch was trained again
    and logged twice."""
    X, y = data()
    backup, log = tmp_path / "fit.backup.npz", tmp_path / "log.csv"
    fit([fd.CSVLogger(log)], epochs=2)  # an earlier fit's lines stay
    kw = dict(epochs=6)
    with pytest.raises(RuntimeError):
        fit([fd.BackupAndRestore(backup), fd.CSVLogger(log, append=True), CrashAt(2)], **kw)
    net, hist, _ = fit([fd.BackupAndRestore(backup), fd.CSVLogger(log, append=True)], **kw)
    rows = read_log(log)
    assert [r[0] for r in rows] == ["epoch", "0", "1", "0", "1", "2", "3", "4", "5"]
    assert [float(r[1]) for r in rows[3:]] == hist.loss


def test_a_refused_fit_leaves_the_net_as_it_was(tmp_path):
    """(a) validation_split drew from the net's generator before batch_size was checked;
    (b) a refused backup had rewound it; (c) a fit refused in on_train_begin after a
    backup's restore kept the backup's weights, and its callbacks held the fit."""
    X, y = data()

    def net():
        return fd.MLP([4, 8, 2], seed=0)

    def same_after(refused):
        a, b = net(), net()
        b.fit(X, y, epochs=1, validation_split=0.25)
        a.fit(X, y, epochs=1, validation_split=0.25)
        with pytest.raises((ValueError, TypeError)):
            refused(a)
        a.fit(X, y, epochs=1, validation_split=0.25)
        b.fit(X, y, epochs=1, validation_split=0.25)
        assert_same_weights(a.get_weights(), b.get_weights())
        return a

    same_after(lambda a: a.fit(X, y, epochs=1, validation_split=0.25, batch_size=0))
    backup = tmp_path / "fit.backup.npz"
    with pytest.raises(RuntimeError):
        net().fit(X, y, epochs=3, batch_size=10, callbacks=[fd.BackupAndRestore(backup),
                                                             CrashAt(1)])
    same_after(lambda a: a.fit(X, y, epochs=3, batch_size=20,  # another fit's backup
                               callbacks=[fd.BackupAndRestore(backup)]))
    keep, ck = fd.BackupAndRestore(backup), fd.ModelCheckpoint(tmp_path / "c.npz",
                                                               monitor="val_loss")
    a = same_after(lambda a: a.fit(X, y, epochs=3, batch_size=10, callbacks=[keep, ck]))
    assert keep.run is None and ck._net is None


def test_callback_mistakes_are_named_before_training():
    with pytest.raises(TypeError, match="give an instance: ProgressBar"):
        fit([fd.ProgressBar], epochs=1)  # "missing 1 required positional argument"
    with pytest.raises(TypeError, match="file-like object"):
        fd.ProgressBar(stream="train.log")  # an epoch in: "'str' has no attribute 'write'"


def test_a_refused_fit_leaves_another_nets_optimizer_and_plateau_alone():
    """The plan claimed them (another net's state starts over) before its last checks:
    a refused fit left net A's Adam at step 0 and its plateau at scale 1."""
    X, y = data()
    opt, plateau = fd.Adam(0.01), fd.ReduceLROnPlateau(factor=0.5, patience=1, threshold=0.9)
    fd.MLP([4, 8, 2], seed=0).fit(X, y, epochs=4, batch_size=16, optimizer=opt,
                                  schedule=plateau)
    t, scale, state = opt.t, plateau.scale, opt.state.copy()
    assert t > 0 and scale < 1
    other = fd.MLP([4, 8, 2], seed=1)
    with pytest.raises(TypeError):
        other.fit(X, y, epochs=1, optimizer=opt, schedule="cosine")
    with pytest.raises(ValueError):
        other.fit(X, y, epochs=1, optimizer="lbfgs", schedule=plateau)
    assert opt.t == t and plateau.scale == scale and np.array_equal(opt.state, state)


def test_fit_many_copies_start_over_as_fit_does():
    """fit_many's copy of net A's optimizer or plateau kept A's state on net C (a deep
    copy forgot whose it was); C's own fit starts over."""
    X, y = data()
    opt, plateau = fd.Adam(0.01), fd.ReduceLROnPlateau(factor=0.5, patience=1, threshold=0.9)
    fd.MLP([4, 8, 2], seed=0).fit(X, y, epochs=4, batch_size=16, optimizer=opt,
                                  schedule=plateau)
    alone, together = fd.MLP([4, 8, 2], seed=1), fd.MLP([4, 8, 2], seed=1)
    hist = alone.fit(X, y, epochs=3, batch_size=16, optimizer=fd.Adam(0.01),
                     schedule=fd.ReduceLROnPlateau(factor=0.5, patience=1, threshold=0.9))
    (many,) = fd.fit_many([together], X, y, epochs=3, batch_size=16, optimizer=opt,
                          schedule=plateau)
    assert many.lr == hist.lr
    assert_same_weights(together.get_weights(), alone.get_weights())


def test_a_rerun_in_the_same_process_resumes_though_a_callback_set_lr(tmp_path):
    """The optimizer held the lr the callback set after the backup: 'it was made with
    hyper=[0.01, ...], this fit has hyper=[0.0024, ...]'."""
    X, y = data()
    backup = tmp_path / "fit.backup.npz"

    def decay(opt, stop_at=None):
        def on_epoch_end(epoch, logs):
            opt.lr = 0.01 * 0.7 ** (epoch + 1)
            if epoch + 1 == stop_at:
                raise KeyboardInterrupt  # as Ctrl-C between two runs
        return fd.LambdaCallback(on_epoch_end=on_epoch_end)

    ref_opt = fd.Adam(0.01)
    ref = fd.MLP([4, 8, 2], seed=1)
    ref.fit(X, y, epochs=6, batch_size=16, optimizer=ref_opt, callbacks=[decay(ref_opt)])
    opt = fd.Adam(0.01)
    net = fd.MLP([4, 8, 2], seed=1)
    with pytest.raises(KeyboardInterrupt):
        net.fit(X, y, epochs=6, batch_size=16, optimizer=opt,
                callbacks=[decay(opt, stop_at=3), fd.BackupAndRestore(backup)])
    net.fit(X, y, epochs=6, batch_size=16, optimizer=opt,
            callbacks=[decay(opt), fd.BackupAndRestore(backup)])
    assert_same_weights(net.get_weights(), ref.get_weights())


def test_a_bad_lr_set_by_a_callback_is_never_backed_up(tmp_path):
    """lr = -0.5 from a callback was refused at the next run of steps, but the backup of
    that epoch held it, and a rerun trained by gradient ascent, unchecked."""
    X, y = data()
    backup = tmp_path / "fit.backup.npz"
    opt = fd.SGD(0.1)
    bad = fd.LambdaCallback(on_epoch_end=lambda epoch, logs: epoch == 1 and setattr(opt, "lr",
                                                                                    -0.5))
    with pytest.raises(ValueError, match="lr must be"):
        fd.MLP([4, 8, 2], seed=0).fit(X, y, epochs=4, batch_size=16, optimizer=opt,
                                      callbacks=[bad, fd.BackupAndRestore(backup)])
    import json
    with np.load(backup) as f:  # the last backup is epoch 1's, before the bad lr
        assert json.loads(str(f["header"]))["lr"] == 0.1


def test_a_numpy_float_lr_from_a_callback_is_backed_up(tmp_path):
    # "Object of type float32 is not JSON serializable", from inside json.
    X, y = data()
    opt = fd.SGD(0.1)
    rates = np.array([0.1, 0.05, 0.025], dtype=np.float32)
    cb = fd.LambdaCallback(on_epoch_end=lambda epoch, logs: setattr(opt, "lr", rates[epoch]))
    hist = fd.MLP([4, 8, 2], seed=0, dtype="float64").fit(
        X, y, epochs=3, batch_size=16, optimizer=opt,
        callbacks=[cb, fd.BackupAndRestore(tmp_path / "b.npz")])
    assert hist.lr[1] == float(np.float32(0.1)) and type(opt.lr) is float


@pytest.mark.parametrize("separator", ["\x1e", "\x0b", "\x0c", "\x85", "\u2028"])
def test_a_line_break_is_no_separator(tmp_path, separator):
    # str.splitlines breaks there: a resumed fit logged an epoch twice.
    with pytest.raises(ValueError, match="separator"):
        fd.CSVLogger(tmp_path / "log.csv", separator=separator)


@pytest.mark.parametrize("path", ["net-{loss[0]}.npz", "net-{epoch.value}.npz"])
def test_model_checkpoint_formats_python_cannot_fill_are_named(tmp_path, path):
    with pytest.raises(ValueError, match="ModelCheckpoint: path"):
        fd.ModelCheckpoint(tmp_path / path)


def test_lbfgs_lets_go_of_its_callbacks_when_refused_at_the_start(tmp_path):
    X, y = data()
    ck = fd.ModelCheckpoint(tmp_path / "c.npz", monitor="val_loss")
    with pytest.raises(ValueError, match="needs validation data"):
        fd.MLP([4, 8, 2], seed=0).fit(X, y, epochs=2, optimizer="lbfgs", callbacks=[ck])
    assert ck._net is None  # it held the net


def _interrupted_backup(path, net, X, y, last_epoch, **args):
    """The ``(header, arrays)`` of the backup at ``path`` of ``net``'s fit interrupted
    (Ctrl-C) at the end of epoch ``last_epoch`` (from 0)."""
    def stop(epoch, logs):
        if epoch == last_epoch:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        net.fit(X, y, callbacks=[fd.BackupAndRestore(path),
                                 fd.LambdaCallback(on_epoch_end=stop)], **args)
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    return json.loads(str(arrays.pop("header"))), arrays


def _rewrite_backup(path, header, arrays):
    np.savez(path, header=np.array(json.dumps(header)), **arrays)


@pytest.mark.parametrize("change", [
    ("theta", lambda a: np.array([7.0], np.float32), "its theta is (1,)"),
    ("best_theta", lambda a: np.array([3.0], np.float32), "its best_theta is (1,)"),
    ("opt_state", lambda a: np.zeros(1, np.float32), "its opt_state is (1,)"),
    ("theta", lambda a: np.full_like(a, np.nan), "its theta is not finite"),
    ("history_loss", lambda a: np.zeros((3, 3)), "its history_loss is (3, 3)"),
    ("t", [1], "its t is [1]"), ("t", 10**30, "its t is"), ("epoch", -3, "its epoch is -3"),
    ("rng", "x", "its rng is no state"), ("rng_start", {"bit_generator": "PCG64"},
                                          "its rng_start is no state"),
], ids=lambda c: c[0] if isinstance(c, tuple) else "")
def test_a_backup_that_does_not_fit_is_refused_before_anything_is_restored(tmp_path, change):
    """A theta of one value was broadcast to every weight (and a best_theta applied at
    the end: all weights 3.0), an Adam state of another shape dropped for zeros, a t of
    a list or 10**30 raised TypeError or Numba's TypingError."""
    key, value, says = change
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(32, 3)), np.arange(32) % 2
    path = tmp_path / "backup.npz"
    net = fd.MLP([3, 4, 2], seed=0)
    args = dict(epochs=4, batch_size=8, optimizer=fd.Adam(), restore_best=True)
    header, arrays = _interrupted_backup(path, net, X, y, 1, **args)
    if key in arrays:
        arrays[key] = value(arrays[key])
    else:
        header[key] = value
    _rewrite_backup(path, header, arrays)
    before = net.get_weights()
    with pytest.raises(ValueError, match=f"is not a backup of this fit: {re.escape(says)}"):
        net.fit(X, y, callbacks=[fd.BackupAndRestore(path)], **args)
    assert_same_weights(net.get_weights(), before)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_verbose_with_a_progress_bar_prints_each_epoch_once(capsys, optimizer):
    # verbose=True added a second bar beside the caller's (every line twice); Keras adds
    # its own only where none is given.
    X = np.random.default_rng(0).normal(size=(32, 3))
    y = (X[:, 0] > 0).astype(int)
    fd.MLP([3, 4, 2], seed=0).fit(X, y, epochs=2, optimizer=optimizer, verbose=True,
                                  callbacks=[fd.ProgressBar()])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]


@pytest.mark.parametrize("record", ["none", "without targets"])
def test_a_backup_of_an_earlier_fastdnn_is_refused_not_resumed_unchecked(tmp_path, record):
    """Backups before 2026-11-29 hold no record of the fit (header keys format, sizes,
    epoch, t, rng, best, since_best), those of its morning one without the targets: a
    stale one of another experiment (float64, Adam, other data) took over a float32
    AdamW fit, which ended at once with the other net's weights; one of other targets
    went on as if they were the same."""
    rng = np.random.default_rng(0)
    X1, y1 = rng.normal(size=(64, 3)), np.arange(64) % 2
    path = tmp_path / "backup.npz"
    header, arrays = _interrupted_backup(path, fd.MLP([3, 4, 2], dtype="float64", seed=0),
                                         X1, y1, 2, epochs=6)
    old = {k: header[k] for k in ("format", "sizes", "epoch", "t", "rng", "best",
                                  "since_best")}
    if record == "none":  # another experiment: other data, dtype and optimizer
        X2 = rng.normal(size=(80, 3))
        y2, net, optimizer = (X2[:, 0] > 0).astype(int), fd.MLP([3, 4, 2], seed=1), "adamw"
    else:  # the same fit's arguments and rows, other targets
        old["fit"] = {k: v for k, v in header["fit"].items()
                      if k not in ("targets", "schedule_args")}
        X2, y2, optimizer = X1, 1 - y1, "adam"
        net = fd.MLP([3, 4, 2], dtype="float64", seed=1)
    _rewrite_backup(path, old, arrays)
    before = net.get_weights()
    with pytest.raises(ValueError, match="written by an earlier fastdnn.*delete it"):
        net.fit(X2, y2, epochs=2, optimizer=optimizer, callbacks=[fd.BackupAndRestore(path)])
    assert_same_weights(net.get_weights(), before)
    assert path.exists()  # left for the fastdnn that wrote it


@pytest.mark.parametrize("kind,says", [
    ("later format", "its format is 'fastdnn-backup-2', not 'fastdnn-backup'"),
    ("model file", "it has no header: BackupAndRestore did not write it"),
    ("npy", r"it holds a single array \(.npy\), not a backup"),
    ("text", "it is no .npz archive"),
])
def test_a_file_that_is_no_backup_of_this_fastdnn_is_refused_saying_so(tmp_path, kind, says):
    """A backup of another format said "widths [3, 4, 2], this net has [3, 4, 2]", a
    model file "'header'", a .npy raised TypeError, and a text file came with NumPy's
    advice to load it with allow_pickle."""
    import json
    X, y = data()
    path = tmp_path / "backup.npz"
    if kind == "later format":
        def stop_after_two(epoch, logs):
            if epoch == 1:
                raise KeyboardInterrupt
        with pytest.raises(KeyboardInterrupt):
            fd.MLP([4, 8, 2], seed=0).fit(X, y, epochs=3, callbacks=[
                fd.BackupAndRestore(path), fd.LambdaCallback(on_epoch_end=stop_after_two)])
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
        header = json.loads(str(arrays.pop("header")))
        header["format"] = "fastdnn-backup-2"
        np.savez(path, header=np.array(json.dumps(header)), **arrays)
    elif kind == "model file":
        fd.MLP([4, 8, 2], seed=0).save(path)
    elif kind == "npy":
        with open(path, "wb") as f:
            np.save(f, X)
    else:
        path.write_text("epoch,loss\n")
    content = path.read_bytes()
    with pytest.raises(ValueError, match=f"is not a backup of this fit: {says}"):
        fd.MLP([4, 8, 2], seed=0).fit(X, y, epochs=3, callbacks=[fd.BackupAndRestore(path)])
    assert path.read_bytes() == content  # left as it was


@pytest.mark.parametrize("version", [None, 1, 3, "2", 2.5])
def test_a_backup_of_another_version_is_refused(tmp_path, version):
    """Backups of version 1 (before 2026-11-29's counter-draw permutations) went on with
    other permutations: a fit that matched neither fastdnn's uninterrupted one."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 3)), np.arange(64) % 2
    path = tmp_path / "backup.npz"
    args = dict(epochs=4, batch_size=8)
    header, arrays = _interrupted_backup(path, fd.MLP([3, 4, 2], seed=0), X, y, 1, **args)
    assert header["version"] == 2
    if version is None:
        del header["version"]
    else:
        header["version"] = version
    _rewrite_backup(path, header, arrays)
    net = fd.MLP([3, 4, 2], seed=0)
    before = net.get_weights()
    older = version in (None, 1)
    with pytest.raises(ValueError, match="an earlier fastdnn" if older else "a newer fastdnn"):
        net.fit(X, y, callbacks=[fd.BackupAndRestore(path)], **args)
    assert_same_weights(net.get_weights(), before)
