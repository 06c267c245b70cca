"""Divergence: the training loop itself stops before an update with a non-finite loss
or gradient, or one that would overflow the weights (the overflow guard), so the
weights stay finite for any size of net, without a copy.

What ``fit`` promises when it raises TrainingDivergedError: the error's ``history``
holds the epochs completed before it, and the net keeps usable weights: those from the
start of the failing epoch (nets up to ``config.SNAPSHOT_BYTES``), else those from
before the failing step, which the error says may have no finite loss.
"""
import contextlib
import re

import numpy as np
import pytest

import fastdnn as fd
from fastdnn import config
from support import assert_same_weights

BATCH = 8


def problem():
    rng = np.random.default_rng(0)
    return rng.standard_normal((64, 4)), rng.standard_normal(64)


def diverging_fit_args():
    # The learning rate grows tenfold per epoch of 8 steps, from 1e-3: the loss is finite
    # for three epochs and overflows in the fourth (float32 and float64 alike).
    return dict(batch_size=BATCH, optimizer=fd.SGD(lr=1e-3, momentum=0.9), shuffle=False,
                schedule=fd.ExponentialDecay(10.0, decay_steps=8))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("snapshot_bytes", [0, config.SNAPSHOT_BYTES])
def test_diverging_fit_keeps_the_weights_before_the_failing_step(monkeypatch, snapshot_bytes,
                                                                 dtype):
    monkeypatch.setattr(config, "SNAPSHOT_BYTES", snapshot_bytes)
    X, y = problem()
    net = fd.MLP([4, 16, 1], loss="mse", seed=0, dtype=dtype)
    with pytest.raises(fd.TrainingDivergedError, match="diverged") as info:
        net.fit(X, y, epochs=50, **diverging_fit_args())
    where = re.search(r"in epoch (\d+) at step (\d+)", str(info.value))
    assert where, str(info.value)
    epoch, step = int(where[1]), int(where[2])
    assert epoch >= 2, "the test needs completed epochs before the failing one"
    # Only a net that went back to a copy is promised to train again (a 72 MB net
    # without one was told so, and failed every later fit at its first step).
    promise = "the weights from the start of epoch" if snapshot_bytes else "may not be finite"
    assert promise in str(info.value)

    # The history: exactly the completed epochs, with finite losses.
    hist = info.value.history
    assert len(hist) == epoch - 1
    assert len(hist.lr) == len(hist.seconds) == epoch - 1
    assert np.isfinite(hist.loss).all() and np.isfinite(hist.lr).all()

    # Replay in order up to the failing step: epoch - 1 whole epochs, then (without the
    # snapshot) the first step - 1 batches of the failing epoch, with the same optimizer
    # (momentum, step count).
    replay = fd.MLP([4, 16, 1], loss="mse", seed=0, dtype=dtype)
    args = diverging_fit_args()
    replay_hist = replay.fit(X, y, epochs=epoch - 1, **args)
    if step > 1 and snapshot_bytes == 0:
        rows = (step - 1) * BATCH
        # The replay ends where the loss of the failing step's batch is not finite: its
        # check of the last update says so, and it keeps those weights (no snapshot).
        with pytest.raises(fd.TrainingDivergedError, match="at its last step"):
            replay.fit(X[:rows], y[:rows], epochs=1, **args)
    assert replay_hist.loss == hist.loss
    assert_same_weights(net.get_weights(), replay.get_weights())

    # Finite, and the net still predicts.  (Its outputs need not be finite: the last
    # finite weights are those whose next batch loss overflowed; in float32 some of
    # the outputs of X do too.)
    assert all(np.isfinite(W).all() and np.isfinite(b).all() for W, b in net.get_weights())
    np.testing.assert_array_equal(net.predict(X), replay.predict(X))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_diverged_net_trains_again(dtype):
    """Issue 9: the last finite weights gave a NaN loss, so every later fit failed at
    its first step; the net now goes back to the failing epoch's start."""
    X, y = problem()
    net = fd.MLP([4, 16, 1], loss="mse", seed=0, dtype=dtype)
    with pytest.raises(fd.TrainingDivergedError):
        net.fit(X, y, epochs=50, **diverging_fit_args())
    assert np.isfinite(net.loss(X, y))
    hist = net.fit(X, y, epochs=3, batch_size=BATCH, optimizer=fd.SGD(lr=1e-3))
    assert np.isfinite(hist.loss).all()


