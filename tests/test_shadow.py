"""
Tests for the never-matches analysis: which rule implications it proves, that
it proves nothing false (property test against the real matchers), and that
shadowed routers get a warning in their runtime status.
"""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from relayd.config.dynamic import decodeDynamic
from relayd.config.loader import effective
from relayd.config.schema import decode
from relayd.config.static import StaticConfig
from relayd.config.types import FrozenMap
from relayd.runtime.build import ENABLED, WARNING, Runtime, build
from relayd.runtime.rules import compileHTTPRule
from relayd.runtime.shadow import ruleImplies
from tests.test_rules import request


def runtimeOf(routers: dict[str, Any], entryPoints: tuple[str, ...] = ("web",), **static: Any) -> Runtime:
    """
    A runtime built from routers (all on one load balancer service) on the
    given entrypoints; C{__} in a router name stands for C{@}.
    """
    config, _ = decode(
        StaticConfig,
        {"entryPoints": {name: {"address": f"127.0.0.1:{8000 + i}"} for i, name in enumerate(entryPoints)}, **static},
    )
    dynamic = decodeDynamic(
        {
            "http": {
                "routers": {name: {"service": "app", **r} for name, r in routers.items()},
                "services": {"app": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:1"}]}}},
            }
        }
    )
    # Names with a provider (a@file) as the watcher qualifies them.
    routerMap = FrozenMap({name.replace("__", "@"): r for name, r in dynamic.http.routers.items()})
    dynamic = attrs.evolve(dynamic, http=attrs.evolve(dynamic.http, routers=routerMap))
    return build(effective(config), dynamic, 1, reactor=Clock())


class ImplicationTests(SynchronousTestCase):
    def assertImplies(self, b: str, a: str, expected: bool = True, syntax: str = "v3") -> None:
        self.assertEqual(ruleImplies(b, syntax, a, syntax), expected, f"{b} => {a}")

    def test_matchAll(self) -> None:
        """
        PathPrefix(`/`) and a HostRegexp that matches the empty host match every request.
        """
        for a in ("PathPrefix(`/`)", "HostRegexp(`.*`)", "HostRegexp(`^.*$`)", "HostRegexp(`x?`)"):
            self.assertImplies("Host(`a.example`) && Method(`GET`)", a)
        self.assertImplies("Host(`a.example`)", "HostRegexp(`.+`)", False)

    def test_hostEqual(self) -> None:
        """
        Host implies Host of the same name, whatever the case, and nothing else.
        """
        self.assertImplies("Host(`A.example`)", "Host(`a.EXAMPLE`)")
        self.assertImplies("Host(`a.example`)", "Host(`b.example`)", False)
        self.assertImplies("Host(`a.example`)", "Host(`a.example.`)", False)

    def test_pathPrefix(self) -> None:
        """
        Path(q) and PathPrefix(q) imply PathPrefix(p) when q starts with p; not the reverse.
        """
        self.assertImplies("PathPrefix(`/api/v1`)", "PathPrefix(`/api`)")
        self.assertImplies("Path(`/api`)", "PathPrefix(`/api`)")
        self.assertImplies("Path(`/api`)", "Path(`/api`)")
        self.assertImplies("PathPrefix(`/api`)", "PathPrefix(`/api/v1`)", False)
        self.assertImplies("PathPrefix(`/api`)", "Path(`/api`)", False)

    def test_conjunction(self) -> None:
        """
        Every conjunct of the shadower must be implied by some conjunct of the shadowed rule.
        """
        self.assertImplies("Host(`a`) && PathPrefix(`/x/y`) && Method(`GET`)", "PathPrefix(`/x`) && Host(`a`)")
        self.assertImplies("Host(`a`)", "Host(`a`) && PathPrefix(`/x`)", False)

    def test_disjunction(self) -> None:
        """
        One branch of a disjunction in the shadower suffices; every branch of the shadowed rule must be covered.
        """
        self.assertImplies("Host(`a`) && Path(`/x`)", "Host(`b`) || (Host(`a`) && PathPrefix(`/`))")
        self.assertImplies("Host(`a`) || Host(`b`)", "Host(`b`) || Host(`a`)")
        self.assertImplies("Host(`a`) || Host(`c`)", "Host(`b`) || Host(`a`)", False)
        self.assertImplies("Method(`GET`) && (Host(`a`) || Host(`b`))", "Host(`a`) || Host(`b`)")

    def test_negation(self) -> None:
        """
        A negated matcher is only implied by the same negated matcher.
        """
        self.assertImplies("!Host(`a`) && Path(`/x`)", "!Host(`a`)")
        self.assertImplies("!Host(`a`)", "!Host(`b`)", False)
        self.assertImplies("Host(`b`)", "!Host(`a`)", False)

    def test_v2(self) -> None:
        """
        v2 matchers with several arguments are disjunctions; path templates prove nothing.
        """
        self.assertImplies("Host(`a`)", "Host(`b`, `a`)", syntax="v2")
        self.assertImplies("Host(`a`, `c`)", "Host(`b`, `a`)", False, syntax="v2")
        self.assertImplies("PathPrefix(`/{x}`)", "PathPrefix(`/{x}`)", syntax="v2")
        self.assertImplies("PathPrefix(`/{x}/a`)", "PathPrefix(`/{x}`)", False, syntax="v2")
        self.assertImplies("Host(`a`)", "HostRegexp(`{x:.*}`)", False, syntax="v2")

    def test_invalid(self) -> None:
        """
        A rule that does not parse proves nothing.
        """
        self.assertImplies("Host(`a`", "PathPrefix(`/`)", False)


_hosts = st.sampled_from(["a.example", "b.example", "A.example"])
_paths = st.sampled_from(["/", "/api", "/api/v1", "/api/v1/x", "/apix", "/b", "/b/"])
_methods = st.sampled_from(["GET", "POST", "get"])


def _leaf() -> st.SearchStrategy[str]:
    return st.one_of(
        _hosts.map(lambda h: f"Host(`{h}`)"),
        _paths.map(lambda p: f"Path(`{p}`)"),
        _paths.map(lambda p: f"PathPrefix(`{p}`)"),
        _methods.map(lambda m: f"Method(`{m}`)"),
        st.sampled_from(["HostRegexp(`.*`)", "HostRegexp(`^a`)", "Header(`X-A`, `1`)", "Query(`q`)"]),
    )


def _rule() -> st.SearchStrategy[str]:
    return st.recursive(
        st.one_of(_leaf(), _leaf().map(lambda r: f"!{r}")),
        lambda inner: st.one_of(
            st.tuples(inner, inner).map(lambda t: f"({t[0]} && {t[1]})"),
            st.tuples(inner, inner).map(lambda t: f"({t[0]} || {t[1]})"),
        ),
        max_leaves=5,
    )


_requests = st.tuples(
    st.sampled_from(["a.example", "b.example", "c.example", "A.EXAMPLE:80"]),
    _paths,
    st.sampled_from(["GET", "POST", "PUT"]),
    st.sampled_from(["", "q=1"]),
    st.booleans(),
)


class SoundnessTests(SynchronousTestCase):
    @settings(max_examples=400, deadline=None)
    @given(_rule(), _rule(), st.lists(_requests, min_size=20, max_size=40))
    def test_noFalsePositive(self, b: str, a: str, requests: list[tuple[str, str, str, str, bool]]) -> None:
        """
        Whenever B is found implied by A, every request B matches, A matches too.
        """
        if not ruleImplies(b, "v3", a, "v3"):
            return
        matchB, matchA = compileHTTPRule(b), compileHTTPRule(a)
        for host, path, method, query, header in requests:
            r = request(f"http://{host}{path}?{query}", method, {"X-A": "1"} if header else None)
            if matchB(r):
                self.assertTrue(matchA(r), f"{b} => {a} but not for {host} {method} {path}?{query}")

    @settings(max_examples=200, deadline=None)
    @given(_rule())
    def test_reflexive(self, rule: str) -> None:
        """
        Every rule implies itself (the analysis at least sees a duplicate router).
        """
        self.assertTrue(ruleImplies(rule, "v3", rule, "v3"))


class ShadowStatusTests(SynchronousTestCase):
    def test_shadowedWarning(self) -> None:
        """
        A router behind a higher-priority catch-all gets status warning with the shadower named.
        """
        runtime = runtimeOf(
            {
                "all": {"rule": "PathPrefix(`/`)", "priority": 100},
                "api": {"rule": "Host(`a.example`) && PathPrefix(`/api`)"},
            }
        )
        self.assertEqual(runtime.routers["api"].status, WARNING)
        self.assertEqual(
            runtime.routers["api"].errors,
            ['never matches: router "all" (priority 100) matches every request it would, and is evaluated first'],
        )
        self.assertEqual(runtime.routers["all"].status, ENABLED)
        # The shadowed router still serves (it is only never reached).
        self.assertEqual([r.name for r in runtime.table("web").plain], ["all", "api"])

    def test_equalPriorityByName(self) -> None:
        """
        At equal priority the router first by name shadows a duplicate.
        """
        runtime = runtimeOf({"b": {"rule": "Host(`x`)"}, "a": {"rule": "Host(`x`)"}})
        self.assertEqual(runtime.routers["a"].status, ENABLED)
        self.assertEqual(runtime.routers["b"].status, WARNING)

    def test_lowerPriorityCatchAllIsFine(self) -> None:
        """
        A catch-all evaluated last shadows nothing.
        """
        runtime = runtimeOf({"all": {"rule": "PathPrefix(`/`)"}, "api": {"rule": "Host(`a.example`)"}})
        self.assertEqual({n: i.status for n, i in runtime.routers.items()}, {"all": ENABLED, "api": ENABLED})

    def test_entryPointSuperset(self) -> None:
        """
        A router also served on an entrypoint where nothing shadows it is not reported.
        """
        routers = {
            "all": {"rule": "PathPrefix(`/`)", "priority": 100, "entryPoints": ["web"]},
            "api": {"rule": "Host(`a.example`)", "entryPoints": ["web", "other"]},
            "only": {"rule": "Host(`b.example`)", "entryPoints": ["web"]},
        }
        runtime = runtimeOf(routers, ("web", "other"))
        self.assertEqual(runtime.routers["api"].status, ENABLED)
        self.assertEqual(runtime.routers["only"].status, WARNING)

    def test_tlsApart(self) -> None:
        """
        A TLS catch-all does not shadow a plain router, nor the reverse.
        """
        runtime = runtimeOf(
            {
                "secure": {"rule": "PathPrefix(`/`)", "priority": 100, "tls": {}},
                "plain": {"rule": "Host(`a.example`)"},
                "plainAll": {"rule": "PathPrefix(`/`)", "priority": 200},
                "secureHost": {"rule": "Host(`a.example`)", "tls": {}},
            }
        )
        self.assertEqual(runtime.routers["secureHost"].status, WARNING)
        self.assertIn('"secure"', runtime.routers["secureHost"].errors[0])
        self.assertEqual(runtime.routers["plain"].status, WARNING)
        self.assertIn('"plainAll"', runtime.routers["plain"].errors[0])
        self.assertEqual(runtime.routers["secure"].status, ENABLED)

    def test_internalExcluded(self) -> None:
        """
        Internal routers neither shadow user routers nor are reported as shadowed.
        """
        runtime = runtimeOf(
            {
                "dashboard__internal": {"rule": "PathPrefix(`/`)", "priority": 1000},
                "mine__file": {"rule": "Host(`a.example`)"},
                "all__file": {"rule": "PathPrefix(`/`)", "priority": 100},
                "ping__internal": {"rule": "PathPrefix(`/ping`)", "priority": 10},
            }
        )
        self.assertEqual(runtime.routers["mine@file"].status, WARNING)
        self.assertIn('"all@file"', runtime.routers["mine@file"].errors[0])
        self.assertEqual(runtime.routers["all@file"].status, ENABLED)
        self.assertEqual(runtime.routers["ping@internal"].status, ENABLED)

    def test_disabledShadowerIgnored(self) -> None:
        """
        A disabled router shadows nothing: it is not in the route table.
        """
        runtime = runtimeOf(
            {
                "all": {"rule": "PathPrefix(`/`)", "priority": 100, "service": "missing"},
                "api": {"rule": "Host(`a.example`)"},
            }
        )
        self.assertEqual(runtime.routers["api"].status, ENABLED)
