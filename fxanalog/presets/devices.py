"""Devices fitted to published measurements (aihwkit 1.1.0's ``presets.devices``, its values).

Each preset is a device config of fxanalog whose defaults are aihwkit's
fitted parameters; weights are normalized to about [-1, 1]. Change a field
as on any config: ``ReRamSBPresetDevice(dw_min=0.001)``.
"""

from __future__ import annotations

from fxanalog.config import ConstantStepDevice, ExpStepDevice, LinearStepDevice, SoftBoundsReferenceDevice
from fxanalog.config.base import with_defaults

__all__ = [
    "ReRamESPresetDevice",
    "ReRamSBPresetDevice",
    "CapacitorPresetDevice",
    "EcRamPresetDevice",
    "EcRamMOPresetDevice",
    "IdealizedPresetDevice",
    "GokmenVlasovPresetDevice",
    "PCMPresetDevice",
    "ReRamArrayOMPresetDevice",
    "ReRamArrayHfO2PresetDevice",
]


@with_defaults(
    dw_min=0.00135,
    up_down=0.259359,
    w_max=1.0,
    w_min=-1.0,
    a=-0.5,
    b=-0.5,
    gamma_up=5.0,
    gamma_down=5.0,
    A_up=-1.18445,
    A_down=-0.081404,
    # device-to-device
    dw_min_dtod=0.2,
    up_down_dtod=0.05,
    w_max_dtod=0.3,
    w_min_dtod=0.3,
    # cycle-to-cycle
    dw_min_std=5.0,
    write_noise_std=75.0,
)
class ReRamESPresetDevice(ExpStepDevice):
    """A ReRAM device: ``ExpStepDevice`` fitted to Gong et al., Nat. Commun. 9, 2102 (2018).

    Strongly asymmetric, with large cycle-to-cycle and write noise.
    """


@with_defaults(
    dw_min=0.002,
    up_down=0.0,
    w_max=1.25,
    w_min=-0.75,
    mult_noise=False,
    # device-to-device
    dw_min_dtod=0.3,
    up_down_dtod=0.01,
    w_max_dtod=0.3 / 1.25,
    w_min_dtod=0.3 / 0.75,
    # cycle-to-cycle
    dw_min_std=3.75,
    write_noise_std=56.0,
)
class ReRamSBPresetDevice(SoftBoundsReferenceDevice):
    """A ReRAM device: soft bounds, loosely fitted to Gong et al., Nat. Commun. 9, 2102 (2018).

    The devices are taken as calibrated to their symmetry point (with the
    reference at its defaults, 0, that calibration is not modeled; the
    Tiki-Taka presets turn on ``subtract_symmetry_point``);
    ``ReRamESPresetDevice`` is the closer fit. Additive cycle-to-cycle
    noise (``mult_noise = False``).
    """


@with_defaults(
    dw_min=0.005,
    up_down=0.0,
    w_max=1.0,
    w_min=-1.0,
    mult_noise=False,
    gamma_up=0.05,
    gamma_down=0.05,
    # device-to-device
    dw_min_dtod=0.1,
    up_down_dtod=0.06,
    w_max_dtod=0.07,
    w_min_dtod=0.07,
    gamma_up_dtod=0.01,
    gamma_down_dtod=0.01,
    # cycle-to-cycle
    dw_min_std=0.3,
    write_noise_std=0.0,
    mean_bound_reference=True,
    # leakage, in mini-batches
    lifetime=1.0e6,
    lifetime_dtod=0.3,
)
class CapacitorPresetDevice(LinearStepDevice):
    """A capacitor-based cross-point: ``LinearStepDevice`` fitted to Li et al., VLSI Technology (2018), with
    leakage.

    The leakage is the decay of ``lifetime`` (1e6), applied once per
    optimizer step: how many steps a physical leak lasts depends on the
    time one forward-backward-update cycle takes, so adapt it to the
    system studied.
    """


@with_defaults(
    dw_min=0.002,
    up_down=0.0,
    w_max=1.1724,
    w_min=-0.8276,
    mult_noise=True,
    gamma_up=0.1153,
    gamma_down=0.5085,
    # device-to-device
    dw_min_dtod=0.1,
    up_down_dtod=0.01,
    w_max_dtod=0.05,
    w_min_dtod=0.05,
    gamma_up_dtod=0.05,
    gamma_down_dtod=0.05,
    # cycle-to-cycle
    dw_min_std=0.3,
    write_noise_std=0.0,
    mean_bound_reference=True,
)
class EcRamPresetDevice(LinearStepDevice):
    """A lithium-based ECRAM device: ``LinearStepDevice`` fitted to Tang et al., IEDM (2018).

    The range is shifted so that the symmetry point is at 0.
    """


@with_defaults(
    dw_min=2.8214e-4,
    up_down=0.0,
    w_max=1.1714,
    w_min=-0.8286,
    mult_noise=True,
    gamma_up=0.4152,
    gamma_down=0.7342,
    # device-to-device
    dw_min_dtod=0.1,
    up_down_dtod=0.01,
    w_max_dtod=0.05,
    w_min_dtod=0.05,
    gamma_up_dtod=0.05,
    gamma_down_dtod=0.05,
    # cycle-to-cycle
    dw_min_std=2.0,
    write_noise_std=0.0,
    mean_bound_reference=True,
)
class EcRamMOPresetDevice(LinearStepDevice):
    """A metal-oxide ECRAM device: ``LinearStepDevice`` based on the data of Kim et al., IEDM (2019).

    Many small steps (dw_min 2.8e-4) with a large cycle-to-cycle noise.
    """


