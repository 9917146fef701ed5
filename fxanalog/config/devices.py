"""The devices of tiles trained by pulses (aihwkit's names, fields and defaults).

A device config says how one cross-point's weight responds to one update
pulse, and how its parameters vary from cross-point to cross-point. The
docstrings below state the semantics; they follow aihwkit 1.1.0's C++
simulator where its Python docs say otherwise (the comments say where).

Notation: (i, j) is a cross-point (output i, input j); xi is a standard
normal draw, a fresh one for every quantity, cross-point and pulse; dw+ and
dw- are the cross-point's up and down step sizes and [b_min, b_max] its
bounds, drawn when the tile is made (``PulsedDevice``); an *up* pulse
increases the weight. With a positive learning rate a pulse at (i, j) goes
down when d_i x_j > 0 and up when d_i x_j < 0 (``UpdateParameters``,
``PulseType``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fxanalog.config.base import ConfigBase, Fraction, Number, Whole, param, register_config_class

__all__ = [
    "IdealDevice",
    "PulsedDevice",
    "ConstantStepDevice",
    "LinearStepDevice",
    "SoftBoundsDevice",
    "SoftBoundsReferenceDevice",
    "ExpStepDevice",
    "PowStepDevice",
]

# aihwkit's `drift` sub-parameter of the devices (a power-law drift applied on
# an explicit call) is not part of these configs.


def _write_noise_std() -> Any:
    # aihwkit's Python docs of ExpStepDevice and PowStepDevice give the write
    # noise as write_noise_std * xi; its C++ scales it by dw_min for every
    # device (getScaledWriteNoise). The C++ is followed.
    return param(
        0.0, check=Number(ge=0),
        doc="Write noise: > 0 keeps a hidden weight w that pulses, decay, diffusion and clipping act on, while "
            "the forward and backward passes see w + write_noise_std dw_min xi, redrawn for a cross-point at "
            "each of its pulses and for every cross-point after each decay, diffusion, clipping or reset; "
            "0: no write noise.")


def _apply_write_noise_on_set() -> Any:
    return param(
        True,
        doc="With `write_noise_std` > 0: weights written to the tile (`set_weights`, after clipping to the "
            "bounds) become the hidden weights, and the seen weights get a fresh write noise (`True`) or equal "
            "them (`False`).")


def _mult_noise() -> Any:
    return param(
        True,
        doc="Cycle-to-cycle noise multiplies the whole step, (dw + a w)(1 + dw_min_std xi) (`True`), or only "
            "its constant part, dw (1 + dw_min_std xi) + a w (`False`).")


def _reverse_up() -> Any:
    return param(
        False,
        doc="Make the up step grow with the weight: the reference of the up slope becomes w_min - "
            "reverse_offset (b_min - reverse_offset with the device's own bounds) instead of the upper bound. "
            "Needs `mult_noise`.")


def _reverse_down() -> Any:
    return param(
        False,
        doc="Make the down step grow as the weight decreases: the reference of the down slope becomes "
            "w_max + reverse_offset (b_max + reverse_offset) instead of the lower bound. Needs `mult_noise`.")


def _reverse_offset() -> Any:
    return param(
        0.01, check=Number(ge=0),
        doc="Distance of the reference of a reversed slope beyond the opposite bound, so that the reversed "
            "step does not vanish at that bound.")


def _check_reverse_needs_mult_noise(device: Any, where: str) -> None:
    if (device.reverse_up or device.reverse_down) and not device.mult_noise:
        raise ValueError(
            f"{where}.mult_noise = False: reverse_up / reverse_down need mult_noise = True (got reverse_up = "
            f"{device.reverse_up!r}, reverse_down = {device.reverse_down!r})")


# --------------------------------------------------------------------------
# Ideal device


@register_config_class
@dataclass(repr=False)
class IdealDevice(ConfigBase):
    """An ideal device: the exact floating-point update W -= lr sum_b d_b x_b^T, without pulses or bounds.

    The forward and backward passes keep the non-idealities of their
    ``IOParameters``; the pulse settings of ``UpdateParameters`` are not
    used. Nothing is drawn per cross-point. After each optimizer step,
    diffusion w += diffusion xi when ``diffusion`` > 0, then decay
    w *= 1 - 1/lifetime when ``lifetime`` > 1 (no decay for a lifetime
    <= 1), neither clipped. A reset sets w = reset_std xi.
    """

    construction_seed: int = param(
        0, check=Whole(ge=0),
        doc="Seed of the device-to-device draws; an ideal device draws none (kept for aihwkit's configs).")
    diffusion: float = param(
        0.0, check=Number(ge=0),
        doc="After each optimizer step every weight moves by diffusion xi (unbounded); 0: off.")
    lifetime: float = param(
        0.0, check=Number(ge=0),
        doc="Decay: after each optimizer step every weight is multiplied by 1 - 1/lifetime when lifetime > 1; "
            "no decay for a lifetime <= 1 (0: off).")
    reset_std: float = param(
        0.01, check=Number(ge=0), doc="A reset sets each weight to reset_std xi.")


# --------------------------------------------------------------------------
# Pulsed devices


@register_config_class
@dataclass(repr=False)
class PulsedDevice(ConfigBase):
    """The base of the pulsed devices: per-cross-point step sizes and bounds, clipping, decay, diffusion, reset.

    When a tile is made, each cross-point draws, once:

    * bounds b_max = w_max (1 + w_max_dtod xi), b_min = w_min (1 + w_min_dtod xi);
      with ``enforce_consistency``, swapped when b_min > b_max, then
      b_max = |b_max| and b_min = -|b_min|; without it, both set to their
      mean when b_min > b_max (the weight then cannot move);
    * step sizes dw+ = (min(up_down, 0) + gain + r) dw_min and
      dw- = (-max(up_down, 0) + gain - r) dw_min, with gain = 1 + dw_min_dtod xi
      (exp(dw_min_dtod xi) with ``dw_min_dtod_log_normal``) and
      r = up_down_dtod xi; both replaced by their absolute values with
      ``enforce_consistency``. So up_down > 0 shortens the down steps and
      up_down < 0 the up steps;
    * with probability ``corrupt_devices_prob``, a stuck cross-point:
      dw+ = dw- = 0 and b_min = b_max = a value drawn uniformly in
      [max(min(b_min, b_max), -c), min(max(b_min, b_max), c)],
      c = ``corrupt_devices_range``;
    * with ``perfect_bias``, the cross-points of the bias column (the last
      input line, where the tile holds the bias: ``mapping.digital_bias =
      False``) then get dw+ = dw- = dw_min and bounds 100 w_min, 100 w_max;
    * a diffusion rate rho = |diffusion (1 + diffusion_dtod xi)|, a reset bias
      beta = reset + reset_dtod xi and, when lifetime > 0, a decay factor
      delta = 1 - 1/t with t = lifetime (1 + lifetime_dtod xi), or delta = 0
      when t <= 1.

    A pulse applies the device's step (each subclass states it) at the
    weight left by the previous pulse, with its own cycle-to-cycle draw, and
    clips the weight to [b_min, b_max] at once. Weights written to the tile
    are clipped to the bounds of their cross-points. After each optimizer
    step: diffusion w += rho xi when diffusion > 0, then decay
    w = (w - beta) delta + beta when lifetime > 0, each clipped to the
    bounds. A reset sets w = beta + reset_std xi, clipped.

    The weight granularity g (the weight change of a typical pulse, which
    ``UpdateParameters`` scales the pulse probabilities by) is dw_min unless
    a subclass says otherwise. A ``PulsedDevice`` itself steps as a
    ``ConstantStepDevice`` (aihwkit refuses it when a tile is made).
    """

    # Where aihwkit's Python docs and its C++ differ, the C++ is followed:
    # - up_down: the docs give dw^d = d dw_min (1 + d beta + sigma xi) with
    #   beta = up_down + up_down_dtod xi (the bias on both directions); the C++
    #   puts up_down on one direction only (min(up_down, 0) up, -max(up_down, 0)
    #   down) and up_down_dtod as +-r, as written above.
    # - reset_dtod: the docs give beta = reset (1 + reset_dtod xi); the C++
    #   draws beta = reset + reset_dtod xi.
    # - The C++ silently raises a negative reset, reset_dtod, reset_std,
    #   diffusion or lifetime to 0; they are refused here.
    # - The C++ refuses bounds [w_min, w_max] that do not contain 0; so do we.
    construction_seed: int = param(
        0, check=Whole(ge=0),
        doc="Seed of the device-to-device draws made when a tile is made: 0 draws them from the ordinary "
            "random stream; another value from a generator seeded with it (tiles of one shape made with the "
            "same seed get the same device parameters).")
    corrupt_devices_prob: float = param(
        0.0, check=Fraction("probability"),
        doc="Probability that a cross-point is stuck: its two bounds set to one value drawn uniformly within "
            "its bounds and [-corrupt_devices_range, corrupt_devices_range], its steps 0.")
    corrupt_devices_range: float = param(
        0.1, check=Number(ge=0), doc="Half-width of the range around 0 in which stuck cross-points are stuck.")
    diffusion: float = param(
        0.0, check=Number(ge=0),
        doc="Diffusion: after each optimizer step w += rho xi, clipped to the bounds, with the cross-point's "
            "rate rho = |diffusion (1 + diffusion_dtod xi)|; 0: off.")
    diffusion_dtod: float = param(
        0.0, check=Number(ge=0), doc="Relative device-to-device spread of the diffusion rate.")
    dw_min: float = param(
        0.001, check=Number(gt=0),
        doc="Mean step size: dw+ = (min(up_down, 0) + gain + r) dw_min, dw- = (-max(up_down, 0) + gain - r) "
            "dw_min, with gain = 1 + dw_min_dtod xi and r = up_down_dtod xi drawn per cross-point.")
    dw_min_dtod: float = param(
        0.3, check=Number(ge=0),
        doc="Relative device-to-device spread of the step sizes: gain = 1 + dw_min_dtod xi, common to dw+ and "
            "dw-.")
    dw_min_dtod_log_normal: bool = param(
        False, doc="Draw the gain log-normal, gain = exp(dw_min_dtod xi), instead of 1 + dw_min_dtod xi.")
    dw_min_std: float = param(
        0.3, check=Number(ge=0),
        doc="Cycle-to-cycle noise of a step, relative to it: each pulse's step is multiplied by "
            "1 + dw_min_std xi, a fresh xi per pulse (the additive forms of `LinearStepDevice`, "
            "`SoftBoundsDevice` and `ExpStepDevice` are stated there).")
    enforce_consistency: bool = param(
        True,
        doc="When the tile is made: swap bounds drawn as b_min > b_max, then make b_max >= 0 >= b_min and both "
            "step sizes positive (absolute values). `False`: crossed bounds are both set to their mean (the "
            "weight cannot move) and a negative step size reverses the pulse's direction.")
    lifetime: float = param(
        0.0, check=Number(ge=0),
        doc="Decay: after each optimizer step w = (w - beta) delta + beta, clipped to the bounds, with "
            "delta = 1 - 1/t for the cross-point's t = lifetime (1 + lifetime_dtod xi), delta = 0 when t <= 1; "
            "beta the reset bias; 0: off.")
    lifetime_dtod: float = param(
        0.0, check=Number(ge=0), doc="Relative device-to-device spread of the lifetime.")
    perfect_bias: bool = param(
        False,
        doc="aihwkit's: the cross-points of the bias column (the last input, where the tile holds the bias: "
            "`mapping.digital_bias = False`) get dw+ = dw- = dw_min and bounds 100 w_min, 100 w_max. Kept for "
            "aihwkit configs; fxanalog refuses the analog bias on pulsed devices, so no tile has that column.")
    reset: float = param(
        0.0, check=Number(ge=0),
        doc="Mean of the reset bias beta = reset + reset_dtod xi: the value a reset sets and the weight decays "
            "towards.")
    reset_dtod: float = param(
        0.0, check=Number(ge=0), doc="Device-to-device spread of the reset bias (absolute, not relative).")
    reset_std: float = param(
        0.01, check=Number(ge=0), doc="Cycle-to-cycle spread of a reset: w = beta + reset_std xi, clipped.")
    up_down: float = param(
        0.0, check=Number(),
        doc="Systematic up/down asymmetry of the step sizes: > 0 shortens every down step by up_down dw_min, "
            "< 0 every up step by |up_down| dw_min.")
    up_down_dtod: float = param(
        0.01, check=Number(ge=0),
        doc="Device-to-device spread of the asymmetry, relative to dw_min: r = up_down_dtod xi is added to "
            "dw+ / dw_min and subtracted from dw- / dw_min.")
    w_max: float = param(
        0.6, check=Number(), doc="Mean upper bound of the weights: b_max = w_max (1 + w_max_dtod xi); >= 0.")
    w_max_dtod: float = param(
        0.3, check=Number(ge=0), doc="Relative device-to-device spread of the upper bound.")
    w_min: float = param(
        -0.6, check=Number(), doc="Mean lower bound of the weights: b_min = w_min (1 + w_min_dtod xi); <= 0.")
    w_min_dtod: float = param(
        0.3, check=Number(ge=0), doc="Relative device-to-device spread of the lower bound.")
    count_pulses: bool = param(
        False,
        doc="Count the up and down pulses each cross-point receives (aihwkit: on GPU tiles, read with "
            "`get_pulse_counters()`); the update is the same.")

    def check_consistency(self, where: str) -> None:
        if self.w_min > self.w_max:
            raise ValueError(f"{where}.w_min = {self.w_min!r}: expected a number <= w_max = {self.w_max!r}")
        if self.w_min > 0:
            raise ValueError(f"{where}.w_min = {self.w_min!r}: expected a number <= 0 (the bounds [w_min, w_max] "
                             f"must contain 0)")
        if self.w_max < 0:
            raise ValueError(f"{where}.w_max = {self.w_max!r}: expected a number >= 0 (the bounds [w_min, w_max] "
                             f"must contain 0)")


@register_config_class
@dataclass(repr=False)
class ConstantStepDevice(PulsedDevice):
    """A constant step up to hard bounds: up w += dw+ (1 + dw_min_std xi),
    down w -= dw- (1 + dw_min_std xi), then clip to [b_min, b_max].

    dw+, dw-, b_min and b_max are the cross-point's own, drawn when the tile
    is made (see ``PulsedDevice``); the step does not depend on the weight.
    Weight granularity: dw_min.
    """


@register_config_class
@dataclass(repr=False)
class LinearStepDevice(PulsedDevice):
    """A step linear in the weight: up w += (dw+ + a+ w)(1 + dw_min_std xi),
    down w -= (dw- + a- w)(1 + dw_min_std xi), then clip to [b_min, b_max].

    On top of ``PulsedDevice``'s draws, each cross-point draws
    s+ = gamma_up + gamma_up_dtod xi and s- = gamma_down + gamma_down_dtod xi,
    replaced by |s+|, |s-| unless ``allow_increasing``, and gets the slopes
    a+ = -s+ dw+ / r+ and a- = -s- dw- / r- (0 where the reference is 0). The
    references are r+ = w_max and r- = w_min with ``mean_bound_reference``,
    the cross-point's own b_max and b_min otherwise; ``reverse_up`` makes
    r+ = w_min - reverse_offset (b_min - reverse_offset), ``reverse_down``
    makes r- = w_max + reverse_offset (b_max + reverse_offset).

    So, by default, the up step is dw+ (1 - s+ w / w_max), shorter by the
    fraction s+ at w = w_max, and the down step dw- (1 - s- w / w_min).
    Without ``mult_noise`` the noise is on the constant part only:
    up w += dw+ (1 + dw_min_std xi) + a+ w, down w -= dw- (1 + dw_min_std xi) + a- w.
    Write noise: see ``write_noise_std``. Weight granularity: dw_min.
    """

    gamma_up: float = param(
        0.0, check=Number(),
        doc="Mean relative shortening of the up step at the upper reference: s+ = gamma_up + gamma_up_dtod xi "
            "per cross-point, up step dw+ (1 - s+ w / r+).")
    gamma_down: float = param(
        0.0, check=Number(),
        doc="Mean relative shortening of the down step at the lower reference: s- = gamma_down + "
            "gamma_down_dtod xi, down step dw- (1 - s- w / r-).")
    gamma_up_dtod: float = param(
        0.05, check=Number(ge=0), doc="Device-to-device spread of s+ (absolute).")
    gamma_down_dtod: float = param(
        0.05, check=Number(ge=0), doc="Device-to-device spread of s- (absolute).")
    allow_increasing: bool = param(
        False,
        doc="Keep the sign of s+ and s- as drawn, so a step may grow towards its bound; `False` uses |s+| and "
            "|s-| (steps shrink towards the bounds).")
    mean_bound_reference: bool = param(
        True,
        doc="Slopes relative to the mean bounds (r+ = w_max, r- = w_min); `False`: to the cross-point's own "
            "b_max and b_min.")
    mult_noise: bool = _mult_noise()
    write_noise_std: float = _write_noise_std()
    apply_write_noise_on_set: bool = _apply_write_noise_on_set()
    reverse_up: bool = _reverse_up()
    reverse_down: bool = _reverse_down()
    reverse_offset: float = _reverse_offset()

    def check_consistency(self, where: str) -> None:
        super().check_consistency(where)
        _check_reverse_needs_mult_noise(self, where)


@register_config_class
@dataclass(repr=False)
class SoftBoundsDevice(PulsedDevice):
    """Soft bounds: up w += dw+ (1 - w / b_max)(1 + dw_min_std xi),
    down w -= dw- (1 - w / b_min)(1 + dw_min_std xi), then clip to [b_min, b_max].

    The ``LinearStepDevice`` rule with s+ = s- = 1 and the cross-point's own
    bounds as references: the step vanishes at the bound it moves towards.
    Without ``mult_noise``: up w += dw+ (1 - w / b_max + dw_min_std xi), down
    w -= dw- (1 - w / b_min + dw_min_std xi). ``reverse_up`` replaces b_max
    in the up step by b_min - reverse_offset, ``reverse_down`` b_min in the
    down step by b_max + reverse_offset. Write noise: see
    ``write_noise_std``. Weight granularity: dw_min.
    """

    mult_noise: bool = _mult_noise()
    write_noise_std: float = _write_noise_std()
    apply_write_noise_on_set: bool = _apply_write_noise_on_set()
    reverse_up: bool = _reverse_up()
    reverse_down: bool = _reverse_down()
    reverse_offset: float = _reverse_offset()

    def check_consistency(self, where: str) -> None:
        super().check_consistency(where)
        _check_reverse_needs_mult_noise(self, where)


@register_config_class
@dataclass(repr=False)
class ExpStepDevice(PulsedDevice):
    """A step that falls exponentially towards the bounds: up w += y+ dw+ (1 + dw_min_std xi),
    down w -= y- dw- (1 + dw_min_std xi), then clip to [b_min, b_max].

    With z = 2 a w / (b_max - b_min) + b: y+ = max(1 - A_up exp(gamma_up z), 0)
    and y- = max(1 - A_down exp(-gamma_down z), 0). ``A_up``, ``A_down``,
    ``gamma_up``, ``gamma_down``, ``a`` and ``b`` are the same for every
    cross-point (dw+, dw- and the bounds vary as in ``PulsedDevice``). A
    cross-point with b_max - b_min <= 0 is never changed by pulses.

    When dw_min_std > 0 and ``dw_min_std_add`` or ``dw_min_std_slope`` is not
    0, the noise is additive instead: w += D + dw_min_std (|D| + dw_min_std_add
    + dw_min_std_slope |w|) xi, with D = y+ dw+ (up) or -y- dw- (down).
    Write noise: see ``write_noise_std``.

    Weight granularity: the mean down step at w = 0,
    (1 - max(up_down, 0)) dw_min max(1 - A_down exp(-gamma_down b), 0), or
    dw_min when that is 0.
    """

    # aihwkit's C++ computes the granularity as (dw_down + dw_down) / 2: the
    # down step only (the up step is computed and not used); that is what it does.
    A_up: float = param(
        0.00081, check=Number(), doc="Factor of the up step's exponential: y+ = max(1 - A_up exp(gamma_up z), 0).")
    A_down: float = param(
        0.36833, check=Number(),
        doc="Factor of the down step's exponential: y- = max(1 - A_down exp(-gamma_down z), 0).")
    gamma_up: float = param(12.44625, check=Number(), doc="Exponent rate of the up step (in z).")
    gamma_down: float = param(12.78785, check=Number(), doc="Exponent rate of the down step (in -z).")
    a: float = param(0.244, check=Number(), doc="Slope of z in the weight: z = 2 a w / (b_max - b_min) + b.")
    b: float = param(0.2425, check=Number(), doc="Offset of z: z = 2 a w / (b_max - b_min) + b.")
    dw_min_std_add: float = param(
        0.0, check=Number(ge=0),
        doc="Constant part of the additive step noise dw_min_std (|D| + dw_min_std_add + dw_min_std_slope |w|) "
            "xi (used when this or `dw_min_std_slope` is not 0).")
    dw_min_std_slope: float = param(
        0.0, check=Number(ge=0),
        doc="Weight-proportional part of the additive step noise (see `dw_min_std_add`).")
    write_noise_std: float = _write_noise_std()
    apply_write_noise_on_set: bool = _apply_write_noise_on_set()


@register_config_class
@dataclass(repr=False)
class PowStepDevice(PulsedDevice):
    """A step that is a power of the distance to the bound: up w += dw+ ((b_max - w) / R)^g+ (1 + dw_min_std xi),
    down w -= dw- ((w - b_min) / R)^g- (1 + dw_min_std xi), then clip to [b_min, b_max].

    R = b_max - b_min; a cross-point with R = 0 is never changed by pulses.
    On top of ``PulsedDevice``'s draws, each cross-point draws the exponents
    g+ = (min(pow_up_down, 0) + gain + r) pow_gamma and
    g- = (-max(pow_up_down, 0) + gain - r) pow_gamma, with
    gain = 1 + pow_gamma_dtod xi and r = pow_up_down_dtod xi, replaced by
    their absolute values with ``enforce_consistency``. With exponents 1 the
    up step is dw+ (b_max - w) / R, for symmetric bounds (b_min = -b_max) half
    the ``SoftBoundsDevice`` step. Write noise: see ``write_noise_std``. Weight granularity:
    dw_min 0.5^pow_gamma (the step at the middle of the range).
    """

    # aihwkit's Python docs give g^d = pow_gamma (1 + d beta + pow_gamma_dtod xi)
    # with beta = pow_up_down + pow_up_down_dtod xi (the bias on both directions);
    # the C++ puts pow_up_down on one direction only, as up_down for the steps.
    # The C++ is followed.
    pow_gamma: float = param(
        1.0, check=Number(ge=0), doc="Mean exponent of the step in the relative distance to the bound.")
    pow_gamma_dtod: float = param(
        0.1, check=Number(ge=0),
        doc="Relative device-to-device spread of the exponents: gain = 1 + pow_gamma_dtod xi, common to g+ "
            "and g-.")
    pow_up_down: float = param(
        0.0, check=Number(),
        doc="Up/down asymmetry of the exponents: > 0 lowers g- by pow_up_down pow_gamma, < 0 lowers g+ by "
            "|pow_up_down| pow_gamma.")
    pow_up_down_dtod: float = param(
        0.0, check=Number(ge=0),
        doc="Device-to-device spread of the asymmetry, relative to pow_gamma: r = pow_up_down_dtod xi is added "
            "to g+ / pow_gamma and subtracted from g- / pow_gamma.")
    write_noise_std: float = _write_noise_std()
    apply_write_noise_on_set: bool = _apply_write_noise_on_set()


@register_config_class
@dataclass(repr=False)
class SoftBoundsReferenceDevice(PulsedDevice):
    """Soft bounds seen against a fixed reference r: the weight is w = g - r,
    g the device's state, and a pulse moves g by the ``SoftBoundsDevice``
    step: up g += dw+ (1 - g / b_max + dw_min_std xi), down g -= dw- (1 - g /
    b_min + dw_min_std xi) (with ``mult_noise``: dw+ (1 - g / b_max)(1 +
    dw_min_std xi), ...), then g is clipped to [b_min, b_max].

    On top of ``PulsedDevice``'s draws, when b_max > 0 > b_min each
    cross-point scales its slopes dw+ / b_max and dw- / |b_min| by |1 +
    slope_up_dtod xi| and |1 + slope_down_dtod xi| (its bounds become dw+ /
    slope and -dw- / slope), and draws r = reference_mean + reference_std
    xi; ``subtract_symmetry_point`` adds the point where up and down steps
    are equal, w* = (dw+ - dw-) / (dw+ / b_max - dw- / b_min), to r and to
    the reset bias. Setting weights, clipping, decay, diffusion and resets
    act on w with the bounds [b_min, b_max], as aihwkit's C++ does (only the
    pulses see g = w + r). Weight granularity: dw_min.
    """

    mult_noise: bool = param(
        False,
        doc="Cycle-to-cycle noise multiplies the whole step, dw (1 - g / b) (1 + dw_min_std xi) (`True`), or "
            "is added to it, dw (1 - g / b + dw_min_std xi) (`False`, aihwkit's default for this device).")
    write_noise_std: float = _write_noise_std()
    apply_write_noise_on_set: bool = _apply_write_noise_on_set()
    slope_up_dtod: float = param(
        0.0, check=Number(ge=0),
        doc="Relative device-to-device spread of the up slope dw+ / b_max (the bound b_max moves with it).")
    slope_down_dtod: float = param(
        0.0, check=Number(ge=0),
        doc="Relative device-to-device spread of the down slope dw- / |b_min| (the bound b_min moves with it).")
    reference_mean: float = param(0.0, check=Number(), doc="Mean of the reference r subtracted from the device.")
    reference_std: float = param(
        0.0, check=Number(ge=0), doc="Device-to-device spread of the reference: r = reference_mean + reference_std xi.")
    subtract_symmetry_point: bool = param(
        False,
        doc="Add each cross-point's symmetry point w* = (dw+ - dw-) / (dw+ / b_max - dw- / b_min) to its "
            "reference and reset bias, so that w = 0 where its up and down steps are equal.")
