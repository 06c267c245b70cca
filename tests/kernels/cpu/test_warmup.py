"""The compile helper (:mod:`fastdnn.kernels.cpu.warmup`): it compiles into the cache
exactly what a fit then loads instead of compiling; a fit with it gives the same bits;
a helper that fails or hangs costs a fit nothing but its wait; and it starts only where
it can help.

Each case runs fresh interpreters on an empty Numba cache of its own (a few seconds of
compiling each).
"""
import json
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

import fastdnn as fd
from fastdnn import config
from fastdnn.kernels import spec
from fastdnn.kernels.cpu import backend, blas, train, warmup
from fastdnn.kernels.cpu.losses import compile_head
from support import record_epoch_kernels, run_python

# (dtype, loss, activation, sizes): a classifier and a regressor, one of each dtype.
NETS = [("float32", "cross_entropy", "relu", [5, 7, 3]),
        ("float64", "mse", "tanh", [4, 6, 6, 2])]

# The fit each child runs, and what it prints: per helped function its cache hits and
# misses in this process, then the weights (for the bit comparison), as JSON.
FIT = """
import json, os, sys
import numpy as np
import fastdnn as fd
from fastdnn.kernels.cpu import warmup
{setup}
dtype, loss, activation, sizes = {net!r}
rng = np.random.default_rng(0)
X = rng.normal(size=({rows}, sizes[0])).astype(dtype)
y = (rng.integers(0, sizes[-1], {rows}) if loss == "cross_entropy"
     else rng.normal(size=({rows}, sizes[-1])))
net = fd.MLP(sizes, activation=activation, loss=loss, dtype=dtype, seed=0)
net.fit(X, y, epochs=2, batch_size={batch_size}, optimizer="sgd", validation_data=(X, y))
stats = {{}}
for name in set(warmup.HELPED + warmup.HELPED_STACKED + warmup.HELPED_ONLINE
               + warmup.HELPED_PARALLEL + warmup.HEADS
               + ("fastdnn.kernels.cpu.checks:all_finite",)):
    s = warmup._dispatcher(name).stats
    stats[name] = [sum(s.cache_hits.values()), sum(s.cache_misses.values())]
helper = warmup._helper
forked = None if helper is None else isinstance(helper.process, warmup._Child)
code = None if helper is None else helper.close()
claims_left = helper is not None and bool(helper.claims) and os.path.exists(helper.claims)
print(json.dumps(dict(stats=stats, weights=[[W.tolist(), b.tolist()] for W, b in net.get_weights()],
                      helper=code, forked=forked, claims_left=claims_left)))
"""


def run_fit(net, cache, setup="", batch_size=8, rows=40, **env):
    """The parsed output of :data:`FIT` for ``net`` in a fresh interpreter on ``cache``."""
    # Block-buffered stdout, as in a pipe: a forked helper must not write the parent's.
    environ = {k: v for k, v in os.environ.items()
               if k not in ("NUMBA_ENABLE_CUDASIM", "PYTHONUNBUFFERED")}
    environ.update(NUMBA_CACHE_DIR=str(cache), **env)
    code = FIT.format(net=tuple(net), setup=textwrap.dedent(setup), batch_size=batch_size,
                      rows=rows)
    proc = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dict(json.loads(proc.stdout.splitlines()[-1]), stdout=proc.stdout)


#: A child's set-up line making its helper a new interpreter (``sys.executable``), not a fork.
SPAWN = "warmup._forkable = lambda net: False\n"


def helper_config(net, batch_size, stacked=False):
    dtype, loss, activation, sizes = net
    codes = [spec.activation_code(activation)] * (len(sizes) - 2)
    return dict(sizes=sizes, codes=codes, loss=spec.loss_code(loss), dtype=dtype,
                online=batch_size == 1, rows=[batch_size], stacked=stacked)


