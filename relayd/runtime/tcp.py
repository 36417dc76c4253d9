"""
The layer 4 part of a generation: per TCP entrypoint a L{TCPTable} (the TCP
routers in evaluation order, plain and TLS apart, and what the entrypoint's
HTTPS routers claim), per UDP entrypoint its L{UDPRoute}, and the TCP and UDP
service and middleware handlers they use. Built by L{buildLayer4} from the
router and service statuses that L{relayd.runtime.build} prepared; routers
that cannot be served are disabled with the reason in their status.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import attrs
from twisted.logger import Logger

from relayd.runtime.build import DISABLED, BuildError, ObjectInfo
from relayd.runtime.matchers import ConnectionInfo
from relayd.runtime.routing import MAX_USER_PRIORITY
from relayd.runtime.rules import Leaf, RuleError, compileTCPRule, hostsOf, leaves, parseTree

_log = Logger()

_TCP_MATCHERS = ["HostSNI", "HostSNIRegexp", "ClientIP", "ALPN"]


@attrs.frozen(eq=False)
class TCPRoute:
    """
    One TCP router on one entrypoint.

    @ivar catchAll: the rule is exactly C{HostSNI(`*`)} (Traefik lets HTTPS
        routers go before such a TLS route).
    @ivar tls: C{""} (plain TCP), C{"passthrough"} (TLS relayed as is) or
        C{"terminate"} (relayd ends TLS with C{options} and relays the
        plaintext).
    """

    name: str
    priority: int
    rule: str
    matcher: Callable[[ConnectionInfo], bool]
    handler: Any
    catchAll: bool = False
    tls: str = ""
    options: str = "default"


def _sortKey(route: TCPRoute) -> tuple[int, str]:
    return (-route.priority, route.name)


@attrs.frozen(eq=False)
class TCPTable:
    """
    The TCP routes of one entrypoint for one generation. False when there
    are none (connections then go straight to HTTP).

    @ivar httpsHosts: the host names of the entrypoint's TLS HTTP routers
        (their SNI goes to HTTPS before TLS TCP routers).
    @ivar httpsCatchAll: some TLS HTTP router has no Host rule.
    @ivar acmePassthrough: a ClientHello offering C{acme-tls/1} is routed
        like any other (no resolver answers TLS-ALPN challenges here, or
        C{allowACMEByPass}).
    """

    plain: tuple[TCPRoute, ...] = ()
    tls: tuple[TCPRoute, ...] = ()
    httpsHosts: frozenset[str] = frozenset()
    httpsCatchAll: bool = False
    acmePassthrough: bool = True

    def __bool__(self) -> bool:
        return bool(self.plain or self.tls)

    @property
    def serverFirst(self) -> bool:
        """
        Whether a connection may be routed before it sends anything: only
        plain TCP routers and no TLS router at all on the entrypoint, as in
        Traefik (so that protocols where the server speaks first work).
        """
        return bool(self.plain) and not self.tls and not self.httpsHosts and not self.httpsCatchAll

    def matchPlain(self, info: ConnectionInfo) -> TCPRoute | None:
        for route in self.plain:
            if route.matcher(info):
                return route
        return None

    def matchTLS(self, info: ConnectionInfo) -> TCPRoute | None:
        for route in self.tls:
            if route.matcher(info):
                return route
        return None


_EMPTY = TCPTable()


@attrs.frozen(eq=False)
class UDPRoute:
    """
    The UDP router of one entrypoint (Traefik serves one per entrypoint).
    """

    name: str
    service: str
    handler: Any


@attrs.frozen(eq=False)
class Layer4:
    tcp: Mapping[str, TCPTable]
    udp: Mapping[str, UDPRoute]
    tcpMiddlewares: Mapping[str, ObjectInfo]


class _Build:
    """
    Service and middleware handlers of one kind (TCP or UDP), built on first
    use, as L{relayd.runtime.build.BuildContext} does for HTTP.
    """

    def __init__(self, context: Any, services: dict[str, ObjectInfo], builders: Mapping[str, Any], what: str) -> None:
        self.static = context.static
        self.reactor = context.reactor
        self.shared = context.shared
        self.services = services
        self.builders = builders
        self.what = what
        self.middlewares: dict[str, ObjectInfo] = {}
        self.middlewareBuilders: Mapping[str, Any] = {}
        self.tcpTransports: Mapping[str, Any] = {}
        self.inFlightUsed: set[Any] = set()

    def service(self, name: str, referrer: ObjectInfo, chain: tuple[str, ...] = ()) -> Any:
        if name in chain:
            raise BuildError(f"service reference loop: {' -> '.join(chain + (name,))}")
        info = self.services.get(name)
        if info is None:
            raise BuildError(f'the {self.what} service "{name}" does not exist')
        if referrer.name and referrer.name not in info.usedBy:
            info.usedBy.append(referrer.name)
        if info.handler is None and info.status != DISABLED:
            builder = self.builders.get(info.kind)
            try:
                if builder is None:
                    raise BuildError(f"the {info.kind} {self.what} service kind is not supported")
                info.handler = builder(self, info, chain + (name,))
            except BuildError as e:
                info.fail(str(e))
        if info.status == DISABLED:
            raise BuildError(f'the {self.what} service "{name}" is disabled')
        return info.handler

    def middlewareChain(self, names: tuple[str, ...], referrer: ObjectInfo, final: Any) -> Any:
        handler = final
        for name in reversed(names):
            info = self.middlewares.get(name)
            if info is None:
                raise BuildError(f'middleware "{name}" does not exist')
            if referrer.name and referrer.name not in info.usedBy:
                info.usedBy.append(referrer.name)
            if info.status == DISABLED:
                raise BuildError(f'middleware "{name}" is disabled')
            builder = self.middlewareBuilders.get(info.kind)
            try:
                if builder is None:
                    raise BuildError(f"the {info.kind} TCP middleware is not supported")
                handler = builder(self, info, handler)
            except BuildError as e:
                info.fail(str(e))
                raise BuildError(f'middleware "{name}" is disabled') from None
        return handler


def _isCatchAll(rule: str) -> bool:
    try:
        tree = parseTree(rule, _TCP_MATCHERS)
    except RuleError:
        return False
    return isinstance(tree, Leaf) and tree.name == "HostSNI" and tree.args == ("*",)


def _hostSNIs(rule: str) -> list[str]:
    try:
        tree = parseTree(rule, _TCP_MATCHERS)
    except RuleError:
        return []
    return [a.lower() for leaf in leaves(tree) if leaf.name == "HostSNI" for a in leaf.args]


def _acmePassthrough(static: Any, entryPoint: str) -> bool:
    """
    Traefik answers TLS-ALPN-01 challenges itself when a resolver uses the
    tlsChallenge, unless the entrypoint sets C{allowACMEByPass}.
    """
    config = static.entryPoints.get(entryPoint)
    if config is not None and config.allowACMEByPass:
        return True
    for resolver in static.certificatesResolvers.values():
        if resolver.acme is not None and resolver.acme.tlsChallenge is not None:
            return False
    return True


def _tcpRoute(build: _Build, info: ObjectInfo, syntaxDefault: str) -> TCPRoute | None:
    router = info.config
    if info.status != DISABLED:
        domains = _hostSNIs(router.rule)
        if domains and router.tls is None and domains[0] != "*":
            info.fail(f"invalid rule {router.rule!r}: it has a HostSNI matcher but the router has no tls section")
        if router.priority > MAX_USER_PRIORITY and not info.name.endswith("@internal"):
            info.fail(f"the router priority {router.priority} exceeds the maximum user-defined priority {MAX_USER_PRIORITY}")
        if router.tls is not None and not router.tls.passthrough:
            for domain in domains:
                if not domain.isascii():
                    info.fail(f"invalid domain name value {domain!r}: non-ASCII characters are not allowed")
    matcher = None
    handler = None
    if info.status != DISABLED:
        try:
            matcher = compileTCPRule(router.rule, router.ruleSyntax or syntaxDefault)
        except RuleError as e:
            info.fail(f"invalid rule {router.rule!r}: {e}")
    if info.status != DISABLED:
        try:
            handler = build.service(router.service, info)
            handler = build.middlewareChain(router.middlewares, info, handler)
        except BuildError as e:
            info.fail(str(e))
    if info.status == DISABLED or matcher is None:
        _log.warn("TCP router {router} is disabled: {errors}", router=info.name, errors="; ".join(info.errors))
        return None
    tls = ""
    options = "default"
    if router.tls is not None:
        tls = "passthrough" if router.tls.passthrough else "terminate"
        options = router.tls.options or "default"
    return TCPRoute(
        name=info.name,
        priority=info.priority,
        rule=router.rule,
        matcher=matcher,
        handler=handler,
        catchAll=_isCatchAll(router.rule),
        tls=tls,
        options=options,
    )


def _httpsClaims(routes: Any) -> tuple[frozenset[str], bool]:
    hosts: set[str] = set()
    catchAll = False
    for route in routes:
        if not route.tls:
            continue
        domains = hostsOf(route.rule)
        if not domains:
            catchAll = True
        hosts.update(d.removesuffix(".") for d in domains)
    return frozenset(hosts), catchAll


def buildLayer4(
    context: Any,
    config: Any,
    tcpRouters: Mapping[str, ObjectInfo],
    tcpServices: dict[str, ObjectInfo],
    udpRouters: Mapping[str, ObjectInfo],
    udpServices: dict[str, ObjectInfo],
    httpRoutes: Mapping[str, Any],
) -> Layer4:
    """
    Compile the TCP and UDP routers of a generation into per-entrypoint
    tables, building the services and middlewares they use (and those
    nobody uses, so that their errors show).

    @param httpRoutes: the enabled HTTP routes by entrypoint.
    """
    from relayd.middlewares.tcp import TCP_MIDDLEWARE_BUILDERS
    from relayd.services.tcp import TCP_SERVICE_BUILDERS
    from relayd.services.udp import UDP_SERVICE_BUILDERS

    static = context.static
    tcp = _Build(context, tcpServices, TCP_SERVICE_BUILDERS, "TCP")
    tcp.tcpTransports = config.tcp.serversTransports
    tcp.middlewareBuilders = TCP_MIDDLEWARE_BUILDERS
    tcp.middlewares = {
        name: ObjectInfo(name=name, kind=m.kind(), config=m) for name, m in config.tcp.middlewares.items()
    }
    syntaxDefault = static.core.defaultRuleSyntax
    byEntryPoint: dict[str, list[TCPRoute]] = {}
    for name in sorted(tcpRouters):
        info = tcpRouters[name]
        route = _tcpRoute(tcp, info, syntaxDefault)
        if route is not None:
            for ep in info.using:
                byEntryPoint.setdefault(ep, []).append(route)
    tables = {}
    for ep, routes in byEntryPoint.items():
        ordered = sorted(routes, key=_sortKey)
        hosts, catchAll = _httpsClaims(httpRoutes.get(ep, ()))
        tables[ep] = TCPTable(
            plain=tuple(r for r in ordered if not r.tls),
            tls=tuple(r for r in ordered if r.tls),
            httpsHosts=hosts,
            httpsCatchAll=catchAll,
            acmePassthrough=_acmePassthrough(static, ep),
        )
    _buildUnused(tcp)
    for info in tcp.middlewares.values():
        if info.status != DISABLED and not info.usedBy:
            try:
                tcp.middlewareChain((info.name,), ObjectInfo(name="", kind="", config=None), _Closing())
            except BuildError:
                pass
    counters = context.shared.get("tcpInFlight")
    if counters:
        for key in [k for k, c in counters.items() if k not in tcp.inFlightUsed and not c.counts]:
            del counters[key]

    udp = _Build(context, udpServices, UDP_SERVICE_BUILDERS, "UDP")
    udpTables: dict[str, UDPRoute] = {}
    # Traefik serves one UDP router per entrypoint: the first by name in
    # reverse order that can be built.
    for name in sorted(udpRouters, reverse=True):
        info = udpRouters[name]
        handler = None
        if info.status != DISABLED:
            try:
                handler = udp.service(info.config.service, info)
            except BuildError as e:
                info.fail(str(e))
        if info.status == DISABLED:
            _log.warn("UDP router {router} is disabled: {errors}", router=info.name, errors="; ".join(info.errors))
            continue
        for ep in info.using:
            taken = udpTables.get(ep)
            if taken is not None:
                info.warn(f'entrypoint "{ep}" is served by the UDP router "{taken.name}": only one UDP router per entrypoint is used')
                continue
            udpTables[ep] = UDPRoute(name=info.name, service=info.config.service, handler=handler)
    _buildUnused(udp)
    return Layer4(tcp=tables, udp=udpTables, tcpMiddlewares=tcp.middlewares)


def _buildUnused(build: _Build) -> None:
    nobody = ObjectInfo(name="", kind="", config=None)
    for info in build.services.values():
        if info.handler is None and info.status != DISABLED:
            try:
                build.service(info.name, nobody)
            except BuildError:
                pass


class _Closing:
    def serveTCP(self, connection: Any) -> None:
        connection.close()
