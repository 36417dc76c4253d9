"""
WebSocket relaying, with autobahn on both legs.

A request carrying C{Upgrade: websocket} is routed like any other: routers,
middlewares (path rewrites, auth, headers) and services (sticky cookies,
health) all apply. Where a plain request would be forwarded, L{WebSocketRelayer}
takes over:

 1. It checks the client's handshake (bad ones get 400, or 426 for an
    unknown version) before anything is sent upstream.
 2. It opens a new connection to the chosen server (the pool's dialer, so
    dial timeouts, https verification and client certificates are those of
    HTTP) and sends relayd's own handshake: the forwarded request head with
    the client's subprotocol offers, Origin, Cookie, Authorization and
    X-Forwarded-* fields, the rewritten path and query, a fresh key, and a
    permessage-deflate offer when the client made one. The answer is read by
    the HTTP upstream code, so a refused or silent server gives 502 or 504 and
    any answer but 101 goes back to the client as it came.
 3. On 101 the server's connection is handed to an autobahn client protocol
    (L{BackendLeg}), which checks the handshake (accept key, extensions,
    subprotocol). Only then is the client's connection taken from the HTTP
    channel and handed to an autobahn server protocol (L{ClientLeg}), which
    accepts the client's handshake with the server's subprotocol and the
    server's and middlewares' response fields (sticky cookie included).
 4. Messages are relayed frame by frame: a message that fits in one frame and
    is under 64 KiB goes out as one frame; larger or fragmented ones are
    streamed as they arrive, never held whole. Pings are relayed end to end
    (and so are their pongs); close frames are relayed with their code and
    reason, and each leg's closing handshake waits for the other's. A leg
    whose TCP connection breaks breaks the other one too. Compression,
    masking and size limits (close 1009) are per leg.
 5. Backpressure: a leg whose socket buffer fills pauses reading on the other
    leg, so memory stays bounded whatever the sizes.

Open relays belong to no configuration generation: they survive reloads and
the removal of their router. Shutdown closes them with 1001 (see
L{relayd.entrypoints.EntryPointService}).
"""

from __future__ import annotations

import base64
import binascii
import os
from random import getrandbits
from typing import Any

import attrs
from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)
from autobahn.websocket.protocol import TrafficStats, WebSocketProtocol
from autobahn.websocket.xormasker import create_xor_masker
from twisted.internet import task
from twisted.logger import Logger

from relayd.proxy.responses import plainResponse
from relayd.proxy.upstream import HOP_BY_HOP, Target, UpstreamConnection, UpstreamError
from relayd.proxy.wire import HeaderMap, WireError, findHeadEnd, parseResponseHead, send, socketOf, tokens

__all__ = ["WebSocketRelayer", "WebSocketSettings", "isWebSocketUpgrade"]

_OPEN = WebSocketProtocol.STATE_OPEN
_GROUND = WebSocketProtocol.SEND_STATE_GROUND
_CLOSING = WebSocketProtocol.STATE_CLOSING
_CLOSED = WebSocketProtocol.STATE_CLOSED
# A message under this size that arrives in one frame is sent as one frame;
# beyond it (or once a message is fragmented) data is streamed as it comes.
_STREAM_THRESHOLD = 64 * 1024
_GOING_AWAY = 1001
# Close codes that may not appear in a close frame.
_NOT_SENDABLE = frozenset({1005, 1006, 1015})
# Fields of a server's 101 that autobahn writes itself toward the client.
_HANDSHAKE_FIELDS = HOP_BY_HOP | {
    b"sec-websocket-accept",
    b"sec-websocket-extensions",
    b"sec-websocket-protocol",
    b"content-length",
}


