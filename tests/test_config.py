"""Configs: aihwkit's names and defaults, copying, equality, printing, dicts, validation."""

import copy
import dataclasses
import json
import math
import pickle

import pytest
import torch

import fxanalog
from fxanalog import (
    BoundManagementType,
    FloatingPointRPUConfig,
    InferenceRPUConfig,
    IOParameters,
    MappingParameter,
    NoiseManagementType,
    WeightNoiseType,
)
from fxanalog.config import (
    GlobalDriftCompensation,
    PulseType,
    InputRangeParameter,
    PCMLikeNoiseModel,
    PerColumnDriftCompensation,
    StateIndependentNoiseModel,
    WeightClipParameter,
    WeightClipType,
    WeightModifierParameter,
    WeightModifierType,
    WeightRemapParameter,
    WeightRemapType,
    check_rpu_config,
    config_from_dict,
    registered_config_classes,
)
from fxanalog.config.base import Bool, Number, NumberList, field_check, field_doc
from fxanalog.config.noise import CustomDriftPCMLikeNoiseModel, SinglePairConductanceConverter
from fxanalog.nn import AnalogLinear


def test_forward_defaults_are_aihwkits():
    # The table of section 1 of the reference, typed in by hand.
    f = InferenceRPUConfig().forward
    assert f.is_perfect is False
    assert f.inp_bound == 1.0 and f.inp_res == 1 / 126 and f.inp_sto_round is False and f.inp_noise == 0.0
    assert f.out_bound == 12.0 and f.out_res == 1 / 510 and f.out_sto_round is False and f.out_noise == 0.06
    assert f.out_scale == 1.0 and f.w_noise == 0.0 and f.w_noise_type == WeightNoiseType.NONE
    assert f.noise_management == NoiseManagementType.ABS_MAX and f.nm_thres == 0.0
    assert f.bound_management == BoundManagementType.ITERATIVE
    assert f.max_bm_factor == 1000 and f.max_bm_res == 0.25
    assert f.ir_drop == 0.0 and f.out_nonlinearity == 0.0
    assert f.ir_drop_g_ratio == 1 / 0.35 / 5e-6
    assert InferenceRPUConfig().backward.is_perfect is True


def test_mapping_defaults_are_aihwkits():
    m = InferenceRPUConfig().mapping
    assert m == MappingParameter(
        digital_bias=True,
        weight_scaling_omega=0.0,
        weight_scaling_columnwise=False,
        learn_out_scaling=False,
        out_scaling_columnwise=False,
        max_input_size=512,
        max_output_size=512,
    )


def test_copy_equality_and_mutation():
    a = InferenceRPUConfig()
    b = copy.deepcopy(a)
    assert a == b and a is not b and a.forward is not b.forward
    b.forward.out_noise = 0.0
    assert a != b
    assert a.forward.out_noise == 0.06


def test_repr_shows_only_differences():
    cfg = InferenceRPUConfig()
    assert repr(cfg) == "InferenceRPUConfig()"
    cfg.forward.out_noise = 0.1
    cfg.mapping.max_input_size = 256
    text = repr(cfg)
    assert "out_noise=0.1" in text and "max_input_size=256" in text
    assert "inp_res" not in text and "out_bound" not in text


def test_dict_round_trip_through_json():
    cfg = InferenceRPUConfig()
    cfg.forward.noise_management = NoiseManagementType.MAX
    cfg.forward.w_noise = 0.02
    cfg.forward.w_noise_type = WeightNoiseType.PCM_READ
    cfg.mapping.weight_scaling_omega = 1.0
    data = json.loads(json.dumps(cfg.to_dict()))
    back = InferenceRPUConfig.from_dict(data)
    assert back == cfg
    assert FloatingPointRPUConfig.from_dict(FloatingPointRPUConfig().to_dict()) == FloatingPointRPUConfig()


