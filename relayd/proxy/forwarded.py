"""
The X-Forwarded-* headers, handled at the entrypoint before routing, as
Traefik does: from a peer that is not trusted (forwardedHeaders.trustedIPs or
insecure) every managed X-Forwarded-* header (and its underscore spelling) is
dropped; then X-Real-Ip, X-Forwarded-Proto, -Port, -Host and -Server are filled
in, repeated X-Forwarded-For values joined, and the headers named in Connection
removed (except managed ones and those listed in forwardedHeaders.connection).
The proxy appends the client address to X-Forwarded-For when forwarding.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Iterable

from relayd.runtime.gocompat import splitHostPort

MANAGED = frozenset(
    name.lower()
    for name in (
        "X-Forwarded-Proto",
        "X-Forwarded-For",
        "X-Forwarded-Host",
        "X-Forwarded-Port",
        "X-Forwarded-Server",
        "X-Forwarded-Uri",
        "X-Forwarded-Method",
        "X-Forwarded-Prefix",
        "X-Forwarded-Tls-Client-Cert",
        "X-Forwarded-Tls-Client-Cert-Info",
        "X-Real-Ip",
    )
)
HOSTNAME = socket.gethostname() or "localhost"


def isManaged(name: bytes | str) -> bool:
    if isinstance(name, bytes):
        name = name.decode("latin-1")
    return name.lower().replace("_", "-") in MANAGED


def _first(headers: Any, name: bytes) -> bytes:
    values = headers._fields.get(name)
    return values[0] if values else b""


def _tokens(values: Iterable[bytes]) -> list[str]:
    return [t.strip().decode("latin-1") for v in values for t in v.split(b",") if t.strip()]


def forwardedPort(host: str, proto: bytes, secure: bool) -> str:
    if ":" not in host:
        return "443" if proto in (b"https", b"wss") or secure else "80"
    if host.count(":") == 1 and "[" not in host:
        port = host.partition(":")[2]
        if port.isdigit():
            return port
    try:
        port = splitHostPort(host)[1]
    except ValueError:
        port = ""
    if port:
        return port
    if proto in (b"https", b"wss") or secure:
        return "443"
    return "80"


_MANAGED_BYTES = frozenset(name.encode("ascii") for name in MANAGED)


def applyForwardedHeaders(
    request: Any,
    trusted: bool,
    clientIP: str,
    host: str,
    allowedConnection: Iterable[str] = (),
) -> None:
    """
    Rewrite C{request.requestHeaders} (a L{relayd.proxy.wire.HeaderMap}) as
    Traefik's entrypoint does.
    """
    headers = request.requestHeaders
    fields = headers._fields
    if not trusted:
        for name in [n for n in fields if n.replace(b"_", b"-") in _MANAGED_BYTES]:
            del fields[name]
    if clientIP and not _first(headers, b"x-real-ip"):
        fields[b"x-real-ip"] = [clientIP.split("%")[0].encode()]
    secure = request.isSecure()
    connectionValues = fields.get(b"connection")
    if not _first(headers, b"x-forwarded-proto"):
        websocket = False
        if connectionValues is not None:
            connection = {t.lower() for t in _tokens(connectionValues)}
            upgrade = {t.lower() for t in _tokens(fields.get(b"upgrade", [])[:1])}
            websocket = "upgrade" in connection and "websocket" in upgrade
        proto = (b"wss" if secure else b"ws") if websocket else (b"https" if secure else b"http")
        fields[b"x-forwarded-proto"] = [proto]
    if not _first(headers, b"x-forwarded-port"):
        port = forwardedPort(host, _first(headers, b"x-forwarded-proto"), secure)
        fields[b"x-forwarded-port"] = [port.encode()]
    if not _first(headers, b"x-forwarded-host") and host:
        fields[b"x-forwarded-host"] = [host.encode("latin-1")]
    forwardedFor = fields.get(b"x-forwarded-for")
    if forwardedFor and len(forwardedFor) > 1:
        fields[b"x-forwarded-for"] = [b", ".join(forwardedFor)]
    fields[b"x-forwarded-server"] = [_HOSTNAME_BYTES]
    if connectionValues is not None:
        _removeConnectionHeaders(headers, {c.lower() for c in allowedConnection})


_HOSTNAME_BYTES = HOSTNAME.encode()


def _removeConnectionHeaders(headers: Any, allowed: set[str]) -> None:
    values = headers.getRawHeaders(b"connection", [])
    tokens = _tokens(values)
    upgrade = None
    if any(t.lower() == "upgrade" for t in tokens):
        upgrade = _first(headers, b"upgrade")
    kept: list[str] = []
    for token in tokens:
        if isManaged(token):
            continue
        if token.lower() in allowed:
            kept.append(token)
            continue
        headers.removeHeader(token.encode("latin-1"))
    if upgrade:
        kept.append("Upgrade")
        headers.setRawHeaders(b"upgrade", [upgrade])
    if kept:
        headers.setRawHeaders(b"connection", [",".join(kept).encode("latin-1")])
    else:
        headers.removeHeader(b"connection")


def clientHost(address: Any) -> str:
    """
    The IP address of a Twisted address as relayd uses it for routing and
    X-Forwarded-For: IPv4-mapped IPv6 addresses as plain IPv4, a zone kept;
    empty for addresses without a host (UNIX sockets).
    """
    host = getattr(address, "host", "") or ""
    if not host:
        return ""
    try:
        parsed = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return host
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return host
