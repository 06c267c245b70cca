"""Optimizer updates and learning-rate schedules against naive.py.

Tolerances are relative to the largest entry of the compared array: 1e-12 in
float64 (a handful of steps, different summation order), 1e-5 in float32 (the
gradients themselves carry ~1e-6 relative rounding; see test_net_oracle.py).
"""

import copy
import math

import numpy as np
import pytest

import fastdnn as fd
import naive
from support import assert_close, assert_same_weights, build

RTOL = {"float32": 1e-5, "float64": 1e-12}

# name -> (fastdnn optimizer factory, naive optimizer factory), same hyper-parameters.
OPTIMIZERS = {
    "sgd": (lambda: fd.SGD(lr=0.1), lambda: naive.SGD(0.1)),
    "sgd-momentum": (lambda: fd.SGD(lr=0.1, momentum=0.9), lambda: naive.SGD(0.1, momentum=0.9)),
    "sgd-nesterov-wd": (
        lambda: fd.SGD(lr=0.1, momentum=0.8, nesterov=True, weight_decay=0.05),
        lambda: naive.SGD(0.1, momentum=0.8, nesterov=True, weight_decay=0.05),
    ),
    "sgd-wd": (
        lambda: fd.SGD(lr=0.1, weight_decay=0.05),
        lambda: naive.SGD(0.1, weight_decay=0.05),
    ),
    "adam": (lambda: fd.Adam(lr=0.01), lambda: naive.Adam(0.01)),
    "adam-wd-betas": (
        lambda: fd.Adam(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05),
        lambda: naive.Adam(0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05),
    ),
    "adamw": (
        lambda: fd.AdamW(lr=0.01, weight_decay=0.1),
        lambda: naive.AdamW(0.01, weight_decay=0.1),
    ),
}


def assert_weights(net, want, rtol):
    for (W, b), (want_W, want_b) in zip(net.get_weights(), want):
        assert_close(W, want_W, rtol)
        assert_close(b, want_b, rtol)


@pytest.mark.parametrize("epochs", [1, 3])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_full_batch_steps_match_naive_update(optimizer, dtype, epochs, make_data):
    """batch_size=n, shuffle=False: each epoch is exactly one optimizer step."""
    n = 7
    X, y = make_data("cross_entropy", n, 5, 3, dtype)
    net, params = build([5, 7, 3], "tanh", "cross_entropy", dtype)
    make_fd, make_naive = OPTIMIZERS[optimizer]
    net.fit(X, y, epochs=epochs, batch_size=n, optimizer=make_fd(), shuffle=False)
    want = naive.train(params, "tanh", "cross_entropy", X.astype(np.float64), y, epochs, n, make_naive())
    assert_weights(net, want, RTOL[dtype])


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_optimizer_name_means_default_instance(name, make_data):
    X, y = make_data("mse", 7, 5, 2)
    by_name, _ = build([5, 7, 2], "tanh", "mse", "float64")
    by_instance, _ = build([5, 7, 2], "tanh", "mse", "float64")
    by_name.fit(X, y, epochs=2, batch_size=4, optimizer=name, shuffle=False)
    default = {"sgd": fd.SGD, "adam": fd.Adam, "adamw": fd.AdamW}[name]()
    by_instance.fit(X, y, epochs=2, batch_size=4, optimizer=default, shuffle=False)
    for (W1, b1), (W2, b2) in zip(by_name.get_weights(), by_instance.get_weights()):
        np.testing.assert_array_equal(W1, W2)
        np.testing.assert_array_equal(b1, b2)


@pytest.mark.parametrize("optimizer", ["sgd-nesterov-wd", "adamw"])
def test_optimizer_state_and_step_count_carry_over_between_fits(optimizer, make_data):
    """Two fit calls with one optimizer instance continue where the first stopped:
    momentum / moments, Adam's bias correction and the schedule's t."""
    X, y = make_data("mse", 8, 5, 2)
    net, params = build([5, 7, 2], "tanh", "mse", "float64")
    make_fd, make_naive = OPTIMIZERS[optimizer]
    opt, schedule = make_fd(), fd.InverseTimeDecay(decay=0.2)
    net.fit(X, y, epochs=1, batch_size=3, optimizer=opt, schedule=schedule, shuffle=False)
    net.fit(X, y, epochs=2, batch_size=3, optimizer=opt, schedule=schedule, shuffle=False)
    want = naive.train(params, "tanh", "mse", X, y, 3, 3, make_naive(),
                       lambda t: naive.inverse_time_factor(t, 0.2))
    assert_weights(net, want, RTOL["float64"])


