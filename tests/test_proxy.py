"""
End-to-end tests of the proxy's HTTP/1.1 wire behaviour: raw client bytes go
into an in-process L{EntryPointService} and out to a backend on loopback.

Most backends are small raw Twisted protocols written here (L{Backend}), so a
test controls the exact bytes and timing of every answer and sees exactly
what relayd sent upstream; L{tests.helpers.startBackend} is used where a plain
echo backend is enough. Every wait is bounded.
"""

from __future__ import annotations

import copy
import hashlib
import json
import select
import socket
from typing import Any, Callable, Sequence

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import FailTest, TestCase
from zope.interface import implementer

from relayd.config.dynamic import decodeDynamic
from relayd.config.loader import effective
from relayd.config.schema import decode
from relayd.config.static import StaticConfig
from relayd.entrypoints import EntryPointService
from relayd.providers.base import ProviderUpdate
from relayd.watcher import Watcher
from tests.helpers import freePorts, startBackend

MB = 1024 * 1024


def sleep(seconds: float) -> defer.Deferred[None]:
    """
    Fire after C{seconds}.
    """
    return task.deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def waitFor(check: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> Any:
    """
    Fire with C{check()} once it is true; fail after C{timeout} seconds, or
    as soon as C{check} raises.
    """
    deadline = reactor.seconds() + timeout
    while True:
        result = check()
        if result:
            return result
        if reactor.seconds() >= deadline:
            raise FailTest(f"condition not met within {timeout}s; last result: {result!r}")
        yield sleep(interval)


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """
    A deep merge of two configuration mappings (C{extra} wins).
    """
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def headerValues(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """
    The values of the field C{name} in a list of (lower-case name, value).
    """
    name = name.lower()
    return [value for key, value in headers if key == name]


def decodeChunked(data: bytes, position: int) -> tuple[bytes, list[tuple[bytes, bytes]], int] | None:
    """
    Decode a chunked body starting at C{position}: (payload, trailers, end),
    or C{None} if it is not complete yet.
    """
    parts = []
    while True:
        lineEnd = data.find(b"\r\n", position)
        if lineEnd < 0:
            return None
        size = int(data[position:lineEnd].split(b";")[0].strip(), 16)
        position = lineEnd + 2
        if size == 0:
            break
        if len(data) < position + size + 2:
            return None
        parts.append(data[position : position + size])
        if data[position + size : position + size + 2] != b"\r\n":
            raise ValueError(f"missing CRLF after chunk at {position + size}")
        position += size + 2
    trailers = []
    if data.startswith(b"\r\n", position):
        return b"".join(parts), trailers, position + 2
    end = data.find(b"\r\n\r\n", position)
    if end < 0:
        return None
    for line in data[position:end].split(b"\r\n"):
        name, _, value = line.partition(b":")
        trailers.append((name.strip().lower(), value.strip()))
    return b"".join(parts), trailers, end + 4


# -- the client side ---------------------------------------------------------------------------


class Response:
    """
    One response as the client received it.
    """

    def __init__(self, status: bytes, headers: list[tuple[bytes, bytes]], body: bytes, trailers: list[tuple[bytes, bytes]], head: bytes, chunked: bool) -> None:
        self.status = status
        version, _, rest = status.partition(b" ")
        self.version = version
        self.code = int(rest[:3])
        self.headers = headers
        self.body = body
        self.trailers = trailers
        self.head = head
        self.chunked = chunked

    def __repr__(self) -> str:
        return f"<Response {self.head!r} body={self.body[:200]!r} trailers={self.trailers!r}>"

    def header(self, name: bytes) -> list[bytes]:
        """
        The values of the field C{name} (lower-case).
        """
        return headerValues(self.headers, name)


def parseResponses(data: bytes, closed: bool, methods: Sequence[bytes] = ()) -> list[Response]:
    """
    The complete responses in C{data}, interim (1xx) ones included;
    C{methods[i]} is the method of the i-th request (GET when not given), for
    HEAD responses that have no body. A close-delimited body counts as complete
    once C{closed}.
    """
    responses: list[Response] = []
    position = 0
    final = 0
    while position < len(data):
        end = data.find(b"\r\n\r\n", position)
        if end < 0:
            break
        head = data[position:end]
        lines = head.split(b"\r\n")
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.strip().lower(), value.strip()))
        start = end + 4
        response = Response(lines[0], headers, b"", [], head, False)
        if response.code < 200:
            responses.append(response)
            position = start
            continue
        method = methods[final] if final < len(methods) else b"GET"
        final += 1
        if method == b"HEAD" or response.code in (204, 304):
            responses.append(response)
            position = start
            continue
        encodings = b",".join(response.header(b"transfer-encoding")).lower()
        lengths = response.header(b"content-length")
        if b"chunked" in encodings:
            decoded = decodeChunked(data, start)
            if decoded is None:
                break
            response.body, response.trailers, position = decoded
            response.chunked = True
        elif lengths:
            length = int(lengths[0])
            if len(data) < start + length:
                break
            response.body = data[start : start + length]
            position = start + length
        else:
            if not closed:
                break
            response.body = data[start:]
            position = len(data)
        responses.append(response)
    return responses


class RawClient(Protocol):
    """
    A client connection that records every byte it receives and when it was
    closed.
    """

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False
        self.closedAt: float | None = None
        self.connectedAt = 0.0

    def connectionMade(self) -> None:
        self.connectedAt = reactor.seconds()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Any) -> None:
        self.closed = True
        self.closedAt = reactor.seconds()

    @property
    def received(self) -> bytes:
        """
        Everything received so far.
        """
        return bytes(self.data)

    def send(self, data: bytes) -> None:
        """
        Write C{data} to relayd.
        """
        self.transport.write(data)

    def responses(self, methods: Sequence[bytes] = ()) -> list[Response]:
        """
        The complete responses received, interim ones included.
        """
        return parseResponses(self.received, self.closed, methods)

    def finalResponses(self, methods: Sequence[bytes] = ()) -> list[Response]:
        """
        The complete final (non-1xx) responses received.
        """
        return [r for r in self.responses(methods) if r.code >= 200]

    def waitResponses(self, count: int, methods: Sequence[bytes] = (), timeout: float = 5.0) -> defer.Deferred[list[Response]]:
        """
        Fire with the final responses once C{count} of them are complete.
        """

        def check() -> Any:
            responses = self.finalResponses(methods)
            if len(responses) >= count:
                return responses
            if self.closed:
                raise FailTest(f"connection closed after {len(responses)} response(s): {self.received!r}")
            return None

        return waitFor(check, timeout).addErrback(self._explain)

    def waitClosed(self, timeout: float = 5.0) -> defer.Deferred[Any]:
        """
        Fire once the connection is closed; fail after C{timeout} seconds.
        """
        return waitFor(lambda: self.closed, timeout).addErrback(self._explain)

    def _explain(self, failure: Any) -> Any:
        """
        Add what was received to a failed wait.
        """
        raise FailTest(f"{failure.getErrorMessage()}; received so far: {self.received[:2000]!r}")


# -- the backend side --------------------------------------------------------------------------


