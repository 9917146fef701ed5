"""RPU configurations, with aihwkit's names, nesting and defaults.

A user moving from aihwkit changes the import and nothing else::

    from fxanalog import InferenceRPUConfig
    cfg = InferenceRPUConfig()
    cfg.forward.out_noise = 0.0

Configs are plain mutable dataclasses. They copy with ``copy.deepcopy``,
compare with ``==``, print only the fields that differ from the defaults, and
round-trip through plain dicts (``to_dict`` / ``from_dict``), which is what
checkpoints, dumps and the command line use. ``validate()`` is called every
time a config is used for a tile, so a config mutated after construction is
checked too.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

__all__ = [
    "NoiseManagementType",
    "BoundManagementType",
    "WeightNoiseType",
    "WeightClipType",
    "WeightModifierType",
    "WeightRemapType",
    "IOParameters",
    "MappingParameter",
    "WeightClipParameter",
    "WeightModifierParameter",
    "WeightRemapParameter",
    "InputRangeParameter",
    "PrePostProcessingParameter",
    "FloatingPointRPUConfig",
    "InferenceRPUConfig",
    "config_to_dict",
    "config_from_dict",
    "register_config_class",
]


# --------------------------------------------------------------------------
# Enums (aihwkit's member names)


class _NamedEnum(enum.Enum):
    """An enum that reads its members from their names, case-insensitively."""

    @classmethod
    def coerce(cls, value: Any, where: str) -> "_NamedEnum":
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            key = value.split(".")[-1].upper()
            if key in cls.__members__:
                return cls.__members__[key]
        allowed = ", ".join(cls.__members__)
        raise ValueError(f"{where}: {value!r} is not a {cls.__name__}; expected one of {allowed}")


class NoiseManagementType(_NamedEnum):
    NONE = "None"
    ABS_MAX = "AbsMax"
    MAX = "Max"
    CONSTANT = "Constant"


class BoundManagementType(_NamedEnum):
    NONE = "None"
    ITERATIVE = "Iterative"


class WeightNoiseType(_NamedEnum):
    NONE = "None"
    ADDITIVE_CONSTANT = "AdditiveConstant"
    PCM_READ = "PCMRead"


class WeightClipType(_NamedEnum):
    NONE = "None"
    FIXED_VALUE = "FixedValue"
    LAYER_GAUSSIAN = "LayerGaussian"
    AVERAGE_CHANNEL_MAX = "AverageChannelMax"


class WeightModifierType(_NamedEnum):
    NONE = "None"
    COPY = "Copy"
    DISCRETIZE = "Discretize"
    MULT_NORMAL = "MultNormal"
    ADD_NORMAL = "AddNormal"
    DISCRETIZE_ADD_NORMAL = "DiscretizeAddNormal"
    POLY = "Poly"
    PCM_NOISE = "PCMNoise"
    DROP_CONNECT = "DropConnect"


class WeightRemapType(_NamedEnum):
    NONE = "None"
    LAYERWISE_SYMMETRIC = "LayerwiseSymmetric"
    CHANNELWISE_SYMMETRIC = "ChannelwiseSymmetric"


# --------------------------------------------------------------------------
# Base class: printing, dicts, validation helpers

_REGISTRY: dict[str, type] = {}


def register_config_class(cls: type) -> type:
    """Make ``cls`` known to ``config_from_dict`` (by its class name)."""
    _REGISTRY[cls.__name__] = cls
    return cls


class _Config:
    """Shared behaviour of every config dataclass."""

    def __repr__(self) -> str:
        # Only what differs from the defaults, as aihwkit users read configs.
        try:
            default = type(self)()
        except TypeError:
            default = None
        parts = []
        for f in dataclasses.fields(self):
            if not f.repr:
                continue
            value = getattr(self, f.name)
            if default is not None and value == getattr(default, f.name):
                continue
            parts.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def to_dict(self) -> dict:
        """A plain dict (str, numbers, bools, lists, nested dicts)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict):
        """Inverse of ``to_dict``. Unknown fields raise ``ValueError``."""
        obj = config_from_dict(data, expected=cls)
        if not isinstance(obj, cls):
            raise TypeError(f"from_dict: the dict describes a {type(obj).__name__}, not a {cls.__name__}")
        return obj

    def validate(self, where: str | None = None) -> None:
        """Check every field; raise ``ValueError`` naming the bad one."""
        where = where or type(self).__name__
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, _Config):
                value.validate(f"{where}.{f.name}")
            elif isinstance(f.default, _NamedEnum):
                # Accept names and store the member, so a user may write strings.
                setattr(self, f.name, type(f.default).coerce(value, f"{where}.{f.name}"))
            elif hasattr(value, "validate") and callable(value.validate):
                value.validate(f"{where}.{f.name}")
        self._check(where)

    def _check(self, where: str) -> None:  # per-class rules
        return None


