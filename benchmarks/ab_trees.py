"""Compare two fastdnn source trees on the same machine, interleaved: before/after numbers
for a change, robust to a shared machine's drifting load.

Training speed: each round runs ``peers.py --worker fastdnn`` once per tree (alternating,
each in its own process, the tree first on ``PYTHONPATH``) and keeps the best epoch; the
report is the best round per tree::

    git worktree add /tmp/before <commit>
    python benchmarks/ab_trees.py /tmp/before/src src --workloads a,b,c,d --rounds 3

Start-up: ``--start`` instead times ``python -m fastdnn train --quiet --no-save`` per tree,
cold (an empty ``NUMBA_CACHE_DIR``) then warm (the same folder again), wall and CPU
seconds, the trees in turn (which goes first alternates each round), and ends with the
medians.  After each cold run it pauses (``--pause``, 3 s): the compile helper goes on
after the run's exit with the kernels the next process needs, and would take a core from
the next run.  ``--args`` passes more options to ``fastdnn train`` (a first online fit:
``--args "--batch-size 1 --epochs 2"``).  ``--env-before``
and ``--env-after`` (``NAME=VALUE``, repeatable) set variables for one side only, so one
tree can be compared with itself, say without and with the compile helper::

    python benchmarks/ab_trees.py src src --start --rounds 5 --env-before FASTDNN_WARMUP=0
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _env(src, **extra):
    return dict(os.environ, PYTHONPATH=str(Path(src).resolve()), **extra)


def samples_per_second(src, workload, extra):
    """Best epoch rate of one fastdnn peers worker run with ``src`` first on the path."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "peers.py"), "--worker",
                          "fastdnn", "--workload", workload], env=_env(src, **extra),
                         capture_output=True, text=True, cwd=ROOT, check=True)
    record = json.loads(out.stdout.strip().splitlines()[-1])
    return record["n"] / min(record["epoch_s"])


def start_seconds(src, cache, extra, args=()):
    """``(wall, cpu)`` seconds of one ``fastdnn train`` (with the options ``args``) with
    the Numba cache ``cache``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fastdnn", "train", "--quiet", "--no-save", *args],
                   env=_env(src, NUMBA_CACHE_DIR=cache, **extra), capture_output=True, check=True,
                   cwd=tempfile.gettempdir())
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _workloads():
    """peers.py's workload keys (read from its source: importing it costs seconds)."""
    import re
    source = (ROOT / "benchmarks" / "peers.py").read_text()
    return re.findall(r'^\s+Workload\(\s*"(\w)"', source, flags=re.M) or list("abcdefgh")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", help="the first tree's src folder")
    ap.add_argument("after", help="the second tree's src folder")
    ap.add_argument("--workloads", default="a,b,c,d,e,f", help="peers.py workload keys")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--start", action="store_true", help="time cold and warm start-up instead")
    ap.add_argument("--args", default="", help="with --start: more options for fastdnn train, "
                    "such as '--batch-size 1 --epochs 2' (one string)")
    ap.add_argument("--pause", type=float, default=3.0,
                    help="with --start: seconds to wait after each cold run, for its compile "
                    "helper to finish the work it goes on with after the run (default 3)")
    ap.add_argument("--env-before", action="append", default=[], metavar="NAME=VALUE",
                    help="an environment variable for the first tree's runs only")
    ap.add_argument("--env-after", action="append", default=[], metavar="NAME=VALUE",
                    help="an environment variable for the second tree's runs only")
    args = ap.parse_args(argv)
    trees = {"before": args.before, "after": args.after}
    for tag, src in trees.items():  # a tree without the package measured the installed one
        if not (Path(src) / "fastdnn" / "__init__.py").is_file():
            ap.error(f"{tag}: no fastdnn package in {src} (give the tree's src folder)")
    if args.rounds < 1:
        ap.error(f"--rounds must be at least 1; got {args.rounds}")
    if args.pause < 0:
        ap.error(f"--pause must be >= 0; got {args.pause:g}")
    for setting in args.env_before + args.env_after:
        if "=" not in setting or setting.startswith("="):
            ap.error(f"--env-before/--env-after take NAME=VALUE; got {setting!r}")
    unknown = [k for k in args.workloads.split(",") if k not in _workloads()]
    if not args.start and unknown:
        ap.error(f"unknown workload {unknown[0]!r}; choose from {','.join(_workloads())}")
    extra = {"before": dict(v.split("=", 1) for v in args.env_before),
             "after": dict(v.split("=", 1) for v in args.env_after)}
    if args.start:
        walls = {tag: ([], []) for tag in trees}
        options = args.args.split()
        for r in range(args.rounds):
            order = list(trees.items()) if r % 2 == 0 else list(trees.items())[::-1]
            for tag, src in order:
                with tempfile.TemporaryDirectory() as cache:
                    cold = start_seconds(src, cache, extra[tag], options)
                    time.sleep(args.pause)
                    warm = start_seconds(src, cache, extra[tag], options)
                walls[tag][0].append(cold[0])
                walls[tag][1].append(warm[0])
                print(f"round {r + 1} {tag:6s} cold {cold[0]:6.2f} s wall {cold[1]:6.2f} s cpu"
                      f"   warm {warm[0]:5.2f} s wall {warm[1]:5.2f} s cpu", flush=True)
        for tag, (cold, warm) in walls.items():
            print(f"median {tag:6s} cold {statistics.median(cold):6.2f} s wall   "
                  f"warm {statistics.median(warm):5.2f} s wall")
        return 0
    for workload in args.workloads.split(","):
        rates = {tag: [] for tag in trees}
        for _ in range(args.rounds):
            for tag, src in trees.items():
                rates[tag].append(samples_per_second(src, workload, extra[tag]))
        best = {tag: max(values) for tag, values in rates.items()}
        print(f"{workload}: before {best['before']:12,.0f}  after {best['after']:12,.0f} "
              f"samples/s  after/before {best['after'] / best['before']:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
