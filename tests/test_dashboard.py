"""
The dashboard (C{dashboard@internal}): the asset handler on its own, and the
page itself in headless Chromium (Debian's C{chromium} driven by
C{playwright-core} from C{tests/node}) against a real C{twistd relayd} whose
file provider changes under it.
"""

from __future__ import annotations

import os
import re
import shutil
from types import SimpleNamespace
from typing import Any

from twisted.internet import defer, error, protocol, reactor
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from relayd.api.dashboard import CONTENT_TYPES, DashboardHandler, dashboardService, loadAssets
from relayd.interfaces import IHTTPHandler
from tests.helpers import ROOT, RelaydProcess, freePorts, memoryRequest, poll, startBackend, tempdir, writeFile

WEBUI = os.path.join(ROOT, "relayd", "api", "webui")
NODE_DIR = os.path.join(ROOT, "tests", "node")
SCRIPT = os.path.join(NODE_DIR, "dashboard.js")
CHROMIUM = os.environ.get("RELAYD_CHROMIUM", "/usr/bin/chromium")


def serve(
    path: str, method: bytes = b"GET", uri: str | None = None, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> tuple[int, dict[str, str], bytes]:
    """
    Ask the dashboard handler for C{path} (the forward path after the
    stripPrefix) and parse what it wrote: status, headers (lower-case names,
    last value), body.
    """
    target = uri if uri is not None else "/dashboard" + path
    request = memoryRequest(method=method, uri=target.encode(), headers=headers)
    request.relayd = SimpleNamespace(forwardPath=path, beforeResponse=[])
    dashboardService(None, {}).handle(request)  # type: ignore[arg-type]
    return parseResponse(request.testTransport.written.getvalue())


def parseResponse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return status, fields, body


def readAsset(name: str) -> bytes:
    with open(os.path.join(WEBUI, name), "rb") as f:
        return f.read()


class AssetHandlerTests(SynchronousTestCase):
    """
    The handler serves the packaged files, and nothing else.
    """

    def test_interface(self) -> None:
        """
        The dashboard service provides L{IHTTPHandler}.
        """
        handler = dashboardService(None, {})  # type: ignore[arg-type]
        self.assertIsInstance(handler, DashboardHandler)
        verifyObject(IHTTPHandler, handler)

    def test_index(self) -> None:
        """
        C{/} is C{index.html}, as HTML, revalidated on each use, with a
        content security policy that allows this origin only.
        """
        status, fields, body = serve("/")
        self.assertEqual(status, 200)
        self.assertEqual(body, readAsset("index.html"))
        self.assertEqual(fields["content-type"], "text/html; charset=utf-8")
        self.assertEqual(fields["content-length"], str(len(body)))
        self.assertEqual(fields["cache-control"], "no-cache")
        self.assertEqual(fields["x-content-type-options"], "nosniff")
        self.assertIn("default-src 'none'", fields["content-security-policy"])
        self.assertIn("connect-src 'self'", fields["content-security-policy"])
        self.assertTrue(fields["etag"].startswith('"'))
        self.assertEqual(serve("/index.html")[2], body)

    def test_contentTypes(self) -> None:
        """
        Each asset is served whole with the content type of its kind.
        """
        expected = {
            "/app.js": "text/javascript; charset=utf-8",
            "/style.css": "text/css; charset=utf-8",
            "/favicon.svg": "image/svg+xml",
        }
        for path, contentType in expected.items():
            status, fields, body = serve(path)
            self.assertEqual((status, fields["content-type"]), (200, contentType), path)
            self.assertEqual(body, readAsset(path[1:]))

    def test_head(self) -> None:
        """
        C{HEAD} gets the headers of C{GET}, with the length of the body it
        does not get.
        """
        status, fields, body = serve("/app.js", method=b"HEAD")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"")
        self.assertEqual(fields["content-length"], str(len(readAsset("app.js"))))
        self.assertEqual(fields["content-type"], "text/javascript; charset=utf-8")

    def test_otherMethods(self) -> None:
        """
        Other methods are answered 405 with the methods allowed.
        """
        for method in (b"POST", b"PUT", b"DELETE", b"OPTIONS"):
            status, fields, _ = serve("/", method=method)
            self.assertEqual(status, 405, method)
            self.assertEqual(fields["allow"], "GET, HEAD")

    def test_unknownFiles(self) -> None:
        """
        Paths that are not one of the assets are 404, whatever they try.
        """
        for path in (
            "/nope.js",
            "/webui/app.js",
            "/app.js/",
            "/APP.JS",
            "/../dashboard.py",
            "/../../__init__.py",
            "/..%2fdashboard.py",
            "/%2e%2e/internal.py",
            "//etc/passwd",
            "/dashboard.py",
            "/__init__.py",
            "/app.js%00.html",
        ):
            status, fields, body = serve(path)
            self.assertEqual(status, 404, path)
            self.assertEqual(body, b"404 page not found\n")
            self.assertEqual(fields["content-type"], "text/plain; charset=utf-8")

    def test_revalidation(self) -> None:
        """
        A request carrying the asset's ETag in C{If-None-Match} is answered
        304 without a body; another ETag gets the file.
        """
        _, fields, _ = serve("/style.css")
        etag = fields["etag"].encode()
        status, again, body = serve("/style.css", headers=((b"if-none-match", b'"other", ' + etag),))
        self.assertEqual((status, body), (304, b""))
        self.assertEqual(again["etag"], etag.decode())
        status, _, body = serve("/style.css", headers=((b"if-none-match", b'"other"'),))
        self.assertEqual((status, body), (200, readAsset("style.css")))

    def test_trailingSlash(self) -> None:
        """
        C{/dashboard} (no slash, so the page's relative URLs would miss) is
        sent to C{dashboard/} relative to itself, query kept.
        """
        status, fields, _ = serve("/", uri="/dashboard")
        self.assertEqual((status, fields["location"]), (301, "./dashboard/"))
        status, fields, _ = serve("/", uri="/admin/dashboard?x=1")
        self.assertEqual((status, fields["location"]), (301, "./dashboard/?x=1"))
        self.assertEqual(serve("/", uri="/dashboard/")[0], 200)

    def test_failureIsAnswered(self) -> None:
        """
        A request the handler cannot read is answered 500, not with a
        traceback.
        """
        request = memoryRequest(uri=b"/dashboard/")
        request.relayd = None
        DashboardHandler(loadAssets()).handle(request)
        status, _, body = parseResponse(request.testTransport.written.getvalue())
        self.assertEqual((status, body), (500, b"Internal Server Error\n"))
        self.assertEqual(len(self.flushLoggedErrors(AttributeError)), 1)

    def test_everyAssetHasAKnownType(self) -> None:
        """
        Every file in the assets folder is served (none is skipped for an
        unknown type), and C{/} is the index.
        """
        assets = loadAssets()
        names = sorted(n for n in os.listdir(WEBUI) if not n.startswith("."))
        self.assertEqual(sorted(a.name for p, a in assets.items() if p != "/"), names)
        for name in names:
            self.assertIn(os.path.splitext(name)[1], CONTENT_TYPES)
        self.assertIs(assets["/"], assets["/index.html"])


