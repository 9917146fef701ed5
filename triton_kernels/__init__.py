"""Triton GPU kernels of the analog tile ops, one op per file, each with the
dispatch that sends CPU tensors (or everything, when forced) to the torch path.

Set ``FXANALOG_FORCE_TORCH=1`` (or call ``set_force_torch(True)``) to use the
torch path on GPU tensors too.
"""

from fxanalog.triton_kernels.dispatch import set_force_torch, triton_available, use_triton

__all__ = ["set_force_torch", "triton_available", "use_triton"]