@pytest.mark.parametrize("dtype, activation, lr, epochs, stop", [
    ("float32", "tanh", 2.0, 2, "epochs"), ("float64", "identity", 0.5, 1, "epochs"),
    ("float32", "tanh", 2.0, 2, "patience")])  # epoch 2's loss did not improve: the last
def test_a_last_update_that_overflows_the_loss_is_a_divergence(dtype, activation, lr, epochs,
                                                              stop):
    """Each step checks the loss before its update, so the fit's last update went
    unchecked: these fits returned as if trained, at finite weights whose loss was inf
    (and the next fit failed at its first step).  The last epoch (by count, or by
    patience) now fails at its last step, and the net keeps that epoch's start."""
    X, y = problem()
    args = dict(batch_size=BATCH, optimizer=fd.SGD(lr=lr), shuffle=False)
    net = fd.MLP([4, 16, 1], activation=activation, loss="mse", seed=0, dtype=dtype)
    extra = dict(epochs=epochs) if stop == "epochs" else dict(epochs=epochs + 5, patience=1)
    with pytest.raises(fd.TrainingDivergedError, match=f"epoch {epochs} at its last step") as info:
        net.fit(X, y, **extra, **args)
    assert f"the weights from the start of epoch {epochs} and can be trained" in str(info.value)
    assert len(info.value.history) == epochs - 1
    replay = fd.MLP([4, 16, 1], activation=activation, loss="mse", seed=0, dtype=dtype)
    if epochs > 1:
        replay.fit(X, y, epochs=epochs - 1, **args)
    assert_same_weights(net.get_weights(), replay.get_weights())
    assert np.isfinite(net.loss(X, y))
    net.fit(X, y, epochs=1, batch_size=BATCH, optimizer=fd.SGD(lr=lr / 100), shuffle=False)
    assert np.isfinite(net.loss(X, y))


def _overflowing_last_epoch(**kwargs):
    """The float32 fit above whose second (last) epoch's last update overflows the loss."""
    X, y = problem()
    net = fd.MLP([4, 16, 1], activation="tanh", loss="mse", seed=0, dtype="float32")
    args = dict(epochs=2, batch_size=BATCH, optimizer=fd.SGD(lr=2.0), shuffle=False)
    return net, X, y, dict(args, **kwargs)


def test_a_callbacks_stop_checks_the_last_update_too():
    # The estimators stop by a callback (tol): those fits ended unchecked, loss inf.
    net, X, y, args = _overflowing_last_epoch(epochs=5)
    ends = []
    stop = fd.LambdaCallback(on_epoch_end=lambda epoch, logs: epoch == 1,
                             on_train_end=ends.append)
    with pytest.raises(fd.TrainingDivergedError, match="epoch 2 at its last step") as info:
        net.fit(X, y, callbacks=[stop], **args)
    assert len(info.value.history) == 1 and not ends  # the epoch went, as a diverged one's
    assert np.isfinite(net.loss(X, y))


def test_restore_best_ends_at_the_best_weights_unrefused():
    # The last epoch's weights overflowed the loss, and the fit ends at its best ones
    # anyway: it raised, and on_train_end (a BackupAndRestore's cleanup) never ran.
    net, X, y, args = _overflowing_last_epoch(restore_best=True)
    ends = []
    hist = net.fit(X, y, callbacks=[fd.LambdaCallback(on_train_end=ends.append)], **args)
    assert len(hist) == 2 and len(ends) == 1 and np.isfinite(net.loss(X, y))


def test_the_last_update_is_checked_on_rows_that_count():
    # The first rows weighing 0 (sorted data, a class weighted 0) passed the check.
    net, X, y, args = _overflowing_last_epoch()
    pad = 1024  # batches of weight 0 first (no update), then the fit that overflows
    Xp, yp = np.vstack([np.zeros((pad, 4)), X]), np.concatenate([np.zeros(pad), y])
    w = np.concatenate([np.zeros(pad), np.ones(len(y))])
    with pytest.raises(fd.TrainingDivergedError, match="at its last step"):
        net.fit(Xp, yp, sample_weight=w, **dict(args, optimizer=fd.SGD(lr=2.9)))


