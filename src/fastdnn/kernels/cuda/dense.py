"""CUDA twins of :mod:`fastdnn.kernels.cpu.dense`: the forward affine map with fused bias +
activation, and its layerwise backward, as one tiled shared-memory GEMM kernel with three epilogues.

All three products of a dense layer are ``C = A @ B`` with operands at strides in the
flat buffers (see :mod:`fastdnn.kernels.spec`), so one tile loop serves them:

=============  ========================  ====================  ==============================
mode           ``A`` (M x K)             ``B`` (K x N)         epilogue
=============  ========================  ====================  ==============================
FORWARD        ``A_prev`` (m x k)        ``W`` (k x n)         ``Z = C + b``, ``A = g(Z)``
WEIGHT_GRAD    ``[A_prev, 1].T`` (k+1)   ``delta`` (m x n)     ``[dW; db] = C``
BACKPROP       ``delta`` (m x n)         ``W.T`` (n x k)       ``delta_prev = C * g'(below)``
=============  ========================  ====================  ==============================

``db`` is the extra row of ones under ``A_prev.T``: ``b_i`` follows ``W_i`` in ``theta``,
so ``[dW; db]`` is one ``(k+1) x n`` block of the gradient, summed in a fixed order
with no atomics (deterministic).  ``delta_prev`` comes out already multiplied by the
derivative of the layer below, which the CPU does in a second pass.

Dropout (training layouts, a layer whose ``DROP`` is set): the FORWARD epilogue also
writes ``A * mask`` into the layer's ``OUT_OFF`` slot, which the next layer reads (its
``IN_OFF``, so WEIGHT_GRAD takes the dropped-out input too), and the BACKPROP epilogue
multiplies ``delta_prev`` by the same mask before the derivative; the masks are
``spec.dropout_scale(key, row, layer, unit, DROP)``, as the CPU's ``_dropout`` draws
them, each value rounded to the dtype where the CPU stores it.

Each block computes a ``(TILE*MICRO)^2`` tile of ``C``; each thread a ``MICRO x MICRO``
register tile.  The K loop runs over ``range(0, K, TILE)`` (from the matrix size,
never from the grid), and blocks stride over output tiles, so any grid is correct.
Every output element sums its K terms in the same order whatever MICRO is, so the
launch shape never changes results.

The K loop is software-pipelined: each thread loads its share of the next stage into
registers before multiplying the current one, so the global loads' latency hides behind
the FMAs.  At 512x4096x4096 a block of 8 warps is all an SM holds (134 registers a
thread then; 254 with the pipeline, ptxas for sm_86 and sm_90, and float64 spills), and
without this it issued on 27.5% of its cycles (Nsight Compute).  Measured on
an H200 (2026-11-28, ``benchmarks/gpu_gemm_profile.py``, the two trees alternated):
6.8-7.1 -> 15.7-16.1 TFLOP/s on the 4096-wide shapes, 5.1-5.8 -> 7.1-7.2 at 512x1024x1024,
the same (3.6-4.2) at batch 256 with 1024-wide layers, whose register tile is 2x2.
"""
import functools

import numba
import numpy as np
from numba import cuda

from ... import config
from ..spec import A_OFF, ACT, B_OFF, DROP, FAN_IN, FAN_OUT, IN_OFF, OUT_OFF, W_OFF, Z_OFF
from . import formulas as F
from . import dispatch, launch
from .activations import activate, derivative

FORWARD, WEIGHT_GRAD, BACKPROP = range(3)
#: The random key of passes that never drop (inference, evaluation; see spec.step_key).
NO_KEY = np.uint64(0)


