"""
The path middlewares: C{stripPrefix}, C{stripPrefixRegex}, C{addPrefix},
C{replacePath} and C{replacePathRegex}, as Traefik v3 does them
(C{pkg/middlewares/stripprefix}, C{stripprefixregex}, C{addprefix},
C{replacepath}, C{replacepathregex}).

Go keeps two forms of a request path: C{URL.Path}, decoded, and
C{URL.RawPath}, an optional escaped spelling that is used only while it is a
valid escaping of C{Path} (C{URL.EscapedPath}). Traefik's middlewares edit
both, and the proxy forwards C{URL.RequestURI()}: the escaped path, or C{/}
when the path is empty. relayd's L{relayd.entrypoints.RequestContext} keeps
only C{forwardPath}, the escaped path to forward, so this module rebuilds the
pair from it (C{Path} is C{forwardPath} decoded; C{RawPath} is
C{forwardPath} when Go's default escaping of C{Path} differs from it, as
Go's C{setPath} does) and, after a change, stores C{forwardPath} as Go's
C{RequestURI} path and remembers the exact pair on the request
(C{request.relaydGoPath}, valid while C{forwardPath} is unchanged) so that
a later path middleware sees exactly what Traefik's would: an emptied path
(C{stripPrefix /api} on C{/api}) is forwarded as C{/} but stays empty for a
following C{addPrefix}, and a raw path that is not a valid escaping survives.

Choices where relayd's view differs from Go's, and what is done:

  - C{%2F} and other escapes: prefixes are compared with the decoded path,
    as Traefik compares them with C{URL.Path}, so C{stripPrefix /a/b} strips
    C{/a%2Fb/c} to C{/c}. The escaped form is trimmed by Traefik's
    C{encodedPrefixLen} (one decoded byte per C{%XX}), so escapes after the
    prefix are forwarded as they came (C{/stat/a%2Fb} becomes C{/a%2Fb}).
    C{replacePathRegex} matches the escaped path, as Traefik does.
  - Paths are Go strings, that is bytes: prefixes are compared as UTF-8
    bytes, and regexps see the path decoded from UTF-8 with
    C{surrogateescape} (see L{relayd.runtime.gocompat}).
  - Traefik answers 400 when cleaning the new path (C{URL.JoinPath}) would
    change it (C{/api./foo} stripped of C{/api}), and 500 with Go's
    C{invalid URL escape "%zz"} message when a replacement is not a valid
    escaping; so does relayd, with the same bodies.
  - A path made relative by a replacement (C{replacePath} with C{foo}) is
    forwarded as Go forwards it, without a leading slash.

The Go helpers here (escaping, C{JoinPath}, regexp replacement with Go's
template expansion) are also used by L{relayd.middlewares.redirect}.
"""

from __future__ import annotations

import unicodedata
from typing import Any, Iterator

from zope.interface import implementer

from relayd.interfaces import IHTTPHandler
from relayd.proxy.responses import plainResponse
from relayd.runtime.build import BuildContext, BuildError, ObjectInfo
from relayd.runtime.gocompat import RegexError, compileGoRegexp

FORWARDED_PREFIX_HEADER = b"X-Forwarded-Prefix"
REPLACED_PATH_HEADER = b"X-Replaced-Path"

# Go's unicode.IsSpace, which strings.TrimSpace strips.
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(
    map(chr, range(0x2000, 0x200B))
)
_HEX = frozenset(b"0123456789abcdefABCDEF")
_UPPER_HEX = b"0123456789ABCDEF"
_ALNUM = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_SUB_DELIMS_OK = frozenset(b"!$&'()*+,;=:@[]%")


def goTrimSpace(text: str) -> str:
    """
    Go's C{strings.TrimSpace}.
    """
    return text.strip(_GO_SPACE)


def encode(text: str) -> bytes:
    """
    A Go string (bytes) from relayd's text, lossless for escaped bytes.
    """
    return text.encode("utf-8", "surrogateescape")


def decode(data: bytes) -> str:
    """
    relayd's text for a Go string, lossless for bytes that are not UTF-8.
    """
    return data.decode("utf-8", "surrogateescape")


# Go's net/url escaping, on bytes. Modes are net/url's encodings.

