"""Tests for relayd.runtime.gocompat: Go-compatible regexps, header keys, queries, hosts and paths."""

from __future__ import annotations

import random
import re
import string
from urllib.parse import parse_qs, quote

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from relayd.runtime.gocompat import (
    RegexError,
    canonicalHeaderKey,
    canonicalRequestHost,
    compileGoRegexp,
    parseGoQuery,
    routingPath,
    splitHostPort,
)

# (pattern, subject, what Go's regexp.MatchString answers); checked against Go 1.19.
MATCH_CASES: list[tuple[str, str, bool]] = [
    # Anchors: `$` is end of text only, unless (?m).
    (r"^/api$", "/api", True),
    (r"^/api$", "/api\n", False),
    (r"^/api\z", "/api\n", False),
    (r"(?m)^/api$", "/api\n", True),
    (r"(?m)^b", "a\nb", True),
    (r"^b", "a\nb", False),
    (r"\Aab", "xab", False),
    (r"^*a", "a", True),
    (r"\b*x", "x", True),
    # Case folding, with flags at the start, in the middle and negated.
    (r"(?i)^FOO", "foo", True),
    (r"^FOO", "foo", False),
    (r"a(?i)b", "aB", True),
    (r"a(?i)b", "AB", False),
    (r"(a(?i)b)c", "aBc", True),
    (r"(a(?i)b)c", "aBC", False),
    (r"(?i)a(?-i)b", "Ab", True),
    (r"(?i)a(?-i)b", "AB", False),
    (r"(?i:a)b", "Ab", True),
    (r"(?i:a)b", "AB", False),
    (r"(?i)k", "\u212a", True),
    (r"(?i)s", "\u017f", True),
    (r"(?i)i", "\u0131", False),
    (r"(?i)i", "\u0130", False),
    (r"(?i)\W", "k", False),
    (r"(?i)\W", "\u212a", False),
    (r"(?i)[^k]", "K", False),
    (r"(?i)[[:upper:]]", "q", True),
    (r"(?i)\p{Lu}", "q", True),
    # Dot and (?s).
    (r"^.$", "\n", False),
    (r"(?s)^.$", "\n", True),
    (r"(?i-s:.)", "\n", False),
    # Perl classes are ASCII-only.
    (r"\d", "\u0663", False),
    (r"\d", "7", True),
    (r"\w", "\u00e9", False),
    (r"\w", "_", True),
    (r"\s", "\v", False),
    (r"\s", "\f", True),
    (r"[\d]", "\u0663", False),
    (r"[^\d]", "\u0663", True),
    (r"[\s\d]+$", " 1", True),
    (r"\bx\b", "\u00e9x\u00e9", True),
    (r"\B", "", True),
    (r"a\Bb", "ab", True),
    # POSIX classes.
    (r"^[[:digit:]]+$", "2024", True),
    (r"[[:digit:]]+", "abc", False),
    (r"^[[:^digit:]]+$", "abc", True),
    (r"[[:alpha:]]", "\u00e9", False),
    (r"[[:space:]]", "\v", True),
    (r"[[:punct:]]", "~", True),
    (r"[[:xdigit:]]{2}", "fA", True),
    (r"[[:word:]-]+$", "a-b_c", True),
    # Unicode classes.
    (r"^\pL+$", "\u00e9t\u00e9", True),
    (r"\pN", "\u0663", True),
    (r"\p{L}", "1", False),
    (r"\p{N}", "\u2167", True),
    (r"^\p{Lu}\p{Ll}$", "Ab", True),
    (r"\p{Lu}", "a", False),
    (r"\PL", "a", False),
    (r"\p{^L}", "1", True),
    (r"\p{Any}", "\n", True),
    # Named groups in both spellings, and names Python would refuse.
    (r"^(?P<ver>v\d+)/(?<rest>.*)$", "v2/users", True),
    (r"(?P<1a>x)", "x", True),
    (r"(?P<n>a)(?P<n>b)", "ab", True),
    # Escapes.
    (r"\x41", "A", True),
    (r"\x{263a}", "\u263a", True),
    (r"\101", "A", True),
    (r"\0", "\0", True),
    (r"\12", "\n", True),
    (r"\Qa.b\E", "axb", False),
    (r"\Qa.b\E", "a.b", True),
    (r"\Qa*", "a*", True),
    (r"\Qab\E*", "a", True),
    (r"\.", ".", True),
    (r"\_", "_", True),
    (r"\-", "-", True),
    (r"\a\f\t\n\r\v", "\a\f\t\n\r\v", True),
    # Classes with brackets and dashes in odd places.
    (r"[]a]", "]", True),
    (r"[^]a]", "]", False),
    (r"[a-]", "-", True),
    (r"[[a]", "[", True),
    (r"[\]]", "]", True),
    # Repetition, literal braces and (?U).
    (r"^a{2}$", "aa", True),
    (r"^a{2,}$", "a", False),
    (r"^a{1,3}$", "aaaa", False),
    (r"a{,3}", "a{,3}", True),
    (r"x{01}", "x{01}", True),
    (r"^{", "{", True),
    (r"a*(?U)*", "b", True),
    (r"(?U)^a+$", "aaa", True),
    (r"^a{0}$", "", True),
    (r"(?:)*", "", True),
    # Invalid UTF-8 bytes (kept as surrogate escapes) behave like Go's U+FFFD.
    (r"^/\x{FFFD}$", "/\udcff", True),
    (r"^/[^\x{FFFD}]$", "/\udcff", False),
    (r"^/.$", "/\udcff", True),
    # Alternation.
    (r"^(?:a|)$", "", True),
    (r"^(|b)c$", "bc", True),
]

