"""aihwkit's presets (fxanalog.presets): every class builds and validates, its
values are aihwkit 1.1.0's (typed in by hand below from its sources), it round-trips,
and a preset config makes an analog layer."""

import copy
import dataclasses
import json
import pickle
import warnings

import pytest
import torch

import fxanalog
import fxanalog.presets as presets
from fxanalog.config import (
    BoundManagementType,
    ConstantStepDevice,
    DigitalRankUpdateRPUConfig,
    ExpStepDevice,
    GlobalDriftCompensation,
    IOParameters,
    LinearStepDevice,
    MixedPrecisionCompound,
    NoiseManagementType,
    OneSidedUnitCell,
    PCMLikeNoiseModel,
    PulseType,
    SingleRPUConfig,
    SoftBoundsDevice,
    SoftBoundsReferenceDevice,
    TransferCompound,
    UnitCellRPUConfig,
    UpdateParameters,
    VectorUnitCell,
    VectorUnitCellUpdatePolicy,
    WeightClipType,
    WeightNoiseType,
    WeightRemapType,
    config_from_dict,
    registered_config_classes,
)
from fxanalog.config.base import with_defaults
from fxanalog.presets import (
    CapacitorPresetDevice,
    EcRamMOPresetDevice,
    EcRamPresetDevice,
    GokmenVlasovPresetDevice,
    IdealizedPresetDevice,
    PCMPresetDevice,
    PCMPresetUnitCell,
    PresetIOParameters,
    PresetUpdateParameters,
    ReRamArrayHfO2PresetDevice,
    ReRamArrayOMPresetDevice,
    ReRamESPresetDevice,
    ReRamSBPresetDevice,
    StandardHWATrainingPreset,
    StandardIOParameters,
)

# --------------------------------------------------------------------------
# aihwkit 1.1.0's values, typed in from src/aihwkit/simulator/presets/devices.py
# (base class, then every value the preset sets)

