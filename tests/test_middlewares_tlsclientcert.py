"""
Tests for the passTLSClientCert middleware: the header formats against the
expected values of Traefik's own tests (on certificates made here with the
same names, serial numbers, validity and alternative names), the handler on
in-memory requests, and end to end over real mutual TLS connections to an
in-process entrypoint: HTTP/1.1 from Python's ssl module, HTTP/2 from curl.
"""

from __future__ import annotations

import base64
import datetime
import http.client
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import urllib.parse
from types import SimpleNamespace
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import crypto
from twisted.internet import defer, threads
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.logger import ILogObserver, Logger, LogLevel
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.trial.unittest import SkipTest, SynchronousTestCase
from zope.interface.verify import verifyObject

from relayd.config.dynamic import decodeDynamic
from relayd.config.loader import parseDocument
from relayd.config.middlewares import (
    PassTLSClientCert,
    TLSClientCertificateInfo,
    TLSClientCertificateIssuerDNInfo,
    TLSClientCertificateSubjectDNInfo,
)
from relayd.interfaces import IHTTPHandler
from relayd.middlewares import _resolve
from relayd.middlewares.tlsclientcert import (
    CERT_HEADER,
    CERT_INFO_HEADER,
    PassTLSClientCertHandler,
    buildPassTLSClientCert,
    certificateInfo,
    distinguishedName,
    goQueryEscape,
    infoValue,
    peerCertificates,
    pemValue,
    subjectAlternativeNames,
    tlsTransport,
)
from tests.helpers import ROOT, memoryRequest, startBackend, writeFile
from tests.test_examples import _literalBlock
from tests.test_proxy import ProxyTestCase

UTC = datetime.timezone.utc
_KEY = ec.generate_private_key(ec.SECP256R1())


def _attributes(*pairs: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in pairs])


def _certificate(
    subject: x509.Name,
    issuer: x509.Name,
    serial: int = 1,
    notBefore: datetime.datetime = datetime.datetime(2020, 1, 1, tzinfo=UTC),
    notAfter: datetime.datetime = datetime.datetime(2030, 1, 1, tzinfo=UTC),
    names: list[x509.GeneralName] | None = None,
    key: Any = _KEY,
    issuerKey: Any = _KEY,
    ca: bool = False,
    usage: Any = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(notBefore)
        .not_valid_after(notAfter)
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuerKey, hashes.SHA256())


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _pemBody(certificate: x509.Certificate) -> str:
    """
    The PEM block of C{certificate} without its first and last lines and
    without line breaks.
    """
    return "".join(_pem(certificate).decode("ascii").splitlines()[1:-1])


# The certificates of Traefik's tests, remade with the same fields: the
# signing CA's name, a minimal client certificate and a complete one.

SIGNING_CA = _attributes(
    (NameOID.DOMAIN_COMPONENT, "org"),
    (NameOID.DOMAIN_COMPONENT, "cheese"),
    (NameOID.ORGANIZATION_NAME, "Cheese"),
    (NameOID.ORGANIZATION_NAME, "Cheese 2"),
    (NameOID.ORGANIZATIONAL_UNIT_NAME, "Simple Signing Section"),
    (NameOID.ORGANIZATIONAL_UNIT_NAME, "Simple Signing Section 2"),
    (NameOID.COMMON_NAME, "Simple Signing CA"),
    (NameOID.COMMON_NAME, "Simple Signing CA 2"),
    (NameOID.COUNTRY_NAME, "FR"),
    (NameOID.COUNTRY_NAME, "US"),
    (NameOID.LOCALITY_NAME, "TOULOUSE"),
    (NameOID.LOCALITY_NAME, "LYON"),
    (NameOID.STATE_OR_PROVINCE_NAME, "Signing State"),
    (NameOID.STATE_OR_PROVINCE_NAME, "Signing State 2"),
    (NameOID.EMAIL_ADDRESS, "simple@signing.com"),
    (NameOID.EMAIL_ADDRESS, "simple2@signing.com"),
)

MINIMAL_CHEESE = _certificate(
    _attributes(
        (NameOID.COUNTRY_NAME, "FR"),
        (NameOID.STATE_OR_PROVINCE_NAME, "Some-State"),
        (NameOID.ORGANIZATION_NAME, "Cheese"),
    ),
    SIGNING_CA,
    serial=481535886039632329873080491016862977516759989652,
    notBefore=datetime.datetime(2018, 12, 6, 11, 10, 36, tzinfo=UTC),
    notAfter=datetime.datetime(2021, 9, 25, 11, 10, 36, tzinfo=UTC),
)

