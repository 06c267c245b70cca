"""Compare fastdnn settings epoch by epoch: one long-lived worker per setting, alternated.

Single training epochs go to the workers in turn, and the report is built on the pairs:
the median of the per-pair time ratios and the share of pairs each side won.

On a shared machine the load drifts from minute to minute, and a fresh process per round
(``benchmarks/ab_trees.py``) samples each side at other minutes.  Here each setting keeps
one worker process that has loaded and warmed up its net once; the driver asks the
workers for one epoch each in turn, so the two epochs of a pair ran seconds apart, under
nearly the same host conditions.  Who goes first rotates from pair to pair, and before each
epoch the driver pauses (``--pause``, 0.2 s) while the threads of the previous worker
(OpenBLAS, OpenMP), which spin on for a while, go idle.  The report gives per setting the
median, min, 90th percentile and max epoch time; for each setting after the first, the
median over pairs of its time / the first setting's time (< 1: faster) and the share of
pairs each side won; and the same per segment of consecutive pairs (``--segment``), with
the 1-minute load at each segment's start, so quiet and busy minutes show separately::

    python benchmarks/paired_epochs.py --workload f --pairs 100 fastdnn FASTDNN_BLAS=scipy
    python benchmarks/paired_epochs.py --workload e fastdnn OPENBLAS_CORETYPE=Haswell
    python benchmarks/paired_epochs.py --workload d fastdnn src=/tmp/before/src jax
    python benchmarks/paired_epochs.py --workload c fastdnn fastdnn   # the noise floor

A setting is ``fastdnn`` (as it is), ``NAME=VALUE[,NAME=VALUE...]`` (environment
variables for that worker), ``src=PATH`` (a source tree's ``src`` folder, first on the
worker's ``PYTHONPATH``, as ``git worktree add /tmp/before <commit>`` makes one), the two
combined (``src=/tmp/before/src,FASTDNN_BLAS=scipy``), or ``jax`` (the same net as one
``jax.jit`` of a ``lax.scan`` over the batches, a reference peer; ``jax,NAME=VALUE`` sets
its environment).  Values cannot hold commas.  Each worker gets the driver's environment
with its setting's variables on top, without ``NUMBA_ENABLE_CUDASIM``; a fastdnn worker's
Numba cache is a folder named by a hash of its tree's sources, as in
``benchmarks/peers.py`` (unless ``NUMBA_CACHE_DIR`` is set), so that an edited tree never
runs stale cached code.

The workloads are ``benchmarks/peers.py``'s (``--workload``, a key of
``peers.WORKLOADS``), in float32, from the same initial weights and data.  A fastdnn
worker trains through the public API (``MLP``, ``set_weights``, ``SGD(lr, momentum=0)``,
``Constant()``, ``shuffle=False``), one ``fit(epochs=1)`` per request, timed around the
whole call; each worker runs one epoch as a warm-up (compiling or loading the cache)
before it reports ready.  The training goes on from epoch to epoch, as in a real fit.
``--json PATH`` writes the per-pair times.  Not on Windows (``select`` on pipes).

Name the CPU with its figures (the report's first line does); the load it prints
includes the workers' own.
"""
import argparse
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SYSTEMS = ("fastdnn", "jax")
#: Lines of a failed worker's stderr shown in the driver's error.
TAIL_LINES = 20


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Setting:
    """One side of the comparison: what a worker trains with, and in which environment.

    Attributes
    ----------
    text : str
        The setting as given on the command line.
    system : str
        ``"fastdnn"`` or ``"jax"``.
    src : str or None
        A source tree's ``src`` folder to put first on ``PYTHONPATH`` (fastdnn only).
    env : dict
        Environment variables for the worker, on top of the driver's.
    """

    text: str
    system: str = "fastdnn"
    src: str = None
    env: dict = field(default_factory=dict)


