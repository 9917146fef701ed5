"""``fxanalog.dump``: the compiled graph as text, JSON, Graphviz or networkx.

Formats:

* ``"text"``: the Python code of the rewritten graph (the analog layers are
  called by name, ``analog_<layer>``) and the table of analog layers with
  their tile maps;
* ``"json"``: the schema below, keys in a fixed order;
* ``"dot"``: Graphviz source of the data flow, condensed so that large
  graphs render in seconds: every run of digital ops between analog layers
  (each op the only user of the one before, ``dot_chains``) is one node
  labelled with its op count, ops and output shape; analog nodes filled,
  labelled with the layer's name, kind, output shape and weight shape, and
  drawn with the tile grid (pieces as cells) when it has at most 8 x 8
  tiles, else the grid's shape; nodes in nested clusters per module; graph
  attributes that bound dot's layout passes (``_DOT_GRAPH``). No Graphviz
  binary is needed to produce it;
* ``"networkx"``: a ``networkx.DiGraph`` with the same attributes.

JSON schema (``"schema": "fxanalog.dump/1"``)::

    {"schema", "model": class name, "graph": "fx" | "flow" | "modules",
     "nodes": [{"name", "op", "target", "inputs": [node names], "analog": bool,
                "layer": analog layer name | null, "shape": [ints] | null,
                "dtype": str | null}],
     "edges": [{"src", "dst", "index"}],
     "layers": [{"name", "kind", "converted_by", "source", "shape",
                 "tiles": {"count", "grid": [G, n_out, n_in], "in_sizes",
                           "out_sizes", "tile_size": [rows, cols], "utilization"} | null,
                 "rpu_config": config dict | null, "config_diff": [str] | null,
                 "programming_report": dict | null,
                 "weight_range": max|W| in tile units (1 = full scale) | null}],
     "totals": {"analog_layers", "digital_layers", "tiles", "analog_weights",
                "utilization", "macs"}}

A model whose forward could not be traced (its children swapped) has no
graph: with ``example_inputs`` its data flow is recorded from one forward
pass (``"graph": "flow"``, ``flow_graph``: one node per analog layer call,
per call of a module without children and per torch function called
between them, edges where a tensor flows); without, ``"graph": "modules"``:
its nodes are its modules (op ``"module"``; an analog layer is one node,
its own submodules are not listed) and edges go from parent to child.

``FXANALOG_DUMP_DIR=<folder>``: every ``fxanalog.compile`` writes the graph
after each pass into ``<folder>/<Model>_<pid>_<random>/NN_<pass>.txt`` (code
and the annotations of that pass), and the final model as ``.txt`` and
``.json``, as ``TORCH_COMPILE_DEBUG`` does for inductor. The run folder is
made exclusively (``tempfile.mkdtemp``); a dump dir that cannot be written
is a warning and the compile goes on without dumps.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from typing import Optional

import torch
from torch import fx, nn
from torch.overrides import TorchFunctionMode

from fxanalog.model import GRAPH_KEY
from fxanalog.nn.modules import AnalogLayerBase, named_analog_layers
from fxanalog.passes.context import META_DTYPE, META_LAYER, META_MATCH, META_SHAPE, META_TILE_MAPS
from fxanalog.passes.shapes import annotate
from fxanalog.summary import summary_records, summary_report

__all__ = ["dump", "dump_data", "dot_chains", "flow_graph", "StageDumper"]

FORMATS = ("text", "json", "dot", "networkx")


def _target(node: fx.Node) -> str:
    t = node.target
    if isinstance(t, str):
        return t
    mod = getattr(t, "__module__", None) or ""
    name = getattr(t, "__qualname__", None) or getattr(t, "__name__", None) or str(t)
    if name.startswith("_VariableFunctionsClass.") or mod == "torch._C._nn":
        return "torch." + getattr(t, "__name__", name)
    return f"{mod}.{name}" if mod and not mod.startswith("_operator") else name


def _graph(model: nn.Module) -> Optional[fx.GraphModule]:
    """The graph a model runs: the model itself, or the graph of a model of
    the user's class made by ``convert_to_analog`` (``model.GRAPH_KEY``)."""
    if isinstance(model, fx.GraphModule):
        return model
    gm = vars(model).get(GRAPH_KEY)
    return gm if isinstance(gm, fx.GraphModule) else None


