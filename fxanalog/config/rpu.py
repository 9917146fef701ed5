"""The RPU configs: what a layer's tiles are (aihwkit's names, nesting and defaults)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional

from fxanalog.config.base import ConfigBase, InstanceOf, Nested, param, register_config_class
from fxanalog.config.compounds import (
    MixedPrecisionCompound,
    OneSidedUnitCell,
    ReferenceUnitCell,
    TransferCompound,
    VectorUnitCell,
)
from fxanalog.config.devices import ConstantStepDevice, IdealDevice, PulsedDevice
from fxanalog.config.enums import BoundManagementType, NoiseManagementType
from fxanalog.config.inference import WeightClipParameter, WeightModifierParameter, WeightRemapParameter
from fxanalog.config.io import IOParameters
from fxanalog.config.mapping import MappingParameter
from fxanalog.config.noise import BaseDriftCompensation, BaseNoiseModel, GlobalDriftCompensation, PCMLikeNoiseModel
from fxanalog.config.pre_post import PrePostProcessingParameter
from fxanalog.config.training import UpdateParameters

__all__ = ['RPUConfigBase', 'FloatingPointRPUConfig', 'InferenceRPUConfig', 'SingleRPUConfig', 'UnitCellRPUConfig',
           'DigitalRankUpdateRPUConfig', 'check_rpu_config']


# --------------------------------------------------------------------------
# RPU configs


_PERFECT_IO = IOParameters(is_perfect=True)


def _perfect_io() -> IOParameters:
    """A fresh ``IOParameters(is_perfect=True)``, built by copying the fields
    of a template (its values are immutable): a floating-point layer reads it
    at every forward, and this costs a fraction of running ``__init__``."""
    io = object.__new__(IOParameters)
    io.__dict__.update(_PERFECT_IO.__dict__)
    return io


class RPUConfigBase(ConfigBase):
    """Base class of the RPU configs (what a layer's tiles are); ``tile_kind``
    names the kind of tile a config makes."""

    tile_kind: ClassVar[str] = "inference"

    def check_tile_config(self, where: str | None = None) -> None:
        """Validate, as done each time the config is used for a tile."""
        self.validate(where or type(self).__name__)


@register_config_class
@dataclass(repr=False)
class FloatingPointRPUConfig(RPUConfigBase):
    """An ideal tile: exactly the digital result (useful as a reference)."""

    mapping: MappingParameter = param(
        default_factory=MappingParameter,
        doc="Tile sizes and scales; the tile computes exactly W x (its `forward` and `backward` are perfect "
            "`IOParameters`).")
    tile_kind: ClassVar[str] = "floating_point"

    @property
    def forward(self) -> IOParameters:
        return _perfect_io()

    @property
    def backward(self) -> IOParameters:
        return _perfect_io()


@register_config_class
@dataclass(repr=False)
class InferenceRPUConfig(RPUConfigBase):
    """A tile for inference and hardware-aware training (aihwkit's defaults).

    ``forward`` is the noisy, quantized forward pass; ``backward`` is perfect,
    so hardware-aware training is a noisy forward with plain gradients.
    """

    forward: IOParameters = param(
        default_factory=IOParameters,
        doc="Periphery of the forward pass (DAC, ADC, noise, noise and bound management).")
    backward: IOParameters = param(
        default_factory=lambda: IOParameters(is_perfect=True), check=Nested(IOParameters),
        doc="Periphery of the backward pass (the input gradient); perfect by default, so hardware-aware "
            "training is a noisy forward with plain gradients.")
    mapping: MappingParameter = param(
        default_factory=MappingParameter,
        doc="How a layer's weights go onto tiles: weight scaling, tile sizes, digital bias.")
    clip: WeightClipParameter = param(
        default_factory=WeightClipParameter,
        doc="Clipping of the weights after each optimizer step (hardware-aware training).")
    modifier: WeightModifierParameter = param(
        default_factory=WeightModifierParameter,
        doc="Perturbation of the weights in each training forward pass (hardware-aware training).")
    remap: WeightRemapParameter = param(
        default_factory=WeightRemapParameter,
        doc="Remapping of the weights to the tile's range, the scales going to digital.")
    pre_post: PrePostProcessingParameter = param(
        default_factory=PrePostProcessingParameter,
        doc="Digital processing around the tiles: the learned input range (`PrePostProcessingParameter`).")
    noise_model: BaseNoiseModel = param(
        default_factory=PCMLikeNoiseModel,
        check=InstanceOf(BaseNoiseModel, "a noise model (a subclass of fxanalog.config.noise.BaseNoiseModel)"),
        doc="Programming noise, conductance drift and read noise applied by `program_analog_weights` / "
            "`drift_analog_weights`.")
    drift_compensation: Optional[BaseDriftCompensation] = param(
        default_factory=GlobalDriftCompensation,
        check=InstanceOf(BaseDriftCompensation, "a drift compensation (a subclass of "
                         "fxanalog.config.noise.BaseDriftCompensation)", optional=True),
        doc="Digital correction of the drift (`GlobalDriftCompensation`), or `None` for none.")

    def check_consistency(self, where: str) -> None:
        _check_output_clipping(self, where)


def _check_output_clipping(cfg: Any, where: str) -> None:
    """A learned input range that manages output clipping needs a bounded
    forward pass without noise and bound management."""
    ir = cfg.pre_post.input_range
    if ir.enable and ir.manage_output_clipping:
        fwd = cfg.forward
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


# The fields of every config of pulsed training.

def _pulsed_forward() -> Any:
    return param(default_factory=IOParameters,
                 doc="Periphery of the forward pass (DAC, ADC, noise, noise and bound management); noisy by default.")


def _pulsed_backward() -> Any:
    return param(default_factory=IOParameters,
                 doc="Periphery of the backward pass (the transposed MVM that gives the input gradient); noisy by "
                     "default, like `forward`. It does not change the d the devices are updated with.")


def _pulsed_update() -> Any:
    return param(default_factory=UpdateParameters,
                 doc="How each training step's (x, d) become pulses: pulse trains, their length and their "
                     "management.")


def _pulsed_mapping() -> Any:
    return param(default_factory=MappingParameter,
                 doc="How a layer's weights go onto tiles: weight scaling, tile sizes, digital bias; every tile of a "
                     "layer is updated with its own pulses.")


def _pulsed_pre_post() -> Any:
    return param(default_factory=PrePostProcessingParameter,
                 doc="Digital processing around the tiles: the learned input range (`PrePostProcessingParameter`).")


@register_config_class
@dataclass(repr=False)
class SingleRPUConfig(RPUConfigBase):
    """A tile trained on its devices: every weight is one device that moves by update pulses (aihwkit's defaults).

    Forward and backward are noisy ``IOParameters``; the update is pulsed
    (``update``) on the devices of ``device`` (a ``ConstantStepDevice`` by
    default), whose device-to-device parameters are drawn once per
    cross-point when the tile is made. Tiles of this config record the
    (x, d) of every training step for the analog optimizer
    (``records_updates``).
    """

    forward: IOParameters = _pulsed_forward()
    # aihwkit's C++ tile (1.1.0) sets the backward pass's bound management to
    # NONE whatever this group says (initializeForBackward).
    backward: IOParameters = _pulsed_backward()
    update: UpdateParameters = _pulsed_update()
    device: PulsedDevice | IdealDevice = param(
        default_factory=ConstantStepDevice,
        check=InstanceOf((PulsedDevice, IdealDevice),
                         "a device config (fxanalog.IdealDevice or a PulsedDevice such as ConstantStepDevice, "
                         "LinearStepDevice, SoftBoundsDevice, SoftBoundsReferenceDevice, ExpStepDevice, "
                         "PowStepDevice)"),
        doc="The device of every cross-point: its response to one pulse, its bounds, their device-to-device "
            "spread, decay and diffusion.")
    mapping: MappingParameter = _pulsed_mapping()
    pre_post: PrePostProcessingParameter = _pulsed_pre_post()
    tile_kind: ClassVar[str] = "pulsed"
    records_updates: ClassVar[bool] = True

    def check_consistency(self, where: str) -> None:
        _check_output_clipping(self, where)


def _unit_cell_rpu_device() -> VectorUnitCell:
    return VectorUnitCell(unit_cell_devices=[ConstantStepDevice()])


@register_config_class
@dataclass(repr=False)
class UnitCellRPUConfig(RPUConfigBase):
    """A tile trained on its devices, with several devices per cross-point: a unit cell (aihwkit's names).

    As ``SingleRPUConfig``, with ``device`` a unit cell
    (``fxanalog.config.compounds``): a ``VectorUnitCell``,
    ``ReferenceUnitCell``, ``OneSidedUnitCell`` or ``TransferCompound``
    (Tiki-Taka), which says how the cell's devices make the weight and
    which of them the update pulses go to. Tiles of this config record the
    (x, d) of every training step for the analog optimizer
    (``records_updates``).

    Deviation from aihwkit: ``device`` defaults to
    ``VectorUnitCell(unit_cell_devices=[ConstantStepDevice()])``, since
    aihwkit's default (an empty ``UnitCell``) cannot make a tile.
    """

    forward: IOParameters = _pulsed_forward()
    backward: IOParameters = _pulsed_backward()
    update: UpdateParameters = _pulsed_update()
    device: VectorUnitCell | ReferenceUnitCell | OneSidedUnitCell | TransferCompound = param(
        default_factory=_unit_cell_rpu_device,
        check=InstanceOf((VectorUnitCell, ReferenceUnitCell, OneSidedUnitCell, TransferCompound),
                         "a unit cell config (fxanalog.VectorUnitCell, ReferenceUnitCell, OneSidedUnitCell or "
                         "TransferCompound)"),
        doc="The unit cell of every cross-point: its devices, how they make the weight, which of them the "
            "update goes to.")
    mapping: MappingParameter = _pulsed_mapping()
    pre_post: PrePostProcessingParameter = _pulsed_pre_post()
    tile_kind: ClassVar[str] = "pulsed"
    records_updates: ClassVar[bool] = True

    def check_consistency(self, where: str) -> None:
        _check_output_clipping(self, where)


@register_config_class
@dataclass(repr=False)
class DigitalRankUpdateRPUConfig(RPUConfigBase):
    """A tile with analog forward and backward passes whose rank update is computed in digital (aihwkit's names).

    As ``SingleRPUConfig``, with ``device`` a ``DigitalRankUpdateCell``
    (``MixedPrecisionCompound``): the update d x^T is accumulated in
    digital and written to the analog device by pulses (``update``) now
    and then. Tiles of this config record the (x, d) of every training
    step for the analog optimizer (``records_updates``).

    Deviation from aihwkit: ``device`` defaults to
    ``MixedPrecisionCompound()`` (on a ``ConstantStepDevice``), since
    aihwkit's default (a bare ``DigitalRankUpdateCell`` on an empty
    ``VectorUnitCell``) cannot make a tile.
    """

    forward: IOParameters = _pulsed_forward()
    backward: IOParameters = _pulsed_backward()
    update: UpdateParameters = _pulsed_update()
    device: MixedPrecisionCompound = param(
        default_factory=MixedPrecisionCompound,
        check=InstanceOf(MixedPrecisionCompound, "a digital rank update cell (fxanalog.MixedPrecisionCompound)"),
        doc="The cell of every cross-point: its analog device and how the digital update is written to it.")
    mapping: MappingParameter = _pulsed_mapping()
    pre_post: PrePostProcessingParameter = _pulsed_pre_post()
    tile_kind: ClassVar[str] = "pulsed"
    records_updates: ClassVar[bool] = True

    def check_consistency(self, where: str) -> None:
        _check_output_clipping(self, where)


def check_rpu_config(rpu_config: Any, where: str = "rpu_config") -> None:
    """Raise ``TypeError`` unless ``rpu_config`` is an fxanalog RPU config; validate it."""
    if not isinstance(rpu_config, RPUConfigBase):
        raise TypeError(
            f"{where}: expected an RPU config such as fxanalog.InferenceRPUConfig() or "
            f"fxanalog.FloatingPointRPUConfig(), got {type(rpu_config).__module__}.{type(rpu_config).__name__}"
        )
    rpu_config.check_tile_config(where)
