"""Which implementation computes an op: the registry of the op layer.

Every op of ``fxanalog.ops`` registers a ``torch`` implementation (runs on
any device) and may register a ``triton`` one with a ``supports`` check.
``select(op, tensor, *args)`` picks, per call:

* ``triton`` when the tensor is on CUDA, Triton imports, its ``supports``
  accepts the arguments and the torch path is not forced;
* ``torch`` otherwise.

How a call reaches an op: in plain eager mode (``plain_eager``) the
callers run the op's own Python function directly (and ``tile_mvm`` its
autograd through a ``torch.autograd.Function``), since the dispatcher's
wrapper of a Python custom op costs tens of microseconds a call, as much
as a small tile's whole MVM; whenever something may be tracing or
intercepting (torch.compile, torch.export, fx, fake tensors, torch.func,
torch function or dispatch modes, tensor subclasses) they call
``torch.ops.fxanalog.*``, so that it sees the op. Both run the same
functions: only the wrapper differs.

``force_implementation("torch")`` (or ``FXANALOG_FORCE_TORCH=1``) sends
everything to the torch path; ``force_implementation("triton")`` sends
whatever Triton supports to it even on CPU, which needs Triton's
interpreter (``TRITON_INTERPRET=1``, the tests' way to run the kernels
without a GPU). An op module registers its Triton implementation only when
``triton_available()``.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Callable, Optional

import torch

__all__ = ["Implementation", "register", "select", "force_implementation", "forced_implementation",
           "triton_available", "plain_eager"]

IMPLEMENTATIONS = ("torch", "triton")


@dataclass(frozen=True)
class Implementation:
    """One way to compute an op: ``function``, and ``supports(*args)``
    saying whether it computes these arguments (None: always)."""

    op: str
    name: str
    function: Callable
    supports: Optional[Callable[..., bool]] = None

    def accepts(self, *args) -> bool:
        return self.supports is None or bool(self.supports(*args))


_REGISTRY: dict[str, dict[str, Implementation]] = {}
_FORCED: Optional[str] = None


def register(op: str, name: str, function: Callable, supports: Optional[Callable[..., bool]] = None) -> Implementation:
    """Register implementation ``name`` ("torch" or "triton") of ``op``."""
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"register({op!r}): implementation {name!r}: expected one of {IMPLEMENTATIONS}")
    impl = Implementation(op, name, function, supports)
    _REGISTRY.setdefault(op, {})[name] = impl
    return impl


def force_implementation(name: Optional[str]) -> None:
    """``"torch"``: every call takes the torch path; ``"triton"``: every call
    that Triton supports takes it, on any device (CPU tensors need
    ``TRITON_INTERPRET=1``); None: choose by device (the default, or the
    environment variable ``FXANALOG_FORCE_TORCH=1``)."""
    global _FORCED
    if name is not None and name not in IMPLEMENTATIONS:
        raise ValueError(f"force_implementation: {name!r}: expected None or one of {IMPLEMENTATIONS}")
    _FORCED = name


def forced_implementation() -> Optional[str]:
    if _FORCED is not None:
        return _FORCED
    if os.environ.get("FXANALOG_FORCE_TORCH", "0") not in ("", "0", "false", "False"):
        return "torch"
    return None


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    """Triton imports (its kernels can run: compiled on a GPU, or interpreted on CPU)."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:  # pragma: no cover - depends on the platform
        return False
    return True


def select(op: str, tensor: torch.Tensor, *args) -> Implementation:
    """The implementation of ``op`` for a call on ``tensor`` with ``args``
    (what ``supports`` is given)."""
    impls = _REGISTRY[op]
    triton = impls.get("triton")
    if triton is None or (not tensor.is_cuda and _FORCED != "triton"):  # (the environment forces only "torch")
        return impls["torch"]
    forced = forced_implementation()
    if forced != "torch" and triton_available():
        if (tensor.is_cuda or forced == "triton") and triton.accepts(*args):
            return triton
    return impls["torch"]


_PLAIN = (torch.Tensor, torch.nn.Parameter)


def plain_eager(*tensors) -> bool:
    """Whether a call with these arguments (tensors or None) may run an op's
    function directly: plain tensors (not a subclass, a fake tensor or an fx
    proxy), and no torch.compile or export tracing, torch.func transform,
    torch function mode or dispatch mode active."""
    for t in tensors:
        if t is not None and type(t) not in _PLAIN:
            return False
    return (not torch.compiler.is_compiling() and not torch._C._are_functorch_transforms_active()
            and not torch._C._is_torch_function_mode_enabled() and torch._C._len_torch_dispatch_stack() == 0)
