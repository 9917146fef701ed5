"""Training configs of preset devices (aihwkit 1.1.0's ``presets.configs``, its values).

Every preset is an RPU config whose defaults are aihwkit's: the periphery
``PresetIOParameters`` for the forward and backward passes, the update
``PresetUpdateParameters``, and a preset device, unit cell or compound.
A user of aihwkit changes the import only::

    from fxanalog.presets import ReRamSBPreset   # was: from aihwkit.simulator.presets import ReRamSBPreset
    rpu_config = ReRamSBPreset()
    rpu_config.update.desired_bl = 10            # fields as on any config

The ``TTv2*``, ``ChoppedTTv2*`` and ``AGAD*`` presets are in
``fxanalog.presets.chopped``.
"""

from __future__ import annotations

from typing import Callable

from fxanalog.config import (
    BoundManagementType,
    DigitalRankUpdateRPUConfig,
    MixedPrecisionCompound,
    NoiseManagementType,
    SingleRPUConfig,
    TransferCompound,
    UnitCellRPUConfig,
    VectorUnitCell,
    VectorUnitCellUpdatePolicy,
)
from fxanalog.config.base import with_defaults
from fxanalog.presets.compounds import PCMPresetUnitCell
from fxanalog.presets.devices import (
    CapacitorPresetDevice,
    EcRamMOPresetDevice,
    EcRamPresetDevice,
    GokmenVlasovPresetDevice,
    IdealizedPresetDevice,
    ReRamESPresetDevice,
    ReRamSBPresetDevice,
)
from fxanalog.presets.utils import PresetIOParameters, PresetUpdateParameters
__all__ = [
    "ReRamESPreset",
    "ReRamSBPreset",
    "CapacitorPreset",
    "EcRamPreset",
    "EcRamMOPreset",
    "IdealizedPreset",
    "GokmenVlasovPreset",
    "PCMPreset",
    "ReRamES2Preset",
    "ReRamSB2Preset",
    "Capacitor2Preset",
    "EcRam2Preset",
    "EcRamMO2Preset",
    "Idealized2Preset",
    "ReRamES4Preset",
    "ReRamSB4Preset",
    "Capacitor4Preset",
    "EcRam4Preset",
    "EcRamMO4Preset",
    "Idealized4Preset",
    "TikiTakaReRamESPreset",
    "TikiTakaReRamSBPreset",
    "TikiTakaCapacitorPreset",
    "TikiTakaEcRamPreset",
    "TikiTakaEcRamMOPreset",
    "TikiTakaIdealizedPreset",
    "MixedPrecisionReRamESPreset",
    "MixedPrecisionReRamSBPreset",
    "MixedPrecisionCapacitorPreset",
    "MixedPrecisionEcRamPreset",
    "MixedPrecisionEcRamMOPreset",
    "MixedPrecisionIdealizedPreset",
    "MixedPrecisionGokmenVlasovPreset",
    "MixedPrecisionPCMPreset",
]

# The periphery and update of every preset (aihwkit's forward, backward, update)
_PERIPHERY = dict(forward=PresetIOParameters, backward=PresetIOParameters, update=PresetUpdateParameters)


def _vector(device: type, n: int) -> Callable[[], VectorUnitCell]:
    """n devices per cross-point, one of them updated per batch row, drawn at random."""

    def build() -> VectorUnitCell:
        return VectorUnitCell(unit_cell_devices=[device() for _ in range(n)],
                              update_policy=VectorUnitCellUpdatePolicy.SINGLE_RANDOM)

    return build


def _tiki_taka(device: type, **device_fields) -> Callable[[], TransferCompound]:
    """Tiki-Taka on two devices of one kind; the transfer reads without noise and bound management."""

    def build() -> TransferCompound:
        return TransferCompound(
            unit_cell_devices=[device(**device_fields), device(**device_fields)],
            transfer_forward=PresetIOParameters(noise_management=NoiseManagementType.NONE,
                                                bound_management=BoundManagementType.NONE),
            transfer_update=PresetUpdateParameters(),
            units_in_mbatch=True,
        )

    return build


