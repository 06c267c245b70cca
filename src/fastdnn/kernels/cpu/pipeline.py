"""Numba's compile pipeline for the CPU kernels, with its inliner's copies made once.

Numba inlines a function declared ``inline="always"`` by running its untyped pipeline and
copying the resulting IR, twice, into the caller (``InlineWorker.inline_ir``).  It copies
the IR one block at a time, each block with ``copy.deepcopy`` and a memo of its own, and
each block reaches the function's one scope through its variables: so the scope, with
every variable of the function, is copied once per block.  The cost grows as blocks
times variables.  ``_steps``, inlined into each epoch kernel, has 116 blocks and 1,467
variables once its own callees are inlined; ``backward_layers`` 110 and 787.  These
copies were 2.1 s of the 10.2 s that a cold ``fastdnn train`` compiled without the
helper process (AMD EPYC, Zen 4).

Here a scope copied while a callee is inlined is copied once, and every block of that
copy shares it: the IR Numba then works on is the same (its inliner keeps only the first
block's scope copy and renames every variable into the caller's scope), and it is
compiled to the same code.  The shared copies are made only inside the inliner's call;
afterwards copies of any scope are Numba's own again.  Cold ``fastdnn train`` without
the helper: 11.2 -> 9.1 s (AMD EPYC, Zen 4).

The kernels are compiled by :class:`Compiler` (``pipeline_class``), through this module's
:func:`njit`: Numba's default pipeline with its ``InlineInlinables`` pass replaced by
:class:`InlineOnce`, which does the same with the worker below.  Numba's other users in
the process keep its default pipeline.  Where this Numba lacks the internals it relies
on, :func:`njit` is Numba's own, and nothing changes but the compile time.
"""
import copy
import inspect

import numba
from numba.core import ir
from numba.core.compiler import CompilerBase, DefaultPassBuilder
from numba.core.compiler_machinery import register_pass

try:
    from numba.core.inline_closurecall import InlineWorker
    from numba.core.untyped_passes import InlineInlinables
    SUPPORTED = (
        list(inspect.signature(InlineWorker.inline_ir).parameters)[:6]
        == ["self", "caller_ir", "block", "i", "callee_ir", "callee_freevars"]
        and hasattr(InlineInlinables, "_do_work"))
except (ImportError, AttributeError, TypeError, ValueError):  # pragma: no cover
    SUPPORTED = False


def _copied_once(scope, made, hooked):
    """Make every deep copy of ``scope`` return one copy, made at the first (recorded in
    ``made``, the scopes so hooked in ``hooked``), and the same of that copy's copies."""
    def deepcopy(memo):
        twin = made.get(id(scope))
        if twin is None:
            del scope.__dict__["__deepcopy__"]  # Numba's own copy, without the hook
            try:
                twin = copy.deepcopy(scope, memo)
            finally:
                scope.__dict__["__deepcopy__"] = deepcopy
            made[id(scope)] = twin
            _copied_once(twin, made, hooked)
        memo[id(scope)] = twin
        return twin

    scope.__dict__["__deepcopy__"] = deepcopy
    hooked.append(scope)


class _Worker(InlineWorker if SUPPORTED else object):
    """Numba's ``InlineWorker``, whose copies of a callee's IR copy its scope once."""

    def inline_ir(self, caller_ir, block, i, callee_ir, callee_freevars, *args, **kwargs):
        made, hooked = {}, []
        for scope in {id(b.scope): b.scope for b in callee_ir.blocks.values()}.values():
            if isinstance(scope, ir.Scope):
                _copied_once(scope, made, hooked)
        try:
            return super().inline_ir(caller_ir, block, i, callee_ir, callee_freevars, *args,
                                     **kwargs)
        finally:
            for scope in hooked:
                scope.__dict__.pop("__deepcopy__", None)


def untyped_pipeline(state, name="untyped"):
    """Numba's untyped pipeline with :class:`InlineOnce` for its inliner: the pipeline a
    callee being inlined runs, so that its own callees are inlined the same way."""
    return _with_inline_once(DefaultPassBuilder.define_untyped_pipeline(state, name))


if SUPPORTED:
    @register_pass(mutates_CFG=True, analysis_only=False)
    class InlineOnce(InlineInlinables):
        """Numba's ``InlineInlinables``, inlining with :class:`_Worker`."""
        _name = "fastdnn_inline_inlinables"

        def _do_work(self, state, work_list, block, i, expr, inline_worker):
            if type(inline_worker) is InlineWorker:
                inline_worker.__class__ = _Worker  # the same object, with inline_ir above
                inline_worker._compiler_pipeline = untyped_pipeline
            return super()._do_work(state, work_list, block, i, expr, inline_worker)
else:  # pragma: no cover
    InlineOnce = None


def _with_inline_once(pm):
    """``pm`` with :class:`InlineOnce` in place of Numba's ``InlineInlinables``."""
    pm.passes = [(InlineOnce if cls is InlineInlinables else cls, description)
                 for cls, description in pm.passes]
    return pm


class Compiler(CompilerBase):
    """Numba's default compiler (``numba.core.compiler.Compiler``, nopython mode), with
    :class:`InlineOnce` for its inliner."""

    def define_pipelines(self):
        pm = _with_inline_once(DefaultPassBuilder.define_nopython_pipeline(self.state))
        pm.finalize()
        return [pm]


def njit(*args, **kwargs):
    """``numba.njit``, compiling with :class:`Compiler` where this Numba supports it."""
    if SUPPORTED:
        kwargs.setdefault("pipeline_class", Compiler)
    return numba.njit(*args, **kwargs)
