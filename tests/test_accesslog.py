"""
The access log (relayd.observability.accesslog) and the process log file:
lines formatted from in-memory requests and parsed back (common with a
regex, json with json.loads), filters, fields and headers, batching, and
end to end through a real C{twistd relayd} in front of real backends and a
real WebSocket server, including rotation with SIGUSR1.
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import re
import signal
from types import SimpleNamespace
from typing import Any

from twisted.internet import defer, reactor, threads
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial import unittest
from twisted.web import resource, server

from relayd.config.dynamic import Router as RouterConfig
from relayd.config.dynamic import RouterObservability
from relayd.config.static import AccessLog as AccessLogConfig
from relayd.config.static import AccessLogFields, AccessLogFilters, AccessLogHeaders, Log
from relayd.config.types import Duration, FrozenMap
from relayd.entrypoints import RequestContext
from relayd.observability import log as logModule
from relayd.observability.accesslog import BATCH_DELAY, AccessLog, FileOutput, clfTime, rfc3339
from relayd.proxy.responses import plainResponse
from tests.helpers import Client, RelaydProcess, freePorts, memoryRequest, poll, startBackend, tempdir, writeFile

# Traefik's common format, parsed back.
COMMON_LINE = re.compile(
    r'^(?P<client>\S+) - (?P<user>\S+) \[(?P<time>[^\]]+)\] '
    r'"(?P<method>\S+) (?P<path>\S+) (?P<proto>\S+)" (?P<status>\d{3}) (?P<size>\d+|-) '
    r'"(?P<referer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)" '
    r'(?P<count>\d+) "(?P<router>[^"]*)" "(?P<server>[^"]*)" (?P<ms>\d+)ms$'
)
GENERIC_LINE = re.compile(
    r'^(?P<client>\S+) - (?P<user>\S+) \[(?P<time>[^\]]+)\] '
    r'"(?P<method>\S+) (?P<path>\S+) (?P<proto>\S+)" (?P<status>\d{3}) (?P<size>\d+|-) '
    r'"(?P<referer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)"$'
)
# 2023-11-14T22:13:20.25Z (Go's RFC 3339 with nanoseconds, zeros cut).
START = 1700000000.25
# test:test, as htpasswd -nb writes it.
HTPASSWD = "test:$apr1$H6uskkkW$IgXLP6ewTrSuBkTrqE8wj/"


def parseCommon(line: str) -> dict[str, str]:
    match = COMMON_LINE.match(line)
    if match is None:
        raise AssertionError(f"not a common access log line: {line!r}")
    return match.groupdict()


class ListOutput:
    """
    An output that keeps every write.
    """

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.reopened = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def reopen(self) -> None:
        self.reopened += 1

    def close(self) -> None:
        self.closed = True

    @property
    def lines(self) -> list[str]:
        return b"".join(self.writes).decode("utf-8").splitlines()


def fakeRuntime(**routers: RouterConfig) -> Any:
    return SimpleNamespace(routers={name: SimpleNamespace(config=config) for name, config in routers.items()})


RUNTIME = fakeRuntime(**{"r@file": RouterConfig(service="s@file", rule="Host(`a.example`)")})


class Harness:
    """
    An access log on a fake clock writing to a L{ListOutput}, and a way to
    run a request through it.
    """

    def __init__(self, config: AccessLogConfig | None = None, runtime: Any = RUNTIME) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.output = ListOutput()
        self.log = AccessLog(config or AccessLogConfig(), self.clock, self.output)
        self.runtime = runtime

    def run(
        self,
        code: int = 200,
        body: str = "hello\n",
        uri: bytes = b"/path?q=1",
        headers: tuple[tuple[str, str], ...] = (("Host", "a.example"),),
        took: float = 0.25,
        router: str = "r@file",
        upstream: str = "http://10.0.0.1:8080",
        user: str = "",
        gone: bool = False,
        retries: int = 0,
        method: bytes = b"GET",
    ) -> Any:
        request = memoryRequest(method, uri, headers=headers)
        context = RequestContext(
            entryPoint="web",
            runtime=self.runtime,
            clientIP="192.0.2.7",
            localPort=80,
            forwardPath="/path",
            rawQuery="q=1",
            trustForwarded=False,
            router=router,
            service="s@file" if upstream else "",
            upstream=upstream,
            clientUsername=user,
            start=self.clock.seconds(),
        )
        context.retryAttempts = retries
        request.relayd = context
        if upstream:
            self.clock.advance(0.05)
            context.originStart = self.clock.seconds()
        self.clock.advance(took - (0.05 if upstream else 0))
        if gone:
            self.log.observe(request, context, Exception("client went away"))
            return request
        if upstream:
            request.responseHeaders.setRawHeaders(b"x-backend", [b"A"])
        plainResponse(request, code, body)
        self.log.observe(request, context, None)
        return request

    @property
    def lines(self) -> list[str]:
        return self.output.lines


def config(**kwargs: Any) -> AccessLogConfig:
    return AccessLogConfig(**kwargs)


def headerFields(defaultMode: str = "drop", **names: str) -> AccessLogFields:
    return AccessLogFields(headers=AccessLogHeaders(defaultMode=defaultMode, names=FrozenMap(names)))  # type: ignore[arg-type]


class TimeFormatTests(unittest.SynchronousTestCase):
    def test_clfTime(self) -> None:
        """
        The common format's time is Go's 02/Jan/2006:15:04:05 -0700 in UTC.
        """
        self.assertEqual(clfTime(START), "14/Nov/2023:22:13:20 +0000")

    def test_rfc3339(self) -> None:
        """
        JSON times are RFC 3339 with the fraction's trailing zeros cut and Z
        for UTC; logrus's time field has no fraction.
        """
        self.assertEqual(rfc3339(START, utc=True), "2023-11-14T22:13:20.25Z")
        self.assertEqual(rfc3339(1700000000.0, utc=True), "2023-11-14T22:13:20Z")
        self.assertEqual(rfc3339(START, utc=True, fraction=False), "2023-11-14T22:13:20Z")
        self.assertEqual(rfc3339(1700000000.9999999, utc=True), "2023-11-14T22:13:21Z")
        self.assertEqual(rfc3339(1700000000.000123, utc=True), "2023-11-14T22:13:20.000123Z")
        local = rfc3339(START, utc=False)
        parsed = datetime.datetime.fromisoformat(local.replace("Z", "+00:00"))
        self.assertEqual(parsed.timestamp(), START)


class CommonFormatTests(unittest.SynchronousTestCase):
    def test_lineParsesBack(self) -> None:
        """
        A common line carries client, user, UTC start time, method, path
        with query, protocol, status, body size, referer and user agent
        (dropped by default), request count, router, server URL and the
        duration in whole milliseconds.
        """
        harness = Harness()
        harness.run(user="alice", headers=(("Host", "a.example"), ("User-Agent", "curl/8"), ("Referer", "http://x/")))
        [line] = harness.lines
        fields = parseCommon(line)
        self.assertEqual(
            fields,
            {
                "client": "192.0.2.7",
                "user": "alice",
                "time": "14/Nov/2023:22:13:20 +0000",
                "method": "GET",
                "path": "/path?q=1",
                "proto": "HTTP/1.1",
                "status": "200",
                "size": "6",
                "referer": "-",
                "agent": "-",
                "count": "1",
                "router": "r@file",
                "server": "http://10.0.0.1:8080",
                "ms": "250",
            },
        )

    def test_noRouter(self) -> None:
        """
        A request no router matched is logged as Traefik does: 404, Go's
        19-byte body, no user, router and server as "-".
        """
        harness = Harness()
        harness.run(code=404, body="404 page not found\n", router="", upstream="", took=0.0004)
        fields = parseCommon(harness.lines[0])
        self.assertEqual(
            (fields["status"], fields["size"], fields["user"], fields["router"], fields["server"], fields["ms"]),
            ("404", "19", "-", "-", "-", "0"),
        )

    def test_countIncreases(self) -> None:
        """
        Each logged line has the next request count.
        """
        harness = Harness()
        for _ in range(3):
            harness.run()
        self.assertEqual([parseCommon(line)["count"] for line in harness.lines], ["1", "2", "3"])

    def test_keptHeaders(self) -> None:
        """
        Referer and User-Agent appear when the header mode keeps them
        (quotes escaped) and read REDACTED when it redacts them.
        """
        harness = Harness(config(fields=headerFields("keep", Referer="redact")))
        harness.run(headers=(("Host", "a.example"), ("User-Agent", 'say "hi"'), ("Referer", "http://x/")))
        fields = parseCommon(harness.lines[0])
        self.assertEqual((fields["agent"], fields["referer"]), ('say \\"hi\\"', "REDACTED"))

    def test_droppedFields(self) -> None:
        """
        Core fields dropped with fields.names read "-" in the common format.
        """
        names = FrozenMap({"ClientHost": "drop", "routername": "drop"})
        harness = Harness(config(fields=AccessLogFields(names=names)))  # type: ignore[arg-type]
        harness.run()
        fields = parseCommon(harness.lines[0])
        self.assertEqual((fields["client"], fields["router"], fields["method"]), ("-", "-", "GET"))

    def test_forwardedFor(self) -> None:
        """
        The client host is the X-Forwarded-For header when the request has
        one (as the forwarded-headers step left it).
        """
        harness = Harness()
        harness.run(headers=(("Host", "a.example"), ("X-Forwarded-For", "203.0.113.9")))
        self.assertEqual(parseCommon(harness.lines[0])["client"], "203.0.113.9")

    def test_clientGone(self) -> None:
        """
        A request whose client went away before any answer is logged with
        status 499, as Traefik does.
        """
        harness = Harness()
        harness.run(gone=True)
        self.assertEqual(parseCommon(harness.lines[0])["status"], "499")

    def test_genericCLF(self) -> None:
        """
        genericCLF is the plain Common Log Format: no count, router, server
        or duration.
        """
        harness = Harness(config(format="genericCLF"))
        harness.run()
        match = GENERIC_LINE.match(harness.lines[0])
        self.assertIsNotNone(match, harness.lines[0])
        self.assertEqual(match["status"], "200")  # type: ignore[index]

    def test_unknownFormat(self) -> None:
        """
        An unknown format is reported and the common format used instead.
        """
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        harness = Harness(config(format="xml"))
        harness.run()
        parseCommon(harness.lines[0])
        self.assertTrue(any(e.get("name") == "xml" for e in events))


class JSONFormatTests(unittest.SynchronousTestCase):
    def test_fields(self) -> None:
        """
        A JSON line has Traefik's field names and types: times as RFC 3339,
        durations in nanoseconds, ports as strings, logrus's level, msg and
        time; keys are sorted.
        """
        harness = Harness(config(format="json"))
        harness.run(headers=(("Host", "a.example:8000"),), user="bob")
        [line] = harness.lines
        entry = json.loads(line)
        self.assertEqual(list(entry), sorted(entry))
        expected = {
            "ClientAddr": "192.0.2.7:54321",
            "ClientHost": "192.0.2.7",
            "ClientPort": "54321",
            "ClientUsername": "bob",
            "DownstreamContentSize": 6,
            "DownstreamStatus": 200,
            "Duration": 250000000,
            "OriginContentSize": 6,
            "OriginDuration": 200000000,
            "OriginStatus": 200,
            "Overhead": 50000000,
            "RequestAddr": "a.example:8000",
            "RequestContentSize": 0,
            "RequestCount": 1,
            "RequestHost": "a.example",
            "RequestMethod": "GET",
            "RequestPath": "/path?q=1",
            "RequestPort": "8000",
            "RequestProtocol": "HTTP/1.1",
            "RequestScheme": "http",
            "RetryAttempts": 0,
            "RouterName": "r@file",
            "ServiceAddr": "10.0.0.1:8080",
            "ServiceName": "s@file",
            "ServiceURL": "http://10.0.0.1:8080",
            "StartUTC": "2023-11-14T22:13:20.25Z",
            "entryPointName": "web",
            "level": "info",
            "msg": "",
        }
        for key, value in expected.items():
            self.assertEqual(entry[key], value, key)
        self.assertEqual(set(entry) - set(expected), {"StartLocal", "time"})
        moment = datetime.datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
        self.assertEqual(moment.timestamp(), 1700000000.0)

    def test_noRouter(self) -> None:
        """
        Without a router the origin fields are zero and router, service and
        server fields are absent; without a port the request port is "-".
        """
        harness = Harness(config(format="json"))
        harness.run(code=404, body="404 page not found\n", router="", upstream="")
        entry = json.loads(harness.lines[0])
        self.assertEqual((entry["OriginStatus"], entry["OriginDuration"], entry["RequestPort"]), (0, 0, "-"))
        self.assertFalse({"RouterName", "ServiceName", "ServiceURL", "ServiceAddr"} & set(entry))

    def test_headers(self) -> None:
        """
        Headers are logged as request_, origin_ and downstream_ fields in
        Go's spelling, values joined with commas; names override the
        default mode (case-insensitively); redacted ones read REDACTED.
        """
        fields = headerFields("keep", authorization="redact", **{"X-Secret": "drop"})
        harness = Harness(config(format="json", fields=fields))
        harness.run(
            headers=(
                ("Host", "a.example"),
                ("x-trace", "a"),
                ("X-Trace", "b"),
                ("Authorization", "Basic dGVzdDp0ZXN0"),
                ("X-Secret", "s3cret"),
            )
        )
        entry = json.loads(harness.lines[0])
        self.assertEqual(entry["request_X-Trace"], "a,b")
        self.assertEqual(entry["request_Authorization"], "REDACTED")
        self.assertNotIn("request_X-Secret", entry)
        self.assertNotIn("request_Host", entry)
        self.assertEqual(entry["origin_X-Backend"], "A")
        self.assertEqual(entry["downstream_X-Backend"], "A")
        self.assertEqual(entry["downstream_Content-Type"], "text/plain; charset=utf-8")
        self.assertNotIn("s3cret", harness.lines[0])
        self.assertNotIn("dGVzdDp0ZXN0", harness.lines[0])

    def test_headersDroppedByDefault(self) -> None:
        """
        By default no header is logged; a name set to keep is.
        """
        harness = Harness(config(format="json", fields=headerFields(**{"User-Agent": "keep"})))
        harness.run(headers=(("Host", "a.example"), ("User-Agent", "probe"), ("X-Other", "x")))
        entry = json.loads(harness.lines[0])
        self.assertEqual([key for key in entry if "_" in key], ["request_User-Agent"])

    def test_fieldsDefaultDrop(self) -> None:
        """
        With fields.defaultMode drop only the named fields (any case) are
        logged, plus level, msg and time.
        """
        fields = AccessLogFields(defaultMode="drop", names=FrozenMap({"requesthost": "keep", "DownstreamStatus": "keep"}))  # type: ignore[arg-type]
        harness = Harness(config(format="json", fields=fields))
        harness.run()
        self.assertEqual(
            set(json.loads(harness.lines[0])), {"RequestHost", "DownstreamStatus", "level", "msg", "time"}
        )


class FilterTests(unittest.SynchronousTestCase):
    def statuses(self, harness: Harness) -> list[str]:
        return [parseCommon(line)["status"] for line in harness.lines]

    def test_statusCodes(self) -> None:
        """
        statusCodes keeps lines whose status is one of the codes or in one
        of the ranges.
        """
        harness = Harness(config(filters=AccessLogFilters(statusCodes=("404", "500-502"))))
        for code in (200, 404, 500, 502, 503):
            harness.run(code=code)
        self.assertEqual(self.statuses(harness), ["404", "500", "502"])

    def test_minDuration(self) -> None:
        """
        minDuration keeps lines of requests that took longer than it.
        """
        harness = Harness(config(filters=AccessLogFilters(minDuration=Duration(0.1))))
        harness.run(took=0.05)
        harness.run(took=0.1)
        harness.run(took=0.3, code=201)
        self.assertEqual(self.statuses(harness), ["201"])

    def test_retryAttempts(self) -> None:
        """
        retryAttempts keeps lines of requests that were retried.
        """
        harness = Harness(config(filters=AccessLogFilters(retryAttempts=True)))
        harness.run()
        harness.run(retries=2, code=202)
        self.assertEqual(self.statuses(harness), ["202"])

    def test_anyFilterKeeps(self) -> None:
        """
        A line matching any one filter is kept.
        """
        filters = AccessLogFilters(statusCodes=("500-599",), minDuration=Duration(1))
        harness = Harness(config(filters=filters))
        harness.run(code=500, took=0.01)
        harness.run(code=200, took=2)
        harness.run(code=200, took=0.01)
        self.assertEqual(self.statuses(harness), ["500", "200"])

    def test_requestCountOfKeptLines(self) -> None:
        """
        Filtered-out requests do not use up request counts.
        """
        harness = Harness(config(filters=AccessLogFilters(statusCodes=("500",))))
        harness.run(code=200)
        harness.run(code=500)
        self.assertEqual(parseCommon(harness.lines[0])["count"], "1")


class InternalRouterTests(unittest.SynchronousTestCase):
    runtime = fakeRuntime(
        **{
            "api@internal": RouterConfig(service="api@internal"),
            "dash@file": RouterConfig(service="dashboard@internal"),
            "quiet@file": RouterConfig(service="s@file", observability=RouterObservability(accessLogs=False)),
            "r@file": RouterConfig(service="s@file"),
        }
    )

    def routers(self, harness: Harness) -> list[str]:
        for name in ("api@internal", "dash@file", "quiet@file", "r@file"):
            harness.run(router=name)
        return [parseCommon(line)["router"] for line in harness.lines]

    def test_internalsLeftOut(self) -> None:
        """
        Requests of routers to @internal services and of routers whose
        observability.accessLogs is false are not logged.
        """
        self.assertEqual(self.routers(Harness(runtime=self.runtime)), ["r@file"])

    def test_addInternals(self) -> None:
        """
        With addInternals, routers to @internal services are logged too.
        """
        harness = Harness(config(addInternals=True), runtime=self.runtime)
        self.assertEqual(self.routers(harness), ["api@internal", "dash@file", "r@file"])


class BufferingTests(unittest.SynchronousTestCase):
    def test_batches(self) -> None:
        """
        With bufferingSize, lines are written together once that many are
        queued.
        """
        harness = Harness(config(bufferingSize=3))
        for _ in range(2):
            harness.run()
        self.assertEqual(harness.output.writes, [])
        harness.run()
        self.assertEqual(len(harness.output.writes), 1)
        self.assertEqual(len(harness.lines), 3)

    def test_partialBatchWritten(self) -> None:
        """
        A partial batch is written at the latest BATCH_DELAY after its first
        line.
        """
        harness = Harness(config(bufferingSize=100))
        harness.run()
        harness.clock.advance(BATCH_DELAY / 2)
        harness.run()
        self.assertEqual(harness.output.writes, [])
        harness.clock.advance(BATCH_DELAY)
        self.assertEqual(len(harness.output.writes), 1)
        self.assertEqual(len(harness.lines), 2)

    def test_stopFlushes(self) -> None:
        """
        Stopping writes the queued lines; lines of requests finishing after
        that are written at once; closing closes the output.
        """
        harness = Harness(config(bufferingSize=100))
        harness.run()
        harness.log.stop()
        self.assertEqual(len(harness.lines), 1)
        harness.run()
        self.assertEqual(len(harness.lines), 2)
        harness.log.close()
        self.assertTrue(harness.output.closed)
        self.assertEqual(harness.clock.getDelayedCalls(), [])

    def test_reopenFlushesFirst(self) -> None:
        """
        Reopening writes the queued lines to the old file first.
        """
        harness = Harness(config(bufferingSize=100))
        harness.run()
        harness.log.reopen()
        self.assertEqual((len(harness.lines), harness.output.reopened), (1, 1))


class FileOutputTests(unittest.SynchronousTestCase):
    def test_reopenAfterRename(self) -> None:
        """
        After the file is renamed, reopen makes a new file at the path; what
        was written before stays in the renamed one.
        """
        directory = tempdir(self)
        path = os.path.join(directory, "logs", "access.log")
        output = FileOutput(path)
        self.addCleanup(output.close)
        output.write(b"one\n")
        os.rename(path, path + ".1")
        output.write(b"two\n")
        output.reopen()
        output.write(b"three\n")
        with open(path + ".1", "rb") as f:
            self.assertEqual(f.read(), b"one\ntwo\n")
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"three\n")

    def test_processLogReopen(self) -> None:
        """
        The process log file (log.filePath) is reopened by reopenFiles.
        """
        directory = tempdir(self)
        path = os.path.join(directory, "relayd.log")
        observer = logModule.observerFactory(Log(level="INFO", filePath=path, format="json"))()
        stream = logModule._files[-1]
        self.addCleanup(logModule._files.remove, stream)
        self.addCleanup(stream.file.close)
        observer({"log_format": "first", "log_level": LogLevel.info, "log_namespace": "relayd.x", "log_time": 0.0})
        stream.flush()
        os.rename(path, path + ".1")
        logModule.reopenFiles()
        observer({"log_format": "second", "log_level": LogLevel.info, "log_namespace": "relayd.x", "log_time": 0.0})
        stream.flush()
        with open(path + ".1", encoding="utf-8") as f:
            self.assertIn("first", f.read())
        with open(path, encoding="utf-8") as f:
            text = f.read()
        self.assertIn("second", text)
        self.assertNotIn("first", text)


# -- end to end ------------------------------------------------------------------------------------


class _Backend(resource.Resource):
    """
    /fail answers 500, /slow answers after 300 ms, anything else 200 with
    an X-Backend header.
    """

    isLeaf = True

    def render(self, request: server.Request) -> Any:
        request.setHeader(b"x-backend", b"A")
        request.setHeader(b"content-type", b"text/plain")
        if request.path == b"/fail":
            request.setResponseCode(500)
            return b"failed\n"
        if request.path == b"/slow":

            def answer() -> None:
                request.write(b"slow\n")
                request.finish()

            call = reactor.callLater(0.3, answer)

            def gone(_: Any) -> None:
                if call.active():
                    call.cancel()

            request.notifyFinish().addErrback(gone)
            return server.NOT_DONE_YET
        return b"hello\n"


def readLines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


class EndToEndTests(unittest.TestCase):
    """
    A real relayd in front of a real backend, its access log read back.
    """

    timeout = 60

    def setUp(self) -> None:
        self.dir = tempdir(self)
        site = server.Site(_Backend())
        site.noisy = False
        self.backend = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(self.backend.stopListening)
        self.backendURL = f"http://127.0.0.1:{self.backend.getHost().port}"
        self.client = Client()
        self.addCleanup(self.client.close)
        (self.port,) = freePorts(1)
        self.accessPath = os.path.join(self.dir, "access.log")

    def start(self, accessLog: str, log: str = '[log]\nlevel = "INFO"\n', backendURL: str = "", wait: bool = True) -> Any:
        writeFile(
            os.path.join(self.dir, "relayd.toml"),
            f"""
