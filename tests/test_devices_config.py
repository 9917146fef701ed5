"""The configs of training on pulsed devices: aihwkit 1.1.0's names, fields and
defaults (typed in by hand from its sources), validation, round trips, printing."""

import copy
import dataclasses
import json
import math
import pickle

import pytest

import fxanalog
from fxanalog.config import (
    ConstantStepDevice,
    ExpStepDevice,
    IdealDevice,
    IOParameters,
    LinearStepDevice,
    MappingParameter,
    PowStepDevice,
    PrePostProcessingParameter,
    PulsedDevice,
    PulseType,
    SingleRPUConfig,
    SoftBoundsDevice,
    UpdateParameters,
    check_rpu_config,
    config_from_dict,
    registered_config_classes,
)
from fxanalog.config.base import field_check, field_doc

# --------------------------------------------------------------------------
# aihwkit 1.1.0's fields and defaults, typed in from
# src/aihwkit/simulator/configs/devices.py and parameters/training.py
# (PulsedDevice's `drift` sub-parameter is left out on purpose).

PULSED = {
    "construction_seed": 0,
    "corrupt_devices_prob": 0.0,
    "corrupt_devices_range": 0.1,
    "diffusion": 0.0,
    "diffusion_dtod": 0.0,
    "dw_min": 0.001,
    "dw_min_dtod": 0.3,
    "dw_min_dtod_log_normal": False,
    "dw_min_std": 0.3,
    "enforce_consistency": True,
    "lifetime": 0.0,
    "lifetime_dtod": 0.0,
    "perfect_bias": False,
    "reset": 0.0,
    "reset_dtod": 0.0,
    "reset_std": 0.01,
    "up_down": 0.0,
    "up_down_dtod": 0.01,
    "w_max": 0.6,
    "w_max_dtod": 0.3,
    "w_min": -0.6,
    "w_min_dtod": 0.3,
    "count_pulses": False,
}

AIHWKIT_DEFAULTS = {
    IdealDevice: {"construction_seed": 0, "diffusion": 0.0, "lifetime": 0.0, "reset_std": 0.01},
    PulsedDevice: PULSED,
    ConstantStepDevice: PULSED,
    LinearStepDevice: {
        **PULSED,
        "gamma_up": 0.0,
        "gamma_down": 0.0,
        "gamma_up_dtod": 0.05,
        "gamma_down_dtod": 0.05,
        "allow_increasing": False,
        "mean_bound_reference": True,
        "mult_noise": True,
        "write_noise_std": 0.0,
        "apply_write_noise_on_set": True,
        "reverse_up": False,
        "reverse_down": False,
        "reverse_offset": 0.01,
    },
    SoftBoundsDevice: {
        **PULSED,
        "mult_noise": True,
        "write_noise_std": 0.0,
        "apply_write_noise_on_set": True,
        "reverse_up": False,
        "reverse_down": False,
        "reverse_offset": 0.01,
    },
    ExpStepDevice: {
        **PULSED,
        "A_up": 0.00081,
        "A_down": 0.36833,
        "gamma_up": 12.44625,
        "gamma_down": 12.78785,
        "a": 0.244,
        "b": 0.2425,
        "dw_min_std_add": 0.0,
        "dw_min_std_slope": 0.0,
        "write_noise_std": 0.0,
        "apply_write_noise_on_set": True,
    },
    PowStepDevice: {
        **PULSED,
        "pow_gamma": 1.0,
        "pow_gamma_dtod": 0.1,
        "pow_up_down": 0.0,
        "pow_up_down_dtod": 0.0,
        "write_noise_std": 0.0,
        "apply_write_noise_on_set": True,
    },
    UpdateParameters: {
        "desired_bl": 31,
        "fixed_bl": True,
        "pulse_type": PulseType.STOCHASTIC_COMPRESSED,
        "res": 0,
        "x_res_implicit": 0,
        "d_res_implicit": 0,
        "d_sparsity": False,
        "sto_round": False,
        "update_bl_management": True,
        "update_management": True,
        "um_grad_scale": 1.0,
    },
}

