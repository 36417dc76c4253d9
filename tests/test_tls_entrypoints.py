"""
TLS termination on entrypoints, end to end: relayd's own certificate store
and TLS options (from the dynamic configuration), real TLS clients (Python's
ssl module, curl), HTTP backends on loopback; the HTTP to HTTPS redirect
chain through a real relayd process with two entrypoints.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
from typing import Any

from twisted.internet import defer, threads
from twisted.trial.unittest import SkipTest

from relayd.config.dynamic import decodeDynamic
from relayd.providers.base import ProviderUpdate
from tests.helpers import RelaydProcess, freePorts, startBackend, tempdir, writeFile
from tests.test_proxy import ProxyTestCase
from tests.test_tls_store import clientFiles, material


def httpsGet(port: int, serverName: str | None, host: str, path: str = "/", ca: bytes | None = None, client: tuple[str, str] | None = None, sock: Any = None, minimum: Any = None, maximum: Any = None) -> dict[str, Any]:
    """
    One HTTPS request (new connection unless C{sock} is given): the status,
    the certificate's subject CN, the TLS version and the body.
    """
    if sock is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        if ca is None:
            context.verify_mode = ssl.CERT_NONE
        else:
            context.load_verify_locations(cadata=ca.decode())
        if client is not None:
            context.load_cert_chain(*client)
        if minimum is not None:
            context.minimum_version = minimum
        if maximum is not None:
            context.maximum_version = maximum
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock = context.wrap_socket(raw, server_hostname=serverName)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += sock.recv(65536)
    der = sock.getpeercert(binary_form=True)
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    subject = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return {
        "status": int(head.split(b" ")[1]) if head else 0,
        "cn": subject[0].value if subject else "",
        "version": sock.version(),
        "body": body,
        "sock": sock,
    }


def config(backend: str, routers: dict[str, Any], tls: dict[str, Any]) -> dict[str, Any]:
    return {
        "http": {
            "routers": routers,
            "services": {"s": {"loadBalancer": {"servers": [{"url": backend}]}}},
        },
        "tls": tls,
    }


class TLSEntryPointTests(ProxyTestCase):
    timeout = 60

    def backend(self) -> str:
        port, _ = startBackend("b")
        self.addCleanup(port.stopListening)
        return f"http://127.0.0.1:{port.getHost().port}"

    def routers(self, **extra: Any) -> dict[str, Any]:
        routers = {
            "a": {"rule": "Host(`a.test`) || Host(`www.a.test`)", "service": "s", "tls": {}},
            "wild": {"rule": "HostRegexp(`^.+\\.wild\\.test$`)", "service": "s", "tls": {}},
            "plain": {"rule": "PathPrefix(`/`)", "service": "s"},
        }
        routers.update(extra)
        return routers

    @defer.inlineCallbacks
    def test_sniSelection(self):
        """
        The certificate is chosen by SNI: exact name, then wildcard, then the
        default store's certificate; TLS requests reach TLS routers with
        X-Forwarded-Proto https, plain ones the plain router on the same port.
        """
        m = material()
        ep = self.startProxy(
            config(
                self.backend(),
                self.routers(),
                {"certificates": [m.a.inline(), m.wild.inline()], "stores": {"default": {"defaultCertificate": m.default.inline()}}},
            )
        )
        exact = yield threads.deferToThread(httpsGet, ep.port, "a.test", "a.test", ca=m.ca.pem)
        wild = yield threads.deferToThread(httpsGet, ep.port, "x.wild.test", "x.wild.test", ca=m.ca.pem)
        other = yield threads.deferToThread(httpsGet, ep.port, "nothing.test", "a.test")
        none = yield threads.deferToThread(httpsGet, ep.port, None, "a.test")
        self.assertEqual((exact["cn"], wild["cn"], other["cn"], none["cn"]), ("a.test", "wild", "default.test", "default.test"))
        self.assertEqual(exact["status"], 200)
        self.assertEqual(json.loads(exact["body"])["headers"]["x-forwarded-proto"], ["https"])

        def plain() -> bytes:
            sock = socket.create_connection(("127.0.0.1", ep.port), timeout=5)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return data
                data += chunk

        answer = yield threads.deferToThread(plain)
        self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer[:100])
        self.assertIn(b'"x-forwarded-proto": ["http"]', answer)

    @defer.inlineCallbacks
    def test_noDelayOnTLS(self):
        """
        TLS connections have TCP_NODELAY like plain ones, so the first answer
        does not wait for the client's delayed ACK behind the session
        tickets.
        """
        m = material()
        ep = self.startProxy(config(self.backend(), self.routers(), {"certificates": [m.a.inline()]}))
        result = yield threads.deferToThread(httpsGet, ep.port, "a.test", "a.test", ca=m.ca.pem)
        self.assertEqual(result["status"], 200)
        [channel] = ep.secureSite.channels
        sock = channel.transport.transport.socket
        self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 1)
        result["sock"].close()

    @defer.inlineCallbacks
    def test_generatedDefault(self):
        """
        Without any certificate relayd serves its generated self-signed one.
        """
        ep = self.startProxy(config(self.backend(), self.routers(), {}))
        result = yield threads.deferToThread(httpsGet, ep.port, "a.test", "a.test")
        self.assertEqual((result["status"], result["cn"]), (200, "TRAEFIK DEFAULT CERT"))

    @defer.inlineCallbacks
    def test_hotSwap(self):
        """
        A new certificate applies to the next handshake with no restart,
        while a connection opened before keeps working.
        """
        m = material()
        backend = self.backend()
        ep = self.startProxy(config(backend, self.routers(), {"certificates": [m.a.inline()]}), static={"providers": {"providersThrottleDuration": "0s"}})
        first = yield threads.deferToThread(httpsGet, ep.port, "a.test", "a.test", ca=m.ca.pem)
        self.assertEqual(first["cn"], "a.test")
        self.watcher.update(ProviderUpdate("file", decodeDynamic(config(backend, self.routers(), {"certificates": [m.aRenewed.inline()]}))))
        self.assertIsNone(self.watcher.lastError)
        renewed = yield threads.deferToThread(httpsGet, ep.port, "a.test", "a.test", ca=m.ca.pem)
        self.assertEqual(renewed["cn"], "a.test renewed")
        again = yield threads.deferToThread(httpsGet, ep.port, None, "a.test", sock=first["sock"])
        self.assertEqual((again["status"], again["cn"]), (200, "a.test"))
        first["sock"].close()
        renewed["sock"].close()

    @defer.inlineCallbacks
    def test_badCertificateKeepsOthers(self):
        """
        A certificate that cannot be read is an error in the runtime's TLS
        errors; the other certificates keep serving.
        """
        m = material()
        ep = self.startProxy(
            config(self.backend(), self.routers(), {"certificates": [m.a.inline(), {"certFile": "/nonexistent/cert.pem", "keyFile": "/nonexistent/key.pem"}]})
        )
        errors = self.watcher.runtime.tlsErrors
        self.assertTrue(any("nonexistent" in str(error) for error in errors), errors)
        result = yield threads.deferToThread(httpsGet, ep.port, "a.test", "a.test", ca=m.ca.pem)
        self.assertEqual((result["status"], result["cn"]), (200, "a.test"))

    @defer.inlineCallbacks
    def test_mutualTLS(self):
        """
        A router whose TLS options require and verify client certificates
        lets a client with a certificate from the configured CA through and
        refuses the others at the handshake.
        """
        m = material()
        directory = tempdir(self)
        caFile = os.path.join(directory, "clients-ca.pem")
        with open(caFile, "wb") as f:
            f.write(m.ca.pem)
        routers = self.routers(a={"rule": "Host(`a.test`)", "service": "s", "tls": {"options": "mtls"}})
        ep = self.startProxy(
            config(
                self.backend(),
                routers,
                {"certificates": [m.a.inline()], "options": {"mtls": {"clientAuth": {"caFiles": [caFile], "clientAuthType": "RequireAndVerifyClientCert"}}}},
            )
        )
        good = clientFiles(self, m.goodClient)
        bad = clientFiles(self, m.badClient)
        accepted = yield threads.deferToThread(httpsGet, ep.port, "a.test", "a.test", ca=m.ca.pem, client=good)
        self.assertEqual(accepted["status"], 200)
        for client in (bad, None):
            try:
                refused = yield threads.deferToThread(httpsGet, ep.port, "a.test", "a.test", ca=m.ca.pem, client=client)
            except (ssl.SSLError, ConnectionError, OSError):
                continue
            self.assertEqual(refused["status"], 0, f"client {client} was let through")

    @defer.inlineCallbacks
    def test_versionLimits(self):
        """
        TLS options' minVersion refuses older clients.
        """
        m = material()
        routers = self.routers(a={"rule": "Host(`a.test`)", "service": "s", "tls": {"options": "modern"}})
        ep = self.startProxy(config(self.backend(), routers, {"certificates": [m.a.inline()], "options": {"modern": {"minVersion": "VersionTLS13"}}}))
        modern = yield threads.deferToThread(httpsGet, ep.port, "a.test", "a.test", ca=m.ca.pem)
        self.assertEqual(modern["version"], "TLSv1.3")
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            yield threads.deferToThread(httpsGet, ep.port, "a.test", "a.test", ca=m.ca.pem, maximum=ssl.TLSVersion.TLSv1_2)

    @defer.inlineCallbacks
    def test_misdirected(self):
        """
        A request whose Host header belongs to a router with other TLS
        options than those the connection (its SNI) was set up with gets 421.
        """
        m = material()
        routers = self.routers(
            a={"rule": "Host(`a.test`)", "service": "s", "tls": {}},
            old={"rule": "Host(`old.test`)", "service": "s", "tls": {"options": "legacy"}},
        )
        ep = self.startProxy(
            config(self.backend(), routers, {"certificates": [m.a.inline(), m.old.inline()], "options": {"legacy": {"minVersion": "VersionTLS12", "maxVersion": "VersionTLS12"}}})
        )
        same = yield threads.deferToThread(httpsGet, ep.port, "a.test", "a.test", ca=m.ca.pem)
        self.assertEqual(same["status"], 200)
        crossed = yield threads.deferToThread(httpsGet, ep.port, "a.test", "old.test", ca=m.ca.pem)
        self.assertEqual(crossed["status"], 421)

    @defer.inlineCallbacks
    def test_http2WithStoreCertificates(self):
        """
        ALPN from the TLS options gives HTTP/2 to curl, with the store's
        certificate.
        """
        if shutil.which("curl") is None:
            raise SkipTest("curl is not installed")
        m = material()
        directory = tempdir(self)
        caFile = os.path.join(directory, "ca.pem")
        with open(caFile, "wb") as f:
            f.write(m.ca.pem)
        ep = self.startProxy(config(self.backend(), self.routers(), {"certificates": [m.a.inline()]}))

        def run() -> Any:
            return subprocess.run(
                ["curl", "-sS", "-i", "--http2", "--cacert", caFile, "--resolve", f"a.test:{ep.port}:127.0.0.1", f"https://a.test:{ep.port}/h2"],
                capture_output=True,
                timeout=20,
            )

        result = yield threads.deferToThread(run)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue(result.stdout.startswith(b"HTTP/2 200"), result.stdout[:200])


class RedirectChainTests(ProxyTestCase):
    """
    C{entryPoints.web.http.redirections.entryPoint.to = "websecure"}: a real
    relayd with two entrypoints, followed by curl.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_chain(self):
        if shutil.which("curl") is None:
            raise SkipTest("curl is not installed")
        m = material()
        port, _ = startBackend("b")
        self.addCleanup(port.stopListening)
        directory = tempdir(self)
        web, secure = freePorts(2)
        with open(os.path.join(directory, "ca.pem"), "wb") as f:
            f.write(m.ca.pem)
        m.a.files(directory, "a")
        writeFile(
            os.path.join(directory, "relayd.toml"),
            f"""
[entryPoints.web]
address = "127.0.0.1:{web}"
[entryPoints.web.http.redirections.entryPoint]
to = "websecure"
scheme = "https"
[entryPoints.websecure]
address = "127.0.0.1:{secure}"
[entryPoints.websecure.http.tls]
[providers.file]
filename = "dynamic.toml"
""",
        )
        writeFile(
            os.path.join(directory, "dynamic.toml"),
            f"""
[http.routers.app]
rule = "Host(`a.test`)"
service = "s"
[[http.services.s.loadBalancer.servers]]
url = "http://127.0.0.1:{port.getHost().port}"
[[tls.certificates]]
certFile = "a-certFile.pem"
keyFile = "a-keyFile.pem"
""",
        )
        process = RelaydProcess(["--config", "relayd.toml"], directory)
        self.addCleanup(process.stop)
        yield process.waitForLog("entrypoint websecure listening")

        def run(*args: str) -> Any:
            return subprocess.run(
                ["curl", "-sS", "-i", "--cacert", "ca.pem", "--resolve", f"a.test:{web}:127.0.0.1", "--resolve", f"a.test:{secure}:127.0.0.1", *args],
                capture_output=True,
                timeout=20,
                cwd=directory,
            )

        first = yield threads.deferToThread(run, f"http://a.test:{web}/path/x?q=1&r=2")
        head = first.stdout.split(b"\r\n\r\n")[0].lower()
        self.assertTrue(head.startswith(b"http/1.1 301") or head.startswith(b"http/1.1 308"), head)
        self.assertIn(f"location: https://a.test:{secure}/path/x?q=1&r=2".encode(), head)
        followed = yield threads.deferToThread(run, "-L", f"http://a.test:{web}/path/x?q=1&r=2")
        self.assertEqual(followed.returncode, 0, followed.stderr)
        body = followed.stdout.rsplit(b"\r\n\r\n", 1)[1]
        seen = json.loads(body)
        self.assertEqual(seen["uri"], "/path/x?q=1&r=2")
        self.assertEqual(seen["headers"]["x-forwarded-proto"], ["https"])
