"""Kernels called through a pointer (:mod:`fastdnn.kernels.cpu.separate`): callers hold
no copy of the callee's code, give the same results, and load from the disk cache in a
fresh process, even when the callee was compiled anew there."""
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numba import njit, types

from fastdnn.kernels.cpu import separate
from fastdnn.kernels.cpu.checks import all_finite


def test_a_caller_holds_a_slot_not_the_callees_code():
    @njit(cache=False)
    def caller(a):
        return not all_finite(a)

    assert caller(np.array([0.5, np.inf])) and not caller(np.array([0.5, -3.0]))
    llvm = caller.inspect_llvm(caller.signatures[0])
    assert "fastdnn.call.fastdnn.kernels.cpu.checks.all_finite." in llvm
    assert not any(line.startswith("define") and "all_finite" in line
                   for line in llvm.splitlines()), "all_finite was linked into its caller"


def test_the_preload_hook_pickles_and_compares_by_its_key():
    all_finite(np.zeros(3))
    hook = separate._Preload("fastdnn.kernels.cpu.checks", "all_finite",
                             all_finite.overloads[(types.float64[::1],)].signature)
    again = pickle.loads(pickle.dumps(hook))
    assert again == hook and hash(again) == hash(hook)
    again()  # compiled already: fills the slot again, raises nothing


def test_a_changed_callee_is_a_clear_error_not_a_crash():
    all_finite(np.zeros(3))
    actual = all_finite.overloads[(types.float64[::1],)].signature
    changed = types.float64(*actual.args)  # another return type than the cached one
    with pytest.raises(separate.StaleKernelCache, match="delete the Numba cache"):
        separate._Preload("fastdnn.kernels.cpu.checks", "all_finite", changed)()
    with pytest.raises(separate.StaleKernelCache):
        separate._Preload("fastdnn.kernels.cpu.checks", "no_such_kernel", actual)()


def test_not_a_dispatcher_is_left_alone():
    def plain(x):
        return x
    assert separate.separate(plain) is plain


CALLER = """
import numpy as np
from numba import njit
from fastdnn.kernels.cpu.checks import all_finite

@njit(cache=True)
def bound(a):
    return 2.0 if all_finite(a) else 1.0
"""

RUN = """
import sys
import numpy as np
sys.path.insert(0, {folder!r})
from caller import bound
print(bound(np.array([0.25, -5.0, 2.0])), bound(np.array([0.25, np.nan])),
      dict(bound.stats.cache_hits))
"""


def _run(folder, cache):
    proc = subprocess.run([sys.executable, "-c", RUN.format(folder=str(folder))],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, NUMBA_CACHE_DIR=str(cache)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_a_cached_caller_loads_in_a_fresh_process(tmp_path):
    (tmp_path / "caller.py").write_text(textwrap.dedent(CALLER))
    cache = tmp_path / "cache"
    first = _run(tmp_path, cache)
    assert first == "2.0 1.0 {}"  # compiled here
    second = _run(tmp_path, cache)
    assert second.startswith("2.0 1.0 {") and second != first  # loaded: a cache hit
    # The callee's own cache gone: compiled anew in the next process (Numba's symbol
    # for it changes with the order of compiles there); the cached caller still finds it.
    gone = list(cache.rglob("*all_finite*"))
    assert gone
    for p in gone:
        p.unlink()
    assert _run(tmp_path, cache) == second
