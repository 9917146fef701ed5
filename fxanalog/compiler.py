"""``fxanalog.compile`` and ``fxanalog.explain``.

Both run the pipeline of ``fxanalog.passes`` (``passes.pipeline``)::

    trace (fx, or the child swap) -> leaves -> shapes -> match -> map -> rewrite
    [-> program, with realistic_read_write]

on the model, with the options checked once (``CompileOptions``), and keep
the layer records the passes collect, in the model's module order. A new
kind of layer is a rule: ``register_layer_rule`` (``fxanalog.passes.rules``).
"""

from __future__ import annotations

import copy
import warnings
from typing import Callable, Optional

import torch
from torch import nn

from fxanalog.dump import StageDumper
from fxanalog.model import AnalogModelMixin, analog_class, set_layer_records
from fxanalog.nn.attention import AnalogMultiheadAttention
from fxanalog.nn.modules import AnalogLayerBase
from fxanalog.passes.context import CompileContext, CompileOptions
from fxanalog.passes.pipeline import convert
from fxanalog.passes.opaque import example_uses
from fxanalog.passes.preserve import preserved
from fxanalog.passes.shapes import as_args
from fxanalog.passes.trace import set_submodule, shallow_copy
from fxanalog.passes.records import LayerRecord, covered
from fxanalog.passes.program import program
from fxanalog.passes.weight_range import SmallWeightRangeWarning, warn_small_weights
from fxanalog.passes.rules import LayerRule, RuleTable, register_layer_rule
from fxanalog.summary import Report

