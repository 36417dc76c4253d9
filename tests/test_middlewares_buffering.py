"""
The buffering middleware: request bodies read in full before forwarding, 413
past maxRequestBodyBytes, spilling to a temporary file past
memRequestBodyBytes.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from relayd.config.dynamic import decodeDynamic
from relayd.entrypoints import EntryPointService
from relayd.providers.base import ProviderUpdate
from relayd.watcher import Watcher
from tests.helpers import startBackend
from tests.test_entrypoints import makeStatic, rawRequest


def _chunked(body: bytes, size: int = 1000) -> bytes:
    out = b""
    for start in range(0, len(body), size):
        piece = body[start : start + size]
        out += b"%x\r\n%s\r\n" % (len(piece), piece)
    return out + b"0\r\n\r\n"


class BufferingTests(TestCase):
    def setUp(self) -> None:
        self.port, self.echo = startBackend("B")
        self.addCleanup(self.port.stopListening)
        static = makeStatic("127.0.0.1:0")
        self.watcher = Watcher(reactor, static, reactor=reactor)
        self.addCleanup(self.watcher.stop)
        config = {
            "http": {
                "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "s", "middlewares": ["limit"]}},
                "middlewares": {
                    "limit": {"buffering": {"maxRequestBodyBytes": 2_000_000, "memRequestBodyBytes": 65536}}
                },
                "services": {
                    "s": {"loadBalancer": {"servers": [{"url": f"http://127.0.0.1:{self.port.getHost().port}"}]}}
                },
            }
        }
        self.watcher.update(ProviderUpdate("file", decodeDynamic(config)))
        self.ep = EntryPointService("web", static.entryPoints["web"], reactor, self.watcher.runtime)
        self.watcher.addListener(self.ep.swap)
        self.ep.startService()
        self.addCleanup(self.ep.stopService)

    def send(self, head: bytes, body: bytes) -> defer.Deferred[bytes]:
        return rawRequest(self.ep.port, head + b"\r\n" + body)

    @defer.inlineCallbacks
    def test_announcedTooLarge(self) -> Any:
        """
        A Content-Length over the maximum is refused with 413 before the
        body is read; the server never sees the request.
        """
        answer = yield self.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3000000\r\n", b"x" * 1000)
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n"), answer)
        self.assertIn(b"Connection: close", answer)
        self.assertEqual(self.echo.requests, [])

    @defer.inlineCallbacks
    def test_chunkedTooLarge(self) -> Any:
        """
        A chunked body that grows past the maximum gets 413 and is not
        forwarded.
        """
        answer = yield self.send(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n", _chunked(b"y" * 2_100_000, 65536)
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer[:200])
        self.assertEqual(self.echo.requests, [])

    @defer.inlineCallbacks
    def test_bufferedThenForwarded(self) -> Any:
        """
        A chunked body under the maximum, larger than the in-memory part,
        reaches the server whole, with its length announced.
        """
        body = bytes(range(256)) * 4000  # 1,024,000 bytes
        answer = yield self.send(
            b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n", _chunked(body, 7000)
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:300])
        (seen,) = self.echo.requests
        self.assertEqual(seen["headers"]["content-length"], [str(len(body))])
        self.assertNotIn("transfer-encoding", seen["headers"])
        self.assertEqual(seen["body"].encode("latin-1"), body)
        self.assertIn(b'"backend": "B"', answer)
        json.loads(answer.partition(b"\r\n\r\n")[2])
