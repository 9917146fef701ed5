"""``fxanalog.compile`` and ``fxanalog.explain``: the driver of the passes.

The pipeline, in order (each pass documented in ``fxanalog.passes``)::

    trace -> [convert untraceable leaves recursively] -> annotate_shapes
          -> match -> map_tiles -> rewrite -> program (realistic_read_write)

A module whose own ``forward`` cannot be traced is converted by swapping
its children instead (``"fallback-swap"``), each child converted by the
same pipeline.
"""

from __future__ import annotations

import copy
import warnings
from typing import Callable, Optional

from torch import nn

from fxanalog import passes
from fxanalog.dump import StageDumper
from fxanalog.model import analog_class, set_layer_records
from fxanalog.passes.layers import CompileOptions, builtin_class_for, digital_reason, record
from fxanalog.passes.map_tiles import _plan
from fxanalog.passes.match import Match
from fxanalog.passes.rewrite import build_layer, layer_records, set_submodule

__all__ = ["compile", "explain"]


def compile(
    model: nn.Module,
    rpu_config=None,
    *,
    example_inputs=None,
    mapped: bool = True,
    realistic_read_write: bool = False,
    conversion_map: Optional[dict] = None,
    exclude=(),
    layer_config: Optional[Callable] = None,
    inplace: bool = False,
) -> nn.Module:
    """Compile a torch model to an analog model.

    Args:
        model: any ``nn.Module``.
        rpu_config: the tiles' config (``InferenceRPUConfig()`` when None).
        example_inputs: a tensor or tuple of inputs: checks that the model
            accepts them and annotates the graph with shapes.
        mapped: split layers into tiles of ``mapping.max_input_size`` x
            ``max_output_size`` (False: one tile per layer).
        realistic_read_write: program the weights with closed-loop writing.
        conversion_map: {module class: analog class with ``from_digital``};
            takes precedence over the built-in rules.
        exclude: layer names or fnmatch patterns that stay digital.
        layer_config: ``(name, module, rpu_config) -> rpu_config`` per layer.
        inplace: share the model's parameter tensors (no weight copied; the
            model's own modules are never modified either). False: work on
            a deep copy.

    Returns:
        The analog model (an ``AnalogGraphModule``, or the model's own class
        with the analog methods when its forward cannot be traced). A model
        without any convertible layer comes back unchanged, with a warning.
    """
    opts = _options(model, rpu_config, mapped, conversion_map, exclude, layer_config, dry_run=False)
    dumper = StageDumper.from_env(type(model).__name__)
    source = model if inplace else copy.deepcopy(model)
    result, changed = _convert(source, opts, "", example_inputs, dumper)
    opts.check_excludes()
    if not changed:
        warnings.warn(f"fxanalog.compile: {type(model).__name__} has no layer to convert; "
                      "it is returned unchanged", stacklevel=2)
        return model
    if not hasattr(result, "analog_tiles"):
        result.__class__ = analog_class(type(result))
    set_layer_records(result, _in_model_order(opts.records, model))
    if realistic_read_write:
        passes.program(result)
    dumper.stage("program" if realistic_read_write else "final", result)
    return result


def explain(model: nn.Module, rpu_config=None, example_inputs=None, **kwargs):
    """A dry run of ``compile``: what would be converted, how, on which tiles,
    and what would stay digital and why. Nothing is converted or copied.

    Returns a report whose ``str()`` is the table; ``.rows`` and ``.totals``
    as ``analog_summary``. Keyword arguments as ``compile`` (``mapped``,
    ``conversion_map``, ``exclude``, ``layer_config``)."""
    from fxanalog.summary import Report

    unknown = set(kwargs) - {"mapped", "conversion_map", "exclude", "layer_config"}
    if unknown:
        raise TypeError(f"explain: unexpected argument {sorted(unknown)[0]!r}")
    opts = _options(model, rpu_config, kwargs.get("mapped", True), kwargs.get("conversion_map"),
                    kwargs.get("exclude", ()), kwargs.get("layer_config"), dry_run=True)
    _convert(model, opts, "", example_inputs, StageDumper(None))
    opts.check_excludes()
    return Report.from_records(_in_model_order(opts.records, model),
                               title=f"fxanalog.explain: {type(model).__name__} (dry run)")