@attrs.frozen
class WebSocketSettings:
    """
    The static C{websocket} section, in seconds and bytes.
    """

    maxMessageSize: int = 0
    maxFrameSize: int = 0
    idleTimeout: float = 0.0
    pingInterval: float = 0.0
    pingTimeout: float = 0.0
    compression: bool = True
    closeTimeout: float = 5.0

    @classmethod
    def fromStatic(cls, static: Any) -> WebSocketSettings:
        section = getattr(static, "websocket", None)
        if section is None:
            return cls()
        return cls(
            maxMessageSize=section.maxMessageSize,
            maxFrameSize=section.maxFrameSize,
            idleTimeout=float(section.idleTimeout),
            pingInterval=float(section.pingInterval),
            pingTimeout=float(section.pingTimeout),
            compression=section.compression,
            closeTimeout=float(section.closeTimeout),
        )


def isWebSocketUpgrade(request: Any) -> bool:
    """
    Whether C{request} asks to switch to the WebSocket protocol.
    """
    fields = request.requestHeaders._fields
    upgrade = fields.get(b"upgrade")
    if upgrade is None:
        return False
    connection = fields.get(b"connection")
    return connection is not None and b"upgrade" in tokens(connection) and b"websocket" in tokens(upgrade)


def handshakeProblem(request: Any) -> tuple[int, str] | None:
    """
    What is wrong with a client's opening handshake, as (status, message),
    or C{None} when it is acceptable (RFC 6455, section 4.2.1).
    """
    if request.method != b"GET":
        return 400, "a WebSocket handshake must use GET"
    if request.clientproto != b"HTTP/1.1":
        return 400, "a WebSocket handshake needs HTTP/1.1"
    fields = request.requestHeaders._fields
    version = fields.get(b"sec-websocket-version")
    if version is None or len(version) != 1 or version[0].strip() != b"13":
        return 426, "unsupported Sec-WebSocket-Version (relayd speaks 13)"
    keys = fields.get(b"sec-websocket-key")
    if keys is None or len(keys) != 1:
        return 400, "a WebSocket handshake needs exactly one Sec-WebSocket-Key"
    try:
        decoded = base64.b64decode(keys[0].strip(), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) != 16:
        return 400, "Sec-WebSocket-Key is not 16 bytes in base64"
    return None


def _offeredProtocols(request: Any) -> list[str]:
    values = request.requestHeaders._fields.get(b"sec-websocket-protocol") or ()
    out: list[str] = []
    for value in values:
        for token in value.split(b","):
            token = token.strip()
            if token:
                out.append(token.decode("latin-1"))
    return out


def _offersDeflate(request: Any) -> bool:
    for value in request.requestHeaders._fields.get(b"sec-websocket-extensions") or ():
        for extension in value.split(b","):
            if extension.split(b";", 1)[0].strip().lower() == b"permessage-deflate":
                return True
    return False


def _adopt(transport: Any, protocol: Any) -> None:
    """
    Make C{protocol} the receiver of C{transport}'s events (TCP, or TLS over
    TCP), then connect it.
    """
    if hasattr(transport, "wrappedProtocol"):
        transport.wrappedProtocol = protocol
    else:
        transport.protocol = protocol
    protocol.makeConnection(transport)


@attrs.define
class WebSocketStats:
    """
    Counters over all relayed WebSocket connections, kept for metrics:
    connections opened and closed, and messages and payload bytes per
    direction ("in": client to server, "out": server to client).
    """

    opened: int = 0
    closed: int = 0
    messagesIn: int = 0
    messagesOut: int = 0
    bytesIn: int = 0
    bytesOut: int = 0
    seconds: float = 0.0


class _Pauser:
    """
    The producer a leg's transport pauses when its write buffer is full: it
    stops reading from the other leg.
    """

    def __init__(self, source: Any) -> None:
        self.source = source

    def pauseProducing(self) -> None:
        transport = self.source.transport
        if transport is not None and self.source.state != _CLOSED:
            transport.pauseProducing()

    def resumeProducing(self) -> None:
        transport = self.source.transport
        if transport is not None and self.source.state != _CLOSED:
            transport.resumeProducing()

    def stopProducing(self) -> None:
        pass


