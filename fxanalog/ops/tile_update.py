"""The custom op ``fxanalog::tile_update``: the pulsed update of a tile
array's weights with the (x, d) of training steps.

Schema::

    fxanalog::tile_update(Tensor(a!) weights, Tensor x, Tensor d, Tensor params, float lr,
                          float[] update, float[] device, int[] in_sizes, int[] out_sizes) -> Tensor

``weights`` ``(G, N, K)`` are the tile weights (tile units), changed in
place, or ``(D, G, N, K)`` for a stack of D devices that share the pulse
trains (the devices of a unit cell; ``params`` then ``(D, G, N, K, P)`` and
``device`` D packed rules, each with its route); ``x`` ``(G, B, K)`` and ``d`` ``(G, B, N)`` the rows recorded by
``fxanalog::tile_record``; ``params`` ``(G, N, K, P)`` the device's
per-cross-point parameters, the last axis in ``DeviceRule.pulse_names``
order; ``update`` and ``device`` the packed
``PulsedUpdate`` and ``DeviceRule``. Returns the boolean ``(G, N, K)`` mask
of the cross-points that got a pulse. The semantics are in
``fxanalog.ops.tile_update_torch`` (the torch implementation: a C kernel on
CPU, else torch) and docs/training.md; on CUDA the Triton kernel
``fxanalog.triton_kernels.tile_update`` computes the stochastic pulse types
(``fxanalog.ops.dispatch`` picks one per call; both take the resolved
``PulsedUpdate`` and ``DeviceRule``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from fxanalog.ops import dispatch
from fxanalog.ops.tile_update_torch import tile_update as torch_tile_update
from fxanalog.ops.tile_update_torch import unpack_rule, unpack_update

__all__ = ["tile_update", "update"]

dispatch.register("tile_update", "torch", torch_tile_update)
if dispatch.triton_available():
    from fxanalog.triton_kernels import tile_update as _triton

    dispatch.register("tile_update", "triton", _triton.launch, supports=_triton.supports)


def _tile_update(weights: Tensor, x: Tensor, d: Tensor, params: Tensor, lr: float, update: list[float],
                 device: list[float], in_sizes: list[int], out_sizes: list[int]) -> Tensor:
    up, rule = unpack_update(update), unpack_rule(device)
    devices = len(rule) if isinstance(rule, tuple) else 1
    if weights.dim() != (4 if isinstance(rule, tuple) else 3) or (devices > 1 and weights.shape[0] != devices):
        raise ValueError(f"fxanalog::tile_update: weights of shape {tuple(weights.shape)} with {devices} packed "
                         "device rules: expected (G, N, K) with one rule or (D, G, N, K) with D rules")
    impl = dispatch.select("tile_update", weights, weights, x, d, lr, up, rule, in_sizes, out_sizes)
    return impl.function(weights, x, d, lr, up, rule, params, in_sizes, out_sizes)


tile_update = torch.library.custom_op("fxanalog::tile_update", mutates_args=("weights",),
                                      tags=(torch.Tag.nondeterministic_seeded,))(_tile_update)


def update(weights: Tensor, x: Tensor, d: Tensor, params: Tensor, lr: float, update: list[float],
           device: list[float], in_sizes: list[int], out_sizes: list[int]) -> Tensor:
    """``torch.ops.fxanalog.tile_update(...)``, the same arguments, effect
    and result; in plain eager mode (``dispatch.plain_eager``) the op's
    function, directly, and the version counter of ``weights`` bumped as
    the op's wrapper bumps it (autograd's checks of in-place changes see
    the update)."""
    if dispatch.plain_eager(weights, x, d, params):
        touched = _tile_update(weights, x, d, params, lr, update, device, in_sizes, out_sizes)
        torch.autograd.graph.increment_version(weights)
        return touched
    return torch.ops.fxanalog.tile_update(weights, x, d, params, lr, update, device, in_sizes, out_sizes)


@tile_update.register_fake
def _(weights, x, d, params, lr, update, device, in_sizes, out_sizes):
    return torch.empty(weights.shape[-3:], dtype=torch.bool, device=weights.device)
