"""The rewrite pass: replace each matched node by a call of its analog layer.

``rewrite(ctx, unit)``

For each match, the unit's strategy builds the analog module (the rule's
``build``: ``from_digital`` of its analog class with the module's own
parameters, or an ``AnalogLinear`` / ``AnalogConvNd`` /
``AnalogMultiheadAttention`` around the weight parameters of a functional
matmul; no weight is copied) and emits the node that calls it. With the fx
and child-swap strategies the layer becomes a submodule of ``unit.root``:
in place of the digital module (same path, so ``state_dict`` keys stay), in
place of the weight's owner (HuggingFace's ``Conv1D``), or as a new
``analog_<weight>`` submodule; the node is one ``call_module`` named
``analog_<layer>`` whose module computes with ``fxanalog::tile_mvm``. The
matched nodes (with a folded bias add) are erased, and transposes and
``get_attr`` nodes left without users. Every other node is unchanged. The
forward hooks and pre-hooks of a replaced module are registered on its
analog layer (``trace.carry_hooks``). A weight used by several matmuls (a
tied output head) stays one Parameter shared by all of its layers.

State-dict keys stay those of the digital model (``keep_digital_keys``): an
``AnalogMultiheadAttention`` lists its projections under
``nn.MultiheadAttention``'s keys (``in_proj_weight``, ``in_proj_bias``,
``q_proj_weight``, ...), and a new ``analog_<weight>`` submodule does not
list the weight and bias the model holds under their own keys (the
GraphModule keeps them as attributes); the analog state (the tile's
buffers) adds keys.

One ``LayerRecord`` per analog tile layer goes to ``ctx.state`` (name, kind,
how converted, source, weight shape, the actual tile map and config). In a
dry run (``explain``) nothing is built: the records come from the map
pass's tile maps.

With ``options.own_weights`` (``fxanalog.compile(inplace=True,
realistic_read_write=True)``) each layer is built around its own copy of
the weights (every parameter of 2 or more dimensions it uses; biases stay
shared), so that writing them never writes into the model's tensors.
"""

from __future__ import annotations

import torch
import torch.nn.utils.prune  # noqa: F401  (torch.nn.utils.prune.BasePruningMethod)
from torch import fx, nn
from torch.nn.utils import parametrize

from fxanalog.nn.attention import AnalogMultiheadAttention
from fxanalog.nn.modules import named_analog_layers

from .context import META_LAYER, META_MATCH, SKIPPED, CompileContext
from .preserve import preserved
from .records import LayerRecord, TileMap
from .rules import Match, transpose_operand
from .trace import GraphUnit, carry_hooks, shallow_copy
from .weight_range import weight_range_of_layer, weight_range_of_weight

__all__ = ["rewrite", "layer_records", "dry_run_records", "own_weights", "keep_digital_keys", "mha_digital_keys",
           "mha_load_digital_keys", "hide_shared_keys", "fill_shared_keys", "check_weight_source",
           "keep_weight_source", "enter_cached", "exit_cached"]


def layer_records(module: nn.Module, name: str, kind: str, converted_by: str, source: str,
                  prefix: str = "", namer=None, sources=None) -> list:
    """Records of the analog tile layers inside ``module`` (itself
    included), which are given their names (``analog_name``). A tile layer
    with a weight of its own (``sources``: {sub-layer path: weight path},
    from the match of an opaque call, an attention or a fused fast path)
    has that weight's path as its source, and ``namer(source)`` as its name
    when a namer is given."""
    out = []
    sources = sources or {}
    for sub, layer in named_analog_layers(module):
        sub = "" if layer is module else sub
        full = name + (f".{sub}" if sub else "")
        src = source
        if sub in sources:
            src = prefix + sources[sub]
            full = namer(src) if namer is not None else full
        layer.analog_name = full
        out.append(LayerRecord(full, kind + (f".{sub}" if sub else ""), converted_by, src, layer.weight.shape,
                               TileMap.of_layer(layer), layer.rpu_config,
                               weight_range=weight_range_of_layer(layer)))
    if not out:
        out.append(LayerRecord(name, kind, converted_by, source))
    return out


