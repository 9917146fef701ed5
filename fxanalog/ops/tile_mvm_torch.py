"""The torch implementation of ``fxanalog::tile_mvm``: the analog MVM of a
tile array in plain torch, on any device (the CPU path; the Triton kernels
are tested against it, and it against the independent one-vector-at-a-time
oracle of ``tests/reference_tile.py``).

* ``x``: ``(G, B, K)``: G independent groups (1 for linear layers, ``groups``
  for grouped convolutions), B input vectors, K inputs per group.
* ``tiles``: ``(G, n_in, p_in, N)``: the group's weights laid out by
  ``fxanalog.geometry.layout_tiles`` (input pieces of the sizes ``in_sizes``,
  each padded with zero rows to ``p_in``); along the N outputs the pieces
  are ``out_sizes``.

Each (group, input piece, output piece) is one full tile with its own noise
management, DAC, ADC, noise and bound management, as docs/tile.md states.
Partial sums over input pieces are added in digital; the column scales and
the bias are applied at the end. Everything is batched over groups, pieces
and rows: there is no Python loop over tiles.

For float32 CPU inputs of one input piece per group the DAC (noise
management, scaling, rounding, clipping) and the ADC's rounding with bound
management's saturation test and the digital tail run as three passes in C
(``native``, the extension ``fxanalog._periphery``, built at install; None
without a C compiler) instead of a dozen torch ops: the same float32
operations in the same order, so the same numbers (the tail with a bias
rounds ``y * alpha + bias`` once, as ``torch.addcmul`` does with a fused
multiply-add). Rows with a zero, tiny or NaN scale, stochastic rounding,
``MAX`` noise management and saturated outputs take the torch ops.

Internally the DAC works in input steps (``v = rint(x*s/dx)``, integers) and
the ADC in output steps (``y/dy``): the step sizes fold into one GEMM factor
``dx/dy``, and the output noise is added by the GEMM itself (``addmm``'s
``beta``), so the common case costs one matmul, one draw of normals and a
few passes over the output. Every derived quantity (steps, bounds, the clip
rule, the rounds of bound management) comes from ``TileIO``.
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Sequence

import torch
from torch import Tensor

from fxanalog import _rng
from fxanalog.config import NoiseManagementType, WeightNoiseType
from fxanalog.geometry import pad_index, per_output, piece_index, unlayout_tiles
from fxanalog.ops.io import TileIO

try:  # the DAC and ADC passes in C (fxanalog/_periphery.c); optional at install
    from fxanalog import _periphery as native
except ImportError:  # pragma: no cover - only without a C compiler at install
    native = None

__all__ = ["tile_forward", "apply_digital", "compute_dtype", "TINY_SCALE"]

# Noise-management scales below this are computed with x and alpha scaled up
# by 2^64 (so that 1/alpha cannot overflow); the Triton kernels use the same.
TINY_SCALE = 2.0**-64


def _input_scale(xp: Tensor, io: TileIO, pidx: Optional[Tensor], x: Tensor) -> Tensor:
    """Noise-management factor alpha per (group, row, input piece): (G, B, n_in)."""
    nm = io.noise_management
    G, B, n, p = xp.shape
    if nm == NoiseManagementType.ABS_MAX:
        # max|x| without a temporary of x's size (vector_norm(inf) is 10x slower on CPU; aminmax along a
        # dimension 6x slower than amax and amin)
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
        alpha = xp.new_full((G, B, n), io.constant_scale)  # nm_thres, or 1 when not > 0 (as aihwkit)
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
    drop). Returns the ADC result in output steps, (G*n, M, N) (a fresh
    tensor; callers view it as (G, n, M, N)), rounded
    when quantized, not yet clipped.
    """
    return _adc_steps(_dac_steps(xp, inv_in, io), tiles, io, piece_sizes)


def _dac_steps(xp: Tensor, inv_in: Tensor, io: TileIO) -> Tensor:
    """The DAC: (G, M, n, p) inputs, (G, M, n) factors 1/(alpha*r) -> (G, n,
    M, p) in input steps (integers when quantized), clipped, with input noise."""
    ux = io.ux  # normalized input per DAC unit
    # DAC: v in input steps (integers) when quantized. Scale in the input's
    # own layout (a strided out= is many times slower), then pieces first: a
    # no-op for one piece, one copy of the input else.
    v = (xp * inv_in.unsqueeze(-1)).transpose(1, 2).contiguous()  # (G, n, M, p)
    if io.dx > 0:
        # aihwkit's float32 order, x * (1/(alpha r)) then / dx, so that values
        # on a half step round as in aihwkit (docs/tile.md step 3).
        _round(v.div_(io.dx), io.inp_sto_round)
    if io.clip_input:  # quantize first, then clip
        v.clamp_(-io.inp_bound_steps, io.inp_bound_steps)
    if io.inp_noise > 0:
        _rng.add_normal_(v, io.inp_noise / ux)
    return v