def dump_data(model: nn.Module, example_inputs=None) -> dict:
    """The dump as a plain dict (the JSON schema of the module docstring)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"dump: expected an nn.Module, got {type(model).__name__}")
    gm = _graph(model)
    if example_inputs is not None and gm is not None:
        annotate(gm, example_inputs)
    report = summary_report(model, example_inputs)
    layers_by_name = dict(named_analog_layers(model))
    nodes, edges = [], []
    if gm is not None:
        graph_kind = "fx"
        for node in gm.graph.nodes:
            layer = node.meta.get(META_LAYER)
            analog = layer is not None or (node.op == "call_module" and _is_analog(gm, node.target))
            nodes.append({
                "name": node.name, "op": node.op, "target": _target(node),
                "inputs": [a.name for a in node.all_input_nodes], "analog": analog,
                "layer": layer if layer is not None else (node.target if analog else None),
                "shape": node.meta.get(META_SHAPE), "dtype": node.meta.get(META_DTYPE),
            })
            for i, a in enumerate(node.all_input_nodes):
                edges.append({"src": a.name, "dst": node.name, "index": i})
    elif example_inputs is not None:
        graph_kind = "flow"
        nodes, edges = flow_graph(model, example_inputs, layers_by_name)
    else:
        graph_kind = "modules"
        for name, mod in model.named_modules():
            if any(name.startswith(layer + ".") for layer in layers_by_name):
                continue  # inside an analog layer: the layer is one node
            label = name or "(root)"
            analog = name in layers_by_name
            nodes.append({"name": label, "op": "module", "target": type(mod).__name__, "inputs": [],
                          "analog": analog, "layer": name if analog else None, "shape": None, "dtype": None})
            for i, (child, _) in enumerate(() if analog else mod.named_children()):
                edges.append({"src": label, "dst": f"{name}.{child}" if name else child, "index": i})
    layers = [r.to_dict() for r in summary_records(model)]
    return {"schema": "fxanalog.dump/1", "model": type(model).__name__, "graph": graph_kind,
            "nodes": nodes, "edges": edges, "layers": layers, "totals": report.totals}


def flow_graph(model: nn.Module, example_inputs, layers: dict) -> tuple:
    """The data flow of one forward pass of a model without a graph (its
    forward could not be traced: the child swap converted it), as dump
    nodes and edges: one node per input, per call of an analog layer
    (``layers``: {name: layer}) or of a module without children, per torch
    function called outside those modules (``torch.overrides``'
    function mode), and the output; an edge wherever a tensor one made is
    an input of another. Run in eval mode without gradients, torch's random
    state and the modules' modes restored after."""
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    nodes: list = []
    edges: list = []
    producer: dict = {}  # id(tensor) -> node name
    keep: list = []  # the tensors seen, so that no id is reused during the run
    counts: dict = {}
    used: set = set()
    depth = [0]  # > 0 inside a recorded module

    def tensors(value) -> list:
        if isinstance(value, torch.Tensor):
            return [value]
        if isinstance(value, (list, tuple)):
            return [t for v in value for t in tensors(v)]
        if isinstance(value, dict):
            return [t for v in value.values() for t in tensors(v)]
        return []

    def add(name: str, op: str, target: str, inputs, outputs, analog=False, layer=None) -> None:
        srcs = list(dict.fromkeys(producer[id(t)] for t in tensors(inputs) if id(t) in producer))
        if op == "call_function" and not srcs:
            return  # a constant or an op on parameters only
        base, k = name, counts.get(name, 0)
        while name in used:  # a second call, or a module path that reads like a call's name
            k += 1
            name = f"{base}_{k}"
        counts[base] = k
        used.add(name)
        outs = tensors(outputs)
        first = outs[0] if outs else None
        nodes.append({"name": name, "op": op, "target": target, "inputs": srcs, "analog": analog,
                      "layer": layer, "shape": list(first.shape) if first is not None else None,
                      "dtype": str(first.dtype).replace("torch.", "") if first is not None else None})
        edges.extend({"src": src, "dst": name, "index": i} for i, src in enumerate(srcs))
        for t in outs:
            producer[id(t)] = name
            keep.append(t)

    class Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if depth[0] == 0 and tensors(out):
                add(getattr(func, "__name__", str(func)).strip("_"), "call_function",
                    _target_name(func), (args, kwargs), out)
            return out

    recorded = {id(m): n for n, m in model.named_modules()
                if n in layers or (n and not any(True for _ in m.children())
                                   and not any(n.startswith(a + ".") for a in layers))}
    hooks = []
    for mod in model.modules():
        if id(mod) in recorded:
            def pre(m, args):
                depth[0] += 1

            def post(m, args, out):
                depth[0] -= 1
                if depth[0] == 0:
                    name = recorded[id(m)]
                    add(name, "call_module", name, args, out, analog=name in layers,
                        layer=name if name in layers else None)
            hooks += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
    for i, x in enumerate(example_inputs):
        name = f"input_{i + 1}"
        used.add(name)
        nodes.append({"name": name, "op": "placeholder", "target": name, "inputs": [], "analog": False,
                      "layer": None, "shape": list(x.shape) if isinstance(x, torch.Tensor) else None,
                      "dtype": str(x.dtype).replace("torch.", "") if isinstance(x, torch.Tensor) else None})
        for t in tensors(x):
            producer[id(t)] = name
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad(), Mode():
            out = model(*example_inputs)
    finally:
        for h in hooks:
            h.remove()
        for m, mode in modes:
            m.training = mode
    add("output", "output", "output", out, ())
    return nodes, edges