def called(online, stacked=False, net=None):
    """Helped functions that every fit with validation calls (the BLAS wrappers only where
    a product is large enough; online SGD inlines its own pass, and calls its kernel's
    callees, the loss head, and the wide layers' update where the ``net`` has one; a batch
    fit compiles its shuffle itself; plain SGD's fused kernel calls its own pass and
    update)."""
    prefix = "fastdnn.kernels.cpu.train:"
    names = [prefix + "forward_chunks", prefix + "loss_of_logits"]
    if online:
        wide = warmup._has_wide_layer(net[3])
        head = "fastdnn.kernels.cpu.losses:" + (
            "cross_entropy_head" if net[1] == "cross_entropy" else "squared_error_head")
        return names + [head] + [name for name in warmup.SHARED_ONLINE
                                 if wide or name not in warmup.WIDE_ONLINE]
    if stacked:
        return names + [prefix + "loss_and_deltas", prefix + "_batch_sgd_update",
                        "fastdnn.kernels.cpu.blas:matmul_tn_add"]
    return names + [prefix + "loss_and_gradient"]


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    """:data:`FIT` of ``NETS[0]`` on an empty cache of its own, without a helper."""
    return run_fit(NETS[0], tmp_path_factory.mktemp("alone"), FASTDNN_WARMUP="0")


# A net whose products at batch 256 reach both parallel regions: the hidden layer's in
# column blocks, the 4-wide output's in row blocks (blas.parallel_callees).
WIDE = ("float32", "cross_entropy", "relu", [16, 2048, 4])


#: A child's set-up line making every net big enough for the wide kernels, whose plain
#: SGD fit then runs the fused ``train_steps_wide_sgd``.
ALL_WIDE = "fd.config.WIDE_UPDATE_PARAMS = 0\n"


# An online fit whose hidden layer is wide enough for the fused update (FUSED_MIN_WIDTH).
ONLINE_WIDE = ("float64", "mse", "tanh", [4, 66, 2])


@pytest.mark.parametrize("net,batch_size,stacked", [
    (NETS[0], 8, False), (NETS[1], 8, False), (NETS[0], 1, False), (ONLINE_WIDE, 1, False),
    (WIDE, 256, False), (NETS[1], 8, True)],
    ids=["float32-cross_entropy", "float64-mse", "float32-online", "float64-online-wide",
         "float32-parallel", "float64-fused-sgd"])
def test_the_helper_compiles_what_a_fit_then_loads(tmp_path, net, batch_size, stacked):
    """Run alone first, the helper leaves the cache with every function a fit of that net
    calls, for the very types the fit passes: the fit compiles none of them."""
    environ = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    environ["NUMBA_CACHE_DIR"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "fastdnn.kernels.cpu.warmup",
                           json.dumps(helper_config(net, batch_size, stacked))], env=environ,
                          capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    reported = proc.stdout.split()
    rows = 512 if net is WIDE else 40
    result = run_fit(net, tmp_path, batch_size=batch_size, rows=rows,
                     setup=ALL_WIDE if stacked else "", FASTDNN_WARMUP="0")
    assert result["helper"] is None
    parallel = warmup.HELPED_PARALLEL if net is WIDE else ()
    for name in called(batch_size == 1, stacked, net) + list(parallel):
        assert name in reported, f"the helper did not report {name} saved"
        assert result["stats"][name][0] > 0, f"the fit did not load {name}"
    # And the checks' scan, for the next process (checks.finite).
    assert result["stats"]["fastdnn.kernels.cpu.checks:all_finite"][0] > 0
    helped = (warmup.HELPED_ONLINE if batch_size == 1 else
              warmup.HELPED_STACKED if stacked else warmup.HELPED)
    plan = (helped + parallel + ("fastdnn.kernels.cpu.checks:all_finite",)
            + (warmup.HEADS if batch_size == 1 else ()))
    for name, (hits, misses) in result["stats"].items():
        if name in plan:
            assert misses == 0, f"the fit compiled {name} anew: the helper's types differ"


