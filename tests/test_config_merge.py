"""
Tests for L{relayd.config.merge}: merging the sources of one provider (first
definition wins) and qualifying and merging providers (C{name@provider}).
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from relayd.config.dynamic import DynamicConfig, decodeDynamic
from relayd.config.errors import ConfigError
from relayd.config.merge import (
    mergeFirstWins,
    mergeProviders,
    qualify,
    qualifyName,
    splitName,
)


def dyn(raw: Any) -> DynamicConfig:
    return decodeDynamic(raw)


def routerDoc(name: str, **keys: Any) -> dict:
    return {"http": {"routers": {name: dict({"rule": "Path(`/`)"}, **keys)}}}


class QualifyNameTests(SynchronousTestCase):
    """
    Tests for L{qualifyName} and L{splitName}.
    """

    def test_qualify(self) -> None:
        """
        A plain name gets the provider; a qualified or empty one is kept.
        """
        self.assertEqual(qualifyName("api", "file"), "api@file")
        self.assertEqual(qualifyName("auth@docker", "file"), "auth@docker")
        self.assertEqual(qualifyName("api@internal", "file"), "api@internal")
        self.assertEqual(qualifyName("", "file"), "")

    def test_split(self) -> None:
        """
        A qualified name splits at its last '@'; an unqualified one has no provider.
        """
        self.assertEqual(splitName("api@file"), ("api", "file"))
        self.assertEqual(splitName("a@b@c"), ("a@b", "c"))
        self.assertEqual(splitName("api"), ("api", ""))
        self.assertEqual(splitName("@file"), ("@file", ""))


class QualifyTests(SynchronousTestCase):
    """
    Tests for L{qualify}: names get the provider, references resolve in the
    referrer's provider.
    """

    def test_routers(self) -> None:
        """
        Router names, services and middlewares are qualified; cross-provider and internal references are kept.
        """
        config = qualify(
            dyn(routerDoc("r", service="s", middlewares=["local", "auth@file", "x@docker"], entryPoints=["web"])),
            "docker",
        )
        router = config.http.routers["r@docker"]
        self.assertEqual(router.service, "s@docker")
        self.assertEqual(router.middlewares, ("local@docker", "auth@file", "x@docker"))
        self.assertEqual(router.entryPoints, ("web",))
        internal = qualify(dyn(routerDoc("d", service="api@internal")), "file").http.routers["d@file"]
        self.assertEqual(internal.service, "api@internal")

    def test_noService(self) -> None:
        """
        A router without a service keeps an empty reference.
        """
        self.assertEqual(qualify(dyn(routerDoc("r")), "file").http.routers["r@file"].service, "")

    def test_tlsOptions(self) -> None:
        """
        TLS option names are qualified, except the option named default.
        """
        config = qualify(
            dyn(
                {
                    "http": {
                        "routers": {
                            "a": {"rule": "x", "tls": {"options": "modern"}},
                            "b": {"rule": "x", "tls": {"options": "default"}},
                            "c": {"rule": "x", "tls": {"options": "old@file"}},
                            "d": {"rule": "x", "tls": {}},
                        }
                    },
                    "tcp": {"routers": {"t": {"rule": "HostSNI(`*`)", "tls": {"options": "modern"}}}},
                    "tls": {"options": {"default": {}, "modern": {"minVersion": "VersionTLS13"}}},
                }
            ),
            "file",
        )
        routers = config.http.routers
        self.assertEqual(routers["a@file"].tls.options, "modern@file")
        self.assertEqual(routers["b@file"].tls.options, "default")
        self.assertEqual(routers["c@file"].tls.options, "old@file")
        self.assertEqual(routers["d@file"].tls.options, "")
        self.assertEqual(config.tcp.routers["t@file"].tls.options, "modern@file")
        self.assertEqual(list(config.tls.options), ["default", "modern@file"])

    def test_services(self) -> None:
        """
        Every reference a service makes to another service or transport is qualified.
        """
        config = qualify(
            dyn(
                {
                    "http": {
                        "services": {
                            "lb": {"loadBalancer": {"serversTransport": "t", "servers": [{"url": "http://a"}]}},
                            "plain": {"loadBalancer": {}},
                            "w": {"weighted": {"services": [{"name": "lb"}, {"name": "x@docker"}]}},
                            "h": {"highestRandomWeight": {"services": [{"name": "lb"}]}},
                            "m": {"mirroring": {"service": "lb", "mirrors": [{"name": "plain", "percent": 5}]}},
                            "f": {"failover": {"service": "lb", "fallback": "backup@docker"}},
                        },
                        "serversTransports": {"t": {}},
                    }
                }
            ),
            "file",
        )
        services = config.http.services
        self.assertEqual(services["lb@file"].loadBalancer.serversTransport, "t@file")
        self.assertEqual(services["plain@file"].loadBalancer.serversTransport, "")
        self.assertEqual(services["w@file"].children(), ("lb@file", "x@docker"))
        self.assertEqual(services["h@file"].children(), ("lb@file",))
        self.assertEqual(services["m@file"].children(), ("lb@file", "plain@file"))
        self.assertEqual(services["f@file"].children(), ("lb@file", "backup@docker"))
        self.assertEqual(list(config.http.serversTransports), ["t@file"])

    def test_middlewares(self) -> None:
        """
        Chains and error pages refer to qualified names; other middlewares are unchanged.
        """
        config = qualify(
            dyn(
                {
                    "http": {
                        "middlewares": {
                            "chain": {"chain": {"middlewares": ["a", "auth@file"]}},
                            "errors": {"errors": {"service": "pages", "status": ["500-599"]}},
                            "prefix": {"addPrefix": {"prefix": "/a"}},
                        }
                    }
                }
            ),
            "docker",
        )
        middlewares = config.http.middlewares
        self.assertEqual(middlewares["chain@docker"].chain.middlewares, ("a@docker", "auth@file"))
        self.assertEqual(middlewares["errors@docker"].errors.service, "pages@docker")
        self.assertEqual(middlewares["prefix@docker"].addPrefix.prefix, "/a")

    def test_tcpAndUDP(self) -> None:
        """
        TCP and UDP routers and services are qualified the same way.
        """
        config = qualify(
            dyn(
                {
                    "tcp": {
                        "routers": {"r": {"rule": "HostSNI(`*`)", "service": "s", "middlewares": ["ip"]}},
                        "services": {
                            "s": {"loadBalancer": {"serversTransport": "t", "servers": [{"address": "db:5432"}]}},
                            "w": {"weighted": {"services": [{"name": "s"}]}},
                        },
                        "middlewares": {"ip": {"inFlightConn": {"amount": 1}}},
                        "serversTransports": {"t": {}},
                    },
                    "udp": {
                        "routers": {"u": {"service": "us"}},
                        "services": {
                            "us": {"loadBalancer": {"servers": [{"address": "dns:53"}]}},
                            "uw": {"weighted": {"services": [{"name": "us"}, {"name": "o@docker"}]}},
                        },
                    },
                }
            ),
            "file",
        )
        self.assertEqual(config.tcp.routers["r@file"].service, "s@file")
        self.assertEqual(config.tcp.routers["r@file"].middlewares, ("ip@file",))
        self.assertEqual(config.tcp.services["s@file"].loadBalancer.serversTransport, "t@file")
        self.assertEqual(config.tcp.services["w@file"].children(), ("s@file",))
        self.assertIn("ip@file", config.tcp.middlewares)
        self.assertIn("t@file", config.tcp.serversTransports)
        self.assertEqual(config.udp.routers["u@file"].service, "us@file")
        self.assertEqual(config.udp.services["uw@file"].children(), ("us@file", "o@docker"))
        self.assertIn("us@file", config.udp.services)

    def test_certificatesAndStoresUnchanged(self) -> None:
        """
        TLS certificates and stores are not renamed.
        """
        raw = {
            "tls": {
                "certificates": [{"certFile": "c", "keyFile": "k"}],
                "stores": {"default": {"defaultCertificate": {"certFile": "c", "keyFile": "k"}}},
            }
        }
        config = qualify(dyn(raw), "file")
        self.assertEqual(config.tls.certificates, dyn(raw).tls.certificates)
        self.assertEqual(list(config.tls.stores), ["default"])

    def test_empty(self) -> None:
        """
        Qualifying the empty configuration gives the empty configuration.
        """
        self.assertEqual(qualify(DynamicConfig(), "file"), DynamicConfig())


class MergeFirstWinsTests(SynchronousTestCase):
    """
    Tests for L{mergeFirstWins}: the files of one provider.
    """

    def test_single(self) -> None:
        """
        One source is returned as it is.
        """
        config = dyn(routerDoc("r"))
        self.assertEqual(mergeFirstWins([("a.toml", config)]), (config, []))

    def test_none(self) -> None:
        """
        No sources merge to the empty configuration.
        """
        self.assertEqual(mergeFirstWins([]), (DynamicConfig(), []))

    def test_union(self) -> None:
        """
        Objects from different files are all kept.
        """
        merged, errors = mergeFirstWins(
            [("a.toml", dyn(routerDoc("a"))), ("b.toml", dyn(routerDoc("b"))), ("c.yaml", dyn({"udp": {"routers": {"u": {}}}}))]
        )
        self.assertEqual(errors, [])
        self.assertEqual(list(merged.http.routers), ["a", "b"])
        self.assertEqual(list(merged.udp.routers), ["u"])

    def test_duplicateKeepsFirst(self) -> None:
        """
        An object defined differently in two files keeps the first and reports the second with its origin.
        """
        merged, errors = mergeFirstWins(
            [
                ("a.toml", dyn(routerDoc("r", service="one"))),
                ("b.toml", dyn(routerDoc("r", service="two"))),
                ("c.toml", dyn(routerDoc("r", service="three"))),
            ]
        )
        self.assertEqual(merged.http.routers["r"].service, "one")
        self.assertEqual(
            errors,
            [
                ConfigError("http.routers.r", "already defined in a.toml; this definition is ignored", "b.toml"),
                ConfigError("http.routers.r", "already defined in a.toml; this definition is ignored", "c.toml"),
            ],
        )
        self.assertEqual(str(errors[0]), "b.toml: http.routers.r: already defined in a.toml; this definition is ignored")

    def test_identicalDuplicateSilent(self) -> None:
        """
        An object defined identically in two files is not an error.
        """
        merged, errors = mergeFirstWins([("a.toml", dyn(routerDoc("r"))), ("b.toml", dyn(routerDoc("r")))])
        self.assertEqual(errors, [])
        self.assertEqual(list(merged.http.routers), ["r"])

    def test_everyKind(self) -> None:
        """
        Duplicates are found for every kind of object, each at its own path.
        """
        first = dyn(
            {
                "http": {"services": {"s": {"loadBalancer": {}}}, "middlewares": {"m": {"addPrefix": {"prefix": "/a"}}}},
                "tcp": {"routers": {"t": {"service": "a"}}},
                "udp": {"services": {"u": {"loadBalancer": {}}}},
            }
        )
        second = dyn(
            {
                "http": {"services": {"s": {"weighted": {}}}, "middlewares": {"m": {"addPrefix": {"prefix": "/b"}}}},
                "tcp": {"routers": {"t": {"service": "b"}}},
                "udp": {"services": {"u": {"weighted": {}}}},
            }
        )
        _, errors = mergeFirstWins([("a", first), ("b", second)])
        self.assertEqual(
            [e.path for e in errors], ["http.services.s", "http.middlewares.m", "tcp.routers.t", "udp.services.u"]
        )
        self.assertTrue(all(e.source == "b" for e in errors))

    def test_tls(self) -> None:
        """
        Certificates are pooled without repeats; a TLS option or store defined differently twice keeps the first.
        """
        a = dyn(
            {
                "tls": {
                    "certificates": [{"certFile": "c1", "keyFile": "k1"}],
                    "options": {"o": {"minVersion": "VersionTLS12"}, "same": {}},
                    "stores": {"default": {"defaultCertificate": {"certFile": "c1", "keyFile": "k1"}}},
                }
            }
        )
        b = dyn(
            {
                "tls": {
                    "certificates": [{"certFile": "c1", "keyFile": "k1"}, {"certFile": "c2", "keyFile": "k2"}],
                    "options": {"o": {"minVersion": "VersionTLS13"}, "same": {}},
                    "stores": {"default": {}},
                }
            }
        )
        merged, errors = mergeFirstWins([("a.yaml", a), ("b.yaml", b)])
        self.assertEqual([c.certFile for c in merged.tls.certificates], ["c1", "c2"])
        self.assertEqual(merged.tls.options["o"].minVersion, "VersionTLS12")
        self.assertEqual(merged.tls.stores["default"], a.tls.stores["default"])
        self.assertEqual(
            errors,
            [
                ConfigError("tls.options.o", "already defined in a.yaml; this definition is ignored", "b.yaml"),
                ConfigError("tls.stores.default", "already defined in a.yaml; this definition is ignored", "b.yaml"),
            ],
        )


class MergeProvidersTests(SynchronousTestCase):
    """
    Tests for L{mergeProviders}.
    """

    def test_single(self) -> None:
        """
        One provider's configuration comes back qualified.
        """
        merged, errors = mergeProviders([("file", dyn(routerDoc("r", service="s")))])
        self.assertEqual(errors, [])
        self.assertEqual(merged.http.routers["r@file"].service, "s@file")

    def test_noCollisions(self) -> None:
        """
        The same name in two providers gives two objects, each resolving its own references.
        """
        merged, errors = mergeProviders(
            [
                ("file", dyn(routerDoc("web", service="app", middlewares=["auth"]))),
                ("docker", dyn(routerDoc("web", service="app", middlewares=["auth@file"]))),
            ]
        )
        self.assertEqual(errors, [])
        self.assertEqual(list(merged.http.routers), ["web@docker", "web@file"])
        self.assertEqual(merged.http.routers["web@docker"].service, "app@docker")
        self.assertEqual(merged.http.routers["web@docker"].middlewares, ("auth@file",))
        self.assertEqual(merged.http.routers["web@file"].middlewares, ("auth@file",))

    def test_defaultTLSOptionClash(self) -> None:
        """
        The default TLS option defined by two providers keeps the first in name order and reports the other.
        """
        merged, errors = mergeProviders(
            [
                ("file", dyn({"tls": {"options": {"default": {"minVersion": "VersionTLS13"}}}})),
                ("docker", dyn({"tls": {"options": {"default": {"minVersion": "VersionTLS12"}}}})),
            ]
        )
        self.assertEqual(merged.tls.options["default"].minVersion, "VersionTLS12")
        self.assertEqual(
            errors,
            [ConfigError("tls.options.default", "already defined in provider docker; this definition is ignored", "provider file")],
        )

    def test_sameProviderNameTwice(self) -> None:
        """
        Two configurations under one provider name merge without comparing configurations.
        """
        merged, errors = mergeProviders(
            [("file", dyn(routerDoc("a"))), ("file", dyn(routerDoc("b")))]
        )
        self.assertEqual(errors, [])
        self.assertEqual(sorted(merged.http.routers), ["a@file", "b@file"])

    def test_empty(self) -> None:
        """
        No providers merge to the empty configuration.
        """
        self.assertEqual(mergeProviders([]), (DynamicConfig(), []))