COMPLETE_CHEESE = _certificate(
    _attributes(
        (NameOID.DOMAIN_COMPONENT, "org"),
        (NameOID.DOMAIN_COMPONENT, "cheese"),
        (NameOID.ORGANIZATION_NAME, "Cheese"),
        (NameOID.ORGANIZATION_NAME, "Cheese 2"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "Simple Signing Section"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "Simple Signing Section 2"),
        (NameOID.COMMON_NAME, "*.cheese.org"),
        (NameOID.COMMON_NAME, "*.cheese.com"),
        (NameOID.COUNTRY_NAME, "FR"),
        (NameOID.COUNTRY_NAME, "US"),
        (NameOID.LOCALITY_NAME, "TOULOUSE"),
        (NameOID.LOCALITY_NAME, "LYON"),
        (NameOID.STATE_OR_PROVINCE_NAME, "Cheese org state"),
        (NameOID.STATE_OR_PROVINCE_NAME, "Cheese com state"),
        (NameOID.EMAIL_ADDRESS, "cert@cheese.org"),
        (NameOID.EMAIL_ADDRESS, "cert@scheese.com"),
    ),
    SIGNING_CA,
    serial=1,
    notBefore=datetime.datetime(2018, 12, 6, 11, 10, 16, tzinfo=UTC),
    notAfter=datetime.datetime(2020, 12, 5, 11, 10, 16, tzinfo=UTC),
    names=[
        x509.DNSName("*.cheese.org"),
        x509.DNSName("*.cheese.net"),
        x509.DNSName("*.cheese.com"),
        x509.IPAddress(ipaddress.ip_address("10.0.1.0")),
        x509.IPAddress(ipaddress.ip_address("10.0.1.2")),
        x509.RFC822Name("test@cheese.org"),
        x509.RFC822Name("test@cheese.net"),
    ],
)

ALL_SUBJECT = TLSClientCertificateSubjectDNInfo(
    country=True,
    province=True,
    locality=True,
    organization=True,
    organizationalUnit=True,
    commonName=True,
    serialNumber=True,
    domainComponent=True,
)
ALL_ISSUER = TLSClientCertificateIssuerDNInfo(
    country=True,
    province=True,
    locality=True,
    organization=True,
    commonName=True,
    serialNumber=True,
    domainComponent=True,
)
ALL_INFO = TLSClientCertificateInfo(
    notAfter=True, notBefore=True, sans=True, serialNumber=True, subject=ALL_SUBJECT, issuer=ALL_ISSUER
)

# The expected values of Traefik's tests, unescaped.
CHEESE_ISSUER = (
    'Issuer="DC=org,DC=cheese,C=FR,C=US,ST=Signing State,ST=Signing State 2,L=TOULOUSE,L=LYON,'
    'O=Cheese,O=Cheese 2,CN=Simple Signing CA 2"'
)
MINIMAL_CHEESE_ALL_INFO = ";".join(
    [
        'Subject="C=FR,ST=Some-State,O=Cheese"',
        CHEESE_ISSUER,
        'SerialNumber="481535886039632329873080491016862977516759989652"',
        'NB="1544094636"',
        'NA="1632568236"',
    ]
)
COMPLETE_CHEESE_ALL_INFO = ";".join(
    [
        'Subject="DC=org,DC=cheese,C=FR,C=US,ST=Cheese org state,ST=Cheese com state,L=TOULOUSE,L=LYON,'
        'O=Cheese,O=Cheese 2,OU=Simple Signing Section,OU=Simple Signing Section 2,CN=*.cheese.com"',
        CHEESE_ISSUER,
        'SerialNumber="1"',
        'NB="1544094616"',
        'NA="1607166616"',
        'SAN="*.cheese.org,*.cheese.net,*.cheese.com,test@cheese.org,test@cheese.net,10.0.1.0,10.0.1.2"',
    ]
)
SOME_INFO = TLSClientCertificateInfo(
    notAfter=True,
    sans=True,
    subject=TLSClientCertificateSubjectDNInfo(organization=True),
    issuer=TLSClientCertificateIssuerDNInfo(country=True),
)