@pytest.mark.parametrize("forked", [True, False], ids=["fork", "spawn"])
def test_a_fit_with_the_helper_loads_its_work_and_gives_the_same_bits(tmp_path, alone, forked):
    """Forked (where it may be) or a new interpreter, the helper compiles the pass the fit
    loads; a forked one writes none of the parent's unwritten output."""
    setup = "sys.stdout.write('written before the fit\\n')\n" + ("" if forked else SPAWN)
    helped = run_fit(NETS[0], tmp_path, setup=setup, FASTDNN_WARMUP="1")
    assert helped["stdout"].count("written before the fit") == 1
    assert helped["forked"] is forked
    assert helped["helper"] == 0 and alone["helper"] is None
    assert helped["weights"] == alone["weights"]
    hits, misses = helped["stats"]["fastdnn.kernels.cpu.train:loss_and_gradient"]
    assert (hits, misses) == (1, 0), "the fit compiled the pass itself"
    assert alone["stats"]["fastdnn.kernels.cpu.train:loss_and_gradient"] == [0, 1]
    assert helped["claims_left"] is False  # the folder of claims went with the helper


def test_either_process_claims_a_shared_function_once(tmp_path):
    claims = str(tmp_path)
    first, second = warmup.SHARED
    assert warmup._claim(claims, first, default=False)
    assert not warmup._claim(claims, first, default=True)  # the other process was first
    assert warmup._claim(claims, second, default=False)
    # Without a folder of claims the helper compiles, and the fit waits, as before claims.
    for gone in (None, str(tmp_path / "gone")):
        assert warmup._claim(gone, first, default=True)
        assert not warmup._claim(gone, first, default=False)
    warmup._remove(claims)
    assert not os.path.exists(claims)


class _Reports:
    """A helper process that reports what the test writes to its pipe, and never ends."""

    def __init__(self):
        read, self.write = os.pipe()
        self.stdout = open(read, "r")

    def report(self, name):
        os.write(self.write, (name + "\n").encode())

    def wait(self, timeout=None):
        import time
        time.sleep(600)

    def kill(self):
        pass


def test_the_fit_compiles_the_shared_functions_the_helper_has_not_begun(monkeypatch, tmp_path):
    """A lookup of a :data:`SHARED` function that the helper has not claimed claims it and
    goes on at once (this process compiles it); one the helper has claimed waits for the
    helper's save, after the tasks left to do meanwhile, which stop once it is saved."""
    import time

    fake = _Reports()
    monkeypatch.setattr(warmup, "_forkable", lambda net: False)
    monkeypatch.setattr(warmup, "_spawn", lambda net: fake)
    monkeypatch.setattr(warmup, "TIMEOUT", 30.0)
    net = dict(helper_config(NETS[0], 8), claims=str(tmp_path))
    done = []

    def save_first():  # the helper saves the awaited function while this task runs
        done.append("first")
        fake.report(second)
        while second not in helper.saved:
            time.sleep(0.01)

    first, second = warmup.SHARED
    helper = warmup.Helper(net, [save_first, lambda: done.append("second")])
    start = time.perf_counter()
    helper.wait_for(first)
    assert time.perf_counter() - start < 5 and done == []
    assert not warmup._claim(net["claims"], first, default=True)  # the fit holds it
    assert warmup._claim(net["claims"], second, default=False)  # as the helper would
    helper.wait_for(second)
    assert done == ["first"], "a task ran after the function it waited for was saved"
    assert helper.meanwhile and not helper.finished


def test_meanwhile_the_fit_compiles_what_the_helper_has_not_begun(monkeypatch, tmp_path):
    """The tasks a wait runs meanwhile compile, of the evaluation, only what the helper has
    not claimed; what this process claimed it never waits for."""
    import time

    monkeypatch.setattr(warmup, "_forkable", lambda net: False)
    monkeypatch.setattr(warmup, "_spawn", lambda net: _Reports())
    monkeypatch.setattr(warmup, "TIMEOUT", 0.2)
    first, second = warmup.SHARED
    assert warmup._claim(str(tmp_path), first, default=False)  # the helper began the first
    compiled = []
    helper = warmup.Helper(dict(helper_config(NETS[0], 8), claims=str(tmp_path)), [],
                           compiled.append)
    helper.wait_for(warmup.HELPED[0])
    assert compiled == [second] and helper.mine == {second}
    monkeypatch.setattr(warmup, "TIMEOUT", 30.0)
    start = time.perf_counter()
    helper.wait_for(second)
    assert time.perf_counter() - start < 5


