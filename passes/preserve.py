"""Leave the user's model as it was: ``preserved(model)``.

Tracing runs the model's ``forward`` on fx Proxies, and the shapes pass (and
the check of ``example_inputs``) runs it once on real tensors. A forward may
store what it computes on the module: a cache filled on the first call
(``self.cache[key] = ...``), a lazily computed attribute
(``if self.scales is None: self.scales = ...``), a flag, a buffer updated in
place. During a trace these hold Proxies of a graph that is gone, and the
next trace or call fails ("Node referenced nonexistent value", a
``TraceError`` at the next forward).

``preserved(model)`` is a context manager: on exit, whatever happened inside
(an exception included), every module of ``model`` has again the attributes
it had on entry: the same objects under the same names (added names removed,
removed ones put back), and the same contents in the dicts, lists and sets
it held (a cache dict keeps its identity and gets its old entries back).
With ``values=True`` the values of its buffers are restored as well
(copied back in place, so tensors shared with an analog model stay shared).
Parameters' values are not touched (no forward writes them).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

__all__ = ["preserved", "ModuleSnapshot"]

_CONTAINERS = (dict, list, set)


def _contents(value):
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    return set(value)


def _same(a, b) -> bool:
    """Same contents by identity (not ``==``, which tensors would broadcast)."""
    if len(a) != len(b):
        return False
    if isinstance(a, dict):
        return all(k in b and b[k] is v for k, v in a.items())
    if isinstance(a, list):
        return all(x is y for x, y in zip(a, b))
    return a == b


def _put_back(container, contents) -> None:
    if isinstance(container, dict):
        container.clear()
        container.update(contents)
    elif isinstance(container, list):
        container[:] = contents
    else:
        container.clear()
        container.update(contents)


class ModuleSnapshot:
    """The attributes of every module of a model (see the module docstring)."""

    def __init__(self, model: nn.Module, values: bool = False):
        self.entries = []
        for module in _all_modules(model):
            attrs = dict(vars(module))
            inner = {k: (v, _contents(v)) for k, v in attrs.items() if type(v) in _CONTAINERS
                     or isinstance(v, _CONTAINERS)}
            self.entries.append((module, attrs, inner))
        self.buffers = []
        if values:
            self.buffers = [(b, b.detach().clone()) for b in _unique(t for _, t in model.named_buffers())]

    def restore(self) -> None:
        for module, attrs, inner in self.entries:
            state = module.__dict__
            for key in [k for k in state if k not in attrs]:
                del state[key]
            for key, value in attrs.items():
                if state.get(key, _MISSING) is not value:
                    state[key] = value
            for value, contents in inner.values():
                if not _same(contents, value):
                    _put_back(value, contents)
        with torch.no_grad():
            for b, saved in self.buffers:
                if b.shape == saved.shape and not torch.equal(b, saved):
                    b.copy_(saved)


_MISSING = object()


def _unique(tensors) -> list:
    seen, out = set(), []
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            out.append(t)
    return out


def _all_modules(model: nn.Module) -> list:
    """Every module below ``model`` (itself included), shared ones once,
    also modules held in plain attributes of a module (not registered)."""
    return list(model.modules())


@contextlib.contextmanager
def preserved(model: nn.Module, values: bool = False) -> Iterator[ModuleSnapshot]:
    """See the module docstring."""
    snap = ModuleSnapshot(model, values)
    try:
        yield snap
    finally:
        snap.restore()