class InfoFormatTests(SynchronousTestCase):
    """
    The X-Forwarded-Tls-Client-Cert-Info value, field by field.
    """

    def test_minimalCertificateAllInfo(self) -> None:
        """
        Every field of a certificate without alternative names or domain
        components, in Traefik's order; absent fields are left out.
        """
        self.assertEqual(certificateInfo(MINIMAL_CHEESE, ALL_INFO), MINIMAL_CHEESE_ALL_INFO)

    def test_completeCertificateAllInfo(self) -> None:
        """
        Every field of a certificate with repeated attributes and all kinds
        of alternative names: DC first, the last CN only, names grouped by
        kind (DNS, e-mail, IP).
        """
        self.assertEqual(certificateInfo(COMPLETE_CHEESE, ALL_INFO), COMPLETE_CHEESE_ALL_INFO)

    def test_someInfo(self) -> None:
        """
        Only the selected fields appear; asking for alternative names of a
        certificate that has none adds nothing.
        """
        self.assertEqual(
            certificateInfo(MINIMAL_CHEESE, SOME_INFO), 'Subject="O=Cheese";Issuer="C=FR,C=US";NA="1632568236"'
        )

    def test_absentAttributeRequested(self) -> None:
        """
        Asking for an attribute the name does not have (an organizational
        unit) adds nothing.
        """
        info = TLSClientCertificateInfo(
            notAfter=True,
            sans=True,
            subject=TLSClientCertificateSubjectDNInfo(organization=True, organizationalUnit=True),
            issuer=TLSClientCertificateIssuerDNInfo(country=True),
        )
        self.assertEqual(
            certificateInfo(MINIMAL_CHEESE, info), 'Subject="O=Cheese";Issuer="C=FR,C=US";NA="1632568236"'
        )

    def test_twoCertificates(self) -> None:
        """
        Certificates are separated by a comma, in the order given, and the
        whole value is escaped as a URL query component.
        """
        value = infoValue([MINIMAL_CHEESE, COMPLETE_CHEESE], ALL_INFO)
        self.assertEqual(
            urllib.parse.unquote_plus(value), MINIMAL_CHEESE_ALL_INFO + "," + COMPLETE_CHEESE_ALL_INFO
        )

    def test_escaped(self) -> None:
        """
        The header value is the info escaped as Go's url.QueryEscape does.
        """
        self.assertEqual(
            infoValue([MINIMAL_CHEESE], SOME_INFO),
            "Subject%3D%22O%3DCheese%22%3BIssuer%3D%22C%3DFR%2CC%3DUS%22%3BNA%3D%221632568236%22",
        )

    def test_nothingSelected(self) -> None:
        """
        Empty subject and issuer options, or no options at all, give an
        empty value (which Traefik still sets as the header).
        """
        empty = TLSClientCertificateInfo(
            subject=TLSClientCertificateSubjectDNInfo(), issuer=TLSClientCertificateIssuerDNInfo()
        )
        self.assertEqual(infoValue([COMPLETE_CHEESE], empty), "")
        self.assertEqual(infoValue([COMPLETE_CHEESE], TLSClientCertificateInfo()), "")
        self.assertEqual(infoValue([MINIMAL_CHEESE, COMPLETE_CHEESE], TLSClientCertificateInfo()), "%2C")

    def test_lastCommonNameAndSerialNumber(self) -> None:
        """
        CN and SN give the last value in the name; the other attributes give
        every value, in the order of the name.
        """
        name = _attributes(
            (NameOID.SERIAL_NUMBER, "first"),
            (NameOID.COMMON_NAME, "one"),
            (NameOID.ORGANIZATION_NAME, "a"),
            (NameOID.SERIAL_NUMBER, "second"),
            (NameOID.COMMON_NAME, "two"),
            (NameOID.ORGANIZATION_NAME, "b"),
        )
        self.assertEqual(distinguishedName(name, ALL_SUBJECT), "O=a,O=b,SN=second,CN=two,")

    def test_multiValuedRelativeName(self) -> None:
        """
        The attributes of a multi-valued RDN count in their encoded order
        like any others.
        """
        name = x509.Name(
            [
                x509.RelativeDistinguishedName(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "x"),
                        x509.NameAttribute(NameOID.COMMON_NAME, "c"),
                    ]
                ),
                x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "y")]),
            ]
        )
        certificate = _certificate(name, name)
        self.assertEqual(distinguishedName(certificate.subject, ALL_SUBJECT), "OU=x,OU=y,CN=c,")

    def test_emptyValues(self) -> None:
        """
        Empty attribute values are left out (an empty last SN hides an
        earlier one), except a domain component, which Traefik writes even
        when empty.
        """
        name = _attributes(
            (NameOID.DOMAIN_COMPONENT, ""),
            (NameOID.ORGANIZATION_NAME, ""),
            (NameOID.SERIAL_NUMBER, "s"),
            (NameOID.SERIAL_NUMBER, ""),
        )
        certificate = _certificate(name, name)
        self.assertEqual(certificateInfo(certificate, ALL_INFO), 'Subject="DC=";Issuer="DC=";SerialNumber="1";NB="1577836800";NA="1893456000"')

    def test_onlyOneTrailingSeparatorTrimmed(self) -> None:
        """
        Values are not escaped inside the DN, and only one trailing comma is
        taken off, as Traefik does.
        """
        name = _attributes((NameOID.COMMON_NAME, 'a "b",'))
        certificate = _certificate(name, name)
        info = TLSClientCertificateInfo(subject=TLSClientCertificateSubjectDNInfo(commonName=True))
        self.assertEqual(certificateInfo(certificate, info), 'Subject="CN=a "b","')

    def test_issuerHasNoOrganizationalUnit(self) -> None:
        """
        Issuer options have no organizationalUnit, so the issuer's OU never
        appears.
        """
        self.assertNotIn("OU=", certificateInfo(COMPLETE_CHEESE, ALL_INFO).split(";")[1])

    def test_datesBefore1970(self) -> None:
        """
        Validity bounds are Unix seconds as an unsigned 64-bit number, so a
        date before 1970 wraps around as in Go.
        """
        name = _attributes((NameOID.COMMON_NAME, "old"))
        certificate = _certificate(
            name,
            name,
            notBefore=datetime.datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC),
            notAfter=datetime.datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC),
        )
        info = TLSClientCertificateInfo(notBefore=True, notAfter=True)
        self.assertEqual(certificateInfo(certificate, info), 'NB="18446744073709551615";NA="1"')


