"""Online SGD (``batch_size=1``) runs :func:`train_steps_online`, the step of
:func:`train_steps` with the forward and backward passes inlined: the same arithmetic,
so the same weights, losses and learning rates bit for bit, for every activation, loss,
optimizer, sampling mode, penalty, clip and dropout."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastdnn as fd
from fastdnn import config
from fastdnn.kernels import spec
from fastdnn.kernels.cpu import backend, train
from support import assert_same_weights

# (activation per hidden layer, loss, optimizer, fit and net options)
CASES = [
    (["tanh", "tanh"], "mse", lambda: fd.SGD(lr=0.05), dict(shuffle=False)),
    (["relu", "leaky_relu"], "cross_entropy", lambda: fd.SGD(lr=0.05, momentum=0.9),
     dict(clip_norm=0.5)),
    (["elu", "sigmoid"], "binary_cross_entropy",
     lambda: fd.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
     dict(shuffle="uniform", l2=1e-3)),
    (["softplus", "gelu"], "poisson", lambda: fd.Adam(lr=0.01), dict(dropout=0.2)),
    (["silu", "identity"], "cross_entropy", lambda: fd.AdamW(lr=0.01), dict(l2=1e-2)),
    # SGD without penalty or clip: the fused update (train._fused_sgd_step).
    (["relu", "tanh"], "cross_entropy", lambda: fd.SGD(lr=0.05, momentum=0.9),
     dict(dropout=0.3, shuffle="uniform")),
    (["leaky_relu", "sigmoid"], "mse",
     lambda: fd.SGD(lr=0.05, momentum=0.5, nesterov=True, weight_decay=1e-3), dict()),
    # A momentum float32 cannot hold (0 in the dtype, not 0 as given): the update's
    # general loop (updates.sgd_rows), in float64 its momentum loop.
    (["tanh", "relu"], "mse", lambda: fd.SGD(lr=0.05, momentum=1e-50), dict()),
]


def _data(loss, n=37):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((n, 3))
    if loss == "cross_entropy":
        y = rng.integers(0, 3, n)
    elif loss == "binary_cross_entropy":
        y = rng.integers(0, 2, (n, 3))
    elif loss == "poisson":
        y = rng.poisson(1.5, (n, 3)).astype(float)
    else:
        y = rng.standard_normal((n, 3))
    return X, y


# Narrow nets take the general update; a layer of train.FUSED_MIN_WIDTH outputs or more
# the fused one (SGD without penalty or clip), its narrow layers written and updated.
SIZES = [[3, 7, 5, 3], [3, 70, 5, 3]]


def _fit(case, dtype, sizes):
    acts, loss, optimizer, options = case
    options = dict(options)
    net_options = {k: options.pop(k) for k in ("l2", "dropout") if k in options}
    X, y = _data(loss)
    net = fd.MLP(sizes, activation=acts, loss=loss, dtype=dtype, seed=1, **net_options)
    history = net.fit(X, y, epochs=3, batch_size=1, optimizer=optimizer(), **options)
    return net.get_weights(), history


@pytest.mark.parametrize("sizes", SIZES, ids=lambda s: "-".join(map(str, s)))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(c[0]) + "-" + c[1])
def test_online_steps_match_the_general_steps(monkeypatch, case, dtype, sizes):
    online, history = _fit(case, dtype, sizes)
    assert any(str(sig[2].dtype) == dtype for sig in train.train_steps_online.signatures)
    # The control: the same fit through train_steps.
    monkeypatch.setattr(backend, "train_steps_online", train.train_steps)
    general, general_history = _fit(case, dtype, sizes)
    assert_same_weights(online, general)
    np.testing.assert_array_equal(history.loss, general_history.loss)
    np.testing.assert_array_equal(history.lr, general_history.lr)
    for W, b in online:
        assert np.isfinite(W).all() and np.isfinite(b).all()


@pytest.mark.parametrize("sizes", SIZES, ids=lambda s: "-".join(map(str, s)))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("share", [0.3, 0.9])
def test_online_steps_match_at_the_guard_and_when_diverging(monkeypatch, dtype, share, sizes):
    # Learning rates (a share of the dtype's largest value) whose bounds fail the guard's
    # cheap test: the steps go through its exact check (the fused update hands them to
    # the general sequence).  At 0.3 the first update passes it and the second step's
    # loss overflows; at 0.9 the check stops the first update, which a fused update with
    # too small a bound would have written as inf.  The same step, the same weights.
    def fit():
        X, y = _data("mse")
        net = fd.MLP(sizes, activation="tanh", loss="mse", dtype=dtype, seed=1)
        lr = share * float(np.finfo(dtype).max)
        with pytest.raises(fd.TrainingDivergedError) as info:
            net.fit(X, y, epochs=3, batch_size=1, optimizer=fd.SGD(lr=lr), shuffle=False)
        return net.get_weights(), str(info.value)

    online, message = fit()
    monkeypatch.setattr(backend, "train_steps_online", train.train_steps)
    general, general_message = fit()
    assert_same_weights(online, general)
    assert message == general_message


def test_only_one_row_batches_take_the_online_kernel(monkeypatch):
    calls = []

    def spy(*args):
        calls.append(args[-1].batch_size)
        return train.train_steps_online(*args)

    monkeypatch.setattr(backend, "train_steps_online", spy)
    X, y = _data("mse", n=8)
    net = fd.MLP([3, 4, 3], loss="mse", dtype="float64", seed=0)
    net.fit(X, y, epochs=1, batch_size=2, optimizer=fd.SGD())
    assert calls == []
    net.fit(X, y, epochs=1, batch_size=1, optimizer=fd.SGD())
    assert calls and set(calls) == {1}


def test_the_fused_update_covers_a_wide_layer():
    assert SIZES[1][1] >= train.FUSED_MIN_WIDTH > max(SIZES[0])


@pytest.mark.parametrize("vendor", ["GenuineIntel", "AuthenticAMD", ""])
def test_one_row_products_stay_in_the_loop_kernels(monkeypatch, vendor):
    # A 16-32-32-2 step ran 1.23x (Intel) and 1.45x (AMD) faster with its one-row
    # products in the loops, on every CPU family measured.
    monkeypatch.setattr(backend.mkl, "cpu_vendor", lambda: vendor)
    one_row = backend._layout([16, 32, 32, 2], [spec.TANH] * 2, 1).table
    batch = backend._layout([16, 32, 32, 2], [spec.TANH] * 2, 2).table
    assert (one_row[:, spec.GEMM_MIN] == backend.one_row_gemm_macs()).all()
    assert (batch[:, spec.GEMM_MIN] == config.SMALL_GEMM_MACS).all()
    assert backend.one_row_gemm_macs() > 32 * 32 > config.SMALL_GEMM_MACS


@pytest.mark.parametrize("vendor, macs", [("GenuineIntel", 8192), ("AuthenticAMD", 2048),
                                          ("", 8192), ("HygonGenuine", 8192)])
def test_the_one_row_threshold_is_the_one_measured_for_the_cpu(monkeypatch, vendor, macs):
    # A 64x64 layer (4,096 multiply-adds) went to BLAS on AMD, where that ran
    # 8-64-64-4 1.1-1.3x faster, and stays in the loops on Intel, where they were faster.
    monkeypatch.setattr(backend.mkl, "cpu_vendor", lambda: vendor)
    assert backend.one_row_gemm_macs() == macs
    table = backend._layout([8, 64, 64, 4], [spec.TANH] * 2, 1).table
    assert (table[:, spec.GEMM_MIN] == macs).all()


def test_a_one_row_threshold_set_in_config_wins_over_the_cpu(monkeypatch):
    monkeypatch.setattr(backend.mkl, "cpu_vendor", lambda: "AuthenticAMD")
    monkeypatch.setattr(config, "ONE_ROW_GEMM_MACS", 100)
    assert backend.one_row_gemm_macs() == 100
    table = backend._layout([8, 64, 64, 4], [spec.TANH] * 2, 1).table
    assert (table[:, spec.GEMM_MIN] == 100).all()


@pytest.mark.parametrize("value", [-1, 2.5, "8192", True])
def test_a_bad_one_row_threshold_is_a_clear_error(monkeypatch, value):
    monkeypatch.setattr(config, "ONE_ROW_GEMM_MACS", value)
    with pytest.raises(ValueError, match="ONE_ROW_GEMM_MACS"):
        fd.MLP([3, 4, 1], loss="mse").fit(np.zeros((4, 3)), np.zeros(4), epochs=1, batch_size=1)


@pytest.mark.parametrize("vendor", ["GenuineIntel", "AuthenticAMD"])
def test_an_online_fit_gives_the_same_loss_with_either_threshold(monkeypatch, vendor):
    # The loops and BLAS are the same arithmetic but for the order of a few sums: the
    # fit of a net whose middle layer is on either side must agree to rounding.  (The
    # BLAS library stays the one this process has: the vendor also steers its choice.)
    monkeypatch.setattr(config, "BLAS", backend.blas._prepared or backend.blas.library())
    monkeypatch.setattr(backend.mkl, "cpu_vendor", lambda: vendor)
    X, y = _data("mse", n=64)
    net = fd.MLP([X.shape[1], 64, 64, y.shape[1]], loss="mse", dtype="float64", seed=0)
    net.fit(X, y, epochs=2, batch_size=1, optimizer=fd.SGD(lr=0.01), shuffle=False)
    monkeypatch.setattr(config, "ONE_ROW_GEMM_MACS", 1 << 40)  # every product in the loops
    loops = fd.MLP([X.shape[1], 64, 64, y.shape[1]], loss="mse", dtype="float64", seed=0)
    loops.fit(X, y, epochs=2, batch_size=1, optimizer=fd.SGD(lr=0.01), shuffle=False)
    np.testing.assert_allclose(net.predict(X), loops.predict(X), rtol=1e-10, atol=1e-12)


# In a fresh process: which of the fused step's callees an online fit reaches (compiled,
# or loaded from the cache).
REACHED = """
import json, numpy as np
import fastdnn as fd
from fastdnn.kernels.cpu import train
rng = np.random.default_rng(0)
X, y = rng.standard_normal((16, 3)), rng.standard_normal((16, 1))
fd.MLP([3, {width}, 1], activation="tanh", loss="mse").fit(
    X, y, epochs=1, batch_size=1, optimizer=fd.SGD(lr=0.01))
print(json.dumps([len(f.signatures) for f in (train._fused_wide_step, train._sgd_rank_one)]))
"""


@pytest.mark.parametrize("width, reached", [(train.FUSED_MIN_WIDTH - 1, [0, 0]),
                                            (train.FUSED_MIN_WIDTH, [1, 1])])
def test_only_a_net_with_a_wide_layer_compiles_the_fused_step(width, reached):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["FASTDNN_WARMUP"] = "0"
    proc = subprocess.run([sys.executable, "-c", REACHED.format(width=width)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == reached
