"""Checkpoints of analog layers (issue 15 item 4, issue 14 item 9): the shapes
of the analog state are checked at load time, a programmed checkpoint loads
into a fresh model of the same config, and checkpoints carry the rpu_config
as plain data, checked against the model's (docs/tile.md, "Checkpoints")."""

import io
import re

import pytest
import torch
from torch import nn

import fxanalog
from fxanalog import presets
from fxanalog.config import config_to_dict
from fxanalog.config.noise import NPairConductanceConverter, PCMLikeNoiseModel
from fxanalog.nn import AnalogConv2d, AnalogLinear, AnalogSequential, load_state_dict


def _saved(state):
    """A state dict through torch.save / torch.load(weights_only=True)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _mapped_cfg(**mapping):
    cfg = fxanalog.InferenceRPUConfig()
    cfg.mapping.max_input_size = 10
    cfg.mapping.weight_scaling_omega = 1.0
    for k, v in mapping.items():
        setattr(cfg.mapping, k, v)
    return cfg


def _programmed_conv(cfg, seed=0):
    torch.manual_seed(seed)
    layer = AnalogConv2d(4, 6, 3, groups=2, rpu_config=cfg).eval()
    layer.program_analog_weights()
    layer.drift_analog_weights(100.0)
    return layer


def _size_mismatch(key, saved, expected):
    return re.escape(f"size mismatch for {key}: copying a param with shape {torch.Size(saved)} from checkpoint, "
                     f"the shape in current model is {expected}")


# -- issue 15 item 4: shapes checked at load time ----------------------------------------


def test_programmed_checkpoint_loads_into_a_fresh_model_with_identical_outputs():
    a = _programmed_conv(_mapped_cfg())
    state = _saved(a.state_dict())
    fresh = AnalogConv2d(4, 6, 3, groups=2, rpu_config=_mapped_cfg()).eval()
    assert fresh.tile.analog_weight is None  # the buffers are None until programmed
    assert str(fresh.load_state_dict(state)) == "<All keys matched successfully>"
    x = torch.randn(2, 4, 5, 5)
    torch.manual_seed(5)
    want = a(x)
    torch.manual_seed(5)
    assert torch.equal(fresh(x), want)
    for name in ("analog_weight", "drift_scales", "programmed_conductances", "mapping_scales"):
        assert torch.equal(getattr(fresh.tile, name), getattr(a.tile, name)), name


def test_checkpoint_of_another_tile_split_fails_at_load_with_key_and_shapes():
    # mapped: 18 inputs per group cut into 9 + 9; one factor per (group, output, input piece)
    state = {k: v for k, v in _programmed_conv(_mapped_cfg()).state_dict().items()}  # a plain dict: no config
    cfg = fxanalog.InferenceRPUConfig()
    cfg.mapping.weight_scaling_omega = 1.0  # one tile per group: 2 groups x 3 outputs
    b = AnalogConv2d(4, 6, 3, groups=2, rpu_config=cfg).eval()
    before = {k: v.clone() for k, v in b.state_dict().items()}
    with pytest.raises(RuntimeError) as exc:
        b.load_state_dict(state)
    msg = str(exc.value)
    assert re.search(_size_mismatch("tile.mapping_scales", (2, 3, 2), "torch.Size([1]) or torch.Size([6])"), msg)
    assert re.search(_size_mismatch("tile.conductance_scales", (2, 1, 2), "torch.Size([2, 1, 1])"), msg)
    # nothing of the layer changed, and a later drift does not crash
    assert all(torch.equal(b.state_dict()[k], v) for k, v in before.items())
    assert b.tile.analog_weight is None
    b.drift_analog_weights(10.0)


def test_n_pair_converter_has_2n_conductance_rows_and_they_are_checked():
    def cfg(f_lst):
        c = fxanalog.InferenceRPUConfig()
        c.noise_model = PCMLikeNoiseModel(g_converter=NPairConductanceConverter(f_lst=f_lst))
        return c

    torch.manual_seed(0)
    a = AnalogLinear(5, 3, rpu_config=cfg([1.0, 2.0, 3.0])).eval()
    a.program_analog_weights()
    assert tuple(a.tile.programmed_conductances.shape) == (6, 1, 3, 5)  # 2 x 3 pairs
    fresh = AnalogLinear(5, 3, rpu_config=cfg([1.0, 2.0, 3.0])).eval()
    fresh.load_state_dict(_saved(a.state_dict()))
    assert torch.equal(fresh.tile.programmed_conductances, a.tile.programmed_conductances)
    two = AnalogLinear(5, 3, rpu_config=cfg([1.0, 2.0])).eval()
    with pytest.raises(RuntimeError, match=_size_mismatch("tile.programmed_conductances", (6, 1, 3, 5),
                                                          "torch.Size([4, 1, 3, 5])")):
        two.load_state_dict(dict(a.state_dict()))


def test_device_state_of_pulsed_tiles_is_checked():
    def layer(device):
        return AnalogLinear(4, 3, rpu_config=fxanalog.SingleRPUConfig(device=device))

    a = layer(fxanalog.LinearStepDevice())
    b = layer(fxanalog.ConstantStepDevice())
    pa, pb = a.tile.device_state.params.shape, b.tile.device_state.params.shape
    assert pa != pb  # the linear step device has more parameters per cross-point
    with pytest.raises(RuntimeError, match=_size_mismatch("tile.device_state.params", pa, pb)):
        b.load_state_dict(dict(a.state_dict()))


def test_input_ranges_are_checked():
    cfg = fxanalog.InferenceRPUConfig()
    cfg.pre_post.input_range.enable = True
    cfg.mapping.max_input_size = 10
    a = AnalogLinear(20, 3, rpu_config=cfg)
    cfg2 = fxanalog.InferenceRPUConfig()
    cfg2.pre_post.input_range.enable = True
    b = AnalogLinear(20, 3, rpu_config=cfg2)
    with pytest.raises(RuntimeError, match=_size_mismatch("tile.input_range", (1, 2), torch.Size([1, 1]))):
        b.load_state_dict(dict(a.state_dict()))


@pytest.mark.parametrize("strict", [True, False])
def test_programmed_checkpoint_into_floating_point_model_fails_naming_the_layer(strict):
    state = dict(_programmed_conv(_mapped_cfg()).state_dict())  # no config in it: the state decides
    state = {k: v for k, v in state.items() if k != "tile.mapping_scales"}
    model = nn.Sequential(AnalogConv2d(4, 6, 3, groups=2, rpu_config=fxanalog.FloatingPointRPUConfig()).eval())
    w = model[0].weight.clone()
    with pytest.raises(RuntimeError, match=r"0\.tile\.analog_weight: the checkpoint holds programmed state, but "
                                           r"layer .* has a FloatingPointRPUConfig without a noise model"):
        model.load_state_dict({"0." + k: v for k, v in state.items()}, strict=strict)
    assert torch.equal(model[0].weight, w) and model[0].tile.analog_weight is None


def test_learned_state_the_model_cannot_hold_fails_also_without_strict():
    cfg = fxanalog.InferenceRPUConfig()
    cfg.pre_post.input_range.enable = True
    state = dict(AnalogLinear(4, 3, rpu_config=cfg).state_dict())
    b = AnalogLinear(4, 3)
    with pytest.raises(RuntimeError, match=r"tile\.input_range: layer .* has no such state \(it would be dropped\)"):
        b.load_state_dict(state, strict=False)


def test_digital_checkpoint_gets_the_models_mapping_scales():
    torch.manual_seed(1)
    digital = nn.Linear(6, 4)
    with torch.no_grad():
        digital.weight[2, 3] = 3.0  # the largest |w|
    layer = AnalogLinear(6, 4, rpu_config=_mapped_cfg())
    layer.load_state_dict(digital.state_dict())
    assert torch.equal(layer.weight, digital.weight)
    # omega 1, one tile: alpha = max|W| / 1
    assert torch.equal(layer.tile.mapping_scales, torch.tensor([3.0]))


# -- issue 14 item 9: the rpu_config in the checkpoint ------------------------------------------


def _two_layers(cfg):
    torch.manual_seed(2)
    return AnalogSequential(AnalogLinear(6, 5, rpu_config=cfg), nn.ReLU(), AnalogLinear(5, 3, rpu_config=cfg))


def test_checkpoint_carries_the_config_as_plain_data():
    cfg = _mapped_cfg()
    cfg.forward.out_noise = 0.02
    state = _saved(_two_layers(cfg).state_dict())  # weights_only=True
    for layer in ("0", "2"):
        meta = state._metadata[layer]["fxanalog"]
        assert meta["rpu_config"] == config_to_dict(cfg)
        assert meta["in_sizes"] == ([6] if layer == "0" else [5]) and meta["groups"] == 1
    # metadata, not keys: the keys are the weights and the analog state only
    assert list(state) == ["0.weight", "0.bias", "0.tile.mapping_scales", "2.weight", "2.bias",
                           "2.tile.mapping_scales"]


def test_another_config_is_an_error_naming_layer_and_fields():
    saved_cfg = fxanalog.InferenceRPUConfig()
    saved_cfg.forward.out_noise = 0.02
    state = _saved(_two_layers(saved_cfg).state_dict())
    cfg = fxanalog.InferenceRPUConfig()
    cfg.forward.inp_res = 1 / 64
    model = _two_layers(cfg)
    w = model[0].weight.clone()
    with pytest.raises(RuntimeError) as exc:
        model.load_state_dict(state)
    msg = str(exc.value)
    assert "layer '0': the checkpoint was saved with another rpu_config or mapping" in msg
    assert f"forward.out_noise: checkpoint 0.02, this model {cfg.forward.out_noise!r}" in msg
    assert f"forward.inp_res: checkpoint {saved_cfg.forward.inp_res!r}, this model 0.015625" in msg
    assert "layer '2'" in msg
    assert torch.equal(model[0].weight, w)  # nothing loaded


def test_another_class_and_another_split_are_named():
    state = _saved(_two_layers(fxanalog.FloatingPointRPUConfig()).state_dict())
    with pytest.raises(RuntimeError, match="rpu_config: checkpoint FloatingPointRPUConfig, this model "
                                           "InferenceRPUConfig"):
        _two_layers(fxanalog.InferenceRPUConfig()).load_state_dict(state)
    cfg = fxanalog.InferenceRPUConfig()
    cfg.mapping.max_input_size = 4
    unmapped = fxanalog.InferenceRPUConfig()
    unmapped.mapping.max_input_size = 4
    saved = AnalogLinear(6, 3, rpu_config=cfg)
    one_tile = AnalogLinear(6, 3, rpu_config=unmapped, mapped=False)  # same config, one tile
    with pytest.raises(RuntimeError, match=r"in_sizes: checkpoint \[3, 3\], this model \[6\]"):
        one_tile.load_state_dict(_saved(saved.state_dict()))


def test_load_rpu_config_true_takes_the_checkpoints_config():
    saved_cfg = _mapped_cfg()
    saved_cfg.forward.out_noise = 0.0
    saved_cfg.mapping.learn_out_scaling = True
    src = _two_layers(saved_cfg).eval()
    with torch.no_grad():
        src[0].tile.out_scaling_alpha.fill_(1.5)
    src.program_analog_weights()
    state = _saved(src.state_dict())
    model = _two_layers(_mapped_cfg()).eval()  # no learned out scaling, output noise on
    model.load_state_dict(state, load_rpu_config=True)
    assert config_to_dict(model[0].rpu_config) == config_to_dict(saved_cfg)
    assert torch.equal(model[0].tile.out_scaling_alpha, torch.full((1,), 1.5))
    x = torch.randn(4, 6)
    torch.manual_seed(3)
    want = src(x)
    torch.manual_seed(3)
    assert torch.equal(model(x), want)
    # the split is not the config's to change
    other = AnalogSequential(AnalogLinear(6, 5, rpu_config=saved_cfg, mapped=False), nn.ReLU(),
                             AnalogLinear(5, 3, rpu_config=saved_cfg))
    with pytest.raises(RuntimeError, match="load_rpu_config=True replaces the config, not the split"):
        other.load_state_dict(_saved(_two_layers(_mapped_cfg(max_input_size=4)).state_dict()),
                              load_rpu_config=True)


def test_load_rpu_config_false_keeps_the_models_config():
    saved_cfg = fxanalog.InferenceRPUConfig()
    saved_cfg.forward.out_noise = 0.0
    src = _two_layers(saved_cfg)
    state = _saved(src.state_dict())
    cfg = fxanalog.InferenceRPUConfig()
    model = _two_layers(cfg)
    with torch.no_grad():
        model[0].weight.zero_()
    load_state_dict(model, state, load_rpu_config=False)
    assert model[0].rpu_config.forward.out_noise == cfg.forward.out_noise != 0.0
    assert torch.equal(model[0].weight, src[0].weight)
    # another class: refused unless strict_rpu_config_check=False
    fp_state = _saved(_two_layers(fxanalog.FloatingPointRPUConfig()).state_dict())
    with pytest.raises(RuntimeError, match="the checkpoint's rpu_config is a FloatingPointRPUConfig, this layer's "
                                           "a InferenceRPUConfig"):
        model.load_state_dict(fp_state, load_rpu_config=False)
    model.load_state_dict(fp_state, load_rpu_config=False, strict_rpu_config_check=False)
    assert type(model[0].rpu_config) is fxanalog.InferenceRPUConfig


def test_load_state_dict_function_on_a_converted_user_model():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(x)

    cfg = _mapped_cfg()
    cfg.forward.out_noise = 0.0
    state = _saved(fxanalog.convert_to_analog(Net(), cfg).state_dict())
    model = fxanalog.convert_to_analog(Net(), _mapped_cfg())
    default = fxanalog.InferenceRPUConfig().forward.out_noise
    with pytest.raises(RuntimeError, match=f"layer 'fc'.*forward.out_noise: checkpoint 0.0, this model {default}"):
        model.load_state_dict(state)
    load_state_dict(model, state, load_rpu_config=True)
    assert model.fc.rpu_config.forward.out_noise == 0.0
    with pytest.raises(TypeError, match="load_rpu_config = 'yes': expected None, True or False"):
        load_state_dict(model, state, load_rpu_config="yes")


def test_load_rpu_config_true_builds_the_periphery_of_the_checkpoints_config():
    torch.manual_seed(4)
    src = AnalogLinear(4, 3, rpu_config=fxanalog.SingleRPUConfig(device=fxanalog.ConstantStepDevice()))
    state = _saved(src.state_dict())
    dst = AnalogLinear(4, 3)  # an InferenceRPUConfig: no devices
    with pytest.raises(RuntimeError, match=r"rpu_config: checkpoint SingleRPUConfig, this model InferenceRPUConfig"):
        dst.load_state_dict(state)
    assert dst.tile.device_state is None
    dst.load_state_dict(state, load_rpu_config=True)
    assert type(dst.rpu_config) is fxanalog.SingleRPUConfig
    assert torch.equal(dst.tile.device_state.params, src.tile.device_state.params)
    assert torch.equal(dst.weight, src.weight)
    # and back: the devices go with the config
    back = AnalogLinear(4, 3)
    back_state = _saved(back.state_dict())
    dst.load_state_dict(back_state, load_rpu_config=True)
    assert dst.tile.device_state is None and type(dst.rpu_config) is fxanalog.InferenceRPUConfig


@pytest.mark.parametrize("name", presets.preset_names())
def test_every_preset_round_trips_with_its_config(name):
    torch.manual_seed(6)
    src = AnalogLinear(4, 3, rpu_config=presets.get_preset(name)).eval()
    src.program_analog_weights()
    state = _saved(src.state_dict())
    assert state._metadata[""]["fxanalog"]["rpu_config"] == config_to_dict(presets.get_preset(name))
    same = AnalogLinear(4, 3, rpu_config=presets.get_preset(name)).eval()
    assert str(same.load_state_dict(state)) == "<All keys matched successfully>"
    other = AnalogLinear(4, 3, rpu_config=fxanalog.FloatingPointRPUConfig()).eval()
    other.load_state_dict(state, load_rpu_config=True)
    assert config_to_dict(other.rpu_config) == config_to_dict(src.rpu_config)
    x = torch.randn(5, 4)
    torch.manual_seed(7)
    want = src(x)
    for layer in (same, other):
        torch.manual_seed(7)
        assert torch.equal(layer(x), want)


def test_unusable_metadata_is_an_error_not_a_crash():
    state = _saved(AnalogLinear(4, 3).state_dict())
    state._metadata[""]["fxanalog"]["rpu_config"]["forward"]["out_noise"] = -1.0  # not a valid config
    layer = AnalogLinear(4, 3)
    w = layer.weight.clone()
    with pytest.raises(RuntimeError, match=r"layer 'AnalogLinear': the checkpoint's rpu_config cannot be used: "
                                           r".*out_noise = -1.0"):
        layer.load_state_dict(state, load_rpu_config=True)
    assert torch.equal(layer.weight, w) and layer.rpu_config.forward.out_noise >= 0
    state._metadata[""]["fxanalog"] = {"something": "else"}
    with pytest.raises(RuntimeError, match="the checkpoint's fxanalog metadata is not readable"):
        layer.load_state_dict(state)
