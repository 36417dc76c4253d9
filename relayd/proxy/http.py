"""
Forwarding a request to one server: the request head Traefik would send
(hop-by-hop fields removed, Host per passHostHeader, X-Forwarded-For
appended, the framing of the body), a pooled connection to relay it on, and
the answers relayd gives when that fails (502 refused/reset/malformed, 504
timeouts), logged with router, service and upstream.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure

from relayd.proxy.responses import plainResponse
from relayd.proxy.upstream import HOP_BY_HOP, Target, UpstreamConnection, UpstreamError, UpstreamPool
from relayd.proxy.websocket import WebSocketRelayer, WebSocketSettings, isWebSocketUpgrade
from relayd.proxy.wire import _PREFIX, fieldPrefix

__all__ = ["HOP_BY_HOP", "Forwarder", "requestHead"]

# Fields the forwarder writes itself.
_SKIP = HOP_BY_HOP | {b"host", b"x-forwarded-for", b"content-length"}
_EMPTY_BODY_LENGTH = frozenset({b"POST", b"PUT", b"PATCH"})
# A WebSocket handshake's own fields: relayd makes its own handshake upstream.
_SKIP_UPGRADE = _SKIP | {b"sec-websocket-key", b"sec-websocket-extensions", b"sec-websocket-accept", b"sec-websocket-version"}


def requestHead(request: Any, target: Target, passHostHeader: bool, upgrade: bytes = b"") -> bytes:
    """
    The head of the request to send to C{target}; for a protocol upgrade,
    C{upgrade} holds the handshake's own header lines, which replace the
    client's.
    """
    context = request.relayd
    path = context.forwardPath
    if path[:1] != "/" and path != "*":
        path = "/" + path
    uri = path.encode("utf-8", "surrogateescape")
    if target.basePath:
        uri = target.basePath + uri
    if context.rawQuery:
        uri += b"?" + context.rawQuery.encode("utf-8", "surrogateescape")
    headers = request.requestHeaders
    fields = headers._fields
    host = None
    if passHostHeader:
        values = fields.get(b"host")
        if values:
            host = values[-1]
    if host is None:
        host = target.authority
    out = [request.method, b" ", uri, b" HTTP/1.1\r\nHost: ", host, b"\r\n"]
    append = out.append
    skip = _SKIP_UPGRADE if upgrade else _SKIP
    for name, values in fields.items():
        if name in skip:
            if name == b"te" and any(b"trailers" in v.lower() for v in values):
                append(b"Te: trailers\r\n")
            continue
        prefix = _PREFIX.get(name) or fieldPrefix(name)
        for value in values:
            append(prefix + value + b"\r\n")
    client = context.clientIP
    if client and not getattr(request, "relaydOmitXForwardedFor", False):
        previous = fields.get(b"x-forwarded-for")
        if previous:
            append(b"X-Forwarded-For: " + b", ".join(previous) + b", " + client.encode("ascii") + b"\r\n")
        else:
            append(b"X-Forwarded-For: " + client.encode("ascii") + b"\r\n")
    if upgrade:
        append(upgrade)
    length = request.body.length
    if length is None:
        append(b"Transfer-Encoding: chunked\r\n")
    elif length or fields.get(b"content-length") is not None or request.method in _EMPTY_BODY_LENGTH:
        append(b"Content-Length: %d\r\n" % length)
    append(b"\r\n")
    return b"".join(out)


class Forwarder:
    """
    Sends requests upstream through one pool of connections.
    """

    _log = Logger()

    def __init__(self, reactor: Any, pool: UpstreamPool | None = None, websocket: WebSocketSettings | None = None) -> None:
        self.reactor = reactor
        self.pool = pool or UpstreamPool(reactor)
        self.pool.onFailure = self._failed
        self.websockets = WebSocketRelayer(self, websocket)

    def close(self) -> Any:
        """
        Close the idle pooled connections.
        """
        self.websockets.close()
        return self.pool.close()

    def forward(self, request: Any, target: Target, passHostHeader: bool = True) -> None:
        """
        Relay C{request} to C{target}; the answer (or an error answer) goes
        to the client as it comes.
        """
        context = request.relayd
        if getattr(context, "start", 0.0):
            # Observed requests only: the access log's OriginDuration.
            context.originStart = self.reactor.seconds()
        if b"upgrade" in request.requestHeaders._fields and isWebSocketUpgrade(request):
            self.websockets.forward(request, target, passHostHeader)
            return
        head = requestHead(request, target, passHostHeader)
        request.upstreamHead = head
        connection = self.pool.acquire(target)
        if connection is not None:
            connection.start(request, head)
            return
        self._connect(request, target, head, retried=False)

    def _connect(self, request: Any, target: Target, head: bytes, retried: bool) -> None:
        d = self.pool.connect(target)
        request.upstreamRetried = retried
        d.addCallbacks(self._connected, self._connectFailed, callbackArgs=(request, head), errbackArgs=(request, target))

    def _connected(self, connection: UpstreamConnection, request: Any, head: bytes) -> None:
        if request.finished or request._disconnected:
            self.pool.release(connection)
            return
        connection.start(request, head)

    def _connectFailed(self, failure: Failure, request: Any, target: Target) -> None:
        if request.finished or request._disconnected:
            return
        if failure.check(UpstreamError):
            self._answer(request, target, failure.value)
        else:
            self._answer(request, target, UpstreamError(502, failure.getErrorMessage()))

    def _failed(self, request: Any, target: Target, failure: UpstreamError, retry: bool) -> None:
        if request.finished or request._disconnected:
            return
        if retry and not getattr(request, "upstreamRetried", False):
            # A reused connection was found closed before any answer, and the
            # request can be sent again: once, on a new connection.
            self._connect(request, target, request.upstreamHead, retried=True)
            return
        self._answer(request, target, failure)

    def _answer(self, request: Any, target: Target, failure: UpstreamError) -> None:
        context = request.relayd
        self._log.warn(
            "{code} {phrase}: {error} (router={router}, service={service}, upstream={upstream})",
            code=failure.code,
            phrase="Gateway Timeout" if failure.code == 504 else "Bad Gateway",
            error=failure.message,
            router=getattr(context, "router", ""),
            service=getattr(context, "service", ""),
            upstream=target.url,
        )
        if request.startedWriting:
            request.abort()
        else:
            plainResponse(request, failure.code)
