"""
The C{relayd} command for everything that is not the daemon itself:
C{relayd version} and C{relayd check} (validate a configuration offline). The
daemon runs under twistd: C{twistd -n relayd --config relayd.toml}.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence, TextIO

from relayd import __version__


def check(configFile: str | None, flags: list[tuple[str, str]], out: TextIO) -> int:
    """
    Load the static configuration and the file provider's sources, print every
    problem with its key path, and return the exit status (1 on any error).
    """
    from twisted.internet.task import Clock

    from relayd.config.errors import ConfigError, flatten
    from relayd.config.loader import loadStatic
    from relayd.providers.file import FileProvider
    from relayd.runtime.build import DISABLED
    from relayd.service import RelaydService

    try:
        loaded = loadStatic(configFile, flags, os.environ, os.getcwd())
    except ConfigError as e:
        for error in flatten([e]):
            out.write(f"error: {error}\n")
        return 1
    for warning in loaded.warnings:
        out.write(f"warning: {warning}\n")
    source = loaded.source.path or loaded.source.kind
    service = RelaydService(loaded, Clock())
    for provider in service.providers:
        if isinstance(provider, FileProvider):
            provider.check()
    runtime = service.runtime
    problems = 0
    for provider, errors in sorted(runtime.providerErrors.items()):
        for error in errors:
            out.write(f"error: {error}\n")
            problems += 1
    for kind, objects in (
        ("router", runtime.routers),
        ("service", runtime.services),
        ("middleware", runtime.middlewares),
        ("tcp router", runtime.tcpRouters),
        ("tcp service", runtime.tcpServices),
        ("udp router", runtime.udpRouters),
        ("udp service", runtime.udpServices),
    ):
        for name, info in sorted(objects.items()):
            for message in info.errors:
                level = "error" if info.status == DISABLED else "warning"
                out.write(f"{level}: {kind} {name}: {message}\n")
                problems += level == "error"
    out.write(f"{source}: {'OK' if not problems else f'{problems} error(s)'}\n")
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = argparse.ArgumentParser(prog="relayd", description="relayd's offline commands")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print relayd's version")
    checkParser = sub.add_parser("check", help="validate the static and dynamic configuration")
    checkParser.add_argument("--config", "--configFile", dest="config", default=None)
    args, rest = parser.parse_known_args(argv)
    if args.command == "version":
        out.write(f"relayd {__version__}\n")
        return 0
    from relayd.tap import splitStaticFlags

    unknown, flags = splitStaticFlags(list(rest))
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return check(args.config, flags, out)


if __name__ == "__main__":
    raise SystemExit(main())