def _mixed_precision(device: type) -> Callable[[], MixedPrecisionCompound]:
    def build() -> MixedPrecisionCompound:
        return MixedPrecisionCompound(device=device())

    return build


# --------------------------------------------------------------------------
# One device per cross-point


@with_defaults(device=ReRamESPresetDevice, **_PERIPHERY)
class ReRamESPreset(SingleRPUConfig):
    """SGD on one ReRAM device per cross-point (``ReRamESPresetDevice``, exponential steps), updated by
    stochastic pulse trains; the presets' periphery."""


@with_defaults(device=ReRamSBPresetDevice, **_PERIPHERY)
class ReRamSBPreset(SingleRPUConfig):
    """SGD on one ReRAM device per cross-point (``ReRamSBPresetDevice``, soft bounds), updated by stochastic
    pulse trains; the presets' periphery."""


@with_defaults(device=CapacitorPresetDevice, **_PERIPHERY)
class CapacitorPreset(SingleRPUConfig):
    """SGD on one capacitor per cross-point (``CapacitorPresetDevice``), updated by stochastic pulse trains; the
    presets' periphery."""


@with_defaults(device=EcRamPresetDevice, **_PERIPHERY)
class EcRamPreset(SingleRPUConfig):
    """SGD on one lithium-based ECRAM device per cross-point (``EcRamPresetDevice``), updated by stochastic pulse
    trains; the presets' periphery."""


@with_defaults(device=EcRamMOPresetDevice, **_PERIPHERY)
class EcRamMOPreset(SingleRPUConfig):
    """SGD on one metal-oxide ECRAM device per cross-point (``EcRamMOPresetDevice``), updated by stochastic pulse
    trains; the presets' periphery."""


@with_defaults(device=IdealizedPresetDevice, **_PERIPHERY)
class IdealizedPreset(SingleRPUConfig):
    """SGD on one idealized device per cross-point (``IdealizedPresetDevice``), updated by stochastic pulse
    trains; the presets' periphery."""


@with_defaults(device=GokmenVlasovPresetDevice, **_PERIPHERY)
class GokmenVlasovPreset(SingleRPUConfig):
    """SGD on one constant-step device of Gokmen and Vlasov per cross-point (``GokmenVlasovPresetDevice``),
    updated by stochastic pulse trains; the presets' periphery."""


@with_defaults(device=PCMPresetUnitCell, **_PERIPHERY)
class PCMPreset(UnitCellRPUConfig):
    """SGD on a PCM pair with refresh per cross-point (``PCMPresetUnitCell``), the presets' periphery."""


# --------------------------------------------------------------------------
# 2 and 4 devices per cross-point (``VectorUnitCell``, one updated per batch row at random)


@with_defaults(device=_vector(ReRamESPresetDevice, 2), **_PERIPHERY)
class ReRamES2Preset(UnitCellRPUConfig):
    """SGD on 2 ReRAM devices (exponential steps, ``ReRamESPresetDevice``) per cross-point, W their mean; each
    batch row updates one of them at random."""


@with_defaults(device=_vector(ReRamSBPresetDevice, 2), **_PERIPHERY)
class ReRamSB2Preset(UnitCellRPUConfig):
    """SGD on 2 ReRAM devices (soft bounds, ``ReRamSBPresetDevice``) per cross-point, W their mean; each
    batch row updates one of them at random."""


@with_defaults(device=_vector(CapacitorPresetDevice, 2), **_PERIPHERY)
class Capacitor2Preset(UnitCellRPUConfig):
    """SGD on 2 capacitors (``CapacitorPresetDevice``) per cross-point, W their mean; each batch row updates one
    of them at random."""


@with_defaults(device=_vector(EcRamPresetDevice, 2), **_PERIPHERY)
class EcRam2Preset(UnitCellRPUConfig):
    """SGD on 2 lithium-based ECRAM devices (``EcRamPresetDevice``) per cross-point, W their mean; each
    batch row updates one of them at random."""