def parse_setting(text):
    """Parse one positional setting of the command line.

    Parameters
    ----------
    text : str
        ``fastdnn``, ``jax``, ``NAME=VALUE[,NAME=VALUE...]``, ``src=PATH``, or
        comma-separated combinations (``src=/tmp/old/src,FASTDNN_BLAS=scipy``,
        ``jax,XLA_FLAGS=...``).

    Returns
    -------
    Setting

    Raises
    ------
    ValueError
        With a message for the user: an item that is neither a system nor
        ``NAME=VALUE``, two systems, ``src=`` for JAX, or a ``src`` folder without a
        ``fastdnn`` package in it.
    """
    system, src, env = None, None, {}
    for item in text.split(","):
        name, eq, value = item.partition("=")
        if not eq:
            if item not in SYSTEMS:
                raise ValueError(f"setting {text!r}: {item!r} is neither "
                                 f"{' nor '.join(SYSTEMS)} nor NAME=VALUE")
            if system is not None:
                raise ValueError(f"setting {text!r}: more than one system")
            system = item
        elif not name.isidentifier():
            raise ValueError(f"setting {text!r}: {name!r} is not a variable name")
        elif name == "src":
            package = Path(value) / "fastdnn" / "__init__.py"
            if not package.is_file():
                raise ValueError(f"setting {text!r}: no fastdnn package in {value!r} "
                                 f"(src= takes a tree's src folder, e.g. /tmp/before/src)")
            src = str(Path(value).resolve())
        else:
            env[name] = value
    system = system or "fastdnn"
    if system == "jax" and src is not None:
        raise ValueError(f"setting {text!r}: src= is for fastdnn trees, not jax")
    return Setting(text, system, src, env)


def worker_env(setting, base):
    """The environment of a setting's worker.

    Parameters
    ----------
    setting : Setting
    base : mapping
        The driver's environment (``os.environ``).

    Returns
    -------
    dict
        ``base`` without ``NUMBA_ENABLE_CUDASIM`` (the test suite's CUDA simulator would
        reroute Numba), with the setting's variables, its ``src`` folder first on
        ``PYTHONPATH``, and for fastdnn a ``NUMBA_CACHE_DIR`` named by a hash of its
        sources, as ``benchmarks/peers.py`` names its workers' (``_fastdnn_cache_dir``),
        unless one is set.
    """
    import peers

    env = {k: v for k, v in base.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env.update(setting.env)
    if setting.src is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (setting.src, env.get("PYTHONPATH"))
                                            if p)
    if setting.system == "fastdnn" and "NUMBA_CACHE_DIR" not in env:
        cache = peers._fastdnn_cache_dir(
            None if setting.src is None else Path(setting.src) / "fastdnn")
        if cache is not None:
            env["NUMBA_CACHE_DIR"] = cache
    return env


# --------------------------------------------------------------------------- summaries
def epoch_stats(seconds):
    """Median, min, 90th percentile (linear) and max of epoch times, in milliseconds.

    Parameters
    ----------
    seconds : sequence of float

    Returns
    -------
    dict
        Keys ``median``, ``min``, ``p90``, ``max``.
    """
    ms = np.asarray(seconds, dtype=float) * 1e3
    return dict(median=float(np.median(ms)), min=float(ms.min()),
                p90=float(np.percentile(ms, 90)), max=float(ms.max()))


def compare(base, other):
    """Paired comparison of two settings' epoch times.

    Parameters
    ----------
    base, other : sequence of float
        The times of the same pairs, ``base[i]`` and ``other[i]`` from pair ``i``.

    Returns
    -------
    (float, float, float)
        The median of ``other[i] / base[i]`` (< 1: ``other`` is faster), the share of
        pairs where ``other`` was faster, and the share where ``base`` was (ties count
        for neither).
    """
    base, other = np.asarray(base, float), np.asarray(other, float)
    if len(base) != len(other) or not len(base):
        raise ValueError(f"need the same number of pairs, not {len(base)} and {len(other)}")
    return (float(np.median(other / base)), float(np.mean(other < base)),
            float(np.mean(base < other)))


def segments(n, size):
    """``(start, stop)`` of consecutive segments of ``size`` pairs out of ``n``; the last
    one may be shorter."""
    if size < 1:
        raise ValueError(f"segment size must be >= 1, not {size}")
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def report(labels, settings, times, loads, segment):
    """The text of the report (without the header the driver prints first).

    Parameters
    ----------
    labels : list of str
        A letter per setting (``A``, ``B``, ...), as ratios name them.
    settings : list of str
        The settings' texts.
    times : list of list of float
        Per setting, its epoch seconds in pair order.
    loads : list of float or None
        The 1-minute load before each pair.
    segment : int
        Pairs per segment.

    Returns
    -------
    list of str
    """
    width = max(len(s) for s in settings) + 2
    lines = [f"{'epoch ms':{width + 2}s} {'median':>9s} {'min':>9s} {'p90':>9s} {'max':>9s}"]
    for label, text, secs in zip(labels, settings, times):
        s = epoch_stats(secs)
        lines.append(f"{label} {text:{width}s} {s['median']:9.2f} {s['min']:9.2f} "
                     f"{s['p90']:9.2f} {s['max']:9.2f}")
    a = labels[0]
    for label, secs in zip(labels[1:], times[1:]):
        ratio, won, lost = compare(times[0], secs)
        lines += ["", f"{label}/{a}: median ratio {ratio:.3f} over {len(secs)} pairs "
                      f"(< 1: {label} faster); {label} faster in {won:.0%} of pairs, "
                      f"{a} in {lost:.0%}",
                  f"{'pairs':>9s} {label + '/' + a:>7s} {label + ' won':>6s} "
                  f"{a + ' ms':>9s} {'load':>5s}"]
        for start, stop in segments(len(secs), segment):
            r, w, _ = compare(times[0][start:stop], secs[start:stop])
            load = loads[start]
            lines.append(f"{f'{start + 1}-{stop}':>9s} {r:7.3f} {w:6.0%} "
                         f"{statistics.median(times[0][start:stop]) * 1e3:9.2f} "
                         + f"{_fmt_load(load):>5s}")
    return lines


