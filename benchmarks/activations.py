"""Epoch speed of each hidden activation, as a ratio to relu's, for one or two source trees.

float32 nets, plain SGD, in order: 16-32-32-2 at batch 32 and 64-128-128-10 at batch 128.
Each tree runs in its own process (its own ``NUMBA_CACHE_DIR`` is the caller's to set),
the trees alternated round by round; a cell is the median over rounds of the best of 5
epochs (after one that compiles)::

    python benchmarks/activations.py src                      # this tree
    python benchmarks/activations.py OLD/src src --rounds 3   # before -> after
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "softplus", "silu", "gelu")
NETS = (([16, 32, 32, 2], 32, 8192), ([64, 128, 128, 10], 128, 4096))

WORKER = r'''
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
import fastdnn as fd
out = {}
for sizes, batch, n in %r:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], n)
    for act in %r:
        net = fd.MLP(sizes, activation=act, seed=0)
        fit = lambda: net.fit(X, y, epochs=1, batch_size=batch, optimizer=fd.SGD(lr=0.01),
                              shuffle=False)
        fit()
        times = []
        for _ in range(5):
            t = time.perf_counter()
            fit()
            times.append(time.perf_counter() - t)
        out["-".join(map(str, sizes)) + " " + act] = n / min(times)
print(json.dumps(out))
''' % (NETS, ACTIVATIONS)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", help="src folders (one, or before and after)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if len(args.trees) > 2:
        parser.error("give one src folder, or two (before and after)")
    for tree in args.trees:
        if not os.path.isfile(os.path.join(tree, "fastdnn", "__init__.py")):
            parser.error(f"no fastdnn package in {tree}")
    runs = {tree: [] for tree in args.trees}
    for r in range(args.rounds):
        for tree in (args.trees if r % 2 == 0 else args.trees[::-1]):
            proc = subprocess.run([sys.executable, "-c", WORKER, tree], capture_output=True,
                                  text=True, check=True)
            runs[tree].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    rate = {tree: {key: statistics.median(run[key] for run in results)
                   for key in results[0]} for tree, results in runs.items()}
    head = "".join(f" | {tree} samples/s | x relu" for tree in args.trees)
    print(f"| net, activation{head}" + (" | after / before |" if len(args.trees) == 2 else " |"))
    for key in rate[args.trees[0]]:
        relu = key.rsplit(" ", 1)[0] + " relu"
        cells = "".join(f" | {rate[t][key]:,.0f} | {rate[t][relu] / rate[t][key]:.2f}"
                        for t in args.trees)
        ratio = (f" | {rate[args.trees[1]][key] / rate[args.trees[0]][key]:.2f}"
                 if len(args.trees) == 2 else "")
        print(f"| {key}{cells}{ratio} |")


if __name__ == "__main__":
    main()
