"""
The redirect middlewares, C{redirectScheme} and C{redirectRegex}, as Traefik
v3 does them (C{pkg/middlewares/redirect}).

Both build the request's URL as a string, C{scheme://host[:port]<RequestURI>},
and when a regexp matches it they replace the match (Go's
C{ReplaceAllString}, with Go's C{$1}, C{${1}}, C{${name}}, C{$$} expansion)
and parse the result with Go's C{url.Parse}:

  - a result Go cannot parse is answered C{502} with the body C{Bad Gateway}
    (Traefik's oxy error handler sees C{*url.Error}, a C{net.Error});
  - a result that differs from the URL is a redirect: C{Location} is the
    parsed URL written back by Go's C{URL.String} (so C{HTTPS://a/b c}
    becomes C{https://a/b%20c}), the status is 302 for GET and 307 for any
    other method, or 301 and 308 when C{permanent}, and the body is the
    status text (C{Found}...) as C{text/plain; charset=utf-8};
  - a result equal to the URL lets the request through, with the path and
    query of the parsed URL (Traefik sets C{req.URL} to it).

C{redirectRegex} builds the URL as C{http}, or C{https} over TLS, then the
request host (Go's C{r.Host}: the authority of an absolute-form target, else
the Host header, port included), then the request URI. C{redirectScheme} takes
the port off the host (Go's C{net.SplitHostPort}), lets a trusted
C{X-Forwarded-Proto} of C{http}/C{ws} or C{https}/C{wss} choose the scheme,
drops C{:80} for http and C{:443} for https, and rewrites the URL with
C{^(https?://)?(\\[[\\w:.]+\\]|[\\w._-]+)?(:\\d+)?(.*)$} into
C{<scheme>://${2}<:port>${4}}, where the port is left out when it is the
default of the target scheme; so a request already on the target scheme and
port is not redirected.

Where relayd's view of the request differs from Go's, and what is done:

  - Go's C{req.RequestURI} at this point is C{URL.RequestURI()} (the
    entrypoint's C{sanitizePath}, on by default, and every path middleware
    set it so): the path to forward, or C{/}, then C{?} and the query. With
    C{sanitizePath} off and the path untouched, Go keeps the request target
    as the client sent it, and so does relayd: an absolute-form target
    (C{GET http://[::1]:80/ HTTP/1.1}) then gives its scheme, host and port
    through Traefik's C{^(https?)://...} regexp, as in Traefik's tests.
  - Traefik's entrypoint drops an untrusted client's X-Forwarded-Proto and
    sets its own from TLS before any middleware runs; relayd leaves the
    headers alone until forwarding, so the header is read here only when the
    entrypoint trusts the client (C{forwardedHeaders}), else the scheme comes
    from TLS, which is what Traefik's own value says.
  - With a Host header holding an IPv6 address and a port (C{[::1]:8080}),
    Go's C{net.SplitHostPort} drops the brackets and Traefik builds
    C{https://::1...}, which Go 1.26's C{url.Parse} (Traefik v3.6 is built
    with it) refuses: relayd answers 502 as Traefik does. Without a port the
    brackets stay and the redirect works.
  - A Host set by a C{headers} middleware (C{request.relaydHostOverride})
    is Go's C{r.Host} and is used.
  - Go's C{url.Parse} is reproduced as of Go 1.26, including its refusal of
    colons in a host name, of a bracketed host that is not an IPv6 address
    and of an IPv6 literal that does not start the host.
"""

from __future__ import annotations

import ipaddress
from http import HTTPStatus
from typing import Any, Callable
from urllib.parse import urlsplit

from zope.interface import implementer

from relayd.interfaces import IHTTPHandler
from relayd.middlewares.paths import (
    FRAGMENT,
    HOST,
    USER_PASSWORD,
    ZONE,
    GoPath,
    GoRegexp,
    GoURLError,
    compileRegexp,
    decode,
    encode,
    goEscape,
    goQuote,
    goUnescape,
    pathChanged,
    setCurrentPath,
    validEncoded,
)
from relayd.runtime.build import BuildContext, BuildError, ObjectInfo
from relayd.runtime.gocompat import splitHostPort
from relayd.runtime.routing import normalizePath

_URI_REGEXP = GoRegexp(r"^(https?):\/\/(\[[\w:.]+\]|[\w\._-]+)?(:\d+)?(.*)$")
SCHEME_URI_PATTERN = r"^(https?:\/\/)?(\[[\w:.]+\]|[\w\._-]+)?(:\d+)?(.*)$"
_USERINFO_OK = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._:~!$&'()*+,;=%@")


