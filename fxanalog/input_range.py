"""The learned input range of aihwkit's torch inference tiles
(``rpu_config.pre_post.input_range``, ``InputRangeParameter``).

With the input range enabled, a tile array keeps one range ``r`` per (group,
input piece) (``layer.tile.input_range``, shape ``(G, n_in)``):
the tiles that share an input piece see the same inputs. In digital, before
the DAC, each input is clipped to ``[-r, r]`` and divided by ``r``; each
tile's output is multiplied by its piece's ``r`` before the partial sums are
added. So a tile sees inputs in ``[-1, 1]`` whatever the data, with a range
learned in training instead of the dynamic noise management (usually set to
``NONE`` then).

Training, as aihwkit's torch tile does it:

* *Initialization from data*: in each of the first ``init_from_data``
  training batches, ``r <- |(r k + init_std_alpha std(x)) / (k + 1)|``, with
  ``std(x)`` over the piece's inputs of the batch and ``k`` the number of
  updates so far (``layer.tile.input_range_update_idx``); a batch whose piece has
  ``std = 0`` does not count. Under ``DistributedDataParallel`` the batch is
  that of every rank together.
* *Gradient*: autograd through ``x/r`` and ``r * y``, plus, per piece, over
  the inputs clipped at ``+r`` the sum of the negative parts of their
  gradients ``d`` (with respect to the clipped input) and, over those at
  ``-r``, minus the sum of the positive parts: ``sum_up min(d, 0) -
  sum_low max(d, 0)``, pushing ``r`` up where the loss asks for larger
  inputs. That term is multiplied by ``r`` (``gradient_relative``) and by
  ``gradient_scale``; then ``decay * r`` is added when the fraction of
  unclipped inputs exceeds ``input_min_percentage`` (the range shrinks while
  few inputs clip), and with ``manage_output_clipping``
  ``-(1 - f) r`` when the fraction ``f`` of the tile's outputs that did not
  reach the ADC bound is below ``output_min_percentage``.
* The clipped inputs get no gradient (straight-through inside the range).

aihwkit applies ``gradient_scale`` only together with ``gradient_relative``;
here it always scales the clipping term, as its documentation describes.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from fxanalog.config import InputRangeParameter, IOParameters
from fxanalog.geometry import TileGeometry, fold_samples, piece_index, unfold_samples
from fxanalog.ops import tile_mvm as tile_mvm_op
from fxanalog.ops.tile_mvm import NO_UPDATE
from fxanalog.ops.tile_mvm_torch import compute_dtype
from fxanalog.ops.tile_record import active_ddp_group

__all__ = ["input_range_config", "input_range_mvm", "init_from_data_"]


def input_range_config(rpu_config) -> InputRangeParameter | None:
    """The config's ``InputRangeParameter`` when enabled, else None."""
    pre_post = getattr(rpu_config, "pre_post", None)
    ir = getattr(pre_post, "input_range", None)
    return ir if ir is not None and ir.enable else None


def _per_piece(t: Tensor, piece: Tensor, n: int) -> Tensor:
    """(G, K) per-column values summed into (G, n) per-piece values."""
    return t.new_zeros(t.shape[0], n).index_add_(1, piece, t)


