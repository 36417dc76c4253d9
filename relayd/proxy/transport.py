"""
serversTransports: from the static default (C{default@internal}) or a dynamic
C{http.serversTransports.<name>} to the L{TransportSettings} the pool uses,
and the TLS client options for https:// servers (verified with
service-identity against rootCAs or the system's trust store, C{serverName}
for SNI and verification, C{insecureSkipVerify}, client certificates).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from zope.interface import implementer

from relayd.proxy.upstream import TransportSettings

DEFAULT = "default@internal"


class TransportError(Exception):
    """
    A serversTransport that cannot be used (a missing CA file, a bad
    certificate).
    """


def transportSettings(name: str, static: Any, dynamic: Mapping[str, Any]) -> TransportSettings:
    """
    The settings of the serversTransport C{name} (the static default when
    empty or C{default@internal}).

    @raise TransportError: if it does not exist.
    """
    if not name or name == DEFAULT:
        return _settings(DEFAULT, static.serversTransport)
    config = dynamic.get(name)
    if config is None:
        raise TransportError(f'serversTransport "{name}" does not exist')
    return _settings(
        name,
        config,
        serverName=config.serverName,
        certificates=tuple((c.certFile, c.keyFile) for c in config.certificates),
    )


def _settings(name: str, config: Any, **extra: Any) -> TransportSettings:
    """
    What the static and dynamic serversTransport models have in common.
    """
    forwarding = config.forwardingTimeouts
    return TransportSettings(
        name=name,
        dialTimeout=float(forwarding.dialTimeout),
        responseHeaderTimeout=float(forwarding.responseHeaderTimeout),
        idleConnTimeout=float(forwarding.idleConnTimeout),
        maxIdleConnsPerHost=config.maxIdleConnsPerHost,
        insecureSkipVerify=config.insecureSkipVerify,
        rootCAs=tuple(config.rootCAs),
        **extra,
    )


def _pem(value: str, what: str) -> bytes:
    """
    Traefik's file-or-content: a PEM block given inline, or a path to one.
    """
    if "-----BEGIN" in value:
        return value.encode("ascii")
    try:
        with open(os.path.expanduser(value), "rb") as f:
            return f.read()
    except OSError as e:
        raise TransportError(f"cannot read {what} {value!r}: {e.strerror}") from None


@implementer(IOpenSSLClientConnectionCreator)
class _Unverified:
    """
    insecureSkipVerify: TLS without checking the server's certificate, SNI
    still sent for names.
    """

    def __init__(self, serverName: str, clientCertificate: Any) -> None:
        self.serverName = serverName
        self.options = ssl.CertificateOptions(
            verify=False,
            privateKey=clientCertificate.privateKey.original if clientCertificate else None,
            certificate=clientCertificate.original if clientCertificate else None,
        )

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = self.options.clientConnectionForTLS(tlsProtocol)
        if self.serverName and not _isIP(self.serverName):
            connection.set_tlsext_host_name(self.serverName.encode("idna"))
        return connection


def _isIP(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


_creators: dict[tuple[Any, ...], Any] = {}


def _stamps(settings: TransportSettings) -> tuple[tuple[str, float, int], ...]:
    paths = [v for v in settings.rootCAs if "-----BEGIN" not in v]
    for certFile, keyFile in settings.certificates:
        paths += [p for p in (certFile, keyFile) if "-----BEGIN" not in p]
    stamps = []
    for path in paths:
        try:
            info = os.stat(os.path.expanduser(path))
            stamps.append((path, info.st_mtime, info.st_size))
        except OSError:
            stamps.append((path, 0.0, -1))
    return tuple(stamps)


def tlsCreator(settings: TransportSettings, host: str) -> Any:
    """
    The TLS client options for a server at C{host} (cached: building them
    reads files).

    @raise TransportError: for unreadable or invalid CA files or certificates.
    """
    serverName = settings.serverName or host
    # Files changed on disk are read again (a reload picks up a renewed CA).
    key = (settings, serverName, _stamps(settings))
    creator = _creators.get(key)
    if creator is not None:
        return creator
    clientCertificate = None
    if settings.certificates:
        certFile, keyFile = settings.certificates[0]
        try:
            clientCertificate = ssl.PrivateCertificate.loadPEM(
                _pem(certFile, "certificate") + b"\n" + _pem(keyFile, "key")
            )
        except TransportError:
            raise
        except Exception as e:
            raise TransportError(f"invalid client certificate {certFile!r}: {e}") from None
    if settings.insecureSkipVerify:
        creator = _Unverified(serverName, clientCertificate)
    else:
        trustRoot: Any = None
        if settings.rootCAs:
            certificates = []
            for value in settings.rootCAs:
                data = _pem(value, "root CA")
                try:
                    certificates.append(ssl.Certificate.loadPEM(data))
                except Exception as e:
                    shown = value if "-----BEGIN" not in value else "(inline PEM) " + value[:40]
                    raise TransportError(f"invalid root CA {shown!r}: {e}") from None
            trustRoot = ssl.trustRootFromCertificates(certificates)
        creator = ssl.optionsForClientTLS(serverName, trustRoot=trustRoot, clientCertificate=clientCertificate)
    if len(_creators) > 256:
        _creators.clear()
    _creators[key] = creator
    return creator