def test_the_helper_leaves_the_shared_functions_the_fit_claimed(tmp_path):
    """The helper compiles, of the evaluation, only what the fit has not claimed, and
    removes the folder of claims when it is done."""
    claims = tmp_path / "claims"
    claims.mkdir()
    first, second = warmup.SHARED
    assert warmup._claim(str(claims), first, default=False)
    environ = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    environ["NUMBA_CACHE_DIR"] = str(tmp_path / "cache")
    net = dict(helper_config(NETS[0], 8), claims=str(claims))
    proc = subprocess.run([sys.executable, "-m", "fastdnn.kernels.cpu.warmup", json.dumps(net)],
                          env=environ, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    reported = proc.stdout.split()
    assert first not in reported and second in reported
    assert warmup.HELPED[0] in reported and reported[-1] == warmup.DONE
    assert not claims.exists()


@pytest.mark.parametrize("forked", [True, False], ids=["fork", "spawn"])
@pytest.mark.parametrize("program", ["exit", "hang"])
def test_a_helper_that_fails_or_hangs_costs_only_its_wait(tmp_path, alone, program, forked):
    """A helper that exits at once, or never answers (its waits end after TIMEOUT, and at
    exit it is killed): the fit compiles everything itself and gives the same bits."""
    marks = tmp_path / "atexit.txt"
    if forked:  # the child runs the parent's warmup module: its compile fails or hangs
        # A failing child ends there: none of the parent's exit handlers (nor its
        # buffers' flushes) run twice.
        setup = (f"import atexit, time\natexit.register(lambda: open({str(marks)!r}, 'a')"
                 ".write('parent\\n'))\n"
                 + ("warmup.compile_pass = lambda net: sys.exit(1)\n" if program == "exit"
                    else "warmup.compile_pass = lambda net: time.sleep(600)\n"))
    else:
        fake = tmp_path / "python"
        fake.write_text("#!/bin/sh\n" + ("exit 1\n" if program == "exit"
                                          else "exec sleep 600\n"))
        fake.chmod(0o755)
        setup = SPAWN + f"sys.executable = {str(fake)!r}\n"
    result = run_fit(NETS[0], tmp_path / "cache", setup="warmup.TIMEOUT = 0.5\n" + setup,
                     FASTDNN_WARMUP="1")
    assert result["forked"] is forked
    assert result["helper"] == (1 if program == "exit" else -9)
    if forked:
        assert marks.read_text() == "parent\n"
    assert result["stats"]["fastdnn.kernels.cpu.train:loss_and_gradient"] == [0, 1]
    assert result["weights"] == alone["weights"]


def test_the_helper_starts_only_where_it_can_help(monkeypatch):
    monkeypatch.setenv("FASTDNN_WARMUP", "1")
    monkeypatch.delitem(sys.modules, "mpi4py.MPI", raising=False)
    monkeypatch.setattr(blas, "cpu_count", lambda: 2)
    assert warmup.enabled() == bool(config.CACHE)
    monkeypatch.setattr(config, "CACHE", True)
    assert warmup.enabled()
    monkeypatch.setenv("FASTDNN_WARMUP", "0")
    assert not warmup.enabled()
    monkeypatch.setenv("FASTDNN_WARMUP", "1")
    monkeypatch.setattr(config, "CACHE", False)
    assert not warmup.enabled()
    monkeypatch.setattr(config, "CACHE", True)
    monkeypatch.setattr(blas, "cpu_count", lambda: 1)
    assert not warmup.enabled()
    monkeypatch.setattr(blas, "cpu_count", lambda: 2)
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", object())
    assert not warmup.enabled()


def test_each_fit_asks_for_its_own_helper_and_a_cached_pass_starts_none(monkeypatch):
    started = []
    monkeypatch.setattr(warmup, "start", lambda *args, **kw: started.append((args, kw)))
    X = np.zeros((6, 3))
    y = np.array([0, 1, 0, 1, 0, 1])
    net = fd.MLP([3, 4, 2], dtype="float64")
    net.fit(X, y, epochs=1, batch_size=1)
    net.fit(X, y, epochs=1, batch_size=3)
    config = ([3, 4, 2], net._codes, net._loss, np.dtype("float64"))
    assert [(args, kw["online"]) for args, kw in started] == [(config, True), (config, False)]
    # Batch fits compile their loss head while waiting; the online kernel inlines its own.
    assert started[0][1]["meanwhile"] is None
    assert started[1][1]["meanwhile"].func is compile_head
    monkeypatch.undo()
    # The pass is in the cache now (or caching is off, where no helper can help either).
    assert warmup._cached(warmup.HELPED[0])
    monkeypatch.setattr(warmup, "_helper", None)
    monkeypatch.setattr(warmup, "Helper", lambda net: pytest.fail("a helper started"))
    assert warmup.start([3, 4, 2], [1], 0, "float64") is None


@pytest.mark.parametrize("optimizer,options,stacked", [
    ("sgd", {}, True), (lambda: fd.SGD(lr=0.1), {}, True),
    (lambda: fd.SGD(lr=0.1, momentum=0.9), {}, False), ("sgd", dict(clip_norm=1.0), False),
    ("adam", {}, False)])
def test_a_fit_asks_its_helper_for_the_pass_its_kernel_calls(monkeypatch, optimizer, options,
                                                             stacked):
    started = []
    monkeypatch.setattr(warmup, "start", lambda *args, **kw: started.append(kw))
    monkeypatch.setattr(config, "WIDE_UPDATE_PARAMS", 0)
    kernels = record_epoch_kernels(monkeypatch, backend.CPUTrainer)
    X, y = np.zeros((6, 3)), np.array([0, 1, 0, 1, 0, 1])
    fd.MLP([3, 4, 2], dtype="float64").fit(
        X, y, epochs=1, batch_size=3, optimizer=optimizer if isinstance(optimizer, str)
        else optimizer(), **options)
    assert started[0]["stacked"] is stacked
    assert (kernels[0] is train.train_steps_wide_sgd) is stacked


def test_a_forked_child_never_waits_for_its_parents_helper(tmp_path):
    """A child forked while the helper runs has no thread reading it: its lookups and
    its exit go on at once instead of waiting TIMEOUT."""
    setup = f"""
    import os, time
    fake = {str(tmp_path / "python")!r}
    open(fake, "w").write("#!/bin/sh\\nexec sleep 600\\n")
    os.chmod(fake, 0o755)
    sys.executable = fake
    warmup._forkable = lambda net: False
    from fastdnn.kernels import spec
    helper = warmup.start([3, 4, 2], [spec.RELU], spec.MSE, "float64")
    assert helper is not None
    pid = os.fork()
    if pid == 0:
        start = time.perf_counter()
        helper.wait_for(warmup.HELPED[0])
        code = helper.close()
        os._exit(0 if code is None and time.perf_counter() - start < 5 else 1)
    assert os.waitpid(pid, 0)[1] == 0
    warmup.TIMEOUT = 0.5
    """
    result = run_fit(NETS[0], tmp_path / "cache", setup=setup, FASTDNN_WARMUP="1")
    assert result["helper"] == -9  # the parent's own helper, killed at its exit


def test_while_a_helper_runs_checks_need_no_compile_and_it_compiles_the_head(tmp_path):
    """While a helper runs, the argument checks use NumPy (the scan is not compiled here)
    and still refuse NaN; the first wait for the helper compiles the loss head instead."""
    setup = f"""
    import os
    fake = {str(tmp_path / "python")!r}
    open(fake, "w").write("#!/bin/sh\\nexec sleep 600\\n")
    os.chmod(fake, 0o755)
    sys.executable = fake
    warmup._forkable = lambda net: False
    warmup.TIMEOUT = 0.5
    from fastdnn.kernels import spec
    from fastdnn.kernels.cpu import checks, losses
    from fastdnn.validation import check_X
    compiled = []
    helper = warmup.start([3, 4, 2], [spec.RELU], spec.MSE, "float64",
                          meanwhile=lambda: compiled.append(1) or 1 / 0)
    assert warmup.helping()
    bad = np.array([[0.0, np.nan, 1.0]])
    try:
        check_X(bad, 3, np.float64)
        raise AssertionError("NaN passed the check")
    except ValueError as error:
        assert "NaN" in str(error)
    assert check_X(np.ones((2, 3)), 3, np.float64).shape == (2, 3)
    assert checks.all_finite.signatures == []
    helper.wait_for("fastdnn.kernels.cpu.train:forward_layers")  # runs meanwhile, which raises
    helper.wait_for("fastdnn.kernels.cpu.train:forward_chunks")  # not again
    assert compiled == [1]
    losses.compile_head(spec.CROSS_ENTROPY, np.float32)
    assert len(losses.cross_entropy_head.signatures) == 1
    """
    result = run_fit(NETS[0], tmp_path / "cache", setup=setup, FASTDNN_WARMUP="1")
    assert result["helper"] == -9
    # The fit's own head is the one compile_head compiled: no second compile.
    assert result["stats"]["fastdnn.kernels.cpu.losses:cross_entropy_head"] == [0, 1]


@pytest.mark.parametrize("forked", [True, False], ids=["fork", "spawn"])
def test_a_process_leaves_at_once_while_its_helper_still_works(tmp_path, forked):
    """At exit nothing waits for the helper (nor kills it: it finishes its compile and
    ends at its next report, or after LIFETIME)."""
    import signal
    import time

    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexec sleep 600\n")
    fake.chmod(0o755)
    busy = ("warmup.compile_pass = lambda net: time.sleep(600)" if forked else
            f"sys.executable = {str(fake)!r}; warmup._forkable = lambda net: False")
    code = f"""
import sys, time
from fastdnn.kernels import spec
from fastdnn.kernels.cpu import warmup
{busy}
helper = warmup.start([3, 4, 2], [spec.RELU], spec.MSE, "float64")
assert isinstance(helper.process, warmup._Child) is {forked}
print(helper.process.pid, flush=True)
"""
    environ = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    # TMPDIR: the helper killed below leaves its claims folder, here and not in /tmp
    # (two a run, for good).
    (tmp_path / "tmp").mkdir()
    environ.update(NUMBA_CACHE_DIR=str(tmp_path / "cache"), FASTDNN_WARMUP="1",
                   TMPDIR=str(tmp_path / "tmp"))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True,
                          text=True, timeout=120)
    seconds = time.perf_counter() - start
    pid = int(proc.stdout.split()[0])
    try:
        assert proc.returncode == 0, proc.stderr
        assert seconds < 30, f"the process waited {seconds:.0f} s for its helper at exit"
        os.kill(pid, 0)  # still there: not killed
    finally:
        os.kill(pid, signal.SIGKILL)


