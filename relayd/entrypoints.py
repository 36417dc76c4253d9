"""
Entrypoints: one listening service per static entrypoint. Each HTTP request is
routed on the runtime that is current when it arrives and finishes on it, even if
a newer generation is swapped in meanwhile.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Callable
from urllib.parse import urlsplit

import attrs
from twisted.application import service
from twisted.internet import defer, protocol
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory

from relayd.config.address import Address
from relayd.config.static import EntryPoint
from relayd.proxy.forwarded import applyForwardedHeaders, clientHost
from relayd.proxy.responses import notFound, plainResponse
from relayd.proxy.server import ChannelSettings, HTTPRequest, HTTPSite
from relayd.runtime.build import Runtime
from relayd.runtime.matchers import IPChecker
from relayd.runtime.routing import BadRequestPath, cleanPath, normalizePath, routeRequest


@attrs.define(slots=True)
class RequestContext:
    """
    What relayd knows about a request once it is routed; handlers read and
    extend it (service, upstream) for logs and metrics.
    """

    entryPoint: str
    runtime: Runtime
    clientIP: str
    localPort: int
    forwardPath: str
    rawQuery: str
    trustForwarded: bool
    router: str = ""
    service: str = ""
    upstream: str = ""
    # Set by authentication middlewares (basicAuth) for the access log.
    clientUsername: str = ""
    beforeResponse: list[Callable[[Any], None]] = attrs.field(factory=list)
    # When the request was routed (reactor seconds); set only when the
    # entrypoint has observers (access log, metrics).
    start: float = 0.0
    # For the access log: when the request was handed to a server (reactor
    # seconds, set with start only), the status that server answered when
    # it differs from the response's (0: the same), and how many times the
    # request was retried.
    originStart: float = 0.0
    originStatus: int = 0
    retryAttempts: int = 0


# Called once per routed request when its response is finished (failure None)
# or the client went away first (the failure): the access log and metrics.
RequestObserver = Callable[[HTTPRequest, RequestContext, Any], None]


def _observed(result: Any, request: HTTPRequest, context: RequestContext, observers: list[RequestObserver]) -> None:
    failure = result if result is not None else None
    for observer in observers:
        try:
            observer(request, context, failure)
        except Exception:
            Router._log.failure("request observer {observer} failed", observer=observer)


def _badRequest(request: HTTPRequest, body: str) -> None:
    # As Go's server: a request relayd cannot route closes its connection.
    request.keepAlive = False
    plainResponse(request, 400, body)


class Router:
    """
    Routes each request of an entrypoint on the runtime current when it
    arrives, then hands it to the route's handler.
    """

    _log = Logger()

    def __init__(self, entryPoint: EntryPointService) -> None:
        self.entryPoint = entryPoint

    def __call__(self, request: HTTPRequest) -> None:
        entryPoint = self.entryPoint
        runtime = entryPoint.runtime
        headers = request.requestHeaders
        fields = headers._fields
        hostValues = fields.get(b"host")
        if hostValues is None:
            if request.clientproto == b"HTTP/1.1":
                _badRequest(request, "400 Bad Request: missing required Host header\n")
                return
            host = ""
        elif len(hostValues) > 1:
            _badRequest(request, "400 Bad Request: too many Host headers\n")
            return
        else:
            host = hostValues[0].decode("latin-1")
        uri = request.uri.decode("utf-8", "surrogateescape")
        if uri[:1] == "/":
            rawPath, _, rawQuery = uri.partition("?")
        elif uri.startswith(("http://", "https://")):
            # An absolute-form target names the host: Go routes on it and
            # sends it upstream as Host.
            parts = urlsplit(uri)
            rawPath, rawQuery = parts.path or "/", parts.query
            authority = parts.netloc.rpartition("@")[2]
            if authority:
                host = authority
                headers.setRawHeaders(b"host", [authority.encode("latin-1")])
        elif uri == "*" and request.method == b"OPTIONS":
            rawPath, rawQuery = "*", ""
        else:
            _badRequest(request, "400 Bad Request: invalid request target\n")
            return
        clientIP = request.channel.clientIP
        try:
            path = normalizePath(rawPath)
            if entryPoint.sanitizePath and path != "*":
                path = cleanPath(path)
            route = routeRequest(
                host=host,
                path=path,
                rawQuery=rawQuery,
                method=request.method.decode("latin-1"),
                headers=lambda name: [v.decode("latin-1") for v in headers.getRawHeaders(name.encode("latin-1"), ())],
                clientIP=clientIP,
                encodeQuerySemicolons=entryPoint.encodeQuerySemicolons,
            )
        except BadRequestPath as e:
            _badRequest(request, f"400 Bad Request: {e}\n")
            return
        trusted = entryPoint.trusts(clientIP)
        applyForwardedHeaders(
            request,
            trusted=trusted,
            clientIP=clientIP,
            host=host,
            allowedConnection=entryPoint.config.forwardedHeaders.connection,
        )
        context = RequestContext(
            entryPoint=entryPoint.entryPointName,
            runtime=runtime,
            clientIP=clientIP,
            localPort=entryPoint.port,
            forwardPath=path,
            rawQuery=route.rawQuery,
            trustForwarded=trusted,
        )
        request.relayd = context
        observers = entryPoint.observers
        if observers:
            context.start = entryPoint.reactor.seconds()
            request.notifyFinish().addBoth(_observed, request, context, observers)
        match = runtime.table(entryPoint.entryPointName).match(route, secure=request.isSecure())
        if match is None:
            self._log.debug(
                "404: no router matches {method} {host}{path} (entrypoint={entrypoint})",
                method=route.method,
                host=host,
                path=rawPath,
                entrypoint=entryPoint.entryPointName,
            )
            notFound(request)
            return
        context.router = match.name
        if match.tls and _misdirected(request, runtime, match.name, entryPoint.entryPointName):
            request.keepAlive = False
            plainResponse(request, 421, "421 Misdirected Request\n")
            return
        try:
            match.handler.handle(request)
        except Exception:
            self._log.failure("handler of router {router} failed", router=match.name)
            if request.startedWriting:
                request.abort()
            else:
                plainResponse(request, 500)


def _misdirected(request: Any, runtime: Runtime, router: str, entryPoint: str) -> bool:
    """
    Whether a TLS request reached a router whose TLS options differ from
    those its connection was set up with (the Host header names another host
    than the SNI did): Traefik answers 421 so the client opens a connection
    for that host.
    """
    tls = getattr(runtime, "tls", None)
    if tls is None:
        return False
    from relayd.tls.creator import handshakeInfo, tlsTransport

    transport = tlsTransport(request)
    if transport is None:
        return False
    chosen = handshakeInfo(transport.getHandle()).optionsName
    return chosen is not None and chosen != tls.routerOptionsName(router, entryPoint)


def channelSettings(config: EntryPoint, secure: bool = False) -> ChannelSettings:
    """
    The connection limits of an entrypoint.
    """
    transport = config.transport
    timeouts = transport.respondingTimeouts
    return ChannelSettings(
        maxHeaderBytes=config.http.maxHeaderBytes,
        readTimeout=float(timeouts.readTimeout),
        writeTimeout=float(timeouts.writeTimeout),
        idleTimeout=float(timeouts.idleTimeout),
        keepAliveMaxRequests=transport.keepAliveMaxRequests,
        keepAliveMaxTime=float(transport.keepAliveMaxTime),
        secure=secure,
    )


class EntryPointService(service.Service):
    """
    Listens on one entrypoint's address and serves it from the current runtime.
    """

    _log = Logger()

    def __init__(self, name: str, config: EntryPoint, reactor: Any, runtime: Runtime, reusePort: bool = False) -> None:
        self.setName(f"entrypoint:{name}")
        self.entryPointName = name
        self.config = config
        self.reactor = reactor
        self.runtime = runtime
        self.address: Address = config.parsedAddress
        self.port = self.address.port
        self.listeningPort: Any = None
        self.reusePort = reusePort or config.reusePort
        trusted = config.forwardedHeaders.trustedIPs
        self._trustAll = config.forwardedHeaders.insecure
        self._trusted = IPChecker.fromStrings(trusted) if trusted else None
        self.sanitizePath = config.http.sanitizePath
        self.encodeQuerySemicolons = config.http.encodeQuerySemicolons
        router = Router(self)
        self.site = HTTPSite(router, channelSettings(config), reactor, clientIP=clientHost)
        self.secureSite = HTTPSite(router, channelSettings(config, secure=True), reactor, clientIP=clientHost)
        self.secureSite.maxConcurrentStreams = config.http2.maxConcurrentStreams or 250
        # What TLS connections are terminated with: by default the current
        # runtime's certificates and options, chosen at handshake time.
        self.tlsCreator: Any = None
        # Called for every routed request once it is done (RequestObserver).
        self.observers: list[RequestObserver] = []
        self.factory = _EntryPointFactory(self)

    @property
    def sites(self) -> tuple[HTTPSite, HTTPSite]:
        return (self.site, self.secureSite)

    def wantsSwitch(self) -> bool:
        """
        Whether connections must be told apart by their first bytes: when
        the current runtime has TLS routers or TCP routers on this entrypoint
        (or a TLS terminator was set), and always when the entrypoint
        accepts the PROXY protocol.
        """
        if self.tlsCreator is not None or self.config.proxyProtocol is not None:
            return True
        runtime = self.runtime
        if runtime.table(self.entryPointName).secure:
            return True
        tcpTable = getattr(runtime, "tcpTable", None)
        return tcpTable is not None and bool(tcpTable(self.entryPointName))

    def tlsFactory(self) -> TLSMemoryBIOFactory:
        """
        What terminates a TLS connection: the TLS protocol over an HTTP/1.1
        or HTTP/2 channel of the secure site, as ALPN decides.
        """
        creator = self.tlsCreator
        if creator is None:
            from relayd.tls.store import serverConnectionCreator

            creator = serverConnectionCreator(lambda: self.runtime.tls, self.entryPointName)
        return TLSMemoryBIOFactory(creator, False, _NegotiatorFactory(self.secureSite))

    def trusts(self, clientIP: str) -> bool:
        if self._trustAll:
            return True
        return self._trusted is not None and self._trusted.contains(clientIP)

    def swap(self, runtime: Runtime) -> None:
        """
        Serve new requests from C{runtime}; requests in flight keep theirs.
        """
        self.runtime = runtime

    def listen(self) -> defer.Deferred[Any]:
        address = self.address
        if address.protocol == "udp":
            from relayd.proxy.udp import MAX_DATAGRAM, UDPEntryPoint

            port = self.reactor.listenUDP(
                address.port, UDPEntryPoint(self), interface=_resolve(address.host) or "::", maxPacketSize=MAX_DATAGRAM
            )
            return defer.succeed(port)
        if self.reusePort and not address.endpoint:
            return defer.maybeDeferred(self._listenReusingPort)
        description = address.twistedDescription()
        if address.host and not address.endpoint:
            ip = _resolve(address.host)
            description = Address(protocol="tcp", host=ip, port=address.port).twistedDescription()
        endpoint = serverFromString(self.reactor, description)
        return endpoint.listen(self.factory)

    def _listenReusingPort(self) -> Any:
        """
        Listen with SO_REUSEPORT, so that several relayd workers (or other
        processes) share the address and the kernel spreads connections.
        """
        address = self.address
        host = _resolve(address.host) if address.host else "::"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6 and not address.host:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((host, address.port))
            sock.listen(4096)
            sock.setblocking(False)
            return self.reactor.adoptStreamPort(sock.fileno(), family, self.factory)
        finally:
            sock.close()

    def startService(self) -> None:
        super().startService()
        failures: list[Any] = []
        d = self.listen()
        d.addCallbacks(self._listening, failures.append)
        if failures:
            self.running = False
            raise ListenError(
                f"entrypoint {self.entryPointName} cannot listen on "
                f"{self.address.describe()}: {failures[0].getErrorMessage()}"
            )

    def _listening(self, port: Any) -> None:
        self.listeningPort = port
        host = port.getHost()
        if hasattr(host, "port"):
            self.port = host.port
            where = f"{host.host}:{host.port}" if ":" not in host.host else f"[{host.host}]:{host.port}"
        else:
            name = getattr(host, "name", host)
            where = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        self._log.info(
            "entrypoint {entrypoint} listening on {address} ({protocol})",
            entrypoint=self.entryPointName,
            address=where,
            protocol=self.address.protocol,
            relayd_always=True,
        )

    def stopService(self) -> defer.Deferred[None] | None:
        """
        Stop as Traefik does: keep serving for requestAcceptGraceTimeout
        (while /ping answers the terminating code), then stop accepting, let
        requests in flight finish for up to graceTimeOut, and close what is
        left.
        """
        super().stopService()
        if self.listeningPort is None:
            return None
        lifeCycle = self.config.transport.lifeCycle
        d = defer.Deferred()
        if lifeCycle.requestAcceptGraceTimeout:
            self._log.info(
                "entrypoint {entrypoint}: still accepting requests for {grace}",
                entrypoint=self.entryPointName,
                grace=str(lifeCycle.requestAcceptGraceTimeout),
            )
            self.reactor.callLater(float(lifeCycle.requestAcceptGraceTimeout), d.callback, None)
        else:
            d.callback(None)
        d.addCallback(lambda _: self._stopAccepting())
        d.addCallback(lambda _: self._drain(float(lifeCycle.graceTimeOut)))
        return d

    def _stopAccepting(self) -> defer.Deferred[None]:
        port, self.listeningPort = self.listeningPort, None
        return defer.maybeDeferred(port.stopListening) if port is not None else defer.succeed(None)

    def _drain(self, grace: float) -> defer.Deferred[None]:
        """
        Wait for requests in flight and open WebSockets for up to C{grace}
        seconds; then break the requests off and close the WebSockets with
        1001, dropping those whose closing handshake takes over
        L{TUNNEL_CLOSE_WAIT} seconds.
        """
        sites = self.sites
        for site in sites:
            site.drain()
        done: defer.Deferred[None] = defer.Deferred()
        deadline = self.reactor.seconds() + grace
        state = {"closing": 0.0}

        def check() -> None:
            now = self.reactor.seconds()
            channels = sum(len(site.channels) for site in sites)
            tunnels = [tunnel for site in sites for tunnel in site.tunnels]
            if state["closing"]:
                if not tunnels:
                    done.callback(None)
                elif now >= state["closing"]:
                    for tunnel in tunnels:
                        tunnel.abort()
                    for site in sites:
                        site.tunnels.clear()
                    done.callback(None)
                else:
                    self.reactor.callLater(0.05, check)
                return
            if not channels and not tunnels:
                done.callback(None)
                return
            if now >= deadline:
                if channels:
                    self._log.warn(
                        "entrypoint {entrypoint}: graceTimeOut reached, closing {count} connection(s)",
                        entrypoint=self.entryPointName,
                        count=channels,
                    )
                    for site in sites:
                        site.abortAll()
                if tunnels:
                    self._log.info(
                        "entrypoint {entrypoint}: closing {count} open tunnel(s) (WebSockets get 1001, TCP connections are closed)",
                        entrypoint=self.entryPointName,
                        count=len(tunnels),
                    )
                    for tunnel in tunnels:
                        tunnel.goingAway()
                    state["closing"] = now + TUNNEL_CLOSE_WAIT
                    self.reactor.callLater(0.05, check)
                    return
                done.callback(None)
                return
            self.reactor.callLater(0.05, check)

        check()
        return done


# How long WebSockets closed at shutdown get to finish their closing handshake.
TUNNEL_CLOSE_WAIT = 2.0


class _EntryPointFactory(protocol.Factory):
    """
    The listening factory of an entrypoint: a plain HTTP channel when only
    plain HTTP is served, else a L{_Switch} that tells TLS from plain HTTP by
    the first bytes, as Traefik does on every entrypoint.
    """

    noisy = False

    def __init__(self, entryPoint: EntryPointService) -> None:
        self.entryPoint = entryPoint

    def startFactory(self) -> None:
        for site in self.entryPoint.sites:
            site.doStart()

    def stopFactory(self) -> None:
        for site in self.entryPoint.sites:
            site.doStop()

    def buildProtocol(self, addr: Any) -> protocol.Protocol:
        entryPoint = self.entryPoint
        if entryPoint.wantsSwitch():
            return _Switch(entryPoint, addr)
        return entryPoint.site.buildProtocol(addr)


# A TLS record starts with the handshake content type (22).
_TLS_HANDSHAKE = 0x16


class _Switch(protocol.Protocol):
    """
    Holds a new connection until its first bytes tell what it is, then hands
    it over, replaying what it read: to a TCP router's service when one
    matches (TCP routers come first, as in Traefik), else to TLS termination
    (a ClientHello) or to a plain HTTP channel (anything else).
    """

    def __init__(self, entryPoint: EntryPointService, addr: Any) -> None:
        self.entryPoint = entryPoint
        self.addr = addr
        self.timer: Any = None
        self.buffer = b""
        self.runtime = entryPoint.runtime

    def connectionMade(self) -> None:
        # HTTP channels set this on plain sockets only; a TLS connection's
        # first answer would otherwise wait for the client's delayed ACK
        # behind the session tickets (about 40 ms).
        try:
            self.transport.setTcpNoDelay(True)
        except Exception:
            pass
        timeout = self.entryPoint.site.settings.readTimeout
        if timeout:
            self.timer = self.entryPoint.reactor.callLater(timeout, self._timedOut)
        from relayd.proxy.tcp import dispatchEarly

        # Server-first protocols: only plain TCP routers on the entrypoint.
        if dispatchEarly(self.entryPoint, self):
            self._stopTimer()

    def _timedOut(self) -> None:
        self.timer = None
        self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if self.entryPoint.config.proxyProtocol is not None:
            from relayd.proxy.proxyprotocol import acceptHeader

            rest = acceptHeader(self, data)
            if rest is None:
                return
            data = rest
        self.buffer += data
        buffer = self.buffer
        entryPoint = self.entryPoint
        tcpTable = getattr(self.runtime, "tcpTable", None)
        if tcpTable is not None and tcpTable(entryPoint.entryPointName):
            from relayd.proxy.tcp import dispatch

            # True: a TCP router took the connection; None: more bytes are
            # needed to decide (a ClientHello split over reads); False: HTTP.
            taken = dispatch(entryPoint, self, buffer)
            if taken is None:
                return
            if taken:
                self._stopTimer()
                return
        self._stopTimer()
        if buffer[0] == _TLS_HANDSHAKE:
            handler: Any = entryPoint.tlsFactory().buildProtocol(self.addr)
        else:
            handler = entryPoint.site.buildProtocol(self.addr)
        _handOver(self.transport, handler, buffer)

    def _stopTimer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def connectionLost(self, reason: Any = None) -> None:
        self._stopTimer()


class _NegotiatorFactory(protocol.Factory):
    noisy = False

    def __init__(self, site: HTTPSite) -> None:
        self.site = site

    def buildProtocol(self, addr: Any) -> _Negotiator:
        return _Negotiator(self.site, addr)


class _Negotiator(protocol.Protocol):
    """
    The first protocol over a TLS connection: once the handshake is done and
    the first bytes arrive, an HTTP/2 channel if ALPN chose C{h2}, else an
    HTTP/1.1 channel.
    """

    def __init__(self, site: HTTPSite, addr: Any) -> None:
        self.site = site
        self.addr = addr

    def dataReceived(self, data: bytes) -> None:
        tls = self.transport
        if getattr(tls, "negotiatedProtocol", None) == b"h2":
            from relayd.proxy.h2 import H2Channel

            handler: Any = H2Channel(self.site)
        else:
            handler = self.site.buildProtocol(self.addr)
        tls.wrappedProtocol = handler
        handler.makeConnection(tls)
        handler.dataReceived(data)


def _handOver(transport: Any, handler: Any, data: bytes) -> None:
    """
    Make C{handler} the protocol of C{transport} and give it C{data}.
    """
    transport.protocol = handler
    handler.makeConnection(transport)
    if data:
        handler.dataReceived(data)


class ListenError(Exception):
    """
    An entrypoint could not listen on its address.
    """


def _resolve(host: str) -> str:
    if not host:
        return ""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as e:
        raise ListenError(f"cannot resolve {host!r}: {e}") from None
    return str(infos[0][4][0])
