"""
Prometheus metrics (C{metrics.prometheus}): Traefik's metric names and
labels, kept in a private L{CollectorRegistry} and answered by the
C{prometheus@internal} service.

Per-request metrics (requests, durations, request and response body bytes,
TLS requests) are recorded by L{PrometheusMetrics.observe}, a request observer
of the entrypoints whose C{observability.metrics} is on. Everything that is
state rather than events (open connections, configuration reloads, server
health, certificate expiry, WebSocket messages) is read from the running
service when a scrape arrives.

With worker processes (C{workers = N}) every process writes its values to
files in a directory the first process creates before it starts the others
(prometheus_client's multiprocess mode), and a scrape, whichever worker it
reaches, adds them up.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Callable, Iterable, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from twisted.internet import task
from twisted.logger import Logger
from zope.interface import implementer

from relayd.config.static import Prometheus
from relayd.interfaces import IHTTPHandler
from relayd.proxy.responses import plainResponse

PREFIX = "traefik_"

# The methods Traefik names as they are; any other is EXTENSION_METHOD.
_METHODS = frozenset(
    {b"HEAD", b"GET", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH", b"PRI"}
)
_TLS_VERSIONS = {"TLSv1": "1.0", "TLSv1.1": "1.1", "TLSv1.2": "1.2", "TLSv1.3": "1.3"}
# gRPC's UNKNOWN status: Traefik's code for a gRPC answer without grpc-status.
_GRPC_UNKNOWN = "2"
# Where prometheus_client keeps the values of every process (workers).
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# How often each worker copies its open connections and WebSocket counts
# into the shared values (seconds).
SYNC_INTERVAL = 1.0
# Above this many cached label sets the cache starts over (header labels can
# make the number of label sets grow without bound).
_CACHE_LIMIT = 10000


def methodLabel(method: bytes) -> str:
    """
    The C{method} label: the standard methods as they are, anything else
    C{EXTENSION_METHOD}.
    """
    return method.decode("ascii") if method in _METHODS else "EXTENSION_METHOD"


def _headerHas(request: Any, name: bytes, token: str) -> bool:
    for value in request.requestHeaders.getRawHeaders(name, ()):
        for item in value.split(b","):
            if item.strip().lower() == token.encode("ascii"):
                return True
    return False


def protocolLabel(request: Any) -> str:
    """
    The C{protocol} label as Traefik tells requests apart: C{websocket} for
    an upgrade to WebSocket, C{sse} for an event stream, C{grpc-web},
    C{grpc}, else C{http}.
    """
    if _headerHas(request, b"connection", "upgrade") and _headerHas(request, b"upgrade", "websocket"):
        return "websocket"
    if _headerHas(request, b"accept", "text/event-stream"):
        return "sse"
    contentType = (request.requestHeaders.getRawHeaders(b"content-type") or [b""])[0]
    if contentType.startswith(b"application/grpc-web"):
        return "grpc-web"
    if contentType.startswith(b"application/grpc"):
        return "grpc"
    return "http"


def _codeLabel(request: Any, protocol: str) -> str:
    if protocol in ("grpc", "grpc-web"):
        status = request.responseHeaders.getRawHeaders(b"grpc-status")
        if not status:
            return _GRPC_UNKNOWN
        value = status[0].strip()
        return value.decode("ascii") if value.isdigit() else _GRPC_UNKNOWN
    return str(request.code)


def tlsLabels(request: Any) -> tuple[str, str] | None:
    """
    The C{tls_version} (C{1.2}, C{1.3}) and C{tls_cipher} (Go's suite name)
    of a request that arrived over TLS, else C{None}.
    """
    if not request.isSecure():
        return None
    from relayd.tls.creator import tlsTransport

    transport = tlsTransport(request)
    if transport is None:
        return None
    try:
        connection = transport.getHandle()
        version = connection.get_protocol_version_name()
        cipher = connection.get_cipher_name() or ""
    except Exception:
        return None
    from relayd.tls.options import CIPHER_SUITES

    goNames = _goCipherNames(CIPHER_SUITES)
    return _TLS_VERSIONS.get(version, version), goNames.get(cipher, cipher)


_goNames: dict[str, str] = {}


def _goCipherNames(suites: Mapping[str, str]) -> dict[str, str]:
    # OpenSSL's names of TLS 1.2 suites to Go's; TLS 1.3 names are the same.
    if not _goNames:
        for goName, opensslName in suites.items():
            _goNames.setdefault(opensslName, goName)
    return _goNames


class _Level:
    """
    The per-request metrics of one level (entrypoint, router or service):
    requests, TLS requests, durations, request and response bytes, with the
    label children cached per label set.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        level: str,
        labels: Sequence[str],
        helps: Mapping[str, str],
        buckets: Sequence[float],
        headerLabels: Sequence[str],
    ) -> None:
        base = ["code", "method", "protocol", *labels]
        prefix = f"{PREFIX}{level}_"
        self.requests = Counter(
            prefix + "requests_total", helps["requests"], [*base, *headerLabels], registry=registry
        )
        self.tls = Counter(
            prefix + "requests_tls_total", helps["tls"], ["tls_version", "tls_cipher", *labels], registry=registry
        )
        self.duration = Histogram(
            prefix + "request_duration_seconds", helps["duration"], base, buckets=buckets, registry=registry
        )
        self.requestBytes = Counter(prefix + "requests_bytes_total", helps["requestBytes"], base, registry=registry)
        self.responseBytes = Counter(prefix + "responses_bytes_total", helps["responseBytes"], base, registry=registry)
        self.hasHeaders = bool(headerLabels)
        self.ownLabels = len(labels)
        self._children: dict[tuple[str, ...], tuple[Any, Any, Any, Any]] = {}
        self._requestChildren: dict[tuple[str, ...], Any] = {}
        self._tlsChildren: dict[tuple[str, ...], Any] = {}

    def record(
        self,
        key: tuple[str, ...],
        headerValues: tuple[str, ...],
        tls: tuple[str, str] | None,
        seconds: float,
        requestBytes: int,
        responseBytes: int,
    ) -> None:
        children = self._children.get(key)
        if children is None:
            if len(self._children) >= _CACHE_LIMIT:
                self._children.clear()
            children = self._children[key] = (
                self.requests.labels(*key) if not self.hasHeaders else None,
                self.duration.labels(*key),
                self.requestBytes.labels(*key),
                self.responseBytes.labels(*key),
            )
        requests, duration, requestCounter, responseCounter = children
        if requests is None:
            full = key + headerValues
            requests = self._requestChildren.get(full)
            if requests is None:
                if len(self._requestChildren) >= _CACHE_LIMIT:
                    self._requestChildren.clear()
                requests = self._requestChildren[full] = self.requests.labels(*full)
        requests.inc()
        duration.observe(seconds)
        requestCounter.inc(requestBytes)
        responseCounter.inc(responseBytes)
        if tls is not None:
            tlsKey = tls + key[3:]
            child = self._tlsChildren.get(tlsKey)
            if child is None:
                if len(self._tlsChildren) >= _CACHE_LIMIT:
                    self._tlsChildren.clear()
                child = self._tlsChildren[tlsKey] = self.tls.labels(*tlsKey)
            child.inc()

    def prune(self, keep: Callable[[Sequence[str]], bool]) -> None:
        """
        Drop the series whose own labels (C{entrypoint}, C{router} and
        C{service}, or C{service}) C{keep} rejects: objects gone from the
        configuration.
        """
        n = self.ownLabels
        for metric, offset in (
            (self.requests, 3),
            (self.duration, 3),
            (self.requestBytes, 3),
            (self.responseBytes, 3),
            (self.tls, 2),
        ):
            with metric._lock:
                stale = [values for values in metric._metrics if not keep(values[offset : offset + n])]
            for values in stale:
                metric.remove(*values)
        self._children = {k: v for k, v in self._children.items() if keep(k[3 : 3 + n])}
        self._requestChildren = {k: v for k, v in self._requestChildren.items() if keep(k[3 : 3 + n])}
        self._tlsChildren = {k: v for k, v in self._tlsChildren.items() if keep(k[2 : 2 + n])}


