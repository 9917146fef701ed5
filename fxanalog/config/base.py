"""The base of every config dataclass: declared fields, printing, copying, dicts, validation.

Configs are plain mutable dataclasses. They copy with ``copy.deepcopy``,
compare with ``==``, print only the fields that differ from the defaults, and
round-trip through plain dicts (``to_dict`` / ``from_dict``), which is what
checkpoints, dumps and the command line use. ``validate()`` is called every
time a config is used for a tile, so a config mutated after construction is
checked too; assigning a name that is not a field raises ``AttributeError``.

Every field is declared with ``param``: its default, its meaning (``doc``,
which the generated config reference shows) and its rule (``check``, one of
the check objects below), e.g.::

    @register_config_class
    @dataclass(repr=False)
    class MyParameter(ConfigBase):
        \"\"\"What the group is (the first paragraph goes into the reference).\"\"\"

        noise: float = param(0.0, doc="Additive noise strength; 0 turns it off.", check=Number(ge=0))
        levels: int = param(256, doc="Number of levels.", check=Whole(ge=2))
        enable: bool = param(False, doc="Turn it on.")                # Bool() from the default
        kind: MyType = param(MyType.NONE, doc="Which kind.")          # EnumOf(MyType) from the default
        inner: IOParameters = param(default_factory=IOParameters, doc="Nested group.")  # Nested(...)

        def check_consistency(self, where: str) -> None:   # rules that span fields, if any
            ...

A check gets the value and the field's full name (``"IOParameters.out_noise"``)
and returns the value to store (an enum field stores the member for a name),
or raises ``ValueError("{where}.{field} = {value!r}: expected ...")``.
Numbers are ``int`` or ``float`` but never ``bool``, and never NaN or +-inf.

A registered class is called as aihwkit's class of that name is: keywords,
and positional arguments in the field order, or in the order a class
declares with ``positional_fields = ("name", ...)`` (the fields it does not
name follow in field order) where aihwkit's signature differs from the field
order, e.g. ``CustomDriftPCMLikeNoiseModel(custom_drift_model, g_converter=...)``.
An unknown keyword raises ``TypeError`` naming the class and its fields.
A class whose aihwkit constructor derives some arguments from others (a
noise model's ``g_max`` from its converter) says so in a classmethod
``init_arguments(kwargs)``, which gets the keywords the caller gave and
returns those to build with. ``config_from_dict`` builds from field data:
a field its dict leaves out is the field's default, never derived.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import inspect
import math
from typing import Any, Callable, Optional

from fxanalog.config.enums import NamedEnum

__all__ = [
    "ConfigBase",
    "param",
    "Check",
    "Number",
    "Whole",
    "Fraction",
    "Resolution",
    "Bool",
    "EnumOf",
    "Nested",
    "InstanceOf",
    "NumberList",
    "ConfigList",
    "is_number",
    "ListTable",
    "OptionalString",
    "Dict",
    "field_check",
    "field_doc",
    "register_config_class",
    "with_defaults",
    "unregister_config_class",
    "registered_config_classes",
    "positional_order",
    "config_to_dict",
    "config_from_dict",
    "resolution_step",
]


# --------------------------------------------------------------------------
# Checks: one object per kind of rule


class Check:
    """A field's rule. ``expected`` is the text after ``expected`` in the
    message; subclasses override ``__call__`` (and may call ``fail``)."""

    expected: str = "a valid value"

    def __call__(self, value: Any, where: str) -> Any:
        """Return the value to store, or raise ``ValueError``."""
        return value

    def decode(self, value: Any) -> Any:
        """The value from its plain-dict (JSON) form; most values are stored as they are."""
        return value

    def fail(self, value: Any, where: str, expected: str | None = None) -> None:
        raise ValueError(f"{where} = {value!r}: expected {expected or self.expected}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.expected!r})"


def is_number(value: Any) -> bool:
    """An ``int`` or ``float`` that is not a bool (finite or not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Number(Check):
    """A finite ``int`` or ``float`` (no bool, NaN or +-inf), within the given bounds.

    ``Number()``: any finite number; ``Number(ge=0)``: ``>= 0``;
    ``Number(gt=0)``; ``Number(ge=0, le=1)``. ``note`` is appended to the
    message (e.g. ``"(0 = unlimited)"``); ``nonfinite`` replaces the message's
    ``NaN and +-inf are refused`` (e.g. to say what to write instead).
    """

    noun = "number"

    def __init__(self, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
                 lt: float | None = None, note: str = "", nonfinite: str = "") -> None:
        self.ge, self.gt, self.le, self.lt, self.note = ge, gt, le, lt, note
        self.nonfinite = nonfinite or "NaN and +-inf are refused"
        self.expected = self.describe()

    def bounds(self) -> str:
        lo = ("[", self.ge) if self.ge is not None else ("(", self.gt) if self.gt is not None else None
        hi = ("]", self.le) if self.le is not None else (")", self.lt) if self.lt is not None else None
        if lo and hi:
            return f" in {lo[0]}{lo[1]!r}, {hi[1]!r}{hi[0]}"
        if lo:
            return f" {'>=' if lo[0] == '[' else '>'} {lo[1]!r}"
        if hi:
            return f" {'<=' if hi[0] == ']' else '<'} {hi[1]!r}"
        return ""

    def describe(self, finite: bool = False) -> str:
        text = f"a {'finite ' if finite else ''}{self.noun}{self.bounds()}"
        return f"{text} {self.note}" if self.note else text

    def in_bounds(self, value: float) -> bool:
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))

    def is_kind(self, value: Any) -> bool:
        return is_number(value)

    def __call__(self, value: Any, where: str) -> Any:
        if not self.is_kind(value):
            self.fail(value, where)
        if not math.isfinite(value):
            self.fail(value, where, f"{self.describe(finite=True)} ({self.nonfinite})")
        if not self.in_bounds(value):
            self.fail(value, where)
        return value


