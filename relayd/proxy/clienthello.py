"""
Reading a TLS ClientHello from the first bytes of a connection, without
consuming them: is it TLS at all, and if so which server name (SNI) and
application protocols (ALPN) the client asks for. This is what TCP routers
match on before anything is decrypted (or for passthrough, ever).

The bytes may arrive in pieces: L{peekClientHello} says when it needs more.
A ClientHello may also span several TLS records; all of them are read, up to
L{MAX_HELLO} bytes of handshake message.
"""

from __future__ import annotations

from typing import Literal

import attrs

# TLS record content types.
_HANDSHAKE = 0x16
# An SSLv2-compatible ClientHello starts with a two-byte length whose high bit
# is set; no TLS record type is 0x80. Traefik counts it as TLS (without SNI),
# and the real handshake then refuses it.
_SSL2 = 0x80
# The ClientHello handshake message type.
_CLIENT_HELLO = 1
_RECORD_HEADER = 5
# Go's limit on a record's payload (TLS 1.3 ciphertext bound) and on a
# handshake message.
_MAX_RECORD = 16384 + 256
MAX_HELLO = 65536

_EXTENSION_SNI = 0
_EXTENSION_ALPN = 16

State = Literal["more", "plain", "tls", "malformed"]


@attrs.frozen
class Peek:
    """
    What the first bytes of a connection tell.

    @ivar state: C{"more"} (a ClientHello has begun and more bytes are
        needed), C{"plain"} (not TLS), C{"tls"} (a complete ClientHello, or
        an SSLv2 hello) or C{"malformed"} (TLS records that do not carry a
        valid ClientHello; Traefik closes such connections).
    @ivar serverName: the SNI, lower-cased, or C{""}.
    @ivar protocols: the ALPN protocols offered, in the client's order.
    """

    state: State
    serverName: str = ""
    protocols: tuple[str, ...] = ()
    reason: str = ""


MORE = Peek("more")
PLAIN = Peek("plain")


def _malformed(reason: str) -> Peek:
    return Peek("malformed", reason=reason)


def peekClientHello(data: bytes) -> Peek:
    """
    Look at the bytes received so far on a connection.

    Bytes that do not start like a TLS record (a handshake record of version
    3.x and of a possible length) are plain; a record that starts right but
    carries no valid ClientHello is malformed.
    """
    if not data:
        return MORE
    first = data[0]
    if first == _SSL2:
        return Peek("tls")
    if first != _HANDSHAKE:
        return PLAIN
    if len(data) < _RECORD_HEADER:
        # Judge what is there already: a second byte other than 3 cannot be
        # the major version of a TLS record.
        if len(data) >= 2 and data[1] != 3:
            return PLAIN
        return MORE
    if data[1] != 3 or int.from_bytes(data[3:5], "big") > _MAX_RECORD:
        return PLAIN
    message, error = _handshakeMessage(data)
    if error:
        return _malformed(error)
    if message is None:
        return MORE
    return _parseHello(message)


def _handshakeMessage(data: bytes) -> tuple[bytes | None, str]:
    """
    The first handshake message, gathered from as many handshake records as
    it spans: (message, "") once complete, (None, "") while incomplete, or
    (None, reason) when the records are not a handshake.
    """
    payload = bytearray()
    offset = 0
    needed = -1
    while True:
        if len(data) - offset < _RECORD_HEADER:
            return None, ""
        kind = data[offset]
        length = int.from_bytes(data[offset + 3 : offset + 5], "big")
        if kind != _HANDSHAKE:
            return None, "a non-handshake record inside the ClientHello"
        if data[offset + 1] != 3:
            return None, "a record that is not TLS"
        if length == 0 or length > _MAX_RECORD:
            return None, f"a handshake record of {length} bytes"
        end = offset + _RECORD_HEADER + length
        payload += data[offset + _RECORD_HEADER : end]
        if needed < 0 and len(payload) >= 4:
            if payload[0] != _CLIENT_HELLO:
                return None, f"handshake message type {payload[0]} instead of ClientHello"
            needed = 4 + int.from_bytes(payload[1:4], "big")
            if needed > MAX_HELLO:
                return None, f"a ClientHello of {needed} bytes"
        if needed >= 0 and len(payload) >= needed:
            return bytes(payload[4:needed]), ""
        if end > len(data):
            return None, ""
        offset = end


class _Reader:
    """
    Length-prefixed fields of a TLS structure; any overrun raises
    L{ValueError}.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, count: int) -> bytes:
        end = self.pos + count
        if end > len(self.data):
            raise ValueError("truncated")
        piece = self.data[self.pos : end]
        self.pos = end
        return piece

    def number(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, lengthSize: int) -> bytes:
        return self.take(self.number(lengthSize))

    @property
    def empty(self) -> bool:
        return self.pos >= len(self.data)


def _parseHello(body: bytes) -> Peek:
    """
    The SNI and ALPN of a ClientHello body, checked as strictly as Go's
    parser for the parts relayd reads.
    """
    try:
        reader = _Reader(body)
        reader.take(2 + 32)  # legacy_version, random
        if len(reader.vector(1)) > 32:
            return _malformed("a session id longer than 32 bytes")
        suites = reader.vector(2)
        if not suites or len(suites) % 2:
            return _malformed("bad cipher suites")
        if not reader.vector(1):
            return _malformed("no compression methods")
        if reader.empty:
            return Peek("tls")
        extensions = _Reader(reader.vector(2))
        if not reader.empty:
            return _malformed("bytes after the extensions")
        serverName = ""
        protocols: tuple[str, ...] = ()
        seen: set[int] = set()
        while not extensions.empty:
            kind = extensions.number(2)
            data = extensions.vector(2)
            if kind in seen:
                return _malformed(f"extension {kind} repeated")
            seen.add(kind)
            if kind == _EXTENSION_SNI:
                serverName = _serverName(data)
            elif kind == _EXTENSION_ALPN:
                protocols = _protocols(data)
    except ValueError as e:
        return _malformed(f"a ClientHello that does not parse ({e})")
    return Peek("tls", serverName=serverName, protocols=protocols)


def _serverName(data: bytes) -> str:
    names = _Reader(_Reader(data).vector(2))
    found = ""
    while not names.empty:
        nameType = names.number(1)
        name = names.vector(2)
        if nameType != 0:
            continue
        if found:
            raise ValueError("two host names")
        if not name or name.endswith(b"."):
            raise ValueError("an empty server name or one with a trailing dot")
        found = name.decode("latin-1").lower()
    return found


def _protocols(data: bytes) -> tuple[str, ...]:
    entries = _Reader(_Reader(data).vector(2))
    protocols = []
    while not entries.empty:
        proto = entries.vector(1)
        if not proto:
            raise ValueError("an empty ALPN protocol")
        protocols.append(proto.decode("latin-1"))
    if not protocols:
        raise ValueError("an empty ALPN list")
    return tuple(protocols)
