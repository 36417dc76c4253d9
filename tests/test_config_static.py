"""
Tests for L{relayd.config.static}: Traefik's static configuration keys, their
defaults, and every check with its key path and message.
"""

from __future__ import annotations

from typing import Any

import yaml
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import assertDecodeErrors
from relayd.config.address import Address
from relayd.config.schema import decode, flatToTree
from relayd.config.static import (
    ACME,
    API,
    LETS_ENCRYPT,
    DNSChallenge,
    EntryPoint,
    HTTPChallenge,
    Ping,
    Providers,
    StaticConfig,
)
from relayd.config.types import Duration, FrozenMap

WEB = {"address": ":80"}


def withEntryPoint(**keys: Any) -> dict:
    """
    A static document with one entrypoint C{web} on :80 plus C{keys}.
    """
    return {"entryPoints": {"web": dict(WEB, **keys)}}


class StaticTestCase(SynchronousTestCase):
    def decodeStatic(self, raw: Any) -> StaticConfig:
        value, warnings = decode(StaticConfig, raw)
        self.assertEqual(warnings, [])
        return value

    def assertErrors(self, raw: Any, *expected: tuple[str, str]) -> None:
        """
        Decoding C{raw} fails with exactly these (path, message substring) pairs.
        """
        assertDecodeErrors(self, lambda r: decode(StaticConfig, r), raw, *expected)


