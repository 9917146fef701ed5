"""The analog model that ``fxanalog.compile`` returns.

A traced model comes back as an ``AnalogGraphModule``: a
``torch.fx.GraphModule`` whose code calls the analog layers by name, with the
methods below. A model whose own ``forward`` cannot be traced comes back as
a copy of its own class (children swapped) with the same methods mixed in.
Either way it is a plain ``nn.Module``: ``train()``, ``eval()``, ``to()``,
``state_dict()``, ``load_state_dict()`` behave as usual, and the state dict
holds only tensors.

Saving the whole object: ``torch.save(model)`` / ``pickle`` round-trip, and
``torch.load(..., weights_only=False)`` in a fresh process gives the same
class with the same state and records. An ``AnalogGraphModule`` is saved as
fx saves a ``GraphModule`` (its generated code, retraced on load with every
submodule kept whole); a model of the user's class is saved by reference to
that class, which the loading process must be able to import: a class
defined in ``__main__`` or inside a function is refused at save time with
an error saying so (save the ``state_dict`` instead).

The compile's layer records (``fxanalog.passes.records.LayerRecord``) are
kept on the model: in ``model.meta[RECORDS_KEY]`` for a GraphModule, else
in the instance's ``__dict__`` under the same key (not a module attribute,
so not in the state dict).
"""

from __future__ import annotations

import copy
import pickle
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.overrides import TorchFunctionMode

from fxanalog.inference import drift_analog_weights, program_analog_weights
from fxanalog.tile import AnalogTile
from fxanalog.nn.modules import AnalogLayerBase, named_analog_layers

__all__ = ["AnalogModelMixin", "AnalogGraphModule", "analog_class", "digital_class", "layer_records",
           "set_layer_records", "clear_layer_records", "check_importable", "set_forward_calls", "AnalogCalls",
           "as_users_class", "converted_class", "GRAPH_KEY", "ADDED_KEY",
           "RECORDS_KEY", "CALLS_KEY", "LINEAR_FUNCTIONS"]

RECORDS_KEY = "fxanalog_layer_records"
LINEAR_FUNCTIONS = (F.linear, torch._C._nn.linear)
CALLS_KEY = "fxanalog_forward_calls"


def set_forward_calls(module: nn.Module, calls: dict) -> None:
    """Route the ``F.linear`` calls of ``module``'s own forward on the given
    weights to analog layers: ``calls`` is {weight path: layer path}, both
    relative to ``module``. The module gets the analog-model class
    (``analog_class``), whose ``forward`` runs the module's own under
    ``fxanalog.passes.opaque.AnalogCalls``. Kept in the instance's
    ``__dict__`` (plain data: saved with the model, not in its state dict)."""
    if not isinstance(module, AnalogModelMixin):
        module.__class__ = analog_class(type(module))
    module.__dict__[CALLS_KEY] = dict(calls)


class AnalogCalls(TorchFunctionMode):
    """Sends ``F.linear(x, W[, b])`` to ``layers[id(W)]`` (``layer(x) + b``)."""

    def __init__(self, layers: dict):
        super().__init__()
        self.layers = layers

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in LINEAR_FUNCTIONS:
            x = args[0] if args else kwargs["input"]
            w = args[1] if len(args) > 1 else kwargs.get("weight")
            layer = self.layers.get(id(w))
            if layer is not None:
                b = args[2] if len(args) > 2 else kwargs.get("bias")
                y = layer(x)
                return y if b is None else y + b
        return func(*args, **kwargs)


def _forward_with_calls(cls: type):
    """The ``forward`` of ``analog_class(cls)``: ``cls.forward``, under
    ``AnalogCalls`` when the instance has forward calls."""
    inner = cls.forward

    def forward(self, *args, **kwargs):
        calls = self.__dict__.get(CALLS_KEY)
        if not calls:
            return inner(self, *args, **kwargs)
        layers = {id(self.get_parameter(w)): self.get_submodule(layer) for w, layer in calls.items()}
        with AnalogCalls(layers):
            return inner(self, *args, **kwargs)

    forward.__doc__ = inner.__doc__
    return forward


def layer_records(model: nn.Module) -> list:
    """The layer records of a compiled model (an empty list for a model
    fxanalog did not compile)."""
    store = model.meta if isinstance(model, fx.GraphModule) else model.__dict__
    return list(store.get(RECORDS_KEY, []))


def set_layer_records(model: nn.Module, records: list) -> None:
    store = model.meta if isinstance(model, fx.GraphModule) else model.__dict__
    store[RECORDS_KEY] = list(records)


def clear_layer_records(model: nn.Module) -> None:
    store = model.meta if isinstance(model, fx.GraphModule) else model.__dict__
    store.pop(RECORDS_KEY, None)


