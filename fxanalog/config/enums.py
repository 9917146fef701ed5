"""The enums of the config fields, with aihwkit's member names.

A field of an enum type accepts the member or its name as a string (any case,
``"NoiseManagementType.ABS_MAX"`` too), as JSON configs and the command line
give them; ``validate()`` stores the member.

Each member is declared with its value and its meaning, ``NAME = "Value",
"What it does."``; the meaning is ``member.doc`` and goes into the config
reference.
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = ["NamedEnum", "NoiseManagementType", "BoundManagementType", "WeightNoiseType", "WeightClipType",
           "WeightModifierType", "WeightRemapType", "PulseType", "VectorUnitCellUpdatePolicy"]


class NamedEnum(enum.Enum):
    """An enum that reads its members from their names, case-insensitively,
    and documents each member (``member.doc``)."""

    doc: str

    def __new__(cls, value: Any, doc: str = ""):
        obj = object.__new__(cls)
        obj._value_ = value
        obj.doc = doc
        return obj

    @classmethod
    def expected(cls) -> str:
        """What a field of this type accepts, for error messages."""
        return f"a {cls.__name__}: one of {', '.join(cls.__members__)} (or its name as a string, any case)"

    @classmethod
    def coerce(cls, value: Any, where: str) -> "NamedEnum":
        """The member ``value`` names; ``ValueError`` ``"{where} = {value!r}: expected ..."``."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            key = value.split(".")[-1].upper()
            if key in cls.__members__:
                return cls.__members__[key]
        raise ValueError(f"{where} = {value!r}: expected {cls.expected()}")


class NoiseManagementType(NamedEnum):
    NONE = "None", "No input scaling."
    ABS_MAX = "AbsMax", "Divide each input vector by its largest magnitude (capped by `nm_thres` when > 0)."
    MAX = "Max", "Divide each input vector by its largest value."
    CONSTANT = "Constant", "Divide every input by `nm_thres` (by 1 when `nm_thres` is 0, as aihwkit)."


class BoundManagementType(NamedEnum):
    NONE = "None", "Saturated outputs stay clipped."
    ITERATIVE = "Iterative", "Redo saturated input vectors with the input halved, up to `max_bm_factor`."


class WeightNoiseType(NamedEnum):
    NONE = "None", "No weight read noise."
    ADDITIVE_CONSTANT = "AdditiveConstant", "Output noise w_noise * ||v||_2 (constant noise per weight)."
    PCM_READ = "PCMRead", "Output noise w_noise * sqrt(sum_j |w_ij| v_j^2) (noise grows with the conductance)."


class WeightClipType(NamedEnum):
    NONE = "None", "No clipping."
    FIXED_VALUE = "FixedValue", "Clip to +- `fixed_value`."
    LAYER_GAUSSIAN = "LayerGaussian", "Clip to +- `sigma` times the standard deviation of the layer's weights."
    AVERAGE_CHANNEL_MAX = (
        "AverageChannelMax",
        "Clip to +- the mean over outputs of the largest magnitude of each output's weights.",
    )


class WeightModifierType(NamedEnum):
    NONE = "None", "No perturbation."
    COPY = "Copy", "No perturbation: the weights are used as they are."
    DISCRETIZE = "Discretize", "Round the weights to `res` steps of amax."
    MULT_NORMAL = "MultNormal", "w += w * std_dev * amax * xi."
    ADD_NORMAL = "AddNormal", "w += std_dev * amax * xi."
    DISCRETIZE_ADD_NORMAL = "DiscretizeAddNormal", "`DISCRETIZE`, then `ADD_NORMAL`."
    POLY = "Poly", "w += amax * std_dev * sum_k coeffs[k] (|w|/amax)^k * xi."
    PCM_NOISE = (
        "PCMNoise",
        "The PCM programming noise of the config's noise model, scaled by `std_dev`, on each tile's "
        "conductance pairs.",
    )
    DROP_CONNECT = "DropConnect", "Set a fraction `pdrop` of the weights to 0."
    DOREFA = (
        "DoReFa",
        "DoReFa discretization (when `res` > 0): w = round(tanh(w) |dorefa_clip / tanh(amax)| / res) res (halves "
        "away from 0), i.e. tanh-compressed weights in [-dorefa_clip, dorefa_clip] on a grid of step `res` (as "
        "aihwkit's tile; the result is not scaled back by amax).",
    )
    PROG_NOISE = (
        "ProgNoise",
        "`POLY` noise that keeps each weight's sign, as programming a conductance pair would: "
        "w' = w + amax (std_dev / g_max) sum_k coeffs[k] (|w|/amax)^k xi, then |w'| with the sign of w "
        "(w >= 0: +|w'|).",
    )


