"""The torch.compile backend: ``torch.compile(model, backend="fxanalog")``.

Registered through the ``torch_dynamo_backends`` entry point, so it works
after ``pip install`` without importing fxanalog first. Options::

    torch.compile(model, backend="fxanalog",
                  options={"rpu_config": cfg, "mapped": True, "exclude": [...],
                           "layer_config": fn, "inner": "inductor" | "eager"})
    torch.compile(model, backend=fxanalog.backend(cfg, inner="eager"))

How it works: dynamo hands over each captured graph with the module's
parameters lifted to graph inputs (``inline_inbuilt_nn_modules``) and the
example inputs, which for those placeholders are the ``nn.Parameter``
objects themselves. The match pass (``fxanalog.passes.match``) runs with
"a placeholder whose example input is a Parameter" as its notion of a
weight, so ``F.linear``, ``F.conv*d``, ``x @ W (+ b)``, ``torch.addmm`` and
``F.multi_head_attention_forward`` on parameters are found; each becomes an
analog layer built around the model's own Parameter (no copy: gradients
reach the model's parameters, and weight updates are seen). The analog
layers are kept in a cache keyed by the Parameter (weakly referenced), so a
layer's analog state survives recompiles and is shared across graph breaks.
The rest of the graph goes to inductor (``inner="inductor"``, the default)
or runs eagerly (``inner="eager"``).
"""

from __future__ import annotations

import re
import weakref
from typing import Callable, Optional

import torch
from torch import fx, nn
from torch.utils.weak import WeakIdKeyDictionary

from fxanalog.passes.layers import CompileOptions
from fxanalog.passes.map_tiles import map_tiles
from fxanalog.passes.match import Match, match
from fxanalog.passes.rewrite import build_layer, rewrite

__all__ = ["AnalogBackend", "backend", "fxanalog_backend"]

_INNER = ("inductor", "eager")


def _param_name(node: fx.Node) -> str:
    """``fc1.weight`` from dynamo's source ``L['self']._modules['fc1']._parameters['weight']``."""
    arg = node.meta.get("grapharg")
    source = getattr(arg, "source", None)
    name = getattr(source, "name", None)
    name = name() if callable(name) else name
    if isinstance(name, str):
        parts = re.findall(r"\['([^']+)'\]|\.(\w+)", name)
        keys = [a or b for a, b in parts if (a or b) not in ("_modules", "_parameters")]
        if len(keys) > 1:
            return ".".join(keys[1:])
    return node.name


def _display(source: str) -> str:
    """A layer's name from its weight's path: the owner module for ``weight``."""
    owner, _, pname = source.rpartition(".")
    return owner if owner and pname in ("weight", "in_proj_weight") else source


class AnalogBackend:
    """A torch.compile backend that puts the weight matmuls on analog tiles.

    Attributes:
        options: the compile options (config, mapping, exclusions).
        inner: "inductor", "eager", or a backend callable for the rest.
        graphs: how many graphs this backend compiled.
    """

    def __init__(self, rpu_config=None, *, mapped: bool = True, exclude=(), layer_config: Optional[Callable] = None,
                 inner="inductor", model: Optional[nn.Module] = None):
        self._names: WeakIdKeyDictionary = WeakIdKeyDictionary()
        if model is not None:
            for name, p in model.named_parameters(remove_duplicate=False):
                self._names.setdefault(p, name)
        self.options = CompileOptions.build(rpu_config, mapped=mapped, exclude=exclude, layer_config=layer_config)
        if not (inner in _INNER or callable(inner)):
            raise ValueError(f"fxanalog backend: inner = {inner!r}: expected 'inductor', 'eager' or a backend callable")
        self.inner = inner
        self.graphs = 0
        self._cache: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self._records: dict[str, dict] = {}
        self._keys: set[int] = set()
        weakref.finalize(self, _forget, self._keys)

    # -- state ---------------------------------------------------------------

    def analog_layers(self) -> list[tuple[str, nn.Module]]:
        """(name, analog module) of every live layer this backend built."""
        out = []
        for per_param in list(self._cache.values()):
            out += list(per_param.values())
        return out

    def analog_tiles(self):
        """(name, tile layer) of every live analog tile layer (MHA counts two)."""
        from fxanalog.model import analog_tiles

        for name, layer in self.analog_layers():
            for sub, tile in analog_tiles(layer):
                yield (f"{name}.{sub}" if sub else name), tile

    def records(self) -> list[dict]:
        """The layer records of everything this backend converted or left digital."""
        return list(self._records.values())

    def reset(self) -> None:
        """Forget every cached analog layer (called by ``torch._dynamo.reset``)."""
        _forget(self._keys)
        self._cache = WeakIdKeyDictionary()
        self._records = {}

    # -- compile ---------------------------------------------------------------

    def _layer(self, m: Match, mapped: bool) -> nn.Module:
        key = (m.kind, m.transposed, id(m.bias), repr(sorted((k, repr(v)) for k, v in m.params.items()
                                                              if not isinstance(v, torch.Tensor))),
               mapped, repr(m.rpu_config))
        per_param = self._cache.setdefault(m.weight, {})
        hit = per_param.get(key)
        layer = hit[1] if hit is not None else None
        if layer is None:
            layer = build_layer(m, mapped)
            per_param[key] = (_display(m.source), layer)
        return layer

    def __call__(self, gm: fx.GraphModule, example_inputs):
        self.graphs += 1
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        params = {}
        for node, value in zip(placeholders, example_inputs):
            if isinstance(value, nn.Parameter):
                params[node] = (value, self._names.get(value) or _param_name(node))

        def param_of(node):
            return params.get(node) if isinstance(node, fx.Node) else None

        opts = CompileOptions.build(self.options.rpu_config, mapped=self.options.mapped,
                                    exclude=self.options.exclude, layer_config=self.options.layer_config)
        matches = match(gm, opts, param_of)
        display = {}
        for m in matches:
            base = "analog_" + re.sub(r"\W", "_", m.source)
            m.install, m.name, k = "add", base, 1
            while hasattr(gm, m.name) or m.name in display:
                m.name, k = f"{base}_{k}", k + 1
            display[m.name] = _display(m.source)
        map_tiles(gm, matches, opts.mapped)
        records = rewrite(gm, matches, opts.mapped, build=self._layer,
                          emit=lambda *a: self._emit(params, *a))
        for r in records:
            head, dot, sub = r["name"].partition(".")
            r["name"] = display.get(head, head) + dot + sub
            self._records[r["name"]] = r
        for r in opts.records:
            r["name"] = _display(r["source"])
            self._records[r["name"]] = r
        return self._compile_rest(gm, example_inputs)

    def _emit(self, params: dict, graph: fx.Graph, m: Match, layer: nn.Module, args, kwargs, name: str):
        """A call of the layer with its weights taken from the graph's inputs
        (the placeholders of the model's Parameters), so that inductor and
        autograd see them as inputs: ``_analog_call(key, names, n, *args, *weights)``."""
        placeholder_of = {id(p): node for node, (p, _) in params.items()}
        names, nodes = [], []
        for pname, p in layer.named_parameters(remove_duplicate=False):
            if id(p) in placeholder_of:
                names.append(pname)
                nodes.append(placeholder_of[id(p)])
        key = id(layer)
        _LAYERS[key] = layer
        self._keys.add(key)
        return graph.create_node("call_function", _analog_call, (key, tuple(names), len(args), *args, *nodes),
                                 dict(kwargs), name=name)

    def _compile_rest(self, gm: fx.GraphModule, example_inputs):
        if self.inner == "eager":
            return gm.forward
        if self.inner == "inductor":
            from torch._inductor.compile_fx import compile_fx

            return compile_fx(gm, example_inputs)
        return self.inner(gm, example_inputs)


