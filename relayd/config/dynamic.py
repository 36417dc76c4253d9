"""
The dynamic configuration model: what providers produce. C{http}, C{tcp}, C{udp}
and C{tls} sections as frozen value objects; equality is how the watcher skips
unchanged input. No raw dict travels past the loader.
"""

from __future__ import annotations

from typing import Any, Iterator, Literal

import attrs

from relayd.config.middlewares import HTTPMiddleware, TCPMiddleware
from relayd.config.schema import OneOf, decode, field
from relayd.config.static import Domain, ForwardingTimeouts, Spiffe
from relayd.config.types import Duration, FrozenMap

frozen = attrs.frozen(kw_only=True)


def _nonNegative(value: float) -> None:
    if value < 0:
        raise ValueError(f"must not be negative, got {value}")


def _url(value: str) -> None:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port
    except ValueError as e:
        raise ValueError(f"invalid server URL {value!r}: {e}") from None
    if parts.scheme.lower() not in _SERVER_SCHEMES or not parts.hostname:
        raise ValueError(
            f"invalid server URL {value!r}: expected scheme://host[:port], "
            f"with scheme {', '.join(_SERVER_SCHEMES[:-1])} or {_SERVER_SCHEMES[-1]}"
        )


_SERVER_SCHEMES = ("http", "https", "h2c", "ws", "wss")


def _hostPort(value: str) -> None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError(f"invalid address {value!r}: expected host:port")


# HTTP


@frozen
class RouterTLS:
    options: str = ""
    certResolver: str = ""
    domains: tuple[Domain, ...] = ()


@frozen
class RouterObservability:
    accessLogs: bool | None = None
    metrics: bool | None = None
    tracing: bool | None = None
    traceVerbosity: Literal["minimal", "detailed"] | None = None


@frozen
class Router:
    entryPoints: tuple[str, ...] = ()
    middlewares: tuple[str, ...] = ()
    service: str = ""
    rule: str = ""
    ruleSyntax: Literal["v2", "v3"] | None = None
    priority: int = 0
    tls: RouterTLS | None = None
    observability: RouterObservability | None = None


@frozen
class Server:
    url: str = field(check=_url)
    weight: int | None = field(None, check=_nonNegative)
    preservePath: bool = False


@frozen
class CookieConfig:
    name: str = ""
    secure: bool = False
    httpOnly: bool = False
    # As in Traefik: none, lax or strict (any case) write the attribute, any
    # other value writes none.
    sameSite: str = ""
    maxAge: int = 0
    path: str = "/"
    domain: str = ""


@frozen
class Sticky:
    cookie: CookieConfig | None = None


@frozen
class HealthCheck:
    scheme: str = ""
    mode: Literal["http", "grpc"] = "http"
    path: str = ""
    method: str = "GET"
    status: int = 0
    port: int = 0
    interval: Duration = field(Duration(30), check=_nonNegative)
    unhealthyInterval: Duration | None = None
    timeout: Duration = field(Duration(5), check=_nonNegative)
    hostname: str = ""
    followRedirects: bool = True
    headers: FrozenMap[str, str] = field(factory=FrozenMap)

    def _validate(self) -> Iterator[tuple[str, str]]:
        if not self.path:
            yield "path", "required key is missing"
        elif not self.path.startswith("/"):
            yield "path", f"must start with '/', got {self.path!r}"
        if self.status and not 100 <= self.status <= 599:
            yield "status", f"must be an HTTP status code, got {self.status}"
        if not 0 <= self.port <= 65535:
            yield "port", f"must be a port number, got {self.port}"


@frozen
class PassiveHealthCheck:
    failureWindow: Duration = Duration(10)
    maxFailedAttempts: int = 1


@frozen
class ResponseForwarding:
    flushInterval: Duration = Duration(0.1)


@frozen
class LoadBalancer:
    servers: tuple[Server, ...] = ()
    strategy: Literal["wrr", "p2c", "hrw", "leasttime"] = "wrr"
    sticky: Sticky | None = None
    healthCheck: HealthCheck | None = None
    passiveHealthCheck: PassiveHealthCheck | None = None
    passHostHeader: bool = True
    responseForwarding: ResponseForwarding = field(factory=ResponseForwarding)
    serversTransport: str = ""


@frozen
class EmptyHealthCheck:
    pass


@frozen
class WeightedService:
    name: str
    weight: int | None = field(None, check=_nonNegative)


@frozen
class Weighted:
    services: tuple[WeightedService, ...] = ()
    sticky: Sticky | None = None
    healthCheck: EmptyHealthCheck | None = None


@frozen
class Mirror:
    name: str
    percent: int = 0

    def _validate(self) -> Iterator[tuple[str, str]]:
        if not 0 <= self.percent <= 100:
            yield "percent", f"must be between 0 and 100, got {self.percent}"


@frozen
class Mirroring:
    service: str
    mirrorBody: bool = True
    maxBodySize: int = -1
    mirrors: tuple[Mirror, ...] = ()
    healthCheck: EmptyHealthCheck | None = None


