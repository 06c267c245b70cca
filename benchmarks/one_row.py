"""Online SGD (``batch_size=1``): one-row products in Numba's loops or in BLAS, on this CPU.

``fastdnn.config.ONE_ROW_GEMM_MACS`` is the multiply-add count from which a layer's
one-row products go to BLAS; left ``None`` it takes the value measured for the CPU's
vendor (``config.ONE_ROW_GEMM_MACS_BY_VENDOR``).  This measures where the crossover lies
on the machine it runs on, to keep that table measured: float32 tanh nets, MSE, plain
SGD, in order, each threshold's fit interleaved with the others' in every round, time a
step (median over rounds) and its ratio to the default's::

    python benchmarks/one_row.py                      # thresholds 1024, 2048, 8192 and the default
    python benchmarks/one_row.py --thresholds 0,1e12  # all in BLAS against all in the loops
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

import fastdnn as fd  # noqa: E402
from fastdnn import config  # noqa: E402
from fastdnn.kernels.cpu import backend, mkl  # noqa: E402

#: Nets whose layers straddle the thresholds measured so far (a 32x32 layer: 1,024
#: multiply-adds; 64x64: 4,096; 64x128: 8,192).
NETS = ("16-32-32-2", "8-64-64-4", "32-64-64-2", "16-64-64-64-1", "64-128-128-10")


def seconds_a_step(sizes, threshold, X, Y):
    """Seconds a step of a fresh net's two epochs (after a warm-up one)."""
    config.ONE_ROW_GEMM_MACS = threshold
    net = fd.MLP(sizes, activation="tanh", loss="mse", seed=0, dtype="float32")
    net.fit(X[:256], Y[:256], epochs=1, batch_size=1, optimizer=fd.SGD(lr=0.01), shuffle=False)
    start = time.perf_counter()
    net.fit(X, Y, epochs=2, batch_size=1, optimizer=fd.SGD(lr=0.01), shuffle=False)
    return (time.perf_counter() - start) / (2 * X.shape[0])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default=",".join(NETS))
    ap.add_argument("--thresholds", default="1024,2048,8192",
                    help="comma-separated multiply-add counts; the default is added")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--samples", type=int, default=4096)
    args = ap.parse_args(argv)
    try:
        thresholds = [None] + [int(v) for v in args.thresholds.split(",")]
        nets = [[int(n) for n in net.split("-")] for net in args.nets.split(",")]
    except ValueError as exc:
        ap.error(f"--thresholds takes whole numbers (1024,2048) and --nets widths joined "
                 f"by '-' (2-8-8-1): {exc}")
    if min(t for t in thresholds[1:]) < 0 or any(len(n) < 2 or min(n) < 1 for n in nets):
        ap.error("thresholds must be >= 0, and each net two or more widths >= 1")
    if args.rounds < 1 or args.samples < 256:
        ap.error("--rounds must be at least 1 and --samples at least 256 (the warm-up's)")
    saved = config.ONE_ROW_GEMM_MACS
    default = backend.one_row_gemm_macs()
    print(f"CPU vendor {mkl.cpu_vendor() or '?'}: default threshold {default}")
    times = {}
    try:
        for _ in range(args.rounds):
            for sizes in nets:
                rng = np.random.default_rng(0)
                X = rng.normal(size=(args.samples, sizes[0])).astype(np.float32)
                Y = rng.normal(size=(args.samples, sizes[-1])).astype(np.float32)
                for t in thresholds:
                    times.setdefault((tuple(sizes), t), []).append(
                        seconds_a_step(sizes, t, X, Y))
    finally:
        config.ONE_ROW_GEMM_MACS = saved
    names = ["default" if t is None else str(t) for t in thresholds]
    print("| net | " + " | ".join(f"{n} (ns, ratio)" for n in names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for sizes in nets:
        base = np.median(times[(tuple(sizes), None)])
        cells = [f"{np.median(times[(tuple(sizes), t)]) * 1e9:.0f}, "
                 f"{np.median(times[(tuple(sizes), t)]) / base:.2f}x" for t in thresholds]
        print(f"| {'-'.join(map(str, sizes))} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
