"""How a training step becomes device pulses: ``UpdateParameters`` (aihwkit's names and defaults).

A tile trained on its devices is updated, batch row by batch row, with the
layer's raw input x (before the DAC) and the raw gradient d of its output
(before the backward periphery). For each row the update chooses a number
of pulse slots BL and two probability scales, A for the error lines and B
for the input lines, from the learning rate lr, the row's maxima
x_max = max_j |x_j|, d_max = max_i |d_i| and the device's weight
granularity g (the weight change of a typical pulse, see each device class).
A row with x_max = 0 or d_max = 0 makes no pulse. ``PulseType`` says how
A, B and BL turn into pulses.
"""

from __future__ import annotations

from dataclasses import dataclass

from fxanalog.config.base import ConfigBase, Number, Whole, param, register_config_class
from fxanalog.config.enums import PulseType

__all__ = ["UpdateParameters"]

# A probability resolution: a bin width in (0, 1], or <= 0 for none.
# aihwkit's docs also allow "a number of steps" (> 1), but its C++ (1.1.0) uses
# the value as the bin width unconverted (the conversion's result is discarded),
# so a value > 1 rounds every probability to 0 or to >= 1. It is refused here.
_RESOLUTION = Number(le=1.0, note="(a bin width in (0, 1]; <= 0: off)")


@register_config_class
@dataclass(repr=False)
class UpdateParameters(ConfigBase):
    """How the (x, d) of a training step become pulses on a tile's devices (pulse trains, their management).

    Per batch row, with lr the learning rate, g the device's weight
    granularity, d_val = um_grad_scale d_max and k = lr x_max d_val / g:

    * ``update_bl_management`` (default): BL = min(ceil(k), desired_bl),
      A = B = sqrt(lr / (g BL));
    * otherwise, ``fixed_bl`` (default): BL = desired_bl,
      A = B = sqrt(lr / (g desired_bl)); not ``fixed_bl``: the same unless
      g desired_bl < lr, then A = B = 1 and BL = ceil(lr / g);
    * ``update_management`` (forced on by ``update_bl_management``): when
      k > desired_bl, d_val is first multiplied by desired_bl / k; then
      A *= sqrt(x_max / d_val) and B *= sqrt(d_val / x_max).

    With stochastic pulse trains, in each slot input line j fires with
    probability B |x_j| and error line i
    with probability A |d_i| (a probability >= 1 always fires), both first
    quantized by ``res``. A B BL = lr / g in every case but the A = B = 1 one,
    so that, as long as no probability exceeds 1, the expected number of
    coincidences at (i, j) is lr |d_i x_j| / g.
    """

    desired_bl: int = param(
        31, check=Whole(ge=1),
        doc="Number of pulse slots BL per batch row: the most a row may use with `update_bl_management`, "
            "otherwise the number every row uses (see `fixed_bl`).")
    fixed_bl: bool = param(
        True,
        doc="Without `update_bl_management`: `True` uses BL = desired_bl and A = B = sqrt(lr / (g desired_bl)) "
            "(g: the device's weight granularity); `False` does the same unless g desired_bl < lr, then "
            "A = B = 1 and BL = ceil(lr / g). No effect with `update_bl_management`.")
    pulse_type: PulseType = param(
        PulseType.STOCHASTIC_COMPRESSED,
        doc="How the update is made: stochastic pulse trains (`STOCHASTIC_COMPRESSED`, `STOCHASTIC`), "
            "deterministic counts (`MEAN_COUNT`, `DETERMINISTIC_IMPLICIT`), or no pulses (`NONE`: exact "
            "floating-point update; `NONE_WITH_DEVICE`: the same, clipped to the device bounds).")
    res: float = param(
        0.0, check=_RESOLUTION,
        doc="Bin width of the firing probabilities B |x_j| and A |d_i|: each is rounded to a multiple of it "
            "before the pulse trains are drawn (`STOCHASTIC*`, `MEAN_COUNT`); <= 0: not quantized.")
    x_res_implicit: float = param(
        0.0, check=_RESOLUTION,
        doc="`DETERMINISTIC_IMPLICIT` only: bin width of the scaled inputs B |x_j| (rounded to a multiple of "
            "it, then clipped to [0, 1]); <= 0: not quantized.")
    d_res_implicit: float = param(
        0.0, check=_RESOLUTION,
        doc="`DETERMINISTIC_IMPLICIT` only: bin width of the scaled errors A |d_i|, as `x_res_implicit`.")
    d_sparsity: bool = param(
        False,
        doc="Record the fraction of error lines without pulses in the last update (aihwkit reads it only in "
            "chopped transfer compounds); it does not change the update of a single device.")
    sto_round: bool = param(
        False,
        doc="Round the quantized probabilities stochastically (p -> r round(p / r + u - 1/2), u uniform in "
            "[0, 1), r the bin width) instead of to the nearest multiple; no effect when the bin width is <= 0.")
    update_bl_management: bool = param(
        True,
        doc="Choose BL per batch row: k = lr x_max d_val / g (d_val = um_grad_scale d_max), "
            "BL = min(ceil(k), desired_bl), A = B = sqrt(lr / (g BL)); turns `update_management` on.")
    update_management: bool = param(
        True,
        doc="Balance the two lines per batch row: A *= sqrt(x_max / d_val), B *= sqrt(d_val / x_max) "
            "(d_val = um_grad_scale d_max, times desired_bl / k when k > desired_bl), so that the largest "
            "|x_j| and |d_i| fire alike. Always on with `update_bl_management`.")
    um_grad_scale: float = param(
        1.0, check=Number(gt=0),
        doc="Factor on d_max in the update and bit-length management (d_val = um_grad_scale d_max); below 1 "
            "the error lines saturate (probability >= 1) at smaller learning rates.")
