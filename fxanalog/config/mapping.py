"""How a layer's weights are put on tiles: ``MappingParameter``."""

from __future__ import annotations

from dataclasses import dataclass

from fxanalog.config.base import ConfigBase, check_nonneg, register_config_class

__all__ = ['MappingParameter']


# --------------------------------------------------------------------------
# Mapping of a layer onto tiles


@register_config_class
@dataclass(repr=False)
class MappingParameter(ConfigBase):
    """How a layer's weights are put on tiles (scales, tile sizes, bias)."""

    digital_bias: bool = True
    weight_scaling_omega: float = 0.0
    weight_scaling_columnwise: bool = False
    learn_out_scaling: bool = False
    out_scaling_columnwise: bool = False
    max_input_size: int = 512
    max_output_size: int = 512

    def _check(self, where: str) -> None:
        check_nonneg(where, "weight_scaling_omega", self.weight_scaling_omega)
        for name in ("max_input_size", "max_output_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{where}.{name} = {value!r}: expected a whole number >= 0 (0 = unlimited)")
        if not self.digital_bias:
            raise ValueError(
                f"{where}.digital_bias = False: analog bias (an extra tile column) is not supported; "
                "use digital_bias = True"
            )