NEW_CLASSES = list(AIHWKIT_DEFAULTS) + [SingleRPUConfig]
DEVICES = [IdealDevice, PulsedDevice, ConstantStepDevice, LinearStepDevice, SoftBoundsDevice, ExpStepDevice,
           PowStepDevice]


@pytest.mark.parametrize("cls", list(AIHWKIT_DEFAULTS), ids=lambda c: c.__name__)
def test_fields_and_defaults_are_aihwkits(cls):
    expected = AIHWKIT_DEFAULTS[cls]
    names = [f.name for f in dataclasses.fields(cls)]
    assert set(names) == set(expected), set(names) ^ set(expected)
    cfg = cls()
    for name, value in expected.items():
        got = getattr(cfg, name)
        assert got == value, (name, got, value)
        assert isinstance(got, bool) == isinstance(value, bool), name
    cfg.validate()  # the defaults are valid


def test_pulse_type_members_are_aihwkits():
    assert [(m.name, m.value) for m in PulseType] == [
        ("NONE", "None"),
        ("STOCHASTIC_COMPRESSED", "StochasticCompressed"),
        ("STOCHASTIC", "Stochastic"),
        ("NONE_WITH_DEVICE", "NoneWithDevice"),
        ("MEAN_COUNT", "MeanCount"),
        ("DETERMINISTIC_IMPLICIT", "DeterministicImplicit"),
    ]
    for member in PulseType:
        assert member.doc.strip(), member
    up = UpdateParameters(pulse_type="none_with_device")
    up.validate()
    assert up.pulse_type is PulseType.NONE_WITH_DEVICE


def test_single_rpu_config_defaults_are_aihwkits():
    cfg = SingleRPUConfig()
    assert [f.name for f in dataclasses.fields(cfg)] == ["forward", "backward", "update", "device", "mapping",
                                                         "pre_post"]
    # aihwkit: forward and backward are both IOParameters() (noisy), the device a ConstantStepDevice()
    assert cfg.forward == IOParameters() and cfg.backward == IOParameters()
    assert cfg.forward.is_perfect is False and cfg.backward.is_perfect is False
    assert cfg.backward.out_noise == 0.06 and cfg.backward.inp_res == 1 / 126 and cfg.backward.out_res == 1 / 510
    assert cfg.forward is not cfg.backward
    assert cfg.update == UpdateParameters()
    assert type(cfg.device) is ConstantStepDevice and cfg.device == ConstantStepDevice()
    assert cfg.mapping == MappingParameter() and cfg.pre_post == PrePostProcessingParameter()
    assert SingleRPUConfig.records_updates is True and SingleRPUConfig.tile_kind == "pulsed"
    assert "records_updates" not in {f.name for f in dataclasses.fields(cfg)}
    with pytest.raises(AttributeError, match="SingleRPUConfig has no field 'records_updates'"):
        cfg.records_updates = False  # a class constant, not a field
    with pytest.raises(AttributeError, match="SingleRPUConfig has no field 'tile_kind'"):
        cfg.tile_kind = "inference"
    check_rpu_config(cfg)
    assert isinstance(cfg, fxanalog.config.RPUConfigBase)


def test_every_device_is_accepted_by_single_rpu_config():
    for cls in DEVICES:
        cfg = SingleRPUConfig(device=cls())
        cfg.validate()
        assert type(cfg.device) is cls


def test_exported_from_the_package():
    for name in ("SingleRPUConfig", "UpdateParameters", "PulseType", "IdealDevice", "ConstantStepDevice",
                 "LinearStepDevice", "SoftBoundsDevice", "ExpStepDevice", "PowStepDevice", "PulsedDevice"):
        assert getattr(fxanalog, name) is getattr(fxanalog.config, name), name
        assert name in fxanalog.__all__ and name in fxanalog.config.__all__, name


def test_registered_documented_and_checked():
    registry = registered_config_classes()
    for cls in NEW_CLASSES:
        assert registry[cls.__name__] is cls
        assert (cls.__doc__ or "").strip(), cls.__name__
        for f in dataclasses.fields(cls):
            assert field_check(f) is not None, f"{cls.__name__}.{f.name}"
            assert field_doc(f), f"{cls.__name__}.{f.name}"