def _target_name(func) -> str:
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or str(func)
    if name.startswith("_TensorBase.") or name.startswith("TensorBase."):
        return "Tensor." + name.partition(".")[2]
    if name.startswith("_VariableFunctionsClass."):
        return "torch." + name.partition(".")[2]
    mod = getattr(func, "__module__", None) or ""
    return f"{mod}.{name}" if mod and not mod.startswith("torch._C") else f"torch.{name}"


def _is_analog(model: nn.Module, target: str) -> bool:
    try:
        mod = model.get_submodule(target)
    except AttributeError:
        return False
    return any(isinstance(m, AnalogLayerBase) for m in mod.modules())


def dump(model: nn.Module, format: str = "text", example_inputs=None):
    """The model as ``"text"``, ``"json"``, ``"dot"`` (strings) or
    ``"networkx"`` (a ``networkx.DiGraph``); see the module docstring."""
    if format not in FORMATS:
        raise ValueError(f"dump: format = {format!r}: expected one of {', '.join(FORMATS)}")
    if format == "text":
        return _text(model, example_inputs)
    data = dump_data(model, example_inputs)
    if format == "json":
        return json.dumps(data, indent=2)
    if format == "dot":
        return _dot(data)
    return _networkx(data)


def _tile_lines(data: dict) -> list[str]:
    out = []
    for layer in data["layers"]:
        t = layer["tiles"]
        if t is None:
            out.append(f"  {layer['name']}: {layer['kind']} [{layer['converted_by']}]")
            continue
        G, n_out, n_in = t["grid"]
        groups = f"{G} groups x " if G > 1 else ""
        out.append(
            f"  {layer['name']}: {layer['kind']} {'x'.join(map(str, layer['shape']))} [{layer['converted_by']}]"
            f" -> {groups}{n_out}x{n_in} tiles of {t['tile_size'][0]}x{t['tile_size'][1]}"
            f" (outputs {t['out_sizes']}, inputs {t['in_sizes']}), utilization {t['utilization']:.2f}")
    return out


