"""Two-shard steps (``kernels.cpu.pair``): the same weights whoever computes the second
shard, a caller that never waits for a helper that stalls, and the atomics they use."""
import copy
import os
import select
import signal
import threading
import time

import numpy as np
import pytest
from numba import njit

import fastdnn as fd
from fastdnn import config
from fastdnn.kernels import spec
from fastdnn.kernels.cpu import backend, pair, updates
from fastdnn.kernels.cpu.backend import n_shards

SIZES = [6, 40, 30, 3]


@pytest.fixture
def paired(monkeypatch):
    """Shard every batch of 8 rows or more in two."""
    monkeypatch.setattr(config, "SHARDS", 2)
    monkeypatch.setattr(config, "MIN_SHARD_ROWS", 4)
    monkeypatch.setattr(config, "MIN_SHARD_MACS", 0)


def fit(n_threads, dtype="float64", optimizer=None):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((300, SIZES[0]))
    y = rng.integers(0, SIZES[-1], 300)
    w = rng.uniform(0.5, 2.0, 300)
    net = fd.MLP(SIZES, dtype=dtype, seed=1, n_threads=n_threads, dropout=0.1)
    net.fit(X, y, epochs=3, batch_size=64, sample_weight=w,
            optimizer=optimizer or fd.SGD(lr=0.05, momentum=0.9))
    return net.get_weights()


