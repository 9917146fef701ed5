"""The torch.compile backend: ``torch.compile(model, backend="fxanalog")``.

Registered through the ``torch_dynamo_backends`` entry point
(``fxanalog.dynamo_backend:fxanalog_backend``), so it works after
``pip install`` without importing fxanalog first. Options::

    torch.compile(model, backend="fxanalog",
                  options={"rpu_config": cfg, "mapped": True, "exclude": [...],
                           "layer_config": fn, "inner": "inductor" | "eager"})
    torch.compile(model, backend=fxanalog.backend(cfg, inner="eager"))

How it works: dynamo hands over each captured graph with the module's
parameters lifted to graph inputs (``inline_inbuilt_nn_modules``) and the
example inputs, which for those placeholders are the ``nn.Parameter``
objects themselves. The graph runs through the same passes as
``fxanalog.compile`` (``fxanalog.passes.pipeline.PASSES``) with the
``DynamoGraph`` strategy: a weight is "a placeholder whose example input is
a Parameter", so ``F.linear``, ``F.conv*d``, ``x @ W (+ b)``,
``torch.addmm`` and ``F.multi_head_attention_forward`` on parameters are
found; each becomes an analog layer built around the model's own Parameter
(no copy: gradients reach the model's parameters, and weight updates are
seen), called with the weights as graph inputs. The analog layers are kept
in a cache keyed by the Parameter (weakly referenced), so a layer's analog
state survives recompiles and is shared across graph breaks. The rest of
the graph goes to inductor (``inner="inductor"``, the default), cut at the
analog layer calls so that the layers run with their current state between
the compiled parts (``_split_at_analog_calls``), or runs eagerly
(``inner="eager"``).
"""

from __future__ import annotations

import re
import warnings
import weakref
from dataclasses import replace
from typing import Callable, Optional

import torch
from torch import fx, nn
from torch.utils.weak import WeakIdKeyDictionary

from fxanalog.nn.modules import named_analog_layers
from fxanalog.passes.context import CompileContext, CompileOptions
from fxanalog.passes.pipeline import run
from fxanalog.passes.records import LayerRecord, covered
from fxanalog.passes.rules import Match, RuleTable
from fxanalog.passes.trace import GraphUnit, Strategy

__all__ = ["AnalogBackend", "DynamoGraph", "backend", "fxanalog_backend", "shared_backends"]

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