PATH = "path"
PATH_SEGMENT = "pathSegment"
HOST = "host"
ZONE = "zone"
USER_PASSWORD = "userPassword"
QUERY_COMPONENT = "queryComponent"
FRAGMENT = "fragment"


class GoURLError(ValueError):
    """
    A net/url error (an escape or a URL that Go refuses), with Go's message.
    """


def goQuote(data: bytes) -> str:
    """
    Go's C{strconv.Quote} of a Go string.
    """
    out = ['"']
    text = data.decode("utf-8", "surrogateescape")
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char in '"\\':
            out.append("\\" + char)
        elif char == "\a":
            out.append("\\a")
        elif char == "\b":
            out.append("\\b")
        elif char == "\f":
            out.append("\\f")
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif char == "\v":
            out.append("\\v")
        elif code < 0x80 and not char.isprintable():
            out.append(f"\\x{code:02x}")
        elif not char.isprintable() and char != " ":
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def shouldEscape(c: int, mode: str) -> bool:
    """
    Go's C{url.shouldEscape} for one byte.
    """
    if c in _ALNUM:
        return False
    if mode in (HOST, ZONE) and c in b"!$&'()*+,;=:[]<>\"":
        return False
    if c in b"-_.~":
        return False
    if c in b"$&+,/:;=?@":
        if mode == PATH:
            return c == ord("?")
        if mode == PATH_SEGMENT:
            return c in b"/;,?"
        if mode == USER_PASSWORD:
            return c in b"@/?:"
        if mode == QUERY_COMPONENT:
            return True
        if mode == FRAGMENT:
            return False
    if mode == FRAGMENT and c in b"!()*":
        return False
    return True


def goEscape(data: bytes, mode: str) -> bytes:
    """
    Go's C{url.escape}.
    """
    out = bytearray()
    for c in data:
        if c == 0x20 and mode == QUERY_COMPONENT:
            out.append(0x2B)
        elif shouldEscape(c, mode):
            out += b"%" + _UPPER_HEX[c >> 4 : (c >> 4) + 1] + _UPPER_HEX[c & 15 : (c & 15) + 1]
        else:
            out.append(c)
    return bytes(out)


def goUnescape(data: bytes, mode: str) -> bytes:
    """
    Go's C{url.unescape}.

    @raise GoURLError: with Go's message, for a bad escape or a byte a host
        may not hold.
    """
    i = 0
    n = len(data)
    while i < n:
        c = data[i]
        if c == 0x25:
            if i + 2 >= n or data[i + 1] not in _HEX or data[i + 2] not in _HEX:
                raise GoURLError("invalid URL escape " + goQuote(data[i : i + 3]))
            value = int(data[i + 1 : i + 3], 16)
            if mode == HOST and value < 0x80 and data[i : i + 3] != b"%25":
                raise GoURLError("invalid URL escape " + goQuote(data[i : i + 3]))
            if mode == ZONE and data[i : i + 3] != b"%25" and value != 0x20 and shouldEscape(value, HOST):
                raise GoURLError("invalid URL escape " + goQuote(data[i : i + 3]))
            i += 3
            continue
        if mode in (HOST, ZONE) and c < 0x80 and shouldEscape(c, mode):
            raise GoURLError("invalid character " + goQuote(data[i : i + 1]) + " in host name")
        i += 1
    out = bytearray()
    i = 0
    while i < n:
        c = data[i]
        if c == 0x25:
            out.append(int(data[i + 1 : i + 3], 16))
            i += 3
            continue
        out.append(0x20 if c == 0x2B and mode == QUERY_COMPONENT else c)
        i += 1
    return bytes(out)


def validEncoded(data: bytes, mode: str) -> bool:
    """
    Go's C{url.validEncoded}: C{data} holds no byte that needs escaping.
    """
    return all(c in _SUB_DELIMS_OK or not shouldEscape(c, mode) for c in data)


def _ensureLeadingSlash(data: bytes) -> bytes:
    if not data or data.startswith(b"/"):
        return data
    return b"/" + data


def _cleanRooted(path: bytes) -> bytes:
    """
    Go's C{path.Clean} of a path starting with C{/}.
    """
    parts: list[bytes] = []
    for segment in path.split(b"/"):
        if segment in (b"", b"."):
            continue
        if segment == b"..":
            if parts:
                parts.pop()
            continue
        parts.append(segment)
    return b"/" + b"/".join(parts)


