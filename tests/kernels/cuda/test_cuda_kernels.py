"""Each CUDA kernel against the plain-NumPy oracle (tests/naive.py), as the CPU kernels are.

Sizes 1, 7 and 33 are not multiples of the (lowered, see conftest.py) tile of 4 x 4
threads x 2 x 2 outputs, so every product has partial tiles, several blocks and, with
at most 3 blocks per grid dimension, grid-stride rounds.

Tolerances, relative to the largest entry of the expected array: float64 1e-12 (the
oracle sums in another order); float32 1e-5 (about 100 ulps: sums of up to 34 terms
and float32 transcendental functions).
"""
import numpy as np
import pytest

import fastdnn as fd
import naive
from fastdnn.kernels import spec
from fastdnn.kernels.cuda import activations as gpu_activations
from fastdnn.kernels.cuda import checks as gpu_checks
from fastdnn.kernels.cuda import dense as gpu_dense
from fastdnn.kernels.cuda import losses as gpu_losses
from fastdnn.kernels.cuda import train as gpu_train
from fastdnn.kernels.cuda import updates as gpu_updates
from fastdnn.kernels.cuda.backend import CUDABackend
from fastdnn.kernels.spec import (A_OFF, ACTIVATIONS, ADAM, B_OFF, LOSSES, LR, MSE, NEEDS_Z,
                                  W_OFF, Z_OFF, Layout)
from conftest import SIMULATOR
from numba import cuda
from support import assert_close, assert_implements

DTYPES = ("float32", "float64")
RTOL = {"float32": 1e-5, "float64": 1e-12}
# (m, k, n): every size once in every position.
SHAPES = [(1, 7, 33), (7, 33, 1), (33, 1, 7)]


def setup_net(sizes, codes, loss, dtype, cap):
    """A backend, a layout of batch capacity ``cap`` and its device buffers."""
    backend = CUDABackend(sizes, codes, loss, np.dtype(dtype))
    layout = Layout.build(sizes, codes, cap)
    return backend, layout, backend._buffers(layout)


def view(flat, off, m, n):
    return flat[off:off + m * n].reshape(m, n)


@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_dense_forward(activation, dtype, m, k, n, rng):
    code = ACTIVATIONS[activation]
    backend, layout, bufs = setup_net([k, n, 2], [code], MSE, dtype, m)
    theta = rng.normal(size=backend.n_params).astype(dtype)
    A_prev = rng.normal(size=(m, k)).astype(dtype)
    backend.set_theta(theta)
    work = np.zeros(layout.work_size, dtype=dtype)
    work[:m * k] = A_prev.ravel()
    bufs.work.copy_to_device(work)

    gpu_dense.dense_forward(bufs, layout.table, 0, m)

    work = bufs.work.copy_to_host()
    row = layout.table[0]
    W = view(theta, row[W_OFF], k, n)
    b = theta[row[B_OFF]:row[B_OFF] + n]
    Z = naive.dense_forward(A_prev.astype(np.float64), W.astype(np.float64), b)
    assert_close(view(work, row[A_OFF], m, n), naive.ACTIVATIONS[activation](Z), RTOL[dtype])
    if code in NEEDS_Z:
        assert_close(view(work, row[Z_OFF], m, n), Z, RTOL[dtype])


