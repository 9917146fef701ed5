"""The trace step and its strategies: a module (or a graph) to the
``GraphUnit`` the other passes work on.

A *strategy* says how a graph is obtained and how its layers are named,
built and called; the passes themselves (match, map, rewrite) are the same
for every strategy.

* ``FxTrace`` (``fxanalog.compile``): ``torch.fx`` tracing. The modules a
  rule matches (``nn.Linear``/``nn.Conv*`` and subclasses keeping their
  parent's ``forward``, ``nn.MultiheadAttention``, the ``conversion_map``
  classes, the weighted modules that stay digital such as ``nn.LSTM``) are
  leaves, as are fxanalog's analog layers (a model compiled again keeps
  them) and atomic ``torch.nn`` modules; every other module, ``torch.nn``
  containers included, is traced through, so the functional matmuls inside
  are seen. When the module cannot be traced as a whole, each child that
  cannot be traced on its own becomes a leaf too and tracing is retried;
  ``unit.leaves`` lists them and the pipeline converts inside them
  recursively. The GraphModule shares the module's submodules and
  parameters; layers are installed as its submodules.
* ``ChildSwap`` (the fallback, when the module's own ``forward`` cannot be
  traced at all): a graph of one ``call_module`` node per child that a rule
  matches; the rewrite installs the analog layers at the children's paths
  in a shallow copy of the module (``"fallback-swap"``). Other children
  with weights are leaves, converted recursively.
* The torch.compile backend's strategy (``fxanalog.dynamo_backend``):
  dynamo's graph, weights are placeholders whose example values are
  Parameters, layers come from a cache and are called with the weights as
  graph inputs.

Nothing of the input module is modified: each trace attempt runs inside
``preserve.preserved(module)``, which puts back every attribute the traced
``forward`` set (a cache filled on the first call holds Proxies otherwise).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from torch import fx, nn

from fxanalog.model import AnalogGraphModule, set_forward_calls

from .context import CompileContext
from .opaque import UNTRACED_LINEAR, untraced_matches
from .preserve import preserved
from .rules import Match, RuleTable, get_attr_param

__all__ = ["GraphUnit", "Strategy", "FxTrace", "ChildSwap", "AnalogTracer", "set_submodule", "shallow_copy",
           "carry_hooks", "has_forward_hooks",
           "FX_TRACE", "CHILD_SWAP"]


@dataclass(eq=False)
class GraphUnit:
    """What the passes work on: one graph, the module it converts, and
    where the analog layers go."""

    strategy: "Strategy"
    module: nn.Module  # the module converted (returned as it is when nothing changes)
    root: nn.Module  # the module the graph's targets resolve in and layers are installed into
    graph: fx.Graph
    param_of: Callable  # node -> (Parameter, path) | None: the notion of a weight
    prefix: str = ""  # the graph's path in the whole model ("gate." for a leaf)
    leaves: list = field(default_factory=list)  # children converted recursively (untraceable, or fallback)
    example_inputs: Any = None
    matches: list = field(default_factory=list)  # Match, set by the match pass
    found: list = field(default_factory=list)  # Match/Digital the strategy found outside the graph's nodes
    changed: bool = False

    @property
    def result(self) -> nn.Module:
        return self.root if self.changed else self.module

    def owner_module(self, path: str) -> Optional[nn.Module]:
        """The module owning parameter ``path`` (None when unknown)."""
        owner = path.rpartition(".")[0]
        try:
            return self.root.get_submodule(owner) if owner else self.root
        except AttributeError:
            return None


def set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, last = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, last, module)


class Strategy:
    """How a graph is obtained (``trace``) and how its layers are named
    (``name_layer``), built (``build``) and called (``emit``)."""

    name = "strategy"
    dumps = False  # the graph is written after each pass with FXANALOG_DUMP_DIR
    module_converted_by: Optional[str] = None  # overrides "module"/"conversion_map" of module matches

    def name_layer(self, unit: GraphUnit, m: Match, taken: set) -> None:
        """Set ``m.name`` and ``m.install`` of a functional match: a new
        ``analog_<weight path>`` submodule."""
        base = "analog_" + m.source.replace(".", "_")
        name, k = base, 1
        while name in taken or hasattr(unit.root, name):
            name, k = f"{base}_{k}", k + 1
        m.name, m.install = name, "add"

    def build(self, ctx: CompileContext, unit: GraphUnit, m: Match) -> nn.Module:
        return m.rule.build_layer(m, ctx.options.mapped)

    # The name of a tile layer with a weight of its own inside a layer made of
    # several (a fused fast path); None: the layer's name and its path in it.
    record_name = None

    def emit(self, unit: GraphUnit, m: Match, layer: nn.Module, args, kwargs, node_name: str) -> fx.Node:
        """Install the layer at ``m.name`` in ``unit.root`` and insert the
        node that calls it."""
        if m.install == "add":
            if isinstance(unit.root, fx.GraphModule):
                unit.root.add_submodule(m.name, layer)
            else:
                set_submodule(unit.root, m.name, layer)
        else:
            set_submodule(unit.root, m.name, layer)
        return unit.graph.create_node("call_module", m.name, args, kwargs, name=node_name)

    def finish(self, unit: GraphUnit) -> None:
        """After the rewrite."""


class AnalogTracer(fx.Tracer):
    """fx tracer whose leaves are the modules a rule matches, the layers
    that are analog already, the atomic ``torch.nn`` modules (no children)
    and the given untraceable submodules."""

    def __init__(self, rules: Optional[RuleTable] = None, leaves: frozenset = frozenset()):
        # Without rules (fx retracing a saved GraphModule made by an older
        # fxanalog), only the given leaves and atomic modules are leaves.
        super().__init__()
        self.rules = rules
        self.leaves = leaves
        self.hooked: list = []  # modules kept whole because they have forward hooks

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if module_qualified_name in self.leaves or (self.rules is not None and self.rules.is_leaf(m)):
            return True
        if self.rules is not None and has_forward_hooks(m):
            # Traced through, its hooks would never run: a leaf, converted
            # recursively, whose result carries its hooks.
            if any(True for _ in m.children()):
                self.hooked.append(module_qualified_name)
            return True
        if isinstance(m, fx.GraphModule):
            return False
        # Atomic torch.nn modules (ReLU, BatchNorm, LayerNorm, Dropout, ...).
        return m.__module__.startswith("torch.nn") and not any(True for _ in m.children())


def _try_trace(module: nn.Module, rules: RuleTable, leaves: frozenset) -> Optional[tuple]:
    """(The traced module, the hooked modules kept as leaves), or None when
    fx cannot trace it. Either way the
    module's attributes are as before (``preserve``): a forward that stores
    what it computes (a cache, a lazily set attribute) would keep Proxies.
    The GraphModule is made before they are put back, so that it holds the
    constants the tracer stored on the module (``_tensor_constant0``)."""
    tracer = AnalogTracer(rules, leaves)
    with preserved(module):
        try:
            graph = tracer.trace(module)
        except Exception:  # fx raises many kinds (TraceError, TypeError, ...)
            return None
        gm = AnalogGraphModule(module, graph, class_name=type(module).__name__)
    gm.training = module.training
    return gm, tracer.hooked


class FxTrace(Strategy):
    """``torch.fx`` tracing (see the module docstring)."""

    name = "fx"
    dumps = True

    def trace(self, ctx: CompileContext, module: nn.Module, prefix: str = "",
              example_inputs=None) -> Optional[GraphUnit]:
        """The unit of a traced module, or None when its forward cannot be traced."""
        leaves: frozenset = frozenset()
        traced = _try_trace(module, ctx.rules, leaves)
        if traced is None:
            tracer = AnalogTracer(ctx.rules)
            bad = [name for name, child in module.named_children()
                   if not tracer.is_leaf_module(child, name) and _try_trace(child, ctx.rules, frozenset()) is None]
            if bad:
                leaves = frozenset(bad)
                traced = _try_trace(module, ctx.rules, leaves)
        if traced is None:
            return None
        gm, hooked = traced
        if not ctx.options.dry_run:
            carry_hooks(module, gm, prefix[:-1])
        return GraphUnit(self, module, gm, gm.graph, get_attr_param(gm), prefix, sorted(set(leaves) | set(hooked)),
                         example_inputs)

    def name_layer(self, unit: GraphUnit, m: Match, taken: set) -> None:
        """The weight's owner module when the layer can take its place (a
        HuggingFace ``Conv1D``: ``h.0.attn.c_attn``), else a new top-level
        ``analog_<weight path>`` submodule."""
        owner, _, pname = m.source.rpartition(".")
        if pname == "weight" and owner and owner not in taken:
            nodes = unit.graph.nodes
            below = {n.target for n in nodes if n.op in ("get_attr", "call_module")
                     and (n.target == owner or n.target.startswith(owner + "."))}
            allowed = {m.source} | ({m.bias_path} if m.bias_path == owner + ".bias" else set())
            called = any(n.op == "call_module" and (owner == n.target or owner.startswith(n.target + "."))
                         for n in nodes)
            if below <= allowed and not called and m.source in below:
                mod = unit.root.get_submodule(owner)
                has_other = any(k not in ("weight", "bias") for k in mod._parameters) or mod._buffers or \
                    mod._modules or ("bias" in mod._parameters and owner + ".bias" not in allowed)
                if not has_other:
                    m.name, m.install = owner, "replace"
                    return
        super().name_layer(unit, m, taken)

    def finish(self, unit: GraphUnit) -> None:
        unit.root.delete_all_unused_submodules()
        unit.root.recompile()


def shallow_copy(module: nn.Module) -> nn.Module:
    """A copy of the module object sharing its parameters, buffers and
    children, so that children can be swapped without touching the original.
    Its own dicts, lists and sets (the registries of children, parameters,
    buffers and hooks, a cache) are copies: ``train()``/``eval()``, a hook
    registered or a child swapped on the copy leave the original as it was."""
    new = copy.copy(module)
    for key, value in vars(module).items():
        if isinstance(value, (dict, list, set)):
            new.__dict__[key] = copy.copy(value)
    return new


_HOOK_DICTS = ("_forward_pre_hooks", "_forward_hooks")
_OTHER_HOOKS = ("_backward_pre_hooks", "_backward_hooks", "_state_dict_hooks", "_state_dict_pre_hooks",
                "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks")


def has_forward_hooks(module: nn.Module) -> bool:
    """The module has forward hooks or pre-hooks of its own."""
    state = vars(module)
    return any(state.get(k) for k in _HOOK_DICTS)


def _torch_internal(hook) -> bool:
    """A hook torch's own utilities registered (weight_norm's checkpoint
    compatibility), not the user's."""
    fn = getattr(hook, "hook", hook)  # torch wraps some hooks (_WrappedHook)
    return (getattr(fn, "__module__", None) or "").startswith("torch.")


