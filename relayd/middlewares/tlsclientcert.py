"""
The C{passTLSClientCert} middleware: the certificates a client presented on a
mutual TLS connection, handed to the backend in request headers, as Traefik v3
does it (C{pkg/middlewares/passtlsclientcert}).

What Traefik does, and so does relayd:

  - The certificates are those the client sent, leaf first, in its order
    (intermediates included; no root it did not send). A request without any
    (plain HTTP, or TLS without a client certificate) is left as it is.
  - C{pem}: C{X-Forwarded-Tls-Client-Cert} is set to each certificate's DER
    in standard base64 (a PEM block without its BEGIN/END lines and line
    breaks), joined with C{,}. The value is not escaped further: base64 is
    header-safe (Traefik stopped escaping it in v2.9).
  - C{info}: C{X-Forwarded-Tls-Client-Cert-Info} is set to, per certificate
    and joined with C{,}, the selected fields joined with C{;}, each as
    C{Name="value"} and left out when empty: C{Subject} and C{Issuer} (the
    chosen attributes as C{KEY=value} joined with C{,}: every C{DC} in the
    order of the name, then every C{C}, C{ST}, C{L}, C{O} and, for the
    subject, C{OU}, then the last C{SN} and the last C{CN}; attribute values
    are not escaped), C{SerialNumber} (decimal), C{NB} and C{NA} (validity
    bounds in Unix seconds, as an unsigned 64-bit number) and C{SAN} (DNS
    names, then e-mail addresses, then IP addresses, then URIs, joined with
    C{,}). The whole value is then escaped as Go's C{url.QueryEscape} does
    (space as C{+}, all but C{A-Za-z0-9-_.~} as C{%XX}).
  - A header is set (replacing what the request had) only when there is a
    certificate; otherwise what came in goes on. The entrypoint has already
    dropped both headers from clients that are not trusted
    (C{forwardedHeaders}), so only a trusted peer's values can pass through.

URI names are written as Go's C{url.URL} writes them back after parsing (the
scheme in lower case, unusual characters of the path and fragment escaped),
with relayd's port of Go's URL parser.

Where Go and relayd cannot quite meet: certificates Go refuses to parse never
reach Traefik's middleware (the handshake fails); OpenSSL accepts a few more.
relayd gives their URI names that Go cannot parse as written, and when one's
fields cannot be read at all it leaves out the C{-Info} header, with a warning
in the log.
"""

from __future__ import annotations

import base64
import calendar
import datetime
import ipaddress
from typing import Any, Iterable

from cryptography import x509
from cryptography.x509.oid import NameOID
from OpenSSL import crypto
from twisted.logger import Logger
from zope.interface import implementer

from relayd.config.middlewares import (
    PassTLSClientCert,
    TLSClientCertificateInfo,
    TLSClientCertificateIssuerDNInfo,
    TLSClientCertificateSubjectDNInfo,
)
from relayd.interfaces import IHTTPHandler
from relayd.middlewares.paths import GoURLError, decode, encode
from relayd.middlewares.redirect import parseGoURL
from relayd.runtime.build import BuildContext, ObjectInfo
from relayd.tls.creator import tlsTransport

CERT_HEADER = b"X-Forwarded-Tls-Client-Cert"
CERT_INFO_HEADER = b"X-Forwarded-Tls-Client-Cert-Info"

CERT_SEPARATOR = ","
FIELD_SEPARATOR = ";"
SUB_FIELD_SEPARATOR = ","

# The attributes read from a distinguished name after the domain components,
# in the order they are written: (key, OID, option); every value of the first
# ones, the last value of the others. Issuer options have no
# organizationalUnit.
_LISTED = (
    ("C", NameOID.COUNTRY_NAME, "country"),
    ("ST", NameOID.STATE_OR_PROVINCE_NAME, "province"),
    ("L", NameOID.LOCALITY_NAME, "locality"),
    ("O", NameOID.ORGANIZATION_NAME, "organization"),
    ("OU", NameOID.ORGANIZATIONAL_UNIT_NAME, "organizationalUnit"),
)
_SINGLE = (
    ("SN", NameOID.SERIAL_NUMBER, "serialNumber"),
    ("CN", NameOID.COMMON_NAME, "commonName"),
)