@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_dense_backward(activation, dtype, m, k, n, rng):
    """Layer 1 of a 3-k-n net: [dW; db] by the augmented GEMM, and delta_prev fused with
    the derivative of layer 0's activation; then layer 0's dW from the input slot."""
    code = ACTIVATIONS[activation]
    d = 3
    backend, layout, bufs = setup_net([d, k, n], [code], MSE, dtype, m)
    theta = rng.normal(size=backend.n_params).astype(dtype)
    backend.set_theta(theta)
    X = rng.normal(size=(m, d)).astype(dtype)
    Z0 = rng.normal(size=(m, k)).astype(dtype)
    A0 = naive.ACTIVATIONS[activation](Z0.astype(np.float64)).astype(dtype)
    delta = rng.normal(size=(m, n)).astype(dtype)
    t0, t1 = layout.table
    work = np.zeros(layout.work_size, dtype=dtype)
    work[:m * d] = X.ravel()
    work[t0[Z_OFF]:t0[Z_OFF] + m * k] = Z0.ravel()
    work[t0[A_OFF]:t0[A_OFF] + m * k] = A0.ravel()  # A overwrites Z where they share a slot
    bufs.work.copy_to_device(work)
    half = layout.delta_size
    deltas = np.zeros(2 * half, dtype=dtype)
    deltas[:m * n] = delta.ravel()
    bufs.deltas.copy_to_device(deltas)

    gpu_dense.dense_backward(bufs, layout.table, 1, m, 0, half)
    grad = bufs.grad.copy_to_host()
    delta_prev = view(bufs.deltas.copy_to_host(), half, m, k)

    W1 = view(theta, t1[W_OFF], k, n).astype(np.float64)
    dW, db, dA = naive.dense_backward(A0.astype(np.float64), W1, delta.astype(np.float64))
    assert_close(view(grad, t1[W_OFF], k, n), dW, RTOL[dtype])
    assert_close(grad[t1[B_OFF]:t1[B_OFF] + n], db, RTOL[dtype])
    want = dA * naive.DERIVATIVES[activation](Z0.astype(np.float64))
    assert_close(delta_prev, want, 10 * RTOL[dtype])  # derivative from float32 A: a few ulps more

    # Layer 0 reads its input from the batch slot and has no delta below it.
    gpu_dense.dense_backward(bufs, layout.table, 0, m, half, 0)
    grad = bufs.grad.copy_to_host()
    dW0, db0, _ = naive.dense_backward(X.astype(np.float64), view(theta, 0, d, k).astype(np.float64),
                                       delta_prev.astype(np.float64))
    assert_close(view(grad, t0[W_OFF], d, k), dW0, RTOL[dtype])
    assert_close(grad[t0[B_OFF]:t0[B_OFF] + k], db0, RTOL[dtype])


def _targets(loss, m, k, rng):
    if loss == "cross_entropy":
        return rng.integers(0, k, size=m).astype(np.float64).reshape(m, 1)
    if loss == "mse":
        return rng.normal(size=(m, k))
    if loss == "poisson":
        return rng.poisson(2.0, size=(m, k)).astype(np.float64)
    return rng.uniform(size=(m, k))


def _run_head(loss, Z, T, dtype, w=None):
    return _run_head_code(LOSSES[loss], Z, T, dtype, w)


def _run_head_code(code, Z, T, dtype, w=None):
    """The loss head on logits ``Z`` against ``T`` packed with the weights ``w``."""
    m, k = Z.shape
    backend, layout, bufs = setup_net([2, k], [], code, dtype, m)
    work = np.zeros(layout.work_size, dtype=dtype)
    view(work, layout.out_offset, m, k)[:] = Z
    bufs.work.copy_to_device(work)
    bufs.targets.copy_to_device(spec.pack_targets(T, w, np.dtype(dtype)).ravel())
    gpu_losses.loss_grad(code, bufs.work, layout.out_offset, bufs.targets, bufs.deltas,
                         bufs.row_loss, m, k, bufs.acc)
    G = view(bufs.deltas.copy_to_host(), 0, m, k)
    return bufs, G


def weighted_head(loss, Z, y, w):
    """The weighted oracle: ``sum(w_i l_i) / sum(w)`` of the one-row losses of
    ``naive.LOSSES``, its gradient the same mix of their gradients."""
    rows = [naive.LOSSES[loss](Z[i:i + 1], y[i:i + 1]) for i in range(Z.shape[0])]
    total = w.sum()
    value = sum(wi * li for wi, (li, _) in zip(w, rows)) / total
    return value, np.vstack([wi * Gi for wi, (_, Gi) in zip(w, rows)]) / total


