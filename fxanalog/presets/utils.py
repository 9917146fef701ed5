"""The periphery and update settings shared by the training presets (aihwkit's ``presets.utils``)."""

from __future__ import annotations

from fxanalog.config import (
    BoundManagementType,
    IOParameters,
    NoiseManagementType,
    PulseType,
    UpdateParameters,
    WeightNoiseType,
)
from fxanalog.config.base import with_defaults

__all__ = ["PresetIOParameters", "PresetUpdateParameters", "StandardIOParameters"]


@with_defaults(
    bound_management=BoundManagementType.ITERATIVE,
    noise_management=NoiseManagementType.ABS_MAX,
    inp_res=1.0 / (2**7 - 2),  # 7-bit DAC
    inp_sto_round=False,
    out_bound=20.0,
    out_noise=0.1,
    out_res=1.0 / (2**9 - 2),  # 9-bit ADC (sign included)
    w_noise=0.0,
    w_noise_type=WeightNoiseType.NONE,
)
class PresetIOParameters(IOParameters):
    """The periphery of the training presets: a 7-bit DAC, a 9-bit ADC, output bound 20, output noise 0.1.

    The output bound of 20 is the number of fully-on inputs that saturate
    the ADC when every weight is at its maximum (weights in [-1, 1]); the
    output noise is about one ADC step. No weight read noise. Noise
    management (``ABS_MAX``) and iterative bound management are on.
    """


@with_defaults(
    desired_bl=31,
    pulse_type=PulseType.STOCHASTIC_COMPRESSED,
    update_bl_management=True,
    update_management=True,
)
class PresetUpdateParameters(UpdateParameters):
    """The update of the training presets: stochastic pulse trains of at most 31 slots, with update and bit-length
    management.

    The fully parallel stochastic update of Gokmen and Vlasov, Front.
    Neurosci. 10, 333 (2016), the train length chosen per batch row.
    """


@with_defaults(
    bound_management=BoundManagementType.ITERATIVE,
    noise_management=NoiseManagementType.ABS_MAX,
    inp_res=1.0 / (2**8 - 2),  # 8-bit DAC
    inp_sto_round=False,
    out_bound=10.0,
    out_noise=0.04,
    out_res=1.0 / (2**8 - 2),  # 8-bit ADC
    w_noise=0.0,
    w_noise_type=WeightNoiseType.NONE,
)
class StandardIOParameters(IOParameters):
    """A periphery with the converters of ``StandardHWATrainingPreset``: 8-bit DAC and ADC, output bound 10, output
    noise 0.04.

    Unlike that preset's forward pass, noise management (``ABS_MAX``) and
    iterative bound management are on, and there is no IR drop and no
    weight read noise (Rasch et al., arXiv:2302.08469 (2023)).
    """
