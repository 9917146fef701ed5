"""Generates ``docs/config-reference.md`` from the config dataclasses.

Every field of every registered config class (``fxanalog.config``'s registry:
RPU configs, their parameter groups, noise models, drift compensations) and
every member of the config enums gets a row: name, type, default (read from a
fresh instance) and meaning. A field's meaning is the ``doc`` of its
declaration (``param(default, doc="...", check=...)`` in ``fxanalog.config``,
i.e. ``metadata["doc"]``; a subclass inherits its base class's fields with
their docs); an enum member's is its ``doc`` (``NAME = "Value", "What it
does."``). A missing meaning is an error, so a new field cannot go
undocumented.

    python -m fxanalog._docgen          # rewrite docs/config-reference.md
    python -m fxanalog._docgen --check  # exit 1 if the file is stale

``tests/test_docs.py`` fails when the committed file differs from a fresh
generation.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import importlib.util
import os
import sys

__all__ = ["generate", "missing_meanings", "config_classes", "preset_classes", "config_enums", "default_path", "main"]

_ORDER = [
    "InferenceRPUConfig",
    "FloatingPointRPUConfig",
    "SingleRPUConfig",
    "UnitCellRPUConfig",
    "DigitalRankUpdateRPUConfig",
    "IOParameters",
    "MappingParameter",
    "WeightModifierParameter",
    "WeightClipParameter",
    "WeightRemapParameter",
    "PrePostProcessingParameter",
    "InputRangeParameter",
    "PCMLikeNoiseModel",
    "CustomDriftPCMLikeNoiseModel",
    "StateIndependentNoiseModel",
    "ReRamWan2022NoiseModel",
    "SinglePairConductanceConverter",
    "NPairConductanceConverter",
    "DualPairConductanceConverter",
    "GlobalDriftCompensation",
    "PerColumnDriftCompensation",
    "UpdateParameters",
    "PulsedDevice",
    "IdealDevice",
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
]

_INTRO = """\
# Config reference

Every field of fxanalog's configs, its default and its meaning. Names,
nesting and defaults are those of aihwkit's `InferenceRPUConfig`,
`FloatingPointRPUConfig`, `SingleRPUConfig`, `UnitCellRPUConfig` and
`DigitalRankUpdateRPUConfig` with their update parameters, devices and unit
cells (see [concepts](concepts.md) and the [physics](physics.md)), and the
values of aihwkit's presets (`fxanalog.presets`, [Presets](#presets)).

This page is generated from the dataclasses by `python -m fxanalog._docgen`;
a test fails when it is out of date. Do not edit it by hand.

```python
from fxanalog import InferenceRPUConfig
from fxanalog.config import config_from_dict

cfg = InferenceRPUConfig()
cfg.forward.out_noise = 0.02          # fields as in aihwkit
cfg.mapping.weight_scaling_omega = 1.0
print(cfg)                            # shows what differs from the defaults
assert config_from_dict(cfg.to_dict()) == cfg   # the JSON format of --config
```
"""


# --------------------------------------------------------------------------
# Discovery


_PRESETS = "fxanalog.presets"


def _load_modules() -> None:
    """Import the modules that register config classes."""
    for name in ("fxanalog.config", "fxanalog.inference", _PRESETS):
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


def _is_preset(cls: type) -> bool:
    return cls.__module__ == _PRESETS or cls.__module__.startswith(_PRESETS + ".")


def config_classes() -> list[type]:
    """Every registered config dataclass but the presets, in the page's order."""
    _load_modules()
    from fxanalog.config import registered_config_classes

    registry = {n: c for n, c in registered_config_classes().items() if not _is_preset(c)}
    names = [n for n in _ORDER if n in registry]
    names += sorted(n for n in registry if n not in names)
    return [registry[n] for n in names]


def preset_classes() -> list[type]:
    """The preset classes of ``fxanalog.presets`` (aihwkit's), in its ``__all__`` order."""
    _load_modules()
    from fxanalog.config import registered_config_classes

    order = list(getattr(sys.modules.get(_PRESETS), "__all__", []))
    presets = [c for c in registered_config_classes().values() if _is_preset(c)]
    return sorted(presets, key=lambda c: (order.index(c.__name__) if c.__name__ in order else len(order), c.__name__))


def config_enums() -> list[type]:
    """Every enum of the fields of the registered config classes (declared
    with ``EnumOf`` or with an enum default), in the order the ``NamedEnum``
    subclasses were defined."""
    _load_modules()
    from fxanalog.config import NamedEnum
    from fxanalog.config.base import EnumOf, field_check

    used: list[type] = []
    for cls in config_classes():
        for f in dataclasses.fields(cls):
            check = field_check(f)
            e = check.enum_type if isinstance(check, EnumOf) else (
                type(f.default) if isinstance(f.default, enum.Enum) else None)
            if e is not None and e not in used:
                used.append(e)
    seen: list[type] = []
    todo = list(NamedEnum.__subclasses__())
    while todo:
        cls = todo.pop(0)
        if cls not in seen:
            seen.append(cls)
            todo.extend(cls.__subclasses__())
    return [e for e in seen if e in used] + [e for e in used if e not in seen]


