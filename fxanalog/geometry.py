"""The geometry of a tile array: how a layer's weights are cut into tiles
and laid out for the tile op, and per-tile reductions.

A layer of G groups of N x K weights is cut along its K inputs into
``in_sizes`` pieces and along its N outputs into ``out_sizes`` pieces
(aihwkit's balanced split, ``split_sizes``); every (group, output piece,
input piece) is one tile. The tile op takes the weights laid out as
``(G, n_in, p_in, N)`` (``layout_tiles``): input pieces padded with zero rows
to ``p_in = max(in_sizes)``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

__all__ = ["TileGeometry", "per_output", "split_sizes", "piece_index", "pad_index", "layout_tiles", "unlayout_tiles", "fold_samples",
           "unfold_samples"]


def split_sizes(size: int, max_size: int) -> list[int]:
    """aihwkit's balanced split: ``n = ceil(size/max)`` pieces, the first
    ``size % n`` one larger (1300 with max 512 -> [434, 433, 433])."""
    if size <= 0:
        raise ValueError(f"split_sizes: size = {size}: expected a positive size")
    if max_size <= 0 or size <= max_size:
        return [size]
    n = -(-size // max_size)
    base, extra = divmod(size, n)
    return [base + 1] * extra + [base] * (n - extra)


def piece_index(sizes: Sequence[int], device) -> Tensor:
    """The piece of every position of a dimension split into ``sizes``
    ([2, 3] -> [0, 0, 1, 1, 1])."""
    return torch.repeat_interleave(torch.arange(len(sizes), device=device), torch.tensor(list(sizes), device=device))


def pad_index(sizes: Sequence[int], like: Tensor) -> Optional[Tensor]:
    # Cached for plain tensors; built afresh while tracing (fake or functional
    # tensors), where a cached real tensor must not leak into the graph.
    plain = type(like) in (torch.Tensor, torch.nn.Parameter) and not torch.compiler.is_compiling()
    fn = __pad_index_cached if plain else __pad_index_cached.__wrapped__
    return fn(tuple(sizes), like.device)


@functools.lru_cache(maxsize=256)
def __pad_index_cached(sizes: tuple, device: torch.device) -> Optional[Tensor]:
    """Index of each padded position into the unpadded dimension (``total``
    marks a pad), or None when the pieces are equal and no padding is needed."""
    p = max(sizes)
    if all(s == p for s in sizes):
        return None
    total = sum(sizes)
    idx = torch.full((len(sizes), p), total, dtype=torch.long)
    start = 0
    for k, s in enumerate(sizes):
        idx[k, :s] = torch.arange(start, start + s)
        start += s
    return idx.reshape(-1).to(device)


def layout_tiles(weight: Tensor, in_sizes: Sequence[int]) -> Tensor:
    """``(G, N, K)`` weights to the ``(G, n_in, p_in, N)`` tile layout.

    A view when the input pieces are equal; else a zero-padded copy
    (differentiable either way).
    """
    wt = weight.transpose(1, 2)  # (G, K, N)
    if len(in_sizes) == 1:  # one piece (the common case): no padding
        return wt.unsqueeze(1)
    G, N, K = weight.shape
    n, p = len(in_sizes), max(in_sizes)
    idx = pad_index(in_sizes, weight)
    if idx is None:
        return wt.reshape(G, n, p, N) if wt.is_contiguous() else wt.unflatten(1, (n, p))
    padded = torch.cat([wt, wt.new_zeros(G, 1, N)], dim=1)
    return padded.index_select(1, idx).reshape(G, n, p, N)


def unlayout_tiles(tiles: Tensor, in_sizes: Sequence[int]) -> Tensor:
    """Inverse of ``layout_tiles``: ``(G, n_in, p_in, N)`` to ``(G, N, K)``."""
    G, n, p, N = tiles.shape
    flat = tiles.reshape(G, n * p, N)
    if any(s != p for s in in_sizes):
        keep = torch.cat([torch.arange(k * p, k * p + s) for k, s in enumerate(in_sizes)]).to(tiles.device)
        flat = flat.index_select(1, keep)
    return flat.transpose(1, 2)


def fold_samples(x: Tensor, samples: int) -> Tensor:
    """(G, S*R, K) rows of S samples -> (S*G, R, K): each sample its own groups."""
    if samples == 1:
        return x
    G, B, K = x.shape
    return x.reshape(G, samples, B // samples, K).transpose(0, 1).reshape(samples * G, B // samples, K)


def unfold_samples(y: Tensor, samples: int) -> Tensor:
    """Inverse of ``fold_samples``: (S*G, R, N) -> (G, S*R, N)."""
    if samples == 1:
        return y
    SG, R, N = y.shape
    return y.reshape(samples, SG // samples, R, N).transpose(0, 1).reshape(SG // samples, samples * R, N)


@dataclass(frozen=True)
class TileGeometry:
    """The tile array of one layer: ``groups`` x (N outputs x K inputs),
    cut into ``out_sizes`` x ``in_sizes`` pieces. Per-tile values are
    ``(G, n_out, n_in)`` tensors (``tile_reduce``), spread back over the
    weights with ``expand``."""

    groups: int
    in_sizes: tuple
    out_sizes: tuple

    @classmethod
    def split(cls, groups: int, out_size: int, in_size: int, max_out: int, max_in: int) -> "TileGeometry":
        """The balanced split of a layer (``max_*`` 0: one piece)."""
        return cls(groups, tuple(split_sizes(in_size, max_in)), tuple(split_sizes(out_size, max_out)))

    @property
    def n_in(self) -> int:
        return len(self.in_sizes)

    @property
    def n_out(self) -> int:
        return len(self.out_sizes)

    @property
    def p_in(self) -> int:
        """The padded input piece (rows of every tile in the op's layout)."""
        return max(self.in_sizes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(G, N, K) of the weights."""
        return self.groups, sum(self.out_sizes), sum(self.in_sizes)

    @property
    def num_tiles(self) -> int:
        return self.groups * self.n_in * self.n_out

    @property
    def single(self) -> bool:
        """One tile per group."""
        return self.n_in == 1 and self.n_out == 1

    def layout(self, w: Tensor) -> Tensor:
        """(G, N, K) weights to the op's (G, n_in, p_in, N) layout."""
        return layout_tiles(w, self.in_sizes)

    def unlayout(self, tiles: Tensor) -> Tensor:
        return unlayout_tiles(tiles, self.in_sizes)

    def stack_pieces(self, w: Tensor) -> Tensor:
        """(G, N, K) to (G*n_in, 1, p_in, N): every input piece a tile array of its own."""
        G, N, _ = w.shape
        return layout_tiles(w, self.in_sizes).reshape(G * self.n_in, 1, self.p_in, N)

    def pad_mask(self, device) -> Tensor:
        """(n_in, p_in) True on each input piece's real inputs."""
        rows = torch.arange(self.p_in, device=device)
        return rows[None, :] < torch.tensor(self.in_sizes, device=device)[:, None]

    def tile_reduce(self, w: Tensor, op: Callable[[Tensor, tuple], Tensor]) -> Tensor:
        """One value per tile, (G, n_out, n_in): ``op(block, dims=(1, 2))`` of
        each tile's block of the (G, N, K) tensor ``w``."""
        if self.single:
            return op(w, (1, 2)).reshape(w.shape[0], 1, 1)
        rows = []
        for wr in w.split(list(self.out_sizes), dim=1):
            rows.append(torch.stack([op(wb, (1, 2)) for wb in wr.split(list(self.in_sizes), dim=2)], dim=-1))
        return torch.stack(rows, dim=1)

    def tile_amax(self, w: Tensor) -> Tensor:
        return self.tile_reduce(w, lambda t, d: t.amax(dim=d))

    def tile_mean(self, w: Tensor) -> Tensor:
        return self.tile_reduce(w, lambda t, d: t.mean(dim=d))

    def expand(self, v: Tensor) -> Tensor:
        """(G, n_out, n_in) per-tile values spread over (G, N, K)."""
        if self.single:
            return v
        out = torch.tensor(self.out_sizes, device=v.device)
        inp = torch.tensor(self.in_sizes, device=v.device)
        return v.repeat_interleave(out, dim=1).repeat_interleave(inp, dim=2)


def per_output(v: Tensor, n_out: int, axis: str) -> Tensor:
    """A digital factor per output, given as one value or one per output
    (per (group, output), groups first), shaped to broadcast over (G, B, N)
    results (``axis="result"``: outputs last) or (G, N, K) weights
    (``axis="weight"``: outputs on axis 1)."""
    if v.numel() == 1:
        return v.reshape(())
    return v.reshape(-1, 1, n_out) if axis == "result" else v.reshape(-1, n_out, 1)
