"""
TCP routing and relaying on an entrypoint.

L{dispatch} decides, from the first bytes of a connection, whether a TCP
router takes it, in Traefik's order: a plain connection goes to the plain
TCP routers; a TLS ClientHello goes to the entrypoint's HTTPS routers when
one claims its server name, else to the TLS TCP routers (passthrough or
TLS-terminating), else to a TLS TCP catch-all, else to HTTPS. What no TCP
router takes is left to the HTTP side. L{dispatchEarly} routes a connection
before it sends anything when the entrypoint has plain TCP routers only
(protocols where the server speaks first).

A taken connection becomes a L{Relay}: the client's transport and a
connection to the chosen server, bytes copied both ways with backpressure
(each side stops reading while the other cannot take more), half-closes
passed on (with Traefik's terminationDelay), and an error or close on one
side closing the other. Relays live on the handlers of the generation that
routed them, so reloads leave them alone; at shutdown the entrypoint waits
for them up to graceTimeOut, then closes them.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Callable

from twisted.internet import defer, error, protocol
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IHalfCloseableProtocol, IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from relayd.proxy.clienthello import peekClientHello
from relayd.proxy.forwarded import clientHost
from relayd.proxy.proxyprotocol import formatHeader, localAddress
from relayd.proxy.wire import send, socketOf
from relayd.runtime.matchers import ACME_TLS_ALPN, ConnectionInfo

_log = Logger()

# Bytes a client may send before its server connection is up; past this,
# relayd stops reading from it until then.
PENDING_LIMIT = 64 * 1024


def _table(switch: Any) -> Any:
    tcpTable = getattr(switch.runtime, "tcpTable", None)
    return tcpTable(switch.entryPoint.entryPointName) if tcpTable is not None else None


def dispatchEarly(entryPoint: Any, switch: Any, afterHeader: bool = False, data: bytes = b"") -> bool:
    """
    Route a connection before it has sent anything, when the entrypoint
    has plain TCP routers and no TLS router at all (TCP or HTTP), as
    Traefik does so that server-first protocols work. On an entrypoint that
    accepts the PROXY protocol this waits for the header (C{afterHeader}).

    @param data: bytes already read after a PROXY header, replayed to the
        server.
    @return: whether a TCP router took the connection.
    """
    if not afterHeader and entryPoint.config.proxyProtocol is not None:
        return False
    table = _table(switch)
    if not table or not table.serverFirst:
        return False
    info = ConnectionInfo("", (), clientHost(switch.transport.getPeer()))
    route = table.matchPlain(info)
    if route is None:
        return False
    _take(entryPoint, switch, route, info, data)
    return True


def dispatch(entryPoint: Any, switch: Any, buffer: bytes) -> bool | None:
    """
    Decide on the bytes a connection sent so far.

    @return: True when a TCP router took the connection (or it was closed
        for a malformed ClientHello), None when more bytes are needed, False
        when it is for HTTP or HTTPS.
    """
    table = _table(switch)
    if not table:
        return False
    peek = peekClientHello(buffer)
    if peek.state == "more":
        return None
    clientIP = clientHost(switch.transport.getPeer())
    if peek.state == "plain":
        info = ConnectionInfo("", (), clientIP)
        route = table.matchPlain(info)
        if route is None:
            return False
        _take(entryPoint, switch, route, info, buffer)
        return True
    if peek.state == "malformed":
        # As Traefik: a ClientHello that does not parse closes the connection.
        _log.debug(
            "entrypoint {entrypoint}: closing a connection from {client}: {reason}",
            entrypoint=entryPoint.entryPointName,
            client=clientIP,
            reason=peek.reason,
        )
        switch.transport.loseConnection()
        return True
    if ACME_TLS_ALPN in peek.protocols and not table.acmePassthrough:
        return False
    info = ConnectionInfo(peek.serverName, peek.protocols, clientIP)
    if peek.serverName and peek.serverName in table.httpsHosts:
        return False
    route = table.matchTLS(info)
    if route is not None and not route.catchAll:
        _take(entryPoint, switch, route, info, buffer)
        return True
    if table.httpsCatchAll:
        return False
    if route is not None:
        _take(entryPoint, switch, route, info, buffer)
        return True
    return False


@implementer(IOpenSSLServerConnectionCreator)
class _Pinned:
    """
    TLS termination on a context chosen before the handshake.
    """

    def __init__(self, context: Any) -> None:
        self.context = context

    def serverConnectionForTLS(self, tlsProtocol: Any) -> Any:
        from OpenSSL import SSL

        return SSL.Connection(self.context, None)


def _take(entryPoint: Any, switch: Any, route: Any, info: ConnectionInfo, buffer: bytes) -> None:
    """
    Make a L{Relay} of the switch's connection for C{route}, replaying
    C{buffer}: as the first bytes for the server, or into TLS termination.
    """
    transport = switch.transport
    if route.tls != "terminate":
        relay = Relay(entryPoint, route, transport)
        relay.pending = [buffer] if buffer else []
        relay.pendingSize = len(buffer)
        transport.protocol = relay.client
        relay.client.makeConnection(transport)
        return
    context = _terminationContext(entryPoint, switch.runtime, route, info, transport)
    if context is None:
        transport.loseConnection()
        return
    relay = Relay(entryPoint, route, transport)
    creator: Any = _Pinned(context)
    factory = TLSMemoryBIOFactory(creator, False, _NO_FACTORY)
    tlsProtocol = TLSMemoryBIOProtocol(factory, relay.client)
    transport.protocol = tlsProtocol
    tlsProtocol.makeConnection(transport)
    if buffer:
        tlsProtocol.dataReceived(buffer)


_NO_FACTORY: Any = protocol.Factory()


def _terminationContext(entryPoint: Any, runtime: Any, route: Any, info: ConnectionInfo, transport: Any) -> Any:
    """
    The server context of a TLS-terminating TCP router for this SNI (its
    TLS options, the certificate for the name), or None to refuse.
    """
    tls = getattr(runtime, "tls", None)
    context = None
    if tls is not None:
        try:
            context = tls.contextFor(
                info.serverName or None,
                entryPoint=entryPoint.entryPointName,
                options=route.options,
                localAddress=clientHost(transport.getHost()),
            )
        except Exception:
            _log.failure("TLS context for router {router} failed", router=route.name)
    if context is None:
        _log.warn(
            "TLS connection for {serverName!r} closed: no certificate or usable TLS options (router={router})",
            serverName=info.serverName,
            router=route.name,
        )
    return context


class _Pauser:
    """
    What a leg's transport pauses when its write buffer is full: reading
    from the other leg.
    """

    def __init__(self, source: _Leg) -> None:
        self.source = source

    def pauseProducing(self) -> None:
        if self.source.transport is not None and not self.source.lost:
            self.source.transport.pauseProducing()

    def resumeProducing(self) -> None:
        if self.source.transport is not None and not self.source.lost:
            self.source.transport.resumeProducing()

    def stopProducing(self) -> None:
        pass


@implementer(IHalfCloseableProtocol)
class _Leg(protocol.Protocol):
    """
    One side of a relay. A FIN from its peer arrives as
    C{readConnectionLost} (plain TCP only; TLS ends a connection whole).
    """

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.sock: Any = None
        self.readClosed = False
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.relay.received(self, data)

    def readConnectionLost(self) -> None:
        self.relay.readClosed(self)

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.lost = True
        self.relay.lost(self, reason)


class _ClientLeg(_Leg):
    def connectionMade(self) -> None:
        self.relay.clientReady()


class _ServerLeg(_Leg):
    def connectionMade(self) -> None:
        self.relay.serverConnected(self)


class _ServerFactory(protocol.Factory):
    noisy = False

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def buildProtocol(self, addr: Any) -> _ServerLeg:
        leg = _ServerLeg(self.relay)
        leg.factory = self
        return leg


def _canHalfClose(transport: Any) -> bool:
    return not getattr(transport, "TLS", False) and not isinstance(transport, TLSMemoryBIOProtocol) and hasattr(
        transport, "loseWriteConnection"
    )


def _loseConnection(transport: Any) -> None:
    """
    Close after what is queued was written. The producer registered on the
    transport goes first: Twisted's TLS waits for it before its close_notify.
    """
    try:
        transport.unregisterProducer()
    except Exception:
        pass
    transport.loseConnection()


def _keepAlive(transport: Any, interval: float) -> None:
    """
    Go's dialer keep-alive: probes after C{interval} idle seconds, then every
    C{interval}; none when negative.
    """
    sock = getattr(transport, "socket", None)
    if sock is None:
        return
    try:
        if interval < 0:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
            return
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        seconds = max(1, int(interval))
        for name in ("TCP_KEEPIDLE", "TCP_KEEPINTVL"):
            option = getattr(socket, name, None)
            if option is not None:
                sock.setsockopt(socket.IPPROTO_TCP, option, seconds)
    except OSError:
        pass


class Relay:
    """
    A client connection taken by a TCP router, and its server connection
    once a service chose one. Handlers (middlewares, services) see it as
    the connection: C{clientIP}, C{router}, C{close()}, C{onClose()},
    C{connectTo(target)}.

    It is also a tunnel of the entrypoint: shutdown calls C{goingAway()}
    after graceTimeOut and C{abort()} if that does not finish in time.
    """

    _log = Logger()

    def __init__(self, entryPoint: Any, route: Any, transport: Any) -> None:
        self.entryPoint = entryPoint
        self.reactor = entryPoint.reactor
        self.router = route.name
        self.route = route
        self.service = ""
        self.upstream = ""
        peer = transport.getPeer()
        self.clientAddress = (clientHost(peer), getattr(peer, "port", 0))
        self.clientIP = self.clientAddress[0]
        self.localAddress = localAddress(transport)
        self.client = _ClientLeg(self)
        self.server: _ServerLeg | None = None
        self.target: Any = None
        self.pending: list[bytes] = []
        self.pendingSize = 0
        self.pausedForPending = False
        self.connecting: defer.Deferred[Any] | None = None
        self.termination: Any = None
        self.closing = False
        self.done = False
        self._onClose: list[Callable[[], None]] = []
        self.tunnels = entryPoint.site.tunnels
        self.tunnels.add(self)

    # -- what handlers use --

    def onClose(self, callback: Callable[[], None]) -> None:
        """
        Call C{callback} once when the relay is over.
        """
        if self.done:
            callback()
        else:
            self._onClose.append(callback)

    def close(self) -> None:
        """
        Close the client's connection (and the server's, if any).
        """
        self.closing = True
        if self.connecting is not None:
            connecting, self.connecting = self.connecting, None
            connecting.cancel()
        for leg in (self.client, self.server):
            if leg is not None and leg.transport is not None and not leg.lost:
                _loseConnection(leg.transport)

    def connectTo(self, target: Any) -> None:
        """
        Connect to C{target} (a L{relayd.services.tcp.TCPTarget}) and relay
        the client's bytes to it.
        """
        if self.closing or self.client.lost:
            return
        self.target = target
        self.upstream = target.address
        timeout = target.dialTimeout or 30 * 24 * 3600
        try:
            address = ipaddress.ip_address(target.host)
        except ValueError:
            endpoint: Any = HostnameEndpoint(self.reactor, target.host.encode("idna"), target.port, timeout=timeout)
        else:
            cls = TCP6ClientEndpoint if address.version == 6 else TCP4ClientEndpoint
            endpoint = cls(self.reactor, target.host, target.port, timeout=timeout)
        d = self.connecting = endpoint.connect(_ServerFactory(self))
        d.addErrback(self._connectFailed)

    def _connectFailed(self, failure: Failure) -> None:
        self.connecting = None
        if failure.check(defer.CancelledError):
            return
        self._log.error(
            "TCP connection to {upstream} failed: {error} (router={router}, service={service})",
            upstream=self.upstream,
            error=failure.getErrorMessage(),
            router=self.router,
            service=self.service,
        )
        self.close()
        self._checkDone()

    # -- events --

    def clientReady(self) -> None:
        transport: Any = self.client.transport
        self.client.sock = socketOf(transport)
        if hasattr(transport, "setTcpNoDelay"):
            try:
                transport.setTcpNoDelay(True)
            except OSError:
                pass
        try:
            self.route.handler.serveTCP(self)
        except Exception:
            self._log.failure("TCP router {router} failed", router=self.router)
            self.close()

    def serverConnected(self, leg: _ServerLeg) -> None:
        self.connecting = None
        transport: Any = leg.transport
        if self.closing or self.client.lost:
            transport.abortConnection()
            return
        self.server = leg
        target = self.target
        try:
            transport.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass
        _keepAlive(transport, target.keepAlive)
        if target.proxyProtocol:
            transport.write(formatHeader(target.proxyProtocol, self.clientAddress, self.localAddress))
        if target.tlsCreator is not None:
            transport.startTLS(target.tlsCreator)
        else:
            leg.sock = socketOf(transport)
        client: Any = self.client
        if self.pausedForPending:
            self.pausedForPending = False
            client.transport.resumeProducing()
        client.transport.registerProducer(_Pauser(leg), True)
        transport.registerProducer(_Pauser(client), True)
        pending, self.pending, self.pendingSize = self.pending, [], 0
        if pending:
            send(transport, leg.sock, pending)
        if client.readClosed:
            self._halfClose(client)

    def received(self, leg: _Leg, data: bytes) -> None:
        server = self.server
        if leg is self.client:
            if server is None:
                self.pending.append(data)
                self.pendingSize += len(data)
                if self.pendingSize > PENDING_LIMIT and not self.pausedForPending:
                    self.pausedForPending = True
                    transport: Any = leg.transport
                    transport.pauseProducing()
                return
            send(server.transport, server.sock, [data])
        else:
            send(self.client.transport, self.client.sock, [data])

    def readClosed(self, leg: _Leg) -> None:
        """
        The peer of C{leg} sent its FIN: pass it on, and give the other
        direction terminationDelay to finish.
        """
        leg.readClosed = True
        if leg is self.client and self.server is None:
            return
        self._halfClose(leg)

    def _halfClose(self, leg: _Leg) -> None:
        other = self.server if leg is self.client else self.client
        if other is None or other.transport is None or other.lost:
            return
        if leg.readClosed and other.readClosed:
            self._closeBoth()
            return
        if _canHalfClose(other.transport):
            other.transport.loseWriteConnection()
        else:
            # TLS: a close_notify; the peer may still answer.
            _loseConnection(other.transport)
        delay = self.target.terminationDelay if self.target is not None else 0.0
        if delay >= 0 and self.termination is None:
            self.termination = self.reactor.callLater(delay, self._terminate)

    def _terminate(self) -> None:
        self.termination = None
        self._closeBoth()

    def _closeBoth(self) -> None:
        for leg in (self.client, self.server):
            if leg is not None and leg.transport is not None and not leg.lost:
                _loseConnection(leg.transport)

    def lost(self, leg: _Leg, reason: Failure) -> None:
        if not reason.check(error.ConnectionDone):
            self._log.debug(
                "TCP relay: {side} connection lost: {error} (router={router}, upstream={upstream})",
                side="client" if leg is self.client else "server",
                error=reason.getErrorMessage(),
                router=self.router,
                upstream=self.upstream,
            )
        other = self.server if leg is self.client else self.client
        if other is not None and other.transport is not None and not other.lost:
            _loseConnection(other.transport)
        if leg is self.client:
            self.closing = True
            if self.connecting is not None:
                connecting, self.connecting = self.connecting, None
                connecting.cancel()
        self._checkDone()

    def _checkDone(self) -> None:
        if self.done or not self.client.lost:
            return
        if self.server is not None and not self.server.lost:
            return
        if self.connecting is not None:
            return
        self._finish()

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        if self.termination is not None and self.termination.active():
            self.termination.cancel()
        self.termination = None
        self.tunnels.discard(self)
        callbacks, self._onClose = self._onClose, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                self._log.failure("TCP relay close callback failed")

    # -- shutdown --

    def goingAway(self) -> None:
        """
        graceTimeOut is over: close both connections (what was relayed is
        still delivered).
        """
        self.close()

    def abort(self) -> None:
        """
        Drop both connections now.
        """
        self.closing = True
        if self.connecting is not None:
            connecting, self.connecting = self.connecting, None
            connecting.cancel()
        for leg in (self.client, self.server):
            if leg is not None and leg.transport is not None and not leg.lost:
                leg.transport.abortConnection()
