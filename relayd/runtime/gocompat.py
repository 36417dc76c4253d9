"""Go-compatible primitives: RE2 regexp translation, header keys, queries, hosts and routing paths.

Traefik's rules are evaluated by Go code; the helpers here reproduce the Go
standard-library behaviour that rule matching depends on, so a rule answers the
same in relayd as it does in Traefik.

Choices worth knowing:

* Character sets are computed explicitly (as Go's parser does) and emitted as
  Python classes, so Python's own case folding and Unicode-aware C{\\d \\w \\s
  \\b} are never used.  C{(?i)} folds with Unicode simple case folding orbits
  derived from L{unicodedata} (C{i} does not match C{ı} or C{İ}, as in Go).
* C{\\p{..}} supports every Unicode general category (C{L}, C{Lu}, C{N},
  C{Nd}, C{P}, ...) and C{Any}, built from the Unicode tables of this Python;
  script names such as C{\\p{Greek}} are rejected with L{RegexError}.
* C{(?U)} is implemented: it swaps the greediness of quantifiers in its scope.
* Text built from raw bytes (L{routingPath}, L{parseGoQuery}) is
  decoded as UTF-8 with C{surrogateescape}, so it stays lossless; each invalid
  byte becomes one lone surrogate U+DC80..U+DCFF, which translated patterns
  treat exactly like Go treats an invalid byte (as U+FFFD).
* Go's limits on compiled program size and tree height are not replicated;
  capture groups nested more than a few hundred deep hit Python's parser limit
  and raise L{RegexError} (plain C{(?:...)} groups are spliced away).
"""

from __future__ import annotations

import functools
import re
import string
import unicodedata
from bisect import bisect_left, bisect_right
from dataclasses import dataclass

__all__ = [
    "RegexError",
    "canonicalHeaderKey",
    "canonicalRequestHost",
    "compileGoRegexp",
    "parseGoQuery",
    "routingPath",
    "splitHostPort",
]

MAX_RUNE = 0x10FFFF
MAX_REPEAT = 1000

_FOLD = 1
_DOTNL = 2
_MULTILINE = 4
_UNGREEDY = 8
_FLAG_BITS = {"i": _FOLD, "s": _DOTNL, "m": _MULTILINE, "U": _UNGREEDY}

_Ranges = list[tuple[int, int]]

