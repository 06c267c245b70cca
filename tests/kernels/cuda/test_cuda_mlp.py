"""fd.MLP(device="cuda") against fd.MLP(device="cpu"): same seed, same init, same results.

Tolerances, relative to the largest entry of the CPU result: float64 1e-11 (different
summation orders, compounded over a few training steps); float32 2e-5 for one pass,
5e-4 after training (rounding differences grow through the updates).
"""
import numpy as np
import pytest

import fastdnn as fd
from fastdnn import config
from fastdnn.kernels import spec
from numba import cuda

from conftest import SHIPPED, SIMULATOR
from support import assert_close

DTYPES = ("float32", "float64")
RTOL = {"float32": 2e-5, "float64": 1e-11}
FIT_RTOL = {"float32": 5e-4, "float64": 1e-11}
# (loss, outputs, hidden activations): every head, eight of the nine activations.
NETS = [("cross_entropy", 3, ["relu", "silu"]), ("mse", 2, ["tanh", "elu"]),
        ("binary_cross_entropy", 1, ["softplus", "leaky_relu"]),
        ("poisson", 2, ["gelu", "sigmoid"])]
NET_IDS = [loss for loss, _, _ in NETS]


def pair(loss, k, acts, dtype, n_in=5, seed=3):
    sizes = [n_in, 7, 6, k]
    return [fd.MLP(sizes, activation=acts, loss=loss, dtype=dtype, seed=seed, device=device)
            for device in ("cpu", "cuda")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss,k,acts", NETS, ids=NET_IDS)
def test_forward_loss_gradients_predict_match_cpu(loss, k, acts, dtype, make_data):
    X, y = make_data(loss, 9, 5, k)
    cpu, gpu = pair(loss, k, acts, dtype)
    assert gpu.device == "cuda" and "cuda" in repr(gpu)
    assert_close(gpu.forward(X), cpu.forward(X), RTOL[dtype])
    assert abs(gpu.loss(X, y) - cpu.loss(X, y)) <= RTOL[dtype] * abs(cpu.loss(X, y))
    for (dW, db), (cW, cb) in zip(gpu.gradients(X, y), cpu.gradients(X, y)):
        assert_close(dW, cW, RTOL[dtype])
        assert_close(db, cb, RTOL[dtype])
    if loss in ("mse", "poisson"):  # the values: logits, or their exp for poisson
        assert_close(gpu.predict(X), cpu.predict(X), RTOL[dtype])
        assert gpu.score(X, y) == pytest.approx(cpu.score(X, y), rel=1e-4, abs=1e-6)
    else:
        np.testing.assert_array_equal(gpu.predict(X), cpu.predict(X))
        assert_close(gpu.predict_proba(X), cpu.predict_proba(X), RTOL[dtype])


OPTIMIZERS = {
    "sgd-nesterov": lambda: fd.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda: fd.Adam(lr=0.01),
    "adamw": lambda: fd.AdamW(lr=0.01),
}


@pytest.mark.parametrize("opt,dtype", [("sgd-nesterov", "float64"), ("adam", "float64"),
                                       ("adamw", "float64"), ("adam", "float32")])
def test_fit_matches_cpu(opt, dtype, make_data):
    """2 epochs in order (batches 4, 3) with a schedule, then 1 more continuing the
    optimizer state: the GPU copies its state back to the optimizer at epoch ends."""
    loss, k, acts = NETS[list(OPTIMIZERS).index(opt)]
    X, y = make_data(loss, 7, 5, k)
    nets = pair(loss, k, acts, dtype)
    hists = []
    for net in nets:
        optimizer = OPTIMIZERS[opt]()
        h = net.fit(X, y, epochs=2, batch_size=4, optimizer=optimizer, shuffle=False,
                    schedule=fd.InverseTimeDecay(0.1))
        h2 = net.fit(X, y, epochs=1, batch_size=4, optimizer=optimizer, shuffle=False)
        hists.append(h.loss + h2.loss)
        assert optimizer.t == 6
    cpu, gpu = nets
    assert_close(hists[1], hists[0], FIT_RTOL[dtype])
    assert_close(gpu._backend.get_theta(), cpu._backend.get_theta(), FIT_RTOL[dtype])


@pytest.mark.parametrize("shuffle", [True, "uniform"])
def test_same_seed_same_weights(shuffle, make_data):
    X, y = make_data("cross_entropy", 7, 5, 3)
    thetas = []
    for _ in range(2):
        net = fd.MLP([5, 7, 3], activation="gelu", seed=7, device="cuda")
        net.fit(X, y, epochs=2, batch_size=4, shuffle=shuffle, optimizer=fd.Adam(lr=0.01))
        thetas.append(net._backend.get_theta())
    np.testing.assert_array_equal(thetas[0], thetas[1])


def test_data_in_chunks_gives_the_same_weights(make_data, monkeypatch):
    """Data larger than CUDA_DATA_BYTES goes up in chunks of whole batches: same steps."""
    X, y = make_data("mse", 8, 5, 2)
    thetas = []
    for budget in (None, 350):  # 350 bytes: 6 rows of 5 + 2 float64 -> chunks of 2 batches
        monkeypatch.setattr(config, "CUDA_DATA_BYTES", budget)
        net = fd.MLP([5, 7, 2], activation="tanh", loss="mse", dtype="float64", seed=2,
                     device="cuda")
        net.fit(X, y, epochs=1, batch_size=3, shuffle=True, optimizer=fd.SGD(lr=0.05))
        thetas.append(net._backend.get_theta())
    np.testing.assert_array_equal(thetas[0], thetas[1])


def test_save_on_one_device_load_on_the_other(tmp_path, make_data):
    X, _ = make_data("cross_entropy", 7, 5, 3)
    gpu = fd.MLP([5, 7, 3], activation="silu", seed=1, device="cuda")
    gpu.save(tmp_path / "gpu.npz")
    cpu = fd.MLP.load(tmp_path / "gpu.npz", device="cpu")
    assert cpu.device == "cpu"
    assert_close(cpu.forward(X), gpu.forward(X), RTOL["float32"])
    cpu.save(tmp_path / "cpu.npz")
    back = fd.MLP.load(tmp_path / "cpu.npz", device="cuda")
    np.testing.assert_array_equal(back._backend.get_theta(), gpu._backend.get_theta())
    for (W, b), (W2, b2) in zip(back.get_weights(), cpu.get_weights()):
        np.testing.assert_array_equal(W, W2)
        np.testing.assert_array_equal(b, b2)


@pytest.mark.parametrize("loss,k,acts", NETS, ids=NET_IDS)
def test_device_arrays_in_device_arrays_out(loss, k, acts, make_data):
    X, y = make_data(loss, 9, 5, k)
    X = X.astype(np.float32)
    net = fd.MLP([5, 7, k], activation=acts[0], loss=loss, seed=4, device="cuda")
    Xd = cuda.to_device(X)
    Z = net.forward(Xd)
    assert not isinstance(Z, np.ndarray)
    assert_close(Z.copy_to_host(), net.forward(X), 1e-6)
    labels = net.predict(Xd)
    assert not isinstance(labels, np.ndarray)
    np.testing.assert_array_equal(labels.copy_to_host(), net.predict(X))
    if loss not in ("mse", "poisson"):
        assert_close(net.predict_proba(Xd).copy_to_host(), net.predict_proba(X), 1e-6)
    assert net.score(Xd, y) == net.score(X, y)
    with pytest.raises(TypeError, match="dtype"):
        net.forward(cuda.to_device(X.astype(np.float64)))
    with pytest.raises(ValueError, match="features"):
        net.forward(cuda.to_device(X[:, :3].copy()))


def test_a_device_array_with_nan_is_refused_as_numpy_data_is(make_data):
    # fit blamed the learning rate, predict the weights; forward returned NaN.
    X, y = make_data("cross_entropy", 10, 5, 3)
    X = X.astype(np.float32)
    X[3, 1] = np.nan
    net = fd.MLP([5, 7, 3], seed=5, device="cuda")
    for call in (lambda d: net.fit(d, y, epochs=1), net.forward, net.predict,
                 lambda d: net.loss(d, y)):
        with pytest.raises(ValueError, match="X contains NaN or infinity"):
            call(cuda.to_device(X))


def test_validation_split_of_device_data(make_data):
    # A GPU's device array takes slices only: the split indexed it by rows (raised deep
    # in numba-cuda; the simulator's arrays, NumPy's, hid it).  Split on the host now.
    X, y = make_data("cross_entropy", 12, 5, 3)
    X = X.astype(np.float32)
    a = fd.MLP([5, 7, 3], seed=5, device="cuda")
    b = fd.MLP([5, 7, 3], seed=5, device="cuda")
    ha = a.fit(X, y, epochs=2, batch_size=4, validation_split=0.25)
    hb = b.fit(cuda.to_device(X), y, epochs=2, batch_size=4, validation_split=0.25)
    assert ha.history == {**hb.history, "seconds": ha.seconds}


def test_fit_on_device_data_and_validation(make_data):
    X, y = make_data("cross_entropy", 10, 5, 3)
    X = X.astype(np.float32)
    a = fd.MLP([5, 7, 3], seed=5, device="cuda")
    b = fd.MLP([5, 7, 3], seed=5, device="cuda")
    ha = a.fit(X, y, epochs=2, batch_size=10, validation_data=(X, y))
    hb = b.fit(cuda.to_device(X), y, epochs=2, batch_size=10, validation_data=(cuda.to_device(X), y))
    assert ha.history == {**hb.history, "seconds": ha.seconds}
    np.testing.assert_array_equal(a._backend.get_theta(), b._backend.get_theta())
    assert abs(ha.val_loss[-1] - a.loss(X, y)) < 1e-6


def test_trainer_owns_the_step_count_and_the_lr(make_data):
    """As on the CPU (tests/api/test_trainer.py): t advances by the steps taken, across
    fits, and History.lr is the rate of each epoch's last update."""
    X, y = make_data("cross_entropy", 7, 5, 3)
    net = fd.MLP([5, 4, 3], seed=0, device="cuda")
    opt, sched = fd.Adam(lr=0.01), fd.StepDecay(step_size=3, gamma=0.5)
    t = 0
    for epochs in (2, 1):
        hist = net.fit(X, y, epochs=epochs, batch_size=3, optimizer=opt, schedule=sched)
        assert opt.t == t + 3 * epochs  # 3 steps per epoch (3 + 3 + 1 rows)
        for epoch, lr in enumerate(hist.lr):
            assert lr == pytest.approx(0.01 * sched.factor(t + 3 * epoch + 2), rel=1e-12)
        t = opt.t


def test_batch_size_is_capped_at_the_samples(make_data):
    X, y = make_data("cross_entropy", 7, 5, 3)
    net = fd.MLP([5, 4, 3], seed=0, device="cuda")
    sizes = []
    make_trainer = net._backend.trainer
    net._backend.trainer = lambda X, T, batch_size, *rest: (
        sizes.append(batch_size) or make_trainer(X, T, batch_size, *rest))
    opt = fd.SGD(lr=0.1)
    net.fit(X, y, epochs=2, batch_size=10**6, optimizer=opt)
    assert sizes == [7] and opt.t == 2


def test_predict_streams_in_chunks(make_data, monkeypatch):
    X, y = make_data("mse", 9, 5, 2)
    net = fd.MLP([5, 7, 2], loss="mse", dtype="float64", seed=6, device="cuda")
    whole, loss = net.forward(X), net.loss(X, y)
    monkeypatch.setattr(config, "PREDICT_CHUNK", 4)
    net._backend._infer = None
    np.testing.assert_array_equal(net.forward(X), whole)
    assert abs(net.loss(X, y) - loss) < 1e-12


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the simulator computes in NumPy scalars
def test_divergence_keeps_finite_weights(make_data):
    X, y = make_data("mse", 8, 5, 1)
    net = fd.MLP([5, 7, 1], activation="relu", loss="mse", seed=0, device="cuda")
    with pytest.raises(fd.TrainingDivergedError):
        net.fit(X * 1e3, y * 1e3, epochs=5, batch_size=4, optimizer=fd.SGD(lr=1e8), shuffle=False)
    assert all(np.isfinite(W).all() and np.isfinite(b).all() for W, b in net.get_weights())


@pytest.mark.skipif(SIMULATOR, reason="default launch shapes: real GPU only (too slow simulated)")
def test_default_launch_shapes_on_a_real_gpu(monkeypatch, rng):
    """The shipped tunables (16 x 16 tiles, register tiles up to 8 x 8) on a mid-size net."""
    for name, value in SHIPPED.items():  # undo conftest's small launches
        monkeypatch.setattr(config, name, value)
    X = rng.normal(size=(700, 130))
    y = rng.integers(0, 10, size=700)
    cpu, gpu = [fd.MLP([130, 300, 257, 10], activation="gelu", seed=1, device=d)
                for d in ("cpu", "cuda")]
    assert_close(gpu.forward(X), cpu.forward(X), 1e-4)
    for net in (cpu, gpu):
        net.fit(X, y, epochs=1, batch_size=256, shuffle=False, optimizer=fd.SGD(lr=0.01))
    assert_close(gpu._backend.get_theta(), cpu._backend.get_theta(), 1e-4)


@pytest.mark.skipif(SIMULATOR, reason="the simulator has no prepared launches")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_prepared_launches_give_the_bracket_calls_bits(dtype, monkeypatch, rng):
    """``kernels.cuda.dispatch``: the training step's launches take the prepared path, and
    the weights, losses and Adam state are those of numba-cuda's bracket calls, bit for bit
    (with dropout keys, L2, clipping and sample weights: every kernel of the step)."""
    from fastdnn.kernels.cuda import dispatch
    X = rng.normal(size=(300, 13))
    y = rng.integers(0, 4, size=300)
    w = rng.uniform(0.5, 2.0, size=300)
    runs = []
    for prepared in (False, True):
        monkeypatch.setattr(config, "CUDA_PREPARED_LAUNCH", prepared)
        before = dispatch.prepared_launches
        net = fd.MLP([13, 33, 17, 4], seed=3, dtype=dtype, device="cuda", l2=1e-3, dropout=0.2)
        opt = fd.Adam(lr=0.01)
        hist = net.fit(X, y, epochs=3, batch_size=32, optimizer=opt, sample_weight=w,
                       clip_norm=0.5)
        steps = 3 * -(-300 // 32)
        # Each step launches more than ten kernels; all but a handful of first ones prepared.
        assert (dispatch.prepared_launches - before > 10 * steps) == prepared
        runs.append((net._backend.get_theta(), hist.loss, opt.state))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    np.testing.assert_array_equal(runs[0][2], runs[1][2])


def test_fit_many_trains_cuda_nets_as_their_own_fits(make_data):
    X, y = make_data("cross_entropy", 12, 5, 3)
    group = [fd.MLP(sizes, seed=s, dtype="float64", device="cuda")
             for s, sizes in enumerate(([5, 4, 3], [5, 6, 6, 3]))]
    hists = fd.fit_many(group, X, y, epochs=2, batch_size=4, optimizer=fd.SGD(lr=0.1))
    for s, (net, hist) in enumerate(zip(group, hists)):
        own = fd.MLP(net.sizes, seed=s, dtype="float64", device="cuda")
        own_hist = own.fit(X, y, epochs=2, batch_size=4, optimizer=fd.SGD(lr=0.1))
        np.testing.assert_array_equal(own._backend.get_theta(), net._backend.get_theta())
        assert hist.loss == own_hist.loss


# -- issue 9's training options: the CPU's semantics on the GPU -------------------------
# Small nets and few steps: the simulator runs a fit with every option at ~1 s a step.

def weights_of(n, rng):
    return rng.uniform(0.2, 3.0, size=n)


@pytest.mark.parametrize("loss,k,acts", NETS, ids=NET_IDS)
def test_weighted_loss_and_gradients_with_l2_match_cpu(loss, k, acts, make_data, rng):
    """``net.loss`` (evaluate) and ``net.gradients`` (gradient) with sample weights (some
    of them 0) and an L2 penalty."""
    X, y = make_data(loss, 7, 5, k)
    w = weights_of(7, rng)
    nets = [fd.MLP([5, 6, k], activation=acts[0], loss=loss, dtype="float64", seed=3,
                   device=device, l2=0.05) for device in ("cpu", "cuda")]
    cpu, gpu = nets
    for sample_weight in (w, np.where(np.arange(7) < 4, 0.0, w)):
        want = cpu.loss(X, y, sample_weight=sample_weight)
        assert gpu.loss(X, y, sample_weight=sample_weight) == pytest.approx(want, rel=1e-12)
        for (dW, db), (cW, cb) in zip(gpu.gradients(X, y, sample_weight=sample_weight),
                                      cpu.gradients(X, y, sample_weight=sample_weight)):
            assert_close(dW, cW, RTOL["float64"])
            assert_close(db, cb, RTOL["float64"])
    assert gpu.loss(X, y, sample_weight=w) != pytest.approx(gpu.loss(X, y), rel=1e-6)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the simulator hashes in NumPy scalars
def test_gradient_with_a_dropout_key_matches_cpu(make_data, rng):
    """The masks are the same hash on both devices: same loss and gradient for a key,
    other ones for another key, none without."""
    X, y = make_data("cross_entropy", 7, 5, 3)
    w = weights_of(7, rng)
    nets = [fd.MLP([5, 6, 4, 3], activation=["relu", "tanh"], dtype="float64", seed=2,
                   device=device, dropout=[0.3, 0.5], l2=0.01) for device in ("cpu", "cuda")]
    cpu, gpu = nets
    _, T = cpu._XT(X, y, w)
    with np.errstate(over="ignore"):
        keys = [spec.step_key(11, 0), spec.step_key(11, 1)]
    results = []
    for key in keys + [None]:
        (value, grad), (want_value, want_grad) = (net._backend.gradient(X, T, dropout_key=key)
                                                  for net in (gpu, cpu))
        assert value == pytest.approx(want_value, rel=1e-12)
        assert_close(grad, want_grad, RTOL["float64"])
        results.append(grad)
    assert not np.allclose(results[0], results[1]) and not np.allclose(results[0], results[2])
    assert gpu._backend.gradient(X, T)[0] == pytest.approx(gpu.loss(X, y, sample_weight=w),
                                                          rel=1e-12)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("shuffle", [False, True, "uniform"])
def test_fit_with_weights_l2_clip_and_dropout_matches_cpu(shuffle, make_data, rng):
    """One fit with every option (sample and class weights, L2, clipping that clips,
    dropout, weighted validation data): the same history and weights as the CPU's, as
    the batches (permutations and uniform draws included) and the dropout masks are the
    same hashes."""
    X, y = make_data("cross_entropy", 6, 4, 3)
    w = weights_of(6, rng)
    results = []
    for device in ("cpu", "cuda"):
        net = fd.MLP([4, 5, 3], activation="tanh", dtype="float64", seed=4, device=device,
                     l2=0.02, dropout=0.4)
        hist = net.fit(X, y, epochs=2, batch_size=3, shuffle=shuffle, optimizer=fd.Adam(lr=0.05),
                       sample_weight=w, class_weight="balanced", clip_norm=0.05,
                       validation_data=(X, y, w))
        results.append((hist, net._backend.get_theta()))
    (h_cpu, theta_cpu), (h_gpu, theta_gpu) = results
    assert_close(h_gpu.loss, h_cpu.loss, FIT_RTOL["float64"])
    assert_close(h_gpu.val_loss, h_cpu.val_loss, FIT_RTOL["float64"])
    assert_close(theta_gpu, theta_cpu, FIT_RTOL["float64"])


@pytest.mark.parametrize("optimizer", [fd.SGD, fd.Adam])
def test_l2_per_batch_weight_matches_cpu(optimizer, make_data, rng):
    """scikit-learn's penalty (``Optimizer._l2_weight``, ``spec.step_l2``): each batch's
    L2 coefficient scaled by its own weight, read on the device, as the CPU's."""
    X, y = make_data("cross_entropy", 7, 4, 3)
    w = weights_of(7, rng)
    results = []
    for device, l2_weight in (("cpu", 3.0), ("cuda", 3.0), ("cuda", 0.0)):
        net = fd.MLP([4, 5, 3], activation="tanh", dtype="float64", seed=4, device=device,
                     l2=0.3)
        opt = optimizer(lr=0.05)
        opt._l2_weight = l2_weight
        hist = net.fit(X, y, epochs=2, batch_size=3, shuffle=False, optimizer=opt,
                       sample_weight=w)
        results.append((hist.loss, net._backend.get_theta()))
    (loss_cpu, theta_cpu), (loss_gpu, theta_gpu), (_, theta_fixed) = results
    assert_close(loss_gpu, loss_cpu, FIT_RTOL["float64"])
    assert_close(theta_gpu, theta_cpu, FIT_RTOL["float64"])
    assert np.abs(theta_fixed - theta_cpu).max() > 1e-4  # the scaling changed the steps


def test_epoch_result_counts_weights_and_stops_before_an_overflowing_update(rng):
    """The epoch's loss is sum(batch loss * batch weight) and its weight the batches'
    weight sum, as on the CPU; an update that would overflow float32 (the learning rate
    jumps by 1e45 at step 2) is refused: the run stops there, on both devices, with the
    weights of the steps before, finite (no snapshot is needed to restore them)."""
    X = rng.normal(size=(8, 4)).astype(np.float32)
    y = rng.normal(size=(8, 2))
    w = weights_of(8, rng)
    schedule = fd.StepDecay(step_size=2, gamma=1e45)
    results = []
    for device in ("cpu", "cuda"):
        net = fd.MLP([4, 5, 2], activation="tanh", loss="mse", dtype="float32", seed=1,
                     device=device)
        _, T = net._XT(X, y, w)
        backend = net._backend
        trainer = backend.trainer(X, T, 3, fd.SGD(lr=0.1), (schedule.code, schedule.params(6)))
        first = trainer.run_epoch(spec.IN_ORDER, 0)
        second = trainer.run_epoch(spec.IN_ORDER, 0)
        results.append((first, second, backend.get_theta()))
        weight_of_two_batches = float(T[:6, -1].astype(np.float64).sum())  # normalised weights
    (c1, c2, theta_cpu), (g1, g2, theta_gpu) = results
    for got, want in ((g1, c1), (g2, c2)):
        assert (got.samples, got.steps, got.failed_step) == (want.samples, want.steps,
                                                             want.failed_step)
        assert got.weight_sum == pytest.approx(want.weight_sum, rel=1e-6)
        assert got.loss_sum == pytest.approx(want.loss_sum, rel=1e-5)
    assert g1.failed_step == 2 and g1.steps == 2 and g1.samples == 6
    assert g1.weight_sum == pytest.approx(weight_of_two_batches, rel=1e-6)
    assert g2.failed_step == 0 and g2.steps == 0 and g2.weight_sum == 0.0
    assert np.isfinite(theta_gpu).all()
    assert_close(theta_gpu, theta_cpu, FIT_RTOL["float32"])


@pytest.mark.parametrize("dtype", DTYPES)
def test_huge_tied_logits_and_a_float32_overflowing_clip_as_on_the_cpu(dtype):
    """The CPU's two mends on the device: cross-entropy keeps log 2 of logits
    [M, M, -M] (the log was rounded away against M = 1e16), and a gradient of ~5e24
    clips to the bound (its float32 squares overflowed: a step of 0)."""
    weights = [(np.ones((1, 1)), np.zeros(1)), (np.array([[1.0, 1.0, -1.0]]), np.zeros(3))]
    net = fd.MLP([1, 1, 3], activation="identity", dtype=dtype, seed=0, device="cuda")
    net.set_weights(weights)
    assert net.loss(np.array([[1e16]]), np.array([0])) == pytest.approx(np.log(2.0), rel=1e-15)
    theta = net._backend.get_theta().astype(np.float64)
    net.fit(np.array([[1e25]]), np.array([0]), epochs=1, batch_size=1, shuffle=False,
            optimizer=fd.SGD(lr=0.1), clip_norm=1.0)
    assert np.linalg.norm(net._backend.get_theta() - theta) == pytest.approx(0.1, rel=1e-6)


def test_outputs_that_overflow_are_an_error_as_on_the_cpu():
    W1 = np.array([[1e30, -1e30, 1.0], [1e30, 1e30, 1.0]], dtype=np.float32)
    W2 = np.array([[1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    X = np.array([[0.5, -0.25], [1e10, 1e10], [-1e10, 1e10]], dtype=np.float32)
    for device in ("cpu", "cuda"):
        net = fd.MLP([2, 3, 3], activation="relu", dtype="float32", device=device)
        net.set_weights([(W1, np.zeros(3, np.float32)), (W2, np.zeros(3, np.float32))])
        with pytest.raises(ValueError, match=r"not finite for 2 of 3 rows \(row 1 first\)"):
            net.predict_proba(X)
        assert net.predict(X[:1]).shape == (1,)


def test_l2_and_dropout_set_on_a_cuda_net_are_the_nets(make_data):
    """Set after construction, they reached copies and files but not the net's backend."""
    X, y = make_data("cross_entropy", 24, 5, 3)
    kw = dict(activation="tanh", dtype="float64", seed=1, device="cuda")
    made = fd.MLP([5, 6, 4, 3], l2=0.25, dropout=[0.5, 0.2], **kw)
    net = fd.MLP([5, 6, 4, 3], **kw)
    net.l2, net.dropout = 0.25, [0.5, 0.2]
    assert net.loss(X, y) == made.loss(X, y)
    for n in (net, made):
        n.fit(X, y, epochs=2, batch_size=8, optimizer=fd.SGD(lr=0.1))
    for (W, b), (W0, b0) in zip(net.get_weights(), made.get_weights()):
        assert np.array_equal(W, W0) and np.array_equal(b, b0)
