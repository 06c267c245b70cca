"""Big nets (``config.WIDE_UPDATE_PARAMS``) run :func:`train_steps_wide`, whose guard scan
and update run in parallel chunks (:mod:`fastdnn.kernels.cpu.wide`): the same values as
the serial ones, so the same weights, losses and learning rates as :func:`train_steps`."""
import numpy as np
import pytest

import fastdnn as fd
from fastdnn import config
from fastdnn.kernels.cpu import backend, train
from fastdnn.kernels.cpu.checks import max_abs
from fastdnn.kernels.cpu.wide import CHUNK, max_abs_wide
from support import assert_same_weights, record_epoch_kernels

N = 2 * CHUNK + 17  # three chunks, the last a short one


def _pattern(name, dtype):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal(N) * 1e-3).astype(dtype)
    if name == "zeros":
        a[:] = 0
    elif name == "top in the short chunk":
        a[-1] = -7.5
    elif name == "inf in the short chunk":
        a[-3] = np.inf
    elif name == "nan in the middle chunk":
        a[CHUNK + 5] = np.nan
    elif name == "subnormals":
        a[:] = np.finfo(dtype).smallest_subnormal
        a[CHUNK] = -4 * np.finfo(dtype).smallest_subnormal
    return a


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["random", "zeros", "top in the short chunk",
                                  "inf in the short chunk", "nan in the middle chunk",
                                  "subnormals"])
def test_max_abs_wide_is_max_abs(name, dtype):
    a = _pattern(name, dtype)
    assert max_abs_wide(a) == max_abs(a)
    for n in (1, CHUNK, CHUNK + 1):  # one chunk, exactly one, one and an element
        assert max_abs_wide(a[-n:]) == max_abs(a[-n:])
    if name == "top in the short chunk":  # the control: the bound moves with the top
        assert max_abs_wide(a) > max_abs_wide(a[:-1])


# A net of ~100K parameters (two chunks), the optimizers and options of the update.
SIZES = [64, 600, 100, 5]
CASES = [
    (lambda: fd.SGD(lr=0.05), dict()),
    (lambda: fd.SGD(lr=0.05, momentum=0.9), dict(clip_norm=0.5)),
    (lambda: fd.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3), dict(l2=1e-3)),
    (lambda: fd.Adam(lr=0.01), dict()),
    (lambda: fd.AdamW(lr=0.01, weight_decay=1e-2), dict(l2=1e-3)),
]


def _net(dtype, l2=0.0):
    return fd.MLP(SIZES, dtype=dtype, seed=2, l2=l2)


def _fit(monkeypatch, net, optimizer, options, wide, epochs=3):
    """``net.fit`` with the wide kernel or not (asserting which ran); its history.  Plain
    SGD too runs ``train_steps_wide`` here, not its fused twin (``test_fused_sgd.py``)."""
    kernels = record_epoch_kernels(monkeypatch, backend.CPUTrainer)
    monkeypatch.setattr(config, "WIDE_UPDATE_PARAMS", 0 if wide else 1 << 60)
    monkeypatch.setattr(backend, "_plain_sgd", lambda code, hyper: False)
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((200, SIZES[0])), rng.integers(0, SIZES[-1], 200)
    try:
        return net.fit(X, y, epochs=epochs, batch_size=25, optimizer=optimizer(), **options)
    finally:
        assert set(kernels) == {train.train_steps_wide if wide else train.train_steps}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_wide_steps_match_the_serial_steps(monkeypatch, case, dtype):
    optimizer, options = CASES[case]
    options = dict(options)
    l2 = options.pop("l2", 0.0)
    wide, serial = _net(dtype, l2), _net(dtype, l2)
    history = _fit(monkeypatch, wide, optimizer, options, wide=True)
    serial_history = _fit(monkeypatch, serial, optimizer, options, wide=False)
    assert_same_weights(wide.get_weights(), serial.get_weights())
    np.testing.assert_array_equal(history.loss, serial_history.loss)
    np.testing.assert_array_equal(history.lr, serial_history.lr)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("lr", [1e3, 0.9])
def test_wide_steps_stop_where_the_serial_steps_stop(monkeypatch, dtype, lr):
    # Learning rates that overflow: 1e3 after a few updates (the 4th step in float32, the
    # 8th in float64); 0.9 of the dtype's largest value at once, where the guard's exact
    # check stops the update.  No snapshot (SNAPSHOT_BYTES = 0), so the nets keep their
    # last finite weights: the same step, the same weights.
    monkeypatch.setattr(config, "SNAPSHOT_BYTES", 0)
    if lr < 1:
        lr *= float(np.finfo(dtype).max)
    nets, messages = [_net(dtype), _net(dtype)], []
    for net, wide in zip(nets, (True, False)):
        with pytest.raises(fd.TrainingDivergedError) as info:
            _fit(monkeypatch, net, lambda: fd.SGD(lr=lr), {}, wide, epochs=2)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert_same_weights(nets[0].get_weights(), nets[1].get_weights())
    for W, b in nets[0].get_weights():
        assert np.isfinite(W).all() and np.isfinite(b).all()


@pytest.mark.parametrize("params,kernel", [(8803, "train_steps_wide"), (8804, "train_steps")])
def test_a_net_of_wide_update_params_picks_the_wide_kernel(monkeypatch, params, kernel):
    # [40, 200, 3]: 40 * 200 + 200 + 200 * 3 + 3 = 8803 parameters.
    kernels = record_epoch_kernels(monkeypatch, backend.CPUTrainer)
    monkeypatch.setattr(config, "WIDE_UPDATE_PARAMS", params)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 40)), rng.integers(0, 3, 64)
    fd.MLP([40, 200, 3], seed=0).fit(X, y, epochs=1, batch_size=16)
    assert set(kernels) == {getattr(train, kernel)}
