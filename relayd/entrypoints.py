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
from twisted.web import resource, server

from relayd.config.address import Address
from relayd.config.static import EntryPoint
from relayd.proxy.forwarded import applyForwardedHeaders
from relayd.proxy.responses import notFound, plainResponse
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
    beforeResponse: list[Callable[[Any], None]] = attrs.field(factory=list)


def _clientIP(address: Any) -> str:
    host = getattr(address, "host", "")
    if not host:
        return ""
    try:
        parsed = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return host
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return host


class RoutingResource(resource.Resource):
    """
    The one resource of an entrypoint's site: route, then hand the request to
    the route's handler.
    """

    isLeaf = True
    _log = Logger()

    def __init__(self, entryPoint: EntryPointService) -> None:
        super().__init__()
        self.entryPoint = entryPoint

    def render(self, request: server.Request) -> Any:
        request.defaultContentType = None
        request.responseHeaders.removeHeader(b"server")
        entryPoint = self.entryPoint
        runtime = entryPoint.runtime
        if request.clientproto == b"HTTP/1.1" and not request.requestHeaders.hasHeader(b"host"):
            plainResponse(request, 400, "400 Bad Request: missing required Host header\n")
            return server.NOT_DONE_YET
        uri = request.uri.decode("utf-8", "surrogateescape")
        host = (request.getHeader(b"host") or b"").decode("latin-1")
        if uri.startswith(("http://", "https://")):
            # An absolute-form target names the host; Go routes on it, not on Host.
            parts = urlsplit(uri)
            rawPath, rawQuery = parts.path or "/", parts.query
            host = parts.netloc.rpartition("@")[2] or host
        elif uri.startswith("/"):
            rawPath, _, rawQuery = uri.partition("?")
        elif uri == "*" and request.method == b"OPTIONS":
            rawPath, rawQuery = "*", ""
        else:
            plainResponse(request, 400, "400 Bad Request: invalid request target\n")
            return server.NOT_DONE_YET
        clientIP = _clientIP(request.getClientAddress())
        try:
            path = normalizePath(rawPath)
            if entryPoint.config.http.sanitizePath and path != "*":
                path = cleanPath(path)
            route = routeRequest(
                host=host,
                path=path,
                rawQuery=rawQuery,
                method=request.method.decode("latin-1"),
                headers=lambda name: [
                    v.decode("latin-1")
                    for v in request.requestHeaders.getRawHeaders(name.encode("latin-1"), ())
                ],
                clientIP=clientIP,
                encodeQuerySemicolons=entryPoint.config.http.encodeQuerySemicolons,
            )
        except BadRequestPath as e:
            plainResponse(request, 400, f"400 Bad Request: {e}\n")
            return server.NOT_DONE_YET
        applyForwardedHeaders(
            request,
            trusted=entryPoint.trusts(clientIP),
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
            trustForwarded=entryPoint.trusts(clientIP),
        )
        request.relayd = context  # type: ignore[attr-defined]
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
            return server.NOT_DONE_YET
        context.router = match.name
        try:
            match.handler.handle(request)
        except Exception:
            self._log.failure("handler of router {router} failed", router=match.name)
            plainResponse(request, 500)
        return server.NOT_DONE_YET


class RelaydRequest(server.Request):
    """
    A request whose response can be adjusted by middlewares just before its
    status line and headers are sent, whoever produces the response (the
    upstream relay, an error answer, an internal service): each callable in
    C{relayd.beforeResponse} gets the request, innermost middleware first.
    """

    _hooksRun = False

    def _runHooks(self) -> None:
        if self._hooksRun:
            return
        self._hooksRun = True
        context = getattr(self, "relayd", None)
        if context is None:
            return
        for hook in reversed(context.beforeResponse):
            hook(self)

    def write(self, data: bytes) -> None:
        if not self.startedWriting:
            self._runHooks()
        super().write(data)

    def finish(self) -> None:
        if not self.startedWriting:
            self._runHooks()
        super().finish()


class _Site(server.Site):
    noisy = False
    requestFactory = RelaydRequest

    def log(self, request: Any) -> None:
        pass


class _UDPDiscard(protocol.DatagramProtocol):
    def datagramReceived(self, data: bytes, addr: Any) -> None:
        pass


class EntryPointService(service.Service):
    """
    Listens on one entrypoint's address and serves it from the current runtime.
    """

    _log = Logger()

    def __init__(self, name: str, config: EntryPoint, reactor: Any, runtime: Runtime) -> None:
        self.setName(f"entrypoint:{name}")
        self.entryPointName = name
        self.config = config
        self.reactor = reactor
        self.runtime = runtime
        self.address: Address = config.parsedAddress
        self.port = self.address.port
        self.listeningPort: Any = None
        trusted = config.forwardedHeaders.trustedIPs
        self._trustAll = config.forwardedHeaders.insecure
        self._trusted = IPChecker.fromStrings(trusted) if trusted else None
        self.site = _Site(RoutingResource(self), timeout=config.transport.respondingTimeouts.idleTimeout or None)

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
            port = self.reactor.listenUDP(address.port, _UDPDiscard(), interface=_resolve(address.host) or "::")
            return defer.succeed(port)
        description = address.twistedDescription()
        if address.host and not address.endpoint:
            ip = _resolve(address.host)
            description = Address(protocol="tcp", host=ip, port=address.port).twistedDescription()
        endpoint = serverFromString(self.reactor, description)
        return endpoint.listen(self.site)

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
            where = str(getattr(host, "name", host))
        self._log.info(
            "entrypoint {entrypoint} listening on {address} ({protocol})",
            entrypoint=self.entryPointName,
            address=where,
            protocol=self.address.protocol,
            relayd_always=True,
        )

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        if self.listeningPort is None:
            return None
        port, self.listeningPort = self.listeningPort, None
        return defer.maybeDeferred(port.stopListening)


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
