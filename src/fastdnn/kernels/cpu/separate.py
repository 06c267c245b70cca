"""Kernels called through a pointer, not linked into their callers.

Numba links a callee's whole LLVM module into each caller's module, where LLVM
optimises it and generates its machine code again: the loss and gradient, the forward
pass and the BLAS wrappers were compiled once for themselves and once more inside every
kernel that calls them, 3.8 s of LLVM in a cold ``fastdnn train`` (2.0 s with these
callees separate; Intel Xeon).  A dispatcher passed to :func:`separate` is compiled once;
its callers load its address from a named slot, an external symbol (as
:func:`.blas._blocks_setting` reads the block count), and call it there.

Only for callees that stay calls anyway, too big for LLVM to inline: a call through a
pointer is never inlined.  Not for the calls of every online SGD step either (the loss
head, ``max_abs``, ``sgd_update``, ``_backprop_rows``, ``pair.settle``): through slots,
a 2-8-8-1 step took 256 against 243 ns, for 0.2 s less of a cold start.

The slot's name comes from the callee's name and signature, never from Numba's symbol
for it, which carries a per-process counter.  A caller loaded from the disk cache
needs the slot filled first: each caller's library records a :class:`_Preload` of each
such callee, which Numba runs before it loads the caller (its ``reload_init`` hooks, as
for parallel regions); the hook compiles or loads the callee and fills the slot.

If Numba's internals this relies on are missing, callers link the callee as before.
"""
import ctypes
import hashlib
import importlib

import llvmlite.binding as llvm
from llvmlite import ir
from numba.core import cgutils, imputils

#: The filled slots by symbol name: each holds a callee's address (kept alive here).
_slots = {}


def _symbol(module, name, signature):
    """The name of the slot of ``module.name`` compiled for ``signature``."""
    digest = hashlib.sha1(str(signature).encode()).hexdigest()[:16]
    return f"fastdnn.call.{module}.{name}.{digest}"


def _fill(symbol, cres):
    """Point the slot ``symbol`` at the compiled ``cres``'s native function."""
    slot = _slots.get(symbol)
    if slot is None:
        slot = _slots[symbol] = ctypes.c_void_p()
        llvm.add_symbol(symbol, ctypes.addressof(slot))
    slot.value = cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)


class StaleKernelCache(RuntimeError):
    """A cached kernel calls a callee whose code has changed since it was cached."""


class _Preload:
    """Compile, or load from the cache, ``module.name`` for ``signature`` and fill its
    slot (a reload hook: picklable, hashable)."""

    def __init__(self, module, name, signature):
        self.key = (module, name, signature)

    def __eq__(self, other):
        return isinstance(other, _Preload) and self.key == other.key

    def __hash__(self):
        return hash(self.key)

    def __reduce__(self):
        return _Preload, self.key

    def __call__(self):
        module, name, signature = self.key
        cres = cause = None
        try:
            dispatcher = getattr(importlib.import_module(module), name)
            dispatcher.compile(signature.args)
            cres = dispatcher.overloads[tuple(signature.args)]
        except Exception as error:  # a typing error, a function gone
            cause = error
        if cres is None or cres.signature != signature:
            raise StaleKernelCache(
                f"a cached fastdnn kernel calls {module}.{name}{signature}, whose code has "
                "changed since; delete the Numba cache (the __pycache__ folders of "
                "fastdnn/kernels, or NUMBA_CACHE_DIR) and run again") from cause
        _fill(_symbol(module, name, signature), cres)


def _call_through_slot(cres, module, name):
    """The lowering of a call to ``cres``: :func:`numba.core.imputils.user_function`
    through the slot, without linking the callee's library."""
    fndesc = cres.fndesc
    signature = cres.signature
    symbol = _symbol(module, name, signature)
    preload = _Preload(module, name, signature)

    def imp(context, builder, sig, args):
        _fill(symbol, cres)  # before the caller is finalized, which resolves the slot
        context.active_code_library._reload_init.add(preload)
        fnty = context.call_conv.get_function_type(fndesc.restype, fndesc.argtypes)
        slot = builder.module.globals.get(symbol)
        if slot is None:
            slot = ir.GlobalVariable(builder.module, fnty.as_pointer(), symbol)
        status, retval = context.call_conv.call_function(
            builder, builder.load(slot), fndesc.restype, fndesc.argtypes, args)
        with cgutils.if_unlikely(builder, status.is_error):
            context.call_conv.return_status_propagate(builder, status)
        retval = imputils.fix_returning_optional(context, builder, sig, status, retval)
        return imputils.impl_ret_new_ref(context, builder, fndesc.restype, retval)

    imp.signature = fndesc.argtypes
    imp.libs = ()
    return imp


def separate(dispatcher):
    """Have the kernels that call ``dispatcher`` (a module-level ``njit`` function) call
    it through a pointer instead of linking its code; returns ``dispatcher``."""
    add_overload = getattr(dispatcher, "add_overload", None)
    if add_overload is None:  # NUMBA_DISABLE_JIT: a plain function
        return dispatcher
    module = dispatcher.py_func.__module__
    name = dispatcher.py_func.__name__

    def add_separate_overload(cres):
        add_overload(cres)
        try:
            selector = dispatcher.targetctx._defns[cres.entry_point]
            versions = selector.versions
        except (AttributeError, KeyError):  # another Numba: linked as before
            return
        if cres.objectmode or len(versions) != 1:
            return
        imp = _call_through_slot(cres, module, name)
        versions.clear()
        selector.append(imp, tuple(imp.signature))

    dispatcher.add_overload = add_separate_overload
    return dispatcher
