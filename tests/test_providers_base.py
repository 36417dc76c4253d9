"""
Tests for what every provider shares: the poll loop (L{Poller}) and the base
of polling providers (L{PollingProvider}), on a fake clock.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from relayd.config.dynamic import DynamicConfig, decodeDynamic
from relayd.config.errors import ConfigError
from relayd.interfaces import IProvider
from relayd.providers.base import Poller, PollingProvider, ProviderUpdate, SourceError


def routerConfig(name: str) -> DynamicConfig:
    return decodeDynamic(
        {
            "http": {
                "routers": {name: {"rule": f"Host(`{name}.example`)", "service": "svc"}},
                "services": {"svc": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:9"}]}}},
            }
        }
    )


class ScriptedProvider(PollingProvider):
    """
    A polling provider whose fetches return or raise what the test queues in
    C{outcomes} (a Deferred is returned as is); past the end, "unchanged".
    """

    providerName = "scripted"

    def __init__(self, clock: Clock, sink: Any, outcomes: list[Any], **kwargs: Any) -> None:
        super().__init__(clock, sink, **kwargs)
        self.outcomes = outcomes
        self.fetches: list[float] = []

    def fetch(self) -> Any:
        self.fetches.append(self.clock.seconds())
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


class PollingProviderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.updates: list[ProviderUpdate] = []

    def provider(self, outcomes: list[Any], **kwargs: Any) -> ScriptedProvider:
        kwargs.setdefault("interval", 5.0)
        provider = ScriptedProvider(self.clock, self.updates.append, outcomes, **kwargs)
        provider.startService()
        self.addCleanup(provider.stopService)
        return provider

    def routers(self) -> list[str]:
        return sorted(self.updates[-1].config.http.routers)

    def test_providesInterface(self) -> None:
        """
        A polling provider is an L{IProvider} named after its provider name.
        """
        provider = self.provider([routerConfig("a")])
        self.assertTrue(verifyObject(IProvider, provider))
        self.assertEqual(provider.name, "provider:scripted")

    def test_fetchAtStartThenEveryInterval(self) -> None:
        """
        The first fetch happens at start, the next ones every interval, and
        each new configuration is published.
        """
        provider = self.provider([routerConfig("a"), routerConfig("b")])
        self.assertEqual(provider.fetches, [0])
        self.assertEqual(self.routers(), ["a"])
        self.clock.advance(5)
        self.assertEqual(provider.fetches, [0, 5])
        self.assertEqual(self.routers(), ["b"])
        self.assertEqual(self.updates[-1], ProviderUpdate("scripted", routerConfig("b")))

    def test_unchangedNotPublished(self) -> None:
        """
        A fetch that reports no change publishes nothing, nor does one that
        returns the same configuration again.
        """
        provider = self.provider([routerConfig("a"), None, routerConfig("a")])
        self.clock.pump([5, 5, 5])
        self.assertEqual(len(provider.fetches), 4)
        self.assertEqual(len(self.updates), 1)

    def test_failureKeepsLastGoodAndReports(self) -> None:
        """
        A source that cannot be read keeps the last good configuration, with
        the failure in the update's errors; recovering clears the error.
        """
        provider = self.provider([routerConfig("a"), SourceError("connection refused"), None])
        self.clock.advance(5)
        self.assertEqual(self.routers(), ["a"])
        self.assertEqual(
            self.updates[-1].errors, (ConfigError("providers.scripted", "connection refused"),)
        )
        self.assertEqual(provider.lastGood, routerConfig("a"))
        self.clock.advance(5)
        self.assertEqual(self.updates[-1], ProviderUpdate("scripted", routerConfig("a")))
        self.assertEqual(len(self.updates), 3)

    def test_sameFailureReportedOnce(self) -> None:
        """
        A source failing the same way poll after poll publishes one update,
        not one per poll.
        """
        self.provider([routerConfig("a")] + [SourceError("down")] * 4)
        self.clock.pump([1] * 60)
        self.assertEqual(len(self.updates), 2)

    def test_configErrorKeepsKeyPaths(self) -> None:
        """
        An invalid configuration is reported with its own key paths.
        """
        bad = ConfigError("http.routers.a.rule", "empty rule", "source")
        self.provider([routerConfig("a"), bad])
        self.clock.advance(5)
        self.assertEqual(self.updates[-1].errors, (bad,))
        self.assertEqual(self.routers(), ["a"])

    def test_failureBeforeFirstSuccess(self) -> None:
        """
        A source that fails from the start publishes an empty configuration
        with the error, then the first good one.
        """
        self.provider([SourceError("refused"), routerConfig("a")])
        self.assertEqual(self.updates[0].config, DynamicConfig())
        self.assertEqual(len(self.updates[0].errors), 1)
        self.clock.advance(5)
        self.assertEqual(self.routers(), ["a"])
        self.assertEqual(self.updates[-1].errors, ())

    def test_backoffCappedThenInterval(self) -> None:
        """
        Failed fetches are retried after delays doubling from the interval up
        to the cap; a success returns to the interval.
        """
        provider = self.provider(
            [routerConfig("a")] + [SourceError("down")] * 5 + [None, None],
            interval=2.0,
            maxBackoff=10.0,
        )
        self.clock.pump([1] * 60)
        self.assertEqual(provider.fetches[:9], [0, 2, 4, 8, 16, 26, 36, 38, 40])

    def test_unexpectedErrorLoggedLoopContinues(self) -> None:
        """
        An unexpected exception in a fetch is logged with its traceback,
        reported, and the loop goes on.
        """
        provider = self.provider([routerConfig("a"), ZeroDivisionError("bug"), routerConfig("b")])
        self.clock.advance(5)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(self.updates[-1].errors, (ConfigError("providers.scripted", "bug"),))
        self.clock.advance(5)
        self.assertEqual(self.routers(), ["b"])
        self.assertEqual(len(provider.fetches), 3)

    def test_expectedErrorLoggedAsOneLine(self) -> None:
        """
        A source error is logged as one error line naming the provider,
        without a traceback.
        """
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.provider([SourceError("connection refused")])
        failures = [e for e in events if "log_failure" in e]
        messages = [e for e in events if e.get("error") == "connection refused"]
        self.assertEqual(failures, [])
        self.assertEqual(len(messages), 1)
        self.assertEqual(messages[0]["name"], "scripted provider")

    def test_timeout(self) -> None:
        """
        A fetch that does not answer within the timeout is cancelled and
        reported; the last good configuration stays.
        """
        pending: list[defer.Deferred[Any]] = [defer.Deferred(), defer.Deferred()]
        provider = self.provider([routerConfig("a"), pending[0], pending[1]], timeout=3.0)
        self.clock.advance(5)
        self.clock.advance(3)
        self.assertTrue(pending[0].called)
        self.assertEqual(self.routers(), ["a"])
        self.assertEqual(
            self.updates[-1].errors, (ConfigError("providers.scripted", "no answer within 3s"),)
        )
        self.clock.advance(5)
        self.assertEqual(len(provider.fetches), 3)
        pending[1].callback(routerConfig("b"))
        self.assertEqual(self.routers(), ["b"])
        self.assertEqual(self.updates[-1].errors, ())

    def test_noWatchSingleFetch(self) -> None:
        """
        With watch false, the source is read once.
        """
        provider = self.provider([routerConfig("a"), routerConfig("b")], watch=False)
        self.clock.pump([5] * 10)
        self.assertEqual(provider.fetches, [0])
        self.assertEqual(self.routers(), ["a"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_noWatchRetriesUntilSuccess(self) -> None:
        """
        With watch false, a failed read is retried with backoff until one
        succeeds, then polling ends.
        """
        provider = self.provider(
            [SourceError("down"), SourceError("down"), routerConfig("a"), routerConfig("b")],
            watch=False,
            interval=1.0,
        )
        self.clock.pump([1] * 20)
        self.assertEqual(provider.fetches, [0, 1, 3])
        self.assertEqual(self.routers(), ["a"])
        self.assertEqual(self.updates[-1].errors, ())

    def test_stopCancelsFetchQuietly(self) -> None:
        """
        Stopping cancels a fetch in flight without reporting an error, and
        leaves no timer behind.
        """
        pending: defer.Deferred[Any] = defer.Deferred()
        provider = self.provider([routerConfig("a"), pending], timeout=3.0)
        self.clock.advance(5)
        provider.stopService()
        self.assertTrue(pending.called)
        self.assertEqual(len(self.updates), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.flushLoggedErrors(), [])


class PollerTests(SynchronousTestCase):
    def test_startTwiceOneLoop(self) -> None:
        """
        Starting a running poller again does not start a second loop.
        """
        clock = Clock()
        calls: list[float] = []
        poller = Poller(clock, lambda: calls.append(clock.seconds()), interval=1)
        poller.start()
        poller.start()
        clock.pump([0, 1, 1])
        self.assertEqual(calls, [0, 1, 2])
        self.assertTrue(poller.running)
        poller.stop()
        self.assertFalse(poller.running)

    def test_restartAfterStop(self) -> None:
        """
        A stopped poller can be started again; each start steps at once.
        """
        clock = Clock()
        calls: list[float] = []
        poller = Poller(clock, lambda: calls.append(clock.seconds()), interval=1)
        poller.start()
        poller.stop()
        clock.advance(5)
        poller.start()
        clock.pump([0, 1])
        self.assertEqual(calls, [0, 5, 6])
        poller.stop()

    def test_onceStopsAfterSuccess(self) -> None:
        """
        With C{once}, the loop ends after the first successful step.
        """
        clock = Clock()
        outcomes: list[Exception | None] = [SourceError("down"), None]
        calls: list[float] = []

        def step() -> None:
            calls.append(clock.seconds())
            outcome = outcomes.pop(0) if outcomes else None
            if outcome is not None:
                raise outcome

        poller = Poller(clock, step, interval=1, once=True)
        poller.start()
        clock.pump([0] + [1] * 10)
        self.assertEqual(calls, [0, 1])
        self.assertFalse(poller.running)
        self.assertEqual(clock.getDelayedCalls(), [])
