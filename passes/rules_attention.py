"""The rules of ``nn.MultiheadAttention``: everything attention-specific in
the compiler is here.

* ``MHA``: the module (``fxanalog.compile`` keeps it whole as a leaf) becomes
  ``AnalogMultiheadAttention.from_digital``: two tile layers, ``in_proj``
  (the packed 3E x E weight) and ``out_proj``, or four with separate q/k/v
  weights (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``).
* ``F_MHA``: ``F.multi_head_attention_forward`` (what dynamo records for
  ``nn.MultiheadAttention``) with packed projection parameters becomes
  ``AnalogMultiheadAttention.from_parameters`` around them, called with
  (query, key, value) and the masks.
* ``NATIVE_MHA`` and ``ENCODER_LAYER``: torch's fused fast paths (eval
  without gradients, what dynamo records): ``torch._native_multi_head_attention``
  becomes an ``AnalogNativeAttention`` and ``torch._transformer_encoder_layer_fwd``
  an ``AnalogEncoderLayer`` that computes the same with its matmuls on tiles
  (each tile layer's record named after its own weight). Merged masks
  (mask type 2) stay digital, with the reason.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn

from fxanalog.nn.attention import AnalogMultiheadAttention
from fxanalog.nn.modules import AnalogLinear

from .rules import LayerRule, Match, arg, register_builtin, unsupported

__all__ = ["MHA", "F_MHA", "ENCODER_LAYER", "NATIVE_MHA", "AnalogEncoderLayer", "AnalogNativeAttention"]


def _module_tiles(m: Match) -> list:
    mod = m.module
    E = mod.embed_dim
    if mod._qkv_same_embed_dim:
        subs = [("in_proj", mod.in_proj_weight.shape, 1)]
    else:
        subs = [("q_proj", mod.q_proj_weight.shape, 1), ("k_proj", mod.k_proj_weight.shape, 1),
                ("v_proj", mod.v_proj_weight.shape, 1)]
    return subs + [("out_proj", (E, E), 1)]


MHA = LayerRule("MultiheadAttention", modules=(nn.MultiheadAttention,), analog_class=AnalogMultiheadAttention,
                tile_shapes=_module_tiles)

_ARGS = ("query", "key", "value", "embed_dim_to_check", "num_heads", "in_proj_weight", "in_proj_bias",
         "bias_k", "bias_v", "add_zero_attn", "dropout_p", "out_proj_weight", "out_proj_bias", "training",
         "key_padding_mask", "need_weights", "attn_mask", "use_separate_proj_weight", "q_proj_weight",
         "k_proj_weight", "v_proj_weight", "static_k", "static_v", "average_attn_weights", "is_causal")
_DEFAULTS = {"training": True, "key_padding_mask": None, "need_weights": True, "attn_mask": None,
             "use_separate_proj_weight": False, "static_k": None, "static_v": None,
             "average_attn_weights": True, "is_causal": False}
_CONSTANTS = ("num_heads", "add_zero_attn", "dropout_p", "training", "need_weights", "average_attn_weights",
              "is_causal", "use_separate_proj_weight")


def _match_functional(node: fx.Node, param_of):
    """``F.multi_head_attention_forward`` with packed projection parameters."""
    a = {n: arg(node, i, n, _DEFAULTS.get(n)) for i, n in enumerate(_ARGS)}
    params = {}
    for key in ("in_proj_weight", "in_proj_bias", "out_proj_weight", "out_proj_bias", "bias_k", "bias_v"):
        found = param_of(a[key]) if a[key] is not None else None
        if a[key] is not None and found is None:
            return unsupported(node, param_of, f"attention {key} is not a parameter")
        params[key] = None if found is None else found[0]
    if any(isinstance(a[k], fx.Node) for k in _CONSTANTS) or a["use_separate_proj_weight"] \
            or a["static_k"] is not None or a["static_v"] is not None or params["in_proj_weight"] is None:
        return unsupported(node, param_of, "attention with separate or static projections")
    params.update(num_heads=a["num_heads"], add_zero_attn=a["add_zero_attn"], dropout=a["dropout_p"])
    sources = {"in_proj": param_of(a["in_proj_weight"])[1]}
    if a["out_proj_weight"] is not None and param_of(a["out_proj_weight"]) is not None:
        sources["out_proj"] = param_of(a["out_proj_weight"])[1]
    params["sources"] = sources
    kwargs = {k: a[k] for k in ("key_padding_mask", "need_weights", "attn_mask", "average_attn_weights", "is_causal")}
    return Match(node, F_MHA, "F.multi_head_attention_forward", param_of(a["in_proj_weight"])[1],
                 weight=params["in_proj_weight"], params=params, args=(a["query"], a["key"], a["value"]),
                 kwargs=kwargs, erase=[node], training=a["training"])


def _functional_tiles(m: Match) -> list:
    E = m.weight.shape[1]
    return [("in_proj", m.weight.shape, 1), ("out_proj", (E, E), 1)]


def _build_functional(m: Match, mapped: bool) -> nn.Module:
    p = m.params
    return AnalogMultiheadAttention.from_parameters(
        p["num_heads"], p["in_proj_weight"], p["in_proj_bias"], p["out_proj_weight"], p["out_proj_bias"],
        p["bias_k"], p["bias_v"], p["add_zero_attn"], p["dropout"], m.rpu_config, mapped=mapped)


F_MHA = LayerRule("F.multi_head_attention_forward", functions=(F.multi_head_attention_forward,),
                  match=_match_functional, analog_class=AnalogMultiheadAttention, tile_shapes=_functional_tiles,
                  build=_build_functional)
# -- torch's fused fast paths (eval without gradients, as dynamo records them) ----------

_ENC_ARGS = ("src", "embed_dim", "num_heads", "qkv_weight", "qkv_bias", "proj_weight", "proj_bias", "use_gelu",
             "norm_first", "eps", "norm_weight_1", "norm_bias_1", "norm_weight_2", "norm_bias_2", "ffn_weight_1",
             "ffn_bias_1", "ffn_weight_2", "ffn_bias_2", "mask", "mask_type")
_ENC_PARAMS = ("qkv_weight", "qkv_bias", "proj_weight", "proj_bias", "norm_weight_1", "norm_bias_1",
               "norm_weight_2", "norm_bias_2", "ffn_weight_1", "ffn_bias_1", "ffn_weight_2", "ffn_bias_2")


class AnalogEncoderLayer(nn.Module):
    """What ``torch._transformer_encoder_layer_fwd`` (the fast path of
    ``nn.TransformerEncoderLayer`` in eval without gradients, batch first)
    computes, with its four matmuls on tiles: ``self_attn`` (an
    ``AnalogMultiheadAttention`` with ``in_proj`` and ``out_proj``),
    ``linear1``, ``linear2``; the layer norms and the activation in
    digital, no dropout (eval). ``sources``: each tile layer's weight path."""

    def __init__(self, p: dict, rpu_config, mapped: bool, sources: dict):
        super().__init__()
        self.self_attn = AnalogMultiheadAttention.from_parameters(
            p["num_heads"], p["qkv_weight"], p["qkv_bias"], p["proj_weight"], p["proj_bias"],
            rpu_config=rpu_config, mapped=mapped)
        w1, w2 = p["ffn_weight_1"], p["ffn_weight_2"]
        self.linear1 = AnalogLinear(w1.shape[1], w1.shape[0], p["ffn_bias_1"] is not None, rpu_config, mapped=mapped,
                                    weight=w1, bias_param=p["ffn_bias_1"])
        self.linear2 = AnalogLinear(w2.shape[1], w2.shape[0], p["ffn_bias_2"] is not None, rpu_config, mapped=mapped,
                                    weight=w2, bias_param=p["ffn_bias_2"])
        self.norms = [(p["norm_weight_1"], p["norm_bias_1"]), (p["norm_weight_2"], p["norm_bias_2"])]
        self.use_gelu, self.norm_first, self.eps = p["use_gelu"], p["norm_first"], p["eps"]
        self.sources = dict(sources)

    def _norm(self, x, i):
        w, b = self.norms[i]
        return F.layer_norm(x, (x.shape[-1],), w, b, self.eps)

    def _sa(self, x, mask, mask_type):
        q = x.transpose(0, 1)
        kpm = mask if mask_type == 1 else None
        am = mask if mask_type == 0 else None
        return self.self_attn(q, q, q, key_padding_mask=kpm, attn_mask=am, need_weights=False)[0].transpose(0, 1)

    def _ff(self, x):
        h = self.linear1(x)
        return self.linear2(F.gelu(h) if self.use_gelu else F.relu(h))

    def forward(self, src, mask=None, mask_type=None):
        x = src
        if self.norm_first:
            x = x + self._sa(self._norm(x, 0), mask, mask_type)
            return x + self._ff(self._norm(x, 1))
        x = self._norm(x + self._sa(x, mask, mask_type), 0)
        return self._norm(x + self._ff(x), 1)


