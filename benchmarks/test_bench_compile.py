"""What users feel before the first epoch ends: JIT compile time and cache loading.

Both run ``first_epoch.py`` in a fresh Python process (it imports fastdnn, fits a tiny
net for one epoch with the default optimizer, then predicts):

- ``test_compile_cold``: ``NUMBA_CACHE_DIR`` points at an empty temporary folder, so
  every kernel compiles. One round (``benchmark.pedantic(rounds=1)``): it takes seconds.
- ``test_first_epoch_warm_cache``: the same folder after one run, so kernels load from
  numba's on-disk cache.
- ``test_compile_cold_online``: as ``test_compile_cold`` with batches of one row (online
  SGD), whose epoch kernel is its own.

The measured time is the whole process (interpreter start included); the script's own
split (import, first epoch, first predict) is stored in ``extra_info``. Full only.
"""
import first_epoch
from bench_grid import full

pytestmark = full


def cache_files(folder):
    """Every file of a numba cache folder with its size and modification time."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def test_compile_cold(benchmark, tmp_path_factory):
    _cold(benchmark, tmp_path_factory, 64)


def test_compile_cold_online(benchmark, tmp_path_factory):
    _cold(benchmark, tmp_path_factory, 1)


def _cold(benchmark, tmp_path_factory, batch_size):
    made = []

    def fresh_cache():
        d = tmp_path_factory.mktemp("numba_cache_cold")
        made.append(d)
        return (d, "adam", batch_size), {}

    benchmark.group = "compile"
    result = benchmark.pedantic(first_epoch.run, setup=fresh_cache, rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert any(made[-1].rglob("*.nbi")), "numba wrote no cache index: cache=True missing?"


def test_first_epoch_warm_cache(benchmark, tmp_path_factory):
    cache = tmp_path_factory.mktemp("numba_cache_warm")
    first_epoch.run(cache)  # populate
    filled = cache_files(cache)
    benchmark.group = "compile"
    result = benchmark.pedantic(first_epoch.run, args=(cache,), rounds=3, iterations=1)
    benchmark.extra_info.update(result)
    # A kernel that misses the cache compiles again and writes it anew: the warm runs
    # would then time compilation, not loading.
    assert filled and cache_files(cache) == filled, "warm runs rewrote numba's cache"
