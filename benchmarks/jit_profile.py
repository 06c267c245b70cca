"""Where a running fit spends its time, down to the Numba function: ``perf`` samples of a
warm process, with the JIT-compiled addresses named through ``gdb``.

``perf`` alone shows Numba's code as anonymous ``[JIT]`` addresses, and most of a training
step is inlined into a few big functions, so this names each hot address's function
(``gdb info symbol``) and sums the samples per function; ``--disassemble N`` also prints
the instructions around the N hottest addresses (scalar ``vmaxsd`` where ``vmaxpd`` was
expected, a ``vdivpd``-bound loop, ...; the first lines, decoded from 48 bytes before the
address, may start mid-instruction).  The findings of ``docs/sklearn.md``'s speed
section came from this.  Needs ``perf`` and ``gdb`` (Linux) and permission to attach::

    python benchmarks/jit_profile.py                          # digits, float64, Adam
    python benchmarks/jit_profile.py --dtype float32 --disassemble 4
    python benchmarks/jit_profile.py --workload "fd.MLP([32, 100, 4], dtype='float64')" \\
        --data synthetic
    python benchmarks/jit_profile.py --data course --dtype float32 \\
        --workload "fd.MLP([2, 8, 8, 1], activation='tanh', loss='mse', dtype=dtype)" \\
        --fit "net.fit(X, y, epochs=5, batch_size=1, optimizer=fd.SGD(lr=0.05), shuffle=False)"

The workload runs in a child process: one untimed fit loads or compiles the kernels,
then fits repeat while ``perf record -p`` samples for ``--seconds``.
"""
import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import os, sys, time, warnings
import numpy as np
import fastdnn as fd
warnings.simplefilter("ignore")
dtype, data, workload, fit, ready = sys.argv[1:6]
if data == "course":  # the course's online SGD: y = x1 * x2 on [-1, 1]^2
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (2000, 2))
    y = X[:, 0] * X[:, 1]
elif data == "wide":  # MNIST-sized rows (784 features, 10 classes), random
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4096, 784))
    y = rng.integers(0, 10, 4096)
elif data == "digits":
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    X = ((X - X.mean(0)) / (X.std(0) + 1e-12))[:1347]
    y = y[:1347]
else:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100_000, 32))
    y = rng.integers(0, 4, 100_000)
X = X.astype(dtype)
net = eval(workload, {"fd": fd, "X": X, "dtype": dtype})
exec(fit.replace("X, y", "X[:256], y[:256]"))
open(ready, "w").write(str(os.getpid()))
while True:
    exec(fit)
"""


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw).stdout


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--data", choices=("digits", "synthetic", "course", "wide"), default="digits")
    ap.add_argument("--workload",
                    default="fd.MLP([X.shape[1], 100, 10], dtype=dtype, l2=5e-7, seed=0)",
                    help="expression building the net (names: fd, X, dtype)")
    ap.add_argument("--fit", default="net.fit(X, y, epochs=5, batch_size=200)",
                    help="statement fitting the net (names: fd, net, X, y)")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--top", type=int, default=300, help="hot addresses to name")
    ap.add_argument("--disassemble", type=int, default=0, metavar="N")
    args = ap.parse_args(argv)
    for tool in ("perf", "gdb"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed: this profile needs perf and gdb")

    tmp = tempfile.mkdtemp(prefix="fastdnn-jit-profile-")
    ready, data = os.path.join(tmp, "ready"), os.path.join(tmp, "perf.data")
    child = subprocess.Popen([sys.executable, "-c", CHILD, args.dtype, args.data,
                              args.workload, args.fit, ready])
    try:
        while not os.path.exists(ready) or not open(ready).read():
            if child.poll() is not None:
                raise SystemExit("the workload failed before its first fit")
            time.sleep(0.1)
        time.sleep(0.5)  # into the timed fits
        pid = str(child.pid)
        subprocess.run(["perf", "record", "-q", "-o", data, "-p", pid, "--", "sleep",
                        str(args.seconds)], capture_output=True)
        report = run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,sym",
                      "--stdio"])
        rows = []
        for line in report.splitlines():
            m = re.match(r"\s*([\d.]+)%\s+(.+?)\s+\[[.k]\]\s+(\S.*)$", line)
            if m:
                rows.append((float(m.group(1)), m.group(2).strip(), m.group(3).strip()))
        by_dso = collections.Counter()
        for pct, dso, _ in rows:
            by_dso["[JIT]" if dso.startswith("[JIT]") else dso] += pct
        print(f"perf: {args.seconds:.0f} s of pid {pid} ({args.workload}, {args.dtype}, "
              f"{args.data})\n\nby library:")
        for dso, pct in by_dso.most_common(8):
            print(f"  {pct:6.2f}%  {dso}")
        jit = [(pct, sym) for pct, dso, sym in rows if dso.startswith("[JIT]")][:args.top]
        if not jit:
            return
        gdb = ["gdb", "-q", "-batch", "-p", pid]
        for _, addr in jit:
            gdb += ["-ex", f"info symbol {addr}"]
        for _, addr in jit[:args.disassemble]:
            gdb += ["-ex", f"echo ==== {addr}\\n", "-ex", f"x/24i {addr}-48"]
        out = run(gdb)
        names = [line for line in out.splitlines() if " in section " in line]
        by_fn = collections.Counter()
        for (pct, _), line in zip(jit, names):
            fn = re.sub(r"\[abi:[^\]]*\]", "", line.split(" + ")[0].split(" in section")[0])
            by_fn[fn.split("(")[0].strip()] += pct
        print(f"\nJIT code by Numba function (the {len(jit)} hottest addresses):")
        for fn, pct in by_fn.most_common(20):
            print(f"  {pct:6.2f}%  {fn}")
        if args.disassemble:
            print("\n" + "\n".join(re.sub(r"<[^>]{40,}>", "", line)
                                   for line in out.splitlines()
                                   if line.startswith(("====", "   0x"))))
    finally:
        child.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
