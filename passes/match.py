"""The match pass: find every weight matmul of the graph.

``match(ctx, unit)`` sets ``unit.matches`` (graph order).

Each node is shown to the rule table (``ctx.rules``, see ``rules``): a
``call_module`` of a module a rule matches (the ``conversion_map`` first,
then the registered and built-in rules), or a ``call_function`` /
``call_method`` that a rule's ``match`` accepts (``F.linear``,
``F.conv1d/2d/3d``, ``x @ W``, ``torch.addmm``,
``F.multi_head_attention_forward`` on a parameter of the model, ...).

For each ``Match`` the pass sets

* ``name``: a module keeps its path (``install="replace"``); a functional
  match is named by the unit's strategy (the weight's owner, or
  ``analog_<weight path>``);
* ``converted_by``: ``"fallback-swap"`` for the child-swap strategy;
* ``rpu_config``: ``layer_config(name, module, rpu_config)`` or the config;

and stores it as ``node.meta[META_MATCH]``. Excluded layers
(``options.exclude``) and everything a rule says stays digital (``nn.LSTM``,
``nn.Embedding``, a matmul whose parameter is the left operand, ...) become
digital ``LayerRecord``s in ``ctx.state`` with their reason.

A ``call_function`` of a function of the model's own code that receives
parameters (a ``torch.fx.wrap``ped function, ``passes/opaque.py``) and that
no rule matched: its weights used as ``F.linear`` on the example inputs
become one match (an ``AnalogOpaqueCall`` named ``analog_<function>``), the
others digital records saying why. The same for what the strategy found
outside the graph (``unit.found``: the ``F.linear`` calls of an
untraceable module's own forward, seen on the example inputs). Every other >= 2-D parameter read in the
graph gets a note in ``ctx.state.param_notes`` (the ops using it), which
the record of a parameter left digital shows. The graph itself is not
changed.
"""

from __future__ import annotations

from .context import META_MATCH, META_USES, CompileContext
from .opaque import is_opaque, match_opaque
from .records import LayerRecord
from .rules import Digital, module_weight_shape
from .trace import GraphUnit

__all__ = ["match"]


def match(ctx: CompileContext, unit: GraphUnit) -> None:
    """See the module docstring."""
    options, state, prefix = ctx.options, ctx.state, unit.prefix
    matches, taken = [], set()
    per_node = []
    for node in list(unit.graph.nodes):
        found = ctx.rules.match(node, unit.root, unit.param_of)
        if found is None and is_opaque(node):
            per_node.append(match_opaque(node, unit.param_of, node.meta.get(META_USES)))
        elif found is not None:
            per_node.append([found])
    for found_all in per_node + [unit.found]:
        for found in found_all:
            if isinstance(found, Digital):
                name = prefix + found.path
                state.names_seen.append(name)
                state.add_record(LayerRecord.digital(name, found.kind, found.reason, name, found.shape))
                continue
            m = found
            if m.module is not None:
                m.name, m.install = m.node.target, "replace"
                m.converted_by = unit.strategy.module_converted_by or m.converted_by
            elif m.rule.name == "opaque function":
                _name_opaque(unit, m, taken)
            else:
                unit.strategy.name_layer(unit, m, taken)
            taken.add(m.name)
            full = prefix + m.name
            pat = state.excluded_by(options, full, prefix + m.source)
            if pat is not None:
                shape = m.weight.shape if m.weight is not None else module_weight_shape(m.module)
                state.add_record(LayerRecord.digital(full, m.kind, f"excluded by {pat!r}", prefix + m.source, shape))
                continue
            m.rpu_config = options.config_for(full, m.module if m.module is not None else unit.owner_module(m.source))
            m.node.meta[META_MATCH] = m
            matches.append(m)
    unit.matches = matches
    _note_other_uses(ctx, unit)


def _name_opaque(unit: GraphUnit, m, taken: set) -> None:
    """An opaque call's layer: a new ``analog_<function>`` submodule."""
    base = "analog_" + m.kind.replace(".", "_").replace("<", "").replace(">", "")
    name, k = base, 1
    while name in taken or hasattr(unit.root, name):
        name, k = f"{base}_{k}", k + 1
    m.name, m.install = name, "add"


def _note_other_uses(ctx: CompileContext, unit: GraphUnit) -> None:
    """Why a >= 2-D parameter read in the graph is not a matmul weight: the
    ops that use it (``ctx.state.param_notes``, for the records of the
    parameters no layer converted; see ``fxanalog.compiler``)."""
    for node in unit.graph.nodes:
        found = unit.param_of(node) if node.op in ("get_attr", "placeholder") else None
        if found is None or found[0].dim() < 2:
            continue
        ops = sorted({getattr(u.target, "__name__", str(u.target)) for u in node.users})
        path = unit.prefix + found[1]
        ctx.state.param_notes.setdefault(
            path, f"not a matmul weight fxanalog can see (used by {', '.join(ops) or 'nothing'})")