DEVICES = {
    ReRamESPresetDevice: (ExpStepDevice, {
        "dw_min": 0.00135, "up_down": 0.259359, "w_max": 1.0, "w_min": -1.0, "a": -0.5, "b": -0.5,
        "gamma_up": 5.0, "gamma_down": 5.0, "A_up": -1.18445, "A_down": -0.081404, "dw_min_dtod": 0.2,
        "up_down_dtod": 0.05, "w_max_dtod": 0.3, "w_min_dtod": 0.3, "dw_min_std": 5.0, "write_noise_std": 75.0}),
    ReRamSBPresetDevice: (SoftBoundsReferenceDevice, {
        "dw_min": 0.002, "up_down": 0.0, "w_max": 1.25, "w_min": -0.75, "mult_noise": False, "dw_min_dtod": 0.3,
        "up_down_dtod": 0.01, "w_max_dtod": 0.24, "w_min_dtod": 0.4, "dw_min_std": 3.75, "write_noise_std": 56}),
    ReRamArrayOMPresetDevice: (SoftBoundsReferenceDevice, {
        "enforce_consistency": True, "dw_min_dtod_log_normal": True, "dw_min": 0.0949, "up_down": 0.0, "w_max": 1.0,
        "w_min": -1.0, "mult_noise": False, "dw_min_dtod": 0.7829, "up_down_dtod": 0.01, "w_max_dtod": 0.3499,
        "w_min_dtod": 0.5695, "dw_min_std": 0.4158, "write_noise_std": 1.4113, "corrupt_devices_range": 0.01,
        "corrupt_devices_prob": 0.0, "subtract_symmetry_point": True, "reference_std": 0.05}),
    ReRamArrayHfO2PresetDevice: (SoftBoundsReferenceDevice, {
        "enforce_consistency": True, "dw_min_dtod_log_normal": True, "dw_min": 0.4622, "up_down": 0.0, "w_max": 1.0,
        "w_min": -1.0, "mult_noise": False, "dw_min_dtod": 0.7125, "up_down_dtod": 0.01, "w_max_dtod": 0.4295,
        "w_min_dtod": 0.5990, "dw_min_std": 0.2174, "write_noise_std": 0.5841, "corrupt_devices_range": 0.01,
        "corrupt_devices_prob": 0.0, "subtract_symmetry_point": True, "reference_std": 0.05}),
    CapacitorPresetDevice: (LinearStepDevice, {
        "dw_min": 0.005, "up_down": 0.0, "w_max": 1.0, "w_min": -1.0, "mult_noise": False, "gamma_up": 0.05,
        "gamma_down": 0.05, "dw_min_dtod": 0.1, "up_down_dtod": 0.06, "w_max_dtod": 0.07, "w_min_dtod": 0.07,
        "gamma_up_dtod": 0.01, "gamma_down_dtod": 0.01, "dw_min_std": 0.3, "write_noise_std": 0.0,
        "mean_bound_reference": True, "lifetime": 1.0e6, "lifetime_dtod": 0.3}),
    EcRamPresetDevice: (LinearStepDevice, {
        "dw_min": 0.002, "up_down": 0.0, "w_max": 1.1724, "w_min": -0.8276, "mult_noise": True, "gamma_up": 0.1153,
        "gamma_down": 0.5085, "dw_min_dtod": 0.1, "up_down_dtod": 0.01, "w_max_dtod": 0.05, "w_min_dtod": 0.05,
        "gamma_up_dtod": 0.05, "gamma_down_dtod": 0.05, "dw_min_std": 0.3, "write_noise_std": 0.0,
        "mean_bound_reference": True}),
    EcRamMOPresetDevice: (LinearStepDevice, {
        "dw_min": 2.8214e-4, "up_down": 0.0, "w_max": 1.1714, "w_min": -0.8286, "mult_noise": True,
        "gamma_up": 0.4152, "gamma_down": 0.7342, "dw_min_dtod": 0.1, "up_down_dtod": 0.01, "w_max_dtod": 0.05,
        "w_min_dtod": 0.05, "gamma_up_dtod": 0.05, "gamma_down_dtod": 0.05, "dw_min_std": 2.0,
        "write_noise_std": 0.0, "mean_bound_reference": True}),
    IdealizedPresetDevice: (ConstantStepDevice, {
        "dw_min": 0.0002, "dw_min_dtod": 0.3, "dw_min_std": 0.3, "up_down": 0.0, "up_down_dtod": 0.0, "w_max": 1.0,
        "w_min": -1.0, "w_max_dtod": 0.3, "w_min_dtod": 0.3}),
    GokmenVlasovPresetDevice: (ConstantStepDevice, {
        "dw_min": 0.0016, "dw_min_dtod": 0.3, "dw_min_std": 0.3, "up_down": 0.0, "up_down_dtod": 0.01, "w_max": 1.0,
        "w_min": -1.0, "w_max_dtod": 0.3, "w_min_dtod": 0.3}),
    PCMPresetDevice: (ExpStepDevice, {
        "dw_min": 0.01, "up_down": 0.0, "w_max": 2.0, "w_min": 0.0, "a": -1.0, "b": 0.0, "gamma_up": 2.5,
        "gamma_down": 2.5, "A_up": -27.235, "A_down": -2.235, "dw_min_dtod": 0.2, "up_down_dtod": 0.05,
        "w_max_dtod": 0.1, "w_min_dtod": 0.0, "dw_min_std": 0.6, "dw_min_std_add": 0.042, "dw_min_std_slope": 0.108,
        "write_noise_std": 0.0, "reset": 0.01, "reset_dtod": 0.02}),
}

# src/aihwkit/simulator/presets/utils.py
UTILS = {
    PresetIOParameters: (IOParameters, {
        "bound_management": BoundManagementType.ITERATIVE, "noise_management": NoiseManagementType.ABS_MAX,
        "inp_res": 1 / 126, "inp_sto_round": False, "out_bound": 20.0, "out_noise": 0.1, "out_res": 1 / 510,
        "w_noise": 0.0, "w_noise_type": WeightNoiseType.NONE}),
    PresetUpdateParameters: (UpdateParameters, {
        "desired_bl": 31, "pulse_type": PulseType.STOCHASTIC_COMPRESSED, "update_bl_management": True,
        "update_management": True}),
    StandardIOParameters: (IOParameters, {
        "bound_management": BoundManagementType.ITERATIVE, "noise_management": NoiseManagementType.ABS_MAX,
        "inp_res": 1 / 254, "inp_sto_round": False, "out_bound": 10.0, "out_noise": 0.04, "out_res": 1 / 254,
        "w_noise": 0.0, "w_noise_type": WeightNoiseType.NONE}),
}

