"""Whole-net benchmarks through the public API: forward, gradients, one SGD step, one epoch.

The net for a size is ``[fan_in, fan_out, fan_out, 10]`` (ReLU, cross-entropy), so
"medium" is the MNIST-sized 784-1024-1024-10 and "large" 4096-4096-4096-10. Timings
include the public API's own overhead (validation, buffer set-up in ``fit``): that is
what a user pays. Threads go through ``MLP(n_threads=...)``.
"""
import numpy as np
import pytest

from bench_cases import (
    THREADS,
    batch_param,
    data,
    dtype_param,
    epoch_samples,
    net_sizes,
    size_param,
)

n_threads_param = pytest.mark.parametrize("n_threads", THREADS, ids=lambda t: f"t{t}")


def make_net(fd, size, dtype, n_threads):
    return fd.MLP(net_sizes(size), activation="relu", loss="cross_entropy", dtype=dtype,
                  seed=0, n_threads=n_threads)


def sgd(fd):
    return fd.SGD(lr=0.01, momentum=0.0)


@n_threads_param
@dtype_param
@batch_param
@size_param
def test_forward(benchmark, fd, size, batch, dtype, n_threads):
    net = make_net(fd, size, dtype, n_threads)
    X, _ = data(batch, net.sizes[0], 10, dtype)
    net.forward(X)  # compile / cache load outside the timing
    benchmark.group = f"net forward {size} batch={batch} {dtype} threads={n_threads}"
    out = benchmark(net.forward, X)
    assert out.shape == (batch, 10)


@n_threads_param
@dtype_param
@batch_param
@size_param
def test_gradients(benchmark, fd, size, batch, dtype, n_threads):
    """Forward + loss + layerwise backward of one batch (``net.gradients``)."""
    net = make_net(fd, size, dtype, n_threads)
    X, y = data(batch, net.sizes[0], 10, dtype)
    net.gradients(X, y)
    benchmark.group = f"net gradients {size} batch={batch} {dtype} threads={n_threads}"
    grads = benchmark(net.gradients, X, y)
    assert len(grads) == 3 and grads[0][0].shape == (net.sizes[0], net.sizes[1])


@n_threads_param
@dtype_param
@batch_param
@size_param
def test_train_step(benchmark, fd, size, batch, dtype, n_threads):
    """One SGD step: ``fit`` on exactly one batch (so it includes fit's set-up)."""
    net = make_net(fd, size, dtype, n_threads)
    X, y = data(batch, net.sizes[0], 10, dtype)
    opt = sgd(fd)

    def step():
        return net.fit(X, y, epochs=1, batch_size=batch, optimizer=opt, shuffle=False)

    step()
    benchmark.group = f"net step {size} batch={batch} {dtype} threads={n_threads}"
    benchmark(step)


@n_threads_param
@dtype_param
@batch_param
@size_param
def test_epoch(benchmark, fd, size, batch, dtype, n_threads):
    """One epoch of plain SGD, in order, on ``epoch_samples`` samples."""
    net = make_net(fd, size, dtype, n_threads)
    n = epoch_samples(size, batch)
    X, y = data(n, net.sizes[0], 10, dtype)
    opt = sgd(fd)

    def epoch():
        return net.fit(X, y, epochs=1, batch_size=batch, optimizer=opt, shuffle=False)

    epoch()
    benchmark.group = f"net epoch {size} batch={batch} {dtype} threads={n_threads}"
    benchmark.extra_info["samples"] = n
    hist = benchmark(epoch)
    assert len(hist) == 1 and np.isfinite(hist.loss[0])