class DefaultsTests(StaticTestCase):
    """
    Traefik's defaults for the static configuration.
    """

    def test_empty(self) -> None:
        """
        An empty document has no entrypoints, no optional sections and Traefik's defaults.
        """
        config = self.decodeStatic({})
        self.assertEqual(config.entryPoints, FrozenMap())
        self.assertIsNone(config.api)
        self.assertIsNone(config.ping)
        self.assertIsNone(config.accessLog)
        self.assertIsNone(config.metrics)
        self.assertEqual(config.log.level, "ERROR")
        self.assertEqual(config.log.format, "common")
        self.assertIs(config.global_.checkNewVersion, True)
        self.assertEqual(config.providers.providersThrottleDuration, 2)
        self.assertEqual(config.providers.enabled(), [])
        self.assertEqual(config.serversTransport.maxIdleConnsPerHost, 200)
        self.assertEqual(config.serversTransport.forwardingTimeouts.dialTimeout, 30)
        self.assertEqual(config.serversTransport.forwardingTimeouts.idleConnTimeout, 90)
        self.assertEqual(config.tcpServersTransport.dialKeepAlive, 15)
        self.assertEqual(config.core.defaultRuleSyntax, "v3")

    def test_entryPointDefaults(self) -> None:
        """
        An entrypoint gets Traefik's timeouts, limits and observability defaults.
        """
        ep = self.decodeStatic(withEntryPoint()).entryPoints["web"]
        self.assertEqual(ep, EntryPoint(address=":80"))
        self.assertEqual(ep.transport.respondingTimeouts.readTimeout, 60)
        self.assertEqual(ep.transport.respondingTimeouts.writeTimeout, 0)
        self.assertEqual(ep.transport.respondingTimeouts.idleTimeout, 180)
        self.assertEqual(ep.transport.lifeCycle.graceTimeOut, 10)
        self.assertEqual(ep.transport.lifeCycle.requestAcceptGraceTimeout, 0)
        self.assertEqual(ep.http.maxHeaderBytes, 1024 * 1024)
        self.assertIs(ep.http.sanitizePath, True)
        self.assertIs(ep.http.encodeQuerySemicolons, False)
        self.assertEqual(ep.http2.maxConcurrentStreams, 250)
        self.assertEqual(ep.udp.timeout, 3)
        self.assertEqual(ep.observability.traceVerbosity, "minimal")
        self.assertIsNone(ep.proxyProtocol)
        self.assertEqual(ep.parsedAddress, Address(protocol="tcp", port=80))

    def test_sectionDefaults(self) -> None:
        """
        Enabled sections take Traefik's defaults for the keys not given.
        """
        config = self.decodeStatic(
            {"api": {}, "ping": {}, "accessLog": {}, "metrics": {"prometheus": {}}}
        )
        self.assertEqual(config.api, API())
        self.assertIs(config.api.dashboard, True)
        self.assertEqual(config.api.basePath, "/")
        self.assertEqual(config.ping, Ping())
        self.assertEqual(config.ping.entryPoint, "traefik")
        self.assertEqual(config.ping.terminatingStatusCode, 503)
        self.assertEqual(config.accessLog.format, "common")
        self.assertEqual(config.accessLog.fields.headers.defaultMode, "drop")
        prometheus = config.metrics.prometheus
        self.assertEqual(prometheus.buckets, (0.1, 0.3, 1.2, 5.0))
        self.assertIs(prometheus.addRoutersLabels, False)
        self.assertIs(prometheus.addServicesLabels, True)
        self.assertEqual(prometheus.entryPoint, "traefik")

    def test_redirectionDefaults(self) -> None:
        """
        An entrypoint redirection defaults to a permanent redirection to https.
        """
        config = self.decodeStatic(
            {
                "entryPoints": {
                    "web": {"address": ":80", "http": {"redirections": {"entryPoint": {"to": "websecure"}}}},
                    "websecure": {"address": ":443"},
                }
            }
        )
        redirect = config.entryPoints["web"].http.redirections.entryPoint
        self.assertEqual((redirect.to, redirect.scheme, redirect.permanent), ("websecure", "https", True))

    def test_acmeDefaults(self) -> None:
        """
        An ACME resolver defaults to Let's Encrypt, acme.json and RSA4096 keys.
        """
        config = self.decodeStatic(
            {"certificatesResolvers": {"le": {"acme": {"tlsChallenge": {}}}}}
        )
        acme = config.certificatesResolvers["le"].acme
        self.assertEqual(acme.caServer, LETS_ENCRYPT)
        self.assertEqual(acme.storage, "acme.json")
        self.assertEqual(acme.keyType, "RSA4096")
        self.assertEqual(acme.certificatesDuration, 2160)
        self.assertEqual(acme.clientTimeout, 120)

    def test_providers(self) -> None:
        """
        Configured providers are listed by the names used after '@', with their defaults.
        """
        config = self.decodeStatic(
            {"providers": {"file": {"filename": "d.toml"}, "docker": {}, "consulCatalog": {}}}
        )
        self.assertEqual(config.providers.enabled(), ["file", "docker", "consulcatalog"])
        self.assertIs(config.providers.file.watch, True)
        self.assertEqual(config.providers.docker.endpoint, "unix:///var/run/docker.sock")
        self.assertIs(config.providers.docker.exposedByDefault, True)
        self.assertEqual(config.providers.consulCatalog.strictChecks, ("passing", "warning"))
        self.assertEqual(config.providers.consulCatalog.refreshInterval, 15)

    def test_everySection(self) -> None:
        """
        A document that uses every top-level section decodes.
        """
        config = self.decodeStatic(
            {
                "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
                "serversTransport": {"insecureSkipVerify": True, "rootCAs": ["ca.pem"]},
                "tcpServersTransport": {"dialTimeout": "5s", "tls": {}},
                "entryPoints": {
                    "web": {
                        "address": ":80",
                        "proxyProtocol": {"trustedIPs": ["10.0.0.0/8"]},
                        "forwardedHeaders": {"insecure": True},
                        "http": {"middlewares": ["auth@file"], "tls": {"certResolver": "le"}},
                    }
                },
                "providers": {"file": {"directory": "/etc/relayd/dynamic"}},
                "api": {"insecure": True},
                "ping": {"entryPoint": "web"},
                "log": {"level": "debug", "format": "json"},
                "accessLog": {"filters": {"statusCodes": ["200,300-302"], "minDuration": "10ms"}},
                "metrics": {"prometheus": {"headerLabels": {"useragent": "User-Agent"}}},
                "certificatesResolvers": {
                    "le": {"acme": {"email": "a@example.com", "httpChallenge": {"entryPoint": "web"}}}
                },
                "core": {"defaultRuleSyntax": "v2"},
            }
        )
        self.assertIs(config.global_.checkNewVersion, False)
        self.assertEqual(config.tcpServersTransport.dialTimeout, 5)
        self.assertEqual(config.log.level, "DEBUG")
        self.assertEqual(config.accessLog.filters.minDuration, Duration(0.01))
        self.assertEqual(config.metrics.prometheus.headerLabels, {"useragent": "User-Agent"})
        self.assertEqual(
            config.certificatesResolvers["le"].acme.httpChallenge, HTTPChallenge(entryPoint="web")
        )
        self.assertEqual(config.core.defaultRuleSyntax, "v2")