[entryPoints.web]
address = "127.0.0.1:{self.port}"

[providers.file]
filename = "dynamic.toml"

{log}
{accessLog}
""",
        )
        writeFile(
            os.path.join(self.dir, "dynamic.toml"),
            f"""
[http.routers.r]
rule = "Host(`a.example`)"
service = "s"

[http.routers.ws]
rule = "PathPrefix(`/chat`)"
service = "s"

[http.routers.auth]
rule = "Host(`auth.example`)"
service = "s"
middlewares = ["auth"]

[http.middlewares.auth.basicAuth]
users = ["{HTPASSWD}"]

[[http.services.s.loadBalancer.servers]]
url = "{backendURL or self.backendURL}"
""",
        )
        self.relayd = RelaydProcess(["--config", "relayd.toml"], cwd=self.dir)
        self.addCleanup(self.relayd.stop)
        if wait:
            return self.relayd.waitForLog(f"listening on 127.0.0.1:{self.port}")
        return defer.succeed(None)

    def get(self, path: str, host: str = "a.example", headers: dict[str, str] | None = None) -> Any:
        return self.client.get(f"http://127.0.0.1:{self.port}{path}", host=host, headers=headers)

    def linesIn(self, path: str, count: int) -> Any:
        """
        The lines of C{path} once it has at least C{count}.
        """
        return poll(lambda: len(readLines(path)) >= count and readLines(path), timeout=15)

    @defer.inlineCallbacks
    def test_common(self):
        """
        Common lines parse back: client, the basicAuth user, method, path,
        protocol, status, size, count, router name, server URL and
        duration; a request no router matches is logged with 404.
        """
        yield self.start(f'[accessLog]\nfilePath = "{self.accessPath}"\n')
        auth = {"Authorization": "Basic dGVzdDp0ZXN0", "User-Agent": "probe"}
        response, body = yield self.get("/hello?x=1", host="auth.example", headers=auth)
        self.assertEqual((response.code, body), (200, b"hello\n"))
        response, body = yield self.get("/missing", host="other.example")
        self.assertEqual(response.code, 404)
        first, second = yield self.linesIn(self.accessPath, 2)
        fields = parseCommon(first)
        ms = int(fields.pop("ms"))
        stamp = datetime.datetime.strptime(fields.pop("time"), "%d/%b/%Y:%H:%M:%S %z")
        self.assertEqual(
            fields,
            {
                "client": "127.0.0.1",
                "user": "test",
                "method": "GET",
                "path": "/hello?x=1",
                "proto": "HTTP/1.1",
                "status": "200",
                "size": "6",
                "referer": "-",
                "agent": "-",
                "count": "1",
                "router": "auth@file",
                "server": self.backendURL,
            },
        )
        self.assertGreaterEqual(ms, 0)
        now = datetime.datetime.now(datetime.timezone.utc)
        self.assertLess(abs((now - stamp).total_seconds()), 120)
        self.assertEqual(stamp.utcoffset(), datetime.timedelta(0))
        fields = parseCommon(second)
        self.assertEqual(
            (fields["path"], fields["status"], fields["size"], fields["user"], fields["count"], fields["router"], fields["server"]),
            ("/missing", "404", "19", "-", "2", "-", "-"),
        )

    @defer.inlineCallbacks
    def test_json(self):
        """
        JSON lines parse back with Traefik's field names; headers are kept,
        redacted or dropped as configured.
        """
        yield self.start(
            f"""
