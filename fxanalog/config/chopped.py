"""Buffered, chopped and dynamic Tiki-Taka (aihwkit 1.1.0's names, fields and defaults).

Three compounds that refine ``TransferCompound`` (Tiki-Taka): the reads of
the fast device A go first into a digital buffer H, one entry per
cross-point, and only whole steps of H are written as pulses onto the slow
device C:

* ``BufferedTransferCompound`` (TTv2, Gokmen, Front. Artif. Intell. 4,
  699148 (2021)): H += lr * read; where |H| reaches a threshold, one
  transfer write;
* ``ChoppedTransferCompound`` (c-TTv2, Rasch et al., arXiv:2305.10296
  (2023)): the same with random sign changes (choppers) of the gradient
  written onto A, undone in the read;
* ``DynamicTransferCompound`` (AGAD, same paper): the buffer accumulates the
  difference between the read and the mean of the reads of the previous
  chopper period.

The rules are those of aihwkit 1.1.0's C++ CPU simulator; where its Python
documentation says otherwise, the field's doc here says which one is
followed. The state (buffer, choppers, means) lives in
``fxanalog.cells``; docs/tiki-taka.md writes the rules out.
"""

from __future__ import annotations

from dataclasses import dataclass

from fxanalog.config.base import Fraction, Nested, Number, param, register_config_class
from fxanalog.config.compounds import TransferCompound
from fxanalog.config.training import UpdateParameters

__all__ = ["BufferedTransferCompound", "ChoppedTransferCompound", "DynamicTransferCompound"]


def _one_pulse_update() -> UpdateParameters:
    """aihwkit's transfer write of the buffered compounds: at most one pulse per cross-point, no management."""
    return UpdateParameters(desired_bl=1, update_bl_management=False, update_management=False)


def _transfer_update():
    return param(
        default_factory=_one_pulse_update, check=Nested(UpdateParameters),
        doc="How the buffer's whole steps are written onto the slow device: by default one pulse slot "
            "(`desired_bl` 1, no update or bit-length management), so a write moves a weight by at most one "
            "step; `desired_bl` also caps the steps taken from the buffer per transfer.")


def _refuse(cell, where: str, name: str, expected, why: str) -> None:
    value = getattr(cell, name)
    if value != expected:
        raise ValueError(f"{where}.{name} = {value!r}: expected {expected!r} ({type(cell).__name__}: {why})")


@register_config_class
@dataclass(repr=False)
class BufferedTransferCompound(TransferCompound):
    """TTv2: Tiki-Taka whose reads of device k accumulate in a digital buffer H_k before they reach device k + 1.

    The update and the transfer schedule are those of ``TransferCompound``.
    At a transfer, each column j read from device k (the values v_i, with
    the ``transfer_forward`` periphery) is added to the buffer:
    H_ij += |lr_t| v_i, with lr_t = ``transfer_lr`` (times the optimizer's
    learning rate with ``scale_transfer_lr``, times gamma_k / gamma_{k+1}
    when both are positive). The whole steps n_ij = trunc(H_ij / (thres_scale
    dw)), clipped to +- ``transfer_update.desired_bl`` (dw the weight
    granularity of device k + 1), are written onto device k + 1 by one pulsed
    update (x the unit vector of column j, d = -n, learning rate
    ``step`` dw): about n_ij steps up. Where n_ij != 0 the buffer keeps
    ``momentum`` H_ij (``forget_buffer``) or H_ij - (1 - momentum) n_ij
    thres_scale dw. The weight is sum_k gamma_k w_k as in ``TransferCompound``.

    ``with_reset_prob`` must be 0 (aihwkit's buffered transfer ignores it).
    See Gokmen, Front. Artif. Intell. 4, 699148 (2021).
    """

    thres_scale: float = param(
        1.0, check=Number(gt=0),
        doc="Threshold of the buffer in units of the slow device's weight granularity dw: a buffer entry "
            "gives trunc(H / (thres_scale dw)) steps.")
    step: float = param(
        1.0, check=Number(gt=0),
        doc="Size of a transfer step in units of dw: the write's learning rate is step dw.")
    momentum: float = param(
        0.1, check=Fraction("momentum"),
        doc="Fraction of the buffer kept after a transfer: momentum H with `forget_buffer`, else "
            "H - (1 - momentum) n thres_scale dw.")
    forget_buffer: bool = param(
        True,
        doc="After a transfer, set the buffer to momentum H (forgetting what the capped write could not "
            "carry) instead of subtracting what was transferred.")
    transfer_update: UpdateParameters = _transfer_update()

    def check_consistency(self, where: str) -> None:
        super().check_consistency(where)
        _refuse(self, where, "with_reset_prob", 0.0,
                "aihwkit's buffered transfer does not reset the columns it reads")