class KeysTests(StaticTestCase):
    """
    Keys are case-insensitive everywhere; names keep their case.
    """

    def test_caseInsensitive(self) -> None:
        """
        C{ENTRYPOINTS.Web.ADDRESS} is the address of the entrypoint named C{Web}.
        """
        config = self.decodeStatic({"ENTRYPOINTS": {"Web": {"ADDRESS": ":80"}}, "Log": {"LEVEL": "info"}})
        self.assertEqual(list(config.entryPoints), ["Web"])
        self.assertEqual(config.entryPoints["Web"].address, ":80")
        self.assertEqual(config.log.level, "INFO")

    def test_globalKey(self) -> None:
        """
        The Python-reserved C{global} section is written C{global}.
        """
        self.assertIs(self.decodeStatic({"Global": {"checkNewVersion": "false"}}).global_.checkNewVersion, False)
        self.assertErrors({"global_": {}}, ("global_", 'unknown key, did you mean "global"?'))

    def test_namesKeepCase(self) -> None:
        """
        Entrypoint and resolver names that differ only in case are different names.
        """
        config = self.decodeStatic({"entryPoints": {"web": WEB, "WEB": {"address": ":81"}}})
        self.assertEqual(list(config.entryPoints), ["web", "WEB"])

    def test_yamlNullEnables(self) -> None:
        """
        In YAML, C{api:} with nothing after it enables the API with defaults.
        """
        config = self.decodeStatic(yaml.safe_load("api:\nping:\n"))
        self.assertEqual(config.api, API())
        self.assertEqual(config.ping, Ping())

    def test_falseDisables(self) -> None:
        """
        A section set to false stays off.
        """
        self.assertIsNone(self.decodeStatic({"api": False}).api)

    def test_unknownKey(self) -> None:
        """
        A misspelt key fails with its path and the key it probably meant.
        """
        self.assertErrors(
            {"entryPoints": {"web": {"adress": ":80"}}},
            ("entryPoints.web.adress", 'unknown key, did you mean "address"?'),
            ("entryPoints.web.address", "required key is missing"),
        )

    def test_unknownTopLevel(self) -> None:
        """
        An unknown top-level key lists the sections.
        """
        self.assertErrors(
            {"frontends": {}},
            ("frontends", "unknown key; expected one of global, serversTransport"),
        )

    def test_setTwice(self) -> None:
        """
        A key written twice in different case fails.
        """
        self.assertErrors(
            {"entryPoints": {"web": {"address": ":80", "Address": ":81"}}},
            ("entryPoints.web.address", 'set twice (as "address" and "Address"); keys are case-insensitive'),
        )

    def test_flags(self) -> None:
        """
        Traefik-style flags decode to the same configuration as the file form.
        """
        flags = [
            ("entrypoints.web.address", ":80"),
            ("entrypoints.web.forwardedheaders.trustedips", "10.0.0.0/8, 127.0.0.1"),
            ("entrypoints.websecure.address", ":443"),
            ("entrypoints.websecure.http.tls.domains[0].main", "example.com"),
            ("entrypoints.websecure.http.tls.domains[0].sans", "a.example.com,b.example.com"),
            ("providers.docker.exposedbydefault", "false"),
            ("metrics.prometheus.headerlabels.UserAgent", "User-Agent"),
            ("api", "true"),
            ("accesslog", ""),
        ]
        fromFlags = self.decodeStatic(flatToTree(StaticConfig, flags))
        fromFile = self.decodeStatic(
            {
                "entryPoints": {
                    "web": {"address": ":80", "forwardedHeaders": {"trustedIPs": ["10.0.0.0/8", "127.0.0.1"]}},
                    "websecure": {
                        "address": ":443",
                        "http": {"tls": {"domains": [{"main": "example.com", "sans": ["a.example.com", "b.example.com"]}]}},
                    },
                },
                "providers": {"docker": {"exposedByDefault": False}},
                "metrics": {"prometheus": {"headerLabels": {"UserAgent": "User-Agent"}}},
                "api": {},
                "accessLog": {},
            }
        )
        self.assertEqual(fromFlags, fromFile)
        self.assertEqual(fromFlags.api, API())

    def test_flagsIgnoredSectionWarns(self) -> None:
        """
        Flags for an ignored section warn as the same keys in a file do.
        """
        _, warnings = decode(StaticConfig, flatToTree(StaticConfig, [("tracing.otlp.http.endpoint", "x")]))
        self.assertEqual(warnings, ["tracing: relayd does not implement tracing; this section is ignored"])


