"""
Tests for L{relayd.runtime.routing}: route tables, the path pipeline
(normalizePath, cleanPath, routeRequest) and the per-request pick.

The facts come from Traefik v3.6.24: pkg/muxer/http/mux.go and mux_test.go
(priorities, routing path), pkg/server/server_entrypoint_tcp.go
(normalizePath, sanitizePath, encodeQuerySemicolons) and Go's net/url and path
packages (EscapedPath, JoinPath, path.Clean).
"""

from __future__ import annotations

import posixpath
from typing import Any, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from relayd.runtime.routing import (
    MAX_PRIORITY,
    MAX_USER_PRIORITY,
    BadRequestPath,
    Route,
    RouteTable,
    cleanPath,
    normalizePath,
    routeRequest,
    sortKey,
)
from relayd.runtime.rules import compileHTTPRule, defaultPriority
from tests.test_rules import headerLookup, request

PROPERTY = settings(max_examples=200, deadline=None, database=None)


def route(name: str, rule: str, priority: int = 0, tls: bool = False) -> Route:
    """
    A route as the runtime builds it: priority 0 means the default priority.
    """
    return Route(
        name=name,
        priority=priority or defaultPriority(rule),
        rule=rule,
        matcher=compileHTTPRule(rule),
        handler=name,
        tls=tls,
    )


def names(routes: Sequence[Route]) -> list[str]:
    return [r.name for r in routes]


class RouteTableTests(SynchronousTestCase):
    """
    The order of routes and the pick.
    """

    def test_priorityDescending(self) -> None:
        """
        Routes are tried by priority, highest first.
        """
        table = RouteTable.build(
            [route("low", "PathPrefix(`/`)", 1), route("high", "PathPrefix(`/`)", 100), route("mid", "PathPrefix(`/`)", 50)]
        )
        self.assertEqual(names(table.plain), ["high", "mid", "low"])

    def test_tiesByName(self) -> None:
        """
        Equal priorities are broken by router name, ascending, whatever the input order.
        """
        routes = [route(n, "PathPrefix(`/`)", 10) for n in ["b@file", "a@docker", "c", "a@file"]]
        for ordering in [routes, routes[::-1], routes[1:] + routes[:1]]:
            table = RouteTable.build(ordering)
            self.assertEqual(names(table.plain), ["a@docker", "a@file", "b@file", "c"])
            self.assertEqual(table.match(request()).name, "a@docker")

    def test_sortKey(self) -> None:
        """
        sortKey is (-priority, name).
        """
        self.assertEqual(sortKey(route("x", "Path(`/`)", 7)), (-7, "x"))

    def test_defaultPriorityLongestRuleFirst(self) -> None:
        """
        With default priorities the longer rule wins (Traefik's Test_addRoutePriority).
        """
        for rules, expected in [
            (["PathPrefix(`/mypath`)", "PathPrefix(`/my`)"], "PathPrefix(`/mypath`)"),
            (["PathPrefix(`/my`)", "PathPrefix(`/mypath`)"], "PathPrefix(`/mypath`)"),
            (["PathPrefix(`/my`)", "PathPrefix(`/mypa`)", "PathPrefix(`/mypath`)"], "PathPrefix(`/mypath`)"),
        ]:
            table = RouteTable.build([route(r, r) for r in rules])
            self.assertEqual(table.match(request("http://a/mypath")).name, expected)

    def test_explicitPriorities(self) -> None:
        """
        Explicit priorities override rule lengths (Traefik's Test_addRoutePriority).
        """
        for cases, expected in [
            ([("header1", "PathPrefix(`/my`)", 10), ("header2", "PathPrefix(`/my`)", 20)], "header2"),
            ([("header1", "PathPrefix(`/my`)", 20), ("header2", "PathPrefix(`/my`)", 10)], "header1"),
            ([("header1", "PathPrefix(`/mypath`)", 10), ("header2", "PathPrefix(`/my`)", 20)], "header2"),
        ]:
            table = RouteTable.build([route(*case) for case in cases])
            self.assertEqual(table.match(request("http://a/mypath")).name, expected)

    def test_regexpOutranksHost(self) -> None:
        """
        The classic trap: a longer HostRegexp rule outranks a shorter Host rule.
        """
        table = RouteTable.build(
            [route("host", "Host(`foo.x.com`)"), route("regexp", r"HostRegexp(`[a-z]+\.x\.com`)")]
        )
        self.assertEqual(table.match(request("http://foo.x.com/")).name, "regexp")

    def test_plainAndTLS(self) -> None:
        """
        TLS routes only serve TLS requests and plain routes only plain requests.
        """
        table = RouteTable.build(
            [route("web", "PathPrefix(`/`)"), route("websecure", "PathPrefix(`/`)", tls=True)]
        )
        self.assertEqual(names(table.plain), ["web"])
        self.assertEqual(names(table.secure), ["websecure"])
        self.assertEqual(table.match(request()).name, "web")
        self.assertEqual(table.match(request(), secure=True).name, "websecure")
        tlsOnly = RouteTable.build([route("websecure", "PathPrefix(`/`)", tls=True)])
        self.assertIsNone(tlsOnly.match(request()))

    def test_noMatch(self) -> None:
        """
        No matching route gives None; an empty table matches nothing.
        """
        table = RouteTable.build([route("a", "Host(`a.com`)")])
        self.assertIsNone(table.match(request("http://b.com/")))
        self.assertIsNone(RouteTable().match(request()))

    def test_explain(self) -> None:
        """
        explain lists the routes tried in order with their answers, stopping at the first match.
        """
        table = RouteTable.build(
            [
                route("a", "Host(`a.com`)", 30),
                route("b", "PathPrefix(`/b`)", 20),
                route("c", "PathPrefix(`/`)", 10),
                route("t", "PathPrefix(`/`)", 40, tls=True),
            ]
        )
        explained = table.explain(request("http://x.com/b/1"))
        self.assertEqual([(r.name, m) for r, m in explained], [("a", False), ("b", True)])
        explained = table.explain(request("http://x.com/nothing"))
        self.assertEqual([(r.name, m) for r, m in explained], [("a", False), ("b", False), ("c", True)])
        explained = RouteTable.build([route("a", "Host(`a.com`)")]).explain(request("http://x.com/"))
        self.assertEqual([(r.name, m) for r, m in explained], [("a", False)])
        explained = table.explain(request(), secure=True)
        self.assertEqual([(r.name, m) for r, m in explained], [("t", True)])

    def test_priorityBounds(self) -> None:
        """
        Priorities are Go ints: the user maximum is MaxInt64-1000.
        """
        self.assertEqual(MAX_PRIORITY, 2**63 - 1)
        self.assertEqual(MAX_USER_PRIORITY, 2**63 - 1 - 1000)


