"""The base of every config dataclass: printing, copying, dicts, validation.

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
from typing import Any

from fxanalog.config.enums import NamedEnum

__all__ = ["ConfigBase", "register_config_class", "registered_config_classes", "config_to_dict",
           "config_from_dict", "resolution_step", "check_nonneg", "check_number", "check_resolution"]


# --------------------------------------------------------------------------
# Base class: printing, dicts, validation helpers

_REGISTRY: dict[str, type] = {}


def register_config_class(cls: type) -> type:
    """Make ``cls`` known to ``config_from_dict`` (by its class name)."""
    _REGISTRY[cls.__name__] = cls
    return cls


class ConfigBase:
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
            if isinstance(value, ConfigBase):
                value.validate(f"{where}.{f.name}")
            elif isinstance(f.default, NamedEnum):
                # Accept names and store the member, so a user may write strings.
                setattr(self, f.name, type(f.default).coerce(value, f"{where}.{f.name}"))
            elif hasattr(value, "validate") and callable(value.validate):
                value.validate(f"{where}.{f.name}")
        self._check(where)

    def _check(self, where: str) -> None:  # per-class rules
        return None


def check_nonneg(where: str, name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value) or value < 0:
        raise ValueError(f"{where}.{name} = {value!r}: expected a number >= 0")


def check_number(where: str, name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        raise ValueError(f"{where}.{name} = {value!r}: expected a number")


def check_resolution(where: str, name: str, value: Any) -> None:
    check_number(where, name, value)
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


def registered_config_classes() -> dict[str, type]:
    """Every registered config class, by name."""
    return dict(_REGISTRY)


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