def test_from_dict_names_unknown_field_and_enum():
    data = InferenceRPUConfig().to_dict()
    data["forward"]["out_nosie"] = 0.1
    with pytest.raises(ValueError, match="out_nosie"):
        config_from_dict(data)
    data = InferenceRPUConfig().to_dict()
    data["forward"]["noise_management"] = "ABS_MIN"
    with pytest.raises(ValueError, match="ABS_MIN.*ABS_MAX"):
        config_from_dict(data)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("out_noise", -0.1, "out_noise = -0.1"),
        ("inp_noise", -1.0, "inp_noise"),
        ("out_bound", math.inf, "out_bound = inf.*write 0 or -1 for an unbounded ADC"),
        ("inp_res", 2.5, "inp_res = 2.5.*fraction"),
        ("out_res", 1.5, "out_res"),
    ],
)
def test_validation_names_field_value_and_rule(field, value, message):
    io = IOParameters()
    setattr(io, field, value)
    with pytest.raises(ValueError, match=message):
        io.validate()


def test_resolution_forms_accepted():
    for res in (0.0, -1.0, 0.5, 1.0, 2.0, 254.0):
        IOParameters(inp_res=res).validate()


def test_aihwkits_unbounded_adc_is_accepted():
    # aihwkit's examples write out_bound = -1 (and 0) for an ADC without bound
    for value in (-1, -1.0, 0, 0.0, -12.5):
        io = IOParameters(out_bound=value)
        io.validate()
        assert io.out_bound == value and type(io.out_bound) is type(value)


def test_constant_noise_management_with_zero_threshold_is_accepted():
    # aihwkit's CONSTANT uses nm_thres when > 0 and 1 otherwise; 0 is its default
    io = IOParameters(noise_management=NoiseManagementType.CONSTANT)
    assert io.nm_thres == 0.0
    io.validate()
    IOParameters(noise_management="constant", nm_thres=2.5).validate()
    with pytest.raises(ValueError, match=r"^IOParameters\.nm_thres = -1\.0: expected a number >= 0"):
        IOParameters(noise_management=NoiseManagementType.CONSTANT, nm_thres=-1.0).validate()


def test_init_from_data_counts_a_bool_as_aihwkit():
    # aihwkit compares the batch index with init_from_data: False is 0 (off), True is 1 batch
    cfg = InferenceRPUConfig()
    cfg.pre_post.input_range.init_from_data = False
    cfg.validate()
    assert cfg.pre_post.input_range.init_from_data == 0 and type(cfg.pre_post.input_range.init_from_data) is int
    r = InputRangeParameter(init_from_data=True)
    r.validate()
    assert r.init_from_data == 1 and type(r.init_from_data) is int
    r = InputRangeParameter(init_from_data=7)
    r.validate()
    assert r.init_from_data == 7


def test_noise_management_needs_unit_input_bound():
    with pytest.raises(ValueError, match="inp_bound = 2.0.*noise management ABS_MAX"):
        IOParameters(inp_bound=2.0).validate()
    IOParameters(inp_bound=2.0, noise_management=NoiseManagementType.NONE).validate()


def test_enum_names_are_accepted_and_unknown_names_rejected():
    io = IOParameters(noise_management="max")
    io.validate()
    assert io.noise_management == NoiseManagementType.MAX
    with pytest.raises(ValueError, match="noise_management.*'BIGGEST'.*NONE, ABS_MAX, MAX, CONSTANT"):
        IOParameters(noise_management="BIGGEST").validate()


def test_non_config_is_rejected():
    with pytest.raises(TypeError, match="expected an RPU config.*dict"):
        check_rpu_config({"forward": {}})
    with pytest.raises(TypeError, match="rpu_config"):
        AnalogLinear(4, 3, rpu_config=IOParameters())


def test_mutated_config_is_checked_at_use():
    layer = AnalogLinear(4, 3, rpu_config=InferenceRPUConfig())
    layer(torch.randn(2, 4))
    layer.rpu_config.forward.out_noise = -1.0
    with pytest.raises(ValueError, match="AnalogLinear.rpu_config.forward.out_noise = -1.0"):
        layer(torch.randn(2, 4))