def test_a_helper_past_its_lifetime_takes_its_claims_along(tmp_path):
    """A helper whose parent had gone ended after LIFETIME by os._exit, and left its
    fastdnn-warmup-* folder of claims in /tmp for good."""
    import time

    code = """
import time
from fastdnn.kernels import spec
from fastdnn.kernels.cpu import warmup
warmup.LIFETIME = 1.0
warmup.compile_pass = lambda net: time.sleep(600)
helper = warmup.start([3, 4, 2], [spec.RELU], spec.MSE, "float64")
print(helper.process.pid, helper.claims, flush=True)
"""
    environ = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    environ.update(NUMBA_CACHE_DIR=str(tmp_path / "cache"), FASTDNN_WARMUP="1")
    proc = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    pid, claims = proc.stdout.split()
    assert claims.startswith(tempfile.gettempdir())
    def running():
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + 60
    while running() and time.monotonic() < deadline:
        time.sleep(0.1)  # the helper, reparented, ends at its LIFETIME
    assert not os.path.exists(claims), "the helper's claims outlived it"


def test_a_helper_ended_by_close_takes_its_claims_along(tmp_path):
    """close() killed a hung helper and left the folder to the reader thread, a daemon,
    which a process that exits at once never runs: the folder stayed in /tmp."""
    code = """
import os, threading, time
from fastdnn.kernels import spec
from fastdnn.kernels.cpu import warmup
warmup.TIMEOUT = 0.5
warmup.compile_pass = lambda net: time.sleep(600)
remove = warmup._remove
def removed_but_not_by_the_reader(claims):  # as where the reader never runs again
    if threading.current_thread().name != "fastdnn-warmup":
        remove(claims)
warmup._remove = removed_but_not_by_the_reader
helper = warmup.start([3, 4, 2], [spec.RELU], spec.MSE, "float64")
claims = helper.claims
print(helper.close(), claims, os.path.exists(claims), flush=True)
remove(claims)
"""
    environ = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    environ.update(NUMBA_CACHE_DIR=str(tmp_path / "cache"), FASTDNN_WARMUP="1")
    proc = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    code, claims, existed = proc.stdout.split()
    assert code == "-9" and existed == "False"