@register_config_class
@dataclass(repr=False)
class ChoppedTransferCompound(TransferCompound):
    """c-TTv2: buffered Tiki-Taka on two devices, the fast device's gradient chopped by random sign changes.

    Two devices A (fast, index 0) and C (slow), W = gamma A + C. Each input
    column j has a chopper c_j = +-1 and each output row i one per tile,
    c'_i = +-1 (with ``transfer_columns = False`` the roles swap). The SGD
    update of a batch row goes onto A as c_j c'_i times the usual pulses
    (learning rate ``fast_lr``; with ``auto_scale`` fast_lr BL dw_A /
    (m_x m_d), m_x, m_d running means of the rows' largest |x| and |d| per
    tile). Every ``transfer_every`` rows (mini-batches with
    ``units_in_mbatch``), each tile reads its next column j of A (one read,
    in order) and adds it, sign corrected, to the buffer:
    H_ij += c_j c'_i v_i |lr_t| / g, g = ``buffer_granularity`` dw_A
    (times ``auto_granularity`` / (in_size |transfer_every|) when that is
    > 0; with ``correct_gradient_magnitudes`` g dw_C / dw_A and a further
    division by the fast learning rate). Where |H_ij| >= 1, n = trunc(H)
    clipped to +- ``transfer_update.desired_bl`` steps go onto C (a pulsed
    update, x the unit vector of column j, d = -n, learning rate ``step``
    dw_C), and H becomes ``momentum`` H (``forget_buffer``) or
    H - (1 - momentum) n. ``no_buffer``: H starts from 0 at every read.

    After column j is read its chopper flips with probability
    ``in_chop_prob`` (``in_chop_random``), or, regularly, all columns of a
    tile flip during every max(ceil(1 / in_chop_prob), 2)-th sweep over
    them; after a tile's last column each output chopper flips with
    probability ``out_chop_prob``. With the chopper probabilities 0 this
    is ``BufferedTransferCompound`` with a threshold at one buffer unit.

    Requires exactly 2 devices, ``n_reads_per_transfer`` 1,
    ``random_selection`` False and ``with_reset_prob`` 0 (as aihwkit).
    See Rasch et al., arXiv:2305.10296 (2023).
    """

    in_chop_prob: float = param(
        0.1, check=Fraction("probability"),
        doc="Switching probability of an input (column) chopper, drawn once after each read of its column "
            "(with `in_chop_random = False`: the switching frequency); 0: no input choppers.")
    in_chop_random: bool = param(
        True,
        doc="Switch the input choppers at random; `False`: regularly, all columns of a tile during every "
            "max(ceil(1 / in_chop_prob), 2)-th sweep over them (aihwkit's docs say MIN(1 / in_chop_prob, 2); its "
            "C++, followed here, takes the max).")
    out_chop_prob: float = param(
        0.0, check=Fraction("probability"),
        doc="Switching probability of each output (row) chopper, drawn once after every full sweep over a "
            "tile's columns; 0: no output choppers.")
    buffer_granularity: float = param(
        1.0, check=Number(ge=0),
        doc="Buffer unit in units of the fast device's weight granularity: a read adds v |lr| / (buffer_granularity "
            "dw_A) to the buffer, and one unit of the buffer is one step onto the slow device (0: 1).")
    auto_granularity: float = param(
        0.0, check=Number(ge=0),
        doc="When > 0, the buffer unit is further multiplied by auto_granularity / (in_size |transfer_every|): "
            "about the number of reads needed to cross it (typical: 1000).")
    step: float = param(
        1.0, check=Number(gt=0),
        doc="Size of a transfer step in units of the slow device's weight granularity dw_C: the write's "
            "learning rate is step dw_C.")
    momentum: float = param(
        0.0, check=Fraction("momentum"),
        doc="Fraction of the buffer kept after a transfer: momentum H with `forget_buffer`, else H - (1 - "
            "momentum) n.")
    forget_buffer: bool = param(
        True,
        doc="After a transfer, set the buffer to momentum H instead of subtracting (1 - momentum) n.")
    no_buffer: bool = param(
        False, doc="Do not keep the buffer between reads (each read starts from 0: Tiki-Taka without a buffer).")
    units_in_mbatch: bool = param(
        False,
        doc="Count `transfer_every` in mini-batches (times the batch size, rounded up) instead of batch rows.")
    auto_scale: bool = param(
        False,
        doc="Scale the fast device's learning rate by the running means m_x, m_d of the rows' largest |x| "
            "and |d| (per tile): fast_lr desired_bl dw_A / (m_x m_d).")
    auto_momentum: float = param(
        0.99, check=Fraction("momentum"),
        doc="Momentum of the running means of `auto_scale`: each row moves them by (1 - auto_momentum) / "
            "batch size towards its own maxima.")
    correct_gradient_magnitudes: bool = param(
        False,
        doc="Divide the buffer's increment by the fast learning rate and measure the buffer unit in dw_C "
            "instead of dw_A (so that the slow device receives the gradient's magnitude).")
    transfer_update: UpdateParameters = _transfer_update()

    def check_consistency(self, where: str) -> None:
        super().check_consistency(where)
        name = type(self).__name__
        n = len(self.unit_cell_devices)
        if n != 2:
            raise ValueError(f"{where}.unit_cell_devices: {n} devices: expected exactly 2 pulsed device configs "
                             f"({name} has a fast and a slow device)")
        why = "the choppers need one column read per transfer, in order"
        _refuse(self, where, "n_reads_per_transfer", 1, why)
        _refuse(self, where, "random_selection", False, why)
        _refuse(self, where, "with_reset_prob", 0.0, "aihwkit's chopped transfer does not reset the columns it reads")


