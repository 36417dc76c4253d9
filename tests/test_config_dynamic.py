"""
Tests for L{relayd.config.dynamic}: routers, services, TCP, UDP and TLS
sections, and every check with its key path and message.
"""

from __future__ import annotations

from typing import Any

import yaml
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import assertDecodeErrors
from relayd.config.dynamic import (
    DynamicConfig,
    Failover,
    HTTPConfig,
    LoadBalancer,
    Mirror,
    Mirroring,
    Router,
    RouterTLS,
    Server,
    Service,
    TCPService,
    TLSOptions,
    UDPService,
    Weighted,
    WeightedService,
    decodeDynamic,
)
from relayd.config.errors import ConfigError
from relayd.config.schema import flatToTree
from relayd.config.types import Duration, FrozenMap

SERVICE_CHOICES = "loadBalancer, weighted, mirroring, failover, highestRandomWeight"


def lb(**keys: Any) -> dict:
    """
    A dynamic document with one load-balancer service C{s}.
    """
    return {"http": {"services": {"s": {"loadBalancer": keys}}}}


def router(**keys: Any) -> dict:
    """
    A dynamic document with one HTTP router C{r}.
    """
    return {"http": {"routers": {"r": dict({"rule": "Path(`/`)"}, **keys)}}}


class DynamicTestCase(SynchronousTestCase):
    def assertErrors(self, raw: Any, *expected: tuple[str, str]) -> None:
        """
        Decoding C{raw} fails with exactly these (path, message substring) pairs.
        """
        assertDecodeErrors(self, decodeDynamic, raw, *expected)


class DecodeDynamicTests(DynamicTestCase):
    """
    Tests for L{decodeDynamic} and the top level.
    """

    def test_empty(self) -> None:
        """
        Nothing, or an empty document, is the empty configuration.
        """
        self.assertEqual(decodeDynamic(None), DynamicConfig())
        self.assertEqual(decodeDynamic({}), DynamicConfig())
        self.assertTrue(decodeDynamic({}).isEmpty())
        self.assertFalse(decodeDynamic(router()).isEmpty())

    def test_unknownTopLevel(self) -> None:
        """
        An unknown top-level key lists the four sections.
        """
        self.assertErrors({"frontends": {}}, ("frontends", "unknown key; expected one of http, tcp, udp, tls"))

    def test_notATable(self) -> None:
        """
        A document that is not a table fails at the top.
        """
        self.assertErrors(["x"], ("", "expected a table of keys, got a list"))

    def test_pathPrefix(self) -> None:
        """
        The path argument prefixes the key paths of errors.
        """
        with self.assertRaises(ConfigError) as caught:
            decodeDynamic({"http": {"routers": {"r": {"priority": "x"}}}}, "docker.web")
        self.assertEqual(caught.exception.path, "docker.web.http.routers.r.priority")

    def test_caseInsensitive(self) -> None:
        """
        Keys match in any case, and names keep theirs.
        """
        config = decodeDynamic({"HTTP": {"Routers": {"MyRouter": {"RULE": "Path(`/`)", "Service": "S"}}}})
        self.assertEqual(config.http.routers["MyRouter"], Router(rule="Path(`/`)", service="S"))

    def test_equalityAndHash(self) -> None:
        """
        Two decodings of the same document are equal and hash alike.
        """
        raw = dict(router(middlewares=["a", "b"]), **lb(servers=[{"url": "http://a"}]))
        raw["http"] = {**router()["http"], **lb(servers=[{"url": "http://a"}])["http"]}
        self.assertEqual(decodeDynamic(raw), decodeDynamic(raw))
        self.assertEqual(hash(decodeDynamic(raw)), hash(decodeDynamic(raw)))