class AlternativeNamesTests(SynchronousTestCase):
    """
    The SAN field: DNS names, e-mail addresses, IP addresses and URIs.
    """

    def test_noExtension(self) -> None:
        """
        A certificate without the extension has no names.
        """
        self.assertEqual(subjectAlternativeNames(MINIMAL_CHEESE), [])

    def test_allKinds(self) -> None:
        """
        Names come grouped by kind whatever their order in the certificate,
        each kind in certificate order; other kinds are ignored.
        """
        name = _attributes((NameOID.COMMON_NAME, "sans"))
        certificate = _certificate(
            name,
            name,
            names=[
                x509.UniformResourceIdentifier("my.foo.com"),
                x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
                x509.RFC822Name("test@test.com"),
                x509.DNSName("foo"),
                x509.RegisteredID(x509.ObjectIdentifier("1.2.3.4")),
                x509.DirectoryName(name),
                x509.UniformResourceIdentifier("my.bar.com"),
                x509.IPAddress(ipaddress.ip_address("10.0.0.2")),
                x509.RFC822Name("test2@test.com"),
                x509.DNSName("bar"),
            ],
        )
        self.assertEqual(
            subjectAlternativeNames(certificate),
            ["foo", "bar", "test@test.com", "test2@test.com", "10.0.0.1", "10.0.0.2", "my.foo.com", "my.bar.com"],
        )

    def test_addressesAndURIsAsGoWritesThem(self) -> None:
        """
        IPv6 addresses are written compressed, IPv4-mapped ones in dotted
        form (as Go's net.IP does); URIs as Go's url.URL writes them back
        (scheme lower-cased, a space in the path escaped), or as written when
        Go cannot parse them.
        """
        name = _attributes((NameOID.COMMON_NAME, "sans"))
        certificate = _certificate(
            name,
            name,
            names=[
                x509.IPAddress(ipaddress.ip_address("2001:db8:0:0:1:0:0:1")),
                x509.IPAddress(ipaddress.ip_address("::ffff:192.0.2.1")),
                x509.UniformResourceIdentifier("SPIFFE://Example.org/ns/Default"),
                x509.UniformResourceIdentifier("urn:example:a,b"),
                x509.UniformResourceIdentifier("https://h/a b#c d"),
                x509.UniformResourceIdentifier("https://h/%zz"),
            ],
        )
        self.assertEqual(
            subjectAlternativeNames(certificate),
            [
                "2001:db8::1:0:0:1",
                "192.0.2.1",
                "spiffe://Example.org/ns/Default",
                "urn:example:a,b",
                "https://h/a%20b#c%20d",
                "https://h/%zz",
            ],
        )


class PEMFormatTests(SynchronousTestCase):
    """
    The X-Forwarded-Tls-Client-Cert value.
    """

    def test_oneCertificate(self) -> None:
        """
        One certificate: its PEM block without the delimiter lines and line
        breaks.
        """
        self.assertEqual(pemValue([_der(MINIMAL_CHEESE)]), _pemBody(MINIMAL_CHEESE))

    def test_twoCertificates(self) -> None:
        """
        Several certificates are separated by commas, in order, and nothing
        is escaped.
        """
        value = pemValue([_der(MINIMAL_CHEESE), _der(COMPLETE_CHEESE)])
        self.assertEqual(value, _pemBody(MINIMAL_CHEESE) + "," + _pemBody(COMPLETE_CHEESE))
        self.assertTrue("/" in value or "+" in value)

    def test_queryEscape(self) -> None:
        """
        goQueryEscape keeps letters, digits and -_.~, writes a space as +
        and every other byte of the UTF-8 as %XX in upper case.
        """
        self.assertEqual(goQueryEscape("aZ09-_.~ +/=;,\"é*@"), "aZ09-_.~+%2B%2F%3D%3B%2C%22%C3%A9%2A%40")


# The handler, on in-memory requests.


class _FakeTLSConnection:
    """
    What the handler asks of pyOpenSSL's connection.
    """

    def __init__(self, certificates: list[bytes], chainHasLeaf: bool = False) -> None:
        loaded = [crypto.load_certificate(crypto.FILETYPE_ASN1, der) for der in certificates]
        self.leaf = loaded[0] if loaded else None
        self.chain = loaded if chainHasLeaf else loaded[1:]

    def get_peer_certificate(self) -> Any:
        return self.leaf

    def get_peer_cert_chain(self) -> Any:
        return self.chain if self.leaf is not None else None


def _tls(certificates: list[bytes], chainHasLeaf: bool = False) -> TLSMemoryBIOProtocol:
    transport = TLSMemoryBIOProtocol(None, Protocol())
    transport._tlsConnection = _FakeTLSConnection(certificates, chainHasLeaf)  # type: ignore[assignment]
    return transport


class _Next:
    def __init__(self) -> None:
        self.requests: list[Any] = []

    def handle(self, request: Any) -> None:
        self.requests.append(request)


FORGED = [(CERT_HEADER, b"forged"), (CERT_INFO_HEADER, b"forged-info")]