__all__ = ["compile", "explain", "LayerRule", "register_layer_rule", "SmallWeightRangeWarning"]


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
            model's own modules are never modified either: the analog model
            is a new module tree around the same tensors). With
            ``realistic_read_write`` the written weights are the layers'
            own copies: programming never writes into the model's tensors.
            False: work on a deep copy.

    Returns:
        The analog model (an ``AnalogGraphModule``, or the model's own class
        with the analog methods when its forward cannot be traced). A model
        without any convertible layer comes back unchanged, with a warning.

    Warns ``SmallWeightRangeWarning`` once for each layer whose weights use
    less than half of its tiles' weight range (docs/compiler.md, "Small
    weights on the tiles"); ``explain`` and ``analog_summary`` do the same.
    """
    ctx = _context(model, rpu_config, mapped, conversion_map, exclude, layer_config, dry_run=False,
                   realistic_read_write=realistic_read_write, own_weights=inplace and realistic_read_write,
                   dumper=StageDumper.from_env(type(model).__name__))
    # The user's model is left as it was whatever the passes run (preserve):
    # with inplace=True its modules are the ones traced and run.
    _check_example(ctx, model, example_inputs)
    # The copy too: reading a parametrized weight runs its parametrization
    # (spectral_norm's power iteration), which compiling must not advance.
    with preserved(model, values=inplace):
        source = model if inplace else copy_model(model)
        with preserved(source, values=not inplace):  # in place: the snapshot above has the values
            unit = convert(ctx, source, "", example_inputs)
    ctx.state.check_excludes(ctx.options)
    if not unit.changed:
        warnings.warn(f"fxanalog.compile: {type(model).__name__} has no layer to convert; "
                      "it is returned unchanged", stacklevel=2)
        return model
    result = unit.result
    if inplace:
        _new_module_tree(result, model)
    if not hasattr(result, "analog_tiles"):
        result.__class__ = analog_class(type(result))
    records = _in_model_order(ctx.state.records + _unconverted(ctx, model), model)
    set_layer_records(result, records)
    warn_small_weights(records, stacklevel=2)  # docs/compiler.md, "Small weights on the tiles"
    if ctx.options.realistic_read_write:
        program(ctx, result)
    ctx.dumper.stage("program" if realistic_read_write else "final", result)
    return result


def explain(model: nn.Module, rpu_config=None, example_inputs=None, **kwargs) -> Report:
    """A dry run of ``compile``: what would be converted, how, on which tiles,
    and what would stay digital and why. Nothing is converted or copied.

    Returns a report whose ``str()`` is the table; ``.rows`` and ``.totals``
    as ``analog_summary``. Keyword arguments as ``compile`` (``mapped``,
    ``conversion_map``, ``exclude``, ``layer_config``)."""
    unknown = set(kwargs) - {"mapped", "conversion_map", "exclude", "layer_config"}
    if unknown:
        raise TypeError(f"explain: unexpected argument {sorted(unknown)[0]!r}")
    ctx = _context(model, rpu_config, kwargs.get("mapped", True), kwargs.get("conversion_map"),
                   kwargs.get("exclude", ()), kwargs.get("layer_config"), dry_run=True)
    _check_example(ctx, model, example_inputs)
    with preserved(model, values=True):  # a dry run: nothing of the model changes
        convert(ctx, model, "", example_inputs)
    ctx.state.check_excludes(ctx.options)
    records = _in_model_order(ctx.state.records + _unconverted(ctx, model), model)
    warn_small_weights(records, stacklevel=2)
    return Report.from_records(records, title=f"fxanalog.explain: {type(model).__name__} (dry run)")


def _new_module_tree(result: nn.Module, model: nn.Module) -> None:
    """``inplace=True``: replace every module of the user's model that the
    result still holds (a BatchNorm, a Dropout, an untraceable child kept
    whole) by a shallow copy around the same tensors, so that ``train()``,
    ``eval()``, hooks and swaps on the analog model leave the user's modules
    as they are. A module held at several paths gets one copy. Layers that
    were analog in the model already are kept as they are."""
    users = {id(m) for m in model.modules()}
    copies: dict = {}

    def visit(parent: nn.Module) -> None:
        for name, child in list(parent.named_children()):
            if isinstance(child, AnalogModelMixin) or isinstance(child, (AnalogLayerBase, AnalogMultiheadAttention)):
                continue  # a layer that was analog already is kept as it is (its tiles' state is one)
            if id(child) in users:
                if id(child) not in copies:
                    copies[id(child)] = shallow_copy(child)
                    visit(copies[id(child)])
                set_submodule(parent, name, copies[id(child)])
            elif id(child) not in copies:
                copies[id(child)] = child
                visit(child)

    visit(result)


def _check_example(ctx: CompileContext, model: nn.Module, example_inputs) -> None:
    """With ``example_inputs``: run the model once on them (a clear error when
    it rejects them: a wrong shape, an input too many, a dict), recording
    the functional matmuls of each module's forward, which the child swap
    converts for forwards fx cannot trace (``passes/opaque.py``)."""
    if example_inputs is not None:
        ctx.state.forward_uses = example_uses(model, as_args(example_inputs))


def copy_model(model: nn.Module) -> nn.Module:
    """``copy.deepcopy(model)``; tensors computed in a forward and kept in
    plain attributes (a cache filled on the first call holds tensors with a
    grad history, which ``deepcopy`` refuses) are copied detached."""
    memo: dict = {}
    for module in model.modules():
        for value in vars(module).values():
            items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) \
                else (value,)
            for t in items:
                if isinstance(t, torch.Tensor) and not t.is_leaf and not isinstance(t, nn.Parameter):
                    memo[id(t)] = t.detach().clone()
    return copy.deepcopy(model, memo)


def _context(model, rpu_config, mapped, conversion_map, exclude, layer_config, dry_run,
             realistic_read_write=False, own_weights=False, dumper=None) -> CompileContext:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__module__}.{type(model).__name__}")
    options = CompileOptions.build(rpu_config, mapped=mapped, conversion_map=conversion_map, exclude=exclude,
                                   layer_config=layer_config, dry_run=dry_run,
                                   realistic_read_write=realistic_read_write, own_weights=own_weights)
    return CompileContext(options, RuleTable.for_options(options), dumper=dumper)


def _unconverted(ctx: CompileContext, model: nn.Module) -> list:
    """A digital record for every parameter of 2 or more dimensions that no
    record covers (neither a layer made from it nor a digital layer holding
    it): a weight passed to a function fx cannot see into, read by ops that
    are not matmuls, or used in a forward fx cannot trace. The reason is the
    passes' note on it (``state.param_notes``), else that no matmul on it
    was seen."""
    sources = {r.source for r in ctx.state.records}
    analog = {id(p) for m in model.modules() if ctx.rules.is_analog(m) for p in m.parameters()}
    out = []
    for path, p in model.named_parameters():
        if p.dim() < 2 or id(p) in analog:  # a layer that is analog already is kept as it is
            continue
        if not covered(sources, path):
            why = ctx.state.param_notes.get(path, "no matmul on it was seen (not used, or used where fxanalog "
                                                  "cannot look)")
            out.append(LayerRecord.digital(path, "parameter", why, path, tuple(p.shape)))
    return out


def _in_model_order(records: list, model: nn.Module) -> list:
    """Records sorted by the position of their source (module or parameter
    path) in the model's module order; a record whose source is a parameter
    of the root stays after the record before it (graph order)."""
    order = {name: i for i, (name, _) in enumerate(model.named_modules()) if name}
    keys, last = [], 0
    for rec in records:
        path = rec.source or rec.name
        while path not in order and "." in path:
            path = path.rpartition(".")[0]
        last = order.get(path, last)
        keys.append(last)
    return [rec for _, _, rec in sorted(zip(keys, range(len(records)), records), key=lambda t: t[:2])]