_ENTRYPOINT_HELP = {
    "requests": "HTTP requests processed on an entrypoint, by status code, protocol and method.",
    "tls": "HTTP requests over TLS processed on an entrypoint, by TLS version and cipher.",
    "duration": "Time spent answering requests on an entrypoint, by status code, protocol and method.",
    "requestBytes": "Request body bytes received on an entrypoint, by status code, protocol and method.",
    "responseBytes": "Response body bytes sent on an entrypoint, by status code, protocol and method.",
}
_ROUTER_HELP = {
    "requests": "HTTP requests processed by a router, by service, status code, protocol and method.",
    "tls": "HTTP requests over TLS processed by a router, by service, TLS version and cipher.",
    "duration": "Time spent answering requests of a router, by service, status code, protocol and method.",
    "requestBytes": "Request body bytes received by a router, by service, status code, protocol and method.",
    "responseBytes": "Response body bytes sent by a router, by service, status code, protocol and method.",
}
_SERVICE_HELP = {
    "requests": "HTTP requests processed by a service, by status code, protocol and method.",
    "tls": "HTTP requests over TLS processed by a service, by TLS version and cipher.",
    "duration": "Time spent answering requests of a service, by status code, protocol and method.",
    "requestBytes": "Request body bytes sent to a service, by status code, protocol and method.",
    "responseBytes": "Response body bytes returned by a service, by status code, protocol and method.",
}


