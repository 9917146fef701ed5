"""fxanalog.dump in every format, and FXANALOG_DUMP_DIR."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
import torch
from torch import nn

import fxanalog
from fxanalog.dump import dot_chains as dump_chains
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


# -- DOT of large graphs (issue 14 item 20) ----------------------------------------


class _DenseLayer(nn.Module):
    def __init__(self, cin, growth):
        super().__init__()
        self.norm1, self.relu1 = nn.BatchNorm2d(cin), nn.ReLU()
        self.conv1 = nn.Conv2d(cin, 4 * growth, 1, bias=False)
        self.norm2, self.relu2 = nn.BatchNorm2d(4 * growth), nn.ReLU()
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, inputs):
        x = torch.cat(inputs, 1)
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class _DenseBlock(nn.ModuleDict):
    def __init__(self, n, cin, growth):
        super().__init__({f"denselayer{i + 1}": _DenseLayer(cin + i * growth, growth) for i in range(n)})

    def forward(self, x):
        feats = [x]
        for layer in self.values():
            feats.append(layer(feats))
        return torch.cat(feats, 1)


class _Transition(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm, self.relu = nn.BatchNorm2d(cin), nn.ReLU()
        self.conv, self.pool = nn.Conv2d(cin, cout, 1, bias=False), nn.AvgPool2d(2)


class _DenseNet(nn.Module):
    """torchvision's densenet121 structure (blocks of 6, 12, 24, 16 layers,
    every layer concatenating all the block's earlier outputs), narrow."""

    def __init__(self, blocks=(6, 12, 24, 16), growth=4, init=8):
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(3, init, 3, padding=1, bias=False))
        self.features.add_module("norm0", nn.BatchNorm2d(init))
        self.features.add_module("relu0", nn.ReLU())
        c = init
        for i, n in enumerate(blocks):
            self.features.add_module(f"denseblock{i + 1}", _DenseBlock(n, c, growth))
            c += n * growth
            if i != len(blocks) - 1:
                self.features.add_module(f"transition{i + 1}", _Transition(c, c // 2))
                c //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(c))
        self.classifier = nn.Linear(c, 10)

    def forward(self, x):
        f = torch.relu(self.features(x))
        return self.classifier(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(f, 1), 1))


_ID = r'"(?:[^"\\]|\\.)*"'
_STATEMENTS = [
    re.compile(r"(?:rankdir|newrank|nslimit|nslimit1|mclimit|remincross|searchsize)=\w+(?:\.\w+)?;"),
    re.compile(r'node \[shape=box, fontname="Helvetica"\];'),
    re.compile(rf"subgraph cluster_\d+ {{"),
    re.compile(rf"label={_ID}; style=dashed; color=gray50;"),
    re.compile(r"}"),
    re.compile(rf"(?P<node>{_ID}) \[label=(?P<label>{_ID}|<.*>)(?:, [a-z]+=(?:{_ID}|\w+))*\];"),
    re.compile(rf"(?P<src>{_ID}) -> (?P<dst>{_ID});"),
]


def _parse_dot(text: str):
    """A small parser of the DOT fxanalog writes: every line one statement of
    the forms above, braces balanced, every edge between declared nodes.
    Returns ({node: label}, [(src, dst)])."""
    lines = text.strip().splitlines()
    assert re.fullmatch(rf"digraph {_ID} {{", lines[0]) and lines[-1] == "}"
    nodes, edges, depth = {}, [], 1
    for line in lines[1:-1]:
        stmt = line.strip()
        match = next((m for m in (p.fullmatch(stmt) for p in _STATEMENTS) if m), None)
        assert match is not None, f"not a DOT statement fxanalog writes: {stmt!r}"
        depth += stmt.endswith("{") - (stmt == "}")
        assert depth >= 1
        if match.groupdict().get("node"):
            label = match["label"]
            if label.startswith("<"):  # HTML label: its tags balanced
                assert label.count("<TABLE") == label.count("</TABLE>") and label.count("<TR>") == label.count("</TR>")
            nodes[match["node"][1:-1]] = label
        elif match.groupdict().get("src"):
            edges.append((match["src"][1:-1], match["dst"][1:-1]))
    assert depth == 1
    assert all(s in nodes and d in nodes for s, d in edges)
    return nodes, edges


@pytest.fixture(scope="module")
def densenet():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 16, 16)
    model = fxanalog.compile(_DenseNet(), fxanalog.FloatingPointRPUConfig(), example_inputs=(x,))
    return model, x


