"""One net used from several Python threads (a web service, a threaded search): reads
give their own results, two fits of one net at once are refused, and nets made at once
bind one BLAS."""
import threading

import numpy as np
import pytest

import fastdnn as fd
from fastdnn.kernels.cpu import threads


def test_concurrent_reads_of_one_net_are_each_their_own():
    """The evaluation's kept buffers are lent to one call at a time: shared, three
    threads' predicts read each other's rows (118 of 120 results wrong)."""
    rng = np.random.default_rng(0)
    net = fd.MLP([64, 256, 128, 10], dtype="float64", seed=0)
    inputs = [rng.normal(size=(n, 64)) for n in (300, 301, 302)]
    alone = [(net.forward(X), net.predict_proba(X), net.loss(X, np.zeros(len(X), int)))
             for X in inputs]
    barrier = threading.Barrier(3)
    wrong = []

    def reader(i):
        X = inputs[i]
        barrier.wait()
        for _ in range(15):
            got = (net.forward(X), net.predict_proba(X), net.loss(X, np.zeros(len(X), int)))
            if not all(np.array_equal(a, b) for a, b in zip(got, alone[i])):
                wrong.append(i)

    workers = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert not wrong


class Hold:
    """Holds a fit at the end of its first epoch until released."""

    def __init__(self):
        self.inside, self.release = threading.Event(), threading.Event()

    def on_epoch_end(self, epoch, logs):
        self.inside.set()
        assert self.release.wait(60)


def test_a_second_fit_of_a_net_in_training_is_refused():
    """Two fits of one net, each with its trainer, wrote into one set of weights: a mix
    of both that differed from run to run.  The second is refused; the first ends as
    it would have alone."""
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(128, 8)), rng.integers(0, 3, 128)
    net, twin = fd.MLP([8, 16, 3], seed=0), fd.MLP([8, 16, 3], seed=0)
    hold = Hold()
    first = threading.Thread(target=lambda: net.fit(X, y, epochs=2, callbacks=[hold]))
    first.start()
    try:
        assert hold.inside.wait(120)
        with pytest.raises(RuntimeError, match="being trained by another fit"):
            net.fit(X, y, epochs=1)
        with pytest.raises(RuntimeError, match="being trained by another fit"):
            fd.fit_many([fd.MLP([8, 4, 3]), net], X, y, epochs=1)
    finally:
        hold.release.set()
        first.join(120)
    twin.fit(X, y, epochs=2)
    for (W0, b0), (W1, b1) in zip(net.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(W0, W1)
        np.testing.assert_array_equal(b0, b1)
    net.fit(X, y, epochs=1)  # and the net trains again once the first fit is over


def test_one_optimizer_instance_in_two_fits_at_once_is_refused():
    """Two nets' fits in two threads with one Adam instance mixed its moments and step
    count: both nets' weights changed from run to run, silently."""
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(128, 8)), rng.integers(0, 3, 128)
    opt = fd.Adam(lr=0.01)
    net, other = fd.MLP([8, 16, 3], seed=0), fd.MLP([8, 16, 3], seed=1)
    hold = Hold()
    first = threading.Thread(target=lambda: net.fit(X, y, epochs=2, optimizer=opt,
                                                    callbacks=[hold]))
    first.start()
    try:
        assert hold.inside.wait(120)
        with pytest.raises(RuntimeError, match="optimizer instance is in another fit"):
            other.fit(X, y, epochs=1, optimizer=opt)
        with pytest.raises(RuntimeError, match="optimizer instance is in another fit"):
            fd.fit_many([fd.MLP([8, 4, 3]), other], X, y, epochs=1,
                        optimizer=[fd.Adam(), opt])
        other.fit(X, y, epochs=1, optimizer="adam")  # a name makes its own
    finally:
        hold.release.set()
        first.join(120)
    twin = fd.MLP([8, 16, 3], seed=0)
    twin.fit(X, y, epochs=2, optimizer=fd.Adam(lr=0.01))
    for (W0, b0), (W1, b1) in zip(net.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(W0, W1)
        np.testing.assert_array_equal(b0, b1)
    other.fit(X, y, epochs=1, optimizer=opt)  # free again once that fit is over


def test_weights_set_from_another_thread_during_a_fit_are_refused():
    """The fit went on from them with its old optimizer state (a different result each
    run); the fit's own callbacks may still set them, and l2 set to its own value is no
    change (a warm scikit-learn estimator does it)."""
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(128, 8)), rng.integers(0, 3, 128)
    net = fd.MLP([8, 16, 3], seed=0)
    start = net.get_weights()

    class Reset:
        def on_epoch_end(self, epoch, logs):
            net.set_weights(start)  # the fit's own thread
            net.l2 = 0.0

    hold = Hold()
    first = threading.Thread(target=lambda: net.fit(X, y, epochs=2, callbacks=[Reset(), hold]))
    first.start()
    try:
        assert hold.inside.wait(120)
        with pytest.raises(RuntimeError, match="weights cannot change while the net is "
                                               "being trained by another thread"):
            net.set_weights(start)
        net.l2, net.dropout = 0.0, [0.0]  # unchanged: allowed
        with pytest.raises(RuntimeError, match="l2 cannot change"):
            net.l2 = 0.5
    finally:
        hold.release.set()
        first.join(120)
    for (W0, b0), (W1, b1) in zip(net.get_weights(), start):  # reset by the callback
        np.testing.assert_array_equal(W0, W1)
        np.testing.assert_array_equal(b0, b1)


def test_the_blas_lookup_from_two_threads_at_once_finds_it_in_both(monkeypatch):
    """The lookup marked itself done before it was: the second thread took 'no
    OpenBLAS', and nets made at once could bind another BLAS than the process chose."""
    if threads.scipy_blas() is None:
        pytest.skip("SciPy's BLAS here is not OpenBLAS")
    for _ in range(20):
        monkeypatch.setattr(threads, "_blas", None)
        barrier, found = threading.Barrier(2), {}

        def look(i):
            barrier.wait()
            found[i] = threads.scipy_blas() is not None

        workers = [threading.Thread(target=look, args=(i,)) for i in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        assert found == {0: True, 1: True}