@with_defaults(device=_vector(EcRamMOPresetDevice, 2), **_PERIPHERY)
class EcRamMO2Preset(UnitCellRPUConfig):
    """SGD on 2 metal-oxide ECRAM devices (``EcRamMOPresetDevice``) per cross-point, W their mean; each
    batch row updates one of them at random."""


@with_defaults(device=_vector(IdealizedPresetDevice, 2), **_PERIPHERY)
class Idealized2Preset(UnitCellRPUConfig):
    """SGD on 2 idealized devices (``IdealizedPresetDevice``) per cross-point, W their mean; each batch row
    updates one of them at random."""


@with_defaults(device=_vector(ReRamESPresetDevice, 4), **_PERIPHERY)
class ReRamES4Preset(UnitCellRPUConfig):
    """SGD on 4 ReRAM devices (exponential steps, ``ReRamESPresetDevice``) per cross-point, W their mean; each
    batch row updates one of them at random."""


@with_defaults(device=_vector(ReRamSBPresetDevice, 4), **_PERIPHERY)
class ReRamSB4Preset(UnitCellRPUConfig):
    """SGD on 4 ReRAM devices (soft bounds, ``ReRamSBPresetDevice``) per cross-point, W their mean; each
    batch row updates one of them at random."""


@with_defaults(device=_vector(CapacitorPresetDevice, 4), **_PERIPHERY)
class Capacitor4Preset(UnitCellRPUConfig):
    """SGD on 4 capacitors (``CapacitorPresetDevice``) per cross-point, W their mean; each batch row updates one
    of them at random."""


@with_defaults(device=_vector(EcRamPresetDevice, 4), **_PERIPHERY)
class EcRam4Preset(UnitCellRPUConfig):
    """SGD on 4 lithium-based ECRAM devices (``EcRamPresetDevice``) per cross-point, W their mean; each
    batch row updates one of them at random."""


@with_defaults(device=_vector(EcRamMOPresetDevice, 4), **_PERIPHERY)
class EcRamMO4Preset(UnitCellRPUConfig):
    """SGD on 4 metal-oxide ECRAM devices (``EcRamMOPresetDevice``) per cross-point, W their mean; each
    batch row updates one of them at random."""


@with_defaults(device=_vector(IdealizedPresetDevice, 4), **_PERIPHERY)
class Idealized4Preset(UnitCellRPUConfig):
    """SGD on 4 idealized devices (``IdealizedPresetDevice``) per cross-point, W their mean; each batch row
    updates one of them at random."""


# --------------------------------------------------------------------------
# Tiki-Taka (``TransferCompound``): Gokmen and Haensch, Front. Neurosci. 14, 103 (2020)


@with_defaults(device=_tiki_taka(ReRamESPresetDevice), **_PERIPHERY)
class TikiTakaReRamESPreset(UnitCellRPUConfig):
    """Tiki-Taka on two ReRAM devices (exponential steps, ``ReRamESPresetDevice``) per cross-point: SGD on the
    fast device, its columns transferred to the slow one."""


@with_defaults(device=_tiki_taka(ReRamSBPresetDevice, subtract_symmetry_point=True), **_PERIPHERY)
class TikiTakaReRamSBPreset(UnitCellRPUConfig):
    """Tiki-Taka on two ReRAM devices (soft bounds, ``ReRamSBPresetDevice``, each with its symmetry point
    subtracted) per cross-point: SGD on the fast device, its columns transferred to the slow one."""


@with_defaults(device=_tiki_taka(CapacitorPresetDevice), **_PERIPHERY)
class TikiTakaCapacitorPreset(UnitCellRPUConfig):
    """Tiki-Taka on two capacitors (``CapacitorPresetDevice``) per cross-point: SGD on the fast device, its
    columns transferred to the slow one."""


