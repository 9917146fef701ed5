"""What the passes share: the compile options, what the passes collect, and
the names of the ``node.meta`` keys they write.

* ``CompileOptions``: the validated arguments of one compile, frozen.
* ``CompileState``: what the passes collect while they run (the layer
  records, the names met, the ``exclude`` patterns used).
* ``CompileContext``: the two together, with the stage dumper
  (``FXANALOG_DUMP_DIR``) and the rule table of this compile.

``node.meta`` keys written by the passes (the only place they are named)::

    META_SHAPE      "fxanalog_shape"      shapes pass: the node's output shape
    META_DTYPE      "fxanalog_dtype"      shapes pass: its dtype ("float32")
    META_MATCH      "fxanalog_match"      match pass: the Match found on the node
    META_TILE_MAPS  "fxanalog_tile_maps"  map pass: the match's TileMapEntry list
    META_LAYER      "fxanalog_layer"      rewrite pass: on a node calling an
                                          analog layer, the layer's name
    META_USES       "fxanalog_uses"       shapes pass: on a call of an opaque
                                          function, {weight path: [kinds of
                                          matmul it was used in]}
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from torch import nn

from fxanalog.config import InferenceRPUConfig, check_rpu_config

from .records import LayerRecord

__all__ = ["CompileOptions", "CompileState", "CompileContext", "META_SHAPE", "META_DTYPE", "META_MATCH",
           "META_TILE_MAPS", "META_LAYER", "META_USES", "SKIPPED"]

META_SHAPE = "fxanalog_shape"
META_DTYPE = "fxanalog_dtype"
META_MATCH = "fxanalog_match"
META_TILE_MAPS = "fxanalog_tile_maps"
META_LAYER = "fxanalog_layer"
META_USES = "fxanalog_uses"

SKIPPED = "skipped"  # what a pass returns when it had nothing to do: its stage is not dumped


@dataclass(frozen=True)
class CompileOptions:
    """The validated arguments of one compile (``CompileOptions.build``)."""

    rpu_config: Any
    mapped: bool = True
    conversion_map: dict = field(default_factory=dict)
    exclude: tuple = ()
    layer_config: Optional[Callable] = None
    dry_run: bool = False
    realistic_read_write: bool = False
    own_weights: bool = False  # each layer gets its own copy of the weights it writes (see rewrite)

    @classmethod
    def build(cls, rpu_config, *, mapped=True, conversion_map=None, exclude=(), layer_config=None,
              dry_run=False, realistic_read_write=False, own_weights=False) -> "CompileOptions":
        """Check the arguments (``TypeError``/``ValueError`` naming what is
        wrong) and make the options; ``rpu_config=None`` is
        ``InferenceRPUConfig()``."""
        rpu_config = InferenceRPUConfig() if rpu_config is None else rpu_config
        check_rpu_config(rpu_config, "rpu_config")
        if conversion_map is None:
            conversion_map = {}
        if not isinstance(conversion_map, dict):
            raise TypeError(f"conversion_map: expected a dict {{module class: analog class}}, "
                            f"got {type(conversion_map).__name__}")
        for key, value in conversion_map.items():
            if not (isinstance(key, type) and issubclass(key, nn.Module)):
                raise TypeError(f"conversion_map key {key!r}: expected an nn.Module subclass")
            if not (isinstance(value, type) and callable(getattr(value, "from_digital", None))):
                raise TypeError(f"conversion_map[{key.__name__}] = {value!r}: expected a class with a "
                                "from_digital(module, rpu_config) classmethod")
        if isinstance(exclude, str):
            exclude = (exclude,)
        exclude = tuple(exclude or ())
        for pat in exclude:
            if not isinstance(pat, str):
                raise TypeError(f"exclude entry {pat!r}: expected a layer name or pattern (str)")
        if layer_config is not None and not callable(layer_config):
            raise TypeError(f"layer_config: expected a function (name, module, rpu_config) -> rpu_config, "
                            f"got {type(layer_config).__name__}")
        return cls(rpu_config, bool(mapped), dict(conversion_map), exclude, layer_config, bool(dry_run),
                   bool(realistic_read_write), bool(own_weights))

    def exclude_pattern(self, *names: str) -> Optional[str]:
        """The first ``exclude`` pattern that matches one of the names (a
        name, an ``fnmatch`` pattern, or a module path above the name)."""
        for pat in self.exclude:
            for name in names:
                if name and (name == pat or fnmatch.fnmatchcase(name, pat) or name.startswith(pat + ".")):
                    return pat
        return None

    def config_for(self, name: str, module: Optional[nn.Module]):
        """The config of layer ``name``: ``layer_config``'s answer, checked."""
        if self.layer_config is None:
            return self.rpu_config
        cfg = self.layer_config(name, module, self.rpu_config)
        check_rpu_config(cfg, f"layer_config({name!r}) result")
        return cfg


@dataclass
class CompileState:
    """What the passes collect during one compile."""

    records: list = field(default_factory=list)  # LayerRecord, in the order the passes make them
    names_seen: list = field(default_factory=list)  # layer names and weight paths met (for errors)
    used_excludes: set = field(default_factory=set)
    param_notes: dict = field(default_factory=dict)  # weight path -> how the graph uses it (not a matmul)
    # With example inputs: module path -> [(kind, weight path)] of the functional
    # matmuls its own forward ran (``passes/opaque.py``); None without them.
    forward_uses: Optional[dict] = None

    def add_record(self, record: LayerRecord) -> None:
        self.records.append(record)

    def excluded_by(self, options: CompileOptions, *names: str) -> Optional[str]:
        """The ``exclude`` pattern that keeps a layer digital, or None; the
        names are remembered for the error of a pattern that matches nothing."""
        self.names_seen.extend(n for n in names if n)
        pat = options.exclude_pattern(*names)
        if pat is not None:
            self.used_excludes.add(pat)
        return pat

    def check_excludes(self, options: CompileOptions) -> None:
        """``ValueError`` for an ``exclude`` pattern that matched no layer."""
        unused = [p for p in options.exclude if p not in self.used_excludes]
        if unused:
            names = ", ".join(dict.fromkeys(self.names_seen)) or "(none)"
            raise ValueError(f"exclude: {unused[0]!r} matches no layer; the layers are: {names}")


@dataclass
class CompileContext:
    """One compile: options, state, the rule table and the stage dumper.

    ``rules`` is the ``RuleTable`` of this compile (the ``conversion_map``
    first, then the registered rules); ``dumper`` has a
    ``stage(name, module)`` method (``fxanalog.dump.StageDumper``) or is None.
    """

    options: CompileOptions
    rules: Any
    state: CompileState = field(default_factory=CompileState)
    dumper: Any = None

    def dump(self, unit, stage: str) -> None:
        """Write the unit's graph after pass ``stage`` (when dumping)."""
        if self.dumper is not None and unit.strategy.dumps:
            self.dumper.stage(unit.prefix + stage, unit.root)