def test_hwa_defaults_are_aihwkits():
    # aihwkit's WeightClipParameter, WeightModifierParameter, WeightRemapParameter, typed in by hand.
    cfg = InferenceRPUConfig()
    c = cfg.clip
    assert (c.fixed_value, c.sigma, c.type) == (-1.0, 2.5, WeightClipType.NONE)
    m = cfg.modifier
    assert (m.std_dev, m.per_batch_sample, m.res, m.sto_round, m.pdrop) == (0.0, False, 0.0, False, 0.0)
    assert (m.enable_during_test, m.rel_to_actual_wmax, m.assumed_wmax) == (False, True, 1.0)
    assert m.coeffs == [0.0105392, 0.0768, -0.046925] and m.type == WeightModifierType.NONE
    assert (m.dorefa_clip, m.g_max) == (0.6, 25.0)
    r = cfg.remap
    assert (r.remapped_wmax, r.max_scale_range, r.max_scale_ref, r.type) == (1.0, 0.0, 0.0, WeightRemapType.NONE)


def test_noise_defaults_are_aihwkits():
    cfg = InferenceRPUConfig()
    assert type(cfg.noise_model) is PCMLikeNoiseModel and type(cfg.drift_compensation) is GlobalDriftCompensation
    n = cfg.noise_model
    assert n.prog_coeff == [0.26348, 1.9650, -1.1731]
    assert (n.g_max, n.t_read, n.t_0) == (25.0, 250e-9, 20.0)
    assert (n.prog_noise_scale, n.read_noise_scale, n.drift_scale) == (1.0, 1.0, 1.0)
    assert (n.g_converter.g_max, n.g_converter.g_min) == (25.0, 0.0)
    s = StateIndependentNoiseModel()
    assert s.prog_coeff == [0.2, 0.0, 0.0] and (s.drift_nu_mean, s.drift_nu_std) == (0.1, 0.05)
    assert (s.g_max, s.t_read, s.t_0, s.prog_noise_scale, s.read_noise_scale, s.drift_scale) == (
        25.0, 250e-9, 20.0, 1.0, 1.0, 1.0)


def test_configs_importable_from_top_level():
    # the same classes as fxanalog.config's, and they build aihwkit's defaults
    for name in ("IOParameters", "MappingParameter", "InferenceRPUConfig", "FloatingPointRPUConfig",
                 "NoiseManagementType", "BoundManagementType", "WeightNoiseType"):
        assert getattr(fxanalog, name) is getattr(fxanalog.config, name)
    assert fxanalog.InferenceRPUConfig().forward.out_noise == 0.06
    assert fxanalog.FloatingPointRPUConfig().forward.is_perfect is True
    assert fxanalog.NoiseManagementType.ABS_MAX.name == "ABS_MAX"


# --------------------------------------------------------------------------
# Declared fields: every field has a check and a doc


def own_config_classes() -> list[type]:
    # the presets (fxanalog.presets, tested in test_presets.py) only change defaults of these classes
    classes = [c for c in registered_config_classes().values()
               if c.__module__.startswith("fxanalog.") and not c.__module__.startswith("fxanalog.presets")]
    assert len(classes) >= 15
    return classes


def valid_instance(cls):
    """A valid instance: ``cls()``, except for the unit cells, whose aihwkit
    default (no devices) is refused (it cannot make a tile)."""
    from fxanalog.config import ConstantStepDevice, TransferCompound, UnitCell

    if issubclass(cls, TransferCompound):
        return cls(unit_cell_devices=[ConstantStepDevice(), ConstantStepDevice()])
    if issubclass(cls, UnitCell):
        return cls(unit_cell_devices=[ConstantStepDevice()])
    return cls()


def number_fields(kinds=(Number,)) -> list[tuple[type, str]]:
    return [(cls, f.name) for cls in own_config_classes() for f in dataclasses.fields(cls)
            if isinstance(field_check(f), kinds)]


