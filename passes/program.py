"""Pass 6 (when ``realistic_read_write=True``), program: write the weights of
every analog layer with closed-loop programming.

``program(model) -> dict[name, {"iterations": int, "error": float}]``

Calls ``fxanalog.inference.realistic_write`` (the inference-physics part of
fxanalog), which programs all tiles of the model at once and leaves the
report of each layer on ``layer.programming_report``; summaries and dumps
show it. The graph is not changed.
"""

from __future__ import annotations

from torch import nn

__all__ = ["program"]


def program(model: nn.Module) -> dict:
    """See the module docstring."""
    from fxanalog.inference import realistic_write

    return realistic_write(model)