@with_defaults(
    dw_min=0.0002,
    dw_min_dtod=0.3,
    dw_min_std=0.3,
    up_down=0.0,
    up_down_dtod=0.0,
    w_max=1.0,
    w_min=-1.0,
    w_max_dtod=0.3,
    w_min_dtod=0.3,
)
class IdealizedPresetDevice(ConstantStepDevice):
    """An idealized device: constant steps, symmetric on average, about 10000 states.

    The device-to-device and cycle-to-cycle spreads of Gokmen and Vlasov,
    Front. Neurosci. 10, 333 (2016), without the device-to-device
    asymmetry and with about 8 times more states; the device of Rasch,
    Gokmen and Haensch, IEEE Design & Test (2019).
    """


@with_defaults(
    dw_min=0.0016,
    dw_min_dtod=0.3,
    dw_min_std=0.3,
    up_down=0.0,
    up_down_dtod=0.01,
    w_max=1.0,
    w_min=-1.0,
    w_max_dtod=0.3,
    w_min_dtod=0.3,
)
class GokmenVlasovPresetDevice(ConstantStepDevice):
    """The constant-step device of Gokmen and Vlasov, Front. Neurosci. 10, 333 (2016), scaled to weights in [-1, 1].

    About 1200 states, with the paper's device-to-device and
    cycle-to-cycle spreads.
    """


@with_defaults(
    dw_min=0.01,
    up_down=0.0,
    w_max=2.0,
    w_min=0.0,
    a=-1.0,
    b=0.0,
    gamma_up=2.5,
    gamma_down=2.5,
    A_up=-27.235,
    A_down=-2.235,
    # device-to-device
    dw_min_dtod=0.2,
    up_down_dtod=0.05,
    w_max_dtod=0.1,
    w_min_dtod=0.0,
    # cycle-to-cycle
    dw_min_std=0.6,
    dw_min_std_add=0.042,
    dw_min_std_slope=0.108,
    write_noise_std=0.0,
    # reset
    reset=0.01,
    reset_dtod=0.02,
)
class PCMPresetDevice(ExpStepDevice):
    """A phase-change memory (GST) device: ``ExpStepDevice`` after Nandakumar et al., Front. Neurosci. 14, 406
    (2020).

    It conducts only in one direction (weights in [0, 2]), so it is used as
    a pair with refresh (``PCMPresetUnitCell``). Its step noise is additive
    and grows with the step and the weight; a reset (as in a refresh) sets
    the weight near 0.01, with device-to-device and cycle-to-cycle spread.
    """


@with_defaults(
    enforce_consistency=True,
    dw_min_dtod_log_normal=True,
    dw_min=0.0949,
    up_down=0.0,
    w_max=1.0,
    w_min=-1.0,
    mult_noise=False,
    # device-to-device
    dw_min_dtod=0.7829,
    up_down_dtod=0.01,
    w_max_dtod=0.3499,
    w_min_dtod=0.5695,
    # cycle-to-cycle
    dw_min_std=0.4158,
    write_noise_std=1.4113,
    corrupt_devices_range=0.01,
    corrupt_devices_prob=0.0,
    subtract_symmetry_point=True,
    reference_std=0.05,
)
class ReRamArrayOMPresetDevice(SoftBoundsReferenceDevice):
    """A ReRAM device of an array, "optimized material": soft bounds fitted to the array measurements of Gong,
    Rasch et al., IEDM 2022.

    The weight range is compliance-adjusted to [-1, 1]; the symmetry point
    is subtracted with an error of 5% of w_max (``reference_std``). The
    measured array had 13.5% stuck devices; ``corrupt_devices_prob`` is 0
    here, as in aihwkit (set it to 0.1348 for the measured fraction).
    """


@with_defaults(
    enforce_consistency=True,
    dw_min_dtod_log_normal=True,
    dw_min=0.4622,
    up_down=0.0,
    w_max=1.0,
    w_min=-1.0,
    mult_noise=False,
    # device-to-device
    dw_min_dtod=0.7125,
    up_down_dtod=0.01,
    w_max_dtod=0.4295,
    w_min_dtod=0.5990,
    # cycle-to-cycle
    dw_min_std=0.2174,
    write_noise_std=0.5841,
    corrupt_devices_range=0.01,
    corrupt_devices_prob=0.0,
    subtract_symmetry_point=True,
    reference_std=0.05,
)
class ReRamArrayHfO2PresetDevice(SoftBoundsReferenceDevice):
    """A ReRAM device of an array, "baseline HfO2": soft bounds fitted to the array measurements of Gong, Rasch
    et al., IEDM 2022.

    The weight range is compliance-adjusted to [-1, 1]; the symmetry point
    is subtracted with an error of 5% of w_max (``reference_std``). The
    measured array had 10% stuck devices; ``corrupt_devices_prob`` is 0
    here, as in aihwkit (set it to 0.0977 for the measured fraction).
    """
