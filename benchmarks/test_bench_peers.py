"""Smoke tests of benchmarks/peers.py: its workers do the same work, its report renders.

In-process and on the quick sizes (no subprocesses), so they take about a second. The
loss check is the point: if fastdnn and the plain NumPy loop, from the same weights and
data, do not end at the same loss, the peer table would compare different work.
"""
import numpy as np
import pytest

import peers
from bench_grid import full


@pytest.mark.parametrize("key", ["a", "c"])
def test_fastdnn_and_numpy_follow_the_same_path(key):
    ref = peers.run_worker("numpy", key, quick=True)
    got = peers.run_worker("fastdnn", key, quick=True)
    if "skipped" in got:
        pytest.skip(got["skipped"])
    assert got["loss"] < got["loss_init"]
    np.testing.assert_allclose(got["loss"], ref["loss"], rtol=1e-4)


def test_sklearn_lr_scaling_matches_torch_mse():
    """sklearn's mse gradient is k/2 times torch's; the worker rescales lr to match."""
    pytest.importorskip("sklearn")
    ref = peers.run_worker("numpy", "c", quick=True)
    got = peers.run_worker("sklearn", "c", quick=True)
    np.testing.assert_allclose(got["loss"], ref["loss"], rtol=1e-4)


def fake_summary():
    wls = [peers.WORKLOADS["c"], peers.WORKLOADS["e"]]
    systems = ["fastdnn", "numpy"]
    results = {}
    for s in systems:
        for wl in wls:
            results[(s, wl.key)] = [dict(
                epoch_s=[0.01 if s == "fastdnn" else 0.02], n=wl.n, warmup_s=0.3,
                loss=0.5, loss_init=1.0, version="0", epochs_timed=1)]
    summary = peers.summarize(results, wls, systems, [{"256x1024@1024x1024": 100.0}])
    return summary, wls, systems


def test_report_renders(monkeypatch):
    monkeypatch.setattr(peers, "_versions", lambda: "v")  # importing torch/jax takes seconds
    summary, wls, systems = fake_summary()
    assert summary["cells"][("fastdnn", "c")]["sps"] == pytest.approx(wls[0].n / 0.01)

    class Args:
        quick = False

    md = peers.render_markdown(summary, wls, systems, {"jax": "ImportError: x"}, {},
                               Args, rounds=1)
    assert "| (c) " in md and "2.00x" in md and "jax skipped" in md


@full  # importing matplotlib alone takes a second or two
def test_plot(tmp_path):
    pytest.importorskip("matplotlib")
    summary, wls, systems = fake_summary()
    peers.plot(summary, wls, systems, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000
