"""fd.fit_many: every net ends bit-identical to its own fit, whatever the thread count;
nets stop early and diverge on their own; bad groups are refused."""
import numpy as np
import pytest

import fastdnn as fd
from support import assert_same_weights, run_python, run_threaded

# Different depths, widths and activations, one loss and input/output width.
ARCHS = [([6, 8, 3], "relu"), ([6, 16, 16, 3], "tanh"), ([6, 4, 4, 4, 3], "gelu"),
         ([6, 32, 3], "leaky_relu"), ([6, 8, 8, 3], ["silu", "elu"])]


def data(n=300, dtype=np.float64):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(n, 6)).astype(dtype)
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int) + (X[:, 3] > 1)
    return X, y


def nets(dtype="float64", seeds=range(len(ARCHS))):
    return [fd.MLP(sizes, activation=act, dtype=dtype, seed=s)
            for (sizes, act), s in zip(ARCHS, seeds)]


def histories_equal(a, b):
    return all(getattr(a, k) == getattr(b, k) for k in ("loss", "val_loss", "val_metric", "lr"))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer,shuffle", [
    (lambda: fd.SGD(lr=0.05, momentum=0.9, nesterov=True), True),
    (lambda: fd.Adam(lr=1e-2), "uniform"),
    (lambda: fd.AdamW(lr=1e-2), False),
])
def test_each_net_ends_as_its_own_fit(dtype, optimizer, shuffle):
    X, y = data(dtype=dtype)
    kw = dict(epochs=4, batch_size=16, schedule=fd.InverseTimeDecay(1e-3), shuffle=shuffle,
              validation_data=(X[:50], y[:50]))
    together = nets(dtype)
    opts = [optimizer() for _ in together]
    hists = fd.fit_many(together, X, y, optimizer=opts, **kw)
    alone = nets(dtype)
    for net, opt, hist, own in zip(alone, opts, hists, together):
        own_opt = optimizer()
        own_hist = net.fit(X, y, optimizer=own_opt, **kw)
        assert_same_weights(own.get_weights(), net.get_weights())
        assert histories_equal(hist, own_hist)
        assert opt.t == own_opt.t == 4 * -(-300 // 16)
        # The generators moved alike: the next fits agree too.
        assert own._rng.integers(1 << 30) == net._rng.integers(1 << 30)


def test_one_row_batches_in_a_group_end_as_their_own_fits():
    # Online SGD runs its own epoch kernel (train_steps_online), in the group as alone.
    X, y = data(n=60)
    kw = dict(epochs=2, batch_size=1, optimizer=fd.SGD(lr=0.02, momentum=0.9))
    together = nets()
    fd.fit_many(together, X, y, **kw)
    for net, own in zip(nets(), together):
        net.fit(X, y, **kw)
        assert_same_weights(own.get_weights(), net.get_weights())


def test_an_optimizer_instance_is_copied_per_net():
    X, y = data()
    opt = fd.SGD(lr=0.1, momentum=0.5)
    together = nets()
    fd.fit_many(together, X, y, epochs=2, optimizer=opt)
    assert opt.t == 0 and opt.state is None  # untouched: each net had a copy
    for net, own in zip(nets(), together):
        net.fit(X, y, epochs=2, optimizer=fd.SGD(lr=0.1, momentum=0.5))
        assert_same_weights(own.get_weights(), net.get_weights())


def fit_group(threads_note):
    """fit_many of the ARCHS nets in this process (``threads_note`` only labels the call)."""
    X, y = data(dtype=np.float32)
    group = nets("float32", seeds=range(10, 15))
    fd.fit_many(group, X, y, epochs=3, batch_size=8, optimizer=fd.SGD(lr=0.05))
    return [net.get_weights() for net in group]


def test_results_do_not_depend_on_the_thread_count():
    here = fit_group("1 thread")
    with _one_thread():
        one = fit_group("1 thread")
    (several,) = run_threaded([(fit_group, ("3 threads",))], threads=3)
    for a, b, c in zip(here, one, several):
        assert_same_weights(a, b)
        assert_same_weights(a, c)


class _one_thread:
    def __enter__(self):
        import numba
        self.before = numba.get_num_threads()
        numba.set_num_threads(1)

    def __exit__(self, *exc):
        import numba
        numba.set_num_threads(self.before)


def test_nets_stop_early_on_their_own():
    X, y = data()
    Xv, yv = X[:40], y[:40]
    kw = dict(epochs=30, batch_size=32, optimizer="adam", validation_data=(Xv, yv), patience=2)
    hists = fd.fit_many(nets(), X, y, **kw)
    own = [net.fit(X, y, **kw) for net in nets()]
    assert [len(h) for h in hists] == [len(h) for h in own]
    assert all(histories_equal(a, b) for a, b in zip(hists, own))


def test_a_diverging_net_does_not_stop_the_others():
    X, y = data()
    group = nets()
    opts = [fd.SGD(lr=0.05) for _ in group]
    opts[0] = fd.SGD(lr=1e300)  # the relu net's logits overflow
    with pytest.raises(fd.TrainingDivergedError, match="1 of 5 nets diverged: net 0") as err:
        fd.fit_many(group, X, y, epochs=3, optimizer=opts)
    assert err.value.diverged == [0]
    histories = err.value.history
    assert [len(h) for h in histories[1:]] == [3, 3, 3, 3]
    assert np.isfinite(np.concatenate([W.ravel() for W, _ in group[0].get_weights()])).all()
    with pytest.raises(fd.TrainingDivergedError):
        nets()[0].fit(X, y, epochs=3, optimizer=fd.SGD(lr=1e300))
    alone = nets()[1]
    alone.fit(X, y, epochs=3, optimizer=fd.SGD(lr=0.05))
    assert_same_weights(group[1].get_weights(), alone.get_weights())


def test_big_products_train_one_after_another_with_the_same_results():
    # 64 rows * 256 * 256 >= blas.PARALLEL_MACS: the nets split their own products.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(128, 256))
    y = rng.integers(0, 2, 128)
    group = [fd.MLP([256, 256, 2], seed=s, dtype="float64") for s in range(2)]
    fd.fit_many(group, X, y, epochs=2, batch_size=64, optimizer=fd.SGD(lr=0.01))
    for s, net in enumerate(group):
        own = fd.MLP([256, 256, 2], seed=s, dtype="float64")
        own.fit(X, y, epochs=2, batch_size=64, optimizer=fd.SGD(lr=0.01))
        assert_same_weights(own.get_weights(), net.get_weights())


@pytest.mark.parametrize("group,match", [
    (lambda: [], "empty"),
    (lambda: [fd.MLP([6, 4, 3]), "net"], "MLP"),
    (lambda: [fd.MLP([6, 4, 3]), fd.MLP([5, 4, 3])], "input or output width"),
    (lambda: [fd.MLP([6, 4, 3]), fd.MLP([6, 4, 3], dtype="float64")], "dtype"),
    (lambda: [fd.MLP([6, 4, 3]), fd.MLP([6, 4, 3], loss="mse")], "loss"),
])
def test_bad_groups_are_refused(group, match):
    X, y = data()
    with pytest.raises((ValueError, TypeError), match=match):
        fd.fit_many(group(), X, y, epochs=1)


def test_the_same_net_twice_and_shared_optimizers_are_refused():
    X, y = data()
    net = fd.MLP([6, 4, 3])
    with pytest.raises(ValueError, match="same net twice"):
        fd.fit_many([net, net], X, y)
    opt = fd.Adam()
    with pytest.raises(ValueError, match="repeats an instance"):
        fd.fit_many([fd.MLP([6, 4, 3]), fd.MLP([6, 4, 3])], X, y, optimizer=[opt, opt])
    with pytest.raises(ValueError, match="3 optimizers for 2 nets"):
        fd.fit_many([fd.MLP([6, 4, 3]), fd.MLP([6, 4, 3])], X, y, optimizer=["adam"] * 3)


def test_each_net_follows_its_own_plateau():
    """A ReduceLROnPlateau watches each net's own loss, as in its own fit: one instance
    shared by the group cut every net's rate once per net an epoch."""
    X, y = data(n=120)
    plateau = fd.ReduceLROnPlateau(patience=1, factor=0.5, threshold=0.5)
    kw = dict(epochs=5, batch_size=8, optimizer=fd.SGD(lr=0.05), shuffle=False)
    together = nets()[:3]
    hists = fd.fit_many(together, X, y, schedule=plateau, **kw)
    assert plateau.state().tolist() == fd.ReduceLROnPlateau(
        patience=1, factor=0.5, threshold=0.5).state().tolist()  # the instance given: untouched
    for net, own, hist in zip(nets()[:3], together, hists):
        own_hist = net.fit(X, y, schedule=fd.ReduceLROnPlateau(patience=1, factor=0.5,
                                                               threshold=0.5), **kw)
        assert hist.lr == own_hist.lr and len(set(hist.lr)) > 1  # the rate was cut
        assert_same_weights(own.get_weights(), net.get_weights())


@pytest.mark.parametrize("optimizer", ["lbfgs", fd.LBFGS(), [fd.Adam(), fd.LBFGS()]])
def test_lbfgs_is_refused_by_name(optimizer):
    X, y = data(n=40)
    with pytest.raises(ValueError, match="L-BFGS"):
        fd.fit_many(nets()[:2], X, y, epochs=1, optimizer=optimizer)


def test_verbose_prints_one_line_per_epoch(capsys):
    X, y = data()
    fd.fit_many(nets(), X, y, epochs=3, verbose=True)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("epoch 1/3  nets 5  mean loss ")
    # The first epoch compiled (or loaded) the kernel, unless an earlier test did it
    # already: no rate that counts it.
    assert lines[0].endswith((" samples/s", "JIT compile, no rate"))
    assert all(line.endswith(" samples/s") for line in lines[1:])
    # Now the kernel is loaded: a second call's first epoch has its rate (it was
    # "JIT compile" for every call).
    fd.fit_many(nets(), X, y, epochs=1, verbose=True)
    assert capsys.readouterr().out.strip().endswith(" samples/s")


def test_bad_n_threads_is_refused():
    X, y = data()
    with pytest.raises(ValueError, match="n_threads"):
        fd.fit_many(nets(), X, y, epochs=1, n_threads=0)


def test_fit_many_checks_verbose():
    X, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    with pytest.raises(TypeError, match="verbose must be True or False"):
        fd.fit_many([fd.MLP([2, 3, 2], seed=0)], X, y, epochs=1, verbose="no")


def test_an_interrupted_group_releases_its_fits(monkeypatch):
    """Ctrl-C in fit_many skipped the runs' close: the two-shard helper went on polling
    for the dead fits (10% of a core) for as long as the traceback lived."""
    from fastdnn import fitting
    from fastdnn.kernels.cpu import backend
    closed = []
    close = fitting.FitRun.close
    monkeypatch.setattr(fitting.FitRun, "close", lambda run: (closed.append(run), close(run)))

    def interrupted(self, *args):
        raise KeyboardInterrupt

    monkeypatch.setattr(backend.CPUTrainerGroup, "run_epochs", interrupted)
    group = nets()
    with pytest.raises(KeyboardInterrupt):
        fd.fit_many(group, *data(), epochs=2)
    assert len(closed) == len(group)


def test_ctrl_c_in_a_group_stops_after_the_epoch(monkeypatch):
    """fit_many did not defer Ctrl-C: pressed while a kernel compiled a callee, it came
    out as a RuntimeError or a SystemError.  Now it stops the group after the epoch, as
    fit does after its run, with the completed epochs in ``.history``."""
    import signal
    from fastdnn.kernels.cpu import backend
    run_epochs = backend.CPUTrainerGroup.run_epochs

    def pressed_during(self, *args):
        signal.raise_signal(signal.SIGINT)
        return run_epochs(self, *args)

    monkeypatch.setattr(backend.CPUTrainerGroup, "run_epochs", pressed_during)
    group = nets()
    with pytest.raises(KeyboardInterrupt) as info:
        fd.fit_many(group, *data(), epochs=3)
    assert [len(h) for h in info.value.history] == [1] * len(group)


def test_the_groups_lists_compile_no_list_code_in_a_warm_process():
    """``numba.typed.List(items)`` compiles Numba's list code in every process (1-2.5 s
    per item type: 7.6 s of a warm process's first fit_many); the group's lists are
    built by cached kernels instead, so a second process compiles none of it."""
    code = """
        import numpy as np
        import fastdnn as fd
        from numba.core.registry import CPUDispatcher
        from numba.typed import typedlist
        X = np.random.default_rng(0).random((64, 4)).astype(np.float32)
        y = (X[:, 0] > 0.5).astype(np.int64)
        nets = [fd.MLP([4, 8, 2], seed=i, dtype="float32") for i in range(2)]
        fd.fit_many(nets, X, y, epochs=1, batch_size=8)
        print(sorted(name for name, f in vars(typedlist).items()
                     if isinstance(f, CPUDispatcher) and f.signatures))
    """
    run_python(code, FASTDNN_WARMUP="0")  # fills this run's cache, where cold
    assert run_python(code, FASTDNN_WARMUP="0").strip() == "[]"


def test_fit_many_leaves_no_dummy_thread_behind():
    """A Numba pool worker's call back into Python (a slot's compile) asked for
    threading.current_thread(), which registers a "Dummy-1" for good: the process then
    had two threads, and the compile helpers' fork (one thread alive) was refused."""
    out = run_python("""
        import threading
        import numpy as np
        import fastdnn as fd
        rng = np.random.default_rng(0)
        X = rng.normal(size=(200, 8)).astype(np.float32)
        y = (X[:, 0] > 0).astype(int)
        fd.fit_many([fd.MLP([8, 4, 2], seed=i) for i in range(3)], X, y, epochs=2)
        print([t.name for t in threading.enumerate()])
    """)
    assert out.strip() == "['MainThread']"