def test_device_docstrings_state_the_update_rule():
    # the first paragraph (the config reference's) states each device's step
    first = {cls: " ".join(cls.__doc__.strip().split("\n\n")[0].split()) for cls in DEVICES}
    assert "dw+ (1 + dw_min_std xi)" in first[ConstantStepDevice]
    assert "(dw+ + a+ w)(1 + dw_min_std xi)" in first[LinearStepDevice]
    assert "dw+ (1 - w / b_max)(1 + dw_min_std xi)" in first[SoftBoundsDevice]
    assert "y+ dw+ (1 + dw_min_std xi)" in first[ExpStepDevice]
    assert "((b_max - w) / R)^g+" in first[PowStepDevice]
    assert "W -= lr sum_b d_b x_b^T" in first[IdealDevice]
    # the device-to-device draws are in PulsedDevice's docstring
    doc = " ".join(PulsedDevice.__doc__.split())
    for formula in ("b_max = w_max (1 + w_max_dtod xi)", "b_min = w_min (1 + w_min_dtod xi)",
                    "dw+ = (min(up_down, 0) + gain + r) dw_min", "dw- = (-max(up_down, 0) + gain - r) dw_min",
                    "gain = 1 + dw_min_dtod xi", "r = up_down_dtod xi", "beta = reset + reset_dtod xi"):
        assert formula in doc, formula


# --------------------------------------------------------------------------
# Bad input: refused, naming the field


@pytest.mark.parametrize(
    "cfg, message",
    [
        (ConstantStepDevice(dw_min=-0.001), "ConstantStepDevice.dw_min = -0.001: expected a number > 0"),
        (SoftBoundsDevice(dw_min=0.0), "SoftBoundsDevice.dw_min = 0.0: expected a number > 0"),
        (ConstantStepDevice(w_min=0.7, w_max=0.6), "ConstantStepDevice.w_min = 0.7: expected a number <= w_max = 0.6"),
        (PowStepDevice(w_min=0.1), "PowStepDevice.w_min = 0.1: expected a number <= 0 (the bounds [w_min, w_max] "
                                   "must contain 0)"),
        (ExpStepDevice(w_max=-0.1, w_min=-0.6),
         "ExpStepDevice.w_max = -0.1: expected a number >= 0 (the bounds [w_min, w_max] must contain 0)"),
        (LinearStepDevice(dw_min_dtod=-0.1), "LinearStepDevice.dw_min_dtod = -0.1: expected a number >= 0"),
        (ConstantStepDevice(w_max_dtod=-0.3), "ConstantStepDevice.w_max_dtod = -0.3: expected a number >= 0"),
        (ConstantStepDevice(corrupt_devices_prob=1.5),
         "ConstantStepDevice.corrupt_devices_prob = 1.5: expected a probability in [0, 1]"),
        (ConstantStepDevice(dw_min=True), "ConstantStepDevice.dw_min = True: expected a number > 0"),
        (ConstantStepDevice(dw_min=math.nan),
         "ConstantStepDevice.dw_min = nan: expected a finite number > 0 (NaN and +-inf are refused)"),
        (ConstantStepDevice(construction_seed=1.0),
         "ConstantStepDevice.construction_seed = 1.0: expected a whole number >= 0"),
        (ConstantStepDevice(reset=-0.1), "ConstantStepDevice.reset = -0.1: expected a number >= 0"),
        (ConstantStepDevice(enforce_consistency=1),
         "ConstantStepDevice.enforce_consistency = 1: expected a bool (True or False)"),
        (IdealDevice(diffusion=-0.1), "IdealDevice.diffusion = -0.1: expected a number >= 0"),
        (LinearStepDevice(reverse_up=True, mult_noise=False),
         "LinearStepDevice.mult_noise = False: reverse_up / reverse_down need mult_noise = True (got reverse_up = "
         "True, reverse_down = False)"),
        (SoftBoundsDevice(reverse_down=True, mult_noise=False),
         "SoftBoundsDevice.mult_noise = False: reverse_up / reverse_down need mult_noise = True (got reverse_up = "
         "False, reverse_down = True)"),
        (PowStepDevice(pow_gamma=-1.0), "PowStepDevice.pow_gamma = -1.0: expected a number >= 0"),
        (UpdateParameters(desired_bl=0), "UpdateParameters.desired_bl = 0: expected a whole number >= 1"),
        (UpdateParameters(desired_bl=31.0), "UpdateParameters.desired_bl = 31.0: expected a whole number >= 1"),
        (UpdateParameters(um_grad_scale=0.0), "UpdateParameters.um_grad_scale = 0.0: expected a number > 0"),
        (UpdateParameters(res=31),
         "UpdateParameters.res = 31: expected a number <= 1.0 (a bin width in (0, 1]; <= 0: off)"),
        (UpdateParameters(pulse_type="pulsed"),
         "UpdateParameters.pulse_type = 'pulsed': expected a PulseType: one of NONE, STOCHASTIC_COMPRESSED, "
         "STOCHASTIC, NONE_WITH_DEVICE, MEAN_COUNT, DETERMINISTIC_IMPLICIT (or its name as a string, any case)"),
        (SingleRPUConfig(device=IOParameters()),
         "SingleRPUConfig.device = IOParameters(): expected a device config (fxanalog.IdealDevice or a PulsedDevice "
         "such as ConstantStepDevice, LinearStepDevice, SoftBoundsDevice, ExpStepDevice, PowStepDevice)"),
        (SingleRPUConfig(device=ConstantStepDevice(dw_min=-0.001)),
         "SingleRPUConfig.device.dw_min = -0.001: expected a number > 0"),
        (SingleRPUConfig(update=UpdateParameters(desired_bl=-1)),
         "SingleRPUConfig.update.desired_bl = -1: expected a whole number >= 1"),
        (SingleRPUConfig(backward=IOParameters(out_noise=-1.0)),
         "SingleRPUConfig.backward.out_noise = -1.0: expected a number >= 0"),
    ],
)
def test_bad_input_is_refused_naming_the_field(cfg, message):
    before = copy.deepcopy(cfg)
    with pytest.raises(ValueError) as err:
        cfg.validate()
    assert str(err.value) == message
    assert repr(cfg) == repr(before)  # nothing the user gave is changed


