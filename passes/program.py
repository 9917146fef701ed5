"""The program pass (when ``realistic_read_write=True``): write the weights
of every analog layer of the compiled model with closed-loop programming.

``program(ctx, model) -> dict[name, {"iterations": int, "error": float}]``

Calls ``fxanalog.inference.realistic_write`` (the inference-physics part of
fxanalog), which programs all tiles of the model at once and leaves the
report of each layer on ``layer.tile.programming_report``; summaries and dumps
show it. The graph is not changed. It runs once, on the whole model, after
the graph passes.
"""

from __future__ import annotations

from torch import nn

from fxanalog.inference import realistic_write

from .context import CompileContext

__all__ = ["program"]


def program(ctx: CompileContext, model: nn.Module) -> dict:
    """See the module docstring."""
    return realistic_write(model)
