"""Divergence without the per-epoch weight copy: the training loop itself stops before
an update with a non-finite loss or gradient, so the weights stay finite."""
import numpy as np
import pytest

import fastdnn as fd
from fastdnn import config


@pytest.mark.parametrize("snapshot_bytes", [0, config.SNAPSHOT_BYTES])
def test_diverging_fit_keeps_finite_weights(monkeypatch, snapshot_bytes):
    monkeypatch.setattr(config, "SNAPSHOT_BYTES", snapshot_bytes)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4))
    y = 1e6 * rng.standard_normal(64)
    net = fd.MLP([4, 16, 1], loss="mse", seed=0)
    with pytest.raises(fd.TrainingDivergedError, match="diverged") as info:
        net.fit(X, y, epochs=50, batch_size=8, optimizer=fd.SGD(lr=10.0))
    assert all(np.isfinite(W).all() and np.isfinite(b).all() for W, b in net.get_weights())
    assert info.value.history is not None


def test_plain_sgd_keeps_no_velocity():
    opt = fd.SGD(lr=0.1)
    assert opt.bind(1000, np.dtype(np.float32)).size == 0
    assert fd.SGD(lr=0.1, momentum=0.9).bind(1000, np.dtype(np.float32)).shape == (1, 1000)
