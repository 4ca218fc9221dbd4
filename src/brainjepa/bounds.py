"""Value ranges declared with config fields: `bounded(default, gt=0)` next to the field, `check_bounds` enforces
them in the dataclass's `__post_init__`, so every config section checks its keys in one place.

A value must have its field's type (an int field takes only integers, a float field any finite number), lie in the
declared range, and a `pair` field is two such numbers, low <= high. None (an optional key left unset) passes.
A violation raises ConfigError naming the dotted key, its value and the range. `check_value` applies the same
rules to one plain argument (a function's, not a config field). `coerce` checks an untyped value (from YAML or
a config.json) against its field's type hint before the dataclass is built; `build_typed` does so for a record.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from brainjepa.errors import ConfigError

_KEY = "bounds"
# TRs (seconds) that scanners use: fast multiband / MREG ~0.1 s to sparse designs of ~20 s. A value outside is
# most likely milliseconds given as seconds (720 for 0.72 s); inputs outside need a confirmation (readers.check_tr).
SCANNER_TR = (0.05, 30.0)


@dataclass(frozen=True)
class Bounds:
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    pair: bool = False  # two numbers (low, high), each in range, low <= high

    def holds(self, v: float) -> bool:
        return ((self.ge is None or v >= self.ge) and (self.gt is None or v > self.gt)
                and (self.le is None or v <= self.le) and (self.lt is None or v < self.lt))

    def describe(self, integer: bool) -> str:
        lower = [f"{_num(v)} {op}" for op, v in (("<=", self.ge), ("<", self.gt)) if v is not None]
        upper = [f"{op} {_num(v)}" for op, v in (("<=", self.le), ("<", self.lt)) if v is not None]
        if self.pair:
            return f"two numbers with {' '.join([*lower, 'low <= high', *upper])}"
        limits = [f"{op} {_num(v)}" for op, v in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                  if v is not None]
        return " ".join(["an integer" if integer else "a number", " and ".join(limits)]).rstrip()

    def check(self, name: str, value: Any, integer: bool, words: bool = True) -> None:
        """Raise ConfigError naming `name` unless `value` is None or of the kind and in the range declared. A word
        (e.g. "auto") passes where the field's type admits one (`words`): it is a Literal choice, checked there."""
        if value is None or (words and isinstance(value, str)):
            return
        items = value if self.pair and isinstance(value, list | tuple) and len(value) == 2 else None
        if self.pair:
            ok = items is not None and all(_valid(v, self, integer) for v in items) and items[0] <= items[1]
        else:
            ok = _valid(value, self, integer)
        if not ok:
            raise ConfigError(f"{name} must be {self.describe(integer)}, got {value!r}")


def bounded(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, **limits: Any) -> Any:
    """A dataclass field with its valid range (`ge`, `gt`, `le`, `lt`, `pair`); see `check_bounds`."""
    return dataclasses.field(default=default, default_factory=factory, metadata={_KEY: Bounds(**limits)})


def check_bounds(obj: Any, section: str) -> None:
    """Raise ConfigError naming `section.key` for the first field of `obj` outside its declared range, or a flag
    (a `bool` field) given anything but True or False: "false" would otherwise read as True."""
    integers, words, flags = (_fields_taking(type(obj), kind) for kind in (int, str, bool))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name in flags and value is not None and not isinstance(value, bool):
            raise ConfigError(f"{section}.{f.name} must be true or false, got {value!r}")
        bounds = f.metadata.get(_KEY)
        if bounds is not None:
            bounds.check(f"{section}.{f.name}", value, f.name in integers, f.name in words)


def field_default(obj: Any, name: str) -> Any:
    """The declared default of dataclass `obj`'s field `name` (a setting that another one switches off must stay
    there, or be refused)."""
    found = next(f for f in dataclasses.fields(obj) if f.name == name)
    return found.default_factory() if found.default is dataclasses.MISSING else found.default


def check_value(name: str, value: Any, *, integer: bool = False, **limits: Any) -> None:
    """Raise ConfigError naming `name` unless `value` is in the range `limits` (as `bounded` takes them)."""
    Bounds(**limits).check(name, value, integer)


def coerce(value: Any, hint: Any, key: str) -> Any:
    """`value` checked against the type hint `hint` (an int is taken where a float is expected, and a numeric
    string such as YAML 1.1's '1e-3' for a float); raise ConfigError naming `key` otherwise. Config files and
    config.json records are untyped: a wrong type must be refused here, not surface as a TypeError deep inside."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key {key} has value {value!r}; expected {_describe(hint)}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"config key {key} has value {value!r}; expected one of {list(args)}")
        return value
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key {key} has value {value!r}; expected a list")
        return [coerce(v, args[0], key) for v in value]
    if origin is tuple:
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"config key {key} has value {value!r}; expected a list of {len(args)}")
        return tuple(coerce(v, a, key) for v, a in zip(value, args, strict=True))
    if hint is float and isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            return float(value)  # YAML 1.1 reads '1e-3' as a string
        except ValueError:
            pass
    if hint is int and isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if hint in (bool, str) and isinstance(value, hint):
        return value
    raise ConfigError(f"config key {key} has value {value!r}; expected {_describe(hint)}")


def build_typed(cls: type, values: dict[str, Any], section: str) -> Any:
    """`cls` built from an untyped record (a config.json section): unknown keys and values of the wrong type are
    refused by name (`section.key`), then the dataclass checks its ranges as usual."""
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ConfigError(f"unknown {section} config key(s): {', '.join(f'{section}.{k}' for k in unknown)}")
    return cls(**{key: coerce(value, hints[key], f"{section}.{key}") for key, value in values.items()})


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args if a is not type(None))
    if origin is Literal:
        return " or ".join(repr(a) for a in args)
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _valid(v: Any, bounds: Bounds, integer: bool) -> bool:
    kind = numbers.Integral if integer else numbers.Real
    return isinstance(v, kind) and not isinstance(v, bool) and math.isfinite(v) and bounds.holds(v)


@functools.cache
def _fields_taking(cls: type, kind: type) -> frozenset[str]:
    """Names of the fields whose annotation admits `kind` (`int` or `int | None` for int, `bool` for bool), or a
    Literal of its values (of words, for str)."""
    out = set()
    for name, hint in typing.get_type_hints(cls).items():
        args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
        if any(a is kind or (typing.get_origin(a) is Literal and any(isinstance(v, kind) for v in typing.get_args(a)))
               for a in args):
            out.add(name)
    return frozenset(out)


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)