class WrongTypeTests(StaticTestCase):
    """
    Wrong types fail with the key path, what was expected and what was found.
    """

    def test_wrongTypes(self) -> None:
        """
        Strings, integers, booleans, durations, lists and tables are each checked.
        """
        cases = [
            (withEntryPoint(address=80), "entryPoints.web.address", "invalid address '80'"),
            (withEntryPoint(address=None), "entryPoints.web.address", "expected a string, got an empty value"),
            (withEntryPoint(reusePort="yes"), "entryPoints.web.reusePort", "expected true or false, got 'yes'"),
            (
                withEntryPoint(http2={"maxConcurrentStreams": "many"}),
                "entryPoints.web.http2.maxConcurrentStreams",
                "expected an integer, got the string 'many'",
            ),
            (
                withEntryPoint(udp={"timeout": "soon"}),
                "entryPoints.web.udp.timeout",
                "invalid duration 'soon' (use Go syntax such as \"1m30s\" or a number of seconds)",
            ),
            (
                withEntryPoint(forwardedHeaders={"trustedIPs": {"a": "b"}}),
                "entryPoints.web.forwardedHeaders.trustedIPs",
                "expected a list, got a table",
            ),
            (withEntryPoint(transport="fast"), "entryPoints.web.transport", "expected a table of keys, got the string 'fast'"),
            ({"entryPoints": [WEB]}, "entryPoints", "expected a table of names, got a list"),
            ({"log": "debug"}, "log", "expected a table of keys, got the string 'debug'"),
            (
                {"metrics": {"prometheus": {"buckets": [0.1, "x"]}}},
                "metrics.prometheus.buckets[1]",
                "expected a number, got the string 'x'",
            ),
            ({"global": {"checkNewVersion": 1}}, "global.checkNewVersion", "expected true or false, got 1"),
        ]
        for raw, path, message in cases:
            with self.subTest(path=path):
                self.assertErrors(raw, (path, message))

    def test_literalChoices(self) -> None:
        """
        Keys with a fixed set of values list the choices; matching ignores case.
        """
        cases = [
            ({"log": {"level": "verbose"}}, "log.level", 'expected one of "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "PANIC", got the string \'verbose\''),
            ({"log": {"format": "xml"}}, "log.format", 'expected one of "common", "json"'),
            ({"core": {"defaultRuleSyntax": "v1"}}, "core.defaultRuleSyntax", 'expected one of "v2", "v3"'),
            (
                withEntryPoint(observability={"traceVerbosity": "all"}),
                "entryPoints.web.observability.traceVerbosity",
                'expected one of "minimal", "detailed"',
            ),
            (
                {"certificatesResolvers": {"le": {"acme": {"tlsChallenge": {}, "keyType": "RSA1024"}}}},
                "certificatesResolvers.le.acme.keyType",
                'expected one of "EC256", "EC384", "RSA2048", "RSA4096", "RSA8192"',
            ),
            (
                {"accessLog": {"fields": {"names": {"ClientHost": "hide"}}}},
                "accessLog.fields.names.ClientHost",
                'expected one of "keep", "drop", got the string \'hide\'',
            ),
            (
                {"accessLog": {"fields": {"headers": {"defaultMode": "mask"}}}},
                "accessLog.fields.headers.defaultMode",
                'expected one of "keep", "drop", "redact"',
            ),
        ]
        for raw, path, message in cases:
            with self.subTest(path=path):
                self.assertErrors(raw, (path, message))
        self.assertEqual(self.decodeStatic({"log": {"level": "warn", "format": "JSON"}}).log.format, "json")