def _sources(m: Match) -> dict:
    """{sub-layer path: weight path} of a match whose tile layers have
    weights of different owners (``params["sources"]``), else {}."""
    sources = m.params.get("sources") if isinstance(m.params, dict) else None
    return sources if isinstance(sources, dict) else {}


def dry_run_records(m: Match, prefix: str = "") -> list:
    """Records of a match from its tile maps, as a dry run reports them."""
    name, source = prefix + m.name, prefix + m.source
    if not m.tile_maps:
        return [LayerRecord(name, m.kind, m.converted_by, source, rpu_config=m.rpu_config)]
    sources = {sub: prefix + path for sub, path in _sources(m).items()}
    return [LayerRecord(name + (f".{e.sub}" if e.sub else ""), m.kind + (f".{e.sub}" if e.sub else ""),
                        m.converted_by, sources.get(e.sub, source), e.shape, e.tile_map, m.rpu_config,
                        weight_range=weight_range_of_weight(_entry_weight(m, e.sub), m.rpu_config))
            for e in m.tile_maps]


# The parameters of a fused fast path or functional attention that a tile layer holds.
_PARAM_KEYS = {"in_proj": ("in_proj_weight", "qkv_weight"), "out_proj": ("out_proj_weight", "proj_weight"),
               "linear1": ("ffn_weight_1",), "linear2": ("ffn_weight_2",)}


def _entry_weight(m: Match, sub: str):
    """The digital weight the tile layer ``sub`` of a match will hold (for
    the dry run's weight-range check), or None when not known."""
    if not sub:
        return m.weight if isinstance(m.weight, torch.Tensor) else getattr(m.module, "weight", None)
    params = m.params if isinstance(m.params, dict) else {}
    for key in _PARAM_KEYS.get(sub, ()) + (f"{sub}_weight",):
        if isinstance(params.get(key), torch.Tensor):
            return params[key]
    if m.module is not None:
        own = getattr(m.module, f"{sub}_weight", None)
        if isinstance(own, torch.Tensor):
            return own
        child = getattr(m.module, sub, None)
        return getattr(child, "weight", None) if isinstance(child, nn.Module) else None
    return None


def own_weights(m: Match) -> None:
    """Give the match its own copies of the weights its layer will hold:
    ``m.weight``, the weights in ``m.params``, and for a module match a
    shallow copy of the module (and of its children holding weights) whose
    weights are copies. One weight met twice gets one copy."""
    copies: dict = {}

    def own(p):
        if not isinstance(p, nn.Parameter) or p.dim() < 2:
            return p
        if id(p) not in copies:
            copies[id(p)] = nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad)
        return copies[id(p)]

    def own_module(module: nn.Module) -> nn.Module:
        new = shallow_copy(module)
        for name, p in module.named_parameters(recurse=False):
            setattr(new, name, own(p))
        for name, child in module.named_children():
            if any(p.dim() >= 2 for p in child.parameters()):
                setattr(new, name, own_module(child))
        return new

    def own_any(v):
        if isinstance(v, dict):
            return {k: own_any(x) for k, x in v.items()}
        if isinstance(v, tuple):
            return tuple(own_any(x) for x in v)
        return own(v)

    m.weight = own(m.weight)
    m.params = own_any(m.params)
    if m.module is not None:
        m.module = own_module(m.module)


# -- state dict keys: those of the digital model ------------------------------------

_MHA_KEYS = (("in_proj.weight", "in_proj_weight"), ("in_proj.bias", "in_proj_bias"),
             ("q_proj.weight", "q_proj_weight"), ("k_proj.weight", "k_proj_weight"),
             ("v_proj.weight", "v_proj_weight"))


def mha_digital_keys(module, state_dict, prefix, local_metadata) -> None:
    """State-dict post-hook of an ``AnalogMultiheadAttention``: its projection
    weights under ``nn.MultiheadAttention``'s keys (``in_proj_weight``)."""
    for analog, digital in _MHA_KEYS:
        if prefix + analog in state_dict:
            state_dict[prefix + digital] = state_dict.pop(prefix + analog)


def mha_load_digital_keys(module, state_dict, prefix, local_metadata, strict, missing, unexpected, errors) -> None:
    """Load pre-hook, the inverse of ``mha_digital_keys``."""
    for analog, digital in _MHA_KEYS:
        if prefix + digital in state_dict:
            state_dict[prefix + analog] = state_dict.pop(prefix + digital)


