"""Layer rules: which layers the compiler converts, how, and which stay
digital and why. One rule per kind of layer, in a table, as
torch.ao.quantization's backend config has one pattern config per op.

A ``LayerRule`` says

* what it matches: ``modules`` (a ``call_module`` of an instance of one of
  these classes, for which ``applies(module)`` holds when given), or
  ``functions`` / ``methods`` (a ``call_function`` / ``call_method`` node
  whose target is one of these; ``match(node, param_of)`` inspects it);
* for an analog rule: ``analog_class`` (its ``from_digital(module,
  rpu_config, mapped=, share=)`` builds a module match), ``build(match,
  mapped)`` (builds any match; needed by functional rules), and
  ``tile_shapes(match)``: the ``(sub, weight shape, groups)`` of each tile
  layer the match will make, for the map pass (empty when unknown before
  the layer is built);
* for a digital rule: ``digital_reason``, the reason every record of it
  shows.

``match`` returns a ``Match`` (convert), a ``Digital`` (a weighted op that
stays digital, with its reason) or None (not this rule's business, e.g.
``x @ y`` without a parameter). The helpers below (``weight_operand``,
``fold_bias_add``, ``unsupported``, ...) are what the built-in matchers are
written with.

The table of one compile (``RuleTable``) is the ``conversion_map`` (most
specific class first), then the registered rules, the latest registered
first, then the built-in rules (``rules_builtin``, ``rules_attention``).
``register_layer_rule(rule)`` adds a rule; a new analog layer type is one
registration::

    handle = register_layer_rule(LayerRule(
        "MyLSTM", modules=(MyLSTM,), analog_class=AnalogMyLSTM,
        tile_shapes=lambda m: [("", m.module.weight.shape, 1)]))
    ...
    handle.remove()
"""

from __future__ import annotations

import inspect
import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import fx, nn

from fxanalog.nn.modules import AnalogLayerBase

from .records import TileMap, TileMapEntry, weight_dims

__all__ = ["LayerRule", "Match", "Digital", "RuleTable", "register_layer_rule", "registered_rules",
           "call_from_digital", "arg", "transpose_operand", "weight_operand", "bias_operand", "fold_bias_add",
           "derived_param", "unsupported", "get_attr_param", "module_weight_shape"]

ParamOf = Callable[[Any], Optional[tuple]]  # node -> (Parameter, path) | None


@dataclass(eq=False)
class Match:
    """One weight matmul found in the graph, to be converted.

    Set by the rule: the fields up to ``training``. Set by the passes:
    ``name`` and ``install`` (match), ``rpu_config`` (match), ``tile_maps``
    (map)."""

    node: fx.Node  # the node that computes the layer's output (the add when a bias is folded)
    rule: "LayerRule"
    kind: str  # "Linear", "Conv2d", "MultiheadAttention", "F.linear", "matmul", "addmm", "F.conv2d", ...
    source: str  # the module path or the weight parameter's path (relative to the graph)
    converted_by: str = "functional"  # "module" | "functional" | "conversion_map" | "fallback-swap"
    module: Optional[nn.Module] = None  # the digital module (module matches)
    weight: Optional[nn.Parameter] = None
    bias: Optional[nn.Parameter] = None
    bias_path: str = ""
    transposed: bool = False  # the weight is stored (in, out)
    params: dict = field(default_factory=dict)  # stride, padding, ... of a functional conv or attention
    args: tuple = ()  # the analog layer's call arguments (nodes of the graph)
    kwargs: dict = field(default_factory=dict)
    erase: list = field(default_factory=list)  # nodes replaced by the layer (in order)
    training: Optional[bool] = None  # the layer's mode; None: the graph's
    name: str = ""  # the layer's name (relative to the graph)
    install: str = "replace"  # "replace" the module at `name` | "add" a new submodule
    rpu_config: Any = None
    tile_maps: list = field(default_factory=list)  # TileMapEntry per tile layer (map pass)


@dataclass(frozen=True)
class Digital:
    """A weighted layer or op that stays digital: ``path`` is its name
    relative to the graph (module path, or weight parameter path)."""

    path: str
    kind: str
    reason: str
    shape: Optional[tuple] = None


