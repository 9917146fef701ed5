"""Presets of buffered, chopped and dynamic Tiki-Taka (aihwkit 1.1.0's ``TTv2*``, ``ChoppedTTv2*``, ``AGAD*``).

The values are aihwkit's (``presets/configs.py``): two preset devices of
one kind in a ``ChoppedTransferCompound`` (TTv2: the chopper probability
0, that is the buffered rule; ChoppedTTv2: a small one) or a
``DynamicTransferCompound`` (AGAD), the transfer read without noise and
bound management, a one-pulse transfer write, the fast learning rate
scaled by the running maxima of x and d (``auto_scale``) and the buffer
unit by ``auto_granularity``; the forward and backward periphery
``PresetIOParameters`` and the update ``PresetUpdateParameters`` with
aihwkit's ``desired_bl``. The ``*ReRamSB*`` presets' devices subtract
their symmetry point (``ReRamSBPresetDevice(subtract_symmetry_point=True)``),
as aihwkit's. A user of aihwkit changes the import only::

    from fxanalog.presets import AGADEcRamPreset   # was: from aihwkit.simulator.presets import ...
"""

from __future__ import annotations

from typing import Callable

from fxanalog.config import (
    BoundManagementType,
    ChoppedTransferCompound,
    DynamicTransferCompound,
    NoiseManagementType,
    UnitCellRPUConfig,
)
from fxanalog.config.base import with_defaults
from fxanalog.presets.devices import (
    CapacitorPresetDevice,
    EcRamMOPresetDevice,
    EcRamPresetDevice,
    IdealizedPresetDevice,
    ReRamESPresetDevice,
    ReRamSBPresetDevice,
)
from fxanalog.presets.utils import PresetIOParameters, PresetUpdateParameters

__all__ = [
    "TTv2ReRamESPreset",
    "TTv2ReRamSBPreset",
    "TTv2CapacitorPreset",
    "TTv2EcRamPreset",
    "TTv2EcRamMOPreset",
    "TTv2IdealizedPreset",
    "ChoppedTTv2ReRamESPreset",
    "ChoppedTTv2ReRamSBPreset",
    "ChoppedTTv2CapacitorPreset",
    "ChoppedTTv2EcRamPreset",
    "ChoppedTTv2EcRamMOPreset",
    "ChoppedTTv2IdealizedPreset",
    "AGADReRamESPreset",
    "AGADReRamSBPreset",
    "AGADCapacitorPreset",
    "AGADEcRamPreset",
    "AGADEcRamMOPreset",
    "AGADIdealizedPreset",
]


def _compound(cls: type, device: type, **values) -> Callable[[], ChoppedTransferCompound]:
    """Two ``device`` presets in ``cls`` with aihwkit's transfer read and write and the given fields."""

    def build() -> ChoppedTransferCompound:
        return cls(
            unit_cell_devices=[device(), device()],
            transfer_forward=PresetIOParameters(noise_management=NoiseManagementType.NONE,
                                                bound_management=BoundManagementType.NONE),
            transfer_update=PresetUpdateParameters(desired_bl=1, update_bl_management=False,
                                                   update_management=False),
            auto_scale=True,
            **values,
        )

    return build


def _reram_sb() -> ReRamSBPresetDevice:
    """aihwkit's device of its ReRamSB compound presets: the symmetry point subtracted."""
    return ReRamSBPresetDevice(subtract_symmetry_point=True)


def _periphery(bl: int) -> dict:
    """aihwkit's forward, backward and update of these presets (the update with its ``desired_bl``)."""
    return dict(forward=PresetIOParameters, backward=PresetIOParameters,
                update=lambda: PresetUpdateParameters(desired_bl=bl))


def _ttv2(device: type, fast_lr: float, auto_granularity: float, in_chop_prob: float = 0.0):
    return _compound(ChoppedTransferCompound, device, units_in_mbatch=False, in_chop_prob=in_chop_prob,
                     fast_lr=fast_lr, auto_granularity=auto_granularity)