# Go's url.Parse and URL.String, on bytes.


class GoURL:
    """
    The fields of a Go C{url.URL}, as bytes.
    """

    def __init__(self) -> None:
        self.scheme = b""
        self.opaque = b""
        self.user: tuple[bytes, bytes | None] | None = None
        self.host = b""
        self.path = b""
        self.rawPath = b""
        self.omitHost = False
        self.forceQuery = False
        self.rawQuery = b""
        self.fragment = b""
        self.rawFragment = b""

    def escapedPath(self) -> bytes:
        return GoPath(self.path, self.rawPath).escaped()

    def escapedFragment(self) -> bytes:
        if self.rawFragment and validEncoded(self.rawFragment, FRAGMENT):
            try:
                if goUnescape(self.rawFragment, FRAGMENT) == self.fragment:
                    return self.rawFragment
            except GoURLError:
                pass
        return goEscape(self.fragment, FRAGMENT)

    def string(self) -> bytes:
        """
        Go's C{URL.String}.
        """
        out = bytearray()
        if self.scheme:
            out += self.scheme + b":"
        if self.opaque:
            out += self.opaque
        else:
            if self.scheme or self.host or self.user is not None:
                if not (self.omitHost and not self.host and self.user is None):
                    if self.host or self.path or self.user is not None:
                        out += b"//"
                    if self.user is not None:
                        username, password = self.user
                        out += goEscape(username, USER_PASSWORD)
                        if password is not None:
                            out += b":" + goEscape(password, USER_PASSWORD)
                        out += b"@"
                    if self.host:
                        out += goEscape(self.host, HOST)
            path = self.escapedPath()
            if path and not path.startswith(b"/") and self.host:
                out += b"/"
            if not out and b":" in path.partition(b"/")[0]:
                out += b"./"
            out += path
        if self.forceQuery or self.rawQuery:
            out += b"?" + self.rawQuery
        if self.fragment:
            out += b"#" + self.escapedFragment()
        return bytes(out)


def _getScheme(raw: bytes) -> tuple[bytes, bytes]:
    for i, c in enumerate(raw):
        if 0x61 <= c <= 0x7A or 0x41 <= c <= 0x5A:
            continue
        if 0x30 <= c <= 0x39 or c in b"+-.":
            if i == 0:
                return b"", raw
            continue
        if c == 0x3A:
            if i == 0:
                raise GoURLError("missing protocol scheme")
            return raw[:i], raw[i + 1 :]
        return b"", raw
    return b"", raw


def _validOptionalPort(port: bytes) -> bool:
    if not port:
        return True
    return port[:1] == b":" and all(0x30 <= c <= 0x39 for c in port[1:])


def _parseHost(host: bytes) -> bytes:
    if host.startswith(b"["):
        end = host.rfind(b"]")
        if end < 0:
            raise GoURLError("missing ']' in host")
        colonPort = host[end + 1 :]
        if not _validOptionalPort(colonPort):
            raise GoURLError(f"invalid port {goQuote(colonPort)} after host")
        zone = host.find(b"%25", 0, end)
        literal = host[1 : zone if zone >= 0 else end]
        try:
            ipaddress.IPv6Address(literal.decode("ascii"))
        except ValueError:
            raise GoURLError(f"invalid IP-literal {goQuote(literal)}") from None
        if zone >= 0:
            return goUnescape(host[:zone], HOST) + goUnescape(host[zone:end], ZONE) + goUnescape(host[end:], HOST)
    else:
        if b"[" in host:
            raise GoURLError("IPv6 literal not at start of host")
        colon = host.find(b":")
        if colon >= 0 and not _validOptionalPort(host[colon:]):
            raise GoURLError(f"invalid port {goQuote(host[colon:])} after host")
    return goUnescape(host, HOST)


def _parseAuthority(authority: bytes) -> tuple[tuple[bytes, bytes | None] | None, bytes]:
    at = authority.rfind(b"@")
    host = _parseHost(authority[at + 1 :] if at >= 0 else authority)
    if at < 0:
        return None, host
    userinfo = authority[:at]
    if not all(c in _USERINFO_OK for c in userinfo):
        raise GoURLError("net/url: invalid userinfo")
    if b":" not in userinfo:
        return (goUnescape(userinfo, USER_PASSWORD), None), host
    username, _, password = userinfo.partition(b":")
    return (goUnescape(username, USER_PASSWORD), goUnescape(password, USER_PASSWORD)), host