def _match_encoder_layer(node: fx.Node, param_of):
    a = {n: arg(node, i, n) for i, n in enumerate(_ENC_ARGS)}
    params, paths = {}, {}
    for key in _ENC_PARAMS:
        found = param_of(a[key]) if a[key] is not None else None
        if a[key] is not None and found is None:
            return unsupported(node, param_of, f"encoder layer fast path: {key} is not a parameter")
        params[key], paths[key] = (None, None) if found is None else found
    consts = ("embed_dim", "num_heads", "use_gelu", "norm_first", "eps", "mask_type")
    if any(isinstance(a[k], fx.Node) for k in consts) or a["mask_type"] not in (None, 0, 1):
        return unsupported(node, param_of, "encoder layer fast path with merged masks or computed arguments")
    if a["mask"] is not None and a["mask_type"] is None:
        return unsupported(node, param_of, "encoder layer fast path: a mask without its type")
    params.update({k: a[k] for k in ("num_heads", "use_gelu", "norm_first", "eps")})
    sources = {"self_attn.in_proj": paths["qkv_weight"], "self_attn.out_proj": paths["proj_weight"],
               "linear1": paths["ffn_weight_1"], "linear2": paths["ffn_weight_2"]}
    params["sources"] = sources
    return Match(node, ENCODER_LAYER, "TransformerEncoderLayer fast path", paths["qkv_weight"],
                 weight=params["qkv_weight"], params=params, args=(a["src"],),
                 kwargs={"mask": a["mask"], "mask_type": a["mask_type"]}, erase=[node], training=False)


