"""Digital processing around the tiles: the learned input range."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from fxanalog.config.base import ConfigBase, Fraction, Number, OptionalString, Whole, param, register_config_class

__all__ = ["InputRangeParameter", "PrePostProcessingParameter"]


@register_config_class
@dataclass(repr=False)
class InputRangeParameter(ConfigBase):
    """A learned input range (aihwkit's ``pre_post.input_range``).

    When enabled, every tile's inputs are clipped to ``[-ir, ir]`` and divided
    by ``ir`` in digital before the DAC, and the tile's output is multiplied by
    ``ir``: a static, trained replacement for dynamic noise management (which
    is then usually set to ``NONE``, with bound management ``NONE``). One
    ``ir`` per input piece of the tile array (the tiles that share the piece
    see the same inputs), a parameter of the layer's tile (``layer.tile.input_range``).
    """

    enable: bool = param(
        False,
        doc="Clip each tile's inputs to [-r, r] and divide them by r before the DAC; multiply the tile's output "
            "by r. One r per input piece of the tile array (`layer.tile.input_range`).")
    learn_input_range: bool = param(
        True, doc="r is trained by the gradient below; `False`: r stays (after the initialization from data).")
    init_value: float = param(3.0, check=Number(gt=0), doc="Initial r.")
    init_from_data: int = param(
        100, check=Whole(ge=0, bool_as_int=True, note="(0: off; a bool counts as 0 or 1, as in aihwkit)"),
        doc="Number of first training batches in which r <- |(r k + init_std_alpha std(x)) / (k + 1)| "
            "(k: updates so far); 0: off. A bool counts as aihwkit counts it (it compares the batch index with "
            "this value): `False` is 0 (off), `True` is 1 batch; stored as that number.")
    init_std_alpha: float = param(
        3.0, check=Number(ge=0),
        doc="Multiple of the inputs' standard deviation used by the initialization from data.")
    decay: float = param(
        0.001, check=Number(ge=0),
        doc="Added to r's gradient, times r, while the fraction of unclipped inputs exceeds "
            "`input_min_percentage` (the range shrinks).")
    input_min_percentage: float = param(
        0.95, check=Fraction(), doc="Fraction of unclipped inputs above which `decay` applies.")
    manage_output_clipping: bool = param(
        False,
        doc="Widen r when the tile's outputs clip: r's gradient gets -(1 - f) r when the fraction f of "
            "unclipped outputs is below `output_min_percentage`. Needs noise and bound management `NONE` and "
            "an `out_bound`.")
    output_min_percentage: float = param(
        0.95, check=Fraction(), doc="Fraction of unclipped outputs below which `manage_output_clipping` acts.")
    gradient_scale: float = param(
        1.0, check=Number(ge=0),
        doc="Factor on r's clipping gradient (aihwkit applies it only with `gradient_relative`; here always).")
    gradient_relative: bool = param(True, doc="Multiply r's clipping gradient by r.")
    calibration_info: Optional[str] = param(
        None, check=OptionalString(), doc="Free text about a post-training calibration (kept, not used).")


@register_config_class
@dataclass(repr=False)
class PrePostProcessingParameter(ConfigBase):
    """Digital processing around the tile (aihwkit's ``rpu_config.pre_post``)."""

    input_range: InputRangeParameter = param(
        default_factory=InputRangeParameter, doc="The learned input range (`InputRangeParameter`).")