class RouterTests(DynamicTestCase):
    """
    HTTP routers.
    """

    def test_router(self) -> None:
        """
        A router decodes every key it has.
        """
        config = decodeDynamic(
            router(
                entryPoints=["web"],
                middlewares=["auth", "strip@file"],
                service="api",
                priority=10,
                ruleSyntax="v2",
                tls={"options": "modern", "certResolver": "le", "domains": [{"main": "example.com", "sans": ["*.example.com"]}]},
                observability={"accessLogs": False},
            )
        )
        r = config.http.routers["r"]
        self.assertEqual(r.entryPoints, ("web",))
        self.assertEqual(r.middlewares, ("auth", "strip@file"))
        self.assertEqual((r.service, r.priority, r.ruleSyntax), ("api", 10, "v2"))
        self.assertEqual(r.tls.options, "modern")
        self.assertEqual(r.tls.domains[0].sans, ("*.example.com",))
        self.assertIs(r.observability.accessLogs, False)
        self.assertIsNone(r.observability.metrics)

    def test_tlsTrue(self) -> None:
        """
        C{tls = true} on a router enables an empty TLS section, as C{tls: {}} does.
        """
        for tls in (True, {}, None):
            with self.subTest(tls=tls):
                self.assertEqual(decodeDynamic(router(tls=tls)).http.routers["r"].tls, RouterTLS())
        self.assertIsNone(decodeDynamic(router(tls=False)).http.routers["r"].tls)
        self.assertIsNone(decodeDynamic(router()).http.routers["r"].tls)

    def test_yamlTlsNull(self) -> None:
        """
        In YAML, C{tls:} with nothing after it enables TLS.
        """
        raw = yaml.safe_load("http:\n  routers:\n    r:\n      rule: Path(`/`)\n      tls:\n")
        self.assertEqual(decodeDynamic(raw).http.routers["r"].tls, RouterTLS())

    def test_labels(self) -> None:
        """
        Label-style flat keys decode like the file form, with lowercase keys.
        """
        tree = flatToTree(
            DynamicConfig,
            [
                ("http.routers.Web.rule", "Host(`a`)"),
                ("http.routers.Web.tls", "true"),
                ("http.routers.Web.middlewares", "a, b"),
                ("http.services.Web.loadbalancer.servers[0].url", "http://a:80"),
                ("http.services.Web.loadbalancer.servers.1.url", "http://b:80"),
            ],
        )
        config = decodeDynamic(tree)
        self.assertEqual(config.http.routers["Web"], Router(rule="Host(`a`)", tls=RouterTLS(), middlewares=("a", "b")))
        self.assertEqual(
            config.http.services["Web"].loadBalancer.servers,
            (Server(url="http://a:80"), Server(url="http://b:80")),
        )

    def test_wrongTypes(self) -> None:
        """
        Router keys of the wrong type fail at their paths.
        """
        self.assertErrors(
            router(priority="high", ruleSyntax="v4", tls="yes", entryPoints={"a": 1}),
            ("http.routers.r.priority", "expected an integer, got the string 'high'"),
            ("http.routers.r.ruleSyntax", 'expected one of "v2", "v3", got the string \'v4\''),
            ("http.routers.r.tls", "expected a table of keys, got the string 'yes'"),
            ("http.routers.r.entryPoints", "expected a list, got a table"),
        )

    def test_setTwice(self) -> None:
        """
        A router key written twice in different case fails.
        """
        self.assertErrors(
            {"http": {"routers": {"r": {"rule": "a", "Rule": "b"}}}},
            ("http.routers.r.rule", 'set twice (as "rule" and "Rule"); keys are case-insensitive'),
        )

    def test_unknownKey(self) -> None:
        """
        A misspelt router key names the key it probably meant.
        """
        self.assertErrors(router(servce="s"), ("http.routers.r.servce", 'unknown key, did you mean "service"?'))

    def test_observabilityLiteral(self) -> None:
        """
        Router trace verbosity is minimal or detailed.
        """
        self.assertErrors(
            router(observability={"traceVerbosity": "loud"}),
            ("http.routers.r.observability.traceVerbosity", 'expected one of "minimal", "detailed"'),
        )


class NameTests(DynamicTestCase):
    """
    Object names may not contain '@' (it qualifies names with their provider).
    """

    def test_at(self) -> None:
        """
        A name with '@' fails at the object's own path, for every kind of object.
        """
        raw = {
            "http": {
                "routers": {"r@file": {"rule": "Path(`/`)"}},
                "services": {"s@x": {"loadBalancer": {}}},
                "middlewares": {"m@x": {"addPrefix": {"prefix": "/a"}}},
                "serversTransports": {"t@x": {}},
            },
            "tcp": {
                "routers": {"r@x": {}},
                "services": {"s@x": {"weighted": {}}},
                "middlewares": {"m@x": {"inFlightConn": {"amount": 1}}},
                "serversTransports": {"t@x": {}},
            },
            "udp": {"routers": {"r@x": {}}, "services": {"s@x": {"loadBalancer": {}}}},
        }
        self.assertErrors(
            raw,
            ("http.routers.r@file", "router name 'r@file' may not contain '@' (it separates a name from its provider"),
            ("http.services.s@x", "service name 's@x' may not contain '@'"),
            ("http.middlewares.m@x", "middleware name 'm@x' may not contain '@'"),
            ("http.serversTransports.t@x", "serversTransport name 't@x' may not contain '@'"),
            ("tcp.routers.r@x", "router name 'r@x' may not contain '@'"),
            ("tcp.services.s@x", "service name 's@x' may not contain '@'"),
            ("tcp.middlewares.m@x", "middleware name 'm@x' may not contain '@'"),
            ("tcp.serversTransports.t@x", "serversTransport name 't@x' may not contain '@'"),
            ("udp.routers.r@x", "router name 'r@x' may not contain '@'"),
            ("udp.services.s@x", "service name 's@x' may not contain '@'"),
        )

    def test_empty(self) -> None:
        """
        An empty name fails.
        """
        self.assertErrors({"http": {"routers": {"": {"rule": "x"}}}}, ("http.routers.", "router names may not be empty"))