class Whole(Number):
    """A whole number: an ``int`` (not a bool, not a float), within the bounds.

    ``bool_as_int=True`` is for counts that aihwkit compares with a number
    (``idx < init_from_data``), where a bool then counts as 0 or 1: ``False``
    and ``True`` are accepted and stored as ``0`` and ``1``.
    """

    noun = "whole number"

    def __init__(self, *, bool_as_int: bool = False, **bounds: Any) -> None:
        self.bool_as_int = bool_as_int
        super().__init__(**bounds)

    def is_kind(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    def __call__(self, value: Any, where: str) -> Any:
        if self.bool_as_int and isinstance(value, bool):
            value = int(value)
        return super().__call__(value, where)


class Fraction(Number):
    """A number in [0, 1]; ``noun`` names it in the message (``"probability"``)."""

    def __init__(self, noun: str = "fraction") -> None:
        self.noun = noun
        super().__init__(ge=0.0, le=1.0)

    def bounds(self) -> str:
        return " in [0, 1]"


class Resolution(Number):
    """A quantization step: ``<= 0`` off, ``(0, 1]`` a fraction of the range,
    ``> 1`` a whole number of steps (see ``resolution_step``)."""

    def __init__(self) -> None:
        super().__init__()
        self.expected = "<= 0 (off), a fraction in (0, 1], or a whole number of steps > 1"

    def describe(self, finite: bool = False) -> str:
        return f"a finite number: {self.expected}" if finite else self.expected

    def in_bounds(self, value: float) -> bool:
        return value <= 1 or float(value).is_integer()

    def __call__(self, value: Any, where: str) -> Any:
        if not is_number(value):
            self.fail(value, where, f"a number: {self.expected}")
        return super().__call__(value, where)


class Bool(Check):
    """``True`` or ``False`` (not 0/1, not a string)."""

    expected = "a bool (True or False)"

    def __call__(self, value: Any, where: str) -> Any:
        if not isinstance(value, bool):
            self.fail(value, where)
        return value


class EnumOf(Check):
    """A member of a ``NamedEnum``, or its name as a string (any case); the
    member is stored."""

    def __init__(self, enum_type: type[NamedEnum]) -> None:
        self.enum_type = enum_type
        self.expected = enum_type.expected()

    def __call__(self, value: Any, where: str) -> Any:
        return self.enum_type.coerce(value, where)


class InstanceOf(Check):
    """An instance of ``cls`` (a subclass too), or ``None`` when ``optional``;
    a value that has ``validate`` is validated under the field's name."""

    def __init__(self, cls: type, what: str | None = None, optional: bool = False) -> None:
        self.cls, self.optional = cls, optional
        what = what or f"{'an' if cls.__name__[:1] in 'AEIOU' else 'a'} {cls.__name__}"
        self.expected = f"None or {what}" if optional else what

    def __call__(self, value: Any, where: str) -> Any:
        if value is None and self.optional:
            return value
        if not isinstance(value, self.cls):
            self.fail(value, where)
        if isinstance(value, ConfigBase):
            value.validate(where)
        return value


class Nested(InstanceOf):
    """A nested config group (an instance of the given ``ConfigBase`` class),
    validated under the field's name."""


class NumberList(Check):
    """A list (or tuple) of finite numbers, at least ``min_len`` long."""

    def __init__(self, min_len: int = 0) -> None:
        self.min_len = min_len
        self.expected = "a non-empty list of numbers" if min_len == 1 else (
            f"a list of at least {min_len} numbers" if min_len > 1 else "a list of numbers")

    def __call__(self, value: Any, where: str) -> Any:
        if not (isinstance(value, (list, tuple)) and len(value) >= self.min_len and all(map(is_number, value))):
            self.fail(value, where)
        if not all(math.isfinite(v) for v in value):
            self.fail(value, where, f"{self.expected}, all finite (NaN and +-inf are refused)")
        return value


class ConfigList(Check):
    """A list of config objects, each an instance of ``cls`` (a class or a
    tuple of classes), each validated as ``where[i]``. ``what`` names the
    items in the message; a plain dict of the list (``to_dict``) is read
    back item by item (``decode``)."""

    def __init__(self, cls: type | tuple[type, ...], what: str) -> None:
        self.cls = cls
        self.expected = f"a list of {what}"

    def __call__(self, value: Any, where: str) -> Any:
        if not isinstance(value, list):
            self.fail(value, where)
        for i, item in enumerate(value):
            if not isinstance(item, self.cls):
                name = type(item).__name__
                self.fail(value, where, f"{self.expected}; item {i} is {'an' if name[:1] in 'AEIOU' else 'a'} {name}")
            if isinstance(item, ConfigBase):
                item.validate(f"{where}[{i}]")
        return value

    def decode(self, value: Any) -> Any:
        """Each item's dict (with its ``"class"``) back into its config."""
        if not isinstance(value, list):
            return value
        return [config_from_dict(v) if isinstance(v, dict) and "class" in v else v for v in value]


class ListTable(Check):
    """A non-empty dict from numbers (``key``'s rule, e.g. times in seconds)
    to lists of finite numbers, each at least ``min_len`` long."""

    def __init__(self, key: Number, key_noun: str, min_len: int = 1) -> None:
        self.key, self.min_len = key, min_len
        numbers = "one number" if min_len == 1 else f"{min_len} numbers"
        self.expected = (f"a non-empty dict from {key_noun} (each {key.describe(finite=True)}) to lists of at "
                         f"least {numbers}")

    def __call__(self, value: Any, where: str) -> Any:
        if not isinstance(value, dict) or not value:
            self.fail(value, where)
        for k, v in value.items():
            if not (self.key.is_kind(k) and math.isfinite(k) and self.key.in_bounds(k)):
                self.fail(value, where, f"{self.expected}; the key {k!r} is not")
            NumberList(self.min_len)(v, f"{where}[{k!r}]")
        return value

    def decode(self, value: Any) -> Any:
        """JSON turns the number keys into strings: read them back as numbers."""
        if not isinstance(value, dict):
            return value
        out = {}
        for k, v in value.items():
            if isinstance(k, str):
                try:
                    k = float(k)
                except ValueError:
                    pass  # left as it is: the check names it
            out[k] = v
        return out


class OptionalString(Check):
    """``None`` or a string."""

    expected = "None or a string"

    def __call__(self, value: Any, where: str) -> Any:
        if value is not None and not isinstance(value, str):
            self.fail(value, where)
        return value


class Dict(Check):
    """A dict (its contents are the class's ``check_consistency``)."""

    expected = "a dict"

    def __call__(self, value: Any, where: str) -> Any:
        if not isinstance(value, dict):
            self.fail(value, where)
        return value


# --------------------------------------------------------------------------
# Declaring a field


def param(default: Any = dataclasses.MISSING, *, doc: str, check: Check | None = None,
          default_factory: Callable[[], Any] | Any = dataclasses.MISSING, **field_kwargs: Any) -> Any:
    """A config field: ``dataclasses.field`` with its meaning and its rule.

    ``doc`` is one line of Markdown for the config reference. ``check`` may be
    left out where the default says it: a bool (``Bool()``), an enum member
    (``EnumOf(type)``) or a config class as ``default_factory``
    (``Nested(cls)``). Any other field must give one.
    """
    if not isinstance(doc, str) or not doc.strip():
        raise TypeError("param: doc must be a non-empty string (the field's meaning)")
    if check is None:
        if isinstance(default, bool):
            check = Bool()
        elif isinstance(default, NamedEnum):
            check = EnumOf(type(default))
        elif isinstance(default_factory, type) and issubclass(default_factory, ConfigBase):
            check = Nested(default_factory)
        else:
            raise TypeError(f"param: give a check for the field documented as {doc!r} (cannot infer one "
                            f"from default {default!r})")
    if not isinstance(check, Check):
        raise TypeError(f"param: check must be a Check object, got {check!r}")
    metadata = dict(field_kwargs.pop("metadata", None) or {}, doc=doc, check=check)
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata, **field_kwargs)


