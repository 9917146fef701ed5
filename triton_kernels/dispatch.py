"""Which path computes a tile op: Triton for CUDA tensors when it can, torch otherwise."""

from __future__ import annotations

import functools
import os

import torch

_FORCE_TORCH: bool | None = None


def set_force_torch(force: bool | None) -> None:
    """True: always the torch path; False: Triton where possible; None: the
    environment variable ``FXANALOG_FORCE_TORCH`` decides (the default)."""
    global _FORCE_TORCH
    _FORCE_TORCH = force


def _forced() -> bool:
    if _FORCE_TORCH is not None:
        return _FORCE_TORCH
    return os.environ.get("FXANALOG_FORCE_TORCH", "0") not in ("", "0", "false", "False")


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    """Triton imports (the kernels can run: on a GPU, or interpreted on CPU)."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:  # pragma: no cover - depends on the platform
        return False
    return True


def interpreting() -> bool:
    """Triton's interpreter is on (``TRITON_INTERPRET=1``): kernels run on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def use_triton(t: torch.Tensor) -> bool:
    """The Triton kernel computes this tensor's op (a CUDA tensor, Triton, not forced)."""
    return t.is_cuda and not _forced() and triton_available()