class OfflineAssetsTests(SynchronousTestCase):
    """
    The page needs nothing but its own files and the API.
    """

    def test_noExternalURLs(self) -> None:
        """
        No asset names another host (the SVG namespace excepted), so the
        dashboard works offline and its policy holds.
        """
        for name in os.listdir(WEBUI):
            text = readAsset(name).decode("utf-8").replace('xmlns="http://www.w3.org/2000/svg"', "")
            self.assertEqual(re.findall(r"(?:https?:)?//[\w.-]+\.\w+", text), [], name)
            self.assertNotIn("@import", text, name)

    def test_indexReferencesPackagedFiles(self) -> None:
        """
        Every C{src} and C{href} of the index that is not a hash route or the
        API is one of the packaged files.
        """
        index = readAsset("index.html").decode("utf-8")
        references = re.findall(r'(?:src|href)="([^"]+)"', index)
        files = {r for r in references if not r.startswith(("#", "../api/"))}
        self.assertEqual(files, {"app.js", "style.css", "favicon.svg"})
        for name in files:
            self.assertTrue(os.path.isfile(os.path.join(WEBUI, name)), name)

    def test_apiURLsAreRelative(self) -> None:
        """
        The script reaches the API through the relative C{../api/}, so the
        page works at C{/dashboard/} on any host and under any prefix.
        """
        script = readAsset("app.js").decode("utf-8")
        self.assertIn('const API = "../api/";', script)
        self.assertNotIn('"/api', script)