@torch.no_grad()
def init_from_data_(ir: Tensor, counts: Tensor, x: Tensor, in_sizes: Sequence[int], cfg: InputRangeParameter) -> bool:
    """aihwkit's initialization from data, in place: a running mean of
    ``init_std_alpha * std`` of each piece's inputs in ``ir`` (G, n_in), for
    the pieces whose ``counts`` are still below ``init_from_data``. ``x`` is
    ``(G, B, K)``. Returns True once every piece had its batches (the counts
    only grow, so the caller can stop calling, and reading them, then).

    Inside the forward of a ``DistributedDataParallel`` module of several
    ranks, the mean and std are those of every rank's inputs together (two
    all-reduces), so every rank sets the same range: the one a single
    process would set from the concatenated batch (docs/distributed.md)."""
    if int(counts.min()) >= cfg.init_from_data:
        return True
    G, B, K = x.shape
    n = len(in_sizes)
    piece = piece_index(in_sizes, x.device)
    xs = x.to(compute_dtype(x.dtype))
    group = active_ddp_group()  # inside a DDP forward: the std of the inputs of every rank's batch
    count = torch.tensor(list(in_sizes), device=x.device, dtype=xs.dtype) * B
    sums = _per_piece(xs.sum(dim=1), piece, n)
    if group is not None:
        both = torch.cat([sums, count.expand(G, n)], dim=1)
        torch.distributed.all_reduce(both, group=group)
        sums, count = both[:, :n], both[:, n:]
    mean = sums / count
    dev = xs - mean.index_select(1, piece).unsqueeze(1)
    squares = _per_piece(dev.square().sum(dim=1), piece, n)
    if group is not None:
        torch.distributed.all_reduce(squares, group=group)
    std = (squares / (count - 1)).sqrt()  # NaN for one value: skipped
    k = counts.to(xs.dtype)
    new = ((ir.detach().to(xs.dtype) * k + cfg.init_std_alpha * std) / (k + 1)).abs()
    update = (counts < cfg.init_from_data) & (std > 0)
    ir.copy_(torch.where(update, new, ir.detach().to(xs.dtype)).to(ir.dtype))
    counts.add_(update.to(counts.dtype))
    return False


class _ClipAndScale(torch.autograd.Function):
    """(G, B, K) inputs -> ``clamp(x, -r, r) / r`` with ``r`` each column's
    piece range; the gradient of ``r`` adds aihwkit's clipping and decay terms."""

    @staticmethod
    def forward(ctx, x: Tensor, ir: Tensor, piece: Tensor, cfg: InputRangeParameter) -> Tensor:
        r = ir.index_select(1, piece).unsqueeze(1)  # (G, 1, K)
        upper, lower = x >= r, x <= -r
        xc = torch.minimum(torch.maximum(x, -r), r)
        ctx.save_for_backward(xc, ir, piece, upper, lower)
        ctx.cfg = cfg
        return xc / r

    @staticmethod
    def backward(ctx, g: Tensor):
        xc, ir, piece, upper, lower = ctx.saved_tensors
        cfg = ctx.cfg
        n = ir.shape[1]
        r = ir.index_select(1, piece).unsqueeze(1)
        d = g / r  # gradient with respect to the clipped input
        clipped = upper | lower
        grad_x = d.masked_fill(clipped, 0.0) if ctx.needs_input_grad[0] else None
        grad_ir = None
        if ctx.needs_input_grad[1]:
            # autograd's part: d(xc/r)/dr = -xc/r^2
            div = _per_piece(-(g * xc).sum(dim=1) / r.squeeze(1).square(), piece, n)
            push = _per_piece((d.clamp(max=0) * upper).sum(dim=1) - (d.clamp(min=0) * lower).sum(dim=1), piece, n)
            if cfg.gradient_relative:
                push = push * ir
            push = push * cfg.gradient_scale
            if cfg.decay > 0:
                B = xc.shape[1]
                count = torch.bincount(piece, minlength=n).to(ir.dtype) * B
                unclipped = 1 - _per_piece(clipped.sum(dim=1).to(ir.dtype), piece, n) / count
                push = push + cfg.decay * ir * (unclipped > cfg.input_min_percentage)
            grad_ir = div + push
        return grad_x, grad_ir, None, None


class _OutputClipping(torch.autograd.Function):
    """Identity on ``r`` (G, n); its gradient gets ``-(1 - f) r`` where the
    fraction ``f`` of unclipped outputs is below ``output_min_percentage``
    (``manage_output_clipping``)."""

    @staticmethod
    def forward(ctx, ir: Tensor, unclipped: Tensor, cfg: InputRangeParameter) -> Tensor:
        ctx.save_for_backward(ir, unclipped)
        ctx.cfg = cfg
        return ir.clone()

    @staticmethod
    def backward(ctx, g: Tensor):
        ir, unclipped = ctx.saved_tensors
        cfg = ctx.cfg
        extra = torch.where(unclipped < cfg.output_min_percentage, -(1 - unclipped) * ir, torch.zeros_like(ir))
        return g + cfg.gradient_scale * extra, None, None


