"""fxanalog.compile's options, bad input, in-place semantics, state dicts,
torch.compile and torch.export of an analog model, explain; the pipeline:
layer rules, strategies, typed records, imports."""

from __future__ import annotations

import ast
import copy
import dataclasses
import io
import json
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fxanalog
from fxanalog.nn import AnalogLinear, AnalogMultiheadAttention
from fxanalog.passes import (
    CHILD_SWAP,
    CompileContext,
    CompileOptions,
    LayerRecord,
    LayerRule,
    RuleTable,
    TileMap,
    register_layer_rule,
    registered_rules,
    run,
)
from tests import zoo


def fp():
    return fxanalog.FloatingPointRPUConfig()


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}, repr(model)


def assert_unchanged(model, snap):
    state, text = snap
    assert repr(model) == text
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


# -- bad input ---------------------------------------------------------------


def test_bad_model_and_config():
    with pytest.raises(TypeError, match="expected a torch.nn.Module, got builtins.str"):
        fxanalog.compile("model")
    with pytest.raises(TypeError, match="expected an RPU config.*got builtins.dict"):
        fxanalog.compile(zoo.build("mlp"), {"forward": {}})


def test_bad_conversion_map():
    model = zoo.build("mlp")
    with pytest.raises(TypeError, match="conversion_map: expected a dict"):
        fxanalog.compile(model, conversion_map=[(nn.Linear, AnalogLinear)])

    class NoFromDigital(nn.Module):
        pass

    with pytest.raises(TypeError, match=r"conversion_map\[Linear\].*from_digital"):
        fxanalog.compile(model, conversion_map={nn.Linear: NoFromDigital})


def test_exclude_matching_nothing_lists_the_layers():
    model = zoo.build("mlp")
    snap = snapshot(model)
    with pytest.raises(ValueError, match=r"'fc9' matches no layer; the layers are: fc1, fc2, fc3"):
        fxanalog.compile(model, exclude=["fc9"], inplace=True)
    assert_unchanged(model, snap)


def test_example_inputs_the_model_rejects():
    model = zoo.build("mlp")
    with pytest.raises(ValueError, match=r"example_inputs: MLP failed at module 'fc1' \(Linear\) on them "
                       r"\(1 positional input\(s\): shape \(3, 7\)\).*mat1 and mat2"):
        fxanalog.compile(model, example_inputs=(torch.randn(3, 7),))


def test_no_convertible_layer_returns_the_model_with_a_warning():
    model = nn.Sequential(nn.ReLU(), nn.LayerNorm(4))
    with pytest.warns(UserWarning, match="no layer to convert"):
        out = fxanalog.compile(model)
    assert out is model


def test_config_errors_leave_the_model_unchanged():
    model = zoo.build("lenet")
    snap = snapshot(model)
    cfg = fxanalog.InferenceRPUConfig()
    cfg.forward.out_noise = -1.0
    with pytest.raises(ValueError, match="out_noise = -1.0"):
        fxanalog.compile(model, cfg, inplace=True)

    def bad_layer_config(name, module, rpu_config):
        return "not a config"

    with pytest.raises(TypeError, match=r"layer_config\('conv1'\) result"):
        fxanalog.compile(model, layer_config=bad_layer_config, inplace=True)
    assert_unchanged(model, snap)


# -- options -----------------------------------------------------------------


def test_exclude_and_layer_config():
    model = zoo.build("lenet")
    seen = []

    def layer_config(name, module, rpu_config):
        seen.append((name, type(module).__name__))
        cfg = fxanalog.InferenceRPUConfig()
        cfg.forward.out_noise = 0.0 if name.startswith("fc") else 0.06
        return cfg

    analog = fxanalog.compile(model, exclude=["conv*"], layer_config=layer_config)
    tiles = dict(analog.named_analog_layers())
    assert sorted(tiles) == ["fc1", "fc2", "fc3"]
    assert seen == [("fc1", "Linear"), ("fc2", "Linear"), ("fc3", "Linear")]
    assert tiles["fc1"].rpu_config.forward.out_noise == 0.0
    rows = {r["name"]: r for r in fxanalog.analog_summary(analog).rows}
    assert rows["conv1"]["converted_by"] == "digital: excluded by 'conv*'"
    assert rows["fc1"]["config_diff"] == ["forward.out_noise=0.0"]
    assert isinstance(analog.conv1, nn.Conv2d)


