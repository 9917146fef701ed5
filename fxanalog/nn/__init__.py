"""Analog layers (as in ``aihwkit.nn``).

The seed conversion API is the module ``fxanalog.nn.conversion``
(``convert_to_analog``, ``convert_to_analog_mapped``, ``convert_to_digital``,
also ``fxanalog.convert_to_analog``, ...); it is not imported here, since it
runs the compiler, which builds these layers.
"""

from fxanalog.nn.modules import (
    AnalogConv1d,
    AnalogConv2d,
    AnalogConv3d,
    AnalogLayerBase,
    AnalogLinear,
    AnalogSequential,
    load_state_dict,
)
from fxanalog.nn.attention import AnalogMultiheadAttention

__all__ = ["AnalogLayerBase", "AnalogLinear", "AnalogConv1d", "AnalogConv2d", "AnalogConv3d",
           "AnalogMultiheadAttention", "AnalogSequential", "load_state_dict"]
