"""Steering a fit (issue 9): ``restore_best``, ``validation_split``, callbacks,
``ProgressBar``, ``ReduceLROnPlateau`` and L-BFGS; and, in subprocesses, the two
process-level promises: Ctrl-C stops a fit whose epoch takes seconds within about
``config.SLICE_SECONDS`` with a consistent state, and a fit with ``BackupAndRestore``
SIGKILLed at any moment and run again ends bit-identical to one never interrupted.

In-process interrupts are sent by a callback (``os.kill(os.getpid(), SIGINT)`` in
``on_progress``), so where they land is exact; with ``config.SLICE_SECONDS`` patched
to nothing every run of steps is one step, and ``on_progress`` sees the state after
each step of an uninterrupted twin.
"""
import io
import json
import math
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import fastdnn as fd
from fastdnn import config
from support import TESTS, assert_same_weights, run_python, same_weights

API = os.path.dirname(os.path.abspath(__file__))


def problem(n=200, n_in=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, n_in)), rng.integers(0, k, n)


def flat(net):
    """The net's parameters as one float vector (for bit-identical comparisons and files)."""
    return np.concatenate([a.ravel() for W, b in net.get_weights() for a in (W, b)])


class Recorder:
    """Every hook call, in order, and the net's weights (and optimizer step) at each."""

    def __init__(self, net=None, opt=None):
        self.net, self.opt = net, opt
        self.events, self.epoch_weights, self.progress_weights, self.progress_t = [], [], [], []

    def on_train_begin(self, logs):
        self.events.append(("on_train_begin", dict(logs)))

    def on_progress(self, epoch, rows, total_rows, seconds):
        self.events.append(("on_progress", (epoch, rows, total_rows, seconds)))
        if self.net is not None:
            self.progress_weights.append(self.net.get_weights())
            self.progress_t.append(self.opt.t if self.opt is not None else None)

    def on_epoch_end(self, epoch, logs):
        self.events.append(("on_epoch_end", (epoch, dict(logs))))
        if self.net is not None:
            self.epoch_weights.append(self.net.get_weights())
        return False

    def on_train_end(self, logs):
        self.events.append(("on_train_end", dict(logs)))

    def hooks(self):
        return [name for name, _ in self.events]


@pytest.fixture
def one_step_runs(monkeypatch):
    """Every compiled run of steps is a single step (``_slice`` floors at one)."""
    monkeypatch.setattr(config, "SLICE_SECONDS", 1e-12)


# -- restore_best ------------------------------------------------------------------------
def noisy_fit(restore_best, validation=True, patience=None):
    """A fit whose watched loss goes up and down (lr too high), each epoch's weights recorded."""
    X, y = problem(seed=1)
    Xv, yv = problem(n=100, seed=2)
    net = fd.MLP([5, 32, 3], dtype="float64", seed=0)
    rec = Recorder(net)
    hist = net.fit(X, y, epochs=12, batch_size=16, optimizer=fd.SGD(lr=0.5, momentum=0.95),
                   validation_data=(Xv, yv) if validation else None, patience=patience,
                   restore_best=restore_best, callbacks=[rec])
    return net, hist, rec


@pytest.mark.parametrize("validation", [True, False])
def test_restore_best_ends_with_the_weights_of_the_best_epoch(validation):
    net, hist, rec = noisy_fit(restore_best=True, validation=validation)
    watched = hist.val_loss if validation else hist.loss
    best = int(np.argmin(watched))  # the first of equal minima: only a strict improvement counts
    assert best != len(hist) - 1, "the test needs a fit whose last epoch is not its best"
    assert len(rec.epoch_weights) == len(hist) == 12
    assert_same_weights(net.get_weights(), rec.epoch_weights[best])


def test_without_restore_best_the_last_weights_stay():
    net, hist, rec = noisy_fit(restore_best=False)
    assert int(np.argmin(hist.val_loss)) != len(hist) - 1
    assert_same_weights(net.get_weights(), rec.epoch_weights[-1])


def test_restore_best_with_early_stopping():
    net, hist, rec = noisy_fit(restore_best=True, patience=2)
    best = int(np.argmin(hist.val_loss))
    assert len(hist) == best + 3  # stopped after two epochs without improvement
    assert_same_weights(net.get_weights(), rec.epoch_weights[best])


def test_restore_best_must_be_a_bool():
    X, y = problem()
    net = fd.MLP([5, 8, 3], seed=0)
    before = net.get_weights()
    with pytest.raises(TypeError, match="restore_best"):
        net.fit(X, y, epochs=1, restore_best="yes")
    assert_same_weights(net.get_weights(), before)


# -- validation_split --------------------------------------------------------------------
def split_rows(net, X, y, fraction):
    """``(train, held, plan)``: the row indices of ``X`` that ``fit(...,
    validation_split=fraction)`` trains and validates on, read from its checked plan
    (rows are told apart by their values), and the plan."""
    plan = net._fit_plan(X, y, 1, 32, "adam", None, None, True, None,
                         validation_split=fraction)
    where = {row.tobytes(): i for i, row in enumerate(np.asarray(X, dtype=net.dtype))}
    train = np.array([where[row.tobytes()] for row in plan.X])
    held = np.array([where[row.tobytes()] for row in plan.validation[0]])
    return train, held, plan


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_validation_split_is_stratified(fraction):
    rng = np.random.default_rng(3)
    counts = [500, 120, 37, 9, 1]  # the class of one row keeps it for training
    y = rng.permutation(np.repeat(np.arange(5), counts))
    X = rng.normal(size=(y.size, 4))
    net = fd.MLP([4, 8, 5], dtype="float64", seed=0)
    train, held, plan = split_rows(net, X, y, fraction)
    assert sorted(np.concatenate([train, held]).tolist()) == list(range(y.size))
    for label, count in enumerate(counts):
        share = np.sum(y[held] == label)
        assert abs(share - fraction * count) <= 1, (label, share, count)
        assert np.sum(y[train] == label) >= 1
    assert abs(held.size - fraction * y.size) <= len(counts)
    # The held-out targets travel with their rows.
    np.testing.assert_array_equal(plan.validation[1][:, 0], y[held])
    np.testing.assert_array_equal(plan.T[:, 0], y[train])


@pytest.mark.parametrize("n, k, fraction, held_out", [
    (30, 10, 0.1, 3), (50, 10, 0.1, 5), (50, 10, 0.3, 15), (40, 4, 0.25, 10)])
def test_validation_split_holds_out_the_fraction_of_all_rows(n, k, fraction, held_out):
    """Rounded per label, 10 labels of 3 rows held out none at 0.1 (the fit refused),
    10 of 5 held out 20 rows at 0.3, and 4 of 10 held out 8 at 0.25."""
    y = np.repeat(np.arange(k), n // k)
    X = np.random.default_rng(0).normal(size=(n, 4))
    train, held, _ = split_rows(fd.MLP([4, 8, k], dtype="float64", seed=0), X, y, fraction)
    assert held.size == held_out and train.size == n - held_out
    shares = np.bincount(y[held], minlength=k)
    assert shares.max() - shares.min() <= 1  # stratified: each label its share, +-1


@pytest.mark.parametrize("part, weight", [("training", lambda y: (y == 9).astype(float)),
                                          ("held-out", lambda y: (y != 9).astype(float))])
def test_validation_split_refuses_a_part_without_weight(part, weight):
    """All held-out rows weighing 0 raised ZeroDivisionError after an epoch; all
    training rows weighing 0 trained to a loss of NaN."""
    y = np.repeat(np.arange(10), 5)
    X = np.random.default_rng(0).normal(size=(50, 4))
    net = fd.MLP([4, 8, 10], dtype="float64", seed=0)
    if part == "training":  # only the held-out rows of label 9 weigh
        _, held, _ = split_rows(fd.MLP([4, 8, 10], dtype="float64", seed=0), X, y, 0.2)
        w = np.zeros(50)
        w[held] = 1.0
    else:  # only the training rows... of no label: every held-out row weighs 0
        train, _, _ = split_rows(fd.MLP([4, 8, 10], dtype="float64", seed=0), X, y, 0.2)
        w = np.zeros(50)
        w[train] = 1.0
    with pytest.raises(ValueError, match=f"every {part} row has weight 0"):
        net.fit(X, y, epochs=1, validation_split=0.2, sample_weight=w)


def test_validation_split_for_regression_holds_out_the_fraction():
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(203, 3)), rng.normal(size=203)
    train, held, _ = split_rows(fd.MLP([3, 8, 1], loss="mse", dtype="float64", seed=0),
                                X, y, 0.2)
    assert held.size == round(0.2 * 203) and train.size == 203 - held.size
    assert len(set(held) | set(train)) == 203


def test_validation_split_is_drawn_from_the_seed():
    X, y = problem(n=300)

    def held(seed):
        return split_rows(fd.MLP([5, 8, 3], dtype="float64", seed=seed), X, y, 0.2)[1]

    np.testing.assert_array_equal(held(7), held(7))
    assert not np.array_equal(held(7), held(8))


def test_validation_split_fit_equals_a_fit_on_the_split_by_hand():
    """The held-out rows are the validation data and the rest the training data: the fit
    equals one given that split as ``validation_data`` (from the same generator state)."""
    X, y = problem(n=300)
    net = fd.MLP([5, 16, 3], dtype="float64", seed=0)
    hist = net.fit(X, y, epochs=3, batch_size=32, validation_split=0.2)
    twin = fd.MLP([5, 16, 3], dtype="float64", seed=0)
    train, held, _ = split_rows(twin, X, y, 0.2)  # draws the split as fit does
    twin_hist = twin.fit(X[train], y[train], epochs=3, batch_size=32,
                         validation_data=(X[held], y[held]))
    assert_same_weights(net.get_weights(), twin.get_weights())
    assert hist.val_loss == twin_hist.val_loss and hist.loss == twin_hist.loss
    assert all(math.isfinite(v) for v in hist.val_loss + hist.val_metric)


