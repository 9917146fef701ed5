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
"""

from __future__ import annotations

import itertools
import weakref
from typing import Callable

import torch
from torch import Tensor

__all__ = ["tile_record", "register_recorder"]

_RECORDERS: dict[int, "weakref.ReferenceType[Callable[[Tensor, Tensor], None]]"] = {}
_KEYS = itertools.count()


def register_recorder(recorder: Callable[[Tensor, Tensor], None]) -> int:
    """A key for ``update_key``: ``tile_record`` calls ``recorder(x, d)``.
    Bound methods are held weakly (the key dies with their object)."""
    key = next(_KEYS)
    ref = weakref.WeakMethod(recorder) if hasattr(recorder, "__self__") else (lambda: recorder)
    _RECORDERS[key] = ref
    if hasattr(recorder, "__self__"):
        weakref.finalize(recorder.__self__, _RECORDERS.pop, key, None)
    return key


@torch.library.custom_op("fxanalog::tile_record", mutates_args=())
def tile_record(x: Tensor, d: Tensor, key: int) -> None:
    ref = _RECORDERS.get(key)
    recorder = None if ref is None else ref()
    if recorder is None:
        raise RuntimeError(f"fxanalog::tile_record: no tile is registered under key {key} (was it deleted?)")
    recorder(x.detach(), d.detach())


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
