"""
HTTP/2 toward clients, on TLS connections that negotiated C{h2} by ALPN.

One L{H2Channel} per connection runs the C{h2} state machine; every stream
becomes an L{H2Request}, which is an L{HTTPRequest} to routers, middlewares
and the upstream code, so routing, middlewares and proxying are exactly those
of HTTP/1.1 (servers are still spoken to over HTTP/1.1).

Flow control is the backpressure: a stream's request body is acknowledged
(its window reopened) only as the upstream side takes it, and response data
waits for the client's window, pausing the upstream connection meanwhile.
"""

from __future__ import annotations

from typing import Any

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import FlowControlError, H2Error, ProtocolError, StreamClosedError
from h2.settings import SettingCodes
from twisted.internet import protocol
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.logger import Logger
from twisted.python.failure import Failure

from relayd.proxy.server import HTTPRequest, RequestBody, _plain
from relayd.proxy.wire import HeaderMap, httpDate

# Response fields HTTP/2 forbids (RFC 9113, 8.2.2).
_CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})
# Unacknowledged request body a stream may hold before its window stays
# closed until the upstream side takes it.
_HOLD = 64 * 1024
_MAX_FRAME = 16384


class H2Stream:
    """
    What an L{H2Request} and its L{RequestBody} see as their channel: one
    stream of an L{H2Channel}.
    """

    def __init__(self, connection: H2Channel, streamID: int) -> None:
        self.connection = connection
        self.streamID = streamID
        self.settings = connection.site.settings
        self.peer = connection.peer
        self.clientIP = connection.clientIP
        self.site = connection.site
        self.transport = connection.transport
        self.request: H2Request | None = None
        self._paused: set[str] = set()
        self._unacknowledged = 0

    # -- the request body --

    def received(self, data: bytes, flowControlled: int) -> None:
        request = self.request
        if request is None:
            self.connection.acknowledge(self.streamID, flowControlled)
            return
        request.body._received(data)
        if self._paused:
            self._unacknowledged += flowControlled
        else:
            self.connection.acknowledge(self.streamID, flowControlled)

    def pause(self, reason: str) -> None:
        self._paused.add(reason)

    def resume(self, reason: str) -> None:
        self._paused.discard(reason)
        if not self._paused and self._unacknowledged:
            held, self._unacknowledged = self._unacknowledged, 0
            self.connection.acknowledge(self.streamID, held)

    def sendInterim(self, data: bytes) -> None:
        # Only "100 Continue" is sent this way.
        self.connection.sendHeaders(self.streamID, [(b":status", b"100")], endStream=False)

    # -- what HTTPRequest asks of its channel --

    def keepAliveAllowed(self, request: Any) -> bool:
        return True

    def responseFinished(self, request: Any) -> None:
        self.connection.streamDone(self.streamID)

    def abort(self) -> None:
        self.connection.reset(self.streamID, ErrorCodes.INTERNAL_ERROR)


class H2Request(HTTPRequest):
    """
    One HTTP/2 stream as an L{HTTPRequest}: the response goes out as HEADERS
    and DATA frames within the client's flow-control windows.
    """

    def __init__(self, stream: H2Stream, method: bytes, uri: bytes, headers: HeaderMap) -> None:
        super().__init__(stream, method, uri, b"HTTP/2.0", headers)  # type: ignore[arg-type]
        self.stream = stream
        self.producer: Any = None
        self._producerPaused = False
        self._pending: list[bytes] = []
        self._pendingBytes = 0
        self._ending = False
        self._trailers: HeaderMap | None = None

    def getHost(self) -> Any:
        return self.stream.connection.transport.getHost()

    def writeInformational(self, code: int, headers: HeaderMap | None = None) -> None:
        if self.startedWriting or self.finished or self._disconnected or code == 101:
            return
        fields = [(b":status", b"%d" % code)]
        if headers is not None:
            fields.extend(_fields(headers))
        self.stream.connection.sendHeaders(self.stream.streamID, fields, endStream=False)

    def write(self, data: bytes) -> None:
        if self.finished or self._disconnected:
            return
        if not self.startedWriting:
            self._begin(final=False)
        if data and self.method != b"HEAD":
            self.bytesSent += len(data)
            self._pending.append(data)
            self._pendingBytes += len(data)
            self.stream.connection.flush(self)

    def finish(self, trailers: HeaderMap | None = None) -> None:
        if self.finished or self._disconnected:
            return
        if not self.startedWriting:
            self._begin(final=True)
        else:
            self._ending = True
            self._trailers = trailers
            self.stream.connection.flush(self)
        self.finished = True
        waiters, self._finishWaiters = self._finishWaiters, None
        for d in waiters or ():
            d.callback(None)

    def _begin(self, final: bool) -> None:
        self._runHooks()
        self.startedWriting = True
        headers = self.responseHeaders
        fieldsMap = headers._fields
        for name in _CONNECTION_SPECIFIC.intersection(fieldsMap):
            del fieldsMap[name]
        if b"date" not in fieldsMap:
            fieldsMap[b"date"] = [httpDate()]
        code = self.code
        if final and code not in (204, 304) and code >= 200 and b"content-length" not in fieldsMap and self.method != b"HEAD":
            fieldsMap[b"content-length"] = [b"0"]
        fields = [(b":status", b"%d" % code)]
        fields.extend(_fields(headers))
        self.stream.connection.sendHeaders(self.stream.streamID, fields, endStream=final)
        if final:
            self.stream.connection.streamDone(self.stream.streamID)

    def abort(self) -> None:
        if self.finished or self._disconnected:
            return
        self.stream.abort()

    def registerProducer(self, producer: Any, streaming: bool = True) -> None:
        self.producer = producer
        if self._pendingBytes > _HOLD:
            self._pauseProducer()

    def unregisterProducer(self) -> None:
        self.producer = None
        self._producerPaused = False

    def _pauseProducer(self) -> None:
        if self.producer is not None and not self._producerPaused:
            self._producerPaused = True
            self.producer.pauseProducing()

    def _resumeProducer(self) -> None:
        if self.producer is not None and self._producerPaused:
            self._producerPaused = False
            self.producer.resumeProducing()