def _nonneg(where: str, name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value) or value < 0:
        raise ValueError(f"{where}.{name} = {value!r}: expected a number >= 0")


def _number(where: str, name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        raise ValueError(f"{where}.{name} = {value!r}: expected a number")


def _resolution(where: str, name: str, value: Any) -> None:
    _number(where, name, value)
    # <= 0: off; (0, 1]: a step as a fraction of the range; > 1: a number of steps.
    if 0 < value <= 1 or value <= 0:
        return
    if value > 1 and float(value).is_integer():
        return
    raise ValueError(
        f"{where}.{name} = {value!r}: expected <= 0 (off), a fraction in (0, 1], or a whole number of steps > 1"
    )


def resolution_step(res: float) -> float:
    """The step as a fraction of the full range (0.0 means no quantization)."""
    if res <= 0:
        return 0.0
    return 1.0 / res if res > 1 else float(res)


# --------------------------------------------------------------------------
# Forward / backward of a tile


@register_config_class
@dataclass(repr=False)
class IOParameters(_Config):
    """Periphery of a tile's matrix-vector product (DAC, ADC, noise, management).

    Defaults are those of ``aihwkit``'s ``InferenceRPUConfig().forward``.
    """

    is_perfect: bool = False
    inp_bound: float = 1.0
    inp_res: float = 1.0 / (2**7 - 2)
    inp_sto_round: bool = False
    inp_noise: float = 0.0
    out_bound: float = 12.0
    out_res: float = 1.0 / (2**9 - 2)
    out_sto_round: bool = False
    out_noise: float = 0.06
    out_scale: float = 1.0
    w_noise: float = 0.0
    w_noise_type: WeightNoiseType = WeightNoiseType.NONE
    noise_management: NoiseManagementType = NoiseManagementType.ABS_MAX
    nm_thres: float = 0.0
    bound_management: BoundManagementType = BoundManagementType.ITERATIVE
    max_bm_factor: int = 1000
    max_bm_res: float = 0.25
    ir_drop: float = 0.0
    ir_drop_g_ratio: float = 1.0 / 0.35 / 5e-6
    out_nonlinearity: float = 0.0

    def _check(self, where: str) -> None:
        for name in ("inp_noise", "out_noise", "w_noise", "nm_thres", "ir_drop", "out_nonlinearity", "out_bound"):
            _nonneg(where, name, getattr(self, name))
        _number(where, "out_scale", self.out_scale)
        if not (isinstance(self.inp_bound, (int, float)) and self.inp_bound > 0):
            raise ValueError(f"{where}.inp_bound = {self.inp_bound!r}: expected a number > 0")
        for name in ("inp_res", "out_res"):
            _resolution(where, name, getattr(self, name))
        if not (isinstance(self.max_bm_factor, (int, float)) and self.max_bm_factor >= 1):
            raise ValueError(f"{where}.max_bm_factor = {self.max_bm_factor!r}: expected a number >= 1")
        _nonneg(where, "max_bm_res", self.max_bm_res)
        if not (isinstance(self.ir_drop_g_ratio, (int, float)) and self.ir_drop_g_ratio > 0):
            raise ValueError(f"{where}.ir_drop_g_ratio = {self.ir_drop_g_ratio!r}: expected a number > 0")
        if self.noise_management != NoiseManagementType.NONE and self.inp_bound != 1.0 and not self.is_perfect:
            raise ValueError(
                f"{where}.inp_bound = {self.inp_bound!r}: noise management "
                f"{self.noise_management.name} needs inp_bound = 1.0 (or noise_management = NONE)"
            )
        if self.noise_management == NoiseManagementType.CONSTANT and self.nm_thres <= 0 and not self.is_perfect:
            raise ValueError(f"{where}.nm_thres = {self.nm_thres!r}: CONSTANT noise management needs nm_thres > 0")


# --------------------------------------------------------------------------
# Mapping of a layer onto tiles


@register_config_class
@dataclass(repr=False)
class MappingParameter(_Config):
    """How a layer's weights are put on tiles (scales, tile sizes, bias)."""

    digital_bias: bool = True
    weight_scaling_omega: float = 0.0
    weight_scaling_columnwise: bool = False
    learn_out_scaling: bool = False
    out_scaling_columnwise: bool = False
    max_input_size: int = 512
    max_output_size: int = 512

    def _check(self, where: str) -> None:
        _nonneg(where, "weight_scaling_omega", self.weight_scaling_omega)
        for name in ("max_input_size", "max_output_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{where}.{name} = {value!r}: expected a whole number >= 0 (0 = unlimited)")
        if not self.digital_bias:
            raise ValueError(
                f"{where}.digital_bias = False: analog bias (an extra tile column) is not supported; "
                "use digital_bias = True"
            )


# --------------------------------------------------------------------------
# Training-time settings of inference tiles


@register_config_class
@dataclass(repr=False)
class WeightClipParameter(_Config):
    """Clipping of the weights after each optimizer step."""

    fixed_value: float = -1.0
    sigma: float = 2.5
    type: WeightClipType = WeightClipType.NONE

    def _check(self, where: str) -> None:
        _number(where, "fixed_value", self.fixed_value)
        _nonneg(where, "sigma", self.sigma)
        if self.type == WeightClipType.FIXED_VALUE and self.fixed_value <= 0:
            raise ValueError(f"{where}.fixed_value = {self.fixed_value!r}: FIXED_VALUE clipping needs a value > 0")


@register_config_class
@dataclass(repr=False)
class WeightModifierParameter(_Config):
    """Perturbation of the weights used in each training forward pass."""

    std_dev: float = 0.0
    per_batch_sample: bool = False
    res: float = 0.0
    sto_round: bool = False
    pdrop: float = 0.0
    enable_during_test: bool = False
    rel_to_actual_wmax: bool = True
    assumed_wmax: float = 1.0
    coeffs: list = field(default_factory=lambda: [0.2, 0.2, 0.0])
    type: WeightModifierType = WeightModifierType.COPY

    def _check(self, where: str) -> None:
        _nonneg(where, "std_dev", self.std_dev)
        _resolution(where, "res", self.res)
        if not (isinstance(self.pdrop, (int, float)) and 0.0 <= self.pdrop <= 1.0):
            raise ValueError(f"{where}.pdrop = {self.pdrop!r}: expected a probability in [0, 1]")
        if not (isinstance(self.assumed_wmax, (int, float)) and self.assumed_wmax > 0):
            raise ValueError(f"{where}.assumed_wmax = {self.assumed_wmax!r}: expected a number > 0")


@register_config_class
@dataclass(repr=False)
class WeightRemapParameter(_Config):
    """Remapping of the weights to the tile's range (scales go to digital)."""

    remapped_wmax: float = 1.0
    max_scale_range: float = 0.0
    max_scale_ref: float = 0.0
    type: WeightRemapType = WeightRemapType.NONE

    def _check(self, where: str) -> None:
        if not (isinstance(self.remapped_wmax, (int, float)) and self.remapped_wmax > 0):
            raise ValueError(f"{where}.remapped_wmax = {self.remapped_wmax!r}: expected a number > 0")


@register_config_class
@dataclass(repr=False)
class InputRangeParameter(_Config):
    """A learned input range (aihwkit's ``pre_post.input_range``).

    When enabled, every tile's inputs are clipped to ``[-ir, ir]`` and divided
    by ``ir`` in digital before the DAC, and the tile's output is multiplied by
    ``ir``: a static, trained replacement for dynamic noise management (which
    is then usually set to ``NONE``, with bound management ``NONE``). One
    ``ir`` per input piece of the tile array (the tiles that share the piece
    see the same inputs), a parameter of the layer (``layer.input_range``).
    """

    enable: bool = False
    learn_input_range: bool = True
    init_value: float = 3.0
    init_from_data: int = 100
    init_std_alpha: float = 3.0
    decay: float = 0.001
    input_min_percentage: float = 0.95
    manage_output_clipping: bool = False
    output_min_percentage: float = 0.95
    gradient_scale: float = 1.0
    gradient_relative: bool = True
    calibration_info: Optional[str] = None

    def _check(self, where: str) -> None:
        if not (isinstance(self.init_value, (int, float)) and self.init_value > 0):
            raise ValueError(f"{where}.init_value = {self.init_value!r}: expected a number > 0")
        if not isinstance(self.init_from_data, int) or isinstance(self.init_from_data, bool) or self.init_from_data < 0:
            raise ValueError(f"{where}.init_from_data = {self.init_from_data!r}: expected a whole number >= 0 (0: off)")
        for name in ("init_std_alpha", "decay", "gradient_scale"):
            _nonneg(where, name, getattr(self, name))
        for name in ("input_min_percentage", "output_min_percentage"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0):
                raise ValueError(f"{where}.{name} = {value!r}: expected a fraction in [0, 1]")
        if self.calibration_info is not None and not isinstance(self.calibration_info, str):
            raise ValueError(f"{where}.calibration_info = {self.calibration_info!r}: expected None or a string")


@register_config_class
@dataclass(repr=False)
class PrePostProcessingParameter(_Config):
    """Digital processing around the tile (aihwkit's ``rpu_config.pre_post``)."""

    input_range: InputRangeParameter = field(default_factory=InputRangeParameter)


# --------------------------------------------------------------------------
# RPU configs


class _RPUConfig(_Config):
    tile_kind: ClassVar[str] = "inference"

    def check_tile_config(self, where: str | None = None) -> None:
        """Validate, as done each time the config is used for a tile."""
        self.validate(where or type(self).__name__)


@register_config_class
@dataclass(repr=False)
class FloatingPointRPUConfig(_RPUConfig):
    """An ideal tile: exactly the digital result (useful as a reference)."""

    mapping: MappingParameter = field(default_factory=MappingParameter)
    tile_kind: ClassVar[str] = "floating_point"

    @property
    def forward(self) -> IOParameters:
        return IOParameters(is_perfect=True)

    @property
    def backward(self) -> IOParameters:
        return IOParameters(is_perfect=True)


def _default_noise_model():
    from fxanalog.noise import PCMLikeNoiseModel

    return PCMLikeNoiseModel()


def _default_drift_compensation():
    from fxanalog.noise import GlobalDriftCompensation

    return GlobalDriftCompensation()


@register_config_class
@dataclass(repr=False)
class InferenceRPUConfig(_RPUConfig):
    """A tile for inference and hardware-aware training (aihwkit's defaults).

    ``forward`` is the noisy, quantized forward pass; ``backward`` is perfect,
    so hardware-aware training is a noisy forward with plain gradients.
    """

    forward: IOParameters = field(default_factory=IOParameters)
    backward: IOParameters = field(default_factory=lambda: IOParameters(is_perfect=True))
    mapping: MappingParameter = field(default_factory=MappingParameter)
    clip: WeightClipParameter = field(default_factory=WeightClipParameter)
    modifier: WeightModifierParameter = field(default_factory=WeightModifierParameter)
    remap: WeightRemapParameter = field(default_factory=WeightRemapParameter)
    pre_post: PrePostProcessingParameter = field(default_factory=PrePostProcessingParameter)
    noise_model: Any = field(default_factory=_default_noise_model)
    drift_compensation: Any = field(default_factory=_default_drift_compensation)

    def _check(self, where: str) -> None:
        from fxanalog.noise import BaseDriftCompensation, BaseNoiseModel

        ir = self.pre_post.input_range
        if ir.enable and ir.manage_output_clipping:
            fwd = self.forward
            if fwd.is_perfect or fwd.out_bound <= 0:
                raise ValueError(
                    f"{where}.pre_post.input_range.manage_output_clipping = True: needs an output bound "
                    f"(forward.is_perfect = False and forward.out_bound > 0; got is_perfect = "
                    f"{fwd.is_perfect!r}, out_bound = {fwd.out_bound!r})"
                )
            if fwd.noise_management != NoiseManagementType.NONE or fwd.bound_management != BoundManagementType.NONE:
                raise ValueError(
                    f"{where}.pre_post.input_range.manage_output_clipping = True: needs "
                    f"forward.noise_management = NONE and forward.bound_management = NONE (got "
                    f"{fwd.noise_management.name}, {fwd.bound_management.name})"
                )

        if not isinstance(self.noise_model, BaseNoiseModel):
            raise ValueError(
                f"{where}.noise_model = {self.noise_model!r}: expected a noise model "
                "(a subclass of fxanalog.noise.BaseNoiseModel)"
            )
        if self.drift_compensation is not None and not isinstance(self.drift_compensation, BaseDriftCompensation):
            raise ValueError(
                f"{where}.drift_compensation = {self.drift_compensation!r}: expected None or a "
                "drift compensation (a subclass of fxanalog.noise.BaseDriftCompensation)"
            )


RPUConfig = (FloatingPointRPUConfig, InferenceRPUConfig)


def check_rpu_config(rpu_config: Any, where: str = "rpu_config") -> None:
    """Raise ``TypeError`` unless ``rpu_config`` is an fxanalog RPU config; validate it."""
    if not isinstance(rpu_config, _RPUConfig):
        raise TypeError(
            f"{where}: expected an RPU config such as fxanalog.InferenceRPUConfig() or "
            f"fxanalog.FloatingPointRPUConfig(), got {type(rpu_config).__module__}.{type(rpu_config).__name__}"
        )
    rpu_config.check_tile_config(where)


# --------------------------------------------------------------------------
# Plain dicts


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _encode(v) for k, v in value.items()}  # e.g. a custom drift model table
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot put a {type(value).__name__} into a config dict: {value!r}")


