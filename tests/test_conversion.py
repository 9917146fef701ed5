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


# -- the user's own class (issue 14 item 7) ---------------------------------------------


class LM(zoo.GPT):
    """A language model with a method and a config attribute, as HuggingFace's."""

    def __init__(self):
        super().__init__()
        self.config = {"vocab": 50}

    @torch.no_grad()
    def generate(self, idx, steps: int):
        for _ in range(steps):
            nxt = self(idx[:, -8:])[:, -1].argmax(-1, keepdim=True)
            idx = torch.cat([idx, nxt], 1)
        return idx


@pytest.mark.parametrize("inplace", [False, True])
def test_convert_to_analog_returns_the_users_class(inplace):
    torch.manual_seed(0)
    model = LM().eval()
    idx = zoo.inputs("gpt")[0][:, :4]
    analog = conversion.convert_to_analog(model, fxanalog.FloatingPointRPUConfig(), inplace=inplace)
    assert isinstance(analog, LM) and not isinstance(analog, torch.fx.GraphModule)
    assert analog.config == {"vocab": 50}
    # Same submodule paths (the analog layers where the digital ones were), plus the new functional layers.
    digital_paths = {n for n, _ in model.named_modules()}
    paths = {n for n, _ in analog.named_modules()}
    assert digital_paths - {"block.c_proj"} <= paths
    assert isinstance(analog.block.c_proj, AnalogLinear) and isinstance(analog.analog_wte_weight, AnalogLinear)
    assert sorted(analog.state_dict()) == sorted(model.state_dict())
    torch.testing.assert_close(analog.generate(idx, 3), model.generate(idx, 3))
    back = conversion.convert_to_digital(analog)
    assert type(back) is LM and sorted(back.state_dict()) == sorted(model.state_dict())
    torch.testing.assert_close(back(idx), model(idx), rtol=1e-5, atol=1e-5)


def test_convert_to_analog_of_a_sequential_is_indexable():
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    analog = conversion.convert_to_analog_mapped(model, fxanalog.InferenceRPUConfig())
    assert isinstance(analog, nn.Sequential) and isinstance(analog[0], AnalogLinear) and analog[1].__class__ is nn.ReLU
    assert len(analog) == 3 and [n for n, _ in analog.named_analog_layers()] == ["0", "2"]


def test_converted_model_of_the_users_class_saves_and_copies(tmp_path):
    import copy
    import os
    import subprocess
    import sys

    model = zoo.build("gpt")
    analog = conversion.convert_to_analog(model, fxanalog.InferenceRPUConfig())
    analog.eval()
    torch.manual_seed(0)
    analog.program_analog_weights()
    x = zoo.inputs("gpt")
    other = copy.deepcopy(analog)
    assert isinstance(other, zoo.GPT) and other.block.c_proj is not analog.block.c_proj
    state = analog.state_dict()
    for k, v in other.state_dict().items():
        assert torch.equal(v, state[k]), k
    path = tmp_path / "lm.pt"
    torch.save(analog, path)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (f"import torch; from tests import zoo; m = torch.load({str(path)!r}, weights_only=False); "
            f"assert isinstance(m, zoo.GPT), type(m).__mro__; print(len(m.layer_records()), "
            f"sorted(m.state_dict()) == sorted(torch.load({str(path)!r}, weights_only=False).state_dict()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(len(analog.layer_records())), "True"]


def test_dump_of_a_converted_model_shows_the_graph_it_runs():
    import json

    model = zoo.build("encoder")
    analog = conversion.convert_to_analog(model, fxanalog.InferenceRPUConfig())
    data = json.loads(fxanalog.dump(analog, "json", example_inputs=zoo.inputs("encoder")))
    assert data["graph"] == "fx" and data["model"] == "EncoderBlock"
    by_layer = {n["layer"]: n["shape"] for n in data["nodes"] if n["analog"]}
    assert by_layer == {"attn": [[2, 5, 32], None], "analog_w1": [2, 5, 64], "fc2": [2, 5, 32]}
    assert analog.fxanalog_graph.code.strip() in fxanalog.dump(analog, "text")


def test_seed_api_converts_weights_fx_cannot_see_with_example_inputs():
    model = zoo.build_real("window")
    x = zoo.real_inputs("window")
    plain = conversion.convert_to_analog(model, fxanalog.FloatingPointRPUConfig())
    seen = conversion.convert_to_analog(model, fxanalog.FloatingPointRPUConfig(), example_inputs=x)
    assert [r.name for r in plain.layer_records() if not r.analog] == ["qkv.weight", "proj.weight"]
    assert all(r.analog for r in seen.layer_records()) and len(seen.layer_records()) == 4
    assert isinstance(seen, zoo.WindowBlock)
    with torch.no_grad():
        torch.testing.assert_close(seen(*x), model(*x), rtol=1e-5, atol=1e-5)
