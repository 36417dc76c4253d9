"""
Tests for the path middlewares (stripPrefix, stripPrefixRegex, addPrefix,
replacePath, replacePathRegex) and the Go helpers they share: the tables of
Traefik v3.6's tests (pkg/middlewares/*/..._test.go) as facts, run on
in-memory requests, plus one run through a real entrypoint and backend.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from relayd.config.dynamic import decodeDynamic
from relayd.config.loader import effective
from relayd.config.middlewares import (
    AddPrefix,
    HTTPMiddleware,
    ReplacePath,
    ReplacePathRegex,
    StripPrefix,
    StripPrefixRegex,
)
from relayd.config.schema import decode as decodeConfig
from relayd.config.static import StaticConfig
from relayd.entrypoints import EntryPointService, RequestContext
from relayd.proxy.server import HTTPRequest as RelaydRequest
from relayd.interfaces import IHTTPHandler
from relayd.middlewares import _resolve
from relayd.middlewares.paths import (
    GoPath,
    GoRegexp,
    GoURLError,
    buildAddPrefix,
    buildReplacePath,
    buildReplacePathRegex,
    buildStripPrefix,
    buildStripPrefixRegex,
    currentPath,
    goTrimSpace,
    goUnescape,
    subexpNames,
)
from relayd.providers.base import ProviderUpdate
from relayd.runtime.build import BuildError, ObjectInfo
from relayd.runtime.routing import cleanPath, normalizePath
from relayd.watcher import Watcher
from tests.helpers import Client, memoryRequest, startBackend


def makeStatic(http: dict[str, Any] | None = None, forwardedHeaders: dict[str, Any] | None = None) -> StaticConfig:
    """
    A static configuration with one entrypoint, web, on a free port.
    """
    entryPoint: dict[str, Any] = {"address": "127.0.0.1:0"}
    if http:
        entryPoint["http"] = http
    if forwardedHeaders:
        entryPoint["forwardedHeaders"] = forwardedHeaders
    config, _ = decodeConfig(StaticConfig, {"entryPoints": {"web": entryPoint}})
    return effective(config)


DEFAULT_STATIC = makeStatic()


def makeRequest(
    uri: str,
    method: bytes = b"GET",
    headers: dict[str, list[str]] | None = None,
    secure: bool = False,
    static: StaticConfig = DEFAULT_STATIC,
    trustForwarded: bool = False,
) -> RelaydRequest:
    """
    An in-memory request for C{uri}, with the C{relayd} context the
    entrypoint would give it (path normalised, and cleaned unless the
    entrypoint disables sanitizePath; semicolons of the query turned into
    ampersands).
    """
    request = memoryRequest(
        method,
        uri.encode("utf-8", "surrogateescape"),
        [(name.encode(), v.encode("utf-8", "surrogateescape")) for name, values in (headers or {}).items() for v in values],
        secure=secure,
    )
    if uri.startswith(("http://", "https://")):
        from urllib.parse import urlsplit

        parts = urlsplit(uri)
        rawPath, rawQuery = parts.path or "/", parts.query
    else:
        rawPath, _, rawQuery = uri.partition("?")
    path = normalizePath(rawPath)
    if static.entryPoints["web"].http.sanitizePath and path != "*":
        path = cleanPath(path)
    request.relayd = RequestContext(
        entryPoint="web",
        runtime=SimpleNamespace(static=static),  # type: ignore[arg-type]
        clientIP="192.168.1.1",
        localPort=80,
        forwardPath=path,
        rawQuery=rawQuery.replace(";", "&"),
        trustForwarded=trustForwarded,
    )
    return request


@implementer(IHTTPHandler)
class Recorder:
    """
    The next handler: records what it was handed, and answers nothing.
    """

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def handle(self, request: Any) -> None:
        self.seen.append(
            {
                "forwardPath": request.relayd.forwardPath,
                "rawQuery": request.relayd.rawQuery,
                "path": currentPath(request).path,
                "prefix": request.requestHeaders.getRawHeaders(b"x-forwarded-prefix"),
                "replaced": request.requestHeaders.getRawHeaders(b"x-replaced-path"),
            }
        )


def info(kind: str, config: Any) -> ObjectInfo:
    return ObjectInfo(name="m@file", kind=kind, config=HTTPMiddleware(**{kind: config}))


def response(request: RelaydRequest) -> tuple[int, dict[bytes, list[bytes]], bytes]:
    """
    The status, headers and body a finished in-memory request wrote.
    """
    written = request.testTransport.written.getvalue()
    head, _, body = written.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers: dict[bytes, list[bytes]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b": ")
        headers.setdefault(name.lower(), []).append(value)
    return int(lines[0].split(b" ")[1]), headers, body


class PathsTestMixin:
    """
    Running one middleware on one request.
    """

    def runOn(self, handler: Any, recorder: Recorder, uri: str, **kwargs: Any) -> tuple[RelaydRequest, dict[str, Any] | None]:
        request = makeRequest(uri, **kwargs)
        before = len(recorder.seen)
        handler.handle(request)
        return request, recorder.seen[-1] if len(recorder.seen) > before else None


class StripPrefixTests(PathsTestMixin, SynchronousTestCase):
    # prefixes, request path, status, forwarded path, decoded path, X-Forwarded-Prefix
    TRAEFIK_TABLE = [
        ((), "/noprefixes", 200, "/noprefixes", b"/noprefixes", None),
        (("/",), "/", 200, "/", b"", [b"/"]),
        (("/stat",), "/stat", 200, "/", b"", [b"/stat"]),
        (("/stat/",), "/stat/", 200, "/", b"", [b"/stat/"]),
        (("/stat/",), "/stat/us", 200, "/us", b"/us", [b"/stat/"]),
        (("/stat/",), "/status", 200, "/status", b"/status", None),
        (("/stat",), "/stat/", 200, "/", b"/", [b"/stat"]),
        (("/stat", "/stat/us"), "/stat/us", 200, "/us", b"/us", [b"/stat"]),
        (("/mismatch", "/stat"), "/stat", 200, "/", b"", [b"/stat"]),
        (("/stat",), "/status", 200, "/us", b"/us", [b"/stat"]),
        (("/stat",), "/stat/a%2Fb", 200, "/a%2Fb", b"/a/b", [b"/stat"]),
        (("/api/",), "/ap%69/a%2Fb", 200, "/a%2Fb", b"/a/b", [b"/api/"]),
        (("/api",), "/api./foo", 400, None, None, None),
        (("/api",), "/api../foo", 400, None, None, None),
    ]

    def build(self, prefixes: tuple[str, ...], forceSlash: bool | None = None) -> tuple[Any, Recorder]:
        recorder = Recorder()
        handler = buildStripPrefix(None, info("stripPrefix", StripPrefix(prefixes=prefixes, forceSlash=forceSlash)), recorder, ())
        return handler, recorder

    def check(self, table: list[tuple[Any, ...]], forceSlash: bool | None = None) -> None:
        for prefixes, path, status, forwardPath, decoded, header in table:
            handler, recorder = self.build(prefixes, forceSlash)
            request, seen = self.runOn(handler, recorder, path)
            if status != 200:
                self.assertIsNone(seen, path)
                self.assertEqual(response(request)[0], status, path)
                self.assertEqual(response(request)[2], b"Bad Request\n", path)
                continue
            self.assertIsNotNone(seen, path)
            assert seen is not None
            self.assertEqual(
                (seen["forwardPath"], seen["path"], seen["prefix"]), (forwardPath, decoded, header), (prefixes, path)
            )

    def test_traefikTable(self) -> None:
        """
        Every case of Traefik's stripPrefix test table gives the same path, escaped path, header and status.
        """
        self.check(self.TRAEFIK_TABLE)

    def test_decodedComparison(self) -> None:
        """
        A prefix is compared with the decoded path, so %2F counts as a slash, and the escaped form is trimmed by decoded bytes.
        """
        self.check(
            [
                (("/a/b",), "/a%2Fb/c", 200, "/c", b"/c", [b"/a/b"]),
                (("/a",), "/a%2Fb", 200, "/b", b"/b", [b"/a"]),
                (("/a/",), "/a%2Fb%2Fc", 200, "/b%2Fc", b"/b/c", [b"/a/"]),
                (("/é",), "/%C3%A9/x", 200, "/x", b"/x", ["/é".encode()]),
                (("/a b",), "/a%20b/c", 200, "/c", b"/c", [b"/a b"]),
            ]
        )

    def test_prefixesTrimmed(self) -> None:
        """
        Configured prefixes are trimmed of spaces (Go's strings.TrimSpace) before use and in the header.
        """
        self.check([((" /stat \t",), "/stat/us", 200, "/us", b"/us", [b"/stat"])])

    def test_forceSlash(self) -> None:
        """
        The deprecated forceSlash, when true, leaves / instead of an empty path, and still refuses dot segments.
        """
        self.check(
            [
                (("/stat",), "/stat", 200, "/", b"/", [b"/stat"]),
                (("/stat/",), "/stat/us", 200, "/us", b"/us", [b"/stat/"]),
                (("/api",), "/api../foo", 400, None, None, None),
            ],
            forceSlash=True,
        )

    def test_forceSlashFalse(self) -> None:
        """
        forceSlash set to false behaves as when it is unset.
        """
        self.check([(("/stat",), "/stat", 200, "/", b"", [b"/stat"])], forceSlash=False)

    def test_queryKept(self) -> None:
        """
        The query is forwarded unchanged.
        """
        handler, recorder = self.build(("/api",))
        _, seen = self.runOn(handler, recorder, "/api/x?a=1&b=%2F")
        assert seen is not None
        self.assertEqual((seen["forwardPath"], seen["rawQuery"]), ("/x", "a=1&b=%2F"))

    def test_headerAdded(self) -> None:
        """
        X-Forwarded-Prefix is added after the values the request already has (Go's Header.Add).
        """
        handler, recorder = self.build(("/api",))
        _, seen = self.runOn(handler, recorder, "/api/x", headers={"X-Forwarded-Prefix": ["/outer"]})
        assert seen is not None
        self.assertEqual(seen["prefix"], [b"/outer", b"/api"])

    def test_emptiedPathStaysEmptyForNextMiddleware(self) -> None:
        """
        A path stripped to nothing is forwarded as / but a following addPrefix sees it empty, as in Traefik.
        """
        recorder = Recorder()
        add = buildAddPrefix(None, info("addPrefix", AddPrefix(prefix="/v2")), recorder, ())
        strip = buildStripPrefix(None, info("stripPrefix", StripPrefix(prefixes=("/api",))), add, ())
        _, seen = self.runOn(strip, recorder, "/api?x=1")
        assert seen is not None
        self.assertEqual((seen["forwardPath"], seen["rawQuery"]), ("/v2", "x=1"))

    def test_secondStripSeesEmptyPath(self) -> None:
        """
        A second stripPrefix of / does not match a path the first one emptied.
        """
        recorder = Recorder()
        second = buildStripPrefix(None, info("stripPrefix", StripPrefix(prefixes=("/",))), recorder, ())
        first = buildStripPrefix(None, info("stripPrefix", StripPrefix(prefixes=("/api",))), second, ())
        _, seen = self.runOn(first, recorder, "/api")
        assert seen is not None
        self.assertEqual((seen["forwardPath"], seen["path"], seen["prefix"]), ("/", b"", [b"/api"]))

    def test_registry(self) -> None:
        """
        The middleware registry resolves stripPrefix to this module's builder.
        """
        self.assertIs(_resolve("stripPrefix"), buildStripPrefix)


class StripPrefixRegexTests(PathsTestMixin, SynchronousTestCase):
    # regexps, request path, status, forwarded path, decoded path, X-Forwarded-Prefix
    TRAEFIK_TABLE = [
        (("/a/api/",), "/a/test", 200, "/a/test", b"/a/test", None),
        (("/a/api/",), "/a/test/", 200, "/a/test/", b"/a/test/", None),
        (("/a/api/",), "/a/api/", 200, "/", b"", [b"/a/api/"]),
        (("/a/api/",), "/a/api/test", 200, "/test", b"/test", [b"/a/api/"]),
        (("/a/api/",), "/a/api/test/", 200, "/test/", b"/test/", [b"/a/api/"]),
        (("/b/([a-z0-9]+)/",), "/b/api/", 200, "/", b"", [b"/b/api/"]),
        (("/b/([a-z0-9]+)/",), "/b/api", 200, "/b/api", b"/b/api", None),
        (("/b/([a-z0-9]+)/",), "/b/api/test1", 200, "/test1", b"/test1", [b"/b/api/"]),
        (("/b/([a-z0-9]+)/",), "/b/api2/test2", 200, "/test2", b"/test2", [b"/b/api2/"]),
        (("/c/[a-z0-9]+/[0-9]+/",), "/c/api/123/", 200, "/", b"", [b"/c/api/123/"]),
        (("/c/[a-z0-9]+/[0-9]+/",), "/c/api/123", 200, "/c/api/123", b"/c/api/123", None),
        (("/c/[a-z0-9]+/[0-9]+/",), "/c/api/123/test3", 200, "/test3", b"/test3", [b"/c/api/123/"]),
        (("/c/[a-z0-9]+/[0-9]+/",), "/c/api/abc/test4", 200, "/c/api/abc/test4", b"/c/api/abc/test4", None),
        (("/a/api/",), "/a/api/a%2Fb", 200, "/a%2Fb", b"/a/b", [b"/a/api/"]),
        (("/b/([a-z0-9]+)/",), "/b/ap%69/test", 200, "/test", b"/test", [b"/b/api/"]),
        (("/b/([a-z0-9]+)/",), "/b/ap%69/a%2Fb", 200, "/a%2Fb", b"/a/b", [b"/b/api/"]),
        (("/t /test",), "/t%2F/test/foo", 200, "/t%2F/test/foo", b"/t//test/foo", None),
        (("/t /test",), "/t%20/test/a%2Fb", 200, "/a%2Fb", b"/a/b", [b"/t /test"]),
        (("/api",), "/api./foo", 400, None, None, None),
        (("/api",), "/api../foo", 400, None, None, None),
    ]

    def check(self, table: list[tuple[Any, ...]]) -> None:
        for regexps, path, status, forwardPath, decoded, header in table:
            recorder = Recorder()
            handler = buildStripPrefixRegex(None, info("stripPrefixRegex", StripPrefixRegex(regex=regexps)), recorder, ())
            request, seen = self.runOn(handler, recorder, path)
            if status != 200:
                self.assertIsNone(seen, path)
                self.assertEqual(response(request)[:3:2], (status, b"Bad Request\n"), path)
                continue
            assert seen is not None
            self.assertEqual(
                (seen["forwardPath"], seen["path"], seen["prefix"]), (forwardPath, decoded, header), (regexps, path)
            )

    def test_traefikTable(self) -> None:
        """
        Every case of Traefik's stripPrefixRegex test table (the raw-space one sent escaped, as HTTP requires) gives the same result.
        """
        self.check(self.TRAEFIK_TABLE)

    def test_matchNotAtStartTriesNextRegexp(self) -> None:
        """
        A match that is not a prefix of the path is skipped and the next regexp is tried.
        """
        self.check([(("/x/", "/a/"), "/a/x/b", 200, "/x/b", b"/x/b", [b"/a/"])])

    def test_emptyMatchSkipped(self) -> None:
        """
        A regexp that matches the empty string strips nothing and the next one is tried.
        """
        self.check([(("^", "/a"), "/a/b", 200, "/b", b"/b", [b"/a"])])

    def test_goRegexpSyntax(self) -> None:
        """
        Regexps are Go's: trimmed of spaces, with (?i) and \\d as Go reads them.
        """
        self.check(
            [
                ((" (?i)^/API/v\\d+ ",), "/api/v12/x", 200, "/x", b"/x", [b"/api/v12"]),
                (("^/\\d+",), "/\u0663/x", 200, "/%D9%A3/x", "/\u0663/x".encode(), None),
            ]
        )

    def test_invalidRegexp(self) -> None:
        """
        A regexp Go cannot compile makes the build fail.
        """
        self.assertRaises(
            BuildError,
            buildStripPrefixRegex,
            None,
            info("stripPrefixRegex", StripPrefixRegex(regex=("/ok", "(?<=a)b"))),
            Recorder(),
            (),
        )

    def test_registry(self) -> None:
        """
        The middleware registry resolves stripPrefixRegex to this module's builder.
        """
        self.assertIs(_resolve("stripPrefixRegex"), buildStripPrefixRegex)


class AddPrefixTests(PathsTestMixin, SynchronousTestCase):
    # prefix, request path, forwarded path, decoded path
    TRAEFIK_TABLE = [
        ("/a", "/b", "/a/b", b"/a/b"),
        ("a", "/", "/a/", b"/a/"),
        ("/a", "/b%2Fc", "/a/b%2Fc", b"/a/b/c"),
    ]

    def check(self, table: list[tuple[Any, ...]]) -> None:
        for prefix, path, forwardPath, decoded in table:
            recorder = Recorder()
            handler = buildAddPrefix(None, info("addPrefix", AddPrefix(prefix=prefix)), recorder, ())
            _, seen = self.runOn(handler, recorder, path)
            assert seen is not None
            self.assertEqual((seen["forwardPath"], seen["path"]), (forwardPath, decoded), (prefix, path))

    def test_traefikTable(self) -> None:
        """
        Every case of Traefik's addPrefix test table gives the same path and escaped path.
        """
        self.check(self.TRAEFIK_TABLE)

    def test_prefixIsDecodedText(self) -> None:
        """
        The prefix is added to the decoded path as text, so its % and spaces are escaped when forwarded.
        """
        self.check([("/%41", "/x", "/%2541/x", b"/%41/x"), ("/a b", "/x", "/a%20b/x", b"/a b/x")])

    def test_queryKept(self) -> None:
        """
        The query is forwarded unchanged.
        """
        recorder = Recorder()
        handler = buildAddPrefix(None, info("addPrefix", AddPrefix(prefix="/a")), recorder, ())
        _, seen = self.runOn(handler, recorder, "/b?c=d")
        assert seen is not None
        self.assertEqual((seen["forwardPath"], seen["rawQuery"]), ("/a/b", "c=d"))

    def test_emptyPrefix(self) -> None:
        """
        An empty prefix makes the build fail, as in Traefik.
        """
        error = self.assertRaises(BuildError, buildAddPrefix, None, info("addPrefix", AddPrefix(prefix="")), Recorder(), ())
        self.assertEqual(str(error), "prefix cannot be empty")

    def test_registry(self) -> None:
        """
        The middleware registry resolves addPrefix to this module's builder.
        """
        self.assertIs(_resolve("addPrefix"), buildAddPrefix)


class ReplacePathTests(PathsTestMixin, SynchronousTestCase):
    # request path, replacement, forwarded path, decoded path, X-Replaced-Path
    TRAEFIK_TABLE = [
        ("/example", "/replacement-path", "/replacement-path", b"/replacement-path", [b"/example"]),
        ("/some/really/long/path", "/replacement-path", "/replacement-path", b"/replacement-path", [b"/some/really/long/path"]),
        ("/foo%2Fbar", "/replacement-path", "/replacement-path", b"/replacement-path", [b"/foo%2Fbar"]),
        ("/path", "/foo%2Fbar", "/foo%2Fbar", b"/foo/bar", [b"/path"]),
        ("/path/%08bar", "/path/%08bar", "/path/%08bar", b"/path/\bbar", [b"/path/%08bar"]),
    ]

    def check(self, table: list[tuple[Any, ...]]) -> None:
        for path, replacement, forwardPath, decoded, header in table:
            recorder = Recorder()
            handler = buildReplacePath(None, info("replacePath", ReplacePath(path=replacement)), recorder, ())
            _, seen = self.runOn(handler, recorder, path)
            assert seen is not None
            self.assertEqual(
                (seen["forwardPath"], seen["path"], seen["replaced"]), (forwardPath, decoded, header), (path, replacement)
            )

    def test_traefikTable(self) -> None:
        """
        Every case of Traefik's replacePath test table gives the same path, escaped path and X-Replaced-Path.
        """
        self.check(self.TRAEFIK_TABLE)

    def test_replacementNeedingEscapes(self) -> None:
        """
        A replacement that is not a valid escaping is forwarded with Go's escaping of it, and a relative one stays relative.
        """
        self.check(
            [
                ("/x", "/a b", "/a%20b", b"/a b", [b"/x"]),
                ("/x", "/é", "/%C3%A9", "/é".encode(), [b"/x"]),
                ("/x", "foo", "foo", b"foo", [b"/x"]),
            ]
        )

    def test_badEscape(self) -> None:
        """
        A replacement with a malformed escape is answered 500 with Go's error text, and nothing is forwarded.
        """
        recorder = Recorder()
        handler = buildReplacePath(None, info("replacePath", ReplacePath(path="/a%zz")), recorder, ())
        request, seen = self.runOn(handler, recorder, "/x")
        self.assertIsNone(seen)
        code, headers, body = response(request)
        self.assertEqual((code, body), (500, b'invalid URL escape "%zz"\n'))
        self.assertEqual(headers[b"content-type"], [b"text/plain; charset=utf-8"])

    def test_headerAdded(self) -> None:
        """
        X-Replaced-Path is added after the values the request already has, and is the emptied path's escaped form.
        """
        recorder = Recorder()
        replace = buildReplacePath(None, info("replacePath", ReplacePath(path="/r")), recorder, ())
        strip = buildStripPrefix(None, info("stripPrefix", StripPrefix(prefixes=("/api",))), replace, ())
        _, seen = self.runOn(strip, recorder, "/api", headers={"X-Replaced-Path": ["/before"]})
        assert seen is not None
        self.assertEqual((seen["forwardPath"], seen["replaced"]), ("/r", [b"/before", b""]))

    def test_registry(self) -> None:
        """
        The middleware registry resolves replacePath to this module's builder.
        """
        self.assertIs(_resolve("replacePath"), buildReplacePath)


class ReplacePathRegexTests(PathsTestMixin, SynchronousTestCase):
    # request path, regexp, replacement, status, forwarded path, decoded path, X-Replaced-Path
    TRAEFIK_TABLE = [
        ("/whoami/and/whoami", "^/whoami/(.*)", "/who-am-i/$1", 200, "/who-am-i/and/whoami", b"/who-am-i/and/whoami", [b"/whoami/and/whoami"]),
        ("/whoami/and/whoami", "/whoami", "/who-am-i", 200, "/who-am-i/and/who-am-i", b"/who-am-i/and/who-am-i", [b"/whoami/and/whoami"]),
        ("/whoami/and/whoami", "/whoami", "", 200, "/and", b"/and", [b"/whoami/and/whoami"]),
        ("/whoami/and/whoami", "/whoami", " ", 200, "/and", b"/and", [b"/whoami/and/whoami"]),
        ("/whoami/and/whoami", "/no-match", "/whoami", 200, "/whoami/and/whoami", b"/whoami/and/whoami", None),
        ("/downloads/src/source.go", "^(?i)/downloads/([^/]+)/([^/]+)$", "/downloads/$1-$2", 200, "/downloads/src-source.go", b"/downloads/src-source.go", [b"/downloads/src/source.go"]),
        ("/aaa/bbb", "/aaa/bbb", "/foo%2Fbar", 200, "/foo%2Fbar", b"/foo/bar", [b"/aaa/bbb"]),
        ("/aaa%2Fbbb", "/aaa%2Fbbb", "/foo/bar", 200, "/foo/bar", b"/foo/bar", [b"/aaa%2Fbbb"]),
        ("/aaa%2Fbbb", "/aaa/bbb", "/foo/bar", 200, "/aaa%2Fbbb", b"/aaa/bbb", None),
        ("/foo/%08bar", "^/foo/(.*)", "/$1", 200, "/%08bar", b"/\bbar", [b"/foo/%08bar"]),
        ("/foo../bar", "^/foo(.*)", "/$1", 400, None, None, None),
    ]

    def check(self, table: list[tuple[Any, ...]]) -> None:
        for path, regex, replacement, status, forwardPath, decoded, header in table:
            recorder = Recorder()
            config = ReplacePathRegex(regex=regex, replacement=replacement)
            handler = buildReplacePathRegex(None, info("replacePathRegex", config), recorder, ())
            request, seen = self.runOn(handler, recorder, path)
            if status != 200:
                self.assertIsNone(seen, path)
                self.assertEqual(response(request)[:3:2], (status, b"Bad Request\n"), path)
                continue
            assert seen is not None
            self.assertEqual(
                (seen["forwardPath"], seen["path"], seen["replaced"]), (forwardPath, decoded, header), (path, regex)
            )

    def test_traefikTable(self) -> None:
        """
        Every case of Traefik's replacePathRegex test table gives the same path, escaped path, header and status.
        """
        self.check(self.TRAEFIK_TABLE)

    def test_goExpansion(self) -> None:
        """
        Replacements expand as Go's: $1x names a group called 1x, ${1}x is group 1 then x, $$ is $, ${name} a named group.
        """
        self.check(
            [
                ("/a/b", "^/(a)/(b)$", "/$1x", 200, "/", b"/", [b"/a/b"]),
                ("/a/b", "^/(a)/(b)$", "/${1}x", 200, "/ax", b"/ax", [b"/a/b"]),
                ("/a/b", "^/(a)/(b)$", "/$$1/$2", 200, "/$1/b", b"/$1/b", [b"/a/b"]),
                ("/v1/users", "^/(?P<version>v\\d+)/(?P<rest>.*)$", "/${rest}/$version", 200, "/users/v1", b"/users/v1", [b"/v1/users"]),
                ("/a/b", "^/(a)/(b)$", "/x$3/$", 200, "/x/$", b"/x/$", [b"/a/b"]),
            ]
        )

    def test_everyMatchReplaced(self) -> None:
        """
        Every non-overlapping match is replaced, and an empty match right after a match is not (Go's ReplaceAllString).
        """
        self.check([("/ab/xd", "x*", "-", 200, "-/-a-b-/-d-", b"-/-a-b-/-d-", [b"/ab/xd"])])

    def test_matchesEscapedPath(self) -> None:
        """
        The regexp sees the escaped path, so an escaped slash is matched as %2F.
        """
        self.check([("/a%2Fb", "%2F", "/", 200, "/a/b", b"/a/b", [b"/a%2Fb"])])

    def test_badEscape(self) -> None:
        """
        A replacement that yields a malformed escape is answered 500 with Go's error text.
        """
        recorder = Recorder()
        config = ReplacePathRegex(regex="^/(.*)", replacement="/%$1")
        handler = buildReplacePathRegex(None, info("replacePathRegex", config), recorder, ())
        request, seen = self.runOn(handler, recorder, "/zz")
        self.assertIsNone(seen)
        self.assertEqual(response(request)[:3:2], (500, b'invalid URL escape "%zz"\n'))

    def test_invalidRegexp(self) -> None:
        """
        A regexp Go cannot compile makes the build fail, with Traefik's wording.
        """
        config = ReplacePathRegex(regex="^(?err)/invalid/regexp/([^/]+)$", replacement="/valid/regexp/$1")
        error = self.assertRaises(BuildError, buildReplacePathRegex, None, info("replacePathRegex", config), Recorder(), ())
        self.assertTrue(str(error).startswith("error compiling regular expression ^(?err)"), str(error))

    def test_registry(self) -> None:
        """
        The middleware registry resolves replacePathRegex to this module's builder.
        """
        self.assertIs(_resolve("replacePathRegex"), buildReplacePathRegex)


class GoHelpersTests(SynchronousTestCase):
    def test_replaceAllStringGoDocExamples(self) -> None:
        """
        ReplaceAllString gives the results of Go's documentation examples.
        """
        table = [
            ("a(x*)b", "-ab-axxb-", "T", "-T-T-"),
            ("a(x*)b", "-ab-axxb-", "$1", "--xx-"),
            ("a(x*)b", "-ab-axxb-", "$1W", "---"),
            ("a(x*)b", "-ab-axxb-", "${1}W", "-W-xxW-"),
            ("a(?P<1W>x*)b", "-ab-axxb-", "$1W", "--xx-"),
            ("a(?P<1W>x*)b", "-ab-axxb-", "${1}W", "-W-xxW-"),
            ("a(x*)b", "-ab-axxb-", "$$1", "-$1-$1-"),
            ("x*", "abxd", "-", "-a-b-d-"),
            ("(?P<y>\\d+)-(?P<m>\\d+)", "2024-05", "${m}/$y", "05/2024"),
            ("(?P<n>a)|(?P<n>b)", "ab", "[$n]", "[a][b]"),
            ("a", "aaa", "$", "$$$"),
            ("a", "aaa", "${", "${${${"),
        ]
        for pattern, text, template, expected in table:
            self.assertEqual(GoRegexp(pattern).replaceAllString(text, template), expected, (pattern, text, template))

    def test_subexpNames(self) -> None:
        """
        Group names are read as Go's SubexpNames, skipping parentheses in classes and \\Q...\\E.
        """
        self.assertEqual(subexpNames("(a)(?P<x>b)(?:c)(?<y>d)[(]\\Q(\\E(?i)(e)"), ["", "", "x", "y", ""])
        self.assertEqual(subexpNames("[]()](f)[^]](g)[[:alpha:]](h)"), ["", "", "", ""])

    def test_unescape(self) -> None:
        """
        Unescaping follows Go's url.PathUnescape, with its error text for malformed escapes.
        """
        self.assertEqual(goUnescape(b"/a%2Fb+%41", "pathSegment"), b"/a/b+A")
        for data, message in ((b"/%zz", 'invalid URL escape "%zz"'), (b"/%4", 'invalid URL escape "%4"'), (b"%", 'invalid URL escape "%"')):
            error = self.assertRaises(GoURLError, goUnescape, data, "pathSegment")
            self.assertEqual(str(error), message)

    def test_escapedPath(self) -> None:
        """
        The escaped path is RawPath only while it is a valid escaping of Path, as Go's EscapedPath.
        """
        table = [
            (b"/a/b", b"/a%2Fb", b"/a%2Fb"),
            (b"/a b", b"/a b", b"/a%20b"),
            (b"/a/b", b"/a%2Fc", b"/a/b"),
            (b"*", b"", b"*"),
            (b"/a?b", b"", b"/a%3Fb"),
            (b"/a;b,c:d@e&f=g+h$", b"", b"/a;b,c:d@e&f=g+h$"),
        ]
        for path, rawPath, expected in table:
            self.assertEqual(GoPath(path, rawPath).escaped(), expected)

    def test_joinPath(self) -> None:
        """
        JoinPath cleans dot segments and duplicate slashes, keeps one trailing slash and keeps relative paths relative.
        """
        table = [
            (b"/a/./b/../c//d/", b"/a/c/d/"),
            (b"/..", b"/"),
            (b"/a/.", b"/a"),
            (b"foo/../../bar", b"bar"),
            (b"/a%2F..", b"/a%2F.."),
        ]
        for escaped, expected in table:
            self.assertEqual(GoPath.fromEscaped(escaped).joinPath().escaped(), expected, escaped)

    def test_trimSpace(self) -> None:
        """
        TrimSpace strips Go's Unicode spaces but not the separators Python's strip also removes.
        """
        self.assertEqual(goTrimSpace("\u2003 /a\t\n"), "/a")
        self.assertEqual(goTrimSpace("\x1c/a\x1f"), "\x1c/a\x1f")


class PathsEntryPointTests(TestCase):
    @defer.inlineCallbacks
    def test_throughEntryPoint(self):
        """
        Through a real entrypoint, stripPrefix then addPrefix reach the backend with the rewritten path, the query and X-Forwarded-Prefix.
        """
        listening, echo = startBackend("b")
        self.addCleanup(listening.stopListening)
        static = makeStatic()
        watcher = Watcher(reactor, static, reactor=reactor)
        dynamic = {
            "http": {
                "routers": {
                    "r": {"rule": "PathPrefix(`/api`)", "service": "s", "middlewares": ["strip", "add"]},
                    "q": {"rule": "PathPrefix(`/old`)", "service": "s", "middlewares": ["replace"]},
                },
                "middlewares": {
                    "strip": {"stripPrefix": {"prefixes": ["/api"]}},
                    "add": {"addPrefix": {"prefix": "/v2"}},
                    "replace": {"replacePathRegex": {"regex": "^/old/(.*)", "replacement": "/new/$1"}},
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
        seen = []
        for path in ("/api?x=1", "/api/a%2Fb/c", "/old/x%20y?q"):
            response, body = yield client.get(base + path, host="example.com")
            self.assertEqual(response.code, 200, body)
            seen.append(json.loads(body))
        self.assertEqual([s["uri"] for s in seen], ["/v2?x=1", "/v2/a%2Fb/c", "/new/x%20y?q"])
        self.assertEqual(seen[0]["headers"]["x-forwarded-prefix"], ["/api"])
        self.assertEqual(seen[1]["headers"]["x-forwarded-prefix"], ["/api"])
        self.assertEqual(seen[2]["headers"]["x-replaced-path"], ["/old/x%20y"])
