"""Pass 1, trace: a module to a torch.fx GraphModule.

``trace(module, options) -> (GraphModule | None, leaves, reason)``

* Weight-matmul modules (``nn.Linear``/``nn.Conv*`` and subclasses that keep
  their parent's ``forward``, ``nn.MultiheadAttention``, the classes of the
  ``conversion_map``) and weighted modules that stay digital (``nn.LSTM``,
  ``nn.Embedding``, ...) are leaves: they appear as ``call_module`` nodes;
  so are fxanalog's analog layers (a model compiled again keeps them).
  Every other module, ``torch.nn`` containers included
  (``nn.TransformerEncoderLayer``, ``nn.Sequential``), is traced through, so
  the functional matmuls inside are seen.
* When the module cannot be traced as a whole (data-dependent control flow,
  untraceable submodules), each child that cannot be traced on its own
  becomes a leaf as well and tracing is retried; ``leaves`` lists them so the
  driver converts inside them recursively.
* When even that fails (the module's own ``forward`` is untraceable), the
  result is ``None`` and ``reason`` says why: the driver then swaps the
  module's children instead.

The GraphModule shares the module's submodules and parameters (no copy);
node names follow fx's. Nothing of the input module is modified.
"""

from __future__ import annotations

from typing import Optional

from torch import fx, nn

from .layers import CompileOptions

__all__ = ["trace", "AnalogTracer"]


class AnalogTracer(fx.Tracer):
    """fx tracer whose leaves are the weight-matmul modules, the atomic
    ``torch.nn`` modules (no children) and the given untraceable submodules."""

    def __init__(self, options: CompileOptions, leaves: frozenset = frozenset()):
        super().__init__()
        self.options = options
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if module_qualified_name in self.leaves or self.options.is_matmul_leaf(m):
            return True
        if isinstance(m, fx.GraphModule):
            return False
        # Atomic torch.nn modules (ReLU, BatchNorm, LayerNorm, Dropout, ...).
        return m.__module__.startswith("torch.nn") and not any(True for _ in m.children())


def _try_trace(module: nn.Module, options: CompileOptions, leaves: frozenset):
    try:
        return AnalogTracer(options, leaves).trace(module), None
    except Exception as exc:  # fx raises many kinds (TraceError, TypeError, ...)
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0]


def trace(module: nn.Module, options: CompileOptions) -> tuple[Optional[fx.GraphModule], list[str], str]:
    """See the module docstring."""
    from fxanalog.model import AnalogGraphModule

    leaves: frozenset = frozenset()
    graph, reason = _try_trace(module, options, leaves)
    if graph is None:
        tracer = AnalogTracer(options)
        bad = []
        for name, child in module.named_children():
            if tracer.is_leaf_module(child, name):
                continue
            sub, _ = _try_trace(child, options, frozenset())
            if sub is None:
                bad.append(name)
        if bad:
            leaves = frozenset(bad)
            graph, _ = _try_trace(module, options, leaves)
    if graph is None:
        return None, [], reason
    gm = AnalogGraphModule(module, graph, class_name=type(module).__name__)
    gm.training = module.training
    return gm, sorted(leaves), ""