[accessLog]
filePath = "{self.accessPath}"
format = "json"
[accessLog.fields.names]
ClientPort = "drop"
[accessLog.fields.headers]
defaultMode = "keep"
[accessLog.fields.headers.names]
Authorization = "redact"
X-Secret = "drop"
"""
        )
        headers = {"Authorization": "Basic dGVzdDp0ZXN0", "X-Secret": "s3cret", "X-Trace": "t1"}
        response, _ = yield self.get("/hello", host="auth.example", headers=headers)
        self.assertEqual(response.code, 200)
        [line] = yield self.linesIn(self.accessPath, 1)
        entry = json.loads(line)
        self.assertEqual(entry["RouterName"], "auth@file")
        self.assertEqual(entry["ServiceName"], "s@file")
        self.assertEqual(entry["ServiceURL"], self.backendURL)
        self.assertEqual(entry["ServiceAddr"], self.backendURL.split("://")[1])
        self.assertEqual((entry["DownstreamStatus"], entry["OriginStatus"], entry["DownstreamContentSize"]), (200, 200, 6))
        self.assertEqual((entry["ClientHost"], entry["ClientUsername"], entry["RequestHost"]), ("127.0.0.1", "test", "auth.example"))
        self.assertEqual((entry["RequestMethod"], entry["RequestPath"], entry["RequestProtocol"]), ("GET", "/hello", "HTTP/1.1"))
        self.assertEqual((entry["entryPointName"], entry["level"], entry["msg"], entry["RequestCount"]), ("web", "info", "", 1))
        self.assertIsInstance(entry["Duration"], int)
        self.assertGreaterEqual(entry["Duration"], entry["OriginDuration"])
        self.assertTrue(entry["StartUTC"].endswith("Z"))
        self.assertNotIn("ClientPort", entry)
        self.assertEqual(entry["request_X-Trace"], "t1")
        self.assertEqual(entry["request_Authorization"], "REDACTED")
        self.assertNotIn("request_X-Secret", entry)
        self.assertEqual(entry["origin_X-Backend"], "A")
        self.assertEqual(entry["downstream_Content-Type"], "text/plain")
        self.assertNotIn("s3cret", line)

    @defer.inlineCallbacks
    def test_filters(self):
        """
        With statusCodes 500-599 and minDuration 200ms only the failed and
        the slow request are logged.
        """
        yield self.start(
            f"""
