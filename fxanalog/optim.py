"""Optimizers for analog models, as aihwkit's ``aihwkit.optim``:
``AnalogSGD`` and ``AnalogOptimizer`` (any torch optimizer).

One ``step()`` does, with each parameter group's learning rate:

1. the torch optimizer's own step (``AnalogSGD``: ``torch.optim.SGD`` with
   its momentum, dampening, weight decay, Nesterov and ``maximize``
   options) on every parameter that has a gradient: the digital ones
   (biases, norms, embeddings, the layers that stay digital) and the
   weights of inference tiles (hardware-aware training);
2. for every tile on pulsed devices (``SingleRPUConfig``) among the
   parameters: the pulsed update with the (x, d) its layer recorded since
   the last step (``AnalogTile.update``; several forward/backward passes
   concatenate), scaled by the group's learning rate. Its weights have no
   gradient, so step 1 never touches them: momentum, weight decay or
   Adam's moments apply to digital parameters only;
3. for every analog tile: the steps after an update
   (``AnalogTile.post_update_step``): clipping and remapping of inference
   tiles, decay and diffusion of devices.

Under ``DistributedDataParallel`` (several ranks), a pulsed tile whose last
training forward ran inside the DDP module's forward updates with the rows
of every rank (gathered before step 2, d divided by the number of ranks),
and after step 3 every rank takes the first rank's weights and changed tile
state (a broadcast), so the ranks stay identical (docs/distributed.md).

The tiles are found at every step from the layers built around the
parameters (the ``torch.compile`` backend builds them at the first call,
after the optimizer is made); a first step that finds none warns that the
optimizer acts as its torch one. ``regroup_param_groups(model)`` is
accepted (aihwkit code calls it) and changes nothing.
"""

from __future__ import annotations

import functools
import warnings
from typing import Callable, Optional

import torch
from torch import nn

from fxanalog.cells import DeviceState
from fxanalog.nn.modules import AnalogLayerBase, analog_layers_of
from fxanalog.ops.tile_record import ddp_group_of

__all__ = ["AnalogOptimizerMixin", "AnalogSGD", "AnalogOptimizer"]