def test_the_helper_is_forked_only_where_a_fork_is_safe(monkeypatch):
    """A fork copies one thread and no thread pool: where another Python thread runs, where
    the helper would run parallel regions, or beside JAX, it is a new interpreter."""
    import threading

    small = helper_config(NETS[0], 8)
    # This process alone (earlier tests' helpers may have left their readers running).
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.delitem(sys.modules, "jax", raising=False)
    assert warmup._forkable(small) == sys.platform.startswith("linux")
    assert not warmup._forkable(helper_config(WIDE, 256))  # its parallel regions
    monkeypatch.setitem(sys.modules, "jax", object())
    assert not warmup._forkable(small)
    monkeypatch.delitem(sys.modules, "jax")
    monkeypatch.setattr(threading, "active_count", lambda: 2)
    assert not warmup._forkable(small)


def test_a_fork_that_fails_leaves_a_new_interpreter_to_help(monkeypatch):
    import io

    class Spawned:
        stdout = io.StringIO(warmup.DONE + "\n")

        def wait(self, timeout=None):
            return 0

    def no_fork(net):
        raise OSError("Cannot allocate memory")

    monkeypatch.setattr(warmup, "_forkable", lambda net: True)
    monkeypatch.setattr(warmup, "_fork", no_fork)
    monkeypatch.setattr(warmup, "_spawn", lambda net: Spawned())
    helper = warmup.Helper(helper_config(NETS[0], 8))
    assert isinstance(helper.process, Spawned)
    assert helper.close() == 0 and warmup.DONE in helper.saved