[accessLog]
filePath = "{self.accessPath}"
[accessLog.filters]
statusCodes = ["500-599"]
minDuration = "200ms"
"""
        )
        for path in ("/fast", "/fail", "/missing", "/slow"):
            yield self.get(path)
        yield self.linesIn(self.accessPath, 2)
        # Lines are written as responses finish: this one's would be there.
        yield self.get("/fast")
        lines = readLines(self.accessPath)
        self.assertEqual([(parseCommon(line)["path"], parseCommon(line)["status"]) for line in lines], [("/fail", "500"), ("/slow", "200")])
        self.assertGreaterEqual(int(parseCommon(lines[1])["ms"]), 200)

    @defer.inlineCallbacks
    def test_bufferedLinesWrittenAtStop(self):
        """
        With bufferingSize, the lines still queued when relayd stops are
        written before it exits.
        """
        yield self.start(f'[accessLog]\nfilePath = "{self.accessPath}"\nbufferingSize = 100\n')
        for _ in range(5):
            yield self.get("/hello")
        code = yield threads.deferToThread(self.relayd.stop)
        self.assertEqual(code, 0)
        lines = readLines(self.accessPath)
        self.assertEqual([parseCommon(line)["count"] for line in lines], ["1", "2", "3", "4", "5"])

    @defer.inlineCallbacks
    def test_rotation(self):
        """
        After the access log and process log files are renamed, SIGUSR1
        makes relayd write to new files at the configured paths; no line is
        lost.
        """
        processLog = os.path.join(self.dir, "process.log")
        yield self.start(
            f'[accessLog]\nfilePath = "{self.accessPath}"\nbufferingSize = 10\n',
            log=f'[log]\nlevel = "DEBUG"\nfilePath = "{processLog}"\n',
            wait=False,
        )
        yield poll(lambda: "listening on" in "\n".join(readLines(processLog)))
        yield self.get("/one")
        os.rename(self.accessPath, self.accessPath + ".1")
        os.rename(processLog, processLog + ".1")
        self.relayd.process.send_signal(signal.SIGUSR1)
        yield poll(lambda: os.path.exists(self.accessPath) and os.path.exists(processLog))
        yield self.get("/two")
        yield self.get("/three", host="nobody.example")
        yield threads.deferToThread(self.relayd.stop)
        old = [parseCommon(line)["path"] for line in readLines(self.accessPath + ".1")]
        new = [parseCommon(line)["path"] for line in readLines(self.accessPath)]
        self.assertEqual((old, new), (["/one"], ["/two", "/three"]))
        self.assertIn("listening on", "\n".join(readLines(processLog + ".1")))
        self.assertIn("no router matches", "\n".join(readLines(processLog)))

    @defer.inlineCallbacks
    def test_rotationWithWorkers(self):
        """
        With two workers, SIGUSR1 to the first process reaches the other
        worker too: after the rename, every request (spread over both
        workers by the kernel) is logged in the new file.
        """
        writeFile(
            os.path.join(self.dir, "relayd.toml"),
            f"""
