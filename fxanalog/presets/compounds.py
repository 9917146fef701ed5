"""Unit cells of preset devices (aihwkit 1.1.0's ``presets.compounds``, its values)."""

from __future__ import annotations

from fxanalog.config import OneSidedUnitCell
from fxanalog.config.base import with_defaults
from fxanalog.presets.devices import PCMPresetDevice
from fxanalog.presets.utils import PresetIOParameters, PresetUpdateParameters

__all__ = ["PCMPresetUnitCell"]


def _two_pcm_devices() -> list:
    return [PCMPresetDevice(), PCMPresetDevice()]


@with_defaults(
    unit_cell_devices=_two_pcm_devices,
    refresh_every=1,
    units_in_mbatch=True,
    refresh_forward=PresetIOParameters,
    refresh_update=PresetUpdateParameters,
)
class PCMPresetUnitCell(OneSidedUnitCell):
    """Two one-directional PCM devices of opposite sign per cross-point (``PCMPresetDevice``), refreshed after each
    mini-batch.

    The refresh (see ``OneSidedUnitCell``) reads with the presets'
    periphery (``PresetIOParameters``) and rewrites with their pulse
    trains (``PresetUpdateParameters``, at most 31 slots).
    """
