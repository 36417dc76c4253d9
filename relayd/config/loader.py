"""
Reading configuration documents (TOML, YAML, JSON) and assembling the static
configuration from a file, CLI flags or environment variables, as Traefik does:
the first source present is used and the others are ignored, in the order file,
flags, environment. With none of them, relayd starts on an embedded default.
"""

from __future__ import annotations

import json
import os
import tomllib
from typing import Any, Callable, Mapping, Sequence

import attrs
import yaml

from relayd.config.errors import ConfigError, joinPath, raiseAll
from relayd.config.schema import decode, fieldKeys, flatToTree
from relayd.config.static import EntryPoint, StaticConfig
from relayd.config.types import FrozenMap

DOCUMENT_SUFFIXES = (".toml", ".yaml", ".yml", ".json")
CONFIG_NAMES = ("relayd.toml", "relayd.yaml", "relayd.yml")
SYSTEM_CONFIG_DIR = "/etc/relayd"
ENV_PREFIXES = ("RELAYD_", "TRAEFIK_")

EMBEDDED_DEFAULT = """\
# relayd's embedded default: used when no configuration file, flag or
# environment variable is given.
[log]
level = "INFO"

[entryPoints.web]
address = "127.0.0.1:8080"

[ping]
entryPoint = "web"
"""


class _YAMLLoader(yaml.SafeLoader):
    """
    PyYAML's safe loader, except that a key written twice in one mapping is an
    error (PyYAML silently keeps the last one; Traefik's YAML decoder refuses).
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for keyNode, _ in node.value:
                if keyNode.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(keyNode, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"key {key!r} is set twice (first at line {first.line + 1})",
                        keyNode.start_mark,
                    )
                seen[key] = keyNode.start_mark
        return super().construct_mapping(node, deep)


def parseDocument(text: str, name: str) -> Any:
    """
    Parse a configuration document; the format follows the name's suffix.

    @raise ConfigError: if the text does not parse, with the line where known.
    """
    suffix = os.path.splitext(name)[1].lower()
    try:
        if suffix == ".toml":
            return tomllib.loads(text)
        if suffix in (".yaml", ".yml"):
            return yaml.load(text, Loader=_YAMLLoader)
        if suffix == ".json":
            return json.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("", f"invalid TOML: {e}", name) from None
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        column = e.position - text.rfind("\n", 0, e.position)
        character = ord(e.character) if isinstance(e.character, str) else e.character
        raise ConfigError(
            "",
            f"invalid YAML (line {line}, column {column}): "
            f"unacceptable character #x{character:04x}: {e.reason}",
            name,
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError("", f"invalid YAML{where}: {problem}", name) from None
    except json.JSONDecodeError as e:
        raise ConfigError("", f"invalid JSON (line {e.lineno}, column {e.colno}): {e.msg}", name) from None
    raise ConfigError("", f"unknown file type {suffix!r}; use .toml, .yaml, .yml or .json", name)


def readDocument(path: str) -> Any:
    """
    Read and parse a configuration file.

    @raise ConfigError: if it cannot be read or parsed.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError("", f"cannot read: {e.strerror}", path) from None
    except UnicodeDecodeError as e:
        raise ConfigError("", f"not UTF-8 text: {e}", path) from None
    return parseDocument(text, path)


@attrs.frozen
class StaticSource:
    """
    Where the static configuration came from.

    @ivar kind: C{file}, C{flags}, C{env} or C{default}.
    @ivar path: the configuration file for C{file}.
    """

    kind: str
    path: str = ""


@attrs.frozen
class LoadedStatic:
    config: StaticConfig
    source: StaticSource
    warnings: tuple[str, ...] = ()


def findConfigFile(cwd: str, systemDir: str = SYSTEM_CONFIG_DIR) -> str | None:
    """
    The configuration file relayd uses when none is named: C{relayd.toml} (or
    C{.yaml}/C{.yml}) in the working directory, then in C{/etc/relayd}.
    """
    for directory in (cwd, systemDir):
        for name in CONFIG_NAMES:
            candidate = os.path.join(directory, name)
            if os.path.isfile(candidate):
                return candidate
    return None


