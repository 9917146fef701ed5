"""The custom op ``fxanalog::tile_mvm``: the analog matrix-vector product of
a tile array, registered with torch.library so that graphs containing it run
under ``torch.compile`` and ``torch.export`` without graph breaks.

Schema::

    fxanalog::tile_mvm(Tensor x, Tensor tiles, int[] in_sizes, int[] out_sizes,
                       Tensor? col_scale, Tensor? bias,
                       float[] forward_io, float[] backward_io) -> Tensor

``x`` is ``(G, B, K)``, ``tiles`` ``(G, n_in, p_in, N)`` (see
``fxanalog.tile``), the result ``(G, B, N)`` in ``x``'s dtype. ``forward_io``
and ``backward_io`` are ``IOParameters`` packed by ``fxanalog.tile.pack_io``.

Autograd: straight-through through quantization, noise and clipping. The
input gradient is the transposed MVM of the tiles (noisy when the backward
IOParameters are not perfect), the weight gradient ``grad^T x``, as in
aihwkit's tiles.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from fxanalog.tile import compute_dtype, layout_tiles, tile_backward_input, unpack_io
from fxanalog.triton_kernels.tile_mvm import tile_mvm_forward

__all__ = ["tile_mvm"]


@torch.library.custom_op(
    "fxanalog::tile_mvm", mutates_args=(), tags=(torch.Tag.nondeterministic_seeded,)
)
def tile_mvm(
    x: Tensor,
    tiles: Tensor,
    in_sizes: list[int],
    out_sizes: list[int],
    col_scale: Optional[Tensor],
    bias: Optional[Tensor],
    forward_io: list[float],
    backward_io: list[float],
) -> Tensor:
    y = tile_mvm_forward(x, tiles, in_sizes, out_sizes, unpack_io(forward_io), col_scale, bias)
    return y.to(x.dtype)


@tile_mvm.register_fake
def _(x, tiles, in_sizes, out_sizes, col_scale, bias, forward_io, backward_io):
    G, B, _ = x.shape
    return x.new_empty((G, B, tiles.shape[-1]))


def _setup_context(ctx, inputs, output):
    x, tiles, in_sizes, out_sizes, col_scale, bias, forward_io, backward_io = inputs
    if col_scale is not None and col_scale.requires_grad:
        raise RuntimeError(
            "fxanalog::tile_mvm: col_scale is a fixed digital factor; apply learnable "
            "output scales outside the op"
        )
    ctx.save_for_backward(x, tiles, col_scale)
    ctx.in_sizes, ctx.out_sizes = list(in_sizes), list(out_sizes)
    ctx.forward_io, ctx.backward_io = list(forward_io), list(backward_io)
    ctx.has_bias = bias is not None


def _backward(ctx, grad):
    x, tiles, col_scale = ctx.saved_tensors
    fio, bio = unpack_io(ctx.forward_io), unpack_io(ctx.backward_io)
    G, B, K = x.shape
    _, n, p, N = tiles.shape
    ct = compute_dtype(grad.dtype)
    g = grad.to(ct) * fio.out_scale
    if col_scale is not None:
        g = g * (col_scale.to(ct).reshape(-1, 1, N) if col_scale.numel() > 1 else col_scale.to(ct))
    grad_x = grad_tiles = grad_bias = None
    if ctx.needs_input_grad[0]:
        grad_x = tile_backward_input(g, tiles, ctx.in_sizes, ctx.out_sizes, bio, tile_mvm_forward).to(x.dtype)
    if ctx.needs_input_grad[1]:
        # dL/dW = g^T x per group, laid out like the tiles (pads get zero).
        gw = torch.matmul(g.transpose(1, 2), x.to(ct))  # (G, N, K)
        grad_tiles = layout_tiles(gw, ctx.in_sizes).to(tiles.dtype)
    if ctx.has_bias and ctx.needs_input_grad[5]:
        grad_bias = grad.sum(dim=1).reshape(-1)
    return grad_x, grad_tiles, None, None, None, grad_bias, None, None


tile_mvm.register_autograd(_backward, setup_context=_setup_context)