def _agad(device: type, fast_lr: float, auto_granularity: float, tail: float, in_chop_prob: float, **values):
    return _compound(DynamicTransferCompound, device, fast_lr=fast_lr, auto_granularity=auto_granularity,
                     tail_weightening=tail, in_chop_prob=in_chop_prob, **values)


# --------------------------------------------------------------------------
# TTv2: the buffered rule (ChoppedTransferCompound without choppers). Gokmen,
# Front. Artif. Intell. 4, 699148 (2021)


@with_defaults(device=_ttv2(ReRamESPresetDevice, 0.5, 1000), **_periphery(31))
class TTv2ReRamESPreset(UnitCellRPUConfig):
    """TTv2 on two ReRAM devices (exponential steps, ``ReRamESPresetDevice``): SGD on the fast device, its reads
    buffered digitally, whole buffer units written onto the slow device."""


@with_defaults(device=_ttv2(_reram_sb, 0.5, 1000), **_periphery(31))
class TTv2ReRamSBPreset(UnitCellRPUConfig):
    """TTv2 on two ReRAM devices (soft bounds, ``ReRamSBPresetDevice``, symmetry point subtracted): SGD on the
    fast device, its reads buffered digitally, whole buffer units written onto the slow device."""


@with_defaults(device=_ttv2(CapacitorPresetDevice, 0.1, 1000), **_periphery(31))
class TTv2CapacitorPreset(UnitCellRPUConfig):
    """TTv2 on two capacitors (``CapacitorPresetDevice``): SGD on the fast device, its reads buffered digitally,
    whole buffer units written onto the slow device."""


@with_defaults(device=_ttv2(EcRamPresetDevice, 0.1, 500), **_periphery(100))
class TTv2EcRamPreset(UnitCellRPUConfig):
    """TTv2 on two lithium-based ECRAM devices (``EcRamPresetDevice``): SGD on the fast device, its reads
    buffered digitally, whole buffer units written onto the slow device."""


@with_defaults(device=_ttv2(EcRamMOPresetDevice, 0.1, 500), **_periphery(100))
class TTv2EcRamMOPreset(UnitCellRPUConfig):
    """TTv2 on two metal-oxide ECRAM devices (``EcRamMOPresetDevice``): SGD on the fast device, its reads
    buffered digitally, whole buffer units written onto the slow device."""


@with_defaults(device=_ttv2(IdealizedPresetDevice, 0.1, 500), **_periphery(100))
class TTv2IdealizedPreset(UnitCellRPUConfig):
    """TTv2 on two idealized devices (``IdealizedPresetDevice``): SGD on the fast device, its reads buffered
    digitally, whole buffer units written onto the slow device."""


# --------------------------------------------------------------------------
# Chopped TTv2. Rasch et al., arXiv:2305.10296 (2023)


@with_defaults(device=_ttv2(ReRamESPresetDevice, 0.5, 1000, in_chop_prob=0.01), **_periphery(31))
class ChoppedTTv2ReRamESPreset(UnitCellRPUConfig):
    """Chopped TTv2 on two ReRAM devices (``ReRamESPresetDevice``): the fast device's gradient chopped (input
    choppers switching with probability 0.01 per read), its reads buffered, whole units onto the slow device."""


@with_defaults(device=_ttv2(_reram_sb, 0.5, 1000, in_chop_prob=0.01), **_periphery(31))
class ChoppedTTv2ReRamSBPreset(UnitCellRPUConfig):
    """Chopped TTv2 on two ReRAM devices (``ReRamSBPresetDevice``, symmetry point subtracted): input choppers
    switching with probability 0.01 per read, buffered reads, whole units onto the slow device."""


@with_defaults(device=_ttv2(CapacitorPresetDevice, 0.1, 1000, in_chop_prob=0.01), **_periphery(31))
class ChoppedTTv2CapacitorPreset(UnitCellRPUConfig):
    """Chopped TTv2 on two capacitors (``CapacitorPresetDevice``): input choppers switching with probability
    0.01 per read, buffered reads, whole units onto the slow device."""