# name -> (schedule, factor(t, total_steps) from naive.py)
SCHEDULES = {
    "constant": (lambda: fd.Constant(), lambda t, T: 1.0),
    "inverse-time": (lambda: fd.InverseTimeDecay(decay=0.3), lambda t, T: naive.inverse_time_factor(t, 0.3)),
    "step": (lambda: fd.StepDecay(step_size=4, gamma=0.5), lambda t, T: naive.step_factor(t, 4, 0.5)),
    "exponential": (
        lambda: fd.ExponentialDecay(rate=0.5, decay_steps=3),
        lambda t, T: naive.exponential_factor(t, 0.5, 3),
    ),
    "cosine": (lambda: fd.CosineDecay(total_steps=7), lambda t, T: naive.cosine_factor(t, 7)),
    "cosine-floor": (
        lambda: fd.CosineDecay(total_steps=5, min_factor=0.2),
        lambda t, T: naive.cosine_factor(t, 5, 0.2),
    ),
    # total_steps=None: decays over all iterations of the fit call.
    "cosine-fit-length": (lambda: fd.CosineDecay(), lambda t, T: naive.cosine_factor(t, T)),
}


@pytest.mark.parametrize("schedule", [s for s in SCHEDULES if s != "cosine-fit-length"])
def test_schedule_factor_formula(schedule):
    make_fd, factor = SCHEDULES[schedule]
    sched = make_fd()
    for t in range(40):
        assert sched.factor(t) == pytest.approx(factor(t, None), rel=1e-12, abs=1e-300), t


def test_cosine_without_total_steps_uses_given_total():
    sched = fd.CosineDecay(min_factor=0.1)
    for t in range(15):
        assert sched.factor(t, total_steps=10) == pytest.approx(naive.cosine_factor(t, 10, 0.1), rel=1e-12)


def test_schedule_formulas_at_landmarks():
    """Hand-computed values, independent of naive.py."""
    assert fd.InverseTimeDecay(decay=0.5).factor(0) == 1.0
    assert fd.InverseTimeDecay(decay=0.5).factor(4) == pytest.approx(1 / 3)
    assert fd.StepDecay(step_size=3, gamma=0.1).factor(2) == 1.0
    assert fd.StepDecay(step_size=3, gamma=0.1).factor(3) == pytest.approx(0.1)
    assert fd.StepDecay(step_size=3, gamma=0.1).factor(6) == pytest.approx(0.01)
    assert fd.ExponentialDecay(rate=0.5, decay_steps=2).factor(2) == pytest.approx(0.5)
    assert fd.ExponentialDecay(rate=0.5, decay_steps=2).factor(1) == pytest.approx(math.sqrt(0.5))
    assert fd.CosineDecay(total_steps=10).factor(0) == pytest.approx(1.0)
    assert fd.CosineDecay(total_steps=10).factor(5) == pytest.approx(0.5)
    assert fd.CosineDecay(total_steps=10).factor(10) == pytest.approx(0.0, abs=1e-15)
    assert fd.CosineDecay(total_steps=10, min_factor=0.2).factor(25) == pytest.approx(0.2)


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_fit_applies_schedule_per_iteration(schedule, make_data):
    """12 samples, batches of 5: 3 iterations per epoch (the last one partial), 3 epochs."""
    n, batch_size, epochs = 12, 5, 3
    steps_per_epoch = math.ceil(n / batch_size)
    total = steps_per_epoch * epochs
    X, y = make_data("mse", n, 5, 2)
    net, params = build([5, 7, 2], "tanh", "mse", "float64")
    make_fd, factor = SCHEDULES[schedule]
    lr = 0.1
    hist = net.fit(X, y, epochs=epochs, batch_size=batch_size, shuffle=False,
                   optimizer=fd.SGD(lr=lr, momentum=0.5), schedule=make_fd())
    want = naive.train(params, "tanh", "mse", X, y, epochs, batch_size,
                       naive.SGD(lr, momentum=0.5), lambda t: factor(t, total))
    assert_weights(net, want, RTOL["float64"])

    # hist.lr holds one lr per epoch: the lr of the epoch's last step.
    assert len(hist.lr) == epochs
    for epoch, got in enumerate(hist.lr):
        last_t = (epoch + 1) * steps_per_epoch - 1
        assert got == pytest.approx(lr * factor(last_t, total), rel=1e-12), epoch