class ServiceTests(DynamicTestCase):
    """
    HTTP services: exactly one kind, and the checks of each kind.
    """

    def test_noKind(self) -> None:
        """
        A service with no kind names every kind.
        """
        self.assertErrors(
            {"http": {"services": {"s": {}}}},
            ("http.services.s", f"exactly one of {SERVICE_CHOICES} must be set"),
        )

    def test_twoKinds(self) -> None:
        """
        A service with two kinds names the ones set.
        """
        self.assertErrors(
            {"http": {"services": {"s": {"loadBalancer": {}, "failover": {"service": "a", "fallback": "b"}}}}},
            ("http.services.s", f"exactly one of {SERVICE_CHOICES} must be set, got loadBalancer and failover"),
        )

    def test_kinds(self) -> None:
        """
        Each kind decodes, with its kind name and the services it refers to.
        """
        cases = [
            ({"loadBalancer": {"servers": [{"url": "http://a"}]}}, "loadBalancer", ()),
            ({"weighted": {"services": [{"name": "a", "weight": 2}, {"name": "b@docker"}]}}, "weighted", ("a", "b@docker")),
            ({"highestRandomWeight": {"services": [{"name": "a"}]}}, "highestRandomWeight", ("a",)),
            ({"mirroring": {"service": "main", "mirrors": [{"name": "m", "percent": 10}]}}, "mirroring", ("main", "m")),
            ({"failover": {"service": "main", "fallback": "backup"}}, "failover", ("main", "backup")),
        ]
        for raw, kind, children in cases:
            with self.subTest(kind=kind):
                service = decodeDynamic({"http": {"services": {"s": raw}}}).http.services["s"]
                self.assertEqual(service.kind(), kind)
                self.assertEqual(service.children(), children)

    def test_loadBalancerDefaults(self) -> None:
        """
        A load balancer defaults to wrr, passes the Host header and flushes every 100ms.
        """
        service = decodeDynamic(lb(servers=[{"url": "http://a"}])).http.services["s"]
        balancer = service.loadBalancer
        self.assertEqual(balancer.strategy, "wrr")
        self.assertIs(balancer.passHostHeader, True)
        self.assertEqual(balancer.responseForwarding.flushInterval, Duration(0.1))
        self.assertIsNone(balancer.servers[0].weight)
        self.assertEqual(service, Service(loadBalancer=LoadBalancer(servers=(Server(url="http://a"),))))

    def test_serverURL(self) -> None:
        """
        Server URLs need a supported scheme and a host; the message says what is expected.
        """
        expected = "expected scheme://host[:port], with scheme http, https, h2c, ws or wss"
        cases = [
            ("ftp://a", f"invalid server URL 'ftp://a': {expected}"),
            ("a:80", f"invalid server URL 'a:80': {expected}"),
            ("http://", f"invalid server URL 'http://': {expected}"),
            ("", f"invalid server URL '': {expected}"),
            ("http://a:99999", "invalid server URL 'http://a:99999': Port out of range 0-65535"),
            ("http://[::1", "invalid server URL 'http://[::1': Invalid IPv6 URL"),
        ]
        for url, message in cases:
            with self.subTest(url=url):
                self.assertErrors(lb(servers=[{"url": url}]), ("http.services.s.loadBalancer.servers[0].url", message))
        for url in ("http://a", "https://a:8443/base", "h2c://grpc:50051", "HTTP://[::1]:80"):
            with self.subTest(url=url):
                decodeDynamic(lb(servers=[{"url": url}]))

    def test_serverChecks(self) -> None:
        """
        A server needs a URL, and its weight may not be negative.
        """
        self.assertErrors(
            lb(servers=[{"weight": 1}, {"url": "http://a", "weight": -1}]),
            ("http.services.s.loadBalancer.servers[0].url", "required key is missing"),
            ("http.services.s.loadBalancer.servers[1].weight", "must not be negative, got -1"),
        )

    def test_strategy(self) -> None:
        """
        The load-balancing strategy is one of Traefik's four.
        """
        self.assertErrors(
            lb(strategy="roundrobin"),
            ("http.services.s.loadBalancer.strategy", 'expected one of "wrr", "p2c", "hrw", "leasttime"'),
        )

    def test_healthCheck(self) -> None:
        """
        A health check needs an absolute path, an HTTP status code and a valid port.
        """
        self.assertErrors(lb(healthCheck={}), ("http.services.s.loadBalancer.healthCheck.path", "required key is missing"))
        self.assertErrors(
            lb(healthCheck={"path": "health", "status": 42, "port": 70000}),
            ("http.services.s.loadBalancer.healthCheck.path", "must start with '/', got 'health'"),
            ("http.services.s.loadBalancer.healthCheck.status", "must be an HTTP status code, got 42"),
            ("http.services.s.loadBalancer.healthCheck.port", "must be a port number, got 70000"),
        )
        self.assertErrors(
            lb(healthCheck={"path": "/", "mode": "tcp", "interval": "-1s"}),
            ("http.services.s.loadBalancer.healthCheck.mode", 'expected one of "http", "grpc"'),
            ("http.services.s.loadBalancer.healthCheck.interval", "must not be negative, got -1s"),
        )
        check = decodeDynamic(lb(healthCheck={"path": "/health"})).http.services["s"].loadBalancer.healthCheck
        self.assertEqual((check.interval, check.timeout, check.method), (30, 5, "GET"))

    def test_sticky(self) -> None:
        """
        A sticky cookie's sameSite is any string, as in Traefik, where a
        value other than none, lax or strict writes no SameSite attribute (the
        socket.io article's labels use "io").
        """
        cookie = decodeDynamic(lb(sticky={"cookie": {"sameSite": "io"}})).http.services["s"].loadBalancer.sticky.cookie
        self.assertEqual(cookie.sameSite, "io")
        cookie = decodeDynamic(lb(sticky={"cookie": {}})).http.services["s"].loadBalancer.sticky.cookie
        self.assertEqual(cookie.path, "/")

    def test_weightedNeedsNames(self) -> None:
        """
        Every weighted child names a service, with a non-negative weight.
        """
        self.assertErrors(
            {"http": {"services": {"s": {"weighted": {"services": [{"weight": 1}, {"name": "b", "weight": -2}]}}}}},
            ("http.services.s.weighted.services[0].name", "required key is missing"),
            ("http.services.s.weighted.services[1].weight", "must not be negative, got -2"),
        )

    def test_mirroring(self) -> None:
        """
        Mirroring needs a main service, and mirror percentages are 0 to 100.
        """
        self.assertErrors(
            {"http": {"services": {"s": {"mirroring": {"mirrors": [{"name": "m", "percent": 101}]}}}}},
            ("http.services.s.mirroring.mirrors[0].percent", "must be between 0 and 100, got 101"),
            ("http.services.s.mirroring.service", "required key is missing"),
        )
        self.assertErrors(
            {"http": {"services": {"s": {"mirroring": {"service": "a", "mirrors": [{"name": "m", "percent": 101}]}}}}},
            ("http.services.s.mirroring.mirrors[0].percent", "must be between 0 and 100, got 101"),
        )
        mirroring = decodeDynamic(
            {"http": {"services": {"s": {"mirroring": {"service": "a", "mirrors": [{"name": "m"}]}}}}}
        ).http.services["s"].mirroring
        self.assertEqual(mirroring, Mirroring(service="a", mirrors=(Mirror(name="m", percent=0),)))
        self.assertEqual(mirroring.maxBodySize, -1)

    def test_failover(self) -> None:
        """
        Failover needs both a service and a fallback.
        """
        self.assertErrors(
            {"http": {"services": {"s": {"failover": {}}}}},
            ("http.services.s.failover.service", "required key is missing"),
            ("http.services.s.failover.fallback", "required key is missing"),
        )
        failover = decodeDynamic(
            {"http": {"services": {"s": {"failover": {"service": "a", "fallback": "b", "healthCheck": {}}}}}}
        ).http.services["s"].failover
        self.assertEqual(failover.fallback, "b")
        self.assertIsInstance(failover, Failover)

    def test_parentHealthCheckTakesNoKeys(self) -> None:
        """
        A parent service's health check is an empty table.
        """
        self.assertErrors(
            {"http": {"services": {"s": {"weighted": {"healthCheck": {"path": "/"}}}}}},
            ("http.services.s.weighted.healthCheck.path", "unknown key; this section takes no keys"),
        )

    def test_serversTransport(self) -> None:
        """
        An HTTP servers transport has Traefik's timeouts and rejects negative ones.
        """
        config = decodeDynamic({"http": {"serversTransports": {"t": {"serverName": "x"}}}})
        transport = config.http.serversTransports["t"]
        self.assertEqual(transport.forwardingTimeouts.dialTimeout, 30)
        self.assertEqual(transport.forwardingTimeouts.pingTimeout, 15)
        self.assertErrors(
            {"http": {"serversTransports": {"t": {"forwardingTimeouts": {"dialTimeout": "-1s"}, "maxIdleConnsPerHost": -1}}}},
            ("http.serversTransports.t.forwardingTimeouts.dialTimeout", "must not be negative, got -1s"),
            ("http.serversTransports.t.maxIdleConnsPerHost", "must not be negative, got -1"),
        )


