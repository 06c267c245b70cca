"""Device selection: whether CUDA is usable, and what ``device="auto"`` picks."""
from .errors import DeviceError

#: ``device="auto"`` moves a net to the GPU from this many parameters on: below it,
#: kernel-launch latency outweighs what the GPU gains on the arithmetic.
AUTO_MIN_PARAMS = 250_000


def cuda_status():
    """``None`` when CUDA is usable, else a sentence saying why not and how to fix it."""
    try:
        from numba import cuda
    except ImportError:  # pragma: no cover - numba always has the cuda module
        return "numba is installed without CUDA support"
    try:
        import numba_cuda  # noqa: F401
    except ImportError:
        return ("the CUDA backend needs the numba-cuda package: "
                "pip install 'fastdnn[cuda]' (plus numba-cuda[cu12] or [cu13] for the CUDA runtime)")
    try:
        if not cuda.is_available():
            return "no CUDA GPU is available (cuda.is_available() is False); use device='cpu'"
    except Exception as exc:  # driver errors surface here
        return f"CUDA is not usable: {exc}"
    return None


def require_cuda():
    """Raise :class:`DeviceError` unless CUDA is usable."""
    reason = cuda_status()
    if reason is not None:
        raise DeviceError(reason)


def auto_device(sizes):
    """'cuda' for a net big enough to gain on a usable GPU, else 'cpu'."""
    n_params = sum(k * n + n for k, n in zip(sizes[:-1], sizes[1:]))
    if n_params >= AUTO_MIN_PARAMS and cuda_status() is None:
        return "cuda"
    return "cpu"