@pytest.mark.parametrize("bad", ["ConstantStep", ConstantStepDevice, {"class": "ConstantStepDevice"}, None])
def test_single_rpu_config_refuses_non_devices(bad):
    with pytest.raises(ValueError, match=r"^SingleRPUConfig\.device = .*: expected a device config"):
        SingleRPUConfig(device=bad).validate()


def test_unknown_device_fields_are_refused():
    with pytest.raises(TypeError, match="dw_mn"):
        ConstantStepDevice(dw_mn=0.01)
    with pytest.raises(TypeError, match="gamma"):
        SoftBoundsDevice(gamma_up=0.1)  # aihwkit's SoftBoundsDevice has no gamma fields
    dev = SoftBoundsDevice()
    with pytest.raises(AttributeError) as err:
        dev.dw_mn = 0.01
    assert str(err.value).startswith("SoftBoundsDevice has no field 'dw_mn' (did you mean 'dw_min'?); its fields: ")
    assert "dw_mn" not in vars(dev)
    cfg = SingleRPUConfig()
    with pytest.raises(AttributeError, match=r"ConstantStepDevice has no field 'w_maxx' \(did you mean 'w_max'\?\)"):
        cfg.device.w_maxx = 1.0
    with pytest.raises(AttributeError, match=r"UpdateParameters has no field 'desired_BL' \(did you mean "
                                             r"'desired_bl'\?\)"):
        cfg.update.desired_BL = 10
    data = SingleRPUConfig(device=PowStepDevice()).to_dict()
    data["device"]["pow_gama"] = 2.0
    with pytest.raises(ValueError, match="PowStepDevice: unknown field 'pow_gama'"):
        config_from_dict(data)


