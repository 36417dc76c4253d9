"""
HTTP/2 toward clients: TLS connections that negotiate C{h2} by ALPN are
served by relayd's HTTP/2 channel with the same routing, middlewares and
proxying as HTTP/1.1. The client is curl (libcurl with nghttp2), an
independent implementation; the servers are HTTP/1.1 on loopback.

These tests terminate TLS with a fixed certificate (C{ep.tlsCreator}), so
they exercise HTTP/2 itself; certificate selection is tested with relayd's
certificate store elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from typing import Any

from OpenSSL import crypto
from twisted.internet import defer, reactor, threads
from twisted.internet.ssl import CertificateOptions
from twisted.trial.unittest import SkipTest
from twisted.web import resource, server

from tests.test_proxy import ProxyTestCase
from tests.test_upstream_tls import pki

MB = 1024 * 1024


def pattern(size: int) -> bytes:
    block = bytes(range(256)) * 4096
    return (block * (size // len(block) + 1))[:size]


class _Origin(resource.Resource):
    """
    C{GET /bytes?n=N}: N bytes of a fixed pattern; C{POST /sha}: the SHA-256
    and length of the body; anything else: the request as JSON.
    """

    isLeaf = True

    def render(self, request: server.Request) -> bytes:
        path = request.path
        if path == b"/bytes":
            size = int(request.args[b"n"][0])
            request.setHeader(b"content-type", b"application/octet-stream")
            return pattern(size)
        body = request.content.read()
        if path == b"/sha":
            return json.dumps({"sha256": hashlib.sha256(body).hexdigest(), "length": len(body)}).encode()
        request.setHeader(b"content-type", b"application/json")
        headers = {k.decode().lower(): [v.decode() for v in vs] for k, vs in request.requestHeaders.getAllRawHeaders()}
        return json.dumps({"method": request.method.decode(), "uri": request.uri.decode(), "headers": headers, "body": body.decode("latin-1")}).encode()


def curl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["curl", "-sSk", "--max-time", str(int(timeout)), *args], capture_output=True, timeout=timeout + 5)


class HTTP2Tests(ProxyTestCase):
    timeout = 60

    def setUp(self) -> None:
        if shutil.which("curl") is None:
            if os.environ.get("CI") == "true":
                raise AssertionError("curl is missing (tests/install-deps.sh installs it)")
            raise SkipTest("curl is not installed")

    def start(self, extra: dict[str, Any] | None = None, urls: list[str] | None = None, entryPoint: dict[str, Any] | None = None) -> Any:
        if urls is None:
            site = server.Site(_Origin())
            site.noisy = False
            port = reactor.listenTCP(0, site, interface="127.0.0.1")
            self.addCleanup(port.stopListening)
            urls = [f"http://127.0.0.1:{port.getHost().port}"]
        http: dict[str, Any] = {
            "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "s", "tls": {}}},
            "services": {"s": {"loadBalancer": {"servers": [{"url": url} for url in urls]}}},
        }
        for key, value in (extra or {}).items():
            http.setdefault(key, {}).update(value)
        ep = self.startProxy({"http": http}, entryPoint=entryPoint)
        authority = pki()
        ep.tlsCreator = CertificateOptions(
            privateKey=crypto.load_privatekey(crypto.FILETYPE_PEM, authority.serverKeyPEM),
            certificate=crypto.load_certificate(crypto.FILETYPE_PEM, authority.serverCertPEM),
            acceptableProtocols=[b"h2", b"http/1.1"],
        )
        self.base = f"https://127.0.0.1:{ep.port}"
        return ep

    @defer.inlineCallbacks
    def test_requestsAndHeaders(self):
        """
        GET and POST over HTTP/2 reach the server as HTTP/1.1 with the
        forwarded headers (X-Forwarded-Proto https), path and query intact.
        """
        self.start()
        result = yield threads.deferToThread(
            curl, "--http2", "-i", "-d", "a=1&b=2", "-H", "X-Custom: yes", f"{self.base}/form?q=%20x"
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        head, _, body = result.stdout.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/2 200"), head)
        seen = json.loads(body)
        self.assertEqual((seen["method"], seen["uri"], seen["body"]), ("POST", "/form?q=%20x", "a=1&b=2"))
        self.assertEqual(seen["headers"]["x-forwarded-proto"], ["https"])
        self.assertEqual(seen["headers"]["x-custom"], ["yes"])
        self.assertEqual(seen["headers"]["host"], [f"127.0.0.1:{self.base.rsplit(':', 1)[1]}"])

    @defer.inlineCallbacks
    def test_http11StillServed(self):
        """
        A TLS client that offers only http/1.1 gets HTTP/1.1.
        """
        self.start()
        result = yield threads.deferToThread(curl, "--http1.1", "-i", f"{self.base}/one")
        self.assertTrue(result.stdout.startswith(b"HTTP/1.1 200"), result.stdout[:200])

    @defer.inlineCallbacks
    def test_largeBodiesBothWays(self):
        """
        20 MB up and 20 MB down cross intact within HTTP/2 flow control.
        """
        self.start()
        directory = self.mktemp()
        os.makedirs(directory)
        upload = os.path.join(directory, "up.bin")
        with open(upload, "wb") as f:
            f.write(pattern(20 * MB))
        up = yield threads.deferToThread(curl, "--http2", "--data-binary", f"@{upload}", f"{self.base}/sha")
        self.assertEqual(json.loads(up.stdout), {"sha256": hashlib.sha256(pattern(20 * MB)).hexdigest(), "length": 20 * MB})
        down = yield threads.deferToThread(curl, "--http2", f"{self.base}/bytes?n={20 * MB}")
        self.assertEqual(len(down.stdout), 20 * MB)
        self.assertEqual(hashlib.sha256(down.stdout).digest(), hashlib.sha256(pattern(20 * MB)).digest())

    @defer.inlineCallbacks
    def test_multiplexedStreams(self):
        """
        Many requests in parallel on one connection each get their own
        answer.
        """
        self.start()
        urls = [f"{self.base}/bytes?n={1000 + i}" for i in range(20)]
        args = ["--http2", "--parallel", "--parallel-max", "20", "-w", "%{http_version} %{size_download} %{num_connects}\\n", "-o", "/dev/null"]
        for url in urls[1:]:
            args += [url, "-o", "/dev/null"]
        result = yield threads.deferToThread(curl, *args, urls[0])
        lines = sorted(result.stdout.decode().split("\n")[:-1])
        self.assertEqual(len(lines), 20, result.stdout)
        self.assertEqual({line.split()[0] for line in lines}, {"2"})
        self.assertEqual(sorted(int(line.split()[1]) for line in lines), [1000 + i for i in range(20)])
        self.assertEqual(sum(int(line.split()[2]) for line in lines), 1, "all streams should share one connection")

    @defer.inlineCallbacks
    def test_middlewaresAndErrors(self):
        """
        Middlewares act on HTTP/2 requests as on HTTP/1.1 ones; relayd's own
        answers (404, 502) come back over HTTP/2.
        """
        self.start(
            extra={
                "routers": {
                    "r": {"rule": "PathPrefix(`/app`)", "service": "s", "tls": {}, "middlewares": ["strip", "stamp"]},
                    "dead": {"rule": "PathPrefix(`/dead`)", "service": "gone", "tls": {}},
                },
                "middlewares": {
                    "strip": {"stripPrefix": {"prefixes": ["/app"]}},
                    "stamp": {"headers": {"customResponseHeaders": {"X-Stamp": "relayd"}}},
                },
                "services": {"gone": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:1"}]}}},
            }
        )
        app = yield threads.deferToThread(curl, "--http2", "-i", f"{self.base}/app/inner")
        head, _, body = app.stdout.partition(b"\r\n\r\n")
        self.assertIn(b"x-stamp: relayd", head.lower())
        self.assertEqual(json.loads(body)["uri"], "/inner")
        missing = yield threads.deferToThread(curl, "--http2", "-i", f"{self.base}/nothing")
        self.assertTrue(missing.stdout.startswith(b"HTTP/2 404"), missing.stdout[:100])
        dead = yield threads.deferToThread(curl, "--http2", "-i", f"{self.base}/dead")
        self.assertTrue(dead.stdout.startswith(b"HTTP/2 502"), dead.stdout[:100])

    @defer.inlineCallbacks
    def test_idleConnectionClosed(self):
        """
        An HTTP/2 connection without streams for the entrypoint's idleTimeout
        gets a GOAWAY and is closed; one with a request in between is not
        closed early.
        """
        import socket
        import ssl
        import time

        import h2.connection
        import h2.events

        ep = self.start(entryPoint={"transport": {"respondingTimeouts": {"idleTimeout": "600ms"}}})

        def client() -> Any:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            context.set_alpn_protocols(["h2"])
            sock = context.wrap_socket(socket.create_connection(("127.0.0.1", ep.port), timeout=5))
            assert sock.selected_alpn_protocol() == "h2"
            conn = h2.connection.H2Connection()
            conn.initiate_connection()
            sock.sendall(conn.data_to_send())
            started = time.monotonic()
            events: list[Any] = []
            # One request after 300 ms keeps the connection busy for a moment.
            time.sleep(0.3)
            conn.send_headers(1, [(":method", "GET"), (":path", "/bytes?n=10"), (":scheme", "https"), (":authority", "x")], end_stream=True)
            sock.sendall(conn.data_to_send())
            while True:
                data = sock.recv(65536)
                if not data:
                    return time.monotonic() - started, [type(e).__name__ for e in events]
                events.extend(conn.receive_data(data))
                pending = conn.data_to_send()
                if pending:
                    sock.sendall(pending)

        elapsed, events = yield threads.deferToThread(client)
        self.assertIn("ResponseReceived", events)
        self.assertIn("ConnectionTerminated", events)
        self.assertGreater(elapsed, 0.85)
        self.assertLess(elapsed, 3)
