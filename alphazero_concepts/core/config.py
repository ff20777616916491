"""Dataclass configs: `DictConfig` (to/from dict, unknown keys refused) and one generic check of their values.

`check_fields` checks a config against its annotations: types, lists vs strings, ranges.

    @dataclass(frozen=True)
    class RootsStage(DictConfig):
        games: Annotated[int, Range(1)] = 64          # an integer ≥ 1
        temperature: Annotated[float, Range(0)] = 1.0  # a finite number ≥ 0
        layers: tuple[str, ...] = ("block3",)          # a list of strings, never one bare string

        def __post_init__(self) -> None:
            check_fields(self)

`check_fields` looks at every field's annotation (resolved with `typing.get_type_hints`, so postponed
annotations work) and raises `ValueError` naming the first field whose value does not fit: ``games = -5:
expected an integer ≥ 1``. What it knows:

* ``int`` takes an integer but not a bool (TOML ``true`` is not 1) and not a float (``5.0``);
* ``float`` takes an integer or a float, stores it as a float, and refuses NaN and infinities;
* ``str`` and ``bool`` take exactly that type;
* ``tuple[X, ...]`` / ``list[X]`` take a list or tuple of X (stored as the annotated container) and refuse a bare
  string, which Python would otherwise split into letters (``layers = "block3"`` → six one-letter layers);
* ``X | None``, ``Literal[...]`` (one of the listed values), nested dataclasses (an instance), ``dict`` and ``Any``;
* ``Annotated[T, Range(low, high)]`` adds bounds (closed unless ``low_open``/``high_open``).

Annotations it does not understand are not checked (a config may use any type); the check is for the values a
TOML or JSON file can carry.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self, get_args, get_origin, get_type_hints


class DictConfig:
    """Mixin for dataclass configs: `to_dict`, and `from_dict` that rejects unknown keys (naming them)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict) -> Self:
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
        return cls(**data)


__all__ = ["DictConfig", "Range", "check_fields", "check_value"]


@dataclass(frozen=True)
class Range:
    """Bounds of a number: low ≤ value ≤ high (``None`` = unbounded; ``*_open`` makes that end strict)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '≥'} {self.low:g}"
        if self.high is not None:
            return f"{'<' if self.high_open else '≤'} {self.high:g}"
        return ""


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls, include_extras=True)


def check_fields(obj: Any) -> None:
    """Check every field of the dataclass instance `obj` against its annotation (see the module notes).

    Lists become tuples where the annotation says tuple, integers become floats where it says float (set in
    place, frozen dataclasses included). Raises ValueError ``"<field> = <value>: expected <what>"``.
    """
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        if f.name not in hints:
            continue
        value = getattr(obj, f.name)
        fixed = check_value(f.name, value, hints[f.name])
        if fixed is not value:
            object.__setattr__(obj, f.name, fixed)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Mismatch(ValueError):
    """The value does not fit; `expected` says what would."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


def check_value(name: str, value: Any, annotation: Any) -> Any:
    """`value` checked (and normalised) against `annotation`; ValueError naming `name` when it does not fit."""
    try:
        return _fit(value, annotation)
    except _Mismatch as exc:
        got = f"the string {_short(value)}" if isinstance(value, str) and "list" in exc.expected else _short(value)
        raise ValueError(f"{name} = {got}: expected {exc.expected}") from None


def _fit(value: Any, tp: Any, ranges: tuple[Range, ...] = ()) -> Any:
    if get_origin(tp) is Annotated:
        base, *meta = get_args(tp)
        return _fit(value, base, ranges + tuple(m for m in meta if isinstance(m, Range)))
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        wanted = []
        for option in options:
            try:
                return _fit(value, option, ranges)
            except _Mismatch as exc:
                wanted.append(exc.expected)
        raise _Mismatch(" or ".join(wanted) + (" or nothing (leave it out)" if type(None) in args else ""))
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed or isinstance(value, bool) != any(isinstance(a, bool) for a in allowed):
            raise _Mismatch("one of " + ", ".join(repr(a) for a in allowed))
        return value
    if origin in (tuple, list):
        args = get_args(tp)
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            inner = _name(args[0]) if args else "values"
            raise _Mismatch(f"a list of {inner}" + (' (write ["..."] for one)' if isinstance(value, str) else ""))
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise _Mismatch(f"a list of {len(args)} values ({', '.join(_name(a) for a in args)})")
            items = [_fit(v, a, ranges) for v, a in zip(value, args, strict=True)]
        else:
            inner_tp = args[0] if args else Any
            items = []
            for i, v in enumerate(value):
                try:
                    items.append(_fit(v, inner_tp, ranges))
                except _Mismatch as exc:
                    raise _Mismatch(f"a list of {_name(inner_tp)} (item {i}, {_short(v)}, is not: expected "
                                    f"{exc.expected})") from None
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise _Mismatch("a table (mapping)")
        return value
    if tp is Any or tp is object:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise _Mismatch("true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise _Mismatch(_with_range("an integer", ranges))
        _check_ranges(int(value), "an integer", ranges)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise _Mismatch(_with_range("a number", ranges))
        number = float(value)
        if not math.isfinite(number):
            raise _Mismatch(_with_range("a finite number", ranges))
        _check_ranges(number, "a number", ranges)
        return value if type(value) is float else number
    if tp is str:
        if not isinstance(value, str):
            raise _Mismatch("a string")
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, tp):
            raise _Mismatch(f"a {tp.__name__}")
        return value
    return value  # an annotation this check does not know: left alone


def _check_ranges(number: float, what: str, ranges: tuple[Range, ...]) -> None:
    for r in ranges:
        if not r.contains(number):
            raise _Mismatch(_with_range(what, ranges))


def _with_range(what: str, ranges: tuple[Range, ...]) -> str:
    bounds = " and ".join(d for r in ranges if (d := r.describe()))
    return f"{what} {bounds}" if bounds else what


def _name(tp: Any) -> str:
    if get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    names = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))