def load1():
    """The 1-minute load average, or None where the OS has none."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _fmt_load(load):
    return "?" if load is None else f"{load:.2f}"


# --------------------------------------------------------------------------- worker
def fastdnn_epoch(wl, X, y, weights):
    """A function that trains one epoch with fastdnn and returns its wall seconds, and a
    line naming the fastdnn that runs (its folder and BLAS)."""
    import fastdnn as fd

    net = fd.MLP(list(wl.sizes), activation=wl.activation, loss=wl.loss, dtype="float32",
                 seed=0)
    net.set_weights([(W.copy(), b.copy()) for W, b in weights])
    opt = fd.SGD(lr=wl.lr, momentum=0.0)

    def epoch():
        start = time.perf_counter()
        net.fit(X, y, epochs=1, batch_size=wl.batch, optimizer=opt, schedule=fd.Constant(),
                shuffle=False)
        return time.perf_counter() - start

    def describe():
        # After the warm-up: the BLAS is bound by the first fit.  Private, and absent
        # from old trees, hence getattr.
        try:
            from fastdnn.kernels.cpu import blas
            library = getattr(blas, "_prepared", None) or "?"
        except ImportError:
            library = "?"
        return f"fastdnn {Path(fd.__file__).parent}, BLAS {library}"

    return epoch, describe


def jax_epoch(wl, X, y, weights):
    """A function that trains one epoch with JAX (``benchmarks/peers.py``'s JAX worker:
    one ``jax.jit`` of a ``lax.scan`` of SGD steps over the batches) and returns its wall
    seconds, and a line naming JAX."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")  # a CPU comparison, even beside a GPU
    import jax
    import peers

    run_epoch, _, _ = peers.jax_epoch(wl, X, y, weights)

    def epoch():
        start = time.perf_counter()
        run_epoch()
        return time.perf_counter() - start

    return epoch, lambda: f"jax {jax.__version__} ({jax.default_backend()})"


def serve(system, key):
    """Body of ``--worker``: warm up, print ``ready``, then train one epoch per line read
    from stdin and print its seconds, until stdin closes.

    The replies go to the original stdout; anything else that would be printed there
    (by Python or by C libraries) goes to stderr, so it cannot break the protocol.
    """
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    import peers

    wl = peers.WORKLOADS[key]
    X, y = peers.make_data(wl, wl.n)
    weights = peers.init_weights(wl.sizes)
    epoch, describe = (fastdnn_epoch if system == "fastdnn" else jax_epoch)(wl, X, y,
                                                                            weights)
    epoch()
    if system == "fastdnn":
        peers._until_the_compile_helper_is_done()
    replies.write(f"ready\t{describe()}\n")
    while sys.stdin.readline():
        replies.write(f"{epoch():.6f}\n")
    return 0


