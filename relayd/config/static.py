"""
The static configuration model (Traefik's schema): entrypoints, providers, api,
ping, log, accessLog, metrics, certificatesResolvers, serversTransport, core.
Read once at start-up; changing it means a restart.
"""

from __future__ import annotations

from typing import Literal

import attrs

from relayd.config.address import Address, parseAddress
from relayd.config.schema import field
from relayd.config.types import Duration, FrozenMap

frozen = attrs.frozen(kw_only=True)

MIB = 1024 * 1024
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"


def _checkAddress(value: str) -> None:
    parseAddress(value)


def _nonNegative(value: float) -> None:
    if value < 0:
        raise ValueError(f"must not be negative, got {value}")


def _workers(value: int) -> None:
    if not 1 <= value <= 64:
        raise ValueError(f"must be between 1 and 64, got {value}")


def _port(value: int) -> None:
    if not 0 < value <= 65535:
        raise ValueError(f"must be a port number from 1 to 65535, got {value}")


def _statusCode(value: int) -> None:
    if not 100 <= value <= 599:
        raise ValueError(f"must be an HTTP status code, got {value}")


def _cidrs(values: tuple[str, ...]) -> None:
    import ipaddress

    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or CIDR range") from None


@frozen
class Global:
    checkNewVersion: bool = True
    sendAnonymousUsage: bool = False


@frozen
class ForwardingTimeouts:
    dialTimeout: Duration = field(Duration(30), check=_nonNegative)
    responseHeaderTimeout: Duration = field(Duration(0), check=_nonNegative)
    idleConnTimeout: Duration = field(Duration(90), check=_nonNegative)
    readIdleTimeout: Duration = field(Duration(0), check=_nonNegative)
    pingTimeout: Duration = field(Duration(15), check=_nonNegative)


@frozen
class Spiffe:
    ids: tuple[str, ...] = ()
    trustDomain: str = ""


@frozen
class ServersTransport:
    insecureSkipVerify: bool = False
    rootCAs: tuple[str, ...] = ()
    maxIdleConnsPerHost: int = field(200, check=_nonNegative)
    forwardingTimeouts: ForwardingTimeouts = field(factory=ForwardingTimeouts)
    spiffe: Spiffe | None = None


@frozen
class TCPServersTransportTLS:
    insecureSkipVerify: bool = False
    rootCAs: tuple[str, ...] = ()


@frozen
class TCPServersTransport:
    dialTimeout: Duration = field(Duration(30), check=_nonNegative)
    dialKeepAlive: Duration = Duration(15)
    terminationDelay: Duration = Duration(0)
    tls: TCPServersTransportTLS | None = None
    spiffe: Spiffe | None = None


@frozen
class RespondingTimeouts:
    readTimeout: Duration = field(Duration(60), check=_nonNegative)
    writeTimeout: Duration = field(Duration(0), check=_nonNegative)
    idleTimeout: Duration = field(Duration(180), check=_nonNegative)


@frozen
class LifeCycle:
    requestAcceptGraceTimeout: Duration = field(Duration(0), check=_nonNegative)
    graceTimeOut: Duration = field(Duration(10), check=_nonNegative)


@frozen
class EntryPointTransport:
    respondingTimeouts: RespondingTimeouts = field(factory=RespondingTimeouts)
    lifeCycle: LifeCycle = field(factory=LifeCycle)
    keepAliveMaxRequests: int = field(0, check=_nonNegative)
    keepAliveMaxTime: Duration = field(Duration(0), check=_nonNegative)


@frozen
class TrustedIPs:
    trustedIPs: tuple[str, ...] = field((), check=_cidrs)
    insecure: bool = False


@frozen
class ForwardedHeaders:
    trustedIPs: tuple[str, ...] = field((), check=_cidrs)
    insecure: bool = False
    connection: tuple[str, ...] = ()


@frozen
class RedirectEntryPoint:
    to: str
    scheme: str = "https"
    permanent: bool = True
    priority: int = 0


@frozen
class Redirections:
    entryPoint: RedirectEntryPoint | None = None


