"""The seed API: convert_to_analog, convert_to_analog_mapped, convert_to_digital."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fxanalog
import fxanalog.nn.conversion as conversion
from fxanalog.nn import AnalogConv2d, AnalogLayerBase, AnalogLinear
from tests import zoo


def test_importable_from_both_places():
    assert fxanalog.convert_to_analog is conversion.convert_to_analog
    assert fxanalog.convert_to_analog_mapped is conversion.convert_to_analog_mapped
    assert fxanalog.convert_to_digital is conversion.convert_to_digital
    assert fxanalog.nn.conversion.convert_to_analog is conversion.convert_to_analog


def test_one_tile_per_layer_versus_mapped():
    model = nn.Sequential(nn.Linear(1300, 700), nn.ReLU(), nn.Linear(700, 10))
    cfg = fxanalog.InferenceRPUConfig()
    one = conversion.convert_to_analog(model, cfg)
    mapped = conversion.convert_to_analog_mapped(model, cfg)
    assert [layer.num_tiles for _, layer in one.named_analog_layers()] == [1, 1]
    # 1300 -> 3 input pieces, 700 -> 2 output pieces; 700 -> 2 input pieces, 10 -> 1.
    assert [layer.num_tiles for _, layer in mapped.named_analog_layers()] == [6, 2]


def test_conversion_map_and_exclude_and_specific_config():
    class MyConv(AnalogConv2d):
        pass

    model = zoo.build("lenet")
    names = []

    def specific(name, module, rpu_config):
        names.append(name)
        return fxanalog.FloatingPointRPUConfig()

    analog = conversion.convert_to_analog(model, fxanalog.InferenceRPUConfig(), conversion_map={nn.Conv2d: MyConv},
                                          specific_rpu_config_fun=specific, exclude_modules=["fc3"])
    tiles = dict(analog.named_analog_layers())
    assert type(tiles["conv1"]) is MyConv and type(tiles["fc1"]) is AnalogLinear
    assert "fc3" not in tiles and isinstance(analog.fc3, nn.Linear)
    assert names == ["conv1", "conv2", "fc1", "fc2"]
    x = zoo.inputs("lenet")
    with torch.no_grad():  # every converted layer ideal: the output is the digital one
        torch.testing.assert_close(analog(*x), model(*x), rtol=1e-5, atol=1e-5)


def test_bad_arguments():
    with pytest.raises(TypeError, match="convert_to_analog: module: expected a torch.nn.Module"):
        conversion.convert_to_analog([nn.Linear(2, 2)], fxanalog.InferenceRPUConfig())
    with pytest.raises(TypeError, match="rpu_config is required"):
        conversion.convert_to_analog_mapped(nn.Linear(2, 2), None)
    with pytest.raises(TypeError, match="convert_to_digital: expected a torch.nn.Module"):
        conversion.convert_to_digital(3)


def test_inplace_and_copy():
    model = zoo.build("mlp")
    shared = conversion.convert_to_analog(model, fxanalog.InferenceRPUConfig(), inplace=True)
    assert shared.fc1.weight is model.fc1.weight
    copied = conversion.convert_to_analog(model, fxanalog.InferenceRPUConfig())
    assert copied.fc1.weight is not model.fc1.weight and torch.equal(copied.fc1.weight, model.fc1.weight)


def test_verbose_prints_the_summary(capsys):
    conversion.convert_to_analog(zoo.build("mlp"), fxanalog.InferenceRPUConfig(), verbose=True)
    out = capsys.readouterr().out
    assert "fc1" in out and "total: 3 analog layers" in out


@pytest.mark.parametrize("name", ["lenet", "gpt", "control_flow", "encoder"])
def test_convert_to_digital_carries_the_current_weights(name):
    model = zoo.build(name)
    cfg = fxanalog.InferenceRPUConfig()
    cfg.mapping.weight_scaling_omega = 1.0  # weights held as W/alpha with alpha in digital
    analog = conversion.convert_to_analog_mapped(model, cfg)
    with torch.no_grad():
        for _, layer in analog.named_analog_layers():
            layer.weight.mul_(0.5)  # "trained" weights, different from the original
    digital = conversion.convert_to_digital(analog)
    assert not any(isinstance(m, AnalogLinear) for m in digital.modules())
    assert not hasattr(digital, "named_analog_layers") or list(digital.named_analog_layers()) == []
    assert not any(isinstance(m, AnalogLayerBase) for m in digital.modules())
    # Reference: the original model with its matmul weights halved by hand
    # (the tied embedding shares the head's Parameter: halved once, for both).
    ref = zoo.build(name)
    with torch.no_grad():
        for n, p in ref.named_parameters():
            if p.dim() >= 2 and not n.startswith("lstm") and n != "wpe":
                p.mul_(0.5)
    x = zoo.inputs(name)
    with torch.no_grad():
        torch.testing.assert_close(digital(*x), ref(*x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["lenet", "encoder"])
def test_convert_to_digital_realistic_reads_the_tiles(name):
    # A noise-free tile reads back its weights to float precision (least squares on
    # N(0,1) probes), so the digital model computes what the original does; a noisy
    # tile's read is off by the read error (small, not zero). The analog model stays.
    torch.manual_seed(0)
    model = zoo.build(name)
    x = zoo.inputs(name)
    with torch.no_grad():
        ref = model(*x)
        exact = conversion.convert_to_analog_mapped(model, fxanalog.FloatingPointRPUConfig())
        torch.testing.assert_close(conversion.convert_to_digital(exact, realistic=True)(*x), ref,
                                   rtol=1e-4, atol=1e-4)
        cfg = fxanalog.InferenceRPUConfig()
        cfg.forward.out_noise = 0.01  # read error ~ 0.01 * 3 / sqrt(10 n_in) per weight
        noisy = conversion.convert_to_analog_mapped(model, cfg)
        before = {n: p.detach().clone() for n, p in noisy.named_parameters()}
        read = conversion.convert_to_digital(noisy, realistic=True)
        err = float((read(*x) - ref).abs().max() / ref.abs().max())
        assert 0 < err < 0.1, err
        assert not torch.equal(read(*x), conversion.convert_to_digital(noisy)(*x))
    assert all(torch.equal(before[n], p) for n, p in noisy.named_parameters())
