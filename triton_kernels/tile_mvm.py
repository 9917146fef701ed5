"""The Triton kernels of ``fxanalog::tile_mvm`` and their launcher.

``launch`` computes exactly the semantics of the torch path
(``fxanalog.ops.tile_mvm_torch.tile_forward``; docs/tile.md) with three
kernels; the op layer (``fxanalog.ops.tile_mvm``) registers it with
``supports`` and the dispatch sends CUDA tensors here:

1. ``_dac_kernel``: per (row block, input piece, group), the noise-management
   scale alpha of every row (ABS_MAX / MAX), whether the piece is zero for
   the whole batch, and the round-1 DAC output (scale, rint, clip, input
   noise) in input steps, written as aligned fixed-size pieces.
2. ``_tile_forward_kernel``: one program per (row block, column block,
   group) runs, for every input piece, ``tl.dot`` over the piece (float32
   accumulation), the ADC with its noise, rounding and clipping as the
   epilogue, and adds the piece times alpha * dy * out_scale to a float32
   sum; then column scales and bias. With iterative bound management it
   also stores the clipped round-1 value of every piece and marks the (row,
   input piece, output piece) tiles whose output saturated (|y| > ``io.out_sat``).
3. ``_bound_management_kernel`` (iterative bound management only): one
   program per (row, output piece, group) redoes, for the marked tiles, the
   rounds r = 2, 4, ... with fresh noise until nothing saturates (the
   round past ``io.last_round_factor`` is the last and is kept clipped), and
   replaces the round-1 contribution in the output. Unmarked programs exit
   at once; there is no host synchronisation.

Every quantity of the semantics (steps, bounds, clip rule, rounds, what is
random) is read from ``TileIO`` (``fxanalog.ops.io``). Random numbers come
from the named Philox streams of ``fxanalog.triton_kernels.streams``, one
seed per call from torch's generator of the device: ``torch.manual_seed``
makes calls reproducible and every call draws anew; the input noise of a row
is the same in every column block that reads it.

IR drop (``io.ir_drop > 0``) and float64 inputs are computed by the torch
path (``supports``); an empty batch gives an empty result without a launch.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

import torch
import triton
import triton.language as tl
from torch import Tensor

from fxanalog.config import NoiseManagementType
from fxanalog.triton_kernels.streams import (
    INPUT_NOISE,
    INPUT_ROUNDING,
    OUTPUT_NOISE,
    OUTPUT_ROUNDING,
    WEIGHT_NOISE,
    call_seed,
    stream_key,
)
from fxanalog.triton_kernels.utils import piece_tables, tile_blocks

if TYPE_CHECKING:  # the op layer passes it; no import of fxanalog.ops here
    from fxanalog.ops.io import TileIO

__all__ = ["launch", "supports", "set_precision", "get_precision", "MAX_GRID_GROUPS"]

PRECISIONS = ("fp32", "tf32", "ieee")
_PRECISION: Optional[str] = None
_INT16_MAX = 32767.0  # round-1 ADC values of bound management are stored as int16 up to this
INT16_MAX = tl.constexpr(_INT16_MAX)
TINY_SCALE = tl.constexpr(2.0**-64)  # = fxanalog.ops.tile_mvm_torch.TINY_SCALE


def set_precision(name: Optional[str]) -> None:
    """How ``tl.dot`` multiplies float32 on tensor cores:

    - ``"fp32"``: the weights are split into two TF32 parts (``w = w_hi +
      w_lo``), two TF32 products: float32-level accuracy (the DAC output is
      a whole number of steps, exact in TF32);
    - ``"tf32"``: one TF32 product (weights rounded to 10 mantissa bits);
    - ``"ieee"``: float32 FMA, no tensor cores (slowest).

    None (the default): the environment variable
    ``FXANALOG_TRITON_PRECISION`` if set, else torch's own setting for
    float32 matmuls, as cuBLAS follows it for the digital layers:
    ``torch.get_float32_matmul_precision() == "highest"`` (torch's default)
    gives ``"fp32"``, ``"high"`` or ``"medium"`` give ``"tf32"``.
    """
    global _PRECISION
    if name is not None and name not in PRECISIONS:
        raise ValueError(f"set_precision: {name!r}: expected one of {PRECISIONS} or None")
    _PRECISION = name


def get_precision() -> str:
    name = _PRECISION or os.environ.get("FXANALOG_TRITON_PRECISION")
    if name is None:
        return "fp32" if torch.get_float32_matmul_precision() == "highest" else "tf32"
    if name not in PRECISIONS:
        raise ValueError(f"FXANALOG_TRITON_PRECISION = {name!r}: expected one of {PRECISIONS}")
    return name


_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_GRID_GROUPS = 65535  # CUDA's limit on the grid axes that carry the groups


def supports(x: Tensor, tiles: Tensor, io: "TileIO") -> bool:
    """The kernels compute this case (the dispatch sends the others to the
    torch path): no IR drop, float32/16/bfloat16 tensors."""
    return io.ir_drop == 0 and x.dtype in _KERNEL_DTYPES and tiles.dtype in _KERNEL_DTYPES and x.dim() == 3


import triton
import triton.language as tl


@triton.jit
def _rint(v):
    """Round half to even, exact for every float32 (|v| >= 2^23 is whole)."""
    a = tl.abs(v)
    r = tl.where(a < 8388608.0, (a + 8388608.0) - 8388608.0, a)
    return tl.where(v < 0, -r, r)


@triton.jit
def _dac(xv, up, s, ux, offs, seed, rnd, GN, gi, inp_bound, inp_noise,
         CLIP_IN: tl.constexpr, QUANT_IN: tl.constexpr, STO_IN: tl.constexpr, INP_NOISE: tl.constexpr):
    """Inputs -> DAC output in input steps: scale, (stochastic) rint, clip, noise.
    ``s`` = 1/(alpha up r), ``up`` 2^64 for a tiny alpha (else 1: see
    ``_prescale``); in aihwkit's float32 order, ``(x up) * s`` then divided
    (correctly rounded) by the step ``ux``, so that half-step ties resolve as
    in the torch path and aihwkit (docs/tile.md step 3). Quantize first, then
    clip. ``offs``: int32 counter of each input (row * p_in + position)."""
    v = (xv * up) * s
    if QUANT_IN:
        v = tl.math.div_rn(v, ux)
        if STO_IN:
            v = v + (tl.rand(stream_key(seed, rnd, INPUT_ROUNDING, GN, gi), offs) - 0.5)
        v = _rint(v)
    if CLIP_IN:
        v = tl.where(v == v, tl.minimum(tl.maximum(v, -inp_bound), inp_bound), v)  # NaN stays NaN
    if INP_NOISE:
        v = v + inp_noise * tl.randn(stream_key(seed, rnd, INPUT_NOISE, GN, gi), offs)
    return v


@triton.jit
def _prescale(alpha):
    """2^64 where the noise-management scale is below 2^-64, else 1: x and
    alpha are scaled up by it (exactly) before 1/alpha, which would overflow
    (the torch path's ``TINY_SCALE``)."""
    return tl.where(alpha < TINY_SCALE, 18446744073709551616.0, 1.0)


@triton.jit
def _clip(y, bound):
    """Clip to [-bound, bound], keeping NaN and +-inf (tl.minimum/maximum
    would drop a NaN): a non-finite value spoils only its own outputs, as
    digitally (and as the torch path's clamp)."""
    return tl.where(tl.abs(y) < float("inf"), tl.minimum(tl.maximum(y, -bound), bound), y)


@triton.jit
def _normal(key, offs, TILE_M: tl.constexpr, TILE_N: tl.constexpr):
    """Standard normals. TILE_M = 0: one per counter in ``offs``. Else a
    (TILE_M, TILE_N) block from (TILE_M, TILE_N // 4) counters: each
    Philox call gives 4 normals (columns 4q .. 4q + 3)."""
    if TILE_M == 0:
        z = tl.randn(key, offs)
    else:
        n0, n1, n2, n3 = tl.randn4x(key, offs)
        z = tl.reshape(tl.join(tl.join(n0, n1), tl.join(n2, n3)), (TILE_M, TILE_N))
    return z


@triton.jit
def _uniform(key, offs, TILE_M: tl.constexpr, TILE_N: tl.constexpr):
    """U(0, 1) draws, laid out as in ``_normal``."""
    if TILE_M == 0:
        u = tl.rand(key, offs)
    else:
        u0, u1, u2, u3 = tl.rand4x(key, offs)
        u = tl.reshape(tl.join(tl.join(u0, u1), tl.join(u2, u3)), (TILE_M, TILE_N))
    return u


@triton.jit
def _adc(acc, wvar, offs, seed, rnd, GN, gi, ux, uy, out_noise, w_noise, nl,
         OUT_NOISE: tl.constexpr, W_NOISE: tl.constexpr, NONLIN: tl.constexpr,
         QUANT_OUT: tl.constexpr, STO_OUT: tl.constexpr, TILE_M: tl.constexpr, TILE_N: tl.constexpr):
    """Accumulated W v (input steps) -> ADC output in output steps, rounded,
    not clipped. ``wvar``: sum v^2 (additive weight noise) or sum |w| v^2
    (PCM read noise), in input steps squared; ``offs``: int32 counters
    (see ``_normal``)."""
    y = acc * ux  # normalized output
    if NONLIN:
        if W_NOISE != 0:
            y = y + (w_noise * ux) * tl.sqrt(wvar) * _normal(stream_key(seed, rnd, WEIGHT_NOISE, GN, gi), offs, TILE_M, TILE_N)
        y = y / (1.0 + tl.abs(nl * y))
        if OUT_NOISE:
            y = y + out_noise * _normal(stream_key(seed, rnd, OUTPUT_NOISE, GN, gi), offs, TILE_M, TILE_N)
    else:
        if W_NOISE != 0:
            # weight and output noise are independent normals: one draw
            std = tl.sqrt((w_noise * ux) * (w_noise * ux) * wvar + out_noise * out_noise)
            y = y + std * _normal(stream_key(seed, rnd, OUTPUT_NOISE, GN, gi), offs, TILE_M, TILE_N)
        elif OUT_NOISE:
            y = y + out_noise * _normal(stream_key(seed, rnd, OUTPUT_NOISE, GN, gi), offs, TILE_M, TILE_N)
    y = y / uy
    if QUANT_OUT:
        if STO_OUT:
            y = y + (_uniform(stream_key(seed, rnd, OUTPUT_ROUNDING, GN, gi), offs, TILE_M, TILE_N) - 0.5)
        y = _rint(y)
    return y


@triton.jit
def _tf32_hi(a):
    """The TF32 part of float32 values (low 13 mantissa bits cleared)."""
    return (a.to(tl.int32, bitcast=True) & -8192).to(tl.float32, bitcast=True)


@triton.jit
def _mma(a, b, acc, PRECISION: tl.constexpr, A_EXACT: tl.constexpr):
    """acc + a @ b. PRECISION 0: ieee; 1: tf32; 2: b split into two TF32
    parts (and a too unless A_EXACT: its values are exact in TF32)."""
    if PRECISION == 0:
        acc = tl.dot(a, b, acc, input_precision="ieee")
    elif PRECISION == 1:
        acc = tl.dot(a, b, acc, input_precision="tf32")
    else:
        b_hi = _tf32_hi(b)
        b_lo = b - b_hi
        if not A_EXACT:
            a_hi = _tf32_hi(a)
            acc = tl.dot(a - a_hi, b_hi, acc, input_precision="tf32")
            a = a_hi
        acc = tl.dot(a, b_lo, acc, input_precision="tf32")
        acc = tl.dot(a, b_hi, acc, input_precision="tf32")
    return acc


@triton.jit
def _dac_kernel(
    x_ptr, v_ptr, alpha_ptr, nonzero_ptr, ssq_ptr, flags_ptr, seed_ptr, starts_ptr, sizes_ptr,
    B, n_in, n_out, p_in, p_a, GN, sxg, sxb, sxk,
    ux, alpha_const, nm_thres, inp_bound, inp_noise,
    ALPHA_PER_ROW: tl.constexpr, SIGNED_MAX: tl.constexpr, CAP: tl.constexpr, SSQ: tl.constexpr,
    ZERO_FLAGS: tl.constexpr,
    CLIP_IN: tl.constexpr, QUANT_IN: tl.constexpr, STO_IN: tl.constexpr, INP_NOISE: tl.constexpr,
    RANDOM: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """Round 1 of the DAC for one (row block, input piece, group).

    alpha (G, B, n_in): max|x| (or max x) of each row's piece, capped at
    nm_thres when CAP, non-positive -> 1 (or the constant alpha);
    nonzero (G, n_in): some row of the batch has a non-zero alpha;
    v (G, B, n_in * p_a): the DAC output in input steps, each piece
    starting at i * p_a (p_in rounded up to a multiple of 16, for aligned
    loads in the GEMM), zero in the pads; ssq (G, B, n_in): sum v^2.
    ZERO_FLAGS: clear the bound-management marks (G, B, n_in, n_out) of
    these rows and piece for the GEMM kernel that follows."""
    pid_r = tl.program_id(0)
    i = tl.program_id(1)
    g = tl.program_id(2).to(tl.int64)
    gi = g * n_in + i
    start = tl.load(starts_ptr + i)
    size = tl.load(sizes_ptr + i)
    rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = rows < B
    x_rows = x_ptr + g * sxg + rows.to(tl.int64)[:, None] * sxb
    if ALPHA_PER_ROW:
        m = tl.full((BLOCK_R,), float("-inf"), tl.float32)
        for c0 in range(0, size, BLOCK_C):
            cols = c0 + tl.arange(0, BLOCK_C)
            mask = rmask[:, None] & (cols < size)[None, :]
            ptrs = x_rows + (start + cols).to(tl.int64)[None, :] * sxk
            if SIGNED_MAX:
                xv = tl.load(ptrs, mask=mask, other=float("-inf")).to(tl.float32)
            else:
                xv = tl.abs(tl.load(ptrs, mask=mask, other=0.0).to(tl.float32))
            m = tl.maximum(m, tl.max(xv, axis=1))
        if CAP:
            m = tl.minimum(m, nm_thres)
        nonzero = tl.max(((m != 0) & rmask).to(tl.int32), axis=0)
        tl.atomic_max(nonzero_ptr + gi, nonzero)
        alpha = tl.where(m > 0, m, 1.0)
        tl.store(alpha_ptr + (g * B + rows) * n_in + i, alpha, mask=rmask)
    else:
        alpha = tl.zeros((BLOCK_R,), dtype=tl.float32) + alpha_const
    if RANDOM:
        seed = tl.load(seed_ptr)
    else:
        seed = 0
    up = _prescale(alpha)
    s = tl.math.div_rn(tl.full((BLOCK_R,), 1.0, tl.float32), alpha * up)
    v_rows = v_ptr + (g * B + rows.to(tl.int64))[:, None] * (n_in * p_a) + i * p_a
    ssq = tl.zeros((BLOCK_R,), dtype=tl.float32)
    for c0 in range(0, p_a, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        valid = rmask[:, None] & (cols < size)[None, :]
        xv = tl.load(x_rows + (start + cols).to(tl.int64)[None, :] * sxk, mask=valid, other=0.0)
        v = _dac(xv.to(tl.float32), up[:, None], s[:, None], ux, (rows * p_in)[:, None] + cols[None, :], seed, 0, GN, gi,
                 inp_bound, inp_noise, CLIP_IN, QUANT_IN, STO_IN, INP_NOISE)
        v = tl.where(valid, v, 0.0)
        if SSQ:
            ssq += tl.sum(v * v, axis=1)
        tl.store(v_rows + cols[None, :], v, mask=rmask[:, None] & (cols < p_a)[None, :])
    if SSQ:
        tl.store(ssq_ptr + (g * B + rows) * n_in + i, ssq, mask=rmask)
    if ZERO_FLAGS:
        flag_rows = flags_ptr + ((g * B + rows) * n_in + i) * n_out
        for o in range(0, n_out):
            tl.store(flag_rows + o, tl.zeros((BLOCK_R,), dtype=tl.int32), mask=rmask)


@triton.jit
def _tile_forward_kernel(
    a_ptr, w_ptr, out_ptr, alpha_ptr, nonzero_ptr, ssq_ptr, seed_ptr, starts_ptr, sizes_ptr, piece_of_col_ptr,
    cs_ptr, bias_ptr, s_ptr, flags_ptr,
    B, N, n_in, n_out, p_in, p_a, GN,
    sag, sab, sak, swg, swi, swk, swn, scg, scn, sbg,
    ux, uy, alpha_const, out_noise, w_noise, nl, out_bound, out_sat, out_scale,
    A_PADDED: tl.constexpr, ALPHA_PER_ROW: tl.constexpr, GATE: tl.constexpr, OUT_NOISE: tl.constexpr,
    W_NOISE: tl.constexpr, NONLIN: tl.constexpr, QUANT_OUT: tl.constexpr, STO_OUT: tl.constexpr,
    BOUNDED: tl.constexpr, BM_ITER: tl.constexpr, S_INT16: tl.constexpr, HAS_CS: tl.constexpr,
    HAS_BIAS: tl.constexpr, RANDOM: tl.constexpr, PRECISION: tl.constexpr, A_EXACT: tl.constexpr,
    BIG: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    """The GEMM of every input piece with the ADC as its epilogue.

    ``a``: the DAC output of ``_dac_kernel`` (A_PADDED: piece i at
    i * p_a) or, for perfect tiles, x itself (pieces at their starts)."""
    pid = tl.program_id(0)
    g = tl.program_id(1).to(tl.int64)
    # Grouped order: GROUP_M row blocks sweep the columns together (L2 reuse of W).
    num_m = tl.cdiv(B, BLOCK_M)
    num_n = tl.cdiv(N, BLOCK_N)
    width = GROUP_M * num_n
    first_m = (pid // width) * GROUP_M
    size_m = tl.minimum(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % width) % size_m
    pid_n = (pid % width) // size_m

    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rmask = rows < B
    cmask = cols < N
    mask2 = rmask[:, None] & cmask[None, :]
    rows64 = rows.to(tl.int64)
    if RANDOM:
        seed = tl.load(seed_ptr)
    else:
        seed = 0
    a_rows = a_ptr + g * sag + rows64[:, None] * sab
    # Offsets inside one (group, piece) B x N plane: 32-bit unless the plane is huge.
    if BIG:
        offs = rows64[:, None] * N + cols[None, :]
    else:
        offs = rows[:, None] * N + cols[None, :]
    # Random counters: (row, group of 4 columns), 4 draws per Philox call.
    quads = pid_n * (BLOCK_N // 4) + tl.arange(0, BLOCK_N // 4)
    offs4 = rows[:, None] * ((N + 3) // 4) + quads[None, :]
    if BM_ITER:
        cpiece = tl.load(piece_of_col_ptr + cols, mask=cmask, other=0)
        o_first = tl.load(piece_of_col_ptr + pid_n * BLOCK_N)
        o_last = tl.load(piece_of_col_ptr + tl.minimum(pid_n * BLOCK_N + BLOCK_N, N) - 1)

    total = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for i in range(0, n_in):
        gi = g * n_in + i
        if A_PADDED:
            start = tl.cast(i, tl.int32) * p_a
            size = p_in
        else:
            start = tl.load(starts_ptr + i)
            size = tl.load(sizes_ptr + i)
        if ALPHA_PER_ROW:
            alpha = tl.load(alpha_ptr + (g * B + rows64) * n_in + i, mask=rmask, other=1.0)
        else:
            alpha = tl.zeros((BLOCK_M,), dtype=tl.float32) + alpha_const
        w_piece = w_ptr + g * swg + tl.cast(i, tl.int64) * swi

        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        accp = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, size, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            kmask = ks < size
            v = tl.load(a_rows + (start + ks).to(tl.int64)[None, :] * sak,
                        mask=rmask[:, None] & kmask[None, :], other=0.0).to(tl.float32)
            wv = tl.load(w_piece + ks.to(tl.int64)[:, None] * swk + cols[None, :] * swn,
                         mask=kmask[:, None] & cmask[None, :], other=0.0).to(tl.float32)
            acc = _mma(v, wv, acc, PRECISION, A_EXACT)
            if W_NOISE == 2:
                accp = _mma(v * v, tl.abs(wv), accp, 1, False)

        if W_NOISE == 1:
            wvar = tl.load(ssq_ptr + (g * B + rows64) * n_in + i, mask=rmask, other=0.0)[:, None]
        else:
            wvar = accp
        y = _adc(acc, wvar, offs4, seed, 0, GN, gi, ux, uy, out_noise, w_noise, nl,
                 OUT_NOISE, W_NOISE, NONLIN, QUANT_OUT, STO_OUT, BLOCK_M, BLOCK_N)
        if BOUNDED:
            if BM_ITER:
                # mark (row, piece i, output piece o) where an output saturated (strictly
                # above the level out_sat, as aihwkit: docs/tile.md step 7)
                hit = (tl.abs(y) > out_sat) & (tl.abs(y) < float("inf")) & mask2
                flag_rows = flags_ptr + ((g * B + rows64) * n_in + i) * n_out
                for o in range(o_first, o_last + 1):
                    sat = tl.max((hit & (cpiece == o)[None, :]).to(tl.int32), axis=1)
                    tl.store(flag_rows + o, sat, mask=sat > 0)
            y = _clip(y, out_bound)
            if BM_ITER:
                s_plane = s_ptr + gi * B * N
                if S_INT16:
                    tl.store(s_plane + offs, y.to(tl.int16), mask=mask2)
                else:
                    tl.store(s_plane + offs, y, mask=mask2)
        rowfac = alpha * (uy * out_scale)
        if GATE:
            rowfac = rowfac * tl.load(nonzero_ptr + gi).to(tl.float32)
        total += y * rowfac[:, None]

    if HAS_CS:
        total = total * tl.load(cs_ptr + g * scg + cols * scn, mask=cmask, other=1.0)[None, :]
    if HAS_BIAS:
        total = total + tl.load(bias_ptr + g * sbg + cols, mask=cmask, other=0.0)[None, :]
    tl.store(out_ptr + g * B * N + offs, total, mask=mask2)


@triton.jit
def _bound_management_kernel(
    x_ptr, w_ptr, out_ptr, alpha_ptr, nonzero_ptr, seed_ptr, starts_ptr, sizes_ptr, out_starts_ptr,
    out_sizes_ptr, cs_ptr, s_ptr, flags_ptr,
    B, N, n_in, n_out, p_in, GN, n_rounds,
    sxg, sxb, sxk, swg, swi, swk, swn, scg, scn,
    ux, uy, alpha_const, inp_bound, inp_noise, out_noise, w_noise, nl, out_bound, out_sat, out_scale,
    ALPHA_PER_ROW: tl.constexpr, GATE: tl.constexpr, CLIP_IN: tl.constexpr, QUANT_IN: tl.constexpr,
    STO_IN: tl.constexpr, INP_NOISE: tl.constexpr, OUT_NOISE: tl.constexpr, W_NOISE: tl.constexpr,
    NONLIN: tl.constexpr, QUANT_OUT: tl.constexpr, STO_OUT: tl.constexpr,
    S_INT16: tl.constexpr, HAS_CS: tl.constexpr, RANDOM: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Rounds r = 2, 4, ... of the marked (row b, piece i, output piece o)
    tiles; the program owns out[g, b, columns of o]."""
    b = tl.program_id(0).to(tl.int64)
    o = tl.program_id(1)
    g = tl.program_id(2).to(tl.int64)
    c_start = tl.load(out_starts_ptr + o)
    c_size = tl.load(out_sizes_ptr + o)
    if RANDOM:
        seed = tl.load(seed_ptr)
    else:
        seed = 0
    out_row = out_ptr + (g * B + b) * N
    x_row = x_ptr + g * sxg + b * sxb
    for i in range(0, n_in):
        flag = tl.load(flags_ptr + ((g * B + b) * n_in + i) * n_out + o)
        if flag != 0:
            start = tl.load(starts_ptr + i)
            size = tl.load(sizes_ptr + i)
            gi = g * n_in + i
            if ALPHA_PER_ROW:
                alpha = tl.load(alpha_ptr + (g * B + b) * n_in + i)
            else:
                alpha = alpha_const
            rowfac = alpha * (uy * out_scale)
            if GATE:
                rowfac = rowfac * tl.load(nonzero_ptr + gi).to(tl.float32)
            s_row = s_ptr + (gi * B + b) * N
            w_piece = w_ptr + g * swg + tl.cast(i, tl.int64) * swi
            in_offs = tl.cast(b, tl.int32) * p_in

            # 1. take the (clipped) round-1 value out of the sum
            for c0 in range(0, c_size, BLOCK_N):
                cols = c_start + c0 + tl.arange(0, BLOCK_N)
                cm = (c0 + tl.arange(0, BLOCK_N)) < c_size
                old = tl.load(s_row + cols, mask=cm, other=0).to(tl.float32)
                d = -old * rowfac
                if HAS_CS:
                    d = d * tl.load(cs_ptr + g * scg + cols * scn, mask=cm, other=1.0)
                tl.store(out_row + cols, tl.load(out_row + cols, mask=cm, other=0.0) + d, mask=cm)
            tl.debug_barrier()  # step 2 overwrites s_row, maybe from other threads

            # 2. rounds r = 2, 4, ..., each with fresh noise, until no output saturates
            done = 0
            r = 1.0
            r_final = 1.0
            for rnd in range(1, n_rounds + 1):
                if done == 0:
                    r = r * 2.0
                    rnd64 = tl.cast(rnd, tl.int64)
                    up = _prescale(alpha)
                    s = tl.math.div_rn(1.0, (alpha * up) * r)
                    last = rnd == n_rounds
                    sat_any = 0
                    for c0 in range(0, c_size, BLOCK_N):
                        cols = c_start + c0 + tl.arange(0, BLOCK_N)
                        cm = (c0 + tl.arange(0, BLOCK_N)) < c_size
                        acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
                        accp = tl.zeros((BLOCK_N,), dtype=tl.float32)
                        ssq = tl.zeros((BLOCK_N,), dtype=tl.float32)
                        for k0 in range(0, size, BLOCK_K):
                            ks = k0 + tl.arange(0, BLOCK_K)
                            kmask = ks < size
                            xv = tl.load(x_row + (start + ks).to(tl.int64) * sxk, mask=kmask, other=0.0)
                            v = _dac(xv.to(tl.float32), up, s, ux, in_offs + ks, seed, rnd64, GN, gi, inp_bound,
                                     inp_noise, CLIP_IN, QUANT_IN, STO_IN, INP_NOISE)
                            v = tl.where(kmask, v, 0.0)
                            wv = tl.load(w_piece + ks.to(tl.int64)[:, None] * swk + cols[None, :] * swn,
                                         mask=kmask[:, None] & cm[None, :], other=0.0).to(tl.float32)
                            acc += tl.sum(v[:, None] * wv, axis=0)
                            if W_NOISE == 1:
                                ssq += tl.sum(v * v, axis=0)
                            if W_NOISE == 2:
                                accp += tl.sum((v * v)[:, None] * tl.abs(wv), axis=0)
                        if W_NOISE == 1:
                            wvar = ssq
                        else:
                            wvar = accp
                        y = _adc(acc, wvar, tl.cast(b, tl.int32) * N + cols, seed, rnd64, GN, gi, ux, uy,
                                 out_noise, w_noise, nl, OUT_NOISE, W_NOISE, NONLIN, QUANT_OUT, STO_OUT, 0, 0)
                        sat = (tl.abs(y) > out_sat) & (tl.abs(y) < float("inf")) & cm
                        sat_any = tl.maximum(sat_any, tl.max(sat.to(tl.int32), axis=0))
                        y = _clip(y, out_bound)  # the last round stays clipped
                        if S_INT16:
                            y = tl.minimum(tl.maximum(y, -INT16_MAX), INT16_MAX).to(tl.int16)
                        tl.store(s_row + cols, y, mask=cm)
                    r_final = r
                    if sat_any == 0:
                        done = 1

            # 3. add the final round, times its factor r
            tl.debug_barrier()
            for c0 in range(0, c_size, BLOCK_N):
                cols = c_start + c0 + tl.arange(0, BLOCK_N)
                cm = (c0 + tl.arange(0, BLOCK_N)) < c_size
                new = tl.load(s_row + cols, mask=cm, other=0).to(tl.float32)
                d = new * (r_final * rowfac)
                if HAS_CS:
                    d = d * tl.load(cs_ptr + g * scg + cols * scn, mask=cm, other=1.0)
                tl.store(out_row + cols, tl.load(out_row + cols, mask=cm, other=0.0) + d, mask=cm)


@dataclass(frozen=True)
class _Launch:
    """The kernels' constexpr flags and scalar arguments for one ``TileIO``
    (cached per TileIO and precision). Every quantity is read from the
    TileIO; nothing of the semantics is derived here."""

    io: TileIO
    s_int16: bool  # round-1 ADC values of bound management fit int16
    dac_flags: dict  # constexprs of _dac_kernel
    gemm_flags: dict  # constexprs of _tile_forward_kernel (but HAS_CS, HAS_BIAS, BIG, blocks)
    bm_flags: dict  # constexprs of _bound_management_kernel (but HAS_CS, blocks)
    dac_params: tuple  # ux, alpha_const, nm_thres, inp_bound, inp_noise
    params: tuple  # ux, uy, alpha_const, inp_bound, inp_noise, out_noise, w_noise, nl, out_bound, out_sat, out_scale


@functools.lru_cache(maxsize=256)
def _launch_config(io: TileIO, precision: str) -> _Launch:
    quant_in, quant_out = io.dx > 0, io.dy > 0
    inp_noise = io.inp_noise / io.ux  # in DAC units
    out_bound = io.out_bound_steps if io.bounded else 0.0
    out_sat = io.out_sat if io.bounded else 0.0  # saturated: |y| > out_sat (steps)
    s_int16 = io.iterative_bound_management and quant_out and float(out_bound).is_integer() \
        and out_bound <= _INT16_MAX
    sto_in, sto_out = quant_in and io.inp_sto_round, quant_out and io.out_sto_round
    common = dict(ALPHA_PER_ROW=io.per_row_scale, QUANT_IN=quant_in, STO_IN=sto_in, INP_NOISE=inp_noise > 0,
                  RANDOM=io.random, CLIP_IN=io.clip_input)
    out_flags = dict(
        OUT_NOISE=io.out_noise > 0, W_NOISE=io.weight_noise_kind, NONLIN=io.out_nonlinearity > 0,
        QUANT_OUT=quant_out, STO_OUT=sto_out, S_INT16=s_int16, GATE=io.gate_zero_pieces,
    )
    dac_flags = dict(
        common, SIGNED_MAX=io.noise_management == NoiseManagementType.MAX, CAP=io.nm_thres > 0,
        SSQ=io.weight_noise_kind == 1, ZERO_FLAGS=io.iterative_bound_management,
    )
    gemm_flags = dict(
        out_flags, A_PADDED=not io.is_perfect, BOUNDED=io.bounded, BM_ITER=io.iterative_bound_management,
        ALPHA_PER_ROW=io.per_row_scale, RANDOM=io.random, PRECISION={"ieee": 0, "tf32": 1, "fp32": 2}[precision],
        A_EXACT=quant_in and inp_noise == 0 and io.inp_bound_steps <= 2048,  # whole numbers, exact in TF32
    )
    return _Launch(
        io=io,
        s_int16=s_int16,
        dac_flags=dac_flags,
        gemm_flags=gemm_flags,
        bm_flags=dict(common, **out_flags),
        dac_params=(io.ux, io.constant_scale, float(io.nm_thres), io.inp_bound_steps, inp_noise),
        params=(io.ux, io.uy, io.constant_scale, io.inp_bound_steps, inp_noise, io.out_noise, float(io.w_noise),
                io.out_nonlinearity, out_bound, out_sat, float(io.out_scale)),
    )


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _group_slice(v: Optional[Tensor], g: int, m: int, G: int, N: int) -> Optional[Tensor]:
    """Groups g .. g+m-1 of a per-(group, output) vector (G*N); a shared one as it is."""
    if v is None or v.numel() != G * N:
        return v
    return v.reshape(G, N)[g : g + m].reshape(-1)


def _col_scale_args(col_scale: Optional[Tensor], G: int, N: int, device):
    """A float32 pointer and (group, column) strides for col_scale."""
    if col_scale is None:
        return None, 0, 0
    cs = col_scale.detach().reshape(-1).to(device=device, dtype=torch.float32).contiguous()
    if cs.numel() == G * N:
        return cs, N, 1
    if cs.numel() == N:
        return cs, 0, 1
    if cs.numel() == 1:
        return cs, 0, 0
    raise ValueError(
        f"tile_mvm launch: col_scale of {col_scale.numel()} elements: expected 1, N = {N} or G*N = {G * N}"
    )


def launch(
    x: Tensor,
    tiles: Tensor,
    in_sizes: Sequence[int],
    out_sizes: Sequence[int],
    io: TileIO,
    col_scale: Optional[Tensor] = None,
    bias: Optional[Tensor] = None,
    *,
    block_m: Optional[int] = None,
    block_n: Optional[int] = None,
    block_k: Optional[int] = None,
) -> Tensor:
    """The tile MVM (``fxanalog.ops.tile_mvm_torch.tile_forward``) as fused
    Triton kernels: (G, B, K) inputs, (G, n_in, p_in, N) tiles -> (G, B, N)
    float32, for the cases ``supports`` accepts (ValueError otherwise).
    ``block_*`` override the block-size heuristic (powers of two >= 16)."""
    if x.dim() != 3 or tiles.dim() != 4:
        raise ValueError(
            f"tile_mvm launch: x {tuple(x.shape)}, tiles {tuple(tiles.shape)}: expected (G, B, K) "
            "and (G, n_in, p_in, N)"
        )
    G, B, K = x.shape
    Gt, n, p, N = tiles.shape
    in_sizes, out_sizes = [int(s) for s in in_sizes], [int(s) for s in out_sizes]
    if Gt != G or len(in_sizes) != n or max(in_sizes) != p or sum(in_sizes) != K or sum(out_sizes) != N:
        raise ValueError(
            f"tile_mvm launch: x {tuple(x.shape)}, tiles {tuple(tiles.shape)}, in_sizes {in_sizes}, "
            f"out_sizes {out_sizes}: expected tiles (G, len(in_sizes), max(in_sizes), sum(out_sizes)) "
            "with sum(in_sizes) = K"
        )
    if x.device != tiles.device:
        raise ValueError(f"tile_mvm launch: x on {x.device}, tiles on {tiles.device}: expected one device")
    if not supports(x, tiles, io):
        raise ValueError(
            f"tile_mvm launch: x {x.dtype} {tuple(x.shape)}, tiles {tiles.dtype}, ir_drop {io.ir_drop}: the "
            "kernels compute float32/16/bfloat16 without IR drop (see supports)"
        )
    if B == 0:  # an empty batch: an empty result, as a digital layer gives (a grid of 0 blocks is invalid)
        return torch.zeros((G, 0, N), dtype=torch.float32, device=x.device)
    if G > MAX_GRID_GROUPS:  # groups are a grid axis (at most 65535): launch in slices of groups
        M = MAX_GRID_GROUPS
        return torch.cat([
            launch(
                x[g : g + M], tiles[g : g + M], in_sizes, out_sizes, io,
                _group_slice(col_scale, g, M, G, N), _group_slice(bias, g, M, G, N),
                block_m=block_m, block_n=block_n, block_k=block_k,
            )
            for g in range(0, G, M)
        ])

    dev = x.device
    cfg = _launch_config(io, get_precision())
    tab = piece_tables(in_sizes, out_sizes, dev)
    blocks = tile_blocks(B, N, p, max(out_sizes), block_m, block_n, block_k)
    n_out = len(out_sizes)
    out = torch.empty((G, B, N), dtype=torch.float32, device=dev)
    seed = call_seed(dev) if io.random else tab.in_starts  # (an unused pointer when nothing is random)
    alpha = torch.empty((G, B, n), dtype=torch.float32, device=dev) if io.per_row_scale else out
    nonzero = torch.zeros((G, n), dtype=torch.int32, device=dev) if io.per_row_scale else tab.in_starts
    ssq = torch.empty((G, B, n), dtype=torch.float32, device=dev) if io.weight_noise_kind == 1 else out
    if io.iterative_bound_management:  # round-1 ADC values and the marks of the tiles that saturated
        s_buf = torch.empty((G, n, B, N), dtype=torch.int16 if cfg.s_int16 else torch.float32, device=dev)
        flags = torch.empty((G, B, n, n_out), dtype=torch.int32, device=dev)  # zeroed by the DAC kernel
    else:
        s_buf = flags = out  # unused
    if io.is_perfect:
        a, a_strides, p_a = x, (x.stride(0), x.stride(1), x.stride(2)), p
    else:
        p_a = -(-p // 16) * 16
        a = torch.empty((G, B, n * p_a), dtype=torch.float32, device=dev)
        a_strides = (B * n * p_a, n * p_a, 1)
        _dac_kernel[(_cdiv(B, blocks.dac_block_r), n, G)](
            x, a, alpha, nonzero, ssq, flags, seed, tab.in_starts, tab.in_sizes,
            B, n, n_out, p, p_a, G * n, x.stride(0), x.stride(1), x.stride(2),
            *cfg.dac_params,
            BLOCK_R=blocks.dac_block_r, BLOCK_C=blocks.dac_block_c, num_warps=4,
            **cfg.dac_flags,
        )

    cs, scg, scn = _col_scale_args(col_scale, G, N, dev)
    if bias is not None:
        if bias.numel() != G * N:
            raise ValueError(f"tile_mvm launch: bias of {bias.numel()} elements: expected G*N = {G * N}")
        bias = bias.detach().reshape(-1).to(device=dev, dtype=torch.float32).contiguous()
    w_strides = (tiles.stride(0), tiles.stride(1), tiles.stride(2), tiles.stride(3))
    ux, uy, alpha_const, _, _, out_noise, w_noise, nl, out_bound, out_sat, out_scale = cfg.params
    grid = (_cdiv(B, blocks.block_m) * _cdiv(N, blocks.block_n), G)
    _tile_forward_kernel[grid](
        a, tiles, out, alpha, nonzero, ssq, seed, tab.in_starts, tab.in_sizes, tab.piece_of_col,
        cs if cs is not None else out, bias if bias is not None else out, s_buf, flags,
        B, N, n, n_out, p, p_a, G * n,
        *a_strides, *w_strides, scg, scn, N,
        ux, uy, alpha_const, out_noise, w_noise, nl, out_bound, out_sat, out_scale,
        HAS_CS=cs is not None, HAS_BIAS=bias is not None, BIG=B * N >= 2**31,
        BLOCK_M=blocks.block_m, BLOCK_N=blocks.block_n, BLOCK_K=blocks.block_k, GROUP_M=blocks.group_m,
        num_warps=blocks.num_warps, num_stages=blocks.num_stages,
        **cfg.gemm_flags,
    )
    if io.iterative_bound_management:
        _bound_management_kernel[(B, n_out, G)](
            x, tiles, out, alpha, nonzero, seed, tab.in_starts, tab.in_sizes, tab.out_starts, tab.out_sizes,
            cs if cs is not None else out, s_buf, flags,
            B, N, n, n_out, p, G * n, io.bound_management_rounds,
            x.stride(0), x.stride(1), x.stride(2), *w_strides, scg, scn,
            *cfg.params,
            HAS_CS=cs is not None, BLOCK_N=blocks.bm_block_n, BLOCK_K=blocks.bm_block_k, num_warps=4,
            **cfg.bm_flags,
        )
    return out
