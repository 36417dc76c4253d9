"""
UDP relaying on an entrypoint. Datagrams from one client address form a
session: the first one asks the entrypoint's UDP router (of the generation
current then) for a server, and the session keeps that server until it has
seen no datagram either way for the entrypoint's C{udp.timeout}. Each session
talks to its server from its own socket, so the server's replies come back
to the session and are sent to the client from the entrypoint's address.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from twisted.internet import defer, protocol, threads
from twisted.logger import Logger

# The largest UDP payload; datagrams are never cut.
MAX_DATAGRAM = 65535
# Datagrams a session keeps while it resolves its server's name.
_QUEUE_LIMIT = 64
_DEFAULT_TIMEOUT = 3.0


class UDPEntryPoint(protocol.DatagramProtocol):
    """
    The protocol of a UDP entrypoint's socket: one L{_Session} per client
    address.
    """

    _log = Logger()
    noisy = False

    def __init__(self, entryPoint: Any) -> None:
        self.entryPoint = entryPoint
        self.reactor = entryPoint.reactor
        self.sessions: dict[Any, _Session] = {}
        timeout = float(entryPoint.config.udp.timeout)
        if timeout <= 0:
            self._log.warn(
                "entrypoint {entrypoint}: udp.timeout must be positive; using {default}s",
                entrypoint=entryPoint.entryPointName,
                default=_DEFAULT_TIMEOUT,
            )
            timeout = _DEFAULT_TIMEOUT
        self.timeout = timeout

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        session = self.sessions.get(addr)
        if session is None:
            session = self._open(addr)
            if session is None:
                return
        session.fromClient(data)

    def _open(self, addr: Any) -> _Session | None:
        entryPoint = self.entryPoint
        udpRoute = getattr(entryPoint.runtime, "udpRoute", None)
        route: Any = udpRoute(entryPoint.entryPointName) if udpRoute is not None else None
        picked = route.handler.pick() if route is not None else None
        if picked is None:
            self._log.debug(
                "entrypoint {entrypoint}: datagram from {client} dropped: no UDP router or server",
                entrypoint=entryPoint.entryPointName,
                client=addr[0],
            )
            return None
        service, target = picked
        session = _Session(self, addr, route.name, service, target)
        self.sessions[addr] = session
        session.start()
        return session

    def reply(self, data: bytes, addr: Any) -> None:
        transport: Any = self.transport
        if transport is not None:
            try:
                transport.write(data, addr)
            except OSError as e:
                self._log.debug("UDP reply to {client} failed: {error}", client=addr[0], error=str(e))

    def stopProtocol(self) -> None:
        for session in list(self.sessions.values()):
            session.close()


class _ServerSide(protocol.DatagramProtocol):
    """
    A session's socket, connected to its server.
    """

    noisy = False

    def __init__(self, session: _Session) -> None:
        self.session = session

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.session.fromServer(data)

    def connectionRefused(self) -> None:
        # An ICMP "port unreachable": the session ends, as in Traefik; the
        # client's next datagram opens a new one.
        self.session.close()


class _Session:
    _log = Logger()

    def __init__(self, entry: UDPEntryPoint, client: Any, router: str, service: str, target: Any) -> None:
        self.entry = entry
        self.reactor = entry.reactor
        self.client = client
        self.router = router
        self.service = service
        self.target = target
        self.port: Any = None
        self.queue: list[bytes] = []
        self.closed = False
        self.lastActivity = self.reactor.seconds()
        self.timer = self.reactor.callLater(entry.timeout, self._expire)

    def start(self) -> None:
        host = self.target.host
        try:
            ipaddress.ip_address(host)
        except ValueError:
            d = threads.deferToThreadPool(
                self.reactor, self.reactor.getThreadPool(), socket.getaddrinfo, host, self.target.port, 0, socket.SOCK_DGRAM
            )
            d.addCallbacks(lambda infos: self._connect(str(infos[0][4][0])), self._resolveFailed)
            return
        self._connect(host)

    def _resolveFailed(self, failure: Any) -> None:
        self._log.error(
            "UDP server {upstream}: cannot resolve: {error} (router={router}, service={service})",
            upstream=self.target.address,
            error=failure.getErrorMessage(),
            router=self.router,
            service=self.service,
        )
        self.close()

    def _connect(self, ip: str) -> None:
        if self.closed:
            return
        interface = "::" if ":" in ip else "0.0.0.0"
        try:
            self.port = self.reactor.listenUDP(0, _ServerSide(self), interface=interface, maxPacketSize=MAX_DATAGRAM)
            self.port.connect(ip, self.target.port)
        except Exception as e:
            self._log.error(
                "UDP server {upstream}: {error} (router={router}, service={service})",
                upstream=self.target.address,
                error=str(e),
                router=self.router,
                service=self.service,
            )
            self.close()
            return
        queue, self.queue = self.queue, []
        for data in queue:
            self._send(data)

    def _send(self, data: bytes) -> None:
        try:
            self.port.write(data)
        except OSError as e:
            self._log.debug("UDP datagram to {upstream} failed: {error}", upstream=self.target.address, error=str(e))

    def fromClient(self, data: bytes) -> None:
        self.lastActivity = self.reactor.seconds()
        if self.port is None:
            if len(self.queue) < _QUEUE_LIMIT:
                self.queue.append(data)
            return
        self._send(data)

    def fromServer(self, data: bytes) -> None:
        self.lastActivity = self.reactor.seconds()
        self.entry.reply(data, self.client)

    def _expire(self) -> None:
        self.timer = None
        idle = self.reactor.seconds() - self.lastActivity
        if idle >= self.entry.timeout:
            self.close()
            return
        self.timer = self.reactor.callLater(self.entry.timeout - idle, self._expire)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        if self.entry.sessions.get(self.client) is self:
            del self.entry.sessions[self.client]
        port, self.port = self.port, None
        if port is not None:
            defer.maybeDeferred(port.stopListening)
