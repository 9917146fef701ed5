"""Weights that reach a matmul where fx cannot see it.

Two places hide a matmul from the graph:

* an *opaque function*: a ``torch.fx.wrap``ped function (torchvision's
  ``shifted_window_attention``) or any function of the model's own code that
  fx records as one ``call_function`` node and that receives parameters;
* the ``forward`` of a module that fx cannot trace (data-dependent control
  flow): the child swap sees its children, not its own body
  (``F.linear(h, self.wte.weight)``, a head tied to the embedding).

Both are found by running the code once on the example inputs under
``FunctionalUses``, a ``TorchFunctionMode`` that records each ``F.linear``
(and ``matmul``, ``conv``) whose weight operand *is* one of the given
parameters, and which module's forward was running. The shapes pass does
this for opaque calls (``META_USES`` on the node); ``fxanalog.compile``
does it for the whole model when it checks ``example_inputs``.

Converting: a weight used as ``F.linear(x, W[, b])`` becomes an
``AnalogLinear`` around ``W`` (the bias stays digital: ``layer(x) + b``);
the code runs under ``AnalogCalls``, a ``TorchFunctionMode`` that sends each
such ``F.linear`` to its layer (by the identity of the weight tensor the
call receives). An opaque call becomes an ``AnalogOpaqueCall`` module
(``analog_<function>`` with one layer per weight); an untraceable module's
own matmuls become layers in the module's ``fxanalog_calls`` dict
(``fxanalog.model``). Other uses (``x @ W``, convolutions inside such code)
and everything not seen because no example inputs were given stay digital
with a record that says so.
"""

from __future__ import annotations

import operator
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.overrides import TorchFunctionMode

from fxanalog.model import LINEAR_FUNCTIONS, AnalogCalls
from fxanalog.nn.modules import AnalogLinear

from .preserve import preserved
from .rules import Digital, LayerRule, Match

__all__ = ["FunctionalUses", "AnalogOpaqueCall", "example_uses", "is_opaque", "opaque_params", "match_opaque",
           "OPAQUE", "UNTRACED_LINEAR", "untraced_matches", "LINEAR_FUNCTIONS", "use_kind"]

_MATMULS = (torch.matmul, torch.mm, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.Tensor.mm, operator.matmul)
_CONVS = (F.conv1d, F.conv2d, F.conv3d, torch.conv1d, torch.conv2d, torch.conv3d)


def use_kind(func, args, kwargs) -> Optional[tuple]:
    """(kind, weight operand) of a functional matmul call, else None."""
    if func in LINEAR_FUNCTIONS:
        w = args[1] if len(args) > 1 else kwargs.get("weight")
        return "F.linear", w
    if func in _MATMULS and len(args) > 1:
        return "matmul", args[1]
    if func in _CONVS:
        w = args[1] if len(args) > 1 else kwargs.get("weight")
        return getattr(func, "__name__", "conv"), w
    return None


class FunctionalUses(TorchFunctionMode):
    """Records functional matmuls on the given parameters (see the module
    docstring): ``uses[id(param)]`` is a list of ``(kind, module)`` with the
    innermost module whose forward was running (None outside any). After
    an exception ``stack`` still holds the modules that were running."""

    def __init__(self, params, root: Optional[nn.Module] = None):
        super().__init__()
        self.params = {id(p): p for p in params}
        self.uses: dict = {}
        self.stack: list = []
        self.root = root
        self.hooks: list = []

    def __enter__(self):
        if self.root is not None:
            for module in self.root.modules():
                self.hooks.append(module.register_forward_pre_hook(self._push))
                self.hooks.append(module.register_forward_hook(self._pop))
        return super().__enter__()

    def __exit__(self, *exc):
        for h in self.hooks:
            h.remove()
        self.hooks = []
        return super().__exit__(*exc)

    def _push(self, module, args):
        self.stack.append(module)

    def _pop(self, module, args, out):
        if self.stack and self.stack[-1] is module:
            self.stack.pop()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        found = use_kind(func, args, kwargs)
        if found is not None and id(found[1]) in self.params:
            self.uses.setdefault(id(found[1]), []).append((found[0], self.stack[-1] if self.stack else None))
        return func(*args, **kwargs)


