"""The typed results of a compile: tile maps and layer records.

``TileMap``: the tile array of one analog tile layer (groups x output pieces
x input pieces, the piece sizes, the physical tile size); its ``to_dict()``
is the ``"tiles"`` entry of the JSON dump.

``LayerRecord``: one per analog tile layer and per weighted layer left
digital, with how it was converted or why it stayed digital::

    LayerRecord(name="fc1", kind="Linear", converted_by="module", source="fc1",
                shape=(256, 784), tile_map=TileMap(...), rpu_config=cfg)
    LayerRecord(name="lstm", kind="LSTM", converted_by="digital", source="lstm",
                shape=(48, 6), digital_reason="recurrent layer ...")

``converted_by`` is one of ``CONVERTED_BY``: ``"module"``, ``"functional"``,
``"conversion_map"``, ``"fallback-swap"`` or ``"digital"`` (then
``digital_reason`` says why: a layer is never digital without a reason).
``to_dict()`` is the layer entry of the JSON dump (``fxanalog.dump``), where
``converted_by`` reads ``"digital: <reason>"`` for a digital layer;
``LayerRecord.from_dict`` reads it back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, Optional

from fxanalog.config import InferenceRPUConfig, config_from_dict, config_to_dict
from fxanalog.geometry import split_sizes

from .weight_range import weight_range_of_layer

__all__ = ["TileMap", "TileMapEntry", "LayerRecord", "CONVERTED_BY", "config_diff", "weight_dims", "covered"]

CONVERTED_BY = ("module", "functional", "conversion_map", "fallback-swap", "digital")


@dataclass(frozen=True)
class TileMap:
    """The tile array of one layer of ``groups`` x (n_out x n_in) weights.

    ``grid`` is (groups, output pieces, input pieces); ``in_sizes`` and
    ``out_sizes`` the pieces of one group's inputs and outputs; ``tile_size``
    the physical tile (rows = inputs, columns = outputs)."""

    grid: tuple
    in_sizes: tuple
    out_sizes: tuple
    tile_size: tuple

    @property
    def count(self) -> int:
        return self.grid[0] * self.grid[1] * self.grid[2]

    @property
    def utilization(self) -> float:
        """Used cross-points over available ones."""
        rows, cols = self.tile_size
        return self.grid[0] * sum(self.out_sizes) * sum(self.in_sizes) / (self.count * rows * cols)

    @classmethod
    def plan(cls, groups: int, n_out: int, n_in: int, rpu_config, mapped: bool,
             in_sizes=None, out_sizes=None) -> "TileMap":
        """The tile array of a layer from its config: pieces of at most
        ``mapping.max_input_size`` x ``max_output_size`` when mapped
        (aihwkit's balanced split; the layer's own size when a limit is 0 or
        when not mapped, one tile per layer as the seed's
        ``convert_to_analog``), or the given piece sizes."""
        m = rpu_config.mapping
        if in_sizes is None:
            in_sizes = split_sizes(n_in, m.max_input_size if mapped else 0)
            out_sizes = split_sizes(n_out, m.max_output_size if mapped else 0)
        rows = m.max_input_size if mapped and m.max_input_size else max(in_sizes)
        cols = m.max_output_size if mapped and m.max_output_size else max(out_sizes)
        return cls((int(groups), len(out_sizes), len(in_sizes)), tuple(int(s) for s in in_sizes),
                   tuple(int(s) for s in out_sizes), (int(rows), int(cols)))

    @classmethod
    def of_layer(cls, layer) -> "TileMap":
        """The tile array of a built analog tile layer."""
        N, K = layer.tile_shape
        return cls.plan(layer.groups, N, K, layer.rpu_config, layer.mapped, layer.in_sizes, layer.out_sizes)

    def to_dict(self) -> dict:
        """The ``"tiles"`` entry of the JSON dump."""
        return {"count": self.count, "grid": list(self.grid), "in_sizes": list(self.in_sizes),
                "out_sizes": list(self.out_sizes), "tile_size": list(self.tile_size),
                "utilization": self.utilization}

    @classmethod
    def from_dict(cls, data: dict) -> "TileMap":
        return cls(tuple(data["grid"]), tuple(data["in_sizes"]), tuple(data["out_sizes"]), tuple(data["tile_size"]))


class TileMapEntry(NamedTuple):
    """One tile layer a match will make: ``sub`` is its path inside the
    analog module ("" for the module itself, "in_proj" in an attention),
    ``shape`` its weight as stored (out, in/groups, *kernel)."""

    sub: str
    shape: tuple
    tile_map: TileMap


@dataclass(frozen=True)
class LayerRecord:
    """How one weighted layer was converted, or why it stayed digital."""

    name: str  # the tile layer's name in the analog model ("attn.in_proj")
    kind: str  # "Linear", "Conv2d", "MultiheadAttention.in_proj", "F.linear", "matmul", "addmm", "LSTM", ...
    converted_by: str  # one of CONVERTED_BY
    source: str  # the module path or weight parameter path in the original model
    shape: Optional[tuple] = None  # the weight as stored
    tile_map: Optional[TileMap] = None  # None: digital, or an analog module of unknown tiles
    rpu_config: Any = None  # the layer's config (None when digital)
    digital_reason: Optional[str] = None  # set exactly when converted_by == "digital"
    programming_report: Optional[dict] = None  # after realistic writing (summaries and dumps)
    # max|W| in tile units over the full-scale tile weight (passes/weight_range.py); None: not checked
    weight_range: Optional[float] = None

    def __post_init__(self):
        if self.converted_by not in CONVERTED_BY:
            raise ValueError(f"LayerRecord.converted_by = {self.converted_by!r}: expected one of {CONVERTED_BY}")
        if (self.converted_by == "digital") != (self.digital_reason is not None):
            raise ValueError("LayerRecord: a digital layer has a digital_reason, an analog one has none")
        if self.shape is not None:
            object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    @classmethod
    def digital(cls, name: str, kind: str, reason: str, source: str, shape=None) -> "LayerRecord":
        return cls(name, kind, "digital", source, shape, digital_reason=reason)

    @property
    def analog(self) -> bool:
        return self.converted_by != "digital"

    @property
    def converted_by_text(self) -> str:
        """``converted_by`` as summaries and dumps show it: ``"digital: <reason>"``
        for a digital layer."""
        return self.converted_by if self.analog else f"digital: {self.digital_reason}"

    @property
    def config_diff(self) -> Optional[list]:
        """The config's fields that differ from its class's defaults (None
        without a config)."""
        return None if self.rpu_config is None else config_diff(self.rpu_config)

    def with_layer(self, layer) -> "LayerRecord":
        """This record with the live state of its built tile layer: its tile
        map, config and programming report."""
        report = layer.tile.programming_report
        return replace(self, tile_map=TileMap.of_layer(layer), rpu_config=layer.rpu_config,
                       programming_report=None if report is None else _plain(report),
                       weight_range=weight_range_of_layer(layer))

    def to_dict(self) -> dict:
        """The layer entry of the JSON dump (keys in this order)."""
        return {
            "name": self.name, "kind": self.kind, "converted_by": self.converted_by_text, "source": self.source,
            "shape": None if self.shape is None else list(self.shape),
            "tiles": None if self.tile_map is None else self.tile_map.to_dict(),
            "rpu_config": None if self.rpu_config is None else config_to_dict(self.rpu_config),
            "config_diff": self.config_diff,
            "programming_report": None if self.programming_report is None else _plain(self.programming_report),
            "weight_range": self.weight_range,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "LayerRecord":
        """Inverse of ``to_dict`` (``config_diff`` is derived, not read)."""
        how, reason = data["converted_by"], None
        if how.startswith("digital: "):
            how, reason = "digital", how[len("digital: "):]
        tiles = data.get("tiles")
        cfg = data.get("rpu_config")
        return cls(data["name"], data["kind"], how, data["source"], data.get("shape"),
                   None if tiles is None else TileMap.from_dict(tiles),
                   None if cfg is None else config_from_dict(cfg), reason, data.get("programming_report"),
                   data.get("weight_range"))


def covered(sources, path: str) -> bool:
    """A record whose source is ``path`` or a module above it (a layer made
    from the weight, or a layer holding it) exists: ``sources`` is the set of
    the records' sources."""
    while path not in sources:
        if "." not in path:
            return False
        path = path.rpartition(".")[0]
    return True


def _plain(value: Any) -> Any:
    """Plain Python values (tensors and numpy scalars as numbers)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


_DEFAULTS: dict = {}


def config_diff(rpu_config) -> list:
    """The fields of a config that differ from its class's defaults, as
    ``"forward.out_noise=0.0"`` strings (class change shown first)."""
    out = []
    if type(rpu_config) is not InferenceRPUConfig:
        out.append(type(rpu_config).__name__)
    cls = type(rpu_config)
    if cls not in _DEFAULTS:
        try:
            _DEFAULTS[cls] = _flatten(config_to_dict(cls()))
        except TypeError:
            _DEFAULTS[cls] = {}
    default = _DEFAULTS[cls]
    for key, value in _flatten(config_to_dict(rpu_config)).items():
        if key in default and default[key] != value:
            out.append(f"{key}={value!r}")
    return out


def weight_dims(shape, groups: int = 1) -> tuple:
    """(G, N, K) of an (out, in/groups, *kernel) weight."""
    return groups, shape[0] // groups, math.prod(shape[1:])
