"""A Numba disk cache that cannot be written (:func:`fastdnn.kernels.cpu.pipeline.cache_may_fail`)."""
import errno
import importlib.util
import os
import warnings

from numba.core import caching

from fastdnn.kernels.cpu import pipeline

SOURCE = """
from fastdnn.kernels.cpu.pipeline import njit


@njit(cache=True)
def twice(x):
    return 2 * x


@njit(cache=True)
def thrice(x):
    return 3 * x
"""


def test_a_full_cache_folder_warns_once_and_the_kernels_run(tmp_path, monkeypatch):
    """Numba checks its cache folder with an empty file, then raised the error of each
    later write from the compile: a cache on a full disk (or over its quota) failed
    every first fit with "[Errno 28] No space left on device", naming no file."""
    source = tmp_path / "fastdnn_cache_probe.py"
    source.write_text(SOURCE)
    spec = importlib.util.spec_from_file_location("fastdnn_cache_probe", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def disk_full(self, key, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(caching.IndexDataCacheFile, "save", disk_full)
    monkeypatch.setattr(pipeline, "_cache_failed", [], raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert module.twice(21) == 42
        assert module.thrice(2) == 6
    said = [w for w in caught if "cannot write the compiled kernels" in str(w.message)]
    assert len(said) == 1 and "No space left on device" in str(said[0].message)


def test_every_cached_dispatcher_may_fail_to_save():
    # numba.njit's own in backend and regions were left raising (fit_many, linear_pieces).
    import importlib
    import pkgutil

    from numba.core.dispatcher import Dispatcher

    import fastdnn
    unwrapped = []
    for info in pkgutil.walk_packages(fastdnn.__path__, "fastdnn."):
        if ".cuda" in info.name or info.name.endswith("__main__"):
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an optional dependency (mpi4py, onnx, matplotlib)
            continue
        for name, value in vars(module).items():
            if isinstance(value, Dispatcher) and value.__module__ == info.name:
                cache = value._cache
                if type(cache).__name__ == "NullCache":
                    continue
                if not getattr(cache.save_overload, "may_fail", False):
                    unwrapped.append(f"{info.name}.{name}")
    assert not unwrapped, unwrapped
