"""The analog model that ``fxanalog.compile`` returns.

A traced model comes back as an ``AnalogGraphModule``: a
``torch.fx.GraphModule`` whose code calls the analog layers by name, with the
methods below. A model whose own ``forward`` cannot be traced comes back as
a copy of its own class (children swapped) with the same methods mixed in.
Either way it is a plain ``nn.Module``: ``train()``, ``eval()``, ``to()``,
``state_dict()``, ``load_state_dict()`` behave as usual, and the state dict
holds only tensors.

The compile's layer records (``fxanalog.passes.records.LayerRecord``) are
kept on the model: in ``model.meta[RECORDS_KEY]`` for a GraphModule, else
in the instance's ``__dict__`` under the same key (not a module attribute,
so not in the state dict).
"""

from __future__ import annotations

from typing import Iterator

from torch import fx, nn

from fxanalog.inference import drift_analog_weights, program_analog_weights
from fxanalog.tile import AnalogTile
from fxanalog.nn.modules import AnalogLayerBase, named_analog_layers

__all__ = ["AnalogModelMixin", "AnalogGraphModule", "analog_class", "digital_class", "layer_records",
           "set_layer_records", "clear_layer_records", "RECORDS_KEY"]

RECORDS_KEY = "fxanalog_layer_records"


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


_CLASSES: dict[type, type] = {}


def analog_class(cls: type) -> type:
    """The class of ``cls`` with the analog-model methods mixed in (for models
    whose own forward cannot be traced)."""
    if issubclass(cls, AnalogModelMixin):
        return cls
    if cls not in _CLASSES:
        _CLASSES[cls] = type(cls.__name__, (AnalogModelMixin, cls), {"__module__": cls.__module__,
                                                                     "__qualname__": cls.__qualname__})
    return _CLASSES[cls]


def digital_class(cls: type) -> type:
    """Inverse of ``analog_class``."""
    for base, mixed in _CLASSES.items():
        if mixed is cls:
            return base
    return cls