def _xy(n=40):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 3)), rng.integers(0, 2, size=n)


def test_an_optimizer_given_to_another_net_starts_over():
    """One Adam for two nets of the same size carried the first net's moments and step
    count into the second's fit, silently (t 20 -> 24; weights 0.04 off)."""
    X, y = _xy()
    opt = fd.Adam(lr=0.01)
    fd.MLP([3, 5, 2], seed=0).fit(X, y, epochs=2, batch_size=4, optimizer=opt)
    shared, fresh = fd.MLP([3, 5, 2], seed=1), fd.MLP([3, 5, 2], seed=1)
    shared.fit(X, y, epochs=1, batch_size=4, optimizer=opt, schedule=fd.CosineDecay())
    alone = fd.Adam(lr=0.01)
    hist = fresh.fit(X, y, epochs=1, batch_size=4, optimizer=alone, schedule=fd.CosineDecay())
    assert opt.t == alone.t == 10
    np.testing.assert_array_equal(shared._backend.theta, fresh._backend.theta)
    # The default cosine ends where the fit ends, on the step count it starts from.
    assert hist.lr[-1] == pytest.approx(0.01 * 0.5 * (1 + np.cos(np.pi * 9 / 10)))


def test_momentum_switched_on_keeps_the_step_count():
    # The velocity starts at zero; the count (and the schedule's place) went back to 0.
    X, y = _xy()
    net, opt = fd.MLP([3, 5, 2], seed=0), fd.SGD(lr=0.1)
    net.fit(X, y, epochs=2, batch_size=4, optimizer=opt)
    opt.momentum = 0.9
    net.fit(X, y, epochs=1, batch_size=4, optimizer=opt)
    assert opt.t == 30 and opt.state.shape == (1, net.n_params)


@pytest.mark.parametrize("name, value, error", [("lr", -1.0, ValueError),
                                                ("lr", "0.1", TypeError),
                                                ("lr", float("nan"), ValueError),
                                                ("momentum", 1.5, ValueError)])
def test_hyper_parameters_set_after_construction_are_checked(name, value, error):
    # opt.lr = -1 trained by gradient ascent; nan was blamed on the rate as a divergence.
    X, y = _xy()
    opt = fd.SGD(lr=0.1, momentum=0.5)
    setattr(opt, name, value)
    with pytest.raises(error, match=name):
        fd.MLP([3, 5, 2], seed=0).fit(X, y, epochs=1, optimizer=opt)


@pytest.mark.parametrize("value", ["False", 1, None, 0.0])
def test_nesterov_takes_a_bool_only(value):
    """``SGD(nesterov="False")`` turned Nesterov momentum on (``bool("False")``)."""
    with pytest.raises(TypeError, match="nesterov must be True or False"):
        fd.SGD(lr=0.1, momentum=0.9, nesterov=value)
    assert fd.SGD(lr=0.1, momentum=0.9, nesterov=np.bool_(True)).nesterov is True


def test_nesterov_set_after_construction_is_checked_at_fit():
    opt = fd.SGD(lr=0.1, momentum=0.9)
    opt.nesterov = "yes"  # the fit raised NumPy's "could not convert string to float"
    X = np.ones((4, 2))
    with pytest.raises(TypeError, match="nesterov must be True or False"):
        fd.MLP([2, 3, 2], seed=0).fit(X, [0, 1, 0, 1], optimizer=opt)


