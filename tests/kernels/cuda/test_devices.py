"""Device selection and import discipline, each in a fresh interpreter: these run in
every pytest process (with or without the simulator or a GPU)."""
import textwrap

import pytest

from support import run_python as run

NO_CUDA = """
    import fastdnn as fd
    try:
        fd.MLP([2, 3, 2], device="cuda")
    except fd.DeviceError as exc:
        assert isinstance(exc, RuntimeError)
        print(exc)
    else:
        raise SystemExit("no DeviceError")
"""


def test_cuda_without_a_gpu_raises_device_error():
    # CUDA_VISIBLE_DEVICES="" hides a real GPU too, so this runs on any machine.
    message = run(NO_CUDA, CUDA_VISIBLE_DEVICES="")
    assert "no usable CUDA GPU" in message and "device='cpu'" in message


def test_cuda_without_numba_cuda_raises_device_error():
    block = """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "numba_cuda":
                    raise ImportError("numba-cuda hidden by the test")
        sys.meta_path.insert(0, Block())
    """
    message = run(textwrap.dedent(block) + textwrap.dedent(NO_CUDA))
    assert "numba-cuda" in message and "pip install 'fastdnn[cuda]'" in message


def test_a_numba_cuda_that_does_not_import_is_a_device_error():
    """numba-cuda 0.20-0.30.3 beside numba 0.68 raised an AttributeError (or an ImportError
    of a numba internal) at ``from numba import cuda``: ``device="cuda"`` said "not
    installed" or raised it, and ``device="auto"`` raised it for a big net."""
    breaks = """
        import sys
        class Break:
            def find_spec(self, name, path=None, target=None):
                if name == "numba.cuda":
                    raise AttributeError("module 'numba.cuda.types' has no attribute 'X'")
        sys.meta_path.insert(0, Break())
    """
    pytest.importorskip("numba_cuda")
    message = run(textwrap.dedent(breaks) + textwrap.dedent(NO_CUDA), NUMBA_ENABLE_CUDASIM="0")
    assert "numba-cuda is installed but does not import (AttributeError" in message
    auto = run(textwrap.dedent(breaks) + "import fastdnn as fd\n"
               "print(fd.MLP([784, 1024, 1024, 10], device='auto').device)\n",
               NUMBA_ENABLE_CUDASIM="0")
    assert auto.strip() == "cpu"


def test_a_gpu_without_cudas_compiler_raises_device_error():
    """``is_available`` asks the driver only: a toolkit without libnvrtc passed, and the
    first fit failed deep inside numba-cuda.  (A GPU is stood in for: the driver says
    yes, the device has a compute capability, NVRTC does not load.)"""
    stub = """
        from numba import cuda
        from numba.cuda.cudadrv import nvrtc
        cuda.is_available = lambda: True
        class Device:
            compute_capability = (8, 6)
        cuda.get_current_device = lambda: Device()
        def missing(major, minor, arch=""):
            raise RuntimeError("libnvrtc.so.13 or libnvrtc.so.12 not found")
        nvrtc.get_arch_option = missing
        from fastdnn import devices
        print(devices.cuda_status())
        print(devices.auto_device([784, 1024, 1024, 10]))
    """
    status, auto = run(stub, NUMBA_ENABLE_CUDASIM="0").strip().splitlines()
    assert "not CUDA's runtime compiler (NVRTC)" in status and "libnvrtc" in status
    assert auto == "cpu"


def test_cpu_path_never_imports_cuda_machinery():
    out = run("""
        import sys
        import numpy as np
        import fastdnn as fd
        X = np.random.default_rng(0).normal(size=(20, 3))
        y = (X[:, 0] > 0).astype(int)
        for device in ("cpu", "auto"):
            net = fd.MLP([3, 8, 2], device=device, seed=0)
            net.fit(X, y, epochs=2, batch_size=8)
            net.predict(X)
            assert net.device == "cpu"
        loaded = [m for m in ("fastdnn.kernels.cuda.backend", "fastdnn.kernels.cuda.dense", "numba_cuda",
                              "numba.cuda") if m in sys.modules]
        print(loaded)
    """)
    assert out.strip() == "[]"


@pytest.mark.parametrize("on", ["1", "01", "2"])
def test_auto_picks_cpu_under_the_simulator(on):
    """Any value Numba reads as on ("01" took a 784-1024-1024-10 net to the simulator,
    at Python's speed)."""
    out = run("""
        import fastdnn as fd
        print(fd.MLP([1000, 1000, 10], device="auto").device)
    """, NUMBA_ENABLE_CUDASIM=on)
    assert out.strip() == "cpu"
