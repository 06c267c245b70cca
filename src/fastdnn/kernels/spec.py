"""Flat memory layout of a net: where each layer's parameters and buffers live.

All parameters sit in one vector ``theta`` as ``[W_1, b_1, W_2, b_2, ...]`` (each ``W``
C-ordered ``(fan_in, fan_out)``), and all activations of a batch in one vector
``work``.  The compiled kernels read offsets from an int64 table with a row per layer,
so nets of any depth and width, and any batch size, share one compiled signature per
dtype: changing the architecture never recompiles.
"""
from dataclasses import dataclass

import numpy as np

from . import config
from .activations import NEEDS_Z, IDENTITY

# Columns of the layout table.
# GEMM_MIN: the multiply-add count (rows * fan_in * fan_out) from which the layer's
# products go to BLAS rather than the loop kernels (decided per batch, by shape only).
FAN_IN, FAN_OUT, W_OFF, B_OFF, IN_OFF, Z_OFF, A_OFF, ACT, GEMM_MIN = range(9)
N_COLS = 9


def param_offsets(sizes):
    """Offsets of ``W_i`` and ``b_i`` in ``theta`` and the total parameter count."""
    w_off, b_off, off = [], [], 0
    for k, n in zip(sizes[:-1], sizes[1:]):
        w_off.append(off)
        off += k * n
        b_off.append(off)
        off += n
    return w_off, b_off, off


@dataclass(frozen=True)
class Layout:
    """Offsets for a net with layer ``sizes`` and hidden ``codes`` at batch capacity ``cap``.

    Attributes
    ----------
    table : ndarray of int64, shape (n_layers, N_COLS)
    n_params : int
        Length of ``theta``.
    work_size : int
        Length of the activation buffer (input slot, each layer's ``A``, and ``Z``
        where the activation's derivative needs it).
    delta_size : int
        Length of each of the two ping-pong ``delta`` buffers.
    cap : int
        Rows the buffers hold.
    """

    table: np.ndarray
    n_params: int
    work_size: int
    delta_size: int
    cap: int

    @classmethod
    def build(cls, sizes, codes, cap, small_gemm_macs=None):
        """Lay out a net; ``codes`` has one activation code per hidden layer."""
        if small_gemm_macs is None:
            small_gemm_macs = config.SMALL_GEMM_MACS
        n_layers = len(sizes) - 1
        w_off, b_off, n_params = param_offsets(sizes)
        table = np.zeros((n_layers, N_COLS), dtype=np.int64)
        # Slot 0 holds a gathered input batch for the GPU backend; the CPU kernels read
        # X (or their own gather buffer, shared by shards) directly.
        off = cap * sizes[0]
        prev_out = 0
        for i in range(n_layers):
            k, n = sizes[i], sizes[i + 1]
            code = codes[i] if i < n_layers - 1 else IDENTITY
            z_off = off
            if code in NEEDS_Z:
                off += cap * n
            table[i] = (k, n, w_off[i], b_off[i], prev_out, z_off, off, code, small_gemm_macs)
            prev_out = off
            off += cap * n
        return cls(table, n_params, off, cap * max(sizes), cap)

    @property
    def out_offset(self):
        """Offset in ``work`` of the last layer's output (the logits)."""
        return int(self.table[-1, A_OFF])