def test_mapped_splits_layers_into_tiles():
    model = nn.Sequential(nn.Linear(1300, 600))
    cfg = fp()
    mapped = fxanalog.compile(model, cfg)
    one = fxanalog.compile(model, cfg, mapped=False)
    m0, o0 = getattr(mapped, "0"), getattr(one, "0")
    assert m0.in_sizes == [434, 433, 433] and m0.out_sizes == [300, 300]
    assert o0.in_sizes == [1300] and o0.out_sizes == [600]
    row = fxanalog.analog_summary(mapped).rows[0]
    assert row["tiles"] == 6 and row["tile_grid"] == [1, 2, 3] and row["tile_size"] == [512, 512]
    assert row["utilization"] == pytest.approx(1300 * 600 / (6 * 512 * 512))
    x = torch.randn(4, 1300)
    with torch.no_grad():
        torch.testing.assert_close(mapped(x), model(x), rtol=1e-4, atol=1e-5)


def test_conversion_map_takes_precedence():
    class MyAnalogLinear(AnalogLinear):
        pass

    model = zoo.build("mlp")
    analog = fxanalog.compile(model, fp(), conversion_map={nn.Linear: MyAnalogLinear})
    assert all(type(layer) is MyAnalogLinear for _, layer in analog.named_analog_layers())
    assert {r.converted_by for r in analog.layer_records()} == {"conversion_map"}


def test_linear_subclasses_are_matched():
    class Scaled(nn.Linear):  # keeps Linear.forward: a leaf, matched as a module
        pass

    class Overridden(nn.Linear):  # own forward: traced through, F.linear matched
        def forward(self, x):
            return 2.0 * F.linear(x, self.weight, self.bias)

    model = nn.Sequential(Scaled(4, 5), Overridden(5, 3))
    analog = fxanalog.compile(model, fp())
    by = {r.name: r.converted_by for r in analog.layer_records()}
    assert by == {"0": "module", "1": "functional"}
    x = torch.randn(2, 4)
    with torch.no_grad():
        torch.testing.assert_close(analog(x), model(x))