# (pattern, a fragment of the RegexError message); Go rejects every one of these too.
REJECTED_CASES: list[tuple[str, str]] = [
    (r"a(?=b)", "lookahead (?="),
    (r"a(?!b)", "negative lookahead (?!"),
    (r"(?<=a)b", "lookbehind (?<="),
    (r"(?<!a)b", "negative lookbehind (?<!"),
    (r"(a)\1", r"backreference \1"),
    (r"(a)\9", r"backreference \9"),
    (r"(a)\g<1>", r"backreference \g"),
    (r"(?P<n>a)\k<n>", r"backreference \k"),
    (r"(?P<n>a)(?P=n)", "backreference (?P="),
    (r"(?>a)", "atomic group"),
    (r"a*+", "possessive quantifier"),
    (r"a++", "possessive quantifier"),
    (r"a?+", "possessive quantifier"),
    (r"a{2}+", "possessive quantifier"),
    (r"(a)?(?(1)b|c)", "conditional group"),
    (r"a(?#comment)", "comment group"),
    (r"a\Z", r"\Z is not supported"),
    (r"\C", r"\C (any byte)"),
    (r"(a", "missing closing )"),
    (r"a)", "unexpected )"),
    (r"[a", "missing closing ]"),
    (r"[]", "missing closing ]"),
    (r"a**", "invalid nested repetition operator"),
    (r"a*??", "invalid nested repetition operator"),
    (r"a{2}{3}", "invalid nested repetition operator"),
    (r"*a", "missing argument to repetition operator"),
    (r"a|*", "missing argument to repetition operator"),
    (r"(?i)*", "missing argument to repetition operator"),
    (r"a{2,1}", "invalid repeat count"),
    (r"a{1001}", "invalid repeat count"),
    (r"(?:a{1000}){2}", "invalid repeat count"),
    (r"(?:(?:a{10}){10}){11}", "invalid repeat count"),
    (r"[z-a]", "invalid character class range"),
    (r"[[:foo:]]", "invalid character class range"),
    (r"\p{Foo}", "is not supported"),
    (r"\p", "is not supported"),
    (r"\e", "invalid escape sequence"),
    (r"\u0041", "invalid escape sequence"),
    (r"\x4", "invalid escape sequence"),
    (r"\x{110000}", "invalid escape sequence"),
    (r"\x{}", "invalid escape sequence"),
    (r"\é", "invalid escape sequence"),
    (r"[\b]", "invalid escape sequence"),
    (r"[a-\d]", "invalid escape sequence"),
    ("a\\\\\\", "trailing backslash"),
    (r"(?x)a", "invalid or unsupported Perl syntax"),
    (r"(?a)a", "invalid or unsupported Perl syntax"),
    (r"(?i-)a", "invalid or unsupported Perl syntax"),
    (r"(?-)a", "invalid or unsupported Perl syntax"),
    (r"(?", "invalid or unsupported Perl syntax"),
    (r"(?P<>a)", "invalid named capture"),
    (r"(?P<a-b>a)", "invalid named capture"),
    (r"(?P<name", "invalid named capture"),
    ("a\ud800", "invalid UTF-8"),
]