def parseGoURL(raw: bytes) -> GoURL:
    """
    Go's C{url.Parse}.

    @raise GoURLError: where Go returns an error.
    """
    rest, _, fragment = raw.partition(b"#")
    if any(c < 0x20 or c == 0x7F for c in rest):
        raise GoURLError("net/url: invalid control character in URL")
    url = GoURL()
    if rest == b"*":
        url.path = b"*"
    else:
        scheme, rest = _getScheme(rest)
        url.scheme = scheme.lower()
        if rest.endswith(b"?") and rest.count(b"?") == 1:
            url.forceQuery = True
            rest = rest[:-1]
        else:
            rest, _, url.rawQuery = rest.partition(b"?")
        if url.scheme and not rest.startswith(b"/"):
            url.opaque = rest  # a rootless path is opaque
        else:
            if not rest.startswith(b"/") and b":" in rest.partition(b"/")[0]:
                raise GoURLError("first path segment in URL cannot contain colon")
            if (url.scheme or not rest.startswith(b"///")) and rest.startswith(b"//"):
                authority, slash, path = rest[2:].partition(b"/")
                rest = slash + path
                url.user, url.host = _parseAuthority(authority)
            elif url.scheme and rest.startswith(b"/"):
                url.omitHost = True
            parsed = GoPath.fromEscaped(rest)
            url.path, url.rawPath = parsed.path, parsed.rawPath
    if fragment:
        url.fragment = goUnescape(fragment, FRAGMENT)
        url.rawFragment = b"" if goEscape(url.fragment, FRAGMENT) == fragment else fragment
    return url


# The request as Go's redirect middleware sees it.


def _firstHeader(request: Any, name: bytes) -> bytes:
    values = request.requestHeaders.getRawHeaders(name)
    return values[0] if values else b""


def requestHost(request: Any) -> str:
    """
    Go's C{r.Host}: a Host set by a headers middleware, else the authority of
    an absolute-form request target, else the (first) Host header.
    """
    override = getattr(request, "relaydHostOverride", None)
    if override is not None:
        return decode(override)
    uri = decode(request.uri or b"")
    if uri.startswith(("http://", "https://")):
        authority = urlsplit(uri).netloc.rpartition("@")[2]
        if authority:
            return authority
    return decode(_firstHeader(request, b"host"))


def _entryPointHTTP(context: Any) -> Any:
    try:
        return context.runtime.static.entryPoints[context.entryPoint].http
    except (AttributeError, KeyError, TypeError):
        return None


def requestURI(request: Any) -> str:
    """
    Go's C{req.RequestURI} when a redirect middleware runs: the request
    target as sent when the entrypoint does not sanitize paths and nothing
    has rewritten it, else the path to forward and the query.
    """
    context = request.relayd
    http = _entryPointHTTP(context)
    if http is not None and not http.sanitizePath and not pathChanged(request):
        raw = decode(request.uri or b"")
        if raw.startswith(("http://", "https://")):
            parts = urlsplit(raw)
            rawPath, rawQuery = parts.path, parts.query
        else:
            rawPath, _, rawQuery = raw.partition("?")
        try:
            normalized = rawPath if rawPath in ("", "*") else normalizePath(rawPath)
        except ValueError:
            normalized = None
        rewritten = normalized != rawPath or http.encodeQuerySemicolons and ";" in rawQuery
        if not rewritten and context.forwardPath == (rawPath or "/"):
            return raw
    query = context.rawQuery
    return context.forwardPath + ("?" + query if query else "")


# The characters outside ASCII that Unicode simple case folding ties to an ASCII letter.
_FOLDS_TO_ASCII = {"\u017f": "s", "\u212a": "k"}


def _equalFold(text: str, lowerASCII: str) -> bool:
    """
    Go's C{strings.EqualFold} against a lower-case ASCII word.
    """
    return len(text) == len(lowerASCII) and all(
        char.lower() == expected or _FOLDS_TO_ASCII.get(char) == expected for char, expected in zip(text, lowerASCII)
    )


def _uriParts(uri: str) -> tuple[str, str, str, str] | None:
    match = _URI_REGEXP.findStringSubmatch(uri)
    if match is None:
        return None
    return match[1], match[2], match[3], match[4]


def regexURL(request: Any) -> str:
    """
    The URL C{redirectRegex} matches: Traefik's C{rawURL}.
    """
    scheme, host, port, uri = _requestURL(request, requestHost(request), "")
    return f"{scheme}://{host}{port}{uri}"


