"""Numba's compile pipeline for the CPU kernels, with an inliner that does not copy.

Numba inlines a function declared ``inline="always"`` by building its IR (its untyped
pipeline, run for each call site: ``InlineWorker.inline_function``) and then copying
that IR twice (``InlineWorker.inline_ir``): once to inline, once to return, which the
inlining pass drops.  It copies one block at a time, each with ``copy.deepcopy`` and a
memo of its own, and each block reaches the function's one scope through its variables:
so the scope, with every variable of the function, is copied once per block, and the
cost grows as blocks times variables.  ``_steps``, inlined into each epoch kernel, has
116 blocks and 1,467 variables once its own callees are inlined; ``backward_layers`` 110
and 787.  These copies were 2.1 s of the 10.2 s that a cold ``fastdnn train`` compiled
without the helper process (AMD EPYC, Zen 4); with the scope copied once per copy (this
module's first version), still 0.47 s of it, and 0.9 s of a first online fit.

The IR built for a call site is that call's alone: nothing else holds it, and Numba's
copies of it are thrown away or mutated into the caller.  So here it is inlined as it
is: while the inliner runs, a deep copy of one of its blocks is the block itself.  The
caller's IR is the same, and compiles to the same code (the online epoch kernel's
assembly compared); afterwards copies of any block are Numba's own again.  Cold
``fastdnn train`` without the helper: 11.2 -> 8.3-9.1 s (AMD EPYC).

The kernels are compiled by :class:`Compiler` (``pipeline_class``), through this module's
:func:`njit`: Numba's default pipeline with its ``InlineInlinables`` pass replaced by
:class:`InlineAsIs`, which does the same with the worker below.  Numba's other users in
the process keep its default pipeline.  Where this Numba lacks the internals it relies
on, :func:`njit` is Numba's own, and nothing changes but the compile time.

While :class:`Compiler` compiles, Python's cyclic garbage collector is paused.  A compile
makes about a million short-lived objects, so the collector ran hundreds of times during
a cold ``fastdnn train``, five of them over the whole heap: 0.48 s of this process's
time, 0.29 s with the pause (one collection after each outermost compile frees what it
left; AMD EPYC).  The pause holds for a compile only, nested ones included, and leaves
the collector as it found it; the heap peaks about 35 MB higher meanwhile.
"""
import gc
import inspect
import threading
import warnings

import numba
from numba.core.compiler import CompilerBase, DefaultPassBuilder
from numba.core.compiler_machinery import register_pass

try:
    from numba.core.inline_closurecall import InlineWorker
    from numba.core.untyped_passes import InlineInlinables
    SUPPORTED = (
        list(inspect.signature(InlineWorker.inline_function).parameters)
        == ["self", "caller_ir", "block", "i", "function", "arg_typs"]
        and list(inspect.signature(InlineWorker.inline_ir).parameters)[:6]
        == ["self", "caller_ir", "block", "i", "callee_ir", "callee_freevars"]
        and hasattr(InlineWorker, "run_untyped_passes")
        and hasattr(InlineInlinables, "_do_work"))
except (ImportError, AttributeError, TypeError, ValueError):  # pragma: no cover
    SUPPORTED = False


def _uncopied(blocks, hooked):
    """Make every deep copy of each of ``blocks`` the block itself (recorded in
    ``hooked``)."""
    for block in blocks:
        block.__dict__["__deepcopy__"] = lambda memo, block=block: block
        hooked.append(block)


class _Worker(InlineWorker if SUPPORTED else object):
    """Numba's ``InlineWorker``, which inlines the IR it builds for a call site without
    copying it."""

    def inline_function(self, caller_ir, block, i, function, arg_typs=None):
        """Numba's: the callee's IR from its untyped pipeline, inlined by
        :meth:`inline_ir`, here with its blocks' copies the blocks themselves."""
        callee_ir = self.run_untyped_passes(function)
        hooked = []
        _uncopied(callee_ir.blocks.values(), hooked)
        try:
            return self.inline_ir(caller_ir, block, i, callee_ir,
                                  function.__code__.co_freevars, arg_typs=arg_typs)
        finally:
            for b in hooked:
                b.__dict__.pop("__deepcopy__", None)


def untyped_pipeline(state, name="untyped"):
    """Numba's untyped pipeline with :class:`InlineAsIs` for its inliner: the pipeline a
    callee being inlined runs, so that its own callees are inlined the same way."""
    return _with_inline_as_is(DefaultPassBuilder.define_untyped_pipeline(state, name))


