"""fastdnn.sklearn's MLPClassifier against scikit-learn's own, with the same parameters:
fit time and held-out accuracy.  Prints the table of ``docs/sklearn.md``::

    python benchmarks/sklearn_speed.py                       # all sets, 3 rounds
    python benchmarks/sklearn_speed.py --sets digits --rounds 5
    python benchmarks/sklearn_speed.py --quick               # smoke run: 1 round, 10k rows

Sets: digits (1,797 x 64, 10 classes), breast cancer (569 x 30, 2 classes) and a
synthetic ``make_classification`` set of 100,000 training rows (32 features, 4 classes),
each standardised and split 75/25 (the synthetic set: 100,000 + 25,000) with seed 0.
Both estimators get the same parameters (scikit-learn's defaults: 100 relu units, Adam at
1e-3, batches of 200, ``tol`` stopping; ``max_iter`` 200, 20 on the synthetic set) and
the same ``random_state``, so they start from the same weights; they shuffle with
different generators, so they may stop after different numbers of epochs: the table
gives the epochs and the time per epoch too.  float64 data (scikit-learn's default
precision) and float32 data (both then train in float32).

Timing: the median over rounds of the whole ``fit`` call.  Each fit runs in its own
subprocess (``--worker SYSTEM``, one JSON line out), the systems taking turns, so none
inherits another's thread pools.  scikit-learn runs twice, with OpenBLAS' default threads
and with one thread, and the speed-up is against the faster: on the busy 2-core machine
the threaded small products were up to 50x slower (digits: 40 s against 0.7 s).  A
fastdnn worker first runs one small fit, untimed, which loads the compiled kernels from
Numba's disk cache (or compiles them, seconds, in a fresh environment), with batches big
enough to load those of two-shard steps too.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np

SEED = 0
#: scikit-learn twice: with OpenBLAS' default threads and with one; the table's speed-up
#: is against the faster.
SYSTEMS = ("sklearn", "sklearn-1thread", "fastdnn")


def load(name, quick):
    """``(X_train, X_test, y_train, y_test, max_iter)``, standardised on the training rows."""
    from sklearn.datasets import load_breast_cancer, load_digits, make_classification
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    if name == "digits":
        X, y = load_digits(return_X_y=True)
        test_size, max_iter = 0.25, 200
    elif name == "breast_cancer":
        X, y = load_breast_cancer(return_X_y=True)
        test_size, max_iter = 0.25, 200
    elif name == "synthetic":
        n_train = 10_000 if quick else 100_000
        X, y = make_classification(n_samples=n_train * 5 // 4, n_features=32,
                                   n_informative=16, n_classes=4, random_state=SEED)
        test_size, max_iter = 0.2, 20
    else:
        raise SystemExit(f"unknown set {name!r}")
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=test_size,
                                                        random_state=SEED, stratify=y)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test, max_iter


def worker(system, name, dtype, quick):
    """One timed fit: ``{"seconds", "epochs", "accuracy", "rows", "features"}``."""
    from sklearn.exceptions import ConvergenceWarning

    if system == "fastdnn":
        from fastdnn.sklearn import MLPClassifier
        # Untimed: loads the kernels from Numba's cache (or compiles them), those of
        # two-shard steps too (400 rows: two shards of 100 rows each; the helper thread's
        # loop loads in the first such fit, ~8 ms of a breast cancer fit).
        X = np.random.default_rng(0).normal(size=(400, 64)).astype(dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            MLPClassifier(max_iter=2).fit(X, np.arange(400) % 3)
    else:
        from sklearn.neural_network import MLPClassifier
    X_train, X_test, y_train, y_test, max_iter = load(name, quick)
    X_train, X_test = X_train.astype(dtype), X_test.astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        est = MLPClassifier(max_iter=max_iter, random_state=SEED).fit(X_train, y_train)
        seconds = time.perf_counter() - start
    return dict(seconds=seconds, epochs=int(est.n_iter_), accuracy=est.score(X_test, y_test),
                rows=X_train.shape[0], features=X_train.shape[1])


def run_worker(system, name, dtype, quick):
    cmd = [sys.executable, __file__, "--worker", system, "--sets", name, "--dtypes", dtype]
    env = dict(os.environ)
    if system == "sklearn-1thread":
        env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run(cmd + (["--quick"] if quick else []), capture_output=True,
                         text=True, check=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        return f"{fields['Model name'].strip()}, {fields['CPU(s)'].strip()} CPUs"
    except (OSError, subprocess.CalledProcessError, KeyError):
        return platform.processor() or platform.machine()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="digits,breast_cancer,synthetic")
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 round, 10k synthetic rows")
    parser.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.sets, args.dtypes, args.quick)))
        return
    rounds = 1 if args.quick else args.rounds

    print(f"CPU: {cpu_model()}; median of {rounds} round(s)\n")
    print("| set | rows x features | dtype | scikit-learn, BLAS threads | scikit-learn, 1 thread "
          "| fastdnn | speed-up | per epoch | accuracy sklearn / fastdnn |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.sets.split(","):
        for dtype in args.dtypes.split(","):
            runs = {system: [] for system in SYSTEMS}
            for _ in range(rounds):
                for system in SYSTEMS:
                    runs[system].append(run_worker(system, name, dtype, args.quick))
            sk, sk1, fd = ({**runs[system][-1],
                            "seconds": statistics.median(r["seconds"] for r in runs[system])}
                           for system in SYSTEMS)
            best = min(sk, sk1, key=lambda r: r["seconds"])  # the baseline: sklearn's faster
            print(f"| {name} | {sk['rows']:,} x {sk['features']} | {dtype} "
                  f"| {sk['seconds']:.2f} s ({sk['epochs']} epochs) "
                  f"| {sk1['seconds']:.2f} s ({sk1['epochs']} epochs) "
                  f"| {fd['seconds']:.3f} s ({fd['epochs']} epochs) "
                  f"| {best['seconds'] / fd['seconds']:.1f}x "
                  f"| {(best['seconds'] / best['epochs']) / (fd['seconds'] / fd['epochs']):.1f}x "
                  f"| {best['accuracy']:.4f} / {fd['accuracy']:.4f} |", flush=True)

if __name__ == "__main__":
    main()
