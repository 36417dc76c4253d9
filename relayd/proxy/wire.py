"""
HTTP/1.1 on the wire (RFC 9112), for both legs of the proxy: header maps,
request and response heads, chunked bodies, status lines, and a write path that
sends straight to the socket when nothing is queued.

Everything here is a pure function or a small state machine over bytes, so the
server (L{relayd.proxy.server}) and upstream (L{relayd.proxy.upstream})
protocols stay thin and the parsing is tested without sockets.
"""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Callable, Iterable, Iterator

from twisted.internet import tcp

# RFC 9110 token characters.
_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_METHOD = re.compile(_TOKEN)
_TARGET_BAD = re.compile(rb"[\x00-\x20\x7f]")
_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]")
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: ([^\r\n]*))?\r?")
_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class WireError(Exception):
    """
    A message that cannot be accepted: C{code} is the status to answer a
    client with (400, 431, 501, 505...).
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- header maps ---------------------------------------------------------------------------

_CANONICAL: dict[bytes, bytes] = {}


def canonicalName(lower: bytes) -> bytes:
    """
    Go's canonical form of a lower-case header name (C{x-real-ip} becomes
    C{X-Real-Ip}), the spelling Traefik sends; cached, since the same few
    names come back on every request.
    """
    name = _CANONICAL.get(lower)
    if name is None:
        if _METHOD.fullmatch(lower):
            name = b"-".join(part[:1].upper() + part[1:] for part in lower.split(b"-"))
        else:
            name = lower
        if len(_CANONICAL) < 4096:
            _CANONICAL[lower] = name
    return name


_PREFIX: dict[bytes, bytes] = {}


def fieldPrefix(lower: bytes) -> bytes:
    """
    C{b"Canonical-Name: "} for a lower-case field name (cached).
    """
    prefix = _PREFIX.get(lower)
    if prefix is None:
        prefix = canonicalName(lower) + b": "
        if len(_PREFIX) < 4096:
            _PREFIX[lower] = prefix
    return prefix


def _lower(name: bytes | str) -> bytes:
    if isinstance(name, str):
        name = name.encode("latin-1")
    return name.lower()


def _clean(value: bytes | str) -> bytes:
    if isinstance(value, str):
        value = value.encode("latin-1", "replace")
    if _CTL.search(value):
        # As Twisted does: a value can never split a header line.
        value = _CTL.sub(b" ", value)
    return value


class HeaderMap:
    """
    An ordered multimap of header fields with the methods of Twisted's
    C{Headers} that relayd uses; names are matched case-insensitively, stored
    lower-case and written in Go's canonical spelling; repeated fields keep
    their order.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: dict[bytes, list[bytes]] | None = None) -> None:
        self._fields: dict[bytes, list[bytes]] = fields if fields is not None else {}

    def __repr__(self) -> str:
        return f"HeaderMap({self._fields!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HeaderMap) and self._fields == other._fields

    def copy(self) -> HeaderMap:
        return HeaderMap({k: list(v) for k, v in self._fields.items()})

    def hasHeader(self, name: bytes | str) -> bool:
        return _lower(name) in self._fields

    def getRawHeaders(self, name: bytes | str, default: Any = None) -> Any:
        values = self._fields.get(_lower(name))
        if values is None:
            return default
        if isinstance(name, str):
            return [v.decode("latin-1") for v in values]
        return values

    def get(self, name: bytes) -> bytes | None:
        """
        The first value of C{name} (lower-case bytes), or C{None}.
        """
        values = self._fields.get(name)
        return values[0] if values else None

    def setRawHeaders(self, name: bytes | str, values: Iterable[bytes | str]) -> None:
        cleaned = [_clean(v) for v in values]
        key = _lower(name)
        if cleaned:
            self._fields.pop(key, None)
            self._fields[key] = cleaned
        else:
            self._fields.pop(key, None)

    def addRawHeader(self, name: bytes | str, value: bytes | str) -> None:
        self._fields.setdefault(_lower(name), []).append(_clean(value))

    def removeHeader(self, name: bytes | str) -> None:
        self._fields.pop(_lower(name), None)

    def getAllRawHeaders(self) -> Iterator[tuple[bytes, list[bytes]]]:
        for name, values in self._fields.items():
            yield canonicalName(name), values

    def lowerItems(self) -> Iterable[tuple[bytes, list[bytes]]]:
        """
        (lower-case name, values) pairs, without copying.
        """
        return self._fields.items()

    def serialize(self, out: list[bytes]) -> None:
        """
        Append the field lines to C{out}.
        """
        prefixes = _PREFIX
        for name, values in self._fields.items():
            prefix = prefixes.get(name) or fieldPrefix(name)
            for value in values:
                out.append(prefix + value + b"\r\n")