class CheckTests(StaticTestCase):
    """
    Every check of the static model, with its key path and message.
    """

    def test_badAddress(self) -> None:
        """
        An entrypoint address that does not parse fails at C{address}.
        """
        cases = [
            ("", "empty address"),
            ("80", "invalid address '80': expected :port, host:port, [ipv6]:port or a Twisted endpoint"),
            (":99999", "invalid address ':99999': the port must be a number from 0 to 65535"),
            (":80/sctp", "the protocol suffix must be /tcp or /udp"),
            ("tcp:nope", "invalid Twisted endpoint description 'tcp:nope'"),
        ]
        for address, message in cases:
            with self.subTest(address=address):
                self.assertErrors(withEntryPoint(address=address), ("entryPoints.web.address", message))

    def test_addressForms(self) -> None:
        """
        Traefik addresses and Twisted endpoint descriptions are both accepted.
        """
        for address in (":80", "127.0.0.1:8000", "[::1]:8000", ":53/udp", "tcp:8000:interface=127.0.0.1", "unix:/run/relayd.sock", "systemd:domain=INET:index=0"):
            with self.subTest(address=address):
                self.assertEqual(self.decodeStatic(withEntryPoint(address=address)).entryPoints["web"].address, address)

    def test_addressRequired(self) -> None:
        """
        An entrypoint without an address fails.
        """
        self.assertErrors({"entryPoints": {"web": {}}}, ("entryPoints.web.address", "required key is missing"))

    def test_entryPointNames(self) -> None:
        """
        Entrypoint names may not contain '@' or '.', or be empty.
        """
        self.assertErrors(
            {"entryPoints": {"a@b": WEB, "a.b": WEB, "": WEB}},
            ("entryPoints.a@b", "entrypoint names may not be empty or contain '@' or '.'"),
            ("entryPoints.a.b", "entrypoint names may not be empty or contain '@' or '.'"),
            ("entryPoints.", "entrypoint names may not be empty or contain '@' or '.'"),
        )

    def test_http3(self) -> None:
        """
        HTTP/3 is rejected because relayd cannot serve it.
        """
        self.assertErrors(withEntryPoint(http3={}), ("entryPoints.web.http3", "HTTP/3 is not supported by relayd"))

    def test_negative(self) -> None:
        """
        Negative timeouts, sizes and counts fail, durations printed in Go form.
        """
        cases = [
            (withEntryPoint(udp={"timeout": "-1s"}), "entryPoints.web.udp.timeout", "must not be negative, got -1s"),
            (
                withEntryPoint(transport={"respondingTimeouts": {"readTimeout": "-90s"}}),
                "entryPoints.web.transport.respondingTimeouts.readTimeout",
                "must not be negative, got -1m30s",
            ),
            (withEntryPoint(http={"maxHeaderBytes": -1}), "entryPoints.web.http.maxHeaderBytes", "must not be negative, got -1"),
            ({"serversTransport": {"maxIdleConnsPerHost": -1}}, "serversTransport.maxIdleConnsPerHost", "must not be negative, got -1"),
            ({"providers": {"providersThrottleDuration": -2}}, "providers.providersThrottleDuration", "must not be negative, got -2s"),
            ({"accessLog": {"bufferingSize": -5}}, "accessLog.bufferingSize", "must not be negative, got -5"),
        ]
        for raw, path, message in cases:
            with self.subTest(path=path):
                self.assertErrors(raw, (path, message))

    def test_trustedIPs(self) -> None:
        """
        Trusted IPs must be addresses or CIDR ranges.
        """
        self.assertErrors(
            withEntryPoint(forwardedHeaders={"trustedIPs": ["10.0.0.0/8", "nope"]}),
            ("entryPoints.web.forwardedHeaders.trustedIPs", "'nope' is not an IP address or CIDR range"),
        )
        self.assertErrors(
            withEntryPoint(proxyProtocol={"trustedIPs": ["1.2.3.4/99"]}),
            ("entryPoints.web.proxyProtocol.trustedIPs", "'1.2.3.4/99' is not an IP address or CIDR range"),
        )

    def test_redirectionTarget(self) -> None:
        """
        A redirection to an entrypoint that does not exist fails and lists those that do.
        """
        self.assertErrors(
            withEntryPoint(http={"redirections": {"entryPoint": {"to": "websecure"}}}),
            (
                "entryPoints.web.http.redirections.entryPoint.to",
                'unknown entrypoint "websecure" (defined: web; or use ":port")',
            ),
        )

    def test_redirectionToPort(self) -> None:
        """
        A redirection to C{:port} needs no entrypoint of that name.
        """
        config = self.decodeStatic(withEntryPoint(http={"redirections": {"entryPoint": {"to": ":443"}}}))
        self.assertEqual(config.entryPoints["web"].http.redirections.entryPoint.to, ":443")

    def test_redirectionRequiresTo(self) -> None:
        """
        A redirection without C{to} fails.
        """
        self.assertErrors(
            withEntryPoint(http={"redirections": {"entryPoint": {}}}),
            ("entryPoints.web.http.redirections.entryPoint.to", "required key is missing"),
        )

    def test_fileProvider(self) -> None:
        """
        The file provider needs exactly one of filename and directory.
        """
        for keys in ({}, {"filename": "a.toml", "directory": "d"}):
            with self.subTest(keys=keys):
                self.assertErrors(
                    {"providers": {"file": keys}},
                    ("providers.file", "exactly one of filename or directory must be set"),
                )

    def test_httpProviderEndpoint(self) -> None:
        """
        The HTTP provider requires an endpoint.
        """
        self.assertErrors({"providers": {"http": {}}}, ("providers.http.endpoint", "required key is missing"))

    def test_pingStatusCode(self) -> None:
        """
        The terminating status code must be an HTTP status code.
        """
        self.assertErrors(
            {"ping": {"terminatingStatusCode": 42}},
            ("ping.terminatingStatusCode", "must be an HTTP status code, got 42"),
        )

    def test_accessLogStatusCodes(self) -> None:
        """
        Access log status filters must be codes or ranges; each bad item is named.
        """
        self.assertErrors(
            {"accessLog": {"filters": {"statusCodes": ["200,300-302", "3xx", "1-2-3"]}}},
            ("accessLog.filters.statusCodes[1]", "'3xx' is not a status code or range such as 300-302"),
            ("accessLog.filters.statusCodes[2]", "'1-2-3' is not a status code or range"),
        )

    def test_acmeWithoutChallenge(self) -> None:
        """
        An ACME resolver needs a challenge.
        """
        self.assertErrors(
            {"certificatesResolvers": {"le": {"acme": {"email": "a@example.com"}}}},
            ("certificatesResolvers.le.acme", "one of httpChallenge, tlsChallenge or dnsChallenge is required"),
        )

    def test_httpChallengeEntryPoint(self) -> None:
        """
        The HTTP challenge must name an existing entrypoint.
        """
        self.assertErrors(
            {"certificatesResolvers": {"le": {"acme": {"httpChallenge": {"entryPoint": "web"}}}}},
            ("certificatesResolvers.le.acme.httpChallenge.entryPoint", 'unknown entrypoint "web" (defined: none)'),
        )
        self.assertErrors(
            {"certificatesResolvers": {"le": {"acme": {"httpChallenge": {}}}}},
            ("certificatesResolvers.le.acme.httpChallenge.entryPoint", "required key is missing"),
        )

    def test_dnsChallengeProvider(self) -> None:
        """
        The DNS challenge requires a provider.
        """
        self.assertErrors(
            {"certificatesResolvers": {"le": {"acme": {"dnsChallenge": {}}}}},
            ("certificatesResolvers.le.acme.dnsChallenge.provider", "required key is missing"),
        )
        config = self.decodeStatic(
            {"certificatesResolvers": {"le": {"acme": {"dnsChallenge": {"provider": "ovh"}}}}}
        )
        self.assertEqual(config.certificatesResolvers["le"].acme.dnsChallenge, DNSChallenge(provider="ovh"))


