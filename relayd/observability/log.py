"""
The process log: C{log.level}, C{log.format} (common or json) and
C{log.filePath} (standard output when unset) from the static configuration,
turned into a Twisted log observer. The file is reopened on SIGUSR1 (see
L{relayd.observability.accesslog.installReopenSignal}), for rotation by an
outside tool.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any, Callable

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    PredicateResult,
    jsonFileLogObserver,
    textFileLogObserver,
)

from relayd.config.static import Log

LEVELS = {
    "TRACE": LogLevel.debug,
    "DEBUG": LogLevel.debug,
    "INFO": LogLevel.info,
    "WARN": LogLevel.warn,
    "ERROR": LogLevel.error,
    "FATAL": LogLevel.critical,
    "PANIC": LogLevel.critical,
}


def observerFactory(config: Log, fallback: Callable[[], IO[str]] | None = None) -> Callable[[], ILogObserver]:
    """
    A factory (as twistd's C{--logger} takes) of the observer for C{config}.
    relayd's own messages below C{log.level} are dropped; Twisted's own
    informational chatter is kept only at DEBUG.
    """

    def make() -> ILogObserver:
        stream: Any
        if config.filePath:
            stream = ReopenableFile(config.filePath)
        else:
            stream = fallback() if fallback else sys.stdout
        if config.format == "json":
            observer = jsonFileLogObserver(stream)
        else:
            observer = textFileLogObserver(stream)
        level = LEVELS[config.level]
        predicate = LogLevelFilterPredicate(defaultLogLevel=level)
        if level > LogLevel.debug:
            predicate.setLogLevelForNamespace("twisted", max(level, LogLevel.warn))
        return FilteringLogObserver(observer, [_AlwaysShown(predicate)])

    return make


class ReopenableFile:
    """
    A text file opened for appending that L{reopenFiles} reopens at the same
    path (after a rotation renamed it).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.file = self._open()
        _files.append(self)

    def _open(self) -> IO[str]:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        return open(self.path, "a", encoding="utf-8")

    def write(self, text: str) -> int:
        return self.file.write(text)

    def flush(self) -> None:
        self.file.flush()

    def reopen(self) -> None:
        new = self._open()
        old, self.file = self.file, new
        old.close()


_files: list[ReopenableFile] = []


def reopenFiles() -> None:
    """
    Reopen the process log files (on SIGUSR1).
    """
    for f in _files:
        try:
            f.reopen()
        except OSError as e:
            sys.stderr.write(f"relayd: cannot reopen the log file {f.path}: {e}\n")


ALWAYS = "relayd_always"


class _AlwaysShown:
    """
    Let through the few start-up lines an operator must always see (where
    relayd listens, where its configuration came from), whatever the level.
    """

    def __init__(self, predicate: LogLevelFilterPredicate) -> None:
        self.predicate = predicate

    def __call__(self, event: dict[str, Any]) -> Any:
        if event.get(ALWAYS):
            return PredicateResult.yes
        return self.predicate(event)


configured: Log | None = None


def configuredObserver() -> ILogObserver:
    """
    The observer for the log settings the twistd plugin read (twistd's
    C{--logger} takes the dotted name of this function).
    """
    return observerFactory(configured or Log(level="INFO"))()