# src/aihwkit/simulator/presets/configs.py: the device (class) of each kind of preset
KINDS = ["ReRamES", "ReRamSB", "Capacitor", "EcRam", "EcRamMO", "Idealized"]
DEVICE_OF = {"ReRamES": ReRamESPresetDevice, "ReRamSB": ReRamSBPresetDevice, "Capacitor": CapacitorPresetDevice,
             "EcRam": EcRamPresetDevice, "EcRamMO": EcRamMOPresetDevice, "Idealized": IdealizedPresetDevice,
             "GokmenVlasov": GokmenVlasovPresetDevice, "PCM": PCMPresetUnitCell}
SINGLE = KINDS + ["GokmenVlasov"]
TIKI_TAKA = ["ReRamES", "Capacitor", "EcRam", "EcRamMO", "Idealized"]  # the chopped ones: ReRamSB below
PLAIN_TIKI_TAKA = TIKI_TAKA + ["ReRamSB"]
MIXED = KINDS + ["GokmenVlasov", "PCM"]

# (fast_lr, auto_granularity, desired_bl of the SGD update); TTv2 has in_chop_prob 0.0
TTV2 = {"ReRamES": (0.5, 1000, 31), "Capacitor": (0.1, 1000, 31), "EcRam": (0.1, 500, 100),
        "EcRamMO": (0.1, 500, 100), "Idealized": (0.1, 500, 100)}
# (in_chop_prob, fast_lr, auto_granularity, desired_bl); ChoppedTTv2EcRamPreset leaves fast_lr at its default 1.0
CHOPPED_TTV2 = {"ReRamES": (0.01, 0.5, 1000, 31), "Capacitor": (0.01, 0.1, 1000, 31),
                "EcRam": (0.01, 1.0, 500, 100), "EcRamMO": (0.001, 0.1, 500, 100),
                "Idealized": (0.001, 0.1, 500, 100)}
# (fast_lr, auto_granularity, tail_weightening, in_chop_prob, units_in_mbatch, desired_bl); AGADReRamESPreset leaves
# units_in_mbatch at DynamicTransferCompound's default False
AGAD = {"ReRamES": (0.5, 1000, 5.0, 0.02, False, 31), "Capacitor": (0.1, 1000, 20.0, 0.01, False, 31),
        "EcRam": (0.1, 750, 50.0, 0.005, False, 31), "EcRamMO": (0.1, 500, 50.0, 0.005, False, 100),
        "Idealized": (0.1, 500, 50.0, 0.005, False, 100)}

CONFIG_NAMES = ([f"{k}Preset" for k in SINGLE] + ["PCMPreset"] + [f"{k}{n}Preset" for n in (2, 4) for k in KINDS]
                + [f"TikiTaka{k}Preset" for k in PLAIN_TIKI_TAKA] + [f"{p}{k}Preset" for p in ("TTv2", "ChoppedTTv2", "AGAD")
                                                                for k in TIKI_TAKA]
                + [f"MixedPrecision{k}Preset" for k in MIXED])
ALL_CLASSES = (list(DEVICES) + [PCMPresetUnitCell] + list(UTILS) + [getattr(presets, n) for n in CONFIG_NAMES]
               + [StandardHWATrainingPreset])


def test_the_package_lists_aihwkits_presets():
    names = set(presets.__all__)
    assert {c.__name__ for c in ALL_CLASSES} <= names
    for name in ("PRESETS", "preset_names", "get_preset", "load_config", "small_cnn", "tiny_mlp"):
        assert name in names  # the command line's named configs and models are still here
    # not in fxanalog: FloatingPointPreset (its TorchInferenceRPUConfig is not)
    assert not hasattr(presets, "FloatingPointPreset")
    namespace = {}
    exec("from fxanalog.presets import *", namespace)
    assert {c.__name__ for c in ALL_CLASSES} <= set(namespace)


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_every_preset_builds_validates_and_round_trips(cls):
    cfg = cls()
    before = copy.deepcopy(cfg)
    cfg.validate()
    assert cfg == before
    assert registered_config_classes()[cls.__name__] is cls
    assert repr(cfg) == f"{cls.__name__}()"
    # the same fields, in the same order, as its base class (positional arguments too)
    base = cls.__mro__[1]
    assert [f.name for f in dataclasses.fields(cls)] == [f.name for f in dataclasses.fields(base)]
    assert cfg != base() and isinstance(cfg, base)
    data = json.loads(json.dumps(cfg.to_dict()))
    assert data["class"] == cls.__name__
    for back in (cls.from_dict(data), config_from_dict(data), copy.deepcopy(cfg), pickle.loads(pickle.dumps(cfg))):
        assert back == cfg and type(back) is cls and back is not cfg
        back.validate()
    assert (cls.__doc__ or "").strip()


