"""The analog tile computation in plain torch: the reference path.

Every weight matmul that fxanalog converts becomes one call of
``fxanalog::tile_mvm`` (see ``fxanalog.ops``) on a *tile array*:

* ``x``: ``(G, B, K)``: G independent groups (1 for linear layers, ``groups``
  for grouped convolutions), B input vectors, K inputs per group.
* ``tiles``: ``(G, n_in, p_in, N)``: the group's weights, transposed and cut
  along the input dimension into ``n_in`` pieces of the sizes ``in_sizes``
  (the balanced split of the mapping), each padded with zero rows to
  ``p_in = max(in_sizes)``. Along the N outputs the pieces are ``out_sizes``;
  they need no padding, since each output column only meets its own inputs.
  When the split is even the layout is a view of the weight, not a copy.

Each (group, input piece, output piece) is one full tile with its own noise
management, DAC, ADC, noise and bound management, as in
``shared/reference/analog-semantics.md`` section 1. Partial sums over input
pieces are added in digital; one column scale and one bias are applied at
the end. Everything is batched over groups, pieces and rows: there is no
Python loop over tiles.

Internally the DAC works in input steps (``v = rint(x*s/dx)``, integers) and
the ADC in output steps (``y/dy``): the step sizes fold into one GEMM factor
``dx/dy``, and the output noise is added by the GEMM itself (``baddbmm``'s
``beta``), so the common case costs one matmul, one draw of normals and a
few passes over the output.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from fxanalog import _rng
from fxanalog.geometry import fold_samples, layout_tiles, pad_index, piece_index, split_sizes, unfold_samples, unlayout_tiles
from fxanalog.config import (
    BoundManagementType,
    IOParameters,
    NoiseManagementType,
    WeightNoiseType,
    resolution_step,
)

__all__ = [
    "TileIO",
    "pack_io",
    "unpack_io",
    "tile_forward",
    "tile_backward_input",
]


# --------------------------------------------------------------------------
# IOParameters as a flat tuple of floats (what the custom op's schema carries)

_IO_FIELDS = (
    "is_perfect",
    "inp_bound",
    "inp_res",
    "inp_sto_round",
    "inp_noise",
    "out_bound",
    "out_res",
    "out_sto_round",
    "out_noise",
    "out_scale",
    "w_noise",
    "w_noise_type",
    "noise_management",
    "nm_thres",
    "bound_management",
    "max_bm_factor",
    "max_bm_res",
    "ir_drop",
    "ir_drop_g_ratio",
    "out_nonlinearity",
)
_ENUMS = {
    "w_noise_type": list(WeightNoiseType),
    "noise_management": list(NoiseManagementType),
    "bound_management": list(BoundManagementType),
}


@dataclass(frozen=True)
class TileIO:
    """IOParameters resolved for computation (steps, levels, flags)."""

    is_perfect: bool
    inp_bound: float
    dx: float  # input step, 0 = no quantization
    inp_sto_round: bool
    inp_noise: float
    out_bound: float  # <= 0: unbounded
    dy: float  # output step, 0 = no quantization
    out_sto_round: bool
    out_noise: float
    out_scale: float
    w_noise: float
    w_noise_type: WeightNoiseType
    noise_management: NoiseManagementType
    nm_thres: float
    bound_management: BoundManagementType
    max_bm_factor: float
    max_bm_res: float
    ir_drop: float
    ir_drop_g_ratio: float
    out_nonlinearity: float

    @property
    def last_round_factor(self) -> float:
        """Bound management stops after the round whose factor exceeds this."""
        limit = float(self.max_bm_factor)
        if self.dx > 0:
            limit = min(limit, self.max_bm_res / self.dx)
        return limit


def pack_io(io: IOParameters) -> list[float]:
    """IOParameters to the flat float list of the op schema (validated)."""
    io.validate("IOParameters")
    out = []
    for name in _IO_FIELDS:
        value = getattr(io, name)
        if name in _ENUMS:
            value = _ENUMS[name].index(value)
        out.append(float(value))
    return out


def unpack_io(packed: Sequence[float]) -> TileIO:
    return _unpack_io_cached(tuple(packed))


@functools.lru_cache(maxsize=256)
def _unpack_io_cached(packed: tuple) -> TileIO:
    v = dict(zip(_IO_FIELDS, packed))
    for name, members in _ENUMS.items():
        v[name] = members[int(v[name])]
    inp_bound = v["inp_bound"]
    out_bound = v["out_bound"]
    dx = resolution_step(v.pop("inp_res")) * 2 * inp_bound
    out_res = v.pop("out_res")
    dy = resolution_step(out_res) * 2 * out_bound if out_bound > 0 else 0.0
    for name in ("is_perfect", "inp_sto_round", "out_sto_round"):
        v[name] = bool(v[name])
    return TileIO(dx=dx, dy=dy, **v)


# --------------------------------------------------------------------------
# The forward pass


def _input_scale(xp: Tensor, io: TileIO, pidx: Optional[Tensor], x: Tensor) -> Tensor:
    """Noise-management factor alpha per (group, row, input piece): (G, B, n_in)."""
    nm = io.noise_management
    G, B, n, p = xp.shape
    if nm == NoiseManagementType.ABS_MAX:
        # max|x| without a temporary of x's size (vector_norm(inf) is 10x slower on CPU)
        alpha = torch.maximum(xp.amax(dim=-1), xp.amin(dim=-1).neg_())
        if io.nm_thres > 0:
            alpha = alpha.clamp(max=io.nm_thres)
    elif nm == NoiseManagementType.MAX:
        if pidx is None:
            alpha = xp.amax(dim=-1)
        else:  # pads must not count as zeros in a max
            ext = torch.cat([x, x.new_full((G, B, 1), -math.inf)], dim=-1)
            alpha = ext.index_select(2, pidx).reshape(G, B, n, p).amax(dim=-1)
        if io.nm_thres > 0:
            alpha = alpha.clamp(max=io.nm_thres)
    elif nm == NoiseManagementType.CONSTANT:
        alpha = xp.new_full((G, B, n), io.nm_thres)
    else:
        alpha = xp.new_ones((G, B, n))
    return alpha


def _round(t: Tensor, stochastic: bool) -> Tensor:
    """rint in place; stochastic rounding adds U(-1/2, 1/2) first."""
    if stochastic:
        t.add_(torch.rand_like(t).sub_(0.5))
    return t.round_()


def _mvm_steps(
    xp: Tensor,
    inv_in: Tensor,
    tiles: Tensor,
    io: TileIO,
    piece_sizes: Tensor,
) -> Tensor:
    """One round of DAC -> MVM -> ADC for a set of rows.

    xp: (G, M, n, p) inputs; inv_in: (G, M, n) factor 1/(alpha*r) of each row
    and piece; piece_sizes: (G*n,) the true input count of each piece (for IR
    drop). Returns the ADC result in output steps, (G, n, M, N), rounded
    when quantized, not yet clipped.
    """
    G, M, n, p = xp.shape
    N = tiles.shape[-1]
    dx, dy = io.dx, io.dy
    # DAC: v in input steps (integers) when quantized.
    scale = inv_in / dx if dx > 0 else inv_in
    # Scale in the input's own layout (a strided out= is many times slower),
    # then pieces first: a no-op for one piece, one copy of the input else.
    v = (xp * scale.unsqueeze(-1)).transpose(1, 2).contiguous()  # (G, n, M, p)
    if dx > 0:
        _round(v, io.inp_sto_round)
        bound = io.inp_bound / dx
    else:
        bound = io.inp_bound
    needs_clip = not (io.noise_management == NoiseManagementType.ABS_MAX and io.nm_thres <= 0)
    if needs_clip or io.inp_sto_round:
        v.clamp_(-bound, bound)
    if io.inp_noise > 0:
        _rng.add_normal_(v, io.inp_noise / (dx if dx > 0 else 1.0))
    vin = v.view(G * n, M, p)
    w = tiles.reshape(G * n, p, N)
    ux = dx if dx > 0 else 1.0  # normalized input per step
    uy = dy if dy > 0 else 1.0  # normalized output per step
    simple = io.w_noise == 0 and io.ir_drop == 0 and io.out_nonlinearity == 0
    if simple:
        # y/dy = (dx/dy) W v + (out_noise/dy) xi. One tile: addmm adds the
        # noise and the factor inside the GEMM. Several: on CPU, baddbmm copies
        # a strided weight view, which costs more than a separate add.
        if G * n == 1 and io.out_noise > 0:
            y = _rng.randn((M, N), dtype=v.dtype, device=v.device)
            y.addmm_(vin[0], w[0], beta=io.out_noise / uy, alpha=ux / uy)  # in place
            y = y.unsqueeze(0)
        else:
            vin.mul_(ux / uy)
            y = torch.bmm(vin, w)
            if io.out_noise > 0:
                _rng.add_normal_(y, io.out_noise / uy)
        if dy > 0:
            _round(y, io.out_sto_round)
        return y.view(G, n, M, N)
    # General case, in normalized units.
    vn = vin * ux
    y = torch.bmm(vn, w)
    if io.w_noise > 0 and io.w_noise_type == WeightNoiseType.ADDITIVE_CONSTANT:
        norm = torch.linalg.vector_norm(vn, dim=-1, keepdim=True)
        y.addcmul_(_rng.randn(y.shape, dtype=y.dtype, device=y.device), norm, value=io.w_noise)
    elif io.w_noise > 0 and io.w_noise_type == WeightNoiseType.PCM_READ:
        std = torch.bmm(vn.square(), w.abs()).sqrt_()
        y.addcmul_(_rng.randn(y.shape, dtype=y.dtype, device=y.device), std, value=io.w_noise)
    if io.ir_drop > 0:
        # C++-tile IR drop: each piece with its own n; positions j = 0..n-1.
        sizes = piece_sizes.to(torch.float32)[:, None]
        j = torch.arange(p, dtype=torch.float32, device=xp.device)
        frac = (1 - (1 - j / sizes).square()) * (j < sizes)  # (G*n, p)
        a = (sizes[:, :, None] / io.ir_drop_g_ratio) * torch.bmm(vn.abs(), w.abs())
        c = a * (a * (0.05 * a - 0.2) + 0.5)
        y.sub_(io.ir_drop * c * torch.bmm(vn * frac[:, None, :], w))
    if io.out_nonlinearity > 0:
        y = y / (1 + (io.out_nonlinearity * y).abs())
    if io.out_noise > 0:
        _rng.add_normal_(y, io.out_noise)
    y.div_(uy)
    if dy > 0:
        _round(y, io.out_sto_round)
    return y.view(G, n, M, N)


def _saturated_pieces(y: Tensor, bound: float, out_sizes: Sequence[int]) -> Tensor:
    """(G, n, M, N) output steps -> (G, n, M, n_out) bool: the tile reached the bound."""
    hit = y.abs() >= bound
    if len(out_sizes) == 1:
        return hit.any(dim=-1, keepdim=True)
    ends = torch.tensor(list(out_sizes), device=y.device).cumsum(0)
    counts = hit.to(torch.int32).cumsum(-1)
    at_end = counts.index_select(-1, ends - 1)
    per_piece = torch.diff(at_end, dim=-1, prepend=torch.zeros_like(at_end[..., :1]))
    return per_piece > 0


def tile_forward(
    x: Tensor,
    tiles: Tensor,
    in_sizes: Sequence[int],
    out_sizes: Sequence[int],
    io: TileIO,
    col_scale: Optional[Tensor] = None,
    bias: Optional[Tensor] = None,
) -> Tensor:
    """The analog forward of a tile array, in float32. Returns (G, B, N).

    ``col_scale`` (G*N or broadcastable) and ``bias`` (G*N) are digital and
    applied last, with ``io.out_scale``.
    """
    G, B, K = x.shape
    _, n, p, N = tiles.shape
    ct = compute_dtype(x.dtype)
    x = x.to(ct)
    tiles = tiles.to(ct)
    if io.is_perfect:
        y = torch.matmul(x, unlayout_tiles(tiles, in_sizes).transpose(1, 2)) * io.out_scale
        return _finish_digital(y, col_scale, bias)

    pidx = pad_index(in_sizes, x)
    if pidx is None:
        xp = x.reshape(G, B, n, p)
    else:
        xp = torch.cat([x, x.new_zeros(G, B, 1)], dim=-1).index_select(2, pidx).view(G, B, n, p)

    alpha = _input_scale(xp, io, pidx, x)  # (G, B, n)
    zero_piece = None
    if not bool((alpha > 0).all()):  # rare: zero (or negative MAX) scales
        # An all-zero batch of a piece gives zero (aihwkit skips such a tile).
        zero_piece = (alpha == 0).all(dim=1, keepdim=True) if io.inp_noise == 0 else None
        alpha = torch.where(alpha > 0, alpha, torch.ones_like(alpha))

    sizes = _piece_sizes(tuple(in_sizes), G, x.device)
    y = _mvm_steps(xp, 1.0 / alpha, tiles, io, sizes)  # (G, n, B, N) output steps
    bound = io.out_bound / (io.dy if io.dy > 0 else 1.0) if io.out_bound > 0 else math.inf

    if bound < math.inf:
        _bound_management(y, xp, alpha, tiles, io, sizes, out_sizes, bound)

    # Digital: y_steps * dy * alpha * out_scale, summed over input pieces.
    row = alpha * ((io.dy if io.dy > 0 else 1.0) * io.out_scale)  # (G, B, n)
    if zero_piece is not None:
        row = row.masked_fill(zero_piece, 0.0)
    if n == 1 and col_scale is None and bias is not None:
        y0 = y[:, 0]
        return torch.addcmul(bias.to(y.dtype).reshape(G, 1, N), y0, row, out=y0)  # one pass, in place
    # (a fresh contiguous result when n > 1: y[:, 0] is then a strided view)
    out = y[:, 0].mul_(row[:, :, 0:1]) if n == 1 else torch.mul(y[:, 0], row[:, :, 0:1])
    for i in range(1, n):  # the digital sum over input pieces, all tiles at once
        out.addcmul_(y[:, i], row[:, :, i : i + 1])
    return _finish_digital(out, col_scale, bias)


@functools.lru_cache(maxsize=256)
def _piece_sizes(in_sizes: tuple, G: int, device: torch.device) -> Tensor:
    """(G*n,) the true input count of every piece, for IR drop."""
    return torch.tensor(in_sizes, device=device).repeat(G)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64 (for gradcheck); everything else computes in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _finish_digital(y: Tensor, col_scale: Optional[Tensor], bias: Optional[Tensor]) -> Tensor:
    G, B, N = y.shape
    if col_scale is not None:
        y = y.mul_(col_scale.to(y.dtype).reshape(-1, 1, N) if col_scale.numel() > 1 else col_scale.to(y.dtype))
    if bias is not None:
        y = y.add_(bias.to(y.dtype).reshape(G, 1, N))
    return y


def _bound_management(
    y: Tensor,
    xp: Tensor,
    alpha: Tensor,
    tiles: Tensor,
    io: TileIO,
    piece_sizes: Tensor,
    out_sizes: Sequence[int],
    bound: float,
) -> None:
    """Clip ``y`` (G, n, B, N, in output steps) in place; with iterative bound
    management first redo, with the input scale halved each round, the rows
    of each tile that reached the bound (only those rows, as aihwkit's CUDA
    tile). A redone tile's values are stored times its factor r, so the
    final scaling stays per (row, input piece)."""
    G, n, B, N = y.shape
    mn, mx = torch.aminmax(y)  # a full reduction: far faster than per row
    if not bool((mx >= bound) | (mn <= -bound)):
        return
    limit = io.last_round_factor
    if io.bound_management != BoundManagementType.ITERATIVE or limit < 1:
        y.clamp_(-bound, bound)
        return
    piece_of_col = piece_index(out_sizes, y.device)
    sat = _saturated_pieces(y, bound, out_sizes)  # (G, n, B, n_out): tiles to redo
    xq = xp.transpose(1, 2)  # (G, n, B, p): rows by piece
    aq = alpha.transpose(1, 2)  # (G, n, B)
    r = 1.0
    while True:
        r *= 2
        # The rows to redo, gathered per (group, piece) and padded to the
        # largest count M, so that one bmm over all pieces redoes them with
        # the pieces' own tiles (no copy of any tile).
        redo = sat.any(dim=-1)  # (G, n, B)
        count = redo.sum(dim=-1)  # (G, n)
        M = int(count.max())
        rows = torch.sort((~redo).to(torch.int8), dim=-1, stable=True).indices[..., :M]  # (G, n, M)
        valid = torch.arange(M, device=y.device) < count.unsqueeze(-1)  # (G, n, M)
        x_sub = xq.gather(2, rows.unsqueeze(-1).expand(-1, -1, -1, xq.shape[-1]))
        a_sub = aq.gather(2, rows)
        ynew = _mvm_steps(x_sub.transpose(1, 2), (1.0 / (a_sub * r)).transpose(1, 2), tiles, io, piece_sizes)
        last = r > limit
        if last:  # the last round is kept even if it clips
            ynew.clamp_(-bound, bound)
        idx = rows.unsqueeze(-1)
        take = sat.gather(2, idx.expand(-1, -1, -1, sat.shape[-1])) & valid.unsqueeze(-1)  # (G, n, M, n_out)
        cols = take.index_select(-1, piece_of_col)  # (G, n, M, N)
        idx_n = idx.expand(-1, -1, -1, N)
        y.scatter_(2, idx_n, torch.where(cols, ynew * r, y.gather(2, idx_n)))
        if last:
            return
        still = take & _saturated_pieces(ynew, bound, out_sizes)
        sat = torch.zeros_like(sat).scatter_(2, idx.expand(-1, -1, -1, sat.shape[-1]), still)
        if not bool(sat.any()):
            return


# --------------------------------------------------------------------------
# Backward


def tile_backward_input(
    grad: Tensor,
    tiles: Tensor,
    in_sizes: Sequence[int],
    out_sizes: Sequence[int],
    io: TileIO,
    forward=None,
) -> Tensor:
    """Gradient for x of (G, B, N) ``grad``: the transposed MVM, noisy when
    the backward IOParameters are not perfect, computed by ``forward``
    (``tile_forward`` by default; the op passes its dispatch, so CUDA
    tensors use the Triton kernel). Returns (G, B, K)."""
    ct = compute_dtype(grad.dtype)
    w = unlayout_tiles(tiles.to(ct), in_sizes)  # (G, N, K)
    if io.is_perfect:
        return torch.matmul(grad.to(ct), w) * io.out_scale
    wt = layout_tiles(w.transpose(1, 2).contiguous(), out_sizes)  # transposed array: N inputs in out pieces
    return (forward or tile_forward)(grad.to(ct), wt, out_sizes, in_sizes, io)