class AnalogModelMixin:
    """Methods of every analog model returned by ``fxanalog.compile``."""

    def named_analog_layers(self) -> list[tuple[str, AnalogLayerBase]]:
        """``(name, layer)`` of the analog layers (``AnalogLayerBase``; an
        attention's projections are layers of their own), in module order."""
        return named_analog_layers(self)

    def analog_layers(self) -> Iterator[AnalogLayerBase]:
        """The analog layers, in module order."""
        return (layer for _, layer in named_analog_layers(self))

    def analog_tiles(self) -> Iterator[AnalogTile]:
        """The tile objects (``AnalogTile``) of the analog layers, in module
        order, as aihwkit's ``analog_tiles()``."""
        return (layer.tile for _, layer in named_analog_layers(self))

    def layer_records(self) -> list:
        """How each weighted layer was converted (or why it stayed digital):
        the ``LayerRecord``s of the compile, in module order."""
        return layer_records(self)

    def program_analog_weights(self) -> None:
        """Program the weights onto the tiles (programming noise), as aihwkit's
        ``program_analog_weights``."""
        return program_analog_weights(self)

    def drift_analog_weights(self, t_inference: float = 0.0) -> None:
        """Drift the programmed weights to ``t_inference`` seconds after
        programming (with read noise and drift compensation)."""
        return drift_analog_weights(self, t_inference)


class AnalogGraphModule(AnalogModelMixin, fx.GraphModule):
    """A traced analog model: its ``.code`` shows the analog layers by name."""

    def __reduce__(self):
        """Pickled as fx pickles a ``GraphModule`` (the code, retraced when
        loaded; see the module docstring), coming back as an
        ``AnalogGraphModule`` of the same name with its layer records."""
        check_importable(self, "saving")
        _, (body, import_block) = super().__reduce__()
        body = dict(body)
        meta = body.pop("meta", {})
        # The tracer that made the graph needs the compile's rules; the code
        # is retraced with every submodule as a leaf, which any tracer does.
        body["_tracer_cls"] = None
        return _rebuild_graph_module, (body, import_block, meta, type(self).__name__)


def _rebuild_graph_module(body: dict, import_block: str, meta: dict, class_name: str) -> AnalogGraphModule:
    gm = fx.graph_module.reduce_graph_module(body, import_block)  # a GraphModule with every attribute
    out = AnalogGraphModule.__new__(AnalogGraphModule)  # fx makes one class per instance
    out.__setstate__(gm.__getstate__())
    type(out).__name__ = class_name
    out.recompile()
    out.meta.update(meta)
    return out


def _unimportable(cls: type) -> str:
    """Why a fresh process could not import ``cls`` by its name ("" if it can)."""
    if cls.__module__ == "__main__":
        return "is defined in __main__ (the script that made it)"
    if "<locals>" in cls.__qualname__:
        return "is defined inside a function"
    return ""


def check_importable(model: nn.Module, what: str) -> None:
    """``pickle.PicklingError`` naming the first module of ``model`` whose
    class a fresh process could not import (the class of a model whose
    forward could not be traced, or of an untraceable child kept whole)."""
    for name, module in model.named_modules():
        if isinstance(module, fx.GraphModule):
            continue  # saved as code: its class is not needed
        cls = digital_class(type(module))
        why = _unimportable(cls)
        if why:
            where = f"module {name!r}" if name else "the model"
            raise pickle.PicklingError(
                f"{what} the analog model: the class {cls.__qualname__} of {where} {why}, so a fresh process "
                f"could not load it. Define the class in an importable module, or save model.state_dict() "
                f"and load it into a model compiled again.")


_CLASSES: dict[type, type] = {}


def analog_class(cls: type) -> type:
    """The class of ``cls`` with the analog-model methods mixed in (for models
    whose own forward cannot be traced)."""
    if issubclass(cls, AnalogModelMixin):
        return cls
    if cls not in _CLASSES:
        namespace = {"__module__": cls.__module__, "__qualname__": cls.__qualname__,
                     "__reduce_ex__": _reduce_swapped, "forward": _forward_with_calls(cls)}
        # copy.copy / copy.deepcopy go through __reduce_ex__ unless these are
        # defined: keep them working in-process for any class (no import check).
        if getattr(cls, "__copy__", None) is None:
            namespace["__copy__"] = _copy_swapped
        if getattr(cls, "__deepcopy__", None) is None:
            namespace["__deepcopy__"] = _deepcopy_swapped
        _CLASSES[cls] = type(cls.__name__, (AnalogModelMixin, cls), namespace)
    return _CLASSES[cls]


def _reduce_swapped(self, protocol):
    """Pickling a model of ``analog_class(cls)``: by reference to ``cls``
    (the mixed class has no importable name of its own) and the state."""
    check_importable(self, "saving")
    return _new_swapped, (digital_class(type(self)),), self.__getstate__()


def _new_swapped(cls: type) -> nn.Module:
    mixed = analog_class(cls)
    return mixed.__new__(mixed)


