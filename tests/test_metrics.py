"""
Tests for L{relayd.observability.metrics}: the request observer's counters
and histograms at the entrypoint, router and service levels, the labels
Traefik uses, what is left out (unrouted requests, internal services, routers
with metrics off), the state read at scrape time (reloads, open connections,
server health, certificate expiry, WebSocket messages), the scrape handler,
and a real C{twistd relayd} scraped on its traefik entrypoint. Every scrape is
parsed with prometheus_client's own text parser.
"""

from __future__ import annotations

import http.client
import os
import threading
from types import SimpleNamespace
from typing import Any

from cryptography import x509
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, reactor, task, threads
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web import resource, server
from zope.interface.verify import verifyObject

from relayd.config.static import Prometheus
from relayd.interfaces import IHTTPHandler
from relayd.observability.metrics import (
    PrometheusHandler,
    PrometheusMetrics,
    certificateLabels,
    methodLabel,
    prometheusService,
    protocolLabel,
)
from relayd.proxy.responses import plainResponse
from relayd.runtime.build import ObjectInfo
from tests.helpers import RelaydProcess, freePorts, memoryRequest, startBackend, tempdir, writeFile
from tests.test_lifecycle import atomicWrite


def samples(text: str | bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """
    Every sample of an exposition, keyed by name and label set.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def families(text: str | bytes) -> dict[str, Any]:
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return {family.name: family for family in text_string_to_metric_families(text)}


def fakeRuntime(routers: dict[str, Any] | None = None, services: dict[str, dict[str, str]] | None = None, tls: Any = None) -> Any:
    """
    A stand-in runtime: routers by name (their config's service and
    observability), services with their server status.
    """
    return SimpleNamespace(
        routers={
            name: ObjectInfo(name=name, kind="router", config=SimpleNamespace(service=service, observability=observability))
            for name, (service, observability) in (routers or {}).items()
        },
        services={
            name: ObjectInfo(name=name, kind="loadbalancer", config=None, serverStatus=dict(status))
            for name, status in (services or {}).items()
        },
        tls=tls,
    )


DEFAULT_ROUTERS = {
    "app@file": ("app@file", None),
    "quiet@file": ("app@file", SimpleNamespace(metrics=False)),
    "prometheus@internal": ("prometheus@internal", None),
}


def finished(method: bytes = b"GET", code: int = 200, body: bytes = b"", answer: str = "hello", headers: Any = ()) -> Any:
    """
    An in-memory request answered with C{code} and C{answer}.
    """
    request = memoryRequest(method=method, body=body, headers=headers)
    plainResponse(request, code, answer)
    return request


def context(router: str = "app@file", service: str = "app@file", start: float = 0.0, runtime: Any = None) -> Any:
    return SimpleNamespace(
        entryPoint="web",
        router=router,
        service=service,
        runtime=runtime or fakeRuntime(DEFAULT_ROUTERS, {"app@file": {}}),
        start=start,
    )


class LabelTests(SynchronousTestCase):
    """
    The method and protocol labels.
    """

    def test_methods(self) -> None:
        """
        Standard methods keep their name; any other is EXTENSION_METHOD.
        """
        self.assertEqual(methodLabel(b"PATCH"), "PATCH")
        self.assertEqual(methodLabel(b"PRI"), "PRI")
        self.assertEqual(methodLabel(b"PURGE"), "EXTENSION_METHOD")

    def test_protocols(self) -> None:
        """
        WebSocket upgrades, event streams and gRPC are told apart from plain HTTP.
        """
        cases = [
            ([("Connection", "keep-alive, Upgrade"), ("Upgrade", "WebSocket")], "websocket"),
            ([("Accept", "text/event-stream")], "sse"),
            ([("Content-Type", "application/grpc-web+proto")], "grpc-web"),
            ([("Content-Type", "application/grpc")], "grpc"),
            ([("Upgrade", "websocket")], "http"),
            ([], "http"),
        ]
        for headers, expected in cases:
            self.assertEqual(protocolLabel(memoryRequest(headers=headers)), expected, headers)


class ObserverTests(SynchronousTestCase):
    """
    L{PrometheusMetrics.observe} at the three levels.
    """

    def metrics(self, **config: Any) -> tuple[PrometheusMetrics, Clock]:
        clock = Clock()
        return PrometheusMetrics(Prometheus(**config), clock), clock

    def test_entryPointAndService(self) -> None:
        """
        A request counts on its entrypoint and service with code, method and
        protocol, its duration lands in the configured buckets, and body
        bytes both ways are added up.
        """
        metrics, clock = self.metrics(buckets=(0.5, 2.0))
        clock.advance(10)
        request = finished(method=b"POST", code=201, body=b"12345", answer="created")
        clock.advance(1.0)
        metrics.observe(request, context(start=9.0), None)
        metrics.observe(finished(code=404, answer=""), context(start=11.0), None)
        found = samples(metrics.exposition())
        labels = dict(code="201", method="POST", protocol="http")
        self.assertEqual(value(found, "traefik_entrypoint_requests_total", entrypoint="web", **labels), 1.0)
        self.assertEqual(value(found, "traefik_service_requests_total", service="app@file", **labels), 1.0)
        self.assertEqual(
            value(found, "traefik_entrypoint_requests_total", entrypoint="web", code="404", method="GET", protocol="http"), 1.0
        )
        self.assertEqual(value(found, "traefik_entrypoint_requests_bytes_total", entrypoint="web", **labels), 5.0)
        self.assertEqual(value(found, "traefik_entrypoint_responses_bytes_total", entrypoint="web", **labels), 7.0)
        self.assertEqual(value(found, "traefik_service_requests_bytes_total", service="app@file", **labels), 5.0)
        buckets = {
            dict(key[1])["le"]: v
            for key, v in found.items()
            if key[0] == "traefik_entrypoint_request_duration_seconds_bucket" and ("code", "201") in key[1]
        }
        self.assertEqual(buckets, {"0.5": 0.0, "2.0": 1.0, "+Inf": 1.0})
        self.assertEqual(
            value(found, "traefik_entrypoint_request_duration_seconds_sum", entrypoint="web", **labels), 2.0
        )
        # Routers are left out unless addRoutersLabels.
        self.assertFalse([key for key in found if key[0].startswith("traefik_router_")])
        # The requests counters have no *_created series.
        self.assertFalse([key for key in found if key[0].endswith("_created")])

    def test_routers(self) -> None:
        """
        With addRoutersLabels the router level counts with the router and
        its service; without addEntryPointsLabels and addServicesLabels
        those levels are gone.
        """
        metrics, _ = self.metrics(addRoutersLabels=True, addEntryPointsLabels=False, addServicesLabels=False)
        metrics.observe(finished(method=b"PURGE"), context(), None)
        found = samples(metrics.exposition())
        self.assertEqual(
            value(
                found,
                "traefik_router_requests_total",
                router="app@file",
                service="app@file",
                code="200",
                method="EXTENSION_METHOD",
                protocol="http",
            ),
            1.0,
        )
        self.assertFalse([key for key in found if key[0].startswith(("traefik_entrypoint_", "traefik_service_"))])

    def test_leftOut(self) -> None:
        """
        Requests no router took, requests of routers whose
        observability.metrics is false, and (by default) requests to
        internal services are not counted.
        """
        metrics, _ = self.metrics()
        metrics.observe(finished(code=404), context(router="", service=""), None)
        metrics.observe(finished(), context(router="quiet@file"), None)
        metrics.observe(finished(), context(router="prometheus@internal", service=""), None)
        found = samples(metrics.exposition())
        self.assertFalse([key for key in found if key[0] == "traefik_entrypoint_requests_total"])

    def test_addInternals(self) -> None:
        """
        With addInternals the requests of internal routers count as well.
        """
        metrics = PrometheusMetrics(Prometheus(), Clock(), addInternals=True)
        metrics.observe(finished(), context(router="prometheus@internal", service=""), None)
        found = samples(metrics.exposition())
        self.assertEqual(
            value(found, "traefik_entrypoint_requests_total", entrypoint="web", code="200", method="GET", protocol="http"), 1.0
        )

    def test_headerLabels(self) -> None:
        """
        headerLabels add a label per configured header to the requests
        counters, empty when the request lacks the header.
        """
        metrics, _ = self.metrics(headerLabels={"useragent": "User-Agent"})
        metrics.observe(finished(headers=[("User-Agent", "probe/1")]), context(), None)
        metrics.observe(finished(), context(), None)
        found = samples(metrics.exposition())
        labels = dict(entrypoint="web", code="200", method="GET", protocol="http")
        self.assertEqual(value(found, "traefik_entrypoint_requests_total", useragent="probe/1", **labels), 1.0)
        self.assertEqual(value(found, "traefik_entrypoint_requests_total", useragent="", **labels), 1.0)
        self.assertEqual(value(found, "traefik_entrypoint_requests_bytes_total", **labels), 0.0)

    def test_goneObjectsPruned(self) -> None:
        """
        Series of routers and services that left the configuration are
        exported once more, then dropped.
        """
        metrics, _ = self.metrics(addRoutersLabels=True)
        runtime = fakeRuntime(DEFAULT_ROUTERS, {"app@file": {}})
        service = SimpleNamespace(runtime=runtime)
        metrics.source = lambda: service
        metrics.observe(finished(), context(runtime=runtime), None)
        service.runtime = fakeRuntime({}, {})
        first = samples(metrics.exposition())
        second = samples(metrics.exposition())
        self.assertTrue([key for key in first if key[0] == "traefik_router_requests_total"])
        self.assertFalse([key for key in second if key[0].startswith(("traefik_router_", "traefik_service_"))])
        self.assertTrue([key for key in second if key[0] == "traefik_entrypoint_requests_total"])


class StateTests(SynchronousTestCase):
    """
    What is read from the running service at scrape time.
    """

    def test_state(self) -> None:
        """
        Reloads, the last successful reload, open connections per TCP
        entrypoint, server health, certificate expiry and WebSocket messages
        come from the service.
        """
        from tests.test_tls_store import CA

        pair = CA("metrics test CA").issue("a.test", "www.a.test", "a.test")
        leaf = x509.load_pem_x509_certificate(pair.cert)
        site = SimpleNamespace(channels={1, 2}, tunnels={3})
        secureSite = SimpleNamespace(channels={4}, tunnels=set())
        relay = SimpleNamespace(messages=[2, 1], bytes=[20, 10])
        relayer = SimpleNamespace(stats=SimpleNamespace(messagesIn=5, messagesOut=4, bytesIn=50, bytesOut=40), relays=[relay])
        service = SimpleNamespace(
            watcher=SimpleNamespace(reloads=3, lastSuccess=1700000000.0, shared={"forwarder": SimpleNamespace(websockets=relayer)}),
            entryPoints={
                "web": SimpleNamespace(address=SimpleNamespace(protocol="tcp"), sites=(site, secureSite)),
                "dns": SimpleNamespace(address=SimpleNamespace(protocol="udp"), sites=()),
            },
            runtime=fakeRuntime(
                {},
                {"app@file": {"http://a": "UP", "http://b": "DOWN"}, "api@internal": {}},
                tls=SimpleNamespace(_pairs={b"x": SimpleNamespace(leaf=leaf)}),
            ),
        )
        metrics = PrometheusMetrics(Prometheus(), Clock(), lambda: service)
        text = metrics.exposition()
        found = samples(text)
        self.assertEqual(value(found, "traefik_config_reloads_total"), 3.0)
        self.assertEqual(value(found, "traefik_config_last_reload_success"), 1700000000.0)
        self.assertEqual(value(found, "traefik_open_connections", entrypoint="web", protocol="TCP"), 4.0)
        self.assertIsNone(value(found, "traefik_open_connections", entrypoint="dns", protocol="TCP"))
        self.assertEqual(value(found, "traefik_service_server_up", service="app@file", url="http://a"), 1.0)
        self.assertEqual(value(found, "traefik_service_server_up", service="app@file", url="http://b"), 0.0)
        self.assertEqual(
            value(found, "traefik_tls_certs_not_after", cn="a.test", serial=str(leaf.serial_number), sans="a.test,www.a.test"),
            leaf.not_valid_after_utc.timestamp(),
        )
        self.assertEqual(certificateLabels(leaf), ("a.test", str(leaf.serial_number), "a.test,www.a.test"))
        self.assertEqual(value(found, "relayd_websocket_messages_total", direction="in"), 7.0)
        self.assertEqual(value(found, "relayd_websocket_messages_total", direction="out"), 5.0)
        self.assertEqual(value(found, "relayd_websocket_message_bytes_total", direction="in"), 70.0)
        self.assertEqual(value(found, "relayd_websocket_connections"), 1.0)
        kinds = families(text)
        self.assertEqual(kinds["traefik_config_reloads"].type, "counter")
        self.assertEqual(kinds["traefik_open_connections"].type, "gauge")
        self.assertEqual(kinds["traefik_entrypoint_request_duration_seconds"].type, "histogram")

    def test_withoutService(self) -> None:
        """
        Before the service is known a scrape still answers, with zeros.
        """
        found = samples(PrometheusMetrics(Prometheus(), Clock()).exposition())
        self.assertEqual(value(found, "traefik_config_reloads_total"), 0.0)


class HandlerTests(SynchronousTestCase):
    """
    The prometheus@internal service.
    """

    def test_scrape(self) -> None:
        """
        A scrape answers 200 with the text format's content type.
        """
        metrics = PrometheusMetrics(Prometheus(), Clock())
        handler = prometheusService(None, {"metrics": metrics})
        self.assertTrue(verifyObject(IHTTPHandler, handler))
        request = memoryRequest(uri=b"/metrics")
        handler.handle(request)
        written = request.testTransport.written.getvalue()
        head, _, body = written.partition(b"\r\n\r\n")
        self.assertIn(b"200", head.split(b"\r\n")[0])
        self.assertIn(b"content-type: " + CONTENT_TYPE_LATEST.encode().lower(), head.lower())
        self.assertIn("traefik_config_reloads", families(body))

    def test_notConfigured(self) -> None:
        """
        Without metrics.prometheus the service answers 404 with a reason.
        """
        request = memoryRequest(uri=b"/metrics")
        PrometheusHandler(None).handle(request)
        written = request.testTransport.written.getvalue()
        self.assertIn(b"404", written.split(b"\r\n")[0])
        self.assertIn(b"metrics.prometheus is not configured", written)


class DocsTests(SynchronousTestCase):
    """
    The documentation's example.
    """

    def test_exampleChecksClean(self) -> None:
        """
        The static configuration in docs/metrics.rst checks clean.
        """
        import io

        from relayd.cli import main
        from tests.helpers import ROOT
        from tests.test_examples import _literalBlock

        with open(os.path.join(ROOT, "docs", "metrics.rst"), encoding="utf-8") as f:
            text = _literalBlock(f.read(), "Turn them on in the static")
        self.assertIn("[metrics.prometheus]", text)
        path = os.path.join(tempdir(self), "relayd.toml")
        writeFile(path, text)
        out = io.StringIO()
        self.assertEqual(main(["check", "--config", path], out), 0, out.getvalue())
        self.assertNotIn("warning", out.getvalue())


# -- end to end ---------------------------------------------------------------------------------


class SlowResource(resource.Resource):
    """
    Answers once C{release} is called; C{arrived} fires when a request is in.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[Any] = []
        self.arrived = threading.Event()

    def render(self, request: server.Request) -> Any:
        self.waiting.append(request)
        self.arrived.set()
        return server.NOT_DONE_YET

    def release(self) -> None:
        for request in self.waiting:
            request.write(b"slow done")
            request.finish()
        self.waiting = []


def request(port: int, path: str, host: str = "app.test", method: str = "GET", body: bytes | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers={"Host": host, "Connection": "close"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, body = request(port, "/metrics", host="localhost")
    assert status == 200, (status, body)
    return samples(body)


DYNAMIC = """
[http.routers.app]
rule = "Host(`app.test`)"
entryPoints = ["web"]
service = "app"

[http.routers.slow]
rule = "Host(`slow.test`)"
entryPoints = ["web"]
service = "slow"

[http.routers.ws]
rule = "PathPrefix(`/chat`)"
entryPoints = ["web"]
service = "ws"

[http.services.app.loadBalancer]
[[http.services.app.loadBalancer.servers]]
url = "http://127.0.0.1:{good}"
[[http.services.app.loadBalancer.servers]]
url = "http://127.0.0.1:{bad}"
[http.services.app.loadBalancer.healthCheck]
path = "/health"
interval = "100ms"
timeout = "1s"

[[http.services.slow.loadBalancer.servers]]
url = "http://127.0.0.1:{slow}"

[[http.services.ws.loadBalancer.servers]]
url = "{ws}"

[[tls.certificates]]
certFile = "{certFile}"
keyFile = "{keyFile}"
{extra}
"""


class EndToEndTests(TestCase):
    """
    A real relayd scraped on its traefik entrypoint.
    """

    timeout = 90

    @defer.inlineCallbacks
    def test_scrape(self) -> Any:
        """
        Requests of several codes and methods, a failing server, a served
        certificate, a reload, a slow request in flight and a relayed
        WebSocket all show in a scrape of /metrics, which does not count
        itself.
        """
        from tests.test_tls_store import CA
        from tests.test_websocket import WSBackend, connect, requireWebsockets

        requireWebsockets()
        good, echoGood = startBackend("good")
        bad, echoBad = startBackend("bad")
        echoBad.failPaths = {"/health"}
        slowResource = SlowResource()
        slowSite = server.Site(slowResource)
        slowSite.noisy = False
        slow = reactor.listenTCP(0, slowSite, interface="127.0.0.1")
        for port in (good, bad, slow):
            self.addCleanup(port.stopListening)
        self.addCleanup(slowResource.release)
        ws = WSBackend("metrics")
        self.addCleanup(ws.stop)

        directory = tempdir(self)
        pair = CA("metrics e2e CA").issue("metrics.test", "metrics.test")
        paths = pair.files(directory, "metrics")
        leaf = x509.load_pem_x509_certificate(pair.cert)
        web, traefik = freePorts(2)
        dynamicPath = os.path.join(directory, "dynamic.toml")
        values = dict(
            good=good.getHost().port,
            bad=bad.getHost().port,
            slow=slow.getHost().port,
            ws=ws.url,
            certFile=paths["certFile"],
            keyFile=paths["keyFile"],
        )
        atomicWrite(dynamicPath, DYNAMIC.format(extra="", **values))
        writeFile(
            os.path.join(directory, "relayd.toml"),
            f"""
[log]
level = "INFO"

[entryPoints.web]
address = "127.0.0.1:{web}"

[entryPoints.traefik]
address = "127.0.0.1:{traefik}"

[metrics.prometheus]
buckets = [0.05, 0.5, 30.0]
addRoutersLabels = true

[providers]
providersThrottleDuration = "10ms"

[providers.file]
filename = "{dynamicPath}"
pollInterval = "50ms"
""",
        )
        process = RelaydProcess(["--config", os.path.join(directory, "relayd.toml")], directory)
        self.addCleanup(process.stop)
        yield process.waitForLog(f"listening on 127.0.0.1:{traefik}")
        badURL = f"http://127.0.0.1:{values['bad']}"
        yield process.waitForLog(f"server {badURL} of service app@file is DOWN")

        def traffic() -> None:
            for _ in range(3):
                assert request(web, "/")[0] == 200
            assert request(web, "/", method="POST", body=b"0123456789")[0] == 200
            assert request(web, "/nowhere", host="nobody.test")[0] == 404

        yield threads.deferToThread(traffic)
        found = yield threads.deferToThread(scrape, traefik)
        get = dict(code="200", method="GET", protocol="http")
        post = dict(code="200", method="POST", protocol="http")
        self.assertEqual(value(found, "traefik_entrypoint_requests_total", entrypoint="web", **get), 3.0)
        self.assertEqual(value(found, "traefik_entrypoint_requests_total", entrypoint="web", **post), 1.0)
        self.assertEqual(value(found, "traefik_service_requests_total", service="app@file", **get), 3.0)
        self.assertEqual(
            value(found, "traefik_router_requests_total", router="app@file", service="app@file", **get), 3.0
        )
        self.assertEqual(value(found, "traefik_entrypoint_requests_bytes_total", entrypoint="web", **post), 10.0)
        self.assertGreater(value(found, "traefik_entrypoint_responses_bytes_total", entrypoint="web", **get) or 0, 0)
        self.assertEqual(
            value(found, "traefik_entrypoint_request_duration_seconds_bucket", entrypoint="web", le="30.0", **get), 3.0
        )
        self.assertEqual(
            value(found, "traefik_entrypoint_request_duration_seconds_count", entrypoint="web", **get), 3.0
        )
        # Unrouted requests and the scrape itself are not counted.
        self.assertFalse([k for k in found if k[0] == "traefik_entrypoint_requests_total" and ("code", "404") in k[1]])
        self.assertFalse([k for k in found if k[0] == "traefik_entrypoint_requests_total" and ("entrypoint", "traefik") in k[1]])
        self.assertEqual(value(found, "traefik_service_server_up", service="app@file", url=badURL), 0.0)
        self.assertEqual(
            value(found, "traefik_service_server_up", service="app@file", url=f"http://127.0.0.1:{values['good']}"), 1.0
        )
        self.assertEqual(
            value(found, "traefik_tls_certs_not_after", cn="metrics.test", serial=str(leaf.serial_number), sans="metrics.test"),
            leaf.not_valid_after_utc.timestamp(),
        )
        reloads = value(found, "traefik_config_reloads_total")
        self.assertGreaterEqual(reloads, 1.0)
        self.assertGreater(value(found, "traefik_config_last_reload_success"), 1e9)

        # A reload counts.
        atomicWrite(dynamicPath, DYNAMIC.format(extra='[http.routers.more]\nrule = "Host(`more.test`)"\nservice = "app"', **values))
        yield process.waitForLog("configuration generation", count=3)

        def reloaded() -> Any:
            return (value(scrape(traefik), "traefik_config_reloads_total") or 0) > reloads

        yield poll(reloaded)

        # A slow request in flight holds a connection open.
        holder = threading.Thread(target=lambda: request(web, "/", host="slow.test"), daemon=True)
        holder.start()
        yield threads.deferToThread(slowResource.arrived.wait, 10)
        found = yield threads.deferToThread(scrape, traefik)
        self.assertGreaterEqual(value(found, "traefik_open_connections", entrypoint="web", protocol="TCP"), 1.0)
        slowResource.release()
        yield threads.deferToThread(holder.join, 10)

        def closed() -> Any:
            return value(scrape(traefik), "traefik_open_connections", entrypoint="web", protocol="TCP") == 0.0

        yield poll(closed)

        # WebSocket messages, counted while the connection is open and after.
        def chat() -> None:
            with connect(f"ws://127.0.0.1:{web}/chat") as client:
                for index in range(3):
                    client.send(f"message {index}")
                    assert client.recv(timeout=10) == f"message {index}"
                live = scrape(traefik)
                assert value(live, "relayd_websocket_messages_total", direction="in") == 3.0, live
                assert value(live, "relayd_websocket_connections") == 1.0

        yield threads.deferToThread(chat)

        def wsCounted() -> Any:
            found = scrape(traefik)
            return (
                value(found, "relayd_websocket_messages_total", direction="out") == 3.0
                and value(found, "relayd_websocket_connections") == 0.0
                and value(found, "traefik_entrypoint_requests_total", entrypoint="web", code="101", method="GET", protocol="websocket")
                == 1.0
            )

        yield poll(wsCounted)


class WorkersTests(TestCase):
    """
    With two worker processes a scrape counts the requests of both.
    """

    timeout = 90

    @defer.inlineCallbacks
    def test_countsCoverAllWorkers(self) -> Any:
        """
        Requests served by either worker add up in every scrape, whichever
        worker answers it, and the shared directory is removed at exit.
        """
        import re
        import signal

        from tests.test_workers import _children, _holdersOfConnectionsTo

        backend, _ = startBackend("A")
        self.addCleanup(backend.stopListening)
        a = backend.getHost().port
        directory = tempdir(self)
        web, traefik = freePorts(2)
        dynamicPath = os.path.join(directory, "dynamic.toml")
        writeFile(
            dynamicPath,
            f'''
[http.routers.app]
rule = "Host(`app.test`)"
service = "app"

[[http.services.app.loadBalancer.servers]]
url = "http://127.0.0.1:{a}"
''',
        )
        writeFile(
            os.path.join(directory, "relayd.toml"),
            f"""
workers = 2

[log]
level = "INFO"

[entryPoints.web]
address = "127.0.0.1:{web}"

[entryPoints.traefik]
address = "127.0.0.1:{traefik}"

[metrics.prometheus]

[providers.file]
filename = "{dynamicPath}"
""",
        )
        process = RelaydProcess(["--config", os.path.join(directory, "relayd.toml")], directory)
        self.addCleanup(process.stop)
        out = yield process.waitForLog("metrics of 2 workers are kept in ")
        shared = re.search(r"metrics of 2 workers are kept in (\S+)", out).group(1)
        yield process.waitForLog("worker 1 of 2")
        yield process.waitForLog(f"listening on 127.0.0.1:{traefik}", count=2)
        master = process.process.pid
        workers = [master] + _children(master)
        self.assertEqual(len(workers), 2, process.output())

        def traffic() -> list[int]:
            return [request(web, "/")[0] for _ in range(40)]

        codes = yield threads.deferToThread(traffic)
        self.assertEqual(set(codes), {200})
        self.assertEqual(_holdersOfConnectionsTo(a, workers), set(workers), "both workers served requests")

        def scrapes() -> list[Any]:
            return [
                value(scrape(traefik), "traefik_entrypoint_requests_total", entrypoint="web", code="200", method="GET", protocol="http")
                for _ in range(8)
            ]

        counts = yield threads.deferToThread(scrapes)
        self.assertEqual(counts, [40.0] * 8)
        found = yield threads.deferToThread(scrape, traefik)
        self.assertEqual(value(found, "traefik_service_requests_total", service="app@file", code="200", method="GET", protocol="http"), 40.0)
        self.assertEqual(value(found, "traefik_open_connections", entrypoint="web", protocol="TCP"), 0.0)
        self.assertTrue(os.path.isdir(shared))

        process.process.send_signal(signal.SIGTERM)
        code = yield threads.deferToThread(process.process.wait, 30)
        self.assertEqual(code, 0, process.output())
        self.assertFalse(os.path.exists(shared))


def poll(check: Any, timeout: float = 15.0, interval: float = 0.1) -> defer.Deferred[None]:
    """
    Run the blocking C{check} in a thread until it returns true.
    """

    @defer.inlineCallbacks
    def run() -> Any:
        deadline = reactor.seconds() + timeout
        while True:
            ok = yield threads.deferToThread(check)
            if ok:
                return
            if reactor.seconds() > deadline:
                raise AssertionError(f"{check.__name__} did not hold within {timeout}s")
            yield task.deferLater(reactor, interval, lambda: None)

    return run()