@with_defaults(device=_tiki_taka(EcRamPresetDevice), **_PERIPHERY)
class TikiTakaEcRamPreset(UnitCellRPUConfig):
    """Tiki-Taka on two lithium-based ECRAM devices (``EcRamPresetDevice``) per cross-point: SGD on the fast
    device, its columns transferred to the slow one."""


@with_defaults(device=_tiki_taka(EcRamMOPresetDevice), **_PERIPHERY)
class TikiTakaEcRamMOPreset(UnitCellRPUConfig):
    """Tiki-Taka on two metal-oxide ECRAM devices (``EcRamMOPresetDevice``) per cross-point: SGD on the fast
    device, its columns transferred to the slow one."""


@with_defaults(device=_tiki_taka(IdealizedPresetDevice), **_PERIPHERY)
class TikiTakaIdealizedPreset(UnitCellRPUConfig):
    """Tiki-Taka on two idealized devices (``IdealizedPresetDevice``) per cross-point: SGD on the fast device,
    its columns transferred to the slow one."""


# --------------------------------------------------------------------------
# Mixed precision (``MixedPrecisionCompound``): Nandakumar et al., Front. Neurosci. 14, 406 (2020)


@with_defaults(device=_mixed_precision(ReRamESPresetDevice), **_PERIPHERY)
class MixedPrecisionReRamESPreset(DigitalRankUpdateRPUConfig):
    """Mixed precision on one ReRAM device per cross-point (``ReRamESPresetDevice``): the update accumulated in
    digital, written to the device in whole steps."""


@with_defaults(device=_mixed_precision(ReRamSBPresetDevice), **_PERIPHERY)
class MixedPrecisionReRamSBPreset(DigitalRankUpdateRPUConfig):
    """Mixed precision on one ReRAM device per cross-point (``ReRamSBPresetDevice``): the update accumulated in
    digital, written to the device in whole steps."""


@with_defaults(device=_mixed_precision(CapacitorPresetDevice), **_PERIPHERY)
class MixedPrecisionCapacitorPreset(DigitalRankUpdateRPUConfig):
    """Mixed precision on one capacitor per cross-point (``CapacitorPresetDevice``): the update accumulated in
    digital, written to the device in whole steps."""


@with_defaults(device=_mixed_precision(EcRamPresetDevice), **_PERIPHERY)
class MixedPrecisionEcRamPreset(DigitalRankUpdateRPUConfig):
    """Mixed precision on one lithium-based ECRAM device per cross-point (``EcRamPresetDevice``): the update
    accumulated in digital, written to the device in whole steps."""


@with_defaults(device=_mixed_precision(EcRamMOPresetDevice), **_PERIPHERY)
class MixedPrecisionEcRamMOPreset(DigitalRankUpdateRPUConfig):
    """Mixed precision on one metal-oxide ECRAM device per cross-point (``EcRamMOPresetDevice``): the update
    accumulated in digital, written to the device in whole steps."""


@with_defaults(device=_mixed_precision(IdealizedPresetDevice), **_PERIPHERY)
class MixedPrecisionIdealizedPreset(DigitalRankUpdateRPUConfig):
    """Mixed precision on one idealized device per cross-point (``IdealizedPresetDevice``): the update
    accumulated in digital, written to the device in whole steps."""


@with_defaults(device=_mixed_precision(GokmenVlasovPresetDevice), **_PERIPHERY)
class MixedPrecisionGokmenVlasovPreset(DigitalRankUpdateRPUConfig):
    """Mixed precision on one constant-step device of Gokmen and Vlasov per cross-point
    (``GokmenVlasovPresetDevice``): the update accumulated in digital, written to the device in whole
    steps."""


@with_defaults(device=_mixed_precision(PCMPresetUnitCell), **_PERIPHERY)
class MixedPrecisionPCMPreset(DigitalRankUpdateRPUConfig):
    """Mixed precision on one PCM pair with refresh per cross-point (``PCMPresetUnitCell``): the update
    accumulated in digital, written to the device in whole steps."""