def test_dot_of_a_densenet_collapses_digital_runs(densenet):
    model, x = densenet
    dot = fxanalog.dump(model, "dot", example_inputs=(x,))
    nodes, edges = _parse_dot(dot)
    blocks, transitions = (6, 12, 24, 16), 3
    # By hand: per dense layer the run cat > norm1 > relu1, conv1, the run norm2 > relu2, conv2;
    # per transition the run cat > norm > relu, conv, pool; the input, conv0, norm0 > relu0; the
    # run cat > norm5 > relu > adaptive_avg_pool2d > flatten, the classifier and the output.
    assert len(nodes) == 4 * sum(blocks) + 3 * transitions + 3 + 3
    # Edges: dense layer i of a block concatenates the block's input and i outputs (i + 1 edges)
    # and has 3 inside; the block's last cat has n + 1; 2 in a transition, 2 at each end.
    assert len(edges) == sum(sum(i + 1 + 3 for i in range(n)) + n + 1 for n in blocks) + 2 * transitions + 4
    assert len(set(edges)) == len(edges)
    # The fx graph has every op: 7 per dense layer, 5 per transition, 4 before, 7 after.
    assert len(model.graph.nodes) == 7 * sum(blocks) + 5 * transitions + 4 + 7
    # Every analog layer is one node with its name and the output shape it computes.
    shapes = {}

    def hook(mod, inputs, out, name):
        shapes[name] = tuple(out.shape)

    hooks = [layer.register_forward_hook(lambda m, i, o, name=name: hook(m, i, o, name))
             for name, layer in model.named_analog_layers()]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    assert len(shapes) == 2 + 2 * sum(blocks) + transitions  # conv0, classifier, 2 per layer, transitions
    labels = [label for label in nodes.values() if label.startswith("<")]
    assert len(labels) == len(shapes)
    for name, shape in shapes.items():
        (label,) = [lab for lab in labels if f"<B>{name}</B>" in lab]
        assert f"out {'x'.join(map(str, shape))}" in label
    assert dot.count('"3 digital ops: cat &gt;') == 0 and dot.count("3 digital ops: cat > norm1 > relu1") == sum(blocks)
    assert dot.count("subgraph cluster_") == 1 + len(blocks) + sum(blocks) + transitions  # features and below


def test_dot_renders_with_graphviz_when_installed(densenet, tmp_path):
    dot_bin = shutil.which("dot")
    if dot_bin is None:
        pytest.skip("Graphviz's dot is not installed")
    model, x = densenet
    path = tmp_path / "densenet.dot"
    path.write_text(fxanalog.dump(model, "dot", example_inputs=(x,)))
    # A bound against a layout that never ends (the old dump of densenet121 took over 5 minutes),
    # not a timing: docs/compiler.md records the time.
    done = subprocess.run([dot_bin, "-Tsvg", "-o", str(tmp_path / "densenet.svg"), str(path)], timeout=120,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "densenet.svg").read_text().count('class="node"') == len(_parse_dot(path.read_text())[0])


