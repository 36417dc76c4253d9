"""
End-to-end tests of the upstream side through an in-process entrypoint, on
loopback only: https:// servers verified with service-identity against a CA
made at test time (rootCAs as a file or inline, the system trust store,
insecureSkipVerify, serverName and SNI, client certificates, the static
C{default@internal} serversTransport, unreadable CA files), and response
streaming (event streams relayed at once, C{responseForwarding.flushInterval}
coalescing a body or flushing each write).
"""

from __future__ import annotations

import datetime
import os
import time
from typing import Any, Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet import defer, protocol, reactor, ssl
from twisted.trial.unittest import TestCase

from relayd.config.dynamic import decodeDynamic
from relayd.config.loader import effective
from relayd.config.schema import decode
from relayd.config.static import StaticConfig
from relayd.entrypoints import EntryPointService
from relayd.providers.base import ProviderUpdate
from relayd.watcher import Watcher
from tests.helpers import Client, startBackend

BODY = b"hello over tls\n"
BAD_GATEWAY = b"Bad Gateway\n"
CLIENT_CN = "relayd-test-client"


# -- a CA, a server certificate and a client certificate, made once --


def _name(commonName: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "relayd tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, commonName),
        ]
    )


def _issue(
    subject: x509.Name,
    key: Any,
    issuer: x509.Name,
    issuerKey: Any,
    ca: bool = False,
    names: list[x509.GeneralName] | None = None,
    usage: Any = None,
) -> x509.Certificate:
    """
    A certificate for C{key} named C{subject}, signed by C{issuerKey}.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuerKey.public_key()), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=not ca,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuerKey, hashes.SHA256())


def _certPEM(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _keyPEM(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class PKI:
    """
    A private CA, a server certificate for C{backend.test} and 127.0.0.1 and a
    client certificate, all signed by it, as PEM bytes.
    """

    def __init__(self) -> None:
        import ipaddress

        caKey = ec.generate_private_key(ec.SECP256R1())
        caName = _name("relayd test CA")
        ca = _issue(caName, caKey, caName, caKey, ca=True)
        serverKey = ec.generate_private_key(ec.SECP256R1())
        server = _issue(
            _name("backend.test"),
            serverKey,
            caName,
            caKey,
            names=[x509.DNSName("backend.test"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
        )
        clientKey = ec.generate_private_key(ec.SECP256R1())
        client = _issue(_name(CLIENT_CN), clientKey, caName, caKey, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
        self.caPEM = _certPEM(ca)
        self.serverCertPEM = _certPEM(server)
        self.serverKeyPEM = _keyPEM(serverKey)
        self.clientCertPEM = _certPEM(client)
        self.clientKeyPEM = _keyPEM(clientKey)

    def write(self, directory: str) -> dict[str, str]:
        """
        Write the CA and the client certificate and key into C{directory};
        returns their paths by name (C{ca}, C{clientCert}, C{clientKey}).
        """
        os.makedirs(directory, exist_ok=True)
        paths = {}
        for name, data in (("ca", self.caPEM), ("clientCert", self.clientCertPEM), ("clientKey", self.clientKeyPEM)):
            path = os.path.join(directory, f"{name}.pem")
            with open(path, "wb") as f:
                f.write(data)
            paths[name] = path
        return paths


_pki: list[PKI] = []


def pki() -> PKI:
    """
    The module's PKI, made on first use.
    """
    if not _pki:
        _pki.append(PKI())
    return _pki[0]


# -- backends --


class _BackendProtocol(protocol.Protocol):
    """
    One server-side connection: collects request heads (GET, no body) and
    hands each to the factory's C{respond}.
    """

    def connectionMade(self) -> None:
        self.buffer = b""
        self.lost: defer.Deferred[None] = defer.Deferred()
        self.calls: list[Any] = []
        self.factory.connections.append(self)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            self.factory.respond(self, head)

    def later(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        """
        Call C{fn} after C{delay} seconds unless the connection is gone.
        """
        self.calls.append(reactor.callLater(delay, fn, *args))

    def connectionLost(self, reason: Any) -> None:
        for call in self.calls:
            if call.active():
                call.cancel()
        self.lost.callback(None)


class Backend(protocol.Factory):
    """
    A raw HTTP/1.1 server on 127.0.0.1 (plain or TLS) whose answers come from
    C{respond(connection, head)}; it remembers the SNI names and client
    certificate subjects it saw, and when it wrote what (C{writes}: (label,
    monotonic time)).
    """

    protocol = _BackendProtocol
    noisy = False

    def __init__(self, respond: Callable[[Any, bytes], None]) -> None:
        self.respond = lambda connection, head: respond(self, connection, head)
        self.connections: list[_BackendProtocol] = []
        self.heads: list[bytes] = []
        self.serverNames: list[bytes | None] = []
        self.clientSubjects: list[str | None] = []
        self.writes: list[tuple[str, float]] = []
        self.port: Any = None

    def write(self, connection: _BackendProtocol, label: str, data: bytes) -> None:
        """
        Write C{data} now and note when.
        """
        self.writes.append((label, time.monotonic()))
        connection.transport.write(data)

    def writeTime(self, label: str) -> float:
        return dict(self.writes)[label]

    def clientSubject(self, connection: _BackendProtocol) -> None:
        """
        Note the subject of the client certificate on C{connection} (or None).
        """
        getPeer = getattr(connection.transport, "getPeerCertificate", None)
        certificate = getPeer() if getPeer is not None else None
        self.clientSubjects.append(None if certificate is None else certificate.to_cryptography().subject.rfc4514_string())

    @defer.inlineCallbacks
    def stop(self) -> Any:
        """
        Stop listening and drop every connection, waiting until they are gone.
        """
        if self.port is not None:
            yield self.port.stopListening()
        for connection in self.connections:
            if not connection.lost.called:
                connection.transport.abortConnection()
        yield defer.gatherResults([c.lost for c in self.connections if not c.lost.called])


def _fixedBody(backend: Backend, connection: _BackendProtocol, head: bytes) -> None:
    backend.heads.append(head)
    backend.clientSubject(connection)
    backend.write(
        connection,
        "response",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY),
    )


def startTLSBackend(testCase: TestCase, requireClientCertificate: bool = False) -> Backend:
    """
    A TLS backend answering every request with L{BODY}, on 127.0.0.1 with the
    PKI's server certificate; with C{requireClientCertificate} it demands a
    client certificate signed by the CA.
    """
    keys = pki()
    backend = Backend(_fixedBody)
    serverCertificate = ssl.PrivateCertificate.loadPEM(keys.serverCertPEM + keys.serverKeyPEM)
    if requireClientCertificate:
        options = ssl.CertificateOptions(
            privateKey=serverCertificate.privateKey.original,
            certificate=serverCertificate.original,
            verify=True,
            caCerts=[ssl.Certificate.loadPEM(keys.caPEM).original],
            requireCertificate=True,
        )
    else:
        options = serverCertificate.options()
    context = options.getContext()  # cached by CertificateOptions

    def servername(connection: Any) -> None:
        backend.serverNames.append(connection.get_servername())

    context.set_tlsext_servername_callback(servername)
    backend.port = reactor.listenSSL(0, backend, options, interface="127.0.0.1")
    testCase.addCleanup(backend.stop)
    return backend


def startPlainBackend(testCase: TestCase, respond: Callable[[Backend, Any, bytes], None]) -> Backend:
    """
    A plain-TCP raw backend on 127.0.0.1 answering with C{respond}.
    """
    backend = Backend(respond)
    backend.port = reactor.listenTCP(0, backend, interface="127.0.0.1")
    testCase.addCleanup(backend.stop)
    return backend


# -- a timestamping client --


class _Timed(protocol.Protocol):
    def connectionMade(self) -> None:
        self.transport.write(self.factory.request)

    def dataReceived(self, data: bytes) -> None:
        self.factory.arrivals.append((time.monotonic(), data))

    def connectionLost(self, reason: Any) -> None:
        self.factory.done.callback(self.factory.arrivals)


def timedRequest(port: int, path: str) -> defer.Deferred[list[tuple[float, bytes]]]:
    """
    GET C{path} from 127.0.0.1:C{port} with Connection: close; fires with
    every read as (monotonic time, bytes).
    """
    factory = protocol.ClientFactory()
    factory.protocol = _Timed
    factory.request = b"GET %s HTTP/1.1\r\nHost: stream.test\r\nConnection: close\r\n\r\n" % path.encode("ascii")
    factory.arrivals = []
    factory.done = defer.Deferred()
    reactor.connectTCP("127.0.0.1", port, factory)
    return factory.done


def firstSeen(arrivals: list[tuple[float, bytes]], markers: list[bytes]) -> dict[bytes, float]:
    """
    When each marker was first complete in what the client had received.
    """
    seen: dict[bytes, float] = {}
    received = b""
    for when, data in arrivals:
        received += data
        for marker in markers:
            if marker not in seen and marker in received:
                seen[marker] = when
    return seen


def _describe(arrivals: list[tuple[float, bytes]], backend: Backend) -> str:
    start = backend.writes[0][1] if backend.writes else 0.0
    lines = ["backend writes (ms after the first):"]
    lines += [f"  {label}: {1000 * (t - start):.0f}" for label, t in backend.writes]
    lines.append("client reads (ms after the backend's first write):")
    lines += [f"  {1000 * (t - start):.0f}: {data!r}" for t, data in arrivals]
    return "\n".join(lines)


# -- relayd --


def service(url: str, transport: str = "", flushInterval: str | None = None) -> dict[str, Any]:
    """
    A loadBalancer service with one server.
    """
    lb: dict[str, Any] = {"servers": [{"url": url}]}
    if transport:
        lb["serversTransport"] = transport
    if flushInterval is not None:
        lb["responseForwarding"] = {"flushInterval": flushInterval}
    return {"loadBalancer": lb}


def routes(services: dict[str, dict[str, Any]], transports: dict[str, Any] | None = None) -> dict[str, Any]:
    """
    A dynamic configuration routing C{PathPrefix(/<name>)} to each service.
    """
    http: dict[str, Any] = {
        "routers": {name: {"rule": f"PathPrefix(`/{name}`)", "service": name} for name in services},
        "services": services,
    }
    if transports:
        http["serversTransports"] = transports
    return {"http": http}


class _RelaydTestCase(TestCase):
    """
    Start an in-process entrypoint on 127.0.0.1 with a watcher fed one
    dynamic configuration by the provider C{file}.
    """

    timeout = 10

    def startRelayd(self, dynamic: dict[str, Any], static: dict[str, Any] | None = None) -> int:
        raw: dict[str, Any] = {"entryPoints": {"web": {"address": "127.0.0.1:0"}}}
        raw.update(static or {})
        config, _ = decode(StaticConfig, raw)
        staticConfig = effective(config)
        self.watcher = Watcher(reactor, staticConfig, reactor=reactor)
        self.addCleanup(self.watcher.stop)
        self.watcher.update(ProviderUpdate("file", decodeDynamic(dynamic)))
        ep = EntryPointService("web", staticConfig.entryPoints["web"], reactor, self.watcher.runtime)
        self.watcher.addListener(ep.swap)
        ep.startService()
        self.addCleanup(ep.stopService)
        return ep.port

    @defer.inlineCallbacks
    def get(self, port: int, path: str) -> Any:
        """
        GET C{path} through relayd; fires with (code, body).
        """
        client = Client()
        try:
            response, body = yield client.get(f"http://127.0.0.1:{port}{path}", host="relayd.test")
        finally:
            yield client.close()
        return response.code, body

    def assertBadGateway(self, answer: tuple[int, bytes]) -> None:
        """
        C{answer} is relayd's own short 502.
        """
        code, body = answer
        self.assertEqual((code, body), (502, BAD_GATEWAY))
        self.assertNotIn(b"Traceback", body)

    def assertServiceEnabled(self, name: str) -> None:
        info = self.watcher.runtime.services[name]
        self.assertEqual((info.status, info.errors), ("enabled", []))


class HTTPSUpstreamTests(_RelaydTestCase):
    """
    https:// servers and serversTransports.
    """

    @defer.inlineCallbacks
    def test_rootCAsFile(self):
        """
        A serversTransport whose rootCAs names the CA's file verifies the
        backend's certificate for the IP in the URL; the transport can be
        referred to by its plain name (resolved in the referrer's provider) or
        qualified as C{name@file}. No SNI is sent for an IP address.
        """
        backend = startTLSBackend(self)
        paths = pki().write(self.mktemp())
        url = f"https://127.0.0.1:{backend.port.getHost().port}"
        port = self.startRelayd(
            routes(
                {"plain": service(url, "private"), "qualified": service(url, "private@file")},
                {"private": {"rootCAs": [paths["ca"]]}},
            )
        )
        self.assertServiceEnabled("plain@file")
        self.assertServiceEnabled("qualified@file")
        self.assertEqual((yield self.get(port, "/plain")), (200, BODY))
        self.assertEqual((yield self.get(port, "/qualified")), (200, BODY))
        self.assertTrue(backend.heads)
        self.assertEqual(set(backend.serverNames), {None})

    @defer.inlineCallbacks
    def test_rootCAsInline(self):
        """
        rootCAs may hold the PEM content itself instead of a path (Traefik's
        file-or-content).
        """
        backend = startTLSBackend(self)
        url = f"https://127.0.0.1:{backend.port.getHost().port}"
        port = self.startRelayd(
            routes({"inline": service(url, "inline")}, {"inline": {"rootCAs": [pki().caPEM.decode("ascii")]}})
        )
        self.assertServiceEnabled("inline@file")
        self.assertEqual((yield self.get(port, "/inline")), (200, BODY))

    @defer.inlineCallbacks
    def test_systemTrustRejectsPrivateCA(self):
        """
        Without rootCAs the system's trust store is used, which does not know
        the test CA: the handshake fails and the client gets a plain 502.
        """
        backend = startTLSBackend(self)
        url = f"https://127.0.0.1:{backend.port.getHost().port}"
        port = self.startRelayd(routes({"system": service(url, "system"), "default": service(url)}, {"system": {}}))
        self.assertBadGateway((yield self.get(port, "/system")))
        self.assertBadGateway((yield self.get(port, "/default")))
        self.assertEqual(backend.heads, [])

    @defer.inlineCallbacks
    def test_insecureSkipVerify(self):
        """
        insecureSkipVerify without rootCAs accepts the unknown chain.
        """
        backend = startTLSBackend(self)
        url = f"https://127.0.0.1:{backend.port.getHost().port}"
        port = self.startRelayd(routes({"insecure": service(url, "insecure")}, {"insecure": {"insecureSkipVerify": True}}))
        self.assertEqual((yield self.get(port, "/insecure")), (200, BODY))

    @defer.inlineCallbacks
    def test_serverName(self):
        """
        serverName is sent as SNI and verified instead of the URL's host: a
        name in the certificate passes, another one fails with 502.
        """
        backend = startTLSBackend(self)
        paths = pki().write(self.mktemp())
        url = f"https://127.0.0.1:{backend.port.getHost().port}"
        port = self.startRelayd(
            routes(
                {"good": service(url, "good"), "wrong": service(url, "wrong")},
                {
                    "good": {"rootCAs": [paths["ca"]], "serverName": "backend.test"},
                    "wrong": {"rootCAs": [paths["ca"]], "serverName": "other.test"},
                },
            )
        )
        self.assertEqual((yield self.get(port, "/good")), (200, BODY))
        self.assertEqual(backend.serverNames, [b"backend.test"])
        self.assertBadGateway((yield self.get(port, "/wrong")))
        self.assertEqual(backend.serverNames, [b"backend.test", b"other.test"])
        self.assertEqual(len(backend.heads), 1)

    @defer.inlineCallbacks
    def test_clientCertificate(self):
        """
        A backend that requires a client certificate gets the transport's
        certificates[0] (and answers); without one the handshake fails: 502.
        """
        backend = startTLSBackend(self, requireClientCertificate=True)
        paths = pki().write(self.mktemp())
        url = f"https://127.0.0.1:{backend.port.getHost().port}"
        port = self.startRelayd(
            routes(
                {"mtls": service(url, "mtls"), "anonymous": service(url, "anonymous")},
                {
                    "mtls": {
                        "rootCAs": [paths["ca"]],
                        "certificates": [{"certFile": paths["clientCert"], "keyFile": paths["clientKey"]}],
                    },
                    "anonymous": {"rootCAs": [paths["ca"]]},
                },
            )
        )
        self.assertServiceEnabled("mtls@file")
        self.assertEqual((yield self.get(port, "/mtls")), (200, BODY))
        self.assertEqual(len(backend.clientSubjects), 1)
        self.assertIn(f"CN={CLIENT_CN}", backend.clientSubjects[0] or "")
        self.assertBadGateway((yield self.get(port, "/anonymous")))
        self.assertEqual(len(backend.heads), 1)

    @defer.inlineCallbacks
    def test_staticDefaultTransport(self):
        """
        The static serversTransport (default@internal) applies to services
        that name none: with insecureSkipVerify there the unknown chain is
        accepted.
        """
        backend = startTLSBackend(self)
        url = f"https://127.0.0.1:{backend.port.getHost().port}"
        port = self.startRelayd(
            routes({"default": service(url), "explicit": service(url, "default@internal")}),
            static={"serversTransport": {"insecureSkipVerify": True}},
        )
        self.assertEqual((yield self.get(port, "/default")), (200, BODY))
        self.assertEqual((yield self.get(port, "/explicit")), (200, BODY))

    @defer.inlineCallbacks
    def assertBadRootCAs(self, path: str) -> None:
        """
        A service whose serversTransport has C{path} as its only rootCAs
        entry is disabled with an error naming C{path}, and so is its router;
        another router (to a plain http:// backend) keeps serving.
        """
        backend = startTLSBackend(self)
        listening, echo = startBackend("plain")
        self.addCleanup(listening.stopListening)
        url = f"https://127.0.0.1:{backend.port.getHost().port}"
        port = self.startRelayd(
            routes(
                {"bad": service(url, "bad"), "ok": service(f"http://127.0.0.1:{listening.getHost().port}")},
                {"bad": {"rootCAs": [path]}},
            )
        )
        runtime = self.watcher.runtime
        info = runtime.services["bad@file"]
        self.assertEqual(info.status, "disabled", info.errors)
        self.assertTrue(any(path in error for error in info.errors), info.errors)
        self.assertEqual(runtime.routers["bad@file"].status, "disabled")
        code, body = yield self.get(port, "/bad")
        self.assertEqual(code, 404, body)
        self.assertServiceEnabled("ok@file")
        code, body = yield self.get(port, "/ok")
        self.assertEqual(code, 200, body)
        self.assertEqual(len(echo.requests), 1)
        self.assertEqual(backend.heads, [])

    def test_unreadableRootCAs(self):
        """
        A rootCAs file that cannot be read disables the service with an error
        naming the file; the other routers keep serving.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        return self.assertBadRootCAs(os.path.join(directory, "missing-ca.pem"))

    def test_invalidRootCAsFile(self):
        """
        A rootCAs file that holds no certificate disables the service with
        an error naming the file (its full path, as given); the other routers
        keep serving.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "not-a-certificate-ca.pem")
        with open(path, "wb") as f:
            f.write(b"not a certificate\n")
        return self.assertBadRootCAs(path)


# -- streaming --

EVENTS = [b"data: event-%d\n\n" % i for i in range(3)]
EVENT_GAP = 0.2
PIECES = [b"piece-%d;" % i for i in range(5)]
PIECE_GAP = 0.1


def _eventStream(backend: Backend, connection: _BackendProtocol, head: bytes) -> None:
    """
    An event stream: chunked, one event every EVENT_GAP seconds.
    """
    backend.heads.append(head)
    backend.write(
        connection,
        "head",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    for i, event in enumerate(EVENTS):
        data = b"%x\r\n%s\r\n" % (len(event), event)
        if i == len(EVENTS) - 1:
            data += b"0\r\n\r\n"
        connection.later(EVENT_GAP * i, backend.write, connection, f"event-{i}", data)


def _slowLengthBody(backend: Backend, connection: _BackendProtocol, head: bytes) -> None:
    """
    A Content-Length body written in small pieces PIECE_GAP seconds apart.
    """
    backend.heads.append(head)
    length = sum(len(p) for p in PIECES)
    backend.write(
        connection, "head", b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % length
    )
    for i, piece in enumerate(PIECES):
        connection.later(PIECE_GAP * i, backend.write, connection, f"piece-{i}", piece)


class StreamingTests(_RelaydTestCase):
    """
    How response bodies are relayed over time (client-side timestamps; the
    backend runs in the same process, so the clocks agree).
    """

    @defer.inlineCallbacks
    def test_eventStreamRelayedImmediately(self):
        """
        A text/event-stream answer without Content-Length is relayed as it
        comes, even with a long flushInterval: each event reaches the client
        before the next one is written.
        """
        backend = startPlainBackend(self, _eventStream)
        port = self.startRelayd(
            routes({"events": service(f"http://127.0.0.1:{backend.port.getHost().port}", flushInterval="1s")})
        )
        arrivals = yield timedRequest(port, "/events")
        received = b"".join(data for _, data in arrivals)
        detail = _describe(arrivals, backend)
        self.assertTrue(received.startswith(b"HTTP/1.1 200 "), detail)
        self.assertIn(b"\r\ncontent-type: text/event-stream", received.lower(), detail)
        seen = firstSeen(arrivals, EVENTS)
        self.assertEqual(sorted(seen), sorted(EVENTS), detail)
        for i in range(len(EVENTS) - 1):
            self.assertLess(seen[EVENTS[i]], backend.writeTime(f"event-{i + 1}"), detail)

    @defer.inlineCallbacks
    def test_flushIntervalCoalesces(self):
        """
        With flushInterval 1s a Content-Length body written in five pieces
        100 ms apart is held: nothing of it reaches the client before the
        fourth piece is written, and it arrives all together.
        """
        backend = startPlainBackend(self, _slowLengthBody)
        port = self.startRelayd(
            routes({"slow": service(f"http://127.0.0.1:{backend.port.getHost().port}", flushInterval="1s")})
        )
        start = time.monotonic()
        arrivals = yield timedRequest(port, "/slow")
        received = b"".join(data for _, data in arrivals)
        detail = _describe(arrivals, backend)
        self.assertTrue(received.startswith(b"HTTP/1.1 200 "), detail)
        self.assertTrue(received.endswith(b"".join(PIECES)), detail)
        seen = firstSeen(arrivals, PIECES)
        self.assertGreaterEqual(seen[PIECES[0]], backend.writeTime("piece-3"), detail)
        self.assertLess(seen[PIECES[-1]] - seen[PIECES[0]], 0.2, detail)
        self.assertLess(seen[PIECES[-1]] - start, 2.0, detail)

    @defer.inlineCallbacks
    def test_negativeFlushIntervalFlushesEachWrite(self):
        """
        A negative flushInterval (valid in Traefik: flush after every write)
        is accepted, and each piece of a Content-Length body reaches the
        client as it is written.
        """
        backend = startPlainBackend(self, _slowLengthBody)
        url = f"http://127.0.0.1:{backend.port.getHost().port}"
        port = self.startRelayd(routes({"eager": service(url, flushInterval="-1"), "eagerms": service(url, flushInterval="-50ms")}))
        self.assertServiceEnabled("eager@file")
        self.assertServiceEnabled("eagerms@file")
        self.assertLess(float(self.watcher.runtime.config.http.services["eager@file"].loadBalancer.responseForwarding.flushInterval), 0)
        for path in ("/eager", "/eagerms"):
            backend.writes.clear()
            arrivals = yield timedRequest(port, path)
            received = b"".join(data for _, data in arrivals)
            detail = f"{path}\n{_describe(arrivals, backend)}"
            self.assertTrue(received.startswith(b"HTTP/1.1 200 "), detail)
            self.assertTrue(received.endswith(b"".join(PIECES)), detail)
            seen = firstSeen(arrivals, PIECES)
            self.assertLess(seen[PIECES[0]], backend.writeTime("piece-2"), detail)
            self.assertGreaterEqual(seen[PIECES[-1]] - seen[PIECES[0]], 2 * PIECE_GAP, detail)
            self.assertGreaterEqual(len(set(seen.values())), 3, detail)