def _encoder_tiles(m: Match) -> list:
    p = m.params
    E = p["proj_weight"].shape[0]
    return [("self_attn.in_proj", p["qkv_weight"].shape, 1), ("self_attn.out_proj", (E, E), 1),
            ("linear1", p["ffn_weight_1"].shape, 1), ("linear2", p["ffn_weight_2"].shape, 1)]


def _build_encoder_layer(m: Match, mapped: bool) -> nn.Module:
    return AnalogEncoderLayer(m.params, m.rpu_config, mapped, m.params["sources"])


ENCODER_LAYER = LayerRule("TransformerEncoderLayer fast path", functions=(torch._transformer_encoder_layer_fwd,),
                          match=_match_encoder_layer, analog_class=AnalogEncoderLayer, tile_shapes=_encoder_tiles,
                          build=_build_encoder_layer)

_NATIVE_ARGS = ("query", "key", "value", "embed_dim", "num_head", "qkv_weight", "qkv_bias", "proj_weight",
                "proj_bias", "mask", "need_weights", "average_attn_weights", "mask_type")


class AnalogNativeAttention(nn.Module):
    """What ``torch._native_multi_head_attention`` (the fast path of
    ``nn.MultiheadAttention`` in eval without gradients, batch first)
    computes, on an ``AnalogMultiheadAttention`` (``attn``)."""

    def __init__(self, attn: AnalogMultiheadAttention, sources: dict):
        super().__init__()
        self.attn = attn
        self.sources = dict(sources)

    def forward(self, query, key, value, mask=None, need_weights=True, average_attn_weights=True, mask_type=None):
        q, k, v = (t.transpose(0, 1) for t in (query, key, value))
        kpm = mask if mask_type == 1 else None
        am = mask if mask_type == 0 else None
        out, w = self.attn(q, k, v, key_padding_mask=kpm, attn_mask=am, need_weights=need_weights,
                           average_attn_weights=average_attn_weights)
        return out.transpose(0, 1), w


def _match_native(node: fx.Node, param_of):
    a = {n: arg(node, i, n, {"need_weights": True, "average_attn_weights": True}.get(n))
         for i, n in enumerate(_NATIVE_ARGS)}
    params, paths = {}, {}
    for key in ("qkv_weight", "qkv_bias", "proj_weight", "proj_bias"):
        found = param_of(a[key]) if a[key] is not None else None
        if a[key] is not None and found is None:
            return unsupported(node, param_of, f"attention fast path: {key} is not a parameter")
        params[key], paths[key] = (None, None) if found is None else found
    if any(isinstance(a[k], fx.Node) for k in ("num_head", "need_weights", "average_attn_weights", "mask_type")) \
            or a["mask_type"] not in (None, 0, 1):
        return unsupported(node, param_of, "attention fast path with merged masks or computed arguments")
    params.update(num_heads=a["num_head"], sources={"attn.in_proj": paths["qkv_weight"],
                                                    "attn.out_proj": paths["proj_weight"]})
    return Match(node, NATIVE_MHA, "MultiheadAttention fast path", paths["qkv_weight"], weight=params["qkv_weight"],
                 params=params, args=(a["query"], a["key"], a["value"]),
                 kwargs={"mask": a["mask"], "need_weights": a["need_weights"],
                         "average_attn_weights": a["average_attn_weights"], "mask_type": a["mask_type"]},
                 erase=[node], training=False)


def _native_tiles(m: Match) -> list:
    E = m.params["proj_weight"].shape[0]
    return [("attn.in_proj", m.weight.shape, 1), ("attn.out_proj", (E, E), 1)]


def _build_native(m: Match, mapped: bool) -> nn.Module:
    p = m.params
    attn = AnalogMultiheadAttention.from_parameters(p["num_heads"], p["qkv_weight"], p["qkv_bias"],
                                                    p["proj_weight"], p["proj_bias"], rpu_config=m.rpu_config,
                                                    mapped=mapped)
    return AnalogNativeAttention(attn, p["sources"])


NATIVE_MHA = LayerRule("MultiheadAttention fast path", functions=(torch._native_multi_head_attention,),
                       match=_match_native, analog_class=AnalogNativeAttention, tile_shapes=_native_tiles,
                       build=_build_native)

register_builtin(MHA, F_MHA, ENCODER_LAYER, NATIVE_MHA)
