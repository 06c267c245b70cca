"""Kernels called through a pointer, not linked into their callers, and compiled when a
fit first calls them.

Numba links a callee's whole LLVM module into each caller's module, where LLVM
optimises it and generates its machine code again: the loss and gradient, the forward
pass and the BLAS wrappers were compiled once for themselves and once more inside every
kernel that calls them, 3.8 s of LLVM in a cold ``fastdnn train`` (2.0 s with these
callees separate; Intel Xeon).  A dispatcher passed to :func:`separate` is compiled once;
its callers hold a slot for its address, a pointer of their own module, and call it
there.

A slot starts empty in every process.  A caller that finds it so calls back into Python
(:func:`_compile_slot`, with the slot's address and the pickled callee and signature,
a constant of the caller), which compiles the callee or loads it from the disk cache,
and fills the slot; the call then proceeds.  So a kernel loaded from the cache loads
only the callees it reaches, and a callee declared with its return type
(``separate(returns=...)``) is not even compiled with its callers: the dropout of a fit
without dropout, the penalty of a fit without one, the heads of the other losses are
never compiled at all.  Nothing but the callback is resolved when a cached caller
loads: a slot bound by name had to be bound first, by hooks that Numba drops when a
caller links a callee it loaded from the cache (such a kernel then loaded with none of
its external symbols resolved, and crashed).

A thread that finds an empty slot takes the GIL to compile: Numba's parallel regions run
with the GIL released, and every kernel that waits for :mod:`.pair`'s helper thread is
``nogil=True``, which is why the MPI epoch kernels became so (holding the GIL while they
waited, they would never let the helper compile).

Only for callees that stay calls anyway, too big for LLVM to inline: a call through a
pointer is never inlined.  Not for the calls of every online SGD step either (the loss
head, ``max_abs``, ``sgd_update``, ``_backprop_rows``, ``pair.settle``): through slots,
a 2-8-8-1 step took 256 against 243 ns, for 0.2 s less of a cold start.

If Numba's internals this relies on are missing, callers link the callee as before.
"""
import collections
import contextlib
import ctypes
import hashlib
import importlib
import pickle
import threading
import traceback

import llvmlite.binding as llvm
from llvmlite import ir
from numba.core import cgutils, imputils, typing
from numba.core import types as nbtypes
from numba.core.compiler_lock import global_compiler_lock
from numba.core.errors import TypingError

from . import forks


class StaleKernelCache(RuntimeError):
    """A cached kernel calls a callee whose code has changed since it was cached."""


def _compiled(module, name, signature):
    """The compile result of ``module.name`` for ``signature`` (of its serial twin in a
    forked child, :func:`.forks.runnable`), compiled or loaded from the cache;
    :class:`StaleKernelCache` if its signature is not ``signature``."""
    stale = StaleKernelCache(
        f"a fastdnn kernel calls {module}.{name}{signature}, whose code has changed since "
        "the kernel was cached; delete the Numba cache (the __pycache__ folders of "
        "fastdnn/kernels, or NUMBA_CACHE_DIR) and run again")
    try:
        dispatcher = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as gone:
        raise stale from gone
    dispatcher = forks.runnable(dispatcher)
    try:
        dispatcher.compile(signature.args)
    except TypingError as error:  # the callee no longer takes these types
        raise stale from error
    # Any other error (a failed cache lookup, a bug in the compiler) is raised as it is.
    cres = dispatcher.overloads.get(tuple(signature.args))
    if cres is None or cres.signature != signature:
        raise stale
    return cres


#: Slots filled per thread id: a fit's own thread's, or, under ``None``, those of threads
#: that may work for a fit (:func:`_works_for_a_fit`), which every fit counts.  One count
#: for the process made another thread's compile blank a fit's rate.
_filled = collections.Counter()

#: ``(thread id, listener)`` pairs: a listener is called (without arguments) before a
#: slot's callee is compiled, neither loaded in this process nor in Numba's disk cache,
#: and a fit in progress says so (``fitting.FitRun``; the wide layers' fused online update
#: compiled for 1-8 s with nothing said).  Only the listeners of the thread that compiles
#: hear it (another thread's fit said "compiling" for it), all where that thread has none
#: and may work for a fit (a helper or pool thread: :func:`_works_for_a_fit`).
compile_listeners = []
_interrupted = []  # Ctrl-C during a slot's compile (see take_interrupt)