# What Go's url.QueryEscape leaves as it is.
_QUERY_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
_UINT64 = 1 << 64


# Finding the certificates.


def peerCertificates(request: Any) -> tuple[bytes, ...]:
    """
    The DER of the certificates the client of C{request} presented, leaf
    first, or nothing when it presented none.
    """
    transport = tlsTransport(request)
    connection = getattr(transport, "_tlsConnection", None)
    if connection is None:
        return ()
    leaf = connection.get_peer_certificate()
    if leaf is None:
        return ()
    certificates = [crypto.dump_certificate(crypto.FILETYPE_ASN1, leaf)]
    # On a server, OpenSSL's chain is what the client sent after its leaf;
    # skip the leaf anyway should a library version include it.
    for index, certificate in enumerate(connection.get_peer_cert_chain() or ()):
        der = crypto.dump_certificate(crypto.FILETYPE_ASN1, certificate)
        if index == 0 and der == certificates[0]:
            continue
        certificates.append(der)
    return tuple(certificates)


# Formatting.


def goQueryEscape(value: str) -> str:
    """
    C{value} escaped as Go's C{url.QueryEscape} does, over its UTF-8 bytes.
    """
    out = []
    for byte in value.encode("utf-8", "surrogateescape"):
        if byte in _QUERY_SAFE:
            out.append(chr(byte))
        elif byte == 0x20:
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def pemValue(certificates: Iterable[bytes]) -> str:
    """
    The C{X-Forwarded-Tls-Client-Cert} value for DER C{certificates}.
    """
    return CERT_SEPARATOR.join(base64.b64encode(der).decode("ascii") for der in certificates)


def _strings(name: x509.Name) -> list[tuple[x509.ObjectIdentifier, str]]:
    # Go keeps only attributes whose value is a string.
    return [(attribute.oid, attribute.value) for attribute in name if isinstance(attribute.value, str)]


def distinguishedName(
    name: x509.Name, options: TLSClientCertificateSubjectDNInfo | TLSClientCertificateIssuerDNInfo | None
) -> str:
    """
    The selected attributes of C{name}, as Traefik writes them inside
    C{Subject="..."} or C{Issuer="..."}; empty when none is there.
    """
    if options is None:
        return ""
    attributes = _strings(name)
    parts: list[str] = []
    if options.domainComponent:
        # Written even when empty, as Traefik does.
        parts.extend(f"DC={value}{SUB_FIELD_SEPARATOR}" for oid, value in attributes if oid == NameOID.DOMAIN_COMPONENT)
    for key, wanted, option in _LISTED:
        if getattr(options, option, False):
            parts.extend(f"{key}={value}{SUB_FIELD_SEPARATOR}" for oid, value in attributes if oid == wanted and value)
    for key, wanted, option in _SINGLE:
        if getattr(options, option, False):
            last = [value for oid, value in attributes if oid == wanted]
            if last and last[-1]:
                parts.append(f"{key}={last[-1]}{SUB_FIELD_SEPARATOR}")
    return "".join(parts)


def _unixSeconds(certificate: x509.Certificate, bound: str) -> int:
    # Go: uint64(t.Unix()); a moment before 1970 wraps around. The _utc
    # properties came with cryptography 42; the older ones are naive UTC.
    moment: datetime.datetime = getattr(certificate, f"not_valid_{bound}_utc", None) or getattr(
        certificate, f"not_valid_{bound}"
    )
    return calendar.timegm(moment.utctimetuple()) % _UINT64


