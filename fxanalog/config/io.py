"""The periphery of a tile's matrix-vector product: ``IOParameters``."""

from __future__ import annotations

from dataclasses import dataclass

from fxanalog.config.base import ConfigBase, Number, Resolution, param, register_config_class
from fxanalog.config.enums import BoundManagementType, NoiseManagementType, WeightNoiseType

__all__ = ["IOParameters"]


# --------------------------------------------------------------------------
# Forward / backward of a tile


@register_config_class
@dataclass(repr=False)
class IOParameters(ConfigBase):
    """Periphery of a tile's matrix-vector product (DAC, ADC, noise, management).

    Defaults are those of ``aihwkit``'s ``InferenceRPUConfig().forward``.
    """

    is_perfect: bool = param(
        False, doc="`True`: the tile computes exactly W x; none of the fields below applies.")
    inp_bound: float = param(
        1.0, check=Number(gt=0),
        doc="DAC range is [-inp_bound, inp_bound] (must be 1.0 with noise management).")
    inp_res: float = param(
        1.0 / (2**7 - 2), check=Resolution(),
        doc="DAC step as a fraction of the range (default 1/(2^7-2), 127 levels); a value > 1 is a "
            "number of steps; <= 0 turns input quantization off.")
    inp_sto_round: bool = param(False, doc="Stochastic rounding at the DAC.")
    inp_noise: float = param(
        0.0, check=Number(ge=0),
        doc="Additive Gaussian noise after the DAC, in normalized input units.")
    out_bound: float = param(
        12.0, check=Number(note="(<= 0: unbounded, as in aihwkit)",
                           nonfinite="NaN and +-inf are refused: write 0 or -1 for an unbounded ADC"),
        doc="ADC range is [-out_bound, out_bound], in normalized output units; <= 0 (aihwkit's examples write -1): "
            "unbounded, and `out_res` does not apply (its step is a fraction of the range). +-inf is refused: "
            "write 0 or -1 for an unbounded ADC.")
    out_res: float = param(
        1.0 / (2**9 - 2), check=Resolution(),
        doc="ADC step as a fraction of the range (default 1/(2^9-2), 511 levels); same convention as `inp_res`.")
    out_sto_round: bool = param(False, doc="Stochastic rounding at the ADC.")
    out_noise: float = param(
        0.06, check=Number(ge=0),
        doc="Additive Gaussian noise before the ADC, in normalized output units (its effect on the result "
            "scales with the noise-management factor), drawn at every call.")
    out_scale: float = param(1.0, check=Number(), doc="Digital factor applied to the output at the end.")
    w_noise: float = param(
        0.0, check=Number(ge=0), doc="Weight read noise strength (see `w_noise_type`); 0 turns it off.")
    w_noise_type: WeightNoiseType = param(
        WeightNoiseType.NONE,
        doc="Kind of weight read noise: `ADDITIVE_CONSTANT` (w_noise * ||v|| per output) or `PCM_READ` "
            "(w_noise * sqrt(sum_j |w_ij| v_j^2) per output).")
    noise_management: NoiseManagementType = param(
        NoiseManagementType.ABS_MAX,
        doc="Input scaling per input vector before the DAC: `ABS_MAX` (max|x|), `MAX`, `CONSTANT` (nm_thres) "
            "or `NONE`.")
    nm_thres: float = param(
        0.0, check=Number(ge=0),
        doc="`ABS_MAX`/`MAX`: upper cap on the scale when > 0; `CONSTANT`: the scale itself when > 0, "
            "else 1 (as aihwkit).")
    bound_management: BoundManagementType = param(
        BoundManagementType.ITERATIVE,
        doc="`ITERATIVE`: when an output saturates the ADC, redo that input vector with the input halved "
            "(r = 2, 4, ...); `NONE`: keep the clipped output.")
    # A number (not only a whole one), as it always was: the stop rule compares r > max_bm_factor.
    max_bm_factor: int = param(
        1000, check=Number(ge=1),
        doc="Iterative bound management stops when the input reduction r exceeds this.")
    max_bm_res: float = param(
        0.25, check=Number(ge=0), doc="... or when r exceeds max_bm_res divided by the DAC step.")
    ir_drop: float = param(
        0.0, check=Number(ge=0), doc="Strength of the IR-drop model along the input lines; 0 turns it off.")
    ir_drop_g_ratio: float = param(
        1.0 / 0.35 / 5e-6, check=Number(gt=0),
        doc="Ratio of wire to device conductance in the IR-drop model (1/0.35/5e-6).")
    out_nonlinearity: float = param(
        0.0, check=Number(ge=0),
        doc="Strength of the S-shaped ADC nonlinearity y/(1+|n y|); 0 turns it off.")

    def check_consistency(self, where: str) -> None:
        if self.is_perfect or self.noise_management == NoiseManagementType.NONE:
            return
        if self.inp_bound != 1.0:
            raise ValueError(
                f"{where}.inp_bound = {self.inp_bound!r}: noise management "
                f"{self.noise_management.name} needs inp_bound = 1.0 (or noise_management = NONE)"
            )
