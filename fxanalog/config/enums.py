"""The enums of the config fields, with aihwkit's member names.

A field of an enum type accepts the member or its name as a string (any case,
``"NoiseManagementType.ABS_MAX"`` too), as JSON configs and the command line
give them; ``validate()`` stores the member.
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = ["NamedEnum", "NoiseManagementType", "BoundManagementType", "WeightNoiseType", "WeightClipType",
           "WeightModifierType", "WeightRemapType"]


class NamedEnum(enum.Enum):
    """An enum that reads its members from their names, case-insensitively."""

    @classmethod
    def coerce(cls, value: Any, where: str) -> "NamedEnum":
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            key = value.split(".")[-1].upper()
            if key in cls.__members__:
                return cls.__members__[key]
        allowed = ", ".join(cls.__members__)
        raise ValueError(f"{where}: {value!r} is not a {cls.__name__}; expected one of {allowed}")


class NoiseManagementType(NamedEnum):
    NONE = "None"
    ABS_MAX = "AbsMax"
    MAX = "Max"
    CONSTANT = "Constant"


class BoundManagementType(NamedEnum):
    NONE = "None"
    ITERATIVE = "Iterative"


class WeightNoiseType(NamedEnum):
    NONE = "None"
    ADDITIVE_CONSTANT = "AdditiveConstant"
    PCM_READ = "PCMRead"


class WeightClipType(NamedEnum):
    NONE = "None"
    FIXED_VALUE = "FixedValue"
    LAYER_GAUSSIAN = "LayerGaussian"
    AVERAGE_CHANNEL_MAX = "AverageChannelMax"


class WeightModifierType(NamedEnum):
    NONE = "None"
    COPY = "Copy"
    DISCRETIZE = "Discretize"
    MULT_NORMAL = "MultNormal"
    ADD_NORMAL = "AddNormal"
    DISCRETIZE_ADD_NORMAL = "DiscretizeAddNormal"
    POLY = "Poly"
    PCM_NOISE = "PCMNoise"
    DROP_CONNECT = "DropConnect"


class WeightRemapType(NamedEnum):
    NONE = "None"
    LAYERWISE_SYMMETRIC = "LayerwiseSymmetric"
    CHANNELWISE_SYMMETRIC = "ChannelwiseSymmetric"