def field_check(f: dataclasses.Field) -> Optional[Check]:
    """The check declared for a field (``None`` for a plain dataclass field)."""
    return f.metadata.get("check") if f.metadata else None


def field_doc(f: dataclasses.Field) -> Optional[str]:
    """The meaning declared for a field (``None`` when it has none)."""
    return (f.metadata.get("doc") if f.metadata else None) or None


def _field_specs(cls: type) -> tuple[tuple[str, Optional[Check], Optional[type]], ...]:
    """``(name, check, enum type of a plain field's default)`` of each field
    of a config class, kept on the class itself. Computed once;
    ``register_config_class`` computes it up front, so that a config built or
    validated inside ``torch.compile`` is read from a class attribute rather
    than through ``dataclasses.fields``."""
    specs = cls.__dict__.get("_config_field_specs_")
    if specs is None:
        fields = dataclasses.fields(cls) if dataclasses.is_dataclass(cls) else ()
        specs = tuple((f.name, field_check(f), type(f.default) if isinstance(f.default, NamedEnum) else None)
                      for f in fields)
        type.__setattr__(cls, "_config_field_specs_", specs)
        type.__setattr__(cls, "_config_field_names_", tuple(spec[0] for spec in specs))
    return specs


def _field_names(cls: type) -> tuple[str, ...]:
    names = cls.__dict__.get("_config_field_names_")
    if names is None:
        _field_specs(cls)
        names = cls.__dict__["_config_field_names_"]
    return names