def test_chains_by_hand():
    def node(name, op="call_function", analog=False):
        return {"name": name, "op": op, "target": name, "inputs": [], "analog": analog, "layer": None,
                "shape": None, "dtype": None}

    names = [("x", "placeholder"), ("a", "call_function"), ("b", "call_function"), ("L", "call_module"),
             ("c", "call_function"), ("d", "call_function"), ("e", "call_function"), ("out", "output")]
    nodes = [node(n, op, analog=n == "L") for n, op in names]
    # x -> a -> b -> L -> c -> d -> out, and c -> e -> d (d has two inputs, c two users)
    pairs = [("x", "a"), ("a", "b"), ("b", "L"), ("L", "c"), ("c", "d"), ("c", "e"), ("e", "d"), ("d", "out")]
    edges = [{"src": s, "dst": d, "index": 0} for s, d in pairs]
    assert dump_chains(nodes, edges) == [["x"], ["a", "b"], ["L"], ["c"], ["d"], ["e"], ["out"]]


def test_untraceable_model_with_inputs_dumps_its_data_flow():
    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.norm = nn.Linear(6, 6), nn.Linear(6, 5), nn.LayerNorm(6)

        def forward(self, x):
            h = self.norm(x)
            if x.sum() > 0:  # data-dependent: fx cannot trace it, the children are swapped
                h = torch.relu(self.a(h)) + x
            return self.b(h * 2)

    torch.manual_seed(0)
    model = fxanalog.compile(Gate(), fxanalog.FloatingPointRPUConfig())
    x = torch.rand(2, 6)  # x.sum() > 0: the branch through a
    state = torch.random.get_rng_state()
    data = json.loads(fxanalog.dump(model, "json", example_inputs=(x,)))
    assert torch.equal(torch.random.get_rng_state(), state) and model.training
    assert data["graph"] == "flow"
    got = [(n["name"], n["op"], n["target"], n["inputs"], n["analog"], n["shape"]) for n in data["nodes"]]
    assert got == [
        ("input_1", "placeholder", "input_1", [], False, [2, 6]),
        ("norm", "call_module", "norm", ["input_1"], False, [2, 6]),
        ("sum", "call_function", "Tensor.sum", ["input_1"], False, []),
        ("gt", "call_function", "Tensor.gt", ["sum"], False, []),
        ("a", "call_module", "a", ["norm"], True, [2, 6]),
        ("relu", "call_function", "torch.relu", ["a"], False, [2, 6]),
        ("add", "call_function", "Tensor.add", ["relu", "input_1"], False, [2, 6]),
        ("mul", "call_function", "Tensor.mul", ["add"], False, [2, 6]),
        ("b", "call_module", "b", ["mul"], True, [2, 5]),
        ("output", "output", "output", ["b"], False, None)]
    nodes, edges = _parse_dot(fxanalog.dump(model, "dot", example_inputs=(x,)))
    assert set(edges) == {("input_1", "norm"), ("input_1", "sum"), ("norm", "a"), ("a", "relu"), ("relu", "add"),
                          ("input_1", "add"), ("add", "b"), ("b", "output")}
    assert "out 2x5" in nodes["b"] and nodes["add"] == '"2 digital ops: add > mul\\n2x6"'
    # Without inputs: the module tree, as before.
    assert json.loads(fxanalog.dump(model, "json"))["graph"] == "modules"


def test_flow_node_names_are_unique():
    """A module whose path reads like a second call's name (``relu_1``) and
    repeated calls of one function get distinct nodes."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.relu_1, self.fc = nn.ReLU(), nn.Linear(4, 4)

        def forward(self, x):
            if x.sum() > 0:
                x = torch.relu(x)
            return self.relu_1(torch.relu(self.fc(torch.relu(x))))

    model = fxanalog.compile(Net(), fxanalog.FloatingPointRPUConfig())
    data = json.loads(fxanalog.dump(model, "json", example_inputs=(torch.rand(2, 4),)))
    names = [n["name"] for n in data["nodes"]]
    assert names == ["input_1", "sum", "gt", "relu", "relu_1", "fc", "relu_2", "relu_1_1", "output"]
    assert [n["op"] for n in data["nodes"]][3:8] == ["call_function"] * 2 + ["call_module", "call_function",
                                                                            "call_module"]
