"""Training-time settings of inference tiles (hardware-aware training): clipping,
weight modifiers and remapping."""

from __future__ import annotations

from dataclasses import dataclass

from fxanalog.config.base import (
    ConfigBase,
    Fraction,
    Number,
    NumberList,
    Resolution,
    param,
    register_config_class,
)
from fxanalog.config.enums import WeightClipType, WeightModifierType, WeightRemapType

__all__ = ["WeightClipParameter", "WeightModifierParameter", "WeightRemapParameter"]


# --------------------------------------------------------------------------
# Training-time settings of inference tiles


@register_config_class
@dataclass(repr=False)
class WeightClipParameter(ConfigBase):
    """Clipping of the weights after each optimizer step."""

    fixed_value: float = param(
        -1.0, check=Number(), doc="`FIXED_VALUE`: clip the weights to [-fixed_value, fixed_value].")
    sigma: float = param(
        2.5, check=Number(ge=0),
        doc="`LAYER_GAUSSIAN`: clip to +- sigma times the standard deviation of the layer's weights.")
    type: WeightClipType = param(
        WeightClipType.NONE, doc="Kind of clipping applied after each optimizer step (`NONE` turns it off).")

    def check_consistency(self, where: str) -> None:
        if self.type == WeightClipType.FIXED_VALUE and self.fixed_value <= 0:
            raise ValueError(f"{where}.fixed_value = {self.fixed_value!r}: FIXED_VALUE clipping needs a value > 0")


@register_config_class
@dataclass(repr=False)
class WeightModifierParameter(ConfigBase):
    """Perturbation of the weights used in each training forward pass."""

    std_dev: float = param(
        0.0, check=Number(ge=0),
        doc="Noise strength of `ADD_NORMAL`, `MULT_NORMAL`, `DISCRETIZE_ADD_NORMAL`, `POLY` and `PROG_NOISE`, "
            "relative to amax (each tile's max|W|, or `assumed_wmax`); for `PCM_NOISE` the factor on the PCM "
            "programming noise.")
    per_batch_sample: bool = param(
        False,
        doc="A separate perturbation per sample of the batch (each index of the input's leading dimension) "
            "instead of one per forward pass; holds one weight copy per sample.")
    res: float = param(
        0.0, check=Resolution(),
        doc="`DISCRETIZE`, `DISCRETIZE_ADD_NORMAL`: resolution of the weight discretization, as a fraction of "
            "amax (a value > 1 is a number of steps); `DOREFA`: the same step, in weight units (not times amax).")
    sto_round: bool = param(False, doc="Stochastic rounding in the discretization.")
    dorefa_clip: float = param(
        0.6, check=Number(gt=0), doc="`DOREFA`: the largest magnitude of the discretized weights.")
    pdrop: float = param(
        0.0, check=Fraction("probability"),
        doc="Drop-connect probability: each weight is set to 0 with this probability (also combined with the "
            "other types).")
    enable_during_test: bool = param(False, doc="Also perturb the weights in eval mode (use with care).")
    rel_to_actual_wmax: bool = param(
        True, doc="amax is the current max|W| of the layer; `False`: amax is `assumed_wmax`.")
    assumed_wmax: float = param(1.0, check=Number(gt=0), doc="amax when `rel_to_actual_wmax` is `False`.")
    coeffs: list = param(
        default_factory=lambda: [0.0105392, 0.0768, -0.046925], check=NumberList(),
        doc="`POLY`, `PROG_NOISE`: coefficients c_k of the noise's polynomial in |w|/amax (aihwkit's default: "
            "about the PCM programming noise of `PCMLikeNoiseModel`, in units of g_max = 25 uS).")
    type: WeightModifierType = param(
        WeightModifierType.NONE,
        doc="Kind of perturbation (`NONE` and `COPY`: none, the weights are used as they are; `pdrop` still "
            "applies).")
    g_max: float = param(
        25.0, check=Number(gt=0), doc="`PROG_NOISE`: g_max in uS; the noise is std_dev / g_max times the polynomial.")


@register_config_class
@dataclass(repr=False)
class WeightRemapParameter(ConfigBase):
    """Remapping of the weights to the tile's range (scales go to digital)."""

    remapped_wmax: float = param(
        1.0, check=Number(gt=0), doc="The weight value mapped to the largest conductance after remapping.")
    max_scale_range: float = param(
        0.0, check=Number(ge=0),
        doc="aihwkit: largest allowed range of the remapping scales. Only 0 (no limit) is supported.")
    max_scale_ref: float = param(
        0.0, check=Number(ge=0),
        doc="aihwkit: reference (smallest) scale for `max_scale_range`. Only 0 is supported.")
    type: WeightRemapType = param(
        WeightRemapType.NONE,
        doc="Kind of remapping: `LAYERWISE_SYMMETRIC` (one scale), `CHANNELWISE_SYMMETRIC` (per output) or `NONE`.")
