"""
The C{relayd} command for everything that is not the daemon itself:
C{relayd version}, C{relayd check} (validate a configuration offline, for CI)
and C{relayd explain} (which router a request would reach, and why not the
others). The daemon runs under twistd: C{twistd -n relayd --config relayd.toml}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Iterable, NoReturn, Sequence, TextIO

from relayd import __version__

# Exit statuses of relayd explain.
MATCHED = 0
NO_MATCH = 1
USAGE = 2

_SECTIONS = (
    ("router", "routers", "http.routers"),
    ("service", "services", "http.services"),
    ("middleware", "middlewares", "http.middlewares"),
    ("tcp router", "tcpRouters", "tcp.routers"),
    ("tcp service", "tcpServices", "tcp.services"),
    ("tcp middleware", "tcpMiddlewares", "tcp.middlewares"),
    ("udp router", "udpRouters", "udp.routers"),
    ("udp service", "udpServices", "udp.services"),
)


class _Usage(Exception):
    """
    A command line that cannot be run; the message says why.
    """


class _Parser(argparse.ArgumentParser):
    """
    An argument parser that reports usage errors by exception and prints help
    to the command's output, so L{main} can be run in-process.
    """

    out: TextIO = sys.stdout

    def error(self, message: str) -> NoReturn:
        raise _Usage(f"{message}\n{self.format_usage()}".rstrip())

    def _print_message(self, message: str, file: Any = None) -> None:
        if message:
            self.out.write(message)


class _Locator:
    """
    Finds the file and line of key paths (best effort), reading each file once.
    """

    def __init__(self, files: Sequence[str] = ()) -> None:
        self.files = list(files)
        self._lines: dict[str, dict[str, int]] = {}

    def lines(self, path: str) -> dict[str, int]:
        from relayd.config.loader import keyLines

        if path not in self._lines:
            try:
                with open(path, encoding="utf-8") as f:
                    self._lines[path] = keyLines(f.read(), path)
            except (OSError, UnicodeDecodeError):
                self._lines[path] = {}
        return self._lines[path]

    def where(self, source: str, keyPath: str) -> str:
        """
        C{file:line: key.path} for an error of a file, as far as known.
        """
        from relayd.config.loader import lineOf

        parts = [_display(source)] if source else []
        if source and keyPath and os.path.isfile(source):
            line = lineOf(self.lines(source), keyPath)
            if line is not None:
                parts[0] += f":{line}"
        if keyPath:
            parts.append(keyPath)
        return ": ".join(parts)

    def objectWhere(self, kind: str, section: str, name: str) -> str:
        """
        Where a runtime object of the file provider is written, or its kind
        and name when that is not known.
        """
        bare, _, provider = name.rpartition("@")
        if provider == "file":
            keyPath = f"{section}.{bare}"
            for path in self.files:
                line = self.lines(path).get(keyPath.lower())
                if line is not None:
                    return f"{_display(path)}:{line}: {keyPath}"
        return f"{kind} {name}"


def _display(path: str) -> str:
    """
    A file name as short as it can be: relative to the working directory when
    the file is under it.
    """
    if not os.path.isabs(path):
        return path
    relative = os.path.relpath(path, os.getcwd())
    return path if relative.startswith("..") else relative


def _load(configFile: str | None, flags: list[tuple[str, str]], out: TextIO) -> tuple[Any, _Locator, str] | None:
    """
    Load the static configuration and the file provider's sources offline and
    build the runtime. Prints static errors and returns None when the static
    configuration does not load; otherwise the runtime, a locator over the
    file provider's files and where the static configuration came from.
    """
    from twisted.internet.task import Clock

    from relayd.config.errors import ConfigError, flatten
    from relayd.config.loader import loadStatic
    from relayd.providers.file import FileProvider
    from relayd.service import RelaydService

    locator = _Locator()
    try:
        loaded = loadStatic(configFile, flags, os.environ, os.getcwd())
    except ConfigError as e:
        for error in flatten([e]):
            out.write(f"error: {locator.where(error.source, error.path)}: {error.message}\n")
        return None
    for warning in loaded.warnings:
        out.write(f"warning: {warning}\n")
    service = RelaydService(loaded, Clock())
    for provider in service.providers:
        if isinstance(provider, FileProvider):
            provider.check()
            locator.files.extend(provider.paths())
    return service.runtime, locator, loaded.source.path or loaded.source.kind


def _problems(runtime: Any, locator: _Locator) -> Iterable[tuple[str, str]]:
    """
    Every problem of a runtime as (level, text): provider errors, then the
    errors and warnings in the objects' status.
    """
    from relayd.config.errors import flatten
    from relayd.runtime.build import DISABLED

    for provider, errors in sorted(runtime.providerErrors.items()):
        for error in flatten(errors):
            yield "error", f"{locator.where(error.source, error.path)}: {error.message}"
    for kind, attribute, section in _SECTIONS:
        for name, info in sorted(getattr(runtime, attribute).items()):
            level = "error" if info.status == DISABLED else "warning"
            for message in info.errors:
                yield level, f"{locator.objectWhere(kind, section, name)}: {message}"
    for error in runtime.tlsErrors:
        level = "error" if error.fatal else "warning"
        if len(locator.files) == 1:
            # Key paths name options as merged (modern@file); a single file is
            # where they came from.
            where = locator.where(locator.files[0], error.path.replace("@file", ""))
            yield level, f"{where}: {error.message}"
        else:
            yield level, str(error)


def check(configFile: str | None, flags: list[tuple[str, str]], out: TextIO) -> int:
    """
    Load the static configuration and the file provider's sources, print every
    problem with its key path (and file:line where known), and return the exit
    status (1 on any error; warnings alone leave it 0).
    """
    loaded = _load(configFile, flags, out)
    if loaded is None:
        return 1
    runtime, locator, source = loaded
    problems = 0
    for level, text in _problems(runtime, locator):
        out.write(f"{level}: {text}\n")
        problems += level == "error"
    out.write(f"{_display(source)}: {'OK' if not problems else f'{problems} error(s)'}\n")
    return 1 if problems else 0


def explain(
    configFile: str | None,
    flags: list[tuple[str, str]],
    entryPoint: str,
    method: str,
    url: str,
    headers: list[tuple[str, str]],
    clientIP: str,
    asJSON: bool,
    out: TextIO,
) -> int:
    """
    Explain how the configuration routes one request; the exit status is 0
    when a router matches, 1 when none does, 2 when the command or the static
    configuration is wrong.
    """
    from relayd.runtime.explain import explainRequest, formatExplanation

    loaded = _load(configFile, flags, out)
    if loaded is None:
        return USAGE
    runtime, locator, _ = loaded
    errors = sum(1 for level, _ in _problems(runtime, locator) if level == "error")
    if errors:
        out.write(
            f"warning: the configuration has {errors} error(s) (see relayd check); "
            "explaining what relayd would serve\n"
        )
    try:
        explanation = explainRequest(runtime, entryPoint, method, url, headers, clientIP)
    except ValueError as e:
        out.write(f"error: {e}\n")
        return USAGE
    if asJSON:
        out.write(json.dumps(explanation, indent=2) + "\n")
    else:
        out.write(formatExplanation(explanation))
    return MATCHED if explanation["match"] is not None else NO_MATCH


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise _Usage(f"--header wants NAME:VALUE, got {text!r}")
    return name.strip(), value.strip()


def _parser(out: TextIO) -> _Parser:
    _Parser.out = out
    parser = _Parser(prog="relayd", description="relayd's offline commands")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("version", help="print relayd's version")
    checkParser = sub.add_parser(
        "check",
        help="validate the static and dynamic configuration",
        description="Validate the static configuration and the file provider's dynamic files "
        "offline; exit 1 on any error. Takes static --section.key=value flags too.",
    )
    checkParser.add_argument("--config", "--configFile", dest="config", default=None)
    explainParser = sub.add_parser(
        "explain",
        help="show which router a request would reach, and why not the others",
        description="Explain the routing of one request on an entrypoint: exit 0 when a "
        "router matches, 1 when none does, 2 on a usage or configuration error.",
    )
    explainParser.add_argument("--config", "--configFile", dest="config", default=None)
    explainParser.add_argument("--entrypoint", "--entryPoint", dest="entryPoint", required=True)
    explainParser.add_argument(
        "--header", "-H", dest="headers", action="append", default=[], metavar="NAME:VALUE",
        help="a request header (repeatable)",
    )
    explainParser.add_argument("--client-ip", dest="clientIP", default="127.0.0.1")
    explainParser.add_argument("--json", dest="json", action="store_true", help="print JSON")
    explainParser.add_argument("method", metavar="METHOD")
    explainParser.add_argument("url", metavar="URL", help="http://host/path?query or https://...")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """
    Run a relayd command; returns the exit status.
    """
    from relayd.tap import splitStaticFlags

    out = out or sys.stdout
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser(out)
    try:
        own, flags = splitStaticFlags(argv)
        args = parser.parse_args(own)
        if args.command == "version":
            out.write(f"relayd {__version__}\n")
            return 0
        if args.command == "check":
            return check(args.config, flags, out)
        headers = [_header(h) for h in args.headers]
    except _Usage as e:
        out.write(f"error: {e}\n")
        return USAGE
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    return explain(args.config, flags, args.entryPoint, args.method, args.url, headers, args.clientIP, args.json, out)


if __name__ == "__main__":
    raise SystemExit(main())
