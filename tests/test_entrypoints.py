"""
Tests for entrypoints: listening in every address form, routing each request on
the runtime current when it arrived, and the answers relayd gives itself.
"""

from __future__ import annotations

import os
import socket

from twisted.internet import defer, reactor
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.trial.unittest import TestCase

from relayd.config.dynamic import decodeDynamic
from relayd.config.loader import effective
from relayd.config.schema import decode
from relayd.config.static import StaticConfig
from relayd.entrypoints import EntryPointService, ListenError
from relayd.providers.base import ProviderUpdate
from relayd.watcher import Watcher
from tests.helpers import Client, freePorts, startBackend, tempdir


def makeStatic(address: str) -> StaticConfig:
    config, _ = decode(StaticConfig, {"entryPoints": {"web": {"address": address}}})
    return effective(config)


class _Raw(Protocol):
    def connectionMade(self) -> None:
        self.received = b""
        self.transport.write(self.factory.request)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: object) -> None:
        self.factory.done.callback(self.received)


def rawRequest(port: int, request: bytes) -> defer.Deferred[bytes]:
    """
    Send raw bytes to 127.0.0.1:port and collect everything until close.
    """
    factory = ClientFactory()
    factory.protocol = _Raw
    factory.request = request
    factory.done = defer.Deferred()
    reactor.connectTCP("127.0.0.1", port, factory)
    return factory.done


