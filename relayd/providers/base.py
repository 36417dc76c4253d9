"""
What every provider shares: the update it hands to the watcher, a poll loop on
an injected clock that catches every failure, logs it, backs off and never
stops by itself, and L{PollingProvider}, the base of providers that read their
whole configuration from a source now and then (keeping the last good one while
the source fails, and reporting why).
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
from twisted.application import service
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from relayd.config.dynamic import DynamicConfig
from relayd.config.errors import ConfigError, flatten
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


class SourceError(Exception):
    """
    A provider's source could not be read or answered badly (refused, timed
    out, a non-200 status). Expected in operation: logged as one line, without
    a traceback.
    """


# Failures a poll step is expected to meet; anything else is logged with its
# traceback, as a bug.
EXPECTED_FAILURES: tuple[type[BaseException], ...] = (SourceError, ConfigError)


class Poller:
    """
    Call C{step} now (at L{start}, synchronously) and then every C{interval}
    seconds; C{step} returns a
    Deferred (or a value). A failing step is logged and retried after a delay that
    doubles from C{interval} up to C{maxBackoff}; a success resets it.

    With C{once}, the loop ends after the first step that succeeds (failures
    are still retried): a provider's C{watch = false}.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        step: Callable[[], object],
        interval: float,
        maxBackoff: float = 60.0,
        name: str = "",
        once: bool = False,
    ) -> None:
        self._clock = clock
        self._step = step
        self.interval = interval
        self.maxBackoff = max(maxBackoff, interval)
        self.name = name
        self.once = once
        self.failures = 0
        self._call: IDelayedCall | None = None
        self._running: defer.Deferred[object] | None = None
        self._stopped = True

    @property
    def running(self) -> bool:
        """
        Whether the loop is started and not stopped.
        """
        return not self._stopped

    def start(self, now: bool = True) -> None:
        if not self._stopped:
            return
        self._stopped = False
        if now:
            self._run()
        else:
            self._schedule(self.interval)

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
        if failure.check(*EXPECTED_FAILURES):
            self._log.error(
                "{name} poll failed (attempt {attempts}): {error}; retrying in {delay:.1f}s",
                name=self.name,
                attempts=self.failures,
                error=str(failure.value) or failure.type.__name__,
                delay=self.nextDelay(),
            )
            return
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
        if self.once and self.failures == 0:
            self._stopped = True
            return
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


class PollingProvider(Provider):
    """
    A provider that reads its whole configuration from a source now and then.
    Subclasses implement L{fetch}; this base runs it on a L{Poller}, at start
    and then every C{interval} seconds (once, until it succeeds, when C{watch}
    is false), gives up on a fetch after C{timeout} seconds, and publishes:

      - a new configuration as soon as a fetch returns one;
      - on a failed fetch, the last good configuration (empty before the
        first success) with the failure as a L{ConfigError} in the update's
        errors, so the API shows it; the poll is retried with backoff;
      - on a fetch that says "unchanged" (C{None}) after a failure, the last
        good configuration again without the error.

    Nothing is published when nothing changed.

    @ivar lastGood: the configuration of the last successful fetch.
    @ivar errors: the problems of the last fetch (empty when it succeeded).
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        sink: Sink,
        interval: float,
        timeout: float = 0.0,
        watch: bool = True,
        maxBackoff: float = 60.0,
    ) -> None:
        super().__init__(clock, sink)
        self.timeout = timeout
        self.lastGood: DynamicConfig | None = None
        self.errors: tuple[ConfigError, ...] = ()
        # Set by fetch: problems of a successful fetch (objects skipped).
        self.problems: tuple[ConfigError, ...] = ()
        self._published: tuple[DynamicConfig, tuple[ConfigError, ...]] | None = None
        self._poller = Poller(
            clock, self.poll, interval, maxBackoff, name=f"{self.providerName} provider", once=not watch
        )

    def startService(self) -> None:
        super().startService()
        self._poller.start()

    def stopService(self) -> object:
        self._poller.stop()
        return super().stopService()

    def fetch(self) -> defer.Deferred[DynamicConfig | None] | DynamicConfig | None:
        """
        Read the source once.

        @return: (a Deferred of) the configuration, or C{None} when the source
            is unchanged since the last successful fetch.
        @raise SourceError: when the source cannot be read.
        @raise ConfigError: when what it says is not a valid configuration.
        """
        raise NotImplementedError()

    def poll(self) -> defer.Deferred[Any]:
        """
        One fetch and its outcome published; fails (for the poller's backoff)
        when the fetch failed.
        """
        d = defer.maybeDeferred(self.fetch)
        if self.timeout > 0:
            d.addTimeout(self.timeout, self.clock, onTimeoutCancel=self._timedOut)
        d.addCallbacks(self._fetched, self._fetchFailed)
        return d

    def _timedOut(self, result: object, timeout: float) -> object:
        if isinstance(result, Failure) and result.check(defer.CancelledError):
            raise SourceError(f"no answer within {timeout:g}s")
        return result

    def _fetched(self, config: DynamicConfig | None) -> None:
        if config is not None:
            self.lastGood = config
        # A good fetch still reports what it left out (bad labels, objects
        # defined twice), with their key paths.
        self.errors = self.problems
        self._publishChanged()

    def _fetchFailed(self, failure: Failure) -> Failure:
        if failure.check(defer.CancelledError) and not self._poller.running:
            return failure
        self.errors = self.describeFailure(failure)
        self._publishChanged()
        return failure

    def describeFailure(self, failure: Failure) -> tuple[ConfigError, ...]:
        """
        The errors to report for a failed fetch: a L{ConfigError}'s own
        (with their key paths), else one error at C{providers.<name>}.
        """
        if isinstance(failure.value, ConfigError):
            return tuple(flatten([failure.value]))
        message = str(failure.value) or failure.type.__name__
        return (ConfigError(f"providers.{self.providerName}", message),)

    def _publishChanged(self) -> None:
        result = (self.lastGood if self.lastGood is not None else DynamicConfig(), self.errors)
        if result != self._published:
            self._published = result
            self.publish(*result)