class AnalogOptimizerMixin:
    """The analog part of a step (see the module docstring), before a torch
    optimizer in the bases: ``class AnalogAdam(AnalogOptimizerMixin,
    torch.optim.Adam)``."""

    _warned = False

    def regroup_param_groups(self, model: nn.Module) -> None:
        """Accepted for aihwkit code; the tiles are found from the
        parameters, so the groups stay as they are."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"{type(self).__name__}.regroup_param_groups: expected the model (an nn.Module), "
                            f"got {type(model).__name__}")

    def _analog_layers(self) -> list[tuple[AnalogLayerBase, float]]:
        """(layer, learning rate) of every analog layer whose weight is one
        of the parameters, each once."""
        seen, out = set(), []
        for group in self.param_groups:
            for p in group["params"]:
                for layer in analog_layers_of(p):
                    if id(layer) not in seen:
                        seen.add(id(layer))
                        out.append((layer, group["lr"]))
        return out

    @torch.no_grad()
    def step(self, closure: Optional[Callable] = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        base = super().step.__func__
        # torch wraps a class's step (its step hooks, a profiler record) once an instance of that class is
        # made; this class's step has that wrapper already, so the torch optimizer's runs without it (else
        # the hooks would run twice)
        (base.__wrapped__ if getattr(base, "hooked", False) else base)(self)
        layers = self._analog_layers()
        if not layers and not self._warned:
            self._warned = True
            warnings.warn(f"{type(self).__name__}.step: none of the parameters belongs to an analog layer; it acts "
                          "as its torch optimizer (convert the model first, e.g. with fxanalog.compile)", stacklevel=2)
        pulsed = [(layer, lr) for layer, lr in layers
                  if layer.tile.device_state is not None and layer.weight.requires_grad]
        shared = [(layer, ddp) for layer, _ in pulsed if (ddp := ddp_group_of(layer.tile)) is not None]
        for layer, (group, key) in shared:
            _gather_recorded(layer, group, key)
        updated = [layer.tile.update(layer.weight_matrix(), lr) for layer, lr in pulsed]
        if pulsed and not any(updated):
            names = ", ".join(layer.analog_name for layer, _ in pulsed)
            raise RuntimeError(
                f"{type(self).__name__}.step: no pulsed layer ({names}) recorded a training backward pass since "
                "the last step; call loss.backward() on a training forward first"
            )
        for layer, _ in layers:
            layer.tile.post_update_step(layer.weight_matrix())
        for layer, (group, _) in shared:
            _broadcast_tile_state(layer, group)
        return loss


def _gather_recorded(layer: AnalogLayerBase, group, key: int) -> None:
    """Data-parallel pulsed training: the rows every rank recorded since the
    last step, concatenated in rank order, handed back to the tile on every
    rank, with d divided by the number of ranks (DDP averages the gradients
    of the digital parameters; the pulsed update so gets the mean over the
    whole batch, as a single process with the concatenated batch)."""
    dist = torch.distributed
    tile = layer.tile
    G, N, K = tile.geometry.shape
    rec = tile.recorded_updates()
    ref = layer.weight
    rows = (torch.zeros(G, 0, K + N, device=ref.device) if rec is None
            else torch.cat([rec[0].float(), rec[1].float()], dim=2))
    world = dist.get_world_size(group)
    sizes = [torch.zeros(1, dtype=torch.long, device=rows.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([rows.shape[1]], device=rows.device), group=group)
    sizes = [int(s) for s in sizes]
    top = max(sizes)
    if top == 0:
        return  # no rank recorded: the step's usual error follows
    padded = torch.cat([rows, rows.new_zeros(G, top - rows.shape[1], K + N)], dim=1).contiguous()
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded, group=group)
    rows = torch.cat([p[:, :n] for p, n in zip(parts, sizes)], dim=1)
    torch.ops.fxanalog.tile_record(rows[..., :K].contiguous(), (rows[..., K:] / world).contiguous(), key)


# The device parameters drawn when a tile is made (equal on every rank, never changed by training).
_DRAWN = ("params",) + DeviceState.POST_NAMES


@torch.no_grad()
def _broadcast_tile_state(layer: AnalogLayerBase, group) -> None:
    """After a data-parallel pulsed update: every rank takes the first
    rank's weights and the tile state the update and the steps after it
    change (hidden device weights, a unit cell's devices, buffers and
    counters, mapping scales), so that the ranks stay
    identical whatever their random draws (docs/distributed.md)."""
    dist = torch.distributed
    src = dist.get_global_rank(group, 0)
    tensors = [layer.weight] + [b for name, b in layer.tile.named_buffers()
                                if name.rsplit(".", 1)[-1] not in _DRAWN]
    for t in tensors:
        buf = t.data if t.is_contiguous() else t.data.contiguous()
        dist.broadcast(buf, src=src, group=group)
        if buf is not t.data:
            t.data.copy_(buf)
    layer.tile.invalidate_cache()


class AnalogSGD(AnalogOptimizerMixin, torch.optim.SGD):
    """SGD on the digital parameters, pulsed updates on analog tiles (see
    the module docstring). Arguments as ``torch.optim.SGD``."""

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False):
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                         nesterov=nesterov, maximize=maximize)


@functools.lru_cache(maxsize=None)
def _analog_class(optimizer_cls: type) -> type:
    return type(f"Analog{optimizer_cls.__name__}", (AnalogOptimizerMixin, optimizer_cls),
                {"__module__": __name__, "__doc__": f"{optimizer_cls.__name__} on the digital parameters, pulsed "
                 "updates on analog tiles (fxanalog.optim.AnalogOptimizer)."})


class AnalogOptimizer:
    """``AnalogOptimizer(torch.optim.Adam, model.parameters(), lr=...)``, as
    aihwkit's: the given torch optimizer on the digital parameters, then the
    pulsed updates of the analog tiles with each group's learning rate and
    the post-update steps (see the module docstring). Returns an instance
    of ``Analog<Name>``, a subclass of ``AnalogOptimizerMixin`` and of the
    given class."""

    def __new__(cls, optimizer_cls: type, *args, **kwargs):
        if not (isinstance(optimizer_cls, type) and issubclass(optimizer_cls, torch.optim.Optimizer)):
            raise TypeError(f"AnalogOptimizer: expected a torch.optim.Optimizer class as the first argument, "
                            f"got {optimizer_cls!r}")
        if issubclass(optimizer_cls, AnalogOptimizerMixin):
            return optimizer_cls(*args, **kwargs)
        return _analog_class(optimizer_cls)(*args, **kwargs)
