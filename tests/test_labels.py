"""
Tests for L{relayd.config.labels}, L{relayd.config.labelsv1} and
L{relayd.config.gotemplate}: Traefik's label grammar decoded into the dynamic
model, the defaults label-based providers fill in, Traefik 1.x labels, and the
default-rule templates.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from relayd.config.dynamic import DynamicConfig, decodeDynamic
from relayd.config.gotemplate import TemplateError, compileTemplate, normalize
from relayd.config.labels import applyDefaults, decodeLabels
from relayd.config.labelsv1 import labelVersion, translateV1
from relayd.config.schema import toRaw

DEFAULT_RULE = "Host(`{{ normalize .Name }}`)"

# Seed: a Docker Compose service's labels from a Traefik 2.2 article (sticky
# cookie, a replacePath middleware referenced with @docker), verbatim.
SEED_000 = [
    "traefik.http.routers.socket-router.rule=PathPrefix(`/wsk`)",
    "traefik.http.services.service01.loadbalancer.server.port=5000",
    "traefik.http.services.service01.loadbalancer.sticky.cookie=true",
    "traefik.http.services.service01.loadbalancer.sticky.cookie.name=io",
    "traefik.http.services.service01.loadbalancer.sticky.cookie.httponly=true",
    "traefik.http.services.service01.loadbalancer.sticky.cookie.secure=true",
    "traefik.http.services.service01.loadbalancer.sticky.cookie.samesite=io",
    "traefik.http.middlewares.socket-replaceprefix.replacepath.path=/",
    "traefik.http.routers.socket-router.middlewares=socket-replaceprefix@docker",
]

# Seed: Traefik 1.5 labels on a Docker container and Consul Catalog tags, verbatim.
SEED_003_DOCKER = ["traefik.port=80", "traefik.backend=hello", "traefik.frontend.rule=Host:hello.docker"]
SEED_003_CONSUL = ["traefik.backend=hello2", "traefik.frontend.rule=Host:hello2.osones.com"]


def pairs(lines: list[str]) -> dict[str, str]:
    result = {}
    for line in lines:
        key, _, value = line.partition("=")
        result[key] = value
    return result


def build(
    labels: dict[str, str],
    name: str = "app",
    address: str | None = "10.0.0.2",
    port: int | None = None,
    defaultRule: str = DEFAULT_RULE,
    data: dict[str, Any] | None = None,
) -> tuple[dict, list[str]]:
    decoded, problems = decodeLabels(labels)
    if problems:
        return {}, [str(p) for p in problems]
    config, problems = applyDefaults(decoded, name, defaultRule, address, port, data)
    return toRaw(config), [str(p) for p in problems]


class DecodeLabelsTests(SynchronousTestCase):
    """
    The v2/v3 label grammar.
    """

    def test_seed000(self) -> None:
        """
        The seed's labels give its router, sticky cookie, middleware reference
        and a server on the labelled port.
        """
        config, problems = build(pairs(SEED_000), name="wsk-socket-server")
        self.assertEqual(problems, [])
        self.assertEqual(
            config,
            {
                "http": {
                    "routers": {
                        "socket-router": {
                            "rule": "PathPrefix(`/wsk`)",
                            "middlewares": ["socket-replaceprefix@docker"],
                            "service": "service01",
                        }
                    },
                    "services": {
                        "service01": {
                            "loadBalancer": {
                                "servers": [{"url": "http://10.0.0.2:5000"}],
                                "sticky": {
                                    "cookie": {
                                        "name": "io",
                                        "secure": True,
                                        "httpOnly": True,
                                        "sameSite": "io",
                                    }
                                },
                            }
                        }
                    },
                    "middlewares": {"socket-replaceprefix": {"replacePath": {"path": "/"}}},
                }
            },
        )

    def test_table(self) -> None:
        """
        Each label set decodes to the configuration Traefik gives it.
        """
        cases: list[tuple[dict[str, str], dict]] = [
            (
                {"traefik.http.routers.r.entrypoints": "web, websecure"},
                {"routers": {"r": {"entryPoints": ["web", "websecure"]}}},
            ),
            (
                {"traefik.http.routers.r.tls": "true"},
                {"routers": {"r": {"tls": {}}}},
            ),
            (
                {
                    "traefik.http.routers.r.tls.domains[0].main": "a.com",
                    "traefik.http.routers.r.tls.domains[0].sans": "b.com,c.com",
                    "traefik.http.routers.r.tls.domains[1].main": "d.com",
                },
                {
                    "routers": {
                        "r": {
                            "tls": {
                                "domains": [
                                    {"main": "a.com", "sans": ["b.com", "c.com"]},
                                    {"main": "d.com"},
                                ]
                            }
                        }
                    }
                },
            ),
            (
                {"traefik.http.middlewares.h.headers.customrequestheaders.X-Foo": "bar"},
                {"middlewares": {"h": {"headers": {"customRequestHeaders": {"X-Foo": "bar"}}}}},
            ),
            (
                {
                    "traefik.http.services.s.loadbalancer.servers[0].url": "http://a:1",
                    "traefik.http.services.s.loadbalancer.servers[1].url": "http://b:2",
                    "traefik.http.services.s.loadbalancer.servers[1].weight": "3",
                },
                {
                    "services": {
                        "s": {
                            "loadBalancer": {
                                "servers": [{"url": "http://a:1"}, {"url": "http://b:2", "weight": 3}]
                            }
                        }
                    }
                },
            ),
            (
                {"traefik.http.middlewares.m.retry.attempts": "3"},
                {"middlewares": {"m": {"retry": {"attempts": 3}}}},
            ),
        ]
        for labels, expected in cases:
            decoded, problems = decodeLabels(labels)
            self.assertEqual(problems, [], labels)
            self.assertEqual(toRaw(decoded.config), {"http": expected}, labels)

    def test_singularServerURL(self) -> None:
        """
        C{loadbalancer.server.url} is the first server, kept as written.
        """
        config, problems = build({"traefik.http.services.s.loadbalancer.server.url": "http://x:9"})
        self.assertEqual(problems, [])
        self.assertEqual(config["http"]["services"]["s"], {"loadBalancer": {"servers": [{"url": "http://x:9"}]}})

    def test_singularServerScheme(self) -> None:
        """
        The singular server's scheme, port and weight make the container's URL.
        """
        config, problems = build(
            {
                "traefik.http.services.s.loadbalancer.server.scheme": "https",
                "traefik.http.services.s.loadbalancer.server.port": "8443",
                "traefik.http.services.s.loadbalancer.server.weight": "2",
            }
        )
        self.assertEqual(problems, [])
        self.assertEqual(
            config["http"]["services"]["s"]["loadBalancer"]["servers"],
            [{"url": "https://10.0.0.2:8443", "weight": 2}],
        )

    def test_keysCaseInsensitive(self) -> None:
        """
        Keys after the prefix match the model whatever their case; router
        names differing only in case are one router, spelled as in the first
        label in sorted order.
        """
        decoded, problems = decodeLabels(
            {
                "traefik.HTTP.Routers.Web.RULE": "Path(`/`)",
                "traefik.http.routers.web.Priority": "5",
            }
        )
        self.assertEqual(problems, [])
        self.assertEqual(toRaw(decoded.config), {"http": {"routers": {"Web": {"rule": "Path(`/`)", "priority": 5}}}})

    def test_relaydPrefixWins(self) -> None:
        """
        C{relayd.} labels are read too, and win over C{traefik.} for the same key.
        """
        decoded, problems = decodeLabels(
            {
                "traefik.http.routers.r.rule": "Path(`/a`)",
                "relayd.http.routers.r.rule": "Path(`/b`)",
                "traefik.http.routers.r.priority": "3",
            }
        )
        self.assertEqual(problems, [])
        self.assertEqual(toRaw(decoded.config), {"http": {"routers": {"r": {"rule": "Path(`/b`)", "priority": 3}}}})

    def test_otherLabelsIgnored(self) -> None:
        """
        Provider labels and other prefixes are not dynamic configuration.
        """
        decoded, problems = decodeLabels(
            {"traefik.enable": "true", "traefik.docker.network": "n", "com.example": "x", "traefik.tls.options.x.minversion": "1"}
        )
        self.assertEqual((toRaw(decoded.config), problems), ({}, []))

    def test_tcpAndUDP(self) -> None:
        """
        TCP and UDP labels get servers from the container and no HTTP defaults.
        """
        config, problems = build(
            {
                "traefik.tcp.routers.db.rule": "HostSNI(`*`)",
                "traefik.tcp.services.db.loadbalancer.server.port": "5432",
                "traefik.udp.routers.dns.entrypoints": "dns",
            },
            port=53,
        )
        self.assertEqual(problems, [])
        self.assertEqual(
            config,
            {
                "tcp": {
                    "routers": {"db": {"rule": "HostSNI(`*`)", "service": "db"}},
                    "services": {"db": {"loadBalancer": {"servers": [{"address": "10.0.0.2:5432"}]}}},
                },
                "udp": {
                    "routers": {"dns": {"entryPoints": ["dns"], "service": "app"}},
                    "services": {"app": {"loadBalancer": {"servers": [{"address": "10.0.0.2:53"}]}}},
                },
            },
        )


class LabelProblemTests(SynchronousTestCase):
    """
    Problems name the label they are about, and a container with problems
    contributes nothing.
    """

    def assertProblems(self, labels: dict[str, str], expected: list[str]) -> None:
        decoded, problems = decodeLabels(labels)
        self.assertEqual([str(p) for p in problems], expected)
        self.assertEqual(decoded.config, DynamicConfig())

    def test_unknownKey(self) -> None:
        """
        A misspelt key is named with a suggestion.
        """
        self.assertProblems(
            {"traefik.http.routers.r.rulez": "x"},
            ['label traefik.http.routers.r.rulez: unknown key, did you mean "rule"?'],
        )

    def test_badValue(self) -> None:
        """
        A value of the wrong type names its label.
        """
        self.assertProblems(
            {"traefik.http.routers.r.priority": "high"},
            ["label traefik.http.routers.r.priority: expected an integer, got the string 'high'"],
        )

    def test_malformedKeys(self) -> None:
        """
        Empty segments and segments starting with a bracket are refused.
        """
        self.assertProblems(
            {"traefik.http..r": "x", "traefik.http.routers.[0]": "y"},
            [
                "label traefik.http..r: empty segment in the key (two dots in a row, or a dot at the end)",
                "label traefik.http.routers.[0]: segment '[0]' starts with '[' "
                "(the bracket is a list index: name[0])",
            ],
        )

    def test_missingURL(self) -> None:
        """
        A server item without its url names the item.
        """
        self.assertProblems(
            {"traefik.http.services.s.loadbalancer.servers[0].weight": "1"},
            ["label traefik.http.services.s.loadbalancer.servers[0]: url: required key is missing"],
        )

    def test_urlWithPort(self) -> None:
        """
        The singular server's url excludes its port and scheme.
        """
        self.assertProblems(
            {
                "traefik.http.services.s.loadbalancer.server.url": "http://a:1",
                "traefik.http.services.s.loadbalancer.server.port": "2",
            },
            ["label traefik.http.services.s.loadbalancer.server.port: port and scheme may not be set when the server's url is"],
        )

    def test_badPort(self) -> None:
        """
        The singular server's port is a port number.
        """
        self.assertProblems(
            {"traefik.http.services.s.loadbalancer.server.port": "http"},
            ["label traefik.http.services.s.loadbalancer.server.port: expected a port number, got 'http'"],
        )

    def test_sameKeyTwice(self) -> None:
        """
        Two labels for one key (case aside) are a problem, not a silent pick.
        """
        self.assertProblems(
            {"traefik.http.routers.r.rule": "Path(`/a`)", "traefik.http.routers.r.RULE": "Path(`/b`)"},
            ["label traefik.http.routers.r.rule: the same key as 'traefik.http.routers.r.RULE' "
             "(keys are case-insensitive); set it once"],
        )

    def test_notInLabels(self) -> None:
        """
        Weighted services and servers transports cannot be labels, as in Traefik.
        """
        decoded, problems = decodeLabels(
            {"traefik.http.services.w.weighted.services[0].name": "a", "traefik.http.serverstransports.t.serverName": "x"}
        )
        self.assertEqual(
            [p.path for p in problems],
            ["label traefik.http.serverstransports.t.serverName", "label traefik.http.services.w.weighted.services[0].name"],
        )


class ApplyDefaultsTests(SynchronousTestCase):
    """
    The defaults for partial labels.
    """

    def test_noLabels(self) -> None:
        """
        No labels: a service and a router named after the container, the
        default rule, the default port.
        """
        config, problems = build({}, name="my-app", port=8080)
        self.assertEqual(problems, [])
        self.assertEqual(
            config,
            {
                "http": {
                    "routers": {"my-app": {"rule": "Host(`my-app`)", "service": "my-app"}},
                    "services": {"my-app": {"loadBalancer": {"servers": [{"url": "http://10.0.0.2:8080"}]}}},
                }
            },
        )

    def test_templateData(self) -> None:
        """
        The default rule sees the provider's extra data, such as the labels.
        """
        config, problems = build(
            {},
            port=80,
            defaultRule='Host(`{{ index .Labels "com.example.host" }}`) && PathPrefix(`/{{ .ContainerName }}`)',
            data={"ContainerName": "c1", "Labels": {"com.example.host": "h.test"}},
        )
        self.assertEqual(problems, [])
        self.assertEqual(config["http"]["routers"]["app"]["rule"], "Host(`h.test`) && PathPrefix(`/c1`)")

    def test_severalServices(self) -> None:
        """
        With several services no default router is made, and a router without
        a service is dropped with a problem.
        """
        labels = {
            "traefik.http.services.a.loadbalancer.server.port": "1",
            "traefik.http.services.b.loadbalancer.server.port": "2",
        }
        config, problems = build(labels)
        self.assertEqual(problems, [])
        self.assertNotIn("routers", config["http"])
        config, problems = build({**labels, "traefik.http.routers.r.rule": "Path(`/`)"})
        self.assertEqual(
            problems,
            ["http.routers.r.service: cannot be bound automatically: the labels define the "
             "services a, b; set the router's service label"],
        )
        self.assertNotIn("routers", config["http"])

    def test_missingPort(self) -> None:
        """
        Without a port the container contributes nothing, as in Traefik.
        """
        config, problems = build({})
        self.assertEqual(config, {})
        self.assertEqual(len(problems), 1)
        self.assertIn("port is missing", problems[0])

    def test_noAddress(self) -> None:
        """
        A container with no address (stopped) keeps its services, empty.
        """
        config, problems = build({}, address=None)
        self.assertEqual(problems, [])
        self.assertEqual(config["http"]["services"], {"app": {"loadBalancer": {}}})

    def test_emptyDefaultRule(self) -> None:
        """
        A default rule that renders empty drops the router.
        """
        config, problems = build({}, port=1, defaultRule="")
        self.assertEqual(problems, ["http.routers.app.rule: the default rule renders empty; the router is dropped"])
        self.assertNotIn("routers", config["http"])

    def test_ipv6Address(self) -> None:
        """
        An IPv6 address is bracketed in the server URL.
        """
        config, _ = build({}, address="fd00::2", port=80)
        self.assertEqual(config["http"]["services"]["app"]["loadBalancer"]["servers"], [{"url": "http://[fd00::2]:80"}])


class TemplateTests(SynchronousTestCase):
    """
    The default-rule template subset.
    """

    def test_normalize(self) -> None:
        """
        Runs of non-alphanumerics become one dash; ends are trimmed.
        """
        self.assertEqual(normalize("/my_app.web--1"), "my-app-web-1")
        self.assertEqual(normalize("été_ß"), "été-ß")

    def test_forms(self) -> None:
        """
        Fields, map fields, index, pipelines, literals and trim markers render.
        """
        data = {"Name": "My_App", "Labels": {"a": "x", "b.c": "y"}}
        for source, expected in [
            ("Host(`{{ normalize .Name }}`)", "Host(`My-App`)"),
            ("{{ .Name | normalize | lower }}.example.com", "my-app.example.com"),
            ('{{ index .Labels "b.c" }}-{{ .Labels.a }}-{{ .Labels.missing }}', "y-x-"),
            ('{{ printf "%s.%s" .Name "d" }}', "My_App.d"),
            ("a {{- .Labels.a -}} b", "axb"),
            ("plain", "plain"),
        ]:
            self.assertEqual(compileTemplate(source).render(data), expected, source)

    def test_unsupported(self) -> None:
        """
        Control structures, variables and unknown functions are refused when compiled.
        """
        for source in ["{{ if .Name }}x{{ end }}", "{{ $x := .Name }}", "{{ sha256sum .Name }}", "{{ .Name"]:
            self.assertRaises(TemplateError, compileTemplate, source)

    def test_unknownField(self) -> None:
        """
        An unknown top-level field fails at render time, naming what exists.
        """
        error = self.assertRaises(TemplateError, compileTemplate("{{ .Nmae }}").render, {"Name": "a"})
        self.assertIn("Nmae", str(error))


class V1LabelsTests(SynchronousTestCase):
    """
    Traefik 1.x labels.
    """

    def v1(self, labels: dict[str, str], name: str = "/web_1", domain: str = "", port: int | None = None) -> tuple[dict, list[str]]:
        decoded, problems = translateV1(labels, name, domain)
        if problems:
            return {}, [str(p) for p in problems]
        config, problems = applyDefaults(decoded, "unused", "", "10.0.0.3", port)
        return toRaw(config), [str(p) for p in problems]

    def test_version(self) -> None:
        """
        Label sets with only v1 keys are v1; any v2 section (under traefik.
        or relayd.), or no keys at all, is v2; other relayd.* labels do not
        decide.
        """
        self.assertEqual(labelVersion(pairs(SEED_003_DOCKER)), "v1")
        self.assertEqual(labelVersion({"traefik.web.port": "80"}), "v1")
        self.assertEqual(labelVersion(pairs(SEED_000)), "v2")
        self.assertEqual(labelVersion({"traefik.enable": "true"}), "v2")
        self.assertEqual(labelVersion({"traefik.port": "80", "traefik.http.routers.r.rule": "x"}), "v2")
        self.assertEqual(labelVersion({"traefik.port": "80", "relayd.http.routers.r.rule": "x"}), "v2")
        self.assertEqual(labelVersion({**pairs(SEED_003_DOCKER), "relayd.test.marker": "1"}), "v1")

    def test_seed003(self) -> None:
        """
        The seed's Docker and Consul labels become a router and a service
        named after the backend, with the v1 rule translated.
        """
        config, problems = self.v1(pairs(SEED_003_DOCKER))
        self.assertEqual(problems, [])
        self.assertEqual(
            config,
            {
                "http": {
                    "routers": {"hello": {"rule": "Host(`hello.docker`)", "service": "hello", "priority": 17}},
                    "services": {"hello": {"loadBalancer": {"servers": [{"url": "http://10.0.0.3:80"}]}}},
                }
            },
        )
        config, problems = self.v1(pairs(SEED_003_CONSUL), port=80)
        self.assertEqual(problems, [])
        self.assertEqual(config["http"]["routers"]["hello2"]["rule"], "Host(`hello2.osones.com`)")
        self.assertEqual(config["http"]["services"]["hello2"]["loadBalancer"]["servers"], [{"url": "http://10.0.0.3:80"}])

    def test_defaultRule(self) -> None:
        """
        Without a rule the frontend is Host:<name>.<domain>; without a domain
        the container is skipped.
        """
        config, problems = self.v1({"traefik.port": "80"}, domain="docker.local")
        self.assertEqual(config["http"]["routers"]["web-1"]["rule"], "Host(`web-1.docker.local`)")
        config, problems = self.v1({"traefik.port": "80", "traefik.domain": "d.test"})
        self.assertEqual(config["http"]["routers"]["web-1"]["rule"], "Host(`web-1.d.test`)")
        config, problems = self.v1({"traefik.port": "80"})
        self.assertEqual(config, {})
        self.assertIn("label traefik.frontend.rule: not set, and no domain", problems[0])

    def test_fullSet(self) -> None:
        """
        The frontend and backend labels map onto the router, the load balancer
        and middlewares.
        """
        config, problems = self.v1(
            {
                "traefik.port": "8443",
                "traefik.protocol": "https",
                "traefik.weight": "5",
                "traefik.frontend.rule": "PathPrefixStrip:/api;Host:a.com,b.com",
                "traefik.frontend.entryPoints": "http,https",
                "traefik.frontend.priority": "10",
                "traefik.frontend.passHostHeader": "false",
                "traefik.backend.loadbalancer.method": "wrr",
                "traefik.backend.loadbalancer.stickiness": "true",
                "traefik.backend.loadbalancer.stickiness.cookieName": "sess",
                "traefik.backend.healthcheck.path": "/health",
                "traefik.backend.healthcheck.interval": "10s",
                "traefik.backend.healthcheck.port": "9000",
                "traefik.backend.healthcheck.headers": "x-a:1||X-B: 2",
                "traefik.backend.circuitbreaker.expression": "NetworkErrorRatio() > 0.5",
            }
        )
        self.assertEqual(problems, [])
        self.assertEqual(
            config,
            {
                "http": {
                    "routers": {
                        "web-1": {
                            "entryPoints": ["http", "https"],
                            "middlewares": ["web-1-stripprefix", "web-1-circuitbreaker"],
                            "service": "web-1",
                            "rule": "PathPrefix(`/api`) && (Host(`a.com`) || Host(`b.com`))",
                            "priority": 10,
                        }
                    },
                    "services": {
                        "web-1": {
                            "loadBalancer": {
                                "servers": [{"url": "https://10.0.0.3:8443", "weight": 5}],
                                "sticky": {"cookie": {"name": "sess"}},
                                "healthCheck": {"path": "/health", "interval": "10s", "port": 9000, "headers": {"X-A": "1", "X-B": "2"}},
                                "passHostHeader": False,
                            }
                        }
                    },
                    "middlewares": {
                        "web-1-stripprefix": {"stripPrefix": {"prefixes": ["/api"]}},
                        "web-1-circuitbreaker": {"circuitBreaker": {"expression": "NetworkErrorRatio() > 0.5"}},
                    },
                }
            },
        )

    def test_segments(self) -> None:
        """
        Each segment is its own router and service, inheriting unsegmented labels.
        """
        config, problems = self.v1(
            {
                "traefik.web.port": "80",
                "traefik.api.port": "81",
                "traefik.api.frontend.rule": "PathPrefix:/api",
                "traefik.domain": "d.com",
            }
        )
        self.assertEqual(problems, [])
        self.assertEqual(
            {n: r["rule"] for n, r in config["http"]["routers"].items()},
            {"web-1-api": "PathPrefix(`/api`)", "web-1-web": "Host(`web-1.d.com`)"},
        )
        self.assertEqual(
            config["http"]["services"]["web-1-api"]["loadBalancer"]["servers"], [{"url": "http://10.0.0.3:81"}]
        )

    def test_problems(self) -> None:
        """
        Unsupported v1 labels and bad values are named; the container is skipped.
        """
        config, problems = self.v1(
            {
                "traefik.port": "80",
                "traefik.frontend.rule": "Host:a",
                "traefik.frontend.auth.forward.address": "http://auth",
                "traefik.backend.healthcheck.path": "/h",
                "traefik.backend.healthcheck.interval": "often",
            }
        )
        self.assertEqual(config, {})
        self.assertEqual(
            problems,
            [
                "label traefik.frontend.auth.forward.address: this Traefik 1.x label is not "
                "supported by relayd's v1 translation",
            ],
        )
        config, problems = self.v1(
            {"traefik.port": "80", "traefik.frontend.rule": "Host:a", "traefik.backend.healthcheck.path": "/h",
             "traefik.backend.healthcheck.interval": "often"}
        )
        self.assertEqual(len(problems), 1)
        self.assertTrue(problems[0].startswith("label traefik.backend.healthcheck.interval: invalid duration"), problems)


# Property tests: an encoder from the dynamic model to labels, so that random
# configurations round-trip.

_names = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)
_words = st.from_regex(r"[a-z0-9][a-z0-9./_-]{0,10}", fullmatch=True)
_headerNames = st.from_regex(r"X-[A-Za-z][A-Za-z0-9-]{0,8}", fullmatch=True)

_routers = st.fixed_dictionaries(
    {"rule": _words.map(lambda w: f"Path(`/{w}`)")},
    optional={
        "entryPoints": st.lists(_names, min_size=1, max_size=3),
        "middlewares": st.lists(_names, min_size=1, max_size=3),
        "service": _names,
        "priority": st.integers(1, 10_000),
        "tls": st.just({}) | st.fixed_dictionaries({"certResolver": _names}),
    },
)
_servers = st.fixed_dictionaries(
    {"url": st.builds(lambda h, p: f"http://{h}:{p}", _names, st.integers(1, 65535))},
    optional={"weight": st.integers(0, 100)},
)
_services = st.fixed_dictionaries(
    {"loadBalancer": st.fixed_dictionaries(
        {},
        optional={
            "servers": st.lists(_servers, min_size=1, max_size=3),
            "passHostHeader": st.booleans(),
            "sticky": st.fixed_dictionaries({"cookie": st.fixed_dictionaries({}, optional={"name": _names, "secure": st.booleans()})}),
        },
    )}
)
_middlewares = st.one_of(
    st.fixed_dictionaries({"stripPrefix": st.fixed_dictionaries({"prefixes": st.lists(_words.map(lambda w: "/" + w), min_size=1, max_size=3)})}),
    st.fixed_dictionaries({"headers": st.fixed_dictionaries({"customRequestHeaders": st.lists(st.tuples(_headerNames, _names), min_size=1, max_size=3, unique_by=lambda item: item[0].lower()).map(dict)})}),
    st.fixed_dictionaries({"replacePath": st.fixed_dictionaries({"path": _words.map(lambda w: "/" + w)})}),
)
_configs = st.fixed_dictionaries(
    {},
    optional={
        "routers": st.dictionaries(_names, _routers, min_size=1, max_size=3),
        "services": st.dictionaries(_names, _services, min_size=1, max_size=3),
        "middlewares": st.dictionaries(_names, _middlewares, min_size=1, max_size=3),
    },
)


def encode(value: Any, path: str) -> dict[str, str]:
    """
    Labels for a raw configuration value: sections as path segments, an empty
    section as C{=true}, lists of scalars comma-separated, lists of sections
    with C{[n]}.
    """
    if isinstance(value, dict):
        if not value:
            return {path: "true"}
        labels: dict[str, str] = {}
        for key, item in value.items():
            labels.update(encode(item, f"{path}.{key}"))
        return labels
    if isinstance(value, list):
        if value and isinstance(value[0], dict):
            labels = {}
            for index, item in enumerate(value):
                labels.update(encode(item, f"{path}[{index}]"))
            return labels
        return {path: ",".join(value)}
    if isinstance(value, bool):
        return {path: str(value).lower()}
    return {path: str(value)}


def _caseShuffle(key: str, flips: list[bool]) -> str:
    """
    A key with its model segments in another case; map keys (names and header
    names) keep theirs.
    """
    parts = key.split(".")
    keep = set()
    for index, part in enumerate(parts):
        if part.lower() in ("routers", "services", "middlewares") and index + 1 < len(parts):
            keep.add(index + 1)
        if part.lower() == "customrequestheaders" and index + 1 < len(parts):
            keep.add(index + 1)
    out = []
    for index, part in enumerate(parts):
        if index in keep or index == 0:
            out.append(part)
        else:
            out.append("".join(c.upper() if flips[(i + index) % len(flips)] else c.lower() for i, c in enumerate(part)))
    return ".".join(out)


class LabelPropertyTests(SynchronousTestCase):
    """
    Random configurations encoded to labels decode back to themselves.
    """

    @settings(max_examples=150, deadline=None)
    @given(_configs)
    def test_roundTrip(self, raw: dict) -> None:
        """
        Encoding a configuration to labels and decoding gives it back.
        """
        expected = decodeDynamic({"http": raw})
        decoded, problems = decodeLabels(encode(raw, "traefik.http"))
        self.assertEqual(problems, [])
        self.assertEqual(decoded.config, expected)

    @settings(max_examples=100, deadline=None)
    @given(_configs, st.lists(st.booleans(), min_size=1, max_size=7))
    def test_caseInsensitive(self, raw: dict, flips: list[bool]) -> None:
        """
        The model's keys in any case decode the same.
        """
        labels = encode(raw, "traefik.http")
        shuffled = {_caseShuffle(k, flips): v for k, v in labels.items()}
        decoded, problems = decodeLabels(shuffled)
        self.assertEqual(problems, [])
        self.assertEqual(decoded.config, decodeDynamic({"http": raw}))

    @settings(max_examples=100, deadline=None)
    @given(st.lists(_names, min_size=1, max_size=6), st.sampled_from([",", ", ", " ,"]))
    def test_listsRoundTrip(self, values: list[str], separator: str) -> None:
        """
        Comma-separated lists decode to the same items, spaces trimmed.
        """
        decoded, problems = decodeLabels({"traefik.http.routers.r.entrypoints": separator.join(values)})
        self.assertEqual(problems, [])
        self.assertEqual(decoded.config.http.routers["r"].entryPoints, tuple(values))

    @settings(max_examples=100, deadline=None)
    @given(st.dictionaries(st.text(max_size=30), st.text(max_size=30), max_size=8))
    def test_anyLabelsNeverCrash(self, labels: dict[str, str]) -> None:
        """
        Arbitrary labels give a configuration or problems, never an exception.
        """
        decodeLabels({f"traefik.{k}": v for k, v in labels.items()})
        decodeLabels({f"traefik.http.{k}": v for k, v in labels.items()})
        translateV1({f"traefik.{k}": v for k, v in labels.items()}, "x", "d")


class DocsExampleTests(SynchronousTestCase):
    """
    The examples in docs/providers/labels.rst decode as the page says.
    """

    def _block(self, marker: str) -> dict[str, str]:
        import os

        path = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "providers", "labels.rst")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        start = text.index("::\n", text.index(marker)) + 3
        lines = []
        for line in text[start:].splitlines()[1:]:
            if line and not line.startswith("    "):
                break
            if line.strip():
                lines.append(line.strip())
        return pairs(lines)

    def test_v2Example(self) -> None:
        """
        The v2 example gives the router bound to service01 with a sticky cookie.
        """
        config, problems = build(self._block("A container with these labels"))
        self.assertEqual(problems, [])
        router = config["http"]["routers"]["socket-router"]
        self.assertEqual((router["service"], router["entryPoints"]), ("service01", ["web"]))
        self.assertEqual(
            config["http"]["services"]["service01"]["loadBalancer"]["sticky"], {"cookie": {"name": "io"}}
        )

    def test_v1Example(self) -> None:
        """
        The v1 example is detected as v1 and gives the router hello.
        """
        labels = self._block("is read as v1")
        self.assertEqual(labelVersion(labels), "v1")
        decoded, problems = translateV1(labels, "web")
        self.assertEqual(problems, [])
        self.assertEqual(decoded.config.http.routers["hello"].rule, "Host(`hello.docker`)")