@dataclass(frozen=True, eq=False)
class LayerRule:
    """One kind of layer (see the module docstring)."""

    name: str
    modules: tuple = ()
    functions: tuple = ()
    methods: tuple = ()
    applies: Optional[Callable[[nn.Module], bool]] = None
    match: Optional[Callable[[fx.Node, ParamOf], Union[Match, Digital, None]]] = None
    analog_class: Optional[type] = None
    tile_shapes: Optional[Callable[[Match], list]] = None
    build: Optional[Callable[[Match, bool], nn.Module]] = None
    digital_reason: Optional[str] = None
    converted_by: str = "module"  # of module matches: "module" | "conversion_map"

    def __post_init__(self):
        if not (self.modules or self.functions or self.methods):
            raise TypeError(f"LayerRule {self.name!r}: give modules, functions or methods to match")
        analog = self.analog_class is not None or self.build is not None
        if analog == (self.digital_reason is not None):
            raise TypeError(f"LayerRule {self.name!r}: give analog_class or build (an analog rule), "
                            "or digital_reason (a digital rule)")
        if (self.functions or self.methods) and analog and (self.match is None or self.build is None):
            raise TypeError(f"LayerRule {self.name!r}: a rule on functions or methods needs match and build")
        if self.modules and self.build is None and self.analog_class is not None \
                and not callable(getattr(self.analog_class, "from_digital", None)):
            raise TypeError(f"LayerRule {self.name!r}: {self.analog_class.__name__} has no from_digital; give build")

    @property
    def digital(self) -> bool:
        return self.digital_reason is not None

    def applies_to(self, module: nn.Module) -> bool:
        return isinstance(module, self.modules) and (self.applies is None or self.applies(module))

    def match_module(self, node: fx.Node, module: nn.Module) -> Union[Match, Digital]:
        kind = type(module).__name__
        if self.digital:
            return Digital(node.target, kind, self.digital_reason, module_weight_shape(module))
        return Match(node, self, kind, node.target, self.converted_by, module=module, args=node.args,
                     kwargs=dict(node.kwargs), erase=[node], training=module.training)

    def match_call(self, node: fx.Node, param_of: ParamOf) -> Union[Match, Digital, None]:
        if self.match is not None:
            return self.match(node, param_of)
        return unsupported(node, param_of, self.digital_reason)

    def tile_entries(self, m: Match, mapped: bool) -> list:
        """The tile map of each tile layer the match will make."""
        if self.tile_shapes is None:
            return []
        out = []
        for sub, shape, groups in self.tile_shapes(m):
            shape = tuple(int(s) for s in shape)
            G, N, K = weight_dims(shape, groups)
            if sub == "" and _analog_bias(m):  # the bias is one more input column of the tiles (docs/tile.md)
                K += 1
            out.append(TileMapEntry(sub, shape, TileMap.plan(G, N, K, m.rpu_config, mapped)))
        return out

    def build_layer(self, m: Match, mapped: bool) -> nn.Module:
        """The analog module of a match, around the model's own parameters."""
        if self.build is not None:
            return self.build(m, mapped)
        return call_from_digital(self.analog_class, m.module, m.rpu_config, mapped)


def _analog_bias(m: Match) -> bool:
    """The match's layer has a bias and its config puts it on the tiles
    (``mapping.digital_bias = False``)."""
    mapping = getattr(m.rpu_config, "mapping", None)
    if mapping is None or getattr(mapping, "digital_bias", True):
        return False
    bias = m.bias if m.bias is not None else getattr(m.module, "bias", None)
    return isinstance(bias, torch.Tensor)


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


# -- the registry --------------------------------------------------------------

_BUILTIN: list = []  # filled by rules_builtin and rules_attention, in order
_REGISTERED: list = []  # register_layer_rule, latest first


class RuleHandle:
    """Returned by ``register_layer_rule``; ``remove()`` unregisters the rule."""

    def __init__(self, rule: LayerRule):
        self.rule = rule

    def remove(self) -> None:
        if self.rule in _REGISTERED:
            _REGISTERED.remove(self.rule)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def register_layer_rule(rule: LayerRule) -> RuleHandle:
    """Add a rule to every later compile (and backend graph); it is
    consulted before the rules registered earlier and the built-in ones."""
    if not isinstance(rule, LayerRule):
        raise TypeError(f"register_layer_rule: expected a LayerRule, got {type(rule).__name__}")
    _REGISTERED.insert(0, rule)
    return RuleHandle(rule)


