"""The shapes pass (when ``example_inputs`` are given): run the graph once on
the example inputs and annotate every node with the shape and dtype of its
output.

``annotate_shapes(ctx, unit)`` (the pass: the unit's example inputs, if
any), ``annotate(gm, example_inputs) -> gm`` (any GraphModule).

Sets ``node.meta[META_SHAPE]`` to a list of ints for tensor outputs (a list
of such lists for tuples of tensors, None otherwise) and
``node.meta[META_DTYPE]``; on a call of an opaque function that receives
weights (``passes/opaque.py``), ``node.meta[META_USES]``: the matmuls each
weight was used in while the function ran. Runs under ``torch.no_grad()``; the graph is not
changed, nor are the modules' attributes and buffers (``preserve``).
When the model rejects the inputs the error is a ``ValueError``
that names the node and module that failed and carries the model's message.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx

from .context import META_DTYPE, META_SHAPE, META_USES, SKIPPED, CompileContext
from .opaque import FunctionalUses, is_opaque, opaque_params
from .preserve import preserved
from .rules import get_attr_param
from .trace import GraphUnit

__all__ = ["annotate_shapes", "annotate", "shape_of", "as_args"]


def shape_of(value: Any):
    if isinstance(value, torch.Tensor):
        return [int(s) for s in value.shape]
    if isinstance(value, (tuple, list)) and any(isinstance(v, torch.Tensor) for v in value):
        return [shape_of(v) for v in value]
    return None


class _ShapeInterpreter(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm)
        self.param_of = get_attr_param(gm)

    def run_node(self, n: fx.Node) -> Any:
        try:
            params = opaque_params(n, self.param_of) if is_opaque(n) else []
            if params:  # which weights the opaque function uses in which matmul
                with FunctionalUses([p for _, p, _ in params]) as seen:
                    out = super().run_node(n)
                n.meta[META_USES] = {path: [k for k, _ in seen.uses.get(id(p), [])] for _, p, path in params}
            else:
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


def as_args(example_inputs) -> tuple:
    """``example_inputs`` as the positional arguments of one call: a tensor
    is one input, a tuple or list the inputs; anything else (a dict of
    keyword inputs included) is a ``TypeError``."""
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs)
    hint = " (keyword inputs are not supported: pass the positional inputs as a tuple)" \
        if isinstance(example_inputs, dict) else ""
    raise TypeError(f"example_inputs: expected a tensor or a tuple of positional inputs, got "
                    f"{type(example_inputs).__name__}{hint}")


def annotate(gm: fx.GraphModule, example_inputs) -> fx.GraphModule:
    """See the module docstring."""
    if example_inputs is None:
        return gm
    example_inputs = as_args(example_inputs)
    # In eval mode, so that BatchNorm running statistics of the (possibly
    # shared) modules are not updated by this run.
    # The attributes and buffers a forward sets (a cache, a buffer filled on
    # the first call) are put back afterwards: the modules may be the user's.
    with preserved(gm, values=True):
        gm.eval()
        with torch.no_grad():
            _ShapeInterpreter(gm).run(*example_inputs)
    return gm
