"""The CPU kernels' compile pipeline (:mod:`fastdnn.kernels.cpu.pipeline`): Numba's own,
whose inliner inlines the IR it builds for a call site without copying it (Numba's copies
it twice, and its scope once per block), to the same code."""
import copy

import numba
import numpy as np
import pytest
from numba.core import ir

from fastdnn.kernels.cpu import blas, dense, losses, pipeline, train

pytestmark = pytest.mark.skipif(not pipeline.SUPPORTED,
                                reason="this Numba lacks the inliner internals relied on")


def _callee(x, n):
    """Many blocks (each ``if`` and loop is a few) and variables, as fastdnn's passes."""
    total = 0.0
    for i in range(n):
        a = x[i] * 2.0
        if a > 1.0:
            total += a
        elif a < -1.0:
            total -= a
        else:
            total += 0.5 * a
        b = a + total
        if b > 3.0:
            total *= 0.5
        for j in range(i):
            if (i + j) % 3 == 0:
                total += x[j]
            else:
                total -= 0.25 * x[j]
    return total


def _caller(x):
    return _inlined(x, x.shape[0]) + _inlined(x[::-1], x.shape[0] // 2)


_inlined = numba.njit(inline="always")(_callee)


def _counting_copies(monkeypatch, cls):
    """Count the deep copies Numba makes of IR objects of class ``cls`` (a scope, a
    block), done as ``copy.deepcopy`` does."""
    calls = []

    def deepcopy(self, memo):
        calls.append(self)
        twin = type(self).__new__(type(self))
        memo[id(self)] = twin
        for key, value in self.__dict__.items():
            twin.__dict__[key] = copy.deepcopy(value, memo)
        return twin

    monkeypatch.setattr(cls, "__deepcopy__", deepcopy, raising=False)
    return calls


def _compiled(jit):
    """``_caller`` compiled anew (no cache) by ``jit``."""
    return jit(_caller).compile((numba.float64[::1],))


def test_kernels_compile_with_it():
    for kernel in (train.train_steps, train.train_steps_online, train.loss_and_gradient,
                   train.forward_layers, dense.dense_backward, blas.matmul, losses.loss_grad):
        assert kernel._compiler.pipeline_class is pipeline.Compiler, kernel


def test_no_cfunc_wrapper_is_built():
    """The C-callable wrapper beside each function, which no kernel uses, is left out
    (compile time): the kernels ask for none, and a function compiled so has none."""
    for kernel in (train.train_steps, train.loss_and_gradient, blas.matmul, losses.loss_grad):
        assert kernel.targetoptions["no_cfunc_wrapper"] is True, kernel
    for jit, built in ((numba.njit, True), (pipeline.njit, False)):
        dispatcher = jit(_caller)
        dispatcher.compile((numba.float64[::1],))
        cres = dispatcher.overloads[(numba.float64[::1],)]
        assert (cres.fndesc.llvm_cfunc_wrapper_name in cres.library.get_llvm_str()) is built
        assert dispatcher(np.ones(4)) == _caller(np.ones(4))  # callable from Python


def test_scope_is_not_copied(monkeypatch):
    blocks = len(numba.core.compiler.run_frontend(_callee).blocks)
    assert blocks > 10
    calls = _counting_copies(monkeypatch, ir.Scope)
    _compiled(numba.njit)
    # Two inlined calls, their IR copied twice each by Numba's inliner, each copy
    # copying the scope once per block.
    assert len(calls) >= 2 * 2 * blocks
    calls.clear()
    _compiled(pipeline.njit)
    assert calls == []


def test_same_results_as_numbas_pipeline():
    x = np.random.default_rng(0).standard_normal(40)
    assert numba.njit(_caller)(x) == pipeline.njit(_caller)(x) == _caller(x)


def test_njit_is_numbas_own_without_support(monkeypatch):
    monkeypatch.setattr(pipeline, "SUPPORTED", False)
    assert pipeline.njit(cache=False)(_caller)._compiler.pipeline_class is not pipeline.Compiler
    monkeypatch.setattr(pipeline, "SUPPORTED", True)
    assert pipeline.njit(_caller)._compiler.pipeline_class is pipeline.Compiler


def test_fresh_callee_blocks_are_not_copied(monkeypatch):
    calls = _counting_copies(monkeypatch, ir.Block)
    _compiled(numba.njit)
    assert len(calls) >= 2 * 2 * 10  # two inlined calls, two copies each, 10+ blocks
    calls.clear()
    _compiled(pipeline.njit)
    assert calls == []


def test_block_hooks_are_gone_after_inlining(monkeypatch):
    hooked = []
    original = pipeline._uncopied

    def spy(blocks, hooks):
        blocks = list(blocks)
        hooked.extend(blocks)
        original(blocks, hooks)

    monkeypatch.setattr(pipeline, "_uncopied", spy)
    _compiled(pipeline.njit)
    assert hooked
    assert not [b for b in hooked if "__deepcopy__" in b.__dict__]



def _kernel_seeing_collector(seen):
    """A kernel whose compile appends to ``seen`` whether the collector is on (at the
    typing of a call inside it); a fresh one each time, so that each call compiles."""
    import gc

    def state():
        raise NotImplementedError("typed only")

    @numba.extending.overload(state)
    def _ol_state():
        seen.append(gc.isenabled())
        return lambda: 0

    def kernel(x):
        return x + state()

    return pipeline.njit(kernel)


@pytest.mark.parametrize("enabled", [True, False])
def test_collector_paused_while_compiling_then_as_before(enabled):
    """Python's cyclic collector is off while a kernel compiles (its passes over the
    compile's objects were 0.2 s of a cold start) and as the user left it after."""
    import gc

    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        seen = []
        assert _kernel_seeing_collector(seen)(1) == 1
        assert seen == [False]
        assert gc.isenabled() is enabled
        assert pipeline._paused[0] == 0
    finally:
        (gc.enable if was else gc.disable)()
