"""
The upstream side of the proxy: pooled HTTP/1.1 connections to servers, each
relaying one exchange at a time between a client's L{HTTPRequest} and its
server.

An L{UpstreamConnection} writes the request head, streams the request body
(pausing the client while the server reads slowly), parses the response and
streams it to the client (pausing the server while the client reads slowly).
Afterwards the connection goes back to its L{UpstreamPool} if it can be reused.
Failures before the response starts are answered 502 or 504 (and a request
that can be replayed is retried once when a reused connection turns out to
be closed); failures after it break the client connection, as Go's reverse
proxy does.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable
from urllib.parse import urlsplit

import attrs
from twisted.internet import defer, error, protocol, task
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.logger import Logger
from twisted.python.failure import Failure

from relayd.proxy.wire import (
    ChunkedDecoder,
    HeaderMap,
    WireError,
    bodyLength,
    chunk,
    findHeadEnd,
    lastChunk,
    parseResponseHead,
    send,
    socketOf,
    tokens,
)

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

_IDLE, _HEAD, _LENGTH, _CHUNKED, _UNTIL_CLOSE, _DONE = range(6)
_REPLAYABLE = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE"})
_MAX_RESPONSE_HEAD = 1 << 20
# Go's http.Transport.ExpectContinueTimeout as Traefik sets it.
EXPECT_CONTINUE_TIMEOUT = 1.0
_COALESCE = 16 * 1024
_READ_SIZE = 256 * 1024


@attrs.frozen
class TransportSettings:
    """
    A serversTransport, as the data plane uses it.
    """

    name: str = "default@internal"
    dialTimeout: float = 30.0
    responseHeaderTimeout: float = 0.0
    idleConnTimeout: float = 90.0
    maxIdleConnsPerHost: int = 200
    insecureSkipVerify: bool = False
    rootCAs: tuple[str, ...] = ()
    serverName: str = ""
    certificates: tuple[tuple[str, str], ...] = ()

    @property
    def idleLimit(self) -> int:
        """
        How many idle connections to keep per server: Go's default of 2 for
        0, none (no reuse) when negative.
        """
        if self.maxIdleConnsPerHost == 0:
            return 2
        return max(self.maxIdleConnsPerHost, 0)


@attrs.define(eq=False)
class Target:
    """
    One server of a service, resolved once per configuration: where to
    connect, what to send as Host when passHostHeader is false, the base path
    to prefix, and the pool key.
    """

    url: str
    scheme: str
    host: str
    port: int
    authority: bytes
    basePath: bytes
    settings: TransportSettings
    key: str
    flushInterval: float = 0.1
    tlsCreator: Any = None

    @classmethod
    def fromURL(cls, url: str, settings: TransportSettings | None = None, flushInterval: float = 0.1, tlsCreator: Any = None) -> Target:
        settings = settings or TransportSettings()
        parts = urlsplit(url)
        scheme = (parts.scheme or "http").lower()
        if scheme not in ("http", "https", "h2c"):
            raise ValueError(f"unsupported scheme {scheme!r} in server URL {url!r}")
        host = parts.hostname or ""
        if not host:
            raise ValueError(f"no host in server URL {url!r}")
        port = parts.port or (443 if scheme == "https" else 80)
        return cls(
            url=url,
            scheme=scheme,
            host=host,
            port=port,
            authority=parts.netloc.rpartition("@")[2].encode("idna" if not parts.netloc.isascii() else "ascii"),
            basePath=parts.path.rstrip("/").encode("utf-8"),
            settings=settings,
            key=f"{scheme}://{host}:{port}|{settings.name}|{hash(settings)}",
            flushInterval=flushInterval,
            tlsCreator=tlsCreator,
        )


class UpstreamError(Exception):
    """
    The server could not be reached or answered badly: C{code} is what the
    client gets (502 or 504).
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class UpstreamConnection(protocol.Protocol):
    """
    One connection to a server; see the module docstring.
    """

    _log = Logger()

    def __init__(self, pool: UpstreamPool, target: Target) -> None:
        self.pool = pool
        self.target = target
        self.request: Any = None
        self.reused = False
        self.idleSince = 0.0
        self.sock: Any = None
        self._mode = _IDLE
        self._buffer = b""
        self._remaining = 0
        self._decoder: ChunkedDecoder | None = None
        self._chunkedOut = False
        self._bodyDone = True
        self._reusable = True
        self._gotBytes = False
        self._headerTimer: Any = None
        self._continueTimer: Any = None
        self._flushTimer: Any = None
        self._pending: list[bytes] = []
        self._pendingBytes = 0
        self._coalesce = False
        self._closed = False
        self._lost = False
        self._paused = False
        # Set for a protocol upgrade: called with (transport, raw head, rest)
        # when the server answers 101, and the connection is handed over.
        self.onSwitch: Callable[[Any, bytes, bytes], None] | None = None

    def connectionMade(self) -> None:
        self.sock = socketOf(self.transport)
        if self.sock is not None:
            # Large bodies arrive in fewer, larger reads.
            self.transport.bufferSize = _READ_SIZE
            try:
                self.transport.setTcpNoDelay(True)
            except Exception:
                pass

    # -- sending a request --

    def start(self, request: Any, head: bytes) -> None:
        """
        Relay C{request} (whose head, already encoded, is C{head}).
        """
        self.request = request
        request.upstream = self
        self._mode = _HEAD
        self._buffer = b""
        self._gotBytes = False
        self._reusable = True
        body = request.body
        if body.length == 0:
            self._bodyDone = True
            send(self.transport, self.sock, [head])
            self._requestWritten()
            return
        self._bodyDone = False
        self._chunkedOut = body.length is None
        send(self.transport, self.sock, [head])
        if body.expectContinue and not body.continueSent and not body.complete:
            self._continueTimer = self.pool.reactor.callLater(EXPECT_CONTINUE_TIMEOUT, self._startBody)
            return
        self._startBody()

    def _startBody(self) -> None:
        if self._continueTimer is not None:
            if self._continueTimer.active():
                self._continueTimer.cancel()
            self._continueTimer = None
        request = self.request
        if request is None or self._bodyDone or request.body.consumed:
            return
        self.transport.registerProducer(request.body, True)
        request.body.deliver(self)

    def bodyData(self, data: bytes) -> None:
        if self._closed:
            return
        if self._chunkedOut:
            send(self.transport, self.sock, chunk(data))
        else:
            send(self.transport, self.sock, [data])

    def bodyEnd(self, trailers: HeaderMap | None) -> None:
        if self._closed:
            return
        if self._chunkedOut:
            send(self.transport, self.sock, [lastChunk(trailers)])
        self._bodyDone = True
        if self.transport.producer is not None:
            self.transport.unregisterProducer()
        self._requestWritten()

    def bodyFailed(self, reason: Failure) -> None:
        # The client's body broke off (it went away, timed out, or sent a
        # malformed chunk): the server must not take it as complete.
        self._reusable = False
        self._close()

    def _requestWritten(self) -> None:
        timeout = self.target.settings.responseHeaderTimeout
        if timeout and self._mode == _HEAD and self._headerTimer is None:
            self._headerTimer = self.pool.reactor.callLater(timeout, self._headerTimedOut)

    def _headerTimedOut(self) -> None:
        self._headerTimer = None
        if self._mode == _HEAD and self.request is not None:
            self._fail(UpstreamError(504, "timeout awaiting response headers"), retry=False)

    # -- the response --

    def dataReceived(self, data: bytes) -> None:
        mode = self._mode
        if mode == _LENGTH:
            remaining = self._remaining
            if len(data) < remaining:
                self._remaining = remaining - len(data)
                self._relay(data)
                return
            self._remaining = 0
            if len(data) > remaining:
                self._reusable = False
                data = data[:remaining]
            self._relay(data)
            self._complete(None)
            return
        if mode == _CHUNKED:
            try:
                self._decoder.feed(data)  # type: ignore[union-attr]
            except WireError as e:
                self._brokenBody(e.message)
            return
        if mode == _UNTIL_CLOSE:
            self._relay(data)
            return
        if mode == _HEAD:
            self._gotBytes = True
            self._buffer = self._buffer + data if self._buffer else data
            self._parseHead()
            return
        # Bytes while idle (or after the end): the server is confused; drop it.
        self._reusable = False
        self._close()

    def _parseHead(self) -> None:
        while self._mode == _HEAD:
            buffer = self._buffer
            end, start = findHeadEnd(buffer)
            if end < 0:
                if len(buffer) > _MAX_RESPONSE_HEAD:
                    self._fail(UpstreamError(502, "response head too large"), retry=False)
                return
            try:
                head = parseResponseHead(buffer[:end])
            except WireError as e:
                self._fail(UpstreamError(502, f"malformed response: {e.message}"), retry=False)
                return
            rest = buffer[start:]
            self._buffer = b""
            code = head.code
            if code < 200:
                if code == 101:
                    if self.onSwitch is not None and self.request is not None:
                        self._switch(buffer[:start], rest)
                        return
                    self._fail(UpstreamError(502, "unexpected 101 Switching Protocols"), retry=False)
                    return
                self._interim(head)
                self._buffer = rest
                continue
            self._responseHead(head, rest)
            return

    def _switch(self, head: bytes, rest: bytes) -> None:
        """
        The server switched protocols: give the connection up to whoever
        asked for the upgrade, with the raw 101 head and what followed it.
        """
        if self._headerTimer is not None:
            if self._headerTimer.active():
                self._headerTimer.cancel()
            self._headerTimer = None
        request, self.request = self.request, None
        request.upstream = None
        self._mode = _DONE
        self._closed = True
        self.pool.forget(self)
        onSwitch, self.onSwitch = self.onSwitch, None
        assert onSwitch is not None
        onSwitch(self.transport, head, rest)

    def _interim(self, head: Any) -> None:
        request = self.request
        if head.code == 100:
            if not self._bodyDone and not request.body.consumed:
                self._startBody()
            return
        request.writeInformational(head.code, _strip(head.headers))

    def _responseHead(self, head: Any, rest: bytes) -> None:
        if self._headerTimer is not None:
            if self._headerTimer.active():
                self._headerTimer.cancel()
            self._headerTimer = None
        request = self.request
        headers = head.headers
        fields = headers._fields
        code = head.code
        connection = fields.get(b"connection")
        if connection is not None and b"close" in tokens(connection):
            self._reusable = False
        elif head.version == b"HTTP/1.0" and (connection is None or b"keep-alive" not in tokens(connection)):
            self._reusable = False
        if not self._bodyDone:
            # The server answered before reading the whole body (or before
            # asking for it): the connection cannot be reused.
            self._reusable = False
            if self._continueTimer is not None:
                self._continueTimer.cancel()
                self._continueTimer = None
        if request.method == b"HEAD" or code == 204 or code == 304:
            mode, length = _DONE, 0
        else:
            try:
                length = bodyLength(headers, 502)
            except WireError:
                # Go's transport refuses conflicting lengths; so do we.
                self._fail(UpstreamError(502, "malformed response framing"), retry=False)
                return
            if length is None:
                mode = _CHUNKED
            elif b"content-length" not in fields:
                mode = _UNTIL_CLOSE
                self._reusable = False
            else:
                mode = _LENGTH if length else _DONE
        trailerNames = fields.get(b"trailer")
        contentType = fields.get(b"content-type")
        out = _strip(headers)
        if trailerNames and mode == _CHUNKED and request.clientproto == b"HTTP/1.1":
            out.setRawHeaders(b"trailer", trailerNames)
        request.setResponseCode(code)
        request.responseHeaders = out
        interval = self.target.flushInterval
        self._coalesce = (
            mode == _LENGTH
            and interval > 0
            and not (contentType is not None and contentType[0].lower().startswith(b"text/event-stream"))
        )
        self._mode = mode
        if mode == _DONE:
            self._complete(None)
            if rest:
                self._reusable = False
            return
        if mode == _LENGTH:
            self._remaining = length
        elif mode == _CHUNKED:
            self._decoder = ChunkedDecoder(self._relay, self._chunkedEnd, 502)
        request.registerProducer(self, True)
        if rest:
            self.dataReceived(rest)
        elif mode == _UNTIL_CLOSE or mode == _CHUNKED or not self._coalesce:
            # Send the head now: the body may take a while.
            request.write(b"")

    def _relay(self, data: bytes) -> None:
        request = self.request
        if request is None:
            return
        if self._coalesce:
            self._pending.append(data)
            self._pendingBytes += len(data)
            if self._pendingBytes >= _COALESCE or not self._remaining:
                self._flush()
            elif self._flushTimer is None:
                self._flushTimer = self.pool.reactor.callLater(self.target.flushInterval, self._flush)
            return
        request.write(data)

    def _flush(self) -> None:
        if self._flushTimer is not None:
            if self._flushTimer.active():
                self._flushTimer.cancel()
            self._flushTimer = None
        pending, self._pending = self._pending, []
        self._pendingBytes = 0
        if pending and self.request is not None:
            self.request.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def _chunkedEnd(self, trailers: HeaderMap, rest: bytes) -> None:
        if rest:
            self._reusable = False
        self._complete(trailers or None)

    def _complete(self, trailers: HeaderMap | None) -> None:
        """
        The response is over: give the connection back, then finish.
        """
        if self._pending:
            self._flush()
        request = self.request
        self.request = None
        self._mode = _IDLE
        self._decoder = None
        if request is not None:
            request.upstream = None
            request.unregisterProducer()
        if self.transport.producer is not None:
            self.transport.unregisterProducer()
        if self._paused:
            self._paused = False
            self.transport.resumeProducing()
        if self._reusable and self._bodyDone and not self._closed:
            self.pool.release(self)
        else:
            self._close()
        if request is not None:
            request.finish(trailers)

    def _brokenBody(self, message: str) -> None:
        request = self.request
        self._log.warn(
            "upstream response body broke off: {error} (router={router}, service={service}, upstream={upstream})",
            error=message,
            router=_ctx(request, "router"),
            service=_ctx(request, "service"),
            upstream=self.target.url,
        )
        self.request = None
        self._mode = _DONE
        self._close()
        if request is not None:
            request.upstream = None
            request.unregisterProducer()
            request.abort()

    # -- producer for the response direction (the client reads slowly) --

    def pauseProducing(self) -> None:
        if not self._paused and not self._closed:
            self._paused = True
            self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        if self._paused and not self._closed:
            self._paused = False
            self.transport.resumeProducing()

    def stopProducing(self) -> None:
        pass

    # -- failures --

    def clientGone(self, request: Any) -> None:
        """
        The client went away: stop the exchange and drop the connection.
        """
        if self.request is request:
            self.request = None
            self._mode = _DONE
            self._close()

    def _fail(self, failure: UpstreamError, retry: bool) -> None:
        request = self.request
        self.request = None
        self._mode = _DONE
        self._close()
        if request is None:
            return
        request.upstream = None
        if request.body.consumed and self.transport.producer is not None:
            self.transport.unregisterProducer()
        self.pool.onFailure(request, self.target, failure, retry)

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for timer in (self._headerTimer, self._continueTimer, self._flushTimer):
            if timer is not None and timer.active():
                timer.cancel()
        self._headerTimer = self._continueTimer = self._flushTimer = None
        self.pool.forget(self)
        if not self._lost:
            self.transport.abortConnection()

    def connectionLost(self, reason: Failure = Failure(error.ConnectionDone())) -> None:
        wasClosed = self._closed
        self._closed = True
        self._lost = True
        for timer in (self._headerTimer, self._continueTimer, self._flushTimer):
            if timer is not None and timer.active():
                timer.cancel()
        self.pool.forget(self)
        mode = self._mode
        request = self.request
        if request is None or wasClosed:
            return
        if mode == _UNTIL_CLOSE:
            self._closed = False
            self._reusable = False
            self._complete(None)
            self._closed = True
            return
        if mode == _HEAD:
            replay = (
                self.reused
                and not self._gotBytes
                and request.body.length == 0
                and (request.method in _REPLAYABLE or request.requestHeaders.hasHeader(b"idempotency-key") or request.requestHeaders.hasHeader(b"x-idempotency-key"))
            )
            message = reason.getErrorMessage() if not reason.check(error.ConnectionDone) else "connection closed before the response"
            self._fail(UpstreamError(502, message), retry=replay)
            return
        self._brokenBody(reason.getErrorMessage())


