"""Analog layers (as in ``aihwkit.nn``)."""

from fxanalog.nn.modules import (
    AnalogConv1d,
    AnalogConv2d,
    AnalogConv3d,
    AnalogLayerBase,
    AnalogLinear,
)

__all__ = ["AnalogLayerBase", "AnalogLinear", "AnalogConv1d", "AnalogConv2d", "AnalogConv3d"]
