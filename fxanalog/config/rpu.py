"""The RPU configs: what a layer's tiles are (aihwkit's names, nesting and defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from fxanalog.config.base import ConfigBase, register_config_class
from fxanalog.config.enums import BoundManagementType, NoiseManagementType
from fxanalog.config.inference import WeightClipParameter, WeightModifierParameter, WeightRemapParameter
from fxanalog.config.io import IOParameters
from fxanalog.config.mapping import MappingParameter
from fxanalog.config.noise import BaseDriftCompensation, BaseNoiseModel, GlobalDriftCompensation, PCMLikeNoiseModel
from fxanalog.config.pre_post import PrePostProcessingParameter

__all__ = ['RPUConfigBase', 'FloatingPointRPUConfig', 'InferenceRPUConfig', 'check_rpu_config']


# --------------------------------------------------------------------------
# RPU configs


class RPUConfigBase(ConfigBase):
    tile_kind: ClassVar[str] = "inference"

    def check_tile_config(self, where: str | None = None) -> None:
        """Validate, as done each time the config is used for a tile."""
        self.validate(where or type(self).__name__)


@register_config_class
@dataclass(repr=False)
class FloatingPointRPUConfig(RPUConfigBase):
    """An ideal tile: exactly the digital result (useful as a reference)."""

    mapping: MappingParameter = field(default_factory=MappingParameter)
    tile_kind: ClassVar[str] = "floating_point"

    @property
    def forward(self) -> IOParameters:
        return IOParameters(is_perfect=True)

    @property
    def backward(self) -> IOParameters:
        return IOParameters(is_perfect=True)


@register_config_class
@dataclass(repr=False)
class InferenceRPUConfig(RPUConfigBase):
    """A tile for inference and hardware-aware training (aihwkit's defaults).

    ``forward`` is the noisy, quantized forward pass; ``backward`` is perfect,
    so hardware-aware training is a noisy forward with plain gradients.
    """

    forward: IOParameters = field(default_factory=IOParameters)
    backward: IOParameters = field(default_factory=lambda: IOParameters(is_perfect=True))
    mapping: MappingParameter = field(default_factory=MappingParameter)
    clip: WeightClipParameter = field(default_factory=WeightClipParameter)
    modifier: WeightModifierParameter = field(default_factory=WeightModifierParameter)
    remap: WeightRemapParameter = field(default_factory=WeightRemapParameter)
    pre_post: PrePostProcessingParameter = field(default_factory=PrePostProcessingParameter)
    noise_model: Any = field(default_factory=PCMLikeNoiseModel)
    drift_compensation: Any = field(default_factory=GlobalDriftCompensation)

    def _check(self, where: str) -> None:
        ir = self.pre_post.input_range
        if ir.enable and ir.manage_output_clipping:
            fwd = self.forward
            if fwd.is_perfect or fwd.out_bound <= 0:
                raise ValueError(
                    f"{where}.pre_post.input_range.manage_output_clipping = True: needs an output bound "
                    f"(forward.is_perfect = False and forward.out_bound > 0; got is_perfect = "
                    f"{fwd.is_perfect!r}, out_bound = {fwd.out_bound!r})"
                )
            if fwd.noise_management != NoiseManagementType.NONE or fwd.bound_management != BoundManagementType.NONE:
                raise ValueError(
                    f"{where}.pre_post.input_range.manage_output_clipping = True: needs "
                    f"forward.noise_management = NONE and forward.bound_management = NONE (got "
                    f"{fwd.noise_management.name}, {fwd.bound_management.name})"
                )

        if not isinstance(self.noise_model, BaseNoiseModel):
            raise ValueError(
                f"{where}.noise_model = {self.noise_model!r}: expected a noise model "
                "(a subclass of fxanalog.config.noise.BaseNoiseModel)"
            )
        if self.drift_compensation is not None and not isinstance(self.drift_compensation, BaseDriftCompensation):
            raise ValueError(
                f"{where}.drift_compensation = {self.drift_compensation!r}: expected None or a "
                "drift compensation (a subclass of fxanalog.config.noise.BaseDriftCompensation)"
            )


def check_rpu_config(rpu_config: Any, where: str = "rpu_config") -> None:
    """Raise ``TypeError`` unless ``rpu_config`` is an fxanalog RPU config; validate it."""
    if not isinstance(rpu_config, RPUConfigBase):
        raise TypeError(
            f"{where}: expected an RPU config such as fxanalog.InferenceRPUConfig() or "
            f"fxanalog.FloatingPointRPUConfig(), got {type(rpu_config).__module__}.{type(rpu_config).__name__}"
        )
    rpu_config.check_tile_config(where)
