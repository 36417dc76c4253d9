"""
Tests for L{relayd.config.address}: Traefik's C{[host]:port[/tcp|/udp]}
addresses and Twisted endpoint descriptions.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from relayd.config.address import Address, isEndpointDescription, parseAddress

# (text, protocol, host, port)
TRAEFIK_FORMS = [
    (":80", "tcp", "", 80),
    (":0", "tcp", "", 0),
    (":65535", "tcp", "", 65535),
    ("127.0.0.1:8000", "tcp", "127.0.0.1", 8000),
    ("0.0.0.0:443", "tcp", "0.0.0.0", 443),
    ("localhost:8080", "tcp", "localhost", 8080),
    ("proxy.example.com:80", "tcp", "proxy.example.com", 80),
    ("[::1]:8000", "tcp", "::1", 8000),
    ("[::]:80", "tcp", "::", 80),
    ("[fe80::1%eth0]:80", "tcp", "fe80::1%eth0", 80),
    (":53/udp", "udp", "", 53),
    (":53/UDP", "udp", "", 53),
    (":80/tcp", "tcp", "", 80),
    ("127.0.0.1:53/udp", "udp", "127.0.0.1", 53),
    ("[::1]:53/udp", "udp", "::1", 53),
    ("  :80  ", "tcp", "", 80),
]

ENDPOINTS = [
    "tcp:8000:interface=127.0.0.1",
    "tcp6:8000:interface=\\:\\:1",
    "unix:/run/relayd.sock",
    "unix:address=/run/relayd.sock:mode=660",
    "systemd:domain=INET:index=0",
]

# (text, message)
INVALID = [
    ("", "empty address"),
    ("   ", "empty address"),
    (
        "80",
        "invalid address '80': expected :port, host:port, [ipv6]:port or a Twisted "
        "endpoint such as tcp:8000:interface=127.0.0.1",
    ),
    ("::1:80", "invalid address '::1:80': expected :port, host:port, [ipv6]:port"),
    ("a:1:2", "invalid address 'a:1:2': expected :port, host:port"),
    (":80/sctp", "invalid address ':80/sctp': the protocol suffix must be /tcp or /udp"),
    (":80/", "invalid address ':80/': the protocol suffix must be /tcp or /udp"),
    ("[::1]8000", "invalid address '[::1]8000': expected [ipv6]:port"),
    ("[::1", "invalid address '[::1': expected [ipv6]:port"),
    ("[nope]:80", "invalid address '[nope]:80': 'nope' is not an IPv6 address"),
    ("[127.0.0.1]:80", "'127.0.0.1' is not an IPv6 address"),
    ("bad_host:80", "invalid address 'bad_host:80': 'bad_host' is not a host name or IP"),
    ("-x:80", "'-x' is not a host name or IP"),
    (":", "invalid address ':': the port must be a number from 0 to 65535"),
    (":http", "invalid address ':http': the port must be a number from 0 to 65535"),
    (":65536", "the port must be a number from 0 to 65535"),
    (":-1", "the port must be a number from 0 to 65535"),
    (":\u00b2", "the port must be a number from 0 to 65535"),
    ("[::1]:x", "the port must be a number from 0 to 65535"),
    ("tcp:abc", "invalid Twisted endpoint description 'tcp:abc': "),
    ("tcp:", "invalid Twisted endpoint description 'tcp:'"),
    ("tcp:80:bogus=1", "invalid Twisted endpoint description 'tcp:80:bogus=1': "),
    ("unix:/x.sock:mode=xyz", "invalid Twisted endpoint description 'unix:/x.sock:mode=xyz'"),
    ("TCP:80", "invalid Twisted endpoint description 'TCP:80'"),
]


class ParseAddressTests(SynchronousTestCase):
    """
    Tests for L{parseAddress}.
    """

    def test_traefikForms(self) -> None:
        """
        Traefik's address forms parse to protocol, host and port.
        """
        for text, protocol, host, port in TRAEFIK_FORMS:
            with self.subTest(text=text):
                self.assertEqual(
                    parseAddress(text), Address(protocol=protocol, host=host, port=port)
                )

    def test_twistedEndpoints(self) -> None:
        """
        Twisted server endpoint descriptions are kept whole, as TCP-style streams.
        """
        for text in ENDPOINTS:
            with self.subTest(text=text):
                self.assertEqual(parseAddress(text), Address(protocol="tcp", endpoint=text))

    def test_invalid(self) -> None:
        """
        Every malformed address fails with a message naming it and the accepted forms.
        """
        for text, message in INVALID:
            with self.subTest(text=text):
                with self.assertRaises(ValueError) as caught:
                    parseAddress(text)
                self.assertIn(message, str(caught.exception))

    def test_notAString(self) -> None:
        """
        A value that is not a string is reported as an empty address.
        """
        with self.assertRaises(ValueError) as caught:
            parseAddress(None)  # type: ignore[arg-type]
        self.assertEqual(str(caught.exception), "empty address")

    @given(st.integers(0, 65535), st.sampled_from(["", "127.0.0.1", "localhost", "[::1]"]))
    def test_describeRoundTrip(self, port: int, host: str) -> None:
        """
        The description of a parsed address parses back to the same address.
        """
        address = parseAddress(f"{host}:{port}")
        self.assertEqual(parseAddress(address.describe()), address)
        udp = parseAddress(f"{host}:{port}/udp")
        self.assertEqual(udp.protocol, "udp")
        self.assertEqual(parseAddress(udp.describe()), udp)


class AddressTests(SynchronousTestCase):
    """
    Tests for L{Address}'s descriptions.
    """

    def test_describe(self) -> None:
        """
        C{describe} writes host, port and protocol, with brackets around IPv6 hosts.
        """
        self.assertEqual(parseAddress(":80").describe(), ":80/tcp")
        self.assertEqual(parseAddress("[::1]:53/udp").describe(), "[::1]:53/udp")
        self.assertEqual(parseAddress("unix:/x.sock").describe(), "unix:/x.sock")

    def test_twistedDescription(self) -> None:
        """
        An empty host listens on every IPv6 and IPv4 address; IPv6 colons are escaped.
        """
        self.assertEqual(parseAddress(":80").twistedDescription(), "tcp6:80:interface=\\:\\:")
        self.assertEqual(
            parseAddress("127.0.0.1:8000").twistedDescription(), "tcp:8000:interface=127.0.0.1"
        )
        self.assertEqual(
            parseAddress("[::1]:8000").twistedDescription(), "tcp6:8000:interface=\\:\\:1"
        )
        self.assertEqual(
            parseAddress("systemd:domain=INET:index=0").twistedDescription(),
            "systemd:domain=INET:index=0",
        )


class IsEndpointDescriptionTests(SynchronousTestCase):
    """
    Tests for L{isEndpointDescription}.
    """

    def test_endpoints(self) -> None:
        """
        Strings that start with a Twisted endpoint type are endpoint descriptions.
        """
        for text in ENDPOINTS + ["ssl:443", "tcp:80"]:
            with self.subTest(text=text):
                self.assertTrue(isEndpointDescription(text))

    def test_hostPort(self) -> None:
        """
        Traefik addresses, including a host name before a port, are not.
        """
        for text in (":80", "localhost:80", "example:8080/udp", "[::1]:80", "80", "myhost:http"):
            with self.subTest(text=text):
                self.assertFalse(isEndpointDescription(text))
