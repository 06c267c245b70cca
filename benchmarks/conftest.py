"""pytest-benchmark configuration: the ``--bench-full`` switch and thread fixtures.

The normal ``pytest`` run collects this folder too (pyproject: ``testpaths``) with
``--benchmark-disable``, so every benchmark runs once as a smoke test. Only the small
grid runs then; items marked ``bench_full`` (medium/large sizes, float64, compile
time) are deselected unless ``--bench-full`` or ``FASTDNN_BENCH_FULL=1``.
"""
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from bench_cases import FULL_ENV, full_enabled, limit_threads  # noqa: E402


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


@pytest.fixture(scope="session")
def fd():
    """The fastdnn package, or skip while its model is not importable."""
    try:
        import fastdnn
    except ImportError as exc:  # pragma: no cover
        pytest.skip(f"fastdnn not importable: {exc}")
    if not hasattr(fastdnn, "MLP"):
        pytest.skip("fastdnn.MLP not available yet")
    return fastdnn
