"""The map pass: decide each matched layer's tile array from its config.

``map_tiles(ctx, unit)``

For every match, ``match.tile_maps`` becomes one ``TileMapEntry`` (sub,
weight shape, ``TileMap``) per analog tile layer it will make, from its
rule's ``tile_shapes`` (``nn.MultiheadAttention`` makes two: ``in_proj``
and ``out_proj``, or four with separate q/k/v weights). A ``TileMap`` holds
the grid (groups x output pieces x input pieces), the piece sizes (aihwkit's
balanced split of ``mapping.max_input_size`` / ``max_output_size``, or one
tile per layer when not mapped) and the physical tile size; its utilization
follows. A rule without ``tile_shapes`` (a ``conversion_map`` class of the
user's) leaves the list empty: the rewrite reports the built layer's actual
tiles. The graph is not changed; the output node of every match gets
``node.meta[META_TILE_MAPS]`` for dumps.
"""

from __future__ import annotations

from .context import META_TILE_MAPS, CompileContext
from .trace import GraphUnit

__all__ = ["map_tiles"]


def map_tiles(ctx: CompileContext, unit: GraphUnit) -> None:
    """See the module docstring."""
    for m in unit.matches:
        m.tile_maps = m.rule.tile_entries(m, ctx.options.mapped)
        m.node.meta[META_TILE_MAPS] = m.tile_maps