RESERVED_CHARS = ":/?#[]@!$&'()*+,;=%"
_CHARS = st.characters(exclude_categories=["Cs"])  # any code point but a lone surrogate


def _goQuote(text: str) -> str:
    """Escape text the way Go's regexp.QuoteMeta does, so it matches itself literally."""
    return "".join("\\" + char if char in r"\.+*?()|[]{}^$" else char for char in text)


class CompileGoRegexpTests(SynchronousTestCase):
    """Tests for L{compileGoRegexp}."""

    def test_matchTable(self) -> None:
        """Every pattern in the table answers search() exactly as Go's MatchString does."""
        failures = [
            (pattern, subject, expected)
            for pattern, subject, expected in MATCH_CASES
            if (compileGoRegexp(pattern).search(subject) is not None) != expected
        ]
        self.assertEqual(failures, [])

    def test_rejectedTable(self) -> None:
        """Every pattern Go rejects raises RegexError whose message names the construct."""
        failures = []
        for pattern, fragment in REJECTED_CASES:
            try:
                compileGoRegexp(pattern)
            except RegexError as error:
                if fragment not in str(error):
                    failures.append((pattern, str(error)))
            else:
                failures.append((pattern, "accepted"))
        self.assertEqual(failures, [])

    def test_unicodeScriptsRejected(self) -> None:
        """Unicode script classes, which Go accepts, are refused with a message naming the class."""
        error = self.assertRaises(RegexError, compileGoRegexp, r"\p{Greek}")
        self.assertIn(r"\p{Greek}", str(error))
        self.assertIn("only general categories", str(error))

    def test_deepNestingRejected(self) -> None:
        """Capture groups nested deeper than Python's parser follows raise RegexError, not RecursionError."""
        error = self.assertRaises(RegexError, compileGoRegexp, "(" * 1200 + "a" + ")" * 1200)
        self.assertIn("nests too deeply", str(error))

    def test_plainGroupsSpliced(self) -> None:
        """Nested non-capturing groups are flattened, so deep but plain nesting still compiles."""
        pattern = compileGoRegexp("(?:" * 2000 + "ab" + ")" * 2000 + "+c")
        self.assertIsNotNone(pattern.search("ababc"))
        self.assertIsNone(pattern.search("bc"))

    def test_regexErrorIsValueError(self) -> None:
        """RegexError is a ValueError so callers may catch either."""
        self.assertTrue(issubclass(RegexError, ValueError))
        self.assertRaises(ValueError, compileGoRegexp, "(")

    def test_namedGroupsKept(self) -> None:
        """Both named-group spellings become Python named groups usable for extraction."""
        match = compileGoRegexp(r"^/(?P<a>\w+)/(?<b>\d+)$").search("/users/42")
        assert match is not None
        self.assertEqual(match.groupdict(), {"a": "users", "b": "42"})

    def test_ungreedyFlag(self) -> None:
        """(?U) swaps the greediness of quantifiers in its scope, as in Go."""
        cases = {r"(?U)a+": "a", r"(?U)a+?": "aaa", r"(?:(?U)a+)a+": "aaa", r"(?U)a{1,2}": "a"}
        found = {pattern: compileGoRegexp(pattern).search("aaa") for pattern in cases}
        self.assertEqual({p: m.group() if m else None for p, m in found.items()}, cases)

    def test_cached(self) -> None:
        """Compiling the same pattern twice returns the same compiled object."""
        self.assertIs(compileGoRegexp(r"^/cache$"), compileGoRegexp(r"^/cache$"))

    def test_returnsPythonPattern(self) -> None:
        """The result is a compiled Python re pattern over str."""
        self.assertIsInstance(compileGoRegexp("a"), re.Pattern)

    @settings(max_examples=200, deadline=None)
    @given(st.text(_CHARS))
    def test_quotedTextMatchesItself(self, text: str) -> None:
        """Any text escaped as Go's QuoteMeta does matches itself exactly, and nothing longer."""
        pattern = compileGoRegexp("^" + _goQuote(text) + "$")
        self.assertIsNotNone(pattern.search(text))
        self.assertIsNone(pattern.search(text + "x"))

    @settings(max_examples=200, deadline=None)
    @given(st.text(_CHARS).filter(lambda t: "\\E" not in t))
    def test_quotedSpanMatchesItself(self, text: str) -> None:
        """Text inside \\Q...\\E is matched literally, as in Go."""
        self.assertIsNotNone(compileGoRegexp(r"^\Q" + text + r"\E$").search(text))

    @settings(max_examples=300, deadline=None)
    @given(_CHARS)
    def test_perlClassesAreAscii(self, char: str) -> None:
        """\\d, \\w and \\s match exactly their ASCII sets, inside brackets or not."""
        sets = {"d": string.digits, "w": string.ascii_letters + string.digits + "_", "s": "\t\n\f\r "}
        for letter, members in sets.items():
            expected = char in members
            self.assertEqual(compileGoRegexp(f"\\{letter}").search(char) is not None, expected)
            self.assertEqual(compileGoRegexp(f"[\\{letter}]").search(char) is not None, expected)
            self.assertEqual(compileGoRegexp(f"\\{letter.upper()}").search(char) is None, expected)

    @settings(max_examples=200, deadline=None)
    @given(st.text(string.ascii_letters + string.digits + "-./"), st.randoms(use_true_random=False))
    def test_foldCaseAscii(self, text: str, rng: random.Random) -> None:
        """(?i) makes a literal match every ASCII case variant of itself."""
        variant = "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in text)
        self.assertIsNotNone(compileGoRegexp("(?i)^" + _goQuote(text) + "$").search(variant))

    @settings(max_examples=300, deadline=None)
    @given(st.text(st.sampled_from(list("ab()[]{}|*+?^$.\\-:,0129iPQEdpLz<>=!#"))))
    def test_onlyRegexErrorEscapes(self, pattern: str) -> None:
        """Arbitrary pattern text either compiles or raises RegexError, never re.error or anything else."""
        try:
            compileGoRegexp(pattern)
        except RegexError:
            pass


