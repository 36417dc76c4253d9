"""
Tests for L{relayd.tls}: certificate selection by SNI (exact, wildcard, the
default store's certificate, the generated one), certificates from files and
inline PEM, errors for broken certificates while the others serve, TLS options
(versions, cipher suites, curves, every client authentication type, strict
SNI, ALPN, session tickets), which options each host gets from the routers,
context caching across generations, and certificates swapped while a
connection stays open. Handshakes are real: a Twisted TLS server on loopback
with relayd's connection creator, and Python's C{ssl} module and
C{openssl s_client} as clients.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
from typing import Any, Callable

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet import defer, protocol, reactor, threads
from twisted.internet.interfaces import IHandshakeListener, IOpenSSLServerConnectionCreator
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from relayd.config.dynamic import TLSConfig, decodeDynamic
from relayd.config.loader import effective, parseDocument
from relayd.config.merge import mergeProviders
from relayd.config.schema import decode
from relayd.config.static import StaticConfig
from relayd.runtime.build import DISABLED, WARNING, build
from relayd.tls.creator import handshakeInfo, serverConnectionCreator
from relayd.tls.material import DEFAULT_CERT_CN, generatedDefault
from relayd.tls.hosts import RouterTLSUse
from relayd.tls.store import TLSRuntime
from tests.helpers import ROOT, tempdir
from tests.test_upstream_tls import _certPEM, _issue, _keyPEM, _name

# -- certificates, made once per run --


@attrs.frozen
class Pair:
    cert: bytes
    key: bytes

    def inline(self) -> dict[str, str]:
        return {"certFile": self.cert.decode(), "keyFile": self.key.decode()}

    def files(self, directory: str, stem: str) -> dict[str, str]:
        paths = {}
        for key, data in (("certFile", self.cert), ("keyFile", self.key)):
            path = os.path.join(directory, f"{stem}-{key}.pem")
            with open(path, "wb") as f:
                f.write(data)
            paths[key] = path
        return paths


class CA:
    """
    A private certificate authority issuing ECDSA P-256 certificates.
    """

    def __init__(self, label: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = _name(label)
        self.certificate = _issue(self.name, self.key, self.name, self.key, ca=True)
        self.pem = _certPEM(self.certificate)

    def issue(self, commonName: str, *dnsNames: str, client: bool = False) -> Pair:
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = _issue(
            _name(commonName),
            key,
            self.name,
            self.key,
            names=[x509.DNSName(n) for n in dnsNames] or None,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH,
        )
        return Pair(_certPEM(certificate), _keyPEM(key))


class Material:
    def __init__(self) -> None:
        self.ca = CA("relayd tls test CA")
        self.otherCA = CA("someone else's CA")
        self.a = self.ca.issue("a.test", "a.test", "www.a.test")
        self.aRenewed = self.ca.issue("a.test renewed", "a.test", "www.a.test")
        self.wild = self.ca.issue("wild", "*.wild.test")
        self.default = self.ca.issue("default.test", "default.test")
        self.old = self.ca.issue("old.test", "old.test")
        self.goodClient = self.ca.issue("good client", client=True)
        self.badClient = self.otherCA.issue("bad client", client=True)


_material: list[Material] = []


def material() -> Material:
    if not _material:
        _material.append(Material())
    return _material[0]


def tlsConfig(raw: dict[str, Any]) -> TLSConfig:
    return decodeDynamic({"tls": raw}).tls


def runtimeWith(raw: dict[str, Any], routers: tuple[RouterTLSUse, ...] = (), previous: TLSRuntime | None = None) -> TLSRuntime:
    runtime = TLSRuntime.build(tlsConfig(raw), routers, previous)
    return runtime


def certificates(*pairs: Pair) -> list[dict[str, str]]:
    return [p.inline() for p in pairs]


# -- a TLS echo server on loopback --


@implementer(IHandshakeListener)
class _Echo(protocol.Protocol):
    """
    Answers each read with what the server side knows of the connection.
    """

    def connectionMade(self) -> None:
        self.lost: defer.Deferred[None] = defer.Deferred()
        self.factory.live.append(self)

    def describe(self) -> dict[str, Any]:
        handle = self.transport.getHandle()
        info = handshakeInfo(handle)
        peer = self.transport.getPeerCertificate()
        client = None
        if peer is not None:
            client = peer.to_cryptography().subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        alpn = self.transport.negotiatedProtocol
        return {
            "serverName": info.serverName,
            "optionsName": info.optionsName,
            "alpn": alpn.decode() if alpn else None,
            "client": client,
            "version": handle.get_protocol_version_name(),
            "cipher": handle.get_cipher_name(),
            "group": handle.get_group_name(),
        }

    def handshakeCompleted(self) -> None:
        self.factory.handshakes.append(self.describe())

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(json.dumps(self.describe()).encode() + b"\n")

    def connectionLost(self, reason: Any) -> None:
        self.lost.callback(None)


class _EchoFactory(protocol.Factory):
    protocol = _Echo
    noisy = False

    def __init__(self) -> None:
        self.live: list[_Echo] = []
        self.handshakes: list[dict[str, Any]] = []


def startServer(testCase: TestCase, creator: Any) -> tuple[int, _EchoFactory]:
    """
    Listen on 127.0.0.1 with TLS from C{creator}; stopped, and its
    connections dropped, when the test ends.
    """
    factory = _EchoFactory()
    port = reactor.listenTCP(0, TLSMemoryBIOFactory(creator, False, factory), interface="127.0.0.1")

    @defer.inlineCallbacks
    def stop() -> Any:
        yield port.stopListening()
        for echo in factory.live:
            if not echo.lost.called:
                echo.transport.abortConnection()
        yield defer.gatherResults([e.lost for e in factory.live if not e.lost.called])

    testCase.addCleanup(stop)
    return port.getHost().port, factory


def serve(testCase: TestCase, current: Callable[[], TLSRuntime] | TLSRuntime, entryPoint: str | None = None) -> tuple[int, _EchoFactory]:
    getter = current if callable(current) else (lambda: current)
    return startServer(testCase, serverConnectionCreator(getter, entryPoint))


# -- clients --


@attrs.define
class Outcome:
    error: str | None = None
    version: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    subject: str | None = None
    server: dict[str, Any] = attrs.field(factory=dict)
    session: Any = None
    reused: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def _clientContext(
    alpn: list[str] | None = None,
    minimum: ssl.TLSVersion | None = None,
    maximum: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
    curve: str | None = None,
    certificate: tuple[str, str] | None = None,
) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    if minimum is not None:
        context.minimum_version = minimum
    if maximum is not None:
        context.maximum_version = maximum
    if ciphers is not None:
        context.set_ciphers(ciphers)
    if curve is not None:
        context.set_ecdh_curve(curve)
    if certificate is not None:
        context.load_cert_chain(*certificate)
    return context


def _readLine(connection: ssl.SSLSocket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = connection.recv(4096)
        if not chunk:
            raise ConnectionError("connection closed by the server")
        data += chunk
    return data


def _subject(connection: ssl.SSLSocket) -> str:
    der = connection.getpeercert(binary_form=True)
    assert der is not None
    return str(x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _handshake(
    port: int, serverName: str | None, session: Any = None, context: ssl.SSLContext | None = None, **options: Any
) -> Outcome:
    """
    Connect, shake hands, ask the server what it saw (a round trip, which is
    also where a client certificate refused in TLS 1.3 shows), and close. A
    session resumes only with the client context that made it.
    """
    if context is None:
        context = _clientContext(**options)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=serverName, session=session) as connection:
                connection.sendall(b"?")
                server = json.loads(_readLine(connection))
                return Outcome(
                    version=connection.version(),
                    cipher=connection.cipher()[0],
                    alpn=connection.selected_alpn_protocol(),
                    subject=_subject(connection),
                    server=server,
                    session=connection.session,
                    reused=connection.session_reused,
                )
    except (OSError, ValueError) as e:
        return Outcome(error=f"{type(e).__name__}: {e}")


def handshake(port: int, serverName: str | None, **options: Any) -> defer.Deferred[Outcome]:
    return threads.deferToThread(_handshake, port, serverName, **options)


def _open(port: int, serverName: str) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return _clientContext().wrap_socket(raw, server_hostname=serverName)


def _roundTrip(connection: ssl.SSLSocket) -> dict[str, Any]:
    connection.sendall(b"?")
    return dict(json.loads(_readLine(connection)))


def sClient(port: int, serverName: str, *arguments: str) -> defer.Deferred[str]:
    """
    Run C{openssl s_client} against the server; its output (both streams).
    """
    binary = shutil.which("openssl")
    if binary is None:
        raise SkipTest("the openssl command is not installed")

    def run() -> str:
        result = subprocess.run(
            [binary, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", serverName, *arguments],
            input=b"?\n",
            capture_output=True,
            timeout=20,
        )
        return (result.stdout + result.stderr).decode("utf-8", "replace")

    return threads.deferToThread(run)


TLS12 = ssl.TLSVersion.TLSv1_2
TLS13 = ssl.TLSVersion.TLSv1_3


def clientFiles(testCase: TestCase, pair: Pair) -> tuple[str, str]:
    paths = pair.files(tempdir(testCase), "client")
    return paths["certFile"], paths["keyFile"]


# -- tests --


class CertificateSelectionTests(TestCase):
    """
    Which certificate a handshake gets for its server name.
    """

    timeout = 60

    def setUp(self) -> None:
        self.m = material()

    async def test_exactWildcardAndDefault(self) -> None:
        """
        An exact name gets its certificate, a name one label under a wildcard
        the wildcard's, anything else (or no SNI) the default store's.
        """
        m = self.m
        runtime = runtimeWith(
            {
                "certificates": certificates(m.a, m.wild),
                "stores": {"default": {"defaultCertificate": m.default.inline()}},
            }
        )
        port, _ = serve(self, runtime)
        expected = {
            "a.test": "a.test",
            "WWW.A.Test": "a.test",
            "x.wild.test": "wild",
            "y.x.wild.test": "default.test",
            "wild.test": "default.test",
            "unknown.test": "default.test",
            None: "default.test",
        }
        for name, subject in expected.items():
            outcome = await handshake(port, name)
            self.assertTrue(outcome.ok, (name, outcome.error))
            self.assertEqual(outcome.subject, subject, name)
            self.assertEqual(outcome.server["serverName"], name.lower() if name else None)
            self.assertEqual(outcome.server["optionsName"], "default")
        self.assertEqual(runtime.errors, ())

    async def test_generatedDefault(self) -> None:
        """
        Without a default certificate, a name with no certificate gets the
        generated one, the same in every generation of the process.
        """
        first = runtimeWith({"certificates": certificates(self.m.a)})
        second = runtimeWith({}, previous=first)
        self.assertIs(first.defaultCertificate, generatedDefault())
        self.assertIs(second.defaultCertificate, generatedDefault())
        port, _ = serve(self, second)
        outcome = await handshake(port, "nothing.test")
        self.assertTrue(outcome.ok, outcome.error)
        self.assertEqual(outcome.subject, DEFAULT_CERT_CN)
        self.assertIs(first.contextFor("nothing.test"), second.contextFor("other.test"))

    async def test_filesAndInline(self) -> None:
        """
        Certificates and keys load from files as well as inline PEM.
        """
        directory = tempdir(self)
        runtime = runtimeWith(
            {
                "certificates": [self.m.a.files(directory, "a"), self.m.wild.inline()],
                "stores": {"default": {"defaultCertificate": self.m.default.files(directory, "default")}},
            }
        )
        self.assertEqual(runtime.errors, ())
        port, _ = serve(self, runtime)
        for name, subject in (("a.test", "a.test"), ("b.wild.test", "wild"), ("z.test", "default.test")):
            outcome = await handshake(port, name)
            self.assertEqual(outcome.subject, subject, outcome.error)

    async def test_chainSent(self) -> None:
        """
        The intermediates after the leaf in certFile are sent, so a client
        that trusts only the root verifies the chain and the name.
        """
        m = self.m
        intermediateKey = ec.generate_private_key(ec.SECP256R1())
        intermediateName = _name("relayd intermediate CA")
        intermediate = _issue(intermediateName, intermediateKey, m.ca.name, m.ca.key, ca=True)
        leafKey = ec.generate_private_key(ec.SECP256R1())
        leaf = _issue(
            _name("chain.test"),
            leafKey,
            intermediateName,
            intermediateKey,
            names=[x509.DNSName("chain.test")],
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
        )
        runtime = runtimeWith({"certificates": [Pair(_certPEM(leaf) + _certPEM(intermediate), _keyPEM(leafKey)).inline()]})
        port, _ = serve(self, runtime)

        def verified() -> str:
            context = ssl.create_default_context(cadata=m.ca.pem.decode())
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname="chain.test") as connection:
                    return str(connection.version())

        self.assertEqual(await threads.deferToThread(verified), "TLSv1.3")

    async def test_brokenCertificatesReported(self) -> None:
        """
        A certificate whose key does not match, one that does not parse and
        one whose file is missing are reported at their key paths; the
        others keep serving.
        """
        directory = tempdir(self)
        m = self.m
        badPEM = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
        runtime = runtimeWith(
            {
                "certificates": [
                    m.a.inline(),
                    {"certFile": m.old.cert.decode(), "keyFile": m.a.key.decode()},
                    {"certFile": badPEM, "keyFile": m.a.key.decode()},
                    {"certFile": os.path.join(directory, "missing.pem"), "keyFile": os.path.join(directory, "missing.key")},
                    m.wild.files(directory, "wild"),
                ],
                "stores": {"default": {"defaultCertificate": {"certFile": m.old.cert.decode(), "keyFile": m.a.key.decode()}}},
            }
        )
        errors = {e.path: e.message for e in runtime.errors}
        self.assertEqual(
            sorted(errors),
            ["tls.certificates[1]", "tls.certificates[2]", "tls.certificates[3]", "tls.stores.default.defaultCertificate"],
        )
        self.assertIn("does not match", errors["tls.certificates[1]"])
        self.assertIn("does not parse", errors["tls.certificates[2]"])
        self.assertIn("missing.pem", errors["tls.certificates[3]"])
        self.assertIn("generated default certificate", errors["tls.stores.default.defaultCertificate"])
        for error in errors.values():
            self.assertNotIn("BEGIN", error)
        port, _ = serve(self, runtime)
        self.assertEqual((await handshake(port, "a.test")).subject, "a.test")
        self.assertEqual((await handshake(port, "q.wild.test")).subject, "wild")
        self.assertEqual((await handshake(port, "old.test")).subject, DEFAULT_CERT_CN)

    async def test_hotSwap(self) -> None:
        """
        A new generation with a renewed certificate serves it from the next
        handshake on, while a connection opened before keeps working.
        """
        first = runtimeWith({"certificates": certificates(self.m.a)})
        current = [first]
        port, _ = serve(self, lambda: current[-1])
        before = await threads.deferToThread(_open, port, "a.test")
        self.addCleanup(before.close)
        self.assertEqual(await threads.deferToThread(_subject, before), "a.test")
        self.assertEqual((await threads.deferToThread(_roundTrip, before))["serverName"], "a.test")
        current.append(runtimeWith({"certificates": certificates(self.m.aRenewed)}, previous=first))
        after = await handshake(port, "a.test")
        self.assertEqual(after.subject, "a.test renewed")
        self.assertEqual((await threads.deferToThread(_roundTrip, before))["serverName"], "a.test")

    def test_otherStoresIgnored(self) -> None:
        """
        Only the default store exists: a certificate only in another store is
        not served, and other stores are reported.
        """
        runtime = runtimeWith(
            {
                "certificates": [dict(self.m.a.inline(), stores=["other"]), dict(self.m.old.inline(), stores=["default", "x"])],
                "stores": {"other": {}, "default": {"defaultGeneratedCert": {"resolver": "le"}}},
            }
        )
        errors = {e.path: e for e in runtime.errors}
        self.assertTrue(errors["tls.certificates[0].stores"].fatal)
        self.assertFalse(errors["tls.certificates[1].stores"].fatal)
        self.assertIn("tls.stores.other", errors)
        self.assertIn("not supported yet", errors["tls.stores.default.defaultGeneratedCert"].message)
        self.assertIsNone(runtime.certificateFor("a.test"))
        self.assertIsNotNone(runtime.certificateFor("old.test"))


class OptionsTests(TestCase):
    """
    What each TLS option does to real handshakes.
    """

    timeout = 60

    def setUp(self) -> None:
        self.m = material()

    def serveOptions(self, options: dict[str, Any], **more: Any) -> int:
        runtime = runtimeWith({"certificates": certificates(self.m.a), "options": {"default": options}, **more})
        self.assertEqual([e for e in runtime.errors if e.fatal], [])
        return serve(self, runtime)[0]

    async def test_minVersion(self) -> None:
        """
        minVersion refuses clients that cannot reach it.
        """
        port = self.serveOptions({"minVersion": "VersionTLS13"})
        self.assertFalse((await handshake(port, "a.test", maximum=TLS12)).ok)
        self.assertEqual((await handshake(port, "a.test")).version, "TLSv1.3")

    async def test_maxVersion(self) -> None:
        """
        maxVersion caps the version, and refuses clients that need more.
        """
        port = self.serveOptions({"maxVersion": "VersionTLS12"})
        self.assertEqual((await handshake(port, "a.test")).version, "TLSv1.2")
        self.assertFalse((await handshake(port, "a.test", minimum=TLS13)).ok)

    async def test_defaultVersions(self) -> None:
        """
        By default TLS 1.2 and 1.3 are served, and TLS 1.1 is not.
        """
        port = self.serveOptions({})
        self.assertEqual((await handshake(port, "a.test")).version, "TLSv1.3")
        self.assertEqual((await handshake(port, "a.test", maximum=TLS12)).version, "TLSv1.2")
        self.assertFalse((await handshake(port, "a.test", maximum=ssl.TLSVersion.TLSv1_1, ciphers="ALL:@SECLEVEL=0")).ok)

    async def test_cipherSuites(self) -> None:
        """
        cipherSuites (Go names) limit TLS 1.2 to those suites; TLS 1.3 suites
        are not configurable.
        """
        port = self.serveOptions({"cipherSuites": ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256"]})
        outcome = await handshake(port, "a.test", maximum=TLS12)
        self.assertEqual(outcome.cipher, "ECDHE-ECDSA-AES256-GCM-SHA384")
        self.assertFalse((await handshake(port, "a.test", maximum=TLS12, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")).ok)
        self.assertEqual((await handshake(port, "a.test")).version, "TLSv1.3")

    async def test_defaultCipherSuites(self) -> None:
        """
        The default suites are Go's secure ones: no RSA key exchange.
        """
        port = self.serveOptions({})
        self.assertFalse((await handshake(port, "a.test", maximum=TLS12, ciphers="AES128-GCM-SHA256")).ok)
        self.assertTrue((await handshake(port, "a.test", maximum=TLS12, ciphers="ECDHE-ECDSA-AES128-SHA")).ok)

    def test_badCipherAndCurveNames(self) -> None:
        """
        Unknown cipher suite or curve names make the options invalid, at the
        key path of the name.
        """
        runtime = runtimeWith({"options": {"bad": {"cipherSuites": ["TLS_NOPE"], "curvePreferences": ["CurveP999"]}}})
        self.assertEqual(
            [(e.path, e.fatal) for e in runtime.errors],
            [("tls.options.bad.cipherSuites[0]", True), ("tls.options.bad.curvePreferences[0]", True)],
        )
        self.assertEqual(
            runtime.optionsProblem("bad"),
            "the TLS options \"bad\" are invalid: unknown cipher suite 'TLS_NOPE'; unknown curve 'CurveP999'",
        )
        self.assertIsNone(runtime.optionsProblem("default"))
        self.assertEqual(runtime.optionsProblem("nope@file"), 'the TLS options "nope@file" do not exist')

    def test_unavailableSuiteIgnored(self) -> None:
        """
        A suite Go knows but this OpenSSL lacks (RC4) is ignored with a note.
        """
        runtime = runtimeWith({"options": {"default": {"cipherSuites": ["TLS_RSA_WITH_RC4_128_SHA", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]}}})
        self.assertEqual([(e.path, e.fatal) for e in runtime.errors], [("tls.options.default.cipherSuites[0]", False)])
        self.assertIsNone(runtime.optionsProblem("default"))

    async def test_curvesTLS12(self) -> None:
        """
        curvePreferences choose the TLS 1.2 key exchange group, even when other
        options allow more.
        """
        runtime = runtimeWith(
            {"certificates": certificates(self.m.a, self.m.old), "options": {"p384": {"curvePreferences": ["CurveP384"]}}},
            (RouterTLSUse("r", "websecure", "Host(`old.test`)", "p384"),),
        )
        port, _ = serve(self, runtime, "websecure")
        outcome = await handshake(port, "old.test", maximum=TLS12)
        self.assertEqual((outcome.server["group"], outcome.server["optionsName"]), ("secp384r1", "p384"))
        outcome = await handshake(port, "a.test", maximum=TLS12)
        self.assertEqual((outcome.server["group"], outcome.server["optionsName"]), ("x25519", "default"))

    async def test_curvesTLS13(self) -> None:
        """
        In TLS 1.3 a client gets a group of the curvePreferences, and one
        that offers none of them is refused (openssl s_client as client).
        """
        port = self.serveOptions({"curvePreferences": ["CurveP384", "CurveP521"]})
        output = await sClient(port, "a.test", "-groups", "X25519:P-521")
        self.assertIn("TLSv1.3", output)
        self.assertEqual(re.findall(r"Server Temp Key: ECDH, (\S+),", output), ["secp521r1"])
        output = await sClient(port, "a.test", "-groups", "X25519:P-256")
        self.assertNotIn("Server Temp Key", output)
        self.assertIn("alert", output)

    async def test_alpn(self) -> None:
        """
        ALPN follows the server's order; clients without ALPN get none;
        a client offering nothing the server speaks is refused.
        """
        port = self.serveOptions({})
        self.assertEqual((await handshake(port, "a.test", alpn=["http/1.1", "h2"])).alpn, "h2")
        self.assertEqual((await handshake(port, "a.test", alpn=["http/1.1"])).alpn, "http/1.1")
        outcome = await handshake(port, "a.test")
        self.assertIsNone(outcome.alpn)
        self.assertIsNone(outcome.server["alpn"])
        self.assertFalse((await handshake(port, "a.test", alpn=["spdy/3"])).ok)
        output = await sClient(port, "a.test", "-alpn", "http/1.1,h2")
        self.assertIn("ALPN protocol: h2", output)

    async def test_alpnH2OnlyLetsHTTP11Through(self) -> None:
        """
        As in Go, an h2-only server lets an http/1.1 client in without ALPN;
        an empty list negotiates nothing.
        """
        port = self.serveOptions({"alpnProtocols": ["h2"]})
        outcome = await handshake(port, "a.test", alpn=["http/1.1"])
        self.assertTrue(outcome.ok, outcome.error)
        self.assertIsNone(outcome.alpn)
        port = self.serveOptions({"alpnProtocols": []})
        outcome = await handshake(port, "a.test", alpn=["h2"])
        self.assertTrue(outcome.ok, outcome.error)
        self.assertIsNone(outcome.alpn)

    async def test_sniStrict(self) -> None:
        """
        sniStrict refuses a missing SNI and a name without a certificate.
        """
        port = self.serveOptions({"sniStrict": True})
        self.assertEqual((await handshake(port, "a.test")).subject, "a.test")
        self.assertFalse((await handshake(port, "unknown.test")).ok)
        self.assertFalse((await handshake(port, None)).ok)

    async def test_sessionTickets(self) -> None:
        """
        Sessions resume with tickets unless disableSessionTickets.
        """
        client = _clientContext()
        port = self.serveOptions({})
        first = await handshake(port, "a.test", context=client)
        second = await handshake(port, "a.test", session=first.session, context=client)
        self.assertTrue(second.reused)
        self.assertEqual(second.server["optionsName"], "default")
        port = self.serveOptions({"disableSessionTickets": True})
        first = await handshake(port, "a.test", context=client)
        self.assertFalse(first.session.has_ticket)
        second = await handshake(port, "a.test", session=first.session, context=client)
        self.assertTrue(second.ok, second.error)
        self.assertFalse(second.reused)


class ClientAuthTests(TestCase):
    """
    Each clientAuthType with a client certificate from the trusted CA, one
    from another CA, and none.
    """

    timeout = 60

    def setUp(self) -> None:
        self.m = material()

    async def outcomes(self, clientAuth: dict[str, Any], maximum: ssl.TLSVersion | None = None) -> dict[str, Any]:
        runtime = runtimeWith({"certificates": certificates(self.m.a), "options": {"default": {"clientAuth": clientAuth}}})
        self.assertEqual(runtime.errors, ())
        port, _ = serve(self, runtime)
        results = {}
        for label, pair in (("good", self.m.goodClient), ("bad", self.m.badClient), ("none", None)):
            certificate = clientFiles(self, pair) if pair is not None else None
            outcome = await handshake(port, "a.test", certificate=certificate, maximum=maximum)
            results[label] = outcome.server["client"] if outcome.ok else "refused"
        return results

    def caFiles(self) -> list[str]:
        path = os.path.join(tempdir(self), "ca.pem")
        with open(path, "wb") as f:
            f.write(self.m.ca.pem)
        return [path]

    async def test_noClientCert(self) -> None:
        """
        NoClientCert asks for nothing.
        """
        results = await self.outcomes({"caFiles": self.caFiles(), "clientAuthType": "NoClientCert"})
        self.assertEqual(results, {"good": None, "bad": None, "none": None})

    async def test_requestClientCert(self) -> None:
        """
        RequestClientCert asks, takes any certificate, and lets clients without one in.
        """
        results = await self.outcomes({"caFiles": [self.m.ca.pem.decode()], "clientAuthType": "RequestClientCert"})
        self.assertEqual(results, {"good": "good client", "bad": "bad client", "none": None})

    async def test_requireAnyClientCert(self) -> None:
        """
        RequireAnyClientCert needs a certificate but does not verify it.
        """
        results = await self.outcomes({"clientAuthType": "RequireAnyClientCert"})
        self.assertEqual(results, {"good": "good client", "bad": "bad client", "none": "refused"})

    async def test_verifyClientCertIfGiven(self) -> None:
        """
        VerifyClientCertIfGiven verifies a certificate that is sent.
        """
        results = await self.outcomes({"caFiles": self.caFiles(), "clientAuthType": "VerifyClientCertIfGiven"})
        self.assertEqual(results, {"good": "good client", "bad": "refused", "none": None})

    async def test_requireAndVerifyClientCert(self) -> None:
        """
        RequireAndVerifyClientCert needs a certificate from the CA files, in
        TLS 1.3 and 1.2.
        """
        clientAuth = {"caFiles": self.caFiles(), "clientAuthType": "RequireAndVerifyClientCert"}
        expected = {"good": "good client", "bad": "refused", "none": "refused"}
        self.assertEqual(await self.outcomes(clientAuth), expected)
        self.assertEqual(await self.outcomes(clientAuth, maximum=TLS12), expected)

    async def test_caFilesAlone(self) -> None:
        """
        As in Traefik, caFiles without clientAuthType require and verify.
        """
        results = await self.outcomes({"caFiles": self.caFiles()})
        self.assertEqual(results, {"good": "good client", "bad": "refused", "none": "refused"})

    def test_verifyingTypesNeedCAFiles(self) -> None:
        """
        A verifying type without CA files, or an unreadable CA file, makes
        the options invalid.
        """
        runtime = runtimeWith(
            {
                "options": {
                    "a": {"clientAuth": {"clientAuthType": "VerifyClientCertIfGiven"}},
                    "b": {"clientAuth": {"caFiles": ["/nonexistent/ca.pem"]}},
                }
            }
        )
        self.assertEqual([e.path for e in runtime.errors], ["tls.options.a.clientAuth.caFiles", "tls.options.b.clientAuth.caFiles"])
        self.assertIsNotNone(runtime.optionsProblem("a"))
        self.assertIsNotNone(runtime.optionsProblem("b"))

    async def test_noResumptionAcrossClientAuth(self) -> None:
        """
        Options with client authentication issue no session tickets, and a
        session from another host is not resumed on them.
        """
        runtime = runtimeWith(
            {
                "certificates": certificates(self.m.a, self.m.old),
                "options": {"mtls": {"clientAuth": {"caFiles": [self.m.ca.pem.decode()]}}},
            },
            (RouterTLSUse("r", "websecure", "Host(`old.test`)", "mtls"),),
        )
        port, _ = serve(self, runtime, "websecure")
        client = _clientContext(certificate=clientFiles(self, self.m.goodClient))
        first = await handshake(port, "old.test", context=client)
        self.assertEqual(first.server["client"], "good client")
        self.assertFalse(first.session.has_ticket)
        public = await handshake(port, "a.test", context=client)
        self.assertTrue(public.session.has_ticket)
        self.assertTrue((await handshake(port, "a.test", session=public.session, context=client)).reused)
        again = await handshake(port, "old.test", session=public.session, context=client)
        self.assertFalse(again.ok)


class HostOptionsTests(SynchronousTestCase):
    """
    Which TLS options a host name gets from the TLS routers.
    """

    def build(self, *uses: RouterTLSUse, options: tuple[str, ...] = ("foo@file", "bar@file")) -> TLSRuntime:
        return TLSRuntime.build(
            tlsConfig({"options": {name: {} for name in options}}),
            uses,
        )

    def test_hostsOfTheRule(self) -> None:
        """
        Every host of a router's Host matchers gets its options, whatever
        the case or port; other hosts get default.
        """
        runtime = self.build(
            RouterTLSUse("r1@file", "websecure", "Host(`A.test`) || (Host(`b.test`) && Path(`/x`))", "foo@file"),
            RouterTLSUse("r2@file", "websecure", "Host(`c.test`, `d.test`)", "bar@file"),
        )
        self.assertEqual(runtime.optionsNameFor("a.test", "websecure"), "foo@file")
        self.assertEqual(runtime.optionsNameFor("B.TEST:443", "websecure"), "foo@file")
        self.assertEqual(runtime.optionsNameFor("d.test"), "bar@file")
        self.assertEqual(runtime.optionsNameFor("e.test", "websecure"), "default")
        self.assertEqual(runtime.optionsNameFor("", "websecure"), "default")
        self.assertEqual(runtime.routerOptionsName("r1@file", "websecure"), "foo@file")
        self.assertEqual(runtime.routerProblems, {})

    def test_conflict(self) -> None:
        """
        Two routers mapping one host to different options both fall back to
        default, for all their hosts, with a warning on each.
        """
        runtime = self.build(
            RouterTLSUse("r1@file", "websecure", "Host(`a.test`) || Host(`only1.test`)", "foo@file"),
            RouterTLSUse("r2@file", "websecure", "Host(`a.test`)", "bar@file"),
            RouterTLSUse("r3@file", "websecure", "Host(`a.test`)", "foo@file"),
            RouterTLSUse("r4@file", "websecure", "Host(`z.test`)", "bar@file"),
        )
        self.assertEqual(runtime.optionsNameFor("a.test", "websecure"), "default")
        self.assertEqual(runtime.optionsNameFor("only1.test", "websecure"), "default")
        self.assertEqual(runtime.optionsNameFor("z.test", "websecure"), "bar@file")
        self.assertEqual(runtime.routerOptionsName("r2@file", "websecure"), "default")
        self.assertEqual(runtime.routerOptionsName("r4@file", "websecure"), "bar@file")
        self.assertEqual(sorted(runtime.routerProblems), ["r1@file", "r2@file", "r3@file"])
        problem = runtime.routerProblems["r2@file"][0]
        self.assertFalse(problem.fatal)
        self.assertIn("conflict", problem.message)
        self.assertIn("a.test", problem.message)

    def test_conflictIsPerEntryPoint(self) -> None:
        """
        Routers on different entrypoints do not conflict.
        """
        runtime = self.build(
            RouterTLSUse("r1@file", "websecure", "Host(`a.test`)", "foo@file"),
            RouterTLSUse("r2@file", "admin", "Host(`a.test`)", "bar@file"),
        )
        self.assertEqual(runtime.optionsNameFor("a.test", "websecure"), "foo@file")
        self.assertEqual(runtime.optionsNameFor("a.test", "admin"), "bar@file")
        self.assertEqual(runtime.optionsNameFor("a.test"), "default")
        self.assertEqual(runtime.optionsNameFor("a.test", "web"), "default")
        self.assertEqual(runtime.routerProblems, {})

    def test_noHostRule(self) -> None:
        """
        A router without a Host matcher cannot choose options: a warning, and
        no mapping.
        """
        runtime = self.build(RouterTLSUse("r1@file", "websecure", "PathPrefix(`/`)", "foo@file"))
        self.assertEqual(runtime.routerOptionsName("r1@file", "websecure"), "default")
        (problem,) = runtime.routerProblems["r1@file"]
        self.assertFalse(problem.fatal)
        self.assertIn("no domain found", problem.message)

    def test_unknownOptions(self) -> None:
        """
        A router naming unknown options is to be disabled, and its hosts are
        refused.
        """
        runtime = TLSRuntime.build(
            tlsConfig({"certificates": certificates(material().a)}),
            (RouterTLSUse("r1@file", "websecure", "Host(`a.test`)", "nope@file"),),
        )
        (problem,) = runtime.routerProblems["r1@file"]
        self.assertTrue(problem.fatal)
        self.assertEqual(problem.message, 'the TLS options "nope@file" do not exist')
        self.assertEqual(runtime.optionsNameFor("a.test", "websecure"), "nope@file")
        self.assertIsNone(runtime.contextFor("a.test", entryPoint="websecure"))
        self.assertIsNotNone(runtime.contextFor("www.a.test", entryPoint="websecure"))

    def test_explicitOptions(self) -> None:
        """
        contextFor can apply given options whatever the name (TCP routers).
        """
        runtime = TLSRuntime.build(
            tlsConfig({"certificates": certificates(material().a), "options": {"strict@file": {"sniStrict": True}}})
        )
        self.assertIsNotNone(runtime.contextFor("x.test"))
        self.assertIsNone(runtime.contextFor("x.test", options="strict@file"))
        self.assertIsNone(runtime.contextFor("a.test", options="nope"))


class CachingTests(SynchronousTestCase):
    """
    Contexts are built once per certificate and options and reused across
    generations while neither changes.
    """

    def test_sameInputsSameContext(self) -> None:
        """
        The same certificate and options give the same context, for every
        name of the certificate and in the next generation.
        """
        raw = {"certificates": certificates(material().a), "options": {"default": {"minVersion": "VersionTLS12"}, "x": {}}}
        first = runtimeWith(raw)
        context = first.contextFor("a.test")
        self.assertIs(first.contextFor("www.a.test"), context)
        second = runtimeWith(raw, previous=first)
        self.assertIs(second.contextFor("a.test"), context)
        self.assertIs(second.contextFor("a.test", options="x"), context)
        third = runtimeWith(dict(raw, options={"default": {"minVersion": "VersionTLS13"}}), previous=second)
        self.assertIsNot(third.contextFor("a.test"), context)

    def test_filesByContent(self) -> None:
        """
        A certificate file rewritten with the same content keeps its context;
        new content gets a new one.
        """
        directory = tempdir(self)
        m = material()
        paths = m.a.files(directory, "site")
        raw = {"certificates": [paths]}
        first = runtimeWith(raw)
        context = first.contextFor("a.test")
        m.a.files(directory, "site")
        second = runtimeWith(raw, previous=first)
        self.assertIs(second.contextFor("a.test"), context)
        m.aRenewed.files(directory, "site")
        third = runtimeWith(raw, previous=second)
        renewed = third.contextFor("a.test")
        self.assertIsNot(renewed, context)
        self.assertEqual(third.certificateFor("a.test").label, "a.test renewed")  # type: ignore[union-attr]


class CreatorTests(TestCase):
    """
    The connection creator.
    """

    timeout = 60

    def test_interface(self) -> None:
        """
        The creator and its pinned form provide IOpenSSLServerConnectionCreator.
        """
        creator = serverConnectionCreator(TLSRuntime.empty)
        verifyObject(IOpenSSLServerConnectionCreator, creator)
        verifyObject(IOpenSSLServerConnectionCreator, creator.forServerName("a.test"))

    def test_creatorsAreCheap(self) -> None:
        """
        Creators share their bootstrap contexts (one per set of versions and
        groups), so one per connection costs no context; the store module
        makes them too.
        """
        from relayd.tls import store

        runtime = runtimeWith({})
        first = serverConnectionCreator(lambda: runtime).serverConnectionForTLS(None)
        second = store.serverConnectionCreator(lambda: runtime, "websecure").serverConnectionForTLS(None)
        self.assertIs(first.get_context(), second.get_context())
        self.assertEqual(handshakeInfo(first), handshakeInfo(second))

    async def test_pinnedVersions(self) -> None:
        """
        When options for one host cap the version below another's, a
        connection that starts on the host's own context negotiates the
        capped version; one that learns the name during the handshake is
        refused instead (the version was already chosen).
        """
        m = material()
        runtime = runtimeWith(
            {"certificates": certificates(m.a, m.old), "options": {"legacy": {"maxVersion": "VersionTLS12"}}},
            (RouterTLSUse("r", "websecure", "Host(`old.test`)", "legacy"),),
        )
        creator = serverConnectionCreator(lambda: runtime, "websecure")
        pinnedPort, _ = startServer(self, creator.forServerName("old.test"))
        outcome = await handshake(pinnedPort, "old.test")
        self.assertEqual((outcome.version, outcome.server["optionsName"]), ("TLSv1.2", "legacy"))
        port, _ = startServer(self, creator)
        self.assertFalse((await handshake(port, "old.test")).ok)
        self.assertEqual((await handshake(port, "old.test", maximum=TLS12)).version, "TLSv1.2")
        self.assertEqual((await handshake(port, "a.test")).version, "TLSv1.3")

    async def test_pinnedCurves(self) -> None:
        """
        A pinned connection gets its options' groups exactly (with a hello
        retry), where the switching one refuses a key share it cannot use.
        """
        m = material()
        runtime = runtimeWith(
            {"certificates": certificates(m.a, m.old), "options": {"p384": {"curvePreferences": ["CurveP384"]}}},
            (RouterTLSUse("r", "websecure", "Host(`old.test`)", "p384"),),
        )
        creator = serverConnectionCreator(lambda: runtime, "websecure")
        pinnedPort, pinned = startServer(self, creator.forServerName("old.test"))
        output = await sClient(pinnedPort, "old.test", "-groups", "X25519:P-384")
        self.assertEqual(re.findall(r"Server Temp Key: ECDH, (\S+),", output), ["secp384r1"])
        port, switching = startServer(self, creator)
        output = await sClient(port, "old.test", "-groups", "X25519:P-384")
        self.assertNotIn("Server Temp Key", output)
        self.assertEqual(switching.handshakes, [])

    async def test_withoutOpenSSLBindings(self) -> None:
        """
        Without the bindings that let the server name callback send an
        alert, a refusal switches to a context without a certificate, and
        sessions do not resume at all.
        """
        from relayd.tls import creator, options

        self.patch(options, "_setRefusingServerNameCallback", lambda context, decide: False)
        self.patch(creator, "_bootstraps", {})
        runtime = runtimeWith({"certificates": certificates(material().a), "options": {"default": {"sniStrict": True}}})
        port, _ = serve(self, runtime)
        client = _clientContext()
        first = await handshake(port, "a.test", context=client)
        self.assertEqual(first.subject, "a.test")
        second = await handshake(port, "a.test", context=client, session=first.session)
        self.assertEqual((second.subject, second.reused), ("a.test", False))
        self.assertFalse((await handshake(port, "unknown.test")).ok)

    async def test_resumedSessionStillChecked(self) -> None:
        """
        A session resumed for a name that strict SNI refuses is refused too.
        """
        runtime = runtimeWith({"certificates": certificates(material().a), "options": {"default": {"sniStrict": True}}})
        port, _ = serve(self, runtime)
        client = _clientContext()
        first = await handshake(port, "a.test", context=client)
        self.assertTrue((await handshake(port, "a.test", context=client, session=first.session)).reused)
        self.assertFalse((await handshake(port, "unknown.test", context=client, session=first.session)).ok)

    async def test_refusedWhenNoRuntimeAnswer(self) -> None:
        """
        A runtime that fails while choosing refuses that handshake only.
        """
        good = runtimeWith({"certificates": certificates(material().a)})
        calls = []

        def current() -> TLSRuntime:
            calls.append(None)
            if len(calls) == 2:
                raise RuntimeError("boom")
            return good

        port, _ = serve(self, current)
        self.assertFalse((await handshake(port, "a.test")).ok)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue((await handshake(port, "a.test")).ok)


class RuntimeBuildTests(SynchronousTestCase):
    """
    The TLS runtime in each configuration generation, and what routers show.
    """

    def static(self, entryPointTLS: dict[str, Any] | None = None) -> StaticConfig:
        websecure: dict[str, Any] = {"address": "127.0.0.1:0"}
        if entryPointTLS is not None:
            websecure["http"] = {"tls": entryPointTLS}
        config, _ = decode(StaticConfig, {"entryPoints": {"websecure": websecure}})
        return effective(config)

    def config(self) -> Any:
        raw = {
            "http": {
                "routers": {
                    "foo": {"rule": "Host(`a.test`)", "service": "s", "tls": {"options": "foo"}},
                    "missing": {"rule": "Host(`m.test`)", "service": "s", "tls": {"options": "nope"}},
                    "plain": {"rule": "Host(`p.test`)", "service": "s"},
                    "acme": {"rule": "Host(`le.test`)", "service": "s", "tls": {"certResolver": "le"}},
                },
                "services": {"s": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:1"}]}}},
            },
            "tcp": {
                "routers": {
                    "t": {"rule": "HostSNI(`t.test`)", "service": "ts", "tls": {"options": "nope"}},
                    "pass": {"rule": "HostSNI(`u.test`)", "service": "ts", "tls": {"passthrough": True, "options": "nope"}},
                },
                "services": {"ts": {"loadBalancer": {"servers": [{"address": "127.0.0.1:1"}]}}},
            },
            "tls": {
                "certificates": [material().a.inline(), {"certFile": "/nonexistent.pem", "keyFile": "/nonexistent.key"}],
                "options": {"foo": {"minVersion": "VersionTLS13"}},
            },
        }
        merged, errors = mergeProviders([("file", decodeDynamic(raw))])
        self.assertEqual(errors, [])
        return merged

    def test_runtimeTLS(self) -> None:
        """
        Each generation carries its TLS runtime: options qualified by
        provider, routers with unknown options disabled, TCP ones too (not
        passthrough), certificate errors in tlsErrors.
        """
        runtime = build(self.static(), self.config(), 1)
        self.assertEqual(runtime.tls.optionsNameFor("a.test", "websecure"), "foo@file")
        self.assertEqual(runtime.tls.optionsNameFor("p.test", "websecure"), "default")
        self.assertEqual(runtime.routers["foo@file"].status, "enabled")
        self.assertEqual(runtime.routers["missing@file"].status, DISABLED)
        self.assertEqual(runtime.routers["missing@file"].errors, ['the TLS options "nope@file" do not exist'])
        self.assertEqual([r.name for r in runtime.table("websecure").secure], ["acme@file", "foo@file"])
        self.assertEqual(runtime.routers["acme@file"].status, WARNING)
        self.assertIn("not supported yet", runtime.routers["acme@file"].errors[0])
        self.assertEqual(runtime.tcpRouters["t@file"].status, DISABLED)
        self.assertEqual(runtime.tcpRouters["pass@file"].status, "enabled")
        self.assertEqual([e.path for e in runtime.tlsErrors], ["tls.certificates[1]"])
        self.assertIsNotNone(runtime.tls.contextFor("a.test", entryPoint="websecure"))

    def test_contextsAcrossGenerations(self) -> None:
        """
        The next generation reuses the previous one's contexts.
        """
        first = build(self.static(), self.config(), 1)
        second = build(self.static(), self.config(), 2, previous=first)
        self.assertIs(
            second.tls.contextFor("a.test", entryPoint="websecure"),
            first.tls.contextFor("a.test", entryPoint="websecure"),
        )

    def test_entryPointTLS(self) -> None:
        """
        An entrypoint's http.tls options apply to its routers without a tls
        section, qualified in the router's provider.
        """
        runtime = build(self.static({"options": "foo"}), self.config(), 1)
        self.assertEqual(runtime.tls.optionsNameFor("p.test", "websecure"), "foo@file")
        self.assertEqual(runtime.tls.optionsNameFor("le.test", "websecure"), "default")

    def test_emptyConfiguration(self) -> None:
        """
        Without a tls section, Traefik's default options serve the generated
        certificate.
        """
        runtime = build(self.static(), decodeDynamic({}), 1)
        self.assertEqual(runtime.tlsErrors, ())
        self.assertIsNotNone(runtime.tls.contextFor("anything.test"))
        self.assertEqual(runtime.tls.defaultCertificate.label, DEFAULT_CERT_CN)


class DocsExamplesTests(SynchronousTestCase):
    """
    The dynamic configuration examples of docs/tls.rst load cleanly.
    """

    def test_examples(self) -> None:
        """
        Every TOML block of the page decodes, and its TLS options are valid.
        """
        with open(os.path.join(ROOT, "docs", "tls.rst"), encoding="utf-8") as f:
            text = f.read()
        blocks = re.findall(r"::\n\n((?:    .*\n|\n)+)", text)
        checked = 0
        for block in blocks:
            body = "\n".join(line[4:] for line in block.splitlines())
            if not re.search(r"^\[\[?(tls|http)", body, re.MULTILINE):
                continue
            config = decodeDynamic(parseDocument(body, "example.toml"))
            runtime = TLSRuntime.build(config.tls)
            self.assertEqual([e for e in runtime.errors if not e.path.startswith("tls.certificates")
                              and not e.path.startswith("tls.stores.default.defaultCertificate")
                              and not e.path.endswith("caFiles")], [], body)
            checked += 1
        self.assertGreaterEqual(checked, 4)
