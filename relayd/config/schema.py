"""
Declarative decoding of raw configuration (parsed TOML/YAML/JSON, or flat
``a.b.c=value`` pairs from flags, environment variables and labels) into frozen
attrs value types, with case-insensitive keys and errors that name key paths.

A model is a tree of C{@attrs.frozen(kw_only=True)} classes whose attribute names
are exactly the keys users write. Field types drive decoding:

  - C{str}, C{int}, C{float}, C{bool}, L{Duration}: scalars (strings are coerced,
    so flags and labels decode like files);
  - C{tuple[X, ...]}: lists;
  - C{FrozenMap[str, X]}: maps whose keys are names chosen by the user;
  - C{X | None}: optional sections, enabled by an empty table or C{true};
  - another model class: a nested section.

Classes may define C{_validate(self)} yielding C{(relativeKey, message)} for
cross-field checks, set C{__oneof__ = True} when exactly one of their optional
fields must be set, and list known-but-unsupported keys in C{__ignored__}.
"""

from __future__ import annotations

import difflib
import functools
import re
import types
import typing
from typing import Any, Callable, Iterable, Mapping, Sequence

import attrs

from relayd.config.errors import ConfigError, joinPath, raiseAll
from relayd.config.types import Duration, FrozenMap, parseBool, parseDuration

_META = "relayd"
_NUMERIC_KEY = re.compile(r"^(.*?)\[([0-9]+)\]$")


@attrs.frozen
class FieldSpec:
    """
    Extra decoding knowledge attached to a model field.
    """

    key: str | None = None
    check: Callable[[Any], None] | None = None
    doc: str = ""
    sensitive: bool = False


def field(
    default: Any = attrs.NOTHING,
    *,
    factory: Callable[[], Any] | None = None,
    key: str | None = None,
    check: Callable[[Any], None] | None = None,
    doc: str = "",
    sensitive: bool = False,
) -> Any:
    """
    Declare a model field. C{key} overrides the key users write (for keys that
    are Python keywords); C{check} raises C{ValueError} for a bad value.
    """
    metadata = {_META: FieldSpec(key=key, check=check, doc=doc, sensitive=sensitive)}
    if factory is not None:
        return attrs.field(factory=factory, metadata=metadata)
    return attrs.field(default=default, metadata=metadata)


@attrs.frozen
class _FieldInfo:
    name: str
    key: str
    type: Any
    spec: FieldSpec
    required: bool


@functools.cache
def _fields(cls: type) -> dict[str, _FieldInfo]:
    """
    The model fields of C{cls} keyed by lower-cased user key.
    """
    attrs.resolve_types(cls)
    result: dict[str, _FieldInfo] = {}
    for a in attrs.fields(cls):
        spec = a.metadata.get(_META, FieldSpec())
        key = spec.key or a.name
        result[key.lower()] = _FieldInfo(
            name=a.name,
            key=key,
            type=a.type,
            spec=spec,
            required=a.default is attrs.NOTHING,
        )
    return result


def fieldKeys(cls: type) -> list[str]:
    """
    The keys users may write in a section of type C{cls}.
    """
    return [info.key for info in _fields(cls).values()]


def isModel(tp: Any) -> bool:
    return isinstance(tp, type) and attrs.has(tp)


def _unwrapOptional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _isIndex(text: str) -> bool:
    """
    Whether C{text} is a list index: ASCII digits only (C{str.isdigit} also
    accepts characters such as a superscript two, which C{int} rejects).
    """
    return text.isascii() and text.isdigit()


def _describe(value: Any) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__} value"


def nearest(key: str, candidates: Iterable[str], cutoff: float = 0.6) -> str | None:
    """
    The candidate closest to C{key}, compared case-insensitively, if it is at
    least C{cutoff} similar.
    """
    candidates = list(candidates)
    lowered = {c.lower(): c for c in candidates}
    match = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=cutoff)
    return lowered[match[0]] if match else None


def unknownKeyMessage(key: str, candidates: Iterable[str]) -> str:
    candidates = list(candidates)
    guess = nearest(key, candidates)
    if guess is not None:
        return f'unknown key, did you mean "{guess}"?'
    if not candidates:
        return "unknown key; this section takes no keys"
    closest = nearest(key, candidates, cutoff=0.0)
    return f'unknown key; expected one of {", ".join(candidates)} (nearest: "{closest}")'


