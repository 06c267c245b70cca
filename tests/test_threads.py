"""The thread policy: n_threads sets SciPy's BLAS pool (used by np.dot in nopython mode)
for a call and restores it; results do not depend on it."""
import numpy as np
import pytest

import fastdnn as fd
from fastdnn import config
from fastdnn.threads import check_n_threads, limit_threads, scipy_blas


def test_limit_threads_sets_and_restores():
    blas = scipy_blas()
    if blas is None:
        pytest.skip("SciPy is not linked against its own OpenBLAS here")
    get, _ = blas
    before = get()
    with limit_threads(1):
        assert get() == 1
    assert get() == before
    with pytest.raises(RuntimeError):
        with limit_threads(1):
            raise RuntimeError("boom")
    assert get() == before


def test_limit_threads_none_is_a_no_op():
    blas = scipy_blas()
    before = blas[0]() if blas else None
    with limit_threads(None):
        pass
    assert (blas[0]() if blas else None) == before


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_bad_n_threads(bad):
    with pytest.raises((ValueError, TypeError), match="n_threads"):
        check_n_threads(bad)


@pytest.mark.parametrize("gemm_min", [0, config.SMALL_GEMM_MACS])
def test_fit_identical_with_one_or_two_threads(monkeypatch, gemm_min):
    # gemm_min=0 sends every product through BLAS, where threads could split the work.
    monkeypatch.setattr(config, "SMALL_GEMM_MACS", gemm_min)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 40)).astype(np.float32)
    y = rng.integers(0, 5, 300)
    weights = []
    for n_threads in (1, 2):
        net = fd.MLP([40, 96, 96, 5], seed=3, n_threads=n_threads)
        net.fit(X, y, epochs=2, batch_size=100, optimizer=fd.SGD(lr=0.05, momentum=0.9))
        weights.append(net.get_weights())
    for (W1, b1), (W2, b2) in zip(*weights):
        assert np.array_equal(W1, W2) and np.array_equal(b1, b2)
