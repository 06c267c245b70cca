"""The vectorisable ``exp`` of the CPU softmax (``kernels.cpu.vexp``): within 1 ulp of the
correctly rounded exp over the whole range, IEEE at the edges, and a vector loop without
libm calls."""
import re

import numpy as np
import pytest
from numba import njit

from fastdnn.kernels.cpu.losses import softmax_row
from fastdnn.kernels.cpu.vexp import vexp


@njit
def _exp_all(x, out):
    for i in range(x.shape[0]):
        out[i] = vexp(x[i])


def _points(dtype):
    rng = np.random.default_rng(0)
    wide = 800.0 if dtype == np.float64 else 110.0
    return np.concatenate([rng.uniform(-30, 0, 20_000), rng.uniform(-wide, wide, 20_000),
                           rng.uniform(-1, 1, 5_000),
                           np.linspace(-np.log(2) / 2, np.log(2) / 2, 1001)]).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_within_one_ulp_of_numpy(dtype):
    x = _points(dtype)
    got = np.empty_like(x)
    _exp_all(x, got)
    with np.errstate(over="ignore"):
        # Correctly rounded in both dtypes: NumPy's own float64 exp is not (NumPy 1.24's
        # AVX-512 one is 1.46 ulp off on these points, so vexp differed from it by 2).
        want = np.exp(x.astype(np.longdouble)).astype(dtype)
    normal = np.isfinite(want) & (np.abs(want) >= np.finfo(dtype).tiny)
    ulps = np.abs(got[normal].astype(np.float64) - want[normal]) / np.spacing(want[normal])
    assert ulps.max() <= 1.0
    # Overflow to inf and underflow to 0 where NumPy's do; subnormals within 1 of theirs.
    np.testing.assert_array_equal(got[~np.isfinite(want)], want[~np.isfinite(want)])
    tiny = ~normal & np.isfinite(want)
    assert np.all(np.abs(got[tiny] - want[tiny]) <= np.spacing(dtype(0)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_edges(dtype):
    big = 709.78 if dtype == np.float64 else 88.72
    x = np.array([0.0, -0.0, -np.inf, np.inf, np.nan, big, big + 0.01, -2000.0, 1.0],
                 dtype=dtype)
    got = np.empty_like(x)
    _exp_all(x, got)
    assert got[0] == 1.0 and got[1] == 1.0 and got[2] == 0.0 and got[3] == np.inf
    assert np.isnan(got[4])
    assert np.isfinite(got[5]) and got[6] == np.inf and got[7] == 0.0
    assert abs(got[8] - dtype(np.e)) <= np.spacing(dtype(np.e))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_row(dtype):
    z = np.array([3.0, -1e4, 0.5, 3.0, np.log(2)], dtype=dtype)
    e = np.empty_like(z)
    zmax, total = softmax_row(z, e)
    want = np.exp((z - z.max()).astype(np.float64))
    assert zmax == 3.0
    np.testing.assert_allclose(e, want, rtol=2 * np.finfo(dtype).eps)
    np.testing.assert_allclose(total, want.sum(), rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype, vector", [(np.float64, "double"), (np.float32, "float")])
def test_loop_vectorises(dtype, vector):
    """The point of it: vector arithmetic, no call to libm's exp (a call per element is
    what it replaces)."""
    x = np.zeros(64, dtype=dtype)
    _exp_all(x, np.empty_like(x))
    sig = [s for s in _exp_all.signatures if str(s[0].dtype) == np.dtype(dtype).name][0]
    llvm_ir = _exp_all.inspect_llvm(sig)
    assert re.search(rf"<\d+ x {vector}>", llvm_ir)
    assert not re.search(r"call [^\n]*@(llvm\.)?exp", llvm_ir)


# -- expm1, log1p and the smooth activations built on them -----------------------------
from fastdnn.kernels import spec  # noqa: E402
from fastdnn.kernels.cpu.activations import (  # noqa: E402
    _activate_smooth, _activation_backward_smooth, _sigmoid, _softplus)
from fastdnn.kernels.cpu.vexp import vexpm1, vlog1p_unit  # noqa: E402


@njit
def _expm1_all(x, out):
    for i in range(x.shape[0]):
        out[i] = vexpm1(x[i])


@njit
def _log1p_all(y, out):
    for i in range(y.shape[0]):
        out[i] = vlog1p_unit(y[i])


def _ulps(got, want, dtype):
    """|got - want| in ulps of ``want`` rounded to ``dtype`` (``want`` float64, nonzero)."""
    return np.abs(got.astype(np.float64) - want) / np.spacing(np.abs(want).astype(dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_expm1_and_log1p_within_a_few_ulps(dtype):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-30, 5, 5000), rng.uniform(-1, 1, 5000),
                        rng.uniform(-1e-6, 1e-6, 1000), -np.logspace(-30, 1, 500)]).astype(dtype)
    got = np.empty_like(x)
    _expm1_all(x, got)
    want = np.expm1(x.astype(np.float64))  # NumPy's float64: far below a float32 ulp
    if dtype == np.float64:  # within NumPy's own error of the truth, less its 1 ulp
        assert _ulps(got, want, dtype).max() <= 5
    else:
        assert _ulps(got, want, dtype).max() <= 4
    y = np.concatenate([rng.uniform(0, 1, 5000), np.logspace(-37, 0, 500)]).astype(dtype)
    got = np.empty_like(y)
    _log1p_all(y, got)
    assert _ulps(got, np.log1p(y.astype(np.float64)), dtype).max() <= 4
    edges = np.array([0.0, -0.0, -np.inf, np.nan], dtype=dtype)
    got = np.empty_like(edges)
    _expm1_all(edges, got)
    assert got[0] == 0 and got[1] == 0 and got[2] == -1 and np.isnan(got[3])
    edges = np.array([0.0, 1.0, np.nan], dtype=dtype)
    _log1p_all(edges, got)
    assert got[0] == 0 and abs(got[1] - np.log(2)) <= np.spacing(dtype(np.log(2))) \
        and np.isnan(got[2])


def _smooth_points(dtype):
    rng = np.random.default_rng(1)
    return np.concatenate([rng.uniform(-40, 40, 4000), rng.uniform(-1.5, 1.5, 4000),
                           [0.0, -0.0, np.inf, np.nan, 1e-30, -1e-30, -6.3]]).astype(dtype)


@njit(error_model="numpy")  # as the activation kernels: Python's checks each division
def _smooth_all(z, out):
    for i in range(z.shape[0]):
        out[i] = _softplus(z[i]) + _sigmoid(z[i])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name, fwd, grad", [("sigmoid", 2, None), ("elu", 2, 1),
                                             ("softplus", 4, 2), ("silu", 3, 4),
                                             ("gelu", 3, 4)])
