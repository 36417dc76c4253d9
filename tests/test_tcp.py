"""
Tests for TCP routers end to end: real loopback sockets between Python
clients (plain and ssl), relayd's entrypoint, and real TCP and TLS servers.
Every blocking client runs in a thread with socket timeouts, so every wait is
bounded.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import struct
import threading
import time
from typing import Any, Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import defer, protocol, reactor, threads
from twisted.internet import ssl as tssl
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from relayd.config.dynamic import decodeDynamic
from relayd.config.loader import effective
from relayd.config.schema import decode
from relayd.config.static import StaticConfig
from relayd.entrypoints import EntryPointService
from relayd.providers.base import ProviderUpdate
from relayd.watcher import Watcher
from tests.helpers import startBackend

TIMEOUT = 5.0


# -- certificates: a CA and one certificate per name --


class PKI:
    def __init__(self) -> None:
        self.caKey = ec.generate_private_key(ec.SECP256R1())
        self.caName = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relayd tcp test CA")])
        self.ca = self._sign(self.caName, self.caKey, ca=True)
        self.caPEM = self.ca.public_bytes(serialization.Encoding.PEM)
        self._issued: dict[str, tuple[bytes, bytes]] = {}

    def _sign(self, subject: x509.Name, key: Any, ca: bool = False, names: list[str] = ()) -> x509.Certificate:
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.caName if not ca else subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        return builder.sign(self.caKey, hashes.SHA256())

    def issue(self, name: str) -> tuple[bytes, bytes]:
        """
        A certificate and key (PEM) for C{name}, signed by the CA.
        """
        if name not in self._issued:
            key = ec.generate_private_key(ec.SECP256R1())
            cert = self._sign(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), key, names=[name])
            self._issued[name] = (
                cert.public_bytes(serialization.Encoding.PEM),
                key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
            )
        return self._issued[name]

    def serverOptions(self, name: str) -> Any:
        cert, key = self.issue(name)
        certificate = tssl.PrivateCertificate.loadPEM(cert + key)
        # Twisted refuses a handshake whose ALPN offer it cannot meet.
        return tssl.CertificateOptions(
            privateKey=certificate.privateKey.original,
            certificate=certificate.original,
            acceptableProtocols=[b"x-first", b"x-second", b"x-zero", b"h2", b"http/1.1"],
        )

    def clientContext(self, alpn: list[str] | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.caPEM.decode())
        if alpn:
            context.set_alpn_protocols(alpn)
        return context


_pki: list[PKI] = []


def pki() -> PKI:
    if not _pki:
        _pki.append(PKI())
    return _pki[0]


# -- servers --


@implementer(IHalfCloseableProtocol)
class _ServerConnection(protocol.Protocol):
    """
    Says its server's name on connect, then echoes; records what it got.
    """

    def connectionMade(self) -> None:
        self.received = b""
        self.eof = False
        self.peer = self.transport.getPeer()
        self.factory.connections.append(self)
        if self.factory.banner:
            self.transport.write(self.factory.name.encode() + b"\n")

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.factory.echo:
            self.transport.write(data)

    def readConnectionLost(self) -> None:
        self.eof = True
        reply = self.factory.onEOF
        if reply is not None:
            self.factory.later.append(reactor.callLater(self.factory.replyDelay, reply, self))
        else:
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Any) -> None:
        self.factory.closed.append(self)


class Server(protocol.Factory):
    def __init__(self, name: str, banner: bool = True, echo: bool = True) -> None:
        self.name = name
        self.banner = banner
        self.echo = echo
        self.onEOF: Callable[[Any], None] | None = None
        self.replyDelay = 0.0
        self.connections: list[_ServerConnection] = []
        self.closed: list[_ServerConnection] = []
        self.later: list[Any] = []
        self.protocol = _ServerConnection

    def cancelLater(self) -> None:
        for call in self.later:
            if call.active():
                call.cancel()


def listen(testCase: TestCase, factory: protocol.Factory, tlsName: str | None = None) -> int:
    if tlsName is None:
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    else:
        port = reactor.listenSSL(0, factory, pki().serverOptions(tlsName), interface="127.0.0.1")
    testCase.addCleanup(port.stopListening)
    return port.getHost().port


# -- clients (blocking, in threads) --


def inThread(fn: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
    return threads.deferToThread(fn, *args)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)


def readLine(sock: Any) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def readAll(sock: Any) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            return data
        if not chunk:
            return data
        data += chunk


def readExactly(sock: Any, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(min(262144, count - len(data)))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def closedWithoutData(port: int, send: bytes = b"") -> bool:
    """
    Whether relayd closes a new connection without sending anything.
    """
    with connect(port) as sock:
        if send:
            try:
                sock.sendall(send)
            except OSError:
                return True
        try:
            return sock.recv(100) == b""
        except ConnectionResetError:
            return True


def tlsExchange(port: int, serverName: str, alpn: list[str] | None = None, payload: bytes = b"ping\n") -> dict[str, Any]:
    """
    A TLS connection through relayd that verifies the server's certificate
    for C{serverName} against the test CA; returns what the server said.
    """
    context = pki().clientContext(alpn)
    with context.wrap_socket(connect(port), server_hostname=serverName) as sock:
        banner = readLine(sock)
        sock.sendall(payload)
        echo = readExactly(sock, len(payload))
        subject = dict(x[0] for x in sock.getpeercert()["subject"])
        return {"banner": banner, "echo": echo, "commonName": subject["commonName"], "alpn": sock.selected_alpn_protocol()}


def plainExchange(port: int, payload: bytes = b"ping\n") -> tuple[bytes, bytes]:
    with connect(port) as sock:
        banner = readLine(sock)
        sock.sendall(payload)
        return banner, readExactly(sock, len(payload))


def httpGet(port: int, host: str, prefix: bytes = b"", path: str = "/") -> tuple[int, dict[str, Any] | bytes]:
    """
    A plain HTTP/1.1 request (after C{prefix}, such as a PROXY header);
    returns the status and the JSON body of a test backend (or the raw body).
    """
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    with connect(port) as sock:
        sock.sendall(prefix + request)
        response = readAll(sock)
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


# -- PROXY protocol headers, parsed here independently of relayd --


def parseProxyHeader(data: bytes) -> tuple[int, tuple[str, int], tuple[str, int], bytes]:
    """
    (version, source, destination, rest) of data that starts with a PROXY
    header.
    """
    if data.startswith(b"PROXY "):
        line, _, rest = data.partition(b"\r\n")
        _, family, src, dst, sport, dport = line.decode().split(" ")
        assert family in ("TCP4", "TCP6"), family
        return 1, (src, int(sport)), (dst, int(dport)), rest
    signature = b"\r\n\r\n\x00\r\nQUIT\n"
    assert data.startswith(signature), data[:16]
    verCmd, family, length = struct.unpack("!BBH", data[12:16])
    assert verCmd == 0x21, verCmd
    block = data[16 : 16 + length]
    if family == 0x11:
        src, dst, sport, dport = struct.unpack("!4s4sHH", block[:12])
    else:
        assert family == 0x21, family
        src, dst, sport, dport = struct.unpack("!16s16sHH", block[:36])
    host = lambda raw: str(ipaddress.ip_address(raw))  # noqa: E731
    return 2, (host(src), sport), (host(dst), dport), data[16 + length :]


class TCPTestCase(TestCase):
    """
    Starts relayd's entrypoints in process, on a watcher fed with a dynamic
    configuration.
    """

    def start(self, dynamic: dict[str, Any], entryPoints: dict[str, Any] | None = None, static: dict[str, Any] | None = None) -> dict[str, EntryPointService]:
        entryPoints = entryPoints or {"tcp": {"address": "127.0.0.1:0"}}
        raw = {"entryPoints": entryPoints, "providers": {"providersThrottleDuration": "0s"}}
        raw.update(static or {})
        config, errors = decode(StaticConfig, raw)
        self.assertFalse(errors)
        config = effective(config)
        self.watcher = Watcher(reactor, config, reactor=reactor)
        self.update(dynamic)
        services = {}
        for name in entryPoints:
            ep = EntryPointService(name, config.entryPoints[name], reactor, self.watcher.runtime)
            self.watcher.addListener(ep.swap)
            ep.startService()
            self.addCleanup(ep.stopService)
            services[name] = ep
        self.addCleanup(self.watcher.stop)
        return services

    def update(self, dynamic: dict[str, Any]) -> None:
        self.watcher.update(ProviderUpdate("file", decodeDynamic(dynamic)))

    def waitFor(self, condition: Callable[[], bool], timeout: float = TIMEOUT) -> defer.Deferred[None]:
        """
        Fire once C{condition()} holds; fail after C{timeout} seconds.
        """
        deadline = time.monotonic() + timeout
        d: defer.Deferred[None] = defer.Deferred()

        def check() -> None:
            if condition():
                d.callback(None)
            elif time.monotonic() > deadline:
                d.errback(AssertionError("condition not reached in time"))
            else:
                reactor.callLater(0.02, check)

        check()
        return d


def tcpConfig(routers: dict[str, Any], services: dict[str, Any], **extra: Any) -> dict[str, Any]:
    tcp = {"routers": routers, "services": services}
    tcp.update(extra)
    return {"tcp": tcp}


def lb(*ports: int, **options: Any) -> dict[str, Any]:
    servers = [{"address": f"127.0.0.1:{p}"} for p in ports]
    config: dict[str, Any] = {"servers": servers}
    config.update(options)
    return {"loadBalancer": config}


class PlainTCPTests(TCPTestCase):
    @defer.inlineCallbacks
    def test_echoThroughCatchAll(self):
        """
        A HostSNI(`*`) router relays a plain TCP connection both ways, bytes
        unchanged, a megabyte included.
        """
        server = Server("one")
        port = listen(self, server)
        ep = self.start(tcpConfig({"r": {"rule": "HostSNI(`*`)", "service": "s"}}, {"s": lb(port)}))["tcp"]
        payload = bytes(range(256)) * 4096

        def exchange() -> tuple[bytes, bytes]:
            with connect(ep.port) as sock:
                banner = readLine(sock)
                sender = threading.Thread(target=sock.sendall, args=(payload,))
                sender.start()
                echoed = readExactly(sock, len(payload))
                sender.join(TIMEOUT)
                return banner, echoed

        banner, echoed = yield inThread(exchange)
        self.assertEqual(banner, b"one\n")
        self.assertEqual(echoed, payload)

    @defer.inlineCallbacks
    def test_serverSpeaksFirst(self):
        """
        With only plain TCP routers on the entrypoint, a connection is
        routed before the client sends anything, so the server's greeting
        arrives first.
        """
        port = listen(self, Server("greeter"))
        ep = self.start(tcpConfig({"r": {"rule": "HostSNI(`*`)", "service": "s"}}, {"s": lb(port)}))["tcp"]

        def greeting() -> bytes:
            with connect(ep.port) as sock:
                return readLine(sock)

        self.assertEqual((yield inThread(greeting)), b"greeter\n")

    @defer.inlineCallbacks
    def test_loadBalancerAndWeighted(self):
        """
        A load balancer alternates between its servers, and a weighted
        service spreads connections over its children by weight (3:1).
        """
        a, b, c = Server("a"), Server("b"), Server("c")
        pa, pb, pc = listen(self, a), listen(self, b), listen(self, c)
        ep = self.start(
            tcpConfig(
                {"r": {"rule": "HostSNI(`*`)", "service": "w"}},
                {
                    "w": {"weighted": {"services": [{"name": "ab", "weight": 3}, {"name": "c", "weight": 1}]}},
                    "ab": lb(pa, pb),
                    "c": lb(pc),
                },
            )
        )["tcp"]

        def banners() -> list[bytes]:
            result = []
            for _ in range(8):
                with connect(ep.port) as sock:
                    result.append(readLine(sock).strip())
            return result

        seen = yield inThread(banners)
        self.assertEqual(sorted(seen), [b"a"] * 3 + [b"b"] * 3 + [b"c"] * 2)
        self.assertEqual(seen[:2], [b"a", b"b"])

    @defer.inlineCallbacks
    def test_unreachableServerClosesClient(self):
        """
        A server that refuses the connection makes relayd close the client's.
        """
        (port,) = _freePorts(1)
        ep = self.start(tcpConfig({"r": {"rule": "HostSNI(`*`)", "service": "s"}}, {"s": lb(port)}))["tcp"]
        self.assertTrue((yield inThread(closedWithoutData, ep.port)))
        yield self.waitFor(lambda: not ep.site.tunnels)

    @defer.inlineCallbacks
    def test_clientIPMatcher(self):
        """
        ClientIP routes plain connections by the client's address.
        """
        a, b = Server("a"), Server("b")
        pa, pb = listen(self, a), listen(self, b)
        ep = self.start(
            tcpConfig(
                {
                    "other": {"rule": "ClientIP(`10.0.0.0/8`)", "service": "a"},
                    "local": {"rule": "ClientIP(`127.0.0.1`)", "service": "b"},
                },
                {"a": lb(pa), "b": lb(pb)},
            )
        )["tcp"]
        banner, _ = yield inThread(plainExchange, ep.port)
        self.assertEqual(banner, b"b\n")

    @defer.inlineCallbacks
    def test_httpWhenNoTCPRouterMatches(self):
        """
        A plain connection that no TCP router matches is served by the HTTP
        routers of the same entrypoint; one that matches goes to TCP.
        """
        server = Server("tcp")
        port = listen(self, server)
        backend = startBackend("http")[0]
        self.addCleanup(backend.stopListening)
        config = tcpConfig(
            {"r": {"rule": "ClientIP(`10.0.0.0/8`)", "service": "s", "entryPoints": ["web"]}, "all": {"rule": "HostSNI(`*`)", "service": "s", "entryPoints": ["tcp"]}},
            {"s": lb(port)},
        )
        config["http"] = {
            "routers": {"h": {"rule": "PathPrefix(`/`)", "service": "h", "entryPoints": ["web", "tcp"]}},
            "services": {"h": {"loadBalancer": {"servers": [{"url": f"http://127.0.0.1:{backend.getHost().port}"}]}}},
        }
        eps = self.start(config, entryPoints={"web": {"address": "127.0.0.1:0"}, "tcp": {"address": "127.0.0.1:0"}})
        status, body = yield inThread(httpGet, eps["web"].port, "x")
        self.assertEqual((status, body["backend"]), (200, "http"))
        banner, _ = yield inThread(plainExchange, eps["tcp"].port)
        self.assertEqual(banner, b"tcp\n")

    @defer.inlineCallbacks
    def test_reloadLeavesConnectionsAlone(self):
        """
        A connection keeps its server after a reload that removes its
        router; new connections follow the new configuration.
        """
        server = Server("old")
        port = listen(self, server)
        ep = self.start(tcpConfig({"r": {"rule": "HostSNI(`*`)", "service": "s"}}, {"s": lb(port)}))["tcp"]
        sock = yield inThread(connect, ep.port)
        self.addCleanup(sock.close)
        self.assertEqual((yield inThread(readLine, sock)), b"old\n")
        backend = startBackend("http")[0]
        self.addCleanup(backend.stopListening)
        self.update(
            {
                "http": {
                    "routers": {"h": {"rule": "PathPrefix(`/`)", "service": "h"}},
                    "services": {"h": {"loadBalancer": {"servers": [{"url": f"http://127.0.0.1:{backend.getHost().port}"}]}}},
                }
            }
        )
        self.assertIsNone(self.watcher.runtime.tcpTable("tcp"))
        status, body = yield inThread(httpGet, ep.port, "x")
        self.assertEqual((status, body["backend"]), (200, "http"))
        yield inThread(sock.sendall, b"still here\n")
        self.assertEqual((yield inThread(readExactly, sock, 11)), b"still here\n")

    @defer.inlineCallbacks
    def test_shutdownClosesRelaysAfterGrace(self):
        """
        At shutdown an open relay is waited for up to graceTimeOut, then
        both of its connections are closed.
        """
        server = Server("s")
        port = listen(self, server)
        ep = self.start(
            tcpConfig({"r": {"rule": "HostSNI(`*`)", "service": "s"}}, {"s": lb(port)}),
            entryPoints={"tcp": {"address": "127.0.0.1:0", "transport": {"lifeCycle": {"graceTimeOut": "0.3s"}}}},
        )["tcp"]
        sock = yield inThread(connect, ep.port)
        self.addCleanup(sock.close)
        yield inThread(readLine, sock)
        started = time.monotonic()
        yield ep.stopService()
        self.assertGreaterEqual(time.monotonic() - started, 0.25)
        self.assertEqual((yield inThread(readAll, sock)), b"")
        yield self.waitFor(lambda: len(server.closed) == 1)


def _freePorts(count: int) -> list[int]:
    from tests.helpers import freePorts

    return freePorts(count)


class PassthroughTests(TCPTestCase):
    def twoTLSServers(self) -> tuple[Server, Server, int, int]:
        a, b = Server("a"), Server("b")
        return a, b, listen(self, a, tlsName="a.test"), listen(self, b, tlsName="b.example.org")

    @defer.inlineCallbacks
    def test_passthroughBySNI(self):
        """
        Passthrough routers pick the server by SNI (HostSNI, HostSNIRegexp)
        without terminating TLS: the client verifies each server's own
        certificate through relayd.
        """
        a, b, pa, pb = self.twoTLSServers()
        ep = self.start(
            tcpConfig(
                {
                    "a": {"rule": "HostSNI(`a.test`)", "service": "a", "tls": {"passthrough": True}},
                    "b": {"rule": "HostSNIRegexp(`^b\\.example\\.(org|net)$`)", "service": "b", "tls": {"passthrough": True}},
                },
                {"a": lb(pa), "b": lb(pb)},
            )
        )["tcp"]
        first = yield inThread(tlsExchange, ep.port, "a.test")
        second = yield inThread(tlsExchange, ep.port, "b.example.org")
        self.assertEqual((first["banner"], first["commonName"], first["echo"]), (b"a\n", "a.test", b"ping\n"))
        self.assertEqual((second["banner"], second["commonName"]), (b"b\n", "b.example.org"))

    @defer.inlineCallbacks
    def test_sniIsMatchedLowerCased(self):
        """
        The SNI is matched lower-cased, as Traefik does.
        """
        a, b, pa, pb = self.twoTLSServers()
        ep = self.start(
            tcpConfig(
                {"a": {"rule": "HostSNI(`a.test`)", "service": "a", "tls": {"passthrough": True}}},
                {"a": lb(pa)},
            )
        )["tcp"]

        def mixedCase() -> bytes:
            context = pki().clientContext()
            context.check_hostname = False
            with context.wrap_socket(connect(ep.port), server_hostname="A.Test") as sock:
                return readLine(sock)

        self.assertEqual((yield inThread(mixedCase)), b"a\n")

    @defer.inlineCallbacks
    def test_alpnMatcher(self):
        """
        ALPN routes TLS connections by the protocols the client offers.
        """
        a, b, pa, pb = self.twoTLSServers()
        ep = self.start(
            tcpConfig(
                {
                    "x": {"rule": "HostSNI(`a.test`) && ALPN(`x-first`)", "service": "a", "tls": {"passthrough": True}},
                    "y": {"rule": "ALPN(`x-second`)", "service": "b", "tls": {"passthrough": True}},
                },
                {"a": lb(pa), "b": lb(pb)},
            )
        )["tcp"]

        def banner(protocols: list[str]) -> bytes:
            context = pki().clientContext(protocols)
            context.check_hostname = False
            with context.wrap_socket(connect(ep.port), server_hostname="a.test") as sock:
                return readLine(sock)

        self.assertEqual((yield inThread(banner, ["x-first"])), b"a\n")
        self.assertEqual((yield inThread(banner, ["x-zero", "x-second"])), b"b\n")

    @defer.inlineCallbacks
    def test_priorityAndCatchAll(self):
        """
        Routes are tried by priority (rule length unless set); a TLS
        HostSNI(`*`) catch-all takes what no other router matches.
        """
        a, b, pa, pb = self.twoTLSServers()
        ep = self.start(
            tcpConfig(
                {
                    "regexp": {"rule": "HostSNIRegexp(`\\.test$`)", "service": "b", "tls": {"passthrough": True}},
                    "exact": {"rule": "HostSNI(`a.test`)", "service": "a", "tls": {"passthrough": True}, "priority": 100},
                    "all": {"rule": "HostSNI(`*`)", "service": "b", "tls": {"passthrough": True}},
                },
                {"a": lb(pa), "b": lb(pb)},
            )
        )["tcp"]

        def banner(name: str) -> bytes:
            context = pki().clientContext()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            with context.wrap_socket(connect(ep.port), server_hostname=name) as sock:
                return readLine(sock)

        self.assertEqual((yield inThread(banner, "a.test")), b"a\n")
        self.assertEqual((yield inThread(banner, "z.test")), b"b\n")
        self.assertEqual((yield inThread(banner, "elsewhere.org")), b"b\n")

    @defer.inlineCallbacks
    def test_plainHTTPBesidePassthrough(self):
        """
        With only a passthrough router on an entrypoint, plain HTTP still
        reaches the HTTP routers, and plain bytes match no TLS router.
        """
        a, b, pa, pb = self.twoTLSServers()
        backend = startBackend("web")[0]
        self.addCleanup(backend.stopListening)
        config = tcpConfig(
            {"a": {"rule": "HostSNI(`a.test`)", "service": "a", "tls": {"passthrough": True}}},
            {"a": lb(pa)},
        )
        config["http"] = {
            "routers": {"web": {"rule": "Host(`web.test`)", "service": "web"}},
            "services": {"web": {"loadBalancer": {"servers": [{"url": f"http://127.0.0.1:{backend.getHost().port}"}]}}},
        }
        ep = self.start(config)["tcp"]
        status, body = yield inThread(httpGet, ep.port, "web.test")
        self.assertEqual((status, body["backend"]), (200, "web"))
        result = yield inThread(tlsExchange, ep.port, "a.test")
        self.assertEqual(result["banner"], b"a\n")

    @defer.inlineCallbacks
    def test_plainAndTLSRoutersTogether(self):
        """
        On an entrypoint with both, a TLS connection goes to the TLS router
        and a plain one to the plain HostSNI(`*`) router (after it sends).
        """
        a, b, pa, pb = self.twoTLSServers()
        plain = Server("plain")
        pp = listen(self, plain)
        ep = self.start(
            tcpConfig(
                {
                    "a": {"rule": "HostSNI(`a.test`)", "service": "a", "tls": {"passthrough": True}},
                    "plain": {"rule": "HostSNI(`*`)", "service": "plain"},
                },
                {"a": lb(pa), "plain": lb(pp)},
            )
        )["tcp"]
        result = yield inThread(tlsExchange, ep.port, "a.test")
        self.assertEqual(result["banner"], b"a\n")

        def plainFirst() -> bytes:
            with connect(ep.port) as sock:
                sock.sendall(b"hello\n")
                return readLine(sock) + readLine(sock)

        self.assertEqual((yield inThread(plainFirst)), b"plain\nhello\n")

    @defer.inlineCallbacks
    def test_clientHelloInPieces(self):
        """
        A ClientHello that arrives a few bytes at a time is still routed by
        its SNI.
        """
        a, b, pa, pb = self.twoTLSServers()
        ep = self.start(
            tcpConfig(
                {"b": {"rule": "HostSNI(`b.example.org`)", "service": "b", "tls": {"passthrough": True}}},
                {"b": lb(pb)},
            )
        )["tcp"]

        def trickle() -> bytes:
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = pki().clientContext().wrap_bio(incoming, outgoing, server_hostname="b.example.org")
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                pass
            hello = outgoing.read()
            with connect(ep.port) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for i in range(0, len(hello), 7):
                    sock.sendall(hello[i : i + 7])
                    time.sleep(0.002)
                while True:
                    try:
                        tls.do_handshake()
                        break
                    except ssl.SSLWantReadError:
                        data = sock.recv(65536)
                        if not data:
                            raise ConnectionError("closed during the handshake")
                        incoming.write(data)
                    sock.sendall(outgoing.read())
                sock.sendall(outgoing.read())
                line = b""
                while not line.endswith(b"\n"):
                    try:
                        line += tls.read(100)
                    except ssl.SSLWantReadError:
                        incoming.write(sock.recv(65536))
                return line

        self.assertEqual((yield inThread(trickle)), b"b\n")

    @defer.inlineCallbacks
    def test_malformedClientHello(self):
        """
        TLS records that carry no valid ClientHello close the connection
        (as Traefik does); bytes that only start with the handshake type
        but are no TLS record are plain TCP.
        """
        a, b, pa, pb = self.twoTLSServers()
        plain = Server("plain")
        pp = listen(self, plain)
        ep = self.start(
            tcpConfig(
                {
                    "a": {"rule": "HostSNI(`a.test`)", "service": "a", "tls": {"passthrough": True}},
                    "plain": {"rule": "HostSNI(`*`)", "service": "plain"},
                },
                {"a": lb(pa), "plain": lb(pp)},
            )
        )["tcp"]
        # A handshake record holding a ServerHello (type 2).
        bad = b"\x16\x03\x01\x00\x08\x02\x00\x00\x04\x03\x03\x00\x00"
        self.assertTrue((yield inThread(closedWithoutData, ep.port, bad)))

        def notTLS() -> bytes:
            with connect(ep.port) as sock:
                sock.sendall(b"\x16hello\n")
                return readLine(sock)

        self.assertEqual((yield inThread(notTLS)), b"plain\n")
        self.assertEqual(plain.connections[0].received, b"\x16hello\n")


def _receivedAtLeast(server: Server, count: int) -> Callable[[], bool]:
    return lambda: bool(server.connections) and len(server.connections[0].received) >= count


class ProxyProtocolTests(TCPTestCase):
    @defer.inlineCallbacks
    def test_headersToServers(self):
        """
        A service sends a PROXY header of the version asked (through the
        deprecated load balancer key or a serversTransport) with the client's
        address and the address it connected to, before its bytes.
        """
        one, two = Server("one", banner=False, echo=False), Server("two", banner=False, echo=False)
        p1, p2 = listen(self, one), listen(self, two)
        eps = self.start(
            tcpConfig(
                {
                    "v1": {"rule": "HostSNI(`*`)", "service": "v1", "entryPoints": ["first"]},
                    "v2": {"rule": "HostSNI(`*`)", "service": "v2", "entryPoints": ["second"]},
                },
                {
                    "v1": lb(p1, proxyProtocol={"version": 1}),
                    "v2": lb(p2, serversTransport="pp"),
                },
                serversTransports={"pp": {"proxyProtocol": {"version": 2}}},
            ),
            entryPoints={"first": {"address": "127.0.0.1:0"}, "second": {"address": "127.0.0.1:0"}},
        )
        for name, server, version in (("first", one, 1), ("second", two, 2)):
            port = eps[name].port
            sock = yield inThread(connect, port)
            self.addCleanup(sock.close)
            yield inThread(sock.sendall, b"hello")
            yield self.waitFor(lambda: server.connections and server.connections[0].received.endswith(b"hello"))
            got = parseProxyHeader(server.connections[0].received)
            self.assertEqual(got, (version, sock.getsockname(), ("127.0.0.1", port), b"hello"))

    def proxied(self, trusted: list[str], dynamic: dict[str, Any] | None = None) -> EntryPointService:
        backend = startBackend("web")[0]
        self.addCleanup(backend.stopListening)
        config = dynamic or {}
        config["http"] = {
            "routers": {"web": {"rule": "PathPrefix(`/`)", "service": "web"}},
            "services": {"web": {"loadBalancer": {"servers": [{"url": f"http://127.0.0.1:{backend.getHost().port}"}]}}},
        }
        return self.start(config, entryPoints={"tcp": {"address": "127.0.0.1:0", "proxyProtocol": {"trustedIPs": trusted}}})["tcp"]

    @defer.inlineCallbacks
    def test_entryPointAcceptsTrustedHeaders(self):
        """
        From a trusted address, a PROXY header (version 1 or 2) sets the
        client address HTTP backends see in X-Forwarded-For; a connection
        without a header is served too.
        """
        ep = self.proxied(["127.0.0.0/8"])
        v1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 80\r\n"
        status, body = yield inThread(httpGet, ep.port, "x", v1)
        self.assertEqual((status, body["headers"]["x-forwarded-for"]), (200, ["203.0.113.7"]))
        v2 = _v2Header("2001:db8::7", "2001:db8::1", 40000, 80)
        status, body = yield inThread(httpGet, ep.port, "x", v2)
        self.assertEqual(body["headers"]["x-forwarded-for"], ["2001:db8::7"])
        status, body = yield inThread(httpGet, ep.port, "x")
        self.assertEqual(body["headers"]["x-forwarded-for"], ["127.0.0.1"])

    @defer.inlineCallbacks
    def test_entryPointIgnoresUntrustedHeaders(self):
        """
        From an address outside trustedIPs the header is read and dropped,
        as Traefik does: the socket's peer stays the client address.
        """
        ep = self.proxied(["10.0.0.0/8"])
        v1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 80\r\n"
        status, body = yield inThread(httpGet, ep.port, "x", v1)
        self.assertEqual((status, body["headers"]["x-forwarded-for"]), (200, ["127.0.0.1"]))

    @defer.inlineCallbacks
    def test_badHeaderCloses(self):
        """
        A header that starts right and does not parse closes the connection.
        """
        ep = self.proxied(["127.0.0.1"])
        self.assertTrue((yield inThread(closedWithoutData, ep.port, b"PROXY TCP4 nonsense\r\nGET / HTTP/1.1\r\n\r\n")))

    @defer.inlineCallbacks
    def test_clientAddressForTCPRouters(self):
        """
        The address of an accepted PROXY header is what ClientIP matches and
        what a service's own PROXY header carries on, with the destination
        the header named.
        """
        near, far = Server("near", banner=False, echo=False), Server("far", banner=False, echo=False)
        pn, pf = listen(self, near), listen(self, far)
        config = tcpConfig(
            {
                "near": {"rule": "ClientIP(`127.0.0.1`)", "service": "near"},
                "far": {"rule": "ClientIP(`203.0.113.0/24`)", "service": "far"},
            },
            {"near": lb(pn), "far": lb(pf, proxyProtocol={"version": 1})},
        )
        ep = self.start(config, entryPoints={"tcp": {"address": "127.0.0.1:0", "proxyProtocol": {"insecure": True}}})["tcp"]
        sock = yield inThread(connect, ep.port)
        self.addCleanup(sock.close)
        yield inThread(sock.sendall, b"PROXY TCP4 203.0.113.9 198.51.100.1 41000 5432\r\nhi")
        yield self.waitFor(lambda: far.connections and far.connections[0].received.endswith(b"hi"))
        got = parseProxyHeader(far.connections[0].received)
        self.assertEqual(got, (1, ("203.0.113.9", 41000), ("198.51.100.1", 5432), b"hi"))
        self.assertEqual(near.connections, [])


def _v2Header(source: str, destination: str, sourcePort: int, destinationPort: int) -> bytes:
    src, dst = ipaddress.ip_address(source), ipaddress.ip_address(destination)
    family = 0x11 if src.version == 4 else 0x21
    block = src.packed + dst.packed + struct.pack("!HH", sourcePort, destinationPort)
    return b"\r\n\r\n\x00\r\nQUIT\n" + struct.pack("!BBH", 0x21, family, len(block)) + block


class MiddlewareTests(TCPTestCase):
    @defer.inlineCallbacks
    def test_ipAllowList(self):
        """
        ipAllowList closes connections from outside its sourceRange and
        relays the others.
        """
        server = Server("s")
        port = listen(self, server)
        eps = self.start(
            tcpConfig(
                {
                    "deny": {"rule": "HostSNI(`*`)", "service": "s", "entryPoints": ["deny"], "middlewares": ["lan"]},
                    "allow": {"rule": "HostSNI(`*`)", "service": "s", "entryPoints": ["allow"], "middlewares": ["local"]},
                },
                {"s": lb(port)},
                middlewares={
                    "lan": {"ipAllowList": {"sourceRange": ["10.0.0.0/8"]}},
                    "local": {"ipWhiteList": {"sourceRange": ["127.0.0.1/32"]}},
                },
            ),
            entryPoints={"deny": {"address": "127.0.0.1:0"}, "allow": {"address": "127.0.0.1:0"}},
        )
        self.assertTrue((yield inThread(closedWithoutData, eps["deny"].port)))
        self.assertEqual((yield inThread(plainExchange, eps["allow"].port))[0], b"s\n")
        self.assertEqual(len(server.connections), 1)

    @defer.inlineCallbacks
    def test_inFlightConn(self):
        """
        inFlightConn closes a client's connection beyond C{amount} open ones;
        once one closes, a new one is served; the count survives a reload
        that leaves the middleware unchanged.
        """
        server = Server("s")
        port = listen(self, server)
        config = tcpConfig(
            {"r": {"rule": "HostSNI(`*`)", "service": "s", "middlewares": ["one"]}},
            {"s": lb(port)},
            middlewares={"one": {"inFlightConn": {"amount": 1}}},
        )
        ep = self.start(config)["tcp"]
        first = yield inThread(connect, ep.port)
        self.addCleanup(first.close)
        self.assertEqual((yield inThread(readLine, first)), b"s\n")
        config["tcp"]["services"]["unused"] = lb(port)
        self.update(config)
        self.assertTrue((yield inThread(closedWithoutData, ep.port)))
        first.close()
        yield self.waitFor(lambda: len(server.closed) == 1)
        yield self.waitFor(lambda: not ep.site.tunnels)
        self.assertEqual((yield inThread(plainExchange, ep.port))[0], b"s\n")


class _Flood:
    """
    A blocking server in a thread that sends C{total} bytes to its first
    client as fast as the connection takes them.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.sent = 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.settimeout(TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(20)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            chunk = bytes(range(256)) * 256
            try:
                while self.sent < self.total:
                    conn.sendall(chunk)
                    self.sent += len(chunk)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
        self.thread.join(TIMEOUT)


def _buffered(transport: Any) -> int:
    return len(transport.dataBuffer) + transport._tempDataLen


class FlowTests(TCPTestCase):
    @defer.inlineCallbacks
    def test_slowReaderBoundsBuffering(self):
        """
        While the client does not read, relayd stops reading from the
        server, which stalls: a few hundred kilobytes wait in relayd at
        most (the rest in the kernels' socket buffers), and all 32 MB arrive
        intact once the client reads.
        """
        total = 32 * 1024 * 1024
        flood = _Flood(total)
        self.addCleanup(flood.close)
        ep = self.start(tcpConfig({"r": {"rule": "HostSNI(`*`)", "service": "s"}}, {"s": lb(flood.port)}))["tcp"]
        sock = yield inThread(connect, ep.port)
        self.addCleanup(sock.close)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        yield self.waitFor(lambda: flood.sent > 0 and len(ep.site.tunnels) == 1)
        relay = next(iter(ep.site.tunnels))
        # The server stalls once relayd and the kernels hold what they take.
        stalled = -1
        deadline = time.monotonic() + TIMEOUT
        while flood.sent != stalled and time.monotonic() < deadline:
            stalled = flood.sent
            yield _sleep(0.3)
        self.assertEqual(flood.sent, stalled)
        self.assertLess(stalled, total // 2)
        self.assertLess(_buffered(relay.client.transport) + _buffered(relay.server.transport), 512 * 1024)

        def readEverything() -> tuple[int, bool]:
            data = readExactly(sock, total)
            pattern = bytes(range(256)) * 256
            return len(data), data[: len(pattern)] == pattern and data[-len(pattern) :] == pattern

        self.assertEqual((yield inThread(readEverything)), (total, True))

    def halfClosing(self, delay: str | None, replyDelay: float = 0.0) -> tuple[Server, dict[str, Any]]:
        server = Server("s")
        server.replyDelay = replyDelay

        def reply(connection: _ServerConnection) -> None:
            connection.transport.write(b"got %d\n" % len(connection.received))
            connection.transport.loseConnection()

        server.onEOF = reply
        self.addCleanup(server.cancelLater)
        port = listen(self, server)
        options = {"serversTransport": "t"} if delay is not None else {}
        transports = {"t": {"terminationDelay": delay}} if delay is not None else {}
        return server, tcpConfig({"r": {"rule": "HostSNI(`*`)", "service": "s"}}, {"s": lb(port, **options)}, serversTransports=transports)

    @defer.inlineCallbacks
    def test_halfClose(self):
        """
        The client's FIN reaches the server as a FIN, and the server's
        answer after it still reaches the client within terminationDelay;
        then both connections close.
        """
        server, config = self.halfClosing("5s", replyDelay=0.2)
        ep = self.start(config)["tcp"]

        def exchange() -> bytes:
            with connect(ep.port) as sock:
                sock.sendall(b"abc")
                time.sleep(0.1)
                sock.shutdown(socket.SHUT_WR)
                return readAll(sock)

        self.assertEqual((yield inThread(exchange)), b"s\nabcgot 3\n")
        self.assertTrue(server.connections[0].eof)
        yield self.waitFor(lambda: not ep.site.tunnels)

    @defer.inlineCallbacks
    def test_terminationDelayCutsTheOtherDirection(self):
        """
        With the default terminationDelay (0, as Traefik's default
        transport), the connection closes right after the client's FIN, and
        a later answer is lost.
        """
        server, config = self.halfClosing(None, replyDelay=1.0)
        ep = self.start(config)["tcp"]

        def exchange() -> tuple[bytes, float]:
            with connect(ep.port) as sock:
                self.assertEqual(readLine(sock), b"s\n")
                started = time.monotonic()
                sock.shutdown(socket.SHUT_WR)
                return readAll(sock), time.monotonic() - started

        data, elapsed = yield inThread(exchange)
        self.assertEqual(data, b"")
        self.assertLess(elapsed, 0.9)
        yield self.waitFor(lambda: server.connections[0].eof and not ep.site.tunnels)

    @defer.inlineCallbacks
    def test_resetClosesTheOtherSide(self):
        """
        A client that resets its connection makes relayd close the server's.
        """
        server = Server("s")
        port = listen(self, server)
        ep = self.start(tcpConfig({"r": {"rule": "HostSNI(`*`)", "service": "s"}}, {"s": lb(port)}))["tcp"]

        def reset() -> None:
            sock = connect(ep.port)
            readLine(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()

        yield inThread(reset)
        yield self.waitFor(lambda: len(server.closed) == 1 and not ep.site.tunnels)


def _sleep(seconds: float) -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


class ServerTLSTests(TCPTestCase):
    @defer.inlineCallbacks
    def test_tlsToServers(self):
        """
        A server with tls=true is reached over TLS, verified against the
        serversTransport's rootCAs; a server whose certificate does not
        verify gets no connection through, and the client is closed.
        """
        secure = Server("secure")
        port = listen(self, secure, tlsName="a.test")
        ca = pki().caPEM.decode()
        ep = self.start(
            tcpConfig(
                {
                    "good": {"rule": "HostSNI(`*`)", "service": "good", "entryPoints": ["good"]},
                    "bad": {"rule": "HostSNI(`*`)", "service": "bad", "entryPoints": ["bad"]},
                },
                {
                    "good": {"loadBalancer": {"servers": [{"address": f"127.0.0.1:{port}", "tls": True}], "serversTransport": "ca"}},
                    "bad": {"loadBalancer": {"servers": [{"address": f"127.0.0.1:{port}", "tls": True}], "serversTransport": "wrong"}},
                },
                serversTransports={
                    "ca": {"tls": {"rootCAs": [ca], "serverName": "a.test"}},
                    "wrong": {"tls": {"rootCAs": [ca], "serverName": "other.test"}},
                },
            ),
            entryPoints={"good": {"address": "127.0.0.1:0"}, "bad": {"address": "127.0.0.1:0"}},
        )
        self.assertEqual((yield inThread(plainExchange, ep["good"].port)), (b"secure\n", b"ping\n"))
        self.assertTrue((yield inThread(closedWithoutData, ep["bad"].port)))
        # Both relays end when their client leaves (TLS close included).
        yield self.waitFor(lambda: not ep["good"].site.tunnels and not ep["bad"].site.tunnels)


def httpsGet(port: int, serverName: str, verify: bool = True) -> tuple[int, Any, str]:
    """
    An HTTPS request through relayd: (status, JSON body or raw body,
    common name of the certificate relayd served).
    """
    context = pki().clientContext(["http/1.1"])
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    with context.wrap_socket(connect(port), server_hostname=serverName) as sock:
        der = sock.getpeercert(binary_form=True)
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {serverName}\r\nConnection: close\r\n\r\n".encode())
        response = readAll(sock)
    commonName = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    head, _, body = response.partition(b"\r\n\r\n")
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        parsed = body
    return int(head.split(b" ")[1]), parsed, commonName


def certificates(*names: str) -> list[dict[str, str]]:
    return [{"certFile": pki().issue(n)[0].decode(), "keyFile": pki().issue(n)[1].decode()} for n in names]


class TLSTests(TCPTestCase):
    @defer.inlineCallbacks
    def test_terminatingRouter(self):
        """
        A TCP router without passthrough ends TLS with the certificate for
        the SNI and relays the plaintext to a plain server.
        """
        plain = Server("plain")
        port = listen(self, plain)
        config = tcpConfig({"t": {"rule": "HostSNI(`term.test`)", "service": "s", "tls": {}}}, {"s": lb(port)})
        config["tls"] = {"certificates": certificates("term.test")}
        ep = self.start(config)["tcp"]
        result = yield inThread(tlsExchange, ep.port, "term.test")
        self.assertEqual((result["banner"], result["echo"], result["commonName"]), (b"plain\n", b"ping\n", "term.test"))
        self.assertEqual(plain.connections[0].received, b"ping\n")
        yield self.waitFor(lambda: not ep.site.tunnels and len(plain.closed) == 1)

    def mixed(self, tcpRouters: dict[str, Any], httpRule: str = "Host(`web.test`)") -> EntryPointService:
        a, b = Server("a"), Server("b")
        pa, pb = listen(self, a, tlsName="a.test"), listen(self, b, tlsName="b.example.org")
        backend = startBackend("web")[0]
        self.addCleanup(backend.stopListening)
        config = tcpConfig(tcpRouters, {"a": lb(pa), "b": lb(pb)})
        config["http"] = {
            "routers": {"web": {"rule": httpRule, "service": "web", "tls": {}}},
            "services": {"web": {"loadBalancer": {"servers": [{"url": f"http://127.0.0.1:{backend.getHost().port}"}]}}},
        }
        config["tls"] = {"certificates": certificates("web.test")}
        return self.start(config)["tcp"]

    @defer.inlineCallbacks
    def test_httpsRouterBesideTCPRouters(self):
        """
        An HTTPS router gets the connections for its host even when a TLS
        TCP router would match them too; other names go to the TCP routers,
        the HostSNI(`*`) catch-all last.
        """
        ep = self.mixed(
            {
                "test": {"rule": "HostSNIRegexp(`\\.test$`)", "service": "a", "tls": {"passthrough": True}},
                "all": {"rule": "HostSNI(`*`)", "service": "b", "tls": {"passthrough": True}},
            }
        )
        status, body, commonName = yield inThread(httpsGet, ep.port, "web.test")
        self.assertEqual((status, body["backend"], commonName), (200, "web", "web.test"))
        self.assertEqual((yield inThread(tlsExchange, ep.port, "a.test"))["banner"], b"a\n")
        self.assertEqual((yield inThread(tlsExchange, ep.port, "b.example.org"))["banner"], b"b\n")

    @defer.inlineCallbacks
    def test_httpsCatchAllBeforeTCPCatchAll(self):
        """
        An HTTPS router without a Host rule takes the names no specific TCP
        router matches, before a TCP HostSNI(`*`) router.
        """
        ep = self.mixed(
            {
                "a": {"rule": "HostSNI(`a.test`)", "service": "a", "tls": {"passthrough": True}},
                "all": {"rule": "HostSNI(`*`)", "service": "b", "tls": {"passthrough": True}},
            },
            httpRule="PathPrefix(`/`)",
        )
        self.assertEqual((yield inThread(tlsExchange, ep.port, "a.test"))["banner"], b"a\n")
        status, body, _ = yield inThread(httpsGet, ep.port, "elsewhere.test", False)
        self.assertEqual((status, body["backend"]), (200, "web"))

    @defer.inlineCallbacks
    def test_unclaimedNameGoesToHTTPS(self):
        """
        A server name no TCP router matches is served by HTTPS (here a 404
        from relayd with its default certificate).
        """
        ep = self.mixed({"a": {"rule": "HostSNI(`a.test`)", "service": "a", "tls": {"passthrough": True}}})
        status, body, _ = yield inThread(httpsGet, ep.port, "nobody.test", False)
        self.assertEqual((status, body), (404, b"404 page not found\n"))


class DocumentationTests(TestCase):
    def test_exampleChecksClean(self):
        """
        The example of docs/tcp-udp.rst passes C{relayd check} with no
        warning, every router and service enabled.
        """
        import io
        import os

        from relayd.cli import main
        from tests.helpers import ROOT, tempdir
        from tests.test_examples import _literalBlock

        with open(os.path.join(ROOT, "docs", "tcp-udp.rst"), encoding="utf-8") as f:
            dynamic = _literalBlock(f.read(), "An example, in a dynamic file")
        directory = tempdir(self)
        with open(os.path.join(directory, "dynamic.yaml"), "w") as f:
            f.write(dynamic)
        with open(os.path.join(directory, "relayd.toml"), "w") as f:
            f.write(
                "[entryPoints.db]\naddress = ':5432'\n[entryPoints.websecure]\naddress = ':443'\n"
                "[entryPoints.ssh]\naddress = ':2222'\n[entryPoints.dns]\naddress = ':53/udp'\n"
                f"[providers.file]\nfilename = '{os.path.join(directory, 'dynamic.yaml')}'\n"
            )
        out = io.StringIO()
        self.assertEqual(main(["check", "--config", os.path.join(directory, "relayd.toml")], out), 0, out.getvalue())
        self.assertNotIn("warning", out.getvalue())
        config = decodeDynamic(_yaml(dynamic))
        raw, _ = decode(StaticConfig, {"entryPoints": {n: {"address": a} for n, a in (("db", ":5432"), ("websecure", ":443"), ("ssh", ":2222"), ("dns", ":53/udp"))}})
        watcher = Watcher(reactor, effective(raw), reactor=reactor)
        self.addCleanup(watcher.stop)
        watcher.update(ProviderUpdate("file", config))
        runtime = watcher.runtime
        groups = (runtime.tcpRouters, runtime.tcpServices, runtime.udpRouters, runtime.udpServices, runtime.tcpMiddlewares)
        statuses = {(index, info.name): (info.status, info.errors) for index, group in enumerate(groups) for info in group.values()}
        self.assertEqual([s for s, _ in statuses.values()], ["enabled"] * 9, statuses)
        self.assertTrue(runtime.tcpTable("db@file") is None and runtime.tcpTable("db").serverFirst)
        self.assertEqual(runtime.udpRoute("dns").name, "dns@file")


def _yaml(text: str) -> Any:
    from relayd.config.loader import parseDocument

    return parseDocument(text, "dynamic.yaml")