@pytest.mark.parametrize("optimizer", [fd.SGD(lr=1.7e38), fd.SGD(lr=1.7e38, momentum=0.9),
                                       fd.Adam(lr=1.7e38)])
def test_an_overflowing_update_never_reaches_a_large_net(monkeypatch, optimizer):
    """Issue 9: a net over SNAPSHOT_BYTES whose update overflowed kept infinite weights
    (predict gave zeros, a refit failed, save wrote a file load refused).  The guard
    refuses the update: the weights are exactly those before it."""
    monkeypatch.setattr(config, "SNAPSHOT_BYTES", 0)
    X, y = problem()
    net = fd.MLP([4, 16, 1], loss="mse", seed=0, dtype="float32")
    before = net.get_weights()
    with pytest.raises(fd.TrainingDivergedError, match="epoch 1 at step 1"):
        net.fit(X, y, epochs=1, batch_size=BATCH, optimizer=optimizer, shuffle=False)
    assert_same_weights(net.get_weights(), before)
    assert np.isfinite(net.predict(X)).all()
    assert np.isfinite(net.fit(X, y, epochs=2, batch_size=BATCH, optimizer="sgd").loss).all()


def test_the_fused_big_net_sgd_update_bounds_its_product_in_the_nets_dtype(monkeypatch):
    """Plain SGD on a big net (train_steps_wide_sgd) adds -lr A.T delta onto the weights
    in BLAS, which forms A.T delta in float32 first: 1e21 x 5e18 summed overflowed there
    though lr * it (1e10) did not, and -inf reached the weights at step 1.  Now the step
    is refused there, as the general kernel refuses it (its gradient is inf)."""
    monkeypatch.setattr(config, "SNAPSHOT_BYTES", 0)
    d = config.WIDE_UPDATE_PARAMS - 1  # [d, 1]: the big-net kernels' first size
    X = np.zeros((4, d), np.float32)
    X[:, 0] = 1e21
    net = fd.MLP([d, 1], loss="mse", dtype="float32", seed=0)
    W = np.zeros((d, 1), np.float32)
    W[0, 0] = 0.005
    net.set_weights([(W, np.zeros(1, np.float32))])
    with pytest.raises(fd.TrainingDivergedError, match="epoch 1 at step 1"):
        net.fit(X, np.zeros(4, np.float32), epochs=1, batch_size=2, optimizer=fd.SGD(lr=1e-30),
                shuffle=False)
    assert_same_weights(net.get_weights(), [(W, np.zeros(1, np.float32))])


def test_a_first_step_that_fails_promises_no_fresh_start():
    # Back at the epoch's start is back where its first step failed: the message said
    # the net "can be trained again", and at lr=1e6 its loss there was inf already.
    X, y = problem()
    net = fd.MLP([4, 16, 1], loss="mse", seed=0, dtype="float32")
    with pytest.raises(fd.TrainingDivergedError, match="epoch 1 at step 1") as info:
        net.fit(X, y, epochs=1, batch_size=BATCH, optimizer=fd.SGD(lr=1.7e38), shuffle=False)
    assert "where its first step failed" in str(info.value)
    assert "can be trained again" not in str(info.value)