def _in_model_order(records: list[dict], model: nn.Module) -> list[dict]:
    """Records sorted by the position of their source (module or parameter
    path) in the model's module order; a record whose source is a parameter
    of the root stays after the record before it (graph order)."""
    order = {name: i for i, (name, _) in enumerate(model.named_modules()) if name}
    keys, last = [], 0
    for rec in records:
        path = rec.get("source") or rec["name"]
        while path not in order and "." in path:
            path = path.rpartition(".")[0]
        last = order.get(path, last)
        keys.append(last)
    return [rec for _, _, rec in sorted(zip(keys, range(len(records)), records), key=lambda t: t[:2])]


def _options(model, rpu_config, mapped, conversion_map, exclude, layer_config, dry_run) -> CompileOptions:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__module__}.{type(model).__name__}")
    return CompileOptions.build(rpu_config, mapped=mapped, conversion_map=conversion_map, exclude=exclude,
                                layer_config=layer_config, dry_run=dry_run)


def _convert(module: nn.Module, opts: CompileOptions, prefix: str, example_inputs, dumper) -> tuple[nn.Module, bool]:
    """The pipeline on one module; returns (converted module, whether anything changed)."""
    gm, leaves, reason = passes.trace(module, opts)
    if gm is None:
        return _fallback(module, opts, prefix, dumper)
    changed = False
    for name in leaves:
        sub, sub_changed = _convert(gm.get_submodule(name), opts, f"{prefix}{name}.", None, dumper)
        if sub_changed:
            set_submodule(gm, name, sub)
            changed = True
    dumper.stage(f"{prefix}trace", gm)
    passes.annotate_shapes(gm, example_inputs)
    matches = passes.match(gm, opts, prefix=prefix)
    dumper.stage(f"{prefix}match", gm)
    passes.map_tiles(gm, matches, opts.mapped)
    dumper.stage(f"{prefix}map", gm)
    if opts.dry_run:
        opts.records += passes.plan_records(matches, prefix)
        return module, False
    if not matches and not changed:
        return module, False
    opts.records += passes.rewrite(gm, matches, opts.mapped, prefix)
    dumper.stage(f"{prefix}rewrite", gm)
    return gm, True


def _shallow_copy(module: nn.Module) -> nn.Module:
    """A copy of the module object sharing its parameters, buffers and
    children, so that children can be swapped without touching the original."""
    new = copy.copy(module)
    for key in ("_modules", "_parameters", "_buffers"):
        new.__dict__[key] = dict(module.__dict__[key])
    return new


def _has_weights(module: nn.Module) -> bool:
    return any(p.dim() >= 2 for p in module.parameters())


def _fallback(module: nn.Module, opts: CompileOptions, prefix: str, dumper) -> tuple[nn.Module, bool]:
    """Swap the children of a module whose forward cannot be traced."""
    new = module if opts.dry_run else _shallow_copy(module)
    changed = False
    for name, child in module.named_children():
        full = prefix + name
        repl = opts.mapped_class(child) or builtin_class_for(child)
        if repl is not None:
            kind = type(child).__name__
            pat = opts.excluded_by(full)
            if pat is not None:
                opts.records.append(record(full, kind, f"digital: excluded by {pat!r}", full, _shape(child)))
                continue
            m = Match(None, name, kind, "fallback-swap", full, repl, module=child)
            m.rpu_config = opts.config_for(full, child)
            if opts.dry_run:
                m.plan = _plan(m, opts.mapped)
                opts.records += passes.plan_records([m], prefix)
                continue
            layer = build_layer(m, opts.mapped)
            opts.records += layer_records(layer, full, kind, "fallback-swap", full)
            setattr(new, name, layer)
            changed = True
        elif digital_reason(child) is not None:
            opts.all_names.append(full)
            opts.records.append(record(full, type(child).__name__, f"digital: {digital_reason(child)}", full,
                                       _shape(child)))
        elif _has_weights(child):
            sub, sub_changed = _convert(child, opts, full + ".", None, dumper)
            if sub_changed:
                setattr(new, name, sub)
                changed = True
    return (new if changed else module), changed


def _shape(module: nn.Module):
    w = getattr(module, "weight", None)
    if w is None:
        w = getattr(module, "weight_ih_l0", None)
    return None if w is None else w.shape
