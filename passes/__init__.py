"""The compiler passes and what they share.

``pipeline.PASSES`` lists the passes in order; every strategy runs them::

    trace (strategy) -> leaves -> shapes -> match -> map -> rewrite  [-> program]

====================  =====================================================
module                contents
====================  =====================================================
``context``           ``CompileOptions`` (frozen), ``CompileState`` (what the
                      passes collect), ``CompileContext``, ``node.meta`` keys
``records``           ``TileMap``, ``TileMapEntry``, ``LayerRecord``
``rules``             ``LayerRule``, ``Match``, ``Digital``, ``RuleTable``,
                      ``register_layer_rule``, helpers for matchers
``rules_builtin``     the rules of Linear, Conv, F.linear, F.conv, matmul,
                      addmm and of the layers that stay digital
``rules_attention``   the rules of ``nn.MultiheadAttention``
``trace``             ``GraphUnit``, ``Strategy``, ``FxTrace``, ``ChildSwap``
``shapes``            the shapes pass (with example inputs)
``match``             the match pass
``map_tiles``         the map pass
``rewrite``           the rewrite pass
``program``           realistic writing of the whole model (when asked)
``preserve``          ``preserved(module)``: traces and example runs leave the
                      modules as they were
``opaque``            the ``F.linear`` calls fx cannot see (wrapped functions,
                      untraceable forwards): found on the example inputs and
                      converted through a ``TorchFunctionMode``
``pipeline``          ``PASSES``, ``run`` and ``convert`` (the driver)
====================  =====================================================

Each module's docstring states its contract. The pass functions are
reached through their modules (``fxanalog.passes.match.match``) or
``PASSES``: the package's attributes ``match``, ``trace``, ... are the
modules.
"""

from . import rules_builtin as _rules_builtin  # noqa: F401  (registers the built-in rules)
from . import rules_attention as _rules_attention  # noqa: F401,I001  (then the attention rules)
from .context import (
    META_DTYPE,
    META_LAYER,
    META_MATCH,
    META_SHAPE,
    META_TILE_MAPS,
    SKIPPED,
    CompileContext,
    CompileOptions,
    CompileState,
)
from .pipeline import PASSES, Pass, convert, run
from .records import CONVERTED_BY, LayerRecord, TileMap, TileMapEntry
from .rules import Digital, LayerRule, Match, RuleTable, register_layer_rule, registered_rules
from .trace import CHILD_SWAP, FX_TRACE, ChildSwap, FxTrace, GraphUnit, Strategy

__all__ = ["CompileOptions", "CompileState", "CompileContext", "META_SHAPE", "META_DTYPE", "META_MATCH",
           "META_TILE_MAPS", "META_LAYER", "SKIPPED", "TileMap", "TileMapEntry", "LayerRecord", "CONVERTED_BY",
           "LayerRule", "Match", "Digital", "RuleTable", "register_layer_rule", "registered_rules", "GraphUnit",
           "Strategy", "FxTrace", "ChildSwap", "FX_TRACE", "CHILD_SWAP", "Pass", "PASSES", "run", "convert"]
