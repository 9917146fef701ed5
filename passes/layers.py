"""What the passes share: the compile options, the record of one layer, the
rules that say which modules are weight matmuls, and the tile-map arithmetic.

A *layer record* is a plain dict, one per analog tile layer or digital
weighted layer, in graph order::

    {"name": "fc1", "kind": "Linear", "converted_by": "module",
     "source": "fc1", "shape": [256, 784], "plan": {...tile map...} | None}

``converted_by`` is ``"module"``, ``"functional"``, ``"conversion_map"``,
``"fallback-swap"`` or ``"digital: <reason>"``: a layer is never digital
without saying why.
"""

from __future__ import annotations

import fnmatch
import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from torch import nn

from fxanalog.config import check_rpu_config, config_to_dict
from fxanalog.geometry import split_sizes

__all__ = ["CompileOptions", "tile_map", "config_diff", "builtin_class_for", "DIGITAL_REASONS", "record"]


# Weighted modules that stay digital in this version, with the reason shown.
DIGITAL_REASONS: tuple[tuple[type, str], ...] = (
    (nn.RNNBase, "recurrent layer (LSTM/GRU/RNN) is not converted in this version"),
    (nn.RNNCellBase, "recurrent cell is not converted in this version"),
    (nn.modules.conv._ConvTransposeNd, "transposed convolution is not converted in this version"),
    (nn.Bilinear, "bilinear layer is not converted in this version"),
    (nn.Embedding, "embedding lookup (not a matmul)"),
    (nn.EmbeddingBag, "embedding lookup (not a matmul)"),
)


def digital_reason(module: nn.Module) -> Optional[str]:
    for cls, reason in DIGITAL_REASONS:
        if isinstance(module, cls):
            return reason
    return None


def _plain_linear(module: nn.Module) -> bool:
    """An ``nn.Linear`` (or subclass) whose forward is Linear's own: a leaf.
    A subclass that overrides ``forward`` is traced through, so the
    functional matmuls inside it are matched instead."""
    return isinstance(module, nn.Linear) and type(module).forward is nn.Linear.forward


def _plain_conv(module: nn.Module) -> bool:
    from fxanalog.nn.modules import conv_class_for

    cls = conv_class_for(module)
    return cls is not None and type(module).forward is cls._digital.forward


def builtin_class_for(module: nn.Module) -> Optional[type]:
    """The built-in analog replacement of a module, or None."""
    from fxanalog.nn.attention import AnalogMultiheadAttention
    from fxanalog.nn.modules import AnalogLinear, conv_class_for

    if _plain_linear(module):
        return AnalogLinear
    if _plain_conv(module):
        return conv_class_for(module)
    if isinstance(module, nn.MultiheadAttention):
        return AnalogMultiheadAttention
    return None


def is_builtin(cls: type) -> bool:
    """True for fxanalog's own analog classes (built with ``mapped`` and ``share``)."""
    from fxanalog.nn.attention import AnalogMultiheadAttention
    from fxanalog.nn.modules import AnalogConv1d, AnalogConv2d, AnalogConv3d, AnalogLinear

    return cls in (AnalogLinear, AnalogConv1d, AnalogConv2d, AnalogConv3d, AnalogMultiheadAttention)


def is_analog(module: nn.Module) -> bool:
    """An fxanalog analog layer (left as it is by the compiler)."""
    from fxanalog.nn.attention import AnalogMultiheadAttention
    from fxanalog.nn.modules import AnalogLayerBase

    return isinstance(module, (AnalogLayerBase, AnalogMultiheadAttention))


