"""
Entrypoint addresses: Traefik's C{[host]:port[/tcp|/udp]} forms, or any Twisted
server endpoint description (C{tcp:8000:interface=127.0.0.1}, C{unix:/run/x.sock},
C{systemd:domain=INET:index=0}).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

import attrs

# Endpoint types shipped with Twisted; plugins add more (checked at start-up).
_TWISTED_ENDPOINTS = frozenset(
    {"tcp", "tcp6", "unix", "ssl", "systemd", "tls", "le", "lets", "onion", "tor"}
)
_ENDPOINT_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9_]*):")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$")


@attrs.frozen
class Address:
    """
    A parsed entrypoint address.

    @ivar protocol: C{"tcp"} or C{"udp"}.
    @ivar host: the interface to bind, C{""} for every interface.
    @ivar port: the port number, 0 for an ephemeral port.
    @ivar endpoint: a Twisted endpoint description when given as one, else C{""}.
    """

    protocol: Literal["tcp", "udp"]
    host: str = ""
    port: int = 0
    endpoint: str = ""

    def describe(self) -> str:
        if self.endpoint:
            return self.endpoint
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}/{self.protocol}"

    def twistedDescription(self) -> str:
        """
        The Twisted endpoint description to listen with (TCP only).

        An empty host listens on every address, IPv6 and IPv4 alike, as Go does.
        """
        if self.endpoint:
            return self.endpoint
        if self.host == "":
            return f"tcp6:{self.port}:interface=\\:\\:"
        if ":" in self.host:
            escaped = self.host.replace(":", "\\:")
            return f"tcp6:{self.port}:interface={escaped}"
        return f"tcp:{self.port}:interface={self.host}"


def isEndpointDescription(text: str) -> bool:
    """
    Whether C{text} reads as a Twisted endpoint description rather than a
    Traefik C{host:port} address.
    """
    match = _ENDPOINT_PREFIX.match(text)
    if match is None:
        return False
    name = match.group(1).lower()
    if name in _TWISTED_ENDPOINTS:
        return True
    # host:port with a host name looks the same; a port after the colon says so.
    rest = text[match.end():]
    if re.fullmatch(r"\d+(/(tcp|udp))?", rest, re.IGNORECASE):
        return False
    return _pluginEndpointNames().__contains__(name)


def _pluginEndpointNames() -> frozenset[str]:
    try:
        from twisted.internet.interfaces import IStreamServerEndpointStringParser
        from twisted.plugin import getPlugins

        return frozenset(
            p.prefix.lower() for p in getPlugins(IStreamServerEndpointStringParser)
        )
    except Exception:
        return frozenset()


def parseAddress(text: str) -> Address:
    """
    Parse an entrypoint address.

    @raise ValueError: with a message that says which forms are accepted.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty address")
    text = text.strip()
    if isEndpointDescription(text):
        from twisted.internet.endpoints import _parseServer  # validation only

        try:
            _parseServer(text, None)  # type: ignore[arg-type]
        except Exception as e:
            raise ValueError(f"invalid Twisted endpoint description {text!r}: {e}") from None
        return Address(protocol="tcp", endpoint=text)
    protocol: Literal["tcp", "udp"] = "tcp"
    body = text
    slash = text.rfind("/")
    if slash != -1:
        suffix = text[slash + 1:].lower()
        if suffix not in ("tcp", "udp"):
            raise ValueError(
                f"invalid address {text!r}: the protocol suffix must be /tcp or /udp"
            )
        protocol = "udp" if suffix == "udp" else "tcp"
        body = text[:slash]
    if body.startswith("["):
        end = body.find("]")
        if end == -1 or body[end + 1:end + 2] != ":":
            raise ValueError(f"invalid address {text!r}: expected [ipv6]:port")
        host = body[1:end]
        portText = body[end + 2:]
        try:
            ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            raise ValueError(f"invalid address {text!r}: {host!r} is not an IPv6 address") from None
    else:
        if body.count(":") != 1:
            raise ValueError(
                f"invalid address {text!r}: expected :port, host:port, [ipv6]:port "
                "or a Twisted endpoint such as tcp:8000:interface=127.0.0.1"
            )
        host, portText = body.split(":")
        if host and not _isHost(host):
            raise ValueError(f"invalid address {text!r}: {host!r} is not a host name or IP")
    if not (portText.isascii() and portText.isdigit()) or int(portText) > 65535:
        raise ValueError(f"invalid address {text!r}: the port must be a number from 0 to 65535")
    return Address(protocol=protocol, host=host, port=int(portText))


def _isHost(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOSTNAME.match(host))