def test_every_field_declares_a_check_and_a_doc():
    for cls in own_config_classes():
        for f in dataclasses.fields(cls):
            assert field_check(f) is not None, f"{cls.__name__}.{f.name} declares no check"
            assert field_doc(f), f"{cls.__name__}.{f.name} has no doc"
    for e in (NoiseManagementType, BoundManagementType, WeightNoiseType, WeightClipType, WeightModifierType,
              WeightRemapType, PulseType):
        for member in e:
            assert isinstance(member.doc, str) and member.doc.strip(), f"{e.__name__}.{member.name} has no doc"
    assert NoiseManagementType.ABS_MAX.doc.startswith("Divide each input vector by its largest magnitude")
    assert NoiseManagementType.ABS_MAX.value == "AbsMax"  # the value stays aihwkit's


def test_number_walker_covers_the_fields_of_the_issue():
    names = {f"{cls.__name__}.{name}" for cls, name in number_fields()}
    for name in ("IOParameters.out_bound", "IOParameters.inp_noise", "IOParameters.out_scale",
                 "IOParameters.ir_drop", "IOParameters.inp_bound", "IOParameters.inp_res",
                 "MappingParameter.weight_scaling_omega", "MappingParameter.max_input_size",
                 "WeightModifierParameter.std_dev", "WeightModifierParameter.pdrop", "WeightClipParameter.sigma",
                 "WeightRemapParameter.remapped_wmax", "InputRangeParameter.init_value",
                 "PCMLikeNoiseModel.g_max", "PCMLikeNoiseModel.t_0", "PCMLikeNoiseModel.t_read",
                 "PCMLikeNoiseModel.prog_noise_scale", "PCMLikeNoiseModel.read_noise_scale",
                 "CustomDriftPCMLikeNoiseModel.drift_scale", "StateIndependentNoiseModel.drift_nu_mean",
                 "SinglePairConductanceConverter.g_min",
                 # the configs of training on pulsed devices
                 "UpdateParameters.desired_bl", "UpdateParameters.res", "UpdateParameters.um_grad_scale",
                 "PulsedDevice.dw_min", "ConstantStepDevice.dw_min", "ConstantStepDevice.w_min",
                 "ConstantStepDevice.w_max_dtod", "ConstantStepDevice.corrupt_devices_prob",
                 "ConstantStepDevice.construction_seed", "IdealDevice.lifetime", "LinearStepDevice.gamma_up_dtod",
                 "SoftBoundsDevice.write_noise_std", "ExpStepDevice.A_down", "ExpStepDevice.dw_min_std_slope",
                 "PowStepDevice.pow_gamma", "PowStepDevice.pow_up_down_dtod"):
        assert name in names, name
    bools = {f"{cls.__name__}.{name}" for cls, name in number_fields(Bool)}
    assert {"UpdateParameters.fixed_bl", "ConstantStepDevice.enforce_consistency", "LinearStepDevice.mult_noise",
            "SoftBoundsDevice.reverse_up", "PowStepDevice.apply_write_noise_on_set"} <= bools
    lists = {f"{cls.__name__}.{name}" for cls, name in number_fields(NumberList)}
    assert {"PCMLikeNoiseModel.prog_coeff", "StateIndependentNoiseModel.prog_coeff",
            "WeightModifierParameter.coeffs"} <= lists


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("cls, name", number_fields(), ids=lambda x: getattr(x, "__name__", x))
def test_every_number_field_refuses_nan_and_inf(cls, name, value):
    cfg = valid_instance(cls)
    cfg.validate()
    setattr(cfg, name, value)
    with pytest.raises(ValueError) as err:
        cfg.validate()
    assert str(err.value).startswith(f"{cls.__name__}.{name} = {value!r}: expected a ")


@pytest.mark.parametrize("cls, name", number_fields(NumberList), ids=lambda x: getattr(x, "__name__", x))
def test_every_number_list_refuses_nan_and_inf(cls, name):
    for bad in ([0.1, math.nan], [math.inf], [0.1, True]):
        cfg = valid_instance(cls)
        setattr(cfg, name, bad)
        with pytest.raises(ValueError, match=rf"^{cls.__name__}\.{name} = \[.*\]: expected a "):
            cfg.validate()


