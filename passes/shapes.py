"""The shapes pass (when ``example_inputs`` are given): run the graph once on
the example inputs and annotate every node with the shape and dtype of its
output.

``annotate_shapes(ctx, unit)`` (the pass: the unit's example inputs, if
any), ``annotate(gm, example_inputs) -> gm`` (any GraphModule).

Sets ``node.meta[META_SHAPE]`` to a list of ints for tensor outputs (a list
of such lists for tuples of tensors, None otherwise) and
``node.meta[META_DTYPE]``. Runs under ``torch.no_grad()``; the graph is not
changed, nor are the modules' attributes and buffers (``preserve``).
When the model rejects the inputs the error is a ``ValueError``
that names the node and module that failed and carries the model's message.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx

from .context import META_DTYPE, META_SHAPE, SKIPPED, CompileContext
from .preserve import preserved
from .trace import GraphUnit

__all__ = ["annotate_shapes", "annotate", "shape_of"]


def shape_of(value: Any):
    if isinstance(value, torch.Tensor):
        return [int(s) for s in value.shape]
    if isinstance(value, (tuple, list)) and any(isinstance(v, torch.Tensor) for v in value):
        return [shape_of(v) for v in value]
    return None


class _ShapeInterpreter(fx.Interpreter):
    def run_node(self, n: fx.Node) -> Any:
        try:
            out = super().run_node(n)
        except Exception as exc:
            where = f"module '{n.target}'" if n.op == "call_module" else f"{n.op} {getattr(n.target, '__name__', n.target)}"
            raise ValueError(f"example_inputs: the model failed at node '{n.name}' ({where}): "
                             f"{type(exc).__name__}: {exc}") from exc
        n.meta[META_SHAPE] = shape_of(out)
        if isinstance(out, torch.Tensor):
            n.meta[META_DTYPE] = str(out.dtype).replace("torch.", "")
        return out


def annotate_shapes(ctx: CompileContext, unit: GraphUnit):
    """The pass: shapes of the unit's graph from its example inputs."""
    if unit.example_inputs is None:
        return SKIPPED
    annotate(unit.root, unit.example_inputs)


def annotate(gm: fx.GraphModule, example_inputs) -> fx.GraphModule:
    """See the module docstring."""
    if example_inputs is None:
        return gm
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    if not isinstance(example_inputs, (tuple, list)):
        raise TypeError(f"example_inputs: expected a tensor or a tuple of inputs, got {type(example_inputs).__name__}")
    # In eval mode, so that BatchNorm running statistics of the (possibly
    # shared) modules are not updated by this run.
    # The attributes and buffers a forward sets (a cache, a buffer filled on
    # the first call) are put back afterwards: the modules may be the user's.
    with preserved(gm, values=True):
        gm.eval()
        with torch.no_grad():
            _ShapeInterpreter(gm).run(*example_inputs)
    return gm
