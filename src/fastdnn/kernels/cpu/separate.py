"""Kernels called through a pointer, not linked into their callers, and compiled when a
fit first calls them.

Numba links a callee's whole LLVM module into each caller's module, where LLVM
optimises it and generates its machine code again: the loss and gradient, the forward
pass and the BLAS wrappers were compiled once for themselves and once more inside every
kernel that calls them, 3.8 s of LLVM in a cold ``fastdnn train`` (2.0 s with these
callees separate; Intel Xeon).  A dispatcher passed to :func:`separate` is compiled once;
its callers load its address from a named slot, an external symbol (as
:func:`.blas._blocks_setting` reads the block count), and call it there.

A slot starts empty.  A caller that finds it so calls back into Python
(:func:`_compile_slot`), which compiles the callee, or loads it from the disk cache,
and fills the slot; the call then proceeds.  So a kernel loaded from the cache loads
only the callees it reaches, and a callee declared with its return type
(``separate(returns=...)``) is not even compiled with its callers: the dropout of a fit
without dropout, the penalty of a fit without one, the heads of the other losses are
never compiled at all.  A thread that finds an empty slot takes the GIL to compile:
Numba's parallel regions run with the GIL released, and every kernel that waits for
:mod:`.pair`'s helper thread is ``nogil=True``, which is why the MPI epoch kernels
became so (holding the GIL while they waited, they would never let the helper compile).

The slot's name comes from the callee's name and signature, never from Numba's symbol
for it, which carries a per-process counter.  A caller loaded from the disk cache needs
its slots bound first: each caller's library records a :class:`_Bind` of each slot,
which Numba runs before it loads the caller (its ``reload_init`` hooks, as for parallel
regions).  It also fills the slots of the callees compiled with the caller (those
without ``returns``), so that only declared callees are ever filled from a kernel.

Only for callees that stay calls anyway, too big for LLVM to inline: a call through a
pointer is never inlined.  Not for the calls of every online SGD step either (the loss
head, ``max_abs``, ``sgd_update``, ``_backprop_rows``, ``pair.settle``): through slots,
a 2-8-8-1 step took 256 against 243 ns, for 0.2 s less of a cold start.

If Numba's internals this relies on are missing, callers link the callee as before.
"""
import ctypes
import hashlib
import importlib
import traceback

import llvmlite.binding as llvm
from llvmlite import ir
from numba.core import cgutils, imputils, typing
from numba.core.compiler_lock import global_compiler_lock
from numba.core import types as nbtypes

#: Slots by symbol name, each a ``c_void_p`` (kept alive here) holding a callee's
#: address, or null until first called.
_slots = {}
#: What each slot calls, by the slot's address: ``(module, name, signature)``.
_callees = {}
# Numba's own lock: filling a slot compiles, under that lock, and compiling a caller fills
# its slots; one lock each, taken in either order by two threads, deadlocked.
_filling = global_compiler_lock


class StaleKernelCache(RuntimeError):
    """A cached kernel calls a callee whose code has changed since it was cached."""


def _symbol(module, name, signature):
    """The name of the slot of ``module.name`` compiled for ``signature``."""
    digest = hashlib.sha1(str(signature).encode()).hexdigest()[:16]
    return f"fastdnn.call.{module}.{name}.{digest}"


def _slot(module, name, signature):
    """``(symbol, slot)`` of ``module.name`` for ``signature``, bound on first use."""
    symbol = _symbol(module, name, signature)
    with _filling:
        slot = _slots.get(symbol)
        if slot is None:
            slot = _slots[symbol] = ctypes.c_void_p()
            _callees[ctypes.addressof(slot)] = (module, name, signature)
            llvm.add_symbol(symbol, ctypes.addressof(slot))
    return symbol, slot


def _compiled(module, name, signature):
    """The compile result of ``module.name`` for ``signature``, compiled or loaded from
    the cache; :class:`StaleKernelCache` if its signature is not ``signature``."""
    cres = cause = None
    try:
        dispatcher = getattr(importlib.import_module(module), name)
        dispatcher.compile(signature.args)
        cres = dispatcher.overloads[tuple(signature.args)]
    except Exception as error:  # a typing error, a function gone
        cause = error
    if cres is None or cres.signature != signature:
        raise StaleKernelCache(
            f"a fastdnn kernel calls {module}.{name}{signature}, whose code has changed "
            "since the kernel was cached; delete the Numba cache (the __pycache__ folders "
            "of fastdnn/kernels, or NUMBA_CACHE_DIR) and run again") from cause
    return cres


def _fill(module, name, signature, cres=None):
    """Point the slot of ``module.name`` for ``signature`` at its compiled code (``cres``,
    or compiled or loaded now) unless it points there already."""
    slot = _slot(module, name, signature)[1]
    with _filling:
        if not slot.value:
            cres = cres or _compiled(module, name, signature)
            slot.value = cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)


_filled_from_kernels = 0


def filled_from_kernels():
    """How many slots running kernels have filled in this process: a run of steps that
    changes it spent part of its time compiling, or loading from the cache (a fit
    leaves such a run out of its epoch's samples/s)."""
    return _filled_from_kernels


@ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
def _compile_slot(address):
    """Fill the empty slot at ``address`` (called from a kernel, which ctypes gives the
    GIL); returns 0, or -1 with the error printed."""
    global _filled_from_kernels
    try:
        _fill(*_callees[address])
        _filled_from_kernels += 1
        return 0
    except BaseException:  # the kernel raises a RuntimeError; the cause is printed here
        traceback.print_exc()
        return -1


