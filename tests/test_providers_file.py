"""
Tests for the file provider and the shared poll loop, on a fake clock with real
files.
"""

from __future__ import annotations

import os

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from relayd.config.schema import decode
from relayd.config.static import FileProvider as FileProviderConfig
from relayd.interfaces import IProvider
from relayd.providers.base import Poller, ProviderUpdate
from relayd.providers.file import FileProvider
from tests.helpers import tempdir, writeFile

ROUTER = """
[http.routers.{name}]
rule = "Host(`{name}.example`)"
service = "svc"
"""
SERVICE = """
[http.services.svc.loadBalancer]
[[http.services.svc.loadBalancer.servers]]
url = "http://127.0.0.1:9"
"""


class FileProviderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = tempdir(self)
        self.clock = Clock()
        self.updates: list[ProviderUpdate] = []

    def provider(self, **options: object) -> FileProvider:
        config, _ = decode(FileProviderConfig, options)
        provider = FileProvider(self.clock, self.updates.append, config, self.dir)
        provider.startService()
        self.addCleanup(provider.stopService)
        return provider

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def routers(self) -> list[str]:
        return sorted(self.updates[-1].config.http.routers)

    def test_providesInterface(self) -> None:
        """
        The file provider is an IProvider.
        """
        from zope.interface.verify import verifyObject

        writeFile(self.path("a.toml"), SERVICE)
        self.assertTrue(verifyObject(IProvider, self.provider(filename=self.path("a.toml"))))

    def test_loadsFileAtStart(self) -> None:
        """
        The configuration is published synchronously when the service starts.
        """
        writeFile(self.path("dyn.toml"), ROUTER.format(name="a") + SERVICE)
        self.provider(filename=self.path("dyn.toml"))
        self.assertEqual(len(self.updates), 1)
        self.assertEqual(self.routers(), ["a"])
        self.assertEqual(self.updates[0].provider, "file")

    def test_relativeToConfigDirectory(self) -> None:
        """
        A relative filename that does not exist in the working directory is
        looked up beside the static configuration file.
        """
        writeFile(self.path("dyn.toml"), ROUTER.format(name="a") + SERVICE)
        self.provider(filename="dyn.toml")
        self.assertEqual(self.routers(), ["a"])

    def test_reloadOnChange(self) -> None:
        """
        A changed file is re-read at the next poll, and only then.
        """
        writeFile(self.path("dyn.toml"), ROUTER.format(name="a") + SERVICE)
        self.provider(filename=self.path("dyn.toml"), pollInterval="1s")
        writeFile(self.path("dyn.toml"), ROUTER.format(name="b") + SERVICE)
        self.clock.advance(0.9)
        self.assertEqual(len(self.updates), 1)
        self.clock.advance(0.1)
        self.assertEqual(len(self.updates), 2)
        self.assertEqual(self.routers(), ["b"])

    def test_unchangedNotPublished(self) -> None:
        """
        Polls that find the same bytes publish nothing.
        """
        writeFile(self.path("dyn.toml"), ROUTER.format(name="a") + SERVICE)
        self.provider(filename=self.path("dyn.toml"), pollInterval="1s")
        self.clock.pump([1] * 5)
        self.assertEqual(len(self.updates), 1)

    def test_noWatch(self) -> None:
        """
        With watch = false the file is read once.
        """
        writeFile(self.path("dyn.toml"), ROUTER.format(name="a") + SERVICE)
        self.provider(filename=self.path("dyn.toml"), watch=False)
        writeFile(self.path("dyn.toml"), ROUTER.format(name="b") + SERVICE)
        self.clock.pump([5] * 5)
        self.assertEqual(self.routers(), ["a"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_brokenFileKeepsLastGood(self) -> None:
        """
        A file that stops parsing keeps its last good configuration and the
        error names the file and the problem; fixing it clears the error.
        """
        writeFile(self.path("dyn.toml"), ROUTER.format(name="a") + SERVICE)
        self.provider(filename=self.path("dyn.toml"), pollInterval="1s")
        writeFile(self.path("dyn.toml"), "[http.routers.a\n")
        self.clock.advance(1)
        update = self.updates[-1]
        self.assertEqual(sorted(update.config.http.routers), ["a"])
        self.assertEqual(len(update.errors), 1)
        self.assertEqual(update.errors[0].source, self.path("dyn.toml"))
        self.assertIn("invalid TOML", update.errors[0].message)
        self.assertEqual(len(self.flushLoggedErrors()), 0)
        writeFile(self.path("dyn.toml"), ROUTER.format(name="c") + SERVICE)
        self.clock.advance(1)
        self.assertEqual((self.routers(), self.updates[-1].errors), (["c"], ()))

    def test_badKeyErrorHasKeyPath(self) -> None:
        """
        An unknown key is reported with its full key path and the file.
        """
        writeFile(self.path("dyn.toml"), '[http.routers.a]\nrule = "Path(`/`)"\nservce = "x"\n')
        self.provider(filename=self.path("dyn.toml"))
        (error,) = self.updates[-1].errors
        self.assertEqual(error.path, "http.routers.a.servce")
        self.assertEqual(str(error), f'{self.path("dyn.toml")}: http.routers.a.servce: unknown key, did you mean "service"?')

    def test_missingFileReported(self) -> None:
        """
        A missing file is an error in the update, with an empty configuration.
        """
        self.provider(filename=self.path("nope.toml"))
        (error,) = self.updates[-1].errors
        self.assertIn("cannot read", str(error))
        self.assertTrue(self.updates[-1].config.isEmpty())

    def test_directoryMixedFormats(self) -> None:
        """
        A directory's TOML, YAML and JSON files (recursively) are merged; other
        files and dot-files are ignored.
        """
        os.makedirs(self.path("sub"))
        writeFile(self.path("a.toml"), ROUTER.format(name="a") + SERVICE)
        writeFile(
            self.path("sub/b.yaml"),
            "http:\n  routers:\n    b:\n      rule: Host(`b.example`)\n      service: svc\n",
        )
        writeFile(self.path("c.json"), '{"http": {"routers": {"c": {"rule": "Path(`/c`)", "service": "svc"}}}}')
        writeFile(self.path("notes.txt"), "not configuration")
        writeFile(self.path(".hidden.toml"), ROUTER.format(name="hidden"))
        self.provider(directory=self.dir)
        self.assertEqual(self.routers(), ["a", "b", "c"])
        self.assertEqual(self.updates[-1].errors, ())

    def test_directoryDuplicateFirstWins(self) -> None:
        """
        An object defined differently in two files keeps the first file's
        definition (in path order) and reports the second.
        """
        writeFile(self.path("a.toml"), ROUTER.format(name="x") + SERVICE)
        writeFile(self.path("b.toml"), ROUTER.format(name="x").replace("x.example", "other"))
        self.provider(directory=self.dir)
        update = self.updates[-1]
        self.assertEqual(update.config.http.routers["x"].rule, "Host(`x.example`)")
        (error,) = update.errors
        self.assertEqual((error.path, error.source), ("http.routers.x", self.path("b.toml")))

    def test_directoryBrokenFileKeepsOthers(self) -> None:
        """
        In a directory, one broken file keeps its own last good configuration
        while the other files' changes apply.
        """
        writeFile(self.path("a.toml"), ROUTER.format(name="a") + SERVICE)
        writeFile(self.path("b.toml"), ROUTER.format(name="b"))
        self.provider(directory=self.dir, pollInterval="1s")
        writeFile(self.path("a.toml"), "not = [valid")
        writeFile(self.path("b.toml"), ROUTER.format(name="b2"))
        self.clock.advance(1)
        self.assertEqual(self.routers(), ["a", "b2"])

    def test_removedFileRemovesRoutes(self) -> None:
        """
        Deleting a file from the directory removes what it defined.
        """
        writeFile(self.path("a.toml"), ROUTER.format(name="a") + SERVICE)
        writeFile(self.path("b.toml"), ROUTER.format(name="b"))
        self.provider(directory=self.dir, pollInterval="1s")
        os.remove(self.path("b.toml"))
        self.clock.advance(1)
        self.assertEqual(self.routers(), ["a"])


class PollerTests(SynchronousTestCase):
    def test_backoffAndRecovery(self) -> None:
        """
        A failing step is retried after delays doubling up to the cap, and a
        success returns to the normal interval; the loop never stops.
        """
        clock = Clock()
        calls: list[float] = []
        outcomes = [ValueError("down")] * 5 + [None, None]

        def step() -> None:
            calls.append(clock.seconds())
            outcome = outcomes.pop(0) if outcomes else None
            if outcome is not None:
                raise outcome

        poller = Poller(clock, step, interval=1, maxBackoff=8, name="test")
        poller.start()
        clock.pump([0] + [1] * 40)
        self.assertEqual(calls[:8], [0, 1, 3, 7, 15, 23, 24, 25])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 5)
        poller.stop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_deferredStepWaited(self) -> None:
        """
        The next poll is scheduled only after the step's Deferred fires, and
        stopping cancels a step in flight.
        """
        clock = Clock()
        pending: list[defer.Deferred[None]] = []

        def step() -> defer.Deferred[None]:
            d: defer.Deferred[None] = defer.Deferred()
            pending.append(d)
            return d

        poller = Poller(clock, step, interval=1)
        poller.start()
        clock.advance(0)
        clock.advance(10)
        self.assertEqual(len(pending), 1)
        pending[0].callback(None)
        clock.advance(1)
        self.assertEqual(len(pending), 2)
        poller.stop()
        self.assertTrue(pending[1].called)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(self.flushLoggedErrors(), [])