def _meaning(f: dataclasses.Field) -> str | None:
    """The field's declared ``doc`` (``metadata["doc"]``)."""
    from fxanalog.config.base import field_doc

    return field_doc(f)


def _member_meaning(member: enum.Enum) -> str | None:
    """The enum member's declared ``doc``."""
    return getattr(member, "doc", None) or None


def missing_meanings() -> list[str]:
    """``Class.field`` / ``Enum.MEMBER`` names that have no meaning."""
    missing = []
    for cls in config_classes():
        for f in dataclasses.fields(cls):
            if not _meaning(f):
                missing.append(f"{cls.__name__}.{f.name}")
    for e in config_enums():
        for name, member in e.__members__.items():
            if not _member_meaning(member):
                missing.append(f"{e.__name__}.{name}")
    return missing


# --------------------------------------------------------------------------
# Rendering


def _fmt_default(value) -> str:
    from fxanalog.config import ConfigBase as _Config

    if isinstance(value, enum.Enum):
        return f"`{value.name}`"
    if isinstance(value, _Config):
        return f"[`{value!r}`](#{type(value).__name__.lower()})"
    if isinstance(value, float):
        text = repr(value)
        return f"`{text if len(text) <= 10 else format(value, '.6g')}`"
    if value is None:
        return "`None`"
    return f"`{value!r}`"


def _type_name(f: dataclasses.Field) -> str:
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return t.replace("|", "or")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def generate() -> str:
    """The Markdown of ``docs/config-reference.md``; raises ``ValueError``
    listing the fields that have no meaning."""
    missing = missing_meanings()
    if missing:
        raise ValueError(
            "config reference: no meaning for " + ", ".join(missing)
            + " (give the field a doc: param(..., doc=\"...\"); an enum member: NAME = \"Value\", \"doc\")"
        )
    out = [_INTRO]
    classes = config_classes()
    out.append("## Contents\n")
    for cls in classes:
        out.append(f"- [{cls.__name__}](#{cls.__name__.lower()})")
    out.append("- [Presets](#presets)")
    out.append("- [Enums](#enums)\n")
    for cls in classes:
        doc = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
        out.append(f"## {cls.__name__}\n")
        out.append(f"`{cls.__module__}.{cls.__name__}`: {doc}\n")
        fields = dataclasses.fields(cls)
        if not fields:
            out.append("No fields.\n")
            continue
        default = cls()
        out.append("| field | type | default | meaning |")
        out.append("|---|---|---|---|")
        for f in fields:
            out.append(
                f"| `{f.name}` | {_cell(_type_name(f))} | {_cell(_fmt_default(getattr(default, f.name)))} "
                f"| {_cell(_meaning(f))} |"
            )
        out.append("")
    out.extend(_presets_section())
    out.append("## Enums\n")
    out.append("Fields of these types accept the member or its name as a string (any case), "
               "as in JSON configs.\n")
    for e in config_enums():
        out.append(f"### {e.__name__}\n")
        out.append("| member | meaning |")
        out.append("|---|---|")
        for name, member in e.__members__.items():
            out.append(f"| `{name}` | {_cell(_member_meaning(member))} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _presets_section() -> list[str]:
    """Each preset: its base class and the fields whose defaults it changes."""
    out = ["## Presets\n",
           "aihwkit's presets (`from fxanalog.presets import ReRamSBPreset`): config classes whose defaults are "
           "aihwkit's published values. Each is listed with the fields it changes; the others are its base "
           "class's.\n"]
    for cls in preset_classes():
        base = cls.__mro__[1]
        doc = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
        out.append(f"### {cls.__name__}\n")
        anchor = base.__name__.lower()
        out.append(f"`{cls.__module__}.{cls.__name__}`, based on [`{base.__name__}`](#{anchor}): {doc}\n")
        preset, default = cls(), base()
        rows = [f.name for f in dataclasses.fields(cls) if getattr(preset, f.name) != getattr(default, f.name)]
        if not rows:
            out.append("The same defaults as its base class.\n")
            continue
        out.append(f"| field | preset | {base.__name__} |")
        out.append("|---|---|---|")
        for name in rows:
            out.append(f"| `{name}` | {_cell(_fmt_value(getattr(preset, name)))} "
                       f"| {_cell(_fmt_value(getattr(default, name)))} |")
        out.append("")
    return out


def _fmt_value(value) -> str:
    """A default as code, without the link of a nested config."""
    if isinstance(value, float):
        return _fmt_default(value)
    if isinstance(value, enum.Enum):
        return f"`{value.name}`"
    return f"`{value!r}`"


def default_path() -> str:
    """``docs/config-reference.md`` of the source tree this package lives in."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(root, "docs", "config-reference.md")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in argv
    path = default_path()
    text = generate()
    if check:
        try:
            with open(path, encoding="utf-8") as f:
                current = f.read()
        except OSError:
            current = None
        if current != text:
            print(f"{path} is out of date: run python -m fxanalog._docgen", file=sys.stderr)
            return 1
        return 0
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