@frozen
class Domain:
    main: str = ""
    sans: tuple[str, ...] = ()


@frozen
class EntryPointTLS:
    options: str = ""
    certResolver: str = ""
    domains: tuple[Domain, ...] = ()


@frozen
class EntryPointHTTP:
    redirections: Redirections | None = None
    middlewares: tuple[str, ...] = ()
    tls: EntryPointTLS | None = None
    encodeQuerySemicolons: bool = False
    sanitizePath: bool = True
    maxHeaderBytes: int = field(MIB, check=_nonNegative)


@frozen
class EntryPointHTTP2:
    maxConcurrentStreams: int = field(250, check=_nonNegative)


@frozen
class EntryPointHTTP3:
    advertisedPort: int = 0


@frozen
class EntryPointUDP:
    timeout: Duration = field(Duration(3), check=_nonNegative)


@frozen
class EntryPointObservability:
    accessLogs: bool = True
    metrics: bool = True
    tracing: bool = True
    traceVerbosity: Literal["minimal", "detailed"] = "minimal"


@frozen
class EntryPoint:
    address: str = field(check=_checkAddress)
    asDefault: bool = False
    allowACMEByPass: bool = False
    reusePort: bool = False
    transport: EntryPointTransport = field(factory=EntryPointTransport)
    proxyProtocol: TrustedIPs | None = None
    forwardedHeaders: ForwardedHeaders = field(factory=ForwardedHeaders)
    http: EntryPointHTTP = field(factory=EntryPointHTTP)
    http2: EntryPointHTTP2 = field(factory=EntryPointHTTP2)
    http3: EntryPointHTTP3 | None = None
    udp: EntryPointUDP = field(factory=EntryPointUDP)
    observability: EntryPointObservability = field(factory=EntryPointObservability)

    @property
    def parsedAddress(self) -> Address:
        return parseAddress(self.address)

    def _validate(self):
        if self.http3 is not None:
            yield "http3", "HTTP/3 is not supported by relayd"


# Providers


@frozen
class FileProvider:
    filename: str = ""
    directory: str = ""
    watch: bool = True
    debugLogGeneratedTemplate: bool = False
    pollInterval: Duration = field(Duration(2), check=_nonNegative, doc="relayd: how often files are checked for changes")

    def _validate(self):
        if bool(self.filename) == bool(self.directory):
            yield "", "exactly one of filename or directory must be set"


@frozen
class ClientTLS:
    ca: str = ""
    cert: str = ""
    key: str = ""
    insecureSkipVerify: bool = False
    caOptional: bool = False


@frozen
class DockerProvider:
    endpoint: str = "unix:///var/run/docker.sock"
    exposedByDefault: bool = True
    defaultRule: str = "Host(`{{ normalize .Name }}`)"
    network: str = ""
    useBindPortIP: bool = False
    watch: bool = True
    constraints: str = ""
    allowEmptyServices: bool = False
    tls: ClientTLS | None = None
    httpClientTimeout: Duration = Duration(0)
    username: str = ""
    password: str = field("", sensitive=True)
    swarmMode: bool = False
    swarmModeRefreshSeconds: Duration = Duration(15)
    refreshSeconds: Duration = Duration(15)


@frozen
class RancherProvider:
    endpoint: str = "http://rancher-metadata.rancher.internal"
    prefix: str = "latest"
    domain: str = ""
    watch: bool = True
    exposedByDefault: bool = True
    enableServiceHealthFilter: bool = True
    refreshSeconds: Duration = field(Duration(15), check=_nonNegative)
    intervalPoll: bool = False
    defaultRule: str = ""
    constraints: str = ""


@frozen
class HTTPProvider:
    endpoint: str
    pollInterval: Duration = field(Duration(5), check=_nonNegative)
    pollTimeout: Duration = field(Duration(5), check=_nonNegative)
    headers: FrozenMap[str, str] = field(factory=FrozenMap)
    tls: ClientTLS | None = None


@frozen
class RestProvider:
    insecure: bool = False


