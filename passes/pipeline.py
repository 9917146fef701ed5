"""The pipeline: the passes in order, and the driver that runs them.

Every strategy runs the same list::

    trace (strategy) -> leaves -> shapes -> match -> map -> rewrite

and ``fxanalog.compile`` runs ``program`` on the whole model at the end
when ``realistic_read_write=True``. ``convert`` is the driver of
``fxanalog.compile`` and ``explain``: fx tracing, or the child swap when
the module's own ``forward`` cannot be traced; the torch.compile backend
makes its unit from dynamo's graph and calls ``run``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from .context import SKIPPED, CompileContext
from .map_tiles import map_tiles
from .match import match
from .rewrite import rewrite
from .shapes import annotate_shapes
from .trace import CHILD_SWAP, FX_TRACE, GraphUnit, set_submodule

__all__ = ["Pass", "PASSES", "run", "trace", "convert", "convert_leaves"]


@dataclass(frozen=True)
class Pass:
    """A pass: ``run(ctx, unit)`` returns ``SKIPPED`` when it had nothing to
    do; ``dumped``: its result is written with ``FXANALOG_DUMP_DIR``."""

    name: str
    run: Callable
    dumped: bool = True


def trace(ctx: CompileContext, module: nn.Module, prefix: str = "", example_inputs=None) -> GraphUnit:
    """The trace step of ``fxanalog.compile``: fx tracing, or the child swap
    when the module's own ``forward`` cannot be traced."""
    return FX_TRACE.trace(ctx, module, prefix, example_inputs) or CHILD_SWAP.trace(ctx, module, prefix)


def convert(ctx: CompileContext, module: nn.Module, prefix: str = "", example_inputs=None) -> GraphUnit:
    """The pipeline on one module; ``unit.result`` is the converted module
    (the module itself when nothing changed)."""
    return run(ctx, trace(ctx, module, prefix, example_inputs))


def convert_leaves(ctx: CompileContext, unit: GraphUnit):
    """The leaves pass: the pipeline on each untraceable child, whose
    result replaces it in ``unit.root``."""
    if not unit.leaves:
        return SKIPPED
    for name in unit.leaves:
        sub = convert(ctx, unit.root.get_submodule(name), f"{unit.prefix}{name}.")
        if sub.changed:
            set_submodule(unit.root, name, sub.result)
            unit.changed = True


PASSES: tuple = (
    Pass("leaves", convert_leaves, dumped=False),
    Pass("shapes", annotate_shapes, dumped=False),
    Pass("match", match),
    Pass("map", map_tiles),
    Pass("rewrite", rewrite),
)


def run(ctx: CompileContext, unit: GraphUnit) -> GraphUnit:
    """Run ``PASSES`` on a traced unit."""
    ctx.dump(unit, "trace")
    for p in PASSES:
        if p.run(ctx, unit) is not SKIPPED and p.dumped:
            ctx.dump(unit, p.name)
    return unit