def test_the_optimizer_base_class_is_refused_with_the_ones_to_use():
    """``fd.Optimizer`` is public (for isinstance checks); an instance of it failed in
    ``repr`` and in ``fit`` with AttributeError."""
    with pytest.raises(TypeError, match="use fd.SGD, fd.Adam, fd.AdamW or fd.LBFGS"):
        fd.Optimizer(0.1)


def test_cosine_decay_anneals_down_only():
    with pytest.raises(ValueError, match="min_factor must be <= 1"):
        fd.CosineDecay(total_steps=10, min_factor=2.0)  # it annealed upward, to 2 lr
    assert fd.CosineDecay(total_steps=10, min_factor=1.0).factor(5) == 1.0


def test_a_cosine_curve_the_optimizer_has_passed_is_refused():
    """Its steps count the optimizer's, which go on across fits: a later fit with
    total_steps=20 after 20 steps ran every step at lr 0 and changed nothing."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 3)), rng.integers(0, 2, 64)
    net, opt = fd.MLP([3, 8, 2], seed=0), fd.SGD(lr=0.1)
    net.fit(X, y, epochs=5, batch_size=16, optimizer=opt, schedule=fd.CosineDecay())
    assert opt.t == 20
    before = net.get_weights()
    with pytest.raises(ValueError, match=r"CosineDecay\(total_steps=20, min_factor=0.0\) ended "
                                         r"before this fit: the optimizer has taken 20 steps"):
        net.fit(X, y, epochs=5, batch_size=16, optimizer=opt, schedule=fd.CosineDecay(20))
    assert_same_weights(net.get_weights(), before)
    # What the message offers anneals anew from lr; a floor above 0 trains at it.
    opt.reset()
    hist = net.fit(X, y, epochs=5, batch_size=16, optimizer=opt, schedule=fd.CosineDecay(20))
    assert hist.lr[0] > 0.09 and hist.lr[-1] < 1e-3
    hist = net.fit(X, y, epochs=1, batch_size=16, optimizer=opt,
                   schedule=fd.CosineDecay(total_steps=20, min_factor=0.1))
    assert hist.lr == [pytest.approx(0.01)]


def _interrupted_in_epoch_3(net, path, **args):
    """``(X, y)``: ``net``'s fit of 4 epochs of 8 steps with ``args``, interrupted in its
    third epoch's end, its backup (of 2 epochs, t=16) at ``path``."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 4)), rng.standard_normal(64)

    def stop_in_epoch_3(epoch, logs):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        net.fit(X, y, callbacks=[fd.BackupAndRestore(path),
                                 fd.LambdaCallback(on_epoch_end=stop_in_epoch_3)], **args)
    return X, y


def test_a_resumed_fit_is_judged_by_the_steps_of_its_backup(tmp_path):
    """Interrupted at t=24 with a backup at t=16, a rerun of the same fit (the same
    optimizer) was refused for CosineDecay(total_steps=20): the check read the
    optimizer's count before the backup set it back."""
    path = tmp_path / "backup.npz"
    net, opt = fd.MLP([4, 8, 1], loss="mse", seed=0), fd.SGD(lr=0.1)
    args = dict(epochs=4, batch_size=8, optimizer=opt, schedule=fd.CosineDecay(total_steps=20),
                shuffle=False)
    X, y = _interrupted_in_epoch_3(net, path, **args)
    assert opt.t == 24
    hist = net.fit(X, y, callbacks=[fd.BackupAndRestore(path)], **args)
    assert len(hist) == 4 and opt.t == 32
    # Done (the backup gone), the same optimizer has passed the curve: refused.
    with pytest.raises(ValueError, match="ended before this fit: the optimizer has taken 32"):
        net.fit(X, y, **args)


@pytest.mark.parametrize("schedule", [fd.Constant(), fd.InverseTimeDecay(0.5), fd.StepDecay(3, 0.5),
                                      fd.ExponentialDecay(0.5, 4), fd.CosineDecay(10, 0.5),
                                      fd.ReduceLROnPlateau(factor=0.5, patience=2, cooldown=1)])