@frozen
class ConsulEndpoint:
    address: str = "127.0.0.1:8500"
    scheme: str = "http"
    datacenter: str = ""
    token: str = field("", sensitive=True)
    tls: ClientTLS | None = None
    endpointWaitTime: Duration = Duration(0)
    httpAuth: HTTPAuth | None = None


@frozen
class HTTPAuth:
    username: str = ""
    password: str = field("", sensitive=True)


@frozen
class ConsulCatalogProvider:
    endpoint: ConsulEndpoint = field(factory=ConsulEndpoint)
    prefix: str = "traefik"
    refreshInterval: Duration = field(Duration(15), check=_nonNegative)
    requireConsistent: bool = False
    stale: bool = False
    cache: bool = False
    exposedByDefault: bool = True
    defaultRule: str = "Host(`{{ normalize .Name }}`)"
    connectAware: bool = False
    connectByDefault: bool = False
    serviceName: str = "traefik"
    watch: bool = False
    strictChecks: tuple[str, ...] = ("passing", "warning")
    constraints: str = ""
    namespaces: tuple[str, ...] = ()


@frozen
class KVProvider:
    rootKey: str = "traefik"
    endpoints: tuple[str, ...] = ()
    username: str = ""
    password: str = field("", sensitive=True)
    token: str = field("", sensitive=True)
    namespace: str = ""
    tls: ClientTLS | None = None
    db: int = 0
    sentinel: RedisSentinel | None = None


@frozen
class RedisSentinel:
    masterName: str = ""
    username: str = ""
    password: str = field("", sensitive=True)
    latencyStrategy: bool = False
    randomStrategy: bool = False
    replicaStrategy: bool = False
    useDisconnectedReplicas: bool = False


@frozen
class KubernetesProvider:
    endpoint: str = ""
    token: str = field("", sensitive=True)
    certAuthFilePath: str = ""
    namespaces: tuple[str, ...] = ()
    labelSelector: str = ""
    ingressClass: str = ""
    throttleDuration: Duration = Duration(0)
    allowEmptyServices: bool = False
    allowExternalNameServices: bool = False
    allowCrossNamespace: bool = False
    nativeLBByDefault: bool = False
    disableClusterScopeResources: bool = False
    ingressEndpoint: KubernetesIngressEndpoint | None = None


@frozen
class KubernetesIngressEndpoint:
    ip: str = ""
    hostname: str = ""
    publishedService: str = ""


_UNSUPPORTED_PROVIDER = "relayd does not implement this provider; it is ignored"


@frozen
class Providers:
    __ignored__ = {
        name.lower(): _UNSUPPORTED_PROVIDER
        for name in (
            "nomad",
            "ecs",
            "marathon",
            "plugin",
            "knative",
            "kubernetesIngressNGINX",
        )
    }

    providersThrottleDuration: Duration = field(Duration(2), check=_nonNegative)
    file: FileProvider | None = None
    docker: DockerProvider | None = None
    swarm: DockerProvider | None = None
    rancher: RancherProvider | None = None
    http: HTTPProvider | None = None
    rest: RestProvider | None = None
    consulCatalog: ConsulCatalogProvider | None = None
    consul: KVProvider | None = None
    etcd: KVProvider | None = None
    zooKeeper: KVProvider | None = None
    redis: KVProvider | None = None
    kubernetesIngress: KubernetesProvider | None = None
    kubernetesCRD: KubernetesProvider | None = None
    kubernetesGateway: KubernetesProvider | None = None

    def enabled(self) -> list[str]:
        """
        The names (as used after C{@}) of the configured providers.
        """
        names = []
        for a in attrs.fields(type(self)):
            if a.name != "providersThrottleDuration" and getattr(self, a.name) is not None:
                names.append(a.name.lower())
        return names


# Operator surface


@frozen
class API:
    dashboard: bool = True
    insecure: bool = False
    debug: bool = False
    basePath: str = "/"
    disableDashboardAd: bool = False


@frozen
class Ping:
    entryPoint: str = "traefik"
    manualRouting: bool = False
    terminatingStatusCode: int = field(503, check=_statusCode)