# Analog layers called from compiled graphs, by key (id of the layer). Held
# by their backend's cache too; dropped when the backend is reset or dies.
_LAYERS: dict[int, nn.Module] = {}


def _forget(keys: set) -> None:
    for key in keys:
        _LAYERS.pop(key, None)
    keys.clear()


def _analog_call(key: int, names: tuple, n_inputs: int, *args, **kwargs):
    """Run analog layer ``key`` on ``args[:n_inputs]`` with its parameters
    ``names`` bound to ``args[n_inputs:]`` (the graph's weight inputs)."""
    layer = _LAYERS[key]
    inputs, weights = args[:n_inputs], args[n_inputs:]
    return torch.func.functional_call(layer, dict(zip(names, weights)), inputs, kwargs)


def backend(rpu_config=None, *, mapped: bool = True, exclude=(), layer_config: Optional[Callable] = None,
            inner="inductor", model: Optional[nn.Module] = None) -> AnalogBackend:
    """A backend callable for ``torch.compile(model, backend=...)``.

    ``model``, when given, names the layers by their full parameter paths
    (dynamo only knows paths relative to the frame it compiles, which after
    a graph break may be a submodule)."""
    return AnalogBackend(rpu_config, mapped=mapped, exclude=exclude, layer_config=layer_config, inner=inner,
                         model=model)


_SHARED: dict[str, AnalogBackend] = {}
_OPTION_NAMES = ("rpu_config", "mapped", "exclude", "layer_config", "inner", "model")


def fxanalog_backend(gm: fx.GraphModule, example_inputs, options: Optional[dict] = None, mode=None):
    """The registered backend ``"fxanalog"``: options as ``backend()``'s
    arguments. One backend (and one layer cache) per distinct options."""
    options = dict(options or {})
    unknown = set(options) - set(_OPTION_NAMES)
    if unknown:
        raise ValueError(f"fxanalog backend: unknown option {sorted(unknown)[0]!r}; expected {', '.join(_OPTION_NAMES)}")
    if mode not in (None, "default"):
        raise ValueError(f"fxanalog backend: mode = {mode!r}: the analog backend has no modes; use options")
    # Modules and functions by identity; configs by value (equal configs share a cache).
    key = repr(sorted((k, id(v) if isinstance(v, nn.Module) or callable(v) else repr(v))
                      for k, v in options.items()))
    if key not in _SHARED:
        _SHARED[key] = backend(**options)
    return _SHARED[key](gm, example_inputs)


def _reset_shared() -> None:
    for be in _SHARED.values():
        be.reset()
    _SHARED.clear()


fxanalog_backend.reset = _reset_shared  # torch._dynamo.reset() calls it


def shared_backends() -> list[AnalogBackend]:
    """The backends created for ``backend="fxanalog"`` (one per options)."""
    return list(_SHARED.values())


# ``fxanalog.backend`` is this module's ``backend`` function (the public
# name), which shadows the module as an attribute of the package: the
# module's other names are reachable from the function too, so that
# ``import fxanalog.backend as b; b.fxanalog_backend`` works either way.
for _name in ("AnalogBackend", "fxanalog_backend", "shared_backends"):
    setattr(backend, _name, globals()[_name])