def _request(certificates: list[bytes] | None, headers: Any = (), chainHasLeaf: bool = False) -> Any:
    """
    An in-memory HTTP/1.1 request, on a TLS connection with these client
    certificates unless C{None}.
    """
    request = memoryRequest(headers=list(headers), secure=certificates is not None)
    if certificates is not None:
        request.channel.transport = _tls(certificates, chainHasLeaf)
    return request


def _handle(config: PassTLSClientCert, request: Any) -> Any:
    following = _Next()
    PassTLSClientCertHandler(following, "certs@file", config).handle(request)
    return following


BOTH = PassTLSClientCert(pem=True, info=ALL_INFO)


class HandlerTests(SynchronousTestCase):
    """
    When the handler sets the headers, and where it finds the certificates.
    """

    def test_interface(self) -> None:
        """
        The handler provides IHTTPHandler.
        """
        self.assertTrue(verifyObject(IHTTPHandler, PassTLSClientCertHandler(_Next(), "m", BOTH)))

    def test_registered(self) -> None:
        """
        The passTLSClientCert kind is built by this module.
        """
        self.assertIs(_resolve("passTLSClientCert"), buildPassTLSClientCert)
        info = SimpleNamespace(name="certs@file", config=SimpleNamespace(config=lambda: BOTH))
        handler = buildPassTLSClientCert(None, info, _Next(), ())  # type: ignore[arg-type]
        self.assertIsInstance(handler, PassTLSClientCertHandler)
        self.assertEqual((handler.pem, handler.info), (True, ALL_INFO))

    def test_bothHeaders(self) -> None:
        """
        With certificates, both headers are set, replacing what the request
        carried, and the request goes on.
        """
        request = _request([_der(MINIMAL_CHEESE), _der(COMPLETE_CHEESE)], FORGED)
        following = _handle(BOTH, request)
        self.assertEqual(following.requests, [request])
        headers = request.requestHeaders
        self.assertEqual(
            headers.getRawHeaders(CERT_HEADER),
            [(_pemBody(MINIMAL_CHEESE) + "," + _pemBody(COMPLETE_CHEESE)).encode()],
        )
        self.assertEqual(
            headers.getRawHeaders(CERT_INFO_HEADER),
            [infoValue([MINIMAL_CHEESE, COMPLETE_CHEESE], ALL_INFO).encode()],
        )

    def test_pemOnly(self) -> None:
        """
        With only pem, the info header is not touched.
        """
        request = _request([_der(MINIMAL_CHEESE)], FORGED)
        _handle(PassTLSClientCert(pem=True), request)
        self.assertEqual(request.requestHeaders.getRawHeaders(CERT_HEADER), [_pemBody(MINIMAL_CHEESE).encode()])
        self.assertEqual(request.requestHeaders.getRawHeaders(CERT_INFO_HEADER), [b"forged-info"])

    def test_infoOnly(self) -> None:
        """
        With only info, the pem header is not touched.
        """
        request = _request([_der(MINIMAL_CHEESE)], FORGED)
        _handle(PassTLSClientCert(info=SOME_INFO), request)
        self.assertEqual(request.requestHeaders.getRawHeaders(CERT_HEADER), [b"forged"])
        self.assertEqual(
            request.requestHeaders.getRawHeaders(CERT_INFO_HEADER), [infoValue([MINIMAL_CHEESE], SOME_INFO).encode()]
        )

    def test_emptyInfoStillSet(self) -> None:
        """
        An info section selecting nothing sets the header to an empty value.
        """
        request = _request([_der(MINIMAL_CHEESE)])
        _handle(PassTLSClientCert(info=TLSClientCertificateInfo()), request)
        self.assertEqual(request.requestHeaders.getRawHeaders(CERT_INFO_HEADER), [b""])

    def test_noOption(self) -> None:
        """
        Without pem or info, nothing is set.
        """
        request = _request([_der(MINIMAL_CHEESE)])
        _handle(PassTLSClientCert(), request)
        self.assertFalse(request.requestHeaders.hasHeader(CERT_HEADER))
        self.assertFalse(request.requestHeaders.hasHeader(CERT_INFO_HEADER))

    def test_withoutCertificate(self) -> None:
        """
        On a plain connection, or TLS without a client certificate, the
        headers are left as they came (the entrypoint drops them for clients
        that are not trusted).
        """
        for request in (_request(None, FORGED), _request([], FORGED)):
            following = _handle(BOTH, request)
            self.assertEqual(following.requests, [request])
            self.assertEqual(request.requestHeaders.getRawHeaders(CERT_HEADER), [b"forged"])
            self.assertEqual(request.requestHeaders.getRawHeaders(CERT_INFO_HEADER), [b"forged-info"])

    def test_chainWithLeaf(self) -> None:
        """
        Should the library's chain start with the leaf, it is not repeated.
        """
        ders = [_der(COMPLETE_CHEESE), _der(MINIMAL_CHEESE)]
        self.assertEqual(peerCertificates(_request(ders, chainHasLeaf=True)), tuple(ders))
        self.assertEqual(peerCertificates(_request(ders)), tuple(ders))

    def test_http2Stream(self) -> None:
        """
        An HTTP/2 stream's TLS connection is its connection's transport.
        """
        transport = _tls([_der(MINIMAL_CHEESE)])
        stream = SimpleNamespace(connection=SimpleNamespace(transport=transport))
        request = SimpleNamespace(stream=stream, channel=stream, requestHeaders=memoryRequest().requestHeaders)
        self.assertIs(tlsTransport(request), transport)
        _handle(PassTLSClientCert(pem=True), request)
        self.assertEqual(request.requestHeaders.getRawHeaders(CERT_HEADER), [_pemBody(MINIMAL_CHEESE).encode()])

    def test_plainTransport(self) -> None:
        """
        A request on a plain connection has no TLS transport and no
        certificates.
        """
        request = memoryRequest()
        self.assertIsNone(tlsTransport(request))
        self.assertEqual(peerCertificates(request), ())

    def test_unreadableCertificate(self) -> None:
        """
        A certificate OpenSSL accepts but whose name cannot be read (a
        T61String that is not UTF-8, which Go would refuse outright) still
        gives the pem header; the info header is left out with a warning.
        """
        name = _attributes((NameOID.COMMON_NAME, "\u00e9\u00e9"))
        der = _der(_certificate(name, name))
        utf8 = b"\x0c\x04\xc3\xa9\xc3\xa9"
        self.assertIn(utf8, der)
        broken = der.replace(utf8, b"\x14\x04\xe9\xe9\xe9\xe9")
        request = _request([broken])
        events: list[dict[str, Any]] = []
        handler = PassTLSClientCertHandler(_Next(), "certs@file", BOTH)
        handler._log = Logger(observer=cast(ILogObserver, events.append))
        handler.handle(request)
        self.assertEqual(request.requestHeaders.getRawHeaders(CERT_HEADER), [base64.b64encode(broken)])
        self.assertFalse(request.requestHeaders.hasHeader(CERT_INFO_HEADER))
        self.assertEqual([(e["log_level"], e["middleware"]) for e in events], [(LogLevel.warn, "certs@file")])


