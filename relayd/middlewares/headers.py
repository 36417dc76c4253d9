"""
The C{headers} middleware: custom request and response headers, CORS, and the
security headers, as Traefik v3 does them.

Traefik builds it from two layers (C{pkg/middlewares/headers}):

  - the outer one (custom headers and CORS) answers CORS preflight requests
    itself, then sets or removes the custom request headers, and on the way
    back sets the custom response headers and then the CORS response headers;
  - the inner one (the security headers, from the unrolled/secure library)
    refuses hosts not in C{allowedHosts} and, on the way back, sets the
    security headers it computed when the request went through.

A layer exists only when its settings are used. Because the inner layer's
response headers are applied first, a custom response header wins over a
security header of the same name (and an empty one removes it); both override
what the upstream answered. A preflight answer carries neither the custom
response headers nor the security headers, and is given before the
C{allowedHosts} check.

Where Go's request differs from a Twisted one:

  - Go's C{Header.Get} is the first value of a header; Twisted's C{getHeader}
    is the last, so the first raw value is read here.
  - Go's C{r.Host} is the authority of an absolute-form request target, else
    the Host header; a C{Host} custom request header replaces it: it sets the
    Host header (which the proxy sends) and C{request.relaydHostOverride}
    (which a later headers middleware reads as the host).
  - A custom request header C{X-Forwarded-For} (spelt exactly so) with an empty
    value makes Go's reverse proxy send no X-Forwarded-For at all. Here the
    header is removed and the request is marked with
    C{relaydOmitXForwardedFor = True} for the forwarder to honour.
"""

from __future__ import annotations

import base64
import os
import re
from typing import Any, Callable

from zope.interface import implementer

from relayd.config.middlewares import Headers
from relayd.interfaces import IHTTPHandler
from relayd.proxy.responses import plainResponse
from relayd.runtime.build import BuildContext, BuildError, ObjectInfo
from relayd.runtime.gocompat import RegexError, canonicalHeaderKey, compileGoRegexp

_NONCE_TEMPLATE = "%[1]s"
_VERB = re.compile(r"%(?:(%)|\[([0-9]+)\]([sv])|([sv]))")
_ABSOLUTE_FORM = re.compile(rb"^([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)")


def buildHeaders(context: BuildContext, info: ObjectInfo, next: Any, chain: tuple[str, ...]) -> Any:
    """
    Wrap C{next} in the headers middleware described by C{info}: the custom
    headers and CORS layer outside the security headers layer, each present
    only when configured.

    @raise BuildError: if nothing is configured or an origin regexp does not
        compile.
    """
    config: Headers = info.config.config()
    hasSecure = config.hasSecureHeaders()
    hasCustom = config.hasCustomHeaders()
    hasCors = config.hasCorsHeaders()
    if not (hasSecure or hasCustom or hasCors):
        raise BuildError("headers configuration not valid")
    handler = next
    if hasSecure:
        handler = SecureHeaders(handler, config)
    if hasCustom or hasCors:
        handler = CustomHeaders(handler, config)
    return handler


