"""The one table of cases: oracle tests, the pytest-benchmark suite and the asv suite.

Plain data and tiny helpers, NumPy only, so every consumer can import it without
fastdnn (asv imports its benchmark files at commits where fastdnn may not build):

* the tests (``tests/`` is on ``sys.path``): ``from cases import HEADS, HEAD_IDS``;
* ``benchmarks/conftest.py`` and ``benchmarks/asv_bench/common.py`` put this folder on
  ``sys.path``, found from their own file, and read the sizes, batches and data here.

Adding a benchmark size, batch or dtype is one entry below; both suites pick it up.
"""
import numpy as np

# ---------------------------------------------------------------- oracle tests
#: The (loss, number of outputs) pairs the net-level tests cover; k == 1 exercises
#: the 1-D target shape (n,).
HEADS = [
    ("cross_entropy", 3),
    ("mse", 1),
    ("mse", 2),
    ("binary_cross_entropy", 1),
    ("binary_cross_entropy", 3),
    ("poisson", 1),
    ("poisson", 2),
]
HEAD_IDS = [f"{loss}-k{k}" for loss, k in HEADS]

# ---------------------------------------------------------------- benchmarks
#: One dense layer (fan_in, fan_out) per size name; the benchmark net of a size is
#: [fan_in, fan_out, fan_out, N_CLASSES] (ReLU, cross-entropy), so "medium" is the
#: MNIST-sized 784-1024-1024-10.
SIZES = {
    "tiny": (16, 32),
    "small": (64, 128),
    "medium": (784, 1024),
    "large": (4096, 4096),
}
N_CLASSES = 10
BATCHES = (1, 64, 256)
DTYPES = ("float32", "float64")
#: Numba + BLAS threads for the pytest-benchmark grid (the dev machine has 2 cores).
THREADS = (1, 2)

#: What the normal ``pytest`` run keeps of the pytest-benchmark grid (each benchmark
#: runs once there, as a smoke test, in a few seconds); the rest needs ``--bench-full``.
SMOKE_SIZES = ("tiny", "small")
SMOKE_DTYPES = ("float32",)

#: asv measures every commit, so it leaves out "large" (seconds per round).
ASV_SIZES = ("tiny", "small", "medium")
#: asv's peak-memory and GPU benchmarks: the sizes where memory or launches matter.
ASV_FIT_SIZES = ("small", "medium")


def net_sizes(size, k=N_CLASSES):
    """Layer sizes of the benchmark net for ``size``: two hidden layers of fan_out."""
    fan_in, fan_out = SIZES[size]
    return [fan_in, fan_out, fan_out, k]


def epoch_samples(size, batch):
    """Samples in a benchmark epoch: 2048 (512 for "large"), and at most 64 steps for
    the medium and large nets, whose small-batch steps are slow."""
    base = 512 if size == "large" else 2048
    if size in ("medium", "large"):
        base = min(base, 64 * batch)
    return max(base, batch)


def data(n, d, k=N_CLASSES, dtype="float32", seed=0):
    """``X ~ N(0, 1)`` of shape (n, d) in ``dtype``, and int64 labels in 0..k-1."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(dtype)
    y = rng.integers(0, k, n).astype(np.int64)
    return X, y