def config_to_dict(config: Any) -> dict:
    """A plain dict of a config; ``"class"`` names the dataclass."""
    out: dict[str, Any] = {"class": type(config).__name__}
    for f in dataclasses.fields(config):
        out[f.name] = _encode(getattr(config, f.name))
    return out


def config_from_dict(data: Any, expected: type | None = None) -> Any:
    """Rebuild a config (or noise model) from ``config_to_dict``'s output."""
    import fxanalog.noise  # noqa: F401  (registers the noise-model classes)

    if not isinstance(data, dict):
        raise ValueError(f"config_from_dict: expected a dict, got {type(data).__name__}")
    data = dict(data)
    name = data.pop("class", None) or (expected.__name__ if expected else None)
    if name not in _REGISTRY:
        raise ValueError(f"config_from_dict: unknown config class {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    cls = _REGISTRY[name]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ValueError(f"{name}: unknown field {key!r}; known fields: {', '.join(fields)}")
        default = cls().__dict__[key] if key in cls().__dict__ else None
        if isinstance(value, dict) and "class" in value:
            kwargs[key] = config_from_dict(value)
        elif isinstance(value, dict) and dataclasses.is_dataclass(default):
            kwargs[key] = config_from_dict(value, expected=type(default))
        elif isinstance(default, enum.Enum) and value is not None:
            kwargs[key] = type(default).coerce(value, f"{name}.{key}")
        else:
            kwargs[key] = value
    return cls(**kwargs)
