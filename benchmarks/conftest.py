"""pytest-benchmark configuration: the case table, ``--bench-full`` and thread fixtures.

The normal ``pytest`` run collects this folder too (pyproject: ``testpaths``) with
``--benchmark-disable``, so every benchmark runs once as a smoke test. Only the smoke
grid of the case table runs then (``cases.SMOKE_SIZES``, ``cases.SMOKE_DTYPES``);
items marked ``bench_full`` (the other sizes and dtypes, the crossover sweep, compile
time) are deselected unless ``--bench-full`` or ``FASTDNN_BENCH_FULL=1``.
"""
import os
import sys
from pathlib import Path

import pytest

# tests/ holds the case table (cases.py) and the NumPy oracle (naive.py); found from
# this file so that ``pytest benchmarks`` works from any folder.
HERE = Path(__file__).resolve().parent
for folder in (HERE.parent / "tests", HERE):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from bench_grid import FULL_ENV, full_enabled, limit_threads  # noqa: E402


def pytest_addoption(parser):
    parser.addoption(
        "--bench-full",
        action="store_true",
        default=False,
        help="benchmarks: also run medium/large sizes, float64 and compile time "
        f"(same as {FULL_ENV}=1)",
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers", f"bench_full: benchmark case run only with --bench-full / {FULL_ENV}=1"
    )
    if config.getoption("--bench-full", default=False):
        os.environ[FULL_ENV] = "1"


def pytest_collection_modifyitems(config, items):
    if full_enabled():
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("bench_full") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def threads(request):
    """Thread count for the test (parametrize ``threads``), applied to Numba and BLAS."""
    n = request.param
    with limit_threads(n):
        yield n