workers = 2

[log]
level = "INFO"

[entryPoints.web]
address = "127.0.0.1:{self.port}"

[providers.file]
filename = "dynamic.toml"

[accessLog]
filePath = "{self.accessPath}"
""",
        )
        writeFile(
            os.path.join(self.dir, "dynamic.toml"),
            f"""
[http.routers.r]
rule = "PathPrefix(`/`)"
service = "s"

[[http.services.s.loadBalancer.servers]]
url = "{self.backendURL}"
""",
        )
        self.relayd = RelaydProcess(["--config", "relayd.toml"], cwd=self.dir)
        self.addCleanup(self.relayd.stop)
        yield self.relayd.waitForLog(f"listening on 127.0.0.1:{self.port}", count=2)

        def fresh(path: str) -> int:
            # One request per connection, so the kernel may pick either worker.
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                connection.request("GET", path, headers={"Connection": "close"})
                response = connection.getresponse()
                response.read()
                return response.status
            finally:
                connection.close()

        codes = yield threads.deferToThread(lambda: [fresh("/before") for _ in range(10)])
        self.assertEqual(set(codes), {200})
        yield self.linesIn(self.accessPath, 10)
        os.rename(self.accessPath, self.accessPath + ".1")
        self.relayd.process.send_signal(signal.SIGUSR1)
        yield poll(lambda: os.path.exists(self.accessPath))
        # The other worker reopens a moment later: wait for its own file
        # descriptor on the new file rather than sleeping.
        yield poll(lambda: _openersOf(self.accessPath) >= 2, timeout=15)
        codes = yield threads.deferToThread(lambda: [fresh("/after") for _ in range(40)])
        self.assertEqual(set(codes), {200})
        yield self.linesIn(self.accessPath, 40)
        yield threads.deferToThread(self.relayd.stop)
        old = [parseCommon(line)["path"] for line in readLines(self.accessPath + ".1")]
        new = [parseCommon(line)["path"] for line in readLines(self.accessPath)]
        self.assertEqual((old, new), (["/before"] * 10, ["/after"] * 40))

    @defer.inlineCallbacks
    def test_processLogJSONAndAccessLogOnStdout(self):
        """
        log.filePath with log.format json writes the process log as JSON
        records to that file; the access log without filePath goes to
        standard output.
        """
        processLog = os.path.join(self.dir, "process.log")
        yield self.start(
            "[accessLog]\n",
            log=f'[log]\nlevel = "INFO"\nformat = "json"\nfilePath = "{processLog}"\n',
            wait=False,
        )

        def records() -> list[dict[str, Any]]:
            with open(processLog, encoding="utf-8") as f:
                return [json.loads(chunk) for chunk in f.read().split("\x1e") if chunk.strip()]

        found = yield poll(lambda: [r for r in records() if r.get("entrypoint") == "web" and "address" in r])
        self.assertEqual(found[0]["address"], f"127.0.0.1:{self.port}")
        response, _ = yield self.get("/hello")
        self.assertEqual(response.code, 200)
        line = yield poll(lambda: [line for line in self.relayd.output().splitlines() if COMMON_LINE.match(line)])
        self.assertEqual(parseCommon(line[0])["router"], "r@file")

    @defer.inlineCallbacks
    def test_webSocket(self):
        """
        A WebSocket upgrade is logged when the connection ends, with status
        101 and the connection's lifetime as duration.
        """
        from tests.test_websocket import WSBackend, clientOptions, connect, requireWebsockets

        requireWebsockets()
        backend = WSBackend(compression=None)
        self.addCleanup(threads.deferToThread, backend.stop)
        yield self.start(f'[accessLog]\nfilePath = "{self.accessPath}"\n', backendURL=backend.url)
        def talk() -> str:
            with connect(f"ws://127.0.0.1:{self.port}/chat", **clientOptions()) as ws:
                ws.send("hi")
                answer = ws.recv(timeout=10)
            return str(answer)

        answer = yield threads.deferToThread(talk)
        self.assertEqual(answer, "hi")
        [line] = yield self.linesIn(self.accessPath, 1)
        fields = parseCommon(line)
        self.assertEqual(
            (fields["method"], fields["path"], fields["status"], fields["router"], fields["server"]),
            ("GET", "/chat", "101", "ws@file", backend.url),
        )


class DocsTests(unittest.SynchronousTestCase):
    def test_exampleChecksClean(self) -> None:
        """
        The static configuration in docs/accesslog.rst checks clean.
        """
        import io

        from relayd.cli import main
        from tests.helpers import ROOT
        from tests.test_examples import _literalBlock

        with open(os.path.join(ROOT, "docs", "accesslog.rst"), encoding="utf-8") as f:
            text = _literalBlock(f.read(), "Turn it on in the static configuration")
        self.assertIn("[accessLog.fields.headers.names]", text)
        directory = tempdir(self)
        writeFile(os.path.join(directory, "dynamic.toml"), "")
        path = os.path.join(directory, "relayd.toml")
        writeFile(path, text.replace("/var/log/relayd", directory))
        out = io.StringIO()
        cwd = os.getcwd()
        os.chdir(directory)
        self.addCleanup(os.chdir, cwd)
        self.assertEqual(main(["check", "--config", path], out), 0, out.getvalue())
        self.assertNotIn("warning", out.getvalue())


class SetUpTests(unittest.SynchronousTestCase):
    def relayd(self, accessLog: AccessLogConfig | None, filePath: str = "") -> Any:
        from twisted.application.service import MultiService

        from relayd.config.static import EntryPointObservability

        parent = MultiService()
        parent.static = SimpleNamespace(accessLog=accessLog, log=Log(filePath=filePath))  # type: ignore[attr-defined]
        parent.reactor = Clock()  # type: ignore[attr-defined]
        parent.entryPoints = {  # type: ignore[attr-defined]
            name: SimpleNamespace(
                config=SimpleNamespace(observability=EntryPointObservability(accessLogs=on)), observers=[]
            )
            for name, on in (("web", True), ("quiet", False))
        }
        return parent

    def test_observersOnLoggedEntryPoints(self) -> None:
        """
        The access log observes the entrypoints whose
        observability.accessLogs is true, and only those.
        """
        from relayd.observability.accesslog import setUp

        path = os.path.join(tempdir(self), "access.log")
        parent = self.relayd(AccessLogConfig(filePath=path))
        accessLog = setUp(parent)
        assert accessLog is not None
        self.addCleanup(accessLog.close)
        self.assertEqual(parent.entryPoints["web"].observers, [accessLog.observe])
        self.assertEqual(parent.entryPoints["quiet"].observers, [])
        self.assertIsNotNone(parent.getServiceNamed("accesslog"))

    def test_nothingWithoutAccessLog(self) -> None:
        """
        Without an accessLog section no entrypoint gets an observer (so
        requests cost nothing); a process log file still gets its reopen
        service.
        """
        from relayd.observability.accesslog import setUp

        parent = self.relayd(None, filePath="relayd.log")
        self.assertIsNone(setUp(parent))
        self.assertEqual([ep.observers for ep in parent.entryPoints.values()], [[], []])
        self.assertEqual([s.name for s in parent], ["logreopen"])


def _openersOf(path: str) -> int:
    """
    How many processes have C{path} open (from /proc).
    """
    target = os.path.realpath(path)
    count = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    count += 1
                    break
            except OSError:
                continue
    return count
