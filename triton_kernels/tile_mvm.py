"""The tile forward op: dispatch between the Triton kernel and the torch path.

``tile_mvm_forward`` is what the custom op ``fxanalog::tile_mvm`` runs. CUDA
tensors go to the Triton kernel when Triton is available and not forced off;
everything else goes to ``fxanalog.tile.tile_forward``, the reference.
"""

from __future__ import annotations

from typing import Optional, Sequence

from torch import Tensor

from fxanalog.tile import TileIO, tile_forward
from fxanalog.triton_kernels.dispatch import use_triton


def tile_mvm_forward(
    x: Tensor,
    tiles: Tensor,
    in_sizes: Sequence[int],
    out_sizes: Sequence[int],
    io: TileIO,
    col_scale: Optional[Tensor] = None,
    bias: Optional[Tensor] = None,
) -> Tensor:
    """(G, B, K) inputs through a (G, n_in, p_in, N) tile array -> (G, B, N) float."""
    if use_triton(x) and triton_tile_forward is not None:
        return triton_tile_forward(x, tiles, in_sizes, out_sizes, io, col_scale, bias)
    return tile_forward(x, tiles, in_sizes, out_sizes, io, col_scale, bias)


triton_tile_forward = None
