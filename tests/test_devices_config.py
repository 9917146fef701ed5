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
    ConfigBase,
    ConstantStepDevice,
    DigitalRankUpdateCell,
    DigitalRankUpdateRPUConfig,
    ExpStepDevice,
    IdealDevice,
    IOParameters,
    LinearStepDevice,
    MappingParameter,
    MixedPrecisionCompound,
    OneSidedUnitCell,
    PowStepDevice,
    PrePostProcessingParameter,
    PulsedDevice,
    PulseType,
    ReferenceUnitCell,
    SingleRPUConfig,
    SoftBoundsDevice,
    TransferCompound,
    UnitCell,
    UnitCellRPUConfig,
    UpdateParameters,
    VectorUnitCell,
    VectorUnitCellUpdatePolicy,
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
         "such as ConstantStepDevice, LinearStepDevice, SoftBoundsDevice, SoftBoundsReferenceDevice, ExpStepDevice, "
         "PowStepDevice)"),
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


# --------------------------------------------------------------------------
# Unit cells and compounds: aihwkit 1.1.0's fields and defaults, typed in from
# src/aihwkit/simulator/configs/compounds.py and parameters/enums.py
# (VectorUnitCellUpdatePolicy); the RPU configs from configs/configs.py.

UNIT_CELL = {"unit_cell_devices": [], "construction_seed": 0}

COMPOUND_DEFAULTS = {
    UnitCell: UNIT_CELL,
    VectorUnitCell: {**UNIT_CELL, "update_policy": VectorUnitCellUpdatePolicy.ALL, "first_update_idx": 0,
                     "gamma_vec": []},
    ReferenceUnitCell: {**UNIT_CELL, "update_policy": VectorUnitCellUpdatePolicy.SINGLE_FIXED,
                        "first_update_idx": 0, "gamma_vec": [1.0, -1.0]},
    OneSidedUnitCell: {**UNIT_CELL, "refresh_every": 0, "units_in_mbatch": True, "refresh_upper_thres": 0.75,
                       "refresh_lower_thres": 0.25, "refresh_forward": IOParameters(),
                       "refresh_update": UpdateParameters(), "copy_inverted": False},
    TransferCompound: {**UNIT_CELL, "gamma": 0.0, "gamma_vec": [], "transfer_every": 1.0, "no_self_transfer": True,
                       "transfer_every_vec": [], "units_in_mbatch": True, "n_reads_per_transfer": 1,
                       "transfer_columns": True, "with_reset_prob": 0.0, "random_selection": False,
                       "fast_lr": 1.0, "transfer_lr": 1.0, "transfer_lr_vec": [], "scale_transfer_lr": True,
                       "transfer_forward": IOParameters(), "transfer_update": UpdateParameters()},
    # aihwkit's `device` default (an empty VectorUnitCell) is replaced by ConstantStepDevice() (documented)
    DigitalRankUpdateCell: {"device": ConstantStepDevice(), "construction_seed": 0},
    MixedPrecisionCompound: {"device": ConstantStepDevice(), "construction_seed": 0, "transfer_every": 1,
                             "n_rows_per_transfer": -1, "random_row": False, "granularity": 0.0,
                             "transfer_lr": 1.0, "n_x_bins": 0, "n_d_bins": 0, "stoc_round_x": True,
                             "stoc_round_d": True},
}
# aihwkit's field order (its dataclass order, base class first): positional arguments follow it
COMPOUND_ORDER = {
    VectorUnitCell: ["unit_cell_devices", "construction_seed", "update_policy", "first_update_idx", "gamma_vec"],
    TransferCompound: ["unit_cell_devices", "construction_seed", "gamma", "gamma_vec", "transfer_every",
                       "no_self_transfer", "transfer_every_vec", "units_in_mbatch", "n_reads_per_transfer",
                       "transfer_columns", "with_reset_prob", "random_selection", "fast_lr", "transfer_lr",
                       "transfer_lr_vec", "scale_transfer_lr", "transfer_forward", "transfer_update"],
    MixedPrecisionCompound: ["device", "construction_seed", "transfer_every", "n_rows_per_transfer", "random_row",
                             "granularity", "transfer_lr", "n_x_bins", "n_d_bins", "stoc_round_x",
                             "stoc_round_d"],
}
COMPOUNDS = list(COMPOUND_DEFAULTS)
CSD = ConstantStepDevice


