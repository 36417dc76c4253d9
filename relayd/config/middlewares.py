"""
Configuration models of the HTTP and TCP middlewares (Traefik's
C{http.middlewares.<name>} and C{tcp.middlewares.<name>}), with Traefik v3's
keys and defaults.

A middleware is one table holding exactly one kind (L{HTTPMiddleware},
L{TCPMiddleware}). Checks that Traefik makes when it builds a middleware are made
here, at decoding time, so that a bad middleware is reported with its key path.
References to other objects (C{chain.middlewares}, C{errors.service}) stay plain
strings: resolving them is the job of the runtime configuration.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Iterable, Iterator, Literal
from urllib.parse import urlsplit

import attrs

from relayd.config.schema import OneOf, field
from relayd.config.types import Duration, FrozenMap

frozen = attrs.frozen(kw_only=True)

MIB = 1024 * 1024

Problems = Iterator[tuple[str, str]]

# RFC 9110 token characters: what a header name (or a method) may contain.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_MEDIA_TYPE = re.compile(r"{0}(?:/{0})?".format(_TOKEN.pattern))
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_STATUS_RANGE = re.compile(r"([0-9]+)(?:-([0-9]+))?")


# Checks. Each raises ValueError with a message fit for a configuration error.


def _checkRegexp(pattern: str) -> None:
    """
    Raise C{ValueError} unless C{pattern} compiles as a Go (RE2) regexp, as
    Traefik compiles these.
    """
    from relayd.runtime.gocompat import RegexError, compileGoRegexp

    try:
        compileGoRegexp(pattern)
    except RegexError as e:
        raise ValueError(f"invalid regular expression {pattern!r}: {e}") from None


def _checkTrimmedRegexp(pattern: str) -> None:
    _checkRegexp(pattern.strip())


def _nonNegative(value: float) -> None:
    if value < 0:
        raise ValueError(f"must not be negative, got {value}")


def _positive(value: int) -> None:
    if value <= 0:
        raise ValueError(f"must be greater than 0, got {value}")


def _notBlank(value: str) -> None:
    if not value.strip():
        raise ValueError("must not be empty")


def _notEmpty(values: tuple[str, ...]) -> None:
    if not values:
        raise ValueError("must not be empty")


def _statusCode(value: int) -> None:
    if not 100 <= value <= 599:
        raise ValueError(f"must be an HTTP status code, got {value}")


def _absolutePath(value: str) -> None:
    if not value.startswith("/"):
        raise ValueError(f"must start with '/', got {value!r}")


def _nonEmptyPrefix(value: str) -> None:
    # Traefik accepts a prefix without a leading slash (it adds one).
    if not value:
        raise ValueError("must not be empty")


def _optionalHeaderName(value: str) -> None:
    if value and not _TOKEN.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid header name")


def _scheme(value: str) -> None:
    if not _SCHEME.fullmatch(value):
        raise ValueError(f"{value!r} is not a URL scheme such as https")


def _port(value: str) -> None:
    if value and not (value.isascii() and value.isdigit() and 0 < int(value) <= 65535):
        raise ValueError(f"{value!r} is not a port number from 1 to 65535")


def _httpURL(value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{value!r} is not an http:// or https:// URL")


def _ipv6Subnet(value: int) -> None:
    if not 0 < value <= 128:
        raise ValueError(f"must be from 1 to 128, got {value}")


def parseStatusRanges(spec: str) -> tuple[tuple[int, int], ...]:
    """
    Parse an error-page status entry: a code (C{"500"}), a range (C{"500-599"})
    or a comma-separated list of those (C{"404,418"}), into inclusive ranges.

    @raise ValueError: if C{spec} is none of those.
    """
    ranges = []
    for part in spec.split(","):
        match = _STATUS_RANGE.fullmatch(part.strip())
        if match is None:
            raise ValueError(f"{spec!r} is not a status code or range such as 500-599")
        low = int(match.group(1))
        high = int(match.group(2) or low)
        if low > high:
            raise ValueError(f"{spec!r} has a range whose start is above its end")
        ranges.append((low, high))
    return tuple(ranges)


def _ipRanges(key: str, values: Iterable[str]) -> Problems:
    for index, value in enumerate(values):
        try:
            ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            yield f"{key}[{index}]", f"{value!r} is not an IP address or CIDR range"


def _headerNames(key: str, names: Iterable[str]) -> Problems:
    for index, name in enumerate(names):
        if not _TOKEN.fullmatch(name):
            yield f"{key}[{index}]", f"{name!r} is not a valid header name"


def _headerMap(key: str, headers: FrozenMap[str, str]) -> Problems:
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            yield f"{key}.{name}", f"{name!r} is not a valid header name"
        elif any(c in value for c in "\r\n\0"):
            yield f"{key}.{name}", "header values may not contain CR, LF or NUL"


def _regexps(key: str, patterns: Iterable[str], strip: bool = False) -> Problems:
    for index, pattern in enumerate(patterns):
        try:
            _checkRegexp(pattern.strip() if strip else pattern)
        except ValueError as e:
            yield f"{key}[{index}]", str(e)


def _users(users: tuple[str, ...], fields: int, shape: str) -> Problems:
    # Never echo an entry: it holds a password hash.
    for index, user in enumerate(users):
        if user.count(":") != fields - 1:
            yield f"users[{index}]", f"must be of the form {shape}"


# Shared subsections


@frozen
class ClientTLS:
    """
    TLS settings for connections relayd makes to an authentication server or to
    Redis. C{ca}, C{cert} and C{key} are file paths or inline PEM.
    """

    __ignored__ = {
        "caoptional": "deprecated in Traefik: client authentication is a server "
        "setting; ignored",
    }

    ca: str = ""
    cert: str = ""
    key: str = field("", sensitive=True)
    insecureSkipVerify: bool = False


@frozen
class IPStrategy:
    """
    How the client IP is found: the remote address by default, the C{depth}-th
    X-Forwarded-For entry from the right, or the rightmost entry not in
    C{excludedIPs}.
    """

    depth: int = field(0, check=_nonNegative)
    excludedIPs: tuple[str, ...] = ()
    ipv6Subnet: int | None = field(None, check=_ipv6Subnet)

    def _validate(self) -> Problems:
        yield from _ipRanges("excludedIPs", self.excludedIPs)


@frozen
class SourceCriterion:
    """
    What requests are grouped by: an IP strategy, a request header or the
    request host; at most one may be set.
    """

    ipStrategy: IPStrategy | None = None
    requestHeaderName: str = field("", check=_optionalHeaderName)
    requestHost: bool = False

    def _validate(self) -> Problems:
        chosen = [
            self.ipStrategy is not None,
            bool(self.requestHeaderName),
            self.requestHost,
        ]
        if sum(chosen) > 1:
            yield "", "only one of ipStrategy, requestHeaderName and requestHost may be set"


# HTTP middleware kinds


@frozen
class AddPrefix:
    prefix: str = field(check=_nonEmptyPrefix)


@frozen
class BasicAuth:
    users: tuple[str, ...] = field((), sensitive=True, doc="user:hash entries")
    usersFile: str = ""
    realm: str = "traefik"
    removeHeader: bool = False
    headerField: str = field("", check=_optionalHeaderName)

    def _validate(self) -> Problems:
        if not self.users and not self.usersFile:
            yield "", "one of users or usersFile must be set"
        yield from _users(self.users, 2, "user:hash")


@frozen
class Buffering:
    maxRequestBodyBytes: int = field(0, check=_nonNegative, doc="0 means no limit")
    memRequestBodyBytes: int = field(MIB, check=_nonNegative)
    maxResponseBodyBytes: int = field(0, check=_nonNegative, doc="0 means no limit")
    memResponseBodyBytes: int = field(MIB, check=_nonNegative)
    retryExpression: str = ""


@frozen
class Chain:
    middlewares: tuple[str, ...] = field(check=_notEmpty)

    def _validate(self) -> Problems:
        for index, name in enumerate(self.middlewares):
            if not name.strip():
                yield f"middlewares[{index}]", "empty middleware name"


@frozen
class CircuitBreaker:
    expression: str = field(check=_notBlank)
    checkPeriod: Duration = field(Duration(0.1), check=_nonNegative)
    fallbackDuration: Duration = field(Duration(10), check=_nonNegative)
    recoveryDuration: Duration = field(Duration(10), check=_nonNegative)
    responseCode: int = field(503, check=_statusCode)


Encoding = Literal["gzip", "br", "zstd"]


@frozen
class Compress:
    excludedContentTypes: tuple[str, ...] = ()
    includedContentTypes: tuple[str, ...] = ()
    minResponseBodyBytes: int = field(1024, check=_nonNegative)
    encodings: tuple[Encoding, ...] = ("gzip", "br", "zstd")
    defaultEncoding: Literal["", "gzip", "br", "zstd"] = ""

    def _validate(self) -> Problems:
        if self.excludedContentTypes and self.includedContentTypes:
            yield "", "excludedContentTypes and includedContentTypes are mutually exclusive"
        for key in ("excludedContentTypes", "includedContentTypes"):
            for index, value in enumerate(getattr(self, key)):
                if not _MEDIA_TYPE.fullmatch(value.split(";", 1)[0].strip()):
                    yield f"{key}[{index}]", f"{value!r} is not a media type such as text/html"
        if not self.encodings:
            yield "encodings", "must list at least one encoding"
        elif self.defaultEncoding and self.defaultEncoding not in self.encodings:
            yield "defaultEncoding", f'"{self.defaultEncoding}" is not one of the encodings'


@frozen
class ContentType:
    autoDetect: bool | None = field(None, doc="deprecated in Traefik v3")


@frozen
class DigestAuth:
    users: tuple[str, ...] = field((), sensitive=True, doc="user:realm:hash entries")
    usersFile: str = ""
    removeHeader: bool = False
    realm: str = "traefik"
    headerField: str = field("", check=_optionalHeaderName)

    def _validate(self) -> Problems:
        yield from _users(self.users, 3, "user:realm:hash")


@frozen
class ErrorPage:
    status: tuple[str, ...] = ()
    statusRewrites: FrozenMap[str, int] = field(factory=FrozenMap)
    service: str = field(check=_notBlank)
    query: str = ""
    errorRequestHeaders: tuple[str, ...] | None = field(
        None, doc="None forwards every request header; () forwards none"
    )

    def statusRanges(self) -> tuple[tuple[int, int], ...]:
        """
        The inclusive status ranges of C{status}, flattened.
        """
        return tuple(r for spec in self.status for r in parseStatusRanges(spec))

    def _validate(self) -> Problems:
        for index, spec in enumerate(self.status):
            try:
                parseStatusRanges(spec)
            except ValueError as e:
                yield f"status[{index}]", str(e)
        for spec, code in self.statusRewrites.items():
            try:
                parseStatusRanges(spec)
                _statusCode(code)
            except ValueError as e:
                yield f"statusRewrites.{spec}", str(e)
        yield from _headerNames("errorRequestHeaders", self.errorRequestHeaders or ())


@frozen
class ForwardAuth:
    address: str = field(check=_httpURL)
    tls: ClientTLS | None = None
    trustForwardHeader: bool | None = field(
        None, doc="None keeps Traefik's legacy mixed handling of X-Forwarded-*"
    )
    authResponseHeaders: tuple[str, ...] = ()
    authResponseHeadersRegex: str = field("", check=_checkRegexp)
    authRequestHeaders: tuple[str, ...] = field((), doc="empty forwards every header")
    maxResponseBodySize: int = field(-1, doc="-1 means no limit")
    addAuthCookiesToResponse: tuple[str, ...] = ()
    headerField: str = field("", check=_optionalHeaderName)
    forwardBody: bool = False
    maxBodySize: int = field(-1, doc="-1 means no limit")
    preserveLocationHeader: bool = False
    preserveRequestMethod: bool = False

    def _validate(self) -> Problems:
        yield from _headerNames("authResponseHeaders", self.authResponseHeaders)
        yield from _headerNames("authRequestHeaders", self.authRequestHeaders)
        for key in ("maxResponseBodySize", "maxBodySize"):
            if getattr(self, key) < -1:
                yield key, f"must be -1 (no limit) or a number of bytes, got {getattr(self, key)}"


@frozen
class GrpcWeb:
    allowOrigins: tuple[str, ...] = ()


_REMOVED_HEADER_OPTION = "removed in Traefik v3 and has no effect; use {} instead; ignored"


@frozen
class Headers:
    __ignored__ = {
        "featurepolicy": _REMOVED_HEADER_OPTION.format("permissionsPolicy"),
        "sslredirect": _REMOVED_HEADER_OPTION.format("a redirectScheme middleware"),
        "ssltemporaryredirect": _REMOVED_HEADER_OPTION.format("a redirectScheme middleware"),
        "sslhost": _REMOVED_HEADER_OPTION.format("a redirectRegex middleware"),
        "sslforcehost": _REMOVED_HEADER_OPTION.format("a redirectRegex middleware"),
    }

    customRequestHeaders: FrozenMap[str, str] = field(
        factory=FrozenMap, doc="an empty value removes the header"
    )
    customResponseHeaders: FrozenMap[str, str] = field(
        factory=FrozenMap, doc="an empty value removes the header"
    )

    accessControlAllowCredentials: bool = False
    accessControlAllowHeaders: tuple[str, ...] = ()
    accessControlAllowMethods: tuple[str, ...] = ()
    accessControlAllowOriginList: tuple[str, ...] = ()
    accessControlAllowOriginListRegex: tuple[str, ...] = ()
    accessControlExposeHeaders: tuple[str, ...] = ()
    accessControlMaxAge: int | None = None
    addVaryHeader: bool = False

    allowedHosts: tuple[str, ...] = ()
    hostsProxyHeaders: tuple[str, ...] = ()
    sslProxyHeaders: FrozenMap[str, str] = field(factory=FrozenMap)
    stsSeconds: int | None = field(None, check=_nonNegative)
    stsIncludeSubdomains: bool = False
    stsPreload: bool = False
    forceSTSHeader: bool = False
    frameDeny: bool = False
    customFrameOptionsValue: str = ""
    contentTypeNosniff: bool = False
    browserXssFilter: bool = False
    customBrowserXSSValue: str = ""
    contentSecurityPolicy: str = ""
    contentSecurityPolicyReportOnly: str = ""
    publicKey: str = ""
    referrerPolicy: str = ""
    permissionsPolicy: str = ""
    isDevelopment: bool = False

    def hasCustomHeaders(self) -> bool:
        return bool(self.customRequestHeaders or self.customResponseHeaders)

    def hasCorsHeaders(self) -> bool:
        return bool(
            self.accessControlAllowCredentials
            or self.accessControlAllowHeaders
            or self.accessControlAllowMethods
            or self.accessControlAllowOriginList
            or self.accessControlAllowOriginListRegex
            or self.accessControlExposeHeaders
            or self.accessControlMaxAge is not None
            or self.addVaryHeader
        )

    def hasSecureHeaders(self) -> bool:
        return bool(
            self.allowedHosts
            or self.hostsProxyHeaders
            or self.sslProxyHeaders
            or self.stsSeconds is not None
            or self.stsIncludeSubdomains
            or self.stsPreload
            or self.forceSTSHeader
            or self.frameDeny
            or self.customFrameOptionsValue
            or self.contentTypeNosniff
            or self.browserXssFilter
            or self.customBrowserXSSValue
            or self.contentSecurityPolicy
            or self.contentSecurityPolicyReportOnly
            or self.publicKey
            or self.referrerPolicy
            or self.permissionsPolicy
            or self.isDevelopment
        )

    def _validate(self) -> Problems:
        if not (self.hasCustomHeaders() or self.hasCorsHeaders() or self.hasSecureHeaders()):
            yield "", "no header setting is configured"
        yield from _headerMap("customRequestHeaders", self.customRequestHeaders)
        yield from _headerMap("customResponseHeaders", self.customResponseHeaders)
        yield from _headerMap("sslProxyHeaders", self.sslProxyHeaders)
        yield from _headerNames("accessControlAllowHeaders", self.accessControlAllowHeaders)
        yield from _headerNames("accessControlAllowMethods", self.accessControlAllowMethods)
        yield from _headerNames("accessControlExposeHeaders", self.accessControlExposeHeaders)
        yield from _headerNames("hostsProxyHeaders", self.hostsProxyHeaders)
        yield from _regexps(
            "accessControlAllowOriginListRegex", self.accessControlAllowOriginListRegex
        )


@frozen
class IPAllowList:
    """
    Also the model of the deprecated C{ipWhiteList}, which has the same keys
    except C{rejectStatusCode}.
    """

    sourceRange: tuple[str, ...] = field(check=_notEmpty)
    ipStrategy: IPStrategy | None = None
    rejectStatusCode: int = field(403, check=_statusCode)

    def _validate(self) -> Problems:
        yield from _ipRanges("sourceRange", self.sourceRange)


@frozen
class InFlightReq:
    """
    Without a C{sourceCriterion}, requests are grouped by request host.
    """

    amount: int = field(check=_positive)
    sourceCriterion: SourceCriterion | None = None


@frozen
class TLSClientCertificateSubjectDNInfo:
    country: bool = False
    province: bool = False
    locality: bool = False
    organization: bool = False
    organizationalUnit: bool = False
    commonName: bool = False
    serialNumber: bool = False
    domainComponent: bool = False


@frozen
class TLSClientCertificateIssuerDNInfo:
    country: bool = False
    province: bool = False
    locality: bool = False
    organization: bool = False
    commonName: bool = False
    serialNumber: bool = False
    domainComponent: bool = False


@frozen
class TLSClientCertificateInfo:
    notAfter: bool = False
    notBefore: bool = False
    sans: bool = False
    serialNumber: bool = False
    subject: TLSClientCertificateSubjectDNInfo | None = None
    issuer: TLSClientCertificateIssuerDNInfo | None = None


@frozen
class PassTLSClientCert:
    pem: bool = False
    info: TLSClientCertificateInfo | None = None


@frozen
class Redis:
    """
    Shared rate-limit state (Traefik 3.5+).
    """

    endpoints: tuple[str, ...] = ("localhost:6379",)
    tls: ClientTLS | None = None
    username: str = field("", sensitive=True)
    password: str = field("", sensitive=True)
    db: int = field(0, check=_nonNegative)
    poolSize: int = field(0, check=_nonNegative, doc="0 means 10 per CPU")
    minIdleConns: int = field(0, check=_nonNegative)
    maxActiveConns: int = field(0, check=_nonNegative, doc="0 means no limit")
    readTimeout: Duration = field(Duration(3), check=_nonNegative)
    writeTimeout: Duration = field(Duration(3), check=_nonNegative)
    dialTimeout: Duration = field(Duration(5), check=_nonNegative)


@frozen
class RateLimit:
    """
    A token bucket of C{burst} tokens refilled at C{average} per C{period}.
    Without a C{sourceCriterion}, requests are grouped by remote address.
    """

    average: int = field(0, check=_nonNegative, doc="0 means no rate limiting")
    period: Duration = field(Duration(1), check=_nonNegative, doc="0 means 1s")
    burst: int = field(1, check=_nonNegative)
    sourceCriterion: SourceCriterion | None = None
    redis: Redis | None = None


@frozen
class RedirectRegex:
    regex: str = field("", check=_checkRegexp)
    replacement: str = ""
    permanent: bool = False


@frozen
class RedirectScheme:
    scheme: str = field(check=_scheme)
    port: str = field("", check=_port)
    permanent: bool = False


@frozen
class ReplacePath:
    path: str = field(check=_notBlank)


@frozen
class ReplacePathRegex:
    regex: str = field("", check=_checkTrimmedRegexp)
    replacement: str = ""


@frozen
class Retry:
    attempts: int = field(check=_positive)
    initialInterval: Duration = field(Duration(0), check=_nonNegative)


@frozen
class StripPrefix:
    prefixes: tuple[str, ...] = ()
    forceSlash: bool | None = field(None, doc="deprecated in Traefik; unset means false")

    def _validate(self) -> Problems:
        for index, prefix in enumerate(self.prefixes):
            try:
                _absolutePath(prefix.strip())
            except ValueError as e:
                yield f"prefixes[{index}]", str(e)


@frozen
class StripPrefixRegex:
    regex: tuple[str, ...] = ()

    def _validate(self) -> Problems:
        yield from _regexps("regex", self.regex, strip=True)


@frozen
class HTTPMiddleware(OneOf):
    addPrefix: AddPrefix | None = None
    basicAuth: BasicAuth | None = None
    buffering: Buffering | None = None
    chain: Chain | None = None
    circuitBreaker: CircuitBreaker | None = None
    compress: Compress | None = None
    contentType: ContentType | None = None
    digestAuth: DigestAuth | None = None
    errors: ErrorPage | None = None
    forwardAuth: ForwardAuth | None = None
    grpcWeb: GrpcWeb | None = None
    headers: Headers | None = None
    ipAllowList: IPAllowList | None = None
    ipWhiteList: IPAllowList | None = field(None, doc="deprecated alias of ipAllowList")
    inFlightReq: InFlightReq | None = None
    passTLSClientCert: PassTLSClientCert | None = None
    rateLimit: RateLimit | None = None
    redirectRegex: RedirectRegex | None = None
    redirectScheme: RedirectScheme | None = None
    replacePath: ReplacePath | None = None
    replacePathRegex: ReplacePathRegex | None = None
    retry: Retry | None = None
    stripPrefix: StripPrefix | None = None
    stripPrefixRegex: StripPrefixRegex | None = None
    plugin: FrozenMap[str, Any] | None = field(None, doc="known to Traefik; rejected")

    def _validate(self) -> Problems:
        if self.plugin is not None:
            yield "plugin", "relayd does not run Traefik plugins"


@frozen
class TCPIPAllowList:
    """
    Also the model of the deprecated C{ipWhiteList}, which has the same keys.
    """

    sourceRange: tuple[str, ...] = field(check=_notEmpty)

    def _validate(self) -> Problems:
        yield from _ipRanges("sourceRange", self.sourceRange)


@frozen
class TCPInFlightConn:
    amount: int = field(check=_positive)


@frozen
class TCPMiddleware(OneOf):
    ipAllowList: TCPIPAllowList | None = None
    ipWhiteList: TCPIPAllowList | None = field(None, doc="deprecated alias of ipAllowList")
    inFlightConn: TCPInFlightConn | None = None


HTTP_MIDDLEWARE_KINDS: tuple[str, ...] = tuple(
    a.name for a in attrs.fields(HTTPMiddleware) if a.name != "plugin"
)
TCP_MIDDLEWARE_KINDS: tuple[str, ...] = tuple(a.name for a in attrs.fields(TCPMiddleware))