def carry_hooks(src: nn.Module, dst: nn.Module, name: str) -> None:
    """Register ``src``'s forward hooks and pre-hooks on ``dst`` (the module
    that replaces it), in their order and with their options (``with_kwargs``,
    ``always_call``); a ``UserWarning`` names the other hooks of the user
    (backward, state dict), which are not carried over."""
    if src is dst:
        return
    state = vars(src)
    with_kwargs = state.get("_forward_pre_hooks_with_kwargs", {})
    for hid, hook in state.get("_forward_pre_hooks", {}).items():
        dst.register_forward_pre_hook(hook, with_kwargs=hid in with_kwargs)
    with_kwargs = state.get("_forward_hooks_with_kwargs", {})
    always = state.get("_forward_hooks_always_called", {})
    for hid, hook in state.get("_forward_hooks", {}).items():
        dst.register_forward_hook(hook, with_kwargs=hid in with_kwargs, always_call=hid in always)
    other = [k.strip("_").replace("_", " ") for k in _OTHER_HOOKS
             if any(not _torch_internal(h) for h in state.get(k, {}).values())]
    if other:
        warnings.warn(f"fxanalog.compile: {', '.join(other)} on {name or 'the model'!r} "
                      f"({type(src).__name__}) are not carried over to the analog model; register them on it "
                      "again", stacklevel=2)