@pytest.mark.parametrize("cls", COMPOUNDS, ids=lambda c: c.__name__)
def test_compound_fields_and_defaults_are_aihwkits(cls):
    expected = COMPOUND_DEFAULTS[cls]
    names = [f.name for f in dataclasses.fields(cls)]
    assert set(names) == set(expected), set(names) ^ set(expected)
    if cls in COMPOUND_ORDER:
        assert names == COMPOUND_ORDER[cls]
    cfg = cls()
    for name, value in expected.items():
        got = getattr(cfg, name)
        assert got == value and type(got) is type(value), (name, got, value)
    # list and group defaults are fresh objects per instance
    other = cls()
    for name in names:
        if isinstance(getattr(cfg, name), (list, ConfigBase)):
            assert getattr(cfg, name) is not getattr(other, name), name


def test_update_policy_members_are_aihwkits():
    assert [(m.name, m.value) for m in VectorUnitCellUpdatePolicy] == [
        ("ALL", "All"), ("SINGLE_FIXED", "SingleFixed"), ("SINGLE_SEQUENTIAL", "SingleSequential"),
        ("SINGLE_RANDOM", "SingleRandom")]
    for member in VectorUnitCellUpdatePolicy:
        assert member.doc.strip(), member
    cell = VectorUnitCell([CSD(), CSD()], update_policy="single_random")
    cell.validate()
    assert cell.update_policy is VectorUnitCellUpdatePolicy.SINGLE_RANDOM


def test_positional_arguments_follow_aihwkits_order():
    cell = VectorUnitCell([CSD(), SoftBoundsDevice()], 3, "single_fixed", 1, [0.5, 0.5])
    assert cell.unit_cell_devices == [CSD(), SoftBoundsDevice()] and cell.construction_seed == 3
    assert cell.first_update_idx == 1 and cell.gamma_vec == [0.5, 0.5]
    cell.validate()
    assert cell.update_policy is VectorUnitCellUpdatePolicy.SINGLE_FIXED
    mp = MixedPrecisionCompound(SoftBoundsDevice(), 0, 2)
    assert mp.device == SoftBoundsDevice() and mp.transfer_every == 2


def test_unit_cell_rpu_configs():
    for cls, default_device in ((UnitCellRPUConfig, VectorUnitCell(unit_cell_devices=[ConstantStepDevice()])),
                                (DigitalRankUpdateRPUConfig, MixedPrecisionCompound(device=ConstantStepDevice()))):
        cfg = cls()
        assert [f.name for f in dataclasses.fields(cfg)] == ["forward", "backward", "update", "device", "mapping",
                                                             "pre_post"]
        # as SingleRPUConfig (aihwkit's IOManagedRPUConfig): noisy forward and backward, default update
        assert cfg.forward == IOParameters() and cfg.backward == IOParameters() and cfg.forward is not cfg.backward
        assert cfg.update == UpdateParameters()
        assert cfg.mapping == MappingParameter() and cfg.pre_post == PrePostProcessingParameter()
        # the deviation from aihwkit (whose defaults cannot make a tile), documented in the class docstring
        assert cfg.device == default_device and type(cfg.device) is type(default_device)
        assert "Deviation from aihwkit" in cls.__doc__
        assert cls.tile_kind == "pulsed" and cls.records_updates is True
        cfg.validate()
        check_rpu_config(cfg)
        assert registered_config_classes()[cls.__name__] is cls
    for cls in (DigitalRankUpdateCell, MixedPrecisionCompound):
        assert "Deviation from aihwkit" in cls.__doc__ and "ConstantStepDevice()" in cls.__doc__


def test_compounds_exported_and_documented():
    for name in ("UnitCell", "VectorUnitCell", "ReferenceUnitCell", "OneSidedUnitCell", "TransferCompound",
                 "DigitalRankUpdateCell", "MixedPrecisionCompound", "UnitCellRPUConfig", "DigitalRankUpdateRPUConfig",
                 "VectorUnitCellUpdatePolicy"):
        assert name in fxanalog.config.__all__, name
        assert name in fxanalog.__all__ and getattr(fxanalog, name) is getattr(fxanalog.config, name), name
    for cls in COMPOUNDS + [UnitCellRPUConfig, DigitalRankUpdateRPUConfig]:
        assert registered_config_classes()[cls.__name__] is cls
        assert (cls.__doc__ or "").strip(), cls.__name__
        for f in dataclasses.fields(cls):
            assert field_check(f) is not None, f"{cls.__name__}.{f.name}"
            assert field_doc(f), f"{cls.__name__}.{f.name}"


