"""Pass 5, rewrite: replace each matched node by its analog layer.

``rewrite(gm, matches, mapped, prefix="") -> list[dict]`` (the layer records)

For each match, the analog module is built (``from_digital`` of the
replacement class with the module's own parameters, or an ``AnalogLinear`` /
``AnalogConvNd`` around the weight parameter of a functional matmul; no
weight is copied) and installed as a submodule of ``gm``: in place of the
digital module (same path, so ``state_dict`` keys stay), in place of the
weight's owner (HuggingFace's ``Conv1D``), or as a new ``analog_<weight>``
submodule. The matched node (with a folded bias add) becomes one
``call_module`` node named ``analog_<layer>`` whose module computes with
``fxanalog::tile_mvm``; transposes and ``get_attr`` nodes left without users
are erased. Every other node is unchanged. A weight used by several matmuls
(a tied output head) stays one Parameter shared by all of its layers.

Returns one record per analog tile layer (name, kind, how converted, source,
weight shape and the actual tile map).
"""

from __future__ import annotations

from torch import fx, nn

from fxanalog.nn.modules import AnalogLayerBase, AnalogLinear

from .layers import call_from_digital, is_builtin, record, tile_map
from .match import Match

__all__ = ["rewrite", "build_layer", "layer_records", "set_submodule"]


def build_layer(m: Match, mapped: bool) -> nn.Module:
    """The analog module of one match, sharing the digital parameters."""
    cfg = m.rpu_config
    if m.module is not None:
        if is_builtin(m.replacement):
            new = m.replacement.from_digital(m.module, cfg, mapped=mapped, share=True)
        else:
            new = call_from_digital(m.replacement, m.module, cfg, mapped)
        new.train(m.module.training)
        return new
    w = m.weight
    if m.kind == "F.multi_head_attention_forward":
        from fxanalog.nn.attention import AnalogMultiheadAttention

        p = m.params
        layer = AnalogMultiheadAttention.from_parameters(
            p["num_heads"], p["in_proj_weight"], p["in_proj_bias"], p["out_proj_weight"], p["out_proj_bias"],
            p["bias_k"], p["bias_v"], p["add_zero_attn"], p["dropout"], cfg, mapped=mapped)
        return layer.train(p["training"])
    if m.replacement is AnalogLinear:
        n_in, n_out = (w.shape[0], w.shape[1]) if m.transposed else (w.shape[1], w.shape[0])
        return AnalogLinear(n_in, n_out, m.bias is not None, cfg, mapped=mapped, transposed=m.transposed,
                            weight=w, bias_param=m.bias)
    c = m.params
    return m.replacement(w.shape[1] * c["groups"], w.shape[0], tuple(w.shape[2:]), c["stride"], c["padding"],
                         c["dilation"], c["groups"], m.bias is not None, "zeros", cfg, mapped=mapped,
                         weight=w, bias_param=m.bias)


def layer_records(module: nn.Module, name: str, kind: str, converted_by: str, source: str) -> list[dict]:
    """Records of the analog tile layers inside ``module`` (itself included)."""
    out = []
    for sub, layer in module.named_modules():
        if not isinstance(layer, AnalogLayerBase):
            continue
        full = name + (f".{sub}" if sub else "")
        layer.analog_name = full
        N, K = layer.tile_shape
        plan = tile_map(layer.groups, N, K, layer.rpu_config, layer.mapped, layer.in_sizes, layer.out_sizes)
        out.append(record(full, kind + (f".{sub}" if sub else ""), converted_by, source,
                          layer.weight.shape, plan))
    if not out:
        out.append(record(name, kind, converted_by, source, None))
    return out


def set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, last = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, last, module)


def _erase_unused(node: fx.Node) -> None:
    graph = node.graph
    if node.users or node.op not in ("get_attr", "call_method", "call_function"):
        return
    inputs = list(node.all_input_nodes)
    graph.erase_node(node)
    for n in inputs:
        if n.op == "get_attr" or (n.op in ("call_method", "call_function") and not n.users
                                  and _is_view(n)):
            _erase_unused(n)


def _is_view(n: fx.Node) -> bool:
    from .match import _is_transpose

    return _is_transpose(n) is not None


def rewrite(gm: fx.GraphModule, matches: list[Match], mapped: bool, prefix: str = "",
            build=build_layer, emit=None) -> list[dict]:
    """See the module docstring. ``build(match, mapped)`` makes the analog
    module; ``emit(graph, match, layer, args, kwargs, name)`` inserts the node
    that calls it instead of installing it as a submodule (the torch.compile
    backend passes both: a cached builder, and calls with the weights as
    graph inputs)."""
    records: list[dict] = []
    graph = gm.graph
    replaced: dict[fx.Node, fx.Node] = {}  # earlier rewrites, for arguments the matches captured
    for m in matches:
        layer = build(m, mapped)
        if m.module is None and "training" not in m.params:
            layer.train(gm.training)
        if emit is None and m.install == "add":
            gm.add_submodule(m.name, layer)
        elif emit is None:
            set_submodule(gm, m.name, layer)
        records += layer_records(layer, prefix + m.name, m.kind, m.converted_by, prefix + m.source)
        if m.new_args is not None:
            args, kwargs = m.new_args, m.new_kwargs
        elif m.module is not None:
            args, kwargs = m.node.args, m.node.kwargs
        else:
            args, kwargs = (m.x,), {}
        args, kwargs = fx.node.map_arg((args, kwargs), lambda n: replaced.get(n, n))
        node_name = m.name.replace(".", "_")
        node_name = node_name if node_name.startswith("analog_") else "analog_" + node_name
        with graph.inserting_before(m.node):
            if emit is None:
                new = graph.create_node("call_module", m.name, args, kwargs, name=node_name)
            else:
                new = emit(graph, m, layer, args, kwargs, node_name)
        new.meta = {k: v for k, v in m.node.meta.items() if k != "fxanalog_match"}
        new.meta["fxanalog_layer"] = prefix + m.name
        m.node.replace_all_uses_with(new)
        replaced[m.node] = new
        for old in reversed(m.erase):
            if getattr(old, "_erased", False) or (old is not m.node and old.users):
                continue
            inputs = list(old.all_input_nodes)
            graph.erase_node(old)
            for n in inputs:
                if n is not new and not n.users:
                    _erase_unused(n)
    gm.delete_all_unused_submodules()
    gm.recompile()
    return records