class DocsTests(SynchronousTestCase):
    """
    The documentation's example loads.
    """

    def test_docsExample(self) -> None:
        """
        The passTLSClientCert example in docs/middlewares.rst decodes to the
        configuration it describes.
        """
        with open(os.path.join(ROOT, "docs", "middlewares.rst"), encoding="utf-8") as f:
            text = f.read()
        raw = parseDocument(_literalBlock(text, "A router on mutual TLS"), "dynamic.toml")
        middleware = decodeDynamic(raw).http.middlewares["client-cert"]
        config = middleware.config()
        self.assertEqual(config.pem, True)
        self.assertEqual(
            config.info,
            TLSClientCertificateInfo(
                notAfter=True,
                sans=True,
                subject=TLSClientCertificateSubjectDNInfo(commonName=True, organization=True),
                issuer=TLSClientCertificateIssuerDNInfo(commonName=True),
            ),
        )


    def test_docsHeaderExample(self) -> None:
        """
        The example info header in docs/middlewares.rst is what the example
        configuration gives for a certificate with those fields.
        """
        with open(os.path.join(ROOT, "docs", "middlewares.rst"), encoding="utf-8") as f:
            text = f.read()
        certificate = _certificate(
            _attributes((NameOID.ORGANIZATION_NAME, "Example Partners"), (NameOID.COMMON_NAME, "client one")),
            _attributes((NameOID.COMMON_NAME, "Partners CA")),
            notAfter=datetime.datetime(2026, 1, 1, tzinfo=UTC),
            names=[
                x509.DNSName("client.example.com"),
                x509.IPAddress(ipaddress.ip_address("192.0.2.7")),
                x509.RFC822Name("ops@example.com"),
            ],
        )
        raw = parseDocument(_literalBlock(text, "A router on mutual TLS"), "dynamic.toml")
        info = decodeDynamic(raw).http.middlewares["client-cert"].config().info
        self.assertIn("\n      " + certificateInfo(certificate, info) + "\n", text)


# End to end, over real mutual TLS.