if SUPPORTED:
    @register_pass(mutates_CFG=True, analysis_only=False)
    class InlineAsIs(InlineInlinables):
        """Numba's ``InlineInlinables``, inlining with :class:`_Worker`."""
        _name = "fastdnn_inline_inlinables"

        def _do_work(self, state, work_list, block, i, expr, inline_worker):
            if type(inline_worker) is InlineWorker:
                inline_worker.__class__ = _Worker  # the same object, inline_function above
                inline_worker._compiler_pipeline = untyped_pipeline
            return super()._do_work(state, work_list, block, i, expr, inline_worker)
else:  # pragma: no cover
    InlineAsIs = None


def _with_inline_as_is(pm):
    """``pm`` with :class:`InlineAsIs` in place of Numba's ``InlineInlinables``."""
    pm.passes = [(InlineAsIs if cls is InlineInlinables else cls, description)
                 for cls, description in pm.passes]
    return pm


_pause = threading.Lock()
_paused = [0, False]  # compiles under way; whether the collector was on before the first


class _CollectorPaused:
    """Python's cyclic garbage collector off while a kernel compiles (nested compiles:
    until the outermost ends), then as it was."""

    def __enter__(self):
        with _pause:
            if _paused[0] == 0:
                _paused[1] = gc.isenabled()
                gc.disable()
            _paused[0] += 1

    def __exit__(self, *exc):
        with _pause:
            _paused[0] -= 1
            if _paused[0] == 0 and _paused[1]:
                gc.enable()


class Compiler(CompilerBase):
    """Numba's default compiler (``numba.core.compiler.Compiler``, nopython mode), with
    :class:`InlineAsIs` for its inliner."""

    def compile_extra(self, func):
        with _CollectorPaused():
            return super().compile_extra(func)

    def compile_ir(self, func_ir, lifted=(), lifted_from=None):
        with _CollectorPaused():
            return super().compile_ir(func_ir, lifted, lifted_from)

    def define_pipelines(self):
        pm = _with_inline_as_is(DefaultPassBuilder.define_nopython_pipeline(self.state))
        pm.finalize()
        return [pm]


def njit(*args, **kwargs):
    """``numba.njit``, compiling with :class:`Compiler` where this Numba supports it, and
    without the C-callable wrapper (``no_cfunc_wrapper``) Numba builds beside each
    function for ``cfunc`` and first-class function use.

    No kernel is used so: Python calls their CPython wrappers, kernels call each other
    directly or through :mod:`.separate`'s slots, which hold the function itself.  Left
    out, a cold ``fastdnn train`` without the compile helper compiled 7.82 -> 7.54 s
    (medians of 4, alternated; AMD EPYC), and the wrappers' machine code is no longer
    in every cache file that a warm start loads.
    """
    if SUPPORTED:
        kwargs.setdefault("pipeline_class", Compiler)
    kwargs.setdefault("no_cfunc_wrapper", True)
    made = numba.njit(*args, **kwargs)
    if not callable(getattr(made, "py_func", None)):  # a decorator: njit(cache=...)
        decorator = made
        return lambda func: cache_may_fail(decorator(func))
    return cache_may_fail(made)


_cache_failed = []


def cache_may_fail(dispatcher):
    """``dispatcher``, whose compiles are kept when Numba's disk cache cannot be written.

    Numba checks its cache folder once (an empty file made in it) and then raises any
    error of a later write from the compile: a cache folder on a full disk or over its
    quota (or past ``ulimit -f``) failed every first fit with "[Errno 28] No space left
    on device", which named no file.  The compile is done and in use by then, so it
    goes on; a warning says once per process that the cache is not kept."""
    cache = getattr(dispatcher, "_cache", None)
    save = getattr(cache, "save_overload", None)
    if save is None or getattr(save, "may_fail", False):
        return dispatcher

    def save_overload(sig, data):
        try:
            save(sig, data)
        except OSError as exc:
            if not _cache_failed:
                _cache_failed.append(exc)
                where = getattr(cache, "_cache_path", None) or "Numba's cache folder"
                warnings.warn(f"fastdnn: cannot write the compiled kernels to {where} "
                              f"({exc.strerror or exc}): they compile again in the next "
                              f"process; free space there or set NUMBA_CACHE_DIR",
                              RuntimeWarning, stacklevel=2)

    save_overload.may_fail = True
    cache.save_overload = save_overload
    return dispatcher
