"""Time what a user feels first: ``import fastdnn``, a first one-epoch ``fit``, a first
``predict``, on a tiny net, in this fresh process; print the split as one JSON line.

    python benchmarks/first_epoch.py [OPTIMIZER [BATCH_SIZE]]

Run by both suites' compile benchmarks (``test_bench_compile.py`` and
``asv_bench/bench_compile.py``) with ``NUMBA_CACHE_DIR`` pointing at an empty or a filled
folder. ``OPTIMIZER`` (default ``adam``, ``fit``'s default) picks which update kernels
compile; ``BATCH_SIZE`` (default 64) 1 makes it the first online fit, whose epoch kernel
is its own (the course's SGD). Nothing but the standard library is imported before the clock starts.
"""
import json
import sys
import time


def main(optimizer="adam", batch_size="64"):
    t0 = time.perf_counter()
    import numpy as np

    import fastdnn as fd

    t1 = time.perf_counter()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 16)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    net = fd.MLP([16, 32, 2], activation="relu", loss="cross_entropy", dtype="float32", seed=0)
    net.fit(X, y, epochs=1, batch_size=int(batch_size), optimizer=optimizer)
    t2 = time.perf_counter()
    net.predict(X)
    t3 = time.perf_counter()
    print(json.dumps({"import_s": t1 - t0, "first_epoch_s": t2 - t1, "first_predict_s": t3 - t2}))


def run(cache_dir, optimizer="adam", batch_size=64):
    """Run this script in a fresh interpreter with numba's cache in ``cache_dir``;
    returns its JSON line as a dict."""
    import os
    import subprocess

    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    out = subprocess.run([sys.executable, __file__, optimizer, str(batch_size)], env=env,
                         capture_output=True, text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(__doc__)
        sys.exit(0)
    if len(sys.argv) > 3 or (len(sys.argv) == 3 and not sys.argv[2].isdigit()):
        sys.exit(f"usage: {sys.argv[0]} [OPTIMIZER [BATCH_SIZE]] (a whole number); "
                 f"got {' '.join(sys.argv[1:])}")
    main(*sys.argv[1:])