def test_a_schedules_repr_rebuilds_it_without_its_state(schedule):
    if isinstance(schedule, fd.ReduceLROnPlateau):
        schedule = copy.deepcopy(schedule)
        for loss in (1.0, 2.0, 2.0, 2.0):  # a reduction: scale 0.5, best 1, cooling 1
            schedule.update(loss, 0.1)
        assert schedule.scale == 0.5  # its repr showed scale, best, wait and cooling
    rebuilt = eval("fd." + repr(schedule))
    assert type(rebuilt) is type(schedule) and repr(rebuilt) == repr(schedule)
    assert "scale" not in repr(schedule) and "best" not in repr(schedule)
    assert np.array_equal(rebuilt.params(20), type(schedule)().params(20)
                          if isinstance(schedule, fd.ReduceLROnPlateau) else schedule.params(20))


def test_step_decay_takes_the_step_sizes_the_kernels_read_exactly():
    for step_size in (2**53 + 1, 2**63, 10**30):  # 2**63 doubled lr from step 1 (gamma 0.5)
        with pytest.raises(ValueError, match="from 1 to 2\\*\\*53"):
            fd.StepDecay(step_size=step_size, gamma=0.5)
    X, y = np.random.default_rng(0).normal(size=(32, 4)), np.arange(32) % 3
    hist = fd.MLP([4, 8, 3], seed=0).fit(X, y, epochs=2, batch_size=8, optimizer=fd.SGD(0.1),
                                         schedule=fd.StepDecay(step_size=2**53, gamma=0.5))
    assert hist.lr == [0.1, 0.1]


def test_an_lr_set_by_a_callback_takes_effect_at_once():
    """Keras' LearningRateScheduler: halving opt.lr at each epoch end trained on at the
    fit's first rate, and the History disagreed with the optimizer."""
    X, y = np.random.default_rng(0).normal(size=(40, 3)), np.arange(40) % 3

    def halve(opt):
        def on_epoch_end(epoch, logs):
            opt.lr = opt.lr / 2
        return fd.LambdaCallback(on_epoch_end=on_epoch_end)

    opt = fd.SGD(0.1, momentum=0.9)
    net = fd.MLP([3, 8, 3], seed=0)
    hist = net.fit(X, y, epochs=4, batch_size=8, optimizer=opt, callbacks=[halve(opt)])
    assert hist.lr == [0.1, 0.05, 0.025, 0.0125]
    # The same as fits of one epoch each, the rate set between them (momentum kept).
    alone, by_hand = fd.SGD(0.1, momentum=0.9), fd.MLP([3, 8, 3], seed=0)
    for _ in range(4):
        by_hand.fit(X, y, epochs=1, batch_size=8, optimizer=alone)
        alone.lr /= 2
    assert_same_weights(net.get_weights(), by_hand.get_weights())


@pytest.mark.parametrize("name, value", [("momentum", 0.5), ("weight_decay", 0.1),
                                         ("lr", -1.0)])
def test_other_hyper_parameters_set_during_a_fit_are_refused(name, value):
    X, y = np.random.default_rng(0).normal(size=(40, 3)), np.arange(40) % 3
    opt = fd.SGD(0.1, momentum=0.9)
    cb = fd.LambdaCallback(on_epoch_end=lambda epoch, logs: setattr(opt, name, value))
    with pytest.raises(ValueError, match="cannot change during a fit" if name != "lr" else "lr"):
        fd.MLP([3, 8, 3], seed=0).fit(X, y, epochs=3, batch_size=8, optimizer=opt,
                                      callbacks=[cb])


@pytest.mark.parametrize("make, name, value", [
    (lambda: fd.StepDecay(2), "gamma", -2.0),  # gradient ascent, silently
    (lambda: fd.StepDecay(2), "step_size", 0),  # ZeroDivisionError in the kernel
    (lambda: fd.ExponentialDecay(0.5), "decay_steps", 0.0),
    (lambda: fd.CosineDecay(10), "total_steps", 0),  # lr 0: nothing trained
    (lambda: fd.InverseTimeDecay(0.1), "decay", -0.5),
    (lambda: fd.ReduceLROnPlateau(), "factor", 3.0),  # "reductions" raised the rate
])
def test_a_schedules_parameters_set_since_are_checked_at_fit(make, name, value):
    schedule = make()
    setattr(schedule, name, value)
    X, y = np.random.default_rng(0).normal(size=(12, 3)), np.arange(12) % 3
    net = fd.MLP([3, 4, 3], seed=0)
    before = net.get_weights()
    with pytest.raises(ValueError, match=name):
        net.fit(X, y, epochs=2, batch_size=4, optimizer=fd.SGD(0.1), schedule=schedule)
    assert_same_weights(net.get_weights(), before)


