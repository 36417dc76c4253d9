"""
Reloads and shutdown of a real C{twistd relayd} process under traffic: no
request fails while the dynamic configuration is rewritten, a streaming
response outlives the removal of its router, SIGTERM drains as Traefik's
lifeCycle settings say and exits 0, and 1 GiB bodies stream through in both
directions without growing relayd's memory.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import threading
import time
from typing import Any

from twisted.internet import defer, protocol, reactor, task, threads
from twisted.trial.unittest import TestCase

from tests.helpers import RelaydProcess, freePorts, startBackend, tempdir, writeFile


def atomicWrite(path: str, text: str) -> None:
    """
    Replace a file in one step, as configuration tools do.
    """
    temporary = path + ".tmp"
    writeFile(temporary, text)
    os.replace(temporary, path)


def rss(pid: int) -> int:
    """
    The resident set size of a process, in bytes.
    """
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def startRelayd(testCase: TestCase, dynamic: str, static: str = "") -> tuple[RelaydProcess, int, str]:
    """
    Start relayd with a file provider polling every 50 ms; returns the
    process, the web port and the path of the dynamic file.
    """
    directory = tempdir(testCase)
    (web,) = freePorts(1)
    dynamicPath = os.path.join(directory, "dynamic.toml")
    atomicWrite(dynamicPath, dynamic)
    writeFile(
        os.path.join(directory, "relayd.toml"),
        f"""
[log]
level = "INFO"

[entryPoints.web]
address = "127.0.0.1:{web}"
{static}

[providers]
providersThrottleDuration = "10ms"

[providers.file]
filename = "{dynamicPath}"
pollInterval = "50ms"
""",
    )
    process = RelaydProcess(["--config", os.path.join(directory, "relayd.toml")], directory)
    testCase.addCleanup(process.stop)
    return process, web, dynamicPath


def blockingGet(port: int, path: str = "/", timeout: float = 10.0, host: str = "app.example") -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class _Streaming(protocol.Protocol):
    """
    A backend that answers every request with a chunked body written in
    C{count} pieces, C{interval} seconds apart.
    """

    def __init__(self, count: int, interval: float) -> None:
        self.count = count
        self.interval = interval
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if b"\r\n\r\n" not in self.buffer:
            return
        self.buffer = b""
        self.transport.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n")
        self.calls = task.LoopingCall(self._piece)
        self.sent = 0
        self.calls.start(self.interval)

    def _piece(self) -> None:
        if self.transport is None or not self.transport.connected:
            self.calls.stop()
            return
        if self.sent == self.count:
            self.transport.write(b"0\r\n\r\n")
            self.calls.stop()
            return
        self.sent += 1
        data = b"piece %d\n" % self.sent
        self.transport.write(b"%x\r\n%s\r\n" % (len(data), data))

    def connectionLost(self, reason: Any = None) -> None:
        calls = getattr(self, "calls", None)
        if calls is not None and calls.running:
            calls.stop()


def _routers(extra: int, servers: list[int]) -> str:
    lines = [
        '[http.routers.app]\nrule = "Host(`app.example`)"\nservice = "app"\n',
        "[http.services.app.loadBalancer]",
    ]
    for server in servers:
        lines.append(f'[[http.services.app.loadBalancer.servers]]\nurl = "http://127.0.0.1:{server}"')
    for n in range(extra):
        lines.append(f'[http.routers.extra{n}]\nrule = "Host(`extra{n}.example`)"\nservice = "app"\n')
    return "\n".join(lines) + "\n"


class ReloadTests(TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_noFailuresAcrossFiftyReloads(self) -> Any:
        """
        Eight clients sending keep-alive requests without pause see no error
        and no non-200 answer while the dynamic file is rewritten 50 times,
        adding and removing routers and changing the server list.
        """
        portA, _ = startBackend("A")
        portB, _ = startBackend("B")
        self.addCleanup(portA.stopListening)
        self.addCleanup(portB.stopListening)
        a, b = portA.getHost().port, portB.getHost().port
        process, web, dynamic = startRelayd(self, _routers(0, [a]))
        yield process.waitForLog("listening on")
        stop = threading.Event()
        results: dict[str, int] = {"ok": 0}
        failures: list[str] = []
        lock = threading.Lock()

        def client() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", webPort, timeout=10)
            while not stop.is_set():
                try:
                    connection.request("GET", "/", headers={"Host": "app.example"})
                    response = connection.getresponse()
                    response.read()
                    with lock:
                        if response.status == 200:
                            results["ok"] += 1
                        else:
                            failures.append(f"status {response.status}")
                except Exception as e:  # noqa: BLE001 - every failure counts
                    with lock:
                        failures.append(repr(e))
                    connection.close()
                    connection = http.client.HTTPConnection("127.0.0.1", webPort, timeout=10)
            connection.close()

        webPort = _port(process)
        workers = [threads.deferToThread(client) for _ in range(8)]
        layouts = [[a], [b], [a, b], [b, a]]
        for n in range(50):
            atomicWrite(dynamic, _routers(n % 7, layouts[n % len(layouts)]))
            yield task.deferLater(reactor, 0.12, lambda: None)
        stop.set()
        yield defer.gatherResults(workers)
        self.assertEqual(failures, [])
        self.assertGreater(results["ok"], 200)
        self.assertGreaterEqual(process.output().count("configuration generation"), 20, process.output())

    @defer.inlineCallbacks
    def test_streamingResponseOutlivesItsRouter(self) -> Any:
        """
        A response streaming for 10 s completes, every piece in order, while
        a reload removes the router that matched it.
        """
        factory = protocol.Factory.forProtocol(lambda: _Streaming(count=20, interval=0.5))
        backend = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(backend.stopListening)
        process, _, dynamic = startRelayd(self, _routers(0, [backend.getHost().port]))
        yield process.waitForLog("listening on")
        webPort = _port(process)
        started = time.monotonic()
        response = threads.deferToThread(blockingGet, webPort, "/", 30.0)
        yield task.deferLater(reactor, 1.0, lambda: None)
        atomicWrite(dynamic, '[http.routers.other]\nrule = "Host(`other.example`)"\nservice = "noop@internal"\n')
        yield task.deferLater(reactor, 1.0, lambda: None)
        status, _ = yield threads.deferToThread(blockingGet, webPort, "/", 5.0)
        self.assertEqual(status, 404, "the router is gone for new requests")
        status, body = yield response
        self.assertEqual(status, 200)
        self.assertEqual(body, b"".join(b"piece %d\n" % n for n in range(1, 21)))
        self.assertGreater(time.monotonic() - started, 9.0)


def _port(process: RelaydProcess) -> int:
    """
    The web port from relayd's log line "listening on 127.0.0.1:PORT".
    """
    for line in process.output().splitlines():
        if "entrypoint web listening on" in line:
            return int(line.split("listening on ")[1].split(" ")[0].rpartition(":")[2])
    raise AssertionError(process.output())


class _Slow(protocol.Protocol):
    """
    A backend that answers each request after C{delay} seconds.
    """

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if b"\r\n\r\n" in self.buffer:
            self.buffer = b""
            self.timer = reactor.callLater(self.delay, self._answer)

    def _answer(self) -> None:
        if self.transport.connected:
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow")

    def connectionLost(self, reason: Any = None) -> None:
        timer = getattr(self, "timer", None)
        if timer is not None and timer.active():
            timer.cancel()


class ShutdownTests(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_drainsThenExitsZero(self) -> Any:
        """
        After SIGTERM relayd keeps accepting for requestAcceptGraceTimeout
        while /ping answers 503, then refuses new connections, lets the
        request in flight finish within graceTimeOut, and exits 0.
        """
        backend = reactor.listenTCP(0, protocol.Factory.forProtocol(lambda: _Slow(3.0)), interface="127.0.0.1")
        self.addCleanup(backend.stopListening)
        process, _, _ = startRelayd(
            self,
            _routers(0, [backend.getHost().port]),
            static="""
