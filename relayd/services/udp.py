"""
UDP services: a load balancer over servers and weighted services over other
UDP services. Each new session (a client address not seen within the
entrypoint's timeout) asks its service for a server; every datagram of the
session then goes to that server.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import attrs

from relayd.runtime.build import ObjectInfo
from relayd.services.loadbalancer import SmoothWeightedRoundRobin
from relayd.services.tcp import splitAddress


@attrs.frozen
class UDPTarget:
    address: str
    host: str
    port: int


class UDPLoadBalancerHandler:
    def __init__(self, name: str, servers: Sequence[tuple[UDPTarget, int]]) -> None:
        self.name = name
        self.balancer = SmoothWeightedRoundRobin(servers)

    def pick(self) -> tuple[str, UDPTarget] | None:
        """
        The next server and the name of the service that chose it, or None.
        """
        target = self.balancer.pick()
        return None if target is None else (self.name, target)


class UDPWeightedHandler:
    def __init__(self, name: str, children: dict[str, Any], weights: Sequence[tuple[str, int]]) -> None:
        self.name = name
        self.children = children
        self.balancer = SmoothWeightedRoundRobin(weights)

    def pick(self) -> tuple[str, UDPTarget] | None:
        child = self.balancer.pick()
        return None if child is None else self.children[child].pick()


def buildUDPLoadBalancer(build: Any, info: ObjectInfo, chain: tuple[str, ...]) -> UDPLoadBalancerHandler:
    servers = []
    for server in info.config.loadBalancer.servers:
        host, port = splitAddress(server.address)
        servers.append((UDPTarget(server.address, host, port), 1 if server.weight is None else server.weight))
        info.serverStatus[server.address] = "UP"
    return UDPLoadBalancerHandler(info.name, servers)


def buildUDPWeighted(build: Any, info: ObjectInfo, chain: tuple[str, ...]) -> UDPWeightedHandler:
    children = {}
    weights = []
    for child in info.config.weighted.services:
        children[child.name] = build.service(child.name, info, chain)
        weights.append((child.name, 1 if child.weight is None else child.weight))
    return UDPWeightedHandler(info.name, children, weights)


UDP_SERVICE_BUILDERS: dict[str, Callable[[Any, ObjectInfo, tuple[str, ...]], Any]] = {
    "loadBalancer": buildUDPLoadBalancer,
    "weighted": buildUDPWeighted,
}