@pytest.mark.parametrize("value, on", [("0", False), ("false", False), ("OFF", False),
                                       ("no", False), ("1", True), ("true", True),
                                       ("on", True), ("", True)])
def test_the_warmup_switch_reads_common_spellings(monkeypatch, value, on):
    monkeypatch.setenv("FASTDNN_WARMUP", value)
    assert config.switch("FASTDNN_WARMUP") is on


def test_a_warmup_switch_that_is_no_switch_is_named(monkeypatch):
    """``garbage`` left the helper on, silently."""
    monkeypatch.setenv("FASTDNN_WARMUP", "garbage")
    with pytest.raises(ValueError, match="FASTDNN_WARMUP must be 0 or 1"):
        warmup.enabled()


def test_fastdnn_cache_0_writes_no_cache(tmp_path):
    """FASTDNN_CACHE=0: the kernels compile without Numba's disk cache (config.CACHE is
    read as they are defined, at import, so only the environment can set it in time):
    the way to run where no folder is writable."""
    out = run_python("""
        import numpy as np, fastdnn as fd
        from fastdnn import config
        net = fd.MLP([3, 4, 2], seed=0)
        net.fit(np.zeros((8, 3)), np.zeros(8, int), epochs=1)
        print(config.CACHE)
    """, FASTDNN_CACHE="0", NUMBA_CACHE_DIR=str(tmp_path), FASTDNN_WARMUP="0")
    assert out.split() == ["False"]
    assert not any(tmp_path.rglob("*.nbi"))


