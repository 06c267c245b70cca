"""What ``fit`` promises about its trainer (``spec.Trainer``) and its plan:

* the trainer owns the step count: an optimizer instance leaves a fit with ``t`` advanced
  by the steps taken, and the next fit goes on from there;
* ``History.lr`` is the learning rate of each epoch's last update, ``lr * factor(t)``;
* validation is one forward pass per epoch, and gives what ``loss`` and ``score`` give;
* ``batch_size`` is capped at the number of samples, once, before the trainer is made.
"""
import math

import numpy as np
import pytest

import fastdnn as fd
from fastdnn import config
from support import assert_same_weights

N, BATCH = 20, 6
STEPS = math.ceil(N / BATCH)  # 4 per epoch, the last batch ragged

SCHEDULES = {
    "step": lambda: fd.StepDecay(step_size=3, gamma=0.5),
    "inverse_time": lambda: fd.InverseTimeDecay(0.1),
    "cosine": lambda: fd.CosineDecay(),
    "cosine-fixed": lambda: fd.CosineDecay(total_steps=7, min_factor=0.1),
    "exponential": lambda: fd.ExponentialDecay(0.9, decay_steps=2),
}


def problem(n=N, loss="cross_entropy", k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    if loss == "cross_entropy":
        return X, rng.integers(0, k, n)
    if loss == "mse":
        return X, rng.standard_normal((n, k))
    return X, rng.uniform(size=(n, k))


@pytest.mark.parametrize("make_optimizer", [lambda: fd.SGD(lr=0.1, momentum=0.9),
                                            lambda: fd.Adam(lr=0.01)], ids=["sgd", "adam"])
@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_trainer_owns_the_step_count_and_the_lr(schedule, make_optimizer):
    X, y = problem()
    net = fd.MLP([4, 5, 3], seed=0)
    opt, sched = make_optimizer(), SCHEDULES[schedule]()
    t = 0
    for epochs in (3, 2):  # the second fit goes on from the first one's count
        hist = net.fit(X, y, epochs=epochs, batch_size=BATCH, optimizer=opt, schedule=sched)
        total = t + epochs * STEPS  # what CosineDecay() anneals over in this fit
        assert opt.t == total
        for epoch, lr in enumerate(hist.lr):
            last = t + (epoch + 1) * STEPS - 1  # steps before the epoch's last update
            assert lr == pytest.approx(opt.lr * sched.factor(last, total), rel=1e-12, abs=0)
        t = total


@pytest.mark.parametrize("make_optimizer", [lambda: fd.SGD(lr=0.1, momentum=0.9),
                                            lambda: fd.Adam(lr=0.01), lambda: fd.AdamW(lr=0.01)],
                         ids=["sgd", "adam", "adamw"])
def test_two_fits_are_one_fit(make_optimizer):
    """In order and at a constant rate, fit(3) then fit(2) with one optimizer makes the
    same updates as fit(5): momentum and Adam's bias corrections go on, not restart."""
    X, y = problem()
    nets = [fd.MLP([4, 5, 3], seed=0) for _ in range(2)]
    opts = [make_optimizer() for _ in range(2)]
    nets[0].fit(X, y, epochs=5, batch_size=BATCH, optimizer=opts[0], shuffle=False)
    for epochs in (3, 2):
        nets[1].fit(X, y, epochs=epochs, batch_size=BATCH, optimizer=opts[1], shuffle=False)
    assert opts[0].t == opts[1].t == 5 * STEPS
    assert_same_weights(nets[0].get_weights(), nets[1].get_weights())


def test_an_optimizer_name_starts_from_zero_each_fit():
    X, y = problem()
    net = fd.MLP([4, 5, 3], seed=0)
    for _ in range(2):
        hist = net.fit(X, y, epochs=2, batch_size=BATCH, optimizer="sgd",
                       schedule=fd.StepDecay(step_size=STEPS, gamma=0.5))
        assert hist.lr == [0.01, 0.005]  # SGD's default lr, halved after epoch 1's steps


def _count_calls(backend, names):
    """Wrap ``backend``'s methods ``names`` to record each call's keyword arguments."""
    calls = {name: [] for name in names}
    for name in names:
        method = getattr(backend, name)

        def counted(*args, _name=name, _method=method, **kwargs):
            calls[_name].append(kwargs)
            return _method(*args, **kwargs)

        setattr(backend, name, counted)
    return calls


@pytest.mark.parametrize("loss,k", [("cross_entropy", 3), ("mse", 2), ("binary_cross_entropy", 2)])
def test_validation_is_one_pass_and_agrees_with_loss_and_score(monkeypatch, loss, k):
    monkeypatch.setattr(config, "PREDICT_CHUNK", 7)  # 15 validation rows: chunks 7, 7, 1
    X, y = problem(loss=loss, k=k)
    Xv, yv = problem(n=15, loss=loss, k=k, seed=1)
    net = fd.MLP([4, 5, k], loss=loss, seed=0)
    calls = _count_calls(net._backend, ["evaluate", "outputs"])
    epochs = 3
    hist = net.fit(X, y, epochs=epochs, batch_size=BATCH, validation_data=(Xv, yv))
    # One forward pass per epoch gives both the loss and the logits for the metric (and
    # one more checks the training loss at the weights the fit ends with).
    assert calls["evaluate"] == [dict(want_logits=True)] * epochs + [{}]
    assert calls["outputs"] == []
    assert hist.val_loss[-1] == net.loss(Xv, yv)
    # score's R^2 reads y as given (float64), val_metric the targets in the net's dtype.
    assert hist.val_metric[-1] == pytest.approx(net.score(Xv, yv), rel=1e-9)
    assert np.isfinite(hist.val_loss).all() and np.isfinite(hist.val_metric).all()


def test_without_validation_data_the_entries_are_nan():
    X, y = problem()
    hist = fd.MLP([4, 5, 3], seed=0).fit(X, y, epochs=2, batch_size=BATCH)
    assert np.isnan(hist.val_loss).all() and np.isnan(hist.val_metric).all()


def test_batch_size_is_capped_at_the_samples():
    X, y = problem(n=10)
    capped = fd.MLP([4, 5, 3], seed=0)
    calls = []
    make_trainer = capped._backend.trainer

    def trainer(X, T, batch_size, optimizer, schedule, clip_norm=None):
        calls.append(batch_size)
        return make_trainer(X, T, batch_size, optimizer, schedule, clip_norm)

    capped._backend.trainer = trainer
    opt = fd.Adam(lr=0.01)
    hist = capped.fit(X, y, epochs=3, batch_size=1000, optimizer=opt)
    assert calls == [10]  # the trainer sizes its buffers for 10 rows, not 1000
    assert opt.t == 3  # one step per epoch
    assert len(hist) == 3
    exact = fd.MLP([4, 5, 3], seed=0)
    exact.fit(X, y, epochs=3, batch_size=10, optimizer=fd.Adam(lr=0.01))
    assert_same_weights(capped.get_weights(), exact.get_weights())