class IgnoredTests(StaticTestCase):
    """
    Sections Traefik knows but relayd does not implement are skipped with a warning.
    """

    def test_ignoredSections(self) -> None:
        """
        Every ignored section and provider gives one warning naming its path.
        """
        value, warnings = decode(
            StaticConfig,
            {
                "tracing": {"otlp": {}},
                "hostResolver": {},
                "experimental": {"plugins": {}},
                "spiffe": {},
                "ocsp": {},
                "pilot": {},
                "hub": {},
                "providers": {"nomad": {}, "ecs": {}, "marathon": {}, "plugin": {}, "knative": {}, "kubernetesIngressNGINX": {}},
                "metrics": {"datadog": {}, "statsD": {}, "influxDB": {}, "influxDB2": {}, "otlp": {}},
                "certificatesResolvers": {"ts": {"tailscale": {}}},
            },
        )
        self.assertEqual(
            warnings,
            [
                "tracing: relayd does not implement tracing; this section is ignored",
                "hostResolver: relayd does not implement CNAME flattening; this section is ignored",
                "experimental: relayd has no experimental features; this section is ignored",
                "spiffe: relayd does not implement SPIFFE; this section is ignored",
                "ocsp: relayd does not implement OCSP stapling; this section is ignored",
                "pilot: Traefik Pilot is gone; this section is ignored",
                "hub: Traefik Hub is not supported; this section is ignored",
            ]
            + [
                f"providers.{name}: relayd does not implement this provider; it is ignored"
                for name in ("nomad", "ecs", "marathon", "plugin", "knative", "kubernetesIngressNGINX")
            ]
            + [
                f"metrics.{name}: relayd only exports Prometheus metrics; this backend is ignored"
                for name in ("datadog", "statsD", "influxDB", "influxDB2", "otlp")
            ]
            + ["certificatesResolvers.ts.tailscale: relayd does not implement the tailscale resolver; it is ignored"],
        )
        self.assertEqual(value.providers, Providers())
        self.assertIsNone(value.certificatesResolvers["ts"].acme)

    def test_ignoredCaseInsensitive(self) -> None:
        """
        Ignored keys match whatever their case; the warning keeps the spelling used.
        """
        _, warnings = decode(StaticConfig, {"TRACING": {}})
        self.assertEqual(warnings, ["TRACING: relayd does not implement tracing; this section is ignored"])


class ModelTests(SynchronousTestCase):
    """
    Helpers on the static model values.
    """

    def test_acmeValidate(self) -> None:
        """
        ACME's own check passes with a challenge and asks for one without.
        """
        acme = ACME(tlsChallenge=None, httpChallenge=HTTPChallenge(entryPoint="web"))
        self.assertEqual(list(acme._validate()), [])
        self.assertEqual(
            list(ACME()._validate()),
            [("", "one of httpChallenge, tlsChallenge or dnsChallenge is required")],
        )
