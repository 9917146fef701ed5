"""Hardware-aware training rules of inference tiles, as pure functions:
the weight modifier of each training forward and the clipping bound after
each optimizer step (docs/physics.md, "Hardware-aware training").
``AnalogTile`` applies them to its own weights."""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import torch
from torch import Tensor

from fxanalog import _rng
from fxanalog.config import (
    BaseNoiseModel,
    PCMLikeNoiseModel,
    WeightClipParameter,
    WeightClipType,
    WeightModifierParameter,
    WeightModifierType,
    resolution_step,
)
from fxanalog.geometry import TileGeometry

__all__ = ["modifier_active", "apply_weight_modifier", "clip_bound"]


def modifier_active(modifier: WeightModifierParameter) -> bool:
    """Whether the modifier changes the weights at all."""
    return modifier.type not in (WeightModifierType.NONE, WeightModifierType.COPY) or modifier.pdrop > 0


@torch.no_grad()
def apply_weight_modifier(
    weights: Tensor,
    modifier: WeightModifierParameter,
    in_sizes: Optional[Sequence[int]] = None,
    out_sizes: Optional[Sequence[int]] = None,
    noise_model: Optional[BaseNoiseModel] = None,
) -> Tensor:
    """The modified copy of ``weights`` ((N, K) one tile, or (G, N, K) with
    the tile split ``in_sizes`` / ``out_sizes``); ``amax`` is each tile's
    max|w| (``rel_to_actual_wmax``) or ``assumed_wmax``:

    DISCRETIZE ``amax rint(w/amax/res) res``; ADD_NORMAL ``w + std amax xi``;
    MULT_NORMAL ``w + w std amax xi``; DISCRETIZE_ADD_NORMAL both;
    POLY ``w + amax std sum_k c_k (|w|/amax)^k xi``; PROG_NOISE the same
    with ``std / g_max``, then ``|w'|`` with the sign of ``w``; DOREFA
    ``round(tanh(w) |dorefa_clip / tanh(amax)| / res) res`` (halves away from
    0, as aihwkit's C ``roundf``; not scaled back by amax); PCM_NOISE the PCM
    programming noise of ``noise_model`` (or ``PCMLikeNoiseModel()``) with
    ``prog_noise_scale = std_dev`` on the tile's conductance pairs;
    DROP_CONNECT and any ``pdrop > 0``: each weight set to 0 with probability
    ``pdrop``.
    """
    modifier.validate("WeightModifierParameter")
    w = weights.float()
    squeeze = w.dim() == 2
    if squeeze:
        w = w.unsqueeze(0)
    if w.dim() != 3:
        raise ValueError(f"apply_weight_modifier: weights of shape {tuple(weights.shape)}: expected (N, K) or (G, N, K)")
    geo = TileGeometry(w.shape[0], tuple(in_sizes or [w.shape[2]]), tuple(out_sizes or [w.shape[1]]))
    if modifier.rel_to_actual_wmax:
        amax = geo.tile_amax(w.abs())
        amax = geo.expand(torch.where(amax > 0, amax, torch.ones_like(amax)))
    else:
        amax = torch.full_like(w[:1, :1, :1], float(modifier.assumed_wmax))
    t, std = modifier.type, float(modifier.std_dev)
    out = w.clone()
    if t in (WeightModifierType.DISCRETIZE, WeightModifierType.DISCRETIZE_ADD_NORMAL):
        res = resolution_step(modifier.res)
        if res > 0:
            q = w / amax / res
            if modifier.sto_round:
                q = q + torch.rand_like(q) - 0.5
            out = amax * torch.round(q) * res
    if t in (WeightModifierType.ADD_NORMAL, WeightModifierType.DISCRETIZE_ADD_NORMAL) and std > 0:
        out = out + std * amax * _rng.randn(w.shape, dtype=w.dtype, device=w.device)
    elif t == WeightModifierType.MULT_NORMAL and std > 0:
        out = w + w * std * amax * _rng.randn(w.shape, dtype=w.dtype, device=w.device)
    elif t == WeightModifierType.POLY and std > 0 and modifier.coeffs:
        a = w.abs() / amax
        sig = torch.zeros_like(w)
        for k, c in enumerate(modifier.coeffs):
            sig = sig + float(c) * a.pow(k)
        out = w + amax * std * sig * _rng.randn(w.shape, dtype=w.dtype, device=w.device)
    elif t == WeightModifierType.PROG_NOISE and std > 0 and modifier.coeffs:
        a = w.abs() / amax
        sig = torch.zeros_like(w)
        for k, c in enumerate(modifier.coeffs):
            sig = sig + float(c) * a.pow(k)
        noisy = (w + amax * (std / modifier.g_max) * sig * _rng.randn(w.shape, dtype=w.dtype, device=w.device)).abs()
        out = torch.where(w < 0, -noisy, noisy)  # the sign of the weight is kept (0 counts as positive)
    elif t == WeightModifierType.DOREFA and resolution_step(modifier.res) > 0:
        res = resolution_step(modifier.res)
        q = torch.tanh(w) * (modifier.dorefa_clip / torch.tanh(amax)).abs() / res
        if modifier.sto_round:
            q = q + torch.rand_like(q) - 0.5
        out = torch.sign(q) * torch.floor(q.abs() + 0.5) * res
    elif t == WeightModifierType.PCM_NOISE and std > 0:
        base = noise_model if isinstance(noise_model, PCMLikeNoiseModel) else PCMLikeNoiseModel()
        pcm = dataclasses.replace(base, prog_noise_scale=std)  # every other field as the config's
        g, params = pcm.converter.convert_to_conductances(w, amax)
        out = pcm.converter.convert_back_to_weights(pcm.apply_programming_noise_to_conductance(g), params)
    if modifier.pdrop > 0:
        out = out.masked_fill(torch.rand_like(out) < modifier.pdrop, 0.0)
    return out[0] if squeeze else out


def clip_bound(w: Tensor, clip: WeightClipParameter, geometry: TileGeometry) -> Optional[Tensor]:
    """The bound of each tile weight (broadcastable to the (G, N, K) ``w``)
    under ``clip``, per tile: FIXED_VALUE ``fixed_value``, LAYER_GAUSSIAN
    ``sigma`` std(w) (population std), AVERAGE_CHANNEL_MAX the mean over
    rows of max|w_row|; None for NONE."""
    if clip.type == WeightClipType.FIXED_VALUE:
        return torch.full_like(w[:1, :1, :1], float(clip.fixed_value))
    if clip.type == WeightClipType.LAYER_GAUSSIAN:
        std = geometry.tile_reduce(w, lambda t, d: t.std(dim=d, correction=0))
        return geometry.expand(clip.sigma * std)
    if clip.type == WeightClipType.AVERAGE_CHANNEL_MAX:
        # mean over the tile's rows of each row's max|w| within the tile
        return geometry.expand(geometry.tile_reduce(w.abs(), lambda t, d: t.amax(dim=2).mean(dim=1)))
    return None
