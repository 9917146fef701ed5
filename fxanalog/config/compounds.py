"""Unit cells and compound devices: several devices per cross-point (aihwkit's names, fields and defaults).

A unit cell puts n pulsed devices (``PulsedDevice`` configs, each with its
own device-to-device draws) at every cross-point (i, j), with weights
w_0, ..., w_{n-1}; the weight that the forward and backward passes see is
a fixed combination of them. The cells differ in which device an update's
pulses go to and in what happens between updates:

* ``VectorUnitCell``: W = sum_k gamma_k w_k; the update goes to all devices
  or to one of them per batch row (``update_policy``);
* ``ReferenceUnitCell``: W = w_0 - w_1; only w_0 is updated, w_1 is a fixed
  reference;
* ``OneSidedUnitCell``: W = w_+ - w_-, each device only ever pulsed up, with
  a refresh when both grow large;
* ``TransferCompound`` (Tiki-Taka): the update goes to w_0 only; columns of
  w_k are read now and then and written onto w_{k+1}.

``MixedPrecisionCompound`` (a ``DigitalRankUpdateCell``) holds one device
(or unit cell) per cross-point and computes the rank update in digital.

The semantics follow aihwkit 1.1.0's C++ simulator. Where aihwkit would
silently discard devices of a list (a ``ReferenceUnitCell`` given more
than 2, a ``OneSidedUnitCell`` whose second device differs from its first,
a ``TransferCompound`` whose devices from index 2 on differ from device 1),
fxanalog refuses the config with an error that says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from fxanalog.config.base import (
    ConfigBase,
    ConfigList,
    Fraction,
    InstanceOf,
    Number,
    NumberList,
    Whole,
    param,
    register_config_class,
)
from fxanalog.config.devices import ConstantStepDevice, PulsedDevice
from fxanalog.config.enums import VectorUnitCellUpdatePolicy
from fxanalog.config.io import IOParameters
from fxanalog.config.training import UpdateParameters

__all__ = [
    "UnitCell",
    "VectorUnitCell",
    "ReferenceUnitCell",
    "OneSidedUnitCell",
    "TransferCompound",
    "DigitalRankUpdateCell",
    "MixedPrecisionCompound",
]

_DEVICES = ConfigList(
    PulsedDevice,
    "pulsed device configs (fxanalog PulsedDevice subclasses such as ConstantStepDevice, LinearStepDevice, "
    "SoftBoundsDevice, ExpStepDevice, PowStepDevice; not IdealDevice, not unit cells)")


def _unit_cell_devices() -> Any:
    return param(
        default_factory=list, check=_DEVICES,
        doc="The devices of the cell, one config per device of every cross-point (`PulsedDevice` subclasses); "
            "each draws its own device-to-device parameters.")


def _construction_seed(what: str) -> Any:
    return param(
        0, check=Whole(ge=0),
        doc=f"Seed of the device-to-device draws of {what} when a tile is made: 0 draws them from the ordinary "
            "random stream; another value from a generator seeded with it.")


def _gamma_vec(doc: str) -> Any:
    return param(default_factory=list, check=NumberList(), doc=doc)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _check_count(cell: Any, where: str, low: int, high: int | None, why: str = "") -> None:
    n = len(cell.unit_cell_devices)
    if n >= low and (high is None or n <= high):
        return
    if high is None:
        expected = f"a list of at least {_plural(low, 'pulsed device config')}"
    else:
        expected = f"a list of {low} to {high} pulsed device configs"
    raise ValueError(f"{where}.unit_cell_devices = {cell.unit_cell_devices!r}: expected {expected} "
                     f"({type(cell).__name__}; got {n}){why}")


def _check_vector_len(cell: Any, where: str, name: str, n: int) -> None:
    value = getattr(cell, name)
    if value and len(value) != n:
        raise ValueError(f"{where}.{name} = {value!r}: expected an empty list or one entry per device "
                         f"({n} {'entry' if n == 1 else 'entries'} for the cell's {_plural(n, 'device')})")


def _check_index(cell: Any, where: str, n: int) -> None:
    if not 0 <= cell.first_update_idx < n:
        raise ValueError(f"{where}.first_update_idx = {cell.first_update_idx!r}: expected a device index in "
                         f"[0, {n - 1}] (the cell has {_plural(n, 'device')})")


# --------------------------------------------------------------------------
# Unit cells


@register_config_class
@dataclass(repr=False)
class UnitCell(ConfigBase):
    """The base of the unit cells: several pulsed devices per cross-point.

    Holds the list of devices and a seed; it has no update rule of its own,
    so a tile is made from one of its subclasses (``VectorUnitCell``,
    ``ReferenceUnitCell``, ``OneSidedUnitCell``, ``TransferCompound``).
    Decay, diffusion and reset act on each device as its config says.
    """

    unit_cell_devices: list[PulsedDevice] = _unit_cell_devices()
    construction_seed: int = _construction_seed("every device of the cell")


@register_config_class
@dataclass(repr=False)
class VectorUnitCell(UnitCell):
    """n devices per cross-point whose weighted sum is the weight: W = sum_k gamma_k w_k.

    gamma_k = ``gamma_vec[k]``, or 1/n for every device when ``gamma_vec``
    is empty. The update's pulse trains (``UpdateParameters``) go to every
    device, or to one device per batch row (each row of a step is one
    update cycle, as on aihwkit's CPU tile), as ``update_policy`` says;
    each device steps by its own rule and noise. The weight granularity
    that the pulse probabilities are scaled by is the mean of the devices'
    granularities. Written weights (``set_weights``) go to every device
    (to the device ``first_update_idx`` only with ``SINGLE_FIXED``; the
    others keep theirs), each clipped to its own bounds.
    """

    update_policy: VectorUnitCellUpdatePolicy = param(
        VectorUnitCellUpdatePolicy.ALL,
        doc="Which devices receive a batch row's pulses: all of them, a fixed one, one in turn, or one drawn "
            "at random (`VectorUnitCellUpdatePolicy`).")
    first_update_idx: int = param(
        0, check=Whole(ge=0),
        doc="Index of the device updated first: the only one with `SINGLE_FIXED`, the start of the turn with "
            "`SINGLE_SEQUENTIAL`.")
    gamma_vec: list[float] = _gamma_vec(
        "Weights gamma_k of the devices in W = sum_k gamma_k w_k, one per device; empty: 1/n each.")

    def check_consistency(self, where: str) -> None:
        _check_count(self, where, 1, None)
        n = len(self.unit_cell_devices)
        _check_vector_len(self, where, "gamma_vec", n)
        _check_index(self, where, n)


@register_config_class
@dataclass(repr=False)
class ReferenceUnitCell(UnitCell):
    """A device and a fixed reference device per cross-point: W = gamma_0 w_0 + gamma_1 w_1 = w_0 - w_1 by default.

    Only the device ``first_update_idx`` (0) receives update pulses; the
    other keeps its weight (0 after the tile is made) and is subtracted.
    Given one device config, it is used for both devices (each with its
    own device-to-device draws); given two, the first is the updated
    device and the second the reference. aihwkit silently discards
    devices beyond the second; fxanalog refuses more than two. Otherwise
    it behaves as a ``VectorUnitCell`` of two devices.
    """

    update_policy: VectorUnitCellUpdatePolicy = param(
        VectorUnitCellUpdatePolicy.SINGLE_FIXED,
        doc="Which device receives the pulses; keep `SINGLE_FIXED` (the reference must not move), as aihwkit "
            "advises.")
    first_update_idx: int = param(
        0, check=Whole(ge=0), doc="Index (0 or 1) of the device that receives the pulses; the other is the reference.")
    gamma_vec: list[float] = param(
        default_factory=lambda: [1.0, -1.0], check=NumberList(),
        doc="Weights of the two devices in W = gamma_0 w_0 + gamma_1 w_1; [1, -1] subtracts the reference "
            "(empty: 1/2 each).")

    def check_consistency(self, where: str) -> None:
        _check_count(self, where, 1, 2, ": one config serves both devices, a third would not be used")
        _check_vector_len(self, where, "gamma_vec", 2)
        _check_index(self, where, 2)


@register_config_class
@dataclass(repr=False)
class OneSidedUnitCell(UnitCell):
    """A pair of devices per cross-point, each only ever pulsed up: W = w_+ - w_-, with refresh.

    A pulse that would increase W is an up pulse on w_+, one that would
    decrease W an up pulse on w_- (so the pair moves one way each, and
    both drift towards their upper bounds). Both devices are built from
    the first config of ``unit_cell_devices`` (each with its own
    device-to-device draws); a second config, allowed as in aihwkit, must
    equal the first (aihwkit 1.1.0 does not use it). With ``copy_inverted``
    w_+ is used mirrored (as aihwkit's C++): its up pulses take its own
    down step, its bounds [b_min, b_max] become [-b_max, -b_min], the
    slopes of a linear step are w_-'s negated and swapped, the exponents
    of a power step w_-'s swapped, a reference negated.

    Refresh (``refresh_every`` > 0): every ``refresh_every`` updates (times
    the batch size with ``units_in_mbatch``), each column is read with the
    forward pass ``refresh_forward`` (w_+ and w_- separately). Where the
    larger of the two, divided by the device's w_max, exceeds
    ``refresh_upper_thres`` and the smaller exceeds ``refresh_lower_thres``,
    both devices are reset and the difference is written back onto the
    device that was larger, with the pulses of ``refresh_update``.
    """

    refresh_every: int = param(
        0, check=Whole(ge=0),
        doc="Refresh every this many updates (in batch rows; times the batch size with `units_in_mbatch`); "
            "0: no refresh.")
    units_in_mbatch: bool = param(
        True, doc="Count `refresh_every` in mini-batches (times the batch size) instead of batch rows.")
    refresh_upper_thres: float = param(
        0.75, check=Fraction("threshold"),
        doc="A cross-point is refreshed when the larger of its two weights, relative to w_max, exceeds this "
            "threshold (and the smaller exceeds `refresh_lower_thres`).")
    refresh_lower_thres: float = param(
        0.25, check=Fraction("threshold"),
        doc="The smaller of the two weights, relative to w_max, must exceed this for a refresh.")
    refresh_forward: IOParameters = param(
        default_factory=IOParameters,
        doc="Periphery of the reads of a refresh (noise, DAC, ADC of the forward pass that reads the devices).")
    refresh_update: UpdateParameters = param(
        default_factory=UpdateParameters,
        doc="How the difference read in a refresh is written back onto one device (pulse trains).")
    copy_inverted: bool = param(
        False,
        doc="Use w_+ mirrored: its up pulses take its own down step and its bounds are negated and swapped; "
            "the slopes (linear step) and exponents (power step) are w_-'s, swapped (aihwkit's C++).")

    def check_consistency(self, where: str) -> None:
        _check_count(self, where, 1, 2)
        devices = self.unit_cell_devices
        if len(devices) == 2 and devices[1] != devices[0]:
            raise ValueError(
                f"{where}.unit_cell_devices[1] = {devices[1]!r}: expected the same device config as "
                f"unit_cell_devices[0] = {devices[0]!r} (both devices of the pair are built from the first; "
                f"aihwkit 1.1.0 does not use a second config)")


@register_config_class
@dataclass(repr=False)
class TransferCompound(UnitCell):
    """Tiki-Taka: the update goes to a fast device w_0, whose columns are transferred now and then to w_1 (and on).

    n >= 2 devices per cross-point, W = sum_k gamma_k w_k with
    gamma_k = gamma^(n-1-k) (so W = gamma w_0 + w_1 for two devices), or
    ``gamma_vec``. Only w_0 receives the update pulses of ``update``, with
    the learning rate ``fast_lr`` (the optimizer's when 0). Every
    ``transfer_every`` updates (in mini-batches with ``units_in_mbatch``,
    otherwise in batch rows), ``n_reads_per_transfer`` columns of w_0
    (rows with ``transfer_columns = False``), the next ones in turn or
    from a random start with ``random_selection``, are read with one-hot
    inputs through the periphery of ``transfer_forward`` and written onto
    w_1 by pulses (``transfer_update``) with the one-hot vector and the
    read values, learning rate ``transfer_lr`` (times the optimizer's with
    ``scale_transfer_lr``). Device k transfers onto k + 1 in the same way,
    every transfer_every (m / n_reads_per_transfer)^k updates, m the
    tile's output size (its input size with ``transfer_columns = False``),
    unless ``transfer_every_vec`` says otherwise; the last device does not
    transfer (``no_self_transfer``). After a column is read it is reset
    with probability ``with_reset_prob``. The transfer's noise and bound
    management are off whatever ``transfer_forward`` says.

    The first device may differ from the others; the devices from index 1
    on must be one config (aihwkit builds them all from device 1 and drops
    the others; fxanalog refuses a list where they differ). See Gokmen and
    Haensch, Front. Neurosci. 14, 103 (2020).
    """

    gamma: float = param(
        0.0, check=Number(),
        doc="Weight of the devices in W: gamma_k = gamma^(n-1-k), so the last device counts 1 and the fast "
            "device gamma^(n-1) (0: the fast device is hidden); not used when `gamma_vec` is given.")
    gamma_vec: list[float] = _gamma_vec(
        "Weights gamma_k of the devices in W = sum_k gamma_k w_k, one per device, the last not 0; empty: "
        "from `gamma`.")
    transfer_every: float = param(
        1.0, check=Number(ge=0),
        doc="Transfer from device 0 every this many updates (mini-batches with `units_in_mbatch`, else batch "
            "rows; rounded); device k every transfer_every (m / n_reads_per_transfer)^k, m the tile's output "
            "size (input size for row transfer); 0: no transfer.")
    no_self_transfer: bool = param(
        True,
        doc="The last device gets no transfer period (it would transfer onto itself, which does nothing; `False` "
            "gives it one, to no effect, as in aihwkit).")
    transfer_every_vec: list[float] = param(
        default_factory=list, check=NumberList(),
        doc="The transfer periods of the devices, one per device (each >= 0, 0: that device does not "
            "transfer), instead of those derived from `transfer_every`; empty: derived.")
    units_in_mbatch: bool = param(
        True,
        doc="Count the transfer periods in mini-batches (times the batch size, rounded up) instead of batch rows.")
    n_reads_per_transfer: int = param(
        1, check=Whole(ge=1),
        doc="Columns (rows) read and written per transfer, consecutive and wrapping around (at most the size "
            "of the tile's input).")
    transfer_columns: bool = param(
        True,
        doc="Transfer columns, read with the forward pass; `False`: rows, read with the backward pass (its "
            "periphery still given by `transfer_forward`).")
    with_reset_prob: float = param(
        0.0, check=Fraction("probability"),
        doc="Probability that a column is reset on the source device after it is read (column transfer only).")
    random_selection: bool = param(
        False, doc="Start each transfer at a random column (row) instead of the one after the last transferred.")
    fast_lr: float = param(
        1.0, check=Number(ge=0),
        doc="Learning rate of the update of the fast device, fixed whatever the optimizer's schedule; 0: the "
            "optimizer's learning rate.")
    transfer_lr: float = param(
        1.0, check=Number(ge=0),
        doc="Learning rate of the transfer's write (times the optimizer's with `scale_transfer_lr`).")
    transfer_lr_vec: list[float] = param(
        default_factory=list, check=NumberList(),
        doc="The transfer learning rate of each device (from device k onto k + 1), each >= 0; empty: "
            "`transfer_lr` for all.")
    scale_transfer_lr: bool = param(
        True, doc="Multiply the transfer learning rate by the optimizer's current learning rate.")
    transfer_forward: IOParameters = param(
        default_factory=IOParameters,
        doc="Periphery of the transfer's reads (DAC, ADC, noise); its noise and bound management are not used.")
    transfer_update: UpdateParameters = param(
        default_factory=UpdateParameters,
        doc="How the transfer's reads are written onto the next device (pulse trains and their management).")

    def check_consistency(self, where: str) -> None:
        _check_count(self, where, 2, None)
        devices = self.unit_cell_devices
        n = len(devices)
        for k in range(2, n):
            if devices[k] != devices[1]:
                raise ValueError(
                    f"{where}.unit_cell_devices[{k}] = {devices[k]!r}: expected the same device config as "
                    f"unit_cell_devices[1] = {devices[1]!r} (only the first device may differ; aihwkit builds "
                    f"every slow device from device 1)")
        for name in ("gamma_vec", "transfer_every_vec", "transfer_lr_vec"):
            _check_vector_len(self, where, name, n)
        if self.gamma_vec and self.gamma_vec[-1] == 0:
            raise ValueError(f"{where}.gamma_vec = {self.gamma_vec!r}: expected a last entry other than 0 (the "
                             f"last device must count in the weight)")
        for name in ("transfer_every_vec", "transfer_lr_vec"):
            value = getattr(self, name)
            if any(v < 0 for v in value):
                raise ValueError(f"{where}.{name} = {value!r}: expected numbers >= 0")
        if self.with_reset_prob > 0 and not self.transfer_columns:
            raise ValueError(f"{where}.with_reset_prob = {self.with_reset_prob!r}: a reset needs "
                             f"transfer_columns = True (got False); expected 0.0 with row transfer")


# --------------------------------------------------------------------------
# Digital rank update


_ANALOG_DEVICE = (
    "a pulsed device config (a PulsedDevice such as ConstantStepDevice) or a VectorUnitCell, ReferenceUnitCell "
    "or OneSidedUnitCell (not a TransferCompound)")


@register_config_class
@dataclass(repr=False)
class DigitalRankUpdateCell(ConfigBase):
    """The base of the cells that compute the rank update in digital: one analog device (or unit cell) per cross-point.

    The forward and backward passes use the analog device; the update
    d x^T is accumulated digitally and written to the device by pulses.
    It has no rule of its own: a tile is made from a subclass
    (``MixedPrecisionCompound``). Deviation from aihwkit: ``device``
    defaults to ``ConstantStepDevice()``, since aihwkit's default (an
    empty ``VectorUnitCell``) cannot make a tile.
    """

    device: Union[PulsedDevice, UnitCell] = param(
        default_factory=ConstantStepDevice,
        check=InstanceOf((PulsedDevice, VectorUnitCell, ReferenceUnitCell, OneSidedUnitCell), _ANALOG_DEVICE),
        doc="The analog device of every cross-point that the forward and backward passes read and the "
            "transfer writes.")
    construction_seed: int = _construction_seed("the device")


@register_config_class
@dataclass(repr=False)
class MixedPrecisionCompound(DigitalRankUpdateCell):
    """Mixed precision: the update accumulates in a digital matrix chi, written to the device in whole steps.

    Each update adds lr d x^T to the floating-point matrix chi, x and d
    first quantized when ``n_x_bins`` / ``n_d_bins`` > 0 (to multiples of
    max|x| / (n_x_bins // 2), clipped to +- max|x|, and likewise d). Every
    ``transfer_every`` mini-batches, ``n_rows_per_transfer`` rows of chi
    (all with -1; a row is an output), the next ones in turn or from a
    random row with ``random_row``, are written to the device: each entry
    gives n = trunc(chi / eps), eps the granularity (``granularity``, or
    the device's weight granularity when 0), and the row of n is written
    by the pulse trains of the config's ``update`` (with update and
    bit-length management on) with learning rate eps transfer_lr, a weight
    change of about n eps transfer_lr; chi keeps the remainder chi - n eps.
    See Nandakumar et al., Front. Neurosci. 14, 406 (2020).

    Deviation from aihwkit: ``device`` defaults to ``ConstantStepDevice()``
    (aihwkit's default, an empty ``VectorUnitCell``, cannot make a tile).
    """

    transfer_every: int = param(
        1, check=Whole(ge=0),
        doc="Write chi to the device every this many mini-batches (times the batch size in batch rows); "
            "0: never.")
    n_rows_per_transfer: int = param(
        -1, check=Whole(ge=-1),
        doc="Rows of chi written per transfer, consecutive and wrapping around; -1: all rows; 0: none.")
    random_row: bool = param(
        False, doc="Start each transfer at a random row instead of the one after the last written.")
    granularity: float = param(
        0.0, check=Number(ge=0),
        doc="Weight change eps of one transfer pulse: chi gives trunc(chi / eps) pulses; 0: the device's weight "
            "granularity.")
    transfer_lr: float = param(
        1.0, check=Number(ge=0),
        doc="Scale of the write to the device: a pulse count n moves the weight by about n eps transfer_lr.")
    n_x_bins: int = param(
        0, check=Whole(ge=0),
        doc="Quantize x before the outer product to multiples of max|x| / (n_x_bins // 2), symmetric "
            "around 0; 0: not quantized (1 is refused: no step).")
    n_d_bins: int = param(
        0, check=Whole(ge=0),
        doc="Quantize d before the outer product to multiples of max|d| / (n_d_bins // 2), symmetric "
            "around 0; 0: not quantized (1 is refused: no step).")
    stoc_round_x: bool = param(True, doc="Round x stochastically when it is quantized (`n_x_bins` > 0).")
    stoc_round_d: bool = param(True, doc="Round d stochastically when it is quantized (`n_d_bins` > 0).")

    def check_consistency(self, where: str) -> None:
        for name in ("n_x_bins", "n_d_bins"):
            if getattr(self, name) == 1:
                raise ValueError(f"{where}.{name} = 1: expected 0 (no quantization) or a whole number >= 2 (one "
                                 f"bin has no step: n // 2 = 0)")
