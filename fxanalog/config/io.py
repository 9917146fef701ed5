"""The periphery of a tile's matrix-vector product: ``IOParameters``."""

from __future__ import annotations

from dataclasses import dataclass

from fxanalog.config.base import ConfigBase, check_nonneg, check_number, check_resolution, register_config_class
from fxanalog.config.enums import BoundManagementType, NoiseManagementType, WeightNoiseType

__all__ = ['IOParameters']


# --------------------------------------------------------------------------
# Forward / backward of a tile


@register_config_class
@dataclass(repr=False)
class IOParameters(ConfigBase):
    """Periphery of a tile's matrix-vector product (DAC, ADC, noise, management).

    Defaults are those of ``aihwkit``'s ``InferenceRPUConfig().forward``.
    """

    is_perfect: bool = False
    inp_bound: float = 1.0
    inp_res: float = 1.0 / (2**7 - 2)
    inp_sto_round: bool = False
    inp_noise: float = 0.0
    out_bound: float = 12.0
    out_res: float = 1.0 / (2**9 - 2)
    out_sto_round: bool = False
    out_noise: float = 0.06
    out_scale: float = 1.0
    w_noise: float = 0.0
    w_noise_type: WeightNoiseType = WeightNoiseType.NONE
    noise_management: NoiseManagementType = NoiseManagementType.ABS_MAX
    nm_thres: float = 0.0
    bound_management: BoundManagementType = BoundManagementType.ITERATIVE
    max_bm_factor: int = 1000
    max_bm_res: float = 0.25
    ir_drop: float = 0.0
    ir_drop_g_ratio: float = 1.0 / 0.35 / 5e-6
    out_nonlinearity: float = 0.0

    def _check(self, where: str) -> None:
        for name in ("inp_noise", "out_noise", "w_noise", "nm_thres", "ir_drop", "out_nonlinearity", "out_bound"):
            check_nonneg(where, name, getattr(self, name))
        check_number(where, "out_scale", self.out_scale)
        if not (isinstance(self.inp_bound, (int, float)) and self.inp_bound > 0):
            raise ValueError(f"{where}.inp_bound = {self.inp_bound!r}: expected a number > 0")
        for name in ("inp_res", "out_res"):
            check_resolution(where, name, getattr(self, name))
        if not (isinstance(self.max_bm_factor, (int, float)) and self.max_bm_factor >= 1):
            raise ValueError(f"{where}.max_bm_factor = {self.max_bm_factor!r}: expected a number >= 1")
        check_nonneg(where, "max_bm_res", self.max_bm_res)
        if not (isinstance(self.ir_drop_g_ratio, (int, float)) and self.ir_drop_g_ratio > 0):
            raise ValueError(f"{where}.ir_drop_g_ratio = {self.ir_drop_g_ratio!r}: expected a number > 0")
        if self.noise_management != NoiseManagementType.NONE and self.inp_bound != 1.0 and not self.is_perfect:
            raise ValueError(
                f"{where}.inp_bound = {self.inp_bound!r}: noise management "
                f"{self.noise_management.name} needs inp_bound = 1.0 (or noise_management = NONE)"
            )
        if self.noise_management == NoiseManagementType.CONSTANT and self.nm_thres <= 0 and not self.is_perfect:
            raise ValueError(f"{where}.nm_thres = {self.nm_thres!r}: CONSTANT noise management needs nm_thres > 0")
