"""``fxanalog.dump``: the compiled graph as text, JSON, Graphviz or networkx.

Formats:

* ``"text"``: the Python code of the rewritten graph (the analog layers are
  called by name, ``analog_<layer>``) and the table of analog layers with
  their tile maps;
* ``"json"``: the schema below, keys in a fixed order;
* ``"dot"``: Graphviz source; analog nodes filled, each drawn with its tile
  grid (pieces as cells) when it has at most 8 x 8 tiles, else labelled
  with the grid's shape. No Graphviz binary is needed to produce it;
* ``"networkx"``: a ``networkx.DiGraph`` with the same attributes.

JSON schema (``"schema": "fxanalog.dump/1"``)::

    {"schema", "model": class name, "graph": "fx" | "modules",
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

A model whose forward could not be traced has ``"graph": "modules"``: its
nodes are its modules (op ``"module"``; an analog layer is one node, its
own submodules are not listed) and edges go from parent to child.

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

from torch import fx, nn

from fxanalog.model import GRAPH_KEY
from fxanalog.nn.modules import AnalogLayerBase, named_analog_layers
from fxanalog.passes.context import META_DTYPE, META_LAYER, META_MATCH, META_SHAPE, META_TILE_MAPS
from fxanalog.passes.shapes import annotate
from fxanalog.summary import summary_records, summary_report

__all__ = ["dump", "dump_data", "StageDumper"]

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


def _tile_label(node: dict, layer: Optional[dict]) -> str:
    head = f"<B>{_html(node['name'])}</B><BR/>{_html(layer['kind'] if layer else node['target'])}"
    t = layer["tiles"] if layer else None
    if t is None:
        return f"<{head}>"
    G, n_out, n_in = t["grid"]
    head += f"<BR/>{'x'.join(map(str, layer['shape']))}"
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


def _dot(data: dict) -> str:
    layers = {layer["name"]: layer for layer in data["layers"]}
    lines = [f"digraph {_q(data['model'])} {{", "  rankdir=TB;", '  node [shape=box, fontname="Helvetica"];']
    for node in data["nodes"]:
        shape = f"\n{'x'.join(map(str, node['shape']))}" if node["shape"] and isinstance(node["shape"][0], int) else ""
        if node["analog"]:
            subs = [v for k, v in layers.items() if k == node["layer"] or k.startswith(f"{node['layer']}.")]
            label = _tile_label(node, subs[0] if len(subs) == 1 else None)
            if len(subs) > 1:
                label = "<" + _html(node["name"]) + "<BR/>" + "<BR/>".join(
                    f"{_html(s['name'])}: {s['tiles']['grid'][1]}x{s['tiles']['grid'][2]} tiles" for s in subs
                    if s["tiles"]) + ">"
            lines.append(f"  {_q(node['name'])} [label={label}, shape=plaintext, style=filled, "
                         f'fillcolor="#ffd27f"];')
        else:
            label = _q(f"{node['name']}\n{node['op']} {node['target']}" + shape)
            lines.append(f"  {_q(node['name'])} [label={label}];")
    for e in data["edges"]:
        lines.append(f"  {_q(e['src'])} -> {_q(e['dst'])};")
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
