"""An inference preset (aihwkit 1.1.0's ``presets.inference``, its values).

aihwkit's ``FloatingPointPreset`` is not here: it derives from
``TorchInferenceRPUConfig``, which fxanalog does not have (fxanalog's
``FloatingPointRPUConfig`` is an exact tile).
"""

from __future__ import annotations

from fxanalog.config import (
    BoundManagementType,
    GlobalDriftCompensation,
    InferenceRPUConfig,
    InputRangeParameter,
    MappingParameter,
    NoiseManagementType,
    PCMLikeNoiseModel,
    PrePostProcessingParameter,
    WeightClipParameter,
    WeightClipType,
    WeightNoiseType,
    WeightRemapParameter,
    WeightRemapType,
)
from fxanalog.config.base import with_defaults
from fxanalog.presets.utils import PresetIOParameters

__all__ = ["StandardHWATrainingPreset"]


def _mapping() -> MappingParameter:
    return MappingParameter(weight_scaling_omega=1.0, weight_scaling_columnwise=True, max_input_size=512,
                            max_output_size=0, digital_bias=True, learn_out_scaling=True, out_scaling_columnwise=True)


def _forward() -> PresetIOParameters:
    return PresetIOParameters(inp_res=254.0, out_res=254.0, bound_management=BoundManagementType.NONE,
                              noise_management=NoiseManagementType.CONSTANT, nm_thres=1.0, w_noise=0.0175,
                              w_noise_type=WeightNoiseType.PCM_READ, ir_drop=1.0, out_noise=0.04, out_bound=10.0)


def _remap() -> WeightRemapParameter:
    return WeightRemapParameter(remapped_wmax=1.0, type=WeightRemapType.CHANNELWISE_SYMMETRIC)


def _pre_post() -> PrePostProcessingParameter:
    return PrePostProcessingParameter(input_range=InputRangeParameter(
        enable=True, init_value=3.0, init_from_data=100, init_std_alpha=3.0, decay=0.001, input_min_percentage=0.95,
        output_min_percentage=0.95, manage_output_clipping=False, gradient_scale=1.0, gradient_relative=True))


def _clip() -> WeightClipParameter:
    return WeightClipParameter(type=WeightClipType.FIXED_VALUE, fixed_value=1.0)


@with_defaults(
    mapping=_mapping,
    forward=_forward,
    remap=_remap,
    noise_model=PCMLikeNoiseModel,
    drift_compensation=GlobalDriftCompensation,
    pre_post=_pre_post,
    clip=_clip,
)
class StandardHWATrainingPreset(InferenceRPUConfig):
    """A standard setting for hardware-aware training and noisy inference, for comparable benchmarks.

    Columnwise weight scaling and learned output scales, tiles of at most
    512 inputs, a digital bias; 8-bit DAC and ADC (254 steps), output bound
    10, output noise 0.04, PCM read noise 0.0175, IR drop 1, constant noise
    management without bound management; a learned input range
    initialized from 100 batches; channelwise weight remapping, weights
    clipped to +-1; PCM programming noise and drift with global drift
    compensation. See Rasch et al., arXiv:2302.08469 (2023).
    """