def test_valid_values_are_accepted_unchanged():
    cfgs = [
        ConstantStepDevice(dw_min=1, w_min=0, w_max=0, up_down=-0.5, construction_seed=7, reset=0.1),
        LinearStepDevice(gamma_up=-0.2, allow_increasing=True, reverse_up=True, reverse_down=True),
        ExpStepDevice(A_up=-1.0, dw_min_std_add=0.1, dw_min_std_slope=0.2),
        PowStepDevice(pow_gamma=0, pow_up_down=-0.3),
        UpdateParameters(res=-1, x_res_implicit=0.5, d_res_implicit=1, desired_bl=1, pulse_type="mean_count"),
        SingleRPUConfig(device=IdealDevice(lifetime=100, diffusion=0.001)),
    ]
    for cfg in cfgs:
        before = copy.deepcopy(cfg)
        cfg.validate()
        if isinstance(cfg, UpdateParameters):
            assert cfg.pulse_type is PulseType.MEAN_COUNT  # the name is stored as the member
            before.pulse_type = PulseType.MEAN_COUNT
        assert cfg == before


# --------------------------------------------------------------------------
# Round trips and printing


def a_training_config() -> SingleRPUConfig:
    cfg = SingleRPUConfig(device=SoftBoundsDevice(dw_min=0.01, w_max=1.0, write_noise_std=0.5))
    cfg.update.desired_bl = 10
    cfg.update.pulse_type = PulseType.DETERMINISTIC_IMPLICIT
    cfg.backward.out_noise = 0.0
    cfg.mapping.max_input_size = 128
    return cfg


def single_with(cls):
    def make() -> SingleRPUConfig:
        return SingleRPUConfig(device=cls(diffusion=0.01) if cls is IdealDevice else cls(dw_min=0.05))

    make.__name__ = f"SingleRPUConfig_{cls.__name__}"
    return make


@pytest.mark.parametrize("make", [SingleRPUConfig, a_training_config, UpdateParameters] + DEVICES
                         + [single_with(cls) for cls in DEVICES], ids=lambda m: m.__name__)
def test_round_trips(make):
    cfg = make()
    cfg.validate()
    data = json.loads(json.dumps(cfg.to_dict()))
    for back in (type(cfg).from_dict(data), config_from_dict(data), copy.deepcopy(cfg), pickle.loads(pickle.dumps(cfg)),
                 dataclasses.replace(cfg)):
        assert back == cfg and back is not cfg and type(back) is type(cfg)
        if isinstance(cfg, SingleRPUConfig):
            assert type(back.device) is type(cfg.device)
        assert repr(back) == repr(cfg)
        back.validate()
        with pytest.raises(AttributeError, match="no field 'nope'"):
            back.nope = 1


def test_device_subclasses_are_distinct_in_equality_and_dicts():
    # the same field values, another device: not equal, and the dict names the class
    assert ConstantStepDevice() != PulsedDevice()
    assert SingleRPUConfig(device=ConstantStepDevice()) != SingleRPUConfig(device=PulsedDevice())
    data = SingleRPUConfig(device=ExpStepDevice()).to_dict()
    assert data["device"]["class"] == "ExpStepDevice" and data["update"]["pulse_type"] == "STOCHASTIC_COMPRESSED"


def test_repr_shows_only_differences():
    assert repr(SingleRPUConfig()) == "SingleRPUConfig()"
    assert repr(SoftBoundsDevice()) == "SoftBoundsDevice()"
    assert repr(LinearStepDevice(gamma_up=0.1)) == "LinearStepDevice(gamma_up=0.1)"
    assert repr(SingleRPUConfig(device=SoftBoundsDevice(dw_min=0.01))) == (
        "SingleRPUConfig(device=SoftBoundsDevice(dw_min=0.01))")
    text = repr(a_training_config())
    assert "desired_bl=10" in text and "pulse_type=<PulseType.DETERMINISTIC_IMPLICIT" in text
    assert "write_noise_std=0.5" in text and "w_max=1.0" in text and "max_input_size=128" in text
    assert "dw_min_std" not in text and "out_bound" not in text and "fixed_bl" not in text