@with_defaults(device=_ttv2(EcRamPresetDevice, 1.0, 500, in_chop_prob=0.01), **_periphery(100))
class ChoppedTTv2EcRamPreset(UnitCellRPUConfig):
    """Chopped TTv2 on two lithium-based ECRAM devices (``EcRamPresetDevice``): input choppers switching with
    probability 0.01 per read, buffered reads, whole units onto the slow device (aihwkit leaves ``fast_lr`` at
    its default 1 here)."""


@with_defaults(device=_ttv2(EcRamMOPresetDevice, 0.1, 500, in_chop_prob=0.001), **_periphery(100))
class ChoppedTTv2EcRamMOPreset(UnitCellRPUConfig):
    """Chopped TTv2 on two metal-oxide ECRAM devices (``EcRamMOPresetDevice``): input choppers switching with
    probability 0.001 per read, buffered reads, whole units onto the slow device."""


@with_defaults(device=_ttv2(IdealizedPresetDevice, 0.1, 500, in_chop_prob=0.001), **_periphery(100))
class ChoppedTTv2IdealizedPreset(UnitCellRPUConfig):
    """Chopped TTv2 on two idealized devices (``IdealizedPresetDevice``): input choppers switching with
    probability 0.001 per read, buffered reads, whole units onto the slow device."""


# --------------------------------------------------------------------------
# AGAD (DynamicTransferCompound). Rasch et al., arXiv:2305.10296 (2023)


@with_defaults(device=_agad(ReRamESPresetDevice, 0.5, 1000, 5.0, 0.02), **_periphery(31))
class AGADReRamESPreset(UnitCellRPUConfig):
    """AGAD on two ReRAM devices (``ReRamESPresetDevice``): chopper periods of 50 reads, the buffer fed by the
    change of the fast device's reads against the previous period's mean."""


@with_defaults(device=_agad(_reram_sb, 0.5, 1000, 5.0, 0.02), **_periphery(31))
class AGADReRamSBPreset(UnitCellRPUConfig):
    """AGAD on two ReRAM devices (``ReRamSBPresetDevice``, symmetry point subtracted): chopper periods of 50
    reads, the buffer fed by the change of the fast device's reads against the previous period's mean."""


@with_defaults(device=_agad(CapacitorPresetDevice, 0.1, 1000, 20.0, 0.01, units_in_mbatch=False),
               **_periphery(31))
class AGADCapacitorPreset(UnitCellRPUConfig):
    """AGAD on two capacitors (``CapacitorPresetDevice``): chopper periods of 100 reads, the buffer fed by the
    change of the fast device's reads against the previous period's mean."""


@with_defaults(device=_agad(EcRamPresetDevice, 0.1, 750, 50.0, 0.005, units_in_mbatch=False), **_periphery(31))
class AGADEcRamPreset(UnitCellRPUConfig):
    """AGAD on two lithium-based ECRAM devices (``EcRamPresetDevice``): chopper periods of 200 reads, the
    buffer fed by the change of the fast device's reads against the previous period's mean."""


@with_defaults(device=_agad(EcRamMOPresetDevice, 0.1, 500, 50.0, 0.005, units_in_mbatch=False),
               **_periphery(100))
class AGADEcRamMOPreset(UnitCellRPUConfig):
    """AGAD on two metal-oxide ECRAM devices (``EcRamMOPresetDevice``): chopper periods of 200 reads, the
    buffer fed by the change of the fast device's reads against the previous period's mean."""


@with_defaults(device=_agad(IdealizedPresetDevice, 0.1, 500, 50.0, 0.005, units_in_mbatch=False),
               **_periphery(100))
class AGADIdealizedPreset(UnitCellRPUConfig):
    """AGAD on two idealized devices (``IdealizedPresetDevice``): chopper periods of 200 reads, the buffer fed
    by the change of the fast device's reads against the previous period's mean."""