@pytest.mark.parametrize("class_weight", ["balanced", {0: 1.0, 1: 10.0, 2: 0.5}])
def test_validation_split_with_class_weights_equals_the_split_by_hand(class_weight):
    """The class weights are the training rows' (counted over them, for "balanced"); the
    held-out rows weigh by their sample weights alone, as validation_data's: with them
    val_loss and the "accuracy" were class-weighted."""
    X, y = problem(n=300)
    w = np.linspace(0.5, 2.0, 300)
    net = fd.MLP([5, 16, 3], dtype="float64", seed=0)
    hist = net.fit(X, y, epochs=3, batch_size=32, validation_split=0.2, sample_weight=w,
                   class_weight=class_weight)
    twin = fd.MLP([5, 16, 3], dtype="float64", seed=0)
    train, held, _ = split_rows(twin, X, y, 0.2)
    twin_hist = twin.fit(X[train], y[train], epochs=3, batch_size=32, sample_weight=w[train],
                         class_weight=class_weight,
                         validation_data=(X[held], y[held], w[held]))
    assert_same_weights(net.get_weights(), twin.get_weights())
    assert hist.val_loss == twin_hist.val_loss and hist.val_metric == twin_hist.val_metric
    assert hist.val_loss[-1] == net.loss(X[held], y[held], sample_weight=w[held])


def test_validation_split_with_one_number_for_sample_weight():
    # It raised NumPy's "too many indices for array: array is 0-dimensional".
    X, y = problem(n=120)
    net = fd.MLP([5, 16, 3], dtype="float64", seed=0)
    hist = net.fit(X, y, epochs=2, batch_size=32, validation_split=0.2, sample_weight=2.0)
    twin = fd.MLP([5, 16, 3], dtype="float64", seed=0)
    twin_hist = twin.fit(X, y, epochs=2, batch_size=32, validation_split=0.2)
    assert_same_weights(net.get_weights(), twin.get_weights())
    assert hist.val_loss == twin_hist.val_loss


@pytest.mark.parametrize("fraction, error, match", [
    (0, ValueError, r"validation_split must be in \(0, 1\)"),
    (0.0, ValueError, r"validation_split must be in \(0, 1\)"),
    (1, ValueError, r"validation_split must be in \(0, 1\)"),  # it said [0, 1) here
    (1.5, ValueError, r"validation_split must be in \(0, 1\)"),
    (-0.1, ValueError, r"validation_split must be in \(0, 1\)"),
    (float("nan"), ValueError, r"validation_split must be in \(0, 1\)"),
    ("0.1", TypeError, "validation_split"),
    (True, TypeError, "validation_split"),
    (1e-4, ValueError, "holds out no row"),
])
def test_validation_split_errors(fraction, error, match):
    X, y = problem(n=50)
    net = fd.MLP([5, 8, 3], seed=0)
    before = net.get_weights()
    with pytest.raises(error, match=match):
        net.fit(X, y, epochs=1, validation_split=fraction)
    assert_same_weights(net.get_weights(), before)


def test_validation_split_with_validation_data_is_an_error():
    X, y = problem(n=50)
    with pytest.raises(ValueError, match="not both"):
        fd.MLP([5, 8, 3], seed=0).fit(X, y, epochs=1, validation_data=(X, y),
                                      validation_split=0.2)


# -- callbacks ---------------------------------------------------------------------------
def test_hooks_run_in_order_with_their_arguments():
    X, y = problem(n=300)
    net = fd.MLP([5, 16, 3], dtype="float64", seed=0)
    rec = Recorder()
    hist = net.fit(X, y, epochs=3, batch_size=32, validation_split=0.2, callbacks=[rec])
    n_train = sum(c - round(0.2 * c) for c in np.bincount(y))  # stratified
    hooks = rec.hooks()
    assert hooks[0] == "on_train_begin" and hooks[-1] == "on_train_end"
    assert hooks.count("on_train_begin") == hooks.count("on_train_end") == 1
    begin = rec.events[0][1]
    assert begin["epochs"] == 3 and isinstance(begin["compiling"], bool)
    ends = [args for name, args in rec.events if name == "on_epoch_end"]
    assert [epoch for epoch, _ in ends] == [0, 1, 2]
    for epoch, logs in ends:
        assert set(fd.History.KEYS) | {"rate"} <= set(logs)
        for key in fd.History.KEYS:
            assert logs[key] == getattr(hist, key)[epoch]
        assert logs["rate"] is None or logs["rate"] > 0
    assert rec.events[-1][1] == ends[-1][1]
    # Between two epoch ends, the runs of steps of that epoch, its rows growing to all of them.
    epoch = 0
    rows_seen = []
    for name, args in rec.events[1:-1]:
        if name == "on_progress":
            e, rows, total_rows, seconds = args
            assert e == epoch and total_rows == n_train and seconds >= 0
            rows_seen.append(rows)
        else:
            assert rows_seen and rows_seen[-1] == n_train
            assert rows_seen == sorted(rows_seen)
            epoch, rows_seen = epoch + 1, []


def test_on_progress_after_every_run_of_steps(one_step_runs):
    X, y = problem(n=100)
    rec = Recorder()
    fd.MLP([5, 8, 3], dtype="float64", seed=0).fit(X, y, epochs=2, batch_size=32,
                                                  callbacks=[rec])
    progress = [args[:3] for name, args in rec.events if name == "on_progress"]
    assert progress == [(e, r, 100) for e in (0, 1) for r in (32, 64, 96, 100)]


def test_where_an_epoch_is_cut_changes_nothing(monkeypatch):
    X, y = problem(n=300)

    def trained():
        net = fd.MLP([5, 16, 3], dtype="float64", seed=0, dropout=0.2)
        hist = net.fit(X, y, epochs=2, batch_size=16, shuffle="uniform")
        return net.get_weights(), hist.loss

    whole = trained()
    monkeypatch.setattr(config, "SLICE_SECONDS", 1e-12)
    cut = trained()
    assert_same_weights(cut[0], whole[0])
    assert cut[1] == whole[1]


def test_a_callback_returning_true_stops_the_fit():
    class StopAt:
        def __init__(self, at):
            self.at = at

        def on_epoch_end(self, epoch, logs):
            return epoch == self.at

    X, y = problem()
    rec = Recorder()
    hist = fd.MLP([5, 8, 3], seed=0).fit(X, y, epochs=10, callbacks=[StopAt(2), rec])
    assert len(hist) == 3
    assert rec.hooks().count("on_epoch_end") == 3 and rec.hooks()[-1] == "on_train_end"


def test_callbacks_with_some_hooks_only_and_a_tuple():
    class EpochsOnly:
        def __init__(self):
            self.epochs = []

        def on_epoch_end(self, epoch, logs):
            self.epochs.append(epoch)

    X, y = problem()
    cb = EpochsOnly()
    fd.MLP([5, 8, 3], seed=0).fit(X, y, epochs=2, callbacks=(cb,))
    assert cb.epochs == [0, 1]


class NoHooks:
    on_epoch_end = 3  # not callable


@pytest.mark.parametrize("callbacks, match", [
    ([object()], "has none of the methods"),
    ([NoHooks()], "has none of the methods"),
    ([Recorder(), "on_epoch_end"], "has none of the methods"),
    (Recorder(), "callbacks must be a list"),
    (iter([Recorder()]), "callbacks must be a list"),
    ("on_epoch_end", "callbacks must be a list"),
])
def test_bad_callbacks_are_type_errors(callbacks, match):
    X, y = problem()
    net = fd.MLP([5, 8, 3], seed=0)
    before = net.get_weights()
    with pytest.raises(TypeError, match=match):
        net.fit(X, y, epochs=1, callbacks=callbacks)
    assert_same_weights(net.get_weights(), before)


# -- interrupts, in process --------------------------------------------------------------
class InterruptAt:
    """Sends this process SIGINT from the ``at``-th ``on_progress`` (1-based)."""

    def __init__(self, at):
        self.at, self.calls = at, 0

    def on_progress(self, epoch, rows, total_rows, seconds):
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), signal.SIGINT)


