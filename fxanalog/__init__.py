"""fxanalog: analog in-memory computing simulation for PyTorch, as a compiler."""

from fxanalog.config import (
    BoundManagementType,
    FloatingPointRPUConfig,
    InferenceRPUConfig,
    IOParameters,
    MappingParameter,
    NoiseManagementType,
    WeightClipParameter,
    WeightClipType,
    WeightModifierParameter,
    WeightModifierType,
    WeightNoiseType,
    WeightRemapParameter,
    WeightRemapType,
)
from fxanalog import ops as _ops  # noqa: F401  (registers fxanalog::tile_mvm)

__version__ = "0.1.0"


def manual_seed(seed: int) -> None:
    """Seed every generator fxanalog draws from (torch's CPU and CUDA ones)."""
    import torch

    torch.manual_seed(seed)


__all__ = [
    "BoundManagementType",
    "FloatingPointRPUConfig",
    "InferenceRPUConfig",
    "IOParameters",
    "MappingParameter",
    "NoiseManagementType",
    "WeightClipParameter",
    "WeightClipType",
    "WeightModifierParameter",
    "WeightModifierType",
    "WeightNoiseType",
    "WeightRemapParameter",
    "WeightRemapType",
    "manual_seed",
]