def test_a_schedule_subclass_whose_formula_the_kernels_cannot_run_is_refused():
    class Warmup(fd.Schedule):
        def factor(self, t, total_steps=None):
            return min(1.0, (t + 1) / 30)

    X, y = np.random.default_rng(0).normal(size=(12, 3)), np.arange(12) % 3
    with pytest.raises(TypeError, match="not a subclass's factor"):  # trained at 0.1
        fd.MLP([3, 4, 3], seed=0).fit(X, y, epochs=1, optimizer=fd.SGD(0.1), schedule=Warmup())


def test_a_plateau_schedule_given_to_another_net_starts_over():
    """Net B ran at net A's reduced rate, and A's best loss made B's first epochs no
    improvement."""
    X, y = np.random.default_rng(0).normal(size=(40, 3)), np.arange(40) % 3
    kw = dict(epochs=3, batch_size=8)
    plateau = fd.ReduceLROnPlateau(factor=0.5, patience=1, threshold=0.9)
    fd.MLP([3, 8, 3], seed=0).fit(X, y, optimizer=fd.SGD(0.1), schedule=plateau, **kw)
    assert plateau.scale < 1  # reduced on net A
    hist = fd.MLP([3, 8, 3], seed=1).fit(X, y, optimizer=fd.SGD(0.1), schedule=plateau, **kw)
    fresh = fd.MLP([3, 8, 3], seed=1).fit(X, y, optimizer=fd.SGD(0.1), **kw,
                                          schedule=fd.ReduceLROnPlateau(factor=0.5, patience=1,
                                                                        threshold=0.9))
    assert hist.lr == fresh.lr and hist.lr[0] == 0.1


@pytest.mark.parametrize("lr", [-1.0, 0.0, math.inf])
def test_a_bad_lr_is_told_the_bound_that_holds(lr):
    with pytest.raises(ValueError, match=r"lr must be finite, > 0; got"):  # it said ">= 0"
        fd.SGD(lr=lr)


def test_a_plateau_threshold_of_1_or_more_is_refused():
    # best * (1 - threshold) <= 0: no positive loss could count as an improvement.
    with pytest.raises(ValueError, match="threshold must be < 1"):
        fd.ReduceLROnPlateau(threshold=1.0)


def test_a_negative_seed_is_said_once():
    with pytest.raises(ValueError) as info:
        fd.MLP([2, 3, 2], seed=-1)
    assert str(info.value) == "seed must be None or a non-negative integer; got -1"


def test_a_resumed_fit_that_began_before_its_cosine_end_runs_on(tmp_path):
    # A fit longer than its CosineDecay(total_steps=10) holds lr 0 after step 10; its
    # rerun after a kill (t=16 restored) was refused as "ended before this fit".
    path = tmp_path / "backup.npz"
    args = dict(epochs=4, batch_size=8, schedule=fd.CosineDecay(total_steps=10), shuffle=False)
    net = fd.MLP([4, 8, 1], loss="mse", seed=0)
    X, y = _interrupted_in_epoch_3(net, path, optimizer=fd.SGD(lr=0.1), **args)
    whole = fd.MLP([4, 8, 1], loss="mse", seed=0)
    whole_hist = whole.fit(X, y, optimizer=fd.SGD(lr=0.1), **args)
    hist = net.fit(X, y, optimizer=fd.SGD(lr=0.1), callbacks=[fd.BackupAndRestore(path)],
                   **args)
    assert hist.lr == whole_hist.lr and hist.loss == whole_hist.loss
    assert_same_weights(net.get_weights(), whole.get_weights())