def _copy_swapped(self):
    new = _new_swapped(digital_class(type(self)))
    new.__setstate__(self.__getstate__())
    return new


def _deepcopy_swapped(self, memo):
    new = _new_swapped(digital_class(type(self)))
    memo[id(self)] = new
    new.__setstate__(copy.deepcopy(self.__getstate__(), memo))
    return new


# -- the seed API's result: the user's own class ------------------------------------

GRAPH_KEY = "fxanalog_graph"  # in a converted model's __dict__: the AnalogGraphModule it runs
ADDED_KEY = "fxanalog_added"  # the submodules conversion added (analog_<weight>, ...)


def as_users_class(gm: fx.GraphModule, source: nn.Module) -> nn.Module:
    """The traced analog model ``gm`` as a model of ``source``'s own class
    (``convert_to_analog``): ``source`` itself (a model no one else holds),
    whose submodules at ``gm``'s paths become ``gm``'s (the analog layers at
    the digital layers' paths, new ``analog_<weight>`` layers added), and
    whose class becomes a subclass of its own (``converted_class``) whose
    ``forward`` is ``gm``'s code. ``isinstance``, methods, attributes such as
    ``config``, ``model[0]`` and the state-dict keys are the user's."""
    have = {name for name, _ in source.named_modules()}
    added = []
    for name, module in gm.named_children():
        if name not in have:
            added.append(name)
    targets = [n.target for n in gm.graph.nodes if n.op in ("call_module", "get_attr")]
    for target in dict.fromkeys(targets):
        value = _resolve(gm, target)
        parent_path, _, last = target.rpartition(".")
        parent = source.get_submodule(parent_path) if parent_path else source
        if isinstance(value, nn.Module) or not hasattr(parent, last) or _resolve(source, target) is not value:
            if isinstance(value, nn.Parameter) or isinstance(value, nn.Module):
                setattr(parent, last, value)
            elif last in vars(parent).get("_buffers", {}):
                parent.register_buffer(last, value)
            else:
                parent.__dict__[last] = value  # a constant the tracer made (_tensor_constant0)
    for name in added:  # analog layers the graph does not name (inside a leaf) come along
        if not hasattr(source, name):
            setattr(source, name, gm.get_submodule(name))
    source.__dict__[GRAPH_KEY] = gm
    source.__dict__[ADDED_KEY] = added
    source.__class__ = converted_class(type(source), gm)
    return source


def _resolve(root, target: str):
    obj = root
    for part in target.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def converted_class(cls: type, gm: fx.GraphModule) -> type:
    """A subclass of ``cls`` (and of ``AnalogModelMixin``) whose ``forward``
    is ``gm``'s generated code; one class per model, as fx makes one per
    GraphModule. Pickled by reference to ``cls`` (see ``_reduce_converted``)."""
    namespace = {"__module__": cls.__module__, "__qualname__": cls.__qualname__, "forward": type(gm).forward,
                 "__reduce_ex__": _reduce_converted, "__copy__": _copy_converted,
                 "__deepcopy__": _deepcopy_converted, "fxanalog_base": cls}
    return type(cls.__name__, (AnalogModelMixin, cls), namespace)


def _reduce_converted(self, protocol):
    check_importable(self, "saving")
    return _new_converted, (type(self).fxanalog_base,), self.__getstate__()


def _new_converted(cls: type) -> nn.Module:
    return _Converting(cls)


class _Converting:
    """Unpickling a converted model: the object is made of ``cls`` and gets
    its converted class once its state (which holds its graph) is set."""

    def __new__(cls, base: type):
        obj = base.__new__(base)
        obj.__class__ = _pending_class(base)
        return obj


_PENDING: dict = {}


def _pending_class(base: type) -> type:
    if base not in _PENDING:
        def __setstate__(self, state):
            base.__setstate__(self, state) if "__setstate__" in vars(base) else nn.Module.__setstate__(self, state)
            self.__class__ = converted_class(base, self.__dict__[GRAPH_KEY])

        _PENDING[base] = type(base.__name__, (base,), {"__setstate__": __setstate__,
                                                        "__module__": base.__module__,
                                                        "__qualname__": base.__qualname__})
    return _PENDING[base]


def _copy_converted(self):
    new = _Converting(type(self).fxanalog_base)
    new.__setstate__(self.__getstate__())
    return new


def _deepcopy_converted(self, memo):
    new = _Converting(type(self).fxanalog_base)
    memo[id(self)] = new
    new.__setstate__(copy.deepcopy(self.__getstate__(), memo))
    return new


def digital_class(cls: type) -> type:
    """Inverse of ``analog_class`` and ``converted_class``."""
    if "fxanalog_base" in vars(cls):
        return cls.fxanalog_base
    for base, mixed in _CLASSES.items():
        if mixed is cls:
            return base
    return cls
