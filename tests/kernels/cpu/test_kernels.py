"""Each CPU kernel against the plain-NumPy oracle in naive.py, over activation x dtype x
odd sizes, on both the loop path and the BLAS path of the dense kernels."""
import json

import numpy as np
import pytest
from numba import njit

import fastdnn as fd
import naive
from support import run_python
from fastdnn.kernels.cpu.activations import activate, activation_backward
from fastdnn.kernels.cpu.dense import dense_backward, dense_layer
from fastdnn.kernels.cpu.losses import labels, loss_grad, predictions, probabilities
from fastdnn.kernels.cpu.checks import abs_bound, all_finite, max_abs, max_abs_host
from fastdnn.kernels.cpu.updates import (GUARD_SLOTS, LIMIT, SAFE, SAFE_REFRESH, UNSAFE,
                                        adam_update, optimizer_step, refresh_bounds,
                                        refresh_bounds_host,
                                        sgd_update, step_is_safe)
from fastdnn.kernels.spec import (A_OFF, ACTIVATIONS, LOSSES, MSE, NEEDS_Z, POISSON, SGD, Z_OFF,
                                 Layout, pack_targets)

SIZES = [1, 7, 33]
DTYPES = [np.float32, np.float64]
# Relative tolerances: float32 sums of up to 33 terms, float64 near round-off.
RTOL = {np.float32: 2e-5, np.float64: 1e-12}
ATOL = {np.float32: 2e-6, np.float64: 1e-13}


def close(got, want, dtype):
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=ATOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_and_derivative(name, dtype):
    rng = np.random.default_rng(0)
    Z = (3 * rng.standard_normal(101)).astype(dtype)
    A = np.empty_like(Z)
    activate(Z, ACTIVATIONS[name], A)
    close(A, naive.ACTIVATIONS[name](Z.astype(np.float64)), dtype)
    delta = rng.standard_normal(101).astype(dtype)
    got = delta.copy()
    activation_backward(got, A, Z, ACTIVATIONS[name])
    close(got, delta * naive.DERIVATIVES[name](Z.astype(np.float64)), dtype)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_in_place(name):
    # activate reads each Z[i] before it writes A[i], so A may be Z itself.
    Z = np.linspace(-4, 4, 17)
    want = naive.ACTIVATIONS[name](Z)
    activate(Z, ACTIVATIONS[name], Z)
    close(Z, want, np.float64)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_layout_keeps_z_exactly_where_the_derivative_needs_it(name):
    """A hidden layer's forward and backward pass through the buffers Layout gives it.

    Outside NEEDS_Z, A is written over Z (one slot) and the derivative reads A; for
    gelu and silu Z has its own slot, which the derivative reads.  Either way the
    backward pass must see g'(Z) of the forward pass's Z.
    """
    code = ACTIVATIONS[name]
    m, n = 5, 7
    layout = Layout.build([3, n, 2], [code], m)
    row = layout.table[0]
    assert (row[Z_OFF] != row[A_OFF]) == (code in NEEDS_Z)
    work = np.full(layout.work_size, np.nan)
    Z = work[row[Z_OFF]:row[Z_OFF] + m * n]
    A = work[row[A_OFF]:row[A_OFF] + m * n]
    Z[:] = np.linspace(-4, 4, m * n)
    z = Z.copy()
    activate(Z, code, A)
    close(A, naive.ACTIVATIONS[name](z), np.float64)
    delta = np.linspace(1, 2, m * n)
    got = delta.copy()
    activation_backward(got, A, Z, code)
    close(got, delta * naive.DERIVATIVES[name](z), np.float64)