class GoPath:
    """
    A Go C{URL}'s C{Path} (decoded) and C{RawPath} (escaped hint), as bytes.
    """

    __slots__ = ("path", "rawPath")

    def __init__(self, path: bytes, rawPath: bytes = b"") -> None:
        self.path = path
        self.rawPath = rawPath

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GoPath):
            return NotImplemented
        return (self.path, self.rawPath) == (other.path, other.rawPath)

    def __repr__(self) -> str:
        return f"GoPath({self.path!r}, {self.rawPath!r})"

    @classmethod
    def fromEscaped(cls, escaped: bytes) -> GoPath:
        """
        Go's C{URL.setPath}: C{RawPath} is kept only if Go's own escaping of
        the decoded path differs from C{escaped}.

        @raise GoURLError: for a bad escape.
        """
        path = goUnescape(escaped, PATH)
        return cls(path, b"" if goEscape(path, PATH) == escaped else escaped)

    def escaped(self) -> bytes:
        """
        Go's C{URL.EscapedPath}.
        """
        if self.rawPath and validEncoded(self.rawPath, PATH):
            try:
                if goUnescape(self.rawPath, PATH) == self.path:
                    return self.rawPath
            except GoURLError:
                pass
        if self.path == b"*":
            return b"*"
        return goEscape(self.path, PATH)

    def requestPath(self) -> bytes:
        """
        The path part of Go's C{URL.RequestURI}: the escaped path, or C{/}.
        """
        return self.escaped() or b"/"

    def joinPath(self) -> GoPath:
        """
        Go's C{URL.JoinPath()} with no elements: the escaped path cleaned of
        dot segments and duplicate slashes, a trailing slash kept, a relative
        path kept relative.
        """
        first = self.escaped()
        if first.startswith(b"/"):
            joined = _cleanRooted(first)
        else:
            first = b"/" + first
            joined = _cleanRooted(first)[1:]
        if first.endswith(b"/") and not joined.endswith(b"/"):
            joined += b"/"
        try:
            return GoPath.fromEscaped(joined)
        except GoURLError:  # Go ignores setPath's error and keeps the path
            return GoPath(self.path, self.rawPath)


_STATE_ATTRIBUTE = "relaydGoPath"


def currentPath(request: Any) -> GoPath:
    """
    The Go C{Path}/C{RawPath} pair of C{request} as Traefik's middlewares
    would see it now.
    """
    forwardPath = request.relayd.forwardPath
    saved = getattr(request, _STATE_ATTRIBUTE, None)
    if saved is not None and saved[0] == forwardPath:
        return saved[1]  # type: ignore[no-any-return]
    escaped = encode(forwardPath)
    try:
        return GoPath.fromEscaped(escaped)
    except GoURLError:
        return GoPath(escaped)


def pathChanged(request: Any) -> bool:
    """
    Whether a path middleware has set the path of C{request} (and it is
    still the path to forward).
    """
    saved = getattr(request, _STATE_ATTRIBUTE, None)
    return saved is not None and saved[0] == request.relayd.forwardPath


def setCurrentPath(request: Any, goPath: GoPath) -> None:
    """
    Make C{goPath} the path of C{request}: C{forwardPath} becomes the path
    of Go's C{RequestURI}, and the exact pair is remembered for later path
    middlewares.
    """
    forwardPath = decode(goPath.requestPath())
    request.relayd.forwardPath = forwardPath
    setattr(request, _STATE_ATTRIBUTE, (forwardPath, goPath))


# Go regexps with Go's ReplaceAllString and template expansion.


def _skipClass(pattern: str, index: int) -> int:
    """
    The index just after the bracketed class that starts at C{index}, read as
    Go's parser reads it (the pattern is known to compile).
    """
    n = len(pattern)
    index += 1
    if index < n and pattern[index] == "^":
        index += 1
    first = True
    while index < n and (pattern[index] != "]" or first):
        first = False
        if pattern.startswith("[:", index):
            end = pattern.find(":]", index + 2)
            if end >= 0:
                index = end + 2
                continue
        index += 2 if pattern[index] == "\\" else 1
    return index + 1