_DEVICE_LIST = ("expected a list of pulsed device configs (fxanalog PulsedDevice subclasses such as "
                "ConstantStepDevice, LinearStepDevice, SoftBoundsDevice, ExpStepDevice, PowStepDevice; not "
                "IdealDevice, not unit cells)")
_ANALOG = ("expected a pulsed device config (a PulsedDevice such as ConstantStepDevice) or a VectorUnitCell, "
           "ReferenceUnitCell or OneSidedUnitCell (not a TransferCompound)")
_UNIT_CELLS = ("expected a unit cell config (fxanalog.VectorUnitCell, ReferenceUnitCell, OneSidedUnitCell or "
               "TransferCompound)")


@pytest.mark.parametrize(
    "cfg, message",
    [
        # the device lists
        (VectorUnitCell(), "VectorUnitCell.unit_cell_devices = []: expected a list of at least 1 pulsed device "
                           "config (VectorUnitCell; got 0)"),
        (VectorUnitCell([IdealDevice()]), f"VectorUnitCell.unit_cell_devices = [IdealDevice()]: {_DEVICE_LIST}; "
                                          "item 0 is an IdealDevice"),
        (VectorUnitCell([CSD(), VectorUnitCell([CSD()])]),
         f"VectorUnitCell.unit_cell_devices = [ConstantStepDevice(), VectorUnitCell(unit_cell_devices="
         f"[ConstantStepDevice()])]: {_DEVICE_LIST}; item 1 is a VectorUnitCell"),
        (VectorUnitCell((CSD(),)), f"VectorUnitCell.unit_cell_devices = (ConstantStepDevice(),): {_DEVICE_LIST}"),
        (VectorUnitCell(CSD()), f"VectorUnitCell.unit_cell_devices = ConstantStepDevice(): {_DEVICE_LIST}"),
        (VectorUnitCell([CSD(), CSD(dw_min=-0.1)]),
         "VectorUnitCell.unit_cell_devices[1].dw_min = -0.1: expected a number > 0"),
        (ReferenceUnitCell(), "ReferenceUnitCell.unit_cell_devices = []: expected a list of 1 to 2 pulsed device "
                              "configs (ReferenceUnitCell; got 0): one config serves both devices, a third would "
                              "not be used"),
        (ReferenceUnitCell([CSD(), CSD(), CSD()]),
         "ReferenceUnitCell.unit_cell_devices = [ConstantStepDevice(), ConstantStepDevice(), ConstantStepDevice()]: "
         "expected a list of 1 to 2 pulsed device configs (ReferenceUnitCell; got 3): one config serves both "
         "devices, a third would not be used"),
        (OneSidedUnitCell(), "OneSidedUnitCell.unit_cell_devices = []: expected a list of 1 to 2 pulsed device "
                             "configs (OneSidedUnitCell; got 0)"),
        (OneSidedUnitCell([CSD(), CSD(), CSD()]),
         "OneSidedUnitCell.unit_cell_devices = [ConstantStepDevice(), ConstantStepDevice(), ConstantStepDevice()]: "
         "expected a list of 1 to 2 pulsed device configs (OneSidedUnitCell; got 3)"),
        (OneSidedUnitCell([CSD(), SoftBoundsDevice()]),
         "OneSidedUnitCell.unit_cell_devices[1] = SoftBoundsDevice(): expected the same device config as "
         "unit_cell_devices[0] = ConstantStepDevice() (both devices of the pair are built from the first; aihwkit "
         "1.1.0 does not use a second config)"),
        (OneSidedUnitCell([CSD(), CSD(dw_min=0.01)]),
         "OneSidedUnitCell.unit_cell_devices[1] = ConstantStepDevice(dw_min=0.01): expected the same device config "
         "as unit_cell_devices[0] = ConstantStepDevice() (both devices of the pair are built from the first; "
         "aihwkit 1.1.0 does not use a second config)"),
        (TransferCompound([CSD()]), "TransferCompound.unit_cell_devices = [ConstantStepDevice()]: expected a list "
                                    "of at least 2 pulsed device configs (TransferCompound; got 1)"),
        (TransferCompound([CSD(), SoftBoundsDevice(), CSD()]),
         "TransferCompound.unit_cell_devices[2] = ConstantStepDevice(): expected the same device config as "
         "unit_cell_devices[1] = SoftBoundsDevice() (only the first device may differ; aihwkit builds every slow "
         "device from device 1)"),
        # the per-device vectors
        (VectorUnitCell([CSD(), CSD()], gamma_vec=[1.0]),
         "VectorUnitCell.gamma_vec = [1.0]: expected an empty list or one entry per device (2 entries for the "
         "cell's 2 devices)"),
        (VectorUnitCell([CSD()], gamma_vec=[0.5, 0.5]),
         "VectorUnitCell.gamma_vec = [0.5, 0.5]: expected an empty list or one entry per device (1 entry for the "
         "cell's 1 device)"),
        (ReferenceUnitCell([CSD()], gamma_vec=[1.0, -1.0, 0.0]),
         "ReferenceUnitCell.gamma_vec = [1.0, -1.0, 0.0]: expected an empty list or one entry per device (2 "
         "entries for the cell's 2 devices)"),
        (TransferCompound([CSD(), CSD()], gamma_vec=[0.1, 1.0, 1.0]),
         "TransferCompound.gamma_vec = [0.1, 1.0, 1.0]: expected an empty list or one entry per device (2 entries "
         "for the cell's 2 devices)"),
        (TransferCompound([CSD(), CSD()], gamma_vec=[1.0, 0.0]),
         "TransferCompound.gamma_vec = [1.0, 0.0]: expected a last entry other than 0 (the last device must count "
         "in the weight)"),
        (TransferCompound([CSD(), CSD()], transfer_every_vec=[1.0]),
         "TransferCompound.transfer_every_vec = [1.0]: expected an empty list or one entry per device (2 entries "
         "for the cell's 2 devices)"),
        (TransferCompound([CSD(), CSD()], transfer_lr_vec=[1.0, 1.0, 1.0]),
         "TransferCompound.transfer_lr_vec = [1.0, 1.0, 1.0]: expected an empty list or one entry per device (2 "
         "entries for the cell's 2 devices)"),
        (TransferCompound([CSD(), CSD()], transfer_every_vec=[1.0, -1.0]),
         "TransferCompound.transfer_every_vec = [1.0, -1.0]: expected numbers >= 0"),
        (TransferCompound([CSD(), CSD()], transfer_lr_vec=[-0.5, 1.0]),
         "TransferCompound.transfer_lr_vec = [-0.5, 1.0]: expected numbers >= 0"),
        (TransferCompound([CSD(), CSD()], gamma_vec="0.1"), "TransferCompound.gamma_vec = '0.1': expected a list "
                                                            "of numbers"),
        # indices, thresholds, rates
        (VectorUnitCell([CSD(), CSD()], first_update_idx=2),
         "VectorUnitCell.first_update_idx = 2: expected a device index in [0, 1] (the cell has 2 devices)"),
        (VectorUnitCell([CSD()], first_update_idx=-1),
         "VectorUnitCell.first_update_idx = -1: expected a whole number >= 0"),
        (ReferenceUnitCell([CSD()], first_update_idx=2),
         "ReferenceUnitCell.first_update_idx = 2: expected a device index in [0, 1] (the cell has 2 devices)"),
        (VectorUnitCell([CSD()], update_policy="random"),
         "VectorUnitCell.update_policy = 'random': expected a VectorUnitCellUpdatePolicy: one of ALL, SINGLE_FIXED, "
         "SINGLE_SEQUENTIAL, SINGLE_RANDOM (or its name as a string, any case)"),
        (OneSidedUnitCell([CSD()], refresh_upper_thres=1.5),
         "OneSidedUnitCell.refresh_upper_thres = 1.5: expected a threshold in [0, 1]"),
        (OneSidedUnitCell([CSD()], refresh_lower_thres=-0.1),
         "OneSidedUnitCell.refresh_lower_thres = -0.1: expected a threshold in [0, 1]"),
        (OneSidedUnitCell([CSD()], refresh_every=-1), "OneSidedUnitCell.refresh_every = -1: expected a whole number "
                                                      ">= 0"),
        (OneSidedUnitCell([CSD()], refresh_update=UpdateParameters(desired_bl=0)),
         "OneSidedUnitCell.refresh_update.desired_bl = 0: expected a whole number >= 1"),
        (TransferCompound([CSD(), CSD()], with_reset_prob=0.5, transfer_columns=False),
         "TransferCompound.with_reset_prob = 0.5: a reset needs transfer_columns = True (got False); expected 0.0 "
         "with row transfer"),
        (TransferCompound([CSD(), CSD()], with_reset_prob=1.5),
         "TransferCompound.with_reset_prob = 1.5: expected a probability in [0, 1]"),
        (TransferCompound([CSD(), CSD()], transfer_every=-1.0),
         "TransferCompound.transfer_every = -1.0: expected a number >= 0"),
        (TransferCompound([CSD(), CSD()], n_reads_per_transfer=0),
         "TransferCompound.n_reads_per_transfer = 0: expected a whole number >= 1"),
        (TransferCompound([CSD(), CSD()], fast_lr=-0.1), "TransferCompound.fast_lr = -0.1: expected a number >= 0"),
        (TransferCompound([CSD(), CSD()], transfer_forward=UpdateParameters()),
         "TransferCompound.transfer_forward = UpdateParameters(): expected an IOParameters"),
        # the digital rank update
        (MixedPrecisionCompound(device=TransferCompound([CSD(), CSD()])),
         f"MixedPrecisionCompound.device = TransferCompound(unit_cell_devices=[ConstantStepDevice(), "
         f"ConstantStepDevice()]): {_ANALOG}"),
        (MixedPrecisionCompound(device=IdealDevice()), f"MixedPrecisionCompound.device = IdealDevice(): {_ANALOG}"),
        (MixedPrecisionCompound(device=UnitCell([CSD()])),
         f"MixedPrecisionCompound.device = UnitCell(unit_cell_devices=[ConstantStepDevice()]): {_ANALOG}"),
        (MixedPrecisionCompound(device=VectorUnitCell()),
         "MixedPrecisionCompound.device.unit_cell_devices = []: expected a list of at least 1 pulsed device config "
         "(VectorUnitCell; got 0)"),
        (MixedPrecisionCompound(n_x_bins=-1), "MixedPrecisionCompound.n_x_bins = -1: expected a whole number >= 0"),
        (MixedPrecisionCompound(n_d_bins=2.0), "MixedPrecisionCompound.n_d_bins = 2.0: expected a whole number >= 0"),
        (MixedPrecisionCompound(n_x_bins=1),
         "MixedPrecisionCompound.n_x_bins = 1: expected 0 (no quantization) or a whole number >= 2 (one bin has no "
         "step: n // 2 = 0)"),
        (MixedPrecisionCompound(granularity=-0.001),
         "MixedPrecisionCompound.granularity = -0.001: expected a number >= 0"),
        (MixedPrecisionCompound(n_rows_per_transfer=-2),
         "MixedPrecisionCompound.n_rows_per_transfer = -2: expected a whole number >= -1"),
        (MixedPrecisionCompound(transfer_every=-1),
         "MixedPrecisionCompound.transfer_every = -1: expected a whole number >= 0"),
        (MixedPrecisionCompound(transfer_lr=-1.0), "MixedPrecisionCompound.transfer_lr = -1.0: expected a number >= 0"),
        # the RPU configs
        (UnitCellRPUConfig(device=UnitCell([CSD()])),
         f"UnitCellRPUConfig.device = UnitCell(unit_cell_devices=[ConstantStepDevice()]): {_UNIT_CELLS}"),
        (UnitCellRPUConfig(device=CSD()), f"UnitCellRPUConfig.device = ConstantStepDevice(): {_UNIT_CELLS}"),
        (UnitCellRPUConfig(device=MixedPrecisionCompound()),
         f"UnitCellRPUConfig.device = MixedPrecisionCompound(): {_UNIT_CELLS}"),
        (UnitCellRPUConfig(device=TransferCompound([CSD()])),
         "UnitCellRPUConfig.device.unit_cell_devices = [ConstantStepDevice()]: expected a list of at least 2 pulsed "
         "device configs (TransferCompound; got 1)"),
        (DigitalRankUpdateRPUConfig(device=DigitalRankUpdateCell()),
         "DigitalRankUpdateRPUConfig.device = DigitalRankUpdateCell(): expected a digital rank update cell "
         "(fxanalog.MixedPrecisionCompound)"),
        (DigitalRankUpdateRPUConfig(device=VectorUnitCell([CSD()])),
         "DigitalRankUpdateRPUConfig.device = VectorUnitCell(unit_cell_devices=[ConstantStepDevice()]): expected a "
         "digital rank update cell (fxanalog.MixedPrecisionCompound)"),
        (DigitalRankUpdateRPUConfig(device=MixedPrecisionCompound(device=PowStepDevice(pow_gamma=-1.0))),
         "DigitalRankUpdateRPUConfig.device.device.pow_gamma = -1.0: expected a number >= 0"),
    ],
)
def test_compound_bad_input_is_refused_naming_the_field(cfg, message):
    before = copy.deepcopy(cfg)
    with pytest.raises(ValueError) as err:
        cfg.validate()
    assert str(err.value) == message
    assert cfg == before and repr(cfg) == repr(before)  # nothing the user gave is changed