def test_torch_transformer_encoder_layer():
    """nn.TransformerEncoderLayer's forward has data-dependent checks (its
    fused fast path): fallback-swap of its attention and linears, and the
    fast path is not taken (the result must carry the analog noise)."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True).eval()
    analog = fxanalog.compile(layer, fp())
    assert isinstance(analog.self_attn, AnalogMultiheadAttention)
    assert sorted(n for n, _ in analog.named_analog_layers()) == ["linear1", "linear2", "self_attn.in_proj",
                                                             "self_attn.out_proj"]
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        torch.testing.assert_close(analog(x), layer(x), rtol=1e-4, atol=1e-5)
        noisy = fxanalog.compile(layer, fxanalog.InferenceRPUConfig())
        assert (noisy(x) - layer(x)).abs().max() > 1e-3


def test_attention_masks_and_cross_attention():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True, kdim=6, vdim=5, add_bias_kv=True).eval()
    amha = AnalogMultiheadAttention.from_digital(mha, fp())
    q, k, v = torch.randn(2, 3, 8), torch.randn(2, 4, 6), torch.randn(2, 4, 5)
    kpm = torch.tensor([[False, False, True, False], [False, False, False, False]])
    mask = torch.randn(3, 4)
    with torch.no_grad():
        ref = mha(q, k, v, key_padding_mask=kpm, attn_mask=mask, average_attn_weights=False)
        out = amha(q, k, v, key_padding_mask=kpm, attn_mask=mask, average_attn_weights=False)
    torch.testing.assert_close(out[0], ref[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[1], ref[1], rtol=1e-5, atol=1e-5)
    back = amha.to_digital()
    with torch.no_grad():
        torch.testing.assert_close(back(q, k, v)[0], mha(q, k, v)[0], rtol=1e-5, atol=1e-6)


# -- in place, copies, state dicts ---------------------------------------------


def test_inplace_shares_tensors_and_keeps_ties():
    model = zoo.build("gpt")
    snap = snapshot(model)
    analog = fxanalog.compile(model, inplace=True)
    own = {id(p) for p in model.parameters()}
    assert {id(p) for p in analog.parameters()} <= own | {id(b) for b in analog.buffers()}
    assert analog.analog_wte_weight.weight is model.wte.weight
    assert analog.block.c_proj.weight is model.block.c_proj.weight
    assert_unchanged(model, snap)  # the modules themselves are not modified
    with torch.no_grad():
        model.wte.weight[0, 0] = 5.0  # a weight update is seen by both users
    assert analog.analog_wte_weight.weight[0, 0] == 5.0 and analog.wte.weight[0, 0] == 5.0


def test_copy_leaves_the_original_alone():
    model = zoo.build("resnet").train()
    snap = snapshot(model)
    analog = fxanalog.compile(model, example_inputs=zoo.inputs("resnet"))
    assert not ({id(p) for p in analog.parameters()} & {id(p) for p in model.parameters()})
    analog(*zoo.inputs("resnet"))  # training-mode forward: BatchNorm statistics of the copy move
    assert_unchanged(model, snap)
    assert model.training and analog.training


def test_state_dict_round_trip():
    model = zoo.build("encoder")
    cfg = fxanalog.InferenceRPUConfig()
    cfg.mapping.weight_scaling_omega = 1.0
    analog = fxanalog.compile(model, cfg)
    with torch.no_grad():
        for p in analog.parameters():
            p.add_(0.01)  # the state to carry over is not the original one
    buf = io.BytesIO()
    torch.save(analog.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    fresh = fxanalog.compile(model, cfg)
    fresh.load_state_dict(state)
    x = zoo.inputs("encoder")
    fresh.eval(), analog.eval()
    with torch.no_grad():
        torch.manual_seed(7)
        a = analog(*x)
        torch.manual_seed(7)
        b = fresh(*x)
    assert torch.equal(a, b)


def test_deepcopy_and_modes_of_the_analog_model():
    analog = fxanalog.compile(zoo.build("mlp"), fp())
    twin = copy.deepcopy(analog)
    assert twin.layer_records() == analog.layer_records()
    assert not twin.eval().training and all(not m.training for m in twin.modules())
    assert analog.to(torch.float64).fc1.weight.dtype == torch.float64


# -- torch.compile / torch.export of the analog model ----------------------------


def test_analog_model_under_inductor_fullgraph():
    model = zoo.build("mlp")
    analog = fxanalog.compile(model, fp()).eval()
    x = zoo.inputs("mlp")[0]
    torch._dynamo.reset()
    compiled = torch.compile(analog, backend="inductor", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)


def test_torch_export_of_an_analog_model():
    model = zoo.build("lenet")
    analog = fxanalog.compile(model, fp()).eval()
    x = zoo.inputs("lenet")
    ep = torch.export.export(analog, x)
    ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert sum("fxanalog.tile_mvm" in o for o in ops) >= 1
    assert sum(1 for n in ep.graph.nodes if "tile_mvm" in str(n.target)) == 5
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(*x), model(*x), rtol=1e-5, atol=1e-5)


# -- explain -----------------------------------------------------------------


def test_explain_is_a_dry_run():
    model = zoo.build("control_flow")
    snap = snapshot(model)
    report = fxanalog.explain(model, exclude=["head"])
    assert_unchanged(model, snap)
    assert all(type(m) is not AnalogLinear for m in model.modules())
    by = {r["name"]: r["converted_by"] for r in report.rows}
    assert by == {"gate.fc1": "fallback-swap", "gate.fc2": "fallback-swap", "gate.fc3": "fallback-swap",
                  "inp": "module", "head": "digital: excluded by 'head'"}
    assert report.totals["analog_layers"] == 4 and report.totals["digital_layers"] == 1
    assert "dry run" in str(report)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # the head's default-initialized weights are small: that warning is tested in test_compiler_weight_range
        warnings.simplefilter("ignore", fxanalog.compiler.SmallWeightRangeWarning)
        lstm = fxanalog.explain(zoo.build("lstm"))
    assert any(r["converted_by"].startswith("digital: recurrent") for r in lstm.rows)


# -- realistic writing (inference physics) ----------------------------------------


def test_realistic_read_write_programs_every_layer():
    pytest.importorskip("fxanalog.inference")
    model = zoo.build("mlp")
    torch.manual_seed(0)
    analog = fxanalog.compile(model, realistic_read_write=True)
    reports = {name: layer.tile.programming_report for name, layer in analog.named_analog_layers()}
    assert set(reports) == {"fc1", "fc2", "fc3"} and all(r is not None for r in reports.values())
    rows = fxanalog.analog_summary(analog).rows
    assert all(r["programming_report"] is not None for r in rows)
    assert "programming" in str(fxanalog.analog_summary(analog))


def test_program_and_drift_methods_are_the_inference_functions():
    inference = pytest.importorskip("fxanalog.inference")
    model = zoo.build("lenet")
    x = zoo.inputs("lenet")
    outs = []
    for use_methods in (True, False):
        analog = fxanalog.compile(model).eval()
        torch.manual_seed(11)
        if use_methods:
            analog.program_analog_weights()
            analog.drift_analog_weights(3600.0)
        else:
            inference.program_analog_weights(analog)
            inference.drift_analog_weights(analog, 3600.0)
        torch.manual_seed(12)
        with torch.no_grad():
            outs.append(analog(*x))
    assert torch.equal(outs[0], outs[1])
    fresh = fxanalog.compile(model).eval()
    torch.manual_seed(12)
    with torch.no_grad():
        assert not torch.equal(fresh(*x), outs[0])  # programming and drift changed the weights


def test_shared_weight_and_unsupported_matmuls_are_reported():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(6, 4))
            self.mask = nn.Parameter(torch.ones(6, 4), requires_grad=False)
            self.v = nn.Parameter(torch.randn(3, 6))

        def forward(self, x, y):
            a = F.linear(x, self.w) + F.linear(y, self.w)  # one weight, two matmuls
            b = F.linear(x, self.w * self.mask)  # a computed weight: stays digital
            return self.v @ (a + b).t()  # the parameter as left operand: stays digital

    model = Net()
    analog = fxanalog.compile(model, fp())
    layers = dict(analog.named_analog_layers())
    assert sorted(layers) == ["analog_w", "analog_w_1"]
    assert layers["analog_w"].weight is layers["analog_w_1"].weight  # shared, not copied
    digital = {r.name: r.converted_by_text for r in analog.layer_records() if not r.analog}
    assert digital == {"w": "digital: weight computed from parameter w (not the parameter itself)",
                       "v": "digital: the parameter is the left operand",
                       "mask": "digital: not a matmul weight fxanalog can see (used by mul)"}
    x, y = torch.randn(2, 4), torch.randn(2, 4)
    with torch.no_grad():
        torch.testing.assert_close(analog(x, y), model(x, y))


def test_layers_that_are_analog_already_are_kept():
    model = nn.Sequential(AnalogLinear(4, 5, rpu_config=fp()), nn.ReLU(), nn.Linear(5, 3))
    analog = fxanalog.compile(model, fp(), inplace=True)
    assert getattr(analog, "0") is model[0]  # kept as it is, not traced into
    assert [r.name for r in analog.layer_records()] == ["2"]
    assert sorted(n for n, _ in analog.named_analog_layers()) == ["0", "2"]
    with pytest.warns(UserWarning, match="no layer to convert"):
        assert fxanalog.compile(analog, fp()) is analog


# -- the pipeline: layer rules, strategies, typed records --------------------------


class Gain(nn.Module):
    """A layer type of the user's: y = (x W^T) * g, with its own forward."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in) / n_in**0.5)
        self.gain = nn.Parameter(torch.rand(n_out) + 0.5)

    def forward(self, x):
        return F.linear(x, self.weight) * self.gain


