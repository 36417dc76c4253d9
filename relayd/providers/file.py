"""
The file provider: dynamic configuration from one file or a directory of TOML,
YAML and JSON files, re-read when a file changes (polled on the injected clock).
Each file keeps its last good configuration, so a broken edit never takes routes
away; the error is reported with the file and key path.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from relayd.config.dynamic import DynamicConfig, decodeDynamicWithWarnings
from relayd.config.errors import ConfigError, flatten
from relayd.config.loader import DOCUMENT_SUFFIXES, parseDocument, readDocument
from relayd.config.merge import mergeFirstWins
from relayd.config.static import FileProvider as FileProviderConfig
from relayd.providers.base import Poller, Provider, Sink

class _FileState:
    def __init__(self) -> None:
        self.content: bytes | None | _Never = _NEVER
        self.config: DynamicConfig | None = None
        self.errors: tuple[ConfigError, ...] = ()


class FileProvider(Provider):
    """
    Watches C{filename} or C{directory} (recursively; files ending in .toml,
    .yaml, .yml or .json; names starting with a dot are skipped).
    """

    _log = Logger()
    providerName = "file"

    def __init__(
        self,
        clock: IReactorTime,
        sink: Sink,
        config: FileProviderConfig,
        baseDirectory: str = "",
    ) -> None:
        super().__init__(clock, sink)
        self.config = config
        self.filename = _resolve(config.filename, baseDirectory)
        self.directory = _resolve(config.directory, baseDirectory)
        self._files: dict[str, _FileState] = {}
        self._published: tuple[DynamicConfig, tuple[ConfigError, ...]] | None = None
        self._poller = Poller(clock, self.check, config.pollInterval or 2.0, name="file provider")

    def startService(self) -> None:
        super().startService()
        self.check()
        if self.config.watch:
            self._poller.start(now=False)

    def stopService(self) -> None:
        self._poller.stop()
        return super().stopService()

    def paths(self) -> list[str]:
        """
        The files currently making up the configuration, in merge order.
        """
        if self.filename:
            return [self.filename]
        found = []
        for root, dirs, files in os.walk(self.directory):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if not name.startswith(".") and name.lower().endswith(DOCUMENT_SUFFIXES):
                    found.append(os.path.join(root, name))
        return found

    def check(self) -> None:
        """
        Re-parse every file whose bytes changed (reading is cheaper and surer
        than trusting coarse modification times), and publish the merged
        configuration if it differs from the last one published.
        """
        paths = self.paths()
        errors: list[ConfigError] = []
        if self.directory and not os.path.isdir(self.directory):
            errors.append(ConfigError("providers.file.directory", "not a directory", self.directory))
        for path in list(self._files):
            if path not in paths:
                del self._files[path]
        for path in paths:
            state = self._files.setdefault(path, _FileState())
            content = _read(path)
            if content == state.content:
                continue
            state.content = content
            self._load(path, state, content)
        for path in paths:
            errors.extend(self._files[path].errors)
        config, mergeErrors = mergeFirstWins(
            [(p, self._files[p].config) for p in paths if self._files[p].config is not None]
        )
        result = (config, tuple(errors) + tuple(mergeErrors))
        if result != self._published:
            self._published = result
            self.publish(*result)

    def _load(self, path: str, state: _FileState, content: bytes | None) -> None:
        try:
            if content is None:
                raw: Any = readDocument(path)
            else:
                try:
                    text = content.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise ConfigError("", f"not UTF-8 text: {e}") from None
                raw = parseDocument(text, path)
            config, warnings = decodeDynamicWithWarnings(raw)
        except ConfigError as e:
            errors = tuple(
                err if err.source else err.withSource(path) for err in flatten([e])
            )
            state.errors = errors
            kept = "keeping its last good configuration" if state.config else "nothing loaded from it"
            for error in errors:
                self._log.error(
                    "file provider: {error} ({kept})", error=str(error), kept=kept
                )
            return
        state.errors = ()
        state.config = config
        for warning in warnings:
            self._log.warn("file provider: {path}: {warning}", path=path, warning=warning)
        self._log.info("file provider: loaded {path}", path=path)


def _resolve(path: str, baseDirectory: str) -> str:
    if not path or os.path.isabs(path):
        return path
    if os.path.exists(path) or not baseDirectory:
        return os.path.abspath(path)
    return os.path.join(baseDirectory, path)


class _Never:
    pass


_NEVER = _Never()


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None