class NormalizePathTests(SynchronousTestCase):
    """
    normalizePath: Traefik's normalizePath followed by Go's URL.EscapedPath.
    """

    def test_unreservedDecoded(self) -> None:
        """
        Escapes of unreserved characters are decoded, in either case.
        """
        for raw, expected in [
            ("/foo%7Ebar", "/foo~bar"),
            ("/foo%7ebar", "/foo~bar"),
            ("/%41%5a%61%7A%30%39%2D%2E%5F%7E", "/AZaz09-._~"),
            ("/a%2e%2e/b", "/a../b"),
        ]:
            self.assertEqual(normalizePath(raw), expected, raw)

    def test_othersUpperCased(self) -> None:
        """
        Every other escape is kept and upper-cased.
        """
        for raw, expected in [
            ("/foo%2fbar", "/foo%2Fbar"),
            ("/foo%2Fbar", "/foo%2Fbar"),
            ("/a%3a%3f%23%25", "/a%3A%3F%23%25"),
            ("/foo%20bar", "/foo%20bar"),
            ("/%c3%a9", "/%C3%A9"),
        ]:
            self.assertEqual(normalizePath(raw), expected, raw)

    def test_unchanged(self) -> None:
        """
        Paths without escapes that Go would keep as they are come back unchanged, as does *.
        """
        for raw in ["/", "/a/b", "/a:b@c;d=e,f+g$h&i", "/a!b'c(d)e*f[g]", "*", "/a//b/../c"]:
            self.assertEqual(normalizePath(raw), raw)

    def test_escapedLikeGo(self) -> None:
        """
        A path holding characters Go escapes is escaped again from its decoded form, as Go's EscapedPath does.
        """
        for raw, expected in [
            ("/a{b}", "/a%7Bb%7D"),
            ("/é", "/%C3%A9"),
            ('/a"b', "/a%22b"),
            ("/a|b^c`d\\e<f>", "/a%7Cb%5Ec%60d%5Ce%3Cf%3E"),
            ('/a"b%2Fc%3Ad', "/a%22b/c:d"),
            ("/a{b}%25", "/a%7Bb%7D%25"),
            ("/a{b}%3F", "/a%7Bb%7D%3F"),
            ("/\udcff", "/%FF"),
        ]:
            self.assertEqual(normalizePath(raw), expected, raw)

    def test_badRequests(self) -> None:
        """
        Malformed escapes, control characters and fragments raise BadRequestPath.
        """
        for raw in ["/a%", "/a%4", "/a%zz", "/a%g0", "/a#b", "/a%2#", "/a\x00", "/a\tb", "/a\x7f"]:
            self.assertRaises(BadRequestPath, normalizePath, raw)


