"""Device selection: whether CUDA is usable, and what ``device="auto"`` picks."""

from .errors import DeviceError

#: ``device="auto"`` moves a net to the GPU from this many parameters on: below it,
#: kernel-launch latency outweighs what the GPU gains on the arithmetic.  Measured
#: (docs/gpu.md): a CUDA step costs about 0.7 ms however small the net (15 launches
#: for 4 layers), so on an H100 a 64-128-128-10 net (26K parameters) trains at 195K
#: samples/s against 478K on 2 CPU cores, while 784-1024-1024-10 (1.9M) trains at 303K
#: against 5K.
AUTO_MIN_PARAMS = 250_000


_INSTALL = ("pip install 'fastdnn[cuda]' (plus 'numba-cuda[cu12]' or 'numba-cuda[cu13]' for the "
            "CUDA libraries matching your driver), or use device='cpu'")


def cuda_status():
    """``None`` when CUDA is usable, else a sentence saying why not and how to fix it."""
    try:
        import numba_cuda  # noqa: F401
    except ImportError:
        return "device='cuda' needs the numba-cuda package, which is not installed: " + _INSTALL
    try:
        from numba import cuda
    except Exception as exc:  # installed, but not for this numba (an AttributeError or an
        # ImportError of a numba internal), or without its CUDA bindings: said as such,
        # where it was "not installed", and device="auto" raised the AttributeError
        first = str(exc).splitlines()[0] if str(exc) else ""
        return (f"device='cuda': numba-cuda is installed but does not import "
                f"({type(exc).__name__}: {first}); a numba-cuda older than the installed "
                f"numba fails so (pip install -U numba-cuda), or its CUDA bindings are "
                f"missing: " + _INSTALL)
    try:
        if not cuda.is_available():
            return ("device='cuda' found no usable CUDA GPU (numba.cuda.is_available() is False: "
                    "no NVIDIA GPU or driver is visible); run where one is, or use device='cpu' "
                    "(device='auto' chooses for you)")
    except Exception as exc:  # driver and toolkit errors surface here
        return f"device='cuda': CUDA is installed but not usable ({exc}); " + _INSTALL
    return _compiler_status(cuda)


def _compiler_status(cuda):
    """``None`` when CUDA's runtime compiler (NVRTC), which each kernel's first launch
    needs, loads for this GPU; else why not.  ``is_available`` asks the driver only: a
    toolkit without libnvrtc made the first fit fail deep inside numba-cuda."""
    from numba.core.config import ENABLE_CUDASIM
    if ENABLE_CUDASIM:  # the simulator compiles nothing
        return None
    try:
        from numba.cuda.cudadrv import nvrtc
    except ImportError:  # another numba-cuda: its first launch will say
        return None
    check = getattr(nvrtc, "get_arch_option", None)
    if check is None:
        return None
    try:
        check(*cuda.get_current_device().compute_capability)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return (f"device='cuda' found a GPU, but not CUDA's runtime compiler (NVRTC), which "
                f"its kernels need ({first}); " + _INSTALL)
    return None


def require_cuda():
    """Raise :class:`DeviceError` unless CUDA is usable."""
    reason = cuda_status()
    if reason is not None:
        raise DeviceError(reason)


def auto_device(sizes):
    """'cuda' for a net big enough to gain on a usable GPU, else 'cpu'."""
    n_params = sum(k * n + n for k, n in zip(sizes[:-1], sizes[1:]))
    from numba.core.config import ENABLE_CUDASIM  # as Numba reads it ("01" is on)
    if ENABLE_CUDASIM:
        return "cpu"  # the simulator is for tests: it is a "GPU" that gains nothing
    if n_params >= AUTO_MIN_PARAMS and cuda_status() is None:
        return "cuda"
    return "cpu"