def test_valid_compounds_are_accepted_unchanged():
    cfgs = [
        VectorUnitCell([CSD()]),
        VectorUnitCell([CSD(), SoftBoundsDevice(), PowStepDevice()], update_policy=VectorUnitCellUpdatePolicy.
                       SINGLE_SEQUENTIAL, first_update_idx=2, gamma_vec=[0.2, -1, 3]),
        ReferenceUnitCell([CSD()]),  # one device used twice, as aihwkit
        ReferenceUnitCell([SoftBoundsDevice(), CSD(dw_min=0.01)], first_update_idx=1, gamma_vec=[]),
        OneSidedUnitCell([ExpStepDevice()]),
        OneSidedUnitCell([ExpStepDevice(w_min=0.0), ExpStepDevice(w_min=0.0)], refresh_every=1,
                         refresh_upper_thres=1.0, refresh_lower_thres=0.0, copy_inverted=True),
        TransferCompound([SoftBoundsDevice(), CSD()]),
        TransferCompound([SoftBoundsDevice(), CSD(), CSD(), CSD()], gamma=0.5, gamma_vec=[0.0, 0.0, 0.1, 1.0],
                         transfer_every_vec=[1.0, 0.0, 2.5, 0.0], transfer_lr_vec=[0.1, 0.2, 0.0, 0.0],
                         transfer_every=0.0, n_reads_per_transfer=4, with_reset_prob=1.0, fast_lr=0.0),
        TransferCompound([CSD(), CSD()], transfer_columns=False),
        MixedPrecisionCompound(device=VectorUnitCell([CSD(), CSD()])),
        MixedPrecisionCompound(device=ReferenceUnitCell([CSD()]), n_x_bins=2, n_d_bins=255, granularity=0.001,
                               n_rows_per_transfer=0, transfer_every=0),
        MixedPrecisionCompound(device=OneSidedUnitCell([ExpStepDevice()])),
        UnitCellRPUConfig(device=TransferCompound([CSD(), CSD()])),
        DigitalRankUpdateRPUConfig(device=MixedPrecisionCompound(device=LinearStepDevice())),
    ]
    for cfg in cfgs:
        before = copy.deepcopy(cfg)
        cfg.validate()
        assert cfg == before and repr(cfg) == repr(before)