def hide_shared_keys(module, state_dict, prefix, local_metadata) -> None:
    """State-dict post-hook of a layer built around weights the model holds
    under their own keys (a functional matmul's ``analog_<weight>``): its
    ``weight`` and ``bias`` are not listed again (analog state adds keys,
    never repeats or renames them)."""
    for name in ("weight", "bias"):
        state_dict.pop(prefix + name, None)


def fill_shared_keys(module, state_dict, prefix, local_metadata, strict, missing, unexpected, errors) -> None:
    """Load pre-hook, the inverse of ``hide_shared_keys``: the layer's shared
    tensors load from themselves (their values come with the model's own keys)."""
    for name in ("weight", "bias"):
        t = getattr(module, name, None)
        if isinstance(t, torch.Tensor) and prefix + name not in state_dict:
            state_dict[prefix + name] = t.detach()


# -- parametrized and pruned layers ---------------------------------------------------


def _pruning_hooks(module: nn.Module) -> list:
    return [h for h in vars(module).get("_forward_pre_hooks", {}).values()
            if isinstance(h, torch.nn.utils.prune.BasePruningMethod)]


def check_weight_source(module: nn.Module, name: str, realistic_read_write: bool) -> None:
    """``ValueError`` for a parametrized or pruned layer fxanalog cannot keep
    as it is: another tensor than ``weight`` parametrized or pruned, or
    realistic writing (which writes the weight itself)."""
    kind = None
    if parametrize.is_parametrized(module):
        kind, names = "parametrized", list(module.parametrizations.keys())
    elif _pruning_hooks(module):
        kind = "pruned"
        names = sorted({n for h in _pruning_hooks(module) for n in _pruned_names(h)})
    if kind is None:
        return
    if names != ["weight"]:
        raise ValueError(f"layer {name!r} ({type(module).__name__}): {kind} tensors {names}; fxanalog keeps a "
                         f"{kind} weight (the tile sees the computed weight each forward), nothing else: remove "
                         f"the {kind} tensors other than weight before compiling")
    if realistic_read_write:
        source, remedy = (("its originals", "parametrization (parametrize.remove_parametrizations)")
                          if kind == "parametrized" else ("weight_orig and weight_mask", "pruning (prune.remove)"))
        raise ValueError(f"layer {name!r} ({type(module).__name__}): realistic_read_write=True writes the "
                         f"weight itself, which a {kind} layer computes from {source}: remove the {remedy} first, "
                         "or compile without realistic writing")


def _pruned_names(hook) -> list:
    return [vars(hook).get("_tensor_name")]  # the tensor a torch pruning method recomputes


_CACHED: list = []  # the parametrize.cached() contexts of the forwards running


def enter_cached(module, args) -> None:
    """Forward pre-hook of a parametrized analog layer: its parametrized
    weight is computed once in this forward."""
    ctx = parametrize.cached()
    ctx.__enter__()
    _CACHED.append(ctx)


def exit_cached(module, args, output) -> None:
    """Forward hook (always called), the end of ``enter_cached``."""
    _CACHED.pop().__exit__(None, None, None)


def keep_weight_source(module: nn.Module, layer: nn.Module) -> None:
    """A layer made from a parametrized or pruned module computes its weight
    as the module did, each forward: a parametrized ``weight``
    (``weight_norm``, ``spectral_norm``) keeps the module's own
    parametrization (the same ``ParametrizationList``: its originals are
    what trains and what the state dict holds); a pruned one keeps
    ``weight_orig`` and ``weight_mask`` and the pruning pre-hook (carried
    over with the module's hooks) recomputes ``weight``."""
    if parametrize.is_parametrized(module, "weight"):
        plist = module.parametrizations["weight"]
        layer.weight = nn.Parameter(layer.weight.detach().clone())  # a leaf for the parametrization to replace
        parametrize.register_parametrization(layer, "weight", plist[0], unsafe=True)
        layer.parametrizations["weight"] = plist
        # The layer reads its weight more than once per forward: computed once
        # (parametrize.cached), as the digital layer does (spectral_norm's
        # power iteration runs once per forward in training).
        layer.register_forward_pre_hook(enter_cached)
        layer.register_forward_hook(exit_cached, always_call=True)
    elif _pruning_hooks(module):
        del layer.weight
        layer.register_parameter("weight_orig", module.weight_orig)
        layer.register_buffer("weight_mask", module.weight_mask)
        layer.weight = module.weight_orig * module.weight_mask


