"""Kernels called through a slot (:mod:`fastdnn.kernels.cpu.separate`): callers hold no
copy of the callee's code and give the same results; a declared callee compiles only
when first called, also from a parallel region's worker threads; cached callers load in
a fresh process, even when the callee was compiled anew there."""
import importlib
import importlib.util
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from numba import njit, typeof, types

from fastdnn.kernels.cpu import separate
from fastdnn.kernels.cpu.checks import all_finite


@separate.separate(returns=types.float64)
@njit(cache=False)
def doubled_sum(a):
    """A declared callee (module-level: a slot finds its callee by module and name)."""
    return 2.0 * a.sum()


@separate.separate(returns=types.int64)  # declared wrong: it returns a float
@njit(cache=False)
def misdeclared(a):
    return a.sum()


@separate.separate(returns=types.float64)
@njit(cache=False)
def tripled_sum(a):
    return 3.0 * a.sum()


@separate.separate(returns=types.float64)
@njit(cache=False)
def quadrupled_sum(a):
    return 4.0 * a.sum()


def test_a_callee_that_must_compile_is_told_to_the_listeners(monkeypatch):
    """A fit whose epoch kernel was cached compiled a callee it reached late (the wide
    layers' online update) for 1-8 s, saying nothing; the listeners (a fit's progress
    bar) now hear of it, and only when it compiles, not when it was compiled already."""
    heard, other = [], []
    monkeypatch.setattr(separate, "compile_listeners", [
        (threading.get_ident(), lambda: heard.append(1)),
        (threading.get_ident() + 1, lambda: other.append(1))])  # another thread's fit

    @njit(cache=False)
    def caller(a):
        return tripled_sum(a) + quadrupled_sum(a)

    a = np.arange(4.0)
    quadrupled_sum(a)  # compiled here, before any caller reaches it
    assert separate.cached(quadrupled_sum, (typeof(a),))
    assert not separate.cached(tripled_sum, (typeof(a),))
    assert caller(a) == 42.0 and heard == [1]  # tripled_sum's compile only
    assert caller(a) == 42.0 and heard == [1]  # the slots are filled
    assert other == []  # another thread's fit said "compiling" for this one's compile


@separate.separate(returns=types.float64)
@njit(cache=False)
def quintupled_sum(a):
    return 5.0 * a.sum()


def test_ctrl_c_while_a_callee_compiles_is_a_keyboard_interrupt(monkeypatch):
    """Ctrl-C while a kernel compiled a callee raised RuntimeError('could not compile'),
    after a page of compiler traceback; the slot stays empty and the press is kept for
    the caller (fitting turns the error back into a KeyboardInterrupt)."""
    def pressed():
        raise KeyboardInterrupt

    monkeypatch.setattr(separate, "compile_listeners", [(threading.get_ident(), pressed)])

    @njit(cache=False)
    def caller(a):
        return quintupled_sum(a)

    a = np.arange(4.0)
    with pytest.raises(RuntimeError, match="could not compile"):
        caller(a)
    error = RuntimeError("could not compile")
    assert separate.take_interrupt(error) and not separate.take_interrupt(error)
    monkeypatch.setattr(separate, "compile_listeners", [])
    assert caller(a) == 30.0  # compiled on the next call


def test_a_caller_holds_a_slot_not_the_callees_code():
    @njit(cache=False)
    def caller(a):
        return not all_finite(a)

    assert caller(np.array([0.5, np.inf])) and not caller(np.array([0.5, -3.0]))
    llvm = caller.inspect_llvm(caller.signatures[0])
    assert "fastdnn.slot.fastdnn.kernels.cpu.checks.all_finite." in llvm
    assert not any(line.startswith("define") and "all_finite" in line
                   for line in llvm.splitlines()), "all_finite was linked into its caller"


def test_a_declared_callee_compiles_when_first_called():
    @njit(cache=False)
    def caller(a, call):
        return doubled_sum(a) if call else -1.0

    a = np.arange(4.0)
    assert caller(a, False) == -1.0
    assert doubled_sum.signatures == [], "compiled with its caller"
    filled = separate.filled_from_kernels()
    assert caller(a, True) == 12.0
    assert len(doubled_sum.signatures) == 1
    assert separate.filled_from_kernels() == filled + 1  # fitting leaves that run out
    assert caller(a, True) == 12.0 and separate.filled_from_kernels() == filled + 1


@separate.separate(returns=types.float64)
@njit(cache=False)
def sextupled_sum(a):
    return 6.0 * a.sum()


@separate.separate(returns=types.float64)
@njit(cache=False)
def septupled_sum(a):
    return 7.0 * a.sum()


@separate.separate(returns=types.float64)
@njit(cache=False)
def octupled_sum(a):
    return 8.0 * a.sum()


