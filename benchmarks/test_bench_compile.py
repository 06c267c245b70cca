"""What users feel before the first epoch ends: JIT compile time and cache loading.

Both run a fresh Python process (``python -c SCRIPT``) that imports fastdnn and fits a
tiny net for one epoch, then predicts:

- ``test_compile_cold``: ``NUMBA_CACHE_DIR`` points at an empty temporary folder, so
  every kernel compiles. One round (``benchmark.pedantic(rounds=1)``): it takes seconds.
- ``test_first_epoch_warm_cache``: the same folder after one run, so kernels load from
  numba's on-disk cache.

The measured time is the whole process (interpreter start included); the script's own
split (import, first epoch, first predict) is stored in ``extra_info``. Full only.
"""
import json
import os
import subprocess
import sys

import pytest

from bench_cases import full

pytestmark = full

SCRIPT = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
import fastdnn as fd
t1 = time.perf_counter()
rng = np.random.default_rng(0)
X = rng.standard_normal((256, 16)).astype(np.float32)
y = (X[:, 0] > 0).astype(np.int64)
net = fd.MLP([16, 32, 2], activation="relu", loss="cross_entropy", dtype="float32", seed=0)
net.fit(X, y, epochs=1, batch_size=64)
t2 = time.perf_counter()
net.predict(X)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_epoch_s": t2 - t1, "first_predict_s": t3 - t2}))
"""


def run_script(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def fastdnn_ok():
    fd = pytest.importorskip("fastdnn")
    if not hasattr(fd, "MLP"):
        pytest.skip("fastdnn.MLP not available yet")


def test_compile_cold(benchmark, fastdnn_ok, tmp_path_factory):
    made = []

    def fresh_cache():
        d = tmp_path_factory.mktemp("numba_cache_cold")
        made.append(d)
        return (d,), {}

    benchmark.group = "compile"
    result = benchmark.pedantic(run_script, setup=fresh_cache, rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert any(made[-1].rglob("*.nbi")), "numba wrote no cache index: cache=True missing?"


def test_first_epoch_warm_cache(benchmark, fastdnn_ok, tmp_path_factory):
    cache = tmp_path_factory.mktemp("numba_cache_warm")
    run_script(cache)  # populate
    benchmark.group = "compile"
    result = benchmark.pedantic(run_script, args=(cache,), rounds=3, iterations=1)
    benchmark.extra_info.update(result)