def test_smooth_activations_agree_with_spec(dtype, name, fwd, grad):
    """vexp's exp, expm1 and log1p (and a float32 net's erfc fit) in place of libm's:
    within a few ulps of spec's formulas, NaN and the infinities as there; derivatives
    within a few ulps away from their zeros, a few epsilons of absolute error at them."""
    z = _smooth_points(dtype)
    code = spec.ACTIVATIONS[name]
    A = z.copy()
    _activate_smooth(A, code)
    with np.errstate(invalid="ignore"):
        want = np.array([getattr(spec, name)(float(v)) for v in z.astype(np.float64)])
    exact = ~np.isfinite(want) | (want == 0)
    assert _ulps(A[~exact], want[~exact], dtype).max() <= fwd
    np.testing.assert_array_equal(A[exact], want[exact].astype(dtype))
    if grad is None:  # sigmoid's derivative, a (1 - a), is inline arithmetic
        return
    delta = np.ones_like(z)
    _activation_backward_smooth(delta, A, z, code)
    arg = A if name in ("elu", "softplus") else z
    with np.errstate(invalid="ignore", over="ignore"):
        want = np.array([getattr(spec, name + "_grad")(float(v))
                         for v in arg.astype(np.float64)])
    finite = np.isfinite(want)
    away = finite & (np.abs(want) > 0.1)
    assert _ulps(delta[away], want[away], dtype).max() <= grad
    assert np.abs(delta[finite] - want[finite]).max() <= 4 * np.finfo(dtype).eps


@pytest.mark.parametrize("dtype, vector", [(np.float64, "double"), (np.float32, "float")])
def test_smooth_activations_vectorise(dtype, vector):
    """No libm call of exp, expm1 or log1p per element: the point of them."""
    z = np.zeros(64, dtype=dtype)
    _smooth_all(z, np.empty_like(z))
    sig = [s for s in _smooth_all.signatures if str(s[0].dtype) == np.dtype(dtype).name][0]
    llvm_ir = _smooth_all.inspect_llvm(sig)
    assert re.search(rf"<\d+ x {vector}>", llvm_ir)
    assert not re.search(r"call [^\n]*@(llvm\.)?(exp|expm1|log1p)f?\(", llvm_ir)