def interrupted_fit(at, X, y, epochs=3):
    """``(net, opt, history, recorder)``: a fit SIGINTed in its ``at``-th run of steps."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("the test runner handles SIGINT itself")
    net, opt = fd.MLP([5, 16, 3], dtype="float64", seed=0), fd.Adam(lr=0.01)
    rec = Recorder()
    with pytest.raises(KeyboardInterrupt) as info:
        net.fit(X, y, epochs=epochs, batch_size=32, optimizer=opt,
                callbacks=[InterruptAt(at), rec])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    return net, opt, info.value.history, rec


@pytest.mark.parametrize("at", [3, 14, 22])  # 10 steps per epoch: epochs 1, 2 and 3
def test_ctrl_c_leaves_weights_step_count_and_history_agreeing(one_step_runs, at):
    X, y = problem(n=320)
    twin, twin_opt = fd.MLP([5, 16, 3], dtype="float64", seed=0), fd.Adam(lr=0.01)
    seen = Recorder(twin, twin_opt)
    twin_hist = twin.fit(X, y, epochs=3, batch_size=32, optimizer=twin_opt, callbacks=[seen])
    net, opt, hist, rec = interrupted_fit(at, X, y)
    assert opt.t == seen.progress_t[at - 1] == at
    assert_same_weights(net.get_weights(), seen.progress_weights[at - 1])
    assert len(hist) == (at - 1) // 10 and hist.loss == twin_hist.loss[:len(hist)]
    assert "on_train_end" not in rec.hooks()
    again = net.fit(X, y, epochs=1, batch_size=32, optimizer=opt)  # and it trains on
    assert len(again) == 1 and opt.t == at + 10 and np.isfinite(again.loss[0])


def test_ctrl_c_after_an_epochs_last_step_keeps_that_epoch(one_step_runs):
    X, y = problem(n=320)
    _, opt, hist, _ = interrupted_fit(10, X, y)  # the 10th run ends epoch 1
    assert opt.t == 10
    assert len(hist) == 1


class InterruptAtEpoch(fd.Callback):
    """Sends this process SIGINT from the ``at``-th ``on_epoch_end`` (1-based), and
    keeps the weights of each."""

    def __init__(self, net, at):
        self.net, self.at, self.weights = net, at, []

    def on_epoch_end(self, epoch, logs):
        self.weights.append(self.net.get_weights())
        if len(self.weights) == self.at:
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_in_lbfgs_stops_at_an_iterate_with_the_history():
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("the test runner handles SIGINT itself")
    X, y = problem(n=320)
    twin = fd.MLP([5, 16, 3], dtype="float64", seed=0)
    twin_hist = twin.fit(X, y, epochs=6, optimizer=fd.LBFGS())
    net = fd.MLP([5, 16, 3], dtype="float64", seed=0)
    stop = InterruptAtEpoch(net, 3)
    with pytest.raises(KeyboardInterrupt) as info:
        net.fit(X, y, epochs=6, optimizer=fd.LBFGS(), callbacks=[stop])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    hist = info.value.history
    assert len(hist) == 3 and hist.loss == twin_hist.loss[:3]
    assert_same_weights(net.get_weights(), stop.weights[2])  # the third iterate
    assert np.isfinite(net.fit(X, y, epochs=1, optimizer=fd.LBFGS()).loss[0])


# -- ProgressBar ---------------------------------------------------------------------
class Terminal(io.StringIO):
    def isatty(self):
        return True


EPOCH_LINE = re.compile(r"epoch (\d+)/(\d+)  loss \d+\.\d{4}(  val_loss \d+\.\d{4}  val_metric "
                        r"\d+\.\d{4})?(  ([\d,]+) samples/s)?$")
ROWS_LINE = re.compile(r"epoch (\d+)/(\d+)  ([\d,]+)/([\d,]+) rows  ([\d,]+) samples/s  "
                       r"ETA (\d+:)?\d+:\d\d$")


def test_progress_bar_lines_off_a_terminal():
    bar = fd.ProgressBar(stream=io.StringIO(), interval=10)
    bar.on_train_begin({"epochs": 2, "compiling": False})
    for rows, seconds in [(100, 5.0), (200, 10.0), (300, 15.0), (400, 20.0), (1000, 50.0)]:
        bar.on_progress(0, rows, 1000, seconds)
    bar.on_epoch_end(0, dict(loss=0.5, val_loss=math.nan, val_metric=math.nan, rate=None))
    bar.on_progress(1, 100, 1000, 1.0)  # the interval restarts with the epoch
    bar.on_epoch_end(1, dict(loss=0.25, val_loss=0.75, val_metric=0.5, rate=12345.6))
    assert bar.stream.getvalue().split("\n") == [
        "epoch 1/2  200/1,000 rows  20 samples/s  ETA 0:40",  # at 10 s: every 10 s at most
        "epoch 1/2  400/1,000 rows  20 samples/s  ETA 0:30",
        "epoch 1/2  loss 0.5000",  # no rate: none known
        "epoch 2/2  loss 0.2500  val_loss 0.7500  val_metric 0.5000  12,346 samples/s",
        ""]


def test_progress_bar_promises_no_cache_without_one(monkeypatch):
    # FASTDNN_CACHE=0 said "cached on disk afterwards" in every process.
    from fastdnn import config
    monkeypatch.setattr(config, "CACHE", False)
    bar = fd.ProgressBar(stream=io.StringIO())
    bar.on_train_begin({"epochs": 1, "compiling": True})
    assert bar.stream.getvalue().startswith(
        "compiling kernels (no disk cache: every process compiles them)")


def test_a_part_compiled_mid_fit_is_said_once(monkeypatch):
    """A callee compiled while an epoch runs (separate.compile_listeners) is said, once a
    fit, on a line of its own."""
    from fastdnn.kernels.cpu import backend, separate
    run_steps = backend.CPUTrainer.run_steps

    def compiling_run(self, *args):
        for _, listener in list(separate.compile_listeners):
            listener()
        return run_steps(self, *args)

    monkeypatch.setattr(backend.CPUTrainer, "run_steps", compiling_run)
    X, y = np.random.default_rng(0).normal(size=(40, 3)), np.arange(40) % 2
    bar = fd.ProgressBar(stream=io.StringIO())
    fd.MLP([3, 4, 2], seed=0).fit(X, y, epochs=2, batch_size=8, callbacks=[bar])
    out = bar.stream.getvalue().splitlines()
    assert out[0].startswith("compiling kernels") and len(out) == 3, out
    assert not separate.compile_listeners  # the fit's listener left with it


def test_a_second_fit_has_its_first_epochs_rate():
    """The kernels loaded by a first fit, a second fit's first epoch compiles nothing:
    its rate counts (it was none where the epoch was one run of steps)."""
    X, y = np.random.default_rng(0).normal(size=(40, 3)), np.arange(40) % 2
    fd.MLP([3, 4, 2], seed=0).fit(X, y, epochs=1, batch_size=8)
    rec = Recorder()
    fd.MLP([3, 4, 2], seed=1).fit(X, y, epochs=1, batch_size=8, callbacks=[rec])
    (rate,) = [args[1]["rate"] for name, args in rec.events if name == "on_epoch_end"]
    assert rate is not None and rate > 0


def test_progress_bar_redraws_in_place_on_a_terminal():
    bar = fd.ProgressBar(stream=Terminal())
    bar.on_train_begin({"epochs": 1, "compiling": True})
    bar.on_progress(0, 10, 40, 0.6)  # the first run (maybe the compile): no line, no rate
    bar.on_progress(0, 20, 40, 0.8)  # 10 rows in 0.2 s since then
    bar.on_progress(0, 30, 40, 1.2)  # within 0.5 s of the last line
    bar.on_epoch_end(0, dict(loss=1.0, val_loss=math.nan, val_metric=math.nan, rate=25.0))
    out = bar.stream.getvalue()
    assert out.startswith("compiling kernels") and out.count("compiling") == 1
    progress = out.split("\n", 1)[1]
    drawn = "epoch 1/1  20/40 rows  50 samples/s  ETA 0:00"
    assert progress == ("\r" + drawn + "\r" + "epoch 1/1  loss 1.0000  25 samples/s".ljust(
        len(drawn)) + "\n")


def screen(text):
    """The lines a terminal shows for ``text`` (``\r`` returns to the line's start and
    overwrites), trailing blanks dropped."""
    lines = []
    for raw in text.split("\n"):
        line = ""
        for part in raw.split("\r"):
            line = part + line[len(part):]
        lines.append(line.rstrip())
    return lines


def test_progress_bar_redraws_leave_no_tail_of_a_longer_line():
    # A shorter redraw (the ETA from 1:00:00 to 59:59) left the longer one's tail, and
    # the epoch line only 8 blanks over a line longer than that.
    bar = fd.ProgressBar(stream=Terminal())
    bar.on_train_begin({"epochs": 10, "compiling": False})
    bar.on_progress(0, 1, 10**9, 0.0)
    bar.on_progress(0, 300_000, 10**9, 100.0)  # ETA about 92:35:00
    bar.on_progress(0, 600_000, 10**9, 101.0)  # faster: ETA about 0:27:45
    bar.on_epoch_end(0, dict(loss=0.3456, val_loss=math.nan, val_metric=math.nan, rate=3e4))
    assert screen(bar.stream.getvalue()) == ["epoch 1/10  loss 0.3456  30,000 samples/s", ""]


def test_progress_bar_starts_each_fit_afresh():
    # A fit stopped mid-epoch (Ctrl-C) left the epoch's state: the next fit's lines
    # waited for the old epoch's time, at a rate counted from its start.
    bar = fd.ProgressBar(stream=io.StringIO(), interval=1)
    bar.on_train_begin({"epochs": 1, "compiling": False})
    bar.on_progress(0, 10, 10**6, 0.5)
    bar.on_progress(0, 10_000, 10**6, 30.0)  # a line at 30 s; then Ctrl-C
    bar.on_train_begin({"epochs": 1, "compiling": False})
    bar.on_progress(0, 100, 10**6, 0.1)
    bar.on_progress(0, 20_100, 10**6, 2.1)
    last = bar.stream.getvalue().splitlines()[-1]
    assert last.startswith("epoch 1/1  20,100/1,000,000 rows  10,000 samples/s"), last


def test_progress_bar_in_a_fit(one_step_runs):
    X, y = problem(n=100)
    fd.MLP([5, 8, 3], dtype="float64", seed=0).fit(X, y, epochs=1)  # kernels warm
    quiet = fd.ProgressBar(stream=io.StringIO())  # short epochs: one line each
    busy = fd.ProgressBar(stream=io.StringIO(), interval=0)  # every run of steps
    fd.MLP([5, 8, 3], dtype="float64", seed=0).fit(
        X, y, epochs=3, batch_size=32, validation_data=(X, y), callbacks=[quiet, busy])
    lines = quiet.stream.getvalue().splitlines()
    assert len(lines) == 3 and all(EPOCH_LINE.match(line) for line in lines)
    assert [EPOCH_LINE.match(line).group(1) for line in lines] == ["1", "2", "3"]
    assert all("val_loss" in line for line in lines)
    lines = busy.stream.getvalue().splitlines()
    rows = [ROWS_LINE.match(line) for line in lines if "rows" in line]
    # 4 runs per epoch: none after the first (it sets the rate's start) or the last.
    assert all(rows) and len(rows) == 3 * 2
    assert [int(m.group(3)) for m in rows[:2]] == [64, 96]
    assert len(lines) == len(rows) + 3


# The first fit with an empty Numba cache: ``verbose=True`` (and a second bar that writes a
# line after every run of steps, printed after the fit with a "BAR " prefix).
COLD_FIT = """
    import io
    import numpy as np
    import fastdnn as fd
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20000, 16)), rng.integers(0, 4, 20000)
    bar = fd.ProgressBar(stream=io.StringIO(), interval=0)
    net = fd.MLP([16, 64, 64, 4], dtype="float64", seed=0)
    net.fit(X, y, epochs=2, batch_size=32, verbose=True, callbacks=[bar])
    for line in bar.stream.getvalue().splitlines():
        print("BAR " + line)
