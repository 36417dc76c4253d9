"""
The setup of the seed article (000): socket.io behind relayd, end to end.

Two real socket.io v4 replicas (node, C{tests/node/socketio-server.js}) are
created with C{path: '/'} as the article's "Path Prefix Gotchas" section says,
and a real C{twistd relayd} process routes C{PathPrefix(`/wsk`)} to them
through a C{replacePath} middleware, with the article's sticky cookie C{io}.
Its Docker labels become this file provider configuration, verbatim:
C{sameSite = "io"} included, which (as in Traefik) writes no SameSite
attribute.

The client (C{tests/node/socketio-client.js}, socket.io-client v4) connects
with C{path: '/wsk'} and C{transports: ['polling', 'websocket']}: it opens by
long-polling and upgrades to websocket, both through relayd, so every polling
request and the upgrade must carry the sticky cookie to reach the replica
that holds the session. In node, socket.io-client keeps cookies only with
C{withCredentials: true} (engine.io-client's cookie jar), which ignores the
cookie's C{Secure} attribute, so the cookie comes back over plain http here.

The tests need node and C{tests/node/node_modules} (C{tests/install-deps.sh}
runs C{npm ci} there); without them they are skipped, or fail when C{CI} is
C{"true"}. Every wait is bounded.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
from typing import Any

from twisted.internet import defer, task, threads
from twisted.trial.unittest import SkipTest, TestCase

from tests.helpers import ROOT, Client, RelaydProcess, freePorts, tempdir, writeFile

NODE_DIR = os.path.join(ROOT, "tests", "node")
SERVER_SCRIPT = os.path.join(NODE_DIR, "socketio-server.js")
CLIENT_SCRIPT = os.path.join(NODE_DIR, "socketio-client.js")
MESSAGES = 1000


def requireNode() -> str:
    """
    The path of node, once node and the packages in C{tests/node} are known
    to be there; otherwise skip, or fail when C{CI} is C{"true"}.
    """
    node = shutil.which("node")
    missing = []
    if node is None:
        missing.append("node is not on PATH")
    for package in ("socket.io", "socket.io-client"):
        if not os.path.isfile(os.path.join(NODE_DIR, "node_modules", package, "package.json")):
            missing.append(f"tests/node/node_modules/{package} is missing")
    if missing:
        reason = "; ".join(missing) + " (tests/install-deps.sh installs them)"
        if os.environ.get("CI") == "true":
            raise AssertionError(reason)
        raise SkipTest(reason)
    assert node is not None
    return node


class Replica:
    """
    A socket.io replica: C{node socketio-server.js NAME}, whose first line on
    stdout is its port. Its stderr goes to a file in C{directory}.
    """

    def __init__(self, node: str, name: str, directory: str, timeout: float = 15.0) -> None:
        self.name = name
        self.logPath = os.path.join(directory, f"replica-{name}.log")
        self.log = open(self.logPath, "wb")
        self.process = subprocess.Popen(
            [node, SERVER_SCRIPT, name],
            cwd=NODE_DIR,
            stdout=subprocess.PIPE,
            stderr=self.log,
            stdin=subprocess.DEVNULL,
        )
        try:
            self.port = self._readPort(timeout)
        except BaseException:
            self.stop()
            raise
        self.url = f"http://127.0.0.1:{self.port}"

    def _readPort(self, timeout: float) -> int:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        data = b""
        while b"\n" not in data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"replica {self.name} printed no port within {timeout}s: {self.output()}")
            readable, _, _ = select.select([self.process.stdout], [], [], remaining)
            if readable:
                chunk = os.read(self.process.stdout.fileno(), 1024)
                if not chunk:
                    raise AssertionError(f"replica {self.name} exited with {self.process.wait()}: {self.output()}")
                data += chunk
        return int(data.split(b"\n", 1)[0])

    def output(self) -> str:
        self.log.flush()
        with open(self.logPath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.log.close()
        return self.process.returncode


class ClientRun:
    """
    What one run of C{socketio-client.js} printed: its JSON summaries (one
    per client), its exit code and stderr, and when it began sending.
    """

    def __init__(self) -> None:
        self.summaries: list[dict[str, Any]] = []
        self.stray: list[str] = []
        self.exchangeStarted: float | None = None
        self.onExchange: Any = None
        self.returncode: int | None = None
        self.stderr = ""
        self.elapsed = 0.0

    def describe(self) -> str:
        lines = [json.dumps(s) for s in self.summaries]
        stray = "".join(self.stray)
        return "\n".join([f"exit code {self.returncode}", *lines, "other output:", stray, "stderr:", self.stderr])


def runClient(
    node: str,
    port: int,
    directory: str,
    *,
    clients: int = 1,
    messages: int = MESSAGES,
    window: int = 20,
    duration: int = 0,
    cookies: str = "jar",
    transports: str = "polling,websocket",
    timeout: float = 20.0,
    onExchange: Any = None,
) -> ClientRun:
    """
    Run the client against relayd on C{port} (blocking; call it in a thread)
    and collect what it printed. C{onExchange} is called (in this thread) when
    the first client starts sending. The process is killed if it outlives
    C{timeout} plus a margin; the client's own deadline is C{timeout}.
    """
    run = ClientRun()
    stderrPath = os.path.join(directory, f"client-{time.monotonic_ns()}.err")
    started = time.monotonic()
    with open(stderrPath, "wb") as stderr:
        process = subprocess.Popen(
            [
                node,
                CLIENT_SCRIPT,
                "--url", f"http://127.0.0.1:{port}",
                "--path", "/wsk",
                "--clients", str(clients),
                "--messages", str(messages),
                "--window", str(window),
                "--duration", str(duration),
                "--cookies", cookies,
                "--transports", transports,
                "--timeout", str(int(timeout * 1000)),
            ],
            cwd=NODE_DIR,
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
        )
        watchdog = threading.Timer(timeout + 10.0, process.kill)
        watchdog.start()
        try:
            assert process.stdout is not None
            for raw in process.stdout:
                try:
                    line = json.loads(raw)
                except ValueError:
                    run.stray.append(raw.decode("utf-8", "replace"))
                    continue
                if line.get("event") == "exchange":
                    if run.exchangeStarted is None:
                        run.exchangeStarted = time.monotonic()
                        if onExchange is not None:
                            onExchange()
                else:
                    run.summaries.append(line)
            run.returncode = process.wait()
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
    run.elapsed = time.monotonic() - started
    with open(stderrPath, "rb") as f:
        run.stderr = f.read().decode("utf-8", "replace")
    return run


def rawUpgrade(port: int, path: str, timeout: float = 10.0) -> str:
    """
    Send a WebSocket handshake to relayd and return the response head
    (blocking; call it in a thread).
    """
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n\r\n", 1)[0].decode("latin-1")


def socketRouter() -> str:
    """
    The seed's Docker labels for the router and its middleware, as a file
    provider writes them: the router names its service (the Docker provider
    picks the container's only one) and its middleware is C{@file}.
    """
    return """
[http.routers.socket-router]
rule = "PathPrefix(`/wsk`)"
service = "service01"
middlewares = ["socket-replaceprefix@file"]

[http.middlewares.socket-replaceprefix.replacePath]
path = "/"
"""


def service01(replicas: list[Replica]) -> str:
    """
    The seed's service: both replicas behind a sticky cookie named C{io},
    with the seed's options.
    """
    servers = "".join(
        f'\n[[http.services.service01.loadBalancer.servers]]\nurl = "{replica.url}"\n' for replica in replicas
    )
    return f"""
[http.services.service01.loadBalancer]
{servers}
[http.services.service01.loadBalancer.sticky.cookie]
name = "io"
httpOnly = true
secure = true
sameSite = "io"
"""


def variant(replicas: list[Replica], n: int) -> str:
    """
    The seed's configuration plus a harmless change that depends on C{n}:
    another router comes and goes, gains and loses a headers middleware, and
    an unused service appears; C{socket-router} and C{service01} stay as they
    are.
    """
    extra = ""
    kind = n % 4
    if kind in (1, 2, 3):
        extra += f"""
[http.routers.other]
rule = "Host(`other{n}.example`)"
service = "service01"
"""
    if kind == 2:
        extra += f"""middlewares = ["other-headers"]

[http.middlewares.other-headers.headers.customResponseHeaders]
X-Generation = "{n}"
"""
    if kind == 3:
        extra += f"""
[http.services.spare.loadBalancer]
[[http.services.spare.loadBalancer.servers]]
url = "http://127.0.0.1:{replicas[0].port}"
"""
    return socketRouter() + service01(replicas) + extra


class SocketIOTests(TestCase):
    """
    socket.io through relayd as in the seed article: long-polling, then the
    websocket upgrade, with sticky sessions across both replicas.
    """

    timeout = 90

    def setUp(self) -> Any:
        self.node = requireNode()
        self.directory = tempdir(self)
        self.replicas = []
        for name in ("A", "B"):
            replica = Replica(self.node, name, self.directory)
            self.addCleanup(replica.stop)
            self.replicas.append(replica)
        return self.startRelayd()

    @defer.inlineCallbacks
    def startRelayd(self) -> Any:
        (self.web,) = freePorts(1)
        self.dynamicPath = os.path.join(self.directory, "dynamic.toml")
        writeFile(self.dynamicPath, variant(self.replicas, 0))
        staticPath = os.path.join(self.directory, "relayd.toml")
        writeFile(
            staticPath,
            f"""
[log]
level = "INFO"

[entryPoints.web]
address = "127.0.0.1:{self.web}"

[providers]
providersThrottleDuration = "10ms"

[providers.file]
filename = "{self.dynamicPath}"
pollInterval = "50ms"
""",
        )
        self.relayd = RelaydProcess(["--config", staticPath], self.directory)
        self.addCleanup(self.relayd.stop)
        yield self.relayd.waitForLog("entrypoint web listening on")
        yield self.relayd.waitForLog(": 1 HTTP routers, 1 services")

    def client(self, **kwargs: Any) -> defer.Deferred[ClientRun]:
        return threads.deferToThread(runClient, self.node, self.web, self.directory, **kwargs)

    def assertExchanged(self, run: ClientRun, summary: dict[str, Any], websocketOnly: bool = False) -> str:
        """
        One client reached websocket (by upgrading from polling, unless
        C{websocketOnly}) and got every ack exactly once, all from one replica,
        which saw the session's polling requests and its upgrade carry the
        same sticky cookie; returns that replica's name.
        """
        where = run.describe()
        self.assertEqual(summary["errors"], [], where)
        self.assertEqual(
            (summary["acks"], summary["lost"], summary["duplicates"], summary["mismatched"]),
            (MESSAGES, 0, 0, 0),
            where,
        )
        opened = "websocket" if websocketOnly else "polling"
        self.assertEqual(
            (summary["openedWith"], summary["upgraded"], summary["transport"]),
            (opened, not websocketOnly, "websocket"),
            where,
        )
        self.assertEqual(len(summary["replicas"]), 1, where)
        # The replica saw every message arrive over websocket.
        self.assertEqual(summary["serverTransports"], ["websocket"], where)
        info = summary["info"]
        self.assertEqual(info["replica"], summary["replicas"][0], where)
        self.assertEqual((info["openedWith"], info["transport"]), (opened, "websocket"), where)
        if not websocketOnly:
            cookie = "io=" + summary["jar"]["io"] if summary["cookies"] == "jar" else summary["sentCookie"]
            self.assertRegex(cookie, r"^io=[0-9a-f]{16}$")
            self.assertGreater(info["pollingRequests"], 0, where)
            self.assertEqual(info["pollingCookies"], [cookie], where)
            self.assertEqual(info["upgradeCookie"], cookie, where)
        return summary["replicas"][0]

    @defer.inlineCallbacks
    def test_setCookie(self) -> Any:
        """
        A handshake through C{/wsk} reaches a replica at C{/} and comes back
        with the seed's sticky cookie: C{io}, C{Path=/}, C{HttpOnly} and
        C{Secure}, and no SameSite attribute.
        """
        client = Client()
        self.addCleanup(client.close)
        response, body = yield client.get(f"http://127.0.0.1:{self.web}/wsk/?EIO=4&transport=polling")
        self.assertEqual(response.code, 200, body)
        self.assertIn(b'"sid":', body)
        (setCookie,) = response.headers.getRawHeaders(b"set-cookie")
        pair, *attributes = [part.strip() for part in setCookie.decode("latin-1").split(";")]
        self.assertRegex(pair, r"^io=[0-9a-f]{16}$")
        self.assertEqual(sorted(attributes), ["HttpOnly", "Path=/", "Secure"])

    @defer.inlineCallbacks
    def test_upgradeAndThousandAcks(self) -> Any:
        """
        The client opens by long-polling, upgrades to websocket and gets all
        1,000 acks exactly once, from the one replica its cookie names.
        """
        run = yield self.client()
        self.assertEqual(run.returncode, 0, run.describe())
        (summary,) = run.summaries
        self.assertExchanged(run, summary)
        self.assertLess(summary["elapsedMs"], 15000, run.describe())

    @defer.inlineCallbacks
    def test_seedClientWebSocketOnly(self) -> Any:
        """
        The seed article's own client, C{transports: ['websocket']}, opens
        with websocket through relayd and gets all 1,000 acks; relayd's 101
        carries the sticky cookie, as Traefik's does.
        """
        run = yield self.client(transports="websocket")
        self.assertEqual(run.returncode, 0, run.describe())
        (summary,) = run.summaries
        self.assertExchanged(run, summary, websocketOnly=True)
        head = yield threads.deferToThread(rawUpgrade, self.web, "/wsk/?EIO=4&transport=websocket")
        status, *fields = head.split("\r\n")
        self.assertEqual(status.split(" ")[1], "101", head)
        cookies = [f.split(":", 1)[1].strip() for f in fields if f.lower().startswith("set-cookie:")]
        self.assertEqual(len(cookies), 1, head)
        self.assertRegex(cookies[0], r"^io=[0-9a-f]{16}; ")

    @defer.inlineCallbacks
    def test_cookieFromExtraHeaders(self) -> Any:
        """
        Without the cookie jar, a cookie read from a handshake's Set-Cookie
        and passed in C{extraHeaders} works as well.
        """
        run = yield self.client(cookies="header")
        self.assertEqual(run.returncode, 0, run.describe())
        (summary,) = run.summaries
        self.assertExchanged(run, summary)

    @defer.inlineCallbacks
    def test_noCookiesNoSession(self) -> Any:
        """
        What the sticky cookie is for: a client that keeps no cookies (the
        default in node) has its requests balanced over both replicas, and
        the one that does not hold its session refuses them.
        """
        run = yield self.client(cookies="none", messages=10, timeout=10.0)
        self.assertEqual(run.returncode, 1, run.describe())
        (summary,) = run.summaries
        self.assertNotEqual(summary["errors"], [], run.describe())
        self.assertEqual(summary["acks"], 0, run.describe())
        self.assertFalse(summary["upgraded"], run.describe())

    @defer.inlineCallbacks
    def test_sixClientsStickToBothReplicas(self) -> Any:
        """
        Six clients at once: each upgrades and gets its 1,000 acks from a
        single replica, both replicas are used, and the cookie names the
        replica (clients on the same replica got the same value).
        """
        run = yield self.client(clients=6, timeout=30.0)
        self.assertEqual(run.returncode, 0, run.describe())
        self.assertEqual(len(run.summaries), 6, run.describe())
        cookies: dict[str, set[str]] = {}
        for summary in run.summaries:
            replica = self.assertExchanged(run, summary)
            cookies.setdefault(replica, set()).add(summary["jar"]["io"])
        self.assertEqual(sorted(cookies), ["A", "B"], run.describe())
        self.assertEqual([len(values) for values in cookies.values()], [1, 1], run.describe())
        self.assertNotEqual(cookies["A"], cookies["B"])

    @defer.inlineCallbacks
    def test_exchangeAcrossReloads(self) -> Any:
        """
        The 1,000 acks, spread over two seconds, all arrive exactly once while
        the dynamic file is rewritten every 100 ms (another router comes and
        goes and toggles a headers middleware; C{socket-router} stays), and
        relayd logs several new configuration generations during the exchange.
        """
        marker = "configuration generation"
        counts: dict[str, int] = {}
        rewrites = [0]

        def rewrite() -> None:
            rewrites[0] += 1
            writeFile(self.dynamicPath, variant(self.replicas, rewrites[0]))

        def exchangeStarted() -> None:
            counts["start"] = self.relayd.output().count(marker)

        loop = task.LoopingCall(rewrite)
        loop.start(0.1)
        try:
            run = yield self.client(duration=2000, onExchange=exchangeStarted)
        finally:
            counts["end"] = self.relayd.output().count(marker)
            if loop.running:
                loop.stop()
        self.assertEqual(run.returncode, 0, run.describe())
        (summary,) = run.summaries
        self.assertExchanged(run, summary)
        self.assertGreaterEqual(rewrites[0], 15)
        self.assertIn("start", counts, run.describe())
        self.assertGreaterEqual(counts["end"] - counts["start"], 5, self.relayd.output())
        self.assertNotIn("#error", self.relayd.output())