[entryPoints.web.transport.lifeCycle]
requestAcceptGraceTimeout = "1s"
graceTimeOut = "10s"

[ping]
entryPoint = "web"
""",
        )
        yield process.waitForLog("listening on")
        webPort = _port(process)
        status, body = yield threads.deferToThread(blockingGet, webPort, "/ping", 5.0, "localhost")
        self.assertEqual((status, body), (200, b"OK"))
        inFlight = threads.deferToThread(blockingGet, webPort, "/", 20.0)
        yield task.deferLater(reactor, 0.3, lambda: None)
        sentAt = time.monotonic()
        process.process.send_signal(signal.SIGTERM)
        yield task.deferLater(reactor, 0.3, lambda: None)
        status, _ = yield threads.deferToThread(blockingGet, webPort, "/ping", 5.0, "localhost")
        self.assertEqual(status, 503, "ping answers the terminating code during the accept grace")
        yield task.deferLater(reactor, 1.2, lambda: None)
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", webPort), timeout=2).close()
        status, body = yield inFlight
        self.assertEqual((status, body), (200, b"slow"))
        code = yield threads.deferToThread(process.process.wait, 15)
        self.assertEqual(code, 0, process.output())
        self.assertLess(time.monotonic() - sentAt, 8.0)

    @defer.inlineCallbacks
    def test_graceTimeOutBoundsTheWait(self) -> Any:
        """
        A request that would outlast graceTimeOut is cut off when it
        expires, and relayd still exits 0.
        """
        backend = reactor.listenTCP(0, protocol.Factory.forProtocol(lambda: _Slow(60.0)), interface="127.0.0.1")
        self.addCleanup(backend.stopListening)
        process, _, _ = startRelayd(
            self,
            _routers(0, [backend.getHost().port]),
            static="""
