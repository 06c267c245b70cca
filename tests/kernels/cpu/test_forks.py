"""Fits in a child forked after the parent's OpenMP pool started (:mod:`fastdnn.kernels.cpu.forks`).

Numba's GNU OpenMP layer kills such a child at its first parallel region; these children
run every region (column and row blocks of the products, the wide update and scan, the
sharded gradient, ``fit_many``'s nets) and must give the parent's bits.
"""
import multiprocessing
import os
import sys

import numpy as np
import pytest

import fastdnn as fd
from fastdnn import config
from fastdnn.kernels.cpu import forks

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(os, "fork"), reason="needs fork")


def _in_child(fn, timeout=300):
    """``fn()`` run in a child forked from this process, and its result; fails if the
    child dies (Numba's OpenMP layer raises SIGTERM in it) or does not answer."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)

    def run():
        try:
            send.send(("ok", fn()))
        except BaseException as error:  # noqa: BLE001 - reported to the parent
            send.send(("error", repr(error)))

    child = context.Process(target=run)
    child.start()
    send.close()
    try:
        # Polled while the child lives: a process it forked (the compile helper) may
        # hold the pipe open after it died.
        for _ in range(timeout):
            if receive.poll(1) or not child.is_alive():
                break
        else:
            pytest.fail(f"the forked child did not answer in {timeout} s")
        try:
            status, value = receive.recv() if receive.poll(0) else (None, None)
        except EOFError:
            status = None
        if status is None:
            child.join(10)
            pytest.fail(f"the forked child died (exit code {child.exitcode})")
    finally:
        if child.is_alive():
            child.join(10)
        if child.is_alive():
            child.kill()
    assert status == "ok", value
    child.join(10)
    assert child.exitcode == 0
    return value


def _data(rows, features, classes, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, features)).astype(np.float32)
    y = rng.integers(0, classes, rows)
    return X, y


def _fit_wide():
    """A net wide enough for every parallel region of a fit and a prediction: 67M
    multiply-add products in column blocks, the 512 x 512 @ 512 x 10 output in row
    blocks, Adam's update and the overflow scan in parallel chunks (398K parameters)."""
    X, y = _data(512, 256, 10)
    net = fd.MLP([256, 512, 512, 10], activation="relu", seed=3)
    net.fit(X, y, epochs=1, batch_size=256, optimizer=fd.Adam(lr=1e-3), shuffle=True)
    return net.get_weights(), net.predict_proba(X), forks.serial()


def _pool_started():
    _fit_wide()  # starts the pool (blas.prepare) and runs every region here
    if not forks._pool_started_unforkable():
        pytest.skip("Numba's pool is not GNU OpenMP here: a forked child runs it as it is")


def test_forked_child_fits_wide_net_as_parent():
    _pool_started()
    weights, proba, serial = _fit_wide()
    assert not serial
    child_weights, child_proba, child_serial = _in_child(_fit_wide)
    assert child_serial
    for (W, b), (Wc, bc) in zip(weights, child_weights):
        np.testing.assert_array_equal(W, Wc)
        np.testing.assert_array_equal(b, bc)
    np.testing.assert_array_equal(proba, child_proba)


def test_grandchild_fits_too():
    # A grandchild is not killed by Numba (its parent is not the pool's), but the pool's
    # threads are as gone there: it must run serially as well.
    _pool_started()
    weights = _fit_wide()[0]
    child_weights = _in_child(lambda: _in_child(_fit_wide)[0])
    for (W, b), (Wc, bc) in zip(weights, child_weights):
        np.testing.assert_array_equal(W, Wc)
        np.testing.assert_array_equal(b, bc)


def test_forked_child_runs_fit_many_and_shards(monkeypatch):
    _pool_started()
    # Four row shards of 64 rows in Numba's pool (the sharded epoch kernel).
    monkeypatch.setattr(config, "SHARDS", 4)
    X, y = _data(512, 64, 10, seed=1)

    def fits():
        sharded = fd.MLP([64, 128, 128, 10], seed=5)
        sharded.fit(X, y, epochs=2, batch_size=256, optimizer="adam")
        nets = [fd.MLP([64, 32, 10], seed=s) for s in range(3)]
        fd.fit_many(nets, X, y, epochs=2, batch_size=32, optimizer="sgd")
        return [sharded.get_weights()] + [net.get_weights() for net in nets]

    for weights, child_weights in zip(fits(), _in_child(fits)):
        for (W, b), (Wc, bc) in zip(weights, child_weights):
            np.testing.assert_array_equal(W, Wc)
            np.testing.assert_array_equal(b, bc)
