"""``AnalogMultiheadAttention``: ``nn.MultiheadAttention`` with its input and
output projections on analog tiles.

The attention itself (scores, softmax, weighted sum) stays digital; the
projections are ``AnalogLinear`` layers: ``in_proj`` (the packed 3E x E
weight) or ``q_proj``/``k_proj``/``v_proj`` when key and value have their
own sizes, and ``out_proj``. The forward has ``nn.MultiheadAttention``'s
signature and semantics (``batch_first``, masks, ``need_weights``,
``average_attn_weights``, ``is_causal``, ``add_bias_kv``, ``add_zero_attn``,
dropout on the attention weights in training).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fxanalog.nn.modules import AnalogLinear

__all__ = ["AnalogMultiheadAttention"]


def _param(p: Optional[nn.Parameter], share: bool) -> Optional[nn.Parameter]:
    if p is None:
        return None
    return p if share else nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad)


def _additive(mask: Optional[Tensor], dtype: torch.dtype) -> Optional[Tensor]:
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    return mask.to(dtype)


class AnalogMultiheadAttention(nn.Module):
    """Multi-head attention whose projections compute on analog tiles."""

    # torch's fused transformer fast paths read this flag of the attention
    # module and skip the fused (digital) kernel when it is False: the
    # projections of this module must run through its analog layers.
    _qkv_same_embed_dim = False

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim=None, vdim=None,
                 batch_first: bool = False, rpu_config=None, *, mapped: bool = True, device=None, dtype=None):
        super().__init__()
        ref = nn.MultiheadAttention(embed_dim, num_heads, dropout, bias, add_bias_kv, add_zero_attn, kdim, vdim,
                                    batch_first, device=device, dtype=dtype)
        self._setup(ref, rpu_config, mapped, share=True)

    @classmethod
    def from_digital(cls, module: nn.MultiheadAttention, rpu_config=None, *, mapped: bool = True,
                     share: bool = False) -> "AnalogMultiheadAttention":
        """An analog copy of ``nn.MultiheadAttention``; ``share=True`` uses
        the module's own parameter tensors."""
        if not isinstance(module, nn.MultiheadAttention):
            raise TypeError(f"AnalogMultiheadAttention.from_digital: expected an nn.MultiheadAttention, "
                            f"got {type(module).__name__}")
        obj = cls.__new__(cls)
        nn.Module.__init__(obj)
        obj._setup(module, rpu_config, mapped, share)
        obj.train(module.training)
        return obj

    @classmethod
    def from_parameters(cls, num_heads: int, in_proj_weight: nn.Parameter, in_proj_bias, out_proj_weight,
                        out_proj_bias, bias_k=None, bias_v=None, add_zero_attn: bool = False, dropout: float = 0.0,
                        rpu_config=None, *, mapped: bool = True) -> "AnalogMultiheadAttention":
        """Around existing parameters (what ``F.multi_head_attention_forward``
        receives), inputs in (L, N, E) layout; no weight is copied."""
        E = out_proj_weight.shape[0]
        obj = cls.__new__(cls)
        nn.Module.__init__(obj)
        obj.embed_dim, obj.kdim, obj.vdim, obj.num_heads, obj.head_dim = E, E, E, num_heads, E // num_heads
        obj.dropout, obj.batch_first, obj.add_zero_attn, obj.packed = dropout, False, add_zero_attn, True
        obj.in_proj = AnalogLinear(E, 3 * E, in_proj_bias is not None, rpu_config, mapped=mapped,
                                   weight=in_proj_weight, bias_param=in_proj_bias)
        obj.in_proj_bias = None
        obj.out_proj = AnalogLinear(E, E, out_proj_bias is not None, rpu_config, mapped=mapped,
                                    weight=out_proj_weight, bias_param=out_proj_bias)
        obj.bias_k, obj.bias_v = bias_k, bias_v
        return obj

    def _setup(self, ref: nn.MultiheadAttention, rpu_config, mapped: bool, share: bool) -> None:
        E = ref.embed_dim
        self.embed_dim, self.kdim, self.vdim = E, ref.kdim, ref.vdim
        self.num_heads, self.head_dim = ref.num_heads, ref.head_dim
        self.dropout, self.batch_first, self.add_zero_attn = ref.dropout, ref.batch_first, ref.add_zero_attn
        self.packed = ref._qkv_same_embed_dim
        bias = _param(ref.in_proj_bias, share)
        if self.packed:
            self.in_proj = AnalogLinear(E, 3 * E, bias is not None, rpu_config, mapped=mapped,
                                        weight=_param(ref.in_proj_weight, share), bias_param=bias)
            self.in_proj_bias = None
        else:
            self.q_proj = AnalogLinear(E, E, False, rpu_config, mapped=mapped, weight=_param(ref.q_proj_weight, share))
            self.k_proj = AnalogLinear(ref.kdim, E, False, rpu_config, mapped=mapped,
                                       weight=_param(ref.k_proj_weight, share))
            self.v_proj = AnalogLinear(ref.vdim, E, False, rpu_config, mapped=mapped,
                                       weight=_param(ref.v_proj_weight, share))
            self.in_proj_bias = bias  # (3E,), added in digital after the tiles
        out = ref.out_proj
        self.out_proj = AnalogLinear(E, E, out.bias is not None, rpu_config, mapped=mapped,
                                     weight=_param(out.weight, share), bias_param=_param(out.bias, share))
        self.bias_k = _param(ref.bias_k, share)
        self.bias_v = _param(ref.bias_v, share)

    def to_digital(self, realistic: bool = False) -> nn.MultiheadAttention:
        """A plain ``nn.MultiheadAttention`` with the current effective weights
        (read from noisy forward passes with ``realistic=True``)."""
        E = self.embed_dim
        mha = nn.MultiheadAttention(E, self.num_heads, self.dropout, bias=self.out_proj.bias is not None,
                                    add_bias_kv=self.bias_k is not None, add_zero_attn=self.add_zero_attn,
                                    kdim=self.kdim, vdim=self.vdim, batch_first=self.batch_first,
                                    device=self.out_proj.weight.device, dtype=self.out_proj.weight.dtype)
        with torch.no_grad():
            if self.packed:
                w, b = self.in_proj.get_weights(realistic=realistic)
                mha.in_proj_weight.copy_(w)
                if b is not None:
                    mha.in_proj_bias.copy_(b)
            else:
                mha.q_proj_weight.copy_(self.q_proj.get_weights(realistic=realistic)[0])
                mha.k_proj_weight.copy_(self.k_proj.get_weights(realistic=realistic)[0])
                mha.v_proj_weight.copy_(self.v_proj.get_weights(realistic=realistic)[0])
                if self.in_proj_bias is not None:
                    mha.in_proj_bias.copy_(self.in_proj_bias)
            w, b = self.out_proj.get_weights(realistic=realistic)
            mha.out_proj.weight.copy_(w)
            if b is not None:
                mha.out_proj.bias.copy_(b)
            if self.bias_k is not None:
                mha.bias_k.copy_(self.bias_k)
                mha.bias_v.copy_(self.bias_v)
        mha.train(self.training)
        return mha

    def _project(self, query: Tensor, key: Tensor, value: Tensor, same: bool) -> tuple[Tensor, Tensor, Tensor]:
        E = self.embed_dim
        if self.packed:
            if same:
                return self.in_proj(query).chunk(3, dim=-1)
            # Each input runs through the tile rows of its own projection.
            return (self.in_proj(query)[..., :E], self.in_proj(key)[..., E:2 * E],
                    self.in_proj(value)[..., 2 * E:])
        q, k, v = self.q_proj(query), self.k_proj(key), self.v_proj(value)
        if self.in_proj_bias is not None:
            bq, bk, bv = self.in_proj_bias.chunk(3)
            q, k, v = q + bq, k + bk, v + bv
        return q, k, v

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Optional[Tensor] = None,
                need_weights: bool = True, attn_mask: Optional[Tensor] = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[Tensor, Optional[Tensor]]:
        same = query is key and key is value
        batched = query.dim() == 3
        if not batched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        L, N, E = query.shape
        H, hd = self.num_heads, self.head_dim
        q, k, v = self._project(query, key, value, same)
        mask = _additive(attn_mask, q.dtype)
        if mask is None and is_causal:
            mask = torch.full((L, key.shape[0]), float("-inf"), dtype=q.dtype, device=q.device).triu(1)
        kpm = _additive(key_padding_mask, q.dtype)
        if self.bias_k is not None:
            k = torch.cat([k, self.bias_k.expand(1, N, E)])
            v = torch.cat([v, self.bias_v.expand(1, N, E)])
            mask = None if mask is None else F.pad(mask, (0, 1))
            kpm = None if kpm is None else F.pad(kpm, (0, 1))
        q = q.reshape(L, N * H, hd).transpose(0, 1)
        k = k.reshape(k.shape[0], N * H, hd).transpose(0, 1)
        v = v.reshape(v.shape[0], N * H, hd).transpose(0, 1)
        if self.add_zero_attn:
            k = torch.cat([k, k.new_zeros(N * H, 1, hd)], dim=1)
            v = torch.cat([v, v.new_zeros(N * H, 1, hd)], dim=1)
            mask = None if mask is None else F.pad(mask, (0, 1))
            kpm = None if kpm is None else F.pad(kpm, (0, 1))
        S = k.shape[1]
        scores = torch.bmm(q * (1.0 / math.sqrt(hd)), k.transpose(1, 2))  # (N*H, L, S)
        if mask is not None:
            scores = scores + (mask.unsqueeze(0) if mask.dim() == 2 else mask)
        if kpm is not None:
            scores = (scores.view(N, H, L, S) + kpm.view(N, 1, 1, S)).view(N * H, L, S)
        attn = torch.softmax(scores, dim=-1)
        if self.training and self.dropout > 0:
            attn = F.dropout(attn, p=self.dropout)
        out = torch.bmm(attn, v).transpose(0, 1).reshape(L, N, E)
        out = self.out_proj(out)
        weights = None
        if need_weights:
            weights = attn.view(N, H, L, S)
            if average_attn_weights:
                weights = weights.mean(dim=1)
            if not batched:
                weights = weights.squeeze(0)
        if not batched:
            out = out.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        return out, weights

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, batch_first={self.batch_first}"
