"""Plain SGD on big nets runs :func:`train_steps_wide_sgd`: each weight gradient's product
is added onto the weights (BLAS with beta 1), never written.  The update rounds once
where the general sequence rounds twice, so the weights follow the oracle and the
general sequence to rounding, not bit for bit; a step whose bounds the guard cannot
clear takes the general sequence itself, bit for bit.

The thread-count test of the fused kernel is ``test_threads.py``'s
``test_fit_identical_with_one_or_several_threads`` (``plain``), and its products'
``matmul_tn_add`` case.
"""
import numpy as np
import pytest

import fastdnn as fd
import naive
from fastdnn import config
from fastdnn.kernels.cpu import backend, train
from fastdnn.kernels.cpu.updates import LIMIT, THETA_BOUND
from support import assert_close, assert_same_weights, build, record_epoch_kernels, same_weights

RTOL = {"float32": 1e-5, "float64": 1e-12}
#: Layers of 8 x 40 and 40 x 3 run on BLAS at 20-25 rows; the 3 x 2 one on the loops
#: (fewer than config.SMALL_GEMM_MACS multiply-adds): both kinds of layer in one step.
SIZES = [8, 40, 3, 2]


def _fit(monkeypatch, net, X, y, optimizer, fused=True, epochs=3, batch_size=25, **options):
    """``net.fit`` on the fused kernel (or on ``train_steps_wide``), asserting which ran."""
    kernels = record_epoch_kernels(monkeypatch, backend.CPUTrainer)
    monkeypatch.setattr(config, "WIDE_UPDATE_PARAMS", 0)
    if not fused:
        monkeypatch.setattr(backend, "_plain_sgd", lambda code, hyper: False)
    try:
        return net.fit(X, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                       shuffle=False, **options)
    finally:
        assert set(kernels) == {train.train_steps_wide_sgd if fused else train.train_steps_wide}


@pytest.mark.parametrize("optimizer,options,fused", [
    (lambda: fd.SGD(lr=0.1), {}, True),
    (lambda: fd.SGD(lr=0.1, momentum=0.9), {}, False),
    (lambda: fd.SGD(lr=0.1, weight_decay=1e-3), {}, False),
    (lambda: fd.SGD(lr=0.1), dict(l2=1e-3), False),
    (lambda: fd.SGD(lr=0.1), dict(clip_norm=1.0), False),
    (lambda: fd.Adam(lr=0.01), {}, False),
])
def test_only_plain_sgd_on_a_wide_net_takes_the_fused_kernel(monkeypatch, optimizer, options,
                                                            fused):
    kernels = record_epoch_kernels(monkeypatch, backend.CPUTrainer)
    monkeypatch.setattr(config, "WIDE_UPDATE_PARAMS", 0)
    options = dict(options)
    net = fd.MLP(SIZES, seed=0, l2=options.pop("l2", 0.0))
    rng = np.random.default_rng(0)
    net.fit(rng.standard_normal((50, 8)), rng.integers(0, 2, 50), epochs=1, batch_size=25,
            optimizer=optimizer(), **options)
    assert set(kernels) == {train.train_steps_wide_sgd if fused else train.train_steps_wide}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation,loss", [("tanh", "cross_entropy"), ("relu", "mse")])