@register_config_class
@dataclass(repr=False)
class DynamicTransferCompound(ChoppedTransferCompound):
    """AGAD: chopped Tiki-Taka whose buffer accumulates the change of A's reads against the previous chopper period.

    As ``ChoppedTransferCompound`` (two devices, choppers, buffer, fast
    learning rate, transfer write), except for what enters the buffer. Each
    cross-point keeps a running mean m_ij of its reads v (not sign
    corrected): m <- (1 - s) m + s v with s = min(``tail_weightening`` / N,
    1), N = max(ceil(1 / in_chop_prob), 2) the reads per chopper period,
    and p_ij, the mean at the end of the previous period: when column j's
    chopper has just switched, p_ij <- m_ij. A read adds
    c_j c'_i (v_i - p_ij) |lr_t| / g to H (g as in ``ChoppedTransferCompound``;
    divided further by min(sample, 1 / dw_A) with
    ``experimental_correct_accumulation``, sample = 1..N the read's place
    in its period). Where |H| >= 1, n = trunc(H) (capped at
    +- desired_bl) is written onto C as in ``ChoppedTransferCompound`` once
    more than N sweeps are done, and H becomes momentum H
    (``forget_buffer``) or H - (1 - momentum) n, then clipped to +-
    ``buffer_cap`` desired_bl when ``buffer_cap`` > 0. Column j's chopper
    switches when it is read during every N-th sweep over the tile's
    columns (so a period is N reads of the column), and also at random
    with probability ``in_chop_prob`` after a read with ``in_chop_random``.

    aihwkit's Python docs mention a running standard deviation that gates
    the transfer and a momentum matrix; its C++ simulator (followed here)
    has neither: ``momentum`` is the buffer's, as in the chopped compound.
    Nor does its CPU code switch output choppers here: ``out_chop_prob``
    must be 0.
    See Rasch et al., arXiv:2305.10296 (2023).
    """

    in_chop_prob: float = param(
        0.1, check=Fraction("probability"),
        doc="Frequency of the input chopper switches: a column's chopper switches every "
            "N = max(ceil(1 / in_chop_prob), 2) reads of it (and with this probability after each read when "
            "`in_chop_random`).")
    in_chop_random: bool = param(
        False,
        doc="Also switch a column's chopper at random after a read, with probability `in_chop_prob` (the "
            "period count is then approximate, as in aihwkit).")
    experimental_correct_accumulation: bool = param(
        False,
        doc="Divide a read's contribution by its place in the chopper period (at most 1 / dw_A), correcting "
            "the accumulation of repeated reads.")
    buffer_cap: float = param(
        0.0, check=Number(ge=0),
        doc="Without `forget_buffer`: clip the buffer after a transfer to +- buffer_cap desired_bl (0: no clip).")
    tail_weightening: float = param(
        5.0, check=Number(gt=0),
        doc="Weight of the recent reads in the running mean: each read moves it by min(tail_weightening / N, 1) "
            "(N reads per chopper period), weighting the end of the period more when > 1.")

    def check_consistency(self, where: str) -> None:
        super().check_consistency(where)
        _refuse(self, where, "out_chop_prob", 0.0,
                "aihwkit's dynamic transfer never switches the output choppers")