"""


@pytest.fixture(scope="module")
def numba_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("numba_cache"))


@pytest.fixture(scope="module")
def cold_and_warm_runs(numba_cache):
    """stdout of :data:`COLD_FIT` with an empty Numba cache folder, then again with it filled."""
    return (run_python(COLD_FIT, NUMBA_CACHE_DIR=numba_cache),
            run_python(COLD_FIT, NUMBA_CACHE_DIR=numba_cache))


def verbose_lines(stdout):
    return [line for line in stdout.splitlines() if not line.startswith("BAR ")]


def bar_lines(stdout):
    return [line[4:] for line in stdout.splitlines() if line.startswith("BAR ")]


def epoch_rates(lines):
    """Samples/s of each epoch line (None where it gives none)."""
    rates = []
    for line in lines:
        match = EPOCH_LINE.match(line)
        if match:
            rates.append(None if match.group(5) is None else int(match.group(5).replace(",", "")))
    return rates


@pytest.mark.slow
def test_compiling_is_said_once_and_only_when_compiling(cold_and_warm_runs):
    cold, warm = cold_and_warm_runs
    assert [line for line in verbose_lines(cold) if "compiling" in line] == [
        "compiling kernels (first run only; cached on disk afterwards) ..."]
    assert verbose_lines(cold)[0].startswith("compiling")
    assert "compiling" not in warm
    assert len(epoch_rates(verbose_lines(cold))) == len(epoch_rates(verbose_lines(warm))) == 2


@pytest.mark.slow
def test_compiling_is_said_for_a_kernel_cached_for_other_types_only(cold_and_warm_runs,
                                                                     numba_cache):
    # The cache has the epoch kernel for float64 (the runs above), not for float32: its
    # index file exists, but the fit compiles.
    other = run_python(COLD_FIT.replace('"float64"', '"float32"'), NUMBA_CACHE_DIR=numba_cache)
    assert [line for line in verbose_lines(other) if "compiling" in line] == [
        "compiling kernels (first run only; cached on disk afterwards) ..."]


@pytest.mark.slow
def test_no_epoch_line_reports_a_rate_polluted_by_the_compile(cold_and_warm_runs):
    # The compile takes seconds, an epoch of 20,000 rows a fraction of one: a rate that
    # counts the compile is hundreds of times too low; a factor 20 leaves room for noise.
    for stdout in cold_and_warm_runs:
        for lines in (verbose_lines(stdout), bar_lines(stdout)):
            first, second = epoch_rates(lines)
            assert second is not None and second > 0
            assert first is None or first > second / 20, lines


@pytest.mark.slow
def test_no_in_epoch_line_reports_a_rate_polluted_by_the_compile(cold_and_warm_runs):
    cold, _ = cold_and_warm_runs
    lines = bar_lines(cold)
    steady = epoch_rates(lines)[1]
    rows = [ROWS_LINE.match(line) for line in lines if "rows" in line]
    assert rows and all(rows)
    for match in rows:
        assert int(match.group(5).replace(",", "")) > steady / 20, match.group(0)


def test_an_epoch_rate_leaves_out_a_run_that_compiled_a_callee(monkeypatch):
    """A callee compiled when a fit first reaches it (:mod:`.kernels.cpu.separate`) may
    hold up a run in mid-epoch: that run counts as the compile did, not in the rate."""
    from fastdnn import fitting
    from fastdnn.kernels.cpu.backend import CPUTrainer

    X, y = problem(n=4000)
    net = fd.MLP([5, 16, 3], seed=0)
    net.fit(X, y, epochs=1, batch_size=8)  # compiled
    run_steps = CPUTrainer.run_steps
    calls, filled = [], [0]

    def run_with_a_compile(self, *args):
        calls.append(args)
        result = run_steps(self, *args)
        if len(calls) == 3:  # in the first epoch's third run: a callee compiles
            time.sleep(0.3)
            filled[0] += 1
        return result

    monkeypatch.setattr(CPUTrainer, "run_steps", run_with_a_compile)
    monkeypatch.setattr(fitting, "filled_from_kernels", lambda: filled[0])
    monkeypatch.setattr(config, "SLICE_SECONDS", 1e-4)  # runs of a few steps
    rates = []
    callback = fd.callbacks.Callback()
    callback.on_epoch_end = lambda epoch, logs: rates.append(logs["rate"])
    history = net.fit(X, y, epochs=2, batch_size=8, callbacks=[callback])
    assert len(calls) > 3 and filled[0] == 1
    # The pause is most of the first epoch: counted in its rate, that rate would be below
    # 4000 rows over the whole epoch; left out, it is near the second epoch's.  Near: the
    # epoch is about a millisecond of work, and the runs just after a 0.3 s sleep ran up
    # to 4.4x slower than the second epoch's on a shared 2-core VM (counted, the pause
    # would put the rate some 300x below).
    assert rates[0] > 2 * 4000 / history.seconds[0]
    assert rates[0] > rates[1] / 10


# -- ReduceLROnPlateau -------------------------------------------------------------------
def plateau_rates(watched, lr, factor, patience, min_lr=0.0, threshold=1e-4, cooldown=0):
    """The learning rate of each epoch under ReduceLROnPlateau's rule, given the watched
    losses: an epoch improves when its loss is below ``best * (1 - threshold)``; after
    ``patience`` epochs in a row without improvement the rate becomes
    ``max(lr * factor, min_lr)`` (never raised), for the next epoch on; the ``cooldown``
    epochs after a reduction count toward no reduction (Keras and PyTorch count every
    epoch of a cooldown, improving or not)."""
    rates, best, wait, cooling = [], math.inf, 0, 0
    for loss in watched:
        rates.append(lr)
        improved = loss < best * (1.0 - threshold)
        if improved:
            best, wait = loss, 0
        if cooling > 0:
            cooling -= 1
        elif not improved:
            wait += 1
            if wait >= patience:
                lr = max(lr * factor, min(min_lr, lr))
                wait, cooling = 0, cooldown
    return rates


def test_plateau_follows_the_validation_loss_down_to_min_lr():
    X, y = problem(seed=1)
    Xv, yv = problem(n=100, seed=2)
    schedule = fd.ReduceLROnPlateau(factor=0.5, patience=2, min_lr=2e-3)
    hist = fd.MLP([5, 32, 3], dtype="float64", seed=0).fit(
        X, y, epochs=30, batch_size=16, optimizer=fd.SGD(lr=0.05), schedule=schedule,
        validation_data=(Xv, yv))
    want = plateau_rates(hist.val_loss, 0.05, 0.5, 2, min_lr=2e-3)
    np.testing.assert_allclose(hist.lr, want, rtol=1e-12)
    assert len(set(want)) >= 4 and want[-1] == 2e-3  # reduced, then held at the floor
    np.testing.assert_allclose(min(hist.lr), 2e-3, rtol=1e-12)


def test_plateau_watches_the_training_loss_without_validation():
    X, y = problem(seed=1)
    schedule = fd.ReduceLROnPlateau(factor=0.3, patience=1, threshold=0.02)
    hist = fd.MLP([5, 32, 3], dtype="float64", seed=0).fit(
        X, y, epochs=15, batch_size=16, optimizer=fd.Adam(lr=0.02), schedule=schedule)
    want = plateau_rates(hist.loss, 0.02, 0.3, 1, threshold=0.02)
    assert len(set(want)) >= 3
    np.testing.assert_allclose(hist.lr, want, rtol=1e-12)


def test_plateau_cooldown_on_a_plateau():
    # Random labels and threshold 0.5: after epoch 1 no epoch improves, so the rate drops
    # every `patience` epochs, with `cooldown` epochs in between.
    X, y = problem(seed=1)
    schedule = fd.ReduceLROnPlateau(factor=0.5, patience=2, cooldown=2, threshold=0.5)
    hist = fd.MLP([5, 16, 3], dtype="float64", seed=0).fit(
        X, y, epochs=12, batch_size=32, optimizer=fd.SGD(lr=0.01), schedule=schedule)
    # epoch 1 improves; 2, 3 do not: reduce; 4, 5 cool down; 6, 7: reduce; 8, 9; 10, 11: reduce
    want = 0.01 * np.array([1, 1, 1, .5, .5, .5, .5, .25, .25, .25, .25, .125])
    np.testing.assert_allclose(plateau_rates(hist.loss, 0.01, 0.5, 2, threshold=0.5,
                                             cooldown=2), want, rtol=1e-12)
    np.testing.assert_allclose(hist.lr, want, rtol=1e-12)


def test_plateau_keeps_its_state_across_fits():
    X, y = problem(seed=1)
    schedule = fd.ReduceLROnPlateau(factor=0.5, patience=1, threshold=0.5)
    net, opt = fd.MLP([5, 16, 3], dtype="float64", seed=0), fd.SGD(lr=0.01)
    first = net.fit(X, y, epochs=3, batch_size=32, optimizer=opt, schedule=schedule)
    second = net.fit(X, y, epochs=2, batch_size=32, optimizer=opt, schedule=schedule)
    np.testing.assert_allclose(first.lr + second.lr,
                               plateau_rates(first.loss + second.loss, 0.01, 0.5, 1,
                                             threshold=0.5), rtol=1e-12)


def test_plateau_rule_directly():
    schedule = fd.ReduceLROnPlateau(factor=0.1, patience=2, min_lr=0.02, cooldown=1)
    losses = [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95]
    scales = [schedule.update(loss, 1.0) for loss in losses]
    want = plateau_rates(losses, 1.0, 0.1, 2, min_lr=0.02, cooldown=1)[1:]
    # two epochs without improvement: 0.1; one cooldown epoch, two more: the floor 0.02
    # (not 0.01), where it stays
    assert want == [1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.02, 0.02, 0.02]
    np.testing.assert_allclose(scales[:-1], want, rtol=1e-12)


def test_plateau_cooldown_counts_improving_epochs_too():
    schedule = fd.ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2)
    # Epoch 2 reduces; epoch 3 improves and epoch 4 does not: the two cooldown epochs are
    # over, so epoch 5 (no improvement, patience 1) reduces again.
    losses = [1.0, 1.0, 0.5, 0.6, 0.6, 0.6]
    scales = [schedule.update(loss, 1.0) for loss in losses]
    want = plateau_rates(losses, 1.0, 0.5, 1, cooldown=2)[1:]
    assert want == [1.0, 0.5, 0.5, 0.5, 0.25]
    assert scales[:-1] == want


@pytest.mark.parametrize("kwargs, error", [
    (dict(factor=0), ValueError), (dict(factor=1), ValueError), (dict(factor=1.5), ValueError),
    (dict(factor=-0.5), ValueError), (dict(factor=float("nan")), ValueError),
    (dict(factor="0.5"), TypeError), (dict(patience=-1), ValueError),
    (dict(patience=1.5), ValueError), (dict(patience=True), ValueError),
    (dict(min_lr=-1e-3), ValueError), (dict(min_lr=float("inf")), ValueError),
    (dict(threshold=-1e-4), ValueError), (dict(cooldown=-1), ValueError),
    (dict(cooldown=0.5), ValueError),
])
def test_plateau_errors(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        fd.ReduceLROnPlateau(**kwargs)


# -- L-BFGS -------------------------------------------------------------------------------
def test_lbfgs_beats_an_epoch_of_adam():
    X, y = problem(n=80, seed=3)
    adam = fd.MLP([5, 16, 3], dtype="float64", seed=0)
    adam.fit(X, y, epochs=1, batch_size=16)
    lbfgs = fd.MLP([5, 16, 3], dtype="float64", seed=0)
    hist = lbfgs.fit(X, y, epochs=40, optimizer="lbfgs")
    assert lbfgs.loss(X, y) < 0.5 * adam.loss(X, y)
    assert 1 <= len(hist) <= 40 and hist.loss[-1] == lbfgs.loss(X, y)
    assert all(math.isnan(lr) for lr in hist.lr)


def test_lbfgs_epochs_cap_the_iterations():
    X, y = problem(n=80, seed=3)
    opt = fd.LBFGS()
    hist = fd.MLP([5, 16, 3], dtype="float64", seed=0).fit(X, y, epochs=3, optimizer=opt)
    assert len(hist) == opt.result.nit == 3


def test_lbfgs_integer_sample_weights_equal_repeated_rows():
    X, y = problem(n=60, seed=4)
    w = np.random.default_rng(5).integers(0, 4, 60)  # zero weight: the row is left out
    weighted = fd.MLP([5, 8, 3], dtype="float64", seed=0)
    h1 = weighted.fit(X, y, epochs=25, optimizer="lbfgs", sample_weight=w)
    repeated = fd.MLP([5, 8, 3], dtype="float64", seed=0)
    h2 = repeated.fit(np.repeat(X, w, axis=0), np.repeat(y, w), epochs=25, optimizer="lbfgs")
    assert len(h1) == len(h2) >= 10
    np.testing.assert_allclose(h1.loss, h2.loss, rtol=1e-8)
    np.testing.assert_allclose(flat(weighted), flat(repeated), rtol=1e-8, atol=1e-8)


def test_lbfgs_minimises_the_l2_penalised_loss():
    X, y = problem(n=60, seed=4)
    l2, opt = 0.1, fd.LBFGS()
    net = fd.MLP([5, 8, 3], dtype="float64", seed=0, l2=l2)
    hist = net.fit(X, y, epochs=50, optimizer=opt)
    plain = fd.MLP([5, 8, 3], dtype="float64", seed=0)
    plain.set_weights(net.get_weights())
    penalty = l2 / 2 * sum(float(np.sum(W ** 2)) for W, _ in net.get_weights())
    np.testing.assert_allclose(opt.result.fun, plain.loss(X, y) + penalty, rtol=1e-12)
    np.testing.assert_allclose(hist.loss[-1], opt.result.fun, rtol=1e-12)
    # At the minimum of the penalised loss its gradient vanishes, that of the data loss not.
    grad = np.concatenate([np.ravel(dW + l2 * W) for (dW, _), (W, _) in
                           zip(plain.gradients(X, y), net.get_weights())])
    assert np.max(np.abs(grad)) < 1e-2 < max(np.max(np.abs(dW)) for dW, _ in plain.gradients(X, y))
    unpenalised = fd.MLP([5, 8, 3], dtype="float64", seed=0)
    unpenalised.fit(X, y, epochs=50, optimizer="lbfgs")
    assert penalty < l2 / 2 * sum(float(np.sum(W ** 2)) for W, _ in unpenalised.get_weights())


def test_lbfgs_calls_back_per_iteration_and_stops_on_true():
    X, y = problem(n=60, seed=4)
    net = fd.MLP([5, 8, 3], dtype="float64", seed=0)
    rec = Recorder(net)

    class StopAtThird:
        def on_epoch_end(self, epoch, logs):
            return epoch == 2

    hist = net.fit(X, y, epochs=30, optimizer="lbfgs", validation_data=(X, y),
                   callbacks=[rec, StopAtThird()])
    hooks = rec.hooks()
    assert hooks == ["on_train_begin"] + ["on_epoch_end"] * 3 + ["on_train_end"]
    ends = [args for name, args in rec.events if name == "on_epoch_end"]
    assert [epoch for epoch, _ in ends] == [0, 1, 2] and len(hist) == 3
    assert [logs["loss"] for _, logs in ends] == hist.loss
    assert hist.loss == sorted(hist.loss, reverse=True)
    assert [logs["val_loss"] for _, logs in ends] == hist.val_loss
    np.testing.assert_allclose(hist.val_loss, hist.loss, rtol=1e-12)  # validation = training data
    assert_same_weights(net.get_weights(), rec.epoch_weights[-1])  # stopped where it was


@pytest.mark.parametrize("net_kwargs, fit_kwargs, match", [
    ({}, lambda folder: dict(patience=3), "patience does not apply to L-BFGS"),
    ({}, lambda folder: dict(restore_best=True), "restore_best does not apply to L-BFGS"),
    ({}, lambda folder: dict(clip_norm=1.0), "clip_norm does not apply to L-BFGS"),
    ({}, lambda folder: dict(schedule=fd.ReduceLROnPlateau()), "schedule does not apply to L-BFGS"),
    ({}, lambda folder: dict(schedule=fd.InverseTimeDecay(1e-3)), "schedule does not apply"),
    (dict(dropout=0.2), lambda folder: {}, "L-BFGS needs a deterministic loss: use dropout=0"),
    ({}, lambda folder: dict(callbacks=[fd.BackupAndRestore(folder / "b.npz")]),
     "BackupAndRestore needs an epoch-based optimizer, not L-BFGS"),
], ids=["patience", "restore_best", "clip_norm", "plateau", "schedule", "dropout", "backup"])
def test_lbfgs_refusals(tmp_path, net_kwargs, fit_kwargs, match):
    X, y = problem(n=60)
    net = fd.MLP([5, 8, 3], seed=0, **net_kwargs)
    before = net.get_weights()
    with pytest.raises(ValueError, match=match):
        net.fit(X, y, optimizer=fd.LBFGS(), **fit_kwargs(tmp_path))
    assert_same_weights(net.get_weights(), before)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kwargs, error", [
    (dict(tol=-1.0), ValueError), (dict(tol="small"), TypeError),
    (dict(tol=float("nan")), ValueError), (dict(max_fun=0), ValueError),
    (dict(max_fun=True), ValueError), (dict(history=2.5), ValueError),
    (dict(history=0), ValueError),
])
def test_lbfgs_bad_arguments(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        fd.LBFGS(**kwargs)


@pytest.mark.parametrize("kwargs, error", [
    (dict(tol=float("nan")), ValueError), (dict(tol="abc"), TypeError),
    (dict(max_fun=None), ValueError), (dict(history=0), ValueError),
])
def test_lbfgs_settings_changed_after_construction_are_checked_at_fit(kwargs, error):
    """``opt.history = 0`` fitted nothing, silently, and ``opt.max_fun = None`` raised
    from inside SciPy: the settings are checked at each fit, as SGD's and Adam's are."""
    X, y = problem(n=40)
    net = fd.MLP([5, 8, 3], seed=0)
    before = net.get_weights()
    opt = fd.LBFGS()
    for name, value in kwargs.items():
        setattr(opt, name, value)
    with pytest.raises(error, match=next(iter(kwargs))):
        net.fit(X, y, optimizer=opt)
    assert_same_weights(net.get_weights(), before)


def _overflowing_poisson():
    """Unscaled data on which L-BFGS's third evaluation, a line search's trial point,
    overflows the Poisson loss (exp of the logits) to inf."""
    rng = np.random.default_rng(0)
    for _ in range(6):  # the draws that found it
        X = rng.normal(size=(30, 3)) * 90
        rng.poisson(200, size=30), rng.normal(size=30)
        y = rng.poisson(1e5, size=30).astype(float)
    return X, y


def test_lbfgs_steps_back_from_a_trial_point_whose_loss_overflows():
    """SciPy's line search takes an inf loss for convergence: the fit stopped after 2
    iterations reporting success, its gradient still 9e6.  fastdnn gives SciPy a loss
    above the iterate's instead, and the search steps back and goes on."""
    X, y = _overflowing_poisson()
    net = fd.MLP([3, 16, 1], activation="relu", loss="poisson", dtype="float64", seed=5)
    seen, gradient = [], net._backend.gradient

    def spy(X, T):
        value, grad = gradient(X, T)
        seen.append(value)
        return value, grad

    net._backend.gradient = spy
    opt = fd.LBFGS()
    hist = net.fit(X, y, epochs=30, optimizer=opt)
    assert not np.isfinite(seen).all(), "the data no longer overflow: the test tests nothing"
    assert len(hist) == opt.result.nit == 30  # no early "convergence"
    assert np.isfinite(hist.loss).all() and all(np.diff(hist.loss) < 0)
    assert net.loss(X, y) == pytest.approx(hist.loss[-1], rel=1e-12)
    assert hist.loss[-1] < 0 < hist.loss[0]  # the first iterate's 8.5e6 to -5.7e5