def subexpNames(pattern: str) -> list[str]:
    """
    Go's C{Regexp.SubexpNames} for a pattern that compiles: C{""} for the
    whole match and each unnamed group, the name of each named group.
    """
    names = [""]
    n = len(pattern)
    index = 0
    while index < n:
        char = pattern[index]
        if char == "\\":
            if pattern.startswith("\\Q", index):
                end = pattern.find("\\E", index + 2)
                index = n if end < 0 else end + 2
            else:
                index += 2
        elif char == "[":
            index = _skipClass(pattern, index)
        elif char == "(":
            if pattern.startswith(("(?P<", "(?<"), index):
                start = index + (4 if pattern[index + 2] == "P" else 3)
                end = pattern.find(">", start)
                names.append(pattern[start:end])
                index = end + 1
            elif pattern.startswith("(?", index):
                index += 2
            else:
                names.append("")
                index += 1
        else:
            index += 1
    return names


def _isTemplateNameChar(char: str) -> bool:
    return char == "_" or char.isalpha() or unicodedata.category(char) == "Nd"


def _extract(template: str) -> tuple[str, int, str] | None:
    """
    Go's C{regexp.extract}: the name or number after a C{$}, and the rest.
    """
    if not template:
        return None
    brace = template[0] == "{"
    if brace:
        template = template[1:]
    i = 0
    while i < len(template) and _isTemplateNameChar(template[i]):
        i += 1
    if i == 0:
        return None
    name = template[:i]
    if brace:
        if i >= len(template) or template[i] != "}":
            return None
        i += 1
    num = 0
    for char in name:
        if not "0" <= char <= "9" or num >= 100_000_000:
            num = -1
            break
        num = num * 10 + ord(char) - ord("0")
    if name[0] == "0" and len(name) > 1:
        num = -1
    return name, num, template[i:]


class GoRegexp:
    """
    A Go (RE2) regexp with Go's matching, submatch and replacement methods.

    @raise RegexError: if Go's C{regexp.Compile} would refuse the pattern.
    """

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.compiled = compileGoRegexp(pattern)
        names = subexpNames(pattern)
        if len(names) != self.compiled.groups + 1:  # cannot happen; stay usable
            byIndex = {index: name for name, index in self.compiled.groupindex.items()}
            names = [byIndex.get(index, "") for index in range(self.compiled.groups + 1)]
        self.names = names

    def matchString(self, text: str) -> bool:
        """
        Go's C{MatchString}.
        """
        return self.compiled.search(text) is not None

    def findStringSubmatch(self, text: str) -> list[str] | None:
        """
        Go's C{FindStringSubmatch}: C{""} for groups that did not take part.
        """
        match = self.compiled.search(text)
        if match is None:
            return None
        return [match.group(i) or "" for i in range(self.compiled.groups + 1)]

    def expand(self, template: str, match: Any) -> str:
        """
        Go's C{Regexp.Expand}: C{$1}, C{${1}}, C{$name}, C{${name}} and C{$$};
        the longest run of letters, digits and C{_} names the group, an
        unknown or unmatched group expands to nothing and a malformed C{$}
        stays as it is.
        """
        out: list[str] = []
        while template:
            before, dollar, after = template.partition("$")
            if not dollar:
                break
            out.append(before)
            template = after
            if template.startswith("$"):
                out.append("$")
                template = template[1:]
                continue
            extracted = _extract(template)
            if extracted is None:
                out.append("$")
                continue
            name, num, template = extracted
            if num >= 0:
                if num <= self.compiled.groups and match.start(num) >= 0:
                    out.append(match.group(num))
            else:
                for index, groupName in enumerate(self.names):
                    if groupName == name and match.start(index) >= 0:
                        out.append(match.group(index))
                        break
        out.append(template)
        return "".join(out)

    def _matches(self, text: str) -> Iterator[Any]:
        """
        The matches Go's C{replaceAll} visits, in order: after an empty
        match the search moves on by one character.
        """
        searchPos = 0
        end = len(text)
        while searchPos <= end:
            match = self.compiled.search(text, searchPos)
            if match is None:
                return
            yield match
            width = 1 if searchPos < end else 0
            if searchPos + width > match.end():
                searchPos += width
            elif searchPos + 1 > match.end():
                searchPos += 1
            else:
                searchPos = match.end()

    def replaceAllString(self, text: str, template: str) -> str:
        """
        Go's C{ReplaceAllString}: every match replaced by the expanded
        template, except an empty match right after a previous match.
        """
        out: list[str] = []
        lastMatchEnd = 0
        for match in self._matches(text):
            out.append(text[lastMatchEnd : match.start()])
            if match.end() > lastMatchEnd or match.start() == 0:
                out.append(self.expand(template, match))
            lastMatchEnd = match.end()
        out.append(text[lastMatchEnd:])
        return "".join(out)


