"""
Tests for reading and writing PROXY protocol headers.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from relayd.proxy.proxyprotocol import SIGNATURE_V2, HeaderError, ProxyHeader, formatHeader, parseHeader

ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str).filter(lambda a: not a.startswith("::ffff:"))
ports = st.integers(min_value=0, max_value=65535)


class ParseTests(SynchronousTestCase):
    def test_version1(self):
        """
        A version 1 header gives the client and destination addresses and
        its length.
        """
        data = b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\r\nrest"
        self.assertEqual(parseHeader(data), ProxyHeader(1, len(data) - 4, ("203.0.113.7", 51000), ("192.0.2.1", 443)))
        data = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n"
        self.assertEqual(parseHeader(data), ProxyHeader(1, len(data), ("2001:db8::1", 1), ("2001:db8::2", 2)))

    def test_version1Unknown(self):
        """
        PROXY UNKNOWN carries no address.
        """
        self.assertEqual(parseHeader(b"PROXY UNKNOWN\r\nx"), ProxyHeader(1, 15))

    def test_version2(self):
        """
        A version 2 header of the PROXY command gives both addresses; its
        TLVs are skipped; LOCAL carries none.
        """
        block = bytes([203, 0, 113, 7, 192, 0, 2, 1]) + (51000).to_bytes(2, "big") + (443).to_bytes(2, "big")
        tlv = b"\x04\x00\x01x"
        data = SIGNATURE_V2 + b"\x21\x11" + len(block + tlv).to_bytes(2, "big") + block + tlv + b"rest"
        self.assertEqual(parseHeader(data), ProxyHeader(2, len(data) - 4, ("203.0.113.7", 51000), ("192.0.2.1", 443)))
        self.assertEqual(parseHeader(SIGNATURE_V2 + b"\x20\x00\x00\x00"), ProxyHeader(2, 16))

    def test_needMore(self):
        """
        Every proper prefix of a header, and of a signature, asks for more.
        """
        for data in (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", formatHeader(2, ("1.2.3.4", 1), ("5.6.7.8", 2))):
            for end in range(1, len(data)):
                self.assertIs(parseHeader(data[:end]), True, data[:end])

    def test_notAHeader(self):
        """
        Bytes that diverge from both signatures are no header.
        """
        for data in (b"GET / HTTP/1.1\r\n", b"PUT /", b"\r\n\r\nX", b"\x16\x03\x01"):
            self.assertIs(parseHeader(data), False, data)

    def test_invalid(self):
        """
        Headers that start right and then are wrong raise L{HeaderError}.
        """
        for data in (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 70000\r\n",
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
            b"PROXY " + b"x" * 120,
            SIGNATURE_V2 + b"\x22\x11\x00\x0c" + b"\x00" * 12,
            SIGNATURE_V2 + b"\x21\x11\x00\x04" + b"\x00" * 4,
            SIGNATURE_V2 + b"\x21\x00\x00\x00",
            SIGNATURE_V2 + b"\x21\x11\xff\xff",
        ):
            self.assertRaises(HeaderError, parseHeader, data)

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=120))
    def test_anyBytes(self, data):
        """
        Any bytes are a header, no header, incomplete, or a L{HeaderError}.
        """
        try:
            parseHeader(data)
        except HeaderError:
            pass


class FormatTests(SynchronousTestCase):
    @given(st.sampled_from([1, 2]), st.one_of(st.tuples(ipv4, ipv4), st.tuples(ipv6, ipv6)), ports, ports)
    def test_roundTrip(self, version, hosts, sourcePort, destinationPort):
        """
        A written header reads back as the same addresses.
        """
        source, destination = (hosts[0], sourcePort), (hosts[1], destinationPort)
        data = formatHeader(version, source, destination)
        header = parseHeader(data + b"payload")
        self.assertEqual((header.version, header.length, header.source, header.destination), (version, len(data), source, destination))

    def test_mappedAndMixed(self):
        """
        IPv4-mapped addresses are written as IPv4; an IPv4 client with an
        IPv6 destination makes a TCP6 header.
        """
        self.assertEqual(formatHeader(1, ("::ffff:10.0.0.1", 5), ("10.0.0.2", 6)), b"PROXY TCP4 10.0.0.1 10.0.0.2 5 6\r\n")
        self.assertEqual(formatHeader(1, ("10.0.0.1", 5), ("2001:db8::1", 6)), b"PROXY TCP6 ::ffff:10.0.0.1 2001:db8::1 5 6\r\n")

    def test_notIP(self):
        """
        Addresses that are not IP addresses give UNKNOWN and LOCAL headers.
        """
        self.assertEqual(formatHeader(1, ("", 0), ("x", 1)), b"PROXY UNKNOWN\r\n")
        self.assertEqual(formatHeader(2, ("", 0), ("x", 1)), SIGNATURE_V2 + b"\x20\x00\x00\x00")