class ServedTests(TestCase):
    """
    A real relayd in insecure API mode serves the dashboard through Traefik's
    internal routers (no browser needed).
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_insecureMode(self):
        """
        The root redirects to C{/dashboard/}, which is the index; the assets
        come with their types; C{HEAD} works; unknown and escaping paths are
        404.
        """
        from tests.helpers import Client

        directory = tempdir(self)
        (port,) = freePorts(1)
        writeFile(
            os.path.join(directory, "relayd.toml"),
            f'[api]\ninsecure = true\n\n[entryPoints.traefik]\naddress = "127.0.0.1:{port}"\n',
        )
        relayd = RelaydProcess(["--config", "relayd.toml"], cwd=directory)
        self.addCleanup(relayd.stop)
        base = f"http://127.0.0.1:{port}"
        yield poll(lambda: _answers(base + "/api/version"), timeout=30)
        client = Client()
        self.addCleanup(client.close)

        response, _ = yield client.get(base + "/")
        self.assertEqual(response.code, 301)
        self.assertEqual(response.headers.getRawHeaders(b"location"), [f"{base}/dashboard/".encode()])
        response, body = yield client.get(base + "/dashboard/")
        self.assertEqual((response.code, body), (200, readAsset("index.html")))
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"text/html; charset=utf-8"])
        types = (("app.js", b"text/javascript; charset=utf-8"), ("style.css", b"text/css; charset=utf-8"))
        for name, contentType in types:
            response, body = yield client.get(f"{base}/dashboard/{name}")
            self.assertEqual((response.code, body), (200, readAsset(name)))
            self.assertEqual(response.headers.getRawHeaders(b"content-type"), [contentType])
        response, body = yield client.get(base + "/dashboard/app.js", method=b"HEAD")
        self.assertEqual((response.code, body), (200, b""))
        self.assertEqual(response.headers.getRawHeaders(b"content-length"), [str(len(readAsset("app.js"))).encode()])
        for path in ("/dashboard/nope.js", "/dashboard/%2e%2e/dashboard.py", "/dashboard/..%2fdashboard.py"):
            response, body = yield client.get(base + path)
            self.assertEqual(response.code, 404, path)
            self.assertNotIn(b"import", body)


def _requireBrowser() -> str:
    """
    The node executable, once node, playwright-core and Chromium are all
    there; otherwise skip (or fail when CI=true).
    """
    problems = []
    node = shutil.which("node")
    if node is None:
        problems.append("node is not installed")
    if not os.path.isfile(os.path.join(NODE_DIR, "node_modules", "playwright-core", "package.json")):
        problems.append("playwright-core is not installed in tests/node (npm ci --prefix tests/node)")
    if not os.access(CHROMIUM, os.X_OK):
        problems.append(f"{CHROMIUM} is not installed (apt-get install chromium)")
    if problems:
        message = "; ".join(problems)
        if os.environ.get("CI") == "true":
            raise AssertionError(f"the dashboard browser test cannot run: {message}")
        raise SkipTest(message)
    assert node is not None
    return node


class _Driver(protocol.ProcessProtocol):
    """
    The node script: its stdout lines are its steps; each C{STEP name} line
    fires the Deferred waiting for that step, and the test answers on stdin.
    """

    def __init__(self) -> None:
        self.buffer = b""
        self.lines: list[str] = []
        self.stderr = b""
        self.waiting: dict[str, defer.Deferred[None]] = {}
        self.ended: defer.Deferred[int] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            text = line.decode("utf-8", "replace")
            self.lines.append(text)
            if text.startswith("STEP "):
                step = text[5:].strip()
                if step in self.waiting:
                    self.waiting.pop(step).callback(None)

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def step(self, name: str) -> defer.Deferred[None]:
        if f"STEP {name}" in self.lines:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self.waiting[name] = d
        return d

    def processEnded(self, reason: Any) -> None:
        code = reason.value.exitCode if isinstance(reason.value, (error.ProcessDone, error.ProcessTerminated)) else -1
        for d in self.waiting.values():
            d.errback(AssertionError(f"the browser script ended before its step:\n{self.report()}"))
        self.waiting.clear()
        self.ended.callback(code)

    def report(self) -> str:
        return "\n".join(self.lines) + "\n--- stderr ---\n" + self.stderr.decode("utf-8", "replace")


def _dynamic(appPort: int, upPort: int, downPort: int, changed: bool) -> str:
    config = f"""
[http.routers.app]
rule = "Host(`app.example`)"
entryPoints = ["web"]
service = "app"

# The API and dashboard behind a user router, under a prefix.
[http.routers.ops]
rule = "PathPrefix(`/ops`)"
entryPoints = ["web"]
middlewares = ["ops-strip"]
service = "api@internal"

[http.middlewares.ops-strip.stripPrefix]
prefixes = ["/ops"]

[http.services.app.loadBalancer]
[[http.services.app.loadBalancer.servers]]
url = "http://127.0.0.1:{appPort}"

[http.services.pool.loadBalancer]
[[http.services.pool.loadBalancer.servers]]
url = "http://127.0.0.1:{upPort}"
[[http.services.pool.loadBalancer.servers]]
url = "http://127.0.0.1:{downPort}"
[http.services.pool.loadBalancer.healthCheck]
path = "/health"
interval = "300ms"
timeout = "2s"
"""
    if changed:
        config += """
[http.routers.added]
rule = "Host(`added.example`)"
entryPoints = ["web"]
service = "pool"

