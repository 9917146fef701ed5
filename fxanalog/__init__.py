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
    InputRangeParameter,
    PrePostProcessingParameter,
    SingleRPUConfig,
    UpdateParameters,
    PulseType,
    IdealDevice,
    PulsedDevice,
    ConstantStepDevice,
    LinearStepDevice,
    SoftBoundsDevice,
    SoftBoundsReferenceDevice,
    ExpStepDevice,
    PowStepDevice,
    UnitCellRPUConfig,
    DigitalRankUpdateRPUConfig,
    VectorUnitCellUpdatePolicy,
    UnitCell,
    VectorUnitCell,
    ReferenceUnitCell,
    OneSidedUnitCell,
    TransferCompound,
    DigitalRankUpdateCell,
    MixedPrecisionCompound,
    BufferedTransferCompound,
    ChoppedTransferCompound,
    DynamicTransferCompound,
)
from fxanalog import ops as _ops  # noqa: F401  (registers fxanalog::tile_mvm)
from fxanalog.compiler import SmallWeightRangeWarning, compile, explain
from fxanalog.dump import dump
from fxanalog.summary import analog_summary
from fxanalog.nn.conversion import convert_to_analog, convert_to_analog_mapped, convert_to_digital
from fxanalog.dynamo_backend import backend
from fxanalog.config.noise import (
    BaseDriftCompensation,
    BaseNoiseModel,
    CustomDriftPCMLikeNoiseModel,
    DualPairConductanceConverter,
    GlobalDriftCompensation,
    NPairConductanceConverter,
    PCMLikeNoiseModel,
    PerColumnDriftCompensation,
    ReRamWan2022NoiseModel,
    SinglePairConductanceConverter,
    StateIndependentNoiseModel,
)
from fxanalog.inference import drift_analog_weights, program_analog_weights, remap_analog_weights
from fxanalog.nn import AnalogSequential

__version__ = "0.1.0"


def manual_seed(seed: int) -> None:
    """Seed every generator fxanalog draws from: torch's CPU and CUDA ones,
    and through them fxanalog's CPU noise generator (fxanalog._rng), whose
    states are drawn from torch's default generator at every draw."""
    import torch

    torch.manual_seed(seed)


__all__ = [
    "compile",
    "explain",
    "analog_summary",
    "dump",
    "backend",
    "convert_to_analog",
    "convert_to_analog_mapped",
    "convert_to_digital",
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
    "InputRangeParameter",
    "PrePostProcessingParameter",
    "SingleRPUConfig",
    "UpdateParameters",
    "PulseType",
    "IdealDevice",
    "PulsedDevice",
    "ConstantStepDevice",
    "LinearStepDevice",
    "SoftBoundsDevice",
    "SoftBoundsReferenceDevice",
    "ExpStepDevice",
    "PowStepDevice",
    "UnitCellRPUConfig",
    "DigitalRankUpdateRPUConfig",
    "VectorUnitCellUpdatePolicy",
    "UnitCell",
    "VectorUnitCell",
    "ReferenceUnitCell",
    "OneSidedUnitCell",
    "TransferCompound",
    "DigitalRankUpdateCell",
    "MixedPrecisionCompound",
    "BufferedTransferCompound",
    "ChoppedTransferCompound",
    "DynamicTransferCompound",
    "manual_seed",
    "SinglePairConductanceConverter",
    "DualPairConductanceConverter",
    "NPairConductanceConverter",
    "ReRamWan2022NoiseModel",
    "BaseNoiseModel",
    "PCMLikeNoiseModel",
    "CustomDriftPCMLikeNoiseModel",
    "StateIndependentNoiseModel",
    "BaseDriftCompensation",
    "GlobalDriftCompensation",
    "PerColumnDriftCompensation",
    "program_analog_weights",
    "drift_analog_weights",
    "remap_analog_weights",
    "SmallWeightRangeWarning",
    "AnalogSequential",
]