@pytest.mark.parametrize("cls", list(DEVICES) + list(UTILS), ids=lambda c: c.__name__)
def test_device_and_periphery_values_are_aihwkits(cls):
    base, values = {**DEVICES, **UTILS}[cls]
    assert cls.__mro__[1] is base
    cfg = cls()
    for name, value in values.items():
        got = getattr(cfg, name)
        assert got == pytest.approx(value, rel=1e-12) if isinstance(value, float) else got == value, name
    # every other field keeps its base class's default
    default = base()
    for f in dataclasses.fields(cls):
        if f.name not in values:
            assert getattr(cfg, f.name) == getattr(default, f.name), f.name


def test_reramsb_device_is_a_soft_bounds_reference_device():
    """As aihwkit's: reference fields at their defaults in the device, the symmetry point subtracted in the
    Tiki-Taka preset."""
    dev = ReRamSBPresetDevice()
    assert isinstance(dev, SoftBoundsReferenceDevice) and not dev.subtract_symmetry_point
    assert (dev.reference_mean, dev.reference_std) == (0.0, 0.0)
    assert all(d.subtract_symmetry_point for d in presets.TikiTakaReRamSBPreset().device.unit_cell_devices)


def test_pcm_unit_cell_is_aihwkits():
    # src/aihwkit/simulator/presets/compounds.py
    cell = PCMPresetUnitCell()
    assert type(cell).__mro__[1] is OneSidedUnitCell
    assert [type(d) for d in cell.unit_cell_devices] == [PCMPresetDevice, PCMPresetDevice]
    assert cell.unit_cell_devices[0] is not cell.unit_cell_devices[1]
    assert cell.refresh_every == 1 and cell.units_in_mbatch is True
    assert type(cell.refresh_forward) is PresetIOParameters and cell.refresh_forward == PresetIOParameters()
    assert type(cell.refresh_update) is PresetUpdateParameters and cell.refresh_update.desired_bl == 31
    assert (cell.refresh_upper_thres, cell.refresh_lower_thres, cell.copy_inverted) == (0.75, 0.25, False)
    # each instance owns its devices
    other = PCMPresetUnitCell()
    other.unit_cell_devices[0].dw_min = 0.5
    assert PCMPresetUnitCell().unit_cell_devices[0].dw_min == 0.01 and cell.unit_cell_devices[0].dw_min == 0.01


def _periphery(cfg):
    assert type(cfg.forward) is PresetIOParameters and cfg.forward == PresetIOParameters()
    assert type(cfg.backward) is PresetIOParameters and cfg.backward == PresetIOParameters()
    assert cfg.forward is not cfg.backward
    assert type(cfg.update) is PresetUpdateParameters and cfg.update == PresetUpdateParameters()


@pytest.mark.parametrize("kind", SINGLE)
def test_single_device_presets(kind):
    cfg = getattr(presets, f"{kind}Preset")()
    assert isinstance(cfg, SingleRPUConfig)
    assert type(cfg.device) is DEVICE_OF[kind] and cfg.device == DEVICE_OF[kind]()
    _periphery(cfg)


def test_pcm_preset():
    cfg = presets.PCMPreset()
    assert isinstance(cfg, UnitCellRPUConfig) and type(cfg.device) is PCMPresetUnitCell
    _periphery(cfg)


@pytest.mark.parametrize("n", [2, 4])
@pytest.mark.parametrize("kind", KINDS)
def test_vector_presets(kind, n):
    cfg = getattr(presets, f"{kind}{n}Preset")()
    assert isinstance(cfg, UnitCellRPUConfig) and type(cfg.device) is VectorUnitCell
    devices = cfg.device.unit_cell_devices
    assert [type(d) for d in devices] == [DEVICE_OF[kind]] * n and all(d == DEVICE_OF[kind]() for d in devices)
    assert len({id(d) for d in devices}) == n  # n device configs, not one shared
    assert cfg.device.update_policy is VectorUnitCellUpdatePolicy.SINGLE_RANDOM
    assert cfg.device.gamma_vec == [] and cfg.device.first_update_idx == 0
    _periphery(cfg)


