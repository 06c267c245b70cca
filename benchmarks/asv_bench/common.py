"""Helpers shared by the asv benchmarks: importing fastdnn, nets and data.

asv imports every module here in each environment and at each commit it measures, so
nothing at module level may need fastdnn: a commit without ``fastdnn.MLP`` (or a
machine without a GPU) must make ``setup`` raise ``NotImplementedError``, which asv
reports as "n/a", not as a failure.
"""
import numpy as np

#: One layer (fan_in, fan_out) per size; nets are [fan_in, fan_out, fan_out, 10].
SIZES = {"tiny": (16, 32), "small": (64, 128), "medium": (784, 1024)}


def fastdnn():
    """The fastdnn package, or ``NotImplementedError`` (asv: skip) if it has no MLP."""
    try:
        import fastdnn as fd
    except ImportError as exc:
        raise NotImplementedError(f"fastdnn not importable: {exc}") from exc
    if not hasattr(fd, "MLP"):
        raise NotImplementedError("fastdnn.MLP not available at this commit")
    return fd


def net_sizes(size, k=10):
    fan_in, fan_out = SIZES[size]
    return [fan_in, fan_out, fan_out, k]


def make_net(size, dtype="float32", k=10, device="cpu", **kw):
    fd = fastdnn()
    return fd.MLP(net_sizes(size, k), activation="relu", loss="cross_entropy",
                  dtype=dtype, seed=0, device=device, **kw)


def data(n, d, k=10, dtype="float32", seed=0):
    """X ~ N(0, 1) (n, d) and int64 labels 0..k-1."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(dtype), rng.integers(0, k, n).astype(np.int64)


def epoch_samples(size, batch):
    """~2048 samples per epoch, at most 64 steps for the medium net."""
    n = 2048 if size != "medium" else min(2048, 64 * batch)
    return max(n, batch)


def sgd(lr=0.01):
    return fastdnn().SGD(lr=lr, momentum=0.0)
