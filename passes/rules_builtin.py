"""The built-in layer rules (``nn.MultiheadAttention``'s are in
``rules_attention``). In the order they are consulted:

=================  ===========================================  ==============================
rule               matches                                      becomes
=================  ===========================================  ==============================
Linear             ``nn.Linear`` and subclasses keeping its     ``AnalogLinear``
                   ``forward``
Conv1d/2d/3d       ``nn.ConvNd`` and subclasses keeping its     ``AnalogConvNd``
                   ``forward``
F.linear           ``F.linear(x, W[, b])`` (``W`` possibly      ``AnalogLinear``
                   transposed; ``+ b`` folded)
F.conv1d/2d/3d     ``F.convNd`` / ``torch.convNd`` on a weight  ``AnalogConvNd``
matmul             ``x @ W``, ``torch.matmul``, ``torch.mm``,   ``AnalogLinear`` (transposed
                   ``.matmul``/``.mm`` (``+ b`` folded)         unless ``W`` is seen as ``.t()``)
addmm              ``torch.addmm(b, x, W)`` (HuggingFace's      ``AnalogLinear`` (transposed)
                   ``Conv1D``)
recurrent          ``nn.RNN/LSTM/GRU`` (and cells),             digital
                   ``torch.lstm/gru/rnn_*``
transposed conv,   ``nn.ConvTransposeNd``, ``nn.Bilinear``,     digital
bilinear,          ``nn.Embedding(Bag)``
embedding
other matmuls      ``bmm``, ``einsum``, ``baddbmm``,            digital
                   ``F.bilinear``, ``addmv``, ``mv`` on a
                   parameter
=================  ===========================================  ==============================

A weight is a parameter of the model (a ``get_attr`` of an
``nn.Parameter``, or for the torch.compile backend a placeholder whose value
is one). A matmul whose parameter operand cannot be put on a tile (the left
operand, a weight computed from a parameter, not 2-D) stays digital, with
the reason.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from fxanalog.nn.modules import AnalogConv1d, AnalogConv2d, AnalogConv3d, AnalogLinear

from .rules import (
    Digital,
    LayerRule,
    Match,
    arg,
    bias_operand,
    derived_param,
    fold_bias_add,
    register_builtin,
    unsupported,
    weight_operand,
)

__all__ = ["LINEAR", "CONV", "F_LINEAR", "F_CONV", "MATMUL", "ADDMM", "DIGITAL_MODULES", "DIGITAL_FUNCTIONS"]


def _module_tiles(m: Match) -> list:
    return [("", m.module.weight.shape, getattr(m.module, "groups", 1))]


def _functional_tiles(m: Match) -> list:
    shape = m.weight.shape
    if m.transposed:
        shape = (shape[1], shape[0])
    return [("", shape, m.params.get("groups", 1))]


def _build_linear(m: Match, mapped: bool) -> nn.Module:
    w = m.weight
    n_in, n_out = (w.shape[0], w.shape[1]) if m.transposed else (w.shape[1], w.shape[0])
    return AnalogLinear(n_in, n_out, m.bias is not None, m.rpu_config, mapped=mapped, transposed=m.transposed,
                        weight=w, bias_param=m.bias)


def _build_conv(cls: type):
    def build(m: Match, mapped: bool) -> nn.Module:
        w, c = m.weight, m.params
        return cls(w.shape[1] * c["groups"], w.shape[0], tuple(w.shape[2:]), c["stride"], c["padding"],
                   c["dilation"], c["groups"], m.bias is not None, "zeros", m.rpu_config, mapped=mapped,
                   weight=w, bias_param=m.bias)

    return build


# -- modules ---------------------------------------------------------------------


def _keeps_forward(base: type):
    """A subclass that overrides ``forward`` is traced through instead (the
    functional matmuls inside it are matched)."""
    return lambda module: type(module).forward is base.forward


LINEAR = LayerRule("Linear", modules=(nn.Linear,), applies=_keeps_forward(nn.Linear), analog_class=AnalogLinear,
                   tile_shapes=_module_tiles)
CONV = tuple(LayerRule(digital.__name__, modules=(digital,), applies=_keeps_forward(digital), analog_class=cls,
                       tile_shapes=_module_tiles)
             for digital, cls in ((nn.Conv1d, AnalogConv1d), (nn.Conv2d, AnalogConv2d), (nn.Conv3d, AnalogConv3d)))

# -- functional matmuls -------------------------------------------------------------


def _match_linear(node: fx.Node, param_of):
    w = weight_operand(arg(node, 1, "weight"), param_of)
    if w is None or w[0].dim() != 2:
        return unsupported(node, param_of)
    param, path, flipped = w
    b = arg(node, 2, "bias")
    out = param.shape[1] if flipped else param.shape[0]
    bias = bias_operand(b, param_of, out) if b is not None else None
    if b is not None and bias is None:
        return unsupported(node, param_of, "the bias is not a parameter")
    m = Match(node, F_LINEAR, "F.linear", path, weight=param, transposed=flipped, args=(arg(node, 0, "input"),),
              erase=[node])
    if bias is None:
        folded = fold_bias_add(node, param_of, out)
        if folded is not None:
            m.node, bias = folded[0], folded[1]
            m.erase.append(folded[0])
    if bias is not None:
        m.bias, m.bias_path = bias
    return m


def _match_conv(nd: int):
    def match(node: fx.Node, param_of):
        found = param_of(arg(node, 1, "weight"))
        if found is None or found[0].dim() != nd + 2:
            return unsupported(node, param_of)
        b = arg(node, 2, "bias")
        bias = bias_operand(b, param_of, found[0].shape[0]) if b is not None else None
        if b is not None and bias is None:
            return unsupported(node, param_of, "the bias is not a parameter")
        conv = {"stride": arg(node, 3, "stride", 1), "padding": arg(node, 4, "padding", 0),
                "dilation": arg(node, 5, "dilation", 1), "groups": arg(node, 6, "groups", 1)}
        if any(isinstance(v, fx.Node) for v in conv.values()):
            return unsupported(node, param_of, "conv arguments computed in the graph")
        m = Match(node, F_CONV[nd - 1], f"F.conv{nd}d", found[1], weight=found[0], params=conv,
                  args=(arg(node, 0, "input"),), erase=[node])
        if bias is not None:
            m.bias, m.bias_path = bias
        return m

    return match


def _match_matmul(node: fx.Node, param_of):
    if len(node.args) < 2:
        return None
    w = weight_operand(node.args[1], param_of)
    if w is None or w[0].dim() != 2:
        if weight_operand(node.args[0], param_of) is not None:
            return unsupported(node, param_of, "the parameter is the left operand")
        if derived_param(node.args[1], param_of) is not None:
            return unsupported(node, param_of)
        return None
    param, path, flipped = w
    # x @ W: W stored (in, out) unless seen through a transpose.
    out = param.shape[0] if flipped else param.shape[1]
    kind = "mm" if node.target in (torch.mm, "mm") else "matmul"
    m = Match(node, MATMUL, kind, path, weight=param, transposed=not flipped, args=(node.args[0],), erase=[node])
    folded = fold_bias_add(node, param_of, out)
    if folded is not None:
        m.node = folded[0]
        m.bias, m.bias_path = folded[1]
        m.erase.append(folded[0])
    return m


def _match_addmm(node: fx.Node, param_of):
    if node.kwargs.get("beta", 1) != 1 or node.kwargs.get("alpha", 1) != 1:
        return unsupported(node, param_of, "addmm with beta or alpha != 1")
    b, x, wn = (node.args + (None, None, None))[:3]
    w = weight_operand(wn, param_of)
    if w is None or w[0].dim() != 2:
        return unsupported(node, param_of)
    param, path, flipped = w
    out = param.shape[0] if flipped else param.shape[1]
    bias = bias_operand(b, param_of, out)
    if bias is None:
        return unsupported(node, param_of, "the added term is not a bias parameter")
    m = Match(node, ADDMM, "addmm", path, weight=param, transposed=not flipped, args=(x,), erase=[node])
    m.bias, m.bias_path = bias
    return m


F_LINEAR = LayerRule("F.linear", functions=(F.linear, torch._C._nn.linear), match=_match_linear,
                     analog_class=AnalogLinear, tile_shapes=_functional_tiles, build=_build_linear)
F_CONV = tuple(LayerRule(f"F.conv{nd}d", functions=fns, match=_match_conv(nd), analog_class=cls,
                         tile_shapes=_functional_tiles, build=_build_conv(cls))
               for nd, fns, cls in ((1, (F.conv1d, torch.conv1d), AnalogConv1d),
                                    (2, (F.conv2d, torch.conv2d), AnalogConv2d),
                                    (3, (F.conv3d, torch.conv3d), AnalogConv3d)))
MATMUL = LayerRule("matmul", functions=(operator.matmul, torch.matmul, torch.mm),
                   methods=("matmul", "mm", "__matmul__"), match=_match_matmul, analog_class=AnalogLinear,
                   tile_shapes=_functional_tiles, build=_build_linear)
ADDMM = LayerRule("addmm", functions=(torch.addmm,), methods=("addmm",), match=_match_addmm,
                  analog_class=AnalogLinear, tile_shapes=_functional_tiles, build=_build_linear)

# -- digital ---------------------------------------------------------------------------

_RECURRENT_REASON = "recurrent layer (LSTM/GRU/RNN) is not converted in this version"
_RECURRENT = {torch.lstm: "LSTM", torch.gru: "GRU", torch.rnn_tanh: "RNN", torch.rnn_relu: "RNN"}

DIGITAL_MODULES = (
    LayerRule("recurrent", modules=(nn.RNNBase,), digital_reason=_RECURRENT_REASON),
    LayerRule("recurrent cell", modules=(nn.RNNCellBase,), digital_reason="recurrent cell is not converted in this version"),
    LayerRule("transposed conv", modules=(nn.modules.conv._ConvTransposeNd,),
              digital_reason="transposed convolution is not converted in this version"),
    LayerRule("bilinear", modules=(nn.Bilinear,), digital_reason="bilinear layer is not converted in this version"),
    LayerRule("embedding", modules=(nn.Embedding, nn.EmbeddingBag), digital_reason="embedding lookup (not a matmul)"),
)


def _match_recurrent(node: fx.Node, param_of):
    """``torch.lstm(...)`` (what dynamo records for ``nn.LSTM``): the layer
    is the owner of its first weight."""
    for a in node.args:
        if isinstance(a, (list, tuple)) and a and param_of(a[0]) is not None:
            param, path = param_of(a[0])
            return Digital(path.rpartition(".")[0], _RECURRENT[node.target], _RECURRENT_REASON, tuple(param.shape))
    return None


def _other_matmul(fn):
    return LayerRule(getattr(fn, "__name__", str(fn)), functions=(fn,),
                     digital_reason=f"{getattr(fn, '__name__', fn)} is not converted")


DIGITAL_FUNCTIONS = (
    LayerRule("recurrent functions", functions=tuple(_RECURRENT), match=_match_recurrent,
              digital_reason=_RECURRENT_REASON),
) + tuple(_other_matmul(fn) for fn in (torch.bmm, torch.einsum, torch.baddbmm, F.bilinear, torch.addmv, torch.mv))

register_builtin(LINEAR, *CONV, F_LINEAR, *F_CONV, MATMUL, ADDMM, *DIGITAL_MODULES, *DIGITAL_FUNCTIONS)