def bool_counting_fields() -> list[tuple[type, str]]:
    """The counts aihwkit compares with a number, where a bool is 0 or 1."""
    return [(cls, f.name) for cls in own_config_classes() for f in dataclasses.fields(cls)
            if getattr(field_check(f), "bool_as_int", False)]


def test_only_init_from_data_counts_a_bool():
    assert bool_counting_fields() == [(InputRangeParameter, "init_from_data")]


@pytest.mark.parametrize("cls, name", [f for f in number_fields() if f not in bool_counting_fields()],
                         ids=lambda x: getattr(x, "__name__", x))
def test_every_number_field_refuses_bools(cls, name):
    for value in (True, False):
        cfg = valid_instance(cls)
        setattr(cfg, name, value)
        with pytest.raises(ValueError, match=rf"^{cls.__name__}\.{name} = {value}: expected a"):
            cfg.validate()


@pytest.mark.parametrize("cls, name", number_fields(Bool), ids=lambda x: getattr(x, "__name__", x))
def test_every_bool_field_refuses_non_bools(cls, name):
    for value in ("False", 1, 0.0, None):
        cfg = valid_instance(cls)
        setattr(cfg, name, value)
        with pytest.raises(ValueError) as err:
            cfg.validate()
        assert str(err.value) == f"{cls.__name__}.{name} = {value!r}: expected a bool (True or False)"


@pytest.mark.parametrize(
    "cfg, message",
    [
        (IOParameters(out_bound=math.inf),
         "IOParameters.out_bound = inf: expected a finite number (<= 0: unbounded, as in aihwkit) (NaN and +-inf "
         "are refused: write 0 or -1 for an unbounded ADC)"),
        (IOParameters(out_bound=-math.inf),
         "IOParameters.out_bound = -inf: expected a finite number (<= 0: unbounded, as in aihwkit) (NaN and +-inf "
         "are refused: write 0 or -1 for an unbounded ADC)"),
        (IOParameters(inp_noise=math.inf),
         "IOParameters.inp_noise = inf: expected a finite number >= 0 (NaN and +-inf are refused)"),
        (IOParameters(out_scale=-math.inf),
         "IOParameters.out_scale = -inf: expected a finite number (NaN and +-inf are refused)"),
        (IOParameters(ir_drop=math.nan),
         "IOParameters.ir_drop = nan: expected a finite number >= 0 (NaN and +-inf are refused)"),
        (IOParameters(inp_bound=True), "IOParameters.inp_bound = True: expected a number > 0"),
        (IOParameters(out_noise=True), "IOParameters.out_noise = True: expected a number >= 0"),
        (IOParameters(out_noise="0.1"), "IOParameters.out_noise = '0.1': expected a number >= 0"),
        (IOParameters(inp_res=math.nan),
         "IOParameters.inp_res = nan: expected a finite number: <= 0 (off), a fraction in (0, 1], or a whole "
         "number of steps > 1 (NaN and +-inf are refused)"),
        (IOParameters(out_res=2.5),
         "IOParameters.out_res = 2.5: expected <= 0 (off), a fraction in (0, 1], or a whole number of steps > 1"),
        (IOParameters(max_bm_factor=0.5), "IOParameters.max_bm_factor = 0.5: expected a number >= 1"),
        (IOParameters(is_perfect="yes"), "IOParameters.is_perfect = 'yes': expected a bool (True or False)"),
        (IOParameters(noise_management="BIGGEST"),
         "IOParameters.noise_management = 'BIGGEST': expected a NoiseManagementType: one of NONE, ABS_MAX, MAX, "
         "CONSTANT (or its name as a string, any case)"),
        (MappingParameter(max_input_size=512.0),
         "MappingParameter.max_input_size = 512.0: expected a whole number >= 0 (0 = unlimited)"),
        (MappingParameter(weight_scaling_omega=math.nan),
         "MappingParameter.weight_scaling_omega = nan: expected a finite number >= 0 (NaN and +-inf are refused)"),
        (WeightModifierParameter(pdrop=1.5), "WeightModifierParameter.pdrop = 1.5: expected a probability in [0, 1]"),
        (WeightModifierParameter(pdrop=math.nan),
         "WeightModifierParameter.pdrop = nan: expected a finite probability in [0, 1] (NaN and +-inf are refused)"),
        (WeightModifierParameter(coeffs=[0.1, math.nan]),
         "WeightModifierParameter.coeffs = [0.1, nan]: expected a list of numbers, all finite (NaN and +-inf are "
         "refused)"),
        (WeightClipParameter(type=WeightClipType.FIXED_VALUE),
         "WeightClipParameter.fixed_value = -1.0: FIXED_VALUE clipping needs a value > 0"),
        (InputRangeParameter(init_from_data=2.0),
         "InputRangeParameter.init_from_data = 2.0: expected a whole number >= 0 (0: off; a bool counts as 0 or 1, "
         "as in aihwkit)"),
        (InputRangeParameter(init_from_data="True"),
         "InputRangeParameter.init_from_data = 'True': expected a whole number >= 0 (0: off; a bool counts as 0 or "
         "1, as in aihwkit)"),
        (InputRangeParameter(calibration_info=3), "InputRangeParameter.calibration_info = 3: expected None or a string"),
        (PCMLikeNoiseModel(t_0=math.nan),
         "PCMLikeNoiseModel.t_0 = nan: expected a finite number > 0 (NaN and +-inf are refused)"),
        (PCMLikeNoiseModel(prog_coeff=[]), "PCMLikeNoiseModel.prog_coeff = []: expected a non-empty list of numbers"),
    ],
)
def test_exact_messages(cfg, message):
    with pytest.raises(ValueError) as err:
        cfg.validate()
    assert str(err.value) == message


