"""``fxanalog.analog_summary``: the table of a model's layers.

One row per analog tile layer and per weighted layer left digital (with its
reason): name, kind, weight shape, how it was converted, number of tiles,
tile grid and size, utilization (used cross-points over available ones),
the fraction of the tiles' weight range its weights use (``w range``:
max|W| in tile units; below 0.5 marked ``!`` and explained in a note under
the table, and a ``SmallWeightRangeWarning`` per such layer: docs/compiler.md,
"Small weights on the tiles"), config differences from the defaults; with
``example_inputs``, the input and output shapes and the
multiply-accumulates of each analog layer. Totals for the model.
"""

from __future__ import annotations

import torch
from torch import nn

from fxanalog.model import layer_records
from fxanalog.nn.modules import named_analog_layers
from fxanalog.passes.records import LayerRecord, weight_dims
from fxanalog.passes.weight_range import SMALL_FRACTION, is_small, warn_small_weights

__all__ = ["Report", "analog_summary", "summary_records", "summary_report"]

_COLUMNS = [("name", "name"), ("kind", "kind"), ("shape", "shape"), ("converted_by", "converted by"),
            ("tiles", "tiles"), ("tile_grid", "grid GxOxI"), ("tile_size", "tile"),
            ("utilization", "util"), ("weight_range", "w range"),
            ("config_diff", "config (differences from default)")]


def _fmt(key: str, value) -> str:
    if value is None:
        return "-"
    if key == "shape" or key in ("in_shape", "out_shape"):
        return "x".join(str(v) for v in value)
    if key == "tile_grid":
        return "x".join(str(v) for v in value)
    if key == "tile_size":
        return f"{value[0]}x{value[1]}"
    if key == "utilization":
        return f"{value:.2f}"
    if key == "weight_range":
        return f"{value:.2g}" + (" !" if is_small(value) else "")
    if key == "config_diff":
        return ", ".join(value) if value else "default"
    if key == "macs":
        return f"{value:,}"
    if key == "programming_report":
        return f"{value.get('iterations', '?')} it, err {value.get('error', float('nan')):.3g}"
    return str(value)


