"""
The compiler: static configuration plus the merged dynamic configuration in, one
immutable L{Runtime} out. Pure apart from the handlers it builds (which get the
reactor through the build context); every router, service and middleware gets a
status (enabled, warning or disabled with errors) and a bad object never takes
the others down.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import attrs
from twisted.logger import Logger

from relayd.config.dynamic import DynamicConfig, Router
from relayd.config.errors import ConfigError
from relayd.config.merge import splitName
from relayd.config.static import StaticConfig
from relayd.runtime.routing import MAX_USER_PRIORITY, Route, RouteTable
from relayd.runtime.rules import (
    RuleError,
    compileHTTPRule,
    compileTCPRule,
    defaultPriority,
    defaultTCPPriority,
)
from relayd.tls.hosts import DEFAULT_OPTIONS, RouterTLSUse
from relayd.tls.store import TLSError, TLSRuntime

_log = Logger()

ENABLED = "enabled"
WARNING = "warning"
DISABLED = "disabled"


class BuildError(Exception):
    """
    An object that cannot be built; the message goes into its status.
    """


@attrs.define
class ObjectInfo:
    """
    The runtime view of one router, service or middleware: its configuration,
    status and errors, and who uses it.
    """

    name: str
    kind: str
    config: Any
    status: str = ENABLED
    errors: list[str] = attrs.field(factory=list)
    usedBy: list[str] = attrs.field(factory=list)
    using: list[str] = attrs.field(factory=list)
    priority: int = 0
    serverStatus: dict[str, str] = attrs.field(factory=dict)
    handler: Any = None

    @property
    def provider(self) -> str:
        return splitName(self.name)[1]

    def fail(self, message: str) -> None:
        self.errors.append(message)
        self.status = DISABLED

    def warn(self, message: str) -> None:
        self.errors.append(message)
        if self.status == ENABLED:
            self.status = WARNING


@attrs.frozen(eq=False)
class Runtime:
    """
    One generation of compiled configuration. Never changed once built.
    """

    generation: int
    static: StaticConfig
    config: DynamicConfig
    routers: Mapping[str, ObjectInfo]
    services: Mapping[str, ObjectInfo]
    middlewares: Mapping[str, ObjectInfo]
    tcpRouters: Mapping[str, ObjectInfo]
    tcpServices: Mapping[str, ObjectInfo]
    tcpMiddlewares: Mapping[str, ObjectInfo]
    udpRouters: Mapping[str, ObjectInfo]
    udpServices: Mapping[str, ObjectInfo]
    routes: Mapping[str, RouteTable]
    providerErrors: Mapping[str, tuple[ConfigError, ...]] = attrs.field(factory=dict)
    tls: TLSRuntime = attrs.field(factory=TLSRuntime.empty)
    # relayd.runtime.tcp: TCPTable and UDPRoute by entrypoint.
    tcpRoutes: Mapping[str, Any] = attrs.field(factory=dict)
    udpRoutes: Mapping[str, Any] = attrs.field(factory=dict)

    def table(self, entryPoint: str) -> RouteTable:
        return self.routes.get(entryPoint, _EMPTY_TABLE)

    def tcpTable(self, entryPoint: str) -> Any:
        """
        The TCP routes of an entrypoint; None or a false table when it has none.
        """
        return self.tcpRoutes.get(entryPoint)

    def udpRoute(self, entryPoint: str) -> Any:
        """
        The UDP router serving an entrypoint, or None.
        """
        return self.udpRoutes.get(entryPoint)

    @property
    def tlsErrors(self) -> tuple[TLSError, ...]:
        """
        The problems of the tls section (certificates, options, stores), each
        with its key path; the objects without one keep serving.
        """
        return self.tls.errors


_EMPTY_TABLE = RouteTable()


@attrs.define
class BuildContext:
    """
    What handler builders may use: the reactor, the static configuration, the
    previous generation (to carry state such as health over), and lookups of the
    handlers built so far in this generation.
    """

    reactor: Any
    static: StaticConfig
    previous: Runtime | None
    internal: Mapping[str, Callable[[BuildContext], Any]]
    services: dict[str, ObjectInfo] = attrs.field(factory=dict)
    middlewares: dict[str, ObjectInfo] = attrs.field(factory=dict)
    shared: dict[str, Any] = attrs.field(factory=dict)
    serversTransports: Mapping[str, Any] = attrs.field(factory=dict)

    def serviceHandler(self, name: str, referrer: ObjectInfo, chain: tuple[str, ...] = ()) -> Any:
        """
        The handler of a service (built on first use), or L{BuildError}.
        """
        from relayd.services import buildService

        if name in chain:
            raise BuildError(f"service reference loop: {' -> '.join(chain + (name,))}")
        if name.endswith("@internal"):
            factory = self.internal.get(name)
            if factory is None:
                raise BuildError(f'the service "{name}" does not exist')
            return factory(self)
        info = self.services.get(name)
        if info is None:
            raise BuildError(f'the service "{name}" does not exist')
        if referrer.name not in info.usedBy:
            info.usedBy.append(referrer.name)
        if info.handler is None and info.status != DISABLED:
            try:
                info.handler = buildService(self, info, chain + (name,))
            except BuildError as e:
                info.fail(str(e))
        if info.status == DISABLED:
            raise BuildError(f'the service "{name}" is disabled')
        return info.handler

    def middlewareChain(self, names: tuple[str, ...], referrer: ObjectInfo, final: Any, chain: tuple[str, ...] = ()) -> Any:
        """
        C{final} wrapped by the named middlewares, the first outermost.
        """
        from relayd.middlewares import buildMiddleware

        handler = final
        for name in reversed(names):
            if name in chain:
                raise BuildError(f"middleware reference loop: {' -> '.join(chain + (name,))}")
            info = self.middlewares.get(name)
            if info is None:
                raise BuildError(f'middleware "{name}" does not exist')
            if referrer.name not in info.usedBy:
                info.usedBy.append(referrer.name)
            if info.status == DISABLED:
                raise BuildError(f'middleware "{name}" is disabled')
            try:
                handler = buildMiddleware(self, info, handler, chain + (name,))
            except BuildError as e:
                info.fail(str(e))
                raise BuildError(f'middleware "{name}" is disabled') from None
        return handler


def _attachTo(
    requested: tuple[str, ...],
    available: list[str],
    defaults: list[str],
    info: ObjectInfo,
) -> list[str]:
    if not requested:
        return list(defaults)
    using = []
    for name in requested:
        if name in available:
            using.append(name)
        else:
            info.warn(f'entryPoint "{name}" doesn\'t exist')
    if not using:
        info.fail("no valid entryPoint for this router")
    return using


def build(
    static: StaticConfig,
    config: DynamicConfig,
    generation: int,
    reactor: Any = None,
    previous: Runtime | None = None,
    internal: Mapping[str, Callable[[BuildContext], Any]] | None = None,
    providerErrors: Mapping[str, tuple[ConfigError, ...]] | None = None,
    shared: dict[str, Any] | None = None,
) -> Runtime:
    """
    Compile a generation. Objects that cannot be built are disabled with errors
    in their status; everything else is served.
    """
    from relayd.config.address import parseAddress

    context = BuildContext(
        reactor=reactor,
        static=static,
        previous=previous,
        internal=internal or {},
        shared=shared if shared is not None else {},
        serversTransports=config.http.serversTransports,
    )
    http = config.http
    for name, service in http.services.items():
        context.services[name] = ObjectInfo(name=name, kind=service.kind(), config=service)
    for name, middleware in http.middlewares.items():
        context.middlewares[name] = ObjectInfo(name=name, kind=middleware.kind(), config=middleware)

    tcpEntryPoints = [n for n, ep in static.entryPoints.items() if parseAddress(ep.address).protocol == "tcp"]
    udpEntryPoints = [n for n, ep in static.entryPoints.items() if parseAddress(ep.address).protocol == "udp"]
    asDefault = [n for n in tcpEntryPoints if static.entryPoints[n].asDefault] or tcpEntryPoints
    tls = TLSRuntime.build(
        config.tls,
        _tlsUses(static, config, tcpEntryPoints, asDefault),
        previous.tls if previous is not None else None,
    )

    routers: dict[str, ObjectInfo] = {}
    routesByEntryPoint: dict[str, list[Route]] = {n: [] for n in static.entryPoints}
    syntaxDefault = static.core.defaultRuleSyntax
    for name in sorted(http.routers):
        router: Router = http.routers[name]
        info = ObjectInfo(name=name, kind="http", config=router)
        routers[name] = info
        route = _buildRouter(context, info, router, syntaxDefault, tcpEntryPoints, asDefault, tls)
        if route is not None:
            for ep in info.using:
                if not route.tls and static.entryPoints[ep].http.tls is not None:
                    # The entrypoint's http.tls makes its routers TLS-only, as
                    # a router's own tls section would.
                    routesByEntryPoint[ep].append(attrs.evolve(route, tls=True))
                else:
                    routesByEntryPoint[ep].append(route)

    tcpRouters, tcpServices = _buildTCP(config, static, tcpEntryPoints, asDefault, syntaxDefault, tls)
    udpRouters, udpServices = _buildUDP(config, udpEntryPoints)
    from relayd.runtime.tcp import buildLayer4

    layer4 = buildLayer4(context, config, tcpRouters, tcpServices, udpRouters, udpServices, routesByEntryPoint)

    # Services and middlewares nobody uses are still built, so their errors show.
    for info in context.services.values():
        if info.handler is None and info.status != DISABLED:
            try:
                context.serviceHandler(info.name, ObjectInfo(name="", kind="", config=None))
            except BuildError:
                pass
            if "" in info.usedBy:
                info.usedBy.remove("")
    for info in context.middlewares.values():
        if info.status != DISABLED and not info.usedBy:
            try:
                from relayd.middlewares import buildMiddleware

                buildMiddleware(context, info, _NOT_FOUND, (info.name,))
            except BuildError as e:
                info.fail(str(e))

    health = context.shared.get("health")
    if health is not None:
        health.retain(context.shared.pop("healthUsed", set()))

    from relayd.runtime.shadow import warnShadowed

    tables = {ep: RouteTable.build(routes) for ep, routes in routesByEntryPoint.items()}
    warnShadowed(tables, routers, syntaxDefault)

    return Runtime(
        generation=generation,
        static=static,
        config=config,
        routers=routers,
        services=context.services,
        middlewares=context.middlewares,
        tcpRouters=tcpRouters,
        tcpServices=tcpServices,
        tcpMiddlewares=layer4.tcpMiddlewares,
        tcpRoutes=layer4.tcp,
        udpRoutes=layer4.udp,
        udpRouters=udpRouters,
        udpServices=udpServices,
        routes=tables,
        providerErrors=dict(providerErrors or {}),
        tls=tls,
    )


class _NotFound:
    def handle(self, request: Any) -> None:
        from relayd.proxy.responses import notFound

        notFound(request)


_NOT_FOUND = _NotFound()


def _buildRouter(
    context: BuildContext,
    info: ObjectInfo,
    router: Router,
    syntaxDefault: str,
    available: list[str],
    defaults: list[str],
    tls: TLSRuntime,
) -> Route | None:
    internalRouter = info.name.endswith("@internal")
    info.using = _attachTo(router.entryPoints, available, defaults, info)
    if not router.rule:
        info.fail("the rule is empty")
    info.priority = router.priority or defaultPriority(router.rule)
    if router.priority > MAX_USER_PRIORITY and not internalRouter:
        info.fail(f"the router priority {router.priority} exceeds the maximum user-defined priority {MAX_USER_PRIORITY}")
    if router.priority < 0:
        info.fail(f"the router priority must not be negative, got {router.priority}")
    matcher = None
    if router.rule:
        try:
            matcher = compileHTTPRule(router.rule, router.ruleSyntax or syntaxDefault)
        except RuleError as e:
            info.fail(f"invalid rule {router.rule!r}: {e}")
    if not router.service:
        info.fail("the service is missing on the router")
    for problem in tls.routerProblems.get(info.name, ()):
        (info.fail if problem.fatal else info.warn)(problem.message)
    if router.tls is not None and router.tls.certResolver:
        info.warn(
            f'tls.certResolver "{router.tls.certResolver}": certificate resolvers are not supported yet; '
            "the certificates of the tls section are served"
        )
    handler = None
    if info.status != DISABLED:
        try:
            handler = context.serviceHandler(router.service, info)
            middlewares = _entryPointMiddlewares(context, info) + router.middlewares
            handler = context.middlewareChain(middlewares, info, handler)
        except BuildError as e:
            info.fail(str(e))
    if info.status == DISABLED or matcher is None:
        _log.warn("router {router} is disabled: {errors}", router=info.name, errors="; ".join(info.errors))
        return None
    return Route(
        name=info.name,
        priority=info.priority,
        rule=router.rule,
        matcher=matcher,
        handler=handler,
        tls=router.tls is not None,
    )


def _tlsOptionsName(name: str, router: str) -> str:
    """
    The TLS options a router's C{tls.options} value refers to: C{default} for
    none, otherwise qualified within the router's provider (references in the
    dynamic configuration arrive qualified; an entrypoint's default does not).
    """
    if not name or name == DEFAULT_OPTIONS:
        return DEFAULT_OPTIONS
    provider = splitName(router)[1]
    if "@" in name or not provider:
        return name
    return f"{name}@{provider}"


def _tlsUses(
    static: StaticConfig,
    config: DynamicConfig,
    available: list[str],
    defaults: list[str],
) -> list[RouterTLSUse]:
    """
    Every HTTP router that serves TLS on an entrypoint, with the options it
    asks for there: its own tls section, or else the entrypoint's
    C{http.tls} (which applies to routers without one).
    """
    uses = []
    for name in sorted(config.http.routers):
        router = config.http.routers[name]
        for entryPoint in router.entryPoints or defaults:
            if entryPoint not in available:
                continue
            routerTLS = router.tls if router.tls is not None else static.entryPoints[entryPoint].http.tls
            if routerTLS is None:
                continue
            uses.append(
                RouterTLSUse(
                    router=name,
                    entryPoint=entryPoint,
                    rule=router.rule,
                    options=_tlsOptionsName(routerTLS.options, name),
                )
            )
    return uses


def _entryPointMiddlewares(context: BuildContext, info: ObjectInfo) -> tuple[str, ...]:
    names: list[str] = []
    if info.name.endswith("@internal"):
        return ()
    for ep in info.using:
        for name in context.static.entryPoints[ep].http.middlewares:
            if name not in names:
                names.append(name)
    return tuple(names)


def _buildTCP(
    config: DynamicConfig,
    static: StaticConfig,
    available: list[str],
    defaults: list[str],
    syntaxDefault: str,
    tls: TLSRuntime,
) -> tuple[dict[str, ObjectInfo], dict[str, ObjectInfo]]:
    services = {n: ObjectInfo(name=n, kind=s.kind(), config=s) for n, s in config.tcp.services.items()}
    routers: dict[str, ObjectInfo] = {}
    for name in sorted(config.tcp.routers):
        router = config.tcp.routers[name]
        info = ObjectInfo(name=name, kind="tcp", config=router)
        routers[name] = info
        info.using = _attachTo(router.entryPoints, available, defaults, info)
        info.priority = router.priority or defaultTCPPriority(router.rule)
        if not router.rule:
            info.fail("the rule is empty")
        else:
            try:
                compileTCPRule(router.rule, router.ruleSyntax or syntaxDefault)
            except RuleError as e:
                info.fail(f"invalid rule {router.rule!r}: {e}")
        _checkServiceRef(router.service, services, info)
        if router.tls is not None and not router.tls.passthrough:
            problem = tls.optionsProblem(_tlsOptionsName(router.tls.options, name))
            if problem:
                info.fail(problem)
        for mw in router.middlewares:
            if mw not in config.tcp.middlewares:
                info.fail(f'middleware "{mw}" does not exist')
    for info in services.values():
        for child in info.config.children():
            if child not in services:
                info.fail(f'the service "{child}" does not exist')
    return routers, services


def _buildUDP(config: DynamicConfig, available: list[str]) -> tuple[dict[str, ObjectInfo], dict[str, ObjectInfo]]:
    services = {n: ObjectInfo(name=n, kind=s.kind(), config=s) for n, s in config.udp.services.items()}
    routers: dict[str, ObjectInfo] = {}
    for name in sorted(config.udp.routers):
        router = config.udp.routers[name]
        info = ObjectInfo(name=name, kind="udp", config=router)
        routers[name] = info
        info.using = _attachTo(router.entryPoints, available, available, info)
        _checkServiceRef(router.service, services, info)
    return routers, services


def _checkServiceRef(name: str, services: dict[str, ObjectInfo], info: ObjectInfo) -> None:
    if not name:
        info.fail("the service is missing on the router")
        return
    service = services.get(name)
    if service is None:
        info.fail(f'the service "{name}" does not exist')
        return
    service.usedBy.append(info.name)
