"""GPU tests: run under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, set before numba
is imported, so in a pytest process of their own) or on a real GPU.

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/kernels/cuda -q

Without either, the ``test_cuda_*`` modules are not collected (the main ``pytest`` run
skips them cleanly and never imports numba.cuda); ``test_devices.py`` runs everywhere.

Every test runs with the launch tunables lowered (tile 4, register tile 2, 8 threads
per block, at most 3 blocks per grid dimension), so the odd sizes 1, 7, 33 span
several tiles, blocks and grid-stride rounds.
"""
import os
import shutil

import pytest

from fastdnn import config


SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def _real_gpu():
    if not (os.path.exists("/dev/nvidiactl") or shutil.which("nvidia-smi")):
        return False  # no driver: do not even import numba.cuda
    try:
        from numba import cuda
        return bool(cuda.is_available())
    except Exception:
        return False


CUDA = SIMULATOR or _real_gpu()
if not CUDA:
    collect_ignore_glob = ["test_cuda_*.py"]

#: Small launch shapes (see the module docstring).
SMALL = dict(CUDA_TILE=4, CUDA_MICRO=2, CUDA_THREADS_PER_BLOCK=8, CUDA_MAX_BLOCKS=3)
#: The shipped values, for the tests that run with them on a real GPU.
SHIPPED = {name: getattr(config, name) for name in SMALL}


@pytest.fixture(autouse=True)
def small_launches(monkeypatch):
    """Lower the launch tunables for every test (read at launch time, so this suffices)."""
    if CUDA:
        for name, value in SMALL.items():
            monkeypatch.setattr(config, name, value)