[entryPoints.web.transport.lifeCycle]
graceTimeOut = "1s"
""",
        )
        yield process.waitForLog("listening on")
        webPort = _port(process)

        def hanging() -> str:
            try:
                return repr(blockingGet(webPort, "/", 20.0))
            except Exception as e:  # noqa: BLE001
                return type(e).__name__

        inFlight = threads.deferToThread(hanging)
        yield task.deferLater(reactor, 0.3, lambda: None)
        sentAt = time.monotonic()
        process.process.send_signal(signal.SIGTERM)
        code = yield threads.deferToThread(process.process.wait, 15)
        elapsed = time.monotonic() - sentAt
        self.assertEqual(code, 0, process.output())
        self.assertLess(elapsed, 5.0)
        self.assertGreater(elapsed, 0.8)
        outcome = yield inFlight
        self.assertNotIn("200", outcome)
        self.assertIn("graceTimeOut reached", process.output())


class _Sink(protocol.Protocol):
    """
    A backend that reads a request body of any size, counting bytes, and
    answers with the count; or, for GET /download/N, streams N bytes.
    """

    def __init__(self) -> None:
        self.buffer = b""
        self.remaining = -1
        self.count = 0

    def dataReceived(self, data: bytes) -> None:
        if self.remaining < 0:
            self.buffer += data
            if b"\r\n\r\n" not in self.buffer:
                return
            head, _, data = self.buffer.partition(b"\r\n\r\n")
            self.buffer = b""
            lines = head.split(b"\r\n")
            if lines[0].startswith(b"GET /download/"):
                self._download(int(lines[0].split(b" ")[1].rsplit(b"/", 1)[1]))
                return
            length = [int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length:")]
            self.remaining = length[0] if length else 0
        self.count += len(data)
        self.remaining -= len(data)
        if self.remaining <= 0:
            body = b"%d" % self.count
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            self.remaining = -1
            self.count = 0

    def _download(self, size: int) -> None:
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        self.left = size
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    chunk = b"x" * (256 * 1024)

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and self.left > 0:
            piece = self.chunk if self.left >= len(self.chunk) else self.chunk[: self.left]
            self.left -= len(piece)
            self.transport.write(piece)
        if self.left == 0:
            self.left = -1
            self.transport.unregisterProducer()

    def stopProducing(self) -> None:
        self.left = -1


GIB = 1 << 30


class LargeBodyTests(TestCase):
    timeout = 180

    @defer.inlineCallbacks
    def test_oneGibibyteEachWay(self) -> Any:
        """
        A 1 GiB upload and a 1 GiB download through relayd arrive complete,
        and relayd's resident memory grows by less than 50 MB meanwhile:
        bodies are streamed with backpressure, never buffered whole.
        """
        backend = reactor.listenTCP(0, protocol.Factory.forProtocol(_Sink), interface="127.0.0.1")
        self.addCleanup(backend.stopListening)
        process, _, _ = startRelayd(self, _routers(0, [backend.getHost().port]))
        yield process.waitForLog("listening on")
        webPort = _port(process)
        pid = process.process.pid
        status, _ = yield threads.deferToThread(blockingGet, webPort, "/download/1000", 10.0)
        self.assertEqual(status, 200)
        baseline = rss(pid)
        peak = [baseline]
        sampling = task.LoopingCall(lambda: peak.append(rss(pid)))
        sampling.start(0.05)

        def upload() -> bytes:
            block = b"u" * (1 << 20)
            with socket.create_connection(("127.0.0.1", webPort), timeout=60) as s:
                s.sendall(b"POST /upload HTTP/1.1\r\nHost: app.example\r\nContent-Length: %d\r\n\r\n" % GIB)
                for _ in range(GIB // len(block)):
                    s.sendall(block)
                answer = b""
                while not answer.endswith(b"%d" % GIB) and len(answer) < 1000:
                    data = s.recv(1000)
                    if not data:
                        break
                    answer += data
                return answer

        def download() -> int:
            with socket.create_connection(("127.0.0.1", webPort), timeout=60) as s:
                s.sendall(b"GET /download/%d HTTP/1.1\r\nHost: app.example\r\n\r\n" % GIB)
                head = b""
                while b"\r\n\r\n" not in head:
                    head += s.recv(65536)
                head, _, body = head.partition(b"\r\n\r\n")
                assert b"Content-Length: %d" % GIB in head, head
                received = len(body)
                while received < GIB:
                    data = s.recv(1 << 20)
                    if not data:
                        break
                    received += len(data)
                return received

        try:
            answer = yield threads.deferToThread(upload)
            received = yield threads.deferToThread(download)
        finally:
            sampling.stop()
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK"), answer)
        self.assertTrue(answer.endswith(b"%d" % GIB), answer)
        self.assertEqual(received, GIB)
        growth = max(peak) - baseline
        self.assertLess(growth, 50 * 1000 * 1000, f"RSS grew by {growth / 1e6:.1f} MB")
