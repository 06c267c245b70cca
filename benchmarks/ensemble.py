"""Many small nets at once: ``fd.fit_many`` against fitting them one by one and against
JAX ``vmap`` over a stacked ensemble (the usual way to train many small nets in JAX).

    python benchmarks/ensemble.py                  # 64 nets of 16-32-32-2, prints a table
    python benchmarks/ensemble.py --nets 16 --rounds 5
    python benchmarks/ensemble.py --write          # also writes docs/ensemble.md

Same nets (architecture, initial weights), data (16 random bits, label = parity), plain
SGD (lr 0.1, batches of 64 in order), float32.  Each system runs its warm-up epoch first
(compilation), then ``epochs`` timed epochs (fastdnn: one whole ``fit_many``, or all the
``fit`` calls, set-up included, divided by the epochs; JAX: the median jitted epoch); the
table reports the median over rounds as samples/s over all nets (nets x rows / seconds),
and the final mean loss so the systems can be seen to do the same work.  Systems interleave
within a round; JAX is skipped when it is not installed.
"""
import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

SIZES = (16, 32, 32, 2)


def problem(n, n_nets):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, size=(n, SIZES[0])).astype(np.float32)
    y = (X.sum(axis=1) % 2).astype(np.int64)
    return X, y, list(range(n_nets))


def fastdnn_epochs(mode, n, n_nets, epochs):
    """Wall time of a whole ``epochs``-epoch fit of all nets (set-up included) / epochs."""
    import fastdnn as fd

    X, y, seeds = problem(n, n_nets)
    kw = dict(batch_size=64, shuffle=False)

    def fit_all(nets, n_epochs):
        opts = [fd.SGD(lr=0.1) for _ in nets]
        if mode == "many":
            fd.fit_many(nets, X, y, epochs=n_epochs, optimizer=opts, **kw)
        else:
            for net, opt in zip(nets, opts):
                net.fit(X, y, epochs=n_epochs, optimizer=opt, **kw)

    # Warm-up: loads the compiled kernels (and builds fit_many's typed-list helpers).
    fit_all([fd.MLP(list(SIZES), activation="relu", seed=s) for s in seeds[:2]], 1)
    nets = [fd.MLP(list(SIZES), activation="relu", seed=s) for s in seeds]
    start = time.perf_counter()
    fit_all(nets, epochs)
    seconds = (time.perf_counter() - start) / epochs
    return seconds, float(np.mean([net.loss(X, y) for net in nets])), None


def jax_epochs(n, n_nets, epochs):
    import jax
    import jax.numpy as jnp

    import fastdnn as fd

    X, y, seeds = problem(n, n_nets)
    # The same initial weights as fastdnn's nets, stacked along a leading net axis.
    weights = [fd.MLP(list(SIZES), activation="relu", seed=s).get_weights() for s in seeds]
    params = [(jnp.stack([w[i][0] for w in weights]), jnp.stack([w[i][1] for w in weights]))
              for i in range(len(SIZES) - 1)]
    Xb = jnp.asarray(X.reshape(-1, 64, SIZES[0]))
    yb = jnp.asarray(y.reshape(-1, 64))

    def loss_fn(p, x, t):
        h = x
        for W, b in p[:-1]:
            h = jax.nn.relu(h @ W + b)
        z = h @ p[-1][0] + p[-1][1]
        return jnp.mean(jax.nn.logsumexp(z, axis=1) - jnp.take_along_axis(z, t[:, None], 1)[:, 0])

    def step(p, batch):
        g = jax.grad(loss_fn)(p, *batch)
        return jax.tree_util.tree_map(lambda a, da: a - 0.1 * da, p, g), None

    def epoch(p):
        return jax.lax.scan(step, p, (Xb, yb))[0]

    run = jax.jit(jax.vmap(epoch))
    jax.block_until_ready(run(params))  # warm-up: compiles; its epoch is not kept, as
    # fastdnn's warm-up trains throw-away nets (kept, JAX's nets trained an epoch more)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        params = jax.block_until_ready(run(params))
        times.append(time.perf_counter() - start)
    loss = float(np.mean(jax.vmap(loss_fn, in_axes=(0, None, None))(params, jnp.asarray(X),
                                                                    jnp.asarray(y))))
    return statistics.median(times), loss, None


def worker(system, n, n_nets, epochs):
    if system == "jax":
        seconds, loss, _ = jax_epochs(n, n_nets, epochs)
    else:
        seconds, loss, _ = fastdnn_epochs(system.split("-")[1], n, n_nets, epochs)
    print(f"{seconds!r} {loss!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nets", type=int, default=64)
    ap.add_argument("--n", type=int, default=4096, help="rows (a multiple of 64)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="write docs/ensemble.md too")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.n, args.nets, args.epochs)
    systems = ["fastdnn-many", "fastdnn-one"]
    try:
        import jax  # noqa: F401
        systems.append("jax")
    except ImportError:
        print("jax not installed: skipped")
    results = {s: [] for s in systems}
    losses = {}
    for r in range(args.rounds):
        for s in systems:
            out = subprocess.run([sys.executable, __file__, "--worker", s, "--n", str(args.n),
                                  "--nets", str(args.nets), "--epochs", str(args.epochs)],
                                 capture_output=True, text=True, check=True).stdout.split()
            results[s].append(float(out[-2]))
            losses[s] = float(out[-1])
            print(f"[round {r + 1}] {s:13s} epoch {results[s][-1] * 1e3:8.2f} ms", flush=True)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    base = statistics.median(results["fastdnn-one"])
    lines = [
        "# Many small nets at once", "",
        f"{args.nets} nets of {'-'.join(map(str, SIZES))}, {args.n} rows, batch 64, plain SGD, "
        f"float32, the same initial weights in every system; {cpu}, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.2f}, {time.strftime('%Y-%m-%d %H:%M')}; median of "
        f"{args.rounds} rounds of {args.epochs} epochs each (`python benchmarks/ensemble.py`). "
        "fastdnn-many: `fd.fit_many` (each epoch of all nets in one compiled call, parallel "
        "over the nets); fastdnn-one: `net.fit` for each net in turn; jax: `jax.jit(jax.vmap("
        "epoch))` over the stacked nets, the epoch a `lax.scan` over the batches.", "",
        "| system | epoch of all nets (ms) | samples/s (all nets) | vs one by one | mean loss |",
        "|---|---|---|---|---|"]
    for s in systems:
        t = statistics.median(results[s])
        lines.append(f"| {s} | {t * 1e3:.1f} | {args.nets * args.n / t:,.0f} | {base / t:.2f}x | "
                     f"{losses[s]:.5f} |")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    if args.write:
        out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "ensemble.md")
        with open(out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