def _size_runs(in_sizes: Sequence[int]) -> list[tuple[int, int, int]]:
    """The balanced split has at most two piece sizes, in runs:
    ``(first piece, piece count, size)`` of each run."""
    runs: list[tuple[int, int, int]] = []
    for i, s in enumerate(in_sizes):
        if runs and runs[-1][2] == s:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1, s)
        else:
            runs.append((i, 1, s))
    return runs


def input_range_mvm(x: Tensor, tiles: Tensor, ir: Optional[Tensor], geometry: TileGeometry,
                    cfg: Optional[InputRangeParameter], forward: IOParameters, packed_io: tuple, samples: int = 1,
                    piece_scale: Optional[Tensor] = None) -> Tensor:
    """(G, B, K) inputs -> (G, B, N) outputs of the tile array with the input
    range ``ir`` (G, n_in) applied (None: no range), before the digital
    column scales and bias (float32).

    Every input piece is run as its own group of ``fxanalog::tile_mvm`` (one
    call per piece size, at most two), so its partial output can be scaled
    by its range, and by its tiles' own digital factors ``piece_scale``
    (G, n_in, N; per-tile weight scaling), before the digital sum; each tile
    is computed exactly as without them (own DAC, ADC, noise and
    management). ``samples > 1``: ``tiles`` holds ``samples * G`` groups, one
    weight set per sample (``per_batch_sample``), see ``fold_samples``.
    """
    in_sizes, out_sizes = geometry.in_sizes, list(geometry.out_sizes)
    G, B, K = x.shape
    N = tiles.shape[-1]
    ct = compute_dtype(x.dtype)
    piece = piece_index(in_sizes, x.device)
    if ir is not None:
        irc = ir.to(ct)
        xs = fold_samples(_ClipAndScale.apply(x.to(ct), irc, piece, cfg), samples)
    else:
        xs = fold_samples(x.to(ct), samples)
    G, B = G * samples, B // samples
    ps = None
    if piece_scale is not None:
        ps = piece_scale.to(ct)
        ps = ps.repeat(samples, 1, 1) if samples > 1 else ps  # (G, n, N)
    parts, col = [], 0
    for first, count, size in _size_runs(in_sizes):
        xr = xs[:, :, col : col + count * size].reshape(G, B, count, size).permute(0, 2, 1, 3).reshape(G * count, B, size)
        tr = tiles[:, first : first + count, :size].reshape(G * count, 1, size, N)
        cs = None if ps is None else ps[:, first : first + count].reshape(-1)
        y = tile_mvm_op.mvm(xr, tr, [size], out_sizes, cs, None, *packed_io, NO_UPDATE)
        parts.append(y.reshape(G, count, B, N))
        col += count * size
    y = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # (G, n, B, N)
    if ir is None:
        return unfold_samples(y.sum(dim=1), samples)
    scale = irc
    if cfg.manage_output_clipping:
        bound = forward.out_bound * abs(forward.out_scale) * (1 - 1e-5)
        yt = y.detach() if ps is None else y.detach() / ps[:, :, None, :]  # the tiles' own outputs
        unclipped = 1 - (yt.abs() >= bound).to(ct).mean(dim=(2, 3))  # (S*G, n)
        scale = _OutputClipping.apply(irc, unclipped.reshape(samples, -1, unclipped.shape[1]).mean(dim=0), cfg)
    if samples > 1:
        scale = scale.repeat(samples, 1)
    return unfold_samples((y * scale.reshape(G, -1, 1, 1)).sum(dim=1), samples)
