"""
Tests for active health checks against real backends on loopback.
"""

from __future__ import annotations

from twisted.internet import defer, reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web import resource, server

from relayd.config.dynamic import HealthCheck, decodeDynamic
from relayd.config.loader import effective
from relayd.config.schema import decode
from relayd.config.static import StaticConfig
from relayd.entrypoints import EntryPointService
from relayd.providers.base import ProviderUpdate
from relayd.services.health import probeURL
from relayd.watcher import Watcher
from tests.helpers import Client, poll


class _Backend(resource.Resource):
    isLeaf = True

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.healthCode = 200
        self.hang = False
        self.probes: list[dict[str, object]] = []

    def render(self, request: server.Request) -> object:
        if request.path == b"/health":
            self.probes.append({"host": request.getHeader(b"host"), "x": request.getHeader(b"x-probe")})
            if self.hang:
                return server.NOT_DONE_YET
            request.setResponseCode(self.healthCode)
            return b"health"
        request.setHeader(b"x-backend", self.name.encode())
        return self.name.encode()


class ProbeURLTests(SynchronousTestCase):
    def test_overrides(self) -> None:
        """
        The probe uses the server's host with the check's scheme, port and path.
        """
        check = HealthCheck(path="/health?full=1", port=9000, scheme="https")
        self.assertEqual(probeURL("http://10.0.0.1:80/base", check), "https://10.0.0.1:9000/health?full=1")
        self.assertEqual(probeURL("http://[::1]:81", HealthCheck(path="/h")), "http://[::1]:81/h")


class HealthCheckTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.backends = {}
        self.ports = {}
        for name in "AB":
            backend = _Backend(name)
            site = server.Site(backend)
            site.noisy = False
            port = reactor.listenTCP(0, site, interface="127.0.0.1")
            self.addCleanup(port.stopListening)
            self.backends[name] = backend
            self.ports[name] = port.getHost().port
        static, _ = decode(StaticConfig, {"entryPoints": {"web": {"address": "127.0.0.1:0"}}})
        static = effective(static)
        self.watcher = Watcher(reactor, static, reactor=reactor)
        self.watcher.throttle = 0
        self.addCleanup(self.watcher.stop)
        self.apply()
        self.ep = EntryPointService("web", static.entryPoints["web"], reactor, self.watcher.runtime)
        self.watcher.addListener(self.ep.swap)
        self.ep.startService()
        self.addCleanup(self.ep.stopService)
        self.client = Client()
        self.addCleanup(self.client.close)

    def apply(self, extra: bool = False, **check: object) -> None:
        healthCheck = {"path": "/health", "interval": "50ms", "timeout": "200ms", "hostname": "probe.example",
                       "headers": {"X-Probe": "yes"}}
        healthCheck.update(check)
        routers = {"r": {"rule": "PathPrefix(`/`)", "service": "s"}}
        if extra:
            routers["x"] = {"rule": "Path(`/x`)", "service": "s"}
        config = decodeDynamic(
            {
                "http": {
                    "routers": routers,
                    "services": {
                        "s": {
                            "loadBalancer": {
                                "servers": [{"url": f"http://127.0.0.1:{self.ports[n]}"} for n in "AB"],
                                "healthCheck": healthCheck,
                            }
                        }
                    },
                }
            }
        )
        self.watcher.update(ProviderUpdate("file", config))

    def status(self) -> dict[str, str]:
        return {
            "AB"[[self.ports["A"], self.ports["B"]].index(int(url.rsplit(":", 1)[1]))]: s
            for url, s in self.watcher.runtime.services["s@file"].serverStatus.items()
        }

    @defer.inlineCallbacks
    def served(self, count: int = 6):
        seen = []
        for _ in range(count):
            response, body = yield self.client.get(f"http://127.0.0.1:{self.ep.port}/", host="x")
            seen.append(body.decode() if response.code == 200 else response.code)
        return seen

    @defer.inlineCallbacks
    def test_downServerLeavesAndReturns(self):
        """
        A server failing its check leaves the rotation and shows DOWN; when it
        passes again it returns; the probe carries the check's Host and headers.
        """
        self.assertEqual(sorted((yield self.served())), ["A"] * 3 + ["B"] * 3)
        self.backends["B"].healthCode = 503
        yield poll(lambda: self.status() == {"A": "UP", "B": "DOWN"})
        self.assertEqual((yield self.served()), ["A"] * 6)
        self.assertEqual(self.backends["A"].probes[0], {"host": b"probe.example", "x": b"yes"})
        self.backends["B"].healthCode = 302
        yield poll(lambda: self.status() == {"A": "UP", "B": "UP"})
        self.assertEqual(sorted((yield self.served())), ["A"] * 3 + ["B"] * 3)

    @defer.inlineCallbacks
    def test_allDownIs503(self):
        """
        With every server down the service answers 503.
        """
        self.backends["A"].healthCode = 500
        self.backends["B"].hang = True
        yield poll(lambda: self.status() == {"A": "DOWN", "B": "DOWN"})
        self.assertEqual((yield self.served(2)), [503, 503])

    @defer.inlineCallbacks
    def test_expectedStatus(self):
        """
        With status set, only that exact code is healthy.
        """
        self.apply(status=204)
        yield poll(lambda: self.status() == {"A": "DOWN", "B": "DOWN"})
        self.backends["A"].healthCode = 204
        yield poll(lambda: self.status() == {"A": "UP", "B": "DOWN"})

    @defer.inlineCallbacks
    def test_stateSurvivesReload(self):
        """
        A reload that keeps the service unchanged keeps its checker and its
        servers' state; changing the check starts a new checker.
        """
        self.backends["B"].healthCode = 503
        yield poll(lambda: self.status() == {"A": "UP", "B": "DOWN"})
        checkers = dict(self.watcher.shared["health"].checkers)
        self.apply(extra=True)
        self.assertEqual(self.status(), {"A": "UP", "B": "DOWN"})
        self.assertEqual(self.watcher.shared["health"].checkers, checkers)
        self.apply(interval="60ms")
        self.assertNotEqual(self.watcher.shared["health"].checkers, checkers)
        self.assertEqual(len(self.watcher.shared["health"].checkers), 1)


