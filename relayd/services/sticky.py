"""
Sticky sessions by cookie, as Traefik does them: the cookie's value is a hash of
the chosen server's name (its URL), so stickiness survives reloads for as long
as the server stays; a cookie naming a missing or unhealthy server gets a new
pick and a rewritten cookie. Values written by older Traefik versions (the raw
URL and FNV hashes of it) are still honoured, and rewritten.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Generic, Mapping, TypeVar

from relayd.config.dynamic import CookieConfig

T = TypeVar("T")

_COOKIE_NAME_SAFE = re.compile(r"[^!#$%&'*+\-.^`|~0-9A-Za-z]")
_FNV64_OFFSET = 14695981039346656037
_FNV64_PRIME = 1099511628211


def cookieName(configured: str, serviceName: str) -> str:
    """
    The cookie's name: the configured one with characters that are not token
    characters replaced by C{_}, or C{_} and the first five hex digits of a SHA-1
    of the service name.
    """
    if configured:
        return _COOKIE_NAME_SAFE.sub("_", configured)
    digest = hashlib.sha1(("_TRAEFIK_BACKEND_" + serviceName).encode()).hexdigest()
    return ("_" + digest)[:6]


def serverHash(name: str) -> str:
    """
    The cookie value for a server: the first 16 hex digits of SHA-256 of its name.
    """
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def fnv64(text: str) -> str:
    """
    FNV-1 64-bit hash in hex (Go's C{fnv.New64}), used by older cookie values.
    """
    value = _FNV64_OFFSET
    for byte in text.encode():
        value = (value * _FNV64_PRIME) & 0xFFFFFFFFFFFFFFFF
        value ^= byte
    return format(value, "x")


def setCookieHeader(name: str, value: str, config: CookieConfig) -> bytes:
    """
    A Set-Cookie value as Go's C{http.Cookie.String} writes it.
    """
    parts = [f"{name}={value}"]
    if config.path:
        parts.append(f"Path={config.path}")
    if config.domain:
        parts.append(f"Domain={config.domain.lstrip('.')}")
    if config.maxAge > 0:
        parts.append(f"Max-Age={config.maxAge}")
    elif config.maxAge < 0:
        parts.append("Max-Age=0")
    if config.httpOnly:
        parts.append("HttpOnly")
    if config.secure:
        parts.append("Secure")
    sameSite = {"none": "None", "lax": "Lax", "strict": "Strict"}.get(config.sameSite.lower())
    if sameSite:
        parts.append(f"SameSite={sameSite}")
    return "; ".join(parts).encode("latin-1")


def requestCookie(request: Any, name: str) -> str | None:
    """
    The value of the first cookie called C{name} in the request's Cookie headers.
    """
    for header in request.requestHeaders.getRawHeaders(b"cookie", ()):
        for pair in header.decode("latin-1").split(";"):
            key, sep, value = pair.strip().partition("=")
            if sep and key == name:
                value = value.strip()
                if len(value) > 1 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                return value
    return None


class Sticky(Generic[T]):
    """
    The cookie side of a sticky balancer over members named by C{name}.
    """

    def __init__(self, config: CookieConfig, serviceName: str, members: Mapping[str, T]) -> None:
        self.config = config
        self.name = cookieName(config.name, serviceName)
        self.byHash: dict[str, str] = {}
        self.compatible: dict[str, str] = {}
        self.members = dict(members)
        for member in members:
            self.byHash[serverHash(member)] = member
            legacy = fnv64(member)
            for old in (member, legacy, fnv64(legacy)):
                self.compatible[old] = member

    def pinned(self, request: Any) -> tuple[str | None, bool]:
        """
        The member the request's cookie names, and whether the cookie is in an
        old format that should be rewritten.
        """
        value = requestCookie(request, self.name)
        if value is None:
            return None, False
        if value in self.byHash:
            return self.byHash[value], False
        member = self.compatible.get(value)
        return member, member is not None

    def writeCookie(self, request: Any, member: str) -> None:
        """
        Arrange for the response to carry the cookie pinning C{member}, before
        any cookie the upstream sets.
        """
        header = setCookieHeader(self.name, serverHash(member), self.config)

        def addCookie(req: Any) -> None:
            existing = req.responseHeaders.getRawHeaders(b"set-cookie", [])
            req.responseHeaders.setRawHeaders(b"set-cookie", [header, *existing])

        request.relayd.beforeResponse.append(addCookie)