@pytest.mark.parametrize("weighted", [False, True], ids=["unit", "weighted"])
@pytest.mark.parametrize("m,k", [(1, 7), (7, 33), (33, 1)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", list(LOSSES))
def test_loss_heads(loss, dtype, m, k, weighted, rng):
    if loss == "cross_entropy":
        k = max(k, 2)
    Z = (3 * rng.normal(size=(m, k))).astype(dtype)
    T = _targets(loss, m, k, rng).astype(dtype)
    w = rng.uniform(0.1, 3.0, size=m).astype(dtype) if weighted else None
    bufs, G = _run_head(loss, Z, T, dtype, w)
    y = T[:, 0] if loss == "cross_entropy" else T
    if weighted:
        want_loss, want_G = weighted_head(loss, Z.astype(np.float64), y, w.astype(np.float64))
    else:
        want_loss, want_G = naive.LOSSES[loss](Z.astype(np.float64), y)
    weight = m if w is None else float(w.astype(np.float64).sum())
    acc = bufs.acc.copy_to_host()
    assert abs(acc[gpu_losses.LAST] - want_loss) <= RTOL[dtype] * max(abs(want_loss), 1.0)
    assert abs(acc[gpu_losses.BATCH_WEIGHT] - weight) <= RTOL[dtype] * weight
    assert acc[gpu_losses.EVAL_WEIGHT] == acc[gpu_losses.BATCH_WEIGHT]
    assert abs(acc[gpu_losses.EVAL_SUM] - weight * want_loss) <= weight * RTOL[dtype] * max(abs(want_loss), 1.0)
    assert acc[gpu_losses.TRAIN_SUM] == 0.0  # booked by the update, not by the head
    assert_close(G, want_G, RTOL[dtype])


@pytest.mark.parametrize("loss", list(LOSSES))
def test_a_batch_of_zero_weights_adds_nothing(loss, rng):
    """As on the CPU: loss 0, gradient 0 (never 0/0)."""
    Z = rng.normal(size=(3, 2))
    bufs, G = _run_head(loss, Z, _targets(loss, 3, 2, rng), "float64", np.zeros(3))
    acc = bufs.acc.copy_to_host()
    assert acc[gpu_losses.LAST] == 0.0 and acc[gpu_losses.BATCH_WEIGHT] == 0.0
    assert (G == 0.0).all()


def test_softmax_cross_entropy_is_stable_for_huge_logits(rng):
    Z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4 + 1.0, -1e4]])
    T = np.array([[1.0], [1.0]])
    bufs, G = _run_head("cross_entropy", Z, T, "float64")
    want_loss, want_G = naive.cross_entropy(Z, T[:, 0])
    assert np.isfinite(G).all()
    assert abs(bufs.acc.copy_to_host()[gpu_losses.LAST] - want_loss) <= 1e-12 * want_loss
    assert_close(G, want_G, 1e-12)


# The simulator runs device functions in Python, where math.exp of a float32 is a
# float64: there exp(100) does not overflow a float32 net's head (on a GPU, expf does).
FLOAT32_OVERFLOW = [1e4] if SIMULATOR else [100.0, 1e4]


@pytest.mark.parametrize("dtype,big", [("float64", 1e4)]
                         + [("float32", z) for z in FLOAT32_OVERFLOW])
def test_poisson_head_is_inf_not_nan_where_exp_overflows(dtype, big):
    """As on the CPU: an overflowing exp(z) gives loss and gradient +inf, even where t z
    overflows too, and the guard then stops the update; huge negative logits stay finite."""
    huge_t = 1e306 if dtype == "float64" else 1e37
    Z = np.array([[big, 0.5], [-1e4, 0.5]], dtype=dtype)
    for t in (0.0, 3.0, huge_t):
        bufs, G = _run_head("poisson", Z, np.array([[t, 1.0], [2.0, 1.0]]), dtype)
        assert bufs.acc.copy_to_host()[gpu_losses.LAST] == np.inf and G[0, 0] == np.inf
        assert np.isfinite(G[1]).all() and np.isfinite(G[0, 1])
        theta, state = cuda.to_device(np.ones(7)), cuda.to_device(np.zeros((2, 7)))
        hyper = fd.Adam(lr=0.1).hyper()
        gpu_updates.check_update(ADAM, hyper, hyper[LR], theta, cuda.to_device(np.ones(7)),
                                 state, bufs.status, bufs.acc, 5)
        assert bufs.status.copy_to_host()[0] == 5  # the step is refused


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # simulator
@pytest.mark.parametrize("dtype", DTYPES)
def test_regression_predictions_on_the_device(dtype, rng):
    """poisson: exp(Z) (inf beyond the dtype), as the CPU's head; mse: Z itself."""
    from fastdnn.kernels.cpu.losses import predictions as cpu_predictions

    Z = (3 * rng.normal(size=(33, 3))).astype(dtype)
    Z[0, 0] = 1e4 if dtype == "float64" else 100.0
    want = np.empty_like(Z)
    cpu_predictions(spec.POISSON, Z, want)
    got = gpu_losses.predictions(spec.POISSON, cuda.to_device(Z)).copy_to_host()
    assert got[0, 0] == np.inf
    assert_close(got[1:], want[1:], RTOL[dtype])
    np.testing.assert_array_equal(gpu_losses.predictions(MSE, cuda.to_device(Z)).copy_to_host(), Z)


@pytest.mark.parametrize("optimizer", [fd.SGD(lr=0.1, momentum=0.9), fd.Adam(lr=0.1)],
                         ids=["sgd-momentum", "adam"])
