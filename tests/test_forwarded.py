"""
Tests for the X-Forwarded-* handling at the entrypoint.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from relayd.proxy.server import HTTPRequest as RelaydRequest
from tests.helpers import memoryRequest
from relayd.proxy.forwarded import HOSTNAME, applyForwardedHeaders, forwardedPort, isManaged


def request(headers: dict[str, list[str]]) -> RelaydRequest:
    return memoryRequest(headers=[(name.encode(), v.encode()) for name, values in headers.items() for v in values])


def header(r: RelaydRequest, name: str) -> list[str] | None:
    values = r.requestHeaders.getRawHeaders(name.encode())
    return None if values is None else [v.decode() for v in values]


class ForwardedHeadersTests(SynchronousTestCase):
    def test_untrustedDropped(self) -> None:
        """
        From an untrusted peer every managed X-Forwarded-* header, underscore
        spellings included, is dropped and then regenerated.
        """
        r = request({"X-Forwarded-For": ["6.6.6.6"], "X-Forwarded-Proto": ["https"], "X_Forwarded_Host": ["evil"],
                     "X-Real-Ip": ["6.6.6.6"], "X-Forwarded-Prefix": ["/x"], "X-Other": ["kept"]})
        applyForwardedHeaders(r, trusted=False, clientIP="10.0.0.1", host="a.example:8080")
        self.assertIsNone(header(r, "X-Forwarded-For"))
        self.assertIsNone(header(r, "X_Forwarded_Host"))
        self.assertIsNone(header(r, "X-Forwarded-Prefix"))
        self.assertEqual(header(r, "X-Real-Ip"), ["10.0.0.1"])
        self.assertEqual(header(r, "X-Forwarded-Proto"), ["http"])
        self.assertEqual(header(r, "X-Forwarded-Host"), ["a.example:8080"])
        self.assertEqual(header(r, "X-Forwarded-Port"), ["8080"])
        self.assertEqual(header(r, "X-Forwarded-Server"), [HOSTNAME])
        self.assertEqual(header(r, "X-Other"), ["kept"])

    def test_trustedKept(self) -> None:
        """
        From a trusted peer incoming values are kept and repeated
        X-Forwarded-For lines are joined.
        """
        r = request({"X-Forwarded-For": ["1.1.1.1", "2.2.2.2"], "X-Forwarded-Proto": ["https"], "X-Real-Ip": ["1.1.1.1"]})
        applyForwardedHeaders(r, trusted=True, clientIP="10.0.0.1", host="a.example")
        self.assertEqual(header(r, "X-Forwarded-For"), ["1.1.1.1, 2.2.2.2"])
        self.assertEqual(header(r, "X-Real-Ip"), ["1.1.1.1"])
        self.assertEqual(header(r, "X-Forwarded-Port"), ["443"])

    def test_websocketProto(self) -> None:
        """
        A WebSocket upgrade gets X-Forwarded-Proto ws, and Connection keeps
        Upgrade.
        """
        r = request({"Connection": ["keep-alive, Upgrade"], "Upgrade": ["websocket"]})
        applyForwardedHeaders(r, trusted=False, clientIP="10.0.0.1", host="a")
        self.assertEqual(header(r, "X-Forwarded-Proto"), ["ws"])
        self.assertEqual(header(r, "Connection"), ["Upgrade"])
        self.assertEqual(header(r, "Upgrade"), ["websocket"])

    def test_connectionHeadersRemoved(self) -> None:
        """
        Headers named in Connection are removed, except managed X- headers
        and those allowed by forwardedHeaders.connection.
        """
        r = request({"Connection": ["X-Secret, X-Forwarded-Proto, X-Keep"], "X-Secret": ["s"], "X-Keep": ["k"]})
        applyForwardedHeaders(r, trusted=True, clientIP="10.0.0.1", host="a", allowedConnection=["x-keep"])
        self.assertIsNone(header(r, "X-Secret"))
        self.assertEqual(header(r, "X-Keep"), ["k"])
        self.assertEqual(header(r, "Connection"), ["X-Keep"])

    def test_port(self) -> None:
        """
        The forwarded port comes from the Host, else 443 for https, else 80.
        """
        self.assertEqual(forwardedPort("a:81", b"http", False), "81")
        self.assertEqual(forwardedPort("a", b"https", False), "443")
        self.assertEqual(forwardedPort("[::1]", b"", True), "443")
        self.assertEqual(forwardedPort("a", b"http", False), "80")

    def test_managed(self) -> None:
        """
        Managed names are matched case-insensitively and with underscores.
        """
        self.assertTrue(isManaged(b"x_real_ip"))
        self.assertFalse(isManaged("X-Request-Id"))