@pytest.mark.parametrize("kind", PLAIN_TIKI_TAKA)
def test_tiki_taka_presets(kind):
    cfg = getattr(presets, f"TikiTaka{kind}Preset")()
    assert isinstance(cfg, UnitCellRPUConfig) and type(cfg.device) is TransferCompound
    tc = cfg.device
    assert [type(d) for d in tc.unit_cell_devices] == [DEVICE_OF[kind]] * 2
    assert type(tc.transfer_forward) is PresetIOParameters
    assert tc.transfer_forward == PresetIOParameters(noise_management=NoiseManagementType.NONE,
                                                     bound_management=BoundManagementType.NONE)
    assert tc.transfer_forward.out_noise == 0.1 and tc.transfer_forward.out_bound == 20.0
    assert type(tc.transfer_update) is PresetUpdateParameters and tc.transfer_update == PresetUpdateParameters()
    assert tc.units_in_mbatch is True
    # the rest is TransferCompound's defaults
    assert (tc.gamma, tc.transfer_every, tc.n_reads_per_transfer, tc.fast_lr, tc.transfer_lr) == (0.0, 1.0, 1, 1.0, 1.0)
    _periphery(cfg)


def _buffered_transfer(tc, cls, kind):
    assert type(tc) is cls and [type(d) for d in tc.unit_cell_devices] == [DEVICE_OF[kind]] * 2
    assert type(tc.transfer_forward) is PresetIOParameters
    assert tc.transfer_forward == PresetIOParameters(noise_management=NoiseManagementType.NONE,
                                                     bound_management=BoundManagementType.NONE)
    assert type(tc.transfer_update) is PresetUpdateParameters
    assert (tc.transfer_update.desired_bl, tc.transfer_update.update_bl_management,
            tc.transfer_update.update_management) == (1, False, False)
    assert tc.auto_scale is True


@pytest.mark.parametrize("kind", TIKI_TAKA)
def test_ttv2_chopped_and_agad_presets(kind):
    from fxanalog.config import ChoppedTransferCompound, DynamicTransferCompound

    fast_lr, granularity, bl = TTV2[kind]
    cfg = getattr(presets, f"TTv2{kind}Preset")()
    _buffered_transfer(cfg.device, ChoppedTransferCompound, kind)
    assert (cfg.device.units_in_mbatch, cfg.device.in_chop_prob, cfg.device.fast_lr, cfg.device.auto_granularity,
            cfg.update.desired_bl) == (False, 0.0, fast_lr, granularity, bl)
    chop, fast_lr, granularity, bl = CHOPPED_TTV2[kind]
    cfg = getattr(presets, f"ChoppedTTv2{kind}Preset")()
    _buffered_transfer(cfg.device, ChoppedTransferCompound, kind)
    assert (cfg.device.units_in_mbatch, cfg.device.in_chop_prob, cfg.device.fast_lr, cfg.device.auto_granularity,
            cfg.update.desired_bl) == (False, chop, fast_lr, granularity, bl)
    fast_lr, granularity, tail, chop, in_mbatch, bl = AGAD[kind]
    cfg = getattr(presets, f"AGAD{kind}Preset")()
    _buffered_transfer(cfg.device, DynamicTransferCompound, kind)
    assert (cfg.device.fast_lr, cfg.device.auto_granularity, cfg.device.tail_weightening, cfg.device.in_chop_prob,
            cfg.device.units_in_mbatch, cfg.update.desired_bl) == (fast_lr, granularity, tail, chop, in_mbatch, bl)
    for cfg in (getattr(presets, f"{p}{kind}Preset")() for p in ("TTv2", "ChoppedTTv2", "AGAD")):
        assert isinstance(cfg, UnitCellRPUConfig)
        assert type(cfg.forward) is PresetIOParameters and cfg.backward == PresetIOParameters()
        assert type(cfg.update) is PresetUpdateParameters


@pytest.mark.parametrize("kind", MIXED)
def test_mixed_precision_presets(kind):
    cfg = getattr(presets, f"MixedPrecision{kind}Preset")()
    assert isinstance(cfg, DigitalRankUpdateRPUConfig) and type(cfg.device) is MixedPrecisionCompound
    assert type(cfg.device.device) is DEVICE_OF[kind] and cfg.device.device == DEVICE_OF[kind]()
    assert (cfg.device.transfer_every, cfg.device.n_rows_per_transfer, cfg.device.granularity) == (1, -1, 0.0)
    _periphery(cfg)