def _strip(headers: HeaderMap) -> HeaderMap:
    """
    A response's end-to-end fields: the hop-by-hop ones and those named in
    Connection removed (in place: the parsed head is relayd's own).
    """
    fields = headers._fields
    connection = fields.get(b"connection")
    for name in HOP_BY_HOP.intersection(fields):
        del fields[name]
    if connection is not None:
        for name in tokens(connection):
            fields.pop(name, None)
    return headers


def _ctx(request: Any, name: str) -> str:
    context = getattr(request, "relayd", None)
    return getattr(context, name, "") if context is not None else ""


class _ConnectionFactory(protocol.Factory):
    noisy = False

    def __init__(self, pool: UpstreamPool, target: Target) -> None:
        self.pool = pool
        self.target = target

    def buildProtocol(self, addr: Any) -> UpstreamConnection:
        connection = UpstreamConnection(self.pool, self.target)
        connection.factory = self
        return connection


def _noFailureHandler(request: Any, target: Target, failure: UpstreamError, retry: bool) -> None:
    request.abort()


class UpstreamPool:
    """
    Idle connections per server and serversTransport, most recently used
    first; at most C{maxIdleConnsPerHost} kept, each for C{idleConnTimeout}.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.idle: dict[str, list[UpstreamConnection]] = {}
        self.active: set[UpstreamConnection] = set()
        self.opened = 0
        self._sweeper: task.LoopingCall | None = None
        self._sweepInterval = 1.0
        self.onFailure: Callable[[Any, Target, UpstreamError, bool], None] = _noFailureHandler

    def acquire(self, target: Target) -> UpstreamConnection | None:
        idle = self.idle.get(target.key)
        if idle:
            connection = idle.pop()
            connection.reused = True
            self.active.add(connection)
            return connection
        return None

    def connect(self, target: Target) -> defer.Deferred[UpstreamConnection]:
        """
        A new connection to C{target}, or a failure with an L{UpstreamError}.
        """
        settings = target.settings
        timeout = settings.dialTimeout or 30 * 24 * 3600
        host = target.host
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            endpoint: Any = HostnameEndpoint(self.reactor, host.encode("idna"), target.port, timeout=timeout)
        else:
            cls = TCP6ClientEndpoint if address.version == 6 else TCP4ClientEndpoint
            endpoint = cls(self.reactor, host, target.port, timeout=timeout)
        if target.scheme == "https":
            endpoint = wrapClientTLS(target.tlsCreator, endpoint)
        self.opened += 1
        d = endpoint.connect(_ConnectionFactory(self, target))

        def connected(connection: UpstreamConnection) -> UpstreamConnection:
            self.active.add(connection)
            return connection

        def failed(failure: Failure) -> Failure:
            if failure.check(error.TimeoutError, defer.TimeoutError):
                raise UpstreamError(504, f"dial timeout after {settings.dialTimeout:g}s")
            raise UpstreamError(502, failure.getErrorMessage())

        return d.addCallbacks(connected, failed)

    def release(self, connection: UpstreamConnection) -> None:
        self.active.discard(connection)
        settings = connection.target.settings
        idle = self.idle.setdefault(connection.target.key, [])
        if len(idle) >= settings.idleLimit:
            connection._close()
            return
        connection.idleSince = self.reactor.seconds()
        idle.append(connection)
        if self._sweeper is None and settings.idleConnTimeout:
            self._sweepInterval = max(0.05, min(1.0, settings.idleConnTimeout / 4))
            self._sweeper = task.LoopingCall(self._sweep)
            self._sweeper.clock = self.reactor
            self._sweeper.start(self._sweepInterval, now=False)

    def forget(self, connection: UpstreamConnection) -> None:
        self.active.discard(connection)
        idle = self.idle.get(connection.target.key)
        if idle and connection in idle:
            idle.remove(connection)
            if not idle:
                del self.idle[connection.target.key]

    def idleCount(self, target: Target | None = None) -> int:
        if target is not None:
            return len(self.idle.get(target.key, ()))
        return sum(len(v) for v in self.idle.values())

    def _sweep(self) -> None:
        now = self.reactor.seconds()
        for key, idle in list(self.idle.items()):
            for connection in list(idle):
                timeout = connection.target.settings.idleConnTimeout
                if timeout and now - connection.idleSince >= timeout:
                    connection._close()
        if not self.idle and self._sweeper is not None:
            if self._sweeper.running:
                self._sweeper.stop()
            self._sweeper = None

    def close(self) -> defer.Deferred[None]:
        """
        Close the idle connections and stop the sweeper.
        """
        for idle in list(self.idle.values()):
            for connection in list(idle):
                connection._close()
        self.idle.clear()
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        self._sweeper = None
        return defer.succeed(None)