def _adc_steps(v: Tensor, tiles: Tensor, io: TileIO, piece_sizes: Tensor, rounded: bool = True) -> Tensor:
    """The MVM of (G, n, M, p) DAC outputs and the ADC: (G*n, M, N) output
    steps, rounded when quantized (unless ``rounded`` is False: the caller
    rounds), not yet clipped."""
    G, n, M, p = v.shape
    N = tiles.shape[-1]
    ux, uy = io.ux, io.uy  # normalized input per DAC unit, output per ADC unit
    vin = v.view(G * n, M, p)
    w = tiles.reshape(G * n, p, N)
    if io.linear_adc:
        # y/dy = (dx/dy) W v + (out_noise/dy) xi. One tile: addmm adds the
        # noise and the factor inside the GEMM. Several: on CPU, baddbmm copies
        # a strided weight view, which costs more than a separate add.
        if G * n == 1 and io.out_noise > 0:
            y = _rng.randn((1, M, N), dtype=v.dtype, device=v.device)
            y[0].addmm_(vin[0], w[0], beta=io.out_noise / uy, alpha=ux / uy)  # in place
        else:
            vin.mul_(ux / uy)
            y = torch.bmm(vin, w)
            if io.out_noise > 0:
                _rng.add_normal_(y, io.out_noise / uy)
        if io.dy > 0 and rounded:
            _round(y, io.out_sto_round)
        return y
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
        j = torch.arange(p, dtype=torch.float32, device=v.device)
        frac = (1 - (1 - j / sizes).square()) * (j < sizes)  # (G*n, p)
        a = (sizes[:, :, None] / io.ir_drop_g_ratio) * torch.bmm(vn.abs(), w.abs())
        c = a * (a * (0.05 * a - 0.2) + 0.5)
        y.sub_(io.ir_drop * c * torch.bmm(vn * frac[:, None, :], w))
    if io.out_nonlinearity > 0:
        y = y / (1 + (io.out_nonlinearity * y).abs())
    if io.out_noise > 0:
        _rng.add_normal_(y, io.out_noise)
    y.div_(uy)
    if io.dy > 0 and rounded:
        _round(y, io.out_sto_round)
    return y


def _clip_(y: Tensor, bound: float, has_inf: bool = True) -> Tensor:
    """Clip ``y`` to [-bound, bound] in place; +-inf (from an infinite weight
    or input) stays, so that it spoils its own outputs only, as digitally."""
    if not has_inf:
        return y.clamp_(-bound, bound)
    return y.copy_(torch.where(y.isinf(), y, y.clamp(-bound, bound)))


