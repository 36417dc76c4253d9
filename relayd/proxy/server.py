"""
The client side of the proxy: an HTTP/1.1 server protocol built for relaying.

One L{HTTPChannel} per client connection parses requests (pipelined ones in
turn), streams their bodies to whoever consumes them with backpressure, writes
responses with the framing the client can read (Content-Length, chunked, or
close-delimited for HTTP/1.0), and enforces the entrypoint's limits and
timeouts (maxHeaderBytes, readTimeout, writeTimeout, idleTimeout,
keepAliveMaxRequests/Time). Handlers see an L{HTTPRequest}, which keeps the
subset of Twisted's C{IRequest} that relayd's middlewares use.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
from twisted.internet import defer, protocol, task
from twisted.internet.error import ConnectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from relayd.proxy.wire import (
    ChunkedDecoder,
    HeaderMap,
    WireError,
    bodyLength,
    chunk,
    findHeadEnd,
    httpDate,
    lastChunk,
    parseRequestHead,
    send,
    socketOf,
    statusLine,
    tokens,
)

# Framing of a response toward the client.
_NONE, _LENGTH, _CHUNKED, _CLOSE = range(4)
# Channel states.
_HEAD, _BODY, _WAIT, _CLOSING = range(4)

# Request bodies nobody reads are drained up to this size to keep the
# connection, as Go's server does; beyond it the connection is closed.
_DRAIN_LIMIT = 256 * 1024
# Unread request body kept before reading from the client pauses.
_BODY_BUFFER = 64 * 1024
_PIPELINE_BUFFER = 64 * 1024
_LINGER = 2.0


@attrs.frozen
class ChannelSettings:
    """
    An entrypoint's limits for its connections.
    """

    maxHeaderBytes: int = 1 << 20
    readTimeout: float = 60.0
    writeTimeout: float = 0.0
    idleTimeout: float = 180.0
    keepAliveMaxRequests: int = 0
    keepAliveMaxTime: float = 0.0
    secure: bool = False


class RequestBody:
    """
    The body of a request as it arrives: handed to one consumer with
    C{deliver}, which gets C{bodyData(bytes)} calls then C{bodyEnd(trailers)},
    or C{bodyFailed(reason)} if the client goes away or sends a malformed
    body. Until a consumer is attached, arriving data is kept (reading from
    the client pauses when too much is waiting).
    """

    __slots__ = (
        "channel",
        "length",
        "received",
        "complete",
        "failed",
        "trailers",
        "expectContinue",
        "continueSent",
        "_consumer",
        "_buffered",
        "_bufferedBytes",
        "_discard",
    )

    def __init__(self, channel: HTTPChannel, length: int | None, expectContinue: bool) -> None:
        self.channel = channel
        self.length = length
        self.received = 0
        self.complete = length == 0
        self.failed: Failure | None = None
        self.trailers: HeaderMap | None = None
        self.expectContinue = expectContinue and not self.complete
        self.continueSent = False
        self._consumer: Any = None
        self._buffered: list[bytes] = []
        self._bufferedBytes = 0
        self._discard = False

    @property
    def consumed(self) -> bool:
        return self._consumer is not None

    def deliver(self, consumer: Any) -> None:
        """
        Send the body to C{consumer}, starting with what has already arrived;
        an C{Expect: 100-continue} request gets its 100 now.
        """
        self._consumer = consumer
        if self.expectContinue and not self.continueSent and not self.complete:
            self.continueSent = True
            self.channel.sendInterim(b"HTTP/1.1 100 Continue\r\n\r\n")
        if self._buffered:
            buffered, self._buffered = self._buffered, []
            self._bufferedBytes = 0
            self.channel.resume("body")
            for data in buffered:
                consumer.bodyData(data)
        if self.failed is not None:
            consumer.bodyFailed(self.failed)
        elif self.complete:
            consumer.bodyEnd(self.trailers)

    def collect(self, limit: int) -> defer.Deferred[bytes]:
        """
        The whole body, or a L{BodyTooLarge} failure past C{limit} bytes.
        """
        collector = _Collector(limit)
        self.deliver(collector)
        return collector.deferred

    def pauseProducing(self) -> None:
        """
        Stop reading from the client (the consumer cannot take more now).
        """
        self.channel.pause("consumer")

    def resumeProducing(self) -> None:
        self.channel.resume("consumer")

    def stopProducing(self) -> None:
        self.channel.resume("consumer")

    def _received(self, data: bytes) -> None:
        self.received += len(data)
        if self._discard:
            return
        consumer = self._consumer
        if consumer is not None:
            consumer.bodyData(data)
            return
        self._buffered.append(data)
        self._bufferedBytes += len(data)
        if self._bufferedBytes > _BODY_BUFFER:
            self.channel.pause("body")

    def _completed(self, trailers: HeaderMap | None) -> None:
        self.complete = True
        self.trailers = trailers
        if self._consumer is not None and not self._discard:
            self._consumer.bodyEnd(trailers)

    def _fail(self, reason: Failure) -> None:
        if self.complete or self.failed is not None:
            return
        self.failed = reason
        if self._consumer is not None and not self._discard:
            self._consumer.bodyFailed(reason)

    def _drop(self) -> None:
        self._discard = True
        self._buffered = []
        self._bufferedBytes = 0


class BodyTooLarge(Exception):
    pass


class _Collector:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0
        self.deferred: defer.Deferred[bytes] = defer.Deferred()

    def bodyData(self, data: bytes) -> None:
        if self.deferred.called:
            return
        self.size += len(data)
        if self.size > self.limit:
            self.deferred.errback(BodyTooLarge(self.limit))
            return
        self.parts.append(data)

    def bodyEnd(self, trailers: Any) -> None:
        if not self.deferred.called:
            self.deferred.callback(b"".join(self.parts))

    def bodyFailed(self, reason: Failure) -> None:
        if not self.deferred.called:
            self.deferred.errback(reason)


class HTTPRequest:
    """
    One request on a client connection, and its response.

    Request side: C{method}, C{uri}, C{clientproto}, C{requestHeaders}
    (L{HeaderMap}), C{body} (L{RequestBody}). Response side, as in Twisted:
    C{setResponseCode}, C{responseHeaders}, C{setHeader}, C{write},
    C{finish}, C{notifyFinish}; plus C{writeInformational} for 1xx answers,
    C{abort} to break the connection when an upstream response breaks off,
    and C{registerProducer} so a streaming source is paused while the client
    reads slowly.
    """

    code = 200
    code_message: bytes | None = None
    startedWriting = False
    finished = False
    _disconnected = False
    relayd: Any = None
    upstream: Any = None
    upstreamHead = b""
    upstreamRetried = False
    body: RequestBody

    def __init__(self, channel: HTTPChannel, method: bytes, uri: bytes, version: bytes, headers: HeaderMap) -> None:
        self.channel = channel
        self.method = method
        self.uri = uri
        self.clientproto = version
        self.requestHeaders = headers
        self.responseHeaders = HeaderMap()
        self.keepAlive = True
        self.bytesSent = 0
        self._framing = _NONE
        self._remaining = 0
        self._finishWaiters: list[defer.Deferred[None]] | None = None

    def __repr__(self) -> str:
        return f"<HTTPRequest {self.method!r} {self.uri!r}>"

    # -- what handlers read --

    @property
    def path(self) -> bytes:
        return self.uri.split(b"?", 1)[0]

    def getHeader(self, name: bytes | str) -> Any:
        values = self.requestHeaders.getRawHeaders(name)
        return values[-1] if values else None

    def isSecure(self) -> bool:
        return self.channel.settings.secure

    def getClientAddress(self) -> Any:
        return self.channel.peer

    def getHost(self) -> Any:
        return self.channel.transport.getHost()

    # -- the response --

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:
        if not self.startedWriting:
            self.code = code
            self.code_message = message

    def setHeader(self, name: bytes | str, value: bytes | str) -> None:
        self.responseHeaders.setRawHeaders(name, [value])

    def notifyFinish(self) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        if self.finished:
            d.callback(None)
        elif self._disconnected:
            d.errback(Failure(ConnectionDone("client went away")))
        else:
            if self._finishWaiters is None:
                self._finishWaiters = []
            self._finishWaiters.append(d)
        return d

    def writeInformational(self, code: int, headers: HeaderMap | None = None) -> None:
        """
        Send a 1xx interim response (HTTP/1.1 clients only).
        """
        if self.startedWriting or self.finished or self._disconnected or self.clientproto != b"HTTP/1.1":
            return
        out = [statusLine(code)]
        if headers is not None:
            headers.serialize(out)
        out.append(b"\r\n")
        self.channel.sendInterim(b"".join(out))

    def write(self, data: bytes) -> None:
        if self.finished or self._disconnected:
            return
        if not self.startedWriting:
            self._start(data, False)
            return
        if not data:
            return
        framing = self._framing
        if framing == _LENGTH:
            if len(data) > self._remaining:
                data = data[: self._remaining]
                if not data:
                    return
            self._remaining -= len(data)
            self.bytesSent += len(data)
            self.channel.send([data])
        elif framing == _CHUNKED:
            self.bytesSent += len(data)
            self.channel.send(chunk(data))
        elif framing == _CLOSE:
            self.bytesSent += len(data)
            self.channel.send([data])

    def finish(self, trailers: HeaderMap | None = None) -> None:
        if self.finished or self._disconnected:
            return
        if not self.startedWriting:
            self._start(b"", True)
        elif self._framing == _CHUNKED:
            self.channel.send([lastChunk(trailers)])
        elif self._framing == _LENGTH and self._remaining:
            # Fewer bytes than announced: the client must not wait for more.
            self.keepAlive = False
        self.finished = True
        self.channel.responseFinished(self)
        waiters, self._finishWaiters = self._finishWaiters, None
        for d in waiters or ():
            d.callback(None)

    def abort(self) -> None:
        """
        Break the connection: an upstream response broke off midway and the
        client must see it incomplete.
        """
        if self.finished or self._disconnected:
            return
        self.keepAlive = False
        self.channel.abort()

    def registerProducer(self, producer: Any, streaming: bool = True) -> None:
        transport = self.channel.transport
        if transport.producer is None:
            transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        transport = self.channel.transport
        if transport is not None and transport.producer is not None:
            transport.unregisterProducer()

    def _runHooks(self) -> None:
        context = self.relayd
        if context is not None and context.beforeResponse:
            for hook in reversed(context.beforeResponse):
                hook(self)

    def _start(self, data: bytes, final: bool) -> None:
        self._runHooks()
        self.startedWriting = True
        code = self.code
        headers = self.responseHeaders
        channel = self.channel
        keepAlive = self.keepAlive and channel.keepAliveAllowed(self)
        out = [statusLine(code, self.code_message)]
        if self.method == b"HEAD" or code == 304 or code == 204 or code < 200:
            framing = _NONE
            if code == 204 or code < 200:
                headers.removeHeader(b"content-length")
            headers.removeHeader(b"transfer-encoding")
        else:
            fields = headers._fields
            if b"transfer-encoding" in fields:
                del fields[b"transfer-encoding"]
            lengths = fields.get(b"content-length")
            framing = _CLOSE
            if lengths is not None:
                length = lengths[0]
                if length.isdigit():
                    framing = _LENGTH
                    self._remaining = int(length)
                else:
                    headers.removeHeader(b"content-length")
            if framing != _LENGTH:
                if final:
                    framing = _LENGTH
                    self._remaining = len(data)
                    headers.setRawHeaders(b"content-length", [b"%d" % len(data)])
                elif self.clientproto == b"HTTP/1.1":
                    framing = _CHUNKED
                    headers.setRawHeaders(b"transfer-encoding", [b"chunked"])
                else:
                    keepAlive = False
        self._framing = framing
        self.keepAlive = keepAlive
        if not keepAlive:
            if self.clientproto == b"HTTP/1.1":
                headers.setRawHeaders(b"connection", [b"close"])
        elif self.clientproto == b"HTTP/1.0":
            headers.setRawHeaders(b"connection", [b"keep-alive"])
        fields = headers._fields
        if b"date" not in fields:
            fields[b"date"] = [httpDate()]
        headers.serialize(out)
        out.append(b"\r\n")
        if data:
            if framing == _LENGTH:
                if len(data) > self._remaining:
                    data = data[: self._remaining]
                self._remaining -= len(data)
                out.append(data)
            elif framing == _CHUNKED:
                out.extend(chunk(data))
            elif framing == _CLOSE:
                out.append(data)
            else:
                data = b""
            self.bytesSent += len(data)
        if final and framing == _CHUNKED:
            out.append(lastChunk(None))
        channel.send(out)

    def _lost(self, reason: Failure) -> None:
        self._disconnected = True
        waiters, self._finishWaiters = self._finishWaiters, None
        for d in waiters or ():
            d.errback(reason)
        upstream = self.upstream
        if upstream is not None:
            self.upstream = None
            upstream.clientGone(self)


class HTTPChannel(protocol.Protocol):
    """
    One client connection.
    """

    _log = Logger()

    def __init__(self, site: HTTPSite) -> None:
        self.site = site
        self.settings = site.settings
        self.clock = site.clock
        self.sock: Any = None
        self.peer: Any = None
        self.clientIP = ""
        self.state = _HEAD
        self.request: HTTPRequest | None = None
        self.requests = 0
        self.started = 0.0
        self.readDeadline = 0.0
        self.writeDeadline = 0.0
        self.closing = False
        self._buffer = b""
        self._remaining = 0
        self._decoder: ChunkedDecoder | None = None
        self._paused: set[str] = set()
        self._advancing = False

    # -- connection --

    def connectionMade(self) -> None:
        transport = self.transport
        self.sock = socketOf(transport)
        if self.sock is not None:
            try:
                transport.setTcpNoDelay(True)
            except Exception:
                pass
        self.peer = transport.getPeer()
        self.clientIP = self.site.clientIP(self.peer)
        self.started = now = self.clock.seconds()
        if self.settings.readTimeout:
            self.readDeadline = now + self.settings.readTimeout
        self.site.channels.add(self)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.site.channels.discard(self)
        self.state = _CLOSING
        request = self.request
        self.request = None
        if request is not None:
            request.body._fail(reason)
            if not request.finished:
                request._lost(reason)

    def send(self, pieces: list[bytes]) -> None:
        send(self.transport, self.sock, pieces)

    def sendInterim(self, data: bytes) -> None:
        send(self.transport, self.sock, [data])

    def pause(self, reason: str) -> None:
        if not self._paused:
            self.transport.pauseProducing()
        self._paused.add(reason)

    def resume(self, reason: str) -> None:
        if reason in self._paused:
            self._paused.discard(reason)
            if not self._paused and self.state != _CLOSING:
                self.transport.resumeProducing()

    def abort(self) -> None:
        self.closing = True
        self.state = _CLOSING
        self.transport.abortConnection()

    def close(self) -> None:
        """
        Close now if idle, else after the response in progress (shutdown).
        """
        self.closing = True
        if self.state == _HEAD and not self._buffer and self.request is None:
            self.state = _CLOSING
            self.transport.loseConnection()

    def detach(self) -> bytes:
        """
        Give the connection up to another protocol (a WebSocket upgrade):
        the channel stops reading, timing and counting it, and returns the
        bytes it had read past the current request.
        """
        self.site.channels.discard(self)
        self.state = _CLOSING
        self.closing = True
        self.readDeadline = self.writeDeadline = 0.0
        self.request = None
        data, self._buffer = self._buffer, b""
        if self._paused:
            self._paused.clear()
            self.transport.resumeProducing()
        return data

    # -- timeouts (checked by the site's sweeper) --

    def checkDeadlines(self, now: float) -> None:
        if self.readDeadline and now >= self.readDeadline:
            self.readDeadline = 0.0
            self._readTimedOut()
        elif self.writeDeadline and now >= self.writeDeadline:
            self.writeDeadline = 0.0
            self._log.debug("write timeout: closing connection from {client}", client=self.clientIP)
            self.abort()

    def _readTimedOut(self) -> None:
        state = self.state
        if state == _CLOSING:
            self.transport.abortConnection()
        elif state == _HEAD:
            if self._buffer:
                self._reject(408, "request head not received in time")
            else:
                self.state = _CLOSING
                self.transport.loseConnection()
        elif state == _BODY:
            request = self.request
            self._log.info(
                "readTimeout: request body from {client} not received in time", client=self.clientIP
            )
            if request is not None:
                request.body._fail(Failure(TimeoutError("readTimeout")))
                if not request.startedWriting and not request.finished:
                    request.keepAlive = False
                    _plain(request, 408, b"408 Request Timeout\n")
                    return
            self.abort()

    # -- requests --

    def keepAliveAllowed(self, request: HTTPRequest) -> bool:
        if self.closing or self.site.draining:
            return False
        settings = self.settings
        if settings.keepAliveMaxRequests and self.requests >= settings.keepAliveMaxRequests:
            return False
        if settings.keepAliveMaxTime and self.clock.seconds() - self.started >= settings.keepAliveMaxTime:
            return False
        body = request.body
        if not body.complete:
            if body.expectContinue and not body.continueSent:
                return False
            if body.length is None or body.length - body.received > _DRAIN_LIMIT:
                return False
        return True

    def dataReceived(self, data: bytes) -> None:
        state = self.state
        if state == _BODY:
            self._feedBody(data)
        elif state == _CLOSING:
            return
        else:
            if state == _HEAD and not self._buffer and self.settings.readTimeout and self.request is None:
                self.readDeadline = self.clock.seconds() + self.settings.readTimeout
            self._buffer = self._buffer + data if self._buffer else data
            if state == _WAIT and len(self._buffer) > _PIPELINE_BUFFER:
                self.pause("pipeline")
        self._advance()

    def _advance(self) -> None:
        if self._advancing:
            return
        self._advancing = True
        try:
            while self.state == _HEAD and self._buffer and not self.closing:
                if not self._nextRequest():
                    break
        finally:
            self._advancing = False

    def _nextRequest(self) -> bool:
        buffer = self._buffer
        if buffer[:1] in (b"\r", b"\n"):
            # Empty lines before a request line are ignored (RFC 9112 2.2).
            buffer = buffer.lstrip(b"\r\n")
            self._buffer = buffer
            if not buffer:
                return False
        end, start = findHeadEnd(buffer)
        maxHeaderBytes = self.settings.maxHeaderBytes
        if end < 0:
            if maxHeaderBytes and len(buffer) > maxHeaderBytes:
                self._reject(431, "request header fields too large")
            return False
        if maxHeaderBytes and end > maxHeaderBytes:
            self._reject(431, "request header fields too large")
            return False
        self._buffer = buffer[start:]
        try:
            head = parseRequestHead(buffer[:end])
            length = bodyLength(head.headers, 400)
        except WireError as e:
            self._reject(e.code, e.message)
            return False
        headers = head.headers
        fields = headers._fields
        version = head.version
        connection = fields.get(b"connection")
        if version == b"HTTP/1.1":
            keepAlive = connection is None or b"close" not in tokens(connection)
        else:
            keepAlive = connection is not None and b"keep-alive" in tokens(connection)
        expect = fields.get(b"expect")
        expectContinue = False
        if expect is not None and version == b"HTTP/1.1":
            if expect[0].lower() != b"100-continue":
                self._reject(417, "unsupported expectation")
                return False
            expectContinue = True
        request = HTTPRequest(self, head.method, head.target, version, headers)
        request.keepAlive = keepAlive
        request.body = RequestBody(self, length, expectContinue)
        self.requests += 1
        self.request = request
        if length == 0:
            self.state = _WAIT
            self.readDeadline = 0.0
        else:
            self.state = _BODY
            self._remaining = length or 0
            self._decoder = None if length is not None else ChunkedDecoder(self._bodyData, self._bodyEnd, 400)
        if self.settings.writeTimeout:
            self.writeDeadline = self.clock.seconds() + self.settings.writeTimeout
        try:
            self.site.handle(request)
        except Exception:
            self._log.failure("unhandled error answering {method} {uri}", method=head.method, uri=head.target)
            if not request.startedWriting:
                request.keepAlive = False
                _plain(request, 500, b"500 Internal Server Error\n")
            else:
                request.abort()
        if self.state == _BODY and self._buffer:
            data, self._buffer = self._buffer, b""
            self._feedBody(data)
        return True

    def _feedBody(self, data: bytes) -> None:
        request = self.request
        assert request is not None
        decoder = self._decoder
        if decoder is None:
            remaining = self._remaining
            if len(data) <= remaining:
                self._remaining = remaining - len(data)
                request.body._received(data)
                if not self._remaining:
                    self._bodyEnd(None, b"")
            else:
                request.body._received(data[:remaining])
                self._remaining = 0
                self._bodyEnd(None, data[remaining:])
            return
        try:
            decoder.feed(data)
        except WireError as e:
            request.body._fail(Failure(e))
            if not request.startedWriting:
                request.keepAlive = False
                self.state = _WAIT
                _plain(request, e.code, b"%d Bad Request: %s\n" % (e.code, e.message.encode()))
            else:
                self.abort()

    def _bodyData(self, data: bytes) -> None:
        request = self.request
        if request is not None:
            # (None once an answer such as 413 finished the request while the
            # rest of the same read is still being decoded.)
            request.body._received(data)

    def _bodyEnd(self, trailers: HeaderMap | None, rest: bytes) -> None:
        request = self.request
        self._decoder = None
        self.readDeadline = 0.0
        if rest:
            self._buffer = rest + self._buffer if self._buffer else rest
        if request is None:
            return
        if request.finished:
            # The answer went out first; the body has now been drained.
            self.state = _WAIT
            request.body._completed(trailers)
            self._afterResponse(request)
        else:
            self.state = _WAIT
            request.body._completed(trailers)

    def responseFinished(self, request: HTTPRequest) -> None:
        self.writeDeadline = 0.0
        if self.state == _BODY and request.keepAlive and self.state != _CLOSING:
            # Drain what is left of a small body nobody read, then go on.
            request.body._drop()
            self.resume("body")
            return
        self._afterResponse(request)

    def _afterResponse(self, request: HTTPRequest) -> None:
        if self.request is request:
            self.request = None
        request.unregisterProducer()
        if not request.keepAlive or self.closing or self.state == _CLOSING:
            self._closeAfterResponse(request)
            return
        self.state = _HEAD
        if self._paused:
            # Whatever paused reading belonged to the request just answered.
            self._paused.clear()
            self.transport.resumeProducing()
        if self.settings.idleTimeout:
            self.readDeadline = self.clock.seconds() + self.settings.idleTimeout
        if self._buffer:
            if self.settings.readTimeout:
                self.readDeadline = self.clock.seconds() + self.settings.readTimeout
            self._advance()

    def _closeAfterResponse(self, request: HTTPRequest) -> None:
        self.state = _CLOSING
        self._paused.clear()
        if not request.body.complete:
            # Lingering close: stop writing, keep reading for a moment so the
            # client's unread data does not reset the connection before it has
            # read the answer.
            try:
                self.transport.resumeProducing()
                self.transport.loseWriteConnection()
            except Exception:
                self.transport.loseConnection()
                return
            self.readDeadline = self.clock.seconds() + _LINGER
        else:
            self.transport.loseConnection()

    def _reject(self, code: int, message: str) -> None:
        """
        Answer a request that could not be read, then close.
        """
        self._log.debug("{code} to {client}: {message}", code=code, client=self.clientIP, message=message)
        self._buffer = b""
        self.state = _CLOSING
        self.closing = True
        body = b"%d %s: %s\n" % (code, statusLine(code)[13:-2], message.encode())
        head = statusLine(code) + (
            b"Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        self.send([head, body])
        self.transport.loseConnection()


def _plain(request: HTTPRequest, code: int, body: bytes) -> None:
    request.setResponseCode(code)
    request.responseHeaders.setRawHeaders(b"content-type", [b"text/plain; charset=utf-8"])
    request.responseHeaders.setRawHeaders(b"content-length", [b"%d" % len(body)])
    request.write(body)
    request.finish()


class HTTPSite(protocol.Factory):
    """
    Makes L{HTTPChannel}s for one entrypoint; C{handle(request)} answers each
    request. Runs one sweeper for every connection's timeouts instead of a
    timer per request.
    """

    noisy = False

    def __init__(
        self,
        handle: Callable[[HTTPRequest], None],
        settings: ChannelSettings,
        clock: Any,
        clientIP: Callable[[Any], str] = lambda address: getattr(address, "host", ""),
    ) -> None:
        self.handle = handle
        self.settings = settings
        self.clock = clock
        self.clientIP = clientIP
        self.channels: set[Any] = set()
        # For HTTP/2 connections (entryPoints.<name>.http2.maxConcurrentStreams).
        self.maxConcurrentStreams = 250
        # Connections upgraded to another protocol (WebSocket relays), which
        # shutdown closes after graceTimeOut.
        self.tunnels: set[Any] = set()
        self.draining = False
        timeouts = [t for t in (settings.readTimeout, settings.writeTimeout, settings.idleTimeout) if t]
        self.sweepInterval = max(0.05, min([1.0] + [t / 4 for t in timeouts]))
        self._sweeper: task.LoopingCall | None = None

    def buildProtocol(self, addr: Any) -> HTTPChannel:
        return HTTPChannel(self)

    def startFactory(self) -> None:
        if self._sweeper is None:
            self._sweeper = task.LoopingCall(self._sweep)
            self._sweeper.clock = self.clock
            self._sweeper.start(self.sweepInterval, now=False)

    def stopFactory(self) -> None:
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        self._sweeper = None

    def _sweep(self) -> None:
        now = self.clock.seconds()
        for channel in list(self.channels):
            if channel.readDeadline or channel.writeDeadline:
                channel.checkDeadlines(now)

    def drain(self) -> None:
        """
        Stop keeping connections alive: idle ones close now, busy ones after
        their response.
        """
        self.draining = True
        for channel in list(self.channels):
            channel.close()

    def abortAll(self) -> None:
        for channel in list(self.channels):
            channel.abort()
