"""The analog model that ``fxanalog.compile`` returns.

A traced model comes back as an ``AnalogGraphModule``: a
``torch.fx.GraphModule`` whose code calls the analog layers by name, with the
methods below. A model whose own ``forward`` cannot be traced comes back as
a copy of its own class (children swapped) with the same methods mixed in.
Either way it is a plain ``nn.Module``: ``train()``, ``eval()``, ``to()``,
``state_dict()``, ``load_state_dict()`` behave as usual, and the state dict
holds only tensors.
"""

from __future__ import annotations

from typing import Iterator

from torch import fx, nn

from fxanalog.nn.modules import AnalogLayerBase

__all__ = ["AnalogModelMixin", "AnalogGraphModule", "analog_class", "layer_records", "analog_tiles"]


def analog_tiles(model: nn.Module) -> Iterator[tuple[str, AnalogLayerBase]]:
    """(name, layer) of every analog tile layer of any model, in module order."""
    for name, module in model.named_modules():
        if isinstance(module, AnalogLayerBase):
            yield name, module


def layer_records(model: nn.Module) -> list[dict]:
    """The compile records of a model (an empty list for a model fxanalog
    did not compile)."""
    if isinstance(model, fx.GraphModule):
        return list(model.meta.get("fxanalog_layers", []))
    return list(model.__dict__.get("_fxanalog_layers", []))


def set_layer_records(model: nn.Module, records: list[dict]) -> None:
    if isinstance(model, fx.GraphModule):
        model.meta["fxanalog_layers"] = list(records)
    else:
        model.__dict__["_fxanalog_layers"] = list(records)


class AnalogModelMixin:
    """Methods of every analog model returned by ``fxanalog.compile``."""

    def analog_tiles(self) -> Iterator[tuple[str, AnalogLayerBase]]:
        """Iterate ``(name, layer)`` over the analog tile layers."""
        return analog_tiles(self)

    def analog_layers(self) -> list[dict]:
        """How each weighted layer was converted (or why it stayed digital):
        the records of ``fxanalog.passes``."""
        return layer_records(self)

    def program_analog_weights(self) -> None:
        """Program the weights onto the tiles (programming noise), as aihwkit's
        ``program_analog_weights``."""
        from fxanalog.inference import program_analog_weights

        return program_analog_weights(self)

    def drift_analog_weights(self, t_inference: float = 0.0) -> None:
        """Drift the programmed weights to ``t_inference`` seconds after
        programming (with read noise and drift compensation)."""
        from fxanalog.inference import drift_analog_weights

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
