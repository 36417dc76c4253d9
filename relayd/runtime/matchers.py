"""
Matcher builders for HTTP and TCP rules, in Traefik's v3 and v2 syntaxes, with
Traefik's exact semantics (host canonicalisation, Go RE2 regexps, gorilla/mux
templates for v2, routing path, query parsing).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Callable, Mapping, Sequence

import attrs

from relayd.runtime.gocompat import (
    RegexError,
    compileGoRegexp,
    parseGoQuery,
)
from relayd.runtime.rules import Builder, RuleError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@attrs.define(slots=True)
class RouteRequest:
    """
    What HTTP matchers look at, computed once per request.

    @ivar host: the canonical host: lower-cased, port and IPv6 brackets removed.
    @ivar rawHost: the Host header as received.
    @ivar path: the routing path (unreserved percent-escapes decoded).
    @ivar rawQuery: the query string, after C{;} handling.
    @ivar headers: a case-insensitive lookup of all values of a header.
    @ivar clientIP: the peer address (after PROXY protocol), never X-Forwarded-For.
    """

    host: str
    rawHost: str
    path: str
    method: str
    rawQuery: str
    headers: Callable[[str], Sequence[str]]
    clientIP: str
    _query: dict[str, list[str]] | None = None

    @property
    def query(self) -> dict[str, list[str]]:
        if self._query is None:
            self._query = parseGoQuery(self.rawQuery)
        return self._query


@attrs.define(slots=True)
class ConnectionInfo:
    """
    What TCP matchers look at: the SNI server name, the ALPN protocols offered by
    the client, and the peer address.
    """

    serverName: str
    alpnProtocols: Sequence[str]
    clientIP: str


def _regexp(pattern: str, what: str) -> re.Pattern[str]:
    try:
        return compileGoRegexp(pattern)
    except RegexError as e:
        raise RuleError(f"invalid regular expression {pattern!r} for {what}: {e}") from None


def _expect(args: tuple[str, ...], *counts: int) -> None:
    if len(args) not in counts:
        expected = " or ".join(str(c) for c in counts)
        plural = "" if counts == (1,) else "s"
        raise RuleError(f"expected {expected} argument{plural}, got {len(args)}")


def _isASCII(text: str) -> bool:
    return text.isascii()


# IP checks, as Traefik's ip.Checker.


def _parseIP(text: str) -> IPAddress:
    """
    Parse a configured address as Go's C{net.ParseIP}: no zone, and an
    IPv4-mapped IPv6 address is the IPv4 address.
    """
    if "%" in text:
        raise ValueError(f"{text!r} has a zone")
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _parseRequestIP(text: str) -> IPAddress:
    """
    Parse a peer address as Go's C{netip.ParseAddr} (an IPv6 zone is allowed
    and ignored), as 16 bytes: an IPv4-mapped address is the IPv4 address.
    """
    bare, percent, zone = text.partition("%")
    address = ipaddress.ip_address(bare)
    if percent and (isinstance(address, ipaddress.IPv4Address) or not zone):
        raise ValueError(f"{text!r}: bad zone")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _parseCIDR(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """
    Parse a range as Go's C{net.ParseCIDR}: an address without zone, a slash
    and a decimal prefix length (no netmask notation); host bits are dropped.
    A range whose masked address is IPv4-mapped (prefix of 96 bits or more)
    behaves in Go's C{IPNet.Contains} as the IPv4 range of the last 32 bits.
    """
    address, slash, prefix = text.partition("/")
    if not slash or "%" in address or not prefix or not (prefix.isascii() and prefix.isdigit()):
        raise ValueError(f"{text!r} is not a CIDR range")
    network = ipaddress.ip_network(f"{address}/{int(prefix)}", strict=False)
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}")
    return network


@attrs.frozen
class IPChecker:
    """
    Whether an address is one of a list of IPs or inside one of a list of CIDR
    ranges; IPv4-mapped IPv6 addresses count as IPv4.
    """

    addresses: frozenset[IPAddress]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def fromStrings(cls, values: Sequence[str]) -> IPChecker:
        if not values:
            raise RuleError("no IP addresses or ranges given")
        addresses = set()
        networks = []
        for value in values:
            try:
                addresses.add(_parseIP(value))
                continue
            except ValueError:
                pass
            try:
                networks.append(_parseCIDR(value))
            except ValueError:
                raise RuleError(f"{value!r} is not an IP address or CIDR range") from None
        return cls(frozenset(addresses), tuple(networks))

    def contains(self, text: str) -> bool:
        if not text:
            return False
        try:
            address = _parseRequestIP(text)
        except ValueError:
            return False
        if address in self.addresses:
            return True
        return any(address in network for network in self.networks)


# gorilla/mux templates (v2 syntax): {name} and {name:regexp} groups.

_GO_META = set("\\.+*?()|[]{}^$")


def quoteMeta(text: str) -> str:
    """
    Go's C{regexp.QuoteMeta}.
    """
    return "".join("\\" + c if c in _GO_META else c for c in text)


def _braceIndices(template: str) -> list[int]:
    level = 0
    start = 0
    indices: list[int] = []
    for i, c in enumerate(template):
        if c == "{":
            level += 1
            if level == 1:
                start = i
        elif c == "}":
            level -= 1
            if level == 0:
                indices += [start, i + 1]
            elif level < 0:
                raise RuleError(f"unbalanced braces in {template!r}")
    if level != 0:
        raise RuleError(f"unbalanced braces in {template!r}")
    return indices


def templateRegexp(template: str, kind: str) -> str:
    """
    The Go regexp gorilla/mux builds for a host, path, path prefix or query
    template (C{kind} is C{host}, C{path}, C{prefix} or C{query}).
    """
    indices = _braceIndices(template)
    default = {"query": ".*", "host": "[^.]+"}.get(kind, "[^/]+")
    pattern = "(?i)^" if kind == "host" else "^"
    end = 0
    for i in range(0, len(indices), 2):
        raw = template[end:indices[i]]
        end = indices[i + 1]
        name, colon, patt = template[indices[i] + 1:end - 1].partition(":")
        if not colon:
            patt = default
        if not name or not patt:
            raise RuleError(f"missing name or pattern in {template[indices[i]:end]!r}")
        _regexp(f"^{patt}$", f"the template variable {name!r}")
        pattern += f"{quoteMeta(raw)}(?P<v{i // 2}>{patt})"
    pattern += quoteMeta(template[end:])
    if kind == "query" and template.split("=", 1)[1] == "":
        pattern += default
    if kind != "prefix":
        pattern += "$"
    return pattern


def _templateNames(template: str) -> set[str]:
    indices = _braceIndices(template)
    return {
        template[indices[i] + 1:indices[i + 1] - 1].partition(":")[0]
        for i in range(0, len(indices), 2)
    }


def _gorillaHost(rawHost: str) -> str:
    if ":" not in rawHost:
        return rawHost
    from relayd.runtime.gocompat import splitHostPort

    try:
        return splitHostPort(rawHost)[0]
    except ValueError:
        return rawHost


# HTTP v3


def _clientIP(args: tuple[str, ...]) -> Callable[[RouteRequest], bool]:
    _expect(args, 1)
    checker = IPChecker.fromStrings(args)
    return lambda r: checker.contains(r.clientIP)


def _method(args: tuple[str, ...]) -> Callable[[RouteRequest], bool]:
    _expect(args, 1)
    method = args[0].upper()
    return lambda r: r.method == method


def _matchHost(requestHost: str, host: str) -> bool:
    if not requestHost:
        return False
    if requestHost == host:
        return True
    if host.endswith(".") and requestHost == host[:-1]:
        return True
    if requestHost.endswith(".") and requestHost[:-1] == host:
        return True
    return False


def _host(args: tuple[str, ...]) -> Callable[[RouteRequest], bool]:
    _expect(args, 1)
    if not _isASCII(args[0]):
        raise RuleError(f"invalid value {args[0]!r}: non-ASCII characters are not allowed (use punycode)")
    host = args[0].lower()
    return lambda r: _matchHost(r.host, host)


def _hostRegexp(args: tuple[str, ...]) -> Callable[[RouteRequest], bool]:
    _expect(args, 1)
    if not _isASCII(args[0]):
        raise RuleError(f"invalid value {args[0]!r}: non-ASCII characters are not allowed")
    search = _regexp(args[0], "HostRegexp").search
    if search("") is not None:
        # Traefik also tries the CNAME-flattened host, which is empty when
        # flattening is off: a regexp that matches "" matches every request.
        return lambda r: True
    return lambda r: search(r.host) is not None


def _startsWithSlash(path: str) -> None:
    if not path.startswith("/"):
        raise RuleError(f"path {path!r} does not start with a '/'")


def _path(args: tuple[str, ...]) -> Callable[[RouteRequest], bool]:
    _expect(args, 1)
    path = args[0]
    _startsWithSlash(path)
    return lambda r: r.path == path


def _pathPrefix(args: tuple[str, ...]) -> Callable[[RouteRequest], bool]:
    _expect(args, 1)
    prefix = args[0]
    _startsWithSlash(prefix)
    return lambda r: r.path.startswith(prefix)


def _pathRegexp(args: tuple[str, ...]) -> Callable[[RouteRequest], bool]:
    _expect(args, 1)
    search = _regexp(args[0], "PathRegexp").search
    return lambda r: search(r.path) is not None


def _header(args: tuple[str, ...]) -> Callable[[RouteRequest], bool]:
    _expect(args, 2)
    name, value = args
    return lambda r: value in r.headers(name)


def _headerRegexp(args: tuple[str, ...]) -> Callable[[RouteRequest], bool]:
    _expect(args, 2)
    name = args[0]
    search = _regexp(args[1], "HeaderRegexp").search
    return lambda r: any(search(v) is not None for v in r.headers(name))


def _query(args: tuple[str, ...]) -> Callable[[RouteRequest], bool]:
    _expect(args, 1, 2)
    key = args[0]
    value = args[1] if len(args) == 2 else ""

    def match(r: RouteRequest) -> bool:
        values = r.query.get(key)
        return values is not None and value in values

    return match


def _queryRegexp(args: tuple[str, ...]) -> Callable[[RouteRequest], bool]:
    _expect(args, 1, 2)
    if len(args) == 1:
        return _query(args)
    key = args[0]
    search = _regexp(args[1], "QueryRegexp").search

    def match(r: RouteRequest) -> bool:
        values = r.query.get(key)
        return values is not None and any(search(v) is not None for v in values)

    return match


HTTP_V3: Mapping[str, Builder[RouteRequest]] = {
    "ClientIP": _clientIP,
    "Method": _method,
    "Host": _host,
    "HostRegexp": _hostRegexp,
    "Path": _path,
    "PathRegexp": _pathRegexp,
    "PathPrefix": _pathPrefix,
    "Header": _header,
    "HeaderRegexp": _headerRegexp,
    "Query": _query,
    "QueryRegexp": _queryRegexp,
}


# HTTP v2


def _anyOf(matchers: list[Callable[[RouteRequest], bool]]) -> Callable[[RouteRequest], bool]:
    if len(matchers) == 1:
        return matchers[0]
    return lambda r: any(m(r) for m in matchers)


def _hostV2(args: tuple[str, ...]) -> Callable[[RouteRequest], bool]:
    for host in args:
        if not _isASCII(host):
            raise RuleError(f"invalid value {host!r}: non-ASCII characters are not allowed (use punycode)")
    hosts = [h.lower() for h in args]
    return lambda r: any(_matchHost(r.host, h) for h in hosts)


def _hostRegexpV2(args: tuple[str, ...]) -> Callable[[RouteRequest], bool]:
    searches = []
    for template in args:
        if not _isASCII(template):
            raise RuleError(f"invalid value {template!r}: non-ASCII characters are not allowed")
        searches.append(_regexp(templateRegexp(template, "host"), "HostRegexp").search)
    return lambda r: any(s(_gorillaHost(r.rawHost)) is not None for s in searches)


def _pathTemplates(kind: str) -> Builder[RouteRequest]:
    def build(args: tuple[str, ...]) -> Callable[[RouteRequest], bool]:
        searches = []
        for template in args:
            if not template.startswith("/"):
                raise RuleError(f"path must start with a slash, got {template!r}")
            searches.append(_regexp(templateRegexp(template, kind), kind).search)
        return lambda r: any(s(r.path) is not None for s in searches)

    return build


def _clientIPV2(args: tuple[str, ...]) -> Callable[[RouteRequest], bool]:
    checker = IPChecker.fromStrings(args)
    return lambda r: checker.contains(r.clientIP)


def _methodV2(args: tuple[str, ...]) -> Callable[[RouteRequest], bool]:
    methods = frozenset(m.upper() for m in args)
    return lambda r: r.method in methods


def _pairs(args: Sequence[str]) -> dict[str, str]:
    if len(args) % 2:
        raise RuleError(f"the number of arguments must be a multiple of 2, got {list(args)}")
    return {args[i]: args[i + 1] for i in range(0, len(args), 2)}


def _headersV2(args: tuple[str, ...]) -> Callable[[RouteRequest], bool]:
    pairs = _pairs(args)

    def match(r: RouteRequest) -> bool:
        for name, value in pairs.items():
            values = r.headers(name)
            if not values or (value != "" and value not in values):
                return False
        return True

    return match


def _headersRegexpV2(args: tuple[str, ...]) -> Callable[[RouteRequest], bool]:
    pairs = {k: _regexp(v, "HeadersRegexp").search for k, v in _pairs(args).items()}

    def match(r: RouteRequest) -> bool:
        for name, search in pairs.items():
            values = r.headers(name)
            if not values or not any(search(v) is not None for v in values):
                return False
        return True

    return match


def _queryV2(args: tuple[str, ...]) -> Callable[[RouteRequest], bool]:
    flat: list[str] = []
    for item in args:
        flat.extend(item.split("=", 1))
    if len(flat) % 2:
        raise RuleError(f"the number of arguments must be a multiple of 2, got {flat}")
    pairs = []
    seen: set[str] = set()
    for i in range(0, len(flat), 2):
        # gorilla adds one matcher per pair (all must match) and refuses a
        # variable name used by two of them.
        key, value = flat[i], flat[i + 1]
        template = f"{key}={value}"
        names = _templateNames(template)
        if seen & names:
            raise RuleError(f"duplicated route variable {sorted(seen & names)[0]!r}")
        seen |= names
        pairs.append((key, _regexp(templateRegexp(template, "query"), "Query").search))

    def match(r: RouteRequest) -> bool:
        for key, search in pairs:
            values = r.query.get(key)
            subject = f"{key}={values[0]}" if values else ""
            if search(subject) is None:
                return False
        return True

    return match


HTTP_V2: Mapping[str, Builder[RouteRequest]] = {
    "Host": _hostV2,
    "HostHeader": _hostV2,
    "HostRegexp": _hostRegexpV2,
    "ClientIP": _clientIPV2,
    "Path": _pathTemplates("path"),
    "PathPrefix": _pathTemplates("prefix"),
    "Method": _methodV2,
    "Headers": _headersV2,
    "HeadersRegexp": _headersRegexpV2,
    "Query": _queryV2,
}


# TCP

_HOST_OR_IP = re.compile(r"[0-9A-Za-z_.\-:]+")
ACME_TLS_ALPN = "acme-tls/1"


def _hostSNI(args: tuple[str, ...]) -> Callable[[ConnectionInfo], bool]:
    _expect(args, 1)
    host = args[0]
    if host == "*":
        return lambda c: True
    if not _HOST_OR_IP.fullmatch(host):
        raise RuleError(f"{host!r} is not a valid host name or IP")
    bare = host.removesuffix(".")
    return lambda c: bool(c.serverName) and c.serverName in (host, bare)


def _hostSNIV2(args: tuple[str, ...]) -> Callable[[ConnectionInfo], bool]:
    hosts = []
    for host in args:
        if host != "*" and not _HOST_OR_IP.fullmatch(host):
            raise RuleError(f"{host!r} is not a valid host name or IP")
        hosts.append(host.lower())
    if hosts and hosts[0] == "*":
        # Only a leading `*` also matches a connection without SNI.
        return lambda c: True

    def match(c: ConnectionInfo) -> bool:
        name = c.serverName
        if not name:
            return False
        return any(h == "*" or name == h or name == h.removesuffix(".") for h in hosts)

    return match


def _hostSNIRegexp(args: tuple[str, ...]) -> Callable[[ConnectionInfo], bool]:
    _expect(args, 1)
    if not _isASCII(args[0]):
        raise RuleError(f"{args[0]!r} is not a valid host name")
    search = _regexp(args[0], "HostSNIRegexp").search
    return lambda c: search(c.serverName) is not None


def _hostSNIRegexpV2(args: tuple[str, ...]) -> Callable[[ConnectionInfo], bool]:
    searches = [_regexp(templateRegexp(t, "host"), "HostSNIRegexp").search for t in args]
    return lambda c: any(s(c.serverName) is not None for s in searches)


def _tcpClientIP(args: tuple[str, ...]) -> Callable[[ConnectionInfo], bool]:
    checker = IPChecker.fromStrings(args)
    return lambda c: checker.contains(c.clientIP)


def _alpn(args: tuple[str, ...]) -> Callable[[ConnectionInfo], bool]:
    for proto in args:
        if proto == ACME_TLS_ALPN:
            raise RuleError(f"{ACME_TLS_ALPN!r} is not allowed")
    protocols = frozenset(args)
    return lambda c: any(p in protocols for p in c.alpnProtocols)


def _one(builder: Builder[ConnectionInfo]) -> Builder[ConnectionInfo]:
    def build(args: tuple[str, ...]) -> Callable[[ConnectionInfo], bool]:
        _expect(args, 1)
        return builder(args)

    return build


TCP_V3: Mapping[str, Builder[ConnectionInfo]] = {
    "HostSNI": _hostSNI,
    "HostSNIRegexp": _hostSNIRegexp,
    "ClientIP": _one(_tcpClientIP),
    "ALPN": _one(_alpn),
}

TCP_V2: Mapping[str, Builder[ConnectionInfo]] = {
    "HostSNI": _hostSNIV2,
    "HostSNIRegexp": _hostSNIRegexpV2,
    "ClientIP": _tcpClientIP,
    "ALPN": _alpn,
}
