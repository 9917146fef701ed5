"""The compiler passes, in the order ``fxanalog.compile`` runs them.

Each pass is one function with one job; its module docstring states the
contract. ``fxanalog.compiler`` is the driver that lists them.

1. ``trace``            module -> GraphModule (untraceable parts as leaves)
2. ``annotate_shapes``  shapes and dtypes on nodes (with example inputs)
3. ``match``            every weight matmul, excluded and digital layers
4. ``map_tiles``        each layer's tile array from its config
5. ``rewrite``          matched nodes -> analog tile layers
6. ``program``          realistic writing of the weights (when asked)
"""

from .layers import CompileOptions
from .map_tiles import map_tiles, plan_records
from .match import Match, match
from .program import program
from .rewrite import rewrite
from .shapes import annotate_shapes
from .trace import trace

__all__ = ["CompileOptions", "Match", "trace", "annotate_shapes", "match", "map_tiles", "plan_records",
           "rewrite", "program"]
