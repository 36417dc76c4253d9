"""
WebSocket relaying, tested with an independent peer on both sides: the
C{websockets} library's server as the backend and its client as the client
(each in its own thread), with relayd's entrypoint in-process in between.

Raw sockets stand in for either side where a test needs exact bytes: the
request head relayd sends upstream, a bogus 101, a client that never answers
pings. Every wait is bounded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import signal
import socket
import ssl
import struct
import threading
import time
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from twisted.internet import defer, reactor, threads
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SkipTest

from tests.helpers import RelaydProcess, freePorts, tempdir, writeFile
from tests.test_proxy import ProxyTestCase, sleep, waitFor

try:
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import connect
    from websockets.sync.server import serve
except ImportError:  # pragma: no cover - install-deps.sh installs it
    connect = None  # type: ignore[assignment]

MIB = 1024 * 1024
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def requireWebsockets() -> None:
    if connect is None:
        if os.environ.get("CI") == "true":
            raise AssertionError("the websockets library is missing (tests/install-deps.sh installs it)")
        raise SkipTest("the websockets library is not installed")


def acceptKey(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key.strip() + GUID).digest())


# -- the backend: a websockets server in a thread ---------------------------------------------


class WSBackend:
    """
    A C{websockets} server on 127.0.0.1 in its own thread. What a connection
    does depends on its path (after relayd's rewrites):

     - C{/reject}: an HTTP 403 with a body and an X-Reason field;
     - C{/health}: 200 while C{healthy}, else 503 (plain HTTP);
     - C{/close?code=C&reason=R}: closes with that code and reason;
     - C{/drop}: breaks the TCP connection without a close frame;
     - C{/ping}: pings the client and sends back whether the pong came;
     - C{/fragments}: for each message, reports its fragments (as JSON);
     - C{/gate}: like C{/fragments}, and sets C{firstFragment} on the first;
     - C{/flood?count=N}: sends N 1 MiB binary messages, counting in C{sent};
     - C{/hold}: reads nothing until C{release} is set, then reports what it
       got (count and SHA-256 of everything);
     - anything else: echoes every message.

    Every connection's path, request headers, subprotocol and negotiated
    extensions are in C{seen}; the close code and reason it saw are in
    C{closes}.
    """

    def __init__(self, name: str = "a", compression: str | None = "deflate", sslContext: Any = None, maxQueue: int = 16) -> None:
        self.name = name
        self.healthy = True
        self.seen: list[dict[str, Any]] = []
        self.closes: "queue.Queue[tuple[int | None, str | None]]" = queue.Queue()
        self.sent = 0
        self.firstFragment = threading.Event()
        self.release = threading.Event()
        self.server = serve(
            self.handler,
            "127.0.0.1",
            0,
            compression=compression,
            select_subprotocol=self.selectSubprotocol,
            process_request=self.processRequest,
            ssl=sslContext,
            max_size=None,
            max_queue=maxQueue,
            ping_interval=None,
            close_timeout=5,
        )
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name=f"ws-backend-{name}", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.thread.join(10)

    def selectSubprotocol(self, connection: Any, offered: Any) -> Any:
        for name in offered:
            if name in ("chat", "superchat"):
                return name
        return None

    def processRequest(self, connection: Any, request: Any) -> Any:
        path = urlsplit(request.path).path
        if path == "/reject":
            response = connection.respond(403, "go away\n")
            response.headers["X-Reason"] = "rejected by the backend"
            return response
        if path == "/health":
            return connection.respond(200 if self.healthy else 503, "ok\n" if self.healthy else "down\n")
        return None

    def handler(self, ws: Any) -> None:
        request = ws.request
        parts = urlsplit(request.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.seen.append(
            {
                "path": request.path,
                "headers": [(k.lower(), v) for k, v in request.headers.raw_items()],
                "subprotocol": ws.subprotocol,
                "extensions": [e.name for e in ws.protocol.extensions],
            }
        )
        try:
            self.dispatch(ws, parts.path, query)
        except ConnectionClosed:
            pass
        finally:
            self.closes.put((ws.close_code, ws.close_reason))

    def dispatch(self, ws: Any, path: str, query: dict[str, str]) -> None:
        if path == "/close":
            ws.recv()
            ws.close(int(query["code"]), query.get("reason", ""))
        elif path == "/drop":
            ws.recv()
            ws.socket.shutdown(socket.SHUT_RDWR)
            ws.socket.close()
        elif path == "/ping":
            pong = ws.ping(b"from-backend")
            ws.send("pong" if pong.wait(5) else "no pong")
            for message in ws:
                ws.send(message)
        elif path in ("/fragments", "/gate"):
            while True:
                sizes = []
                digest = hashlib.sha256()
                for fragment in ws.recv_streaming():
                    if path == "/gate":
                        self.firstFragment.set()
                    data = fragment.encode() if isinstance(fragment, str) else fragment
                    sizes.append(len(data))
                    digest.update(data)
                ws.send(json.dumps({"fragments": sizes, "bytes": sum(sizes), "sha256": digest.hexdigest()}))
        elif path == "/flood":
            message = bytes(range(256)) * 4096
            for _ in range(int(query.get("count", "64"))):
                ws.send(message)
                self.sent += 1
            ws.recv()
        elif path == "/hold":
            self.release.wait(20)
            count = 0
            digest = hashlib.sha256()
            while count < int(query.get("count", "1")):
                data = ws.recv()
                digest.update(data)
                count += 1
            ws.send(json.dumps({"count": count, "sha256": digest.hexdigest()}))
            ws.recv()
        else:
            for message in ws:
                ws.send(message)

    def headers(self, index: int = -1) -> dict[str, list[str]]:
        """
        The request fields of the C{index}th connection, by lower-case name.
        """
        out: dict[str, list[str]] = {}
        for name, value in self.seen[index]["headers"]:
            out.setdefault(name, []).append(value)
        return out


# -- raw peers for exact bytes -------------------------------------------------------------------


class RawBackend(Protocol):
    """
    A server that keeps the handshake it receives and answers only when told.
    """

    def connectionMade(self) -> None:
        self.buffer = b""
        self.factory.connections.append(self)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data

    @property
    def head(self) -> bytes:
        return self.buffer.split(b"\r\n\r\n", 1)[0]

    def field(self, name: bytes) -> list[bytes]:
        out = []
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name:
                out.append(value.strip())
        return out

    def accept(self, extra: bytes = b"", key: bytes | None = None) -> None:
        key = key if key is not None else self.field(b"sec-websocket-key")[0]
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + acceptKey(key) + b"\r\n" + extra + b"\r\n"
        )


def rawClientHandshake(port: int, path: str = "/", extra: bytes = b"", key: bytes = b"dGhlIHNhbXBsZSBub25jZQ==", method: bytes = b"GET", version: bytes = b"13") -> socket.socket:
    """
    A blocking socket that has sent a WebSocket opening handshake.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    lines = [method + b" " + path.encode() + b" HTTP/1.1", b"Host: ws.test", b"Upgrade: websocket", b"Connection: Upgrade"]
    if key:
        lines.append(b"Sec-WebSocket-Key: " + key)
    lines.append(b"Sec-WebSocket-Version: " + version)
    sock.sendall(b"\r\n".join(lines) + b"\r\n" + extra + b"\r\n")
    return sock


def readHead(sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, bytes]:
    """
    Read a response head; returns (head, what followed it).
    """
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def readFrame(sock: socket.socket, buffer: bytes, timeout: float = 5.0) -> tuple[int, bytes, bytes]:
    """
    Read one unmasked frame: (opcode, payload, rest of the buffer).
    """
    sock.settimeout(timeout)

    def need(n: int) -> None:
        nonlocal buffer
        while len(buffer) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            buffer += chunk

    need(2)
    opcode = buffer[0] & 0x0F
    length = buffer[1] & 0x7F
    offset = 2
    if length == 126:
        need(4)
        length = struct.unpack("!H", buffer[2:4])[0]
        offset = 4
    elif length == 127:
        need(10)
        length = struct.unpack("!Q", buffer[2:10])[0]
        offset = 10
    need(offset + length)
    return opcode, buffer[offset : offset + length], buffer[offset + length :]


def maskedFrame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    mask = os.urandom(4)
    header = bytes([(0x80 if fin else 0) | opcode])
    if len(payload) < 126:
        header += bytes([0x80 | len(payload)])
    elif len(payload) < 65536:
        header += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
    else:
        header += bytes([0x80 | 127]) + struct.pack("!Q", len(payload))
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


# -- the test case -------------------------------------------------------------------------------


class WebSocketTestCase(ProxyTestCase):
    timeout = 60

    def setUp(self) -> None:
        requireWebsockets()

    def backend(self, **kwargs: Any) -> WSBackend:
        backend = WSBackend(**kwargs)
        self.addCleanup(threads.deferToThread, backend.stop)
        return backend

    def rawBackend(self) -> tuple[Any, list[RawBackend]]:
        factory = Factory.forProtocol(RawBackend)
        factory.noisy = False
        factory.connections = []
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)

        def drop() -> None:
            for connection in factory.connections:
                connection.transport.abortConnection()

        self.addCleanup(drop)
        return port, factory.connections

    def inThread(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        return threads.deferToThread(fn, *args, **kwargs)

    @property
    def relayer(self) -> Any:
        return self.watcher.shared["forwarder"].websockets

    def url(self, ep: Any, path: str = "/") -> str:
        return f"ws://127.0.0.1:{ep.port}{path}"

    def openMany(self, ep: Any, count: int, headers: dict[str, str] | None = None) -> defer.Deferred[None]:
        """
        Open C{count} WebSockets to C{/wsk} one after the other, each with one
        message echoed.
        """

        def client() -> None:
            for _ in range(count):
                with connect(self.url(ep, "/wsk"), additional_headers=headers, **clientOptions()) as ws:
                    ws.send("x")
                    ws.recv()

        return self.inThread(client)

    def refusal(self, ep: Any, path: str = "/wsk") -> defer.Deferred[int | None]:
        """
        The status of the answer to an upgrade that is refused (C{None} if
        the WebSocket opened).
        """

        def client() -> int | None:
            try:
                connect(self.url(ep, path), **clientOptions()).close()
            except InvalidStatus as e:
                return e.response.status_code
            return None

        return self.inThread(client)


def clientOptions(**kwargs: Any) -> dict[str, Any]:
    options = {"open_timeout": 10, "close_timeout": 10, "ping_interval": None, "max_size": None}
    options.update(kwargs)
    return options


# -- 1. routing and the handshake ---------------------------------------------------------------


def wskConfig(*urls: str, extra: dict[str, Any] | None = None, **loadBalancer: Any) -> dict[str, Any]:
    """
    Seed 000's shape: PathPrefix(`/wsk`) with replacePath to C{/echo}... or
    whatever path C{extra} sets.
    """
    lb: dict[str, Any] = {"servers": [{"url": url} for url in urls]}
    lb.update(loadBalancer)
    config: dict[str, Any] = {
        "http": {
            "routers": {"socket-router": {"rule": "PathPrefix(`/wsk`)", "service": "service01", "middlewares": ["socket-replaceprefix"]}},
            "middlewares": {"socket-replaceprefix": {"replacePath": {"path": "/"}}},
            "services": {"service01": {"loadBalancer": lb}},
        }
    }
    if extra:
        for key, value in extra.items():
            config["http"][key].update(value)
    return config


class HandshakeTests(WebSocketTestCase):
    """
    Upgrades are routed like other requests, and relayd accepts the client's
    handshake only once the server's succeeded.
    """

    @defer.inlineCallbacks
    def test_echoThroughRewrite(self):
        """
        A client reaches the server through a PathPrefix router whose
        replacePath middleware rewrites the path; text and binary messages
        come back unchanged; the server sees the rewritten path with the
        query, the forwarded fields, and the client's subprotocol offers, and
        its choice reaches the client.
        """
        backend = self.backend()
        ep = self.startProxy(wskConfig(backend.url))

        def client() -> Any:
            with connect(
                self.url(ep, "/wsk/room?name=x&y=1"),
                subprotocols=["v2.other", "superchat"],
                origin="http://app.example",
                additional_headers={"Cookie": "session=abc", "Authorization": "Bearer t0ken", "X-Custom": "kept"},
                **clientOptions(),
            ) as ws:
                ws.send("hello")
                text = ws.recv()
                ws.send(b"\x00\x01\xff" * 1000)
                binary = ws.recv()
                return ws.subprotocol, text, binary, dict(ws.response.headers.raw_items())

        subprotocol, text, binary, response = yield self.inThread(client)
        self.assertEqual(subprotocol, "superchat")
        self.assertEqual(text, "hello")
        self.assertEqual(binary, b"\x00\x01\xff" * 1000)
        seen = backend.seen[-1]
        self.assertEqual(seen["path"], "/?name=x&y=1")
        self.assertEqual(seen["subprotocol"], "superchat")
        headers = backend.headers()
        self.assertEqual(headers["sec-websocket-protocol"], ["v2.other, superchat"])
        self.assertEqual(headers["origin"], ["http://app.example"])
        self.assertEqual(headers["cookie"], ["session=abc"])
        self.assertEqual(headers["authorization"], ["Bearer t0ken"])
        self.assertEqual(headers["x-custom"], ["kept"])
        self.assertEqual(headers["x-forwarded-for"], ["127.0.0.1"])
        self.assertEqual(headers["x-forwarded-proto"], ["ws"])
        self.assertEqual(headers["x-forwarded-host"], [f"127.0.0.1:{ep.port}"])
        self.assertEqual(headers["x-forwarded-prefix"] if "x-forwarded-prefix" in headers else [], [])
        self.assertIn("Server", response)

    @defer.inlineCallbacks
    def test_exactUpstreamHandshake(self):
        """
        The handshake relayd sends upstream carries its own key and version,
        the client's fields, and nothing reaches the client until the server
        has answered 101; the client's 101 carries the accept value for the
        client's own key.
        """
        port, connections = self.rawBackend()
        ep = self.startProxy(wskConfig(f"http://127.0.0.1:{port.getHost().port}"))
        clientKey = b"dGhlIHNhbXBsZSBub25jZQ=="
        sock = yield self.inThread(
            rawClientHandshake,
            ep.port,
            "/wsk/a?b=c",
            b"Origin: http://o.example\r\nSec-WebSocket-Protocol: chat\r\nCookie: c=1\r\n",
            clientKey,
        )
        self.addCleanup(sock.close)
        yield waitFor(lambda: connections and b"\r\n\r\n" in connections[0].buffer)
        upstream = connections[0]
        self.assertTrue(upstream.head.startswith(b"GET /?b=c HTTP/1.1\r\n"), upstream.head)
        self.assertEqual(upstream.field(b"upgrade"), [b"websocket"])
        self.assertEqual(upstream.field(b"connection"), [b"Upgrade"])
        self.assertEqual(upstream.field(b"sec-websocket-version"), [b"13"])
        [key] = upstream.field(b"sec-websocket-key")
        self.assertNotEqual(key, clientKey)
        self.assertEqual(len(base64.b64decode(key)), 16)
        self.assertEqual(upstream.field(b"origin"), [b"http://o.example"])
        self.assertEqual(upstream.field(b"sec-websocket-protocol"), [b"chat"])
        self.assertEqual(upstream.field(b"cookie"), [b"c=1"])
        self.assertEqual(upstream.field(b"host"), [b"ws.test"])
        # Nothing for the client yet.
        sock.setblocking(False)
        yield sleep(0.3)
        self.assertRaises(BlockingIOError, sock.recv, 1)
        sock.setblocking(True)
        upstream.accept(b"Sec-WebSocket-Protocol: chat\r\nX-Backend: yes\r\n")
        head, rest = yield self.inThread(readHead, sock)
        self.assertTrue(head.startswith(b"HTTP/1.1 101 "), head)
        lower = head.lower()
        self.assertIn(b"sec-websocket-accept: " + acceptKey(clientKey).lower(), lower)
        self.assertIn(b"sec-websocket-protocol: chat", lower)
        self.assertIn(b"x-backend: yes", lower)

    @defer.inlineCallbacks
    def test_basicAuth(self):
        """
        An upgrade on a route behind basicAuth needs credentials: without
        them the client gets 401 and no server is contacted; with them the
        WebSocket opens, and removeHeader keeps the credentials from the
        server.
        """
        backend = self.backend()
        digest = base64.b64encode(hashlib.sha1(b"s3cret").digest()).decode()
        ep = self.startProxy(
            wskConfig(
                backend.url,
                extra={
                    "routers": {"socket-router": {"rule": "PathPrefix(`/wsk`)", "service": "service01", "middlewares": ["auth", "socket-replaceprefix"]}},
                    "middlewares": {"auth": {"basicAuth": {"users": [f"ws:{{SHA}}{digest}"], "removeHeader": True}}},
                }
            )
        )

        def anonymous() -> Any:
            try:
                connect(self.url(ep, "/wsk"), **clientOptions())
            except InvalidStatus as e:
                return e.response.status_code, e.response.headers.get("WWW-Authenticate")
            return None

        status, challenge = yield self.inThread(anonymous)
        self.assertEqual((status, challenge), (401, 'Basic realm="traefik"'))
        self.assertEqual(backend.seen, [])

        def authorized() -> Any:
            credentials = base64.b64encode(b"ws:s3cret").decode()
            with connect(self.url(ep, "/wsk"), additional_headers={"Authorization": f"Basic {credentials}"}, **clientOptions()) as ws:
                ws.send("let me in")
                return ws.recv()

        answer = yield self.inThread(authorized)
        self.assertEqual(answer, "let me in")
        self.assertNotIn("authorization", backend.headers())

    @defer.inlineCallbacks
    def test_refusedBackend(self):
        """
        A server that refuses the connection gives the client 502.
        """
        [port] = freePorts(1)
        ep = self.startProxy(wskConfig(f"http://127.0.0.1:{port}"))

        status = yield self.refusal(ep)
        self.assertEqual(status, 502)

    @defer.inlineCallbacks
    def test_non101PassedBack(self):
        """
        A server's answer other than 101 reaches the client as it came:
        status, fields and body.
        """
        backend = self.backend()
        ep = self.startProxy(wskConfig(backend.url, extra={"middlewares": {"socket-replaceprefix": {"replacePath": {"path": "/reject"}}}}))

        def client() -> Any:
            try:
                connect(self.url(ep, "/wsk"), **clientOptions())
            except InvalidStatus as e:
                return e.response.status_code, e.response.headers.get("X-Reason"), e.response.body
            return None

        status, reason, body = yield self.inThread(client)
        self.assertEqual((status, reason, body), (403, "rejected by the backend", b"go away\n"))

    @defer.inlineCallbacks
    def test_bogusServerHandshake(self):
        """
        A 101 with the wrong accept value gives the client 502, not a
        half-open WebSocket.
        """
        port, connections = self.rawBackend()
        ep = self.startProxy(wskConfig(f"http://127.0.0.1:{port.getHost().port}"))
        sock = yield self.inThread(rawClientHandshake, ep.port, "/wsk")
        self.addCleanup(sock.close)
        yield waitFor(lambda: connections and b"\r\n\r\n" in connections[0].buffer)
        connections[0].accept(key=b"not-the-key")
        head, _ = yield self.inThread(readHead, sock)
        self.assertTrue(head.startswith(b"HTTP/1.1 502 "), head)

    @defer.inlineCallbacks
    def test_badClientHandshakes(self):
        """
        A malformed handshake is refused (400, or 426 naming the supported
        version) before anything is sent upstream.
        """
        port, connections = self.rawBackend()
        ep = self.startProxy(wskConfig(f"http://127.0.0.1:{port.getHost().port}"))
        cases = [
            ({"key": b""}, b"400"),
            ({"key": b"c2hvcnQ="}, b"400"),
            ({"version": b"8"}, b"426"),
            ({"method": b"POST"}, b"400"),
        ]
        for kwargs, code in cases:
            sock = yield self.inThread(rawClientHandshake, ep.port, "/wsk", **kwargs)
            head, _ = yield self.inThread(readHead, sock)
            sock.close()
            self.assertTrue(head.startswith(b"HTTP/1.1 " + code), (kwargs, head))
            if code == b"426":
                self.assertIn(b"sec-websocket-version: 13", head.lower())
        self.assertEqual(connections, [])

    @defer.inlineCallbacks
    def test_stickyCookie(self):
        """
        A sticky service sets its cookie on the 101, and a client that sends
        it back reaches the same server every time; without it, connections
        are balanced over both servers.
        """
        a, b = self.backend(name="a"), self.backend(name="b")
        ep = self.startProxy(
            wskConfig(a.url, b.url, sticky={"cookie": {"name": "io", "httpOnly": True, "secure": True, "sameSite": "lax"}})
        )

        def first() -> Any:
            with connect(self.url(ep, "/wsk"), **clientOptions()) as ws:
                ws.send("x")
                ws.recv()
                return ws.response.headers.get_all("Set-Cookie")

        cookies = yield self.inThread(first)
        self.assertEqual(len(cookies), 1, cookies)
        cookie = cookies[0]
        self.assertTrue(cookie.startswith("io="), cookie)
        self.assertIn("HttpOnly", cookie)
        self.assertIn("Secure", cookie)
        chosen = a if a.seen else b
        other = b if chosen is a else a
        yield self.openMany(ep, 5, {"Cookie": cookie.split(";")[0]})
        self.assertEqual((len(chosen.seen), len(other.seen)), (6, 0))
        yield self.openMany(ep, 4)
        self.assertEqual(len(other.seen), 2)

    @defer.inlineCallbacks
    def test_healthCheckedServers(self):
        """
        Upgrades go only to servers whose health check passes.
        """
        a, b = self.backend(name="a"), self.backend(name="b")
        b.healthy = False
        ep = self.startProxy(wskConfig(a.url, b.url, healthCheck={"path": "/health", "interval": "100ms", "timeout": "1s"}))
        # Let the first checks run (every 100 ms).
        yield sleep(0.6)
        yield self.openMany(ep, 6)
        self.assertEqual((len(a.seen), len(b.seen)), (6, 0))


# -- 2. the relay ---------------------------------------------------------------------------------


class RelayTests(WebSocketTestCase):
    """
    Messages, fragments, pings and closes cross faithfully.
    """

    @defer.inlineCallbacks
    def test_largeMessagesBothWays(self):
        """
        A 16 MiB binary and a 4 MiB text message are echoed intact.
        """
        backend = self.backend()
        ep = self.startProxy(wskConfig(backend.url))
        big = os.urandom(16 * MIB)
        text = "żółw " * (MIB // 5 * 4)

        def client() -> Any:
            with connect(self.url(ep, "/wsk"), **clientOptions()) as ws:
                ws.send(big)
                back = ws.recv()
                ws.send(text)
                return back, ws.recv()

        back, textBack = yield self.inThread(client)
        self.assertEqual(hashlib.sha256(back).digest(), hashlib.sha256(big).digest())
        self.assertEqual(textBack, text)

    @defer.inlineCallbacks
    def test_mixedBurst(self):
        """
        A burst of messages of every framing size (empty, 125, 126, 65535,
        65536 bytes and more; text and binary; compressed and not), with
        pings in between, comes back intact and in order: small whole frames
        take relayd's fast path, the rest autobahn's, and they interleave.
        """
        backend = self.backend()
        ep = self.startProxy(wskConfig(backend.url))
        sizes = [0, 1, 125, 126, 127, 1000, 65535, 65536, 70000, 3, 200_000, 64]
        messages: list[Any] = []
        for i in range(600):
            size = sizes[i % len(sizes)]
            if i % 2:
                messages.append(os.urandom(size))
            else:
                messages.append(("%d " % i + "x" * size)[:size] if size else "")

        def client(compression: str | None) -> Any:
            with connect(self.url(ep, "/wsk"), compression=compression, max_queue=None, **clientOptions()) as ws:
                received: list[Any] = []

                def reader() -> None:
                    for _ in messages:
                        received.append(ws.recv(timeout=20))

                thread = threading.Thread(target=reader)
                thread.start()
                for i, message in enumerate(messages):
                    ws.send(message)
                    if i % 50 == 0:
                        ws.ping(str(i).encode())
                thread.join(30)
                return received

        for compression in (None, "deflate"):
            received = yield self.inThread(client, compression)
            self.assertEqual(len(received), len(messages))
            for i, (got, sent) in enumerate(zip(received, messages)):
                self.assertEqual(got, sent, f"message {i} ({len(sent)} bytes, compression={compression})")

    @defer.inlineCallbacks
    def test_fragmentsStreamed(self):
        """
        A fragmented message is passed on fragment by fragment: the server
        gets the first fragment before the client sends the second.
        """
        backend = self.backend()
        ep = self.startProxy(wskConfig(backend.url, extra={"middlewares": {"socket-replaceprefix": {"replacePath": {"path": "/gate"}}}}))

        def fragments() -> Any:
            yield "first "
            if not backend.firstFragment.wait(10):
                raise AssertionError("the first fragment did not reach the server on its own")
            yield "second "
            yield "third"

        def client() -> Any:
            with connect(self.url(ep, "/wsk"), **clientOptions()) as ws:
                ws.send(fragments())
                return json.loads(ws.recv())

        report = yield self.inThread(client)
        self.assertEqual(report["bytes"], len("first second third"))
        self.assertGreaterEqual(len(report["fragments"]), 2)

    @defer.inlineCallbacks
    def test_bigFrameStreamed(self):
        """
        A 16 MiB message sent as one frame reaches the server in pieces, as
        it arrives, not held whole; its bytes are unchanged.
        """
        backend = self.backend()
        ep = self.startProxy(wskConfig(backend.url, extra={"middlewares": {"socket-replaceprefix": {"replacePath": {"path": "/fragments"}}}}))
        big = os.urandom(16 * MIB)

        def client() -> Any:
            with connect(self.url(ep, "/wsk"), compression=None, **clientOptions()) as ws:
                ws.send(big)
                return json.loads(ws.recv())

        report = yield self.inThread(client)
        self.assertEqual(report["bytes"], len(big))
        self.assertEqual(report["sha256"], hashlib.sha256(big).hexdigest())
        self.assertGreater(len(report["fragments"]), 16)
        self.assertLessEqual(max(report["fragments"]), 2 * MIB)

    @defer.inlineCallbacks
    def test_pingsBothWays(self):
        """
        A client's ping is answered (by the server, through relayd), and so
        is the server's.
        """
        backend = self.backend()
        ep = self.startProxy(wskConfig(backend.url, extra={"middlewares": {"socket-replaceprefix": {"replacePath": {"path": "/ping"}}}}))

        def client() -> Any:
            with connect(self.url(ep, "/wsk"), **clientOptions()) as ws:
                fromServer = ws.recv()
                pong = ws.ping(b"from-client")
                return fromServer, pong.wait(5)

        fromServer, answered = yield self.inThread(client)
        self.assertEqual(fromServer, "pong")
        self.assertTrue(answered)

    @defer.inlineCallbacks
    def test_closeFromClient(self):
        """
        The client's close code and reason reach the server, and the
        client's closing handshake completes with them.
        """
        backend = self.backend()
        ep = self.startProxy(wskConfig(backend.url))
        for code, reason in ((4001, "bye"), (1000, ""), (1001, "leaving")):

            def client() -> Any:
                ws = connect(self.url(ep, "/wsk"), **clientOptions())
                ws.send("x")
                ws.recv()
                ws.close(code, reason)
                return ws.close_code, ws.close_reason

            answer = yield self.inThread(client)
            seen = yield self.inThread(backend.closes.get, True, 10)
            self.assertEqual(seen, (code, reason))
            self.assertEqual(answer, (code, reason))

    @defer.inlineCallbacks
    def test_closeFromServer(self):
        """
        The server's close code and reason reach the client, never replaced
        by 1000.
        """
        backend = self.backend()
        for code, reason in ((4002, "nope"), (1011, "internal trouble"), (1008, "policy")):
            ep = self.startProxy(
                wskConfig(
                    backend.url,
                    extra={"middlewares": {"socket-replaceprefix": {"replacePath": {"path": "/close"}}}},
                )
            )

            def client() -> Any:
                with connect(self.url(ep, f"/wsk?code={code}&reason={reason.replace(' ', '+')}"), **clientOptions()) as ws:
                    ws.send("go")
                    try:
                        ws.recv()
                    except ConnectionClosed as e:
                        return e.rcvd.code if e.rcvd else None, e.rcvd.reason if e.rcvd else None
                return None

            result = yield self.inThread(client)
            self.assertEqual(result, (code, reason))
            yield ep.stopService()

    @defer.inlineCallbacks
    def test_serverDropsConnection(self):
        """
        A server that breaks its TCP connection without a close frame breaks
        the client's too (1006 on the client side), rather than leaving it
        open.
        """
        backend = self.backend()
        ep = self.startProxy(wskConfig(backend.url, extra={"middlewares": {"socket-replaceprefix": {"replacePath": {"path": "/drop"}}}}))

        def client() -> Any:
            with connect(self.url(ep, "/wsk"), **clientOptions()) as ws:
                ws.send("go")
                try:
                    ws.recv(timeout=10)
                except ConnectionClosed as e:
                    return e.rcvd
                except TimeoutError:
                    return "still open"
            return None

        received = yield self.inThread(client)
        self.assertIsNone(received)
        yield waitFor(lambda: not self.relayer.relays, 5)


class CompressionTests(WebSocketTestCase):
    """
    permessage-deflate is negotiated on each leg on its own.
    """

    def compressible(self) -> str:
        return ("relayd " * 200_000)[: MIB]

    @defer.inlineCallbacks
    def exchange(self, ep: Any, compression: str | None) -> Any:
        text = self.compressible()

        def client() -> Any:
            with connect(self.url(ep, "/wsk"), compression=compression, **clientOptions()) as ws:
                ws.send(text)
                return ws.recv(), [e.name for e in ws.protocol.extensions], ws.response.headers.get("Sec-WebSocket-Extensions")

        back, extensions, header = yield self.inThread(client)
        self.assertEqual(back, text)
        return extensions, header

    @defer.inlineCallbacks
    def test_clientCompressesServerDoesNot(self):
        backend = self.backend(compression=None)
        ep = self.startProxy(wskConfig(backend.url))
        extensions, header = yield self.exchange(ep, "deflate")
        self.assertEqual(extensions, ["permessage-deflate"])
        self.assertEqual(backend.seen[-1]["extensions"], [])
        self.assertIn("permessage-deflate", backend.headers()["sec-websocket-extensions"][0])

    @defer.inlineCallbacks
    def test_bothCompress(self):
        backend = self.backend()
        ep = self.startProxy(wskConfig(backend.url))
        extensions, header = yield self.exchange(ep, "deflate")
        self.assertEqual(extensions, ["permessage-deflate"])
        self.assertEqual(backend.seen[-1]["extensions"], ["permessage-deflate"])

    @defer.inlineCallbacks
    def test_clientDoesNotCompress(self):
        backend = self.backend()
        ep = self.startProxy(wskConfig(backend.url))
        extensions, header = yield self.exchange(ep, None)
        self.assertEqual(extensions, [])
        self.assertIsNone(header)
        self.assertNotIn("sec-websocket-extensions", backend.headers())
        self.assertEqual(backend.seen[-1]["extensions"], [])

    @defer.inlineCallbacks
    def test_compressionOff(self):
        backend = self.backend()
        ep = self.startProxy(wskConfig(backend.url), static={"websocket": {"compression": False}})
        extensions, header = yield self.exchange(ep, "deflate")
        self.assertEqual(extensions, [])
        self.assertNotIn("sec-websocket-extensions", backend.headers())


class LimitTests(WebSocketTestCase):
    """
    Message and frame size limits, idle timeout and keep-alive pings.
    """

    @defer.inlineCallbacks
    def test_maxMessageSize(self):
        """
        A message over websocket.maxMessageSize closes the sender's leg with
        1009 and the other with 1001; smaller ones pass.
        """
        backend = self.backend()
        ep = self.startProxy(wskConfig(backend.url), static={"websocket": {"maxMessageSize": 1000}})

        def client() -> Any:
            with connect(self.url(ep, "/wsk"), **clientOptions()) as ws:
                ws.send("a" * 1000)
                ok = ws.recv()
                ws.send("b" * 1001)
                try:
                    ws.recv(timeout=10)
                except ConnectionClosed as e:
                    return ok, e.rcvd.code if e.rcvd else None
            return ok, None

        ok, code = yield self.inThread(client)
        self.assertEqual((len(ok), code), (1000, 1009))
        seen = yield self.inThread(backend.closes.get, True, 10)
        self.assertEqual(seen[0], 1001)

    @defer.inlineCallbacks
    def test_maxFrameSize(self):
        """
        A frame over websocket.maxFrameSize closes with 1009, even inside a
        message made of smaller frames.
        """
        backend = self.backend()
        ep = self.startProxy(
            wskConfig(backend.url, extra={"middlewares": {"socket-replaceprefix": {"replacePath": {"path": "/fragments"}}}}),
            static={"websocket": {"maxFrameSize": 500}},
        )

        def client() -> Any:
            with connect(self.url(ep, "/wsk"), compression=None, **clientOptions()) as ws:
                ws.send(iter([b"x" * 400, b"y" * 400]))
                ok = json.loads(ws.recv())["bytes"]
                ws.send(b"z" * 501)
                try:
                    ws.recv(timeout=10)
                except ConnectionClosed as e:
                    return ok, e.rcvd.code if e.rcvd else None
            return ok, None

        ok, code = yield self.inThread(client)
        self.assertEqual((ok, code), (800, 1009))

    @defer.inlineCallbacks
    def test_idleTimeout(self):
        """
        With websocket.idleTimeout, a WebSocket that carries messages stays
        open; one that goes quiet is closed on both legs with 1001.
        """
        backend = self.backend()
        ep = self.startProxy(wskConfig(backend.url), static={"websocket": {"idleTimeout": "600ms"}})

        def client() -> Any:
            with connect(self.url(ep, "/wsk"), **clientOptions()) as ws:
                for i in range(8):
                    ws.send(str(i))
                    ws.recv()
                    time.sleep(0.2)
                started = time.monotonic()
                try:
                    ws.recv(timeout=10)
                except ConnectionClosed as e:
                    return time.monotonic() - started, e.rcvd.code if e.rcvd else None
            return None, None

        quiet, code = yield self.inThread(client)
        self.assertEqual(code, 1001)
        self.assertLess(quiet, 3.0)
        seen = yield self.inThread(backend.closes.get, True, 10)
        self.assertEqual(seen[0], 1001)

    @defer.inlineCallbacks
    def test_keepAlivePings(self):
        """
        With websocket.pingInterval, relayd pings the client; a client that
        never answers is dropped after pingTimeout, and the server's leg goes
        with it. A client that answers (the websockets library does) stays.
        """
        backend = self.backend()
        ep = self.startProxy(wskConfig(backend.url), static={"websocket": {"pingInterval": "200ms", "pingTimeout": "300ms"}})

        def mute() -> Any:
            key = base64.b64encode(os.urandom(16))
            sock = rawClientHandshake(ep.port, "/wsk", key=key)
            head, rest = readHead(sock)
            assert head.startswith(b"HTTP/1.1 101"), head
            opcode, payload, rest = readFrame(sock, rest, 5)
            started = time.monotonic()
            try:
                while True:
                    opcode2, _, rest = readFrame(sock, rest, 5)
            except (EOFError, ConnectionResetError):
                return opcode, time.monotonic() - started
            finally:
                sock.close()

        opcode, dropped = yield self.inThread(mute)
        self.assertEqual(opcode, 0x9)
        self.assertLess(dropped, 3.0)

        def polite() -> Any:
            with connect(self.url(ep, "/wsk"), **clientOptions()) as ws:
                time.sleep(1.2)
                ws.send("still here")
                return ws.recv(timeout=5)

        answer = yield self.inThread(polite)
        self.assertEqual(answer, "still here")


class BackpressureTests(WebSocketTestCase):
    """
    A slow reader on one side pauses reading on the other; relayd's buffers
    stay small whatever the volume.
    """

    def buffered(self) -> int:
        total = 0
        for relay in self.relayer.relays:
            for leg in (relay.client, relay.backend):
                transport = leg.transport
                total += len(getattr(transport, "dataBuffer", b"")) + getattr(transport, "_tempDataLen", 0)
                total += len(leg.data)
        return total

    @defer.inlineCallbacks
    def sampleWhile(self, seconds: float) -> Any:
        peak = 0
        deadline = reactor.seconds() + seconds
        while reactor.seconds() < deadline:
            peak = max(peak, self.buffered())
            yield sleep(0.02)
        return peak

    @defer.inlineCallbacks
    def test_slowClient(self):
        """
        The server sends 64 MiB to a client that does not read: the server is
        held back, relayd buffers little, and once the client reads it gets
        every byte.
        """
        backend = self.backend(maxQueue=1)
        ep = self.startProxy(wskConfig(backend.url, extra={"middlewares": {"socket-replaceprefix": {"replacePath": {"path": "/flood"}}}}))
        go = threading.Event()
        expected = hashlib.sha256(bytes(range(256)) * 4096).digest()

        def client() -> Any:
            with connect(self.url(ep, "/wsk?count=64"), compression=None, max_queue=1, **clientOptions()) as ws:
                go.wait(20)
                good = 0
                for _ in range(64):
                    if hashlib.sha256(ws.recv()).digest() == expected:
                        good += 1
                ws.send("done")
                return good

        d = self.inThread(client)
        yield waitFor(lambda: self.relayer.relays, 10)
        peak = yield self.sampleWhile(1.5)
        heldBack = backend.sent
        go.set()
        good = yield d
        self.assertEqual(good, 64)
        self.assertLess(heldBack, 48, "the server was not held back")
        self.assertLess(peak, 4 * MIB, f"relayd buffered {peak} bytes")

    @defer.inlineCallbacks
    def test_slowServer(self):
        """
        The client sends 64 MiB to a server that does not read: the client is
        held back, relayd buffers little, and the server gets every byte.
        """
        backend = self.backend(maxQueue=1)
        ep = self.startProxy(wskConfig(backend.url, extra={"middlewares": {"socket-replaceprefix": {"replacePath": {"path": "/hold"}}}}))
        message = os.urandom(MIB)
        sent = [0]

        def client() -> Any:
            with connect(self.url(ep, "/wsk?count=64"), compression=None, **clientOptions()) as ws:
                for _ in range(64):
                    ws.send(message)
                    sent[0] += 1
                report = json.loads(ws.recv(timeout=30))
                ws.send("bye")
                return report

        d = self.inThread(client)
        yield waitFor(lambda: self.relayer.relays, 10)
        peak = yield self.sampleWhile(1.5)
        heldBack = sent[0]
        backend.release.set()
        report = yield d
        digest = hashlib.sha256()
        for _ in range(64):
            digest.update(message)
        self.assertEqual(report, {"count": 64, "sha256": digest.hexdigest()})
        self.assertLess(heldBack, 48, "the client was not held back")
        self.assertLess(peak, 4 * MIB, f"relayd buffered {peak} bytes")


# -- 3. wss:// servers ---------------------------------------------------------------------------


class SecureBackendTests(WebSocketTestCase):
    """
    https:// servers are spoken to as wss://, verified like HTTP upstreams.
    """

    def tlsBackend(self) -> Any:
        from tests.test_upstream_tls import pki

        authority = pki()
        directory = tempdir(self)
        cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
        with open(cert, "wb") as f:
            f.write(authority.serverCertPEM)
        with open(key, "wb") as f:
            f.write(authority.serverKeyPEM)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        return self.backend(sslContext=context), authority

    @defer.inlineCallbacks
    def test_verifiedServer(self):
        """
        An https:// server whose certificate the serversTransport's rootCAs
        verify is relayed to over wss://.
        """
        backend, authority = self.tlsBackend()
        config = wskConfig(f"https://127.0.0.1:{backend.port}", serversTransport="internal-ca")
        config["http"]["serversTransports"] = {"internal-ca": {"rootCAs": [authority.caPEM.decode()]}}
        ep = self.startProxy(config)

        def client() -> Any:
            with connect(self.url(ep, "/wsk"), **clientOptions()) as ws:
                ws.send("over tls")
                return ws.recv()

        answer = yield self.inThread(client)
        self.assertEqual(answer, "over tls")
        self.assertEqual(dict(backend.headers())["x-forwarded-proto"], ["ws"])

    @defer.inlineCallbacks
    def test_untrustedServer(self):
        """
        An https:// server whose certificate the default trust store does not
        verify gives the client 502.
        """
        backend, authority = self.tlsBackend()
        ep = self.startProxy(wskConfig(f"https://127.0.0.1:{backend.port}"))
        status = yield self.refusal(ep)
        self.assertEqual(status, 502)


class SecureEntryPointTests(WebSocketTestCase):
    """
    wss:// from the client: the WebSocket relay over relayd's TLS
    termination, with the certificate from relayd's store.
    """

    @defer.inlineCallbacks
    def test_wssClient(self):
        from tests.test_tls_store import material

        m = material()
        backend = self.backend()
        config = wskConfig(backend.url)
        config["http"]["routers"]["socket-router"]["tls"] = {}
        config["tls"] = {"certificates": [m.a.inline()]}
        ep = self.startProxy(config)
        context = ssl.create_default_context(cadata=m.ca.pem.decode())

        def client() -> Any:
            with connect(
                f"wss://a.test:{ep.port}/wsk",
                ssl=context,
                sock=socket.create_connection(("127.0.0.1", ep.port), timeout=5),
                **clientOptions(),
            ) as ws:
                ws.send("over wss")
                big = os.urandom(3 * MIB)
                ws.send(big)
                return ws.recv(), hashlib.sha256(ws.recv()).digest() == hashlib.sha256(big).digest()

        text, same = yield self.inThread(client)
        self.assertEqual((text, same), ("over wss", True))
        self.assertEqual(backend.headers()["x-forwarded-proto"], ["wss"])


# -- 4. reloads, statistics, shutdown ------------------------------------------------------------


class LifetimeTests(WebSocketTestCase):
    """
    Open WebSockets belong to no configuration generation.
    """

    @defer.inlineCallbacks
    def test_survivesReloadsAndRouterRemoval(self):
        """
        A WebSocket keeps relaying through 30 reloads, including ones that
        remove its router, while new upgrades follow the new configuration;
        its counts reach the relayer's statistics when it closes.
        """
        from relayd.config.dynamic import decodeDynamic
        from relayd.providers.base import ProviderUpdate

        backend = self.backend()
        ep = self.startProxy(wskConfig(backend.url), static={"providers": {"providersThrottleDuration": "0s"}})
        firstGeneration = self.watcher.runtime.generation
        commands: "queue.Queue[str | None]" = queue.Queue()
        answers: "queue.Queue[Any]" = queue.Queue()

        def client() -> None:
            with connect(self.url(ep, "/wsk"), **clientOptions()) as ws:
                while True:
                    command = commands.get(timeout=30)
                    if command is None:
                        break
                    ws.send(command)
                    answers.put(ws.recv(timeout=10))

        d = self.inThread(client)
        other = {"http": {"routers": {"elsewhere": {"rule": "PathPrefix(`/other`)", "service": "s2"}}, "services": {"s2": {"loadBalancer": {"servers": [{"url": backend.url}]}}}}}
        commands.put("open")
        answer = yield self.inThread(answers.get, True, 10)
        self.assertEqual(answer, "open")
        sent = len("open")
        changes, previous = 0, "wsk"
        for generation in range(30):
            kind = "wsk" if generation % 3 else "other"
            changes += kind != previous
            previous = kind
            config = wskConfig(backend.url) if kind == "wsk" else other
            self.watcher.update(ProviderUpdate("file", decodeDynamic(config)))
            self.assertIsNone(self.watcher.lastError)
            commands.put(f"message {generation}")
            sent += len(f"message {generation}")
            answer = yield self.inThread(answers.get, True, 10)
            self.assertEqual(answer, f"message {generation}")
        # The last generation has no /wsk router: new upgrades are not found.
        self.watcher.update(ProviderUpdate("file", decodeDynamic(other)))
        self.assertEqual(self.watcher.runtime.generation, firstGeneration + changes + 1)

        status = yield self.refusal(ep)
        self.assertEqual(status, 404)
        commands.put("still open")
        answer = yield self.inThread(answers.get, True, 10)
        self.assertEqual(answer, "still open")
        commands.put(None)
        yield d
        yield waitFor(lambda: self.relayer.stats.closed == 1, 5)
        stats = self.relayer.stats
        self.assertEqual((stats.opened, stats.messagesIn, stats.messagesOut), (1, 32, 32))
        self.assertEqual(stats.bytesIn, sent + len("still open"))
        self.assertEqual(stats.bytesOut, stats.bytesIn)
        self.assertGreater(stats.seconds, 0)


class ShutdownTests(WebSocketTestCase):
    """
    SIGTERM closes open WebSockets with 1001 once graceTimeOut has passed.
    """

    @defer.inlineCallbacks
    def test_sigterm(self):
        backend = self.backend()
        directory = tempdir(self)
        [port] = freePorts(1)
        writeFile(
            os.path.join(directory, "relayd.toml"),
            f"""
[entryPoints.web]
address = "127.0.0.1:{port}"
[entryPoints.web.transport.lifeCycle]
graceTimeOut = "1500ms"
[providers.file]
filename = "dynamic.toml"
""",
        )
        writeFile(
            os.path.join(directory, "dynamic.toml"),
            f"""
[http.routers.r]
rule = "PathPrefix(`/`)"
service = "s"
[[http.services.s.loadBalancer.servers]]
url = "{backend.url}"
""",
        )
        process = RelaydProcess(["--config", "relayd.toml"], directory)
        self.addCleanup(process.stop)
        yield process.waitForLog("entrypoint web listening")
        opened = threading.Event()

        def client() -> Any:
            with connect(f"ws://127.0.0.1:{port}/", **clientOptions()) as ws:
                ws.send("hi")
                ws.recv()
                opened.set()
                started = time.monotonic()
                try:
                    ws.recv(timeout=20)
                except ConnectionClosed as e:
                    return time.monotonic() - started, e.rcvd.code if e.rcvd else None
            return None, None

        d = self.inThread(client)
        yield self.inThread(opened.wait, 10)
        process.process.send_signal(signal.SIGTERM)
        waited, code = yield d
        self.assertEqual(code, 1001)
        self.assertGreater(waited, 1.2)
        self.assertLess(waited, 8)
        seen = yield self.inThread(backend.closes.get, True, 10)
        self.assertEqual(seen[0], 1001)
        status = yield self.inThread(process.process.wait, 15)
        self.assertEqual(status, 0, process.output()[-3000:])