def _encode(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def _decode(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def _first(headers: Any, name: bytes) -> bytes:
    """
    Go's C{Header.Get}: the first value of C{name}, or empty.
    """
    values = headers.getRawHeaders(name)
    return values[0] if values else b""


def _equalFold(a: str, b: str) -> bool:
    """
    Go's C{strings.EqualFold}: equal under simple Unicode case folding.
    """
    if a.isascii() and b.isascii():
        return a.lower() == b.lower()
    if len(a) != len(b):
        return False
    return all(x == y or x.lower() == y.lower() or x.upper() == y.upper() for x, y in zip(a, b))


def _absoluteForm(request: Any) -> tuple[bytes, bytes] | None:
    """
    The scheme and authority of an absolute-form request target, if it is one.
    """
    match = _ABSOLUTE_FORM.match(request.uri or b"")
    if match is None:
        return None
    return match.group(1), match.group(2).rpartition(b"@")[2]


def goHost(request: Any) -> bytes:
    """
    What Go's C{r.Host} holds for C{request} at this point: a Host set by a
    headers middleware, else the authority of an absolute-form target, else
    the Host header.
    """
    override = getattr(request, "relaydHostOverride", None)
    if override is not None:
        return override  # type: ignore[no-any-return]
    absolute = _absoluteForm(request)
    if absolute is not None and absolute[1]:
        return absolute[1]
    return _first(request.requestHeaders, b"host")


@implementer(IHTTPHandler)
class CustomHeaders:
    """
    Traefik's C{Header}: CORS preflight answers, custom request headers, and
    the custom and CORS response headers.
    """

    def __init__(self, next: Any, config: Headers) -> None:
        self.next = next
        self.config = config
        self.hasCustomHeaders = config.hasCustomHeaders()
        self.hasCorsHeaders = config.hasCorsHeaders()
        regexes = []
        for pattern in config.accessControlAllowOriginListRegex:
            try:
                regexes.append(compileGoRegexp(pattern))
            except RegexError as e:
                raise BuildError(f"error occurred during origin parsing: {e}") from None
        self.allowOriginRegexes = regexes
        self.requestHeaders = [(name, value) for name, value in config.customRequestHeaders.items()]
        self.responseHeaders = [
            (name.encode("latin-1"), _encode(value)) for name, value in config.customResponseHeaders.items()
        ]
        credentials = config.accessControlAllowCredentials
        self.allowHeaders = _encode(",".join(config.accessControlAllowHeaders))
        self.allowHeadersEcho = "*" in config.accessControlAllowHeaders and credentials
        self.allowMethods = _encode(",".join(config.accessControlAllowMethods))
        self.allowMethodsEcho = "*" in config.accessControlAllowMethods and credentials
        self.exposeHeaders = b""
        if config.accessControlExposeHeaders and not ("*" in config.accessControlExposeHeaders and credentials):
            self.exposeHeaders = _encode(",".join(config.accessControlExposeHeaders))

    def handle(self, request: Any) -> None:
        if self.hasCorsHeaders and self._isPreflight(request):
            self._answerPreflight(request)
            return
        if self.hasCustomHeaders:
            self._modifyRequestHeaders(request)
        request.relayd.beforeResponse.append(self._modifyResponseHeaders)
        self.next.handle(request)

    def matchOrigin(self, origin: str) -> str | None:
        """
        The Access-Control-Allow-Origin value for C{origin}, or L{None} if it is
        not allowed: the first list entry equal to it or C{"*"} (the origin
        itself when credentials are allowed, as a wildcard cannot be used
        with them), else the origin if a regexp matches part of it.
        """
        for item in self.config.accessControlAllowOriginList:
            if item == origin:
                return item
            if item == "*":
                return origin if self.config.accessControlAllowCredentials else item
        for regex in self.allowOriginRegexes:
            if regex.search(origin):
                return origin
        return None

    def _isPreflight(self, request: Any) -> bool:
        headers = request.requestHeaders
        return bool(
            request.method == b"OPTIONS"
            and _first(headers, b"access-control-request-method")
            and _first(headers, b"origin")
        )

    def _answerPreflight(self, request: Any) -> None:
        if request.finished or getattr(request, "_disconnected", False):
            return
        config = self.config
        incoming = request.requestHeaders
        out = request.responseHeaders
        if config.accessControlAllowCredentials:
            out.setRawHeaders(b"access-control-allow-credentials", [b"true"])
        if self.allowHeadersEcho:
            requested = _first(incoming, b"access-control-request-headers")
            if requested:
                out.setRawHeaders(b"access-control-allow-headers", [requested])
        elif self.allowHeaders:
            out.setRawHeaders(b"access-control-allow-headers", [self.allowHeaders])
        if self.allowMethodsEcho:
            out.setRawHeaders(b"access-control-allow-methods", [_first(incoming, b"access-control-request-method")])
        elif self.allowMethods:
            out.setRawHeaders(b"access-control-allow-methods", [self.allowMethods])
        match = self.matchOrigin(_decode(_first(incoming, b"origin")))
        if match is not None:
            out.setRawHeaders(b"access-control-allow-origin", [_encode(match)])
        if config.accessControlMaxAge is not None:
            out.setRawHeaders(b"access-control-max-age", [str(config.accessControlMaxAge).encode()])
        if self.exposeHeaders:
            out.setRawHeaders(b"access-control-expose-headers", [self.exposeHeaders])
        out.setRawHeaders(b"content-length", [b"0"])
        request.setResponseCode(200)
        request.finish()

    def _modifyRequestHeaders(self, request: Any) -> None:
        headers = request.requestHeaders
        for name, value in self.requestHeaders:
            key = name.encode("latin-1")
            if value == "":
                if name == "X-Forwarded-For":
                    # Go keeps the key with a nil value: its proxy then adds none.
                    headers.removeHeader(key)
                    request.relaydOmitXForwardedFor = True
                elif canonicalHeaderKey(name) != "Host":
                    # Go's Header.Del("Host") is a no-op: the host is not a header there.
                    headers.removeHeader(key)
            elif _equalFold(name, "Host"):
                headers.setRawHeaders(b"host", [_encode(value)])
                request.relaydHostOverride = _encode(value)
            else:
                headers.setRawHeaders(key, [_encode(value)])

    def _modifyResponseHeaders(self, request: Any) -> None:
        config = self.config
        out = request.responseHeaders
        for name, value in self.responseHeaders:
            if value:
                out.setRawHeaders(name, [value])
            else:
                out.removeHeader(name)
        match = self.matchOrigin(_decode(_first(request.requestHeaders, b"origin")))
        if match is not None:
            out.setRawHeaders(b"access-control-allow-origin", [_encode(match)])
        if config.accessControlAllowCredentials:
            out.setRawHeaders(b"access-control-allow-credentials", [b"true"])
        if self.exposeHeaders:
            out.setRawHeaders(b"access-control-expose-headers", [self.exposeHeaders])
        if not config.addVaryHeader:
            return
        vary = _first(out, b"vary")
        if vary == b"Origin":
            return
        out.setRawHeaders(b"vary", [vary + b",Origin" if vary else b"Origin"])


def cspNonce() -> str:
    """
    A fresh CSP nonce as unrolled/secure makes it: 16 random bytes in base64
    without padding.
    """
    return base64.b64encode(os.urandom(16)).rstrip(b"=").decode("ascii")


def sprintfNonce(template: str, nonce: str) -> str:
    """
    Go's C{fmt.Sprintf(template, nonce)} for the verbs a policy can hold:
    C{%%}, C{%s}, C{%v} and their C{%[1]s} forms; an argument no verb used is
    appended as Go does (C{%!(EXTRA string=...)}). Other C{%} sequences are
    left as they are.
    """
    used = False
    reordered = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal used, reordered
        if match.group(1):
            return "%"
        if match.group(2) is not None:
            reordered = True
            if match.group(2) != "1":
                return f"%!{match.group(3)}(BADINDEX)"
            used = True
            return nonce
        if used:
            return f"%!{match.group(4)}(MISSING)"
        used = True
        return nonce

    result = _VERB.sub(substitute, template)
    if not reordered and not used:
        result += f"%!(EXTRA string={nonce})"
    return result


@implementer(IHTTPHandler)
class SecureHeaders:
    """
    Traefik's secure headers (unrolled/secure as Traefik configures it): the
    allowed hosts check, then the security response headers.
    """

    def __init__(self, next: Any, config: Headers, nonce: Callable[[], str] = cspNonce) -> None:
        self.next = next
        self.config = config
        self.nonce = nonce
        self.hostsProxyHeaders = [name.encode("latin-1") for name in config.hostsProxyHeaders]
        self.sslProxyHeaders = [
            (name.encode("latin-1"), _encode(value)) for name, value in config.sslProxyHeaders.items()
        ]
        self.csp = config.contentSecurityPolicy.replace("$NONCE", "'nonce-%[1]s'")
        self.cspReportOnly = config.contentSecurityPolicyReportOnly.replace("$NONCE", "'nonce-%[1]s'")
        self.nonceEnabled = _NONCE_TEMPLATE in self.csp or _NONCE_TEMPLATE in self.cspReportOnly
        self.staticHeaders = self._staticHeaders()

    def _staticHeaders(self) -> list[tuple[bytes, bytes]]:
        config = self.config
        headers: list[tuple[bytes, bytes]] = []
        if config.customFrameOptionsValue:
            headers.append((b"X-Frame-Options", _encode(config.customFrameOptionsValue)))
        elif config.frameDeny:
            headers.append((b"X-Frame-Options", b"DENY"))
        if config.contentTypeNosniff:
            headers.append((b"X-Content-Type-Options", b"nosniff"))
        if config.customBrowserXSSValue:
            headers.append((b"X-XSS-Protection", _encode(config.customBrowserXSSValue)))
        elif config.browserXssFilter:
            headers.append((b"X-XSS-Protection", b"1; mode=block"))
        return headers

    def isSSL(self, request: Any) -> bool:
        """
        Whether unrolled/secure takes C{request} for HTTPS: a TLS connection,
        an https absolute-form target, or a request header with the value
        C{sslProxyHeaders} gives it (an empty value matches a missing header).
        """
        if request.isSecure():
            return True
        absolute = _absoluteForm(request)
        if absolute is not None and absolute[0].lower() == b"https":
            return True
        return any(_first(request.requestHeaders, name) == value for name, value in self.sslProxyHeaders)

    def requestHost(self, request: Any) -> bytes:
        """
        The host the allowed-hosts check sees: the first non-empty
        C{hostsProxyHeaders} header, else the request host.
        """
        for name in self.hostsProxyHeaders:
            value = _first(request.requestHeaders, name)
            if value:
                return value
        return goHost(request)

    def responseHeaders(self, request: Any) -> list[tuple[bytes, bytes]]:
        """
        The security headers to set on the answer to C{request}.
        """
        config = self.config
        ssl = self.isSSL(request)
        headers: list[tuple[bytes, bytes]] = []
        if config.stsSeconds and (ssl or config.forceSTSHeader) and not config.isDevelopment:
            flags = ""
            if config.stsIncludeSubdomains:
                flags += "; includeSubDomains"
            if config.stsPreload:
                flags += "; preload"
            headers.append((b"Strict-Transport-Security", f"max-age={config.stsSeconds}{flags}".encode()))
        headers.extend(self.staticHeaders)
        if config.publicKey and ssl and not config.isDevelopment:
            headers.append((b"Public-Key-Pins", _encode(config.publicKey)))
        nonce = self.nonce() if self.nonceEnabled else ""
        if self.csp:
            headers.append((b"Content-Security-Policy", _encode(self._withNonce(self.csp, nonce))))
        if self.cspReportOnly:
            value = self._withNonce(self.cspReportOnly, nonce)
            headers.append((b"Content-Security-Policy-Report-Only", _encode(value)))
        if config.referrerPolicy:
            headers.append((b"Referrer-Policy", _encode(config.referrerPolicy)))
        if config.permissionsPolicy:
            headers.append((b"Permissions-Policy", _encode(config.permissionsPolicy)))
        return headers

    def _withNonce(self, template: str, nonce: str) -> str:
        # unrolled/secure formats both policies with fmt.Sprintf(policy, nonce)
        # whenever either holds a nonce.
        if not self.nonceEnabled:
            return template
        return sprintfNonce(template, nonce)

    def handle(self, request: Any) -> None:
        config = self.config
        if config.allowedHosts and not config.isDevelopment:
            host = _decode(self.requestHost(request))
            if not any(_equalFold(allowed, host) for allowed in config.allowedHosts):
                plainResponse(request, 500, "Bad Host\n")
                return
        headers = self.responseHeaders(request)
        if headers:

            def apply(request: Any) -> None:
                out = request.responseHeaders
                for name, value in headers:
                    out.setRawHeaders(name, [value])

            request.relayd.beforeResponse.append(apply)
        self.next.handle(request)