class ChildSwap(Strategy):
    """The fallback for a module whose own forward cannot be traced (see
    the module docstring). Example inputs are not checked here."""

    name = "child-swap"
    module_converted_by = "fallback-swap"

    def trace(self, ctx: CompileContext, module: nn.Module, prefix: str = "", example_inputs=None) -> GraphUnit:
        root = module if ctx.options.dry_run else shallow_copy(module)
        graph = fx.Graph()
        calls, leaves = [], []
        for name, child in module.named_children():
            if ctx.rules.module_rule(child) is not None:
                calls.append(graph.call_module(name))
            elif not ctx.rules.is_analog(child) and any(p.dim() >= 2 for p in child.parameters()):
                leaves.append(name)
        found = untraced_matches(graph, root, prefix, ctx.state.forward_uses)
        graph.output(tuple(calls))
        return GraphUnit(self, module, root, graph, get_attr_param(root), prefix, leaves, found=found)

    def finish(self, unit: GraphUnit) -> None:
        """The matmuls of the module's own forward (``F.linear`` on a weight
        seen on the example inputs) go to their layers at run time: the
        module gets the analog-model class, whose ``forward`` runs under
        ``opaque.AnalogCalls`` (``fxanalog.model``)."""
        calls = {m.source: m.name for m in unit.matches if m.rule is UNTRACED_LINEAR}
        if calls:
            set_forward_calls(unit.root, calls)


FX_TRACE = FxTrace()
CHILD_SWAP = ChildSwap()