def test_non_finite_loss_sets_status_and_stops_updates(optimizer, rng):
    Z = np.array([[np.nan, 0.0], [1.0, 2.0]])
    bufs, _ = _run_head("cross_entropy", Z, np.array([[0.0], [1.0]]), "float64")
    assert bufs.status.copy_to_host()[0] == -1  # the guard decides, before the update
    theta = cuda.to_device(np.ones(7))
    state = cuda.to_device(np.zeros((2, 7)))
    grad = cuda.to_device(np.ones(7))
    hyper = optimizer.hyper()  # the named slots spec.LR, spec.MOMENTUM, spec.BETA1, ...
    assert hyper[LR] == 0.1
    gpu_updates.check_update(optimizer.code, hyper, hyper[LR], theta, grad, state, bufs.status,
                             bufs.acc, 5)
    assert bufs.status.copy_to_host()[0] == 5
    gpu_updates.optimizer_step(optimizer.code, hyper, hyper[LR], theta, grad, state, bufs.status,
                               bufs.acc, 5)
    assert (theta.copy_to_host() == 1.0).all() and (state.copy_to_host() == 0.0).all()
    acc = bufs.acc.copy_to_host()
    assert acc[gpu_losses.TRAIN_SUM] == 0.0 and acc[gpu_losses.TRAIN_WEIGHT] == 0.0


def test_updates_run_while_the_status_is_clear():
    """The control for the test above: the same calls with a finite loss update, and the
    update books the step's loss and weight."""
    status = cuda.to_device(np.full(1, -1, dtype=np.int64))
    acc = np.zeros(gpu_losses.N_ACC)
    acc[gpu_losses.LAST], acc[gpu_losses.BATCH_WEIGHT] = 0.5, 3.0
    acc = cuda.to_device(acc)
    theta = cuda.to_device(np.ones(7))
    state = cuda.to_device(np.zeros((2, 7)))
    hyper = fd.Adam(lr=0.1).hyper()
    grad = cuda.to_device(np.ones(7))
    gpu_updates.check_update(ADAM, hyper, hyper[LR], theta, grad, state, status, acc, 0)
    assert status.copy_to_host()[0] == -1
    gpu_updates.optimizer_step(ADAM, hyper, hyper[LR], theta, grad, state, status, acc, 0)
    # Adam's first step moves every parameter by lr against the gradient's sign.
    assert_close(theta.copy_to_host(), np.full(7, 0.9), 1e-6)
    acc = acc.copy_to_host()
    assert acc[gpu_losses.TRAIN_SUM] == 1.5 and acc[gpu_losses.TRAIN_WEIGHT] == 3.0


