"""Where a cold start's compile time goes: each Numba dispatcher's compile seconds.

Runs ``fastdnn train --epochs 2`` in this process with an empty ``NUMBA_CACHE_DIR`` and
listens to Numba's ``numba:compile`` events; prints the slowest dispatchers with each
compile's seconds and nesting depth (``@0`` top level; a callee's time is included in
its caller's).  Without the compile helper (``FASTDNN_WARMUP=0``), so that every
compile happens here and is counted::

    python benchmarks/compile_profile.py [--top 25]
"""
import argparse
import os
import shutil
import tempfile
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args(argv)
    if args.top < 1:  # -1 dropped the last row, silently
        ap.error(f"--top must be at least 1; got {args.top}")
    cache = tempfile.mkdtemp(prefix="fastdnn-compile-profile-")
    try:  # the empty cache every run starts from, removed after (each run left ~1 MB)
        os.environ["NUMBA_CACHE_DIR"] = cache
        _profile(args)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _profile(args):
    os.environ["FASTDNN_WARMUP"] = "0"
    from numba.core import event  # after NUMBA_CACHE_DIR: numba reads it at import

    compiles, stack = {}, []

    class Listener(event.Listener):
        def on_start(self, ev):
            dispatcher = ev.data.get("dispatcher")
            name = dispatcher.py_func.__qualname__ if dispatcher is not None else "?"
            stack.append((name, time.perf_counter()))

        def on_end(self, ev):
            name, started = stack.pop()
            compiles.setdefault(name, []).append((time.perf_counter() - started, len(stack)))

    event.register("numba:compile", Listener())
    from fastdnn.cli import main as cli

    start = time.perf_counter()
    cli(["train", "--quiet", "--no-save", "--epochs", "2"])
    print(f"total {time.perf_counter() - start:.2f} s")
    slowest = sorted(compiles.items(), key=lambda kv: -max(s for s, _ in kv[1]))
    for name, runs in slowest[:args.top]:
        print(f"{name:40s} " + " ".join(f"{s:.2f}s@{depth}" for s, depth in runs))


if __name__ == "__main__":
    main()