_WORD: _Ranges = [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]
_PERL_GROUPS: dict[str, _Ranges] = {
    "d": [(0x30, 0x39)],
    "s": [(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)],
    "w": _WORD,
}
_POSIX_GROUPS: dict[str, _Ranges] = {
    "alnum": [(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)],
    "alpha": [(0x41, 0x5A), (0x61, 0x7A)],
    "ascii": [(0x00, 0x7F)],
    "blank": [(0x09, 0x09), (0x20, 0x20)],
    "cntrl": [(0x00, 0x1F), (0x7F, 0x7F)],
    "digit": [(0x30, 0x39)],
    "graph": [(0x21, 0x7E)],
    "lower": [(0x61, 0x7A)],
    "print": [(0x20, 0x7E)],
    "punct": [(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)],
    "space": [(0x09, 0x0D), (0x20, 0x20)],
    "upper": [(0x41, 0x5A)],
    "word": _WORD,
    "xdigit": [(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
}

_WORD_CLASS = "[0-9A-Z_a-z]"
_WORD_BOUNDARY = r"(?a:\b)"
_NOT_WORD_BOUNDARY = (
    f"(?:(?<={_WORD_CLASS})(?={_WORD_CLASS})"
    f"|(?<!{_WORD_CLASS})(?!{_WORD_CLASS}))"
)
_COUNT = re.compile(r"\{(0|[1-9][0-9]*)(?:(,)(0|[1-9][0-9]*)?)?\}")
_C_ESCAPES = {"a": 0x07, "f": 0x0C, "n": 0x0A, "r": 0x0D, "t": 0x09, "v": 0x0B}
_UNSUPPORTED_GROUPS = (
    ("(?<=", "lookbehind (?<= is not supported by Go's RE2 syntax"),
    ("(?<!", "negative lookbehind (?<! is not supported by Go's RE2 syntax"),
    ("(?=", "lookahead (?= is not supported by Go's RE2 syntax"),
    ("(?!", "negative lookahead (?! is not supported by Go's RE2 syntax"),
    ("(?>", "atomic group (?> is not supported by Go's RE2 syntax"),
    ("(?#", "comment group (?# is not supported by Go's RE2 syntax"),
    ("(?(", "conditional group (?( is not supported by Go's RE2 syntax"),
    ("(?P=", "backreference (?P= is not supported by Go's RE2 syntax"),
    ("(?P>", "recursion (?P> is not supported by Go's RE2 syntax"),
)


class RegexError(ValueError):
    """A pattern that Go's C{regexp.Compile} rejects, or that relayd cannot translate."""


def _normalize(ranges: _Ranges) -> _Ranges:
    """Sort ranges and merge overlapping or adjacent ones."""
    merged: _Ranges = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return merged


def _negate(ranges: _Ranges) -> _Ranges:
    """Complement normalized ranges within 0..MAX_RUNE."""
    result: _Ranges = []
    nextLo = 0
    for lo, hi in ranges:
        if lo > nextLo:
            result.append((nextLo, lo - 1))
        nextLo = hi + 1
    if nextLo <= MAX_RUNE:
        result.append((nextLo, MAX_RUNE))
    return result


def _foldKey(char: str) -> str:
    """Return a representative of the simple case folding orbit of one character."""
    if char == "\u0131":  # dotless i only folds under Turkic rules, which Go does not use
        return char
    upper = char.upper()
    if len(upper) == 1:
        lower = upper.lower()
        if len(lower) == 1:
            return lower
    lower = char.lower()
    return lower if len(lower) == 1 else char


@functools.cache
def _foldOrbits() -> tuple[list[int], dict[int, tuple[int, ...]]]:
    """Map every code point that has case variants to its full orbit, plus the sorted keys."""
    byKey: dict[str, set[int]] = {}
    for codePoint in range(0x20000):
        char = chr(codePoint)
        if char.lower() != char or char.upper() != char:
            key = _foldKey(char)
            byKey.setdefault(key, {ord(key)}).add(codePoint)
    orbits: dict[int, tuple[int, ...]] = {}
    for members in byKey.values():
        if len(members) > 1:
            orbit = tuple(sorted(members))
            for member in orbit:
                orbits[member] = orbit
    return sorted(orbits), orbits


def _fold(ranges: _Ranges) -> _Ranges:
    """Close ranges under case folding, as Go's appendFoldedRange does."""
    keys, orbits = _foldOrbits()
    extra: _Ranges = []
    for lo, hi in ranges:
        for index in range(bisect_left(keys, lo), bisect_right(keys, hi)):
            extra.extend((member, member) for member in orbits[keys[index]])
    return _normalize(list(ranges) + extra)


@functools.cache
def _categoryTable() -> dict[str, _Ranges]:
    """Ranges of every Unicode general category, keyed the way Go's unicode.Categories is."""
    runs: dict[str, _Ranges] = {}
    start, current = 0, unicodedata.category("\0")
    for codePoint in range(1, MAX_RUNE + 2):
        category = unicodedata.category(chr(codePoint)) if codePoint <= MAX_RUNE else ""
        if category != current:
            runs.setdefault(current, []).append((start, codePoint - 1))
            start, current = codePoint, category
    runs.pop("Cn", None)  # Go has no table of unassigned code points
    for major in "CLMNPSZ":
        runs[major] = _normalize([r for name, rs in runs.items() if name[0] == major for r in rs])
    runs["Any"] = [(0, MAX_RUNE)]
    return runs


def _pyChar(codePoint: int) -> str:
    """Spell one code point for a Python pattern, inside or outside a class."""
    if codePoint < 0x80:
        char = chr(codePoint)
        if char.isalnum():
            return char
        return "\\" + char if char.isprintable() else f"\\x{codePoint:02x}"
    return f"\\u{codePoint:04x}" if codePoint <= 0xFFFF else f"\\U{codePoint:08x}"


def _classBody(ranges: _Ranges) -> str:
    """Spell ranges as the inside of a Python character class."""
    parts = []
    for lo, hi in ranges:
        parts.append(_pyChar(lo) if lo == hi else f"{_pyChar(lo)}-{_pyChar(hi)}")
    return "".join(parts)


def _emitSet(ranges: _Ranges) -> str:
    """Spell a Go character set as one quantifiable Python atom.

    Lone surrogates U+DC80..U+DCFF stand for invalid UTF-8 bytes, which Go sees as U+FFFD.
    """
    hasReplacement = any(lo <= 0xFFFD <= hi for lo, hi in ranges)
    escapes = [(0xDC80, 0xDCFF)]
    if hasReplacement:
        adjusted = _normalize(ranges + escapes)
    else:
        adjusted = _negate(_normalize(_negate(ranges) + escapes))
    if not adjusted:
        return f"[^\\x00-{_pyChar(MAX_RUNE)}]"
    if adjusted == [(0, MAX_RUNE)]:
        return "(?s:.)"
    if len(adjusted) == 1 and adjusted[0][0] == adjusted[0][1]:
        return _pyChar(adjusted[0][0])
    complement = _negate(adjusted)
    if len(complement) < len(adjusted):
        return f"[^{_classBody(complement)}]"
    return f"[{_classBody(adjusted)}]"


@dataclass(frozen=True)
class _Repeat:
    """An x{min,max} node, kept to apply Go's nested repeat-count limit."""

    low: int
    high: int
    subs: tuple[_Repeat, ...]

    def isValid(self, budget: int) -> bool:
        """Mirror Go's repeatIsValid: nested counts must not multiply past the budget."""
        count = self.high
        if count == 0:
            return True
        if count < 0:
            count = self.low
        if count > budget:
            return False
        if count > 0:
            budget //= count
        return all(sub.isValid(budget) for sub in self.subs)


@dataclass(frozen=True)
class _Item:
    """One quantifiable element of a concatenation, already spelled for Python."""

    text: str
    repeats: tuple[_Repeat, ...] = ()
    wrapForRepeat: bool = False  # Python refuses to quantify it directly (\A, a*)


@dataclass
class _Frame:
    """An open group while parsing."""

    opener: str
    savedFlags: int
    alternatives: list[list[_Item]]
    items: list[_Item]


class _Translator:
    """Parse one RE2 pattern the way Go's regexp/syntax does, spelling Python as it goes."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.flags = 0
        self.names: set[str] = set()
        self.stack = [_Frame("", 0, [], [])]

    def fail(self, message: str) -> RegexError:
        """Build the error for this pattern, worded like Go's C{regexp/syntax} errors."""
        return RegexError(f"error parsing regexp {self.pattern!r}: {message}")

    def translate(self) -> str:
        """Return the Python spelling of the whole pattern, raising RegexError where Go would."""
        pattern, size = self.pattern, len(self.pattern)
        index, lastRepeat = 0, -1
        while index < size:
            char, start, repeatStart = pattern[index], index, -1
            if char == "(":
                index = self.openGroup(index)
            elif char == "|":
                frame = self.stack[-1]
                frame.alternatives.append(frame.items)
                frame.items = []
                index += 1
            elif char == ")":
                self.closeGroup()
                index += 1
            elif char in "^$":
                self.add(self.anchor(char))
                index += 1
            elif char == ".":
                dot = [(0, MAX_RUNE)] if self.flags & _DOTNL else _negate([(0x0A, 0x0A)])
                self.add(_Item(_emitSet(dot)))
                index += 1
            elif char == "[":
                index = self.parseClass(index)
            elif char in "*+?" or char == "{" and self.parseCount(index) is not None:
                index = self.repeat(index, lastRepeat)
                repeatStart = start
            elif char == "\\":
                index = self.parseBackslash(index)
            else:
                self.literal(ord(char))
                index += 1
            lastRepeat = repeatStart
        if len(self.stack) > 1:
            raise self.fail(f"missing closing ): `{pattern}`")
        return self.joinAlternatives(self.stack[0])

    def add(self, item: _Item) -> None:
        """Append an element to the concatenation being built."""
        self.stack[-1].items.append(item)

    def anchor(self, char: str) -> _Item:
        """Spell C{^} or C{$}: text boundaries, or line boundaries under C{(?m)}."""
        if self.flags & _MULTILINE:
            return _Item(f"(?m:{char})")
        return _Item(r"\A" if char == "^" else r"\Z", wrapForRepeat=True)

    def literal(self, codePoint: int) -> None:
        """Append one literal character, folded under C{(?i)}."""
        ranges = [(codePoint, codePoint)]
        self.add(_Item(_emitSet(_fold(ranges) if self.flags & _FOLD else ranges)))

    def joinAlternatives(self, frame: _Frame) -> str:
        """Spell the alternation held by a frame, without surrounding parentheses."""
        alternatives = frame.alternatives + [frame.items]
        return "|".join("".join(item.text for item in items) for items in alternatives)

    def openGroup(self, index: int) -> int:
        """Handle C{(} at index: a capture, a named capture, a flag change or a flag group."""
        pattern = self.pattern
        if not pattern.startswith("(?", index):
            self.stack.append(_Frame("(", self.flags, [], []))
            return index + 1
        for prefix, message in _UNSUPPORTED_GROUPS:
            if pattern.startswith(prefix, index):
                raise self.fail(message)
        rest = pattern[index:]
        if rest.startswith("(?P<") and len(rest) > 4 or rest.startswith("(?<") and len(rest) > 3:
            nameStart = index + (4 if rest[2] == "P" else 3)
            end = pattern.find(">", index)
            name = pattern[nameStart:end]
            validChars = string.ascii_letters + string.digits + "_"
            if end < 0 or not name or any(c not in validChars for c in name):
                shown = rest if end < 0 else pattern[index : end + 1]
                raise self.fail(f"invalid named capture: `{shown}`")
            opener = f"(?P<{name}>" if name.isidentifier() and name not in self.names else "("
            self.names.add(name)
            self.stack.append(_Frame(opener, self.flags, [], []))
            return end + 1
        flags, negated, sawFlag = self.flags, False, False
        position = index + 2
        while position < len(pattern):
            char = pattern[position]
            position += 1
            if char in _FLAG_BITS:
                flags = flags & ~_FLAG_BITS[char] if negated else flags | _FLAG_BITS[char]
                sawFlag = True
            elif char == "-" and not negated:
                negated, sawFlag = True, False
            elif char in ":)" and (sawFlag or not negated):
                if char == ":":
                    self.stack.append(_Frame("(?:", self.flags, [], []))
                self.flags = flags
                return position
            else:
                break
        raise self.fail(f"invalid or unsupported Perl syntax: `{pattern[index:position]}`")

    def closeGroup(self) -> None:
        """Handle C{)}: finish the innermost group and restore the flags it started with."""
        if len(self.stack) == 1:
            raise self.fail(f"unexpected ): `{self.pattern}`")
        frame = self.stack.pop()
        self.flags = frame.savedFlags
        alternatives = frame.alternatives + [frame.items]
        repeats = tuple(r for items in alternatives for item in items for r in item.repeats)
        if frame.opener == "(?:" and not frame.alternatives:
            # Splice a plain group in, keeping Python's nesting (and recursion) shallow.
            if len(frame.items) == 1:
                self.add(frame.items[0])
            else:
                self.add(_Item(self.joinAlternatives(frame), repeats, wrapForRepeat=True))
            return
        self.add(_Item(f"{frame.opener}{self.joinAlternatives(frame)})", repeats))

    def parseCount(self, index: int) -> tuple[int, int, int] | None:
        """Parse C{{n}}, C{{n,}} or C{{n,m}} at index into (min, max, end), max -1 if open."""
        match = _COUNT.match(self.pattern, index)
        if match is None:
            return None
        low = int(match[1])
        high = low if match[2] is None else int(match[3]) if match[3] else -1
        return low, high, match.end()

    def repeat(self, index: int, lastRepeat: int) -> int:
        """Apply the repetition operator at index to the previous element."""
        pattern = self.pattern
        op = pattern[index]
        if op == "{":
            counts = self.parseCount(index)
            assert counts is not None
            low, high, end = counts
            if low > MAX_REPEAT or high > MAX_REPEAT or 0 <= high < low:
                raise self.fail(f"invalid repeat count: `{pattern[index:end]}`")
            suffix = f"{{{low}}}" if low == high else f"{{{low},{high if high >= 0 else ''}}}"
        else:
            low, high, end = 0, 0, index + 1
            suffix = op
        ungreedy = bool(self.flags & _UNGREEDY)
        if end < len(pattern) and pattern[end] == "?":
            ungreedy, end = not ungreedy, end + 1
        if lastRepeat >= 0:
            shown = pattern[lastRepeat:end]
            if op == "+":
                raise self.fail(f"possessive quantifier `{shown}` is not supported by Go's RE2")
            raise self.fail(f"invalid nested repetition operator: `{shown}`")
        items = self.stack[-1].items
        if not items:
            raise self.fail(f"missing argument to repetition operator: `{pattern[index:end]}`")
        sub = items[-1]
        repeats = sub.repeats
        if op == "{":
            node = _Repeat(low, high, sub.repeats)
            if (low >= 2 or high >= 2) and not node.isValid(MAX_REPEAT):
                raise self.fail(f"invalid repeat count: `{pattern[index:end]}`")
            repeats = (node,)
        text = f"(?:{sub.text})" if sub.wrapForRepeat else sub.text
        items[-1] = _Item(text + suffix + ("?" if ungreedy else ""), repeats, wrapForRepeat=True)
        return end

    def group(self, ranges: _Ranges, negated: bool) -> _Ranges:
        """Apply the current case folding, then the sign, to a named character group."""
        if self.flags & _FOLD:
            ranges = _fold(ranges)
        return _negate(_normalize(ranges)) if negated else ranges

    def parseNamedGroup(self, index: int) -> tuple[_Ranges, int] | None:
        """Parse a Perl class C{\\d} or a Unicode class C{\\pL}/C{\\p{..}} at index."""
        pattern = self.pattern
        if not pattern.startswith("\\", index) or index + 1 >= len(pattern):
            return None
        letter = pattern[index + 1]
        if letter.lower() in _PERL_GROUPS:
            return self.group(_PERL_GROUPS[letter.lower()], letter.isupper()), index + 2
        if letter not in "pP":
            return None
        negated = letter == "P"
        if pattern.startswith("{", index + 2):
            end = pattern.find("}", index)
            if end < 0:
                raise self.fail(f"invalid character class range: `{pattern[index:]}`")
            name, end = pattern[index + 3 : end], end + 1
        else:
            name, end = pattern[index + 2 : index + 3], index + 3
        if name.startswith("^"):
            negated, name = not negated, name[1:]
        table = _categoryTable().get(name)
        if table is None:
            raise self.fail(
                f"Unicode class `{pattern[index:end]}` is not supported: only general categories "
                "(L, Lu, Ll, N, Nd, P, ...) and Any are available"
            )
        return self.group(table, negated), end

    def parseClass(self, index: int) -> int:
        """Parse a bracketed class at index, computing its set as Go's parseClass does."""
        pattern, start = self.pattern, index
        index += 1
        negated = pattern.startswith("^", index)
        index += negated
        ranges: _Ranges = []
        first = True
        while index >= len(pattern) or pattern[index] != "]" or first:
            first = False
            if pattern.startswith("[:", index) and index + 2 < len(pattern):
                end = pattern.find(":]", index + 2)
                if end >= 0:
                    name = pattern[index + 2 : end]
                    base = _POSIX_GROUPS.get(name.removeprefix("^"))
                    if base is None:
                        shown = pattern[index : end + 2]
                        raise self.fail(f"invalid character class range: `{shown}`")
                    ranges += self.group(base, name.startswith("^"))
                    index = end + 2
                    continue
            named = self.parseNamedGroup(index)
            if named is not None:
                ranges += named[0]
                index = named[1]
                continue
            rangeStart = index
            low, index = self.classChar(index, start)
            high = low
            if index + 1 < len(pattern) and pattern[index] == "-" and pattern[index + 1] != "]":
                high, index = self.classChar(index + 1, start)
                if high < low:
                    raise self.fail(f"invalid character class range: `{pattern[rangeStart:index]}`")
            ranges += _fold([(low, high)]) if self.flags & _FOLD else [(low, high)]
        ranges = _normalize(ranges)
        self.add(_Item(_emitSet(_negate(ranges) if negated else ranges)))
        return index + 1

    def classChar(self, index: int, classStart: int) -> tuple[int, int]:
        """Parse one class member character (possibly escaped), returning (code point, end)."""
        if index >= len(self.pattern):
            raise self.fail(f"missing closing ]: `{self.pattern[classStart:]}`")
        if self.pattern[index] == "\\":
            return self.parseEscape(index)
        return ord(self.pattern[index]), index + 1

    def parseBackslash(self, index: int) -> int:
        """Handle a backslash outside classes: assertions, C{\\Q...\\E}, classes, escapes."""
        pattern = self.pattern
        letter = pattern[index + 1 : index + 2]
        if letter in ("A", "z"):
            self.add(_Item(r"\A" if letter == "A" else r"\Z", wrapForRepeat=True))
            return index + 2
        if letter in ("b", "B"):
            self.add(_Item(_WORD_BOUNDARY if letter == "b" else _NOT_WORD_BOUNDARY))
            return index + 2
        if letter == "C":
            raise self.fail(r"\C (any byte) is not supported by Go's RE2 syntax")
        if letter == "Q":
            end = pattern.find("\\E", index)
            text = pattern[index + 2 :] if end < 0 else pattern[index + 2 : end]
            for char in text:
                self.literal(ord(char))
            return len(pattern) if end < 0 else end + 2
        named = self.parseNamedGroup(index)
        if named is not None:
            self.add(_Item(_emitSet(named[0])))
            return named[1]
        codePoint, index = self.parseEscape(index)
        self.literal(codePoint)
        return index

    def parseEscape(self, index: int) -> tuple[int, int]:
        """Parse a single-character escape at index, returning (code point, end)."""
        pattern, size = self.pattern, len(self.pattern)
        if index + 1 >= size:
            raise self.fail("trailing backslash at end of expression")
        char = pattern[index + 1]
        position = index + 2
        following = pattern[position : position + 1]
        isOctal = following != "" and following in "01234567"
        if char == "0" or char in "1234567" and isOctal:
            value = int(char)
            for _ in range(2):
                if position < size and pattern[position] in "01234567":
                    value = value * 8 + int(pattern[position])
                    position += 1
            return value, position
        if char in "123456789":
            raise self.fail(f"backreference \\{char} is not supported by Go's RE2 syntax")
        if char == "x" and position < size:
            if pattern[position] == "{":
                end = pattern.find("}", position)
                digits = pattern[position + 1 : end] if end >= 0 else ""
                if digits and all(c in string.hexdigits for c in digits):
                    value = int(digits, 16)
                    if value <= MAX_RUNE:
                        return value, end + 1
            else:
                digits = pattern[position : position + 2]
                if len(digits) == 2 and all(c in string.hexdigits for c in digits):
                    return int(digits, 16), position + 2
            raise self.fail(f"invalid escape sequence: `{pattern[index:position + 1]}`")
        if char in _C_ESCAPES:
            return _C_ESCAPES[char], position
        if char < "\x80" and not char.isalnum():
            return ord(char), position
        if char in "gk":
            raise self.fail(f"backreference \\{char} is not supported by Go's RE2 syntax")
        if char == "Z":
            raise self.fail(r"\Z is not supported by Go's RE2 syntax (use \z for end of text)")
        raise self.fail(f"invalid escape sequence: `\\{char}`")


@functools.lru_cache(maxsize=1024)
def compileGoRegexp(pattern: str) -> re.Pattern[str]:
    """Compile a Go RE2 pattern into a Python pattern whose C{search} answers like C{MatchString}.

    Raises RegexError for every pattern Go rejects and for constructs relayd cannot translate.
    """
    if any(0xD800 <= ord(char) <= 0xDFFF for char in pattern):
        raise RegexError(f"error parsing regexp {pattern!r}: invalid UTF-8")
    try:
        return re.compile(_Translator(pattern).translate())
    except RecursionError:
        raise RegexError(f"error parsing regexp {pattern!r}: expression nests too deeply") from None
    except re.error as error:
        raise RegexError(f"error parsing regexp {pattern!r}: cannot translate ({error})") from error


_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")


def canonicalHeaderKey(key: str) -> str:
    """Return Go's C{http.CanonicalHeaderKey(key)}: C{accept-encoding} becomes C{Accept-Encoding}.

    A key holding a space or any character that is not an HTTP token character is returned
    unchanged.
    """
    if any(char not in _TOKEN_CHARS for char in key):
        return key
    chars = []
    upper = True
    for char in key:
        chars.append(char.upper() if upper else char.lower())
        upper = char == "-"
    return "".join(chars)


def _unescapeBytes(text: str, plusIsSpace: bool) -> bytes | None:
    """Percent-decode like Go's C{url.unescape}; None where Go reports an EscapeError."""
    raw = text.encode("utf-8", "surrogateescape")
    out = bytearray()
    index = 0
    while index < len(raw):
        byte = raw[index]
        if byte == 0x25:  # '%'
            digits = raw[index + 1 : index + 3]
            if len(digits) < 2 or any(d not in b"0123456789abcdefABCDEF" for d in digits):
                return None
            out.append(int(digits, 16))
            index += 3
            continue
        out.append(0x20 if byte == 0x2B and plusIsSpace else byte)
        index += 1
    return bytes(out)


def parseGoQuery(rawQuery: str) -> dict[str, list[str]]:
    """Return what Go's C{url.ParseQuery} yields (its error ignored, as C{url.URL.Query} does).

    Pairs holding C{;} or an invalid escape are skipped; bytes that are not UTF-8 are kept as
    surrogate escapes.
    """
    values: dict[str, list[str]] = {}
    for part in rawQuery.split("&"):
        if not part or ";" in part:
            continue
        rawKey, _, rawValue = part.partition("=")
        key = _unescapeBytes(rawKey, True)
        value = _unescapeBytes(rawValue, True)
        if key is None or value is None:
            continue
        decodedKey = key.decode("utf-8", "surrogateescape")
        values.setdefault(decodedKey, []).append(value.decode("utf-8", "surrogateescape"))
    return values


def splitHostPort(hostport: str) -> tuple[str, str]:
    """Split like Go's C{net.SplitHostPort}, raising ValueError with Go's message on failure."""

    def failure(why: str) -> ValueError:
        return ValueError(f"address {hostport}: {why}" if hostport else why)

    colon = hostport.rfind(":")
    if colon < 0:
        raise failure("missing port in address")
    hostStart, portSearchStart = 0, 0
    if hostport[0] == "[":
        end = hostport.find("]")
        if end < 0:
            raise failure("missing ']' in address")
        if end + 1 == len(hostport):
            raise failure("missing port in address")
        if end + 1 != colon:
            if hostport[end + 1] == ":":
                raise failure("too many colons in address")
            raise failure("missing port in address")
        host = hostport[1:end]
        hostStart, portSearchStart = 1, end + 1
    else:
        host = hostport[:colon]
        if ":" in host:
            raise failure("too many colons in address")
    if "[" in hostport[hostStart:]:
        raise failure("unexpected '[' in address")
    if "]" in hostport[portSearchStart:]:
        raise failure("unexpected ']' in address")
    return host, hostport[colon + 1 :]


# Go's unicode.IsSpace, which strings.TrimSpace strips (Python's str.strip also strips \x1c-\x1f).
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(
    map(chr, range(0x2000, 0x200B))
)
_SIMPLE_LOWER = {"\u0130": "i"}


def _goLower(char: str) -> str:
    """Map one character as Go's C{unicode.ToLower}; an escaped invalid byte becomes U+FFFD."""
    if "\udc80" <= char <= "\udcff":
        return "\ufffd"
    lowered = char.lower()
    return lowered if len(lowered) == 1 else _SIMPLE_LOWER.get(char, char)


def canonicalRequestHost(hostHeader: str) -> str:
    """Return the host Traefik routes on: the Host header without port or brackets, trimmed and
    lower-cased as Go's C{strings.ToLower(strings.TrimSpace(host))} does.
    """
    host = hostHeader
    if host.isascii():
        colons = host.count(":")
        if colons == 0:
            return host.strip(" \t\n\v\f\r").lower()
        if colons == 1 and "[" not in host and "]" not in host:
            name, _, port = host.partition(":")
            if port.isdigit() or not port:
                return name.strip(" \t\n\v\f\r").lower()
    if ":" in host:
        try:
            host = splitHostPort(host)[0]
        except ValueError:
            if len(host) >= 2 and host[0] == "[" and host[-1] == "]":
                host = host[1:-1]
    return "".join(_goLower(char) for char in host.strip(_GO_SPACE))


_RESERVED_ESCAPES = frozenset(
    "%3A %2F %3F %23 %5B %5D %40 %21 %24 %26 %27 %28 %29 %2A %2B %2C %3B %3D %25".split()
)


def routingPath(escapedPath: str) -> str:
    """Return Traefik's routing path: escapes decoded, except upper-case reserved ones like C{%2F}.

    The input is Go's C{URL.EscapedPath()}, which is ASCII.  The decoded bytes are read as
    UTF-8 with surrogateescape.  ValueError is raised for a truncated or non-hexadecimal
    escape (the caller answers 400).
    """
    if "%" not in escapedPath:
        return escapedPath
    out = bytearray()
    index = 0
    while index < len(escapedPath):
        char = escapedPath[index]
        if char != "%":
            out += char.encode("utf-8", "surrogateescape")
            index += 1
            continue
        if index + 2 >= len(escapedPath):
            raise ValueError("invalid percent-encoding at the end of the URL path")
        escape = escapedPath[index : index + 3]
        if escape in _RESERVED_ESCAPES:
            out += escape.encode("ascii")
        else:
            decoded = _unescapeBytes(escape, False)
            if decoded is None:
                raise ValueError("invalid percent-encoding in the URL path")
            out += decoded
        index += 3
    return out.decode("utf-8", "surrogateescape")
