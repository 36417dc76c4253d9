"""
Tests for L{relayd.watcher}: skipping unchanged input, per-provider throttling
(latest wins), qualification and merging, and keeping the last good runtime.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from relayd.config.dynamic import decodeDynamic
from relayd.config.loader import effective
from relayd.config.schema import decode
from relayd.config.static import StaticConfig
from relayd.providers.base import ProviderUpdate
from relayd.watcher import Watcher


def static(throttle: str = "2s") -> StaticConfig:
    config, _ = decode(
        StaticConfig,
        {
            "entryPoints": {"web": {"address": "127.0.0.1:0"}},
            "providers": {"providersThrottleDuration": throttle},
        },
    )
    return effective(config)


def routerConfig(*names: str, service: str = "svc") -> object:
    return decodeDynamic(
        {
            "http": {
                "routers": {n: {"rule": f"Host(`{n}.example`)", "service": service} for n in names},
                "services": {
                    "svc": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:1"}]}}
                },
            }
        }
    )


class WatcherTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.watcher = Watcher(self.clock, static())
        self.runtimes: list[object] = []
        self.watcher.addListener(self.runtimes.append)

    def test_firstUpdateAppliedAtOnce(self) -> None:
        """
        A provider's first configuration is built and handed to listeners at once.
        """
        self.watcher.update(ProviderUpdate("file", routerConfig("a")))
        self.assertEqual(len(self.runtimes), 1)
        self.assertEqual(list(self.watcher.runtime.routers), ["a@file"])
        self.assertEqual(self.watcher.runtime.generation, 1)

    def test_unchangedSkipped(self) -> None:
        """
        An update equal to the provider's current configuration builds nothing.
        """
        self.watcher.update(ProviderUpdate("file", routerConfig("a")))
        self.clock.advance(10)
        self.watcher.update(ProviderUpdate("file", routerConfig("a")))
        self.assertEqual(len(self.runtimes), 1)

    def test_throttleLatestWins(self) -> None:
        """
        Within the throttle window after a reload, updates wait and only the
        newest is applied when the window ends.
        """
        self.watcher.update(ProviderUpdate("file", routerConfig("a")))
        self.clock.advance(0.5)
        self.watcher.update(ProviderUpdate("file", routerConfig("b")))
        self.watcher.update(ProviderUpdate("file", routerConfig("c")))
        self.assertEqual(len(self.runtimes), 1)
        self.clock.advance(1.4)
        self.assertEqual(len(self.runtimes), 1)
        self.clock.advance(0.1)
        self.assertEqual(len(self.runtimes), 2)
        self.assertEqual(list(self.watcher.runtime.routers), ["c@file"])

    def test_throttlePerProvider(self) -> None:
        """
        The throttle applies to each provider separately: another provider's
        first update is applied at once.
        """
        self.watcher.update(ProviderUpdate("file", routerConfig("a")))
        self.clock.advance(0.1)
        self.watcher.update(ProviderUpdate("docker", routerConfig("b")))
        self.assertEqual(len(self.runtimes), 2)
        self.assertEqual(sorted(self.watcher.runtime.routers), ["a@file", "b@docker"])

    def test_pendingRevertedToCurrentIsSkipped(self) -> None:
        """
        A pending update that ends up equal to what is applied builds nothing.
        """
        self.watcher.update(ProviderUpdate("file", routerConfig("a")))
        self.watcher.update(ProviderUpdate("file", routerConfig("b")))
        self.watcher.update(ProviderUpdate("file", routerConfig("a")))
        self.clock.advance(5)
        self.assertEqual(len(self.runtimes), 1)

    def test_crossProviderReference(self) -> None:
        """
        A router may name a service of another provider with name@provider;
        unqualified names resolve in the router's own provider.
        """
        self.watcher.update(ProviderUpdate("file", routerConfig()))
        other = decodeDynamic({"http": {"routers": {"r": {"rule": "Path(`/`)", "service": "svc@file"}}}})
        self.watcher.update(ProviderUpdate("docker", other))
        router = self.watcher.runtime.routers["r@docker"]
        self.assertEqual(router.status, "enabled")
        self.assertIn("r@docker", self.watcher.runtime.services["svc@file"].usedBy)

    def test_missingServiceDisablesOnlyThatRouter(self) -> None:
        """
        A router naming a missing service is disabled with an error; the others
        keep serving.
        """
        config = decodeDynamic(
            {
                "http": {
                    "routers": {
                        "good": {"rule": "Path(`/`)", "service": "svc"},
                        "bad": {"rule": "Path(`/b`)", "service": "nope"},
                    },
                    "services": {"svc": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:1"}]}}},
                }
            }
        )
        self.watcher.update(ProviderUpdate("file", config))
        runtime = self.watcher.runtime
        self.assertEqual(runtime.routers["good@file"].status, "enabled")
        self.assertEqual(runtime.routers["bad@file"].status, "disabled")
        self.assertEqual(runtime.routers["bad@file"].errors, ['the service "nope@file" does not exist'])
        self.assertEqual([r.name for r in runtime.table("web").plain], ["good@file"])

    def test_providerErrorsInRuntime(self) -> None:
        """
        Errors a provider reports (a file that did not parse) are kept in the
        runtime status next to its last good configuration.
        """
        from relayd.config.errors import ConfigError

        error = ConfigError("http.routers.x", "bad", "dyn.toml")
        self.watcher.update(ProviderUpdate("file", routerConfig("a"), (error,)))
        self.assertEqual(self.watcher.runtime.providerErrors, {"file": (error,)})
        self.assertIn("a@file", self.watcher.runtime.routers)

    def test_failedBuildKeepsLastGood(self) -> None:
        """
        If building a generation raises, the last good runtime keeps serving,
        listeners are not called, and the failure is remembered.
        """
        self.watcher.update(ProviderUpdate("file", routerConfig("a")))
        good = self.watcher.runtime
        import relayd.watcher as module

        original = module.build

        def broken(*args, **kwargs):
            raise RuntimeError("boom")

        module.build = broken
        self.addCleanup(setattr, module, "build", original)
        self.clock.advance(5)
        self.watcher.update(ProviderUpdate("file", routerConfig("b")))
        self.assertIs(self.watcher.runtime, good)
        self.assertEqual(len(self.runtimes), 1)
        self.assertIsInstance(self.watcher.lastError, RuntimeError)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_internalNamesReserved(self) -> None:
        """
        A provider cannot define an @internal object: names are always
        qualified with the provider's own name.
        """
        config = decodeDynamic(
            {"http": {"routers": {"ping": {"rule": "Path(`/x`)", "service": "ping@internal"}}}}
        )
        self.watcher.update(ProviderUpdate("file", config))
        self.assertIn("ping@file", self.watcher.runtime.routers)
        self.assertNotIn("ping@internal", self.watcher.runtime.routers)