class EntryPointTests(TestCase):
    def start(self, address: str, dynamic: dict | None = None) -> EntryPointService:
        static = makeStatic(address)
        self.watcher = Watcher(reactor, static, reactor=reactor)
        if dynamic is not None:
            self.watcher.update(ProviderUpdate("file", decodeDynamic(dynamic)))
        ep = EntryPointService("web", static.entryPoints["web"], reactor, self.watcher.runtime)
        self.watcher.addListener(ep.swap)
        ep.startService()
        self.addCleanup(ep.stopService)
        self.addCleanup(self.watcher.stop)
        return ep

    def backendConfig(self, port: int, rule: str = "PathPrefix(`/`)") -> dict:
        return {
            "http": {
                "routers": {"r": {"rule": rule, "service": "s"}},
                "services": {"s": {"loadBalancer": {"servers": [{"url": f"http://127.0.0.1:{port}"}]}}},
            }
        }

    @defer.inlineCallbacks
    def test_traefikAddressForms(self):
        """
        host:port, [::1]:port and a Twisted endpoint description all listen,
        and the bound port is known after start.
        """
        client = Client()
        self.addCleanup(client.close)
        for address, url in (
            ("127.0.0.1:0", "http://127.0.0.1:{port}/"),
            ("[::1]:0", "http://[::1]:{port}/"),
            ("tcp:0:interface=127.0.0.1", "http://127.0.0.1:{port}/"),
            ("localhost:0", None),
        ):
            ep = self.start(address)
            self.assertNotEqual(ep.port, 0)
            if url:
                response, body = yield client.get(url.format(port=ep.port), host="x")
                self.assertEqual((response.code, body), (404, b"404 page not found\n"))

    def test_unixSocket(self):
        """
        A unix: endpoint description listens on a unix socket.
        """
        path = os.path.join(tempdir(self), "relayd.sock")
        self.start(f"unix:{path}")
        sock = socket.socket(socket.AF_UNIX)
        self.addCleanup(sock.close)
        sock.connect(path)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")

        def read() -> bytes:
            data = b""
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    return data
                data += chunk

        return defer.Deferred.fromCoroutine(_inThread(read)).addCallback(
            lambda data: self.assertTrue(data.startswith(b"HTTP/1.1 404"), data)
        )

    def test_udpEntryPointBinds(self):
        """
        A /udp entrypoint binds a UDP port (its routing arrives with UDP routers).
        """
        (port,) = freePorts(1)
        ep = self.start(f"127.0.0.1:{port}/udp")
        self.assertEqual(ep.listeningPort.getHost().port, port)

    def test_portInUse(self):
        """
        An address already in use stops start-up with a clear error naming the
        entrypoint and address.
        """
        holder = socket.socket()
        self.addCleanup(holder.close)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        static = makeStatic(f"127.0.0.1:{port}")
        ep = EntryPointService("web", static.entryPoints["web"], reactor, Watcher(reactor, static).runtime)
        error = self.assertRaises(ListenError, ep.startService)
        self.assertIn(f"entrypoint web cannot listen on 127.0.0.1:{port}/tcp", str(error))

    @defer.inlineCallbacks
    def test_malformedRequests(self):
        """
        Malformed requests get a 400: a bad percent-escape, a fragment, an
        HTTP/1.1 request without Host.
        """
        listening, echo = startBackend("A")
        self.addCleanup(listening.stopListening)
        ep = self.start("127.0.0.1:0", self.backendConfig(listening.getHost().port))
        for request in (
            b"GET /a%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"GET /a%2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"GET /a#b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
        ):
            answer = yield rawRequest(ep.port, request)
            self.assertTrue(answer.startswith(b"HTTP/1.1 400 "), (request, answer))
            self.assertNotIn(b"Traceback", answer)
        self.assertEqual(echo.requests, [])

    @defer.inlineCallbacks
    def test_pathNormalizedBeforeRoutingAndForwarding(self):
        """
        Dot segments and duplicate slashes are cleaned and unreserved escapes
        decoded before routing, and the backend receives the clean path.
        """
        listening, echo = startBackend("A")
        self.addCleanup(listening.stopListening)
        ep = self.start("127.0.0.1:0", self.backendConfig(listening.getHost().port, "PathPrefix(`/api/~me`)"))
        answer = yield rawRequest(ep.port, b"GET //x/../api/%7Eme/a%2fb?q=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer)
        self.assertEqual(echo.requests[0]["uri"], "/api/~me/a%2Fb?q=1")

    @defer.inlineCallbacks
    def test_entryPointRedirection(self):
        """
        entryPoints.web.http.redirections.entryPoint generates a catch-all
        router that redirects to the target's scheme and port, keeping host,
        path and query, ahead of user routers.
        """
        from relayd.providers.internal import internalConfig

        config, _ = decode(
            StaticConfig,
            {"entryPoints": {"web": {"address": "127.0.0.1:0", "http": {"redirections": {"entryPoint": {"to": ":8443"}}}}}},
        )
        static = effective(config)
        from relayd.api.internal import internalServices

        watcher = Watcher(reactor, static, internal=internalServices({}), reactor=reactor)
        self.addCleanup(watcher.stop)
        watcher.update(ProviderUpdate("internal", internalConfig(static)))
        self.assertEqual(watcher.runtime.routers["web-to-8443@internal"].status, "enabled")
        ep = EntryPointService("web", static.entryPoints["web"], reactor, watcher.runtime)
        ep.startService()
        self.addCleanup(ep.stopService)
        answer = yield rawRequest(ep.port, b"GET /a/b?c=1 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 301 "), answer)
        self.assertIn(b"\r\nLocation: https://example.com:8443/a/b?c=1\r\n", answer)
        answer = yield rawRequest(ep.port, b"POST /a HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 308 "), answer)

    @defer.inlineCallbacks
    def test_absoluteFormRoutesOnTargetHost(self):
        """
        An absolute-form request target's host is the one routed on, as Go
        does, whatever the Host header says.
        """
        listening, echo = startBackend("A")
        self.addCleanup(listening.stopListening)
        ep = self.start("127.0.0.1:0", self.backendConfig(listening.getHost().port, "Host(`example.com`)"))
        answer = yield rawRequest(
            ep.port, b"GET http://example.com/x HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n"
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer)
        self.assertEqual(echo.requests[0]["uri"], "/x")

    @defer.inlineCallbacks
    def test_requestFinishesOnItsGeneration(self):
        """
        A request routed before a swap finishes on the generation it started
        with; the next request uses the new one.
        """
        slow: list[defer.Deferred[None]] = []

        class Slow:
            def handle(self, request):
                d = defer.Deferred()
                slow.append(d)
                d.addCallback(lambda _: (request.write(b"old"), request.finish()))

        ep = self.start("127.0.0.1:0")
        from relayd.runtime.routing import Route, RouteTable

        oldRuntime = self.watcher.runtime
        import attrs

        route = Route(name="old", priority=1, rule="", matcher=lambda r: True, handler=Slow())
        ep.swap(attrs.evolve(oldRuntime, routes={"web": RouteTable.build([route])}))
        client = Client()
        self.addCleanup(client.close)
        first = client.get(f"http://127.0.0.1:{ep.port}/", host="x")
        while not slow:
            yield _tick()
        ep.swap(oldRuntime)
        response, body = yield client.get(f"http://127.0.0.1:{ep.port}/", host="x")
        self.assertEqual(response.code, 404)
        slow[0].callback(None)
        response, body = yield first
        self.assertEqual((response.code, body), (200, b"old"))


def _tick() -> defer.Deferred[None]:
    from twisted.internet import task

    return task.deferLater(reactor, 0.01, lambda: None)


async def _inThread(fn):
    from twisted.internet import threads

    return await threads.deferToThread(fn)
