"""Where the big-product rule should start: each product of a layer's training step on
the big-product GEMM against SciPy's BLAS, per layer shape, as fastdnn runs them.

fastdnn sends a product's column block to the big-product GEMM (MKL, or on Zen 4 a
second OpenBLAS instance on its Haswell kernels) when the block has at least so many
multiply-adds (and, on the Haswell instance, fewer than a most) and both sides of its
output at least so long, as
``fastdnn.kernels.cpu.blas.big_rule()`` says for its dtype (``blas._on_big``).  This
times the three products of a layer of ``k`` inputs and ``n`` outputs at batch ``m`` --
``A @ W`` (nn), ``A.T @ D`` (tn), ``D @ W.T`` (nt) -- with every block sent there and
with none, alternated, and prints the ratio (> 1: the big-product GEMM is faster) beside
what the rule now does::

    python benchmarks/big_rule.py                        # Zen 4: the Haswell instance
    FASTDNN_BLAS=mkl python benchmarks/big_rule.py       # MKL, where installed
    python benchmarks/big_rule.py --batches 128,256 --layers 784x1024 --dtype float64

Name the CPU (``lscpu``) with its figures; run it on a quiet machine.
"""
import argparse
import time

import numpy as np


def product_shapes(m, k, n):
    """``(name, rows, cols, K)`` of a layer's three products (row-major output)."""
    return [("nn", m, n, k), ("tn", k, n, m), ("nt", m, k, n)]


def operands(name, m, k, n, dtype, rng):
    """The operands and output of product ``name`` of an ``m``-row batch through ``k -> n``."""
    A = rng.standard_normal((m, k)).astype(dtype)
    W = rng.standard_normal((k, n)).astype(dtype)
    D = rng.standard_normal((m, n)).astype(dtype)
    return {"nn": (A, W, np.empty((m, n), dtype)), "tn": (A, D, np.empty((k, n), dtype)),
            "nt": (D, W, np.empty((m, k), dtype))}[name]


def block(blas, rows, cols, K):
    """``(width, rows)`` of the column-major call each block of the product makes."""
    if blas.splits(rows, cols, K):
        nb = blas.n_blocks(cols, blas.blocks())
        return -(-cols // nb), rows
    if blas.splits_rows(rows, cols, K):
        nb = blas.n_blocks(rows, blas.blocks())
        return cols, -(-rows // nb)
    return cols, rows


def seconds(fn, args, reps):
    start = time.perf_counter()
    for _ in range(reps):
        fn(*args)
    return (time.perf_counter() - start) / reps


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="64,128,256,512")
    ap.add_argument("--layers", default="256x256,512x512,784x1024,1024x1024,1024x4096,"
                                        "4096x1024")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--pairs", type=int, default=7, help="alternated timings of each side")
    ap.add_argument("--seconds", type=float, default=0.05, help="least time of one timing")
    args = ap.parse_args(argv)
    from fastdnn.kernels.cpu import blas
    layers = [tuple(map(int, s.split("x"))) for s in args.layers.split(",")]
    # As for a float32 net (the Haswell instance loads for those only), whatever --dtype.
    blas.prepare([width for layer in layers for width in layer], np.float32)
    if not any(rule != blas.NEVER for rule in blas.big_rule().values()):
        # Under "auto" the Haswell instance loads only for a layer 256 wide or wider:
        # narrower --layers named the library as missing that was only not loaded.
        raise SystemExit(f"no big-product GEMM loaded ({blas._prepared!r}) for layers "
                         f"{args.layers}: under FASTDNN_BLAS=auto it loads for layers 256 wide "
                         f"or wider; set FASTDNN_BLAS=scipy-haswell (or mkl) to measure these")
    saved = [setting.value for setting in blas._big_rule]
    rule = blas.big_rule()[args.dtype]
    print(f"library {blas._prepared}, {args.dtype} rule: "
          + ("none" if rule == blas.NEVER else
             f">= {rule[0]} multiply-adds a block"
             + ("" if rule[2] == blas.UNBOUNDED else f" and < {rule[2]}")
             + f", both sides >= {rule[1]}")
          + f"; {blas.blocks()} blocks; ratio = SciPy's time / the big GEMM's (median of "
            f"{args.pairs})")
    print(f"{'m':>5} {'k':>5} {'n':>5} prod {'block':>10} {'MACs/blk':>10} rule "
          f"{'scipy ms':>9} {'big ms':>9} ratio")
    fns = {"nn": blas.matmul, "tn": blas.matmul_tn, "nt": blas.matmul_nt}
    rng = np.random.default_rng(0)
    try:
        for m in map(int, args.batches.split(",")):
            for k, n in layers:
                for name, rows, cols, K in product_shapes(m, k, n):
                    ops = operands(name, m, k, n, args.dtype, rng)
                    fn = fns[name]
                    fn(*ops)  # compiled, and the pages touched
                    start = time.perf_counter()
                    fn(*ops)
                    reps = max(1, int(args.seconds / max(time.perf_counter() - start, 1e-6)))
                    times = {"scipy": [], "big": []}
                    for _ in range(args.pairs):
                        for side, value in (("scipy", blas.NEVER), ("big", blas.EVERY)):
                            for setting, v in zip(blas._big_rule, 2 * value):
                                setting.value = v
                            times[side].append(seconds(fn, ops, reps))
                    for setting, v in zip(blas._big_rule, saved):
                        setting.value = v
                    width, height = block(blas, rows, cols, K)
                    macs = width * height * K
                    taken = rule[0] <= macs < rule[2] and min(width, height) >= rule[1]
                    s, b = (float(np.median(times[side])) for side in ("scipy", "big"))
                    print(f"{m:5d} {k:5d} {n:5d} {name:>4} {width:>4}x{height:<5} {macs:10.2e} "
                          f"{'big' if taken else '-':>4} {s * 1e3:9.3f} {b * 1e3:9.3f} "
                          f"{s / b:5.3f}", flush=True)
    finally:
        for setting, v in zip(blas._big_rule, saved):
            setting.value = v


if __name__ == "__main__":
    main()
