"""aihwkit's layer API (issue 14 item 8): program/drift/remap as layer methods,
AnalogSequential, get_weights/set_weights with apply_weight_scaling=,
realistic= and aihwkit's (out, in*k) matrix form (docs/tile.md, "Weights")."""

import copy

import pytest
import torch
from torch import nn

import fxanalog
from fxanalog.config.noise import PCMLikeNoiseModel
from fxanalog.inference import drift_analog_weights, program_analog_weights, remap_analog_weights
from fxanalog.nn import AnalogConv2d, AnalogLinear, AnalogSequential

_PROGRAMMED = ("programmed_conductances", "drift_exponents", "conductance_scales", "drift_reference",
               "analog_weight", "drift_scales")


def _cfg(omega=0.0, max_input_size=512):
    cfg = fxanalog.InferenceRPUConfig()
    cfg.mapping.weight_scaling_omega = omega
    cfg.mapping.max_input_size = max_input_size
    return cfg


# -- get_weights / set_weights ----------------------------------------------------------------


def test_conv_weights_in_aihwkits_matrix_form():
    torch.manual_seed(0)
    conv = AnalogConv2d(4, 6, 3, groups=2, rpu_config=fxanalog.FloatingPointRPUConfig())
    w, b = conv.get_weights(matrix=True)
    assert w.shape == (6, 2 * 3 * 3)  # (out, in / groups * kh * kw)
    assert torch.equal(w, conv.weight.detach().reshape(6, 18)) and torch.equal(b, conv.bias.detach())
    m = torch.randn(6, 18)
    conv.set_weights(m)  # recognised by its shape
    assert torch.equal(conv.weight.detach(), m.reshape(6, 2, 3, 3))
    assert torch.equal(conv.get_weights(matrix=True)[0], m)
    with pytest.raises(ValueError, match=r"weight of shape \(6, 19\): expected \(6, 2, 3, 3\) or the tile "
                                         r"matrix \(6, 18\)"):
        conv.set_weights(torch.randn(6, 19))


def test_transposed_linear_matrix_form_is_out_by_in():
    torch.manual_seed(1)
    layer = AnalogLinear(5, 3, rpu_config=fxanalog.FloatingPointRPUConfig(), transposed=True)
    assert layer.weight.shape == (5, 3)
    assert torch.equal(layer.get_weights(matrix=True)[0], layer.weight.detach().t())
    m = torch.randn(3, 5)
    layer.set_weights(m, matrix=True)
    assert torch.equal(layer.weight.detach(), m.t())


def test_get_weights_without_weight_scaling_are_the_tile_weights_per_tile():
    torch.manual_seed(2)
    layer = AnalogLinear(6, 4, bias=False, rpu_config=_cfg(omega=1.0, max_input_size=3))
    w = layer.weight.detach()
    # each 4x3 tile divided by its own max|W| (omega 1), written out by hand
    want = torch.cat([w[:, :3] / w[:, :3].abs().max(), w[:, 3:] / w[:, 3:].abs().max()], dim=1)
    tile_w, _ = layer.get_weights(apply_weight_scaling=False)
    torch.testing.assert_close(tile_w, want, rtol=1e-6, atol=0)
    torch.testing.assert_close(layer.get_weights()[0], w, rtol=1e-6, atol=0)


def test_set_weights_without_weight_scaling_keeps_the_scales():
    layer = AnalogLinear(3, 2, bias=False, rpu_config=_cfg(omega=1.0))
    layer.set_weights(torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -0.25]]))
    assert torch.equal(layer.tile.mapping_scales, torch.tensor([2.0]))  # max|W| / omega
    tiles = torch.tensor([[0.5, 0.25, -1.0], [1.0, 0.0, 0.125]])
    layer.set_weights(tiles, apply_weight_scaling=False)
    assert torch.equal(layer.tile.mapping_scales, torch.tensor([2.0]))
    assert torch.equal(layer.weight.detach(), 2.0 * tiles)
    assert torch.equal(layer.get_weights(apply_weight_scaling=False)[0], tiles)


def test_set_weights_with_an_omega():
    layer = AnalogLinear(3, 2, bias=False, rpu_config=_cfg(omega=1.0))
    layer.set_weights(torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -0.25]]), weight_scaling_omega=0.5)
    assert torch.equal(layer.tile.mapping_scales, torch.tensor([4.0]))  # 2 / 0.5
    with pytest.raises(ValueError, match=r"weight_scaling_omega = -1.0: expected a finite number >= 0"):
        layer.set_weights(torch.ones(2, 3), weight_scaling_omega=-1.0)


def test_realistic_read_without_weight_scaling():
    torch.manual_seed(3)
    cfg = fxanalog.FloatingPointRPUConfig()
    cfg.mapping.weight_scaling_omega = 1.0
    layer = AnalogLinear(8, 4, rpu_config=cfg)
    w = layer.weight.detach()
    est, _ = layer.get_weights(realistic=True, apply_weight_scaling=False)
    # a perfect tile: the least-squares read is exact up to float32 rounding
    torch.testing.assert_close(est, w / w.abs().max(), rtol=0, atol=1e-5)