class _PKI:
    """
    A root CA, an intermediate CA under it, a client certificate from the
    intermediate with every kind of name, and a server certificate for
    127.0.0.1 from the root.
    """

    def __init__(self) -> None:
        now = datetime.datetime.now(UTC).replace(microsecond=0)
        self.notBefore = now - datetime.timedelta(hours=1)
        self.notAfter = now + datetime.timedelta(days=1)
        rootKey = ec.generate_private_key(ec.SECP256R1())
        rootName = _attributes((NameOID.ORGANIZATION_NAME, "relayd tests"), (NameOID.COMMON_NAME, "relayd root CA"))
        self.root = _certificate(rootName, rootName, 10, key=rootKey, issuerKey=rootKey, ca=True)
        intermediateKey = ec.generate_private_key(ec.SECP256R1())
        intermediateName = _attributes(
            (NameOID.ORGANIZATION_NAME, "relayd tests"), (NameOID.COMMON_NAME, "relayd intermediate CA")
        )
        self.intermediate = _certificate(
            intermediateName, rootName, 11, key=intermediateKey, issuerKey=rootKey, ca=True
        )
        self.clientKey = ec.generate_private_key(ec.SECP256R1())
        self.client = _certificate(
            _attributes(
                (NameOID.DOMAIN_COMPONENT, "test"),
                (NameOID.DOMAIN_COMPONENT, "relayd"),
                (NameOID.COUNTRY_NAME, "FR"),
                (NameOID.STATE_OR_PROVINCE_NAME, "Occitanie"),
                (NameOID.LOCALITY_NAME, "Toulouse"),
                (NameOID.ORGANIZATION_NAME, "relayd tests"),
                (NameOID.ORGANIZATIONAL_UNIT_NAME, "edge"),
                (NameOID.SERIAL_NUMBER, "4242"),
                (NameOID.COMMON_NAME, "client one"),
            ),
            intermediateName,
            1234567890123456789,
            self.notBefore,
            self.notAfter,
            names=[
                x509.DNSName("client.example"),
                x509.RFC822Name("ops@client.example"),
                x509.IPAddress(ipaddress.ip_address("192.0.2.7")),
                x509.UniformResourceIdentifier("spiffe://relayd.test/client"),
            ],
            key=self.clientKey,
            issuerKey=intermediateKey,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        )
        self.serverKey = ec.generate_private_key(ec.SECP256R1())
        self.server = _certificate(
            _attributes((NameOID.COMMON_NAME, "relayd")),
            rootName,
            12,
            names=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
            key=self.serverKey,
            issuerKey=rootKey,
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
        )

    def serverOptions(self) -> CertificateOptions:
        """
        TLS termination asking for (not requiring) a client certificate
        from the root CA, offering h2 and http/1.1.
        """
        return CertificateOptions(
            privateKey=crypto.PKey.from_cryptography_key(self.serverKey),
            certificate=crypto.load_certificate(crypto.FILETYPE_PEM, _pem(self.server)),
            verify=True,
            caCerts=[crypto.load_certificate(crypto.FILETYPE_PEM, _pem(self.root))],
            requireCertificate=False,
            acceptableProtocols=[b"h2", b"http/1.1"],
        )

    def writeClient(self, directory: str) -> tuple[str, str]:
        """
        The client's certificate chain (leaf, intermediate) and key as PEM
        files in C{directory}.
        """
        os.makedirs(directory, exist_ok=True)
        chain = os.path.join(directory, "client-chain.pem")
        key = os.path.join(directory, "client-key.pem")
        writeFile(chain, (_pem(self.client) + _pem(self.intermediate)).decode("ascii"))
        keyPEM = self.clientKey.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        writeFile(key, keyPEM.decode("ascii"))
        return chain, key

    def expectedInfo(self) -> str:
        """
        The unescaped info header for the client's chain with every field
        selected, written out by hand.
        """
        notBefore = int(self.notBefore.timestamp())
        notAfter = int(self.notAfter.timestamp())
        issuer = 'Issuer="O=relayd tests,CN=relayd intermediate CA"'
        leaf = (
            'Subject="DC=test,DC=relayd,C=FR,ST=Occitanie,L=Toulouse,O=relayd tests,OU=edge,SN=4242,CN=client one";'
            f'{issuer};SerialNumber="1234567890123456789";NB="{notBefore}";NA="{notAfter}";'
            'SAN="client.example,ops@client.example,192.0.2.7,spiffe://relayd.test/client"'
        )
        intermediate = (
            f'{issuer.replace("Issuer", "Subject")};Issuer="O=relayd tests,CN=relayd root CA";SerialNumber="11";'
            'NB="1577836800";NA="1893456000"'
        )
        return leaf + "," + intermediate


_pkis: list[_PKI] = []


def _pki() -> _PKI:
    if not _pkis:
        _pkis.append(_PKI())
    return _pkis[0]


MIDDLEWARE = {
    "pem": True,
    "info": {
        "notAfter": True,
        "notBefore": True,
        "sans": True,
        "serialNumber": True,
        "subject": {
            "country": True,
            "province": True,
            "locality": True,
            "organization": True,
            "organizationalUnit": True,
            "commonName": True,
            "serialNumber": True,
            "domainComponent": True,
        },
        "issuer": {
            "country": True,
            "province": True,
            "locality": True,
            "organization": True,
            "commonName": True,
            "serialNumber": True,
            "domainComponent": True,
        },
    },
}

FORGED_FIELDS = {"X-Forwarded-Tls-Client-Cert": "forged", "X-Forwarded-Tls-Client-Cert-Info": "forged-info"}