def _fields(headers: HeaderMap) -> list[tuple[bytes, bytes]]:
    out = []
    for name, values in headers._fields.items():
        if name in _CONNECTION_SPECIFIC:
            continue
        for value in values:
            out.append((name, value))
    return out


class H2Channel(protocol.Protocol):
    """
    One HTTP/2 connection from a client.
    """

    _log = Logger()

    def __init__(self, site: Any) -> None:
        self.site = site
        self.streams: dict[int, H2Stream] = {}
        self.peer: Any = None
        self.clientIP = ""
        self.closed = False
        self.closing = False
        self._waiting: dict[int, H2Request] = {}
        # Inbound headers are checked (a client's malformed fields are a
        # protocol error); outbound ones are relayd's own, already clean.
        config = H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=True,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.h2 = H2Connection(config=config)

    # -- connection --

    def connectionMade(self) -> None:
        self.peer = self.transport.getPeer()
        self.clientIP = self.site.clientIP(self.peer)
        self.site.channels.add(self)
        self._idle()
        h2 = self.h2
        h2.initiate_connection()
        h2.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: self.site.maxConcurrentStreams})
        self._send()

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.closed = True
        self.site.channels.discard(self)
        for stream in list(self.streams.values()):
            self._streamLost(stream, reason)
        self.streams.clear()
        self._waiting.clear()

    def dataReceived(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            events = self.h2.receive_data(data)
        except (ProtocolError, FlowControlError) as e:
            self._log.debug("HTTP/2 protocol error from {client}: {error}", client=self.clientIP, error=e)
            self._send()
            self.transport.loseConnection()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                self._request(event)
            elif isinstance(event, DataReceived):
                stream = self.streams.get(event.stream_id)
                if stream is None:
                    self.acknowledge(event.stream_id, event.flow_controlled_length)
                else:
                    stream.received(event.data, event.flow_controlled_length)
            elif isinstance(event, TrailersReceived):
                stream = self.streams.get(event.stream_id)
                if stream is not None and stream.request is not None:
                    stream.request.body.trailers = HeaderMap({k.lower(): [v] for k, v in event.headers})
            elif isinstance(event, StreamEnded):
                stream = self.streams.get(event.stream_id)
                if stream is not None and stream.request is not None:
                    body = stream.request.body
                    body._completed(body.trailers)
            elif isinstance(event, StreamReset):
                stream = self.streams.pop(event.stream_id, None)
                if stream is not None:
                    self._streamLost(stream, Failure(ConnectionLost("stream reset by the client")))
            elif isinstance(event, WindowUpdated):
                if event.stream_id == 0:
                    for request in list(self._waiting.values()):
                        self.flush(request)
                else:
                    request = self._waiting.get(event.stream_id)
                    if request is not None:
                        self.flush(request)
            elif isinstance(event, ConnectionTerminated):
                self._send()
                self.transport.loseConnection()
                return
        self._send()

    def _send(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.closed:
            self.transport.write(data)

    # -- streams --

    def _request(self, event: RequestReceived) -> None:
        streamID = event.stream_id
        pseudo: dict[bytes, bytes] = {}
        headers = HeaderMap()
        fields = headers._fields
        for name, value in event.headers:
            if name[:1] == b":":
                pseudo[name] = value
            elif name == b"cookie" and b"cookie" in fields:
                # HTTP/2 may split cookies into several fields (RFC 9113, 8.2.3).
                fields[b"cookie"][0] += b"; " + value
            else:
                fields.setdefault(name, []).append(value)
        method = pseudo.get(b":method", b"GET")
        path = pseudo.get(b":path", b"/")
        authority = pseudo.get(b":authority")
        if authority is not None and b"host" not in fields:
            fields[b"host"] = [authority]
        stream = H2Stream(self, streamID)
        self.streams[streamID] = stream
        self.readDeadline = 0.0
        request = H2Request(stream, method, path, headers)
        stream.request = request
        lengths = fields.get(b"content-length")
        if event.stream_ended is not None:
            length: int | None = 0
        elif lengths is not None and lengths[0].isdigit():
            length = int(lengths[0])
        else:
            length = None
        expect = fields.get(b"expect")
        request.body = RequestBody(stream, length, expect is not None and expect[0].lower() == b"100-continue")  # type: ignore[arg-type]
        if method == b"CONNECT":
            _plain(request, 405, b"405 Method Not Allowed\n")
            return
        try:
            self.site.handle(request)
        except Exception:
            self._log.failure("unhandled error answering {method} {uri}", method=method, uri=path)
            if not request.startedWriting:
                _plain(request, 500, b"500 Internal Server Error\n")
            else:
                request.abort()

    def sendHeaders(self, streamID: int, fields: list[tuple[bytes, bytes]], endStream: bool) -> None:
        if self.closed:
            return
        try:
            self.h2.send_headers(streamID, fields, end_stream=endStream)
        except (StreamClosedError, H2Error):
            return
        self._send()

    def flush(self, request: H2Request) -> None:
        """
        Send what the windows allow of C{request}'s pending data (and its end
        when all is out); pause its producer while data waits.
        """
        if self.closed:
            return
        streamID = request.stream.streamID
        h2 = self.h2
        try:
            while request._pending:
                window = min(h2.local_flow_control_window(streamID), h2.max_outbound_frame_size)
                if window <= 0:
                    break
                data = request._pending[0]
                if len(data) > window:
                    chunk, request._pending[0] = data[:window], data[window:]
                else:
                    chunk = request._pending.pop(0)
                request._pendingBytes -= len(chunk)
                h2.send_data(streamID, chunk)
            if not request._pending and request._ending:
                request._ending = False
                trailers = request._trailers
                if trailers:
                    h2.send_headers(streamID, _fields(trailers), end_stream=True)
                else:
                    h2.end_stream(streamID)
                self.streamDone(streamID)
        except (StreamClosedError, H2Error):
            request._pending.clear()
            request._pendingBytes = 0
        if request._pending:
            self._waiting[streamID] = request
            if request._pendingBytes > _HOLD:
                request._pauseProducer()
        else:
            self._waiting.pop(streamID, None)
            request._resumeProducer()
        self._send()

    def acknowledge(self, streamID: int, length: int) -> None:
        if self.closed or not length:
            return
        try:
            self.h2.acknowledge_received_data(length, streamID)
        except (StreamClosedError, H2Error):
            return
        self._send()

    def streamDone(self, streamID: int) -> None:
        stream = self.streams.get(streamID)
        if stream is not None and (stream.request is None or not stream.request._pending):
            request = stream.request
            if request is not None and not request.body.complete:
                # The answer went out before the body came in: stop it.
                request.body._drop()
                self.reset(streamID, ErrorCodes.NO_ERROR)
                return
            self.streams.pop(streamID, None)
            if not self.streams:
                if self.closing and not self.closed:
                    self.transport.loseConnection()
                else:
                    self._idle()

    def reset(self, streamID: int, code: ErrorCodes) -> None:
        stream = self.streams.pop(streamID, None)
        self._waiting.pop(streamID, None)
        if not self.closed:
            try:
                self.h2.reset_stream(streamID, error_code=code)
            except (StreamClosedError, H2Error):
                pass
            self._send()
        if stream is not None and stream.request is not None and not stream.request.finished:
            self._streamLost(stream, Failure(ConnectionLost("stream reset")))

    def _streamLost(self, stream: H2Stream, reason: Failure) -> None:
        request = stream.request
        self._waiting.pop(stream.streamID, None)
        if request is None:
            return
        request.body._fail(reason)
        if not request.finished:
            request._lost(reason)

    # -- what the entrypoint's shutdown uses --

    def close(self) -> None:
        """
        Shutdown: tell the client no new streams will be taken (GOAWAY) and
        close once the streams in flight are done.
        """
        if self.closed:
            return
        self.closing = True
        try:
            self.h2.close_connection()
        except H2Error:
            pass
        self._send()
        if not self.streams:
            self.transport.loseConnection()

    def abort(self) -> None:
        self.closed = True
        self.transport.abortConnection()

    # -- timeouts (checked by the site's sweeper) --

    readDeadline = 0.0
    writeDeadline = 0.0

    def _idle(self) -> None:
        timeout = self.site.settings.idleTimeout
        if timeout:
            self.readDeadline = self.site.clock.seconds() + timeout

    def checkDeadlines(self, now: float) -> None:
        """
        A connection without streams for the entrypoint's idleTimeout is
        closed (GOAWAY first).
        """
        if self.readDeadline and now >= self.readDeadline:
            self.readDeadline = 0.0
            if not self.streams:
                self.close()
                self.transport.loseConnection()
