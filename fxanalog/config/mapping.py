"""How a layer's weights are put on tiles: ``MappingParameter``."""

from __future__ import annotations

from dataclasses import dataclass

from fxanalog.config.base import ConfigBase, Number, Whole, param, register_config_class

__all__ = ["MappingParameter"]


# --------------------------------------------------------------------------
# Mapping of a layer onto tiles


@register_config_class
@dataclass(repr=False)
class MappingParameter(ConfigBase):
    """How a layer's weights are put on tiles (scales, tile sizes, bias)."""

    digital_bias: bool = param(
        True, doc="`True`: the bias is added in digital after the tiles. `False`: the bias is an extra tile input "
                  "column (the last), driven by a constant input 1.0 and computed through the DAC, ADC and noise "
                  "like any weight; it counts towards `max_input_size` and lands in the last input piece. No "
                  "effect on a layer without a bias. Not with pulsed devices (`SingleRPUConfig`) or a learned "
                  "input range.")
    weight_scaling_omega: float = param(
        0.0, check=Number(ge=0),
        doc="> 0: the tile holds W/alpha with alpha = max|W|/omega and alpha multiplies the output in digital; "
            "0: the weights go on the tile unscaled. 1.0 is the usual choice.")
    weight_scaling_columnwise: bool = param(
        False, doc="Weight scaling per output (row of W) instead of per layer.")
    learn_out_scaling: bool = param(
        False, doc="A trainable digital output factor per tile (per column with `out_scaling_columnwise`).")
    out_scaling_columnwise: bool = param(
        False, doc="With `learn_out_scaling`: one factor per output instead of one per layer.")
    max_input_size: int = param(
        512, check=Whole(ge=0, note="(0 = unlimited)"),
        doc="Largest tile input count; bigger layers are split into balanced pieces whose partial sums add in "
            "digital (0: unlimited).")
    max_output_size: int = param(
        512, check=Whole(ge=0, note="(0 = unlimited)"),
        doc="Largest tile output count; bigger layers are split into balanced pieces (0: unlimited).")
