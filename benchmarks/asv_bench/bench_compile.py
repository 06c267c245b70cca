"""Compile time and time to the first epoch, each in a fresh process.

Both run ``benchmarks/first_epoch.py`` (shared with ``test_bench_compile.py``) with
plain SGD. ``track_compile_seconds``: ``NUMBA_CACHE_DIR`` is a new empty folder, so
every kernel compiles. ``track_first_epoch_warm_cache_seconds``: the same script again
with that folder filled. Both return the seconds from ``import fastdnn`` (numpy's import
included) to the end of a one-epoch ``fit`` on a tiny net (interpreter start not
included).  ``track_online_compile_seconds``: the first kernel, for batches of one row
(online SGD, the course's), compiled on an empty folder.
"""
import tempfile

from .common import fastdnn, first_epoch


def _run(cache_dir, batch_size=64):
    split = first_epoch.run(cache_dir, "sgd", batch_size)
    return split["import_s"] + split["first_epoch_s"]


class Compile:
    timeout = 600
    number = 1
    repeat = 1

    def setup(self):
        fastdnn()
        self.tmp = tempfile.TemporaryDirectory(prefix="fastdnn-asv-numba-")

    def teardown(self):
        self.tmp.cleanup()

    def track_compile_seconds(self):
        return _run(self.tmp.name)

    track_compile_seconds.unit = "seconds"

    def track_first_epoch_warm_cache_seconds(self):
        _run(self.tmp.name)  # fill the cache
        return _run(self.tmp.name)

    track_first_epoch_warm_cache_seconds.unit = "seconds"

    def track_online_compile_seconds(self):
        return _run(self.tmp.name, batch_size=1)

    track_online_compile_seconds.unit = "seconds"
