"""
TCP services: a load balancer over servers (C{host:port}, optionally TLS,
with the serversTransport that says how to dial them) and weighted services
over other TCP services, both picked per connection with smooth weighted
round robin. A handler gets the connection (L{relayd.proxy.tcp.Relay}) and
either connects it to a server or closes it.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import attrs
from twisted.logger import Logger

from relayd.proxy.transport import DEFAULT, TransportError, tlsCreator
from relayd.proxy.upstream import TransportSettings
from relayd.runtime.build import BuildError, ObjectInfo
from relayd.services.loadbalancer import SmoothWeightedRoundRobin

_log = Logger()


@attrs.frozen
class TCPTarget:
    """
    One server of a TCP load balancer, with how to reach it.

    @ivar tlsCreator: the TLS client options when the server speaks TLS.
    @ivar dialTimeout: seconds to connect; 0 waits as long as the system does.
    @ivar keepAlive: TCP keep-alive probe interval; negative: none.
    @ivar terminationDelay: how long one direction may stay open after the
        other was closed (half-close); negative: no limit.
    @ivar proxyProtocol: the PROXY protocol version to send, 0 for none.
    """

    address: str
    host: str
    port: int
    tlsCreator: Any = None
    dialTimeout: float = 30.0
    keepAlive: float = 15.0
    terminationDelay: float = 0.0
    proxyProtocol: int = 0


def splitAddress(address: str) -> tuple[str, int]:
    """
    C{("host", port)} of C{host:port} or C{[v6]:port}.
    """
    host, _, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


class TCPLoadBalancerHandler:
    """
    Connects each connection to the next server in weighted round robin.
    """

    def __init__(self, name: str, servers: Sequence[tuple[TCPTarget, int]]) -> None:
        self.name = name
        self.balancer = SmoothWeightedRoundRobin(servers)

    def serveTCP(self, connection: Any) -> None:
        target = self.balancer.pick()
        if target is None:
            _log.warn(
                "TCP connection closed: no server (router={router}, service={service})",
                router=connection.router,
                service=self.name,
            )
            connection.close()
            return
        connection.service = self.name
        connection.connectTo(target)


class TCPWeightedHandler:
    """
    Hands each connection to the next child service in weighted round robin.
    """

    def __init__(self, name: str, children: dict[str, Any], weights: Sequence[tuple[str, int]]) -> None:
        self.name = name
        self.children = children
        self.balancer = SmoothWeightedRoundRobin(weights)

    def serveTCP(self, connection: Any) -> None:
        child = self.balancer.pick()
        if child is None:
            connection.close()
            return
        self.children[child].serveTCP(connection)


def _dialSettings(lb: Any, static: Any, transports: Any) -> tuple[Any, float, Any, str]:
    """
    The serversTransport of a load balancer as Traefik resolves it: the
    static C{tcpServersTransport} (C{default@internal}) or a named dynamic
    one. A named one brings its own terminationDelay and proxyProtocol;
    otherwise the load balancer's (deprecated) fields apply.

    @return: (transport, terminationDelay, proxyProtocol, name)
    """
    name = lb.serversTransport
    if not name or name == DEFAULT:
        transport = static.tcpServersTransport
        if lb.terminationDelay is not None:
            # Traefik's deprecated field counts milliseconds.
            delay = lb.terminationDelay / 1000.0
        else:
            delay = float(transport.terminationDelay)
        return transport, delay, lb.proxyProtocol, DEFAULT
    transport = transports.get(name)
    if transport is None:
        raise BuildError(f'TCP serversTransport "{name}" does not exist')
    return transport, float(transport.terminationDelay), transport.proxyProtocol, name


def _tlsSettings(name: str, transport: Any, info: ObjectInfo) -> TransportSettings:
    tls = transport.tls
    if tls is None:
        return TransportSettings(name=name)
    if getattr(tls, "spiffe", None) is not None or bool(getattr(tls, "peerCertURI", "")):
        info.warn(f'TCP serversTransport "{name}": spiffe and peerCertURI are not supported')
    certificates = tuple((c.certFile, c.keyFile) for c in getattr(tls, "certificates", ()))
    return TransportSettings(
        name=name,
        insecureSkipVerify=tls.insecureSkipVerify,
        rootCAs=tuple(tls.rootCAs),
        serverName=getattr(tls, "serverName", ""),
        certificates=certificates,
    )


def buildTCPLoadBalancer(build: Any, info: ObjectInfo, chain: tuple[str, ...]) -> TCPLoadBalancerHandler:
    lb = info.config.loadBalancer
    if lb.healthCheck is not None:
        info.warn("TCP health checks are not supported: every server counts as up")
    transport, delay, proxyProtocol, transportName = _dialSettings(lb, build.static, build.tcpTransports)
    if lb.terminationDelay is not None or lb.proxyProtocol is not None:
        _log.warn(
            "TCP service {service} sets terminationDelay or proxyProtocol on its load balancer "
            "(deprecated: set them on a TCP serversTransport)",
            service=info.name,
        )
    settings = _tlsSettings(transportName, transport, info)
    servers = []
    for server in lb.servers:
        host, port = splitAddress(server.address)
        creator = None
        if server.tls:
            try:
                creator = tlsCreator(settings, host)
            except TransportError as e:
                raise BuildError(str(e)) from None
        target = TCPTarget(
            address=server.address,
            host=host,
            port=port,
            tlsCreator=creator,
            dialTimeout=float(transport.dialTimeout),
            keepAlive=float(transport.dialKeepAlive) or 15.0,
            terminationDelay=delay,
            proxyProtocol=proxyProtocol.version if proxyProtocol is not None else 0,
        )
        servers.append((target, 1 if server.weight is None else server.weight))
        info.serverStatus[server.address] = "UP"
    return TCPLoadBalancerHandler(info.name, servers)


def buildTCPWeighted(build: Any, info: ObjectInfo, chain: tuple[str, ...]) -> TCPWeightedHandler:
    children = {}
    weights = []
    for child in info.config.weighted.services:
        children[child.name] = build.service(child.name, info, chain)
        weights.append((child.name, 1 if child.weight is None else child.weight))
    return TCPWeightedHandler(info.name, children, weights)


TCP_SERVICE_BUILDERS: dict[str, Callable[[Any, ObjectInfo, tuple[str, ...]], Any]] = {
    "loadBalancer": buildTCPLoadBalancer,
    "weighted": buildTCPWeighted,
}