def test_standard_hwa_training_preset_is_aihwkits():
    # src/aihwkit/simulator/presets/inference.py
    cfg = StandardHWATrainingPreset()
    m = cfg.mapping
    assert (m.weight_scaling_omega, m.weight_scaling_columnwise, m.max_input_size, m.max_output_size,
            m.digital_bias, m.learn_out_scaling, m.out_scaling_columnwise) == (1.0, True, 512, 0, True, True, True)
    f = cfg.forward
    assert type(f) is PresetIOParameters
    assert (f.inp_res, f.out_res, f.bound_management, f.noise_management, f.nm_thres, f.w_noise, f.w_noise_type,
            f.ir_drop, f.out_noise, f.out_bound) == (254.0, 254.0, BoundManagementType.NONE,
                                                      NoiseManagementType.CONSTANT, 1.0, 0.0175,
                                                      WeightNoiseType.PCM_READ, 1.0, 0.04, 10.0)
    assert cfg.remap.remapped_wmax == 1.0 and cfg.remap.type is WeightRemapType.CHANNELWISE_SYMMETRIC
    assert cfg.noise_model == PCMLikeNoiseModel() and cfg.drift_compensation == GlobalDriftCompensation()
    ir = cfg.pre_post.input_range
    assert (ir.enable, ir.init_value, ir.init_from_data, ir.init_std_alpha, ir.decay, ir.input_min_percentage,
            ir.output_min_percentage, ir.manage_output_clipping, ir.gradient_scale, ir.gradient_relative) == (
        True, 3.0, 100, 3.0, 0.001, 0.95, 0.95, False, 1.0, True)
    assert cfg.clip.type is WeightClipType.FIXED_VALUE and cfg.clip.fixed_value == 1.0
    assert cfg.backward.is_perfect is True  # InferenceRPUConfig's


def test_instances_do_not_share_their_groups():
    a, b = presets.TikiTakaEcRamPreset(), presets.TikiTakaEcRamPreset()
    a.device.unit_cell_devices[0].dw_min = 0.5
    a.device.transfer_forward.out_noise = 0.0
    a.forward.out_noise = 0.0
    assert b == presets.TikiTakaEcRamPreset() and a != b
    assert presets.TikiTakaEcRamPreset().device.unit_cell_devices[0].dw_min == 0.002


def test_a_preset_is_changed_like_any_config():
    cfg = presets.ReRamSBPreset()
    cfg.update.desired_bl = 10
    cfg.device.dw_min = 0.001
    cfg.validate()
    assert repr(cfg) == ("ReRamSBPreset(update=PresetUpdateParameters(desired_bl=10), "
                         "device=ReRamSBPresetDevice(dw_min=0.001))")
    assert presets.ReRamSBPreset(device=ReRamESPresetDevice()).device == ReRamESPresetDevice()
    with pytest.raises(ValueError, match=r"^ReRamSBPreset\.device\.dw_min = -1\.0: expected a number > 0$"):
        presets.ReRamSBPreset(device=ReRamSBPresetDevice(dw_min=-1.0)).validate()
    with pytest.raises(TypeError, match="dw_mn"):
        ReRamSBPresetDevice(dw_mn=0.1)


def test_with_defaults_refuses_unknown_fields_and_shared_objects():
    with pytest.raises(TypeError, match="'dw_mn' is not a field of ConstantStepDevice"):
        @with_defaults(dw_mn=0.1)
        class Bad(ConstantStepDevice):
            """."""
    with pytest.raises(TypeError, match=r"Bad2\.unit_cell_devices: give a function that builds"):
        @with_defaults(unit_cell_devices=[ConstantStepDevice()])
        class Bad2(VectorUnitCell):
            """."""
    assert "Bad" not in registered_config_classes() and "Bad2" not in registered_config_classes()


# --------------------------------------------------------------------------
# A preset makes an analog layer


@pytest.mark.parametrize("name", CONFIG_NAMES + ["StandardHWATrainingPreset"])
def test_a_preset_makes_an_analog_layer(name):
    torch.manual_seed(0)
    cfg = getattr(presets, name)()
    layer = torch.nn.Linear(8, 4)
    weight = layer.weight.detach().clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = fxanalog.compile(layer, cfg)
        x = torch.randn(5, 8)
        y = model(x)
    assert y.shape == (5, 4) and torch.isfinite(y).all()
    # the analog result is near the digital one (weights and noise are small compared to it)
    digital = x @ weight.T + layer.bias.detach()
    assert (y - digital).abs().max() < 0.5 * digital.abs().max() + 0.5