@functools.lru_cache(maxsize=None)
def gemm_kernel(tile, micro, dtype):
    """The tiled GEMM kernel for ``tile x tile`` threads, ``micro x micro`` outputs each."""
    T = tile
    R = micro
    V = min(R, 4)       # outputs a thread owns side by side: float4 reads of shared memory
    BM = T * R          # block tile (rows and columns of C)
    BK = T              # depth of one shared-memory stage
    PAD = 4             # keeps rows 16-byte aligned, breaks bank conflicts of transposed stores
    TT = T * T
    STAGE = (BK, BM + PAD)
    TV = T * V
    nbtype = numba.from_dtype(np.dtype(dtype))
    # A float32 net's epilogues in float32 (F.FLOAT32): the formulas' float64 literals
    # made them float64, 183 float64 instructions in the float32 kernel (ptxas, sm_86).
    g, g_prime = ((F.FLOAT32["activate"], F.FLOAT32["derivative"])
                  if np.dtype(dtype) == np.float32 else (activate, derivative))
    # Checked here, as the simulator runs any size: a GPU refuses these at the build.
    if TT > launch.MAX_THREADS:
        raise ValueError(f"fastdnn.config.CUDA_TILE={T}: {TT} threads a block, above CUDA's "
                         f"{launch.MAX_THREADS} (CUDA_TILE <= 32)")
    shared = 2 * BK * (BM + PAD) * np.dtype(dtype).itemsize
    if shared > launch.MAX_SHARED_BYTES:  # CUDA_MICRO=16 in float64: 66,560 bytes
        raise ValueError(f"fastdnn.config.CUDA_TILE={T} and CUDA_MICRO={R} need {shared:,} "
                         f"bytes of shared memory a block in {np.dtype(dtype).name}, above "
                         f"CUDA's {launch.MAX_SHARED_BYTES:,}: lower CUDA_MICRO")

    @cuda.jit(device=True)
    def a_slot(e, sa_p):
        """``(i, p)``: where thread slot ``e`` of a stage puts its element of ``A`` in ``sA``."""
        if sa_p == 1:
            return e // BK, e % BK
        return e % BM, e // BM

    @cuda.jit(device=True)
    def b_slot(e, sb_j):
        """``(j, p)``: where thread slot ``e`` of a stage puts its element of ``B`` in ``sB``."""
        if sb_j == 1:
            return e % BM, e // BM
        return e // BK, e % BK

    @cuda.jit(device=True)
    def a_value(A, a_base, sa_i, sa_p, M, K, aug, row0, p0, e):
        """Slot ``e``'s element of ``A`` in the stage at depth ``p0`` (0 past the edges; 1 on
        the row of ones ``aug``)."""
        i, p = a_slot(e, sa_p)
        gi = row0 + i
        gp = p0 + p
        if gp < K:
            if gi == aug:
                return nbtype(1)
            if gi < M:
                return A[a_base + gi * sa_i + gp * sa_p]
        return nbtype(0)

    @cuda.jit(device=True)
    def b_value(B, b_base, sb_p, sb_j, N, K, col0, p0, e):
        """Slot ``e``'s element of ``B`` in the stage at depth ``p0`` (0 past the edges)."""
        j, p = b_slot(e, sb_j)
        gj = col0 + j
        gp = p0 + p
        if gp < K and gj < N:
            return B[b_base + gp * sb_p + gj * sb_j]
        return nbtype(0)

    @cuda.jit
    def tile_gemm(mode, theta, grad, work, deltas, table, layer, m, d_off, p_off, key):
        """``C = A @ B`` over the layer ``layer`` of ``table``, epilogue by ``mode``
        (dropout masks from ``key``)."""
        k = table[layer, FAN_IN]
        n = table[layer, FAN_OUT]
        w_off = table[layer, W_OFF]
        b_off = table[layer, B_OFF]
        code = table[layer, ACT]
        z_out = table[layer, Z_OFF]
        a_out = table[layer, A_OFF]
        drop = table[layer, DROP]
        drop_out = table[layer, OUT_OFF]
        drop_layer = layer
        aug = -1
        if mode == FORWARD:
            A = work
            a_base = table[layer, IN_OFF]
            sa_i = k
            sa_p = 1
            B = theta
            b_base = w_off
            sb_p = n
            sb_j = 1
            M = m
            N = n
            K = k
        elif mode == WEIGHT_GRAD:
            A = work
            a_base = table[layer, IN_OFF]
            sa_i = 1
            sa_p = k
            B = deltas
            b_base = d_off
            sb_p = n
            sb_j = 1
            M = k + 1
            N = n
            K = m
            aug = k
            drop = 0
        else:
            A = deltas
            a_base = d_off
            sa_i = n
            sa_p = 1
            B = theta
            b_base = w_off
            sb_p = 1
            sb_j = n
            M = m
            N = k
            K = n
            code = table[layer - 1, ACT]
            z_out = table[layer - 1, Z_OFF]
            a_out = table[layer - 1, A_OFF]
            drop = table[layer - 1, DROP]
            drop_layer = layer - 1

        sA = cuda.shared.array(STAGE, dtype=nbtype)
        sB = cuda.shared.array(STAGE, dtype=nbtype)
        acc = cuda.local.array((R, R), dtype=nbtype)
        a_reg = cuda.local.array(R, dtype=nbtype)
        a_next = cuda.local.array(R, dtype=nbtype)
        b_next = cuda.local.array(R, dtype=nbtype)
        b_reg = cuda.local.array(R, dtype=nbtype)
        zero = nbtype(0)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * T + tx
        tiles_m = (M + BM - 1) // BM
        tiles_n = (N + BM - 1) // BM
        for ti in range(cuda.blockIdx.y, tiles_m, cuda.gridDim.y):
            row0 = ti * BM
            for tj in range(cuda.blockIdx.x, tiles_n, cuda.gridDim.x):
                col0 = tj * BM
                for r in range(R):
                    for c in range(R):
                        acc[r, c] = zero
                # Software pipelining (module docstring): the next stage's operands wait
                # in registers (a_next, b_next) while the current stage is multiplied.
                for ld in range(R):
                    e = tid + ld * TT
                    a_next[ld] = a_value(A, a_base, sa_i, sa_p, M, K, aug, row0, 0, e)
                    b_next[ld] = b_value(B, b_base, sb_p, sb_j, N, K, col0, 0, e)
                for p0 in range(0, K, BK):
                    # Stage A[row0:, p0:] and B[p0:, col0:]; consecutive threads walk the
                    # operand's unit-stride side so that global reads coalesce.
                    for ld in range(R):
                        e = tid + ld * TT
                        i, p = a_slot(e, sa_p)
                        sA[p, i] = a_next[ld]
                        j, p = b_slot(e, sb_j)
                        sB[p, j] = b_next[ld]
                    cuda.syncthreads()
                    if p0 + BK < K:
                        for ld in range(R):
                            e = tid + ld * TT
                            a_next[ld] = a_value(A, a_base, sa_i, sa_p, M, K, aug, row0,
                                                 p0 + BK, e)
                            b_next[ld] = b_value(B, b_base, sb_p, sb_j, N, K, col0, p0 + BK, e)
                    for p in range(BK):
                        for r in range(R):
                            a_reg[r] = sA[p, (r // V) * TV + ty * V + r % V]
                        for c in range(R):
                            b_reg[c] = sB[p, (c // V) * TV + tx * V + c % V]
                        for r in range(R):
                            for c in range(R):
                                acc[r, c] += a_reg[r] * b_reg[c]
                    cuda.syncthreads()
                for r in range(R):
                    i = row0 + (r // V) * TV + ty * V + r % V
                    if i < M:
                        for c in range(R):
                            j = col0 + (c // V) * TV + tx * V + c % V
                            if j < N:
                                v = acc[r, c]
                                if mode == FORWARD:
                                    e = i * n + j
                                    z = v + theta[b_off + j]
                                    if z_out != a_out:
                                        work[z_out + e] = z
                                    work[a_out + e] = g(z, code)
                                    if drop > 0:
                                        work[drop_out + e] = work[a_out + e] * F.dropout_scale(
                                            key, i, drop_layer, j, drop)
                                elif mode == WEIGHT_GRAD:
                                    grad[w_off + i * n + j] = v
                                else:
                                    e = i * k + j
                                    if drop > 0:
                                        v = nbtype(v * F.dropout_scale(key, i, drop_layer, j,
                                                                       drop))
                                    deltas[p_off + e] = v * g_prime(work[a_out + e],
                                                                    work[z_out + e], code)

    return tile_gemm


def _launch(mode, bufs, M, N, layer, m, d_off=0, p_off=0, key=NO_KEY, micro=None):
    micro, grid, block = launch.gemm_config(M, N, micro)
    kernel = gemm_kernel(int(config.CUDA_TILE), micro, bufs.theta.dtype.str)
    dispatch.call(kernel, grid, block, mode, bufs.theta, bufs.grad, bufs.work, bufs.deltas,
                  bufs.table, layer, m, d_off, p_off, np.uint64(key))


def dense_forward(bufs, table, layer, m, key=NO_KEY, micro=None):
    """``Z = A_prev @ W + b``, ``A = g(Z)`` for layer ``layer`` on ``m`` rows (in ``bufs.work``),
    and ``A * mask`` (masks of ``key``) where the layer has dropout.

    ``table`` is the host copy of the layout table; ``bufs.table`` its device copy.
    """
    _launch(FORWARD, bufs, m, int(table[layer, FAN_OUT]), layer, m, key=key, micro=micro)


def dense_backward(bufs, table, layer, m, d_off, p_off, key=NO_KEY):
    """``[dW; db] = [A_prev, 1].T @ delta`` into ``bufs.grad``, then (above layer 0)
    ``delta_prev = (delta @ W.T) * mask * g'(Z_below)`` into ``bufs.deltas[p_off:]`` (the
    mask of ``key`` where the layer below has dropout, else 1).

    ``delta`` is dL/dZ of this layer, at ``bufs.deltas[d_off:]``.
    """
    k = int(table[layer, FAN_IN])
    n = int(table[layer, FAN_OUT])
    _launch(WEIGHT_GRAD, bufs, k + 1, n, layer, m, d_off, p_off)
    if layer > 0:
        _launch(BACKPROP, bufs, m, k, layer, m, d_off, p_off, key)