def test_set_weights_realistic_writes_by_closed_loop():
    torch.manual_seed(4)
    layer = AnalogLinear(16, 8, bias=False, rpu_config=_cfg(omega=1.0))
    target = torch.randn(8, 16)
    layer.set_weights(target, realistic=True)
    report = layer.tile.programming_report
    assert report is not None and report["iterations"] >= 1
    written = layer.weight.detach()
    assert not torch.equal(written, target)  # programming noise
    # the loop stops when its noisy read is within 1% of max|target| on average; the written
    # weights (read without noise here) stay within a few percent
    assert (written - target).abs().mean() / target.abs().max() < 0.05


# -- remapping ------------------------------------------------------------------------------


def test_remap_analog_weights():
    torch.manual_seed(5)
    layer = AnalogLinear(6, 3, rpu_config=_cfg(omega=0.0)).eval()
    w = layer.weight.detach().clone()
    layer.program_analog_weights()
    assert layer.tile.mapping_scales is None
    layer.remap_analog_weights()  # aihwkit's default omega 1.0
    assert torch.equal(layer.tile.mapping_scales, w.abs().max().reshape(1))
    assert torch.equal(layer.weight.detach(), w)  # the digital weights do not change
    assert all(getattr(layer.tile, name) is None for name in _PROGRAMMED)
    layer.remap_analog_weights(0.5)
    assert torch.equal(layer.tile.mapping_scales, (w.abs().max() / 0.5).reshape(1))
    remap_analog_weights(nn.Sequential(layer), None)  # the config's omega: 0, no scaling
    assert layer.tile.mapping_scales is None


# -- program / drift as methods, AnalogSequential ---------------------------------------------


def _seq(cfg):
    torch.manual_seed(6)
    return AnalogSequential(AnalogLinear(6, 5, rpu_config=cfg), nn.ReLU(),
                            AnalogConv2d(1, 2, 2, rpu_config=cfg), nn.Flatten())


def test_sequential_programs_and_drifts_as_the_layers_do():
    a = _seq(_cfg(omega=1.0)).eval()
    b = copy.deepcopy(a)
    torch.manual_seed(7)
    a.program_analog_weights()
    a.drift_analog_weights(3600.0)
    torch.manual_seed(7)
    for layer in (b[0], b[2]):
        layer.program_analog_weights()
    for layer in (b[0], b[2]):
        layer.drift_analog_weights(3600.0)
    for la, lb in zip(a.analog_layers(), b.analog_layers()):
        for name in _PROGRAMMED:
            assert torch.equal(getattr(la.tile, name), getattr(lb.tile, name)), name
    # the model-level functions run the same loop
    c = copy.deepcopy(b)
    torch.manual_seed(8)
    program_analog_weights(b)
    drift_analog_weights(b, 60.0)
    torch.manual_seed(8)
    c.program_analog_weights()
    c.drift_analog_weights(60.0)
    assert torch.equal(b[2].tile.analog_weight, c[2].tile.analog_weight)


def test_sequential_checks_every_layer_before_programming():
    model = _seq(_cfg()).eval()
    model[2].train()
    with pytest.raises(ValueError, match="program_analog_weights: layer 'AnalogConv2d' is in training mode"):
        model.program_analog_weights()
    assert model[0].tile.analog_weight is None  # nothing programmed
    with pytest.raises(ValueError, match=r"t_inference = -1.0: expected seconds >= 0"):
        model.eval().drift_analog_weights(-1.0)


def test_sequential_helpers():
    model = _seq(_cfg())
    assert [name for name, _ in model.named_analog_layers()] == ["0", "2"]
    assert model.analog_tiles() == [model[0].tile, model[2].tile]
    assert model.analog_modules() == [model[0], model[2]]  # aihwkit's name
    seen = []
    assert model.apply_to_analog_layers(seen.append) is model and seen == [model[0], model[2]]
    model.remap_analog_weights(2.0)
    assert torch.equal(model[0].tile.mapping_scales, (model[0].weight.detach().abs().max() / 2.0).reshape(1))
    digital = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    seq = AnalogSequential.from_digital(digital)
    assert isinstance(seq, AnalogSequential) and seq[0] is digital[0]


def test_program_with_a_noise_model_replaces_the_configs():
    torch.manual_seed(9)
    layer = AnalogLinear(8, 4, bias=False, rpu_config=_cfg(omega=1.0)).eval()
    quiet = PCMLikeNoiseModel(prog_noise_scale=0.0)
    layer.program_analog_weights(quiet)
    assert layer.rpu_config.noise_model.prog_noise_scale == 0.0
    tiles = layer.weight.detach() / layer.weight.detach().abs().max()
    # without programming noise the programmed weights are the tile weights (conductances and back)
    torch.testing.assert_close(layer.tile.analog_weight[0], tiles, rtol=0, atol=1e-6)
    fp = AnalogLinear(8, 4, rpu_config=fxanalog.FloatingPointRPUConfig()).eval()
    with pytest.raises(ValueError, match="has a FloatingPointRPUConfig, which has no noise model to replace"):
        fp.program_analog_weights(quiet)
