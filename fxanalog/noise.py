"""Inference noise models (programming noise, drift, read noise) and drift compensation.

The formulas are those of ``shared/reference/analog-semantics.md``, section 3.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fxanalog.config import _Config, register_config_class

__all__ = [
    "SinglePairConductanceConverter",
    "BaseNoiseModel",
    "PCMLikeNoiseModel",
    "BaseDriftCompensation",
    "GlobalDriftCompensation",
]


@register_config_class
@dataclass(repr=False)
class SinglePairConductanceConverter(_Config):
    """Weights to a pair of conductances (g+, g-) in micro-siemens, and back."""

    g_max: float = 25.0
    g_min: float = 0.0


class BaseNoiseModel(_Config):
    """Base class of the noise models of ``InferenceRPUConfig.noise_model``."""


@register_config_class
@dataclass(repr=False)
class PCMLikeNoiseModel(BaseNoiseModel):
    """PCM statistical model of Nandakumar et al., ICECS 2019."""

    prog_coeff: list = field(default_factory=lambda: [0.26348, 1.9650, -1.1731])
    g_converter: SinglePairConductanceConverter = field(default_factory=SinglePairConductanceConverter)
    g_max: float = 25.0
    t_read: float = 250.0e-9
    t_0: float = 20.0
    prog_noise_scale: float = 1.0
    read_noise_scale: float = 1.0
    drift_scale: float = 1.0


class BaseDriftCompensation(_Config):
    """Base class of the drift compensations of ``InferenceRPUConfig.drift_compensation``."""


@register_config_class
@dataclass(repr=False)
class GlobalDriftCompensation(BaseDriftCompensation):
    """One digital factor per tile: mean|F(I)| at programming over mean|F(I)| now."""