def envItems(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """
    The configuration keys in environment variables: C{RELAYD_A_B=v} (or
    C{TRAEFIK_A_B=v}) is C{a.b=v}. Only variables whose first part names a
    top-level section count, so unrelated variables with the prefix are left
    alone. C{RELAYD_} wins over C{TRAEFIK_} for the same key.
    """
    # Ignored sections (tracing...) count too, so that decoding warns about them.
    sections = {k.lower() for k in fieldKeys(StaticConfig)} | set(StaticConfig.__ignored__)
    items: dict[str, str] = {}
    for prefix in reversed(ENV_PREFIXES):
        for name, value in sorted(environ.items()):
            if not name.upper().startswith(prefix):
                continue
            key = name[len(prefix):].lower().replace("_", ".")
            if key.split(".")[0] in sections:
                items[key] = value
    return list(items.items())


def loadStatic(
    configFile: str | None,
    flags: Sequence[tuple[str, str]],
    environ: Mapping[str, str],
    cwd: str,
    systemDir: str = SYSTEM_CONFIG_DIR,
) -> LoadedStatic:
    """
    Assemble the static configuration.

    @param configFile: the file named by C{--config}, if any.
    @param flags: the C{--a.b=value} flags as C{("a.b", "value")} pairs.

    @raise ConfigError: every problem found in the source used.
    """
    env = envItems(environ)
    path = configFile or findConfigFile(cwd, systemDir)
    warnings: list[str] = []
    if path is not None:
        raw = readDocument(path)
        if raw is None:
            raw = {}
        ignored = [f"--{k}" for k, _ in flags] + [f"{k} (environment)" for k, _ in env]
        if ignored:
            warnings.append(
                f"the configuration file {path} is used, so these settings are ignored "
                f"(one source only, as in Traefik): {', '.join(ignored)}"
            )
        return _load(lambda: raw, StaticSource("file", path), path, warnings)
    if flags:
        if env:
            warnings.append(
                "command-line flags are used, so the RELAYD_/TRAEFIK_ environment "
                "variables are ignored (one source only, as in Traefik)"
            )
        return _load(
            lambda: flatToTree(StaticConfig, flags),
            StaticSource("flags"),
            "command-line flags",
            warnings,
        )
    if env:
        return _load(
            lambda: flatToTree(StaticConfig, env),
            StaticSource("env"),
            "environment variables",
            warnings,
        )
    return _load(
        lambda: parseDocument(EMBEDDED_DEFAULT, "embedded.toml"),
        StaticSource("default"),
        "the embedded default",
        warnings,
    )


def _load(
    raw: Callable[[], Any], source: StaticSource, name: str, warnings: list[str]
) -> LoadedStatic:
    """
    Decode one source's raw tree into the effective static configuration; every
    error names the source.
    """
    try:
        config, more = decode(StaticConfig, raw())
        config = effective(config)
    except ConfigError as e:
        raise e.withSource(name) from None
    return LoadedStatic(config=config, source=source, warnings=tuple(warnings + more))


def effective(config: StaticConfig) -> StaticConfig:
    """
    Traefik's implied settings: an C{http} entrypoint on C{:80} when none is
    defined, and a C{traefik} entrypoint on C{:8080} when the API (insecure),
    ping or Prometheus metrics need it and it is not defined.

    @raise ConfigError: if a section names an entrypoint that does not exist.
    """
    entryPoints = dict(config.entryPoints)
    if not entryPoints:
        entryPoints["http"] = EntryPoint(address=":80")
    needTraefik = (
        (config.api is not None and config.api.insecure)
        or (config.ping is not None and not config.ping.manualRouting and config.ping.entryPoint == "traefik")
        or (
            config.metrics is not None
            and config.metrics.prometheus is not None
            and not config.metrics.prometheus.manualRouting
            and config.metrics.prometheus.entryPoint == "traefik"
        )
        or (config.providers.rest is not None and config.providers.rest.insecure)
    )
    if needTraefik and "traefik" not in entryPoints:
        entryPoints["traefik"] = EntryPoint(address=":8080")
    config = attrs.evolve(config, entryPoints=FrozenMap(entryPoints))
    problems = []
    if config.ping is not None and not config.ping.manualRouting:
        if config.ping.entryPoint not in entryPoints:
            problems.append(("ping.entryPoint", config.ping.entryPoint))
    prometheus = config.metrics.prometheus if config.metrics else None
    if prometheus is not None and not prometheus.manualRouting:
        if prometheus.entryPoint not in entryPoints:
            problems.append(("metrics.prometheus.entryPoint", prometheus.entryPoint))
    defined = ", ".join(entryPoints)
    raiseAll(
        [
            ConfigError(path, f'unknown entrypoint "{name}" (defined: {defined})')
            for path, name in problems
        ]
    )
    return config


def keyLines(text: str, name: str) -> dict[str, int]:
    """
    Best effort: the 1-based line of each key path (lower-cased, as
    C{http.routers.web.service} or C{...servers[0]}) written in a document.
    YAML and JSON use the parser's marks; TOML is scanned for table headers
    and keys, as C{tomllib} keeps no positions. Returns what it can find.
    """
    suffix = os.path.splitext(name)[1].lower()
    lines: dict[str, int] = {}
    try:
        if suffix == ".toml":
            _tomlKeyLines(text, lines)
        elif suffix in (".yaml", ".yml", ".json"):
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            if node is not None:
                _yamlKeyLines(node, "", lines, 0)
    except (yaml.YAMLError, ValueError, RecursionError):
        pass
    return lines


def lineOf(lines: Mapping[str, int], keyPath: str) -> int | None:
    """
    The line of a key path in L{keyLines}' answer, or of the deepest enclosing
    key written in the document, or None.
    """
    path = keyPath.lower()
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return None


def _yamlKeyLines(node: yaml.Node, path: str, lines: dict[str, int], depth: int) -> None:
    if depth > 64:
        return
    if isinstance(node, yaml.MappingNode):
        for keyNode, valueNode in node.value:
            if not isinstance(keyNode, yaml.ScalarNode) or keyNode.tag == "tag:yaml.org,2002:merge":
                continue
            child = joinPath(path, str(keyNode.value))
            lines.setdefault(child.lower(), keyNode.start_mark.line + 1)
            _yamlKeyLines(valueNode, child, lines, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = f"{path}[{index}]"
            lines.setdefault(child.lower(), item.start_mark.line + 1)
            _yamlKeyLines(item, child, lines, depth + 1)


_TOML_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def _tomlKey(text: str, start: int, stop: str) -> tuple[list[str], int]:
    """
    Parse a dotted TOML key from C{start} up to one of the C{stop}
    characters; returns its parts and the index of the stop character.
    """
    parts: list[str] = []
    i = start
    n = len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] in "\"'":
            quote = text[i]
            end = i + 1
            while end < n and text[end] != quote:
                end += 2 if quote == '"' and text[end] == "\\" else 1
            if end >= n:
                raise ValueError("unterminated key")
            raw = text[i + 1:end]
            parts.append(raw.encode("latin-1", "backslashreplace").decode("unicode_escape") if quote == '"' and "\\" in raw else raw)
            i = end + 1
        else:
            end = i
            while end < n and text[end] in _TOML_BARE:
                end += 1
            if end == i:
                raise ValueError("empty key")
            parts.append(text[i:end])
            i = end
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == ".":
            i += 1
            continue
        if i < n and text[i] in stop:
            return parts, i
        raise ValueError("not a key")


def _tomlKeyLines(text: str, lines: dict[str, int]) -> None:
    table = ""
    arrays: dict[str, int] = {}
    multiline: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if multiline is not None:
            if line.count(multiline) % 2:
                multiline = None
            continue
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            if stripped.startswith("[["):
                parts, _ = _tomlKey(stripped, 2, "]")
                table = _tomlTable(parts, arrays, newElement=True)
                lines.setdefault(table.lower(), number)
                continue
            if stripped.startswith("["):
                parts, _ = _tomlKey(stripped, 1, "]")
                table = _tomlTable(parts, arrays, newElement=False)
                lines.setdefault(table.lower(), number)
                continue
            parts, equals = _tomlKey(stripped, 0, "=")
        except ValueError:
            continue
        path = table
        for part in parts:
            path = joinPath(path, part)
            lines.setdefault(path.lower(), number)
        for quotes in ('"""', "'''"):
            if stripped.count(quotes, equals) % 2:
                multiline = quotes
                break


def _tomlTable(parts: list[str], arrays: dict[str, int], newElement: bool) -> str:
    plain = ""
    path = ""
    for index, part in enumerate(parts):
        plain = joinPath(plain, part)
        path = joinPath(path, part)
        last = index == len(parts) - 1
        if last and newElement:
            arrays[plain] = arrays.get(plain, -1) + 1
            # A new element starts fresh: forget the arrays nested in the old one.
            for key in [k for k in arrays if k.startswith(plain + ".")]:
                del arrays[key]
        if plain in arrays:
            path += f"[{arrays[plain]}]"
    return path
