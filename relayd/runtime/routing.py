"""
Per-entrypoint route tables, compiled once per generation, and the per-request
pick: the first route (by priority, then name) whose rule matches.
"""

from __future__ import annotations

import re

from typing import Any, Callable, Sequence

import attrs

from relayd.runtime.gocompat import canonicalRequestHost, routingPath
from relayd.runtime.matchers import RouteRequest

MAX_PRIORITY = 2**63 - 1
MAX_USER_PRIORITY = MAX_PRIORITY - 1000


@attrs.frozen(eq=False)
class Route:
    """
    One router attached to one entrypoint.

    @ivar tls: whether the router only serves TLS connections.
    """

    name: str
    priority: int
    rule: str
    matcher: Callable[[RouteRequest], bool]
    handler: Any
    tls: bool = False


def sortKey(route: Route) -> tuple[int, str]:
    """
    Higher priority first; equal priorities by router name, so the order never
    depends on the order providers listed things in.
    """
    return (-route.priority, route.name)


@attrs.frozen(eq=False)
class RouteTable:
    """
    The routes of one entrypoint for one generation, plain and TLS apart.
    """

    plain: tuple[Route, ...] = ()
    secure: tuple[Route, ...] = ()

    @classmethod
    def build(cls, routes: Sequence[Route]) -> RouteTable:
        ordered = sorted(routes, key=sortKey)
        return cls(
            plain=tuple(r for r in ordered if not r.tls),
            secure=tuple(r for r in ordered if r.tls),
        )

    def match(self, request: RouteRequest, secure: bool = False) -> Route | None:
        for route in self.secure if secure else self.plain:
            if route.matcher(request):
                return route
        return None

    def explain(self, request: RouteRequest, secure: bool = False) -> list[tuple[Route, bool]]:
        """
        Every route in evaluation order with whether it matches, up to and
        including the first match.
        """
        result = []
        for route in self.secure if secure else self.plain:
            matched = route.matcher(request)
            result.append((route, matched))
            if matched:
                break
        return result


class BadRequestPath(ValueError):
    """
    A request path with a malformed percent-escape (answered with 400).
    """


_UNRESERVED = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)
_HEX = frozenset("0123456789abcdefABCDEF")
# What Go's url.escape(path, encodePath) leaves as is.
_PATH_SAFE = _UNRESERVED | frozenset("$&+,/:;=@")
# What Go's validEncoded accepts in a raw path.
_VALID_ENCODED = _PATH_SAFE | frozenset("!'()*[]%")


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def normalizePath(rawPath: str) -> str:
    """
    The escaped path Traefik routes and forwards: percent-escapes of
    unreserved characters are decoded and every other escape is upper-cased
    (RFC 3986 6.2.2.1), as Traefik's normalizePath does to the raw path.

    As Go's C{URL.EscapedPath}, a raw path that still holds characters Go
    would have escaped (a space, C{"}, C{{}, C{|}, non-ASCII...) is not used:
    the decoded path is escaped again the way Go escapes paths, which also
    decodes reserved escapes that Go leaves unescaped in paths (C{%2F},
    C{%3A}, C{%40}...).

    @raise BadRequestPath: for a C{%} not followed by two hex digits, a
        control character, or a fragment in the path.
    """
    if "#" in rawPath:
        raise BadRequestPath("fragment in the request path")
    if _CONTROL.search(rawPath):
        raise BadRequestPath("invalid control character in the request path")
    if "%" not in rawPath and _VALID_ENCODED.issuperset(rawPath):
        return rawPath
    out: list[str] = []
    i = 0
    n = len(rawPath)
    while i < n:
        c = rawPath[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        escape = rawPath[i + 1:i + 3]
        if len(escape) < 2 or not _HEX.issuperset(escape):
            raise BadRequestPath("invalid percent-encoding in the request path")
        char = chr(int(escape, 16))
        out.append(char if char in _UNRESERVED else "%" + escape.upper())
        i += 3
    normalized = "".join(out)
    if _VALID_ENCODED.issuperset(normalized):
        return normalized
    return _goEscapePath(_unescape(rawPath))


def _unescape(rawPath: str) -> bytes:
    raw = rawPath.encode("utf-8", "surrogateescape")
    decoded = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == 0x25:  # "%", already checked to be followed by two hex digits
            decoded.append(int(raw[i + 1:i + 3], 16))
            i += 3
        else:
            decoded.append(raw[i])
            i += 1
    return bytes(decoded)


def _goEscapePath(path: bytes) -> str:
    return "".join(chr(b) if chr(b) in _PATH_SAFE else f"%{b:02X}" for b in path)


def cleanPath(path: str) -> str:
    """
    Go's C{path.Clean} of a rooted path (dot segments and duplicate slashes
    removed), keeping a trailing slash as Go's C{URL.JoinPath} does.
    """
    if path in ("", "/"):
        return "/"
    if "//" not in path and "/." not in path and path[:1] == "/":
        return path
    parts: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if parts:
                parts.pop()
            continue
        parts.append(segment)
    cleaned = "/" + "/".join(parts)
    if path.endswith("/") and not cleaned.endswith("/"):
        cleaned += "/"
    return cleaned


def routeRequest(
    host: str,
    path: str,
    rawQuery: str,
    method: str,
    headers: Callable[[str], Sequence[str]],
    clientIP: str,
    encodeQuerySemicolons: bool = False,
) -> RouteRequest:
    """
    The matcher view of a request, from its Host header and its path as already
    normalised by L{normalizePath} (and L{cleanPath}).

    @raise BadRequestPath: if the path has a malformed percent-escape.
    """
    try:
        routing = routingPath(path)
    except ValueError as e:
        raise BadRequestPath(str(e)) from None
    if ";" in rawQuery:
        rawQuery = rawQuery.replace(";", "%3B" if encodeQuerySemicolons else "&")
    return RouteRequest(
        host=canonicalRequestHost(host),
        rawHost=host,
        path=routing,
        method=method,
        rawQuery=rawQuery,
        headers=headers,
        clientIP=clientIP,
    )