def test_nested_messages_name_the_path():
    cfg = InferenceRPUConfig()
    cfg.noise_model.g_max = math.nan
    with pytest.raises(ValueError) as err:
        cfg.validate()
    assert str(err.value) == (
        "InferenceRPUConfig.noise_model.g_max = nan: expected a finite number > 0 (NaN and +-inf are refused)")
    cfg = InferenceRPUConfig()
    cfg.noise_model.g_converter.g_min = math.inf
    with pytest.raises(ValueError, match=r"^InferenceRPUConfig\.noise_model\.g_converter\.g_min = inf: "):
        cfg.validate()


def test_group_fields_refuse_other_objects():
    cfg = InferenceRPUConfig()
    cfg.forward = MappingParameter()
    with pytest.raises(ValueError) as err:
        cfg.validate()
    assert str(err.value) == "InferenceRPUConfig.forward = MappingParameter(): expected an IOParameters"
    cfg = InferenceRPUConfig(noise_model="pcm")
    with pytest.raises(ValueError) as err:
        cfg.validate()
    assert str(err.value) == ("InferenceRPUConfig.noise_model = 'pcm': expected a noise model "
                              "(a subclass of fxanalog.config.noise.BaseNoiseModel)")
    cfg = InferenceRPUConfig(drift_compensation=GlobalDriftCompensation)  # the class, not an instance
    with pytest.raises(ValueError, match="drift_compensation = .*: expected None or a drift compensation"):
        cfg.validate()
    InferenceRPUConfig(drift_compensation=None).validate()
    InferenceRPUConfig(drift_compensation=PerColumnDriftCompensation()).validate()


def test_valid_configs_validate_unchanged():
    for cls in own_config_classes():
        try:
            cfg = valid_instance(cls)
        except TypeError:
            continue
        before = copy.deepcopy(cfg)
        cfg.validate()
        assert cfg == before, cls.__name__
    # numbers of both kinds, resolutions of all forms, an int for a float field
    IOParameters(inp_bound=1, out_noise=0, out_scale=-2.0, max_bm_factor=8.0, inp_res=0, out_res=255).validate()