def test_lbfgs_whose_first_loss_is_not_finite_raises_with_the_weights_kept():
    X, y = _overflowing_poisson()
    net = fd.MLP([3, 16, 1], activation="relu", loss="poisson", dtype="float64", seed=5)
    net.set_weights([(W * 1e3, b) for W, b in net.get_weights()])
    before = net.get_weights()
    with pytest.raises(fd.TrainingDivergedError, match="best point so far"):
        net.fit(X, y, epochs=5, optimizer=fd.LBFGS())
    assert_same_weights(net.get_weights(), before)


def test_a_second_ctrl_c_in_lbfgs_leaves_the_last_iterate_not_a_trial_point():
    """Pressed twice in an evaluation, Ctrl-C came out of SciPy at once, and the net kept
    the trial point being evaluated (there, one whose loss was inf)."""
    X, y = _overflowing_poisson()
    net = fd.MLP([3, 16, 1], activation="relu", loss="poisson", dtype="float64", seed=5)
    calls, gradient = [0], net._backend.gradient

    def pressed(X, T):
        calls[0] += 1
        if calls[0] == 3:  # the trial point that overflows
            raise KeyboardInterrupt
        return gradient(X, T)

    net._backend.gradient = pressed
    with pytest.raises(KeyboardInterrupt) as info:
        net.fit(X, y, epochs=50, optimizer="lbfgs")
    net._backend.gradient = gradient
    assert len(info.value.history) == 1
    assert net.loss(X, y) == info.value.history.loss[0]  # the first iterate


