"""
Certificates and keys as TLS serving needs them: a configuration value that
is a file path or inline PEM (as in Traefik, a value naming an existing file is
read, anything else is the PEM itself), a certificate chain parsed with its
private key and checked against it, the names a certificate serves, CA bundles
for client certificates, and the self-signed default certificate generated
once per process.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import secrets
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The common name Traefik gives its generated default certificate; clients and
# monitoring recognise it, so relayd keeps it.
DEFAULT_CERT_CN = "TRAEFIK DEFAULT CERT"

_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL
)


class MaterialError(Exception):
    """
    A certificate, key or CA that cannot be read or used; the message says why
    without quoting key material.
    """


def isInline(value: str) -> bool:
    """
    Whether a configuration value is PEM content rather than a path.
    """
    return "-----BEGIN" in value


def describe(value: str) -> str:
    """
    How errors name a value: its path, or a neutral label for inline PEM (never
    the content).
    """
    return "inline PEM" if isInline(value) else repr(value)


def readValue(value: str, what: str) -> bytes:
    """
    The bytes of a path-or-content value. Like Traefik, a value that names an
    existing file is read; otherwise the value itself is the content.

    @raise MaterialError: if the value is empty, or names a file that cannot
        be read, or is neither a file nor PEM.
    """
    if not value:
        raise MaterialError(f"the {what} is empty")
    if not isInline(value):
        path = os.path.expanduser(value)
        if os.path.isfile(path):
            try:
                with open(path, "rb") as f:
                    return f.read()
            except OSError as e:
                raise MaterialError(f"cannot read the {what} {value!r}: {e.strerror}") from None
        raise MaterialError(f"the {what} {value!r} is neither a readable file nor inline PEM")
    return value.encode("utf-8", "surrogateescape")


def _blocks(data: bytes) -> list[tuple[str, bytes]]:
    return [(m.group(1).decode("ascii"), m.group(0)) for m in _PEM_BLOCK.finditer(data)]


@attrs.frozen(eq=False)
class KeyPair:
    """
    A certificate chain (leaf first) with the private key of its leaf.

    @ivar digest: a hash of the certificate and key content; two key pairs
        with the same digest are interchangeable (contexts are cached on it).
    @ivar names: the lower-cased common name and DNS names, and the IP
        addresses, that select this certificate (Traefik's list).
    @ivar label: how logs and errors name it (its subject common name).
    """

    digest: bytes
    chain: tuple[x509.Certificate, ...]
    key: Any
    names: tuple[str, ...]
    label: str

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]


def _certificateNames(leaf: x509.Certificate) -> tuple[list[str], str]:
    names: list[str] = []
    commonName = ""
    for attribute in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attribute.value
        commonName = value if isinstance(value, str) else value.decode("utf-8", "replace")
        break
    if commonName:
        names.append(commonName.strip().lower())
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = None
    if sans is not None:
        for dnsName in sans.get_values_for_type(x509.DNSName):
            name = dnsName.strip().lower()
            if name not in names:
                names.append(name)
        for ip in sans.get_values_for_type(x509.IPAddress):
            text = str(ip)
            if text not in names:
                names.append(text)
    return names, commonName


def parseKeyPair(certData: bytes, keyData: bytes) -> KeyPair:
    """
    Parse a PEM certificate chain and the PEM private key of its first
    certificate (as Go's X509KeyPair: other blocks are skipped, the first
    private key block is used).

    @raise MaterialError: when there is no certificate or key, either does
        not parse, or the key does not belong to the certificate.
    """
    certificates = [block for kind, block in _blocks(certData) if kind == "CERTIFICATE"]
    if not certificates:
        raise MaterialError("no certificate PEM block found in the certificate")
    try:
        chain = tuple(x509.load_pem_x509_certificate(block) for block in certificates)
    except ValueError as e:
        raise MaterialError(f"the certificate does not parse: {e}") from None
    keys = [block for kind, block in _blocks(keyData) if kind.endswith("PRIVATE KEY")]
    if not keys:
        raise MaterialError("no private key PEM block found in the key")
    try:
        key = serialization.load_pem_private_key(keys[0], password=None)
    except (ValueError, TypeError) as e:
        raise MaterialError(f"the private key does not parse: {e}") from None
    except Exception as e:  # unsupported algorithms raise their own errors
        raise MaterialError(f"the private key cannot be used: {e}") from None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != chain[0].public_key().public_bytes(der, spki):
        raise MaterialError("the private key does not match the certificate")
    names, commonName = _certificateNames(chain[0])
    digest = hashlib.sha256(b"\0".join(certificates) + b"\0\0" + keys[0]).digest()
    return KeyPair(
        digest=digest,
        chain=chain,
        key=key,
        names=tuple(names),
        label=commonName or (names[0] if names else "certificate without names"),
    )


def loadKeyPair(certValue: str, keyValue: str, cache: dict[bytes, KeyPair] | None = None) -> KeyPair:
    """
    Read and parse a certificate and key given as paths or inline PEM.

    @param cache: key pairs already parsed, by content hash; a pair whose
        content is unchanged is taken from it instead of being parsed again.
    @raise MaterialError: see L{readValue} and L{parseKeyPair}.
    """
    certData = readValue(certValue, "certificate")
    keyData = readValue(keyValue, "key")
    contentKey = hashlib.sha256(certData + b"\0\0" + keyData).digest()
    if cache is not None and contentKey in cache:
        return cache[contentKey]
    pair = parseKeyPair(certData, keyData)
    if cache is not None:
        cache[contentKey] = pair
    return pair


@attrs.frozen(eq=False)
class CABundle:
    """
    The CA certificates that client certificates are verified against.
    """

    digest: bytes
    certificates: tuple[x509.Certificate, ...]


def loadCABundle(values: tuple[str, ...]) -> CABundle:
    """
    Read CA certificates from paths or inline PEM values, in order.

    @raise MaterialError: for an unreadable value or one without a valid
        certificate (as Traefik: every value must add at least one).
    """
    certificates: list[x509.Certificate] = []
    hasher = hashlib.sha256()
    for value in values:
        data = readValue(value, "CA file")
        blocks = [block for kind, block in _blocks(data) if kind == "CERTIFICATE"]
        if not blocks:
            raise MaterialError(f"no certificate found in the CA file {describe(value)}")
        for block in blocks:
            try:
                certificates.append(x509.load_pem_x509_certificate(block))
            except ValueError as e:
                raise MaterialError(f"invalid certificate in the CA file {describe(value)}: {e}") from None
            hasher.update(block)
    return CABundle(digest=hasher.digest(), certificates=tuple(certificates))


_generated: KeyPair | None = None


def generatedDefault() -> KeyPair:
    """
    The self-signed certificate served when nothing else fits, generated on
    first use and kept for the life of the process (as Traefik's: common name
    C{TRAEFIK DEFAULT CERT}, a random C{*.traefik.default} DNS name, RSA 2048,
    valid one year).
    """
    global _generated
    if _generated is None:
        _generated = _generate()
    return _generated


def generatedSoFar() -> KeyPair | None:
    """
    The generated default certificate if it exists yet (without making it).
    """
    return _generated


def _generate() -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = secrets.token_hex(32)
    dnsName = f"{token[:32]}.{token[32:]}.traefik.default"
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DEFAULT_CERT_CN)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dnsName)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    der = certificate.public_bytes(serialization.Encoding.DER)
    return KeyPair(
        digest=hashlib.sha256(b"generated\0" + der).digest(),
        chain=(certificate,),
        key=key,
        names=(DEFAULT_CERT_CN.lower(), dnsName),
        label=DEFAULT_CERT_CN,
    )