class AnalogGain(nn.Module):
    """Its analog version: the matmul on a tile layer, the gain in digital."""

    def __init__(self, linear, gain):
        super().__init__()
        self.linear, self.gain = linear, gain

    @classmethod
    def from_digital(cls, module, rpu_config, *, mapped=True, share=False):
        n_out, n_in = module.weight.shape
        return cls(AnalogLinear(n_in, n_out, False, rpu_config, mapped=mapped, weight=module.weight), module.gain)

    def forward(self, x):
        return self.linear(x) * self.gain


def test_a_registered_rule_converts_a_new_layer_type():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), Gain(8, 5))
    x = torch.randn(3, 6)
    # Without a rule the Gain is traced through: its F.linear is a functional match.
    plain = fxanalog.compile(model, fp())
    assert {r.name: r.converted_by for r in plain.layer_records()} == {"0": "module", "analog_2_weight": "functional"}

    rule = LayerRule("Gain", modules=(Gain,), analog_class=AnalogGain,
                     tile_shapes=lambda m: [("linear", m.module.weight.shape, 1)])
    with register_layer_rule(rule):
        analog = fxanalog.compile(model, fp(), inplace=True)
        report = fxanalog.explain(model)
    gain_layer = getattr(analog, "2")
    assert type(gain_layer) is AnalogGain and gain_layer.linear.weight is model[2].weight
    records = {r.name: r for r in analog.layer_records()}
    assert list(records) == ["0", "2.linear"]
    gain = records["2.linear"]
    assert (gain.kind, gain.converted_by, gain.source, gain.shape) == ("Gain.linear", "module", "2", (5, 8))
    # The dry run plans the tiles the rewrite builds.
    row = {r["name"]: r for r in report.rows}["2.linear"]
    assert row["tile_grid"] == list(gain.tile_map.grid) and row["in_sizes"] == list(gain.tile_map.in_sizes)
    with torch.no_grad():
        torch.testing.assert_close(analog(x), model(x))
    # Removed again: back to the functional match.
    assert rule not in registered_rules()
    assert [r.converted_by for r in fxanalog.compile(model, fp()).layer_records()] == ["module", "functional"]