class Decoder:
    """
    One decoding pass. Errors are collected so that every problem in a document
    is reported at once; warnings are for keys relayd knows but ignores.
    """

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []
        self.warnings: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.errors.append(ConfigError(path, message))

    def decode(self, tp: Any, raw: Any, path: str) -> Any:
        tp, optional = _unwrapOptional(tp)
        if optional and raw is None and not isModel(tp):
            return None
        if isModel(tp):
            if optional and raw is False:
                return None
            if raw is None or raw is True:
                raw = {}
            return self.decodeModel(tp, raw, path)
        origin = typing.get_origin(tp)
        if origin is tuple:
            return self.decodeList(typing.get_args(tp)[0], raw, path)
        if origin is FrozenMap or tp is FrozenMap:
            args = typing.get_args(tp)
            return self.decodeMap(args[1] if args else str, raw, path)
        if origin is typing.Literal:
            return self.decodeLiteral(typing.get_args(tp), raw, path)
        return self.decodeScalar(tp, raw, path)

    def decodeModel(self, cls: type, raw: Any, path: str) -> Any:
        if not isinstance(raw, Mapping):
            self.fail(path, f"expected a table of keys, got {_describe(raw)}")
            return _INVALID
        known = _fields(cls)
        ignored: Mapping[str, str] = getattr(cls, "__ignored__", {})
        values: dict[str, Any] = {}
        seen: dict[str, str] = {}
        failed = False
        for rawKey, rawValue in raw.items():
            key = str(rawKey)
            info = known.get(key.lower())
            if info is None:
                reason = ignored.get(key.lower())
                if reason is not None:
                    self.warnings.append(f"{joinPath(path, key)}: {reason}")
                    continue
                self.fail(joinPath(path, key), unknownKeyMessage(key, fieldKeys(cls)))
                failed = True
                continue
            fieldPath = joinPath(path, info.key)
            if info.name in seen:
                self.fail(
                    fieldPath,
                    f'set twice (as "{seen[info.name]}" and "{key}"); '
                    "keys are case-insensitive",
                )
                failed = True
                continue
            seen[info.name] = key
            value = self.decode(info.type, rawValue, fieldPath)
            if value is _INVALID:
                failed = True
                continue
            if info.spec.check is not None and value is not None:
                try:
                    info.spec.check(value)
                except ValueError as e:
                    self.fail(fieldPath, str(e))
                    failed = True
                    continue
            values[info.name] = value
        for info in known.values():
            if info.required and info.name not in values and info.name not in seen:
                self.fail(joinPath(path, info.key), "required key is missing")
                failed = True
        if failed:
            return _INVALID
        if getattr(cls, "__oneof__", False):
            present = [i.key for i in known.values() if values.get(i.name) is not None]
            if len(present) != 1:
                choices = ", ".join(fieldKeys(cls))
                if not present:
                    self.fail(path, f"exactly one of {choices} must be set")
                else:
                    self.fail(
                        path,
                        f"exactly one of {choices} must be set, got "
                        + " and ".join(present),
                    )
                return _INVALID
        try:
            obj = cls(**values)
        except (TypeError, ValueError) as e:
            self.fail(path, str(e))
            return _INVALID
        validate = getattr(obj, "_validate", None)
        if validate is not None:
            problems = list(validate())
            for relKey, message in problems:
                self.fail(joinPath(path, relKey), message)
            if problems:
                return _INVALID
        return obj

    def decodeList(self, itemType: Any, raw: Any, path: str) -> Any:
        if raw is None:
            return ()
        if isinstance(raw, Mapping) and all(_isIndex(str(k)) for k in raw):
            raw = [raw[k] for k in sorted(raw, key=lambda k: int(str(k)))]
        single = isinstance(raw, (str, int, float)) and not isModel(
            _unwrapOptional(itemType)[0]
        )
        if single:
            # One value stands for a list of one; its errors name the key itself.
            raw = [raw]
        if not isinstance(raw, (list, tuple)):
            self.fail(path, f"expected a list, got {_describe(raw)}")
            return _INVALID
        items = []
        failed = False
        for index, item in enumerate(raw):
            value = self.decode(itemType, item, path if single else f"{path}[{index}]")
            if value is _INVALID:
                failed = True
            items.append(value)
        return _INVALID if failed else tuple(items)

    def decodeMap(self, valueType: Any, raw: Any, path: str) -> Any:
        if raw is None:
            return FrozenMap()
        if not isinstance(raw, Mapping):
            self.fail(path, f"expected a table of names, got {_describe(raw)}")
            return _INVALID
        result = {}
        failed = False
        for key, item in raw.items():
            value = self.decode(valueType, item, joinPath(path, str(key)))
            if value is _INVALID:
                failed = True
            result[str(key)] = value
        return _INVALID if failed else FrozenMap(result)

    def decodeLiteral(self, choices: Sequence[str], raw: Any, path: str) -> Any:
        if isinstance(raw, str):
            for choice in choices:
                if raw.lower() == choice.lower():
                    return choice
        options = ", ".join(f'"{c}"' for c in choices)
        self.fail(path, f"expected one of {options}, got {_describe(raw)}")
        return _INVALID

    def decodeScalar(self, tp: Any, raw: Any, path: str) -> Any:
        try:
            return _SCALARS[tp](raw)
        except KeyError:
            raise TypeError(f"unsupported model type {tp!r} at {path}") from None
        except ValueError as e:
            self.fail(path, str(e))
            return _INVALID


