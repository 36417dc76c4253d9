"""
Load balancing: smooth weighted round robin over a load balancer's servers, and
over the child services of a weighted service.
"""

from __future__ import annotations

from typing import Any, Generic, Sequence, TypeVar

from twisted.logger import Logger
from zope.interface import implementer

from relayd.interfaces import IHTTPHandler
from relayd.proxy.http import Forwarder
from relayd.proxy.responses import serviceUnavailable
from relayd.runtime.build import BuildContext, ObjectInfo

T = TypeVar("T")


class SmoothWeightedRoundRobin(Generic[T]):
    """
    nginx's smooth weighted round robin: each pick adds every weight to its
    current value, takes the largest and subtracts the total from it, which
    spreads heavy members between light ones (5:1:1 gives a a b a c a a).
    """

    def __init__(self, members: Sequence[tuple[T, int]]) -> None:
        self.members = [m for m, w in members if w > 0]
        self.weights = [w for _, w in members if w > 0]
        self.current = [0] * len(self.members)
        self.total = sum(self.weights)

    def __len__(self) -> int:
        return len(self.members)

    def pick(self) -> T:
        best = 0
        current = self.current
        for i, weight in enumerate(self.weights):
            current[i] += weight
            if current[i] > current[best]:
                best = i
        current[best] -= self.total
        return self.members[best]


def _forwarder(context: BuildContext) -> Forwarder:
    forwarder = context.shared.get("forwarder")
    if forwarder is None:
        forwarder = context.shared["forwarder"] = Forwarder(context.reactor)
    return forwarder


@implementer(IHTTPHandler)
class LoadBalancerHandler:
    _log = Logger()

    def __init__(self, name: str, servers: Sequence[tuple[str, int]], forwarder: Forwarder, passHostHeader: bool) -> None:
        self.name = name
        self.balancer = SmoothWeightedRoundRobin(servers)
        self.forwarder = forwarder
        self.passHostHeader = passHostHeader

    def handle(self, request: Any) -> Any:
        if not self.balancer:
            self._log.warn("503: no server available (service={service})", service=self.name)
            serviceUnavailable(request)
            return None
        server = self.balancer.pick()
        request.relayd.service = self.name
        request.relayd.upstream = server
        return self.forwarder.forward(request, server, self.passHostHeader)


def buildLoadBalancer(context: BuildContext, info: ObjectInfo, chain: tuple[str, ...]) -> Any:
    lb = info.config.loadBalancer
    if lb.strategy != "wrr":
        info.warn(f"the {lb.strategy} strategy is not supported yet; using wrr")
    servers = []
    for server in lb.servers:
        weight = 1 if server.weight is None else server.weight
        servers.append((server.url, weight))
        info.serverStatus[server.url] = "UP"
    return LoadBalancerHandler(info.name, servers, _forwarder(context), lb.passHostHeader)


@implementer(IHTTPHandler)
class WeightedHandler:
    def __init__(self, name: str, children: Sequence[tuple[Any, int]]) -> None:
        self.name = name
        self.balancer = SmoothWeightedRoundRobin(children)

    def handle(self, request: Any) -> Any:
        if not self.balancer:
            serviceUnavailable(request)
            return None
        return self.balancer.pick().handle(request)


def buildWeighted(context: BuildContext, info: ObjectInfo, chain: tuple[str, ...]) -> Any:
    children = []
    for child in info.config.weighted.services:
        handler = context.serviceHandler(child.name, info, chain)
        children.append((handler, 1 if child.weight is None else child.weight))
    return WeightedHandler(info.name, children)