class Report:
    """A table of layers: ``str()`` is the table, ``.rows`` a list of dicts,
    ``.totals`` a dict."""

    def __init__(self, rows: list[dict], totals: dict, title: str = ""):
        self.rows, self.totals, self.title = rows, totals, title

    @classmethod
    def from_records(cls, records: list, title: str = "") -> "Report":
        """The table of layer records (``LayerRecord``)."""
        rows = [_row(r) for r in records]
        return cls(rows, _totals(rows), title)

    def __str__(self) -> str:
        cols = list(_COLUMNS)
        for extra, head in (("in_shape", "input"), ("out_shape", "output"), ("macs", "MACs"),
                            ("programming_report", "programming")):
            if any(r.get(extra) is not None for r in self.rows):
                cols.append((extra, head))
        table = [[head for _, head in cols]] + [[_fmt(k, r.get(k)) for k, _ in cols] for r in self.rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
        lines = [self.title] if self.title else []
        for j, row in enumerate(table):
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
            if j == 0:
                lines.append("  ".join("-" * w for w in widths))
        t = self.totals
        lines.append(
            f"total: {t['analog_layers']} analog layers on {t['tiles']} tiles "
            f"({t['analog_weights']:,} weights, utilization {t['utilization']:.2f}), "
            f"{t['digital_layers']} digital layers"
            + (f", {t['macs']:,} analog MACs per forward" if t.get("macs") is not None else "")
        )
        small = [r["name"] for r in self.rows if r.get("analog") and is_small(r.get("weight_range"))]
        if small:
            lines.append(
                f"note: {len(small)} layer{'s' if len(small) > 1 else ''} (w range marked !) "
                f"{'use' if len(small) > 1 else 'uses'} less than "
                f"{SMALL_FRACTION:.0%} of the tile's weight range (full scale |w| = 1 in tile units, the unit of "
                "the output noise and ADC range), which multiplies their periphery error by 1 / (w range); "
                "set rpu_config.mapping.weight_scaling_omega = 1.0")
        return "\n".join(lines)

    __repr__ = __str__


def _row(rec: LayerRecord) -> dict:
    t = rec.tile_map
    return {
        "name": rec.name, "kind": rec.kind, "shape": None if rec.shape is None else list(rec.shape),
        "converted_by": rec.converted_by_text, "source": rec.source, "analog": rec.analog,
        "tiles": t.count if t else (None if rec.analog else 0),
        "tile_grid": list(t.grid) if t else None,
        "tile_size": list(t.tile_size) if t else None,
        "in_sizes": list(t.in_sizes) if t else None,
        "out_sizes": list(t.out_sizes) if t else None,
        "utilization": t.utilization if t else None,
        "config_diff": rec.config_diff,
        "in_shape": None, "out_shape": None, "macs": None,
        "programming_report": rec.programming_report,
        "weight_range": rec.weight_range,
    }


def _totals(rows: list[dict]) -> dict:
    analog = [r for r in rows if r["analog"]]
    used = avail = 0
    weights = 0
    for r in analog:
        if r["tile_grid"] is None:
            continue
        G, N, K = weight_dims(r["shape"], r["tile_grid"][0])
        used += G * N * K
        avail += r["tiles"] * r["tile_size"][0] * r["tile_size"][1]
        weights += G * N * K
    macs = [r["macs"] for r in analog if r["macs"] is not None]
    return {
        "analog_layers": len(analog),
        "digital_layers": len(rows) - len(analog),
        "tiles": sum(r["tiles"] or 0 for r in analog),
        "analog_weights": weights,
        "utilization": used / avail if avail else 0.0,
        "macs": sum(macs) if macs else None,
    }


def analog_summary(model: nn.Module, example_inputs=None) -> Report:
    """The table of a model's analog and digital layers (see the module
    docstring). Works on any model: one compiled by fxanalog (with its
    layer records) or one built from fxanalog's analog layers. Warns
    ``SmallWeightRangeWarning`` once for each layer whose weights use less
    than half of its tiles' weight range."""
    return summary_report(model, example_inputs, warn=True, stacklevel=3)


def summary_report(model: nn.Module, example_inputs=None, warn: bool = False, stacklevel: int = 2) -> Report:
    """``analog_summary``; ``warn=False`` for the dumps, which show the
    column without warning again."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"analog_summary: expected an nn.Module, got {type(model).__name__}")
    records = summary_records(model)
    if warn:
        warn_small_weights(records, stacklevel=stacklevel)
    layers = dict(named_analog_layers(model))
    rows = [_row(r) for r in records]
    if example_inputs is not None:
        _measure(model, layers, rows, example_inputs)
    return Report(rows, _totals(rows), f"fxanalog.analog_summary: {type(model).__name__}")


def summary_records(model: nn.Module) -> list:
    """The model's layer records with the live state of their layers (tile
    map, config, programming report), and a record for each analog layer
    the compile did not make (a model built from fxanalog's layers)."""
    layers = dict(named_analog_layers(model))
    records = layer_records(model)
    known = {r.name for r in records}
    for name, layer in layers.items():
        if name not in known:
            records.append(LayerRecord(name, type(layer).__name__, "module", name, layer.weight.shape))
    return [r.with_layer(layers[r.name]) if r.name in layers else r for r in records]


def _measure(model: nn.Module, layers: dict, rows: list[dict], example_inputs) -> None:
    """Input/output shapes and MACs of each analog layer, from one forward
    pass in eval mode without gradients (modes restored after)."""
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    seen: dict[str, tuple] = {}
    hooks = []
    for name, layer in layers.items():
        def hook(mod, inp, out, name=name):
            seen[name] = (list(inp[0].shape), list(out.shape), out.numel() * mod.tile_shape[1])
        hooks.append(layer.register_forward_hook(hook))
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            model(*example_inputs)
    finally:
        for h in hooks:
            h.remove()
        for m, mode in modes:
            m.training = mode
    for r in rows:
        if r["name"] in seen:
            r["in_shape"], r["out_shape"], r["macs"] = seen[r["name"]]