def _requestURL(request: Any, host: str, port: str) -> tuple[str, str, str, str]:
    """
    Scheme, host, port and request URI of a request: an absolute-form target's
    parts win over the Host header's, and TLS makes the scheme https.
    """
    scheme = "http"
    uri = requestURI(request)
    parts = _uriParts(uri)
    if parts is not None:
        scheme = parts[0]
        host = parts[1] or host
        port = parts[2] or port
        uri = parts[3]
    if request.isSecure():
        scheme = "https"
    return scheme, host, port, uri


def schemeURL(request: Any) -> str:
    """
    The URL C{redirectScheme} matches: Traefik's C{clientRequestURL}.
    """
    host = requestHost(request)
    try:
        host, port = splitHostPort(host)
        port = ":" + port
    except ValueError:
        port = ""
    scheme, host, port, uri = _requestURL(request, host, port)
    # The entrypoint already dropped an untrusted client's value and set its own.
    proto = decode(_firstHeader(request, b"x-forwarded-proto"))
    if proto:
        if _equalFold(proto, "http") or _equalFold(proto, "ws"):
            scheme = "http"
        elif _equalFold(proto, "https") or _equalFold(proto, "wss"):
            scheme = "https"
    if scheme == "http" and port == ":80" or scheme == "https" and port == ":443":
        port = ""
    return f"{scheme}://{host}{port}{uri}"


# Answers.


def _answer(request: Any, code: int, headers: dict[bytes, bytes]) -> None:
    """
    Answer as Go's server does for a handler that writes the status text: a
    sniffed text/plain body with its length.
    """
    if getattr(request, "startedWriting", False) or request.finished or getattr(request, "_disconnected", False):
        return
    body = HTTPStatus(code).phrase.encode("ascii")
    request.setResponseCode(code)
    for name, value in headers.items():
        request.responseHeaders.setRawHeaders(name, [value])
    request.responseHeaders.setRawHeaders(b"content-type", [b"text/plain; charset=utf-8"])
    request.responseHeaders.setRawHeaders(b"content-length", [str(len(body)).encode()])
    if request.method != b"HEAD":
        request.write(body)
    request.finish()


def redirectStatus(method: bytes, permanent: bool) -> int:
    """
    Traefik's redirect status: 302 (301 if permanent) for GET, 307 (308)
    for every other method.
    """
    if permanent:
        return 301 if method == b"GET" else 308
    return 302 if method == b"GET" else 307


@implementer(IHTTPHandler)
class Redirect:
    """
    Redirects when the regexp matches the request URL and the replacement
    changes it.
    """

    def __init__(
        self,
        next: Any,
        regexp: GoRegexp,
        replacement: str,
        permanent: bool,
        rawURL: Callable[[Any], str],
    ) -> None:
        self.next = next
        self.regexp = regexp
        self.replacement = replacement
        self.permanent = permanent
        self.rawURL = rawURL

    def handle(self, request: Any) -> None:
        oldURL = self.rawURL(request)
        if not self.regexp.matchString(oldURL):
            self.next.handle(request)
            return
        newURL = self.regexp.replaceAllString(oldURL, self.replacement)
        try:
            parsed = parseGoURL(encode(newURL))
        except GoURLError:
            _answer(request, 502, {})
            return
        if newURL != oldURL:
            status = redirectStatus(request.method, self.permanent)
            _answer(request, status, {b"location": parsed.string()})
            return
        setCurrentPath(request, GoPath(parsed.path, parsed.rawPath))
        # Traefik's proxy turns semicolons of the query into ampersands.
        request.relayd.rawQuery = decode(parsed.rawQuery).replace(";", "&")
        self.next.handle(request)


def buildRedirectScheme(context: BuildContext, info: ObjectInfo, next: Any, chain: tuple[str, ...]) -> Any:
    """
    The C{redirectScheme} middleware.

    @raise BuildError: if no scheme is given.
    """
    config = info.config.config()
    if not config.scheme:
        raise BuildError("you must provide a target scheme")
    port = ""
    if config.port and not (
        config.scheme == "http" and config.port == "80" or config.scheme == "https" and config.port == "443"
    ):
        port = ":" + config.port
    regexp = compileRegexp(SCHEME_URI_PATTERN)
    return Redirect(next, regexp, config.scheme + "://${2}" + port + "${4}", config.permanent, schemeURL)


def buildRedirectRegex(context: BuildContext, info: ObjectInfo, next: Any, chain: tuple[str, ...]) -> Any:
    """
    The C{redirectRegex} middleware.

    @raise BuildError: if the regexp does not compile.
    """
    config = info.config.config()
    return Redirect(next, compileRegexp(config.regex), config.replacement, config.permanent, regexURL)