def test_a_first_step_failing_at_an_overflowing_loss_goes_back_an_epoch_more():
    """The last epoch's last update left weights whose loss overflows (float32 logits of
    1e45): the next epoch's first step fails there, and the net kept those weights,
    from which every later fit failed at its first step, whatever its lr."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((48, 20)), rng.integers(0, 3, 48)
    net = fd.MLP([20, 32, 3], dtype="float32", seed=0)
    with pytest.raises(fd.TrainingDivergedError, match="epoch 3 at step 1") as info:
        net.fit(X, y, epochs=6, batch_size=16, optimizer=fd.SGD(lr=1e4))
    assert "the weights from the start of epoch 2" in str(info.value)
    assert np.isfinite(net.loss(X, y))
    assert np.isfinite(net.fit(X, y, epochs=2, batch_size=16,
                               optimizer=fd.SGD(lr=1e-6)).loss).all()


def test_weights_whose_loss_overflows_are_said_to_train_with_no_lr():
    X, y = problem()
    net = fd.MLP([4, 16, 1], loss="mse", seed=0, dtype="float32")
    (W1, b1), (W2, b2) = net.get_weights()
    net.set_weights([(W1 * 1e20, b1), (W2 * 1e20, b2)])  # outputs of 1e40: inf in float32
    with pytest.raises(fd.TrainingDivergedError, match="epoch 1 at step 1") as info:
        net.fit(X, y, epochs=2, batch_size=BATCH, optimizer=fd.SGD(lr=1e-9))
    assert "the loss is not finite already: no lr trains from them" in str(info.value)


def test_plain_sgd_keeps_no_velocity():
    opt = fd.SGD(lr=0.1)
    assert opt.bind(1000, np.dtype(np.float32)).size == 0
    assert fd.SGD(lr=0.1, momentum=0.9).bind(1000, np.dtype(np.float32)).shape == (1, 1000)


@pytest.mark.parametrize("batch_size", [BATCH, 1])
def test_adam_without_eps_trains(batch_size):
    """``eps=0`` is a valid Adam (PyTorch's too): the guard's bound on its step
    (``|m| / eps``) is then infinite and each update is checked exactly, where the batch
    kernels raised ZeroDivisionError.  With tanh no gradient is exactly zero, so no
    update is 0 / 0 and the fit trains."""
    X, y = problem()
    net = fd.MLP([4, 16, 1], loss="mse", activation="tanh", seed=0, dtype="float64")
    hist = net.fit(X, y, epochs=3, batch_size=batch_size, shuffle=False,
                   optimizer=fd.Adam(lr=1e-2, eps=0.0))
    assert np.isfinite(hist.loss).all() and hist.loss[-1] < hist.loss[0]


@pytest.mark.parametrize("optimizer", [fd.SGD(lr=3.5e38), fd.SGD(lr=1e-3, weight_decay=1e39),
                                       fd.AdamW(lr=1e-3, weight_decay=1e39)])
def test_hyper_parameters_beyond_the_nets_dtype_are_refused(optimizer):
    """Finite in float64 but not in float32, they are inf in the float32 update: the
    guard's bounds (of the float64 values) let inf and NaN weights into a net without a
    snapshot.  They are refused before any step."""
    X, y = problem()
    net = fd.MLP([4, 16, 1], loss="mse", seed=0, dtype="float32")
    before = net.get_weights()
    with pytest.raises(ValueError, match="beyond the range of the net's dtype float32"):
        net.fit(X, y, epochs=4, batch_size=BATCH, optimizer=optimizer)
    assert_same_weights(net.get_weights(), before)
    # A float64 net holds them: it trains (and diverges, or not, as the guard says).
    with contextlib.suppress(fd.TrainingDivergedError):
        fd.MLP([4, 16, 1], loss="mse", seed=0, dtype="float64").fit(
            X, y, epochs=1, batch_size=BATCH, optimizer=type(optimizer)(**optimizer._params()))


def test_an_lr_beyond_the_dtype_set_by_a_callback_is_refused():
    X, y = problem()
    opt = fd.SGD(lr=1e-3)
    cb = fd.LambdaCallback(on_epoch_end=lambda epoch, logs: setattr(opt, "lr", 3.5e38))
    net = fd.MLP([4, 16, 1], loss="mse", seed=0, dtype="float32")
    with pytest.raises(ValueError, match="lr 3.5e"):
        net.fit(X, y, epochs=3, batch_size=BATCH, optimizer=opt, callbacks=[cb])
    assert all(np.isfinite(W).all() and np.isfinite(b).all() for W, b in net.get_weights())


def test_a_divergence_on_huge_inputs_names_them_not_only_the_lr():
    """|x| ~ 1e20 diverges at any lr (1e-8 too); the message said only 'lr too large?'."""
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(200, 3)) * 1e20).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    with pytest.raises(fd.TrainingDivergedError, match=r"inputs reach \|x\| = .*scale them"):
        fd.MLP([3, 16, 2], seed=0).fit(X, y, epochs=3, optimizer=fd.SGD(lr=1e-8))


def test_scaled_inputs_keep_the_lr_hint():
    X = np.random.default_rng(0).normal(size=(64, 3))
    with pytest.raises(fd.TrainingDivergedError) as info:
        fd.MLP([3, 16, 1], loss="mse", seed=0).fit(X, X[:, 0], epochs=3,
                                                   optimizer=fd.SGD(lr=1e30))
    assert "lr too large?" in str(info.value) and "inputs reach" not in str(info.value)