@dataclass
class CompileOptions:
    """The validated arguments of one compile, and what the passes collect."""

    rpu_config: Any
    mapped: bool = True
    conversion_map: dict = field(default_factory=dict)
    exclude: tuple = ()
    layer_config: Optional[Callable] = None
    dry_run: bool = False
    records: list = field(default_factory=list)
    used_excludes: set = field(default_factory=set)
    all_names: list = field(default_factory=list)

    @classmethod
    def build(cls, rpu_config, *, mapped=True, conversion_map=None, exclude=(), layer_config=None,
              dry_run=False) -> "CompileOptions":
        from fxanalog.config import InferenceRPUConfig

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
        return cls(rpu_config, bool(mapped), dict(conversion_map), exclude, layer_config, dry_run)

    # -- rules ---------------------------------------------------------------

    def mapped_class(self, module: nn.Module) -> Optional[type]:
        """The conversion_map replacement of a module (its class or a base)."""
        for klass in type(module).__mro__:
            if klass in self.conversion_map:
                return self.conversion_map[klass]
        return None

    def is_matmul_leaf(self, module: nn.Module) -> bool:
        """Modules the tracer keeps whole: the ones converted as modules, the
        weighted ones that stay digital, and layers that are analog already."""
        return (self.mapped_class(module) is not None or builtin_class_for(module) is not None
                or digital_reason(module) is not None or is_analog(module))

    def excluded_by(self, *names: str) -> Optional[str]:
        self.all_names.extend(n for n in names if n)
        for pat in self.exclude:
            for name in names:
                if name and (name == pat or fnmatch.fnmatchcase(name, pat) or name.startswith(pat + ".")):
                    self.used_excludes.add(pat)
                    return pat
        return None

    def config_for(self, name: str, module: Optional[nn.Module]):
        if self.layer_config is None:
            return self.rpu_config
        cfg = self.layer_config(name, module, self.rpu_config)
        check_rpu_config(cfg, f"layer_config({name!r}) result")
        return cfg

    def check_excludes(self) -> None:
        unused = [p for p in self.exclude if p not in self.used_excludes]
        if unused:
            names = ", ".join(dict.fromkeys(self.all_names)) or "(none)"
            raise ValueError(f"exclude: {unused[0]!r} matches no layer; the layers are: {names}")


def call_from_digital(cls: type, module: nn.Module, rpu_config, mapped: bool) -> nn.Module:
    """``cls.from_digital(module, rpu_config)``, passing ``mapped`` and
    ``share=True`` when the classmethod accepts them."""
    try:
        params = inspect.signature(cls.from_digital).parameters
    except (TypeError, ValueError):
        params = {}
    kwargs = {}
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    if "mapped" in params or var_kw:
        kwargs["mapped"] = mapped
    if "share" in params or var_kw:
        kwargs["share"] = True
    return cls.from_digital(module, rpu_config, **kwargs)


def tile_map(groups: int, n_out: int, n_in: int, rpu_config, mapped: bool,
             in_sizes=None, out_sizes=None) -> dict:
    """The tile array of a layer of ``groups`` x (n_out x n_in) weights.

    ``tile_size`` is the physical tile (rows = inputs x columns = outputs):
    ``max_input_size x max_output_size`` when mapped (the layer's own size
    when a limit is 0 or when not mapped, one tile per layer as the seed's
    ``convert_to_analog``). ``utilization`` is used cross-points over
    available ones."""
    m = rpu_config.mapping
    if in_sizes is None:
        in_sizes = split_sizes(n_in, m.max_input_size if mapped else 0)
        out_sizes = split_sizes(n_out, m.max_output_size if mapped else 0)
    rows = (m.max_input_size if mapped and m.max_input_size else max(in_sizes))
    cols = (m.max_output_size if mapped and m.max_output_size else max(out_sizes))
    count = groups * len(in_sizes) * len(out_sizes)
    return {
        "grid": [groups, len(out_sizes), len(in_sizes)],
        "count": count,
        "in_sizes": list(in_sizes),
        "out_sizes": list(out_sizes),
        "tile_size": [rows, cols],
        "utilization": groups * n_out * n_in / (count * rows * cols),
    }


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_diff(rpu_config) -> list[str]:
    """The fields of a config that differ from its class's defaults, as
    ``"forward.out_noise=0.0"`` strings (class change shown first)."""
    from fxanalog.config import InferenceRPUConfig

    out = []
    if type(rpu_config) is not InferenceRPUConfig:
        out.append(type(rpu_config).__name__)
    try:
        default = _flatten(config_to_dict(type(rpu_config)()))
    except TypeError:
        default = {}
    for key, value in _flatten(config_to_dict(rpu_config)).items():
        if key in default and default[key] != value:
            out.append(f"{key}={value!r}")
    return out


def record(name: str, kind: str, converted_by: str, source: str, shape, plan=None, rpu_config=None) -> dict:
    """One layer record (see the module docstring); ``config_diff`` when a
    config is given (dry runs: the built layer holds its config otherwise)."""
    out = {"name": name, "kind": kind, "converted_by": converted_by, "source": source,
           "shape": None if shape is None else [int(s) for s in shape], "plan": plan}
    if rpu_config is not None:
        out["config_diff"] = config_diff(rpu_config)
    return out


def weight_dims(shape, groups: int = 1) -> tuple[int, int, int]:
    """(G, N, K) of an (out, in/groups, *kernel) weight."""
    return groups, shape[0] // groups, math.prod(shape[1:])