@frozen
class Failover:
    service: str
    fallback: str
    healthCheck: EmptyHealthCheck | None = None


@frozen
class Service(OneOf):
    loadBalancer: LoadBalancer | None = None
    weighted: Weighted | None = None
    mirroring: Mirroring | None = None
    failover: Failover | None = None
    highestRandomWeight: Weighted | None = None

    def children(self) -> tuple[str, ...]:
        """
        The names of the services this one refers to.
        """
        if self.weighted is not None:
            return tuple(s.name for s in self.weighted.services)
        if self.highestRandomWeight is not None:
            return tuple(s.name for s in self.highestRandomWeight.services)
        if self.mirroring is not None:
            return (self.mirroring.service,) + tuple(m.name for m in self.mirroring.mirrors)
        if self.failover is not None:
            return (self.failover.service, self.failover.fallback)
        return ()


@frozen
class CertAndKey:
    certFile: str = ""
    keyFile: str = ""




@frozen
class ServersTransport:
    serverName: str = ""
    insecureSkipVerify: bool = False
    rootCAs: tuple[str, ...] = ()
    certificates: tuple[CertAndKey, ...] = ()
    maxIdleConnsPerHost: int = field(200, check=_nonNegative)
    forwardingTimeouts: ForwardingTimeouts = field(factory=ForwardingTimeouts)
    disableHTTP2: bool = False
    peerCertURI: str = ""
    spiffe: Spiffe | None = None


def _badName(kind: str, name: str) -> str:
    if not name:
        return f"{kind} names may not be empty"
    if "@" in name:
        return (
            f"{kind} name {name!r} may not contain '@' "
            "(it separates a name from its provider; define the object without it)"
        )
    return ""


def _badNames(section: Any, kinds: dict[str, str]) -> Iterator[tuple[str, str]]:
    """
    The problems with the object names of a section, each at the object's path
    (C{routers.a@b}).
    """
    for attribute, kind in kinds.items():
        for name in getattr(section, attribute, ()):
            message = _badName(kind, name)
            if message:
                yield f"{attribute}.{name}", message


_NAMED = {
    "routers": "router",
    "services": "service",
    "middlewares": "middleware",
    "serversTransports": "serversTransport",
}


@frozen
class HTTPConfig:
    routers: FrozenMap[str, Router] = field(factory=FrozenMap)
    services: FrozenMap[str, Service] = field(factory=FrozenMap)
    middlewares: FrozenMap[str, HTTPMiddleware] = field(factory=FrozenMap)
    serversTransports: FrozenMap[str, ServersTransport] = field(factory=FrozenMap)

    def _validate(self) -> Iterator[tuple[str, str]]:
        return _badNames(self, _NAMED)


# TCP


@frozen
class TCPRouterTLS:
    passthrough: bool = False
    options: str = ""
    certResolver: str = ""
    domains: tuple[Domain, ...] = ()


@frozen
class TCPRouter:
    entryPoints: tuple[str, ...] = ()
    middlewares: tuple[str, ...] = ()
    service: str = ""
    rule: str = ""
    ruleSyntax: Literal["v2", "v3"] | None = None
    priority: int = 0
    tls: TCPRouterTLS | None = None


@frozen
class TCPServer:
    address: str = field(check=_hostPort)
    tls: bool = False
    weight: int | None = field(None, check=_nonNegative)


@frozen
class ProxyProtocol:
    version: int = 2

    def _validate(self) -> Iterator[tuple[str, str]]:
        if self.version not in (1, 2):
            yield "version", f"must be 1 or 2, got {self.version}"


@frozen
class TCPHealthCheck:
    port: int = 0
    send: str = ""
    expect: str = ""
    interval: Duration = Duration(30)
    unhealthyInterval: Duration | None = None
    timeout: Duration = Duration(5)


@frozen
class TCPLoadBalancer:
    servers: tuple[TCPServer, ...] = ()
    serversTransport: str = ""
    proxyProtocol: ProxyProtocol | None = None
    # Deprecated in Traefik, and unlike the serversTransport key a number of
    # milliseconds.
    terminationDelay: int | None = None
    healthCheck: TCPHealthCheck | None = None


@frozen
class TCPWeighted:
    services: tuple[WeightedService, ...] = ()


@frozen
class TCPService(OneOf):
    loadBalancer: TCPLoadBalancer | None = None
    weighted: TCPWeighted | None = None

    def children(self) -> tuple[str, ...]:
        """
        The names of the services this one refers to.
        """
        return tuple(s.name for s in self.weighted.services) if self.weighted else ()


@frozen
class TCPServersTransportTLS:
    serverName: str = ""
    insecureSkipVerify: bool = False
    rootCAs: tuple[str, ...] = ()
    certificates: tuple[CertAndKey, ...] = ()
    peerCertURI: str = ""
    spiffe: Spiffe | None = None


