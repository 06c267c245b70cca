"""The vectorisable ``exp`` of the CPU softmax (``kernels.cpu.vexp``): within 1 ulp of
NumPy's over the whole range, IEEE at the edges, and a vector loop without libm calls."""
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
        want = np.exp(x.astype(np.float64)).astype(dtype)  # float32: correctly rounded
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
