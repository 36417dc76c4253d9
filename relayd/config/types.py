"""
Small value types shared by the static and dynamic models: an immutable mapping,
Go-style durations and byte sizes.
"""

from __future__ import annotations

import math
import re
from typing import Any, Generic, Iterator, Mapping, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class FrozenMap(Mapping[K, V], Generic[K, V]):
    """
    An immutable, hashable mapping that keeps insertion order. Equality ignores
    order, like C{dict}.
    """

    __slots__ = ("_data", "_hash")

    def __init__(self, items: Mapping[K, V] | Any = ()) -> None:
        self._data: dict[K, V] = dict(items)
        self._hash: int | None = None

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenMap):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"

    def set(self, key: K, value: V) -> FrozenMap[K, V]:
        """
        A copy with C{key} set to C{value}.
        """
        data = dict(self._data)
        data[key] = value
        return FrozenMap(data)


_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([a-z\u00b5\u03bc]+)")
_NUMBER = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


class Duration(float):
    """
    A duration in seconds, written in configuration as a Go duration string
    (C{"1m30s"}, C{"250ms"}) or a bare number of seconds.
    """

    def __str__(self) -> str:
        return formatDuration(self)

    def __repr__(self) -> str:
        return f"Duration({formatDuration(self)!r})"


def parseDuration(value: object) -> Duration:
    """
    Parse a duration: a number of seconds or a Go duration string.

    @raise ValueError: with a message fit for a configuration error.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as \"10s\", got {str(value).lower()}")
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
        if not math.isfinite(seconds):
            raise ValueError(f"expected a duration such as \"10s\", got {value!r}")
        return Duration(seconds)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration such as \"10s\", got {value!r}")
    text = value.strip()
    invalid = (
        f"invalid duration {value!r} (use Go syntax such as \"1m30s\" "
        "or a number of seconds)"
    )
    if _NUMBER.fullmatch(text):
        return _finite(float(text), value)
    sign = 1.0
    rest = text
    if rest[:1] in "+-" and rest:
        sign = -1.0 if rest[0] == "-" else 1.0
        rest = rest[1:]
    if not rest:
        raise ValueError(invalid)
    total = 0.0
    position = 0
    while position < len(rest):
        match = _DURATION_PART.match(rest, position)
        if match is None or match.group(1) in ("", "."):
            raise ValueError(invalid)
        unit = match.group(2)
        if unit not in _UNITS:
            raise ValueError(
                f"unknown unit {unit!r} in duration {value!r} "
                "(valid units: ns, us, ms, s, m, h)"
            )
        total += float(match.group(1)) * _UNITS[unit]
        position = match.end()
    return _finite(sign * total, value)


def _finite(seconds: float, value: object) -> Duration:
    if not math.isfinite(seconds):
        raise ValueError(f"duration {value!r} is too long")
    return Duration(seconds)


def formatDuration(seconds: float) -> str:
    """
    Format seconds the way Go prints a C{time.Duration}: C{1m30s}, C{250ms}, C{0s}.
    """
    nanos = round(seconds * 1e9)
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    nanos = abs(nanos)
    if nanos < 1000:
        return f"{sign}{nanos}ns"
    if nanos < 1_000_000:
        return f"{sign}{_trim(nanos / 1000)}\u00b5s"
    if nanos < 1_000_000_000:
        return f"{sign}{_trim(nanos / 1_000_000)}ms"
    hours, nanos = divmod(nanos, 3600 * 10**9)
    minutes, nanos = divmod(nanos, 60 * 10**9)
    text = sign
    if hours:
        text += f"{hours}h"
    if hours or minutes:
        text += f"{minutes}m"
    text += f"{_trim(nanos / 1e9)}s"
    return text


def _trim(number: float) -> str:
    text = f"{number:.9f}".rstrip("0").rstrip(".")
    return text or "0"


def parseBool(value: object) -> bool:
    """
    Parse a boolean the way Go's C{strconv.ParseBool} does, also accepting
    native booleans.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value in ("1", "t", "T", "TRUE", "true", "True"):
            return True
        if value in ("0", "f", "F", "FALSE", "false", "False"):
            return False
    raise ValueError(f"expected true or false, got {value!r}")