def same(a, b):
    for (W1, b1), (W2, b2) in zip(a, b):
        np.testing.assert_array_equal(W1, W2)
        np.testing.assert_array_equal(b1, b2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_helper_or_not_the_same_weights(paired, dtype):
    """With a helper (all threads) or without (one thread: the caller takes both
    shards), bit for bit; and close to one pass over the batch."""
    assert n_shards(SIZES, 64) == 2
    serial = fit(1, dtype)
    same(fit(None, dtype), serial)
    config.SHARDS = 1
    tol = 1e-4 if dtype == "float32" else 1e-10
    for (W1, b1), (W2, b2) in zip(fit(1, dtype), serial):
        np.testing.assert_allclose(W1, W2, rtol=tol, atol=tol)


def test_a_stalled_helper_is_taken_over(paired, monkeypatch):
    """A helper that claimed a shard and never finishes it: each step waits about one
    shard's time, then computes the shard itself; the weights are those of any run."""
    want = fit(1)
    new_control = pair.new_control

    def claimed_ahead(n_shards, n_targets, batch_size):
        control = new_control(n_shards, n_targets, batch_size)
        control[pair.CLAIM] = 1 << 40  # every job looks claimed by a helper
        return control

    monkeypatch.setattr(pair, "new_control", claimed_ahead)
    same(fit(1), want)


def test_adam_and_float32_paired_match_one_thread(paired):
    same(fit(None, "float32", fd.Adam(1e-3)), fit(1, "float32", fd.Adam(1e-3)))


@njit
def _atomics(a):
    pair.store_release(a, 1, 7)
    first = pair.compare_exchange(a, 1, 7, 9)
    second = pair.compare_exchange(a, 1, 7, 11)
    pair.spin_pause()
    return first, second, pair.load_acquire(a, 1), pair.cycle_count() >= 0


def test_atomics():
    a = np.zeros(4, dtype=np.int64)
    assert _atomics(a) == (True, False, 9, True)
    assert a.tolist() == [0, 9, 0, 0]


def _released(control, seconds=5.0):
    """Whether the helper let go of the fit of ``control`` within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        helper = pair._helper
        if control[pair.STOP] == 1 and (helper is None or helper._serving is not control):
            return True
        time.sleep(0.01)
    return False


class Boom(fd.callbacks.Callback):
    def on_epoch_end(self, epoch, logs):
        if epoch == 1:
            raise RuntimeError("boom")


def test_a_fit_that_raises_lets_the_helper_go(paired, monkeypatch):
    """The helper spins only while its fit runs: a fit ended by an exception releases
    it too (``FitRun.close`` in ``fit``'s ``finally``)."""
    if not pair.helps(2):
        pytest.skip("no helper thread on this machine (one core, or not x86 POSIX)")
    served = []
    start = pair.start
    monkeypatch.setattr(pair, "start", lambda *a: (served.append(a[4].control), start(*a)))
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((300, SIZES[0])), rng.integers(0, SIZES[-1], 300)
    with pytest.raises(RuntimeError, match="boom"):
        fd.MLP(SIZES, seed=0).fit(X, y, epochs=5, batch_size=64, callbacks=[Boom()])
    assert len(served) == 1
    assert _released(served[0])
    fd.MLP(SIZES, seed=0).fit(X, y, epochs=1, batch_size=64)  # and it serves the next fit


def test_fits_in_two_threads_match_their_sequential_twins(paired):
    """Two fits at once share one helper (the newest fit takes it): each ends with the
    weights of the same fit run alone."""
    want = [fit(None, dtype) for dtype in ("float32", "float64")]
    got = [None, None]

    def run(i, dtype):
        got[i] = fit(None, dtype)

    threads = [threading.Thread(target=run, args=(i, d))
               for i, d in enumerate(("float32", "float64"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    for a, b in zip(got, want):
        same(a, b)


def test_the_helper_loop_compiles_and_stops(paired, monkeypatch):
    """The helper thread swallows what its loop raises (a fit never waits on it), so a
    loop that failed to compile would only show as lost speed: run it here, on a fit's
    own buffers, with its stop flag already set."""
    trainers = []
    init = backend.CPUTrainer.__init__

    def recording_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        trainers.append(self)

    monkeypatch.setattr(backend.CPUTrainer, "__init__", recording_init)
    fit(1)
    trainer = trainers[-1]
    assert trainer.paired
    trainer.bufs.control[pair.STOP] = 1
    pair.helper_loop(trainer.X, trainer.T, trainer.backend.theta, trainer.table, trainer.bufs,
                     trainer.opt)
    if pair._helper is not None:
        assert pair._helper.error is None, repr(pair._helper.error)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_fits_with_its_own_helper(paired):
    """A child forked after the parent's helper started (multiprocessing's fork start
    method) gets a helper of its own, never the parent's, which is not in the child."""
    want = fit(None)  # starts the parent's helper where there is one
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: fit, report bit-identity, exit without pytest's teardown
        ok = False
        try:
            ok = pair._helper is None
            got = fit(None)
            ok = ok and all(np.array_equal(a, b) for (Wa, ba), (Wb, bb) in zip(got, want)
                            for a, b in ((Wa, Wb), (ba, bb)))
        finally:
            os.write(write, b"1" if ok else b"0")
            os._exit(0)
    os.close(write)
    ready, _, _ = select.select([read], [], [], 120)
    if not ready:  # never hang the suite on a child that hung
        os.kill(pid, signal.SIGKILL)
    verdict = os.read(read, 1) if ready else b"timeout"
    os.close(read)
    os.waitpid(pid, 0)
    assert verdict == b"1"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", [fd.Adam(1e-2), fd.AdamW(1e-2, weight_decay=0.1)])
def test_adam_halves_match_one_thread(paired, dtype, optimizer):
    """Paired Adam (the helper takes the second half of each update, out of place):
    the weights and the moments of a one-thread fit, bit for bit."""
    def run(n_threads):
        opt = copy.deepcopy(optimizer)
        got = fit(n_threads, dtype, opt)
        return got, opt.state.copy()

    (w1, s1), (w2, s2) = run(None), run(1)
    same(w1, w2)
    np.testing.assert_array_equal(s1, s2)


def _plain_adam(theta, grad, state, hyper, lr, t):
    updates.adam_update(theta, grad, state[0], state[1], t + 1, lr, hyper[spec.BETA1],
                        hyper[spec.BETA2], hyper[spec.EPS], hyper[spec.WEIGHT_DECAY],
                        hyper[spec.DECOUPLED] != 0.0)


@pytest.mark.parametrize("decoupled", [False, True])
def test_paired_adam_homes(decoupled):
    """Each way an update job can go, in a row: the helper does it (its moments then
    stay in its rows), it stalls mid-job (the caller takes the part back from wherever
    the moments are), or it never claims it; then ``settle``.  Every step gives the
    bits of one in-place Adam step over the whole vector."""
    rng = np.random.default_rng(3)
    n = 101
    theta = rng.standard_normal(n)
    want_theta, state, want_state = theta.copy(), np.zeros((2, n)), np.zeros((2, n))
    hyper = (fd.AdamW(1e-2, weight_decay=0.1) if decoupled else fd.Adam(1e-2, weight_decay=0.1)
             ).hyper()
    moved = pair.new_moved(True, spec.ADAM, n, np.float64)
    control = pair.new_control(2, 1, 8)
    homes = []
    for t, how in enumerate(["helper", "helper", "stalled", "helper", "none", "stalled",
                             "helper"]):
        grad = rng.standard_normal(n)
        lr = 0.01 * (t + 1)
        job = control[pair.UJOB] + 1
        if how != "none":
            control[pair.UCLAIM] = job  # claimed by the (simulated) helper
        if how == "helper":  # it finished: its output is in moved before the caller looks
            control.view(np.float64)[pair.U_LR] = lr
            control[pair.U_T] = t
            pair._helper_adam(theta, grad, state, hyper, control, moved, job)
            control[pair.UDONE] = job
        pair.paired_adam(theta, grad, state, hyper, lr, t, control, moved)
        homes.append(int(control[pair.HOME]))
        _plain_adam(want_theta, grad, want_state, hyper, lr, t)
        np.testing.assert_array_equal(theta, want_theta)
    pair.settle(state, control, moved)
    np.testing.assert_array_equal(state, want_state)
    assert homes == [1, 0, -1, 0, -1, -1, 1]  # job parity; -1: back in state
    assert control[pair.HOME] == -1


def test_the_helper_takes_jobs(paired, monkeypatch):
    """Where a helper runs, it does take shards and update halves (a helper that died or
    never saw a job would leave every result right and only the speed lost)."""
    if not pair.helps(2):
        pytest.skip("no helper thread on this machine (one core, or not x86 POSIX)")
    served = []
    start = pair.start
    monkeypatch.setattr(pair, "start", lambda *a: (served.append(a[4].control), start(*a)))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # a busy machine may keep the helper off the CPU
        fit(None, "float64", fd.Adam(1e-3))
        if served[-1][pair.DONE] > 0 and served[-1][pair.UDONE] > 0:
            break
    assert served[-1][pair.DONE] > 0 and served[-1][pair.UDONE] > 0
    if pair._helper is not None:
        assert pair._helper.error is None, repr(pair._helper.error)


def test_the_parked_helper_lets_go_of_the_fit(paired):
    """Parked after a fit, the helper thread held that fit's data, buffers and weights
    (a local of its loop) until the next paired fit: ``del X, net`` freed nothing."""
    import gc
    import weakref
    if not pair.helps(2):
        pytest.skip("no helper thread on this machine")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, SIZES[0]))
    net = fd.MLP(SIZES, dtype="float64", seed=1)
    net.fit(X, rng.integers(0, SIZES[-1], 300), epochs=1, batch_size=64)
    data, weights = weakref.ref(X), weakref.ref(net._backend.theta)
    del X, net
    deadline = time.monotonic() + 5  # the helper leaves its loop within a spin or a sleep
    while (data() is not None or weights() is not None) and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.01)
    assert data() is None and weights() is None