class CleanPathTests(SynchronousTestCase):
    """
    cleanPath: Go's path.Clean as Traefik's sanitizePath applies it (URL.JoinPath).
    """

    def test_table(self) -> None:
        """
        Dot segments and duplicate slashes are removed; a trailing slash is kept.
        """
        for path, expected in [
            ("/", "/"),
            ("", "/"),
            ("//a", "/a"),
            ("/a//b", "/a/b"),
            ("/a/../b", "/b"),
            ("/a/./b", "/a/b"),
            ("/..", "/"),
            ("/../a", "/a"),
            ("/a/b/../..", "/"),
            ("/a/b/../../..", "/"),
            ("/a/", "/a/"),
            ("/a/b/..", "/a"),
            ("/a/b/../", "/a/"),
            ("/a/.", "/a"),
            ("/a/./", "/a/"),
            ("/.", "/"),
            ("///", "/"),
            ("/a/..b/c", "/a/..b/c"),
            ("/a/%2E%2E/b", "/a/%2E%2E/b"),
        ]:
            self.assertEqual(cleanPath(path), expected, path)

    @PROPERTY
    @given(st.lists(st.sampled_from(["a", "b", ".", "..", "", "c.d"]), max_size=8), st.booleans())
    def test_cleanProperties(self, segments: list[str], trailing: bool) -> None:
        """
        A cleaned path is rooted, has no empty, . or .. segments, is a fixed point, and agrees with posixpath.normpath.
        """
        path = "/" + "/".join(segments) + ("/" if trailing else "")
        cleaned = cleanPath(path)
        self.assertTrue(cleaned.startswith("/"))
        inner = cleaned.strip("/")
        if inner:
            self.assertFalse({"", ".", ".."} & set(inner.split("/")), cleaned)
        self.assertEqual(cleanPath(cleaned), cleaned)
        expected = posixpath.normpath("/" + path.lstrip("/"))
        if path.endswith("/") and expected != "/":
            expected += "/"
        self.assertEqual(cleaned, expected)

    def test_pipeline(self) -> None:
        """
        Escaped dots are decoded by normalizePath first, so cleanPath then removes them.
        """
        self.assertEqual(cleanPath(normalizePath("/a/%2e%2e/b")), "/b")
        self.assertEqual(cleanPath(normalizePath("/a/%2E/b/")), "/a/b/")


class RouteRequestTests(SynchronousTestCase):
    """
    routeRequest: the matcher view of a request.
    """

    def make(self, **kwargs: Any) -> Any:
        arguments: dict[str, Any] = {
            "host": "example.com",
            "path": "/",
            "rawQuery": "",
            "method": "GET",
            "headers": headerLookup({}),
            "clientIP": "10.0.0.1",
        }
        arguments.update(kwargs)
        return routeRequest(**arguments)

    def test_semicolonsAreSeparators(self) -> None:
        """
        By default ; in the query is replaced by &, as http.AllowQuerySemicolons does.
        """
        req = self.make(rawQuery="a=1;b=2")
        self.assertEqual(req.rawQuery, "a=1&b=2")
        self.assertEqual(req.query, {"a": ["1"], "b": ["2"]})

    def test_semicolonsEncoded(self) -> None:
        """
        With encodeQuerySemicolons ; becomes %3B and stays inside the value.
        """
        req = self.make(rawQuery="a=1;b=2", encodeQuerySemicolons=True)
        self.assertEqual(req.rawQuery, "a=1%3Bb=2")
        self.assertEqual(req.query, {"a": ["1;b=2"]})
        matcher = compileHTTPRule("Query(`a`, `1;b=2`)")
        self.assertTrue(matcher(req))
        self.assertFalse(matcher(self.make(rawQuery="a=1;b=2")))

    def test_badPath(self) -> None:
        """
        A path with a malformed escape raises BadRequestPath.
        """
        for path in ["/a%", "/a%zz", "/a%4"]:
            self.assertRaises(BadRequestPath, self.make, path=path)

    def test_routingPath(self) -> None:
        """
        The routing path decodes non-reserved escapes and keeps reserved ones (Traefik's TestRoutingPath).
        """
        for path, expected in [
            ("/foo%20bar", "/foo bar"),
            ("/foo%2Fbar", "/foo%2Fbar"),
            ("/foo%20bar%2Fbaz%23qux", "/foo bar%2Fbaz%23qux"),
            ("/%C3%A9", "/é"),
            ("/a%25b", "/a%25b"),
        ]:
            self.assertEqual(self.make(path=path).path, expected, path)

    def test_host(self) -> None:
        """
        The host is lower-cased without port and IPv6 brackets; the raw Host header is kept.
        """
        for host, canonical in [
            ("Example.COM:8080", "example.com"),
            ("example.com", "example.com"),
            ("[::1]:80", "::1"),
            ("[::1]", "::1"),
            ("", ""),
        ]:
            req = self.make(host=host)
            self.assertEqual((req.host, req.rawHost), (canonical, host))

    def test_fields(self) -> None:
        """
        Method, headers and client IP are passed through.
        """
        req = self.make(method="PUT", headers=headerLookup({"X-A": ["1", "2"]}), clientIP="::1")
        self.assertEqual((req.method, list(req.headers("x-a")), req.clientIP), ("PUT", ["1", "2"], "::1"))

    def test_pipelineMatches(self) -> None:
        """
        normalizePath, cleanPath and routeRequest together feed the matchers.
        """
        matcher = compileHTTPRule("Path(`/b c`)")
        path = cleanPath(normalizePath("/a/..//b%20c"))
        self.assertTrue(matcher(self.make(path=path)))
        self.assertFalse(matcher(self.make(path=normalizePath("/a/..//b%20c"))))
