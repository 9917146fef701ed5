"""Pass 3, match: find every weight matmul of the graph.

``match(gm, options, param_of=None) -> list[Match]``

A *weight matmul* is one of

* a ``call_module`` of a module with a replacement: the ``conversion_map``
  first (the module's class or a base class), then the built-in rules
  (``nn.Linear``/``nn.Conv1d/2d/3d`` and subclasses, ``nn.MultiheadAttention``);
* a ``call_function``/``call_method`` of ``F.linear``, ``F.conv1d/2d/3d``,
  ``torch.matmul``/``@``/``torch.mm``, ``torch.addmm`` whose weight operand
  is a parameter of the model (a ``get_attr`` of an ``nn.Parameter``, or
  for the torch.compile backend a placeholder whose value is one), possibly
  through ``.t()``/``.T``/``transpose``/``permute``. ``x @ W + b`` and
  ``matmul(x, W) + b`` fold the add of a 1-D bias parameter into the layer.

Each match is stored on its node as ``node.meta["fxanalog_match"]`` and
returned in graph order. Excluded layers (``options.exclude``) and weighted
modules that stay digital (``nn.LSTM``, ``nn.Embedding``, ...) are recorded
in ``options.records`` as ``"digital: <reason>"``; so are matmuls whose
parameter operand cannot be put on a tile (a parameter as the left operand,
a weight that is not 2-D). The graph itself is not changed.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import fx, nn

from .layers import DIGITAL_REASONS, CompileOptions, builtin_class_for, digital_reason, record

__all__ = ["Match", "match", "get_attr_param"]

_LINEAR = {F.linear, torch._C._nn.linear}
_CONV = {F.conv1d: 1, F.conv2d: 2, F.conv3d: 3, torch.conv1d: 1, torch.conv2d: 2, torch.conv3d: 3}
_MATMUL = {operator.matmul, torch.matmul, torch.mm}
_MATMUL_METHODS = {"matmul", "mm", "__matmul__"}
_ADD = {operator.add, torch.add}
_RECURRENT = {torch.lstm: "LSTM", torch.gru: "GRU", torch.rnn_tanh: "RNN", torch.rnn_relu: "RNN"}
_OTHER_MATMULS = {torch.bmm, torch.einsum, torch.baddbmm, F.bilinear, torch.addmv, torch.mv}


@dataclass
class Match:
    """One weight matmul found in the graph."""

    node: fx.Node  # the node that computes the layer's output (the add when a bias is folded)
    name: str  # the layer's name in the analog model
    kind: str  # "Linear", "Conv2d", "MultiheadAttention", "F.linear", "matmul", "addmm", "F.conv2d", ...
    converted_by: str  # "module" | "functional" | "conversion_map"
    source: str  # the module path or the weight parameter's path
    replacement: type  # the class built by the rewrite
    module: Optional[nn.Module] = None  # the digital module (module matches)
    x: Optional[fx.Node] = None  # the input (functional matches)
    weight: Optional[nn.Parameter] = None
    bias: Optional[nn.Parameter] = None
    bias_path: str = ""
    transposed: bool = False  # the weight is stored (in, out)
    params: dict = field(default_factory=dict)  # stride, padding, ... of a functional conv or attention
    erase: list = field(default_factory=list)  # nodes replaced by the layer (in order)
    rpu_config: Any = None
    install: str = "replace"  # "replace" the module at `name` | "add" a new submodule
    plan: list = field(default_factory=list)  # filled by the map pass
    new_args: Optional[tuple] = None  # the analog call's arguments when not (x,)
    new_kwargs: dict = field(default_factory=dict)


def _resolve_attr(gm: fx.GraphModule, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def get_attr_param(gm: fx.GraphModule) -> Callable:
    """``param_of`` for fx graphs: a ``get_attr`` of an ``nn.Parameter``."""

    def param_of(node: Any):
        if isinstance(node, fx.Node) and node.op == "get_attr":
            value = _resolve_attr(gm, node.target)
            if isinstance(value, nn.Parameter):
                return value, node.target
        return None

    return param_of


def _arg(node: fx.Node, index: int, name: str, default=None):
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _is_transpose(node: fx.Node) -> Optional[fx.Node]:
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


def _weight(node: Any, param_of: Callable):
    """(parameter, path, flipped, chain) of a weight operand seen through transposes."""
    flipped, chain = False, []
    while True:
        found = param_of(node)
        if found is not None:
            return found[0], found[1], flipped, chain
        inner = _is_transpose(node)
        if inner is None:
            return None
        chain.append(node)
        flipped = not flipped
        node = inner


def _bias_of(node: Any, param_of: Callable, size: int):
    found = param_of(node)
    if found is not None and found[0].dim() == 1 and found[0].shape[0] == size:
        return found
    return None


def _fold_add(mm: fx.Node, param_of: Callable, size: int):
    """The add node that directly follows ``mm`` with a bias parameter, and the bias."""
    if len(mm.users) != 1:
        return None
    add = next(iter(mm.users))
    is_add = (add.op == "call_function" and add.target in _ADD) or (add.op == "call_method" and add.target == "add")
    if not is_add or "alpha" in add.kwargs or len(add.args) != 2:
        return None
    other = add.args[1] if add.args[0] is mm else add.args[0]
    found = _bias_of(other, param_of, size)
    return None if found is None else (add, found)


def _owner(path: str) -> tuple[str, str]:
    owner, _, pname = path.rpartition(".")
    return owner, pname


def match(gm: fx.GraphModule, options: CompileOptions, param_of: Optional[Callable] = None,
          prefix: str = "") -> list[Match]:
    """See the module docstring. ``prefix`` is the graph's path in the whole
    model (for names in records and for ``exclude``)."""
    param_of = param_of or get_attr_param(gm)
    module_targets = {n.target for n in gm.graph.nodes if n.op == "call_module"}
    matches: list[Match] = []
    taken: set[str] = set()
    for node in list(gm.graph.nodes):
        if node.op == "call_module":
            m = _match_module(gm, node, options, prefix)
        elif node.op in ("call_function", "call_method"):
            m = _match_functional(gm, node, options, param_of, prefix)
        else:
            m = None
        if m is None:
            continue
        if m.converted_by == "functional":
            m.name = _functional_name(gm, m, module_targets, taken)
        taken.add(m.name)
        full = prefix + m.name
        pat = options.excluded_by(full, prefix + m.source)
        if pat is not None:
            options.records.append(record(full, m.kind, f"digital: excluded by {pat!r}", prefix + m.source,
                                          m.weight.shape if m.weight is not None else _module_shape(m.module)))
            continue
        m.rpu_config = options.config_for(full, m.module if m.module is not None else _owner_module(gm, m.source))
        m.node.meta["fxanalog_match"] = m
        matches.append(m)
    return matches


def _module_shape(module):
    for attr in ("weight", "in_proj_weight", "weight_ih_l0", "weight_ih"):
        w = getattr(module, attr, None)
        if isinstance(w, torch.Tensor):
            return w.shape
    return None


def _owner_module(gm: fx.GraphModule, path: str):
    owner, _ = _owner(path)
    try:
        return gm.get_submodule(owner) if owner else gm
    except AttributeError:
        return None


def _match_module(gm, node, options: CompileOptions, prefix: str) -> Optional[Match]:
    module = gm.get_submodule(node.target)
    kind = type(module).__name__
    repl = options.mapped_class(module)
    if repl is not None:
        return Match(node, node.target, kind, "conversion_map", node.target, repl, module=module, erase=[node])
    repl = builtin_class_for(module)
    if repl is not None:
        return Match(node, node.target, kind, "module", node.target, repl, module=module, erase=[node])
    reason = digital_reason(module)
    if reason is not None:
        full = prefix + node.target
        options.all_names.append(full)
        options.records.append(record(full, kind, f"digital: {reason}", full, _module_shape(module)))
    return None


def _match_functional(gm, node, options: CompileOptions, param_of, prefix: str) -> Optional[Match]:
    from fxanalog.nn.modules import AnalogConv1d, AnalogConv2d, AnalogConv3d, AnalogLinear

    t = node.target
    fn = node.op == "call_function"
    if fn and t in _LINEAR:
        w = _weight(_arg(node, 1, "weight"), param_of)
        if w is None or w[0].dim() != 2:
            return _unsupported(node, options, param_of, prefix)
        param, path, flipped, chain = w
        b = _arg(node, 2, "bias")
        bias = _bias_of(b, param_of, param.shape[0] if not flipped else param.shape[1]) if b is not None else None
        if b is not None and bias is None:
            return _unsupported(node, options, param_of, prefix, "the bias is not a parameter")
        out = param.shape[1] if flipped else param.shape[0]
        m = Match(node, "", "F.linear", "functional", path, AnalogLinear, x=_arg(node, 0, "input"),
                  weight=param, transposed=flipped, erase=[node])
        if bias is None:
            folded = _fold_add(node, param_of, out)
            if folded is not None:
                m.node, bias = folded[0], folded[1]
                m.erase.append(folded[0])
        if bias is not None:
            m.bias, m.bias_path = bias
        return m
    if fn and t in _CONV:
        nd = _CONV[t]
        found = param_of(_arg(node, 1, "weight"))
        if found is None or found[0].dim() != nd + 2:
            return _unsupported(node, options, param_of, prefix)
        b = _arg(node, 2, "bias")
        bias = _bias_of(b, param_of, found[0].shape[0]) if b is not None else None
        if b is not None and bias is None:
            return _unsupported(node, options, param_of, prefix, "the bias is not a parameter")
        conv = {"stride": _arg(node, 3, "stride", 1), "padding": _arg(node, 4, "padding", 0),
                "dilation": _arg(node, 5, "dilation", 1), "groups": _arg(node, 6, "groups", 1)}
        if any(isinstance(v, fx.Node) for v in conv.values()):
            return _unsupported(node, options, param_of, prefix, "conv arguments computed in the graph")
        cls = {1: AnalogConv1d, 2: AnalogConv2d, 3: AnalogConv3d}[nd]
        m = Match(node, "", f"F.conv{nd}d", "functional", found[1], cls, x=_arg(node, 0, "input"),
                  weight=found[0], params=conv, erase=[node])
        if bias is not None:
            m.bias, m.bias_path = bias
        return m
    is_mm = (fn and t in _MATMUL) or (node.op == "call_method" and t in _MATMUL_METHODS)
    if is_mm and len(node.args) >= 2:
        w = _weight(node.args[1], param_of)
        if w is None or w[0].dim() != 2:
            if _weight(node.args[0], param_of) is not None:
                return _unsupported(node, options, param_of, prefix, "the parameter is the left operand")
            if _derived_param(node.args[1], param_of) is not None:
                return _unsupported(node, options, param_of, prefix)
            return None
        param, path, flipped, chain = w
        # x @ W: W stored (in, out) unless seen through a transpose.
        out = param.shape[0] if flipped else param.shape[1]
        kind = "matmul" if t in (operator.matmul, torch.matmul, "matmul", "__matmul__") else "mm"
        m = Match(node, "", kind, "functional", path, AnalogLinear, x=node.args[0], weight=param,
                  transposed=not flipped, erase=[node])
        folded = _fold_add(node, param_of, out)
        if folded is not None:
            m.node = folded[0]
            m.bias, m.bias_path = folded[1]
            m.erase.append(folded[0])
        return m
    is_addmm = (fn and t is torch.addmm) or (node.op == "call_method" and t == "addmm")
    if is_addmm:
        if node.kwargs.get("beta", 1) != 1 or node.kwargs.get("alpha", 1) != 1:
            return _unsupported(node, options, param_of, prefix, "addmm with beta or alpha != 1")
        b, x, wn = (node.args + (None, None, None))[:3]
        w = _weight(wn, param_of)
        if w is None or w[0].dim() != 2:
            return _unsupported(node, options, param_of, prefix)
        param, path, flipped, chain = w
        out = param.shape[0] if flipped else param.shape[1]
        bias = _bias_of(b, param_of, out)
        if bias is None:
            return _unsupported(node, options, param_of, prefix, "the added term is not a bias parameter")
        m = Match(node, "", "addmm", "functional", path, AnalogLinear, x=x, weight=param,
                  transposed=not flipped, erase=[node])
        m.bias, m.bias_path = bias
        return m
    if fn and t is F.multi_head_attention_forward:
        return _match_attention(node, options, param_of, prefix)
    if fn and t is torch._native_multi_head_attention:
        return _unsupported(node, options, param_of, prefix, "fused attention fast path (eval without "
                            "gradients); run with gradients enabled, or convert with fxanalog.compile")
    if fn and t in _RECURRENT:
        for a in node.args:
            if isinstance(a, (list, tuple)) and a and param_of(a[0]) is not None:
                path = param_of(a[0])[1]
                name = prefix + path.rpartition(".")[0]
                options.all_names.append(name)
                options.records.append(record(name, _RECURRENT[t], f"digital: {DIGITAL_REASONS[0][1]}",
                                              name, param_of(a[0])[0].shape))
        return None
    if fn and t in _OTHER_MATMULS:
        return _unsupported(node, options, param_of, prefix, f"{getattr(t, '__name__', t)} is not converted")
    return None


_MHA_ARGS = ("query", "key", "value", "embed_dim_to_check", "num_heads", "in_proj_weight", "in_proj_bias",
             "bias_k", "bias_v", "add_zero_attn", "dropout_p", "out_proj_weight", "out_proj_bias", "training",
             "key_padding_mask", "need_weights", "attn_mask", "use_separate_proj_weight", "q_proj_weight",
             "k_proj_weight", "v_proj_weight", "static_k", "static_v", "average_attn_weights", "is_causal")
_MHA_DEFAULTS = {"training": True, "key_padding_mask": None, "need_weights": True, "attn_mask": None,
                 "use_separate_proj_weight": False, "static_k": None, "static_v": None,
                 "average_attn_weights": True, "is_causal": False}


def _match_attention(node, options, param_of, prefix) -> Optional[Match]:
    """``F.multi_head_attention_forward`` (what dynamo records for
    ``nn.MultiheadAttention``) with packed projection parameters."""
    from fxanalog.nn.attention import AnalogMultiheadAttention

    a = {n: _arg(node, i, n, _MHA_DEFAULTS.get(n)) for i, n in enumerate(_MHA_ARGS)}
    params = {}
    for key in ("in_proj_weight", "in_proj_bias", "out_proj_weight", "out_proj_bias", "bias_k", "bias_v"):
        found = param_of(a[key]) if a[key] is not None else None
        if a[key] is not None and found is None:
            return _unsupported(node, options, param_of, prefix, f"attention {key} is not a parameter")
        params[key] = None if found is None else found[0]
    constants = ("num_heads", "add_zero_attn", "dropout_p", "training", "need_weights", "average_attn_weights",
                 "is_causal", "use_separate_proj_weight")
    if any(isinstance(a[k], fx.Node) for k in constants) or a["use_separate_proj_weight"] \
            or a["static_k"] is not None or a["static_v"] is not None or params["in_proj_weight"] is None:
        return _unsupported(node, options, param_of, prefix, "attention with separate or static projections")
    params.update(num_heads=a["num_heads"], add_zero_attn=a["add_zero_attn"], dropout=a["dropout_p"],
                  training=a["training"])
    source = param_of(a["in_proj_weight"])[1]
    m = Match(node, "", "F.multi_head_attention_forward", "functional", source, AnalogMultiheadAttention,
              weight=params["in_proj_weight"], params=params, erase=[node])
    m.new_args = (a["query"], a["key"], a["value"])
    m.new_kwargs = {k: a[k] for k in ("key_padding_mask", "need_weights", "attn_mask", "average_attn_weights",
                                      "is_causal")}
    return m


def _derived_param(node: Any, param_of: Callable, depth: int = 3):
    """A >= 2-D parameter that ``node`` is computed from (within ``depth``
    ops, e.g. ``W * mask``), or None."""
    found = _weight(node, param_of)
    if found is not None:
        return found if found[0].dim() >= 2 else None
    if depth == 0 or not isinstance(node, fx.Node) or node.op not in ("call_function", "call_method"):
        return None
    for a in node.all_input_nodes:
        found = _derived_param(a, param_of, depth - 1)
        if found is not None:
            return found
    return None


def _unsupported(node, options, param_of, prefix, why: str = "") -> None:
    """Record a matmul with a parameter operand that stays digital."""
    for a in list(node.args) + list(node.kwargs.values()):
        found = _weight(a, param_of)
        derived = found is None
        if derived:
            found = _derived_param(a, param_of)
        if found is not None and found[0].dim() >= 2:
            what = why or (f"weight computed from parameter {found[1]} (not the parameter itself)" if derived
                           else f"weight of shape {tuple(found[0].shape)} cannot be put on a tile")
            fname = getattr(node.target, "__name__", str(node.target))
            options.all_names.append(prefix + found[1])
            options.records.append(record(prefix + found[1], fname, f"digital: {what}", prefix + found[1],
                                          found[0].shape))
            return None
    return None


def _functional_name(gm: fx.GraphModule, m: Match, module_targets: set, taken: set) -> str:
    """The analog layer's name: the weight's owner module when the layer can
    take its place (a HuggingFace ``Conv1D``: ``h.0.attn.c_attn``), else a new
    top-level ``analog_<weight path>`` submodule."""
    owner, pname = _owner(m.source)
    if m.converted_by == "functional" and pname == "weight" and owner and owner not in taken:
        below = {n.target for n in gm.graph.nodes if n.op in ("get_attr", "call_module")
                 and (n.target == owner or n.target.startswith(owner + "."))}
        allowed = {m.source} | ({m.bias_path} if m.bias_path == owner + ".bias" else set())
        called = any(owner == t or owner.startswith(t + ".") for t in module_targets)
        if below <= allowed and not called and m.source in below:
            owner_mod = gm.get_submodule(owner)
            has_other = any(k not in ("weight", "bias") for k in owner_mod._parameters) or owner_mod._buffers or \
                owner_mod._modules or ("bias" in owner_mod._parameters and owner + ".bias" not in allowed)
            if not has_other:
                m.install = "replace"
                return owner
    base = "analog_" + m.source.replace(".", "_")
    name, k = base, 1
    while name in taken or hasattr(gm, name):
        name, k = f"{base}_{k}", k + 1
    m.install = "add"
    return name
