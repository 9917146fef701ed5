"""Analog layers (as in ``aihwkit.nn``)."""

from fxanalog.nn.modules import (
    AnalogConv1d,
    AnalogConv2d,
    AnalogConv3d,
    AnalogLayerBase,
    AnalogLinear,
)
from fxanalog.nn.attention import AnalogMultiheadAttention
from fxanalog.nn import conversion
from fxanalog.nn.conversion import convert_to_analog, convert_to_analog_mapped, convert_to_digital

__all__ = ["AnalogLayerBase", "AnalogLinear", "AnalogConv1d", "AnalogConv2d", "AnalogConv3d",
           "AnalogMultiheadAttention", "conversion", "convert_to_analog", "convert_to_analog_mapped",
           "convert_to_digital"]
