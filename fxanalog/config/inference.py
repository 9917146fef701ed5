"""Training-time settings of inference tiles (hardware-aware training): clipping,
weight modifiers and remapping."""

from __future__ import annotations

from dataclasses import dataclass, field

from fxanalog.config.base import ConfigBase, check_nonneg, check_number, check_resolution, register_config_class
from fxanalog.config.enums import WeightClipType, WeightModifierType, WeightRemapType

__all__ = ['WeightClipParameter', 'WeightModifierParameter', 'WeightRemapParameter']


# --------------------------------------------------------------------------
# Training-time settings of inference tiles


@register_config_class
@dataclass(repr=False)
class WeightClipParameter(ConfigBase):
    """Clipping of the weights after each optimizer step."""

    fixed_value: float = -1.0
    sigma: float = 2.5
    type: WeightClipType = WeightClipType.NONE

    def _check(self, where: str) -> None:
        check_number(where, "fixed_value", self.fixed_value)
        check_nonneg(where, "sigma", self.sigma)
        if self.type == WeightClipType.FIXED_VALUE and self.fixed_value <= 0:
            raise ValueError(f"{where}.fixed_value = {self.fixed_value!r}: FIXED_VALUE clipping needs a value > 0")


@register_config_class
@dataclass(repr=False)
class WeightModifierParameter(ConfigBase):
    """Perturbation of the weights used in each training forward pass."""

    std_dev: float = 0.0
    per_batch_sample: bool = False
    res: float = 0.0
    sto_round: bool = False
    pdrop: float = 0.0
    enable_during_test: bool = False
    rel_to_actual_wmax: bool = True
    assumed_wmax: float = 1.0
    coeffs: list = field(default_factory=lambda: [0.2, 0.2, 0.0])
    type: WeightModifierType = WeightModifierType.COPY

    def _check(self, where: str) -> None:
        check_nonneg(where, "std_dev", self.std_dev)
        check_resolution(where, "res", self.res)
        if not (isinstance(self.pdrop, (int, float)) and 0.0 <= self.pdrop <= 1.0):
            raise ValueError(f"{where}.pdrop = {self.pdrop!r}: expected a probability in [0, 1]")
        if not (isinstance(self.assumed_wmax, (int, float)) and self.assumed_wmax > 0):
            raise ValueError(f"{where}.assumed_wmax = {self.assumed_wmax!r}: expected a number > 0")


@register_config_class
@dataclass(repr=False)
class WeightRemapParameter(ConfigBase):
    """Remapping of the weights to the tile's range (scales go to digital)."""

    remapped_wmax: float = 1.0
    max_scale_range: float = 0.0
    max_scale_ref: float = 0.0
    type: WeightRemapType = WeightRemapType.NONE

    def _check(self, where: str) -> None:
        if not (isinstance(self.remapped_wmax, (int, float)) and self.remapped_wmax > 0):
            raise ValueError(f"{where}.remapped_wmax = {self.remapped_wmax!r}: expected a number > 0")