class TCPUDPTests(DynamicTestCase):
    """
    TCP and UDP sections.
    """

    def test_tcpService(self) -> None:
        """
        TCP services need exactly one of loadBalancer and weighted.
        """
        self.assertErrors({"tcp": {"services": {"s": {}}}}, ("tcp.services.s", "exactly one of loadBalancer, weighted must be set"))
        service = decodeDynamic(
            {"tcp": {"services": {"s": {"loadBalancer": {"servers": [{"address": "db:5432"}]}}}}}
        ).tcp.services["s"]
        self.assertEqual(service.kind(), "loadBalancer")
        self.assertEqual(service.children(), ())
        weighted = TCPService(weighted=decodeDynamic(
            {"tcp": {"services": {"w": {"weighted": {"services": [{"name": "a"}]}}}}}
        ).tcp.services["w"].weighted)
        self.assertEqual((weighted.kind(), weighted.children()), ("weighted", ("a",)))

    def test_serverAddress(self) -> None:
        """
        TCP and UDP server addresses must be host:port.
        """
        for address in ("nohost", ":80", "host:", "host:x", "host:70000", "host:\u00b2"):
            with self.subTest(address=address):
                self.assertErrors(
                    {"tcp": {"services": {"s": {"loadBalancer": {"servers": [{"address": address}]}}}}},
                    ("tcp.services.s.loadBalancer.servers[0].address", f"invalid address {address!r}: expected host:port"),
                )
                self.assertErrors(
                    {"udp": {"services": {"s": {"loadBalancer": {"servers": [{"address": address}]}}}}},
                    ("udp.services.s.loadBalancer.servers[0].address", f"invalid address {address!r}: expected host:port"),
                )
        self.assertErrors(
            {"tcp": {"services": {"s": {"loadBalancer": {"servers": [{}]}}}}},
            ("tcp.services.s.loadBalancer.servers[0].address", "required key is missing"),
        )

    def test_proxyProtocolVersion(self) -> None:
        """
        The PROXY protocol version is 1 or 2.
        """
        self.assertErrors(
            {"tcp": {"services": {"s": {"loadBalancer": {"proxyProtocol": {"version": 3}}}}}},
            ("tcp.services.s.loadBalancer.proxyProtocol.version", "must be 1 or 2, got 3"),
        )
        self.assertErrors(
            {"tcp": {"serversTransports": {"t": {"proxyProtocol": {"version": 0}}}}},
            ("tcp.serversTransports.t.proxyProtocol.version", "must be 1 or 2, got 0"),
        )

    def test_tcpRouter(self) -> None:
        """
        A TCP router decodes its TLS passthrough; C{tls = true} enables TLS.
        """
        config = decodeDynamic(
            {"tcp": {"routers": {"r": {"rule": "HostSNI(`*`)", "service": "s", "tls": {"passthrough": True}}, "t": {"tls": True}}}}
        )
        self.assertIs(config.tcp.routers["r"].tls.passthrough, True)
        self.assertIs(config.tcp.routers["t"].tls.passthrough, False)

    def test_udp(self) -> None:
        """
        UDP routers have only entrypoints and a service, and UDP services one kind.
        """
        config = decodeDynamic(
            {"udp": {"routers": {"r": {"entryPoints": ["dns"], "service": "s"}}, "services": {"s": {"weighted": {"services": [{"name": "a"}]}}}}}
        )
        self.assertEqual(config.udp.services["s"].children(), ("a",))
        self.assertEqual(config.udp.services["s"].kind(), "weighted")
        self.assertEqual(UDPService(loadBalancer=None, weighted=None).children(), ())
        self.assertErrors(
            {"udp": {"routers": {"r": {"rule": "x"}}}},
            ("udp.routers.r.rule", "unknown key; expected one of entryPoints, service"),
        )
        self.assertErrors({"udp": {"services": {"s": {}}}}, ("udp.services.s", "exactly one of loadBalancer, weighted must be set"))