def _ipString(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> str:
    # Go writes an IPv4-mapped IPv6 address in dotted form. (A network, which
    # Go refuses in a certificate, is written as one.)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _uriString(uri: str) -> str:
    # Go's x509 parser keeps a URI name as a url.URL, written back with
    # URL.String. One Go cannot parse makes Go refuse the certificate; here
    # it is given as written.
    try:
        return decode(parseGoURL(encode(uri)).string())
    except GoURLError:
        return uri


def subjectAlternativeNames(certificate: x509.Certificate) -> list[str]:
    """
    The DNS names, e-mail addresses, IP addresses and URIs of
    C{certificate}'s subjectAltName extension, in that order.
    """
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [
        *names.get_values_for_type(x509.DNSName),
        *names.get_values_for_type(x509.RFC822Name),
        *(_ipString(address) for address in names.get_values_for_type(x509.IPAddress)),
        *(_uriString(uri) for uri in names.get_values_for_type(x509.UniformResourceIdentifier)),
    ]


def _trimSeparator(value: str) -> str:
    return value[: -len(SUB_FIELD_SEPARATOR)] if value.endswith(SUB_FIELD_SEPARATOR) else value


def certificateInfo(certificate: x509.Certificate, info: TLSClientCertificateInfo) -> str:
    """
    The selected fields of one certificate, unescaped.
    """
    values = []
    subject = distinguishedName(certificate.subject, info.subject)
    if subject:
        values.append(f'Subject="{_trimSeparator(subject)}"')
    issuer = distinguishedName(certificate.issuer, info.issuer)
    if issuer:
        values.append(f'Issuer="{_trimSeparator(issuer)}"')
    if info.serialNumber:
        values.append(f'SerialNumber="{certificate.serial_number}"')
    if info.notBefore:
        values.append(f'NB="{_unixSeconds(certificate, "before")}"')
    if info.notAfter:
        values.append(f'NA="{_unixSeconds(certificate, "after")}"')
    if info.sans:
        sans = subjectAlternativeNames(certificate)
        if sans:
            values.append(f'SAN="{SUB_FIELD_SEPARATOR.join(sans)}"')
    return FIELD_SEPARATOR.join(values)


def infoValue(certificates: Iterable[x509.Certificate], info: TLSClientCertificateInfo) -> str:
    """
    The C{X-Forwarded-Tls-Client-Cert-Info} value for C{certificates}:
    escaped as a URL query component.
    """
    return goQueryEscape(CERT_SEPARATOR.join(certificateInfo(certificate, info) for certificate in certificates))


# The handler.


def buildPassTLSClientCert(context: BuildContext, info: ObjectInfo, next: Any, chain: tuple[str, ...]) -> Any:
    """
    Wrap C{next} in the passTLSClientCert middleware described by C{info}.
    """
    config: PassTLSClientCert = info.config.config()
    return PassTLSClientCertHandler(next, info.name, config)


@implementer(IHTTPHandler)
class PassTLSClientCertHandler:
    """
    Sets the client certificate headers, when the client presented
    certificates, and passes the request on to C{next}.
    """

    _log = Logger()

    def __init__(self, next: Any, name: str, config: PassTLSClientCert) -> None:
        self.next = next
        self.name = name
        self.pem = config.pem
        self.info = config.info

    def handle(self, request: Any) -> None:
        if self.pem or self.info is not None:
            certificates = peerCertificates(request)
            if certificates:
                self._setHeaders(request, certificates)
        self.next.handle(request)

    def _setHeaders(self, request: Any, certificates: tuple[bytes, ...]) -> None:
        headers = request.requestHeaders
        if self.pem:
            headers.setRawHeaders(CERT_HEADER, [pemValue(certificates).encode("ascii")])
        if self.info is not None:
            try:
                value = infoValue((x509.load_der_x509_certificate(der) for der in certificates), self.info)
            except ValueError as e:
                self._log.warn(
                    "{middleware}: cannot read the client certificate, {header} left out: {error}",
                    middleware=self.name,
                    header=CERT_INFO_HEADER.decode("ascii"),
                    error=str(e),
                )
                return
            headers.setRawHeaders(CERT_INFO_HEADER, [value.encode("ascii")])
