"""
Tests for UDP routers end to end: Python UDP clients, relayd's UDP
entrypoint, and real UDP servers on loopback. Every wait is bounded.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import defer, protocol, reactor
from twisted.trial.unittest import TestCase

from relayd.config.dynamic import decodeDynamic
from relayd.config.loader import effective
from relayd.config.schema import decode
from relayd.config.static import StaticConfig
from relayd.entrypoints import EntryPointService
from relayd.providers.base import ProviderUpdate
from relayd.watcher import Watcher
from tests.helpers import freePorts
from tests.test_tcp import inThread

TIMEOUT = 3.0


class UDPServer(protocol.DatagramProtocol):
    """
    Answers every datagram with its name and the datagram; remembers the
    addresses it heard from.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.peers: list[tuple[str, int]] = []

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.peers.append(addr)
        self.transport.write(self.name.encode() + b":" + data, addr)


def exchange(port: int, sock: socket.socket | None = None, payload: bytes = b"ping") -> tuple[bytes | None, socket.socket]:
    """
    Send C{payload} to relayd from C{sock} (a new socket by default) and
    return the answer (None when none comes) and the socket.
    """
    if sock is None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(TIMEOUT)
    sock.sendto(payload, ("127.0.0.1", port))
    try:
        return sock.recvfrom(65535)[0], sock
    except socket.timeout:
        return None, sock


class UDPTests(TestCase):
    def serve(self, name: str) -> tuple[UDPServer, int]:
        server = UDPServer(name)
        port = reactor.listenUDP(0, server, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return server, port.getHost().port

    def start(self, dynamic: dict[str, Any], timeout: str = "3s") -> EntryPointService:
        (port,) = freePorts(1)
        raw = {
            "entryPoints": {"dns": {"address": f"127.0.0.1:{port}/udp", "udp": {"timeout": timeout}}},
            "providers": {"providersThrottleDuration": "0s"},
        }
        config, errors = decode(StaticConfig, raw)
        self.assertFalse(errors)
        config = effective(config)
        watcher = Watcher(reactor, config, reactor=reactor)
        watcher.update(ProviderUpdate("file", decodeDynamic(dynamic)))
        self.watcher = watcher
        ep = EntryPointService("dns", config.entryPoints["dns"], reactor, watcher.runtime)
        watcher.addListener(ep.swap)
        ep.startService()
        self.addCleanup(ep.stopService)
        self.addCleanup(watcher.stop)
        return ep

    def closeLater(self, sock: socket.socket) -> None:
        self.addCleanup(sock.close)

    @defer.inlineCallbacks
    def test_echoWithTwoClients(self):
        """
        Each client's datagrams go to the server in a session of its own, and
        the server's answers come back to the right client.
        """
        server, port = self.serve("one")
        ep = self.start(
            {"udp": {"routers": {"r": {"service": "s"}}, "services": {"s": {"loadBalancer": {"servers": [{"address": f"127.0.0.1:{port}"}]}}}}}
        )
        first, a = yield inThread(exchange, ep.port, None, b"from a")
        self.closeLater(a)
        second, b = yield inThread(exchange, ep.port, None, b"from b")
        self.closeLater(b)
        again, _ = yield inThread(exchange, ep.port, a, b"a again")
        self.assertEqual((first, second, again), (b"one:from a", b"one:from b", b"one:a again"))
        self.assertEqual(len(set(server.peers)), 2)
        self.assertEqual(server.peers[0], server.peers[2])
        self.assertEqual(len(ep.listeningPort.protocol.sessions), 2)

    @defer.inlineCallbacks
    def test_sessionExpires(self):
        """
        A session without datagrams for udp.timeout ends; the client's next
        datagram starts a new one (and may go to another server).
        """
        one, p1 = self.serve("one")
        two, p2 = self.serve("two")
        ep = self.start(
            {
                "udp": {
                    "routers": {"r": {"service": "s"}},
                    "services": {"s": {"loadBalancer": {"servers": [{"address": f"127.0.0.1:{p1}"}, {"address": f"127.0.0.1:{p2}"}]}}},
                }
            },
            timeout="1s",
        )
        sessions = ep.listeningPort.protocol.sessions
        answer, sock = yield inThread(exchange, ep.port)
        self.closeLater(sock)
        self.assertEqual(answer, b"one:ping")
        answer, _ = yield inThread(exchange, ep.port, sock)
        self.assertEqual(answer, b"one:ping")
        self.assertEqual(len(sessions), 1)
        yield _sleep(0.5)
        self.assertEqual(len(sessions), 1)
        deadline = reactor.seconds() + 3
        while sessions and reactor.seconds() < deadline:
            yield _sleep(0.05)
        self.assertEqual(len(sessions), 0)
        answer, _ = yield inThread(exchange, ep.port, sock)
        self.assertEqual(answer, b"two:ping")

    @defer.inlineCallbacks
    def test_weighted(self):
        """
        A weighted service spreads new sessions over its children by weight.
        """
        one, p1 = self.serve("one")
        two, p2 = self.serve("two")
        ep = self.start(
            {
                "udp": {
                    "routers": {"r": {"service": "w"}},
                    "services": {
                        "w": {"weighted": {"services": [{"name": "a", "weight": 2}, {"name": "b", "weight": 1}]}},
                        "a": {"loadBalancer": {"servers": [{"address": f"127.0.0.1:{p1}"}]}},
                        "b": {"loadBalancer": {"servers": [{"address": f"127.0.0.1:{p2}"}]}},
                    },
                }
            }
        )
        answers = []
        for _ in range(6):
            answer, sock = yield inThread(exchange, ep.port)
            self.closeLater(sock)
            answers.append(answer.split(b":")[0])
        self.assertEqual(sorted(answers), [b"one"] * 4 + [b"two"] * 2)

    @defer.inlineCallbacks
    def test_noRouterDrops(self):
        """
        Without a UDP router, datagrams are dropped.
        """
        ep = self.start({})
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(0.3)
        self.closeLater(sock)
        answer, _ = yield inThread(exchange, ep.port, sock)
        self.assertIsNone(answer)

    @defer.inlineCallbacks
    def test_reloadKeepsSessions(self):
        """
        A session keeps its server across a reload; new sessions follow the
        new configuration.
        """
        one, p1 = self.serve("one")
        two, p2 = self.serve("two")

        def config(port: int) -> dict[str, Any]:
            return {"udp": {"routers": {"r": {"service": "s"}}, "services": {"s": {"loadBalancer": {"servers": [{"address": f"127.0.0.1:{port}"}]}}}}}

        ep = self.start(config(p1))
        answer, sock = yield inThread(exchange, ep.port)
        self.closeLater(sock)
        self.watcher.update(ProviderUpdate("file", decodeDynamic(config(p2))))
        again, _ = yield inThread(exchange, ep.port, sock)
        other, sock2 = yield inThread(exchange, ep.port)
        self.closeLater(sock2)
        self.assertEqual((answer, again, other), (b"one:ping", b"one:ping", b"two:ping"))


def _sleep(seconds: float) -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d