_BAD_FIELD_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_FIELD_NAMES = re.compile(rb"[!#$%&'*+.^_`|~0-9a-z-]+")
_NO_COLON = re.compile(rb"(?m)^[^:\n]*\n")


def parseFields(block: bytes, bad: int) -> HeaderMap:
    """
    Parse a block of field lines (each ending with a line feed).

    @raise WireError: with status C{bad} if any line is malformed (obsolete
        line folding, whitespace in or before the name, control characters).
    """
    if (
        _BAD_FIELD_BYTES.search(block)
        or block.count(b"\r") != block.count(b"\r\n")
        or _NO_COLON.search(block)
    ):
        raise WireError(bad, "malformed header field")
    lines = block.split(b"\n")
    lines.pop()
    parts = [line.partition(b":") for line in lines]
    fields = {name.lower(): [value.strip(b" \t\r")] for name, _, value in parts}
    if len(fields) != len(parts):
        # Repeated fields: keep every value, in order.
        fields = {}
        for name, _, value in parts:
            fields.setdefault(name.lower(), []).append(value.strip(b" \t\r"))
    # Every name is validated at once: a token, so no whitespace, no empty name.
    if fields and (b"" in fields or not _FIELD_NAMES.fullmatch(b"-".join(fields))):
        raise WireError(bad, "malformed header field name")
    return HeaderMap(fields)


def tokens(values: Iterable[bytes] | None) -> set[bytes]:
    """
    The lower-case comma-separated tokens of a list-valued field.
    """
    if values is not None and len(values) == 1 and b"," not in values[0]:
        token = values[0].strip().lower()
        return {token} if token else set()
    found: set[bytes] = set()
    for value in values or ():
        for token in value.split(b","):
            token = token.strip().lower()
            if token:
                found.add(token)
    return found


# -- heads ---------------------------------------------------------------------------------


def findHeadEnd(buffer: bytes | bytearray, start: int = 0) -> tuple[int, int]:
    """
    Where the head in C{buffer} ends: (index of the blank line, index of the
    first body byte), or (-1, -1) if it is not complete yet. Accepts bare LF
    line ends as RFC 9112 allows.
    """
    end = buffer.find(b"\r\n\r\n", start)
    if end >= 0:
        bare = buffer.find(b"\n\n", start, end)
        if bare < 0:
            return end, end + 4
        return bare, bare + 2
    end = buffer.find(b"\n\n", start)
    if end >= 0:
        return end, end + 2
    end = buffer.find(b"\n\r\n", start)
    if end >= 0:
        return end, end + 3
    return -1, -1


class RequestHead:
    """
    A parsed request line and header fields.
    """

    __slots__ = ("method", "target", "version", "headers")

    def __init__(self, method: bytes, target: bytes, version: bytes, headers: HeaderMap) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers


def parseRequestHead(head: bytes) -> RequestHead:
    """
    Parse a request head (request line and field lines, without the blank
    line).

    @raise WireError: 400 for a malformed message, 505 for an HTTP version
        other than 1.0 and 1.1.
    """
    lineEnd = head.find(b"\n")
    if lineEnd < 0:
        line, block = head, b""
    else:
        line, block = head[:lineEnd], head[lineEnd + 1 :]
    if line.endswith(b"\r"):
        line = line[:-1]
    parts = line.split(b" ")
    if len(parts) != 3:
        raise WireError(400, "malformed request line")
    method, target, version = parts
    if version != b"HTTP/1.1" and version != b"HTTP/1.0":
        if _VERSION.fullmatch(version):
            raise WireError(505, "unsupported HTTP version")
        raise WireError(400, "malformed HTTP version")
    if not _METHOD.fullmatch(method):
        raise WireError(400, "malformed method")
    if not target or _TARGET_BAD.search(target):
        raise WireError(400, "malformed request target")
    if block and not block.endswith(b"\n"):
        block += b"\n"
    return RequestHead(method, target, version, parseFields(block, 400))