def a_tiki_taka_config() -> UnitCellRPUConfig:
    cfg = UnitCellRPUConfig(device=TransferCompound(
        unit_cell_devices=[SoftBoundsDevice(dw_min=0.01), LinearStepDevice(gamma_up=0.1),
                           LinearStepDevice(gamma_up=0.1)],
        gamma_vec=[0.1, 0.2, 1.0], transfer_lr_vec=[0.5, 0.25, 0.0], units_in_mbatch=False))
    cfg.device.transfer_forward.out_noise = 0.0
    cfg.device.transfer_update.desired_bl = 1
    cfg.update.desired_bl = 10
    return cfg


def a_mixed_precision_config() -> DigitalRankUpdateRPUConfig:
    return DigitalRankUpdateRPUConfig(device=MixedPrecisionCompound(
        device=OneSidedUnitCell([ExpStepDevice(w_min=0.0)], refresh_every=2, refresh_forward=IOParameters(
            is_perfect=True)), n_x_bins=4, granularity=0.002))


@pytest.mark.parametrize("make", [
    a_tiki_taka_config, a_mixed_precision_config, UnitCellRPUConfig, DigitalRankUpdateRPUConfig,
    lambda: VectorUnitCell([CSD(), PowStepDevice(pow_gamma=2.0)], update_policy="single_random"),
    lambda: ReferenceUnitCell([SoftBoundsDevice()]),
    lambda: UnitCellRPUConfig(device=OneSidedUnitCell([ExpStepDevice(w_min=0.0)], copy_inverted=True)),
    lambda: MixedPrecisionCompound(device=VectorUnitCell([CSD(), CSD()], gamma_vec=[0.5, 0.5])),
], ids=lambda m: getattr(m, "__name__", "lambda"))
def test_compound_round_trips(make):
    cfg = make()
    cfg.validate()
    data = json.loads(json.dumps(cfg.to_dict()))
    for back in (type(cfg).from_dict(data), config_from_dict(data), copy.deepcopy(cfg),
                 pickle.loads(pickle.dumps(cfg))):
        assert back == cfg and back is not cfg and type(back) is type(cfg)
        assert repr(back) == repr(cfg)
        back.validate()


