"""
Test helpers: free loopback ports, tiny real HTTP backends, a client, and a
real C{twistd relayd} process started from this tree.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Sequence

from twisted.internet import defer, reactor, task
from twisted.web import resource, server
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def freePorts(count: int = 1, host: str = "127.0.0.1") -> list[int]:
    """
    Ports that were free a moment ago on loopback.
    """
    sockets = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        s.bind((host, 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class EchoResource(resource.Resource):
    """
    A backend that answers with JSON describing the request it got and its own
    name, so tests can see where a request went and what arrived.
    """

    isLeaf = True

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.requests: list[dict[str, Any]] = []
        # Paths answered 500 (to fail health checks).
        self.failPaths: set[str] = set()

    def render(self, request: server.Request) -> bytes:
        if request.path.decode("latin-1") in self.failPaths:
            request.setResponseCode(500)
            return b"failing on purpose"
        content = request.content.read()
        seen = {
            "backend": self.name,
            "method": request.method.decode(),
            "uri": request.uri.decode("latin-1"),
            "headers": {
                k.decode().lower(): [v.decode("latin-1") for v in vs]
                for k, vs in request.requestHeaders.getAllRawHeaders()
            },
            "body": content.decode("latin-1"),
        }
        self.requests.append(seen)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"x-backend", self.name.encode())
        return json.dumps(seen).encode()


def startBackend(name: str, port: int = 0) -> tuple[Any, EchoResource]:
    """
    Start an echo backend on 127.0.0.1; returns the listening port and resource.
    """
    echo = EchoResource(name)
    site = server.Site(echo)
    site.noisy = False
    listening = reactor.listenTCP(port, site, interface="127.0.0.1")
    return listening, echo


class Client:
    """
    An HTTP/1.1 client with its own connection pool.
    """

    def __init__(self, persistent: bool = False) -> None:
        self.pool = HTTPConnectionPool(reactor, persistent=persistent)
        self.agent = Agent(reactor, pool=self.pool)

    @defer.inlineCallbacks
    def get(self, url: str, host: str | None = None, method: bytes = b"GET", headers: dict[str, str] | None = None):
        h = Headers()
        if host:
            h.setRawHeaders(b"host", [host.encode()])
        for k, v in (headers or {}).items():
            h.setRawHeaders(k.encode(), [v.encode()])
        response = yield self.agent.request(method, url.encode(), h)
        body = yield readBody(response)
        return response, body

    def close(self) -> defer.Deferred[None]:
        return self.pool.closeCachedConnections()


def twistdCommand(*args: str) -> list[str]:
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", *args]


class RelaydProcess:
    """
    A real C{twistd -n relayd} process running this tree's code, with its log in
    a file. Stop it with L{stop}.
    """

    def __init__(self, args: Sequence[str], cwd: str, env: dict[str, str] | None = None) -> None:
        self.logPath = os.path.join(cwd, "relayd.log")
        self.log = open(self.logPath, "wb")
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("RELAYD_", "TRAEFIK_"))}
        environment["PYTHONPATH"] = ROOT + os.pathsep + environment.get("PYTHONPATH", "")
        environment.update(env or {})
        pidfile = os.path.join(cwd, "twistd.pid")
        self.process = subprocess.Popen(
            twistdCommand("-n", "--pidfile", pidfile, "relayd", *args),
            cwd=cwd,
            env=environment,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def output(self) -> str:
        self.log.flush()
        with open(self.logPath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def waitForLog(self, text: str, timeout: float = 20.0, count: int = 1) -> defer.Deferred[str]:
        """
        Fire when C{text} appears in the log (at least C{count} times); fail
        if the process exits or the time runs out.
        """
        deadline = time.monotonic() + timeout

        def check() -> Any:
            out = self.output()
            if out.count(text) >= count:
                return out
            if self.process.poll() is not None:
                raise AssertionError(f"relayd exited with {self.process.returncode}:\n{out}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged within {timeout}s:\n{out}")
            return task.deferLater(reactor, 0.05, check)

        return defer.maybeDeferred(check)

    def stop(self, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode


def poll(
    check: Callable[[], defer.Deferred[Any] | Any],
    timeout: float = 15.0,
    interval: float = 0.05,
) -> defer.Deferred[Any]:
    """
    Call C{check} until it returns a true value (or a Deferred of one); fail
    after C{timeout} seconds with the last result.
    """
    deadline = time.monotonic() + timeout

    @defer.inlineCallbacks
    def run():
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = yield defer.maybeDeferred(check)
            except Exception as e:
                last = e
            else:
                if last:
                    return last
            yield task.deferLater(reactor, interval, lambda: None)
        raise AssertionError(f"condition not met within {timeout}s; last result: {last!r}")

    return run()


def tempdir(testCase: Any) -> str:
    path = tempfile.mkdtemp(prefix="relayd-test-")
    import shutil

    testCase.addCleanup(shutil.rmtree, path, True)
    return path


def writeFile(path: str, text: str) -> None:
    """
    Replace a file's content atomically, as editors and deploy tools do.
    """
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def assertDecodeErrors(testCase: Any, decodeFn: Callable[[Any], Any], raw: Any, *expected: tuple[str, str]) -> None:
    """
    C{decodeFn(raw)} fails with exactly these (key path, message substring)
    pairs, in order.
    """
    from relayd.config.errors import ConfigError, flatten

    with testCase.assertRaises(ConfigError) as caught:
        decodeFn(raw)
    errors = flatten([caught.exception])
    testCase.assertEqual([e.path for e in errors], [path for path, _ in expected], [str(e) for e in errors])
    for error, (_, message) in zip(errors, expected):
        testCase.assertIn(message, error.message)


def memoryRequest(
    method: bytes = b"GET",
    uri: bytes = b"/",
    headers: Sequence[tuple[bytes | str, bytes | str]] = (),
    secure: bool = False,
    clientproto: bytes = b"HTTP/1.1",
    body: bytes = b"",
) -> Any:
    """
    An in-memory L{relayd.proxy.server.HTTPRequest} on a channel whose
    transport records what is written (C{request.testTransport.written}, a
    BytesIO). The request has the given head and, when C{body} is given, that
    body already received in full.
    """
    from twisted.internet.testing import StringTransport

    from relayd.proxy.server import ChannelSettings, HTTPRequest, HTTPSite, RequestBody
    from relayd.proxy.wire import HeaderMap

    site = HTTPSite(lambda request: None, ChannelSettings(secure=secure), reactor)
    channel = site.buildProtocol(None)
    transport = StringTransport()
    transport.written = transport.io  # type: ignore[attr-defined]
    channel.makeConnection(transport)
    fields = HeaderMap()
    for name, value in headers:
        fields.addRawHeader(name, value)
    request = HTTPRequest(channel, method, uri, clientproto, fields)
    request.body = RequestBody(channel, len(body), False)
    if body:
        request.body._received(body)
        request.body._completed(None)
    request.testTransport = transport
    channel.request = request
    channel.state = 2  # waiting for the answer
    return request