def test_no_writable_cache_folder_compiles_without_and_says_so():
    """Where Numba finds no folder for its cache (a read-only install and home), its
    decorators raised at import: even ``fastdnn --version`` printed their traceback.
    NUMBA_CACHE_LOCATOR_CLASSES stands for that here: its one locator, IPython's, finds
    nothing outside IPython."""
    import numba
    if not hasattr(numba.config, "CACHE_LOCATOR_CLASSES"):
        pytest.skip("this Numba has no NUMBA_CACHE_LOCATOR_CLASSES")
    environ = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    environ.update(NUMBA_CACHE_LOCATOR_CLASSES="IPythonCacheLocator", FASTDNN_WARMUP="0")
    proc = subprocess.run([sys.executable, "-c", "import fastdnn.config as c; print(c.CACHE)"],
                          env=environ, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False"]
    assert "no writable folder for Numba's cache" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "fastdnn", "--version"], env=environ,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.startswith("fastdnn "), proc.stderr


@pytest.mark.parametrize("statement", ["import fastdnn", "from fastdnn import cli"])
def test_the_no_cache_warning_points_at_the_users_import(tmp_path, statement):
    # stacklevel=2 named fastdnn/callbacks.py (the first module to import config).
    import numba
    if not hasattr(numba.config, "CACHE_LOCATOR_CLASSES"):
        pytest.skip("this Numba has no NUMBA_CACHE_LOCATOR_CLASSES")
    script = tmp_path / "user.py"
    script.write_text("import warnings\n"
                      "with warnings.catch_warnings(record=True) as caught:\n"
                      "    warnings.simplefilter('always')\n"
                      f"    {statement}\n"
                      "print([(w.filename, w.lineno) for w in caught])\n")
    environ = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    environ.update(NUMBA_CACHE_LOCATOR_CLASSES="IPythonCacheLocator", FASTDNN_WARMUP="0")
    proc = subprocess.run([sys.executable, str(script)], env=environ, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == repr([(str(script), 4)])


def test_ready_is_false_for_a_kernel_without_disk_cache_until_compiled():
    # FASTDNN_CACHE=0 (no disk cache): a first fit compiled for 9 s without saying so.
    import numba

    @numba.njit(cache=False)
    def double(a):
        return a * 2

    a = np.ones(3)
    assert not warmup.ready(double, (a,))
    double(a)
    assert warmup.ready(double, (a,))
    assert not warmup.ready(double, (a.astype(np.float32),))


def test_a_helper_whose_parent_left_removes_its_claims(tmp_path, monkeypatch):
    """The helper's report to a parent that had exited raised BrokenPipeError, and the
    folder of claims stayed in /tmp for good (40 of them on one machine)."""
    import gc

    def parent_gone(net):
        raise BrokenPipeError

    class NoTimer:  # the helper's lifetime limit would end this process
        def __init__(self, *args):
            self.daemon = True

        def start(self):
            pass

    claims = tmp_path / "fastdnn-warmup-test"
    claims.mkdir()
    (claims / "forward").touch()
    monkeypatch.setattr(warmup, "compile_pass", parent_gone)
    monkeypatch.setattr(warmup.threading, "Timer", NoTimer)
    try:
        with pytest.raises(BrokenPipeError):
            warmup._serve({"claims": str(claims)})
    finally:
        gc.enable()  # _serve turns the collector off for its short life
    assert not claims.exists()