def test_compound_dicts_name_the_device_classes():
    data = a_tiki_taka_config().to_dict()
    devices = data["device"]["unit_cell_devices"]
    assert [d["class"] for d in devices] == ["SoftBoundsDevice", "LinearStepDevice", "LinearStepDevice"]
    assert devices[0]["dw_min"] == 0.01 and devices[1]["gamma_up"] == 0.1
    assert data["device"]["class"] == "TransferCompound" and data["device"]["transfer_update"]["desired_bl"] == 1
    mp = a_mixed_precision_config().to_dict()
    assert mp["device"]["device"]["class"] == "OneSidedUnitCell"
    assert mp["device"]["device"]["unit_cell_devices"][0]["class"] == "ExpStepDevice"
    cell = VectorUnitCell([CSD()], update_policy="single_fixed")
    cell.validate()  # stores the member for its name
    assert cell.to_dict()["update_policy"] == "SINGLE_FIXED"
    # an unknown field of a device inside the list is named
    data["device"]["unit_cell_devices"][1]["gama_up"] = 0.2
    with pytest.raises(ValueError, match="LinearStepDevice: unknown field 'gama_up'"):
        config_from_dict(data)


def test_deepcopy_of_a_compound_is_independent():
    cfg = a_tiki_taka_config()
    dup = copy.deepcopy(cfg)
    dup.device.unit_cell_devices[0].dw_min = 0.5
    dup.device.unit_cell_devices.append(LinearStepDevice(gamma_up=0.1))
    dup.device.gamma_vec[0] = 0.3
    assert cfg.device.unit_cell_devices[0].dw_min == 0.01 and len(cfg.device.unit_cell_devices) == 3
    assert cfg.device.gamma_vec == [0.1, 0.2, 1.0]
    assert cfg == a_tiki_taka_config() and dup != cfg


def test_compound_repr_shows_only_differences():
    assert repr(UnitCellRPUConfig()) == "UnitCellRPUConfig()"
    assert repr(TransferCompound()) == "TransferCompound()"
    assert repr(ReferenceUnitCell([CSD()])) == "ReferenceUnitCell(unit_cell_devices=[ConstantStepDevice()])"
    assert repr(UnitCellRPUConfig(device=TransferCompound([CSD(dw_min=0.01), CSD()], gamma=0.1))) == (
        "UnitCellRPUConfig(device=TransferCompound(unit_cell_devices=[ConstantStepDevice(dw_min=0.01), "
        "ConstantStepDevice()], gamma=0.1))")
    assert repr(MixedPrecisionCompound(n_x_bins=8)) == "MixedPrecisionCompound(n_x_bins=8)"
