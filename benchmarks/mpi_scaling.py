"""Data-parallel training on MPI: what one allreduce costs per step against the step
itself, and throughput of 1 rank against N (the tables of ``docs/distributed.md``)::

    python benchmarks/mpi_scaling.py                  # 1 process: the baseline rows
    mpiexec -n 2 python benchmarks/mpi_scaling.py     # 2 ranks: the distributed rows
    ... --quick                                       # smoke run: small nets, few steps
    python benchmarks/mpi_scaling.py --model          # the cost model's table (no MPI)

Every fit is float32, ``n_threads=1`` per rank unless a row says otherwise, on synthetic
data (normal inputs, random labels; the math does not care), ``shuffle=False``.  A row's
time per step is the median over epochs 2.. of ``History.seconds / steps`` (epoch 1 loads
the kernels).  Under mpiexec each net gets three measurements, all ranks at once:

* ``allreduce``: a compiled loop of ``MPI_Allreduce`` calls alone, on the buffer a step
  reduces in place (``n_params + 3`` floats), median over 5 runs;
* ``local step``: every rank trains a single-process fit of its local batch at the
  same time (so the cores are as loaded as in the distributed fit, without messages);
* ``distributed step``: ``fit(..., comm=COMM_WORLD)`` with that local batch.

and the latency of an allreduce of one float (the alpha of the cost model, here through
shared memory).

``--model`` prints the alpha-beta model of ``docs/distributed.md`` instead: an allreduce
of ``n`` bytes on ``p`` nodes takes ``2 log2(p) alpha + 2 (p - 1) / p * n / beta``
(reduce-scatter then allgather, MPICH's algorithm for long messages; a ring has the same
bandwidth term), a step's compute ``6 b N / F`` (``N`` parameters, local batch ``b``,
``F`` flop/s per node), and the efficiency of ``p`` nodes on the global batch ``p b``
against one node is ``t_c / (t_c + t_allreduce)`` (no overlap of the two: fastdnn sends
after the whole backward pass).
"""
import argparse
import platform
import statistics
import subprocess
import time

import numpy as np

import fastdnn as fd

NETS = {"small": [64, 256, 256, 10], "medium": [784, 1024, 1024, 10],
        "large": [1024, 2048, 2048, 1024]}
QUICK_NETS = {"small": [64, 256, 256, 10]}


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines()
                    if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown CPU"


def data(sizes, rows, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, sizes[0])).astype(np.float32)
    return X, rng.integers(0, sizes[-1], size=rows)


def step_seconds(sizes, batch, steps, epochs, comm=None, n_threads=1, seed=0):
    """Median seconds per step of epochs 2.. of a fit of ``steps`` steps per epoch."""
    X, y = data(sizes, batch * steps, seed)
    net = fd.MLP(sizes, dtype="float32", seed=0, n_threads=n_threads)
    hist = net.fit(X, y, epochs=epochs, batch_size=batch, optimizer=fd.SGD(lr=1e-3),
                   shuffle=False, comm=comm)
    return statistics.median(hist.seconds[1:]) / steps


def allreduce_seconds(comm, n_params, repeats):
    """Median seconds of one ``MPI_Allreduce`` of a step's buffer, in a compiled loop."""
    from numba import njit

    from fastdnn.kernels.cpu.distributed import allreduce_sum, reduction

    @njit
    def loop(red, repeats):
        for _ in range(repeats):
            allreduce_sum(red)

    red = reduction(comm, n_params, np.float32)
    loop(red, 1)
    times = []
    for _ in range(5):
        comm.Barrier()
        start = time.perf_counter()
        loop(red, repeats)
        times.append((time.perf_counter() - start) / repeats)
    return statistics.median(comm.allgather(statistics.median(times)))


#: The model's networks: (name, alpha in s, beta in bytes/s); alpha is assumed (TCP over
#: Ethernet ~20 us, RDMA over InfiniBand/RoCE ~2 us), beta the link's rate.
NETWORKS = (("10 Gb/s Ethernet", 20e-6, 10e9 / 8), ("100 Gb/s RDMA", 2e-6, 100e9 / 8))
#: Node compute rates (flop/s): one core of the dev machine as measured (medium net,
#: batch 64, float32), and a 32-core node assumed at 10x that.
NODES = (("1 core, 100 GFLOP/s", 100e9), ("node, 1 TFLOP/s", 1e12))


