"""Configs, with aihwkit's names, nesting and defaults.

A user moving from aihwkit changes the import and nothing else::

    from fxanalog import InferenceRPUConfig
    cfg = InferenceRPUConfig()
    cfg.forward.out_noise = 0.0

The package, one module per group (as aihwkit's ``simulator.parameters``):

* ``base``: ``ConfigBase`` (printing, copying, dicts, validation), ``param``
  (a field with its meaning and its check) with the check objects, and the
  registry of config classes;
* ``enums``: the enums of the fields;
* ``io``: ``IOParameters`` (the periphery of a tile's MVM);
* ``mapping``: ``MappingParameter`` (weights onto tiles);
* ``inference``: clipping, weight modifiers and remapping (hardware-aware training);
* ``pre_post``: the learned input range;
* ``noise``: conductance converters, noise models and drift compensation;
* ``training``: ``UpdateParameters`` (how a training step becomes device pulses);
* ``devices``: the devices of tiles trained by pulses (``IdealDevice``,
  ``PulsedDevice`` and its ``ConstantStep``, ``LinearStep``, ``SoftBounds``,
  ``ExpStep``, ``PowStep`` devices);
* ``compounds``: several devices per cross-point (``VectorUnitCell``,
  ``ReferenceUnitCell``, ``OneSidedUnitCell``, ``TransferCompound``) and the
  digital rank update (``MixedPrecisionCompound``);
* ``rpu``: the RPU configs that hold all of the above (``InferenceRPUConfig``,
  ``FloatingPointRPUConfig``, and ``SingleRPUConfig``, ``UnitCellRPUConfig``,
  ``DigitalRankUpdateRPUConfig`` for training on the devices).

A new group is a new module here: a dataclass of ``ConfigBase`` whose fields are declared
with ``param(default, doc=..., check=...)``, decorated with
``@register_config_class``, exported below. Validation, the refusal of
unknown attributes, dicts and the generated reference then come with it.
"""

from fxanalog.config.base import (
    ConfigBase,
    config_from_dict,
    config_to_dict,
    param,
    register_config_class,
    registered_config_classes,
    resolution_step,
    unregister_config_class,
)
from fxanalog.config.enums import (
    BoundManagementType,
    NamedEnum,
    NoiseManagementType,
    PulseType,
    VectorUnitCellUpdatePolicy,
    WeightClipType,
    WeightModifierType,
    WeightNoiseType,
    WeightRemapType,
)
from fxanalog.config.devices import (
    ConstantStepDevice,
    ExpStepDevice,
    IdealDevice,
    LinearStepDevice,
    PowStepDevice,
    PulsedDevice,
    SoftBoundsDevice,
    SoftBoundsReferenceDevice,
)
from fxanalog.config.compounds import (
    DigitalRankUpdateCell,
    MixedPrecisionCompound,
    OneSidedUnitCell,
    ReferenceUnitCell,
    TransferCompound,
    UnitCell,
    VectorUnitCell,
)
from fxanalog.config.chopped import BufferedTransferCompound, ChoppedTransferCompound, DynamicTransferCompound
from fxanalog.config.inference import WeightClipParameter, WeightModifierParameter, WeightRemapParameter
from fxanalog.config.io import IOParameters
from fxanalog.config.mapping import MappingParameter
from fxanalog.config.noise import (
    BaseConductanceConverter,
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
from fxanalog.config.pre_post import InputRangeParameter, PrePostProcessingParameter
from fxanalog.config.rpu import (
    FloatingPointRPUConfig,
    InferenceRPUConfig,
    RPUConfigBase,
    SingleRPUConfig,
    UnitCellRPUConfig,
    DigitalRankUpdateRPUConfig,
    check_rpu_config,
)
from fxanalog.config.training import UpdateParameters

__all__ = [
    "ConfigBase",
    "NamedEnum",
    "config_from_dict",
    "config_to_dict",
    "param",
    "register_config_class",
    "unregister_config_class",
    "registered_config_classes",
    "resolution_step",
    "NoiseManagementType",
    "BoundManagementType",
    "WeightNoiseType",
    "WeightClipType",
    "WeightModifierType",
    "WeightRemapType",
    "PulseType",
    "VectorUnitCellUpdatePolicy",
    "IOParameters",
    "MappingParameter",
    "WeightClipParameter",
    "WeightModifierParameter",
    "WeightRemapParameter",
    "InputRangeParameter",
    "PrePostProcessingParameter",
    "BaseConductanceConverter",
    "SinglePairConductanceConverter",
    "NPairConductanceConverter",
    "DualPairConductanceConverter",
    "BaseNoiseModel",
    "PCMLikeNoiseModel",
    "CustomDriftPCMLikeNoiseModel",
    "StateIndependentNoiseModel",
    "ReRamWan2022NoiseModel",
    "BaseDriftCompensation",
    "GlobalDriftCompensation",
    "PerColumnDriftCompensation",
    "RPUConfigBase",
    "FloatingPointRPUConfig",
    "InferenceRPUConfig",
    "SingleRPUConfig",
    "UnitCellRPUConfig",
    "DigitalRankUpdateRPUConfig",
    "UpdateParameters",
    "IdealDevice",
    "PulsedDevice",
    "ConstantStepDevice",
    "LinearStepDevice",
    "SoftBoundsDevice",
    "SoftBoundsReferenceDevice",
    "ExpStepDevice",
    "PowStepDevice",
    "UnitCell",
    "VectorUnitCell",
    "ReferenceUnitCell",
    "OneSidedUnitCell",
    "TransferCompound",
    "BufferedTransferCompound",
    "ChoppedTransferCompound",
    "DynamicTransferCompound",
    "DigitalRankUpdateCell",
    "MixedPrecisionCompound",
    "check_rpu_config",
]
