"""
The twistd plugin's options and service factory; the only module that touches
the global reactor. C{twistd -n relayd --config relayd.toml}; any static
configuration key can also be given as a flag (C{--entrypoints.web.address=:8000},
a bare C{--api} enables a section) when no configuration file is used.
"""

from __future__ import annotations

import os
import re

from twisted.application.service import IService
from twisted.python import usage

from relayd import __version__
from relayd.config.errors import ConfigError, flatten
from relayd.config.loader import LoadedStatic, loadStatic
from relayd.config.schema import fieldKeys
from relayd.config.static import StaticConfig
from relayd.config.types import FrozenMap

_FLAG = re.compile(r"^--([A-Za-z][A-Za-z0-9_]*(?:\[\d+\])?(?:\.[^=\s]+)*)(?:=(.*))?$", re.DOTALL)

STATIC_FLAGS_HELP = """
Static configuration flags (used when no configuration file is found, as in
Traefik): every key of the static configuration as a dotted flag, keys
case-insensitive, lists comma-separated, list items with [n]:
  --entrypoints.web.address=:8000
  --providers.file.filename=dynamic.toml --providers.file.watch=true
  --api --api.insecure=true            (a bare section flag enables it)
  --log.level=DEBUG --accesslog
Environment variables work the same way when there is neither a file nor flags:
  RELAYD_ENTRYPOINTS_WEB_ADDRESS=:8000  (the TRAEFIK_ prefix is accepted too)
Top-level sections: {sections}
"""


def splitStaticFlags(args: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """
    Separate C{--section.key=value} flags (any top-level static section) from
    the plugin's own options.
    """
    sections = {k.lower() for k in fieldKeys(StaticConfig)} | set(StaticConfig.__ignored__)
    own: list[str] = []
    flags: list[tuple[str, str]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        match = _FLAG.match(arg)
        if match and match.group(1).split(".")[0].split("[")[0].lower() in sections:
            key, value = match.group(1), match.group(2)
            if value is None:
                following = args[i + 1] if i + 1 < len(args) else None
                if following is not None and not following.startswith("-") and _takesValue(key):
                    value = following
                    i += 1
                else:
                    value = "true"
            flags.append((key, value))
        else:
            own.append(arg)
        i += 1
    return own, flags


def _takesValue(key: str) -> bool:
    """
    Whether a bare flag's next argument is its value: not for sections and
    booleans, which a bare flag turns on.
    """
    from relayd.config.schema import isModel, typeAt

    tp = typeAt(StaticConfig, key)
    if tp is None or tp is bool or isModel(tp):
        return False
    return getattr(tp, "__origin__", None) is not FrozenMap


class Options(usage.Options):
    synopsis = "[--config FILE] [--section.key=value ...]"
    longdesc = (
        "relayd: an edge router and reverse proxy that reads Traefik's configuration. "
        "With no --config, relayd.toml in the working directory, then /etc/relayd/relayd.toml, "
        "are used; with neither (and no flags or RELAYD_ variables), an embedded default "
        "serves a welcome page on 127.0.0.1:8080."
    )
    optParameters = [
        ["config", "c", None, "The static configuration file (TOML or YAML). Alias: --configFile."],
    ]
    optFlags = [["version", "V", "Print relayd's version and exit."]]

    def __init__(self) -> None:
        super().__init__()
        self.staticFlags: list[tuple[str, str]] = []
        self.loaded: LoadedStatic | None = None
        self.environ = os.environ
        self.cwd = os.getcwd()

    def opt_configFile(self, value: str) -> None:
        """
        The same as --config (Traefik's spelling).
        """
        self["config"] = value

    def opt_version(self) -> None:
        print(f"relayd {__version__}")
        raise SystemExit(0)

    def parseOptions(self, options: list[str] | None = None) -> None:
        import sys

        if options is None:
            options = sys.argv[1:]
        own, self.staticFlags = splitStaticFlags(list(options))
        super().parseOptions(own)

    def getUsage(self, width: int | None = None) -> str:
        sections = ", ".join(fieldKeys(StaticConfig))
        return super().getUsage(width) + STATIC_FLAGS_HELP.format(sections=sections)

    def postOptions(self) -> None:
        try:
            self.loaded = loadStatic(self["config"], self.staticFlags, self.environ, self.cwd)
        except ConfigError as e:
            lines = "\n".join(f"  {err}" for err in flatten([e]))
            raise usage.UsageError(f"invalid static configuration:\n{lines}") from None
        parent = getattr(self, "parent", None)
        log = self.loaded.config.log
        if parent is None or parent.get("logger") or parent.get("logfile"):
            return
        if parent.get("nodaemon") or log.filePath:
            from relayd.observability import log as logModule

            logModule.configured = log
            parent["logger"] = "relayd.observability.log.configuredObserver"


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    from relayd.service import RelaydService

    loaded = options.loaded
    if loaded is None:
        options.postOptions()
        loaded = options.loaded
    assert loaded is not None
    return RelaydService(loaded, reactor)
