"""
Tests for the redirect middlewares (redirectScheme, redirectRegex) and Go's
url.Parse/URL.String as they use them: the tables of Traefik v3.6's tests
(pkg/middlewares/redirect/*_test.go) as facts, on in-memory requests in the
two forms Traefik can see (origin-form, and the absolute-form target its tests
use, which reaches the middleware only when the entrypoint does not sanitize
paths), plus one run through a real entrypoint.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from relayd.config.dynamic import decodeDynamic
from relayd.config.middlewares import AddPrefix, RedirectRegex, RedirectScheme, StripPrefix
from relayd.entrypoints import EntryPointService
from relayd.middlewares import _resolve
from relayd.middlewares.paths import buildAddPrefix, buildStripPrefix, decode, encode
from relayd.middlewares.redirect import (
    GoURLError,
    buildRedirectRegex,
    buildRedirectScheme,
    parseGoURL,
    redirectStatus,
)
from relayd.providers.base import ProviderUpdate
from relayd.runtime.build import BuildError
from relayd.watcher import Watcher
from tests.helpers import Client, startBackend
from tests.test_middlewares_paths import Recorder, info, makeRequest, makeStatic, response

RAW_TARGETS = makeStatic(http={"sanitizePath": False})
NOT_PASSED = object()


def originForm(url: str) -> tuple[str, str, bool]:
    """
    The origin-form target, Host header and TLS of a request for C{url}.
    """
    scheme, _, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    return slash + path or "/", host, scheme == "https"


class RedirectTestMixin:
    def serve(
        self,
        handler: Any,
        recorder: Recorder,
        url: str,
        absolute: bool = False,
        method: bytes = b"GET",
        headers: dict[str, list[str]] | None = None,
        trustForwarded: bool = False,
        secure: bool | None = None,
    ) -> tuple[Any, Any]:
        """
        Send a request for C{url} through C{handler}: origin-form with a Host
        header, or the absolute-form target itself on an entrypoint that does
        not sanitize paths. Returns the response (status, headers, body), or
        what the next handler saw.
        """
        target, host, tls = originForm(url)
        allHeaders = {"Host": [host], **(headers or {})}
        if absolute:
            request = makeRequest(
                url, method, allHeaders, tls if secure is None else secure, RAW_TARGETS, trustForwarded
            )
        else:
            request = makeRequest(target, method, allHeaders, tls if secure is None else secure, trustForwarded=trustForwarded)
        before = len(recorder.seen)
        handler.handle(request)
        if len(recorder.seen) > before:
            return None, recorder.seen[-1]
        return response(request), None

    def assertRedirect(self, result: tuple[Any, Any], location: str, status: int, label: Any) -> None:
        answer, passed = result
        self.assertIsNone(passed, label)
        code, headers, body = answer
        phrases = {301: b"Moved Permanently", 302: b"Found", 307: b"Temporary Redirect", 308: b"Permanent Redirect"}
        self.assertEqual((code, headers.get(b"location")), (status, [location.encode()]), label)
        self.assertEqual(body, phrases[status], label)
        self.assertEqual(headers[b"content-type"], [b"text/plain; charset=utf-8"], label)
        self.assertEqual(headers[b"content-length"], [str(len(body)).encode()], label)

    def assertPassed(self, result: tuple[Any, Any], label: Any) -> dict[str, Any]:
        answer, passed = result
        self.assertIsNone(answer, label)
        self.assertIsNotNone(passed, label)
        return passed  # type: ignore[no-any-return]

    def assertBadGateway(self, result: tuple[Any, Any], label: Any) -> None:
        answer, passed = result
        self.assertIsNone(passed, label)
        code, headers, body = answer
        self.assertEqual((code, body), (502, b"Bad Gateway"), label)
        self.assertNotIn(b"location", headers, label)


class RedirectSchemeTests(RedirectTestMixin, SynchronousTestCase):
    # scheme, port, permanent, URL, X-Forwarded-Proto, Location (None: not redirected), status
    TRAEFIK_TABLE = [
        ("https", "", False, "http://foo", None, "https://foo", 302),
        ("https", "", False, "http://foo", "http", "https://foo", 302),
        ("https", "", False, "http://foo", "https", None, 200),
        ("https", "", False, "http://foo", "bar", "https://foo", 302),
        ("https", "", False, "http://foo", "ws", "https://foo", 302),
        ("https", "", False, "http://foo", "wss", None, 200),
        ("https", "", False, "http://foo:8080", None, "https://foo", 302),
        ("https", "8443", False, "http://foo", None, "https://foo:8443", 302),
        ("https", "8443", False, "http://foo:8000", None, "https://foo:8443", 302),
        ("https", "8443", False, "https://foo:8000", None, "https://foo:8443", 302),
        ("https", "", False, "https://foo:8000", None, "https://foo", 302),
        ("https", "", False, "https://foo:8000/theother", None, "https://foo/theother", 302),
        ("https", "8443", True, "http://foo", None, "https://foo:8443", 301),
        ("http", "80", False, "http://foo:80", None, None, 200),
        ("https", "443", False, "https://foo:443", None, None, 200),
        ("wss", "9443", False, "http://foo", None, "wss://foo:9443", 302),
        ("wss", "", False, "http://foo", None, "wss://foo", 302),
        ("wss", "", False, "http://foo:5678", None, "wss://foo", 302),
        ("https", "", False, "http://foo:443", None, "https://foo", 302),
        ("http", "8181", False, "http://foo:8080", None, "http://foo:8181", 302),
        ("https", "", False, "https://foo:80", None, "https://foo", 302),
        ("https", "", False, "http://[::1]", None, "https://[::1]", 302),
        ("https", "8443", False, "http://[::1]", None, "https://[::1]:8443", 302),
        ("https", "", False, "http://[::1]:80", None, "https://[::1]", 302),
        ("https", "8443", False, "http://[::1]:80", None, "https://[::1]:8443", 302),
    ]

    def build(self, scheme: str, port: str = "", permanent: bool = False) -> tuple[Any, Recorder]:
        recorder = Recorder()
        config = RedirectScheme(scheme=scheme, port=port, permanent=permanent)
        return buildRedirectScheme(None, info("redirectScheme", config), recorder, ()), recorder

    def test_traefikTableAbsoluteForm(self) -> None:
        """
        Every case of Traefik's redirectScheme table, sent as its absolute-form target, gives the same Location and status.
        """
        for scheme, port, permanent, url, proto, location, status in self.TRAEFIK_TABLE:
            handler, recorder = self.build(scheme, port, permanent)
            headers = {"X-Forwarded-Proto": [proto]} if proto else {}
            result = self.serve(handler, recorder, url, absolute=True, headers=headers, trustForwarded=True)
            label = (scheme, port, url, proto)
            if location is None:
                self.assertPassed(result, label)
            else:
                self.assertRedirect(result, location, status, label)

    def test_traefikTableOriginForm(self) -> None:
        """
        Traefik's redirectScheme table sent origin-form: the path / is kept, and an IPv6 Host with a port is answered 502 as Traefik's Go does.
        """
        for scheme, port, permanent, url, proto, location, status in self.TRAEFIK_TABLE:
            handler, recorder = self.build(scheme, port, permanent)
            headers = {"X-Forwarded-Proto": [proto]} if proto else {}
            result = self.serve(handler, recorder, url, headers=headers, trustForwarded=True)
            label = (scheme, port, url, proto)
            if "[::1]:" in url:
                self.assertBadGateway(result, label)
            elif location is None:
                self.assertEqual(self.assertPassed(result, label)["forwardPath"], "/", label)
            else:
                if "/theother" not in location:
                    location += "/"
                self.assertRedirect(result, location, status, label)

    def test_methodAndPermanent(self) -> None:
        """
        GET gets 302 (301 if permanent) and every other method, HEAD included, 307 (308), with no body for HEAD.
        """
        for method, permanent, status in (
            (b"GET", False, 302),
            (b"POST", False, 307),
            (b"HEAD", False, 307),
            (b"GET", True, 301),
            (b"PUT", True, 308),
            (b"HEAD", True, 308),
        ):
            handler, recorder = self.build("https", permanent=permanent)
            (code, headers, body), _ = self.serve(handler, recorder, "http://foo/x", method=method)
            self.assertEqual((code, headers[b"location"]), (status, [b"https://foo/x"]), method)
            self.assertEqual(redirectStatus(method, permanent), status)
            if method == b"HEAD":
                self.assertEqual(body, b"")
                self.assertEqual(headers[b"content-length"], [str(len(b"Temporary Redirect" if status == 307 else b"Permanent Redirect")).encode()])

    def test_untrustedForwardedProtoIgnored(self) -> None:
        """
        An X-Forwarded-Proto from a client the entrypoint does not trust is dropped, as Traefik's entrypoint drops it, so the request is redirected.
        """
        from relayd.proxy.forwarded import applyForwardedHeaders

        handler, recorder = self.build("https")
        target, host, tls = originForm("http://foo/x")
        request = makeRequest(target, b"GET", {"Host": [host], "X-Forwarded-Proto": ["https"]}, tls)
        applyForwardedHeaders(request, trusted=False, clientIP="10.0.0.1", host=host)
        handler.handle(request)
        self.assertRedirect((response(request), None), "https://foo/x", 302, "untrusted")
        result = self.serve(handler, recorder, "http://foo/x", headers={"X-Forwarded-Proto": ["https"]}, trustForwarded=True)
        self.assertPassed(result, "trusted")

    def test_forwardedProtoFirstValueCaseInsensitive(self) -> None:
        """
        Only the first X-Forwarded-Proto value counts, compared with Go's Unicode case folding.
        """
        handler, recorder = self.build("https")
        result = self.serve(handler, recorder, "http://foo/", headers={"X-Forwarded-Proto": ["HTTPS", "http"]}, trustForwarded=True)
        self.assertPassed(result, "first")
        result = self.serve(handler, recorder, "http://foo/", headers={"X-Forwarded-Proto": ["https, http"]}, trustForwarded=True)
        self.assertRedirect(result, "https://foo/", 302, "list")
        result = self.serve(handler, recorder, "http://foo/", headers={"X-Forwarded-Proto": ["WsS"]}, trustForwarded=True)
        self.assertPassed(result, "wss")
        result = self.serve(handler, recorder, "http://foo/", headers={"X-Forwarded-Proto": ["http\u017f"]}, trustForwarded=True)
        self.assertPassed(result, "long s folds to s")

    def test_tlsRequestToHTTP(self) -> None:
        """
        A request over TLS is https, so a redirect to http with no port drops the :443 and one already on http passes.
        """
        handler, recorder = self.build("http")
        self.assertRedirect(self.serve(handler, recorder, "https://foo:443/a"), "http://foo/a", 302, "tls")
        self.assertPassed(self.serve(handler, recorder, "http://foo/a"), "plain")

    def test_pathAndQueryKept(self) -> None:
        """
        The path to forward and the query, after path middlewares, end the Location.
        """
        recorder = Recorder()
        redirect = buildRedirectScheme(None, info("redirectScheme", RedirectScheme(scheme="https")), recorder, ())
        strip = buildStripPrefix(None, info("stripPrefix", StripPrefix(prefixes=("/api",))), redirect, ())
        self.assertRedirect(self.serve(strip, recorder, "http://foo/api/a%2Fb?x=1;y=2"), "https://foo/a%2Fb?x=1&y=2", 302, "q")

    def test_schemeCaseKeptForPort(self) -> None:
        """
        The default-port check is case-sensitive as in Traefik, but Go's url.Parse lower-cases the scheme of the Location.
        """
        handler, recorder = self.build("HTTPS", "443")
        self.assertRedirect(self.serve(handler, recorder, "http://foo/"), "https://foo:443/", 302, "case")

    def test_hostOverride(self) -> None:
        """
        A Host set by a headers middleware is Go's r.Host and is used.
        """
        handler, recorder = self.build("https")
        target, _, _ = originForm("http://foo/x")
        request = makeRequest(target, headers={"Host": ["foo"]})
        request.relaydHostOverride = b"bar.example:8080"
        handler.handle(request)
        self.assertEqual(response(request)[1][b"location"], [b"https://bar.example/x"])

    def test_noScheme(self) -> None:
        """
        A configuration without a scheme cannot be built, with Traefik's error.
        """
        error = self.assertRaises(BuildError, self.build, "")
        self.assertEqual(str(error), "you must provide a target scheme")

    def test_registry(self) -> None:
        """
        The middleware registry resolves redirectScheme to this module's builder.
        """
        self.assertIs(_resolve("redirectScheme"), buildRedirectScheme)


class RedirectRegexTests(RedirectTestMixin, SynchronousTestCase):
    # regex, replacement, permanent, method, URL, TLS, X-Forwarded-Proto, Location (None: passes; "502"), status
    TRAEFIK_TABLE = [
        (r"^(?:http?:\/\/)(foo)(\.com)(:\d+)(.*)$", "https://${1}bar$2:443$4", False, b"GET", "http://foo.com:80", False, None, "https://foobar.com:443", 302),
        (r"^(?:http?:\/\/)(foo)(\.com)(:\d+)(.*)$", "https://${1}bar$2:443$4", False, b"GET", "http://bar.com:80", False, None, None, 200),
        (r"^(.*)$", "http://192.168.0.%31/", False, b"GET", "http://foo.com:80", False, None, "502", 502),
        (r"^http://", "https://$1", True, b"GET", "http://foo", False, None, "https://foo", 301),
        (r"https://foo", "http://foo", True, b"GET", "https://foo", True, None, "http://foo", 301),
        (r"http://foo:80", "https://foo:443", False, b"GET", "http://foo:80", False, None, "https://foo:443", 302),
        (r"http://foo:80", "https://foo:443", False, b"GET", "http://foo:80", False, "https", "https://foo:443", 302),
        (r"https://foo:443", "http://foo:80", False, b"GET", "https://foo:443", True, None, "http://foo:80", 302),
        (r"http://foo:80", "http://foo:88", False, b"GET", "http://foo:80", False, None, "http://foo:88", 302),
        (r"^http://", "https://$1", False, b"POST", "http://foo", False, None, "https://foo", 307),
        (r"^http://", "https://$1", True, b"POST", "http://foo", False, None, "https://foo", 308),
    ]

    def build(self, regex: str, replacement: str, permanent: bool = False) -> tuple[Any, Recorder]:
        recorder = Recorder()
        config = RedirectRegex(regex=regex, replacement=replacement, permanent=permanent)
        return buildRedirectRegex(None, info("redirectRegex", config), recorder, ()), recorder

    def check(self, absolute: bool) -> None:
        for regex, replacement, permanent, method, url, tls, proto, location, status in self.TRAEFIK_TABLE:
            handler, recorder = self.build(regex, replacement, permanent)
            headers = {"X-Forwarded-Proto": [proto]} if proto else {}
            result = self.serve(handler, recorder, url, absolute, method, headers, trustForwarded=True, secure=tls)
            label = (regex, url, absolute)
            if location is None:
                self.assertPassed(result, label)
            elif location == "502":
                self.assertBadGateway(result, label)
            else:
                self.assertRedirect(result, location if absolute else location + "/", status, label)

    def test_traefikTableAbsoluteForm(self) -> None:
        """
        Every case of Traefik's redirectRegex table, sent as its absolute-form target, gives the same Location and status.
        """
        self.check(absolute=True)

    def test_traefikTableOriginForm(self) -> None:
        """
        Traefik's redirectRegex table sent origin-form gives the same answers, the URL ending with the path /.
        """
        self.check(absolute=False)

    def test_urlIncludesHostPortPathAndQuery(self) -> None:
        """
        The URL matched is scheme://Host-header/path?query, the Host header's port included and X-Forwarded-Proto ignored.
        """
        handler, recorder = self.build(r"^(.*)$", "https://x/?u=$1")
        for url, headers, expected in (
            ("http://foo:8080/a%2Fb?c=d", {}, "https://x/?u=http://foo:8080/a%2Fb?c=d"),
            ("https://foo/a", {}, "https://x/?u=https://foo/a"),
            ("http://foo/a", {"X-Forwarded-Proto": ["https"]}, "https://x/?u=http://foo/a"),
        ):
            self.assertRedirect(self.serve(handler, recorder, url, headers=headers, trustForwarded=True), expected, 302, url)

    def test_locationIsGoURLString(self) -> None:
        """
        The Location is the rewritten URL as Go parses and writes it back: lower-cased scheme, escaped path, kept query.
        """
        for replacement, location in (
            ("HTTPS://Example.com/a b", "https://Example.com/a%20b"),
            ("https://example.com/é?q=é", "https://example.com/%C3%A9?q=é"),
            ("/relative/path", "/relative/path"),
            ("https://example.com/p#frag ment", "https://example.com/p#frag%20ment"),
            ("http:/x", "http:/x"),
        ):
            handler, recorder = self.build(r"^http://foo/$", replacement)
            answer, _ = self.serve(handler, recorder, "http://foo/")
            self.assertEqual(answer[1][b"location"], [location.encode()], replacement)

    def test_unparsableReplacement(self) -> None:
        """
        A rewritten URL Go's url.Parse refuses is answered 502 Bad Gateway.
        """
        for replacement in ("http://h:abc/", "http://[::1/", "http://a b/", ":nope", "http://h/%zz", "https://::1/x", "http://[foo]/"):
            handler, recorder = self.build(r"^http://foo/$", replacement)
            self.assertBadGateway(self.serve(handler, recorder, "http://foo/"), replacement)

    def test_unchangedURLPasses(self) -> None:
        """
        A match whose replacement leaves the URL as it was lets the request through, with Go's re-parsed path.
        """
        recorder = Recorder()
        add = buildAddPrefix(None, info("addPrefix", AddPrefix(prefix="/v2")), recorder, ())
        redirect = buildRedirectRegex(None, info("redirectRegex", RedirectRegex(regex="^(.*)$", replacement="$1")), add, ())
        strip = buildStripPrefix(None, info("stripPrefix", StripPrefix(prefixes=("/api",))), redirect, ())
        passed = self.assertPassed(self.serve(strip, recorder, "http://foo/api?x=1"), "unchanged")
        # Go's req.URL is re-parsed from .../?x=1, so the emptied path is / again.
        self.assertEqual((passed["forwardPath"], passed["rawQuery"]), ("/v2/", "x=1"))

    def test_goExpansion(self) -> None:
        """
        The replacement expands as Go's: named groups, $$ and an unknown $name that expands to nothing.
        """
        handler, recorder = self.build(r"^http://(?P<host>[^/]+)/(?P<path>.*)$", "https://${host}.example/$path$$$nope")
        self.assertRedirect(self.serve(handler, recorder, "http://foo/a/b"), "https://foo.example/a/b$", 302, "named")

    def test_emptyRegexNeverRedirects(self) -> None:
        """
        The default empty regex matches everywhere but replaces with nothing, so the request passes.
        """
        handler, recorder = self.build("", "")
        self.assertPassed(self.serve(handler, recorder, "http://foo/a"), "empty")

    def test_invalidRegex(self) -> None:
        """
        A regex Go cannot compile makes the build fail.
        """
        self.assertRaises(BuildError, self.build, "^(.*", "$1")

    def test_registry(self) -> None:
        """
        The middleware registry resolves redirectRegex to this module's builder.
        """
        self.assertIs(_resolve("redirectRegex"), buildRedirectRegex)


class GoURLTests(SynchronousTestCase):
    def test_parseAndString(self) -> None:
        """
        Go's url.Parse then URL.String rewrites URLs as Go does.
        """
        table = [
            ("https://foobar.com:443", "https://foobar.com:443"),
            ("HTTP://Foo/a b?c d#e f", "http://Foo/a%20b?c d#e%20f"),
            ("http://h/p?", "http://h/p?"),
            ("http://h/a%2Fb", "http://h/a%2Fb"),
            ("http://u%40x:p@h/", "http://u%40x:p@h/"),
            ("mailto:x@y", "mailto:x@y"),
            ("/a:b", "/a:b"),
            ("http://[fe80::1%25en0]:8080/", "http://[fe80::1%25en0]:8080/"),
            ("http://h/#!()*'", "http://h/#!()*'"),
            ("http://h/#a'b c", "http://h/#a%27b%20c"),
            ("a:b/c", "a:b/c"),
        ]
        for raw, expected in table:
            self.assertEqual(decode(parseGoURL(encode(raw)).string()), expected, raw)

    def test_parseErrors(self) -> None:
        """
        Go's url.Parse refuses bad escapes, bad ports, colons in host names, non-IPv6 brackets and control characters.
        """
        for raw in ("http://192.168.0.%31/", "http://h:8a/", "http://h:80:80/", "http://::1/", "http://[foo]/", "http://a[::1]/", "1a:b", "http://h/\x7f", ":x", "http://h/%"):
            self.assertRaises(GoURLError, parseGoURL, encode(raw))


class RedirectEntryPointTests(TestCase):
    @defer.inlineCallbacks
    def test_throughEntryPoint(self):
        """
        Through a real entrypoint, redirectScheme answers 302 with the https Location and never reaches the backend, and redirectRegex lets an unmatched request through.
        """
        listening, echo = startBackend("b")
        self.addCleanup(listening.stopListening)
        static = makeStatic()
        watcher = Watcher(reactor, static, reactor=reactor)
        dynamic = {
            "http": {
                "routers": {
                    "r": {"rule": "Host(`example.com`)", "service": "s", "middlewares": ["https"]},
                    "o": {"rule": "Host(`other.example`)", "service": "s", "middlewares": ["moved"]},
                },
                "middlewares": {
                    "https": {"redirectScheme": {"scheme": "https", "permanent": True}},
                    "moved": {"redirectRegex": {"regex": "^http://other\\.example/old/(.*)", "replacement": "http://new.example/${1}"}},
                },
                "services": {
                    "s": {"loadBalancer": {"servers": [{"url": f"http://127.0.0.1:{listening.getHost().port}"}]}}
                },
            }
        }
        watcher.update(ProviderUpdate("file", decodeDynamic(dynamic)))
        ep = EntryPointService("web", static.entryPoints["web"], reactor, watcher.runtime)
        watcher.addListener(ep.swap)
        ep.startService()
        self.addCleanup(ep.stopService)
        self.addCleanup(watcher.stop)
        client = Client()
        self.addCleanup(client.close)
        base = f"http://127.0.0.1:{ep.port}"
        response, body = yield client.get(base + "/a%2Fb?x=1", host="example.com:8000")
        self.assertEqual((response.code, body), (301, b"Moved Permanently"))
        self.assertEqual(response.headers.getRawHeaders(b"location"), [b"https://example.com/a%2Fb?x=1"])
        response, body = yield client.get(base + "/x", host="example.com", method=b"POST")
        self.assertEqual((response.code, response.headers.getRawHeaders(b"location")), (308, [b"https://example.com/x"]))
        self.assertEqual(echo.requests, [])
        response, body = yield client.get(base + "/old/p?q", host="other.example")
        self.assertEqual((response.code, response.headers.getRawHeaders(b"location")), (302, [b"http://new.example/p?q"]))
        response, body = yield client.get(base + "/kept", host="other.example")
        self.assertEqual(response.code, 200)
        self.assertEqual(json.loads(body)["uri"], "/kept")