class DynamoGraph(Strategy):
    """The trace strategy of the backend, for one graph of dynamo's: the
    graph as it is, a weight is a placeholder whose example input is a
    Parameter; layers are named after their weights' owners, built through
    the backend's cache and called with the weights as graph inputs
    (``_analog_call``)."""

    name = "dynamo"

    def __init__(self, backend: "AnalogBackend", gm: fx.GraphModule, example_inputs):
        self.backend, self.gm = backend, gm
        self.params: dict = {}  # placeholder node -> (Parameter, path)
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        for node, value in zip(placeholders, example_inputs):
            if isinstance(value, nn.Parameter):
                self.params[node] = (value, backend._names.get(value) or _param_name(node))

    def param_of(self, node):
        return self.params.get(node) if isinstance(node, fx.Node) else None

    def trace(self, ctx: CompileContext) -> GraphUnit:
        return GraphUnit(self, self.gm, self.gm, self.gm.graph, self.param_of)

    def name_layer(self, unit: GraphUnit, m: Match, taken: set) -> None:
        m.name, m.install = _display(m.source), "add"

    @staticmethod
    def record_name(source: str) -> str:
        """A tile layer of a fused fast path is named after its own weight
        (``layers.0.linear1``, ``layers.0.self_attn.in_proj``)."""
        owner, _, pname = source.rpartition(".")
        if pname == "in_proj_weight":
            return f"{owner}.in_proj" if owner else "in_proj"
        return _display(source)

    def build(self, ctx: CompileContext, unit: GraphUnit, m: Match) -> nn.Module:
        return self.backend._layer(m, ctx.options.mapped)

    def emit(self, unit: GraphUnit, m: Match, layer: nn.Module, args, kwargs, node_name: str) -> fx.Node:
        """A call of the layer with its weights taken from the graph's inputs
        (the placeholders of the model's Parameters), so that inductor and
        autograd see them as inputs: ``_analog_call(key, names, n, *args, *weights)``."""
        placeholder_of = {id(p): node for node, (p, _) in self.params.items()}
        names, nodes = [], []
        for pname, p in layer.named_parameters(remove_duplicate=False):
            if id(p) in placeholder_of:
                names.append(pname)
                nodes.append(placeholder_of[id(p)])
        key = id(layer)
        _LAYERS[key] = layer
        self.backend._keys.add(key)
        return unit.graph.create_node("call_function", _analog_call, (key, tuple(names), len(args), *args, *nodes),
                                      dict(kwargs), name=node_name)

    def finish(self, unit: GraphUnit) -> None:
        unit.root.delete_all_unused_submodules()
        unit.root.recompile()


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
        self._records: dict = {}
        self._keys: set[int] = set()
        weakref.finalize(self, _forget, self._keys)
        self._watch = _FrameWatch(self)
        weakref.finalize(self, self._watch.remove)

    # -- state ---------------------------------------------------------------

    def _built(self) -> list[tuple[str, nn.Module]]:
        """(name, analog module) of every live module this backend built (an
        attention is one ``AnalogMultiheadAttention``)."""
        out = []
        for per_param in list(self._cache.values()):
            out += list(per_param.values())
        return out

    def named_analog_layers(self) -> list[tuple[str, nn.Module]]:
        """(name, layer) of every live analog layer (``AnalogLayerBase``; an
        attention's projections are layers of their own)."""
        out = []
        for name, module in self._built():
            for sub, layer in named_analog_layers(module):
                out.append(((name if layer is module else f"{name}.{sub}"), layer))
        return out

    def analog_tiles(self):
        """The tile objects (``AnalogTile``) of every live analog layer."""
        return (layer.tile for _, layer in self.named_analog_layers())

    def layer_records(self) -> list:
        """The layer records (``LayerRecord``) of everything this backend
        converted or left digital, one per name."""
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
               m.training, mapped, repr(m.rpu_config))
        per_param = self._cache.setdefault(m.weight, {})
        hit = per_param.get(key)
        layer = hit[1] if hit is not None else None
        if layer is None:
            layer = m.rule.build_layer(m, mapped)
            per_param[key] = (m.name, layer)
        return layer

    def __call__(self, gm: fx.GraphModule, example_inputs):
        self.graphs += 1
        ctx = CompileContext(self.options, RuleTable.for_options(self.options))
        strategy = DynamoGraph(self, gm, example_inputs)
        run(ctx, strategy.trace(ctx))
        for r in ctx.state.records:
            if not r.analog:
                r = replace(r, name=_display(r.source))
            self._records[r.name] = r
        # A >= 2-D parameter of the graph that no layer converted: a row too.
        sources = {r.source for r in self._records.values()}
        shapes = {path: tuple(p.shape) for p, path in strategy.params.values()}
        for path, why in ctx.state.param_notes.items():
            if not covered(sources, path) and _display(path) not in self._records:
                self._records[path] = LayerRecord.digital(path, "parameter", why, path, shapes.get(path))
        return self._compile_rest(gm, example_inputs)

    def _compile_rest(self, gm: fx.GraphModule, example_inputs):
        if self.inner == "eager":
            return gm.forward
        if not any(n.op == "call_function" and n.target is _analog_call for n in gm.graph.nodes):
            return self._inner_compile(gm, example_inputs)
        return _split_at_analog_calls(gm, self._inner_compile).forward

    def _inner_compile(self, gm: fx.GraphModule, example_inputs):
        if self.inner == "inductor":
            from torch._inductor.compile_fx import compile_fx  # heavy: only when used

            return compile_fx(gm, example_inputs)
        return self.inner(gm, example_inputs)


def _split_at_analog_calls(gm: fx.GraphModule, compile_part: Callable) -> fx.GraphModule:
    """The graph cut at every analog layer call: the digital parts between
    them go to the inner compiler, each when it is first called (with the
    inputs it gets; once per signature), and the layers run as they are.

    The inner compiler (AOTAutograd and inductor) traces what it compiles
    once, on fake tensors: an analog layer traced into it would have its
    state (mapping scales, programmed and drifted weights, input ranges,
    output scales) frozen at trace time or, held as real tensors, refused
    by the fake trace. Called between the compiled parts, a layer reads its
    current state at every call, records its (x, d) for pulsed training,
    and runs its tile op through the dispatch (docs/compiler.md, "The
    torch.compile backend")."""
    from torch.fx.passes.split_module import split_module

    part, analog = [0], set()

    def which(node: fx.Node) -> int:
        if node.op == "call_function" and node.target is _analog_call:
            part[0] += 1
            analog.add(part[0])
            part[0] += 1
            return part[0] - 1
        return part[0]

    split = split_module(gm, gm, which, keep_original_order=True)
    for name, sub in list(split.named_children()):
        if int(name.rpartition("_")[2]) not in analog:
            setattr(split, name, _LazyCompiled(sub, compile_part))
    return split