def _text(model: nn.Module, example_inputs=None) -> str:
    data = dump_data(model, example_inputs)
    lines = [f"# fxanalog dump of {data['model']}", ""]
    gm = _graph(model)
    if gm is not None:
        lines += ["# graph code (analog layers are the analog_* calls)", gm.code.strip(), ""]
    else:
        lines += ["# the forward of this model could not be traced: its modules were swapped", ""]
    lines += ["# analog layers and their tile maps"] + _tile_lines(data) + [""]
    lines.append(str(summary_report(model, example_inputs)))
    return "\n".join(lines) + "\n"


def _q(s: str) -> str:
    """A DOT double-quoted string (backslashes, quotes and newlines escaped)."""
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _html(s: str) -> str:
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _tile_label(node: dict, layer: Optional[dict], shape: str = "") -> str:
    head = f"<B>{_html(node['layer'] or node['name'])}</B><BR/>{_html(layer['kind'] if layer else node['target'])}"
    if shape:
        head += f"<BR/>out {_html(shape)}"
    t = layer["tiles"] if layer else None
    if t is None:
        return f"<{head}>"
    G, n_out, n_in = t["grid"]
    head += f"<BR/>W {'x'.join(map(str, layer['shape']))}"
    if n_out > 8 or n_in > 8:
        cells = f'<TR><TD COLSPAN="1">{G}x{n_out}x{n_in} tiles of {t["tile_size"][0]}x{t["tile_size"][1]}</TD></TR>'
        span = 1
    else:
        rows = []
        for o in t["out_sizes"]:
            rows.append("<TR>" + "".join(f"<TD>{o}x{i}</TD>" for i in t["in_sizes"]) + "</TR>")
        cells = "".join(rows)
        span = n_in
        if G > 1:
            head += f"<BR/>{G} groups of this grid"
    return (f'<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0"><TR><TD COLSPAN="{span}">{head}</TD></TR>'
            f"{cells}</TABLE>>")


# Graph attributes that keep dot's layout fast on graphs of a thousand nodes
# with long edges (DenseNet's concatenations): network simplex limited to a
# few passes over the nodes, one crossing-minimization pass without the
# second round (docs/compiler.md, "fxanalog.dump").
_DOT_GRAPH = ("rankdir=TB", "newrank=true", "nslimit=2", "nslimit1=2", "mclimit=0.5", "remincross=false",
              "searchsize=10")
_CHAIN_SHOWN = 4  # ops named in the label of a collapsed chain (first ones, then "...")


def _shape_text(shape) -> str:
    if shape and isinstance(shape[0], int):
        return "x".join(map(str, shape))
    return ""


def _module_path(node: dict) -> Optional[str]:
    """The module a node belongs to (its layer, module or attribute path)."""
    if node["analog"]:
        return node["layer"]
    if node["op"] in ("call_module", "get_attr", "module"):
        return None if node["name"] == "(root)" else node["target"] if node["op"] != "module" else node["name"]
    return None


def dot_chains(nodes: list, edges: list) -> list:
    """The digital nodes of a graph grouped into chains: maximal runs
    ``n1 -> n2 -> ... -> nk`` of digital nodes (not inputs or outputs) where
    each ``n(i+1)`` has ``n(i)`` as its only input and is its only user.
    Every other node is a chain of one. Returns lists of node names in
    graph order."""
    by_name = {n["name"]: n for n in nodes}
    ins: dict = {n["name"]: [] for n in nodes}
    outs: dict = {n["name"]: [] for n in nodes}
    for e in edges:
        if e["dst"] not in ins[e["src"]] and e["src"] in by_name and e["dst"] in by_name:
            if e["src"] not in ins[e["dst"]]:
                ins[e["dst"]].append(e["src"])
                outs[e["src"]].append(e["dst"])

    def digital(name: str) -> bool:
        n = by_name[name]
        return not n["analog"] and n["op"] not in ("placeholder", "output", "module")

    def linked(u: str, v: str) -> bool:  # v continues the chain of u
        return digital(u) and digital(v) and ins[v] == [u] and outs[u] == [v]

    chains, seen = [], set()
    for n in nodes:
        name = n["name"]
        if name in seen or (len(ins[name]) == 1 and linked(ins[name][0], name)):
            continue
        chain = [name]
        while len(outs[chain[-1]]) == 1 and linked(chain[-1], outs[chain[-1]][0]):
            chain.append(outs[chain[-1]][0])
        seen.update(chain)
        chains.append(chain)
    return chains