class PrometheusMetrics:
    """
    The metrics of one running relayd.

    @ivar registry: the private registry every metric lives in.
    @ivar source: returns the running service (C{.static}, C{.runtime},
        C{.watcher}, C{.entryPoints}) or C{None}; read at scrape time.
    """

    _log = Logger()

    def __init__(
        self,
        config: Prometheus,
        clock: Any,
        source: Callable[[], Any] = lambda: None,
        addInternals: bool = False,
        multiprocessDirectory: str | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.source = source
        self.addInternals = addInternals
        self.multiprocessDirectory = multiprocessDirectory
        # Traefik's counters have no *_created series.
        disable_created_metrics()
        if multiprocessDirectory is not None:
            _useFiles()
        registry = CollectorRegistry(auto_describe=True)
        # What a scrape reads: the metrics themselves, or with workers the
        # files of every process.
        self.registry = registry
        if multiprocessDirectory is not None:
            from prometheus_client.multiprocess import MultiProcessCollector

            self.registry = CollectorRegistry()
            MultiProcessCollector(self.registry, path=multiprocessDirectory)
        buckets = tuple(config.buckets) or (0.1, 0.3, 1.2, 5.0)
        headers = sorted(config.headerLabels.items())
        self.headerLabels = tuple(label for label, _ in headers)
        self.headerNames = tuple(header.lower().encode("latin-1") for _, header in headers)
        make = lambda level, labels, helps: _Level(registry, level, labels, helps, buckets, self.headerLabels)
        self.entryPoints = make("entrypoint", ["entrypoint"], _ENTRYPOINT_HELP) if config.addEntryPointsLabels else None
        self.routers = make("router", ["router", "service"], _ROUTER_HELP) if config.addRoutersLabels else None
        self.services = make("service", ["service"], _SERVICE_HELP) if config.addServicesLabels else None
        self.registry.register(_StateCollector(self))
        self._sync: task.LoopingCall | None = None
        if multiprocessDirectory is not None:
            # What is state in one process becomes values summed over the
            # live processes (gauges) or over all of them (counters).
            self._openConnections = Gauge(
                PREFIX + "open_connections",
                _OPEN_CONNECTIONS_HELP,
                ["entrypoint", "protocol"],
                registry=registry,
                multiprocess_mode="livesum",
            )
            self._websocketConnections = Gauge(
                "relayd_websocket_connections", _WEBSOCKET_CONNECTIONS_HELP, registry=registry, multiprocess_mode="livesum"
            )
            self._websocketMessages = Counter(
                "relayd_websocket_messages", _WEBSOCKET_MESSAGES_HELP, ["direction"], registry=registry
            )
            self._websocketBytes = Counter(
                "relayd_websocket_message_bytes", _WEBSOCKET_BYTES_HELP, ["direction"], registry=registry
            )
            self._synced = [0, 0, 0, 0]
            self._sync = task.LoopingCall(self.sync)
            self._sync.clock = clock
            self._sync.start(SYNC_INTERVAL, now=False)

    # -- requests --

    def observe(self, request: Any, context: Any, failure: Any) -> None:
        """
        Record one finished request (a request observer of the entrypoints).
        Requests no router took are not counted, nor, unless C{addInternals},
        those of routers to C{@internal} services, nor those of routers whose
        C{observability.metrics} is off.
        """
        router = context.router
        if not router:
            return
        info = context.runtime.routers.get(router)
        routerService = ""
        if info is not None:
            config = info.config
            routerService = config.service
            observability = getattr(config, "observability", None)
            if observability is not None and observability.metrics is False:
                return
        if routerService.endswith("@internal") and not self.addInternals:
            return
        protocol = protocolLabel(request)
        code = _codeLabel(request, protocol)
        method = methodLabel(request.method)
        seconds = max(0.0, self.clock.seconds() - context.start) if context.start else 0.0
        body = getattr(request, "body", None)
        requestBytes = body.received if body is not None else 0
        responseBytes = request.bytesSent
        tls = tlsLabels(request)
        headerValues: tuple[str, ...] = ()
        if self.headerNames:
            headers = request.requestHeaders
            headerValues = tuple(
                ((headers.getRawHeaders(name) or [b""])[0]).decode("latin-1") for name in self.headerNames
            )
        if self.entryPoints is not None:
            self.entryPoints.record(
                (code, method, protocol, context.entryPoint), headerValues, tls, seconds, requestBytes, responseBytes
            )
        if self.routers is not None:
            self.routers.record(
                (code, method, protocol, router, routerService), headerValues, tls, seconds, requestBytes, responseBytes
            )
        service = context.service
        if self.services is not None and service:
            self.services.record((code, method, protocol, service), headerValues, tls, seconds, requestBytes, responseBytes)

    # -- scrapes --

    def exposition(self) -> bytes:
        """
        The text exposition of every metric; afterwards the series of
        routers and services gone from the configuration are dropped (so
        they are seen once more after they went away).
        """
        if self.multiprocessDirectory is not None:
            # Other workers' values are at most SYNC_INTERVAL old; this
            # one's are current. Series are not dropped from the files.
            self.sync()
            _forgetDeadProcesses(self.multiprocessDirectory)
            return generate_latest(self.registry)
        body = generate_latest(self.registry)
        self._prune()
        return body

    def sync(self) -> None:
        """
        Copy this process's open connections and WebSocket counts into the
        values shared between workers (never fails).
        """
        try:
            service = self.source()
            for name, count in openConnections(service).items():
                self._openConnections.labels(name, "TCP").set(count)
            messages, sizes, live = websocketTotals(getattr(service, "watcher", None))
            self._websocketConnections.set(live)
            totals = messages + sizes
            counters = (
                self._websocketMessages.labels("in"),
                self._websocketMessages.labels("out"),
                self._websocketBytes.labels("in"),
                self._websocketBytes.labels("out"),
            )
            for index, total in enumerate(totals):
                previous = self._synced[index]
                # A total below the last one means the relay started over.
                delta = total - previous if total >= previous else total
                if delta:
                    counters[index].inc(delta)
                self._synced[index] = total
        except Exception:
            self._log.failure("copying the metrics of this worker failed")

    def stop(self) -> None:
        if self._sync is not None and self._sync.running:
            self._sync.stop()

    def _prune(self) -> None:
        service = self.source()
        runtime = getattr(service, "runtime", None)
        if runtime is None:
            return
        routers, services = runtime.routers, runtime.services
        if self.routers is not None:
            self.routers.prune(lambda labels: labels[0] in routers)
        if self.services is not None:
            self.services.prune(lambda labels: labels[0] in services)

    def handler(self) -> PrometheusHandler:
        return PrometheusHandler(self)


class _StateCollector:
    """
    What is read from the running service at scrape time.
    """

    def __init__(self, metrics: PrometheusMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        service = self.metrics.source()
        watcher = getattr(service, "watcher", None)
        reloads = CounterMetricFamily(PREFIX + "config_reloads", "Configuration reloads.")
        reloads.add_metric([], float(getattr(watcher, "reloads", 0)))
        yield reloads
        last = GaugeMetricFamily(
            PREFIX + "config_last_reload_success", "When the last configuration reload succeeded (Unix seconds)."
        )
        last.add_metric([], float(getattr(watcher, "lastSuccess", None) or 0))
        yield last
        yield self._certificates(service)
        if self.metrics.services is not None:
            yield self._serversUp(service)
        if self.metrics.multiprocessDirectory is None:
            yield self._openConnections(service)
            yield from self._websockets(watcher)

    def _openConnections(self, service: Any) -> Metric:
        family = GaugeMetricFamily(
            PREFIX + "open_connections", _OPEN_CONNECTIONS_HELP, labels=["entrypoint", "protocol"]
        )
        for name, count in sorted(openConnections(service).items()):
            family.add_metric([name, "TCP"], float(count))
        return family

    def _certificates(self, service: Any) -> Metric:
        family = GaugeMetricFamily(
            PREFIX + "tls_certs_not_after",
            "When a served certificate expires (Unix seconds).",
            labels=["cn", "serial", "sans"],
        )
        runtime = getattr(service, "runtime", None)
        tls = getattr(runtime, "tls", None)
        seen = set()
        for pair in getattr(tls, "_pairs", {}).values():
            leaf = pair.leaf
            labels = certificateLabels(leaf)
            if labels in seen:
                continue
            seen.add(labels)
            family.add_metric(list(labels), leaf.not_valid_after_utc.timestamp())
        return family

    def _serversUp(self, service: Any) -> Metric:
        family = GaugeMetricFamily(
            PREFIX + "service_server_up",
            "Whether a server of a service is up (1) or down (0).",
            labels=["service", "url"],
        )
        runtime = getattr(service, "runtime", None)
        for name, info in sorted(getattr(runtime, "services", {}).items()):
            if name.endswith("@internal"):
                continue
            for url, status in sorted(info.serverStatus.items()):
                family.add_metric([name, url], 1.0 if status == "UP" else 0.0)
        return family

    def _websockets(self, watcher: Any) -> Iterable[Metric]:
        messages, sizes, live = websocketTotals(watcher)
        messagesFamily = CounterMetricFamily("relayd_websocket_messages", _WEBSOCKET_MESSAGES_HELP, labels=["direction"])
        bytesFamily = CounterMetricFamily("relayd_websocket_message_bytes", _WEBSOCKET_BYTES_HELP, labels=["direction"])
        for index, direction in enumerate(("in", "out")):
            messagesFamily.add_metric([direction], float(messages[index]))
            bytesFamily.add_metric([direction], float(sizes[index]))
        yield messagesFamily
        yield bytesFamily
        openFamily = GaugeMetricFamily("relayd_websocket_connections", _WEBSOCKET_CONNECTIONS_HELP)
        openFamily.add_metric([], float(live))
        yield openFamily


def openConnections(service: Any) -> dict[str, int]:
    """
    The open client connections of each TCP entrypoint: HTTP connections
    (HTTP/1.1 and HTTP/2), WebSockets and TCP tunnels.
    """
    counts = {}
    for name, entryPoint in getattr(service, "entryPoints", {}).items():
        if entryPoint.address.protocol == "udp":
            continue
        counts[name] = sum(len(site.channels) + len(site.tunnels) for site in entryPoint.sites)
    return counts


def websocketTotals(watcher: Any) -> tuple[list[int], list[int], int]:
    """
    WebSocket messages and payload bytes relayed so far ([in, out] each,
    closed and open relays), and how many relays are open.
    """
    shared = getattr(watcher, "shared", None) or {}
    relayer = getattr(shared.get("forwarder"), "websockets", None)
    stats = getattr(relayer, "stats", None)
    messages = [0, 0]
    sizes = [0, 0]
    live = list(getattr(relayer, "relays", ()))
    if stats is not None:
        messages = [stats.messagesIn, stats.messagesOut]
        sizes = [stats.bytesIn, stats.bytesOut]
    for relay in live:
        for index in (0, 1):
            messages[index] += relay.messages[index]
            sizes[index] += relay.bytes[index]
    return messages, sizes, len(live)


_OPEN_CONNECTIONS_HELP = "Open client connections, by entrypoint and protocol."
_WEBSOCKET_MESSAGES_HELP = "WebSocket messages relayed, by direction (in: client to server, out: server to client)."
_WEBSOCKET_BYTES_HELP = "WebSocket message payload bytes relayed, by direction."
_WEBSOCKET_CONNECTIONS_HELP = "Open relayed WebSocket connections."


def _useFiles() -> None:
    # prometheus_client picks where values live when it is imported; relayd
    # may have imported it before the directory was known.
    from prometheus_client import values

    if getattr(values.ValueClass, "__name__", "") != "MmapedValue":
        values.ValueClass = values.MultiProcessValue()


def _forgetDeadProcesses(directory: str) -> None:
    """
    Drop the live gauges (open connections) of workers that died.
    """
    from prometheus_client.multiprocess import mark_process_dead

    pids: set[int] = set()
    for name in os.listdir(directory):
        if name.startswith("gauge_live") and name.endswith(".db"):
            digits = name[: -len(".db")].rpartition("_")[2]
            if digits.isdigit():
                pids.add(int(digits))
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mark_process_dead(pid, directory)
        except OSError:
            pass


def workersDirectory(reactor: Any, workers: int, index: int) -> str | None:
    """
    Where the workers' metric values live: made (and removed at exit) by the
    first process before it starts the others, inherited by them through
    the environment. C{None} with a single process.
    """
    if workers <= 1:
        return None
    if index == 0:
        directory = tempfile.mkdtemp(prefix="relayd-metrics-")
        os.environ[MULTIPROCESS_ENV] = directory
        reactor.addSystemEventTrigger("after", "shutdown", _removeDirectory, directory)
        PrometheusMetrics._log.info(
            "metrics of {workers} workers are kept in {directory}", workers=workers, directory=directory
        )
        return directory
    directory = os.environ.get(MULTIPROCESS_ENV, "")
    if not os.path.isdir(directory):
        PrometheusMetrics._log.warn(
            "worker {index}: the metrics directory is missing; this worker's metrics are its own", index=index
        )
        return None
    return directory


def _removeDirectory(directory: str) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    if os.environ.get(MULTIPROCESS_ENV) == directory:
        del os.environ[MULTIPROCESS_ENV]


def certificateLabels(certificate: Any) -> tuple[str, str, str]:
    """
    The C{cn}, C{serial} (decimal) and C{sans} (sorted DNS names joined by
    commas) labels of a certificate.
    """
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    commonNames = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = commonNames[0].value if commonNames else ""
    if isinstance(cn, bytes):
        cn = cn.decode("utf-8", "replace")
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dnsNames = sorted(names.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        dnsNames = []
    return cn, str(certificate.serial_number), ",".join(dnsNames)


@implementer(IHTTPHandler)
class PrometheusHandler:
    """
    Answers a scrape with the text exposition format.
    """

    _log = Logger()

    def __init__(self, metrics: PrometheusMetrics | None) -> None:
        self.metrics = metrics

    def handle(self, request: Any) -> None:
        if self.metrics is None:
            plainResponse(request, 404, "404 Not Found: metrics.prometheus is not configured\n")
            return
        try:
            body = self.metrics.exposition()
        except Exception:
            self._log.failure("collecting the metrics failed")
            plainResponse(request, 500)
            return
        request.setResponseCode(200)
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        request.setHeader(b"content-length", str(len(body)).encode("ascii"))
        if request.method != b"HEAD":
            request.write(body)
        request.finish()


def prometheusService(context: Any, state: Mapping[str, Any]) -> PrometheusHandler:
    """
    The C{prometheus@internal} service: the metrics object the running
    service keeps in C{state["metrics"]}, answered as a scrape.
    """
    return PrometheusHandler(state.get("metrics"))
