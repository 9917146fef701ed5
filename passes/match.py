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
digital ``LayerRecord``s in ``ctx.state`` with their reason. The graph
itself is not changed.
"""

from __future__ import annotations

from .context import META_MATCH, CompileContext
from .records import LayerRecord
from .rules import Digital, module_weight_shape
from .trace import GraphUnit

__all__ = ["match"]


def match(ctx: CompileContext, unit: GraphUnit) -> None:
    """See the module docstring."""
    options, state, prefix = ctx.options, ctx.state, unit.prefix
    matches, taken = [], set()
    for node in list(unit.graph.nodes):
        found = ctx.rules.match(node, unit.root, unit.param_of)
        if found is None:
            continue
        if isinstance(found, Digital):
            name = prefix + found.path
            state.names_seen.append(name)
            state.add_record(LayerRecord.digital(name, found.kind, found.reason, name, found.shape))
            continue
        m = found
        if m.module is not None:
            m.name, m.install = node.target, "replace"
            m.converted_by = unit.strategy.module_converted_by or m.converted_by
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
