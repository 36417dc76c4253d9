"""
The PROXY protocol (HAProxy's, versions 1 and 2): headers read on
entrypoints that set C{proxyProtocol} (the client address a load balancer in
front of relayd saw), and headers written to TCP servers whose service asks
for one.

Reading follows Traefik (go-proxyproto): versions 1 and 2 are told apart by
their signature, a connection without a header is served as is, and a
header from a source that is not trusted is read and dropped, the address of
the socket peer staying in use. A header that starts right and then does not
parse closes the connection.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import attrs
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.logger import Logger

from relayd.runtime.matchers import IPChecker

_log = Logger()

SIGNATURE_V1 = b"PROXY"
SIGNATURE_V2 = b"\r\n\r\n\x00\r\nQUIT\n"
# "PROXY UNKNOWN ffff:...:ffff ffff:...:ffff 65535 65535\r\n"
MAX_V1 = 107
# go-proxyproto's limit on the address and TLV block of a version 2 header.
MAX_V2_PAYLOAD = 4096

_LOCAL = 0x20
_PROXY = 0x21
_INET_STREAM, _INET_DGRAM = 0x11, 0x12
_INET6_STREAM, _INET6_DGRAM = 0x21, 0x22
_UNIX_STREAM, _UNIX_DGRAM = 0x31, 0x32


class HeaderError(ValueError):
    """
    Bytes that start like a PROXY header and are not a valid one.
    """


@attrs.frozen
class ProxyHeader:
    """
    A parsed header. C{source} and C{destination} are C{(host, port)}, or
    None for a LOCAL (health check) or UNKNOWN header and for UNIX sockets:
    then the connection's own addresses stay in use.
    """

    version: int
    length: int
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None


def _host(raw: bytes) -> str:
    address = ipaddress.ip_address(raw)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def parseHeader(data: bytes) -> ProxyHeader | bool:
    """
    Look for a PROXY header at the start of C{data}.

    @return: the header (its C{length} says how many bytes it took),
        C{True} when more bytes are needed to tell, or C{False} when the
        bytes are not a PROXY header.
    @raise HeaderError: for a header that starts right and is invalid.
    """
    if data[:1] == SIGNATURE_V1[:1]:
        if len(data) < len(SIGNATURE_V1):
            return data == SIGNATURE_V1[: len(data)]
        if data.startswith(SIGNATURE_V1):
            return _parseV1(data)
        return False
    if data[:1] == SIGNATURE_V2[:1]:
        if len(data) < len(SIGNATURE_V2):
            return data == SIGNATURE_V2[: len(data)]
        if data.startswith(SIGNATURE_V2):
            return _parseV2(data)
        return False
    return False if data else True


def _parseV1(data: bytes) -> ProxyHeader | bool:
    end = data.find(b"\n", 0, MAX_V1)
    if end < 0:
        if len(data) >= MAX_V1:
            raise HeaderError("a version 1 header longer than 107 bytes")
        return True
    if end == 0 or data[end - 1 : end] != b"\r":
        raise HeaderError("a version 1 header must end with CRLF")
    tokens = data[: end - 1].split(b" ")
    if len(tokens) < 2:
        raise HeaderError("no protocol in the version 1 header")
    family = tokens[1]
    if family == b"UNKNOWN":
        return ProxyHeader(1, end + 1)
    if family not in (b"TCP4", b"TCP6") or len(tokens) < 6:
        raise HeaderError(f"bad version 1 header {data[:end + 1]!r}")
    try:
        source = ipaddress.ip_address(tokens[2].decode("ascii"))
        destination = ipaddress.ip_address(tokens[3].decode("ascii"))
        ports = int(tokens[4]), int(tokens[5])
    except (ValueError, UnicodeDecodeError):
        raise HeaderError(f"bad address or port in {data[:end + 1]!r}") from None
    if not all(0 <= p <= 65535 for p in ports) or not all(t.isdigit() for t in tokens[4:6]):
        raise HeaderError(f"bad port in {data[:end + 1]!r}")
    if family == b"TCP4" and (source.version != 4 or destination.version != 4):
        raise HeaderError("TCP4 with an address that is not IPv4")
    return ProxyHeader(
        1,
        end + 1,
        (_host(source.packed), ports[0]),
        (_host(destination.packed), ports[1]),
    )


def _parseV2(data: bytes) -> ProxyHeader | bool:
    if len(data) < 16:
        return True
    command, family = data[12], data[13]
    length = int.from_bytes(data[14:16], "big")
    if command not in (_LOCAL, _PROXY):
        raise HeaderError(f"unsupported version 2 command 0x{command:02x}")
    if family == 0 and command != _LOCAL:
        raise HeaderError("an unspecified address family needs the LOCAL command")
    minimum = {_INET_STREAM: 12, _INET_DGRAM: 12, _INET6_STREAM: 36, _INET6_DGRAM: 36,
               _UNIX_STREAM: 216, _UNIX_DGRAM: 216, 0: 0}.get(family)
    if minimum is None:
        raise HeaderError(f"unsupported version 2 address family 0x{family:02x}")
    if length < minimum or length > MAX_V2_PAYLOAD:
        raise HeaderError(f"a version 2 address block of {length} bytes")
    total = 16 + length
    if len(data) < total:
        return True
    if command == _LOCAL or family in (0, _UNIX_STREAM, _UNIX_DGRAM):
        return ProxyHeader(2, total)
    block = data[16:total]
    size = 4 if family in (_INET_STREAM, _INET_DGRAM) else 16
    source = _host(block[:size])
    destination = _host(block[size : 2 * size])
    ports = block[2 * size : 2 * size + 4]
    return ProxyHeader(
        2,
        total,
        (source, int.from_bytes(ports[:2], "big")),
        (destination, int.from_bytes(ports[2:], "big")),
    )


def formatHeader(version: int, source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """
    The header sent to a server: C{source} is the client, C{destination}
    the address it connected to. IPv4-mapped IPv6 addresses are written as
    IPv4; when one address is IPv4 and the other IPv6, both are written as
    IPv6. Anything that is not an IP address makes an UNKNOWN (version 1)
    or LOCAL (version 2) header.
    """
    try:
        src = ipaddress.ip_address(source[0].split("%")[0])
        dst = ipaddress.ip_address(destination[0].split("%")[0])
    except ValueError:
        return b"PROXY UNKNOWN\r\n" if version == 1 else SIGNATURE_V2 + bytes([_LOCAL, 0, 0, 0])
    src, dst = _unmap(src), _unmap(dst)
    if src.version != dst.version:
        src, dst = _mapped(src), _mapped(dst)
    if version == 1:
        family = "TCP4" if src.version == 4 else "TCP6"
        return f"PROXY {family} {_text(src)} {_text(dst)} {source[1]} {destination[1]}\r\n".encode("ascii")
    familyByte = _INET_STREAM if src.version == 4 else _INET6_STREAM
    block = src.packed + dst.packed + source[1].to_bytes(2, "big") + destination[1].to_bytes(2, "big")
    return SIGNATURE_V2 + bytes([_PROXY, familyByte]) + len(block).to_bytes(2, "big") + block


def _unmap(address: Any) -> Any:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _text(address: Any) -> str:
    # As Go writes them: an IPv4-mapped address in dotted form.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


def _mapped(address: Any) -> Any:
    if isinstance(address, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(f"::ffff:{address}")
    return address


# -- the entrypoint side --


@attrs.define
class _Reading:
    """
    A connection's progress through a possible header: the bytes held, and
    whether the peer may set the client address.
    """

    trusted: bool
    held: bytes = b""


def _reading(switch: Any) -> _Reading:
    state = getattr(switch, "_proxyProtocol", None)
    if state is None:
        config = switch.entryPoint.config.proxyProtocol
        peer = switch.transport.getPeer()
        trusted = config.insecure or _checker(config).contains(getattr(peer, "host", ""))
        state = switch._proxyProtocol = _Reading(trusted)
    return state


_checkers: dict[tuple[str, ...], IPChecker | None] = {}


def _checker(config: Any) -> Any:
    key = tuple(config.trustedIPs)
    checker = _checkers.get(key, _MISSING)
    if checker is _MISSING:
        checker = IPChecker.fromStrings(key) if key else None
        if len(_checkers) > 64:
            _checkers.clear()
        _checkers[key] = checker
    return checker if checker is not None else _NOBODY


class _Nobody:
    def contains(self, text: str) -> bool:
        return False


_NOBODY = _Nobody()
_MISSING: Any = object()


def setClientAddress(transport: Any, source: tuple[str, int], destination: tuple[str, int] | None) -> None:
    """
    Make C{transport} report C{source} as its peer from now on (to routing,
    ClientIP, X-Forwarded-For, the access log and PROXY headers sent to
    servers), and remember C{destination} as the address the client
    connected to.
    """
    host, port = source
    peer = (IPv6Address if ":" in host else IPv4Address)("TCP", host, port)
    # An attribute of this transport only: its class keeps reporting the
    # socket's peer for every other connection.
    transport.getPeer = lambda: peer
    if destination is not None:
        transport.proxyDestination = destination


def localAddress(transport: Any) -> tuple[str, int]:
    """
    The address the client connected to: the PROXY header's destination if
    one was accepted, else the socket's own address.
    """
    destination = getattr(transport, "proxyDestination", None)
    if destination is not None:
        return destination
    host = transport.getHost()
    return (getattr(host, "host", ""), getattr(host, "port", 0))


def acceptHeader(switch: Any, data: bytes) -> bytes | None:
    """
    Run first on every read of an entrypoint connection with
    C{proxyProtocol} set: strip a PROXY header and apply its client address
    (from trusted sources only).

    @return: the bytes the connection goes on with, or None when nothing is
        left to do with this read (a header still incomplete, a connection
        closed for a bad header, or one that a server-first TCP router took
        once the header was read).
    """
    state = _reading(switch)
    if state is _DONE:
        return data
    data = state.held + data
    try:
        header = parseHeader(data)
    except HeaderError as e:
        _log.debug(
            "entrypoint {entrypoint}: bad PROXY protocol header from {peer}: {error}",
            entrypoint=switch.entryPoint.entryPointName,
            peer=getattr(switch.transport.getPeer(), "host", ""),
            error=str(e),
        )
        switch._proxyProtocol = _DONE
        switch.transport.abortConnection()
        return None
    if header is True:
        state.held = data
        return None
    switch._proxyProtocol = _DONE
    if header is False:
        return data
    rest = data[header.length :]
    if state.trusted and header.source is not None:
        setClientAddress(switch.transport, header.source, header.destination)
        switch.addr = switch.transport.getPeer()
    elif header.source is not None:
        _log.debug(
            "entrypoint {entrypoint}: PROXY header from untrusted {peer} ignored",
            entrypoint=switch.entryPoint.entryPointName,
            peer=getattr(switch.transport.getPeer(), "host", ""),
        )
    from relayd.proxy.tcp import dispatchEarly

    if dispatchEarly(switch.entryPoint, switch, afterHeader=True, data=rest):
        switch._stopTimer()
        return None
    return rest or None


_DONE: Any = _Reading(trusted=False)