class OneOf:
    """
    Base of a table that holds exactly one kind (a service, a middleware): the
    decoder enforces it, and these accessors name the kind that is set.
    """

    __slots__ = ()
    __oneof__ = True

    def kind(self) -> str:
        """
        The key of the kind that is set, such as C{"loadBalancer"}.
        """
        for a in attrs.fields(type(self)):  # type: ignore[arg-type]
            if getattr(self, a.name) is not None:
                return a.name
        raise ValueError("no kind is set")

    def config(self) -> Any:
        """
        The configuration of the kind that is set.
        """
        return getattr(self, self.kind())


class _Invalid:
    def __repr__(self) -> str:
        return "<invalid>"


_INVALID: Any = _Invalid()


def _toStr(raw: Any) -> str:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return str(raw)
    raise ValueError(f"expected a string, got {_describe(raw)}")


def _toInt(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError(f"expected an integer, got {_describe(raw)}")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str):
        try:
            return int(raw.strip(), 10)
        except ValueError:
            pass
    raise ValueError(f"expected an integer, got {_describe(raw)}")


def _toFloat(raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError(f"expected a number, got {_describe(raw)}")
    if isinstance(raw, (int, float)):
        return float(raw)
    if isinstance(raw, str):
        try:
            return float(raw.strip())
        except ValueError:
            pass
    raise ValueError(f"expected a number, got {_describe(raw)}")


_SCALARS: dict[Any, Callable[[Any], Any]] = {
    str: _toStr,
    int: _toInt,
    float: _toFloat,
    bool: parseBool,
    Duration: parseDuration,
    Any: lambda raw: raw,
}


def decode(cls: type, raw: Any, path: str = "") -> tuple[Any, list[str]]:
    """
    Decode C{raw} into C{cls}; return the value and the warnings.

    @raise ConfigError: every problem found, as one L{ConfigErrors} if several.
    """
    decoder = Decoder()
    value = decoder.decode(cls, raw, path)
    raiseAll(decoder.errors)
    return value, decoder.warnings


# Flat keys: flags, environment variables, labels.


def _splitSegments(key: str) -> list[str]:
    segments: list[str] = []
    for part in key.split("."):
        match = _NUMERIC_KEY.match(part)
        if match:
            if match.group(1):
                segments.append(match.group(1))
            segments.append(match.group(2))
        else:
            segments.append(part)
    return segments


def flatToTree(cls: type, items: Iterable[tuple[str, str]], root: str = "") -> dict:
    """
    Turn flat C{a.b[0].c=value} pairs into a raw tree for L{decode}, guided by the
    model so that keys match case-insensitively, list items come from C{[n]} or
    numeric segments, scalar lists come from comma-separated values and a bare
    section key (value C{"true"}) enables that section with its defaults.

    @raise ConfigError: for keys that are not in the model.
    """
    tree: dict = {}
    errors: list[ConfigError] = []
    for key, value in items:
        try:
            placeFlat(cls, tree, key, value, root)
        except ConfigError as e:
            errors.append(e)
    raiseAll(errors)
    return tree


def placeFlat(cls: type, tree: dict, key: str, value: str, root: str = "") -> None:
    """
    Add one flat C{a.b[0].c=value} pair to a raw tree being built for L{decode},
    as L{flatToTree} does for each of its pairs.

    @raise ConfigError: if the key is not in the model.
    """
    _place(cls, tree, _splitSegments(key), value, root)


def _place(tp: Any, node: dict, segments: list[str], value: str, path: str) -> None:
    tp, optional = _unwrapOptional(tp)
    segment = segments[0]
    rest = segments[1:]
    if isModel(tp):
        info = _fields(tp).get(segment.lower())
        if info is None:
            ignored: Mapping[str, str] = getattr(tp, "__ignored__", {})
            if segment.lower() in ignored:
                # Kept (once, whatever its case) so that decoding warns about it,
                # as it does for the same key in a file.
                if not any(str(k).lower() == segment.lower() for k in node):
                    node[segment] = {}
                return
            raise ConfigError(joinPath(path, segment), unknownKeyMessage(segment, fieldKeys(tp)))
        childPath = joinPath(path, info.key)
        _assign(info.type, node, info.key, rest, value, childPath)
        return
    origin = typing.get_origin(tp)
    if origin is FrozenMap:
        valueType = typing.get_args(tp)[1]
        _assign(valueType, node, segment, rest, value, joinPath(path, segment))
        return
    raise ConfigError(joinPath(path, segment), _noSubKeys(path))


def _noSubKeys(path: str) -> str:
    return f"unknown key: {path} is a single value and takes no sub-keys"


def _assign(tp: Any, node: dict, key: str, rest: list[str], value: str, path: str) -> None:
    inner, _ = _unwrapOptional(tp)
    origin = typing.get_origin(inner)
    if not rest:
        if isModel(inner) or origin is FrozenMap:
            # A bare section key: "true" enables it with defaults.
            if value == "" or parseBoolOrNone(value) is True:
                if not isinstance(node.get(key), dict):
                    node[key] = {}
            elif parseBoolOrNone(value) is False:
                node[key] = False
            else:
                raise ConfigError(path, "this key is a section; set one of its sub-keys")
            return
        if origin is tuple:
            itemType = _unwrapOptional(typing.get_args(inner)[0])[0]
            if isModel(itemType):
                raise ConfigError(
                    path, "this key is a list of sections; set its items' keys with [n] indices"
                )
            if isinstance(node.get(key), dict):
                raise ConfigError(path, _LIST_TWICE)
            node[key] = [v.strip() for v in value.split(",")]
            return
        node[key] = value
        return
    if origin is tuple:
        itemType = typing.get_args(inner)[0]
        index = rest[0]
        if not _isIndex(index):
            raise ConfigError(
                joinPath(path, index), f"expected a list index such as [0], got {index!r}"
            )
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(path, _LIST_TWICE)
        itemPath = f"{path}[{index}]"
        if len(rest) == 1:
            if isinstance(child.get(index), dict):
                raise ConfigError(itemPath, _VALUE_AND_SECTION)
            child[index] = value
            return
        item = child.setdefault(index, {})
        if not isinstance(item, dict):
            raise ConfigError(itemPath, _VALUE_AND_SECTION)
        _place(itemType, item, rest[1:], value, itemPath)
        return
    if isModel(inner) or origin is FrozenMap:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        _place(inner, child, rest, value, path)
        return
    raise ConfigError(joinPath(path, rest[0]), _noSubKeys(path))


_LIST_TWICE = "set both as a comma-separated list and with [n] indices; use one form"
_VALUE_AND_SECTION = "set both as a single value and with sub-keys; use one form"


def parseBoolOrNone(value: str) -> bool | None:
    try:
        return parseBool(value)
    except ValueError:
        return None


# Encoding back to plain data, for the API and for debugging.


def toRaw(obj: Any, omitDefaults: bool = True) -> Any:
    """
    Plain JSON-able data for a model value, with the keys users write.
    """
    if isModel(type(obj)):
        result = {}
        for a in attrs.fields(type(obj)):
            value = getattr(obj, a.name)
            if omitDefaults and _isDefault(a, value):
                continue
            spec = a.metadata.get(_META, FieldSpec())
            result[spec.key or a.name] = toRaw(value, omitDefaults)
        return result
    if isinstance(obj, Mapping):
        return {str(k): toRaw(v, omitDefaults) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return [toRaw(v, omitDefaults) for v in obj]
    if isinstance(obj, Duration):
        return str(obj)
    return obj


def _isDefault(a: attrs.Attribute, value: Any) -> bool:
    if value is None:
        return True
    default = a.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        default = default.factory()  # type: ignore[call-arg]
    if default is attrs.NOTHING:
        return False
    try:
        return bool(value == default)
    except Exception:
        return False


def typeAt(cls: type, key: str) -> Any:
    """
    The model type found at a flat key, or C{None} if the key is not in the model.
    """
    tp: Any = cls
    for segment in _splitSegments(key):
        tp, _ = _unwrapOptional(tp)
        origin = typing.get_origin(tp)
        if isModel(tp):
            info = _fields(tp).get(segment.lower())
            if info is None:
                return None
            tp = info.type
        elif origin is FrozenMap:
            tp = typing.get_args(tp)[1]
        elif origin is tuple and segment.isdigit():
            tp = typing.get_args(tp)[0]
        else:
            return None
    return _unwrapOptional(tp)[0]