# --------------------------------------------------------------------------- driver
class Worker:
    """One setting's worker process, its stderr kept in a temporary file (a pipe nobody
    reads could fill up over a long run and stall the worker)."""

    def __init__(self, label, setting, workload):
        self.label, self.setting = label, setting
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", setting.system,
             "--workload", workload],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
            env=worker_env(setting, os.environ))

    def fail(self, why, hung=False):
        """Raise SystemExit naming this worker, with the tail of its stderr; kill it
        first if it ``hung``, else give it a moment to finish exiting (its stdout closes
        before it is gone) for its exit status."""
        try:
            self.proc.wait(timeout=0 if hung else 5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.seek(0)
        tail = self.stderr.read().strip().splitlines()[-TAIL_LINES:]
        raise SystemExit(f"worker {self.label} ({self.setting.text}) {why} "
                         f"(exit status {self.proc.returncode}); its stderr ends:\n"
                         + ("\n".join(tail) or "(empty)"))

    def reply(self, timeout):
        """The worker's next line, or :meth:`fail` if it exits or is silent for
        ``timeout`` seconds."""
        # One line at a time each way, so nothing is left in the reader's buffer that
        # select would not see.
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.fail(f"did not answer in {timeout:g} s", hung=True)
        line = self.proc.stdout.readline()
        if not line:
            self.fail("exited")
        return line.rstrip("\n")

    def epoch(self, timeout):
        """Ask for one epoch; its seconds."""
        try:
            self.proc.stdin.write("go\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            self.fail("exited")
        line = self.reply(timeout)
        try:
            return float(line)
        except ValueError:
            self.fail(f"answered {line!r}, not seconds", hung=True)

    def close(self, graceful=True):
        """End the worker: close its stdin (its loop ends) and kill it if it lingers, or
        with ``graceful=False`` (another worker failed) kill it at once, since it may
        still be warming up."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10 if graceful else 0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


def drive(args, settings):
    """Start the workers, run the pairs, print the report; write ``--json``."""
    import peers

    labels = [chr(ord("A") + i) for i in range(len(settings))]
    machine = peers._machine()  # the CPU as docs/peers.md names it
    print(f"CPU: {machine}; load (1 min) at start {_fmt_load(load1())}", flush=True)
    workers, done = [], False
    try:
        # All at once: the warm-ups (compiling, or loading the cache) overlap.
        for label, setting in zip(labels, settings):
            workers.append(Worker(label, setting, args.workload))
        infos = []
        for w in workers:
            line = w.reply(args.timeout)
            if not line.startswith("ready"):
                w.fail(f"said {line!r} instead of ready", hung=True)
            infos.append(line.partition("\t")[2])
        wl = peers.WORKLOADS[args.workload]
        print(f"workload {wl.key}: {wl.title}, {wl.n} samples an epoch; {args.pairs} pairs, "
              f"pause {args.pause:g} s", flush=True)
        for w, info in zip(workers, infos):
            print(f"{w.label} {w.setting.text}: {info}", flush=True)
        times = [[] for _ in workers]
        loads, firsts = [], []
        for i in range(args.pairs):
            loads.append(load1())
            # Who goes first rotates from pair to pair, so that no setting always runs
            # right after the same other one.
            first = i % len(workers)
            firsts.append(first)
            for j in list(range(first, len(workers))) + list(range(first)):
                # Threads of the previous worker (OpenBLAS, OpenMP) may still spin for
                # a while after its epoch and would slow this one down.
                time.sleep(args.pause)
                times[j].append(workers[j].epoch(args.timeout))
            if (i + 1) % args.segment == 0 and i + 1 < args.pairs:
                print(f"[{i + 1}/{args.pairs} pairs]", file=sys.stderr, flush=True)
        done = True
    finally:
        for w in workers:
            w.close(graceful=done)
    print("\n".join(report(labels, [s.text for s in settings], times, loads, args.segment)))
    print(f"load (1 min) at end {_fmt_load(load1())}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(dict(
            cpu=machine, workload=args.workload, pause_s=args.pause,
            settings=[dict(label=w.label, setting=w.setting.text, worker=info, seconds=t)
                      for w, info, t in zip(workers, infos, times)],
            first=firsts, load1=loads), indent=1))
        print(f"wrote {args.json}")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("settings", nargs="*", metavar="setting",
                    help="fastdnn | jax | NAME=VALUE[,NAME=VALUE...] | src=PATH[,...]; "
                    "two or more, the first is the base of the ratios")
    ap.add_argument("--workload", default="e", help="a benchmarks/peers.py workload key "
                    "(default e)")
    ap.add_argument("--pairs", type=int, default=50, help="epochs per setting (default 50)")
    ap.add_argument("--segment", type=int, default=20,
                    help="pairs per segment of the report (default 20)")
    ap.add_argument("--pause", type=float, default=0.2,
                    help="seconds to wait before each epoch, for the previous worker's "
                    "threads to go idle (default 0.2)")
    ap.add_argument("--timeout", type=float, default=600.0,
                    help="seconds a worker may take for its warm-up or an epoch before "
                    "the run stops (default 600)")
    ap.add_argument("--json", metavar="PATH", help="write the per-pair times here")
    ap.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))
    import peers

    if args.workload not in peers.WORKLOADS:
        ap.error(f"--workload must be one of {', '.join(peers.WORKLOADS)}")
    if args.worker:
        return serve(args.worker, args.workload)
    if len(args.settings) < 2:
        ap.error("give at least two settings")
    if args.pairs < 1 or args.segment < 1:
        ap.error("--pairs and --segment must be at least 1")
    try:
        settings = [parse_setting(text) for text in args.settings]
    except ValueError as exc:
        ap.error(str(exc))
    return drive(args, settings)


if __name__ == "__main__":
    sys.exit(main())