# autobahn keeps traffic statistics per connection; relayd counts what it
# needs itself (L{Relay.messages}, L{Relay.bytes}), so every leg shares one.
_SHARED_TRAFFIC_STATS = TrafficStats()
# Handshake leftovers autobahn keeps on each connection for its whole life.
_HANDSHAKE_LEFTOVERS = (
    "http_headers",
    "http_request_data",
    "http_response_data",
    "http_status_line",
    "http_request_uri",
    "http_request_params",
    "websocket_extensions",
)


def _xor(payload: bytes, key: bytes, length: int) -> bytes:
    """
    C{payload} masked (or unmasked) with the 4-byte C{key}: as one integer
    XOR below 1 KiB, where making autobahn's C masker costs more than the
    work, and with that masker above.
    """
    if length < 1024:
        stream = key * ((length >> 2) + 1)
        return (int.from_bytes(payload, "big") ^ int.from_bytes(stream[:length], "big")).to_bytes(length, "big")
    return create_xor_masker(key, length).process(payload)


class _Leg:
    """
    What both legs share: relaying messages, pings and closes to the other
    leg (C{other}).
    """

    relay: Relay
    other: Any = None
    _sock: Any = None
    _binary = False
    _parts: list[bytes]
    _partBytes = 0
    _streaming = False
    _ownPong = False
    _direction = 0
    # The fast path (see dataReceived): on once both legs are open; whether
    # this leg's incoming frames are masked (client to relayd) and whether
    # frames it sends must be (relayd to server); the largest frame it takes.
    _fast = False
    _masked = 0
    _maskOut = False
    _fastLimit = 0

    def trim(self) -> None:
        """
        Free what an open leg no longer needs: about 5 KB per relayed
        WebSocket, which is a quarter of its cost with 10,000 idle ones.
        """
        values = self.__dict__
        for name in _HANDSHAKE_LEFTOVERS:
            if name in values:
                values[name] = None
        # relayd never queues chopped or synchronous writes (see sendData).
        self.send_queue = ()
        self.utf8validator = None
        self.trafficStats = _SHARED_TRAFFIC_STATS
        limits = [0xFFFF] + [n for n in (self.maxFramePayloadSize, self.maxMessagePayloadSize) if n > 0]
        self._fastLimit = min(limits)
        self._fast = True

    # -- receiving: whole small messages bypass autobahn's frame machinery --

    def dataReceived(self, data: bytes) -> None:
        """
        Relay complete, unfragmented, uncompressed text and binary frames of
        up to 64 KiB straight from the read buffer (unmasking and re-masking
        as the legs need); the first anything else (control frames,
        fragments, compressed or large frames, a partial frame) and all that
        follows go to autobahn as usual. This is safe only between messages,
        when autobahn holds no partial frame and the other leg is not
        streaming a message, which is checked first.
        """
        if self._fast and not self.data and self.current_frame is None and not self.inside_message and self.state == _OPEN:
            other = self.other
            if other is not None and other.state == _OPEN and other.send_state == _GROUND:
                data = self._relayWhole(data, other)
                if not data:
                    return
        WebSocketProtocol._dataReceived(self, data)

    def _relayWhole(self, data: bytes, other: Any) -> bytes:
        position = 0
        end = len(data)
        masked = self._masked
        maskOut = other._maskOut
        limit = self._fastLimit
        out: list[bytes] = []
        count = total = 0
        while end - position >= 2:
            first = data[position]
            if first != 0x81 and first != 0x82:
                break
            second = data[position + 1]
            if second & 0x80 != masked:
                break
            length = second & 0x7F
            head = position + 2
            if length == 126:
                if end - head < 2:
                    break
                length = (data[head] << 8) | data[head + 1]
                head += 2
            elif length == 127:
                break
            if length > limit:
                break
            start = head + 4 if masked else head
            if end < start + length:
                break
            payload = data[start : start + length]
            if masked and length:
                payload = _xor(payload, data[head:start], length)
            if maskOut:
                key = getrandbits(32).to_bytes(4, "big")
                if length:
                    payload = _xor(payload, key, length)
                if length < 126:
                    out.append(bytes((first, 0x80 | length)) + key)
                else:
                    out.append(bytes((first, 0xFE, length >> 8, length & 0xFF)) + key)
            elif length < 126:
                out.append(bytes((first, length)))
            else:
                out.append(bytes((first, 126, length >> 8, length & 0xFF)))
            out.append(payload)
            position = start + length
            count += 1
            total += length
        if count:
            send(other.transport, other._sock, out)
            relay = self.relay
            relay.messages[self._direction] += count
            relay.bytes[self._direction] += total
            relay.active = True
            if self.autoPingTimeoutCall is not None and self.autoPingRestartOnAnyTraffic:
                self._cancelAutoPingTimeoutCall()
        return data[position:] if position else data

    # -- sending: straight to the socket when nothing is queued --

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        if chopsize or sync or self.send_queue:
            WebSocketProtocol.sendData(self, data, sync, chopsize)  # type: ignore[arg-type]
            return
        send(self.transport, self._sock, [data])

    # -- messages --

    def onMessageBegin(self, isBinary: bool) -> None:
        self.message_data_total_length = 0
        self._binary = isBinary
        self._parts = []
        self._partBytes = 0
        self._streaming = False
        self.relay.active = True

    def onMessageFrameData(self, payload: bytes) -> None:
        if self.failedByMe:
            return
        self._parts.append(payload)
        self._partBytes += len(payload)
        if self._partBytes >= _STREAM_THRESHOLD:
            self._flush()

    def onMessageFrameEnd(self) -> None:
        self.frame_data = None
        if self.failedByMe:
            return
        if not self.current_frame.fin and self._parts:
            # A fragment: pass it on before the next one arrives.
            self._flush()

    def onMessageEnd(self) -> None:
        if self.failedByMe:
            return
        other = self.other
        self.relay.counted(self._direction, self.message_data_total_length)
        if other is None or other.state != _OPEN:
            return
        parts = self._parts
        if not self._streaming:
            payload = parts[0] if len(parts) == 1 else b"".join(parts)
            other.sendMessage(payload, self._binary)
        else:
            if parts:
                other.sendMessageFrame(b"".join(parts))
            other.endMessage()
        self._parts = []
        self._partBytes = 0

    def _flush(self) -> None:
        other = self.other
        parts = self._parts
        self._parts = []
        self._partBytes = 0
        if other is None or other.state != _OPEN:
            return
        if not self._streaming:
            self._streaming = True
            other.beginMessage(self._binary)
        other.sendMessageFrame(parts[0] if len(parts) == 1 else b"".join(parts))

    # -- control frames --

    def onPing(self, payload: bytes) -> None:
        other = self.other
        if other is not None and other.state == _OPEN:
            other.sendPing(payload)
        elif self.state == _OPEN:
            self.sendPong(payload)

    def onAutoPong(self, *args: Any) -> None:
        # The answer to this leg's own keep-alive ping: not to be relayed.
        self._ownPong = True

    def onPong(self, payload: bytes) -> None:
        if self._ownPong:
            self._ownPong = False
            return
        other = self.other
        if other is not None and other.state == _OPEN:
            other.sendPong(payload)

    def onCloseFrame(self, code: int | None, reasonRaw: bytes | None) -> bool | None:
        other = self.other
        if (
            self.state == _OPEN
            and other is not None
            and other.state == _OPEN
            and (code is None or 3000 <= code <= 4999 or code in WebSocketProtocol.CLOSE_STATUS_CODES_ALLOWED)
        ):
            # This side starts closing: pass its close on and answer it once
            # the other side has answered (or gone).
            self.remoteCloseCode = code
            self.remoteCloseReason = reasonRaw.decode("utf-8", "replace") if reasonRaw else None
            self.relay.closingFrom = self
            other.sendCloseFrame(code=code, reasonUtf8=reasonRaw, isReply=False)
            return False
        result = WebSocketProtocol.onCloseFrame(self, code, reasonRaw)
        if other is not None and self.relay.closingFrom is other and other.state == _OPEN:
            # The answer to a close relayed from the other side.
            self.relay.closingFrom = None
            other.answerClose(code, reasonRaw)
        return result

    def answerClose(self, code: int | None, reasonRaw: bytes | None) -> None:
        """
        Complete the closing handshake this leg's peer started, with the
        code and reason the far side answered.
        """
        if self.state != _OPEN:
            return
        if code in _NOT_SENDABLE:
            code, reasonRaw = None, None
        self.wasClean = True
        self.sendCloseFrame(code=code, reasonUtf8=reasonRaw if code is not None else None, isReply=True)
        if self.factory.isServer:
            self.dropConnection(abort=False)

    def closeWith(self, code: int, reason: str) -> None:
        """
        Start a closing handshake on this leg (relayd's own close: idle
        timeout, shutdown, the other leg failing).
        """
        if self.state == _OPEN:
            self.sendCloseFrame(code=code, reasonUtf8=reason.encode("utf-8")[:123])

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.relay.legClosed(self)