class FailoverTests(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_failoverFollowsHealth(self):
        """
        A failover service serves from its main service while that has a
        healthy server, from the fallback otherwise, and back when it recovers;
        weighted services skip children with no healthy server only when they
        have a healthCheck section, as in Traefik.
        """
        backends = {}
        ports = {}
        for name in "MF":
            backend = _Backend(name)
            site = server.Site(backend)
            site.noisy = False
            port = reactor.listenTCP(0, site, interface="127.0.0.1")
            self.addCleanup(port.stopListening)
            backends[name], ports[name] = backend, port.getHost().port
        check = {"path": "/health", "interval": "50ms", "timeout": "200ms"}
        config = decodeDynamic(
            {
                "http": {
                    "routers": {
                        "r": {"rule": "Path(`/f`)", "service": "fo"},
                        "w": {"rule": "Path(`/w`)", "service": "wt"},
                        "b": {"rule": "Path(`/b`)", "service": "blind"},
                    },
                    "services": {
                        "main": {"loadBalancer": {"servers": [{"url": f"http://127.0.0.1:{ports['M']}"}], "healthCheck": check}},
                        "fb": {"loadBalancer": {"servers": [{"url": f"http://127.0.0.1:{ports['F']}"}]}},
                        "fo": {"failover": {"service": "main", "fallback": "fb"}},
                        "wt": {"weighted": {"services": [{"name": "main", "weight": 3}, {"name": "fb", "weight": 1}], "healthCheck": {}}},
                        "blind": {"weighted": {"services": [{"name": "main", "weight": 1}, {"name": "fb", "weight": 1}]}},
                    },
                }
            }
        )
        static, _ = decode(StaticConfig, {"entryPoints": {"web": {"address": "127.0.0.1:0"}}})
        static = effective(static)
        watcher = Watcher(reactor, static, reactor=reactor)
        self.addCleanup(watcher.stop)
        watcher.update(ProviderUpdate("file", config))
        ep = EntryPointService("web", static.entryPoints["web"], reactor, watcher.runtime)
        ep.startService()
        self.addCleanup(ep.stopService)
        client = Client()
        self.addCleanup(client.close)

        @defer.inlineCallbacks
        def body(path):
            response, data = yield client.get(f"http://127.0.0.1:{ep.port}{path}", host="x")
            return data.decode()

        self.assertEqual((yield body("/f")), "M")
        backends["M"].healthCode = 503
        yield poll(lambda: body("/f").addCallback(lambda b: b == "F"))
        seen = []
        for _ in range(4):
            seen.append((yield body("/w")))
        self.assertEqual(seen, ["F"] * 4)
        blind = []
        for _ in range(4):
            blind.append((yield body("/b")))
        self.assertEqual(sorted(blind), ["F", "F", "Service Unavailable\n", "Service Unavailable\n"])
        backends["M"].healthCode = 200
        yield poll(lambda: body("/f").addCallback(lambda b: b == "M"))
