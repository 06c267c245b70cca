"""Each epoch kernel compiles only its own gradient path (``train.step_gradient``'s
``path``, a constant Numba prunes on before typing): a fit that never pairs its batches
does not compile the pair's code, nor an online fit the pair's or the shards', nor a
small net the big nets' parallel update -- read from the LLVM IR, as a timing could
not.  And online SGD's backward pass compiles only its one-row loops (read from the
typed Numba IR)."""
import numpy as np
import pytest
from numba import float64, njit, void
from numba.core import ir

import fastdnn as fd
from fastdnn.kernels.cpu import backend, dense, train
from support import record_epoch_kernels


def _fresh_ir(dispatcher, sig):
    """LLVM IR of ``dispatcher`` compiled anew for ``sig`` (a cached one keeps none)."""
    options = {k: v for k, v in dispatcher.targetoptions.items() if k != "nopython"}
    fresh = njit(**dict(options, cache=False))(dispatcher.py_func)
    fresh.compile(sig)
    return fresh.inspect_llvm(sig)


def _fit_kernel(monkeypatch, batch_size):
    """The epoch kernel a float64 fit with Adam at ``batch_size`` ran, and its signature."""
    kernels = record_epoch_kernels(monkeypatch, backend.CPUTrainer)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((300, 40)), rng.integers(0, 3, 300)
    fd.MLP([40, 200, 3], dtype="float64", seed=0).fit(X, y, epochs=1, batch_size=batch_size,
                                                      optimizer="adam")
    (kernel,) = set(kernels)
    sig = next(s for s in kernel.signatures if str(s[2].dtype) == "float64")
    return kernel, sig


def test_a_fit_that_never_pairs_compiles_none_of_the_pair(monkeypatch):
    # One fresh compile of the kernel and its callees: ~20 s, so one case (the kernel of
    # `fastdnn train`'s default fit, whose cold start this pruning shortened).
    ran, sig = _fit_kernel(monkeypatch, batch_size=16)
    assert ran is train.train_steps
    ir = _fresh_ir(ran, sig)
    assert "loss_and_gradient" in ir  # the control: callees are named in the IR
    for name in ("paired_gradient", "paired_adam", "sharded_gradient", "max_abs_wide",
                 "update_wide"):
        assert name not in ir, f"train_steps compiles {name}, which it never runs"


@pytest.mark.parametrize("batch_size,kernel", [
    (16, "train_steps"), (128, "train_steps_paired"), (1, "train_steps_online")])
def test_the_fit_picks_its_kernel(monkeypatch, batch_size, kernel):
    assert _fit_kernel(monkeypatch, batch_size)[0] is getattr(train, kernel)


def test_one_row_backward_compiles_only_the_one_row_loops():
    # The online kernel's backward pass passes one_row=True: a one-row batch's bias and
    # weight gradients are copies and products, so Numba must prune the accumulating
    # loops (no in-place add left in its typed IR) before typing them, which is what
    # saves their compile; the general case keeps them.  (LLVM would fold the constant
    # too, too late for the compile time, so its IR cannot tell.)
    def in_place_adds(body):
        fresh = njit(body)
        sig = void(float64[:, ::1], float64[:, ::1], float64[:, ::1], float64[::1])
        fresh.compile(sig)
        blocks = fresh.overloads[sig.args].type_annotation.blocks
        return sum(isinstance(stmt, ir.Assign) and isinstance(stmt.value, ir.Expr)
                   and stmt.value.op == "inplace_binop"
                   for block in blocks.values() for stmt in block.body)

    def one_row(delta, A_prev, dW, db):
        dense._weight_grad_rows(delta, A_prev, dW, db, True)

    def general(delta, A_prev, dW, db):
        dense._weight_grad_rows(delta, A_prev, dW, db)

    assert in_place_adds(general) > 0
    assert in_place_adds(one_row) == 0