_CALLBACK = "fastdnn_compile_slot"
llvm.add_symbol(_CALLBACK, ctypes.cast(_compile_slot, ctypes.c_void_p).value)


class _Bind:
    """Bind the slot of ``module.name`` for ``signature``, and ``fill`` it (a reload hook:
    picklable, hashable)."""

    def __init__(self, module, name, signature, fill):
        self.key = (module, name, signature, fill)

    def __eq__(self, other):
        return isinstance(other, _Bind) and self.key == other.key

    def __hash__(self):
        return hash(self.key)

    def __reduce__(self):
        return _Bind, self.key

    def __call__(self):
        module, name, signature, fill = self.key
        if fill:
            _fill(module, name, signature)
        else:
            _slot(module, name, signature)


def _call_through_slot(module, name, signature, cres=None):
    """The lowering of a call to ``module.name`` for ``signature``: as
    :func:`numba.core.imputils.user_function`, through the slot, filling it first when
    empty, without linking the callee's library.  ``cres``: the callee, compiled."""
    bind = _Bind(module, name, signature, cres is not None)
    restype, argtypes = signature.return_type, signature.args

    def imp(context, builder, sig, args):
        symbol = _slot(module, name, signature)[0]
        if cres is not None:
            _fill(module, name, signature, cres)
        context.active_code_library._reload_init.add(bind)
        fnty = context.call_conv.get_function_type(restype, argtypes)
        module_ir = builder.module
        slot = module_ir.globals.get(symbol)
        if slot is None:
            slot = ir.GlobalVariable(module_ir, fnty.as_pointer(), symbol)
        with builder.if_then(cgutils.is_null(builder, builder.load(slot)), likely=False):
            byte_ptr = ir.IntType(8).as_pointer()
            fill = cgutils.get_or_insert_function(
                module_ir, ir.FunctionType(ir.IntType(32), [byte_ptr]), _CALLBACK)
            status = builder.call(fill, [builder.bitcast(slot, byte_ptr)])
            failed = builder.icmp_signed("!=", status, ir.Constant(ir.IntType(32), 0))
            with builder.if_then(failed, likely=False):
                context.call_conv.return_user_exc(
                    builder, RuntimeError,
                    (f"fastdnn could not compile {module}.{name} (the error is printed above)",))
        status, retval = context.call_conv.call_function(builder, builder.load(slot), restype,
                                                         argtypes, args)
        with cgutils.if_unlikely(builder, status.is_error):
            context.call_conv.return_status_propagate(builder, status)
        retval = imputils.fix_returning_optional(context, builder, sig, status, retval)
        return imputils.impl_ret_new_ref(context, builder, restype, retval)

    imp.signature = argtypes
    imp.libs = ()
    return imp


def _register(dispatcher, key, imp):
    """Make ``imp`` the lowering of calls that resolve to ``key`` (a compiled entry point,
    or a :class:`_Declared` key); False where Numba's internals differ."""
    try:
        selector = dispatcher.targetctx._defns[key]
        versions = selector.versions
    except (AttributeError, KeyError):
        return False
    versions.clear()
    selector.append(imp, tuple(imp.signature))
    return True


class _Declared:
    """The key under which calls of a declared (not yet compiled) callee are lowered."""

    def __init__(self, module, name, args):
        self.key = (module, name, args)

    def __eq__(self, other):
        return isinstance(other, _Declared) and self.key == other.key

    def __hash__(self):
        return hash(self.key)


def separate(dispatcher=None, *, returns=None):
    """Have the kernels that call ``dispatcher`` (a module-level ``njit`` function) call
    it through a slot instead of linking its code; returns ``dispatcher``.

    ``returns``: its return type (a Numba type, the same for all arguments), when given,
    types the calls without compiling it: it compiles when first called.  A wrong type is
    found at that first call (:class:`StaleKernelCache`, then a ``RuntimeError``).
    As a decorator: ``@separate`` or ``@separate(returns=types.none)``."""
    if dispatcher is None:
        return lambda d: separate(d, returns=returns)
    add_overload = getattr(dispatcher, "add_overload", None)
    if add_overload is None or not hasattr(dispatcher.targetctx, "_defns"):
        return dispatcher  # NUMBA_DISABLE_JIT (a plain function), or another Numba
    module = dispatcher.py_func.__module__
    name = dispatcher.py_func.__name__

    def add_separate_overload(cres):
        add_overload(cres)
        if not cres.objectmode:
            _register(dispatcher, cres.entry_point,
                      _call_through_slot(module, name, cres.signature, cres))

    dispatcher.add_overload = add_separate_overload
    if returns is None:
        return dispatcher

    def get_call_template(args, kws):
        pysig, args = dispatcher._compiler.fold_argument_types(args, kws)
        args = tuple(nbtypes.unliteral(a) for a in args)
        template = typing.make_concrete_template(f"CallTemplate({name})", key=name,
                                                 signatures=[returns(*args)])
        return template, pysig, args, {}

    def get_overload(sig):
        args = tuple(sig)
        key = _Declared(module, name, args)
        if key not in dispatcher.targetctx._defns:
            _register(dispatcher, key, _call_through_slot(module, name, returns(*args)))
        return key

    dispatcher.get_call_template = get_call_template
    dispatcher.get_overload = get_overload
    return dispatcher
