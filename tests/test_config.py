"""Configs: aihwkit's names and defaults, copying, equality, printing, dicts, validation."""

import copy
import json

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
from fxanalog.config import check_rpu_config, config_from_dict
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
        ("out_bound", -2.0, "out_bound"),
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


def test_configs_importable_from_top_level():
    for name in ("IOParameters", "MappingParameter", "InferenceRPUConfig", "FloatingPointRPUConfig",
                 "NoiseManagementType", "BoundManagementType", "WeightNoiseType"):
        assert hasattr(fxanalog, name)
