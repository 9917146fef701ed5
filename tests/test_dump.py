"""fxanalog.dump in every format, and FXANALOG_DUMP_DIR."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

import fxanalog
from tests import zoo


@pytest.fixture(scope="module")
def split_model():
    """One layer of 1300 x 600 on 512 x 512 tiles: 2 output x 3 input pieces."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1300, 600), nn.ReLU(), nn.Linear(600, 10))
    return fxanalog.compile(model, fxanalog.FloatingPointRPUConfig(), example_inputs=(torch.randn(4, 1300),))


def test_json_schema_and_values(split_model):
    data = json.loads(fxanalog.dump(split_model, "json"))
    assert list(data) == ["schema", "model", "graph", "nodes", "edges", "layers", "totals"]
    assert data["schema"] == "fxanalog.dump/1" and data["graph"] == "fx" and data["model"] == "Sequential"
    nodes = {n["name"]: n for n in data["nodes"]}
    assert list(nodes) == ["input_1", "analog_0", "_1", "analog_2", "output"]
    assert list(nodes["analog_0"]) == ["name", "op", "target", "inputs", "analog", "layer", "shape", "dtype"]
    assert nodes["analog_0"]["analog"] and nodes["analog_0"]["layer"] == "0"
    assert nodes["analog_0"]["shape"] == [4, 600] and nodes["analog_2"]["shape"] == [4, 10]
    assert not nodes["_1"]["analog"] and nodes["_1"]["op"] == "call_module"
    assert {(e["src"], e["dst"]) for e in data["edges"]} == {
        ("input_1", "analog_0"), ("analog_0", "_1"), ("_1", "analog_2"), ("analog_2", "output")}
    layer = data["layers"][0]
    assert list(layer) == ["name", "kind", "converted_by", "source", "shape", "tiles", "rpu_config", "config_diff",
                           "programming_report", "weight_range"]
    assert layer["tiles"] == {"count": 6, "grid": [1, 2, 3], "in_sizes": [434, 433, 433], "out_sizes": [300, 300],
                              "tile_size": [512, 512], "utilization": pytest.approx(1300 * 600 / (6 * 512 * 512))}
    assert layer["rpu_config"]["class"] == "FloatingPointRPUConfig"
    assert data["totals"]["tiles"] == 6 + 2 and data["totals"]["analog_layers"] == 2
    assert data["totals"]["analog_weights"] == 1300 * 600 + 600 * 10
    assert fxanalog.dump(split_model, "json") == fxanalog.dump(split_model, "json")  # stable


def test_text_shows_code_and_tile_maps(split_model):
    text = fxanalog.dump(split_model, "text")
    assert "analog_0 = getattr(self, \"0\")(input_1)" in text
    assert "0: Linear 600x1300 [module] -> 2x3 tiles of 512x512 (outputs [300, 300], inputs [434, 433, 433])" in text


def test_dot_draws_the_tile_grid(split_model):
    dot = fxanalog.dump(split_model, "dot")
    assert dot.startswith('digraph "Sequential" {')
    # 2 rows (output pieces) of 3 cells (input pieces).
    assert dot.count("<TD>300x434</TD>") == 2 and dot.count("<TD>300x433</TD>") == 4
    assert '"input_1" -> "analog_0";' in dot
    assert dot.count('fillcolor="#ffd27f"') == 2


def test_networkx_has_the_same_attributes(split_model):
    data = json.loads(fxanalog.dump(split_model, "json"))
    g = fxanalog.dump(split_model, "networkx")
    assert sorted(g.nodes) == sorted(n["name"] for n in data["nodes"])
    assert g.nodes["analog_0"]["layer"] == "0" and g.nodes["analog_0"]["shape"] == [4, 600]
    assert g.graph["layers"] == data["layers"] and g.number_of_edges() == len(data["edges"])


def test_untraceable_model_dumps_its_modules():
    class Root(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 3)

        def forward(self, x):
            return self.a(x) if x.sum() > 0 else self.b(x)

    analog = fxanalog.compile(Root(), fxanalog.FloatingPointRPUConfig())
    data = json.loads(fxanalog.dump(analog, "json"))
    assert data["graph"] == "modules"
    assert [n["name"] for n in data["nodes"]] == ["(root)", "a", "b"]
    assert [n["analog"] for n in data["nodes"]] == [False, True, True]
    assert "could not be traced" in fxanalog.dump(analog, "text")


def test_bad_format(split_model):
    with pytest.raises(ValueError, match="format = 'svg': expected one of text, json, dot, networkx"):
        fxanalog.dump(split_model, "svg")


def test_dump_dir_writes_every_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("FXANALOG_DUMP_DIR", str(tmp_path))
    fxanalog.compile(zoo.build("control_flow"), fxanalog.FloatingPointRPUConfig())
    (run,) = os.listdir(tmp_path)
    files = sorted(os.listdir(tmp_path / run))
    # The untraceable gate is swapped (no graph); the root goes through every pass.
    assert files == ["00_trace.txt", "01_match.txt", "02_map.txt", "03_rewrite.txt", "04_final.json",
                     "04_final.txt"]
    match = (tmp_path / run / "01_match.txt").read_text()
    assert "match Linear [module] as 'inp'" in match
    rewritten = (tmp_path / run / "03_rewrite.txt").read_text()
    assert "analog_inp = self.analog_inp" not in rewritten and "analog_inp = self.inp(x)" in rewritten
    assert json.loads((tmp_path / run / "04_final.json").read_text())["totals"]["analog_layers"] == 5