# --------------------------------------------------------------------------
# Registry of config classes (for from_dict and the config reference)

_REGISTRY: dict[str, type] = {}


def register_config_class(cls: type) -> type:
    """Make ``cls`` known to ``config_from_dict`` (by its class name), and
    make it callable as aihwkit's class (``positional_order``)."""
    _field_specs(cls)
    _install_init(cls)
    _REGISTRY[cls.__name__] = cls
    return cls


def with_defaults(**defaults: Any) -> Callable[[type], type]:
    """Class decorator of a preset: a subclass of a config class whose named
    fields take new defaults, each keeping its base class's doc and check;
    the result is a registered config dataclass (aihwkit's preset classes,
    e.g. ``ReRamSBPresetDevice``, are subclasses of this kind)::

        @with_defaults(dw_min=0.002, w_max=1.25, forward=PresetIOParameters)
        class MyPreset(SingleRPUConfig):
            \"\"\"What the preset is.\"\"\"

    A value that is a class or a function (not an enum member) is the
    field's ``default_factory``; a list, dict or config object must be given
    as a function that builds it (each instance gets its own).
    """

    def wrap(cls: type) -> type:
        base = cls.__mro__[1]
        fields = {f.name: f for f in dataclasses.fields(base)} if dataclasses.is_dataclass(base) else {}
        annotations = dict(cls.__dict__.get("__annotations__", {}))
        for name, value in defaults.items():
            if name not in fields:
                raise TypeError(f"{cls.__name__}: {name!r} is not a field of {base.__name__}; its fields: "
                                f"{', '.join(fields) or '(none)'}")
            f = fields[name]
            if isinstance(value, (list, dict, ConfigBase)):
                raise TypeError(f"{cls.__name__}.{name}: give a function that builds {value!r} (each instance "
                                "gets its own), not the object")
            factory = callable(value) and not isinstance(value, enum.Enum)
            new = param(default_factory=value, doc=field_doc(f), check=field_check(f)) if factory else param(
                value, doc=field_doc(f), check=field_check(f))
            type.__setattr__(cls, name, new)
            annotations[name] = f.type
        type.__setattr__(cls, "__annotations__", annotations)
        return register_config_class(dataclasses.dataclass(repr=False)(cls))

    return wrap


def positional_order(cls: type) -> tuple[str, ...]:
    """The order of a config class's positional arguments: its
    ``positional_fields`` (aihwkit's order, inherited), then the other
    fields in field order."""
    names = tuple(f.name for f in dataclasses.fields(cls) if f.init)
    declared = tuple(getattr(cls, "positional_fields", ()))
    unknown = [n for n in declared if n not in names]
    if unknown or len(set(declared)) != len(declared):
        raise TypeError(f"{cls.__name__}.positional_fields = {declared!r}: expected distinct field names of "
                        f"{cls.__name__} ({', '.join(names)})")
    return declared + tuple(n for n in names if n not in declared)


