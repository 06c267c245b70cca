"""The matrix products of one training step, raw, per system: how fast each peer's BLAS
multiplies at a workload's shapes (float32), against fastdnn's column blocks.

For the GEMM-bound workloads of ``benchmarks/peers.py`` (e: 784-1024-1024-10 at batch
256, f: 1024-4096-4096-1024 at batch 512) a step is its products plus a little
element-wise work; this separates the two.  Each system runs the same products: per
layer ``A @ W`` and ``A.T @ D``, and ``D @ W.T`` for all but the first layer.  Prints each
system's total (median of 5 timings) and GFLOP/s::

    python benchmarks/gemm_peers.py                  # e and f
    python benchmarks/gemm_peers.py --workloads e

Systems that are not installed (torch, jax) are skipped.
"""
import argparse
import time

import numpy as np

#: workload: (batch, layer sizes, repetitions per timing)
WORKLOADS = {"e": (256, (784, 1024, 1024, 10), 20),
             "f": (512, (1024, 4096, 4096, 1024), 2)}


def products(batch, sizes):
    """``(kind, shape of the left operand, shape of the right operand)`` of one step."""
    out = []
    for i, (k, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        out += [("nn", (batch, k), (k, n)), ("tn", (batch, k), (batch, n))]
        if i > 0:
            out.append(("nt", (batch, n), (k, n)))
    return out


def flops(kind, a, b):
    return 2 * a[0] * a[1] * (b[0] if kind == "nt" else b[1])


def median_seconds(fn, reps):
    fn()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        times.append((time.perf_counter() - start) / reps)
    return float(np.median(times))


def systems(sizes):
    """``name -> make(kind, a, b)``, ``make`` returning a no-argument call of the product;
    fastdnn's set up for layers of widths ``sizes`` (as a network of them would be)."""
    from fastdnn.kernels.cpu import blas
    blas.prepare(sizes)
    out = {}

    def numpy_product(kind, a, b):
        return {"nn": lambda: a @ b, "tn": lambda: a.T @ b, "nt": lambda: a @ b.T}[kind]

    def fastdnn_product(kind, a, b):
        rows = a.shape[1] if kind == "tn" else a.shape[0]
        cols = b.shape[0] if kind == "nt" else b.shape[1]
        C = np.empty((rows, cols), np.float32)
        fn = {"nn": blas.matmul, "tn": blas.matmul_tn, "nt": blas.matmul_nt}[kind]
        return lambda: fn(a, b, C)

    out["numpy"] = numpy_product
    out["fastdnn"] = fastdnn_product
    try:
        import torch
        torch.set_num_threads(2)

        def torch_product(kind, a, b):
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            return numpy_product(kind, ta, tb)
        out["torch"] = torch_product
    except ImportError:
        pass
    try:
        import jax
        import jax.numpy as jnp

        def jax_product(kind, a, b):
            fn = jax.jit({"nn": lambda x, y: x @ y, "tn": lambda x, y: x.T @ y,
                          "nt": lambda x, y: x @ y.T}[kind])
            ja, jb = jnp.asarray(a), jnp.asarray(b)
            return lambda: fn(ja, jb).block_until_ready()
        out["jax"] = jax_product
    except ImportError:
        pass
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="e,f")
    args = ap.parse_args(argv)
    keys = args.workloads.split(",")
    for key in keys:  # d raised KeyError: only the GEMM-bound workloads are here
        if key not in WORKLOADS:
            ap.error(f"unknown workload {key!r}; choose from {','.join(WORKLOADS)}")
    makers = systems([width for key in keys for width in WORKLOADS[key][1]])
    rng = np.random.default_rng(0)
    for key in keys:
        batch, sizes, reps = WORKLOADS[key]
        total = dict.fromkeys(makers, 0.0)
        work = 0
        for kind, sa, sb in products(batch, sizes):
            a = rng.standard_normal(sa).astype(np.float32)
            b = rng.standard_normal(sb).astype(np.float32)
            work += flops(kind, sa, sb)
            for name, make in makers.items():
                total[name] += median_seconds(make(kind, a, b), reps)
        cells = "  ".join(f"{name} {t * 1e3:.2f} ms {work / t / 1e9:.0f} GFLOP/s"
                          for name, t in total.items())
        print(f"{key} {'-'.join(map(str, sizes))} batch {batch}: {cells}", flush=True)


if __name__ == "__main__":
    main()