# -- Ctrl-C on a fit whose epochs take seconds, in a subprocess ----------------------------
# 256-1024-1024-10 float32 at batch 64: ~0.5 GFLOP per step, 800 steps an epoch (seconds to
# minutes).  The kernels are made warm first, so the signal lands in the compiled loop.
CTRL_C = """
import json, signal, sys
import numpy as np
import fastdnn as fd

# A shell starts background jobs with SIGINT ignored, and Python then installs no
# handler: without this line a CI run launched with & never sees the Ctrl-C.
signal.signal(signal.SIGINT, signal.default_int_handler)

rng = np.random.default_rng(0)
n, batch, sizes = 51200, 64, [256, 1024, 1024, 10]
X, y = rng.normal(size=(n, 256)).astype(np.float32), rng.integers(0, 10, n)
net = fd.MLP(sizes, dtype="float32", seed=0)
net.fit(X[:batch], y[:batch], epochs=1, batch_size=batch)  # compile or load the kernels
start = net.get_weights()
opt = fd.Adam(lr=1e-4)


class Started:
    def on_train_begin(self, logs):
        print("training started", flush=True)


print("ready", flush=True)
try:
    net.fit(X, y, epochs=50, batch_size=batch, shuffle=False, optimizer=opt, callbacks=[Started()])
    print("finished", flush=True)
    sys.exit(1)
except KeyboardInterrupt as e:
    epochs_done = len(e.history)
print("interrupted", flush=True)
t, steps = opt.t, n // batch
# The weights are those after opt.t steps: replay them (in order, so the first r steps of an
# epoch are one epoch over its first r batches).
replay, replay_opt = fd.MLP(sizes, dtype="float32", seed=0), fd.Adam(lr=1e-4)
replay.set_weights(start)
if t // steps:
    replay.fit(X, y, epochs=t // steps, batch_size=batch, shuffle=False, optimizer=replay_opt)
if t % steps:
    rows = t % steps * batch
    replay.fit(X[:rows], y[:rows], epochs=1, batch_size=batch, shuffle=False, optimizer=replay_opt)
same = all(np.array_equal(a, b) and np.array_equal(c, d)
           for (a, c), (b, d) in zip(net.get_weights(), replay.get_weights()))
finite = all(np.isfinite(W).all() and np.isfinite(b).all() for W, b in net.get_weights())
more = net.fit(X[:640], y[:640], epochs=1, batch_size=batch, optimizer=opt)
print(json.dumps(dict(epochs_done=epochs_done, t=t, steps=steps, same=same, finite=finite,
                      t_after=opt.t, more=len(more), more_loss=more.loss[0])), flush=True)
"""


def lines_of(proc):
    """A queue that receives ``proc``'s stdout lines (None at the end)."""
    lines = queue.Queue()

    def read():
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def wait_for(lines, text, timeout):
    """Read lines until ``text``; fail on the end of the output or after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            pytest.fail(f"no {text!r} within {timeout} s")
        assert line is not None, f"the output ended before {text!r}"
        if line.startswith(text):
            return line


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_ctrl_c_stops_a_long_epoch_within_a_second_in_a_consistent_state():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.Popen([sys.executable, "-c", CTRL_C], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = lines_of(proc)
        wait_for(lines, "ready", 180)
        wait_for(lines, "training started", 30)
        time.sleep(1.0)  # well inside the first epoch
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        wait_for(lines, "interrupted", 30)
        stopped_after = time.monotonic() - sent
        result = json.loads(wait_for(lines, "{", 120))
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        stderr = proc.stderr.read()
        proc.stderr.close()
    assert stopped_after < 1.5, f"Ctrl-C answered after {stopped_after:.2f} s\n{stderr}"
    steps = result["steps"]
    assert 0 < result["t"] < 50 * steps
    assert result["epochs_done"] == result["t"] // steps  # the history holds whole epochs
    assert result["same"], "the weights are not those after opt.t steps"
    assert result["finite"]
    assert result["more"] == 1 and result["t_after"] == result["t"] + 10
    assert math.isfinite(result["more_loss"])


# -- BackupAndRestore: SIGKILL at any moment, then run again ------------------------------
BACKUP = "backup.npz"


class Pace:
    """Sleeps at each epoch end, so that a kill lands mid-fit; announces the epoch."""

    def __init__(self, seconds, say=None):
        self.seconds, self.say = seconds, say

    def on_train_begin(self, logs):
        if self.say:
            print("training started", flush=True)

    def on_epoch_end(self, epoch, logs):
        if self.say:
            print(f"{self.say} {epoch + 1}", flush=True)
        time.sleep(self.seconds)


def backup_fit(folder, pace=0.0, extra=()):
    """The fit the kill tests interrupt: shuffled, dropout, a split drawn from the net's
    generator, Adam, ReduceLROnPlateau (it reduces after epochs 4 and 5) and restore_best,
    so that every piece of state a backup carries matters; ``extra`` callbacks go last.
    Returns ``(parameters, [loss, val_loss, lr])``."""
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(400, 12)), rng.integers(0, 4, 400)
    X[:, 0] += y  # something to learn
    net = fd.MLP([12, 32, 32, 4], dtype="float64", seed=3, dropout=0.1)
    callbacks = [Pace(pace / 2), fd.BackupAndRestore(os.path.join(folder, BACKUP)),
                 Pace(pace / 2, say="backup" if pace else None), *extra]
    hist = net.fit(X, y, epochs=6, batch_size=16, optimizer=fd.Adam(lr=0.01),
                   schedule=fd.ReduceLROnPlateau(factor=0.5, patience=1),
                   validation_split=0.2, restore_best=True, callbacks=callbacks)
    return flat(net), np.array([hist.loss, hist.val_loss, hist.lr])


def backup_main(folder):
    """The script the kill tests run: ``backup_fit`` paced at 0.2 s per epoch, its result
    saved in ``folder``."""
    theta, hist = backup_fit(folder, pace=0.2)
    np.save(os.path.join(folder, "theta.npy"), theta)
    np.save(os.path.join(folder, "history.npy"), hist)
    print("done", flush=True)


BACKUP_SCRIPT = ("import sys; sys.path[:0] = sys.argv[1:3]\n"
                 "from test_fit_control import backup_main\n"
                 "backup_main(sys.argv[3])\n")


def start_backup_script(folder):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    return subprocess.Popen([sys.executable, "-c", BACKUP_SCRIPT, TESTS, API, str(folder)],
                            stdout=subprocess.PIPE, text=True, env=env)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    result = backup_fit(str(folder))
    assert os.listdir(folder) == []  # the backup is gone when the fit completes
    return result


def kill_then_rerun(tmp_path, trigger, delay, rerun_in_subprocess=False):
    """SIGKILL the backup script ``delay`` s after it prints ``trigger``, check what it
    left, run the fit again to completion; its ``(parameters, history)``."""
    proc = start_backup_script(tmp_path)
    try:
        lines = lines_of(proc)
        wait_for(lines, trigger, 120)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    left = set(os.listdir(tmp_path))
    assert left <= {BACKUP}, f"left behind: {sorted(left)}"
    if left:  # a whole backup, never a partial one
        with np.load(tmp_path / BACKUP) as backup:
            assert "theta" in backup.files and "header" in backup.files
    if rerun_in_subprocess:
        proc = start_backup_script(tmp_path)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.rstrip().endswith("done")
        result = (np.load(tmp_path / "theta.npy"), np.load(tmp_path / "history.npy"))
        assert sorted(os.listdir(tmp_path)) == ["history.npy", "theta.npy"]
    else:
        result = backup_fit(str(tmp_path))
        assert os.listdir(tmp_path) == []
    return result


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.parametrize("trigger, delay, subprocess_rerun", [
    ("training started", 0.02, False),  # during epoch 1, before any backup
    ("backup 4", 0.0, False),  # right after a backup (and a reduction of the rate)
    ("training started", 0.55, True),  # mid-fit (wherever the load puts it)
    ("training started", 0.85, False),
], ids=["epoch-1", "after-backup", "mid-fit-a", "mid-fit-b"])
def test_sigkill_then_rerun_ends_bit_identical(tmp_path, uninterrupted, trigger, delay,
                                               subprocess_rerun):
    theta, hist = kill_then_rerun(tmp_path, trigger, delay, subprocess_rerun)
    np.testing.assert_array_equal(theta, uninterrupted[0])
    np.testing.assert_array_equal(hist, uninterrupted[1])


class CrashAfter(fd.Callback):
    """Raises at the end of epoch ``at`` (0-based), as a kill after that epoch's backup would
    stop the process: in the hook ``fit`` calls after every ``on_epoch_end``, where the
    backup is written (listed after it)."""

    def __init__(self, at):
        self.at = at

    def after_epoch_end(self, epoch):
        if epoch == self.at:
            raise RuntimeError("crash")


@pytest.mark.parametrize("at", [0, 2, 3, 4])
def test_a_crashed_fit_resumes_from_its_backup(tmp_path, uninterrupted, at):
    """The kill test's fit stopped by an exception after epoch ``at``'s backup (the state
    a SIGKILL there leaves, deterministically) and run again."""
    with pytest.raises(RuntimeError, match="crash"):
        backup_fit(str(tmp_path), extra=[CrashAfter(at)])
    assert os.listdir(tmp_path) == [BACKUP]
    rec = Recorder()
    theta, hist = backup_fit(str(tmp_path), extra=[rec])
    np.testing.assert_array_equal(theta, uninterrupted[0])
    np.testing.assert_array_equal(hist, uninterrupted[1])
    assert [args[0] for name, args in rec.events if name == "on_epoch_end"] == \
        list(range(at + 1, 6))  # only the epochs left are trained
    assert os.listdir(tmp_path) == []


def test_the_optimizer_resumes_with_its_step_count(tmp_path):
    X, y = problem(n=200)
    path = tmp_path / BACKUP

    def fit(*callbacks):
        net, opt = fd.MLP([5, 16, 3], dtype="float64", seed=0), fd.SGD(lr=0.05, momentum=0.9)
        hist = net.fit(X, y, epochs=4, batch_size=16, optimizer=opt,
                       schedule=fd.InverseTimeDecay(0.01),
                       callbacks=[fd.BackupAndRestore(path), *callbacks])
        return net, opt, hist

    ref_net, ref_opt, ref_hist = fit()
    with pytest.raises(RuntimeError, match="crash"):
        fit(CrashAfter(1))
    net, opt, hist = fit()
    assert_same_weights(net.get_weights(), ref_net.get_weights())
    assert hist.loss == ref_hist.loss and hist.lr == ref_hist.lr and opt.t == ref_opt.t == 4 * 13


def test_a_fit_killed_after_its_last_backup_deletes_the_backup_on_rerun(tmp_path):
    X, y = problem(n=200)
    path = tmp_path / BACKUP

    def fit(*callbacks):
        net = fd.MLP([5, 16, 3], dtype="float64", seed=0)
        hist = net.fit(X, y, epochs=4, batch_size=16,
                       callbacks=[fd.BackupAndRestore(path), *callbacks])
        return net, hist

    ref_net, ref_hist = fit()
    with pytest.raises(RuntimeError):
        fit(CrashAfter(3))  # the last epoch's backup is written, on_train_end never runs
    net, hist = fit()
    assert same_weights(net.get_weights(), ref_net.get_weights())
    assert hist.loss == ref_hist.loss
    assert not path.exists()


def test_resuming_after_the_epoch_whose_patience_ran_out_only_ends_the_fit(tmp_path):
    """The backup of the epoch that early stopping ended: the resumed fit trains no
    epoch more (it trained one, and its weights differed), and calls on_train_end with
    an epoch's logs, rate included."""
    rng = np.random.default_rng(0)
    X, Xv = rng.normal(size=(60, 4)), rng.normal(size=(40, 4))
    y, yv = (X[:, 0] + X[:, 1] > 0).astype(int), rng.integers(0, 2, 40)  # noise: no progress

    def fit(*callbacks):
        net = fd.MLP([4, 16, 2], seed=0)
        hist = net.fit(X, y, epochs=200, batch_size=8, optimizer=fd.SGD(lr=0.5),
                       validation_data=(Xv, yv), patience=3, callbacks=list(callbacks))
        return net, hist

    ref, ref_hist = fit()
    assert len(ref_hist) < 200  # patience ended it
    path = tmp_path / BACKUP
    with pytest.raises(RuntimeError):
        fit(fd.BackupAndRestore(path), CrashAfter(len(ref_hist) - 1))
    ends = []

    class End:
        def on_train_end(self, logs):
            ends.append(sorted(logs))

    net, hist = fit(fd.BackupAndRestore(path), End())
    assert hist.loss == ref_hist.loss and hist.val_loss == ref_hist.val_loss
    assert same_weights(net.get_weights(), ref.get_weights())
    assert ends == [sorted(["loss", "lr", "rate", "seconds", "val_loss", "val_metric"])]


