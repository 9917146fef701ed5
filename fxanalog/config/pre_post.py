"""Digital processing around the tiles: the learned input range."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from fxanalog.config.base import ConfigBase, check_nonneg, register_config_class

__all__ = ['InputRangeParameter', 'PrePostProcessingParameter']


@register_config_class
@dataclass(repr=False)
class InputRangeParameter(ConfigBase):
    """A learned input range (aihwkit's ``pre_post.input_range``).

    When enabled, every tile's inputs are clipped to ``[-ir, ir]`` and divided
    by ``ir`` in digital before the DAC, and the tile's output is multiplied by
    ``ir``: a static, trained replacement for dynamic noise management (which
    is then usually set to ``NONE``, with bound management ``NONE``). One
    ``ir`` per input piece of the tile array (the tiles that share the piece
    see the same inputs), a parameter of the layer (``layer.input_range``).
    """

    enable: bool = False
    learn_input_range: bool = True
    init_value: float = 3.0
    init_from_data: int = 100
    init_std_alpha: float = 3.0
    decay: float = 0.001
    input_min_percentage: float = 0.95
    manage_output_clipping: bool = False
    output_min_percentage: float = 0.95
    gradient_scale: float = 1.0
    gradient_relative: bool = True
    calibration_info: Optional[str] = None

    def _check(self, where: str) -> None:
        if not (isinstance(self.init_value, (int, float)) and self.init_value > 0):
            raise ValueError(f"{where}.init_value = {self.init_value!r}: expected a number > 0")
        if not isinstance(self.init_from_data, int) or isinstance(self.init_from_data, bool) or self.init_from_data < 0:
            raise ValueError(f"{where}.init_from_data = {self.init_from_data!r}: expected a whole number >= 0 (0: off)")
        for name in ("init_std_alpha", "decay", "gradient_scale"):
            check_nonneg(where, name, getattr(self, name))
        for name in ("input_min_percentage", "output_min_percentage"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0):
                raise ValueError(f"{where}.{name} = {value!r}: expected a fraction in [0, 1]")
        if self.calibration_info is not None and not isinstance(self.calibration_info, str):
            raise ValueError(f"{where}.calibration_info = {self.calibration_info!r}: expected None or a string")


@register_config_class
@dataclass(repr=False)
class PrePostProcessingParameter(ConfigBase):
    """Digital processing around the tile (aihwkit's ``rpu_config.pre_post``)."""

    input_range: InputRangeParameter = field(default_factory=InputRangeParameter)