def model(b=64, item=4):
    """Print the alpha-beta model's efficiencies for 8-64 nodes and the break-even sizes."""
    sizes = (1e4, 1e5, 1e6, 1e7, 1e8)
    print(f"# efficiency t_c / (t_c + t_allreduce), local batch {b}, float32; "
          f"N = parameters")
    print("| node | network | p | " + " | ".join(f"N={n:.0e}" for n in sizes)
          + " | E=50% from N | pays (p E > 1) from N |")
    print("|---" * (len(sizes) + 5) + "|")
    for node, flops in NODES:
        for net, alpha, beta in NETWORKS:
            for p in (8, 16, 32, 64):
                cells = []
                for n in sizes:
                    t_c = 6 * b * n / flops
                    t_ar = 2 * np.log2(p) * alpha + 2 * (p - 1) / p * n * item / beta
                    cells.append(f"{t_c / (t_c + t_ar):.0%}")
                # E = 50%: t_c = t_ar; pays: p t_c = t_c + t_ar, linear in N.
                lat, bw = 2 * np.log2(p) * alpha, 2 * (p - 1) / p * item / beta
                half = lat / (6 * b / flops - bw) if 6 * b / flops > bw else np.inf
                pays = lat / ((p - 1) * 6 * b / flops - bw) \
                    if (p - 1) * 6 * b / flops > bw else np.inf
                print(f"| {node} | {net} | {p} | " + " | ".join(cells)
                      + f" | {half:,.0f} | {pays:,.0f} |".replace("inf", "never"))


def n_params(sizes):
    return sum(k * n + n for k, n in zip(sizes[:-1], sizes[1:]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64, help="local batch (default 64)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", action="store_true", help="print the cost model's table")
    args = parser.parse_args()
    if args.model:
        model(args.batch)
        return
    nets = QUICK_NETS if args.quick else NETS
    epochs = 3 if args.quick else 4
    b = args.batch
    comm = None
    try:
        from mpi4py import MPI
        comm = MPI.COMM_WORLD if MPI.COMM_WORLD.Get_size() > 1 else None
    except ImportError:
        pass
    say = print if comm is None or comm.Get_rank() == 0 else (lambda *a: None)
    say(f"# {cpu_model()}, {fd.__version__}, float32, local batch {b}")
    if comm is not None:
        say(f"allreduce of one float on {comm.Get_size()} ranks: "
            f"{allreduce_seconds(comm, 1, 20000) * 1e6:.2f} us")
    for name, sizes in nets.items():
        p = n_params(sizes)
        steps = max(4, min(40, int(4e9 / (6 * b * p))))  # ~0.5 s epochs or at least 4 steps
        if args.quick:
            steps = 4
        if comm is None:
            one = step_seconds(sizes, b, steps, epochs)
            two = step_seconds(sizes, 2 * b, steps, epochs)
            two_threads = step_seconds(sizes, 2 * b, steps, epochs, n_threads=2)
            say(f"{name} {sizes} {p:,} params: step at batch {b}: {one * 1e3:.3f} ms; "
                f"1 rank at batch {2 * b}: {two * 1e3:.3f} ms/step = {2 * b / two:,.0f} "
                f"samples/s (1 thread), {2 * b / two_threads:,.0f} samples/s (2 threads)")
            continue
        size = comm.Get_size()
        ar = allreduce_seconds(comm, p, max(3, min(200, int(2e8 / p))))
        comm.Barrier()
        local = statistics.median(comm.allgather(step_seconds(sizes, b, steps, epochs,
                                                              seed=comm.Get_rank())))
        comm.Barrier()
        dist = step_seconds(sizes, b, steps, epochs, comm=comm, seed=comm.Get_rank())
        say(f"{name} {sizes} {p:,} params: allreduce {ar * 1e3:.3f} ms "
            f"({4 * (p + 3) / ar / 1e9:.2f} GB/s of buffer); local step {local * 1e3:.3f} ms; "
            f"distributed step {dist * 1e3:.3f} ms = {size * b / dist:,.0f} samples/s on "
            f"{size} ranks (global batch {size * b}); allreduce = {ar / dist:.0%} of the "
            f"step, distributed - local = {(dist - local) * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