@pytest.mark.parametrize("blas", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,k,n", [(m, k, n) for m in SIZES for k in SIZES for n in SIZES][::4])
@pytest.mark.parametrize("name", ["identity", "relu", "tanh", "gelu"])
def test_dense_forward(name, m, k, n, dtype, blas):
    rng = np.random.default_rng(m * 100 + k * 10 + n)
    A_prev = rng.standard_normal((m, k)).astype(dtype)
    W = rng.standard_normal((k, n)).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    Z = np.full((m, n), np.nan, dtype)
    A = np.full((m, n), np.nan, dtype)
    dense_layer(A_prev, W, b, ACTIVATIONS[name], blas, Z, A)
    Zn = naive.dense_forward(A_prev.astype(np.float64), W.astype(np.float64), b.astype(np.float64))
    close(Z, Zn, dtype)
    close(A, naive.ACTIVATIONS[name](Zn), dtype)


@pytest.mark.parametrize("blas", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,k,n", [(m, k, n) for m in SIZES for k in SIZES for n in SIZES][1::3])
def test_dense_backward(m, k, n, dtype, blas):
    rng = np.random.default_rng(m + 10 * k + 100 * n)
    A_prev = rng.standard_normal((m, k)).astype(dtype)
    W = rng.standard_normal((k, n)).astype(dtype)
    delta = rng.standard_normal((m, n)).astype(dtype)
    dW = np.full((k, n), np.nan, dtype)
    db = np.full(n, np.nan, dtype)
    delta_prev = np.full((m, k), np.nan, dtype)
    dense_backward(delta, A_prev, W, blas, dW, db, delta_prev, True)
    f64 = [a.astype(np.float64) for a in (A_prev, W, delta)]
    dWn, dbn, dAn = naive.dense_backward(*f64)
    close(dW, dWn, dtype)
    close(db, dbn, dtype)
    close(delta_prev, dAn, dtype)


@pytest.mark.parametrize("blas", [False, True])
@pytest.mark.parametrize("m", [1, 3])
def test_dense_backward_without_weights_leaves_dW_alone(m, blas):
    # weights=False (online SGD, which forms dW in its update): db and delta_prev bit for
    # bit those of weights=True, dW untouched.
    rng = np.random.default_rng(m)
    k, n = 5, 4
    A_prev, W = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    delta = rng.standard_normal((m, n))
    out = {}
    for weights in (True, False):
        dW, db, delta_prev = np.full((k, n), np.nan), np.full(n, np.nan), np.full((m, k), np.nan)
        dense_backward(delta, A_prev, W, blas, dW, db, delta_prev, weights)
        out[weights] = dW, db, delta_prev
    assert np.isnan(out[False][0]).all()
    np.testing.assert_array_equal(out[False][1], out[True][1])
    np.testing.assert_array_equal(out[False][2], out[True][2])


@pytest.mark.parametrize("blas", [False, True])
def test_dense_backward_first_layer_skips_delta_prev(blas):
    # The first layer gets a 0-row view into the delta buffer (backward_layers); were
    # delta_prev computed anyway, it would be written through that view's pointer
    # into the buffer, so the buffer must come back untouched.
    rng = np.random.default_rng(3)
    m, k, n = 3, 2, 4
    A_prev, W, delta = rng.standard_normal((m, k)), rng.standard_normal((k, n)), rng.standard_normal((m, n))
    buffer = np.full(m * k + 8, 123.0)
    dW, db = np.full((k, n), np.nan), np.full(n, np.nan)
    dense_backward(delta, A_prev, W, blas, dW, db, buffer[:0].reshape(0, k), True)
    assert (buffer == 123.0).all(), "delta_prev was written for the first layer"
    dWn, dbn, _ = naive.dense_backward(A_prev, W, delta)
    close(dW, dWn, np.float64)
    close(db, dbn, np.float64)


def _targets(loss, m, k, rng):
    """Targets ``y`` for the oracle and ``T`` as the kernels take them (unit weights)."""
    if loss == "cross_entropy":
        y = rng.integers(0, k, m)
        return y, pack_targets(y.reshape(-1, 1), None, np.float64)
    if loss == "mse":
        Y = rng.standard_normal((m, k))
    elif loss == "poisson":
        Y = rng.poisson(2.0, (m, k)).astype(np.float64)
    else:
        Y = rng.random((m, k))
    return Y, pack_targets(Y, None, np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [2, 7, 33])
@pytest.mark.parametrize("m", SIZES)
@pytest.mark.parametrize("loss", list(LOSSES))
def test_loss_heads(loss, m, k, dtype):
    rng = np.random.default_rng(m * k)
    Z = (2 * rng.standard_normal((m, k))).astype(dtype)
    y, T = _targets(loss, m, k, rng)
    G = np.full_like(Z, np.nan)
    value = loss_grad(Z, T.astype(dtype), LOSSES[loss], G)
    want, Gn = naive.LOSSES[loss](Z.astype(np.float64), y)
    assert value == pytest.approx(want, rel=RTOL[dtype] * 10, abs=ATOL[dtype])
    close(G, Gn, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", [name for name in LOSSES if name != "poisson"])
def test_loss_heads_finite_for_huge_logits(loss, dtype):
    Z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], dtype=dtype)
    y, T = (np.array([1, 2]), np.array([[1.0], [2.0]])) if loss == "cross_entropy" else (None, None)
    if T is None:
        T = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
        y = T
    T = pack_targets(T, None, np.float64)
    G = np.empty_like(Z)
    value = loss_grad(Z, T.astype(dtype), LOSSES[loss], G)
    assert np.isfinite(value) and np.isfinite(G).all()
    want, Gn = naive.LOSSES[loss](Z.astype(np.float64), y)
    assert value == pytest.approx(want, rel=1e-6)
    np.testing.assert_allclose(G, Gn, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_poisson_head_is_inf_not_nan_where_exp_overflows(dtype):
    """exp(z) beyond the dtype's range: the loss and that row's gradient are +inf (a
    divergence the guard stops), even where t z overflows too (inf - inf would be
    NaN); huge negative logits stay finite (exp(z) = 0, the term is -t z)."""
    big = 1e4 if dtype == np.float64 else 100.0  # exp overflows float32 from 88.7
    huge_t = 1e306 if dtype == np.float64 else 1e37  # t z overflows as well
    Z = np.array([[big, 0.5], [-1e4, 0.5]], dtype=dtype)
    for t in (0.0, 3.0, huge_t):
        T = pack_targets(np.array([[t, 1.0], [2.0, 1.0]]), None, dtype)
        G = np.empty_like(Z)
        value = loss_grad(Z, T, LOSSES["poisson"], G)
        assert value == np.inf and G[0, 0] == np.inf, (t, value, G)
        assert np.isfinite(G[1]).all() and np.isfinite(G[0, 1])
    T = pack_targets(np.array([[3.0, 1.0], [2.0, 1.0]]), None, dtype)
    G = np.empty_like(Z)
    value = loss_grad(Z[1:], T[1:], LOSSES["poisson"], G[1:])
    assert value == pytest.approx((2e4 + np.exp(0.5) - 0.5) / 2, rel=1e-6)
    assert G[1, 0] == pytest.approx(-2.0 / 2, rel=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 3])
def test_regression_predictions(dtype, k):
    """poisson predicts the means exp(z) (inf beyond the dtype), mse the logits."""
    rng = np.random.default_rng(k)
    Z = (3 * rng.standard_normal((7, k))).astype(dtype)
    Z[0, 0] = 1e4 if dtype == np.float64 else 100.0
    out = np.full_like(Z, np.nan)
    with np.errstate(over="ignore"):
        predictions(POISSON, Z, out)
        want = np.exp(Z.astype(np.float64))
    assert out[0, 0] == np.inf
    close(out[1:], want[1:], dtype)
    predictions(MSE, Z, out)
    np.testing.assert_array_equal(out, Z)


@pytest.mark.parametrize("momentum,nesterov,wd", [(0.0, False, 0.0), (0.9, False, 1e-2), (0.9, True, 0.0)])
def test_sgd_update(momentum, nesterov, wd):
    rng = np.random.default_rng(0)
    theta = rng.standard_normal(33)
    ref = naive.SGD(0.1, momentum=momentum, nesterov=nesterov, weight_decay=wd)
    p = [theta.copy()]
    velocity = np.zeros(33)
    for step in range(3):
        g = rng.standard_normal(33)
        sgd_update(theta, g, velocity, 0.1, momentum, nesterov, wd, step == 0)
        ref.step(p, [g])
        close(theta, p[0], np.float64)


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_update(decoupled):
    rng = np.random.default_rng(1)
    theta = rng.standard_normal(7)
    ref = naive.Adam(1e-2, weight_decay=0.1, decoupled=decoupled)
    p = [theta.copy()]
    m, v = np.zeros(7), np.zeros(7)
    for t in range(1, 4):
        g = rng.standard_normal(7)
        adam_update(theta, g, m, v, t, 1e-2, 0.9, 0.999, 1e-8, 0.1, decoupled)
        ref.step(p, [g])
        close(theta, p[0], np.float64)


def test_float32_adam_runs_in_float32_as_pytorch():
    """A float32 net's Adam step is computed in float32 (PyTorch's arithmetic; float64
    intermediates made it 3.3x slower): bit for bit a NumPy float32 evaluation of the
    same formula, one IEEE operation at a time."""
    rng = np.random.default_rng(3)
    f = np.float32
    theta = rng.standard_normal(257).astype(f)
    m = (rng.standard_normal(257) * 1e-2).astype(f)
    v = (rng.random(257) * 1e-3).astype(f)
    g = rng.standard_normal(257).astype(f)
    t, lr, b1, b2, eps, wd = 7, 1e-3, 0.9, 0.999, 1e-8, 0.01
    step, inv_c2 = f(lr / (1 - b1**t)), f(1 / np.sqrt(1 - b2**t))
    gw = g + f(wd) * theta
    want_m = f(b1) * m + f(1 - b1) * gw
    want_v = f(b2) * v + f(1 - b2) * gw * gw
    want = theta - step * want_m / (np.sqrt(want_v) * inv_c2 + f(eps))
    adam_update(theta, g, m, v, t, lr, b1, b2, eps, wd, False)
    np.testing.assert_array_equal(m, want_m)
    np.testing.assert_array_equal(v, want_v)
    np.testing.assert_array_equal(theta, want)


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_float32_sgd_runs_in_float32_as_pytorch(momentum, nesterov):
    """A float32 net's SGD step is computed in float32, as PyTorch's and JAX's (float64
    intermediates converted every element and halved the vector width): bit for bit a
    NumPy float32 evaluation, one IEEE operation at a time."""
    rng = np.random.default_rng(4)
    f = np.float32
    theta = rng.standard_normal(257).astype(f)
    velocity = (rng.standard_normal(257) * 1e-1).astype(f) if momentum else np.zeros(0, f)
    g = rng.standard_normal(257).astype(f)
    lr, wd = 0.0123, 0.01
    gw = g + f(wd) * theta
    if momentum:
        want_v = f(momentum) * velocity + gw
        d = gw + f(momentum) * want_v if nesterov else want_v
    else:
        d = gw
    want = theta - f(lr) * d
    sgd_update(theta, g, velocity, lr, momentum, nesterov, wd, False)
    np.testing.assert_array_equal(theta, want)
    if momentum:
        np.testing.assert_array_equal(velocity, want_v)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_running_averages_of_a_zero_gradient_reach_zero_not_a_subnormal(dtype):
    """A dead unit's gradient is exactly 0: its momentum and Adam's first moment decay
    geometrically, and without the flush they stop at a subnormal fixed point (``0.9 x``
    rounds back to ``x``), on which every later update is microcoded (2.5x slower)."""
    tiny = np.finfo(dtype).tiny
    theta = np.ones(16, dtype=dtype)
    g = np.zeros(16, dtype=dtype)
    velocity = np.full(16, 1e-3, dtype=dtype)
    m = np.full(16, 1e-3, dtype=dtype)
    v = np.full(16, 1e-6, dtype=dtype)
    for t in range(1, 8001):
        sgd_update(theta, g, velocity, 0.1, 0.9, False, 0.0, False)
        adam_update(theta, g, m, v, t, 1e-3, 0.9, 0.999, 1e-8, 0.0, False)
    for state in (velocity, m):
        assert np.all(state == 0), state[:3]
    # Above the threshold nothing changes: the second moment (0.999^8000 * 1e-6) is normal.
    assert np.all(v > tiny)
    np.testing.assert_allclose(v, 1e-6 * 0.999 ** 8000, rtol=1e-3 if dtype == np.float32 else 1e-9)


@pytest.mark.parametrize("bad", [-1, 9, 99])
def test_unknown_codes_raise(bad):
    """Every dispatch on a code ends in an error, never in another kernel's branch."""
    Z = np.linspace(-1, 1, 6)
    with pytest.raises(ValueError, match="unknown activation code"):
        activate(Z, bad, np.empty_like(Z))
    with pytest.raises(ValueError, match="unknown activation code"):
        activation_backward(np.ones(6), Z, Z, bad)
    Z2, G = Z.reshape(2, 3), np.empty((2, 3))
    with pytest.raises(ValueError, match="unknown loss code"):
        loss_grad(Z2, np.zeros((2, 2)), bad, G)
    with pytest.raises(ValueError, match="classification loss code"):
        labels(bad, Z2, np.empty((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="classification loss code"):
        probabilities(bad, Z2, np.empty((2, 3)))
    for not_regression in (bad, LOSSES["cross_entropy"], LOSSES["binary_cross_entropy"]):
        with pytest.raises(ValueError, match="regression loss code"):
            predictions(not_regression, Z2, np.empty((2, 3)))
    theta = np.ones(6)
    state = np.zeros((2, 6))
    with pytest.raises(ValueError, match="unknown optimizer code"):
        optimizer_step(bad, fd.Adam(lr=0.1).hyper(), 0.1, theta, np.ones(6), state, 0)
    assert (theta == 1.0).all() and (state == 0.0).all()


# ------------------------------------------------------------------ the overflow guard
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_abs_bounds_within_a_factor_two(dtype):
    rng = np.random.default_rng(0)
    for scale in (1e-30, 1.0, 3e5, 1e30):
        a = (scale * rng.standard_normal(1000)).astype(dtype)
        bound = max_abs(a)
        assert np.abs(a).max() <= bound < 2 * np.abs(a).max() * (1 + 1e-6)
    assert max_abs(np.zeros(5, dtype=dtype)) < 1e-30
    for bad in (np.nan, np.inf, -np.inf):
        a = np.ones(7, dtype=dtype)
        a[3] = bad
        assert max_abs(a) == np.inf


@pytest.mark.parametrize("dtype", DTYPES)
def test_all_finite_is_numpys_isfinite_all(dtype):
    info = np.finfo(dtype)
    extremes = [info.max, -info.max, info.tiny, info.smallest_subnormal, -0.0, 0.0]
    assert all_finite(np.array(extremes, dtype=dtype))
    assert all_finite(np.zeros((0, 3), dtype=dtype))
    rng = np.random.default_rng(0)
    a = rng.standard_normal((37, 29)).astype(dtype)
    assert all_finite(a)
    for bad in (np.nan, -np.nan, np.inf, -np.inf):
        for where in ((0, 0), (18, 7), (36, 28)):  # first, middle, last
            b = a.copy()
            b[where] = bad
            assert not all_finite(b), (bad, where)
            assert np.isfinite(b).all() == all_finite(b)


@njit
def _abs_bound(x, like):
    return abs_bound(x, like)


@pytest.mark.parametrize("dtype", DTYPES)
def test_abs_bound_is_max_abs_of_the_largest_element(dtype):
    # Online SGD's guard bounds |grad| from max|a| max|db| (train._fused_sgd_step): the
    # same bound max_abs gives the whole gradient, zero, subnormals and extremes too.
    info = np.finfo(dtype)
    rng = np.random.default_rng(0)
    xs = [0.0, info.tiny, info.tiny / 2, info.smallest_subnormal, 0.75, 1.0, 1.5, info.max]
    xs += list(np.abs(rng.standard_normal(500)) * 10.0 ** rng.integers(-40, 40, 500))
    like = np.zeros(1, dtype=dtype)
    for x in np.array([x for x in xs if abs(x) <= info.max], dtype=dtype):
        assert _abs_bound(x, like) == max_abs(np.array([x, -x / 2], dtype=dtype)), x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_abs_host_is_max_abs(dtype):
    """NumPy's twin of the scan gives its bound: zero, subnormals, the extremes, inf, NaN,
    empty arrays and arrays of many magnitudes; and so the guard's first bounds."""
    info = np.finfo(dtype)
    rng = np.random.default_rng(1)
    arrays = [np.zeros(0, dtype), np.zeros(3, dtype), np.array([-0.0], dtype)]
    for x in (info.smallest_subnormal, info.tiny, info.tiny / 2, 0.75, 1.0, 1.5, info.max,
              np.inf, -np.inf, np.nan):
        arrays.append(np.array([x, -1e-3], dtype=dtype))
    for scale in rng.integers(info.minexp * 0.301 - 7, info.maxexp * 0.301 - 1, 60):  # 10**
        arrays.append((rng.standard_normal(rng.integers(1, 50)) * 10.0 ** scale).astype(dtype))
    arrays.append(rng.standard_normal((4, 5)).astype(dtype))
    for a in arrays:
        assert max_abs_host(a) == max_abs(a.reshape(-1)), a
    theta, state = arrays[-1].reshape(-1), (rng.standard_normal((2, 20)) * 1e3).astype(dtype)
    for rows in (state, state[:1], state[:, :0]):
        guards = np.zeros((2, GUARD_SLOTS))
        refresh_bounds(theta, rows, guards[0])
        refresh_bounds_host(theta, rows, guards[1])
        assert np.array_equal(guards[0], guards[1])


@pytest.mark.parametrize("lr,verdict", [(1.0, SAFE), (1e38, SAFE_REFRESH), (3e38, UNSAFE)])
def test_step_is_safe_checks_exactly_near_the_limit(lr, verdict):
    """Bounds far from float32's limit pass; near it the step is checked exactly, and
    only an update that really leaves the range is refused."""
    theta = np.array([1e37, -1.0], dtype=np.float32)
    grad = np.array([1.0, 0.5], dtype=np.float32)
    state = np.zeros((1, 0), dtype=np.float32)
    guard = np.zeros(GUARD_SLOTS)
    guard[LIMIT] = float(np.finfo(np.float32).max) / 2
    refresh_bounds(theta, state, guard)
    assert step_is_safe(SGD, fd.SGD(lr=lr).hyper(), lr, theta, grad, state, 0, max_abs(grad),
                        guard) == verdict


def test_the_kernels_lr_factor_is_the_formula():
    """``updates.lr_factor`` (the constant schedule inline, the others a call) gives the
    compiled formula's bits for every schedule, and its NaN for an unknown code."""
    from fastdnn.kernels import spec
    from fastdnn.kernels.cpu import formulas as F
    from fastdnn.kernels.cpu.updates import lr_factor

    ours = njit(lambda code, params, t: lr_factor(code, params, t))
    formula = njit(lambda code, params, t: F.lr_factor(code, params, t))
    params = np.random.default_rng(2).uniform(0.1, 50.0, spec.N_SCHEDULE)
    for code in sorted(spec.SCHEDULE_CODES) + [-1, 9]:
        for t in (0, 1, 7, 10**6):
            want = formula(code, params, t)
            got = ours(code, params, t)
            assert np.array(got).tobytes() == np.array(want).tobytes(), (code, t, got, want)


# In a fresh process: which of the epoch kernel's rarely needed callees a fit reaches.
_REACHED = """
import json, numpy as np
import fastdnn as fd
from fastdnn.kernels.cpu import updates
rng = np.random.default_rng(0)
X, y = rng.standard_normal((32, 3)), rng.standard_normal((32, 1))
fd.MLP([3, 8, 1], loss="mse").fit(X, y, epochs=1, batch_size=8, optimizer={optimizer},
                                  schedule={schedule})
print(json.dumps([len(f.signatures) for f in (updates._adam_bounds_are_safe,
                                              updates._scheduled_factor)]))
"""


@pytest.mark.parametrize("optimizer, schedule, reached", [
    ("fd.SGD(lr=0.01, momentum=0.9)", None, [0, 0]),
    ("fd.Adam()", None, [1, 0]),
    ("fd.SGD(lr=0.01)", "fd.CosineDecay()", [0, 1])])
def test_a_fit_compiles_only_the_bounds_and_schedule_it_uses(optimizer, schedule, reached):
    """Adam's half of the guard's bounds and the schedules but the constant one are calls
    an epoch kernel makes only when a fit uses them: a momentum fit with a constant rate
    compiles neither (nor loads them from the cache)."""
    out = run_python(_REACHED.format(optimizer=optimizer, schedule=schedule),
                     FASTDNN_WARMUP="0")
    assert json.loads(out.splitlines()[-1]) == reached