@frozen
class TCPServersTransport:
    dialTimeout: Duration = Duration(30)
    dialKeepAlive: Duration = Duration(15)
    terminationDelay: Duration = Duration(0.1)
    proxyProtocol: ProxyProtocol | None = None
    tls: TCPServersTransportTLS | None = None


@frozen
class TCPConfig:
    routers: FrozenMap[str, TCPRouter] = field(factory=FrozenMap)
    services: FrozenMap[str, TCPService] = field(factory=FrozenMap)
    middlewares: FrozenMap[str, TCPMiddleware] = field(factory=FrozenMap)
    serversTransports: FrozenMap[str, TCPServersTransport] = field(factory=FrozenMap)

    def _validate(self) -> Iterator[tuple[str, str]]:
        return _badNames(self, _NAMED)


# UDP


@frozen
class UDPRouter:
    entryPoints: tuple[str, ...] = ()
    service: str = ""


@frozen
class UDPServer:
    address: str = field(check=_hostPort)
    weight: int | None = None


@frozen
class UDPLoadBalancer:
    servers: tuple[UDPServer, ...] = ()


@frozen
class UDPService(OneOf):
    loadBalancer: UDPLoadBalancer | None = None
    weighted: TCPWeighted | None = None

    def children(self) -> tuple[str, ...]:
        """
        The names of the services this one refers to.
        """
        return tuple(s.name for s in self.weighted.services) if self.weighted else ()


@frozen
class UDPConfig:
    routers: FrozenMap[str, UDPRouter] = field(factory=FrozenMap)
    services: FrozenMap[str, UDPService] = field(factory=FrozenMap)

    def _validate(self) -> Iterator[tuple[str, str]]:
        return _badNames(self, _NAMED)


# TLS

_TLS_VERSIONS = ("VersionTLS10", "VersionTLS11", "VersionTLS12", "VersionTLS13")
_CLIENT_AUTH_TYPES = (
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
)


@frozen
class Certificate:
    certFile: str = field(sensitive=True)
    keyFile: str = field(sensitive=True)
    stores: tuple[str, ...] = ()


@frozen
class ClientAuth:
    caFiles: tuple[str, ...] = ()
    # "" (unset) means RequireAndVerifyClientCert with caFiles and
    # NoClientCert without, as in Traefik.
    clientAuthType: Literal[
        "NoClientCert",
        "RequestClientCert",
        "RequireAnyClientCert",
        "VerifyClientCertIfGiven",
        "RequireAndVerifyClientCert",
        "",
    ] = ""


@frozen
class TLSOptions:
    minVersion: Literal["VersionTLS10", "VersionTLS11", "VersionTLS12", "VersionTLS13"] = "VersionTLS12"
    maxVersion: Literal["VersionTLS10", "VersionTLS11", "VersionTLS12", "VersionTLS13", ""] = ""
    cipherSuites: tuple[str, ...] = ()
    curvePreferences: tuple[str, ...] = ()
    clientAuth: ClientAuth = field(factory=ClientAuth)
    sniStrict: bool = False
    alpnProtocols: tuple[str, ...] = ("h2", "http/1.1", "acme-tls/1")
    disableSessionTickets: bool = False
    preferServerCipherSuites: bool = False

    def _validate(self) -> Iterator[tuple[str, str]]:
        if self.maxVersion and _TLS_VERSIONS.index(self.maxVersion) < _TLS_VERSIONS.index(
            self.minVersion
        ):
            yield "maxVersion", f"{self.maxVersion} is below minVersion {self.minVersion}"


@frozen
class GeneratedCert:
    resolver: str = ""
    domain: Domain | None = None


@frozen
class TLSStore:
    defaultCertificate: CertAndKey | None = None
    defaultGeneratedCert: GeneratedCert | None = None


@frozen
class TLSConfig:
    certificates: tuple[Certificate, ...] = ()
    options: FrozenMap[str, TLSOptions] = field(factory=FrozenMap)
    stores: FrozenMap[str, TLSStore] = field(factory=FrozenMap)


@frozen
class DynamicConfig:
    http: HTTPConfig = field(factory=HTTPConfig)
    tcp: TCPConfig = field(factory=TCPConfig)
    udp: UDPConfig = field(factory=UDPConfig)
    tls: TLSConfig = field(factory=TLSConfig)

    def isEmpty(self) -> bool:
        return self == DynamicConfig()


def decodeDynamic(raw: Any, path: str = "") -> DynamicConfig:
    """
    Decode one provider's raw dynamic configuration.

    @raise ConfigError: naming the key path of every problem.
    """
    return decodeDynamicWithWarnings(raw, path)[0]


def decodeDynamicWithWarnings(raw: Any, path: str = "") -> tuple[DynamicConfig, list[str]]:
    """
    Like L{decodeDynamic}, also returning the warnings for keys that relayd
    accepts but ignores.
    """
    if raw is None:
        return DynamicConfig(), []
    value, warnings = decode(DynamicConfig, raw, path)
    return value, warnings