[http.routers.broken]
rule = "Host(`broken.example`)"
entryPoints = ["web"]
service = "missing"
"""
    return config


class BrowserTests(TestCase):
    """
    The dashboard in headless Chromium against a real relayd.
    """

    timeout = 240

    @defer.inlineCallbacks
    def test_dashboard(self):
        """
        The pages render from the API; a router added to the file provider
        and a broken one (its service is missing) appear without a reload,
        the broken one disabled with its error; search and status filter
        narrow the list; a health-checked service shows one server UP and
        one DOWN; the same page works behind a user router to
        C{api@internal} under a prefix; the script takes a screenshot.
        """
        node = _requireBrowser()
        directory = tempdir(self)
        backends = []
        for name in ("app", "up", "down"):
            listening, echo = startBackend(name)
            self.addCleanup(listening.stopListening)
            backends.append((listening.getHost().port, echo))
        backends[2][1].failPaths.add("/health")
        webPort, dashboardPort = freePorts(2)
        dynamicPath = os.path.join(directory, "dynamic.toml")
        writeFile(dynamicPath, _dynamic(backends[0][0], backends[1][0], backends[2][0], changed=False))
        writeFile(
            os.path.join(directory, "relayd.toml"),
            f"""
[entryPoints.web]
address = "127.0.0.1:{webPort}"

[entryPoints.traefik]
address = "127.0.0.1:{dashboardPort}"

[api]
insecure = true
dashboard = true

[providers.file]
filename = "{dynamicPath}"
watch = true
""",
        )
        relayd = RelaydProcess(["--config", "relayd.toml"], cwd=directory)
        self.addCleanup(relayd.stop)
        yield poll(lambda: _answers(f"http://127.0.0.1:{dashboardPort}/api/version"), timeout=30)

        screenshot = os.environ.get("RELAYD_DASHBOARD_SCREENSHOT") or os.path.join(directory, "dashboard.png")
        driver = _Driver()
        environment = {k: v for k, v in os.environ.items() if not k.startswith("PLAYWRIGHT_")}
        environment["NODE_PATH"] = os.path.join(NODE_DIR, "node_modules")
        transport = reactor.spawnProcess(
            driver,
            node,
            [
                node,
                SCRIPT,
                f"http://127.0.0.1:{dashboardPort}/",
                CHROMIUM,
                screenshot,
                f"http://127.0.0.1:{webPort}/ops/dashboard/",
            ],
            env=environment,
            path=directory,
        )

        def kill() -> None:
            try:
                transport.signalProcess("KILL")
            except error.ProcessExitedAlready:
                pass

        self.addCleanup(kill)
        try:
            yield _within(driver.step("change"), 100, driver)
            writeFile(dynamicPath, _dynamic(backends[0][0], backends[1][0], backends[2][0], changed=True))
            transport.write(b"changed\n")
            code = yield _within(driver.ended, 120, driver)
        except Exception as e:
            raise AssertionError(f"{e}\n--- relayd ---\n{relayd.output()}") from e
        self.assertEqual(code, 0, driver.report() + "\n--- relayd ---\n" + relayd.output())
        self.assertIn("OK", driver.lines, driver.report())
        with open(screenshot, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")


def _within(d: defer.Deferred[Any], seconds: float, driver: _Driver) -> defer.Deferred[Any]:
    """
    C{d}, failed with the script's output when it takes longer than
    C{seconds}.
    """

    def timedOut(result: Any, timeout: float) -> Any:
        raise AssertionError(f"the browser script did not get there within {timeout}s:\n{driver.report()}")

    d.addTimeout(seconds, reactor, onTimeoutCancel=timedOut)
    return d


def _answers(url: str) -> defer.Deferred[bool]:
    from tests.helpers import Client

    client = Client()

    def done(result: Any) -> Any:
        return client.close().addCallback(lambda _: result)

    d = client.get(url).addCallback(lambda r: r[0].code == 200 and b"Version" in r[1])
    return d.addBoth(done)


class DocsTests(SynchronousTestCase):
    """
    The configuration shown in the dashboard's page of the docs checks clean.
    """

    def test_insecureExample(self) -> None:
        """
        The insecure-mode example of C{docs/dashboard.rst} passes
        C{relayd check}.
        """
        import io

        from relayd.cli import main

        with open(os.path.join(ROOT, "docs", "dashboard.rst"), encoding="utf-8") as f:
            text = f.read()
        start = text.index("::\n", text.index("the insecure")) + 3
        lines = []
        for line in text[start:].splitlines()[1:]:
            if line and not line.startswith("    "):
                break
            lines.append(line[4:])
        block = "\n".join(lines).strip() + "\n"
        self.assertIn("insecure = true", block)
        path = os.path.join(tempdir(self), "relayd.toml")
        writeFile(path, block)
        out = io.StringIO()
        self.assertEqual(main(["check", "--config", path], out), 0, out.getvalue())
        self.assertNotIn("warning", out.getvalue())