def test_a_fill_counts_for_its_own_thread_or_for_every_thread():
    """One count for the process: a compile in one thread's fit, or in a thread of the
    program's own (a predict), left another thread's run of steps out of its epoch's
    rate and said "compiling" on its bar.  A fill counts for the thread that listens (a
    fit) or, in a thread no fit listens in, for that thread alone; one from a thread that
    may work for a fit (Numba's pool, a fastdnn-* helper) counts for all and is told to
    all."""
    @njit(cache=False)
    def six(a, call):
        return sextupled_sum(a) if call else -1.0

    @njit(cache=False)
    def seven(a, call):
        return septupled_sum(a) if call else -1.0

    @njit(cache=False)
    def eight(a, call):
        return octupled_sum(a) if call else -1.0

    a = np.arange(4.0)
    six(a, False), seven(a, False), eight(a, False)  # compiled; their slots stay empty
    seen = {}

    def fit(name, call):
        with separate.listening():
            before = separate.filled_from_kernels()
            seen[name] = call(a, True)
            seen[name + " own"] = separate.filled_from_kernels() - before

    mine = separate.filled_from_kernels()
    other = threading.Thread(target=fit, args=("six", six))
    other.start()
    other.join()
    assert seen == {"six": 36.0, "six own": 1}
    assert separate.filled_from_kernels() == mine  # not this thread's

    def call(caller):
        seen[threading.current_thread().name] = caller(a, True)

    heard = []
    with separate.listening(lambda: heard.append(1)):  # this thread fits now
        mine = separate.filled_from_kernels()
        user = threading.Thread(target=call, args=(seven,), name="a user's predict")
        user.start()
        user.join()
        assert seen["a user's predict"] == 42.0
        assert separate.filled_from_kernels() == mine and heard == []  # its own
        helper = threading.Thread(target=call, args=(eight,), name="fastdnn-helper")
        helper.start()
        helper.join()
        assert seen["fastdnn-helper"] == 48.0
        assert separate.filled_from_kernels() == mine + 1 and heard == [1]  # maybe ours
    fit("seven", seven)
    assert seen["seven own"] == 0  # filled already


def test_a_misdeclared_callee_raises_at_its_first_call(capfd):
    @njit(cache=False)
    def caller(a):
        return misdeclared(a)

    with pytest.raises(RuntimeError, match="could not compile"):
        caller(np.arange(3.0))
    assert "StaleKernelCache" in capfd.readouterr().err


def test_a_changed_callee_is_a_clear_error_not_a_crash():
    all_finite(np.zeros(3))
    actual = all_finite.overloads[(types.float64[::1],)].signature
    changed = types.float64(*actual.args)  # another return type than the cached one
    with pytest.raises(separate.StaleKernelCache, match="delete the Numba cache"):
        separate._compiled("fastdnn.kernels.cpu.checks", "all_finite", changed)
    with pytest.raises(separate.StaleKernelCache):
        separate._compiled("fastdnn.kernels.cpu.checks", "no_such_kernel", actual)


def test_not_a_dispatcher_is_left_alone():
    def plain(x):
        return x
    assert separate.separate(plain) is plain


def test_every_kernel_that_waits_for_the_helper_thread_releases_the_gil():
    """The pair's helper thread takes the GIL to compile a callee it finds missing: an
    epoch kernel holding the GIL while it waits for the helper would deadlock.  (Numba's
    parallel regions release the GIL themselves: the test below runs one.)"""
    kernels = {"train": ["train_steps", "train_steps_paired", "train_steps_sharded",
                         "train_steps_online", "train_steps_wide"],
               "pair": ["helper_loop"]}
    if importlib.util.find_spec("mpi4py") is not None:  # the MPI kernels import it
        kernels["distributed"] = ["distributed_steps", "distributed_steps_wide",
                                  "distributed_steps_sharded"]
    for module, names in kernels.items():
        module = importlib.import_module(f"fastdnn.kernels.cpu.{module}")
        for name in names:
            assert getattr(module, name).targetoptions.get("nogil"), f"{name} holds the GIL"


CALLER = """
import numpy as np
from numba import njit, prange
from fastdnn.kernels.cpu.checks import all_finite
from fastdnn.kernels.cpu.losses import squared_error_head

@njit(cache=True)
def inner(a):
    return 2.0 if all_finite(a) else 1.0

@njit(cache=True)
def outer(a):
    return inner(a) + 10.0

@njit(cache=True, parallel=True)
def losses(Z, T, G):
    out = np.zeros(4)
    for i in prange(4):  # the declared head, first called from the worker threads
        out[i] = squared_error_head(Z[i], T[i], G[i])
    return out
"""

RUN = """
import sys
import numpy as np
sys.path.insert(0, {folder!r})
import caller
Z = np.ones((4, 3, 1)); T = np.zeros((4, 3, 2)); T[:, :, 1] = 1.0
a, b = np.array([0.25, -5.0, 2.0]), np.array([0.25, np.nan])
for name in {names!r}:
    f = getattr(caller, name)
    out = f(Z, T, np.empty((4, 3, 1))).tolist() if name == "losses" else [f(a), f(b)]
    print(name, out, dict(f.stats.cache_hits))
"""


def _run(folder, cache, *names):
    proc = subprocess.run([sys.executable, "-c", RUN.format(folder=str(folder), names=names)],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, NUMBA_CACHE_DIR=str(cache)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()


def test_cached_callers_load_in_a_fresh_process(tmp_path):
    (tmp_path / "caller.py").write_text(textwrap.dedent(CALLER))
    cache = tmp_path / "cache"
    # inner compiled and cached alone; then outer compiled in a process that loaded inner
    # from the cache (a caller linking a loaded callee lost that callee's reload hooks:
    # a slot bound by them went unresolved, and the next process to load outer crashed).
    assert _run(tmp_path, cache, "inner") == ["inner [2.0, 1.0] {}"]
    assert _run(tmp_path, cache, "outer", "losses")[1] == "losses [1.0, 1.0, 1.0, 1.0] {}"
    loaded = _run(tmp_path, cache, "outer", "losses")
    assert loaded[0].startswith("outer [12.0, 11.0] {") and loaded[0] != "outer [12.0, 11.0] {}"
    assert loaded[1].startswith("losses [1.0, 1.0, 1.0, 1.0] {")
    # The callees' own caches gone: compiled anew in the next process (Numba's symbol for
    # each changes with the order of compiles there); the cached callers still find them.
    gone = list(cache.rglob("*all_finite*")) + list(cache.rglob("*squared_error_head*"))
    assert len(gone) >= 4
    for p in gone:
        p.unlink()
    assert _run(tmp_path, cache, "outer", "losses") == loaded