def register_builtin(*rules: LayerRule) -> None:
    """For fxanalog's own rule modules: add rules after the others."""
    _BUILTIN.extend(rules)


def registered_rules() -> tuple:
    """The rules in the order they are consulted (without a conversion_map)."""
    return tuple(_REGISTERED) + tuple(_BUILTIN)


def _conversion_map_rule(key: type, cls: type) -> LayerRule:
    # A built-in analog class keeps the tile shapes of its built-in rule; a
    # user class's tiles are known once built.
    shapes = next((r.tile_shapes for r in _BUILTIN if r.analog_class is cls and r.modules), None)
    return LayerRule(f"conversion_map[{key.__name__}]", modules=(key,), analog_class=cls, tile_shapes=shapes,
                     converted_by="conversion_map")


class RuleTable:
    """The rules of one compile, indexed: ``conversion_map`` (by the
    module's class, most specific first), then ``rules`` in order."""

    def __init__(self, rules: Sequence[LayerRule], conversion_map: Optional[dict] = None):
        self.conversion = {k: _conversion_map_rule(k, v) for k, v in (conversion_map or {}).items()}
        self.rules = tuple(rules)
        self.module_rules = tuple(r for r in self.rules if r.modules)
        self.by_function: dict = {}
        self.by_method: dict = {}
        for r in self.rules:
            for f in r.functions:
                self.by_function.setdefault(f, []).append(r)
            for name in r.methods:
                self.by_method.setdefault(name, []).append(r)
        analog = {AnalogLayerBase} | {r.analog_class for r in self.rules if r.analog_class is not None}
        self.analog_classes = tuple(analog | set((conversion_map or {}).values()))

    @classmethod
    def for_options(cls, options) -> "RuleTable":
        return cls(registered_rules(), options.conversion_map)

    def module_rule(self, module: nn.Module) -> Optional[LayerRule]:
        """The rule of a module (analog or digital), or None."""
        for klass in type(module).__mro__:
            if klass in self.conversion:
                return self.conversion[klass]
        for r in self.module_rules:
            if r.applies_to(module):
                return r
        return None

    def is_analog(self, module: nn.Module) -> bool:
        """A layer that is analog already (left as it is)."""
        return isinstance(module, self.analog_classes)

    def is_leaf(self, module: nn.Module) -> bool:
        """Modules the tracer keeps whole: the ones a rule matches as
        modules (analog or digital) and layers that are analog already."""
        return self.module_rule(module) is not None or self.is_analog(module)

    def match(self, node: fx.Node, root: nn.Module, param_of: ParamOf) -> Union[Match, Digital, None]:
        """What the rules say about one node."""
        if node.op == "call_module":
            module = root.get_submodule(node.target)
            rule = self.module_rule(module)
            return None if rule is None else rule.match_module(node, module)
        if node.op == "call_function":
            rules = self.by_function.get(node.target, ())
        elif node.op == "call_method":
            rules = self.by_method.get(node.target, ())
        else:
            return None
        for rule in rules:
            found = rule.match_call(node, param_of)
            if found is not None:
                return found
        return None


# -- helpers for matchers ---------------------------------------------------------


def _resolve_attr(root: nn.Module, target: str):
    obj = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def get_attr_param(root: nn.Module) -> ParamOf:
    """``param_of`` for fx graphs: a ``get_attr`` of an ``nn.Parameter``."""

    def param_of(node: Any):
        if isinstance(node, fx.Node) and node.op == "get_attr":
            value = _resolve_attr(root, node.target)
            if isinstance(value, nn.Parameter):
                return value, node.target
        return None

    return param_of


def arg(node: fx.Node, index: int, name: str, default=None):
    """A call's argument by position or keyword."""
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def transpose_operand(node: Any) -> Optional[fx.Node]:
    """The operand of a 2-D transpose node (``.t()``, ``.T``, ``transpose(0, 1)``,
    ``permute(1, 0)``), else None."""
    if not isinstance(node, fx.Node):
        return None
    if node.op == "call_method" and node.target == "t" or node.op == "call_function" and node.target is torch.t:
        return node.args[0]
    if node.op == "call_function" and node.target is getattr and node.args[1] in ("T", "mT"):
        return node.args[0]
    if (node.op == "call_method" and node.target == "transpose") or (
            node.op == "call_function" and node.target is torch.transpose):
        dims = {d % 2 if isinstance(d, int) else d for d in node.args[1:3]}
        if dims == {0, 1}:
            return node.args[0]
    if node.op == "call_method" and node.target == "permute":
        dims = node.args[1] if len(node.args) == 2 and isinstance(node.args[1], (tuple, list)) else node.args[1:]
        if tuple(dims) == (1, 0):
            return node.args[0]
    return None