@contextlib.contextmanager
def listening(listener=lambda: None):
    """Within the block, the calling thread's slot fills are its own (see
    :func:`filled_from_kernels`) and ``listener`` hears of its compiles."""
    entry = (threading.get_ident(), listener)
    compile_listeners.append(entry)
    try:
        yield
    finally:
        compile_listeners.remove(entry)


def take_interrupt(error):
    """Whether the ``error`` a kernel raised was Ctrl-C while it compiled a callee
    (forgotten once asked): it raised RuntimeError("could not compile ..."), or, where
    the press came as the callback returned (ctypes drops it, leaving it pending), a
    SystemError caused by it.  The caller raises the KeyboardInterrupt it was."""
    pressed = bool(_interrupted)
    _interrupted.clear()
    return pressed or (isinstance(error, SystemError)
                       and isinstance(error.__cause__, KeyboardInterrupt))


def cached(dispatcher, argtypes):
    """Whether ``dispatcher`` is compiled in this process or in Numba's disk cache for
    the Numba types ``argtypes``: a tuple, or a predicate on a tuple of argument types
    (:func:`.warmup.ready` matches the arrays' only); True where Numba's internals do
    not tell."""
    match = argtypes if callable(argtypes) else tuple(argtypes).__eq__
    try:
        if any(match(types) for types in dispatcher.overloads):
            return True
        cache_file = getattr(dispatcher._cache, "_cache_file", None)
        if cache_file is None:  # no disk cache (FASTDNN_CACHE=0)
            return False
        magic = dispatcher.targetctx.codegen().magic_tuple()
        return any(match(key[0]) and key[1] == magic for key in cache_file._load_index())
    except Exception:  # noqa: BLE001 - another Numba: say nothing
        return True


def _works_for_a_fit():
    """Whether the calling thread, where no fit listens, may be working for one: a thread
    Python did not start (Numba's pool) or a fastdnn helper thread (``fastdnn-*``), not a
    thread of the program's own (whose predict said "compiling" on another's fit, and
    left that fit's run out of its rate)."""
    # By ident: current_thread() in a thread Python did not start registers a dummy
    # Thread that stays in threading.enumerate() for good (a fit_many left "Dummy-1",
    # and warmup's fork test, one thread alive, failed from then on).
    here = threading.get_ident()
    thread = next((t for t in threading.enumerate() if t.ident == here), None)
    return thread is None or thread.name.startswith("fastdnn-")


def _tell_compiling(module, name, signature):
    """Call the :data:`compile_listeners` if ``module.name`` must compile for ``signature``."""
    if not compile_listeners:
        return
    dispatcher = getattr(importlib.import_module(module), name, None)
    if dispatcher is None or cached(forks.runnable(dispatcher), signature.args):
        return
    here = threading.get_ident()
    listeners = tuple(compile_listeners)
    mine = [listener for ident, listener in listeners if ident == here]
    if not mine and _works_for_a_fit():
        mine = [listener for _, listener in listeners]
    for listener in mine:
        try:
            listener()
        except Exception:  # noqa: BLE001 - a message, never a reason to fail the compile
            traceback.print_exc()


#: Addresses of the slots filled with a parallel region (emptied in a forked child,
#: which fills them with the regions' serial twins: :mod:`.forks`).
_parallel_slots = []


def _empty_parallel_slots():
    for slot in _parallel_slots:
        ctypes.c_void_p.from_address(slot).value = None
    _parallel_slots.clear()


forks.on_serial(_empty_parallel_slots)


def filled_from_kernels():
    """How many slots running kernels have filled for the calling thread (its own fills
    while it listens in :data:`compile_listeners`, and every fill of a thread that may
    work for a fit): a run of steps that changes it spent part of its time compiling, or
    loading from the cache (a fit leaves such a run out of its epoch's samples/s)."""
    return _filled[threading.get_ident()] + _filled[None]


@ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
def _compile_slot(slot, key, size):
    """Fill the empty ``slot`` with the callee that the pickled ``key`` (``size`` bytes)
    names (called from a kernel, which ctypes gives the GIL); returns 0, or -1 with the
    error printed."""
    try:
        module, name, signature = pickle.loads(ctypes.string_at(key, size))
        _tell_compiling(module, name, signature)
        # Numba's own lock: a thread compiling a caller holds it, and one lock of our
        # own, taken in the other order, deadlocked four fits in threads.
        with global_compiler_lock:
            cres = _compiled(module, name, signature)
            address = cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)
            ctypes.c_void_p.from_address(slot).value = address
            if forks.is_parallel(getattr(importlib.import_module(module), name)):
                _parallel_slots.append(slot)
        here = threading.get_ident()
        mine = any(ident == here for ident, _ in compile_listeners)
        _filled[None if not mine and _works_for_a_fit() else here] += 1
        return 0
    except KeyboardInterrupt:  # the slot stays empty; the caller raises it again
        _interrupted.append(True)
        return -1
    except BaseException:  # the kernel raises a RuntimeError; the cause is printed here
        traceback.print_exc()
        return -1


_CALLBACK = "fastdnn_compile_slot"
llvm.add_symbol(_CALLBACK, ctypes.cast(_compile_slot, ctypes.c_void_p).value)


def _call_through_slot(module, name, signature):
    """The lowering of a call to ``module.name`` for ``signature``: as
    :func:`numba.core.imputils.user_function`, through the caller's slot, filled first
    when empty, without linking the callee's library."""
    restype, argtypes = signature.return_type, signature.args
    key = pickle.dumps((module, name, signature), protocol=4)
    digest = hashlib.sha1(key).hexdigest()[:16]

    def imp(context, builder, sig, args):
        fnty = context.call_conv.get_function_type(restype, argtypes)
        module_ir = builder.module
        slot_name = f"fastdnn.slot.{module}.{name}.{digest}"
        slot = module_ir.globals.get(slot_name)
        if slot is None:
            slot = ir.GlobalVariable(module_ir, fnty.as_pointer(), slot_name)
            slot.linkage = "private"
            slot.initializer = ir.Constant(fnty.as_pointer(), None)
        # The slot is written from Python only; LLVM knows it may be, because its address
        # goes to the callback (a private global never stored to would be folded to null).
        with builder.if_then(cgutils.is_null(builder, builder.load(slot)), likely=False):
            byte_ptr = ir.IntType(8).as_pointer()
            fill = cgutils.get_or_insert_function(
                module_ir, ir.FunctionType(ir.IntType(32), [byte_ptr, byte_ptr, ir.IntType(64)]),
                _CALLBACK)
            status = builder.call(fill, [builder.bitcast(slot, byte_ptr),
                                         context.insert_const_bytes(module_ir, key),
                                         ir.Constant(ir.IntType(64), len(key))])
            # Empty still is a failure too: ctypes answers 0 for a callback whose
            # exception it had to drop (a Ctrl-C at its very entry).
            failed = builder.or_(
                builder.icmp_signed("!=", status, ir.Constant(ir.IntType(32), 0)),
                cgutils.is_null(builder, builder.load(slot)))
            with builder.if_then(failed, likely=False):
                context.call_conv.return_user_exc(
                    builder, RuntimeError,
                    (f"fastdnn could not compile {module}.{name} (the error is printed above)",))
        status, retval = context.call_conv.call_function(
            builder, builder.load(slot), restype, argtypes, args)
        with cgutils.if_unlikely(builder, status.is_error):
            context.call_conv.return_status_propagate(builder, status)
        retval = imputils.fix_returning_optional(context, builder, sig, status, retval)
        return imputils.impl_ret_new_ref(context, builder, restype, retval)

    imp.signature = argtypes
    imp.libs = ()
    return imp


def _register(dispatcher, key, imp):
    """Make ``imp`` the lowering of calls that resolve to ``key`` (a compiled entry point,
    or a :class:`_Declared` key), in place of Numba's, which links the callee."""
    selector = dispatcher.targetctx._defns[key]  # a defaultdict (checked in separate)
    selector.versions.clear()
    selector.append(imp, tuple(imp.signature))


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
                      _call_through_slot(module, name, cres.signature))

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
