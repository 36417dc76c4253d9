"""
The process log: C{log.level}, C{log.format} (common or json) and
C{log.filePath} (standard output when unset) from the static configuration,
turned into a Twisted log observer.
"""

from __future__ import annotations

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
        stream: IO[Any]
        if config.filePath:
            stream = open(config.filePath, "a", encoding="utf-8")
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