class ClientLeg(_Leg, WebSocketServerProtocol):
    """
    The client's side of a relayed WebSocket: relayd is the server.
    """

    _direction = 0
    _masked = 0x80

    def onConnect(self, request: Any) -> tuple[str | None, dict[str, list[str]]]:
        return self.relay.clientAccepted()

    def onOpen(self) -> None:
        self.relay.clientOpened()


class BackendLeg(_Leg, WebSocketClientProtocol):
    """
    The server's side of a relayed WebSocket: relayd is the client, and the
    opening handshake was sent by relayd's HTTP upstream code.
    """

    _direction = 1
    _maskOut = True

    def startHandshake(self) -> None:
        # Sent already, as an HTTP request; only the answer is left to check.
        return None

    def onOpen(self) -> None:
        self.relay.backendOpened()


class _Timer:
    """
    What autobahn schedules its ping, close and drop timeouts with. Its own
    batched timer rounds every delay down to whole seconds, which turns a
    300 ms pong timeout into "now"; this one is exact.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor

    def call_later(self, delay: float, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return self.reactor.callLater(max(0.0, delay), fn, *args, **kwargs)


class _PerConnection:
    """
    A leg's view of its shared factory, with the subprotocols this
    connection's client offered (autobahn checks the server's choice against
    its factory's list).
    """

    def __init__(self, factory: Any, protocols: list[str]) -> None:
        self._factory = factory
        self.protocols = protocols

    def __getattr__(self, name: str) -> Any:
        return getattr(self._factory, name)


def _acceptDeflateOffer(offers: list[Any]) -> Any:
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


def _acceptDeflateResponse(response: Any) -> Any:
    if isinstance(response, PerMessageDeflateResponse):
        return PerMessageDeflateResponseAccept(response)
    return None


def _refuseCompression(offers: Any) -> None:
    return None


def _legClass(base: type, factory: Any, name: str) -> type:
    """
    A leg class with the factory's protocol options as class attributes, so
    that autobahn does not copy some thirty of them onto every connection.
    """
    attributes: dict[str, Any] = {}
    for attr in base.CONFIG_ATTRS:
        if hasattr(factory, attr):
            value = getattr(factory, attr)
            # Functions (compression accept hooks) must stay unbound.
            attributes[attr] = staticmethod(value) if callable(value) else value
    attributes["__module__"] = __name__
    return type(name, (base,), attributes)


class Relay:
    """
    One relayed WebSocket: the client's request, then its two legs.
    """

    _log = Logger()

    def __init__(self, relayer: WebSocketRelayer, request: Any, target: Target, key: bytes, protocols: list[str], deflate: bool) -> None:
        self.relayer = relayer
        self.request = request
        self.target = target
        self.key = key
        self.protocols = protocols
        self.deflate = deflate
        self.client: Any = None
        self.backend: Any = None
        self.backendHead: HeaderMap | None = None
        self.site: Any = None
        self.opened = 0.0
        self.active = False
        self.idleSince = 0.0
        self.closingFrom: Any = None
        self.messages = [0, 0]
        self.bytes = [0, 0]
        self.finished = False

    def describe(self) -> dict[str, Any]:
        context = self.request.relayd
        return {
            "router": getattr(context, "router", ""),
            "service": getattr(context, "service", ""),
            "upstream": self.target.url,
        }

    # -- opening --

    def switched(self, transport: Any, head: bytes, rest: bytes) -> None:
        """
        The server answered 101: hand its connection to autobahn, which checks
        the answer (and calls L{backendOpened}).
        """
        try:
            self.backendHead = parseResponseHead(head[: findHeadEnd(head)[0]]).headers
        except WireError:
            self.backendHead = HeaderMap()
        leg = self.relayer.backendClass()
        leg.factory = _PerConnection(self.relayer.backendFactory, self.protocols)
        leg.relay = self
        leg.websocket_key = self.key
        leg._parts = []
        if self.deflate:
            leg.perMessageCompressionOffers = [PerMessageDeflateOffer()]
            leg.perMessageCompressionAccept = _acceptDeflateResponse
        self.backend = leg
        _adopt(transport, leg)
        leg._sock = socketOf(transport)
        leg.dataReceived(head + rest)

    def backendOpened(self) -> None:
        """
        The server's handshake checked out: now take the client's connection
        and let autobahn accept its handshake.
        """
        request = self.request
        if request.finished or request._disconnected:
            self.backend.closeWith(_GOING_AWAY, "client went away")
            return
        channel = request.channel
        transport = channel.transport
        self.site = channel.site
        leftover = channel.detach()
        out = [request.method, b" ", request.uri, b" HTTP/1.1\r\n"]
        request.requestHeaders.serialize(out)
        out.append(b"\r\n")
        leg = self.relayer.clientClass()
        leg.factory = self.relayer.clientFactory
        leg.relay = self
        leg._parts = []
        self.client = leg
        self.site.tunnels.add(self)
        _adopt(transport, leg)
        leg._sock = socketOf(transport)
        leg.dataReceived(b"".join(out) + leftover)

    def clientAccepted(self) -> tuple[str | None, dict[str, list[str]]]:
        """
        What relayd answers the client: the server's subprotocol, and the
        fields of the server's 101 plus those middlewares and the sticky
        cookie add.
        """
        request = self.request
        headers = self.backendHead or HeaderMap()
        for name in _HANDSHAKE_FIELDS.intersection(headers._fields):
            del headers._fields[name]
        request.code = 101
        request.responseHeaders = headers
        request._runHooks()
        out: dict[str, list[str]] = {}
        for name, values in request.responseHeaders.getAllRawHeaders():
            if name.lower() in _HANDSHAKE_FIELDS:
                continue
            out[name.decode("latin-1")] = [v.decode("latin-1") for v in values]
        protocol = self.backend.websocket_protocol_in_use if self.backend is not None else None
        return protocol, out

    def clientOpened(self) -> None:
        client, backend = self.client, self.backend
        client.other = backend
        backend.other = client
        self.opened = self.idleSince = self.relayer.reactor.seconds()
        client.transport.registerProducer(_Pauser(backend), True)
        backend.transport.registerProducer(_Pauser(client), True)
        client.trim()
        backend.trim()
        request = self.request
        request.startedWriting = True
        self.relayer.opened(self)
        if backend.state != _OPEN:
            # The server closed while the client's handshake went on.
            self.legClosed(backend)

    # -- relaying --

    def counted(self, direction: int, size: int) -> None:
        self.messages[direction] += 1
        self.bytes[direction] += size

    # -- closing --

    def legClosed(self, leg: Any) -> None:
        """
        One leg's connection is gone: take the other one down the same way,
        or, before the client's side opened, answer the client with 502.
        """
        if leg is self.backend and self.client is None:
            self._backendFailed(leg)
            return
        other = leg.other
        if other is not None and other.state == _OPEN:
            if self.closingFrom is other:
                # The far side never answered the close relayed to it.
                self.closingFrom = None
                other.answerClose(other.remoteCloseCode, (other.remoteCloseReason or "").encode("utf-8") or None)
            elif leg.failedByMe:
                # relayd failed this leg (a size limit, a protocol error).
                other.closeWith(_GOING_AWAY, "the other side of the relay failed")
            elif leg.remoteCloseCode is not None:
                other.closeWith(leg.remoteCloseCode, leg.remoteCloseReason or "")
            else:
                # Dropped without a close: drop the other side as well.
                other.dropConnection(abort=False)
        elif other is None and leg is self.client and self.backend is not None and self.backend.state == _OPEN:
            # The client's handshake failed after the server's succeeded.
            self.backend.closeWith(_GOING_AWAY, "the client's handshake failed")
        if all(side is None or side.state == _CLOSED for side in (self.client, self.backend)):
            self._finish()

    def _backendFailed(self, leg: Any) -> None:
        request = self.request
        reason = leg.wasNotCleanReason or "connection closed during the handshake"
        self.relayer.failed(request, self.target, UpstreamError(502, f"invalid WebSocket handshake from server: {reason}"))

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        for leg in (self.client, self.backend):
            if leg is not None:
                transport = leg.transport
                if transport is not None and getattr(transport, "producer", None) is not None:
                    transport.unregisterProducer()
                leg.other = None
        if self.site is not None:
            self.site.tunnels.discard(self)
        self.relayer.closed(self)
        request = self.request
        if not request.finished:
            request.finished = True
            waiters, request._finishWaiters = request._finishWaiters, None
            for d in waiters or ():
                d.callback(None)

    def goingAway(self, reason: str = "server shutting down") -> None:
        """
        Close both legs with 1001 (shutdown).
        """
        for leg in (self.client, self.backend):
            if leg is not None:
                leg.closeWith(_GOING_AWAY, reason)

    def abort(self) -> None:
        for leg in (self.client, self.backend):
            if leg is not None and leg.state != _CLOSED and leg.transport is not None:
                leg.transport.abortConnection()


class WebSocketRelayer:
    """
    Relays WebSocket upgrades for one L{relayd.proxy.http.Forwarder}.
    """

    _log = Logger()

    def __init__(self, forwarder: Any, settings: WebSocketSettings | None = None) -> None:
        self.forwarder = forwarder
        self.reactor = forwarder.reactor
        self.settings = settings = settings or WebSocketSettings()
        self.relays: set[Relay] = set()
        self.stats = WebSocketStats()
        self._sweeper: task.LoopingCall | None = None
        common = dict(
            utf8validateIncoming=False,
            maxFramePayloadSize=settings.maxFrameSize,
            maxMessagePayloadSize=settings.maxMessageSize,
            autoFragmentSize=0,
            failByDrop=False,
            echoCloseCodeReason=True,
            openHandshakeTimeout=0,
            closeHandshakeTimeout=settings.closeTimeout,
            tcpNoDelay=True,
            autoPingInterval=settings.pingInterval,
            autoPingTimeout=(settings.pingTimeout or settings.pingInterval) if settings.pingInterval else 0,
        )
        clientFactory = WebSocketServerFactory(reactor=self.reactor)
        clientFactory.server = None
        clientFactory.setProtocolOptions(
            perMessageCompressionAccept=_acceptDeflateOffer if settings.compression else _refuseCompression,
            **common,
        )
        backendFactory = WebSocketClientFactory(reactor=self.reactor)
        backendFactory.setProtocolOptions(serverConnectionDropTimeout=1.0, **common)
        clientFactory._batched_timer = backendFactory._batched_timer = _Timer(self.reactor)
        self.clientFactory = clientFactory
        self.backendFactory = backendFactory
        self.clientClass = _legClass(ClientLeg, clientFactory, "ClientLeg")
        self.backendClass = _legClass(BackendLeg, backendFactory, "BackendLeg")

    # -- starting a relay --

    def forward(self, request: Any, target: Target, passHostHeader: bool) -> None:
        from relayd.proxy.http import requestHead

        problem = handshakeProblem(request)
        if problem is not None:
            code, message = problem
            request.keepAlive = False
            if code == 426:
                request.responseHeaders.setRawHeaders(b"sec-websocket-version", [b"13"])
            plainResponse(request, code, f"{code} {'Upgrade Required' if code == 426 else 'Bad Request'}: {message}\n")
            return
        key = base64.b64encode(os.urandom(16))
        deflate = self.settings.compression and _offersDeflate(request)
        lines = [b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ", key, b"\r\nSec-WebSocket-Version: 13\r\n"]
        if deflate:
            lines.append(b"Sec-WebSocket-Extensions: " + PerMessageDeflateOffer().get_extension_string().encode("ascii") + b"\r\n")
        head = requestHead(request, target, passHostHeader, upgrade=b"".join(lines))
        relay = Relay(self, request, target, key, _offeredProtocols(request), deflate)
        forwarder = self.forwarder
        d = forwarder.pool.connect(target)
        request.upstreamRetried = True
        d.addCallbacks(self._connected, forwarder._connectFailed, callbackArgs=(request, head, relay), errbackArgs=(request, target))

    def _connected(self, connection: UpstreamConnection, request: Any, head: bytes, relay: Relay) -> None:
        if request.finished or request._disconnected:
            connection._close()
            return
        connection.onSwitch = relay.switched
        connection.start(request, head)
        # Whatever the answer, this connection is not pooled afterwards.
        connection._reusable = False

    def failed(self, request: Any, target: Target, failure: UpstreamError) -> None:
        if request.finished or request._disconnected:
            return
        self.forwarder._answer(request, target, failure)

    # -- bookkeeping --

    def opened(self, relay: Relay) -> None:
        self.relays.add(relay)
        self.stats.opened += 1
        if self.settings.idleTimeout and self._sweeper is None:
            interval = max(0.05, min(1.0, self.settings.idleTimeout / 4))
            self._sweeper = task.LoopingCall(self._sweep)
            self._sweeper.clock = self.reactor
            self._sweeper.start(interval, now=False)

    def closed(self, relay: Relay) -> None:
        if relay not in self.relays:
            return
        self.relays.discard(relay)
        stats = self.stats
        stats.closed += 1
        stats.messagesIn += relay.messages[0]
        stats.messagesOut += relay.messages[1]
        stats.bytesIn += relay.bytes[0]
        stats.bytesOut += relay.bytes[1]
        stats.seconds += self.reactor.seconds() - relay.opened
        self._log.debug(
            "websocket closed after {seconds:.1f}s: {messagesIn} messages ({bytesIn} bytes) in, "
            "{messagesOut} ({bytesOut} bytes) out (router={router}, service={service}, upstream={upstream})",
            seconds=self.reactor.seconds() - relay.opened,
            messagesIn=relay.messages[0],
            bytesIn=relay.bytes[0],
            messagesOut=relay.messages[1],
            bytesOut=relay.bytes[1],
            **relay.describe(),
        )
        if not self.relays and self._sweeper is not None:
            if self._sweeper.running:
                self._sweeper.stop()
            self._sweeper = None

    def _sweep(self) -> None:
        now = self.reactor.seconds()
        limit = self.settings.idleTimeout
        for relay in list(self.relays):
            if relay.active:
                relay.active = False
                relay.idleSince = now
            elif now - relay.idleSince >= limit:
                self._log.info(
                    "websocket idle for {limit}s: closing (router={router}, service={service}, upstream={upstream})",
                    limit=limit,
                    **relay.describe(),
                )
                relay.goingAway("idle timeout")

    def close(self) -> None:
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        self._sweeper = None