class WeightRemapType(NamedEnum):
    NONE = "None", "No remapping."
    LAYERWISE_SYMMETRIC = "LayerwiseSymmetric", "One scale per layer: s = max|W| / remapped_wmax."
    CHANNELWISE_SYMMETRIC = "ChannelwiseSymmetric", "One scale per output."


class PulseType(NamedEnum):
    """How a training step's (x, d) become device pulses (``UpdateParameters.pulse_type``).

    Below, BL, A and B are the pulse-train length and the probability scales
    of the error and input lines chosen per batch row (``UpdateParameters``);
    a positive learning rate moves a cross-point down when d_i x_j > 0.
    """

    NONE = (
        "None",
        "No pulses: the exact update W -= lr sum_b d_b x_b^T in floating point, not clipped. The device's "
        "step rule, bounds and device-to-device draws are not used; only its `lifetime`, `diffusion` and "
        "`reset_std` act, uniformly, as for an `IdealDevice`.",
    )
    STOCHASTIC_COMPRESSED = (
        "StochasticCompressed",
        "Stochastic pulse trains: in each of BL slots, input line j fires with probability B |x_j| and error "
        "line i with probability A |d_i| (one draw per line and slot, shared by every cross-point on the "
        "line); each coincidence is one device pulse at (i, j). Inputs of both signs in one pass.",
    )
    STOCHASTIC = (
        "Stochastic",
        "The pulse trains of `STOCHASTIC_COMPRESSED`, with the pulses of positive and of negative inputs "
        "applied in two passes per slot: the same pulses, applied to the cross-points in another order "
        "(aihwkit: CPU tiles only).",
    )
    NONE_WITH_DEVICE = (
        "NoneWithDevice",
        "The exact floating-point update of `NONE`, then every weight clipped to its cross-point's bounds "
        "(the device's drawn b_min, b_max); no pulses.",
    )
    MEAN_COUNT = (
        "MeanCount",
        "Deterministic counts: input line j gets n_j = min(round(BL B |x_j|), BL) pulses, error line i "
        "m_i = min(round(BL A |d_i|), BL), and cross-point (i, j) round(m_i n_j / BL) device pulses (the "
        "expected number of coincidences, rounded), each with its own cycle-to-cycle noise.",
    )
    DETERMINISTIC_IMPLICIT = (
        "DeterministicImplicit",
        "Deterministic coincidences: cross-point (i, j) gets round(BL q_d(A |d_i|) q_x(B |x_j|)) device pulses, "
        "where q_x, q_d quantize to steps of `x_res_implicit`, `d_res_implicit` (when > 0) and clip to [0, 1].",
    )


class VectorUnitCellUpdatePolicy(NamedEnum):
    """Which of a unit cell's devices receive a mini-batch's update pulses
    (``VectorUnitCell.update_policy``); aihwkit's members and values.

    The device index is chosen before each mini-batch's update; the devices
    not chosen keep their weights (decay and diffusion still act on every
    device).
    """

    ALL = "All", "Every device of the cell receives the pulses of every update (each with its own noise)."
    SINGLE_FIXED = (
        "SingleFixed",
        "Only the device `first_update_idx` receives pulses; the index does not change.",
    )
    SINGLE_SEQUENTIAL = (
        "SingleSequential",
        "One device per mini-batch, in turn: before each update the index advances by one (modulo the number "
        "of devices), starting from `first_update_idx`, so the first update goes to device "
        "`first_update_idx` + 1 (as aihwkit's C++).",
    )
    SINGLE_RANDOM = (
        "SingleRandom",
        "One device per mini-batch, drawn uniformly at random among the cell's devices.",
    )