def weight_operand(node: Any, param_of: ParamOf):
    """(parameter, path, flipped) of a weight operand seen through
    transposes (flipped: an odd number of them), or None."""
    flipped = False
    while True:
        found = param_of(node)
        if found is not None:
            return found[0], found[1], flipped
        inner = transpose_operand(node)
        if inner is None:
            return None
        flipped = not flipped
        node = inner


def bias_operand(node: Any, param_of: ParamOf, size: int):
    """(parameter, path) when ``node`` is a 1-D parameter of ``size``, else None."""
    found = param_of(node)
    if found is not None and found[0].dim() == 1 and found[0].shape[0] == size:
        return found
    return None


_ADD = {operator.add, torch.add}


def fold_bias_add(mm: fx.Node, param_of: ParamOf, size: int):
    """(add node, (bias, path)) when the only user of ``mm`` adds a bias
    parameter of ``size`` to it, else None."""
    if len(mm.users) != 1:
        return None
    add = next(iter(mm.users))
    is_add = (add.op == "call_function" and add.target in _ADD) or (add.op == "call_method" and add.target == "add")
    if not is_add or "alpha" in add.kwargs or len(add.args) != 2:
        return None
    other = add.args[1] if add.args[0] is mm else add.args[0]
    found = bias_operand(other, param_of, size)
    return None if found is None else (add, found)


def derived_param(node: Any, param_of: ParamOf, depth: int = 3):
    """A >= 2-D parameter (as ``weight_operand``) that ``node`` is computed
    from within ``depth`` ops (``W * mask``, a weight-norm ``g * v / |v|``),
    or None. A value computed from the graph's inputs (an activation: the
    output of the previous layer) is not a weight, whatever parameters it
    went through: the walk never names the previous layer's weight."""
    if _from_inputs(node, param_of, {}):
        return None
    return _derived(node, param_of, depth)


def _derived(node: Any, param_of: ParamOf, depth: int):
    found = weight_operand(node, param_of)
    if found is not None:
        return found if found[0].dim() >= 2 else None
    if depth == 0 or not isinstance(node, fx.Node) or node.op not in ("call_function", "call_method"):
        return None
    for a in node.all_input_nodes:
        found = _derived(a, param_of, depth - 1)
        if found is not None:
            return found
    return None


def _from_inputs(node: Any, param_of: ParamOf, memo: dict) -> bool:
    """``node`` depends on a graph input that is not a parameter."""
    if not isinstance(node, fx.Node):
        return False
    if node in memo:
        return memo[node]
    memo[node] = False
    if node.op == "placeholder":
        memo[node] = param_of(node) is None
    else:
        memo[node] = any(_from_inputs(a, param_of, memo) for a in node.all_input_nodes)
    return memo[node]


def unsupported(node: fx.Node, param_of: ParamOf, why: Optional[str] = None) -> Optional[Digital]:
    """A call with a >= 2-D parameter operand that stays digital: the
    ``Digital`` of its first such operand (``why``, or what is wrong with
    the operand), or None when no operand is a parameter."""
    for a in list(node.args) + list(node.kwargs.values()):
        found = weight_operand(a, param_of)
        derived = found is None
        if derived:
            found = derived_param(a, param_of)
        if found is not None and found[0].dim() >= 2:
            what = why or (f"weight computed from parameter {found[1]} (not the parameter itself)" if derived
                           else f"weight of shape {tuple(found[0].shape)} cannot be put on a tile")
            return Digital(found[1], getattr(node.target, "__name__", str(node.target)), what,
                           tuple(found[0].shape))
    return None


def module_weight_shape(module: nn.Module) -> Optional[tuple]:
    """The shape of a module's main weight (``weight``, ``in_proj_weight``,
    a recurrent layer's first input weight), or None."""
    for attr in ("weight", "in_proj_weight", "weight_ih_l0", "weight_ih"):
        w = getattr(module, attr, None)
        if isinstance(w, torch.Tensor):
            return tuple(w.shape)
    return None