class ResponseHead:
    """
    A parsed status line and header fields.
    """

    __slots__ = ("code", "reason", "version", "headers")

    def __init__(self, code: int, reason: bytes, version: bytes, headers: HeaderMap) -> None:
        self.code = code
        self.reason = reason
        self.version = version
        self.headers = headers


def parseResponseHead(head: bytes) -> ResponseHead:
    """
    Parse a response head from an upstream.

    @raise WireError: (502) for anything malformed.
    """
    lineEnd = head.find(b"\n")
    if lineEnd < 0:
        line, block = head, b""
    else:
        line, block = head[: lineEnd + 1], head[lineEnd + 1 :]
    match = _STATUS_LINE.fullmatch(line.rstrip(b"\n"))
    if match is None:
        raise WireError(502, "malformed status line")
    if block and not block.endswith(b"\n"):
        block += b"\n"
    version = b"HTTP/1.1" if match.group(1) == b"1" else b"HTTP/1.0"
    return ResponseHead(int(match.group(2)), match.group(3) or b"", version, parseFields(block, 502))


def bodyLength(headers: HeaderMap, bad: int) -> int | None:
    """
    The framing of a message body from its fields: C{None} for chunked, else
    the Content-Length (0 when neither is given).

    @raise WireError: for conflicting or malformed framing (C{bad}), or an
        unsupported transfer coding (501 for requests).
    """
    fields = headers._fields
    encodings = fields.get(b"transfer-encoding")
    lengths = fields.get(b"content-length")
    if encodings is None:
        if lengths is None:
            return 0
        if len(lengths) == 1 and lengths[0].isdigit() and len(lengths[0]) <= 18:
            return int(lengths[0])
    if encodings is not None:
        codings = [t.strip().lower() for v in headers.getRawHeaders(b"transfer-encoding") for t in v.split(b",") if t.strip()]
        if codings != [b"chunked"]:
            raise WireError(501 if bad == 400 else bad, "unsupported transfer encoding")
        if lengths:
            raise WireError(bad, "both Transfer-Encoding and Content-Length")
        return None
    if not lengths:
        return 0
    values = {v.strip() for value in lengths for v in value.split(b",")}
    if len(values) != 1:
        raise WireError(bad, "conflicting Content-Length values")
    (value,) = values
    if not value.isdigit() or len(value) > 18:
        raise WireError(bad, "malformed Content-Length")
    return int(value)


# -- chunked bodies ------------------------------------------------------------------------

_MAX_CHUNK_LINE = 4096
_MAX_TRAILERS = 64 * 1024


class ChunkedDecoder:
    """
    Decodes a chunked body fed in pieces; C{data(bytes)} gets the payload,
    C{end(trailers, rest)} the trailer fields and whatever followed the body.
    Raises L{WireError} (status C{bad}) on malformed input.
    """

    __slots__ = ("_data", "_end", "_bad", "_state", "_remaining", "_pending")

    _SIZE, _DATA, _CRLF, _TRAILER, _DONE = range(5)

    def __init__(self, data: Callable[[bytes], None], end: Callable[[HeaderMap, bytes], None], bad: int) -> None:
        self._data = data
        self._end = end
        self._bad = bad
        self._state = self._SIZE
        self._remaining = 0
        self._pending = b""

    @property
    def done(self) -> bool:
        return self._state == self._DONE

    def feed(self, data: bytes) -> None:
        if self._pending:
            data = self._pending + data
            self._pending = b""
        position = 0
        size = len(data)
        while position < size:
            state = self._state
            if state == self._DATA:
                take = min(self._remaining, size - position)
                chunk = data[position : position + take] if (position or take != size) else data
                position += take
                self._remaining -= take
                if not self._remaining:
                    self._state = self._CRLF
                self._data(chunk)
            elif state == self._SIZE:
                lineEnd = data.find(b"\n", position)
                if lineEnd < 0:
                    if size - position > _MAX_CHUNK_LINE:
                        raise WireError(self._bad, "chunk size line too long")
                    self._pending = data[position:]
                    return
                line = data[position:lineEnd].rstrip(b"\r")
                position = lineEnd + 1
                sizeText = line.split(b";", 1)[0].strip(b" \t")
                if not sizeText or len(sizeText) > 15 or sizeText.strip(b"0123456789abcdefABCDEF"):
                    raise WireError(self._bad, "malformed chunk size")
                self._remaining = int(sizeText, 16)
                self._state = self._DATA if self._remaining else self._TRAILER
            elif state == self._CRLF:
                if data.startswith(b"\r\n", position):
                    position += 2
                elif data.startswith(b"\n", position):
                    position += 1
                elif size - position < 2 and data[position:] == b"\r":
                    self._pending = b"\r"
                    return
                else:
                    raise WireError(self._bad, "missing CRLF after chunk data")
                self._state = self._SIZE
            elif state == self._TRAILER:
                if data.startswith(b"\r\n", position) or data.startswith(b"\n", position):
                    trailers = HeaderMap()
                    position += 2 if data[position] == 13 else 1
                    self._finish(trailers, data[position:])
                    return
                headEnd, bodyStart = findHeadEnd(data, position)
                if headEnd < 0:
                    if size - position > _MAX_TRAILERS:
                        raise WireError(self._bad, "trailer section too large")
                    if size - position == 1 and data[position] == 13:
                        self._pending = b"\r"
                        return
                    self._pending = data[position:]
                    return
                block = data[position:headEnd] + b"\n"
                self._finish(parseFields(block, self._bad), data[bodyStart:])
                return
            else:
                raise WireError(self._bad, "data after the last chunk")

    def _finish(self, trailers: HeaderMap, rest: bytes) -> None:
        self._state = self._DONE
        self._end(trailers, rest)


