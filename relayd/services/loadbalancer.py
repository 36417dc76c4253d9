"""
Load balancing: smooth weighted round robin over a load balancer's servers, and
over the child services of a weighted service.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, Sequence, TypeVar

from twisted.logger import Logger
from zope.interface import implementer

from relayd.interfaces import IHTTPHandler
from relayd.proxy.http import Forwarder
from relayd.proxy.responses import serviceUnavailable
from relayd.proxy.transport import TransportError, tlsCreator, transportSettings
from relayd.proxy.upstream import Target
from relayd.proxy.websocket import WebSocketSettings
from relayd.runtime.build import BuildContext, BuildError, ObjectInfo
from relayd.services.health import HealthRegistry
from relayd.services.sticky import Sticky

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

    def pick(self, accept: Callable[[T], bool] | None = None) -> T | None:
        """
        The next member, among those C{accept}ed (all by default), or C{None}
        if there is none: members turned away neither gain nor lose turns, as
        nginx does with peers that are down.
        """
        best = -1
        total = 0
        current = self.current
        members = self.members
        for i, weight in enumerate(self.weights):
            if accept is not None and not accept(members[i]):
                continue
            current[i] += weight
            total += weight
            if best < 0 or current[i] > current[best]:
                best = i
        if best < 0:
            return None
        current[best] -= total
        return members[best]


def _forwarder(context: BuildContext) -> Forwarder:
    forwarder = context.shared.get("forwarder")
    if forwarder is None:
        forwarder = context.shared["forwarder"] = Forwarder(context.reactor, websocket=WebSocketSettings.fromStatic(context.static))
    return forwarder


class _Balanced:
    """
    Picking a member: the sticky cookie's member if it names a healthy one,
    else the next in weighted round robin (and then the cookie is written).
    """

    def __init__(self, name: str, members: Sequence[tuple[str, int]], sticky: Sticky[str] | None) -> None:
        self.name = name
        self.balancer = SmoothWeightedRoundRobin(members)
        self.sticky = sticky
        self.members = {m for m, w in members}
        self.isUp: Callable[[str], bool] = lambda member: True

    def healthy(self) -> bool:
        """
        Whether any member with a positive weight is up.
        """
        return any(self.isUp(m) for m in self.balancer.members)

    def choose(self, request: Any) -> str | None:
        sticky = self.sticky
        if sticky is not None:
            member, rewrite = sticky.pinned(request)
            if member is not None and member in self.members and self.isUp(member):
                if rewrite:
                    sticky.writeCookie(request, member)
                return member
        member = self.balancer.pick(self.isUp)
        if member is None:
            return None
        if sticky is not None:
            sticky.writeCookie(request, member)
        return member


@implementer(IHTTPHandler)
class LoadBalancerHandler(_Balanced):
    _log = Logger()

    def __init__(
        self,
        name: str,
        servers: Sequence[tuple[str, int]],
        forwarder: Forwarder,
        passHostHeader: bool,
        sticky: Sticky[str] | None = None,
        targets: dict[str, Target] | None = None,
    ) -> None:
        super().__init__(name, servers, sticky)
        self.forwarder = forwarder
        self.passHostHeader = passHostHeader
        self.targets = targets if targets is not None else {url: Target.fromURL(url) for url, _ in servers}

    def handle(self, request: Any) -> Any:
        server = self.choose(request)
        if server is None:
            self._log.warn(
                "503: no healthy server (router={router}, service={service})",
                router=getattr(request.relayd, "router", ""),
                service=self.name,
            )
            serviceUnavailable(request)
            return None
        context = request.relayd
        context.service = self.name
        context.upstream = server
        self.forwarder.forward(request, self.targets[server], self.passHostHeader)
        return None


def buildLoadBalancer(context: BuildContext, info: ObjectInfo, chain: tuple[str, ...]) -> Any:
    lb = info.config.loadBalancer
    if lb.strategy != "wrr":
        info.warn(f"the {lb.strategy} strategy is not supported yet; using wrr")
    servers = []
    for server in lb.servers:
        weight = 1 if server.weight is None else server.weight
        servers.append((server.url, weight))
        info.serverStatus[server.url] = "UP"
    sticky = _sticky(lb.sticky, info.name, {url: url for url, _ in servers})
    try:
        settings = transportSettings(lb.serversTransport, context.static, context.serversTransports)
        targets = {}
        for url, _ in servers:
            target = Target.fromURL(url, settings, float(lb.responseForwarding.flushInterval))
            if target.scheme == "https":
                target.tlsCreator = tlsCreator(settings, target.host)
            targets[url] = target
    except (TransportError, ValueError) as e:
        raise BuildError(str(e)) from None
    handler = LoadBalancerHandler(info.name, servers, _forwarder(context), lb.passHostHeader, sticky, targets)
    if lb.healthCheck is not None and servers:
        registry = context.shared.get("health")
        if registry is None:
            registry = context.shared["health"] = HealthRegistry(context.reactor)
        urls = tuple(url for url, _ in servers)
        checker = registry.get(info.name, urls, lb.healthCheck)
        context.shared.setdefault("healthUsed", set()).add((info.name, urls, lb.healthCheck))
        info.serverStatus = checker.status
        handler.isUp = checker.isUp
    return handler


def _sticky(config: Any, serviceName: str, members: dict[str, Any]) -> Sticky[Any] | None:
    if config is None or config.cookie is None:
        return None
    return Sticky(config.cookie, serviceName, members)


@implementer(IHTTPHandler)
class WeightedHandler(_Balanced):
    def __init__(self, name: str, children: dict[str, Any], weights: Sequence[tuple[str, int]], sticky: Sticky[Any] | None) -> None:
        super().__init__(name, weights, sticky)
        self.children = children

    def handle(self, request: Any) -> Any:
        child = self.choose(request)
        if child is None:
            serviceUnavailable(request)
            return None
        return self.children[child].handle(request)


def buildWeighted(context: BuildContext, info: ObjectInfo, chain: tuple[str, ...]) -> Any:
    weighted = info.config.weighted
    children = {}
    weights = []
    for child in weighted.services:
        children[child.name] = context.serviceHandler(child.name, info, chain)
        weights.append((child.name, 1 if child.weight is None else child.weight))
    handler = WeightedHandler(info.name, children, weights, _sticky(weighted.sticky, info.name, children))
    if weighted.healthCheck is not None:
        # As in Traefik, a parent only follows its children's health when it
        # has a healthCheck section itself.
        handler.isUp = lambda name: _healthy(children[name])
    return handler


@implementer(IHTTPHandler)
class FailoverHandler:
    """
    Serve from the main service while it has a healthy server, else from the
    fallback (Traefik's failover kind).
    """

    def __init__(self, main: Any, fallback: Any) -> None:
        self.main = main
        self.fallback = fallback

    def healthy(self) -> bool:
        return _healthy(self.main) or _healthy(self.fallback)

    def handle(self, request: Any) -> Any:
        target = self.main if _healthy(self.main) else self.fallback
        return target.handle(request)


def _healthy(handler: Any) -> bool:
    check = getattr(handler, "healthy", None)
    return True if check is None else bool(check())


def buildFailover(context: BuildContext, info: ObjectInfo, chain: tuple[str, ...]) -> Any:
    failover = info.config.failover
    return FailoverHandler(
        context.serviceHandler(failover.service, info, chain),
        context.serviceHandler(failover.fallback, info, chain),
    )