@pytest.mark.parametrize("optimizer", [fd.SGD(lr=0.01), "lbfgs"])
def test_numpys_true_stops_a_fit(optimizer):
    """``np.isfinite(loss)`` and other comparisons return NumPy's bool: an ``is True``
    test let it pass, and the fit ran on."""
    X, y = problem(n=60)

    class Stop:
        def on_epoch_end(self, epoch, logs):
            return np.isfinite(logs["loss"])

    hist = fd.MLP([5, 8, 3], seed=0).fit(X, y, epochs=5, optimizer=optimizer, callbacks=[Stop()])
    assert len(hist) == 1


def test_backup_of_another_net_is_refused(tmp_path):
    X, y = problem(n=100)
    path = tmp_path / BACKUP
    with pytest.raises(RuntimeError):
        fd.MLP([5, 16, 3], seed=0).fit(X, y, epochs=3,
                                       callbacks=[fd.BackupAndRestore(path), CrashAfter(0)])
    other = fd.MLP([5, 8, 3], seed=0)
    before = other.get_weights()
    with pytest.raises(ValueError, match="not a backup of this fit"):
        other.fit(X, y, epochs=3, callbacks=[fd.BackupAndRestore(path)])
    assert_same_weights(other.get_weights(), before)
    backup = path.read_bytes()
    # Not a zip; cut short (a zip without its index: BadZipFile); one bit of the index
    # flipped.
    flipped = bytearray(backup)
    flipped[len(backup) - 30] ^= 4
    for damaged in (b"not a zip file", backup[:len(backup) // 2], bytes(flipped)):
        path.write_bytes(damaged)
        with pytest.raises(ValueError, match="not a backup of this fit"):
            fd.MLP([5, 16, 3], seed=0).fit(X, y, epochs=3,
                                           callbacks=[fd.BackupAndRestore(path)])


def test_lbfgs_reports_no_rate_for_its_first_iteration():
    # Its evaluations compile (or load) the kernel: 502 samples/s against millions.
    X, y = problem(n=100)
    rec = Recorder()
    fd.MLP([5, 8, 3], seed=0).fit(X, y, epochs=3, optimizer=fd.LBFGS(), callbacks=[rec])
    rates = [args[1]["rate"] for name, args in rec.events if name == "on_epoch_end"]
    assert rates[0] is None and all(r > 0 for r in rates[1:])
    begin = [args for name, args in rec.events if name == "on_train_begin"][0]
    assert isinstance(begin["compiling"], bool)


def test_a_fit_killed_as_a_callback_stopped_it_ends_on_rerun(tmp_path):
    # Killed after the backup of the epoch a callback stopped the fit at (before its
    # on_train_end removed the backup): the rerun trained one epoch more.
    X, y = problem(n=200)
    path = tmp_path / BACKUP

    class StopAt:
        def on_epoch_end(self, epoch, logs):
            return epoch == 2

    class KilledAtTheEnd:
        def on_train_end(self, logs):
            raise RuntimeError("killed")

    def fit(*callbacks):
        net = fd.MLP([5, 16, 3], dtype="float64", seed=0)
        hist = net.fit(X, y, epochs=6, batch_size=16,
                       callbacks=[*callbacks, fd.BackupAndRestore(path), StopAt()])
        return net, hist

    ref_net, ref_hist = fit()
    with pytest.raises(RuntimeError, match="killed"):
        fit(KilledAtTheEnd())
    assert path.exists()
    net, hist = fit()
    assert len(hist) == len(ref_hist) == 3 and hist.loss == ref_hist.loss
    assert_same_weights(net.get_weights(), ref_net.get_weights())
    assert not path.exists()


def test_a_fit_resumed_on_the_same_net_draws_the_same_validation_split(tmp_path):
    # Resumed on the net that crashed (its generator moved on by the epochs trained),
    # the split was drawn anew: rows the net had trained on were held out.
    X, y = problem(n=200)
    path = tmp_path / BACKUP

    def fit(net, *callbacks):
        return net.fit(X, y, epochs=4, batch_size=16, validation_split=0.25,
                       callbacks=[fd.BackupAndRestore(path), *callbacks])

    ref = fd.MLP([5, 16, 3], dtype="float64", seed=0)
    ref_hist = fit(ref)
    net = fd.MLP([5, 16, 3], dtype="float64", seed=0)
    with pytest.raises(RuntimeError, match="crash"):
        fit(net, CrashAfter(1))
    hist = fit(net)
    assert hist.val_loss == ref_hist.val_loss and hist.loss == ref_hist.loss
    assert_same_weights(net.get_weights(), ref.get_weights())


@pytest.mark.parametrize("change, expected", [
    (dict(batch_size=32), "batch_size=16, this fit has batch_size=32"),
    (dict(optimizer=fd.SGD(lr=0.1, momentum=0.9)), "optimizer='Adam', this fit has "
                                                   "optimizer='SGD'"),
    (dict(schedule=fd.ReduceLROnPlateau()), "schedule="),
    (dict(shuffle=False), "sampling="),
])
def test_a_backup_made_with_other_fit_arguments_is_refused(tmp_path, change, expected):
    # Resumed with another schedule, the old one's state overwrote the new one's (a rate
    # of 0 for an epoch); with another optimizer, its step count restarted.
    X, y = problem(n=100)
    path = tmp_path / BACKUP
    args = dict(epochs=3, batch_size=16, optimizer=fd.Adam(lr=0.01))
    with pytest.raises(RuntimeError):
        fd.MLP([5, 16, 3], seed=0).fit(X, y, callbacks=[fd.BackupAndRestore(path),
                                                        CrashAfter(0)], **args)
    with pytest.raises(ValueError, match=f"not a backup of this fit: it was made with "
                                         f"{re.escape(expected)}"):
        fd.MLP([5, 16, 3], seed=0).fit(X, y, callbacks=[fd.BackupAndRestore(path)],
                                       **dict(args, **change))
    # More epochs than the backed-up fit's: it goes on.
    hist = fd.MLP([5, 16, 3], seed=0).fit(X, y, callbacks=[fd.BackupAndRestore(path)],
                                          **dict(args, epochs=4))
    assert len(hist) == 4


def test_backup_path_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        fd.BackupAndRestore(tmp_path / "missing" / BACKUP)
    with pytest.raises(TypeError):
        fd.BackupAndRestore("")
    with pytest.raises(TypeError):
        fd.BackupAndRestore(3)


def test_a_kept_backup_callback_lets_go_of_the_fit(tmp_path):
    # A callbacks list kept in a notebook held the finished fit: its data and the net.
    import gc
    import weakref
    backup = fd.BackupAndRestore(str(tmp_path / "fit.npz"))
    X = np.random.default_rng(0).normal(size=(50, 3))
    net = fd.MLP([3, 4, 2], seed=0)
    net.fit(X, np.arange(50) % 2, epochs=2, batch_size=8, callbacks=[backup])
    data, model = weakref.ref(X), weakref.ref(net)
    del X, net
    gc.collect()
    assert backup.run is None and data() is None and model() is None


def test_a_resumed_fit_with_more_epochs_stretches_a_default_cosine(tmp_path):
    """Resumed with more epochs (allowed), a default CosineDecay kept the old fit's
    length: every added epoch trained at a rate of 0."""
    X = np.random.default_rng(0).normal(size=(40, 5))
    y = np.arange(40) % 3
    path = str(tmp_path / "fit.npz")

    class Crash:
        def on_epoch_end(self, epoch, logs):
            if epoch == 1:
                raise RuntimeError("killed")

    def fit(epochs, callbacks, schedule=None):
        net = fd.MLP([5, 7, 3], dtype="float64", seed=1)
        return net.fit(X, y, epochs=epochs, batch_size=10, optimizer=fd.Adam(0.01),
                       schedule=schedule or fd.CosineDecay(), callbacks=callbacks)

    with pytest.raises(RuntimeError):
        fit(4, [fd.BackupAndRestore(path), Crash()])
    resumed = fit(8, [fd.BackupAndRestore(path)])
    whole = fit(8, [])
    assert resumed.lr[2:] == whole.lr[2:] and resumed.lr[-1] > 0
    # An explicit length is the fit's own, whatever its epochs.
    with pytest.raises(RuntimeError):
        fit(4, [fd.BackupAndRestore(path), Crash()], fd.CosineDecay(total_steps=12))
    resumed = fit(8, [fd.BackupAndRestore(path)], fd.CosineDecay(total_steps=12))
    assert resumed.lr[-1] == 0.0


def test_ctrl_c_during_a_mid_fit_compile_is_a_keyboard_interrupt(monkeypatch):
    # The kernel's RuntimeError("could not compile ...") reached the user instead.
    from fastdnn.kernels.cpu import backend, separate

    def interrupted_compile(self, *args):
        separate._interrupted.append(True)
        raise RuntimeError("fastdnn could not compile ... (the error is printed above)")

    monkeypatch.setattr(backend.CPUTrainer, "run_steps", interrupted_compile)
    X, y = np.random.default_rng(0).normal(size=(40, 3)), np.arange(40) % 2
    with pytest.raises(KeyboardInterrupt) as info:
        fd.MLP([3, 4, 2], seed=0).fit(X, y, epochs=2, batch_size=8)
    assert len(info.value.history) == 0 and not separate.take_interrupt(RuntimeError())
    monkeypatch.setattr(backend.CPUTrainerGroup, "run_epochs", interrupted_compile)
    with pytest.raises(KeyboardInterrupt):
        fd.fit_many([fd.MLP([3, 4, 2], seed=s) for s in range(2)], X, y, epochs=1,
                    batch_size=8, n_threads=1)


@pytest.mark.parametrize("interval", [float("nan"), -1.0, float("inf"), "10", True])
def test_a_progress_bar_interval_is_a_finite_number_of_seconds(interval):
    """nan and -1 were taken: nan never wrote an in-epoch line, silently."""
    with pytest.raises(ValueError, match="interval must be a finite number of seconds"):
        fd.ProgressBar(interval=interval)
    assert fd.ProgressBar(interval=0).interval == 0.0


@pytest.mark.parametrize("order", ["net first", "optimizer first"])
def test_a_deep_copy_of_an_optimizer_follows_its_nets_copy(order):
    """A deep copy dropped the optimizer's owner: a copy of net A's Adam given to net B
    went on from A's moments and step count (the original starts over on B, as the
    README says).  A copy made with its net's (either order) goes on with that copy."""
    import copy

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 4)), rng.integers(0, 2, 64)
    A = fd.MLP([4, 8, 2], seed=0)
    opt, plateau = fd.Adam(lr=0.01), fd.ReduceLROnPlateau(patience=0, factor=0.5)
    A.fit(X, y, epochs=3, batch_size=16, optimizer=opt, schedule=plateau)
    plateau.scale = 0.25  # as after two cuts: a state a copy must not carry to B

    def on_b(optimizer, schedule):
        B = fd.MLP([4, 8, 2], seed=1)
        B.fit(X, y, epochs=1, batch_size=16, optimizer=optimizer, schedule=schedule)
        return B.get_weights()[0][0], optimizer.t

    fresh = on_b(fd.Adam(lr=0.01), fd.ReduceLROnPlateau(patience=0, factor=0.5))
    copied = on_b(copy.deepcopy(opt), copy.deepcopy(plateau))
    assert copied[1] == 4
    np.testing.assert_array_equal(copied[0], fresh[0])
    if order == "net first":
        A2, opt2, plateau2 = copy.deepcopy((A, opt, plateau))
    else:
        opt2, plateau2, A2 = copy.deepcopy((opt, plateau, A))
    A2.fit(X, y, epochs=1, batch_size=16, optimizer=opt2, schedule=plateau2)
    A.fit(X, y, epochs=1, batch_size=16, optimizer=opt, schedule=plateau)
    assert opt2.t == opt.t == 16
    np.testing.assert_array_equal(A2.get_weights()[0][0], A.get_weights()[0][0])