def chunk(data: bytes) -> list[bytes]:
    """
    The pieces of one chunk carrying C{data}, for a scatter write.
    """
    return [b"%x\r\n" % len(data), data, b"\r\n"]


def lastChunk(trailers: HeaderMap | None) -> bytes:
    if not trailers:
        return b"0\r\n\r\n"
    out = [b"0\r\n"]
    trailers.serialize(out)
    out.append(b"\r\n")
    return b"".join(out)


# -- status lines and dates ----------------------------------------------------------------


def _statusLine(code: int) -> bytes:
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = f"status code {code}"
    return b"HTTP/1.1 %d %s\r\n" % (code, phrase.encode("ascii"))


STATUS_LINES = {code: _statusLine(code) for code in range(100, 600)}


def statusLine(code: int, message: bytes | None = None) -> bytes:
    if message:
        return b"HTTP/1.1 %d %s\r\n" % (code, message)
    line = STATUS_LINES.get(code)
    return line if line is not None else _statusLine(code)


_dateCache: list[Any] = [0, b""]


def httpDate(now: float | None = None) -> bytes:
    """
    The Date field value for now, recomputed at most once a second.
    """
    second = int(time.time() if now is None else now)
    if _dateCache[0] != second:
        _dateCache[0] = second
        _dateCache[1] = formatdate(second, usegmt=True).encode("ascii")
    return _dateCache[1]  # type: ignore[no-any-return]


# -- writing -------------------------------------------------------------------------------


def socketOf(transport: Any) -> Any:
    """
    The socket of a plain TCP or UNIX transport, to which relayd may write
    directly when the transport has nothing queued; C{None} for anything else
    (TLS, in-memory test transports).
    """
    if isinstance(transport, tcp.Connection):
        return transport.socket
    return None


def send(transport: Any, sock: Any, pieces: list[bytes]) -> None:
    """
    Write C{pieces} to C{transport}: straight to the socket when its write
    buffer is empty (no reactor round trip, no copy), queueing what the
    kernel did not take; through C{transport.write} otherwise, so ordering,
    flow control and producers behave as Twisted's.
    """
    if (
        sock is not None
        and not transport.dataBuffer
        and not transport._tempDataLen
        and transport.connected
        and not transport.disconnecting
    ):
        try:
            sent = sock.sendmsg(pieces) if len(pieces) > 1 else sock.send(pieces[0])
        except BlockingIOError:
            sent = 0
        except OSError:
            # Let Twisted find the error on its own write and close the connection.
            sent = 0
        total = 0
        for index, piece in enumerate(pieces):
            total += len(piece)
            if total > sent:
                offset = len(piece) - (total - sent)
                rest = [piece[offset:] if offset else piece] + pieces[index + 1 :]
                transport.write(b"".join(rest) if len(rest) > 1 else rest[0])
                return
        return
    if len(pieces) == 1:
        transport.write(pieces[0])
    else:
        transport.writeSequence(pieces)