def _httpsGet(port: int, caPEM: bytes, clientFiles: tuple[str, str] | None, headers: dict[str, str]) -> tuple[int, bytes]:
    """
    One GET over HTTP/1.1 and TLS with Python's ssl module, verifying the
    server and presenting C{clientFiles} (chain, key) when given.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=caPEM.decode("ascii"))
    # The test certificates are minimal; newer Pythons verify strictly.
    context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    if clientFiles is not None:
        context.load_cert_chain(*clientFiles)
    context.set_alpn_protocols(["http/1.1"])
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        connection.request("GET", "/echo", headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _httpGet(port: int, headers: dict[str, str]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/echo", headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class MutualTLSTests(ProxyTestCase):
    """
    The middleware on a router served over real TLS connections, with and
    without a client certificate.
    """

    timeout = 60

    def start(self, entryPoint: dict[str, Any] | None = None) -> Any:
        listening, self.echo = startBackend("certs")
        self.addCleanup(listening.stopListening)
        url = f"http://127.0.0.1:{listening.getHost().port}"
        ep = self.startProxy(
            {
                "http": {
                    "routers": {
                        "secure": {"rule": "PathPrefix(`/`)", "service": "s", "tls": {}, "middlewares": ["certs"]},
                        "plain": {"rule": "PathPrefix(`/`)", "service": "s", "middlewares": ["certs"]},
                    },
                    "middlewares": {"certs": {"passTLSClientCert": MIDDLEWARE}},
                    "services": {"s": {"loadBalancer": {"servers": [{"url": url}]}}},
                }
            },
            entryPoint,
        )
        ep.tlsCreator = _pki().serverOptions()
        self.clientFiles = _pki().writeClient(self.mktemp())
        return ep

    @defer.inlineCallbacks
    def get(self, ep: Any, withCertificate: bool, headers: dict[str, str] = FORGED_FIELDS) -> Any:
        """
        GET over HTTP/1.1 and TLS, with or without the client chain; fire
        with the headers the backend received.
        """
        status, body = yield threads.deferToThread(
            _httpsGet, ep.port, _pem(_pki().root), self.clientFiles if withCertificate else None, headers
        )
        self.assertEqual(status, 200, body)
        return json.loads(body)["headers"]

    def assertCertificateHeaders(self, seen: dict[str, list[str]]) -> None:
        """
        The backend got the client's chain in both headers.
        """
        authority = _pki()
        self.assertEqual(
            seen["x-forwarded-tls-client-cert"], [_pemBody(authority.client) + "," + _pemBody(authority.intermediate)]
        )
        [info] = seen["x-forwarded-tls-client-cert-info"]
        self.assertEqual(urllib.parse.unquote_plus(info), authority.expectedInfo())
        self.assertEqual(info, goQueryEscape(authority.expectedInfo()))

    @defer.inlineCallbacks
    def test_clientCertificateChain(self):
        """
        A client presenting a certificate and its intermediate: the backend
        gets both, leaf first, in the pem and info headers, and not the
        values the client sent in those headers.
        """
        ep = self.start()
        seen = yield self.get(ep, withCertificate=True)
        self.assertCertificateHeaders(seen)

    @defer.inlineCallbacks
    def test_noClientCertificate(self):
        """
        A TLS client without a certificate: neither header reaches the
        backend, forged values included.
        """
        ep = self.start()
        seen = yield self.get(ep, withCertificate=False)
        self.assertNotIn("x-forwarded-tls-client-cert", seen)
        self.assertNotIn("x-forwarded-tls-client-cert-info", seen)
        self.assertEqual(seen["x-forwarded-proto"], ["https"])

    @defer.inlineCallbacks
    def test_plainConnection(self):
        """
        A plain HTTP request to a router with the middleware: forged values
        do not reach the backend.
        """
        ep = self.start()
        status, body = yield threads.deferToThread(_httpGet, ep.port, FORGED_FIELDS)
        self.assertEqual(status, 200, body)
        seen = json.loads(body)["headers"]
        self.assertNotIn("x-forwarded-tls-client-cert", seen)
        self.assertNotIn("x-forwarded-tls-client-cert-info", seen)
        self.assertEqual(seen["x-forwarded-proto"], ["http"])

    @defer.inlineCallbacks
    def test_trustedPeer(self):
        """
        From a trusted peer (forwardedHeaders.insecure), as in Traefik, the
        headers it sent go through when it has no certificate, and are
        replaced when it has one.
        """
        ep = self.start({"forwardedHeaders": {"insecure": True}})
        seen = yield self.get(ep, withCertificate=False)
        self.assertEqual(seen["x-forwarded-tls-client-cert"], ["forged"])
        self.assertEqual(seen["x-forwarded-tls-client-cert-info"], ["forged-info"])
        seen = yield self.get(ep, withCertificate=True)
        self.assertCertificateHeaders(seen)

    @defer.inlineCallbacks
    def test_http2(self):
        """
        Over HTTP/2 (curl), the certificates come from the connection the
        stream is on.
        """
        if shutil.which("curl") is None:
            raise SkipTest("curl is not installed")
        ep = self.start()
        chain, key = self.clientFiles
        result = yield threads.deferToThread(
            subprocess.run,
            [
                "curl", "-sSk", "-i", "--http2", "--max-time", "20", "--cert", chain, "--key", key,
                "-H", "X-Forwarded-Tls-Client-Cert: forged", f"https://127.0.0.1:{ep.port}/echo",
            ],
            capture_output=True,
            timeout=30,
        )  # fmt: skip
        self.assertEqual(result.returncode, 0, result.stderr)
        head, _, body = result.stdout.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/2 200"), head)
        self.assertCertificateHeaders(json.loads(body)["headers"])

