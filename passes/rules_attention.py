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
* ``FUSED_MHA``: torch's fused fast path (``torch._native_multi_head_attention``,
  eval without gradients) cannot be seen into: digital, with the reason.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn

from fxanalog.nn.attention import AnalogMultiheadAttention

from .rules import LayerRule, Match, arg, register_builtin, unsupported

__all__ = ["MHA", "F_MHA", "FUSED_MHA"]


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
FUSED_MHA = LayerRule("fused attention", functions=(torch._native_multi_head_attention,),
                      digital_reason="fused attention fast path (eval without gradients); run with gradients "
                                     "enabled, or convert with fxanalog.compile")

register_builtin(MHA, F_MHA, FUSED_MHA)
