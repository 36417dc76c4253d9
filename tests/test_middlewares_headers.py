"""
Tests for L{relayd.middlewares.headers}: custom headers, CORS and the security
headers, with the facts of Traefik's C{pkg/middlewares/headers} test tables and
of the unrolled/secure behaviour Traefik relies on.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from relayd.config.dynamic import decodeDynamic
from relayd.config.errors import ConfigError
from relayd.config.middlewares import Headers, HTTPMiddleware
from relayd.config.schema import decode
from relayd.entrypoints import EntryPointService, RequestContext
from relayd.proxy.server import HTTPRequest as RelaydRequest
from relayd.middlewares import buildMiddleware
from relayd.middlewares.headers import CustomHeaders, SecureHeaders, buildHeaders
from relayd.proxy.responses import plainResponse
from relayd.providers.base import ProviderUpdate
from relayd.runtime.build import BuildError, ObjectInfo
from relayd.watcher import Watcher
from tests.helpers import Client, memoryRequest, startBackend
from tests.test_entrypoints import makeStatic, rawRequest


# Helpers


class Backend:
    """
    A next handler that records the request headers it got and answers with
    C{code}, the response headers C{headers} (name, value pairs) and C{body}.
    """

    def __init__(self, code: int = 200, headers: tuple[tuple[str, str], ...] = (), body: bytes = b"") -> None:
        self.code = code
        self.headers = headers
        self.body = body
        self.seen: list[dict[str, list[str]]] = []
        self.hosts: list[bytes] = []

    def handle(self, request: Any) -> None:
        self.seen.append(requestHeaders(request))
        for name, value in self.headers:
            request.responseHeaders.addRawHeader(name.encode(), value.encode())
        request.setResponseCode(self.code)
        if self.body:
            request.write(self.body)
        request.finish()


class ErrorBackend:
    """
    A next handler that answers with relayd's own 502.
    """

    def handle(self, request: Any) -> None:
        plainResponse(request, 502)


def headersMiddleware(**raw: Any) -> HTTPMiddleware:
    middleware, _ = decode(HTTPMiddleware, {"headers": raw})
    return middleware


def build(raw: dict[str, Any], next: Any = None) -> Any:
    """
    Build a headers middleware from a raw (file-provider) table.
    """
    info = ObjectInfo(name="h@file", kind="headers", config=headersMiddleware(**raw))
    return buildMiddleware(None, info, next if next is not None else Backend(), ())  # type: ignore[arg-type]


def makeRequest(
    method: bytes = b"GET",
    uri: bytes = b"/foo",
    headers: list[tuple[str, str]] | None = None,
    host: str | None = "example.org",
    secure: bool = False,
) -> RelaydRequest:
    fields: list[tuple[bytes, bytes]] = []
    if host is not None:
        fields.append((b"host", host.encode()))
    for name, value in headers or []:
        fields.append((name.encode(), value.encode()))
    request = memoryRequest(method, uri, fields, secure=secure)
    request.relayd = RequestContext(  # type: ignore[attr-defined]
        entryPoint="web",
        runtime=None,  # type: ignore[arg-type]
        clientIP="192.0.2.1",
        localPort=80,
        forwardPath=request.path.decode(),
        rawQuery="",
        trustForwarded=False,
    )
    return request


def requestHeaders(request: Any, drop: tuple[str, ...] = ("host",)) -> dict[str, list[str]]:
    return {
        name.decode().lower(): [v.decode("utf-8") for v in values]
        for name, values in request.requestHeaders.getAllRawHeaders()
        if name.decode().lower() not in drop
    }


def response(request: Any) -> tuple[int, dict[str, list[str]], bytes]:
    """
    The status, headers (lower-case names; Twisted's chunked framing left
    out) and de-chunked body written to C{request}'s transport.
    """
    data = request.testTransport.written.getvalue()
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8").split("\r\n")
    code = int(lines[0].split(" ")[1])
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.lower(), []).append(value.strip())
    # Written by the server for every answer: not what these tests look at.
    headers.pop("date", None)
    if headers.get("content-length") == ["0"]:
        del headers["content-length"]
    if headers.pop("transfer-encoding", None) == ["chunked"]:
        body = b""
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            length = int(size, 16)
            body += rest[:length]
            rest = rest[length + 2 :]
    else:
        body = rest
    return code, headers, body


def serve(handler: Any, **kwargs: Any) -> tuple[int, dict[str, list[str]], bytes]:
    request = makeRequest(**kwargs)
    handler.handle(request)
    return response(request)


def lower(expected: dict[str, list[str]]) -> dict[str, list[str]]:
    """
    Expected headers as L{response} reports them (an empty body's
    Content-Length, which the server writes anyway, left out).
    """
    return {
        name.lower(): values
        for name, values in expected.items()
        if not (name.lower() == "content-length" and values == ["0"])
    }


# Tests


class BuildTests(SynchronousTestCase):
    def test_withoutOptions(self) -> None:
        """
        A headers middleware with nothing configured cannot be built (TestNew_withoutOptions).
        """
        info = ObjectInfo(name="h@file", kind="headers", config=HTTPMiddleware(headers=Headers()))
        error = self.assertRaises(BuildError, buildHeaders, None, info, Backend(), ())
        self.assertEqual(str(error), "headers configuration not valid")

    def test_stsSecondsZero(self) -> None:
        """
        stsSeconds 0 alone is a valid configuration that sets no header (TestNew_withSTSSecondsZero).
        """
        handler = build({"stsSeconds": 0})
        self.assertEqual(serve(handler, secure=True), (200, {}, b""))

    def test_malformedOriginRegexp(self) -> None:
        """
        An origin regexp that does not compile is refused, at decoding and at build time.
        """
        with self.assertRaises(ConfigError):
            headersMiddleware(accessControlAllowOriginListRegex=["a(b"])
        config = HTTPMiddleware(headers=Headers(accessControlAllowOriginListRegex=("a(b",)))
        info = ObjectInfo(name="h@file", kind="headers", config=config)
        error = self.assertRaises(BuildError, buildHeaders, None, info, Backend(), ())
        self.assertIn("error occurred during origin parsing", str(error))

    def test_layers(self) -> None:
        """
        Each layer exists only when configured, the custom/CORS layer outside the security one.
        """
        backend = Backend()
        custom = build({"customRequestHeaders": {"X-A": "1"}}, backend)
        self.assertIsInstance(custom, CustomHeaders)
        self.assertIs(custom.next, backend)
        cors = build({"addVaryHeader": True}, backend)
        self.assertIsInstance(cors, CustomHeaders)
        self.assertIs(cors.next, backend)
        secure = build({"frameDeny": True}, backend)
        self.assertIsInstance(secure, SecureHeaders)
        self.assertIs(secure.next, backend)
        both = build({"frameDeny": True, "customResponseHeaders": {"X-A": "1"}}, backend)
        self.assertIsInstance(both, CustomHeaders)
        self.assertIsInstance(both.next, SecureHeaders)
        self.assertIs(both.next.next, backend)

    def test_registry(self) -> None:
        """
        The middleware registry resolves the headers kind to this module's builder.
        """
        handler = build({"customResponseHeaders": {"X-A": "1"}})
        self.assertIsInstance(handler, CustomHeaders)


class CustomRequestHeadersTests(SynchronousTestCase):
    # TestNewHeader_customRequestHeader: the request carries Foo: bar.
    TABLE = [
        (
            "adds a header",
            {"X-Custom-Request-Header": "test_request"},
            {"foo": ["bar"], "x-custom-request-header": ["test_request"]},
        ),
        (
            "delete a header",
            {"X-Forwarded-For": "", "X-Custom-Request-Header": "", "Foo": ""},
            {},
        ),
        (
            "override a header",
            {"Foo": "test"},
            {"foo": ["test"]},
        ),
    ]

    def test_table(self) -> None:
        """
        Custom request headers are added, overridden, or removed by an empty value.
        """
        for desc, config, expected in self.TABLE:
            backend = Backend()
            handler = build({"customRequestHeaders": config}, backend)
            code, _, _ = serve(handler, headers=[("Foo", "bar")])
            self.assertEqual(code, 200, desc)
            self.assertEqual(backend.seen, [expected], desc)

    def test_emptyXForwardedForOmitsIt(self) -> None:
        """
        An empty X-Forwarded-For (spelt canonically) removes it and marks the request to send none.
        """
        request = makeRequest(headers=[("X-Forwarded-For", "203.0.113.9")])
        build({"customRequestHeaders": {"X-Forwarded-For": ""}}).handle(request)
        self.assertFalse(request.requestHeaders.hasHeader(b"x-forwarded-for"))
        self.assertTrue(request.relaydOmitXForwardedFor)

    def test_emptyOtherSpellingOnlyDeletes(self) -> None:
        """
        An empty x-forwarded-for not spelt canonically only deletes the header, as Go's Header.Del does.
        """
        request = makeRequest(headers=[("X-Forwarded-For", "203.0.113.9")])
        build({"customRequestHeaders": {"x-forwarded-for": ""}}).handle(request)
        self.assertFalse(request.requestHeaders.hasHeader(b"x-forwarded-for"))
        self.assertFalse(getattr(request, "relaydOmitXForwardedFor", False))

    # TestNewHeader_customRequestHeader_Host
    HOST_TABLE = [
        ("standard Host header", {}, "example.org"),
        ("custom Host header", {"Host": "example.com"}, "example.com"),
        ("any case of Host", {"hOsT": "example.net"}, "example.net"),
        ("an empty Host changes nothing", {"Host": ""}, "example.org"),
    ]

    def test_host(self) -> None:
        """
        A Host custom request header replaces the request host; an empty one leaves it.
        """
        for desc, config, expected in self.HOST_TABLE:
            backend = Backend()
            raw: dict[str, Any] = {"customRequestHeaders": config} if config else {"addVaryHeader": True}
            request = makeRequest(uri=b"/foo")
            build(raw, backend).handle(request)
            self.assertEqual(request.getHeader(b"host"), expected.encode(), desc)
            self.assertEqual(request.requestHeaders.getRawHeaders(b"host"), [expected.encode()], desc)

    def test_customHostSeenByAllowedHosts(self) -> None:
        """
        The security layer checks allowedHosts against the host the custom headers set.
        """
        handler = build({"customRequestHeaders": {"Host": "foo.com"}, "allowedHosts": ["foo.com"]})
        self.assertEqual(serve(handler, host="other.com")[0], 200)

    def test_replacesEveryValue(self) -> None:
        """
        A set request header replaces all the values the client sent.
        """
        backend = Backend()
        handler = build({"customRequestHeaders": {"Foo": "one"}}, backend)
        serve(handler, headers=[("Foo", "a"), ("Foo", "b")])
        self.assertEqual(backend.seen[0]["foo"], ["one"])

    def test_notWithoutCustomHeaders(self) -> None:
        """
        A CORS-only middleware leaves request headers untouched.
        """
        backend = Backend()
        handler = build({"accessControlAllowOriginList": ["*"]}, backend)
        serve(handler, headers=[("Foo", "bar")])
        self.assertEqual(backend.seen, [{"foo": ["bar"]}])


class CustomResponseHeadersTests(SynchronousTestCase):
    # TestNewHeader_customResponseHeaders: the next handler sets Foo: bar.
    TABLE = [
        (
            "Test Simple Response",
            {"Testing": "foo", "Testing2": "bar"},
            {"Foo": ["bar"], "Testing": ["foo"], "Testing2": ["bar"]},
        ),
        ("empty Custom Header", {"Testing": "foo", "Testing2": ""}, {"Foo": ["bar"], "Testing": ["foo"]}),
        ("Deleting Custom Header", {"Testing": "foo", "Foo": ""}, {"Testing": ["foo"]}),
    ]

    def test_table(self) -> None:
        """
        Custom response headers are set on the answer, and an empty value removes the upstream's header.
        """
        for desc, config, expected in self.TABLE:
            handler = build({"customResponseHeaders": config}, Backend(headers=(("Foo", "bar"),)))
            code, headers, _ = serve(handler)
            self.assertEqual((code, headers), (200, lower(expected)), desc)

    def test_requestAndResponse(self) -> None:
        """
        Request and response custom headers apply together (TestNew_customHeaders).
        """
        backend = Backend()
        handler = build(
            {
                "customRequestHeaders": {"X-Custom-Request-Header": "test_request"},
                "customResponseHeaders": {"X-Custom-Response-Header": "test_response"},
            },
            backend,
        )
        code, headers, _ = serve(handler)
        self.assertEqual(code, 200)
        self.assertEqual(backend.seen[0]["x-custom-request-header"], ["test_request"])
        self.assertEqual(headers["x-custom-response-header"], ["test_response"])

    def test_overridesEveryUpstreamValue(self) -> None:
        """
        A custom response header replaces every value the upstream gave it.
        """
        handler = build({"customResponseHeaders": {"Foo": "mine"}}, Backend(headers=(("Foo", "a"), ("Foo", "b"))))
        self.assertEqual(serve(handler)[1]["foo"], ["mine"])

    def test_onRelaydsOwnAnswers(self) -> None:
        """
        Custom response headers also apply to relayd's own error answers, body untouched.
        """
        handler = build({"customResponseHeaders": {"X-Custom": "1", "X-Content-Type-Options": ""}}, ErrorBackend())
        code, headers, body = serve(handler)
        self.assertEqual((code, body), (502, b"Bad Gateway\n"))
        self.assertEqual(headers["x-custom"], ["1"])
        self.assertNotIn("x-content-type-options", headers)

    def test_bodyKept(self) -> None:
        """
        Setting response headers does not change the status or body.
        """
        handler = build({"customResponseHeaders": {"X-A": "1"}}, Backend(code=404, body=b"nothing here"))
        code, headers, body = serve(handler)
        self.assertEqual((code, headers, body), (404, {"x-a": ["1"]}, b"nothing here"))


PREFLIGHT_HEADERS = [
    ("Access-Control-Request-Headers", "origin"),
    ("Access-Control-Request-Method", "GET"),
    ("Access-Control-Request-Method", "OPTIONS"),
    ("Origin", "https://foo.bar.org"),
]


class CorsPreflightTests(SynchronousTestCase):
    # TestNewHeader_CORSPreflights
    TABLE = [
        (
            "Test Simple Preflight",
            {
                "accessControlAllowMethods": ["GET", "OPTIONS", "PUT"],
                "accessControlAllowOriginList": ["https://foo.bar.org"],
                "accessControlMaxAge": 600,
            },
            PREFLIGHT_HEADERS,
            {
                "Content-Length": ["0"],
                "Access-Control-Allow-Origin": ["https://foo.bar.org"],
                "Access-Control-Max-Age": ["600"],
                "Access-Control-Allow-Methods": ["GET,OPTIONS,PUT"],
            },
        ),
        (
            "Wildcard origin Preflight",
            {
                "accessControlAllowMethods": ["GET", "OPTIONS", "PUT"],
                "accessControlAllowOriginList": ["*"],
                "accessControlMaxAge": 600,
            },
            PREFLIGHT_HEADERS,
            {
                "Content-Length": ["0"],
                "Access-Control-Allow-Origin": ["*"],
                "Access-Control-Max-Age": ["600"],
                "Access-Control-Allow-Methods": ["GET,OPTIONS,PUT"],
            },
        ),
        (
            "Allow Credentials Preflight",
            {
                "accessControlAllowMethods": ["GET", "OPTIONS", "PUT"],
                "accessControlAllowOriginList": ["*"],
                "accessControlAllowCredentials": True,
                "accessControlMaxAge": 600,
            },
            PREFLIGHT_HEADERS,
            {
                "Content-Length": ["0"],
                "Access-Control-Allow-Origin": ["https://foo.bar.org"],
                "Access-Control-Max-Age": ["600"],
                "Access-Control-Allow-Methods": ["GET,OPTIONS,PUT"],
                "Access-Control-Allow-Credentials": ["true"],
            },
        ),
        (
            "Allow Headers Preflight",
            {
                "accessControlAllowMethods": ["GET", "OPTIONS", "PUT"],
                "accessControlAllowOriginList": ["*"],
                "accessControlAllowHeaders": ["origin", "X-Forwarded-For"],
                "accessControlMaxAge": 600,
            },
            PREFLIGHT_HEADERS,
            {
                "Content-Length": ["0"],
                "Access-Control-Allow-Origin": ["*"],
                "Access-Control-Max-Age": ["600"],
                "Access-Control-Allow-Methods": ["GET,OPTIONS,PUT"],
                "Access-Control-Allow-Headers": ["origin,X-Forwarded-For"],
            },
        ),
        (
            "No Request Headers Preflight",
            {
                "accessControlAllowMethods": ["GET", "OPTIONS", "PUT"],
                "accessControlAllowOriginList": ["*"],
                "accessControlAllowHeaders": ["origin", "X-Forwarded-For"],
                "accessControlMaxAge": 600,
            },
            PREFLIGHT_HEADERS[1:],
            {
                "Content-Length": ["0"],
                "Access-Control-Allow-Origin": ["*"],
                "Access-Control-Max-Age": ["600"],
                "Access-Control-Allow-Methods": ["GET,OPTIONS,PUT"],
                "Access-Control-Allow-Headers": ["origin,X-Forwarded-For"],
            },
        ),
        (
            "Nil MaxAge Preflight",
            {
                "accessControlAllowMethods": ["GET", "OPTIONS", "PUT"],
                "accessControlAllowOriginList": ["*"],
            },
            PREFLIGHT_HEADERS[1:],
            {
                "Content-Length": ["0"],
                "Access-Control-Allow-Origin": ["*"],
                "Access-Control-Allow-Methods": ["GET,OPTIONS,PUT"],
            },
        ),
        # Beyond Traefik's table, from the same code:
        (
            "wildcard headers and methods with credentials echo the request's",
            {
                "accessControlAllowMethods": ["*"],
                "accessControlAllowHeaders": ["*"],
                "accessControlAllowCredentials": True,
            },
            [("Access-Control-Request-Headers", "x-a, x-b")] + PREFLIGHT_HEADERS[1:],
            {
                "Content-Length": ["0"],
                "Access-Control-Allow-Credentials": ["true"],
                "Access-Control-Allow-Headers": ["x-a, x-b"],
                "Access-Control-Allow-Methods": ["GET"],
            },
        ),
        (
            "wildcard headers with credentials and no requested headers sends none",
            {"accessControlAllowHeaders": ["*"], "accessControlAllowCredentials": True},
            PREFLIGHT_HEADERS[1:],
            {"Content-Length": ["0"], "Access-Control-Allow-Credentials": ["true"]},
        ),
        (
            "wildcard headers and methods without credentials are sent as configured",
            {"accessControlAllowMethods": ["*"], "accessControlAllowHeaders": ["*"]},
            PREFLIGHT_HEADERS,
            {
                "Content-Length": ["0"],
                "Access-Control-Allow-Headers": ["*"],
                "Access-Control-Allow-Methods": ["*"],
            },
        ),
        (
            "expose headers are sent on a preflight",
            {"accessControlExposeHeaders": ["X-A", "X-B"]},
            PREFLIGHT_HEADERS,
            {"Content-Length": ["0"], "Access-Control-Expose-Headers": ["X-A,X-B"]},
        ),
        (
            "wildcard expose headers with credentials are not sent",
            {"accessControlExposeHeaders": ["*"], "accessControlAllowCredentials": True},
            PREFLIGHT_HEADERS,
            {"Content-Length": ["0"], "Access-Control-Allow-Credentials": ["true"]},
        ),
        (
            "an origin not allowed gets no Allow-Origin but the preflight is still answered",
            {"accessControlAllowOriginList": ["https://other.org"], "accessControlMaxAge": 0},
            PREFLIGHT_HEADERS,
            {"Content-Length": ["0"], "Access-Control-Max-Age": ["0"]},
        ),
        (
            "a regexp origin is echoed",
            {"accessControlAllowOriginListRegex": ["bar\\.org$"]},
            PREFLIGHT_HEADERS,
            {"Content-Length": ["0"], "Access-Control-Allow-Origin": ["https://foo.bar.org"]},
        ),
        (
            "the first Origin value is the one matched",
            {"accessControlAllowOriginList": ["https://first.org"]},
            [
                ("Access-Control-Request-Method", "GET"),
                ("Origin", "https://first.org"),
                ("Origin", "https://second.org"),
            ],
            {"Content-Length": ["0"], "Access-Control-Allow-Origin": ["https://first.org"]},
        ),
        (
            "addVaryHeader does not add Vary to a preflight",
            {"accessControlAllowOriginList": ["https://foo.bar.org"], "addVaryHeader": True},
            PREFLIGHT_HEADERS,
            {"Content-Length": ["0"], "Access-Control-Allow-Origin": ["https://foo.bar.org"]},
        ),
    ]

    def test_table(self) -> None:
        """
        A CORS preflight is answered 200 with an empty body and exactly the Access-Control-* headers.
        """
        for desc, config, headers, expected in self.TABLE:
            backend = Backend()
            code, got, body = serve(build(config, backend), method=b"OPTIONS", headers=headers, host=None)
            self.assertEqual((code, got, body), (200, lower(expected), b""), desc)
            self.assertEqual(backend.seen, [], desc)

    # When a request is not a preflight: it reaches the next handler.
    NOT_PREFLIGHT = [
        ("a GET", b"GET", PREFLIGHT_HEADERS),
        ("no Origin", b"OPTIONS", [("Access-Control-Request-Method", "GET")]),
        ("no Access-Control-Request-Method", b"OPTIONS", [("Origin", "https://foo.bar.org")]),
        ("an empty Access-Control-Request-Method", b"OPTIONS", [("Access-Control-Request-Method", ""), ("Origin", "x")]),
        ("a lower-case method", b"options", PREFLIGHT_HEADERS),
    ]

    def test_notPreflight(self) -> None:
        """
        Only OPTIONS with non-empty Origin and Access-Control-Request-Method is a preflight.
        """
        for desc, method, headers in self.NOT_PREFLIGHT:
            backend = Backend(code=204)
            code, _, _ = serve(build({"accessControlAllowOriginList": ["*"]}, backend), method=method, headers=headers)
            self.assertEqual((code, len(backend.seen)), (204, 1), desc)

    def test_notHijackedWithoutCors(self) -> None:
        """
        Without CORS settings a preflight reaches the next handler (Traefik's "Not Hijacked by CORS" case).
        """
        backend = Backend()
        code, headers, _ = serve(
            build({"customRequestHeaders": {"foo": "bar"}}, backend), method=b"OPTIONS", headers=PREFLIGHT_HEADERS
        )
        self.assertEqual((code, headers, len(backend.seen)), (200, {}, 1))
        self.assertEqual(backend.seen[0]["foo"], ["bar"])

    def test_preflightBypassesOtherSettings(self) -> None:
        """
        A preflight is answered before custom headers, allowedHosts and the security headers apply.
        """
        backend = Backend()
        handler = build(
            {
                "accessControlAllowOriginList": ["*"],
                "customRequestHeaders": {"X-A": "1"},
                "customResponseHeaders": {"X-B": "2"},
                "allowedHosts": ["allowed.org"],
                "frameDeny": True,
            },
            backend,
        )
        request = makeRequest(method=b"OPTIONS", headers=PREFLIGHT_HEADERS, host="not-allowed.org")
        handler.handle(request)
        code, headers, _ = response(request)
        self.assertEqual((code, headers), (200, {"access-control-allow-origin": ["*"]}))
        self.assertFalse(request.requestHeaders.hasHeader(b"x-a"))
        self.assertEqual(backend.seen, [])

    def test_outerHooksStillApply(self) -> None:
        """
        A preflight answer still passes through the response hooks of outer middlewares.
        """
        inner = build({"accessControlAllowOriginList": ["*"]})
        outer = build({"customResponseHeaders": {"X-Outer": "1"}}, inner)
        code, headers, _ = serve(outer, method=b"OPTIONS", headers=PREFLIGHT_HEADERS)
        self.assertEqual((code, headers["x-outer"]), (200, ["1"]))


class CorsResponseTests(SynchronousTestCase):
    # TestNewHeader_CORSResponses: (desc, upstream headers, config, request headers, expected)
    TABLE = [
        (
            "Test Simple Request",
            (),
            {"accessControlAllowOriginList": ["https://foo.bar.org"]},
            [("Origin", "https://foo.bar.org")],
            {"Access-Control-Allow-Origin": ["https://foo.bar.org"]},
        ),
        (
            "Wildcard origin Request",
            (),
            {"accessControlAllowOriginList": ["*"]},
            [("Origin", "https://foo.bar.org")],
            {"Access-Control-Allow-Origin": ["*"]},
        ),
        (
            "Regexp Origin Request",
            (),
            {"accessControlAllowOriginListRegex": ["^https?://([a-z]+)\\.bar\\.org$"]},
            [("Origin", "https://foo.bar.org")],
            {"Access-Control-Allow-Origin": ["https://foo.bar.org"]},
        ),
        (
            "Partial Regexp Origin Request",
            (),
            {"accessControlAllowOriginListRegex": ["([a-z]+)\\.bar"]},
            [("Origin", "https://foo.bar.org")],
            {"Access-Control-Allow-Origin": ["https://foo.bar.org"]},
        ),
        (
            "Regexp Origin Request without matching",
            (),
            {"accessControlAllowOriginListRegex": ["([a-z]+)\\.bar\\.org"]},
            [("Origin", "https://bar.org")],
            {},
        ),
        (
            "Empty origin Request",
            (),
            {"accessControlAllowOriginList": ["https://foo.bar.org"]},
            [],
            {},
        ),
        (
            "Allow Credentials Request",
            (),
            {"accessControlAllowOriginList": ["*"], "accessControlAllowCredentials": True},
            [("Origin", "https://foo.bar.org")],
            {"Access-Control-Allow-Origin": ["https://foo.bar.org"], "Access-Control-Allow-Credentials": ["true"]},
        ),
        (
            "Expose Headers Request",
            (),
            {"accessControlAllowOriginList": ["*"], "accessControlExposeHeaders": ["origin", "X-Forwarded-For"]},
            [("Origin", "https://foo.bar.org")],
            {"Access-Control-Allow-Origin": ["*"], "Access-Control-Expose-Headers": ["origin,X-Forwarded-For"]},
        ),
        (
            "Test Simple Request with Vary Headers",
            (),
            {"accessControlAllowOriginList": ["https://foo.bar.org"], "addVaryHeader": True},
            [("Origin", "https://foo.bar.org")],
            {"Access-Control-Allow-Origin": ["https://foo.bar.org"], "Vary": ["Origin"]},
        ),
        (
            "Test Simple Request with Vary Headers and non-empty response",
            (("Vary", "Testing"),),
            {"accessControlAllowOriginList": ["https://foo.bar.org"], "addVaryHeader": True},
            [("Origin", "https://foo.bar.org")],
            {"Access-Control-Allow-Origin": ["https://foo.bar.org"], "Vary": ["Testing,Origin"]},
        ),
        (
            "Test Simple Request with Vary Headers and existing vary:origin response",
            (("Vary", "Origin"),),
            {"accessControlAllowOriginList": ["https://foo.bar.org"], "addVaryHeader": True},
            [("Origin", "https://foo.bar.org")],
            {"Access-Control-Allow-Origin": ["https://foo.bar.org"], "Vary": ["Origin"]},
        ),
        (
            "Test Simple Request with non-empty response: set ACAO",
            (("Access-Control-Allow-Origin", "http://foo.bar.org"),),
            {"accessControlAllowOriginList": ["*"]},
            [("Origin", "https://foo.bar.org")],
            {"Access-Control-Allow-Origin": ["*"]},
        ),
        (
            "Test Simple Request with non-empty response: add ACAO",
            (("Access-Control-Allow-Origin", "http://foo.bar.org"), ("Access-Control-Allow-Origin", "http://x.org")),
            {"accessControlAllowOriginList": ["*"]},
            [("Origin", "https://foo.bar.org")],
            {"Access-Control-Allow-Origin": ["*"]},
        ),
        # Beyond Traefik's table, from the same code:
        (
            "a wildcard list allows a request without Origin",
            (),
            {"accessControlAllowOriginList": ["*"]},
            [],
            {"Access-Control-Allow-Origin": ["*"]},
        ),
        (
            "credentials are announced whatever the origin",
            (),
            {"accessControlAllowOriginList": ["https://other.org"], "accessControlAllowCredentials": True},
            [("Origin", "https://foo.bar.org")],
            {"Access-Control-Allow-Credentials": ["true"]},
        ),
        (
            "expose headers are sent whatever the origin",
            (),
            {"accessControlExposeHeaders": ["X-A"]},
            [],
            {"Access-Control-Expose-Headers": ["X-A"]},
        ),
        (
            "wildcard expose headers with credentials are not sent",
            (),
            {"accessControlExposeHeaders": ["*", "X-A"], "accessControlAllowCredentials": True},
            [],
            {"Access-Control-Allow-Credentials": ["true"]},
        ),
        (
            "Vary is added without an Origin and with a wildcard list",
            (),
            {"accessControlAllowOriginList": ["*"], "addVaryHeader": True},
            [],
            {"Access-Control-Allow-Origin": ["*"], "Vary": ["Origin"]},
        ),
        (
            "Vary joins the first upstream value only",
            (("Vary", "Accept"), ("Vary", "Cookie")),
            {"addVaryHeader": True},
            [],
            {"Vary": ["Accept,Origin"]},
        ),
        (
            "Vary Origin kept only when it is exactly the first value",
            (("Vary", "origin"),),
            {"addVaryHeader": True},
            [],
            {"Vary": ["origin,Origin"]},
        ),
        (
            "the list is searched in order: a wildcard before the origin wins",
            (),
            {"accessControlAllowOriginList": ["*", "https://foo.bar.org"]},
            [("Origin", "https://foo.bar.org")],
            {"Access-Control-Allow-Origin": ["*"]},
        ),
        (
            "an exact origin is matched case-sensitively",
            (),
            {"accessControlAllowOriginList": ["https://foo.bar.org"]},
            [("Origin", "https://FOO.bar.org")],
            {},
        ),
        (
            "the list is tried before the regexps",
            (),
            {"accessControlAllowOriginList": ["https://foo.bar.org"], "accessControlAllowOriginListRegex": ["foo"]},
            [("Origin", "https://foo.bar.org")],
            {"Access-Control-Allow-Origin": ["https://foo.bar.org"]},
        ),
        (
            "a custom Allow-Origin gives way to the CORS one",
            (),
            {"accessControlAllowOriginList": ["*"], "customResponseHeaders": {"Access-Control-Allow-Origin": "x"}},
            [("Origin", "https://foo.bar.org")],
            {"Access-Control-Allow-Origin": ["*"]},
        ),
        (
            "a custom Vary is extended by addVaryHeader",
            (),
            {"addVaryHeader": True, "customResponseHeaders": {"Vary": "Accept"}},
            [],
            {"Vary": ["Accept,Origin"]},
        ),
    ]

    def test_table(self) -> None:
        """
        Normal responses get Access-Control-* and Vary headers by Traefik's rules.
        """
        for desc, upstream, config, headers, expected in self.TABLE:
            code, got, _ = serve(build(config, Backend(headers=upstream)), headers=headers)
            self.assertEqual((code, got), (200, lower(expected)), desc)

    def test_notDefinedOrigin(self) -> None:
        """
        A middleware without CORS settings adds no CORS header (Not Defined origin Request).
        """
        code, headers, _ = serve(build({"frameDeny": True}), headers=[("Origin", "https://foo.bar.org")])
        self.assertEqual((code, headers), (200, {"x-frame-options": ["DENY"]}))

    def test_credentialsWildcardWithoutOrigin(self) -> None:
        """
        With a wildcard list, credentials and no Origin, Traefik sends an empty Allow-Origin.
        """
        request = makeRequest()
        build({"accessControlAllowOriginList": ["*"], "accessControlAllowCredentials": True}).handle(request)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"access-control-allow-origin"), [b""])

    def test_onRelaydsOwnAnswers(self) -> None:
        """
        CORS response headers are set on relayd's own error answers too.
        """
        handler = build({"accessControlAllowOriginList": ["*"]}, ErrorBackend())
        code, headers, _ = serve(handler, headers=[("Origin", "https://a.org")])
        self.assertEqual((code, headers["access-control-allow-origin"]), (502, ["*"]))


class AllowedHostsTests(SynchronousTestCase):
    # TestNew_allowedHosts, with the allowed list ["foo.com", "bar.com"].
    TABLE = [
        ("Should accept the request when given a host that is in the list", "foo.com", 200),
        ("Should refuse the request when no host is given", None, 500),
        ("Should refuse the request when no matching host is given", "boo.com", 500),
        ("hosts compare case-insensitively", "FOO.com", 200),
        ("a port is part of the host", "foo.com:8080", 500),
    ]

    def test_table(self) -> None:
        """
        A request for a host not in allowedHosts is refused with 500.
        """
        for desc, host, expected in self.TABLE:
            backend = Backend()
            code, _, _ = serve(build({"allowedHosts": ["foo.com", "bar.com"]}, backend), host=host)
            self.assertEqual(code, expected, desc)
            self.assertEqual(len(backend.seen), 1 if expected == 200 else 0, desc)

    def test_badHostAnswer(self) -> None:
        """
        The refusal is Go's http.Error "Bad Host" text answer without the security headers.
        """
        code, headers, body = serve(build({"allowedHosts": ["foo.com"], "frameDeny": True}), host="boo.com")
        self.assertEqual((code, body), (500, b"Bad Host\n"))
        self.assertEqual(headers["content-type"], ["text/plain; charset=utf-8"])
        self.assertEqual(headers["x-content-type-options"], ["nosniff"])
        self.assertNotIn("x-frame-options", headers)

    def test_badHostGetsCustomHeaders(self) -> None:
        """
        The refusal still gets the custom response and CORS headers of the outer layer.
        """
        handler = build(
            {"allowedHosts": ["foo.com"], "customResponseHeaders": {"X-A": "1"}, "accessControlAllowOriginList": ["*"]}
        )
        code, headers, _ = serve(handler, host="boo.com")
        self.assertEqual((code, headers["x-a"], headers["access-control-allow-origin"]), (500, ["1"], ["*"]))

    # unrolled/secure: Test{Good,Bad}SingleAllowHostsProxyHeaders and friends.
    PROXY_TABLE = [
        (
            "the proxy header holds an allowed host",
            "example-internal",
            [("X-Proxy-Host", "www.example.com")],
            ["www.example.com"],
            200,
        ),
        (
            "the proxy header holds another host",
            "example-internal",
            [("X-Proxy-Host", "www.example.com")],
            ["sub.example.com"],
            500,
        ),
        (
            "an empty proxy header falls back to the host",
            "www.example.com",
            [("X-Proxy-Host", "")],
            ["www.example.com"],
            200,
        ),
        (
            "the first proxy header's first value counts",
            "x",
            [("X-Proxy-Host", "www.example.com"), ("X-Proxy-Host", "bad")],
            ["www.example.com"],
            200,
        ),
        (
            "the first non-empty listed header wins",
            "x",
            [("X-Other", "www.example.com"), ("X-Proxy-Host", "bad")],
            ["www.example.com"],
            500,
        ),
    ]

    def test_hostsProxyHeaders(self) -> None:
        """
        The first non-empty hostsProxyHeaders header stands for the host in the allowedHosts check.
        """
        for desc, host, headers, allowed, expected in self.PROXY_TABLE:
            handler = build({"allowedHosts": allowed, "hostsProxyHeaders": ["X-Proxy-Host", "X-Other"]})
            self.assertEqual(serve(handler, host=host, headers=headers)[0], expected, desc)

    def test_isDevelopment(self) -> None:
        """
        isDevelopment turns the allowedHosts check off (TestAllowHostsInDevMode).
        """
        handler = build({"allowedHosts": ["www.example.com"], "isDevelopment": True})
        self.assertEqual(serve(handler, host="www3.example.com")[0], 200)

    def test_absoluteFormTarget(self) -> None:
        """
        The host of an absolute-form target is the request host, as Go's r.Host.
        """
        handler = build({"allowedHosts": ["foo.com"]})
        self.assertEqual(serve(handler, uri=b"http://foo.com/x", host="boo.com")[0], 200)
        self.assertEqual(serve(handler, uri=b"http://boo.com/x", host="foo.com")[0], 500)


class SecureHeadersTests(SynchronousTestCase):
    # Test_newSecure_modifyResponse (plain HTTP request)
    TABLE = [
        ("PermissionsPolicy", {"permissionsPolicy": "microphone=(),"}, {"Permissions-Policy": ["microphone=(),"]}),
        ("STSSeconds", {"stsSeconds": 1, "forceSTSHeader": True}, {"Strict-Transport-Security": ["max-age=1"]}),
        (
            "STSSeconds and STSPreload",
            {"stsSeconds": 1, "forceSTSHeader": True, "stsPreload": True},
            {"Strict-Transport-Security": ["max-age=1; preload"]},
        ),
        ("CustomFrameOptionsValue", {"customFrameOptionsValue": "foo"}, {"X-Frame-Options": ["foo"]}),
        ("FrameDeny", {"frameDeny": True}, {"X-Frame-Options": ["DENY"]}),
        ("ContentTypeNosniff", {"contentTypeNosniff": True}, {"X-Content-Type-Options": ["nosniff"]}),
        # unrolled/secure's own tables
        ("CustomFrameValueWithDeny", {"frameDeny": True, "customFrameOptionsValue": "SAMEORIGIN"}, {"X-Frame-Options": ["SAMEORIGIN"]}),
        ("XSSProtection", {"browserXssFilter": True}, {"X-XSS-Protection": ["1; mode=block"]}),
        ("CustomXSSProtection", {"customBrowserXSSValue": "1; report=/x"}, {"X-XSS-Protection": ["1; report=/x"]}),
        ("BothXSSProtection", {"browserXssFilter": True, "customBrowserXSSValue": "0"}, {"X-XSS-Protection": ["0"]}),
        ("Csp", {"contentSecurityPolicy": "default-src 'self'"}, {"Content-Security-Policy": ["default-src 'self'"]}),
        (
            "CspReportOnly",
            {"contentSecurityPolicyReportOnly": "default-src 'self'"},
            {"Content-Security-Policy-Report-Only": ["default-src 'self'"]},
        ),
        ("Referrer", {"referrerPolicy": "same-origin"}, {"Referrer-Policy": ["same-origin"]}),
        ("StsHeaderWithNoSSL", {"stsSeconds": 315360000}, {}),
        ("StsHeaderWithNoSSLButWithForceAndIsDev", {"stsSeconds": 315360000, "forceSTSHeader": True, "isDevelopment": True}, {}),
        ("HPKPNonSSL", {"publicKey": 'pin-sha256="x"; max-age=5'}, {}),
        ("HPKP is not forced by forceSTSHeader", {"publicKey": "k", "forceSTSHeader": True, "stsSeconds": 1}, {"Strict-Transport-Security": ["max-age=1"]}),
        ("sslProxyHeaders alone sets nothing", {"sslProxyHeaders": {"X-Forwarded-Proto": "https"}}, {}),
        ("isDevelopment alone sets nothing", {"isDevelopment": True}, {}),
    ]

    def test_table(self) -> None:
        """
        Each security option sets its header on a plain HTTP answer, or none where HTTPS is required.
        """
        for desc, config, expected in self.TABLE:
            code, headers, _ = serve(build(config))
            self.assertEqual((code, headers), (200, lower(expected)), desc)

    # unrolled/secure's STS and HPKP tests: (desc, config, TLS?, request headers, expected)
    HTTPS_TABLE = [
        ("StsHeaderWithSSL", {"stsSeconds": 315360000}, True, [], {"Strict-Transport-Security": ["max-age=315360000"]}),
        ("StsHeaderInDevMode", {"stsSeconds": 315360000, "isDevelopment": True}, True, [], {}),
        (
            "StsHeaderWithSubdomains",
            {"stsSeconds": 315360000, "stsIncludeSubdomains": True},
            True,
            [],
            {"Strict-Transport-Security": ["max-age=315360000; includeSubDomains"]},
        ),
        (
            "StsHeaderWithPreload",
            {"stsSeconds": 315360000, "stsPreload": True},
            True,
            [],
            {"Strict-Transport-Security": ["max-age=315360000; preload"]},
        ),
        (
            "StsHeaderWithSubdomainsWithPreload",
            {"stsSeconds": 315360000, "stsIncludeSubdomains": True, "stsPreload": True},
            True,
            [],
            {"Strict-Transport-Security": ["max-age=315360000; includeSubDomains; preload"]},
        ),
        ("flags without stsSeconds set nothing", {"stsIncludeSubdomains": True, "stsPreload": True, "forceSTSHeader": True}, True, [], {}),
        ("HPKP", {"publicKey": 'pin-sha256="x"; max-age=5'}, True, [], {"Public-Key-Pins": ['pin-sha256="x"; max-age=5']}),
        ("HPKPInDevMode", {"publicKey": 'pin-sha256="x"', "isDevelopment": True}, True, [], {}),
        (
            "an SSL proxy header makes the request HTTPS",
            {"stsSeconds": 1, "sslProxyHeaders": {"X-Forwarded-Proto": "https"}},
            False,
            [("X-Forwarded-Proto", "https")],
            {"Strict-Transport-Security": ["max-age=1"]},
        ),
        (
            "an SSL proxy header with another value does not",
            {"stsSeconds": 1, "sslProxyHeaders": {"X-Forwarded-Proto": "https"}},
            False,
            [("X-Forwarded-Proto", "http")],
            {},
        ),
        (
            "an SSL proxy header compares its first value exactly",
            {"stsSeconds": 1, "sslProxyHeaders": {"X-Forwarded-Proto": "https"}},
            False,
            [("X-Forwarded-Proto", "HTTPS"), ("X-Forwarded-Proto", "https")],
            {},
        ),
        (
            "an empty SSL proxy header value matches a missing header",
            {"stsSeconds": 1, "sslProxyHeaders": {"X-Is-Https": ""}},
            False,
            [],
            {"Strict-Transport-Security": ["max-age=1"]},
        ),
        (
            "an SSL proxy header enables HPKP",
            {"publicKey": "k", "sslProxyHeaders": {"X-Forwarded-Ssl": "on"}},
            False,
            [("X-Forwarded-Ssl", "on")],
            {"Public-Key-Pins": ["k"]},
        ),
    ]

    def test_httpsTable(self) -> None:
        """
        Strict-Transport-Security and Public-Key-Pins follow HTTPS, isDevelopment and the SSL proxy headers.
        """
        for desc, config, secure, headers, expected in self.HTTPS_TABLE:
            code, got, _ = serve(build(config), secure=secure, headers=headers)
            self.assertEqual((code, got), (200, lower(expected)), desc)

    def test_httpsAbsoluteForm(self) -> None:
        """
        An https absolute-form target counts as HTTPS, as Go's URL scheme does.
        """
        handler = build({"stsSeconds": 5})
        headers = serve(handler, uri=b"HTTPS://example.org/")[1]
        self.assertEqual(headers, {"strict-transport-security": ["max-age=5"]})

    def test_overridesUpstream(self) -> None:
        """
        Security headers replace the upstream's values of the same headers.
        """
        upstream = Backend(headers=(("X-Frame-Options", "SAMEORIGIN"), ("X-Frame-Options", "x")))
        handler = build({"frameDeny": True}, upstream)
        self.assertEqual(serve(handler)[1], {"x-frame-options": ["DENY"]})

    def test_onRelaydsOwnAnswers(self) -> None:
        """
        Security headers are set on relayd's own error answers too.
        """
        code, headers, _ = serve(build({"frameDeny": True}, ErrorBackend()))
        self.assertEqual((code, headers["x-frame-options"]), (502, ["DENY"]))

    def test_nonce(self) -> None:
        """
        $NONCE in the policies becomes one fresh 'nonce-...' per request, the same in both headers.
        """
        handler = build(
            {
                "contentSecurityPolicy": "script-src $NONCE",
                "contentSecurityPolicyReportOnly": "script-src $NONCE 'self'",
            }
        )
        first = serve(handler)[1]
        second = serve(handler)[1]
        csp = first["content-security-policy"][0]
        self.assertRegex(csp, r"^script-src 'nonce-[A-Za-z0-9+/]{22}'$")
        self.assertEqual(first["content-security-policy-report-only"], [csp + " 'self'"])
        self.assertNotEqual(second["content-security-policy"][0], csp)

    # unrolled/secure formats both policies with fmt.Sprintf(policy, nonce) once either uses $NONCE.
    NONCE_TABLE = [
        ("the nonce fills $NONCE", "script-src $NONCE", "", {"Content-Security-Policy": ["script-src 'nonce-N'"]}),
        ("%% becomes %", "script-src $NONCE; x 100%%", "", {"Content-Security-Policy": ["script-src 'nonce-N'; x 100%"]}),
        ("%s takes the nonce", "a %s $NONCE", "", {"Content-Security-Policy": ["a N 'nonce-N'"]}),
        (
            "a %s after the nonce misses its argument",
            "a $NONCE %s %s",
            "",
            {"Content-Security-Policy": ["a 'nonce-N' %!s(MISSING) %!s(MISSING)"]},
        ),
        ("a second %s misses its argument", "a %s %s", "b $NONCE", {
            "Content-Security-Policy": ["a N %!s(MISSING)"],
            "Content-Security-Policy-Report-Only": ["b 'nonce-N'"],
        }),
        ("an index other than 1 is bad", "a $NONCE %[2]s", "", {"Content-Security-Policy": ["a 'nonce-N' %!s(BADINDEX)"]}),
        (
            "a policy without a nonce gets Go's EXTRA note",
            "script-src $NONCE",
            "default-src 'self'",
            {
                "Content-Security-Policy": ["script-src 'nonce-N'"],
                "Content-Security-Policy-Report-Only": ["default-src 'self'%!(EXTRA string=N)"],
            },
        ),
        ("without a nonce nothing is formatted", "x 100%% %s", "", {"Content-Security-Policy": ["x 100%% %s"]}),
    ]

    def test_nonceFormatting(self) -> None:
        """
        Once a nonce is in use, both policies are formatted as Go's Sprintf formats them with the nonce.
        """
        for desc, csp, reportOnly, expected in self.NONCE_TABLE:
            raw = {"contentSecurityPolicy": csp}
            if reportOnly:
                raw["contentSecurityPolicyReportOnly"] = reportOnly
            handler = build(raw)
            handler.nonce = lambda: "N"
            self.assertEqual(serve(handler)[1], lower(expected), desc)


class OrderTests(SynchronousTestCase):
    def test_customResponseHeaderWins(self) -> None:
        """
        A custom response header overrides the security header of the same name.
        """
        handler = build({"frameDeny": True, "customResponseHeaders": {"X-Frame-Options": "SAMEORIGIN"}})
        self.assertEqual(serve(handler)[1], {"x-frame-options": ["SAMEORIGIN"]})

    def test_emptyCustomResponseHeaderRemovesSecurityHeader(self) -> None:
        """
        An empty custom response header removes the security header of the same name.
        """
        handler = build(
            {"contentTypeNosniff": True, "frameDeny": True, "customResponseHeaders": {"X-Frame-Options": ""}}
        )
        self.assertEqual(serve(handler)[1], {"x-content-type-options": ["nosniff"]})

    def test_customRequestHeadersBeforeSecurityCheck(self) -> None:
        """
        Custom request headers are set before the security layer reads hostsProxyHeaders and sslProxyHeaders.
        """
        handler = build(
            {
                "customRequestHeaders": {"X-Proxy-Host": "foo.com", "X-Forwarded-Proto": "https"},
                "allowedHosts": ["foo.com"],
                "hostsProxyHeaders": ["X-Proxy-Host"],
                "sslProxyHeaders": {"X-Forwarded-Proto": "https"},
                "stsSeconds": 10,
            }
        )
        code, headers, _ = serve(handler, host="boo.com")
        self.assertEqual((code, headers), (200, {"strict-transport-security": ["max-age=10"]}))

    def test_chainedMiddlewares(self) -> None:
        """
        With two headers middlewares in a row, the outer one's response headers are applied last.
        """
        inner = build({"customResponseHeaders": {"X-A": "inner", "X-B": "inner"}})
        outer = build({"customResponseHeaders": {"X-A": "outer"}, "frameDeny": True}, inner)
        self.assertEqual(
            serve(outer)[1], {"x-a": ["outer"], "x-b": ["inner"], "x-frame-options": ["DENY"]}
        )


class RealSocketTests(TestCase):
    def start(self, headers: dict[str, Any]) -> tuple[str, Any]:
        """
        Serve a real entrypoint whose only router uses a headers middleware
        with C{headers} in front of an echo backend; return its URL and the
        backend.
        """
        backendPort, echo = startBackend("echo")
        self.addCleanup(backendPort.stopListening)
        static = makeStatic("127.0.0.1:0")
        watcher = Watcher(reactor, static, reactor=reactor)
        dynamic = {
            "http": {
                "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "s", "middlewares": ["hdr"]}},
                "middlewares": {"hdr": {"headers": headers}},
                "services": {
                    "s": {"loadBalancer": {"servers": [{"url": f"http://127.0.0.1:{backendPort.getHost().port}"}]}}
                },
            }
        }
        watcher.update(ProviderUpdate("file", decodeDynamic(dynamic)))
        ep = EntryPointService("web", static.entryPoints["web"], reactor, watcher.runtime)
        watcher.addListener(ep.swap)
        ep.startService()
        self.addCleanup(ep.stopService)
        self.addCleanup(watcher.stop)
        self.port = ep.port
        return f"http://127.0.0.1:{ep.port}/path", echo

    @defer.inlineCallbacks
    def test_throughEntryPoint(self) -> None:
        """
        Through a real entrypoint and upstream, the backend sees the custom request headers and the
        client gets the custom, CORS and security response headers.
        """
        url, echo = self.start(
            {
                "customRequestHeaders": {"X-Script-Name": "test", "X-Remove-Me": ""},
                "customResponseHeaders": {"X-Custom-Response": "yes", "X-Backend": ""},
                "accessControlAllowOriginList": ["https://foo.bar.org"],
                "accessControlAllowMethods": ["GET", "PUT"],
                "accessControlMaxAge": 100,
                "addVaryHeader": True,
                "allowedHosts": ["app.example"],
                "frameDeny": True,
                "stsSeconds": 60,
                "forceSTSHeader": True,
            }
        )
        client = Client()
        self.addCleanup(client.close)

        resp, body = yield client.get(
            url, host="app.example", headers={"Origin": "https://foo.bar.org", "X-Remove-Me": "gone"}
        )
        self.assertEqual(resp.code, 200)
        seen = json.loads(body)["headers"]
        self.assertEqual(seen["x-script-name"], ["test"])
        self.assertNotIn("x-remove-me", seen)
        self.assertEqual(seen["origin"], ["https://foo.bar.org"])
        got = resp.headers
        self.assertEqual(got.getRawHeaders(b"x-custom-response"), [b"yes"])
        self.assertIsNone(got.getRawHeaders(b"x-backend"))
        self.assertEqual(got.getRawHeaders(b"access-control-allow-origin"), [b"https://foo.bar.org"])
        self.assertEqual(got.getRawHeaders(b"vary"), [b"Origin"])
        self.assertEqual(got.getRawHeaders(b"x-frame-options"), [b"DENY"])
        self.assertEqual(got.getRawHeaders(b"strict-transport-security"), [b"max-age=60"])
        self.assertEqual(got.getRawHeaders(b"content-type"), [b"application/json"])

        resp, body = yield client.get(
            url,
            host="app.example",
            method=b"OPTIONS",
            headers={"Origin": "https://foo.bar.org", "Access-Control-Request-Method": "PUT"},
        )
        self.assertEqual((resp.code, body), (200, b""))
        self.assertEqual(resp.headers.getRawHeaders(b"access-control-allow-methods"), [b"GET,PUT"])
        self.assertEqual(resp.headers.getRawHeaders(b"access-control-max-age"), [b"100"])
        self.assertIsNone(resp.headers.getRawHeaders(b"x-frame-options"))
        self.assertEqual(len(echo.requests), 1)

        answer = yield rawRequest(self.port, b"GET / HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), answer)
        self.assertTrue(answer.endswith(b"\r\n\r\nBad Host\n"), answer)
        self.assertIn(b"X-Custom-Response: yes\r\n", answer)
        self.assertEqual(len(echo.requests), 1)

    @defer.inlineCallbacks
    def test_customHostForwarded(self) -> None:
        """
        A Host custom request header is the Host the upstream receives.
        """
        url, echo = self.start({"customRequestHeaders": {"Host": "upstream.example"}})
        client = Client()
        self.addCleanup(client.close)
        resp, body = yield client.get(url, host="front.example")
        self.assertEqual(resp.code, 200)
        self.assertEqual(json.loads(body)["headers"]["host"], ["upstream.example"])