class TLSTests(DynamicTestCase):
    """
    The tls section.
    """

    def test_options(self) -> None:
        """
        TLS options default to TLS 1.2 and Traefik's ALPN list; clientAuthType is unset.
        """
        options = decodeDynamic({"tls": {"options": {"default": {}}}}).tls.options["default"]
        self.assertEqual(options, TLSOptions())
        self.assertEqual(options.minVersion, "VersionTLS12")
        self.assertEqual(options.alpnProtocols, ("h2", "http/1.1", "acme-tls/1"))
        self.assertEqual(options.clientAuth.clientAuthType, "")

    def test_maxBelowMin(self) -> None:
        """
        maxVersion below minVersion fails at maxVersion, also against the default minimum.
        """
        self.assertErrors(
            {"tls": {"options": {"o": {"minVersion": "VersionTLS13", "maxVersion": "VersionTLS12"}}}},
            ("tls.options.o.maxVersion", "VersionTLS12 is below minVersion VersionTLS13"),
        )
        self.assertErrors(
            {"tls": {"options": {"o": {"maxVersion": "VersionTLS11"}}}},
            ("tls.options.o.maxVersion", "VersionTLS11 is below minVersion VersionTLS12"),
        )
        options = decodeDynamic({"tls": {"options": {"o": {"minVersion": "versiontls13", "maxVersion": "VersionTLS13"}}}})
        self.assertEqual(options.tls.options["o"].minVersion, "VersionTLS13")

    def test_versionChoices(self) -> None:
        """
        TLS versions and client auth types list their choices.
        """
        self.assertErrors(
            {"tls": {"options": {"o": {"minVersion": "TLS1.2", "clientAuth": {"clientAuthType": "Always"}}}}},
            ("tls.options.o.minVersion", 'expected one of "VersionTLS10", "VersionTLS11", "VersionTLS12", "VersionTLS13"'),
            ("tls.options.o.clientAuth.clientAuthType", 'expected one of "NoClientCert", "RequestClientCert"'),
        )

    def test_certificates(self) -> None:
        """
        Certificates need both files and are a list.
        """
        self.assertErrors(
            {"tls": {"certificates": [{"certFile": "c.pem"}]}},
            ("tls.certificates[0].keyFile", "required key is missing"),
        )
        self.assertErrors(
            {"tls": {"certificates": {"certFile": "c", "keyFile": "k"}}},
            ("tls.certificates", "expected a list, got a table"),
        )
        config = decodeDynamic({"tls": {"certificates": [{"certFile": "c", "keyFile": "k", "stores": ["default"]}]}})
        self.assertEqual(config.tls.certificates[0].stores, ("default",))

    def test_stores(self) -> None:
        """
        A store has a default certificate or a generated one.
        """
        config = decodeDynamic(
            {"tls": {"stores": {"default": {"defaultGeneratedCert": {"resolver": "le", "domain": {"main": "a.example"}}}}}}
        )
        generated = config.tls.stores["default"].defaultGeneratedCert
        self.assertEqual((generated.resolver, generated.domain.main), ("le", "a.example"))


class ModelTests(SynchronousTestCase):
    """
    The dynamic model classes as values.
    """

    def test_directConstruction(self) -> None:
        """
        Models built in code equal the decoded ones.
        """
        built = DynamicConfig(
            http=HTTPConfig(
                routers=FrozenMap({"r": Router(rule="Path(`/`)", service="s")}),
                services=FrozenMap({"s": Service(weighted=Weighted(services=(WeightedService(name="a"),)))}),
            )
        )
        decoded = decodeDynamic(
            {"http": {"routers": {"r": {"rule": "Path(`/`)", "service": "s"}}, "services": {"s": {"weighted": {"services": [{"name": "a"}]}}}}}
        )
        self.assertEqual(built, decoded)
        self.assertEqual(len({built, decoded}), 1)