def keep_digital_keys(layer: nn.Module, m: Match, shared: bool) -> None:
    """Make the layer's state-dict keys those of the digital model:
    ``nn.MultiheadAttention``'s packed keys for an attention, and no repeated
    weight keys for a new submodule around weights the model holds already
    (``shared``: not own copies)."""
    if isinstance(layer, AnalogMultiheadAttention):
        layer.register_state_dict_post_hook(mha_digital_keys)
        layer.register_load_state_dict_pre_hook(mha_load_digital_keys)
    elif m.install == "add" and shared:
        for _, sub in named_analog_layers(layer):
            sub.register_state_dict_post_hook(hide_shared_keys)
            sub.register_load_state_dict_pre_hook(fill_shared_keys)


def _erase(node: fx.Node, erased: set) -> None:
    node.graph.erase_node(node)
    erased.add(node)


def _erase_unused(node: fx.Node, erased: set) -> None:
    """Erase a ``get_attr`` or view node left without users, and the
    inputs it leaves without users in turn."""
    if node in erased or node.users or node.op not in ("get_attr", "call_method", "call_function"):
        return
    inputs = list(node.all_input_nodes)
    _erase(node, erased)
    for n in inputs:
        if n.op == "get_attr" or (n.op in ("call_method", "call_function") and not n.users
                                  and transpose_operand(n) is not None):
            _erase_unused(n, erased)


def rewrite(ctx: CompileContext, unit: GraphUnit):
    """See the module docstring."""
    if ctx.options.dry_run:
        for m in unit.matches:
            for rec in dry_run_records(m, unit.prefix):
                ctx.state.add_record(rec)
        return SKIPPED
    if not unit.matches and not unit.changed:
        return SKIPPED
    graph = unit.graph
    replaced: dict = {}  # earlier rewrites, for arguments the matches captured
    erased: set = set()
    for m in unit.matches:
        if ctx.options.own_weights:
            own_weights(m)
        if m.module is not None:
            check_weight_source(m.module, unit.prefix + m.name, ctx.options.realistic_read_write)
        if m.module is not None and parametrize.is_parametrized(m.module):
            # Reading a parametrized weight in training mode runs its
            # parametrization (spectral_norm's power iteration): put back
            # its state, as if the layer had not been read.
            with preserved(m.module, values=True):
                layer = unit.strategy.build(ctx, unit, m)
        else:
            layer = unit.strategy.build(ctx, unit, m)
        if m.module is not None:
            keep_weight_source(m.module, layer)
            carry_hooks(m.module, layer, unit.prefix + m.name)
        if unit.strategy.name != "dynamo":  # the backend's layers are not in the model
            keep_digital_keys(layer, m, shared=not ctx.options.own_weights)
        layer.train(unit.root.training if m.training is None else m.training)
        for rec in layer_records(layer, unit.prefix + m.name, m.kind, m.converted_by, unit.prefix + m.source,
                                 unit.prefix, unit.strategy.record_name, _sources(m)):
            ctx.state.add_record(rec)
        args, kwargs = fx.node.map_arg((tuple(m.args), dict(m.kwargs)), lambda n: replaced.get(n, n))
        node_name = m.name.replace(".", "_")
        node_name = node_name if node_name.startswith("analog_") else "analog_" + node_name
        with graph.inserting_before(m.node):
            new = unit.strategy.emit(unit, m, layer, args, kwargs, node_name)
        new.meta = {k: v for k, v in m.node.meta.items() if k != META_MATCH}
        new.meta[META_LAYER] = unit.prefix + m.name
        m.node.replace_all_uses_with(new)
        replaced[m.node] = new
        for old in reversed(m.erase):
            if old in erased or (old is not m.node and old.users):
                continue
            inputs = list(old.all_input_nodes)
            _erase(old, erased)
            for n in inputs:
                if n is not new and not n.users:
                    _erase_unused(n, erased)
    unit.strategy.finish(unit)
    unit.changed = True