GUARD_CASES = {
    "sgd": fd.SGD(lr=1.0),
    "sgd-nesterov-wd": fd.SGD(lr=1.0, momentum=0.9, nesterov=True, weight_decay=0.5),
    "adam": fd.Adam(lr=1.0),
    "adamw": fd.AdamW(lr=1.0, weight_decay=0.5),
}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the simulator overflows NumPy scalars
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(GUARD_CASES))
def test_overflow_guard_refuses_exactly_what_the_cpu_refuses(name, dtype, rng):
    """The guard against the CPU's exact check (cpu.updates.update_is_finite) on updates
    near the dtype's limit, NaN and inf gradients included; a refused step changes
    nothing, an accepted one keeps every value finite."""
    from fastdnn.kernels.cpu.updates import update_is_finite

    opt = GUARD_CASES[name]
    limit = float(np.finfo(dtype).max) / 2
    hyper = opt.hyper()
    n = 33
    seen = set()
    for lr in (1.0, 1e-3 * limit, 0.3 * limit, 0.6 * limit, 3 * limit):
        for bad in (None, np.nan, np.inf):
            theta = rng.normal(size=n).astype(dtype)
            grad = rng.normal(size=n).astype(dtype)
            if bad is not None:
                grad[n // 2] = bad
            state = np.abs(rng.normal(size=opt.bind(n, np.dtype(dtype)).shape)).astype(dtype)
            t = 3
            want = update_is_finite(opt.code, hyper, lr, theta, grad, state, t, limit)
            seen.add((bad is None, want))
            status = cuda.to_device(np.full(1, -1, dtype=np.int64))
            acc = cuda.to_device(np.zeros(gpu_losses.N_ACC))
            theta_d, state_d = cuda.to_device(theta), cuda.to_device(state)
            args = (opt.code, hyper, lr, theta_d, cuda.to_device(grad), state_d, status, acc, t)
            gpu_updates.check_update(*args)
            assert (status.copy_to_host()[0] == -1) == want, (lr, bad)
            gpu_updates.optimizer_step(*args)
            if want:
                assert np.isfinite(theta_d.copy_to_host()).all()
                assert np.isfinite(state_d.copy_to_host()).all()
            else:
                np.testing.assert_array_equal(theta_d.copy_to_host(), theta)
                np.testing.assert_array_equal(state_d.copy_to_host(), state)
    # Finite gradients accepted and refused (overflow), bad ones refused.
    assert seen == {(True, True), (True, False), (False, False)}


@pytest.mark.parametrize("bad", [-1, len(LOSSES), 99])  # one past the last loss code
def test_host_dispatch_rejects_unknown_codes(bad, rng):
    """Unknown optimizer and loss codes are a ValueError before any launch."""
    status = cuda.to_device(np.full(1, -1, dtype=np.int64))
    theta = cuda.to_device(np.ones(7))
    state = cuda.to_device(np.zeros((2, 7)))
    with pytest.raises(ValueError, match="unknown optimizer code"):
        gpu_updates.optimizer_step(bad, fd.Adam(lr=0.1).hyper(), 0.1, theta,
                                   cuda.to_device(np.ones(7)), state, status,
                                   cuda.to_device(np.zeros(gpu_losses.N_ACC)), 0)
    with pytest.raises(ValueError, match="unknown optimizer code"):
        gpu_updates.check_update(bad, fd.Adam(lr=0.1).hyper(), 0.1, theta,
                                 cuda.to_device(np.ones(7)), state, status,
                                 cuda.to_device(np.zeros(gpu_losses.N_ACC)), 0)
    assert (theta.copy_to_host() == 1.0).all() and (state.copy_to_host() == 0.0).all()
    Z = rng.normal(size=(2, 3))
    with pytest.raises(ValueError, match="unknown loss code"):
        _run_head_code(bad, Z, np.zeros((2, 3)), "float64")
    with pytest.raises(ValueError, match="unknown classification loss code"):
        gpu_losses.labels(bad, cuda.to_device(Z))
    with pytest.raises(ValueError, match="unknown classification loss code"):
        gpu_losses.probabilities(bad, cuda.to_device(Z))
    with pytest.raises(ValueError, match="unknown regression loss code"):
        gpu_losses.predictions(bad, cuda.to_device(Z))


@cuda.jit
def _activations_kernel(z, codes, A, D):
    i = cuda.grid(1)
    if i < z.shape[0]:
        a = gpu_activations.activate(z[i], codes[i])
        A[i] = a
        D[i] = gpu_activations.derivative(a, z[i], codes[i])


def test_device_activations_match_the_plain_formulas_and_nan_for_unknown_codes():
    """The CUDA twins of spec.activate / spec.derivative, over every code and a bad one."""
    grid = np.array([-1e4, -30.0, -8.0, -1.0, -1e-300, 0.0, 1e-300, 1.0, 8.0, 30.0, 1e4])
    codes = sorted(ACTIVATIONS.values()) + [-1, 99]
    z = np.repeat(grid, len(codes))
    code = np.tile(np.array(codes, dtype=np.int64), len(grid))
    A, D = cuda.device_array(z.size), cuda.device_array(z.size)
    _activations_kernel[(z.size + 31) // 32, 32](cuda.to_device(z), cuda.to_device(code), A, D)
    A, D = A.copy_to_host(), D.copy_to_host()
    known = (code >= 0) & (code < len(ACTIVATIONS))
    assert np.isnan(A[~known]).all() and np.isnan(D[~known]).all()
    want_A = np.array([spec.activate(zi, c) for zi, c in zip(z, code)])
    want_D = np.array([spec.derivative(a, zi, c) for a, zi, c in zip(want_A, z, code)])
    # A real GPU's exp/erf/tanh (libdevice) may differ from the host's libm by an ulp or
    # two, which gelu's 1 + erf(z / sqrt 2) near z = -8 turns into ~1e-16 absolute.
    np.testing.assert_allclose(A[known], want_A[known], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(D[known], want_D[known], rtol=1e-13, atol=1e-15)


def test_cuda_backend_implements_the_whole_protocol():
    from fastdnn.kernels.cuda.backend import CUDATrainer

    assert_implements(CUDABackend, spec.Backend)
    assert_implements(CUDATrainer, spec.Trainer)
    backend = CUDABackend([3, 4, 2], [spec.RELU], spec.MSE, np.dtype(np.float64))
    assert backend.device == "cuda" and backend.n_params == 3 * 4 + 4 + 4 * 2 + 2


OPTIMIZERS = {
    "sgd": dict(lr=0.1),
    "momentum-wd": dict(lr=0.1, momentum=0.9, weight_decay=0.01),
    "nesterov": dict(lr=0.1, momentum=0.9, nesterov=True),
    "adam-wd": dict(lr=0.01, weight_decay=0.01),
    "adamw": dict(lr=0.01, weight_decay=0.1),
}


@pytest.mark.parametrize("n", [1, 7, 33])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_updates(name, dtype, n, rng):
    kwargs = OPTIMIZERS[name]
    if name.startswith("adam"):
        opt = (fd.AdamW if name == "adamw" else fd.Adam)(**kwargs)
        oracle = (naive.AdamW if name == "adamw" else naive.Adam)(**kwargs)
    else:
        opt = fd.SGD(**kwargs)
        oracle = naive.SGD(**kwargs)
    theta = rng.normal(size=n).astype(dtype)
    want = theta.astype(np.float64)
    theta_d = cuda.to_device(theta)
    state_d = cuda.to_device(opt.bind(n, np.dtype(dtype)))
    status = cuda.to_device(np.full(1, -1, dtype=np.int64))
    acc = cuda.to_device(np.zeros(gpu_losses.N_ACC))
    for t, lr_factor in enumerate([1.0, 0.5, 0.25]):
        grad = rng.normal(size=n).astype(dtype)
        lr = opt.lr * lr_factor
        gpu_updates.optimizer_step(opt.code, opt.hyper(), lr, theta_d, cuda.to_device(grad), state_d,
                                   status, acc, t)
        oracle.step([want], [grad.astype(np.float64)], lr=lr)
    assert_close(theta_d.copy_to_host(), want, 10 * RTOL[dtype])


def test_gather_batch(rng):
    X = rng.normal(size=(7, 5))
    T = rng.normal(size=(7, 2))
    order = rng.permutation(7)
    work = cuda.to_device(np.zeros(40))
    targets = cuda.to_device(np.zeros(8))
    gpu_train.gather_batch[2, 4](cuda.to_device(X), cuda.to_device(T), cuda.to_device(order), 2,
                                 4, work, targets)
    np.testing.assert_array_equal(work.copy_to_host()[:20].reshape(4, 5), X[order[2:6]])
    np.testing.assert_array_equal(targets.copy_to_host().reshape(4, 2), T[order[2:6]])


def test_all_finite():
    x = np.zeros(33)
    assert gpu_checks.all_finite(cuda.to_device(x))
    x[32] = np.inf
    assert not gpu_checks.all_finite(cuda.to_device(x))


def test_register_tile_does_not_change_results(rng, monkeypatch):
    """Every output sums its K terms in the same order whatever MICRO is: bit-identical."""
    from fastdnn import config
    backend, layout, bufs = setup_net([33, 7, 2], [ACTIVATIONS["tanh"]], MSE, "float32", 9)
    backend.set_theta(rng.normal(size=backend.n_params).astype(np.float32))
    work = np.zeros(layout.work_size, dtype=np.float32)
    work[:9 * 33] = rng.normal(size=9 * 33)
    outs = []
    for micro in (1, 2, 4):
        monkeypatch.setattr(config, "CUDA_MICRO", micro)
        bufs.work.copy_to_device(work)
        gpu_dense.dense_forward(bufs, layout.table, 0, 9)
        outs.append(bufs.work.copy_to_host())
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])


def test_l2_penalty_over_the_weights_only(rng):
    """``l2 / 2 * sum(W**2)`` into acc[PENALTY] (and onto the step's loss), ``l2 * W`` into
    the gradient, the biases left out; over 3 blocks of 8 threads and grid strides."""
    sizes, l2 = [7, 33, 1], 0.3
    backend, layout, bufs = setup_net(sizes, [ACTIVATIONS["tanh"]], MSE, "float64", 1)
    theta = rng.normal(size=backend.n_params)
    grad = rng.normal(size=backend.n_params)
    backend.set_theta(theta)
    bufs.grad.copy_to_device(grad)
    acc = np.zeros(gpu_losses.N_ACC)
    acc[gpu_losses.LAST] = 2.0
    bufs.acc.copy_to_device(acc)
    weights = np.zeros(backend.n_params, dtype=bool)
    for row in layout.table:
        weights[row[W_OFF]:row[W_OFF] + row[spec.FAN_IN] * row[spec.FAN_OUT]] = True
    want = l2 / 2 * np.sum(theta[weights] ** 2)

    gpu_train.l2_penalty(bufs, layout.table, l2)

    acc = bufs.acc.copy_to_host()
    assert acc[gpu_losses.PENALTY] == pytest.approx(want, rel=1e-13)
    assert acc[gpu_losses.LAST] == pytest.approx(2.0 + want, rel=1e-13)
    assert_close(bufs.grad.copy_to_host(), grad + l2 * theta * weights, 1e-14)
    # Evaluation: the penalty alone, the gradient untouched.
    gpu_train.l2_penalty(bufs, layout.table, l2, with_grad=False)
    assert bufs.acc.copy_to_host()[gpu_losses.PENALTY] == pytest.approx(want, rel=1e-13)
    assert_close(bufs.grad.copy_to_host(), grad + l2 * theta * weights, 1e-14)


@pytest.mark.parametrize("bound", [0.5, 1e9])
def test_clip_by_norm(bound, rng):
    """A gradient longer than ``bound`` is scaled to it; a shorter one is left bit for bit."""
    backend, _, bufs = setup_net([7, 33, 1], [ACTIVATIONS["tanh"]], MSE, "float32", 1)
    grad = rng.normal(size=backend.n_params).astype(np.float32)
    bufs.grad.copy_to_device(grad)
    gpu_train.clip_by_norm(bufs, bound)
    got = bufs.grad.copy_to_host()
    # Squared and summed in float64: the CPU's clip_by_norm.
    norm = np.sqrt(np.sum(grad.astype(np.float64) ** 2))
    factor = bufs.acc.copy_to_host()[gpu_losses.CLIP_FACTOR]
    if norm <= bound:
        assert factor == 1.0
        np.testing.assert_array_equal(got, grad)
    else:
        assert factor == pytest.approx(bound / norm, rel=1e-12)
        assert np.linalg.norm(got.astype(np.float64)) == pytest.approx(bound, rel=1e-6)


def test_clip_by_norm_of_a_gradient_whose_squares_overflow(rng):
    """|g| ~ 1e160 in float64: the squares overflow, and the norm is taken again of
    ``g / max|g|`` (the factor was bound / inf = 0: no step)."""
    backend, _, bufs = setup_net([7, 33, 1], [ACTIVATIONS["tanh"]], MSE, "float64", 1)
    grad = rng.normal(size=backend.n_params) * 1e160
    bufs.grad.copy_to_device(grad)
    with np.errstate(over="ignore"):  # the simulator's float64 squares overflow in NumPy
        gpu_train.clip_by_norm(bufs, 1.0)
    norm = np.linalg.norm(grad / 1e160) * 1e160
    factor = bufs.acc.copy_to_host()[gpu_losses.CLIP_FACTOR]
    assert factor == pytest.approx(1.0 / norm, rel=1e-12)
    assert np.linalg.norm(bufs.grad.copy_to_host()) == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("scale, bound", [(1e307, 1.0), (1e-165, 1e-170)])
def test_clip_by_norm_beyond_float64_or_of_underflowing_squares_is_the_cpus(scale, bound, rng):
    """A norm past 1.8e308 made the factor 0; squares that underflowed, a norm of 0 and no
    clip: as the CPU's (spec.clip_factor)."""
    from fastdnn.kernels.cpu.train import clip_by_norm as cpu_clip

    backend, _, bufs = setup_net([7, 33, 1], [ACTIVATIONS["tanh"]], MSE, "float64", 1)
    grad = rng.normal(size=backend.n_params) * scale
    bufs.grad.copy_to_device(grad)
    with np.errstate(over="ignore", under="ignore"):  # the simulator's float64 squares
        gpu_train.clip_by_norm(bufs, bound)
    want = grad.copy()
    factor = cpu_clip(want, bound)
    assert bufs.acc.copy_to_host()[gpu_losses.CLIP_FACTOR] == pytest.approx(factor, rel=1e-12)
    assert factor < 1.0
    np.testing.assert_allclose(bufs.grad.copy_to_host(), want, rtol=1e-12)


def test_uniform_draws_are_the_cpus(rng):
    """``shuffle='uniform'`` draws row ``spec.random_index(mix64(seed), i, n)`` for the
    ``i``-th row of the epoch, as the CPU's gather does (the same rows on both)."""
    n = 33
    backend = CUDABackend([3, 2], [], MSE, np.dtype(np.float64))
    X = rng.normal(size=(n, 3))
    T = spec.pack_targets(rng.normal(size=(n, 2)), None, np.dtype(np.float64))
    trainer = backend.trainer(X, T, 4, fd.SGD(lr=0.1), (spec.CONSTANT, np.zeros(spec.N_SCHEDULE)))
    for seed in (0, 7, 2**31 - 2):
        with np.errstate(over="ignore"):  # NumPy scalars warn where the hash wraps around
            key = spec.mix64(np.uint64(seed))
            want = [spec.random_index(key, i, n) for i in range(n)]
        np.testing.assert_array_equal(trainer._order(spec.UNIFORM, seed), want)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the simulator hashes in NumPy scalars
@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_layers_apply_the_dropout_masks(dtype, rng):
    """A layer with dropout passes on ``A * mask`` (its OUT_OFF slot, the next layer's
    input), and backprop multiplies ``delta_prev`` by the same mask before ``g'``; the
    masks are ``spec.dropout_scale`` of the key, row, layer and unit."""
    m, d, k, n = 7, 3, 33, 2
    code = ACTIVATIONS["tanh"]
    backend = CUDABackend([d, k, n], [code], MSE, np.dtype(dtype))
    layout = Layout.build([d, k, n], [code], m, 0, [spec.dropout_threshold(0.4)])
    bufs = backend._buffers(layout)
    theta = rng.normal(size=backend.n_params).astype(dtype)
    backend.set_theta(theta)
    X = rng.normal(size=(m, d)).astype(dtype)
    work = np.zeros(layout.work_size, dtype=dtype)
    work[:m * d] = X.ravel()
    bufs.work.copy_to_device(work)
    key = np.uint64(987654321)
    with np.errstate(over="ignore"):
        mask = np.array([[spec.dropout_scale(key, r, 0, j, layout.table[0, spec.DROP])
                          for j in range(k)] for r in range(m)])
    assert (mask == 0).any() and (mask > 1).any()

    gpu_dense.dense_forward(bufs, layout.table, 0, m, key)
    work = bufs.work.copy_to_host()
    row = layout.table[0]
    theta = theta.astype(np.float64)
    A = np.tanh(X @ view(theta, row[W_OFF], d, k) + theta[row[B_OFF]:row[B_OFF] + k])
    assert_close(view(work, row[A_OFF], m, k), A, RTOL[dtype])
    assert_close(view(work, row[spec.OUT_OFF], m, k), A * mask, RTOL[dtype])
    assert layout.table[1, spec.IN_OFF] == row[spec.OUT_OFF]

    delta = rng.normal(size=(m, n)).astype(dtype)
    deltas = np.zeros(2 * layout.delta_size, dtype=dtype)
    deltas[:m * n] = delta.ravel()
    bufs.deltas.copy_to_device(deltas)
    half = layout.delta_size
    gpu_dense.dense_backward(bufs, layout.table, 1, m, 0, half, key)
    W1 = view(theta, layout.table[1, W_OFF], k, n)
    want = (delta @ W1.T) * mask * (1 - A ** 2)
    assert_close(view(bufs.deltas.copy_to_host(), half, m, k), want, RTOL[dtype])
    dW1 = view(bufs.grad.copy_to_host(), layout.table[1, W_OFF], k, n)
    assert_close(dW1, (A * mask).T @ delta, RTOL[dtype])


@pytest.mark.parametrize("tile, micro, dtype, says", [
    (16, 16, np.float64, "66,560 bytes of shared memory"),
    (33, 1, np.float32, "1089 threads a block"),
])
def test_gemm_shapes_a_gpu_cannot_build_are_refused(tile, micro, dtype, says):
    """The simulator ran them; a GPU's ptxas refused 16 x 16 float64 (66,560 bytes of
    shared memory against 48 KB), and a block of more than 1024 threads."""
    with pytest.raises(ValueError, match=says):
        gpu_dense.gemm_kernel(tile, micro, np.dtype(dtype))
    gpu_dense.gemm_kernel(16, 16, np.dtype(np.float32))  # 33,792 bytes: fits


def test_more_threads_a_block_than_cuda_holds_are_refused(monkeypatch):
    from fastdnn import config
    from fastdnn.kernels.cuda import launch

    monkeypatch.setattr(config, "CUDA_THREADS_PER_BLOCK", 2048)
    with pytest.raises(ValueError, match="at most 1024 threads"):
        launch.threads_per_block()