class AnalogOpaqueCall(nn.Module):
    """An opaque function whose ``F.linear`` weights are on analog tiles:
    calls ``fn`` with the same arguments under ``AnalogCalls``. Its children
    are one ``AnalogLinear`` per converted weight, named after the weight's
    path (``qkv_weight``); ``arg_of[name]`` is the argument the weight
    arrives in (``arg<position>`` or ``arg<keyword>``) and ``sources[name]``
    the weight's path in the model."""

    def __init__(self, fn: Callable, layers: dict, arg_of: dict, sources: dict):
        super().__init__()
        self.fn = fn
        for name, layer in layers.items():
            self.add_module(name, layer)
        self.arg_of = dict(arg_of)
        self.sources = dict(sources)

    def forward(self, *args, **kwargs):
        by_id = {}
        for name, key in self.arg_of.items():
            where = key[len("arg"):]
            value = args[int(where)] if where.isdigit() else kwargs[where]
            by_id[id(value)] = self.get_submodule(name)
        with AnalogCalls(by_id):
            return self.fn(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"fn={getattr(self.fn, '__qualname__', self.fn)}"


_TORCH_MODULES = ("torch", "_operator", "operator", "math", "builtins", "_functools", "functools", "fxanalog")


def example_uses(model: nn.Module, args: tuple) -> dict:
    """Run ``model(*args)`` once (eval, no grad, inside ``preserved``: the
    model is left as it was) recording its functional matmuls on its
    parameters: {module path whose forward ran: [(kind, weight path)]}.
    A model that fails on the inputs is a ``ValueError`` naming the model
    and carrying its message."""
    params = {id(p): path for path, p in model.named_parameters() if p.dim() >= 2}
    paths = {id(m): path for path, m in model.named_modules()}
    with preserved(model, values=True):
        model.eval()
        try:
            with torch.no_grad(), FunctionalUses([model.get_parameter(p) for p in params.values()], model) as seen:
                model(*args)
        except Exception as exc:
            where = ""
            if seen.stack and seen.stack[-1] is not model:  # the innermost module that raised
                where = f" at module {paths.get(id(seen.stack[-1]), '?')!r} ({type(seen.stack[-1]).__name__})"
            raise ValueError(f"example_inputs: {type(model).__name__} failed{where} on them ({len(args)} "
                             f"positional input(s): {_describe(args)}): {type(exc).__name__}: {exc}") from exc
    uses: dict = {}
    for pid, found in seen.uses.items():
        for kind, module in found:
            uses.setdefault(paths.get(id(module), ""), []).append((kind, params[pid]))
    return uses


def _describe(args: tuple) -> str:
    return ", ".join(f"shape {tuple(a.shape)}" if isinstance(a, torch.Tensor) else type(a).__name__ for a in args)


def is_opaque(node: fx.Node) -> bool:
    """A ``call_function`` of a function of the model's own code (not a
    torch, operator or builtin function)."""
    if node.op != "call_function":
        return False
    mod = getattr(node.target, "__module__", None) or ""
    return not mod.split(".")[0] in _TORCH_MODULES


def opaque_params(node: fx.Node, param_of) -> list:
    """(key, parameter, path) of the >= 2-D parameters an opaque call
    receives directly (key: ``arg<i>`` or ``arg<name>``)."""
    out = []
    items = [(f"arg{i}", a) for i, a in enumerate(node.args)] + [(f"arg{k}", a) for k, a in node.kwargs.items()]
    for key, a in items:
        found = param_of(a) if isinstance(a, fx.Node) else None
        if found is not None and found[0].dim() >= 2:
            out.append((key, found[0], found[1]))
    return out


def match_opaque(node: fx.Node, param_of, uses: Optional[dict]) -> list:
    """What to do with an opaque call's weights: a ``Match`` (of ``OPAQUE``,
    one layer per weight used only as ``F.linear``) and a ``Digital`` for
    each other weight. ``uses``: ``META_USES`` of the node (None without
    example inputs)."""
    name = getattr(node.target, "__qualname__", str(node.target))
    params = opaque_params(node, param_of)
    if not params:
        return []
    out, convert = [], []
    for key, p, path in params:
        kinds = None if uses is None else uses.get(path)
        if uses is None:
            why = (f"passed to {name}, a function fx does not trace into (torch.fx.wrap or opaque): give "
                   "example_inputs and fxanalog converts the F.linear calls inside it")
        elif not kinds:
            why = f"passed to {name}, which did not use it in a matmul on the example inputs"
        elif set(kinds) != {"F.linear"} or p.dim() != 2:
            other = sorted(set(kinds) - {"F.linear"})
            why = (f"used by {', '.join(other) or 'F.linear'} inside {name}; only F.linear is converted inside a "
                   "function fx does not trace into")
        else:
            convert.append((key, p, path))
            continue
        out.append(Digital(path, f"{name}", why, tuple(p.shape)))
    if convert:
        m = Match(node, OPAQUE, f"{name}", convert[0][2], weight=convert[0][1], args=tuple(node.args),
                  kwargs=dict(node.kwargs), erase=[node])
        m.params = {"fn": node.target, "weights": {key: (p, path) for key, p, path in convert},
                    "sources": {_sub(path): path for _, _, path in convert}}
        out.insert(0, m)
    return out


def _sub(path: str) -> str:
    return path.replace(".", "_")


def _tiles(m: Match) -> list:
    return [(_sub(path), p.shape, 1) for p, path in m.params["weights"].values()]


def _build(m: Match, mapped: bool) -> nn.Module:
    weights = m.params["weights"]
    layers = {_sub(path): AnalogLinear(p.shape[1], p.shape[0], False, m.rpu_config, mapped=mapped, weight=p)
              for p, path in weights.values()}
    return AnalogOpaqueCall(m.params["fn"], layers, {_sub(path): key for key, (_, path) in weights.items()},
                            {_sub(path): path for _, path in weights.values()})


def _build_one(m: Match, mapped: bool) -> nn.Module:
    return AnalogLinear(m.weight.shape[1], m.weight.shape[0], False, m.rpu_config, mapped=mapped, weight=m.weight)


def untraced_matches(graph: fx.Graph, root: nn.Module, prefix: str, uses: Optional[dict]) -> list:
    """The matmuls of an untraceable module's own ``forward`` (``root``, at
    ``prefix`` in the model), from ``uses`` (model path of the module whose
    forward ran -> [(kind, weight path)], recorded on the example inputs;
    None without them): a ``Match`` of ``UNTRACED_LINEAR`` per weight used
    only as ``F.linear`` (a marker node is added to ``graph`` for it), a
    ``Digital`` per other weight. Without example inputs, a ``Digital`` for
    each >= 2-D parameter of the module itself (its use is not seen)."""
    cls = type(root).__name__
    where = f"the forward of {prefix[:-1] or 'the model'} ({cls}), which fx cannot trace"
    if uses is None:
        return [Digital(name, "parameter", f"a parameter of {where}: give example_inputs and fxanalog finds and "
                        "converts the F.linear calls on it", tuple(p.shape))
                for name, p in root.named_parameters(recurse=False) if p.dim() >= 2]
    kinds: dict = {}
    for kind, path in uses.get(prefix[:-1], []):
        if path.startswith(prefix):
            kinds.setdefault(path[len(prefix):], []).append(kind)
    out = []
    for path, ks in kinds.items():
        p = root.get_parameter(path)
        if set(ks) != {"F.linear"} or p.dim() != 2:
            other = sorted(set(ks) - {"F.linear"})
            out.append(Digital(path, other[0] if other else "F.linear",
                               f"used by {', '.join(other) or 'F.linear'} in {where}; only F.linear is converted "
                               "there", tuple(p.shape)))
            continue
        node = graph.call_function(opaque_function, (path,))
        out.append(Match(node, UNTRACED_LINEAR, "F.linear", path, weight=p, erase=[node]))
    return out


def opaque_function(*args, **kwargs):
    """Stands for any opaque function in ``OPAQUE``'s table entry; never
    called (``match_opaque`` is called by the match pass for every opaque
    ``call_function`` node that no other rule matched)."""
    raise RuntimeError("opaque_function is a marker, not a function to call")


UNTRACED_LINEAR = LayerRule("F.linear in an untraced forward", functions=(opaque_function,),
                            match=lambda node, param_of: None, analog_class=AnalogLinear,
                            tile_shapes=lambda m: [("", m.weight.shape, 1)], build=_build_one)
OPAQUE = LayerRule("opaque function", functions=(opaque_function,), match=lambda node, param_of: None,
                   analog_class=AnalogLinear, tile_shapes=_tiles, build=_build)