class _LazyCompiled(nn.Module):
    """A digital part of a split graph, compiled by ``compile_part`` at its
    first call with each signature of inputs (shapes, strides, dtypes,
    devices, gradient flags, integer values)."""

    def __init__(self, gm: fx.GraphModule, compile_part: Callable) -> None:
        super().__init__()
        self.gm, self.compile_part = gm, compile_part
        self.compiled: dict = {}

    @staticmethod
    def _signature(args) -> tuple:
        return tuple((tuple(a.shape), a.stride(), a.dtype, a.device, a.requires_grad) if isinstance(a, torch.Tensor)
                     else (type(a), a) for a in args)

    def forward(self, *args):
        key = self._signature(args)
        fn = self.compiled.get(key)
        if fn is None:
            fn = self.compiled[key] = self.compile_part(self.gm, list(args))
        return fn(*args)


def _unimplemented() -> dict:
    from torch._dynamo.utils import counters

    return dict(counters.get("unimplemented", {}))


class _FrameWatch:
    """Warns when dynamo compiles a frame without handing this backend any
    graph because it could not trace it (dynamo runs the frame eagerly, so
    nothing in it is converted: ``nn.LSTM`` without
    ``torch._dynamo.config.allow_rnn``, say). Uses dynamo's compile start
    and end callbacks and its count of unsupported constructs, which are
    global to the process, so any torch.compile that skips a frame while
    this backend lives is reported."""

    def __init__(self, backend: "AnalogBackend"):
        from torch._dynamo.callback import callback_handler

        self.backend = weakref.ref(backend)
        self.handler = callback_handler
        self.before = None
        self.start = callback_handler.register_start_callback(self._start)
        self.end = callback_handler.register_end_callback(self._end)

    def _start(self, args) -> None:
        be = self.backend()
        self.before = None if be is None else (be.graphs, _unimplemented())

    def _end(self, args) -> None:
        be, before = self.backend(), self.before
        if be is None or before is None or be.graphs != before[0]:
            return
        new = [k for k, n in _unimplemented().items() if n > before[1].get(k, 0)]
        if new:
            why = new[0].strip().splitlines()
            hint = next((line.strip() for line in why if line.strip().startswith("Hint:")), "")
            warnings.warn(f"fxanalog backend: dynamo could not trace a frame (compile {args.compile_id}) and runs "
                          f"it eagerly, so no layer in it is converted: {why[0]}"
                          + (f" ({hint})" if hint else ""), stacklevel=2)

    def remove(self) -> None:
        """Unregister (the callbacks may be gone already, at exit)."""
        if self.start in self.handler.start_callbacks:
            self.handler.remove_start_callback(self.start)
        if self.end in self.handler.end_callbacks:
            self.handler.remove_end_callback(self.end)


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


_OPTION_NAMES = ("rpu_config", "mapped", "exclude", "layer_config", "inner", "model")


class SharedBackends:
    """The registered backend ``"fxanalog"``: ``torch.compile(...,
    backend="fxanalog", options={...})`` calls it with the options as
    ``backend()``'s arguments; one ``AnalogBackend`` (and one layer cache)
    per distinct options. ``torch._dynamo.reset()`` calls ``reset``."""

    __name__ = "fxanalog_backend"

    def __init__(self):
        self.backends: dict[str, AnalogBackend] = {}

    def __call__(self, gm: fx.GraphModule, example_inputs, options: Optional[dict] = None, mode=None):
        options = dict(options or {})
        unknown = set(options) - set(_OPTION_NAMES)
        if unknown:
            raise ValueError(f"fxanalog backend: unknown option {sorted(unknown)[0]!r}; "
                             f"expected {', '.join(_OPTION_NAMES)}")
        if mode not in (None, "default"):
            raise ValueError(f"fxanalog backend: mode = {mode!r}: the analog backend has no modes; use options")
        # Modules and functions by identity; configs by value (equal configs share a cache).
        key = repr(sorted((k, id(v) if isinstance(v, nn.Module) or callable(v) else repr(v))
                          for k, v in options.items()))
        if key not in self.backends:
            self.backends[key] = backend(**options)
        return self.backends[key](gm, example_inputs)

    def reset(self) -> None:
        for be in self.backends.values():
            be.reset()
        self.backends.clear()


fxanalog_backend = SharedBackends()


def shared_backends() -> list[AnalogBackend]:
    """The backends created for ``backend="fxanalog"`` (one per options)."""
    return list(fxanalog_backend.backends.values())