class BackendRequest:
    """
    A request as a backend received it.
    """

    def __init__(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        self.head = head
        self.requestLine = lines[0]
        self.method, self.target, self.version = lines[0].split(b" ", 2)
        self.lines = lines[1:]
        self.headers: list[tuple[bytes, bytes]] = []
        for line in self.lines:
            name, _, value = line.partition(b":")
            self.headers.append((name.strip().lower(), value.strip()))
        self.parts: list[bytes] = []
        self.body = b""
        self.trailers: list[tuple[bytes, bytes]] = []
        self.chunked = False
        self.complete = False

    def __repr__(self) -> str:
        return f"<BackendRequest {self.head!r} body={self.body[:200]!r}>"

    def header(self, name: bytes) -> list[bytes]:
        """
        The values of the field C{name} (lower-case).
        """
        return headerValues(self.headers, name)

    def names(self) -> set[bytes]:
        """
        The lower-case names of the fields received.
        """
        return {name for name, _ in self.headers}


class BackendConnection(Protocol):
    """
    One connection to a L{Backend}: parses the requests relayd sends (heads,
    Content-Length and chunked bodies) and lets the backend's callbacks answer.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.raw = bytearray()
        self.buffer = b""
        self.requests: list[BackendRequest] = []
        self.current: BackendRequest | None = None
        self.remaining = 0
        self.ignoreRest = False
        self.closed = False
        self.closedAt: float | None = None

    def connectionMade(self) -> None:
        self.backend.connections.append(self)
        self.backend.onConnect(self)

    def connectionLost(self, reason: Any) -> None:
        self.closed = True
        self.closedAt = reactor.seconds()

    def dataReceived(self, data: bytes) -> None:
        self.raw += data
        if self.ignoreRest:
            return
        self.buffer += data
        self._parse()

    def _parse(self) -> None:
        """
        Parse as many requests (or as much of one) as have arrived.
        """
        while not self.ignoreRest:
            request = self.current
            if request is None:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                request = self.current = BackendRequest(self.buffer[:end])
                self.buffer = self.buffer[end + 4 :]
                self.requests.append(request)
                if self.backend.onHead(self, request):
                    # Answered from the head alone: whatever follows is only recorded.
                    self.ignoreRest = True
                    return
                if b"chunked" in b",".join(request.header(b"transfer-encoding")).lower():
                    request.chunked = True
                else:
                    lengths = request.header(b"content-length")
                    self.remaining = int(lengths[0]) if lengths else 0
            if request.chunked:
                decoded = decodeChunked(self.buffer, 0)
                if decoded is None:
                    return
                request.body, request.trailers, end = decoded
                self.buffer = self.buffer[end:]
            else:
                take = min(self.remaining, len(self.buffer))
                if take:
                    request.parts.append(self.buffer[:take])
                    self.buffer = self.buffer[take:]
                    self.remaining -= take
                if self.remaining:
                    return
                request.body = b"".join(request.parts)
                request.parts = []
            request.complete = True
            self.current = None
            self.backend.onRequest(self, request)
            if not self.buffer:
                return

    def later(self, delay: float, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """
        Call C{f} after C{delay} seconds unless the backend is stopped first.
        """
        self.backend.calls.append(reactor.callLater(delay, f, *args, **kwargs))

    def respond(self, code: int = 200, reason: bytes = b"OK", headers: Sequence[tuple[bytes, bytes]] = (), body: bytes = b"", length: bool = True) -> None:
        """
        Write a response with a Content-Length (unless C{length} is false).
        """
        out = [b"HTTP/1.1 %d %s\r\n" % (code, reason)]
        for name, value in headers:
            out.append(name + b": " + value + b"\r\n")
        if length:
            out.append(b"Content-Length: %d\r\n" % len(body))
        out.append(b"\r\n")
        out.append(body)
        self.transport.write(b"".join(out))


def _answerOK(connection: BackendConnection, request: BackendRequest) -> None:
    """
    The default answer: 200 with the body C{ok}.
    """
    connection.respond(body=b"ok")


class _BackendFactory(Factory):
    """
    Makes the connections of one L{Backend}.
    """

    noisy = False

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def buildProtocol(self, addr: Any) -> BackendConnection:
        connection = BackendConnection(self.backend)
        connection.factory = self
        return connection


class Backend:
    """
    A raw HTTP backend on 127.0.0.1. C{onHead(connection, request)} is called
    when a request head arrives (return true to stop reading that connection's
    requests), C{onRequest(connection, request)} when the whole request is in
    (by default: 200 "ok"), C{onConnect(connection)} for each new connection.
    """

    def __init__(
        self,
        test: TestCase,
        onRequest: Callable[[BackendConnection, BackendRequest], None] = _answerOK,
        onHead: Callable[[BackendConnection, BackendRequest], Any] = lambda connection, request: None,
        onConnect: Callable[[BackendConnection], None] = lambda connection: None,
    ) -> None:
        self.onRequest = onRequest
        self.onHead = onHead
        self.onConnect = onConnect
        self.connections: list[BackendConnection] = []
        self.calls: list[Any] = []
        self.port = reactor.listenTCP(0, _BackendFactory(self), interface="127.0.0.1")
        test.addCleanup(self.stop)

    @property
    def url(self) -> str:
        """
        The backend's URL for a load balancer's servers.
        """
        return f"http://127.0.0.1:{self.port.getHost().port}"

    @property
    def requests(self) -> list[BackendRequest]:
        """
        Every request received, on every connection, in order.
        """
        return [request for connection in self.connections for request in connection.requests]

    @property
    def raw(self) -> bytes:
        """
        Every byte received, connection after connection.
        """
        return b"".join(bytes(connection.raw) for connection in self.connections)

    def closedCount(self) -> int:
        """
        How many connections to the backend have been closed.
        """
        return sum(1 for connection in self.connections if connection.closed)

    @defer.inlineCallbacks
    def stop(self) -> Any:
        """
        Stop listening and close every connection.
        """
        for call in self.calls:
            if call.active():
                call.cancel()
        yield self.port.stopListening()
        for connection in self.connections:
            if not connection.closed:
                connection.transport.abortConnection()
        yield waitFor(lambda: all(c.closed for c in self.connections), 5)


# -- the proxy ---------------------------------------------------------------------------------

_STATIC = {
    "entryPoints": {
        "web": {
            "address": "127.0.0.1:0",
            "transport": {"lifeCycle": {"graceTimeOut": "1s"}},
        }
    }
}


def routeTo(*urls: str, **loadBalancer: Any) -> dict[str, Any]:
    """
    A dynamic configuration sending every request to C{urls}.
    """
    lb = {"servers": [{"url": url} for url in urls]}
    lb.update(loadBalancer)
    return {
        "http": {
            "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "s"}},
            "services": {"s": {"loadBalancer": lb}},
        }
    }


class ProxyTestCase(TestCase):
    """
    Starts relayd's C{web} entrypoint in-process and clients against it.
    """

    timeout = 30

    def startProxy(self, dynamic: dict[str, Any], entryPoint: dict[str, Any] | None = None, static: dict[str, Any] | None = None) -> EntryPointService:
        """
        Start the C{web} entrypoint on 127.0.0.1 serving C{dynamic}, with
        C{entryPoint} merged into its static configuration and C{static}
        into the whole static configuration. The watcher is C{self.watcher}.
        """
        raw = merge(_STATIC, static or {})
        raw["entryPoints"]["web"] = merge(raw["entryPoints"]["web"], entryPoint or {})
        config, warnings = decode(StaticConfig, raw)
        self.assertEqual(warnings, [])
        staticConfig = effective(config)
        watcher = Watcher(reactor, staticConfig, reactor=reactor)
        self.addCleanup(watcher.stop)
        watcher.update(ProviderUpdate("file", decodeDynamic(dynamic)))
        self.assertIsNone(watcher.lastError)
        ep = EntryPointService("web", staticConfig.entryPoints["web"], reactor, watcher.runtime)
        watcher.addListener(ep.swap)
        ep.startService()
        self.addCleanup(ep.stopService)
        self.watcher = watcher
        return ep

    @property
    def pool(self) -> Any:
        """
        The upstream connection pool of the forwarder this test's watcher built.
        """
        return self.watcher.shared["forwarder"].pool

    @defer.inlineCallbacks
    def connect(self, ep: EntryPointService, protocol: type[Protocol] = RawClient) -> Any:
        """
        A connected client (closed at cleanup, before the proxy stops).
        """
        factory = Factory.forProtocol(protocol)
        factory.noisy = False
        client = yield TCP4ClientEndpoint(reactor, "127.0.0.1", ep.port, timeout=5).connect(factory)

        def close() -> Any:
            if not client.closed:
                client.transport.abortConnection()
            return waitFor(lambda: client.closed, 5)

        self.addCleanup(close)
        return client

    @defer.inlineCallbacks
    def exchange(self, ep: EntryPointService, request: bytes, methods: Sequence[bytes] = ()) -> Any:
        """
        Send C{request} on a new connection; fire with the client once one
        final response is complete.
        """
        client = yield self.connect(ep)
        client.send(request)
        yield client.waitResponses(1, methods)
        return client

    def assertNoTraceback(self, data: bytes) -> None:
        """
        C{data} shows no Python traceback or exception.
        """
        for marker in (b"Traceback", b"File \"", b"Error:"):
            self.assertNotIn(marker, data, repr(data))


# -- 1. hop-by-hop headers ---------------------------------------------------------------------


class HopByHopTests(ProxyTestCase):
    """
    Hop-by-hop fields are dropped in both directions.
    """
    @defer.inlineCallbacks
    def test_requestHopByHopHeadersRemoved(self):
        """
        Connection and the names it lists, Keep-Alive, TE, Trailer,
        Transfer-Encoding, Upgrade, Proxy-Connection, Proxy-Authenticate and
        Proxy-Authorization sent by the client do not reach the backend;
        C{TE: trailers} arrives as C{Te: trailers}; the chunked body is
        re-framed by relayd with its own single Transfer-Encoding; end-to-end
        fields pass.
        """
        backend = Backend(self)
        ep = self.startProxy(routeTo(backend.url))
        yield self.exchange(
            ep,
            b"POST /hop HTTP/1.1\r\n"
            b"Host: app.test\r\n"
            b"Connection: keep-alive, X-Custom-Hop\r\n"
            b"X-Custom-Hop: secret\r\n"
            b"Keep-Alive: timeout=5\r\n"
            b"TE: trailers\r\n"
            b"Trailer: X-Trail\r\n"
            b"Transfer-Encoding: chunked\r\n"
            b"Upgrade: websocket\r\n"
            b"Proxy-Connection: keep-alive\r\n"
            b"Proxy-Authenticate: Basic realm=\"x\"\r\n"
            b"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"
            b"X-End-To-End: kept\r\n"
            b"\r\n"
            b"5\r\nhello\r\n0\r\nX-Trail: t\r\n\r\n",
        )
        (request,) = backend.requests
        names = request.names()
        for name in (
            b"connection",
            b"x-custom-hop",
            b"keep-alive",
            b"trailer",
            b"upgrade",
            b"proxy-connection",
            b"proxy-authenticate",
            b"proxy-authorization",
        ):
            self.assertNotIn(name, names, repr(request.head))
        self.assertIn(b"Te: trailers", request.lines)
        self.assertEqual(request.header(b"te"), [b"trailers"])
        self.assertEqual(request.header(b"transfer-encoding"), [b"chunked"])
        self.assertEqual(request.header(b"x-end-to-end"), [b"kept"])
        self.assertEqual(request.body, b"hello")

        client = yield self.exchange(ep, b"GET /te HTTP/1.1\r\nHost: app.test\r\nTE: gzip, deflate\r\n\r\n")
        self.assertEqual(client.finalResponses()[0].code, 200)
        self.assertNotIn(b"te", backend.requests[-1].names(), repr(backend.requests[-1].head))

    @defer.inlineCallbacks
    def test_responseHopByHopHeadersRemoved(self):
        """
        Connection and the names it lists, Keep-Alive, TE, Upgrade,
        Proxy-Connection, Proxy-Authenticate and Proxy-Authorization in a
        backend's response do not reach the client; three Set-Cookie fields
        reach it in their order.
        """

        def answer(connection: BackendConnection, request: BackendRequest) -> None:
            connection.respond(
                headers=[
                    (b"Connection", b"X-Resp-Hop"),
                    (b"X-Resp-Hop", b"1"),
                    (b"Keep-Alive", b"timeout=5, max=100"),
                    (b"Proxy-Connection", b"keep-alive"),
                    (b"Proxy-Authenticate", b"Basic realm=\"x\""),
                    (b"Proxy-Authorization", b"Basic Zm9v"),
                    (b"TE", b"trailers"),
                    (b"Upgrade", b"websocket"),
                    (b"Set-Cookie", b"a=1"),
                    (b"X-Middle", b"m"),
                    (b"Set-Cookie", b"b=2"),
                    (b"Set-Cookie", b"c=3"),
                    (b"X-End-To-End", b"kept"),
                ],
                body=b"ok",
            )

        backend = Backend(self, onRequest=answer)
        ep = self.startProxy(routeTo(backend.url))
        client = yield self.exchange(ep, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        (response,) = client.finalResponses()
        self.assertEqual((response.code, response.body), (200, b"ok"))
        names = {name for name, _ in response.headers}
        for name in (
            b"connection",
            b"x-resp-hop",
            b"keep-alive",
            b"proxy-connection",
            b"proxy-authenticate",
            b"proxy-authorization",
            b"te",
            b"upgrade",
        ):
            self.assertNotIn(name, names, repr(response.head))
        self.assertEqual(response.header(b"set-cookie"), [b"a=1", b"b=2", b"c=3"])
        self.assertEqual(response.header(b"x-end-to-end"), [b"kept"])
        self.assertEqual(response.header(b"x-middle"), [b"m"])

    @defer.inlineCallbacks
    def test_responseTrailerFieldWithoutChunkedBodyRemoved(self):
        """
        A backend's C{Trailer} field on a Content-Length response (which
        cannot carry trailers) is hop-by-hop and does not reach the client, as
        with Go's reverse proxy.
        """

        def answer(connection: BackendConnection, request: BackendRequest) -> None:
            connection.respond(headers=[(b"Trailer", b"X-Sum")], body=b"ok")

        backend = Backend(self, onRequest=answer)
        ep = self.startProxy(routeTo(backend.url))
        client = yield self.exchange(ep, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        (response,) = client.finalResponses()
        self.assertEqual((response.code, response.body), (200, b"ok"))
        self.assertEqual(response.header(b"trailer"), [], repr(response.head))


# -- 2. forwarded headers and Host -------------------------------------------------------------


class ForwardedHeadersTests(ProxyTestCase):
    """
    X-Forwarded-* and X-Real-Ip as the backend sees them, and passHostHeader.
    """
    @defer.inlineCallbacks
    def seen(self, entryPoint: dict[str, Any], request: bytes) -> Any:
        """
        The headers an echo backend received for C{request}, sent through an
        entrypoint configured with C{entryPoint}.
        """
        listening, echo = startBackend("A")
        self.addCleanup(listening.stopListening)
        ep = self.startProxy(routeTo(f"http://127.0.0.1:{listening.getHost().port}"), entryPoint)
        client = yield self.exchange(ep, request)
        (response,) = client.finalResponses()
        self.assertEqual(response.code, 200, repr(response))
        return json.loads(response.body)["headers"]

    @defer.inlineCallbacks
    def test_trustedPeerAppendsXForwardedFor(self):
        """
        From a peer in forwardedHeaders.trustedIPs, the client's
        X-Forwarded-For is kept with the peer appended, and its
        X-Forwarded-Host kept; X-Forwarded-Proto, -Port, -Server and
        X-Real-Ip are filled in.
        """
        headers = yield self.seen(
            {"forwardedHeaders": {"trustedIPs": ["127.0.0.1"]}},
            b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: 203.0.113.7\r\n"
            b"X-Forwarded-Host: orig.example\r\n\r\n",
        )
        self.assertEqual(headers["x-forwarded-for"], ["203.0.113.7, 127.0.0.1"])
        self.assertEqual(headers["x-forwarded-host"], ["orig.example"])
        self.assertEqual(headers["x-forwarded-proto"], ["http"])
        self.assertEqual(headers["x-forwarded-port"], ["80"])
        self.assertEqual(headers["x-forwarded-server"], [socket.gethostname()])
        self.assertEqual(headers["x-real-ip"], ["127.0.0.1"])

    @defer.inlineCallbacks
    def test_untrustedPeerReplacesXForwardedFor(self):
        """
        From a peer that is not trusted, the client's X-Forwarded-* and
        X-Real-Ip are replaced: X-Forwarded-For is the peer alone,
        X-Forwarded-Host the Host, X-Forwarded-Port the Host's port.
        """
        headers = yield self.seen(
            {},
            b"GET / HTTP/1.1\r\nHost: app.test:8123\r\nX-Forwarded-For: 203.0.113.7\r\n"
            b"X-Forwarded-Host: orig.example\r\nX-Forwarded-Proto: https\r\nX-Real-Ip: 203.0.113.9\r\n\r\n",
        )
        self.assertEqual(headers["x-forwarded-for"], ["127.0.0.1"])
        self.assertEqual(headers["x-forwarded-host"], ["app.test:8123"])
        self.assertEqual(headers["x-forwarded-proto"], ["http"])
        self.assertEqual(headers["x-forwarded-port"], ["8123"])
        self.assertEqual(headers["x-forwarded-server"], [socket.gethostname()])
        self.assertEqual(headers["x-real-ip"], ["127.0.0.1"])

    @defer.inlineCallbacks
    def test_passHostHeader(self):
        """
        passHostHeader true (the default) sends the client's Host upstream;
        false sends the server URL's host:port.
        """
        listening, echo = startBackend("A")
        self.addCleanup(listening.stopListening)
        url = f"http://127.0.0.1:{listening.getHost().port}"
        ep = self.startProxy(
            {
                "http": {
                    "routers": {
                        "pass": {"rule": "PathPrefix(`/pass`)", "service": "pass"},
                        "nopass": {"rule": "PathPrefix(`/nopass`)", "service": "nopass"},
                    },
                    "services": {
                        "pass": {"loadBalancer": {"servers": [{"url": url}]}},
                        "nopass": {"loadBalancer": {"servers": [{"url": url}], "passHostHeader": False}},
                    },
                }
            }
        )
        yield self.exchange(ep, b"GET /pass HTTP/1.1\r\nHost: app.test\r\n\r\n")
        yield self.exchange(ep, b"GET /nopass HTTP/1.1\r\nHost: app.test\r\n\r\n")
        self.assertEqual([r["headers"]["host"] for r in echo.requests], [["app.test"], [f"127.0.0.1:{listening.getHost().port}"]])


# -- 3. bodies and framing ---------------------------------------------------------------------

_LENGTH_BODY = b"0123456789" * 1000
_CHUNKS = [b"first chunk;", b"second chunk;" * 100, b"third"]


def _framings(connection: BackendConnection, request: BackendRequest) -> None:
    """
    Answers by path: /length with a Content-Length, /chunked chunked with a
    trailer, /close delimited by closing the connection.
    """
    if request.target == b"/length":
        connection.respond(body=_LENGTH_BODY)
    elif request.target == b"/chunked":
        out = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"]
        for piece in _CHUNKS:
            out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
        out.append(b"0\r\nX-Sum: 42\r\n\r\n")
        connection.transport.write(b"".join(out))
    elif request.target == b"/close":
        connection.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + _LENGTH_BODY)
        connection.transport.loseConnection()
    else:
        connection.respond(code=404, reason=b"Not Found")


class BodyTests(ProxyTestCase):
    """
    Request and response bodies in every framing arrive intact.
    """
    @defer.inlineCallbacks
    def test_contentLengthRequestBody(self):
        """
        A Content-Length request body arrives intact, with the same
        Content-Length and no Transfer-Encoding.
        """
        backend = Backend(self)
        ep = self.startProxy(routeTo(backend.url))
        body = bytes(range(256)) * 40
        yield self.exchange(ep, b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        (request,) = backend.requests
        self.assertEqual(request.body, body)
        self.assertEqual(request.header(b"content-length"), [b"%d" % len(body)])
        self.assertEqual(request.header(b"transfer-encoding"), [])

    @defer.inlineCallbacks
    def test_chunkedRequestBodyWithTrailer(self):
        """
        A chunked request body with a trailer is forwarded chunked: the
        backend decodes the same payload and gets the trailer field.
        """
        backend = Backend(self)
        ep = self.startProxy(routeTo(backend.url))
        yield self.exchange(
            ep,
            b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Trail\r\n\r\n"
            b"6\r\nhello \r\n5;ext=1\r\nworld\r\n0\r\nX-Trail: yes\r\n\r\n",
        )
        (request,) = backend.requests
        self.assertTrue(request.chunked, repr(request.head))
        self.assertEqual(request.header(b"content-length"), [])
        self.assertEqual(request.body, b"hello world")
        self.assertEqual(request.trailers, [(b"x-trail", b"yes")])

    @defer.inlineCallbacks
    def test_responseFramingsForHTTP11Client(self):
        """
        An HTTP/1.1 client gets a Content-Length response with its length, a
        chunked response chunked with its trailers, and a close-delimited
        response complete (re-framed chunked), all on one connection.
        """
        backend = Backend(self, onRequest=_framings)
        ep = self.startProxy(routeTo(backend.url))
        client = yield self.connect(ep)
        client.send(b"GET /length HTTP/1.1\r\nHost: x\r\n\r\n")
        yield client.waitResponses(1)
        client.send(b"GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n")
        yield client.waitResponses(2)
        client.send(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n")
        length, chunked, closeDelimited = yield client.waitResponses(3)
        self.assertEqual(length.header(b"content-length"), [b"%d" % len(_LENGTH_BODY)])
        self.assertEqual(length.body, _LENGTH_BODY)
        self.assertTrue(chunked.chunked, repr(chunked))
        self.assertEqual(chunked.header(b"transfer-encoding"), [b"chunked"])
        self.assertEqual(chunked.body, b"".join(_CHUNKS))
        self.assertEqual(chunked.trailers, [(b"x-sum", b"42")])
        self.assertEqual(closeDelimited.code, 200)
        self.assertEqual(closeDelimited.body, _LENGTH_BODY)
        self.assertFalse(client.closed)

    @defer.inlineCallbacks
    def test_http10Client(self):
        """
        An HTTP/1.0 client gets a chunked upstream response close-delimited
        (no Transfer-Encoding) and a Content-Length one length-framed; relayd
        closes the connection after each.
        """
        backend = Backend(self, onRequest=_framings)
        ep = self.startProxy(routeTo(backend.url))
        client = yield self.connect(ep)
        client.send(b"GET /chunked HTTP/1.0\r\nHost: x\r\n\r\n")
        yield client.waitClosed()
        (response,) = client.finalResponses()
        self.assertEqual(response.status[:12], b"HTTP/1.1 200")
        self.assertEqual(response.header(b"transfer-encoding"), [])
        self.assertEqual(response.body, b"".join(_CHUNKS))

        client = yield self.connect(ep)
        client.send(b"GET /length HTTP/1.0\r\nHost: x\r\n\r\n")
        yield client.waitClosed()
        (response,) = client.finalResponses()
        self.assertEqual(response.header(b"content-length"), [b"%d" % len(_LENGTH_BODY)])
        self.assertEqual(response.body, _LENGTH_BODY)
        self.assertEqual(client.received[-len(_LENGTH_BODY) :], _LENGTH_BODY)


# -- 4. HEAD -----------------------------------------------------------------------------------


class HeadTests(ProxyTestCase):
    """
    Responses to HEAD.
    """
    @defer.inlineCallbacks
    def test_headResponseHasNoBody(self):
        """
        A backend answers HEAD with Content-Length: 1000 and no body: the
        client gets the Content-Length and no body, and a GET on the same
        connection then gets its own response.
        """

        def answer(connection: BackendConnection, request: BackendRequest) -> None:
            if request.method == b"HEAD":
                connection.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            else:
                connection.respond(body=b"got it")

        backend = Backend(self, onRequest=answer)
        ep = self.startProxy(routeTo(backend.url))
        client = yield self.connect(ep)
        client.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        (head,) = yield client.waitResponses(1, [b"HEAD"])
        self.assertEqual(head.header(b"content-length"), [b"1000"])
        yield sleep(0.1)
        self.assertTrue(client.received.endswith(b"\r\n\r\n"), repr(client.received))
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head, get = yield client.waitResponses(2, [b"HEAD", b"GET"])
        self.assertEqual((get.code, get.body), (200, b"got it"))
        self.assertEqual([r.method for r in backend.requests], [b"HEAD", b"GET"])


# -- 5. Expect: 100-continue -------------------------------------------------------------------


def _continueFirst(connection: BackendConnection, request: BackendRequest) -> None:
    """
    Ask for the body with a 100 Continue, 0.3 s after the head, when the
    request expects one.
    """
    if request.header(b"expect"):
        connection.later(0.3, connection.transport.write, b"HTTP/1.1 100 Continue\r\n\r\n")


def _echoBody(connection: BackendConnection, request: BackendRequest) -> None:
    """
    Answer with the request body received.
    """
    connection.respond(body=b"received " + request.body)


class ExpectContinueTests(ProxyTestCase):
    """
    C{Expect: 100-continue} between client, relayd and backend.
    """
    @defer.inlineCallbacks
    def expectContinue(self, backend: Backend, within: tuple[float, float]) -> Any:
        """
        A request with C{Expect: 100-continue} to C{backend}: the client gets
        C{100 Continue} alone, C{within} (min, max) seconds, then sends the body,
        which the backend gets.
        """
        ep = self.startProxy(routeTo(backend.url))
        client = yield self.connect(ep)
        start = reactor.seconds()
        client.send(b"POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        yield waitFor(lambda: b"\r\n\r\n" in client.received, 3).addErrback(client._explain)
        elapsed = reactor.seconds() - start
        self.assertEqual(client.received, b"HTTP/1.1 100 Continue\r\n\r\n")
        self.assertTrue(within[0] <= elapsed <= within[1], f"100 Continue after {elapsed:.2f}s, expected {within}")
        self.assertEqual([r.body for r in backend.requests], [b""])
        client.send(b"hello")
        responses = yield client.waitResponses(1)
        self.assertEqual((responses[0].code, responses[0].body), (200, b"received hello"))
        self.assertEqual([r.body for r in backend.requests], [b"hello"])
        self.assertEqual(backend.requests[0].header(b"expect"), [b"100-continue"])

    def test_continueRelayedWhenBackendAsks(self):
        """
        The client gets C{100 Continue} when the backend sends its own, 0.3 s
        after the head (not at once, and well before relayd's 1 s timeout),
        then sends the body, which the backend gets.
        """
        return self.expectContinue(Backend(self, onHead=_continueFirst, onRequest=_echoBody), (0.25, 0.8))

    def test_continueSentAfterOneSecond(self):
        """
        When the backend sends no 100, relayd sends C{100 Continue} to the
        client after 1 s and streams the body the client then sends.
        """
        return self.expectContinue(Backend(self, onRequest=_echoBody), (0.9, 2.0))

    @defer.inlineCallbacks
    def test_finalAnswerWithoutContinue(self):
        """
        A backend answering 417 or 401 at once, without a 100: the client gets
        that status and no 100 Continue, and the body is never forwarded.
        """
        for code, reason in ((417, b"Expectation Failed"), (401, b"Unauthorized")):

            def answer(connection: BackendConnection, request: BackendRequest, code: int = code, reason: bytes = reason) -> bool:
                connection.respond(code=code, reason=reason, body=b"no")
                return True

            backend = Backend(self, onHead=answer)
            ep = self.startProxy(routeTo(backend.url))
            client = yield self.connect(ep)
            client.send(b"PUT /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n")
            (response,) = yield client.waitResponses(1)
            self.assertEqual((response.code, response.body), (code, b"no"))
            self.assertNotIn(b" 100 ", client.received)
            if not client.closed:
                client.send(b"SECRET-BODY")
            yield sleep(0.2)
            self.assertEqual(len(backend.requests), 1)
            self.assertNotIn(b"SECRET-BODY", backend.raw)


# -- 6. interim responses ----------------------------------------------------------------------


class InterimTests(ProxyTestCase):
    """
    1xx interim responses reach the client.
    """
    @defer.inlineCallbacks
    def test_earlyHints(self):
        """
        A backend's C{103 Early Hints} with a Link field reaches the client
        before the final 200.
        """

        def answer(connection: BackendConnection, request: BackendRequest) -> None:
            connection.transport.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n")
            connection.later(0.1, connection.respond, body=b"page")

        backend = Backend(self, onRequest=answer)
        ep = self.startProxy(routeTo(backend.url))
        client = yield self.exchange(ep, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        hints, final = client.responses()
        self.assertEqual(hints.code, 103)
        self.assertEqual(hints.header(b"link"), [b"</style.css>; rel=preload; as=style"])
        self.assertEqual((final.code, final.body), (200, b"page"))


# -- 7. keep-alive and pooling -----------------------------------------------------------------


def _holdUntil(count: int, held: list[tuple[BackendConnection, BackendRequest]]) -> Callable[[BackendConnection, BackendRequest], None]:
    """
    An onRequest that answers nothing until C{count} requests are waiting,
    then answers them all.
    """

    def onRequest(connection: BackendConnection, request: BackendRequest) -> None:
        held.append((connection, request))
        if len(held) >= count:
            for c, _ in held:
                c.respond(body=b"ok")
            del held[:]

    return onRequest


class PoolingTests(ProxyTestCase):
    """
    Keep-alive upstream connections and the pool's limits.
    """
    @defer.inlineCallbacks
    def test_sequentialRequestsReuseOneConnection(self):
        """
        20 sequential requests over one client connection are relayed over one
        upstream connection.
        """
        backend = Backend(self, onRequest=lambda c, r: c.respond(body=r.target))
        ep = self.startProxy(routeTo(backend.url))
        client = yield self.connect(ep)
        for i in range(20):
            client.send(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            yield client.waitResponses(i + 1)
        self.assertEqual([r.body for r in client.finalResponses()], [b"/%d" % i for i in range(20)])
        self.assertEqual(len(backend.connections), 1)
        self.assertEqual(len(backend.requests), 20)
        self.assertEqual(self.pool.idleCount(), 1)

    @defer.inlineCallbacks
    def maxIdle(self, backend: Backend, held: list[Any], ep: EntryPointService) -> Any:
        """
        Five concurrent clients through C{ep} to C{backend} (which answers once all
        five requests are in): five upstream connections, at most one kept idle.
        """
        clients = []
        for _ in range(5):
            client = yield self.connect(ep)
            client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            clients.append(client)
        for client in clients:
            (response,) = yield client.waitResponses(1)
            self.assertEqual(response.code, 200)
        self.assertEqual(len(backend.connections), 5)
        self.assertLessEqual(self.pool.idleCount(), 1)
        yield waitFor(lambda: backend.closedCount() >= 4, 2)

    def test_maxIdleConnsPerHostStatic(self):
        """
        With the static serversTransport.maxIdleConnsPerHost = 1, five
        concurrent requests open five upstream connections and afterwards at
        most one is kept idle; the backend sees the others closed.
        """
        held: list[Any] = []
        backend = Backend(self, onRequest=_holdUntil(5, held))
        ep = self.startProxy(routeTo(backend.url), static={"serversTransport": {"maxIdleConnsPerHost": 1}})
        return self.maxIdle(backend, held, ep)

    def test_maxIdleConnsPerHostDynamic(self):
        """
        The same limit from a dynamic http.serversTransports entry named by
        the load balancer's serversTransport.
        """
        held: list[Any] = []
        backend = Backend(self, onRequest=_holdUntil(5, held))
        dynamic = routeTo(backend.url, serversTransport="tight")
        dynamic["http"]["serversTransports"] = {"tight": {"maxIdleConnsPerHost": 1}}
        ep = self.startProxy(dynamic)
        return self.maxIdle(backend, held, ep)

    @defer.inlineCallbacks
    def test_idleConnTimeout(self):
        """
        With idleConnTimeout = 0.3s, an idle upstream connection is closed
        (the backend sees the close) about 0.3 s after its response, not
        before.
        """
        backend = Backend(self)
        ep = self.startProxy(
            routeTo(backend.url), static={"serversTransport": {"forwardingTimeouts": {"idleConnTimeout": "0.3s"}}}
        )
        yield self.exchange(ep, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answered = reactor.seconds()
        (connection,) = backend.connections
        yield sleep(0.15)
        self.assertFalse(connection.closed)
        self.assertEqual(self.pool.idleCount(), 1)
        yield waitFor(lambda: connection.closed, 2)
        elapsed = connection.closedAt - answered
        self.assertTrue(0.25 <= elapsed <= 1.0, f"closed after {elapsed:.2f}s")
        self.assertEqual(self.pool.idleCount(), 0)


# -- 8. pipelining -----------------------------------------------------------------------------


class PipeliningTests(ProxyTestCase):
    """
    Pipelined requests.
    """
    @defer.inlineCallbacks
    def test_pipelinedRequestsAnsweredInOrder(self):
        """
        Two requests sent in one write get two responses in order, even when
        the first is answered more slowly.
        """

        def answer(connection: BackendConnection, request: BackendRequest) -> None:
            delay = 0.2 if request.target == b"/one" else 0.0
            connection.later(delay, connection.respond, body=request.target)

        backend = Backend(self, onRequest=answer)
        ep = self.startProxy(routeTo(backend.url))
        client = yield self.connect(ep)
        client.send(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n")
        first, second = yield client.waitResponses(2)
        self.assertEqual((first.body, second.body), (b"/one", b"/two"))
        self.assertEqual([r.target for r in backend.requests], [b"/one", b"/two"])


# -- 9. client disconnect ----------------------------------------------------------------------


class ClientDisconnectTests(ProxyTestCase):
    """
    A client going away mid-request.
    """
    @defer.inlineCallbacks
    def test_clientGoneCancelsUpstream(self):
        """
        A client that goes away while the backend has not answered: the
        upstream connection is closed within 1 s and not kept in the pool.
        """
        backend = Backend(self, onRequest=lambda c, r: None)
        ep = self.startProxy(routeTo(backend.url))
        client = yield self.connect(ep)
        client.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        yield waitFor(lambda: backend.requests, 3)
        client.transport.loseConnection()
        gone = reactor.seconds()
        (connection,) = backend.connections
        yield waitFor(lambda: connection.closed, 1.0)
        self.assertLess(connection.closedAt - gone, 1.0)
        self.assertEqual(self.pool.idleCount(), 0)


# -- 10. upstream errors -----------------------------------------------------------------------


class UpstreamErrorTests(ProxyTestCase):
    """
    What the client gets when the backend cannot be reached or misbehaves.
    """
    def assertGatewayError(self, response: Response, code: int, client: RawClient) -> None:
        """
        C{response} is relayd's own plain-text C{code} answer.
        """
        self.assertEqual(response.code, code, repr(client.received))
        self.assertEqual(response.header(b"content-type"), [b"text/plain; charset=utf-8"])
        self.assertTrue(response.body.strip(), repr(response))
        self.assertNoTraceback(client.received)

    @defer.inlineCallbacks
    def test_refusedUpstream(self):
        """
        A server on a closed port: 502 with a short plain body, no traceback.
        """
        (port,) = freePorts(1)
        ep = self.startProxy(routeTo(f"http://127.0.0.1:{port}"))
        client = yield self.exchange(ep, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        (response,) = client.finalResponses()
        self.assertGatewayError(response, 502, client)
        self.assertEqual(response.body, b"Bad Gateway\n")

    @defer.inlineCallbacks
    def test_errorsLoggedWithRouterServiceUpstream(self):
        """
        A 502 is logged with the router, the service and the server it
        could not reach.
        """
        from twisted.logger import formatEvent, globalLogPublisher

        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        (port,) = freePorts(1)
        ep = self.startProxy(routeTo(f"http://127.0.0.1:{port}"))
        client = yield self.exchange(ep, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        (response,) = client.finalResponses()
        self.assertGatewayError(response, 502, client)
        lines = [formatEvent(e) for e in events if "Bad Gateway" in formatEvent(e)]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("router=r@file", lines[0])
        self.assertIn("service=s@file", lines[0])
        self.assertIn(f"upstream=http://127.0.0.1:{port}", lines[0])

    @defer.inlineCallbacks
    def test_garbageResponse(self):
        """
        A backend answering C{HELLO} and a blank line: 502.
        """
        backend = Backend(self, onRequest=lambda c, r: c.transport.write(b"HELLO\r\n\r\n"))
        ep = self.startProxy(routeTo(backend.url))
        client = yield self.exchange(ep, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        (response,) = client.finalResponses()
        self.assertGatewayError(response, 502, client)

    @defer.inlineCallbacks
    def test_backendClosesMidBody(self):
        """
        A backend that announces 100 bytes, sends 10 and closes: the client's
        connection is closed before 100 body bytes arrive.
        """

        def answer(connection: BackendConnection, request: BackendRequest) -> None:
            connection.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
            connection.later(0.05, connection.transport.loseConnection)

        backend = Backend(self, onRequest=answer)
        ep = self.startProxy(routeTo(backend.url))
        client = yield self.connect(ep)
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        yield client.waitClosed(3)
        received = client.received
        self.assertEqual(parseResponses(received, False), [])
        end = received.find(b"\r\n\r\n")
        if end >= 0:
            self.assertTrue(received.startswith(b"HTTP/1.1 200 "), repr(received))
            self.assertLess(len(received) - end - 4, 100)

    @defer.inlineCallbacks
    def test_responseHeaderTimeout(self):
        """
        responseHeaderTimeout = 0.3s and a backend that never answers: 504
        after about 0.3 s.
        """
        backend = Backend(self, onRequest=lambda c, r: None)
        ep = self.startProxy(
            routeTo(backend.url), static={"serversTransport": {"forwardingTimeouts": {"responseHeaderTimeout": "0.3s"}}}
        )
        client = yield self.connect(ep)
        start = reactor.seconds()
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        (response,) = yield client.waitResponses(1, timeout=3)
        elapsed = reactor.seconds() - start
        self.assertGatewayError(response, 504, client)
        self.assertTrue(0.25 <= elapsed <= 1.5, f"504 after {elapsed:.2f}s")

    @defer.inlineCallbacks
    def test_dialTimeout(self):
        """
        dialTimeout = 0.3s and a loopback server whose listen backlog is full
        (it never accepts, so new connections hang in SYN-SENT): 504 after
        about 0.3 s.
        """
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        for _ in range(3):
            filler = socket.socket()
            self.addCleanup(filler.close)
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        # The first one completes its handshake into the accept queue, which
        # is then full.
        select.select([], [fillers[0]], [], 1.0)
        ep = self.startProxy(
            routeTo(f"http://127.0.0.1:{port}"), static={"serversTransport": {"forwardingTimeouts": {"dialTimeout": "0.3s"}}}
        )
        client = yield self.connect(ep)
        start = reactor.seconds()
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        (response,) = yield client.waitResponses(1, timeout=3)
        elapsed = reactor.seconds() - start
        self.assertGatewayError(response, 504, client)
        self.assertTrue(0.25 <= elapsed <= 1.5, f"504 after {elapsed:.2f}s")


# -- 11. malformed requests --------------------------------------------------------------------


class MalformedRequestTests(ProxyTestCase):
    """
    Requests relayd refuses to read, with http.maxHeaderBytes = 4096.
    """
    @defer.inlineCallbacks
    def assertRejected(self, request: bytes, code: int) -> Any:
        """
        C{request} (without Connection: close) is answered C{code} with
        Connection: close and a plain body, the connection is closed, and
        nothing reaches the backend.
        """
        backend = Backend(self)
        ep = self.startProxy(routeTo(backend.url), {"http": {"maxHeaderBytes": 4096}})
        client = yield self.connect(ep)
        client.send(request)
        (response,) = yield client.waitResponses(1, timeout=3)
        self.assertEqual(response.code, code, repr(client.received))
        self.assertEqual(response.header(b"connection"), [b"close"], repr(response))
        self.assertTrue(response.body, repr(response))
        self.assertNoTraceback(client.received)
        yield client.waitClosed(2)
        self.assertEqual(backend.requests, [])

    def test_badRequestLine(self):
        """
        A request line that is not method, target and version: 400.
        """
        return self.assertRejected(b"THIS IS NOT HTTP\r\nHost: x\r\n\r\n", 400)

    def test_spaceBeforeColon(self):
        """
        A header field with whitespace between its name and the colon: 400.
        """
        return self.assertRejected(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400)

    def test_http2RequestLine(self):
        """
        An C{HTTP/2.0} request line: 505.
        """
        return self.assertRejected(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505)

    def test_transferEncodingAndContentLength(self):
        """
        Both Transfer-Encoding and Content-Length: 400 (request smuggling).
        """
        return self.assertRejected(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400
        )

    def test_unsupportedTransferEncoding(self):
        """
        C{Transfer-Encoding: gzip}: 501.
        """
        return self.assertRejected(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501)

    def test_headersTooLarge(self):
        """
        A head larger than http.maxHeaderBytes (4096): 431.
        """
        return self.assertRejected(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n", 431)

    def test_twoHostHeaders(self):
        """
        Two Host fields: 400.
        """
        return self.assertRejected(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400)


# -- 12. client timeouts -----------------------------------------------------------------------


class ClientTimeoutTests(ProxyTestCase):
    """
    The entrypoint's respondingTimeouts.
    """
    @defer.inlineCallbacks
    def test_readTimeoutOnHead(self):
        """
        readTimeout = 0.5s: a client that sends half a request head and stalls
        gets a 408 or a closed connection within about 1 s.
        """
        backend = Backend(self)
        ep = self.startProxy(routeTo(backend.url), {"transport": {"respondingTimeouts": {"readTimeout": "0.5s"}}})
        client = yield self.connect(ep)
        start = reactor.seconds()
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
        yield client.waitClosed(2)
        elapsed = client.closedAt - start
        self.assertTrue(0.4 <= elapsed <= 1.2, f"closed after {elapsed:.2f}s")
        if client.received:
            self.assertTrue(client.received.startswith(b"HTTP/1.1 408 "), repr(client.received))
        self.assertEqual(backend.requests, [])

    @defer.inlineCallbacks
    def test_readTimeoutOnBody(self):
        """
        readTimeout = 0.5s: a client that announces a 100-byte body and sends
        10 bytes gets a 408 (nothing was answered yet) and its connection
        closed within about 1 s; the upstream connection is closed too.
        """
        backend = Backend(self, onRequest=lambda c, r: None)
        ep = self.startProxy(routeTo(backend.url), {"transport": {"respondingTimeouts": {"readTimeout": "0.5s"}}})
        client = yield self.connect(ep)
        start = reactor.seconds()
        client.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        yield client.waitClosed(2)
        elapsed = client.closedAt - start
        self.assertTrue(0.4 <= elapsed <= 1.2, f"closed after {elapsed:.2f}s")
        self.assertTrue(client.received.startswith(b"HTTP/1.1 408 "), repr(client.received))
        self.assertNoTraceback(client.received)
        yield waitFor(lambda: backend.connections and all(c.closed for c in backend.connections), 1)
        self.assertFalse(any(r.complete for r in backend.requests))

    @defer.inlineCallbacks
    def test_idleTimeout(self):
        """
        idleTimeout = 0.5s: a keep-alive connection left idle after its
        response is closed by relayd 0.5 to 1 s later.
        """
        backend = Backend(self)
        ep = self.startProxy(routeTo(backend.url), {"transport": {"respondingTimeouts": {"idleTimeout": "0.5s"}}})
        client = yield self.exchange(ep, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answered = reactor.seconds()
        yield client.waitClosed(2)
        elapsed = client.closedAt - answered
        self.assertTrue(0.4 <= elapsed <= 1.0, f"closed after {elapsed:.2f}s")
        self.assertEqual(len(client.finalResponses()), 1)


# -- 13. backpressure --------------------------------------------------------------------------

_PIECE = 64 * 1024


def _piece(index: int) -> bytes:
    """
    The C{index}th 64 KiB piece of a large body (numbered, so reordering shows).
    """
    return (b"%08d" % index) * (_PIECE // 8)


def _digest(total: int) -> str:
    """
    The SHA-256 of the first C{total} bytes of L{_piece}s.
    """
    digest = hashlib.sha256()
    for index in range(total // _PIECE):
        digest.update(_piece(index))
    return digest.hexdigest()


@implementer(IPushProducer)
class Pump:
    """
    Writes C{total} bytes of numbered pieces to a transport as fast as it
    takes them (optionally as chunks), and records when the transport pauses
    it.
    """

    def __init__(self, transport: Any, total: int, chunked: bool, head: bytes) -> None:
        self.transport = transport
        self.total = total
        self.chunked = chunked
        self.sent = 0
        self.index = 0
        self.paused = False
        self.pauses = 0
        self.done = False
        self._scheduled = False
        transport.registerProducer(self, True)
        transport.write(head)
        self._schedule()

    def _schedule(self) -> None:
        """
        Write more on the next reactor turn.
        """
        if not self._scheduled and not self.done:
            self._scheduled = True
            reactor.callLater(0, self._run)

    def _run(self) -> None:
        """
        Write pieces until paused or done.
        """
        self._scheduled = False
        while not self.paused and not self.done:
            if self.sent >= self.total:
                self.done = True
                if self.chunked:
                    self.transport.write(b"0\r\n\r\n")
                self.transport.unregisterProducer()
                return
            piece = _piece(self.index)
            self.index += 1
            self.sent += len(piece)
            if self.chunked:
                self.transport.writeSequence([b"%x\r\n" % len(piece), piece, b"\r\n"])
            else:
                self.transport.write(piece)

    def pauseProducing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resumeProducing(self) -> None:
        self.paused = False
        self._schedule()

    def stopProducing(self) -> None:
        self.paused = True
        self.done = True


class BackpressureTests(ProxyTestCase):
    """
    Flow control in both directions at a small (20 MB) scale.
    """
    timeout = 30

    @defer.inlineCallbacks
    def test_slowReadingClient(self):
        """
        A backend streams a 20 MB chunked response; while the client does not
        read for 1 s, relayd stops reading from the backend (the backend's
        writes back up and its producer is paused with most of the body
        unsent); then the client reads exactly the 20 MB.
        """
        total = 20 * MB
        pumps: list[Pump] = []

        def answer(connection: BackendConnection, request: BackendRequest) -> None:
            pumps.append(Pump(connection.transport, total, True, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))

        backend = Backend(self, onRequest=answer)
        ep = self.startProxy(routeTo(backend.url))
        client = yield self.connect(ep)
        client.transport.pauseProducing()
        client.send(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        yield sleep(1.0)
        (pump,) = pumps
        self.assertTrue(pump.paused, f"backend not paused; {pump.sent} bytes written")
        self.assertGreaterEqual(pump.pauses, 1)
        self.assertLess(pump.sent, total)
        client.transport.resumeProducing()
        yield waitFor(lambda: len(client.data) > total and client.data.endswith(b"0\r\n\r\n"), 15)
        (response,) = client.finalResponses()
        self.assertEqual(response.code, 200)
        self.assertEqual(len(response.body), total)
        self.assertEqual(hashlib.sha256(response.body).hexdigest(), _digest(total))

    @defer.inlineCallbacks
    def test_slowReadingBackend(self):
        """
        A client uploads 20 MB to a backend that does not read for 1 s: the
        client's writes back up meanwhile (relayd stops reading from it), then
        the backend gets the whole body intact.
        """
        total = 20 * MB

        def answer(connection: BackendConnection, request: BackendRequest) -> None:
            connection.respond(body=b"%d %s" % (len(request.body), hashlib.sha256(request.body).hexdigest().encode()))

        backend = Backend(self, onRequest=answer, onConnect=lambda c: c.transport.pauseProducing())
        ep = self.startProxy(routeTo(backend.url))
        client = yield self.connect(ep)
        pump = Pump(client.transport, total, False, b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % total)
        yield sleep(1.0)
        self.assertTrue(pump.paused, f"client not paused; {pump.sent} bytes written")
        self.assertLess(pump.sent, total)
        (connection,) = backend.connections
        self.assertFalse(connection.requests and connection.requests[0].complete)
        connection.transport.resumeProducing()
        (response,) = yield client.waitResponses(1, timeout=15)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.body, b"%d %s" % (total, _digest(total).encode()))
