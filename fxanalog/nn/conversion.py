"""The seed's conversion API (``aihwkit.nn.conversion``), on the compiler.

Porting from aihwkit is a change of import::

    from fxanalog.nn.conversion import convert_to_analog, convert_to_analog_mapped

``convert_to_analog`` puts each layer on one tile whatever its size;
``convert_to_analog_mapped`` splits layers into tiles of the mapping's
``max_input_size`` x ``max_output_size``. Both go through
``fxanalog.compile``, so they also find what aihwkit's module swap misses
(subclasses of ``nn.Linear``, functional ``F.linear`` and ``x @ W``,
``nn.MultiheadAttention``'s projections, HuggingFace's ``Conv1D``).
"""

from __future__ import annotations

import copy
from typing import Callable, Optional

import torch
from torch import nn

from torch.fx import GraphModule

from fxanalog.compiler import copy_model
from fxanalog.compiler import compile
from fxanalog.model import ADDED_KEY, GRAPH_KEY, as_users_class, clear_layer_records, digital_class, layer_records, \
    set_layer_records
from fxanalog.passes.trace import set_submodule, shallow_copy
from fxanalog.nn.attention import AnalogMultiheadAttention
from fxanalog.nn.modules import AnalogLayerBase
from fxanalog.summary import analog_summary

__all__ = ["convert_to_analog", "convert_to_analog_mapped", "convert_to_digital"]


def _shallow_tree(module: nn.Module) -> nn.Module:
    """A new module tree around the same tensors: every module a shallow
    copy (``passes.trace.shallow_copy``), a module held twice copied once."""
    copies: dict = {}

    def visit(m: nn.Module) -> nn.Module:
        if id(m) not in copies:
            new = copies[id(m)] = shallow_copy(m)
            for name, child in list(m.named_children()):
                set_submodule(new, name, visit(child))
        return copies[id(m)]

    return visit(module)


def _device_of(module: nn.Module) -> Optional[torch.device]:
    devices = {p.device for p in module.parameters()} | {b.device for b in module.buffers()}
    return devices.pop() if len(devices) == 1 else None


def _convert(module, rpu_config, realistic_read_write, conversion_map, specific_rpu_config_fun, exclude_modules,
             inplace, verbose, mapped: bool, who: str, example_inputs=None):
    if not isinstance(module, nn.Module):
        raise TypeError(f"{who}: module: expected a torch.nn.Module, got {type(module).__name__}")
    if rpu_config is None:
        raise TypeError(f"{who}: rpu_config is required (e.g. fxanalog.InferenceRPUConfig())")
    exclude = () if exclude_modules is None else exclude_modules
    if isinstance(exclude, str):
        exclude = (exclude,)
    # The user's own class (as aihwkit's module swap returns it): the compile
    # runs on a model of our own, a copy or a new tree around the user's
    # tensors, which then takes the analog layers and the rewritten forward.
    source = _shallow_tree(module) if inplace else copy_model(module)
    model = compile(source, rpu_config, mapped=mapped, realistic_read_write=realistic_read_write,
                    conversion_map=conversion_map, exclude=tuple(exclude), layer_config=specific_rpu_config_fun,
                    inplace=True, example_inputs=example_inputs)
    if isinstance(model, GraphModule) and not isinstance(module, GraphModule):
        records = layer_records(model)
        model = as_users_class(model, source)
        set_layer_records(model, records)
    device = _device_of(module)
    if device is not None and model is not module:
        model = model.to(device)  # the analog state follows the model's device; a spread model stays
    if verbose:
        print(analog_summary(model))
    return model


def convert_to_analog(module: nn.Module, rpu_config, realistic_read_write: bool = False,
                      conversion_map: Optional[dict] = None, *,
                      specific_rpu_config_fun: Optional[Callable] = None, exclude_modules=None,
                      inplace: bool = False, verbose: bool = False, example_inputs=None) -> nn.Module:
    """Convert every Linear and Conv layer (and the other weight matmuls the
    compiler finds) to analog, one tile per layer.

    Args:
        module: the digital model (deep-copied unless ``inplace=True``).
        rpu_config: the tiles' config.
        realistic_read_write: program the weights with closed-loop writing.
        conversion_map: {module class: analog class with ``from_digital``}.
        specific_rpu_config_fun: ``(name, module, rpu_config) -> rpu_config``.
        exclude_modules: layer names (or patterns) that stay digital.
        inplace: share the model's parameter tensors instead of copying.
        verbose: print the summary of the converted model.
        example_inputs: fxanalog's addition (``fxanalog.compile``'s): inputs
            the model runs on once, to check them and to convert the
            ``F.linear`` calls fx cannot see (wrapped functions, forwards
            with data-dependent control flow).

    Returns:
        A model of the module's own class (see docs/compiler.md, "The seed
        API").
    """
    return _convert(module, rpu_config, realistic_read_write, conversion_map, specific_rpu_config_fun,
                    exclude_modules, inplace, verbose, mapped=False, who="convert_to_analog",
                    example_inputs=example_inputs)


def convert_to_analog_mapped(module: nn.Module, rpu_config, realistic_read_write: bool = False, *,
                             specific_rpu_config_fun: Optional[Callable] = None, exclude_modules=None,
                             inplace: bool = False, verbose: bool = False, example_inputs=None) -> nn.Module:
    """As ``convert_to_analog``, with tile mapping: layers larger than the
    mapping's ``max_input_size`` x ``max_output_size`` are split into tiles."""
    return _convert(module, rpu_config, realistic_read_write, None, specific_rpu_config_fun,
                    exclude_modules, inplace, verbose, mapped=True, who="convert_to_analog_mapped",
                    example_inputs=example_inputs)


def convert_to_digital(module: nn.Module, realistic: bool = False) -> nn.Module:
    """A plain torch model carrying the analog model's current effective
    weights (with ``realistic=True`` as read from the tiles by noisy forward
    passes, ``fxanalog.inference.read_weights``, as a chip would be read out):
    every analog layer is replaced by its ``to_digital()`` module
    (an ``AnalogLinear`` built for a functional matmul becomes an
    ``nn.Linear`` at the same place). The analog model is not modified.
    A weight shared by several analog layers (a tied head) becomes one copy
    per layer, each with the same values."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"convert_to_digital: expected a torch.nn.Module, got {type(module).__name__}")
    model = copy.deepcopy(module)
    targets = [(n, m) for n, m in model.named_modules()
               if isinstance(m, (AnalogLayerBase, AnalogMultiheadAttention))]
    done: list[str] = []
    for name, layer in targets:
        if any(name.startswith(d + ".") for d in done) or not name:
            continue
        digital = layer.to_digital(realistic=realistic)
        parent, _, last = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, last, digital)
        done.append(name)
    clear_layer_records(model)
    if not isinstance(model, torch.fx.GraphModule):
        for name in model.__dict__.pop(ADDED_KEY, []):  # the user's class runs its own forward again
            delattr(model, name)
        model.__dict__.pop(GRAPH_KEY, None)
        model.__class__ = digital_class(type(model))
    return model
