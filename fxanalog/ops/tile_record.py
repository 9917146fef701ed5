"""The effectful op ``fxanalog::tile_record``: how a training step's (x, d)
reach the tile that will update its weights with them.

Schema::

    fxanalog::tile_record(Tensor x, Tensor d, int key) -> ()

``fxanalog::tile_mvm``'s backward calls it with the op's raw input ``x``
``(G, B, K)`` (before the DAC) and the gradient ``d`` ``(G, B, N)`` of the
tile array's output in tile units (before the backward pass's periphery),
when the forward was given an ``update_key`` (``register_recorder``). The
real implementation hands both to the recorder registered under that key
(a tile keeps them until its optimizer step; see docs/architecture.md,
"One training step").

Why an op: under ``torch.compile`` the backward is traced by AOTAutograd and
runs as a compiled graph; Python code in a backward formula would run once,
at trace time, on fake tensors. An op runs at run time on real tensors. It
returns nothing, so it is registered as *effectful* (ordered): without that,
the compiler removes it as dead code. In eager mode the same call runs
directly.

Data-parallel training (``torch.nn.parallel.DistributedDataParallel``): the
op's forward notes, for every recording tile, the process group of the DDP
module whose forward is running (``ddp_group_of``), so that the optimizer
step can gather every rank's rows before the pulsed update
(docs/distributed.md).
"""

from __future__ import annotations

import itertools
import weakref
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from fxanalog.ops.dispatch import plain_eager

__all__ = ["tile_record", "record", "register_recorder", "active_ddp_group", "note_ddp_group", "ddp_group_of"]

_RECORDERS: dict[int, "weakref.ReferenceType[Callable[[Tensor, Tensor], None]]"] = {}
_KEYS = itertools.count()
# recording tile -> (process group, key) of its last training forward inside a DDP module's forward
_DDP_GROUPS: "weakref.WeakKeyDictionary[Any, tuple[Any, int]]" = weakref.WeakKeyDictionary()
_DISTRIBUTED = torch.distributed.is_available()  # (fixed by the torch build)


def active_ddp_group():
    """The process group of the ``DistributedDataParallel`` module whose
    forward is running, when it has more than one rank; else None (no DDP,
    or a DDP of one process)."""
    dist = torch.distributed
    if not dist.is_available() or not dist.is_initialized():
        return None
    from torch.nn.parallel import DistributedDataParallel

    ddp = DistributedDataParallel._get_active_ddp_module()
    if ddp is None:
        return None
    group = ddp.process_group
    return group if dist.get_world_size(group) > 1 else None


def note_ddp_group(key: int) -> None:
    """Called by a training forward of ``fxanalog::tile_mvm`` with
    ``update_key = key``: remember whether it ran inside a DDP module's
    forward, and in which process group (``ddp_group_of``)."""
    if not _DDP_GROUPS and not (_DISTRIBUTED and torch.distributed.is_initialized()):
        return  # no process group: nothing to note, nothing noted before
    ref = _RECORDERS.get(key)
    recorder = None if ref is None else ref()
    owner = getattr(recorder, "__self__", None)
    if owner is None:
        return
    group = active_ddp_group()
    if group is None:
        _DDP_GROUPS.pop(owner, None)
    else:
        _DDP_GROUPS[owner] = (group, key)


def ddp_group_of(owner) -> Optional[tuple[Any, int]]:
    """``(process group, key)`` when the last training forward of the tile
    ``owner`` (the object whose bound method records) ran inside the forward
    of a DDP module of several ranks; else None. The key hands rows back to
    the tile through ``fxanalog::tile_record``."""
    return _DDP_GROUPS.get(owner)


def register_recorder(recorder: Callable[[Tensor, Tensor], None]) -> int:
    """A key for ``update_key``: ``tile_record`` calls ``recorder(x, d)``.
    Bound methods are held weakly (the key dies with their object)."""
    key = next(_KEYS)
    ref = weakref.WeakMethod(recorder) if hasattr(recorder, "__self__") else (lambda: recorder)
    _RECORDERS[key] = ref
    if hasattr(recorder, "__self__"):
        weakref.finalize(recorder.__self__, _RECORDERS.pop, key, None)
    return key


def _tile_record(x: Tensor, d: Tensor, key: int) -> None:
    ref = _RECORDERS.get(key)
    recorder = None if ref is None else ref()
    if recorder is None:
        raise RuntimeError(f"fxanalog::tile_record: no tile is registered under key {key} (was it deleted?)")
    recorder(x.detach(), d.detach())


tile_record = torch.library.custom_op("fxanalog::tile_record", mutates_args=())(_tile_record)


def record(x: Tensor, d: Tensor, key: int) -> None:
    """``torch.ops.fxanalog.tile_record(x, d, key)``; in plain eager mode
    (``dispatch.plain_eager``) its function, directly."""
    if plain_eager(x, d):
        _tile_record(x, d, key)
    else:
        torch.ops.fxanalog.tile_record(x, d, key)


@tile_record.register_fake
def _(x, d, key):
    return None


def _register_effectful(op) -> None:
    """Mark ``op`` as ordered-effectful (torch.library's hook for that is still
    private; older torch versions keep it in ``torch._higher_order_ops.effects``)."""
    if hasattr(torch.library, "_register_effectful_op"):
        torch.library._register_effectful_op(op, torch.library.EffectType.ORDERED)
    else:  # pragma: no cover - torch < 2.9
        from torch._higher_order_ops import effects

        effects._register_effectful_op(op, effects._EffectType.ORDERED)


_register_effectful(torch.ops.fxanalog.tile_record.default)