def compileRegexp(pattern: str, what: str = "") -> GoRegexp:
    """
    L{GoRegexp}, with a compile error turned into a L{BuildError}.
    """
    try:
        return GoRegexp(pattern)
    except RegexError as e:
        raise BuildError(f"{what}{e}") from None


# The middlewares.


def _encodedPrefixLen(rawPath: bytes, decodedLength: int) -> int:
    """
    Traefik's C{encodedPrefixLen}: how many bytes of C{rawPath} spell the
    first C{decodedLength} decoded bytes (three per C{%XX}).
    """
    decoded = 0
    i = 0
    while i < len(rawPath) and decoded < decodedLength:
        i += 3 if rawPath[i] == 0x25 and i + 2 < len(rawPath) else 1
        decoded += 1
    return i


def _cleanAndSet(request: Any, stripped: GoPath) -> bool:
    """
    Traefik's check after a strip or a regexp replacement: cleaning the new
    path (Go's C{URL.JoinPath}) must not change it. Sets the path, or answers
    400 and returns False.
    """
    if stripped.path:
        joined = stripped.joinPath()
        if joined.path != stripped.path:
            plainResponse(request, 400)
            return False
        stripped = joined
    setCurrentPath(request, stripped)
    return True


@implementer(IHTTPHandler)
class StripPrefix:
    """
    Removes the first configured prefix the decoded path starts with, and
    adds it to X-Forwarded-Prefix.
    """

    def __init__(self, next: Any, prefixes: list[str], forceSlash: bool = False) -> None:
        self.next = next
        self.prefixes = [(prefix, encode(prefix)) for prefix in prefixes]
        self.forceSlash = forceSlash

    def _strip(self, data: bytes, length: int) -> bytes:
        if self.forceSlash:
            return b"/" + data[length:].removeprefix(b"/")
        return _ensureLeadingSlash(data[length:])

    def handle(self, request: Any) -> None:
        current = currentPath(request)
        for _, prefix in self.prefixes:
            if not current.path.startswith(prefix):
                continue
            rawPath = current.rawPath
            if rawPath:
                rawPath = self._strip(rawPath, _encodedPrefixLen(rawPath, len(prefix)))
            if not _cleanAndSet(request, GoPath(self._strip(current.path, len(prefix)), rawPath)):
                return
            request.requestHeaders.addRawHeader(FORWARDED_PREFIX_HEADER, prefix)
            break
        self.next.handle(request)


@implementer(IHTTPHandler)
class StripPrefixRegex:
    """
    Removes the first regexp match found at the start of the decoded path,
    and adds it to X-Forwarded-Prefix.
    """

    def __init__(self, next: Any, expressions: list[GoRegexp]) -> None:
        self.next = next
        self.expressions = expressions

    def handle(self, request: Any) -> None:
        current = currentPath(request)
        text = decode(current.path)
        for expression in self.expressions:
            parts = expression.findStringSubmatch(text)
            if not parts or not parts[0]:
                continue
            if not text.startswith(parts[0]):
                continue
            prefix = encode(parts[0])
            request.requestHeaders.addRawHeader(FORWARDED_PREFIX_HEADER, prefix)
            rawPath = current.rawPath
            if rawPath:
                rawPath = _ensureLeadingSlash(rawPath[_encodedPrefixLen(rawPath, len(prefix)) :])
            if not _cleanAndSet(request, GoPath(_ensureLeadingSlash(current.path[len(prefix) :]), rawPath)):
                return
            break
        self.next.handle(request)