def test_a_registered_digital_rule_keeps_a_layer_type_digital():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), Gain(8, 5))
    handle = register_layer_rule(LayerRule("Gain", modules=(Gain,), digital_reason="gain layers stay digital"))
    try:
        analog = fxanalog.compile(model, fp())
    finally:
        handle.remove()
    assert isinstance(getattr(analog, "1"), Gain)
    assert [(r.name, r.converted_by_text, r.shape) for r in analog.layer_records()] == [
        ("0", "module", (8, 6)), ("1", "digital: gain layers stay digital", (5, 8))]


def test_bad_layer_rules():
    with pytest.raises(TypeError, match="give modules, functions or methods"):
        LayerRule("nothing", analog_class=AnalogLinear)
    with pytest.raises(TypeError, match="give analog_class or build"):
        LayerRule("neither", modules=(Gain,))
    with pytest.raises(TypeError, match="needs match and build"):
        LayerRule("F.gain", functions=(F.linear,), analog_class=AnalogLinear)
    with pytest.raises(TypeError, match="expected a LayerRule"):
        register_layer_rule((Gain, AnalogGain))


class Small(nn.Module):
    """A convolution, an attention and a linear layer."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 8, 3)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        h = self.conv(x).transpose(1, 2)
        h = h + self.attn(h, h, h, need_weights=False)[0]
        return self.fc(h)


def test_every_strategy_makes_the_same_records():
    """fx tracing (compile), the child swap (the fallback for an untraceable
    forward) and dynamo's graph (the torch.compile backend) run the same
    passes: the same layers, weight shapes, tile maps and configs. Only how
    each found a layer differs (a module, a swapped child, a functional
    call in dynamo's graph)."""
    torch.manual_seed(0)
    model = Small().eval()
    x = torch.randn(2, 3, 10)
    cfg = fxanalog.InferenceRPUConfig()
    cfg.mapping.max_input_size = 16  # the in_proj (24 x 8) and the others on small tiles
    cfg.mapping.max_output_size = 6

    def same(record):
        return record.name, record.shape, record.tile_map, record.rpu_config

    compiled = fxanalog.compile(model, cfg).layer_records()
    assert [r.name for r in compiled] == ["conv", "attn.in_proj", "attn.out_proj", "fc"]
    assert {r.converted_by for r in compiled} == {"module"}

    options = CompileOptions.build(cfg)
    ctx = CompileContext(options, RuleTable.for_options(options))
    unit = run(ctx, CHILD_SWAP.trace(ctx, model))
    assert unit.changed and isinstance(unit.result.attn, AnalogMultiheadAttention) and unit.result is not model
    swapped = ctx.state.records
    assert [same(r) for r in swapped] == [same(r) for r in compiled]
    assert {r.converted_by for r in swapped} == {"fallback-swap"}

    torch._dynamo.reset()
    try:
        be = fxanalog.backend(cfg, inner="eager", model=model)
        torch.compile(model, backend=be)(x)
        dynamo = sorted(be.layer_records(), key=lambda r: [c.name for c in compiled].index(r.name))
    finally:
        torch._dynamo.reset()  # also forgets the backend's layers and records
    assert [same(r) for r in dynamo] == [same(r) for r in compiled]
    assert [(r.kind, r.converted_by, r.source) for r in dynamo] == [
        ("F.conv1d", "functional", "conv.weight"),
        ("F.multi_head_attention_forward.in_proj", "functional", "attn.in_proj_weight"),
        ("F.multi_head_attention_forward.out_proj", "functional", "attn.out_proj.weight"),  # its own weight
        ("F.linear", "functional", "fc.weight")]


def test_records_are_typed_and_round_trip_through_the_json_schema():
    lstm, _ = fxanalog.compile(zoo.build("lstm")).layer_records()
    head = fxanalog.compile(zoo.build("mlp"), exclude=["fc3"]).layer_records()[-1]
    assert all(isinstance(r, LayerRecord) for r in (lstm, head))
    assert [f.name for f in dataclasses.fields(LayerRecord)] == [
        "name", "kind", "converted_by", "source", "shape", "tile_map", "rpu_config", "digital_reason",
        "programming_report", "weight_range"]
    assert (lstm.converted_by, lstm.analog, lstm.shape, lstm.tile_map) == ("digital", False, (48, 6), None)
    assert lstm.digital_reason.startswith("recurrent layer")
    assert lstm.converted_by_text == f"digital: {lstm.digital_reason}"
    assert (head.name, head.converted_by, head.digital_reason) == ("fc3", "digital", "excluded by 'fc3'")

    mapped = fxanalog.compile(nn.Sequential(nn.Linear(1300, 600)), fxanalog.InferenceRPUConfig())
    (rec,) = mapped.layer_records()
    assert rec.analog and rec.converted_by == "module" and rec.digital_reason is None
    assert rec.tile_map == TileMap((1, 2, 3), (434, 433, 433), (300, 300), (512, 512))
    assert rec.tile_map.count == 6 and rec.tile_map.utilization == pytest.approx(1300 * 600 / (6 * 512 * 512))
    for r in (lstm, head, rec):
        d = r.to_dict()
        # The documented layer entry of the JSON dump (docs/compiler.md), in its key order.
        assert list(d) == ["name", "kind", "converted_by", "source", "shape", "tiles", "rpu_config", "config_diff",
                           "programming_report", "weight_range"]
        assert d["converted_by"] == r.converted_by_text
        assert LayerRecord.from_dict(json.loads(json.dumps(d))) == r
    d = rec.to_dict()
    assert d["tiles"] == {"count": 6, "grid": [1, 2, 3], "in_sizes": [434, 433, 433], "out_sizes": [300, 300],
                          "tile_size": [512, 512], "utilization": rec.tile_map.utilization}
    assert d["rpu_config"]["class"] == "InferenceRPUConfig" and d["config_diff"] == []
    assert json.loads(fxanalog.dump(mapped, "json"))["layers"] == [json.loads(json.dumps(d))]
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.name = "other"
    with pytest.raises(ValueError, match="digital_reason"):
        LayerRecord("fc", "Linear", "digital", "fc")
    with pytest.raises(ValueError, match="expected one of"):
        LayerRecord("fc", "Linear", "swapped", "fc")


def test_the_compiler_imports_at_module_level_without_cycles():
    """The compiler's modules (passes, driver, backend, model, summary, dump,
    the seed API) import fxanalog modules at module level only, and the
    import graph among them has no cycle."""
    root = Path(__file__).resolve().parents[1]
    files = {f"fxanalog.passes.{p.stem}": p for p in (root / "passes").glob("*.py") if p.stem != "__init__"}
    files["fxanalog.passes"] = root / "passes" / "__init__.py"
    for name in ("compiler", "dynamo_backend", "model", "summary", "dump", "nn.conversion"):
        files[f"fxanalog.{name}"] = root / "fxanalog" / f"{name.replace('.', '/')}.py"
    graph = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text())
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
                    base = f"{package}.{base}" if base else package
                found = [f"{base}.{a.name}" for a in node.names] + [base]
            elif isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            else:
                continue
            found = [t for t in found if t.startswith("fxanalog")]
            if found and node not in tree.body:
                pytest.fail(f"{name}: a function-local import of {found[0]}")
            targets |= {t for t in found if t in files and t != name}
        graph[name] = targets
    if "fxanalog.passes" in graph:  # the package imports its modules; they do not import it back
        for name in graph:
            assert name == "fxanalog.passes" or "fxanalog.passes" not in graph[name], name
    done, stack = set(), []

    def visit(name):
        assert name not in stack, " -> ".join(stack[stack.index(name):] + [name])
        if name in done:
            return
        stack.append(name)
        for t in graph[name]:
            visit(t)
        stack.pop()
        done.add(name)

    for name in graph:
        visit(name)
