"""Pass 4, map: decide each matched layer's tile array from its config.

``map_tiles(gm, matches, mapped) -> list[Match]``

For every match, ``match.plan`` becomes one entry per analog tile layer it
will make (``nn.MultiheadAttention`` makes two: ``in_proj`` and
``out_proj``, or four with separate q/k/v weights)::

    {"sub": "" | "in_proj" | ..., "shape": [out, in/groups, *kernel],
     "groups": G, "tiles": tile_map(G, N, K, rpu_config, mapped)}

``tiles`` holds the grid (groups x output pieces x input pieces), the piece
sizes (aihwkit's balanced split of ``mapping.max_input_size`` /
``max_output_size``, or one tile per layer when not mapped), the physical
tile size and the utilization. A ``conversion_map`` replacement is a user
class whose tiles are only known once built: its plan stays empty and the
rewrite reports its actual tiles. The graph is not changed; every node of a
match gets ``node.meta["fxanalog_plan"]`` for dumps.
"""

from __future__ import annotations

from torch import fx, nn

from .layers import is_builtin, record, tile_map, weight_dims
from .match import Match

__all__ = ["map_tiles", "plan_records"]


def _entry(sub: str, shape, groups: int, cfg, mapped: bool) -> dict:
    G, N, K = weight_dims(shape, groups)
    return {"sub": sub, "shape": [int(s) for s in shape], "groups": G,
            "tiles": tile_map(G, N, K, cfg, mapped)}


def _plan(m: Match, mapped: bool) -> list[dict]:
    cfg = m.rpu_config
    if not is_builtin(m.replacement):
        return []
    if m.module is not None:
        mod = m.module
        if isinstance(mod, nn.MultiheadAttention):
            E = mod.embed_dim
            if mod._qkv_same_embed_dim:
                subs = [("in_proj", mod.in_proj_weight.shape)]
            else:
                subs = [("q_proj", mod.q_proj_weight.shape), ("k_proj", mod.k_proj_weight.shape),
                        ("v_proj", mod.v_proj_weight.shape)]
            subs.append(("out_proj", (E, E)))
            return [_entry(s, shape, 1, cfg, mapped) for s, shape in subs]
        return [_entry("", mod.weight.shape, getattr(mod, "groups", 1), cfg, mapped)]
    if m.kind == "F.multi_head_attention_forward":
        E = m.weight.shape[1]
        return [_entry("in_proj", m.weight.shape, 1, cfg, mapped), _entry("out_proj", (E, E), 1, cfg, mapped)]
    shape = m.weight.shape
    if m.transposed:
        shape = (shape[1], shape[0])
    return [_entry("", shape, m.params.get("groups", 1) if m.params else 1, cfg, mapped)]


def map_tiles(gm: fx.GraphModule, matches: list[Match], mapped: bool) -> list[Match]:
    """See the module docstring."""
    for m in matches:
        m.plan = _plan(m, mapped)
        m.node.meta["fxanalog_plan"] = m.plan
    return matches


def plan_records(matches: list[Match], prefix: str = "") -> list[dict]:
    """Layer records of the plan, as a dry run (``explain``) reports them."""
    out = []
    for m in matches:
        if not m.plan:
            out.append(record(prefix + m.name, m.kind, m.converted_by, prefix + m.source, None,
                              rpu_config=m.rpu_config))
            continue
        for e in m.plan:
            name = prefix + m.name + (f".{e['sub']}" if e["sub"] else "")
            kind = m.kind + (f".{e['sub']}" if e["sub"] else "")
            out.append(record(name, kind, m.converted_by, prefix + m.source, e["shape"], e["tiles"], m.rpu_config))
    return out

