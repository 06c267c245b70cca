"""Compile time and time to the first epoch, each in a fresh process.

``track_compile_seconds``: ``NUMBA_CACHE_DIR`` is a new empty folder, so every kernel
compiles. ``track_first_epoch_warm_cache_seconds``: the same script again with that
folder filled. Both return the seconds from ``import fastdnn`` to the end of a
one-epoch ``fit`` on a tiny net (interpreter start not included).
"""
import json
import os
import subprocess
import sys
import tempfile

from .common import fastdnn

SCRIPT = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
import fastdnn as fd
rng = np.random.default_rng(0)
X = rng.standard_normal((256, 16)).astype(np.float32)
y = (X[:, 0] > 0).astype(np.int64)
net = fd.MLP([16, 32, 2], activation="relu", loss="cross_entropy", dtype="float32", seed=0)
net.fit(X, y, epochs=1, batch_size=64, optimizer="sgd")
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def _run(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


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
