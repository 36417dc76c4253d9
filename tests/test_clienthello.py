"""
Tests for reading SNI and ALPN from the first bytes of a connection.
"""

from __future__ import annotations

import ssl

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from relayd.proxy.clienthello import MAX_HELLO, peekClientHello


def clientHello(serverName: str | None = "example.test", alpn: list[str] | None = None) -> bytes:
    """
    The ClientHello of Python's own TLS client.
    """
    context = ssl.create_default_context()
    if serverName is None:
        context.check_hostname = False
    if alpn:
        context.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=serverName)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def record(body: bytes) -> bytes:
    return b"\x16\x03\x01" + len(body).to_bytes(2, "big") + body


HELLO = clientHello("Mixed.Example.test", ["h2", "http/1.1"])


class ClientHelloTests(SynchronousTestCase):
    def test_serverNameAndProtocols(self):
        """
        The SNI (lower-cased) and the offered ALPN protocols are read.
        """
        peek = peekClientHello(HELLO)
        self.assertEqual((peek.state, peek.serverName, peek.protocols), ("tls", "mixed.example.test", ("h2", "http/1.1")))

    def test_noServerName(self):
        """
        A ClientHello without SNI or ALPN is TLS with an empty name.
        """
        peek = peekClientHello(clientHello(None))
        self.assertEqual((peek.state, peek.serverName, peek.protocols), ("tls", "", ()))

    def test_everyPrefixNeedsMore(self):
        """
        Every proper prefix of a ClientHello asks for more bytes.
        """
        for end in range(len(HELLO)):
            self.assertEqual(peekClientHello(HELLO[:end]).state, "more", end)

    def test_spanningRecords(self):
        """
        A ClientHello split over several handshake records is put together.
        """
        body = HELLO[5:]
        data = record(body[:10]) + record(body[10:300]) + record(body[300:])
        self.assertEqual(peekClientHello(data).serverName, "mixed.example.test")
        for end in range(len(data)):
            self.assertEqual(peekClientHello(data[:end]).state, "more")

    def test_plain(self):
        """
        Bytes that do not start like a TLS handshake record are plain.
        """
        for data in (b"GET / HTTP/1.1\r\n", b"SSH-2.0-x\r\n", b"\x16\x00", b"\x16\x03\x01\xff\xff", b"\x00"):
            self.assertEqual(peekClientHello(data).state, "plain", data)

    def test_sslv2(self):
        """
        An SSLv2-style hello counts as TLS without a server name.
        """
        self.assertEqual(peekClientHello(b"\x80\x2e\x01").state, "tls")

    def test_malformed(self):
        """
        Handshake records that hold no valid ClientHello are malformed: a
        different message, an alert inside, a truncated body, an SNI with a
        trailing dot, an oversized message.
        """
        body = HELLO[5:]
        dotted = clientHello("a.test")
        nameAt = dotted.index(b"a.test")
        for data in (
            record(b"\x02\x00\x00\x04\x03\x03\x00\x00"),
            record(body[:10]) + b"\x15\x03\x03\x00\x02\x02\x28",
            record(b"\x01\x00\x00\x04\x03\x03\x00\x00"),
            dotted[:nameAt] + b"a.tes." + dotted[nameAt + 6 :],
            record(b"\x01" + (MAX_HELLO).to_bytes(3, "big")),
            b"\x16\x03\x01\x00\x00",
        ):
            self.assertEqual(peekClientHello(data).state, "malformed", data[:40])

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=600))
    def test_anyBytes(self, data):
        """
        Any bytes give an answer, never an exception.
        """
        self.assertIn(peekClientHello(data).state, ("more", "plain", "tls", "malformed"))

    @settings(max_examples=200, deadline=None)
    @given(st.integers(min_value=5, max_value=len(HELLO) - 1), st.binary(min_size=1, max_size=4))
    def test_corruptedHello(self, position, garbage):
        """
        A ClientHello with bytes overwritten still gives an answer.
        """
        data = HELLO[:position] + garbage + HELLO[position + len(garbage) :]
        self.assertIn(peekClientHello(data).state, ("more", "plain", "tls", "malformed"))