def test_enum_field_stores_the_member_for_any_spelling():
    for spelling in ("max", "MAX", "NoiseManagementType.Max"):
        io = IOParameters(noise_management=spelling)
        io.validate()
        assert io.noise_management is NoiseManagementType.MAX
    with pytest.raises(ValueError, match="noise_management = 3: expected a NoiseManagementType"):
        IOParameters(noise_management=3).validate()


# --------------------------------------------------------------------------
# Unknown attributes


def test_unknown_attribute_is_refused_with_the_valid_names():
    cfg = InferenceRPUConfig()
    with pytest.raises(AttributeError) as err:
        cfg.forward.out_nosie = 0.0
    fields = ", ".join(f.name for f in dataclasses.fields(IOParameters))
    assert str(err.value) == (f"IOParameters has no field 'out_nosie' (did you mean 'out_noise'?); "
                              f"its fields: {fields}")
    assert "out_nosie" not in vars(cfg.forward)
    with pytest.raises(AttributeError, match=r"InferenceRPUConfig has no field 'fwd'.*its fields: forward, backward"):
        cfg.fwd = IOParameters()
    with pytest.raises(AttributeError, match=r"PCMLikeNoiseModel has no field 'tread' \(did you mean 't_read'\?\)"):
        cfg.noise_model.tread = 1e-9
    with pytest.raises(AttributeError, match="InferenceRPUConfig has no field 'tile_kind'"):
        cfg.tile_kind = "training"  # a class constant, not a field
    with pytest.raises(AttributeError, match="xyz"):
        GlobalDriftCompensation().xyz = 1
    with pytest.raises(AttributeError):
        FloatingPointRPUConfig().forward = IOParameters()  # a read-only property
    cfg.forward.out_noise = 0.0  # fields assign as before
    assert cfg.forward.out_noise == 0.0


def test_unknown_keyword_at_construction_is_refused():
    with pytest.raises(TypeError, match="out_nosie"):
        IOParameters(out_nosie=0.0)


# --------------------------------------------------------------------------
# Round trips


def a_modified_config() -> InferenceRPUConfig:
    cfg = InferenceRPUConfig(noise_model=CustomDriftPCMLikeNoiseModel(g_max=30.0), drift_compensation=None)
    cfg.forward.out_noise = 0.02
    cfg.forward.noise_management = NoiseManagementType.MAX
    cfg.mapping.max_input_size = 128
    cfg.modifier.coeffs = [0.1, 0.2]
    cfg.pre_post.input_range.calibration_info = "calibrated"
    cfg.noise_model.g_converter = SinglePairConductanceConverter(g_max=30.0, g_min=1.0)
    return cfg


@pytest.mark.parametrize("make", [InferenceRPUConfig, FloatingPointRPUConfig, a_modified_config,
                                  StateIndependentNoiseModel, WeightModifierParameter])
def test_round_trips(make):
    cfg = make()
    cfg.validate()
    for back in (type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict()))), copy.deepcopy(cfg),
                 pickle.loads(pickle.dumps(cfg)), dataclasses.replace(cfg)):
        assert back == cfg and back is not cfg and type(back) is type(cfg)
        assert repr(back) == repr(cfg)
        back.validate()
        with pytest.raises(AttributeError, match="no field 'nope'"):
            back.nope = 1  # the copies refuse unknown names too
    if isinstance(cfg, InferenceRPUConfig):
        changed = dataclasses.replace(cfg, mapping=MappingParameter(max_input_size=64))
        assert changed.mapping.max_input_size == 64 and changed.forward is cfg.forward


def test_repr_of_a_modified_config_shows_only_differences():
    text = repr(a_modified_config())
    assert "out_noise=0.02" in text and "max_input_size=128" in text and "drift_compensation=None" in text
    assert "CustomDriftPCMLikeNoiseModel(g_converter=SinglePairConductanceConverter(g_max=30.0, g_min=1.0), " \
           "g_max=30.0)" in text
    assert "out_bound" not in text and "t_0" not in text