def test_a_shallow_copy_of_an_optimizer_starts_over_on_another_net():
    """copy.copy went the pickle's way (the owner dropped): a copy of net A's Adam went on
    from A's moments on net B, and wrote B's moments into A's arrays."""
    import copy

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 4)), rng.integers(0, 2, 64)
    opt = fd.Adam(lr=0.01)
    fd.MLP([4, 8, 2], seed=0).fit(X, y, epochs=3, batch_size=16, optimizer=opt)
    moments = opt.state.copy()
    twin = copy.copy(opt)
    fd.MLP([4, 8, 2], seed=1).fit(X, y, epochs=1, batch_size=16, optimizer=twin)
    assert twin.t == 4 and opt.t == 12
    np.testing.assert_array_equal(opt.state, moments)


def test_ctrl_c_in_the_last_run_keeps_the_backup_of_the_ended_fit(tmp_path):
    """Pressed during the last epoch's last run: on_train_end removed the backup, then
    the fit raised KeyboardInterrupt, so a rerun trained the whole fit again (and an
    appending CSVLogger logged every epoch twice).  Now it stops before its end, the
    backup kept: the rerun only ends the fit."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("the test runner handles SIGINT itself")
    X, y = problem(n=64)
    path, log = tmp_path / "backup.npz", tmp_path / "log.csv"

    def callbacks(*more):
        return [fd.BackupAndRestore(path), fd.CSVLogger(log, append=True), *more]

    net = fd.MLP([5, 8, 3], seed=0)
    args = dict(epochs=3, batch_size=16, optimizer=fd.SGD(lr=0.1), shuffle=False)
    with pytest.raises(KeyboardInterrupt) as info:
        net.fit(X, y, callbacks=callbacks(InterruptAtEpoch(net, 3)), **args)
    assert len(info.value.history) == 3 and path.exists()
    ended = net.get_weights()
    hist = net.fit(X, y, callbacks=callbacks(), **args)
    assert len(hist) == 3 and not path.exists()
    assert_same_weights(net.get_weights(), ended)
    epochs = [line.split(",")[0] for line in log.read_text().splitlines()[1:]]
    assert epochs == ["0", "1", "2"]


def test_a_rerun_asking_fewer_epochs_than_its_backup_holds_ends_at_once(tmp_path):
    # The backup checks refused it ("its epoch is 4; ... in [0, 3]"); it ends, as before.
    X, y = problem(n=64)
    path = tmp_path / "backup.npz"

    def stop_after_four(epoch, logs):  # in the fifth's on_epoch_end: 4 backed up
        if epoch == 4:
            raise KeyboardInterrupt

    net = fd.MLP([5, 8, 3], seed=0)
    args = dict(batch_size=16, optimizer=fd.SGD(lr=0.1), shuffle=False)
    with pytest.raises(KeyboardInterrupt):
        net.fit(X, y, epochs=6, callbacks=[fd.BackupAndRestore(path),
                fd.LambdaCallback(on_epoch_end=stop_after_four)], **args)
    hist = net.fit(X, y, epochs=3, callbacks=[fd.BackupAndRestore(path)], **args)
    assert len(hist) == 4