class CanonicalHeaderKeyTests(SynchronousTestCase):
    """Tests for L{canonicalHeaderKey}."""

    def test_documentedExamples(self) -> None:
        """Letters at the start and after hyphens are upper-cased and the rest lower-cased."""
        self.assertEqual(canonicalHeaderKey("accept-encoding"), "Accept-Encoding")
        self.assertEqual(canonicalHeaderKey("x-forwarded-for"), "X-Forwarded-For")
        self.assertEqual(canonicalHeaderKey("X-FORWARDED-FOR"), "X-Forwarded-For")
        self.assertEqual(canonicalHeaderKey("content-MD5"), "Content-Md5")
        self.assertEqual(canonicalHeaderKey("foo_bar"), "Foo_bar")
        self.assertEqual(canonicalHeaderKey("x--y"), "X--Y")
        self.assertEqual(canonicalHeaderKey("-x"), "-X")
        self.assertEqual(canonicalHeaderKey(""), "")

    def test_invalidKeysUnchanged(self) -> None:
        """Keys with a space or any non-token character are returned unchanged."""
        for key in ["foo bar", "accept-encoding ", "x:y", "h\u00e9llo-world", "a\tb", "a(b"]:
            self.assertEqual(canonicalHeaderKey(key), key)

    @given(st.text(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"))
    def test_caseInsensitiveAndIdempotent(self, key: str) -> None:
        """For token keys the result ignores the input's case and is a fixed point."""
        canonical = canonicalHeaderKey(key)
        self.assertEqual(canonical, canonicalHeaderKey(key.swapcase()))
        self.assertEqual(canonicalHeaderKey(canonical), canonical)
        self.assertEqual(canonical.lower(), key.lower())


class ParseGoQueryTests(SynchronousTestCase):
    """Tests for L{parseGoQuery}."""

    def test_basic(self) -> None:
        """Pairs split on & and the first =, with values appended in order per key."""
        self.assertEqual(parseGoQuery("a=1&b=2&a=3&c=x=y"), {"a": ["1", "3"], "b": ["2"], "c": ["x=y"]})

    def test_unescaping(self) -> None:
        """Keys and values are unescaped with + as space and %XX as a byte."""
        self.assertEqual(parseGoQuery("q=a+b%20c&k%2By=%E2%98%BA"), {"q": ["a b c"], "k+y": ["\u263a"]})

    def test_emptyParts(self) -> None:
        """Empty parts are skipped while a bare key or bare = yields an empty value."""
        self.assertEqual(parseGoQuery("&&a&=&b="), {"a": [""], "": [""], "b": [""]})
        self.assertEqual(parseGoQuery(""), {})

    def test_semicolonSkipped(self) -> None:
        """A part containing a semicolon is skipped entirely, as Go does since 1.17."""
        self.assertEqual(parseGoQuery("a=1;b=2&c=3&d;"), {"c": ["3"]})

    def test_invalidEscapeSkipsPair(self) -> None:
        """An invalid or truncated escape in key or value drops only that pair."""
        self.assertEqual(parseGoQuery("a=%zz&b=1&c=%4&d%=2&e=%"), {"b": ["1"]})

    def test_keyOrder(self) -> None:
        """Keys keep the order in which they first appear."""
        self.assertEqual(list(parseGoQuery("z=1&a=2&m=3&a=4")), ["z", "a", "m"])

    def test_invalidUtf8Escaped(self) -> None:
        """Bytes that are not UTF-8 survive as surrogate escapes."""
        self.assertEqual(parseGoQuery("a=%FF"), {"a": ["\udcff"]})

    @given(
        st.lists(
            st.one_of(
                st.text(string.ascii_letters + string.digits + "=&+-._~", max_size=6),
                st.sampled_from(["%41", "%2B", "%26", "%3D", "%20", "%7e"]),
            )
        ).map("".join)
    )
    def test_matchesParseQs(self, query: str) -> None:
        """For strings of safe characters the result equals parse_qs with keep_blank_values."""
        expected = parse_qs(query, keep_blank_values=True)
        result = parseGoQuery(query)
        self.assertEqual(result, expected)
        self.assertEqual(list(result), list(expected))


class SplitHostPortTests(SynchronousTestCase):
    """Tests for L{splitHostPort}."""

    def test_valid(self) -> None:
        """Host and port are split at the last colon, with IPv6 brackets removed."""
        self.assertEqual(splitHostPort("a.com:80"), ("a.com", "80"))
        self.assertEqual(splitHostPort("[::1]:80"), ("::1", "80"))
        self.assertEqual(splitHostPort("a.com:"), ("a.com", ""))
        self.assertEqual(splitHostPort(":80"), ("", "80"))
        self.assertEqual(splitHostPort("[::1%eth0]:http"), ("::1%eth0", "http"))
        self.assertEqual(splitHostPort("[a:b]:"), ("a:b", ""))

    def test_errors(self) -> None:
        """Malformed addresses raise ValueError with Go's AddrError text."""
        cases = {
            "a.com": "address a.com: missing port in address",
            "": "missing port in address",
            "[::1]": "address [::1]: missing port in address",
            "::1": "address ::1: too many colons in address",
            "a:b:c": "address a:b:c: too many colons in address",
            "[::1]::80": "address [::1]::80: too many colons in address",
            "[::1]x:80": "address [::1]x:80: missing port in address",
            "[::1:80": "address [::1:80: missing ']' in address",
            "a[b:80": "address a[b:80: unexpected '[' in address",
            "ab]:80": "address ab]:80: unexpected ']' in address",
            "[a]:8]0": "address [a]:8]0: unexpected ']' in address",
        }
        for hostport, message in cases.items():
            with self.assertRaises(ValueError) as context:
                splitHostPort(hostport)
            self.assertEqual(str(context.exception), message)

    @given(
        st.text(string.ascii_letters + string.digits + ".-", max_size=12),
        st.text(string.digits, max_size=5),
        st.booleans(),
    )
    def test_roundTrip(self, host: str, port: str, ipv6: bool) -> None:
        """Joining a host and port as Go's JoinHostPort does and splitting gives them back."""
        if ipv6:
            host = host + "::1"
        joined = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.assertEqual(splitHostPort(joined), (host, port))


class CanonicalRequestHostTests(SynchronousTestCase):
    """Tests for L{canonicalRequestHost}."""

    def test_examples(self) -> None:
        """The port and IPv6 brackets are dropped, and the host is trimmed and lower-cased."""
        self.assertEqual(canonicalRequestHost("Foo.COM:8080"), "foo.com")
        self.assertEqual(canonicalRequestHost("Foo.COM"), "foo.com")
        self.assertEqual(canonicalRequestHost("[::1]:80"), "::1")
        self.assertEqual(canonicalRequestHost("[::1]"), "::1")
        self.assertEqual(canonicalRequestHost("::1"), "::1")
        self.assertEqual(canonicalRequestHost("[::1]]"), "::1]")
        self.assertEqual(canonicalRequestHost(" Example.org "), "example.org")
        self.assertEqual(canonicalRequestHost(""), "")

    def test_goSpaceAndCase(self) -> None:
        """Trimming uses Go's notion of space and lower-casing maps one character to one."""
        self.assertEqual(canonicalRequestHost("\u00a0A.com\u3000"), "a.com")
        self.assertEqual(canonicalRequestHost("\x1ca.com"), "\x1ca.com")
        self.assertEqual(canonicalRequestHost("\u0130STANBUL.TR"), "istanbul.tr")
        self.assertEqual(canonicalRequestHost("\u039f\u03a3"), "\u03bf\u03c3")

    def test_unparsablePortKept(self) -> None:
        """A value that is neither host:port nor bracketed keeps its port part."""
        self.assertEqual(canonicalRequestHost("A:B:C"), "a:b:c")


class RoutingPathTests(SynchronousTestCase):
    """Tests for L{routingPath}."""

    def test_decodesUnreserved(self) -> None:
        """Escapes of characters outside the reserved set are decoded."""
        self.assertEqual(routingPath("/foo%20bar"), "/foo bar")
        self.assertEqual(routingPath("/%7Euser"), "/~user")
        self.assertEqual(routingPath("/caf%C3%A9"), "/caf\u00e9")
        self.assertEqual(routingPath("/plain+path"), "/plain+path")

    def test_keepsReserved(self) -> None:
        """Upper-case escapes of reserved characters are kept as written."""
        self.assertEqual(routingPath("/a%2Fb"), "/a%2Fb")
        self.assertEqual(routingPath("/a%25b%3F%23"), "/a%25b%3F%23")

    def test_lowerCaseReservedDecoded(self) -> None:
        """A lower-case escape such as %2f is not in Traefik's reserved map, so it is decoded."""
        self.assertEqual(routingPath("/a%2fb"), "/a/b")
        self.assertEqual(routingPath("/a%3a%3F"), "/a:%3F")

    def test_invalidEscapes(self) -> None:
        """A truncated or non-hexadecimal escape raises ValueError."""
        for path in ["/bad%", "/bad%2", "/bad%zz", "/bad%g0", "%"]:
            self.assertRaises(ValueError, routingPath, path)

    def test_invalidUtf8(self) -> None:
        """Bytes that are not UTF-8 become surrogate escapes, which translated regexps treat as U+FFFD."""
        path = routingPath("/%FF")
        self.assertEqual(path, "/\udcff")
        self.assertIsNotNone(compileGoRegexp(r"^/\x{FFFD}$").search(path))

    @given(st.text(st.characters(exclude_categories=["Cs"], exclude_characters=RESERVED_CHARS)))
    def test_roundTrip(self, text: str) -> None:
        """Percent-encoding text without reserved characters and routing it gives the text back."""
        self.assertEqual(routingPath("/" + quote(text, safe="")), "/" + text)