def _install_init(cls: type) -> None:
    """Wrap the dataclass's ``__init__`` so that positional arguments follow
    ``positional_order(cls)`` and an unknown keyword names the fields."""
    init = cls.__dict__.get("__init__")
    if init is None or not dataclasses.is_dataclass(cls) or getattr(init, "_config_init_", False):
        return
    order = positional_order(cls)
    names = frozenset(order)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        name = type(self).__name__
        if len(args) > len(order):
            raise TypeError(f"{name}() takes at most {len(order)} positional arguments ({', '.join(order)}); "
                            f"{len(args)} were given")
        for field_name, value in zip(order, args):
            if field_name in kwargs:
                raise TypeError(f"{name}() got two values for {field_name!r} (positional and keyword)")
            kwargs[field_name] = value
        for key in kwargs:
            if key not in names:
                close = difflib.get_close_matches(key, order, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise TypeError(f"{name}() got an unexpected keyword {key!r}{hint}; its fields: {', '.join(order)}")
        hook = getattr(type(self), "init_arguments", None)
        init(self, **(hook(kwargs) if hook is not None else kwargs))

    fields = {f.name: f for f in dataclasses.fields(cls)}
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for field_name in order:
        f = fields[field_name]
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else inspect.Parameter.empty)
        params.append(inspect.Parameter(field_name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default))
    __init__.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    __init__.__doc__ = init.__doc__
    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    __init__._config_init_ = True  # type: ignore[attr-defined]
    type.__setattr__(cls, "__init__", __init__)


def unregister_config_class(cls: type | str) -> None:
    """Forget a class registered by ``register_config_class`` (by class or name)."""
    name = cls if isinstance(cls, str) else cls.__name__
    if _REGISTRY.get(name) is not None and (isinstance(cls, str) or _REGISTRY[name] is cls):
        del _REGISTRY[name]


def registered_config_classes() -> dict[str, type]:
    """Every registered config class, by name."""
    return dict(_REGISTRY)


# --------------------------------------------------------------------------
# Base class


class ConfigBase:
    """Shared behaviour of every config dataclass."""

    def __setattr__(self, name: str, value: Any) -> None:
        names = type(self).__dict__.get("_config_field_names_")
        if names is None or name not in names:
            cls = type(self)
            fields = _field_names(cls)
            if name not in fields and not isinstance(getattr(cls, name, None), property):
                close = difflib.get_close_matches(name, fields, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise AttributeError(
                    f"{cls.__name__} has no field {name!r}{hint}; its fields: {', '.join(fields) or '(none)'}"
                )
        object.__setattr__(self, name, value)

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
        """Apply every field's check, then ``check_consistency``; raise
        ``ValueError`` naming the bad field (``where.field = value: expected ...``).
        An enum field given by name stores the member."""
        where = where or type(self).__name__
        for name, check, enum_type in _field_specs(type(self)):
            value = getattr(self, name)
            if check is not None:
                new = check(value, f"{where}.{name}")
            elif enum_type is not None:  # a plain field (a user's class): its enum default says the type
                new = enum_type.coerce(value, f"{where}.{name}")
            else:
                new = value
                if isinstance(value, ConfigBase):
                    value.validate(f"{where}.{name}")
            if new is not value:
                object.__setattr__(self, name, new)
        self.check_consistency(where)

    def check_consistency(self, where: str) -> None:
        """Rules that span several fields (each field's own rule is its check)."""
        return None


def resolution_step(res: float) -> float:
    """The step as a fraction of the full range (0.0 means no quantization)."""
    if res <= 0:
        return 0.0
    return 1.0 / res if res > 1 else float(res)


# --------------------------------------------------------------------------
# Plain dicts


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) or is_number(k) for k in value):
        # e.g. a custom drift model table; number keys (times) become strings in JSON
        return {k: _encode(v) for k, v in value.items()}
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
        f = fields[key]
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        check = field_check(f)
        if check is not None:
            value = check.decode(value)
        if isinstance(value, dict) and "class" in value:
            kwargs[key] = config_from_dict(value)
        elif isinstance(value, dict) and dataclasses.is_dataclass(default):
            kwargs[key] = config_from_dict(value, expected=type(default))
        elif isinstance(default, enum.Enum) and value is not None:
            kwargs[key] = type(default).coerce(value, f"{name}.{key}")
        else:
            kwargs[key] = value
    # A dict is field data, not a constructor call: a field it leaves out is
    # the field's default, never derived from the others (init_arguments).
    for key, f in fields.items():
        if key not in kwargs and f.init:
            if f.default is not dataclasses.MISSING:
                kwargs[key] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                kwargs[key] = f.default_factory()
    return cls(**kwargs)
