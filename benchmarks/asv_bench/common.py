"""Helpers shared by the asv benchmarks: the case table, importing fastdnn, nets.

Sizes, nets and data come from the one case table, ``tests/cases.py`` (NumPy only),
found from this file: asv runs the benchmark files of the working tree against every
commit it measures. Nothing at module level may need fastdnn: a commit where it does
not import (or a machine without a GPU) must make ``setup`` raise
``NotImplementedError``, which asv reports as "n/a", not as a failure.
"""
import sys
from pathlib import Path

# tests/ for the case table, benchmarks/ for first_epoch.py (the compile-time script
# the pytest suite runs too).
_BENCHMARKS = Path(__file__).resolve().parents[1]
for _folder in (str(_BENCHMARKS.parent / "tests"), str(_BENCHMARKS)):
    if _folder not in sys.path:
        sys.path.insert(0, _folder)

import cases  # noqa: E402  (bench modules read the table as ``common.cases``)
import first_epoch  # noqa: E402


def fastdnn():
    """The fastdnn package, or ``NotImplementedError`` (asv: n/a) if it does not import."""
    try:
        import fastdnn as fd
    except ImportError as exc:
        raise NotImplementedError(f"fastdnn not importable: {exc}") from exc
    return fd


def make_net(size, dtype="float32", device="cpu", **kw):
    """The benchmark net of ``size`` (ReLU, cross-entropy, seed 0)."""
    return fastdnn().MLP(cases.net_sizes(size), activation="relu", loss="cross_entropy",
                         dtype=dtype, seed=0, device=device, **kw)


def sgd(lr=0.01):
    return fastdnn().SGD(lr=lr, momentum=0.0)