def _short_target(node: dict) -> str:
    if node["op"] == "call_module":
        return node["target"].rpartition(".")[2] or node["target"]
    return node["target"].rpartition(".")[2] or node["target"]


def _clusters(clusters: dict) -> list:
    """Nested ``subgraph cluster_*`` blocks: one per module path holding
    nodes, inside the blocks of the paths above it."""
    tree: dict = {}
    for path in clusters:
        parts = path.split(".")
        for i in range(1, len(parts) + 1):
            tree.setdefault(".".join(parts[:i - 1]), set()).add(".".join(parts[:i]))
    lines: list = []
    count = [0]

    def emit(path: str, depth: int) -> None:
        pad = "  " * depth
        lines.append(f"{pad}subgraph cluster_{count[0]} {{")
        count[0] += 1
        lines.append(f"{pad}  label={_q(path)}; style=dashed; color=gray50;")
        lines.extend(pad + t for t in clusters.get(path, []))
        for child in sorted(tree.get(path, ())):
            emit(child, depth + 1)
        lines.append(f"{pad}}}")

    for top in sorted(tree.get("", ())):
        emit(top, 1)
    return lines


def _dot(data: dict) -> str:
    """Graphviz source of a dump: every analog layer one filled node (its
    tile grid and output shape), every input and output one node, every run
    of digital ops between them one node (``dot_chains``) labelled with its
    ops and its output shape; nodes in one cluster per parent module."""
    layers = {layer["name"]: layer for layer in data["layers"]}
    nodes = {n["name"]: n for n in data["nodes"]}
    chains = dot_chains(data["nodes"], data["edges"])
    head = {name: chain[0] for chain in chains for name in chain}
    lines = [f"digraph {_q(data['model'])} {{"] + [f"  {a};" for a in _DOT_GRAPH] + [
        '  node [shape=box, fontname="Helvetica"];']
    clusters: dict = {}
    for chain in chains:
        node = nodes[chain[0]]
        last = nodes[chain[-1]]
        shape = _shape_text(last["shape"])
        if node["analog"]:
            subs = [v for k, v in layers.items() if k == node["layer"] or k.startswith(f"{node['layer']}.")]
            label = _tile_label(node, subs[0] if len(subs) == 1 else None, shape)
            if len(subs) > 1:
                label = "<" + _html(node["name"]) + "<BR/>" + "<BR/>".join(
                    f"{_html(s['name'])}: {s['tiles']['grid'][1]}x{s['tiles']['grid'][2]} tiles" for s in subs
                    if s["tiles"]) + (f"<BR/>out {_html(shape)}" if shape else "") + ">"
            text = (f"  {_q(node['name'])} [label={label}, shape=plaintext, style=filled, "
                    f'fillcolor="#ffd27f"];')
        elif len(chain) > 1:
            ops = [_short_target(nodes[c]) for c in chain]
            shown = " > ".join(ops[:_CHAIN_SHOWN]) + (" > ..." if len(ops) > _CHAIN_SHOWN else "")
            label = f"{len(chain)} digital ops: {shown}" + (
                f"\n{shape}" if shape else "")
            text = f"  {_q(node['name'])} [label={_q(label)}, style=rounded];"
        else:
            label = f"{node['name']}\n{node['op']} {node['target']}" + (f"\n{shape}" if shape else "")
            text = f"  {_q(node['name'])} [label={_q(label)}];"
        path = next((p for p in map(_module_path, (nodes[c] for c in chain)) if p), None)
        parent = path.rpartition(".")[0] if path and data["graph"] != "modules" else ""
        clusters.setdefault(parent, []).append(text)
    lines += clusters.pop("", [])
    lines += _clusters(clusters)
    drawn = set()
    for e in data["edges"]:
        src, dst = head[e["src"]], head[e["dst"]]
        if src != dst and (src, dst) not in drawn:
            drawn.add((src, dst))
            lines.append(f"  {_q(src)} -> {_q(dst)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _networkx(data: dict):
    import networkx as nx

    g = nx.DiGraph(model=data["model"], schema=data["schema"], graph_kind=data["graph"],
                   layers=data["layers"], totals=data["totals"])
    for node in data["nodes"]:
        g.add_node(node["name"], **{k: v for k, v in node.items() if k != "name"})
    for e in data["edges"]:
        g.add_edge(e["src"], e["dst"], index=e["index"])
    return g


# --------------------------------------------------------------------------
# FXANALOG_DUMP_DIR

def _dump_warning(where: str, e: OSError) -> None:
    warnings.warn(f"FXANALOG_DUMP_DIR: cannot write the pass dumps to {where!r} ({e.strerror or e}); "
                  "compiling without them", stacklevel=4)


class StageDumper:
    """Writes the graph after each pass when ``FXANALOG_DUMP_DIR`` is set."""

    def __init__(self, folder: Optional[str]):
        self.folder = folder
        self.index = 0

    @classmethod
    def from_env(cls, model_name: str) -> "StageDumper":
        """The run's folder: created exclusively under ``FXANALOG_DUMP_DIR``
        (``tempfile.mkdtemp``: a new name ``<Model>_<pid>_<random>``, mode
        0700, never an existing folder or a planted link). A dump dir that
        cannot be used (a file, not writable) is a warning, and no dumps."""
        root = os.environ.get("FXANALOG_DUMP_DIR")
        if not root:
            return cls(None)
        try:
            os.makedirs(root, exist_ok=True)
            folder = tempfile.mkdtemp(prefix=f"{model_name}_{os.getpid()}_", dir=root)
        except OSError as e:
            _dump_warning(root, e)
            return cls(None)
        return cls(folder)

    def stage(self, name: str, module: nn.Module) -> None:
        if self.folder is None:
            return
        try:
            self._write(name, module)
        except OSError as e:
            _dump_warning(self.folder, e)
            self.folder = None

    def _write(self, name: str, module: nn.Module) -> None:
        base = os.path.join(self.folder, f"{self.index:02d}_{name.replace('.', '_')}")
        self.index += 1
        if name in ("final", "program"):
            with open(base + ".txt", "w") as f:
                f.write(dump(module, "text"))
            with open(base + ".json", "w") as f:
                f.write(dump(module, "json"))
            return
        lines = [f"# after pass '{name}'", module.code.strip() if isinstance(module, fx.GraphModule) else "", ""]
        if isinstance(module, fx.GraphModule):
            for node in module.graph.nodes:
                notes = []
                m = node.meta.get(META_MATCH)
                if m is not None:
                    notes.append(f"match {m.kind} [{m.converted_by}] as {m.name!r} (source {m.source})")
                for e in node.meta.get(META_TILE_MAPS) or []:
                    t = e.tile_map
                    notes.append(f"tiles {e.sub or '-'}: {'x'.join(map(str, t.grid))} tiles of "
                                 f"{t.tile_size[0]}x{t.tile_size[1]}, utilization {t.utilization:.2f}")
                if node.meta.get(META_SHAPE) is not None:
                    notes.append(f"shape {node.meta[META_SHAPE]}")
                if notes:
                    lines.append(f"# {node.name}: " + "; ".join(notes))
        with open(base + ".txt", "w") as f:
            f.write("\n".join(lines) + "\n")