def _saturated_pieces(y: Tensor, level: float, out_sizes: Sequence[int]) -> Tensor:
    """(G, n, M, N) output steps -> (G, n, M, n_out) bool: the tile saturated
    (a finite output with ``|y| > level``, ``TileIO.out_sat``; NaN and +-inf,
    which no smaller input makes finite, are not)."""
    a = y.abs()
    hit = (a > level) & (a < math.inf)
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
    if x.dtype != ct:
        x = x.to(ct)
    if tiles.dtype != ct:
        tiles = tiles.to(ct)
    if io.is_perfect:
        y = torch.matmul(x, unlayout_tiles(tiles, in_sizes).transpose(1, 2)) * io.out_scale
        return apply_digital(y, col_scale, bias)
    if B == 0:  # an empty batch: an empty result, as a digital layer gives
        return x.new_zeros((G, 0, N))

    sizes = _piece_sizes(tuple(in_sizes), G, x.device)
    if n == 1 and _periphery_in_c(x, io):
        y = _forward_c(x, tiles, io, sizes, out_sizes, col_scale, bias)
        if y is not None:
            return y
    pidx = pad_index(in_sizes, x)
    if pidx is None:
        xp = x.reshape(G, B, n, p)
    else:
        xp = torch.cat([x, x.new_zeros(G, B, 1)], dim=-1).index_select(2, pidx).view(G, B, n, p)

    alpha = _input_scale(xp, io, pidx, x)  # (G, B, n)
    zero_piece = None
    alpha_dac, x_dac = alpha, xp  # what the DAC divides: x / alpha
    if not float(alpha.min()) >= TINY_SCALE:  # rare: zero, negative (MAX), tiny or NaN scales
        # An all-zero batch of a piece gives zero (aihwkit skips such a tile).
        zero_piece = (alpha == 0).all(dim=1, keepdim=True) if io.gate_zero_pieces else None
        alpha = torch.where(alpha > 0, alpha, torch.ones_like(alpha))
        # A tiny scale (max|x| < 2^-64, down to subnormals): 1/alpha would
        # overflow to inf (and 0 * inf = NaN). The DAC divides x * 2^64 by
        # alpha * 2^64 instead: exact powers of two, so the DAC output is bit
        # for bit the same as the exact x / alpha; the digital factor keeps alpha.
        up = torch.where(alpha < TINY_SCALE, 2.0**64, 1.0).to(alpha.dtype)
        alpha_dac, x_dac = alpha * up, xp * up.unsqueeze(-1)

    y_base = _mvm_steps(x_dac, alpha_dac.reciprocal(), tiles, io, sizes)  # (G*n, B, N) output steps
    if io.bounded:
        _bound_management(y_base.view(G, n, B, N), x_dac, alpha_dac, tiles, io, sizes, out_sizes)
    return _digital_tail(y_base, alpha, io, zero_piece, col_scale, bias)


def _digital_tail(y_base: Tensor, alpha: Tensor, io: TileIO, zero_piece: Optional[Tensor], col_scale: Optional[Tensor],
                  bias: Optional[Tensor]) -> Tensor:
    """Digital: y_steps * dy * alpha * out_scale, summed over input pieces,
    then ``col_scale`` and ``bias``: (G*n, B, N) output steps (clipped),
    (G, B, n) scales -> (G, B, N), in ``y_base``'s memory when n = 1."""
    G, B, n = alpha.shape
    N = y_base.shape[-1]
    y = y_base.view(G, n, B, N)
    row = alpha * (io.uy * io.out_scale)  # (G, B, n)
    if zero_piece is not None:
        row = row.masked_fill(zero_piece, 0.0)
    if n == 1 and col_scale is None and bias is not None:
        y0 = y_base  # (G, B, N): the fresh result itself, not a view
        return torch.addcmul(bias.to(y.dtype).reshape(G, 1, N), y0, row, out=y0)  # one pass, in place
    # A fresh tensor either way (never a view: callers may modify it in place).
    out = y_base.mul_(row[:, :, 0:1]) if n == 1 else torch.mul(y[:, 0], row[:, :, 0:1])
    for i in range(1, n):  # the digital sum over input pieces, all tiles at once
        out.addcmul_(y[:, i], row[:, :, i : i + 1])
    return apply_digital(out, col_scale, bias)


def _periphery_in_c(x: Tensor, io: TileIO) -> bool:
    """Whether the DAC and ADC passes of one input piece run in C (see the
    module docstring): float32 CPU tensors, deterministic rounding, and a
    noise management other than ``MAX``."""
    return (native is not None and x.dtype == torch.float32 and x.device.type == "cpu"
            and type(x) in (torch.Tensor, torch.nn.Parameter) and io.noise_management != NoiseManagementType.MAX
            and not (io.dx > 0 and io.inp_sto_round) and not (io.dy > 0 and io.out_sto_round))


