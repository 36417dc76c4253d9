"""
What every provider shares: the update it hands to the watcher, and a poll loop
on an injected clock that catches every failure, logs it, backs off and never
stops by itself.
"""

from __future__ import annotations

from typing import Callable

import attrs
from twisted.application import service
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from relayd.config.dynamic import DynamicConfig
from relayd.config.errors import ConfigError
from relayd.interfaces import IProvider


@attrs.frozen
class ProviderUpdate:
    """
    A provider's complete current configuration, and the problems it met making
    it (a file that did not parse, a source that did not answer). The
    configuration is the last good one when the newest input was bad.
    """

    provider: str
    config: DynamicConfig
    errors: tuple[ConfigError, ...] = ()


Sink = Callable[[ProviderUpdate], None]


class Poller:
    """
    Call C{step} now and then every C{interval} seconds; C{step} returns a
    Deferred (or a value). A failing step is logged and retried after a delay that
    doubles from C{interval} up to C{maxBackoff}; a success resets it.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        step: Callable[[], object],
        interval: float,
        maxBackoff: float = 60.0,
        name: str = "",
    ) -> None:
        self._clock = clock
        self._step = step
        self.interval = interval
        self.maxBackoff = max(maxBackoff, interval)
        self.name = name
        self.failures = 0
        self._call: IDelayedCall | None = None
        self._running: defer.Deferred[object] | None = None
        self._stopped = True

    def start(self, now: bool = True) -> None:
        self._stopped = False
        self._schedule(0 if now else self.interval)

    def stop(self) -> None:
        self._stopped = True
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self._running is not None:
            self._running.cancel()

    def nextDelay(self) -> float:
        if self.failures == 0:
            return self.interval
        return min(self.maxBackoff, max(self.interval, 1.0) * 2 ** (self.failures - 1))

    def _schedule(self, delay: float) -> None:
        if not self._stopped:
            self._call = self._clock.callLater(delay, self._run)

    def _run(self) -> None:
        self._call = None
        d = defer.maybeDeferred(self._step)
        self._running = d
        d.addCallbacks(self._succeeded, self._failed)
        d.addErrback(self._bug)
        d.addBoth(self._next)

    def _succeeded(self, _: object) -> None:
        self.failures = 0

    def _failed(self, failure: Failure) -> None:
        if failure.check(defer.CancelledError) and self._stopped:
            return
        self.failures += 1
        self._log.failure(
            "{name} poll failed (attempt {attempts}); retrying in {delay:.1f}s",
            failure,
            name=self.name,
            attempts=self.failures,
            delay=self.nextDelay(),
        )

    def _bug(self, failure: Failure) -> None:
        self._log.failure("unexpected error in {name} poll loop", failure, name=self.name)

    def _next(self, _: object) -> None:
        self._running = None
        self._schedule(self.nextDelay())


@implementer(IProvider)
class Provider(service.Service):
    """
    Base of the providers: a named service that hands L{ProviderUpdate}s to a sink.
    """

    _log = Logger()
    providerName = ""

    def __init__(self, clock: IReactorTime, sink: Sink) -> None:
        self.clock = clock
        self.sink = sink
        self.setName(f"provider:{self.providerName}")

    def publish(self, config: DynamicConfig, errors: tuple[ConfigError, ...] = ()) -> None:
        self.sink(ProviderUpdate(self.providerName, config, errors))