@implementer(IHTTPHandler)
class AddPrefix:
    """
    Puts the prefix before the path (and before its escaped form).
    """

    def __init__(self, next: Any, prefix: str) -> None:
        self.next = next
        self.prefix = encode(prefix)

    def handle(self, request: Any) -> None:
        current = currentPath(request)
        rawPath = _ensureLeadingSlash(self.prefix + current.rawPath) if current.rawPath else b""
        setCurrentPath(request, GoPath(_ensureLeadingSlash(self.prefix + current.path), rawPath))
        self.next.handle(request)


def _setEscapedPath(request: Any, escaped: bytes) -> GoPath | None:
    """
    Traefik's C{RawPath = escaped; Path = PathUnescape(RawPath)}; answers 500
    with Go's message and returns None if C{escaped} is not a valid escaping.
    """
    try:
        return GoPath(goUnescape(escaped, PATH_SEGMENT), escaped)
    except GoURLError as e:
        plainResponse(request, 500, f"{e}\n")
        return None


@implementer(IHTTPHandler)
class ReplacePath:
    """
    Replaces the path, keeping the old escaped one in X-Replaced-Path.
    """

    def __init__(self, next: Any, path: str) -> None:
        self.next = next
        self.path = encode(path)

    def handle(self, request: Any) -> None:
        current = currentPath(request)
        request.requestHeaders.addRawHeader(REPLACED_PATH_HEADER, current.rawPath or current.escaped())
        replaced = _setEscapedPath(request, self.path)
        if replaced is None:
            return
        setCurrentPath(request, replaced)
        self.next.handle(request)


@implementer(IHTTPHandler)
class ReplacePathRegex:
    """
    Rewrites the escaped path with a regexp replacement when it matches,
    keeping the old escaped path in X-Replaced-Path.
    """

    def __init__(self, next: Any, regexp: GoRegexp, replacement: str) -> None:
        self.next = next
        self.regexp = regexp
        self.replacement = replacement

    def handle(self, request: Any) -> None:
        current = currentPath(request)
        escaped = current.rawPath or current.escaped()
        text = decode(escaped)
        if self.regexp.matchString(text):
            request.requestHeaders.addRawHeader(REPLACED_PATH_HEADER, escaped)
            replaced = _setEscapedPath(request, encode(self.regexp.replaceAllString(text, self.replacement)))
            if replaced is None or not _cleanAndSet(request, replaced):
                return
        self.next.handle(request)


def buildStripPrefix(context: BuildContext, info: ObjectInfo, next: Any, chain: tuple[str, ...]) -> Any:
    """
    The C{stripPrefix} middleware: prefixes trimmed of spaces, tried in order;
    C{forceSlash} (deprecated) only when set to true.
    """
    config = info.config.config()
    return StripPrefix(next, [goTrimSpace(p) for p in config.prefixes], forceSlash=config.forceSlash is True)


def buildStripPrefixRegex(context: BuildContext, info: ObjectInfo, next: Any, chain: tuple[str, ...]) -> Any:
    """
    The C{stripPrefixRegex} middleware: regexps trimmed of spaces, tried in
    order.

    @raise BuildError: if a regexp does not compile.
    """
    config = info.config.config()
    return StripPrefixRegex(next, [compileRegexp(goTrimSpace(r)) for r in config.regex])


def buildAddPrefix(context: BuildContext, info: ObjectInfo, next: Any, chain: tuple[str, ...]) -> Any:
    """
    The C{addPrefix} middleware.

    @raise BuildError: if the prefix is empty.
    """
    config = info.config.config()
    if not config.prefix:
        raise BuildError("prefix cannot be empty")
    return AddPrefix(next, config.prefix)


def buildReplacePath(context: BuildContext, info: ObjectInfo, next: Any, chain: tuple[str, ...]) -> Any:
    """
    The C{replacePath} middleware.
    """
    return ReplacePath(next, info.config.config().path)


def buildReplacePathRegex(context: BuildContext, info: ObjectInfo, next: Any, chain: tuple[str, ...]) -> Any:
    """
    The C{replacePathRegex} middleware: regexp and replacement trimmed of
    spaces.

    @raise BuildError: if the regexp does not compile.
    """
    config = info.config.config()
    regexp = compileRegexp(goTrimSpace(config.regex), f"error compiling regular expression {config.regex}: ")
    return ReplacePathRegex(next, regexp, goTrimSpace(config.replacement))