@frozen
class Log:
    level: Literal["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "PANIC"] = "ERROR"
    format: Literal["common", "json"] = "common"
    filePath: str = ""
    noColor: bool = False
    maxSize: int = 0
    maxBackups: int = 0
    maxAge: int = 0
    compress: bool = False


@frozen
class AccessLogFilters:
    statusCodes: tuple[str, ...] = ()
    retryAttempts: bool = False
    minDuration: Duration = Duration(0)

    def _validate(self):
        for index, item in enumerate(self.statusCodes):
            for part in item.split(","):
                bounds = part.strip().split("-")
                if len(bounds) > 2 or not all(b.strip().isdigit() for b in bounds):
                    yield f"statusCodes[{index}]", f"{item!r} is not a status code or range such as 300-302"


@frozen
class AccessLogHeaders:
    defaultMode: Literal["keep", "drop", "redact"] = "drop"
    names: FrozenMap[str, Literal["keep", "drop", "redact"]] = field(factory=FrozenMap)


@frozen
class AccessLogFields:
    defaultMode: Literal["keep", "drop"] = "keep"
    names: FrozenMap[str, Literal["keep", "drop"]] = field(factory=FrozenMap)
    headers: AccessLogHeaders = field(factory=AccessLogHeaders)


@frozen
class AccessLog:
    filePath: str = ""
    format: str = "common"
    bufferingSize: int = field(0, check=_nonNegative)
    filters: AccessLogFilters = field(factory=AccessLogFilters)
    fields: AccessLogFields = field(factory=AccessLogFields)
    addInternals: bool = False


@frozen
class Prometheus:
    buckets: tuple[float, ...] = (0.1, 0.3, 1.2, 5.0)
    addEntryPointsLabels: bool = True
    addRoutersLabels: bool = False
    addServicesLabels: bool = True
    entryPoint: str = "traefik"
    manualRouting: bool = False
    headerLabels: FrozenMap[str, str] = field(factory=FrozenMap)


_UNSUPPORTED_METRICS = "relayd only exports Prometheus metrics; this backend is ignored"


@frozen
class Metrics:
    __ignored__ = {
        name.lower(): _UNSUPPORTED_METRICS
        for name in ("datadog", "statsD", "influxDB", "influxDB2", "otlp")
    }

    prometheus: Prometheus | None = None
    addInternals: bool = False


# ACME


@frozen
class EAB:
    kid: str = ""
    hmacEncoded: str = field("", sensitive=True)


@frozen
class HTTPChallenge:
    entryPoint: str
    delay: Duration = Duration(0)


@frozen
class TLSChallenge:
    pass


@frozen
class DNSPropagation:
    delayBeforeChecks: Duration = Duration(0)
    disableChecks: bool = False
    disableANSChecks: bool = False
    requireAllRNS: bool = False


@frozen
class DNSChallenge:
    provider: str
    resolvers: tuple[str, ...] = ()
    delayBeforeCheck: Duration = Duration(0)
    disablePropagationCheck: bool = False
    propagation: DNSPropagation | None = None


_KEY_TYPES = ("EC256", "EC384", "RSA2048", "RSA4096", "RSA8192")


@frozen
class ACME:
    email: str = ""
    storage: str = "acme.json"
    caServer: str = LETS_ENCRYPT
    keyType: Literal["EC256", "EC384", "RSA2048", "RSA4096", "RSA8192"] = "RSA4096"
    certificatesDuration: int = field(2160, check=_nonNegative)
    preferredChain: str = ""
    profile: str = ""
    emailAddresses: tuple[str, ...] = ()
    eab: EAB | None = None
    clientTimeout: Duration = Duration(120)
    clientResponseHeaderTimeout: Duration = Duration(30)
    caCertificates: tuple[str, ...] = ()
    caSystemCertPool: bool = False
    caServerName: str = ""
    httpChallenge: HTTPChallenge | None = None
    tlsChallenge: TLSChallenge | None = None
    dnsChallenge: DNSChallenge | None = None

    def _validate(self):
        if not (self.httpChallenge or self.tlsChallenge or self.dnsChallenge):
            yield "", "one of httpChallenge, tlsChallenge or dnsChallenge is required"


@frozen
class CertificateResolver:
    __ignored__ = {"tailscale": "relayd does not implement the tailscale resolver; it is ignored"}

    acme: ACME | None = None


@frozen
class Core:
    defaultRuleSyntax: Literal["v2", "v3"] = "v3"


_IGNORED_SECTIONS = {
    "tracing": "relayd does not implement tracing; this section is ignored",
    "hostresolver": "relayd does not implement CNAME flattening; this section is ignored",
    "experimental": "relayd has no experimental features; this section is ignored",
    "spiffe": "relayd does not implement SPIFFE; this section is ignored",
    "ocsp": "relayd does not implement OCSP stapling; this section is ignored",
    "pilot": "Traefik Pilot is gone; this section is ignored",
    "hub": "Traefik Hub is not supported; this section is ignored",
}


@frozen
class WebSocket:
    """
    relayd's own: how WebSocket connections are relayed (both legs).
    """

    maxMessageSize: int = field(0, check=_nonNegative, doc="largest message in bytes (after decompression); 0: no limit; larger ones close with 1009")
    maxFrameSize: int = field(0, check=_nonNegative, doc="largest frame payload in bytes; 0: no limit; larger ones close with 1009")
    idleTimeout: Duration = field(Duration(0), check=_nonNegative, doc="close both legs with 1001 after this long without a message; 0: never")
    pingInterval: Duration = field(Duration(0), check=_nonNegative, doc="send a keep-alive ping on each leg this often; 0: never")
    pingTimeout: Duration = field(Duration(0), check=_nonNegative, doc="drop a leg whose pong is this late; 0: the ping interval")
    compression: bool = field(True, doc="negotiate permessage-deflate on each leg (with the backend only when the client asked for it)")
    closeTimeout: Duration = field(Duration(5), check=_nonNegative, doc="how long a closing handshake may take before the connection is dropped")


@frozen
class StaticConfig:
    __ignored__ = _IGNORED_SECTIONS

    global_: Global = field(factory=Global, key="global")
    serversTransport: ServersTransport = field(factory=ServersTransport)
    tcpServersTransport: TCPServersTransport = field(factory=TCPServersTransport)
    entryPoints: FrozenMap[str, EntryPoint] = field(factory=FrozenMap)
    providers: Providers = field(factory=Providers)
    api: API | None = None
    ping: Ping | None = None
    log: Log = field(factory=Log)
    accessLog: AccessLog | None = None
    metrics: Metrics | None = None
    certificatesResolvers: FrozenMap[str, CertificateResolver] = field(factory=FrozenMap)
    core: Core = field(factory=Core)
    # relayd's own: worker processes sharing every entrypoint (SO_REUSEPORT).
    workers: int = field(1, check=_workers)
    # relayd's own: WebSocket relaying limits and keep-alive.
    websocket: WebSocket = field(factory=WebSocket)

    def _validate(self):
        defined = ", ".join(self.entryPoints) or "none"
        for name, ep in self.entryPoints.items():
            if not name or "@" in name or "." in name:
                yield f"entryPoints.{name}", "entrypoint names may not be empty or contain '@' or '.'"
            redirect = ep.http.redirections.entryPoint if ep.http.redirections else None
            if redirect is not None and not redirect.to.startswith(":"):
                if redirect.to not in self.entryPoints:
                    yield (
                        f"entryPoints.{name}.http.redirections.entryPoint.to",
                        f'unknown entrypoint "{redirect.to}" (defined: {defined}; '
                        'or use ":port")',
                    )
        for name, resolver in self.certificatesResolvers.items():
            acme = resolver.acme
            if acme and acme.httpChallenge and acme.httpChallenge.entryPoint not in self.entryPoints:
                yield (
                    f"certificatesResolvers.{name}.acme.httpChallenge.entryPoint",
                    f'unknown entrypoint "{acme.httpChallenge.entryPoint}" (defined: {defined})',
                )