def _forward_c(x: Tensor, tiles: Tensor, io: TileIO, sizes: Tensor, out_sizes: Sequence[int],
               col_scale: Optional[Tensor], bias: Optional[Tensor]) -> Optional[Tensor]:
    """``tile_forward`` of (G, B, K) float32 inputs on (G, 1, K, N) tiles
    (one input piece) with the DAC and ADC passes in C (fxanalog/_periphery.c);
    None when a row's scale is zero, tiny or NaN (the torch ops handle those)."""
    G, B, K = x.shape
    N = tiles.shape[-1]
    x = x.contiguous()
    threads = torch.get_num_threads()
    v = torch.empty((G, 1, B, K))
    alpha = torch.empty((G, B, 1))
    abs_max = io.noise_management == NoiseManagementType.ABS_MAX
    scale = io.nm_thres if abs_max else io.constant_scale  # the cap of max|x| (when > 0), or the constant
    if not native.dac(x.data_ptr(), v.data_ptr(), alpha.data_ptr(), G * B, K, abs_max, scale, io.dx,
                      io.inp_bound_steps, threads):
        return None
    if io.inp_noise > 0:
        _rng.add_normal_(v, io.inp_noise / io.ux)
    y = _adc_steps(v, tiles, io, sizes, rounded=False)  # (G, B, N)
    top = native.adc(y.data_ptr(), y.numel(), io.dy > 0, threads)  # rounded in place; max |y|
    if io.bounded and top > min(io.out_bound_steps, io.out_sat):  # saturated: bound management in torch
        _bound_management(y.view(G, 1, B, N), x.view(G, B, 1, K), alpha, tiles, io, sizes, out_sizes)
        return _digital_tail(y, alpha, io, None, col_scale, bias)
    fused = None if bias is None or col_scale is not None else bias.to(torch.float32).contiguous()
    native.scale(y.data_ptr(), alpha.data_ptr(), None if fused is None else fused.data_ptr(), G, B, N,
                 io.uy * io.out_scale, threads)
    return y if col_scale is None else apply_digital(y, col_scale, bias)


@functools.lru_cache(maxsize=256)
def _piece_sizes(in_sizes: tuple, G: int, device: torch.device) -> Tensor:
    """(G*n,) the true input count of every piece, for IR drop."""
    return torch.tensor(in_sizes, device=device).repeat(G)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64 (for gradcheck); everything else computes in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def apply_digital(y: Tensor, col_scale: Optional[Tensor], bias: Optional[Tensor]) -> Tensor:
    """``y * col_scale + bias`` in place on a (G, B, N) result: ``col_scale``
    one factor or one per (group, output), ``bias`` one per (group, output)."""
    G, B, N = y.shape
    if col_scale is not None:
        y = y.mul_(per_output(col_scale.to(y.dtype), N, "result"))
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
) -> None:
    """Clip ``y`` (G, n, B, N, in output steps) in place; with iterative bound
    management first redo, with the input scale halved each round, the rows
    of each tile that saturated (only those rows, as aihwkit's CUDA tile).
    Saturated is aihwkit's strict test ``|y| > out_bound`` on the quantized
    value (``io.out_sat``, docs/tile.md step 7): an output exactly at the
    bound is not redone. A redone tile's values are stored times its factor
    r, so the final scaling stays per (row, input piece)."""
    G, n, B, N = y.shape
    bound = io.out_bound_steps
    level = io.out_sat
    mn, mx = torch.aminmax(y)  # a full reduction: far faster than per row
    mn, mx = float(mn), float(mx)  # (NaN compares False, as the tensor comparisons did)
    lim = min(bound, level)
    if not (mx > lim or mn < -lim):
        return
    has_inf = mx == math.inf or mn == -math.inf
    if not io.iterative_bound_management:
        _clip_(y, bound, has_inf)
        return
    sat = _saturated_pieces(y, level, out_sizes)  # (G, n, B, n_out): tiles to redo
    _clip_(y, bound, has_inf)
    if not bool(sat.any()):
        return
    limit = io.last_round_factor
    piece_of_col = piece_index(out_sizes, y.device)
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
        ynew = _mvm_steps(x_sub.transpose(1, 2), (1.0 / (a_sub * r)).transpose(1, 2), tiles, io,
                          piece_sizes).view(G, n, -1, N)
        idx = rows.unsqueeze(-1)
        take = sat.gather(2, idx.expand(-1, -1, -1, sat.shape[-1])) & valid.unsqueeze(-1)  # (G, n, M, n_out)
        still = take & _saturated_pieces(ynew, level, out_sizes)
        _clip_(ynew, bound)  # the last round is kept even if it clips
        cols = take.index_select(-1, piece_of_col)  # (G, n, M, N)
        idx_n = idx.expand(-1, -1, -1, N)
        y.scatter_(2, idx_n, torch.where(cols, ynew * r, y.gather(2, idx_n)))
        if r > limit:
            return
        sat = torch.zeros_like(sat).scatter_(2, idx.expand(-1, -1, -1, sat.shape[-1]), still)
        if not bool(sat.any()):
            return