def test_fused_steps_follow_the_naive_oracle(monkeypatch, make_data, dtype, activation, loss):
    # 70 rows in batches of 25: the last batch has 20 rows, so the stack of deltas moves.
    X, y = make_data(loss, 70, SIZES[0], SIZES[-1], dtype)
    net, params = build(SIZES, activation, loss, dtype)
    _fit(monkeypatch, net, X, y, fd.SGD(lr=0.1))
    want = naive.train(params, activation, loss, X.astype(np.float64), y, 3, 25, naive.SGD(0.1))
    for (W, b), (want_W, want_b), (W0, _) in zip(net.get_weights(), want, params):
        assert not np.array_equal(W, W0)
        assert_close(W, want_W, RTOL[dtype])
        assert_close(b, want_b, RTOL[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_steps_follow_the_general_sequence_through_dropout(monkeypatch, make_data, dtype):
    # Three hidden layers of tanh (each with its Z) and dropout (each with its dropped-out
    # copy): every offset of the stack and of the inputs it pairs with.
    sizes = [8, 30, 20, 10, 3]
    X, y = make_data("cross_entropy", 70, 8, 3, dtype)
    fused, general = (build(sizes, "tanh", "cross_entropy", dtype)[0] for _ in range(2))
    for net in (fused, general):
        net.dropout = [0.2, 0.1, 0.3]
    history = _fit(monkeypatch, fused, X, y, fd.SGD(lr=0.1), fused=True)
    general_history = _fit(monkeypatch, general, X, y, fd.SGD(lr=0.1), fused=False)
    for (W, b), (W_g, b_g) in zip(fused.get_weights(), general.get_weights()):
        assert_close(W, W_g, RTOL[dtype])
        assert_close(b, b_g, RTOL[dtype])
    assert_close(history.loss, general_history.loss, RTOL[dtype])
    np.testing.assert_array_equal(history.lr, general_history.lr)


def _trainers(monkeypatch, limit=None):
    """The list of the trainers fits make from now on, each guard's limit (the largest
    |weight| allowed) set to ``limit`` if given."""
    trainers, init = [], backend.CPUTrainer.__init__

    def spy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        if limit is not None:
            self.bufs.guard[LIMIT] = limit
        trainers.append(self)
    monkeypatch.setattr(backend.CPUTrainer, "__init__", spy)
    return trainers


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_step_whose_bound_is_too_loose_takes_the_general_sequence(monkeypatch, make_data,
                                                                    dtype):
    # With the guard's limit at 2, the fused bound (2 m max|A| max|delta| on |dW|) never
    # clears it, while the updates do stay below it: every step is checked exactly and
    # taken by the general sequence, so the weights are train_steps_wide's, bit for bit,
    # and so is the guard (whose bound on |theta| a fused step advances by its own).
    X, y = make_data("cross_entropy", 70, SIZES[0], SIZES[-1], dtype)
    nets = [build(SIZES, "tanh", "cross_entropy", dtype)[0] for _ in range(3)]
    trainers = _trainers(monkeypatch, limit=2.0)
    _fit(monkeypatch, nets[0], X, y, fd.SGD(lr=0.1), fused=True)
    _fit(monkeypatch, nets[1], X, y, fd.SGD(lr=0.1), fused=False)
    assert_same_weights(nets[0].get_weights(), nets[1].get_weights())
    assert not same_weights(nets[0].get_weights(), build(SIZES, "tanh", "cross_entropy",
                                                         dtype)[1])
    np.testing.assert_array_equal(trainers[0].bufs.guard, trainers[1].bufs.guard)
    # The control: at the dtype's own limit the steps are fused, and the guard's bound
    # grows by the fused bound.
    monkeypatch.undo()
    trainers = _trainers(monkeypatch)
    _fit(monkeypatch, nets[2], X, y, fd.SGD(lr=0.1), fused=True)
    assert trainers[0].bufs.guard[THETA_BOUND] > 2.0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("lr", [1e3, 0.9])
def test_a_diverging_fused_fit_stops_with_its_last_finite_weights(monkeypatch, make_data,
                                                                  dtype, lr):
    # As test_wide.py's test of the general sequence: learning rates of 1e3 and of 0.9 of
    # the dtype's largest value overflow after a few updates, at the same step fused or
    # not.  No snapshot, so the net keeps what the kernel left.
    monkeypatch.setattr(config, "SNAPSHOT_BYTES", 0)
    if lr < 1:
        lr *= float(np.finfo(dtype).max)
    sizes = [64, 600, 100, 5]
    X, y = make_data("cross_entropy", 200, sizes[0], sizes[-1], dtype)
    messages = []
    for fused in (True, False):
        net = build(sizes, "relu", "cross_entropy", dtype)[0]
        with pytest.raises(fd.TrainingDivergedError) as info:
            _fit(monkeypatch, net, X, y, fd.SGD(lr=lr), fused=fused, epochs=5)
        messages.append(str(info.value).split(":")[0])
        for W, b in net.get_weights():
            assert np.isfinite(W).all() and np.isfinite(b).all()
    assert messages[0] == messages[1]
