"""Shared helpers of the Triton kernels: block sizes and per-layout tables."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import torch


def next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


@dataclass(frozen=True)
class TileBlocks:
    """Launch parameters of the tile forward kernels."""

    block_m: int  # rows of x per program of the main kernel
    block_n: int  # output columns per program
    block_k: int  # inputs per step of the K loop
    group_m: int  # row blocks that share a column sweep (L2 reuse)
    num_warps: int
    num_stages: int
    bm_block_n: int  # bound-management kernel: columns per step (one row per program)
    bm_block_k: int
    dac_block_r: int  # DAC kernel: rows x inputs per step
    dac_block_c: int


@functools.lru_cache(maxsize=1024)
def tile_blocks(B: int, N: int, p_in: int, p_out: int, block_m=None, block_n=None, block_k=None) -> TileBlocks:
    """The block-size heuristic (see docs/triton.md).

    Large problems: 128 x 64 output blocks, 8 warps (32 accumulator values
    per thread for the piece and 32 for the sum over pieces, which leaves
    the registers that the ADC epilogue and its Philox draws need: 128 x 128
    spills), a K step of 32 float32 inputs, 3 stages. Small shapes get the
    next power of two, at least 16 (the smallest ``tl.dot`` dimension).
    Explicit values override the heuristic (the tests use 16 to exercise
    several blocks on tiny shapes).
    """
    bm = block_m or min(128, max(16, next_pow2(B)))
    bn = block_n or min(64, max(16, next_pow2(N)))
    bk = block_k or min(32, max(16, next_pow2(p_in)))
    for name, v in (("block_m", bm), ("block_n", bn), ("block_k", bk)):
        if v < 16 or v & (v - 1):
            raise ValueError(f"tile_blocks: {name} = {v}: expected a power of two >= 16")
    warps = 8 if bm * bn >= 128 * 64 else 4
    return TileBlocks(
        block_m=bm,
        block_n=bn,
        block_k=bk,
        group_m=8,
        num_warps=warps,
        num_stages=3,
        bm_block_n=min(128, max(16, next_pow2(p_out))),
        bm_block_k=32,
        dac_block_r=32,
        dac_block_c=min(128, max(16, next_pow2(p_in))),
    )


@dataclass(frozen=True)
class PieceTables:
    """int32 device tables of a tile array's pieces."""

    in_starts: torch.Tensor  # (n_in,) first input of each input piece
    in_sizes: torch.Tensor  # (n_in,)
    out_starts: torch.Tensor  # (n_out,)
    out_sizes: torch.Tensor  # (n_out,)
    piece_of_col: torch.Tensor  # (N,) output piece of each column


def piece_tables(in_sizes: Sequence[int], out_sizes: Sequence[int], device) -> PieceTables:
    return _piece_tables(tuple(int(s) for s in in_sizes), tuple(int(s) for s in out_sizes), torch.device(device))


@functools.lru_cache(maxsize=256)
def _piece_tables(in_sizes: tuple, out_sizes: tuple, device: torch.device) -> PieceTables:
    def starts(sizes):
        out, s = [], 0
        for v in sizes:
            out.append(s)
            s += v
        return out

    def t(values):
        return torch.tensor(values, dtype=torch.int32).to(device)

    piece_of_col = [o for o, s in enumerate(out_sizes) for _ in range(s)]
    return PieceTables(t(starts(in_sizes)), t(in_sizes), t(starts(out_sizes)), t(out_sizes), t(piece_of_col))
